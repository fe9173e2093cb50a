//! Sizes beyond what a run can hold or count, through the real binary: each is refused
//! with exit code 2 before anything is allocated, the error names the key (or spec) and
//! the value, and `run` leaves no output folder behind.

#![allow(clippy::unwrap_used)]

mod common;

use common::{flotilla, refused, scratch};

use std::time::{Duration, Instant};

/// `flotilla run --set` each of `sets` (and `extra` arguments) must be refused naming
/// `key` and `value`, quickly, with no output folder and nothing else left behind.
fn run_rejects(sets: &[&str], extra: &[&str], key: &str, value: &str) {
    let scratch_dir = scratch(&key.replace(['.', '-'], "_"));
    let dir = scratch_dir.path();
    let out = dir.join("out");
    let mut args = vec!["run", "--quiet", "--out", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(extra);
    let started = Instant::now();
    let output = flotilla(&args);
    refused(&args, &output, &[key, value]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{args:?} took {:?}",
        started.elapsed()
    );
    assert!(!out.exists(), "{args:?} created {}", out.display());
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "{args:?} left {left:?}");
}

#[test]
fn seeds_are_bounded() {
    run_rejects(&[], &["--seeds", "1000000000000"], "seeds", "1000000000000");
    run_rejects(&["seeds=10001"], &[], "seeds", "10001");
}

#[test]
fn a_method_listed_twice_is_refused() {
    run_rejects(
        &["methods=[\"strong_only\", \"strong_only\"]"],
        &[],
        "methods[1]",
        "strong_only",
    );
}

#[test]
fn local_work_that_cannot_be_counted_is_refused() {
    run_rejects(
        &["training.local_steps=1000000000000000000"],
        &[],
        "training.local_steps",
        "1000000000000000000",
    );
}

#[test]
fn datasets_too_large_to_hold_are_refused() {
    run_rejects(
        &["synthetic.train_samples=100000000000"],
        &[],
        "synthetic.train_samples",
        "100000000000",
    );
    run_rejects(
        &["synthetic.test_samples=100000000000"],
        &[],
        "synthetic.test_samples",
        "100000000000",
    );
    run_rejects(
        &["synthetic.dim=4611686018427387904"],
        &[],
        "synthetic.dim",
        "4611686018427387904",
    );
    run_rejects(
        &["synthetic.test_samples=0"],
        &[],
        "synthetic.test_samples",
        "0",
    );
}

#[test]
fn models_too_large_to_train_or_count_are_refused() {
    let spec = "mlp:32-100000000-10";
    run_rejects(
        &[&format!("models.target={spec}")],
        &[],
        "models.target",
        spec,
    );
    let spec = "mlp:32-4611686018427387904-10";
    run_rejects(
        &[&format!("models.target={spec}")],
        &[],
        "models.target",
        spec,
    );
}

#[test]
fn durations_beyond_the_bound_are_refused() {
    run_rejects(
        &["training.stage_timeout_s=1e18"],
        &[],
        "training.stage_timeout_s",
        "1000000000000000000",
    );
}

#[test]
fn other_sizing_keys_are_bounded() {
    for (set, key, value) in [
        ("fleet.clients=1000000000", "fleet.clients", "1000000000"),
        (
            "training.batch_size=1000000000",
            "training.batch_size",
            "1000000000",
        ),
        (
            "server_ensemble.batch_size=1000000000",
            "server_ensemble.batch_size",
            "1000000000",
        ),
        (
            "data.unlabeled_shards_per_strong=1000000000",
            "data.unlabeled_shards_per_strong",
            "1000000000",
        ),
        ("rounds=4000000000", "rounds", "4000000000"),
    ] {
        run_rejects(&[set], &[], key, value);
    }
}

#[test]
fn models_lists_counts_that_overflow_as_an_error_naming_the_spec() {
    let spec = "mlp:32-4611686018427387904-10";
    let args = ["models", spec];
    refused(&args, &flotilla(&args), &[spec, "overflows"]);
    // FLOPs only: 2³¹·2³² weights fit, 2·2³¹·2³² FLOPs do not.
    let spec = "mlp:32-2147483648-4294967296-10";
    let args = ["models", spec];
    refused(&args, &flotilla(&args), &[spec, "FLOP count overflows"]);
    // A large but countable model is listed, marked as over the training limit.
    let args = ["models", "mlp:32-100000000-10"];
    let output = flotilla(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("4300000010") && stdout.contains("over the 16 GiB limit"),
        "{stdout}"
    );
}

#[test]
fn train_refuses_a_model_over_the_memory_cap_before_loading_anything() {
    let spec = "mlp:32-100000000-10";
    let args = ["train", "--model", spec, "--epochs", "1", "--quiet"];
    let started = Instant::now();
    let output = flotilla(&args);
    refused(&args, &output, &[spec, "16 GiB"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // Refused before the data was loaded (that line would come first).
    assert!(!String::from_utf8_lossy(&output.stdout).contains("train /"));
    let args = [
        "train",
        "--model",
        "mlp:32-8-10",
        "--batch",
        "4611686018427387904",
    ];
    refused(&args, &flotilla(&args), &["mlp:32-8-10", "training memory"]);
}
