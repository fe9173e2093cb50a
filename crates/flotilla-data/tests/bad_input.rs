//! Malformed files give typed errors whose message names the file and the offset or field.

use std::fs;
use std::path::{Path, PathBuf};

use flotilla_data::loaders::idx::read_idx;
use flotilla_data::{
    DataError, LeafFormat, load_cifar10_binary_dir, load_idx_dataset, load_image_folder,
    load_leaf_dir,
};
use tempfile::TempDir;

/// An IDX file of unsigned bytes with the given header dimensions and payload.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    dims.iter()
        .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    out.extend_from_slice(data);
    out
}

fn write(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).expect("temp dir is writable");
    path
}

/// Asserts the error message mentions every fragment.
fn assert_mentions(err: &DataError, fragments: &[&str]) {
    let msg = err.to_string();
    for fragment in fragments {
        assert!(
            msg.contains(fragment),
            "`{msg}` does not mention `{fragment}`"
        );
    }
}

#[test]
fn idx_truncated_names_file_and_offset() {
    let dir = TempDir::new().unwrap();
    // Header: 3 images of 2x2 = 12 bytes promised, 10 present; data ends at 16 + 10.
    let path = write(&dir, "imgs-idx3-ubyte", idx_bytes(&[3, 2, 2], &[0; 10]));
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                offset: 26,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["imgs-idx3-ubyte", "byte offset 26", "2 more bytes"]);
    // A header cut short is truncated too.
    let path = write(&dir, "short-idx", [0, 0, 8, 3, 0, 0]);
    assert_mentions(
        &read_idx(&path).unwrap_err(),
        &["short-idx", "byte offset 6"],
    );
}

#[test]
fn idx_wrong_magic_names_file() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "not-idx.bin", [0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]);
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                found: 0x1234_5678,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["not-idx.bin", "0x12345678"]);
}

#[test]
fn idx_label_out_of_range_names_file_index_and_offset() {
    let dir = TempDir::new().unwrap();
    let images = write(&dir, "x-idx3", idx_bytes(&[3, 1, 1], &[1, 2, 3]));
    let labels = write(&dir, "y-idx1", idx_bytes(&[3], &[0, 9, 10]));
    let err = load_idx_dataset(&images, &labels, 10, "t").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["y-idx1", "sample 2", "byte offset 10", "label 10"]);
}

#[test]
fn idx_count_mismatch_names_both_files() {
    let dir = TempDir::new().unwrap();
    let images = write(&dir, "x-idx3", idx_bytes(&[3, 1, 1], &[1, 2, 3]));
    let labels = write(&dir, "y-idx1", idx_bytes(&[2], &[0, 1]));
    let err = load_idx_dataset(&images, &labels, 10, "t").unwrap_err();
    assert!(matches!(err, DataError::Header { offset: 4, .. }), "{err}");
    assert_mentions(&err, &["y-idx1", "2 labels but 3 images", "x-idx3"]);
}

#[test]
fn idx_corrupt_gzip_is_an_io_error_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "broken.gz", [0x1f, 0x8b, 8, 0, 1, 2, 3]);
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert_mentions(&err, &["broken.gz"]);
}

#[test]
fn cifar_binary_truncated_names_file_and_offset() {
    let dir = TempDir::new().unwrap();
    let record = 1 + 3072;
    write(&dir, "data_batch_1.bin", vec![0u8; 2 * record + 100]);
    let err = load_cifar10_binary_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                offset: 6246,
                needed: 2973,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["data_batch_1.bin", "byte offset 6246"]);
}

#[test]
fn cifar_binary_label_out_of_range_names_record() {
    let dir = TempDir::new().unwrap();
    let mut bytes = vec![0u8; 2 * 3073];
    bytes[3073] = 10;
    write(&dir, "data_batch_1.bin", bytes);
    let err = load_cifar10_binary_dir(dir.path()).unwrap_err();
    assert_mentions(
        &err,
        &[
            "data_batch_1.bin",
            "sample 1 (byte offset 3073)",
            "label 10",
        ],
    );
}

/// A 4x4 RGB JPEG.
fn jpeg_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4, 4, |x, y| image::Rgb([x as u8 * 60, y as u8 * 60, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("JPEG encoding succeeds");
    out.into_inner()
}

fn image_folder_with(bad_name: &str, bad_bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = TempDir::new().expect("temp dir can be created");
    let class = dir.path().join("cat");
    fs::create_dir(&class).expect("temp dir is writable");
    fs::write(class.join("0000.jpg"), jpeg_bytes()).expect("temp dir is writable");
    fs::write(class.join(bad_name), bad_bytes).expect("temp dir is writable");
    let root = dir.path().to_path_buf();
    (dir, root)
}

#[test]
fn image_folder_corrupt_jpeg_names_file() {
    let (_dir, root) = image_folder_with("0001.jpg", b"this is not a jpeg at all");
    let err = load_image_folder(&root, "t").unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert_mentions(&err, &["0001.jpg", "cannot decode"]);
}

#[test]
fn image_folder_truncated_jpeg_names_file() {
    let jpeg = jpeg_bytes();
    let (_dir, root) = image_folder_with("0001.jpg", &jpeg[..jpeg.len() / 2]);
    let err = load_image_folder(&root, "t").unwrap_err();
    assert_mentions(&err, &["0001.jpg"]);
}

#[test]
fn image_folder_without_classes_is_a_layout_error() {
    let dir = TempDir::new().unwrap();
    let err = load_image_folder(dir.path(), "t").unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }), "{err}");
    assert_mentions(&err, &["no class folders"]);
}

