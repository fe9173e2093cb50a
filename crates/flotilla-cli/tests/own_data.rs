//! Your own data and split: `data.dataset = "npz"`, `data.split = "file"` and
//! `--export-split`, end to end: a split exported and read back replays to the same bytes,
//! a partition file decides what each client holds, and every bad input exits with 2.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, scratch, stderr};

use flotilla_fl::ClientData;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's small `.npz` task: 3 classes, 8 features, 240 train, 60 test samples.
fn blobs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flotilla-data/tests/fixtures/blobs.npz")
}

/// The settings of a run on `npz` (6 clients, the first 2 strong, 2 rounds).
fn npz_settings(npz: &Path) -> Vec<String> {
    [
        "rounds=2",
        "data.dataset=npz",
        "fleet.clients=6",
        "fleet.strong=2",
        "training.clients_per_round=3",
        "training.local_steps=3",
        "models.target=mlp:8-256-256-3",
        "models.auxiliary=mlp:8-16-3",
        "server_ensemble.steps=5",
        "kd.probe_samples=4",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("data.path={}", npz.display())])
    .collect()
}

fn flotilla_run(out: &Path, sets: &[String], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(["run", "--quiet", "--threads", "2", "--out"])
        .arg(out);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.args(extra).output().unwrap()
}

fn tiny() -> Vec<String> {
    TINY.iter().map(|s| s.to_string()).collect()
}

/// `split.json`'s clients as (labeled, unlabeled) lists.
fn clients_of(path: &Path) -> Vec<(Vec<usize>, Vec<usize>)> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let list = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array().map_or(Vec::new(), |a| {
            a.iter().map(|i| i.as_u64().unwrap() as usize).collect()
        })
    };
    json["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (list(&c["labeled"]), list(&c["unlabeled"])))
        .collect()
}

#[test]
fn an_exported_split_read_back_gives_byte_identical_metrics() {
    let scratch_dir = scratch("own-roundtrip");
    let dir = scratch_dir.path();
    let split = dir.join("split.json");
    let drawn = flotilla_run(
        &dir.join("drawn"),
        &tiny(),
        &["--export-split", split.to_str().unwrap()],
    );
    assert!(drawn.status.success(), "{}", stderr(&drawn));
    let replay_sets: Vec<String> = tiny()
        .into_iter()
        .chain([
            "data.split=file".to_string(),
            format!("data.partition_file={}", split.display()),
        ])
        .collect();
    let replayed = flotilla_run(&dir.join("replayed"), &replay_sets, &[]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    for file in ["metrics.csv", "stages.csv"] {
        let a = std::fs::read(dir.join("drawn").join(file)).unwrap();
        let b = std::fs::read(dir.join("replayed").join(file)).unwrap();
        assert!(!a.is_empty());
        assert!(
            a == b,
            "{file} differs between the drawn and the replayed split"
        );
    }
    // The exported split covers the training set once, 20 clients, the 4 strong ones
    // holding the unlabeled data.
    let clients = clients_of(&split);
    assert_eq!(clients.len(), 20);
    let mut all: Vec<usize> = clients
        .iter()
        .flat_map(|(l, u)| l.iter().chain(u).copied())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..3000).collect::<Vec<_>>());
    assert!(clients[4..].iter().all(|(_, u)| u.is_empty()));
    assert!(clients[..4].iter().all(|(_, u)| !u.is_empty()));
}

