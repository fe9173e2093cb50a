//! The fleet: groups of clients with their devices and links, and the server's.
//!
//! A configuration describes the clients either as **groups** (`[[fleet.groups]]`: a count
//! or a fraction of the clients, a device, a link, optionally a trace file) or with the
//! two-tier keys of earlier versions (`strong`, `strong_device`, `weak_device`, …), which
//! are read as two groups, `strong` then `weak`. Nothing marks a client strong: a client is
//! strong when its device's memory holds the target model's training footprint.

use crate::{ConfigError, limits};
use flotilla_sim::{
    Availability, DeviceProfile, DeviceTrace, LinkConfig, LinkSpec, NameOr, NetworkError, NodeId,
    Purpose, Seed, name_or_table,
};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Deserializer, Serialize};
use std::ops::Range;
use std::path::PathBuf;

/// Clients, their devices and links, and the server's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Number of clients.
    pub clients: usize,
    /// Groups of clients, in client order (absent: the two-tier keys below).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupConfig>,
    /// Two-tier fleets: clients `0..strong` get `strong_device`, the rest `weak_device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong: Option<usize>,
    /// Two-tier fleets: device preset of strong clients (default `phone-high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_device: Option<String>,
    /// Two-tier fleets: device preset of weak clients (default `phone-low`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weak_device: Option<String>,
    /// Two-tier fleets: memory weak devices can give to training \[MB\], overriding the
    /// preset's: the knob that makes the target model not fit them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weak_memory_mb: Option<f64>,
    /// Two-tier fleets: memory strong devices can give to training \[MB\].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_memory_mb: Option<f64>,
    /// Two-tier fleets: probability that a device drops out of a job, overriding the
    /// presets'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// Two-tier fleets: every client's link (default `wifi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkConfig>,
    /// The server's device and link.
    #[serde(default)]
    pub server: ServerConfig,
    /// Clients announce themselves again this many virtual seconds after their first
    /// announcement (then twice as long, up to ten times) until the server has sent them
    /// work, so a lost announcement does not keep a client out of the run (absent: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoin_s: Option<f64>,
}

/// The two-tier keys, which `fleet.groups` replaces.
const TWO_TIER_KEYS: [&str; 7] = [
    "strong",
    "strong_device",
    "weak_device",
    "weak_memory_mb",
    "strong_memory_mb",
    "dropout",
    "link",
];

/// The server's device and link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Its device: a preset name or a device table (default `server`).
    #[serde(default = "server_device")]
    pub device: DeviceConfig,
    /// Its access link: a preset name or a link table (default `datacenter`).
    #[serde(default = "server_link")]
    pub link: LinkConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            device: server_device(),
            link: server_link(),
        }
    }
}

fn server_device() -> DeviceConfig {
    DeviceConfig::Preset("server".into())
}
fn server_link() -> LinkConfig {
    LinkConfig::Preset("datacenter".into())
}
fn client_link() -> LinkConfig {
    LinkConfig::Preset("wifi".into())
}

/// Some of the clients, with one kind of device and link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// A name for reports (`edge`, `low phones`).
    pub name: String,
    /// How many clients (give this or `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Which share of `fleet.clients`, in (0, 1] (give this or `count`); shares are
    /// rounded by largest remainder so the groups add up to `fleet.clients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The device: a preset name or a device table.
    pub device: DeviceConfig,
    /// The access link: a preset name or a link table (default `wifi`).
    #[serde(default = "client_link")]
    pub link: LinkConfig,
    /// A device trace file (JSON Lines; relative paths are from the config file's
    /// folder): the group's `i`-th client takes the trace's `i`-th device, which may set
    /// its speed, memory, dropout, online intervals and link on top of the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
}

/// A device: a preset name (`"phone-low"`) or a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DeviceConfig {
    /// A [`DeviceProfile::preset`] name.
    Preset(String),
    /// A device table.
    Spec(DeviceSpec),
}

impl<'de> Deserialize<'de> for DeviceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            match name_or_table(d, "a device preset name or a device table")? {
                NameOr::Name(name) => DeviceConfig::Preset(name),
                NameOr::Table(spec) => DeviceConfig::Spec(spec),
            },
        )
    }
}

/// A device table: a preset to start from (optional) and what differs from it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// The preset the other keys modify (absent: `speed` and `memory_mb` are required,
    /// jitter and dropout are 0, the device is always available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Sustained training throughput \[FLOP/s\]: a number, or a distribution each client
    /// draws its own speed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
    /// Memory available for training \[MB\].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<f64>,
    /// σ of the log-normal factor (median 1) on each job's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_jitter: Option<f64>,
    /// Probability that a job is abandoned mid-way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// When the device is online: `{ kind = "always" }`, `{ kind = "periodic", period_s,
    /// on_s, phase_s }` or `{ kind = "markov", mean_on_s, mean_off_s, start_on }` (a trace
    /// file gives per-device intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
}

