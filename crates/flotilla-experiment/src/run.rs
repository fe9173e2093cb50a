//! One run: a method with a seed, simulated on actors.

use crate::fleet::Client;
use crate::{ExperimentError, Method, Prepared};
use flotilla_actors::{ActixRuntime, PoolRunner};
use flotilla_fl::{
    AsyncConfig, AsyncMethod, AsyncRule, Asynchronous, ClientData, Coordinator, CoordinatorConfig,
    Evaluation, FedAvg, FedAvgConfig, Federation, FlMessage, JobTally, LearningTask, LocalWorker,
    ModelRole, Observer, Offload, OnDeviceKd, OnDeviceKdConfig, Participant, Payload, Placement,
    RoundRecord, ServerEnsembleConfig, ServerLogic, ServerLogitEnsemble, Synchronous, UpdateRecord,
    VERSION_COMMITTED, Work,
};
use flotilla_nn::LrSchedule;
use flotilla_sim::{
    Checkpoint, Context, Counters, Event, NetworkModel, Node, NodeError, NodeId, Outage, Seed,
    SimTime, Simulation, StopAt, secs,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to run: threads, trace output, progress, injected faults.
#[derive(Default)]
pub struct RunOptions {
    /// Actor arbiters and job threads (results do not depend on it).
    pub threads: usize,
    /// Where to write the JSONL trace, if anywhere.
    pub trace: Option<Box<dyn Write + Send>>,
    /// Called with every evaluation as it completes.
    pub observer: Option<Observer>,
    /// Faults injected on top of the configured fleet (none by default).
    pub faults: Faults,
    /// Checkpoints to take, and one to resume from (none by default).
    pub checkpoints: Option<RunCheckpoints>,
    /// Where clients' training and evaluations compute, if not on the job threads (e.g.
    /// MPI ranks; results do not depend on it).
    pub offload: Option<Arc<dyn Offload>>,
}

/// Checkpoints of one run: taken at the start, every `every` versions of the server's model
/// (right after the version's instant) and once more when the run has finished, each
/// handed to `save`;
/// and a checkpoint to resume from. A resumed run gives the bits of the uninterrupted one
/// with the same `every` (results and records; see [`flotilla_sim::Checkpoint`]).
pub struct RunCheckpoints {
    /// Versions between checkpoints (at least 1).
    pub every: u32,
    /// A checkpoint of this same run (method, seed, configuration) to continue from.
    pub resume: Option<Checkpoint>,
    /// Stores a checkpoint durably before returning (e.g. write, sync, rename).
    pub save: SaveCheckpoint,
}

/// Stores one checkpoint durably (see [`RunCheckpoints::save`]).
pub type SaveCheckpoint = Box<dyn FnMut(&Checkpoint) -> Result<(), ExperimentError> + Send>;

impl std::fmt::Debug for RunCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCheckpoints")
            .field("every", &self.every)
            .field("resume", &self.resume.as_ref().map(Checkpoint::time))
            .finish_non_exhaustive()
    }
}

/// A federation's simulation.
type FlSimulation<L> = Simulation<FlMessage<<L as ServerLogic>::Work>>;

