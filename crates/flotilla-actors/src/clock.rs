//! The clock actor: owns the world and the job pool, and drives the run instant by instant.

use crate::error::ActorsError;
use crate::gather::Gather;
use crate::network_actor::{NetworkActor, Route, Verdicts};
use crate::node_actor::{HandleBatch, NodeActor};
use crate::pool::PoolRunner;
use actix::fut::{self, ActorFutureExt, WrapFuture};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, ResponseFuture};
use flotilla_sim::{Envelope, Handled, NodeId, RunReport, SimTime, StopAt, World};
use futures::channel::oneshot;
use futures::future::Either;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

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

/// Drives the instants. Each instant is one [`Step`] the clock sends itself:
///
/// 1. `World::begin_instant` pops the instant (blocking on the pool for job outputs);
/// 2. every involved node actor gets its batch at once, with a slot for its reply, and the
///    clock waits for the last slot (read in node-id order whatever order they fill in);
/// 3. the replies are committed in node-id order;
/// 4. the network actor routes the instant's sends and the world queues the verdicts.
///
/// While an instant is in flight the clock handles nothing else (`AsyncContext::wait`).
pub(crate) struct ClockActor<M: Send + 'static> {
    /// `None` once given back with [`Release`]. Boxed: actors must be `Unpin`, and the
    /// pool's channels are only as `Unpin` as `M`.
    state: Option<Box<Clocked<M>>>,
    nodes: Vec<Addr<NodeActor<M>>>,
    network: Addr<NetworkActor>,
    running: Option<Running>,
}

impl<M: Send + 'static> std::fmt::Debug for ClockActor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockActor")
            .field("world", &self.state.as_ref().map(|s| &s.world))
            .field("nodes", &self.nodes.len())
            .field("running", &self.running.as_ref().map(|r| r.stop))
            .finish()
    }
}

impl<M: Serialize + DeserializeOwned + Send + 'static> ClockActor<M> {
    /// A clock over `world`, whose node `i` is hosted by `nodes[i]`.
    pub(crate) fn new(
        world: World<M>,
        runner: PoolRunner<M>,
        nodes: Vec<Addr<NodeActor<M>>>,
        network: Addr<NetworkActor>,
    ) -> Self {
        Self {
            state: Some(Box::new(Clocked { world, runner })),
            nodes,
            network,
            running: None,
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

impl<M: Serialize + DeserializeOwned + Send + 'static> Actor for ClockActor<M> {
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

impl<M: Serialize + DeserializeOwned + Send + 'static> Handler<Run> for ClockActor<M> {
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

impl<M: Serialize + DeserializeOwned + Send + 'static> Handler<Step> for ClockActor<M> {
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
        // Step 2: every batch at once; the node actors handle them in parallel.
        let nodes: Vec<NodeId> = batches.iter().map(|b| b.node).collect();
        let (replies, slots) = Gather::new(batches.len());
        for (b, reply) in batches.into_iter().zip(slots) {
            // An actor that is gone drops the message and with it the slot: no reply.
            self.nodes[b.node.index()].do_send(HandleBatch {
                now,
                inbound: b.inbound,
                reply,
            });
        }
        let instant = replies
            .replies()
            .into_actor(self)
            .then(move |replies, act, _| {
                // Step 3, then step 4 (skipped when nothing was sent).
                match act.commit(now, nodes, replies) {
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

/// Gives the world and the job pool back after the run; the clock then stops.
pub(crate) struct Release<M>(PhantomData<fn() -> M>);

impl<M> Release<M> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M: 'static> Message for Release<M> {
    /// `None` if they were given back already.
    type Result = Option<(World<M>, PoolRunner<M>)>;
}

impl<M: Serialize + DeserializeOwned + Send + 'static> Handler<Release<M>> for ClockActor<M> {
    type Result = Option<(World<M>, PoolRunner<M>)>;

    fn handle(&mut self, _: Release<M>, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        self.finish(Err(ActorsError::Released("clock")));
        self.state.take().map(|s| (s.world, s.runner))
    }
}
