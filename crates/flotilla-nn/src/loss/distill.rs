//! Knowledge-distillation loss: temperature-softened KL divergence to a teacher.

use super::{check_nonempty, log_softmax_row};
use crate::{NnError, Result};
use ndarray::{Array2, ArrayView2};

/// Distillation loss of `student` logits towards constant `teacher` logits (both
/// `[batch, classes]`) at `temperature` `T`, and its gradient with respect to the student
/// logits only.
///
/// With `p_t = softmax(t/T)` and `p_s = softmax(s/T)` per sample:
///
/// ```text
/// L     = T² · (1/n) Σ_i KL(p_t,i ‖ p_s,i),   KL(p ‖ q) = Σ_j p_j (log p_j − log q_j)
/// ∂L/∂s = T · (p_s − p_t) / n
/// ```
///
/// The `T²` factor keeps gradient magnitudes comparable across temperatures (Hinton et
/// al.); the teacher receives no gradient. Log-probabilities come from a max-subtracted
/// log-softmax in `f64`, terms with `p_t,j = 0` contribute 0, and tiny negative rounding
/// is clamped, so `L ≥ 0`, `L = 0` when student and teacher agree, and logits of ±1e4 stay
/// finite. Errors on mismatched shapes, an empty batch, or a temperature that is not a
/// finite positive number.
pub fn distill_kl(
    student: &ArrayView2<'_, f32>,
    teacher: &ArrayView2<'_, f32>,
    temperature: f32,
) -> Result<(f32, Array2<f32>)> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(NnError::HyperParameter {
            name: "temperature",
            value: temperature.to_string(),
            reason: "must be a finite number > 0",
        });
    }
    if student.dim() != teacher.dim() {
        return Err(NnError::Shape {
            what: "teacher logits for distillation".into(),
            expected: format!("{:?} like the student's", student.dim()),
            got: format!("{:?}", teacher.dim()),
        });
    }
    check_nonempty("logits for distillation", student)?;
    let t = f64::from(temperature);
    let n = student.nrows() as f64;
    let scale = t / n;
    let mut grad = Array2::zeros(student.raw_dim());
    let (mut ls, mut lt) = (Vec::new(), Vec::new());
    let mut total = 0.0f64;
    for ((s, tr), mut g) in student
        .rows()
        .into_iter()
        .zip(teacher.rows())
        .zip(grad.rows_mut())
    {
        log_softmax_row(s, t, &mut ls);
        log_softmax_row(tr, t, &mut lt);
        let mut kl = 0.0f64;
        for ((g, &a), &b) in g.iter_mut().zip(&ls).zip(&lt) {
            let (ps, pt) = (a.exp(), b.exp());
            if pt > 0.0 {
                kl += pt * (b - a);
            }
            *g = (scale * (ps - pt)) as f32;
        }
        total += kl.max(0.0);
    }
    Ok(((t * t * total / n) as f32, grad))
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

    /// Max relative error of `grad_of` against finite differences (step `eps`) of
    /// `distill_kl`. The loss is returned in `f32` and grows like `T²`, so steps are not tiny.
    fn check(
        s: &Array2<f32>,
        t: &Array2<f32>,
        temperature: f32,
        eps: f32,
        grad_of: impl Fn(&Array2<f32>) -> Array2<f32>,
    ) -> f64 {
        let dim = s.dim();
        let mut x = s.as_slice().unwrap().to_vec();
        let g = grad_of(s).as_slice().unwrap().to_vec();
        let report = check_gradient(&mut x, &g, eps, 0, |v| {
            let s = ArrayView2::from_shape(dim, v).unwrap();
            f64::from(distill_kl(&s, &t.view(), temperature).unwrap().0)
        });
        report.max_rel_error
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for temperature in [0.5f32, 1.0, 3.0, 10.0] {
            // Large logits saturate the softmax: the loss is then piecewise linear in the
            // student logits and a large step is exact away from ties.
            let cases = [
                (1, 3, 2.0, 0.1),
                (4, 10, 5.0, 0.1),
                (16, 10, 1.0, 0.1),
                (5, 7, 30.0, 0.1),
            ];
            for (n, c, scale, eps) in cases.into_iter().chain([(6, 5, 1e3, 1.0)]) {
                let s = random_logits(&mut rng, n, c, scale);
                let t = random_logits(&mut rng, n, c, scale);
                let err = check(&s, &t, temperature, eps, |s| {
                    distill_kl(&s.view(), &t.view(), temperature).unwrap().1
                });
                assert!(
                    err < 1e-2,
                    "T={temperature} n={n} c={c} scale={scale}: {err:.3e}"
                );
            }
        }
    }

    #[test]
    fn gradient_check_catches_a_missing_temperature_factor() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (s, t) = (
            random_logits(&mut rng, 4, 10, 3.0),
            random_logits(&mut rng, 4, 10, 3.0),
        );
        let temperature = 3.0;
        // The common mistake: (p_s − p_t)/n without the factor T.
        let err = check(&s, &t, temperature, 0.1, |s| {
            distill_kl(&s.view(), &t.view(), temperature).unwrap().1 / temperature
        });
        assert!(
            err > 0.3,
            "a gradient off by a factor T passed the check: {err:.3e}"
        );
    }

    #[test]
    fn nonnegative_and_zero_at_the_teacher() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for scale in [0.1f32, 3.0, 100.0, 1e4] {
            let s = random_logits(&mut rng, 8, 10, scale);
            let t = random_logits(&mut rng, 8, 10, scale);
            let (loss, grad) = distill_kl(&s.view(), &t.view(), 3.0).unwrap();
            assert!(loss.is_finite() && loss > 0.0, "scale {scale}: {loss}");
            assert!(grad.iter().all(|g| g.is_finite()));
            let (loss, grad) = distill_kl(&s.view(), &s.view(), 3.0).unwrap();
            assert_eq!(loss, 0.0, "scale {scale}");
            assert!(grad.iter().all(|&g| g == 0.0));
        }
    }

    #[test]
    fn matches_hand_computed_value() {
        // Teacher certain of class 0 (p_t = [1, 0]); student uniform at T = 1:
        // KL = 1·(log 1 − log ½) = ln 2; gradient (½ − 1, ½ − 0).
        let s = array![[0.0f32, 0.0]];
        let t = array![[1e4f32, -1e4]];
        let (loss, grad) = distill_kl(&s.view(), &t.view(), 1.0).unwrap();
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-6, "{loss}");
        assert_eq!(grad, array![[-0.5f32, 0.5]]);
        // At T = 2 the loss scales by T² of the KL at the softened targets, here still ln 2.
        let (loss2, grad2) = distill_kl(&s.view(), &t.view(), 2.0).unwrap();
        assert!(
            (loss2 - 4.0 * std::f32::consts::LN_2).abs() < 1e-5,
            "{loss2}"
        );
        assert_eq!(grad2, array![[-1.0f32, 1.0]]);
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let a = Array2::<f32>::zeros((2, 3));
        for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let e = distill_kl(&a.view(), &a.view(), t).unwrap_err().to_string();
            assert!(e.contains("temperature"), "{e}");
        }
        let b = Array2::<f32>::zeros((2, 4));
        let e = distill_kl(&a.view(), &b.view(), 3.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("teacher"), "{e}");
        let empty = Array2::<f32>::zeros((0, 3));
        assert!(distill_kl(&empty.view(), &empty.view(), 3.0).is_err());
    }
}
