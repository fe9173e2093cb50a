//! Fully connected layer.

use super::{Layer, Mode, checked_product};
use crate::linalg::gemm;
use crate::param::{Init, Layout, ParamSpec};
use crate::tensor::{Shape, Tensor, as_rows, from_rows};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};

/// `y = x · W + b` on flat features.
///
/// Parameters: `weight` `[in, out]` (Glorot uniform, decayed), `bias` `[out]` (zeros).
#[derive(Debug)]
pub struct Dense {
    inputs: usize,
    outputs: usize,
    cached_input: Option<Tensor>,
}

impl Dense {
    /// A dense layer from `inputs` to `outputs` features.
    pub fn new(inputs: usize, outputs: usize) -> Self {
        Self {
            inputs,
            outputs,
            cached_input: None,
        }
    }

    fn split<'a>(&self, params: &'a [f32]) -> (ArrayView2<'a, f32>, ArrayView1<'a, f32>) {
        let (w, b) = params.split_at(self.inputs * self.outputs);
        let w = ArrayView2::from_shape((self.inputs, self.outputs), w).expect("weight slice");
        (w, ArrayView1::from(b))
    }

    /// [`Layer::backward`], and the input gradient only when `input_grad`.
    fn backward_inner(
        &mut self,
        dy: Tensor,
        params: &[f32],
        grads: &mut [f32],
        input_grad: bool,
    ) -> Option<Tensor> {
        let x = self
            .cached_input
            .take()
            .expect("backward follows a training forward");
        let n = x.dim().0;
        let (w, _) = self.split(params);
        let dy_rows = as_rows(&dy);
        let (gw, gb) = grads.split_at_mut(self.inputs * self.outputs);
        let mut gw = ArrayViewMut2::from_shape((self.inputs, self.outputs), gw).expect("grad");
        gemm(1.0, &as_rows(&x).t(), &dy_rows, 0.0, &mut gw);
        for (g, s) in gb.iter_mut().zip(dy_rows.sum_axis(Axis(0))) {
            *g = s;
        }
        if !input_grad {
            return None;
        }
        let mut dx = Array2::<f32>::zeros((n, self.inputs));
        gemm(1.0, &dy_rows, &w.t(), 0.0, &mut dx.view_mut());
        Some(from_rows(dx, n, self.input_shape()))
    }
}

impl Layer for Dense {
    fn describe(&self) -> String {
        format!("dense {}→{}", self.inputs, self.outputs)
    }

    fn input_shape(&self) -> Shape {
        Shape::flat(self.inputs)
    }

    fn output_shape(&self) -> Shape {
        Shape::flat(self.outputs)
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        let glorot = Init::GlorotUniform {
            fan_in: self.inputs,
            fan_out: self.outputs,
        };
        vec![
            ParamSpec::new("weight", vec![self.inputs, self.outputs], glorot)
                .with_decay()
                .with_layout(Layout::DenseInOut),
            ParamSpec::new("bias", vec![self.outputs], Init::Zeros),
        ]
    }

    fn flops_per_sample(&self) -> Option<u64> {
        checked_product(&[2, self.inputs, self.outputs])?.checked_add(self.outputs as u64)
    }

    fn forward(&mut self, x: Tensor, params: &[f32], _state: &mut [f32], mode: Mode) -> Tensor {
        let n = x.dim().0;
        let (w, b) = self.split(params);
        let mut y = Array2::<f32>::zeros((n, self.outputs));
        y += &b;
        gemm(1.0, &as_rows(&x), &w, 1.0, &mut y.view_mut());
        self.cached_input = (mode == Mode::Train).then_some(x);
        from_rows(y, n, self.output_shape())
    }

    fn backward(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor {
        self.backward_inner(dy, params, grads, true)
            .expect("the input gradient was asked for")
    }

    fn backward_params(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) {
        self.backward_inner(dy, params, grads, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut layer = Dense::new(7, 5);
        let params: Vec<f32> = (0..7 * 5 + 5)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let x = Tensor::from_shape_fn((3, 1, 1, 7), |_| rng.random_range(-1.0..1.0));
        let (input, param) = check_layer(&mut layer, &x, &params, &[], 1e-2, 0);
        input.assert_within(1e-2, "dense input");
        param.assert_within(1e-2, "dense params");
    }
}
