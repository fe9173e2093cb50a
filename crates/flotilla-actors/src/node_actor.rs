//! The node actor: one node's state machine, hosted on one of the worker arbiters.

use actix::{Actor, ActorContext, Context, Handler, Message};
use flotilla_sim::{Handled, Inbound, NodeHost, SimTime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// Hosts one [`NodeHost`]: decodes what the node receives, runs its handler and encodes
/// what it sends, on its arbiter's thread, in parallel with the other nodes of the instant.
#[derive(Debug)]
pub(crate) struct NodeActor<M> {
    /// `None` once given back with [`TakeHost`].
    host: Option<NodeHost<M>>,
}

impl<M> NodeActor<M> {
    pub(crate) fn new(host: NodeHost<M>) -> Self {
        Self { host: Some(host) }
    }
}

impl<M: Send + 'static> Actor for NodeActor<M> {
    type Context = Context<Self>;
}

/// Step 2 of an instant for one node: handle this batch at `now`.
#[derive(Debug)]
pub(crate) struct HandleBatch<M> {
    pub(crate) now: SimTime,
    pub(crate) inbound: Vec<Inbound<M>>,
}

impl<M: 'static> Message for HandleBatch<M> {
    /// `None` if the actor no longer holds its node.
    type Result = Option<Handled<M>>;
}

impl<M: Serialize + DeserializeOwned + Send + 'static> Handler<HandleBatch<M>> for NodeActor<M> {
    type Result = Option<Handled<M>>;

    fn handle(&mut self, msg: HandleBatch<M>, _: &mut Context<Self>) -> Self::Result {
        // `NodeHost::handle` contains handler panics itself: the actor never dies of one.
        Some(self.host.as_mut()?.handle(msg.now, msg.inbound))
    }
}

/// Gives the node back after the run; the actor then stops.
pub(crate) struct TakeHost<M>(PhantomData<fn() -> M>);

impl<M> TakeHost<M> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M: 'static> Message for TakeHost<M> {
    /// `None` if it was given back already.
    type Result = Option<NodeHost<M>>;
}

impl<M: Serialize + DeserializeOwned + Send + 'static> Handler<TakeHost<M>> for NodeActor<M> {
    type Result = Option<NodeHost<M>>;

    fn handle(&mut self, _: TakeHost<M>, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        self.host.take()
    }
}
