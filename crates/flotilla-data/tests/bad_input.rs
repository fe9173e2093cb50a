//! Malformed files give typed errors whose message names the file and the offset or field.

use std::fs;
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use flotilla_data::loaders::idx::read_idx;
use flotilla_data::{
    CifarBinary, DataError, ImageSize, LeafFormat, decode_image, load_cifar10_binary_dir,
    load_cifar10_dir, load_cifar100_binary_dir, load_idx_dataset, load_image_folder, load_leaf_dir,
    load_mnist_dir, parse_cifar_binary, parse_idx, parse_leaf,
};
use std::io::Write;
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
            DataError::Length {
                declared: 28,
                actual: 26,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["imgs-idx3-ubyte", "declares 28 bytes", "holds 26"]);
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
    let err = load_image_folder(&root, "t", None).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert_mentions(&err, &["0001.jpg", "cannot decode"]);
}

#[test]
fn image_folder_truncated_jpeg_names_file() {
    let jpeg = jpeg_bytes();
    let (_dir, root) = image_folder_with("0001.jpg", &jpeg[..jpeg.len() / 2]);
    let err = load_image_folder(&root, "t", None).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert_mentions(&err, &["0001.jpg"]);
}

#[test]
fn image_folder_without_classes_is_a_layout_error() {
    let dir = TempDir::new().unwrap();
    let err = load_image_folder(dir.path(), "t", None).unwrap_err();
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

// ---------------------------------------------------------------------------------------
// 1. Train and test splits: one sample shape, at least one sample each.

/// An MNIST folder whose train split has 3 images of `train` (h, w) and test split 2 of
/// `test`, raw IDX.
fn mnist_dir(train: (u32, u32), test: (u32, u32)) -> TempDir {
    let dir = TempDir::new().expect("temp dir can be created");
    for (prefix, n, (h, w)) in [("train", 3, train), ("t10k", 2, test)] {
        let pixels = vec![7u8; (n * h * w) as usize];
        write(
            &dir,
            &format!("{prefix}-images-idx3-ubyte"),
            idx_bytes(&[n, h, w], &pixels),
        );
        let labels = vec![1u8; n as usize];
        write(
            &dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            idx_bytes(&[n], &labels),
        );
    }
    dir
}

#[test]
fn idx_train_and_test_of_different_shapes_name_both_files_and_shapes() {
    // Same pixel count (784), different shapes: this used to load and panic in evaluation.
    let dir = mnist_dir((28, 28), (14, 56));
    let err = load_mnist_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::SplitShapes { .. }), "{err}");
    assert_mentions(
        &err,
        &[
            "train-images-idx3-ubyte holds 28x28x1",
            "t10k-images-idx3-ubyte holds 14x56x1",
        ],
    );
    let (train, test) = load_mnist_dir(mnist_dir((14, 56), (14, 56)).path()).unwrap();
    assert_eq!((train.len(), test.len()), (3, 2));
}

#[test]
fn idx_empty_split_names_the_file() {
    let dir = mnist_dir((28, 28), (28, 28));
    write(&dir, "t10k-images-idx3-ubyte", idx_bytes(&[0, 28, 28], &[]));
    write(&dir, "t10k-labels-idx1-ubyte", idx_bytes(&[0], &[]));
    let err = load_mnist_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert_mentions(&err, &["t10k-images-idx3-ubyte", "no samples"]);
}

#[test]
fn idx_zero_sample_dimension_names_file_and_offset() {
    let dir = TempDir::new().unwrap();
    let images = write(&dir, "x-idx3", idx_bytes(&[3, 0, 28], &[]));
    let labels = write(&dir, "y-idx1", idx_bytes(&[3], &[0, 1, 2]));
    let err = load_idx_dataset(&images, &labels, 10, "t").unwrap_err();
    assert!(matches!(err, DataError::Header { offset: 8, .. }), "{err}");
    assert_mentions(&err, &["x-idx3", "dimension 1 of [3, 0, 28] is zero"]);
}

