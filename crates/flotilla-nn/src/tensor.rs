//! Activation tensors and their shapes.
//!
//! Activations are batches in **NHWC** layout (`[batch, height, width, channels]`), so that
//! a convolution is one matrix multiply over rows `n·h·w` and a dense layer sees rows `n`
//! (its input is `[batch, 1, 1, features]`). Every array handed between layers is in
//! standard (row-major, contiguous) layout.

use ndarray::{Array2, Array4, ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A batch of activations, `[batch, height, width, channels]`.
pub type Tensor = Array4<f32>;

/// The shape of one sample: height × width × channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Height in pixels; 1 for flat features.
    pub h: usize,
    /// Width in pixels; 1 for flat features.
    pub w: usize,
    /// Channels, or features for flat inputs.
    pub c: usize,
}

impl Shape {
    /// An image shape.
    pub const fn image(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// A flat feature vector of `n` values (`1 × 1 × n`).
    pub const fn flat(n: usize) -> Self {
        Self { h: 1, w: 1, c: n }
    }

    /// Values per sample.
    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Whether the shape holds no values.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a flat feature vector.
    pub const fn is_flat(&self) -> bool {
        self.h == 1 && self.w == 1
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_flat() {
            write!(f, "{}", self.c)
        } else {
            write!(f, "{}x{}x{}", self.h, self.w, self.c)
        }
    }
}

/// The per-sample shape of a batch tensor.
pub fn sample_shape(x: &Tensor) -> Shape {
    let (_, h, w, c) = x.dim();
    Shape { h, w, c }
}

/// Views a standard-layout NHWC tensor as a `[n·h·w, c]` matrix (no copy).
///
/// # Panics
/// If `x` is not in standard layout; every layer produces standard-layout tensors.
pub fn as_rows(x: &Tensor) -> ArrayView2<'_, f32> {
    let (n, h, w, c) = x.dim();
    x.view()
        .into_shape_with_order((n * h * w, c))
        .expect("layer tensors are standard layout")
}

/// Mutable counterpart of [`as_rows`].
///
/// # Panics
/// If `x` is not in standard layout.
pub fn as_rows_mut(x: &mut Tensor) -> ArrayViewMut2<'_, f32> {
    let (n, h, w, c) = x.dim();
    x.view_mut()
        .into_shape_with_order((n * h * w, c))
        .expect("layer tensors are standard layout")
}

/// Turns a `[n·h·w, c]` matrix back into a batch tensor of sample shape `shape`.
///
/// # Panics
/// If the element count does not match; callers build `rows` from the same shape.
pub fn from_rows(rows: Array2<f32>, n: usize, shape: Shape) -> Tensor {
    let rows = if rows.is_standard_layout() {
        rows
    } else {
        rows.as_standard_layout().into_owned()
    };
    rows.into_shape_with_order((n, shape.h, shape.w, shape.c))
        .expect("row count matches the batch shape")
}

/// Turns flat samples (`[batch, features]`) into a batch tensor of sample shape `shape`.
pub fn batch_from_flat(x: Array2<f32>, shape: Shape) -> crate::Result<Tensor> {
    let (n, d) = x.dim();
    if d != shape.len() {
        return Err(crate::NnError::Shape {
            what: "input batch".into(),
            expected: format!("{} values per sample ({shape})", shape.len()),
            got: format!("{d}"),
        });
    }
    Ok(from_rows(x, n, shape))
}
