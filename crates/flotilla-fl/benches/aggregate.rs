//! The server's mean of a round's updates: 20 updates of the P1 model `mlp:784-256-128-10`
//! (235,146 parameters), weighted by sample count, as `average_weights` computes it at the
//! end of every P1 round while the job threads wait.
//!
//! One criterion "element" is one parameter of one update, so "Gelem/s" reads as 10⁹ values
//! averaged per second.
//!
//! Run: `cargo bench -p flotilla-fl --bench aggregate`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_fl::weighted_mean;
use ndarray::Array1;
use std::hint::black_box;

/// Parameters of `mlp:784-256-128-10`.
const PARAMS: usize = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10;

/// Updates in a P1 round.
const UPDATES: usize = 20;

fn mean(c: &mut Criterion) {
    let updates: Vec<(f64, Array1<f32>)> = (0..UPDATES)
        .map(|u| {
            let values = Array1::from_shape_fn(PARAMS, |i| ((i * 31 + u * 7) % 1000) as f32 * 1e-3);
            (90.0 + u as f64, values)
        })
        .collect();
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements((PARAMS * UPDATES) as u64));
    group.bench_function("weighted_mean p1 round", |b| {
        b.iter(|| black_box(weighted_mean(updates.iter().map(|(w, x)| (*w, x)))))
    });
    group.finish();
}

criterion_group!(benches, mean);
criterion_main!(benches);
