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

#[test]
fn weak_devices_answer_last_and_a_dropout_is_counted() {
    let seed = Seed(11);
    let config = SyntheticConfig {
        train_samples: 2_000,
        test_samples: 500,
        ..Default::default()
    };
    let (train, test) = config.generate().unwrap();
    let (train, test) = (Arc::new(train), Arc::new(test));
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    };
    let task = LearningTask::new(
        "mlp:32-64-10".parse().unwrap(),
        train.clone(),
        test,
        10,
        32,
        sgd,
        seed,
    )
    .unwrap();
    let task = Arc::new(task);
    let shards = iid(train.len(), 7, &mut seed.stream(NodeId(0), Purpose::SETUP)).unwrap();

    let link = LinkSpec::latency(millis(1));
    let mut b = Simulation::builder(seed, NetworkModel::new(link));
    let server_id = NodeId(0);
    let clients: Vec<NodeId> = (1..=7).map(NodeId).collect();
    let fedavg = FedAvgConfig {
        rounds: 3,
        clients_per_round: 7,
        schedule: LrSchedule::Constant(0.05),
        round_timeout: Some(secs(60)),
        weighted: true,
    };
    let initial = task
        .network()
        .unwrap()
        .init(&mut seed.stream(server_id, Purpose::SETUP));
    b.add_node(
        "server",
        FedAvgServer::new(task.clone(), fedavg, clients.clone(), initial),
        None,
    );
    // Clients 1–3 strong, 4–6 weak (10× slower), 7 weak and always dropping out mid-job.
    for (k, shard) in shards.into_iter().enumerate() {
        let profile = match k {
            0..=2 => device(1e10, 0.0),
            3..=5 => device(1e9, 0.0),
            _ => device(1e9, 1.0),
        };
        assert!(profile.fits(task.training_memory_bytes()));
        b.add_node(
            format!("client-{}", k + 1),
            FedAvgClient::new(task.clone(), shard, server_id),
            Some(profile),
        );
    }
    let mut sim: Simulation<FlMessage> = b.keep_records().build();
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
    let seed = Seed(3);
    let config = SyntheticConfig {
        train_samples: 600,
        test_samples: 100,
        ..Default::default()
    };
    let (train, test) = config.generate().unwrap();
    let train = Arc::new(train);
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let spec = "mlp:32-256-256-10".parse().unwrap();
    let task =
        Arc::new(LearningTask::new(spec, train.clone(), Arc::new(test), 2, 32, sgd, seed).unwrap());
    let needed = task.training_memory_bytes();
    let shards = iid(train.len(), 3, &mut seed.stream(NodeId(0), Purpose::SETUP)).unwrap();
    let mut b = Simulation::builder(seed, NetworkModel::new(LinkSpec::latency(millis(1))));
    let fedavg = FedAvgConfig {
        rounds: 2,
        clients_per_round: 3,
        schedule: LrSchedule::Constant(0.05),
        round_timeout: Some(secs(10)),
        weighted: false,
    };
    let initial = task
        .network()
        .unwrap()
        .init(&mut seed.stream(NodeId(0), Purpose::SETUP));
    let clients = vec![NodeId(1), NodeId(2), NodeId(3)];
    b.add_node(
        "server",
        FedAvgServer::new(task.clone(), fedavg, clients, initial),
        None,
    );
    for (k, shard) in shards.into_iter().enumerate() {
        // Client 3's memory is one byte short of the model's training run.
        let memory = if k == 2 { needed - 1 } else { needed };
        let profile = DeviceProfile {
            memory_bytes: memory,
            ..device(1e10, 0.0)
        };
        b.add_node(
            format!("client-{}", k + 1),
            FedAvgClient::new(task.clone(), shard, NodeId(0)),
            Some(profile),
        );
    }
    let mut sim: Simulation<FlMessage> = b.keep_records().build();
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
