//! The network model: composable rules, then per-link latency, jitter, bandwidth and loss.
//!
//! A message's fate is decided by [`NetworkModel::route`]: the installed [`Rule`]s run in
//! install order and the first that does not [`Verdict::Pass`] decides; if all pass, the
//! link model does: a pair link set for `(src, dst)` if any, else the sender's and the
//! receiver's access links combined — latency of both, jitter of both, transmission
//! `bytes / min(sender up, receiver down)`, loss `1 − (1 − p_src)(1 − p_dst)`. Every draw
//! comes from the generator passed in — the sender's `NETWORK` stream — so no message's fate
//! depends on other senders' traffic.
//!
//! Configuration from TOML (durations in milliseconds, bandwidth in bytes/s):
//!
//! ```toml
//! [default]
//! latency = { kind = "log_normal", median_ms = 40.0, sigma = 0.5 }
//! jitter_ms = 5.0
//! up_bytes_per_sec = 1.25e6
//! down_bytes_per_sec = 5e6
//! loss = 0.01
//!
//! [[links]]            # access links of some nodes
//! nodes = [0]
//! link = "datacenter"  # a preset name, or a table like [default]
//!
//! [[outages]]
//! nodes = [3, 4]       # omit for every node
//! from_s = 600.0
//! until_s = 1200.0
//!
//! [[partitions]]
//! groups = [[0, 1, 2], [3, 4]]
//! from_s = 0.0
//! until_s = 60.0
//! ```

use crate::{DropReason, Envelope, NodeId, SimDuration, SimTime};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A rule's decision about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No opinion: the next rule (or the link model) decides.
    Pass,
    /// Deliver after this delay.
    Deliver(SimDuration),
    /// Lose the message.
    Drop(DropReason),
}

/// A network rule. Any `FnMut(&Envelope, SimTime) -> Verdict + Send` closure is one.
pub trait Rule: Send {
    /// Decides on `env`, sent at `now`; random draws come from `rng`.
    fn verdict(&mut self, env: &Envelope, now: SimTime, rng: &mut ChaCha8Rng) -> Verdict;
}

impl<F: FnMut(&Envelope, SimTime) -> Verdict + Send> Rule for F {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        self(env, now)
    }
}

/// Invalid network settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A value is out of range.
    #[error("network setting `{field}` = {value}: {reason}")]
    Invalid {
        /// The field, as a path (`default.loss`).
        field: String,
        /// The value.
        value: String,
        /// The accepted range.
        reason: &'static str,
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
    #[error(
        "unknown link preset `{0}`; known: wifi, cellular-4g, cellular-3g, ethernet, datacenter"
    )]
    UnknownPreset(String),
}

/// One-way propagation latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Latency \[ms\].
        ms: f64,
    },
    /// Normal, truncated at zero.
    Normal {
        /// Mean \[ms\].
        mean_ms: f64,
        /// Standard deviation \[ms\].
        std_ms: f64,
    },
    /// Log-normal: `median · exp(σ·z)`.
    LogNormal {
        /// Median \[ms\].
        median_ms: f64,
        /// σ of the underlying normal.
        sigma: f64,
    },
    /// Exponential.
    Exponential {
        /// Mean \[ms\].
        mean_ms: f64,
    },
}

impl Latency {
    /// A fixed latency.
    pub fn fixed(d: SimDuration) -> Self {
        Latency::Fixed {
            ms: d.as_secs_f64() * 1e3,
        }
    }

    /// One draw \[ms\].
    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Normal { mean_ms, std_ms } => {
                let z: f64 = Normal::new(0.0, 1.0).expect("unit normal").sample(rng);
                (mean_ms + std_ms * z).max(0.0)
            }
            Latency::LogNormal { median_ms, sigma } => {
                let z: f64 = LogNormal::new(0.0, 1.0)
                    .expect("unit log-normal")
                    .sample(rng);
                median_ms * z.powf(sigma)
            }
            Latency::Exponential { mean_ms } => {
                mean_ms * Exp::new(1.0).expect("unit exponential").sample(rng)
            }
        }
    }

    fn validate(&self, field: &str) -> Result<(), NetworkError> {
        let checks: &[(&str, f64)] = match self {
            Latency::Fixed { ms } => &[("ms", *ms)],
            Latency::Normal { mean_ms, std_ms } => &[("mean_ms", *mean_ms), ("std_ms", *std_ms)],
            Latency::LogNormal { median_ms, sigma } => {
                &[("median_ms", *median_ms), ("sigma", *sigma)]
            }
            Latency::Exponential { mean_ms } => &[("mean_ms", *mean_ms)],
        };
        for (name, v) in checks {
            non_negative(&format!("{field}.{name}"), *v)?;
        }
        Ok(())
    }
}

