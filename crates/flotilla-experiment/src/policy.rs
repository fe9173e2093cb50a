//! How the server waits and aggregates: `[round_policy]` for the synchronous methods,
//! `[async]` for `fedasync`, `fedbuff` and `ondevice_kd_async`.

use crate::ConfigError;
use crate::config::limits;
use flotilla_fl::{RoundPolicy, ShortStage, Staleness};
use flotilla_sim::SimDuration;
use serde::{Deserialize, Serialize};

/// `[round_policy]`: when a synchronous stage closes and what it aggregates. Absent keys
/// keep the classic barrier: wait for every client, at most `training.stage_timeout_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoundPolicyConfig {
    /// Close each stage this many virtual seconds after it opened (absent:
    /// `training.stage_timeout_s`).
    pub deadline_s: Option<f64>,
    /// Over-selection `f ≥ 1`: asked for `k` clients, assign `ceil(f·k)` and aggregate the
    /// first `k` replies; the rest count as cancelled.
    pub over_selection: f64,
    /// Fewest updates a stage must aggregate (0: no minimum).
    pub min_updates: usize,
    /// A stage short of `min_updates`: `retry` (fresh clients, up to `max_retries` times,
    /// then skip) or `skip`.
    pub short_stage: ShortStage,
    /// Retries of a short stage.
    pub max_retries: u16,
}

impl Default for RoundPolicyConfig {
    fn default() -> Self {
        Self {
            deadline_s: None,
            over_selection: 1.0,
            min_updates: 0,
            short_stage: ShortStage::Retry,
            max_retries: 2,
        }
    }
}

/// The most an over-selection may multiply a stage's clients by.
const MAX_OVER_SELECTION: f64 = 100.0;

/// A duration key in seconds, checked: `> 0` and at most [`limits::DURATION_S`].
pub(crate) fn duration(key: &str, secs: f64) -> Result<SimDuration, ConfigError> {
    if !(secs > 0.0 && secs <= limits::DURATION_S) {
        return Err(ConfigError::new(
            key,
            secs,
            format!("must be > 0 and at most {:e} s", limits::DURATION_S),
        ));
    }
    SimDuration::from_secs_f64(secs)
        .ok_or_else(|| ConfigError::new(key, secs, "not a duration the virtual clock can count"))
}

impl RoundPolicyConfig {
    /// The policy, with `default_deadline_s` (the stage timeout, or what a hierarchy
    /// needs) as the deadline when none is given.
    pub fn policy(&self, default_deadline_s: f64) -> Result<RoundPolicy, ConfigError> {
        let deadline = match self.deadline_s {
            Some(d) => duration("round_policy.deadline_s", d)?,
            None => duration("training.stage_timeout_s", default_deadline_s)?,
        };
        if !(1.0..=MAX_OVER_SELECTION).contains(&self.over_selection) {
            return Err(ConfigError::new(
                "round_policy.over_selection",
                self.over_selection,
                format!("must be in [1, {MAX_OVER_SELECTION}]"),
            ));
        }
        if self.min_updates > limits::CLIENTS {
            return Err(ConfigError::new(
                "round_policy.min_updates",
                self.min_updates,
                format!("must be at most {} (the largest fleet)", limits::CLIENTS),
            ));
        }
        Ok(RoundPolicy {
            deadline: Some(deadline),
            over_selection: self.over_selection,
            min_updates: self.min_updates,
            short_stage: self.short_stage,
            max_retries: self.max_retries,
        })
    }
}

/// `[async]`: the asynchronous methods' server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncSection {
    /// Clients training at once (absent: `training.clients_per_round`).
    pub concurrency: Option<usize>,
    /// FedBuff: updates buffered per server step `K`.
    pub buffer: usize,
    /// FedBuff: server learning rate `η`.
    pub server_lr: f64,
    /// FedAsync: mixing weight `α`.
    pub alpha: f64,
    /// Discount of stale updates: `{kind = "constant"}`, `{kind = "polynomial", a = 0.5}`
    /// (FedBuff's, the default) or `{kind = "hinge", a = 10, b = 4}`.
    pub staleness: Staleness,
    /// Give a job up after this many virtual seconds so its slot goes to another client
    /// (absent: `training.stage_timeout_s`).
    pub job_timeout_s: Option<f64>,
}

impl Default for AsyncSection {
    fn default() -> Self {
        Self {
            concurrency: None,
            buffer: 10,
            server_lr: 1.0,
            alpha: 0.6,
            staleness: Staleness::Polynomial { a: 0.5 },
            job_timeout_s: None,
        }
    }
}

impl AsyncSection {
    /// Checks every key, naming it.
    pub fn validate(&self, clients: usize) -> Result<(), ConfigError> {
        if let Some(c) = self.concurrency
            && !(1..=clients.max(1)).contains(&c)
        {
            return Err(ConfigError::new(
                "async.concurrency",
                c,
                format!("must be in 1..={} (the fleet's clients)", clients.max(1)),
            ));
        }
        if !(1..=limits::CLIENTS).contains(&self.buffer) {
            return Err(ConfigError::new(
                "async.buffer",
                self.buffer,
                format!("must be in 1..={}", limits::CLIENTS),
            ));
        }
        if !(self.server_lr.is_finite() && self.server_lr > 0.0 && self.server_lr <= 100.0) {
            return Err(ConfigError::new(
                "async.server_lr",
                self.server_lr,
                "must be > 0 and at most 100",
            ));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(ConfigError::new(
                "async.alpha",
                self.alpha,
                "must be in (0, 1]",
            ));
        }
        self.staleness.validate().map_err(|e| {
            ConfigError::new(
                "async.staleness",
                format!("{:?}", self.staleness),
                e.to_string(),
            )
        })?;
        if let Some(t) = self.job_timeout_s {
            duration("async.job_timeout_s", t)?;
        }
        Ok(())
    }
}
