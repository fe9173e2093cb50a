//! A built-in synthetic classification task that needs no files: the project's default data.
//!
//! # Recipe
//! From `ChaCha8Rng::seed_from_u64(seed)`, in independent streams of that generator:
//! 1. stream 0: `classes · clusters_per_class` cluster centres `μ ~ N(0, I_dim)`; cluster
//!    `k` belongs to class `k / clusters_per_class` (so each class is a mixture of
//!    `clusters_per_class` clusters scattered among the other classes' clusters).
//! 2. stream 1 for the `train_samples` training samples, stream 2 for the `test_samples` test
//!    samples, from the same distribution. Sample `i` of a split draws from word
//!    `i · 2³²` of its stream (its own window, so samples are independent of each other and
//!    generated in any order, on any number of threads, to the same bits). Sample `i` has
//!    class `i mod classes` (classes are balanced to within one sample), a cluster of that
//!    class drawn uniformly, and features `x = (μ + cluster_std · ε) / sqrt(1 + cluster_std²)`
//!    with `ε ~ N(0, I_dim)`. The scaling gives every feature mean 0 and variance 1 (in
//!    expectation over the centres), so no standardisation is needed.
//!
//! Defaults: 10 classes, 8 clusters per class, 32 dimensions, `cluster_std = 1`, 20,000 train
//! and 5,000 test samples, seed 0. Samples are flat (`1 × 1 × dim`).
//!
//! A split whose features would take more than [`MAX_STORED_SYNTHETIC_BYTES`] is not held in
//! memory: every access regenerates the sample's row from its window, to the same bits as if
//! it were held (a million 784-dimensional samples take no memory instead of 3.1 GB, and
//! nothing is drawn before a sample is first used). Held splits are generated on every core.
//!
//! With 80 interleaved clusters whose noise is as large as their spread, classes are far from
//! linearly separable and accuracy grows with capacity. Measured on the default task for seeds
//! 0, 1 and 2 (Adam, lr 1e-3, batch 128, 20 epochs, standardised inputs; test accuracy):
//! softmax regression ≈ 48 %, MLP 32-16-10 ≈ 63 %, 32-64-10 ≈ 89 %, 32-256-256-10 ≈ 96 % (it
//! fits the training set exactly). Generating the default task takes about 10 ms.

use std::sync::Arc;

use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Result};
use crate::parallel::{MIN_PART_VALUES, for_each_parallel, part_len};

/// The most memory a generated task may take \[bytes\]: 16 GiB for the features and labels
/// of both splits and the cluster centres (4 bytes per feature and label, 8 per centre
/// coordinate), counted with checked arithmetic before anything is allocated.
pub const MAX_SYNTHETIC_BYTES: u64 = 16 << 30;

/// The largest split whose features are held in memory \[bytes\]; larger splits are
/// regenerated on access (see the module docs).
pub const MAX_STORED_SYNTHETIC_BYTES: u64 = 512 << 20;

/// Parameters of the synthetic task (see the module docs for the recipe).
///
/// Deserialises from a partial object: missing fields take their default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Seed of the generator; the same config always gives the same datasets.
    pub seed: u64,
    /// Number of classes.
    pub classes: usize,
    /// Gaussian clusters making up each class.
    pub clusters_per_class: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Within-cluster standard deviation relative to the spread of the cluster centres.
    pub cluster_std: f64,
    /// Number of training samples.
    pub train_samples: usize,
    /// Number of test samples.
    pub test_samples: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            classes: 10,
            clusters_per_class: 8,
            dim: 32,
            cluster_std: 1.0,
            train_samples: 20_000,
            test_samples: 5_000,
        }
    }
}

impl SyntheticConfig {
    /// Generates the `(train, test)` datasets, named `synthetic-train` and `synthetic-test`.
    ///
    /// Errors as [`SyntheticConfig::validate`] does.
    pub fn generate(&self) -> Result<(Dataset, Dataset)> {
        self.generate_storing_up_to(MAX_STORED_SYNTHETIC_BYTES)
    }

    /// [`SyntheticConfig::generate`], holding a split in memory only if its features take
    /// at most `stored_bytes`.
    fn generate_storing_up_to(&self, stored_bytes: u64) -> Result<(Dataset, Dataset)> {
        self.validate()?;
        let stream = ChaCha8Rng::seed_from_u64(self.seed);
        let mut rng = stream.clone();
        let clusters = self.classes * self.clusters_per_class;
        let centres = Array2::from_shape_simple_fn((clusters, self.dim), || {
            rng.sample::<f64, _>(StandardNormal)
        });
        let recipe = Arc::new(Recipe {
            stream,
            centres,
            classes: self.classes,
            clusters_per_class: self.clusters_per_class,
            cluster_std: self.cluster_std,
        });
        let train = recipe.sample(
            TRAIN_STREAM,
            self.train_samples,
            "synthetic-train",
            stored_bytes,
        )?;
        let test = recipe.sample(
            TEST_STREAM,
            self.test_samples,
            "synthetic-test",
            stored_bytes,
        )?;
        Ok((train, test))
    }

