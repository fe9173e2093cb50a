//! The network side of a run: the network model and every sender's network stream.

use crate::network::Congestion;
use crate::{DropReason, Envelope, NetworkModel, NodeId, Purpose, Seed, SimDuration, StreamCursor};
use serde::{Deserialize, Serialize};

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

/// The network side's part of a checkpoint: the senders' stream positions and the
/// reservations on shared links. Rules and links are configuration: a resumed run builds
/// them again, so a rule must not keep state of its own between verdicts.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RouterState {
    streams: Vec<StreamCursor>,
    congestion: Congestion,
}

impl Router {
    /// The network side's part of a checkpoint.
    pub(crate) fn checkpoint(&self) -> RouterState {
        RouterState {
            streams: self.streams.clone(),
            congestion: self.network.congestion().clone(),
        }
    }

    /// Puts back a checkpoint's network side on a router built from the same
    /// configuration.
    pub(crate) fn restore(&mut self, state: RouterState) -> Result<(), String> {
        if state.streams.len() != self.streams.len()
            || state
                .streams
                .iter()
                .zip(&self.streams)
                .any(|(a, b)| !a.same_stream(b))
        {
            return Err("the checkpoint's network streams are not this run's".into());
        }
        self.streams = state.streams;
        self.network.restore_congestion(state.congestion);
        Ok(())
    }
}
