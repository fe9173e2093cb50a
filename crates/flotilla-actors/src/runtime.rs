//! The public entry point: run a [`Simulation`] on actix.

use crate::clock::{ClockActor, Release, Run};
use crate::error::ActorsError;
use crate::gather::Gather;
use crate::network_actor::{NetworkActor, TakeRouter};
use crate::node_actor::TakeHost;
use crate::pool::PoolRunner;
use actix::Actor;
use actix_rt::{Arbiter, System};
use flotilla_sim::{NodeHost, NodeId, Router, Simulation, StopAt, World};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Runs simulations on actix: one actor per node spread over `workers` arbiter threads (the
/// clock's and `workers - 1` more), a network actor, and a clock actor driving the instants,
/// with jobs on a pool of `workers` threads. Gives the same run, bit for bit, as the
/// sequential executor ([`Simulation::run`]) whatever `workers` and `max_live_nodes` are (see the
/// [crate docs](crate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActixRuntime {
    /// Arbiter threads hosting the node actors, and threads of the job pool (at least 1).
    pub workers: usize,
    /// Most node actors alive at once (at least 1): a node's actor is started when the node
    /// has something to handle and passivated, least recently used first, when more would
    /// be alive (see the [crate docs](crate)).
    pub max_live_nodes: usize,
}

/// The default [`ActixRuntime::max_live_nodes`]: above any fleet of the shipped configs but
/// the large-fleet workloads, whose idle clients then cost no actor (about 0.8 KB each).
pub const DEFAULT_MAX_LIVE_NODES: usize = 16_384;

impl Default for ActixRuntime {
    /// As many workers as the machine has cores.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl ActixRuntime {
    /// A runtime with `workers` arbiters and pool threads (0 counts as 1).
    pub fn new(workers: usize) -> Self {
        Self {
            workers: workers.max(1),
            max_live_nodes: DEFAULT_MAX_LIVE_NODES,
        }
    }

    /// The same runtime with at most `max_live_nodes` node actors alive at once (0 counts
    /// as 1).
    pub fn with_max_live_nodes(self, max_live_nodes: usize) -> Self {
        Self {
            max_live_nodes: max_live_nodes.max(1),
            ..self
        }
    }

    /// Runs `sim` until `stop` and gives it back, so its nodes and
    /// [`world().report()`](flotilla_sim::World::report) can be inspected.
    ///
    /// Blocking: starts its own [`actix::System`] on the calling thread and stops it
    /// before returning. It must not be called from inside an actix system or a tokio
    /// runtime (use a plain thread, e.g. `std::thread::spawn` or `spawn_blocking`).
    ///
    /// Jobs still running at `stop` are lost with this runtime's pool; to resume a run
    /// stopped at [`StopAt::Time`] with jobs in progress, use
    /// [`ActixRuntime::run_with_pool`] and pass the pool on.
    ///
    /// # Errors
    /// [`ActorsError`] if an actor failed to answer or a thread could not be started: a
    /// runtime failure, after which the simulation is lost. Node failures are not errors;
    /// they are in the report.
    pub fn run<M>(&self, sim: Simulation<M>, stop: StopAt) -> Result<Simulation<M>, ActorsError>
    where
        M: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let pool = PoolRunner::new(self.workers);
        self.run_with_pool(sim, stop, pool).map(|(sim, _)| sim)
    }

    /// Like [`ActixRuntime::run`], with jobs on `pool`, which is given back: jobs started
    /// before `stop` and finishing after it live in the pool, so the next leg of the run
    /// (on either executor) must use the same pool.
    ///
    /// # Errors
    /// As [`ActixRuntime::run`].
    pub fn run_with_pool<M>(
        &self,
        sim: Simulation<M>,
        stop: StopAt,
        pool: PoolRunner<M>,
    ) -> Result<(Simulation<M>, PoolRunner<M>), ActorsError>
    where
        M: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let (world, router, hosts) = sim.into_parts();
        if world.node_count() != hosts.len() {
            return Err(ActorsError::PartsMismatch {
                world: world.node_count(),
                hosts: hosts.len(),
            });
        }
        let workers = self.workers.max(1);
        let system = System::new();
        let (arbiters, outcome) = system.block_on(async move {
            // The clock's own thread is the first of the `workers` that host node actors:
            // it is idle while an instant's nodes handle their batches, and a message to an
            // actor on it needs no wake of another thread (with one worker, none at all).
            let mut arbiters = Vec::with_capacity(workers - 1);
            for _ in 1..workers {
                match Arbiter::try_new() {
                    Ok(a) => arbiters.push(a),
                    Err(e) => return (arbiters, Err(ActorsError::Spawn(e))),
                }
            }
            let capacity = self.max_live_nodes;
            let outcome = drive(world, router, hosts, pool, stop, &arbiters, capacity).await;
            (arbiters, outcome)
        });
        for arbiter in arbiters {
            arbiter.stop();
            // An arbiter thread that panicked has already failed the run (its actors did
            // not answer); nothing more to report.
            let _ = arbiter.join();
        }
        // Dropping the runner ends the system and whatever actors are left on it.
        drop(system);
        outcome
    }
}

/// Starts the clock and network actors, runs the clock to `stop` (it starts the node
/// actors as their nodes need them, at most `capacity` at once), then collects every part
/// back.
async fn drive<M>(
    world: World<M>,
    router: Router,
    hosts: Vec<NodeHost<M>>,
    pool: PoolRunner<M>,
    stop: StopAt,
    arbiters: &[Arbiter],
    capacity: usize,
) -> Result<(Simulation<M>, PoolRunner<M>), ActorsError>
where
    M: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    // The network and the clock share the system arbiter: they never run at the same time.
    let network = NetworkActor::new(router).start();
    let handles = std::iter::once(Arbiter::current())
        .chain(arbiters.iter().map(Arbiter::handle))
        .collect();
    let clock = ClockActor::new(world, pool, hosts, handles, capacity, network.clone()).start();

    clock
        .send(Run { stop })
        .await
        .map_err(ActorsError::Clock)??;

    let parts = clock
        .send(Release::new())
        .await
        .map_err(ActorsError::Clock)?
        .ok_or(ActorsError::Released("clock"))?;
    let (world, pool, mut hosts) = (parts.world, parts.runner, parts.idle);
    let router = network
        .send(TakeRouter)
        .await
        .map_err(|source| ActorsError::Network {
            time: world.now(),
            source,
        })?
        .ok_or(ActorsError::Released("network"))?;
    let (replies, slots) = Gather::new(parts.live.len());
    for ((_, actor), reply) in parts.live.iter().zip(slots) {
        actor.do_send(TakeHost { reply });
    }
    for ((node, _), host) in parts.live.iter().zip(replies.replies().await) {
        hosts[node.index()] = host;
    }
    let hosts = hosts
        .into_iter()
        .enumerate()
        .map(|(i, host)| {
            host.ok_or(ActorsError::Node {
                node: NodeId(i as u32),
                time: world.now(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Simulation::from_parts(world, router, hosts), pool))
}
