//! What federated participants say to each other (and what their jobs return).
//!
//! The protocol is generic over `W`, the strategy's description of a client's work, so a
//! strategy pair defined outside this crate speaks it without changing it.

use crate::ModelRole;
use flotilla_nn::Weights;
use flotilla_sim::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Every message of a federated run, plus the outputs of compute jobs (which come back to
/// the node that started them, never over the network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlMessage<W> {
    /// Client → server, once at start: what this device can train and what data it holds.
    Hello(Capabilities),
    /// Server → client: carry out this work.
    Assign(Assignment<W>),
    /// Client → server: the result of an assignment (also the client's job output).
    Reply(Reply),
    /// A server-side computation finished (job output).
    ServerWork(ServerWorkDone),
    /// An evaluation of a global model finished (job output).
    Evaluated(Evaluation),
}

/// A client's announcement: derived from its own device profile and data, so the server
/// learns which clients are strong from them, never from a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The models whose training run fits in the device's memory.
    pub trainable: Vec<ModelRole>,
    /// Labeled samples held.
    pub labeled: u32,
    /// Unlabeled samples held.
    pub unlabeled: u32,
}

/// A model travelling with a message.
///
/// The weights are shared, read-only: the orders of one round, one per client, hold one
/// copy of the global model between them (cloning a payload clones a pointer). On the wire
/// a payload is its weights' bytes, whatever holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Which model.
    pub role: ModelRole,
    /// Its weights.
    pub weights: Arc<Weights>,
}

impl Payload {
    /// A payload of `weights` as model `role`.
    pub fn new(role: ModelRole, weights: Weights) -> Self {
        Self {
            role,
            weights: Arc::new(weights),
        }
    }

    /// A payload of a copy of `weights` as model `role`.
    pub fn of(role: ModelRole, weights: &Weights) -> Self {
        Self::new(role, weights.clone())
    }

    /// A payload sharing `weights` as model `role` (no copy: a strategy that keeps its
    /// global model behind an `Arc` hands out that model itself).
    pub fn shared(role: ModelRole, weights: &Arc<Weights>) -> Self {
        Self {
            role,
            weights: Arc::clone(weights),
        }
    }
}

/// Which assignment (and the reply to it) this is: the global model version the work
/// starts from, the stage of the round that asked for it and how many times that stage was
/// asked of this client before. Unique per client over a run, so it names the job's own
/// random stream ([`AssignmentId::stream_index`]) and lets the coordinator tell a late reply from
/// a current one.
///
/// On the wire it is two integers, `round` and `stage | attempt << 16`: a first attempt
/// encodes exactly as the unversioned protocol's `(round, stage)` did, so existing
/// configurations keep their message sizes, timings and results.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(from = "(u32, u32)", into = "(u32, u32)")]
pub struct AssignmentId {
    /// The version of the global models the work starts from: the round under synchronous
    /// policies, the number of server updates so far under asynchronous ones.
    pub round: u32,
    /// The stage of the round (asynchronous: 0, or under on-device KD one more for each
    /// step of the auxiliary model within the version).
    pub stage: u16,
    /// How many times this client was given this round's stage before (retries).
    pub attempt: u16,
}

impl AssignmentId {
    /// The index of the job's random stream among its client's `TRAINING` sub-streams:
    /// distinct for distinct jobs of one client.
    pub fn stream_index(self) -> u64 {
        let (round, packed) = <(u32, u32)>::from(self);
        (u64::from(round) << 32) | u64::from(packed)
    }
}

impl From<AssignmentId> for (u32, u32) {
    fn from(job: AssignmentId) -> Self {
        (
            job.round,
            u32::from(job.stage) | (u32::from(job.attempt) << 16),
        )
    }
}

impl From<(u32, u32)> for AssignmentId {
    fn from((round, packed): (u32, u32)) -> Self {
        Self {
            round,
            stage: (packed & 0xffff) as u16,
            attempt: (packed >> 16) as u16,
        }
    }
}

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {} stage {}", self.round, self.stage)?;
        if self.attempt > 0 {
            write!(f, " attempt {}", self.attempt)?;
        }
        Ok(())
    }
}

/// Work the server hands to one client: a [`WorkOrder`] stamped with its [`AssignmentId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment<W> {
    /// Which assignment this is (the coordinator stamps it).
    pub id: AssignmentId,
    /// Learning rate for this round.
    pub lr: f32,
    /// The global models the work starts from.
    pub models: Vec<Payload>,
    /// What to do with them (the strategy's own vocabulary).
    pub work: W,
}

impl<W> Assignment<W> {
    /// `order` stamped as assignment `id`.
    pub fn new(id: AssignmentId, order: WorkOrder<W>) -> Self {
        Self {
            id,
            lr: order.lr,
            models: order.models,
            work: order.work,
        }
    }
}

