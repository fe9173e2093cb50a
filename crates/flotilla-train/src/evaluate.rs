//! Test-set evaluation.

use crate::{BatchLoader, Result};
use flotilla_data::Dataset;
use flotilla_nn::{LossStats, Network, Weights};

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
    let loader = BatchLoader::new(data, None);
    let mut stats = LossStats::default();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let (x, y) = loader.load_plain(chunk)?;
        let logits = net.predict(x, weights);
        stats.add_batch(&logits.view(), &y)?;
    }
    Ok(stats)
}
