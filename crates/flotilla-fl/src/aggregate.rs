//! Aggregation: weighted means of flat weight vectors, in a fixed order.

use crate::{ModelRole, Reply};
use flotilla_nn::Weights;
use flotilla_sim::NodeId;
use ndarray::Array1;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The weighted mean `Σ wᵢ·xᵢ / Σ wᵢ` of `updates` (weight, vector), accumulated in `f64` in
/// the order given; callers pass updates sorted by client id so the bits never depend on
/// arrival order. Returns `None` when there is nothing to average (no updates, or weights
/// summing to zero or not finite).
///
/// Computed a block of 2,048 entries at a time, every update's block in turn, so the
/// `f64` sums stay in the core's cache and each update is read once; every entry still sums
/// its updates in the order given.
///
/// # Panics
/// If the vectors differ in length (updates of one model always agree).
pub fn weighted_mean<'a>(
    updates: impl IntoIterator<Item = (f64, &'a Array1<f32>)>,
) -> Option<Array1<f32>> {
    let updates: Vec<(f64, &Array1<f32>)> = updates.into_iter().collect();
    let len = updates.first()?.1.len();
    let total = updates.iter().fold(0.0f64, |total, &(w, x)| {
        assert_eq!(x.len(), len, "updates of one model have one length");
        total + w
    });
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let mut mean = vec![0.0f32; len];
    // Weight vectors are contiguous; a strided one is copied rather than refused.
    let updates: Vec<(f64, Cow<'_, [f32]>)> = updates
        .iter()
        .map(|&(w, x)| {
            let values = x
                .as_slice()
                .map_or_else(|| Cow::Owned(x.to_vec()), Cow::Borrowed);
            (w, values)
        })
        .collect();
    let updates: Vec<(f64, &[f32])> = updates.iter().map(|(w, x)| (*w, x.as_ref())).collect();
    // Compiled for the widest vectors this CPU has: each entry's arithmetic and order are
    // the same at any width, so the bits are too.
    pulp::Arch::new().dispatch(BlockedMean {
        updates: &updates,
        total,
        mean: &mut mean,
    });
    Some(Array1::from(mean))
}

/// [`weighted_mean`]'s arithmetic on checked inputs, run by [`pulp::Arch::dispatch`].
struct BlockedMean<'a> {
    updates: &'a [(f64, &'a [f32])],
    total: f64,
    mean: &'a mut [f32],
}

impl pulp::WithSimd for BlockedMean<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let mut sums = [0.0f64; BLOCK];
        for (start, mean) in (0..).step_by(BLOCK).zip(self.mean.chunks_mut(BLOCK)) {
            let sums = &mut sums[..mean.len()];
            sums.fill(0.0);
            for &(w, x) in self.updates {
                for (sum, &v) in sums.iter_mut().zip(&x[start..start + mean.len()]) {
                    *sum += w * f64::from(v);
                }
            }
            for (m, &sum) in mean.iter_mut().zip(&*sums) {
                *m = (sum / self.total) as f32;
            }
        }
    }
}

/// Entries of [`weighted_mean`]'s blocks: 2,048 `f64` sums, 16 KiB.
const BLOCK: usize = 2048;

/// The weighted mean of whole models: parameters and batch-norm statistics alike (the
/// reference averages running statistics too).
pub fn average_weights<'a>(
    updates: impl IntoIterator<Item = (f64, &'a Weights)> + Clone,
) -> Option<Weights> {
    let params = weighted_mean(updates.clone().into_iter().map(|(w, u)| (w, &u.params)))?;
    let state = weighted_mean(updates.into_iter().map(|(w, u)| (w, &u.state)))?;
    Some(Weights { params, state })
}

/// The mean of the `role` models in `replies` (in client-id order), weighted by sample
/// count or equally; replies without that model are skipped. `None` if no reply has it.
pub fn average_replies(
    replies: &BTreeMap<NodeId, Reply>,
    role: ModelRole,
    weighted: bool,
) -> Option<Weights> {
    let models: Vec<(f64, &Weights)> = replies
        .values()
        .filter_map(|r| {
            let w = if weighted { f64::from(r.samples) } else { 1.0 };
            r.model(role).map(|p| (w, p.weights.as_ref()))
        })
        .collect();
    average_weights(models.iter().copied())
}

