//! Seeded, portable random streams: one per (node, purpose).
//!
//! Every random draw in a run comes from a ChaCha8 stream derived from the master [`Seed`],
//! the node it concerns and the purpose of the draw, so adding a node, or a node drawing
//! more for one purpose, never shifts another stream. A [`StreamCursor`] stores just a
//! stream's position (16 bytes), so a million idle clients hold no generator state; the
//! generator is rebuilt at the cursor when a draw is needed.

use crate::NodeId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The master seed of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Seed(pub u64);

/// What a stream's draws are for; each purpose of each node is an independent stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purpose(pub u8);

impl Purpose {
    /// Draws a node's own handler makes through [`Context::rng`](crate::Context::rng).
    pub const NODE: Purpose = Purpose(0);
    /// Per-job compute-time jitter of the node's device.
    pub const COMPUTE: Purpose = Purpose(1);
    /// Whether and when the device drops out of a job.
    pub const DROPOUT: Purpose = Purpose(2);
    /// The device's availability process.
    pub const AVAILABILITY: Purpose = Purpose(3);
    /// Network draws (latency, jitter, loss) for messages the node sends.
    pub const NETWORK: Purpose = Purpose(4);
    /// Data partitioning and other set-up draws.
    pub const SETUP: Purpose = Purpose(5);
    /// Local training inside jobs (shuffling, augmentation).
    pub const TRAINING: Purpose = Purpose(6);
    /// Initial model weights.
    pub const INIT: Purpose = Purpose(7);
    /// Generating a synthetic fleet ([`SyntheticTrace`](crate::SyntheticTrace)): one
    /// device's speed, evening and online sessions.
    pub const FLEET: Purpose = Purpose(8);
    /// First purpose free for user code.
    pub const USER: Purpose = Purpose(64);
}

impl Seed {
    /// The generator of `(node, purpose)`, at its start.
    pub fn stream(self, node: NodeId, purpose: Purpose) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.0);
        rng.set_stream((u64::from(node.0) << 8) | u64::from(purpose.0));
        rng
    }

    /// Sub-stream `index` of `(node, purpose)`: the stream from word `index · 2⁴⁰` on, so
    /// that, e.g., round `r` of a node's training draws from a window no other round
    /// touches, whatever thread runs it and in whatever order.
    pub fn substream(self, node: NodeId, purpose: Purpose, index: u64) -> ChaCha8Rng {
        let mut rng = self.stream(node, purpose);
        rng.set_word_pos(u128::from(index) << 40);
        rng
    }

    /// A cursor at the start of `(node, purpose)`.
    pub fn cursor(self, node: NodeId, purpose: Purpose) -> StreamCursor {
        StreamCursor {
            seed: self,
            node,
            purpose,
            word_pos: 0,
        }
    }
}

/// A saved position in one stream: rebuild the generator with [`StreamCursor::rng`], draw,
/// then [`StreamCursor::save`] it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    seed: Seed,
    node: NodeId,
    purpose: Purpose,
    word_pos: u128,
}

impl StreamCursor {
    /// The generator at this cursor's position.
    pub fn rng(&self) -> ChaCha8Rng {
        let mut rng = self.seed.stream(self.node, self.purpose);
        rng.set_word_pos(self.word_pos);
        rng
    }

    /// Records how far `rng` (obtained from [`StreamCursor::rng`]) has drawn.
    pub fn save(&mut self, rng: &ChaCha8Rng) {
        self.word_pos = rng.get_word_pos();
    }

    /// Whether both cursors are on the same stream (seed, node and purpose), wherever they
    /// stand in it: what a restored checkpoint checks against the run it resumes.
    pub fn same_stream(&self, other: &StreamCursor) -> bool {
        (self.seed, self.node, self.purpose) == (other.seed, other.node, other.purpose)
    }

    /// Runs `f` with the generator and saves its position afterwards.
    pub fn with<T>(&mut self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        let mut rng = self.rng();
        let out = f(&mut rng);
        self.save(&rng);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn cursor_resumes_exactly_where_it_stopped() {
        let seed = Seed(9);
        let mut straight = seed.stream(NodeId(3), Purpose::COMPUTE);
        let expected: Vec<u64> = (0..10).map(|_| straight.random()).collect();
        let mut cursor = seed.cursor(NodeId(3), Purpose::COMPUTE);
        let mut got: Vec<u64> = cursor.with(|r| (0..4).map(|_| r.random()).collect());
        got.extend(cursor.with(|r| (0..6).map(|_| r.random::<u64>()).collect::<Vec<_>>()));
        assert_eq!(got, expected);
    }

    #[test]
    fn substreams_are_disjoint_windows_of_one_stream() {
        let seed = Seed(5);
        let a: u64 = seed.substream(NodeId(2), Purpose::TRAINING, 0).random();
        let b: u64 = seed.substream(NodeId(2), Purpose::TRAINING, 1).random();
        let start: u64 = seed.stream(NodeId(2), Purpose::TRAINING).random();
        assert_eq!(a, start);
        assert_ne!(a, b);
        assert_eq!(
            b,
            seed.substream(NodeId(2), Purpose::TRAINING, 1)
                .random::<u64>()
        );
    }

    #[test]
    fn streams_differ_by_node_and_purpose() {
        let seed = Seed(1);
        let a: u64 = seed.stream(NodeId(0), Purpose::NODE).random();
        let b: u64 = seed.stream(NodeId(1), Purpose::NODE).random();
        let c: u64 = seed.stream(NodeId(0), Purpose::NETWORK).random();
        let d: u64 = Seed(2).stream(NodeId(0), Purpose::NODE).random();
        assert!(a != b && a != c && a != d && b != c);
        assert_eq!(a, seed.stream(NodeId(0), Purpose::NODE).random::<u64>());
    }
}
