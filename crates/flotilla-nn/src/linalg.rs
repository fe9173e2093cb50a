//! The one place matrix products are computed.
//!
//! Every layer multiplies through [`gemm()`], so the kernel can be swapped here without
//! touching the layers (one exception: 3×3 stride-1 convolutions of 4, 8 or 16 channels run
//! direct AVX-512 kernels, `layer/direct.rs`, where the product would be that narrow).
//! It is single-threaded on purpose: determinism forbids a
//! work-stealing sum, and the simulator parallelises across clients instead.
//!
//! Kernel: the `gemm` crate (AVX-512 micro-kernels through its `x86-v4` feature, chosen at
//! run time from the CPU's features, so one machine always takes the same path), with
//! `Parallelism::None`. On the layer shapes of the MLPs and the ResNet-20 convolutions it
//! runs 1.2–2.8× faster than ndarray's `general_mat_mul` (the `matrixmultiply` crate), which
//! stays the kernel for one family of shapes where it measured faster: a transposed left
//! operand with at most [`NARROW`] output columns (the weight gradients `colsᵀ·dY` of narrow
//! convolutions). `benches/gemm.rs` of this crate measures both (and `faer`, rejected: its
//! safe `matmul` crashed with heap corruption on MLP shapes on this machine's AVX-512 path).
//!
//! Unsafe code: the workspace forbids `unsafe_code`; this crate only denies it, and the one
//! `unsafe` call of the crate, into `gemm::gemm`, lives in [`gemm()`] below under
//! `#[allow(unsafe_code)]` with its safety argument. Every other crate keeps `forbid`.
//!
//! Results depend only on the operands' values and shapes (not on their addresses), so the
//! same inputs give the same bits on one machine; another CPU (AVX2 only, or no AVX) takes
//! other micro-kernels and may round differently.

use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul};

/// Output columns up to which a product with a transposed left operand goes to
/// `matrixmultiply` (measured faster there: e.g. 33 vs 16 GFLOP/s at 144×448·448×4).
const NARROW: usize = 8;

