//! The datasets the command line knows by name, and where their files live.

use crate::ExperimentError;
use flotilla_data::{
    Augmentation, DataError, Dataset, Standardizer, SyntheticConfig, data_root, load_cifar10_dir,
    load_femnist_dir, load_mnist_dir, load_npz,
};
use flotilla_nn::Shape;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A dataset name the command line does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown dataset `{0}`: expected one of synthetic, mnist, cifar10, femnist, npz")]
pub struct UnknownDataset(pub String);

/// A named dataset with its preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Named {
    /// The built-in synthetic task (no files).
    Synthetic,
    /// MNIST, IDX files.
    Mnist,
    /// CIFAR-10, image folders.
    Cifar10,
    /// FEMNIST, LEAF JSON.
    Femnist,
    /// Your own arrays: a NumPy `.npz` file with `x_train`, `y_train`, `x_test`, `y_test`
    /// (see [`flotilla_data::loaders::npz`]); its sample shape and class count come from the
    /// file.
    Npz,
}

/// How features are standardised, with statistics of the training split applied to both
/// splits (`data.standardize`; absent: [`Named::default_standardize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standardize {
    /// The values as loaded (8-bit pixels scaled to `[0, 1]`, floats as stored).
    None,
    /// `(x - mean) / std` per feature (per pixel and channel of an image).
    PerFeature,
    /// `(x - mean) / std` per channel, over all pixels (per feature for flat vectors).
    PerChannel,
}

impl std::str::FromStr for Named {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, UnknownDataset> {
        match s {
            "synthetic" => Ok(Named::Synthetic),
            "mnist" => Ok(Named::Mnist),
            "cifar10" => Ok(Named::Cifar10),
            "femnist" => Ok(Named::Femnist),
            "npz" => Ok(Named::Npz),
            _ => Err(UnknownDataset(s.to_string())),
        }
    }
}

/// Train and test splits, preprocessed, with the augmentation training should use.
#[derive(Debug)]
pub struct Loaded {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
    /// The augmentation training batches should use.
    pub augmentation: Option<Augmentation>,
    /// Training-set indices of each writer, for datasets that have writers (FEMNIST).
    pub writers: Option<Vec<Vec<usize>>>,
}

impl Named {
    /// The dataset's name, which is also its folder under the data root.
    pub fn name(self) -> &'static str {
        match self {
            Named::Synthetic => "synthetic",
            Named::Mnist => "mnist",
            Named::Cifar10 => "cifar10",
            Named::Femnist => "femnist",
            Named::Npz => "npz",
        }
    }

    /// Sample shape and class count, known without reading the files (`synthetic`: those
    /// the generator settings give); `None` for `npz`, whose file says.
    pub fn input(self, synthetic: &SyntheticConfig) -> Option<(Shape, usize)> {
        match self {
            Named::Synthetic => Some((Shape::flat(synthetic.dim), synthetic.classes)),
            Named::Mnist => Some((Shape::image(28, 28, 1), 10)),
            Named::Cifar10 => Some((Shape::image(32, 32, 3), 10)),
            Named::Femnist => Some((Shape::image(28, 28, 1), 62)),
            Named::Npz => None,
        }
    }

    /// The large target and small auxiliary models used by default on this dataset (`None`
    /// for `npz`: the models depend on the file's shapes, so name them).
    pub fn default_models(self) -> Option<[&'static str; 2]> {
        match self {
            Named::Synthetic => Some(["mlp:32-256-256-10", "mlp:32-16-10"]),
            Named::Mnist => Some(["mlp:784-256-128-10", "mlp:784-32-10"]),
            Named::Cifar10 => Some(["resnet20", "resnet20:0.25"]),
            Named::Femnist => Some(["cnn", "cnn:0.25"]),
            Named::Npz => None,
        }
    }

    /// The learning rate `flotilla train` uses by default (SGD, momentum 0.9, batch 32).
    pub fn default_lr(self) -> f32 {
        match self {
            Named::Synthetic => 0.05,
            Named::Mnist | Named::Cifar10 | Named::Femnist | Named::Npz => 0.02,
        }
    }

    /// The standardisation used when `data.standardize` is absent: per channel for MNIST and
    /// FEMNIST, per feature (pixel) for CIFAR-10, none for the synthetic task (generated
    /// standardised) and for `npz` (your values as you stored them).
    pub fn default_standardize(self) -> Standardize {
        match self {
            Named::Mnist | Named::Femnist => Standardize::PerChannel,
            Named::Cifar10 => Standardize::PerFeature,
            Named::Synthetic | Named::Npz => Standardize::None,
        }
    }

    /// Loads and preprocesses the splits. `path` overrides `<data root>/<name>` (for `npz`
    /// it is required: the `.npz` file); `synthetic` configures the generated task.
    ///
    /// Preprocessing: `standardize` with statistics of the training split (see
    /// [`Named::default_standardize`] for each dataset's usual choice); FEMNIST is
    /// ink-inverted to match MNIST, and CIFAR-10 offers pad-4 crop and flip augmentation.
    ///
    /// The loaders guarantee what the rest of a run relies on: both splits hold samples, of one
    /// shape (else a [`DataError`] naming the files, wrapped in [`ExperimentError::Data`]).
    pub fn load(
        self,
        path: Option<&Path>,
        augment: bool,
        synthetic: &SyntheticConfig,
        standardize: Standardize,
    ) -> Result<Loaded, ExperimentError> {
        let wrap = |source: DataError| ExperimentError::Data {
            dataset: self.name().to_string(),
            source,
        };
        let dir = || -> Result<PathBuf, ExperimentError> {
            match path {
                Some(p) => Ok(p.to_path_buf()),
                None => Ok(data_root().map_err(wrap)?.join(self.name())),
            }
        };
        let mut writers = None;
        let (mut train, mut test) = match self {
            Named::Synthetic => synthetic.generate().map_err(wrap)?,
            Named::Mnist => load_mnist_dir(&dir()?).map_err(wrap)?,
            Named::Cifar10 => load_cifar10_dir(&dir()?).map_err(wrap)?,
            Named::Femnist => {
                let (tr, te) = load_femnist_dir(&dir()?, true).map_err(wrap)?;
                writers = Some(tr.by_writer);
                (tr.data, te.data)
            }
            Named::Npz => {
                let file = path.ok_or_else(|| {
                    crate::ConfigError::new(
                        "data.path",
                        "(missing)",
                        "the npz dataset needs data.path: the .npz file",
                    )
                })?;
                load_npz(file, self.name()).map_err(wrap)?
            }
        };
        let standardizer = match standardize {
            Standardize::None => None,
            Standardize::PerFeature => Some(Standardizer::fit_per_pixel(&train)),
            Standardize::PerChannel => Some(Standardizer::fit_per_channel(&train)),
        };
        if let Some(standardizer) = standardizer {
            let standardizer = standardizer.map_err(wrap)?;
            standardizer.apply_dataset(&mut train).map_err(wrap)?;
            standardizer.apply_dataset(&mut test).map_err(wrap)?;
        }
        let augmentation = (augment && self == Named::Cifar10).then(Augmentation::cifar);
        Ok(Loaded {
            train,
            test,
            augmentation,
            writers,
        })
    }
}
