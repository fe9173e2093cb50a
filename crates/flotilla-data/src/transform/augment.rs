//! Seeded image augmentation: zero-padded random crop and random horizontal flip.

use ndarray::{ArrayViewMut1, ArrayViewMut2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::ImageShape;
use crate::error::{DataError, Result};

/// Per-sample augmentation of a batch of HWC rows.
///
/// For each row in order: if `pad > 0`, draw offsets `dy, dx` uniformly from `0..=2·pad` and
/// replace the image by the `h × w` window at `(dy, dx)` of the image zero-padded by `pad` on
/// every side; then, if `flip`, mirror it left-right with probability 0.5. All draws come from
/// the rng passed to [`Augmentation::apply`], so the same rng state gives the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Zero padding on each side before the random crop; 0 disables cropping.
    pub pad: usize,
    /// Whether to flip horizontally with probability 0.5.
    pub flip: bool,
}

impl Augmentation {
    /// The reference CIFAR augmentation: pad-4 random crop and horizontal flip.
    pub fn cifar() -> Self {
        Self { pad: 4, flip: true }
    }

    /// Augments every row of `batch` (images of `shape`) in place.
    pub fn apply(
        &self,
        mut batch: ArrayViewMut2<'_, f32>,
        shape: ImageShape,
        rng: &mut impl Rng,
    ) -> Result<()> {
        if batch.ncols() != shape.size() {
            return Err(DataError::param(
                "batch",
                format!("{} columns", batch.ncols()),
                format!("images of shape {shape} have {} values", shape.size()),
            ));
        }
        let mut scratch = vec![0.0; shape.size()];
        for mut row in batch.axis_iter_mut(Axis(0)) {
            if self.pad > 0 {
                let span = 2 * self.pad;
                let dy = rng.random_range(0..=span);
                let dx = rng.random_range(0..=span);
                crop(
                    &mut row,
                    shape,
                    dy as isize - self.pad as isize,
                    dx as isize - self.pad as isize,
                    &mut scratch,
                );
            }
            if self.flip && rng.random_bool(0.5) {
                flip_horizontal(&mut row, shape);
            }
        }
        Ok(())
    }
}

/// Replaces `row` by the image shifted so that output `(y, x)` is input `(y + sy, x + sx)`,
/// or zero where that falls outside.
fn crop(
    row: &mut ArrayViewMut1<'_, f32>,
    shape: ImageShape,
    sy: isize,
    sx: isize,
    scratch: &mut [f32],
) {
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    scratch.fill(0.0);
    for y in 0..h {
        let Some(src_y) = y.checked_add_signed(sy).filter(|&v| v < h) else {
            continue;
        };
        for x in 0..w {
            let Some(src_x) = x.checked_add_signed(sx).filter(|&v| v < w) else {
                continue;
            };
            for ch in 0..c {
                scratch[(y * w + x) * c + ch] = row[(src_y * w + src_x) * c + ch];
            }
        }
    }
    row.iter_mut()
        .zip(scratch.iter())
        .for_each(|(dst, &v)| *dst = v);
}

/// Mirrors an HWC image left-right in place.
fn flip_horizontal(row: &mut ArrayViewMut1<'_, f32>, shape: ImageShape) {
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    for y in 0..h {
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap((y * w + x) * c + ch, (y * w + (w - 1 - x)) * c + ch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn batch(n: usize, shape: ImageShape) -> Array2<f32> {
        Array2::from_shape_fn((n, shape.size()), |(i, p)| (i * 1000 + p + 1) as f32)
    }

    #[test]
    fn flip_twice_is_identity_and_flip_mirrors() {
        let shape = ImageShape::new(3, 4, 2);
        let original = batch(1, shape);
        let mut b = original.clone();
        let mut row = b.row_mut(0);
        flip_horizontal(&mut row, shape);
        // Pixel (1, 0) channel 1 now holds pixel (1, 3) channel 1.
        assert_eq!(row[4 * 2 + 1], original[[0, (4 + 3) * 2 + 1]]);
        flip_horizontal(&mut row, shape);
        assert_eq!(b, original);
    }

    #[test]
    fn crop_with_pad_zero_is_identity() {
        let shape = ImageShape::new(5, 5, 3);
        let original = batch(4, shape);
        let mut b = original.clone();
        let no_op = Augmentation {
            pad: 0,
            flip: false,
        };
        no_op
            .apply(b.view_mut(), shape, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!(b, original);
    }

    #[test]
    fn crop_values_come_from_the_source_or_padding() {
        let shape = ImageShape::new(6, 6, 3);
        let original = batch(16, shape);
        let mut b = original.clone();
        Augmentation::cifar()
            .apply(b.view_mut(), shape, &mut ChaCha8Rng::seed_from_u64(2))
            .unwrap();
        assert_ne!(b, original);
        for (out, src) in b.rows().into_iter().zip(original.rows()) {
            // Each output value is 0 (padding) or a value of the same source image and channel.
            for (p, &v) in out.iter().enumerate() {
                let same_channel = src.iter().skip(p % 3).step_by(3).any(|&s| s == v);
                assert!(v == 0.0 || same_channel, "value {v} at {p}");
            }
        }
    }

    #[test]
    fn same_seed_same_augmentation() {
        let shape = ImageShape::new(8, 8, 3);
        let run = |seed| {
            let mut b = batch(8, shape);
            Augmentation::cifar()
                .apply(b.view_mut(), shape, &mut ChaCha8Rng::seed_from_u64(seed))
                .unwrap();
            b
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
