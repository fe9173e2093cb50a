//! The in-memory dataset every loader and generator produces.

use std::fmt;

use ndarray::{Array2, ArrayViewMut2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Geometry of one sample: `height × width × channels`, stored channels-last (HWC).
///
/// Flat feature vectors of length `d` use `1 × 1 × d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageShape {
    /// Rows of the image.
    pub height: usize,
    /// Columns of the image.
    pub width: usize,
    /// Channels per pixel (1 grey, 3 RGB, or the feature count of a flat vector).
    pub channels: usize,
}

impl ImageShape {
    /// An image shape `height × width × channels`.
    pub fn new(height: usize, width: usize, channels: usize) -> Self {
        Self {
            height,
            width,
            channels,
        }
    }

    /// The shape of a flat feature vector of length `dim` (`1 × 1 × dim`).
    pub fn flat(dim: usize) -> Self {
        Self::new(1, 1, dim)
    }

    /// Number of values in one sample, `height · width · channels`.
    ///
    /// Every shape of a [`Dataset`] has a size that fits in `usize`; for a shape from elsewhere
    /// use [`ImageShape::checked_size`].
    pub fn size(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Number of values in one sample, or `None` if it overflows `usize`.
    pub fn checked_size(&self) -> Option<usize> {
        self.height
            .checked_mul(self.width)?
            .checked_mul(self.channels)
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

/// A labelled dataset held in one contiguous array.
///
/// `features` has one row per sample; a row is the sample's pixels in HWC row-major order
/// (channels last). Loaders scale 8-bit pixels to `[0, 1]` (`x / 255`). Clients of a federated
/// simulation hold index lists into one shared dataset (typically behind an `Arc`) and copy only
/// the rows of a batch with [`Dataset::gather`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    features: Array2<f32>,
    labels: Vec<u32>,
    shape: ImageShape,
    classes: usize,
    name: String,
}

impl Dataset {
    /// Builds a dataset, checking that rows have `shape.size()` values, that there is one label
    /// per row, and that every label is `< classes`.
    pub fn new(
        name: impl Into<String>,
        features: Array2<f32>,
        labels: Vec<u32>,
        shape: ImageShape,
        classes: usize,
    ) -> Result<Self> {
        let name = name.into();
        let invalid = |reason: String| DataError::InvalidDataset {
            name: name.clone(),
            reason,
        };
        if classes == 0 {
            return Err(invalid("a dataset needs at least one class".into()));
        }
        let size = shape
            .checked_size()
            .ok_or_else(|| invalid(format!("shape {shape} has more values than fit in memory")))?;
        if features.ncols() != size {
            return Err(invalid(format!(
                "rows have {} values but shape {shape} needs {size}",
                features.ncols(),
            )));
        }
        if features.nrows() != labels.len() {
            return Err(invalid(format!(
                "{} feature rows but {} labels",
                features.nrows(),
                labels.len()
            )));
        }
        if let Some((index, label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(invalid(format!(
                "sample {index}: label {label} out of range for {classes} classes"
            )));
        }
        Ok(Self {
            features,
            labels,
            shape,
            classes,
            name,
        })
    }

    /// The dataset's name (e.g. `mnist-train`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All samples, `[len, shape.size()]`, HWC rows.
    pub fn features(&self) -> &Array2<f32> {
        &self.features
    }

    /// Mutable view of all samples, for in-place preprocessing; the shape cannot change.
    pub fn features_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        self.features.view_mut()
    }

    /// One label per sample, each `< classes()`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Geometry of one sample.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Copies the selected rows (in the given order, repeats allowed) into a batch.
    ///
    /// # Panics
    /// If an index is `>= len()`: indices come from partitions of this dataset, so that is a bug.
    pub fn gather(&self, indices: &[usize]) -> (Array2<f32>, Vec<u32>) {
        let features = self.features.select(Axis(0), indices);
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        (features, labels)
    }

    /// Number of samples of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn tiny() -> Dataset {
        let x = array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]];
        Dataset::new("tiny", x, vec![1, 0, 1], ImageShape::flat(2), 2).unwrap()
    }

    #[test]
    fn gather_copies_selected_rows_in_order() {
        let (x, y) = tiny().gather(&[2, 0, 2]);
        assert_eq!(x, array![[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]);
        assert_eq!(y, vec![1, 1, 1]);
    }

    #[test]
    fn class_counts_counts_labels() {
        assert_eq!(tiny().class_counts(), vec![1, 2]);
    }

    #[test]
    fn new_rejects_inconsistent_data() {
        let x = Array2::<f32>::zeros((2, 3));
        let wrong_row = Dataset::new("d", x.clone(), vec![0, 0], ImageShape::flat(2), 2);
        assert!(wrong_row.unwrap_err().to_string().contains("shape 1x1x2"));
        let wrong_count = Dataset::new("d", x.clone(), vec![0], ImageShape::flat(3), 2);
        assert!(wrong_count.unwrap_err().to_string().contains("1 labels"));
        let huge = ImageShape::new(usize::MAX, 2, 1);
        let overflow = Dataset::new("d", x.clone(), vec![0, 0], huge, 2);
        assert!(
            overflow
                .unwrap_err()
                .to_string()
                .contains("more values than fit")
        );
        let bad_label = Dataset::new("d", x, vec![0, 2], ImageShape::flat(3), 2);
        assert!(
            bad_label
                .unwrap_err()
                .to_string()
                .contains("sample 1: label 2")
        );
    }
}