/// Runs `sim` on actix to its end (or its first node failure), taking the checkpoints of
/// `checkpoints` if any; returns it with the time the job threads spent in jobs.
/// The job threads are `jobs` (offloaded jobs each hold a thread while they compute
/// elsewhere).
fn drive<L: ServerLogic>(
    mut sim: FlSimulation<L>,
    threads: usize,
    jobs: usize,
    checkpoints: Option<RunCheckpoints>,
) -> Result<(FlSimulation<L>, Duration), ExperimentError> {
    let runtime = ActixRuntime::new(threads.max(1));
    let Some(mut plan) = checkpoints else {
        let (sim, pool) =
            runtime.run_with_pool(sim, StopAt::IdleOrFailure, PoolRunner::new(jobs.max(1)))?;
        return Ok((sim, pool.busy()));
    };
    let version = |sim: &FlSimulation<L>| {
        sim.node::<Coordinator<L>>(SERVER)
            .map_or(0, Coordinator::version)
    };
    let mut pool = PoolRunner::new(jobs.max(1));
    // Read at every pause: an accessor, not a report (which clones the counters).
    let instants = |sim: &FlSimulation<L>| sim.world().instants();
    match plan.resume.take() {
        Some(checkpoint) => sim.restore_with(checkpoint, &mut pool)?,
        // A first checkpoint before any work: a node or strategy that cannot be saved is
        // refused now, not after the first versions' work.
        None => (plan.save)(&sim.checkpoint_with(&mut pool)?)?,
    }
    // What the latest checkpoint holds: a version, and how far the run had got.
    let mut saved = (version(&sim), instants(&sim));
    sim.pause_after_record(VERSION_COMMITTED);
    loop {
        (sim, pool) = runtime.run_with_pool(sim, StopAt::IdleOrFailure, pool)?;
        let paused = sim.take_pause();
        let now = (version(&sim), instants(&sim));
        let due = match paused {
            true => now.0 != saved.0 && now.0.is_multiple_of(plan.every.max(1)),
            // The end, unless the run stopped on a failure or the latest checkpoint is
            // the end already (a resumed finished run).
            false => now.1 != saved.1 && sim.world().report().failures.is_empty(),
        };
        if due {
            (plan.save)(&sim.checkpoint_with(&mut pool)?)?;
            saved = now;
        }
        if !paused {
            return Ok((sim, pool.busy()));
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("threads", &self.threads)
            .field("trace", &self.trace.is_some())
            .field("faults", &self.faults)
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

/// Faults injected into a run on top of what the configuration describes, to test
/// strategies (and the framework) under failure. Clients are indexed from 0 as in the
/// split; the injected draws come from the simulation's own seeded streams.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability that a message on a client's link is lost, replacing the link's own.
    pub loss: Option<f64>,
    /// Windows `[from, until)` of virtual time in which a client is cut off from the
    /// network: `(client, from, until)`.
    pub outages: Vec<(usize, SimTime, SimTime)>,
    /// A client whose node panics when it receives work of this round: `(client, round)`
    /// (a bug in a client strategy, as the framework sees one).
    pub panic: Option<(usize, u32)>,
}

/// A participant whose handler panics on an assignment of one round (see [`Faults`]).
struct Panicking {
    inner: Participant<LocalWorker>,
    round: u32,
}

impl Node<FlMessage<Work>> for Panicking {
    fn on_event(
        &mut self,
        event: Event<FlMessage<Work>>,
        ctx: &mut Context<'_, FlMessage<Work>>,
    ) -> Result<(), NodeError> {
        if let Event::Message {
            msg: FlMessage::Assign(a),
            ..
        } = &event
        {
            assert!(
                a.id.round != self.round,
                "injected fault: panic in round {}",
                self.round
            );
        }
        self.inner.on_event(event, ctx)
    }
}

/// What one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// Every evaluation, in round order, target before auxiliary.
    pub evaluations: Vec<Evaluation>,
    /// The coordinator's record of each round (stages, replies, client and server stats).
    pub rounds: Vec<RoundRecord>,
    /// Messages, bytes and jobs.
    pub counters: Counters,
    /// Clients that announced themselves, and how many of them can train the target.
    pub clients: (usize, usize),
    /// Training samples moved off the devices.
    pub samples_centralised: u64,
    /// Test accuracy of always predicting the most frequent test label.
    pub chance_accuracy: f64,
    /// The global models at the end of the run (not serialised: see
    /// [`Prepared::save_models`]).
    #[serde(skip)]
    pub final_models: Vec<Payload>,
    /// How each group of clients took part, in group order.
    pub groups: Vec<GroupParticipation>,
    /// Every assignment by what became of it (the counts add up to `assigned`).
    pub jobs: JobTally,
    /// Why the unanswered assignments went unanswered (a star's; `None` under edges).
    pub unanswered: Option<Unanswered>,
    /// Every reply that reached the server, in arrival order, with its fate and staleness
    /// (`updates.csv`).
    #[serde(skip)]
    pub updates: Vec<UpdateRecord>,
    /// Each edge aggregator's books, when clients answer edges (`[topology]`).
    pub edges: Vec<EdgeBooks>,
    /// The node of each client, by client index (client `c` is node `c + 1`).
    #[serde(skip)]
    pub client_nodes: Vec<NodeId>,
    /// Virtual time the last round (version) closed: the end of the federation's work \[s\].
    pub virtual_time_s: f64,
    /// Virtual time the simulation went idle \[s\]: later than `virtual_time_s` by the
    /// timers and jobs still pending after the last round (e.g. a stage deadline set
    /// before every reply came in, or the final evaluations).
    pub simulation_end_s: f64,
    /// Wall-clock time of the simulation \[s\] (reported only; never in metrics).
    pub wall_time_s: f64,
    /// FLOPs the run's compute jobs declared (training, distillation, evaluation), as
    /// their virtual durations count them.
    pub job_flops: u64,
    /// Wall-clock time the job threads spent running those jobs, summed over threads \[s\]
    /// (reported only, like `wall_time_s`; after a resume, only the resumed part's).
    pub job_busy_s: f64,
    /// Hash of the whole trace: equal hashes mean identical runs.
    pub trace_hash: String,
}

/// Why assignments went unanswered, from the simulation's own counts: the four add up to
/// [`JobTally::unanswered`] (at the end of a run nothing is in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unanswered {
    /// Assignments the network dropped (the server sends nothing else).
    pub assignments_lost: u64,
    /// Replies the network dropped: the clients' dropped messages less their lost
    /// announcements.
    pub replies_lost: u64,
    /// Jobs the devices lost (dropped out, went offline).
    pub devices_failed: u64,
    /// Assignments a device refused (its memory could not hold the work).
    pub refused: u64,
}

