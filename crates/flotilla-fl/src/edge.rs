//! The edge aggregator: a coordinator towards its children, a participant towards its
//! parent (hierarchical federated learning: cloud → edges → clients).
//!
//! ```text
//!  start:   children ──Hello──► edge   (registration, as at a coordinator)
//!           registration over → edge ──Hello(union of the children's capabilities)──► parent
//!  parent ──Assign(id, lr, models, work)──► edge
//!           local round 1..=local_rounds (Synchronous under the edge's RoundPolicy):
//!             edge ──Assign(same lr and work, the edge's models)──► capable children
//!             replies until all in or the deadline → average (role by role) → edge models
//!  edge ──Reply(id, edge models, samples = the aggregated children's samples)──► parent
//! ```
//!
//! The child side reuses the coordinator whole: its books count every child assignment
//! and give every child reply one [`Fate`](crate::Fate) — a reply after its local round
//! closed, or after the job was answered, is [`Fate::Late`](crate::Fate::Late) in
//! [`EdgeAggregator::tally`], never dropped silently.

use crate::checkpoint::check_payloads;
use crate::{
    Assignment, AssignmentId, Capabilities, Coordinator, CoordinatorConfig, FlError, FlMessage,
    Fleet, JobTally, LearningTask, ModelRole, Payload, Reply, RoundPolicy, RoundRecord, Selection,
    ServerJob, ServerStrategy, Synchronous, UpdateRecord, WorkOrder, average_replies, decode_state,
    encode_state,
};
use flotilla_sim::{Context, Event, Node, NodeError, NodeId, SimDuration};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// Settings of an [`EdgeAggregator`].
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The shared task (the edge's books need it; the edge evaluates nothing).
    pub task: Arc<LearningTask>,
    /// Rounds of aggregation over the children per assignment from the parent (≥ 1).
    pub local_rounds: u32,
    /// When a local round closes: its deadline, minimum of updates, over-selection.
    pub policy: RoundPolicy,
    /// Weight the children's models by sample count (`true`) or equally (`false`).
    pub weighted: bool,
    /// Children sampled per local round among the capable ones (`None`: all).
    pub clients_per_round: Option<usize>,
    /// How long the edge waits for its children's announcements before announcing itself
    /// to its parent with those it has (the parent's window should be longer).
    pub registration_window: SimDuration,
}

impl EdgeConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), FlError> {
        if self.local_rounds == 0 {
            return Err(FlError::Setup(
                "edge local_rounds is 0: an edge runs at least one round per assignment".into(),
            ));
        }
        Ok(())
    }
}

/// What became of the assignments an edge got from its parent: each is answered or
/// superseded (a newer one came while it was still working and another was waiting; the
/// waiting one is given up), or still in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeJobs {
    /// Assignments received from the parent.
    pub received: u64,
    /// Replies sent to the parent.
    pub answered: u64,
    /// Assignments given up for a newer one before they started.
    pub superseded: u64,
}

/// The edge's side of the local rounds: every capable child trains the parent's work from
/// the edge's current models, which become the mean of the replies.
#[derive(Debug)]
pub(crate) struct EdgeRounds<W> {
    task: Arc<LearningTask>,
    weighted: bool,
    clients_per_round: Option<usize>,
    state: RoundsState<W>,
}

/// What [`EdgeRounds`] changes while running: its checkpoint state.
#[derive(Debug, Serialize, Deserialize)]
struct RoundsState<W> {
    /// The edge's models: the parent's, then the mean of the children's replies.
    models: Vec<Payload>,
    /// The current job's learning rate and work.
    lr: f32,
    work: Option<W>,
    /// Samples of each child aggregated during the current job (its latest reply's).
    contributors: BTreeMap<NodeId, u32>,
}

impl<W> EdgeRounds<W> {
    /// Starts a job: the parent's models, learning rate and work.
    fn begin(&mut self, assignment: Assignment<W>) {
        let state = &mut self.state;
        state.models = assignment.models;
        state.lr = assignment.lr;
        state.work = Some(assignment.work);
        state.contributors.clear();
    }
}

