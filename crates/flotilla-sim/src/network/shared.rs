//! Shared links: send-time reservation of link capacity, first come first reserved (the
//! discipline is described on [`NetworkModel`](super::NetworkModel)).

use crate::{NodeId, SimTime};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, btree_map};
use std::iter::Peekable;
use std::ops::Bound::{Excluded, Unbounded};

/// A link is full at a moment when less than this fraction of its capacity is free there:
/// float residue of summed rates is not capacity.
const FULL: f64 = 1e-9;

/// A transmission ends in a stretch when the bytes left fit in it within this relative
/// margin, so float residue does not add a microsecond-long tail.
const FIT: f64 = 1e-12;

/// A capacity-tracked resource: a node's uplink or downlink (a full-duplex access link is two
/// resources), or the pair link from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum Resource {
    /// A node's uplink.
    Up(NodeId),
    /// A node's downlink.
    Down(NodeId),
    /// The pair link `(src, dst)`.
    Pair(NodeId, NodeId),
}

/// One stretch of a transmission: `rate` bytes/s over `[from, until)` µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Piece {
    pub(super) from: u64,
    pub(super) until: u64,
    pub(super) rate: f64,
}

/// A message's transmission through its shared links.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Transmission {
    /// From the send to the (unrounded) end of the transmission \[ms\]; infinite if it
    /// would not end within the clock's range.
    pub(super) ms: f64,
    /// What it reserved on each of its shared links, in time order (empty if it never ends).
    pub(super) pieces: Vec<Piece>,
}

impl Transmission {
    /// A transmission that would not end within the clock's range.
    const NEVER: Transmission = Transmission {
        ms: f64::INFINITY,
        pieces: Vec::new(),
    };
}

/// The rate reserved on one resource: a step function of virtual time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Timeline {
    /// Step start \[µs\] → reserved rate \[bytes/s\] from there to the next step; the last
    /// step's rate is zero.
    steps: BTreeMap<u64, f64>,
    /// The resource is full from the pruned start up to here: new transmissions start no
    /// earlier, without scanning the full prefix.
    saturated_until: u64,
}

impl Timeline {
    /// The rate reserved at `t`.
    fn rate_at(&self, t: u64) -> f64 {
        rate_at(&self.steps, t)
    }

    /// Makes `t` a step start.
    fn split(&mut self, t: u64) {
        if !self.steps.contains_key(&t) {
            self.steps.insert(t, self.rate_at(t));
        }
    }

    /// Adds the pieces' rates over their spans, then moves the saturation mark past the full
    /// steps that follow it (from `horizon` at the earliest: the past does not matter).
    fn reserve(&mut self, pieces: &[Piece], capacity: f64, horizon: u64) {
        for piece in pieces {
            self.split(piece.from);
            self.split(piece.until);
            for (_, rate) in self.steps.range_mut(piece.from..piece.until) {
                *rate += piece.rate;
            }
        }
        let mut mark = self.saturated_until.max(horizon);
        let mut rate = self.rate_at(mark);
        for (&start, &next_rate) in self.steps.range((Excluded(mark), Unbounded)) {
            if free(capacity, rate) > 0.0 {
                break;
            }
            (mark, rate) = (start, next_rate);
        }
        self.saturated_until = mark;
    }

    /// Forgets the steps that ended by `t`. Returns whether nothing is reserved from `t` on
    /// (the last step's rate is always zero: no piece adds to the step its end starts).
    fn prune(&mut self, t: u64) -> bool {
        while let Some((&first, &rate)) = self.steps.first_key_value() {
            if first >= t {
                break;
            }
            self.steps.pop_first();
            match self.steps.first_key_value() {
                Some((&second, _)) if second <= t => {}
                _ => {
                    self.steps.insert(t, rate);
                    break;
                }
            }
        }
        self.saturated_until = self.saturated_until.max(t);
        self.steps.len() <= 1
    }
}

/// The rate reserved at `t` in `steps`.
fn rate_at(steps: &BTreeMap<u64, f64>, t: u64) -> f64 {
    steps.range(..=t).next_back().map_or(0.0, |(_, &r)| r)
}

/// What `capacity` leaves free beside `reserved`: zero when full.
fn free(capacity: f64, reserved: f64) -> f64 {
    let spare = capacity - reserved;
    if spare <= capacity * FULL { 0.0 } else { spare }
}

/// No reservations.
static NONE: BTreeMap<u64, f64> = BTreeMap::new();

/// Walks one resource's steps forward in time.
struct Cursor<'a> {
    capacity: f64,
    /// The rate reserved at the current time.
    reserved: f64,
    /// The steps after the current time.
    steps: Peekable<btree_map::Range<'a, u64, f64>>,
}

impl<'a> Cursor<'a> {
    fn new(steps: &'a BTreeMap<u64, f64>, capacity: f64, t: u64) -> Self {
        Self {
            capacity,
            reserved: rate_at(steps, t),
            steps: steps.range((Excluded(t), Unbounded)).peekable(),
        }
    }

