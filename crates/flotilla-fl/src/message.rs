//! What federated participants say to each other (and what their jobs return).

use flotilla_nn::Weights;
use serde::{Deserialize, Serialize};

/// Every message of a federated run, plus the outputs of compute jobs (which come back to
/// the node that started them, never over the network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlMessage {
    /// Server → client: train the global model.
    Train(TrainTask),
    /// Client → server: the locally trained model (also the client's job output).
    Update(ClientUpdate),
    /// The server's evaluation job output.
    Evaluated(Evaluation),
}

/// A round's training request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainTask {
    /// Round, from 0.
    pub round: u32,
    /// The global model to start from.
    pub weights: Weights,
    /// Learning rate for this round.
    pub lr: f32,
}

/// A client's answer to a [`TrainTask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientUpdate {
    /// The round trained for.
    pub round: u32,
    /// The locally trained model.
    pub weights: Weights,
    /// Local labeled samples (the FedAvg weight).
    pub samples: u32,
    /// Mean training loss over the local steps.
    pub loss: f32,
}

/// Test-set performance of a global model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The round whose aggregate was evaluated.
    pub round: u32,
    /// Test accuracy in [0, 1].
    pub accuracy: f64,
    /// Mean test loss.
    pub loss: f64,
}
