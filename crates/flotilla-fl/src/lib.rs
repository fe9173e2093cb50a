//! Federated learning on the [`flotilla_sim`] core: the protocol clients and servers
//! speak, the strategy traits, the built-in strategies and aggregation.
//!
//! Clients train in compute jobs ([`flotilla_sim::Context::spawn_job`]) whose declared work
//! is the model's training FLOPs, so a device's speed — not a flag — decides when its update
//! arrives; which clients are strong follows from what each device's memory can hold,
//! announced by the client itself. Stragglers, dropouts and partial rounds emerge from
//! device profiles and the network model.

mod aggregate;
mod message;
mod protocol;
mod strategies;
mod strategy;
mod task;

pub use aggregate::{average_replies, average_weights, sample_clients, weighted_mean};
pub use message::{
    Assignment, Capabilities, Evaluation, FlMessage, Payload, Reply, ServerWorkDone,
};
pub use protocol::{
    Coordinator, CoordinatorConfig, Observer, Participant, RoundRecord, StageRecord,
};
pub use strategies::{
    FedAvg, FedAvgConfig, KdConfig, KdMode, KdPlan, LocalWorker, OnDeviceKd, OnDeviceKdConfig,
    ServerDistillation, ServerEnsembleConfig, ServerLogitEnsemble, Work,
};
pub use strategy::{ClientEnv, ClientStrategy, FlError, Fleet, ServerJob, ServerStrategy};
pub use task::{ClientData, LearningTask, LocalTraining, ModelInfo, ModelRole};
