//! Whether a finished run's models are results: a diverged model, or one no update ever
//! reached, is reported as such and never averaged into a table entry.
//!
//! The rules, applied to each model a run evaluated:
//! - **diverged, non-finite**: an evaluation's test loss or accuracy is not finite; the
//!   round is the first such evaluation;
//! - **diverged, collapsed**: the final evaluation is at chance level (accuracy at most
//!   [`CHANCE_MARGIN`] above the test set's majority-class share, what a constant
//!   prediction scores), and either an earlier evaluation was at least
//!   [`LEARNED_MARGIN`] above chance, or clients' models were rejected as non-finite; the
//!   round is the first of the final run of evaluations at chance;
//! - **no update**: no aggregated reply ever carried the model, so it is still the initial
//!   one (every client dropped out, every reply was late or rejected).
//!
//! A model that never rose above chance and met no non-finite value has not learned, which
//! is a result (for example too few rounds), not a divergence.

use crate::RunOutcome;
use flotilla_fl::ModelRole;
use serde::Serialize;

/// How far above chance (absolute accuracy) a model still counts as at chance.
pub const CHANCE_MARGIN: f64 = 0.02;
/// How far above chance (absolute accuracy) a model must have been to have learned.
pub const LEARNED_MARGIN: f64 = 0.10;

/// Why a run's model is not a result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// The model is a result.
    Ok,
    /// The model diverged at `round`.
    Diverged {
        /// The first round of the divergence.
        round: u32,
        /// What showed it.
        reason: String,
    },
    /// No aggregated reply carried the model: it is the initial one.
    NoUpdate,
}

impl Verdict {
    /// Whether the model is a result.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// A short description for tables and messages.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Ok => "ok".into(),
            Verdict::Diverged { round, reason } => format!("diverged at round {round} ({reason})"),
            Verdict::NoUpdate => {
                "was never updated (no aggregated reply carried it): the initial model".into()
            }
        }
    }
}

/// The accuracy of always predicting the most frequent test label.
pub fn chance_accuracy(labels: &[u32]) -> f64 {
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    if labels.is_empty() {
        0.0
    } else {
        top as f64 / labels.len() as f64
    }
}

impl RunOutcome {
    /// Rounds in which no stage aggregated a single reply.
    pub fn empty_rounds(&self) -> Vec<u32> {
        self.rounds
            .iter()
            .filter(|r| r.stages.iter().all(|s| s.replied.is_empty()))
            .map(|r| r.round)
            .collect()
    }

    /// Client replies rejected because their model held a non-finite value.
    pub fn rejected_replies(&self) -> usize {
        self.rounds
            .iter()
            .flat_map(|r| &r.stages)
            .map(|s| s.rejected.len())
            .sum()
    }

