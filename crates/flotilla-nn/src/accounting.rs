//! Process-wide accounting of the time spent in convolutions, for `flotilla bench`'s
//! "% of peak in the convolutions": only accounting, results never see it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds spent in convolution passes, summed over threads.
static NANOS: AtomicU64 = AtomicU64::new(0);
/// Floating-point operations of those passes' matrix products.
static FLOPS: AtomicU64 = AtomicU64::new(0);

/// What every thread of this process has spent in convolution passes so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvolutionTotals {
    /// Time in [`Conv2d`](crate::layer::Conv2d) forward and backward passes, summed over
    /// threads (column-matrix building and scattering included).
    pub busy: Duration,
    /// The multiply-adds of their matrix products, 2 FLOPs each: `2·rows·k²·c_in·c_out`
    /// for a forward pass and for each of the weight and input gradients.
    pub flops: u64,
}

/// The totals since the process started.
pub fn convolution_totals() -> ConvolutionTotals {
    ConvolutionTotals {
        busy: Duration::from_nanos(NANOS.load(Ordering::Relaxed)),
        flops: FLOPS.load(Ordering::Relaxed),
    }
}

/// Counts a convolution pass that began at `started` and computed `flops`.
pub(crate) fn count_convolution(started: Instant, flops: u64) {
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    NANOS.fetch_add(nanos, Ordering::Relaxed);
    FLOPS.fetch_add(flops, Ordering::Relaxed);
}
