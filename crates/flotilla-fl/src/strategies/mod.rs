//! The built-in strategies. Each server half is a [`ServerStrategy`](crate::ServerStrategy)
//! speaking [`Work`]; [`LocalWorker`] is the client half of all of them.

mod fedavg;
mod local;
mod ondevice_kd;
mod server_ensemble;

pub use fedavg::{FedAvg, FedAvgConfig};
pub use local::{KdMode, KdPlan, LocalWorker, Work};
pub use ondevice_kd::{KdConfig, OnDeviceKd, OnDeviceKdConfig};
pub use server_ensemble::{ServerDistillation, ServerEnsembleConfig, ServerLogitEnsemble};

use crate::checkpoint::check_weights;
use crate::{FlError, LearningTask, ModelRole, Payload};
use flotilla_nn::Weights;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The global target and auxiliary models of a two-model strategy ([`OnDeviceKd`],
/// [`ServerLogitEnsemble`]): all or part of its checkpoint state. Each is shared with the
/// payloads that carry it (a round's orders and evaluations hold it without a copy).
#[derive(Debug, Serialize, Deserialize)]
struct TwoModels {
    target: Arc<Weights>,
    auxiliary: Arc<Weights>,
}

impl TwoModels {
    /// The task's initial weights of both models.
    fn initial(task: &LearningTask) -> Result<Self, FlError> {
        Ok(Self {
            target: Arc::new(task.initial_weights(ModelRole::Target)?),
            auxiliary: Arc::new(task.initial_weights(ModelRole::Auxiliary)?),
        })
    }

    /// The global model of `role`.
    fn get(&self, role: ModelRole) -> &Arc<Weights> {
        match role {
            ModelRole::Target => &self.target,
            ModelRole::Auxiliary => &self.auxiliary,
        }
    }

    /// The global model of `role`, to replace.
    fn get_mut(&mut self, role: ModelRole) -> &mut Arc<Weights> {
        match role {
            ModelRole::Target => &mut self.target,
            ModelRole::Auxiliary => &mut self.auxiliary,
        }
    }

    /// The target, then the auxiliary model.
    fn payloads(&self) -> Vec<Payload> {
        vec![
            Payload::shared(ModelRole::Target, &self.target),
            Payload::shared(ModelRole::Auxiliary, &self.auxiliary),
        ]
    }

    /// Checks that `restored` models (of `strategy`'s state) have these models' lengths.
    fn check(&self, strategy: &str, restored: &TwoModels) -> Result<(), FlError> {
        for role in [ModelRole::Target, ModelRole::Auxiliary] {
            let what = format!("{strategy}'s global {role} model");
            check_weights(&what, self.get(role), restored.get(role))?;
        }
        Ok(())
    }
}
