//! `flotilla trace` end to end: the file it writes loads as a device trace, the same seed
//! writes the same bytes, an existing file is replaced only with `--force`, and bad
//! settings exit with code 2 and write nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::{scratch, stderr};

use flotilla_sim::{DeviceTrace, SyntheticTrace};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn flotilla_trace(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("trace")
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

const SETTINGS: [&str; 8] = [
    "--devices",
    "40",
    "--seed",
    "3",
    "--horizon-s",
    "172800",
    "--online-fraction",
    "0.4",
];

/// The folder holds exactly these names (no temporary file left behind).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_a_trace_that_loads_and_refuses_to_overwrite_without_force() {
    let scratch_dir = scratch("trace");
    let dir = scratch_dir.path();
    let out = dir.join("fleet.jsonl");
    let first = flotilla_trace(&out, &SETTINGS);
    assert!(first.status.success(), "{}", stderr(&first));
    let trace = DeviceTrace::from_path(&out).unwrap();
    let expected = SyntheticTrace {
        devices: 40,
        seed: 3,
        horizon_s: 172_800.0,
        online_fraction: 0.4,
        ..SyntheticTrace::default()
    };
    assert_eq!(trace, expected.generate().unwrap());
    assert!(
        trace
            .devices
            .iter()
            .all(|d| d.flops_per_sec.is_some() && d.on.is_some()),
        "every device has a speed and intervals"
    );
    let bytes = fs::read(&out).unwrap();

    // An existing file is not touched without --force: exit 2, the reason named.
    fs::write(&out, "my own notes\n").unwrap();
    let again = flotilla_trace(&out, &SETTINGS);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("exists; pass --force"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "my own notes\n");

    // With --force it is replaced, by the same bytes as before (same seed).
    let forced = flotilla_trace(&out, &[&SETTINGS[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(fs::read(&out).unwrap(), bytes);

    // A folder is never replaced, even with --force.
    let folder = flotilla_trace(dir, &[&SETTINGS[..], &["--force"]].concat());
    assert_eq!(folder.status.code(), Some(2), "{}", stderr(&folder));
    assert!(
        stderr(&folder).contains("is a folder"),
        "{}",
        stderr(&folder)
    );
    assert_eq!(names(dir), ["fleet.jsonl"]);
}

#[test]
fn bad_settings_exit_2_naming_the_setting_and_write_nothing() {
    let scratch_dir = scratch("trace-bad");
    let dir = scratch_dir.path();
    let out = dir.join("fleet.jsonl");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--devices", "10", "--online-fraction", "1.5"],
            "`online_fraction` = 1.5",
        ),
        (&["--devices", "0"], "`devices` = 0"),
        (
            &["--devices", "10", "--speed-median", "-3"],
            "`speed_median_flops` = -3",
        ),
        (&["--devices", "-4"], "--devices"),
        (
            &["--devices", "1000000", "--horizon-s", "1e8"],
            "`horizon_s` =",
        ),
    ];
    for (args, expected) in cases {
        let o = flotilla_trace(&out, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
        assert!(names(dir).is_empty(), "{args:?} wrote {:?}", names(dir));
    }
}
