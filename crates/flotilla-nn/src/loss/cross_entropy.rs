//! Softmax cross-entropy on hard labels, and accuracy counting.

use super::{check_nonempty, log_softmax_row};
use crate::{NnError, Result};
use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

/// Checks that `labels` has one entry per row of `logits`, each a valid class index.
fn check_labels(logits: &ArrayView2<'_, f32>, labels: &[u32]) -> Result<()> {
    check_nonempty("logits for cross-entropy", logits)?;
    let (n, classes) = logits.dim();
    if labels.len() != n {
        return Err(NnError::Shape {
            what: "labels for a batch of logits".into(),
            expected: format!("{n} labels"),
            got: format!("{}", labels.len()),
        });
    }
    if let Some((i, &y)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &y)| y as usize >= classes)
    {
        return Err(NnError::Shape {
            what: format!("label of sample {i}"),
            expected: format!("a class index below {classes}"),
            got: y.to_string(),
        });
    }
    Ok(())
}

/// Mean softmax cross-entropy of `logits` (`[batch, classes]`) against hard `labels`, and
/// its gradient with respect to the logits.
///
/// `L = -(1/n) Σ_i log softmax(z_i)[y_i]`, `∂L/∂z_i = (softmax(z_i) - onehot(y_i)) / n`.
/// Computed in `f64` via log-sum-exp with the row maximum subtracted, so logits of ±1e4
/// give finite, correct values. Errors on an empty batch, a label count different from the
/// batch size, or a label `≥ classes`.
pub fn cross_entropy(logits: &ArrayView2<'_, f32>, labels: &[u32]) -> Result<(f32, Array2<f32>)> {
    check_labels(logits, labels)?;
    let n = logits.nrows();
    let inv_n = 1.0 / n as f64;
    let mut grad = Array2::zeros(logits.raw_dim());
    let mut total = 0.0f64;
    let mut ls = Vec::with_capacity(logits.ncols());
    for ((row, mut g), &y) in logits.rows().into_iter().zip(grad.rows_mut()).zip(labels) {
        log_softmax_row(row, 1.0, &mut ls);
        total -= ls[y as usize];
        for (g, &l) in g.iter_mut().zip(&ls) {
            *g = (l.exp() * inv_n) as f32;
        }
        g[y as usize] = ((ls[y as usize].exp() - 1.0) * inv_n) as f32;
    }
    Ok(((total * inv_n) as f32, grad))
}

/// Index of the largest value; ties go to the lowest index and NaNs never win (unless
/// every value is NaN, then 0).
pub fn argmax(row: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] || (row[best].is_nan() && !v.is_nan()) {
            best = j;
        }
    }
    best
}

/// Number of rows of `logits` whose [`argmax`] equals the label.
pub fn count_correct(logits: &ArrayView2<'_, f32>, labels: &[u32]) -> Result<usize> {
    check_labels(logits, labels)?;
    Ok(logits
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(r, y)| argmax(*r) == **y as usize)
        .count())
}

/// Running evaluation totals over batches: summed cross-entropy, correct predictions, samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    /// Sum over samples of the per-sample cross-entropy.
    pub loss_sum: f64,
    /// Samples whose [`argmax`] equals the label.
    pub correct: usize,
    /// Samples seen.
    pub count: usize,
}

impl LossStats {
    /// Adds one batch of logits and labels (same checks as [`cross_entropy`]).
    pub fn add_batch(&mut self, logits: &ArrayView2<'_, f32>, labels: &[u32]) -> Result<()> {
        check_labels(logits, labels)?;
        let mut ls = Vec::with_capacity(logits.ncols());
        for (row, &y) in logits.rows().into_iter().zip(labels) {
            log_softmax_row(row, 1.0, &mut ls);
            self.loss_sum -= ls[y as usize];
            self.correct += usize::from(argmax(row) == y as usize);
        }
        self.count += labels.len();
        Ok(())
    }

