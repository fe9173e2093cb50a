//! Direct 3×3 stride-1 convolutions from `C` channels to `C`, `C` 4, 8 or 16, on AVX-512.
//!
//! The column-matrix path multiplies `[rows, 9·C]` by `[9·C, C]`: a product 4 or 8 columns
//! wide fills a quarter or half of the matrix kernel's vectors, and the column matrix (nine
//! copies of the input) costs more to build than the product; `resnet20:0.25`'s 4- and
//! 8-channel convolutions ran at 6 and 18 % of peak. Here one 16-lane vector holds the `C`
//! channels of `16 / C` neighbouring output pixels: for each of the 9 taps, the pixels under
//! it are one load, and each input channel is spread over its pixel's lanes by a permute
//! and multiplied by that channel's `C` weights repeated per pixel. Eight such vectors
//! accumulate side by side, so the fused multiply-adds do not wait on each other. The input
//! gradient is the same convolution of the output gradient with the turned kernel; the
//! weight gradient sums the same products the other way round.
//!
//! With 16 channels a vector is one pixel's channels, and the matrix kernel's 16-wide
//! product ran at 41 % of peak (`resnet20`'s first stage, a third of its convolutions'
//! work, took more than half their time): there each input value is broadcast to the
//! vector of its channel's 16 weights, for a stretch of up to 16 pixels accumulated side by
//! side, and the weight gradient keeps one sample's input and output gradient in cache
//! for all nine taps.
//!
//! Each output value sums its `9·C` products in a fixed order (taps in kernel order,
//! channels in order), so the same inputs give the same bits; the order differs from the
//! column-matrix product's, so the two paths agree within rounding (tested). CPUs without
//! AVX-512 take the column-matrix path.

use super::conv2d::DirectPass;
use pulp::core_arch::x86::Avx512f;
use std::arch::x86_64::{__m512, __m512i};
use std::marker::PhantomData;

/// Vectors accumulated side by side (a stretch of `BLOCK · 16 / C` output pixels).
const BLOCK: usize = 8;

/// The channels of the broadcast kernels ([`WideForward`], [`WideWeightGrad`]): one vector.
const WIDE: usize = 16;

/// `pass` on a batch of `h × w × C` NHWC samples `x`, padding 1, writing `out`:
/// - [`DirectPass::Convolve`]: `out = conv(x, other)`, `other` the `[3, 3, C, C]` (HWIO)
///   kernel.
/// - [`DirectPass::WeightGrad`]: the kernel's gradient, `out[ky, kx, ci, co] = Σ
///   x[·+ky−1, ·+kx−1, ci] · other[·, co]` over every output pixel of the batch, `other` the
///   output gradient. With 4 or 8 channels one vector holds the products of `16 / C` pixels
///   × `C` output channels for one tap and input channel; each of the `9·C` sums runs over
///   the pixel groups in order (sample by sample, a kernel row per pass over the sample),
///   and its pixel lanes are added last, in order. With 16 a vector holds the 16 output
///   channels' sums, each over the pixels in order.
///
/// `padded` is scratch space. Returns `false`, touching nothing, when this CPU has no
/// AVX-512, `C` is not 4, 8 or 16, or `w` is not a multiple of `16 / C` (the caller then
/// takes the column-matrix path).
pub(super) fn run<const C: usize>(
    pass: DirectPass,
    (h, w): (usize, usize),
    x: &[f32],
    other: &[f32],
    out: &mut [f32],
    padded: &mut Vec<f32>,
) -> bool {
    let (activation, kernel) = match pass {
        DirectPass::Convolve => (out.len(), other.len()),
        DirectPass::WeightGrad => (other.len(), out.len()),
    };
    let Some(simd) = covered::<C>((h, w), [x.len(), activation], kernel) else {
        return false;
    };
    let operands = ((h, w), x, other, out, padded);
    match (pass, C == WIDE) {
        (DirectPass::Convolve, false) => Pass::<Forward<C>>::run(simd, operands),
        (DirectPass::Convolve, true) => Pass::<WideForward>::run(simd, operands),
        (DirectPass::WeightGrad, false) => Pass::<WeightGrad<C>>::run(simd, operands),
        (DirectPass::WeightGrad, true) => Pass::<WideWeightGrad>::run(simd, operands),
    }
    true
}

