//! A direct 3×3 stride-1 convolution from 4 channels to 4, on AVX-512.
//!
//! The column-matrix path multiplies `[rows, 36]` by `[36, 4]`: a product 4 columns wide
//! fills a quarter of the matrix kernel's vectors, and the column matrix (nine copies of the
//! input) costs more to build than the product; `resnet20:0.25`'s six 4-channel
//! convolutions ran at 6 % of peak. Here one 16-lane vector holds the 4 channels of 4
//! neighbouring output pixels: for each of the 9 taps, the 4 input pixels under it are one
//! load, and each input channel is spread over its pixel's lanes by an in-lane permute and
//! multiplied by that channel's 4 weights repeated 4 times. Eight such vectors (a 32-pixel
//! stretch of an output row) accumulate side by side, so the fused multiply-adds do not wait
//! on each other.
//!
//! Each output value sums its 36 products in a fixed order (taps in kernel order, channels
//! in order), so the same inputs give the same bits; the order differs from the column-
//! matrix product's, so the two paths agree within rounding (tested). CPUs without AVX-512
//! take the column-matrix path.

use std::arch::x86_64::__m512;

/// Channels in and out.
const C: usize = 4;
/// Output pixels per vector.
const PIXELS: usize = 16 / C;
/// Vectors accumulated side by side (a stretch of `BLOCK · PIXELS` output pixels).
const BLOCK: usize = 8;

/// `y = conv(x, w)` for a batch of `h × w × 4` NHWC samples `x` and `y`, padding 1, with
/// `weights` the `[3, 3, 4, 4]` (HWIO) kernel; `y` is overwritten. `padded` is scratch
/// space. Returns `false`, touching nothing, when this CPU has no AVX-512 or `w` is not a
/// multiple of 4 (the caller then takes the column-matrix path).
pub(super) fn conv3x3_4to4(
    (h, w): (usize, usize),
    x: &[f32],
    weights: &[f32],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) -> bool {
    let Some(simd) = pulp::x86::V4::try_new() else {
        return false;
    };
    if w % PIXELS != 0 || x.len() != y.len() || weights.len() != 9 * C * C {
        return false;
    }
    <pulp::x86::V4 as pulp::Simd>::vectorize(
        simd,
        Direct {
            avx: simd.avx512f,
            hw: (h, w),
            x,
            weights,
            y,
            padded,
        },
    );
    true
}

/// [`conv3x3_4to4`] on checked inputs, run by `V4::vectorize` (compiled for AVX-512).
struct Direct<'a> {
    avx: pulp::core_arch::x86::Avx512f,
    hw: (usize, usize),
    x: &'a [f32],
    weights: &'a [f32],
    y: &'a mut [f32],
    padded: &'a mut Vec<f32>,
}

impl pulp::WithSimd for Direct<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            hw: (h, w),
            x,
            weights,
            y,
            padded,
        } = self;
        // taps[t][ci]: the weights of input channel ci at tap t for the 4 output channels,
        // repeated for the 4 pixels of a vector.
        let taps: [[__m512; C]; 9] = std::array::from_fn(|t| {
            std::array::from_fn(|ci| {
                let row = &weights[(t * C + ci) * C..][..C];
                pulp::cast::<[f32; 16], __m512>(std::array::from_fn(|lane| row[lane % C]))
            })
        });
        let stride = (w + 2) * C;
        padded.clear();
        padded.resize((h + 2) * stride, 0.0);
        for (sample, out) in x.chunks_exact(h * w * C).zip(y.chunks_exact_mut(h * w * C)) {
            // The sample inside a zero border (the border is never written).
            for (row, src) in sample.chunks_exact(w * C).enumerate() {
                padded[(row + 1) * stride + C..][..w * C].copy_from_slice(src);
            }
            for (oy, out_row) in out.chunks_exact_mut(w * C).enumerate() {
                let rows = &padded[oy * stride..][..3 * stride];
                let mut ox = 0;
                while ox < w {
                    if w - ox >= BLOCK * PIXELS {
                        stretch::<BLOCK>(avx, rows, stride, ox, &taps, out_row);
                        ox += BLOCK * PIXELS;
                    } else {
                        stretch::<1>(avx, rows, stride, ox, &taps, out_row);
                        ox += PIXELS;
                    }
                }
            }
        }
    }
}

