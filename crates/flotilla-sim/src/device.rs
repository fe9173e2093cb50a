//! Device profiles: compute speed, memory, availability and dropout of a client's hardware.
//!
//! Heterogeneity *emerges* from these: a job's virtual duration is its declared FLOPs over
//! the device's speed, times a log-normal jitter; memory decides which models a device can
//! train; the availability process decides when messages reach it and whether it stays
//! online through a job; `dropout` is the chance that it abandons a job (it never answers).
//!
//! # Device trace files
//!
//! In the spirit of FedScale's device traces (a per-client capacity table plus per-client
//! active intervals), a JSON file lists devices by client index:
//!
//! ```json
//! {"devices": [
//!   {"id": 0, "profile": "phone-low", "on": [[0, 3600], [7200, 9000]]},
//!   {"id": 1, "profile": {"flops_per_sec": 5e9, "compute_jitter": 0.2,
//!                         "memory_bytes": 4000000000, "dropout": 0.05}}
//! ]}
//! ```
//!
//! `profile` is a preset name or a full profile (its `availability` defaults to always);
//! `on`, if present, lists sorted, non-overlapping `[start_s, end_s)` intervals during which
//! the device is online (it is offline outside them) and replaces the profile's availability.

use crate::{SimDuration, SimTime};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Invalid device settings or a bad device trace.
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
    /// A trace file could not be read or parsed.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What went wrong (with line and column for JSON errors).
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

/// When a device is online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Availability {
    /// Always online.
    Always,
    /// Online for `on_s` at the start of every `period_s`, shifted by `phase_s`.
    Periodic {
        /// Period \[s\].
        period_s: f64,
        /// Online time per period \[s\].
        on_s: f64,
        /// Shift \[s\].
        #[serde(default)]
        phase_s: f64,
    },
    /// A two-state Markov process with exponential sojourns.
    Markov {
        /// Mean online sojourn \[s\].
        mean_on_s: f64,
        /// Mean offline sojourn \[s\].
        mean_off_s: f64,
        /// Probability of starting online.
        start_on: f64,
    },
    /// Online exactly during these sorted, disjoint `[start, end)` intervals.
    Trace {
        /// The intervals \[s\].
        on: Vec<(f64, f64)>,
    },
}

impl Availability {
    fn validate(&self, field: &str) -> Result<(), DeviceError> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(format!("{field}.{name}"), v, "must be > 0"))
            }
        };
        match self {
            Availability::Always => Ok(()),
            Availability::Periodic {
                period_s,
                on_s,
                phase_s,
            } => {
                positive("period_s", *period_s)?;
                if !(0.0..=*period_s).contains(on_s) {
                    return Err(invalid(
                        format!("{field}.on_s"),
                        on_s,
                        "must be in [0, period_s]",
                    ));
                }
                if !phase_s.is_finite() {
                    return Err(invalid(
                        format!("{field}.phase_s"),
                        phase_s,
                        "must be finite",
                    ));
                }
                Ok(())
            }
            Availability::Markov {
                mean_on_s,
                mean_off_s,
                start_on,
            } => {
                positive("mean_on_s", *mean_on_s)?;
                positive("mean_off_s", *mean_off_s)?;
                if !(0.0..=1.0).contains(start_on) {
                    return Err(invalid(
                        format!("{field}.start_on"),
                        start_on,
                        "must be in [0, 1]",
                    ));
                }
                Ok(())
            }
            Availability::Trace { on } => check_intervals(field, on),
        }
    }
}

fn check_intervals(field: &str, on: &[(f64, f64)]) -> Result<(), DeviceError> {
    let mut last_end = f64::NEG_INFINITY;
    for (j, &(a, b)) in on.iter().enumerate() {
        if !(a.is_finite() && b.is_finite() && a >= 0.0 && a < b) {
            return Err(invalid(
                format!("{field}[{j}]"),
                format!("[{a}, {b}]"),
                "need 0 ≤ start < end",
            ));
        }
        if a < last_end {
            return Err(invalid(
                format!("{field}[{j}]"),
                format!("[{a}, {b}]"),
                "intervals must be sorted and disjoint",
            ));
        }
        last_end = b;
    }
    Ok(())
}

fn secs_to_time(s: f64) -> SimTime {
    SimTime::ZERO + SimDuration::from_secs_f64(s)
}

/// A device's hardware and behaviour.
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
    #[serde(default = "always")]
    pub availability: Availability,
    /// Probability that a job is abandoned mid-way (the device never answers).
    #[serde(default)]
    pub dropout: f64,
}

