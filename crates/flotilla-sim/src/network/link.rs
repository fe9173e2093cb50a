//! One link's behaviour: latency, jitter, bandwidth and loss, with named presets.

use super::NetworkError;
use crate::SimDuration;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

/// One-way propagation latency. Its serde form is a table tagged by `kind`, durations in
/// milliseconds: `{ kind = "log_normal", median_ms = 40.0, sigma = 0.5 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Latency \[ms\].
        ms: f64,
    },
    /// Normal, clamped at zero.
    Normal {
        /// Mean \[ms\].
        mean_ms: f64,
        /// Standard deviation \[ms\].
        std_ms: f64,
    },
    /// Log-normal: `median · exp(σ·z)` with `z` standard normal.
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

    /// One draw \[ms\]: none for `Fixed`, one for every other kind.
    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Normal { mean_ms, std_ms } => {
                let z: f64 = StandardNormal.sample(rng);
                (mean_ms + std_ms * z).max(0.0)
            }
            Latency::LogNormal { median_ms, sigma } => {
                let z: f64 = StandardNormal.sample(rng);
                median_ms * (sigma * z).exp()
            }
            Latency::Exponential { mean_ms } => {
                let e: f64 = Exp1.sample(rng);
                mean_ms * e
            }
        }
    }

    fn validate_at(&self, field: &str) -> Result<(), NetworkError> {
        let checks: &[(&str, f64)] = match self {
            Latency::Fixed { ms } => &[("ms", *ms)],
            Latency::Normal { mean_ms, std_ms } => &[("mean_ms", *mean_ms), ("std_ms", *std_ms)],
            Latency::LogNormal { median_ms, sigma } => {
                &[("median_ms", *median_ms), ("sigma", *sigma)]
            }
            Latency::Exponential { mean_ms } => &[("mean_ms", *mean_ms)],
        };
        for (name, v) in checks {
            if !(v.is_finite() && *v >= 0.0) {
                return Err(invalid(
                    format!("{field}.{name}"),
                    *v,
                    "must be finite and ≥ 0",
                ));
            }
        }
        Ok(())
    }
}

fn invalid(field: String, value: f64, reason: &str) -> NetworkError {
    NetworkError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn unlimited() -> f64 {
    f64::INFINITY
}

fn yes() -> bool {
    true
}

/// A link's behaviour. In serde forms durations are in milliseconds and an absent bandwidth
/// is unlimited (TOML can also write `inf`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Propagation latency.
    pub latency: Latency,
    /// Extra delay drawn uniformly from `[0, jitter_ms]` \[ms\].
    #[serde(default)]
    pub jitter_ms: f64,
    /// Uplink bandwidth \[bytes/s\]; `f64::INFINITY` for no transmission delay.
    #[serde(default = "unlimited")]
    pub up_bytes_per_sec: f64,
    /// Downlink bandwidth \[bytes/s\]; `f64::INFINITY` for no transmission delay.
    #[serde(default = "unlimited")]
    pub down_bytes_per_sec: f64,
    /// Probability that a message is lost, in `[0, 1]`.
    #[serde(default)]
    pub loss: f64,
    /// Whether concurrent transfers share this link's bandwidth (the default, and every
    /// preset's): each direction's capacity is reserved by the messages sent through it
    /// (see [`NetworkModel`](super::NetworkModel)). `false` is the ideal link on which every
    /// transfer may use the full rate, whatever else is in flight. Unlimited directions are
    /// never tracked.
    #[serde(default = "yes")]
    pub shared: bool,
}

impl LinkSpec {
    /// The names [`LinkSpec::preset`] knows.
    pub const PRESET_NAMES: [&str; 5] = [
        "datacenter",
        "ethernet",
        "wifi",
        "cellular-4g",
        "cellular-3g",
    ];

