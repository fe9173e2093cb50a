//! Pooling: non-overlapping max pooling and global average pooling.

use super::{Layer, Mode, checked_product};
use crate::param::ParamSpec;
use crate::tensor::{Shape, Tensor, sample_shape};

/// Max pooling with a `size`×`size` window and stride `size`, no padding; a trailing
/// remainder of rows or columns that does not fill a window is dropped (floor output).
///
/// The backward pass routes each output gradient to the input that was the window's
/// maximum (the first one in row-major window order on ties), from indices cached by the
/// training forward pass.
#[derive(Debug)]
pub struct MaxPool2d {
    input: Shape,
    size: usize,
    /// Flat input index of each output's maximum, from the last training forward.
    argmax: Option<Vec<usize>>,
}

impl MaxPool2d {
    /// Max pooling of `input` images with windows and stride `size`.
    ///
    /// # Panics
    /// If `size` is zero or larger than the input's height or width.
    pub fn new(input: Shape, size: usize) -> Self {
        assert!(size >= 1, "max-pool size must be at least 1");
        assert!(
            size <= input.h && size <= input.w,
            "max-pool size {size} exceeds the input {input}"
        );
        Self {
            input,
            size,
            argmax: None,
        }
    }
}

impl Layer for MaxPool2d {
    fn describe(&self) -> String {
        format!("maxpool {s}x{s}", s = self.size)
    }

    fn input_shape(&self) -> Shape {
        self.input
    }

    fn output_shape(&self) -> Shape {
        Shape::image(
            self.input.h / self.size,
            self.input.w / self.size,
            self.input.c,
        )
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// One comparison per window element per output value: `size²` per output value.
    fn flops_per_sample(&self) -> Option<u64> {
        checked_product(&[self.output_shape().len(), self.size, self.size])
    }

    fn forward(&mut self, x: Tensor, _params: &[f32], _state: &mut [f32], mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.input, "max-pool input shape");
        self.argmax = None;
        let n = x.dim().0;
        let (h, w, c) = (self.input.h, self.input.w, self.input.c);
        let out = self.output_shape();
        let s = self.size;
        let xs = x.as_slice().expect("layer tensors are standard layout");
        let mut y = vec![0.0f32; n * out.len()];
        let mut arg = vec![0usize; y.len()];
        let lines = y.chunks_exact_mut(c).zip(arg.chunks_exact_mut(c));
        for (o, (yo, ao)) in lines.enumerate() {
            let (b, oy, ox) = (o / (out.h * out.w), o / out.w % out.h, o % out.w);
            for ky in 0..s {
                for kx in 0..s {
                    let start = ((b * h + oy * s + ky) * w + ox * s + kx) * c;
                    let px = &xs[start..start + c];
                    if ky == 0 && kx == 0 {
                        yo.copy_from_slice(px);
                        for (ch, a) in ao.iter_mut().enumerate() {
                            *a = start + ch;
                        }
                        continue;
                    }
                    for (ch, ((m, a), &v)) in yo.iter_mut().zip(ao.iter_mut()).zip(px).enumerate() {
                        if v > *m {
                            *m = v;
                            *a = start + ch;
                        }
                    }
                }
            }
        }
        if mode == Mode::Train {
            self.argmax = Some(arg);
        }
        Tensor::from_shape_vec((n, out.h, out.w, out.c), y).expect("output sized from its shape")
    }

    fn backward(&mut self, dy: Tensor, _params: &[f32], _grads: &mut [f32]) -> Tensor {
        let arg = self
            .argmax
            .take()
            .expect("backward follows a training forward");
        let n = dy.dim().0;
        let mut dx = Tensor::zeros((n, self.input.h, self.input.w, self.input.c));
        let dxs = dx
            .as_slice_mut()
            .expect("fresh tensors are standard layout");
        let dys = dy.as_slice().expect("layer tensors are standard layout");
        for (&i, &g) in arg.iter().zip(dys) {
            dxs[i] += g;
        }
        dx
    }
}

