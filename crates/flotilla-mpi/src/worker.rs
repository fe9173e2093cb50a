//! A worker rank's side: receive a job, compute it, answer, until rank 0 says stop.

use crate::cache::Store;
use crate::frame::{self, Done, ToWorker};
use crate::{Backoff, MpiError, Transport};
use flotilla_fl::OffloadKind;
use std::sync::Arc;
use std::time::Instant;

/// A job as a worker receives it, its parts resolved from the frame and the cache.
#[derive(Debug, Clone)]
pub struct WorkerJob {
    /// What it computes.
    pub kind: OffloadKind,
    /// The seed of its task.
    pub seed: u64,
    /// The small remainder of its inputs.
    pub header: Vec<u8>,
    /// Its large inputs, in order.
    pub parts: Vec<Arc<[u8]>>,
}

/// What a worker did, measured in wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServeStats {
    /// Jobs computed (failed ones included).
    pub jobs: u64,
    /// Time spent computing \[s\].
    pub compute_s: f64,
}

/// Serves jobs from rank 0 over `transport` with `compute` until rank 0 says stop. A job
/// that fails is answered with its error and the worker goes on; a frame it cannot read
/// ends it with an error.
pub(crate) fn serve<T: Transport>(
    transport: &mut T,
    mut compute: impl FnMut(&WorkerJob) -> Result<Vec<u8>, String>,
) -> Result<ServeStats, MpiError> {
    let mut store = Store::default();
    let mut stats = ServeStats::default();
    let mut backoff = Backoff::default();
    loop {
        let Some((from, bytes)) = transport.try_receive()? else {
            backoff.wait();
            continue;
        };
        backoff.reset();
        if from != 0 {
            return Err(MpiError::Protocol(format!(
                "a frame from rank {from}; workers hear from rank 0 only"
            )));
        }
        let (envelope, raw): (ToWorker, &[u8]) = frame::decode(&bytes)?;
        let ToWorker::Job {
            id,
            kind,
            seed,
            header,
            parts,
            evict,
        } = envelope
        else {
            return Ok(stats);
        };
        let mut lengths = vec![header];
        lengths.extend(parts.iter().filter_map(|p| p.inline));
        let raw = frame::split(raw, &lengths)?;
        let started = Instant::now();
        let outcome = store.resolve(&parts, &raw[1..], &evict).and_then(|parts| {
            compute(&WorkerJob {
                kind,
                seed,
                header: raw[0].to_vec(),
                parts,
            })
        });
        let compute_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        stats.jobs += 1;
        stats.compute_s += started.elapsed().as_secs_f64();
        let (failed, output) = match outcome {
            Ok(output) => (None, output),
            Err(reason) => (Some(reason), Vec::new()),
        };
        let answer = frame::encode(
            &Done {
                id,
                compute_ns,
                failed,
            },
            &[&output],
        )?;
        transport.send(0, &answer)?;
    }
}
