//! Image-folder datasets: `dir/<class name>/<image file>`.
//!
//! Class names are the sub-folder names in sorted order and the label of an image is the index
//! of its folder in that order. Files are taken in sorted name order within each class. Every
//! entry must be a class folder and every file in a class folder must be a `.jpg`, `.jpeg` or
//! `.png` image (any case): anything else is an error, never silently skipped. Images are
//! converted to RGB8, must all have one size (the given one, or else the first image's), and
//! are scaled to `[0, 1]`.
//!
//! Loading runs in two passes. The first reads every file and checks, from its header alone,
//! its size and that it is complete (a JPEG ends with its end-of-image marker, a PNG with its
//! `IEND` chunk: decoders would otherwise fill in a cut-off image). Only then is the feature
//! array allocated, and the second pass decodes. Both passes run on scoped threads, each on a
//! contiguous block of files, and report the first bad file in file order, so the result is
//! the same whatever the number of threads.

use std::fmt;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegDecoder;
use image::{ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use ndarray::{Array2, Axis};

use super::scale_u8;
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Result};
use crate::parallel::{part_len, run_parallel};

/// The most bytes one image may take decoded as RGB8 (the decoders' default allocation limit).
const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// File extensions accepted as images (compared case-insensitively).
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The JPEG end-of-image marker.
const JPEG_EOI: [u8; 2] = [0xFF, 0xD9];

/// Bytes some writers append after a JPEG's end-of-image marker.
const JPEG_PADDING: [u8; 6] = [0x00, 0xFF, b' ', b'\t', b'\r', b'\n'];

/// The last chunk of every PNG: zero length, type `IEND`, its CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Height and width of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// A dataset loaded from an image folder, with its class names.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images (`h × w × 3`, HWC, `[0, 1]`) and their labels.
    pub data: Dataset,
    /// Class names; label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
}

/// Loads every image of `dir/<class>/*` (see the module docs for the rules).
///
/// With `size`, every image must have that size; without it, every image must have the first
/// one's. Either way each file's size is checked from its header before anything is decoded or
/// the feature array allocated; without `size`, though, images whose headers all claim one
/// huge size are taken at their word, so pass `size` when it is known.
pub fn load_image_folder(dir: &Path, name: &str, size: Option<ImageSize>) -> Result<ImageFolder> {
    let class_dirs = sorted_entries(dir)?;
    if class_dirs.is_empty() {
        return Err(DataError::Layout {
            path: dir.to_path_buf(),
            reason: "no class folders".into(),
        });
    }
    let mut class_names = Vec::with_capacity(class_dirs.len());
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        if !class_dir.is_dir() {
            return Err(layout(class_dir, "expected only class folders here"));
        }
        let class_name = class_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| layout(class_dir, "class folder name is not UTF-8"))?;
        class_names.push(class_name.to_owned());
        let images = sorted_entries(class_dir)?;
        if images.is_empty() {
            return Err(layout(class_dir, "class folder has no images"));
        }
        for image in &images {
            check_image_name(image)?;
        }
        labels.extend(std::iter::repeat_n(label as u32, images.len()));
        files.extend(images);
    }
    let (features, shape) = decode_all(&files, size)?;
    let data = Dataset::new(name, features, labels, shape, class_names.len())?;
    Ok(ImageFolder { data, class_names })
}