/// `c = alpha · a · b + beta · c`, where `a` and `b` may be transposed or strided views
/// (`.t()`, slices). With `beta == 0` the old contents of `c` are not read (NaN is fine).
///
/// # Panics
/// If the shapes do not chain: `a` is `m × k`, `b` must be `k × n` and `c` `m × n`.
#[allow(unsafe_code)]
pub fn gemm(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "gemm shapes do not chain: a {m}×{k}, b {}×{n}, c {}×{}",
        b.nrows(),
        c.nrows(),
        c.ncols()
    );
    let lhs_transposed = m > 1 && k > 1 && a.strides()[0] == 1;
    if m == 0 || n == 0 || k == 0 || (lhs_transposed && n <= NARROW) {
        general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: `gemm::gemm` reads `lhs[i·lhs_rs + p·lhs_cs]` for i < m, p < k, reads
    // `rhs[p·rhs_rs + j·rhs_cs]` for p < k, j < n, and writes (and, when `read_dst`, reads)
    // `dst[i·dst_rs + j·dst_cs]` for i < m, j < n; strides count elements and may be negative.
    // - Every such element exists: the pointers and strides are those of live ndarray views,
    //   which guarantee `ptr + i·s0 + j·s1` is in bounds of their allocation for every index
    //   of their shape, and the shapes were checked above to be m×k, k×n and m×n (none empty).
    // - No aliasing: `c` is borrowed uniquely (`&mut`) while `a` and `b` are borrowed shared,
    //   so the borrow checker guarantees `c`'s elements overlap neither; and a mutable ndarray
    //   view never maps two indices to one element, so the writes do not overlap each other.
    // - The views outlive the call and nothing else touches them meanwhile (single thread:
    //   `Parallelism::None` starts no threads).
    // - `T = f32` is one of the types `gemm::gemm` supports (it panics on others).
    // - `read_dst` is false exactly when `beta == 0`, so `c` may hold anything then, as with
    //   `general_mat_mul`. Note the crate's argument order: it computes
    //   `dst = alpha'·dst + beta'·lhs·rhs`, so our `beta` is its `alpha` and vice versa.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// How an operand is laid out in memory.
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        /// Row-major, contiguous.
        Rows,
        /// The transpose of a row-major matrix (`.t()`): column-major.
        Transposed,
        /// Every other column of a row-major matrix (non-contiguous, column stride 2).
        Strided,
        /// Every other row of a transposed matrix.
        TransposedStrided,
        /// Rows in reverse order (negative row stride).
        Reversed,
    }

    const LAYOUTS: [Layout; 5] = [
        Layout::Rows,
        Layout::Transposed,
        Layout::Strided,
        Layout::TransposedStrided,
        Layout::Reversed,
    ];

    /// Backing storage for a `rows × cols` operand in `layout`, filled from `rng`.
    fn storage(rows: usize, cols: usize, layout: Layout, rng: &mut ChaCha8Rng) -> Array2<f32> {
        let shape = match layout {
            Layout::Rows | Layout::Reversed => (rows, cols),
            Layout::Transposed => (cols, rows),
            Layout::Strided => (rows, 2 * cols),
            Layout::TransposedStrided => (2 * cols, rows),
        };
        Array2::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0))
    }

    fn view(store: &Array2<f32>, layout: Layout) -> ArrayView2<'_, f32> {
        match layout {
            Layout::Rows => store.view(),
            Layout::Transposed => store.t(),
            Layout::Strided => store.slice(s![.., ..;2]),
            Layout::TransposedStrided => store.slice(s![..;2, ..]).reversed_axes(),
            Layout::Reversed => store.slice(s![..;-1, ..]),
        }
    }

    /// A mutable `rows × cols` window into `store`, which is `(rows + 2) × (cols + 3)` for
    /// the strided layouts so that the window has neighbours on every side.
    fn window(store: &mut Array2<f32>, layout: Layout) -> ArrayViewMut2<'_, f32> {
        match layout {
            Layout::Rows => store.view_mut(),
            Layout::Transposed => store.view_mut().reversed_axes(),
            Layout::Strided | Layout::TransposedStrided => {
                let (r, c) = store.dim();
                store.slice_mut(s![1..r - 1, 2..c - 1])
            }
            Layout::Reversed => store.slice_mut(s![..;-1, ..]),
        }
    }

    fn dst_storage(rows: usize, cols: usize, layout: Layout, rng: &mut ChaCha8Rng) -> Array2<f32> {
        let shape = match layout {
            Layout::Rows | Layout::Reversed => (rows, cols),
            Layout::Transposed => (cols, rows),
            Layout::Strided | Layout::TransposedStrided => (rows + 2, cols + 3),
        };
        Array2::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0))
    }

    /// The tolerance between two kernels that sum the same products in different orders.
    ///
    /// Any order of summing the `k` products and the scaled old value in `f32` (with or
    /// without fused multiply-adds) errs by at most `γ·S`, where `S = |α|·Σ_p |a_ip·b_pj| +
    /// |β·c_ij|` and `γ = (k + 1)·u/(1 − (k + 1)·u)`, `u = ε/2` (Higham, §3.1); two such
    /// results differ by at most `2γ·S ≤ (k + 2)·ε·S` for the sizes here. This bound is
    /// rigorous (no cancellation can break it, unlike one relative to `|c_ij|`), and still
    /// catches any wrong index or stride, whose error is of the order of `S` itself.
    fn tolerance(k: usize, magnitude: f32) -> f32 {
        (k + 2) as f32 * f32::EPSILON * magnitude
    }

    /// Runs [`gemm`] and the reference (`general_mat_mul`) on the same operands and checks
    /// every entry within [`tolerance`], and that `c`'s neighbours in its storage are untouched.
    fn check_against_reference(
        (m, k, n): (usize, usize, usize),
        layouts: (Layout, Layout, Layout),
        alpha: f32,
        beta: f32,
        seed: u64,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a_store = storage(m, k, layouts.0, &mut rng);
        let b_store = storage(k, n, layouts.1, &mut rng);
        let (a, b) = (view(&a_store, layouts.0), view(&b_store, layouts.1));
        let c_store = dst_storage(m, n, layouts.2, &mut rng);
        let c_old = window(&mut c_store.clone(), layouts.2).to_owned();
        let mut ours = c_store.clone();
        gemm(alpha, &a, &b, beta, &mut window(&mut ours, layouts.2));
        let mut reference = c_store.clone();
        general_mat_mul(alpha, &a, &b, beta, &mut window(&mut reference, layouts.2));
        let magnitude = a.abs().dot(&b.abs()) * alpha.abs() + c_old.abs() * beta.abs();
        let got = window(&mut ours, layouts.2).to_owned();
        let want = window(&mut reference, layouts.2).to_owned();
        for ((i, j), &w) in want.indexed_iter() {
            let g = got[[i, j]];
            let tol = tolerance(k, magnitude[[i, j]]);
            assert!(
                (g - w).abs() <= tol,
                "({m}×{k}·{k}×{n}, {layouts:?}, α {alpha}, β {beta}) at [{i}, {j}]: \
                 {g} vs reference {w}, tolerance {tol}"
            );
        }
        // Outside the window (the strided layouts' neighbours) nothing changed.
        let outside = |arr: &Array2<f32>| -> Vec<u32> {
            let mut marked = arr.clone();
            window(&mut marked, layouts.2).fill(f32::NAN);
            marked.iter().map(|v| v.to_bits()).collect()
        };
        let mut untouched = c_store.clone();
        window(&mut untouched, layouts.2).fill(f32::NAN);
        let untouched: Vec<u32> = untouched.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            outside(&ours),
            untouched,
            "wrote outside the destination view"
        );
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (0..LAYOUTS.len()).prop_map(|i| LAYOUTS[i])
    }

    proptest! {
        /// Random shapes (including the narrow ones that go to the fallback), every layout
        /// of both operands and the destination, β ∈ {0, 1, 0.5}: within the tolerance.
        #[test]
        fn matches_general_mat_mul(
            m in 1usize..40,
            k in 1usize..70,
            n in 1usize..40,
            layouts in (layout(), layout(), layout()),
            alpha in prop_oneof![Just(1.0f32), Just(-0.75f32)],
            beta in prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.5f32)],
            seed in any::<u64>(),
        ) {
            check_against_reference((m, k, n), layouts, alpha, beta, seed);
        }
    }

    /// The products the layers actually compute (MLP 784-256-128-10 and 784-32-10 at batch
    /// 32; ResNet-20 convolution chunks), in the layouts and with the β they use.
    /// ((m, k, n), layout of `a`, layout of `b`, β)
    type Product = ((usize, usize, usize), Layout, Layout, f32);

    const LAYER_PRODUCTS: [Product; 12] = [
        ((32, 784, 256), Layout::Rows, Layout::Rows, 1.0),
        ((784, 32, 256), Layout::Transposed, Layout::Rows, 0.0),
        ((32, 256, 784), Layout::Rows, Layout::Transposed, 0.0),
        ((32, 256, 128), Layout::Rows, Layout::Rows, 1.0),
        ((32, 128, 10), Layout::Rows, Layout::Rows, 1.0),
        ((128, 32, 10), Layout::Transposed, Layout::Rows, 0.0),
        ((2400, 27, 16), Layout::Rows, Layout::Rows, 0.0),
        ((27, 2400, 16), Layout::Transposed, Layout::Rows, 1.0),
        ((448, 144, 4), Layout::Rows, Layout::Rows, 0.0),
        ((144, 448, 4), Layout::Transposed, Layout::Rows, 1.0),
        ((896, 8, 72), Layout::Rows, Layout::Transposed, 0.0),
        ((112, 64, 576), Layout::Rows, Layout::Transposed, 0.0),
    ];

    #[test]
    fn layer_products_match_general_mat_mul() {
        for (i, &(shape, la, lb, beta)) in LAYER_PRODUCTS.iter().enumerate() {
            check_against_reference(shape, (la, lb, Layout::Rows), 1.0, beta, i as u64);
        }
    }

    /// Same operands ⇒ same bits, run twice and with the operands and destination copied to
    /// every offset of a 64-byte line (so no result depends on alignment).
    #[test]
    fn same_inputs_give_same_bits_at_any_address() {
        for (i, &((m, k, n), la, lb, beta)) in LAYER_PRODUCTS.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(100 + i as u64);
            let a_store = storage(m, k, la, &mut rng);
            let b_store = storage(k, n, lb, &mut rng);
            let c0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let run = |offset: usize| -> Vec<u32> {
                let shifted = |store: &Array2<f32>| {
                    let mut buf = vec![0.0; offset];
                    buf.extend(store.iter());
                    buf
                };
                let (a_buf, b_buf) = (shifted(&a_store), shifted(&b_store));
                let a_store = ArrayView2::from_shape(a_store.dim(), &a_buf[offset..]).unwrap();
                let b_store = ArrayView2::from_shape(b_store.dim(), &b_buf[offset..]).unwrap();
                let (a, b) = match (la, lb) {
                    (Layout::Transposed, _) => (a_store.reversed_axes(), b_store),
                    (_, Layout::Transposed) => (a_store, b_store.reversed_axes()),
                    _ => (a_store, b_store),
                };
                let mut c_buf = vec![0.0; offset];
                c_buf.extend(&c0);
                let mut c = ArrayViewMut2::from_shape((m, n), &mut c_buf[offset..]).unwrap();
                gemm(1.0, &a, &b, beta, &mut c);
                c.iter().map(|v| v.to_bits()).collect()
            };
            let first = run(0);
            assert_eq!(first, run(0), "second run differs, {m}×{k}·{k}×{n}");
            for offset in 1..16 {
                assert_eq!(first, run(offset), "offset {offset}, {m}×{k}·{k}×{n}");
            }
        }
    }

    #[test]
    fn beta_zero_does_not_read_the_destination() {
        let a = Array2::from_shape_fn((33, 20), |(i, j)| (i + j) as f32);
        let b = Array2::from_shape_fn((20, 17), |(i, j)| i as f32 - j as f32);
        let mut c = Array2::from_elem((33, 17), f32::NAN);
        gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
        assert_eq!(c, a.dot(&b));
    }

    #[test]
    #[should_panic(expected = "gemm shapes do not chain")]
    fn mismatched_shapes_panic() {
        let a = Array2::<f32>::zeros((3, 4));
        let b = Array2::<f32>::zeros((5, 2));
        let mut c = Array2::<f32>::zeros((3, 2));
        gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
    }
}
