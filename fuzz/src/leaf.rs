//! Target `leaf`: one LEAF JSON file (FEMNIST's format) loaded into a dataset.
//!
//! The first input byte picks the format: bit 0 inverts pixel values, bit 1 picks FEMNIST
//! (28×28×1) or a 2×2×1 variant that lets short inputs reach the sample checks (both 62
//! classes). The rest is the file, read by `flotilla_data::parse_leaf`. Properties: no
//! panic; a dataset has the format's shape and classes, labels in range, values in
//! `[0, 1]`; writers are distinct, one index list each, and the lists are contiguous and
//! cover the samples in order.

use crate::loaders::{check_dataset, data_dir};
use flotilla_data::{ImageShape, LeafFormat, parse_leaf};
use serde_json::{Value, json};
use std::path::Path;

/// The format `pick` selects.
fn format(pick: u8) -> LeafFormat {
    let invert = pick & 1 == 1;
    if pick & 2 == 0 {
        LeafFormat::femnist(invert)
    } else {
        LeafFormat {
            shape: ImageShape::new(2, 2, 1),
            ..LeafFormat::femnist(invert)
        }
    }
}

/// Parses `data[1..]` in the format `data[0]` picks and checks what loads.
pub fn check(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let format = format(pick);
    let leaf = match parse_leaf(file, Path::new("fuzz.json"), format, "fuzz") {
        Ok(leaf) => leaf,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_dataset(&leaf.data, format.shape, format.classes);
    assert_eq!(
        leaf.writers.len(),
        leaf.by_writer.len(),
        "writers != index lists"
    );
    let mut writers = leaf.writers.clone();
    writers.sort();
    writers.dedup();
    assert_eq!(writers.len(), leaf.writers.len(), "a writer appears twice");
    let order: Vec<usize> = leaf.by_writer.concat();
    assert_eq!(
        order,
        (0..leaf.data.len()).collect::<Vec<_>>(),
        "writers' samples"
    );
}

/// A LEAF file of `writers`, each with its `(x, y)` samples.
fn leaf_file(writers: &[(&str, Vec<(Vec<Value>, Value)>)]) -> Vec<u8> {
    let user_data: serde_json::Map<String, Value> = writers
        .iter()
        .map(|(user, samples)| {
            let (x, y): (Vec<Value>, Vec<Value>) = samples
                .iter()
                .map(|(x, y)| (Value::from(x.clone()), y.clone()))
                .unzip();
            (user.to_string(), json!({ "x": x, "y": y }))
        })
        .collect();
    let file = json!({
        "users": writers.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        "num_samples": writers.iter().map(|(_, s)| s.len()).collect::<Vec<_>>(),
        "user_data": user_data,
    });
    serde_json::to_vec(&file).expect("a JSON value serialises")
}

/// FEMNIST's first train file's first two writers: two full samples of the first, and the
/// central 2×2 pixels of a few samples of each for the small format.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = data_dir().join("femnist/train");
    let path = dir.join("all_data_0_niid_05_keep_0_train_9.json");
    let text =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let root: Value = serde_json::from_slice(&text).expect("the FEMNIST file is JSON");
    let samples = |w: usize, n: usize, keep: &dyn Fn(&[Value]) -> Vec<Value>| {
        let user = root["users"][w].as_str().expect("a writer id").to_owned();
        let data = &root["user_data"][&user];
        let pairs = data["x"].as_array().expect("x")[..n]
            .iter()
            .zip(&data["y"].as_array().expect("y")[..n])
            .map(|(x, y)| (keep(x.as_array().expect("an x row")), y.clone()))
            .collect::<Vec<_>>();
        (user, pairs)
    };
    let full = |x: &[Value]| x.to_vec();
    let centre = |x: &[Value]| [378, 379, 406, 407].iter().map(|&i| x[i].clone()).collect();
    let (w0, femnist) = samples(0, 2, &full);
    let (_, small0) = samples(0, 3, &centre);
    let (w1, small1) = samples(1, 2, &centre);
    let femnist = leaf_file(&[(&w0, femnist)]);
    let small = leaf_file(&[(&w0, small0), (&w1, small1)]);
    vec![
        ("femnist".into(), [&[0][..], &femnist].concat()),
        ("femnist_inverted".into(), [&[1][..], &femnist].concat()),
        ("small_two_writers".into(), [&[2][..], &small].concat()),
    ]
}
