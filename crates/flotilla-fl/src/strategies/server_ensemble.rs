//! Server-side logit-ensemble distillation (FedDF-style), the baseline that centralises
//! unlabeled data: clients train their models on labeled data, the server averages each
//! architecture, then distils the ensemble of every received client model into `wl` on
//! the unlabeled data moved to the server.

use super::TwoModels;
use crate::checkpoint::check_weights;
use crate::{
    FlError, LearningTask, ModelRole, Payload, Reply, Selection, ServerJob, ServerStrategy,
    ServerWorkDone, Work, WorkOrder, average_replies, decode_state, encode_state,
};
use flotilla_nn::{LossStats, LrSchedule, Weights};
use flotilla_sim::NodeId;
use flotilla_train::{Teacher, TeacherMode, Trainer};
use ndarray::{Array2, Axis};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The server's distillation in [`ServerLogitEnsemble`]. An experiment's
/// `[server_ensemble]` TOML section deserializes into it; absent keys take these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerDistillation {
    /// Server distillation steps per round (100).
    pub steps: usize,
    /// Server distillation batch size (64).
    pub batch_size: usize,
    /// Fixed server learning rate (absent: the round's client rate).
    pub lr: Option<f32>,
    /// Softmax temperature of the ensemble and the student (absent:
    /// [`ServerEnsembleConfig::kd_temperature`]).
    pub temperature: Option<f32>,
}

impl Default for ServerDistillation {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 64,
            lr: None,
            temperature: None,
        }
    }
}

/// Settings of [`ServerLogitEnsemble`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEnsembleConfig {
    /// Clients sampled per round to train `ws`.
    pub clients_per_round: usize,
    /// Strong clients sampled per round to train `wl` (`None`: all).
    pub strong_per_round: Option<usize>,
    /// Sample-count-weighted averaging.
    pub weighted: bool,
    /// Learning rate per round (clients, and the server's distillation unless its `lr` is
    /// set).
    pub schedule: LrSchedule,
    /// The server's distillation.
    pub distillation: ServerDistillation,
    /// The temperature when the distillation gives none: the on-device method's
    /// (`KdConfig::temperature`), so both distil at the same `T` unless told otherwise.
    pub kd_temperature: f32,
}

/// The FedDF-style baseline. Stage 0: sampled clients train `ws`; stage 1: strong clients
/// train `wl`; then a server job distils the averaged softmax of all received models into
/// the averaged `wl`.
#[derive(Debug)]
pub struct ServerLogitEnsemble {
    config: ServerEnsembleConfig,
    task: Arc<LearningTask>,
    centralised: Arc<[usize]>,
    state: EnsembleState,
}

/// What [`ServerLogitEnsemble`] changes while running: its checkpoint state.
#[derive(Debug, Serialize, Deserialize)]
struct EnsembleState {
    /// Both global models.
    models: TwoModels,
    /// The client models of the current round, kept from its first aggregate until its
    /// distillation job takes them.
    members: Vec<Payload>,
}

impl ServerLogitEnsemble {
    /// The strategy, distilling on `centralised`: the training-set indices of the
    /// unlabeled data moved off the devices.
    pub fn new(
        task: Arc<LearningTask>,
        config: ServerEnsembleConfig,
        centralised: Arc<[usize]>,
    ) -> Result<Self, FlError> {
        Ok(Self {
            state: EnsembleState {
                models: TwoModels::initial(&task)?,
                members: Vec::new(),
            },
            config,
            task,
            centralised,
        })
    }

    fn distillation_job(&mut self, round: u32, stage: u32) -> Result<Option<ServerJob>, FlError> {
        if self.state.members.is_empty()
            || self.centralised.is_empty()
            || self.config.distillation.steps == 0
        {
            return Ok(None);
        }
        let task = self.task.clone();
        let c = &self.config;
        let overflow = || FlError::FlopOverflow(format!("round {round}'s server distillation"));
        let d = &c.distillation;
        let samples = d.steps.checked_mul(d.batch_size).ok_or_else(overflow)?;
        let mut flops = task.step_flops(ModelRole::Target, d.steps, d.batch_size)?;
        for m in &self.state.members {
            let passes = task.inference_flops(m.role, samples)?;
            flops = flops.checked_add(passes).ok_or_else(overflow)?;
        }
        let members = std::mem::take(&mut self.state.members);
        let student = Weights::clone(&self.state.models.target);
        let indices = self.centralised.clone();
        let (steps, batch) = (d.steps, d.batch_size);
        let temperature = d.temperature.unwrap_or(c.kd_temperature);
        let lr = d.lr.unwrap_or_else(|| c.schedule.lr_at(round as usize));
        let run = move |rng: &mut ChaCha8Rng| {
            let mut teachers = Vec::with_capacity(members.len());
            for m in members {
                teachers.push(Teacher::new(
                    task.network(m.role)?,
                    Arc::unwrap_or_clone(m.weights),
                    TeacherMode::RunningStatistics,
                )?);
            }
            let mut weights = student;
            let mut trainer = Trainer::new(task.network(ModelRole::Target)?, task.local.sgd)?;
            let loader = task.loader();
            let mut batches = flotilla_data::StepSampler::new(&indices, steps, batch, rng)
                .map_err(flotilla_train::TrainError::from)?;
            let (mut kd_sum, mut taken, mut ensemble) = (0.0f64, 0usize, LossStats::default());
            while let Some(b) = batches.next_batch() {
                let (x, y) = loader.load(b, rng)?;
                let soft = ensemble_logits(&mut teachers, &x, temperature);
                ensemble.add_batch(&soft.view(), &y)?;
                let loss =
                    trainer.distill_step(&mut weights, x, &soft.view(), temperature, 1.0, lr)?;
                kd_sum += f64::from(loss);
                taken += 1;
            }
            let mut stats = BTreeMap::new();
            stats.insert("server_kd_loss".to_string(), kd_sum / taken.max(1) as f64);
            stats.insert(
                "server_kd_grad_norm".to_string(),
                f64::from(trainer.take_mean_gradient_norm()),
            );
            stats.insert(
                "ensemble_accuracy_on_centralised".to_string(),
                ensemble.accuracy(),
            );
            stats.insert("ensemble_members".to_string(), teachers.len() as f64);
            Ok(ServerWorkDone {
                round,
                stage,
                models: vec![Payload::new(ModelRole::Target, weights)],
                stats,
            })
        };
        Ok(Some(ServerJob {
            flops,
            run: Box::new(run),
        }))
    }
}

