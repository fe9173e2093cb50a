//! A whole experiment with its jobs offloaded — the training of every client and every
//! evaluation computed by workers from the job's bytes alone, on a task they rebuilt from
//! the configuration — gives the bits of the experiment computed in place. The workers are
//! threads here (the transport is the only part that differs under MPI; the `mpi` test of
//! flotilla-cli runs the same over ranks).

#![allow(clippy::unwrap_used)]

use flotilla_experiment::experiment::{ExperimentOptions, run_all};
use flotilla_experiment::report::{metrics_csv, stages_csv};
use flotilla_experiment::{ConfigSource, ExperimentConfig, JobServer, Prepared};
use flotilla_fl::Offload;
use flotilla_mpi::Dispatcher;
use std::sync::Arc;

fn prepared() -> Prepared {
    let overrides: Vec<String> = [
        "rounds=3",
        "seeds=2",
        "fleet.clients=20",
        "fleet.strong=4",
        "fleet.dropout=0.2",
        "training.clients_per_round=6",
        "training.local_steps=4",
        "synthetic.train_samples=2000",
        "synthetic.test_samples=300",
        "server_ensemble.steps=5",
        "kd.probe_samples=16",
        r#"methods=["ondevice_kd","server_logit_ensemble","fedbuff","weak_only"]"#,
    ]
    .map(String::from)
    .to_vec();
    let config =
        ExperimentConfig::load(&ConfigSource::resolve("quickstart").unwrap(), &overrides).unwrap();
    Prepared::new(config).unwrap()
}

#[test]
fn offloaded_jobs_give_the_bits_of_jobs_computed_in_place() {
    let mut plain = prepared();
    let options = ExperimentOptions {
        threads: 2,
        ..ExperimentOptions::default()
    };
    let expected = run_all(&mut plain, &options, &mut |_| {}).unwrap();

    let on_workers = Arc::new(prepared());
    let compute = {
        let on_workers = Arc::clone(&on_workers);
        Arc::new(move |job: &flotilla_mpi::WorkerJob| {
            let parts: Vec<&[u8]> = job.parts.iter().map(|p| &p[..]).collect();
            JobServer::new(&on_workers)
                .run(job.kind, job.seed, &job.header, &parts)
                .map_err(|e| e.to_string())
        })
    };
    for workers in [1, 3] {
        let dispatcher = Arc::new(Dispatcher::in_process(workers, compute.clone()).unwrap());
        let options = ExperimentOptions {
            threads: 2,
            offload: Some(Arc::clone(&dispatcher) as Arc<dyn Offload>),
            ..ExperimentOptions::default()
        };
        let mut simulating = prepared();
        let got = run_all(&mut simulating, &options, &mut |_| {}).unwrap();
        let stats = dispatcher.finish().unwrap();
        assert!(stats.jobs > 0, "no job was offloaded");
        assert_eq!(
            metrics_csv(&got),
            metrics_csv(&expected),
            "{workers} workers"
        );
        assert_eq!(stages_csv(&got), stages_csv(&expected), "{workers} workers");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.trace_hash, e.trace_hash, "{workers} workers");
        }
    }
}
