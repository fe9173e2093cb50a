//! Checkpoint states of the federated nodes: a node restored from another's state, onto a
//! node built again from the same configuration, behaves exactly as the one saved.
//!
//! Each scenario runs a small federation in the simulation with one node wrapped in a
//! [`Twin`]: the wrapped node A runs the federation as usual; at the first event where A is
//! in the state the scenario is about (mid-stage, mid-buffer, between an aggregate and its
//! server job, …) the twin saves A, builds B from the same configuration and restores the
//! state onto it; from then on every event A handles is handed to B as well, with a copy of
//! A's stream and job counter, and the twin checks that both issue the same commands (sends
//! byte for byte, timers, jobs' ids and FLOPs, records), draw the same randomness and end
//! in the same state.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_data::SyntheticConfig;
use flotilla_fl::{
    AsyncMethod, Asynchronous, ClientData, Coordinator, CoordinatorConfig, EdgeAggregator,
    EdgeConfig, FedAvg, FlError, FlMessage, KdConfig, LearningTask, LocalTraining, LocalWorker,
    ModelRole, OnDeviceKd, OnDeviceKdConfig, Participant, Payload, Reply, RoundPolicy, Selection,
    ServerDistillation, ServerEnsembleConfig, ServerJob, ServerLogic, ServerLogitEnsemble,
    ServerStrategy, Staleness, Synchronous, Work, WorkOrder,
};
use flotilla_nn::{LrSchedule, SgdConfig};
use flotilla_sim::{
    Command, Context, DeviceProfile, Event, JobId, Node, NodeError, NodeId, Seed, SimDuration,
    SimTime, Simulation, StopAt, millis, secs, wire,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Msg = FlMessage<Work>;

/// What a command does, in a form two nodes' commands can be compared in.
#[derive(Debug, PartialEq)]
enum Issued {
    Send { to: NodeId, bytes: Vec<u8> },
    Timer { after: SimDuration, tag: u64 },
    Job { id: JobId, flops: u64 },
    Record { label: String, bits: u64 },
}

fn issued(commands: &[Command<Msg>]) -> Vec<Issued> {
    commands
        .iter()
        .map(|c| match c {
            Command::Send { to, msg } => Issued::Send {
                to: *to,
                bytes: wire::encode(msg).unwrap(),
            },
            Command::Timer { after, tag } => Issued::Timer {
                after: *after,
                tag: *tag,
            },
            Command::Job { id, flops, .. } => Issued::Job {
                id: *id,
                flops: *flops,
            },
            Command::Record { label, value } => Issued::Record {
                label: label.clone(),
                bits: value.to_bits(),
            },
            other => panic!("a command the test does not know: {other:?}"),
        })
        .collect()
}

fn copy(event: &Event<Msg>) -> Event<Msg> {
    match event {
        Event::Start => Event::Start,
        Event::Message { from, msg } => Event::Message {
            from: *from,
            msg: msg.clone(),
        },
        Event::Timer { tag } => Event::Timer { tag: *tag },
        Event::JobDone { job, output } => Event::JobDone {
            job: *job,
            output: output.clone(),
        },
        other => panic!("an event the test does not know: {other:?}"),
    }
}

/// What a twin saw.
#[derive(Debug, Default)]
struct Log {
    /// When B was restored from A's state.
    split_at: Option<SimTime>,
    /// Events both handled after the split.
    compared: usize,
    mismatches: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

/// A node A running in the simulation, shadowed after the split by B, restored from A's
/// state onto a node built by `make`.
struct Twin<N> {
    a: N,
    b: Option<N>,
    make: Box<dyn Fn() -> N + Send>,
    split_when: Box<dyn Fn(&N) -> bool + Send>,
    next_job: u64,
    log: Shared,
}

impl<N: Node<Msg>> Twin<N> {
    fn new(
        make: impl Fn() -> N + Send + 'static,
        split_when: impl Fn(&N) -> bool + Send + 'static,
    ) -> (Self, Shared) {
        let log = Shared::default();
        let twin = Self {
            a: make(),
            b: None,
            make: Box::new(make),
            split_when: Box::new(split_when),
            next_job: 0,
            log: log.clone(),
        };
        (twin, log)
    }

    /// Handles `event` on `node` in a context of its own: `rng` and `next_job` are copies.
    fn handle(
        node: &mut N,
        event: Event<Msg>,
        like: &Context<'_, Msg>,
        device: Option<&DeviceProfile>,
        rng: &mut rand_chacha::ChaCha8Rng,
        next_job: &mut u64,
    ) -> (Result<(), NodeError>, Vec<Command<Msg>>) {
        let mut ctx = Context::new(like.now(), like.id(), device, rng, next_job);
        let result = node.on_event(event, &mut ctx);
        (result, ctx.into_commands())
    }
}

impl<N: Node<Msg>> Node<Msg> for Twin<N> {
    fn on_event(&mut self, event: Event<Msg>, ctx: &mut Context<'_, Msg>) -> Result<(), NodeError> {
        let mut log = self.log.lock().unwrap();
        if self.b.is_none() && (self.split_when)(&self.a) {
            let state = self.a.save_state()?;
            let mut b = (self.make)();
            b.restore_state(&state)?;
            if b.save_state()? != state {
                log.mismatches
                    .push("B's state differs from the one it was restored from".into());
            }
            self.b = Some(b);
            log.split_at = Some(ctx.now());
        }
        let device = ctx.device().cloned();
        let mut rng_a = ctx.rng().clone();
        let mut job_a = self.next_job;
        let twin = self.b.as_mut().map(|b| {
            let (mut rng_b, mut job_b) = (rng_a.clone(), job_a);
            let run = Self::handle(
                b,
                copy(&event),
                ctx,
                device.as_ref(),
                &mut rng_b,
                &mut job_b,
            );
            (run, rng_b, job_b)
        });
        let (result, commands) = Self::handle(
            &mut self.a,
            event,
            ctx,
            device.as_ref(),
            &mut rng_a,
            &mut job_a,
        );
        if let Some(((result_b, commands_b), rng_b, job_b)) = twin {
            let at = ctx.now();
            log.compared += 1;
            if result_b != result {
                log.mismatches
                    .push(format!("{at}: results {result:?} and {result_b:?}"));
            }
            let (ia, ib) = (issued(&commands), issued(&commands_b));
            if ia != ib {
                log.mismatches
                    .push(format!("{at}: commands {ia:?} and {ib:?}"));
            }
            if rng_b != rng_a || job_b != job_a {
                log.mismatches
                    .push(format!("{at}: streams or job counters differ"));
            }
            let b = self.b.as_ref().map(|b| b.save_state());
            if b != Some(self.a.save_state()) {
                log.mismatches
                    .push(format!("{at}: states differ after the event"));
            }
        }
        *ctx.rng() = rng_a;
        self.next_job = job_a;
        for command in commands {
            match command {
                Command::Send { to, msg } => ctx.send(to, msg),
                Command::Timer { after, tag } => ctx.set_timer(after, tag),
                Command::Job { flops, run, .. } => {
                    ctx.spawn_job(flops, run);
                }
                Command::Record { label, value } => ctx.record(label, value),
                other => panic!("a command the test does not know: {other:?}"),
            }
        }
        result
    }
}

/// The twin split where it was meant to, compared a good part of the run, and found no
/// difference.
fn assert_twins_agree(log: &Shared, at_least: usize) {
    let log = log.lock().unwrap();
    assert!(log.split_at.is_some(), "the twin never split");
    assert!(
        log.compared >= at_least,
        "only {} events compared after the split at {:?}",
        log.compared,
        log.split_at
    );
    assert!(log.mismatches.is_empty(), "{:#?}", log.mismatches);
}

/// A task with a target (`mlp:32-16-10`) and an auxiliary (`mlp:32-8-10`) model.
fn two_model_task(seed: u64, samples: usize) -> Arc<LearningTask> {
    let data = SyntheticConfig {
        seed,
        train_samples: samples,
        test_samples: 100,
        ..Default::default()
    };
    let local = LocalTraining {
        steps: 3,
        batch_size: 8,
        sgd: SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        },
    };
    let models = [
        (ModelRole::Target, "mlp:32-16-10"),
        (ModelRole::Auxiliary, "mlp:32-8-10"),
    ];
    task_of(seed, &models, data, local)
}

/// Client `k` of `n`: the first half of its share labeled, the second unlabeled.
fn split_shard(task: &LearningTask, k: usize, n: usize) -> ClientData {
    let per = task.train.len() / n;
    let start = k * per;
    ClientData {
        labeled: (start..start + per / 2).collect::<Vec<_>>().into(),
        unlabeled: (start + per / 2..start + per).collect::<Vec<_>>().into(),
    }
}

/// Devices taking from 0.4 s to `0.4 + 0.7·(n − 1)` s for one job.
fn staggered(task: &LearningTask, n: usize) -> Vec<Option<DeviceProfile>> {
    (0..n)
        .map(|k| Some(device_taking(task, 0.4 + 0.7 * k as f64, 0.0)))
        .collect()
}

fn participant(task: &Arc<LearningTask>, data: ClientData) -> Participant<LocalWorker> {
    Participant::new(Arc::new(LocalWorker), task.clone(), data, NodeId(0))
}

/// Runs `server` (node 0) with one plain participant per entry of `devices` (nodes 1, 2,
/// …), client `k` holding `data(task, k, n)`, to the end.
fn run_star(
    seed: u64,
    server: impl Node<Msg>,
    task: &Arc<LearningTask>,
    devices: &[Option<DeviceProfile>],
    data: fn(&LearningTask, usize, usize) -> ClientData,
) -> Simulation<Msg> {
    let mut builder = Simulation::builder(Seed(seed), network(1));
    builder.add_node("server", server, None);
    for (k, device) in devices.iter().enumerate() {
        let p = participant(task, data(task, k, devices.len()));
        builder.add_node(format!("client-{k}"), p, device.clone());
    }
    let mut sim = builder.build();
    let report = sim.run(StopAt::Idle);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    sim
}

/// The policy of the synchronous scenarios: a 1.5 s deadline, at least one update.
fn deadline_policy() -> RoundPolicy {
    RoundPolicy {
        min_updates: 1,
        ..RoundPolicy::wait_all(Some(millis(1500)))
    }
}

fn sync_fedavg(task: &Arc<LearningTask>, n: usize) -> Coordinator<Synchronous<FedAvg>> {
    sync_coordinator(task, Some(3), deadline_policy(), 4, n)
}

#[test]
fn a_synchronous_coordinator_restored_mid_stage_runs_on_identically() {
    let (n, seed) = (5, 3);
    let task = tiny_task(seed, 60 * n);
    let devices = staggered(&task, n);
    let t = task.clone();
    // Round 1 or later, its stage open with assignments out (its deadline timer pending).
    let (server, log) = Twin::new(
        move || sync_fedavg(&t, n),
        |c| c.history().len() >= 2 && c.tally().unanswered > 0 && !c.finished(),
    );
    let sim = run_star(seed, server, &task, &devices, shard);
    assert_twins_agree(&log, 10);
    let c = sim
        .node::<Twin<Coordinator<Synchronous<FedAvg>>>>(NodeId(0))
        .unwrap();
    assert!(c.a.finished());
    // The deadline cut some replies: the restored node had late ones to settle.
    assert!(c.a.tally().late > 0, "{:?}", c.a.tally());
}

#[test]
fn a_participant_restored_after_its_announcement_runs_on_identically() {
    let (n, seed) = (4, 5);
    let task = tiny_task(seed, 60 * n);
    let devices = staggered(&task, n);
    let mut builder = Simulation::builder(Seed(seed), network(1));
    let server = sync_coordinator(&task, None, RoundPolicy::wait_all(None), 3, n);
    builder.add_node("server", server, None);
    let t = task.clone();
    // Announced, its repeat timer pending, no assignment yet.
    let (twin, log) = Twin::new(
        move || participant(&t, shard(&t, 0, n)).with_rejoin(secs(5)),
        |p: &Participant<LocalWorker>| p.hellos_sent() == 1,
    );
    builder.add_node("client-0", twin, devices[0].clone());
    for (k, device) in devices.iter().enumerate().skip(1) {
        builder.add_node(
            format!("client-{k}"),
            participant(&task, shard(&task, k, n)),
            device.clone(),
        );
    }
    let mut sim = builder.build();
    let report = sim.run(StopAt::Idle);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // Three assignments and their jobs' completions.
    assert_twins_agree(&log, 6);
}

#[test]
fn fedbuff_and_fedasync_restored_mid_buffer_run_on_identically() {
    let (n, seed) = (5, 7);
    let task = tiny_task(seed, 60 * n);
    let devices = staggered(&task, n);
    for rule in [
        fedbuff(3, 1.0, Staleness::Polynomial { a: 0.5 }),
        flotilla_fl::AsyncRule::FedAsync {
            alpha: 0.6,
            staleness: Staleness::Hinge { a: 1.0, b: 1 },
        },
    ] {
        let t = task.clone();
        let make = move || {
            let config = async_config(rule, 3, 0.1, Some(secs(3)), 6);
            async_coordinator(&t, config, n)
        };
        // Under FedBuff: replies held in a partly filled buffer; under FedAsync (buffer of
        // one): a version committed and jobs of older versions still out.
        let (server, log) = Twin::new(make, |c: &Coordinator<Asynchronous>| {
            let t = c.tally();
            (t.unused > 0 || t.aggregated >= 2) && t.unanswered > 0 && !c.finished()
        });
        let sim = run_star(seed, server, &task, &devices, shard);
        assert_twins_agree(&log, 10);
        let c = sim
            .node::<Twin<Coordinator<Asynchronous>>>(NodeId(0))
            .unwrap();
        assert!(c.a.finished(), "{rule:?}");
    }
}

fn kd_config() -> KdConfig {
    KdConfig {
        probe_samples: 8,
        ..KdConfig::default()
    }
}

fn ondevice_kd(task: &Arc<LearningTask>, rounds: u32) -> OnDeviceKd {
    OnDeviceKd::new(
        task,
        OnDeviceKdConfig {
            clients_per_round: 3,
            strong_per_round: None,
            weighted: false,
            schedule: LrSchedule::Constant(0.05),
            kd: kd_config(),
            rounds,
        },
    )
    .unwrap()
}

#[test]
fn on_device_kd_restored_in_its_distillation_stage_runs_on_identically() {
    let (n, seed) = (4, 11);
    let task = two_model_task(seed, 60 * n);
    let devices = vec![None; n];
    let t = task.clone();
    let make = move || {
        Coordinator::synchronous(
            ondevice_kd(&t, 3),
            RoundPolicy::wait_all(None),
            t.clone(),
            config(3),
            n,
        )
    };
    // Stage 1 (the strong clients distil) of some round, its assignments out.
    let (server, log) = Twin::new(make, |c: &Coordinator<Synchronous<OnDeviceKd>>| {
        let stages = c.history().last().map_or(0, |r| r.stages.len());
        stages == 2 && c.tally().unanswered > 0 && !c.finished()
    });
    let sim = run_star(seed, server, &task, &devices, split_shard);
    assert_twins_agree(&log, 5);
    let c = sim
        .node::<Twin<Coordinator<Synchronous<OnDeviceKd>>>>(NodeId(0))
        .unwrap();
    assert!(c.a.finished());
}

#[test]
fn asynchronous_on_device_kd_restored_mid_run_runs_on_identically() {
    let (n, seed) = (4, 12);
    let task = two_model_task(seed, 60 * n);
    let devices = staggered(&task, n);
    let t = task.clone();
    let make = move || {
        let mut config = async_config(fedbuff(2, 1.0, Staleness::Constant), 3, 0.05, None, 4);
        config.method = AsyncMethod::OnDeviceKd { kd: kd_config() };
        let initial = [ModelRole::Target, ModelRole::Auxiliary]
            .map(|r| Payload::of(r, &t.initial_weights(r).unwrap()))
            .to_vec();
        Coordinator::new(
            Asynchronous::new(config, initial).unwrap(),
            t.clone(),
            self::config(4),
            n,
        )
    };
    let (server, log) = Twin::new(make, |c: &Coordinator<Asynchronous>| {
        c.tally().unused > 0 && c.tally().aggregated > 0 && !c.finished()
    });
    run_star(seed, server, &task, &devices, split_shard);
    assert_twins_agree(&log, 5);
}

fn ensemble(task: &Arc<LearningTask>, n: usize) -> ServerLogitEnsemble {
    let per = task.train.len() / n;
    // The unlabeled halves of the shards, moved to the server.
    let centralised: Vec<usize> = (0..n)
        .flat_map(|k| k * per + per / 2..(k + 1) * per)
        .collect();
    ServerLogitEnsemble::new(
        task.clone(),
        ServerEnsembleConfig {
            clients_per_round: 3,
            strong_per_round: Some(2),
            weighted: true,
            schedule: LrSchedule::Constant(0.05),
            distillation: ServerDistillation {
                steps: 4,
                batch_size: 8,
                lr: None,
                temperature: None,
            },
            kd_temperature: 3.0,
        },
        centralised.into(),
    )
    .unwrap()
}

#[test]
fn the_server_logit_ensemble_restored_before_its_server_job_runs_on_identically() {
    let (n, seed) = (4, 13);
    let task = two_model_task(seed, 60 * n);
    // The server computes on a device, so its distillation job takes time.
    let t = task.clone();
    let make = move || {
        Coordinator::synchronous(
            ensemble(&t, n),
            RoundPolicy::wait_all(None),
            t.clone(),
            config(3),
            n,
        )
    };
    // Stage 1 aggregated, its server job not back yet: the members are in the job, the
    // averaged models in the state.
    let (server, log) = Twin::new(make, |c: &Coordinator<Synchronous<ServerLogitEnsemble>>| {
        c.history().last().is_some_and(|r| {
            r.stages.len() == 2
                && !r.stages[1].replied.is_empty()
                && r.stages[1].server_stats.is_empty()
        })
    });
    let mut builder = Simulation::builder(Seed(seed), network(1));
    builder.add_infrastructure_node("server", server, device(1e7, 0.0));
    for k in 0..n {
        builder.add_node(
            format!("client-{k}"),
            participant(&task, split_shard(&task, k, n)),
            None,
        );
    }
    let mut sim = builder.build();
    let report = sim.run(StopAt::Idle);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_twins_agree(&log, 3);
    let c = sim
        .node::<Twin<Coordinator<Synchronous<ServerLogitEnsemble>>>>(NodeId(0))
        .unwrap();
    assert!(c.a.finished());
    let distilled =
        c.a.history()
            .iter()
            .filter(|r| r.stages.iter().any(|s| !s.server_stats.is_empty()));
    assert_eq!(distilled.count(), 3);
}

fn edge_config(task: &Arc<LearningTask>) -> EdgeConfig {
    EdgeConfig {
        task: task.clone(),
        local_rounds: 2,
        policy: deadline_policy(),
        weighted: false,
        clients_per_round: Some(3),
        registration_window: secs(1),
    }
}

/// A cloud (node 0) over one edge (node n + 1, wrapped in a twin) over `n` clients.
fn edge_run(seed: u64, n: usize) -> (Simulation<Msg>, Shared) {
    let task = tiny_task(seed, 60 * n);
    let edge_id = NodeId(n as u32 + 1);
    let mut builder = Simulation::builder(Seed(seed), network(1));
    let cloud = Coordinator::synchronous(
        fedavg(&task, None, 0.1),
        RoundPolicy::wait_all(None),
        task.clone(),
        CoordinatorConfig {
            registration_window: secs(3),
            ..config(3)
        },
        1,
    );
    builder.add_node("cloud", cloud, None);
    for (k, device) in staggered(&task, n).into_iter().enumerate() {
        let p = Participant::new(
            Arc::new(LocalWorker),
            task.clone(),
            shard(&task, k, n),
            edge_id,
        );
        builder.add_node(format!("client-{k}"), p, device);
    }
    let t = task.clone();
    // The second job from the cloud, a local round open with children's work out.
    let (edge, log) = Twin::new(
        move || EdgeAggregator::new(edge_config(&t), NodeId(0), n).unwrap(),
        |e: &EdgeAggregator<Work>| e.jobs().received >= 2 && e.tally().unanswered > 0,
    );
    builder.add_infrastructure_node("edge", edge, device(1e12, 0.0));
    let mut sim = builder.build();
    let report = sim.run(StopAt::Idle);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    (sim, log)
}

#[test]
fn an_edge_aggregator_restored_mid_round_runs_on_identically() {
    let (sim, log) = edge_run(17, 5);
    assert_twins_agree(&log, 10);
    let edge = sim.node::<Twin<EdgeAggregator<Work>>>(NodeId(6)).unwrap();
    assert_eq!(edge.a.jobs().answered, 3);
}

/// A strategy of a user's own, without checkpoint support.
#[derive(Debug)]
struct Custom;

impl ServerStrategy for Custom {
    type Work = Work;

    fn assign(
        &mut self,
        _round: u32,
        _stage: u32,
        _selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Work>)>> {
        None
    }

    fn aggregate(
        &mut self,
        _round: u32,
        _stage: u32,
        _replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        Ok(None)
    }

    fn global_models(&self) -> Vec<Payload> {
        Vec::new()
    }
}

#[test]
fn a_strategy_without_checkpoint_support_is_refused_by_name() {
    let task = tiny_task(1, 60);
    let coordinator = Coordinator::synchronous(
        Custom,
        RoundPolicy::wait_all(None),
        task.clone(),
        config(1),
        1,
    );
    let refused = |e: String| {
        assert!(
            e.contains("checkpoint::Custom does not support checkpoints"),
            "{e}"
        );
    };
    refused(coordinator.save_state().unwrap_err().0);
    for refusal in [Custom.save_state().map(|_| ()), Custom.restore_state(&[])] {
        assert!(matches!(
            refusal,
            Err(FlError::CheckpointUnsupported(name)) if name.ends_with("checkpoint::Custom")
        ));
    }
    // Boxed, as a strategy chosen at run time: the same.
    let boxed: Box<dyn ServerLogic<Work = Work>> =
        Box::new(Synchronous::new(Custom, RoundPolicy::wait_all(None)));
    let boxed = Coordinator::new(boxed, task, config(1), 1);
    refused(boxed.save_state().unwrap_err().0);
}

#[test]
fn a_boxed_built_in_logic_saves_and_restores() {
    let task = tiny_task(2, 60);
    let make = || -> Coordinator<Box<dyn ServerLogic<Work = Work>>> {
        let logic: Box<dyn ServerLogic<Work = Work>> = Box::new(Synchronous::new(
            fedavg(&task, None, 0.1),
            RoundPolicy::wait_all(None),
        ));
        Coordinator::new(logic, task.clone(), config(1), 1)
    };
    let state = make().save_state().unwrap();
    let mut fresh = make();
    fresh.restore_state(&state).unwrap();
    assert_eq!(fresh.save_state().unwrap(), state);
}

/// Node states taken mid-run from each kind of node, with a maker of a fresh node of the
/// same configuration to restore them onto.
struct Sample {
    name: &'static str,
    state: Vec<u8>,
    restore: Restore,
}

/// Restores a state onto a freshly built node.
type Restore = Box<dyn Fn(&[u8]) -> Result<(), NodeError> + Send + Sync>;

fn samples() -> &'static [Sample] {
    static SAMPLES: std::sync::OnceLock<Vec<Sample>> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(|| {
        let (n, seed) = (4, 21);
        let task = tiny_task(seed, 60 * n);
        let devices = staggered(&task, n);
        let mut out = Vec::new();
        // A synchronous server and a participant at 2.5 s.
        let t = task.clone();
        let mut builder = Simulation::builder(Seed(seed), network(1));
        builder.add_node("server", sync_fedavg(&t, n), None);
        for (k, device) in devices.iter().enumerate() {
            builder.add_node(
                format!("c{k}"),
                participant(&t, shard(&t, k, n)),
                device.clone(),
            );
        }
        let mut sim = builder.build();
        sim.run(StopAt::Time(SimTime::ZERO + secs(2)));
        let server = sim
            .node::<Coordinator<Synchronous<FedAvg>>>(NodeId(0))
            .unwrap();
        let (t1, t2) = (task.clone(), task.clone());
        out.push(Sample {
            name: "synchronous coordinator",
            state: server.save_state().unwrap(),
            restore: Box::new(move |s| sync_fedavg(&t1, n).restore_state(s)),
        });
        out.push(Sample {
            name: "participant",
            state: sim
                .node::<Participant<LocalWorker>>(NodeId(1))
                .unwrap()
                .save_state()
                .unwrap(),
            restore: Box::new(move |s| participant(&t2, shard(&t2, 0, n)).restore_state(s)),
        });
        // An asynchronous server with a partly filled buffer.
        let t3 = task.clone();
        let make = move || {
            async_coordinator(
                &t3,
                async_config(fedbuff(3, 1.0, Staleness::Constant), 3, 0.1, None, 5),
                n,
            )
        };
        let mut builder = Simulation::builder(Seed(seed), network(1));
        builder.add_node("server", make(), None);
        for (k, device) in devices.iter().enumerate() {
            builder.add_node(
                format!("c{k}"),
                participant(&task, shard(&task, k, n)),
                device.clone(),
            );
        }
        let mut sim = builder.build();
        sim.run(StopAt::Time(SimTime::ZERO + secs(3)));
        let server = sim.node::<Coordinator<Asynchronous>>(NodeId(0)).unwrap();
        assert!(server.tally().unused > 0, "{:?}", server.tally());
        out.push(Sample {
            name: "asynchronous coordinator",
            state: server.save_state().unwrap(),
            restore: Box::new(move |s| make().restore_state(s)),
        });
        // An edge at the end of a run.
        let (sim, _) = edge_run(seed, n);
        let edge = sim
            .node::<Twin<EdgeAggregator<Work>>>(NodeId(n as u32 + 1))
            .unwrap();
        let t4 = tiny_task(seed, 60 * n);
        out.push(Sample {
            name: "edge aggregator",
            state: edge.a.save_state().unwrap(),
            restore: Box::new(move |s| {
                EdgeAggregator::<Work>::new(edge_config(&t4), NodeId(0), n)
                    .unwrap()
                    .restore_state(s)
            }),
        });
        out
    })
}