fn always() -> Availability {
    Availability::Always
}

/// The preset names of [`DeviceProfile::preset`].
pub const PRESET_NAMES: [&str; 5] = ["phone-low", "phone-high", "laptop", "edge-gpu", "server"];

impl DeviceProfile {
    /// A named preset. Sustained on-device *training* throughput (well below peak):
    /// `phone-low` 2 GFLOP/s, 2 GB, jitter 0.3, 5 % dropout (an entry-level phone CPU);
    /// `phone-high` 20 GFLOP/s, 6 GB, jitter 0.2, 2 % dropout (a flagship phone);
    /// `laptop` 50 GFLOP/s, 16 GB, jitter 0.15, 1 %; `edge-gpu` 200 GFLOP/s, 8 GB, jitter
    /// 0.1 (a Jetson-class module); `server` 1 TFLOP/s, 64 GB. All always available.
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

    /// Checks every field; errors name the field under `field`.
    pub fn validate(&self, field: &str) -> Result<(), DeviceError> {
        if !(self.flops_per_sec.is_finite() && self.flops_per_sec > 0.0) {
            return Err(invalid(
                format!("{field}.flops_per_sec"),
                self.flops_per_sec,
                "must be > 0",
            ));
        }
        if !(self.compute_jitter.is_finite() && self.compute_jitter >= 0.0) {
            return Err(invalid(
                format!("{field}.compute_jitter"),
                self.compute_jitter,
                "must be ≥ 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(invalid(
                format!("{field}.dropout"),
                self.dropout,
                "must be in [0, 1]",
            ));
        }
        self.availability.validate(&format!("{field}.availability"))
    }

    /// Whether `bytes` of training memory fit.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes <= self.memory_bytes
    }

    /// Virtual duration of a job of `flops`: `flops / speed · exp(σ·z)`, at least 1 µs for
    /// any work. Draws one value from `rng` when jitter is on.
    pub fn job_duration(&self, flops: u64, rng: &mut ChaCha8Rng) -> SimDuration {
        let factor = if self.compute_jitter > 0.0 {
            LogNormal::new(0.0, self.compute_jitter)
                .expect("validated σ")
                .sample(rng)
        } else {
            1.0
        };
        let d = SimDuration::from_secs_f64(flops as f64 / self.flops_per_sec * factor);
        if flops > 0 { d.max(SimDuration(1)) } else { d }
    }

    /// Whether a job of `duration` is abandoned, and if so after how long (uniform within
    /// the job). Draws two values from `rng` whatever the outcome.
    pub fn draw_dropout(&self, duration: SimDuration, rng: &mut ChaCha8Rng) -> Option<SimDuration> {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        (u < self.dropout).then(|| SimDuration((duration.as_micros() as f64 * v) as u64))
    }
}

/// The lazily advanced state of one device's availability process: a few words, so a
/// million devices fit easily. Queries must come with non-decreasing times (virtual time
/// never goes back); the Markov trajectory is drawn sojourn by sojourn, so it does not
/// depend on when or how often it is queried.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AvailabilityState {
    /// Whether the current sojourn is online; meaningful once `started`.
    on: bool,
    /// End of the current sojourn.
    until: SimTime,
    /// End of the sojourn after it, once drawn.
    next_until: Option<SimTime>,
    started: bool,
}

impl AvailabilityState {
    fn markov_advance(
        &mut self,
        t: SimTime,
        mean_on: f64,
        mean_off: f64,
        start_on: f64,
        rng: &mut ChaCha8Rng,
    ) {
        let sojourn = |on: bool, rng: &mut ChaCha8Rng| {
            let mean = if on { mean_on } else { mean_off };
            SimDuration::from_secs_f64(Exp::new(1.0 / mean).expect("validated mean").sample(rng))
                .max(SimDuration(1))
        };
        if !self.started {
            self.started = true;
            self.on = rng.random_bool(start_on);
            self.until = SimTime::ZERO + sojourn(self.on, rng);
        }
        while self.until <= t {
            self.on = !self.on;
            let end = match self.next_until.take() {
                Some(end) => end,
                None => self.until + sojourn(self.on, rng),
            };
            self.until = end;
        }
    }

