//! One SGD step at batch 32 (forward, backward, momentum update) for the reference models.
//!
//! Two groups report the same step: `sgd_step_samples` in samples/s (criterion's
//! "elem/s"), and `sgd_step_flops` where one "element" is one floating-point operation, so
//! its "Gelem/s" reads as GFLOP/s. A step counts `3 × forward FLOPs × batch` (forward, the
//! input gradient and the weight gradient each cost about one forward).
//!
//! Run: `cargo bench --bench training`. With the `flotilla` binary's allocator (mimalloc), so
//! that a step's fresh activations reuse memory as they do in a run, rather than timing the
//! system allocator's page faults.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla::nn::{ModelSpec, SgdConfig, Shape, Tensor};
use flotilla::train::Trainer;
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;

/// The benchmarked models with their input shapes and classes.
const MODELS: [(&str, Shape, usize); 3] = [
    ("mlp:784-256-128-10", Shape::image(28, 28, 1), 10),
    ("resnet20", Shape::image(32, 32, 3), 10),
    ("resnet20:0.25", Shape::image(32, 32, 3), 10),
];

fn sgd_steps(c: &mut Criterion) {
    for (group_name, per_step) in [("sgd_step_samples", false), ("sgd_step_flops", true)] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        for (spec, input, classes) in MODELS {
            let spec: ModelSpec = spec.parse().expect("valid spec");
            let net = spec.build(input, classes).expect("model fits its input");
            let flops = 3 * net.flops_per_sample() * BATCH as u64;
            group.throughput(Throughput::Elements(if per_step {
                flops
            } else {
                BATCH as u64
            }));
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut weights = net.init(&mut rng);
            let x = Array4::from_shape_fn((BATCH, input.h, input.w, input.c), |_| {
                rng.random_range(-1.0f32..1.0)
            });
            let y: Vec<u32> = (0..BATCH).map(|i| (i % classes) as u32).collect();
            let mut trainer = Trainer::new(net, SgdConfig::default()).expect("valid config");
            group.bench_function(spec.to_string(), |b| {
                b.iter(|| {
                    let x: Tensor = x.clone();
                    black_box(
                        trainer
                            .cross_entropy_step(&mut weights, x, &y, 0.01)
                            .expect("step"),
                    )
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, sgd_steps);
criterion_main!(benches);
