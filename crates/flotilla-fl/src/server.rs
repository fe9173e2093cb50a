//! The event-level server: a [`ServerLogic`] sees every reply as it arrives and decides what
//! happens (keep waiting, aggregate, assign more work) through the [`Server`] handle the
//! [`Coordinator`](crate::Coordinator) gives it. Synchronous rounds
//! ([`Synchronous`](crate::Synchronous)) and asynchronous strategies
//! ([`Asynchronous`](crate::Asynchronous)) are both logics on this one interface.
//!
//! The coordinator keeps the books: every assignment ends in exactly one [`Fate`] (or stays
//! unanswered: its message or its reply was lost, or the device failed), so the counts of
//! [`JobTally`] always add up to the assignments made.

use crate::offload;
use crate::{Assignment, LearningTask};
use crate::{
    AssignmentId, Evaluation, FlError, FlMessage, Fleet, ModelRole, Payload, Reply, Selection,
    ServerJob, ServerWorkDone, WorkOrder,
};
use flotilla_sim::{Context, NodeError, NodeId, Purpose, SimDuration, SimTime};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The record a coordinator makes each time it commits a model version (its value: the
/// new version count). A run pauses after these instants to take checkpoints.
pub const VERSION_COMMITTED: &str = "version_committed";

/// What became of a reply at the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Aggregated into a global model (with its staleness).
    Aggregated,
    /// Left out: a model it carried held a non-finite value (a diverged local run).
    Rejected,
    /// Arrived after its stage closed (a deadline, or the round moved on), or after the
    /// run's last round.
    Late,
    /// Beyond an over-selection's quota, or its job was given up.
    Cancelled,
    /// Its stage got fewer updates than the policy's minimum and was retried or skipped.
    ShortStage,
    /// Still held by the strategy when the run ended (e.g. a partly filled buffer).
    Unused,
}

impl Fate {
    /// Every fate, in report order.
    pub const ALL: [Fate; 6] = [
        Fate::Aggregated,
        Fate::Rejected,
        Fate::Late,
        Fate::Cancelled,
        Fate::ShortStage,
        Fate::Unused,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fate::Aggregated => "aggregated",
            Fate::Rejected => "rejected",
            Fate::Late => "late",
            Fate::Cancelled => "cancelled",
            Fate::ShortStage => "short_stage",
            Fate::Unused => "unused",
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reply as a [`ServerLogic`] receives it.
#[derive(Debug, Clone)]
pub struct Update {
    /// The client that sent it.
    pub client: NodeId,
    /// The reply (its [`Reply::assignment`] names the job and the version it started from).
    pub reply: Reply,
    /// Global versions committed between the job's assignment and its arrival.
    pub staleness: u32,
    /// Whether every model it carries is finite. A non-finite update is already counted
    /// [`Fate::Rejected`]; the logic learns of it only to stop waiting for it.
    pub finite: bool,
}

/// One reply's record (a row of `updates.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The client.
    pub client: NodeId,
    /// The assignment it answered.
    pub assignment: AssignmentId,
    /// Virtual time it arrived \[s\].
    pub arrived_s: f64,
    /// The global version when its fate was decided.
    pub version: u32,
    /// `version − assignment.round`: versions committed since its work started.
    pub staleness: u32,
    /// What became of it.
    pub fate: Fate,
}

/// Every assignment of a run by what became of it. `assigned` equals the sum of the other
/// fields: a reply that arrived has one [`Fate`]; `unanswered` counts the assignments whose
/// reply never came (the assignment or the reply was lost, the device dropped out or could
/// not hold the work, or it was still running when the simulation ended).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTally {
    /// Assignments sent.
    pub assigned: u64,
    /// Replies aggregated.
    pub aggregated: u64,
    /// Replies rejected as non-finite.
    pub rejected: u64,
    /// Replies that arrived after their stage (or the run) closed.
    pub late: u64,
    /// Replies beyond an over-selection's quota or of given-up jobs.
    pub cancelled: u64,
    /// Replies of stages that fell short of the minimum.
    pub short_stage: u64,
    /// Replies the strategy still held at the end.
    pub unused: u64,
    /// Assignments never answered.
    pub unanswered: u64,
}