/// Global average pooling: the mean of each channel over all positions, giving flat
/// features `Shape::flat(c)`.
#[derive(Debug)]
pub struct GlobalAvgPool {
    input: Shape,
}

impl GlobalAvgPool {
    /// Global average pooling of `input` images.
    pub fn new(input: Shape) -> Self {
        Self { input }
    }
}

impl Layer for GlobalAvgPool {
    fn describe(&self) -> String {
        "global avg pool".into()
    }

    fn input_shape(&self) -> Shape {
        self.input
    }

    fn output_shape(&self) -> Shape {
        Shape::flat(self.input.c)
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// One addition per input value (the final scaling is not counted).
    fn flops_per_sample(&self) -> Option<u64> {
        u64::try_from(self.input.len()).ok()
    }

    fn forward(&mut self, x: Tensor, _params: &[f32], _state: &mut [f32], _mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.input, "global-avg-pool input shape");
        let n = x.dim().0;
        let c = self.input.c;
        let scale = 1.0 / (self.input.h * self.input.w) as f32;
        let xs = x.as_slice().expect("layer tensors are standard layout");
        let mut y = vec![0.0f32; n * c];
        for (img, yo) in xs.chunks_exact(self.input.len()).zip(y.chunks_exact_mut(c)) {
            for px in img.chunks_exact(c) {
                for (a, &v) in yo.iter_mut().zip(px) {
                    *a += v;
                }
            }
            for a in yo.iter_mut() {
                *a *= scale;
            }
        }
        Tensor::from_shape_vec((n, 1, 1, c), y).expect("output sized from its shape")
    }

    fn backward(&mut self, dy: Tensor, _params: &[f32], _grads: &mut [f32]) -> Tensor {
        let n = dy.dim().0;
        let c = self.input.c;
        let scale = 1.0 / (self.input.h * self.input.w) as f32;
        let dys = dy.as_slice().expect("layer tensors are standard layout");
        let mut dx = Tensor::zeros((n, self.input.h, self.input.w, c));
        let dxs = dx
            .as_slice_mut()
            .expect("fresh tensors are standard layout");
        for (img, g) in dxs
            .chunks_exact_mut(self.input.len())
            .zip(dys.chunks_exact(c))
        {
            for px in img.chunks_exact_mut(c) {
                for (d, &v) in px.iter_mut().zip(g) {
                    *d = v * scale;
                }
            }
        }
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    use rand_chacha::ChaCha8Rng;

    /// A batch whose values are a shuffled arithmetic sequence with step 0.05, so no two
    /// entries are within a finite-difference step of each other (no ties, no argmax flips).
    fn distinct_tensor(n: usize, s: Shape, rng: &mut ChaCha8Rng) -> Tensor {
        let len = n * s.len();
        let mut v: Vec<f32> = (0..len)
            .map(|i| i as f32 * 0.05 - len as f32 * 0.025)
            .collect();
        v.shuffle(rng);
        Tensor::from_shape_vec((n, s.h, s.w, s.c), v).unwrap()
    }

    #[test]
    fn max_pool_forward_matches_hand_computed_values() {
        // One channel, 3×5 input, size 2 → 1×2 output; last row and column dropped.
        let x = Tensor::from_shape_vec(
            (1, 3, 5, 1),
            vec![
                1.0, 5.0, 2.0, 2.0, 9.0, //
                3.0, 4.0, 8.0, 1.0, 9.0, //
                9.0, 9.0, 9.0, 9.0, 9.0,
            ],
        )
        .unwrap();
        let mut pool = MaxPool2d::new(Shape::image(3, 5, 1), 2);
        assert_eq!(pool.output_shape(), Shape::image(1, 2, 1));
        let y = pool.forward(x, &[], &mut [], Mode::Train);
        assert_eq!(y.as_slice().unwrap(), &[5.0, 8.0]);
        let dx = pool.backward(Tensor::from_elem((1, 1, 2, 1), 1.5), &[], &mut []);
        let mut want = [0.0; 15];
        want[1] = 1.5;
        want[7] = 1.5;
        assert_eq!(dx.as_slice().unwrap(), &want[..]);
    }

    #[test]
    fn max_pool_is_per_channel_and_picks_the_first_of_ties() {
        // 2×2 window, 2 channels: channel 0 ties everywhere, channel 1 peaks bottom right.
        let x = Tensor::from_shape_vec((1, 2, 2, 2), vec![3.0, 0.0, 3.0, 1.0, 3.0, 2.0, 3.0, 4.0])
            .unwrap();
        let mut pool = MaxPool2d::new(Shape::image(2, 2, 2), 2);
        let y = pool.forward(x, &[], &mut [], Mode::Train);
        assert_eq!(y.as_slice().unwrap(), &[3.0, 4.0]);
        let dx = pool.backward(
            Tensor::from_shape_vec((1, 1, 1, 2), vec![1.0, 2.0]).unwrap(),
            &[],
            &mut [],
        );
        assert_eq!(
            dx.as_slice().unwrap(),
            &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
        );
    }

    #[test]
    fn max_pool_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for (shape, size) in [
            (Shape::image(4, 4, 2), 2),
            (Shape::image(5, 7, 3), 2),
            (Shape::image(6, 6, 1), 3),
            (Shape::image(3, 4, 2), 1),
        ] {
            let mut pool = MaxPool2d::new(shape, size);
            let x = distinct_tensor(3, shape, &mut rng);
            let (input, param) = check_layer(&mut pool, &x, &[], &[], 1e-2, 0);
            input.assert_within(1e-2, &format!("maxpool {size} on {shape}"));
            assert_eq!(param.checked, 0);
        }
    }

