//! `[topology]`: who answers whom. Absent, every client answers the server (a star); with
//! edges, clients answer edge aggregators, which run local rounds over them and answer the
//! server (client → edge → cloud).

use crate::ConfigError;
use crate::config::limits;
use crate::fleet::resolve_link;
use crate::policy::duration;
use flotilla_sim::{LinkConfig, LinkSpec};
use serde::{Deserialize, Serialize};

/// `[topology]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// Edge aggregators, the clients split among them in client order (0: a star).
    pub edges: usize,
    /// One edge per fleet group instead (its clients answer it); excludes `edges`.
    pub edge_per_group: bool,
    /// Rounds an edge runs over its clients per assignment from the server.
    pub local_rounds: u32,
    /// An edge's local round closes this long after it opened (absent:
    /// `training.stage_timeout_s`). The server's stage deadline, absent
    /// `round_policy.deadline_s`, is then `(local_rounds + 1) ·` this: the edges' rounds
    /// and one more for the transfers.
    pub edge_deadline_s: Option<f64>,
    /// Clients an edge samples per local round (absent: all its clients able to do the
    /// work).
    pub clients_per_edge: Option<usize>,
    /// The edges' link to the server (preset or table; default `ethernet`).
    pub edge_link: LinkConfig,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            edges: 0,
            edge_per_group: false,
            local_rounds: 1,
            edge_deadline_s: None,
            clients_per_edge: None,
            edge_link: LinkConfig::Preset("ethernet".into()),
        }
    }
}

/// The most local rounds an edge may run per assignment.
const MAX_LOCAL_ROUNDS: u32 = 1_000;

impl TopologyConfig {
    /// Whether clients answer edges.
    pub fn hierarchical(&self) -> bool {
        self.edges > 0 || self.edge_per_group
    }

    /// The edge each of `clients` answers, given the fleet's groups (each a range of
    /// clients); `None` for a star.
    pub fn edge_of(&self, clients: usize, groups: &[std::ops::Range<usize>]) -> Option<Vec<usize>> {
        if self.edge_per_group {
            return Some(
                (0..clients)
                    .map(|c| groups.iter().position(|g| g.contains(&c)).unwrap_or(0))
                    .collect(),
            );
        }
        (self.edges > 0).then(|| (0..clients).map(|c| c * self.edges / clients).collect())
    }

    /// The edges' link.
    pub fn link(&self) -> Result<LinkSpec, ConfigError> {
        resolve_link(&self.edge_link, "topology.edge_link")
    }

    /// Checks every key against a fleet of `clients`, naming the key at fault.
    pub fn validate(&self, clients: usize) -> Result<(), ConfigError> {
        if self.edges > 0 && self.edge_per_group {
            return Err(ConfigError::new(
                "topology.edges",
                self.edges,
                "give either edges or edge_per_group, not both",
            ));
        }
        if self.edges > clients.min(limits::CLIENTS) {
            return Err(ConfigError::new(
                "topology.edges",
                self.edges,
                format!("at most one edge per client ({clients})"),
            ));
        }
        if !(1..=MAX_LOCAL_ROUNDS).contains(&self.local_rounds) {
            return Err(ConfigError::new(
                "topology.local_rounds",
                self.local_rounds,
                format!("must be in 1..={MAX_LOCAL_ROUNDS}"),
            ));
        }
        if let Some(d) = self.edge_deadline_s {
            duration("topology.edge_deadline_s", d)?;
        }
        if self.clients_per_edge == Some(0) {
            return Err(ConfigError::new(
                "topology.clients_per_edge",
                0,
                "must be at least 1",
            ));
        }
        self.link()?;
        Ok(())
    }
}