fn non_negative(field: &str, v: f64) -> Result<(), NetworkError> {
    if v.is_nan() || v < 0.0 {
        return Err(NetworkError::Invalid {
            field: field.into(),
            value: v.to_string(),
            reason: "must be a number ≥ 0",
        });
    }
    Ok(())
}

/// A link's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Propagation latency.
    pub latency: Latency,
    /// Extra delay drawn uniformly from `[0, jitter_ms]` \[ms\].
    #[serde(default)]
    pub jitter_ms: f64,
    /// Uplink bandwidth \[bytes/s\]; `inf` for none.
    pub up_bytes_per_sec: f64,
    /// Downlink bandwidth \[bytes/s\]; `inf` for none.
    pub down_bytes_per_sec: f64,
    /// Probability that a message is lost, in `[0, 1]`.
    #[serde(default)]
    pub loss: f64,
}

impl LinkSpec {
    /// A link with only a fixed latency: no jitter, unlimited bandwidth, no loss.
    pub fn latency(d: SimDuration) -> Self {
        Self {
            latency: Latency::fixed(d),
            jitter_ms: 0.0,
            up_bytes_per_sec: f64::INFINITY,
            down_bytes_per_sec: f64::INFINITY,
            loss: 0.0,
        }
    }

    /// A named preset. Figures are typical medians: `datacenter` 0.5 ms, 1.25 GB/s;
    /// `ethernet` 2 ms, 12.5 MB/s; `wifi` 10 ms (log-normal σ 0.4), 2.5 MB/s up, 6.25 MB/s
    /// down, 0.5 % loss; `cellular-4g` 50 ms (σ 0.5), 0.6 MB/s up, 2.5 MB/s down, 1 % loss;
    /// `cellular-3g` 150 ms (σ 0.6), 0.1 MB/s up, 0.4 MB/s down, 3 % loss.
    pub fn preset(name: &str) -> Result<Self, NetworkError> {
        let ln = |median_ms, sigma| Latency::LogNormal { median_ms, sigma };
        let (latency, jitter_ms, up, down, loss) = match name {
            "datacenter" => (Latency::Fixed { ms: 0.5 }, 0.0, 1.25e9, 1.25e9, 0.0),
            "ethernet" => (Latency::Fixed { ms: 2.0 }, 0.5, 12.5e6, 12.5e6, 0.0),
            "wifi" => (ln(10.0, 0.4), 2.0, 2.5e6, 6.25e6, 0.005),
            "cellular-4g" => (ln(50.0, 0.5), 10.0, 0.6e6, 2.5e6, 0.01),
            "cellular-3g" => (ln(150.0, 0.6), 30.0, 0.1e6, 0.4e6, 0.03),
            _ => return Err(NetworkError::UnknownPreset(name.into())),
        };
        Ok(Self {
            latency,
            jitter_ms,
            up_bytes_per_sec: up,
            down_bytes_per_sec: down,
            loss,
        })
    }

    /// Checks every field's range; errors name the field under `field`.
    pub fn validate(&self, field: &str) -> Result<(), NetworkError> {
        self.latency.validate(&format!("{field}.latency"))?;
        non_negative(&format!("{field}.jitter_ms"), self.jitter_ms)?;
        for (name, v) in [
            ("up_bytes_per_sec", self.up_bytes_per_sec),
            ("down_bytes_per_sec", self.down_bytes_per_sec),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(NetworkError::Invalid {
                    field: format!("{field}.{name}"),
                    value: v.to_string(),
                    reason: "must be > 0 (inf for unlimited)",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(NetworkError::Invalid {
                field: format!("{field}.loss"),
                value: self.loss.to_string(),
                reason: "must be a probability in [0, 1]",
            });
        }
        Ok(())
    }
}

/// Drops messages from or to `nodes` (every node when `None`) during the windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// Affected nodes; `None` for all.
    pub nodes: Option<BTreeSet<NodeId>>,
    /// `[from, until)` windows.
    pub windows: Vec<(SimTime, SimTime)>,
}

impl Rule for Outage {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        let affected = self
            .nodes
            .as_ref()
            .is_none_or(|n| n.contains(&env.src) || n.contains(&env.dst));
        if affected && self.windows.iter().any(|(a, b)| (*a..*b).contains(&now)) {
            Verdict::Drop(DropReason::Outage)
        } else {
            Verdict::Pass
        }
    }
}