    /// Checks the parameters without generating anything: errors
    /// ([`DataError::InvalidParameter`], naming the field) if `classes`,
    /// `clusters_per_class` or `dim` is zero, `classes` does not fit in `u32`, `dim` is over
    /// 2²⁸, `cluster_std` is negative or not finite, or the task would take more than
    /// [`MAX_SYNTHETIC_BYTES`].
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("classes", self.classes),
            ("clusters_per_class", self.clusters_per_class),
            ("dim", self.dim),
        ] {
            if value == 0 {
                return Err(DataError::param(name, value, "must be at least 1"));
            }
        }
        if u32::try_from(self.classes).is_err() {
            return Err(DataError::param(
                "classes",
                self.classes,
                "labels must fit in u32",
            ));
        }
        if !(self.cluster_std.is_finite() && self.cluster_std >= 0.0) {
            return Err(DataError::param(
                "cluster_std",
                self.cluster_std,
                "must be finite and non-negative",
            ));
        }
        self.check_size()?;
        if self.dim > MAX_DIM {
            Err(DataError::param(
                "dim",
                self.dim,
                format!(
                    "must be at most {MAX_DIM} (each sample draws from 2^32 words of its stream)"
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// Refuses a task over [`MAX_SYNTHETIC_BYTES`], naming `dim` if one sample is already
    /// too large, else its largest part. Counted in `u128`, checked.
    fn check_size(&self) -> Result<()> {
        let n = |v: usize| v as u128;
        let row = 4 * n(self.dim) + 4;
        let centres = n(self.classes)
            .checked_mul(n(self.clusters_per_class))
            .and_then(|c| c.checked_mul(8 * n(self.dim)));
        let parts = [
            (
                "train_samples",
                self.train_samples,
                n(self.train_samples).checked_mul(row),
            ),
            (
                "test_samples",
                self.test_samples,
                n(self.test_samples).checked_mul(row),
            ),
            ("clusters_per_class", self.clusters_per_class, centres),
        ];
        let limit = u128::from(MAX_SYNTHETIC_BYTES);
        let total = parts
            .iter()
            .try_fold(0u128, |sum, (_, _, b)| sum.checked_add((*b)?));
        if total.is_some_and(|t| t <= limit) {
            return Ok(());
        }
        let (name, value) = if row > limit {
            ("dim", self.dim)
        } else {
            parts
                .iter()
                .max_by_key(|(_, _, b)| b.unwrap_or(u128::MAX))
                .map_or(("train_samples", self.train_samples), |(k, v, _)| (*k, *v))
        };
        let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
        let needs = total.map_or("more than 2¹²⁸ bytes".to_string(), |t| {
            format!("{:.1} GiB", gib(t))
        });
        Err(DataError::param(
            name,
            value,
            format!(
                "with dim = {} and {} classes the synthetic task needs {needs}, over the \
                 {:.0} GiB limit",
                self.dim,
                self.classes,
                gib(limit)
            ),
        ))
    }
}

/// The generator's stream of the training samples (stream 0 holds the centres).
const TRAIN_STREAM: u64 = 1;

/// The generator's stream of the test samples.
const TEST_STREAM: u64 = 2;

/// Log₂ of the words of a split's stream each sample may draw from (`i · 2³²` is sample
/// `i`'s first word): far more than a sample uses (about two 32-bit words per feature, as
/// each normal draw takes one 64-bit word unless rejected), checked by [`MAX_DIM`].
const SAMPLE_WINDOW_BITS: u32 = 32;

/// The largest feature dimension: with a rejection rate under 2 %, a sample of this many
/// normal draws stays well inside its window of 2³² words.
const MAX_DIM: usize = 1 << 28;

/// How samples are drawn: the generator (at its start) and the cluster centres.
#[derive(Debug, Clone, PartialEq)]
struct Recipe {
    stream: ChaCha8Rng,
    centres: Array2<f64>,
    classes: usize,
    clusters_per_class: usize,
    cluster_std: f64,
}

impl Recipe {
    /// The `n` samples of split `stream`, sample `i` of class `i mod classes`: held in
    /// memory (generated on every core) if their features take at most `stored_bytes`,
    /// else regenerated on access.
    fn sample(
        self: &Arc<Self>,
        stream: u64,
        n: usize,
        name: &str,
        stored_bytes: u64,
    ) -> Result<Dataset> {
        let dim = self.centres.ncols();
        let labels: Vec<u32> = (0..n).map(|i| (i % self.classes) as u32).collect();
        if (n as u128) * (dim as u128) * 4 > u128::from(stored_bytes) {
            let rows = SyntheticRows {
                recipe: Arc::clone(self),
                stream,
                len: n,
            };
            return Ok(Dataset::generated(name, rows, labels, self.classes));
        }
        let mut features = Array2::<f32>::zeros((n, dim));
        let rows = part_len(n, MIN_PART_VALUES.div_ceil(dim.max(1)));
        let parts = features.axis_chunks_iter_mut(Axis(0), rows).enumerate();
        for_each_parallel(parts, |(part, mut features)| {
            for (i, mut row) in features.rows_mut().into_iter().enumerate() {
                let row = row
                    .as_slice_mut()
                    .expect("rows of a fresh array are contiguous");
                self.draw(stream, part * rows + i, row);
            }
        });
        Dataset::new(name, features, labels, ImageShape::flat(dim), self.classes)
    }

    /// Draws sample `i` of split `stream` into `row`, from the sample's own window of the
    /// stream: a cluster of its class `i mod classes`, uniformly, then
    /// `(μ + cluster_std · ε) / sqrt(1 + cluster_std²)`.
    fn draw(&self, stream: u64, i: usize, row: &mut [f32]) {
        let mut rng = self.stream.clone();
        rng.set_stream(stream);
        rng.set_word_pos((i as u128) << SAMPLE_WINDOW_BITS);
        let scale = (1.0 + self.cluster_std * self.cluster_std).sqrt();
        let class = i % self.classes;
        let cluster =
            class * self.clusters_per_class + rng.random_range(0..self.clusters_per_class);
        let centre = self.centres.row(cluster);
        let centre = centre
            .as_slice()
            .expect("rows of a fresh array are contiguous");
        // The draws of a run of values first, in order, then their arithmetic in a loop
        // the compiler vectorises: the same values as drawing and scaling each in turn
        // (P1's 19.6 million values start about 6 ms sooner).
        let mut noise = [0.0f64; 64];
        for (row, centre) in row.chunks_mut(noise.len()).zip(centre.chunks(noise.len())) {
            let noise = &mut noise[..row.len()];
            noise.fill_with(|| rng.sample(StandardNormal));
            for ((x, &mu), &noise) in row.iter_mut().zip(centre).zip(&*noise) {
                *x = ((mu + self.cluster_std * noise) / scale) as f32;
            }
        }
    }
}

/// The rows of a synthetic split too large to hold, regenerated from their windows of the
/// split's stream on access.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntheticRows {
    recipe: Arc<Recipe>,
    /// The split's stream.
    stream: u64,
    /// Number of rows.
    len: usize,
}

impl SyntheticRows {
    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Values per row.
    pub(crate) fn dim(&self) -> usize {
        self.recipe.centres.ncols()
    }

    /// Writes row `i` into `row` (of [`SyntheticRows::dim`] values): the same draws as when
    /// the split is held.
    pub(crate) fn fill(&self, i: usize, row: &mut [f32]) {
        self.recipe.draw(self.stream, i, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Standardizer;

    fn small() -> SyntheticConfig {
        SyntheticConfig {
            train_samples: 1000,
            test_samples: 200,
            ..SyntheticConfig::default()
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let (a, test) = small().generate().unwrap();
        let (b, _) = small().generate().unwrap();
        assert_eq!(a, b);
        let other = SyntheticConfig { seed: 1, ..small() };
        assert_ne!(a.features(), other.generate().unwrap().0.features());
        // The splits draw from different streams, and each sample from its own window.
        let first = |d: &Dataset, i: usize| d.gather(&[i]).0;
        assert_ne!(first(&a, 0), first(&test, 0));
        assert_ne!(first(&a, 0), first(&a, small().classes));
        // A sample does not depend on how many come before it.
        let fewer = SyntheticConfig {
            train_samples: 3,
            ..small()
        };
        assert_eq!(first(&fewer.generate().unwrap().0, 2), first(&a, 2));
    }

    #[test]
    fn generated_rows_are_the_stored_rows_bit_for_bit() {
        let config = SyntheticConfig {
            dim: 7,
            clusters_per_class: 3,
            cluster_std: 0.5,
            ..small()
        };
        let (train, test) = config.generate().unwrap();
        let (gen_train, gen_test) = config.generate_storing_up_to(0).unwrap();
        assert!(matches!(gen_train.features(), std::borrow::Cow::Owned(_)));
        for (held, generated) in [(&train, &gen_train), (&test, &gen_test)] {
            assert_eq!(held.features(), generated.features());
            assert_eq!(held.labels(), generated.labels());
            assert_eq!(
                (held.shape(), held.name()),
                (generated.shape(), generated.name())
            );
            let picks = [5, 0, 5, held.len() - 1];
            assert_eq!(held.gather(&picks), generated.gather(&picks));
        }
        // Standardised on access, to the bits of standardising the held rows.
        standardised_alike(train, gen_train);
        // Large enough for held rows to be fitted and standardised in parts on every core
        // (300,000 values), where generated rows are done one by one.
        let large = SyntheticConfig {
            dim: 300,
            ..config.clone()
        };
        let (held, _) = large.generate().unwrap();
        let (generated, _) = large.generate_storing_up_to(0).unwrap();
        standardised_alike(held, generated);
        // Only the split over the limit is regenerated.
        let one_row = 4 * 7;
        let (train, test) = config.generate_storing_up_to(200 * one_row).unwrap();
        assert!(matches!(train.features(), std::borrow::Cow::Owned(_)));
        assert!(matches!(test.features(), std::borrow::Cow::Borrowed(_)));
    }

    /// Asserts that per-pixel and per-channel standardisers fitted on `held` and on
    /// `generated` (the same samples) have the same bits, and so do the standardised rows.
    fn standardised_alike(mut held: Dataset, mut generated: Dataset) {
        let channel = Standardizer::fit_per_channel(&held).unwrap();
        assert_eq!(channel, Standardizer::fit_per_channel(&generated).unwrap());
        let fitted = Standardizer::fit_per_pixel(&held).unwrap();
        assert_eq!(fitted, Standardizer::fit_per_pixel(&generated).unwrap());
        fitted.apply_dataset(&mut held).unwrap();
        fitted.apply_dataset(&mut generated).unwrap();
        assert_eq!(held.gather(&[3, 9]), generated.gather(&[3, 9]));
        assert_eq!(held.features(), generated.features());
    }

    #[test]
    fn balanced_flat_and_roughly_standardised() {
        let (train, test) = SyntheticConfig::default().generate().unwrap();
        assert_eq!((train.len(), test.len()), (20_000, 5_000));
        assert_eq!(train.shape(), ImageShape::flat(32));
        assert_eq!(train.class_counts(), vec![2000; 10]);
        assert_eq!(test.class_counts(), vec![500; 10]);
        let x = train.features();
        let mean = x.mean().unwrap();
        let var = x.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
        assert!(
            mean.abs() < 0.2 && (var - 1.0).abs() < 0.3,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn config_parses_partially_and_rejects_bad_values() {
        let cfg: SyntheticConfig = serde_json::from_str(r#"{"classes": 3, "seed": 9}"#).unwrap();
        assert_eq!((cfg.classes, cfg.seed, cfg.dim), (3, 9, 32));
        assert!(serde_json::from_str::<SyntheticConfig>(r#"{"clases": 3}"#).is_err());
        let bad = SyntheticConfig {
            cluster_std: -1.0,
            ..small()
        };
        assert!(
            bad.generate()
                .unwrap_err()
                .to_string()
                .contains("cluster_std")
        );
        let bad = SyntheticConfig { dim: 0, ..small() };
        assert!(bad.generate().unwrap_err().to_string().contains("`dim`"));
    }

    #[test]
    fn a_dimension_beyond_a_samples_window_is_refused() {
        let wide = |dim| SyntheticConfig {
            classes: 1,
            clusters_per_class: 1,
            train_samples: 1,
            test_samples: 1,
            dim,
            ..small()
        };
        wide(MAX_DIM).validate().unwrap();
        let e = wide(MAX_DIM + 1).validate().unwrap_err().to_string();
        assert!(e.contains("`dim`") && e.contains("2^32 words"), "{e}");
    }

    #[test]
    fn tasks_too_large_to_hold_are_refused_before_allocating() {
        // 10¹¹ samples of 32 features: 13 TB. Refused at once, naming the field.
        let huge = SyntheticConfig {
            train_samples: 100_000_000_000,
            ..small()
        };
        let e = huge.generate().unwrap_err().to_string();
        assert!(
            e.contains("`train_samples` = 100000000000") && e.contains("16 GiB"),
            "{e}"
        );
        // Counts whose bytes overflow usize are named, not wrapped.
        let e = SyntheticConfig {
            test_samples: usize::MAX / 2,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("`test_samples` = {}", usize::MAX / 2)),
            "{e}"
        );
        let e = SyntheticConfig {
            dim: usize::MAX / 4,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("`dim`"), "{e}");
        // Just under the limit is accepted (without generating it here).
        let dim = 32;
        let rows = (MAX_SYNTHETIC_BYTES as usize - 10 * 8 * dim * 8) / (4 * dim + 4);
        let fits = SyntheticConfig {
            train_samples: rows - 1,
            test_samples: 1,
            ..SyntheticConfig::default()
        };
        fits.validate().unwrap();
        let over = SyntheticConfig {
            train_samples: rows,
            ..fits
        };
        assert!(over.validate().is_err());
    }
}
