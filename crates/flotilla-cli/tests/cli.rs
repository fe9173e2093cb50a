//! The `flotilla run` command end to end: outputs, thread-count independence, and every
//! kind of configuration mistake (exit code 2, the key and value named, no output folder).

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, scratch};

use std::path::Path;
use std::process::{Command, Output};

fn flotilla(args: &[&str], sets: &[&str], out: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.arg("run")
        .args(args)
        .arg("--quiet")
        .arg("--out")
        .arg(out);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd.output().unwrap()
}

#[test]
fn the_quickstart_writes_every_output_and_the_same_metrics_at_any_thread_count() {
    let scratch_dir = scratch("threads");
    let dir = scratch_dir.path();
    let (one, two) = (dir.join("one"), dir.join("two"));
    let a = flotilla(&["--threads", "1", "--trace"], &TINY, &one);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = flotilla(&["--threads", "2"], &TINY, &two);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let metrics = std::fs::read(one.join("metrics.csv")).unwrap();
    assert_eq!(metrics, std::fs::read(two.join("metrics.csv")).unwrap());
    assert_eq!(
        std::fs::read(one.join("stages.csv")).unwrap(),
        std::fs::read(two.join("stages.csv")).unwrap()
    );
    let text = String::from_utf8(metrics).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("method,seed,round,virtual_time_s,model,test_accuracy,test_loss")
    );
    // Four methods × 3 rounds; weak_only has one model, the others two.
    assert_eq!(lines.count(), 3 * (2 + 2 + 1 + 2) - 3);
    for file in ["summary.json", "accuracy.png", "trace.jsonl"] {
        assert!(one.join(file).is_file(), "{file} missing");
    }
    assert!(!two.join("trace.jsonl").exists());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("summary.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let centralised = run["samples_centralised"].as_u64().unwrap();
        if run["method"] == "server_logit_ensemble" {
            assert!(centralised > 0);
        } else {
            assert_eq!(centralised, 0, "{run}");
        }
        assert!(run["bytes_up"].as_u64().unwrap() > 0);
        assert!(!run["models"].as_object().unwrap().is_empty());
    }
    assert_eq!(summary["config"]["rounds"], 3);
    let table = String::from_utf8_lossy(&a.stdout);
    assert!(table.contains("ondevice_kd") && table.contains("server_logit_ensemble"));
}

/// Runs with `sets` and checks the failure names `key` and `value`, exits with 2 and leaves
/// nothing behind.
fn rejects(sets: &[&str], key: &str, value: &str) {
    let scratch_dir = scratch(&key.replace('.', "_"));
    let dir = scratch_dir.path();
    let out = dir.join("out");
    let result = flotilla(&[], sets, &out);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{sets:?}: {stderr}");
    assert!(
        stderr.contains(key),
        "{sets:?}: `{key}` not named in {stderr}"
    );
    assert!(
        stderr.contains(value),
        "{sets:?}: `{value}` not named in {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "{sets:?} left {left:?}");
}

#[test]
fn configuration_mistakes_are_named_and_leave_no_output() {
    rejects(&["data.aplha=0.5"], "aplha", "unknown field");
    rejects(&["rounds=many"], "rounds", "many");
    rejects(&["data.alpha=0"], "data.alpha", "0");
    rejects(&["data.alpha=-1.5"], "data.alpha", "-1.5");
    rejects(&["fleet.strong=150"], "fleet.strong", "150");
    rejects(&["kd.temperature=0"], "kd.temperature", "0");
    rejects(&["kd.temperature=-2"], "kd.temperature", "-2");
    rejects(
        &[
            "models.target=mlp:32-2048-2048-10",
            "fleet.strong_memory_mb=1",
        ],
        "models.target",
        "mlp:32-2048-2048-10",
    );
    rejects(&["fleet.weak_memory_mb=100"], "fleet.weak_memory_mb", "100");
    rejects(
        &["data.dataset=mnist", "data.path=/no/such/folder"],
        "data.path",
        "/no/such/folder",
    );
    rejects(
        &["methods=[\"ondevice_kd\", \"fedprox\"]"],
        "methods",
        "fedprox",
    );
    rejects(
        &["training.lr_milestones=[0.5, 2.0]"],
        "training.lr_milestones",
        "2",
    );
}

#[test]
fn an_unknown_config_is_named() {
    let scratch_dir = scratch("unknown");
    let dir = scratch_dir.path();
    let out = dir.join("out");
    let result = flotilla(&["no-such-config"], &[], &out);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("no-such-config"));
    assert!(!out.exists());
}
