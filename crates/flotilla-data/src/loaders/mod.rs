//! Loaders for the on-disk dataset formats: IDX (MNIST), CIFAR image folders and binary
//! batches, LEAF JSON (FEMNIST) and NumPy `.npz` archives.
//!
//! Every loader has a path-based entry point and one that parses in-memory bytes, for tests and
//! fuzzing: [`idx::parse_idx`] (one IDX file), [`cifar::parse_cifar_binary`] (one binary batch),
//! [`leaf::parse_leaf`] (one LEAF JSON file), [`npz::parse_npz`] (one `.npz` archive) and [`image_folder::decode_image`] (one image
//! file). The bytes-based functions take an `origin` path used only to name the input in
//! errors, and apply exactly the checks of the path-based ones.

pub mod cifar;
pub mod idx;
pub mod image_folder;
pub mod leaf;
pub mod npz;

use std::io::{self, BufRead, Read};

use flate2::bufread::MultiGzDecoder;

use crate::parallel::{MIN_PART_VALUES, for_each_parallel, part_len};

/// The two magic bytes that start every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A byte stream that is gunzipped on the fly if it starts with the gzip magic (whatever the
/// file's name). Concatenated gzip members decode as one stream, as with `gunzip`.
enum MaybeGzip<R: BufRead> {
    /// Not compressed: the bytes as stored.
    Raw(R),
    /// Gzip: the decompressed bytes (boxed: the decoder's state is large).
    Gzip(Box<MultiGzDecoder<R>>),
}

impl<R: BufRead> MaybeGzip<R> {
    /// Sniffs the first bytes of `reader` (without consuming them).
    fn new(mut reader: R) -> io::Result<Self> {
        Ok(if reader.fill_buf()?.starts_with(&GZIP_MAGIC) {
            Self::Gzip(Box::new(MultiGzDecoder::new(reader)))
        } else {
            Self::Raw(reader)
        })
    }

    fn is_gzip(&self) -> bool {
        matches!(self, Self::Gzip(_))
    }
}

impl<R: BufRead> Read for MaybeGzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Raw(r) => r.read(buf),
            Self::Gzip(r) => r.read(buf),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Scales 8-bit pixel values to `[0, 1]`.
pub(crate) fn scale_u8(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.iter().map(|&b| f32::from(b) / 255.0)
}

/// [`scale_u8`] of all `bytes` into a new vector, converted on every core: for a whole
/// dataset the time goes mostly to faulting in the fresh pages, which the cores share.
pub(crate) fn scaled_u8(bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0.0f32; bytes.len()];
    let len = part_len(bytes.len(), MIN_PART_VALUES);
    for_each_parallel(
        out.chunks_mut(len).zip(bytes.chunks(len)),
        |(out, bytes)| {
            out.iter_mut()
                .zip(scale_u8(bytes))
                .for_each(|(o, v)| *o = v);
        },
    );
    out
}

/// Parses JSON, mapping parser errors to [`DataError::Json`] naming `path`, line and column.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    path: &std::path::Path,
) -> crate::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        crate::DataError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
        }
    })
}
