//! Splitting a dataset's sample indices among federated clients.
//!
//! A [`Partition`] maps each client to the indices of its samples in one shared dataset. Every
//! partitioner here returns each client's indices in ascending order, covers every sample
//! exactly once (the labeled/unlabeled splits cover every sample exactly once across both
//! parts), and draws all randomness from the `rng` passed in, so the same rng state gives the
//! same partition. A split can also be read from a partition file ([`read_partition_file`]),
//! which keeps the file's indices and order as they are.

mod dirichlet;
mod file;
mod iid;
mod labeled_unlabeled;
mod natural;
mod shards;
mod stats;

pub use dirichlet::{MAX_DRAWS, dirichlet};
pub use file::{parse_partition_file, partition_file_json, read_partition_file};
pub use iid::iid;
pub use labeled_unlabeled::{LabeledUnlabeled, dirichlet_labeled_unlabeled, fraction_split};
pub use natural::natural;
pub use shards::shards;
pub use stats::{LabelHistogram, label_histogram, mean_total_variation};

use crate::error::{DataError, Result};

/// Client → indices of its samples in a dataset.
pub type Partition = Vec<Vec<usize>>;

/// Checks that `partition` has no empty client and covers `0..n_samples` exactly once.
pub fn validate(partition: &[Vec<usize>], n_samples: usize) -> Result<()> {
    let mut owner = vec![None; n_samples];
    for (client, indices) in partition.iter().enumerate() {
        if indices.is_empty() {
            return Err(invalid(format!("client {client} has no samples")));
        }
        for &i in indices {
            let slot = owner.get_mut(i).ok_or_else(|| {
                invalid(format!(
                    "client {client}: index {i} out of range for {n_samples} samples"
                ))
            })?;
            if let Some(other) = slot.replace(client) {
                return Err(invalid(format!(
                    "index {i} is in both client {other} and client {client}"
                )));
            }
        }
    }
    match owner.iter().position(Option::is_none) {
        Some(i) => Err(invalid(format!("sample {i} belongs to no client"))),
        None => Ok(()),
    }
}

fn invalid(reason: String) -> DataError {
    DataError::Partition { reason }
}

/// Checks `clients >= 1`.
fn check_clients(clients: usize) -> Result<()> {
    if clients == 0 {
        return Err(DataError::param(
            "clients",
            clients,
            "need at least one client",
        ));
    }
    Ok(())
}

/// Checks every label is `< classes`.
fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(i) => Err(DataError::param(
            "labels",
            format!("labels[{i}] = {}", labels[i]),
            format!("must be below classes = {classes}"),
        )),
        None => Ok(()),
    }
}

/// Checks that `holders` are distinct clients below `clients`.
fn check_holders(holders: &[usize], clients: usize) -> Result<()> {
    for (k, &h) in holders.iter().enumerate() {
        if h >= clients {
            return Err(DataError::param(
                "holders",
                format!("holders[{k}] = {h}"),
                format!("must be below clients = {clients}"),
            ));
        }
        if holders[..k].contains(&h) {
            return Err(DataError::param(
                "holders",
                format!("holders[{k}] = {h}"),
                "listed twice",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_each_violation() {
        assert!(validate(&[vec![0, 2], vec![1]], 3).is_ok());
        let cases: [(&[Vec<usize>], &str); 4] = [
            (&[vec![0, 1], vec![]], "client 1 has no samples"),
            (&[vec![0, 5]], "index 5 out of range"),
            (&[vec![0, 1], vec![1, 2]], "index 1 is in both"),
            (&[vec![0, 1]], "sample 2 belongs to no client"),
        ];
        for (partition, expected) in cases {
            let msg = validate(partition, 3).unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg}");
        }
    }
}
