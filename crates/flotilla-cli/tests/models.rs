//! Every run writes its final global models as safetensors with PyTorch names and layouts:
//! they load back into Flotilla, start a later run with `--init`, and load in Python, where
//! a numpy forward pass of the MLP gives Flotilla's logits (`scripts/check_safetensors.py`;
//! skipped with a note when Python lacks `numpy` or `safetensors`).

#![allow(clippy::unwrap_used)]

mod common;

use common::{TINY, scratch};

use flotilla_nn::{ModelSpec, Shape, batch_from_flat, load_safetensors};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn flotilla(out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(["run", "--quiet", "--out"]).arg(out);
    for s in TINY {
        cmd.arg("--set").arg(s);
    }
    cmd.args(extra).output().unwrap()
}

fn python_has_numpy_and_safetensors() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn final_models_are_written_reload_and_give_the_same_logits_in_numpy() {
    let scratch_dir = scratch("export");
    let dir = scratch_dir.path();
    let out = dir.join("res");
    let run = flotilla(&out, &["--set", "methods=[\"ondevice_kd\"]"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for model in ["target", "auxiliary"] {
        assert!(
            out.join(format!("models/ondevice_kd_seed1_{model}.safetensors"))
                .is_file()
        );
    }
    // The target of the quickstart, loaded back by Flotilla.
    let file = out.join("models/ondevice_kd_seed1_target.safetensors");
    let spec: ModelSpec = "mlp:32-256-256-10".parse().unwrap();
    let mut net = spec.build(Shape::flat(32), 10).unwrap();
    let weights = load_safetensors(&file, &net).unwrap();
    let rows: Vec<Vec<f32>> = (0..16)
        .map(|i| {
            (0..32)
                .map(|j| ((i * 32 + j) as f32 * 0.37).sin() * 2.0)
                .collect()
        })
        .collect();
    let flat = ndarray::Array2::from_shape_vec((16, 32), rows.concat()).unwrap();
    let logits = net.predict(batch_from_flat(flat, Shape::flat(32)).unwrap(), &weights);
    let logits: Vec<Vec<f32>> = logits.rows().into_iter().map(|r| r.to_vec()).collect();
    assert!(logits.iter().flatten().all(|v| v.is_finite()));
    let (inputs, expected) = (dir.join("inputs.json"), dir.join("logits.json"));
    fs::write(&inputs, serde_json::to_string(&rows).unwrap()).unwrap();
    fs::write(&expected, serde_json::to_string(&logits).unwrap()).unwrap();
    if python_has_numpy_and_safetensors() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_safetensors.py");
        let check = Command::new("python3")
            .arg(script)
            .args([&file, &inputs, &expected])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    } else {
        eprintln!(
            "note: python3 with numpy and safetensors not found; the numpy check was skipped"
        );
    }
}

#[test]
fn init_starts_a_run_from_given_weights() {
    let scratch_dir = scratch("init");
    let dir = scratch_dir.path();
    let (first, second) = (dir.join("first"), dir.join("second"));
    let run = flotilla(&first, &["--set", "methods=[\"weak_only\"]"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let saved = first.join("models/weak_only_seed1_auxiliary.safetensors");
    // Every client drops out, so the final model is exactly the one it started from.
    let init = format!("auxiliary={}", saved.display());
    let run = flotilla(
        &second,
        &[
            "--set",
            "methods=[\"weak_only\"]",
            "--set",
            "fleet.dropout=1.0",
            "--init",
            &init,
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let again = second.join("models/weak_only_seed1_auxiliary.safetensors");
    // Same weights, same bytes (the header's metadata is written in a fixed order).
    assert!(
        fs::read(&again).unwrap() == fs::read(&saved).unwrap(),
        "the model changed"
    );
}

#[test]
fn a_bad_init_is_named_and_leaves_no_output() {
    let scratch_dir = scratch("bad-init");
    let dir = scratch_dir.path();
    let out = dir.join("res");
    let wrong_model = dir.join("wrong.safetensors");
    fs::write(&wrong_model, b"not a safetensors file").unwrap();
    for (arg, says) in [
        (
            "auxiliary=/no/such/file.safetensors",
            "/no/such/file.safetensors",
        ),
        (
            &format!("target={}", wrong_model.display()) as &str,
            "wrong.safetensors",
        ),
        ("student=x.safetensors", "target"),
        ("x.safetensors", "MODEL=PATH"),
    ] {
        let run = flotilla(&out, &["--init", arg]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{arg}: {stderr}");
        assert!(
            stderr.contains("--init") && stderr.contains(says),
            "{arg}: {stderr}"
        );
        assert!(!out.exists());
    }
}
