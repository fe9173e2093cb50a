//! actix hosting of Flotilla simulations.
//!
//! [`ActixRuntime`] runs a [`flotilla_sim::Simulation`] with every node — clients, servers,
//! aggregators, any [`flotilla_sim::Node`] — as its own actix actor, the network model as a
//! network actor and the event queue in a clock actor, while compute jobs run on a
//! [`PoolRunner`] of worker threads. It produces the same run, bit for bit (same
//! [`TraceHash`](flotilla_sim::TraceHash), counters and failures), as the sequential
//! reference executor [`Simulation::run`](flotilla_sim::Simulation::run), for any number
//! of workers.
//!
//! ```
//! use flotilla_actors::ActixRuntime;
//! use flotilla_sim::{Context, Event, LinkSpec, NetworkModel, Node, NodeError, NodeId};
//! use flotilla_sim::{Seed, Simulation, StopAt, millis};
//!
//! /// Sends one greeting to the next node at start.
//! struct Greeter(u32);
//!
//! impl Node<String> for Greeter {
//!     fn on_event(&mut self, event: Event<String>, ctx: &mut Context<'_, String>)
//!         -> Result<(), NodeError> {
//!         if let Event::Start = event {
//!             ctx.send(NodeId((ctx.id().0 + 1) % self.0), format!("hi from {}", ctx.id()));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let build = || {
//!     let mut b = Simulation::builder(Seed(7), NetworkModel::new(LinkSpec::latency(millis(5))));
//!     for i in 0..4 {
//!         b.add_node(format!("greeter-{i}"), Greeter(4), None);
//!     }
//!     b.build()
//! };
//! let sequential = build().run(StopAt::Idle);
//! let actix = ActixRuntime::new(2).run(build(), StopAt::Idle)?.world().report();
//! assert_eq!(actix, sequential);
//! assert_eq!(actix.counters.delivered, 4);
//! # Ok::<(), flotilla_actors::ActorsError>(())
//! ```
//!
//! # How the actors map onto an instant
//!
//! A run is a loop of instants, each in four steps (see [`flotilla_sim::World`]). The
//! clock actor sends itself one `Step` message per instant and, while it is in flight,
//! handles nothing else:
//!
//! 1. **Pop** — the clock calls `World::begin_instant`, which pops every item of the
//!    earliest virtual time and groups them into per-node batches in node-id order. Job
//!    completions among them take their output from the pool, waiting if the worker is
//!    not done yet.
//! 2. **Handle, in parallel** — the clock sends every involved node actor its batch at
//!    once (`HandleBatch`), each arbiter's batches in one closure run on its thread (one
//!    wake per arbiter, not per message). Node actors live on `workers` arbiters (node *i*
//!    on arbiter *i* mod `workers`; arbiter 0 is the clock's own thread), so the handlers
//!    of one instant — decoding what they receive, running the state machine, encoding what they send — run in parallel. Each batch
//!    carries a slot for its reply; the clock is woken once, when the last slot is filled,
//!    and reads the replies by slot, i.e. in node-id order, whatever order the threads
//!    finish in (`join_all` over one future per node cost more than linear time: an
//!    instant of 50,000 nodes took seconds).
//! 3. **Commit, in node-id order** — the clock applies each reply with `World::commit`:
//!    timers and job completions are queued, records traced, sends collected. Jobs go to
//!    the pool as they are committed and start computing right away on any free thread;
//!    their *virtual* completion time is already fixed and queued, so clients that train
//!    "at different virtual times" still train in parallel in real time.
//! 4. **Route** — the network actor, which owns the [`Router`](flotilla_sim::Router),
//!    decides each send's delay or drop in commit order; the clock queues the verdicts with
//!    `World::deliver` and moves on to the next instant.
//!
//! Node actors are started on demand: the clock holds every idle node's host and starts
//! the node's actor when it has a batch; beyond [`ActixRuntime::max_live_nodes`] live
//! actors it first passivates the least recently active ones (their hosts come back with
//! `TakeHost`), and an instant of more nodes than that is handled in chunks of it. A
//! million-client fleet so costs actors only for the clients at work.
//!
//! After the run the clock, network and node actors hand their parts back and the
//! [`Simulation`](flotilla_sim::Simulation) is rebuilt, so callers inspect nodes and the
//! report exactly as after a sequential run.
//!
//! # Why the result does not depend on scheduling
//!
//! Threads only ever decide *when* something is computed, never *what* or *in which
//! order it is applied*:
//!
//! - every order that reaches the event queue or the trace is fixed on one thread — the
//!   clock's — in steps 1, 3 and 4: batches and commits in node-id order, commands in
//!   issue order, verdicts in commit order;
//! - a node's handler sees only its own batch and draws only from its own random stream
//!   (its `NODE` stream lives in its host); device draws are made by the clock at commit,
//!   network draws by the network actor from the *sender's* stream, so no draw depends on
//!   which thread ran first;
//! - a job's virtual duration comes from its device profile, declared FLOPs and the
//!   node's compute stream, not from how long the thread took; results are kept by job id.
//!
//! The parity tests (`tests/parity.rs`) check this: the sequential executor and this
//! runtime with 1, 2 and 8 workers give equal reports across seeds and topologies, with
//! jobs, timers, dropouts, lossy links and panicking nodes.
//!
//! # Failures
//!
//! A node whose handler panics or fails is isolated exactly as in the sequential executor
//! (the host catches the panic inside its actor); a panicking job becomes its node's
//! failure. [`ActorsError`] is reserved for the runtime itself failing — an actor that
//! does not answer, a thread the OS will not start.

mod clock;
mod error;
mod gather;
mod network_actor;
mod node_actor;
mod pool;
mod runtime;

pub use error::ActorsError;
pub use pool::PoolRunner;
pub use runtime::{ActixRuntime, DEFAULT_MAX_LIVE_NODES};
