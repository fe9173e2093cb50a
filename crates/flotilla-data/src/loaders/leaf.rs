//! LEAF JSON datasets (FEMNIST), naturally partitioned by writer.
//!
//! A LEAF directory holds `*.json` files (other files are ignored), each
//! `{"users": [...], "num_samples": [...], "user_data": {user: {"x": [[...]], "y": [...]}}}`.
//! Files are read in sorted name order and writers in the order of each file's `users` array;
//! a writer's samples are contiguous. Every rule of the format is checked, and a violation names
//! the file and the field path: `num_samples` has one entry per user, every user has a
//! `user_data` entry and vice versa, no writer appears twice (in `users` or as a `user_data`
//! key, within a file or across files), `x` and `y` have `num_samples` entries, each `x` row
//! has `shape.size()` values, every pixel value is a finite number in `[0, 1]` (LEAF's scale:
//! a file on the 0–255 scale is rejected, not rescaled), each `y` is in `0..classes`, and the
//! dataset has at least one sample.

use std::collections::{BTreeMap, btree_map::Entry};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::dataset::{Dataset, ImageShape};
use crate::error::{DataError, Location, Result};

/// Shape, classes and pixel convention of a LEAF dataset. Pixel values as stored must be finite
/// and in `[0, 1]`, whatever `invert` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafFormat {
    /// Geometry of one `x` row.
    pub shape: ImageShape,
    /// Number of classes; every `y` must be below it.
    pub classes: usize,
    /// Replace every value `v` by `1 - v`.
    pub invert: bool,
}

impl LeafFormat {
    /// FEMNIST: 28×28×1, 62 classes (digits, `A`–`Z`, `a`–`z`). FEMNIST images have a white
    /// background (1.0) and dark ink; `invert` makes them MNIST-like (background 0).
    pub fn femnist(invert: bool) -> Self {
        Self {
            shape: ImageShape::new(28, 28, 1),
            classes: 62,
            invert,
        }
    }
}

/// A LEAF dataset: all samples in one [`Dataset`] plus the writer of each.
#[derive(Debug, Clone)]
pub struct LeafDataset {
    /// All samples of all writers.
    pub data: Dataset,
    /// Writer ids, in load order.
    pub writers: Vec<String>,
    /// `by_writer[w]` is the (contiguous, ascending) sample indices of `writers[w]`.
    pub by_writer: Vec<Vec<usize>>,
}

/// One LEAF JSON file as stored.
#[derive(Debug, Deserialize)]
struct LeafFile {
    users: Vec<String>,
    num_samples: Vec<usize>,
    /// The `user_data` entries in file order, repeated keys included.
    #[serde(deserialize_with = "map_entries")]
    user_data: Vec<(String, UserData)>,
}

/// Deserializes a JSON object as its list of entries, so that a repeated key is seen (a map
/// type would silently keep one of the values).
fn map_entries<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<(String, UserData)>, D::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, UserData)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping writers to their samples")
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_map(Entries)
}

/// One writer's samples as stored.
#[derive(Debug, Deserialize)]
struct UserData {
    x: Vec<Vec<f32>>,
    y: Vec<i64>,
}

/// Loads FEMNIST's `root/train` and `root/test` directories (named `femnist-train`,
/// `femnist-test`).
pub fn load_femnist_dir(root: &Path, invert: bool) -> Result<(LeafDataset, LeafDataset)> {
    let format = LeafFormat::femnist(invert);
    Ok((
        load_leaf_dir(&root.join("train"), format, "femnist-train")?,
        load_leaf_dir(&root.join("test"), format, "femnist-test")?,
    ))
}

/// Loads every `*.json` file of `dir` (see the module docs for order and checks).
pub fn load_leaf_dir(dir: &Path, format: LeafFormat, name: &str) -> Result<LeafDataset> {
    let mut builder = Builder::new(format)?;
    for path in json_files(dir)? {
        let bytes = fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        builder.add_file(&bytes, &path)?;
    }
    builder.finish(dir, name)
}

/// Parses the bytes of one LEAF JSON file into a dataset, with the checks of
/// [`load_leaf_dir`].
///
/// `origin` only names the input in errors. This is the entry point for fuzzing the LEAF
/// parser: any input gives a [`LeafDataset`] or a [`DataError`], never a panic.
pub fn parse_leaf(
    bytes: &[u8],
    origin: &Path,
    format: LeafFormat,
    name: &str,
) -> Result<LeafDataset> {
    let mut builder = Builder::new(format)?;
    builder.add_file(bytes, origin)?;
    builder.finish(origin, name)
}

/// The `*.json` files of `dir`, sorted by name; at least one.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(DataError::Layout {
            path: dir.to_path_buf(),
            reason: "no .json files".into(),
        });
    }
    files.sort();
    Ok(files)
}

/// Accumulates validated samples across files.
struct Builder {
    format: LeafFormat,
    pixels: Vec<f32>,
    labels: Vec<u32>,
    writers: Vec<String>,
    by_writer: Vec<Vec<usize>>,
    /// Writer → file it came from, to reject duplicates.
    seen: BTreeMap<String, PathBuf>,
}

