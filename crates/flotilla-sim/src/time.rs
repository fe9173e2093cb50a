//! Virtual time: integer microseconds, never a wall clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in virtual time, in microseconds since the start of the run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SimTime(pub u64);

/// A span of virtual time, in microseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SimDuration(pub u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);
    /// The largest representable time; it means "never", so nothing is ever scheduled at
    /// it (see [`SimTime::checked_add`]).
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// Microseconds since the start.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Seconds since the start, for display and metrics.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// `self + d` as a time an event can happen at, or `None` if it would reach
    /// [`SimTime::MAX`] ("never") or overflow: the clock cannot count that far (about
    /// 584,000 years), and callers turn that into an error rather than a clamp.
    pub const fn checked_add(self, d: SimDuration) -> Option<SimTime> {
        match self.0.checked_add(d.0) {
            Some(t) if t < u64::MAX => Some(SimTime(t)),
            _ => None,
        }
    }

    /// `self + d`, saturating at [`SimTime::MAX`]: only for boundaries of a schedule, where
    /// "beyond the clock" means "never" (an outage that never ends); events use
    /// [`SimTime::checked_add`].
    pub const fn saturating_add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }

    /// The time elapsed since `earlier` (zero if `earlier` is later).
    pub const fn saturating_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl SimDuration {
    /// No time.
    pub const ZERO: SimDuration = SimDuration(0);
    /// The longest representable span, longer than any the clock can schedule.
    pub const MAX: SimDuration = SimDuration(u64::MAX);

    /// Microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Seconds, for display and metrics.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// A duration from seconds, rounded to the nearest microsecond, or `None` if `secs` is
    /// NaN, negative, or too long to count in microseconds (infinite, or `2⁶⁴` µs ≈ 584,000
    /// years and more): no value is silently clamped. Callers for which "too long" means
    /// "never" say so with `.unwrap_or(SimDuration::MAX)`.
    pub fn from_secs_f64(secs: f64) -> Option<SimDuration> {
        let us = (secs * 1e6).round();
        // `u64::MAX as f64` is 2⁶⁴, the first value that does not fit.
        (us >= 0.0 && us < u64::MAX as f64).then_some(SimDuration(us as u64))
    }
}

/// `n` microseconds.
pub const fn micros(n: u64) -> SimDuration {
    SimDuration(n)
}

/// `n` milliseconds.
///
/// # Panics
/// If that many microseconds overflow `u64`.
pub const fn millis(n: u64) -> SimDuration {
    match n.checked_mul(1_000) {
        Some(us) => SimDuration(us),
        None => panic!("duration beyond u64 microseconds"),
    }
}

/// `n` seconds.
///
/// # Panics
/// If that many microseconds overflow `u64`.
pub const fn secs(n: u64) -> SimDuration {
    match n.checked_mul(1_000_000) {
        Some(us) => SimDuration(us),
        None => panic!("duration beyond u64 microseconds"),
    }
}

/// `n` minutes.
///
/// # Panics
/// If that many microseconds overflow `u64`.
pub const fn mins(n: u64) -> SimDuration {
    match n.checked_mul(60_000_000) {
        Some(us) => SimDuration(us),
        None => panic!("duration beyond u64 microseconds"),
    }
}

/// `n` hours.
///
/// # Panics
/// If that many microseconds overflow `u64`.
pub const fn hours(n: u64) -> SimDuration {
    match n.checked_mul(3_600_000_000) {
        Some(us) => SimDuration(us),
        None => panic!("duration beyond u64 microseconds"),
    }
}

/// `t + d`, for times known to be in range (constants, tests).
///
/// # Panics
/// If the sum is not a time an event can happen at (see [`SimTime::checked_add`]), like
/// `std::time::Instant + Duration`; the runtime schedules with `checked_add` and turns
/// that case into a node failure.
impl Add<SimDuration> for SimTime {
    type Output = SimTime;

    fn add(self, d: SimDuration) -> SimTime {
        self.checked_add(d)
            .expect("virtual time beyond the clock's range; use SimTime::checked_add")
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, d: SimDuration) {
        *self = *self + d;
    }
}

impl Sub<SimTime> for SimTime {
    type Output = SimDuration;

    fn sub(self, earlier: SimTime) -> SimDuration {
        self.saturating_since(earlier)
    }
}

/// `a + b`.
///
/// # Panics
/// If the sum overflows `u64` microseconds.
impl Add for SimDuration {
    type Output = SimDuration;

    fn add(self, other: SimDuration) -> SimDuration {
        SimDuration(
            self.0
                .checked_add(other.0)
                .expect("virtual duration beyond u64 microseconds"),
        )
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_convert_exactly_or_not_at_all() {
        assert_eq!(SimDuration::from_secs_f64(1.5), Some(millis(1_500)));
        assert_eq!(SimDuration::from_secs_f64(0.0), Some(SimDuration::ZERO));
        assert_eq!(SimDuration::from_secs_f64(-0.0), Some(SimDuration::ZERO));
        assert_eq!(SimDuration::from_secs_f64(2.4e-7), Some(SimDuration::ZERO));
        assert_eq!(SimDuration::from_secs_f64(1e7), Some(secs(10_000_000)));
        // Formerly zero or a silent clamp to u64::MAX µs.
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e18, 1.9e13] {
            assert_eq!(SimDuration::from_secs_f64(bad), None, "{bad}");
        }
        // The largest count just below 2⁶⁴ µs still converts.
        assert!(SimDuration::from_secs_f64(1.8e13).is_some());
    }

    #[test]
    fn adding_to_the_clock_never_clamps() {
        let late = SimTime(u64::MAX - 10);
        assert_eq!(late.checked_add(micros(9)), Some(SimTime(u64::MAX - 1)));
        // `MAX` means "never": no event is scheduled there, nor past it.
        assert_eq!(late.checked_add(micros(10)), None);
        assert_eq!(late.checked_add(SimDuration::MAX), None);
        assert_eq!(SimTime::ZERO.checked_add(SimDuration::MAX), None);
        // Schedule boundaries may say "never" on purpose.
        assert_eq!(late.saturating_add(SimDuration::MAX), SimTime::MAX);
        assert_eq!(SimTime(5) + micros(2), SimTime(7));
    }

    #[test]
    #[should_panic(expected = "beyond the clock's range")]
    fn the_operator_panics_rather_than_clamping() {
        let _ = SimTime(u64::MAX - 1) + micros(1);
    }

    #[test]
    #[should_panic(expected = "beyond u64 microseconds")]
    fn unit_constructors_do_not_wrap() {
        let _ = hours(u64::MAX / 1_000_000);
    }
}
