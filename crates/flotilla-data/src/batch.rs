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

/// Exactly `steps` batches drawn from consecutive epochs of [`shuffled_batches`], starting a
/// new epoch (reshuffled) whenever the previous one is used up.
///
/// Errors if `batch_size` is zero, or if `indices` is empty while `steps > 0`.
pub fn sample_steps(
    indices: &[usize],
    steps: usize,
    batch_size: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size)?;
    if indices.is_empty() && steps > 0 {
        return Err(DataError::param(
            "indices",
            "[]",
            format!("cannot take {steps} steps without samples"),
        ));
    }
    let mut batches = Vec::with_capacity(steps);
    while batches.len() < steps {
        let epoch = shuffled_batches(indices, batch_size, rng)?;
        let wanted = steps - batches.len();
        batches.extend(epoch.into_iter().take(wanted));
    }
    Ok(batches)
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

    #[test]
    fn steps_cycle_through_epochs() {
        let indices: Vec<usize> = (0..40).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batches = sample_steps(&indices, 5, 16, &mut rng).unwrap();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![16, 16, 8, 16, 16]);
        let mut first_epoch = batches[..3].concat();
        first_epoch.sort_unstable();
        assert_eq!(first_epoch, indices);
    }

    #[test]
    fn small_and_empty_clients() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let batches = sample_steps(&[7, 8, 9], 4, 32, &mut rng).unwrap();
        assert_eq!(batches.len(), 4);
        assert!(batches.iter().all(|b| b.len() == 3));
        assert!(shuffled_batches(&[], 32, &mut rng).unwrap().is_empty());
        assert!(sample_steps(&[], 0, 32, &mut rng).unwrap().is_empty());
        assert!(sample_steps(&[], 1, 32, &mut rng).is_err());
        assert!(shuffled_batches(&[1], 0, &mut rng).is_err());
    }
}
