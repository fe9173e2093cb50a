//! `flotilla run` under `mpirun`: rank 0 simulates, the other ranks compute its jobs.

use anyhow::Context;
use flotilla_experiment::{ExperimentConfig, JobServer, Prepared};
use flotilla_fl::{ModelRole, Offload};
use flotilla_mpi::{Dispatcher, Role, WorkerRank};
use std::path::PathBuf;
use std::sync::Arc;

/// The part this process plays.
pub(crate) enum Part {
    /// Not under `mpirun`: a plain run.
    Alone,
    /// Rank 0: simulates, with jobs dispatched to the workers (if any).
    Simulation(Arc<Dispatcher>),
    /// Another rank: computes rank 0's jobs, writes nothing.
    Worker(WorkerRank),
}

impl Part {
    /// Finds out from the environment, starting MPI if launched by `mpirun`.
    pub(crate) fn join() -> anyhow::Result<Self> {
        Ok(match flotilla_mpi::start()? {
            None => Part::Alone,
            Some(Role::Simulation(dispatcher)) => {
                let workers = dispatcher.workers();
                eprintln!(
                    "MPI: rank 0 of {} simulates; {workers} job worker{}{}",
                    workers + 1,
                    if workers == 1 { "" } else { "s" },
                    if workers == 0 {
                        " (jobs run on this process's threads)"
                    } else {
                        ""
                    }
                );
                Part::Simulation(Arc::new(dispatcher))
            }
            Some(Role::Worker(worker)) => Part::Worker(worker),
        })
    }

    /// Where jobs compute: on the workers, when there are any.
    pub(crate) fn offload(&self) -> Option<Arc<dyn Offload>> {
        match self {
            Part::Simulation(d) if d.workers() > 0 => Some(Arc::clone(d) as Arc<dyn Offload>),
            _ => None,
        }
    }

    /// Under `mpirun`, says so when rank 0 may use fewer cores than its `threads` job
    /// threads need: `mpirun` binds a rank to one core by default for up to two ranks.
    pub(crate) fn note_binding(&self, threads: usize) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Part::Simulation(d) = self
            && d.workers() == 0
            && cores < threads
        {
            eprintln!(
                "MPI: rank 0 may use {cores} core{} for its {threads} job threads; \
                 `mpirun --bind-to none` lets it use more",
                if cores == 1 { "" } else { "s" }
            );
        }
    }

    /// After the run: stops the workers and prints the dispatch figures.
    pub(crate) fn finish(&self) -> anyhow::Result<()> {
        if let Part::Simulation(d) = self {
            let stats = d.finish()?;
            if d.workers() > 0 {
                eprintln!(
                    "MPI: {} jobs on {} workers: dispatch overhead {:.0} µs and {:.1} kB per \
                     job, {:.0} ms queued per job; {:.1} MB of weights and data not resent \
                     (cached on the workers); workers computed {:.1} s",
                    stats.jobs,
                    d.workers(),
                    stats.overhead_per_job_us(),
                    stats.bytes_per_job() / 1e3,
                    per_job_ms(stats.queued_s, stats.jobs),
                    stats.bytes_cached as f64 / 1e6,
                    stats.compute_s
                );
            }
        }
        Ok(())
    }
}

/// A worker rank's whole life: loads the data as rank 0 does (same configuration, same
/// `--init` models) and computes jobs until rank 0 is done.
pub(crate) fn serve(
    worker: WorkerRank,
    config: ExperimentConfig,
    init: &[(ModelRole, PathBuf)],
) -> anyhow::Result<bool> {
    let rank = worker.rank();
    let mut prepared = Prepared::new(config).with_context(|| format!("MPI rank {rank}"))?;
    for (role, path) in init {
        prepared
            .init_from(*role, path)
            .with_context(|| format!("MPI rank {rank}"))?;
    }
    let mut server = JobServer::new(&prepared);
    worker.serve(|job| {
        let parts: Vec<&[u8]> = job.parts.iter().map(|p| &p[..]).collect();
        server
            .run(job.kind, job.seed, &job.header, &parts)
            .map_err(|e| e.to_string())
    })?;
    Ok(true)
}

/// `total_s` seconds over `jobs` jobs, in milliseconds per job.
fn per_job_ms(total_s: f64, jobs: u64) -> f64 {
    if jobs == 0 {
        0.0
    } else {
        total_s * 1e3 / jobs as f64
    }
}
