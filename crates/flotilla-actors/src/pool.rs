//! A pool of worker threads for compute jobs.

use crossbeam_channel::{Receiver, Sender, unbounded};
use flotilla_sim::{Job, JobId, JobRunner, NodeError, SimTime, run_job, take_helper_time};
use std::cmp::{Ordering as Order, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A finished job: its id and what it computed.
type Done<M> = (JobId, Result<M, NodeError>);

/// A job waiting for a worker, ordered by when the clock will ask for it.
struct Queued<M> {
    /// The job's virtual completion time: the clock takes outputs in this order.
    due: SimTime,
    /// Submission count, which orders jobs due at one instant as the clock takes them.
    order: u64,
    id: JobId,
    job: Job<M>,
}

impl<M> Queued<M> {
    fn key(&self) -> (SimTime, u64) {
        (self.due, self.order)
    }
}

impl<M> PartialEq for Queued<M> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<M> Eq for Queued<M> {}

impl<M> PartialOrd for Queued<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl<M> Ord for Queued<M> {
    fn cmp(&self, other: &Self) -> Order {
        self.key().cmp(&other.key())
    }
}

/// The jobs no worker has started, earliest-due on top.
type Waiting<M> = Mutex<BinaryHeap<Reverse<Queued<M>>>>;

/// A [`JobRunner`] backed by worker threads.
///
/// [`submit`](JobRunner::submit) hands the job to the pool at once, so the jobs of many
/// clients compute in parallel in real time although virtual time has them finish at
/// different moments; [`take`](JobRunner::take) blocks until the job asked for is done.
/// An idle worker starts the waiting job that is due first (then the first submitted): the
/// clock takes outputs in that order, so it can handle a finished job's reply while later
/// jobs compute rather than wait for a job that was queued behind them. Each submission
/// sends a token through a crossbeam channel, on which idle workers block; a token's worker
/// pops the earliest-due job. Results are buffered by [`JobId`], so the order in which
/// threads finish never reaches the run. Jobs run through [`run_job`], so a panicking job
/// becomes an error for its node, not a dead worker.
///
/// Works with both executors: the actix runtime uses one internally, and the sequential
/// executor takes one with `sim.run_with(stop, &mut PoolRunner::new(n))`.
///
/// Dropping the runner skips the jobs still queued, lets the running ones finish and joins
/// the threads.
pub struct PoolRunner<M> {
    /// Jobs submitted and not started, shared with the workers.
    waiting: Arc<Waiting<M>>,
    /// One token per submitted job, on which idle workers block; `None` once the runner is
    /// shutting down.
    tokens: Option<Sender<()>>,
    /// Submissions so far: the tie-break among jobs due at one instant.
    submitted: u64,
    /// Results of every worker.
    done: Receiver<Done<M>>,
    /// Results received but not asked for yet.
    ready: BTreeMap<JobId, Result<M, NodeError>>,
    /// Submitted jobs whose result has not been received yet.
    outstanding: BTreeSet<JobId>,
    /// Outstanding jobs whose result is to be dropped when it comes.
    discarded: BTreeSet<JobId>,
    /// Set on drop: workers skip what is still queued.
    stopping: Arc<AtomicBool>,
    /// Wall-clock nanoseconds the workers spent running jobs, summed over workers.
    busy_ns: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl<M> std::fmt::Debug for PoolRunner<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRunner")
            .field("threads", &self.threads.len())
            .field("outstanding", &self.outstanding.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl<M: Send + 'static> PoolRunner<M> {
    /// A pool of `threads` workers (at least one).
    ///
    /// # Panics
    /// If the operating system cannot start a thread (as [`std::thread::spawn`] does).
    pub fn new(threads: usize) -> Self {
        let waiting: Arc<Waiting<M>> = Arc::new(Mutex::new(BinaryHeap::new()));
        let (tokens, token_queue) = unbounded::<()>();
        let (finished, done) = unbounded::<Done<M>>();
        let stopping = Arc::new(AtomicBool::new(false));
        let busy_ns = Arc::new(AtomicU64::new(0));
        let threads = (0..threads.max(1))
            .map(|i| {
                let (token_queue, finished) = (token_queue.clone(), finished.clone());
                let waiting = Arc::clone(&waiting);
                let stopping = Arc::clone(&stopping);
                let busy_ns = Arc::clone(&busy_ns);
                std::thread::Builder::new()
                    .name(format!("flotilla-job-{i}"))
                    .spawn(move || {
                        for () in token_queue {
                            if stopping.load(Ordering::Relaxed) {
                                break;
                            }
                            // A job is pushed before its token is sent, so there is one.
                            let popped =
                                waiting.lock().unwrap_or_else(PoisonError::into_inner).pop();
                            let Some(Reverse(Queued { id, job, .. })) = popped else {
                                continue;
                            };
                            let started = Instant::now();
                            let output = run_job(job);
                            // This thread's time in the job, and its helpers' (if any).
                            let time = started.elapsed() + take_helper_time();
                            let ns = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
                            busy_ns.fetch_add(ns, Ordering::Relaxed);
                            if finished.send((id, output)).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("the OS can start a worker thread")
            })
            .collect();
        Self {
            waiting,
            tokens: Some(tokens),
            submitted: 0,
            done,
            ready: BTreeMap::new(),
            outstanding: BTreeSet::new(),
            discarded: BTreeSet::new(),
            stopping,
            busy_ns,
            threads,
        }
    }

    /// Wall-clock time the workers have spent running jobs, summed over workers: what a
    /// benchmark divides the jobs' FLOPs by. Measured, never part of a result.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Jobs submitted whose output has been neither taken nor discarded.
    pub fn pending(&self) -> usize {
        self.outstanding.len() - self.discarded.len() + self.ready.len()
    }
}

impl<M: Send + 'static> JobRunner<M> for PoolRunner<M> {
    fn submit(&mut self, id: JobId, due: SimTime, job: Job<M>) {
        if let Some(tokens) = &self.tokens {
            let order = self.submitted;
            self.submitted += 1;
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Reverse(Queued {
                    due,
                    order,
                    id,
                    job,
                }));
            // Workers hold the receiver until the runner is dropped, so this cannot fail;
            // if it did, `take` would report the job as lost rather than wait forever.
            if tokens.send(()).is_ok() {
                self.outstanding.insert(id);
            }
        }
    }

    fn take(&mut self, id: JobId) -> Result<M, NodeError> {
        loop {
            if let Some(result) = self.ready.remove(&id) {
                return result;
            }
            if !self.outstanding.contains(&id) || self.discarded.contains(&id) {
                return Err(NodeError::new(format!(
                    "job {id:?} was never submitted to this pool"
                )));
            }
            match self.done.recv() {
                Ok((done, result)) => {
                    self.outstanding.remove(&done);
                    if !self.discarded.remove(&done) {
                        self.ready.insert(done, result);
                    }
                }
                Err(_) => return Err(NodeError::new("the worker pool stopped")),
            }
        }
    }

    fn discard(&mut self, id: JobId) {
        if self.ready.remove(&id).is_none() && self.outstanding.contains(&id) {
            self.discarded.insert(id);
        }
    }
}

impl<M> Drop for PoolRunner<M> {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.tokens = None;
        for t in self.threads.drain(..) {
            // A worker cannot panic (jobs run under `run_job`); nothing to report if it did.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_sim::{NodeId, micros};
    use std::sync::mpsc;

    fn id(node: u32, seq: u64) -> JobId {
        JobId {
            node: NodeId(node),
            seq,
        }
    }

    #[test]
    fn results_come_back_by_id_whatever_the_finishing_order() {
        let mut pool = PoolRunner::<u64>::new(4);
        for i in 0..64u64 {
            pool.submit(
                id(0, i),
                SimTime::ZERO,
                Box::new(move || {
                    // Early jobs sleep longer, so they finish last.
                    std::thread::sleep(std::time::Duration::from_micros((64 - i) * 50));
                    Ok(i * i)
                }),
            );
        }
        for i in (0..64u64).rev() {
            assert_eq!(pool.take(id(0, i)), Ok(i * i));
        }
        assert_eq!(pool.pending(), 0);
    }

    /// A job's helper-thread time counts as time in jobs, once: the next job's does not
    /// inherit it.
    #[test]
    fn helper_time_a_job_counts_is_busy_time() {
        let hour = std::time::Duration::from_secs(3600);
        let mut pool = PoolRunner::<u64>::new(1);
        pool.submit(
            id(0, 0),
            SimTime::ZERO,
            Box::new(move || {
                flotilla_sim::count_helper_time(hour);
                Ok(0)
            }),
        );
        assert_eq!(pool.take(id(0, 0)), Ok(0));
        let after_one = pool.busy();
        assert!(after_one >= hour && after_one < 2 * hour, "{after_one:?}");
        pool.submit(id(0, 1), SimTime::ZERO, Box::new(|| Ok(1)));
        assert_eq!(pool.take(id(0, 1)), Ok(1));
        assert!(pool.busy() < after_one + hour, "{:?}", pool.busy());
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_survives() {
        let mut pool = PoolRunner::<u64>::new(1);
        pool.submit(id(1, 0), SimTime::ZERO, Box::new(|| panic!("boom")));
        pool.submit(id(1, 1), SimTime::ZERO, Box::new(|| Ok(7)));
        let err = pool.take(id(1, 0)).unwrap_err();
        assert!(err.0.contains("boom"), "{err}");
        assert_eq!(pool.take(id(1, 1)), Ok(7));
    }

    #[test]
    fn unknown_and_discarded_jobs_do_not_block() {
        let mut pool = PoolRunner::<u64>::new(2);
        assert!(pool.take(id(2, 9)).is_err());
        pool.submit(id(2, 0), SimTime::ZERO, Box::new(|| Ok(1)));
        pool.discard(id(2, 0));
        assert!(pool.take(id(2, 0)).is_err());
        pool.submit(id(2, 1), SimTime::ZERO, Box::new(|| Ok(2)));
        assert_eq!(pool.take(id(2, 1)), Ok(2));
        assert_eq!(pool.pending(), 0);
    }

    /// Jobs waiting for a worker start earliest-due first, those due at one instant in
    /// submission order (the order in which the clock takes them).
    #[test]
    fn waiting_jobs_start_in_due_then_submission_order() {
        let mut pool = PoolRunner::<u64>::new(1);
        // Hold the only worker until every job below is queued.
        let (release, gate) = mpsc::channel::<()>();
        pool.submit(
            id(4, 0),
            SimTime::ZERO,
            Box::new(move || {
                gate.recv().expect("the test releases the gate");
                Ok(0)
            }),
        );
        let started = Arc::new(Mutex::new(Vec::new()));
        let dues = [50, 10, 30, 10, 20, 50, 5];
        for (seq, due) in (1..).zip(dues) {
            let started = Arc::clone(&started);
            pool.submit(
                id(4, seq),
                SimTime::ZERO + micros(due),
                Box::new(move || {
                    started.lock().expect("not poisoned").push(seq);
                    Ok(seq)
                }),
            );
        }
        release.send(()).expect("the gate job waits");
        for seq in 0..=7 {
            assert_eq!(pool.take(id(4, seq)), Ok(seq));
        }
        assert_eq!(
            *started.lock().expect("not poisoned"),
            [7, 2, 4, 5, 3, 1, 6]
        );
    }

    #[test]
    fn dropping_skips_queued_jobs() {
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut pool = PoolRunner::<u64>::new(1);
        for i in 0..100 {
            let ran = Arc::clone(&ran);
            pool.submit(
                id(3, i),
                SimTime::ZERO,
                Box::new(move || {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    ran.fetch_add(1, Ordering::Relaxed);
                    Ok(0)
                }),
            );
        }
        drop(pool);
        assert!(ran.load(Ordering::Relaxed) < 100);
    }
}
