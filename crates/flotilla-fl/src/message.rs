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

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_sim::wire;
    use ndarray::Array1;
    use proptest::prelude::*;

    fn weights() -> impl Strategy<Value = Weights> {
        (
            proptest::collection::vec(-1e3f32..1e3, 0..40),
            proptest::collection::vec(-1e3f32..1e3, 0..8),
        )
            .prop_map(|(p, s)| Weights {
                params: Array1::from(p),
                state: Array1::from(s),
            })
    }

    fn messages() -> impl Strategy<Value = FlMessage> {
        prop_oneof![
            (any::<u32>(), weights(), 0.0f32..1.0).prop_map(|(round, weights, lr)| {
                FlMessage::Train(TrainTask { round, weights, lr })
            }),
            (any::<u32>(), weights(), any::<u32>(), 0.0f32..10.0).prop_map(
                |(round, weights, samples, loss)| {
                    FlMessage::Update(ClientUpdate {
                        round,
                        weights,
                        samples,
                        loss,
                    })
                }
            ),
            (any::<u32>(), 0.0f64..1.0, 0.0f64..10.0).prop_map(|(round, accuracy, loss)| {
                FlMessage::Evaluated(Evaluation {
                    round,
                    accuracy,
                    loss,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips_through_the_wire(msg in messages()) {
            let bytes = wire::encode(&msg).unwrap();
            prop_assert_eq!(wire::decode::<FlMessage>(&bytes).unwrap(), msg);
        }

        #[test]
        fn truncated_messages_are_errors(msg in messages()) {
            let bytes = wire::encode(&msg).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(wire::decode::<FlMessage>(&bytes[..cut]).is_err());
            }
        }
    }
}
