//! The network side of a run: the network model and every sender's network stream.

use crate::{DropReason, Envelope, NetworkModel, NodeId, Purpose, Seed, SimDuration, StreamCursor};

/// Decides each message's fate: the [`NetworkModel`] drawing from the sender's `NETWORK`
/// stream. The sequential executor calls it inline; the actix runtime hosts it in the
/// network actor.
#[derive(Debug)]
pub struct Router {
    network: NetworkModel,
    streams: Vec<StreamCursor>,
}

impl Router {
    pub(crate) fn new(seed: Seed, nodes: usize, network: NetworkModel) -> Self {
        let streams = (0..nodes)
            .map(|i| seed.cursor(NodeId(i as u32), Purpose::NETWORK))
            .collect();
        Self { network, streams }
    }

    /// The verdicts for one instant's sends, in the order given.
    pub fn route_all(&mut self, sends: &[Envelope]) -> Vec<Result<SimDuration, DropReason>> {
        sends
            .iter()
            .map(|env| {
                let network = &mut self.network;
                self.streams[env.src.index()].with(|rng| network.route(env, env.sent_at, rng))
            })
            .collect()
    }
}
