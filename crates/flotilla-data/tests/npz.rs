//! NumPy `.npz` archives: valid ones load with the sample shape of their arrays; every bad
//! one is a `DataError` naming the file and the array. The archives are written here, byte by
//! byte (`.npy` members) and with the `zip` crate, so no Python is needed.

#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Write};
use std::path::Path;

use flotilla_data::{DataError, ImageShape, load_npz, parse_npz};
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

/// The bytes of a version-1 `.npy` file with `header` (a Python dict literal) and `data`.
fn npy_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut text = header.to_string();
    // numpy pads the header with spaces so that the data starts at a multiple of 64.
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A C-order `.npy` of dtype `descr` and `shape` holding `data`.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    npy_raw(
        &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"),
        data,
    )
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn i64s(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A zip archive of `members` (name, bytes), deflated or stored.
fn zip_of(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate {
        CompressionMethod::Deflated
    } else {
        CompressionMethod::Stored
    };
    for (name, bytes) in members {
        zip.start_file(
            *name,
            SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The four members of a small valid archive: 6 train and 2 test samples of 2 × 2 × 1
/// float32, labels 0..3.
fn valid_members() -> Vec<(&'static str, Vec<u8>)> {
    let x_train: Vec<f32> = (0..24).map(|i| i as f32 / 10.0).collect();
    vec![
        ("x_train.npy", npy("<f4", &[6, 2, 2], &f32s(&x_train))),
        ("y_train.npy", npy("<i8", &[6], &i64s(&[0, 1, 2, 0, 1, 2]))),
        ("x_test.npy", npy("<f4", &[2, 2, 2], &f32s(&[0.5; 8]))),
        ("y_test.npy", npy("<i8", &[2], &i64s(&[2, 0]))),
    ]
}

/// `valid_members` with `name` replaced by `bytes` (or removed when `None`).
fn with_member(name: &str, bytes: Option<Vec<u8>>) -> Vec<u8> {
    let members: Vec<(&str, Vec<u8>)> = valid_members()
        .into_iter()
        .filter_map(|(n, b)| {
            if n == name {
                bytes.clone().map(|b| (n, b))
            } else {
                Some((n, b))
            }
        })
        .collect();
    zip_of(&members, false)
}

fn parse(bytes: &[u8]) -> Result<(flotilla_data::Dataset, flotilla_data::Dataset), DataError> {
    parse_npz(bytes, Path::new("data.npz"), "npz")
}

/// The array and reason of an `Npz` error, whose message must name the file.
fn npz_error(bytes: &[u8]) -> (String, String) {
    match parse(bytes) {
        Err(e @ DataError::Npz { .. }) => {
            assert!(e.to_string().starts_with("data.npz: array `"), "{e}");
            let DataError::Npz { array, reason, .. } = e else {
                unreachable!()
            };
            (array, reason)
        }
        other => panic!("expected an Npz error, got {other:?}"),
    }
}

#[test]
fn stored_and_deflated_archives_load_alike_with_the_arrays_shape() {
    let stored = parse(&zip_of(&valid_members(), false)).unwrap();
    let deflated = parse(&zip_of(&valid_members(), true)).unwrap();
    assert_eq!(stored, deflated);
    let (train, test) = stored;
    assert_eq!(train.shape(), ImageShape::new(2, 2, 1));
    assert_eq!((train.len(), test.len(), train.classes()), (6, 2, 3));
    assert_eq!(train.labels(), &[0, 1, 2, 0, 1, 2]);
    assert_eq!(test.labels(), &[2, 0]);
    assert_eq!(train.features().row(1).to_vec(), vec![0.4, 0.5, 0.6, 0.7]);
    assert_eq!(train.name(), "npz-train");
}

#[test]
fn uint8_features_are_scaled_and_any_integer_labels_read() {
    let bytes = zip_of(
        &[
            ("x_train.npy", npy("|u1", &[2, 3], &[0, 255, 51, 102, 0, 0])),
            ("y_train.npy", npy("|u1", &[2], &[1, 0])),
            ("x_test.npy", npy("<f8", &[1, 3], &[0u8; 24])),
            ("y_test.npy", npy(">i4", &[1], &4i32.to_be_bytes())),
        ],
        true,
    );
    let (train, test) = parse(&bytes).unwrap();
    assert_eq!(train.shape(), ImageShape::flat(3));
    assert_eq!(train.features().row(0).to_vec(), vec![0.0, 1.0, 0.2]);
    assert_eq!(test.labels(), &[4]);
    assert_eq!(train.classes(), 5);
}

#[test]
fn a_file_on_disk_loads_and_a_missing_one_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.npz");
    std::fs::write(&path, zip_of(&valid_members(), true)).unwrap();
    assert_eq!(load_npz(&path, "npz").unwrap().0.len(), 6);
    let err = load_npz(&dir.path().join("absent.npz"), "npz").unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
}

#[test]
fn not_a_zip_is_a_layout_error_naming_the_file() {
    let err = parse(b"x_train,y_train\n1,2\n").unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("data.npz"), "{err}");
}

#[test]
fn every_bad_array_is_named_with_what_is_wrong() {
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("y_test.npy", None, "missing"),
        (
            "x_train.npy",
            Some(b"not numpy".to_vec()),
            "does not start with",
        ),
        (
            "x_train.npy",
            Some(npy("<i4", &[6, 2, 2], &[0; 96])),
            "dtype '<i4' is not supported for features",
        ),
        (
            "y_train.npy",
            Some(npy("<f4", &[6], &f32s(&[0.0; 6]))),
            "dtype '<f4' is not supported for labels",
        ),
        (
            "y_train.npy",
            Some(npy("<i8", &[5], &i64s(&[0; 5]))),
            "labels need shape (6,)",
        ),
        (
            "y_train.npy",
            Some(npy("<i8", &[6], &i64s(&[0, 1, -1, 0, 0, 0]))),
            "label 2 is -1",
        ),
        (
            "y_train.npy",
            Some(npy("<i8", &[6], &i64s(&[0, 1, 1_000_000, 0, 0, 0]))),
            "at most 100000 classes",
        ),
        (
            "x_train.npy",
            Some(npy(
                "<f4",
                &[6, 2, 2],
                &f32s(&[[0.0; 13].as_slice(), &[f32::NAN], &[0.0; 10]].concat()),
            )),
            "value 13 (sample 3, feature 1) is NaN",
        ),
        (
            "x_train.npy",
            Some(npy("<f4", &[6, 2, 2], &f32s(&[0.0; 20]))),
            "declares 224 bytes, more than the member's 208 stored bytes",
        ),
        (
            "x_train.npy",
            Some(npy("<f4", &[6, 2, 2], &f32s(&[0.0; 25]))),
            "declares 96 data bytes but the member holds 100",
        ),
        (
            "x_train.npy",
            Some(npy("<f4", &[0, 4], &[])),
            "holds no samples",
        ),
        (
            "x_train.npy",
            Some(npy("<f4", &[6, 1, 2, 2, 1], &f32s(&[0.0; 24]))),
            "features need 2 to 4 dimensions",
        ),
        (
            "x_test.npy",
            Some(npy("<f4", &[2, 4], &f32s(&[0.0; 8]))),
            "samples are 1x1x4 (height x width x channels) but x_train's are 2x2x1",
        ),
        (
            "x_train.npy",
            Some(npy_raw(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (6, 2, 2), }",
                &f32s(&[0.0; 24]),
            )),
            "Fortran order",
        ),
        // Shapes that overflow or nest deeply are refused before anything is allocated.
        (
            "x_train.npy",
            Some(npy("<f4", &[1 << 40, 1 << 40], &[])),
            "more elements than fit in 64 bits",
        ),
        (
            "x_train.npy",
            Some(npy("<f4", &[1 << 30, 1 << 20], &[])),
            "more than the member's",
        ),
        (
            "x_train.npy",
            Some(npy_raw(
                &format!("{}{}", "[".repeat(40), "]".repeat(40)),
                &[],
            )),
            "nests brackets",
        ),
        (
            "x_train.npy",
            Some(npy_raw("{'descr': '<f4', 'fortran_order': False}", &[])),
            "has no `shape`",
        ),
    ];
    for (member, bytes, expected) in cases {
        let (array, reason) = npz_error(&with_member(member, bytes));
        assert_eq!(format!("{array}.npy"), member, "{reason}");
        assert!(
            reason.contains(expected),
            "{member}: `{reason}` lacks `{expected}`"
        );
    }
}