#[test]
fn export_split_refuses_an_existing_file_unless_forced_and_names_seeds() {
    let scratch_dir = scratch("own-export");
    let dir = scratch_dir.path();
    let split = dir.join("split.json");
    std::fs::write(&split, "mine").unwrap();
    let refused = flotilla_run(
        &dir.join("a"),
        &tiny(),
        &["--export-split", split.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--force-export"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_to_string(&split).unwrap(), "mine");
    assert!(
        !dir.join("a").exists(),
        "nothing runs when the export is refused"
    );
    let forced = flotilla_run(
        &dir.join("b"),
        &tiny(),
        &["--export-split", split.to_str().unwrap(), "--force-export"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(clients_of(&split).len(), 20);
    // Several seeds: one file per seed, and their splits differ.
    let two = flotilla_run(
        &dir.join("c"),
        &tiny(),
        &["--seeds", "2", "--export-split", split.to_str().unwrap()],
    );
    assert!(two.status.success(), "{}", stderr(&two));
    let (s1, s2) = (dir.join("split_seed1.json"), dir.join("split_seed2.json"));
    assert_eq!(
        clients_of(&s1),
        clients_of(&split),
        "seed 1's split as before"
    );
    assert_ne!(clients_of(&s1), clients_of(&s2));
    // No leftovers of the temporary files.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.contains("partial"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["split.json", "split_seed1.json", "split_seed2.json"]
    );
}

/// A partition of the blobs' 240 training samples over 6 clients: client `c` gets every
/// sample `i` with `i % 8 == c` as labeled (in descending order, to check order is kept),
/// and the strong clients 0 and 1 also those with `i % 8 == 6 + c` as unlabeled.
fn blobs_partition() -> Vec<(Vec<usize>, Vec<usize>)> {
    (0..6)
        .map(|c| {
            let labeled: Vec<usize> = (0..240).rev().filter(|i| i % 8 == c).collect();
            let unlabeled = if c < 2 {
                (0..240).filter(|i| i % 8 == 6 + c).collect()
            } else {
                Vec::new()
            };
            (labeled, unlabeled)
        })
        .collect()
}

fn partition_json(clients: &[(Vec<usize>, Vec<usize>)]) -> String {
    let entries: Vec<String> = clients
        .iter()
        .map(|(l, u)| format!("{{\"labeled\": {l:?}, \"unlabeled\": {u:?}}}"))
        .collect();
    format!("{{\"clients\": [{}]}}", entries.join(", "))
}

/// Runs two rounds on `npz` with the partition file `partition` and checks the clients were
/// handed exactly the file's samples: the split the run used (exported alongside) equals the
/// file, and server_logit_ensemble moved exactly the file's unlabeled samples.
fn check_run_follows_the_file(dir: &Path, npz: &Path, partition: &Path) {
    let expected = clients_of(partition);
    let used = dir.join("used.json");
    let sets: Vec<String> = npz_settings(npz)
        .into_iter()
        .chain([
            "data.split=file".to_string(),
            format!("data.partition_file={}", partition.display()),
        ])
        .collect();
    let out = dir.join("out");
    let run = flotilla_run(
        &out,
        &sets,
        &["--export-split", used.to_str().unwrap(), "--trace"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(clients_of(&used), expected);
    // What each client trained on, from the run itself: every participant records its
    // sample lists' sizes and fingerprints at start (client c is node c + 1), in every run.
    let trace = std::fs::read_to_string(out.join("trace.jsonl")).unwrap();
    let mut seen = 0;
    for line in trace.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let (Some(label), Some(node)) = (record["label"].as_str(), record["node"].as_u64()) else {
            continue;
        };
        let Some(kind) = label.strip_suffix("_fingerprint") else {
            continue;
        };
        let (labeled, unlabeled) = &expected[node as usize - 1];
        let indices = if kind == "labeled" {
            labeled
        } else {
            unlabeled
        };
        assert_eq!(
            record["value"].as_f64().unwrap(),
            ClientData::fingerprint(indices) as f64,
            "client {} {kind}",
            node - 1
        );
        seen += 1;
    }
    // Two lists per client, in each of the four methods' runs.
    assert_eq!(seen, 2 * expected.len() * 4, "{seen} fingerprints");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let moved = summary["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == "server_logit_ensemble")
        .unwrap()["samples_centralised"]
        .as_u64()
        .unwrap();
    let unlabeled: usize = expected.iter().map(|(_, u)| u.len()).sum();
    assert_eq!(moved as usize, unlabeled);
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(metrics.lines().count() > 1, "{metrics}");
}

#[test]
fn a_partition_file_decides_what_each_client_holds() {
    let scratch_dir = scratch("own-file");
    let dir = scratch_dir.path();
    let partition = dir.join("partition.json");
    std::fs::write(&partition, partition_json(&blobs_partition())).unwrap();
    check_run_follows_the_file(dir, &blobs(), &partition);
}

/// The same from Python: numpy writes the `.npz` and the partition file (skipped, with a
/// note, where numpy is not installed).
#[test]
fn numpy_written_data_and_split_run() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        eprintln!("note: numpy_written_data_and_split_run skipped: python3 with numpy not found");
        return;
    }
    let scratch_dir = scratch("own-numpy");
    let dir = scratch_dir.path();
    // The README's snippet, with a small task.
    let script = r#"
import json, numpy as np
rng = np.random.default_rng(0)
y_train, y_test = rng.integers(0, 3, 240), rng.integers(0, 3, 60)
x_train = (np.eye(3)[y_train].repeat(3, 1)[:, :8] + rng.normal(0, .3, (240, 8))).astype(np.float32)
x_test = (np.eye(3)[y_test].repeat(3, 1)[:, :8] + rng.normal(0, .3, (60, 8))).astype(np.float32)
np.savez_compressed("data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
parts = np.array_split(rng.permutation(240), 8)
clients = [{"labeled": p.tolist()} for p in parts[:6]]
clients[0]["unlabeled"], clients[1]["unlabeled"] = parts[6].tolist(), parts[7].tolist()
json.dump({"clients": clients}, open("split.json", "w"))
"#;
    let py = Command::new("python3")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));
    check_run_follows_the_file(dir, &dir.join("data.npz"), &dir.join("split.json"));
}

#[test]
fn every_bad_partition_or_npz_exits_2_naming_the_problem() {
    let scratch_dir = scratch("own-bad");
    let dir = scratch_dir.path();
    let good = blobs_partition();
    let mut out_of_range = good.clone();
    out_of_range[3].0.push(240);
    let mut shared = good.clone();
    shared[4].0.push(good[2].0[5]);
    let mut own_lists = good.clone();
    own_lists[1].1.push(good[1].0[0]);
    let mut weak_unlabeled = good.clone();
    weak_unlabeled[5].1 = good[0].1.clone();
    weak_unlabeled[0].1.clear();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "range",
            partition_json(&out_of_range),
            "clients[3].labeled[30]",
        ),
        ("shared", partition_json(&shared), "client 2's labeled[5]"),
        ("own", partition_json(&own_lists), "its own labeled[0]"),
        (
            "count",
            partition_json(&good[..5]),
            "lists 5 clients but fleet.clients = 6",
        ),
        (
            "weak",
            partition_json(&weak_unlabeled),
            "client 5 is not a strong client but holds 30 unlabeled indices",
        ),
        ("syntax", "{\"clients\": [".to_string(), "line 1"),
        (
            "size",
            "{\"train_samples\": 60000, \"clients\": []}".to_string(),
            "60000",
        ),
    ];
    for (name, text, expected) in cases {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, text).unwrap();
        let sets: Vec<String> = npz_settings(&blobs())
            .into_iter()
            .chain([
                "data.split=file".to_string(),
                format!("data.partition_file={}", file.display()),
            ])
            .collect();
        let run = flotilla_run(&dir.join(name), &sets, &[]);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(expected), "{name}: `{err}` lacks `{expected}`");
        assert!(
            err.contains(&format!("{name}.json")),
            "{name}: the file is named: {err}"
        );
        assert!(!dir.join(name).exists(), "{name}: no output folder");
    }
    // Configuration mistakes, named by key.
    let split_file = dir.join("range.json");
    let missing_npz = dir.join("absent.npz");
    let not_zip = dir.join("not.npz");
    std::fs::write(&not_zip, "x,y\n").unwrap();
    // An empty zip archive: only the end-of-central-directory record.
    let empty_zip = dir.join("empty.npz");
    std::fs::write(&empty_zip, [&b"PK\x05\x06"[..], &[0u8; 18]].concat()).unwrap();
    let with = |extra: &[String]| -> Vec<String> {
        npz_settings(&blobs())
            .into_iter()
            .chain(extra.iter().cloned())
            .collect()
    };
    let config_cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no-file",
            with(&["data.split=file".into()]),
            "data.partition_file` = (missing)",
        ),
        (
            "file-unused",
            with(&[format!("data.partition_file={}", split_file.display())]),
            "is only read with data.split = \"file\"",
        ),
        (
            "npz-absent",
            with(&[format!("data.path={}", missing_npz.display())]),
            "is not a file",
        ),
        (
            "not-zip",
            with(&[format!("data.path={}", not_zip.display())]),
            "not a readable .npz (zip) archive",
        ),
        (
            "empty-zip",
            with(&[format!("data.path={}", empty_zip.display())]),
            "array `x_train`: missing",
        ),
        (
            "standardize",
            with(&["data.standardize=per_pixel".into()]),
            "data.standardize",
        ),
    ];
    for (name, sets, expected) in config_cases {
        let run = flotilla_run(&dir.join(name), &sets, &[]);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(expected), "{name}: `{err}` lacks `{expected}`");
    }
}

#[test]
fn standardize_is_a_choice_that_changes_the_run() {
    let scratch_dir = scratch("own-standardize");
    let dir = scratch_dir.path();
    let mut runs = Vec::new();
    for choice in ["none", "per_feature", "per_channel"] {
        let sets: Vec<String> = npz_settings(&blobs())
            .into_iter()
            .chain([format!("data.standardize={choice}")])
            .collect();
        let out = dir.join(choice);
        let run = flotilla_run(&out, &sets, &[]);
        assert!(run.status.success(), "{choice}: {}", stderr(&run));
        runs.push(std::fs::read(out.join("metrics.csv")).unwrap());
    }
    // The default for npz is `none`; flat features make per_channel per_feature.
    let default = dir.join("default");
    let run = flotilla_run(&default, &npz_settings(&blobs()), &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read(default.join("metrics.csv")).unwrap(), runs[0]);
    assert_ne!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
}
