//! Mini-batch index sampling for local training.
//!
//! Local training takes `H` SGD steps with batch size `B`, cycling through the client's data
//! epoch by epoch like the reference's `shuffle → batch → repeat` pipeline: each epoch is a
//! fresh permutation cut into batches of `B`, and an epoch's last batch holds the remainder (so
//! a client with fewer than `B` samples trains on batches of all its samples).

use rand::Rng;
use rand::seq::SliceRandom;

use crate::error::{DataError, Result};

/// One epoch: `indices` shuffled and cut into consecutive batches of `batch_size`, the last
/// holding the remainder. Empty `indices` give no batches.
///
/// Errors if `batch_size` is zero.
pub fn shuffled_batches(
    indices: &[usize],
    batch_size: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size)?;
    let mut order = indices.to_vec();
    order.shuffle(rng);
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// Exactly `steps` batches from consecutive epochs of [`shuffled_batches`], starting a new
/// epoch (reshuffled) whenever the previous one is used up, drawn one step at a time.
///
/// The sampler holds one epoch's order (as many indices as it samples from), never the list
/// of all steps, and hands out each batch as a slice of it: memory does not grow with
/// `steps`, and no step allocates.
///
/// Its shuffles draw from its own copy of the caller's generator, taken at construction;
/// the caller's generator is advanced past every draw those shuffles will make. The
/// caller's later draws (augmenting the batches, the next phase) therefore come from the
/// same stream positions as if every batch had been drawn up front, before the first
/// step: drawing step by step changes no result.
#[derive(Debug)]
pub struct StepSampler<'a, R> {
    indices: &'a [usize],
    batch_size: usize,
    steps_left: usize,
    /// The current epoch's order; `order[next..]` is still to be handed out.
    order: Vec<usize>,
    next: usize,
    rng: R,
}

impl<'a, R: Rng + Clone> StepSampler<'a, R> {
    /// A sampler of `steps` batches of `batch_size` from `indices`, shuffling with the
    /// current stream of `rng` (which it advances past those shuffles; see the type docs).
    ///
    /// Errors if `batch_size` is zero, or if `indices` is empty while `steps > 0`.
    pub fn new(indices: &'a [usize], steps: usize, batch_size: usize, rng: &mut R) -> Result<Self> {
        check_batch_size(batch_size)?;
        if indices.is_empty() && steps > 0 {
            return Err(DataError::param(
                "indices",
                "[]",
                format!("cannot take {steps} steps without samples"),
            ));
        }
        let sampler = Self {
            indices,
            batch_size,
            steps_left: steps,
            order: indices.to_vec(),
            next: indices.len(),
            rng: rng.clone(),
        };
        // A shuffle's draws depend on the slice's length only, not on its contents.
        let epochs = steps.div_ceil(indices.len().div_ceil(batch_size).max(1));
        let mut scratch = indices.to_vec();
        for _ in 0..epochs {
            scratch.shuffle(rng);
        }
        Ok(sampler)
    }

    /// The next batch, or `None` once `steps` batches have been handed out.
    pub fn next_batch(&mut self) -> Option<&[usize]> {
        self.steps_left = self.steps_left.checked_sub(1)?;
        if self.next == self.order.len() {
            self.order.copy_from_slice(self.indices);
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
        let start = self.next;
        self.next = (start + self.batch_size).min(self.order.len());
        Some(&self.order[start..self.next])
    }
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(DataError::param("batch_size", 0, "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn an_epoch_covers_each_index_once() {
        let indices: Vec<usize> = (100..170).collect();
        let batches = shuffled_batches(&indices, 32, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![32, 32, 6]);
        let mut all = batches.concat();
        all.sort_unstable();
        assert_eq!(all, indices);
    }

    /// All `steps` batches at once, as local training drew them before [`StepSampler`].
    fn up_front(
        indices: &[usize],
        steps: usize,
        batch_size: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<usize>> {
        let mut batches = Vec::new();
        while batches.len() < steps {
            let epoch = shuffled_batches(indices, batch_size, rng).unwrap();
            let wanted = steps - batches.len();
            batches.extend(epoch.into_iter().take(wanted));
        }
        batches
    }

    fn drain(sampler: &mut StepSampler<'_, ChaCha8Rng>) -> Vec<Vec<usize>> {
        std::iter::from_fn(|| sampler.next_batch().map(<[usize]>::to_vec)).collect()
    }

    #[test]
    fn steps_cycle_through_epochs() {
        let indices: Vec<usize> = (0..40).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batches = drain(&mut StepSampler::new(&indices, 5, 16, &mut rng).unwrap());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![16, 16, 8, 16, 16]);
        let mut first_epoch = batches[..3].concat();
        first_epoch.sort_unstable();
        assert_eq!(first_epoch, indices);
    }

    #[test]
    fn step_by_step_draws_what_up_front_drew_and_leaves_the_stream_alike() {
        for (n, steps, batch) in [
            (40, 5, 16),
            (40, 3, 16),
            (3, 4, 32),
            (100, 250, 7),
            (1, 3, 1),
        ] {
            let indices: Vec<usize> = (1000..1000 + n).collect();
            let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
            let expected = up_front(&indices, steps, batch, &mut a);
            let mut sampler = StepSampler::new(&indices, steps, batch, &mut b).unwrap();
            // The caller's stream is where up-front drawing left it, before any step: the
            // caller's draws between steps (augmentation) come from the same positions.
            assert_eq!(a.get_word_pos(), b.get_word_pos(), "n {n} steps {steps}");
            let interleaved: u64 = b.random();
            assert_eq!(
                drain(&mut sampler),
                expected,
                "n {n} steps {steps} batch {batch}"
            );
            assert_eq!(interleaved, a.random::<u64>());
        }
    }

    #[test]
    fn memory_does_not_grow_with_steps() {
        let indices = [4, 5, 6];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut sampler = StepSampler::new(&indices, 1_000_000, 2, &mut rng).unwrap();
        for _ in 0..10 {
            assert!(
                sampler
                    .next_batch()
                    .is_some_and(|b| !b.is_empty() && b.len() <= 2)
            );
        }
        // One epoch's order, whatever the number of steps.
        assert_eq!(sampler.order.capacity(), indices.len());
    }

    #[test]
    fn small_and_empty_clients() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let batches = drain(&mut StepSampler::new(&[7, 8, 9], 4, 32, &mut rng).unwrap());
        assert_eq!(batches.len(), 4);
        assert!(batches.iter().all(|b| b.len() == 3));
        assert!(shuffled_batches(&[], 32, &mut rng).unwrap().is_empty());
        let mut none = StepSampler::new(&[], 0, 32, &mut rng).unwrap();
        assert!(none.next_batch().is_none());
        let e = StepSampler::new(&[], 1, 32, &mut rng).unwrap_err();
        assert!(e.to_string().contains("indices"), "{e}");
        assert!(StepSampler::new(&[1], 1, 0, &mut rng).is_err());
        assert!(shuffled_batches(&[1], 0, &mut rng).is_err());
    }
}