/// Splits the network into groups during `[from, until)`: messages between different groups
/// are dropped; nodes in no group are unaffected.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPartition {
    /// The groups.
    pub groups: Vec<BTreeSet<NodeId>>,
    /// Start.
    pub from: SimTime,
    /// End (exclusive).
    pub until: SimTime,
}

impl Rule for NetworkPartition {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        if !(self.from..self.until).contains(&now) {
            return Verdict::Pass;
        }
        let group = |n: NodeId| self.groups.iter().position(|g| g.contains(&n));
        match (group(env.src), group(env.dst)) {
            (Some(a), Some(b)) if a != b => Verdict::Drop(DropReason::Partition),
            _ => Verdict::Pass,
        }
    }
}

/// Rules plus links: decides every message's delay or loss.
pub struct NetworkModel {
    rules: Vec<Box<dyn Rule>>,
    links: Vec<LinkSpec>,
    node_links: BTreeMap<NodeId, usize>,
    pair_links: BTreeMap<(NodeId, NodeId), usize>,
}

impl fmt::Debug for NetworkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkModel")
            .field("rules", &self.rules.len())
            .field("default_link", &self.links[0])
            .field("node_links", &self.node_links.len())
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
            node_links: BTreeMap::new(),
            pair_links: BTreeMap::new(),
        }
    }

    fn intern(&mut self, link: LinkSpec) -> usize {
        self.links
            .iter()
            .position(|l| *l == link)
            .unwrap_or_else(|| {
                self.links.push(link);
                self.links.len() - 1
            })
    }

    /// Sets `node`'s access link (shared links are stored once).
    pub fn set_node_link(&mut self, node: NodeId, link: LinkSpec) {
        let k = self.intern(link);
        self.node_links.insert(node, k);
    }

    /// Sets the link used for messages from `src` to `dst`, instead of their access links.
    pub fn set_pair_link(&mut self, src: NodeId, dst: NodeId, link: LinkSpec) {
        let k = self.intern(link);
        self.pair_links.insert((src, dst), k);
    }

    /// Installs a rule after the existing ones.
    pub fn rule(&mut self, rule: impl Rule + 'static) {
        self.rules.push(Box::new(rule));
    }

    fn access(&self, node: NodeId) -> &LinkSpec {
        &self.links[self.node_links.get(&node).copied().unwrap_or(0)]
    }

    /// The delay of `env` sent at `now`, or why it is lost.
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
        // Fixed draw order: loss, then latencies, then jitters.
        let u: f64 = rng.random();
        let bytes = env.bytes as f64;
        let (loss, ms) = match self.pair_links.get(&(env.src, env.dst)) {
            Some(&k) => {
                let l = &self.links[k];
                let latency = l.latency.sample(rng);
                let jitter = rng.random::<f64>() * l.jitter_ms;
                let transmit = bytes / l.up_bytes_per_sec.min(l.down_bytes_per_sec) * 1e3;
                (l.loss, latency + jitter + transmit)
            }
            None => {
                let (s, d) = (self.access(env.src), self.access(env.dst));
                let latency = s.latency.sample(rng) + d.latency.sample(rng);
                let jitter = rng.random::<f64>() * s.jitter_ms + rng.random::<f64>() * d.jitter_ms;
                let transmit = bytes / s.up_bytes_per_sec.min(d.down_bytes_per_sec) * 1e3;
                (
                    1.0 - (1.0 - s.loss) * (1.0 - d.loss),
                    latency + jitter + transmit,
                )
            }
        };
        if u < loss {
            Err(DropReason::Loss)
        } else {
            Ok(SimDuration::from_secs_f64(ms / 1e3))
        }
    }
}

/// A link given by preset name or in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LinkConfig {
    /// A [`LinkSpec::preset`] name.
    Preset(String),
    /// A full link.
    Spec(LinkSpec),
}

impl LinkConfig {
    fn resolve(&self, field: &str) -> Result<LinkSpec, NetworkError> {
        let link = match self {
            LinkConfig::Preset(name) => LinkSpec::preset(name)?,
            LinkConfig::Spec(spec) => spec.clone(),
        };
        link.validate(field)?;
        Ok(link)
    }
}

/// Access links for a list of nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLinks {
    /// The nodes.
    pub nodes: Vec<u32>,
    /// Their link.
    pub link: LinkConfig,
}