/// What a server strategy asks of a client: everything in an [`Assignment`] but its
/// [`AssignmentId`], which the coordinator stamps when it sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrder<W> {
    /// Learning rate.
    pub lr: f32,
    /// The global models the work starts from.
    pub models: Vec<Payload>,
    /// What to do with them (the strategy's own vocabulary).
    pub work: W,
}

impl<W: Clone> WorkOrder<W> {
    /// The same order for each of `clients`, in their order.
    pub fn for_each(self, clients: &[NodeId]) -> Vec<(NodeId, WorkOrder<W>)> {
        clients.iter().map(|&c| (c, self.clone())).collect()
    }
}

/// A client's answer to an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The assignment answered (its [`Assignment::id`]).
    pub assignment: AssignmentId,
    /// The locally trained models.
    pub models: Vec<Payload>,
    /// Samples the training used (the weight of sample-count-weighted averaging).
    pub samples: u32,
    /// Named measurements of the local work (losses, gradient norms, probe accuracies).
    pub stats: BTreeMap<String, f64>,
}

impl Reply {
    /// The trained model of `role`, if the reply carries one.
    pub fn model(&self, role: ModelRole) -> Option<&Payload> {
        self.models.iter().find(|p| p.role == role)
    }
}

/// The result of a server-side computation (e.g. server distillation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerWorkDone {
    /// The round it belongs to.
    pub round: u32,
    /// The stage it closed.
    pub stage: u32,
    /// Models it produced.
    pub models: Vec<Payload>,
    /// Named measurements of the computation.
    pub stats: BTreeMap<String, f64>,
}

/// Test-set performance of a global model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The round after which the model was evaluated.
    pub round: u32,
    /// Which model.
    pub role: ModelRole,
    /// Virtual time at which the round closed \[s\].
    pub virtual_time_s: f64,
    /// Test accuracy in [0, 1].
    pub accuracy: f64,
    /// Mean test loss.
    pub loss: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Work;
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

    fn role() -> impl Strategy<Value = ModelRole> {
        prop_oneof![Just(ModelRole::Target), Just(ModelRole::Auxiliary)]
    }

    fn payloads() -> impl Strategy<Value = Vec<Payload>> {
        proptest::collection::vec(
            (role(), weights()).prop_map(|(role, weights)| Payload::new(role, weights)),
            0..3,
        )
    }

    fn stats() -> impl Strategy<Value = BTreeMap<String, f64>> {
        proptest::collection::btree_map("[a-z_]{1,12}", -1e6f64..1e6, 0..4)
    }

    fn jobs() -> impl Strategy<Value = AssignmentId> {
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(round, stage, attempt)| {
            AssignmentId {
                round,
                stage,
                attempt,
            }
        })
    }

    fn messages() -> impl Strategy<Value = FlMessage<Work>> {
        prop_oneof![
            (
                proptest::collection::vec(role(), 0..3),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(trainable, labeled, unlabeled)| FlMessage::Hello(
                    Capabilities {
                        trainable,
                        labeled,
                        unlabeled
                    }
                )),
            (jobs(), 0.0f32..1.0, payloads(), role()).prop_map(|(id, lr, models, model)| {
                FlMessage::Assign(Assignment {
                    id,
                    lr,
                    models,
                    work: Work::Train { model },
                })
            }),
            (jobs(), payloads(), any::<u32>(), stats()).prop_map(
                |(assignment, models, samples, stats)| FlMessage::Reply(Reply {
                    assignment,
                    models,
                    samples,
                    stats
                })
            ),
            (any::<u32>(), role(), 0.0f64..1e6, 0.0f64..1.0, 0.0f64..10.0).prop_map(
                |(round, role, virtual_time_s, accuracy, loss)| {
                    FlMessage::Evaluated(Evaluation {
                        round,
                        role,
                        virtual_time_s,
                        accuracy,
                        loss,
                    })
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips_through_the_wire(msg in messages()) {
            let bytes = wire::encode(&msg).unwrap();
            prop_assert_eq!(wire::decode::<FlMessage<Work>>(&bytes).unwrap(), msg);
        }

        #[test]
        fn a_first_attempt_encodes_as_the_unversioned_round_and_stage(round in any::<u32>(), stage in any::<u16>()) {
            let job = AssignmentId { round, stage, attempt: 0 };
            prop_assert_eq!(
                wire::encode(&job).unwrap(),
                wire::encode(&(round, u32::from(stage))).unwrap()
            );
        }

        #[test]
        fn distinct_jobs_have_distinct_streams(a in jobs(), b in jobs()) {
            prop_assert_eq!(a == b, a.stream_index() == b.stream_index());
        }

        #[test]
        fn truncated_messages_are_errors(msg in messages()) {
            let bytes = wire::encode(&msg).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(wire::decode::<FlMessage<Work>>(&bytes[..cut]).is_err());
            }
        }
    }
}
