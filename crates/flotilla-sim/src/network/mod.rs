//! The network model: composable rules, then per-link latency, jitter, bandwidth and loss
//! ([`NetworkModel`]), configurable from TOML ([`NetworkConfig`]).

mod config;
mod link;
mod rules;

pub use config::{
    LinkConfig, NameOr, NetworkConfig, NodeLinks, OutageConfig, PartitionConfig, name_or_table,
};
pub use link::{Latency, LinkSpec};
pub use rules::{NetworkPartition, Outage};

use crate::{DropReason, Envelope, NodeId, SimDuration, SimTime};
use rand_chacha::ChaCha8Rng;
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
/// else the sender's and the receiver's access links combined — latency of both, jitter of
/// both, transmission `bytes / min(sender up, receiver down)`, loss
/// `1 − (1 − p_src)(1 − p_dst)`. Every draw comes from the generator passed in — the
/// sender's `NETWORK` stream — in a fixed order, so no message's fate depends on other
/// senders' traffic.
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
}

impl fmt::Debug for NetworkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkModel")
            .field("rules", &self.rules.len())
            .field("default_link", &self.links[0])
            .field("distinct_links", &self.links.len())
            .field("pair_links", &self.pair_links.len())
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
    /// link's jitter.
    pub fn route(
        &mut self,
        env: &Envelope,
        now: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> Result<SimDuration, DropReason> {
        for rule in &mut self.rules {
            match rule.verdict(env, now, rng) {
                Verdict::Pass => {}
                Verdict::Deliver(d) => return Ok(d),
                Verdict::Drop(reason) => return Err(reason),
            }
        }
        let delay = match self.pair_links.get(&(env.src, env.dst)) {
            Some(&k) => link::cross(&[&self.links[k as usize]], env.bytes, rng),
            None => {
                let path = [self.node_link(env.src), self.node_link(env.dst)];
                link::cross(&path, env.bytes, rng)
            }
        };
        delay.ok_or(DropReason::Loss)
    }
}

#[cfg(test)]
mod tests;
