//! Batch normalisation over the channels of NHWC activations (or the features of flat ones).

use super::{Layer, Mode, checked_product};
use crate::param::{Init, ParamSpec};
use crate::tensor::{Shape, Tensor, sample_shape};

/// Hyper-parameters of a [`BatchNorm`] layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Running-statistics momentum in the **Keras convention**:
    /// `running = momentum · running + (1 − momentum) · batch_stat`. The reference uses
    /// 0.99 (PyTorch's `momentum=0.01`).
    pub momentum: f32,
    /// Added to the variance before its square root; the reference (Keras) uses 1e-3.
    pub eps: f32,
    /// Initialisation of the scale γ: [`Init::Ones`] normally, [`Init::Zeros`] for the last
    /// batch norm of a residual branch.
    pub gamma_init: Init,
}

impl Default for BatchNormConfig {
    /// The reference values: momentum 0.99, eps 1e-3, γ initialised to ones.
    fn default() -> Self {
        Self {
            momentum: 0.99,
            eps: 1e-3,
            gamma_init: Init::Ones,
        }
    }
}

/// What a training forward pass keeps for the backward pass.
#[derive(Debug)]
struct Cache {
    /// The input.
    x: Tensor,
    /// Per-channel batch mean.
    mean: Vec<f32>,
    /// Per-channel `1 / sqrt(batch variance + eps)`.
    inv_std: Vec<f32>,
}

/// Per-channel batch normalisation: `y = γ · (x − μ) / sqrt(σ² + eps) + β`, with statistics
/// over all `n·h·w` positions of each channel (for flat inputs: over the batch, per feature).
///
/// Parameters: `weight` (γ, `[c]`, initialised by [`BatchNormConfig::gamma_init`]) and
/// `bias` (β, `[c]`, zeros), neither decayed. State: `running_mean` `[c]` (zeros) and
/// `running_var` `[c]` (ones).
///
/// - [`Mode::Train`] normalises with the batch mean and the biased batch variance, and
///   updates the running statistics in the state slice with the Keras-convention momentum.
///   The running variance receives the *unbiased* batch variance (`· m/(m − 1)` over the `m`
///   values per channel), as both PyTorch and TensorFlow's fused batch norm (the kernel Keras
///   uses for the reference's convolutional layers) do; with `m = 1` the biased one.
/// - [`Mode::Eval`] normalises with the running statistics and leaves the state untouched.
/// - The backward pass is the training-mode one (gradients flow through the batch statistics).
///
/// Statistics and gradient sums accumulate in `f64` in a fixed order, so results are
/// reproducible bit for bit.
#[derive(Debug)]
pub struct BatchNorm {
    shape: Shape,
    config: BatchNormConfig,
    cache: Option<Cache>,
}

impl BatchNorm {
    /// Batch normalisation of samples of `shape` (per channel `shape.c`).
    ///
    /// # Panics
    /// If the momentum is outside `[0, 1]` or `eps` is not positive.
    pub fn new(shape: Shape, config: BatchNormConfig) -> Self {
        assert!(
            (0.0..=1.0).contains(&config.momentum),
            "batch-norm momentum must be in [0, 1] (Keras convention), got {}",
            config.momentum
        );
        assert!(
            config.eps > 0.0,
            "batch-norm eps must be positive, got {}",
            config.eps
        );
        Self {
            shape,
            config,
            cache: None,
        }
    }

    /// The layer's hyper-parameters.
    pub fn config(&self) -> BatchNormConfig {
        self.config
    }
}

/// Values per accumulation block at least: a block is a whole number of rows (of `c` values)
/// and of this many values, so the per-block loops run on full vectors whatever `c` is.
const BLOCK_VALUES: usize = 64;

/// The length of one block for `c` channels: the least common multiple of `c` and
/// [`BLOCK_VALUES`].
fn block_len(c: usize) -> usize {
    let (mut a, mut b) = (c, BLOCK_VALUES);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    c / a * BLOCK_VALUES
}

/// `per_channel` repeated over one block of `len` values (slot `i` is channel `i % c`).
fn tile<T: Copy>(per_channel: &[T], len: usize) -> Vec<T> {
    per_channel.iter().copied().cycle().take(len).collect()
}

