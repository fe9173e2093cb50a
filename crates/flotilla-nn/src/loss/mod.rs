//! Losses over logits, with their gradients, and evaluation counters.
//!
//! Every loss takes a `[batch, classes]` logits matrix and returns the **mean** loss over
//! the batch together with its gradient with respect to the logits, ready for
//! [`Network::backward`](crate::Network::backward). Losses are computed with log-sum-exp
//! after subtracting each row's maximum, so they stay finite for logits of any finite
//! magnitude. Bad input (an empty batch, a label out of range, mismatched shapes, a
//! non-positive temperature) is an [`NnError`], never a panic.

mod cross_entropy;
mod distill;
#[cfg(test)]
mod model_tests;

pub use cross_entropy::{LossStats, argmax, count_correct, cross_entropy};
pub use distill::distill_kl;

use crate::{NnError, Result};
use ndarray::{ArrayView1, ArrayView2};

/// Row-wise log-softmax of `row / temperature`, in `f64`, written into `out`.
///
/// `log p_j = z_j - max z - ln Σ_k exp(z_k - max z)` with `z = row / temperature`: finite
/// for any finite logits.
fn log_softmax_row(row: ArrayView1<'_, f32>, temperature: f64, out: &mut Vec<f64>) {
    out.clear();
    out.extend(row.iter().map(|&v| f64::from(v) / temperature));
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = out.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
    for z in out.iter_mut() {
        *z -= max + lse;
    }
}

/// Rejects an empty batch or zero classes.
fn check_nonempty(what: &str, logits: &ArrayView2<'_, f32>) -> Result<()> {
    let (n, c) = logits.dim();
    if n == 0 || c == 0 {
        return Err(NnError::Shape {
            what: what.into(),
            expected: "at least one sample and one class".into(),
            got: format!("[{n}, {c}]"),
        });
    }
    Ok(())
}
