//! Device profiles ([`DeviceProfile`]): compute speed, memory, availability and dropout of
//! a client's hardware; presets; device trace files ([`DeviceTrace`]) and synthetic fleets
//! ([`SyntheticTrace`]).

mod availability;
mod synthetic;
mod trace;

pub use availability::{Availability, AvailabilityState};
pub use synthetic::SyntheticTrace;
pub use trace::{DeviceTrace, ProfileConfig, TraceDevice};

use crate::{NetworkError, SimDuration};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Invalid device settings or a bad device trace. The run cannot be built from them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A value is out of range.
    #[error("device setting `{field}` = {value}: {reason}")]
    Invalid {
        /// The field path, e.g. `devices[3].on[2]`.
        field: String,
        /// The value.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// An unknown preset name.
    #[error("unknown device preset `{0}`; known: {known}", known = PRESET_NAMES.join(", "))]
    UnknownPreset(String),
    /// A device's access link is invalid.
    #[error(transparent)]
    Link(#[from] NetworkError),
    /// A trace file could not be read, parsed or validated:
    /// ``fleet.jsonl:17: device setting `on[2]` = [50, 40]: start 50 ≥ end 40``.
    #[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        /// The file.
        file: String,
        /// The line at fault (1-based), if one is: `None` for a file that cannot be read,
        /// is too large or holds no device.
        line: Option<usize>,
        /// What went wrong: the JSON error and its column, or the field and value.
        reason: String,
    },
}

fn invalid(
    field: impl Into<String>,
    value: impl ToString,
    reason: impl Into<String>,
) -> DeviceError {
    DeviceError::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A device's hardware and behaviour.
///
/// Heterogeneity *emerges* from these, with no strong/weak flag anywhere: a job's virtual
/// duration is its declared FLOPs over the device's speed, times a log-normal jitter
/// ([`DeviceProfile::job_duration`]); memory decides which models a device can train
/// ([`DeviceProfile::fits`]); the [`Availability`] process decides when messages reach it
/// and whether it stays online through a job; `dropout` is the chance that it abandons a
/// job (it never answers). Each draws from the device's own stream of its purpose
/// (`COMPUTE`, `DROPOUT`, `AVAILABILITY`).
///
/// Profiles come from [presets](DeviceProfile::preset), from serde (TOML or JSON: these
/// fields, times in seconds; `compute_jitter` and `dropout` default to 0, `availability` to
/// always) or from a [device trace file](DeviceTrace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// Sustained training throughput \[FLOP/s\].
    pub flops_per_sec: f64,
    /// σ of the log-normal factor (median 1) on each job's duration; 0 for none.
    #[serde(default)]
    pub compute_jitter: f64,
    /// Memory available for training \[bytes\].
    pub memory_bytes: u64,
    /// When the device is online.
    #[serde(default)]
    pub availability: Availability,
    /// Probability that a job is abandoned mid-way (the device never answers).
    #[serde(default)]
    pub dropout: f64,
}

/// The preset names of [`DeviceProfile::preset`], slowest first.
pub const PRESET_NAMES: [&str; 5] = ["phone-low", "phone-high", "laptop", "edge-gpu", "server"];

impl DeviceProfile {
    /// A named preset, always available. Throughputs are *sustained on-device training*
    /// rates, a few percent (phones) to tens of percent (GPUs) of peak FP32, which is what
    /// mobile training frameworks reach; the spread follows the roughly 10× gap between
    /// entry-level and flagship phones in AI-Benchmark scores (FedScale's device capacity
    /// table draws on the same data). So `phone-low` : `phone-high` : `edge-gpu` is
    /// 1 : 10 : 100 — a "weak 10× slower than strong" fleet is `phone-low` with
    /// `phone-high`, or `phone-high` with `edge-gpu`.
    ///
    /// | name         | \[FLOP/s\] | memory | jitter σ | dropout | class                      |
    /// |--------------|-----------|--------|----------|---------|-----------------------------|
    /// | `phone-low`  | 2e9       | 2 GB   | 0.3      | 5 %     | 4× Cortex-A53-class phone   |
    /// | `phone-high` | 2e10      | 6 GB   | 0.2      | 2 %     | flagship phone              |
    /// | `laptop`     | 5e10      | 16 GB  | 0.15     | 1 %     | 4-core AVX2 laptop CPU      |
    /// | `edge-gpu`   | 2e11      | 8 GB   | 0.1      | 0       | Jetson Orin/Xavier-class    |
    /// | `server`     | 1e12      | 64 GB  | 0.05     | 0       | server CPU or a GPU share   |
    pub fn preset(name: &str) -> Result<Self, DeviceError> {
        let (flops, gb, jitter, dropout) = match name {
            "phone-low" => (2e9, 2, 0.3, 0.05),
            "phone-high" => (2e10, 6, 0.2, 0.02),
            "laptop" => (5e10, 16, 0.15, 0.01),
            "edge-gpu" => (2e11, 8, 0.1, 0.0),
            "server" => (1e12, 64, 0.05, 0.0),
            _ => return Err(DeviceError::UnknownPreset(name.into())),
        };
        Ok(Self {
            flops_per_sec: flops,
            compute_jitter: jitter,
            memory_bytes: gb * 1_000_000_000,
            availability: Availability::Always,
            dropout,
        })
    }

