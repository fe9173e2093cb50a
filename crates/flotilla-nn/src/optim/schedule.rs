//! Learning-rate schedules and the distillation-weight ramp.

use crate::{NnError, Result};
use serde::{Deserialize, Serialize};

/// A learning rate as a function of the round (or epoch) index `t`, counted from 0.
///
/// Serialised externally tagged in snake case: `{"constant": 0.1}` or
/// `{"step": {"base": 0.2, "milestones": [200, 300], "gamma": 0.1}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate throughout.
    Constant(f32),
    /// `base · gamma^k`, where `k` counts the milestones `≤ t` (PyTorch `MultiStepLR`).
    Step {
        /// Rate before the first milestone.
        base: f32,
        /// Indices at which the rate is multiplied by `gamma`, non-decreasing (a repeated
        /// milestone applies `gamma` once per occurrence).
        milestones: Vec<usize>,
        /// Factor per milestone, in `(0, 1]`.
        gamma: f32,
    },
}

impl LrSchedule {
    /// The method's schedule: `lr0`, divided by 10 at 50% and 75% of `total_rounds`
    /// (rounds 200 and 300 of 400).
    pub fn method_default(lr0: f32, total_rounds: usize) -> Self {
        LrSchedule::Step {
            base: lr0,
            milestones: vec![total_rounds / 2, total_rounds * 3 / 4],
            gamma: 0.1,
        }
    }

    /// The rate at round `t`.
    pub fn lr_at(&self, t: usize) -> f32 {
        match self {
            LrSchedule::Constant(lr) => *lr,
            LrSchedule::Step {
                base,
                milestones,
                gamma,
            } => milestones
                .iter()
                .filter(|&&m| m <= t)
                .fold(*base, |lr, _| lr * gamma),
        }
    }

    /// Checks that rates are finite and positive, `gamma ∈ (0, 1]` and the milestones are
    /// sorted.
    pub fn validate(&self) -> Result<()> {
        let (lr, gamma, milestones) = match self {
            LrSchedule::Constant(lr) => (*lr, 1.0, &[][..]),
            LrSchedule::Step {
                base,
                milestones,
                gamma,
            } => (*base, *gamma, &milestones[..]),
        };
        if !(lr.is_finite() && lr > 0.0) {
            return Err(NnError::HyperParameter {
                name: "lr",
                value: lr.to_string(),
                reason: "must be a finite number > 0",
            });
        }
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err(NnError::HyperParameter {
                name: "gamma",
                value: gamma.to_string(),
                reason: "must be in (0, 1]",
            });
        }
        if milestones.windows(2).any(|w| w[1] < w[0]) {
            return Err(NnError::HyperParameter {
                name: "milestones",
                value: format!("{milestones:?}"),
                reason: "must be in non-decreasing order",
            });
        }
        Ok(())
    }
}

/// The method's distillation weight at round `t`:
/// `w(t) = λ·exp(−5·(1 − t/t_a)²)` for `t < t_a`, else `λ`, with `t_a = ramp_until`.
///
/// With `λ = 0.5`: `w(0) ≈ 0.00337`, `w(t_a/2) ≈ 0.143`, `w(t ≥ t_a) = 0.5`. A
/// `ramp_until` of 0 means no ramp.
pub fn kd_weight(t: usize, lambda: f32, ramp_until: usize) -> f32 {
    if t >= ramp_until {
        return lambda;
    }
    let x = 1.0 - t as f64 / ramp_until as f64;
    (f64::from(lambda) * (-5.0 * x * x).exp()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_default_divides_by_ten_at_half_and_three_quarters() {
        let s = LrSchedule::method_default(0.2, 400);
        s.validate().unwrap();
        assert_eq!(
            s,
            LrSchedule::Step {
                base: 0.2,
                milestones: vec![200, 300],
                gamma: 0.1
            }
        );
        assert_eq!(s.lr_at(0), 0.2);
        assert_eq!(s.lr_at(199), 0.2);
        assert!((s.lr_at(200) - 0.02).abs() < 1e-8);
        assert!((s.lr_at(299) - 0.02).abs() < 1e-8);
        assert!((s.lr_at(300) - 0.002).abs() < 1e-9);
        assert!((s.lr_at(10_000) - 0.002).abs() < 1e-9);
        // Tiny runs still validate (repeated milestones are allowed).
        LrSchedule::method_default(0.2, 1).validate().unwrap();
    }

    #[test]
    fn constant_is_constant() {
        let s = LrSchedule::Constant(0.05);
        s.validate().unwrap();
        assert!((0..1000).all(|t| s.lr_at(t) == 0.05));
    }

    #[test]
    fn invalid_schedules_name_the_parameter() {
        for (s, name) in [
            (LrSchedule::Constant(0.0), "lr"),
            (
                LrSchedule::Step {
                    base: 0.1,
                    milestones: vec![5],
                    gamma: 0.0,
                },
                "gamma",
            ),
            (
                LrSchedule::Step {
                    base: 0.1,
                    milestones: vec![5],
                    gamma: 1.5,
                },
                "gamma",
            ),
            (
                LrSchedule::Step {
                    base: 0.1,
                    milestones: vec![5, 3],
                    gamma: 0.1,
                },
                "milestones",
            ),
            (
                LrSchedule::Step {
                    base: f32::INFINITY,
                    milestones: vec![],
                    gamma: 0.1,
                },
                "lr",
            ),
        ] {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn serde_forms() {
        let s: LrSchedule = serde_json::from_str(r#"{"constant": 0.1}"#).unwrap();
        assert_eq!(s, LrSchedule::Constant(0.1));
        let s = LrSchedule::method_default(0.2, 400);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"step":{"base":0.2,"milestones":[200,300],"gamma":0.1}}"#
        );
        assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), s);
    }

    #[test]
    fn kd_weight_ramp_matches_the_method() {
        let w = |t| kd_weight(t, 0.5, 300);
        assert!((w(0) - 0.5 * (-5.0f32).exp()).abs() < 1e-7);
        assert!((w(0) - 0.00337).abs() < 1e-5, "{}", w(0));
        assert!((w(150) - 0.1433).abs() < 1e-4, "{}", w(150));
        assert_eq!(w(300), 0.5);
        assert_eq!(w(399), 0.5);
        assert!((1..300).all(|t| w(t) > w(t - 1)), "ramp is increasing");
        assert_eq!(kd_weight(0, 0.5, 0), 0.5);
        assert_eq!(kd_weight(7, 0.0, 300), 0.0);
    }
}
