//! The network as written in TOML, validated once into a [`NetworkModel`].

use super::{LinkSpec, NetworkError, NetworkModel, NetworkPartition, Outage};
use crate::{NodeId, SimDuration, SimTime};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// A link given by preset name (`"wifi"`) or in full (a table).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LinkConfig {
    /// A [`LinkSpec::preset`] name.
    Preset(String),
    /// A full link.
    Spec(LinkSpec),
}

impl LinkConfig {
    /// The validated link; errors name `field` (`links[2].link`).
    pub fn resolve(&self, field: &str) -> Result<LinkSpec, NetworkError> {
        let link = match self {
            LinkConfig::Preset(name) => {
                LinkSpec::preset(name).map_err(|_| NetworkError::Invalid {
                    field: field.into(),
                    value: format!("\"{name}\""),
                    reason: format!(
                        "unknown link preset; known: {}",
                        LinkSpec::PRESET_NAMES.join(", ")
                    ),
                })?
            }
            LinkConfig::Spec(spec) => spec.clone(),
        };
        link.validate_at(field)?;
        Ok(link)
    }
}

impl<'de> Deserialize<'de> for LinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            match name_or_table(d, "a link preset name or a link table")? {
                NameOr::Name(name) => LinkConfig::Preset(name),
                NameOr::Table(spec) => LinkConfig::Spec(spec),
            },
        )
    }
}

/// A preset name or a full value, as [`name_or_table`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum NameOr<T> {
    /// A string: a preset's name.
    Name(String),
    /// A table (or object): the full value.
    Table(T),
}

/// Deserializes a string as a name and a map as a `T`. Unlike `#[serde(untagged)]`, which
/// only says that nothing matched, this keeps `T`'s own error (the unknown or mistyped key,
/// with its position).
pub fn name_or_table<'de, D, T>(d: D, expecting: &'static str) -> Result<NameOr<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct NameOrTable<T>(&'static str, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for NameOrTable<T> {
        type Value = NameOr<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(NameOr::Name(v.to_owned()))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(NameOr::Table)
        }
    }

    d.deserialize_any(NameOrTable(expecting, PhantomData))
}

/// Access links for some nodes: those listed in `nodes` and those in `node_range`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLinks {
    /// Node ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u32>,
    /// A half-open range of node ids `[first, end)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_range: Option<[u32; 2]>,
    /// Their link.
    pub link: LinkConfig,
}

/// An outage window of some nodes (all when neither `nodes` nor `node_range` is given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    /// Node ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u32>,
    /// A half-open range of node ids `[first, end)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_range: Option<[u32; 2]>,
    /// Start \[s\].
    pub from_s: f64,
    /// End, exclusive \[s\].
    pub until_s: f64,
}

/// A partition window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// The groups of node ids; nodes in no group are unaffected.
    pub groups: Vec<Vec<u32>>,
    /// Start \[s\].
    pub from_s: f64,
    /// End, exclusive \[s\].
    pub until_s: f64,
}

/// The network as configured in TOML: durations in milliseconds, bandwidth in bytes/s,
/// windows in seconds, node ranges half-open. [`NetworkConfig::build`] validates it into a
/// [`NetworkModel`]; every error names the key or field path and the value.
///
/// ```toml
#[doc = include_str!("example.toml")]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Every node's access link unless overridden.
    pub default: LinkConfig,
    /// Per-node access links; later entries override earlier ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<NodeLinks>,
    /// Outage windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<OutageConfig>,
    /// Partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionConfig>,
}

