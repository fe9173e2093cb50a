//! Stochastic gradient descent with momentum and masked (L2-style, coupled) weight decay.

use crate::{NnError, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// SGD hyper-parameters apart from the learning rate, which comes with every
/// [`Sgd::step`] (from a schedule, e.g. [`LrSchedule`](crate::LrSchedule)). Defaults are
/// the method's: momentum 0.9, weight decay 2e-4 (the reference's L2 penalty 1e-4 on
/// kernels, added to the loss, has gradient `2·1e-4·w`), no Nesterov.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum coefficient `μ` in `[0, 1)`; 0 is plain SGD.
    pub momentum: f32,
    /// Weight decay `λ ≥ 0`, applied only where the decay mask is set (kernels).
    pub weight_decay: f32,
    /// Nesterov momentum (PyTorch formulation).
    pub nesterov: bool,
    /// Clips each step's loss gradient to this global L2 norm before weight decay and
    /// momentum (as PyTorch's `clip_grad_norm_` before `SGD.step`): `g ← g·min(1, c/‖g‖)`.
    /// `None` (the default): no clipping.
    pub clip_norm: Option<f32>,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            weight_decay: 2e-4,
            nesterov: false,
            clip_norm: None,
        }
    }
}

impl SgdConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f32, reason| {
            Err(NnError::HyperParameter {
                name,
                value: value.to_string(),
                reason,
            })
        };
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum, "must be in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                self.weight_decay,
                "must be a finite number >= 0",
            );
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("clip_norm", c, "must be a finite number > 0");
        }
        Ok(())
    }
}

/// SGD state for one flat parameter vector: the per-scalar velocity and the decay mask (kept
/// as runs).
///
/// [`Sgd::step`] follows `torch.optim.SGD` (dampening 0), per scalar:
///
/// ```text
/// g' = g + λ·p          (λ only where the decay mask is set)
/// v  = μ·v + g'
/// p -= lr·v             (Nesterov: p -= lr·(g' + μ·v))
/// ```
///
/// The velocity starts at zero, so the first step is `p -= lr·g'` as in PyTorch. Whether a
/// client starts from fresh state ([`Sgd::reset`]) or carries it is the caller's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    config: SgdConfig,
    /// The decay mask as runs of equal values: each run's end and whether it decays. A
    /// network's mask is a run per tensor, so the step reads no mask value per parameter and
    /// compiles each run's loop with or without the decay (`cargo bench -p flotilla-nn
    /// --bench sgd`: 7-9 % faster for P1's model, 21 % for a layer in cache with a clip).
    decay_runs: Vec<(usize, bool)>,
    velocity: Vec<f32>,
}

impl Sgd {
    /// An optimiser for parameter vectors of `decay_mask.len()` scalars, with zero velocity.
    /// `decay_mask` is usually [`Network::decay_mask`](crate::Network::decay_mask).
    pub fn new(config: SgdConfig, decay_mask: Vec<bool>) -> Result<Self> {
        config.validate()?;
        let velocity = vec![0.0; decay_mask.len()];
        let mut decay_runs = Vec::new();
        let mut start = 0;
        while start < decay_mask.len() {
            let end = run_end(&decay_mask, start);
            decay_runs.push((end, decay_mask[start]));
            start = end;
        }
        Ok(Self {
            config,
            decay_runs,
            velocity,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The momentum buffer, one value per parameter.
    pub fn velocity(&self) -> &[f32] {
        &self.velocity
    }

    /// Forgets the momentum (fresh optimiser state).
    pub fn reset(&mut self) {
        self.velocity.fill(0.0);
    }

    /// One update of `params` with `grads` at learning rate `lr` (from a schedule); returns
    /// the gradient's L2 norm (before any clipping). Errors if the lengths differ from the
    /// decay mask's or `lr` is negative or not finite; `params` is then untouched.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) -> Result<f64> {
        let n = self.velocity.len();
        for (what, len) in [
            ("parameter vector", params.len()),
            ("gradient vector", grads.len()),
        ] {
            if len != n {
                return Err(NnError::Shape {
                    what: format!("{what} for SGD"),
                    expected: n.to_string(),
                    got: len.to_string(),
                });
            }
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(NnError::HyperParameter {
                name: "lr",
                value: lr.to_string(),
                reason: "step learning rate must be a finite number >= 0",
            });
        }
        // Compiled for the widest vectors this CPU has (the arithmetic is elementwise, so
        // the bits do not depend on the width).
        Ok(pulp::Arch::new().dispatch(Update {
            params,
            grads,
            velocity: &mut self.velocity,
            decay_runs: &self.decay_runs,
            config: self.config,
            lr,
        }))
    }
}

/// One [`Sgd::step`] on inputs it has checked, run by [`pulp::Arch::dispatch`]; its output
/// is the gradient's norm.
struct Update<'a> {
    params: &'a mut [f32],
    grads: &'a [f32],
    velocity: &'a mut [f32],
    decay_runs: &'a [(usize, bool)],
    config: SgdConfig,
    lr: f32,
}

impl pulp::WithSimd for Update<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f64 {
        match self.config.nesterov {
            true => self.run::<true>(),
            false => self.run::<false>(),
        }
    }
}

