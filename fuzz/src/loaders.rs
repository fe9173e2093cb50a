//! What the dataset loader targets (`idx`, `cifar`, `leaf`, `image`) share: the dataset
//! property, the gzip expansion guard, and the real files seeds are cut from.

use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};
use flotilla_data::{Dataset, ImageShape};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Heap bytes an honest loader may hold per decompressed byte: the bytes or a record, the
/// `f32` features (4 bytes each), and a growing vector's spare capacity.
pub const HONEST_BYTES_PER_BYTE: u64 = 16;

/// Panics unless `data` is what a loader may return: `shape` and `classes` as expected, one
/// feature row of `shape.size()` values per label, every label below `classes`, every value
/// finite and in `[0, 1]` (the loaders' documented scale).
pub fn check_dataset(data: &Dataset, shape: ImageShape, classes: usize) {
    assert_eq!(
        data.shape(),
        shape,
        "the dataset has the wrong sample shape"
    );
    assert_eq!(
        data.classes(),
        classes,
        "the dataset has the wrong class count"
    );
    let features = data.features();
    assert!(!data.is_empty(), "a loaded dataset is empty");
    assert_eq!(
        features.nrows(),
        data.labels().len(),
        "feature rows != labels"
    );
    assert_eq!(
        features.ncols(),
        shape.size(),
        "feature columns != sample size"
    );
    if let Some((i, l)) = data
        .labels()
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        panic!("sample {i}: label {l} is not below {classes} classes");
    }
    if let Some(v) = features.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        panic!("feature value {v} is not a finite number in [0, 1]");
    }
}

/// Whether `bytes` is a gzip stream that really decompresses (before any error) to more than
/// `limit` bytes. Such an input may make an honest loader hold more than
/// [`crate::allowance`], since deflate expands up to 1032:1: the targets skip it, so that the
/// oracle still catches what matters, memory taken on a header's word.
pub fn gunzips_beyond(bytes: &[u8], limit: u64) -> bool {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return false;
    }
    let mut decoder = MultiGzDecoder::new(bytes).take(limit + 1);
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    while let Ok(n) = decoder.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total > limit
}

/// The largest decompressed size the loader targets accept for an input of `len` bytes: the
/// one whose honest handling fits the allowance.
pub fn expansion_limit(len: usize) -> u64 {
    crate::allowance(len) / HONEST_BYTES_PER_BYTE
}

/// The shared real-data folder seeds are cut from: `$FLOTILLA_DATA`, else `../shared/data`
/// beside the repository.
pub fn data_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the fuzz crate sits in the repository");
    flotilla_data::data_root::resolve_data_root(
        std::env::var_os(flotilla_data::data_root::DATA_ENV),
        repo,
    )
    .unwrap_or_else(|e| panic!("seeds are cut from the real datasets: {e}"))
}

/// The first `n` bytes of the decompressed contents of the gzip file `path`.
pub fn gunzip_prefix(path: &Path, n: usize) -> Vec<u8> {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut out = Vec::with_capacity(n);
    MultiGzDecoder::new(std::io::BufReader::new(file))
        .take(n as u64)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("cannot gunzip {}: {e}", path.display()));
    assert_eq!(out.len(), n, "{} is shorter than {n} bytes", path.display());
    out
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("writing to a vector");
    encoder.finish().expect("writing to a vector")
}