/// Logits whose softmax at temperature `t` is the mean over `teachers` of their softmax
/// at `t`: `t · ln(mean_m softmax(z_m / t))`.
fn ensemble_logits(teachers: &mut [Teacher], x: &flotilla_nn::Tensor, t: f32) -> Array2<f32> {
    let mut mean: Option<Array2<f64>> = None;
    for teacher in teachers.iter_mut() {
        let z = teacher.logits(x.clone());
        let mut p = z.mapv(|v| f64::from(v / t));
        for mut row in p.axis_iter_mut(Axis(0)) {
            let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row.mapv_inplace(|v| v / sum);
        }
        match &mut mean {
            Some(m) => *m += &p,
            None => mean = Some(p),
        }
    }
    let n = teachers.len().max(1) as f64;
    mean.map_or_else(
        || Array2::zeros((0, 0)),
        |m| m.mapv(|p| (f64::from(t) * (p / n).max(1e-30).ln()) as f32),
    )
}

impl ServerStrategy for ServerLogitEnsemble {
    type Work = Work;

    fn assign(
        &mut self,
        round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Work>)>> {
        let fleet = selection.fleet();
        let (role, pool, k) = match stage {
            0 => (
                ModelRole::Auxiliary,
                fleet.capable(ModelRole::Auxiliary),
                Some(self.config.clients_per_round),
            ),
            1 => (
                ModelRole::Target,
                fleet.capable(ModelRole::Target),
                self.config.strong_per_round,
            ),
            _ => return None,
        };
        let assignment = WorkOrder {
            lr: self.config.schedule.lr_at(round as usize),
            models: vec![Payload::shared(role, self.state.models.get(role))],
            work: Work::Train { model: role },
        };
        Some(assignment.for_each(&selection.sample(&pool, k)))
    }

    fn aggregate(
        &mut self,
        round: u32,
        stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        let role = if stage == 0 {
            ModelRole::Auxiliary
        } else {
            ModelRole::Target
        };
        let state = &mut self.state;
        if stage == 0 {
            state.members.clear();
        }
        state
            .members
            .extend(replies.values().filter_map(|r| r.model(role).cloned()));
        if let Some(mean) = average_replies(replies, role, self.config.weighted) {
            *state.models.get_mut(role) = Arc::new(mean);
        }
        if stage == 1 {
            self.distillation_job(round, stage)
        } else {
            Ok(None)
        }
    }

    fn server_work_done(&mut self, done: ServerWorkDone) -> Result<(), FlError> {
        let distilled = done
            .models
            .into_iter()
            .find(|p| p.role == ModelRole::Target)
            .ok_or_else(|| FlError::Protocol("server distillation returned no target".into()))?;
        self.state.models.target = distilled.weights;
        Ok(())
    }

    fn global_models(&self) -> Vec<Payload> {
        self.state.models.payloads()
    }

    fn centralised_samples(&self) -> u64 {
        self.centralised.len() as u64
    }

    /// Both global models and the round's ensemble members not yet distilled.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        encode_state(ENSEMBLE, &self.state)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let state: EnsembleState = decode_state(ENSEMBLE, state)?;
        let models = &self.state.models;
        models.check(ENSEMBLE, &state.models)?;
        for (i, m) in state.members.iter().enumerate() {
            let what = format!("{ENSEMBLE}'s ensemble member {i} ({})", m.role);
            check_weights(&what, models.get(m.role), &m.weights)?;
        }
        self.state = state;
        Ok(())
    }
}

/// How checkpoint errors name [`ServerLogitEnsemble`].
const ENSEMBLE: &str = "the server logit ensemble";
