//! The protocol nodes with the built-in FedAvg: a diverged client's update (a non-finite
//! value) is rejected and counted instead of poisoning the global model.

#![allow(clippy::unwrap_used)]

use flotilla_data::SyntheticConfig;
use flotilla_fl::{
    Assignment, ClientData, ClientEnv, ClientGroup, ClientStrategy, Coordinator, CoordinatorConfig,
    FedAvg, FedAvgConfig, Federation, FlError, LearningTask, LocalTraining, LocalWorker, ModelRole,
    Reply, RoundPolicy, Work,
};
use flotilla_nn::{LrSchedule, SgdConfig};
use flotilla_sim::{LinkSpec, NetworkModel, NodeId, Seed, Simulation, StopAt, millis, secs};
use std::sync::Arc;

/// The built-in worker, except that node 2's models come back as NaN.
#[derive(Debug)]
struct Diverging;

impl ClientStrategy for Diverging {
    type Work = Work;

    fn flops(&self, env: &ClientEnv, a: &Assignment<Work>) -> Result<u64, FlError> {
        LocalWorker.flops(env, a)
    }

    fn execute(&self, env: &ClientEnv, a: Assignment<Work>) -> Result<Reply, FlError> {
        let mut reply = LocalWorker.execute(env, a)?;
        if env.node == NodeId(2) {
            for p in &mut reply.models {
                p.weights.params[0] = f32::NAN;
            }
        }
        Ok(reply)
    }
}

#[test]
fn a_non_finite_update_is_rejected_and_counted() {
    let seed = Seed(5);
    let (train, test) = SyntheticConfig {
        train_samples: 600,
        test_samples: 200,
        ..Default::default()
    }
    .generate()
    .unwrap();
    let local = LocalTraining {
        steps: 3,
        batch_size: 16,
        sgd: SgdConfig::default(),
    };
    let models = [(ModelRole::Target, "mlp:32-8-10".parse().unwrap())];
    let task = Arc::new(
        LearningTask::new(Arc::new(train), Arc::new(test), None, &models, local, seed).unwrap(),
    );
    let strategy = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: None,
            weighted: false,
            schedule: LrSchedule::Constant(0.05),
        },
    )
    .unwrap();
    let config = CoordinatorConfig {
        rounds: 2,
        registration_window: secs(1),
        eval_every: 1,
    };
    let network = NetworkModel::new(LinkSpec::latency(millis(1)));
    let data = (0..3)
        .map(|k| ClientData::from_labeled((k * 200..(k + 1) * 200).collect::<Vec<_>>()))
        .collect();
    let clients = ClientGroup::new(Arc::new(Diverging), task.clone(), data);
    let policy = RoundPolicy::wait_all(Some(secs(60)));
    let coordinator = move |n| Coordinator::synchronous(strategy, policy, task, config, n);
    let fed = Federation::star(Simulation::builder(seed, network), coordinator, clients);
    let (mut sim, handle) = fed.build().unwrap();
    sim.run(StopAt::Idle);
    let coordinator = handle.coordinator(&sim).unwrap();
    assert!(coordinator.finished());
    for round in coordinator.history() {
        let stage = &round.stages[0];
        assert_eq!(stage.assigned, vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(stage.rejected, vec![NodeId(2)]);
        assert_eq!(stage.replied, vec![NodeId(1), NodeId(3)]);
        assert!(round.evaluations[0].loss.is_finite());
    }
    assert!(
        coordinator
            .logic()
            .strategy()
            .global()
            .params
            .iter()
            .all(|v| v.is_finite())
    );
}
