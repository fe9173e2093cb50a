//! `flotilla run` on bad dataset files: exit code 2, the files named, no output folder.

#![allow(clippy::unwrap_used)]

mod common;

use common::scratch;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A raw IDX file of unsigned bytes.
fn idx(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    dims.iter()
        .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    let count: u32 = dims.iter().product();
    out.resize(out.len() + count as usize, fill);
    out
}

/// Writes an MNIST folder in `dir/data`: `train` and `test` are (samples, height, width).
fn mnist_folder(dir: &Path, train: [u32; 3], test: [u32; 3]) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (prefix, [n, h, w]) in [("train", train), ("t10k", test)] {
        std::fs::write(
            data.join(format!("{prefix}-images-idx3-ubyte")),
            idx(&[n, h, w], 3),
        )
        .unwrap();
        std::fs::write(
            data.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(&[n], 1),
        )
        .unwrap();
    }
    data
}

/// Runs `flotilla run` on a config file, the built-in `mnist` one with `data.path` set to
/// `data`, with `dir/out` as the output folder.
fn run_on(dir: &Path, data: &Path) -> Output {
    let config = dir.join("bad.toml");
    let mnist = include_str!("../../../configs/mnist.toml");
    let dataset = "dataset = \"mnist\"\n";
    assert!(
        mnist.contains(dataset),
        "configs/mnist.toml has no `{dataset}`"
    );
    let text = mnist.replacen(
        dataset,
        &format!("{dataset}path = '{}'\n", data.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("run")
        .arg(&config)
        .arg("--quiet")
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap()
}

/// Checks the run failed with exit code 2, naming every fragment, and wrote no output.
fn assert_rejected(dir: &Path, result: &Output, fragments: &[&str]) {
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    for fragment in fragments {
        assert!(stderr.contains(fragment), "`{fragment}` not in {stderr}");
    }
    assert!(!dir.join("out").exists(), "an output folder was created");
}

#[test]
fn train_and_test_of_different_shapes_are_rejected_naming_both_files() {
    let scratch_dir = scratch("shapes");
    let dir = scratch_dir.path();
    // The same 784 pixels per sample, as 28x28 and as 14x56.
    let data = mnist_folder(dir, [40, 28, 28], [10, 14, 56]);
    let result = run_on(dir, &data);
    let train = data.join("train-images-idx3-ubyte");
    let test = data.join("t10k-images-idx3-ubyte");
    assert_rejected(
        dir,
        &result,
        &[
            &format!("{} holds 28x28x1", train.display()),
            &format!("{} holds 14x56x1", test.display()),
        ],
    );
}

#[test]
fn an_empty_test_set_is_rejected_naming_its_file() {
    let scratch_dir = scratch("empty");
    let dir = scratch_dir.path();
    let data = mnist_folder(dir, [40, 28, 28], [0, 28, 28]);
    let result = run_on(dir, &data);
    let test = data.join("t10k-images-idx3-ubyte");
    assert_rejected(dir, &result, &[&format!("{}: no samples", test.display())]);
}