impl JobTally {
    /// Whether the fates and the unanswered add up to the assignments.
    pub fn adds_up(&self) -> bool {
        self.aggregated
            + self.rejected
            + self.late
            + self.cancelled
            + self.short_stage
            + self.unused
            + self.unanswered
            == self.assigned
    }

    fn count(&mut self, fate: Fate) {
        *match fate {
            Fate::Aggregated => &mut self.aggregated,
            Fate::Rejected => &mut self.rejected,
            Fate::Late => &mut self.late,
            Fate::Cancelled => &mut self.cancelled,
            Fate::ShortStage => &mut self.short_stage,
            Fate::Unused => &mut self.unused,
        } += 1;
    }
}

/// One stage of a round (or one asynchronous version), as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage, from 0.
    pub stage: u32,
    /// How many times the stage was tried before (a policy's retry of a short stage).
    pub attempt: u16,
    /// Clients given work, in id order.
    pub assigned: Vec<NodeId>,
    /// Clients whose reply was aggregated, in id order.
    pub replied: Vec<NodeId>,
    /// Clients whose reply carried a non-finite model while the stage was open, in
    /// arrival order.
    pub rejected: Vec<NodeId>,
    /// Replies that arrived while the stage was open but were not aggregated (late,
    /// cancelled, short stage), by fate.
    pub discarded: BTreeMap<Fate, u32>,
    /// The models the aggregated replies carried, in role order (empty when nothing was
    /// aggregated).
    pub models: Vec<ModelRole>,
    /// Mean over the aggregated replies of each statistic the clients reported.
    pub client_stats: BTreeMap<String, f64>,
    /// Mean staleness of the aggregated replies (0 when none).
    pub mean_staleness: f64,
    /// Statistics of the server job, if one ran.
    pub server_stats: BTreeMap<String, f64>,
}

impl StageRecord {
    /// An empty record of `stage`, try `attempt`.
    pub fn new(stage: u32, attempt: u16) -> Self {
        Self {
            stage,
            attempt,
            assigned: Vec::new(),
            replied: Vec::new(),
            rejected: Vec::new(),
            discarded: BTreeMap::new(),
            models: Vec::new(),
            client_stats: BTreeMap::new(),
            mean_staleness: 0.0,
            server_stats: BTreeMap::new(),
        }
    }
}

/// One round (one global version), as the coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round (version), from 0.
    pub round: u32,
    /// Virtual time the round closed \[s\] (NaN while open).
    pub closed_at_s: f64,
    /// Its stages, in order.
    pub stages: Vec<StageRecord>,
    /// Evaluations of the global models after the round, in completion order.
    pub evaluations: Vec<Evaluation>,
}