impl Update<'_> {
    /// The step, with or without Nesterov momentum.
    ///
    /// Without a clip the update does not depend on the norm, so one pass both sums the
    /// squares (in [`sum_of_squares`]'s order, so the same bits) and updates: the gradient is
    /// read from memory once, not twice (the step streams four vectors larger than the
    /// cache, and was a fifth of P1's time). It goes [`BLOCK`] values at a time, their
    /// squares summed first (the 16 sums in registers), then their update while the
    /// gradient is in L1: summed as each value was updated, the sums went through memory
    /// at every value and the step took 1.7× as long (`cargo bench -p flotilla-nn --bench
    /// sgd`, with the alternating mask it had then: 56.7 → 33.0 µs for P1's model). With a
    /// clip the norm must come first.
    #[inline(always)]
    fn run<const NESTEROV: bool>(mut self) -> f64 {
        let whole = self.grads.len() - self.grads.len() % LANES;
        let Some(clip) = self.config.clip_norm else {
            let mut sums = [0.0f64; LANES];
            for start in (0..whole).step_by(BLOCK) {
                let block = start..whole.min(start + BLOCK);
                add_squares(&mut sums, &self.grads[block.clone()]);
                // The block's own sum of squares is not needed here (the compiler drops it).
                self.step_range::<NESTEROV>(block, 1.0);
            }
            let tail = self.step_range::<NESTEROV>(whole..self.grads.len(), 1.0);
            return (sums.iter().sum::<f64>() + tail).sqrt();
        };
        let norm = sum_of_squares(self.grads).sqrt();
        // The norm came first; the pass's sum of squares is not needed (and is dropped).
        self.step_range::<NESTEROV>(0..self.grads.len(), clip_scale(norm, clip));
        norm
    }

    /// Steps the values in `range`, the loss gradient scaled by `scale`, a decay run at a
    /// time; returns the sum of the squares of their unscaled gradients, added in order.
    #[inline(always)]
    fn step_range<const NESTEROV: bool>(&mut self, range: Range<usize>, scale: f32) -> f64 {
        let first = self
            .decay_runs
            .partition_point(|&(end, _)| end <= range.start);
        let mut start = range.start;
        let mut sum = 0.0;
        for &(end, decay) in &self.decay_runs[first..] {
            if start >= range.end {
                break;
            }
            let piece = start..end.min(range.end);
            sum = match decay {
                true => self.step_values::<NESTEROV, true>(piece.clone(), scale, sum),
                false => self.step_values::<NESTEROV, false>(piece.clone(), scale, sum),
            };
            start = piece.end;
        }
        sum
    }

    /// Steps the values in `range` one at a time (a loop the compiler vectorises), all of
    /// them decayed or none (`DECAY`), the loss gradient scaled by `scale`; returns `sum`
    /// plus the squares of their unscaled gradients, added in order.
    #[inline(always)]
    fn step_values<const NESTEROV: bool, const DECAY: bool>(
        &mut self,
        range: Range<usize>,
        scale: f32,
        mut sum: f64,
    ) -> f64 {
        let SgdConfig {
            momentum: mu,
            weight_decay: wd,
            ..
        } = self.config;
        let lr = self.lr;
        let values = self.params[range.clone()]
            .iter_mut()
            .zip(&self.grads[range.clone()])
            .zip(&mut self.velocity[range]);
        for ((p, &g), v) in values {
            sum += square(g);
            let g = g * scale;
            let g = if DECAY { g + wd * *p } else { g };
            *v = mu * *v + g;
            *p -= lr * if NESTEROV { g + mu * *v } else { *v };
        }
        sum
    }
}

