//! NumPy `.npz` archives (what `np.savez` and `np.savez_compressed` write) holding a train
//! and a test split as four arrays.
//!
//! The archive must hold `x_train.npy`, `y_train.npy`, `x_test.npy` and `y_test.npy` (other
//! members are ignored), each stored or deflate-compressed:
//!
//! - `x_*`: float32, float64 (converted to float32) or uint8 (scaled to `[0, 1]` as `x / 255`)
//!   features, C order, of shape `(n, d)` (flat vectors), `(n, h, w)` (grey images) or
//!   `(n, h, w, c)` (images, channels last). The sample shape is taken from the array; both
//!   splits must share it. Every value must be finite.
//! - `y_*`: integer labels (any signed or unsigned width), shape `(n,)` with the `n` of its
//!   `x_*`, each `>= 0`. The class count is the largest label of both splits plus one (at
//!   least 2, at most [`MAX_NPZ_CLASSES`]).
//!
//! The `.npy` members are parsed by [`npyz`] (header and element decoding) and the archive by
//! [`zip`]. Nothing is allocated on a file's word alone: a member's header is at most
//! [`MAX_NPY_HEADER`] bytes, its shape's element count must not overflow, and the bytes its
//! shape declares must fit in the member as stored (at most [`MAX_DEFLATE_RATIO`] times the
//! compressed size for deflate, which must itself fit in the file). Decompression stops at the
//! declared length; the rest is only counted, and reading on to the end makes the archive check
//! the member's CRC. Every error is a [`DataError::Npz`] naming the file and the array (or
//! [`DataError::Layout`] when the file is not a zip archive at all).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use ndarray::Array2;
use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar};
use zip::ZipArchive;
use zip::result::ZipError;

use super::idx::MAX_DEFLATE_RATIO;
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Result};

/// The largest `.npy` header accepted \[bytes\] (numpy itself reads at most 10 000 by default).
pub const MAX_NPY_HEADER: usize = 65_536;

/// The most classes an `.npz` dataset may have (its largest label plus one): the class count
/// sizes every model's output layer.
pub const MAX_NPZ_CLASSES: usize = 100_000;

/// The deepest bracket nesting accepted in a `.npy` header (a plain array's has 2); bounds the
/// recursion of the header parser.
const MAX_HEADER_NESTING: usize = 16;

/// The array names of an archive, in the order they are read.
const ARRAYS: [&str; 4] = ["x_train", "y_train", "x_test", "y_test"];

/// Loads the train and test splits of an `.npz` file, named `<name>-train` and `<name>-test`
/// (see the [module docs](self) for the layout and the checks).
pub fn load_npz(path: &Path, name: &str) -> Result<(Dataset, Dataset)> {
    let io_err = |e| DataError::io(path, e);
    let file = File::open(path).map_err(io_err)?;
    let stored = file.metadata().map_err(io_err)?.len();
    read_npz(BufReader::new(file), stored, path, name)
}

/// Parses the bytes of one `.npz` file, with the checks of [`load_npz`].
///
/// `origin` only names the input in errors. This is the entry point for fuzzing the `.npz`
/// reader: any input gives the datasets or a [`DataError`], never a panic, and memory use is
/// bounded by a small multiple of [`MAX_DEFLATE_RATIO`] times `bytes.len()`.
pub fn parse_npz(bytes: &[u8], origin: &Path, name: &str) -> Result<(Dataset, Dataset)> {
    read_npz(io::Cursor::new(bytes), bytes.len() as u64, origin, name)
}

/// One array's header and its data bytes, as stored.
struct RawArray {
    /// The array's name, for errors.
    name: &'static str,
    header: NpyHeader,
    /// The shape, every dimension fitting in `usize`.
    shape: Vec<usize>,
    /// Exactly the bytes the shape and dtype declare.
    bytes: Vec<u8>,
}

fn npz_error(path: &Path, array: &str, reason: impl Into<String>) -> DataError {
    DataError::Npz {
        path: path.to_path_buf(),
        array: array.to_string(),
        reason: reason.into(),
    }
}

