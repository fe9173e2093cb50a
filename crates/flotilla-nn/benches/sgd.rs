//! One SGD step (momentum 0.9, weight decay on the kernels, as a network's decay mask sets
//! it) over the parameter vector of the P1 model `mlp:784-256-128-10` (235,146 values: with
//! its gradient and velocity, 2.8 MB, more than a core's L2 cache here) and over 16,384 values
//! (in cache: a 16,256-value kernel and its 128 biases), without a clip (one pass) and with
//! one (the norm first, then the update).
//!
//! One criterion "element" is one parameter, so "Gelem/s" reads as 10⁹ parameters stepped
//! per second. The gap between the two sizes is the cost of streaming the vectors from
//! beyond L2.
//!
//! Run: `cargo bench -p flotilla-nn --bench sgd`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_nn::{ModelSpec, Sgd, SgdConfig, Shape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgd");
    let p1: ModelSpec = "mlp:784-256-128-10".parse().expect("valid spec");
    let p1_mask = p1
        .build(Shape::image(28, 28, 1), 10)
        .expect("model fits its input")
        .decay_mask();
    let layer_mask: Vec<bool> = (0..16 * 1024).map(|i| i < 16 * 1024 - 128).collect();
    for (size, mask) in [("p1 model", p1_mask), ("16 Ki", layer_mask)] {
        let len = mask.len();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut params: Vec<f32> = (0..len).map(|_| rng.random_range(-0.1..0.1)).collect();
        let grads: Vec<f32> = (0..len).map(|_| rng.random_range(-0.01..0.01)).collect();
        group.throughput(Throughput::Elements(len as u64));
        for (clip, clip_norm) in [("no clip", None), ("clip", Some(1e9))] {
            let config = SgdConfig {
                weight_decay: 1e-4,
                clip_norm,
                ..SgdConfig::default()
            };
            let mut sgd = Sgd::new(config, mask.clone()).expect("valid config");
            group.bench_function(format!("{size} {clip}"), |b| {
                b.iter(|| black_box(sgd.step(&mut params, &grads, 1e-3).expect("step")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
