//! Compute jobs that run in another process: a client's training and a global model's
//! evaluation, as bytes a transport can carry and a worker can run.
//!
//! A job's virtual completion time is fixed when it is started, from its declared FLOPs,
//! so where it computes changes wall time only. A task with an [`Offload`] (see
//! [`LearningTask::set_offload`]) hands these two kinds of job to it instead of computing
//! them on the simulation's own threads; the worker at the other end rebuilds the task from
//! the same configuration and seed and calls [`run_offloaded`], which runs the very code the
//! local path runs, so the output is the same bits. Server-side jobs (a strategy's
//! [`ServerJob`](crate::ServerJob)) are closures over the strategy's state and stay local.

use crate::{
    Assignment, AssignmentId, ClientData, ClientEnv, ClientStrategy, Evaluation, FlError,
    FlMessage, LearningTask, ModelRole, Payload,
};
use flotilla_nn::Weights;
use flotilla_sim::NodeId;
use flotilla_sim::wire;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What an offloaded job computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffloadKind {
    /// A client carries out an assignment ([`ClientStrategy::execute`]).
    Train,
    /// A global model is evaluated on the test set ([`LearningTask::evaluate`]).
    Evaluate,
}

/// A compute job as bytes: its kind, the task it belongs to (by seed), a small header, and
/// large parts — model weights, a client's sample indices — that a transport may send once
/// and refer to by content afterwards (the weights of a version reach each worker once, not
/// once per job).
#[derive(Debug, Clone)]
pub struct OffloadJob {
    /// What it computes.
    pub kind: OffloadKind,
    /// The seed of the task it runs on ([`LearningTask::seed`]).
    pub seed: u64,
    /// What it is, for people: e.g. `training of node 12 (round 3, stage 1)`.
    pub label: String,
    /// The small remainder of its inputs (encoded).
    pub header: Vec<u8>,
    /// Its large inputs (encoded), in the order the header expects them.
    pub parts: Vec<Arc<[u8]>>,
}

/// Computes [`OffloadJob`]s away from the simulation, e.g. on MPI ranks. Called from job
/// threads, possibly several at once; blocks until the job's output comes back.
pub trait Offload: Send + Sync + fmt::Debug {
    /// Runs `job` and returns the bytes [`run_offloaded`] produced for it.
    ///
    /// # Errors
    /// The job's own failure, or the transport's (a worker lost, a malformed reply).
    fn compute(&self, job: OffloadJob) -> Result<Vec<u8>, FlError>;

    /// How many jobs it can compute at once: the simulation keeps that many in flight
    /// (plus one thread for the jobs that stay local).
    fn parallelism(&self) -> usize;
}

/// The header of a training job: the assignment without its weights.
#[derive(Serialize, Deserialize)]
struct TrainHeader<W> {
    node: NodeId,
    id: AssignmentId,
    lr: f32,
    roles: Vec<ModelRole>,
    work: W,
}

/// The header of an evaluation job: what the evaluation reports besides its figures.
#[derive(Serialize, Deserialize)]
struct EvaluateHeader {
    round: u32,
    role: ModelRole,
    virtual_time_s: f64,
}

