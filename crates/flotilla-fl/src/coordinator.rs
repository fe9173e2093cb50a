//! The server node: registration, the books of every assignment, evaluation — and a
//! [`ServerLogic`] deciding, reply by reply, what the federation does.
//!
//! ```text
//!  start:  every participant ── Hello(capabilities from its own device and data) ──► coordinator
//!          (registration closes when all expected clients announced, or after a window)
//!  then, event by event:
//!          logic.start / on_update / on_timer / on_server_work / on_join
//!            → Server::assign  ── Assign(id = version, stage, attempt; models, work) ──► client
//!            → Server::aggregated / discard   (every reply gets one Fate)
//!            → Server::commit   (version + 1; evaluation jobs when due; the last one ends the run)
//!  participant: job of the strategy's declared FLOPs ── Reply(id, models) ──► coordinator
//! ```

use crate::server::{Books, Setup};
use crate::{
    CoordinatorConfig, FlMessage, Fleet, JobTally, LearningTask, Observer, RoundRecord, Server,
    ServerLogic, Update, UpdateRecord, decode_state, encode_state,
};
use crate::{Fate, RoundPolicy, ServerStrategy, Synchronous};
use flotilla_sim::{Context, Event, Node, NodeError, SimTime};
use std::fmt;
use std::sync::Arc;

const REGISTRATION_TAG: u64 = u64::MAX;

/// The server node: runs a [`ServerLogic`] from registration to its last version.
pub struct Coordinator<L: ServerLogic> {
    logic: L,
    setup: Setup,
    observer: Option<Observer>,
    expected_clients: usize,
    /// With the logic's state, the checkpoint state.
    books: Books,
}

impl<L: ServerLogic> fmt::Debug for Coordinator<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("logic", &self.logic)
            .field("config", &self.setup.config)
            .field("version", &self.books.version)
            .finish_non_exhaustive()
    }
}

impl<S: ServerStrategy> Coordinator<Synchronous<S>> {
    /// A coordinator running the synchronous `strategy` under `policy`.
    pub fn synchronous(
        strategy: S,
        policy: RoundPolicy,
        task: Arc<LearningTask>,
        config: CoordinatorConfig,
        expected_clients: usize,
    ) -> Self {
        Self::new(
            Synchronous::new(strategy, policy),
            task,
            config,
            expected_clients,
        )
    }
}

impl<L: ServerLogic> Coordinator<L> {
    /// A coordinator running `logic` for `expected_clients` clients.
    pub fn new(
        logic: L,
        task: Arc<LearningTask>,
        config: CoordinatorConfig,
        expected_clients: usize,
    ) -> Self {
        Self {
            logic,
            books: Books::new(config.rounds),
            setup: Setup {
                task,
                config,
                evaluate: true,
            },
            observer: None,
            expected_clients,
        }
    }

    /// Calls `observer` with every evaluation as it completes.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The server logic (for its final models and counters).
    pub fn logic(&self) -> &L {
        &self.logic
    }

    /// The clients that announced themselves.
    pub fn fleet(&self) -> &Fleet {
        &self.books.fleet
    }

    /// One record per round (version) opened.
    pub fn history(&self) -> &[RoundRecord] {
        &self.books.history
    }

    /// Every reply that arrived, in arrival order, with its fate.
    pub fn updates(&self) -> &[UpdateRecord] {
        &self.books.updates
    }

    /// Every assignment by what became of it (the counts add up to `assigned`).
    pub fn tally(&self) -> JobTally {
        self.books.tally()
    }

    /// Announcements received (first ones and repeats).
    pub fn hellos_received(&self) -> u64 {
        self.books.hellos_received
    }

    /// The model versions committed so far.
    pub fn version(&self) -> u32 {
        self.books.version
    }

    /// Whether every round ran.
    pub fn finished(&self) -> bool {
        self.books.finished
    }

    /// When the last version was committed: the end of the federation's work (timers
    /// still pending after it do not count).
    pub fn finished_at(&self) -> Option<SimTime> {
        self.books.finished_at
    }

    /// Whether registration is over.
    pub(crate) fn registered(&self) -> bool {
        !self.books.registering
    }

    /// The server logic, to change between runs (an edge aggregator's next job).
    pub(crate) fn logic_mut(&mut self) -> &mut L {
        &mut self.logic
    }

    /// Commits versions without evaluating them (an edge aggregator's parent evaluates).
    pub(crate) fn without_evaluation(mut self) -> Self {
        self.setup.evaluate = false;
        self
    }

    /// Runs `rounds` more versions after the last one was committed: the books reopen
    /// (a new round record, the run no longer finished) and the logic starts again. The
    /// books, the fleet and the version count carry on, so assignment ids stay unique and
    /// a reply to an earlier run still counts as late.
    pub(crate) fn resume(
        &mut self,
        rounds: u32,
        ctx: &mut Context<'_, FlMessage<L::Work>>,
    ) -> Result<(), crate::FlError> {
        if self.books.registering || !self.books.finished {
            return Err(crate::FlError::Protocol(
                "a coordinator resumes only after its last version".into(),
            ));
        }
        if rounds == 0 {
            return Ok(());
        }
        let version = self.books.version;
        self.books.rounds = version.checked_add(rounds).ok_or_else(|| {
            crate::FlError::Protocol(format!("{rounds} more rounds after {version} overflow u32"))
        })?;
        self.books.finished = false;
        self.books.finished_at = None;
        self.books.history.push(RoundRecord {
            round: version,
            closed_at_s: f64::NAN,
            stages: Vec::new(),
            evaluations: Vec::new(),
        });
        let mut server = Self::server(&self.setup, &mut self.books, ctx);
        self.logic.start(&mut server)
    }

