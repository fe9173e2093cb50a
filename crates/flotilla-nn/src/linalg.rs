//! The one place matrix products are computed.
//!
//! Every layer multiplies through these functions, so a faster kernel can be swapped in
//! here without touching the layers. They are single-threaded on purpose: determinism
//! forbids a work-stealing sum, and the simulator parallelises across clients instead.

use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul};

/// `c = alpha · a · b + beta · c`, where `a` and `b` may be transposed views (`.t()`).
pub fn gemm(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    general_mat_mul(alpha, a, b, beta, c);
}