/// This CPU's AVX-512, if it has it and the kernels cover the case: `C` is 4, 8 or 16, `w` a
/// multiple of `16 / C`, the two activations `lens` equally long and whole `h × w × C`
/// samples, the kernel `9·C·C` values.
fn covered<const C: usize>(
    (h, w): (usize, usize),
    lens: [usize; 2],
    kernel: usize,
) -> Option<pulp::x86::V4> {
    let covered = (C == 4 || C == 8 || C == WIDE) && w.is_multiple_of(16 / C);
    let sample = h * w * C;
    let whole = sample > 0 && lens[0].is_multiple_of(sample);
    let fits = whole && lens[0] == lens[1] && kernel == 9 * C * C;
    (covered && fits).then(pulp::x86::V4::try_new).flatten()
}

/// Copies one `h × w × C` sample into `padded` inside a zero border one pixel wide and
/// returns it: one sample at a time, so the scratch space stays one image (an evaluation
/// batch of 256 `resnet20` samples would otherwise pad 19 MB per layer) and the image is
/// still in cache when the kernel reads it.
#[inline(always)]
fn pad<'p, const C: usize>(
    (h, w): (usize, usize),
    sample: &[f32],
    padded: &'p mut Vec<f32>,
) -> &'p [f32] {
    let stride = (w + 2) * C;
    padded.resize((h + 2) * stride, 0.0);
    padded[..stride].fill(0.0);
    padded[(h + 1) * stride..].fill(0.0);
    for (to, src) in padded[stride..]
        .chunks_exact_mut(stride)
        .zip(sample.chunks_exact(w * C))
    {
        to[..C].fill(0.0);
        to[C..][..w * C].copy_from_slice(src);
        to[(w + 1) * C..].fill(0.0);
    }
    padded
}

/// The index vectors that spread input channel `ci` of each pixel over that pixel's lanes.
#[inline(always)]
fn spreads<const C: usize>() -> [__m512i; C] {
    std::array::from_fn(|ci| {
        let lanes: [i32; 16] = std::array::from_fn(|lane| (lane / C * C + ci) as i32);
        pulp::cast::<[i32; 16], __m512i>(lanes)
    })
}

/// Each input channel `ci` of each pixel of `x` spread over that pixel's lanes: in-lane
/// permutes for 4 channels (one instruction each), cross-lane ones by `spreads` for 8.
#[inline(always)]
fn spread_all<const C: usize>(avx: Avx512f, x: __m512, spreads: &[__m512i; C]) -> [__m512; C] {
    if C == 4 {
        let four = [
            avx._mm512_permute_ps::<0b00_00_00_00>(x),
            avx._mm512_permute_ps::<0b01_01_01_01>(x),
            avx._mm512_permute_ps::<0b10_10_10_10>(x),
            avx._mm512_permute_ps::<0b11_11_11_11>(x),
        ];
        return std::array::from_fn(|ci| four[ci]);
    }
    std::array::from_fn(|ci| avx._mm512_permutexvar_ps(spreads[ci], x))
}

/// The 16 values of `values` from `at` as a vector.
#[inline(always)]
fn load(values: &[f32], at: usize) -> __m512 {
    let v: &[f32; 16] = values[at..at + 16].try_into().expect("16 values");
    pulp::cast::<[f32; 16], __m512>(*v)
}

/// A pass's operands: the `h × w` of a sample, the samples `x`, the other operand (the
/// kernel, or the output gradient), the output (overwritten) and the scratch space.
type Operands<'a> = (
    (usize, usize),
    &'a [f32],
    &'a [f32],
    &'a mut [f32],
    &'a mut Vec<f32>,
);

/// One kernel pass on checked [`Operands`], run by `V4::vectorize` (compiled for AVX-512);
/// `K` names the pass.
struct Pass<'a, K> {
    avx: Avx512f,
    operands: Operands<'a>,
    pass: PhantomData<K>,
}

impl<'a, K> Pass<'a, K>
where
    Self: pulp::WithSimd<Output = ()>,
{
    /// Runs the pass on this CPU's AVX-512.
    fn run(simd: pulp::x86::V4, operands: Operands<'a>) {
        let pass = Self {
            avx: simd.avx512f,
            operands,
            pass: PhantomData,
        };
        <pulp::x86::V4 as pulp::Simd>::vectorize(simd, pass);
    }
}

/// [`DirectPass::Convolve`] with 4 or 8 channels (permutes spread each input channel over its pixel's
/// lanes).
struct Forward<const C: usize>;

/// [`DirectPass::WeightGrad`] with 4 or 8 channels.
struct WeightGrad<const C: usize>;

