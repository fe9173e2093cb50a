//! Helpers shared by the CLI's integration tests (each test binary uses a part of them).

#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Command, Output};

/// A quickstart small enough for a test: 20 clients (4 strong), 3 rounds, 3k samples.
pub(crate) const TINY: [&str; 9] = [
    "rounds=3",
    "fleet.clients=20",
    "fleet.strong=4",
    "training.clients_per_round=5",
    "training.local_steps=5",
    "synthetic.train_samples=3000",
    "synthetic.test_samples=500",
    "server_ensemble.steps=10",
    "kd.probe_samples=16",
];

/// A fresh, empty folder for one test, removed with everything in it when the guard drops.
pub(crate) fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("flotilla-cli-{name}-"))
        .tempdir()
        .unwrap()
}

/// The `flotilla` binary run with `args`.
pub(crate) fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .output()
        .unwrap()
}

/// What `output` printed on stderr.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code 2 and every one of `named` in stderr; `what` says which call failed.
pub(crate) fn refused(what: &dyn std::fmt::Debug, output: &Output, named: &[&str]) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{what:?}: {stderr}");
    for n in named {
        assert!(stderr.contains(n), "{what:?}: `{n}` not named in {stderr}");
    }
}
