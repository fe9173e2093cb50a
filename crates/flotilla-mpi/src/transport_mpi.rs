//! The MPI transport (rsmpi over the system's MPI library), and the start of a rank.

use crate::dispatcher::Dispatcher;
use crate::worker::{WorkerJob, serve};
use crate::{MpiError, Role, Transport, WorkerRank};
use crossbeam_channel::{bounded, unbounded};
use mpi::environment::Universe;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Destination, Source};

/// Frames over `MPI_COMM_WORLD`, tag 0. Point-to-point messages between two ranks arrive
/// in the order sent (MPI's non-overtaking rule), which the protocol relies on.
struct Mpi {
    /// Finalises MPI when dropped, at the end of the transport thread.
    _universe: Universe,
    world: SimpleCommunicator,
}

impl Transport for Mpi {
    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), MpiError> {
        let rank = i32::try_from(to).map_err(|_| MpiError::Protocol(format!("no rank {to}")))?;
        self.world.process_at_rank(rank).send(frame);
        Ok(())
    }

    fn try_receive(&mut self) -> Result<Option<(usize, Vec<u8>)>, MpiError> {
        let Some(probed) = self.world.any_process().immediate_matched_probe() else {
            return Ok(None);
        };
        let (frame, status) = probed.matched_receive_vec::<u8>();
        let from = usize::try_from(status.source_rank())
            .map_err(|_| MpiError::Protocol("a frame from a negative rank".into()))?;
        Ok(Some((from, frame)))
    }
}

/// Starts MPI on a thread of its own, which then plays this rank's part: rank 0's
/// dispatcher, or a worker's link to rank 0 (the worker computes on the caller's thread).
pub(crate) fn start() -> Result<Role, MpiError> {
    let (told, hear) = bounded::<Result<(usize, usize), MpiError>>(1);
    // A worker's link thread hands jobs to the computing thread and waits for the answer.
    let (jobs_in, jobs) = unbounded::<WorkerJob>();
    let (answers, answers_out) = unbounded::<Result<Vec<u8>, String>>();
    let (dispatcher_in, dispatcher_out) = bounded::<Dispatcher>(1);
    let thread = std::thread::Builder::new()
        .name("flotilla-mpi".into())
        .spawn(move || -> Result<crate::ServeStats, MpiError> {
            let init = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| MpiError::Init("MPI was initialised already".into()));
            let (universe, _) = match init {
                Ok(u) => u,
                Err(e) => {
                    let _ = told.send(Err(MpiError::Init(e.to_string())));
                    return Err(e);
                }
            };
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            let _ = told.send(Ok((rank, size)));
            let mut transport = Mpi {
                _universe: universe,
                world,
            };
            if rank == 0 {
                // Rank 0's transport thread is the dispatcher's: hand the transport over by
                // running the dispatch here.
                let (dispatcher, serve) = Dispatcher::new(size - 1);
                let _ = dispatcher_in.send(dispatcher);
                serve.run(&mut transport)?;
                return Ok(crate::ServeStats::default());
            }
            serve(&mut transport, |job| {
                jobs_in
                    .send(job.clone())
                    .map_err(|_| "the computing thread has ended".to_string())?;
                answers_out
                    .recv()
                    .map_err(|_| "the computing thread has ended".to_string())?
            })
        })
        .map_err(MpiError::Thread)?;
    let (rank, ranks) = hear
        .recv()
        .map_err(|_| MpiError::Init("the MPI thread ended during initialisation".into()))??;
    if rank == 0 {
        let dispatcher = dispatcher_out
            .recv()
            .map_err(|_| MpiError::Init("the MPI thread ended before dispatching".into()))?;
        report_termination(dispatcher.held_source())?;
        return Ok(Role::Simulation(dispatcher.with_thread(thread)));
    }
    Ok(Role::Worker(WorkerRank {
        rank,
        ranks,
        serve: Box::new(move |compute| {
            for job in jobs {
                if answers.send(compute(&job)).is_err() {
                    break;
                }
            }
            thread
                .join()
                .map_err(|_| MpiError::Protocol("the MPI thread panicked".into()))?
        }),
    }))
}

/// When `mpirun` ends rank 0 from outside — it does so to every rank once one has died, and
/// names the dead rank — says which job each worker held, then exits with status 1.
fn report_termination(held: impl Fn() -> Vec<String> + Send + 'static) -> Result<(), MpiError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| MpiError::Init(format!("could not watch for SIGTERM: {e}")))?;
    std::thread::Builder::new()
        .name("flotilla-mpi-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let held = held();
                let jobs = if held.is_empty() {
                    "no worker held a job".to_string()
                } else {
                    format!("jobs held: {}", held.join("; "))
                };
                eprintln!(
                    "error: the run was ended from outside (signal {signal}); under mpirun this \
                     means a rank died or the job was cancelled (mpirun names the rank); {jobs}"
                );
                std::process::exit(1);
            }
        })
        .map_err(MpiError::Thread)?;
    Ok(())
}
