//! The clock actor: owns the world and the job pool, and drives the run instant by instant.

use crate::error::ActorsError;
use crate::gather::Gather;
use crate::network_actor::{NetworkActor, Route, Verdicts};
use crate::node_actor::{HandleBatch, NodeActor, TakeHost};
use crate::pool::PoolRunner;
use actix::dev::channel::{self, AddressReceiver};
use actix::fut::{self, ActorFutureExt, WrapFuture};
use actix::{
    Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, ResponseActFuture,
    ResponseFuture,
};
use actix_rt::ArbiterHandle;
use flotilla_sim::{Batch, Envelope, Handled, NodeHost, NodeId, RunReport, SimTime, StopAt, World};
use futures::channel::oneshot;
use futures::future::Either;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

/// A node actor's mailbox capacity (actix's default; `do_send` does not wait on it).
const MAILBOX_CAPACITY: usize = 16;

/// The clock side of a run, while the clock holds it.
struct Clocked<M> {
    world: World<M>,
    runner: PoolRunner<M>,
}

/// A run in progress: where it stops and who waits for its report.
struct Running {
    stop: StopAt,
    reply: oneshot::Sender<Result<RunReport, ActorsError>>,
}

/// The node actors: activated when their node has a batch to handle, passivated (their
/// host taken back) when more than `capacity` are alive, least recently used first.
struct Activations<M: Send + 'static> {
    /// Each node's host while no actor holds it.
    idle: Vec<Option<NodeHost<M>>>,
    /// The live actors, with the instant each last handled a batch.
    live: BTreeMap<NodeId, (Addr<NodeActor<M>>, u64)>,
    /// Node `i`'s actor runs on arbiter `i mod arbiters.len()`.
    arbiters: Vec<ArbiterHandle>,
    /// Most actors alive at once (at least 1).
    capacity: usize,
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Activations<M> {
    /// The arbiter that runs `node`'s actor.
    fn arbiter_of(&self, node: NodeId) -> usize {
        node.index() % self.arbiters.len()
    }

    /// The actor of `node`; if it has none, one is made for its host and its start is
    /// added to `handover`. `None` if the node's host is neither idle nor in an actor
    /// (given back already).
    fn activate(
        &mut self,
        node: NodeId,
        instant: u64,
        handover: &mut Handover<M>,
    ) -> Option<Addr<NodeActor<M>>> {
        if let Some((addr, last)) = self.live.get_mut(&node) {
            *last = instant;
            return Some(addr.clone());
        }
        let host = self.idle.get_mut(node.index())?.take()?;
        let (sender, mailbox) = channel::channel(MAILBOX_CAPACITY);
        let addr = Addr::new(sender);
        handover.per_arbiter[self.arbiter_of(node)]
            .starts
            .push((mailbox, host));
        self.live.insert(node, (addr.clone(), instant));
        Some(addr)
    }

    /// The live actors to passivate so that the nodes `needed` (at most `capacity`) can be
    /// alive at once: none if they fit; else the least recently used of the others, enough
    /// to go down to half the capacity (so that passivations come in batches).
    fn victims(&self, needed: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let newcomers = needed.iter().filter(|n| !self.live.contains_key(n)).count();
        if self.live.len() + newcomers <= self.capacity {
            return Vec::new();
        }
        let mut others: Vec<(u64, NodeId)> = self
            .live
            .iter()
            .filter(|(node, _)| !needed.contains(node))
            .map(|(&node, &(_, last))| (last, node))
            .collect();
        others.sort_unstable();
        let target = (self.capacity / 2).max(needed.len());
        let passivate = (others.len() + needed.len()).saturating_sub(target);
        others.truncate(passivate);
        others.into_iter().map(|(_, node)| node).collect()
    }
}

/// What the arbiters are handed for one chunk, each its part in one closure run on its own
/// thread: a message sent to an actor from another thread wakes the actor's arbiter once per
/// message (an eventfd write and a thread switch each; a fifth of a large fleet's time),
/// where the closure wakes it once and its sends stay on that thread.
struct Handover<M: Send + 'static> {
    per_arbiter: Vec<ArbiterWork<M>>,
}

