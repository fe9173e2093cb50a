//! Finite-difference gradient checks.
//!
//! Used by every layer's, loss's and model's tests, and public so that users checking
//! their own layers get the same tool. Checks run in `f64` central differences over `f32`
//! code, so tolerances are relative and loose enough for single precision yet tight enough
//! that a wrong backward pass (a dropped term, a transposed weight) fails.

use crate::layer::{Layer, Mode};
use crate::tensor::Tensor;
use ndarray::Zip;

/// The worst disagreement found by a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheckReport {
    /// Largest `|analytic - numeric| / max(|analytic| + |numeric|, floor)` over checked entries.
    pub max_rel_error: f64,
    /// Number of scalar entries compared.
    pub checked: usize,
}

impl GradCheckReport {
    /// Panics with a readable message if the error exceeds `tolerance` (for tests).
    #[track_caller]
    pub fn assert_within(&self, tolerance: f64, what: &str) {
        assert!(
            self.max_rel_error <= tolerance,
            "gradient check of {what} failed: max relative error {:.3e} > {tolerance:.1e} \
             over {} entries",
            self.max_rel_error,
            self.checked
        );
    }
}

/// Relative error used by all checks; `floor` keeps near-zero gradients from dominating.
fn rel_error(analytic: f64, numeric: f64) -> f64 {
    const FLOOR: f64 = 1e-2;
    (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(FLOOR)
}

/// Compares a gradient against central differences of a scalar function.
///
/// `f` evaluates the scalar at the current `x`; `analytic` is the claimed gradient of `f` at
/// the `x` given. At most `max_entries` evenly spaced entries are probed (all when `0`).
pub fn check_gradient(
    x: &mut [f32],
    analytic: &[f32],
    eps: f32,
    max_entries: usize,
    mut f: impl FnMut(&[f32]) -> f64,
) -> GradCheckReport {
    assert_eq!(
        x.len(),
        analytic.len(),
        "gradient length must match the input"
    );
    let stride = match max_entries {
        0 => 1,
        m => x.len().div_ceil(m).max(1),
    };
    let mut report = GradCheckReport {
        max_rel_error: 0.0,
        checked: 0,
    };
    for i in (0..x.len()).step_by(stride) {
        let orig = x[i];
        x[i] = orig + eps;
        let plus = f(x);
        x[i] = orig - eps;
        let minus = f(x);
        x[i] = orig;
        let numeric = (plus - minus) / (2.0 * f64::from(eps));
        let err = rel_error(f64::from(analytic[i]), numeric);
        report.max_rel_error = report.max_rel_error.max(err);
        report.checked += 1;
    }
    report
}

/// Checks a layer's input and parameter gradients at `x` with `params`, using the scalar
/// loss `L = Σ y ⊙ r` for a fixed random-looking projection `r` of the output.
///
/// Forward passes run in [`Mode::Train`] on a copy of `state`, so running statistics do not
/// drift between probes. Also asserts that [`Layer::backward_params`] writes bit for bit the
/// parameter gradients of [`Layer::backward`]. Returns `(input report, parameter report)`.
pub fn check_layer(
    layer: &mut dyn Layer,
    x: &Tensor,
    params: &[f32],
    state: &[f32],
    eps: f32,
    max_entries: usize,
) -> (GradCheckReport, GradCheckReport) {
    let y = layer.forward(x.clone(), params, &mut state.to_vec(), Mode::Train);
    // A fixed, sign-varying projection so every output matters to the loss.
    let r = Tensor::from_shape_fn(y.raw_dim(), |(n, h, w, c)| {
        let k = (n * 7 + h * 5 + w * 3 + c * 11) % 13;
        (k as f32 - 6.0) / 6.0
    });
    let mut grads = vec![0.0; params.len()];
    let dx = layer.backward(r.clone(), params, &mut grads);
    // The first-layer pass must write the very same parameter gradients.
    layer.forward(x.clone(), params, &mut state.to_vec(), Mode::Train);
    let mut param_only = vec![f32::NAN; params.len()];
    layer.backward_params(r.clone(), params, &mut param_only);
    let bits = |g: &[f32]| g.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&param_only),
        bits(&grads),
        "backward_params differs from backward"
    );

    let loss = |layer: &mut dyn Layer, x: &Tensor, p: &[f32]| -> f64 {
        let y = layer.forward(x.clone(), p, &mut state.to_vec(), Mode::Train);
        let mut acc = 0.0f64;
        Zip::from(&y)
            .and(&r)
            .for_each(|&a, &b| acc += f64::from(a) * f64::from(b));
        acc
    };

    let mut xs = x.clone();
    let x_shape = xs.raw_dim();
    let dx_flat: Vec<f32> = dx.iter().copied().collect();
    let mut x_flat: Vec<f32> = xs.iter().copied().collect();
    let input = check_gradient(&mut x_flat, &dx_flat, eps, max_entries, |v| {
        xs = Tensor::from_shape_vec(x_shape, v.to_vec()).expect("same shape");
        loss(&mut *layer, &xs, params)
    });

    let mut p = params.to_vec();
    let param = check_gradient(&mut p, &grads, eps, max_entries, |v| {
        loss(&mut *layer, x, v)
    });
    (input, param)
}
