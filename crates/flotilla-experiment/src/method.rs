//! The methods an experiment compares.

use flotilla_fl::ModelRole;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A method: a built-in strategy with the settings that make it that method, or one a
/// program registered by name ([`crate::Strategies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
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
    /// A strategy a program registered under this name; its result is the target model.
    Custom(CustomMethod),
}

/// The name of a registered method: 1 to 32 characters of `a-z`, `0-9` and `_`, starting
/// with a letter (kept inline so a [`Method`] stays `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomMethod {
    len: u8,
    bytes: [u8; 32],
}

impl CustomMethod {
    /// `name` as a method name, if it is one.
    pub fn new(name: &str) -> Option<Self> {
        let ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| {
            let mut bytes = [0u8; 32];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Self {
                len: name.len() as u8,
                bytes,
            }
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for CustomMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl TryFrom<String> for Method {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if let Some(m) = Method::ALL.into_iter().find(|m| m.name() == name) {
            return Ok(m);
        }
        CustomMethod::new(&name).map(Method::Custom).ok_or_else(|| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown method `{name}`: the built-in ones are {}; a program's own is \
                 1-32 characters of a-z, 0-9 and _",
                names.join(", ")
            )
        })
    }
}

impl From<Method> for String {
    fn from(m: Method) -> Self {
        m.name().to_string()
    }
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
    pub fn name(&self) -> &str {
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
            Method::Custom(name) => name.as_str(),
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
