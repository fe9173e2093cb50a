//! Nodes: the state machines a simulation drives, and the context they act through.

use crate::{DeviceProfile, JobId, NodeId, SimDuration, SimTime};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// What happens to a node. Events reach a node in the run's total event order (see the
/// crate docs).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<M> {
    /// The run begins (time zero), once per node.
    Start,
    /// A message from another node has arrived.
    Message {
        /// The sender.
        from: NodeId,
        /// The decoded message.
        msg: M,
    },
    /// A timer the node set has fired.
    Timer {
        /// The tag given to [`Context::set_timer`].
        tag: u64,
    },
    /// A compute job the node started has finished, after its virtual duration.
    JobDone {
        /// The job, as returned by [`Context::spawn_job`].
        job: JobId,
        /// What the job computed.
        output: M,
    },
}

/// Why a node's handler failed. The node is then isolated (it receives nothing more) and
/// the failure is traced and counted; the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

impl NodeError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        NodeError(msg.into())
    }
}

/// A CPU-bound computation a node hands to the worker pool. It must not touch the node: it
/// owns what it needs and returns a message for the node.
pub type Job<M> = Box<dyn FnOnce() -> Result<M, NodeError> + Send + 'static>;

/// One action a handler asked for; applied after the handler returns, in issue order.
///
/// `S` is what a send carries: the message itself as the node issues it, its encoded bytes
/// once the node side has put it on the wire ([`Outgoing`](crate::Outgoing)).
#[non_exhaustive]
pub enum Command<M, S = M> {
    /// Send `msg` to `to` through the network.
    Send {
        /// Destination.
        to: NodeId,
        /// Message (or its wire bytes).
        msg: S,
    },
    /// Fire [`Event::Timer`] with `tag` after `after`.
    Timer {
        /// Delay from now.
        after: SimDuration,
        /// Returned in the event.
        tag: u64,
    },
    /// Run `run`, declared to cost `flops` floating-point operations on this node's device.
    Job {
        /// The job's id.
        id: JobId,
        /// Declared work \[FLOP\]; the device profile turns it into virtual time.
        flops: u64,
        /// The computation.
        run: Job<M>,
    },
    /// Add a record to the trace (an aggregation, a metric, a decision).
    Record {
        /// What is recorded, e.g. `aggregate` or `test_accuracy`.
        label: String,
        /// Its value.
        value: f64,
    },
}

impl<M, S> fmt::Debug for Command<M, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Send { to, .. } => write!(f, "Send {{ to: {to} }}"),
            Command::Timer { after, tag } => write!(f, "Timer {{ after: {after}, tag: {tag} }}"),
            Command::Job { id, flops, .. } => write!(f, "Job {{ id: {id:?}, flops: {flops} }}"),
            Command::Record { label, value } => write!(f, "Record {{ {label}: {value} }}"),
        }
    }
}

/// What a node may see and do while handling one event: the current virtual time, its own
/// random stream and an outbox of [`Command`]s.
#[derive(Debug)]
pub struct Context<'a, M> {
    now: SimTime,
    id: NodeId,
    device: Option<&'a DeviceProfile>,
    rng: &'a mut ChaCha8Rng,
    next_job: &'a mut u64,
    outbox: Vec<Command<M>>,
}

impl<'a, M> Context<'a, M> {
    /// A context for node `id` (on `device`, if it has one) at `now`. Runtimes build
    /// these; user code receives them.
    pub fn new(
        now: SimTime,
        id: NodeId,
        device: Option<&'a DeviceProfile>,
        rng: &'a mut ChaCha8Rng,
        next_job: &'a mut u64,
    ) -> Self {
        Self {
            now,
            id,
            device,
            rng,
            next_job,
            outbox: Vec::new(),
        }
    }

    /// This node's device profile (none for nodes registered without one, like servers):
    /// what it can train follows from its memory (see [`DeviceProfile::fits`]).
    pub fn device(&self) -> Option<&DeviceProfile> {
        self.device
    }

    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's own random stream (purpose [`Purpose::NODE`](crate::Purpose::NODE)).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// Sends `msg` to `to`; the network model decides when (or whether) it arrives.
    pub fn send(&mut self, to: NodeId, msg: M) {
        self.outbox.push(Command::Send { to, msg });
    }

    /// Fires [`Event::Timer`] with `tag` after `after` (zero: later in this instant).
    pub fn set_timer(&mut self, after: SimDuration, tag: u64) {
        self.outbox.push(Command::Timer { after, tag });
    }

    /// Starts a compute job of `flops` declared operations. Its virtual duration follows
    /// from this node's device profile alone; [`Event::JobDone`] brings its output back,
    /// unless the device drops out first (then nothing comes back).
    pub fn spawn_job(
        &mut self,
        flops: u64,
        run: impl FnOnce() -> Result<M, NodeError> + Send + 'static,
    ) -> JobId {
        let id = JobId {
            node: self.id,
            seq: *self.next_job,
        };
        *self.next_job += 1;
        self.outbox.push(Command::Job {
            id,
            flops,
            run: Box::new(run),
        });
        id
    }

    /// Adds a record to the trace.
    pub fn record(&mut self, label: impl Into<String>, value: f64) {
        self.outbox.push(Command::Record {
            label: label.into(),
            value,
        });
    }

    /// The commands issued so far, consuming the context.
    pub fn into_commands(self) -> Vec<Command<M>> {
        self.outbox
    }
}

/// A participant of the simulation: a client, a server, an edge aggregator, or any user
/// type. Nodes are pure state machines: no threads, clocks or I/O inside; everything they
/// do goes through the [`Context`].
pub trait Node<M>: Send + 'static {
    /// Handles one event. An error isolates the node (see [`NodeError`]).
    fn on_event(&mut self, event: Event<M>, ctx: &mut Context<'_, M>) -> Result<(), NodeError>;

    /// The node's state for a checkpoint: everything [`on_event`](Node::on_event) may have
    /// changed, encoded as the node likes. What the node was built with (its configuration,
    /// datasets, strategies) is not part of it: a checkpoint is restored onto nodes built
    /// again from the same configuration. The default refuses, so a node type takes part
    /// in checkpoints only by overriding both methods.
    fn save_state(&self) -> Result<Vec<u8>, NodeError> {
        Err(NodeError::new(
            "this node type does not support checkpoints",
        ))
    }

    /// Puts back a state written by [`save_state`](Node::save_state), on a node freshly
    /// built from the same configuration; afterwards the node must behave exactly as the
    /// one that was saved. An error names what does not match.
    fn restore_state(&mut self, state: &[u8]) -> Result<(), NodeError> {
        let _ = state;
        Err(NodeError::new(
            "this node type does not support checkpoints",
        ))
    }
}
