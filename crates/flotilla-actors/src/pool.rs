//! A pool of worker threads for compute jobs.

use crossbeam_channel::{Receiver, Sender, unbounded};
use flotilla_sim::{Job, JobId, JobRunner, NodeError, run_job};
use std::collections::BTreeMap;
use std::thread::JoinHandle;

type Done<M> = (JobId, Result<M, NodeError>);

/// Runs jobs on `n` threads as soon as they are submitted, so many clients train at once in
/// real time; [`JobRunner::take`] waits for the one asked for. Results are keyed by job id,
/// so the order in which threads finish never matters.
pub struct PoolRunner<M> {
    jobs: Option<Sender<(JobId, Job<M>)>>,
    done: Receiver<Done<M>>,
    ready: BTreeMap<JobId, Result<M, NodeError>>,
    discarded: std::collections::BTreeSet<JobId>,
    threads: Vec<JoinHandle<()>>,
}

impl<M> std::fmt::Debug for PoolRunner<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRunner")
            .field("threads", &self.threads.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl<M: Send + 'static> PoolRunner<M> {
    /// A pool of `threads` workers (at least one).
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = unbounded::<(JobId, Job<M>)>();
        let (finished, done) = unbounded::<Done<M>>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let (queue, finished) = (queue.clone(), finished.clone());
                std::thread::Builder::new()
                    .name(format!("flotilla-job-{i}"))
                    .spawn(move || {
                        for (id, job) in queue {
                            if finished.send((id, run_job(job))).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("the OS can start a worker thread")
            })
            .collect();
        Self {
            jobs: Some(jobs),
            done,
            ready: BTreeMap::new(),
            discarded: Default::default(),
            threads,
        }
    }
}

impl<M: Send + 'static> JobRunner<M> for PoolRunner<M> {
    fn submit(&mut self, id: JobId, job: Job<M>) {
        if let Some(jobs) = &self.jobs {
            // Workers only stop when the sender is dropped, so this cannot fail.
            let _ = jobs.send((id, job));
        }
    }

    fn take(&mut self, id: JobId) -> Result<M, NodeError> {
        loop {
            if let Some(result) = self.ready.remove(&id) {
                return result;
            }
            match self.done.recv() {
                Ok((done, _)) if self.discarded.remove(&done) => {}
                Ok((done, result)) => {
                    self.ready.insert(done, result);
                }
                Err(_) => return Err(NodeError::new("the worker pool stopped")),
            }
        }
    }

    fn discard(&mut self, id: JobId) {
        if self.ready.remove(&id).is_none() {
            self.discarded.insert(id);
        }
    }
}

impl<M> Drop for PoolRunner<M> {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
