//! IDX files (the MNIST format), raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic `00 00 <type> <ndims>`, then `ndims` big-endian `u32`
//! dimensions, then the elements in row-major order. Only unsigned bytes (type `0x08`) are
//! supported. Gzip is detected by its `1f 8b` magic, not by the file name; byte offsets in
//! errors count from the start of the decompressed data.
//!
//! The header is read first and bounds everything after it: a file must hold exactly the bytes
//! its dimensions declare. Before anything is allocated, a raw file must be that long and a
//! gzip file short enough that deflate could expand it that far (at most
//! [`MAX_DEFLATE_RATIO`]:1); decompression then stops at the declared length, and any excess
//! is only counted for the error.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::{MaybeGzip, fill, read_scaled_u8, scaled_u8};
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Location, Result};

/// IDX element type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// The most bytes one compressed byte of a deflate stream can expand to: a 258-byte match
/// coded in 2 bits (1-bit length and distance codes) gives 8 / 2 · 258 = 1032.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions from the header, outermost first.
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Byte offset of the first element (the header length).
    pub fn data_offset(&self) -> u64 {
        4 + 4 * self.dims.len() as u64
    }
}

/// Reads an IDX file of unsigned bytes, checking that its length matches its header exactly.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let (file, stored) = open(path)?;
    read_idx_from(file, stored, path)
}

/// Opens `path` for reading, with its stored length.
fn open(path: &Path) -> Result<(BufReader<File>, u64)> {
    let io_err = |e| DataError::io(path, e);
    let file = File::open(path).map_err(io_err)?;
    let stored = file.metadata().map_err(io_err)?.len();
    Ok((BufReader::new(file), stored))
}

/// Parses the bytes of one IDX file (raw or gzip), with the checks of [`read_idx`].
///
/// `origin` only names the input in errors. This is the entry point for fuzzing the IDX
/// parser: any input gives an [`IdxArray`] or a [`DataError`], never a panic, and memory use
/// is bounded by [`MAX_DEFLATE_RATIO`] times `bytes.len()`.
pub fn parse_idx(bytes: &[u8], origin: &Path) -> Result<IdxArray> {
    read_idx_from(bytes, bytes.len() as u64, origin)
}

/// Reads an IDX stream whose stored (possibly compressed) length is `stored` bytes.
fn read_idx_from(reader: impl BufRead, stored: u64, path: &Path) -> Result<IdxArray> {
    let (dims, data) = read_idx_with(reader, stored, path, |source, count| {
        let mut data = vec![0u8; count];
        Ok((fill(source, &mut data)?, data))
    })?;
    Ok(IdxArray { dims, data })
}