    /// Whether the device is online at `t`.
    pub fn is_available(
        &mut self,
        availability: &Availability,
        t: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> bool {
        match availability {
            Availability::Always => true,
            Availability::Periodic {
                period_s,
                on_s,
                phase_s,
            } => {
                let x = (t.as_secs_f64() - phase_s).rem_euclid(*period_s);
                x < *on_s
            }
            Availability::Markov {
                mean_on_s,
                mean_off_s,
                start_on,
            } => {
                self.markov_advance(t, *mean_on_s, *mean_off_s, *start_on, rng);
                self.on
            }
            Availability::Trace { on } => {
                let s = t.as_secs_f64();
                on.iter().any(|&(a, b)| a <= s && s < b)
            }
        }
    }

    /// The first time `≥ t` at which the device is offline (`t` itself if it is offline
    /// now; [`SimTime::MAX`] if never).
    pub fn next_off_after(
        &mut self,
        availability: &Availability,
        t: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> SimTime {
        if !self.is_available(availability, t, rng) {
            return t;
        }
        match availability {
            Availability::Always => SimTime::MAX,
            Availability::Periodic {
                period_s,
                on_s,
                phase_s,
            } => {
                if on_s >= period_s {
                    return SimTime::MAX;
                }
                let s = t.as_secs_f64();
                let x = (s - phase_s).rem_euclid(*period_s);
                secs_to_time(s + (on_s - x))
            }
            Availability::Markov { .. } => self.until,
            Availability::Trace { on } => {
                let s = t.as_secs_f64();
                on.iter()
                    .find(|&&(a, b)| a <= s && s < b)
                    .map_or(t, |&(_, b)| secs_to_time(b))
            }
        }
    }
}

/// A profile given by preset name or in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProfileConfig {
    /// A [`DeviceProfile::preset`] name.
    Preset(String),
    /// A full profile.
    Spec(DeviceProfile),
}

/// One device of a trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceDevice {
    /// Client index.
    pub id: u32,
    /// Its hardware.
    pub profile: ProfileConfig,
    /// Online intervals `[start_s, end_s)`; replaces the profile's availability.
    #[serde(default)]
    pub on: Option<Vec<(f64, f64)>>,
}

/// A device trace file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTrace {
    /// The devices.
    pub devices: Vec<TraceDevice>,
}

