//! On-device knowledge distillation (Lim et al., ECAI 2025): every sampled client trains
//! the auxiliary model `ws`; strong clients then train the target `wl` on their labeled
//! data and distil the freshly aggregated `ws` into it on their own unlabeled data.

use super::TwoModels;
use crate::{
    FlError, KdMode, KdPlan, LearningTask, ModelRole, Payload, Reply, Selection, ServerJob,
    ServerStrategy, Work, WorkOrder, average_replies, decode_state, encode_state,
};
use flotilla_nn::{LrSchedule, kd_weight};
use flotilla_sim::NodeId;
use flotilla_train::TeacherMode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The distillation settings of [`OnDeviceKd`], fixed for the run. An experiment's `[kd]`
/// TOML section deserializes into it; absent keys take the reference's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KdConfig {
    /// Phase structure on strong clients: `two_phase` (reference), `joint` or `kd_only`.
    pub mode: KdMode,
    /// Softmax temperature `T` (> 0).
    pub temperature: f32,
    /// Final KD weight `λ` (≥ 0; 0 turns distillation off).
    pub lambda: f32,
    /// Fraction of the rounds over which the weight ramps up to `λ` (`t_a`; reference
    /// 0.75).
    pub ramp: f64,
    /// Batch-norm mode of the teacher's forward pass: `batch_statistics` (reference) or
    /// `running_statistics`.
    pub teacher_bn: TeacherMode,
    /// Reset the optimiser between the CE and the KD phase.
    pub fresh_optimizer: bool,
    /// Unlabeled samples per strong client used to measure teacher and student accuracy
    /// (0: off).
    pub probe_samples: u32,
}

impl Default for KdConfig {
    fn default() -> Self {
        Self {
            mode: KdMode::TwoPhase,
            temperature: 3.0,
            lambda: 0.5,
            ramp: 0.75,
            teacher_bn: TeacherMode::BatchStatistics,
            fresh_optimizer: false,
            probe_samples: 128,
        }
    }
}

impl KdConfig {
    /// The KD weight `w(t)` at round (or version) `t` of `rounds`: ramped up to `λ` over
    /// the first `ramp · rounds`.
    pub fn weight_at(&self, t: u32, rounds: u32) -> f32 {
        let ramp_rounds = (self.ramp * f64::from(rounds)).round() as usize;
        kd_weight(t as usize, self.lambda, ramp_rounds)
    }

    /// The plan a strong client distils with at round (or version) `t` of `rounds`.
    pub fn plan(&self, t: u32, rounds: u32) -> KdPlan {
        KdPlan {
            mode: self.mode,
            temperature: self.temperature,
            weight: self.weight_at(t, rounds),
            teacher_bn: self.teacher_bn,
            fresh_optimizer: self.fresh_optimizer,
            probe_samples: self.probe_samples,
        }
    }
}

/// Settings of [`OnDeviceKd`].
#[derive(Debug, Clone, PartialEq)]
pub struct OnDeviceKdConfig {
    /// Clients sampled per round (from all clients able to train `ws`) in step 1.
    pub clients_per_round: usize,
    /// Strong clients sampled per round in step 2 (`None`: all, the reference).
    pub strong_per_round: Option<usize>,
    /// Sample-count-weighted averaging (`false`: unweighted, the reference).
    pub weighted: bool,
    /// Learning rate per round.
    pub schedule: LrSchedule,
    /// Distillation.
    pub kd: KdConfig,
    /// Rounds of the run (the weight's ramp is a fraction of them).
    pub rounds: u32,
}

/// The method: stage 0 is FedAvg of `ws` over sampled clients; stage 1 sends `wl` and the
/// new `ws` to the clients whose devices can train `wl`, which train and distil; the
/// server averages `wl`.
#[derive(Debug)]
pub struct OnDeviceKd {
    config: OnDeviceKdConfig,
    /// The checkpoint state: both global models.
    state: TwoModels,
}

impl OnDeviceKd {
    /// The strategy, starting from the task's initial weights of both models.
    pub fn new(task: &LearningTask, config: OnDeviceKdConfig) -> Result<Self, FlError> {
        Ok(Self {
            state: TwoModels::initial(task)?,
            config,
        })
    }

    /// The KD weight `w(t)` of `round`.
    pub fn kd_weight(&self, round: u32) -> f32 {
        self.config.kd.weight_at(round, self.config.rounds)
    }
}

impl ServerStrategy for OnDeviceKd {
    type Work = Work;

    fn assign(
        &mut self,
        round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Work>)>> {
        let fleet = selection.fleet();
        let lr = self.config.schedule.lr_at(round as usize);
        let (pool, k, models, work) = match stage {
            0 => (
                fleet.capable(ModelRole::Auxiliary),
                Some(self.config.clients_per_round),
                vec![Payload::shared(ModelRole::Auxiliary, &self.state.auxiliary)],
                Work::Train {
                    model: ModelRole::Auxiliary,
                },
            ),
            1 => {
                let plan = self.config.kd.plan(round, self.config.rounds);
                (
                    fleet.capable(ModelRole::Target),
                    self.config.strong_per_round,
                    self.global_models(),
                    Work::Distill {
                        student: ModelRole::Target,
                        teacher: ModelRole::Auxiliary,
                        plan,
                    },
                )
            }
            _ => return None,
        };
        let chosen = selection.sample(&pool, k);
        let assignment = WorkOrder { lr, models, work };
        Some(assignment.for_each(&chosen))
    }

    fn aggregate(
        &mut self,
        _round: u32,
        stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        let role = if stage == 0 {
            ModelRole::Auxiliary
        } else {
            ModelRole::Target
        };
        if let Some(mean) = average_replies(replies, role, self.config.weighted) {
            *self.state.get_mut(role) = Arc::new(mean);
        }
        Ok(None)
    }

    /// The target, then the auxiliary model (what stage 1 sends a strong client).
    fn global_models(&self) -> Vec<Payload> {
        self.state.payloads()
    }

    /// Both global models.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        encode_state("on-device KD", &self.state)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let state: TwoModels = decode_state("on-device KD", state)?;
        self.state.check("on-device KD", &state)?;
        self.state = state;
        Ok(())
    }
}