    #[test]
    fn global_avg_pool_matches_hand_computed_values() {
        let x = Tensor::from_shape_vec(
            (2, 1, 2, 2),
            vec![1.0, 10.0, 3.0, 20.0, -1.0, 0.5, -3.0, 1.5],
        )
        .unwrap();
        let mut pool = GlobalAvgPool::new(Shape::image(1, 2, 2));
        assert_eq!(pool.output_shape(), Shape::flat(2));
        let y = pool.forward(x, &[], &mut [], Mode::Train);
        assert_eq!(y.dim(), (2, 1, 1, 2));
        assert_eq!(y.as_slice().unwrap(), &[2.0, 15.0, -2.0, 1.0]);
        let dy = Tensor::from_shape_vec((2, 1, 1, 2), vec![2.0, 4.0, 6.0, 8.0]).unwrap();
        let dx = pool.backward(dy, &[], &mut []);
        assert_eq!(
            dx.as_slice().unwrap(),
            &[1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
        );
    }

    #[test]
    fn global_avg_pool_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        for shape in [Shape::image(3, 4, 2), Shape::image(8, 8, 5), Shape::flat(3)] {
            let mut pool = GlobalAvgPool::new(shape);
            let x = distinct_tensor(2, shape, &mut rng);
            let (input, _) = check_layer(&mut pool, &x, &[], &[], 1e-2, 0);
            input.assert_within(1e-2, &format!("global avg pool on {shape}"));
        }
    }

    #[test]
    fn descriptions_and_flops() {
        let pool = MaxPool2d::new(Shape::image(28, 28, 32), 2);
        assert_eq!(pool.describe(), "maxpool 2x2");
        assert_eq!(pool.output_shape(), Shape::image(14, 14, 32));
        assert_eq!(pool.flops_per_sample(), Some(14 * 14 * 32 * 4));
        let gap = GlobalAvgPool::new(Shape::image(8, 8, 64));
        assert_eq!(gap.describe(), "global avg pool");
        assert_eq!(gap.flops_per_sample(), Some(8 * 8 * 64));
        assert!(gap.param_specs().is_empty() && pool.param_specs().is_empty());
    }
}
