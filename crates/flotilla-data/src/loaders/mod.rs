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
use std::thread;

use flate2::bufread::MultiGzDecoder;

use crate::parallel::{MIN_PART_VALUES, for_each_parallel, part_len, widest};

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
fn fill(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
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
        |(out, bytes)| scale_into(out, bytes),
    );
    out
}

/// Bytes [`read_scaled_u8`] reads at a time.
const SCALE_CHUNK: usize = 1 << 20;

/// Reads up to `count` bytes of `source` and scales them as [`scaled_u8`] does; returns how
/// many bytes the stream held (at most `count`) and the `count` values (zero past the end).
///
/// A large stream is scaled on a second thread while the calling thread reads it (for a gzip
/// file, while it is inflated): the time goes mostly to faulting in the output's fresh pages,
/// which is then spent beside the reading instead of after it (MNIST's training images: 188 MB
/// of `f32`, inflated in about 75 ms).
pub(crate) fn read_scaled_u8(source: &mut dyn Read, count: usize) -> io::Result<(usize, Vec<f32>)> {
    let mut out = vec![0.0f32; count];
    if count <= SCALE_CHUNK {
        let mut bytes = vec![0u8; count];
        let got = fill(source, &mut bytes)?;
        scale_into(&mut out, &bytes[..got]);
        return Ok((got, out));
    }
    // Chunks go to the scaling thread with their offset and come back to be refilled; three
    // keep both threads busy. The scaling thread holds the only sender of empty chunks, so a
    // panic there ends the reading instead of leaving it waiting.
    let (full_tx, full_rx) = crossbeam_channel::bounded::<(usize, Vec<u8>)>(3);
    let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Vec<u8>>(3);
    for _ in 0..3 {
        empty_tx
            .send(vec![0u8; SCALE_CHUNK])
            .expect("the receiver is held here and the channel has room");
    }
    let got = thread::scope(|scope| {
        let out = &mut out;
        scope.spawn(move || {
            for (offset, bytes) in full_rx {
                scale_into(&mut out[offset..offset + bytes.len()], &bytes);
                // The reader may have stopped (end of stream or an error): nothing to refill.
                let _ = empty_tx.send(bytes);
            }
        });
        let mut got = 0;
        while got < count {
            let Ok(mut chunk) = empty_rx.recv() else {
                break; // The scaling thread panicked; the scope's join reports it.
            };
            chunk.resize(SCALE_CHUNK.min(count - got), 0);
            let read = fill(source, &mut chunk)?;
            chunk.truncate(read);
            let ended = read < SCALE_CHUNK.min(count - got);
            if full_tx.send((got, chunk)).is_err() {
                break;
            }
            got += read;
            if ended {
                break;
            }
        }
        drop(full_tx);
        Ok::<_, io::Error>(got)
    })?;
    Ok((got, out))
}

/// Writes [`scale_u8`] of `bytes` into `out` (of the same length), compiled for the widest
/// vectors.
fn scale_into(out: &mut [f32], bytes: &[u8]) {
    widest(|| {
        out.iter_mut()
            .zip(scale_u8(bytes))
            .for_each(|(o, v)| *o = v);
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `bytes` that fails once `fail_at` bytes were read, if set.
    struct Stream {
        bytes: Vec<u8>,
        at: usize,
        fail_at: Option<usize>,
    }

    impl Read for Stream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(io::Error::other("disk gone"));
            }
            // Short reads of odd sizes, as a decoder gives.
            let end = self.bytes.len().min(self.at + buf.len().min(70_001));
            let n = end - self.at;
            buf[..n].copy_from_slice(&self.bytes[self.at..end]);
            self.at = end;
            Ok(n)
        }
    }

    #[test]
    fn streamed_scaling_equals_scaling_the_bytes_whole() {
        for len in [
            0,
            1,
            SCALE_CHUNK - 1,
            SCALE_CHUNK,
            SCALE_CHUNK + 1,
            2 * SCALE_CHUNK + 7,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            for missing in [0, 5] {
                let count = len + missing;
                let mut stream = Stream {
                    bytes: bytes.clone(),
                    at: 0,
                    fail_at: None,
                };
                let (got, values) = read_scaled_u8(&mut stream, count).unwrap();
                assert_eq!(got, len, "{len} bytes, {count} declared");
                let mut expected = scaled_u8(&bytes);
                expected.resize(count, 0.0);
                assert!(
                    values
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(expected.iter().map(|v| v.to_bits())),
                    "{len} bytes, {count} declared"
                );
            }
        }
    }

    #[test]
    fn streamed_scaling_reports_a_read_error() {
        for fail_at in [0, SCALE_CHUNK / 2, SCALE_CHUNK + 3] {
            let mut stream = Stream {
                bytes: vec![9; 3 * SCALE_CHUNK],
                at: 0,
                fail_at: Some(fail_at),
            };
            let err = read_scaled_u8(&mut stream, 3 * SCALE_CHUNK).unwrap_err();
            assert_eq!(err.to_string(), "disk gone");
        }
    }
}
