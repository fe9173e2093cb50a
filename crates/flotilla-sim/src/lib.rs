//! The deterministic discrete-event core of Flotilla.
//!
//! A run is a set of [`Node`] state machines (clients, servers, edge aggregators, user
//! types) exchanging messages through a network model, in virtual time. Nodes never see
//! threads or clocks: each event is handled with a [`Context`] that gives the current
//! [`SimTime`], the node's own random stream and an outbox.
//!
//! # Ordering contract
//!
//! (Completed in `world.rs`; see there.)

mod device;
mod envelope;
mod id;
mod network;
mod node;
mod rng;
mod time;
mod trace;
mod wire;

pub use envelope::{DropReason, Envelope};
pub use id::{JobId, MessageId, NodeId};
pub use node::{Command, Context, Event, Job, Node, NodeError};
pub use rng::{Purpose, Seed, StreamCursor};
pub use time::{SimDuration, SimTime, hours, micros, millis, mins, secs};