/// [`DirectPass::Convolve`] with [`WIDE`] channels (input values broadcast).
struct WideForward;

/// [`DirectPass::WeightGrad`] with [`WIDE`] channels: one vector holds the [`WIDE`] output
/// channels' sums for a tap and an input channel, each summed over the batch's output
/// pixels in order (one sample at a time for all nine taps, so its input and output
/// gradient stay in cache).
struct WideWeightGrad;

impl<const C: usize> pulp::WithSimd for Pass<'_, Forward<C>> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            operands: ((h, w), x, weights, y, padded),
            ..
        } = self;
        // taps[t][ci]: the weights of input channel ci at tap t for the C output channels,
        // repeated for the pixels of a vector.
        let taps: [[__m512; C]; 9] = std::array::from_fn(|t| {
            std::array::from_fn(|ci| {
                let row = &weights[(t * C + ci) * C..][..C];
                pulp::cast::<[f32; 16], __m512>(std::array::from_fn(|lane| row[lane % C]))
            })
        });
        let spreads = spreads::<C>();
        let stride = (w + 2) * C;
        let pixels = 16 / C;
        for (sample, out) in x.chunks_exact(h * w * C).zip(y.chunks_exact_mut(h * w * C)) {
            let img = pad::<C>((h, w), sample, padded);
            for (oy, out_row) in out.chunks_exact_mut(w * C).enumerate() {
                let rows = &img[oy * stride..][..3 * stride];
                let mut ox = 0;
                while ox < w {
                    let (from, to) = (ox * C, (ox * C + 16 * BLOCK).min(w * C));
                    let out = &mut out_row[from..to];
                    if to - from == 16 * BLOCK {
                        stretch::<C, BLOCK>(avx, rows, stride, ox, &taps, &spreads, out);
                        ox += BLOCK * pixels;
                    } else {
                        stretch::<C, 1>(avx, rows, stride, ox, &taps, &spreads, &mut out[..16]);
                        ox += pixels;
                    }
                }
            }
        }
    }
}

/// `N` vectors of output pixels of one row from `ox` on, written into `out`; `rows` holds
/// the three padded input rows under it (`stride` values apart).
#[inline(always)]
fn stretch<const C: usize, const N: usize>(
    avx: Avx512f,
    rows: &[f32],
    stride: usize,
    ox: usize,
    taps: &[[__m512; C]; 9],
    spreads: &[__m512i; C],
    out: &mut [f32],
) {
    let mut acc = [avx._mm512_setzero_ps(); N];
    for ky in 0..3 {
        for kx in 0..3 {
            let tap = &taps[ky * 3 + kx];
            for (v, acc) in acc.iter_mut().enumerate() {
                let x = load(rows, ky * stride + (ox + kx) * C + 16 * v);
                for (spread, w) in spread_all::<C>(avx, x, spreads).into_iter().zip(tap) {
                    *acc = avx._mm512_fmadd_ps(spread, *w, *acc);
                }
            }
        }
    }
    for (acc, out) in acc.into_iter().zip(out.chunks_exact_mut(16)) {
        out.copy_from_slice(&pulp::cast::<__m512, [f32; 16]>(acc));
    }
}

impl<const C: usize> pulp::WithSimd for Pass<'_, WeightGrad<C>> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            operands: ((h, w), x, dy, grad, padded),
            ..
        } = self;
        let spreads = spreads::<C>();
        let stride = (w + 2) * C;
        // sums[ky][kx][ci]: carried from sample to sample, so each lane sums its products
        // in the order of the batch's pixels.
        let mut sums = [[[avx._mm512_setzero_ps(); C]; 3]; 3];
        for (sample, dy_sample) in x.chunks_exact(h * w * C).zip(dy.chunks_exact(h * w * C)) {
            let img = pad::<C>((h, w), sample, padded);
            for (ky, sums) in sums.iter_mut().enumerate() {
                let mut acc = *sums;
                for (oy, dy_row) in dy_sample.chunks_exact(w * C).enumerate() {
                    let row = &img[(oy + ky) * stride..][..stride];
                    for (group, d) in dy_row.chunks_exact(16).enumerate() {
                        let d = load(d, 0);
                        for (kx, acc) in acc.iter_mut().enumerate() {
                            let x = load(row, kx * C + 16 * group);
                            let spread = spread_all::<C>(avx, x, &spreads);
                            for (acc, spread) in acc.iter_mut().zip(spread) {
                                *acc = avx._mm512_fmadd_ps(spread, d, *acc);
                            }
                        }
                    }
                }
                *sums = acc;
            }
        }
        for (ky, acc) in sums.iter().enumerate() {
            for (kx, acc) in acc.iter().enumerate() {
                for (ci, &sums) in acc.iter().enumerate() {
                    let lanes = pulp::cast::<__m512, [f32; 16]>(sums);
                    let out = &mut grad[((ky * 3 + kx) * C + ci) * C..][..C];
                    for (co, g) in out.iter_mut().enumerate() {
                        *g = lanes.iter().skip(co).step_by(C).sum();
                    }
                }
            }
        }
    }
}

