//! Configured federated experiments: a TOML configuration names methods, data, split,
//! models, fleet and schedule; [`Prepared`] loads and checks it; [`Prepared::run`] runs one
//! method with one seed as an actor simulation; [`report`] turns runs into `metrics.csv`,
//! `stages.csv`, `summary.json` and a results table; [`experiment`] runs every method for
//! every seed and writes those files (what `flotilla run` does, apart from the plot).
//!
//! ```no_run
//! use flotilla_experiment::{ConfigSource, ExperimentConfig, Prepared, RunOptions};
//! let source = ConfigSource::resolve("quickstart")?;
//! let config = ExperimentConfig::load(&source, &["rounds=5".to_string()])?;
//! let prepared = Prepared::new(config)?;
//! let outcome = prepared.run(prepared.config.methods[0], 1, RunOptions::default())?;
//! println!("{:?}", outcome.final_accuracy(flotilla_fl::ModelRole::Target));
//! # Ok::<(), flotilla_experiment::ExperimentError>(())
//! ```

pub mod checkpoints;
mod config;
mod datasets;
mod error;
pub mod experiment;
pub mod fleet;
mod fleet_report;
pub mod health;
mod method;
pub mod output;
pub mod policy;
pub mod report;
mod run;
mod setup;
pub mod strategies;
pub mod topology;

pub use config::{
    BUILT_IN, ConfigSource, DataConfig, ExperimentConfig, FedAvgSection, ModelsConfig,
    NetworkRules, SplitKind, TrainingConfig, limits,
};
pub use datasets::{Loaded, Named, Standardize, UnknownDataset};
pub use error::{ConfigError, ExperimentError};
pub use fleet::FleetConfig;
pub use health::Verdict;
pub use method::Method;
pub use output::{OutputDir, OutputError};
pub use run::{
    EdgeBooks, Faults, GroupParticipation, RunCheckpoints, RunOptions, RunOutcome, SERVER,
    SaveCheckpoint, Unanswered,
};
pub use setup::{JobServer, Prepared};
pub use strategies::{Strategies, StrategyContext, StrategyFactory};