/// Reads an IDX stream's header, with every check of [`read_idx`], then its elements with
/// `read_elements(source, count)`, which reads up to the `count` elements the header declares
/// and returns how many the stream held and what it made of them; checks that the stream holds
/// exactly `count`. Returns the dimensions and `read_elements`' result.
fn read_idx_with<T>(
    reader: impl BufRead,
    stored: u64,
    path: &Path,
    read_elements: impl FnOnce(&mut dyn Read, usize) -> io::Result<(usize, T)>,
) -> Result<(Vec<usize>, T)> {
    let io_err = |e| DataError::io(path, e);
    let mut source = MaybeGzip::new(reader).map_err(io_err)?;
    let truncated = |offset: usize, needed: usize| DataError::Truncated {
        path: path.to_path_buf(),
        offset: offset as u64,
        needed: needed as u64,
    };
    let header = |offset: u64, reason: String| DataError::Header {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut magic = [0u8; 4];
    let got = fill(&mut source, &mut magic).map_err(io_err)?;
    if got < magic.len() {
        return Err(truncated(got, magic.len() - got));
    }
    let elem_type = magic[2];
    if magic[..2] != [0, 0] || !matches!(elem_type, 0x08 | 0x09 | 0x0B..=0x0E) {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: u32::from_be_bytes(magic),
            expected: "0x0000TTNN (IDX: two zero bytes, element type TT, NN dimensions)".into(),
        });
    }
    if elem_type != TYPE_U8 {
        return Err(header(
            2,
            format!("element type {elem_type:#04x} is not supported (only 0x08, unsigned byte)"),
        ));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(header(3, "zero dimensions".into()));
    }
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let got = fill(&mut source, &mut dim_bytes).map_err(io_err)?;
    if got < dim_bytes.len() {
        return Err(truncated(4 + got, dim_bytes.len() - got));
    }
    let raw_dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        .collect();
    let data_offset = 4 + dim_bytes.len() as u64;
    let overflow = || header(4, format!("dimensions {raw_dims:?} overflow"));
    let count = raw_dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(overflow)?;
    let declared = data_offset.checked_add(count).ok_or_else(overflow)?;
    if source.is_gzip() {
        let most = stored.saturating_mul(MAX_DEFLATE_RATIO);
        if declared > most {
            return Err(header(
                4,
                format!(
                    "dimensions {raw_dims:?} declare {declared} bytes, more than a {stored}-byte \
                     gzip file can hold (deflate expands at most {MAX_DEFLATE_RATIO}:1, so at \
                     most {most} bytes)"
                ),
            ));
        }
    } else if declared != stored {
        return Err(DataError::Length {
            path: path.to_path_buf(),
            declared,
            actual: stored,
        });
    }
    let (Ok(dims), Ok(count)) = (
        raw_dims.iter().map(|&d| usize::try_from(d)).collect(),
        usize::try_from(count),
    ) else {
        return Err(overflow());
    };
    let (got, elements) = read_elements(&mut source, count).map_err(io_err)?;
    // Reading on to the end also makes the gzip decoder check the stream's CRC.
    let excess = io::copy(&mut source, &mut io::sink()).map_err(io_err)?;
    if got < count || excess > 0 {
        return Err(DataError::Length {
            path: path.to_path_buf(),
            declared,
            actual: data_offset + got as u64 + excess,
        });
    }
    Ok((dims, elements))
}

/// Loads an image IDX file and a label IDX file into a dataset with pixels scaled to `[0, 1]`.
///
/// The image file has 2 (`n × d`, flat), 3 (`n × h × w`, grey) or 4 (`n × h × w × c`, HWC)
/// dimensions, none of them zero; the label file has 1 dimension of the same `n`, and every
/// label must be `< classes`.
pub fn load_idx_dataset(
    images_path: &Path,
    labels_path: &Path,
    classes: usize,
    name: &str,
) -> Result<Dataset> {
    // The pixels are scaled as they are read (see `read_scaled_u8`): no byte copy of the
    // images is kept.
    let (images, stored) = open(images_path)?;
    let (dims, features) = read_idx_with(images, stored, images_path, read_scaled_u8)?;
    let labels = read_idx(labels_path)?;
    let shape = idx_shape(&dims, images_path, &labels, labels_path, classes)?;
    dataset(dims[0], shape, features, &labels, classes, name)
}

/// Builds a dataset from parsed image and label IDX files (see [`load_idx_dataset`] for the
/// rules); the paths only name the files in errors. With [`parse_idx`], this is the
/// bytes-based entry point for fuzzing.
pub fn idx_dataset(
    images: &IdxArray,
    images_path: &Path,
    labels: &IdxArray,
    labels_path: &Path,
    classes: usize,
    name: &str,
) -> Result<Dataset> {
    let shape = idx_shape(&images.dims, images_path, labels, labels_path, classes)?;
    let features = scaled_u8(&images.data);
    dataset(images.dims[0], shape, features, labels, classes, name)
}

