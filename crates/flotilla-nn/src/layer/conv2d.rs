//! Two-dimensional convolution: im2col + matrix multiply, streamed in cache-sized chunks.

use super::im2col::{ConvGeometry, col2im, im2col};
use super::{Layer, Mode, checked_product};
use crate::accounting::count_convolution;
use crate::linalg::gemm;
use crate::param::{Init, Layout, ParamSpec};
use crate::tensor::{Shape, Tensor, as_rows, from_rows, sample_shape};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Slice};
use std::time::Instant;

/// Target size (values) of one chunk of the column matrix (256 KiB): the matrix is built and
/// consumed a chunk of output lines at a time, so it stays in the L2 cache instead of
/// streaming an `n·oh·ow × k·k·c_in` matrix through memory. The chunking depends only on the
/// layer geometry and the batch size, so results are reproducible bit for bit.
const CHUNK_VALUES: usize = 1 << 16;

/// Output channels from which a stride-1 convolution computes its input gradient as a
/// convolution with the turned kernel ([`Conv2d::transposed_input_gradient`]). Measured at
/// ResNet-20's shapes, batch 32 (forward + backward): 32 and 64 channels 2.28 → 2.13 ms and
/// 2.00 → 1.89 ms; 4, 8 and 16 channels slower (1.80 → 1.89, 0.59 → 0.66, 4.21 → 4.43 ms),
/// as the turned pass's product is `c_out` wide, which fills the matrix kernel's tiles only
/// from 32 columns.
const TRANSPOSED_MIN_CHANNELS: usize = 32;

/// Output lines per column-matrix chunk of a convolution of geometry `g`: as many as fit
/// [`CHUNK_VALUES`], at least one.
fn chunk_lines(g: &ConvGeometry) -> usize {
    (CHUNK_VALUES / (g.ow * g.col_len())).max(1)
}

/// The ranges of `step` lines (the last one shorter) that cover `lines` lines, in order.
fn line_chunks(lines: usize, step: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..lines)
        .step_by(step)
        .map(move |l| l..(l + step).min(lines))
}

/// A pass of the direct 3×3 stride-1 kernels ([`direct_3x3`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirectPass {
    /// The convolution of the samples with a kernel: the forward pass, or the input
    /// gradient (the output gradient with the turned kernel).
    Convolve,
    /// The kernel's gradient, from the samples and the output gradient.
    WeightGrad,
}

