//! Gathering mini-batches from a shared dataset.

use crate::Result;
use flotilla_data::{Augmentation, Dataset};
use flotilla_nn::{Shape, Tensor, batch_from_flat};
use rand::Rng;

/// The network input shape of a dataset's samples.
pub fn input_shape(data: &Dataset) -> Shape {
    let s = data.shape();
    Shape::image(s.height, s.width, s.channels)
}

/// Reads batches of a dataset by sample index, copying only the selected rows.
#[derive(Debug, Clone, Copy)]
pub struct BatchLoader<'a> {
    data: &'a Dataset,
    augmentation: Option<Augmentation>,
}

impl<'a> BatchLoader<'a> {
    /// A loader over `data`, augmenting each batch when `augmentation` is set.
    pub fn new(data: &'a Dataset, augmentation: Option<Augmentation>) -> Self {
        Self { data, augmentation }
    }

    /// The dataset read from.
    pub fn data(&self) -> &'a Dataset {
        self.data
    }

    /// The training batch of samples `indices`, as a network input and its labels.
    /// Augmentation, if any, draws from `rng`; without augmentation `rng` is not used.
    pub fn load(&self, indices: &[usize], rng: &mut impl Rng) -> Result<(Tensor, Vec<u32>)> {
        let (mut x, y) = self.data.gather(indices);
        if let Some(aug) = &self.augmentation {
            aug.apply(x.view_mut(), self.data.shape(), rng)?;
        }
        Ok((batch_from_flat(x, input_shape(self.data))?, y))
    }

    /// The batch of samples `indices` without augmentation (evaluation, teachers).
    pub fn load_plain(&self, indices: &[usize]) -> Result<(Tensor, Vec<u32>)> {
        let (x, y) = self.data.gather(indices);
        Ok((batch_from_flat(x, input_shape(self.data))?, y))
    }
}
