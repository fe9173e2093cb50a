//! One SGD step of cross-entropy or distillation on a batch.

use crate::TrainError;
use crate::{BatchLoader, Result, Teacher};
use flotilla_data::StepSampler;
use flotilla_nn::{Mode, Network, Sgd, SgdConfig, Tensor, Weights, cross_entropy, distill_kl};
use ndarray::{Array2, ArrayView2, Axis};
use rand::Rng;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Where and how long a local training phase runs: `steps` SGD steps at learning rate
/// `lr` on batches of `batch_size` drawn from `indices` through `loader`, an epoch
/// reshuffled whenever the previous one is used up (the reference's
/// shuffle → batch → repeat pipeline). Batches are drawn step by step ([`StepSampler`]), so
/// a phase's memory does not grow with `steps`.
#[derive(Debug, Clone, Copy)]
pub struct LocalPhase<'a> {
    /// Reads (and augments) the batches.
    pub loader: &'a BatchLoader<'a>,
    /// The samples the phase trains on.
    pub indices: &'a [usize],
    /// SGD steps.
    pub steps: usize,
    /// Batch size (a client with fewer samples trains on all of them each step).
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f32,
}

impl LocalPhase<'_> {
    /// Runs `step` on every batch of the phase; returns the mean of its losses.
    fn mean_over_batches(
        &self,
        rng: &mut (impl Rng + Clone),
        mut step: impl FnMut(Tensor, Vec<u32>) -> Result<f32>,
    ) -> Result<f32> {
        let mut batches = StepSampler::new(self.indices, self.steps, self.batch_size, rng)?;
        let (mut total, mut taken) = (0.0f64, 0usize);
        while let Some(batch) = batches.next_batch() {
            let (x, y) = self.loader.load(batch, rng)?;
            total += f64::from(step(x, y)?);
            taken += 1;
        }
        Ok((total / taken.max(1) as f64) as f32)
    }
}

/// The distillation loss settings of one local phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distillation {
    /// Softmax temperature `T` (> 0); the loss is scaled by `T²`.
    pub temperature: f32,
    /// Weight of the distillation loss (the method's ramped `w(t)`).
    pub weight: f32,
}

/// A network, its optimiser state and a gradient buffer: everything one local training
/// run needs besides the weights, which are passed in so one trainer serves many clients.
#[derive(Debug)]
pub struct Trainer {
    net: Network,
    sgd: Sgd,
    grads: Vec<f32>,
    /// Sum and count of the gradient norms of the steps since the last
    /// [`Trainer::take_mean_gradient_norm`].
    norms: (f64, usize),
}

/// Idle trainers a thread keeps for its next jobs: at most this many.
const MAX_IDLE: usize = 4;

thread_local! {
    /// This thread's idle trainers, most recently returned last.
    static IDLE: RefCell<Vec<Trainer>> = const { RefCell::new(Vec::new()) };
}

/// A [`Trainer`] lent by [`Trainer::lend`]; it goes back to its thread's idle trainers when
/// dropped.
#[derive(Debug)]
pub struct LentTrainer(Option<Trainer>);

impl Deref for LentTrainer {
    type Target = Trainer;

    fn deref(&self) -> &Trainer {
        self.0.as_ref().expect("present until dropped")
    }
}

impl DerefMut for LentTrainer {
    fn deref_mut(&mut self) -> &mut Trainer {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for LentTrainer {
    fn drop(&mut self) {
        if let Some(trainer) = self.0.take() {
            // While the thread exits its idle trainers may be gone: then this one goes too.
            let _ = IDLE.try_with(|idle| {
                let mut idle = idle.borrow_mut();
                if idle.len() == MAX_IDLE {
                    idle.remove(0);
                }
                idle.push(trainer);
            });
        }
    }
}

impl Trainer {
    /// [`Trainer::new`], from this thread's idle trainers of the same network (spec, input
    /// shape, classes) and optimiser settings when there is one, reset to a new trainer's
    /// state (zero velocity, zero gradient, no norms): a client job then reuses the buffers a
    /// previous job on this thread faulted in (gradient, velocity, the layers' scratch)
    /// instead of allocating them again. `net` is dropped if an idle trainer is used.
    pub fn lend(net: Network, config: SgdConfig) -> Result<LentTrainer> {
        let same = |t: &Trainer| {
            t.net.spec() == net.spec()
                && t.net.input_shape() == net.input_shape()
                && t.net.classes() == net.classes()
                && *t.sgd.config() == config
        };
        let idle = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let found = idle.iter().rposition(same);
            found.map(|i| idle.remove(i))
        });
        let trainer = match idle {
            Some(mut trainer) => {
                trainer.sgd.reset();
                trainer.grads.fill(0.0);
                trainer.norms = (0.0, 0);
                trainer
            }
            None => Self::new(net, config)?,
        };
        Ok(LentTrainer(Some(trainer)))
    }