    fn begin(&mut self, ctx: &mut Context<'_, FlMessage<L::Work>>) -> Result<(), NodeError> {
        self.books.registering = false;
        ctx.record("clients_registered", self.books.fleet.len() as f64);
        if self.books.rounds == 0 {
            self.books.finished = true;
            self.books.finished_at = Some(ctx.now());
            return Ok(());
        }
        self.books.history.push(RoundRecord {
            round: 0,
            closed_at_s: f64::NAN,
            stages: Vec::new(),
            evaluations: Vec::new(),
        });
        let mut server = Self::server(&self.setup, &mut self.books, ctx);
        self.logic.start(&mut server).map_err(node_error)
    }

    fn running(&self) -> bool {
        !self.books.registering && !self.books.finished
    }

    fn server<'b, 'c>(
        setup: &'b Setup,
        books: &'b mut Books,
        ctx: &'b mut Context<'c, FlMessage<L::Work>>,
    ) -> Server<'b, 'c, L::Work> {
        Server { setup, books, ctx }
    }

    /// The checkpoint state: the books, then the logic's state.
    pub(crate) fn save(&self) -> Result<Vec<u8>, crate::FlError> {
        let logic = self.logic.save_state()?;
        encode_state("a coordinator", &(&self.books, logic))
    }

    /// Puts back a state written by [`Coordinator::save`], checked against this
    /// coordinator's task and settings; on an error nothing is changed.
    pub(crate) fn restore(&mut self, state: &[u8]) -> Result<(), crate::FlError> {
        let (books, logic): (Books, Vec<u8>) = decode_state("a coordinator", state)?;
        books.check(&self.setup)?;
        self.logic.restore_state(&logic)?;
        self.books = books;
        Ok(())
    }
}

fn node_error(e: crate::FlError) -> NodeError {
    NodeError::new(e.to_string())
}

impl<L: ServerLogic> Node<FlMessage<L::Work>> for Coordinator<L> {
    fn on_event(
        &mut self,
        event: Event<FlMessage<L::Work>>,
        ctx: &mut Context<'_, FlMessage<L::Work>>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Start if self.expected_clients == 0 => self.begin(ctx)?,
            Event::Start => ctx.set_timer(self.setup.config.registration_window, REGISTRATION_TAG),
            Event::Message {
                from,
                msg: FlMessage::Hello(capabilities),
            } => {
                let known = self.books.fleet.get(from).is_some();
                self.books.hellos_received += 1;
                self.books.fleet.announce(from, capabilities);
                if self.books.registering && self.books.fleet.len() >= self.expected_clients {
                    self.begin(ctx)?;
                } else if self.running() && !known {
                    let mut server = Self::server(&self.setup, &mut self.books, ctx);
                    self.logic.on_join(from, &mut server).map_err(node_error)?;
                }
            }
            Event::Timer {
                tag: REGISTRATION_TAG,
            } if self.books.registering => self.begin(ctx)?,
            Event::Message {
                from,
                msg: FlMessage::Reply(reply),
            } => {
                let id = reply.assignment;
                let now = ctx.now();
                // A reply to no assignment of ours (a forged or duplicated id) is only
                // traced: it was never outstanding, so the tally stays balanced. Replies
                // after the last version still go to the logic, which counts them (late,
                // or cancelled when its policy had given them up).
                let known = self.books.outstanding.remove(&(from, id)).is_some();
                let finite = reply.models.iter().all(|p| p.weights.all_finite());
                if !known || self.books.registering {
                    ctx.record("unknown_reply", f64::from(from.0));
                    return Ok(());
                }
                if !finite {
                    ctx.record("rejected_non_finite", f64::from(from.0));
                    self.books.settle(from, id, now, Fate::Rejected);
                    if let Some(stage) = self.books.current_stage() {
                        stage.rejected.push(from);
                    }
                } else {
                    self.books.held.insert((from, id));
                }
                let update = Update {
                    client: from,
                    staleness: self.books.version.saturating_sub(id.round),
                    reply,
                    finite,
                };
                let mut server = Self::server(&self.setup, &mut self.books, ctx);
                self.logic
                    .on_update(update, &mut server)
                    .map_err(node_error)?;
            }
            Event::Timer { tag } if self.running() && tag != REGISTRATION_TAG => {
                let mut server = Self::server(&self.setup, &mut self.books, ctx);
                self.logic.on_timer(tag, &mut server).map_err(node_error)?;
            }
            Event::JobDone {
                output: FlMessage::ServerWork(done),
                ..
            } if self.running() => {
                if let Some(stage) = self.books.current_stage() {
                    stage.server_stats = done.stats.clone();
                }
                let mut server = Self::server(&self.setup, &mut self.books, ctx);
                self.logic
                    .on_server_work(done, &mut server)
                    .map_err(node_error)?;
            }
            Event::JobDone {
                output: FlMessage::Evaluated(e),
                ..
            } => {
                ctx.record(format!("{}_accuracy", e.role), e.accuracy);
                if let Some(observer) = &mut self.observer {
                    observer(&e);
                }
                if let Some(record) = self.books.history.get_mut(e.round as usize) {
                    record.evaluations.push(e);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The books (`Books`: registration, fleet, versions, records, outstanding
    /// assignments) and the logic's [`ServerLogic::save_state`]; a logic without
    /// checkpoint support makes this an error naming it.
    fn save_state(&self) -> Result<Vec<u8>, NodeError> {
        self.save().map_err(node_error)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), NodeError> {
        self.restore(state).map_err(node_error)
    }
}
