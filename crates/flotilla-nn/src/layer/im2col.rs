//! `im2col` / `col2im` for NHWC convolutions with symmetric zero padding.
//!
//! One row of the column matrix holds the receptive field of one output pixel in
//! `(kh, kw, c_in)` order, which matches a row-major `[k, k, c_in, c_out]` (HWIO) kernel
//! viewed as a `[k·k·c_in, c_out]` matrix. Because the taps of one kernel row read
//! consecutive input pixels whatever the stride, each `(output pixel, kh)` pair is a single
//! contiguous copy of up to `k·c_in` values; padding taps are zero-filled around it.
//!
//! Both directions work on a range of output lines (one output row of one sample), so a
//! convolution can stream the column matrix through a cache-sized buffer.

use std::ops::Range;

/// Geometry of one convolution over a batch of NHWC samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvGeometry {
    /// Input height.
    pub(super) h: usize,
    /// Input width.
    pub(super) w: usize,
    /// Input channels.
    pub(super) c: usize,
    /// Kernel size (square).
    pub(super) k: usize,
    /// Stride in both directions.
    pub(super) stride: usize,
    /// Zero padding on every side.
    pub(super) pad: usize,
    /// Output height.
    pub(super) oh: usize,
    /// Output width.
    pub(super) ow: usize,
}

impl ConvGeometry {
    /// The geometry of a `k`×`k` convolution with padding `k / 2` and the given stride.
    pub(super) fn same(h: usize, w: usize, c: usize, k: usize, stride: usize) -> Self {
        let pad = k / 2;
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        Self {
            h,
            w,
            c,
            k,
            stride,
            pad,
            oh,
            ow,
        }
    }

    /// Values in one input sample.
    pub(super) fn input_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Columns of the column matrix, `k·k·c`.
    pub(super) fn col_len(&self) -> usize {
        self.k * self.k * self.c
    }

    /// Rows of the column matrix per sample, `oh·ow`.
    pub(super) fn rows_per_sample(&self) -> usize {
        self.oh * self.ow
    }

    /// For output coordinate `o` along an axis of input length `extent`: the range of
    /// kernel taps `lo..hi` that land inside the input, and the input coordinate of tap `lo`.
    fn span(&self, o: usize, extent: usize) -> (usize, usize, usize) {
        // Tap t reads input coordinate o·stride + t − pad.
        let start = o * self.stride;
        let lo = self.pad.saturating_sub(start).min(self.k);
        let hi = (extent + self.pad)
            .saturating_sub(start)
            .min(self.k)
            .max(lo);
        (lo, hi, start + lo - self.pad)
    }
}

/// `$runs::<RUN>($args)` with `RUN` the run length `$len` when it is one of the lengths
/// compiled for (see below), else `0` (any length).
macro_rules! by_run_length {
    ($len:expr, $runs:ident($($arg:expr),*)) => {
        match $len {
            4 => $runs::<4>($($arg),*),
            8 => $runs::<8>($($arg),*),
            9 => $runs::<9>($($arg),*),
            12 => $runs::<12>($($arg),*),
            24 => $runs::<24>($($arg),*),
            32 => $runs::<32>($($arg),*),
            48 => $runs::<48>($($arg),*),
            96 => $runs::<96>($($arg),*),
            192 => $runs::<192>($($arg),*),
            _ => $runs::<0>($($arg),*),
        }
    };
}

/// Fills `cols` with the column-matrix rows of output lines `lines` of the batch `x`,
/// overwriting every entry. Output line `l` is row `l % oh` of sample `l / oh`; each line is
/// `ow` rows of `k·k·c` values, so `cols` holds `lines.len()·ow·k·k·c` values.
pub(super) fn im2col(g: &ConvGeometry, x: &[f32], lines: Range<usize>, cols: &mut [f32]) {
    debug_assert_eq!(lines.len() * g.ow * g.col_len(), cols.len());
    by_run_length!(g.k * g.c, im2col_runs(g, x, lines, cols))
}

/// Adds each entry of `cols`, the column-matrix rows of output lines `lines` (as in
/// [`im2col`]), into the position of the batch `dx` it was copied from; padding taps are
/// dropped. `dx` is accumulated into, not overwritten.
pub(super) fn col2im(g: &ConvGeometry, cols: &[f32], lines: Range<usize>, dx: &mut [f32]) {
    debug_assert_eq!(lines.len() * g.ow * g.col_len(), cols.len());
    by_run_length!(g.k * g.c, col2im_runs(g, cols, lines, dx))
}

// Both directions move a kernel row's taps (`k·c` values: a "run") at a time. For the short
// runs of 3×3 kernels over 3 to 16 channels (9 to 48 values) they are compiled for that
// length (`RUN`), so a run away from the border is a few vector moves or adds: a
// `copy_from_slice` of a run-time length was a call into `memcpy` per run, and with the
// border handling around it, 45 % of a `resnet20:0.25` training step. `RUN = 0`: any
// length. The same values are moved and added in the same order either way.

