//! The client node: announces what its device can train, then carries out assignments.

use crate::offload;
use crate::{
    Capabilities, ClientData, ClientEnv, ClientStrategy, FlError, FlMessage, LearningTask,
    decode_state, encode_state,
};
use flotilla_sim::{Context, Event, Node, NodeError, NodeId, SimDuration, micros};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const REJOIN_TAG: u64 = 0;
/// Announcements repeated at most (with the wait doubling each time).
const MAX_REJOINS: u32 = 10;

fn node_error(e: FlError) -> NodeError {
    NodeError::new(e.to_string())
}

/// The client node: announces what its device can train, then carries out assignments
/// with a [`ClientStrategy`] in compute jobs whose declared work is the strategy's FLOPs,
/// so a device's speed, not a flag, decides when its reply arrives.
#[derive(Debug)]
pub struct Participant<C: ClientStrategy> {
    strategy: Arc<C>,
    task: Arc<LearningTask>,
    data: ClientData,
    server: NodeId,
    /// The first wait before announcing again (see [`Participant::with_rejoin`]).
    rejoin_after: Option<SimDuration>,
    state: ParticipantState,
}

/// What a [`Participant`] changes while running: its checkpoint state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ParticipantState {
    /// Its own id, learned at start (`u32::MAX` before).
    node: NodeId,
    /// The wait before the next repeated announcement (doubling each time).
    rejoin: Option<SimDuration>,
    /// Announcements repeated so far.
    rejoins: u32,
    heard_from_server: bool,
    /// What it announced (repeated when repeats are on).
    hello: Option<Capabilities>,
    hellos_sent: u64,
    refused: u64,
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
            task,
            data,
            server,
            rejoin_after: None,
            state: ParticipantState {
                node: NodeId(u32::MAX),
                rejoin: None,
                rejoins: 0,
                heard_from_server: false,
                hello: None,
                hellos_sent: 0,
                refused: 0,
            },
        }
    }

    /// Announces itself again `after` its announcement (then after twice as long, and so
    /// on, at most ten times) until the server has sent it anything, so that a lost `Hello` does not keep the
    /// client out of the run for good. Off by default: each repeat is a message on the
    /// client's link.
    pub fn with_rejoin(mut self, after: SimDuration) -> Self {
        self.rejoin_after = Some(after);
        self.state.rejoin = Some(after);
        self
    }

    /// Announcements sent (one, plus the repeats of [`Participant::with_rejoin`]).
    pub fn hellos_sent(&self) -> u64 {
        self.state.hellos_sent
    }

    /// Assignments refused because the device's memory could not hold them.
    pub fn refused(&self) -> u64 {
        self.state.refused
    }

    /// What a job of this client runs with.
    fn env(&self) -> ClientEnv {
        ClientEnv {
            node: self.state.node,
            task: self.task.clone(),
            data: self.data.clone(),
        }
    }

    /// Checks a restored state against what this client was built with.
    fn check(&self, state: &ParticipantState) -> Result<(), FlError> {
        let mismatch = |what: String| Err(FlError::Checkpoint(format!("participant: {what}")));
        if state.rejoin.is_some() != self.rejoin_after.is_some() {
            return mismatch(format!(
                "repeated announcements are {} in the state, {} on this client",
                on_off(state.rejoin.is_some()),
                on_off(self.rejoin_after.is_some())
            ));
        }
        if state.rejoins > MAX_REJOINS {
            return mismatch(format!(
                "{} repeated announcements, more than the {MAX_REJOINS} allowed",
                state.rejoins
            ));
        }
        if let Some(hello) = &state.hello {
            if let Some(role) = hello
                .trainable
                .iter()
                .find(|r| self.task.model(**r).is_err())
            {
                return mismatch(format!("it announced a {role} model the task has not"));
            }
            let held = (self.data.labeled.len(), self.data.unlabeled.len());
            if (hello.labeled as usize, hello.unlabeled as usize) != held {
                return mismatch(format!(
                    "it announced {} labeled and {} unlabeled samples, its data holds {} and {}",
                    hello.labeled, hello.unlabeled, held.0, held.1
                ));
            }
        }
        Ok(())
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

impl<C: ClientStrategy> Node<FlMessage<C::Work>> for Participant<C> {
    fn on_event(
        &mut self,
        event: Event<FlMessage<C::Work>>,
        ctx: &mut Context<'_, FlMessage<C::Work>>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Start => {
                self.state.node = ctx.id();
                let mut trainable = Vec::new();
                for role in self.task.roles() {
                    if self.task.fits(role, ctx.device()).map_err(node_error)? {
                        trainable.push(role);
                    }
                }
                // Which samples this client holds, in the order it samples from them.
                for (kind, indices) in [
                    ("labeled", &self.data.labeled),
                    ("unlabeled", &self.data.unlabeled),
                ] {
                    ctx.record(format!("{kind}_samples"), indices.len() as f64);
                    ctx.record(
                        format!("{kind}_fingerprint"),
                        ClientData::fingerprint(indices) as f64,
                    );
                }
                let hello = Capabilities {
                    trainable,
                    labeled: self.data.labeled.len() as u32,
                    unlabeled: self.data.unlabeled.len() as u32,
                };
                ctx.send(self.server, FlMessage::Hello(hello.clone()));
                let state = &mut self.state;
                state.hellos_sent += 1;
                state.hello = Some(hello);
                if let Some(after) = state.rejoin {
                    ctx.set_timer(after, REJOIN_TAG);
                }
            }
            Event::Timer { tag: REJOIN_TAG } if !self.state.heard_from_server => {
                let state = &mut self.state;
                if let (Some(hello), Some(after)) = (&state.hello, state.rejoin) {
                    ctx.record("rejoin", ctx.now().as_secs_f64());
                    ctx.send(self.server, FlMessage::Hello(hello.clone()));
                    state.hellos_sent += 1;
                    state.rejoins += 1;
                    if state.rejoins < MAX_REJOINS {
                        let next = micros(after.as_micros().saturating_mul(2));
                        state.rejoin = Some(next);
                        ctx.set_timer(next, REJOIN_TAG);
                    }
                }
            }
            Event::Message {
                msg: FlMessage::Assign(assignment),
                ..
            } => {
                self.state.heard_from_server = true;
                let env = self.env();
                let needed = self.strategy.memory_bytes(&env, &assignment);
                if ctx.device().is_some_and(|d| !d.fits(needed)) {
                    ctx.record("cannot_train", needed as f64);
                    self.state.refused += 1;
                    return Ok(());
                }
                let flops = self.strategy.flops(&env, &assignment).map_err(node_error)?;
                let strategy = self.strategy.clone();
                ctx.spawn_job(flops, move || {
                    match env.task.offload() {
                        Some(offload) => offload::train_job(&env, &assignment)
                            .and_then(|job| offload::compute(offload.as_ref(), job)),
                        None => strategy.execute(&env, assignment).map(FlMessage::Reply),
                    }
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

    /// `ParticipantState`: its id, the announcement repeats, its counters.
    fn save_state(&self) -> Result<Vec<u8>, NodeError> {
        encode_state("a participant", &self.state).map_err(node_error)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), NodeError> {
        let state: ParticipantState = decode_state("a participant", state).map_err(node_error)?;
        self.check(&state).map_err(node_error)?;
        self.state = state;
        Ok(())
    }
}
