//! The built-in client half: local cross-entropy training and on-device distillation.

use crate::{Assignment, ClientEnv, ClientStrategy, FlError, ModelRole, Payload, Reply};
use flotilla_nn::{LossStats, Weights};
use flotilla_train::{Distillation, LocalPhase, Teacher, TeacherMode, Trainer};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The work vocabulary of the built-in strategies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Work {
    /// `H` steps of cross-entropy on the client's labeled data; the assignment carries the
    /// model.
    Train {
        /// The model to train.
        model: ModelRole,
    },
    /// On-device distillation: the assignment carries the student (trained) and the
    /// teacher (frozen); see [`KdPlan`].
    Distill {
        /// The model trained.
        student: ModelRole,
        /// The model whose soft targets are distilled.
        teacher: ModelRole,
        /// How.
        plan: KdPlan,
    },
    /// A strong client's job in asynchronous on-device KD: `H` steps of cross-entropy on
    /// `trained` (the auxiliary model, as every client trains it), then the distillation of
    /// [`Work::Distill`] into `student` with the *received* global `trained` model as the
    /// teacher (the newest global one the client holds). The reply carries both models;
    /// the first phase's statistics are prefixed with its role (`auxiliary_ce_loss`).
    TrainThenDistill {
        /// The model trained with cross-entropy and used (as received) as the teacher.
        trained: ModelRole,
        /// The model distilled into.
        student: ModelRole,
        /// How.
        plan: KdPlan,
    },
}

/// How a strong client trains its student in [`Work::Distill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KdMode {
    /// `H` steps of cross-entropy on labeled data, then `H` steps of distillation on
    /// unlabeled data (the reference).
    #[default]
    TwoPhase,
    /// `H` steps of `CE + w·KD`, each on a labeled and an unlabeled batch stacked into one.
    Joint,
    /// Only the `H` distillation steps.
    KdOnly,
}

/// The distillation settings of one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KdPlan {
    /// Phase structure.
    pub mode: KdMode,
    /// Softmax temperature `T` (> 0); the KD loss is scaled by `T²`.
    pub temperature: f32,
    /// KD weight `w(t)` this round.
    pub weight: f32,
    /// Batch-norm mode of the teacher's forward pass.
    pub teacher_bn: TeacherMode,
    /// Reset the optimiser's momentum between the CE and the KD phase (`false`: one
    /// optimiser carries through both, as in the reference).
    pub fresh_optimizer: bool,
    /// Unlabeled samples (evenly strided over those the client holds) on which to measure
    /// teacher and student accuracy before and after distillation; 0 turns the probe off.
    /// The labels are read only for these measurements, never for training.
    pub probe_samples: u32,
}

/// The built-in client strategy: carries out [`Work`] with the task's local-training
/// settings. Each assignment draws only from its own stream ([`ClientEnv::job_rng`]), so
/// results do not depend on which thread runs the job.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalWorker;

fn payload(assignment: &Assignment<Work>, role: ModelRole) -> Result<Weights, FlError> {
    assignment
        .models
        .iter()
        .find(|p| p.role == role)
        .map(|p| Weights::clone(&p.weights))
        .ok_or_else(|| FlError::Protocol(format!("assignment carries no {role} model")))
}

/// The probe's samples: `n` of the client's unlabeled samples at an even stride. A client's
/// samples are in dataset order, which some datasets sort by class (CIFAR-10 image
/// folders), so a prefix could hold a single class; a stride takes every class in
/// proportion, and draws no randomness (training streams stay untouched).
fn probe_indices(unlabeled: &[usize], n: u32) -> Vec<usize> {
    let (len, n) = (unlabeled.len(), probe_size(unlabeled.len(), n));
    (0..n).map(|i| unlabeled[i * len / n]).collect()
}

/// How many samples the probe holds when the client has `unlabeled` of them.
fn probe_size(unlabeled: usize, n: u32) -> usize {
    (n as usize).min(unlabeled)
}

fn accuracy(logits: &ndarray::Array2<f32>, labels: &[u32]) -> Result<f64, FlError> {
    let mut stats = LossStats::default();
    stats.add_batch(&logits.view(), labels)?;
    Ok(stats.accuracy())
}

/// `‖after − before‖ / ‖before‖` of two state vectors (0 for stateless models).
fn relative_shift(before: &[f32], after: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&b, &a) in before.iter().zip(after) {
        diff += f64::from(a - b).powi(2);
        norm += f64::from(b).powi(2);
    }
    if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        0.0
    }
}

