//! Fleets from config through the real binary: the three-group example prints its fleet and
//! runs with no Rust, reporting participation per group; a mistake in a group key or in a
//! trace file exits 2 naming the key and value, or the file and line.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, flotilla, refused, scratch};
use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleets/three_groups.toml")
}

#[test]
fn the_three_group_example_prints_its_fleet() {
    let output = flotilla(&["fleet", example().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "edge",
        "mid phones",
        "low phones",
        "(server)",
        "train wl + KD",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
}

#[test]
fn the_three_group_example_runs_and_reports_participation_per_group() {
    let scratch_dir = scratch("three-groups");
    let dir = scratch_dir.path();
    let out = dir.join("out");
    let mut args = vec![
        "run".to_string(),
        example().to_str().unwrap().to_string(),
        "--quiet".into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    // The tiny budget, except for the fleet: the groups keep their fractions of 20.
    for set in TINY.iter().filter(|s| !s.starts_with("fleet.strong")) {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args.extend([
        "--set".into(),
        "methods=[\"ondevice_kd\", \"weak_only\"]".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = flotilla(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "{args:?}: {stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for run in summary["runs"].as_array().unwrap() {
        let groups = run["groups"].as_array().unwrap();
        let names: Vec<&str> = groups
            .iter()
            .map(|g| g["group"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["edge", "mid phones", "low phones"], "{run}");
        let clients: Vec<u64> = groups
            .iter()
            .map(|g| g["clients"].as_u64().unwrap())
            .collect();
        assert_eq!(clients, [4, 10, 6]);
        assert!(
            groups.iter().all(|g| g["assigned"].as_u64().unwrap() > 0),
            "{run}"
        );
    }
}

/// A config in `dir` with one bad group body (the example's first group kept).
fn config_with(dir: &Path, second_group: &str) -> PathBuf {
    let text = std::fs::read_to_string(example()).unwrap();
    let head = &text[..text.find("[fleet]").unwrap()];
    let config = format!(
        "{head}[fleet]\nclients = 20\n[[fleet.groups]]\nname = \"edge\"\ncount = 4\n\
         device = \"edge-gpu\"\n[[fleet.groups]]\nname = \"rest\"\ncount = 16\n{second_group}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_bad_group_key_exits_2_naming_key_and_value() {
    let scratch_dir = scratch("bad-group");
    let dir = scratch_dir.path();
    let config = config_with(dir, "device = { preset = \"phone-low\", dropout = 1.5 }");
    for command in ["fleet", "run"] {
        let out = dir.join("out");
        let output = flotilla(
            &[
                command,
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ][..if command == "run" { 4 } else { 2 }],
        );
        refused(
            &command,
            &output,
            &["fleet.groups[1].device.dropout", "1.5"],
        );
        assert!(!out.exists());
    }
}

#[test]
fn a_bad_trace_line_exits_2_naming_file_and_line() {
    let scratch_dir = scratch("bad-trace");
    let dir = scratch_dir.path();
    std::fs::write(
        dir.join("rest.jsonl"),
        "{\"id\": 0}\n{\"id\": 1, \"on\": [[50, 40]]}\n",
    )
    .unwrap();
    let config = config_with(
        dir,
        "device = { preset = \"phone-low\", memory_mb = 0.5 }\ntrace = \"rest.jsonl\"",
    );
    let output = flotilla(&["fleet", config.to_str().unwrap()]);
    refused(
        &config,
        &output,
        &["fleet.groups[1].trace", "rest.jsonl:2:", "on[0]"],
    );
}