    /// Adds another set of totals (for example from another worker).
    pub fn merge(&mut self, other: &LossStats) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.count += other.count;
    }

    /// Mean cross-entropy per sample (NaN when no samples were added).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.count as f64
    }

    /// Fraction of samples classified correctly (NaN when no samples were added).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradient;
    use ndarray::{Array2, array};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_logits(rng: &mut ChaCha8Rng, n: usize, c: usize, scale: f32) -> Array2<f32> {
        Array2::from_shape_fn((n, c), |_| rng.random_range(-scale..scale))
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // The last case saturates the softmax (piecewise-linear loss, so a large step is fine).
        let cases = [
            (1, 2, 1.0, 1e-2),
            (4, 10, 3.0, 1e-2),
            (7, 5, 8.0, 1e-2),
            (32, 10, 2.0, 1e-2),
        ];
        for (n, c, scale, eps) in cases.into_iter().chain([(5, 6, 1e3, 1.0)]) {
            let z = random_logits(&mut rng, n, c, scale);
            let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
            let (_, grad) = cross_entropy(&z.view(), &labels).unwrap();
            let mut x = z.as_slice().unwrap().to_vec();
            let g = grad.as_slice().unwrap().to_vec();
            let report = check_gradient(&mut x, &g, eps, 0, |v| {
                let z = ArrayView2::from_shape((n, c), v).unwrap();
                f64::from(cross_entropy(&z, &labels).unwrap().0)
            });
            report.assert_within(1e-2, &format!("cross-entropy n={n} c={c}"));
        }
    }

    #[test]
    fn uniform_logits_give_ln_classes() {
        for c in [2, 10, 100] {
            let z = Array2::from_elem((3, c), 0.7f32);
            let (loss, grad) = cross_entropy(&z.view(), &[0, 1, 1]).unwrap();
            assert!((loss - (c as f32).ln()).abs() < 1e-6, "{loss}");
            // Rows of the gradient sum to zero.
            for r in grad.rows() {
                assert!(r.sum().abs() < 1e-6);
            }
        }
    }

    #[test]
    fn stable_for_huge_logits() {
        let z = array![[1e4f32, -1e4, 0.0], [-1e4, 1e4, 1e4]];
        let (loss, grad) = cross_entropy(&z.view(), &[0, 2]).unwrap();
        // Row 0 is certain and right (loss 0); row 1 splits between classes 1 and 2 (ln 2).
        assert!((loss - std::f32::consts::LN_2 / 2.0).abs() < 1e-6, "{loss}");
        assert!(grad.iter().all(|g| g.is_finite()));
        let expected = array![[0.0f32, 0.0, 0.0], [0.0, 0.25, -0.25]];
        assert!(
            grad.iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() < 1e-6),
            "{grad}"
        );
        // Wrong and certain: loss 2e4 / 2, still finite.
        let (loss, _) = cross_entropy(&z.view(), &[1, 0]).unwrap();
        assert!(loss.is_finite() && (loss - 2e4).abs() < 1.0, "{loss}");
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let z = Array2::<f32>::zeros((2, 3));
        let e = cross_entropy(&z.view(), &[0, 3]).unwrap_err().to_string();
        assert!(e.contains("label of sample 1") && e.contains('3'), "{e}");
        let e = cross_entropy(&z.view(), &[0]).unwrap_err().to_string();
        assert!(e.contains("labels"), "{e}");
        let empty = Array2::<f32>::zeros((0, 3));
        assert!(cross_entropy(&empty.view(), &[]).is_err());
        assert!(LossStats::default().add_batch(&z.view(), &[5, 0]).is_err());
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_index() {
        assert_eq!(argmax(array![1.0f32, 3.0, 3.0, 2.0].view()), 1);
        assert_eq!(argmax(array![f32::NAN, 1.0, 1.0].view()), 1);
        assert_eq!(argmax(array![0.5f32].view()), 0);
        let z = array![[1.0f32, 1.0], [0.0, 2.0], [3.0, -1.0]];
        assert_eq!(count_correct(&z.view(), &[0, 1, 1]).unwrap(), 2);
    }

    #[test]
    fn stats_accumulate_loss_and_accuracy() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let z = random_logits(&mut rng, 6, 4, 2.0);
        let labels = [0u32, 1, 2, 3, 0, 1];
        let (head, tail) = z.view().split_at(ndarray::Axis(0), 4);
        let mut stats = LossStats::default();
        stats.add_batch(&head, &labels[..4]).unwrap();
        let mut rest = LossStats::default();
        rest.add_batch(&tail, &labels[4..]).unwrap();
        stats.merge(&rest);
        let (mean, _) = cross_entropy(&z.view(), &labels).unwrap();
        assert_eq!(stats.count, 6);
        assert!((stats.mean_loss() - f64::from(mean)).abs() < 1e-6);
        assert_eq!(stats.correct, count_correct(&z.view(), &labels).unwrap());
        assert!((stats.accuracy() - stats.correct as f64 / 6.0).abs() < 1e-12);
    }
}
