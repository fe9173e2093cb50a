//! Synchronous rounds as one [`ServerLogic`]: a stage-based [`ServerStrategy`] under a
//! [`RoundPolicy`] (wait for all, a deadline, over-selection, a minimum of updates).
//!
//! ```text
//!  open stage s:  strategy.assign(r, s, selection)  → assignments (ceil(f·k) when over-selecting)
//!  collect:       a reply of this stage             → kept (finite) or dropped from the wait (rejected)
//!  close when:    every assigned client answered, the first k arrived (over-selection),
//!                 or the deadline fired            → the rest count late / cancelled when they come
//!  then:          fewer than the minimum → retry the stage (attempt + 1) or skip it
//!                 else strategy.aggregate(r, s, replies in client-id order) → [server job] → stage s + 1
//!  no more stages → commit the round (evaluation) → round r + 1
//! ```

use crate::{
    AssignmentId, Fate, FlError, Payload, Reply, Server, ServerLogic, ServerStrategy,
    ServerWorkDone, Update, decode_state, encode_state,
};
use flotilla_sim::{NodeId, SimDuration};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a stage with fewer aggregated updates than [`RoundPolicy::min_updates`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShortStage {
    /// Run the stage again with freshly sampled clients, up to
    /// [`RoundPolicy::max_retries`] times, then skip it.
    #[default]
    Retry,
    /// Leave the global models as they are and go on.
    Skip,
}

/// When a synchronous stage closes and what it aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPolicy {
    /// Close a stage this long after it opened even if replies are missing; `None` waits
    /// for every assigned client (a client that dropped out then stalls the run).
    pub deadline: Option<SimDuration>,
    /// Over-selection factor `f ≥ 1`: asked for `k` clients, assign `ceil(f·k)`,
    /// aggregate the first `k` replies, count the rest as cancelled (1: off).
    pub over_selection: f64,
    /// Fewest updates a stage must aggregate (0: any number, even none).
    pub min_updates: usize,
    /// What a stage short of `min_updates` does.
    pub short_stage: ShortStage,
    /// Retries of a short stage before it is skipped.
    pub max_retries: u16,
}

impl RoundPolicy {
    /// Wait for every assigned client, or until `timeout` (the classic barrier).
    pub fn wait_all(timeout: Option<SimDuration>) -> Self {
        Self {
            deadline: timeout,
            over_selection: 1.0,
            min_updates: 0,
            short_stage: ShortStage::Retry,
            max_retries: 0,
        }
    }
}

/// Where the current stage is.
#[derive(Debug, Serialize, Deserialize)]
enum Phase {
    /// Before start, or between events that open stages.
    Idle,
    /// Waiting for replies of the current stage.
    Collecting {
        awaiting: BTreeMap<NodeId, AssignmentId>,
        received: BTreeMap<NodeId, Reply>,
        quota: usize,
    },
    /// Waiting for the strategy's server job.
    ServerWork,
}

/// What [`Synchronous`] changes while running (with its strategy's state, its checkpoint
/// state): where the round is and what the stage waits for.
#[derive(Debug, Serialize, Deserialize)]
struct SyncState {
    round: u32,
    stage: u32,
    attempt: u16,
    phase: Phase,
    /// Jobs beyond an over-selection's quota, still running when their stage closed.
    cancelled: BTreeSet<(NodeId, AssignmentId)>,
}

impl SyncState {
    /// Checks a restored state: the stage fits an assignment id, and what the stage waits
    /// for belongs to it.
    fn check(&self) -> Result<(), FlError> {
        let mismatch = |what: String| Err(FlError::Checkpoint(format!("synchronous: {what}")));
        let Ok(stage) = u16::try_from(self.stage) else {
            return mismatch(format!(
                "stage {} beyond the 65535 a round may have",
                self.stage
            ));
        };
        if let Phase::Collecting {
            awaiting, received, ..
        } = &self.phase
        {
            let ids = awaiting
                .values()
                .chain(received.values().map(|r| &r.assignment));
            if let Some(id) = ids
                .into_iter()
                .find(|id| (id.round, id.stage) != (self.round, stage))
            {
                return mismatch(format!(
                    "the stage of round {} stage {stage} waits for {id}",
                    self.round
                ));
            }
        }
        Ok(())
    }
}

/// A [`ServerStrategy`] run round by round under a [`RoundPolicy`].
#[derive(Debug)]
pub struct Synchronous<S> {
    strategy: S,
    policy: RoundPolicy,
    state: SyncState,
}

