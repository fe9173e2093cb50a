//! Stock rules: outage windows and network partitions.

use super::{Rule, Verdict};
use crate::{DropReason, Envelope, NodeId, SimTime};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// Drops messages from or to `nodes` (every node when `None`) sent during any of the
/// windows, with [`DropReason::Outage`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// Affected nodes; `None` for all.
    pub nodes: Option<BTreeSet<NodeId>>,
    /// `[from, until)` windows.
    pub windows: Vec<(SimTime, SimTime)>,
}

impl Rule for Outage {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        let affected = self
            .nodes
            .as_ref()
            .is_none_or(|n| n.contains(&env.src) || n.contains(&env.dst));
        if affected && self.windows.iter().any(|(a, b)| (*a..*b).contains(&now)) {
            Verdict::Drop(DropReason::Outage)
        } else {
            Verdict::Pass
        }
    }
}

/// Splits the network into groups during `[from, until)`: messages sent between different
/// groups are dropped with [`DropReason::Partition`]; nodes in no group are unaffected.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPartition {
    /// The groups.
    pub groups: Vec<BTreeSet<NodeId>>,
    /// Start.
    pub from: SimTime,
    /// End (exclusive).
    pub until: SimTime,
}

impl Rule for NetworkPartition {
    fn verdict(&mut self, env: &Envelope, now: SimTime, _rng: &mut ChaCha8Rng) -> Verdict {
        if !(self.from..self.until).contains(&now) {
            return Verdict::Pass;
        }
        let group = |n: NodeId| self.groups.iter().position(|g| g.contains(&n));
        match (group(env.src), group(env.dst)) {
            (Some(a), Some(b)) if a != b => Verdict::Drop(DropReason::Partition),
            _ => Verdict::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LinkSpec, NetworkModel, Purpose, Seed, millis, secs};

    /// A one-byte message from `src` to `dst`.
    fn env(src: u32, dst: u32) -> Envelope {
        crate::network::tests::env(src, dst, 1)
    }

    #[test]
    fn outages_and_partitions_drop_in_their_windows_only() {
        let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
        let t = |s| SimTime::ZERO + secs(s);
        model.rule(Outage {
            nodes: Some([NodeId(3)].into()),
            windows: vec![(t(10), t(20)), (t(30), t(40))],
        });
        model.rule(NetworkPartition {
            groups: vec![[NodeId(0)].into(), [NodeId(1)].into()],
            from: t(0),
            until: t(5),
        });
        let mut rng = Seed(1).stream(NodeId(0), Purpose::NETWORK);
        let mut r = |e, now| model.route(&e, now, &mut rng);
        assert_eq!(r(env(3, 0), t(15)), Err(DropReason::Outage));
        assert_eq!(r(env(0, 3), t(35)), Err(DropReason::Outage));
        assert!(r(env(3, 0), t(20)).is_ok(), "windows are half-open");
        assert!(r(env(3, 0), t(25)).is_ok());
        assert!(r(env(2, 0), t(15)).is_ok());
        assert_eq!(r(env(0, 1), t(1)), Err(DropReason::Partition));
        assert_eq!(r(env(1, 0), t(1)), Err(DropReason::Partition));
        assert!(
            r(env(0, 2), t(1)).is_ok(),
            "nodes in no group are unaffected"
        );
        assert!(r(env(0, 1), t(5)).is_ok());
    }

    #[test]
    fn an_outage_of_every_node_drops_everything_in_its_window() {
        let mut outage = Outage {
            nodes: None,
            windows: vec![(SimTime(100), SimTime(200))],
        };
        let mut rng = Seed(1).stream(NodeId(0), Purpose::NETWORK);
        for (now, dropped) in [(99, false), (100, true), (199, true), (200, false)] {
            let v = outage.verdict(&env(5, 6), SimTime(now), &mut rng);
            assert_eq!(v == Verdict::Drop(DropReason::Outage), dropped, "at {now}");
        }
    }
}
