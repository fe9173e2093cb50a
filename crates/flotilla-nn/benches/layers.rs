//! A training forward and backward pass of single layers at the shapes of ResNet-20 on
//! CIFAR-10 at batch 32: batch norm and 3×3 stride-1 convolutions over 32×32 images at
//! 16 channels (full width, stage 1), 8 and 4 channels (`resnet20:0.25`'s stages 2 and
//! 1); all three on the direct kernels where the CPU has AVX-512.
//!
//! One criterion "element" is one activation value of the layer's output, so "Gelem/s"
//! reads as 10⁹ values per second through forward and backward.
//!
//! Run: `cargo bench -p flotilla-nn --bench layers`. With the `flotilla` binary's allocator
//! (mimalloc), so that a pass's fresh output reuses memory as it does in a run, rather than
//! timing the system allocator's page faults.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_nn::layer::{BatchNorm, BatchNormConfig, Conv2d};
use flotilla_nn::{Layer, Mode, Shape, Tensor};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;

/// One forward (training mode) and backward of `layer` on `x`, with output gradient `dy`.
fn step(layer: &mut dyn Layer, x: &Tensor, dy: &Tensor, params: &[f32], state: &mut [f32]) {
    let mut grads = vec![0.0; params.len()];
    black_box(layer.forward(x.clone(), params, state, Mode::Train));
    black_box(layer.backward(dy.clone(), params, &mut grads));
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    for channels in [16, 8, 4] {
        let shape = Shape::image(32, 32, channels);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut random = |_: (usize, usize, usize, usize)| rng.random_range(-1.0f32..1.0);
        let x = Array4::from_shape_fn((BATCH, 32, 32, channels), &mut random);
        let dy = Array4::from_shape_fn((BATCH, 32, 32, channels), &mut random);
        group.throughput(Throughput::Elements(x.len() as u64));
        let mut candidates: [(&str, Box<dyn Layer>); 2] = [
            (
                "batchnorm",
                Box::new(BatchNorm::new(shape, BatchNormConfig::default())),
            ),
            (
                "conv3x3",
                Box::new(Conv2d::new(shape, channels, 3, 1, false)),
            ),
        ];
        for (name, layer) in &mut candidates {
            let count = |specs: Vec<flotilla_nn::ParamSpec>| specs.iter().map(|s| s.len()).sum();
            let params: Vec<f32> = (0..count(layer.param_specs()))
                .map(|_| random((0, 0, 0, 0)))
                .collect();
            let mut state: Vec<f32> = vec![1.0; count(layer.state_specs())];
            group.bench_function(format!("{name} 32x32x{channels}"), |b| {
                b.iter(|| step(layer.as_mut(), &x, &dy, &params, &mut state))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