#[test]
fn a_header_length_beyond_the_cap_is_refused_before_reading_it() {
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let (array, reason) = npz_error(&with_member("x_train.npy", Some(bytes)));
    assert_eq!(array, "x_train");
    assert!(reason.contains("65536"), "{reason}");
}

#[test]
fn a_deflate_bomb_is_refused_by_its_declared_size() {
    // 8 MB of zeros deflate to about 8 kB; declaring 1 GB of them is beyond 1032:1.
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000, 1000000), }";
    let members = [("x_train.npy", npy_raw(header, &vec![0u8; 8_000_000]))];
    let (array, reason) = npz_error(&zip_of(&members, true));
    assert_eq!(array, "x_train");
    assert!(
        reason.contains("deflate expands at most 1032:1"),
        "{reason}"
    );
}

#[test]
fn a_corrupt_member_fails_its_crc_check() {
    let mut bytes = zip_of(&valid_members(), false);
    // Flip a byte of x_train's data (it follows its 128-byte .npy header and the member's
    // 41-byte local header).
    let at = 30 + "x_train.npy".len() + 128 + 5;
    bytes[at] ^= 0xff;
    let (array, reason) = npz_error(&bytes);
    assert_eq!(array, "x_train");
    assert!(
        reason.to_lowercase().contains("crc") || reason.contains("checksum"),
        "{reason}"
    );
}

