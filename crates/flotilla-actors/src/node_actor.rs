//! The node actor: one node's state machine, hosted on one of the worker arbiters.

use crate::gather::Slot;
use actix::{Actor, ActorContext, Context, Handler, Message};
use flotilla_sim::{Handled, Inbound, NodeHost, SimTime};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Step 2 of an instant for one node: handle this batch at `now`, and put what it did in
/// `reply` (left empty if the actor no longer holds its node).
#[derive(Debug)]
pub(crate) struct HandleBatch<M> {
    pub(crate) now: SimTime,
    pub(crate) inbound: Vec<Inbound<M>>,
    pub(crate) reply: Slot<Handled<M>>,
}

impl<M: 'static> Message for HandleBatch<M> {
    type Result = ();
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handler<HandleBatch<M>>
    for NodeActor<M>
{
    type Result = ();

    fn handle(&mut self, msg: HandleBatch<M>, _: &mut Context<Self>) {
        if let Some(host) = self.host.as_mut() {
            // `NodeHost::handle` contains handler panics itself: the actor never dies of one.
            msg.reply.fill(host.handle(msg.now, msg.inbound));
        }
    }
}

/// Gives the node back in `reply` after the run (left empty if it was given back already);
/// the actor then stops.
pub(crate) struct TakeHost<M> {
    pub(crate) reply: Slot<NodeHost<M>>,
}

impl<M: 'static> Message for TakeHost<M> {
    type Result = ();
}

impl<M: Clone + Serialize + DeserializeOwned + Send + 'static> Handler<TakeHost<M>>
    for NodeActor<M>
{
    type Result = ();

    fn handle(&mut self, msg: TakeHost<M>, ctx: &mut Context<Self>) {
        ctx.stop();
        if let Some(host) = self.host.take() {
            msg.reply.fill(host);
        }
    }
}
