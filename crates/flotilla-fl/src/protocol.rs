//! The protocol nodes every strategy runs on: the [`Coordinator`] (server) and the
//! [`Participant`] (client).
//!
//! ```text
//!  start:  every participant ── Hello(capabilities from its own device and data) ──► coordinator
//!          (registration closes when all expected clients announced, or after a window)
//!  round r, stage s:
//!          coordinator ── Assign(r, s, models, work) ──► clients chosen by the strategy
//!          participant: job of the strategy's declared FLOPs ── Reply(r, s, models) ──► coordinator
//!          all replied, or the stage timeout fired → strategy aggregates
//!            → optional server job → next stage
//!  no more stages → round closed → evaluation jobs (one per global model) → next round
//! ```

use crate::{Capabilities, ClientData};
use crate::{
    ClientEnv, ClientStrategy, Evaluation, FlError, FlMessage, Fleet, LearningTask, ModelRole,
    Reply, ServerStrategy,
};
use flotilla_sim::{Context, Event, Node, NodeError, NodeId, SimDuration};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The coordinator's timing and evaluation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorConfig {
    /// Rounds to run.
    pub rounds: u32,
    /// Close a stage this long after it opened even if some clients have not answered;
    /// `None` waits for every assigned client (a client that dropped out then stalls the
    /// run).
    pub stage_timeout: Option<SimDuration>,
    /// How long registration stays open for clients that have not announced themselves.
    pub registration_window: SimDuration,
    /// Evaluate the global models after every `eval_every`-th round (and after the last).
    pub eval_every: u32,
}

/// One stage of a round, as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRecord {
    /// Stage, from 0.
    pub stage: u32,
    /// Clients given work.
    pub assigned: Vec<NodeId>,
    /// Clients whose reply made it in time, in id order.
    pub replied: Vec<NodeId>,
    /// Clients whose reply carried a model with a non-finite value (a diverged local run):
    /// left out of the aggregate, in arrival order.
    pub rejected: Vec<NodeId>,
    /// The models the aggregated replies carried, in role order (empty when nothing was
    /// aggregated).
    pub models: Vec<ModelRole>,
    /// Mean over the replies of each statistic the clients reported.
    pub client_stats: BTreeMap<String, f64>,
    /// Statistics of the server job, if one ran.
    pub server_stats: BTreeMap<String, f64>,
}

/// One round, as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    /// Round, from 0.
    pub round: u32,
    /// Virtual time the round closed \[s\] (NaN while open).
    pub closed_at_s: f64,
    /// Its stages, in order.
    pub stages: Vec<StageRecord>,
    /// Evaluations of the global models after the round, in completion order.
    pub evaluations: Vec<Evaluation>,
}

/// Called with every evaluation as it completes (progress reporting).
pub type Observer = Box<dyn FnMut(&Evaluation) + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Registering,
    Collecting,
    ServerWork,
    Finished,
}

const REGISTRATION_TAG: u64 = u64::MAX;

fn stage_tag(round: u32, stage: u32) -> u64 {
    (u64::from(round) << 32) | u64::from(stage)
}

fn node_error(e: FlError) -> NodeError {
    NodeError::new(e.to_string())
}

/// The server node: runs a [`ServerStrategy`] round by round.
pub struct Coordinator<S: ServerStrategy> {
    strategy: S,
    task: Arc<LearningTask>,
    config: CoordinatorConfig,
    expected_clients: usize,
    fleet: Fleet,
    phase: Phase,
    round: u32,
    stage: u32,
    awaiting: BTreeSet<NodeId>,
    replies: BTreeMap<NodeId, Reply>,
    history: Vec<RoundRecord>,
    observer: Option<Observer>,
}

