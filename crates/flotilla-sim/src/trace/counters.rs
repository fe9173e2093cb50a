//! Counts over a trace.

use super::TraceEvent;
use crate::{DropReason, NodeId};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// Counts over a trace, kept up to date by the [`Recorder`](super::Recorder).
///
/// Conservation, at every point of a run:
/// `sent = delivered + dropped_total() + in_flight()`, and every job started is done, lost
/// with a reason, or still running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped, by reason (serialised with the reasons' display names as keys).
    #[serde(serialize_with = "by_reason")]
    pub dropped: BTreeMap<DropReason, u64>,
    /// Bytes of sent messages whose sender is an edge device: the clients' uplink \[bytes\].
    pub bytes_up: u64,
    /// Bytes of sent messages whose receiver is an edge device: the clients' downlink
    /// \[bytes\].
    pub bytes_down: u64,
    /// Jobs started.
    pub jobs_started: u64,
    /// Jobs finished.
    pub jobs_done: u64,
    /// Jobs lost, by reason.
    #[serde(serialize_with = "by_reason")]
    pub jobs_lost: BTreeMap<DropReason, u64>,
    /// Node failures.
    pub node_failures: u64,
    /// Messages dropped, by sending node.
    #[serde(skip)]
    pub dropped_by_sender: BTreeMap<NodeId, u64>,
    /// Jobs lost, by node.
    #[serde(skip)]
    pub jobs_lost_by_node: BTreeMap<NodeId, u64>,
}

/// Every field of [`Counters`] in declaration order: what a checkpoint stores (the
/// `Serialize` impl is the report's view, which skips the per-node maps).
pub(crate) type CountersState = (
    u64,
    u64,
    BTreeMap<DropReason, u64>,
    u64,
    u64,
    u64,
    u64,
    BTreeMap<DropReason, u64>,
    u64,
    BTreeMap<NodeId, u64>,
    BTreeMap<NodeId, u64>,
);

impl Counters {
    /// The whole state, for a checkpoint. Destructures every field, so a field added later
    /// fails to compile here until the checkpoint covers it.
    pub(crate) fn state(&self) -> CountersState {
        let Counters {
            sent,
            delivered,
            dropped,
            bytes_up,
            bytes_down,
            jobs_started,
            jobs_done,
            jobs_lost,
            node_failures,
            dropped_by_sender,
            jobs_lost_by_node,
        } = self.clone();
        (
            sent,
            delivered,
            dropped,
            bytes_up,
            bytes_down,
            jobs_started,
            jobs_done,
            jobs_lost,
            node_failures,
            dropped_by_sender,
            jobs_lost_by_node,
        )
    }

    /// The counters a checkpoint stored with [`Counters::state`].
    pub(crate) fn from_state(state: CountersState) -> Self {
        let (
            sent,
            delivered,
            dropped,
            bytes_up,
            bytes_down,
            jobs_started,
            jobs_done,
            jobs_lost,
            node_failures,
            dropped_by_sender,
            jobs_lost_by_node,
        ) = state;
        Counters {
            sent,
            delivered,
            dropped,
            bytes_up,
            bytes_down,
            jobs_started,
            jobs_done,
            jobs_lost,
            node_failures,
            dropped_by_sender,
            jobs_lost_by_node,
        }
    }

    /// Messages dropped, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Messages sent and neither delivered nor dropped yet.
    ///
    /// # Panics
    ///
    /// If more messages were delivered or dropped than sent. Only a runtime bug can break
    /// conservation, so it is checked here rather than saturated away.
    pub fn in_flight(&self) -> u64 {
        self.delivered
            .checked_add(self.dropped_total())
            .and_then(|settled| self.sent.checked_sub(settled))
            .expect("conservation: every message delivered or dropped was sent")
    }

    /// Counts `event`; `is_edge[i]` tells whether node `i` is an edge device.
    pub(super) fn count(&mut self, event: &TraceEvent, is_edge: &[bool]) {
        let edge = |n: &NodeId| is_edge.get(n.index()).copied().unwrap_or(false);
        match event {
            TraceEvent::Send {
                src, dst, bytes, ..
            } => {
                self.sent += 1;
                if edge(src) {
                    self.bytes_up += bytes;
                }
                if edge(dst) {
                    self.bytes_down += bytes;
                }
            }
            TraceEvent::Deliver { .. } => self.delivered += 1,
            TraceEvent::Drop { reason, src, .. } => {
                *self.dropped.entry(reason.clone()).or_default() += 1;
                *self.dropped_by_sender.entry(*src).or_default() += 1;
            }
            TraceEvent::JobStart { .. } => self.jobs_started += 1,
            TraceEvent::JobDone { .. } => self.jobs_done += 1,
            TraceEvent::JobLost { reason, job } => {
                *self.jobs_lost.entry(reason.clone()).or_default() += 1;
                *self.jobs_lost_by_node.entry(job.node).or_default() += 1;
            }
            TraceEvent::NodeFailed { .. } => self.node_failures += 1,
            TraceEvent::Timer { .. } | TraceEvent::Record { .. } => {}
        }
    }
}

/// A map keyed by drop reason as `{"loss": 3, "custom:jammed": 1}`: JSON keys must be
/// strings, which [`DropReason::Custom`] alone would not give.
fn by_reason<S: Serializer>(map: &BTreeMap<DropReason, u64>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(map.iter().map(|(reason, n)| (reason.to_string(), n)))
}