fn layout(path: &Path, reason: &str) -> DataError {
    DataError::Layout {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn image_error(path: &Path, reason: String) -> DataError {
    DataError::Image {
        path: path.to_path_buf(),
        reason,
    }
}

/// The entries of `dir`, sorted by file name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = fs::read_dir(dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| DataError::io(dir, e))?;
    entries.sort();
    Ok(entries)
}

fn check_image_name(path: &Path) -> Result<()> {
    let is_image = path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
    if is_image {
        Ok(())
    } else {
        Err(image_error(
            path,
            "not an image file (expected .jpg, .jpeg or .png)".into(),
        ))
    }
}

/// One image file read and inspected but not decoded.
#[derive(Debug)]
struct Inspected {
    bytes: Vec<u8>,
    format: ImageFormat,
    size: ImageSize,
}

/// Decodes all `files` (non-empty) into rows of one array of images of `size` (or of the first
/// image's size).
fn decode_all(files: &[PathBuf], size: Option<ImageSize>) -> Result<(Array2<f32>, ImageShape)> {
    let mut inspected: Vec<Option<Inspected>> = files.iter().map(|_| None).collect();
    let chunk = part_len(files.len(), 1);
    run_parallel(
        files.chunks(chunk).zip(inspected.chunks_mut(chunk)),
        |(paths, out)| {
            for (path, slot) in paths.iter().zip(out) {
                let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
                let (format, found) = inspect(&bytes, path)?;
                check_size(found, size, path)?;
                *slot = Some(Inspected {
                    bytes,
                    format,
                    size: found,
                });
            }
            Ok(())
        },
    )?;
    let inspected: Vec<Inspected> = inspected
        .into_iter()
        .map(|i| i.expect("the first pass fills every slot or fails"))
        .collect();
    let size = inspected[0].size;
    if let Some((path, other)) = files
        .iter()
        .zip(&inspected)
        .find_map(|(path, i)| (i.size != size).then_some((path, i.size)))
    {
        return Err(image_error(
            path,
            format!(
                "image is {other} (height x width) but {} is {size}",
                files[0].display()
            ),
        ));
    }
    let shape = ImageShape::new(size.height as usize, size.width as usize, 3);
    let mut features = Array2::zeros((files.len(), shape.size()));
    run_parallel(
        features
            .axis_chunks_iter_mut(Axis(0), chunk)
            .zip(files.chunks(chunk).zip(inspected.chunks(chunk))),
        |(mut rows, (paths, inspected))| {
            for ((path, file), mut row) in paths.iter().zip(inspected).zip(rows.rows_mut()) {
                let image = decode_inspected(&file.bytes, file.format, size, path)?;
                row.iter_mut()
                    .zip(scale_u8(image.as_raw()))
                    .for_each(|(dst, v)| *dst = v);
            }
            Ok(())
        },
    )?;
    Ok((features, shape))
}

/// The format (sniffed from the content) and size (from the header) of one image file, after
/// checking that the file is complete.
fn inspect(bytes: &[u8], path: &Path) -> Result<(ImageFormat, ImageSize)> {
    let unreadable = |e: image::ImageError| {
        image_error(path, format!("cannot decode: {}", e.to_string().trim_end()))
    };
    let format = image::guess_format(bytes).map_err(unreadable)?;
    // The size is read without judging it, so that the error below can name it.
    let (width, height, complete, ending) = match format {
        ImageFormat::Jpeg => {
            let (width, height) = JpegDecoder::new(Cursor::new(bytes))
                .map_err(unreadable)?
                .dimensions();
            // Padding never contains 0xD9, so trimming it cannot eat into the marker.
            let end = bytes
                .iter()
                .rposition(|b| !JPEG_PADDING.contains(b))
                .map_or(0, |last| last + 1);
            let complete = bytes[..end].ends_with(&JPEG_EOI);
            (
                width,
                height,
                complete,
                "a JPEG must end with its end-of-image marker FF D9",
            )
        }
        // The PNG signature is followed by the IHDR chunk, width and height first.
        ImageFormat::Png => match bytes.get(12..24) {
            Some([b'I', b'H', b'D', b'R', w0, w1, w2, w3, h0, h1, h2, h3]) => (
                u32::from_be_bytes([*w0, *w1, *w2, *w3]),
                u32::from_be_bytes([*h0, *h1, *h2, *h3]),
                bytes.ends_with(&PNG_IEND),
                "a PNG must end with its IEND chunk",
            ),
            _ => {
                return Err(image_error(
                    path,
                    "cannot decode: a PNG must start with its IHDR chunk".into(),
                ));
            }
        },
        other => {
            return Err(image_error(
                path,
                format!("cannot decode: {other:?} images are not supported (only JPEG and PNG)"),
            ));
        }
    };
    let size = ImageSize { height, width };
    if height == 0 || width == 0 {
        return Err(image_error(
            path,
            format!("image is {size} (height x width): it has no pixels"),
        ));
    }
    // Compared by pixels: height · width · 3 can overflow a u64.
    if u64::from(height) * u64::from(width) > MAX_IMAGE_BYTES / 3 {
        return Err(image_error(
            path,
            format!(
                "image is {size} (height x width): more than the {} MiB one decoded image may \
                 take",
                MAX_IMAGE_BYTES >> 20
            ),
        ));
    }
    if !complete {
        return Err(image_error(
            path,
            format!("truncated: {ending} ({} bytes, none found)", bytes.len()),
        ));
    }
    Ok((format, size))
}

/// Checks that an image of size `found` has the `expected` size, if one is given.
fn check_size(found: ImageSize, expected: Option<ImageSize>, path: &Path) -> Result<()> {
    match expected {
        Some(expected) if expected != found => Err(image_error(
            path,
            format!("image is {found} (height x width), expected {expected}"),
        )),
        _ => Ok(()),
    }
}

/// Decodes the bytes of one image file to RGB8, after checking from its header that it is
/// complete and, if `size` is given, has that size (so nothing is allocated for a wrong one).
///
/// `origin` only names the file in errors. This is the entry point for fuzzing the image
/// folder loader, which applies the same checks and decoding to every file: any input gives
/// an image or a [`DataError`], never a panic, and the decoder may allocate no more than the
/// header's size requires.
pub fn decode_image(bytes: &[u8], origin: &Path, size: Option<ImageSize>) -> Result<RgbImage> {
    let (format, found) = inspect(bytes, origin)?;
    check_size(found, size, origin)?;
    decode_inspected(bytes, format, found, origin)
}

/// Decodes an image that [`inspect`] found to be `format` and `size`; the decoder refuses to
/// produce a larger one.
fn decode_inspected(
    bytes: &[u8],
    format: ImageFormat,
    size: ImageSize,
    path: &Path,
) -> Result<RgbImage> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(size.width);
    limits.max_image_height = Some(size.height);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| image_error(path, format!("cannot decode: {}", e.to_string().trim_end())))?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([seed, x as u8 * 10, y as u8 * 20]));
        img.save(path).unwrap();
    }

    #[test]
    fn loads_classes_in_sorted_order_as_hwc() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("zebra", 2), ("ant", 3)] {
            let d = dir.path().join(class);
            fs::create_dir(&d).unwrap();
            for i in 0..n {
                write_png(&d.join(format!("{i}.png")), 3, 2, i as u8);
            }
        }
        let folder = load_image_folder(dir.path(), "t", None).unwrap();
        assert_eq!(folder.class_names, vec!["ant", "zebra"]);
        assert_eq!(folder.data.labels(), &[0, 0, 0, 1, 1]);
        assert_eq!(folder.data.shape(), ImageShape::new(2, 3, 3));
        // Sample 4 is zebra/1.png; pixel (y=1, x=2) is at HWC offset (1*3+2)*3.
        let features = folder.data.features();
        let row = features.row(4);
        let px = &row.as_slice().unwrap()[15..18];
        assert_eq!(px, &[1.0 / 255.0, 20.0 / 255.0, 20.0 / 255.0]);
    }

    #[test]
    fn mismatched_size_and_stray_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a");
        fs::create_dir(&d).unwrap();
        write_png(&d.join("0.png"), 3, 2, 0);
        write_png(&d.join("1.png"), 2, 2, 0);
        let msg = load_image_folder(dir.path(), "t", None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("1.png") && msg.contains("is 2x2"), "{msg}");
        fs::remove_file(d.join("1.png")).unwrap();
        fs::write(d.join("notes.txt"), "hi").unwrap();
        let msg = load_image_folder(dir.path(), "t", None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("notes.txt"), "{msg}");
    }
}
