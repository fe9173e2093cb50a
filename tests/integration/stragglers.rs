//! Heterogeneity emerges from device profiles: weak devices 10× slower than strong ones
//! answer later, and a device that drops out mid-job is counted as such.

use flotilla::data::{SyntheticConfig, iid};
use flotilla::fl::{FedAvgClient, FedAvgConfig, FedAvgServer, FlMessage, LearningTask};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    Availability, DeviceProfile, DropReason, LinkSpec, NetworkModel, NodeId, Purpose, Seed,
    Simulation, StopAt, TraceEvent, millis, secs,
};
use std::sync::Arc;

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
/// sampled every round, on 1 ms links; returns the simulation (records kept) and the task.
fn fleet(
    seed: Seed,
    spec: &str,
    local_steps: usize,
    rounds: u32,
    profiles: impl Fn(usize, &LearningTask) -> DeviceProfile,
    clients: usize,
) -> Simulation<FlMessage> {
    let config = SyntheticConfig {
        train_samples: 2_000,
        test_samples: 500,
        ..Default::default()
    };
    let (train, test) = config.generate().unwrap();
    let train = Arc::new(train);
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    };
    let task = LearningTask::new(
        spec.parse().unwrap(),
        train.clone(),
        Arc::new(test),
        local_steps,
        32,
        sgd,
        seed,
    );
    let task = Arc::new(task.unwrap());
    let shards = iid(
        train.len(),
        clients,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )
    .unwrap();
    let mut b = Simulation::builder(seed, NetworkModel::new(LinkSpec::latency(millis(1))));
    let config = FedAvgConfig {
        rounds,
        clients_per_round: clients,
        schedule: LrSchedule::Constant(0.05),
        round_timeout: Some(secs(60)),
        weighted: true,
    };
    let initial = task
        .network()
        .unwrap()
        .init(&mut seed.stream(NodeId(0), Purpose::SETUP));
    let ids = (1..=clients as u32).map(NodeId).collect();
    b.add_node(
        "server",
        FedAvgServer::new(task.clone(), config, ids, initial),
        None,
    );
    for (k, shard) in shards.into_iter().enumerate() {
        let client = FedAvgClient::new(task.clone(), shard, NodeId(0));
        b.add_node(
            format!("client-{}", k + 1),
            client,
            Some(profiles(k, &task)),
        );
    }
    b.keep_records().build()
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
        assert!(p.fits(task.training_memory_bytes()));
        p
    };
    let mut sim = fleet(Seed(11), "mlp:32-64-10", 10, 3, profile, 7);
    let report = sim.run(StopAt::Idle);
    let history = sim
        .node::<FedAvgServer>(server_id)
        .unwrap()
        .history()
        .to_vec();
    assert_eq!(history.len(), 3);
    for round in &history {
        let strong = |id: &NodeId| id.0 <= 3;
        let first_weak = round.arrived.iter().position(|id| !strong(id)).unwrap();
        assert!(
            round.arrived[..first_weak].iter().all(strong),
            "{:?}",
            round.arrived
        );
        assert!(
            round.arrived[first_weak..].iter().all(|id| !strong(id)),
            "{:?}",
            round.arrived
        );
        assert_eq!(
            round.arrived.len(),
            6,
            "the dropout never answers: {:?}",
            round.arrived
        );
        assert!(round.accuracy.is_some());
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
    // Update deliveries to the server come in device-speed order within each round.
    let arrivals: Vec<(f64, NodeId)> = records
        .iter()
        .filter_map(|r| match r.event {
            TraceEvent::Deliver { src, dst, .. } if dst == server_id => {
                Some((r.time.as_secs_f64(), src))
            }
            _ => None,
        })
        .collect();
    let strong_times: Vec<f64> = arrivals
        .iter()
        .filter(|(_, s)| s.0 <= 3)
        .map(|(t, _)| *t)
        .collect();
    let weak_times: Vec<f64> = arrivals
        .iter()
        .filter(|(_, s)| s.0 > 3)
        .map(|(t, _)| *t)
        .collect();
    assert!(strong_times[0] < weak_times[0]);
    let final_accuracy = history[2].accuracy.unwrap();
    assert!(
        final_accuracy > 0.3,
        "FedAvg learns something: {final_accuracy}"
    );
}

#[test]
fn a_device_without_memory_for_the_model_never_trains() {
    // Client 3's memory is one byte short of the model's training run.
    let profile = |k: usize, task: &LearningTask| {
        let needed = task.training_memory_bytes();
        DeviceProfile {
            memory_bytes: if k == 2 { needed - 1 } else { needed },
            ..device(1e10, 0.0)
        }
    };
    let mut sim = fleet(Seed(3), "mlp:32-256-256-10", 2, 2, profile, 3);
    let report = sim.run(StopAt::Idle);
    let history = sim
        .node::<FedAvgServer>(NodeId(0))
        .unwrap()
        .history()
        .to_vec();
    assert!(
        history
            .iter()
            .all(|r| r.arrived == vec![NodeId(1), NodeId(2)]),
        "{history:?}"
    );
    let refusals = sim
        .finish()
        .unwrap()
        .records
        .iter()
        .filter(|r| matches!(&r.event, TraceEvent::Record { node, label, .. } if *node == NodeId(3) && label == "cannot_train"))
        .count();
    assert_eq!(refusals, 2);
    // Two rounds × two trainers, plus the server's two evaluations.
    assert_eq!(report.counters.jobs_started, 6);
}