impl pulp::WithSimd for Pass<'_, WideForward> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            operands: ((h, w), x, weights, y, padded),
            ..
        } = self;
        let stride = (w + 2) * WIDE;
        let sample = h * w * WIDE;
        for (x, out) in x.chunks_exact(sample).zip(y.chunks_exact_mut(sample)) {
            let img = pad::<WIDE>((h, w), x, padded);
            for (oy, out_row) in out.chunks_exact_mut(w * WIDE).enumerate() {
                let rows = &img[oy * stride..][..3 * stride];
                let mut ox = 0;
                while ox < w {
                    let out = &mut out_row[ox * WIDE..];
                    ox += match w - ox {
                        16.. => wide_stretch::<16>(avx, rows, stride, ox, weights, out),
                        8.. => wide_stretch::<8>(avx, rows, stride, ox, weights, out),
                        4.. => wide_stretch::<4>(avx, rows, stride, ox, weights, out),
                        _ => wide_stretch::<1>(avx, rows, stride, ox, weights, out),
                    };
                }
            }
        }
    }
}

/// `N` output pixels of one row from `ox` on, written to the start of `out`; `rows` holds
/// the three padded input rows under them (`stride` values apart). Each input value is
/// broadcast and multiplied by its channel's weights for the [`WIDE`] output channels.
/// Returns `N`.
#[inline(always)]
fn wide_stretch<const N: usize>(
    avx: Avx512f,
    rows: &[f32],
    stride: usize,
    ox: usize,
    weights: &[f32],
    out: &mut [f32],
) -> usize {
    let mut acc = [avx._mm512_setzero_ps(); N];
    for ky in 0..3 {
        for kx in 0..3 {
            let pixels: &[f32] = &rows[ky * stride + (ox + kx) * WIDE..][..N * WIDE];
            let tap = &weights[(ky * 3 + kx) * WIDE * WIDE..][..WIDE * WIDE];
            for ci in 0..WIDE {
                let weight = load(tap, ci * WIDE);
                for (p, acc) in acc.iter_mut().enumerate() {
                    let x = avx._mm512_set1_ps(pixels[p * WIDE + ci]);
                    *acc = avx._mm512_fmadd_ps(x, weight, *acc);
                }
            }
        }
    }
    for (acc, out) in acc.into_iter().zip(out.chunks_exact_mut(WIDE)) {
        out.copy_from_slice(&pulp::cast::<__m512, [f32; 16]>(acc));
    }
    N
}