/// `k` clients of `pool` drawn uniformly without replacement (all of them when `k` is
/// `None` or at least the pool's size), in id order.
pub fn sample_clients(pool: &[NodeId], k: Option<usize>, rng: &mut ChaCha8Rng) -> Vec<NodeId> {
    let mut chosen: Vec<NodeId> = match k {
        Some(k) if k < pool.len() => pool.choose_multiple(rng, k).copied().collect(),
        _ => pool.to_vec(),
    };
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vectors() -> impl Strategy<Value = Vec<(f64, Vec<f32>)>> {
        (1usize..6).prop_flat_map(|len| {
            proptest::collection::vec(
                (
                    0.1f64..10.0,
                    proptest::collection::vec(-100.0f32..100.0, len),
                ),
                1..8,
            )
        })
    }

    proptest! {
        #[test]
        fn mean_is_a_convex_combination(updates in vectors()) {
            let arrays: Vec<(f64, Array1<f32>)> =
                updates.iter().map(|(w, v)| (*w, Array1::from(v.clone()))).collect();
            let mean = weighted_mean(arrays.iter().map(|(w, a)| (*w, a))).unwrap();
            for j in 0..mean.len() {
                let lo = arrays.iter().map(|(_, a)| a[j]).fold(f32::INFINITY, f32::min);
                let hi = arrays.iter().map(|(_, a)| a[j]).fold(f32::NEG_INFINITY, f32::max);
                let slack = 1e-4 * (1.0 + lo.abs().max(hi.abs()));
                prop_assert!(mean[j] >= lo - slack && mean[j] <= hi + slack);
            }
        }

        #[test]
        fn mean_is_permutation_invariant(updates in vectors(), rotation in 0usize..8) {
            let arrays: Vec<(f64, Array1<f32>)> =
                updates.iter().map(|(w, v)| (*w, Array1::from(v.clone()))).collect();
            let mut rotated = arrays.clone();
            let k = rotation % rotated.len();
            rotated.rotate_left(k);
            let a = weighted_mean(arrays.iter().map(|(w, a)| (*w, a))).unwrap();
            let b = weighted_mean(rotated.iter().map(|(w, a)| (*w, a))).unwrap();
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()));
            }
        }

        #[test]
        fn equal_vectors_average_to_themselves(v in proptest::collection::vec(-1e3f32..1e3, 1..10), n in 1usize..5) {
            let a = Array1::from(v);
            let mean = weighted_mean((0..n).map(|i| (1.0 + i as f64, &a))).unwrap();
            prop_assert_eq!(mean, a);
        }
    }

    /// Across block boundaries (and a last, partial block) every entry is the sum of its
    /// updates in the order given, divided by the total: the bits of the plain loop.
    #[test]
    fn blocks_give_the_bits_of_one_running_sum_per_entry() {
        let len = 2 * BLOCK + 77;
        let updates: Vec<(f64, Array1<f32>)> = (0..3)
            .map(|u| {
                let x = (0..len).map(|i| ((i * 7 + u * 13) % 101) as f32 * 0.37 - 17.0);
                (1.0 + u as f64 * 0.5, x.collect())
            })
            .collect();
        let mean = weighted_mean(updates.iter().map(|(w, x)| (*w, x))).unwrap();
        let total: f64 = updates.iter().map(|u| u.0).sum();
        for i in 0..len {
            let sum = updates
                .iter()
                .fold(0.0f64, |s, (w, x)| s + w * f64::from(x[i]));
            assert_eq!(
                mean[i].to_bits(),
                ((sum / total) as f32).to_bits(),
                "entry {i}"
            );
        }
    }

    /// A strided vector (a view's layout in an owned array) averages as its contiguous copy.
    #[test]
    fn strided_updates_average_like_their_contiguous_copies() {
        let strided = |u: usize| {
            let mut x: Array1<f32> = (0..2 * BLOCK + 10)
                .map(|i| (i * 3 + u) as f32 * 0.1)
                .collect();
            x.slice_axis_inplace(ndarray::Axis(0), ndarray::Slice::new(0, None, 2));
            assert!(x.as_slice().is_none(), "the test needs a strided vector");
            x
        };
        let (a, b) = (strided(0), strided(1));
        let copies = (Array1::from(a.to_vec()), Array1::from(b.to_vec()));
        let mean = weighted_mean([(1.0, &a), (3.0, &b)]).unwrap();
        let want = weighted_mean([(1.0, &copies.0), (3.0, &copies.1)]).unwrap();
        assert_eq!(mean, want);
    }

    #[test]
    fn weights_matter_and_nothing_gives_none() {
        let a = Array1::from(vec![0.0f32, 0.0]);
        let b = Array1::from(vec![4.0f32, 8.0]);
        let mean = weighted_mean([(3.0, &a), (1.0, &b)]).unwrap();
        assert_eq!(mean.to_vec(), vec![1.0, 2.0]);
        assert!(weighted_mean(std::iter::empty()).is_none());
        assert!(weighted_mean([(0.0, &a)]).is_none());
    }
}
