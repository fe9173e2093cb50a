//! The two halves of a federated strategy, and what the protocol nodes give them.
//!
//! A strategy is a pair: a [`ServerStrategy`] decides, stage by stage, which clients do
//! what and how their replies become new global models; a [`ClientStrategy`] carries out
//! one assignment on a device. The protocol nodes ([`Coordinator`](crate::Coordinator),
//! [`Participant`](crate::Participant)) do everything else: the capability handshake,
//! messaging, timeouts, compute jobs, evaluation and bookkeeping. The built-in strategies
//! use exactly these traits; a strategy in another crate implements them the same way.

use crate::{Assignment, Capabilities, ClientData, LearningTask, ModelRole, Payload, Reply};
use crate::{AssignmentId, ServerWorkDone, WorkOrder, sample_clients};
use flotilla_sim::{NodeId, Purpose};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Why a strategy or a protocol node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlError {
    /// A model, loss or optimiser rejected its input.
    #[error(transparent)]
    Nn(#[from] flotilla_nn::NnError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] flotilla_train::TrainError),
    /// The task has no model for this role.
    #[error("the task has no {0} model")]
    MissingModel(ModelRole),
    /// A message did not carry what the protocol requires.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A task or strategy was given inconsistent inputs (e.g. initial weights of another
    /// model).
    #[error("setup: {0}")]
    Setup(String),
    /// Declared work too large to count: the FLOPs of what is named overflow `u64`.
    #[error("the FLOP count of {0} overflows u64")]
    FlopOverflow(String),
    /// A checkpoint state could not be saved, is malformed, or does not match the node or
    /// strategy it is restored onto (what does not match is named).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A strategy or server logic (named by its type) that does not implement
    /// `save_state` / `restore_state` was asked to take part in a checkpoint.
    #[error("{0} does not support checkpoints: it does not implement save_state and restore_state")]
    CheckpointUnsupported(&'static str),
    /// A job computed in another process failed there or on its way (see
    /// [`Offload`](crate::Offload)).
    #[error("offloaded job: {0}")]
    Offload(String),
}

/// The clients the server has heard from, in id order, with what each announced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    clients: BTreeMap<NodeId, Capabilities>,
}

impl Fleet {
    /// Adds (or updates) a client's announcement.
    pub fn announce(&mut self, client: NodeId, capabilities: Capabilities) {
        self.clients.insert(client, capabilities);
    }

    /// Every known client, in id order.
    pub fn clients(&self) -> impl Iterator<Item = (NodeId, &Capabilities)> + '_ {
        self.clients.iter().map(|(id, c)| (*id, c))
    }

    /// Number of known clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client has announced itself.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// What `client` announced.
    pub fn get(&self, client: NodeId) -> Option<&Capabilities> {
        self.clients.get(&client)
    }

    /// The clients whose devices can train `role`, in id order.
    pub fn capable(&self, role: ModelRole) -> Vec<NodeId> {
        self.clients
            .iter()
            .filter(|(_, c)| c.trainable.contains(&role))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A computation the server runs on its own device between stages (e.g. distillation on
/// centralised data). Its declared work decides how long it takes in virtual time.
pub struct ServerJob {
    /// Declared work \[FLOP\].
    pub flops: u64,
    /// The computation; its result goes to [`ServerStrategy::server_work_done`]. It draws
    /// only from the stream it is given, which the coordinator derives from the job's
    /// identity (see [`crate::Server::spawn`]).
    pub run: ServerComputation,
}

/// The computation of a [`ServerJob`], given its stream.
pub type ServerComputation =
    Box<dyn FnOnce(&mut ChaCha8Rng) -> Result<ServerWorkDone, FlError> + Send>;

impl fmt::Debug for ServerJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerJob")
            .field("flops", &self.flops)
            .finish_non_exhaustive()
    }
}

/// What a synchronous strategy chooses its clients with: the fleet, the server's stream and
/// the round policy's over-selection. A strategy that samples through
/// [`Selection::sample`] gets over-selection for free: asked for `k` clients it draws
/// `ceil(f·k)`, and the policy aggregates the first `k` replies.
#[derive(Debug)]
pub struct Selection<'a> {
    fleet: &'a Fleet,
    rng: &'a mut ChaCha8Rng,
    factor: f64,
    quota: Option<usize>,
}

impl<'a> Selection<'a> {
    /// A selection over `fleet` drawing from `rng`, over-selecting by `factor` (≥ 1).
    pub fn new(fleet: &'a Fleet, rng: &'a mut ChaCha8Rng, factor: f64) -> Self {
        Self {
            fleet,
            rng,
            factor,
            quota: None,
        }
    }

    /// The clients the server has heard from.
    pub fn fleet(&self) -> &Fleet {
        self.fleet
    }

