//! FedAvg of one model over the clients able to train it: `fedavg`, `weak_only`,
//! `strong_only` and `fedavg_all_large` are this strategy with different settings.

use crate::{
    FlError, LearningTask, ModelRole, Payload, Reply, Selection, ServerJob, ServerStrategy, Work,
    WorkOrder, average_replies,
};
use flotilla_nn::{LrSchedule, Weights};
use flotilla_sim::NodeId;
use std::collections::BTreeMap;

/// Settings of [`FedAvg`].
#[derive(Debug, Clone, PartialEq)]
pub struct FedAvgConfig {
    /// The model trained.
    pub model: ModelRole,
    /// Clients sampled per round among those whose devices can train the model (`None`:
    /// all of them every round).
    pub clients_per_round: Option<usize>,
    /// Weight updates by sample count (`true`) or equally (`false`, the reference).
    pub weighted: bool,
    /// Learning rate per round.
    pub schedule: LrSchedule,
}

/// FedAvg: each round, sampled capable clients train the global model on their labeled
/// data and the server averages the results.
#[derive(Debug)]
pub struct FedAvg {
    config: FedAvgConfig,
    global: Weights,
}

impl FedAvg {
    /// The strategy, starting from the task's initial weights of the model.
    pub fn new(task: &LearningTask, config: FedAvgConfig) -> Result<Self, FlError> {
        let global = task.initial_weights(config.model)?;
        Ok(Self { config, global })
    }

    /// The current global model.
    pub fn global(&self) -> &Weights {
        &self.global
    }
}

impl ServerStrategy for FedAvg {
    type Work = Work;

    fn assign(
        &mut self,
        round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Work>)>> {
        if stage > 0 {
            return None;
        }
        let model = self.config.model;
        let pool = selection.fleet().capable(model);
        let chosen = selection.sample(&pool, self.config.clients_per_round);
        let assignment = WorkOrder {
            lr: self.config.schedule.lr_at(round as usize),
            models: vec![Payload::of(model, &self.global)],
            work: Work::Train { model },
        };
        Some(assignment.for_each(&chosen))
    }

    fn aggregate(
        &mut self,
        _round: u32,
        _stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        if let Some(global) = average_replies(replies, self.config.model, self.config.weighted) {
            self.global = global;
        }
        Ok(None)
    }

    fn global_models(&self) -> Vec<Payload> {
        vec![Payload::of(self.config.model, &self.global)]
    }
}
