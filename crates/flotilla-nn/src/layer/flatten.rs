//! Flattening images into feature vectors, in PyTorch order.

use super::{Layer, Mode};
use crate::param::ParamSpec;
use crate::tensor::{Shape, Tensor, sample_shape};

/// Flattens `h×w×c` images into `h·w·c` features in **PyTorch (CHW) order**: feature
/// `ch·h·w + y·w + x` is pixel `(y, x)` of channel `ch`, as `nn.Flatten` produces from an
/// NCHW tensor, so a following [`Dense`](super::Dense) layer's weights correspond to those of
/// a PyTorch `nn.Flatten` + `nn.Linear` checkpoint. The backward pass applies the inverse
/// permutation. When `h = w = 1` or `c = 1` both orders agree and it is a pure reshape.
#[derive(Debug)]
pub struct Flatten {
    input: Shape,
}

impl Flatten {
    /// Flattening of `input` samples.
    pub fn new(input: Shape) -> Self {
        Self { input }
    }

    /// Whether NHWC and NCHW flattening coincide.
    fn is_reshape(&self) -> bool {
        self.input.is_flat() || self.input.c == 1
    }
}

impl Layer for Flatten {
    fn describe(&self) -> String {
        format!("flatten {}→{} (CHW order)", self.input, self.input.len())
    }

    fn input_shape(&self) -> Shape {
        self.input
    }

    fn output_shape(&self) -> Shape {
        Shape::flat(self.input.len())
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// No arithmetic: 0.
    fn flops_per_sample(&self) -> Option<u64> {
        Some(0)
    }

    fn forward(&mut self, x: Tensor, _params: &[f32], _state: &mut [f32], _mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.input, "flatten input shape");
        let n = x.dim().0;
        let len = self.input.len();
        let x = if self.is_reshape() {
            x
        } else {
            // [n, h, w, c] → [n, c, h, w], copied into standard layout.
            x.permuted_axes([0, 3, 1, 2])
                .as_standard_layout()
                .into_owned()
        };
        x.into_shape_with_order((n, 1, 1, len))
            .expect("standard layout, same element count")
    }

    fn backward(&mut self, dy: Tensor, _params: &[f32], _grads: &mut [f32]) -> Tensor {
        let n = dy.dim().0;
        let Shape { h, w, c } = self.input;
        if self.is_reshape() {
            return dy
                .into_shape_with_order((n, h, w, c))
                .expect("standard layout gradient");
        }
        dy.into_shape_with_order((n, c, h, w))
            .expect("standard layout gradient")
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn forward_uses_pytorch_chw_order_and_backward_inverts_it() {
        // x[n, y, x, ch] = 1000n + 100y + 10x + ch, on 2 samples of 2×3×2.
        let shape = Shape::image(2, 3, 2);
        let x = Tensor::from_shape_fn((2, 2, 3, 2), |(n, y, x, ch)| {
            (1000 * n + 100 * y + 10 * x + ch) as f32
        });
        let mut layer = Flatten::new(shape);
        assert_eq!(layer.output_shape(), Shape::flat(12));
        let y = layer.forward(x.clone(), &[], &mut [], Mode::Train);
        assert_eq!(y.dim(), (2, 1, 1, 12));
        let want: Vec<f32> = (0..2)
            .flat_map(|n| {
                (0..2).flat_map(move |ch| {
                    (0..2).flat_map(move |y| {
                        (0..3).map(move |x| (1000 * n + 100 * y + 10 * x + ch) as f32)
                    })
                })
            })
            .collect();
        assert_eq!(y.as_slice().unwrap(), &want[..]);
        assert_eq!(&y.as_slice().unwrap()[..4], &[0.0, 10.0, 20.0, 100.0]);
        let back = layer.backward(y, &[], &mut []);
        assert_eq!(back, x);
        assert!(back.is_standard_layout());
    }

    #[test]
    fn single_channel_and_flat_inputs_are_reshapes() {
        for shape in [Shape::image(3, 2, 1), Shape::flat(5)] {
            let x = Tensor::from_shape_fn((2, shape.h, shape.w, shape.c), |(n, y, x, c)| {
                (n * 100 + y * 10 + x + c) as f32
            });
            let mut layer = Flatten::new(shape);
            let y = layer.forward(x.clone(), &[], &mut [], Mode::Train);
            assert_eq!(y.as_slice().unwrap(), x.as_slice().unwrap());
            assert_eq!(layer.backward(y, &[], &mut []), x);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        for shape in [Shape::image(2, 3, 4), Shape::image(3, 3, 1), Shape::flat(4)] {
            let x = Tensor::from_shape_fn((2, shape.h, shape.w, shape.c), |_| {
                rng.random_range(-1.0..1.0)
            });
            let mut layer = Flatten::new(shape);
            let (input, _) = check_layer(&mut layer, &x, &[], &[], 1e-2, 0);
            input.assert_within(1e-2, &format!("flatten {shape}"));
        }
    }

    #[test]
    fn description() {
        let layer = Flatten::new(Shape::image(7, 7, 64));
        assert_eq!(layer.describe(), "flatten 7x7x64→3136 (CHW order)");
        assert_eq!(layer.flops_per_sample(), Some(0));
    }
}
