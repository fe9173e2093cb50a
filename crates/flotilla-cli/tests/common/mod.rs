//! Helpers shared by the CLI's integration tests (each test binary uses a part of them).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

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

/// A fresh, empty folder for one test of this process.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
