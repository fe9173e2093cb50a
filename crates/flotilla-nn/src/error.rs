//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong building, running, saving or loading a network.
///
/// None of these are bugs: each names the input that was wrong so the caller can report it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// A model spec string could not be parsed or does not fit the data.
    #[error("model spec `{spec}`: {reason}")]
    Spec {
        /// The spec string as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Where the mismatch was found.
        what: String,
        /// The shape that was required.
        expected: String,
        /// The shape that was supplied.
        got: String,
    },
    /// An optimiser or loss hyper-parameter is out of range.
    #[error("invalid hyper-parameter `{name}` = {value}: {reason}")]
    HyperParameter {
        /// The parameter's name.
        name: &'static str,
        /// Its value, formatted.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Reading or writing a model file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file is malformed or does not match the model.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        reason: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
