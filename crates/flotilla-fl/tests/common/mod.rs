//! What the protocol tests share: a tiny task on synthetic data, a fleet of clients with
//! their devices, a run of the simulation whose coordinator and trace can be read back.
//! Each test file uses a part of it (hence `dead_code` is allowed here).

#![allow(dead_code, clippy::unwrap_used)]

use flotilla_data::SyntheticConfig;
use flotilla_fl::{
    AsyncConfig, AsyncMethod, AsyncRule, Asynchronous, ClientData, ClientStrategy, Coordinator,
    CoordinatorConfig, Fate, FedAvg, FedAvgConfig, Federation, FlMessage, JobTally, LearningTask,
    LocalTraining, LocalWorker, ModelRole, Participant, Payload, Placement, RoundPolicy,
    ServerLogic, Staleness, Synchronous, UpdateRecord, Work,
};
use flotilla_nn::{LrSchedule, SgdConfig, Weights};
use flotilla_sim::{
    Availability, DeviceProfile, LinkSpec, NetworkModel, NodeHost, NodeId, Outage, Seed,
    SimDuration, SimTime, Simulation, StopAt, TraceEvent, TraceSummary, millis, secs,
};
use std::sync::Arc;

/// The model every test trains (input 32 features, 10 classes).
pub(crate) const MODEL: ModelRole = ModelRole::Target;

/// A task of `spec` on `data`, `steps` local SGD steps of batch 16, plain SGD.
pub(crate) fn task(
    seed: u64,
    spec: &str,
    data: SyntheticConfig,
    steps: usize,
) -> Arc<LearningTask> {
    let local = LocalTraining {
        steps,
        batch_size: 16,
        sgd: SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        },
    };
    task_of(seed, &[(MODEL, spec)], data, local)
}

/// A task of the models `specs` (role, spec) on `data`, trained locally as `local` says.
pub(crate) fn task_of(
    seed: u64,
    specs: &[(ModelRole, &str)],
    data: SyntheticConfig,
    local: LocalTraining,
) -> Arc<LearningTask> {
    let (train, test) = data.generate().unwrap();
    let models: Vec<_> = specs
        .iter()
        .map(|&(role, spec)| (role, spec.parse().unwrap()))
        .collect();
    Arc::new(
        LearningTask::new(
            Arc::new(train),
            Arc::new(test),
            None,
            &models,
            local,
            Seed(seed),
        )
        .unwrap(),
    )
}

/// A tiny task: `mlp:32-8-10` on `samples` synthetic training samples, 3 local steps.
pub(crate) fn tiny_task(seed: u64, samples: usize) -> Arc<LearningTask> {
    let data = SyntheticConfig {
        seed,
        train_samples: samples,
        test_samples: 100,
        ..Default::default()
    };
    task(seed, "mlp:32-8-10", data, 3)
}

/// Declared work of one client's training job \[FLOP\].
pub(crate) fn job_flops(task: &LearningTask) -> u64 {
    task.training_flops(MODEL, task.local.steps).unwrap()
}

/// A device of `flops_per_sec` without jitter, always online, abandoning a job with
/// probability `dropout`.
pub(crate) fn device(flops_per_sec: f64, dropout: f64) -> DeviceProfile {
    DeviceProfile {
        flops_per_sec,
        compute_jitter: 0.0,
        memory_bytes: 1 << 30,
        availability: Availability::Always,
        dropout,
    }
}

/// A device that trains one job of `task` in `secs` seconds.
pub(crate) fn device_taking(task: &LearningTask, secs: f64, dropout: f64) -> DeviceProfile {
    device(job_flops(task) as f64 / secs, dropout)
}

/// Coordinator settings: `rounds` versions, a 1 s registration window, evaluation after
/// every version.
pub(crate) fn config(rounds: u32) -> CoordinatorConfig {
    CoordinatorConfig {
        rounds,
        registration_window: secs(1),
        eval_every: 1,
    }
}

/// Synchronous FedAvg of [`MODEL`] at a constant learning rate, unweighted.
pub(crate) fn fedavg(task: &LearningTask, clients_per_round: Option<usize>, lr: f32) -> FedAvg {
    FedAvg::new(
        task,
        FedAvgConfig {
            model: MODEL,
            clients_per_round,
            weighted: false,
            schedule: LrSchedule::Constant(lr),
        },
    )
    .unwrap()
}