impl Unanswered {
    /// From the world's counters and the nodes after a run; `None` if a client is not a
    /// plain participant.
    fn of(
        sim: &Simulation<FlMessage<Work>>,
        counters: &Counters,
        server: NodeId,
        clients: &[NodeId],
        coordinator: &Coordinator<impl ServerLogic<Work = Work>>,
    ) -> Option<Self> {
        let (mut hellos, mut refused, mut sent_lost, mut devices_failed) = (0, 0, 0, 0);
        for id in clients {
            let p = sim.node::<Participant<LocalWorker>>(*id)?;
            hellos += p.hellos_sent();
            refused += p.refused();
            sent_lost += counters.dropped_by_sender.get(id).copied().unwrap_or(0);
            devices_failed += counters.jobs_lost_by_node.get(id).copied().unwrap_or(0);
        }
        let hellos_lost = hellos.saturating_sub(coordinator.hellos_received());
        Some(Self {
            assignments_lost: counters
                .dropped_by_sender
                .get(&server)
                .copied()
                .unwrap_or(0),
            replies_lost: sent_lost.saturating_sub(hellos_lost),
            devices_failed,
            refused,
        })
    }

    /// Their sum.
    pub fn total(&self) -> u64 {
        self.assignments_lost + self.replies_lost + self.devices_failed + self.refused
    }
}

/// One edge aggregator's view of a run: its clients' jobs, rounds and replies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeBooks {
    /// The edge's node.
    pub node: NodeId,
    /// Clients answering it.
    pub clients: usize,
    /// Its clients' assignments by what became of them.
    pub jobs: JobTally,
    /// Its local rounds.
    #[serde(skip)]
    pub rounds: Vec<RoundRecord>,
    /// Its clients' replies, with their fates.
    #[serde(skip)]
    pub updates: Vec<UpdateRecord>,
}

/// How one group of clients took part in a run (in `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupParticipation {
    /// The group's name.
    pub group: String,
    /// Its clients.
    pub clients: usize,
    /// How many of them can train the target (strong).
    pub strong: usize,
    /// Jobs assigned to them, over all rounds and stages.
    pub assigned: usize,
    /// Replies that reached the server before their stage closed and were aggregated.
    pub replied: usize,
    /// Replies that arrived in time but were rejected for a non-finite model.
    pub rejected: usize,
    /// `replied / assigned`: the share of their work that counted (0 when nothing was
    /// assigned).
    pub participation: f64,
    /// Clients that had at least one reply accepted.
    pub active_clients: usize,
}

