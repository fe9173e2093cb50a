//! The matrix products of the reference layers: `flotilla_nn::gemm` (the gemm crate, with
//! `matrixmultiply` for narrow transposed products) against ndarray's `general_mat_mul`
//! (`matrixmultiply`, the kernel before it).
//!
//! One criterion "element" is one floating-point operation (`2·m·n·k`), so "Gelem/s" reads
//! as GFLOP/s. Shapes: MLP 784-256-128-10 and 784-32-10 at batch 32 (forward `X·W`, weight
//! gradient `Xᵀ·dY`, input gradient `dY·Wᵀ`) and the column-matrix chunks of the ResNet-20
//! convolutions at 25 % width (and one stage-3 layer at full width) at batch 32: forward
//! `cols·W`, `dW += colsᵀ·dY`, `dcols = dY·Wᵀ`.
//!
//! `faer`'s sequential matmul (0.24.4) was measured too, outside this bench: faster still on
//! narrow convolution shapes, but its safe API segfaulted and corrupted the heap on several
//! MLP shapes on this machine's AVX-512 path, so it is not a candidate (see linalg.rs).
//!
//! Run: `cargo bench -p flotilla-nn --bench gemm`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_nn::gemm;
use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

/// (name, m, k, n, left operand transposed, right operand transposed, beta)
const SHAPES: [(&str, usize, usize, usize, bool, bool, f32); 27] = [
    ("mlp fc1 fwd", 32, 784, 256, false, false, 1.0),
    ("mlp fc1 dW", 784, 32, 256, true, false, 0.0),
    ("mlp fc1 dX", 32, 256, 784, false, true, 0.0),
    ("mlp fc2 fwd", 32, 256, 128, false, false, 1.0),
    ("mlp fc2 dW", 256, 32, 128, true, false, 0.0),
    ("mlp fc2 dX", 32, 128, 256, false, true, 0.0),
    ("mlp fc3 fwd", 32, 128, 10, false, false, 1.0),
    ("mlp fc3 dW", 128, 32, 10, true, false, 0.0),
    ("mlp fc3 dX", 32, 10, 128, false, true, 0.0),
    ("aux fc1 fwd", 32, 784, 32, false, false, 1.0),
    ("aux fc1 dW", 784, 32, 32, true, false, 0.0),
    ("aux fc1 dX", 32, 32, 784, false, true, 0.0),
    ("r20/4 stem 3>16 fwd", 2400, 27, 16, false, false, 0.0),
    ("r20/4 stem 3>16 dW", 27, 2400, 16, true, false, 1.0),
    ("r20/4 stem 3>16 dcols", 2400, 16, 27, false, true, 0.0),
    ("r20/4 s1 16>4 fwd", 448, 144, 4, false, false, 0.0),
    ("r20/4 s1 16>4 dW", 144, 448, 4, true, false, 1.0),
    ("r20/4 s1 4>4 fwd", 1792, 36, 4, false, false, 0.0),
    ("r20/4 s1 4>4 dW", 36, 1792, 4, true, false, 1.0),
    ("r20/4 s1 4>4 dcols", 1792, 4, 36, false, true, 0.0),
    ("r20/4 s2 8>8 fwd", 896, 72, 8, false, false, 0.0),
    ("r20/4 s2 8>8 dW", 72, 896, 8, true, false, 1.0),
    ("r20/4 s2 8>8 dcols", 896, 8, 72, false, true, 0.0),
    ("r20/4 s3 16>16 fwd", 448, 144, 16, false, false, 0.0),
    ("r20/4 s3 16>16 dW", 144, 448, 16, true, false, 1.0),
    ("r20/4 s3 16>16 dcols", 448, 16, 144, false, true, 0.0),
    ("r20 s3 64>64 fwd", 112, 576, 64, false, false, 0.0),
];

/// A `rows × cols` operand, stored transposed (and viewed through `.t()`) when asked.
fn operand(rows: usize, cols: usize, transposed: bool, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let shape = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    Array2::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0))
}

fn view(store: &Array2<f32>, transposed: bool) -> ArrayView2<'_, f32> {
    if transposed { store.t() } else { store.view() }
}

fn products(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (name, m, k, n, ta, tb, beta) in SHAPES {
        let mut group = c.benchmark_group(format!("gemm {name} {m}x{k}x{n}"));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(1));
        let (a_store, b_store) = (operand(m, k, ta, &mut rng), operand(k, n, tb, &mut rng));
        let (a, b) = (view(&a_store, ta), view(&b_store, tb));
        let mut out = Array2::<f32>::zeros((m, n));
        group.bench_function("matrixmultiply", |bench| {
            bench.iter(|| general_mat_mul(1.0, &a, &b, beta, &mut black_box(&mut out).view_mut()))
        });
        group.bench_function("linalg::gemm", |bench| {
            bench.iter(|| gemm(1.0, &a, &b, beta, &mut black_box(&mut out).view_mut()))
        });
        group.finish();
    }
}

criterion_group!(benches, products);
criterion_main!(benches);
