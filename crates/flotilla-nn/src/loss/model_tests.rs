//! Whole-model gradient checks: a loss's logit gradient back-propagated by
//! [`Network::backward`] must match finite differences of the loss over the parameters.
//!
//! Parameters are perturbed away from their initial values (zero biases, batch-norm γ of 0
//! on residual branches) so that every gradient is exercised. Batch norm runs in training
//! mode with a fresh copy of the state for every probe, as in training.

use super::{cross_entropy, distill_kl};
use crate::gradcheck::check_gradient;
use crate::{Mode, ModelSpec, Network, Shape, Tensor};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Finite-difference step: ReLU and max-pool kinks rule out large steps, and `f32` forward
/// passes rule out tiny ones.
const EPS: f32 = 1e-3;
/// Relative error allowed on a probed parameter ([`check_gradient`]'s measure).
const TOLERANCE: f64 = 2e-2;
/// A probe whose ±[`EPS`] interval contains a kink (a ReLU input or max-pool winner
/// switching somewhere in the batch) can exceed [`TOLERANCE`] with a correct gradient, so a
/// few probes may, but none by more than this. A wiring error (a dropped branch, a missing
/// factor) fails most probes.
const KINK_TOLERANCE: f64 = 0.2;
const KINK_FRACTION: f64 = 0.03;

/// Relative errors of about 200 evenly spaced parameter entries, probed one at a time.
fn check_model(
    spec: &str,
    input: Shape,
    batch: usize,
    seed: u64,
    loss: impl Fn(&ArrayView2<'_, f32>) -> (f32, Array2<f32>),
) -> Vec<f64> {
    let mut net: Network = spec.parse::<ModelSpec>().unwrap().build(input, 4).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weights = net.init(&mut rng);
    let mut params: Vec<f32> = weights
        .params
        .iter()
        .map(|&p| p + rng.random_range(-0.2..0.2))
        .collect();
    let x = Tensor::from_shape_fn((batch, input.h, input.w, input.c), |_| {
        rng.random_range(-1.0..1.0)
    });

    let logits = net.forward(x.clone(), &params, &mut weights.state.to_vec(), Mode::Train);
    let (_, dlogits) = loss(&logits.view());
    let mut grads = vec![0.0; params.len()];
    net.backward(dlogits, &params, &mut grads);
    assert!(
        grads.iter().all(|g| g.is_finite()),
        "{spec}: non-finite gradient"
    );

    let stride = params.len().div_ceil(200);
    let mut errors = Vec::new();
    for i in (0..params.len()).step_by(stride) {
        let orig = params[i];
        let report = check_gradient(&mut [orig], &grads[i..=i], EPS, 0, |v| {
            params[i] = v[0];
            let logits = net.forward(x.clone(), &params, &mut weights.state.to_vec(), Mode::Train);
            f64::from(loss(&logits.view()).0)
        });
        params[i] = orig;
        errors.push(report.max_rel_error);
    }
    errors
}

/// Whether `errors` has the profile described at [`KINK_TOLERANCE`].
fn passes(errors: &[f64]) -> bool {
    let above = errors.iter().filter(|&&e| e > TOLERANCE).count();
    errors.iter().all(|&e| e <= KINK_TOLERANCE)
        && above as f64 <= KINK_FRACTION * errors.len() as f64
}

#[track_caller]
fn assert_passes(errors: &[f64], what: &str) {
    let above = errors.iter().filter(|&&e| e > TOLERANCE).count();
    let max = errors.iter().copied().fold(0.0, f64::max);
    assert!(
        passes(errors),
        "gradient check of {what} failed: {above} of {} probes above {TOLERANCE:.0e}, \
         worst {max:.3e}",
        errors.len()
    );
}

fn random_labels(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..4)).collect()
}

fn random_teacher(n: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((n, 4), |_| rng.random_range(-4.0..4.0))
}

const MODELS: [(&str, Shape, usize); 3] = [
    ("mlp:12-8-4", Shape::flat(12), 6),
    ("resnet20:0.25", Shape::image(8, 8, 3), 4),
    ("cnn:0.125", Shape::image(12, 12, 1), 4),
];

#[test]
fn cross_entropy_gradients_through_models() {
    for (spec, input, batch) in MODELS {
        let labels = random_labels(batch, 11);
        let errors = check_model(spec, input, batch, 21, |z| {
            cross_entropy(z, &labels).unwrap()
        });
        assert_passes(&errors, &format!("cross-entropy through {spec}"));
    }
}

#[test]
fn distillation_gradients_through_models() {
    for (spec, input, batch) in MODELS {
        let teacher = random_teacher(batch, 12);
        let errors = check_model(spec, input, batch, 22, |z| {
            distill_kl(z, &teacher.view(), 3.0).unwrap()
        });
        assert_passes(&errors, &format!("distillation (T = 3) through {spec}"));
    }
}

#[test]
fn model_check_catches_a_missing_temperature_factor() {
    let (spec, input, batch) = MODELS[1];
    let teacher = random_teacher(batch, 12);
    let errors = check_model(spec, input, batch, 22, |z| {
        let (loss, grad) = distill_kl(z, &teacher.view(), 3.0).unwrap();
        (loss, grad / 3.0)
    });
    assert!(!passes(&errors), "a gradient off by the factor T passed");
}