/// A LEAF file with one user `w1` whose `x` rows have the given lengths and labels `y`.
fn leaf_json(row_lengths: &[usize], y: &[i64]) -> String {
    let rows: Vec<String> = row_lengths
        .iter()
        .map(|&len| format!("[{}]", vec!["1.0"; len].join(", ")))
        .collect();
    format!(
        "{{\"users\": [\"w1\"], \"num_samples\": [{}],\n \"user_data\": {{\"w1\": {{\"x\": [{}], \"y\": {y:?}}}}}}}",
        row_lengths.len(),
        rows.join(", ")
    )
}

fn leaf_dir(name: &str, contents: &str) -> TempDir {
    let dir = TempDir::new().expect("temp dir can be created");
    write(&dir, name, contents);
    dir
}

fn load_leaf(dir: &Path) -> Result<flotilla_data::LeafDataset, DataError> {
    load_leaf_dir(dir, LeafFormat::femnist(true), "t")
}

#[test]
fn leaf_valid_file_loads() {
    let dir = leaf_dir("a.json", &leaf_json(&[784, 784], &[3, 61]));
    let leaf = load_leaf(dir.path()).unwrap();
    assert_eq!(leaf.writers, vec!["w1"]);
    assert_eq!(leaf.by_writer, vec![vec![0, 1]]);
    assert_eq!(leaf.data.labels(), &[3, 61]);
    assert!(
        leaf.data.features().iter().all(|&v| v == 0.0),
        "inverted white is 0"
    );
}

#[test]
fn leaf_bad_syntax_names_file_line_and_column() {
    let dir = leaf_dir(
        "broken.json",
        "{\"users\": [\"w1\"],\n \"num_samples\": [1,, 2]}",
    );
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Json { line: 2, .. }), "{err}");
    assert_mentions(&err, &["broken.json", "line 2", "column"]);
}

#[test]
fn leaf_wrong_types_are_json_errors() {
    let dir = leaf_dir(
        "types.json",
        "{\"users\": [1], \"num_samples\": [], \"user_data\": {}}",
    );
    let err = load_leaf(dir.path()).unwrap_err();
    assert_mentions(&err, &["types.json", "line 1", "expected a string"]);
}

#[test]
fn leaf_wrong_row_length_names_field() {
    let dir = leaf_dir(
        "rows.json",
        &leaf_json(&[784, 784, 784, 783], &[0, 1, 2, 3]),
    );
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Schema { .. }), "{err}");
    assert_mentions(
        &err,
        &["rows.json", "user_data.w1.x[3]", "783 values, expected 784"],
    );
}

#[test]
fn leaf_label_out_of_range_names_field() {
    let dir = leaf_dir("labels.json", &leaf_json(&[784, 784], &[0, 62]));
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::LabelOutOfRange { label: 62, .. }),
        "{err}"
    );
    assert_mentions(&err, &["labels.json", "user_data.w1.y[1]", "label 62"]);
    let dir = leaf_dir("negative.json", &leaf_json(&[784], &[-1]));
    assert_mentions(
        &load_leaf(dir.path()).unwrap_err(),
        &["negative.json", "label -1"],
    );
}

#[test]
fn leaf_inconsistent_counts_and_users_name_fields() {
    let cases = [
        (
            "{\"users\": [\"w1\"], \"num_samples\": [1, 2], \"user_data\": {}}",
            "field `num_samples`",
        ),
        (
            "{\"users\": [\"w1\"], \"num_samples\": [1], \"user_data\": {}}",
            "field `users[0]`: writer `w1` has no entry",
        ),
        (
            "{\"users\": [], \"num_samples\": [], \"user_data\": {\"w9\": {\"x\": [], \"y\": []}}}",
            "field `user_data.w9`",
        ),
        (
            "{\"users\": [\"w1\"], \"num_samples\": [2], \"user_data\": {\"w1\": {\"x\": [], \"y\": []}}}",
            "field `user_data.w1.x`: has 0 samples but `num_samples` says 2",
        ),
    ];
    for (contents, expected) in cases {
        let dir = leaf_dir("u.json", contents);
        assert_mentions(&load_leaf(dir.path()).unwrap_err(), &["u.json", expected]);
    }
}

#[test]
fn leaf_duplicate_writer_across_files_names_both() {
    let dir = leaf_dir("a.json", &leaf_json(&[784], &[1]));
    write(&dir, "b.json", leaf_json(&[784], &[2]));
    let err = load_leaf(dir.path()).unwrap_err();
    assert_mentions(&err, &["b.json", "users[0]", "already listed in", "a.json"]);
}