impl GroupParticipation {
    /// Per group, from the rounds' records; `client_of` maps a node to its client index,
    /// `groups` names each group and its clients, `strong` lists the strong clients.
    fn tally(
        rounds: &[RoundRecord],
        client_of: &BTreeMap<NodeId, usize>,
        groups: &[crate::fleet::Group],
        strong: &[usize],
    ) -> Vec<Self> {
        let group_of = |node: &NodeId| {
            let c = client_of.get(node)?;
            groups.iter().position(|g| g.clients.contains(c))
        };
        let mut tally: Vec<Self> = groups
            .iter()
            .map(|g| Self {
                group: g.name.clone(),
                clients: g.clients.len(),
                strong: strong.iter().filter(|c| g.clients.contains(c)).count(),
                assigned: 0,
                replied: 0,
                rejected: 0,
                participation: 0.0,
                active_clients: 0,
            })
            .collect();
        let mut active = std::collections::BTreeSet::new();
        for stage in rounds.iter().flat_map(|r| &r.stages) {
            for (nodes, count) in [
                (&stage.assigned, 0),
                (&stage.replied, 1),
                (&stage.rejected, 2),
            ] {
                for node in nodes {
                    if let Some(g) = group_of(node) {
                        let t = &mut tally[g];
                        *[&mut t.assigned, &mut t.replied, &mut t.rejected][count] += 1;
                    }
                }
            }
            active.extend(stage.replied.iter().filter_map(|n| client_of.get(n)));
        }
        for (t, g) in tally.iter_mut().zip(groups) {
            t.active_clients = active.iter().filter(|c| g.clients.contains(c)).count();
            if t.assigned > 0 {
                t.participation = t.replied as f64 / t.assigned as f64;
            }
        }
        tally
    }
}

impl RunOutcome {
    /// The last evaluation of `role`.
    pub fn final_accuracy(&self, role: ModelRole) -> Option<f64> {
        self.evaluations
            .iter()
            .rev()
            .find(|e| e.role == role)
            .map(|e| e.accuracy)
    }

    /// The best evaluation of `role`.
    pub fn best_accuracy(&self, role: ModelRole) -> Option<f64> {
        self.evaluations
            .iter()
            .filter(|e| e.role == role)
            .map(|e| e.accuracy)
            .reduce(f64::max)
    }
}

impl Prepared {
    /// The learning-rate schedule: `lr`, divided by 10 at each milestone fraction.
    fn schedule(&self) -> LrSchedule {
        let c = &self.config;
        let rounds = f64::from(c.rounds);
        LrSchedule::Step {
            base: c.training.lr,
            gamma: 0.1,
            milestones: c
                .training
                .lr_milestones
                .iter()
                .map(|m| (m * rounds).round() as usize)
                .collect(),
        }
    }

