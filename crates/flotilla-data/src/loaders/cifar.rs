//! CIFAR-10 and CIFAR-100, as image folders or as the canonical binary batches.
//!
//! The binary format is a sequence of fixed-size records: label byte(s), then 3072 pixel bytes
//! in CHW planar order (1024 red, 1024 green, 1024 blue, each 32×32 row-major). Records are
//! converted to HWC and scaled to `[0, 1]`. Files may be gzip-compressed.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::image_folder::load_image_folder;
use super::read_maybe_gzip;
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Location, Result};

/// CIFAR-10 class names in label order (which is also their sorted order).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Side of a CIFAR image.
const SIDE: usize = 32;
/// Pixels per channel plane.
const PLANE: usize = SIDE * SIDE;
/// Channels per image.
const CHANNELS: usize = 3;

/// Loads CIFAR-10 from the image-folder layout `root/{train,test}/<class>/*.jpg`.
///
/// Both splits must have exactly the class folders of [`CIFAR10_CLASSES`]. The datasets are
/// named `cifar10-train` and `cifar10-test`, 32×32×3, 10 classes.
pub fn load_cifar10_dir(root: &Path) -> Result<(Dataset, Dataset)> {
    let split = |split: &str| -> Result<Dataset> {
        let dir = root.join(split);
        let folder = load_image_folder(&dir, &format!("cifar10-{split}"))?;
        if folder.class_names != CIFAR10_CLASSES {
            return Err(DataError::Layout {
                path: dir,
                reason: format!(
                    "class folders {:?} are not the CIFAR-10 classes {CIFAR10_CLASSES:?}",
                    folder.class_names
                ),
            });
        }
        let shape = folder.data.shape();
        if shape != ImageShape::new(SIDE, SIDE, CHANNELS) {
            return Err(DataError::Layout {
                path: dir,
                reason: format!("images are {shape}, CIFAR-10 images are 32x32x3"),
            });
        }
        Ok(folder.data)
    };
    Ok((split("train")?, split("test")?))
}

/// How labels are stored in a binary CIFAR record.
#[derive(Debug, Clone, Copy)]
struct BinaryFormat {
    /// Label bytes at the start of each record.
    label_bytes: usize,
    /// Which of those bytes is the label used.
    label_index: usize,
    /// Number of classes.
    classes: usize,
}

impl BinaryFormat {
    fn record_len(self) -> usize {
        self.label_bytes + CHANNELS * PLANE
    }
}

/// Loads the CIFAR-10 binary version from `dir` (e.g. `cifar-10-batches-bin/`):
/// `data_batch_1.bin` … `data_batch_5.bin` as train, `test_batch.bin` as test.
pub fn load_cifar10_binary_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let format = BinaryFormat {
        label_bytes: 1,
        label_index: 0,
        classes: 10,
    };
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    Ok((
        read_binary(&train, format, "cifar10-train")?,
        read_binary(&[dir.join("test_batch.bin")], format, "cifar10-test")?,
    ))
}

/// Loads the CIFAR-100 binary version from `dir` (e.g. `cifar-100-binary/`): `train.bin` and
/// `test.bin`, using the fine label (the second label byte), 100 classes.
pub fn load_cifar100_binary_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let format = BinaryFormat {
        label_bytes: 2,
        label_index: 1,
        classes: 100,
    };
    Ok((
        read_binary(&[dir.join("train.bin")], format, "cifar100-train")?,
        read_binary(&[dir.join("test.bin")], format, "cifar100-test")?,
    ))
}

/// Reads and concatenates binary batch files.
fn read_binary(paths: &[PathBuf], format: BinaryFormat, name: &str) -> Result<Dataset> {
    let record = format.record_len();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let bytes = read_maybe_gzip(path)?;
        let remainder = bytes.len() % record;
        if remainder != 0 || bytes.is_empty() {
            return Err(DataError::Truncated {
                path: path.clone(),
                offset: bytes.len() as u64,
                needed: (record - remainder) as u64,
            });
        }
        for (index, rec) in bytes.chunks_exact(record).enumerate() {
            let label = rec[format.label_index];
            if usize::from(label) >= format.classes {
                return Err(DataError::LabelOutOfRange {
                    path: path.clone(),
                    location: Location::Record {
                        index,
                        offset: (index * record + format.label_index) as u64,
                    },
                    label: i64::from(label),
                    classes: format.classes,
                });
            }
            labels.push(u32::from(label));
            push_hwc(&rec[format.label_bytes..], &mut pixels);
        }
    }
    let shape = ImageShape::new(SIDE, SIDE, CHANNELS);
    let features = Array2::from_shape_vec((labels.len(), shape.size()), pixels)
        .expect("every record contributes exactly one image");
    Dataset::new(name, features, labels, shape, format.classes)
}

/// Appends a CHW planar image as HWC values in `[0, 1]`.
fn push_hwc(chw: &[u8], out: &mut Vec<f32>) {
    for pixel in 0..PLANE {
        for channel in 0..CHANNELS {
            out.push(f32::from(chw[channel * PLANE + pixel]) / 255.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_records_become_hwc() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = vec![7u8, 42];
        for channel in 0..3u8 {
            rec.extend((0..PLANE).map(|p| if p == 33 { 10 * (channel + 1) } else { 0 }));
        }
        std::fs::write(dir.path().join("train.bin"), [rec.clone(), rec].concat()).unwrap();
        std::fs::write(dir.path().join("test.bin"), [] as [u8; 0]).unwrap();
        let err = load_cifar100_binary_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("test.bin"), "{err}");
        let train = read_binary(
            &[dir.path().join("train.bin")],
            BinaryFormat {
                label_bytes: 2,
                label_index: 1,
                classes: 100,
            },
            "t",
        )
        .unwrap();
        assert_eq!(train.labels(), &[42, 42]);
        // Pixel 33 is (y=1, x=1): HWC offset 33 * 3.
        let row = train.features().row(1);
        let px = &row.as_slice().unwrap()[99..102];
        assert_eq!(px, &[10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0]);
        assert_eq!(row.sum(), 60.0 / 255.0);
    }

    #[test]
    fn cifar10_binary_dir_concatenates_the_five_batches() {
        let dir = tempfile::tempdir().unwrap();
        let record = |label: u8| [vec![label], vec![255; 3 * PLANE]].concat();
        for i in 1..=5u8 {
            std::fs::write(
                dir.path().join(format!("data_batch_{i}.bin")),
                record(i - 1),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("test_batch.bin"),
            [record(9), record(8)].concat(),
        )
        .unwrap();
        let (train, test) = load_cifar10_binary_dir(dir.path()).unwrap();
        assert_eq!(train.labels(), &[0, 1, 2, 3, 4]);
        assert_eq!(test.labels(), &[9, 8]);
        assert_eq!(
            (train.classes(), train.shape()),
            (10, ImageShape::new(32, 32, 3))
        );
        assert!(test.features().iter().all(|&v| v == 1.0));
    }
}