/// A device speed \[FLOP/s\]: fixed (a number) or drawn per client (a table tagged by
/// `kind`), from the client's own set-up stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Speed {
    /// Every client of the group has this speed.
    Fixed(f64),
    /// A distribution.
    Drawn(SpeedDistribution),
}

/// A distribution of device speeds \[FLOP/s\].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SpeedDistribution {
    /// `median · exp(σ·z)`, `z` standard normal: heavy-tailed, as phone benchmark scores.
    LogNormal {
        /// Median \[FLOP/s\].
        median: f64,
        /// σ of the underlying normal.
        sigma: f64,
    },
    /// Uniform in `[min, max]`.
    Uniform {
        /// Lowest \[FLOP/s\].
        min: f64,
        /// Highest \[FLOP/s\].
        max: f64,
    },
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct SpeedVisitor;
        impl<'de> Visitor<'de> for SpeedVisitor {
            type Value = Speed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a speed in FLOP/s or a distribution table")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Speed, E> {
                Ok(Speed::Fixed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Speed, E> {
                Ok(Speed::Fixed(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Speed, E> {
                Ok(Speed::Fixed(v as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Speed, A::Error> {
                SpeedDistribution::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Speed::Drawn)
            }
        }
        d.deserialize_any(SpeedVisitor)
    }
}

/// Largest σ of a log-normal speed: e^(3·5) spans 15 orders of magnitude already.
const MAX_SPEED_SIGMA: f64 = 5.0;

impl Speed {
    /// The median speed \[FLOP/s\] (a fixed speed is its own median).
    pub fn median(&self) -> f64 {
        match *self {
            Speed::Fixed(v) => v,
            Speed::Drawn(SpeedDistribution::LogNormal { median, .. }) => median,
            Speed::Drawn(SpeedDistribution::Uniform { min, max }) => 0.5 * (min + max),
        }
    }

    /// One client's speed: no draw for a fixed speed, one from `rng` otherwise.
    fn draw(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Speed::Fixed(v) => v,
            Speed::Drawn(SpeedDistribution::LogNormal { median, sigma }) => {
                let z: f64 = StandardNormal.sample(rng);
                median * (sigma * z).exp()
            }
            Speed::Drawn(SpeedDistribution::Uniform { min, max }) => {
                min + (max - min) * rng.random::<f64>()
            }
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    format!("{key}{name}"),
                    v,
                    "must be a finite speed > 0 [FLOP/s]",
                ))
            }
        };
        match *self {
            Speed::Fixed(v) => positive("", v),
            Speed::Drawn(SpeedDistribution::LogNormal { median, sigma }) => {
                positive(".median", median)?;
                if !(0.0..=MAX_SPEED_SIGMA).contains(&sigma) {
                    return Err(ConfigError::new(
                        format!("{key}.sigma"),
                        sigma,
                        format!("must be in [0, {MAX_SPEED_SIGMA}]"),
                    ));
                }
                // The 5σ tails must stay finite speeds.
                positive(".median", median * (MAX_SPEED_SIGMA * sigma).exp())
            }
            Speed::Drawn(SpeedDistribution::Uniform { min, max }) => {
                positive(".min", min)?;
                positive(".max", max)?;
                if min > max {
                    return Err(ConfigError::new(
                        format!("{key}.min"),
                        min,
                        format!("is above max = {max}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl DeviceConfig {
    /// The group's device with its speed at the median, checked; errors name `key`
    /// (`fleet.groups[1].device`) and the field under it.
    pub fn base(&self, key: &str) -> Result<DeviceProfile, ConfigError> {
        let preset = |name: &str, key: &str| {
            DeviceProfile::preset(name).map_err(|e| ConfigError::new(key, name, e.to_string()))
        };
        let profile = match self {
            DeviceConfig::Preset(name) => preset(name, key)?,
            DeviceConfig::Spec(spec) => {
                let mut profile = match &spec.preset {
                    Some(name) => preset(name, &format!("{key}.preset"))?,
                    None => {
                        for (field, given) in [
                            ("speed", spec.speed.is_some()),
                            ("memory_mb", spec.memory_mb.is_some()),
                        ] {
                            if !given {
                                return Err(ConfigError::new(
                                    format!("{key}.{field}"),
                                    "(missing)",
                                    "is required when the device names no preset",
                                ));
                            }
                        }
                        DeviceProfile {
                            flops_per_sec: 1.0,
                            compute_jitter: 0.0,
                            memory_bytes: 0,
                            availability: Availability::Always,
                            dropout: 0.0,
                        }
                    }
                };
                if let Some(speed) = &spec.speed {
                    speed.validate(&format!("{key}.speed"))?;
                    profile.flops_per_sec = speed.median();
                }
                if let Some(mb) = spec.memory_mb {
                    profile.memory_bytes = memory_bytes(&format!("{key}.memory_mb"), mb)?;
                }
                if let Some(jitter) = spec.compute_jitter {
                    profile.compute_jitter = jitter;
                }
                if let Some(p) = spec.dropout {
                    profile.dropout = p;
                }
                if let Some(a) = &spec.availability {
                    profile.availability = a.clone();
                }
                profile
            }
        };
        profile.validate().map_err(|e| device_error(key, e))?;
        Ok(profile)
    }

    /// The speed clients draw from, if the group's speed is not fixed.
    fn drawn_speed(&self) -> Option<Speed> {
        match self {
            DeviceConfig::Spec(DeviceSpec {
                speed: Some(speed @ Speed::Drawn(_)),
                ..
            }) => Some(*speed),
            _ => None,
        }
    }
}

/// `mb` megabytes as bytes, bounded by [`limits::DEVICE_MEMORY_MB`].
fn memory_bytes(key: &str, mb: f64) -> Result<u64, ConfigError> {
    if mb > 0.0 && mb <= limits::DEVICE_MEMORY_MB {
        Ok((mb * 1e6) as u64)
    } else {
        Err(ConfigError::new(
            key,
            mb,
            format!("must be > 0 and at most {:e}", limits::DEVICE_MEMORY_MB),
        ))
    }
}

/// A device validation error as a config error under `key`.
fn device_error(key: &str, e: flotilla_sim::DeviceError) -> ConfigError {
    match e {
        flotilla_sim::DeviceError::Invalid {
            field,
            value,
            reason,
        } => {
            // The profile's field names, as the device table spells them.
            let field = match field.as_str() {
                "flops_per_sec" => "speed".to_string(),
                "memory_bytes" => "memory_mb".to_string(),
                _ => field,
            };
            ConfigError::new(format!("{key}.{field}"), value, reason)
        }
        other => ConfigError::new(key, "(device)", other.to_string()),
    }
}

/// A link, checked; errors name `key` and the field under it.
pub(crate) fn resolve_link(link: &LinkConfig, key: &str) -> Result<LinkSpec, ConfigError> {
    link.resolve(key).map_err(|e| match e {
        NetworkError::Invalid {
            field,
            value,
            reason,
        } => ConfigError::new(field, value, reason),
        other => ConfigError::new(key, "(link)", other.to_string()),
    })
}

/// One group as the run sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The config key it came from (`fleet.groups[2]`, or `fleet.strong_device` for a
    /// two-tier fleet).
    pub key: String,
    /// Its clients' indices.
    pub clients: Range<usize>,
    /// Its device, speed at the median, before any trace.
    pub device: DeviceProfile,
    /// The speed its clients draw, if not fixed.
    pub speed: Option<Speed>,
    /// Its link, before any trace.
    pub link: LinkSpec,
    /// Its trace file.
    pub trace: Option<PathBuf>,
}

/// One client's device and link.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Index of its group.
    pub group: usize,
    /// Its device.
    pub device: DeviceProfile,
    /// Its access link.
    pub link: LinkSpec,
}

impl FleetConfig {
    /// Whether the fleet is given by the two-tier keys rather than groups.
    pub fn is_two_tier(&self) -> bool {
        self.groups.is_empty()
    }

    /// Checks the fleet without reading any file, and returns its groups.
    pub fn groups(&self) -> Result<Vec<Group>, ConfigError> {
        if !(1..=limits::CLIENTS).contains(&self.clients) {
            return Err(ConfigError::new(
                "fleet.clients",
                self.clients,
                format!("must be in 1..={}", limits::CLIENTS),
            ));
        }
        if self.is_two_tier() {
            self.two_tier_groups()
        } else {
            self.configured_groups()
        }
    }

    fn two_tier_groups(&self) -> Result<Vec<Group>, ConfigError> {
        let Some(strong) = self.strong else {
            return Err(ConfigError::new(
                "fleet.strong",
                "(missing)",
                "give the number of strong clients, or describe the fleet with [[fleet.groups]]",
            ));
        };
        if strong > self.clients {
            return Err(ConfigError::new(
                "fleet.strong",
                strong,
                format!("more strong clients than clients ({})", self.clients),
            ));
        }
        if let Some(p) = self.dropout
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ConfigError::new("fleet.dropout", p, "must be in [0, 1]"));
        }
        let link = resolve_link(self.link.as_ref().unwrap_or(&client_link()), "fleet.link")?;
        let tier = |key: &str, name: &Option<String>, default: &str, memory_key, memory| {
            let name = name.as_deref().unwrap_or(default);
            let mut device = DeviceProfile::preset(name)
                .map_err(|e| ConfigError::new(key, name, e.to_string()))?;
            if let Some(mb) = memory {
                device.memory_bytes = memory_bytes(memory_key, mb)?;
            }
            if let Some(p) = self.dropout {
                device.dropout = p;
            }
            Ok::<_, ConfigError>(device)
        };
        let strong_device = tier(
            "fleet.strong_device",
            &self.strong_device,
            "phone-high",
            "fleet.strong_memory_mb",
            self.strong_memory_mb,
        )?;
        let weak_device = tier(
            "fleet.weak_device",
            &self.weak_device,
            "phone-low",
            "fleet.weak_memory_mb",
            self.weak_memory_mb,
        )?;
        let group = |name: &str, key: &str, clients, device| Group {
            name: name.into(),
            key: key.into(),
            clients,
            device,
            speed: None,
            link: link.clone(),
            trace: None,
        };
        Ok(vec![
            group("strong", "fleet.strong_device", 0..strong, strong_device),
            group(
                "weak",
                "fleet.weak_device",
                strong..self.clients,
                weak_device,
            ),
        ])
    }

    fn configured_groups(&self) -> Result<Vec<Group>, ConfigError> {
        let given = [
            self.strong.is_some(),
            self.strong_device.is_some(),
            self.weak_device.is_some(),
            self.weak_memory_mb.is_some(),
            self.strong_memory_mb.is_some(),
            self.dropout.is_some(),
            self.link.is_some(),
        ];
        if let Some(k) = given.iter().position(|g| *g) {
            return Err(ConfigError::new(
                format!("fleet.{}", TWO_TIER_KEYS[k]),
                "(set)",
                "is a two-tier key; with [[fleet.groups]] each group gives its own device \
                 and link, and strong clients are those whose memory holds the target",
            ));
        }
        let counts = self.counts()?;
        let mut groups = Vec::with_capacity(self.groups.len());
        let mut start = 0;
        for (i, (g, count)) in self.groups.iter().zip(counts).enumerate() {
            let key = format!("fleet.groups[{i}]");
            if let Some(j) = self.groups[..i].iter().position(|h| h.name == g.name) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    &g.name,
                    format!("repeats fleet.groups[{j}].name"),
                ));
            }
            let device = g.device.base(&format!("{key}.device"))?;
            let link = resolve_link(&g.link, &format!("{key}.link"))?;
            groups.push(Group {
                name: g.name.clone(),
                key,
                clients: start..start + count,
                device,
                speed: g.device.drawn_speed(),
                link,
                trace: g.trace.clone(),
            });
            start += count;
        }
        Ok(groups)
    }

    /// Each group's client count: counts as given, fractions of `clients` rounded by
    /// largest remainder (ties to the earlier group) so that the total is `clients`.
    fn counts(&self) -> Result<Vec<usize>, ConfigError> {
        let mut counts = vec![0; self.groups.len()];
        let mut shares: Vec<(usize, f64)> = Vec::new();
        let mut fixed = 0usize;
        let mut share_total = 0.0;
        for (i, g) in self.groups.iter().enumerate() {
            let key = format!("fleet.groups[{i}]");
            match (g.count, g.fraction) {
                (Some(n), None) => {
                    counts[i] = n;
                    fixed = fixed.saturating_add(n);
                }
                (None, Some(f)) if f > 0.0 && f <= 1.0 => {
                    shares.push((i, f * self.clients as f64));
                    share_total += f;
                }
                (None, Some(f)) => {
                    return Err(ConfigError::new(
                        format!("{key}.fraction"),
                        f,
                        "must be in (0, 1]",
                    ));
                }
                (Some(n), Some(_)) => {
                    return Err(ConfigError::new(
                        format!("{key}.count"),
                        n,
                        "give count or fraction, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        format!("{key}.count"),
                        "(missing)",
                        "give the group's count or fraction of fleet.clients",
                    ));
                }
            }
        }
        let total_share = fixed as f64 / self.clients as f64 + share_total;
        if (total_share - 1.0).abs() > 1e-9 {
            return Err(ConfigError::new(
                "fleet.groups",
                format!("{fixed} clients by count + fractions {share_total}"),
                format!(
                    "the groups must add up to fleet.clients = {} (they make {:.4} of it)",
                    self.clients, total_share
                ),
            ));
        }
        let mut remaining = self.clients - fixed.min(self.clients);
        for &(i, exact) in &shares {
            counts[i] = exact.floor() as usize;
            remaining -= counts[i].min(remaining);
        }
        let mut order: Vec<(usize, f64)> = shares
            .iter()
            .map(|&(i, exact)| (i, exact - exact.floor()))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, _) in order.into_iter().take(remaining) {
            counts[i] += 1;
        }
        if let Some(i) = counts.iter().position(|&n| n == 0) {
            return Err(ConfigError::new(
                format!("fleet.groups[{i}]"),
                &self.groups[i].name,
                format!("has no client out of fleet.clients = {}", self.clients),
            ));
        }
        Ok(counts)
    }

    /// The server's device and link, checked.
    pub fn server(&self) -> Result<(DeviceProfile, LinkSpec), ConfigError> {
        Ok((
            self.server.device.base("fleet.server.device")?,
            resolve_link(&self.server.link, "fleet.server.link")?,
        ))
    }
}

