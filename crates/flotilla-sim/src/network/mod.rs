//! The network model: composable rules, then per-link latency, jitter, bandwidth (shared by
//! concurrent transfers) and loss ([`NetworkModel`]), configurable from TOML
//! ([`NetworkConfig`]).

mod config;
mod link;
mod rules;
mod shared;

pub use config::{
    LinkConfig, NameOr, NetworkConfig, NodeLinks, OutageConfig, PartitionConfig, install_rules,
    name_or_table,
};
pub use link::{Latency, LinkSpec};
pub use rules::{NetworkPartition, Outage};

use crate::{DropReason, Envelope, NodeId, SimDuration, SimTime};
use rand_chacha::ChaCha8Rng;
pub(crate) use shared::Congestion;
use shared::{Piece, Resource};
use std::collections::BTreeMap;
use std::fmt;

/// A rule's decision about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No opinion: the next rule (or the link model) decides.
    Pass,
    /// Deliver after this delay from now.
    Deliver(SimDuration),
    /// Lose the message.
    Drop(DropReason),
}

/// A network rule. Any `FnMut(&Envelope, SimTime) -> Verdict + Send` closure is one (it is
/// not given the generator).
pub trait Rule: Send {
    /// Decides on `env`, sent at `now`; random draws come from `rng`, the sender's network
    /// stream.
    fn verdict(&mut self, env: &Envelope, now: SimTime, rng: &mut ChaCha8Rng) -> Verdict;
}

impl<F: FnMut(&Envelope, SimTime) -> Verdict + Send> Rule for F {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        self(env, now)
    }
}

