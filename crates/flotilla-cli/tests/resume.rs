//! `flotilla run --checkpoint-every` killed with SIGKILL at three points, then `flotilla
//! resume`: the outputs are the uninterrupted run's, byte for byte.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, flotilla, refused, scratch, stderr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every method of the quickstart, on a tiny fleet with a few more rounds than [`TINY`]
/// so that each run takes several checkpoints.
fn sets() -> Vec<String> {
    let mut sets: Vec<String> = TINY.iter().map(|s| (*s).to_string()).collect();
    sets.push("rounds=8".into());
    sets.push("seeds=2".into());
    sets.push("fleet.dropout=0.1".into());
    sets
}

fn args<'a>(sets: &'a [String], out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "quickstart", "--quiet", "--trace", "--threads", "2"];
    args.extend(["--out", out]);
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(extra);
    args
}

/// Starts `flotilla` with `args` in the background.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The files of `dir` whose names start with `prefix`.
fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    name.starts_with(prefix) && name.ends_with(".ckpt")
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Waits until `ready` holds, then kills `child` with SIGKILL and returns what it printed
/// on stderr; fails if the child ended first (the kill point was missed) or nothing
/// happened for two minutes.
fn kill_when(mut child: Child, what: &str, ready: impl Fn() -> bool) -> String {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the run ended ({status}) before the kill point ({what}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never reached: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{what}: killed, not finished");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

/// How many runs a resume said it continued from a checkpoint.
fn resumed(stderr: &str) -> usize {
    stderr.matches("resumed from its checkpoint").count()
}

#[test]
fn a_run_killed_three_times_and_resumed_gives_the_uninterrupted_outputs() {
    let scratch_dir = scratch("resume");
    let dir = scratch_dir.path();
    let sets = sets();
    let reference = dir.join("reference");
    let reference_str = reference.to_str().unwrap();
    let plain = flotilla(&args(&sets, reference_str, &[]));
    assert!(
        plain.status.code().is_some_and(|c| c == 0 || c == 3),
        "{}",
        stderr(&plain)
    );

    let out = dir.join("killed");
    let out_str = out.to_str().unwrap();
    let checkpoints = dir.join("killed.checkpoint");
    let resume = ["resume", checkpoints.to_str().unwrap(), "--quiet"];

    // 1. Before any run took a checkpoint: only the manifest is there.
    let child = spawn(&args(&sets, out_str, &["--checkpoint-every", "1"]));
    kill_when(child, "the manifest written", || {
        checkpoints.join("experiment.json").is_file()
    });
    // 2. In the middle of the first run, after its first checkpoint.
    let second = kill_when(spawn(&resume), "run 0 checkpointed", || {
        !files(&checkpoints, "run-0-").is_empty()
    });
    assert_eq!(resumed(&second), 0, "nothing to resume yet: {second}");
    // 3. In a later run, after earlier runs finished.
    let third = kill_when(spawn(&resume), "run 3 checkpointed", || {
        !files(&checkpoints, "run-3-").is_empty()
    });
    assert!(
        resumed(&third) >= 1,
        "run 0 goes on from its checkpoint: {third}"
    );
    assert!(!out.exists(), "a killed run leaves no output");
    let done = flotilla(&resume);
    assert!(
        done.status.code().is_some_and(|c| c == 0 || c == 3),
        "{}",
        stderr(&done)
    );
    // Runs 0 to 3 are not redone: each continues from its checkpoint (the finished ones
    // from their end).
    assert!(resumed(&stderr(&done)) >= 4, "{}", stderr(&done));

    for name in ["metrics.csv", "stages.csv", "updates.csv", "trace.jsonl"] {
        let a = std::fs::read(reference.join(name)).unwrap();
        let b = std::fs::read(out.join(name)).unwrap();
        assert!(a == b, "{name} differs after the kills and resumes");
    }
    assert!(
        !checkpoints.exists(),
        "the checkpoint folder is removed at the end"
    );
}

#[test]
fn resume_refuses_what_is_not_an_unfinished_experiment() {
    let scratch_dir = scratch("resume-bad");
    let dir = scratch_dir.path();
    let missing = dir.join("nothing-here");
    let output = flotilla(&["resume", missing.to_str().unwrap()]);
    refused(&"a missing folder", &output, &["experiment.json"]);
    std::fs::write(dir.join("experiment.json"), b"{\"format\": 1}").unwrap();
    let output = flotilla(&["resume", dir.to_str().unwrap()]);
    refused(
        &"a bad manifest",
        &output,
        &["experiment.json", "not a manifest"],
    );

    // A checkpoint folder that exists is never reused by a new run.
    let out = dir.join("out");
    let taken = dir.join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), b"mine").unwrap();
    let sets = sets();
    let output = flotilla(&args(
        &sets,
        out.to_str().unwrap(),
        &[
            "--checkpoint-every",
            "1",
            "--checkpoint-dir",
            taken.to_str().unwrap(),
        ],
    ));
    refused(
        &"an existing checkpoint folder",
        &output,
        &["--checkpoint-dir"],
    );
    assert_eq!(std::fs::read(taken.join("notes.txt")).unwrap(), b"mine");
    assert!(!out.exists());
}