/// A client's sample indices as they travel.
#[derive(Serialize, Deserialize)]
struct DataIndices {
    labeled: Vec<u64>,
    unlabeled: Vec<u64>,
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, FlError> {
    wire::encode(value).map_err(|e| FlError::Offload(format!("could not encode {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FlError> {
    wire::decode(bytes).map_err(|e| FlError::Offload(format!("malformed {what}: {e}")))
}

fn weights_part(weights: &Weights) -> Result<Arc<[u8]>, FlError> {
    encode("model weights", weights).map(Arc::from)
}

/// The job of `env`'s client carrying out `assignment`.
pub fn train_job<W: Serialize>(
    env: &ClientEnv,
    assignment: &Assignment<W>,
) -> Result<OffloadJob, FlError> {
    let header = TrainHeader {
        node: env.node,
        id: assignment.id,
        lr: assignment.lr,
        roles: assignment.models.iter().map(|p| p.role).collect(),
        work: &assignment.work,
    };
    let as_u64 = |s: &[usize]| s.iter().map(|&i| i as u64).collect();
    let data = DataIndices {
        labeled: as_u64(&env.data.labeled),
        unlabeled: as_u64(&env.data.unlabeled),
    };
    let mut parts = vec![Arc::from(encode("sample indices", &data)?)];
    for p in &assignment.models {
        parts.push(weights_part(&p.weights)?);
    }
    Ok(OffloadJob {
        kind: OffloadKind::Train,
        seed: env.task.seed.0,
        label: format!(
            "training of node {} (round {}, stage {}, seed {})",
            env.node.0, assignment.id.round, assignment.id.stage, env.task.seed.0
        ),
        header: encode("an assignment", &header)?,
        parts,
    })
}

/// The job evaluating `weights` of `role` after `round` (closed at `virtual_time_s`).
pub fn evaluate_job(
    task: &LearningTask,
    round: u32,
    role: ModelRole,
    virtual_time_s: f64,
    weights: &Weights,
) -> Result<OffloadJob, FlError> {
    let header = EvaluateHeader {
        round,
        role,
        virtual_time_s,
    };
    Ok(OffloadJob {
        kind: OffloadKind::Evaluate,
        seed: task.seed.0,
        label: format!(
            "evaluation of the {role} model after round {round} (seed {})",
            task.seed.0
        ),
        header: encode("an evaluation", &header)?,
        parts: vec![weights_part(weights)?],
    })
}

/// Evaluates `weights` of `role` after `round`: the job's result, wherever it runs.
pub(crate) fn evaluate(
    task: &LearningTask,
    round: u32,
    role: ModelRole,
    virtual_time_s: f64,
    weights: &Weights,
) -> Result<Evaluation, FlError> {
    let (accuracy, loss) = task.evaluate(role, weights)?;
    Ok(Evaluation {
        round,
        role,
        virtual_time_s,
        accuracy,
        loss,
    })
}

/// Runs an offloaded job on `task` (rebuilt by the worker with the job's seed) with
/// `strategy`, the clients' strategy: what a worker calls. Returns the encoded result the
/// local path would have produced: the [`FlMessage`] of a training job, the [`Evaluation`]
/// of an evaluation.
///
/// # Errors
/// A malformed header or part, a job of another task, or the job's own failure.
pub fn run_offloaded<C: ClientStrategy>(
    strategy: &C,
    task: &Arc<LearningTask>,
    kind: OffloadKind,
    header: &[u8],
    parts: &[&[u8]],
) -> Result<Vec<u8>, FlError> {
    match kind {
        OffloadKind::Train => {
            let header: TrainHeader<C::Work> = decode("training header", header)?;
            let [data, weights @ ..] = parts else {
                return Err(FlError::Offload("a training job without its data".into()));
            };
            if weights.len() != header.roles.len() {
                return Err(FlError::Offload(format!(
                    "a training job with {} models and {} weight parts",
                    header.roles.len(),
                    weights.len()
                )));
            }
            let data: DataIndices = decode("sample indices", data)?;
            let to_usize = |v: Vec<u64>| -> Result<Arc<[usize]>, FlError> {
                v.into_iter()
                    .map(|i| {
                        usize::try_from(i)
                            .ok()
                            .filter(|&i| i < task.train.len())
                            .ok_or_else(|| {
                                FlError::Offload(format!(
                                    "sample index {i} is outside the {} training samples",
                                    task.train.len()
                                ))
                            })
                    })
                    .collect()
            };
            let env = ClientEnv {
                node: header.node,
                task: task.clone(),
                data: ClientData {
                    labeled: to_usize(data.labeled)?,
                    unlabeled: to_usize(data.unlabeled)?,
                },
            };
            let models = header
                .roles
                .iter()
                .zip(weights)
                .map(|(&role, bytes)| Ok(Payload::new(role, decode("model weights", bytes)?)))
                .collect::<Result<Vec<_>, FlError>>()?;
            let assignment = Assignment {
                id: header.id,
                lr: header.lr,
                models,
                work: header.work,
            };
            let reply: FlMessage<C::Work> = FlMessage::Reply(strategy.execute(&env, assignment)?);
            encode("a job output", &reply)
        }
        OffloadKind::Evaluate => {
            let header: EvaluateHeader = decode("evaluation header", header)?;
            let [weights] = parts else {
                return Err(FlError::Offload(format!(
                    "an evaluation job with {} parts, not 1",
                    parts.len()
                )));
            };
            let weights: Weights = decode("model weights", weights)?;
            let evaluation = evaluate(
                task,
                header.round,
                header.role,
                header.virtual_time_s,
                &weights,
            )?;
            encode("an evaluation", &evaluation)
        }
    }
}

/// Runs `job` on `offload` and decodes its result (a [`FlMessage`] of a training job, an
/// [`Evaluation`] of an evaluation).
pub(crate) fn compute<T: DeserializeOwned>(
    offload: &dyn Offload,
    job: OffloadJob,
) -> Result<T, FlError> {
    let bytes = offload.compute(job)?;
    decode("job output", &bytes)
}
