//! The datasets the command line knows by name, and where their files live.

use crate::ExperimentError;
use flotilla_data::{
    Augmentation, DataError, Dataset, Standardizer, SyntheticConfig, data_root, load_cifar10_dir,
    load_femnist_dir, load_mnist_dir,
};
use flotilla_nn::Shape;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A dataset name the command line does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown dataset `{0}`: expected one of synthetic, mnist, cifar10, femnist")]
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
}

impl std::str::FromStr for Named {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, UnknownDataset> {
        match s {
            "synthetic" => Ok(Named::Synthetic),
            "mnist" => Ok(Named::Mnist),
            "cifar10" => Ok(Named::Cifar10),
            "femnist" => Ok(Named::Femnist),
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
        }
    }

    /// Sample shape and class count, known without reading the files (`synthetic`: those
    /// the generator settings give).
    pub fn input(self, synthetic: &SyntheticConfig) -> (Shape, usize) {
        match self {
            Named::Synthetic => (Shape::flat(synthetic.dim), synthetic.classes),
            Named::Mnist => (Shape::image(28, 28, 1), 10),
            Named::Cifar10 => (Shape::image(32, 32, 3), 10),
            Named::Femnist => (Shape::image(28, 28, 1), 62),
        }
    }

    /// The large target and small auxiliary models used by default on this dataset.
    pub fn default_models(self) -> [&'static str; 2] {
        match self {
            Named::Synthetic => ["mlp:32-256-256-10", "mlp:32-16-10"],
            Named::Mnist => ["mlp:784-256-128-10", "mlp:784-32-10"],
            Named::Cifar10 => ["resnet20", "resnet20:0.25"],
            Named::Femnist => ["cnn", "cnn:0.25"],
        }
    }

    /// The learning rate `flotilla train` uses by default (SGD, momentum 0.9, batch 32).
    pub fn default_lr(self) -> f32 {
        match self {
            Named::Synthetic => 0.05,
            Named::Mnist | Named::Cifar10 | Named::Femnist => 0.02,
        }
    }

    /// Loads and preprocesses the splits. `path` overrides `<data root>/<name>`;
    /// `synthetic` configures the generated task.
    ///
    /// Preprocessing: MNIST and FEMNIST (ink-inverted to match MNIST) are standardised per
    /// channel, CIFAR-10 per pixel with pad-4 crop and flip augmentation offered, all with
    /// statistics of the training split; the synthetic task is generated standardised.
    ///
    /// The loaders guarantee what the rest of a run relies on: both splits hold samples, of one
    /// shape (else a [`DataError`] naming the files, wrapped in [`ExperimentError::Data`]).
    pub fn load(
        self,
        path: Option<&Path>,
        augment: bool,
        synthetic: &SyntheticConfig,
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
        let (mut train, mut test, per_pixel) = match self {
            Named::Synthetic => {
                let (train, test) = synthetic.generate().map_err(wrap)?;
                return Ok(Loaded {
                    train,
                    test,
                    augmentation: None,
                    writers: None,
                });
            }
            Named::Mnist => {
                let (tr, te) = load_mnist_dir(&dir()?).map_err(wrap)?;
                (tr, te, false)
            }
            Named::Cifar10 => {
                let (tr, te) = load_cifar10_dir(&dir()?).map_err(wrap)?;
                (tr, te, true)
            }
            Named::Femnist => {
                let (tr, te) = load_femnist_dir(&dir()?, true).map_err(wrap)?;
                writers = Some(tr.by_writer);
                (tr.data, te.data, false)
            }
        };
        let standardizer = if per_pixel {
            Standardizer::fit_per_pixel(&train)
        } else {
            Standardizer::fit_per_channel(&train)
        }
        .map_err(wrap)?;
        standardizer.apply_dataset(&mut train).map_err(wrap)?;
        standardizer.apply_dataset(&mut test).map_err(wrap)?;
        let augmentation = (augment && self == Named::Cifar10).then(Augmentation::cifar);
        Ok(Loaded {
            train,
            test,
            augmentation,
            writers,
        })
    }
}