/// The server side of a federated method, event by event. The coordinator calls it once
/// registration closes, then with every reply, timer and server-job result; through the
/// [`Server`] handle it assigns work, aggregates, and commits new global versions. The run
/// ends when it has committed the configured number of versions.
pub trait ServerLogic: fmt::Debug + Send + 'static {
    /// The work vocabulary, shared with the client half.
    type Work: serde::Serialize + serde::de::DeserializeOwned + Clone + fmt::Debug + Send + 'static;

    /// Registration is over (the fleet is known): start working.
    fn start(&mut self, server: &mut Server<'_, '_, Self::Work>) -> Result<(), FlError>;

    /// A reply arrived (also after the last version: the logic then counts it, late or
    /// cancelled). The logic settles it, now or later: [`Server::aggregated`] or
    /// [`Server::discard`]; what it still holds at the end counts as [`Fate::Unused`].
    fn on_update(
        &mut self,
        update: Update,
        server: &mut Server<'_, '_, Self::Work>,
    ) -> Result<(), FlError>;

    /// A timer set with [`Server::set_timer`] fired.
    fn on_timer(
        &mut self,
        tag: u64,
        server: &mut Server<'_, '_, Self::Work>,
    ) -> Result<(), FlError> {
        let _ = (tag, server);
        Ok(())
    }

    /// A job started with [`Server::spawn`] finished.
    fn on_server_work(
        &mut self,
        done: ServerWorkDone,
        server: &mut Server<'_, '_, Self::Work>,
    ) -> Result<(), FlError> {
        let _ = server;
        Err(FlError::Protocol(format!(
            "unexpected server work for round {} stage {}",
            done.round, done.stage
        )))
    }

    /// A client announced itself after registration closed (late, or again after a lost
    /// announcement); it is in the fleet from now on.
    fn on_join(
        &mut self,
        client: NodeId,
        server: &mut Server<'_, '_, Self::Work>,
    ) -> Result<(), FlError> {
        let _ = (client, server);
        Ok(())
    }

    /// The current global models (evaluated, and the run's final models).
    fn global_models(&self) -> Vec<Payload>;

    /// Training samples moved off the devices to the server (0 for on-device methods).
    fn centralised_samples(&self) -> u64 {
        0
    }

    /// The logic's state for a checkpoint: everything its handlers may have changed (its
    /// strategy's state included), not its configuration. The coordinator saves its own
    /// books apart. By default a logic does not support checkpoints: asked for its state,
    /// it fails with [`FlError::CheckpointUnsupported`] naming its type.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        Err(crate::checkpoint::unsupported::<Self>())
    }

    /// Puts back a state written by [`save_state`](Self::save_state) on a logic freshly
    /// built from the same configuration, after checking it against that configuration
    /// (an error names what does not match). By default: [`FlError::CheckpointUnsupported`].
    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let _ = state;
        Err(crate::checkpoint::unsupported::<Self>())
    }
}

/// A boxed logic is a logic (a strategy chosen at run time, e.g. registered by name).
impl<W> ServerLogic for Box<dyn ServerLogic<Work = W>>
where
    W: serde::Serialize + serde::de::DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    type Work = W;

    fn start(&mut self, server: &mut Server<'_, '_, W>) -> Result<(), FlError> {
        (**self).start(server)
    }

    fn on_update(&mut self, update: Update, server: &mut Server<'_, '_, W>) -> Result<(), FlError> {
        (**self).on_update(update, server)
    }

    fn on_timer(&mut self, tag: u64, server: &mut Server<'_, '_, W>) -> Result<(), FlError> {
        (**self).on_timer(tag, server)
    }

    fn on_server_work(
        &mut self,
        done: ServerWorkDone,
        server: &mut Server<'_, '_, W>,
    ) -> Result<(), FlError> {
        (**self).on_server_work(done, server)
    }

    fn on_join(&mut self, client: NodeId, server: &mut Server<'_, '_, W>) -> Result<(), FlError> {
        (**self).on_join(client, server)
    }

    fn global_models(&self) -> Vec<Payload> {
        (**self).global_models()
    }

    fn centralised_samples(&self) -> u64 {
        (**self).centralised_samples()
    }

    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        (**self).save_state()
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        (**self).restore_state(state)
    }
}

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorConfig {
    /// Global versions to commit: rounds of a synchronous method, server updates of an
    /// asynchronous one.
    pub rounds: u32,
    /// How long registration stays open for clients that have not announced themselves.
    pub registration_window: SimDuration,
    /// Evaluate the global models after every `eval_every`-th version (and after the last).
    pub eval_every: u32,
}

/// Called with every evaluation as it completes (progress reporting).
pub type Observer = Box<dyn FnMut(&Evaluation) + Send>;

/// What a coordinator was built with: the task, its settings, whether it evaluates.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) task: Arc<LearningTask>,
    pub(crate) config: CoordinatorConfig,
    /// Whether committed versions are evaluated (an edge aggregator's are not: its
    /// parent evaluates the global models).
    pub(crate) evaluate: bool,
}

