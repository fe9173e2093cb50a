//! Convergence on a convex task: logistic regression (`mlp:16-4`, one dense layer) on
//! linearly separable data (one tight cluster per class) gets a lower test loss under
//! FedAvg and FedBuff, whatever the stragglers and dropouts.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_data::SyntheticConfig;
use flotilla_fl::{
    Asynchronous, Coordinator, FedAvg, LearningTask, RoundPolicy, ServerLogic, Staleness,
    Synchronous, Work,
};
use flotilla_sim::{DeviceProfile, secs};
use proptest::prelude::*;
use std::sync::Arc;

/// Rounds (versions) of every run.
const ROUNDS: u32 = 5;
/// Seconds a fast device takes per job; a slow one takes ten times as long.
const FAST_S: f64 = 0.1;

fn separable_task(seed: u64) -> Arc<LearningTask> {
    let data = SyntheticConfig {
        seed,
        classes: 4,
        clusters_per_class: 1,
        dim: 16,
        cluster_std: 0.1,
        train_samples: 480,
        test_samples: 200,
    };
    task(seed, "mlp:16-4", data, 5)
}

/// Two fast devices, then one per flag (slow: ten times slower), all with `dropout`.
fn stragglers(task: &LearningTask, slow: &[bool], dropout: f64) -> Vec<Option<DeviceProfile>> {
    [false, false]
        .iter()
        .chain(slow)
        .map(|&s| {
            let secs = if s { 10.0 * FAST_S } else { FAST_S };
            Some(device_taking(task, secs, dropout))
        })
        .collect()
}

/// The run finished, and its last evaluation's test loss is below the initial model's.
fn assert_loss_fell<L: ServerLogic<Work = Work>>(task: &LearningTask, run: &Run) {
    let c: &Coordinator<L> = run.coordinator();
    assert!(c.finished());
    let initial = task.initial_weights(MODEL).unwrap();
    let before = task.evaluate(MODEL, &initial).unwrap().1;
    let last = c.history().last().unwrap().evaluations.last().unwrap();
    assert_eq!(last.round + 1, ROUNDS);
    assert!(last.loss < before, "test loss {before} → {}", last.loss);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// FedAvg over every client with a deadline the slow devices miss.
    #[test]
    fn fedavg_lowers_the_loss(
        seed in 0u64..1000,
        slow in prop::collection::vec(any::<bool>(), 1..5),
        dropout in 0.0f64..0.3,
    ) {
        let task = separable_task(seed);
        let devices = stragglers(&task, &slow, dropout);
        let policy = RoundPolicy::wait_all(Some(secs(1)));
        let n = devices.len();
        let coordinator = Coordinator::synchronous(
            fedavg(&task, None, 0.1),
            policy,
            task.clone(),
            config(ROUNDS),
            n,
        );
        let run = run(seed, &task, coordinator, &devices, network(1));
        assert_loss_fell::<Synchronous<FedAvg>>(&task, &run);
    }

    /// FedBuff (buffer 2, half the fleet at once, polynomial discount), giving up jobs
    /// after 3 s.
    #[test]
    fn fedbuff_lowers_the_loss(
        seed in 0u64..1000,
        slow in prop::collection::vec(any::<bool>(), 1..5),
        dropout in 0.0f64..0.3,
    ) {
        let task = separable_task(seed);
        let devices = stragglers(&task, &slow, dropout);
        let n = devices.len();
        let config = async_config(
            fedbuff(2, 1.0, Staleness::Polynomial { a: 0.5 }),
            n.div_ceil(2),
            0.1,
            Some(secs(3)),
            ROUNDS,
        );
        let run = run(seed, &task, async_coordinator(&task, config, n), &devices, network(1));
        assert_loss_fell::<Asynchronous>(&task, &run);
    }
}