/// An outage window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    /// Affected nodes; absent for all.
    #[serde(default)]
    pub nodes: Option<Vec<u32>>,
    /// Start \[s\].
    pub from_s: f64,
    /// End \[s\].
    pub until_s: f64,
}

/// A partition window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// The groups of node ids.
    pub groups: Vec<Vec<u32>>,
    /// Start \[s\].
    pub from_s: f64,
    /// End \[s\].
    pub until_s: f64,
}

/// The network as configured in TOML (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Every node's link unless overridden.
    pub default: LinkConfig,
    /// Per-node access links.
    #[serde(default)]
    pub links: Vec<NodeLinks>,
    /// Outage windows.
    #[serde(default)]
    pub outages: Vec<OutageConfig>,
    /// Partitions.
    #[serde(default)]
    pub partitions: Vec<PartitionConfig>,
}

fn window(field: &str, from_s: f64, until_s: f64) -> Result<(SimTime, SimTime), NetworkError> {
    non_negative(&format!("{field}.from_s"), from_s)?;
    if until_s.is_nan() || until_s < from_s {
        return Err(NetworkError::Invalid {
            field: format!("{field}.until_s"),
            value: until_s.to_string(),
            reason: "must be ≥ from_s",
        });
    }
    let t = |s: f64| SimTime::ZERO + SimDuration::from_secs_f64(s);
    Ok((t(from_s), t(until_s)))
}