// ---------------------------------------------------------------------------------------
// 2. Gzip IDX: decompression bounded by the header.

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    for part in parts {
        enc.write_all(part).expect("writing to memory succeeds");
    }
    enc.finish().expect("writing to memory succeeds")
}

/// Peak resident memory of this process so far \[bytes\] (Linux only).
fn peak_memory() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn idx_gzip_bomb_stops_at_the_declared_size() {
    let dir = TempDir::new().unwrap();
    // 10 images of 2x2 declared (56 bytes in all), then 300 MB of zeros.
    let header = idx_bytes(&[10, 2, 2], &[0; 40]);
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(&header).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..300 {
        enc.write_all(&block).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    drop(block);
    let path = write(&dir, "bomb-idx3-ubyte.gz", &bomb);
    let before = peak_memory();
    let err = read_idx(&path).unwrap_err();
    let after = peak_memory();
    let actual = 56 + 300 * (1 << 20);
    assert!(
        matches!(err, DataError::Length { declared: 56, actual: a, .. } if a == actual),
        "{err}"
    );
    assert_mentions(
        &err,
        &[
            "bomb-idx3-ubyte.gz",
            "declares 56 bytes",
            &format!("holds {actual}"),
        ],
    );
    if let (Some(before), Some(after)) = (before, after) {
        // Reading everything would need 300 MB; counting the excess needs a buffer.
        assert!(
            after - before < 64 << 20,
            "peak memory grew by {} bytes",
            after - before
        );
    }
}

#[test]
fn idx_gzip_shorter_than_declared_names_both_sizes() {
    let dir = TempDir::new().unwrap();
    // 100 images of 4x4 declared, 10 present.
    let gz = gzip(&[&idx_bytes(&[100, 4, 4], &[9; 160])]);
    let path = write(&dir, "short-idx3-ubyte.gz", gz);
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Length {
                declared: 1616,
                actual: 176,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(
        &err,
        &["short-idx3-ubyte.gz", "declares 1616 bytes", "holds 176"],
    );
}

#[test]
fn idx_header_declaring_more_than_gzip_can_hold_is_rejected_before_allocating() {
    let dir = TempDir::new().unwrap();
    // 4 x 2^30 x 4 = 16 GiB declared by a gzip file of a few dozen bytes.
    let gz = gzip(&[&idx_bytes(&[4, 1 << 30, 4], &[])]);
    let path = write(&dir, "huge-idx3-ubyte.gz", &gz);
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::Header { offset: 4, .. }), "{err}");
    assert_mentions(
        &err,
        &[
            "huge-idx3-ubyte.gz",
            "declare 17179869200 bytes",
            &format!("{}-byte gzip file", gz.len()),
            "1032:1",
        ],
    );
    // Raw, the same header is checked against the file's length.
    let path = write(&dir, "huge-idx3-ubyte", idx_bytes(&[4, 1 << 30, 4], &[]));
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Length {
                declared: 17_179_869_200,
                actual: 16,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn idx_from_bytes_matches_the_file_loader() {
    let bytes = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let gz = gzip(&[&bytes[..5], &bytes[5..]]);
    let origin = std::path::Path::new("in-memory.idx");
    let a = parse_idx(&bytes, origin).unwrap();
    assert_eq!(
        (a.dims.clone(), a.data.clone()),
        (vec![2, 3], vec![1, 2, 3, 4, 5, 6])
    );
    assert_eq!(parse_idx(&gz, origin).unwrap(), a);
    let err = parse_idx(&bytes[..13], origin).unwrap_err();
    assert_mentions(&err, &["in-memory.idx", "declares 18 bytes", "holds 13"]);
}

// ---------------------------------------------------------------------------------------
// 3. Image folders: sizes checked from headers before anything is decoded or allocated.

/// The CRC-framed PNG chunk `kind` with `data`.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A PNG whose header declares `width` x `height` RGB but whose pixel data is one byte: only
/// a loader that decodes (or allocates) before checking the header would notice.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(&[0]).expect("writing to memory succeeds");
    let idat = z.finish().expect("writing to memory succeeds");
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        png_chunk(b"IHDR", &ihdr),
        png_chunk(b"IDAT", &idat),
        png_chunk(b"IEND", &[]),
    ]
    .concat()
}