/// The `N · 4` output pixels of one row from `ox` on, written into `out_row`; `rows` holds
/// the three padded input rows under it (`stride` values apart).
#[inline(always)]
fn stretch<const N: usize>(
    avx: pulp::core_arch::x86::Avx512f,
    rows: &[f32],
    stride: usize,
    ox: usize,
    taps: &[[__m512; C]; 9],
    out_row: &mut [f32],
) {
    let mut acc = [avx._mm512_setzero_ps(); N];
    for ky in 0..3 {
        for kx in 0..3 {
            let tap = &taps[ky * 3 + kx];
            for (v, acc) in acc.iter_mut().enumerate() {
                let at = ky * stride + (ox + v * PIXELS + kx) * C;
                let pixels: &[f32; 16] = rows[at..at + 16].try_into().expect("16 values");
                let x = pulp::cast::<[f32; 16], __m512>(*pixels);
                *acc = avx._mm512_fmadd_ps(avx._mm512_permute_ps::<0b00_00_00_00>(x), tap[0], *acc);
                *acc = avx._mm512_fmadd_ps(avx._mm512_permute_ps::<0b01_01_01_01>(x), tap[1], *acc);
                *acc = avx._mm512_fmadd_ps(avx._mm512_permute_ps::<0b10_10_10_10>(x), tap[2], *acc);
                *acc = avx._mm512_fmadd_ps(avx._mm512_permute_ps::<0b11_11_11_11>(x), tap[3], *acc);
            }
        }
    }
    for (v, acc) in acc.into_iter().enumerate() {
        let values = pulp::cast::<__m512, [f32; 16]>(acc);
        out_row[(ox + v * PIXELS) * C..][..16].copy_from_slice(&values);
    }
}

/// The weight gradient of [`conv3x3_4to4`]: `grad[ky, kx, ci, co] = Σ x[·+ky−1, ·+kx−1, ci] ·
/// dy[·, co]` over every output pixel of the batch, `grad` (`[3, 3, 4, 4]`) overwritten.
/// `padded` is scratch space. Returns `false`, touching nothing, as [`conv3x3_4to4`] does.
///
/// One vector holds the products of 4 pixels × 4 output channels for one tap and input
/// channel; each of the 36 sums runs over the pixel groups in order (12 at a time, one
/// kernel row per pass), and its 4 pixel lanes are added last, in order.
pub(super) fn conv3x3_4to4_weight_grad(
    (h, w): (usize, usize),
    x: &[f32],
    dy: &[f32],
    grad: &mut [f32],
    padded: &mut Vec<f32>,
) -> bool {
    let Some(simd) = pulp::x86::V4::try_new() else {
        return false;
    };
    if w % PIXELS != 0 || x.len() != dy.len() || grad.len() != 9 * C * C {
        return false;
    }
    <pulp::x86::V4 as pulp::Simd>::vectorize(
        simd,
        WeightGrad {
            avx: simd.avx512f,
            hw: (h, w),
            x,
            dy,
            grad,
            padded,
        },
    );
    true
}

/// [`conv3x3_4to4_weight_grad`] on checked inputs, run by `V4::vectorize`.
struct WeightGrad<'a> {
    avx: pulp::core_arch::x86::Avx512f,
    hw: (usize, usize),
    x: &'a [f32],
    dy: &'a [f32],
    grad: &'a mut [f32],
    padded: &'a mut Vec<f32>,
}

