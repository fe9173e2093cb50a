//! Rank 0's side: hands jobs to workers and their outputs back to the simulation.
//!
//! **Policy.** Jobs wait in one first-in-first-out queue; a worker holds at most one job at
//! a time, and the job at the head of the queue goes to the lowest-ranked idle worker. So
//! no worker idles while a job waits, and a worker never queues jobs behind a long one
//! while another is free. The simulation keeps as many jobs in flight as there are workers
//! (plus one thread for the jobs that stay local), so the queue is rarely longer than that.
//!
//! One thread owns the transport; the job threads of the simulation call
//! [`Dispatcher::compute`], which hashes and frames nothing itself but hands the job to
//! that thread and blocks until its output comes back. Results are matched to jobs by id,
//! so the order in which workers finish never reaches the run.

use crate::cache::Mirror;
use crate::frame::{self, Done, Hash, ToWorker};
use crate::{Backoff, MpiError, ServeStats, Transport};
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, unbounded};
use flotilla_fl::{FlError, Offload, OffloadJob};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bytes a worker caches, at most, beyond the current job's parts: 256 MiB.
pub const CACHE_BYTES: u64 = 256 << 20;

/// Dispatch figures, measured in wall time on rank 0 (never part of a result).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DispatchStats {
    /// Jobs answered.
    pub jobs: u64,
    /// Frame bytes sent to workers.
    pub bytes_sent: u64,
    /// Frame bytes received from workers.
    pub bytes_received: u64,
    /// Part bytes not sent because the worker had them cached.
    pub bytes_cached: u64,
    /// Sum over jobs of the time between a job's frame leaving for a worker and its
    /// answer being read, less the worker's compute time \[s\]: the dispatch overhead
    /// (framing, transfer both ways, the worker's cache, polling latency).
    pub overhead_s: f64,
    /// Sum over jobs of the time they waited for an idle worker \[s\].
    pub queued_s: f64,
    /// Sum over jobs of the workers' compute time \[s\].
    pub compute_s: f64,
}

impl DispatchStats {
    /// Mean dispatch overhead per job \[µs\] (queueing not included).
    pub fn overhead_per_job_us(&self) -> f64 {
        per_job(self.overhead_s * 1e6, self.jobs)
    }

    /// Mean bytes moved per job, both directions.
    pub fn bytes_per_job(&self) -> f64 {
        per_job((self.bytes_sent + self.bytes_received) as f64, self.jobs)
    }
}

fn per_job(total: f64, jobs: u64) -> f64 {
    if jobs == 0 { 0.0 } else { total / jobs as f64 }
}

/// A job on its way to the transport thread.
struct Request {
    job: OffloadJob,
    /// Each part's hash and length.
    keys: Vec<(Hash, u64)>,
    reply: Sender<Result<Vec<u8>, FlError>>,
}

/// What the transport thread and the termination report share.
#[derive(Debug, Default)]
struct Shared {
    stats: DispatchStats,
    /// Worker rank → the label of the job it holds.
    held: BTreeMap<usize, String>,
}

/// Rank 0's dispatcher: an [`Offload`] computing jobs on worker ranks 1…n.
pub struct Dispatcher {
    workers: usize,
    requests: Sender<Option<Request>>,
    shared: Arc<Mutex<Shared>>,
    thread: Mutex<Option<JoinHandle<Result<ServeStats, MpiError>>>>,
}

/// The loop of a [`Dispatcher`], run by the thread that owns the transport.
pub(crate) struct DispatchLoop {
    workers: usize,
    incoming: Receiver<Option<Request>>,
    shared: Arc<Mutex<Shared>>,
}

