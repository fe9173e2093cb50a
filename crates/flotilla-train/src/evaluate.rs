//! Test-set evaluation.

use crate::{BatchLoader, Result};
use flotilla_data::Dataset;
use flotilla_nn::{LossStats, Network, Weights};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Loss and accuracy of `weights` on every sample of `data`, in evaluation mode, in index
/// order and batches of `batch_size` (the result does not depend on `batch_size` beyond
/// float rounding of the loss sum).
pub fn evaluate(
    net: &mut Network,
    weights: &Weights,
    data: &Dataset,
    batch_size: usize,
) -> Result<LossStats> {
    net.check_weights(weights)?;
    evaluate_range(net, weights, data, 0..data.len(), batch_size.max(1))
}

/// [`evaluate`] cut into `parts` runs of whole batches (the batches `evaluate` forms), run
/// on one thread per network of `nets` (this one and `nets.len() - 1` helpers), and merged
/// in part order: the result depends on `parts` (the order of the loss sum), never on how
/// many networks there are. A server's evaluation otherwise holds one thread while the
/// others, at a round's end, have nothing to do.
///
/// Returns the statistics and the wall time the helpers spent (for a runner's accounting of
/// its threads' time; zero with one network).
///
/// # Panics
/// If `nets` is empty; a helper's panic is resumed on the calling thread.
pub fn evaluate_parts(
    nets: &mut [Network],
    weights: &Weights,
    data: &Dataset,
    batch_size: usize,
    parts: usize,
) -> Result<(LossStats, Duration)> {
    let (first, helpers) = nets.split_first_mut().expect("at least one network");
    first.check_weights(weights)?;
    let batch = batch_size.max(1);
    let per_part = data.len().div_ceil(batch).div_ceil(parts.max(1)).max(1) * batch;
    let ranges: Vec<Range<usize>> = (0..data.len())
        .step_by(per_part)
        .map(|start| start..(start + per_part).min(data.len()))
        .collect();
    let next = AtomicUsize::new(0);
    // Each thread takes the next part until none is left.
    let work = |net: &mut Network| -> Result<Vec<(usize, LossStats)>> {
        let mut done = Vec::new();
        loop {
            let part = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(part) else {
                return Ok(done);
            };
            done.push((
                part,
                evaluate_range(net, weights, data, range.clone(), batch)?,
            ));
        }
    };
    let timed = |net: &mut Network| {
        let started = Instant::now();
        work(net).map(|done| (done, started.elapsed()))
    };
    let (mut done, helper_time) = std::thread::scope(|s| {
        let helpers: Vec<_> = helpers
            .iter_mut()
            .map(|net| s.spawn(|| timed(net)))
            .collect();
        let mut done = work(first)?;
        let mut helper_time = Duration::ZERO;
        for helper in helpers {
            match helper.join() {
                Ok(part) => {
                    let (part, time) = part?;
                    done.extend(part);
                    helper_time += time;
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok::<_, crate::TrainError>((done, helper_time))
    })?;
    done.sort_by_key(|&(part, _)| part);
    let mut stats = LossStats::default();
    for (_, part) in &done {
        stats.merge(part);
    }
    Ok((stats, helper_time))
}

/// The statistics of samples `range` of `data`, in batches of `batch` from its start.
fn evaluate_range(
    net: &mut Network,
    weights: &Weights,
    data: &Dataset,
    range: Range<usize>,
    batch: usize,
) -> Result<LossStats> {
    let loader = BatchLoader::new(data, None);
    let mut stats = LossStats::default();
    let indices: Vec<usize> = range.collect();
    for chunk in indices.chunks(batch) {
        let (x, y) = loader.load_plain(chunk)?;
        let logits = net.predict(x, weights);
        stats.add_batch(&logits.view(), &y)?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_data::ImageShape;
    use flotilla_nn::{ModelSpec, Shape};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// 103 random 5-dimensional samples of 3 classes (not a multiple of any batch here).
    fn data() -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x = Array2::from_shape_fn((103, 5), |_| rng.random_range(-2.0..2.0));
        let y = (0..103).map(|i| (i % 3) as u32).collect();
        Dataset::new("random", x, y, ImageShape::flat(5), 3).unwrap()
    }

    fn nets(n: usize) -> Vec<Network> {
        let spec = ModelSpec::Mlp(vec![5, 7, 3]);
        (0..n)
            .map(|_| spec.build(Shape::flat(5), 3).unwrap())
            .collect()
    }

    #[test]
    fn parts_give_the_same_bits_on_any_number_of_threads() {
        let data = data();
        let weights = nets(1)[0].init(&mut ChaCha8Rng::seed_from_u64(3));
        let whole = evaluate(&mut nets(1)[0], &weights, &data, 8).unwrap();
        for parts in [1, 2, 5, 13, 40] {
            let on = |threads| {
                evaluate_parts(&mut nets(threads), &weights, &data, 8, parts).map(|r| r.0)
            };
            let one = on(1).unwrap();
            for threads in [2, 3, 8] {
                assert_eq!(
                    on(threads).unwrap(),
                    one,
                    "{parts} parts on {threads} threads"
                );
            }
            // The same batches: the counts are exact, the loss sum differs only in order.
            assert_eq!((one.correct, one.count), (whole.correct, whole.count));
            assert!((one.loss_sum - whole.loss_sum).abs() <= 1e-12 * whole.loss_sum.abs());
            if parts == 1 {
                assert_eq!(one, whole);
            }
        }
    }

    #[test]
    fn weights_of_another_model_are_refused() {
        let data = data();
        let other = ModelSpec::Mlp(vec![5, 4, 3])
            .build(Shape::flat(5), 3)
            .unwrap();
        let weights = other.init(&mut ChaCha8Rng::seed_from_u64(3));
        assert!(evaluate_parts(&mut nets(2), &weights, &data, 8, 4).is_err());
    }
}