    /// Checks every field; the error names the field (`dropout`, `availability.on[2]`) and
    /// the value.
    pub fn validate(&self) -> Result<(), DeviceError> {
        self.validate_at("")
    }

    /// [`DeviceProfile::validate`] with field names under `prefix` (`devices[3].profile`).
    pub(crate) fn validate_at(&self, prefix: &str) -> Result<(), DeviceError> {
        let field = |name: &str| match prefix {
            "" => name.to_owned(),
            p => format!("{p}.{name}"),
        };
        if !(self.flops_per_sec.is_finite() && self.flops_per_sec > 0.0) {
            let v = self.flops_per_sec;
            return Err(invalid(field("flops_per_sec"), v, "must be finite and > 0"));
        }
        if !(self.compute_jitter.is_finite() && self.compute_jitter >= 0.0) {
            let v = self.compute_jitter;
            return Err(invalid(
                field("compute_jitter"),
                v,
                "must be finite and ≥ 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            let reason = "must be a probability in [0, 1]";
            return Err(invalid(field("dropout"), self.dropout, reason));
        }
        self.availability.validate_at(&field("availability"))
    }

    /// Whether `bytes` of training memory fit on the device.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes <= self.memory_bytes
    }

    /// Virtual duration of a job of `flops` \[FLOP\]: `flops / flops_per_sec · exp(σ·z)`,
    /// at least 1 µs for any work, or `None` if that is too long for the clock to count
    /// (see [`SimDuration::from_secs_f64`]). Draws one normal from `rng` when jitter is on,
    /// none otherwise.
    pub fn job_duration(&self, flops: u64, rng: &mut ChaCha8Rng) -> Option<SimDuration> {
        let factor = if self.compute_jitter > 0.0 {
            let z: f64 = StandardNormal.sample(rng);
            (self.compute_jitter * z).exp()
        } else {
            1.0
        };
        let d = SimDuration::from_secs_f64(flops as f64 / self.flops_per_sec * factor)?;
        Some(if flops > 0 { d.max(SimDuration(1)) } else { d })
    }

    /// Whether a job of `duration` is abandoned, and if so after how long (uniform within
    /// the job). Draws two uniforms from `rng` whatever the outcome.
    pub fn draw_dropout(&self, duration: SimDuration, rng: &mut ChaCha8Rng) -> Option<SimDuration> {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        (u < self.dropout).then(|| SimDuration((duration.as_micros() as f64 * v) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Purpose, Seed, secs};

    fn rng(seed: u64) -> ChaCha8Rng {
        Seed(seed).stream(NodeId(0), Purpose::COMPUTE)
    }

    fn steady(name: &str) -> DeviceProfile {
        DeviceProfile {
            compute_jitter: 0.0,
            ..DeviceProfile::preset(name).unwrap()
        }
    }

    #[test]
    fn durations_scale_with_work_and_speed() {
        let d = |p: &DeviceProfile, f| p.job_duration(f, &mut rng(0)).unwrap();
        let weak = steady("phone-low");
        assert_eq!(d(&weak, 2_000_000_000), secs(1));
        assert_eq!(d(&weak, 4_000_000_000), secs(2));
        assert_eq!(d(&weak, 0), SimDuration::ZERO);
        assert_eq!(d(&weak, 1), SimDuration(1), "any work takes at least 1 µs");
        for (weak, strong) in [("phone-low", "phone-high"), ("phone-high", "edge-gpu")] {
            let (w, s) = (
                d(&steady(weak), 4e11 as u64),
                d(&steady(strong), 4e11 as u64),
            );
            assert_eq!(w.as_micros(), 10 * s.as_micros(), "{weak} vs {strong}");
        }
    }

    #[test]
    fn jitter_is_seeded_and_zero_jitter_draws_nothing() {
        let p = DeviceProfile::preset("phone-low").unwrap();
        let a: Vec<_> = (0..4)
            .map(|_| p.job_duration(1 << 30, &mut rng(5)).unwrap())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed, same draw");
        let mut r = rng(5);
        let b: Vec<_> = (0..50)
            .map(|_| p.job_duration(1 << 30, &mut r).unwrap())
            .collect();
        assert!(
            b.iter().any(|d| *d != b[0]),
            "jitter varies along the stream"
        );
        let (mut r, before) = (rng(6), rng(6).get_word_pos());
        let steady = steady("phone-low");
        let d = steady.job_duration(1 << 30, &mut r).unwrap();
        assert_eq!(r.get_word_pos(), before);
        assert_eq!(d, steady.job_duration(1 << 30, &mut rng(7)).unwrap());
    }

    #[test]
    fn jitter_has_median_one() {
        let p = DeviceProfile::preset("phone-low").unwrap();
        let mut r = rng(8);
        let mut d: Vec<u64> = (0..4_001)
            .map(|_| p.job_duration(2_000_000_000, &mut r).unwrap().as_micros())
            .collect();
        d.sort_unstable();
        let median = d[2_000] as f64 / 1e6;
        assert!((median - 1.0).abs() < 0.03, "{median}");
    }

    #[test]
    fn dropout_extremes_and_frequency() {
        let mut p = DeviceProfile::preset("laptop").unwrap();
        let mut r = rng(1);
        p.dropout = 0.0;
        assert!((0..1_000).all(|_| p.draw_dropout(secs(1), &mut r).is_none()));
        p.dropout = 1.0;
        assert!((0..1_000).all(|_| p.draw_dropout(secs(1), &mut r).is_some_and(|d| d < secs(1))));
        p.dropout = 0.3;
        let offsets: Vec<_> = (0..10_000)
            .filter_map(|_| p.draw_dropout(secs(1), &mut r))
            .collect();
        assert!((2_800..3_200).contains(&offsets.len()), "{}", offsets.len());
        let mean = offsets.iter().map(|d| d.as_secs_f64()).sum::<f64>() / offsets.len() as f64;
        assert!(
            (mean - 0.5).abs() < 0.03,
            "offsets are uniform within the job: {mean}"
        );
    }

    #[test]
    fn memory_decides_what_fits() {
        let (low, high) = (steady("phone-low"), steady("phone-high"));
        let big_model = 3_000_000_000;
        assert!(!low.fits(big_model) && high.fits(big_model));
        assert!(low.fits(low.memory_bytes));
    }

    #[test]
    fn presets_are_valid_and_unknown_names_list_the_known() {
        let speeds: Vec<f64> = PRESET_NAMES
            .iter()
            .map(|n| {
                let p = DeviceProfile::preset(n).unwrap();
                p.validate().unwrap();
                p.flops_per_sec
            })
            .collect();
        assert!(speeds.windows(2).all(|w| w[0] < w[1]), "slowest first");
        let e = DeviceProfile::preset("abacus").unwrap_err().to_string();
        assert!(e.contains("abacus") && e.contains("edge-gpu"), "{e}");
    }

    #[test]
    fn validation_names_the_field_and_value() {
        let base = steady("laptop");
        let cases = [
            (
                DeviceProfile {
                    flops_per_sec: 0.0,
                    ..base.clone()
                },
                "`flops_per_sec` = 0",
            ),
            (
                DeviceProfile {
                    compute_jitter: f64::NAN,
                    ..base.clone()
                },
                "`compute_jitter` = NaN",
            ),
            (
                DeviceProfile {
                    dropout: 1.5,
                    ..base.clone()
                },
                "`dropout` = 1.5",
            ),
            (
                DeviceProfile {
                    availability: Availability::Markov {
                        mean_on_s: 1.0,
                        mean_off_s: 0.0,
                        start_on: 1.0,
                    },
                    ..base.clone()
                },
                "`availability.mean_off_s` = 0",
            ),
        ];
        for (p, expected) in cases {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn profiles_round_trip_through_toml_and_json() {
        let p = DeviceProfile {
            availability: Availability::Periodic {
                period_s: 86_400.0,
                on_s: 28_800.0,
                phase_s: -3_600.0,
            },
            ..DeviceProfile::preset("phone-high").unwrap()
        };
        let text = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<DeviceProfile>(&text).unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<DeviceProfile>(&json).unwrap(), p);
        let minimal: DeviceProfile =
            toml::from_str("flops_per_sec = 1e9\nmemory_bytes = 1000").unwrap();
        assert_eq!(minimal.availability, Availability::Always);
        let e = toml::from_str::<DeviceProfile>("flops_per_sec = 1e9\nmemory = 1000").unwrap_err();
        assert!(e.to_string().contains("`memory`"), "{e}");
    }
}