impl<W> ServerStrategy for EdgeRounds<W>
where
    W: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    type Work = W;

    fn assign(
        &mut self,
        _round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<W>)>> {
        if stage > 0 {
            return None;
        }
        let work = self.state.work.clone()?;
        // A child is asked only for work whose every model its device can train.
        let roles: Vec<ModelRole> = self.state.models.iter().map(|p| p.role).collect();
        let pool: Vec<NodeId> = selection
            .fleet()
            .clients()
            .filter(|(_, caps)| roles.iter().all(|r| caps.trainable.contains(r)))
            .map(|(id, _)| id)
            .collect();
        let chosen = selection.sample(&pool, self.clients_per_round);
        let order = WorkOrder {
            lr: self.state.lr,
            models: self.state.models.clone(),
            work,
        };
        Some(order.for_each(&chosen))
    }

    fn aggregate(
        &mut self,
        _round: u32,
        _stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        let state = &mut self.state;
        for payload in &mut state.models {
            if let Some(mean) = average_replies(replies, payload.role, self.weighted) {
                payload.weights = Arc::new(mean);
            }
        }
        for (child, reply) in replies {
            state.contributors.insert(*child, reply.samples);
        }
        Ok(None)
    }

    fn global_models(&self) -> Vec<Payload> {
        self.state.models.clone()
    }

    /// The job's models, learning rate, work and contributors.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        encode_state("an edge's local rounds", &self.state)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let state: RoundsState<W> = decode_state("an edge's local rounds", state)?;
        check_payloads("an edge's models", &self.task, &state.models)?;
        self.state = state;
        Ok(())
    }
}

/// A node between a parent (a coordinator, or another edge) and its children: for each
/// assignment from the parent it runs `local_rounds` synchronous rounds over its children,
/// starting from the parent's models, and replies with their mean (see the module docs).
/// Its own random draws (the children sampled) come from its node stream.
#[derive(Debug)]
pub struct EdgeAggregator<W>
where
    W: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    parent: NodeId,
    local_rounds: u32,
    /// The child side; its state is part of the edge's checkpoint state.
    children: Coordinator<Synchronous<EdgeRounds<W>>>,
    state: EdgeState<W>,
}

/// What an [`EdgeAggregator`] changes on its parent's side (with its child side's, its
/// checkpoint state).
#[derive(Debug, Serialize, Deserialize)]
struct EdgeState<W> {
    /// The parent's assignment in progress.
    job: Option<AssignmentId>,
    /// The parent's newest assignment, waiting for the current one (or registration).
    waiting: Option<Assignment<W>>,
    announced: bool,
    jobs: EdgeJobs,
}

fn node_error(e: FlError) -> NodeError {
    NodeError::new(e.to_string())
}

