//! Natural partitions given by the data itself (e.g. LEAF writers).

use super::{Partition, validate};
use crate::error::Result;

/// Uses `groups` (e.g. `LeafDataset::by_writer`) as the partition after checking that no group is
/// empty and that the groups cover `0..n_samples` exactly once. Each group is sorted ascending.
pub fn natural(mut groups: Vec<Vec<usize>>, n_samples: usize) -> Result<Partition> {
    validate(&groups, n_samples)?;
    groups.iter_mut().for_each(|g| g.sort_unstable());
    Ok(groups)
}
