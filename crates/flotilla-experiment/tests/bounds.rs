//! Models too large to train and work too large to count are refused when the experiment
//! is prepared, as configuration errors naming the key and the value, before the data or
//! any weights are allocated.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::{ConfigError, ConfigSource, ExperimentConfig, ExperimentError, Prepared};
use std::time::{Duration, Instant};

fn prepare(sets: &[&str]) -> Result<Prepared, ExperimentError> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let source = ConfigSource::resolve("quickstart").unwrap();
    Prepared::new(ExperimentConfig::load(&source, &sets)?)
}

fn refused(sets: &[&str], key: &str, value: &str) -> ConfigError {
    match prepare(sets) {
        Err(ExperimentError::Config(e)) => {
            assert_eq!(
                (e.key.as_str(), e.value.as_str()),
                (key, value),
                "{sets:?}: {e}"
            );
            e
        }
        other => panic!("{sets:?}: {other:?}"),
    }
}

#[test]
fn a_model_over_the_memory_cap_is_refused_without_building_its_weights() {
    let started = Instant::now();
    // ≈ 4.3·10⁹ parameters: 52 GB to train, counted from the spec.
    let spec = "mlp:32-100000000-10";
    let e = refused(&[&format!("models.target={spec}")], "models.target", spec);
    assert!(
        e.reason.contains("16 GiB") && e.reason.contains("GiB to train"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let spec = "mlp:32-16-100000000-10";
    let e = refused(
        &[&format!("models.auxiliary={spec}")],
        "models.auxiliary",
        spec,
    );
    assert!(e.reason.contains("16 GiB"), "{e}");
}

#[test]
fn a_model_whose_counts_overflow_is_refused() {
    let spec = "mlp:32-4611686018427387904-10";
    let e = refused(&[&format!("models.target={spec}")], "models.target", spec);
    assert!(e.reason.contains("overflows"), "{e}");
}

#[test]
fn the_server_batch_counts_against_the_cap_when_the_server_trains() {
    let sets = [
        "models.target=mlp:32-2048-10",
        "server_ensemble.batch_size=1000000",
    ];
    let e = refused(&sets, "server_ensemble.batch_size", "1000000");
    assert!(
        e.reason.contains("mlp:32-2048-10") && e.reason.contains("16 GiB"),
        "{e}"
    );
    // Without server distillation that batch is never used.
    let mut without = sets.to_vec();
    without.push("methods=[\"ondevice_kd\", \"strong_only\"]");
    prepare(&without).unwrap();
}

#[test]
fn local_and_server_work_that_cannot_be_counted_is_refused() {
    let e = refused(
        &["training.local_steps=1000000000000000000"],
        "training.local_steps",
        "1000000000000000000",
    );
    assert!(
        e.reason.contains("FLOP count") && e.reason.contains("overflows u64"),
        "{e}"
    );
    let e = refused(
        &["server_ensemble.steps=1000000000000000000"],
        "server_ensemble.steps",
        "1000000000000000000",
    );
    assert!(e.reason.contains("overflows u64"), "{e}");
    // Huge but countable schedules are accepted: memory no longer grows with them.
    prepare(&[
        "training.local_steps=10000000000",
        "server_ensemble.steps=10000000000",
    ])
    .unwrap();
}
