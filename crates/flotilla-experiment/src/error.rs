//! The crate's error types.

use flotilla_data::DataError;
use flotilla_fl::FlError;

/// A configuration mistake: which key, which value, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}` = {value}: {reason}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `data.alpha`.
    pub key: String,
    /// The offending value as written (or `(missing)`).
    pub value: String,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    /// An error about `key` holding `value`.
    pub fn new(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Why an experiment could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExperimentError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration text is not valid TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where the text came from (a path, or `built-in <name>`).
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A dataset could not be loaded or split.
    #[error("dataset {dataset}")]
    Data {
        /// The dataset name.
        dataset: String,
        /// The cause, naming the file and offset or field (the error's source).
        source: DataError,
    },
    /// Setting up a model or a strategy failed.
    #[error(transparent)]
    Fl(#[from] FlError),
    /// The actor runtime failed (not a node failure: the simulation is lost).
    #[error(transparent)]
    Runtime(#[from] flotilla_actors::ActorsError),
    /// A run ended without finishing its rounds.
    #[error("{method} (seed {seed}) did not finish: {reason}")]
    Incomplete {
        /// The method.
        method: String,
        /// The seed.
        seed: u64,
        /// What the simulation reported.
        reason: String,
    },
    /// A node of the simulation failed (its handler or one of its jobs returned an error or
    /// panicked): the run stopped and has no result.
    #[error(
        "{method} (seed {seed}): node {node} failed {round}, at {time_s:.3} s virtual: {reason}"
    )]
    NodeFailed {
        /// The method.
        method: String,
        /// The seed.
        seed: u64,
        /// The node's name (`server`, `client-7`).
        node: String,
        /// Where in the run it failed (`in round 3`).
        round: String,
        /// Virtual time of the failure \[s\].
        time_s: f64,
        /// What the node reported.
        reason: String,
    },
    /// A checkpoint could not be taken, or does not fit the run it should resume.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] flotilla_sim::CheckpointError),
    /// The output folder cannot be used.
    #[error(transparent)]
    Output(#[from] crate::OutputError),
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl ExperimentError {
    /// Whether the user can fix this by changing the configuration or the data (the
    /// command line exits with code 2 for these).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ExperimentError::Config(_)
                | ExperimentError::Syntax { .. }
                | ExperimentError::Data { .. }
                | ExperimentError::Output(_)
                | ExperimentError::Checkpoint(_)
        )
    }
}
