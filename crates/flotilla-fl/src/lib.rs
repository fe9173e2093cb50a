//! Federated learning on the [`flotilla_sim`] core: the protocol clients and servers
//! speak, the strategy traits, the built-in strategies and aggregation.
//!
//! Clients train in compute jobs ([`flotilla_sim::Context::spawn_job`]) whose declared work
//! is the model's training FLOPs, so a device's speed — not a flag — decides when its update
//! arrives; which clients are strong follows from what each device's memory can hold,
//! announced by the client itself. Stragglers, dropouts and partial rounds emerge from
//! device profiles and the network model.

mod aggregate;
mod asynchronous;
mod checkpoint;
mod coordinator;
mod edge;
mod federation;
mod message;
mod offload;
mod participant;
mod server;
mod strategies;
mod strategy;
mod synchronous;
mod task;

pub use aggregate::{average_replies, average_weights, sample_clients, weighted_mean};
pub use asynchronous::{AsyncConfig, AsyncMethod, AsyncRule, Asynchronous, Staleness};
pub use checkpoint::{decode_state, encode_state};
pub use coordinator::Coordinator;
pub use edge::{EdgeAggregator, EdgeConfig, EdgeJobs};
pub use federation::{ClientGroup, Federation, FederationHandle, Parent, Placement, TopologyError};
pub use message::{
    Assignment, AssignmentId, Capabilities, Evaluation, FlMessage, Payload, Reply, ServerWorkDone,
    WorkOrder,
};
pub use offload::{Offload, OffloadJob, OffloadKind, evaluate_job, run_offloaded, train_job};
pub use participant::Participant;
pub use server::{
    CoordinatorConfig, Fate, JobTally, Observer, RoundRecord, Server, ServerLogic, StageRecord,
    Update, UpdateRecord, VERSION_COMMITTED,
};
pub use strategies::{
    FedAvg, FedAvgConfig, KdConfig, KdMode, KdPlan, LocalWorker, OnDeviceKd, OnDeviceKdConfig,
    ServerDistillation, ServerEnsembleConfig, ServerLogitEnsemble, Work,
};
pub use strategy::{
    ClientEnv, ClientStrategy, FlError, Fleet, Selection, ServerComputation, ServerJob,
    ServerStrategy,
};
pub use synchronous::{RoundPolicy, ShortStage, Synchronous};
pub use task::{ClientData, EVALUATION_PARTS, LearningTask, LocalTraining, ModelInfo, ModelRole};
