//! `flotilla run` under `mpirun` gives the single process's bits, and a dead worker ends
//! the run with an error naming it. Needs the `mpi` feature and Open MPI's `mpirun`
//! (`cargo test -p flotilla-cli --features mpi --test mpi`; CI installs both).

#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, scratch};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `flotilla run args…` on `np` ranks (oversubscribed: CI has 2 cores).
fn mpirun(np: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(np.to_string())
        .arg(env!("CARGO_BIN_EXE_flotilla"));
    cmd
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `config` with `sets` plainly and on 1, 2 and 4 ranks; every `metrics.csv` (and
/// `stages.csv`) must be the plain run's, byte for byte.
fn same_bits_on_any_ranks(name: &str, config: &str, sets: &[&str]) {
    let scratch_dir = scratch(name);
    let dir = scratch_dir.path();
    let mut args = vec!["run".to_string(), config.to_string(), "--quiet".into()];
    for s in sets {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    let out = |tag: &str| dir.join(tag).display().to_string();
    // The real datasets beside the checkout, as the README's commands find them.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
    let plain = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .env("FLOTILLA_DATA", data)
        .args(&args)
        .args(["--out", &out("plain")])
        .output()
        .unwrap();
    check(&plain, "plain run");
    let read = |tag: &str, file: &str| std::fs::read(Path::new(&out(tag)).join(file)).unwrap();
    for np in [1, 2, 4] {
        let tag = format!("np{np}");
        let run = mpirun(np)
            .env("FLOTILLA_DATA", data)
            .args(&args)
            .args(["--out", &out(&tag)])
            .output()
            .unwrap();
        check(&run, &tag);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains(&format!("{} job worker", np - 1)),
            "{tag}: {stderr}"
        );
        for file in ["metrics.csv", "stages.csv"] {
            assert!(
                read("plain", file) == read(&tag, file),
                "{tag}: {file} differs from the single process's"
            );
        }
    }
}

#[test]
fn quickstart_gives_the_same_bits_on_1_2_and_4_ranks() {
    same_bits_on_any_ranks("mpi-quickstart", "quickstart", &TINY);
}

#[test]
fn cifar10_gives_the_same_bits_on_1_2_and_4_ranks() {
    same_bits_on_any_ranks(
        "mpi-cifar",
        "cifar10_small",
        &[
            "rounds=1",
            "training.local_steps=2",
            "training.clients_per_round=4",
            "training.strong_per_round=2",
            "server_ensemble.steps=2",
            // ResNet-20's batch norm (running statistics travel with the weights).
            r#"models.target="resnet20:0.25""#,
            r#"models.auxiliary="resnet20:0.125""#,
            "fleet.weak_memory_mb=40.0",
            r#"methods=["ondevice_kd","server_logit_ensemble"]"#,
        ],
    );
}

/// The rank of process `pid` in its MPI job, from its environment.
fn rank_of(pid: u32) -> Option<u32> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK="))
        .and_then(|r| r.parse().ok())
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent is the second field after the command's closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_worker_ends_the_run_within_seconds_naming_its_rank() {
    let scratch_dir = scratch("mpi-kill");
    let dir = scratch_dir.path();
    let mut sets = TINY.to_vec();
    sets.retain(|s| !s.starts_with("rounds="));
    sets.push("rounds=400");
    let mut cmd = mpirun(3);
    cmd.args(["run", "quickstart", "--quiet", "--out"])
        .arg(dir.join("out"));
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mpirun_pid = child.id();
    // Wait for the ranks to be up and training, then kill rank 2.
    let started = Instant::now();
    let victim = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rank 2 never started"
        );
        if let Some(pid) = children(mpirun_pid)
            .into_iter()
            .find(|&p| rank_of(p) == Some(2))
        {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("rank 2"),
        "the dead rank is not named: {stderr}"
    );
    assert!(
        stderr.contains("ended from outside"),
        "rank 0 did not report: {stderr}"
    );
    // Nothing was written to the output folder.
    assert!(!dir.join("out").join("metrics.csv").exists());
}