/// Everything the coordinator changes besides the logic: the fleet, the books, the
/// records. Its checkpoint state, with the logic's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Books {
    /// Whether registration is still open.
    pub(crate) registering: bool,
    /// Versions to commit in all: the configured rounds, raised by each resume of an edge
    /// aggregator's coordinator.
    pub(crate) rounds: u32,
    pub(crate) fleet: Fleet,
    pub(crate) version: u32,
    pub(crate) finished: bool,
    pub(crate) finished_at: Option<SimTime>,
    pub(crate) history: Vec<RoundRecord>,
    pub(crate) updates: Vec<UpdateRecord>,
    pub(crate) tally: JobTally,
    /// Assignments sent and not answered yet, with the virtual time they were sent.
    pub(crate) outstanding: BTreeMap<(NodeId, AssignmentId), SimTime>,
    /// Replies handed to the logic and not settled yet.
    pub(crate) held: BTreeSet<(NodeId, AssignmentId)>,
    /// Jobs given to each client in the current version, per stage (for attempts).
    pub(crate) given: BTreeMap<(NodeId, u16), u16>,
    /// Server jobs spawned in the current version (for their streams).
    pub(crate) server_jobs: u32,
    /// Announcements received (first ones and repeats).
    pub(crate) hellos_received: u64,
}

impl Books {
    pub(crate) fn new(rounds: u32) -> Self {
        Self {
            registering: true,
            rounds,
            fleet: Fleet::default(),
            version: 0,
            finished: false,
            finished_at: None,
            history: Vec::new(),
            updates: Vec::new(),
            tally: JobTally::default(),
            outstanding: BTreeMap::new(),
            held: BTreeSet::new(),
            given: BTreeMap::new(),
            server_jobs: 0,
            hellos_received: 0,
        }
    }

    /// Checks restored books against what the coordinator was built with: the clients
    /// announce only the task's models, every assignment and held reply is to a client
    /// of the fleet, and the counts agree with each other.
    pub(crate) fn check(&self, setup: &Setup) -> Result<(), FlError> {
        let mismatch = |what: String| Err(FlError::Checkpoint(format!("coordinator: {what}")));
        for (client, caps) in self.fleet.clients() {
            if let Some(role) = caps
                .trainable
                .iter()
                .find(|r| setup.task.model(**r).is_err())
            {
                return mismatch(format!(
                    "client {client} announced a {role} model the task has not"
                ));
            }
        }
        let keys = self.outstanding.keys().chain(&self.held).map(|(c, _)| c);
        if let Some(client) = keys
            .chain(self.given.keys().map(|(c, _)| c))
            .find(|c| self.fleet.get(**c).is_none())
        {
            return mismatch(format!(
                "work of client {client}, which is not in the fleet"
            ));
        }
        if self.rounds < setup.config.rounds || self.version > self.rounds {
            return mismatch(format!(
                "version {} of {} rounds, the coordinator is configured for {}",
                self.version, self.rounds, setup.config.rounds
            ));
        }
        if self.registering && (self.version > 0 || self.finished || !self.history.is_empty()) {
            return mismatch("still registering, but with versions or records".into());
        }
        Ok(())
    }

    pub(crate) fn current_stage(&mut self) -> Option<&mut StageRecord> {
        self.history.last_mut().and_then(|r| r.stages.last_mut())
    }

    /// Records the fate of `client`'s reply to `assignment`.
    pub(crate) fn settle(
        &mut self,
        client: NodeId,
        assignment: AssignmentId,
        now: SimTime,
        fate: Fate,
    ) {
        self.held.remove(&(client, assignment));
        self.tally.count(fate);
        let version = self.version;
        self.updates.push(UpdateRecord {
            client,
            assignment,
            arrived_s: now.as_secs_f64(),
            version,
            staleness: version.saturating_sub(assignment.round),
            fate,
        });
        if !matches!(fate, Fate::Aggregated | Fate::Rejected | Fate::Unused)
            && let Some(stage) = self.current_stage()
        {
            *stage.discarded.entry(fate).or_default() += 1;
        }
    }

    /// The run's tally: fates so far, replies still held as unused, and the assignments
    /// still outstanding as unanswered.
    pub(crate) fn tally(&self) -> JobTally {
        let mut tally = self.tally.clone();
        tally.unused += self.held.len() as u64;
        tally.unanswered = self.outstanding.len() as u64;
        tally
    }
}