    /// A trainer for `net` with a fresh optimiser (weight decay on the network's kernels).
    pub fn new(net: Network, config: SgdConfig) -> Result<Self> {
        let sgd = Sgd::new(config, net.decay_mask())?;
        let grads = vec![0.0; net.param_len()];
        Ok(Self {
            net,
            sgd,
            grads,
            norms: (0.0, 0),
        })
    }

    /// The network (for evaluation or teacher passes between steps).
    pub fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    /// The mean L2 norm of the loss gradient (before weight decay and momentum) over the
    /// steps since the last call, or 0 if there were none; starts a new count.
    pub fn take_mean_gradient_norm(&mut self) -> f32 {
        let (sum, n) = std::mem::take(&mut self.norms);
        if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
    }

    /// Clears the optimiser's momentum: the next step starts from fresh state.
    pub fn reset_optimizer(&mut self) {
        self.sgd.reset();
    }

    /// One step of mean softmax cross-entropy on `(x, labels)` at learning rate `lr`;
    /// returns the batch loss before the step. Batch-norm statistics in `weights.state`
    /// are updated by the training-mode forward pass.
    pub fn cross_entropy_step(
        &mut self,
        weights: &mut Weights,
        x: Tensor,
        labels: &[u32],
        lr: f32,
    ) -> Result<f32> {
        let logits = self.forward_train(weights, x)?;
        let (loss, dlogits) = cross_entropy(&logits.view(), labels)?;
        self.apply(weights, dlogits, lr)?;
        Ok(loss)
    }

    /// One step of `weight · T² · KL(softmax(teacher/T) ‖ softmax(student/T))` on `x`, the
    /// gradient flowing into this trainer's network only; returns the unweighted batch KD
    /// loss before the step.
    pub fn distill_step(
        &mut self,
        weights: &mut Weights,
        x: Tensor,
        teacher_logits: &ArrayView2<'_, f32>,
        temperature: f32,
        weight: f32,
        lr: f32,
    ) -> Result<f32> {
        let logits = self.forward_train(weights, x)?;
        let (loss, mut dlogits) = distill_kl(&logits.view(), teacher_logits, temperature)?;
        dlogits *= weight;
        self.apply(weights, dlogits, lr)?;
        Ok(loss)
    }

    /// One step on the joint loss `CE(labeled) + weight · T² · KL(teacher ‖ student)` over
    /// one forward pass of the labeled and unlabeled samples stacked into a single batch
    /// (batch norm sees both); each term is its own batch mean. Returns the two unweighted
    /// losses before the step.
    #[allow(clippy::too_many_arguments)]
    pub fn joint_step(
        &mut self,
        weights: &mut Weights,
        labeled: (Tensor, &[u32]),
        unlabeled: Tensor,
        teacher_logits: &ArrayView2<'_, f32>,
        kd: Distillation,
        lr: f32,
    ) -> Result<(f32, f32)> {
        let n_labeled = labeled.0.shape()[0];
        let x = ndarray::concatenate(Axis(0), &[labeled.0.view(), unlabeled.view()])
            .map_err(|e| TrainError::Shape(e.to_string()))?;
        let logits = self.forward_train(weights, x)?;
        let (labeled_logits, unlabeled_logits) = logits.view().split_at(Axis(0), n_labeled);
        let (ce, dce) = cross_entropy(&labeled_logits, labeled.1)?;
        let (kl, mut dkl) = distill_kl(&unlabeled_logits, teacher_logits, kd.temperature)?;
        dkl *= kd.weight;
        let dlogits = ndarray::concatenate(Axis(0), &[dce.view(), dkl.view()])
            .map_err(|e| TrainError::Shape(e.to_string()))?;
        self.apply(weights, dlogits, lr)?;
        Ok((ce, kl))
    }

