//! The deterministic discrete-event core of Flotilla.
//!
//! A run is a set of [`Node`] state machines (clients, servers, edge aggregators, user
//! types) exchanging messages through a network model, in virtual time. Nodes never see
//! threads or clocks: each event is handled with a [`Context`] that gives the current
//! [`SimTime`], the node's own random stream and an outbox.
//!
//! # Ordering contract
//!
//! The same seed gives the same run, bit for bit, whatever executes it (the sequential
//! [`Simulation::run`] or the actix runtime at any thread count), because every order is
//! fixed by the following rules and none by scheduling:
//!
//! 1. **One total order of events.** Everything that will happen is queued under the key
//!    `(time, seq)`, where `time` is virtual time in integer microseconds ([`SimTime`])
//!    and `seq` counts insertions. Time advances only by popping the queue, so it never
//!    goes back.
//! 2. **Instants.** All items queued for the earliest time are popped together and become
//!    per-node batches in FIFO (`seq`) order. Each node handles its batch in that order.
//!    Items an instant creates for the same time (a zero delay) form the next instant at
//!    that time, after the current one.
//! 3. **Canonical merge.** After an instant's handlers ran — sequentially or in parallel —
//!    their commands are applied in node-id order and, within a node, in issue order.
//!    Sends, timers and jobs get their `seq` then, so insertion order is canonical.
//! 4. **Streams, not a shared RNG.** Every draw comes from a ChaCha8 stream of its own
//!    `(node, purpose)` ([`Purpose`]): a node's handler draws from its `NODE` stream; job
//!    times, dropouts and availability from the device's streams; network delays and loss
//!    from the *sender's* `NETWORK` stream. No draw depends on another node's activity.
//! 5. **Jobs finish when their device says.** A job's virtual duration is drawn when it
//!    starts, from the device profile and its stream alone, so its completion is queued at
//!    once; the CPU work may run on any thread at any time before the completion is popped.
//! 6. **No hidden order.** No `HashMap` iteration, no wall clock, no thread-completion
//!    order reaches the queue, the trace or a node.
//!
//! The trace ([`TraceEvent`]) records every send, delivery, drop (with its reason), job
//! start, completion and loss, timer, user record and node failure with its virtual time; its
//! running hash ([`TraceHash`]) fingerprints the whole run.
//!
//! # Conservation
//!
//! Every message sent is, at any stop, delivered, dropped with a [`DropReason`], or still
//! in flight. A message handed to a node counts as delivered even if the node fails while
//! handling it or an earlier event of the same instant; the failure itself is traced and
//! the node isolated. A job is done, lost with a reason, or still running.

mod checkpoint;
mod device;
mod envelope;
mod host;
mod id;
mod jobs;
mod network;
mod node;
mod queue;
mod rng;
mod router;
mod simulation;
mod time;
mod trace;
pub mod wire;
mod world;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use device::{
    Availability, AvailabilityState, DeviceError, DeviceProfile, DeviceTrace, PRESET_NAMES,
    ProfileConfig, SyntheticTrace, TraceDevice,
};
pub use envelope::{DropReason, Envelope};
pub use host::{Handled, Inbound, NodeHost, Outgoing};
pub use id::{JobId, MessageId, NodeId};
pub use jobs::{InlineRunner, JobRunner, count_helper_time, run_job, take_helper_time};
pub use network::{
    Latency, LinkConfig, LinkSpec, NameOr, NetworkConfig, NetworkError, NetworkModel,
    NetworkPartition, NodeLinks, Outage, OutageConfig, PartitionConfig, Rule, Verdict,
    install_rules, name_or_table,
};
pub use node::{Command, Context, Event, Job, Node, NodeError};
pub use queue::EventQueue;
pub use rng::{Purpose, Seed, StreamCursor};
pub use router::Router;
pub use simulation::{Simulation, SimulationBuilder};
pub use time::{SimDuration, SimTime, hours, micros, millis, mins, secs};
pub use trace::{
    Counters, Recorder, TraceError, TraceEvent, TraceHash, TraceRecord, TraceSummary, read_jsonl,
};
pub use world::{Batch, NodeFailure, RunReport, StopAt, World};