impl LocalWorker {
    fn train(
        env: &ClientEnv,
        a: &Assignment<Work>,
        model: ModelRole,
        rng: &mut ChaCha8Rng,
    ) -> Result<Reply, FlError> {
        let task = &env.task;
        let mut stats = BTreeMap::new();
        let mut models = Vec::new();
        if !env.data.labeled.is_empty() {
            let mut weights = payload(a, model)?;
            let mut trainer = Trainer::lend(task.network(model)?, task.local.sgd)?;
            let loader = task.loader();
            let phase = LocalPhase {
                loader: &loader,
                indices: &env.data.labeled,
                steps: task.local.steps,
                batch_size: task.local.batch_size,
                lr: a.lr,
            };
            let loss = trainer.train_steps(&mut weights, &phase, rng)?;
            stats.insert("ce_loss".to_string(), f64::from(loss));
            stats.insert(
                "ce_grad_norm".to_string(),
                f64::from(trainer.take_mean_gradient_norm()),
            );
            models.push(Payload::new(model, weights));
        }
        Ok(Reply {
            assignment: a.id,
            models,
            samples: env.data.labeled.len() as u32,
            stats,
        })
    }

    fn distill(
        env: &ClientEnv,
        a: &Assignment<Work>,
        (student, teacher_role): (ModelRole, ModelRole),
        plan: &KdPlan,
        rng: &mut ChaCha8Rng,
    ) -> Result<Reply, FlError> {
        let task = &env.task;
        let (labeled, unlabeled) = (&env.data.labeled, &env.data.unlabeled);
        let mut weights = payload(a, student)?;
        let mut trainer = Trainer::lend(task.network(student)?, task.local.sgd)?;
        let loader = task.loader();
        let phase = |indices| LocalPhase {
            loader: &loader,
            indices,
            steps: task.local.steps,
            batch_size: task.local.batch_size,
            lr: a.lr,
        };
        let mut stats = BTreeMap::new();
        let mut put = |name: &str, value: f64| {
            stats.insert(name.to_string(), value);
        };
        let two_phase_ce =
            plan.mode == KdMode::TwoPhase || (plan.mode == KdMode::Joint && unlabeled.is_empty());
        if two_phase_ce && !labeled.is_empty() {
            let loss = trainer.train_steps(&mut weights, &phase(labeled), rng)?;
            put("ce_loss", f64::from(loss));
            put("ce_grad_norm", f64::from(trainer.take_mean_gradient_norm()));
        }
        if !unlabeled.is_empty() {
            let teacher_weights = payload(a, teacher_role)?;
            let mut teacher = Teacher::new(
                task.network(teacher_role)?,
                teacher_weights.clone(),
                plan.teacher_bn,
            )?;
            let probe = probe_indices(&env.data.unlabeled, plan.probe_samples);
            let probe_batch = if probe.is_empty() {
                None
            } else {
                Some(loader.load_plain(&probe)?)
            };
            if let Some((x, y)) = &probe_batch {
                for (mode, name) in [
                    (
                        TeacherMode::BatchStatistics,
                        "teacher_probe_accuracy_batch_bn",
                    ),
                    (
                        TeacherMode::RunningStatistics,
                        "teacher_probe_accuracy_running_bn",
                    ),
                ] {
                    // The distillation teacher serves its own mode (its logits never change
                    // it); the other mode needs a second network.
                    let logits = if mode == plan.teacher_bn {
                        teacher.logits(x.clone())
                    } else {
                        Teacher::new(task.network(teacher_role)?, teacher_weights.clone(), mode)?
                            .logits(x.clone())
                    };
                    put(name, accuracy(&logits, y)?);
                }
                let logits = trainer.network().predict(x.clone(), &weights);
                put("student_probe_accuracy_before_kd", accuracy(&logits, y)?);
            }
            let state_before = weights.state.to_vec();
            if plan.fresh_optimizer {
                trainer.reset_optimizer();
            }
            let kd = Distillation {
                temperature: plan.temperature,
                weight: plan.weight,
            };
            if plan.mode == KdMode::Joint && !labeled.is_empty() {
                let (ce, kl) = trainer.joint_steps(
                    &mut weights,
                    &mut teacher,
                    kd,
                    &phase(labeled),
                    &phase(unlabeled),
                    rng,
                )?;
                put("ce_loss", f64::from(ce));
                put("kd_loss", f64::from(kl));
                put(
                    "joint_grad_norm",
                    f64::from(trainer.take_mean_gradient_norm()),
                );
            } else {
                let kl = trainer.distill_steps(
                    &mut weights,
                    &mut teacher,
                    kd,
                    &phase(unlabeled),
                    rng,
                )?;
                put("kd_loss", f64::from(kl));
                put("kd_grad_norm", f64::from(trainer.take_mean_gradient_norm()));
            }
            put("kd_weight", f64::from(plan.weight));
            put(
                "student_bn_state_shift_in_kd",
                relative_shift(&state_before, weights.state.as_slice().unwrap_or(&[])),
            );
            if let Some((x, y)) = &probe_batch {
                let logits = trainer.network().predict(x.clone(), &weights);
                put("student_probe_accuracy_after_kd", accuracy(&logits, y)?);
            }
        }
        Ok(Reply {
            assignment: a.id,
            models: vec![Payload::new(student, weights)],
            samples: labeled.len() as u32,
            stats,
        })
    }
}

