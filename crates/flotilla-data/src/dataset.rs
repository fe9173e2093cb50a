//! The in-memory dataset every loader and generator produces.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use ndarray::{Array2, ArrayViewMut1, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::parallel::{MIN_PART_VALUES, for_each_parallel, part_len, widest};
use crate::synthetic::SyntheticRows;
use crate::transform::Standardizer;

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

/// A labelled dataset: one row of features per sample.
///
/// A row is the sample's pixels in HWC row-major order (channels last). Loaders scale 8-bit
/// pixels to `[0, 1]` (`x / 255`). Clients of a federated simulation hold index lists into one
/// shared dataset (typically behind an `Arc`) and copy only the rows of a batch with
/// [`Dataset::gather`]. The rows are held in one contiguous array, except those of a large
/// synthetic task, which are regenerated, to the same bits, on each access (see
/// [`crate::synthetic`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    rows: Rows,
    labels: Vec<u32>,
    shape: ImageShape,
    classes: usize,
    name: String,
}

/// Where a dataset's rows come from.
#[derive(Debug, Clone, PartialEq)]
enum Rows {
    /// Held in memory, one row per sample.
    Stored(Array2<f32>),
    /// Regenerated on access.
    Generated(GeneratedRows),
}

/// Rows regenerated on access, then standardised by each of `standardizers` in order.
#[derive(Debug, Clone, PartialEq)]
struct GeneratedRows {
    generator: Arc<SyntheticRows>,
    standardizers: Vec<Standardizer>,
}

impl GeneratedRows {
    /// Writes row `i`, standardised, into `row`.
    fn fill(&self, i: usize, row: &mut [f32]) {
        self.generator.fill(i, row);
        for s in &self.standardizers {
            s.apply_row(ArrayViewMut1::from(&mut *row));
        }
    }
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
            rows: Rows::Stored(features),
            labels,
            shape,
            classes,
            name,
        })
    }

    /// A dataset whose rows `generator` regenerates on access (a synthetic task too large
    /// to hold); `labels` must have one entry per generated row, each `< classes`.
    pub(crate) fn generated(
        name: impl Into<String>,
        generator: SyntheticRows,
        labels: Vec<u32>,
        classes: usize,
    ) -> Self {
        debug_assert_eq!(generator.len(), labels.len());
        debug_assert!(labels.iter().all(|&l| (l as usize) < classes));
        Self {
            shape: ImageShape::flat(generator.dim()),
            rows: Rows::Generated(GeneratedRows {
                generator: Arc::new(generator),
                standardizers: Vec::new(),
            }),
            labels,
            classes,
            name: name.into(),
        }
    }

    /// The dataset's name (e.g. `mnist-train`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All samples, `[len, shape.size()]`, HWC rows: borrowed when they are held in memory,
    /// generated in full otherwise (for a large synthetic task, prefer [`Dataset::gather`]
    /// or [`Dataset::for_each_row`]).
    pub fn features(&self) -> Cow<'_, Array2<f32>> {
        match &self.rows {
            Rows::Stored(features) => Cow::Borrowed(features),
            Rows::Generated(_) => {
                let all: Vec<usize> = (0..self.len()).collect();
                Cow::Owned(self.gather(&all).0)
            }
        }
    }

    /// Calls `f` on every row in index order, as a slice (so loops over it vectorise),
    /// holding at most one row at a time beyond the stored ones.
    pub fn for_each_row(&self, mut f: impl FnMut(&[f32])) {
        let width = self.shape.size();
        match &self.rows {
            Rows::Stored(features) => match features.as_slice() {
                Some(flat) => flat.chunks_exact(width).for_each(f),
                None => features.rows().into_iter().for_each(|r| f(&r.to_vec())),
            },
            Rows::Generated(generated) => {
                let mut row = vec![0.0; width];
                for i in 0..self.len() {
                    generated.fill(i, &mut row);
                    f(&row);
                }
            }
        }
    }

    /// Accumulates per feature position into `acc` (one value per position): calls
    /// `f(first, part, row)` for every row in index order, `part` being `acc`'s values for
    /// positions `first..first + part.len()`. When the rows are held, the positions are
    /// split into parts accumulated on every core; each position still sees the rows in
    /// order, so the result does not depend on the split.
    pub(crate) fn fold_positions<T: Send>(
        &self,
        acc: &mut [T],
        f: impl Fn(usize, &mut [T], &[f32]) + Sync,
    ) {
        let width = self.shape.size();
        assert_eq!(acc.len(), width, "one accumulator per feature position");
        let flat = match &self.rows {
            Rows::Stored(features) => features.as_slice(),
            Rows::Generated(_) => None,
        };
        let Some(flat) = flat else {
            self.for_each_row(|row| f(0, acc, row));
            return;
        };
        let len = part_len(width, MIN_PART_VALUES.div_ceil(self.len().max(1)));
        for_each_parallel(acc.chunks_mut(len).enumerate(), |(i, part)| {
            widest(|| {
                flat.chunks_exact(width)
                    .for_each(|row| f(i * len, part, row));
            });
        });
    }

    /// Standardises every row with `standardizer`: in place when the rows are held, on
    /// each access otherwise.
    pub(crate) fn standardize(&mut self, standardizer: &Standardizer) -> Result<()> {
        match &mut self.rows {
            Rows::Stored(features) => standardizer.apply(features.view_mut()),
            Rows::Generated(generated) => {
                standardizer.check_width(self.shape.size())?;
                generated.standardizers.push(standardizer.clone());
                Ok(())
            }
        }
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
        let features = match &self.rows {
            // Row by row as slices: `select` goes through `concatenate`, an element-wise
            // zip that cost 8 % of an MLP training run.
            Rows::Stored(features) => match features.as_slice() {
                Some(flat) => {
                    let width = features.ncols();
                    let mut batch = Vec::with_capacity(indices.len() * width);
                    for &i in indices {
                        assert!(i < self.len(), "sample {i} of {}", self.len());
                        batch.extend_from_slice(&flat[i * width..(i + 1) * width]);
                    }
                    Array2::from_shape_vec((indices.len(), width), batch)
                        .expect("rows × width values")
                }
                None => features.select(Axis(0), indices),
            },
            Rows::Generated(generated) => {
                let mut batch = Array2::zeros((indices.len(), self.shape.size()));
                for (&i, mut row) in indices.iter().zip(batch.rows_mut()) {
                    assert!(i < self.len(), "sample {i} of {}", self.len());
                    let row = row
                        .as_slice_mut()
                        .expect("rows of a fresh array are contiguous");
                    generated.fill(i, row);
                }
                batch
            }
        };
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