/// What a [`ServerLogic`] works with while handling one event: the fleet, the server's
/// stream, the current version, and the actions (assign, aggregate, commit, timers, server
/// jobs).
pub struct Server<'b, 'c, W> {
    pub(crate) setup: &'b Setup,
    pub(crate) books: &'b mut Books,
    pub(crate) ctx: &'b mut Context<'c, FlMessage<W>>,
}

impl<W> fmt::Debug for Server<'_, '_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("version", &self.books.version)
            .field("now", &self.ctx.now())
            .finish_non_exhaustive()
    }
}

fn node_error(e: FlError) -> NodeError {
    NodeError::new(e.to_string())
}

impl<W: Send + 'static> Server<'_, '_, W> {
    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.ctx.now()
    }

    /// The current global version: rounds (or server updates) committed so far.
    pub fn version(&self) -> u32 {
        self.books.version
    }

    /// Whether the last version has been committed.
    pub fn finished(&self) -> bool {
        self.books.finished
    }

    /// The clients that announced themselves.
    pub fn fleet(&self) -> &Fleet {
        &self.books.fleet
    }

    /// The server's own random stream.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.ctx.rng()
    }

    /// A [`Selection`] over the fleet with the server's stream, over-selecting by `factor`.
    pub fn selection(&mut self, factor: f64) -> Selection<'_> {
        Selection::new(&self.books.fleet, self.ctx.rng(), factor)
    }

    /// Whether `client` has an assignment not answered yet.
    pub fn is_busy(&self, client: NodeId) -> bool {
        self.books
            .outstanding
            .range((client, AssignmentId::default())..)
            .next()
            .is_some_and(|((c, _), _)| *c == client)
    }

    /// Adds a record to the trace.
    pub fn record(&mut self, label: &str, value: f64) {
        self.ctx.record(label, value);
    }

    /// Fires [`ServerLogic::on_timer`] with `tag` after `after` (`tag` must not be
    /// `u64::MAX`, the coordinator's own).
    pub fn set_timer(&mut self, after: SimDuration, tag: u64) {
        self.ctx.set_timer(after, tag);
    }

    /// Opens stage `stage` (try `attempt`) of the current version: a new row of its record,
    /// where the assignments and fates that follow are counted.
    pub fn open_stage(&mut self, stage: u32, attempt: u16) {
        if let Some(round) = self.books.history.last_mut() {
            round.stages.push(StageRecord::new(stage, attempt));
        }
    }

    /// Sends `order` to `client` as an assignment of the current version and stage, and
    /// returns its id. The attempt counts this client's earlier jobs of the same version
    /// and stage, so every job of a client has its own id (and random stream).
    pub fn assign(&mut self, client: NodeId, order: WorkOrder<W>) -> Result<AssignmentId, FlError> {
        let stage = self.books.current_stage().map_or(0, |s| s.stage);
        let stage = u16::try_from(stage).map_err(|_| {
            FlError::Protocol(format!("stage {stage} beyond the 65535 a round may have"))
        })?;
        let given = self.books.given.entry((client, stage)).or_default();
        let attempt = *given;
        *given = given.checked_add(1).ok_or_else(|| {
            FlError::Protocol(format!("client {client} given stage {stage} 65536 times"))
        })?;
        let id = AssignmentId {
            round: self.books.version,
            stage,
            attempt,
        };
        self.books.outstanding.insert((client, id), self.ctx.now());
        self.books.tally.assigned += 1;
        if let Some(record) = self.books.current_stage()
            && let Err(at) = record.assigned.binary_search(&client)
        {
            record.assigned.insert(at, client);
        }
        self.ctx
            .send(client, FlMessage::Assign(Assignment::new(id, order)));
        Ok(id)
    }

    /// Records `replies` (in client-id order) as aggregated into the current stage: their
    /// fates, the stage's replied clients, models and mean statistics. A reply aggregated
    /// before (one model of it, by another buffer) keeps its first fate.
    pub fn aggregated<'r>(
        &mut self,
        replies: impl IntoIterator<Item = (NodeId, &'r Reply)> + Clone,
    ) {
        let now = self.ctx.now();
        let version = self.books.version;
        let mut staleness = 0.0;
        let mut n = 0u32;
        for (client, reply) in replies.clone() {
            // A reply aggregated before (one model of it, by another buffer) keeps its
            // first fate.
            if self.books.held.contains(&(client, reply.assignment)) {
                self.books
                    .settle(client, reply.assignment, now, Fate::Aggregated);
            }
            staleness += f64::from(version.saturating_sub(reply.assignment.round));
            n += 1;
        }
        if let Some(stage) = self.books.current_stage() {
            let mut replied: Vec<NodeId> = replies.clone().into_iter().map(|(c, _)| c).collect();
            replied.sort();
            stage.replied = replied;
            let roles: BTreeSet<ModelRole> = replies
                .clone()
                .into_iter()
                .flat_map(|(_, r)| r.models.iter().map(|p| p.role))
                .collect();
            stage.models = roles.into_iter().collect();
            stage.client_stats = mean_stats(replies.into_iter().map(|(_, r)| &r.stats));
            stage.mean_staleness = if n > 0 { staleness / f64::from(n) } else { 0.0 };
        }
    }

    /// Settles `client`'s reply to `assignment` as not aggregated, with `fate`.
    pub fn discard(&mut self, client: NodeId, assignment: AssignmentId, fate: Fate) {
        if fate == Fate::Late {
            self.ctx.record("stale_reply", f64::from(assignment.round));
        }
        let now = self.ctx.now();
        self.books.settle(client, assignment, now, fate);
    }

    /// Runs `job` on the server's device; its result comes to
    /// [`ServerLogic::on_server_work`]. The job draws from the server's `TRAINING`
    /// sub-stream named by its identity: the current version, plus `n·2³²` for the version's
    /// `n`-th server job, so no two server jobs share a stream.
    pub fn spawn(&mut self, job: ServerJob) {
        let n = self.books.server_jobs;
        self.books.server_jobs += 1;
        let index = u64::from(self.books.version) | (u64::from(n) << 32);
        let mut rng = self
            .setup
            .task
            .seed
            .substream(self.ctx.id(), Purpose::TRAINING, index);
        let run = job.run;
        self.ctx.spawn_job(job.flops, move || {
            run(&mut rng).map(FlMessage::ServerWork).map_err(node_error)
        });
    }

    /// Commits a new global version: the current round closes now, `models` (the logic's
    /// [`ServerLogic::global_models`]) are evaluated if this version is due, and the next
    /// round opens — unless this was the last, after which the run is finished and every
    /// reply still to arrive counts as late.
    pub fn commit(&mut self, models: Vec<Payload>) -> Result<(), FlError> {
        let (setup, books) = (self.setup, &mut *self.books);
        let now = self.ctx.now();
        let closed_at_s = now.as_secs_f64();
        if let Some(record) = books.history.last_mut() {
            record.closed_at_s = closed_at_s;
        }
        let round = books.version;
        let last = round + 1 == books.rounds;
        let due = last || (round + 1).is_multiple_of(setup.config.eval_every.max(1));
        if setup.evaluate && due {
            for payload in models {
                let task = setup.task.clone();
                let flops = task.evaluation_flops(payload.role)?;
                self.ctx.spawn_job(flops, move || {
                    let (role, weights) = (payload.role, &payload.weights);
                    match task.offload() {
                        Some(offload) => {
                            offload::evaluate_job(&task, round, role, closed_at_s, weights)
                                .and_then(|job| offload::compute(offload.as_ref(), job))
                        }
                        None => offload::evaluate(&task, round, role, closed_at_s, weights),
                    }
                    .map(FlMessage::Evaluated)
                    .map_err(node_error)
                });
            }
        }
        books.version += 1;
        self.ctx.record(VERSION_COMMITTED, f64::from(books.version));
        books.given.clear();
        books.server_jobs = 0;
        if last {
            books.finished = true;
            books.finished_at = Some(now);
        } else {
            books.history.push(RoundRecord {
                round: books.version,
                closed_at_s: f64::NAN,
                stages: Vec::new(),
                evaluations: Vec::new(),
            });
        }
        Ok(())
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
