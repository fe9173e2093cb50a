//! Centralised training reaches the accuracies that prove the numerics.

use crate::util::shared_data;
use flotilla::data::{Dataset, Standardizer, SyntheticConfig, load_mnist_dir, shuffled_batches};
use flotilla::nn::{ModelSpec, SgdConfig};
use flotilla::train::{BatchLoader, Trainer, evaluate, input_shape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Trains `spec` for `epochs` at batch 32 and returns the test accuracy.
fn train(spec: &str, train: &Dataset, test: &Dataset, epochs: usize, lr: f32) -> f64 {
    let spec: ModelSpec = spec.parse().unwrap();
    let net = spec.build(input_shape(train), train.classes()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut weights = net.init(&mut rng);
    let sgd = SgdConfig {
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
        clip_norm: None,
    };
    let mut trainer = Trainer::new(net, sgd).unwrap();
    let loader = BatchLoader::new(train, None);
    let all: Vec<usize> = (0..train.len()).collect();
    for _ in 0..epochs {
        for batch in shuffled_batches(&all, 32, &mut rng).unwrap() {
            let (x, y) = loader.load(&batch, &mut rng).unwrap();
            trainer.cross_entropy_step(&mut weights, x, &y, lr).unwrap();
        }
    }
    evaluate(trainer.network(), &weights, test, 500)
        .unwrap()
        .accuracy()
}

#[test]
fn target_model_clearly_beats_the_auxiliary_on_the_synthetic_task() {
    let (train_set, test_set) = SyntheticConfig::default().generate().unwrap();
    let large = train("mlp:32-256-256-10", &train_set, &test_set, 3, 0.05);
    let small = train("mlp:32-16-10", &train_set, &test_set, 3, 0.05);
    assert!(large > 0.85, "target model reached only {large:.3}");
    assert!(
        large - small > 0.15,
        "target {large:.3} vs auxiliary {small:.3}"
    );
}

#[test]
fn mnist_mlp_passes_95_percent_after_one_epoch() {
    let Some(root) = shared_data() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let (mut train_set, mut test_set) = load_mnist_dir(&root.join("mnist")).unwrap();
    let standardizer = Standardizer::fit_per_channel(&train_set).unwrap();
    standardizer.apply_dataset(&mut train_set).unwrap();
    standardizer.apply_dataset(&mut test_set).unwrap();
    let accuracy = train("mlp:784-256-128-10", &train_set, &test_set, 1, 0.02);
    assert!(accuracy > 0.95, "MNIST accuracy {accuracy:.4}");
}