/// A synchronous FedAvg coordinator under `policy` for `clients` clients.
pub(crate) fn sync_coordinator(
    task: &Arc<LearningTask>,
    clients_per_round: Option<usize>,
    policy: RoundPolicy,
    rounds: u32,
    clients: usize,
) -> Coordinator<Synchronous<FedAvg>> {
    Coordinator::synchronous(
        fedavg(task, clients_per_round, 0.1),
        policy,
        task.clone(),
        config(rounds),
        clients,
    )
}

/// An asynchronous FedAvg-style run of [`MODEL`] from the task's initial weights,
/// unweighted.
pub(crate) fn async_config(
    rule: AsyncRule,
    concurrency: usize,
    lr: f32,
    job_timeout: Option<SimDuration>,
    rounds: u32,
) -> AsyncConfig {
    AsyncConfig {
        method: AsyncMethod::FedAvg { model: MODEL },
        rule,
        concurrency,
        weighted: false,
        schedule: LrSchedule::Constant(lr),
        job_timeout,
        rounds,
    }
}

/// An [`Asynchronous`] coordinator for `clients` clients.
pub(crate) fn async_coordinator(
    task: &Arc<LearningTask>,
    config: AsyncConfig,
    clients: usize,
) -> Coordinator<Asynchronous> {
    let rounds = config.rounds;
    let initial = vec![Payload::of(MODEL, &task.initial_weights(MODEL).unwrap())];
    Coordinator::new(
        Asynchronous::new(config, initial).unwrap(),
        task.clone(),
        self::config(rounds),
        clients,
    )
}

/// FedBuff with buffer `k`, server rate `server_lr` and discount `staleness`.
pub(crate) fn fedbuff(k: usize, server_lr: f64, staleness: Staleness) -> AsyncRule {
    AsyncRule::FedBuff {
        buffer: k,
        server_lr,
        staleness,
    }
}

/// The labeled data of client `k` of `n`: an equal share of the task's training set.
pub(crate) fn shard(task: &LearningTask, k: usize, n: usize) -> ClientData {
    let per = task.train.len() / n;
    ClientData {
        labeled: (k * per..(k + 1) * per).collect::<Vec<_>>().into(),
        unlabeled: Arc::from([]),
    }
}

/// A network whose every link has a fixed latency of `ms` milliseconds.
pub(crate) fn network(ms: u64) -> NetworkModel {
    NetworkModel::new(LinkSpec::latency(millis(ms)))
}

/// A network whose links have a fixed latency of 1 ms and lose each message with
/// probability `loss`, and where nothing gets through between `outage.0` and
/// `outage.0 + outage.1` milliseconds.
pub(crate) fn faulty_network(loss: f64, outage: (u64, u64)) -> NetworkModel {
    let mut net = NetworkModel::new(LinkSpec {
        loss,
        ..LinkSpec::latency(millis(1))
    });
    let from = SimTime::ZERO + millis(outage.0);
    net.rule(Outage {
        nodes: None,
        windows: vec![(from, from + millis(outage.1))],
    });
    net
}

/// A finished simulation: the nodes and the trace (every record kept).
pub(crate) struct Run {
    hosts: Vec<NodeHost<FlMessage<Work>>>,
    /// The server's id.
    pub(crate) server: NodeId,
    /// The trace, with every record.
    pub(crate) trace: TraceSummary,
}

impl Run {
    /// The coordinator, as running logic `L`.
    pub(crate) fn coordinator<L: ServerLogic<Work = Work>>(&self) -> &Coordinator<L> {
        self.hosts[self.server.index()].node().unwrap()
    }

    /// When the server sent each of its messages \[µs\] (each an assignment: the server
    /// sends nothing else).
    pub(crate) fn server_sends(&self) -> Vec<u64> {
        self.trace
            .records
            .iter()
            .filter_map(|r| match r.event {
                TraceEvent::Send { src, .. } if src == self.server => Some(r.time.as_micros()),
                _ => None,
            })
            .collect()
    }

    /// Messages delivered to the server (announcements and replies).
    pub(crate) fn delivered_to_server(&self) -> usize {
        self.trace
            .records
            .iter()
            .filter(|r| matches!(r.event, TraceEvent::Deliver { dst, .. } if dst == self.server))
            .count()
    }

    /// The distinct instants at which the server sent assignments \[µs\], in order.
    pub(crate) fn assignment_instants(&self) -> Vec<u64> {
        let mut times = self.server_sends();
        times.dedup();
        times
    }
}