/// The end of the run of equal values of `mask` that starts at `start` (< its length): 64
/// values at a time while they all match (a comparison without an early exit, which the
/// compiler vectorises: a network's runs are its tensors, up to millions of values), then
/// value by value.
fn run_end(mask: &[bool], start: usize) -> usize {
    let value = mask[start];
    let mut at = start;
    while let Some(chunk) = mask.get(at..at + 64)
        && chunk.iter().fold(true, |same, &d| same & (d == value))
    {
        at += 64;
    }
    at + mask[at..]
        .iter()
        .position(|&d| d != value)
        .unwrap_or(mask.len() - at)
}

/// The factor a clip at `clip` scales a gradient of norm `norm` by: 1 unless the norm
/// exceeds the clip (a non-finite norm is not clipped: the step fails visibly rather than
/// being scaled to zero).
#[inline(always)]
fn clip_scale(norm: f64, clip: f32) -> f32 {
    if norm > f64::from(clip) {
        (f64::from(clip) / norm) as f32
    } else {
        1.0
    }
}

/// Independent partial sums of [`sum_of_squares`].
const LANES: usize = 16;

/// Values per block of the one-pass step (a whole number of [`LANES`]; 4 KiB of gradient):
/// the block's squares are summed, then the block is updated while its gradient is in L1.
const BLOCK: usize = 1024;

/// `v²` in f64.
#[inline(always)]
fn square(v: f32) -> f64 {
    f64::from(v) * f64::from(v)
}

/// `Σ v²` in f64, in a fixed order: 16 interleaved partial sums (element `i` goes to sum
/// `i mod 16`; the tail after the last whole 16 to a 17th), added in order at the end.
/// Independent sums let the additions pipeline and vectorise: one running sum is a chain of
/// dependent additions (with the trainer's own second chain, a quarter of W1's wall time).
#[inline(always)]
fn sum_of_squares(values: &[f32]) -> f64 {
    let whole = values.len() - values.len() % LANES;
    let tail: f64 = values[whole..].iter().map(|&v| square(v)).sum();
    let mut sums = [0.0f64; LANES];
    add_squares(&mut sums, &values[..whole]);
    sums.iter().sum::<f64>() + tail
}