/// The per-channel totals of slot-wise sums `acc` over blocks of `c`-channel rows: channel
/// `ch` adds slots `ch, c + ch, 2c + ch, …` in that order.
fn per_channel(acc: &[f64], c: usize) -> Vec<f64> {
    let mut totals = vec![0.0f64; c];
    for row in acc.chunks_exact(c) {
        for (t, &a) in totals.iter_mut().zip(row) {
            *t += a;
        }
    }
    totals
}

/// Per-channel statistics and gradient sums: each slot of a block sums its values over the
/// blocks in order, then [`per_channel`] adds a channel's slots; a fixed order whatever the
/// CPU, so the same bits on every run. Per-slot sums keep `len` independent chains of
/// additions (one per channel would leave 4 for a 4-channel layer, each addition waiting for
/// the previous one), and elementwise loops over a block vectorise for any channel count.
/// Each `*_blocks` function is compiled for the CPU's widest vectors by its caller
/// (`pulp`'s run-time dispatch; elementwise, so the bits do not depend on the width).
#[inline(always)]
fn sum_blocks(x: &[f32], len: usize) -> Vec<f64> {
    let mut acc = vec![0.0f64; len];
    for block in x.chunks(len) {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a += f64::from(v);
        }
    }
    acc
}

/// Slot-wise sums of squared deviations from the tiled `mean`, as [`sum_blocks`].
#[inline(always)]
fn squared_deviation_blocks(x: &[f32], mean: &[f64]) -> Vec<f64> {
    let mut acc = vec![0.0f64; mean.len()];
    for block in x.chunks(mean.len()) {
        for ((a, &v), &mu) in acc.iter_mut().zip(block).zip(mean) {
            let d = f64::from(v) - mu;
            *a += d * d;
        }
    }
    acc
}

/// Slot-wise sums of `dy` and of `dy · (x − mean)` (tiled `mean`), as [`sum_blocks`].
#[inline(always)]
fn gradient_blocks(x: &[f32], dy: &[f32], mean: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let len = mean.len();
    let (mut sum_dy, mut sum_dy_xc) = (vec![0.0f64; len], vec![0.0f64; len]);
    for (xb, db) in x.chunks(len).zip(dy.chunks(len)) {
        let sums = sum_dy.iter_mut().zip(sum_dy_xc.iter_mut());
        for (((s, sx), (&xv, &d)), &mu) in sums.zip(xb.iter().zip(db)).zip(mean) {
            let d = f64::from(d);
            *s += d;
            *sx += d * (f64::from(xv) - mu);
        }
    }
    (sum_dy, sum_dy_xc)
}

/// `y = x · scale + shift` per slot of the tiled `scale` and `shift`, into `y` (cleared).
#[inline(always)]
fn affine_blocks(x: &[f32], scale: &[f32], shift: &[f32], y: &mut Vec<f32>) {
    y.clear();
    for block in x.chunks(scale.len()) {
        let affine = block.iter().zip(scale).zip(shift);
        y.extend(affine.map(|((&v, &a), &b)| v * a + b));
    }
}

/// `y = x · scale + shift` in place, as [`affine_blocks`].
#[inline(always)]
fn affine_blocks_in_place(x: &mut [f32], scale: &[f32], shift: &[f32]) {
    for block in x.chunks_mut(scale.len()) {
        for ((v, &a), &b) in block.iter_mut().zip(scale).zip(shift) {
            *v = *v * a + b;
        }
    }
}

/// The input gradient `dy ← k · (dy − a − (x − mean) · b)` per slot of the tiled constants.
#[inline(always)]
fn input_gradient_blocks(x: &[f32], dy: &mut [f32], [k, a, b, mean]: [&[f32]; 4]) {
    for (xb, db) in x.chunks(k.len()).zip(dy.chunks_mut(k.len())) {
        let consts = k.iter().zip(a).zip(b).zip(mean);
        for ((d, &xv), (((&k, &a), &b), &mu)) in db.iter_mut().zip(xb).zip(consts) {
            *d = k * (*d - a - (xv - mu) * b);
        }
    }
}

/// Runs `f` compiled for the widest vectors this CPU has (`pulp`'s run-time dispatch).
fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

impl Layer for BatchNorm {
    fn describe(&self) -> String {
        format!("batchnorm {}", self.shape.c)
    }

    fn input_shape(&self) -> Shape {
        self.shape
    }

    fn output_shape(&self) -> Shape {
        self.shape
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        let c = self.shape.c;
        vec![
            ParamSpec::new("weight", vec![c], self.config.gamma_init),
            ParamSpec::new("bias", vec![c], Init::Zeros),
        ]
    }

