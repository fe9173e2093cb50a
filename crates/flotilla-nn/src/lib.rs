//! Small CPU neural networks on [`ndarray`], built for federated simulation.
//!
//! - A [`Network`] is an architecture plus scratch space for activations; its weights live
//!   in a separate [`Weights`] value (one flat parameter vector and one flat state vector for
//!   batch-norm running statistics), so aggregation is vector arithmetic and one network
//!   instance can train many clients' weights in turn.
//! - Networks are built from short spec strings ([`ModelSpec`]): `mlp:784-256-128-10`,
//!   `resnet20`, `resnet20:0.25`, `cnn:0.5`.
//! - Activations are NHWC batches ([`Tensor`]); convolutions are im2col + one matrix multiply,
//!   except 3×3 stride-1 ones of 4, 8 or 16 channels, which run direct kernels on AVX-512.
//! - Every random draw comes from a caller-supplied RNG; nothing here reads a global RNG, and
//!   all reductions run in a fixed order, so the same seed gives the same bits. The one clock
//!   read times convolutions for [`convolution_totals`], which results never see.

mod accounting;
mod error;
pub mod gradcheck;
pub mod layer;
mod linalg;
pub mod loss;
mod network;
pub mod optim;
mod param;
pub mod safetensors_io;
mod spec;
mod tensor;

pub use accounting::{ConvolutionTotals, convolution_totals};
pub use error::{NnError, Result};
pub use layer::{Layer, Mode};
pub use linalg::gemm;
pub use loss::{LossStats, cross_entropy, distill_kl};
pub use network::{LayerSummary, Network, Weights};
pub use optim::{LrSchedule, Sgd, SgdConfig, kd_weight};
pub use param::{Init, Layout, ParamSpec, total_len};
pub use safetensors_io::{load_safetensors, parse_safetensors, save_safetensors};
pub use spec::{Footprint, MAX_TRAINING_MEMORY_BYTES, ModelSpec};
pub use tensor::{Shape, Tensor, as_rows, as_rows_mut, batch_from_flat, from_rows, sample_shape};