#[test]
fn image_folder_huge_first_image_is_rejected_from_its_header() {
    // CIFAR-10 layout whose first training image claims 8000x8000.
    let dir = TempDir::new().unwrap();
    for split in ["train", "test"] {
        for class in flotilla_data::loaders::cifar::CIFAR10_CLASSES {
            let d = dir.path().join(split).join(class);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("0001.jpg"), jpeg_bytes()).unwrap();
        }
    }
    let first = dir.path().join("train/airplane/0000.png");
    fs::write(&first, png_header_only(8000, 8000)).unwrap();
    let err = load_cifar10_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert_mentions(
        &err,
        &[
            "airplane/0000.png",
            "image is 8000x8000 (height x width), expected 32x32",
        ],
    );
    // Without an expected size, the first image's header sets it, and a folder of other sizes
    // is rejected before the feature array is allocated.
    let (_dir, root) = image_folder_with("0001.png", &png_header_only(8000, 6000));
    let err = load_image_folder(&root, "t", None).unwrap_err();
    assert_mentions(&err, &["0001.png", "image is 6000x8000", "0000.jpg is 4x4"]);
    let size = ImageSize {
        height: 4,
        width: 4,
    };
    let err = decode_image(&png_header_only(8000, 8000), &first, Some(size)).unwrap_err();
    assert_mentions(&err, &["0000.png", "8000x8000", "expected 4x4"]);
}

#[test]
fn image_too_large_to_decode_is_named_with_its_size() {
    let dir = TempDir::new().unwrap();
    let class = dir.path().join("cat");
    fs::create_dir(&class).unwrap();
    let side = (1 << 31) - 1;
    for name in ["a.png", "b.png"] {
        fs::write(class.join(name), png_header_only(side, side)).unwrap();
    }
    let err = load_image_folder(dir.path(), "t", None).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert_mentions(
        &err,
        &["a.png", "image is 2147483647x2147483647", "512 MiB"],
    );
    let err = decode_image(&png_header_only(5, 0), &class.join("c.png"), None).unwrap_err();
    assert_mentions(&err, &["c.png", "image is 0x5", "no pixels"]);
}

// ---------------------------------------------------------------------------------------
// 4. Truncated images.

/// A 64x64 RGB JPEG of noise-like content (so the entropy-coded data is most of the file).
fn big_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        let v = (x * 37 + y * 91 + x * y * 13) as u8;
        image::Rgb([v, v.wrapping_mul(3), v ^ 0x5a])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("JPEG encoding succeeds");
    out.into_inner()
}

#[test]
fn truncated_jpeg_is_rejected_and_padding_after_its_end_is_not() {
    let jpeg = big_jpeg();
    let origin = std::path::Path::new("cut.jpg");
    let whole = decode_image(&jpeg, origin, None).unwrap();
    assert_eq!(whole.dimensions(), (64, 64));
    for keep in [jpeg.len() * 2 / 3, jpeg.len() - 1, jpeg.len() - 2] {
        let err = decode_image(&jpeg[..keep], origin, None).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{err}");
        assert_mentions(&err, &["cut.jpg", "truncated", "FF D9"]);
    }
    let padded = [jpeg.as_slice(), b"\0\0\r\n\xff"].concat();
    assert_eq!(decode_image(&padded, origin, None).unwrap(), whole);
    // Through the folder loader, the file is named.
    let (_dir, root) = image_folder_with("0001.jpg", &jpeg[..jpeg.len() * 2 / 3]);
    let err = load_image_folder(&root, "t", None).unwrap_err();
    assert_mentions(&err, &["0001.jpg", "truncated"]);
}

#[test]
fn truncated_png_is_rejected() {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let origin = std::path::Path::new("cut.png");
    assert_eq!(decode_image(&png, origin, None).unwrap(), img);
    for keep in [png.len() * 2 / 3, png.len() - 12, png.len() - 1] {
        let err = decode_image(&png[..keep], origin, None).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{err}");
        assert_mentions(&err, &["cut.png", "truncated", "IEND"]);
    }
}

