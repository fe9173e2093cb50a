//! Image-folder datasets: `dir/<class name>/<image file>`.
//!
//! Class names are the sub-folder names in sorted order and the label of an image is the index
//! of its folder in that order. Files are taken in sorted name order within each class. Every
//! entry must be a class folder and every file in a class folder must be a `.jpg`, `.jpeg` or
//! `.png` image (any case): anything else is an error, never silently skipped. Images are
//! converted to RGB8, must all have the size of the first one, and are scaled to `[0, 1]`.
//!
//! Decoding runs on scoped threads, each filling a contiguous block of rows, so the result is
//! the same whatever the number of threads.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use image::RgbImage;
use ndarray::{Array2, ArrayViewMut2, Axis};

use super::scale_u8;
use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Result};

/// Upper bound on decoding threads.
const MAX_THREADS: usize = 16;

/// File extensions accepted as images (compared case-insensitively).
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A dataset loaded from an image folder, with its class names.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images (`h × w × 3`, HWC, `[0, 1]`) and their labels.
    pub data: Dataset,
    /// Class names; label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
}

/// Loads every image of `dir/<class>/*` (see the module docs for the rules).
pub fn load_image_folder(dir: &Path, name: &str) -> Result<ImageFolder> {
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
    let (features, shape) = decode_all(&files)?;
    let data = Dataset::new(name, features, labels, shape, class_names.len())?;
    Ok(ImageFolder { data, class_names })
}

fn layout(path: &Path, reason: &str) -> DataError {
    DataError::Layout {
        path: path.to_path_buf(),
        reason: reason.into(),
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
        Err(DataError::Image {
            path: path.to_path_buf(),
            reason: "not an image file (expected .jpg, .jpeg or .png)".into(),
        })
    }
}

/// Decodes all `files` (non-empty) into rows of one array; the first image fixes the shape.
fn decode_all(files: &[PathBuf]) -> Result<(Array2<f32>, ImageShape)> {
    let first = decode_rgb(&files[0])?;
    let shape = ImageShape::new(first.height() as usize, first.width() as usize, 3);
    let mut features = Array2::zeros((files.len(), shape.size()));
    let threads = thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let chunk = files.len().div_ceil(threads);
    let first_path = &files[0];
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = features
            .axis_chunks_iter_mut(Axis(0), chunk)
            .zip(files.chunks(chunk))
            .map(|(rows, paths)| scope.spawn(move || decode_into(paths, rows, shape, first_path)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    // Chunks are in file order, so the first error reported is the first bad file.
    results.into_iter().collect::<Result<()>>()?;
    Ok((features, shape))
}

/// Decodes `paths` into consecutive `rows`, checking each image has `shape`.
fn decode_into(
    paths: &[PathBuf],
    mut rows: ArrayViewMut2<'_, f32>,
    shape: ImageShape,
    first_path: &Path,
) -> Result<()> {
    for (path, mut row) in paths.iter().zip(rows.rows_mut()) {
        let image = decode_rgb(path)?;
        if (image.height() as usize, image.width() as usize) != (shape.height, shape.width) {
            return Err(DataError::Image {
                path: path.clone(),
                reason: format!(
                    "image is {}x{} (height x width) but {} is {}x{}",
                    image.height(),
                    image.width(),
                    first_path.display(),
                    shape.height,
                    shape.width
                ),
            });
        }
        row.iter_mut()
            .zip(scale_u8(image.as_raw()))
            .for_each(|(dst, v)| *dst = v);
    }
    Ok(())
}

/// Decodes one image (format sniffed from its content) and converts it to RGB8.
fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let image = image::load_from_memory(&bytes).map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        reason: format!("cannot decode: {}", e.to_string().trim_end()),
    })?;
    Ok(image.to_rgb8())
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
        let folder = load_image_folder(dir.path(), "t").unwrap();
        assert_eq!(folder.class_names, vec!["ant", "zebra"]);
        assert_eq!(folder.data.labels(), &[0, 0, 0, 1, 1]);
        assert_eq!(folder.data.shape(), ImageShape::new(2, 3, 3));
        // Sample 4 is zebra/1.png; pixel (y=1, x=2) is at HWC offset (1*3+2)*3.
        let row = folder.data.features().row(4);
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
        let msg = load_image_folder(dir.path(), "t").unwrap_err().to_string();
        assert!(msg.contains("1.png") && msg.contains("is 2x2"), "{msg}");
        fs::remove_file(d.join("1.png")).unwrap();
        fs::write(d.join("notes.txt"), "hi").unwrap();
        let msg = load_image_folder(dir.path(), "t").unwrap_err().to_string();
        assert!(msg.contains("notes.txt"), "{msg}");
    }
}