impl<W> EdgeAggregator<W>
where
    W: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    /// An edge answering `parent`, aggregating `children` clients (registration closes when
    /// they all announced themselves, or after the configured window).
    pub fn new(config: EdgeConfig, parent: NodeId, children: usize) -> Result<Self, FlError> {
        config.check()?;
        let rounds = EdgeRounds {
            task: config.task.clone(),
            weighted: config.weighted,
            clients_per_round: config.clients_per_round,
            state: RoundsState {
                models: Vec::new(),
                lr: 0.0,
                work: None,
                contributors: BTreeMap::new(),
            },
        };
        // Zero versions: registration ends in a finished run, which each parent
        // assignment resumes for `local_rounds` more.
        let books = CoordinatorConfig {
            rounds: 0,
            registration_window: config.registration_window,
            eval_every: 1,
        };
        let children =
            Coordinator::synchronous(rounds, config.policy, config.task, books, children)
                .without_evaluation();
        Ok(Self {
            parent,
            local_rounds: config.local_rounds,
            children,
            state: EdgeState {
                job: None,
                waiting: None,
                announced: false,
                jobs: EdgeJobs::default(),
            },
        })
    }

    /// The node the edge answers.
    pub fn parent(&self) -> NodeId {
        self.parent
    }

    /// The children that announced themselves.
    pub fn fleet(&self) -> &Fleet {
        self.children.fleet()
    }

    /// The edge's current models: the last job's aggregate (the parent's models before
    /// any child reply was aggregated).
    pub fn models(&self) -> Vec<Payload> {
        self.children.logic().strategy().global_models()
    }

    /// Every assignment to a child by what became of its reply (late ones included; the
    /// counts add up to `assigned`).
    pub fn tally(&self) -> JobTally {
        self.children.tally()
    }

    /// What became of the parent's assignments.
    pub fn jobs(&self) -> &EdgeJobs {
        &self.state.jobs
    }

    /// One record per local round (rounds of all jobs, in order).
    pub fn history(&self) -> &[RoundRecord] {
        self.children.history()
    }

    /// Every child reply that arrived, in arrival order, with its fate.
    pub fn updates(&self) -> &[UpdateRecord] {
        self.children.updates()
    }

    /// What the edge announces: the union of the roles its children can train, and the
    /// sums of their samples.
    fn capabilities(&self) -> Capabilities {
        let mut roles = BTreeSet::new();
        let (mut labeled, mut unlabeled) = (0u32, 0u32);
        for (_, caps) in self.children.fleet().clients() {
            roles.extend(caps.trainable.iter().copied());
            labeled = labeled.saturating_add(caps.labeled);
            unlabeled = unlabeled.saturating_add(caps.unlabeled);
        }
        Capabilities {
            trainable: roles.into_iter().collect(),
            labeled,
            unlabeled,
        }
    }

    /// The reply to the finished job `id`: the edge's models and the samples of the
    /// children aggregated into them — no models (and 0 samples) when none was, so the
    /// parent stops waiting without averaging in its own models.
    fn reply(&self, id: AssignmentId) -> Reply {
        let rounds = &self.children.logic().strategy().state;
        let samples = rounds
            .contributors
            .values()
            .fold(0u32, |sum, &s| sum.saturating_add(s));
        let models = if rounds.contributors.is_empty() {
            Vec::new()
        } else {
            rounds.models.clone()
        };
        // The children's statistics of the job's last round that aggregated any.
        let mut stats = self
            .children
            .history()
            .iter()
            .rev()
            .take(self.local_rounds as usize)
            .flat_map(|r| r.stages.iter().rev())
            .find(|s| !s.replied.is_empty())
            .map(|s| s.client_stats.clone())
            .unwrap_or_default();
        stats.insert("edge_contributors".into(), rounds.contributors.len() as f64);
        Reply {
            assignment: id,
            models,
            samples,
            stats,
        }
    }

    /// Checks a restored parent side: the waiting assignment carries the task's models,
    /// and the job counts add up.
    fn check(&self, state: &EdgeState<W>) -> Result<(), FlError> {
        if let Some(waiting) = &state.waiting {
            let task = &self.children.logic().strategy().task;
            check_payloads("the edge's waiting assignment", task, &waiting.models)?;
        }
        let EdgeJobs {
            received,
            answered,
            superseded,
        } = state.jobs;
        let open = u64::from(state.job.is_some()) + u64::from(state.waiting.is_some());
        if answered + superseded + open != received {
            return Err(FlError::Checkpoint(format!(
                "edge: {received} assignments received, but {answered} answered, {superseded} \
                 superseded and {open} open"
            )));
        }
        Ok(())
    }

    /// Answers a finished job and starts the waiting one, as long as jobs finish.
    fn advance(&mut self, ctx: &mut Context<'_, FlMessage<W>>) -> Result<(), FlError> {
        if !self.state.announced && self.children.registered() {
            self.state.announced = true;
            ctx.send(self.parent, FlMessage::Hello(self.capabilities()));
        }
        loop {
            if let Some(id) = self.state.job
                && self.children.finished()
            {
                ctx.send(self.parent, FlMessage::Reply(self.reply(id)));
                self.state.jobs.answered += 1;
                self.state.job = None;
            }
            if self.state.job.is_some() || !self.children.registered() {
                return Ok(());
            }
            let Some(assignment) = self.state.waiting.take() else {
                return Ok(());
            };
            self.state.job = Some(assignment.id);
            self.children.logic_mut().strategy_mut().begin(assignment);
            self.children.resume(self.local_rounds, ctx)?;
        }
    }
}

impl<W> Node<FlMessage<W>> for EdgeAggregator<W>
where
    W: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    fn on_event(
        &mut self,
        event: Event<FlMessage<W>>,
        ctx: &mut Context<'_, FlMessage<W>>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Message {
                from,
                msg: FlMessage::Assign(assignment),
            } if from == self.parent => {
                self.state.jobs.received += 1;
                if let Some(given_up) = self.state.waiting.replace(assignment) {
                    ctx.record("edge_superseded", f64::from(given_up.id.round));
                    self.state.jobs.superseded += 1;
                }
            }
            event => self.children.on_event(event, ctx)?,
        }
        self.advance(ctx).map_err(node_error)
    }

    /// `EdgeState` (the parent's jobs), then the child side's coordinator state (its
    /// books, round policy and local rounds).
    fn save_state(&self) -> Result<Vec<u8>, NodeError> {
        let children = self.children.save().map_err(node_error)?;
        encode_state("an edge aggregator", &(&self.state, children)).map_err(node_error)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), NodeError> {
        let (state, children): (EdgeState<W>, Vec<u8>) =
            decode_state("an edge aggregator", state).map_err(node_error)?;
        self.check(&state).map_err(node_error)?;
        self.children.restore(&children).map_err(node_error)?;
        self.state = state;
        Ok(())
    }
}
