//! Target `cifar`: one CIFAR binary batch file (raw or gzip) loaded into a dataset.
//!
//! The first input byte picks the layout (even: CIFAR-10, one label byte; odd: CIFAR-100,
//! coarse and fine label bytes); the rest is the file, read by
//! `flotilla_data::parse_cifar_binary`. Properties: no panic; a dataset is 32×32×3 with the
//! layout's classes, has one sample per whole record of the (decompressed) file, and each
//! sample is its record: the last label byte, and the CHW pixel planes as HWC values
//! `byte / 255`. Gzip inputs that really expand beyond what the allowance covers are
//! skipped ([`crate::loaders::gunzips_beyond`]).

use crate::loaders::{check_dataset, data_dir, expansion_limit, gunzips_beyond, gzip};
use flate2::read::MultiGzDecoder;
use flotilla_data::{CifarBinary, ImageShape, ImageSize, decode_image, parse_cifar_binary};
use std::io::Read;
use std::path::Path;

/// Side of a CIFAR image.
const SIDE: usize = 32;
/// Pixels per channel plane.
const PLANE: usize = SIDE * SIDE;

/// Parses `data[1..]` as the layout `data[0]` picks and checks what loads.
pub fn check(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let kind = if pick % 2 == 0 {
        CifarBinary::Cifar10
    } else {
        CifarBinary::Cifar100
    };
    if gunzips_beyond(file, expansion_limit(data.len())) {
        return;
    }
    let dataset = match parse_cifar_binary(file, Path::new("fuzz.bin"), kind, "fuzz") {
        Ok(dataset) => dataset,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_dataset(&dataset, ImageShape::new(SIDE, SIDE, 3), kind.classes());
    let mut plain = Vec::new();
    let records: &[u8] = if file.starts_with(&[0x1f, 0x8b]) {
        MultiGzDecoder::new(file)
            .read_to_end(&mut plain)
            .expect("a gzip file that loaded decompresses");
        &plain
    } else {
        file
    };
    let len = kind.record_len();
    assert_eq!(records.len() % len, 0, "a loaded file has a partial record");
    assert_eq!(dataset.len(), records.len() / len, "samples != records");
    let labels = len - 3 * PLANE;
    for (i, (record, row)) in records
        .chunks_exact(len)
        .zip(dataset.features().rows())
        .enumerate()
    {
        assert_eq!(
            dataset.labels()[i],
            u32::from(record[labels - 1]),
            "record {i}: label"
        );
        let chw = &record[labels..];
        let row = row.as_slice().expect("feature rows are contiguous");
        for (p, hwc) in row.chunks_exact(3).enumerate() {
            for (c, &v) in hwc.iter().enumerate() {
                let expected = f32::from(chw[c * PLANE + p]) / 255.0;
                assert_eq!(v, expected, "record {i}: pixel {p} channel {c}");
            }
        }
    }
}

/// The first CIFAR-10 test images (JPEG, decoded) as binary records with `labels` before
/// each image in CHW planes.
fn records(labels: &[&[u8]]) -> Vec<u8> {
    let test = data_dir().join("cifar10/test");
    let size = ImageSize {
        height: SIDE as u32,
        width: SIDE as u32,
    };
    let mut out = Vec::new();
    for (class, label) in ["airplane", "cat"].iter().zip(labels) {
        let path = test.join(class).join("0000.jpg");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let image = decode_image(&bytes, &path, Some(size))
            .unwrap_or_else(|e| panic!("a seed image decodes: {e}"));
        out.extend_from_slice(label);
        for c in 0..3 {
            out.extend(image.pixels().map(|px| px.0[c]));
        }
    }
    out
}

/// Two CIFAR-10 records (raw and gzip) and two CIFAR-100 records, cut from real images.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let cifar10 = records(&[&[0], &[3]]);
    let cifar100 = records(&[&[17, 8], &[11, 3]]);
    vec![
        ("cifar10_raw".into(), [&[0][..], &cifar10].concat()),
        ("cifar10_gzip".into(), [&[0][..], &gzip(&cifar10)].concat()),
        ("cifar100_raw".into(), [&[1][..], &cifar100].concat()),
    ]
}