/// The members of `tests/fixtures/blobs.npz`, the small task the command line's tests run
/// on: 3 classes, 8 float32 features (class `k` is high on features `k`, `k + 3`, `k + 6`,
/// with deterministic jitter), 240 train and 60 test samples, int64 labels.
fn blobs_members() -> Vec<(&'static str, Vec<u8>)> {
    let split = |n: usize, offset: usize| {
        let labels: Vec<i64> = (0..n).map(|i| ((i * 7 + offset) % 3) as i64).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let label = labels[i] as usize;
                (0..8).map(move |j| {
                    let jitter = ((i + offset) * 7 + j * 13) % 17;
                    f32::from(u8::from(j % 3 == label)) + jitter as f32 / 34.0
                })
            })
            .collect();
        (
            npy("<f4", &[n, 8], &f32s(&x)),
            npy("<i8", &[n], &i64s(&labels)),
        )
    };
    let (x_train, y_train) = split(240, 0);
    let (x_test, y_test) = split(60, 1000);
    vec![
        ("x_train.npy", x_train),
        ("y_train.npy", y_train),
        ("x_test.npy", x_test),
        ("y_test.npy", y_test),
    ]
}

/// The fixture is exactly what [`blobs_members`] writes (regenerate it with
/// `FLOTILLA_BLESS=1 cargo test -p flotilla-data --test npz`), and it loads.
#[test]
fn the_blobs_fixture_is_what_its_generator_writes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blobs.npz");
    let bytes = zip_of(&blobs_members(), true);
    if std::env::var_os("FLOTILLA_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    let (train, test) = load_npz(&path, "blobs").unwrap();
    assert_eq!((train.len(), test.len(), train.classes()), (240, 60, 3));
    assert_eq!(train.shape(), ImageShape::flat(8));
}
