//! When a device is online: always, periodically, a two-state Markov process, or a trace.

use super::{DeviceError, invalid};
use crate::{SimDuration, SimTime};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};
use serde::{Deserialize, Serialize};

/// When a device is online. Its serde form is a table tagged by `kind`, times in seconds:
/// `{ kind = "markov", mean_on_s = 600.0, mean_off_s = 300.0, start_on = 0.7 }`. Times are
/// rounded to whole microseconds before use, so answers are exact in [`SimTime`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Availability {
    /// Always online.
    #[default]
    Always,
    /// Online during `[phase_s + k·period_s, phase_s + k·period_s + on_s)` for every
    /// integer `k` (e.g. charging overnight).
    Periodic {
        /// Period \[s\].
        period_s: f64,
        /// Online time per period \[s\].
        on_s: f64,
        /// Start of an online stretch \[s\]; may be negative.
        #[serde(default)]
        phase_s: f64,
    },
    /// A two-state Markov process with exponential sojourns, starting at time zero.
    Markov {
        /// Mean online sojourn \[s\].
        mean_on_s: f64,
        /// Mean offline sojourn \[s\].
        mean_off_s: f64,
        /// Probability of starting online.
        start_on: f64,
    },
    /// Online exactly during these sorted, disjoint `[start_s, end_s)` intervals (touching
    /// is allowed); offline outside them.
    Trace {
        /// The intervals \[s\].
        on: Vec<(f64, f64)>,
    },
}

impl Availability {
    pub(super) fn validate_at(&self, field: &str) -> Result<(), DeviceError> {
        let positive = |name: &str, v: f64, min: f64| {
            if v.is_finite() && v >= min {
                Ok(())
            } else {
                Err(invalid(
                    format!("{field}.{name}"),
                    v,
                    format!("must be ≥ {min}"),
                ))
            }
        };
        match *self {
            Availability::Always => Ok(()),
            Availability::Periodic {
                period_s,
                on_s,
                phase_s,
            } => {
                positive("period_s", period_s, 1e-6)?;
                if !(0.0..=period_s).contains(&on_s) {
                    let reason = "must be in [0, period_s]";
                    return Err(invalid(format!("{field}.on_s"), on_s, reason));
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
                positive("mean_on_s", mean_on_s, 1e-6)?;
                positive("mean_off_s", mean_off_s, 1e-6)?;
                if !(0.0..=1.0).contains(&start_on) {
                    let reason = "must be a probability in [0, 1]";
                    return Err(invalid(format!("{field}.start_on"), start_on, reason));
                }
                Ok(())
            }
            Availability::Trace { ref on } => check_intervals(&format!("{field}.on"), on),
        }
    }
}

/// Checks that `on` is sorted, disjoint `[start, end)` intervals with `0 ≤ start < end`.
pub(super) fn check_intervals(field: &str, on: &[(f64, f64)]) -> Result<(), DeviceError> {
    let mut last_end = 0.0;
    for (j, &(a, b)) in on.iter().enumerate() {
        let (field, value) = (format!("{field}[{j}]"), format!("[{a}, {b}]"));
        if !(a.is_finite() && b.is_finite() && a >= 0.0) {
            return Err(invalid(field, value, "need finite times ≥ 0"));
        }
        if a >= b {
            return Err(invalid(field, value, format!("start {a} ≥ end {b}")));
        }
        if a < last_end {
            let reason = format!("starts at {a}, before the previous interval ends at {last_end}");
            return Err(invalid(field, value, reason));
        }
        last_end = b;
    }
    Ok(())
}

/// The time `secs` after the start; a trace time beyond the clock's range never comes.
fn at(secs: f64) -> SimTime {
    SimTime::ZERO.saturating_add(SimDuration::from_secs_f64(secs).unwrap_or(SimDuration::MAX))
}

/// Seconds to signed microseconds (phases may be negative).
fn micros(secs: f64) -> i128 {
    (secs * 1e6).round() as i128
}

/// The lazily advanced state of one device's availability process: 16 bytes, so a million
/// devices fit easily. Queries must come with non-decreasing times (virtual time never goes
/// back), and only one device's stream — its `AVAILABILITY` purpose — may be passed in.
///
/// The Markov process is drawn sojourn by sojourn, and a sojourn only when the process is
/// advanced past the end of the previous one, never at a query time: its trajectory is a
/// function of the stream alone, whatever the queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityState {
    /// Whether the first sojourn has been drawn.
    started: bool,
    /// Whether the current sojourn is online.
    on: bool,
    /// End of the current sojourn.
    until: SimTime,
}