/// Runs `coordinator` (node 0) with one client per entry of `devices` (nodes 1, 2, …),
/// each holding an equal share of the training data, on `network`, until nothing is left
/// to do.
pub(crate) fn run<L: ServerLogic<Work = Work>>(
    seed: u64,
    task: &Arc<LearningTask>,
    coordinator: Coordinator<L>,
    devices: &[Option<DeviceProfile>],
    network: NetworkModel,
) -> Run {
    run_with(
        seed,
        task,
        coordinator,
        Arc::new(LocalWorker),
        devices,
        network,
    )
}

/// [`run`] with the clients' strategy `worker`.
pub(crate) fn run_with<L: ServerLogic<Work = Work>, C: ClientStrategy<Work = Work>>(
    seed: u64,
    task: &Arc<LearningTask>,
    coordinator: Coordinator<L>,
    worker: Arc<C>,
    devices: &[Option<DeviceProfile>],
    network: NetworkModel,
) -> Run {
    let builder = Simulation::builder(Seed(seed), network).keep_records();
    let mut fed = Federation::new(
        builder,
        "server",
        move |_| coordinator,
        Placement::default(),
    );
    let server_parent = fed.server();
    for (k, device) in devices.iter().enumerate() {
        let data = shard(task, k, devices.len());
        let (worker, task) = (worker.clone(), task.clone());
        fed.client(
            server_parent,
            format!("client-{k}"),
            move |server| Participant::new(worker, task, data, server),
            Placement::new(device.clone(), None),
        )
        .unwrap();
    }
    let (mut sim, handle) = fed.build().unwrap();
    let server = handle.server();
    let report = sim.run(StopAt::Idle);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let (world, _, hosts) = sim.into_parts();
    Run {
        hosts,
        server,
        trace: world.finish_trace().unwrap(),
    }
}

/// The bits of a model, for exact comparison.
pub(crate) fn bits(w: &Weights) -> Vec<u32> {
    w.params
        .iter()
        .chain(&w.state)
        .map(|v| v.to_bits())
        .collect()
}

/// The final global model of a run.
pub(crate) fn final_model<L: ServerLogic<Work = Work>>(run: &Run) -> Weights {
    let models = run.coordinator::<L>().logic().global_models();
    Arc::unwrap_or_clone(
        models
            .into_iter()
            .find(|p| p.role == MODEL)
            .unwrap()
            .weights,
    )
}

/// Each record's `(client, assignment)` is distinct: a reply arrives once, so it has one
/// record.
pub(crate) fn assert_one_fate_per_reply(updates: &[UpdateRecord]) {
    let mut seen = std::collections::BTreeSet::new();
    for u in updates {
        assert!(
            seen.insert((u.client, u.assignment)),
            "two fates for {}'s reply to {}",
            u.client,
            u.assignment
        );
    }
}

/// How many of `tally`'s replies have `fate`.
fn tallied(tally: &JobTally, fate: Fate) -> u64 {
    match fate {
        Fate::Aggregated => tally.aggregated,
        Fate::Rejected => tally.rejected,
        Fate::Late => tally.late,
        Fate::Cancelled => tally.cancelled,
        Fate::ShortStage => tally.short_stage,
        Fate::Unused => tally.unused,
    }
}

/// The coordinator's books agree with the trace: it assigned exactly the messages it sent,
/// every reply delivered to it has exactly one fate (a record, or held unused by the logic),
/// the fates of the records are the tally's, and the tally adds up. The clients never
/// re-announce themselves, so the messages delivered to the server are one announcement
/// per client of the fleet and the replies.
pub(crate) fn assert_books_balance<L: ServerLogic<Work = Work>>(run: &Run) {
    let c = run.coordinator::<L>();
    let tally = c.tally();
    let updates = c.updates();
    assert!(tally.adds_up(), "{tally:?}");
    assert_eq!(tally.assigned, run.server_sends().len() as u64, "{tally:?}");
    assert_one_fate_per_reply(updates);
    let replies = (run.delivered_to_server() - c.fleet().len()) as u64;
    let recorded = |fate| updates.iter().filter(|u| u.fate == fate).count() as u64;
    let held = tally.unused - recorded(Fate::Unused);
    assert_eq!(updates.len() as u64 + held, replies, "{tally:?}");
    for fate in Fate::ALL {
        let expected = tallied(&tally, fate) - if fate == Fate::Unused { held } else { 0 };
        assert_eq!(recorded(fate), expected, "{fate}: {tally:?}");
    }
    assert_eq!(tally.unanswered, tally.assigned - replies, "{tally:?}");
}
