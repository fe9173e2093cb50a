//! The actors: one per node, one for the network, one clock.

use crate::PoolRunner;
use crate::WireMessage;
use actix::prelude::*;
use flotilla_sim::{
    DropReason, Envelope, Handled, Inbound, NodeHost, NodeId, Router, SimDuration, SimTime, StopAt,
    World,
};
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::join_all;

/// Clock → node: handle this instant's items.
pub(crate) struct HandleBatch<M> {
    pub(crate) now: SimTime,
    pub(crate) inbound: Vec<Inbound<M>>,
}

impl<M: 'static> Message for HandleBatch<M> {
    type Result = Handled<M>;
}

/// Runtime → node: give the host back (the run is over).
pub(crate) struct TakeHost<M>(pub(crate) std::marker::PhantomData<fn() -> M>);

impl<M: 'static> Message for TakeHost<M> {
    type Result = Option<NodeHost<M>>;
}

/// One node's state machine.
pub(crate) struct NodeActor<M: WireMessage> {
    pub(crate) host: Option<NodeHost<M>>,
}

impl<M: WireMessage> Actor for NodeActor<M> {
    type Context = Context<Self>;
}

impl<M: WireMessage> Handler<HandleBatch<M>> for NodeActor<M> {
    type Result = MessageResult<HandleBatch<M>>;

    fn handle(&mut self, batch: HandleBatch<M>, _: &mut Context<Self>) -> Self::Result {
        let host = self
            .host
            .as_mut()
            .expect("hosts are only taken after the run");
        MessageResult(host.handle(batch.now, batch.inbound))
    }
}

impl<M: WireMessage> Handler<TakeHost<M>> for NodeActor<M> {
    type Result = MessageResult<TakeHost<M>>;

    fn handle(&mut self, _: TakeHost<M>, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.host.take())
    }
}

/// Clock → network: the fates of this instant's sends.
pub(crate) struct Route(pub(crate) Vec<Envelope>);

impl Message for Route {
    type Result = Vec<Result<SimDuration, DropReason>>;
}

/// Runtime → network: give the router back.
pub(crate) struct TakeRouter;

impl Message for TakeRouter {
    type Result = Option<Router>;
}

/// The network-delay model.
pub(crate) struct NetworkActor {
    pub(crate) router: Option<Router>,
}

impl Actor for NetworkActor {
    type Context = Context<Self>;
}

impl Handler<Route> for NetworkActor {
    type Result = MessageResult<Route>;

    fn handle(&mut self, Route(sends): Route, _: &mut Context<Self>) -> Self::Result {
        let router = self
            .router
            .as_mut()
            .expect("the router is only taken after the run");
        MessageResult(router.route_all(&sends))
    }
}

impl Handler<TakeRouter> for NetworkActor {
    type Result = Option<Router>;

    fn handle(&mut self, _: TakeRouter, _: &mut Context<Self>) -> Option<Router> {
        self.router.take()
    }
}

/// Clock → itself: process the next instant.
struct Step;

impl Message for Step {
    type Result = ();
}

/// How the clock's run ended.
pub(crate) type ClockOutcome<M> = Result<World<M>, MailboxError>;

/// Drives the instants: owns the world and the job pool, talks to the node and network
/// actors, and hands the world back through `done` when the run is over.
pub(crate) struct ClockActor<M: WireMessage> {
    pub(crate) world: Option<World<M>>,
    pub(crate) runner: PoolRunner<M>,
    pub(crate) stop: StopAt,
    pub(crate) nodes: Vec<Addr<NodeActor<M>>>,
    pub(crate) network: Addr<NetworkActor>,
    pub(crate) done: Option<oneshot::Sender<ClockOutcome<M>>>,
}

impl<M: WireMessage> Actor for ClockActor<M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Step);
    }
}

impl<M: WireMessage> ClockActor<M> {
    fn finish(&mut self, outcome: Result<(), MailboxError>, ctx: &mut Context<Self>) {
        let world = self.world.take().expect("the world is taken once");
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome.map(|()| world));
        }
        ctx.stop();
    }
}

impl<M: WireMessage> Handler<Step> for ClockActor<M> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Step, ctx: &mut Context<Self>) -> Self::Result {
        let world = self
            .world
            .as_mut()
            .expect("the world is present while running");
        let Some((now, batches)) = world.begin_instant(self.stop, &mut self.runner) else {
            self.finish(Ok(()), ctx);
            return Box::pin(actix::fut::ready(()));
        };
        // Every involved node handles its batch concurrently; join_all keeps node-id order.
        let handled = join_all(batches.into_iter().map(|batch| {
            let node: NodeId = batch.node;
            self.nodes[node.index()]
                .send(HandleBatch {
                    now,
                    inbound: batch.inbound,
                })
                .map(move |r| r.map(|h| (node, h)))
        }));
        Box::pin(
            handled
                .into_actor(self)
                .then(|results, act, _| {
                    let world = act.world.as_mut().expect("present while running");
                    let mut failed = None;
                    for result in results {
                        match result {
                            Ok((node, handled)) => world.commit(node, handled, &mut act.runner),
                            Err(e) => failed = Some(e),
                        }
                    }
                    let sends = world.pending_sends();
                    let network = act.network.clone();
                    async move {
                        match failed {
                            Some(e) => Err(e),
                            None => network.send(Route(sends)).await,
                        }
                    }
                    .into_actor(act)
                })
                .map(|verdicts, act, ctx| match verdicts {
                    Ok(verdicts) => {
                        act.world
                            .as_mut()
                            .expect("present while running")
                            .deliver(verdicts);
                        ctx.notify(Step);
                    }
                    Err(e) => act.finish(Err(e), ctx),
                }),
        )
    }
}