impl AvailabilityState {
    /// Advances the Markov process to the sojourn containing `t`.
    fn markov_advance(
        &mut self,
        t: SimTime,
        means_s: [f64; 2],
        start_on: f64,
        rng: &mut ChaCha8Rng,
    ) {
        // `means_s` is [mean off, mean on], indexed by the state. A sojourn too long for
        // the clock to count lasts for ever: it ends at `SimTime::MAX`, "never".
        let sojourn = |on: bool, rng: &mut ChaCha8Rng| {
            let e: f64 = Exp1.sample(rng);
            SimDuration::from_secs_f64(means_s[usize::from(on)] * e)
                .unwrap_or(SimDuration::MAX)
                .max(SimDuration(1))
        };
        if !self.started {
            self.started = true;
            self.on = rng.random::<f64>() < start_on;
            self.until = SimTime::ZERO.saturating_add(sojourn(self.on, rng));
        }
        while self.until <= t {
            self.on = !self.on;
            self.until = self.until.saturating_add(sojourn(self.on, rng));
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
            Availability::Trace { on } => trace_interval(on, t).is_some(),
            _ => self.next_off_after(availability, t, rng) > t,
        }
    }

    /// The first time `≥ t` at which the device is offline: `t` itself if it is offline
    /// now, the end of its current online stretch otherwise ([`SimTime::MAX`] if none).
    pub fn next_off_after(
        &mut self,
        availability: &Availability,
        t: SimTime,
        rng: &mut ChaCha8Rng,
    ) -> SimTime {
        match *availability {
            Availability::Always => SimTime::MAX,
            Availability::Periodic {
                period_s,
                on_s,
                phase_s,
            } => {
                let (period, on) = (micros(period_s).max(1), micros(on_s));
                if on >= period {
                    return SimTime::MAX;
                }
                let x = (i128::from(t.as_micros()) - micros(phase_s)).rem_euclid(period);
                match x < on {
                    true => SimTime(t.as_micros().saturating_add((on - x) as u64)),
                    false => t,
                }
            }
            Availability::Markov {
                mean_on_s,
                mean_off_s,
                start_on,
            } => {
                self.markov_advance(t, [mean_off_s, mean_on_s], start_on, rng);
                if self.on { self.until } else { t }
            }
            Availability::Trace { ref on } => trace_off_after(on, t),
        }
    }
}

/// The index of the interval of `on` (sorted, disjoint) containing `t`: a binary search.
fn trace_interval(on: &[(f64, f64)], t: SimTime) -> Option<usize> {
    // Rounding is monotone, so the rounded intervals stay sorted and disjoint.
    let j = on.partition_point(|&(_, b)| at(b) <= t);
    on.get(j).is_some_and(|&(a, _)| at(a) <= t).then_some(j)
}

