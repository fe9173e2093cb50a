//! The crate's error type.

/// A training or evaluation step failed; the wrapped error names the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The network, loss or optimiser rejected its input.
    #[error(transparent)]
    Nn(#[from] flotilla_nn::NnError),
    /// The dataset, batch or transform rejected its input.
    #[error(transparent)]
    Data(#[from] flotilla_data::DataError),
    /// Two batches could not be stacked (their sample shapes differ).
    #[error("cannot stack batches: {0}")]
    Shape(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
