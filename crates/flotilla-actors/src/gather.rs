//! Gathering one reply from each of many actors with a single wake-up.
//!
//! `join_all` over `Addr::send` futures keeps a future, a waker and a ready-queue entry per
//! request, and its cost grew faster than the number of requests: an instant in which
//! 50,000 node actors answer (a fleet registering, the hosts given back) took seconds.
//! Here each request carries a [`Slot`]; a reply is one lock, one write and one atomic
//! decrement, and the waiter is woken once, when the last slot is filled or dropped.

use futures::channel::oneshot;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

struct Shared<T> {
    replies: Mutex<Vec<Option<T>>>,
    outstanding: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl<T> Shared<T> {
    /// Counts one slot as answered; the last one wakes the waiter.
    fn settle(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake();
        }
    }

    fn wake(&self) {
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            // The waiter may have stopped waiting (the run was abandoned).
            let _ = done.send(());
        }
    }
}

/// Where one actor puts its reply. Dropped unfilled (the actor was gone, its message was
/// dropped with it) it still counts as answered, with no reply.
pub(crate) struct Slot<T> {
    shared: Arc<Shared<T>>,
    index: usize,
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("index", &self.index).finish()
    }
}

impl<T> Slot<T> {
    /// Puts the reply in place.
    pub(crate) fn fill(self, reply: T) {
        self.shared
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[self.index] = Some(reply);
        // `Drop` settles.
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        self.shared.settle();
    }
}

/// The waiting side: the replies of `n` slots, in slot order.
pub(crate) struct Gather<T> {
    shared: Arc<Shared<T>>,
    done: oneshot::Receiver<()>,
}

impl<T> Gather<T> {
    /// A gather over `n` slots, and the slots.
    pub(crate) fn new(n: usize) -> (Self, Vec<Slot<T>>) {
        let (tx, done) = oneshot::channel();
        let shared = Arc::new(Shared {
            replies: Mutex::new((0..n).map(|_| None).collect()),
            outstanding: AtomicUsize::new(n),
            done: Mutex::new(Some(tx)),
        });
        if n == 0 {
            shared.wake();
        }
        let slots = (0..n)
            .map(|index| Slot {
                shared: Arc::clone(&shared),
                index,
            })
            .collect();
        (Self { shared, done }, slots)
    }

    /// Waits until every slot is filled or dropped; `None` where a slot was dropped
    /// unfilled.
    pub(crate) async fn replies(self) -> Vec<Option<T>> {
        // Every sender lives in `shared`, which `self` holds: the channel cannot be
        // cancelled before the last slot settles it.
        let _ = self.done.await;
        std::mem::take(
            &mut *self
                .shared
                .replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn replies_come_back_in_slot_order_whatever_order_they_are_filled_in() {
        let (gather, slots) = Gather::new(64);
        let handles: Vec<_> = slots
            .into_iter()
            .rev()
            .map(|slot| {
                std::thread::spawn(move || {
                    let i = slot.index;
                    slot.fill(i * 10);
                })
            })
            .collect();
        let replies = block_on(gather.replies());
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(replies, (0..64).map(|i| Some(i * 10)).collect::<Vec<_>>());
    }

    #[test]
    fn a_slot_dropped_unfilled_is_an_absent_reply_not_a_hang() {
        let (gather, mut slots) = Gather::new(3);
        let last = slots.pop().unwrap();
        drop(slots.remove(0));
        slots.pop().unwrap().fill("one");
        drop(last);
        assert_eq!(block_on(gather.replies()), vec![None, Some("one"), None]);
    }

    #[test]
    fn no_slots_is_ready_at_once() {
        let (gather, slots) = Gather::<u8>::new(0);
        assert!(slots.is_empty());
        assert!(block_on(gather.replies()).is_empty());
    }
}