impl NetworkConfig {
    /// Parses TOML; errors name `source_name`, the offending key and its line.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, NetworkError> {
        toml::from_str(text).map_err(|e| NetworkError::Toml {
            source_name: source_name.into(),
            message: e.to_string(),
        })
    }

    /// The validated model: links first, then outage rules, then partition rules, each in
    /// file order.
    pub fn build(&self) -> Result<NetworkModel, NetworkError> {
        let mut model = NetworkModel::new(self.default.resolve("default")?);
        for (i, l) in self.links.iter().enumerate() {
            let field = format!("links[{i}]");
            let link = l.link.resolve(&format!("{field}.link"))?;
            let nodes = selection(&field, &l.nodes, l.node_range)?;
            if nodes.is_empty() {
                return Err(invalid(field, "no nodes", "give `nodes` or `node_range`"));
            }
            for n in nodes {
                model.set_node_link(n, link.clone());
            }
        }
        install_rules(&self.outages, &self.partitions, &mut model)?;
        Ok(model)
    }
}

/// Installs `outages` then `partitions` on `model`, each in order, as [`NetworkConfig`]
/// does: for a network whose links are set elsewhere (an experiment's fleet). Errors name
/// `outages[i]` or `partitions[i]` and the field.
pub fn install_rules(
    outages: &[OutageConfig],
    partitions: &[PartitionConfig],
    model: &mut NetworkModel,
) -> Result<(), NetworkError> {
    for (i, o) in outages.iter().enumerate() {
        let field = format!("outages[{i}]");
        let window = window(&field, o.from_s, o.until_s)?;
        let nodes = selection(&field, &o.nodes, o.node_range)?;
        model.rule(Outage {
            nodes: (!nodes.is_empty()).then(|| nodes.into_iter().collect()),
            windows: vec![window],
        });
    }
    for (i, p) in partitions.iter().enumerate() {
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
    Ok(())
}

fn invalid(field: String, value: impl ToString, reason: &str) -> NetworkError {
    NetworkError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The nodes of `nodes` and `range`, in that order.
fn selection(
    field: &str,
    nodes: &[u32],
    range: Option<[u32; 2]>,
) -> Result<Vec<NodeId>, NetworkError> {
    let mut out: Vec<NodeId> = nodes.iter().map(|&k| NodeId(k)).collect();
    if let Some([first, end]) = range {
        if first > end {
            let value = format!("[{first}, {end}]");
            return Err(invalid(
                format!("{field}.node_range"),
                value,
                "need first ≤ end",
            ));
        }
        out.extend((first..end).map(NodeId));
    }
    Ok(out)
}

fn window(field: &str, from_s: f64, until_s: f64) -> Result<(SimTime, SimTime), NetworkError> {
    if !(from_s.is_finite() && from_s >= 0.0) {
        return Err(invalid(
            format!("{field}.from_s"),
            from_s,
            "must be finite and ≥ 0",
        ));
    }
    if until_s.is_nan() || until_s < from_s {
        return Err(invalid(
            format!("{field}.until_s"),
            until_s,
            "must be ≥ from_s",
        ));
    }
    // A bound beyond the clock's range (`until_s = inf`) never comes.
    let t = |s: f64| {
        SimTime::ZERO.saturating_add(SimDuration::from_secs_f64(s).unwrap_or(SimDuration::MAX))
    };
    Ok((t(from_s), t(until_s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DropReason, Envelope, MessageId, Purpose, Seed};

    const EXAMPLE: &str = include_str!("example.toml");

    fn err(text: &str) -> String {
        match NetworkConfig::from_toml_str(text, "net.toml") {
            Err(e) => e.to_string(),
            Ok(config) => config
                .build()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_documented_example_builds() {
        let config = NetworkConfig::from_toml_str(EXAMPLE, "example.toml").unwrap();
        assert_eq!(config.links[1].node_range, Some([1, 101]));
        let mut model = config.build().unwrap();
        assert_eq!(model.rule_count(), 2);
        assert!(model.node_link(NodeId(200)).shared);
        let text = EXAMPLE.replace("shared = true", "shared = false");
        let unshared = NetworkConfig::from_toml_str(&text, "example.toml").unwrap();
        assert!(!unshared.build().unwrap().node_link(NodeId(200)).shared);
        let env = |src, dst, sent_at| Envelope {
            id: MessageId {
                src: NodeId(src),
                seq: 0,
            },
            src: NodeId(src),
            dst: NodeId(dst),
            sent_at,
            bytes: 1_000,
        };
        let mut rng = Seed(3).stream(NodeId(0), Purpose::NETWORK);
        let at = |s| SimTime::ZERO + crate::secs(s);
        let r = model.route(&env(3, 0, at(700)), at(700), &mut rng);
        assert_eq!(r, Err(DropReason::Outage));
        let r = model.route(&env(0, 3, at(30)), at(30), &mut rng);
        assert_eq!(r, Err(DropReason::Partition));
        // Datacenter (0.5 ms) to a 3G phone (150 ms median): well above the datacenter floor.
        let d = model.route(&env(0, 50, at(70)), at(70), &mut rng).unwrap();
        assert!(d > crate::millis(2), "{d}");
    }

    #[test]
    fn configs_round_trip_through_toml() {
        let config = NetworkConfig::from_toml_str(EXAMPLE, "example.toml").unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(
            NetworkConfig::from_toml_str(&text, "again.toml").unwrap(),
            config
        );
        let unlimited = NetworkConfig {
            default: LinkConfig::Spec(LinkSpec::latency(crate::millis(3))),
            links: Vec::new(),
            outages: Vec::new(),
            partitions: Vec::new(),
        };
        let text = toml::to_string(&unlimited).unwrap();
        assert!(text.contains("inf"), "{text}");
        assert_eq!(
            NetworkConfig::from_toml_str(&text, "inf.toml").unwrap(),
            unlimited
        );
    }

    #[test]
    fn parse_errors_name_the_source_key_and_line() {
        let e = err(&EXAMPLE.replace("jitter_ms = 5.0", "jitter = 5.0"));
        assert!(
            e.contains("net.toml") && e.contains("`jitter`") && e.contains("line 4"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("kind = \"fixed\", ms", "kind = \"fixed\", msec"));
        assert!(e.contains("`msec`"), "{e}");
        let e = err(&EXAMPLE.replace("[[outages]]", "[[outage]]"));
        assert!(e.contains("`outage`"), "{e}");
        let e = err(&EXAMPLE.replace("loss = 0.01", "loss = \"high\""));
        assert!(e.contains("loss") || e.contains("line 7"), "{e}");
        let e = err(&EXAMPLE.replace("shared = true", "shared = \"yes\""));
        assert!(
            e.contains("net.toml")
                && e.contains("line 8")
                && e.contains("shared = \"yes\"")
                && e.contains("expected a boolean"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_are_named_with_their_path() {
        let e = err(&EXAMPLE.replace("loss = 0.01", "loss = 1.5"));
        assert!(e.contains("default.loss") && e.contains("1.5"), "{e}");
        let e = err(&EXAMPLE.replace("sigma = 0.5", "sigma = nan"));
        assert!(
            e.contains("default.latency.sigma") && e.contains("NaN"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("down_bytes_per_sec = 5e6", "down_bytes_per_sec = -1.0"));
        assert!(
            e.contains("default.down_bytes_per_sec") && e.contains("-1"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("loss = 0.2", "loss = -0.2"));
        assert!(e.contains("links[2].link.loss"), "{e}");
        let e = err(&EXAMPLE.replace("\"cellular-3g\"", "\"carrier-pigeon\""));
        assert!(
            e.contains("links[1].link") && e.contains("carrier-pigeon"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("[1, 101]", "[101, 1]"));
        assert!(e.contains("links[1].node_range"), "{e}");
        let e = err(&EXAMPLE.replace("until_s = 1200.0", "until_s = 100.0"));
        assert!(e.contains("outages[0].until_s") && e.contains("100"), "{e}");
        let e = err(&EXAMPLE.replace("nodes = [0]\n", ""));
        assert!(e.contains("links[0]") && e.contains("no nodes"), "{e}");
    }
}
