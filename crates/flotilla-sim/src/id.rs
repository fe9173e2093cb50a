//! Identifiers of nodes, jobs and messages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the simulation: its index in registration order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index into per-node tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A compute job: the node that started it and that node's job counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId {
    /// The node running the job.
    pub node: NodeId,
    /// Per-node sequence number, from 0.
    pub seq: u64,
}

/// A message: the sender and that sender's message counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The sending node.
    pub src: NodeId,
    /// Per-sender sequence number, from 0.
    pub seq: u64,
}
