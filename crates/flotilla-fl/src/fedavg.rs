//! FedAvg: the server samples clients, they train, the server averages.
//!
//! ```text
//!   server ── Train(round, global) ──► sampled clients ── job: H local SGD steps ──┐
//!     ▲                                                                             │
//!     └──────────────── Update(round, weights, samples) ◄───────────────────────────┘
//!   all sampled answered, or the round timer fired → average → evaluate → next round
//! ```

use crate::{ClientUpdate, Evaluation, FlMessage, LearningTask, TrainTask, average_weights};
use flotilla_nn::{LrSchedule, Weights};
use flotilla_sim::{Context, Event, Node, NodeError, NodeId, SimDuration};
use rand::seq::IndexedRandom;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Server-side settings of FedAvg.
#[derive(Debug, Clone, PartialEq)]
pub struct FedAvgConfig {
    /// Rounds to run.
    pub rounds: u32,
    /// Clients sampled per round (uniformly, without replacement).
    pub clients_per_round: usize,
    /// Learning rate per round.
    pub schedule: LrSchedule,
    /// Close a round this long after it started even if some clients have not answered;
    /// `None` waits for every sampled client (a dropped-out client then stalls the run).
    pub round_timeout: Option<SimDuration>,
    /// Weight updates by sample count (`true`) or equally (`false`, the reference).
    pub weighted: bool,
}

/// What happened in one round, as the server saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundSummary {
    /// Round, from 0.
    pub round: u32,
    /// Clients sampled.
    pub sampled: Vec<NodeId>,
    /// Clients whose update made it into the average, in arrival order.
    pub arrived: Vec<NodeId>,
    /// Virtual time the round closed \[s\].
    pub closed_at_s: f64,
    /// Test accuracy of the new global model, once evaluated.
    pub accuracy: Option<f64>,
}

/// The FedAvg server node.
#[derive(Debug)]
pub struct FedAvgServer {
    task: Arc<LearningTask>,
    config: FedAvgConfig,
    clients: Vec<NodeId>,
    global: Weights,
    round: u32,
    updates: BTreeMap<NodeId, ClientUpdate>,
    history: Vec<RoundSummary>,
}

