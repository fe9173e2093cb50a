//! Heterogeneity emerges from device profiles: weak devices 10× slower than strong ones
//! answer later, and a device that drops out mid-job is counted as such.

use flotilla::data::{SyntheticConfig, iid};
use flotilla::fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, FedAvg, FedAvgConfig, Federation,
    FlMessage, LearningTask, LocalTraining, LocalWorker, ModelRole, Placement, RoundPolicy,
    Synchronous, Work,
};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    Availability, DeviceProfile, DropReason, LinkSpec, NetworkModel, NodeId, Purpose, Seed,
    Simulation, StopAt, TraceEvent, millis, secs,
};
use std::sync::Arc;

type Server = Coordinator<Synchronous<FedAvg>>;

fn device(flops_per_sec: f64, dropout: f64) -> DeviceProfile {
    DeviceProfile {
        flops_per_sec,
        compute_jitter: 0.0,
        memory_bytes: 4 << 30,
        availability: Availability::Always,
        dropout,
    }
}

/// A FedAvg fleet on synthetic data: server 0 and one client per profile (ids from 1), all
/// sampled every round, on 1 ms links; returns the simulation (records kept).
fn fleet(
    seed: Seed,
    spec: &str,
    local_steps: usize,
    rounds: u32,
    profiles: impl Fn(usize, &LearningTask) -> DeviceProfile,
    clients: usize,
) -> Simulation<FlMessage<Work>> {
    let config = SyntheticConfig {
        train_samples: 2_000,
        test_samples: 500,
        ..Default::default()
    };
    let (train, test) = config.generate().unwrap();
    let train = Arc::new(train);
    let local = LocalTraining {
        steps: local_steps,
        batch_size: 32,
        sgd: SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        },
    };
    let models = [(ModelRole::Target, spec.parse().unwrap())];
    let task = LearningTask::new(train.clone(), Arc::new(test), None, &models, local, seed);
    let task = Arc::new(task.unwrap());
    let shards = iid(
        train.len(),
        clients,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )
    .unwrap();
    let strategy = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: None,
            weighted: true,
            schedule: LrSchedule::Constant(0.05),
        },
    )
    .unwrap();
    let config = CoordinatorConfig {
        rounds,
        registration_window: secs(10),
        eval_every: 1,
    };
    let policy = RoundPolicy::wait_all(Some(secs(60)));
    let coordinator_task = task.clone();
    let coordinator =
        move |n| Coordinator::synchronous(strategy, policy, coordinator_task, config, n);
    let network = NetworkModel::new(LinkSpec::latency(millis(1)));
    let builder = Simulation::builder(seed, network).keep_records();
    let mut fed = Federation::new(builder, "server", coordinator, Placement::default());
    let worker = Arc::new(LocalWorker);
    for (k, shard) in shards.into_iter().enumerate() {
        let one = ClientGroup::new(
            worker.clone(),
            task.clone(),
            vec![ClientData::from_labeled(shard)],
        )
        .placed(Placement::new(Some(profiles(k, &task)), None));
        fed.participants(fed.server(), one).unwrap();
    }
    fed.build().unwrap().0
}

/// Deliveries to the server after each client's first (its Hello), in delivery order:
/// (time, sender).
fn replies_in_delivery_order(records: &[flotilla::sim::TraceRecord]) -> Vec<(f64, NodeId)> {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter_map(|r| match r.event {
            TraceEvent::Deliver {
                src,
                dst: NodeId(0),
                ..
            } => Some((r.time.as_secs_f64(), src)),
            _ => None,
        })
        .filter(|(_, src)| !seen.insert(*src))
        .collect()
}

fn target_memory(task: &LearningTask) -> u64 {
    task.model(ModelRole::Target).unwrap().training_memory_bytes
}

#[test]
fn weak_devices_answer_last_and_a_dropout_is_counted() {
    let server_id = NodeId(0);
    // Clients 1–3 strong, 4–6 weak (10× slower), 7 weak and always dropping out mid-job.
    let profile = |k: usize, task: &LearningTask| {
        let p = match k {
            0..=2 => device(1e10, 0.0),
            3..=5 => device(1e9, 0.0),
            _ => device(1e9, 1.0),
        };
        assert!(p.fits(target_memory(task)));
        p
    };
    let mut sim = fleet(Seed(11), "mlp:32-64-10", 10, 3, profile, 7);
    let report = sim.run(StopAt::Idle);
    let history = sim.node::<Server>(server_id).unwrap().history().to_vec();
    assert_eq!(history.len(), 3);
    for round in &history {
        assert_eq!(round.stages.len(), 1);
        assert_eq!(
            round.stages[0].replied.len(),
            6,
            "the dropout never answers: {:?}",
            round.stages[0].replied
        );
        assert_eq!(round.evaluations.len(), 1);
    }
    assert_eq!(
        report.counters.jobs_lost.get(&DropReason::Dropout),
        Some(&3)
    );
    let records = sim.finish().unwrap().records;
    let lost: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event {
            TraceEvent::JobLost {
                job,
                reason: DropReason::Dropout,
            } => Some(job.node),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![NodeId(7); 3]);
    // Within each round, every strong reply arrives before any weak one.
    let replies = replies_in_delivery_order(&records);
    assert_eq!(replies.len(), 18);
    for round in replies.chunks(6) {
        let strong = |(_, id): &(f64, NodeId)| id.0 <= 3;
        let first_weak = round.iter().position(|r| !strong(r)).unwrap();
        assert_eq!(first_weak, 3, "{round:?}");
        assert!(round[first_weak..].iter().all(|r| !strong(r)), "{round:?}");
    }
    let final_accuracy = history[2].evaluations[0].accuracy;
    assert!(
        final_accuracy > 0.3,
        "FedAvg learns something: {final_accuracy}"
    );
}

#[test]
fn a_device_without_memory_for_the_model_never_trains() {
    // Client 3's memory is one byte short of the model's training run.
    let profile = |k: usize, task: &LearningTask| {
        let needed = target_memory(task);
        DeviceProfile {
            memory_bytes: if k == 2 { needed - 1 } else { needed },
            ..device(1e10, 0.0)
        }
    };
    let mut sim = fleet(Seed(3), "mlp:32-256-256-10", 2, 2, profile, 3);
    let report = sim.run(StopAt::Idle);
    let history = sim.node::<Server>(NodeId(0)).unwrap().history().to_vec();
    let fleet = sim.node::<Server>(NodeId(0)).unwrap().fleet().clone();
    // The client announced it cannot train the model, so it is never asked to.
    assert_eq!(fleet.capable(ModelRole::Target), vec![NodeId(1), NodeId(2)]);
    assert!(
        history
            .iter()
            .all(|r| r.stages[0].assigned == vec![NodeId(1), NodeId(2)]
                && r.stages[0].replied == vec![NodeId(1), NodeId(2)]),
        "{history:?}"
    );
    let refusals = sim
        .finish()
        .unwrap()
        .records
        .iter()
        .filter(|r| matches!(&r.event, TraceEvent::Record { node, label, .. } if *node == NodeId(3) && label == "cannot_train"))
        .count();
    assert_eq!(refusals, 0, "it is never assigned work it cannot do");
    // Two rounds × two trainers, plus the server's two evaluations.
    assert_eq!(report.counters.jobs_started, 6);
}