/// Invalid network settings. The run cannot be built from them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A value is out of range.
    #[error("network setting `{field}` = {value}: {reason}")]
    Invalid {
        /// The field, as a path (`default.loss`, `links[2].node_range`).
        field: String,
        /// The value.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// The TOML text is malformed or has unknown or mistyped keys.
    #[error("{source_name}: {message}")]
    Toml {
        /// Where the text came from (a file name).
        source_name: String,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// An unknown link preset.
    #[error("unknown link preset `{0}`; known: {known}", known = LinkSpec::PRESET_NAMES.join(", "))]
    UnknownPreset(String),
}

/// How many of the most recent distinct links a new link is compared against before it is
/// stored: links repeat (a few presets), and a bounded look-back keeps setting a million
/// distinct links linear.
const LINK_LOOKBACK: usize = 8;

/// Rules plus links: decides every message's delay or loss.
///
/// A message's fate is decided by [`NetworkModel::route`]: the installed [`Rule`]s run in
/// install order and the first that does not [`Verdict::Pass`] decides (stock rules:
/// [`Outage`], [`NetworkPartition`]; any `FnMut(&Envelope, SimTime) -> Verdict` closure is a
/// rule too). If all pass, the link model does: the pair link set for `(src, dst)` if any,
/// else the sender's and the receiver's access links combined — the sender's uplink and the
/// receiver's downlink carry the bytes, the delay is the transmission time, then latency of
/// both plus jitter of both, and loss is `1 − (1 − p_src)(1 − p_dst)`. Every draw comes from
/// the generator passed in — the sender's `NETWORK` stream — in a fixed order (the loss
/// draw, the latencies, the jitters), so no message's draws depend on other senders'
/// traffic; its transmission time does, through shared links.
///
/// # Shared links: send-time reservation, first come first reserved
///
/// Each direction of a [`LinkSpec::shared`] link with a finite bandwidth (a node's uplink,
/// its downlink, a pair link) is a resource whose capacity concurrent transfers share. A
/// message's delay must be known when it is sent — `route` returns it and the event queue
/// never reschedules a delivery — so the sharing is decided then, not renegotiated as later
/// messages arrive (as processor sharing would): each shared resource keeps a timeline of
/// the rate already reserved, a step function over virtual time. A message sent at `now`
/// is transmitted greedily: at each moment at the largest rate available, the minimum of
/// its path's unshared bandwidths and of each shared resource's capacity minus what earlier
/// messages reserved at that moment; it reserves that rate on every shared resource of its
/// path until its bytes are sent. Then latency and jitter are added, as on an unshared path.
///
/// So no resource ever carries more than its capacity, a resource is work-conserving for
/// the messages that came first, and the last of `N` equal transfers sent together ends at
/// `N · size / capacity`, as under fair sharing; but earlier-sent messages end earlier than
/// under processor sharing (the k-th of them at `k · size / capacity` rather than all at the
/// end), so the mean completion time is lower. A message with no contention takes exactly
/// the unshared time, bit for bit. Calls within an instant come in a deterministic order
/// (node-id order, see [`World`](crate::World)), so results stay deterministic.
///
/// Details: reservations break at whole microseconds (a transmission's end on the timeline
/// is rounded up, its last microsecond at the rate that sends exactly its remaining bytes);
/// the delay itself is `latency + jitter + transmission` rounded once, as unshared. A lost
/// message consumes capacity — it was transmitted and lost on the way — while a message a
/// rule drops never reaches the links. An empty message takes no time and reserves nothing.
/// Reservations that ended before the latest send time are forgotten, so memory follows the
/// transfers in flight; `route` must therefore be called with non-decreasing `now` (as the
/// runtimes do), and a message sent earlier than the latest `now` seen starts its
/// transmission at that time (its delay counts the wait).
///
/// ```
/// use flotilla_sim::{DropReason, Envelope, LinkSpec, NetworkModel, NodeId, SimTime, Verdict};
/// use flotilla_sim::{Purpose, Seed, millis};
///
/// let mut net = NetworkModel::new(LinkSpec::preset("wifi")?);
/// net.set_node_link(NodeId(0), LinkSpec::preset("datacenter")?);
/// // Any closure is a rule: node 9 is unreachable for the first minute.
/// net.rule(|env: &Envelope, now: SimTime| match env.dst {
///     NodeId(9) if now < SimTime(60_000_000) => Verdict::Drop(DropReason::Offline),
///     _ => Verdict::Pass,
/// });
/// let env = Envelope {
///     id: flotilla_sim::MessageId { src: NodeId(0), seq: 0 },
///     src: NodeId(0),
///     dst: NodeId(9),
///     sent_at: SimTime::ZERO,
///     bytes: 10_000,
/// };
/// let mut rng = Seed(1).stream(NodeId(0), Purpose::NETWORK);
/// assert_eq!(net.route(&env, SimTime::ZERO, &mut rng), Err(DropReason::Offline));
/// let later = SimTime::ZERO + millis(60_000);
/// assert!(net.route(&env, later, &mut rng).is_ok_and(|d| d > millis(0)));
/// # Ok::<(), flotilla_sim::NetworkError>(())
/// ```
///
/// Only overrides are stored: distinct links once each, one index per node up to the
/// highest node given its own link, and a map of pair links — never a copy per node.
pub struct NetworkModel {
    rules: Vec<Box<dyn Rule>>,
    /// Distinct links; `links[0]` is the default.
    links: Vec<LinkSpec>,
    /// Index into `links` of each node's access link; nodes past the end use the default.
    node_links: Vec<u32>,
    pair_links: BTreeMap<(NodeId, NodeId), u32>,
    /// Reservations on shared links.
    congestion: Congestion,
}

impl fmt::Debug for NetworkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkModel")
            .field("rules", &self.rules.len())
            .field("default_link", &self.links[0])
            .field("distinct_links", &self.links.len())
            .field("pair_links", &self.pair_links.len())
            .field("reserved_links", &self.congestion.tracked())
            .finish()
    }
}

impl NetworkModel {
    /// Every node on `default_link`, no rules.
    pub fn new(default_link: LinkSpec) -> Self {
        Self {
            rules: Vec::new(),
            links: vec![default_link],
            node_links: Vec::new(),
            pair_links: BTreeMap::new(),
            congestion: Congestion::default(),
        }
    }

    fn intern(&mut self, link: LinkSpec) -> u32 {
        let recent = self.links.len().saturating_sub(LINK_LOOKBACK).max(1);
        let found = if self.links[0] == link {
            Some(0)
        } else {
            self.links[recent..]
                .iter()
                .position(|l| *l == link)
                .map(|k| recent + k)
        };
        let k = found.unwrap_or_else(|| {
            self.links.push(link);
            self.links.len() - 1
        });
        k as u32
    }

    /// Sets `node`'s access link (a phone on cellular, a server in a datacenter).
    pub fn set_node_link(&mut self, node: NodeId, link: LinkSpec) {
        let k = self.intern(link);
        if node.index() >= self.node_links.len() {
            self.node_links.resize(node.index() + 1, 0);
        }
        self.node_links[node.index()] = k;
    }