    /// Whether the evaluations of `role` are a result (see the module documentation).
    pub fn verdict(&self, role: ModelRole) -> Verdict {
        let evals: Vec<_> = self.evaluations.iter().filter(|e| e.role == role).collect();
        let updated = self
            .rounds
            .iter()
            .flat_map(|r| &r.stages)
            .any(|s| s.models.contains(&role));
        if !updated && !self.rounds.is_empty() {
            return Verdict::NoUpdate;
        }
        if let Some(e) = evals
            .iter()
            .find(|e| !e.loss.is_finite() || !e.accuracy.is_finite())
        {
            return Verdict::Diverged {
                round: e.round,
                reason: format!("test loss {}", e.loss),
            };
        }
        let at_chance = |a: f64| a <= self.chance_accuracy + CHANCE_MARGIN;
        let Some(last) = evals.last() else {
            return Verdict::Ok;
        };
        if !at_chance(last.accuracy) {
            return Verdict::Ok;
        }
        let streak = evals
            .iter()
            .rev()
            .take_while(|e| at_chance(e.accuracy))
            .count();
        let first = evals[evals.len() - streak];
        let best = evals
            .iter()
            .map(|e| e.accuracy)
            .fold(f64::NEG_INFINITY, f64::max);
        let rejected = self.rejected_replies();
        let reason = if best >= self.chance_accuracy + LEARNED_MARGIN {
            format!(
                "accuracy fell to chance, {:.2} %, after {:.2} %",
                100.0 * last.accuracy,
                100.0 * best
            )
        } else if rejected > 0 {
            format!(
                "accuracy at chance, {:.2} %, with {rejected} client models non-finite",
                100.0 * last.accuracy
            )
        } else {
            return Verdict::Ok;
        };
        Verdict::Diverged {
            round: first.round,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;
    use flotilla_fl::{Evaluation, RoundRecord, StageRecord};
    use flotilla_sim::{Counters, NodeId};
    use std::collections::BTreeMap;

    fn outcome(accuracies: &[f64], replied: &[usize], rejected: usize) -> RunOutcome {
        let stage = |n: usize, rejected: usize| StageRecord {
            assigned: (0..n as u32 + 1).map(NodeId).collect(),
            replied: (0..n as u32).map(NodeId).collect(),
            rejected: (0..rejected as u32).map(NodeId).collect(),
            models: if n > 0 {
                vec![ModelRole::Target]
            } else {
                Vec::new()
            },
            client_stats: BTreeMap::new(),
            ..StageRecord::new(0, 0)
        };
        RunOutcome {
            method: Method::StrongOnly,
            seed: 1,
            evaluations: accuracies
                .iter()
                .enumerate()
                .map(|(r, &accuracy)| Evaluation {
                    round: r as u32,
                    role: ModelRole::Target,
                    virtual_time_s: r as f64,
                    accuracy,
                    loss: if accuracy.is_nan() { f64::NAN } else { 1.0 },
                })
                .collect(),
            rounds: replied
                .iter()
                .enumerate()
                .map(|(r, &n)| RoundRecord {
                    round: r as u32,
                    closed_at_s: r as f64,
                    stages: vec![stage(n, if r == 0 { rejected } else { 0 })],
                    evaluations: Vec::new(),
                })
                .collect(),
            counters: Counters::default(),
            groups: Vec::new(),
            clients: (2, 1),
            samples_centralised: 0,
            chance_accuracy: 0.1,
            final_models: Vec::new(),
            jobs: flotilla_fl::JobTally::default(),
            unanswered: None,
            updates: Vec::new(),
            edges: Vec::new(),
            client_nodes: Vec::new(),
            virtual_time_s: 1.0,
            simulation_end_s: 1.0,
            wall_time_s: 0.0,
            job_flops: 0,
            job_busy_s: 0.0,
            trace_hash: String::new(),
        }
    }

    #[test]
    fn a_learning_run_is_a_result_and_so_is_one_that_never_learned() {
        assert_eq!(
            outcome(&[0.3, 0.6, 0.8], &[2, 2, 2], 0).verdict(ModelRole::Target),
            Verdict::Ok
        );
        assert_eq!(
            outcome(&[0.1, 0.11, 0.1], &[2, 2, 2], 0).verdict(ModelRole::Target),
            Verdict::Ok
        );
        // A dip to chance that recovered is not a divergence.
        assert_eq!(
            outcome(&[0.5, 0.1, 0.7], &[2, 2, 2], 0).verdict(ModelRole::Target),
            Verdict::Ok
        );
    }

    #[test]
    fn a_collapse_to_chance_is_diverged_from_the_first_round_at_chance() {
        let v = outcome(&[0.5, 0.7, 0.1, 0.12, 0.098], &[2; 5], 0).verdict(ModelRole::Target);
        assert!(matches!(v, Verdict::Diverged { round: 2, .. }), "{v:?}");
        let v = outcome(&[0.1, 0.1], &[2, 2], 3).verdict(ModelRole::Target);
        assert!(matches!(v, Verdict::Diverged { round: 0, .. }), "{v:?}");
    }

    #[test]
    fn a_non_finite_loss_is_diverged_at_its_round() {
        let v = outcome(&[0.5, f64::NAN, f64::NAN], &[2; 3], 0).verdict(ModelRole::Target);
        assert!(matches!(v, Verdict::Diverged { round: 1, .. }), "{v:?}");
    }

    #[test]
    fn a_run_that_aggregated_nothing_has_no_result() {
        let o = outcome(&[0.4, 0.4], &[0, 0], 0);
        assert_eq!(o.empty_rounds(), vec![0, 1]);
        assert_eq!(o.verdict(ModelRole::Target), Verdict::NoUpdate);
        assert_eq!(
            outcome(&[0.4, 0.5], &[0, 2], 0).verdict(ModelRole::Target),
            Verdict::Ok
        );
    }

    #[test]
    fn chance_is_the_majority_share() {
        assert_eq!(chance_accuracy(&[0, 1, 1, 2]), 0.5);
        assert_eq!(chance_accuracy(&[]), 0.0);
    }
}
