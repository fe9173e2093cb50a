//! Running compute jobs: where the real CPU work of a node happens.

use crate::host::panic_message;
use crate::{Job, JobId, NodeError, SimTime};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

thread_local! {
    /// Helper-thread time counted by the jobs run on this thread ([`count_helper_time`]).
    static HELPER_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Counts `time` that the job running on this thread spent on helper threads of its own
/// (beside this one), so that a runner measuring its threads' time in jobs counts it too
/// (e.g. an evaluation split over idle threads). Only accounting: results never see it.
pub fn count_helper_time(time: Duration) {
    HELPER_TIME.with(|t| t.set(t.get() + time));
}

/// The helper time counted on this thread since the last call, which resets it: what a
/// runner adds to the time it measured around a job.
pub fn take_helper_time() -> Duration {
    HELPER_TIME.with(|t| t.replace(Duration::ZERO))
}

/// Executes jobs for a runtime. A job's *virtual* completion time is fixed when it is
/// submitted (from the device profile), so a runner may run it whenever it likes before
/// [`JobRunner::take`] asks for its output: inline, lazily, or on a pool of threads.
pub trait JobRunner<M> {
    /// Accepts a job; its output will be asked for once, by id, when the clock reaches
    /// `due` (its virtual completion time). The clock takes outputs in `due` order, so a
    /// runner with more jobs than threads does best to start the earliest-due first.
    fn submit(&mut self, id: JobId, due: SimTime, job: Job<M>);
    /// The job's output, waiting for it if needed. A job that panics, or one this runner
    /// never received, yields an error (never a wait: the clock would deadlock).
    fn take(&mut self, id: JobId) -> Result<M, NodeError>;
    /// Forgets a job whose output nobody will read (its node failed).
    fn discard(&mut self, id: JobId);
}

/// Runs each job on the calling thread when its output is taken.
pub struct InlineRunner<M> {
    pending: BTreeMap<JobId, Job<M>>,
}

impl<M> Default for InlineRunner<M> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
        }
    }
}

impl<M> std::fmt::Debug for InlineRunner<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineRunner")
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Runs a job, turning a panic into an error.
pub fn run_job<M>(job: Job<M>) -> Result<M, NodeError> {
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(result) => result,
        Err(panic) => Err(NodeError(format!(
            "job panicked: {}",
            panic_message(&panic)
        ))),
    }
}

impl<M> InlineRunner<M> {
    /// Jobs submitted and not yet taken or discarded.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl<M> JobRunner<M> for InlineRunner<M> {
    fn submit(&mut self, id: JobId, _due: SimTime, job: Job<M>) {
        self.pending.insert(id, job);
    }

    fn take(&mut self, id: JobId) -> Result<M, NodeError> {
        match self.pending.remove(&id) {
            Some(job) => run_job(job),
            None => Err(NodeError(format!("job {id:?} was never submitted"))),
        }
    }

    fn discard(&mut self, id: JobId) {
        self.pending.remove(&id);
    }
}