impl FedAvgServer {
    /// A server over `clients`, starting from `initial` weights.
    pub fn new(
        task: Arc<LearningTask>,
        config: FedAvgConfig,
        clients: Vec<NodeId>,
        initial: Weights,
    ) -> Self {
        Self {
            task,
            config,
            clients,
            global: initial,
            round: 0,
            updates: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// The current global model.
    pub fn global(&self) -> &Weights {
        &self.global
    }

    /// One summary per closed round.
    pub fn history(&self) -> &[RoundSummary] {
        &self.history
    }

    fn open_round(&mut self, ctx: &mut Context<'_, FlMessage>) {
        let k = self.config.clients_per_round.min(self.clients.len());
        let mut sampled: Vec<NodeId> = self
            .clients
            .choose_multiple(ctx.rng(), k)
            .copied()
            .collect();
        sampled.sort();
        let lr = self.config.schedule.lr_at(self.round as usize);
        for &c in &sampled {
            let task = TrainTask {
                round: self.round,
                weights: self.global.clone(),
                lr,
            };
            ctx.send(c, FlMessage::Train(task));
        }
        if let Some(timeout) = self.config.round_timeout {
            ctx.set_timer(timeout, u64::from(self.round));
        }
        self.history.push(RoundSummary {
            round: self.round,
            sampled,
            arrived: Vec::new(),
            closed_at_s: f64::NAN,
            accuracy: None,
        });
    }

    fn close_round(&mut self, ctx: &mut Context<'_, FlMessage>) {
        let weighted = self.config.weighted;
        // BTreeMap order: client id, whatever the arrival order.
        let average = average_weights(self.updates.values().map(|u| {
            (
                if weighted { f64::from(u.samples) } else { 1.0 },
                &u.weights,
            )
        }));
        ctx.record("round_updates", self.updates.len() as f64);
        if let Some(global) = average {
            self.global = global;
        }
        self.updates.clear();
        if let Some(summary) = self.history.last_mut() {
            summary.closed_at_s = ctx.now().as_secs_f64();
        }
        let (task, weights, round) = (self.task.clone(), self.global.clone(), self.round);
        ctx.spawn_job(task.evaluation_flops(), move || {
            let (accuracy, loss) = task
                .evaluate(&weights)
                .map_err(|e| NodeError::new(e.to_string()))?;
            Ok(FlMessage::Evaluated(Evaluation {
                round,
                accuracy,
                loss,
            }))
        });
        self.round += 1;
        if self.round < self.config.rounds {
            self.open_round(ctx);
        }
    }

    fn round_open(&self) -> bool {
        self.history
            .last()
            .is_some_and(|s| s.round == self.round && s.closed_at_s.is_nan())
    }
}

impl Node<FlMessage> for FedAvgServer {
    fn on_event(
        &mut self,
        event: Event<FlMessage>,
        ctx: &mut Context<'_, FlMessage>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Start if self.config.rounds > 0 => self.open_round(ctx),
            Event::Message {
                from,
                msg: FlMessage::Update(update),
            } => {
                let expected = self.round_open()
                    && update.round == self.round
                    && self
                        .history
                        .last()
                        .is_some_and(|s| s.sampled.contains(&from));
                if !expected {
                    ctx.record("stale_update", f64::from(update.round));
                    return Ok(());
                }
                self.updates.insert(from, update);
                if let Some(summary) = self.history.last_mut() {
                    summary.arrived.push(from);
                    if summary.arrived.len() == summary.sampled.len() {
                        self.close_round(ctx);
                    }
                }
            }
            Event::Timer { tag } if tag == u64::from(self.round) && self.round_open() => {
                self.close_round(ctx);
            }
            Event::JobDone {
                output: FlMessage::Evaluated(e),
                ..
            } => {
                ctx.record("test_accuracy", e.accuracy);
                ctx.record("test_loss", e.loss);
                if let Some(summary) = self.history.get_mut(e.round as usize) {
                    summary.accuracy = Some(e.accuracy);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The FedAvg client node: trains the received model on its own samples in a job whose
/// declared work is the task's training FLOPs, then answers the server. A device whose
/// memory cannot hold the training run records `cannot_train` and stays silent.
#[derive(Debug)]
pub struct FedAvgClient {
    task: Arc<LearningTask>,
    indices: Arc<[usize]>,
    server: NodeId,
}

impl FedAvgClient {
    /// A client holding `indices` into the task's training set.
    pub fn new(task: Arc<LearningTask>, indices: Vec<usize>, server: NodeId) -> Self {
        Self {
            task,
            indices: indices.into(),
            server,
        }
    }
}

impl Node<FlMessage> for FedAvgClient {
    fn on_event(
        &mut self,
        event: Event<FlMessage>,
        ctx: &mut Context<'_, FlMessage>,
    ) -> Result<(), NodeError> {
        match event {
            Event::Message {
                msg: FlMessage::Train(t),
                ..
            } => {
                let needed = self.task.training_memory_bytes();
                if ctx.device().is_some_and(|d| !d.fits(needed)) {
                    // The model does not fit this device: it cannot take part.
                    ctx.record("cannot_train", needed as f64);
                    return Ok(());
                }
                let (task, indices, node) = (self.task.clone(), self.indices.clone(), ctx.id());
                ctx.spawn_job(task.training_flops(), move || {
                    let (weights, loss) = task
                        .train_local(node, t.round, t.weights, &indices, t.lr)
                        .map_err(|e| NodeError::new(e.to_string()))?;
                    let samples = indices.len() as u32;
                    Ok(FlMessage::Update(ClientUpdate {
                        round: t.round,
                        weights,
                        samples,
                        loss,
                    }))
                });
            }
            Event::JobDone { output, .. } => ctx.send(self.server, output),
            _ => {}
        }
        Ok(())
    }
}