/// One arbiter's part of a [`Handover`], done in this order.
struct ArbiterWork<M: Send + 'static> {
    /// Node actors to start there, each on the mailbox its address was made for.
    starts: Vec<(AddressReceiver<NodeActor<M>>, NodeHost<M>)>,
    /// Hosts to take back from actors there.
    takes: Vec<(Addr<NodeActor<M>>, TakeHost<M>)>,
    /// Batches for actors there.
    batches: Vec<(Addr<NodeActor<M>>, HandleBatch<M>)>,
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handover<M> {
    /// Nothing to hand over yet, for `arbiters` arbiters.
    fn new(arbiters: usize) -> Self {
        let per_arbiter = (0..arbiters)
            .map(|_| ArbiterWork {
                starts: Vec::new(),
                takes: Vec::new(),
                batches: Vec::new(),
            })
            .collect();
        Self { per_arbiter }
    }

    /// Hands each arbiter with work its part.
    fn send(self, arbiters: &[ArbiterHandle]) {
        for (arbiter, work) in arbiters.iter().zip(self.per_arbiter) {
            if work.starts.is_empty() && work.takes.is_empty() && work.batches.is_empty() {
                continue;
            }
            // An arbiter that has stopped drops the closure, and with it the messages'
            // reply slots: absent replies, an error at commit.
            arbiter.spawn_fn(move || {
                for (mailbox, host) in work.starts {
                    Context::with_receiver(mailbox).run(NodeActor::new(host));
                }
                for (addr, take) in work.takes {
                    addr.do_send(take);
                }
                for (addr, batch) in work.batches {
                    addr.do_send(batch);
                }
            });
        }
    }
}

/// Drives the instants. Each instant is one [`Step`] the clock sends itself:
///
/// 1. `World::begin_instant` pops the instant (blocking on the pool for job outputs);
/// 2. every involved node actor gets its batch at once (started first if the node has none
///    alive, after passivating the least recently used actors beyond the capacity), with a
///    slot for its reply, and the clock waits for the last slot (read in node-id order
///    whatever order they fill in); an instant of more nodes than the capacity is handled
///    in chunks of the capacity, one after the other;
/// 3. the replies are committed in node-id order;
/// 4. the network actor routes the instant's sends and the world queues the verdicts.
///
/// While an instant is in flight the clock handles nothing else (`AsyncContext::wait`).
pub(crate) struct ClockActor<M: Send + 'static> {
    /// `None` once given back with [`Release`]. Boxed: actors must be `Unpin`, and the
    /// pool's channels are only as `Unpin` as `M`.
    state: Option<Box<Clocked<M>>>,
    nodes: Activations<M>,
    network: Addr<NetworkActor>,
    running: Option<Running>,
    /// Instants begun: the actors' recency.
    instants: u64,
}

impl<M: Send + 'static> std::fmt::Debug for ClockActor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockActor")
            .field("world", &self.state.as_ref().map(|s| &s.world))
            .field("nodes", &self.nodes.idle.len())
            .field("live", &self.nodes.live.len())
            .field("running", &self.running.as_ref().map(|r| r.stop))
            .finish()
    }
}

/// The replies of an instant's nodes, in node-id order (`None`: the node's actor did not
/// answer).
type Handling<M> = Result<Vec<Option<Handled<M>>>, ActorsError>;

