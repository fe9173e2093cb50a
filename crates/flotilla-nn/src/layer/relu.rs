//! Rectified linear unit.

use super::{Layer, Mode};
use crate::param::ParamSpec;
use crate::tensor::{Shape, Tensor};
use ndarray::Zip;

/// `y = max(x, 0)`, element-wise, any shape. No parameters.
#[derive(Debug)]
pub struct Relu {
    shape: Shape,
    cached_output: Option<Tensor>,
}

impl Relu {
    /// A ReLU over samples of `shape`.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            cached_output: None,
        }
    }
}

impl Layer for Relu {
    fn describe(&self) -> String {
        "relu".into()
    }

    fn input_shape(&self) -> Shape {
        self.shape
    }

    fn output_shape(&self) -> Shape {
        self.shape
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    fn flops_per_sample(&self) -> Option<u64> {
        u64::try_from(self.shape.len()).ok()
    }

    fn forward(
        &mut self,
        mut x: Tensor,
        _params: &[f32],
        _state: &mut [f32],
        mode: Mode,
    ) -> Tensor {
        x.mapv_inplace(|v| v.max(0.0));
        if mode == Mode::Train {
            self.cached_output = Some(x.clone());
        }
        x
    }

    fn backward(&mut self, mut dy: Tensor, _params: &[f32], _grads: &mut [f32]) -> Tensor {
        let y = self
            .cached_output
            .take()
            .expect("backward follows a training forward");
        // A select, not a branch, over flat slices: the compiler vectorises it.
        let mask = |d: &mut f32, &y: &f32| *d = if y > 0.0 { *d } else { 0.0 };
        match (dy.as_slice_mut(), y.as_slice()) {
            (Some(d), Some(y)) => d.iter_mut().zip(y).for_each(|(d, y)| mask(d, y)),
            _ => Zip::from(&mut dy).and(&y).for_each(mask),
        }
        dy
    }
}