    /// The server's own stream, for draws of the strategy's own.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// `k` clients of `pool` uniformly without replacement, in id order (all of them when
    /// `k` is `None` or at least the pool's size); with over-selection `f`, `ceil(f·k)`
    /// of them, while the stage still counts on `k` replies.
    pub fn sample(&mut self, pool: &[NodeId], k: Option<usize>) -> Vec<NodeId> {
        let wanted = k.map_or(pool.len(), |k| k.min(pool.len()));
        *self.quota.get_or_insert(0) += wanted;
        let drawn = k.map(|k| {
            if self.factor > 1.0 {
                (self.factor * k as f64).ceil() as usize
            } else {
                k
            }
        });
        sample_clients(pool, drawn, self.rng)
    }

    /// Replies the stage counts on: the sum of the `k`s asked of [`Selection::sample`]
    /// (`None` when the strategy did not sample through it: every assigned client).
    pub fn quota(&self) -> Option<usize> {
        self.quota
    }
}

/// The server half of a synchronous strategy. Rounds run stage by stage: the round policy
/// ([`crate::Synchronous`]) asks for a stage's assignments, collects the replies until its
/// rule closes the stage (all in, the deadline, the first `k` of an over-selection), hands
/// them over, runs the server job if one is returned, and moves to the next stage; when
/// [`ServerStrategy::assign`] returns `None` the round is over and the coordinator
/// evaluates [`ServerStrategy::global_models`].
pub trait ServerStrategy: fmt::Debug + Send + 'static {
    /// The strategy's description of a client's work (sent in every [`Assignment`]).
    type Work: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static;

    /// The work of `stage` of `round` per client, or `None` when the round has no more
    /// stages. An empty list is a stage nobody works in (it closes at once). Clients are
    /// best drawn with [`Selection::sample`] (over-selection applies there).
    fn assign(
        &mut self,
        round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Self::Work>)>>;

    /// The replies of a closed stage, in client-id order (clients that did not answer in
    /// time, or beyond an over-selection's quota, are missing). May return a server job to
    /// run before the next stage.
    fn aggregate(
        &mut self,
        round: u32,
        stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError>;

    /// The result of the job [`ServerStrategy::aggregate`] returned.
    fn server_work_done(&mut self, done: ServerWorkDone) -> Result<(), FlError> {
        Err(FlError::Protocol(format!(
            "unexpected server work for round {} stage {}",
            done.round, done.stage
        )))
    }

    /// The current global models, evaluated after each round.
    fn global_models(&self) -> Vec<Payload>;

    /// Training samples this strategy moved off the devices to the server (0 for methods
    /// that keep data on-device).
    fn centralised_samples(&self) -> u64 {
        0
    }

    /// The strategy's state for a checkpoint: everything [`assign`](Self::assign),
    /// [`aggregate`](Self::aggregate) and [`server_work_done`](Self::server_work_done) may
    /// have changed (global models, models held between stages), not its configuration
    /// ([`crate::encode_state`] encodes a serializable state struct). By default a strategy
    /// does not support checkpoints: asked for its state, it fails with
    /// [`FlError::CheckpointUnsupported`] naming its type, never skipping its state.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        Err(crate::checkpoint::unsupported::<Self>())
    }

    /// Puts back a state written by [`save_state`](Self::save_state) on a strategy freshly
    /// built from the same configuration, after checking it against that configuration
    /// (an error names what does not match). By default: [`FlError::CheckpointUnsupported`].
    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let _ = state;
        Err(crate::checkpoint::unsupported::<Self>())
    }
}

/// What a client's work runs with: its identity, the shared task and its own data.
#[derive(Debug, Clone)]
pub struct ClientEnv {
    /// The client.
    pub node: NodeId,
    /// The shared task.
    pub task: Arc<LearningTask>,
    /// The client's samples.
    pub data: ClientData,
}

impl ClientEnv {
    /// The random stream of job `job` of this client: its `TRAINING` sub-stream
    /// [`AssignmentId::stream_index`]. Every job of a client has its own, whichever thread or
    /// process runs it.
    pub fn job_rng(&self, job: AssignmentId) -> ChaCha8Rng {
        self.task
            .seed
            .substream(self.node, Purpose::TRAINING, job.stream_index())
    }
}

/// The client half of a strategy: carries out one assignment. It runs inside a compute
/// job, on any thread, so it is a pure function of its inputs (the assignment, the
/// client's data indices, the task) and draws randomness only from
/// [`ClientEnv::job_rng`].
pub trait ClientStrategy: fmt::Debug + Send + Sync + 'static {
    /// The work vocabulary, shared with the server half.
    type Work: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static;

    /// Memory the assignment needs on the device \[bytes\]; a device without it records
    /// `cannot_train` and stays silent. By default, the largest training run among the
    /// models the assignment carries.
    fn memory_bytes(&self, env: &ClientEnv, assignment: &Assignment<Self::Work>) -> u64 {
        assignment
            .models
            .iter()
            .filter_map(|p| env.task.model(p.role).ok())
            .map(|m| m.training_memory_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Declared work of the assignment \[FLOP\]: with the device's speed, how long it takes.
    fn flops(&self, env: &ClientEnv, assignment: &Assignment<Self::Work>) -> Result<u64, FlError>;

    /// Carries out the assignment.
    fn execute(
        &self,
        env: &ClientEnv,
        assignment: Assignment<Self::Work>,
    ) -> Result<Reply, FlError>;
}