    /// The next step start, `u64::MAX` if none.
    fn next(&mut self) -> u64 {
        self.steps.peek().map_or(u64::MAX, |&(&k, _)| k)
    }

    /// Moves to `t`, no earlier than the current time.
    fn move_to(&mut self, t: u64) {
        while let Some((_, &rate)) = self.steps.next_if(|&(&k, _)| k <= t) {
            self.reserved = rate;
        }
    }
}

/// Every shared resource's reservations, pruned as time advances.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Congestion {
    links: BTreeMap<Resource, Timeline>,
    /// When each reservation ends, and on which resource: pruning is driven by these, so
    /// memory follows the transfers in flight.
    ends: BinaryHeap<Reverse<(u64, Resource)>>,
    /// The latest send time seen \[µs\]; everything before it is forgotten.
    horizon: u64,
}

impl Congestion {
    /// How many resources have reservations now.
    pub(super) fn tracked(&self) -> usize {
        self.links.len()
    }

    /// Moves the horizon to `now` (if later) and forgets reservations that ended by then.
    pub(super) fn advance(&mut self, now: SimTime) {
        self.horizon = self.horizon.max(now.as_micros());
        while let Some(&Reverse((end, resource))) = self.ends.peek() {
            if end > self.horizon {
                break;
            }
            self.ends.pop();
            if let Some(timeline) = self.links.get_mut(&resource)
                && timeline.prune(self.horizon)
            {
                self.links.remove(&resource);
            }
        }
    }

    /// Transmits `bytes` sent at `now` through `shared` (resource, capacity in bytes/s)
    /// links, never faster than `limit` (the path's untracked links) and greedily at the
    /// largest rate that the earlier reservations leave free, and reserves that rate on
    /// each of `shared`. A send earlier than the horizon starts at the horizon. Call
    /// [`Congestion::advance`] first, or the reservations that ended stay in memory.
    pub(super) fn transmit(
        &mut self,
        now: SimTime,
        bytes: u64,
        limit: f64,
        shared: &[(Resource, f64)],
    ) -> Transmission {
        let now = now.as_micros();
        let mut t = shared
            .iter()
            .filter_map(|(r, _)| self.links.get(r).map(|l| l.saturated_until))
            .fold(now.max(self.horizon), u64::max);
        let mut cursors: Vec<Cursor> = shared
            .iter()
            .map(|(r, capacity)| {
                let steps = self.links.get(r).map_or(&NONE, |l| &l.steps);
                Cursor::new(steps, *capacity, t)
            })
            .collect();
        let mut pieces = Vec::new();
        // The current stretch at a constant free rate (zero: waiting): its start, its rate and
        // the bytes left at its start. Computing from the stretch's start keeps a transfer
        // that never slows down exactly `bytes / rate`, however many steps it crosses.
        let (mut from, mut rate, mut left) = (t, 0.0, bytes as f64);
        let (ms, end) = loop {
            let now_free = cursors
                .iter()
                .map(|c| free(c.capacity, c.reserved))
                .fold(limit, f64::min);
            let next = cursors
                .iter_mut()
                .map(Cursor::next)
                .min()
                .unwrap_or(u64::MAX);
            if now_free != rate {
                if rate > 0.0 {
                    pieces.push(Piece {
                        from,
                        until: t,
                        rate,
                    });
                    left -= rate * (t - from) as f64 / 1e6;
                }
                (from, rate) = (t, now_free);
            }
            let span_s = next.saturating_sub(from) as f64 / 1e6;
            if rate > 0.0 && (next == u64::MAX || left <= rate * span_s * (1.0 + FIT)) {
                let us = (left / rate * 1e6).ceil();
                if us >= (u64::MAX - from) as f64 {
                    return Transmission::NEVER;
                }
                // Whole microseconds: the last one sends what is left.
                let until = (from + us as u64).clamp(t + 1, next);
                let last = until - 1;
                if last > from {
                    pieces.push(Piece {
                        from,
                        until: last,
                        rate,
                    });
                }
                let rest = left - rate * (last - from) as f64 / 1e6;
                if rest > 0.0 {
                    pieces.push(Piece {
                        from: last,
                        until,
                        rate: rest * 1e6,
                    });
                }
                // With no wait and no contention this is `bytes / rate · 1e3`, exactly the
                // unshared model's transmission time.
                break ((from - now) as f64 / 1e3 + left / rate * 1e3, until);
            }
            if next == u64::MAX {
                return Transmission::NEVER;
            }
            t = next;
            for c in &mut cursors {
                c.move_to(t);
            }
        };
        drop(cursors);
        for &(resource, capacity) in shared {
            let timeline = self.links.entry(resource).or_default();
            timeline.reserve(&pieces, capacity, self.horizon);
            self.ends.push(Reverse((end, resource)));
        }
        Transmission { ms, pieces }
    }
}
