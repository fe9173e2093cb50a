//! Checkpoint states of the federated nodes and strategies.
//!
//! Every node and built-in strategy keeps what it changes while running in one
//! serializable state struct, apart from what it was built with (configuration, task,
//! client strategy, data, observer). Saving encodes that struct; restoring decodes one
//! onto a node or strategy freshly built from the same configuration, checks it against
//! what that one was built with, and replaces the struct whole. States are encoded like
//! messages ([`flotilla_sim::wire`]: bincode, the same size limit, and decoding that never
//! panics on malformed bytes).

use crate::{FlError, LearningTask, Payload};
use flotilla_nn::Weights;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes the state `state` of `what` (a node or strategy, named in errors).
pub fn encode_state<T: Serialize>(what: &str, state: &T) -> Result<Vec<u8>, FlError> {
    flotilla_sim::wire::encode(state)
        .map_err(|e| FlError::Checkpoint(format!("could not save the state of {what}: {e}")))
}

/// Decodes a state of `what` written by [`encode_state`]; malformed bytes give an error
/// naming `what` and the offset at fault.
pub fn decode_state<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FlError> {
    flotilla_sim::wire::decode(bytes)
        .map_err(|e| FlError::Checkpoint(format!("malformed state of {what}: {e}")))
}

/// Checks that restored weights `restored` of `what` have the lengths of `fresh`, the
/// weights of the same model on the freshly built node.
pub(crate) fn check_weights(
    what: &str,
    fresh: &Weights,
    restored: &Weights,
) -> Result<(), FlError> {
    if fresh.params.len() != restored.params.len() || fresh.state.len() != restored.state.len() {
        return Err(FlError::Checkpoint(format!(
            "{what}: the state holds {} parameters and {} state values, the model has {} and {}",
            restored.params.len(),
            restored.state.len(),
            fresh.params.len(),
            fresh.state.len()
        )));
    }
    Ok(())
}

/// Checks that every model of `models` is one of `task`'s, with its lengths.
pub(crate) fn check_payloads(
    what: &str,
    task: &LearningTask,
    models: &[Payload],
) -> Result<(), FlError> {
    for p in models {
        let net = task.network(p.role).map_err(|_| {
            FlError::Checkpoint(format!(
                "{what}: a {} model, which the task has not",
                p.role
            ))
        })?;
        let (params, state) = (net.param_len(), net.state_len());
        if p.weights.params.len() != params || p.weights.state.len() != state {
            return Err(FlError::Checkpoint(format!(
                "{what}: the {} model holds {} parameters and {} state values, the task's has \
                 {params} and {state}",
                p.role,
                p.weights.params.len(),
                p.weights.state.len(),
            )));
        }
    }
    Ok(())
}

/// The error of a strategy or logic that does not support checkpoints.
pub(crate) fn unsupported<T: ?Sized>() -> FlError {
    FlError::CheckpointUnsupported(std::any::type_name::<T>())
}
