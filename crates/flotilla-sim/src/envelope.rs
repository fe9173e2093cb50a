//! What the network sees of a message, and why messages get lost.

use crate::{MessageId, NodeId, SimTime};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The metadata of one message in flight: network rules decide on this, never on the
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id: sender and sender's sequence number.
    pub id: MessageId,
    /// Sender.
    pub src: NodeId,
    /// Destination.
    pub dst: NodeId,
    /// When it was sent.
    pub sent_at: SimTime,
    /// Encoded size \[bytes\]; drives the bandwidth model.
    pub bytes: u64,
}

/// Why a message was not delivered or a job never finished. Every message sent is
/// delivered, dropped with one of these, or still in flight when the run stops.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// Random loss on the link.
    Loss,
    /// The link was in an outage window.
    Outage,
    /// Sender and receiver were in different network partitions.
    Partition,
    /// The receiver's device was unavailable (offline) at arrival.
    Offline,
    /// The device dropped out in the middle of a job; the job's result is lost.
    Dropout,
    /// The receiver had failed (its handler returned an error or panicked) earlier.
    NodeFailed,
    /// The bytes did not decode into a message.
    Malformed,
    /// The destination does not exist.
    UnknownNode,
    /// A user rule's own reason.
    Custom(String),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Loss => f.write_str("loss"),
            DropReason::Outage => f.write_str("outage"),
            DropReason::Partition => f.write_str("partition"),
            DropReason::Offline => f.write_str("offline"),
            DropReason::Dropout => f.write_str("dropout"),
            DropReason::NodeFailed => f.write_str("node_failed"),
            DropReason::Malformed => f.write_str("malformed"),
            DropReason::UnknownNode => f.write_str("unknown_node"),
            DropReason::Custom(s) => write!(f, "custom:{s}"),
        }
    }
}