impl<S: ServerStrategy> Synchronous<S> {
    /// `strategy` under `policy`.
    pub fn new(strategy: S, policy: RoundPolicy) -> Self {
        Self {
            strategy,
            policy,
            state: SyncState {
                round: 0,
                stage: 0,
                attempt: 0,
                phase: Phase::Idle,
                cancelled: BTreeSet::new(),
            },
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The strategy, to change between runs (an edge aggregator's next job).
    pub(crate) fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// The policy.
    pub fn policy(&self) -> &RoundPolicy {
        &self.policy
    }

    /// The timer tag of the current stage's deadline.
    fn deadline_tag(&self) -> u64 {
        AssignmentId {
            round: self.state.round,
            stage: self.state.stage as u16,
            attempt: self.state.attempt,
        }
        .stream_index()
    }

    fn open_stage(&mut self, server: &mut Server<'_, '_, S::Work>) -> Result<(), FlError> {
        let mut selection = server.selection(self.policy.over_selection);
        let Some(orders) = self
            .strategy
            .assign(self.state.round, self.state.stage, &mut selection)
        else {
            return self.close_round(server);
        };
        let quota = selection.quota().unwrap_or(orders.len()).min(orders.len());
        server.open_stage(self.state.stage, self.state.attempt);
        let mut awaiting = BTreeMap::new();
        for (client, order) in orders {
            awaiting.insert(client, server.assign(client, order)?);
        }
        let close_now = awaiting.is_empty() || quota == 0;
        self.state.phase = Phase::Collecting {
            awaiting,
            received: BTreeMap::new(),
            quota,
        };
        if close_now {
            return self.close_stage(server);
        }
        if let Some(deadline) = self.policy.deadline {
            server.set_timer(deadline, self.deadline_tag());
        }
        Ok(())
    }

    fn close_stage(&mut self, server: &mut Server<'_, '_, S::Work>) -> Result<(), FlError> {
        let Phase::Collecting {
            awaiting,
            received,
            quota,
        } = std::mem::replace(&mut self.state.phase, Phase::Idle)
        else {
            return Ok(());
        };
        if !awaiting.is_empty() {
            server.record("stage_missing_replies", awaiting.len() as f64);
            if received.len() >= quota {
                self.state.cancelled.extend(awaiting);
            }
        }
        if received.len() < self.policy.min_updates {
            server.record("short_stage", received.len() as f64);
            for (client, reply) in &received {
                server.discard(*client, reply.assignment, Fate::ShortStage);
            }
            if self.policy.short_stage == ShortStage::Retry
                && self.state.attempt < self.policy.max_retries
            {
                self.state.attempt += 1;
            } else {
                self.next_stage();
            }
            return self.open_stage(server);
        }
        server.aggregated(received.iter().map(|(c, r)| (*c, r)));
        match self
            .strategy
            .aggregate(self.state.round, self.state.stage, &received)?
        {
            Some(job) => {
                self.state.phase = Phase::ServerWork;
                server.spawn(job);
                Ok(())
            }
            None => {
                self.next_stage();
                self.open_stage(server)
            }
        }
    }

    fn next_stage(&mut self) {
        self.state.stage += 1;
        self.state.attempt = 0;
    }

    fn close_round(&mut self, server: &mut Server<'_, '_, S::Work>) -> Result<(), FlError> {
        server.commit(self.strategy.global_models())?;
        if server.finished() {
            return Ok(());
        }
        self.state.round = server.version();
        self.state.stage = 0;
        self.state.attempt = 0;
        self.open_stage(server)
    }
}

impl<S: ServerStrategy> ServerLogic for Synchronous<S> {
    type Work = S::Work;

    fn start(&mut self, server: &mut Server<'_, '_, S::Work>) -> Result<(), FlError> {
        // From stage 0 of the current version, also when a finished run is resumed.
        self.state.round = server.version();
        self.state.stage = 0;
        self.state.attempt = 0;
        self.open_stage(server)
    }

    fn on_update(
        &mut self,
        update: Update,
        server: &mut Server<'_, '_, S::Work>,
    ) -> Result<(), FlError> {
        let Update {
            client,
            reply,
            finite,
            ..
        } = update;
        let id = reply.assignment;
        if self.state.cancelled.remove(&(client, id)) {
            if finite {
                server.discard(client, id, Fate::Cancelled);
            }
            return Ok(());
        }
        let Phase::Collecting {
            awaiting,
            received,
            quota,
        } = &mut self.state.phase
        else {
            if finite {
                server.discard(client, id, Fate::Late);
            }
            return Ok(());
        };
        if awaiting.get(&client) != Some(&id) {
            if finite {
                server.discard(client, id, Fate::Late);
            }
            return Ok(());
        }
        awaiting.remove(&client);
        if finite {
            received.insert(client, reply);
        }
        if awaiting.is_empty() || received.len() >= *quota {
            self.close_stage(server)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, tag: u64, server: &mut Server<'_, '_, S::Work>) -> Result<(), FlError> {
        if matches!(self.state.phase, Phase::Collecting { .. }) && tag == self.deadline_tag() {
            self.close_stage(server)?;
        }
        Ok(())
    }

    fn on_server_work(
        &mut self,
        done: ServerWorkDone,
        server: &mut Server<'_, '_, S::Work>,
    ) -> Result<(), FlError> {
        if !matches!(self.state.phase, Phase::ServerWork)
            || done.round != self.state.round
            || done.stage != self.state.stage
        {
            return Err(FlError::Protocol(format!(
                "server work of round {} stage {} arrived in round {} stage {}",
                done.round, done.stage, self.state.round, self.state.stage
            )));
        }
        self.strategy.server_work_done(done)?;
        self.state.phase = Phase::Idle;
        self.next_stage();
        self.open_stage(server)
    }

    fn global_models(&self) -> Vec<Payload> {
        self.strategy.global_models()
    }

    fn centralised_samples(&self) -> u64 {
        self.strategy.centralised_samples()
    }

    /// The round, stage, attempt and what the stage waits for, then the strategy's state.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        let strategy = self.strategy.save_state()?;
        encode_state("a synchronous logic", &(&self.state, strategy))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let (state, strategy): (SyncState, Vec<u8>) = decode_state("a synchronous logic", state)?;
        state.check()?;
        self.strategy.restore_state(&strategy)?;
        self.state = state;
        Ok(())
    }
}
