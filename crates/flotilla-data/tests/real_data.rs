//! Loads the real datasets of the shared data folder and checks their known figures.
//!
//! Each test prints a note and returns if the folder is absent (it is present in CI).

use std::path::PathBuf;
use std::time::Instant;

use flotilla_data::{
    ImageShape, Standardizer, load_cifar10_dir, load_femnist_dir, load_image_folder, load_mnist_dir,
};

fn data_dir(sub: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent; skipping", dir.display());
        None
    }
}

fn mean(values: impl Iterator<Item = f32>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + f64::from(v), n + 1));
    sum / n as f64
}

#[test]
fn mnist_loads_with_known_counts() {
    let Some(dir) = data_dir("mnist") else { return };
    let start = Instant::now();
    let (train, test) = load_mnist_dir(&dir).unwrap();
    eprintln!("MNIST train+test loaded in {:?}", start.elapsed());
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.shape(), ImageShape::new(28, 28, 1));
    assert_eq!(train.classes(), 10);
    assert_eq!(
        train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let pixel_mean = mean(train.features().iter().copied());
    assert!((pixel_mean - 0.1307).abs() < 1e-3, "{pixel_mean}");
}

#[test]
fn femnist_loads_writers_and_inverts() {
    let Some(dir) = data_dir("femnist") else {
        return;
    };
    let start = Instant::now();
    let (train, test) = load_femnist_dir(&dir, true).unwrap();
    eprintln!("FEMNIST train+test loaded in {:?}", start.elapsed());
    assert_eq!((train.writers.len(), train.data.len()), (105, 14_708));
    assert_eq!((test.writers.len(), test.data.len()), (184, 4_088));
    assert_eq!(train.data.classes(), 62);
    assert_eq!(train.data.shape(), ImageShape::new(28, 28, 1));
    let sizes: usize = train.by_writer.iter().map(Vec::len).sum();
    assert_eq!(sizes, train.data.len());
    assert!(train.writers.iter().all(|w| test.writers.contains(w)));
    // Inverted, the background is 0: the corner pixel is ~0 and the mean is low.
    let corner = mean(train.data.features().column(0).iter().copied());
    let overall = mean(train.data.features().iter().copied());
    assert!(
        corner < 0.01 && overall < 0.25,
        "corner {corner}, mean {overall}"
    );
    let counts = train.data.class_counts();
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn cifar10_test_folder_loads() {
    let Some(dir) = data_dir("cifar10") else {
        return;
    };
    let start = Instant::now();
    let folder = load_image_folder(&dir.join("test"), "cifar10-test", None).unwrap();
    eprintln!("CIFAR-10 test folder loaded in {:?}", start.elapsed());
    assert_eq!(folder.class_names[0], "airplane");
    assert_eq!(folder.class_names[9], "truck");
    let data = folder.data;
    assert_eq!(data.len(), 10_000);
    assert_eq!(data.shape(), ImageShape::new(32, 32, 3));
    assert_eq!(data.class_counts(), vec![1000; 10]);
    let stats = Standardizer::fit_per_channel(&data).unwrap();
    let expected = [0.491, 0.482, 0.447];
    for (m, e) in stats.mean().iter().zip(expected) {
        assert!((f64::from(*m) - e).abs() < 0.02, "{:?}", stats.mean());
    }
}

#[test]
fn cifar10_train_and_test_load() {
    let Some(dir) = data_dir("cifar10") else {
        return;
    };
    let start = Instant::now();
    let (train, test) = load_cifar10_dir(&dir).unwrap();
    eprintln!("CIFAR-10 train+test loaded in {:?}", start.elapsed());
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    assert_eq!(train.class_counts(), vec![5000; 10]);
    let stats = Standardizer::fit_per_channel(&train).unwrap();
    let (means, stds) = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.262]);
    for c in 0..3 {
        assert!(
            (f64::from(stats.mean()[c]) - means[c]).abs() < 0.01,
            "{:?}",
            stats.mean()
        );
        assert!(
            (f64::from(stats.std()[c]) - stds[c]).abs() < 0.01,
            "{:?}",
            stats.std()
        );
    }
}