fn read_npz<R: Read + Seek>(
    reader: R,
    stored: u64,
    path: &Path,
    name: &str,
) -> Result<(Dataset, Dataset)> {
    let mut zip = ZipArchive::new(reader).map_err(|e| DataError::Layout {
        path: path.to_path_buf(),
        reason: format!("not a readable .npz (zip) archive: {e}"),
    })?;
    let [x_train, y_train, x_test, y_test] =
        ARRAYS.map(|array| read_array(&mut zip, stored, path, array));
    let (x_train, y_train) = (x_train?, y_train?);
    let (x_test, y_test) = (x_test?, y_test?);
    let (train_shape, train_x) = features(&x_train, path)?;
    let (test_shape, test_x) = features(&x_test, path)?;
    if test_shape != train_shape {
        return Err(npz_error(
            path,
            "x_test",
            format!(
                "samples are {test_shape} (height x width x channels) but x_train's are \
                 {train_shape}"
            ),
        ));
    }
    let train_y = labels(&y_train, x_train.shape[0], path)?;
    let test_y = labels(&y_test, x_test.shape[0], path)?;
    let largest = train_y.iter().chain(&test_y).copied().max().unwrap_or(0);
    let classes = largest as usize + 1;
    if classes < 2 {
        return Err(npz_error(
            path,
            "y_train",
            "every label (of y_train and y_test) is 0: a classification task needs at least 2 \
             classes",
        ));
    }
    let train = Dataset::new(
        format!("{name}-train"),
        train_x,
        train_y,
        train_shape,
        classes,
    )?;
    let test = Dataset::new(format!("{name}-test"), test_x, test_y, test_shape, classes)?;
    Ok((train, test))
}

/// Reads the member `<array>.npy`: its header (bounded, shape checked), then exactly the data
/// bytes it declares, then the rest of the member (counted, for the CRC check).
fn read_array<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    stored: u64,
    path: &Path,
    array: &'static str,
) -> Result<RawArray> {
    let err = |reason: String| npz_error(path, array, reason);
    let member = format!("{array}.npy");
    if zip.index_for_name(&member).is_none() {
        let mut names: Vec<String> = zip
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        let shown = names.len().min(10);
        return Err(err(format!(
            "missing: the archive has no member {member} (it holds {} member(s){}{})",
            names.len(),
            if shown > 0 { ": " } else { "" },
            names[..shown].join(", ") + if names.len() > shown { ", …" } else { "" }
        )));
    }
    let entry = zip
        .by_name(&member)
        .map_err(|e: ZipError| err(format!("cannot open {member}: {e}")))?;
    let compressed = entry.compressed_size();
    if compressed > stored {
        return Err(err(format!(
            "{member} claims {compressed} stored bytes, more than the {stored}-byte file holds"
        )));
    }
    let most = match entry.compression() {
        zip::CompressionMethod::Stored => compressed,
        zip::CompressionMethod::Deflated => compressed.saturating_mul(MAX_DEFLATE_RATIO),
        other => {
            return Err(err(format!(
                "{member} is compressed with {other}; only stored and deflate members are read \
                 (what np.savez and np.savez_compressed write)"
            )));
        }
    };
    let mut reader = BufReader::new(entry);
    let io_err = |what: &str, e: io::Error| err(format!("{what}: {e}"));
    // The pre-header: magic, version, header length (2 bytes in version 1, 4 in 2 and 3).
    let mut prefix = vec![0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| io_err("not a .npy member (no magic and version)", e))?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err(err(format!(
            "{member} is not a .npy array: it does not start with \\x93NUMPY"
        )));
    }
    let len_bytes = match prefix[6] {
        1 => 2,
        2 | 3 => 4,
        v => {
            return Err(err(format!(
                "{member}: .npy format version {v}.{} is not supported (1, 2 or 3)",
                prefix[7]
            )));
        }
    };
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len[..len_bytes])
        .map_err(|e| io_err("truncated .npy header length", e))?;
    prefix.extend_from_slice(&len[..len_bytes]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_NPY_HEADER {
        return Err(err(format!(
            "the .npy header declares {header_len} bytes, more than the {MAX_NPY_HEADER} accepted"
        )));
    }
    let mut text = vec![0u8; header_len];
    reader
        .read_exact(&mut text)
        .map_err(|e| io_err("truncated .npy header", e))?;
    let shape = checked_shape(&text).map_err(|reason| err(format!("header: {reason}")))?;
    prefix.extend_from_slice(&text);
    let header = NpyHeader::from_reader(prefix.as_slice())
        .map_err(|e| err(format!("bad .npy header: {e}")))?;
    if header.order() == Order::Fortran {
        return Err(err(
            "is stored in Fortran order; save np.ascontiguousarray(a) instead".into(),
        ));
    }
    let item = match header.dtype() {
        DType::Plain(t) => t.num_bytes().unwrap_or(0),
        other => {
            return Err(err(format!(
                "dtype {} is a structured or nested type; a plain numeric array is needed",
                other.descr()
            )));
        }
    };
    let overflow = || {
        err(format!(
            "shape {shape:?} holds more bytes than fit in memory"
        ))
    };
    let elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let data_bytes = elements.checked_mul(item as u64).ok_or_else(overflow)?;
    let declared = (prefix.len() as u64)
        .checked_add(data_bytes)
        .ok_or_else(overflow)?;
    if declared > most {
        return Err(err(format!(
            "shape {shape:?} of {} declares {declared} bytes, more than the member's {compressed} \
             stored bytes can hold{}",
            header.dtype().descr(),
            if most > compressed {
                format!(" (deflate expands at most {MAX_DEFLATE_RATIO}:1, so {most})")
            } else {
                String::new()
            }
        )));
    }
    let (Ok(data_len), Some(shape)) = (
        usize::try_from(data_bytes),
        shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>(),
    ) else {
        return Err(overflow());
    };
    let mut bytes = Vec::with_capacity(data_len);
    let got = (&mut reader)
        .take(data_bytes)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("reading the data failed", e))?;
    // Reading on to the end also makes the archive check the member's CRC.
    let excess =
        io::copy(&mut reader, &mut io::sink()).map_err(|e| io_err("reading the data failed", e))?;
    if got < data_len || excess > 0 {
        return Err(err(format!(
            "shape {shape:?} of {} declares {data_bytes} data bytes but the member holds {}",
            header.dtype().descr(),
            got as u64 + excess
        )));
    }
    Ok(RawArray {
        name: array,
        header,
        shape,
        bytes,
    })
}