impl DispatchLoop {
    /// Serves the dispatcher over `transport` until it finishes, then tells every worker
    /// to stop.
    pub(crate) fn run<T: Transport>(self, transport: &mut T) -> Result<(), MpiError> {
        dispatch(transport, self.workers, &self.incoming, &self.shared)
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for `workers` workers (ranks 1 to `workers`) and the loop that serves
    /// it, to run on the thread that owns the transport (MPI wants to be used from the
    /// thread that initialised it). [`Dispatcher::finish`] joins that thread once it is
    /// given with [`Dispatcher::with_thread`].
    pub(crate) fn new(workers: usize) -> (Self, DispatchLoop) {
        let (requests, incoming) = unbounded();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let dispatcher = Self {
            workers,
            requests,
            shared: Arc::clone(&shared),
            thread: Mutex::new(None),
        };
        let serve = DispatchLoop {
            workers,
            incoming,
            shared,
        };
        (dispatcher, serve)
    }

    /// The dispatcher whose loop runs on `thread`, which ends when the loop does.
    pub(crate) fn with_thread(self, thread: JoinHandle<Result<ServeStats, MpiError>>) -> Self {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        self
    }

    /// Worker ranks.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The figures so far.
    pub fn stats(&self) -> DispatchStats {
        lock(&self.shared).stats
    }

    /// Which job each worker holds now, as `rank: label` lines (for a report when the run
    /// is ended from outside, e.g. by `mpirun` after a rank died).
    pub fn held(&self) -> Vec<String> {
        held(&self.shared)
    }

    /// A function giving [`Dispatcher::held`] from any thread, e.g. a signal watcher's.
    #[cfg(feature = "mpi")]
    pub(crate) fn held_source(&self) -> impl Fn() -> Vec<String> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || held(&shared)
    }

    /// Stops the workers and the transport thread, and gives the figures. Jobs still
    /// queued get an error. Called again, it does nothing more.
    ///
    /// # Errors
    /// The transport's failure, if it failed.
    pub fn finish(&self) -> Result<DispatchStats, MpiError> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The thread may have ended already (a transport failure): nothing to tell it.
            let _ = self.requests.send(None);
            thread
                .join()
                .map_err(|_| MpiError::Protocol("the dispatch thread panicked".into()))??;
        }
        Ok(self.stats())
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Errors were the caller's to collect with `finish`.
        let _ = self.finish();
    }
}