impl ClientStrategy for LocalWorker {
    type Work = Work;

    fn flops(&self, env: &ClientEnv, a: &Assignment<Work>) -> Result<u64, FlError> {
        let task = &env.task;
        let h = task.local.steps;
        let labeled = !env.data.labeled.is_empty();
        match &a.work {
            Work::Train { model } if labeled => task.training_flops(*model, h),
            Work::Train { .. } => Ok(0),
            Work::Distill {
                student,
                teacher,
                plan,
            } => {
                let unlabeled = !env.data.unlabeled.is_empty();
                let overflow =
                    || FlError::FlopOverflow(format!("{}'s distillation ({h} steps)", a.id));
                let kd_samples = h.checked_mul(task.local.batch_size).ok_or_else(overflow)?;
                let (ce_steps, kd_steps, teacher_samples) = match plan.mode {
                    _ if !unlabeled => (if labeled { h } else { 0 }, 0, 0),
                    KdMode::TwoPhase => (if labeled { h } else { 0 }, h, kd_samples),
                    KdMode::KdOnly => (0, h, kd_samples),
                    // A joint step is a forward and backward pass over two batches.
                    KdMode::Joint if labeled => (h, h, kd_samples),
                    KdMode::Joint => (0, h, kd_samples),
                };
                // The probe holds at most a u32's worth of samples: doubling it fits.
                let probe = if unlabeled {
                    2 * probe_size(env.data.unlabeled.len(), plan.probe_samples)
                } else {
                    0
                };
                let steps = ce_steps.checked_add(kd_steps).ok_or_else(overflow)?;
                let teacher_passes = teacher_samples.checked_add(probe).ok_or_else(overflow)?;
                [
                    task.training_flops(*student, steps)?,
                    task.inference_flops(*teacher, teacher_passes)?,
                    task.inference_flops(*student, probe)?,
                ]
                .into_iter()
                .try_fold(0u64, u64::checked_add)
                .ok_or_else(overflow)
            }
            Work::TrainThenDistill {
                trained,
                student,
                plan,
            } => {
                let phase = |work| {
                    self.flops(
                        env,
                        &Assignment {
                            id: a.id,
                            lr: a.lr,
                            models: Vec::new(),
                            work,
                        },
                    )
                };
                let train = phase(Work::Train { model: *trained })?;
                let distill = phase(Work::Distill {
                    student: *student,
                    teacher: *trained,
                    plan: *plan,
                })?;
                train
                    .checked_add(distill)
                    .ok_or_else(|| FlError::FlopOverflow(format!("{}'s work", a.id)))
            }
        }
    }

    fn execute(&self, env: &ClientEnv, a: Assignment<Work>) -> Result<Reply, FlError> {
        let mut rng = env.job_rng(a.id);
        match &a.work {
            Work::Train { model } => Self::train(env, &a, *model, &mut rng),
            Work::Distill {
                student,
                teacher,
                plan,
            } => Self::distill(env, &a, (*student, *teacher), plan, &mut rng),
            Work::TrainThenDistill {
                trained,
                student,
                plan,
            } => {
                let first = Self::train(env, &a, *trained, &mut rng)?;
                let mut reply = Self::distill(env, &a, (*student, *trained), plan, &mut rng)?;
                reply.models.splice(0..0, first.models);
                reply.stats.extend(
                    first
                        .stats
                        .into_iter()
                        .map(|(name, value)| (format!("{trained}_{name}"), value)),
                );
                Ok(reply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::probe_indices;

    #[test]
    fn the_probe_spans_the_unlabeled_set_evenly() {
        // Sorted by class, as a client's samples are when the dataset is: ten of each.
        let unlabeled: Vec<usize> = (0..100).collect();
        let probe = probe_indices(&unlabeled, 10);
        let classes: Vec<usize> = probe.iter().map(|i| i / 10).collect();
        assert_eq!(classes, (0..10).collect::<Vec<_>>());
        assert_eq!(probe_indices(&unlabeled, 500), unlabeled);
        assert!(probe_indices(&[], 8).is_empty());
        assert!(probe_indices(&unlabeled, 0).is_empty());
    }
}