#[test]
fn every_sampled_state_restores_onto_a_fresh_node() {
    for s in samples() {
        (s.restore)(&s.state).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A state cut short is an error, never a panic.
    #[test]
    fn a_truncated_state_is_an_error(which in 0usize..4, cut in any::<prop::sample::Index>()) {
        let s = &samples()[which];
        let cut = cut.index(s.state.len());
        let e = (s.restore)(&s.state[..cut]).unwrap_err();
        prop_assert!(e.0.contains("malformed state"), "{}: {}", s.name, e);
    }

    /// A state with a flipped bit is restored or refused, never a panic; when refused, the
    /// error names the checkpoint.
    #[test]
    fn a_corrupted_state_never_panics(which in 0usize..4, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let s = &samples()[which];
        let mut state = s.state.clone();
        let at = at.index(state.len());
        state[at] ^= 1 << bit;
        if let Err(e) = (s.restore)(&state) {
            prop_assert!(e.0.contains("checkpoint"), "{}: {}", s.name, e);
        }
    }
}

#[test]
fn a_state_of_another_configuration_is_refused_naming_the_mismatch() {
    let (n, seed) = (4, 21);
    let s = &samples()[0];
    // The same coordinator over a wider model.
    let wider = task(
        seed,
        "mlp:32-12-10",
        SyntheticConfig {
            seed,
            train_samples: 60 * n,
            test_samples: 100,
            ..Default::default()
        },
        3,
    );
    let e = sync_fedavg(&wider, n).restore_state(&s.state).unwrap_err();
    assert!(
        e.0.contains("FedAvg's global target model") && e.0.contains("parameters"),
        "{e}"
    );
    // A synchronous server's state onto an asynchronous one: malformed for it.
    let t = tiny_task(seed, 60 * n);
    let mut asynchronous = async_coordinator(
        &t,
        async_config(fedbuff(3, 1.0, Staleness::Constant), 3, 0.1, None, 5),
        n,
    );
    assert!(asynchronous.restore_state(&s.state).is_err());
    // A participant's state onto a client holding other data.
    let p = &samples()[1];
    let e = participant(&t, shard(&t, 0, 2))
        .restore_state(&p.state)
        .unwrap_err();
    assert!(e.0.contains("labeled"), "{e}");
}