/// The devices and links of every client for one seed: each group's device, its speed
/// drawn per client when the group gives a distribution (from the client's own `SETUP`
/// stream, client `c` being node `c + 1`), then the group's trace device on top.
pub(crate) fn clients(groups: &[Group], traces: &[Option<DeviceTrace>], seed: u64) -> Vec<Client> {
    let mut clients = Vec::new();
    for (g, (group, trace)) in groups.iter().zip(traces).enumerate() {
        for (k, c) in group.clients.clone().enumerate() {
            let mut device = group.device.clone();
            if let Some(speed) = &group.speed {
                let mut rng = Seed(seed).stream(NodeId(c as u32 + 1), Purpose::SETUP);
                device.flops_per_sec = speed.draw(&mut rng);
            }
            let mut link = group.link.clone();
            if let Some(entry) = trace.as_ref().and_then(|t| t.devices.get(k)) {
                device = entry.profile_over(&device);
                if let Some(l) = &entry.link {
                    link = l.clone();
                }
            }
            clients.push(Client {
                group: g,
                device,
                link,
            });
        }
    }
    clients
}

/// The share of time a device is online: exact for always, periodic and Markov
/// availability (its stationary share), over the span of its intervals for a trace.
pub fn online_share(a: &Availability) -> f64 {
    match a {
        Availability::Always => 1.0,
        Availability::Periodic { period_s, on_s, .. } => on_s / period_s,
        Availability::Markov {
            mean_on_s,
            mean_off_s,
            ..
        } => mean_on_s / (mean_on_s + mean_off_s),
        Availability::Trace { on } => {
            let end = on.last().map_or(0.0, |(_, b)| *b);
            if end > 0.0 {
                on.iter().map(|(a, b)| b - a).sum::<f64>() / end
            } else {
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(text: &str) -> FleetConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn fractions_round_to_the_client_count() {
        let f = fleet(
            r#"clients = 10
            [[groups]]
            name = "a"
            fraction = 0.33
            device = "edge-gpu"
            [[groups]]
            name = "b"
            fraction = 0.33
            device = "phone-high"
            [[groups]]
            name = "c"
            fraction = 0.34
            device = "phone-low""#,
        );
        let groups = f.groups().unwrap();
        let sizes: Vec<usize> = groups.iter().map(|g| g.clients.len()).collect();
        assert_eq!(sizes, vec![3, 3, 4]);
        assert_eq!(groups[2].clients, 6..10);
    }

    #[test]
    fn drawn_speeds_are_per_client_and_seeded() {
        let f = fleet(
            r#"clients = 200
            [[groups]]
            name = "phones"
            count = 200
            device = { preset = "phone-low", speed = { kind = "log_normal", median = 2e9, sigma = 1.0 } }"#,
        );
        let groups = f.groups().unwrap();
        let a = clients(&groups, &[None], 7);
        assert_eq!(a, clients(&groups, &[None], 7), "same seed, same fleet");
        assert_ne!(a, clients(&groups, &[None], 8));
        let mut speeds: Vec<f64> = a.iter().map(|c| c.device.flops_per_sec).collect();
        speeds.sort_by(f64::total_cmp);
        let median = speeds[100];
        assert!((1.4e9..2.8e9).contains(&median), "{median}");
        assert!(speeds[199] / speeds[0] > 20.0, "heavy-tailed spread");
    }
}