impl<S: ServerStrategy> fmt::Debug for Coordinator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("strategy", &self.strategy)
            .field("config", &self.config)
            .field("round", &self.round)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl<S: ServerStrategy> Coordinator<S> {
    /// A coordinator running `strategy` for `expected_clients` clients.
    pub fn new(
        strategy: S,
        task: Arc<LearningTask>,
        config: CoordinatorConfig,
        expected_clients: usize,
    ) -> Self {
        Self {
            strategy,
            task,
            config,
            expected_clients,
            fleet: Fleet::default(),
            phase: Phase::Registering,
            round: 0,
            stage: 0,
            awaiting: BTreeSet::new(),
            replies: BTreeMap::new(),
            history: Vec::new(),
            observer: None,
        }
    }

    /// Calls `observer` with every evaluation as it completes.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The strategy (for its final models and counters).
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The clients that announced themselves.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// One record per round opened.
    pub fn history(&self) -> &[RoundRecord] {
        &self.history
    }

    /// Whether every round ran.
    pub fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn begin(&mut self, ctx: &mut Context<'_, FlMessage<S::Work>>) -> Result<(), NodeError> {
        ctx.record("clients_registered", self.fleet.len() as f64);
        if self.config.rounds == 0 {
            self.phase = Phase::Finished;
            return Ok(());
        }
        self.open_round(ctx)
    }

    fn open_round(&mut self, ctx: &mut Context<'_, FlMessage<S::Work>>) -> Result<(), NodeError> {
        self.history.push(RoundRecord {
            round: self.round,
            closed_at_s: f64::NAN,
            stages: Vec::new(),
            evaluations: Vec::new(),
        });
        self.stage = 0;
        self.open_stage(ctx)
    }

    fn open_stage(&mut self, ctx: &mut Context<'_, FlMessage<S::Work>>) -> Result<(), NodeError> {
        let Some(assignments) =
            self.strategy
                .assign(self.round, self.stage, &self.fleet, ctx.rng())
        else {
            return self.close_round(ctx);
        };
        self.phase = Phase::Collecting;
        self.awaiting = assignments.iter().map(|(c, _)| *c).collect();
        if let Some(record) = self.history.last_mut() {
            record.stages.push(StageRecord {
                stage: self.stage,
                assigned: self.awaiting.iter().copied().collect(),
                replied: Vec::new(),
                rejected: Vec::new(),
                models: Vec::new(),
                client_stats: BTreeMap::new(),
                server_stats: BTreeMap::new(),
            });
        }
        for (client, assignment) in assignments {
            ctx.send(client, FlMessage::Assign(assignment));
        }
        if self.awaiting.is_empty() {
            return self.close_stage(ctx);
        }
        if let Some(timeout) = self.config.stage_timeout {
            ctx.set_timer(timeout, stage_tag(self.round, self.stage));
        }
        Ok(())
    }

    fn close_stage(&mut self, ctx: &mut Context<'_, FlMessage<S::Work>>) -> Result<(), NodeError> {
        if !self.awaiting.is_empty() {
            ctx.record("stage_missing_replies", self.awaiting.len() as f64);
            self.awaiting.clear();
        }
        let replies = std::mem::take(&mut self.replies);
        if let Some(stage) = self.history.last_mut().and_then(|r| r.stages.last_mut()) {
            stage.replied = replies.keys().copied().collect();
            let roles: BTreeSet<ModelRole> = replies
                .values()
                .flat_map(|r| r.models.iter().map(|p| p.role))
                .collect();
            stage.models = roles.into_iter().collect();
            stage.client_stats = mean_stats(replies.values().map(|r| &r.stats));
        }
        match self
            .strategy
            .aggregate(self.round, self.stage, &replies)
            .map_err(node_error)?
        {
            Some(job) => {
                self.phase = Phase::ServerWork;
                let run = job.run;
                ctx.spawn_job(job.flops, move || {
                    run().map(FlMessage::ServerWork).map_err(node_error)
                });
                Ok(())
            }
            None => {
                self.stage += 1;
                self.open_stage(ctx)
            }
        }
    }

    fn close_round(&mut self, ctx: &mut Context<'_, FlMessage<S::Work>>) -> Result<(), NodeError> {
        let closed_at_s = ctx.now().as_secs_f64();
        if let Some(record) = self.history.last_mut() {
            record.closed_at_s = closed_at_s;
        }
        let last = self.round + 1 == self.config.rounds;
        if last || (self.round + 1).is_multiple_of(self.config.eval_every.max(1)) {
            for payload in self.strategy.global_models() {
                let task = self.task.clone();
                let round = self.round;
                let flops = task.evaluation_flops(payload.role).map_err(node_error)?;
                ctx.spawn_job(flops, move || {
                    let (accuracy, loss) = task
                        .evaluate(payload.role, &payload.weights)
                        .map_err(node_error)?;
                    Ok(FlMessage::Evaluated(Evaluation {
                        round,
                        role: payload.role,
                        virtual_time_s: closed_at_s,
                        accuracy,
                        loss,
                    }))
                });
            }
        }
        self.round += 1;
        if last {
            self.phase = Phase::Finished;
            Ok(())
        } else {
            self.open_round(ctx)
        }
    }
}

/// The mean of each named statistic over `stats` (a name missing from some entries is
/// averaged over those that have it), in name order.
fn mean_stats<'a>(stats: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for s in stats {
        for (name, value) in s {
            let entry = sums.entry(name.clone()).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(name, (sum, n))| (name, sum / f64::from(n)))
        .collect()
}