/// The `shape` of a `.npy` header's text, checked before npyz interprets it: the text nests
/// at most [`MAX_HEADER_NESTING`] brackets deep and is a dict whose `shape` is a tuple of
/// non-negative integers whose product fits in `u64`.
fn checked_shape(text: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(format!(
                        "nests brackets more than {MAX_HEADER_NESTING} deep"
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_string())?;
    let value: py_literal::Value = text
        .trim_end()
        .parse()
        .map_err(|e| format!("is not a Python literal: {e}"))?;
    let py_literal::Value::Dict(entries) = value else {
        return Err("is not a Python dict".into());
    };
    let shape = entries
        .iter()
        .find(|(k, _)| matches!(k, py_literal::Value::String(s) if s == "shape"))
        .map(|(_, v)| v)
        .ok_or("has no `shape`")?;
    let (py_literal::Value::Tuple(dims) | py_literal::Value::List(dims)) = shape else {
        return Err(format!("`shape` {shape} is not a tuple"));
    };
    let dims = dims
        .iter()
        .map(|d| match d {
            py_literal::Value::Integer(i) => u64::try_from(i).ok(),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| format!("`shape` {shape} is not a tuple of non-negative integers"))?;
    if dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .is_none()
    {
        return Err(format!(
            "`shape` {shape} has more elements than fit in 64 bits"
        ));
    }
    Ok(dims)
}

/// Reads the elements of `raw` as `T`, converted with `convert`.
fn elements<T: npyz::Deserialize, U>(
    raw: &RawArray,
    path: &Path,
    mut convert: impl FnMut(T) -> U,
) -> Result<Vec<U>> {
    let npy = NpyFile::with_header(raw.header.clone(), raw.bytes.as_slice());
    let reader = npy
        .data::<T>()
        .map_err(|e| npz_error(path, raw.name, e.to_string()))?;
    reader
        .map(|v| v.map(&mut convert))
        .collect::<io::Result<_>>()
        .map_err(|e| npz_error(path, raw.name, format!("decoding the data failed: {e}")))
}

/// The sample shape and the features (one row per sample) of an `x_*` array.
fn features(raw: &RawArray, path: &Path) -> Result<(ImageShape, Array2<f32>)> {
    let err = |reason: String| npz_error(path, raw.name, reason);
    let dims = &raw.shape;
    let shape = match dims[..] {
        [_, d] => ImageShape::flat(d),
        [_, h, w] => ImageShape::new(h, w, 1),
        [_, h, w, c] => ImageShape::new(h, w, c),
        _ => {
            return Err(err(format!(
                "shape {dims:?}: features need 2 to 4 dimensions, (n, d), (n, h, w) or \
                 (n, h, w, c) with channels last"
            )));
        }
    };
    if dims[0] == 0 {
        return Err(err(format!(
            "shape {dims:?} holds no samples (a split needs at least one)"
        )));
    }
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(err(format!("shape {dims:?}: dimension {i} is zero")));
    }
    let descr = raw.header.dtype().descr();
    let values = match plain_type(raw) {
        Some((TypeChar::Float, 4)) => elements(raw, path, |x: f32| x)?,
        Some((TypeChar::Float, 8)) => elements(raw, path, |x: f64| x as f32)?,
        Some((TypeChar::Uint, 1)) => elements(raw, path, |x: u8| f32::from(x) / 255.0)?,
        _ => {
            return Err(err(format!(
                "dtype {descr} is not supported for features (float32, float64 or uint8)"
            )));
        }
    };
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        let size = shape.size();
        return Err(err(format!(
            "value {i} (sample {}, feature {}) is {}: features must be finite{}",
            i / size,
            i % size,
            values[i],
            if matches!(plain_type(raw), Some((TypeChar::Float, 8))) {
                " (float64 values beyond the float32 range count as infinite)"
            } else {
                ""
            }
        )));
    }
    // `read_array` read exactly n · size elements.
    let features = Array2::from_shape_vec((dims[0], shape.size()), values)
        .map_err(|e| err(format!("shape {dims:?}: {e}")))?;
    Ok((shape, features))
}

