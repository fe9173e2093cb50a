//! The event queue: one total order over (time, insertion sequence).

use crate::SimTime;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A min-queue of items keyed by `(time, seq)`, where `seq` is the insertion count: items of
/// equal time come out in the order they were pushed (FIFO). Because the runtime pushes
/// only while applying commands in canonical order, that order is deterministic.
#[derive(Debug)]
pub struct EventQueue<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry<T> {
    time: SimTime,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item` at `time`, after every item already queued at that time.
    pub fn push(&mut self, time: SimTime, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { time, seq, item }));
    }

    /// The earliest time queued.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| e.time)
    }

    /// Removes and returns every item queued at the earliest time, in FIFO order.
    pub fn pop_instant(&mut self) -> Option<(SimTime, Vec<T>)> {
        let time = self.peek_time()?;
        let mut items = Vec::new();
        while self.peek_time() == Some(time) {
            let Reverse(e) = self.heap.pop().expect("peeked");
            items.push(e.item);
        }
        Some((time, items))
    }

    /// Every queued item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|Reverse(e)| &e.item)
    }

    /// Every queued item with its time and sequence number, in pop order: with
    /// [`EventQueue::next_seq`], what [`EventQueue::from_entries`] rebuilds the queue from.
    pub fn entries(&self) -> Vec<(SimTime, u64, &T)> {
        let mut entries: Vec<_> = self
            .heap
            .iter()
            .map(|Reverse(e)| (e.time, e.seq, &e.item))
            .collect();
        entries.sort_by_key(|&(time, seq, _)| (time, seq));
        entries
    }

    /// The sequence number the next push will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The queue that [`EventQueue::entries`] and [`EventQueue::next_seq`] describe. Fails
    /// (naming the entry) if a sequence number repeats or is not below `next_seq`: such a
    /// queue could not have been built by pushes.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (SimTime, u64, T)>,
        next_seq: u64,
    ) -> Result<Self, String> {
        let mut heap = BinaryHeap::new();
        let mut seen = std::collections::BTreeSet::new();
        for (time, seq, item) in entries {
            if seq >= next_seq || !seen.insert(seq) {
                return Err(format!(
                    "queue entry at {time} has sequence number {seq}: repeated or not below \
                     the next, {next_seq}"
                ));
            }
            heap.push(Reverse(Entry { time, seq, item }));
        }
        Ok(Self { heap, next_seq })
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pops_in_time_then_fifo_order(times in proptest::collection::vec(0u64..20, 0..200)) {
            let mut q = EventQueue::new();
            for (i, &t) in times.iter().enumerate() {
                q.push(SimTime(t), i);
            }
            let mut expected: Vec<(u64, usize)> =
                times.iter().enumerate().map(|(i, &t)| (t, i)).collect();
            expected.sort();
            let mut got = Vec::new();
            let mut last = None;
            while let Some((t, items)) = q.pop_instant() {
                prop_assert!(last < Some(t), "instants strictly increase");
                last = Some(t);
                got.extend(items.into_iter().map(|i| (t.0, i)));
            }
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn rebuilt_queue_pops_like_the_original(
            times in proptest::collection::vec(0u64..20, 0..100),
            popped in 0usize..10,
            later in proptest::collection::vec(0u64..40, 0..20),
        ) {
            let mut a = EventQueue::new();
            for (i, &t) in times.iter().enumerate() {
                a.push(SimTime(t), i);
            }
            for _ in 0..popped {
                a.pop_instant();
            }
            let entries: Vec<_> = a.entries().into_iter().map(|(t, s, &i)| (t, s, i)).collect();
            let mut b = EventQueue::from_entries(entries, a.next_seq()).expect("valid entries");
            for (j, &t) in later.iter().enumerate() {
                a.push(SimTime(t), 1000 + j);
                b.push(SimTime(t), 1000 + j);
            }
            loop {
                let (x, y) = (a.pop_instant(), b.pop_instant());
                prop_assert_eq!(&x, &y);
                if x.is_none() {
                    break;
                }
            }
        }
    }
}
