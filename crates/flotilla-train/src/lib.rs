//! Local training and evaluation: the glue between [`flotilla_nn`] networks and
//! [`flotilla_data`] datasets.
//!
//! Centralised training (`flotilla train`) and every federated client use the same pieces:
//! a [`BatchLoader`] gathers (and optionally augments) a mini-batch from a shared dataset by
//! index, a [`Trainer`] takes one SGD step of cross-entropy or distillation (from a frozen
//! [`Teacher`]) on it, and
//! [`evaluate`] measures loss and accuracy in a fixed batch order.

mod batch;
mod error;
mod evaluate;
mod teacher;
mod trainer;

pub use batch::{BatchLoader, input_shape};
pub use error::{Result, TrainError};
pub use evaluate::{evaluate, evaluate_parts};
pub use teacher::{Teacher, TeacherMode};
pub use trainer::{Distillation, LentTrainer, LocalPhase, Trainer};
