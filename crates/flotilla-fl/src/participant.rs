//! The client node: announces what its device can train, then carries out assignments.

use crate::{
    Capabilities, ClientData, ClientEnv, ClientStrategy, FlError, FlMessage, LearningTask,
};
use flotilla_sim::{Context, Event, Node, NodeError, NodeId, SimDuration, micros};
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
    env: ClientEnv,
    server: NodeId,
    rejoin: Option<SimDuration>,
    rejoins: u32,
    heard_from_server: bool,
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
            env: ClientEnv {
                node: NodeId(u32::MAX),
                task,
                data,
            },
            server,
            rejoin: None,
            rejoins: 0,
            hellos_sent: 0,
            refused: 0,
            heard_from_server: false,
            hello: None,
        }
    }

    /// Announces itself again `after` its announcement (then after twice as long, and so
    /// on, at most ten times) until the server has sent it anything, so that a lost `Hello` does not keep the
    /// client out of the run for good. Off by default: each repeat is a message on the
    /// client's link.
    pub fn with_rejoin(mut self, after: SimDuration) -> Self {
        self.rejoin = Some(after);
        self
    }

    /// Announcements sent (one, plus the repeats of [`Participant::with_rejoin`]).
    pub fn hellos_sent(&self) -> u64 {
        self.hellos_sent
    }

    /// Assignments refused because the device's memory could not hold them.
    pub fn refused(&self) -> u64 {
        self.refused
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
                // Which samples this client holds, in the order it samples from them.
                for (kind, indices) in [
                    ("labeled", &self.env.data.labeled),
                    ("unlabeled", &self.env.data.unlabeled),
                ] {
                    ctx.record(format!("{kind}_samples"), indices.len() as f64);
                    ctx.record(
                        format!("{kind}_fingerprint"),
                        ClientData::fingerprint(indices) as f64,
                    );
                }
                let hello = Capabilities {
                    trainable,
                    labeled: self.env.data.labeled.len() as u32,
                    unlabeled: self.env.data.unlabeled.len() as u32,
                };
                ctx.send(self.server, FlMessage::Hello(hello.clone()));
                self.hellos_sent += 1;
                if let Some(after) = self.rejoin {
                    self.hello = Some(hello);
                    ctx.set_timer(after, REJOIN_TAG);
                }
            }
            Event::Timer { tag: REJOIN_TAG } if !self.heard_from_server => {
                if let (Some(hello), Some(after)) = (&self.hello, self.rejoin) {
                    ctx.record("rejoin", ctx.now().as_secs_f64());
                    ctx.send(self.server, FlMessage::Hello(hello.clone()));
                    self.hellos_sent += 1;
                    self.rejoins += 1;
                    if self.rejoins < MAX_REJOINS {
                        let next = micros(after.as_micros().saturating_mul(2));
                        self.rejoin = Some(next);
                        ctx.set_timer(next, REJOIN_TAG);
                    }
                }
            }
            Event::Message {
                msg: FlMessage::Assign(assignment),
                ..
            } => {
                self.heard_from_server = true;
                let needed = self.strategy.memory_bytes(&self.env, &assignment);
                if ctx.device().is_some_and(|d| !d.fits(needed)) {
                    ctx.record("cannot_train", needed as f64);
                    self.refused += 1;
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
