//! Data for Flotilla, a deterministic simulator of heterogeneous federated learning.
//!
//! This crate loads datasets (MNIST IDX, CIFAR image folders and binary batches, LEAF/FEMNIST
//! JSON, NumPy `.npz` archives), generates a built-in synthetic task, splits sample indices
//! among clients (IID, Dirichlet label skew, shards, natural writer groups, and the method's
//! labeled/unlabeled split, or a split read from a partition file), and provides
//! preprocessing, augmentation and mini-batch sampling.
//!
//! # Layout
//! A [`Dataset`] holds all samples in one `[n, h·w·c]` array of `f32`; each row is one sample
//! in HWC row-major order (channels last), with 8-bit pixels scaled to `[0, 1]`. Clients do not
//! own copies: they hold index lists (a [`Partition`]) into one shared dataset and copy just
//! the rows of each batch with [`Dataset::gather`].
//!
//! # Determinism
//! Every random draw comes from a caller-supplied rng (or, for [`SyntheticConfig`], a ChaCha
//! rng seeded from the config), so the same rng state always gives the same output. Nothing
//! depends on hash-map iteration order, thread count or file-system listing order: directory
//! entries are sorted, parallel image decoding assembles results in file order, and the
//! whole-dataset passes spread over the cores (pixel conversion, fitting and applying a
//! standardisation) compute each value as one thread would.
//!
//! # Errors
//! Bad input is reported as a [`DataError`] naming the file and the byte offset or JSON field
//! path; loaders never panic on bad input and never skip a bad sample silently. A split with no
//! samples is an error, and so are train and test splits whose samples differ in shape.
//! Nothing is allocated on a file's word alone: a header's declared size is checked against the
//! file's real (or, for gzip, largest possible) size first.
//!
//! Each loader also parses in-memory bytes ([`parse_idx`], [`parse_cifar_binary`],
//! [`parse_leaf`], [`decode_image`], [`parse_npz`]) with the same checks, for tests and fuzzing.

pub mod batch;
pub mod data_root;
pub mod dataset;
pub mod error;
pub mod loaders;
mod parallel;
pub mod partition;
pub mod synthetic;
pub mod transform;

pub use batch::{StepSampler, shuffled_batches};
pub use data_root::data_root;
pub use dataset::{Dataset, ImageShape};
pub use error::{DataError, Location, Result};
pub use loaders::cifar::{
    CifarBinary, load_cifar10_binary_dir, load_cifar10_dir, load_cifar100_binary_dir,
    parse_cifar_binary,
};
pub use loaders::idx::{idx_dataset, load_idx_dataset, load_mnist_dir, parse_idx};
pub use loaders::image_folder::{ImageFolder, ImageSize, decode_image, load_image_folder};
pub use loaders::leaf::{LeafDataset, LeafFormat, load_femnist_dir, load_leaf_dir, parse_leaf};
pub use loaders::npz::{MAX_NPY_HEADER, MAX_NPZ_CLASSES, load_npz, parse_npz};
pub use partition::{
    LabelHistogram, LabeledUnlabeled, Partition, dirichlet, dirichlet_labeled_unlabeled,
    fraction_split, iid, label_histogram, mean_total_variation, natural, parse_partition_file,
    partition_file_json, read_partition_file, shards,
};
pub use synthetic::{MAX_SYNTHETIC_BYTES, SyntheticConfig};
pub use transform::{Augmentation, Standardizer};