/// The labels of a `y_*` array for `n` samples.
fn labels(raw: &RawArray, n: usize, path: &Path) -> Result<Vec<u32>> {
    let err = |reason: String| npz_error(path, raw.name, reason);
    if raw.shape[..] != [n] {
        return Err(err(format!(
            "shape {:?}: labels need shape ({n},), one per sample of x_{}",
            raw.shape,
            raw.name.trim_start_matches("y_")
        )));
    }
    let wide: Vec<i128> = match plain_type(raw) {
        Some((TypeChar::Int, 1)) => elements(raw, path, |v: i8| i128::from(v))?,
        Some((TypeChar::Int, 2)) => elements(raw, path, |v: i16| i128::from(v))?,
        Some((TypeChar::Int, 4)) => elements(raw, path, |v: i32| i128::from(v))?,
        Some((TypeChar::Int, 8)) => elements(raw, path, |v: i64| i128::from(v))?,
        Some((TypeChar::Uint, 1)) => elements(raw, path, |v: u8| i128::from(v))?,
        Some((TypeChar::Uint, 2)) => elements(raw, path, |v: u16| i128::from(v))?,
        Some((TypeChar::Uint, 4)) => elements(raw, path, |v: u32| i128::from(v))?,
        Some((TypeChar::Uint, 8)) => elements(raw, path, |v: u64| i128::from(v))?,
        _ => {
            return Err(err(format!(
                "dtype {} is not supported for labels (an integer type)",
                raw.header.dtype().descr()
            )));
        }
    };
    wide.iter()
        .enumerate()
        .map(|(i, &label)| {
            if label < 0 {
                Err(err(format!(
                    "label {i} is {label}: labels are class indices >= 0"
                )))
            } else if label >= MAX_NPZ_CLASSES as i128 {
                Err(err(format!(
                    "label {i} is {label}: at most {MAX_NPZ_CLASSES} classes are supported"
                )))
            } else {
                Ok(label as u32)
            }
        })
        .collect()
}

/// The type character and byte size of a plain (non-structured) dtype.
fn plain_type(raw: &RawArray) -> Option<(TypeChar, u64)> {
    match raw.header.dtype() {
        DType::Plain(t) => Some((t.type_char(), t.size_field())),
        _ => None,
    }
}
