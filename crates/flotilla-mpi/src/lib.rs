//! Flotilla's compute jobs over MPI ranks.
//!
//! Rank 0 runs the simulation exactly as a single process does (clock, nodes, network,
//! virtual time); every other rank is a job worker. A job travels as its inputs
//! ([`flotilla_fl::OffloadJob`]: a small header, and parts — a version's weights, a
//! client's sample indices — sent to each worker once and cached there by content), and
//! comes back as its output; every rank loads the dataset itself, so samples never travel.
//! Virtual completion times are fixed when a job starts, so the number of ranks changes
//! wall time only: the run's bits are those of the single process.
//!
//! - [`start`] tells whether the process was launched by `mpirun` and which part it plays:
//!   [`Role::Simulation`] (rank 0, with a [`Dispatcher`], the [`flotilla_fl::Offload`] to
//!   give the task) or [`Role::Worker`] (serve jobs with [`WorkerRank::serve`]).
//! - The dispatch policy is in [`dispatcher`](Dispatcher): one queue, at most one job per
//!   worker, the head of the queue to the lowest-ranked idle worker.
//! - The MPI transport is behind the `mpi` feature; without it the crate still builds and
//!   [`Dispatcher::in_process`] runs the same dispatch over threads (for tests).
//!
//! What MPI guarantees on failure: messages between two ranks arrive in order and intact,
//! and with Open MPI's default error handling a rank that dies makes `mpirun` end every
//! other rank (it names the dead rank). Rank 0 then reports which job each worker held
//! ([`Dispatcher::held`]); nothing hangs.

mod cache;
mod dispatcher;
mod frame;
mod local;
#[cfg(feature = "mpi")]
mod transport_mpi;
mod worker;

pub use dispatcher::{CACHE_BYTES, DispatchStats, Dispatcher};
pub use local::Compute;
pub use worker::{ServeStats, WorkerJob};

/// Why the MPI layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// The process was started by `mpirun` but this build has no MPI support.
    #[error(
        "started under mpirun ({0} is set), but this flotilla was built without MPI support: \
         rebuild with `--features mpi` (needs an MPI library, e.g. Debian's libopenmpi-dev)"
    )]
    NotBuilt(&'static str),
    /// MPI could not be initialised.
    #[error("MPI could not be initialised: {0}")]
    Init(String),
    /// A frame between ranks was malformed or out of protocol.
    #[error("MPI protocol: {0}")]
    Protocol(String),
    /// A thread could not be started.
    #[error("could not start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Moves frames between ranks: the one thing that differs between MPI and threads.
pub(crate) trait Transport {
    /// Sends `frame` to rank `to` (blocking until it can be sent).
    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), MpiError>;
    /// A frame that has arrived, with its sender's rank, if any; never blocks.
    fn try_receive(&mut self) -> Result<Option<(usize, Vec<u8>)>, MpiError>;
}

/// Waits between polls of a transport that cannot block on two sources at once: yields
/// the core for the first polls after activity (an answer that comes quickly is seen within
/// microseconds), then sleeps longer and longer, up to 200 µs (an idle rank costs no CPU
/// that a computing one needs: ranks may share cores).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    polls: u32,
}

impl Backoff {
    /// Polls that only yield before the first sleep.
    const YIELDS: u32 = 20;

    /// Something happened: the next waits are short again.
    pub(crate) fn reset(&mut self) {
        self.polls = 0;
    }

    /// Waits before the next poll.
    pub(crate) fn wait(&mut self) {
        if self.polls < Self::YIELDS {
            std::thread::yield_now();
        } else {
            let doublings = ((self.polls - Self::YIELDS) / 8).min(5);
            std::thread::sleep(
                std::time::Duration::from_micros(10 << doublings)
                    .min(std::time::Duration::from_micros(200)),
            );
        }
        self.polls = self.polls.saturating_add(1);
    }
}

/// The environment variables by which MPI launchers (Open MPI, MPICH and Slurm's PMI)
/// tell a process it is one of several ranks.
const LAUNCHER_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// The launcher variable that is set, if the process was started by an MPI launcher.
pub fn launched() -> Option<&'static str> {
    LAUNCHER_VARIABLES
        .into_iter()
        .find(|v| std::env::var_os(v).is_some())
}

/// The part a rank plays.
#[derive(Debug)]
pub enum Role {
    /// Rank 0: runs the simulation; its dispatcher reaches the workers (none with `-np 1`).
    Simulation(Dispatcher),
    /// A worker rank.
    Worker(WorkerRank),
}

/// Starts MPI if the process was launched by `mpirun` (`None` otherwise) and says which
/// part this rank plays. MPI lives on a thread of its own for the rest of the process.
///
/// # Errors
/// [`MpiError::NotBuilt`] under `mpirun` without the `mpi` feature; MPI's own failure.
pub fn start() -> Result<Option<Role>, MpiError> {
    let Some(variable) = launched() else {
        return Ok(None);
    };
    #[cfg(feature = "mpi")]
    {
        let _ = variable;
        transport_mpi::start().map(Some)
    }
    #[cfg(not(feature = "mpi"))]
    Err(MpiError::NotBuilt(variable))
}

/// A computation of one job on a worker.
type ComputeFn<'a> = &'a mut dyn FnMut(&WorkerJob) -> Result<Vec<u8>, String>;

/// What serving a worker rank's jobs runs: hands each job to the computation, until rank 0
/// says stop.
type ServeFn = Box<dyn FnOnce(ComputeFn<'_>) -> Result<ServeStats, MpiError> + Send>;

/// A worker rank, ready to serve.
pub struct WorkerRank {
    rank: usize,
    ranks: usize,
    serve: ServeFn,
}

impl std::fmt::Debug for WorkerRank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRank")
            .field("rank", &self.rank)
            .field("ranks", &self.ranks)
            .finish_non_exhaustive()
    }
}

impl WorkerRank {
    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the run, rank 0 included.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Computes jobs with `compute` (on the calling thread) until rank 0 says stop. A job
    /// that fails is answered with its error and the worker goes on.
    ///
    /// # Errors
    /// A malformed frame, or MPI's failure.
    pub fn serve(
        self,
        mut compute: impl FnMut(&WorkerJob) -> Result<Vec<u8>, String>,
    ) -> Result<ServeStats, MpiError> {
        (self.serve)(&mut compute)
    }
}