// ---------------------------------------------------------------------------------------
// 5. LEAF: pixel values, repeated writers.

/// A LEAF file with one writer `w1` of two samples; sample 1's pixel 5 is `value`.
fn leaf_with_pixel(value: &str) -> String {
    let row = vec!["0.5"; 784].join(", ");
    let mut bad: Vec<&str> = vec!["0.5"; 784];
    bad[5] = value;
    format!(
        "{{\"users\": [\"w1\"], \"num_samples\": [2], \"user_data\": {{\"w1\": {{\"x\": [[{row}], [{}]], \"y\": [1, 2]}}}}}}",
        bad.join(", ")
    )
}

#[test]
fn leaf_pixels_outside_zero_one_name_file_writer_sample_and_value() {
    for (value, shown) in [
        ("255", "255.0"),
        ("1e30", "1e30"),
        ("-0.5", "-0.5"),
        ("1.0001", "1.0001"),
    ] {
        let dir = leaf_dir("pixels.json", &leaf_with_pixel(value));
        let err = load_leaf(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Schema { .. }), "{value}: {err}");
        assert_mentions(
            &err,
            &[
                "pixels.json",
                "user_data.w1.x[1][5]",
                "writer `w1` sample 1",
                &format!("pixel value {shown} "),
            ],
        );
    }
    // Beyond f32's range the parser itself refuses (JSON has no NaN or infinity).
    let dir = leaf_dir("huge.json", &leaf_with_pixel("1e39"));
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Json { .. }), "{err}");
    assert_mentions(&err, &["huge.json", "number out of range"]);
    for value in ["0", "1", "0.25"] {
        let dir = leaf_dir("ok.json", &leaf_with_pixel(value));
        assert_eq!(load_leaf(dir.path()).unwrap().data.len(), 2, "{value}");
    }
}

#[test]
fn leaf_writer_repeated_in_user_data_names_file_and_writer() {
    let x = format!("[{}]", vec!["0.5"; 784].join(", "));
    let contents = format!(
        "{{\"users\": [\"w1\"], \"num_samples\": [1], \"user_data\": {{\
         \"w1\": {{\"x\": [{x}], \"y\": [1]}}, \"w1\": {{\"x\": [{x}], \"y\": [2]}}}}}}"
    );
    let dir = leaf_dir("twice.json", &contents);
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Schema { .. }), "{err}");
    assert_mentions(
        &err,
        &[
            "twice.json",
            "field `user_data.w1`",
            "writer `w1` appears twice",
        ],
    );
}