    /// `labeled.steps` joint steps (see [`Trainer::joint_step`]), batch `i` of `labeled`
    /// stacked with batch `i` of `unlabeled`, whose teacher logits come from `teacher`;
    /// the learning rate is `labeled.lr`. Returns the mean CE and mean KD loss.
    pub fn joint_steps(
        &mut self,
        weights: &mut Weights,
        teacher: &mut Teacher,
        kd: Distillation,
        labeled: &LocalPhase<'_>,
        unlabeled: &LocalPhase<'_>,
        rng: &mut (impl Rng + Clone),
    ) -> Result<(f32, f32)> {
        let steps = labeled.steps;
        let mut l_batches = StepSampler::new(labeled.indices, steps, labeled.batch_size, rng)?;
        let mut u_batches = StepSampler::new(unlabeled.indices, steps, unlabeled.batch_size, rng)?;
        let (mut ce_sum, mut kl_sum, mut taken) = (0.0f64, 0.0f64, 0usize);
        while let (Some(lb), Some(ub)) = (l_batches.next_batch(), u_batches.next_batch()) {
            let (xl, yl) = labeled.loader.load(lb, rng)?;
            let (xu, _) = unlabeled.loader.load(ub, rng)?;
            let soft = teacher.logits(xu.clone());
            let (ce, kl) = self.joint_step(weights, (xl, &yl), xu, &soft.view(), kd, labeled.lr)?;
            ce_sum += f64::from(ce);
            kl_sum += f64::from(kl);
            taken += 1;
        }
        let n = taken.max(1) as f64;
        Ok(((ce_sum / n) as f32, (kl_sum / n) as f32))
    }

    /// `phase.steps` cross-entropy steps (see [`LocalPhase`]); returns the mean batch loss.
    pub fn train_steps(
        &mut self,
        weights: &mut Weights,
        phase: &LocalPhase<'_>,
        rng: &mut (impl Rng + Clone),
    ) -> Result<f32> {
        phase.mean_over_batches(rng, |x, y| {
            self.cross_entropy_step(weights, x, &y, phase.lr)
        })
    }

    /// `phase.steps` distillation steps from `teacher` (see [`LocalPhase`]; labels are
    /// ignored, so `phase.indices` are typically a client's unlabeled samples), each
    /// `kd.weight · T² · KL(teacher ‖ student)` at temperature `kd.temperature`; returns the
    /// mean unweighted KD loss. Student and teacher see the same (augmented) batch.
    pub fn distill_steps(
        &mut self,
        weights: &mut Weights,
        teacher: &mut Teacher,
        kd: Distillation,
        phase: &LocalPhase<'_>,
        rng: &mut (impl Rng + Clone),
    ) -> Result<f32> {
        phase.mean_over_batches(rng, |x, _| {
            let soft = teacher.logits(x.clone());
            self.distill_step(
                weights,
                x,
                &soft.view(),
                kd.temperature,
                kd.weight,
                phase.lr,
            )
        })
    }

    fn forward_train(&mut self, weights: &mut Weights, x: Tensor) -> Result<Array2<f32>> {
        self.net.check_weights(weights)?;
        let params = weights.params.as_slice().expect("weights are contiguous");
        let state = weights
            .state
            .as_slice_mut()
            .expect("weights are contiguous");
        Ok(self.net.forward(x, params, state, Mode::Train))
    }

    fn apply(&mut self, weights: &mut Weights, dlogits: Array2<f32>, lr: f32) -> Result<()> {
        let params = weights
            .params
            .as_slice_mut()
            .expect("weights are contiguous");
        self.net.backward(dlogits, params, &mut self.grads);
        self.norms.0 += self.sgd.step(params, &self.grads, lr)?;
        self.norms.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TeacherMode, evaluate};
    use flotilla_data::{Dataset, ImageShape};
    use flotilla_nn::{ModelSpec, Shape, batch_from_flat};
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A linearly separable two-class problem in 4 dimensions.
    fn toy() -> Dataset {
        let n = 64;
        let x = Array2::from_shape_fn((n, 4), |(i, j)| {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            sign * (1.0 + j as f32 * 0.1) + ((i * 7 + j * 3) % 5) as f32 * 0.05
        });
        let y = (0..n).map(|i| (i % 2) as u32).collect();
        Dataset::new("toy", x, y, ImageShape::flat(4), 2).unwrap()
    }

