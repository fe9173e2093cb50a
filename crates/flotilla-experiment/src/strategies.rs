//! Strategies a program registers by name, so its TOML can select them in `methods` like
//! the built-in ones.
//!
//! ```ignore
//! let mut strategies = Strategies::default();
//! strategies.register("fedavg_weighted", |ctx| {
//!     let fedavg = FedAvg::new(ctx.task, FedAvgConfig { weighted: true, .. })?;
//!     Ok(Box::new(Synchronous::new(fedavg, ctx.policy.clone())))
//! })?;
//! let prepared = Prepared::with_strategies(config, strategies)?; // methods = ["fedavg_weighted"]
//! ```

use crate::{ConfigError, ExperimentConfig, Method};
use flotilla_fl::{FlError, LearningTask, RoundPolicy, ServerLogic, Work};
use flotilla_nn::LrSchedule;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a registered strategy is built from, for one run.
#[derive(Debug)]
pub struct StrategyContext<'a> {
    /// The run's task (its seed, models and data).
    pub task: &'a Arc<LearningTask>,
    /// The whole configuration (a strategy may read any key).
    pub config: &'a ExperimentConfig,
    /// The learning rate per round, from `training`.
    pub schedule: &'a LrSchedule,
    /// The round policy from `[round_policy]`, for a synchronous strategy.
    pub policy: &'a RoundPolicy,
    /// The run's seed.
    pub seed: u64,
}

/// Builds a registered strategy's server side for one run. Its clients are the built-in
/// `LocalWorker`, so it speaks the built-in [`Work`].
pub type StrategyFactory = Box<
    dyn Fn(&StrategyContext<'_>) -> Result<Box<dyn ServerLogic<Work = Work>>, FlError>
        + Send
        + Sync,
>;

/// Strategies registered by name.
#[derive(Default)]
pub struct Strategies {
    factories: BTreeMap<String, StrategyFactory>,
}

impl fmt::Debug for Strategies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl Strategies {
    /// Registers `factory` as method `name` (1-32 characters of `a-z`, `0-9`, `_`; not a
    /// built-in name, not registered before).
    pub fn register(
        &mut self,
        name: &str,
        factory: impl Fn(&StrategyContext<'_>) -> Result<Box<dyn ServerLogic<Work = Work>>, FlError>
        + Send
        + Sync
        + 'static,
    ) -> Result<(), ConfigError> {
        let refuse = |reason: &str| Err(ConfigError::new("strategy name", name, reason));
        match Method::try_from(name.to_string()) {
            Ok(Method::Custom(_)) if self.factories.contains_key(name) => {
                refuse("is registered already")
            }
            Ok(Method::Custom(_)) => {
                self.factories.insert(name.to_string(), Box::new(factory));
                Ok(())
            }
            Ok(_) => refuse("is a built-in method"),
            Err(reason) => refuse(&reason),
        }
    }

    /// The factory of `name`.
    pub fn get(&self, name: &str) -> Option<&StrategyFactory> {
        self.factories.get(name)
    }

    /// Checks that every method `config` names is built in or registered.
    pub fn check(&self, config: &ExperimentConfig) -> Result<(), ConfigError> {
        for (i, m) in config.methods.iter().enumerate() {
            if let Method::Custom(name) = m
                && !self.factories.contains_key(name.as_str())
            {
                let registered: Vec<&str> = self.factories.keys().map(String::as_str).collect();
                let built_in: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                return Err(ConfigError::new(
                    format!("methods[{i}]"),
                    name.as_str(),
                    format!(
                        "not a method: built in are {}; registered are {}",
                        built_in.join(", "),
                        if registered.is_empty() {
                            "none (a program registers its own with Strategies::register)"
                                .to_string()
                        } else {
                            registered.join(", ")
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}