impl DeviceTrace {
    /// Reads a trace file.
    pub fn from_path(path: &Path) -> Result<Vec<(u32, DeviceProfile)>, DeviceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DeviceError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Self::from_json_str(&text, &file)
    }

    /// Parses trace text; `name` is used in errors. Returns `(id, profile)` per device.
    pub fn from_json_str(text: &str, name: &str) -> Result<Vec<(u32, DeviceProfile)>, DeviceError> {
        let trace: DeviceTrace = serde_json::from_str(text).map_err(|e| DeviceError::File {
            file: name.into(),
            reason: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
        let in_file = |e: DeviceError| DeviceError::File {
            file: name.into(),
            reason: e.to_string(),
        };
        trace
            .devices
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let field = format!("devices[{i}]");
                let mut profile = match d.profile {
                    ProfileConfig::Preset(p) => DeviceProfile::preset(&p).map_err(in_file)?,
                    ProfileConfig::Spec(p) => p,
                };
                if let Some(on) = d.on {
                    check_intervals(&format!("{field}.on"), &on).map_err(in_file)?;
                    profile.availability = Availability::Trace { on };
                }
                profile
                    .validate(&format!("{field}.profile"))
                    .map_err(in_file)?;
                Ok((d.id, profile))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Purpose, Seed};
    use proptest::prelude::*;

    fn rng(seed: u64) -> ChaCha8Rng {
        Seed(seed).stream(NodeId(0), Purpose::COMPUTE)
    }

    #[test]
    fn durations_scale_with_work_and_speed() {
        let strong = DeviceProfile {
            compute_jitter: 0.0,
            ..DeviceProfile::preset("phone-high").unwrap()
        };
        let weak = DeviceProfile {
            compute_jitter: 0.0,
            ..DeviceProfile::preset("phone-low").unwrap()
        };
        let d = |p: &DeviceProfile, f| p.job_duration(f, &mut rng(0));
        assert_eq!(d(&weak, 2_000_000_000), crate::secs(1));
        assert_eq!(
            d(&strong, 2_000_000_000).as_micros() * 10,
            d(&weak, 2_000_000_000).as_micros()
        );
        assert_eq!(d(&weak, 4_000_000_000), crate::secs(2));
        let jittery = DeviceProfile::preset("phone-low").unwrap();
        assert_eq!(
            jittery.job_duration(1 << 30, &mut rng(5)),
            jittery.job_duration(1 << 30, &mut rng(5))
        );
    }

    #[test]
    fn dropout_extremes_and_frequency() {
        let mut p = DeviceProfile::preset("laptop").unwrap();
        let mut r = rng(1);
        p.dropout = 0.0;
        assert!((0..100).all(|_| p.draw_dropout(crate::secs(1), &mut r).is_none()));
        p.dropout = 1.0;
        assert!((0..100).all(|_| {
            p.draw_dropout(crate::secs(1), &mut r)
                .is_some_and(|d| d <= crate::secs(1))
        }));
        p.dropout = 0.3;
        let hits = (0..10_000)
            .filter(|_| p.draw_dropout(crate::secs(1), &mut r).is_some())
            .count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn periodic_and_trace_availability_by_hand() {
        let mut s = AvailabilityState::default();
        let mut r = rng(0);
        let periodic = Availability::Periodic {
            period_s: 10.0,
            on_s: 4.0,
            phase_s: 1.0,
        };
        let t = |x: f64| secs_to_time(x);
        assert!(!s.is_available(&periodic, t(0.5), &mut r));
        assert!(s.is_available(&periodic, t(1.5), &mut r));
        assert_eq!(s.next_off_after(&periodic, t(2.0), &mut r), t(5.0));
        assert!(!s.is_available(&periodic, t(5.5), &mut r));
        let trace = Availability::Trace {
            on: vec![(0.0, 3.0), (10.0, 20.0)],
        };
        assert!(s.is_available(&trace, t(2.0), &mut r));
        assert_eq!(s.next_off_after(&trace, t(2.0), &mut r), t(3.0));
        assert!(!s.is_available(&trace, t(5.0), &mut r));
        assert_eq!(s.next_off_after(&trace, t(5.0), &mut r), t(5.0));
    }

    #[test]
    fn markov_on_fraction_matches_its_means() {
        let a = Availability::Markov {
            mean_on_s: 3.0,
            mean_off_s: 1.0,
            start_on: 1.0,
        };
        let mut s = AvailabilityState::default();
        let mut r = rng(2);
        let samples = 200_000;
        let on = (0..samples)
            .filter(|i| s.is_available(&a, secs_to_time(*i as f64 * 0.05), &mut r))
            .count();
        let fraction = on as f64 / samples as f64;
        assert!((fraction - 0.75).abs() < 0.03, "{fraction}");
    }

    proptest! {
        #[test]
        fn markov_trajectory_ignores_the_query_pattern(seed in any::<u64>(), step in 1u64..50) {
            let a = Availability::Markov { mean_on_s: 2.0, mean_off_s: 1.0, start_on: 0.5 };
            let (mut dense, mut sparse) = (AvailabilityState::default(), AvailabilityState::default());
            let (mut r1, mut r2) = (rng(seed), rng(seed));
            for i in 0..2_000u64 {
                let t = SimTime(i * 10_000);
                let d = dense.is_available(&a, t, &mut r1);
                if i % step == 0 {
                    let off = sparse.next_off_after(&a, t, &mut r2);
                    prop_assert_eq!(sparse.is_available(&a, t, &mut r2), d);
                    prop_assert_eq!(off == t, !d);
                }
            }
        }
    }

    #[test]
    fn trace_files_parse_and_errors_name_the_field() {
        let text = r#"{"devices": [
            {"id": 0, "profile": "phone-low", "on": [[0, 3600], [7200, 9000]]},
            {"id": 1, "profile": {"flops_per_sec": 5e9, "compute_jitter": 0.2, "memory_bytes": 4000000000, "dropout": 0.05}}
        ]}"#;
        let devices = DeviceTrace::from_json_str(text, "fleet.json").unwrap();
        assert_eq!(devices.len(), 2);
        assert!(matches!(
            devices[0].1.availability,
            Availability::Trace { .. }
        ));
        let overlapping = text.replace("[7200, 9000]", "[3000, 9000]");
        let err = DeviceTrace::from_json_str(&overlapping, "fleet.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fleet.json") && err.contains("devices[0].on[1]"),
            "{err}"
        );
        let err = DeviceTrace::from_json_str("{\"devices\": [", "fleet.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fleet.json") && err.contains("line 1"),
            "{err}"
        );
        let err = DeviceTrace::from_json_str(&text.replace("phone-low", "abacus"), "fleet.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("abacus"), "{err}");
        let err = DeviceTrace::from_json_str(&text.replace("0.05}", "1.5}"), "fleet.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices[1].profile.dropout"), "{err}");
    }
}