/// [`AvailabilityState::next_off_after`] for a trace: the end of the interval containing
/// `t`, or of the last one touching it.
fn trace_off_after(on: &[(f64, f64)], t: SimTime) -> SimTime {
    let Some(j) = trace_interval(on, t) else {
        return t;
    };
    let mut end = at(on[j].1);
    for &(a, b) in &on[j + 1..] {
        if at(a) > end {
            break;
        }
        end = at(b);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Purpose, Seed};
    use proptest::prelude::*;

    fn rng(seed: u64) -> ChaCha8Rng {
        Seed(seed).stream(NodeId(0), Purpose::AVAILABILITY)
    }

    fn t(s: f64) -> SimTime {
        at(s)
    }

    #[test]
    fn periodic_availability_by_hand() {
        let mut s = AvailabilityState::default();
        let mut r = rng(0);
        let a = Availability::Periodic {
            period_s: 10.0,
            on_s: 4.0,
            phase_s: 1.0,
        };
        assert!(!s.is_available(&a, t(0.5), &mut r));
        assert!(s.is_available(&a, t(1.0), &mut r));
        assert!(s.is_available(&a, t(1.5), &mut r));
        assert_eq!(s.next_off_after(&a, t(2.0), &mut r), t(5.0));
        assert!(!s.is_available(&a, t(5.0), &mut r));
        assert_eq!(s.next_off_after(&a, t(8.0), &mut r), t(8.0));
        assert_eq!(s.next_off_after(&a, t(11.0), &mut r), t(15.0));
        let negative_phase = Availability::Periodic {
            period_s: 10.0,
            on_s: 4.0,
            phase_s: -7.0,
        };
        assert!(s.is_available(&negative_phase, t(3.5), &mut r));
        assert_eq!(s.next_off_after(&negative_phase, t(3.5), &mut r), t(7.0));
        let full = Availability::Periodic {
            period_s: 1.0,
            on_s: 1.0,
            phase_s: 0.0,
        };
        assert_eq!(s.next_off_after(&full, t(123.0), &mut r), SimTime::MAX);
    }

    #[test]
    fn trace_availability_by_hand() {
        let mut s = AvailabilityState::default();
        let mut r = rng(0);
        let a = Availability::Trace {
            on: vec![(0.0, 3.0), (10.0, 20.0), (20.0, 25.0), (40.0, 41.0)],
        };
        assert!(s.is_available(&a, t(0.0), &mut r));
        assert!(s.is_available(&a, t(2.0), &mut r));
        assert_eq!(s.next_off_after(&a, t(2.0), &mut r), t(3.0));
        assert!(!s.is_available(&a, t(3.0), &mut r));
        assert_eq!(s.next_off_after(&a, t(5.0), &mut r), t(5.0));
        // Touching intervals are one online stretch.
        assert_eq!(s.next_off_after(&a, t(12.0), &mut r), t(25.0));
        assert!(s.is_available(&a, t(20.0), &mut r));
        assert!(!s.is_available(&a, t(41.0), &mut r));
        assert_eq!(s.next_off_after(&a, t(99.0), &mut r), t(99.0));
        let none = Availability::Trace { on: Vec::new() };
        assert!(!s.is_available(&none, t(0.0), &mut r));
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
            .filter(|i| s.is_available(&a, SimTime(i * 50_000), &mut r))
            .count();
        let fraction = on as f64 / samples as f64;
        assert!((fraction - 0.75).abs() < 0.03, "{fraction}");
    }

    #[test]
    fn markov_start_state_follows_start_on() {
        let a = |start_on| Availability::Markov {
            mean_on_s: 1.0,
            mean_off_s: 1.0,
            start_on,
        };
        let starts = |start_on| {
            (0..2_000)
                .filter(|&k| {
                    AvailabilityState::default().is_available(
                        &a(start_on),
                        SimTime::ZERO,
                        &mut rng(k),
                    )
                })
                .count()
        };
        assert_eq!(starts(1.0), 2_000);
        assert_eq!(starts(0.0), 0);
        assert!((800..1_200).contains(&starts(0.5)));
    }

    #[test]
    fn the_state_is_small() {
        assert!(size_of::<AvailabilityState>() <= 16);
    }

    fn availability() -> impl Strategy<Value = Availability> {
        prop_oneof![
            Just(Availability::Always),
            (1u32..100, 0.0f64..1.0, -50.0f64..50.0).prop_map(|(p, f, phase)| {
                Availability::Periodic {
                    period_s: f64::from(p) / 10.0,
                    on_s: f64::from(p) / 10.0 * f,
                    phase_s: phase,
                }
            }),
            (0.01f64..5.0, 0.01f64..5.0, 0.0f64..1.0).prop_map(|(on, off, start_on)| {
                Availability::Markov {
                    mean_on_s: on,
                    mean_off_s: off,
                    start_on,
                }
            }),
            prop::collection::vec((0.0f64..3.0, 0.0f64..3.0), 0..20).prop_map(|gaps| {
                let mut on = Vec::new();
                let mut x = 0.0;
                for (gap, len) in gaps {
                    let a = x + gap;
                    x = a + len + 1e-7;
                    on.push((a, x));
                }
                Availability::Trace { on }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

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

        #[test]
        fn next_off_after_agrees_with_is_available(a in availability(), seed in any::<u64>(), start in 0u64..5_000_000) {
            prop_assert!(a.validate_at("a").is_ok(), "{:?}", a);
            // The probe walks forward in virtual time, as the world's queries do.
            let (mut s, mut r) = (AvailabilityState::default(), rng(seed));
            let mut t = SimTime(start);
            for _ in 0..30 {
                let off = s.next_off_after(&a, t, &mut r);
                prop_assert!(off >= t);
                prop_assert_eq!(off == t, !s.is_available(&a, t, &mut r));
                if off == SimTime::MAX {
                    break;
                }
                // Online through [t, off), probed at its midpoint and its last microsecond.
                if off > t {
                    prop_assert!(s.is_available(&a, SimTime((t.0 + off.0) / 2), &mut r));
                    prop_assert!(s.is_available(&a, SimTime(off.0 - 1), &mut r));
                }
                prop_assert!(!s.is_available(&a, off, &mut r));
                t = off + SimDuration(333_333);
            }
        }
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let cases = [
            (
                Availability::Periodic {
                    period_s: 0.0,
                    on_s: 0.0,
                    phase_s: 0.0,
                },
                "x.period_s",
            ),
            (
                Availability::Periodic {
                    period_s: 5.0,
                    on_s: 6.0,
                    phase_s: 0.0,
                },
                "x.on_s",
            ),
            (
                Availability::Periodic {
                    period_s: 5.0,
                    on_s: 1.0,
                    phase_s: f64::NAN,
                },
                "x.phase_s",
            ),
            (
                Availability::Markov {
                    mean_on_s: -1.0,
                    mean_off_s: 1.0,
                    start_on: 0.5,
                },
                "x.mean_on_s",
            ),
            (
                Availability::Markov {
                    mean_on_s: 1.0,
                    mean_off_s: 1.0,
                    start_on: 1.5,
                },
                "x.start_on",
            ),
            (
                Availability::Trace {
                    on: vec![(0.0, 5.0), (4.0, 6.0)],
                },
                "x.on[1]",
            ),
            (
                Availability::Trace {
                    on: vec![(5.0, 4.0)],
                },
                "start 5 ≥ end 4",
            ),
            (
                Availability::Trace {
                    on: vec![(-1.0, 4.0)],
                },
                "x.on[0]",
            ),
        ];
        for (a, expected) in cases {
            let e = a.validate_at("x").unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
