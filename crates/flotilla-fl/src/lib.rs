//! Federated learning on the [`flotilla_sim`] core: the messages clients and servers
//! exchange, their nodes, and aggregation.
//!
//! Clients train in compute jobs ([`flotilla_sim::Context::spawn_job`]) whose declared work
//! is the model's training FLOPs, so a device's speed — not a flag — decides when its update
//! arrives; stragglers, dropouts and partial rounds emerge from device profiles and the
//! network model.

mod aggregate;
mod fedavg;
mod message;
mod task;

pub use aggregate::{average_weights, weighted_mean};
pub use fedavg::{FedAvgClient, FedAvgConfig, FedAvgServer, RoundSummary};
pub use message::{ClientUpdate, Evaluation, FlMessage, TrainTask};
pub use task::{LearningTask, TaskError};
