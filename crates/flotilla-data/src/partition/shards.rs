//! Pathological non-IID partitioning by label-sorted shards (McMahan et al.).

use rand::Rng;
use rand::seq::SliceRandom;

use super::{Partition, check_clients};
use crate::error::{DataError, Result};

/// Sorts the sample indices by label (stable, so ties keep index order), cuts them into
/// `clients · shards_per_client` contiguous shards whose sizes differ by at most one, and deals
/// `shards_per_client` randomly chosen shards to each client.
///
/// Errors if a count is zero or there are more shards than samples.
pub fn shards(
    labels: &[u32],
    clients: usize,
    shards_per_client: usize,
    rng: &mut impl Rng,
) -> Result<Partition> {
    check_clients(clients)?;
    if shards_per_client == 0 {
        return Err(DataError::param(
            "shards_per_client",
            0,
            "must be at least 1",
        ));
    }
    let n = labels.len();
    let n_shards = clients.saturating_mul(shards_per_client);
    if n_shards > n {
        return Err(DataError::param(
            "shards_per_client",
            shards_per_client,
            format!("{clients} clients x {shards_per_client} shards exceeds the {n} samples"),
        ));
    }
    let mut sorted: Vec<usize> = (0..n).collect();
    sorted.sort_by_key(|&i| labels[i]);
    let (base, extra) = (n / n_shards, n % n_shards);
    let mut rest = sorted.as_slice();
    let shard_list: Vec<&[usize]> = (0..n_shards)
        .map(|s| {
            let (shard, tail) = rest.split_at(base + usize::from(s < extra));
            rest = tail;
            shard
        })
        .collect();
    let mut order: Vec<usize> = (0..n_shards).collect();
    order.shuffle(rng);
    let partition = order
        .chunks(shards_per_client)
        .map(|mine| {
            let mut indices: Vec<usize> =
                mine.iter().flat_map(|&s| shard_list[s]).copied().collect();
            indices.sort_unstable();
            indices
        })
        .collect();
    Ok(partition)
}
