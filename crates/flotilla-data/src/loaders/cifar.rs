//! CIFAR-10 and CIFAR-100, as image folders or as the canonical binary batches.
//!
//! The binary format is a sequence of fixed-size records: label byte(s), then 3072 pixel bytes
//! in CHW planar order (1024 red, 1024 green, 1024 blue, each 32×32 row-major). Records are
//! converted to HWC and scaled to `[0, 1]`. Files may be gzip-compressed; they are read record
//! by record, so memory holds the decoded samples and one record, never the whole file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::image_folder::{ImageSize, load_image_folder};
use super::{MaybeGzip, fill};
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
        let size = ImageSize {
            height: SIDE as u32,
            width: SIDE as u32,
        };
        let folder = load_image_folder(&dir, &format!("cifar10-{split}"), Some(size))?;
        if folder.class_names != CIFAR10_CLASSES {
            return Err(DataError::Layout {
                path: dir,
                reason: format!(
                    "class folders {:?} are not the CIFAR-10 classes {CIFAR10_CLASSES:?}",
                    folder.class_names
                ),
            });
        }
        Ok(folder.data)
    };
    Ok((split("train")?, split("test")?))
}

/// The binary CIFAR layouts, which differ in their label bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarBinary {
    /// One label byte per record, in `0..10`.
    Cifar10,
    /// Two label bytes per record: the coarse label in `0..20`, then the fine label in
    /// `0..100`, which is the one used.
    Cifar100,
}

impl CifarBinary {
    /// The number of classes of each label byte; the last one is the label used.
    fn label_classes(self) -> &'static [usize] {
        match self {
            Self::Cifar10 => &[10],
            Self::Cifar100 => &[20, 100],
        }
    }

    /// Number of classes of the label used.
    pub fn classes(self) -> usize {
        self.label_classes()[self.label_classes().len() - 1]
    }

    /// Bytes per record: the label bytes and one image.
    pub fn record_len(self) -> usize {
        self.label_classes().len() + CHANNELS * PLANE
    }
}

/// Loads the CIFAR-10 binary version from `dir` (e.g. `cifar-10-batches-bin/`):
/// `data_batch_1.bin` … `data_batch_5.bin` as train, `test_batch.bin` as test.
pub fn load_cifar10_binary_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let kind = CifarBinary::Cifar10;
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    Ok((
        read_binary(&train, kind, "cifar10-train")?,
        read_binary(&[dir.join("test_batch.bin")], kind, "cifar10-test")?,
    ))
}

/// Loads the CIFAR-100 binary version from `dir` (e.g. `cifar-100-binary/`): `train.bin` and
/// `test.bin`, using the fine label (the second label byte), 100 classes.
pub fn load_cifar100_binary_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let kind = CifarBinary::Cifar100;
    Ok((
        read_binary(&[dir.join("train.bin")], kind, "cifar100-train")?,
        read_binary(&[dir.join("test.bin")], kind, "cifar100-test")?,
    ))
}

/// Parses the bytes of one binary batch file (raw or gzip) into a dataset, with the checks of
/// the directory loaders: a whole number of records, at least one, every label byte in range.
///
/// `origin` only names the input in errors. This is the entry point for fuzzing the CIFAR
/// binary parser: any input gives a [`Dataset`] or a [`DataError`], never a panic.
pub fn parse_cifar_binary(
    bytes: &[u8],
    origin: &Path,
    kind: CifarBinary,
    name: &str,
) -> Result<Dataset> {
    let mut samples = Samples::default();
    samples.read(bytes, bytes.len() as u64, origin, kind)?;
    samples.into_dataset(kind, name)
}

/// Reads and concatenates binary batch files.
fn read_binary(paths: &[PathBuf], kind: CifarBinary, name: &str) -> Result<Dataset> {
    let mut samples = Samples::default();
    for path in paths {
        let io_err = |e| DataError::io(path, e);
        let file = File::open(path).map_err(io_err)?;
        let stored = file.metadata().map_err(io_err)?.len();
        samples.read(BufReader::new(file), stored, path, kind)?;
    }
    samples.into_dataset(kind, name)
}

/// Labels and HWC pixels of the records read so far.
#[derive(Debug, Default)]
struct Samples {
    labels: Vec<u32>,
    pixels: Vec<f32>,
}

impl Samples {
    /// Appends every record of one file whose stored (possibly compressed) length is `stored`.
    fn read(
        &mut self,
        reader: impl BufRead,
        stored: u64,
        path: &Path,
        kind: CifarBinary,
    ) -> Result<()> {
        let io_err = |e| DataError::io(path, e);
        let mut source = MaybeGzip::new(reader).map_err(io_err)?;
        let record_len = kind.record_len();
        if !source.is_gzip() {
            // The file's real length, not a declared one: reserving for it is safe.
            let records = usize::try_from(stored / record_len as u64).unwrap_or(0);
            self.labels.reserve(records);
            self.pixels
                .reserve(records.saturating_mul(CHANNELS * PLANE));
        }
        let label_classes = kind.label_classes();
        let mut record = vec![0u8; record_len];
        let mut offset = 0u64;
        let mut index = 0usize;
        loop {
            let got = fill(&mut source, &mut record).map_err(io_err)?;
            if got == 0 {
                break;
            }
            if got < record_len {
                return Err(DataError::Truncated {
                    path: path.to_path_buf(),
                    offset: offset + got as u64,
                    needed: (record_len - got) as u64,
                });
            }
            let (labels, image) = record.split_at(label_classes.len());
            for (byte, (&label, &classes)) in labels.iter().zip(label_classes).enumerate() {
                if usize::from(label) >= classes {
                    return Err(DataError::LabelOutOfRange {
                        path: path.to_path_buf(),
                        location: Location::Record {
                            index,
                            offset: offset + byte as u64,
                        },
                        label: i64::from(label),
                        classes,
                    });
                }
            }
            self.labels.push(u32::from(labels[labels.len() - 1]));
            push_hwc(image, &mut self.pixels);
            offset += record_len as u64;
            index += 1;
        }
        if index == 0 {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    fn into_dataset(self, kind: CifarBinary, name: &str) -> Result<Dataset> {
        let shape = ImageShape::new(SIDE, SIDE, CHANNELS);
        let features = Array2::from_shape_vec((self.labels.len(), shape.size()), self.pixels)
            .expect("every record contributes exactly one image");
        Dataset::new(name, features, self.labels, shape, kind.classes())
    }
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
        let mut rec = vec![17u8, 42];
        for channel in 0..3u8 {
            rec.extend((0..PLANE).map(|p| if p == 33 { 10 * (channel + 1) } else { 0 }));
        }
        std::fs::write(dir.path().join("train.bin"), [rec.clone(), rec].concat()).unwrap();
        std::fs::write(dir.path().join("test.bin"), [] as [u8; 0]).unwrap();
        let err = load_cifar100_binary_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("test.bin"), "{err}");
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
        let train =
            read_binary(&[dir.path().join("train.bin")], CifarBinary::Cifar100, "t").unwrap();
        assert_eq!(train.labels(), &[42, 42]);
        // Pixel 33 is (y=1, x=1): HWC offset 33 * 3.
        let features = train.features();
        let row = features.row(1);
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
