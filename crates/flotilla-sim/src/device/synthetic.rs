//! Synthetic device traces: a fleet with heavy-tailed speeds and diurnal online sessions.

use super::{DeviceError, DeviceTrace, TraceDevice, invalid};
use crate::{NodeId, Purpose, Seed};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

/// Settings of a synthetic fleet trace; [`SyntheticTrace::generate`] makes the
/// [`DeviceTrace`]. Its serde form is a table of these keys, each optional (defaults in
/// brackets):
///
/// - `devices` \[100\]: how many devices, ids `0..devices`, at most
///   [`SyntheticTrace::MAX_DEVICES`].
/// - `seed` \[0\]: device `i` draws everything from
///   `Seed(seed).stream(NodeId(i), Purpose::FLEET)`, so its line does not depend on how
///   many devices there are.
/// - `speed_median_flops` \[1e10\], `speed_sigma` \[1.0\]: each device's `flops_per_sec`
///   is log-normal, `median · exp(σ·z)`. σ = 1 spreads the middle 95 % of devices over a
///   factor of 50, like the measured spread of phone training speeds behind FedScale's
///   device traces (the `phone-low`…`edge-gpu` presets span 100).
/// - `period_s` \[86,400\]: the length of a "day".
/// - `online_fraction` \[0.3\]: the mean fraction of each day a device is online.
/// - `online_spread` \[0.1\]: the standard deviation of that fraction across devices (each
///   device's fraction is Beta-distributed with this mean and spread, so it stays in
///   \[0, 1\]); below `√(f·(1 − f))` for `online_fraction` f; 0 gives every device f.
/// - `sessions_per_period` \[2\]: how many sessions a device's online time in a day is split
///   into (at most 100).
/// - `horizon_s` \[604,800, a week\]: intervals cover `[0, horizon_s)`; the device is
///   offline after it.
///
/// Diurnal model: each device has a uniform random "evening" (a phase in the day), and
/// every day is a window of one period centred on it. In each window the device is online
/// for exactly its fraction of the period, split into sessions of Dirichlet(1) shares,
/// separated by gaps that together take a uniform share of at most half the remaining
/// time; the block of sessions sits at the window's centre, shifted day to day by a normal
/// of σ = period/24 (an hour a day) within the window. Times are rounded to whole
/// microseconds (the simulation's resolution). Devices are given `flops_per_sec` and `on`
/// only: memory, dropout and link come from the base the trace is applied to.
///
/// Size: at most `devices · sessions_per_period · (⌈horizon_s / period_s⌉ + 1)` intervals,
/// bounded by [`SyntheticTrace::MAX_INTERVALS`], so a generated file stays under about
/// 600 MB (under 40 bytes an interval) and always loads ([`DeviceTrace::MAX_BYTES`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticTrace {
    /// How many devices.
    pub devices: u32,
    /// The master seed of the draws.
    pub seed: u64,
    /// Median training throughput \[FLOP/s\].
    pub speed_median_flops: f64,
    /// σ of the log-normal throughput.
    pub speed_sigma: f64,
    /// Length of a day \[s\].
    pub period_s: f64,
    /// Mean fraction of a day a device is online.
    pub online_fraction: f64,
    /// Standard deviation of that fraction across devices.
    pub online_spread: f64,
    /// Online sessions per day.
    pub sessions_per_period: u32,
    /// End of the generated intervals \[s\].
    pub horizon_s: f64,
}

impl Default for SyntheticTrace {
    fn default() -> Self {
        Self {
            devices: 100,
            seed: 0,
            speed_median_flops: 1e10,
            speed_sigma: 1.0,
            period_s: 86_400.0,
            online_fraction: 0.3,
            online_spread: 0.1,
            sessions_per_period: 2,
            horizon_s: 7.0 * 86_400.0,
        }
    }
}

/// Rounds to whole microseconds.
fn to_micros(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e6
}

/// `total` split into `n` shares of a Dirichlet(1, …, 1): `n` exponential draws, scaled.
fn split(total: f64, n: u32, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let draws: Vec<f64> = (0..n).map(|_| Exp1.sample(rng)).collect();
    let sum: f64 = draws.iter().sum();
    if sum > 0.0 {
        draws.iter().map(|d| total * d / sum).collect()
    } else {
        vec![total / f64::from(n); n as usize]
    }
}

