//! One SGD step of cross-entropy or distillation on a batch.

use crate::{BatchLoader, Result};
use flotilla_data::sample_steps;
use flotilla_nn::{Mode, Network, Sgd, SgdConfig, Tensor, Weights, cross_entropy, distill_kl};
use ndarray::{Array2, ArrayView2};
use rand::Rng;

/// A network, its optimiser state and a gradient buffer: everything one local training
/// run needs besides the weights, which are passed in so one trainer serves many clients.
#[derive(Debug)]
pub struct Trainer {
    net: Network,
    sgd: Sgd,
    grads: Vec<f32>,
}

impl Trainer {
    /// A trainer for `net` with a fresh optimiser (weight decay on the network's kernels).
    pub fn new(net: Network, config: SgdConfig) -> Result<Self> {
        let sgd = Sgd::new(config, net.decay_mask())?;
        let grads = vec![0.0; net.param_len()];
        Ok(Self { net, sgd, grads })
    }

    /// The network (for evaluation or teacher passes between steps).
    pub fn network(&mut self) -> &mut Network {
        &mut self.net
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

    /// `steps` cross-entropy steps on batches of `batch_size` drawn from `indices` (an epoch
    /// reshuffled from `rng` whenever the previous one is used up), as local training does;
    /// returns the mean batch loss.
    #[allow(clippy::too_many_arguments)]
    pub fn train_steps(
        &mut self,
        weights: &mut Weights,
        loader: &BatchLoader<'_>,
        indices: &[usize],
        steps: usize,
        batch_size: usize,
        lr: f32,
        rng: &mut impl Rng,
    ) -> Result<f32> {
        let batches = sample_steps(indices, steps, batch_size, rng)?;
        let mut total = 0.0f64;
        for batch in &batches {
            let (x, y) = loader.load(batch, rng)?;
            total += f64::from(self.cross_entropy_step(weights, x, &y, lr)?);
        }
        Ok((total / batches.len().max(1) as f64) as f32)
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
        self.sgd.step(params, &self.grads, lr)?;
        Ok(())
    }
}