/// [`im2col`], runs of `RUN` values (`0`: any length).
#[inline(always)]
fn im2col_runs<const RUN: usize>(
    g: &ConvGeometry,
    x: &[f32],
    lines: Range<usize>,
    cols: &mut [f32],
) {
    let kc = g.k * g.c;
    let kkc = g.k * kc;
    let row = g.w * g.c;
    for (line, cols_line) in lines.zip(cols.chunks_exact_mut(g.ow * kkc)) {
        let img = &x[line / g.oh * g.input_len()..][..g.input_len()];
        let (ky_lo, ky_hi, iy0) = g.span(line % g.oh, g.h);
        for (ox, col) in cols_line.chunks_exact_mut(kkc).enumerate() {
            let (kx_lo, kx_hi, ix0) = g.span(ox, g.w);
            let (lo, hi) = (kx_lo * g.c, kx_hi * g.c);
            if RUN != 0 && ky_hi - ky_lo == g.k && hi - lo == RUN {
                // Every tap inside the image: k whole runs, one input row apart.
                let src = &img[(iy0 * g.w + ix0) * g.c..];
                let (runs, _) = col.as_chunks_mut::<RUN>();
                for (dy, run) in runs.iter_mut().enumerate() {
                    let from: &[f32; RUN] = src[dy * row..][..RUN]
                        .try_into()
                        .expect("a run of RUN values");
                    *run = *from;
                }
                continue;
            }
            let (head, rest) = col.split_at_mut(ky_lo * kc);
            let (body, tail) = rest.split_at_mut((ky_hi - ky_lo) * kc);
            head.fill(0.0);
            tail.fill(0.0);
            for (dy, seg) in body.chunks_exact_mut(kc).enumerate() {
                let src = ((iy0 + dy) * g.w + ix0) * g.c;
                seg[..lo].fill(0.0);
                seg[lo..hi].copy_from_slice(&img[src..src + (hi - lo)]);
                seg[hi..].fill(0.0);
            }
        }
    }
}

/// [`col2im`], runs of `RUN` values (`0`: any length).
#[inline(always)]
fn col2im_runs<const RUN: usize>(
    g: &ConvGeometry,
    cols: &[f32],
    lines: Range<usize>,
    dx: &mut [f32],
) {
    let kc = g.k * g.c;
    let kkc = g.k * kc;
    let row = g.w * g.c;
    for (line, cols_line) in lines.zip(cols.chunks_exact(g.ow * kkc)) {
        let img = &mut dx[line / g.oh * g.input_len()..][..g.input_len()];
        let (ky_lo, ky_hi, iy0) = g.span(line % g.oh, g.h);
        for (ox, col) in cols_line.chunks_exact(kkc).enumerate() {
            let (kx_lo, kx_hi, ix0) = g.span(ox, g.w);
            let (lo, hi) = (kx_lo * g.c, kx_hi * g.c);
            if RUN != 0 && ky_hi - ky_lo == g.k && hi - lo == RUN {
                let dst = &mut img[(iy0 * g.w + ix0) * g.c..];
                let (runs, _) = col.as_chunks::<RUN>();
                for (dy, run) in runs.iter().enumerate() {
                    let to: &mut [f32; RUN] = (&mut dst[dy * row..][..RUN])
                        .try_into()
                        .expect("a run of RUN values");
                    for (t, f) in to.iter_mut().zip(run) {
                        *t += f;
                    }
                }
                continue;
            }
            let body = &col[ky_lo * kc..ky_hi * kc];
            for (dy, seg) in body.chunks_exact(kc).enumerate() {
                let dst = ((iy0 + dy) * g.w + ix0) * g.c;
                for (d, &s) in img[dst..dst + (hi - lo)].iter_mut().zip(&seg[lo..hi]) {
                    *d += s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference im2col by explicit index arithmetic.
    fn naive(g: &ConvGeometry, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ky in 0..g.k {
                        for kx in 0..g.k {
                            for ch in 0..g.c {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                let inside = iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < g.h
                                    && (ix as usize) < g.w;
                                out.push(if inside {
                                    x[b * g.input_len()
                                        + ((iy as usize * g.w + ix as usize) * g.c)
                                        + ch]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_naive_and_col2im_is_its_adjoint() {
        for &(h, w, c, k, s) in &[
            (5, 4, 2, 3, 1),
            (5, 4, 2, 3, 2),
            (6, 7, 3, 5, 1),
            (6, 7, 3, 5, 2),
            (3, 3, 1, 1, 2),
            (2, 3, 2, 5, 1),
            (1, 1, 2, 3, 1),
            (4, 4, 1, 7, 3),
            // The run lengths compiled for (3×3 over 3, 4, 8 and 16 channels).
            (5, 6, 3, 3, 1),
            (5, 6, 4, 3, 2),
            (4, 5, 8, 3, 1),
            (3, 4, 16, 3, 1),
        ] {
            let g = ConvGeometry::same(h, w, c, k, s);
            let n = 2;
            let x: Vec<f32> = (0..n * g.input_len()).map(|i| i as f32 + 1.0).collect();
            let mut cols = vec![f32::NAN; n * g.rows_per_sample() * g.col_len()];
            let lines = n * g.oh;
            im2col(&g, &x, 0..lines, &mut cols);
            assert_eq!(cols, naive(&g, &x, n), "{g:?}");
            // Any split into line ranges gives the same matrix.
            let mut split = vec![f32::NAN; cols.len()];
            let mid = lines / 2 + 1;
            let (a, b) = split.split_at_mut(mid * g.ow * g.col_len());
            im2col(&g, &x, 0..mid, a);
            im2col(&g, &x, mid..lines, b);
            assert_eq!(cols, split, "{g:?}");
            // <im2col(x), r> == <x, col2im(r)> for any r.
            let r: Vec<f32> = (0..cols.len())
                .map(|i| ((i * 7) % 5) as f32 - 2.0)
                .collect();
            let mut back = vec![0.0; x.len()];
            col2im(&g, &r, 0..lines, &mut back);
            let lhs: f64 = cols.iter().zip(&r).map(|(&a, &b)| f64::from(a * b)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(&a, &b)| f64::from(a * b)).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }
}
