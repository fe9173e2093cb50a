//! `flotilla run` never destroys what it did not write and never reports a broken run as a
//! result: refused output folders (exit 2, before the run), a locked destination, stale
//! staging folders, runs where every client dropped out or the model diverged (exit 3, the
//! outputs say so).

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, scratch};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `flotilla run` in `cwd` with `--out out` and the tiny config plus `sets`.
fn flotilla(cwd: &Path, out: &str, sets: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(cwd).args(["run", "--quiet", "--out", out]);
    for s in TINY.iter().chain(sets) {
        cmd.arg("--set").arg(s);
    }
    cmd.output().unwrap()
}

/// Every file below `dir` with its contents, in path order.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            let bytes = if path.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            files.push((path, bytes));
        }
    }
    files.sort();
    files
}

#[test]
fn folders_flotilla_did_not_write_are_refused_before_the_run_and_left_intact() {
    let scratch_dir = scratch("refuse");
    let root = scratch_dir.path();
    let cwd = root.join("work");
    fs::create_dir_all(cwd.join("mydocs")).unwrap();
    fs::write(cwd.join("mydocs/thesis.tex"), "years of work").unwrap();
    fs::write(cwd.join("notes.txt"), "keep").unwrap();
    fs::write(root.join("sibling.txt"), "keep too").unwrap();
    let before = snapshot(root);
    let cwd_by_name = format!("../{}", cwd.file_name().unwrap().to_string_lossy());
    for (out, says) in [
        (".", "no folder of its own"),
        ("..", "no folder of its own"),
        (cwd_by_name.as_str(), "working folder"),
        (cwd.to_str().unwrap(), "working folder"),
        ("mydocs", "thesis.tex"),
        ("notes.txt", "is a file"),
        ("/", "no folder of its own"),
    ] {
        let result = flotilla(&cwd, out, &[]);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "--out {out}: {stderr}");
        assert!(
            stderr.contains(says),
            "--out {out}: `{says}` not in {stderr}"
        );
        assert_eq!(snapshot(root), before, "--out {out} changed files");
    }
}

#[test]
fn a_run_replaces_its_own_output_and_removes_stale_staging_folders() {
    let scratch_dir = scratch("replace");
    let dir = scratch_dir.path();
    let first = flotilla(dir, "res", &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(dir.join("res/.flotilla-output").is_file());
    // An interrupted earlier run's staging folder, and a user's look-alike without marker.
    let stale = dir.join(".res.partial-4000000");
    fs::create_dir_all(&stale).unwrap();
    fs::copy(
        dir.join("res/.flotilla-output"),
        stale.join(".flotilla-output"),
    )
    .unwrap();
    let lookalike = dir.join(".res.partial-17");
    fs::create_dir_all(&lookalike).unwrap();
    fs::write(lookalike.join("mine"), "user data").unwrap();
    let metrics = fs::read(dir.join("res/metrics.csv")).unwrap();
    let second = flotilla(dir, "res", &[]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        fs::read(dir.join("res/metrics.csv")).unwrap(),
        metrics,
        "same seed, same bits"
    );
    assert!(!stale.exists());
    assert_eq!(
        fs::read_to_string(lookalike.join("mine")).unwrap(),
        "user data"
    );
    let mut left: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".res.partial-17", "res"],
        "no lock, staging or old folder left"
    );
}

#[test]
fn a_destination_another_run_is_writing_is_refused() {
    let scratch_dir = scratch("busy");
    let dir = scratch_dir.path();
    let lock = fs::File::create(dir.join(".res.lock")).unwrap();
    lock.try_lock().unwrap();
    let result = flotilla(dir, "res", &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another flotilla run"), "{stderr}");
    assert!(!dir.join("res").exists());
    drop(lock);
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_fleet_where_every_client_drops_out_reports_no_result() {
    let scratch_dir = scratch("dropout");
    let dir = scratch_dir.path();
    let result = flotilla(dir, "res", &["fleet.dropout=1.0"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("no update"), "{stdout}");
    assert!(
        stdout.contains("runs: 0 of 4 are results in every model; 0 diverged, 4 never updated"),
        "{stdout}"
    );
    let runs = summary(&dir.join("res"))["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 4);
    for run in &runs {
        for (_, verdict) in run["verdicts"].as_object().unwrap() {
            assert_eq!(verdict["status"], "no_update", "{run}");
        }
        assert_eq!(run["empty_rounds"].as_array().unwrap().len(), 3);
    }
    // Every stage of every run is a row, even with nothing to average.
    let stages = fs::read_to_string(dir.join("res/stages.csv")).unwrap();
    let empty = stages.lines().filter(|l| l.ends_with(",0,0,none,")).count();
    assert_eq!(empty, 3 * (2 + 1 + 1 + 2), "{stages}");
}

#[test]
fn a_diverged_model_is_reported_as_diverged_not_as_a_result() {
    let scratch_dir = scratch("diverged");
    let dir = scratch_dir.path();
    let result = flotilla(
        dir,
        "res",
        &["training.lr=100", "methods=[\"strong_only\"]"],
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("diverged at round 0"), "{stdout}");
    assert!(
        stdout.contains("runs: 0 of 1 are results in every model; 1 diverged, 0 never updated"),
        "{stdout}"
    );
    let s = summary(&dir.join("res"));
    assert_eq!(s["runs"][0]["verdicts"]["target"]["status"], "diverged");
    assert_eq!(s["runs"][0]["verdicts"]["target"]["round"], 0);
    assert!(
        s["methods"][0]["final_accuracy"].is_null(),
        "no mean over a diverged run"
    );
}

#[test]
fn listing_a_bad_thread_count_is_a_named_error() {
    let scratch_dir = scratch("threads");
    let dir = scratch_dir.path();
    for n in ["0", "100000"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        let result = cmd
            .current_dir(dir)
            .args(["run", "--quiet", "--threads", n, "--out", "res"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--threads") && stderr.contains(n),
            "{stderr}"
        );
    }
    assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
}