impl Builder {
    fn new(format: LeafFormat) -> Result<Self> {
        if format.shape.checked_size().is_none() {
            return Err(DataError::param(
                "format.shape",
                format.shape,
                "more values per sample than fit in memory",
            ));
        }
        Ok(Self {
            format,
            pixels: Vec::new(),
            labels: Vec::new(),
            writers: Vec::new(),
            by_writer: Vec::new(),
            seen: BTreeMap::new(),
        })
    }

    /// The dataset of every sample added; `origin` (the directory or file read) is named if
    /// there is none.
    fn finish(self, origin: &Path, name: &str) -> Result<LeafDataset> {
        if self.labels.is_empty() {
            return Err(DataError::Empty {
                path: origin.to_path_buf(),
            });
        }
        let shape = self.format.shape;
        let features = Array2::from_shape_vec((self.labels.len(), shape.size()), self.pixels)
            .expect("every sample pushes exactly one row of checked length");
        let data = Dataset::new(name, features, self.labels, shape, self.format.classes)?;
        Ok(LeafDataset {
            data,
            writers: self.writers,
            by_writer: self.by_writer,
        })
    }

    /// Adds the writers of one file, `bytes` read from `path`.
    fn add_file(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        let file = parse(bytes, path)?;
        let schema = |field: String, reason: String| DataError::Schema {
            path: path.to_path_buf(),
            field,
            reason,
        };
        if file.num_samples.len() != file.users.len() {
            return Err(schema(
                "num_samples".into(),
                format!(
                    "has {} entries but `users` has {}",
                    file.num_samples.len(),
                    file.users.len()
                ),
            ));
        }
        let mut user_data = BTreeMap::new();
        for (user, data) in file.user_data {
            match user_data.entry(user) {
                Entry::Occupied(e) => {
                    return Err(schema(
                        format!("user_data.{}", e.key()),
                        format!("writer `{}` appears twice", e.key()),
                    ));
                }
                Entry::Vacant(e) => e.insert(data),
            };
        }
        for (i, (user, &count)) in file.users.iter().zip(&file.num_samples).enumerate() {
            match self.seen.entry(user.clone()) {
                Entry::Occupied(e) => {
                    return Err(schema(
                        format!("users[{i}]"),
                        format!("writer `{user}` already listed in {}", e.get().display()),
                    ));
                }
                Entry::Vacant(e) => e.insert(path.to_path_buf()),
            };
            let data = user_data.remove(user).ok_or_else(|| {
                schema(
                    format!("users[{i}]"),
                    format!("writer `{user}` has no entry in `user_data`"),
                )
            })?;
            self.add_user(path, user, count, &data)?;
        }
        if let Some(extra) = user_data.keys().next() {
            return Err(schema(
                format!("user_data.{extra}"),
                "writer not listed in `users`".into(),
            ));
        }
        Ok(())
    }

    fn add_user(&mut self, path: &Path, user: &str, count: usize, data: &UserData) -> Result<()> {
        let schema = |field: String, reason: String| DataError::Schema {
            path: path.to_path_buf(),
            field: format!("user_data.{user}.{field}"),
            reason,
        };
        for (field, len) in [("x", data.x.len()), ("y", data.y.len())] {
            if len != count {
                return Err(schema(
                    field.into(),
                    format!("has {len} samples but `num_samples` says {count}"),
                ));
            }
        }
        let size = self.format.shape.size();
        let start = self.labels.len();
        for (j, (x, &y)) in data.x.iter().zip(&data.y).enumerate() {
            if x.len() != size {
                return Err(schema(
                    format!("x[{j}]"),
                    format!("has {} values, expected {size}", x.len()),
                ));
            }
            if let Some((k, v)) = x
                .iter()
                .enumerate()
                .find(|&(_, v)| !(0.0..=1.0).contains(v))
            {
                return Err(schema(
                    format!("x[{j}][{k}]"),
                    format!(
                        "writer `{user}` sample {j}: pixel value {v:?} is not a finite number \
                         in [0, 1]"
                    ),
                ));
            }
            let label = u32::try_from(y)
                .ok()
                .filter(|&l| (l as usize) < self.format.classes)
                .ok_or_else(|| DataError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    location: Location::Field(format!("user_data.{user}.y[{j}]")),
                    label: y,
                    classes: self.format.classes,
                })?;
            if self.format.invert {
                self.pixels.extend(x.iter().map(|v| 1.0 - v));
            } else {
                self.pixels.extend_from_slice(x);
            }
            self.labels.push(label);
        }
        self.writers.push(user.to_owned());
        self.by_writer.push((start..self.labels.len()).collect());
        Ok(())
    }
}

/// Parses one file, mapping parser errors to [`DataError::Json`] with line and column.
fn parse(bytes: &[u8], path: &Path) -> Result<LeafFile> {
    super::parse_json(bytes, path)
}
