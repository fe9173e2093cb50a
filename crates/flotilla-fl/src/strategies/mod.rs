//! The built-in strategies. Each server half is a [`ServerStrategy`](crate::ServerStrategy)
//! speaking [`Work`]; [`LocalWorker`] is the client half of all of them.

mod fedavg;
mod local;
mod ondevice_kd;
mod server_ensemble;

pub use fedavg::{FedAvg, FedAvgConfig};
pub use local::{KdMode, KdPlan, LocalWorker, Work};
pub use ondevice_kd::{KdConfig, OnDeviceKd, OnDeviceKdConfig};
pub use server_ensemble::{ServerDistillation, ServerEnsembleConfig, ServerLogitEnsemble};