impl SyntheticTrace {
    /// The most devices generated.
    pub const MAX_DEVICES: u32 = 1_000_000;
    /// The most online intervals generated, all devices together.
    pub const MAX_INTERVALS: usize = 16_000_000;

    /// Checks the settings; errors name the key and the value.
    pub fn validate(&self) -> Result<(), DeviceError> {
        if !(1..=Self::MAX_DEVICES).contains(&self.devices) {
            let reason = format!("must be in [1, {}]", Self::MAX_DEVICES);
            return Err(invalid("devices", self.devices, reason));
        }
        let in_range = |key: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(invalid(key, v, format!("must be in [{lo}, {hi}]")))
            }
        };
        in_range("speed_median_flops", self.speed_median_flops, 1.0, 1e18)?;
        in_range("speed_sigma", self.speed_sigma, 0.0, 10.0)?;
        in_range("period_s", self.period_s, 1.0, 1e9)?;
        in_range("horizon_s", self.horizon_s, 1e-6, 1e9)?;
        let f = self.online_fraction;
        if !(f > 0.0 && f < 1.0) {
            let reason = "must be in (0, 1)";
            return Err(invalid("online_fraction", f, reason));
        }
        let max_spread = (f * (1.0 - f)).sqrt();
        let spread = self.online_spread;
        if !(spread >= 0.0 && spread < max_spread) {
            let reason = format!(
                "must be ≥ 0 and below √(f·(1 − f)) = {max_spread:.4} for online_fraction f = {f}"
            );
            return Err(invalid("online_spread", spread, reason));
        }
        if !(1..=100).contains(&self.sessions_per_period) {
            let reason = "must be in [1, 100]";
            return Err(invalid(
                "sessions_per_period",
                self.sessions_per_period,
                reason,
            ));
        }
        let intervals = f64::from(self.devices)
            * f64::from(self.sessions_per_period)
            * ((self.horizon_s / self.period_s).ceil() + 1.0);
        if intervals > Self::MAX_INTERVALS as f64 {
            let value = format!("{intervals} intervals");
            let reason = format!(
                "devices · sessions_per_period · (⌈horizon_s / period_s⌉ + 1) must be at most \
                 {}; fewer devices, a shorter horizon or a longer period",
                Self::MAX_INTERVALS
            );
            return Err(invalid("horizon_s", value, reason));
        }
        Ok(())
    }

    /// The trace: devices `0..devices`, each with `flops_per_sec` and `on` (see the type's
    /// documentation). Same settings, same trace, bit for bit.
    pub fn generate(&self) -> Result<DeviceTrace, DeviceError> {
        self.validate()?;
        let m = self.online_fraction;
        let s = self.online_spread;
        let fraction = if s == 0.0 {
            None
        } else {
            let k = m * (1.0 - m) / (s * s) - 1.0;
            let beta = Beta::new(m * k, (1.0 - m) * k)
                .map_err(|e| invalid("online_spread", s, format!("no Beta distribution: {e}")))?;
            Some(beta)
        };
        let devices = (0..self.devices)
            .map(|i| {
                let mut rng = Seed(self.seed).stream(NodeId(i), Purpose::FLEET);
                self.device(i, fraction.as_ref(), &mut rng)
            })
            .collect();
        Ok(DeviceTrace { devices })
    }

    /// Device `i`, from its own stream.
    fn device(&self, i: u32, fraction: Option<&Beta<f64>>, rng: &mut ChaCha8Rng) -> TraceDevice {
        let (period, horizon) = (self.period_s, self.horizon_s);
        let z: f64 = StandardNormal.sample(rng);
        let flops = self.speed_median_flops * (self.speed_sigma * z).exp();
        let evening = rng.random::<f64>() * period;
        let fraction = fraction.map_or(self.online_fraction, |b| b.sample(rng));
        let online = fraction * period;
        let mut on = Vec::new();
        // Day k is the window [evening + (k − ½)·period, evening + (k + ½)·period); day −1
        // may reach past time zero.
        let mut window_start = evening - period / 2.0 - period;
        while window_start < horizon {
            // Always the same draws per day, whatever is kept.
            let sessions = split(online, self.sessions_per_period, rng);
            let gap_share = rng.random::<f64>() / 2.0;
            let gaps = split(
                gap_share * (period - online),
                self.sessions_per_period - 1,
                rng,
            );
            let z: f64 = StandardNormal.sample(rng);
            let room = period - online - gaps.iter().sum::<f64>();
            let shift = (period / 24.0 * z).clamp(-room / 2.0, room / 2.0);
            let mut t = window_start + room / 2.0 + shift;
            for (j, length) in sessions.iter().enumerate() {
                let (a, b) = (to_micros(t).max(0.0), to_micros(t + length).min(horizon));
                if a < b {
                    on.push((a, b));
                }
                t += length + gaps.get(j).copied().unwrap_or(0.0);
            }
            window_start += period;
        }
        TraceDevice {
            flops_per_sec: Some(flops),
            on: Some(on),
            ..TraceDevice::new(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(devices: u32) -> SyntheticTrace {
        SyntheticTrace {
            devices,
            seed: 7,
            horizon_s: 20.0 * 86_400.0,
            ..SyntheticTrace::default()
        }
    }

    fn online_s(d: &TraceDevice) -> f64 {
        d.on.iter().flatten().map(|(a, b)| b - a).sum()
    }

    #[test]
    fn same_seed_same_trace_and_devices_do_not_depend_on_the_count() {
        let a = fleet(50).generate().unwrap();
        assert_eq!(a, fleet(50).generate().unwrap());
        assert_eq!(a.to_jsonl(), fleet(50).generate().unwrap().to_jsonl());
        let more = fleet(80).generate().unwrap();
        assert_eq!(a.devices[..], more.devices[..50]);
        let other = SyntheticTrace {
            seed: 8,
            ..fleet(50)
        };
        let b = other.generate().unwrap();
        assert!(a.devices.iter().zip(&b.devices).all(|(x, y)| x != y));
    }

    #[test]
    fn generated_devices_are_valid_and_read_back_equal() {
        for sessions in [1, 2, 5] {
            let settings = SyntheticTrace {
                sessions_per_period: sessions,
                period_s: 1000.0,
                horizon_s: 12_345.678,
                ..fleet(200)
            };
            let trace = settings.generate().unwrap();
            let ids: Vec<u32> = trace.devices.iter().map(|d| d.id).collect();
            assert_eq!(ids, (0..200).collect::<Vec<_>>());
            for d in &trace.devices {
                d.validate().unwrap();
                let on = d.on.as_ref().unwrap();
                assert!(on.iter().all(|&(a, b)| 0.0 <= a && b <= 12_345.678));
                // At most the configured sessions per day, and a whole day's worth of them.
                assert!(on.len() as u32 <= sessions * 14, "{}", on.len());
                assert!(on.len() as u32 >= sessions * 11, "{}", on.len());
                assert!(
                    on.iter()
                        .all(|&(a, b)| a == to_micros(a) && b == to_micros(b))
                );
            }
            let text = trace.to_jsonl();
            assert_eq!(DeviceTrace::from_str(&text, "synthetic").unwrap(), trace);
        }
    }

    #[test]
    fn mean_and_spread_of_the_online_fraction_match_the_settings() {
        for (fraction, spread) in [(0.3, 0.1), (0.6, 0.0), (0.1, 0.05)] {
            let settings = SyntheticTrace {
                online_fraction: fraction,
                online_spread: spread,
                ..fleet(2_000)
            };
            let trace = settings.generate().unwrap();
            let shares: Vec<f64> = trace
                .devices
                .iter()
                .map(|d| online_s(d) / settings.horizon_s)
                .collect();
            let n = shares.len() as f64;
            let mean = shares.iter().sum::<f64>() / n;
            let sd = (shares.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!((mean - fraction).abs() < 0.01, "{fraction}: mean {mean}");
            // Cut days at the horizon's ends add a little spread of their own.
            assert!(
                (sd - spread).abs() < 0.1 * spread + 0.01,
                "{spread}: sd {sd}"
            );
        }
    }

    #[test]
    fn speeds_are_log_normal_around_the_median() {
        let settings = SyntheticTrace {
            speed_median_flops: 3e9,
            speed_sigma: 1.0,
            ..fleet(4_001)
        };
        let mut speeds: Vec<f64> = settings
            .generate()
            .unwrap()
            .devices
            .iter()
            .map(|d| d.flops_per_sec.unwrap())
            .collect();
        speeds.sort_by(f64::total_cmp);
        let median = speeds[2_000];
        assert!((median / 3e9 - 1.0).abs() < 0.08, "{median}");
        // Heavy tail: the 97.5th percentile is about e^1.96 ≈ 7 times the median.
        let high = speeds[3_900] / median;
        assert!((5.5..9.0).contains(&high), "{high}");
        let steady = SyntheticTrace {
            speed_sigma: 0.0,
            ..fleet(10)
        };
        let trace = steady.generate().unwrap();
        assert!(trace.devices.iter().all(|d| d.flops_per_sec == Some(1e10)));
    }

    /// Diurnal: a device online now is likely online a day later, and unlikely half a day
    /// later (a fleet of uniformly random sessions would show no difference).
    #[test]
    fn devices_come_back_at_the_same_time_of_day() {
        let settings = fleet(300);
        let trace = settings.generate().unwrap();
        let day = 86_400.0;
        let agreement = |lag: f64| {
            let (mut same, mut all) = (0, 0);
            for d in &trace.devices {
                let on = d.on.as_ref().unwrap();
                let online = |t: f64| on.iter().any(|&(a, b)| a <= t && t < b);
                for k in 0..200 {
                    let t = day + f64::from(k) * 17.0 * day / 200.0;
                    let (now, later) = (online(t), online(t + lag));
                    same += usize::from(now == later);
                    all += 1;
                }
            }
            same as f64 / all as f64
        };
        let (daily, half) = (agreement(day), agreement(day / 2.0));
        // Independent of the time of day, both would be f² + (1 − f)² ≈ 0.58 (0.72, 0.50 now).
        assert!(
            daily > 0.68 && half < 0.53,
            "day {daily}, half a day {half}"
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                SyntheticTrace {
                    devices: 0,
                    ..fleet(1)
                },
                "`devices` = 0",
            ),
            (fleet(1_000_001), "`devices` = 1000001"),
            (
                SyntheticTrace {
                    online_fraction: 1.5,
                    ..fleet(1)
                },
                "`online_fraction` = 1.5",
            ),
            (
                SyntheticTrace {
                    online_spread: 0.5,
                    ..fleet(1)
                },
                "`online_spread` = 0.5: must be ≥ 0 and below √(f·(1 − f)) = 0.4583",
            ),
            (
                SyntheticTrace {
                    speed_median_flops: -1.0,
                    ..fleet(1)
                },
                "`speed_median_flops` = -1",
            ),
            (
                SyntheticTrace {
                    speed_sigma: f64::NAN,
                    ..fleet(1)
                },
                "`speed_sigma` = NaN",
            ),
            (
                SyntheticTrace {
                    period_s: 0.0,
                    ..fleet(1)
                },
                "`period_s` = 0",
            ),
            (
                SyntheticTrace {
                    horizon_s: f64::INFINITY,
                    ..fleet(1)
                },
                "`horizon_s` = inf",
            ),
            (
                SyntheticTrace {
                    sessions_per_period: 0,
                    ..fleet(1)
                },
                "`sessions_per_period` = 0",
            ),
            (
                SyntheticTrace {
                    horizon_s: 365.0 * 86_400.0,
                    ..fleet(100_000)
                },
                "`horizon_s` = 73200000 intervals",
            ),
        ];
        for (settings, expected) in cases {
            let e = settings.generate().unwrap_err().to_string();
            assert!(e.contains(expected), "{expected}: {e}");
        }
    }

    #[test]
    fn settings_load_from_toml_with_defaults() {
        let s: SyntheticTrace = toml::from_str("devices = 5\nonline_fraction = 0.5").unwrap();
        assert_eq!(
            s,
            SyntheticTrace {
                devices: 5,
                online_fraction: 0.5,
                ..SyntheticTrace::default()
            }
        );
        let e = toml::from_str::<SyntheticTrace>("device = 5").unwrap_err();
        assert!(e.to_string().contains("`device`"), "{e}");
        SyntheticTrace::default().generate().unwrap();
    }
}