    fn state_specs(&self) -> Vec<ParamSpec> {
        let c = self.shape.c;
        vec![
            ParamSpec::new("running_mean", vec![c], Init::Zeros),
            ParamSpec::new("running_var", vec![c], Init::Ones),
        ]
    }

    /// 2 per value: the normalisation and affine transform folded into one multiply-add per
    /// value (the batch statistics of training mode are not counted).
    fn flops_per_sample(&self) -> Option<u64> {
        checked_product(&[2, self.shape.len()])
    }

    fn forward(&mut self, mut x: Tensor, params: &[f32], state: &mut [f32], mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.shape, "batch-norm input shape");
        self.cache = None;
        let c = self.shape.c;
        let (gamma, beta) = params.split_at(c);
        let (running_mean, running_var) = state.split_at_mut(c);
        let eps = f64::from(self.config.eps);
        let rows = x.len() / c.max(1);
        if rows == 0 {
            return x;
        }
        let (mean, inv_std) = match mode {
            Mode::Eval => {
                let inv_std = running_var
                    .iter()
                    .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32);
                (running_mean.to_vec(), inv_std.collect::<Vec<_>>())
            }
            Mode::Train => {
                let xs = x.as_slice().expect("layer tensors are standard layout");
                let m = rows as f64;
                let len = block_len(c);
                let sums = dispatch(|| sum_blocks(xs, len));
                let mean: Vec<f64> = per_channel(&sums, c).iter().map(|s| s / m).collect();
                let tiled_mean = tile(&mean, len);
                let squares = dispatch(|| squared_deviation_blocks(xs, &tiled_mean));
                let var: Vec<f64> = per_channel(&squares, c).iter().map(|s| s / m).collect();
                let bessel = if rows > 1 { m / (m - 1.0) } else { 1.0 };
                let mom = f64::from(self.config.momentum);
                for ch in 0..c {
                    let rm = f64::from(running_mean[ch]);
                    let rv = f64::from(running_var[ch]);
                    running_mean[ch] = (mom * rm + (1.0 - mom) * mean[ch]) as f32;
                    running_var[ch] = (mom * rv + (1.0 - mom) * var[ch] * bessel) as f32;
                }
                let inv_std = var
                    .iter()
                    .map(|&v| (1.0 / (v + eps).sqrt()) as f32)
                    .collect();
                (mean.iter().map(|&v| v as f32).collect(), inv_std)
            }
        };
        // y = γ (x − μ) s + β = x · (γ s) + (β − μ γ s)
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(&g, &s)| g * s).collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((&b, &mu), &a)| b - mu * a)
            .collect();
        let len = block_len(c);
        let (scale, shift) = (tile(&scale, len), tile(&shift, len));
        if mode == Mode::Train {
            let xs = x.as_slice().expect("layer tensors are standard layout");
            let mut y = Vec::with_capacity(xs.len());
            dispatch(|| affine_blocks(xs, &scale, &shift, &mut y));
            let y = Tensor::from_shape_vec(x.raw_dim(), y).expect("same shape as the input");
            self.cache = Some(Cache { x, mean, inv_std });
            y
        } else {
            let xs = x.as_slice_mut().expect("standard layout");
            dispatch(|| affine_blocks_in_place(xs, &scale, &shift));
            x
        }
    }

    fn backward(&mut self, mut dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor {
        let Cache { x, mean, inv_std } = self
            .cache
            .take()
            .expect("backward follows a training forward");
        let c = self.shape.c;
        let gamma = &params[..c];
        let (g_gamma, g_beta) = grads.split_at_mut(c);
        let xs = x.as_slice().expect("layer tensors are standard layout");
        let dys = dy
            .as_slice_mut()
            .expect("layer tensors are standard layout");
        let rows = xs.len() / c.max(1);
        if rows == 0 {
            g_gamma.fill(0.0);
            g_beta.fill(0.0);
            return dy;
        }
        // dβ = Σ dy;  dγ = Σ dy · x̂  with  x̂ = (x − μ) s.
        let len = block_len(c);
        let mean64: Vec<f64> = mean.iter().map(|&mu| f64::from(mu)).collect();
        let tiled_mean = tile(&mean64, len);
        let (sum_dy, sum_dy_xc) = dispatch(|| gradient_blocks(xs, dys, &tiled_mean));
        let (sum_dy, sum_dy_xc) = (per_channel(&sum_dy, c), per_channel(&sum_dy_xc, c));
        let m = rows as f64;
        // dx = γ s (dy − dβ/m − x̂ · dγ/m) = k · (dy − a − (x − μ) · b)
        let mut k = vec![0.0f32; c];
        let mut a = vec![0.0f32; c];
        let mut b = vec![0.0f32; c];
        for ch in 0..c {
            let s = f64::from(inv_std[ch]);
            let d_gamma = sum_dy_xc[ch] * s;
            g_gamma[ch] = d_gamma as f32;
            g_beta[ch] = sum_dy[ch] as f32;
            k[ch] = (f64::from(gamma[ch]) * s) as f32;
            a[ch] = (sum_dy[ch] / m) as f32;
            b[ch] = (d_gamma / m * s) as f32;
        }
        let consts = [&k, &a, &b, &mean].map(|v| tile(v, len));
        let consts = consts.each_ref().map(Vec::as_slice);
        dispatch(|| input_gradient_blocks(xs, dys, consts));
        dy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_tensor(n: usize, s: Shape, lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Tensor {
        Tensor::from_shape_fn((n, s.h, s.w, s.c), |_| rng.random_range(lo..hi))
    }

    /// γ, β and running statistics away from their trivial initial values.
    fn random_params_state(c: usize, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
        let mut params: Vec<f32> = (0..c).map(|_| rng.random_range(0.5..1.5)).collect();
        params.extend((0..c).map(|_| rng.random_range(-0.5..0.5)));
        let mut state: Vec<f32> = (0..c).map(|_| rng.random_range(-0.5..0.5)).collect();
        state.extend((0..c).map(|_| rng.random_range(0.5..2.0)));
        (params, state)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (shape, n) in [
            (Shape::image(3, 4, 3), 4),
            (Shape::image(2, 2, 5), 5),
            (Shape::flat(6), 4),
            (Shape::flat(3), 8),
            // Several accumulation blocks and a partial one (16 and 64 rows per block).
            (Shape::image(5, 6, 4), 3),
            (Shape::flat(3), 70),
        ] {
            let mut layer = BatchNorm::new(shape, BatchNormConfig::default());
            let x = random_tensor(n, shape, -2.0, 3.0, &mut rng);
            let (params, state) = random_params_state(shape.c, &mut rng);
            let (input, param) = check_layer(&mut layer, &x, &params, &state, 1e-2, 0);
            input.assert_within(1e-2, &format!("batchnorm {shape} input"));
            param.assert_within(1e-2, &format!("batchnorm {shape} params"));
        }
    }

    /// The blocked sums give each channel's mean and variance as a direct per-channel
    /// computation does, for channel counts that do and do not divide a block, over several
    /// blocks and a partial one.
    #[test]
    fn blocked_statistics_match_a_direct_computation() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for (c, n) in [(1, 3), (3, 5), (4, 7), (16, 2), (24, 3), (70, 2)] {
            let shape = Shape::image(5, 7, c);
            let x = random_tensor(n, shape, -3.0, 5.0, &mut rng);
            let mut layer = BatchNorm::new(shape, BatchNormConfig::default());
            let (params, mut state) = random_params_state(c, &mut rng);
            let y = layer.forward(x.clone(), &params, &mut state, Mode::Train);
            let rows = (n * 35) as f64;
            for ch in 0..c {
                let values: Vec<f64> = x
                    .as_slice()
                    .unwrap()
                    .iter()
                    .skip(ch)
                    .step_by(c)
                    .map(|&v| f64::from(v))
                    .collect();
                let mean = values.iter().sum::<f64>() / rows;
                let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows;
                let s = 1.0 / (var + 1e-3).sqrt();
                let got = y.as_slice().unwrap().iter().skip(ch).step_by(c);
                for (&g, v) in got.zip(&values) {
                    let want = f64::from(params[ch]) * (v - mean) * s + f64::from(params[c + ch]);
                    assert!(
                        (f64::from(g) - want).abs() < 1e-5,
                        "c {c} ch {ch}: {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn train_forward_normalises_and_updates_running_stats_keras_style() {
        // One channel, values 1..=4 over a 2×2 image of batch 1 (m = 4): mean 2.5, biased
        // variance 1.25, unbiased 5/3. A second channel is constant 7 (variance 0).
        let shape = Shape::image(2, 2, 2);
        let x = Tensor::from_shape_vec((1, 2, 2, 2), vec![1.0, 7.0, 2.0, 7.0, 3.0, 7.0, 4.0, 7.0])
            .unwrap();
        let config = BatchNormConfig {
            momentum: 0.9,
            eps: 1e-3,
            gamma_init: Init::Ones,
        };
        let mut layer = BatchNorm::new(shape, config);
        let params = [2.0, 1.0, 0.5, -1.0]; // γ = (2, 1), β = (0.5, −1)
        let mut state = vec![0.0, 1.0, 1.0, 2.0]; // running mean (0, 1), var (1, 2)
        let y = layer.forward(x, &params, &mut state, Mode::Train);
        let s = 1.0 / (1.25f32 + 1e-3).sqrt();
        for (i, v) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
            let want = 2.0 * (v - 2.5) * s + 0.5;
            assert!((y.as_slice().unwrap()[2 * i] - want).abs() < 1e-5);
            assert!((y.as_slice().unwrap()[2 * i + 1] - -1.0).abs() < 1e-5);
        }
        let want_state = [
            0.9 * 0.0 + 0.1 * 2.5,
            0.9 * 1.0 + 0.1 * 7.0,
            0.9 * 1.0 + 0.1 * (5.0 / 3.0),
            0.9 * 2.0 + 0.1 * 0.0,
        ];
        for (got, want) in state.iter().zip(want_state) {
            assert!((got - want).abs() < 1e-6, "{state:?} vs {want_state:?}");
        }
    }

    #[test]
    fn eval_forward_uses_running_stats_and_leaves_state_alone() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let shape = Shape::image(3, 2, 4);
        let mut layer = BatchNorm::new(shape, BatchNormConfig::default());
        let x = random_tensor(3, shape, -1.0, 1.0, &mut rng);
        let (params, state) = random_params_state(4, &mut rng);
        let mut s = state.clone();
        let y = layer.forward(x.clone(), &params, &mut s, Mode::Eval);
        assert_eq!(s, state);
        let want = Tensor::from_shape_fn(x.raw_dim(), |(n, h, w, ch)| {
            let xhat = (x[[n, h, w, ch]] - state[ch]) / (state[4 + ch] + 1e-3).sqrt();
            params[ch] * xhat + params[4 + ch]
        });
        let err = (&y - &want).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(err < 1e-5, "max error {err}");
    }

    #[test]
    fn flat_features_are_normalised_over_the_batch() {
        let shape = Shape::flat(2);
        let x =
            Tensor::from_shape_vec((3, 1, 1, 2), vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]).unwrap();
        let mut layer = BatchNorm::new(shape, BatchNormConfig::default());
        let y = layer.forward(
            x,
            &[1.0, 1.0, 0.0, 0.0],
            &mut [0.0, 0.0, 1.0, 1.0],
            Mode::Train,
        );
        let y = y.as_slice().unwrap();
        // Each feature is standardised: (−1, 0, 1) / sqrt(2/3 + eps) and (−10, 0, 10) / ….
        let s1 = 1.0 / (2.0f32 / 3.0 + 1e-3).sqrt();
        let s2 = 1.0 / (200.0f32 / 3.0 + 1e-3).sqrt();
        let want = [-s1, -10.0 * s2, 0.0, 0.0, s1, 10.0 * s2];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn specs_and_defaults() {
        let config = BatchNormConfig::default();
        assert_eq!(
            config,
            BatchNormConfig {
                momentum: 0.99,
                eps: 1e-3,
                gamma_init: Init::Ones
            }
        );
        let zero_gamma = BatchNormConfig {
            gamma_init: Init::Zeros,
            ..config
        };
        let layer = BatchNorm::new(Shape::image(8, 8, 16), zero_gamma);
        let p = layer.param_specs();
        assert_eq!(
            (p[0].name.as_str(), p[0].init, p[0].decay),
            ("weight", Init::Zeros, false)
        );
        assert_eq!(
            (p[1].name.as_str(), p[1].init, p[1].decay),
            ("bias", Init::Zeros, false)
        );
        let s = layer.state_specs();
        assert_eq!(
            (s[0].name.as_str(), s[0].init),
            ("running_mean", Init::Zeros)
        );
        assert_eq!((s[1].name.as_str(), s[1].init), ("running_var", Init::Ones));
        assert!(p.iter().chain(&s).all(|spec| spec.shape == vec![16]));
        assert_eq!(layer.describe(), "batchnorm 16");
        assert_eq!(layer.flops_per_sample(), Some(2 * 8 * 8 * 16));
    }
}