    /// Runs `method` with `seed`.
    pub fn run(
        &self,
        method: Method,
        seed: u64,
        options: RunOptions,
    ) -> Result<RunOutcome, ExperimentError> {
        let c = &self.config;
        let t = &c.training;
        let task = self.task_offloaded(seed, options.offload.clone(), options.threads)?;
        let split = self.split(seed)?;
        let schedule = self.schedule();
        let k = Some(t.clients_per_round);
        let topology = &c.topology;
        let server_deadline_s = if topology.hierarchical() {
            let edge = topology.edge_deadline_s.unwrap_or(t.stage_timeout_s);
            f64::from(topology.local_rounds + 1) * edge
        } else {
            t.stage_timeout_s
        };
        let policy = c.round_policy.policy(server_deadline_s)?;
        // Every arm ends the same way: simulate the method's server logic.
        macro_rules! simulate {
            ($logic:expr) => {
                self.simulate(method, seed, task, split, $logic, options)
            };
        }
        match method {
            Method::OndeviceKd => {
                let strategy = OnDeviceKd::new(
                    &task,
                    OnDeviceKdConfig {
                        clients_per_round: t.clients_per_round,
                        strong_per_round: t.strong_per_round,
                        weighted: t.weighted,
                        schedule,
                        kd: c.kd.clone(),
                        rounds: c.rounds,
                    },
                )?;
                simulate!(Synchronous::new(strategy, policy))
            }
            Method::StrongOnly | Method::WeakOnly | Method::Fedavg | Method::FedavgAllLarge => {
                let (model, clients) = match method {
                    Method::StrongOnly => (ModelRole::Target, t.strong_per_round),
                    Method::WeakOnly => (ModelRole::Auxiliary, k),
                    Method::Fedavg => (c.fedavg.model, k),
                    _ => (ModelRole::Target, k),
                };
                let strategy = FedAvg::new(
                    &task,
                    FedAvgConfig {
                        model,
                        clients_per_round: clients,
                        weighted: t.weighted,
                        schedule,
                    },
                )?;
                simulate!(Synchronous::new(strategy, policy))
            }
            Method::ServerLogitEnsemble => {
                let centralised: Vec<usize> = split
                    .iter()
                    .flat_map(|d| d.unlabeled.iter().copied())
                    .collect();
                let strategy = ServerLogitEnsemble::new(
                    task.clone(),
                    ServerEnsembleConfig {
                        clients_per_round: t.clients_per_round,
                        strong_per_round: t.strong_per_round,
                        weighted: t.weighted,
                        schedule,
                        distillation: c.server_ensemble.clone(),
                        kd_temperature: c.kd.temperature,
                    },
                    centralised.into(),
                )?;
                simulate!(Synchronous::new(strategy, policy))
            }
            Method::Custom(name) => {
                let factory = self.strategies.get(name.as_str()).ok_or_else(|| {
                    crate::ConfigError::new("methods", name.as_str(), "not registered")
                })?;
                let logic = factory(&crate::StrategyContext {
                    task: &task,
                    config: c,
                    schedule: &schedule,
                    policy: &policy,
                    seed,
                })?;
                simulate!(logic)
            }
            Method::Fedasync | Method::Fedbuff | Method::OndeviceKdAsync => {
                let a = &c.asynchronous;
                let rule = match method {
                    Method::Fedasync => AsyncRule::FedAsync {
                        alpha: a.alpha,
                        staleness: a.staleness,
                    },
                    _ => AsyncRule::FedBuff {
                        buffer: a.buffer,
                        server_lr: a.server_lr,
                        staleness: a.staleness,
                    },
                };
                let async_method = match method {
                    Method::OndeviceKdAsync => AsyncMethod::OnDeviceKd { kd: c.kd.clone() },
                    _ => AsyncMethod::FedAvg {
                        model: c.fedavg.model,
                    },
                };
                let job_timeout = crate::policy::duration(
                    "async.job_timeout_s",
                    a.job_timeout_s.unwrap_or(t.stage_timeout_s),
                )?;
                let initial = ModelRole::ALL
                    .into_iter()
                    .filter_map(|role| {
                        task.initial_weights(role)
                            .ok()
                            .map(|w| Payload::of(role, &w))
                    })
                    .collect();
                let logic = Asynchronous::new(
                    AsyncConfig {
                        method: async_method,
                        rule,
                        concurrency: a.concurrency.unwrap_or(t.clients_per_round),
                        weighted: t.weighted,
                        schedule,
                        job_timeout: Some(job_timeout),
                        rounds: c.rounds,
                    },
                    initial,
                )?;
                simulate!(logic)
            }
        }
    }

