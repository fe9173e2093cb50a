//! Layers: the building blocks of a [`Network`](crate::Network).
//!
//! A layer holds its hyper-parameters and the activations its backward pass needs, never its
//! weights: those are slices of the network's flat parameter and state vectors, handed in
//! on every call. One network instance can therefore train many clients' weights in turn.

mod batch_norm;
mod conv2d;
mod dense;
#[cfg(target_arch = "x86_64")]
mod direct;
mod flatten;
mod im2col;
mod pool;
mod relu;
mod residual;

pub use batch_norm::{BatchNorm, BatchNormConfig};
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use flatten::Flatten;
pub use pool::{GlobalAvgPool, MaxPool2d};
pub use relu::Relu;
pub use residual::ResidualBlock;

use crate::{ParamSpec, Shape, Tensor};
use std::fmt::Debug;

/// The product of `factors` as a `u64` count, or `None` if it overflows: how layers count
/// their FLOPs without wrapping.
pub fn checked_product(factors: &[usize]) -> Option<u64> {
    factors
        .iter()
        .try_fold(1u64, |n, &f| n.checked_mul(u64::try_from(f).ok()?))
}

/// Whether a forward pass trains or evaluates; only batch normalisation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated in the state slice.
    Train,
    /// Running statistics; state is left untouched.
    Eval,
}

/// A differentiable layer with a fixed input shape.
///
/// Contract, relied upon by [`Network`](crate::Network) and the gradient checks:
/// - `params` is exactly this layer's slice of the flat parameter vector, laid out as the
///   concatenation of [`Layer::param_specs`] in order, each tensor row-major in its internal
///   shape; `state` likewise for [`Layer::state_specs`].
/// - `forward` takes a batch of [`Layer::input_shape`] samples and returns a standard-layout
///   batch of [`Layer::output_shape`] samples; in [`Mode::Train`] it caches what `backward`
///   needs and may update `state`.
/// - `backward` takes the loss gradient with respect to the last forward's output, **writes**
///   (does not add) this layer's parameter gradients into `grads` (same layout as
///   `params`), and returns the gradient with respect to that forward's input. It is only
///   called after a `Mode::Train` forward.
pub trait Layer: Debug + Send {
    /// A one-line human description, such as `conv 3x3 16→32 stride 2`.
    fn describe(&self) -> String;
    /// Shape of one input sample.
    fn input_shape(&self) -> Shape;
    /// Shape of one output sample.
    fn output_shape(&self) -> Shape;
    /// Trainable tensors, in flat-vector order.
    fn param_specs(&self) -> Vec<ParamSpec>;
    /// Non-trainable state tensors (running statistics), in flat-vector order.
    fn state_specs(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    /// Forward floating-point operations per sample (a multiply-add counts 2), or `None`
    /// if the count does not fit in `u64` (see [`checked_product`]).
    fn flops_per_sample(&self) -> Option<u64>;
    /// Values per sample this layer produces during a forward pass, including those of
    /// its inner layers (composites override this), or `None` if the count does not fit
    /// in `usize`; sizes the training memory.
    fn activations_per_sample(&self) -> Option<usize> {
        Some(self.output_shape().len())
    }
    /// The forward pass.
    fn forward(&mut self, x: Tensor, params: &[f32], state: &mut [f32], mode: Mode) -> Tensor;
    /// The backward pass.
    fn backward(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor;
    /// The backward pass without the input gradient, for a layer whose input is data (the
    /// network's first trainable layer): writes the same parameter gradients as
    /// [`Layer::backward`]. Layers whose input gradient costs arithmetic skip it here.
    fn backward_params(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) {
        self.backward(dy, params, grads);
    }
}
