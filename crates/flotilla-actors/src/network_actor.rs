//! The network actor: the network model and every sender's network stream.

use actix::{Actor, ActorContext, Context, Handler, Message};
use flotilla_sim::{DropReason, Envelope, Router, SimDuration};

/// Hosts the [`Router`]: decides the fate of each instant's sends, in commit order.
#[derive(Debug)]
pub(crate) struct NetworkActor {
    /// `None` once given back with [`TakeRouter`].
    router: Option<Router>,
}

impl NetworkActor {
    pub(crate) fn new(router: Router) -> Self {
        Self {
            router: Some(router),
        }
    }
}

impl Actor for NetworkActor {
    type Context = Context<Self>;
}

/// Step 4 of an instant: one verdict per envelope, in the order given.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) sends: Vec<Envelope>,
}

/// A delay or a drop, per envelope.
pub(crate) type Verdicts = Vec<Result<SimDuration, DropReason>>;

impl Message for Route {
    /// `None` if the actor no longer holds the router.
    type Result = Option<Verdicts>;
}

impl Handler<Route> for NetworkActor {
    type Result = Option<Verdicts>;

    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Self::Result {
        Some(self.router.as_mut()?.route_all(&msg.sends))
    }
}

/// Gives the router back after the run; the actor then stops.
#[derive(Debug)]
pub(crate) struct TakeRouter;

impl Message for TakeRouter {
    /// `None` if it was given back already.
    type Result = Option<Router>;
}

impl Handler<TakeRouter> for NetworkActor {
    type Result = Option<Router>;

    fn handle(&mut self, _: TakeRouter, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        self.router.take()
    }
}
