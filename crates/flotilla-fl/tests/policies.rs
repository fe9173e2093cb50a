//! Properties of the synchronous round policies (deadline, over-selection, minimum
//! participation) on whole simulated FedAvg runs over heterogeneous devices.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_fl::{Fate, FedAvg, LearningTask, RoundPolicy, ShortStage, Synchronous, UpdateRecord};
use flotilla_sim::{DeviceProfile, NodeId, SimDuration, secs};
use proptest::prelude::*;

/// Every stage's deadline.
const DEADLINE: SimDuration = secs(1);

type Sync = Synchronous<FedAvg>;

/// A virtual time in seconds as whole microseconds (the clock's unit).
fn us(s: f64) -> u64 {
    (s * 1e6).round() as u64
}

/// When each update arrived relative to its own round's deadline: the round's stage
/// opened when the server sent its assignments (the rounds' assignment instants, in order:
/// one stage per round here).
fn overdue_us(update: &UpdateRecord, opens: &[u64]) -> i64 {
    let due = opens[update.assignment.round as usize] + DEADLINE.as_micros();
    us(update.arrived_s) as i64 - due as i64
}

/// Devices taking `factors[i]` deadlines to train, with `dropout`.
fn devices(task: &LearningTask, factors: &[f64], dropout: f64) -> Vec<Option<DeviceProfile>> {
    factors
        .iter()
        .map(|f| Some(device_taking(task, f * DEADLINE.as_secs_f64(), dropout)))
        .collect()
}

/// A deadline policy with the rest as given.
fn deadline_policy(
    over_selection: f64,
    min_updates: usize,
    short: ShortStage,
    retries: u16,
) -> RoundPolicy {
    RoundPolicy {
        deadline: Some(DEADLINE),
        over_selection,
        min_updates,
        short_stage: short,
        max_retries: retries,
    }
}