/// What the clock gives back after a run: the world, the pool, and the nodes' hosts, each
/// either idle or still in a live actor.
pub(crate) struct Parts<M: Send + 'static> {
    pub(crate) world: World<M>,
    pub(crate) runner: PoolRunner<M>,
    pub(crate) idle: Vec<Option<NodeHost<M>>>,
    pub(crate) live: Vec<(NodeId, Addr<NodeActor<M>>)>,
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> ClockActor<M> {
    /// A clock over `world` and its nodes' `hosts` (node `i`'s at index `i`), with at most
    /// `capacity` node actors alive at once, on `arbiters`.
    pub(crate) fn new(
        world: World<M>,
        runner: PoolRunner<M>,
        hosts: Vec<NodeHost<M>>,
        arbiters: Vec<ArbiterHandle>,
        capacity: usize,
        network: Addr<NetworkActor>,
    ) -> Self {
        Self {
            state: Some(Box::new(Clocked { world, runner })),
            nodes: Activations {
                idle: hosts.into_iter().map(Some).collect(),
                live: BTreeMap::new(),
                arbiters,
                capacity: capacity.max(1),
            },
            network,
            running: None,
            instants: 0,
        }
    }

    /// Ends the run in progress with `outcome` (the report unless there was an error).
    fn finish(&mut self, outcome: Result<(), ActorsError>) {
        if let Some(running) = self.running.take() {
            let outcome = outcome.and_then(|()| match &self.state {
                Some(state) => Ok(state.world.report()),
                None => Err(ActorsError::Released("clock")),
            });
            // The caller may have stopped waiting; then nobody needs the report.
            let _ = running.reply.send(outcome);
        }
    }

    /// Step 2 for one chunk of at most `capacity` batches: passivates the actors that must
    /// make room, then hands each batch to its node's actor; the replies in batch order.
    fn handle_chunk(
        &mut self,
        now: SimTime,
        chunk: Vec<Batch<M>>,
    ) -> ResponseActFuture<Self, Handling<M>> {
        let needed: BTreeSet<NodeId> = chunk.iter().map(|b| b.node).collect();
        let victims = self.nodes.victims(&needed);
        let (hosts, slots) = Gather::new(victims.len());
        let mut handover = Handover::new(self.nodes.arbiters.len());
        for (node, reply) in victims.iter().zip(slots) {
            if let Some((addr, _)) = self.nodes.live.remove(node) {
                handover.per_arbiter[self.nodes.arbiter_of(*node)]
                    .takes
                    .push((addr, TakeHost { reply }));
            }
        }
        handover.send(&self.nodes.arbiters);
        let passivated = hosts.replies().into_actor(self).map(move |hosts, act, _| {
            for (node, host) in victims.into_iter().zip(hosts) {
                let host = host.ok_or(ActorsError::Node { node, time: now })?;
                act.nodes.idle[node.index()] = Some(host);
            }
            Ok::<_, ActorsError>(())
        });
        Box::pin(passivated.then(move |passivated, act, _| {
            if let Err(e) = passivated {
                return Either::Left(fut::ready(Err(e)));
            }
            let (replies, slots) = Gather::new(chunk.len());
            let mut handover = Handover::new(act.nodes.arbiters.len());
            for (b, reply) in chunk.into_iter().zip(slots) {
                // A node without a host (given back already) drops its slot, as an actor
                // that is gone does: no reply, an error at commit.
                if let Some(addr) = act.nodes.activate(b.node, act.instants, &mut handover) {
                    let batch = HandleBatch {
                        now,
                        inbound: b.inbound,
                        reply,
                    };
                    handover.per_arbiter[act.nodes.arbiter_of(b.node)]
                        .batches
                        .push((addr, batch));
                }
            }
            handover.send(&act.nodes.arbiters);
            Either::Right(replies.replies().into_actor(act).map(|r, _, _| Ok(r)))
        }))
    }

    /// Step 2 for all the instant's batches, in chunks of the capacity one after the other;
    /// the replies in batch (node-id) order.
    fn handle_all(
        &mut self,
        now: SimTime,
        mut batches: Vec<Batch<M>>,
    ) -> ResponseActFuture<Self, Handling<M>> {
        if batches.len() <= self.nodes.capacity {
            return self.handle_chunk(now, batches);
        }
        let rest = batches.split_off(self.nodes.capacity);
        Box::pin(self.handle_chunk(now, batches).then(move |first, act, _| {
            let mut first = match first {
                Ok(replies) => replies,
                Err(e) => return Either::Left(fut::ready(Err(e))),
            };
            Either::Right(act.handle_all(now, rest).map(move |rest, _, _| {
                first.extend(rest?);
                Ok(first)
            }))
        }))
    }

    /// Step 3: commits the replies in node-id order; returns the sends to route.
    fn commit(
        &mut self,
        now: SimTime,
        nodes: Vec<NodeId>,
        replies: Vec<Option<Handled<M>>>,
    ) -> Result<Vec<Envelope>, ActorsError> {
        let state = self.state.as_mut().ok_or(ActorsError::Released("clock"))?;
        for (node, reply) in nodes.into_iter().zip(replies) {
            let handled = reply.ok_or(ActorsError::Node { node, time: now })?;
            state.world.commit(node, handled, &mut state.runner);
        }
        Ok(state.world.pending_sends())
    }

    /// Step 4, second half: queues the verdicts.
    fn deliver(&mut self, verdicts: Verdicts) -> Result<(), ActorsError> {
        let state = self.state.as_mut().ok_or(ActorsError::Released("clock"))?;
        state.world.deliver(verdicts);
        Ok(())
    }
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Actor for ClockActor<M> {
    type Context = Context<Self>;
}

/// Runs until `stop`; answers with the report of the run so far.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) stop: StopAt,
}