impl pulp::WithSimd for WeightGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            avx,
            hw: (h, w),
            x,
            dy,
            grad,
            padded,
        } = self;
        let stride = (w + 2) * C;
        let sample_len = (h + 2) * stride;
        let n = x.len() / (h * w * C);
        padded.clear();
        padded.resize(n * sample_len, 0.0);
        for (sample, to) in x
            .chunks_exact(h * w * C)
            .zip(padded.chunks_exact_mut(sample_len))
        {
            for (row, src) in sample.chunks_exact(w * C).enumerate() {
                to[(row + 1) * stride + C..][..w * C].copy_from_slice(src);
            }
        }
        for ky in 0..3 {
            let mut acc = [[avx._mm512_setzero_ps(); C]; 3];
            for (s, dy_sample) in dy.chunks_exact(h * w * C).enumerate() {
                let img = &padded[s * sample_len..][..sample_len];
                for (oy, dy_row) in dy_sample.chunks_exact(w * C).enumerate() {
                    let row = &img[(oy + ky) * stride..][..stride];
                    for (group, d) in dy_row.chunks_exact(16).enumerate() {
                        let d: &[f32; 16] = d.try_into().expect("16 values");
                        let d = pulp::cast::<[f32; 16], __m512>(*d);
                        for (kx, acc) in acc.iter_mut().enumerate() {
                            let at = (group * PIXELS + kx) * C;
                            let pixels: &[f32; 16] =
                                row[at..at + 16].try_into().expect("16 values");
                            let v = pulp::cast::<[f32; 16], __m512>(*pixels);
                            acc[0] = avx._mm512_fmadd_ps(
                                avx._mm512_permute_ps::<0b00_00_00_00>(v),
                                d,
                                acc[0],
                            );
                            acc[1] = avx._mm512_fmadd_ps(
                                avx._mm512_permute_ps::<0b01_01_01_01>(v),
                                d,
                                acc[1],
                            );
                            acc[2] = avx._mm512_fmadd_ps(
                                avx._mm512_permute_ps::<0b10_10_10_10>(v),
                                d,
                                acc[2],
                            );
                            acc[3] = avx._mm512_fmadd_ps(
                                avx._mm512_permute_ps::<0b11_11_11_11>(v),
                                d,
                                acc[3],
                            );
                        }
                    }
                }
            }
            for (kx, acc) in acc.iter().enumerate() {
                for (ci, &sums) in acc.iter().enumerate() {
                    let lanes = pulp::cast::<__m512, [f32; 16]>(sums);
                    let out = &mut grad[((ky * 3 + kx) * C + ci) * C..][..C];
                    for (co, g) in out.iter_mut().enumerate() {
                        *g = lanes[co] + lanes[C + co] + lanes[2 * C + co] + lanes[3 * C + co];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The convolution in `f64` by explicit index arithmetic.
    fn reference((h, w): (usize, usize), x: &[f32], weights: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; x.len()];
        for (s, out) in y.chunks_exact_mut(h * w * C).enumerate() {
            let img = &x[s * h * w * C..];
            for (p, px) in out.chunks_exact_mut(C).enumerate() {
                let (oy, ox) = (p / w, p % w);
                for t in 0..9 {
                    let (iy, ix) = ((oy + t / 3).wrapping_sub(1), (ox + t % 3).wrapping_sub(1));
                    if iy >= h || ix >= w {
                        continue;
                    }
                    for ci in 0..C {
                        let v = f64::from(img[(iy * w + ix) * C + ci]);
                        for (co, o) in px.iter_mut().enumerate() {
                            *o += v * f64::from(weights[(t * C + ci) * C + co]);
                        }
                    }
                }
            }
        }
        y
    }

    /// Matches the reference within `f32` rounding of 36 products, at widths of whole
    /// 32-pixel stretches, single vectors and both; on a CPU without AVX-512 it declines.
    #[test]
    fn matches_a_direct_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for (n, h, w) in [(2, 3, 4), (1, 5, 32), (2, 4, 44), (1, 1, 8)] {
            let x: Vec<f32> = (0..n * h * w * C)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let weights: Vec<f32> = (0..9 * C * C)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut y = vec![f32::NAN; x.len()];
            let mut padded = Vec::new();
            if !conv3x3_4to4((h, w), &x, &weights, &mut y, &mut padded) {
                assert!(pulp::x86::V4::try_new().is_none(), "declined on AVX-512");
                return;
            }
            for (got, want) in y.iter().zip(reference((h, w), &x, &weights)) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "{n}×{h}×{w}: {got} vs {want}"
                );
            }
        }
    }

    /// The weight gradient matches `Σ x·dy` in `f64` within `f32` rounding of its sums.
    #[test]
    fn weight_gradient_matches_a_direct_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        for (n, h, w) in [(2, 3, 4), (1, 5, 32), (3, 4, 12)] {
            let x: Vec<f32> = (0..n * h * w * C)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let dy: Vec<f32> = (0..x.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut grad = vec![f32::NAN; 9 * C * C];
            if !conv3x3_4to4_weight_grad((h, w), &x, &dy, &mut grad, &mut Vec::new()) {
                assert!(pulp::x86::V4::try_new().is_none(), "declined on AVX-512");
                return;
            }
            for (index, &got) in grad.iter().enumerate() {
                let (tap, ci, co) = (index / (C * C), index / C % C, index % C);
                let mut want = 0.0f64;
                for p in 0..n * h * w {
                    let (s, oy, ox) = (p / (h * w), p / w % h, p % w);
                    let (iy, ix) = (
                        (oy + tap / 3).wrapping_sub(1),
                        (ox + tap % 3).wrapping_sub(1),
                    );
                    if iy < h && ix < w {
                        let xv = x[((s * h + iy) * w + ix) * C + ci];
                        want += f64::from(xv) * f64::from(dy[p * C + co]);
                    }
                }
                assert!(
                    (f64::from(got) - want).abs() < 1e-4,
                    "{n}×{h}×{w} [{index}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn declines_widths_not_a_multiple_of_four() {
        let (x, weights) = (vec![0.0; 3 * 6 * C], vec![0.0; 9 * C * C]);
        let mut y = vec![1.0; x.len()];
        assert!(!conv3x3_4to4((3, 6), &x, &weights, &mut y, &mut Vec::new()));
        assert!(y.iter().all(|&v| v == 1.0));
    }
}
