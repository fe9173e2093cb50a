//! What can go wrong in the actix runtime.

use actix::MailboxError;
use flotilla_sim::{NodeId, SimTime};

/// A failure of the actix runtime itself. Node failures are not errors: they are traced
/// and counted in the [`RunReport`](flotilla_sim::RunReport) like in the sequential
/// executor. Every variant here means the runtime is broken or the OS refused a thread;
/// the run cannot continue and its state is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActorsError {
    /// A node actor did not answer: its arbiter stopped, the actor died, or it had given
    /// its node back already.
    #[error("node actor {node} did not answer at {time}")]
    Node {
        /// The node.
        node: NodeId,
        /// The instant it was asked to handle (after the run: the run's end).
        time: SimTime,
    },
    /// The network actor did not answer.
    #[error("network actor did not answer at {time}")]
    Network {
        /// The instant whose sends it was asked to route.
        time: SimTime,
        /// The actix error.
        source: MailboxError,
    },
    /// The clock actor did not answer.
    #[error("clock actor did not answer")]
    Clock(#[source] MailboxError),
    /// The clock or the network actor was asked to work after giving its state back.
    #[error("the {0} actor no longer holds its state")]
    Released(&'static str),
    /// The clock was asked to run while a run was in progress.
    #[error("the clock actor is already running")]
    Busy,
    /// The clock and node sides of the simulation do not match.
    #[error("the world has {world} nodes but {hosts} node hosts were given")]
    PartsMismatch {
        /// Nodes known to the world.
        world: usize,
        /// Node hosts given.
        hosts: usize,
    },
    /// An arbiter thread could not be started.
    #[error("could not start an arbiter thread")]
    Spawn(#[source] std::io::Error),
}