/// The image shape of an image file of dimensions `dims` and its label file, after the checks
/// of [`load_idx_dataset`].
fn idx_shape(
    dims: &[usize],
    images_path: &Path,
    labels: &IdxArray,
    labels_path: &Path,
    classes: usize,
) -> Result<ImageShape> {
    let header = |path: &Path, offset: u64, reason: String| DataError::Header {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let shape = match dims[1..] {
        [d] => ImageShape::flat(d),
        [h, w] => ImageShape::new(h, w, 1),
        [h, w, c] => ImageShape::new(h, w, c),
        _ => {
            return Err(header(
                images_path,
                3,
                format!(
                    "an image file needs 2 to 4 dimensions, found {}",
                    dims.len()
                ),
            ));
        }
    };
    let n = dims[0];
    if n == 0 {
        return Err(DataError::Empty {
            path: images_path.to_path_buf(),
        });
    }
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(header(
            images_path,
            4 + 4 * i as u64,
            format!("image dimension {i} of {:?} is zero", dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(header(
            labels_path,
            3,
            format!(
                "a label file needs 1 dimension, found {}",
                labels.dims.len()
            ),
        ));
    }
    if labels.dims[0] != n {
        return Err(header(
            labels_path,
            4,
            format!(
                "{} labels but {n} images in {}",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some((index, &label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            location: Location::Record {
                index,
                offset: labels.data_offset() + index as u64,
            },
            label: i64::from(label),
            classes,
        });
    }
    Ok(shape)
}

/// The dataset of `n` images of `shape` with scaled pixels `features` and the checked
/// `labels`.
fn dataset(
    n: usize,
    shape: ImageShape,
    features: Vec<f32>,
    labels: &IdxArray,
    classes: usize,
    name: &str,
) -> Result<Dataset> {
    // `read_idx` checked that n · shape.size() = features.len() without overflow.
    let features = Array2::from_shape_vec((n, shape.size()), features)
        .expect("the header check guarantees n * size elements");
    let labels = labels.data.iter().map(|&l| u32::from(l)).collect();
    Dataset::new(name, features, labels, shape, classes)
}

/// Loads MNIST's train and test splits from `dir` (concurrently; a training-split error is
/// reported first).
///
/// Expects `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each either with a `.gz` suffix (preferred if both exist) or raw.
/// The datasets are named `mnist-train` and `mnist-test`, 10 classes. MNIST is 28×28×1; any
/// sample shape is accepted as long as both splits share it
/// ([`DataError::SplitShapes`] otherwise, naming both image files).
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let split = |prefix: &str, name: &str| -> Result<(Dataset, PathBuf)> {
        let images = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        Ok((load_idx_dataset(&images, &labels, 10, name)?, images))
    };
    // The test split loads beside the training split (a seventh of its work).
    let (train, test) = std::thread::scope(|scope| {
        let test = scope.spawn(|| split("t10k", "mnist-test"));
        let train = split("train", "mnist-train");
        let test = test
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (train, test)
    });
    let (train, train_path) = train?;
    let (test, test_path) = test?;
    if train.shape() != test.shape() {
        return Err(DataError::SplitShapes {
            train: train_path,
            train_shape: train.shape(),
            test: test_path,
            test_shape: test.shape(),
        });
    }
    Ok((train, test))
}

/// `dir/base.gz` if it exists, else `dir/base` if it exists.
fn find_idx_file(dir: &Path, base: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{base}.gz"));
    let raw = dir.join(base);
    [&gz, &raw]
        .into_iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| DataError::NotFound {
            path: raw.clone(),
            reason: format!("MNIST file missing (also tried {})", gz.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_raw_and_gzip_alike() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let raw = dir.path().join("a");
        std::fs::write(&raw, &bytes).unwrap();
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&bytes).unwrap();
        let gz = dir.path().join("b");
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let a = read_idx(&raw).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(read_idx(&gz).unwrap(), a);
        assert_eq!(parse_idx(&bytes, &raw).unwrap(), a);
    }

    #[test]
    fn trailing_bytes_are_a_length_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.idx");
        std::fs::write(&p, idx(&[2], &[1, 2, 3])).unwrap();
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Length {
                    declared: 10,
                    actual: 11,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unsupported_type_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.idx");
        std::fs::write(&p, [0, 0, 0x0D, 1, 0, 0, 0, 0]).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains("0x0d"), "{msg}");
    }

    #[test]
    fn dataset_from_3d_images_is_grey_hwc() {
        let dir = tempfile::tempdir().unwrap();
        let (xi, yi) = (dir.path().join("x"), dir.path().join("y"));
        std::fs::write(&xi, idx(&[2, 1, 2], &[0, 255, 51, 102])).unwrap();
        std::fs::write(&yi, idx(&[2], &[3, 1])).unwrap();
        let d = load_idx_dataset(&xi, &yi, 4, "t").unwrap();
        assert_eq!(d.shape(), ImageShape::new(1, 2, 1));
        assert_eq!(d.labels(), &[3, 1]);
        assert_eq!(d.features().row(1).to_vec(), vec![0.2, 0.4]);
    }
}
