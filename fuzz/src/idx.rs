//! Target `idx`: an MNIST-style pair of IDX files (raw or gzip) loaded into a dataset.
//!
//! Input: one byte giving the class count (`byte + 1`, so every `u8` label can be in or out
//! of range), a big-endian `u16` length `L`, `L` bytes of label file, then the image file.
//! Each file goes through `flotilla_data::parse_idx` and the pair through `idx_dataset`, as
//! `load_idx_dataset` does. Properties: no panic; a parsed file holds exactly the product
//! of its dimensions; a dataset has one row of the image dimensions' size per image and
//! one label per row (from the label file, in range), with values in `[0, 1]`. Gzip inputs
//! that really expand beyond what the allowance covers are skipped
//! ([`crate::loaders::gunzips_beyond`]).

use crate::loaders::{
    check_dataset, data_dir, expansion_limit, gunzip_prefix, gunzips_beyond, gzip,
};
use flotilla_data::loaders::idx::IdxArray;
use flotilla_data::{ImageShape, idx_dataset, parse_idx};
use std::path::Path;

/// MNIST images and labels kept in each seed.
const SEED_IMAGES: u32 = 3;

/// Parses one file and checks that it holds what its header declares.
fn parse(bytes: &[u8], origin: &Path) -> Option<IdxArray> {
    if gunzips_beyond(bytes, expansion_limit(bytes.len())) {
        return None;
    }
    let array = match parse_idx(bytes, origin) {
        Ok(array) => array,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    assert_eq!(
        array.dims.iter().product::<usize>(),
        array.data.len(),
        "an IDX file of dimensions {:?} holds {} elements",
        array.dims,
        array.data.len()
    );
    Some(array)
}

/// Splits `data` into classes, label file and image file, and checks what loads.
pub fn check(data: &[u8]) {
    let [classes, l0, l1, rest @ ..] = data else {
        return;
    };
    let classes = usize::from(*classes) + 1;
    let (labels, images) =
        rest.split_at(usize::from(u16::from_be_bytes([*l0, *l1])).min(rest.len()));
    let (images_path, labels_path) = (Path::new("fuzz-images.idx"), Path::new("fuzz-labels.idx"));
    let (Some(images), Some(labels)) = (parse(images, images_path), parse(labels, labels_path))
    else {
        return;
    };
    let dataset = match idx_dataset(&images, images_path, &labels, labels_path, classes, "fuzz") {
        Ok(dataset) => dataset,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let shape = match images.dims[1..] {
        [d] => ImageShape::flat(d),
        [h, w] => ImageShape::new(h, w, 1),
        [h, w, c] => ImageShape::new(h, w, c),
        _ => panic!("a {}-dimensional image file loaded", images.dims.len()),
    };
    check_dataset(&dataset, shape, classes);
    assert_eq!(
        dataset.len(),
        images.dims[0],
        "samples != the image count declared"
    );
    let expected: Vec<u32> = labels.data.iter().map(|&l| u32::from(l)).collect();
    assert_eq!(
        dataset.labels(),
        expected,
        "labels differ from the label file"
    );
}

/// An IDX file of unsigned bytes.
fn idx_file(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// An input of `classes`, a label file and an image file.
fn input(classes: u8, labels: &[u8], images: &[u8]) -> Vec<u8> {
    let len = u16::try_from(labels.len()).expect("a seed label file is short");
    [&[classes][..], &len.to_be_bytes(), labels, images].concat()
}

/// The first MNIST test images and labels, as raw and gzip files, 3-D (28×28) and flat.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mnist = data_dir().join("mnist");
    let n = SEED_IMAGES as usize;
    let pixels = gunzip_prefix(&mnist.join("t10k-images-idx3-ubyte.gz"), 16 + n * 784);
    let labels = gunzip_prefix(&mnist.join("t10k-labels-idx1-ubyte.gz"), 8 + n);
    let (pixels, labels) = (&pixels[16..], &labels[8..]);
    let grey = idx_file(&[SEED_IMAGES, 28, 28], pixels);
    let flat = idx_file(&[SEED_IMAGES, 784], pixels);
    let labels = idx_file(&[SEED_IMAGES], labels);
    vec![
        ("mnist_raw".into(), input(9, &labels, &grey)),
        ("mnist_gzip".into(), input(9, &gzip(&labels), &gzip(&grey))),
        ("mnist_flat_raw".into(), input(9, &labels, &flat)),
        (
            "mnist_flat_gzip_images".into(),
            input(9, &labels, &gzip(&flat)),
        ),
    ]
}