impl<S: ServerStrategy> Node<FlMessage<S::Work>> for Coordinator<S> {
    fn on_event(
        &mut self,
        event: Event<FlMessage<S::Work>>,
        ctx: &mut Context<'_, FlMessage<S::Work>>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Start if self.expected_clients == 0 => self.begin(ctx)?,
            Event::Start => ctx.set_timer(self.config.registration_window, REGISTRATION_TAG),
            Event::Message {
                from,
                msg: FlMessage::Hello(capabilities),
            } => {
                self.fleet.announce(from, capabilities);
                if self.phase == Phase::Registering && self.fleet.len() >= self.expected_clients {
                    self.begin(ctx)?;
                }
            }
            Event::Timer {
                tag: REGISTRATION_TAG,
            } if self.phase == Phase::Registering => self.begin(ctx)?,
            Event::Message {
                from,
                msg: FlMessage::Reply(reply),
            } => {
                let expected = self.phase == Phase::Collecting
                    && reply.round == self.round
                    && reply.stage == self.stage
                    && self.awaiting.remove(&from);
                if !expected {
                    ctx.record("stale_reply", f64::from(reply.round));
                    return Ok(());
                }
                let finite = reply.models.iter().all(|p| {
                    p.weights
                        .params
                        .iter()
                        .chain(&p.weights.state)
                        .all(|v| v.is_finite())
                });
                if finite {
                    self.replies.insert(from, reply);
                } else {
                    ctx.record("rejected_non_finite", f64::from(from.0));
                    if let Some(stage) = self.history.last_mut().and_then(|r| r.stages.last_mut()) {
                        stage.rejected.push(from);
                    }
                }
                if self.awaiting.is_empty() {
                    self.close_stage(ctx)?;
                }
            }
            Event::Timer { tag }
                if self.phase == Phase::Collecting && tag == stage_tag(self.round, self.stage) =>
            {
                self.close_stage(ctx)?;
            }
            Event::JobDone {
                output: FlMessage::ServerWork(done),
                ..
            } if self.phase == Phase::ServerWork
                && done.round == self.round
                && done.stage == self.stage =>
            {
                if let Some(stage) = self.history.last_mut().and_then(|r| r.stages.last_mut()) {
                    stage.server_stats = done.stats.clone();
                }
                self.strategy.server_work_done(done).map_err(node_error)?;
                self.stage += 1;
                self.open_stage(ctx)?;
            }
            Event::JobDone {
                output: FlMessage::Evaluated(e),
                ..
            } => {
                ctx.record(format!("{}_accuracy", e.role), e.accuracy);
                if let Some(observer) = &mut self.observer {
                    observer(&e);
                }
                if let Some(record) = self.history.get_mut(e.round as usize) {
                    record.evaluations.push(e);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The client node: announces what its device can train, then carries out assignments
/// with a [`ClientStrategy`] in compute jobs whose declared work is the strategy's FLOPs,
/// so a device's speed, not a flag, decides when its reply arrives.
#[derive(Debug)]
pub struct Participant<C: ClientStrategy> {
    strategy: Arc<C>,
    env: ClientEnv,
    server: NodeId,
}

impl<C: ClientStrategy> Participant<C> {
    /// A client holding `data`, answering `server`.
    pub fn new(
        strategy: Arc<C>,
        task: Arc<LearningTask>,
        data: ClientData,
        server: NodeId,
    ) -> Self {
        Self {
            strategy,
            env: ClientEnv {
                node: NodeId(u32::MAX),
                task,
                data,
            },
            server,
        }
    }
}

impl<C: ClientStrategy> Node<FlMessage<C::Work>> for Participant<C> {
    fn on_event(
        &mut self,
        event: Event<FlMessage<C::Work>>,
        ctx: &mut Context<'_, FlMessage<C::Work>>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Start => {
                self.env.node = ctx.id();
                let mut trainable = Vec::new();
                for role in self.env.task.roles() {
                    if self.env.task.fits(role, ctx.device()).map_err(node_error)? {
                        trainable.push(role);
                    }
                }
                let hello = Capabilities {
                    trainable,
                    labeled: self.env.data.labeled.len() as u32,
                    unlabeled: self.env.data.unlabeled.len() as u32,
                };
                ctx.send(self.server, FlMessage::Hello(hello));
            }
            Event::Message {
                msg: FlMessage::Assign(assignment),
                ..
            } => {
                let needed = self.strategy.memory_bytes(&self.env, &assignment);
                if ctx.device().is_some_and(|d| !d.fits(needed)) {
                    ctx.record("cannot_train", needed as f64);
                    return Ok(());
                }
                let flops = self
                    .strategy
                    .flops(&self.env, &assignment)
                    .map_err(node_error)?;
                let (strategy, env) = (self.strategy.clone(), self.env.clone());
                ctx.spawn_job(flops, move || {
                    strategy
                        .execute(&env, assignment)
                        .map(FlMessage::Reply)
                        .map_err(node_error)
                });
            }
            Event::JobDone {
                output: output @ FlMessage::Reply(_),
                ..
            } => ctx.send(self.server, output),
            _ => {}
        }
        Ok(())
    }
}
