//! Loaders for the on-disk dataset formats: IDX (MNIST), CIFAR image folders and binary
//! batches, and LEAF JSON (FEMNIST).

pub mod cifar;
pub mod idx;
pub mod image_folder;
pub mod leaf;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// The two magic bytes that start every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, transparently decompressing it if it starts with the gzip magic
/// (whatever its name).
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::io(path, e))?;
    Ok(out)
}

/// Scales 8-bit pixel values to `[0, 1]`.
pub(crate) fn scale_u8(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.iter().map(|&b| f32::from(b) / 255.0)
}
