//! The dispatch over in-process workers: every job gets its own answer whatever the
//! finishing order, parts travel once per worker, a failing job is an error naming its
//! worker and the run goes on.

#![allow(clippy::unwrap_used)]

use flotilla_fl::{Offload, OffloadJob, OffloadKind};
use flotilla_mpi::{Compute, Dispatcher, WorkerJob};
use proptest::prelude::*;
use std::sync::Arc;

/// A worker computation: the seed, the header and every part, concatenated; fails on a
/// header starting with `!`; sleeps by the seed so that answers come back out of order.
fn echo() -> Compute {
    Arc::new(|job: &WorkerJob| {
        if job.header.first() == Some(&b'!') {
            return Err("refused".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(job.seed % 7 * 300));
        let mut out = job.seed.to_le_bytes().to_vec();
        out.extend_from_slice(&job.header);
        for p in &job.parts {
            out.extend_from_slice(p);
        }
        Ok(out)
    })
}

fn job(seed: u64, header: &[u8], parts: &[&[u8]]) -> OffloadJob {
    OffloadJob {
        kind: OffloadKind::Train,
        seed,
        label: format!("job {seed}"),
        header: header.to_vec(),
        parts: parts.iter().map(|p| Arc::from(*p)).collect(),
    }
}

fn expected(seed: u64, header: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = seed.to_le_bytes().to_vec();
    out.extend_from_slice(header);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Jobs from several threads at once, on 1-4 workers, sharing parts: each answer is
    /// its own job's.
    #[test]
    fn every_job_gets_its_own_answer(workers in 1usize..5, jobs in 1u64..40, threads in 1usize..5) {
        let dispatcher = Arc::new(Dispatcher::in_process(workers, echo()).unwrap());
        let weights = vec![7u8; 10_000];
        std::thread::scope(|s| {
            for t in 0..threads {
                let (dispatcher, weights) = (Arc::clone(&dispatcher), &weights);
                s.spawn(move || {
                    for i in (t as u64..jobs).step_by(threads) {
                        let data = i.to_be_bytes();
                        let parts: [&[u8]; 2] = [&data, weights];
                        let answer = dispatcher.compute(job(i, b"h", &parts)).unwrap();
                        assert_eq!(answer, expected(i, b"h", &parts));
                    }
                });
            }
        });
        let stats = dispatcher.finish().unwrap();
        prop_assert_eq!(stats.jobs, jobs);
        // The shared weights travel at most once per worker.
        prop_assert!(stats.bytes_cached >= (jobs.saturating_sub(workers as u64)) * 10_000);
        prop_assert!(stats.bytes_sent < (workers as u64 + 1) * 10_000 + jobs * 200);
    }
}

#[test]
fn a_failing_job_is_an_error_naming_its_worker_and_the_next_job_runs() {
    let dispatcher = Dispatcher::in_process(1, echo()).unwrap();
    let err = dispatcher.compute(job(1, b"!", &[])).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("job 1") && msg.contains("rank 1") && msg.contains("refused"),
        "{msg}"
    );
    assert_eq!(
        dispatcher.compute(job(2, b"ok", &[b"p"])).unwrap(),
        expected(2, b"ok", &[b"p"])
    );
    assert!(dispatcher.held().is_empty());
}

#[test]
fn after_finish_jobs_are_refused_not_hung() {
    let dispatcher = Dispatcher::in_process(2, echo()).unwrap();
    dispatcher.finish().unwrap();
    assert!(dispatcher.compute(job(1, b"h", &[])).is_err());
    // Finishing twice is harmless.
    dispatcher.finish().unwrap();
}