#[test]
fn leaf_without_samples_names_the_directory() {
    let dir = leaf_dir(
        "none.json",
        "{\"users\": [], \"num_samples\": [], \"user_data\": {}}",
    );
    let err = load_leaf(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert_mentions(&err, &[&dir.path().display().to_string(), "no samples"]);
}

#[test]
fn leaf_from_bytes_applies_the_same_rules() {
    let origin = std::path::Path::new("mem.json");
    let format = LeafFormat::femnist(false);
    let leaf = parse_leaf(leaf_with_pixel("0.75").as_bytes(), origin, format, "t").unwrap();
    assert_eq!(leaf.data.features()[[1, 5]], 0.75);
    let err = parse_leaf(leaf_with_pixel("2").as_bytes(), origin, format, "t").unwrap_err();
    assert_mentions(&err, &["mem.json", "x[1][5]", "pixel value 2.0 "]);
}

// ---------------------------------------------------------------------------------------
// 6. CIFAR binary and IDX: counts, dimensions and labels.

#[test]
fn cifar_binary_empty_file_names_it() {
    let dir = TempDir::new().unwrap();
    let record = [vec![3u8], vec![0u8; 3072]].concat();
    for i in 1..=5 {
        write(&dir, &format!("data_batch_{i}.bin"), &record);
    }
    write(&dir, "test_batch.bin", []);
    let err = load_cifar10_binary_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert_mentions(&err, &["test_batch.bin", "no samples"]);
}

#[test]
fn cifar100_coarse_label_out_of_range_names_record_and_offset() {
    let dir = TempDir::new().unwrap();
    let record = |coarse: u8, fine: u8| [vec![coarse, fine], vec![0u8; 3072]].concat();
    write(&dir, "train.bin", [record(19, 99), record(20, 5)].concat());
    write(&dir, "test.bin", record(0, 0));
    let err = load_cifar100_binary_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                label: 20,
                classes: 20,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(
        &err,
        &["train.bin", "sample 1 (byte offset 3074)", "label 20"],
    );
}

#[test]
fn cifar_binary_gzip_and_bytes_load_like_raw() {
    let dir = TempDir::new().unwrap();
    let record = |label: u8| [vec![label], vec![51u8; 3072]].concat();
    let raw = [record(4), record(9)].concat();
    let origin = dir.path().join("test_batch.bin");
    let from_raw = parse_cifar_binary(&raw, &origin, CifarBinary::Cifar10, "t").unwrap();
    assert_eq!(from_raw.labels(), &[4, 9]);
    assert!(from_raw.features().iter().all(|&v| v == 0.2));
    let gz = gzip(&[&raw]);
    let from_gz = parse_cifar_binary(&gz, &origin, CifarBinary::Cifar10, "t").unwrap();
    assert_eq!(from_gz, from_raw);
    // A gzip stream that ends inside a record is truncated at a decompressed offset.
    let cut = gzip(&[&raw[..3073 + 100]]);
    let err = parse_cifar_binary(&cut, &origin, CifarBinary::Cifar10, "t").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                offset: 3173,
                needed: 2973,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err, &["test_batch.bin", "byte offset 3173"]);
}

#[test]
fn idx_dimensions_that_overflow_name_file_and_offset() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "overflow-idx",
        idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]),
    );
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::Header { offset: 4, .. }), "{err}");
    assert_mentions(&err, &["overflow-idx", "overflow"]);
    // A product that fits u64 but not with the header added.
    let path = write(&dir, "edge-idx", idx_bytes(&[u32::MAX, u32::MAX, 2], &[]));
    assert!(read_idx(&path).is_err());
}

#[test]
fn idx_label_file_of_wrong_rank_names_it() {
    let dir = TempDir::new().unwrap();
    let images = write(&dir, "x-idx3", idx_bytes(&[2, 1, 1], &[1, 2]));
    let labels = write(&dir, "y-idx2", idx_bytes(&[2, 1], &[0, 1]));
    let err = load_idx_dataset(&images, &labels, 10, "t").unwrap_err();
    assert!(matches!(err, DataError::Header { offset: 3, .. }), "{err}");
    assert_mentions(&err, &["y-idx2", "needs 1 dimension, found 2"]);
}

// ---------------------------------------------------------------------------------------
// Arbitrary bytes through every bytes-based entry point: an error or a value, never a panic.

mod never_panic {
    use super::*;
    use proptest::prelude::*;

    /// A valid file of each format, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        vec![
            idx_bytes(&[2, 2, 2], &[1; 8]),
            gzip(&[&idx_bytes(&[2, 2, 2], &[1; 8])]),
            [vec![3u8], vec![9u8; 3072]].concat(),
            leaf_json(&[784], &[3]).into_bytes(),
            jpeg_bytes(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn mutated_inputs_give_errors_not_panics(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = seeds().swap_remove(which);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let origin = std::path::Path::new("fuzz");
            let _ = parse_idx(&bytes, origin);
            let _ = parse_cifar_binary(&bytes, origin, CifarBinary::Cifar100, "t");
            let _ = parse_leaf(&bytes, origin, LeafFormat::femnist(true), "t");
            let _ = decode_image(&bytes, origin, None);
        }
    }
}

/// Found by the `image` fuzz target: a PNG header of 2^32 - 1 × 2^32 - 1 pixels overflowed the
/// byte count of the size check (a panic with overflow checks, a passed check without).
#[test]
fn png_header_whose_byte_count_overflows_is_too_large() {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&[0xFF; 8]);
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    let err = flotilla_data::decode_image(&png, std::path::Path::new("huge.png"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("huge.png") && err.contains("512 MiB"), "{err}");
}