impl Offload for Dispatcher {
    fn compute(&self, job: OffloadJob) -> Result<Vec<u8>, FlError> {
        // Hashed here, on the calling job thread, so that jobs hash in parallel.
        let keys = job
            .parts
            .iter()
            .map(|p| (*blake3::hash(p).as_bytes(), p.len() as u64))
            .collect();
        let (reply, answer) = bounded(1);
        self.requests
            .send(Some(Request { job, keys, reply }))
            .map_err(|_| FlError::Offload("the MPI dispatcher has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| FlError::Offload("the MPI dispatcher stopped before answering".into()))?
    }

    fn parallelism(&self) -> usize {
        self.workers
    }
}

fn held(shared: &Mutex<Shared>) -> Vec<String> {
    lock(shared)
        .held
        .iter()
        .map(|(rank, label)| format!("rank {rank}: {label}"))
        .collect()
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A job a worker holds.
struct Held {
    id: u64,
    request: Request,
    /// When its frame was built.
    since: Instant,
}

/// The transport thread: the queue, the workers' states, the loop.
fn dispatch<T: Transport>(
    transport: &mut T,
    workers: usize,
    incoming: &Receiver<Option<Request>>,
    shared: &Mutex<Shared>,
) -> Result<(), MpiError> {
    let mut queue: VecDeque<(Request, Instant)> = VecDeque::new();
    let mut held: Vec<Option<Held>> = (0..workers).map(|_| None).collect();
    let mut mirrors: Vec<Mirror> = (0..workers).map(|_| Mirror::new(CACHE_BYTES)).collect();
    let mut next_id = 0u64;
    let mut stopping = false;
    let mut backoff = Backoff::default();
    let result = loop {
        let busy = held.iter().any(Option::is_some);
        // Take in new jobs: wait for one when nothing is out, else just look.
        if !stopping && !busy && queue.is_empty() {
            match incoming.recv() {
                Ok(Some(r)) => queue.push_back((r, Instant::now())),
                Ok(None) | Err(_) => stopping = true,
            }
        }
        while !stopping {
            match incoming.try_recv() {
                Ok(Some(r)) => queue.push_back((r, Instant::now())),
                Ok(None) | Err(TryRecvError::Disconnected) => stopping = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if stopping && !held.iter().any(Option::is_some) {
            break Ok(());
        }
        // Hand the head of the queue to the lowest-ranked idle worker, while both exist.
        while let Some(w) = held.iter().position(Option::is_none) {
            let Some((request, since)) = queue.pop_front() else {
                break;
            };
            if stopping {
                let _ = request
                    .reply
                    .send(Err(FlError::Offload("the run is ending".into())));
                continue;
            }
            let id = next_id;
            next_id += 1;
            let sent = Instant::now();
            let (bytes, cached) = frame_job(id, &request, &mut mirrors[w])?;
            transport.send(w + 1, &bytes)?;
            {
                let mut s = lock(shared);
                s.stats.queued_s += sent.duration_since(since).as_secs_f64();
                s.stats.bytes_sent += bytes.len() as u64;
                s.stats.bytes_cached += cached;
                s.held.insert(w + 1, request.job.label.clone());
            }
            held[w] = Some(Held {
                id,
                request,
                since: sent,
            });
        }
        // Collect an answer, or wait a little for one (new jobs are looked for above).
        match transport.try_receive()? {
            Some((from, bytes)) => {
                backoff.reset();
                if let Err(e) = answer(from, &bytes, &mut held, shared) {
                    break Err(e);
                }
            }
            None if !incoming.is_empty() => backoff.reset(),
            None => backoff.wait(),
        }
    };
    // Whatever happened, the workers end and no caller waits forever.
    for (request, _) in queue {
        let _ = request
            .reply
            .send(Err(FlError::Offload("the MPI dispatcher stopped".into())));
    }
    let stop = frame::encode(&ToWorker::Stop, &[])?;
    for w in 0..workers {
        transport.send(w + 1, &stop)?;
    }
    result
}

/// Frames job `id` of `request` for the worker whose cache `mirror` mirrors; returns the
/// frame and the part bytes it did not need to carry.
fn frame_job(id: u64, request: &Request, mirror: &mut Mirror) -> Result<(Vec<u8>, u64), MpiError> {
    let job = &request.job;
    let (parts, evict) = mirror.plan(&request.keys);
    let mut raw: Vec<&[u8]> = vec![&job.header];
    let mut cached = 0;
    for (r, bytes) in parts.iter().zip(&job.parts) {
        match r.inline {
            Some(_) => raw.push(bytes),
            None => cached += bytes.len() as u64,
        }
    }
    let envelope = ToWorker::Job {
        id,
        kind: job.kind,
        seed: job.seed,
        header: job.header.len() as u64,
        parts,
        evict,
    };
    Ok((frame::encode(&envelope, &raw)?, cached))
}

/// Hands worker `from`'s answer `bytes` to the job thread waiting for it.
fn answer(
    from: usize,
    bytes: &[u8],
    held: &mut [Option<Held>],
    shared: &Mutex<Shared>,
) -> Result<(), MpiError> {
    let (done, output): (Done, &[u8]) = frame::decode(bytes)?;
    let slot = from
        .checked_sub(1)
        .and_then(|w| held.get_mut(w))
        .ok_or_else(|| MpiError::Protocol(format!("an answer from rank {from}, not a worker")))?;
    let job = match slot.take() {
        Some(job) if job.id == done.id => job,
        other => {
            let holds = other.as_ref().map(|h| h.id);
            *slot = other;
            return Err(MpiError::Protocol(format!(
                "rank {from} answered job {} while holding {holds:?}",
                done.id
            )));
        }
    };
    let compute = Duration::from_nanos(done.compute_ns);
    {
        let mut s = lock(shared);
        s.held.remove(&from);
        s.stats.jobs += 1;
        s.stats.bytes_received += bytes.len() as u64;
        s.stats.compute_s += compute.as_secs_f64();
        s.stats.overhead_s += job.since.elapsed().saturating_sub(compute).as_secs_f64();
    }
    let result = match done.failed {
        None => Ok(output.to_vec()),
        Some(reason) => Err(FlError::Offload(format!(
            "{} failed on rank {from}: {reason}",
            job.request.job.label
        ))),
    };
    // The job thread may be gone (its run ended); nothing waits for the answer then.
    let _ = job.request.reply.send(result);
    Ok(())
}
