//! A frozen teacher for on-device distillation.

use crate::Result;
use flotilla_nn::{Mode, Network, Tensor, Weights};
use ndarray::Array2;

/// How the teacher's batch-norm layers normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherMode {
    /// Batch statistics of the distillation batch, as the reference implementation runs its
    /// teacher (Keras `training=True`); the teacher's running statistics never change.
    #[default]
    BatchStatistics,
    /// The teacher's running statistics (evaluation mode).
    RunningStatistics,
}

/// A network with fixed weights whose logits serve as soft targets. It never learns: its
/// parameters and running statistics are the same after any number of calls.
#[derive(Debug)]
pub struct Teacher {
    net: Network,
    weights: Weights,
    mode: TeacherMode,
    scratch_state: Vec<f32>,
}

impl Teacher {
    /// A teacher of architecture `net` with `weights`.
    pub fn new(net: Network, weights: Weights, mode: TeacherMode) -> Result<Self> {
        net.check_weights(&weights)?;
        let scratch_state = weights.state.to_vec();
        Ok(Self {
            net,
            weights,
            mode,
            scratch_state,
        })
    }

    /// The teacher's logits for a batch.
    pub fn logits(&mut self, x: Tensor) -> Array2<f32> {
        match self.mode {
            TeacherMode::RunningStatistics => self.net.predict(x, &self.weights),
            TeacherMode::BatchStatistics => {
                // Train-mode batch norm updates running statistics: let it, on a scratch copy.
                self.scratch_state.copy_from_slice(
                    self.weights
                        .state
                        .as_slice()
                        .expect("weights are contiguous"),
                );
                let params = self
                    .weights
                    .params
                    .as_slice()
                    .expect("weights are contiguous");
                self.net
                    .forward(x, params, &mut self.scratch_state, Mode::Train)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_nn::{ModelSpec, Shape};
    use ndarray::Array4;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn teacher(mode: TeacherMode) -> (Teacher, Weights) {
        let net = ModelSpec::ResNet20(0.25)
            .build(Shape::image(8, 8, 3), 4)
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut weights = net.init(&mut rng);
        // Running statistics far from any batch's, so the two modes must differ.
        weights.state.mapv_inplace(|v| v * 3.0 + 0.5);
        (Teacher::new(net, weights.clone(), mode).unwrap(), weights)
    }

    fn batch() -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        Array4::from_shape_fn((6, 8, 8, 3), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn batch_statistics_mode_never_changes_the_teacher() {
        let (mut t, original) = teacher(TeacherMode::BatchStatistics);
        let first = t.logits(batch());
        let second = t.logits(batch());
        assert_eq!(first, second);
        assert_eq!(t.weights, original);
    }

    #[test]
    fn the_two_modes_normalise_differently() {
        let (mut batch_mode, _) = teacher(TeacherMode::BatchStatistics);
        let (mut running_mode, _) = teacher(TeacherMode::RunningStatistics);
        assert_ne!(batch_mode.logits(batch()), running_mode.logits(batch()));
    }
}
