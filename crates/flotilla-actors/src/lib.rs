//! actix hosting of [`flotilla_sim`] runs: every node, the network-delay model and the clock
//! are actors; compute jobs run on a worker pool.
//!
//! The actors map onto the steps of an instant (see [`flotilla_sim::World`]):
//!
//! | step | who | where |
//! |---|---|---|
//! | pop the instant, batch per node | `ClockActor` (owns the `World`) | clock's arbiter |
//! | decode, `on_event`, encode | one `NodeActor` per node (owns its `NodeHost`) | node `i` on arbiter `i % workers`, in parallel |
//! | commit in node-id order | `ClockActor` | clock's arbiter |
//! | route the sends | `NetworkActor` (owns the `Router`) | its arbiter |
//! | deliver | `ClockActor` | clock's arbiter |
//! | run compute jobs | [`PoolRunner`] threads | started at commit, awaited when the completion pops |
//!
//! Determinism does not depend on actix: the clock awaits every node of the instant before
//! committing, commits in node-id order (`join_all` keeps input order), and every draw comes
//! from a per-node stream. So [`ActixRuntime::run`] gives the same trace hash as
//! [`flotilla_sim::Simulation::run`] at any number of workers.

mod actors;
mod pool;

pub use pool::PoolRunner;

use actix::prelude::*;
use actors::{ClockActor, NetworkActor, NodeActor, TakeHost, TakeRouter};
use flotilla_sim::{Simulation, StopAt};
use futures::channel::oneshot;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a message type needs to cross actors: wire encoding, sending between threads.
pub trait WireMessage: Serialize + DeserializeOwned + Send + Unpin + 'static {}

impl<M: Serialize + DeserializeOwned + Send + Unpin + 'static> WireMessage for M {}

/// A failure of the actor runtime itself (not of a node: nodes fail in isolation).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActorsError {
    /// An actor's mailbox closed mid-run.
    #[error("actor mailbox failed: {0}")]
    Mailbox(#[from] MailboxError),
    /// The clock stopped without handing the run back.
    #[error("the clock actor stopped without finishing the run")]
    ClockLost,
    /// The actix system could not be started.
    #[error("could not run the actix system: {0}")]
    System(#[from] std::io::Error),
}

/// Runs a simulation on actix with `workers` arbiters for node actors and `workers` job
/// threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActixRuntime {
    workers: usize,
}

impl ActixRuntime {
    /// A runtime with `workers` (at least one) node arbiters and job threads.
    pub fn new(workers: usize) -> Self {
        Self {
            workers: workers.max(1),
        }
    }

    /// Runs `sim` until `stop` and returns it, so its nodes and report can be inspected.
    ///
    /// Blocking: starts and ends its own actix system, so it must not be called from inside
    /// another one.
    pub fn run<M>(&self, sim: Simulation<M>, stop: StopAt) -> Result<Simulation<M>, ActorsError>
    where
        M: WireMessage,
    {
        let workers = self.workers;
        let system = System::new();
        system.block_on(async move {
            let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
            let (world, router, hosts) = sim.into_parts();
            let nodes: Vec<Addr<NodeActor<M>>> = hosts
                .into_iter()
                .enumerate()
                .map(|(i, host)| {
                    let host = Some(host);
                    NodeActor::start_in_arbiter(&arbiters[i % workers].handle(), move |_| {
                        NodeActor { host }
                    })
                })
                .collect();
            let router = Some(router);
            let network = NetworkActor::start_in_arbiter(&arbiters[0].handle(), move |_| {
                NetworkActor { router }
            });
            let (done, outcome) = oneshot::channel();
            ClockActor {
                world: Some(world),
                runner: PoolRunner::new(workers),
                stop,
                nodes: nodes.clone(),
                network: network.clone(),
                done: Some(done),
            }
            .start();
            let result = async {
                let world = outcome.await.map_err(|_| ActorsError::ClockLost)??;
                let mut hosts = Vec::with_capacity(nodes.len());
                for addr in &nodes {
                    hosts.push(
                        addr.send(TakeHost(std::marker::PhantomData))
                            .await?
                            .ok_or(ActorsError::ClockLost)?,
                    );
                }
                let router = network
                    .send(TakeRouter)
                    .await?
                    .ok_or(ActorsError::ClockLost)?;
                Ok(Simulation::from_parts(world, router, hosts))
            }
            .await;
            for arbiter in &arbiters {
                arbiter.stop();
            }
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
            result
        })
    }
}
