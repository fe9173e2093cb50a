//! The dispatch overhead per job: round trips of jobs that compute nothing, with a part of
//! the size of a model's weights, new for every job (as after every version) or the same
//! for every job (cached after its first trip).
//!
//! ```sh
//! cargo bench -p flotilla-mpi --bench dispatch                    # workers as threads
//! cargo build --release -p flotilla-mpi --features mpi --bench dispatch
//! mpirun -np 2 target/release/deps/dispatch-<hash>                # workers as ranks
//! ```
//!
//! Prints, per part size, the median round trip per job and the bytes moved per job.

#![allow(clippy::unwrap_used)]

use flotilla_fl::{Offload, OffloadJob, OffloadKind};
use flotilla_mpi::{Compute, Dispatcher, Role, WorkerJob};
use std::sync::Arc;
use std::time::Instant;

const JOBS: usize = 400;

fn nothing() -> Compute {
    Arc::new(|job: &WorkerJob| Ok(job.header.clone()))
}

fn measure(dispatcher: &Dispatcher, label: &str) {
    for (size, fresh) in [
        (1_000, true),
        (160_000, true),
        (1_100_000, true),
        (1_100_000, false),
    ] {
        let before = dispatcher.stats();
        let mut times = Vec::with_capacity(JOBS);
        let shared: Arc<[u8]> = Arc::from(vec![1u8; size]);
        for i in 0..JOBS {
            let part = if fresh {
                let mut p = vec![0u8; size];
                p[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Arc::from(p)
            } else {
                Arc::clone(&shared)
            };
            let job = OffloadJob {
                kind: OffloadKind::Train,
                seed: 0,
                label: format!("job {i}"),
                header: vec![0; 64],
                parts: vec![part],
            };
            let started = Instant::now();
            dispatcher.compute(job).unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        let after = dispatcher.stats();
        let moved =
            after.bytes_sent + after.bytes_received - before.bytes_sent - before.bytes_received;
        println!(
            "{label}: part {size:>9} B, {:<13}: median round trip {:>6.0} µs, {:>9.0} B per job",
            if fresh {
                "new each job"
            } else {
                "same each job"
            },
            times[JOBS / 2],
            moved as f64 / JOBS as f64
        );
    }
}

fn main() {
    match flotilla_mpi::start().unwrap() {
        None => {
            for workers in [1, 3] {
                let d = Dispatcher::in_process(workers, nothing()).unwrap();
                measure(&d, &format!("threads, {workers} worker(s)"));
                d.finish().unwrap();
            }
        }
        Some(Role::Simulation(d)) => {
            if d.workers() > 0 {
                measure(&d, &format!("MPI, {} worker(s)", d.workers()));
            }
            d.finish().unwrap();
        }
        Some(Role::Worker(w)) => {
            w.serve(|job| Ok(job.header.clone())).unwrap();
        }
    }
}