/// [`direct::run`](super::direct) where the CPU has it, for `h × w × c` samples, `c` 4, 8
/// or 16: `pass` from `x` and `other` into `out`, or `false` (nothing done).
fn direct_3x3(
    pass: DirectPass,
    c: usize,
    hw: (usize, usize),
    x: &[f32],
    other: &[f32],
    out: &mut [f32],
    padded: &mut Vec<f32>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return match c {
        4 => super::direct::run::<4>(pass, hw, x, other, out, padded),
        8 => super::direct::run::<8>(pass, hw, x, other, out, padded),
        16 => super::direct::run::<16>(pass, hw, x, other, out, padded),
        _ => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// A `k`×`k` convolution over NHWC images with "same"-style zero padding `k / 2` on every
/// side (PyTorch `padding=k//2`) and the given stride; output side `(H + 2p − k)/stride + 1`.
///
/// Parameters: `weight` `[k, k, c_in, c_out]` (HWIO, Glorot uniform with fan-in `k·k·c_in`
/// and fan-out `k·k·c_out`, decayed, [`Layout::ConvHwio`]) and, optionally, `bias` `[c_out]`
/// (zeros, not decayed).
///
/// The forward pass multiplies the `[n·oh·ow, k·k·c_in]` column matrix (`(kh, kw, c_in)`
/// order) by the weight viewed as `[k·k·c_in, c_out]` through [`gemm()`]. The column matrix
/// is never materialised whole: it is built (im2col) into a reused cache-sized buffer a
/// chunk of output lines at a time, each chunk multiplied as soon as it is built. A training
/// forward keeps only the input; the backward pass rebuilds each chunk, accumulates
/// `dW += colsᵀ·dY` (chunks in a fixed order) and scatters `dcols = dY·Wᵀ` back (col2im)
/// through the same buffer. 1×1 stride-1 convolutions use the input directly as the column
/// matrix.
#[derive(Debug)]
pub struct Conv2d {
    geom: ConvGeometry,
    out_channels: usize,
    bias: bool,
    /// Output lines (one output row of one sample) per column-matrix chunk.
    lines_per_chunk: usize,
    /// Column-matrix chunk buffer, reused across calls.
    cols: Vec<f32>,
    /// The turned kernel of the stride-1 input gradient, reused across calls.
    turned: Vec<f32>,
    /// Zero-bordered samples for the direct thin convolutions, reused across calls.
    padded: Vec<f32>,
    cached_input: Option<Tensor>,
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution from `input` to `out_channels` channels.
    ///
    /// # Panics
    /// If `kernel` is even or zero, `stride` or `out_channels` is zero, or `input` is empty.
    pub fn new(
        input: Shape,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        bias: bool,
    ) -> Self {
        assert!(
            kernel % 2 == 1,
            "conv kernel size must be odd, got {kernel}"
        );
        assert!(stride >= 1, "conv stride must be at least 1");
        assert!(out_channels >= 1, "conv needs at least one output channel");
        assert!(!input.is_empty(), "conv input shape {input} is empty");
        let geom = ConvGeometry::same(input.h, input.w, input.c, kernel, stride);
        let lines_per_chunk = chunk_lines(&geom);
        Self {
            geom,
            out_channels,
            bias,
            lines_per_chunk,
            cols: Vec::new(),
            turned: Vec::new(),
            padded: Vec::new(),
            cached_input: None,
        }
    }

    /// Whether the column matrix is the input itself (1×1 kernel, stride 1).
    fn pointwise(&self) -> bool {
        self.geom.k == 1 && self.geom.stride == 1
    }

    /// Whether a direct kernel applies (3×3, stride 1, 4, 8 or 16 channels in and as many out,
    /// no bias; it still declines on a CPU without AVX-512, see [`direct_3x3`]).
    fn direct(&self) -> bool {
        let g = &self.geom;
        let thin = matches!(g.c, 4 | 8 | 16);
        g.k == 3 && g.stride == 1 && thin && self.out_channels == g.c && !self.bias
    }

    fn weight_len(&self) -> usize {
        self.geom.col_len() * self.out_channels
    }

    fn split<'a>(&self, params: &'a [f32]) -> (ArrayView2<'a, f32>, Option<ArrayView1<'a, f32>>) {
        let (w, b) = params.split_at(self.weight_len());
        let w = ArrayView2::from_shape((self.geom.col_len(), self.out_channels), w)
            .expect("weight slice matches the layer's param specs");
        (w, self.bias.then(|| ArrayView1::from(b)))
    }

    /// FLOPs of one matrix product of a pass over `n` samples: `2·n·oh·ow·k²·c_in·c_out`
    /// (saturating; only counted, see [`crate::convolution_totals`]).
    fn product_flops(&self, n: usize) -> u64 {
        let g = &self.geom;
        [n, g.rows_per_sample(), g.col_len(), self.out_channels]
            .iter()
            .fold(2u64, |f, &d| f.saturating_mul(d as u64))
    }

    /// The chunks of output lines of a batch of `n` samples, in order.
    fn chunks(&self, n: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        line_chunks(n * self.geom.oh, self.lines_per_chunk)
    }

    /// The input gradient of a stride-1 convolution, `dx = conv(dy, w′)`: a "same"
    /// convolution of the output gradient with the kernel turned by 180° and its channel
    /// axes swapped, `w′[ky, kx, co, ci] = w[k−1−ky, k−1−kx, ci, co]`, run as the forward
    /// pass runs (column matrix of `dy`, `k²·c_out` deep, times `w′`). The product
    /// `dY·Wᵀ` into a column matrix scattered back by [`col2im`] does the same
    /// multiply-adds, but `c_out` deep into a matrix `k²` times wider than `dx`, each entry
    /// then added in place: it ran at half the speed.
    fn transposed_input_gradient(&mut self, dy: &Tensor, w: &ArrayView2<'_, f32>) -> Tensor {
        let g = self.geom;
        debug_assert_eq!(g.stride, 1, "the transposed pass is the stride-1 gradient");
        let (k, cin, cout) = (g.k, g.c, self.out_channels);
        let mut turned = std::mem::take(&mut self.turned);
        turned.clear();
        for ky in 0..k {
            for kx in 0..k {
                let tap = ((k - 1 - ky) * k + (k - 1 - kx)) * cin;
                for co in 0..cout {
                    turned.extend((0..cin).map(|ci| w[[tap + ci, co]]));
                }
            }
        }
        let back = ConvGeometry::same(g.oh, g.ow, cout, k, 1);
        let n = dy.dim().0;
        let dys = dy.as_slice().expect("layer tensors are standard layout");
        if self.direct() {
            let mut dx = Tensor::zeros((n, g.h, g.w, cin));
            let dxs = dx
                .as_slice_mut()
                .expect("fresh tensors are standard layout");
            let (hw, padded) = ((g.h, g.w), &mut self.padded);
            if direct_3x3(DirectPass::Convolve, g.c, hw, dys, &turned, dxs, padded) {
                self.turned = turned;
                return dx;
            }
        }
        let turned_w = ArrayView2::from_shape((back.col_len(), cin), &turned[..])
            .expect("k·k·c_out × c_in values");
        let lines_per_chunk = chunk_lines(&back).min(self.lines_per_chunk);
        let mut dx = Array2::<f32>::zeros((n * g.h * g.w, cin));
        let mut buf = std::mem::take(&mut self.cols);
        for lines in line_chunks(n * back.oh, lines_per_chunk) {
            let rows = lines.len() * back.ow;
            buf.resize(rows * back.col_len(), 0.0);
            let rows_range = Slice::from(lines.start * back.ow..lines.end * back.ow);
            im2col(&back, dys, lines, &mut buf);
            let cols = ArrayView2::from_shape((rows, back.col_len()), &buf[..])
                .expect("chunk buffer sized above");
            let mut dx_chunk = dx.slice_axis_mut(Axis(0), rows_range);
            gemm(1.0, &cols, &turned_w, 0.0, &mut dx_chunk);
        }
        self.cols = buf;
        self.turned = turned;
        from_rows(dx, n, self.input_shape())
    }

    /// [`Layer::backward`], and the input gradient only when `input_grad`; timed for
    /// [`crate::convolution_totals`].
    fn backward_inner(
        &mut self,
        dy: Tensor,
        params: &[f32],
        grads: &mut [f32],
        input_grad: bool,
    ) -> Option<Tensor> {
        let started = Instant::now();
        let n = dy.dim().0;
        let dx = self.backward_products(dy, params, grads, input_grad);
        let products = if input_grad { 2 } else { 1 };
        count_convolution(started, self.product_flops(n).saturating_mul(products));
        dx
    }

    /// [`Conv2d::backward_inner`]'s arithmetic.
    fn backward_products(
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
        let g = self.geom;
        let n = x.dim().0;
        let (w, _) = self.split(params);
        let dy_rows = as_rows(&dy);
        let (gw, gb) = grads.split_at_mut(self.weight_len());
        if self.bias {
            for (g, s) in gb.iter_mut().zip(dy_rows.sum_axis(Axis(0))) {
                *g = s;
            }
        }
        if self.direct() {
            let (xs, dys) = (x.as_slice(), dy.as_slice());
            let (xs, dys) = (xs.expect("standard layout"), dys.expect("standard layout"));
            let (hw, padded) = ((g.h, g.w), &mut self.padded);
            if direct_3x3(DirectPass::WeightGrad, g.c, hw, xs, dys, gw, padded) {
                return input_grad.then(|| self.transposed_input_gradient(&dy, &w));
            }
        }
        let mut gw = ArrayViewMut2::from_shape((g.col_len(), self.out_channels), gw)
            .expect("grad slice matches the layer's param specs");
        if self.pointwise() {
            gemm(1.0, &as_rows(&x).t(), &dy_rows, 0.0, &mut gw);
            if !input_grad {
                return None;
            }
            let mut dx = Array2::<f32>::zeros((n * g.h * g.w, g.c));
            gemm(1.0, &dy_rows, &w.t(), 0.0, &mut dx.view_mut());
            return Some(from_rows(dx, n, self.input_shape()));
        }
        gw.fill(0.0);
        let xs = x.as_slice().expect("layer tensors are standard layout");
        // A thin layer gets here only when its direct kernels declined (no AVX-512): the
        // scattered path is the faster one for it.
        let transposed =
            input_grad && g.stride == 1 && self.out_channels >= TRANSPOSED_MIN_CHANNELS;
        let scattered = input_grad && !transposed;
        let mut dx = scattered.then(|| Tensor::zeros(x.raw_dim()));
        let mut dxs = dx.as_mut().map(|dx| {
            dx.as_slice_mut()
                .expect("fresh tensors are standard layout")
        });
        let mut buf = std::mem::take(&mut self.cols);
        for lines in self.chunks(n) {
            let rows = lines.len() * g.ow;
            buf.resize(rows * g.col_len(), 0.0);
            let dy_chunk =
                dy_rows.slice_axis(Axis(0), Slice::from(lines.start * g.ow..lines.end * g.ow));
            im2col(&g, xs, lines.clone(), &mut buf);
            let cols = ArrayView2::from_shape((rows, g.col_len()), &buf[..])
                .expect("chunk buffer sized above");
            gemm(1.0, &cols.t(), &dy_chunk, 1.0, &mut gw);
            let Some(dxs) = dxs.as_deref_mut() else {
                continue;
            };
            let mut dcols = ArrayViewMut2::from_shape((rows, g.col_len()), &mut buf[..])
                .expect("chunk buffer sized above");
            gemm(1.0, &dy_chunk, &w.t(), 0.0, &mut dcols);
            col2im(&g, &buf, lines, dxs);
        }
        self.cols = buf;
        if transposed {
            return Some(self.transposed_input_gradient(&dy, &w));
        }
        dx
    }
}

impl Layer for Conv2d {
    fn describe(&self) -> String {
        let g = &self.geom;
        let bias = if self.bias { " +bias" } else { "" };
        format!(
            "conv {k}x{k} {}→{} stride {}{bias}",
            g.c,
            self.out_channels,
            g.stride,
            k = g.k
        )
    }

    fn input_shape(&self) -> Shape {
        Shape::image(self.geom.h, self.geom.w, self.geom.c)
    }

    fn output_shape(&self) -> Shape {
        Shape::image(self.geom.oh, self.geom.ow, self.out_channels)
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        let k = self.geom.k;
        let (cin, cout) = (self.geom.c, self.out_channels);
        let glorot = Init::GlorotUniform {
            fan_in: k * k * cin,
            fan_out: k * k * cout,
        };
        let mut specs = vec![
            ParamSpec::new("weight", vec![k, k, cin, cout], glorot)
                .with_decay()
                .with_layout(Layout::ConvHwio),
        ];
        if self.bias {
            specs.push(ParamSpec::new("bias", vec![cout], Init::Zeros));
        }
        specs
    }

    /// `2·oh·ow·k·k·c_in·c_out` (every tap of the matrix product, padding taps included, a
    /// multiply-add counted as 2), plus `oh·ow·c_out` bias additions when there is a bias.
    fn flops_per_sample(&self) -> Option<u64> {
        let g = &self.geom;
        let out = checked_product(&[g.oh, g.ow, self.out_channels])?;
        let bias = if self.bias { out } else { 0 };
        checked_product(&[2, g.k, g.k, g.c])?
            .checked_mul(out)?
            .checked_add(bias)
    }

    /// Timed for [`crate::convolution_totals`].
    fn forward(&mut self, x: Tensor, params: &[f32], _state: &mut [f32], mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.input_shape(), "conv input shape");
        let started = Instant::now();
        self.cached_input = None;
        let g = self.geom;
        let n = x.dim().0;
        let (w, b) = self.split(params);
        let mut y = Array2::<f32>::zeros((n * g.rows_per_sample(), self.out_channels));
        let beta = match b {
            Some(b) => {
                y += &b;
                1.0
            }
            None => 0.0,
        };
        let xs = x.as_slice().expect("layer tensors are standard layout");
        let direct = self.direct() && {
            let ys = y.as_slice_mut().expect("fresh arrays are standard layout");
            let weights = &params[..self.weight_len()];
            let (hw, padded) = ((g.h, g.w), &mut self.padded);
            direct_3x3(DirectPass::Convolve, g.c, hw, xs, weights, ys, padded)
        };
        if direct {
            // y is written.
        } else if self.pointwise() {
            gemm(1.0, &as_rows(&x), &w, beta, &mut y.view_mut());
        } else {
            let mut buf = std::mem::take(&mut self.cols);
            for lines in self.chunks(n) {
                let rows = lines.len() * g.ow;
                buf.resize(rows * g.col_len(), 0.0);
                let rows_range = Slice::from(lines.start * g.ow..lines.end * g.ow);
                im2col(&g, xs, lines, &mut buf);
                let cols = ArrayView2::from_shape((rows, g.col_len()), &buf[..])
                    .expect("chunk buffer sized above");
                gemm(
                    1.0,
                    &cols,
                    &w,
                    beta,
                    &mut y.slice_axis_mut(Axis(0), rows_range),
                );
            }
            self.cols = buf;
        }
        if mode == Mode::Train {
            self.cached_input = Some(x);
        }
        let y = from_rows(y, n, self.output_shape());
        count_convolution(started, self.product_flops(n));
        y
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

    fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn random_tensor(n: usize, s: Shape, rng: &mut ChaCha8Rng) -> Tensor {
        Tensor::from_shape_vec((n, s.h, s.w, s.c), random(n * s.len(), rng)).unwrap()
    }

    fn random_params(layer: &dyn Layer, rng: &mut ChaCha8Rng) -> Vec<f32> {
        random(crate::param::total_len(&layer.param_specs()).unwrap(), rng)
    }

    /// Direct convolution with explicit zero padding, in `f64`.
    fn naive(
        x: &Tensor,
        params: &[f32],
        cout: usize,
        k: usize,
        stride: usize,
        bias: bool,
    ) -> Tensor {
        let (n, h, w, cin) = x.dim();
        let p = k / 2;
        let oh = (h + 2 * p - k) / stride + 1;
        let ow = (w + 2 * p - k) / stride + 1;
        let weight = |ky: usize, kx: usize, ci: usize, co: usize| {
            f64::from(params[((ky * k + kx) * cin + ci) * cout + co])
        };
        Tensor::from_shape_fn((n, oh, ow, cout), |(b, oy, ox, co)| {
            let mut acc = if bias {
                f64::from(params[k * k * cin * cout + co])
            } else {
                0.0
            };
            for ky in 0..k {
                for kx in 0..k {
                    let iy = (oy * stride + ky) as isize - p as isize;
                    let ix = (ox * stride + kx) as isize - p as isize;
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        continue;
                    }
                    for ci in 0..cin {
                        let v = f64::from(x[[b, iy as usize, ix as usize, ci]]);
                        acc += v * weight(ky, kx, ci, co);
                    }
                }
            }
            acc as f32
        })
    }

    /// (input shape, out channels, kernel, stride, bias)
    const CONFIGS: [(Shape, usize, usize, usize, bool); 17] = [
        (Shape::image(5, 4, 3), 2, 1, 1, true),
        (Shape::image(5, 4, 3), 2, 1, 2, false),
        (Shape::image(5, 6, 2), 3, 3, 1, true),
        (Shape::image(5, 6, 2), 3, 3, 1, false),
        (Shape::image(6, 5, 3), 2, 3, 2, true),
        (Shape::image(7, 6, 2), 4, 3, 2, false),
        (Shape::image(6, 7, 2), 3, 5, 1, true),
        (Shape::image(7, 5, 3), 2, 5, 2, false),
        (Shape::image(2, 3, 2), 2, 5, 1, true),
        // Wide enough for the turned-kernel input gradient (TRANSPOSED_MIN_CHANNELS).
        (Shape::image(3, 4, 2), 32, 3, 1, false),
        (Shape::image(2, 3, 3), 33, 5, 1, true),
        // The direct kernels: single vectors, and a stretch of 8 vectors and one.
        (Shape::image(5, 8, 4), 4, 3, 1, false),
        (Shape::image(3, 36, 4), 4, 3, 1, false),
        (Shape::image(4, 6, 8), 8, 3, 1, false),
        (Shape::image(2, 18, 8), 8, 3, 1, false),
        // 16 channels: stretches of 16, 8, 4 and 1 pixels.
        (Shape::image(2, 29, 16), 16, 3, 1, false),
        (Shape::image(3, 5, 16), 16, 3, 1, false),
    ];

    #[test]
    fn forward_matches_direct_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (shape, cout, k, stride, bias) in CONFIGS {
            let mut layer = Conv2d::new(shape, cout, k, stride, bias);
            let x = random_tensor(3, shape, &mut rng);
            let params = random_params(&layer, &mut rng);
            let want = naive(&x, &params, cout, k, stride, bias);
            // One chunk for the whole batch, one output line per chunk, uneven chunks.
            for lines_per_chunk in [layer.lines_per_chunk, 1, 2] {
                layer.lines_per_chunk = lines_per_chunk;
                for mode in [Mode::Train, Mode::Eval] {
                    let y = layer.forward(x.clone(), &params, &mut [], mode);
                    assert_eq!(y.dim(), want.dim(), "{}", layer.describe());
                    let err = (&y - &want).iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    assert!(err < 1e-5, "{}: {mode:?} max error {err}", layer.describe());
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (shape, cout, k, stride, bias) in CONFIGS {
            let mut layer = Conv2d::new(shape, cout, k, stride, bias);
            let x = random_tensor(2, shape, &mut rng);
            let params = random_params(&layer, &mut rng);
            for lines_per_chunk in [layer.lines_per_chunk, 2] {
                layer.lines_per_chunk = lines_per_chunk;
                let (input, param) = check_layer(&mut layer, &x, &params, &[], 1e-2, 0);
                let what = format!("{} ({lines_per_chunk} lines per chunk)", layer.describe());
                input.assert_within(1e-2, &format!("{what} input"));
                param.assert_within(1e-2, &format!("{what} params"));
            }
        }
    }

    #[test]
    fn backward_twice_with_same_forward_is_reproducible() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let shape = Shape::image(6, 6, 3);
        let mut layer = Conv2d::new(shape, 4, 3, 2, true);
        let x = random_tensor(2, shape, &mut rng);
        let params = random_params(&layer, &mut rng);
        let dy = random_tensor(2, layer.output_shape(), &mut rng);
        let mut run = || {
            layer.forward(x.clone(), &params, &mut [], Mode::Train);
            let mut grads = vec![f32::NAN; params.len()];
            let dx = layer.backward(dy.clone(), &params, &mut grads);
            (dx, grads)
        };
        let a = run();
        let b = run();
        assert_eq!(a, b);
        assert!(a.1.iter().all(|g| g.is_finite()));
    }

    #[test]
    #[should_panic(expected = "backward follows a training forward")]
    fn backward_after_eval_forward_panics() {
        let shape = Shape::image(4, 4, 2);
        let mut layer = Conv2d::new(shape, 2, 3, 1, false);
        let params = vec![0.1; 3 * 3 * 2 * 2];
        let x = Tensor::zeros((1, 4, 4, 2));
        layer.forward(x, &params, &mut [], Mode::Eval);
        layer.backward(
            Tensor::zeros((1, 4, 4, 2)),
            &params,
            &mut vec![0.0; params.len()],
        );
    }

    #[test]
    fn specs_flops_and_description() {
        let layer = Conv2d::new(Shape::image(32, 32, 16), 32, 3, 2, false);
        assert_eq!(layer.output_shape(), Shape::image(16, 16, 32));
        assert_eq!(layer.describe(), "conv 3x3 16→32 stride 2");
        let specs = layer.param_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].shape, vec![3, 3, 16, 32]);
        assert!(specs[0].decay);
        assert_eq!(specs[0].layout, Layout::ConvHwio);
        assert_eq!(
            specs[0].init,
            Init::GlorotUniform {
                fan_in: 144,
                fan_out: 288
            }
        );
        assert_eq!(layer.flops_per_sample(), Some(2 * 16 * 16 * 144 * 32));
        let biased = Conv2d::new(Shape::image(28, 28, 1), 32, 5, 1, true);
        assert_eq!(biased.output_shape(), Shape::image(28, 28, 32));
        assert_eq!(biased.param_specs()[1].shape, vec![32]);
        assert!(!biased.param_specs()[1].decay);
        assert_eq!(
            biased.flops_per_sample(),
            Some((2 * 28 * 28 * 25 * 32 + 28 * 28 * 32) as u64)
        );
    }

    /// Each pass adds its matrix products' FLOPs and some time to the process's totals
    /// (other tests may run convolutions meanwhile, so the totals grow by at least that).
    #[test]
    fn passes_are_counted_in_the_convolution_totals() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let shape = Shape::image(6, 5, 3);
        let mut layer = Conv2d::new(shape, 4, 3, 2, false);
        let params = random_params(&layer, &mut rng);
        let x = random_tensor(2, shape, &mut rng);
        // 2 samples × 3×3 output pixels × 27 taps × 4 channels, 2 FLOPs each.
        let product = 2 * 2 * 9 * 27 * 4;
        let before = crate::convolution_totals();
        let y = layer.forward(x.clone(), &params, &mut [], Mode::Train);
        let after_forward = crate::convolution_totals();
        assert!(after_forward.flops - before.flops >= product);
        assert!(after_forward.busy > before.busy);
        let mut grads = vec![0.0; params.len()];
        layer.backward(y.clone(), &params, &mut grads);
        let after_backward = crate::convolution_totals();
        assert!(after_backward.flops - after_forward.flops >= 2 * product);
        layer.forward(x, &params, &mut [], Mode::Train);
        let before_params = crate::convolution_totals();
        layer.backward_params(y, &params, &mut grads);
        assert!(crate::convolution_totals().flops - before_params.flops >= product);
    }

    fn time_fwd_bwd(
        shape: Shape,
        cout: usize,
        k: usize,
        stride: usize,
        batch: usize,
    ) -> (f64, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut layer = Conv2d::new(shape, cout, k, stride, false);
        let x = random_tensor(batch, shape, &mut rng);
        let params = random_params(&layer, &mut rng);
        let dy = random_tensor(batch, layer.output_shape(), &mut rng);
        let mut grads = vec![0.0; params.len()];
        let mut step = || {
            let y = layer.forward(x.clone(), &params, &mut [], Mode::Train);
            let dx = layer.backward(dy.clone(), &params, &mut grads);
            std::hint::black_box((y, dx));
        };
        // Warm up: the first large allocations are fresh pages from the kernel.
        for _ in 0..5 {
            step();
        }
        // The fastest of several runs: other processes only ever slow a run down.
        let secs = (0..30)
            .map(|_| {
                let start = std::time::Instant::now();
                step();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let flops = (layer.flops_per_sample().unwrap() * batch as u64 * 3) as f64;
        (secs, flops / secs / 1e9)
    }

    /// Forward + backward throughput of ResNet-20 (and FEMNIST CNN) convolutions at batch 32
    /// (GFLOP/s from `flops_per_sample · batch · 3`, best of 30 runs). Run with
    /// `cargo test --release -p flotilla-nn --lib conv2d::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a correctness check"]
    fn throughput() {
        // The first layer timed in a process runs ~1.5× slower whatever its warm-up (its
        // buffers are the process's first large allocations): time a throwaway one first.
        time_fwd_bwd(Shape::image(32, 32, 16), 16, 3, 1, 32);
        for (shape, cout, k, stride) in [
            (Shape::image(32, 32, 16), 16, 3, 1),
            (Shape::image(32, 32, 3), 16, 3, 1),
            (Shape::image(32, 32, 16), 32, 3, 2),
            (Shape::image(32, 32, 16), 32, 1, 2),
            (Shape::image(32, 32, 16), 16, 1, 1),
            (Shape::image(16, 16, 32), 32, 3, 1),
            (Shape::image(8, 8, 64), 64, 3, 1),
            (Shape::image(28, 28, 1), 32, 5, 1),
            (Shape::image(14, 14, 32), 64, 5, 1),
        ] {
            let (secs, gflops) = time_fwd_bwd(shape, cout, k, stride, 32);
            println!(
                "conv {k}x{k} {shape} → {cout} stride {stride}, batch 32: {:.2} ms fwd+bwd, \
                 {gflops:.1} GFLOP/s",
                secs * 1e3
            );
        }
    }
}
