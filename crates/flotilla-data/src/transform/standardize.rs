//! Mean/std standardisation fitted on a training set.

use ndarray::{ArrayViewMut1, ArrayViewMut2, Axis};

use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Result};
use crate::parallel::{MIN_PART_VALUES, for_each_parallel, part_len, widest};

/// Standard deviations below this are treated as 1 (constant features are only centred).
const MIN_STD: f64 = 1e-6;

/// Per-channel or per-pixel `(x - mean) / std`, fitted on a training set.
///
/// Statistics are population statistics (divide by `n`) accumulated in `f64`. Features whose
/// standard deviation is below `1e-6` (e.g. MNIST's always-black corners, per pixel) are only
/// centred.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    shape: ImageShape,
    /// One entry per channel (per-channel) or per feature (per-pixel).
    mean: Vec<f32>,
    /// Same length as `mean`.
    std: Vec<f32>,
    /// `mean` and `std` at every feature position (a row's layout), so that standardising a
    /// row is one vectorised pass instead of a modulo per value.
    mean_at: Vec<f32>,
    /// Same layout as `mean_at`.
    std_at: Vec<f32>,
}

impl Standardizer {
    /// Fits one mean and std per channel, over all samples and pixels.
    pub fn fit_per_channel(data: &Dataset) -> Result<Self> {
        Self::fit(data, data.shape().channels)
    }

    /// Fits one mean and std per feature (pixel and channel), over all samples.
    pub fn fit_per_pixel(data: &Dataset) -> Result<Self> {
        Self::fit(data, data.shape().size())
    }

    /// Fits statistics for feature position `p` in group `p % groups`.
    fn fit(data: &Dataset, groups: usize) -> Result<Self> {
        if data.is_empty() {
            return Err(DataError::param(
                "data",
                data.name(),
                "cannot fit on an empty dataset",
            ));
        }
        // Sums per feature position first (independent sums: they pipeline and vectorise,
        // where one running sum per channel is a chain of dependent additions), then per
        // group, in position order.
        let size = data.shape().size();
        let mut sum = vec![0.0f64; size];
        data.fold_positions(&mut sum, |first, sum, row| {
            for (s, &x) in sum.iter_mut().zip(&row[first..]) {
                *s += f64::from(x);
            }
        });
        let per_group = (data.len() * size / groups) as f64;
        let mean: Vec<f64> = by_group(&sum, groups)
            .iter()
            .map(|s| s / per_group)
            .collect();
        let centre: Vec<f64> = (0..size).map(|p| mean[p % groups]).collect();
        let mut square = vec![0.0f64; size];
        data.fold_positions(&mut square, |first, square, row| {
            for ((s, &x), m) in square.iter_mut().zip(&row[first..]).zip(&centre[first..]) {
                *s += (f64::from(x) - m).powi(2);
            }
        });
        let square = by_group(&square, groups);
        let std: Vec<f32> = square
            .iter()
            .map(|s| (s / per_group).sqrt())
            .map(|s| if s < MIN_STD { 1.0 } else { s as f32 })
            .collect();
        let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
        let at =
            |per_group: &[f32]| -> Vec<f32> { (0..size).map(|p| per_group[p % groups]).collect() };
        Ok(Self {
            shape: data.shape(),
            mean_at: at(&mean),
            std_at: at(&std),
            mean,
            std,
        })
    }

    /// The fitted means (per channel, or per feature in HWC order).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The fitted standard deviations, same layout as [`Standardizer::mean`].
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Standardises every row of `batch` in place; rows must have the fitted shape's size.
    /// A large batch (a whole dataset) is split into parts of rows standardised on every
    /// core.
    pub fn apply(&self, mut batch: ArrayViewMut2<'_, f32>) -> Result<()> {
        self.check_width(batch.ncols())?;
        let rows = part_len(
            batch.nrows(),
            MIN_PART_VALUES.div_ceil(batch.ncols().max(1)),
        );
        for_each_parallel(batch.axis_chunks_iter_mut(Axis(0), rows), |mut part| {
            widest(|| {
                for row in part.axis_iter_mut(Axis(0)) {
                    self.apply_row(row);
                }
            });
        });
        Ok(())
    }

    /// Errors unless rows of `columns` values have the fitted shape's size.
    pub(crate) fn check_width(&self, columns: usize) -> Result<()> {
        if columns != self.shape.size() {
            return Err(DataError::param(
                "batch",
                format!("{columns} columns"),
                format!("standardizer was fitted on {} samples", self.shape),
            ));
        }
        Ok(())
    }

    /// Standardises one row of the fitted size in place.
    #[inline(always)]
    pub(crate) fn apply_row(&self, mut row: ArrayViewMut1<'_, f32>) {
        let standardise = |(x, (m, s)): (&mut f32, (&f32, &f32))| *x = (*x - m) / s;
        let stats = self.mean_at.iter().zip(&self.std_at);
        match row.as_slice_mut() {
            Some(row) => row.iter_mut().zip(stats).for_each(standardise),
            None => row.iter_mut().zip(stats).for_each(standardise),
        }
    }

    /// Standardises all samples of `data`: in place when they are held in memory, on each
    /// access when they are generated.
    pub fn apply_dataset(&self, data: &mut Dataset) -> Result<()> {
        data.standardize(self)
    }
}

/// Per-position values summed into `groups` groups (position `p` into `p % groups`).
fn by_group(per_position: &[f64], groups: usize) -> Vec<f64> {
    let mut out = vec![0.0; groups];
    for (p, v) in per_position.iter().enumerate() {
        out[p % groups] += v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_images(n: usize) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let shape = ImageShape::new(4, 4, 3);
        let x = Array2::from_shape_fn((n, shape.size()), |(_, p)| {
            (p % 3) as f32 * 2.0 + rng.random::<f32>() * (1.0 + (p % 3) as f32)
        });
        Dataset::new("r", x, vec![0; n], shape, 1).unwrap()
    }

    fn channel_stats(data: &Dataset, channel: usize) -> (f64, f64) {
        let values: Vec<f64> = data
            .features()
            .iter()
            .enumerate()
            .filter(|(p, _)| p % 3 == channel)
            .map(|(_, &x)| f64::from(x))
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / values.len() as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn per_channel_gives_zero_mean_unit_std() {
        let mut data = random_images(200);
        let s = Standardizer::fit_per_channel(&data).unwrap();
        assert_eq!(s.mean().len(), 3);
        s.apply_dataset(&mut data).unwrap();
        for c in 0..3 {
            let (mean, std) = channel_stats(&data, c);
            assert!(
                mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-4,
                "channel {c}: {mean} {std}"
            );
        }
    }

    #[test]
    fn per_pixel_centres_each_feature_and_spares_constants() {
        let mut x = random_images(50).features().into_owned();
        x.column_mut(5).fill(0.25);
        let mut data = Dataset::new("r", x, vec![0; 50], ImageShape::new(4, 4, 3), 1).unwrap();
        let s = Standardizer::fit_per_pixel(&data).unwrap();
        assert_eq!(s.std().len(), 48);
        assert_eq!(s.std()[5], 1.0);
        s.apply_dataset(&mut data).unwrap();
        for column in data.features().columns() {
            assert!(column.mean().unwrap().abs() < 1e-5);
        }
        assert!(s.apply(Array2::zeros((1, 47)).view_mut()).is_err());
    }
}