impl NetworkConfig {
    /// Parses TOML; errors name `source_name` and the offending key.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, NetworkError> {
        toml::from_str(text).map_err(|e| NetworkError::Toml {
            source_name: source_name.into(),
            message: e.to_string(),
        })
    }

    /// The validated model.
    pub fn build(&self) -> Result<NetworkModel, NetworkError> {
        let mut model = NetworkModel::new(self.default.resolve("default")?);
        for (i, l) in self.links.iter().enumerate() {
            let link = l.link.resolve(&format!("links[{i}].link"))?;
            for &n in &l.nodes {
                model.set_node_link(NodeId(n), link.clone());
            }
        }
        for (i, o) in self.outages.iter().enumerate() {
            let w = window(&format!("outages[{i}]"), o.from_s, o.until_s)?;
            let nodes = o
                .nodes
                .as_ref()
                .map(|n| n.iter().map(|&k| NodeId(k)).collect());
            model.rule(Outage {
                nodes,
                windows: vec![w],
            });
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let (from, until) = window(&format!("partitions[{i}]"), p.from_s, p.until_s)?;
            let groups = p
                .groups
                .iter()
                .map(|g| g.iter().map(|&k| NodeId(k)).collect())
                .collect();
            model.rule(NetworkPartition {
                groups,
                from,
                until,
            });
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageId, Seed, millis};
    use proptest::prelude::*;

    fn env(src: u32, dst: u32, bytes: u64) -> Envelope {
        Envelope {
            id: MessageId {
                src: NodeId(src),
                seq: 0,
            },
            src: NodeId(src),
            dst: NodeId(dst),
            sent_at: SimTime::ZERO,
            bytes,
        }
    }

    fn rng() -> ChaCha8Rng {
        Seed(1).stream(NodeId(0), crate::Purpose::NETWORK)
    }

    #[test]
    fn fixed_links_add_latency_and_transmission() {
        let link = LinkSpec {
            up_bytes_per_sec: 1e6,
            down_bytes_per_sec: 2e6,
            ..LinkSpec::latency(millis(10))
        };
        let mut model = NetworkModel::new(link);
        // 10 ms + 10 ms latency, 1e5 bytes at min(1e6 up, 2e6 down) = 100 ms.
        assert_eq!(
            model.route(&env(0, 1, 100_000), SimTime::ZERO, &mut rng()),
            Ok(millis(120))
        );
        model.set_pair_link(NodeId(0), NodeId(1), LinkSpec::latency(millis(3)));
        assert_eq!(
            model.route(&env(0, 1, 100_000), SimTime::ZERO, &mut rng()),
            Ok(millis(3))
        );
        assert_eq!(
            model.route(&env(1, 0, 0), SimTime::ZERO, &mut rng()),
            Ok(millis(20))
        );
    }

    #[test]
    fn rules_run_in_order_and_closures_are_rules() {
        let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
        model.rule(|e: &Envelope, _now: SimTime| {
            if e.dst == NodeId(9) {
                Verdict::Drop(DropReason::Custom("blackhole".into()))
            } else {
                Verdict::Pass
            }
        });
        model.rule(|_: &Envelope, _now: SimTime| Verdict::Deliver(millis(42)));
        model.rule(|_: &Envelope, _now: SimTime| Verdict::Drop(DropReason::Loss));
        assert_eq!(
            model.route(&env(0, 9, 1), SimTime::ZERO, &mut rng()),
            Err(DropReason::Custom("blackhole".into()))
        );
        assert_eq!(
            model.route(&env(0, 1, 1), SimTime::ZERO, &mut rng()),
            Ok(millis(42))
        );
    }

    #[test]
    fn outages_and_partitions_drop_in_their_windows_only() {
        let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
        let t = |s| SimTime::ZERO + crate::secs(s);
        model.rule(Outage {
            nodes: Some([NodeId(3)].into()),
            windows: vec![(t(10), t(20))],
        });
        model.rule(NetworkPartition {
            groups: vec![[NodeId(0)].into(), [NodeId(1)].into()],
            from: t(0),
            until: t(5),
        });
        let r = |m: &mut NetworkModel, e, now| m.route(&e, now, &mut rng());
        assert_eq!(r(&mut model, env(3, 0, 1), t(15)), Err(DropReason::Outage));
        assert!(r(&mut model, env(3, 0, 1), t(25)).is_ok());
        assert!(r(&mut model, env(2, 0, 1), t(15)).is_ok());
        assert_eq!(
            r(&mut model, env(0, 1, 1), t(1)),
            Err(DropReason::Partition)
        );
        assert!(r(&mut model, env(0, 2, 1), t(1)).is_ok());
        assert!(r(&mut model, env(0, 1, 1), t(6)).is_ok());
    }

    proptest! {
        #[test]
        fn delays_respect_the_latency_floor_and_loss_extremes(seed in any::<u64>(), median in 0.0f64..100.0, bytes in 0u64..1_000_000) {
            let link = |loss| LinkSpec {
                latency: Latency::LogNormal { median_ms: median, sigma: 0.5 },
                jitter_ms: 3.0,
                up_bytes_per_sec: 1e6,
                down_bytes_per_sec: 1e6,
                loss,
            };
            let mut r = Seed(seed).stream(NodeId(0), crate::Purpose::NETWORK);
            let floor = SimDuration::from_secs_f64(bytes as f64 / 1e6);
            let d = NetworkModel::new(link(0.0)).route(&env(0, 1, bytes), SimTime::ZERO, &mut r).unwrap();
            prop_assert!(d.as_micros() + 1 >= floor.as_micros());
            prop_assert_eq!(NetworkModel::new(link(1.0)).route(&env(0, 1, bytes), SimTime::ZERO, &mut r), Err(DropReason::Loss));
        }

        #[test]
        fn same_stream_same_verdict(seed in any::<u64>()) {
            let mut model = NetworkModel::new(LinkSpec::preset("cellular-4g").unwrap());
            let a = model.route(&env(0, 1, 5000), SimTime::ZERO, &mut Seed(seed).stream(NodeId(0), crate::Purpose::NETWORK));
            let b = model.route(&env(0, 1, 5000), SimTime::ZERO, &mut Seed(seed).stream(NodeId(0), crate::Purpose::NETWORK));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn toml_config_builds_and_errors_name_the_key() {
        let text = r#"
            [default]
            latency = { kind = "log_normal", median_ms = 40.0, sigma = 0.5 }
            jitter_ms = 5.0
            up_bytes_per_sec = 1.25e6
            down_bytes_per_sec = 5e6
            loss = 0.01

            [[links]]
            nodes = [0]
            link = "datacenter"

            [[outages]]
            nodes = [3, 4]
            from_s = 600.0
            until_s = 1200.0

            [[partitions]]
            groups = [[0, 1, 2], [3, 4]]
            from_s = 0.0
            until_s = 60.0
        "#;
        let config = NetworkConfig::from_toml_str(text, "net.toml").unwrap();
        let model = config.build().unwrap();
        assert_eq!(model.rules.len(), 2);
        let bad = text.replace("loss = 0.01", "loss = 1.5");
        let err = NetworkConfig::from_toml_str(&bad, "net.toml")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("default.loss"), "{err}");
        let unknown = text.replace("jitter_ms", "jitter");
        let err = NetworkConfig::from_toml_str(&unknown, "net.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("net.toml"), "{err}");
        let preset = text.replace("\"datacenter\"", "\"carrier-pigeon\"");
        let err = NetworkConfig::from_toml_str(&preset, "net.toml")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
    }
}
