//! Checkpoints of whole runs: every method resumed from every one of its checkpoints gives
//! the uninterrupted run's metrics, stages and updates; the checkpoint folder refuses what
//! is not its own.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::checkpoints::{CheckpointDir, Manifest};
use flotilla_experiment::report::{metrics_csv, stages_csv, updates_csv};
use flotilla_experiment::{
    ConfigSource, ExperimentConfig, Method, Prepared, RunCheckpoints, RunOptions, RunOutcome,
};
use flotilla_sim::Checkpoint;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn config() -> ExperimentConfig {
    let sets: Vec<String> = [
        "rounds=3",
        "methods=[\"ondevice_kd\", \"server_logit_ensemble\", \"fedbuff\", \"weak_only\"]",
        "fleet.clients=12",
        "fleet.strong=4",
        "training.clients_per_round=5",
        "training.local_steps=3",
        "synthetic.train_samples=2000",
        "synthetic.test_samples=300",
        "server_ensemble.steps=5",
        "kd.probe_samples=8",
        "fleet.dropout=0.2",
        "async.concurrency=4",
        "async.buffer=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let source = ConfigSource::resolve("quickstart").unwrap();
    ExperimentConfig::load(&source, &sets).unwrap()
}

/// The files a run's outcome gives.
fn files(o: &RunOutcome) -> [String; 3] {
    let o = std::slice::from_ref(o);
    [metrics_csv(o), stages_csv(o), updates_csv(o)]
}

/// Runs `method` taking a checkpoint after every version, resuming from `resume` if given;
/// returns the outcome and the checkpoints taken.
fn run(
    prepared: &Prepared,
    method: Method,
    resume: Option<Checkpoint>,
) -> (RunOutcome, Vec<Vec<u8>>) {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let sink = taken.clone();
    let options = RunOptions {
        threads: 2,
        checkpoints: Some(RunCheckpoints {
            every: 1,
            resume,
            save: Box::new(move |c: &Checkpoint| {
                sink.lock().unwrap().push(c.to_bytes()?);
                Ok(())
            }),
        }),
        ..RunOptions::default()
    };
    let outcome = prepared.run(method, 1, options).unwrap();
    let taken = taken.lock().unwrap().clone();
    (outcome, taken)
}

#[test]
fn every_method_resumed_from_any_checkpoint_gives_the_uninterrupted_files() {
    let prepared = Prepared::new(config()).unwrap();
    for method in prepared.config.methods.clone() {
        let plain = prepared.run(method, 1, RunOptions::default()).unwrap();
        let (checkpointed, taken) = run(&prepared, method, None);
        assert_eq!(
            files(&checkpointed),
            files(&plain),
            "{method}: checkpoints change nothing"
        );
        // One at the start, one per version, one at the end.
        assert!(
            taken.len() >= 2 + 3,
            "{method}: {} checkpoints",
            taken.len()
        );
        for (k, bytes) in taken.iter().enumerate() {
            let (resumed, later) = run(
                &prepared,
                method,
                Some(Checkpoint::from_bytes(bytes).unwrap()),
            );
            assert_eq!(
                files(&resumed),
                files(&plain),
                "{method} resumed from checkpoint {k}"
            );
            assert_eq!(
                resumed.trace_hash, checkpointed.trace_hash,
                "{method} from {k}"
            );
            assert_eq!(
                later[..],
                taken[k + 1..],
                "{method} from {k}: the same later checkpoints"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let prepared = Prepared::new(config()).unwrap();
    let (_, taken) = run(&prepared, Method::WeakOnly, None);
    let checkpoint = || Checkpoint::from_bytes(&taken[1]).unwrap();
    let options = |c| RunOptions {
        checkpoints: Some(RunCheckpoints {
            every: 1,
            resume: Some(c),
            save: Box::new(|_: &Checkpoint| Ok(())),
        }),
        ..RunOptions::default()
    };
    let e = prepared
        .run(Method::WeakOnly, 2, options(checkpoint()))
        .unwrap_err();
    assert!(
        e.is_user_error() && e.to_string().contains("another seed"),
        "{e}"
    );
    let e = prepared
        .run(Method::OndeviceKd, 1, options(checkpoint()))
        .unwrap_err();
    assert!(
        e.is_user_error() && e.to_string().contains("checkpoint"),
        "{e}"
    );
}

#[test]
fn the_checkpoint_folder_is_created_once_read_back_and_removes_only_its_files() {
    let dir = std::env::temp_dir().join(format!("flotilla-checkpoints-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let manifest = Manifest {
        format: 1,
        cwd: PathBuf::from("/"),
        config: config(),
        out: PathBuf::from("out/x"),
        threads: 2,
        trace: true,
        init: Vec::new(),
        every: 3,
    };
    let created = CheckpointDir::create(&dir, &manifest).unwrap();
    let (opened, read) = CheckpointDir::open(&dir).unwrap();
    assert_eq!(
        read, manifest,
        "the manifest reads back equal, floats and all"
    );
    assert_eq!(opened, created);
    let again = CheckpointDir::create(&dir, &manifest)
        .unwrap_err()
        .to_string();
    assert!(again.contains("flotilla resume"), "{again}");
    let zero = Manifest {
        every: 0,
        ..manifest.clone()
    };
    let other = dir.with_extension("zero");
    assert!(
        CheckpointDir::create(&other, &zero)
            .unwrap_err()
            .to_string()
            .contains("at least 1")
    );
    assert!(!other.exists());

    fs::write(dir.join("notes.txt"), "mine").unwrap();
    opened.remove().unwrap();
    assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    assert!(!dir.join("experiment.json").exists());
    fs::remove_dir_all(&dir).unwrap();
}