    /// A link with only a fixed latency: no jitter, unlimited bandwidth, no loss (shared,
    /// which matters once a bandwidth is set).
    pub fn latency(d: SimDuration) -> Self {
        Self {
            latency: Latency::fixed(d),
            jitter_ms: 0.0,
            up_bytes_per_sec: f64::INFINITY,
            down_bytes_per_sec: f64::INFINITY,
            loss: 0.0,
            shared: true,
        }
    }

    /// A named preset (one access link; a message crosses two, so end-to-end latency is
    /// about twice these). Medians of typical consumer measurements (Ookla/OpenSignal-style
    /// reports, rounded), not of any one network; all are shared:
    ///
    /// | name          | latency              | jitter | up \[bytes/s\] | down \[bytes/s\] | loss  |
    /// |---------------|----------------------|--------|----------------|------------------|-------|
    /// | `datacenter`  | 0.5 ms fixed         | 0      | 1.25e9 (10 Gb/s) | 1.25e9         | 0     |
    /// | `ethernet`    | 2 ms fixed           | 0.5 ms | 12.5e6 (100 Mb/s) | 12.5e6        | 0     |
    /// | `wifi`        | 10 ms log-normal σ 0.4 | 2 ms | 2.5e6 (20 Mb/s) | 6.25e6 (50 Mb/s) | 0.5 % |
    /// | `cellular-4g` | 50 ms log-normal σ 0.5 | 10 ms | 0.6e6 (5 Mb/s) | 2.5e6 (20 Mb/s) | 1 %  |
    /// | `cellular-3g` | 150 ms log-normal σ 0.6 | 30 ms | 0.1e6 (0.8 Mb/s) | 0.4e6 (3 Mb/s) | 3 % |
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
            shared: true,
        })
    }

    /// Checks every field's range; the error names the field (`loss`, `latency.sigma`) and
    /// the value.
    pub fn validate(&self) -> Result<(), NetworkError> {
        self.validate_at("")
    }

    /// [`LinkSpec::validate`] with field names under `prefix` (`links[2].link`).
    pub(crate) fn validate_at(&self, prefix: &str) -> Result<(), NetworkError> {
        let field = |name: &str| match prefix {
            "" => name.to_owned(),
            p => format!("{p}.{name}"),
        };
        self.latency.validate_at(&field("latency"))?;
        if !(self.jitter_ms.is_finite() && self.jitter_ms >= 0.0) {
            let reason = "must be finite and ≥ 0";
            return Err(invalid(field("jitter_ms"), self.jitter_ms, reason));
        }
        for (name, v) in [
            ("up_bytes_per_sec", self.up_bytes_per_sec),
            ("down_bytes_per_sec", self.down_bytes_per_sec),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(invalid(field(name), v, "must be > 0 (inf for unlimited)"));
            }
        }
        if !(0.0..=1.0).contains(&self.loss) {
            let reason = "must be a probability in [0, 1]";
            return Err(invalid(field("loss"), self.loss, reason));
        }
        Ok(())
    }
}

/// The random part of a message's crossing of `path` (one pair link, or the sender's and the
/// receiver's access links).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Draws {
    /// Whether the message survives the links' loss.
    pub(super) delivered: bool,
    /// Latency plus jitter of every link \[ms\].
    pub(super) latency_ms: f64,
}

/// The draws of a crossing of `path`, in a fixed order whatever the outcome: the loss draw,
/// then each link's latency, then each link's jitter. Transmission draws nothing.
pub(super) fn draw(path: &[&LinkSpec], rng: &mut ChaCha8Rng) -> Draws {
    let u: f64 = rng.random();
    let latency: f64 = path.iter().map(|l| l.latency.sample(rng)).sum();
    let jitter: f64 = path.iter().map(|l| rng.random::<f64>() * l.jitter_ms).sum();
    let loss = 1.0 - path.iter().map(|l| 1.0 - l.loss).product::<f64>();
    Draws {
        delivered: u >= loss,
        latency_ms: latency + jitter,
    }
}