    /// Sets the link used, alone, for messages from `src` to `dst` (not the other way).
    pub fn set_pair_link(&mut self, src: NodeId, dst: NodeId, link: LinkSpec) {
        let k = self.intern(link);
        self.pair_links.insert((src, dst), k);
    }

    /// The reservations on shared links: the network's only state that changes during a
    /// run (rules and links are configuration, rebuilt on resume), for a checkpoint.
    pub(crate) fn congestion(&self) -> &Congestion {
        &self.congestion
    }

    /// Puts back reservations saved by a checkpoint.
    pub(crate) fn restore_congestion(&mut self, congestion: Congestion) {
        self.congestion = congestion;
    }

    /// Installs a rule after the existing ones.
    pub fn rule(&mut self, rule: impl Rule + 'static) {
        self.rules.push(Box::new(rule));
    }

    /// How many rules are installed.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// `node`'s access link.
    pub fn node_link(&self, node: NodeId) -> &LinkSpec {
        let k = self.node_links.get(node.index()).copied().unwrap_or(0);
        &self.links[k as usize]
    }

    /// The delay of `env` sent at `now`, or why it is lost. `rng` is the sender's network
    /// stream: rules draw first (if they draw), then the link model, always in this order
    /// whatever the outcome: one uniform for loss, each link's latency (none if fixed), each
    /// link's jitter. On shared links the message reserves its transmission (see the type's
    /// docs), so calls must come in send order: `now` never decreasing.
    pub fn route(
        &mut self,
        env: &Envelope,
        now: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> Result<SimDuration, DropReason> {
        self.route_reserving(env, now, rng).0
    }

    /// [`NetworkModel::route`], with what the message reserved on each of its shared links.
    fn route_reserving(
        &mut self,
        env: &Envelope,
        now: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> (Result<SimDuration, DropReason>, Vec<Piece>) {
        for rule in &mut self.rules {
            match rule.verdict(env, now, rng) {
                Verdict::Pass => {}
                Verdict::Deliver(d) => return (Ok(d), Vec::new()),
                Verdict::Drop(reason) => return (Err(reason), Vec::new()),
            }
        }
        self.congestion.advance(now);
        let (src, dst) = (env.src, env.dst);
        // The path's directions: (resource, bandwidth, shared).
        let (draws, directions) = match self.pair_links.get(&(src, dst)) {
            Some(&k) => {
                let link = &self.links[k as usize];
                let rate = link.up_bytes_per_sec.min(link.down_bytes_per_sec);
                let pair = (Resource::Pair(src, dst), rate, link.shared);
                (link::draw(&[link], rng), [Some(pair), None])
            }
            None => {
                let (up, down) = (self.node_link(src), self.node_link(dst));
                let directions = [
                    Some((Resource::Up(src), up.up_bytes_per_sec, up.shared)),
                    Some((Resource::Down(dst), down.down_bytes_per_sec, down.shared)),
                ];
                (link::draw(&[up, down], rng), directions)
            }
        };
        let (mut rate, mut limit) = (f64::INFINITY, f64::INFINITY);
        let mut tracked = Vec::with_capacity(2);
        for (resource, bandwidth, shared) in directions.into_iter().flatten() {
            rate = rate.min(bandwidth);
            if shared && bandwidth.is_finite() {
                tracked.push((resource, bandwidth));
            } else {
                limit = limit.min(bandwidth);
            }
        }
        let (transmit_ms, pieces) = if tracked.is_empty() || env.bytes == 0 {
            (env.bytes as f64 / rate * 1e3, Vec::new())
        } else {
            let t = self.congestion.transmit(now, env.bytes, limit, &tracked);
            (t.ms, t.pieces)
        };
        let delay_ms = draws.latency_ms + transmit_ms;
        // A delay too long for the clock to count is not clamped: `World::deliver` refuses to
        // schedule it and fails the sender.
        let delay = draws
            .delivered
            .then(|| SimDuration::from_secs_f64(delay_ms / 1e3).unwrap_or(SimDuration::MAX));
        (delay.ok_or(DropReason::Loss), pieces)
    }
}

#[cfg(test)]
mod tests;