impl pulp::WithSimd for Pass<'_, WideWeightGrad> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            operands: ((h, w), x, dy, grad, padded),
            ..
        } = self;
        let stride = (w + 2) * WIDE;
        let sample = h * w * WIDE;
        let mut sums = [[avx._mm512_setzero_ps(); WIDE]; 9];
        for (x, dy_sample) in x.chunks_exact(sample).zip(dy.chunks_exact(sample)) {
            let img = pad::<WIDE>((h, w), x, padded);
            for (tap, sums) in sums.iter_mut().enumerate() {
                let (ky, kx) = (tap / 3, tap % 3);
                let mut acc = *sums;
                for (oy, dy_row) in dy_sample.chunks_exact(w * WIDE).enumerate() {
                    let row = &img[(oy + ky) * stride + kx * WIDE..][..w * WIDE];
                    for (pixel, d) in row.chunks_exact(WIDE).zip(dy_row.chunks_exact(WIDE)) {
                        let d = load(d, 0);
                        for (acc, &x) in acc.iter_mut().zip(pixel) {
                            *acc = avx._mm512_fmadd_ps(avx._mm512_set1_ps(x), d, *acc);
                        }
                    }
                }
                *sums = acc;
            }
        }
        for (sums, grad) in sums.iter().flatten().zip(grad.chunks_exact_mut(WIDE)) {
            grad.copy_from_slice(&pulp::cast::<__m512, [f32; 16]>(*sums));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The value of input pixel `(iy, ix)` of sample `s`, channel `ci` (of `c`), for output
    /// pixel `p` of an `h × w` sample at tap `t`, or `None` in the padding.
    fn tap_input(
        x: &[f32],
        (h, w, c): (usize, usize, usize),
        p: usize,
        t: usize,
        ci: usize,
    ) -> Option<f64> {
        let (s, oy, ox) = (p / (h * w), p / w % h, p % w);
        let (iy, ix) = ((oy + t / 3).wrapping_sub(1), (ox + t % 3).wrapping_sub(1));
        (iy < h && ix < w).then(|| f64::from(x[((s * h + iy) * w + ix) * c + ci]))
    }

    /// The forward convolution and the weight gradient match `f64` references within
    /// `f32` rounding, at widths of whole stretches, single vectors and both (and, for 16
    /// channels, widths of no whole vector of 4 pixels); on a CPU without AVX-512 they
    /// decline.
    fn matches_references<const C: usize>() {
        let mut rng = ChaCha8Rng::seed_from_u64(21 + C as u64);
        let sizes = [
            (2, 3, 4),
            (1, 5, 32),
            (2, 4, 44),
            (1, 1, 8),
            (3, 2, 16),
            (2, 3, 7),
        ];
        for (n, h, w) in sizes.into_iter().filter(|&(_, _, w)| w % (16 / C) == 0) {
            let x = random(n * h * w * C, &mut rng);
            let weights = random(9 * C * C, &mut rng);
            let dy = random(x.len(), &mut rng);
            let mut y = vec![f32::NAN; x.len()];
            let mut grad = vec![f32::NAN; 9 * C * C];
            let mut padded = Vec::new();
            let forward = run::<C>(
                DirectPass::Convolve,
                (h, w),
                &x,
                &weights,
                &mut y,
                &mut padded,
            );
            let weight_grad = run::<C>(
                DirectPass::WeightGrad,
                (h, w),
                &x,
                &dy,
                &mut grad,
                &mut padded,
            );
            if pulp::x86::V4::try_new().is_none() {
                assert!(!forward && !weight_grad);
                return;
            }
            assert!(forward && weight_grad, "declined on AVX-512");
            for (p, px) in y.chunks_exact(C).enumerate() {
                for (co, &got) in px.iter().enumerate() {
                    let want: f64 = (0..9 * C)
                        .filter_map(|i| {
                            let v = tap_input(&x, (h, w, C), p, i / C, i % C)?;
                            Some(v * f64::from(weights[i * C + co]))
                        })
                        .sum();
                    assert!(
                        (f64::from(got) - want).abs() < 1e-5,
                        "{n}×{h}×{w}: {got} vs {want}"
                    );
                }
            }
            for (index, &got) in grad.iter().enumerate() {
                let (t, ci, co) = (index / (C * C), index / C % C, index % C);
                let want: f64 = (0..n * h * w)
                    .filter_map(|p| {
                        Some(tap_input(&x, (h, w, C), p, t, ci)? * f64::from(dy[p * C + co]))
                    })
                    .sum();
                assert!(
                    (f64::from(got) - want).abs() < 1e-4,
                    "{n}×{h}×{w} [{index}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn four_channels_match_references() {
        matches_references::<4>();
    }

    #[test]
    fn eight_channels_match_references() {
        matches_references::<8>();
    }

    #[test]
    fn sixteen_channels_match_references() {
        matches_references::<16>();
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let (x, weights) = (vec![0.0; 3 * 6 * 4], vec![0.0; 9 * 4 * 4]);
        let mut y = vec![1.0; x.len()];
        // Width not a multiple of 4 pixels; 32 channels.
        assert!(!run::<4>(
            DirectPass::Convolve,
            (3, 6),
            &x,
            &weights,
            &mut y,
            &mut Vec::new()
        ));
        let weights32 = vec![0.0; 9 * 32 * 32];
        let mut y32 = vec![1.0; 16 * 32];
        assert!(!run::<32>(
            DirectPass::Convolve,
            (1, 16),
            &[0.0; 16 * 32],
            &weights32,
            &mut y32,
            &mut Vec::new()
        ));
        assert!(y.iter().chain(&y32).all(|&v| v == 1.0));
    }
}
