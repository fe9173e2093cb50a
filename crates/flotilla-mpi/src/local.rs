//! The dispatch over threads instead of ranks: the same frames, caches and policy, for
//! tests and for measuring the dispatch without MPI.

use crate::worker::{WorkerJob, serve};
use crate::{Dispatcher, MpiError, ServeStats, Transport};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::sync::Arc;

/// One rank's end of an in-process transport.
struct Channels {
    /// Senders to every rank, by rank.
    to: Vec<Sender<(usize, Vec<u8>)>>,
    inbox: Receiver<(usize, Vec<u8>)>,
    rank: usize,
}

impl Transport for Channels {
    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), MpiError> {
        let peer = self
            .to
            .get(to)
            .ok_or_else(|| MpiError::Protocol(format!("no rank {to}")))?;
        // A rank that has ended drops its inbox; like MPI after a rank's end, the frame is
        // lost, and the caller learns of it by the missing answer.
        let _ = peer.send((self.rank, frame.to_vec()));
        Ok(())
    }

    fn try_receive(&mut self) -> Result<Option<(usize, Vec<u8>)>, MpiError> {
        Ok(self.inbox.try_recv().ok())
    }
}

/// What an in-process worker computes with.
pub type Compute = Arc<dyn Fn(&WorkerJob) -> Result<Vec<u8>, String> + Send + Sync>;

impl Dispatcher {
    /// A dispatcher whose `workers` workers are threads of this process running
    /// `compute`, connected by channels instead of MPI: everything but the transport is
    /// what runs across ranks.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn in_process(workers: usize, compute: Compute) -> Result<Self, MpiError> {
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..=workers).map(|_| unbounded()).unzip();
        let mut inboxes = inboxes.into_iter();
        let root_inbox = inboxes
            .next()
            .ok_or_else(|| MpiError::Protocol("no rank 0".into()))?;
        for (i, inbox) in inboxes.enumerate() {
            let mut end = Channels {
                to: senders.clone(),
                inbox,
                rank: i + 1,
            };
            let compute = Arc::clone(&compute);
            std::thread::Builder::new()
                .name(format!("flotilla-worker-{}", i + 1))
                .spawn(move || serve(&mut end, |job| compute(job)))
                .map_err(MpiError::Thread)?;
        }
        let mut root = Channels {
            to: senders,
            inbox: root_inbox,
            rank: 0,
        };
        let (dispatcher, serve) = Dispatcher::new(workers);
        let thread = std::thread::Builder::new()
            .name("flotilla-dispatch".into())
            .spawn(move || serve.run(&mut root).map(|()| ServeStats::default()))
            .map_err(MpiError::Thread)?;
        Ok(dispatcher.with_thread(thread))
    }
}