    fn phase<'a>(
        loader: &'a BatchLoader<'a>,
        indices: &'a [usize],
        steps: usize,
    ) -> LocalPhase<'a> {
        LocalPhase {
            loader,
            indices,
            steps,
            batch_size: 16,
            lr: 0.1,
        }
    }

    fn trainer() -> (Trainer, Weights) {
        let net = ModelSpec::Mlp(vec![4, 8, 2])
            .build(Shape::flat(4), 2)
            .unwrap();
        let weights = net.init(&mut ChaCha8Rng::seed_from_u64(1));
        let sgd = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        };
        (Trainer::new(net, sgd).unwrap(), weights)
    }

    /// A trainer lent again after a run (velocity, gradient, norms and scratch all used)
    /// trains to the bits of a new one; one of another optimiser setting is not lent.
    #[test]
    fn a_lent_trainer_trains_as_a_new_one() {
        let data = toy();
        let loader = BatchLoader::new(&data, None);
        let all: Vec<usize> = (0..data.len()).collect();
        let run = |trainer: &mut Trainer| {
            let (_, mut weights) = self::trainer();
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            let loss = trainer
                .train_steps(&mut weights, &phase(&loader, &all, 9), &mut rng)
                .unwrap();
            let norm = trainer.take_mean_gradient_norm();
            let params: Vec<u32> = weights.params.iter().map(|v| v.to_bits()).collect();
            (params, loss.to_bits(), norm.to_bits())
        };
        let (mut fresh, _) = trainer();
        let expected = run(&mut fresh);
        let (net, config) = (fresh.net, *fresh.sgd.config());
        let first = {
            let mut lent = Trainer::lend(net, config).unwrap();
            assert_eq!(run(&mut lent), expected);
            lent.net.spec().to_owned()
        };
        let (again, _) = trainer();
        let mut lent = Trainer::lend(again.net, config).unwrap();
        assert!(lent.sgd.velocity().iter().all(|&v| v == 0.0));
        assert_eq!(run(&mut lent), expected, "reused after {first}");
        let (other, _) = trainer();
        let nesterov = SgdConfig {
            nesterov: true,
            ..config
        };
        let other = Trainer::lend(other.net, nesterov).unwrap();
        assert_eq!(*other.sgd.config(), nesterov);
    }

    #[test]
    fn cross_entropy_steps_fit_a_separable_problem() {
        let data = toy();
        let (mut trainer, mut weights) = trainer();
        let loader = BatchLoader::new(&data, None);
        let all: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let first = trainer
            .train_steps(&mut weights, &phase(&loader, &all, 5), &mut rng)
            .unwrap();
        let later = trainer
            .train_steps(&mut weights, &phase(&loader, &all, 50), &mut rng)
            .unwrap();
        assert!(later < first * 0.2, "loss {first} → {later}");
        let stats = evaluate(trainer.network(), &weights, &data, 10).unwrap();
        assert_eq!(stats.accuracy(), 1.0);
    }

    #[test]
    fn distillation_pulls_the_student_to_the_teacher() {
        let data = toy();
        let (mut trainer, mut weights) = trainer();
        let (x, _) = BatchLoader::new(&data, None)
            .load_plain(&[0, 1, 2, 3])
            .unwrap();
        let teacher = ndarray::arr2(&[[3.0f32, -3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, 3.0]]);
        let mut losses = Vec::new();
        for _ in 0..60 {
            let loss = trainer
                .distill_step(&mut weights, x.clone(), &teacher.view(), 3.0, 1.0, 0.1)
                .unwrap();
            losses.push(loss);
        }
        assert!(
            losses[59] < losses[0] * 0.1,
            "KD loss {} → {}",
            losses[0],
            losses[59]
        );
    }

    #[test]
    fn distill_steps_move_the_student_towards_a_frozen_teacher() {
        let data = toy();
        let (mut teacher_trainer, mut teacher_weights) = trainer();
        let loader = BatchLoader::new(&data, None);
        let all: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        teacher_trainer
            .train_steps(&mut teacher_weights, &phase(&loader, &all, 60), &mut rng)
            .unwrap();
        let frozen = teacher_weights.clone();
        let net = ModelSpec::Mlp(vec![4, 8, 2])
            .build(Shape::flat(4), 2)
            .unwrap();
        let mut teacher = Teacher::new(net, teacher_weights, TeacherMode::BatchStatistics).unwrap();
        let (mut student, mut weights) = trainer();
        let kd = Distillation {
            temperature: 3.0,
            weight: 1.0,
        };
        let mut run = |steps| {
            let phase = phase(&loader, &all, steps);
            student
                .distill_steps(&mut weights, &mut teacher, kd, &phase, &mut rng)
                .unwrap()
        };
        let (first, later) = (run(3), run(80));
        assert!(later < first * 0.5, "KD loss {first} → {later}");
        // The student learnt the task from soft targets alone (labels were never read).
        assert_eq!(
            evaluate(student.network(), &weights, &data, 16)
                .unwrap()
                .accuracy(),
            1.0
        );
        // The teacher did not change.
        assert_eq!(teacher.logits(loader.load_plain(&[0]).unwrap().0), {
            let net = ModelSpec::Mlp(vec![4, 8, 2])
                .build(Shape::flat(4), 2)
                .unwrap();
            Teacher::new(net, frozen, TeacherMode::BatchStatistics)
                .unwrap()
                .logits(loader.load_plain(&[0]).unwrap().0)
        });
    }

    #[test]
    fn zero_weight_distillation_changes_nothing_but_batch_statistics() {
        let data = toy();
        let (mut trainer, mut weights) = trainer();
        let before = weights.clone();
        let x = batch_from_flat(data.gather(&[0, 1]).0, Shape::flat(4)).unwrap();
        let teacher = ndarray::arr2(&[[1.0f32, 0.0], [0.0, 1.0]]);
        trainer
            .distill_step(&mut weights, x, &teacher.view(), 3.0, 0.0, 0.1)
            .unwrap();
        assert_eq!(weights.params, before.params);
    }

    #[test]
    fn a_joint_step_without_distillation_weight_is_a_cross_entropy_step() {
        let data = toy();
        let loader = BatchLoader::new(&data, None);
        let (xl, yl) = loader.load_plain(&[0, 1, 2, 3]).unwrap();
        let (xu, _) = loader.load_plain(&[4, 5, 6]).unwrap();
        let teacher = ndarray::Array2::from_elem((3, 2), 0.5f32);
        let (mut joint, mut w_joint) = trainer();
        let (mut plain, mut w_plain) = trainer();
        let kd = Distillation {
            temperature: 3.0,
            weight: 0.0,
        };
        let (ce, kl) = joint
            .joint_step(
                &mut w_joint,
                (xl.clone(), &yl),
                xu.clone(),
                &teacher.view(),
                kd,
                0.1,
            )
            .unwrap();
        let ce_plain = plain
            .cross_entropy_step(&mut w_plain, xl.clone(), &yl, 0.1)
            .unwrap();
        assert_eq!(ce, ce_plain);
        assert!(kl > 0.0);
        assert_eq!(w_joint, w_plain);
        // With weight, the distillation term moves the parameters further.
        let (mut weighted, mut w_weighted) = trainer();
        let kd = Distillation { weight: 1.0, ..kd };
        weighted
            .joint_step(&mut w_weighted, (xl, &yl), xu, &teacher.view(), kd, 0.1)
            .unwrap();
        assert_ne!(w_weighted.params, w_plain.params);
        assert!(weighted.take_mean_gradient_norm() > 0.0);
        assert_eq!(weighted.take_mean_gradient_norm(), 0.0);
    }

    #[test]
    fn mismatched_weights_are_an_error() {
        let data = toy();
        let (mut trainer, _) = trainer();
        let mut wrong = Weights {
            params: ndarray::Array1::zeros(3),
            state: ndarray::Array1::zeros(0),
        };
        let (x, y) = BatchLoader::new(&data, None).load_plain(&[0, 1]).unwrap();
        let err = trainer
            .cross_entropy_step(&mut wrong, x, &y, 0.1)
            .unwrap_err();
        assert!(err.to_string().contains("parameter vector"), "{err}");
    }
}