/// Adds the squares of `values` (a whole number of [`LANES`]) to [`sum_of_squares`]'s
/// partial sums, element `i` to sum `i mod 16`.
#[inline(always)]
fn add_squares(sums: &mut [f64; LANES], values: &[f32]) {
    // A local copy, so the sums stay in registers (summed in place through the reference,
    // they went through memory at every step).
    let mut local = *sums;
    for chunk in values.chunks_exact(LANES) {
        for (sum, &v) in local.iter_mut().zip(chunk) {
            *sum += square(v);
        }
    }
    *sums = local;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn defaults_are_the_methods_and_valid() {
        let c = SgdConfig::default();
        assert_eq!((c.momentum, c.weight_decay, c.nesterov), (0.9, 2e-4, false));
        c.validate().unwrap();
        let c: SgdConfig = serde_json::from_str(r#"{"momentum": 0.5}"#).unwrap();
        assert_eq!(
            c,
            SgdConfig {
                momentum: 0.5,
                ..SgdConfig::default()
            }
        );
        // The rate is not a config field: it comes with each step.
        let e = serde_json::from_str::<SgdConfig>(r#"{"lr": 0.05}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `lr`"), "{e}");
    }

    #[test]
    fn invalid_configs_name_the_parameter() {
        let d = SgdConfig::default();
        for (c, name) in [
            (
                SgdConfig {
                    weight_decay: f32::NAN,
                    ..d
                },
                "weight_decay",
            ),
            (SgdConfig { momentum: 1.0, ..d }, "momentum"),
            (
                SgdConfig {
                    momentum: -0.1,
                    ..d
                },
                "momentum",
            ),
            (
                SgdConfig {
                    weight_decay: -1e-4,
                    ..d
                },
                "weight_decay",
            ),
            (
                SgdConfig {
                    clip_norm: Some(0.0),
                    ..d
                },
                "clip_norm",
            ),
            (
                SgdConfig {
                    clip_norm: Some(f32::INFINITY),
                    ..d
                },
                "clip_norm",
            ),
        ] {
            let e = Sgd::new(c, vec![]).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn clipping_scales_a_long_gradient_to_the_norm_before_weight_decay() {
        let c = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.1,
            nesterov: false,
            clip_norm: Some(1.0),
        };
        let mut sgd = Sgd::new(c, vec![true, false]).unwrap();
        let mut p = [1.0f32, 1.0];
        // ‖[3, 4]‖ = 5 → [0.6, 0.8]; then g' = [0.6 + 0.1·1, 0.8]; p = 1 − 0.5·g'.
        // The step returns the gradient's norm before the clip.
        assert_eq!(sgd.step(&mut p, &[3.0, 4.0], 0.5).unwrap(), 5.0);
        assert!(close(&p, &[0.65, 0.6]), "{p:?}");
        // A gradient within the norm is not touched.
        let mut q = [1.0f32, 1.0];
        sgd.step(&mut q, &[0.3, 0.4], 0.5).unwrap();
        assert!(close(&q, &[0.8, 0.8]), "{q:?}");
    }

    proptest::proptest! {
        /// The interleaved sums give the sum of squares (to f64 rounding), whatever the
        /// length: shorter than one chunk, whole chunks, a tail.
        #[test]
        fn sum_of_squares_is_the_sum_of_the_squares(
            values in proptest::collection::vec(-1e3f32..1e3, 0..200),
        ) {
            let naive: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let got = sum_of_squares(&values);
            proptest::prop_assert!((got - naive).abs() <= 1e-12 * naive.max(1.0), "{got} vs {naive}");
        }

        /// A clip the gradient never reaches gives the bits of no clip: the one-pass step
        /// (no clip, block by block) and the two-pass one (norm, then update) agree on the
        /// parameters, the velocity and the returned norm, whatever the length (within one
        /// block, or over two and a part, with or without a tail), mask and momentum kind.
        #[test]
        fn a_clip_the_gradient_never_reaches_gives_the_bits_of_no_clip(
            entries in proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0, proptest::bool::ANY), 0..2 * BLOCK + 100),
            nesterov in proptest::bool::ANY,
        ) {
            let mask: Vec<bool> = entries.iter().map(|e| e.2).collect();
            let run = |clip_norm| {
                let c = SgdConfig { clip_norm, nesterov, ..SgdConfig::default() };
                let mut sgd = Sgd::new(c, mask.clone()).unwrap();
                let mut p: Vec<f32> = entries.iter().map(|e| e.0).collect();
                let g: Vec<f32> = entries.iter().map(|e| e.1).collect();
                let norms: Vec<u64> = (0..3)
                    .map(|_| sgd.step(&mut p, &g, 0.05).unwrap().to_bits())
                    .collect();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (bits(&p), bits(sgd.velocity()), norms)
            };
            proptest::prop_assert_eq!(run(None), run(Some(1e3)));
        }

        /// The step gives the bits of the formula applied value by value with the mask as
        /// given (the norm by [`sum_of_squares`]), whatever the mask's runs (the step reads
        /// them as runs), the length (over blocks, with a tail), a clip that bites or not,
        /// and the momentum kind.
        #[test]
        fn the_step_is_the_formula_value_by_value(
            entries in proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0), 0..2 * BLOCK + 100),
            runs in proptest::collection::vec((1usize..300, proptest::bool::ANY), 1..20),
            nesterov in proptest::bool::ANY,
            clip_norm in proptest::option::of(0.5f32..20.0),
        ) {
            let mask: Vec<bool> = runs
                .iter()
                .flat_map(|&(len, decay)| std::iter::repeat_n(decay, len))
                .cycle()
                .take(entries.len())
                .collect();
            let (mu, wd, lr) = (0.9f32, 0.01f32, 0.05f32);
            let c = SgdConfig { momentum: mu, weight_decay: wd, nesterov, clip_norm };
            let mut sgd = Sgd::new(c, mask.clone()).unwrap();
            let mut p: Vec<f32> = entries.iter().map(|e| e.0).collect();
            let g: Vec<f32> = entries.iter().map(|e| e.1).collect();
            let (mut p_ref, mut v_ref) = (p.clone(), vec![0.0f32; p.len()]);
            for _ in 0..3 {
                let norm = sgd.step(&mut p, &g, lr).unwrap();
                let norm_ref = sum_of_squares(&g).sqrt();
                let scale = clip_norm.map_or(1.0, |clip| clip_scale(norm_ref, clip));
                for i in 0..p_ref.len() {
                    let gi = g[i] * scale;
                    let gi = if mask[i] { gi + wd * p_ref[i] } else { gi };
                    v_ref[i] = mu * v_ref[i] + gi;
                    p_ref[i] -= lr * if nesterov { gi + mu * v_ref[i] } else { v_ref[i] };
                }
                proptest::prop_assert_eq!(norm.to_bits(), norm_ref.to_bits());
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&p), bits(&p_ref));
            proptest::prop_assert_eq!(bits(sgd.velocity()), bits(&v_ref));
        }
    }

    #[test]
    fn two_steps_by_hand() {
        let c = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.1,
            nesterov: false,
            clip_norm: None,
        };
        let mut sgd = Sgd::new(c, vec![true, false]).unwrap();
        let mut p = [1.0f32, 1.0];
        // Step 1: g' = [0.5 + 0.1·1, 0.5] = [0.6, 0.5]; v = g'; p = [0.94, 0.95].
        sgd.step(&mut p, &[0.5, 0.5], 0.1).unwrap();
        assert!(close(&p, &[0.94, 0.95]), "{p:?}");
        assert!(close(sgd.velocity(), &[0.6, 0.5]));
        // Step 2: g' = [0.5 + 0.094, 0.5]; v = [0.54 + 0.594, 0.45 + 0.5] = [1.134, 0.95];
        // p = [0.94 − 0.1134, 0.95 − 0.095].
        sgd.step(&mut p, &[0.5, 0.5], 0.1).unwrap();
        assert!(close(&p, &[0.8266, 0.855]), "{p:?}");
    }

    #[test]
    fn nesterov_by_hand() {
        let c = SgdConfig {
            momentum: 0.5,
            weight_decay: 0.0,
            nesterov: true,
            clip_norm: None,
        };
        let mut sgd = Sgd::new(c, vec![false]).unwrap();
        let mut p = [0.0f32];
        // v = 1; p −= 0.1·(1 + 0.5·1) = 0.15.  Then v = 0.5 + 1 = 1.5; p −= 0.1·(1 + 0.75).
        sgd.step(&mut p, &[1.0], 0.1).unwrap();
        assert!(close(&p, &[-0.15]), "{p:?}");
        sgd.step(&mut p, &[1.0], 0.1).unwrap();
        assert!(close(&p, &[-0.325]), "{p:?}");
    }

    #[test]
    fn momentum_accumulates_towards_a_geometric_sum() {
        let c = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        };
        let mut sgd = Sgd::new(c, vec![false]).unwrap();
        let mut p = [0.0f32];
        for k in 1..=50 {
            sgd.step(&mut p, &[1.0], 1.0).unwrap();
            let expected = (1.0 - 0.9f32.powi(k)) / 0.1;
            assert!((sgd.velocity()[0] - expected).abs() < 1e-4);
        }
        sgd.reset();
        assert_eq!(sgd.velocity(), &[0.0]);
    }

    #[test]
    fn decay_applies_only_where_masked() {
        let c = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.1,
            nesterov: false,
            clip_norm: None,
        };
        let mut sgd = Sgd::new(c, vec![true, false, true]).unwrap();
        let mut p = [2.0f32, 2.0, -4.0];
        sgd.step(&mut p, &[0.0; 3], 0.5).unwrap();
        assert!(close(&p, &[1.9, 2.0, -3.8]), "{p:?}");
    }

    #[test]
    fn zero_gradient_without_decay_leaves_params_unchanged() {
        let c = SgdConfig {
            weight_decay: 0.0,
            ..SgdConfig::default()
        };
        let mut sgd = Sgd::new(c, vec![true; 4]).unwrap();
        let mut p = [1.0f32, -2.0, 3.5, 0.0];
        for _ in 0..3 {
            sgd.step(&mut p, &[0.0; 4], 0.2).unwrap();
        }
        assert_eq!(p, [1.0, -2.0, 3.5, 0.0]);
    }

    #[test]
    fn length_mismatch_and_bad_lr_are_errors() {
        let mut sgd = Sgd::new(SgdConfig::default(), vec![false; 3]).unwrap();
        let mut p = [1.0f32; 3];
        assert!(sgd.step(&mut p, &[0.0; 2], 0.1).is_err());
        assert!(sgd.step(&mut [0.0; 4], &[0.0; 4], 0.1).is_err());
        assert!(sgd.step(&mut p, &[1.0; 3], f32::NAN).is_err());
        assert_eq!(p, [1.0; 3]);
    }
}