impl Message for Run {
    type Result = Result<RunReport, ActorsError>;
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handler<Run> for ClockActor<M> {
    type Result = ResponseFuture<Result<RunReport, ActorsError>>;

    fn handle(&mut self, msg: Run, ctx: &mut Context<Self>) -> Self::Result {
        if self.running.is_some() {
            return Box::pin(async { Err(ActorsError::Busy) });
        }
        let (reply, report) = oneshot::channel();
        self.running = Some(Running {
            stop: msg.stop,
            reply,
        });
        ctx.notify(Step);
        Box::pin(async move { report.await.unwrap_or(Err(ActorsError::Released("clock"))) })
    }
}

/// One instant; the clock sends it to itself until the run is over.
#[derive(Debug)]
struct Step;

impl Message for Step {
    type Result = ();
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handler<Step> for ClockActor<M> {
    type Result = ();

    fn handle(&mut self, _: Step, ctx: &mut Context<Self>) {
        let Some(stop) = self.running.as_ref().map(|r| r.stop) else {
            return;
        };
        let Some(state) = self.state.as_mut() else {
            return self.finish(Err(ActorsError::Released("clock")));
        };
        // Step 1.
        let Some((now, batches)) = state.world.begin_instant(stop, &mut state.runner) else {
            return self.finish(Ok(()));
        };
        // Step 2: the batches to their actors (per chunk), handled in parallel.
        self.instants += 1;
        let nodes: Vec<NodeId> = batches.iter().map(|b| b.node).collect();
        let instant = self
            .handle_all(now, batches)
            .then(move |replies, act, _| {
                // Step 3, then step 4 (skipped when nothing was sent).
                match replies.and_then(|replies| act.commit(now, nodes, replies)) {
                    Err(e) => Either::Left(fut::ready(Err(e))),
                    Ok(sends) if sends.is_empty() => Either::Left(fut::ready(Ok(Vec::new()))),
                    Ok(sends) => {
                        Either::Right(act.network.send(Route { sends }).into_actor(act).map(
                            move |verdicts, _, _| match verdicts {
                                Ok(Some(v)) => Ok(v),
                                Ok(None) => Err(ActorsError::Released("network")),
                                Err(source) => Err(ActorsError::Network { time: now, source }),
                            },
                        ))
                    }
                }
            })
            .map(
                |verdicts, act, ctx| match verdicts.and_then(|v| act.deliver(v)) {
                    Ok(()) => ctx.notify(Step),
                    Err(e) => act.finish(Err(e)),
                },
            );
        ctx.wait(instant);
    }
}

/// Gives the world, the job pool and the nodes back after the run; the clock then stops.
pub(crate) struct Release<M>(PhantomData<fn() -> M>);

impl<M> Release<M> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M: Send + 'static> Message for Release<M> {
    /// `None` if they were given back already.
    type Result = Option<Parts<M>>;
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handler<Release<M>>
    for ClockActor<M>
{
    type Result = Option<Parts<M>>;

    fn handle(&mut self, _: Release<M>, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        self.finish(Err(ActorsError::Released("clock")));
        let state = self.state.take()?;
        let live = std::mem::take(&mut self.nodes.live);
        Some(Parts {
            world: state.world,
            runner: state.runner,
            idle: std::mem::take(&mut self.nodes.idle),
            live: live
                .into_iter()
                .map(|(node, (addr, _))| (node, addr))
                .collect(),
        })
    }
}
