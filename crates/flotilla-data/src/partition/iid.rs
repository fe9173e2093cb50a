//! IID partitioning: shuffle and deal.

use rand::Rng;
use rand::seq::SliceRandom;

use super::{Partition, check_clients};
use crate::error::{DataError, Result};

/// Shuffles `0..n_samples` and deals it into `clients` parts whose sizes differ by at most one
/// (the first `n_samples % clients` clients get the extra sample).
///
/// Errors if `clients` is zero or exceeds `n_samples` (some client would be empty).
pub fn iid(n_samples: usize, clients: usize, rng: &mut impl Rng) -> Result<Partition> {
    check_clients(clients)?;
    if clients > n_samples {
        return Err(DataError::param(
            "clients",
            clients,
            format!("more clients than the {n_samples} samples"),
        ));
    }
    let mut order: Vec<usize> = (0..n_samples).collect();
    order.shuffle(rng);
    let (base, extra) = (n_samples / clients, n_samples % clients);
    let mut rest = order.as_slice();
    let partition = (0..clients)
        .map(|c| {
            let (mine, tail) = rest.split_at(base + usize::from(c < extra));
            rest = tail;
            let mut mine = mine.to_vec();
            mine.sort_unstable();
            mine
        })
        .collect();
    Ok(partition)
}
