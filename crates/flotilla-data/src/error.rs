//! The crate's error type.
//!
//! Every loader error names the file it was reading and, where it makes sense, the byte offset
//! (binary formats) or the field path (JSON) at which the problem was found. Loaders never
//! panic on bad input and never skip a bad sample silently.

use std::fmt;
use std::path::PathBuf;

use crate::dataset::ImageShape;

/// Where in a file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A fixed-size record of a binary file: its index and the byte offset of the bad value.
    Record {
        /// Index of the record (sample) in the file.
        index: usize,
        /// Byte offset of the bad value, counted from the start of the (decompressed) file.
        offset: u64,
    },
    /// A JSON field path such as `user_data.f3137_47.y[3]`.
    Field(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record { index, offset } => write!(f, "sample {index} (byte offset {offset})"),
            Self::Field(field) => write!(f, "field `{field}`"),
        }
    }
}

/// Everything that can go wrong loading, building or partitioning a dataset.
///
/// None of these are bugs: each names the input that was wrong so the caller can report it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Reading a file or directory failed (including a corrupt gzip stream).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A binary file ended before the data its header (or record size) promised.
    #[error(
        "{path}: truncated: data ends at byte offset {offset} but {needed} more bytes are needed"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Byte offset at which the data ran out (in the decompressed stream for gzip files).
        offset: u64,
        /// How many more bytes the format requires.
        needed: u64,
    },
    /// A file's length (after decompression, for gzip files) differs from what its header
    /// declares. Decompression stops at the declared length: the excess is counted, not kept.
    #[error("{path}: the header declares {declared} bytes in all but the data holds {actual}")]
    Length {
        /// The file.
        path: PathBuf,
        /// Header plus data length that the header declares.
        declared: u64,
        /// Header plus data length actually present.
        actual: u64,
    },
    /// A binary file does not start with the expected magic number.
    #[error("{path}: bad magic number {found:#010x}, expected {expected}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        found: u32,
        /// A description of what was expected.
        expected: String,
    },
    /// A binary header is inconsistent with the file or with a companion file.
    #[error("{path}: header at byte offset {offset}: {reason}")]
    Header {
        /// The file.
        path: PathBuf,
        /// Byte offset of the offending header field (or of the unexpected data).
        offset: u64,
        /// What is inconsistent.
        reason: String,
    },
    /// A JSON file is not syntactically valid or does not have the expected types.
    #[error("{path}: JSON error at line {line}, column {column}: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line reported by the parser.
        line: usize,
        /// 1-based column reported by the parser.
        column: usize,
        /// The parser's message.
        reason: String,
    },
    /// A JSON file parses but violates the format's rules.
    #[error("{path}: field `{field}`: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Path of the offending field, e.g. `user_data.f3137_47.x[3]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image file could not be decoded or does not match the others.
    #[error("{path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A label is not smaller than the number of classes (or is negative).
    #[error("{path}: {location}: label {label} out of range for {classes} classes")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Where the label is.
        location: Location,
        /// The label as read.
        label: i64,
        /// The number of classes.
        classes: usize,
    },
    /// A file or directory holds no samples: a train or test split needs at least one.
    #[error("{path}: no samples (a train or test split needs at least one)")]
    Empty {
        /// The file or directory.
        path: PathBuf,
    },
    /// The train and test splits have samples of different shapes.
    #[error(
        "train and test samples differ in shape (height x width x channels): \
         {train} holds {train_shape}, {test} holds {test_shape}"
    )]
    SplitShapes {
        /// The file (or directory) of the training split.
        train: PathBuf,
        /// The shape of a training sample.
        train_shape: ImageShape,
        /// The file (or directory) of the test split.
        test: PathBuf,
        /// The shape of a test sample.
        test_shape: ImageShape,
    },
    /// An array of a NumPy `.npz` archive is missing, malformed, of an unsupported type or
    /// shape, or holds a bad value.
    #[error("{path}: array `{array}`: {reason}")]
    Npz {
        /// The `.npz` file.
        path: PathBuf,
        /// The array's name in the archive, e.g. `x_train`.
        array: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required file or directory does not exist.
    #[error("{path}: not found: {reason}")]
    NotFound {
        /// The path that was looked for.
        path: PathBuf,
        /// What it was needed for, or how to provide it.
        reason: String,
    },
    /// A directory does not have the expected layout (no class folders, unexpected entries,
    /// train and test classes that differ, ...).
    #[error("{path}: {reason}")]
    Layout {
        /// The directory or entry.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// In-memory data passed to [`crate::Dataset::new`] is inconsistent.
    #[error("dataset `{name}`: {reason}")]
    InvalidDataset {
        /// The dataset's name.
        name: String,
        /// What is inconsistent.
        reason: String,
    },
    /// A function argument is out of range (partitioner, transform, batching, generator).
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Its value, formatted.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A partitioner could not satisfy its constraints.
    #[error("partition failed: {reason}")]
    Partition {
        /// Why no partition was produced.
        reason: String,
    },
}

impl DataError {
    /// Builds an [`DataError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`DataError::InvalidParameter`].
    pub(crate) fn param(
        name: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DataError>;
