//! FedAvg of one model over the clients able to train it: `fedavg`, `weak_only`,
//! `strong_only` and `fedavg_all_large` are this strategy with different settings.

use crate::checkpoint::check_weights;
use crate::{
    FlError, LearningTask, ModelRole, Payload, Reply, Selection, ServerJob, ServerStrategy, Work,
    WorkOrder, average_replies, decode_state, encode_state,
};
use flotilla_nn::{LrSchedule, Weights};
use flotilla_sim::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    state: FedAvgState,
}

/// What [`FedAvg`] changes while running: its checkpoint state.
#[derive(Debug, Serialize, Deserialize)]
struct FedAvgState {
    /// The global model, shared with the payloads that carry it (a round's orders and
    /// evaluations hold it without a copy).
    global: Arc<Weights>,
}

impl FedAvg {
    /// The strategy, starting from the task's initial weights of the model.
    pub fn new(task: &LearningTask, config: FedAvgConfig) -> Result<Self, FlError> {
        let global = Arc::new(task.initial_weights(config.model)?);
        Ok(Self {
            config,
            state: FedAvgState { global },
        })
    }

    /// The current global model.
    pub fn global(&self) -> &Weights {
        &self.state.global
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
            models: vec![Payload::shared(model, &self.state.global)],
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
            self.state.global = Arc::new(global);
        }
        Ok(None)
    }

    fn global_models(&self) -> Vec<Payload> {
        vec![Payload::shared(self.config.model, &self.state.global)]
    }

    /// The global model.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        encode_state("FedAvg", &self.state)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let state: FedAvgState = decode_state("FedAvg", state)?;
        let what = format!("FedAvg's global {} model", self.config.model);
        check_weights(&what, &self.state.global, &state.global)?;
        self.state = state;
        Ok(())
    }
}
