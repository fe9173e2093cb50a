//! Checkpoints: a run's whole state between two instants, to resume it later.
//!
//! A checkpoint holds what a run has *changed*: the clock side (virtual time, the event
//! queue with the messages in flight, the devices' stream positions and availability, the
//! counters and the trace hash), the network side (the senders' stream positions and the
//! reservations on shared links), each node host's stream position and job counter with its
//! node's state ([`Node::save_state`](crate::Node::save_state)), and the outputs of the jobs
//! still running (waited for, so that their completions arrive at the same virtual times
//! after a resume). What the run was *built with* (nodes' configuration, datasets, device
//! profiles, links, rules) is not in it: a checkpoint is restored onto a simulation built
//! again from the same configuration, and the streams' identities, node names and devices
//! are checked against it. Resuming then gives the same bits as the uninterrupted run.
//!
//! On disk a checkpoint is the [`wire`] encoding of its parts behind a magic number and a
//! format version, so it is subject to the wire's 256 MiB limit.

use crate::host::HostState;
use crate::router::RouterState;
use crate::world::{SavedJob, WorldState};
use crate::{SimTime, wire};
use serde::{Deserialize, Serialize};

/// The first bytes of a checkpoint file.
const MAGIC: &[u8; 8] = b"FLOTCKPT";

/// The checkpoint format; a checkpoint of another format is refused. 2: model weights
/// travel as byte strings of little-endian `f32`s (1: as sequences of numbers).
const FORMAT: u32 = 2;

/// A run's state between two instants: what a run changed (time, the event queue with the
/// messages in flight, every random stream's position, availability, counters, the trace
/// hash, shared-link reservations, the nodes' own states and the outputs of jobs still
/// running), not what it was built with; restore it onto a simulation built again from the
/// same configuration ([`Simulation::restore_with`](crate::Simulation::restore_with)).
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub(crate) world: WorldState,
    pub(crate) router: RouterState,
    pub(crate) hosts: Vec<HostState>,
    pub(crate) jobs: Vec<SavedJob>,
}

/// Why a checkpoint could not be taken, read or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A node could not save or restore its state.
    #[error("node {node} (`{name}`): {reason}")]
    Node {
        /// The node's id.
        node: u32,
        /// Its name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The checkpoint does not fit the run it is restored onto, or could not be taken.
    #[error("{0}")]
    Mismatch(String),
    /// The bytes are not a checkpoint of this format.
    #[error("not a Flotilla checkpoint (format {FORMAT}): {0}")]
    Format(String),
}

impl Checkpoint {
    /// The virtual time of the last instant before the checkpoint.
    pub fn time(&self) -> SimTime {
        self.world.now()
    }

    /// How many bytes of JSONL trace the run had written (if it writes one): a resumed run
    /// continues the trace file from there, so the file must be cut to this length first.
    pub fn trace_bytes(&self) -> Option<u64> {
        self.world.recorder.jsonl_bytes
    }

    /// The checkpoint as bytes: magic, format, then the wire encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let mut out = Vec::with_capacity(1 << 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        wire::encode_into(self, &mut out).map_err(|e| {
            CheckpointError::Mismatch(format!("the checkpoint does not encode: {e}"))
        })?;
        Ok(out)
    }

    /// Reads bytes written by [`Checkpoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let header = MAGIC.len() + size_of::<u32>();
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(CheckpointError::Format(
                "the file does not start with FLOTCKPT".into(),
            ));
        }
        let format = u32::from_le_bytes(bytes[MAGIC.len()..header].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(CheckpointError::Format(format!("its format is {format}")));
        }
        wire::decode(&bytes[header..])
            .map_err(|e| CheckpointError::Format(format!("after the {header}-byte header: {e}")))
    }
}