    fn simulate<L: ServerLogic<Work = Work>>(
        &self,
        method: Method,
        seed: u64,
        task: Arc<LearningTask>,
        split: Vec<ClientData>,
        logic: L,
        options: RunOptions,
    ) -> Result<RunOutcome, ExperimentError> {
        let c = &self.config;
        let (server_device, server_link) = self.server().clone();
        let mut builder = Simulation::builder(Seed(seed), NetworkModel::new(server_link));
        if let Some(out) = options.trace {
            builder = builder.trace_jsonl(out);
        }
        let config = CoordinatorConfig {
            rounds: c.rounds,
            registration_window: secs(60),
            eval_every: c.eval_every,
        };
        let observer = options.observer;
        let coordinator_task = task.clone();
        // The coordinator expects the nodes that answer it: the clients of a star, or the
        // edges.
        let coordinator = move |answering| {
            let coordinator = Coordinator::new(logic, coordinator_task, config, answering);
            match observer {
                Some(observer) => coordinator.with_observer(observer),
                None => coordinator,
            }
        };
        // A wiring error is a bug here, never the user's input; it is reported, not unwrapped.
        let topology = |e: flotilla_fl::TopologyError| ExperimentError::Incomplete {
            method: method.to_string(),
            seed,
            reason: format!("wiring the federation: {e}"),
        };
        let mut fed = Federation::new(
            builder,
            "server",
            coordinator,
            Placement::new(Some(server_device), None),
        );
        let groups: Vec<std::ops::Range<usize>> =
            self.groups().iter().map(|g| g.clients.clone()).collect();
        let edge_of = c.topology.edge_of(c.fleet.clients, &groups);
        let mut parents = vec![fed.server()];
        if let Some(edge_of) = &edge_of {
            let t = &c.topology;
            let edges = edge_of.iter().max().map_or(0, |e| e + 1);
            let deadline = t.edge_deadline_s.unwrap_or(c.training.stage_timeout_s);
            let policy = flotilla_fl::RoundPolicy::wait_all(Some(crate::policy::duration(
                "topology.edge_deadline_s",
                deadline,
            )?));
            let link = t.link()?;
            parents.clear();
            for e in 0..edges {
                let edge = fed
                    .edge(
                        fed.server(),
                        format!("edge-{e}"),
                        flotilla_fl::EdgeConfig {
                            task: task.clone(),
                            local_rounds: t.local_rounds,
                            policy: policy.clone(),
                            weighted: c.training.weighted,
                            clients_per_round: t.clients_per_edge,
                            registration_window: secs(30),
                        },
                        Placement::new(None, Some(link.clone())),
                    )
                    .map_err(topology)?;
                parents.push(edge);
            }
        }
        let faults = &options.faults;
        let worker = Arc::new(LocalWorker);
        let rejoin = c
            .fleet
            .rejoin_s
            .map(|r| crate::policy::duration("fleet.rejoin_s", r))
            .transpose()?;
        let clients = self.fleet(method, seed);
        let mut ids = Vec::with_capacity(clients.len());
        for (i, (data, client)) in split.into_iter().zip(clients).enumerate() {
            let Client {
                device, mut link, ..
            } = client;
            if let Some(loss) = faults.loss {
                link.loss = loss;
            }
            let (worker, task) = (worker.clone(), task.clone());
            let participant = move |server| {
                let participant = Participant::new(worker, task, data, server);
                match rejoin {
                    Some(rejoin) => participant.with_rejoin(rejoin),
                    None => participant,
                }
            };
            let name = format!("client-{i}");
            let placement = Placement::new(Some(device), Some(link));
            let parent = parents[edge_of.as_ref().map_or(0, |e| e[i])];
            let id = match faults.panic {
                Some((client, round)) if client == i => fed.client(
                    parent,
                    name,
                    move |server| Panicking {
                        inner: participant(server),
                        round,
                    },
                    placement,
                ),
                _ => fed.client(parent, name, participant, placement),
            }
            .map_err(topology)?;
            ids.push(id);
        }
        c.network.install(fed.network())?;
        for &(client, from, until) in &faults.outages {
            let node = *ids.get(client).ok_or_else(|| {
                crate::ConfigError::new("faults.outages", client, "no such client")
            })?;
            fed.network().rule(Outage {
                nodes: Some([node].into()),
                windows: vec![(from, until)],
            });
        }
        let (sim, handle) = fed.build().map_err(topology)?;
        let server = handle.server();
        debug_assert_eq!(server, SERVER);
        let started = Instant::now();
        // Offloaded jobs hold a thread each while they compute elsewhere, and one more
        // thread runs the jobs that stay here (a strategy's server work).
        let jobs = match &options.offload {
            Some(offload) => offload.parallelism() + 1,
            None => options.threads,
        };
        let (sim, busy) = drive::<L>(sim, options.threads, jobs, options.checkpoints)?;
        let wall_time_s = started.elapsed().as_secs_f64();
        let report = sim.world().report();
        let incomplete = |reason: String| ExperimentError::Incomplete {
            method: method.to_string(),
            seed,
            reason,
        };
        let coordinator = sim
            .node::<Coordinator<L>>(server)
            .ok_or_else(|| incomplete("the coordinator is gone".into()))?;
        if let Some(failure) = report.failures.first() {
            let time_s = failure.time.as_secs_f64();
            let history = coordinator.history();
            // The round open at the failure, or the last one when its evaluation failed.
            let round = history
                .iter()
                .find(|r| r.closed_at_s.is_nan() || r.closed_at_s >= time_s)
                .or(history.last())
                .map_or("before round 0 (registration)".to_string(), |r| {
                    format!("in round {}", r.round)
                });
            return Err(ExperimentError::NodeFailed {
                method: method.to_string(),
                seed,
                node: failure.name.clone(),
                round,
                time_s,
                reason: failure.reason.clone(),
            });
        }
        if !coordinator.finished() {
            return Err(incomplete(format!(
                "stopped after {} of {} rounds with no node failure",
                coordinator.history().len(),
                c.rounds
            )));
        }
        let mut evaluations: Vec<Evaluation> = coordinator
            .history()
            .iter()
            .flat_map(|r| r.evaluations.iter().cloned())
            .collect();
        evaluations.sort_by_key(|e| (e.round, e.role));
        let fleet = coordinator.fleet();
        let client_of: BTreeMap<NodeId, usize> =
            ids.iter().enumerate().map(|(c, &id)| (id, c)).collect();
        let strong = self.strong_clients(&self.clients(seed));
        // Under edges, clients' work is in the edges' books; the coordinator's records hold
        // the edges.
        let edges: Vec<EdgeBooks> = handle
            .edges()
            .iter()
            .filter_map(|&node| {
                let edge = handle.edge(&sim, node)?;
                Some(EdgeBooks {
                    node,
                    clients: handle.children(node).len(),
                    jobs: edge.tally(),
                    rounds: edge.history().to_vec(),
                    updates: edge.updates().to_vec(),
                })
            })
            .collect();
        let unanswered = (edges.is_empty())
            .then(|| Unanswered::of(&sim, &report.counters, server, &ids, coordinator))
            .flatten();
        let all_rounds: Vec<RoundRecord> = coordinator
            .history()
            .iter()
            .chain(edges.iter().flat_map(|e| &e.rounds))
            .cloned()
            .collect();
        let groups = GroupParticipation::tally(&all_rounds, &client_of, self.groups(), &strong);
        let outcome = RunOutcome {
            method,
            seed,
            evaluations,
            rounds: coordinator.history().to_vec(),
            counters: report.counters.clone(),
            clients: (fleet.len(), fleet.capable(ModelRole::Target).len()),
            samples_centralised: coordinator.logic().centralised_samples(),
            chance_accuracy: self.chance_accuracy(),
            final_models: coordinator.logic().global_models(),
            groups,
            jobs: coordinator.tally(),
            unanswered,
            updates: coordinator.updates().to_vec(),
            edges,
            client_nodes: ids.clone(),
            virtual_time_s: coordinator
                .finished_at()
                .unwrap_or(report.end_time)
                .as_secs_f64(),
            simulation_end_s: report.end_time.as_secs_f64(),
            wall_time_s,
            job_flops: report.job_flops,
            job_busy_s: busy.as_secs_f64(),
            trace_hash: report.trace_hash.to_string(),
        };
        sim.finish().map_err(|source| ExperimentError::Io {
            path: "trace".into(),
            source,
        })?;
        Ok(outcome)
    }
}

