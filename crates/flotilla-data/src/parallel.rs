//! Data preparation spread over the machine's cores on scoped threads.
//!
//! A pass is split into contiguous parts whose results do not depend on where the split
//! falls (each output value is computed by one thread, in the order one thread would), so
//! the output has the same bits whatever the number of cores.

use std::convert::Infallible;
use std::thread;

/// Upper bound on threads for one pass.
const MAX_THREADS: usize = 16;

/// Length of each of the contiguous parts `n` items are split into, one per core (the last
/// part may be shorter), but no shorter than `min_part` (so small inputs stay on the calling
/// thread) and at least 1.
pub(crate) fn part_len(n: usize, min_part: usize) -> usize {
    if n <= min_part {
        // One part, without asking the system how many cores there are (a file read).
        return min_part.max(1);
    }
    let threads = thread::available_parallelism().map_or(1, |t| t.get().min(MAX_THREADS));
    n.div_ceil(threads).max(min_part).max(1)
}

/// Values a thread gets at least: smaller passes stay on the calling thread.
pub(crate) const MIN_PART_VALUES: usize = 1 << 16;

/// Runs `work` on every job, each on its own scoped thread (a single job on the calling
/// thread); returns the first error in job order.
pub(crate) fn run_parallel<J: Send, E: Send>(
    jobs: impl Iterator<Item = J>,
    work: impl Fn(J) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let mut jobs: Vec<J> = jobs.collect();
    if jobs.len() == 1 {
        return work(jobs.remove(0));
    }
    let work = &work;
    let results: Vec<Result<(), E>> = thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| scope.spawn(move || work(job)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Runs `f` compiled for the widest vectors this CPU has (`pulp`'s run-time dispatch): the
/// passes over a whole dataset are loops the compiler vectorises, four times as wide with
/// AVX-512 as with the baseline x86-64 target. The passes are elementwise, or add in the same
/// order at every width, so the bits do not depend on the vectors used.
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// [`run_parallel`] for work that cannot fail.
pub(crate) fn for_each_parallel<J: Send>(jobs: impl Iterator<Item = J>, work: impl Fn(J) + Sync) {
    let Ok(()) = run_parallel(jobs, |job| {
        work(job);
        Ok::<_, Infallible>(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DataError;

    #[test]
    fn parts_cover_the_items_and_respect_the_minimum() {
        for n in [0, 1, 7, 1000, 1 << 20] {
            let len = part_len(n, 64);
            assert!(len >= 64);
            assert!(n.div_ceil(len) <= MAX_THREADS.max(1));
        }
    }

    #[test]
    fn every_job_runs_and_the_first_error_in_job_order_wins() {
        let mut out = vec![0usize; 100];
        for_each_parallel(out.chunks_mut(10).enumerate(), |(i, part)| part.fill(i + 1));
        assert!(
            out.chunks(10)
                .enumerate()
                .all(|(i, p)| p.iter().all(|&v| v == i + 1))
        );
        let e = run_parallel(0..8, |i| match i {
            3 | 6 => Err(DataError::param("job", i, "fails")),
            _ => Ok(()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("= 3"), "{e}");
    }
}