fn short_stage() -> impl Strategy<Value = ShortStage> {
    prop_oneof![Just(ShortStage::Retry), Just(ShortStage::Skip)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Under a deadline, with some devices slower than it: an aggregated update arrived
    /// within the deadline of its stage's opening (and in its own round); every update
    /// arriving after it is counted late, every one arriving before it is aggregated.
    #[test]
    fn a_deadline_never_aggregates_a_late_update(
        seed in 0u64..1000,
        slow in 1.2f64..3.0,
        others in prop::collection::vec(0.2f64..3.0, 2..5),
        dropout in prop_oneof![Just(0.0), 0.0f64..0.3],
        rounds in 1u32..5,
    ) {
        let task = tiny_task(seed, 300);
        let factors: Vec<f64> = std::iter::once(slow).chain(others).collect();
        let n = factors.len();
        let policy = RoundPolicy::wait_all(Some(DEADLINE));
        let run = run(
            seed,
            &task,
            sync_coordinator(&task, None, policy, rounds, n),
            &devices(&task, &factors, dropout),
            network(1),
        );
        let c = run.coordinator::<Sync>();
        prop_assert!(c.finished());
        let opens = run.assignment_instants();
        prop_assert_eq!(opens.len(), c.history().len());
        let mut late = 0;
        for u in c.updates() {
            let overdue = overdue_us(u, &opens);
            if u.fate == Fate::Aggregated {
                prop_assert!(overdue <= 0, "{u:?} aggregated {overdue} µs after its deadline");
                prop_assert_eq!(u.version, u.assignment.round);
            }
            if overdue > 0 {
                prop_assert_eq!(u.fate, Fate::Late, "{:?}", u);
                late += 1;
            } else if overdue < 0 {
                prop_assert_eq!(u.fate, Fate::Aggregated, "{:?}", u);
            }
        }
        prop_assert_eq!(c.tally().late, late);
        for round in c.history() {
            prop_assert_eq!(round.stages.len(), 1);
            let aggregated: Vec<NodeId> = c
                .updates()
                .iter()
                .filter(|u| u.fate == Fate::Aggregated && u.assignment.round == round.round)
                .map(|u| u.client)
                .collect();
            let mut sorted = aggregated.clone();
            sorted.sort();
            prop_assert_eq!(&round.stages[0].replied, &sorted);
        }
    }

    /// Over-selecting by `f` for `K` clients assigns `ceil(f·K)` and aggregates exactly the
    /// first `K` replies when at least `K` arrive in time (all in-time ones, fewer than `K`,
    /// otherwise); the replies beyond the quota are cancelled (late once the run is over).
    #[test]
    fn over_selection_aggregates_exactly_k(
        seed in 0u64..1000,
        k in 1usize..4,
        f in 1.0f64..2.5,
        spare in 0usize..3,
        factors in prop::collection::vec(0.2f64..2.0, 10),
        rounds in 1u32..5,
    ) {
        let task = tiny_task(seed, 300);
        let drawn = if f > 1.0 { (f * k as f64).ceil() as usize } else { k };
        let n = drawn + spare;
        let policy = deadline_policy(f, 0, ShortStage::Retry, 0);
        let run = run(
            seed,
            &task,
            sync_coordinator(&task, Some(k), policy, rounds, n),
            &devices(&task, &factors[..n], 0.0),
            network(1),
        );
        let c = run.coordinator::<Sync>();
        prop_assert!(c.finished());
        let finished = c.finished_at().unwrap().as_micros();
        let opens = run.assignment_instants();
        prop_assert_eq!(opens.len(), c.history().len());
        let mut cancelled = 0;
        for round in c.history() {
            prop_assert_eq!(round.stages.len(), 1);
            let stage = &round.stages[0];
            prop_assert_eq!(stage.assigned.len(), drawn);
            let replies: Vec<&UpdateRecord> =
                c.updates().iter().filter(|u| u.assignment.round == round.round).collect();
            let in_time = replies.iter().filter(|u| overdue_us(u, &opens) <= 0).count();
            let (taken, rest): (Vec<&UpdateRecord>, Vec<&UpdateRecord>) =
                replies.iter().partition(|u| u.fate == Fate::Aggregated);
            let mut clients: Vec<NodeId> = taken.iter().map(|u| u.client).collect();
            clients.sort();
            prop_assert_eq!(&stage.replied, &clients);
            prop_assert!(stage.replied.len() <= k);
            if in_time >= k {
                prop_assert_eq!(stage.replied.len(), k, "{} in time", in_time);
                let last_taken = taken.iter().map(|u| us(u.arrived_s)).max().unwrap_or(0);
                for u in &rest {
                    let at = us(u.arrived_s);
                    prop_assert!(at >= last_taken, "{u:?} came before an aggregated one");
                    let fate = if at < finished { Fate::Cancelled } else { u.fate };
                    prop_assert!(
                        u.fate == fate && matches!(fate, Fate::Cancelled | Fate::Late),
                        "{u:?} beyond the quota (run over at {finished} µs)"
                    );
                    cancelled += u64::from(u.fate == Fate::Cancelled);
                }
            } else {
                prop_assert_eq!(stage.replied.len(), in_time);
                for u in &rest {
                    prop_assert_eq!(u.fate, Fate::Late);
                }
            }
        }
        prop_assert_eq!(c.tally().cancelled, cancelled);
    }

    /// A stage that gets fewer than `M` updates is never aggregated: its in-time replies
    /// are counted short, it is retried (attempt + 1) while retries are left and the
    /// policy retries, else skipped, and a round with nothing aggregated leaves the global
    /// model as it was.
    #[test]
    fn short_stages_are_retried_or_skipped_never_aggregated(
        seed in 0u64..1000,
        factors in prop::collection::vec(0.2f64..2.0, 3..6),
        dropout in 0.0f64..0.5,
        min in 1usize..6,
        short in short_stage(),
        retries in 0u16..3,
        rounds in 1u32..4,
    ) {
        let task = tiny_task(seed, 300);
        let n = factors.len();
        let policy = deadline_policy(1.0, min, short, retries);
        let run = run(
            seed,
            &task,
            sync_coordinator(&task, None, policy, rounds, n),
            &devices(&task, &factors, dropout),
            network(1),
        );
        let c = run.coordinator::<Sync>();
        prop_assert!(c.finished());
        let initial = task.initial_weights(MODEL).unwrap();
        let mut loss = task.evaluate(MODEL, &initial).unwrap().1;
        let mut short_total = 0;
        for round in c.history() {
            let stages = &round.stages;
            for (i, stage) in stages.iter().enumerate() {
                prop_assert_eq!(stage.stage, 0);
                prop_assert_eq!(usize::from(stage.attempt), i);
                let shorted = stage.discarded.get(&Fate::ShortStage).copied().unwrap_or(0);
                short_total += u64::from(shorted);
                let last = i + 1 == stages.len();
                if stage.replied.is_empty() {
                    prop_assert!((shorted as usize) < min, "{shorted} replies counted short");
                    let retried = short == ShortStage::Retry && stage.attempt < retries;
                    prop_assert_eq!(last, !retried, "round {}: {:?}", round.round, stages);
                } else {
                    prop_assert!(stage.replied.len() >= min, "{:?}", stage);
                    prop_assert_eq!(shorted, 0);
                    prop_assert!(last);
                }
            }
            let after = round.evaluations[0].loss;
            if stages.iter().all(|s| s.replied.is_empty()) {
                prop_assert_eq!(after.to_bits(), loss.to_bits(), "round {} moved the model", round.round);
            }
            loss = after;
        }
        let recorded = c.updates().iter().filter(|u| u.fate == Fate::ShortStage).count() as u64;
        prop_assert_eq!(short_total, recorded);
        prop_assert_eq!(c.tally().short_stage, recorded);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Under dropout, message loss and an outage, whatever the policy (without a deadline a
    /// lost job stalls the run), the books balance:
    /// assignments are the messages sent, every reply that arrived has one fate, the tally
    /// adds up.
    #[test]
    fn books_balance_under_faults(
        seed in 0u64..1000,
        factors in prop::collection::vec(0.2f64..2.0, 2..6),
        per_round in prop::option::of(1usize..4),
        deadline in prop_oneof![1 => Just(None), 3 => (1u64..3).prop_map(Some)],
        over_selection in prop_oneof![Just(1.0), 1.0f64..2.0],
        min in 0usize..4,
        short in short_stage(),
        retries in 0u16..3,
        dropout in 0.0f64..0.4,
        loss in 0.0f64..0.1,
        outage in (0u64..4000, 0u64..1500),
        rounds in 2u32..5,
    ) {
        let task = tiny_task(seed, 300);
        let n = factors.len();
        let policy = RoundPolicy {
            deadline: deadline.map(secs),
            over_selection,
            min_updates: min,
            short_stage: short,
            max_retries: retries,
        };
        let run = run(
            seed,
            &task,
            sync_coordinator(&task, per_round, policy, rounds, n),
            &devices(&task, &factors, dropout),
            faulty_network(loss, outage),
        );
        assert_books_balance::<Sync>(&run);
    }
}
