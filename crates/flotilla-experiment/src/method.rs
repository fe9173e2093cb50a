//! The methods an experiment compares.

use flotilla_fl::ModelRole;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A method: a built-in strategy with the settings that make it that method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The method: FedAvg of `ws` over sampled clients, then strong clients train `wl` and
    /// distil the fresh `ws` into it on their own unlabeled data.
    OndeviceKd,
    /// FedAvg of `wl` over the strong clients' labeled data only.
    StrongOnly,
    /// FedAvg of `ws` over sampled clients (every device can train it).
    WeakOnly,
    /// FedDF-style: unlabeled data moved to the server, which distils the ensemble of all
    /// received client models into `wl`.
    ServerLogitEnsemble,
    /// Plain FedAvg of one model (`fedavg.model`) over sampled clients able to train it.
    Fedavg,
    /// FedAvg of `wl` over sampled clients with every device given the memory to train
    /// it: the upper bound that ignores device limits.
    FedavgAllLarge,
    /// FedAsync (Xie et al., 2019) of `fedavg.model`: `async.concurrency` clients train at
    /// once, each reply is mixed in as it arrives (`async.alpha`, `async.staleness`).
    Fedasync,
    /// FedBuff (Nguyen et al., 2022) of `fedavg.model`: `async.concurrency` clients train
    /// at once, every `async.buffer` replies make one server step.
    Fedbuff,
    /// On-device KD run asynchronously with FedBuff: a buffer per model; strong clients
    /// train `ws` and distil the global `ws` they received into `wl` in one job.
    OndeviceKdAsync,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 9] = [
        Method::OndeviceKd,
        Method::StrongOnly,
        Method::WeakOnly,
        Method::ServerLogitEnsemble,
        Method::Fedavg,
        Method::FedavgAllLarge,
        Method::Fedasync,
        Method::Fedbuff,
        Method::OndeviceKdAsync,
    ];

    /// The name used in configs and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Method::OndeviceKd => "ondevice_kd",
            Method::StrongOnly => "strong_only",
            Method::WeakOnly => "weak_only",
            Method::ServerLogitEnsemble => "server_logit_ensemble",
            Method::Fedavg => "fedavg",
            Method::FedavgAllLarge => "fedavg_all_large",
            Method::Fedasync => "fedasync",
            Method::Fedbuff => "fedbuff",
            Method::OndeviceKdAsync => "ondevice_kd_async",
        }
    }

    /// Whether the method needs clients whose devices can train the target.
    pub fn needs_strong_clients(self) -> bool {
        matches!(
            self,
            Method::OndeviceKd
                | Method::StrongOnly
                | Method::ServerLogitEnsemble
                | Method::OndeviceKdAsync
        )
    }

    /// Whether the method runs asynchronously (`[async]`) rather than in rounds
    /// (`[round_policy]`); its `rounds` count server updates.
    pub fn is_asynchronous(self) -> bool {
        matches!(
            self,
            Method::Fedasync | Method::Fedbuff | Method::OndeviceKdAsync
        )
    }

    /// The model whose accuracy is the method's result (`fedavg_model` for `fedavg`).
    pub fn reported_model(self, fedavg_model: ModelRole) -> ModelRole {
        match self {
            Method::WeakOnly => ModelRole::Auxiliary,
            Method::Fedavg | Method::Fedasync | Method::Fedbuff => fedavg_model,
            _ => ModelRole::Target,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
