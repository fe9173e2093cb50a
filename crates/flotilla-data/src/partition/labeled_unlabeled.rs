//! The method's split of the training set into per-client labeled data and, for some clients
//! (the strong ones), unlabeled data.

use rand::Rng;
use rand::seq::SliceRandom;

use super::{Partition, check_clients, check_holders, dirichlet};
use crate::error::{DataError, Result};

/// Per-client labeled and unlabeled sample indices.
///
/// Both partitions have one entry per client; `unlabeled[c]` is empty for clients that hold no
/// unlabeled data. Together they hold no sample twice, and cover the split samples exactly
/// once unless a split leaves some unused (see [`dirichlet_labeled_unlabeled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledUnlabeled {
    /// Labeled samples of each client.
    pub labeled: Partition,
    /// Unlabeled samples of each client (empty for non-holders).
    pub unlabeled: Partition,
}

/// The reference split: `clients + holders.len() · shards_per_holder` Dirichlet(`alpha`) shards
/// over all samples (see [`dirichlet`], with `min_per_shard` as its minimum); shard `i <
/// clients` is client `i`'s labeled data, and the following shards, `shards_per_holder` each in
/// the order of `holders`, are the holders' unlabeled data, of which each holder keeps the
/// first `kept_per_holder` (`≤ shards_per_holder`; the rest go unused). Keeping fewer shards
/// of the same draw varies the unlabeled data while every labeled shard stays the same.
///
/// The reference uses 100 clients and holders `0..20` with 5 shards each, all kept: 200
/// shards with `alpha = 0.1`, so the strong clients hold about half the training set,
/// unlabeled.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the reference's split parameters"
)]
pub fn dirichlet_labeled_unlabeled(
    labels: &[u32],
    classes: usize,
    clients: usize,
    holders: &[usize],
    shards_per_holder: usize,
    kept_per_holder: usize,
    alpha: f64,
    min_per_shard: usize,
    rng: &mut impl Rng,
) -> Result<LabeledUnlabeled> {
    check_clients(clients)?;
    check_holders(holders, clients)?;
    if kept_per_holder > shards_per_holder {
        return Err(DataError::param(
            "kept_per_holder",
            kept_per_holder,
            format!("must be at most shards_per_holder ({shards_per_holder})"),
        ));
    }
    let shard_count = holders
        .len()
        .checked_mul(shards_per_holder)
        .and_then(|s| s.checked_add(clients))
        .ok_or_else(|| {
            DataError::param("shards_per_holder", shards_per_holder, "too many shards")
        })?;
    let mut shards = dirichlet(labels, classes, shard_count, alpha, min_per_shard, rng)?;
    let holder_shards = shards.split_off(clients);
    let mut unlabeled = vec![Vec::new(); clients];
    if shards_per_holder > 0 {
        for (&holder, group) in holders.iter().zip(holder_shards.chunks(shards_per_holder)) {
            let mut indices = group[..kept_per_holder].concat();
            indices.sort_unstable();
            unlabeled[holder] = indices;
        }
    }
    Ok(LabeledUnlabeled {
        labeled: shards,
        unlabeled,
    })
}

/// Moves a random `unlabeled_fraction` (rounded to the nearest sample) of each holder's samples
/// from `partition` into its unlabeled set; other clients keep everything labeled.
///
/// Errors if the fraction is outside `[0, 1]` or a holder is out of range or repeated.
pub fn fraction_split(
    partition: &[Vec<usize>],
    unlabeled_fraction: f64,
    holders: &[usize],
    rng: &mut impl Rng,
) -> Result<LabeledUnlabeled> {
    if !(0.0..=1.0).contains(&unlabeled_fraction) {
        return Err(DataError::param(
            "unlabeled_fraction",
            unlabeled_fraction,
            "must be in [0, 1]",
        ));
    }
    check_holders(holders, partition.len())?;
    let mut labeled = partition.to_vec();
    let mut unlabeled = vec![Vec::new(); partition.len()];
    for &holder in holders {
        let mine = &mut labeled[holder];
        mine.shuffle(rng);
        let moved = (unlabeled_fraction * mine.len() as f64).round() as usize;
        let mut taken = mine.split_off(mine.len() - moved);
        mine.sort_unstable();
        taken.sort_unstable();
        unlabeled[holder] = taken;
    }
    Ok(LabeledUnlabeled { labeled, unlabeled })
}
