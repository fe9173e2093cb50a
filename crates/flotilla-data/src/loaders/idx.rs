//! IDX files (the MNIST format), raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic `00 00 <type> <ndims>`, then `ndims` big-endian `u32`
//! dimensions, then the elements in row-major order. Only unsigned bytes (type `0x08`) are
//! supported. Gzip is detected by its `1f 8b` magic, not by the file name; byte offsets in
//! errors count from the start of the decompressed data.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::{read_maybe_gzip, scale_u8};
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Location, Result};

/// IDX element type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

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
    let bytes = read_maybe_gzip(path)?;
    let truncated = |offset: usize, needed: usize| DataError::Truncated {
        path: path.to_path_buf(),
        offset: offset as u64,
        needed: needed as u64,
    };
    let Some(magic) = bytes.first_chunk::<4>() else {
        return Err(truncated(bytes.len(), 4 - bytes.len()));
    };
    let elem_type = magic[2];
    let ndims = usize::from(magic[3]);
    if magic[..2] != [0, 0] || !matches!(elem_type, 0x08 | 0x09 | 0x0B..=0x0E) {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: u32::from_be_bytes(*magic),
            expected: "0x0000TTNN (IDX: two zero bytes, element type TT, NN dimensions)".into(),
        });
    }
    let header = |offset: usize, reason: String| DataError::Header {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if elem_type != TYPE_U8 {
        return Err(header(
            2,
            format!("element type {elem_type:#04x} is not supported (only 0x08, unsigned byte)"),
        ));
    }
    if ndims == 0 {
        return Err(header(3, "zero dimensions".into()));
    }
    let data_offset = 4 + 4 * ndims;
    if bytes.len() < data_offset {
        return Err(truncated(bytes.len(), data_offset - bytes.len()));
    }
    let dims: Vec<usize> = bytes[4..data_offset]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| header(4, format!("dimensions {dims:?} overflow")))?;
    let available = bytes.len() - data_offset;
    if available < count {
        return Err(truncated(bytes.len(), count - available));
    }
    if available > count {
        return Err(header(
            data_offset + count,
            format!(
                "{} bytes after the {count} elements that dimensions {dims:?} describe",
                available - count
            ),
        ));
    }
    let mut data = bytes;
    data.drain(..data_offset);
    Ok(IdxArray { dims, data })
}

/// Loads an image IDX file and a label IDX file into a dataset with pixels scaled to `[0, 1]`.
///
/// The image file has 2 (`n × d`, flat), 3 (`n × h × w`, grey) or 4 (`n × h × w × c`, HWC)
/// dimensions; the label file has 1 dimension of the same `n`, and every label must be
/// `< classes`.
pub fn load_idx_dataset(
    images_path: &Path,
    labels_path: &Path,
    classes: usize,
    name: &str,
) -> Result<Dataset> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    let shape = match images.dims[1..] {
        [d] => ImageShape::flat(d),
        [h, w] => ImageShape::new(h, w, 1),
        [h, w, c] => ImageShape::new(h, w, c),
        _ => {
            return Err(DataError::Header {
                path: images_path.to_path_buf(),
                offset: 3,
                reason: format!(
                    "an image file needs 2 to 4 dimensions, found {}",
                    images.dims.len()
                ),
            });
        }
    };
    let n = images.dims[0];
    if labels.dims.len() != 1 {
        return Err(DataError::Header {
            path: labels_path.to_path_buf(),
            offset: 3,
            reason: format!(
                "a label file needs 1 dimension, found {}",
                labels.dims.len()
            ),
        });
    }
    if labels.dims[0] != n {
        return Err(DataError::Header {
            path: labels_path.to_path_buf(),
            offset: 4,
            reason: format!(
                "{} labels but {n} images in {}",
                labels.dims[0],
                images_path.display()
            ),
        });
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
    let features = Array2::from_shape_vec((n, shape.size()), scale_u8(&images.data).collect())
        .expect("the header check guarantees n * size elements");
    let labels = labels.data.iter().map(|&l| u32::from(l)).collect();
    Dataset::new(name, features, labels, shape, classes)
}

/// Loads MNIST's train and test splits from `dir`.
///
/// Expects `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each either with a `.gz` suffix (preferred if both exist) or raw.
/// The datasets are named `mnist-train` and `mnist-test`, 28×28×1, 10 classes.
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    let split = |prefix: &str, name: &str| {
        load_idx_dataset(
            &find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?,
            &find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?,
            10,
            name,
        )
    };
    Ok((split("train", "mnist-train")?, split("t10k", "mnist-test")?))
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
    }

    #[test]
    fn trailing_bytes_are_a_header_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.idx");
        std::fs::write(&p, idx(&[2], &[1, 2, 3])).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("byte offset 10") && msg.contains("1 bytes after"),
            "{msg}"
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
