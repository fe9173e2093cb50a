//! Preprocessing (standardisation fitted on a training set) and seeded augmentation of batches.
//!
//! Both work on HWC rows. In the reference pipeline, samples are standardised first and then
//! augmented, so crop padding is zero in standardised units (the mean pixel).

mod augment;
mod standardize;

pub use augment::Augmentation;
pub use standardize::Standardizer;