/// The coordinator's node id (it is added first).
pub const SERVER: NodeId = NodeId(0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Group;
    use flotilla_fl::StageRecord;
    use flotilla_sim::{DeviceProfile, LinkSpec};

    #[test]
    fn participation_counts_assigned_aggregated_and_rejected_work_per_group() {
        let group = |name: &str, clients| Group {
            name: name.into(),
            key: String::new(),
            clients,
            device: DeviceProfile::preset("phone-low").unwrap(),
            speed: None,
            link: LinkSpec::preset("wifi").unwrap(),
            trace: None,
        };
        let groups = [group("a", 0..2), group("b", 2..4)];
        // Client c is node c + 1.
        let client_of: BTreeMap<NodeId, usize> =
            (0..4).map(|c| (NodeId(c as u32 + 1), c)).collect();
        let stage = |assigned: &[u32], replied: &[u32], rejected: &[u32]| StageRecord {
            assigned: assigned.iter().map(|&n| NodeId(n)).collect(),
            replied: replied.iter().map(|&n| NodeId(n)).collect(),
            rejected: rejected.iter().map(|&n| NodeId(n)).collect(),
            models: Vec::new(),
            client_stats: BTreeMap::new(),
            ..StageRecord::new(0, 0)
        };
        let rounds = [RoundRecord {
            round: 0,
            closed_at_s: 1.0,
            // A rejected reply is not among the aggregated ones.
            stages: vec![
                stage(&[1, 2, 3, 4], &[1, 3], &[2]),
                stage(&[1, 3], &[1], &[]),
            ],
            evaluations: Vec::new(),
        }];
        let t = GroupParticipation::tally(&rounds, &client_of, &groups, &[0]);
        let row = |t: &GroupParticipation| {
            (
                t.clients,
                t.strong,
                t.assigned,
                t.replied,
                t.rejected,
                t.active_clients,
            )
        };
        assert_eq!(row(&t[0]), (2, 1, 3, 2, 1, 1));
        assert_eq!(row(&t[1]), (2, 0, 3, 1, 0, 1));
        assert_eq!(t[0].participation, 2.0 / 3.0);
        assert_eq!(t[1].participation, 1.0 / 3.0);
    }
}
