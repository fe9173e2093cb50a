//! Model spec strings: the short names configs and the command line use for architectures.

use crate::layer::{
    BatchNorm, BatchNormConfig, Conv2d, Dense, Flatten, GlobalAvgPool, Layer, MaxPool2d, Relu,
    ResidualBlock,
};
use crate::{Network, NnError, Result, Shape};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A parsed architecture name.
///
/// | spec | network |
/// |---|---|
/// | `mlp:784-256-128-10` | dense layers between the listed sizes, ReLU between them; the first size must equal the input's values per sample, the last the class count |
/// | `resnet20`, `resnet20:0.25` | the CIFAR ResNet-20 of the method spec at a width ratio: 3×3 stem of 16 channels, 3 stages × 3 basic blocks of `16r/32r/64r` channels and strides 1/2/2, 1×1 conv + BN shortcut on each stage's first block, global average pool, dense to the classes (≈ 273k parameters at 1.0, ≈ 18k at 0.25) |
/// | `cnn`, `cnn:0.5` | the FEMNIST CNN at a width ratio: conv 5×5 `32r` → ReLU → max-pool 2 → conv 5×5 `64r` → ReLU → max-pool 2 → flatten → dense `512r` → ReLU → dense to the classes |
///
/// Widths round to the nearest integer, at least 1. Batch norm uses
/// [`BatchNormConfig::default`] (Keras momentum 0.99, eps 1e-3), as the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelSpec {
    /// Multi-layer perceptron over the listed layer sizes.
    Mlp(Vec<usize>),
    /// CIFAR ResNet-20 at a width ratio.
    ResNet20(f32),
    /// FEMNIST CNN at a width ratio.
    Cnn(f32),
}

/// The most memory one training run of a model may need \[bytes\]: 16 GiB, as counted by
/// [`Network::training_memory_bytes`] (weights, gradients, momentum, state, activations at
/// the batch size). More than the machines this simulator runs on give one model and far
/// beyond any device profile; a model over it is refused before anything is allocated
/// ([`Footprint::check_training_memory`]).
pub const MAX_TRAINING_MEMORY_BYTES: u64 = 16 << 30;

/// What a model costs, known from its spec before any weights exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Trainable scalars.
    pub params: usize,
    /// State scalars (batch-norm running statistics).
    pub state: usize,
    /// Forward FLOPs per sample.
    pub flops_per_sample: u64,
    /// The batch size the training memory is counted at.
    pub batch: usize,
    /// Memory to train at `batch` \[bytes\] (see [`Network::training_memory_bytes`]).
    pub training_memory_bytes: u64,
}

impl Footprint {
    /// Refuses a model (an [`NnError::Spec`] naming `spec`) whose training needs more than
    /// [`MAX_TRAINING_MEMORY_BYTES`].
    pub fn check_training_memory(&self, spec: &ModelSpec) -> Result<()> {
        if self.training_memory_bytes <= MAX_TRAINING_MEMORY_BYTES {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        Err(NnError::Spec {
            spec: spec.to_string(),
            reason: format!(
                "needs {:.1} GiB to train at batch {} ({} parameters), over the {:.0} GiB \
                 limit on one model's training memory",
                gib(self.training_memory_bytes),
                self.batch,
                self.params,
                gib(MAX_TRAINING_MEMORY_BYTES)
            ),
        })
    }
}

fn scaled(base: usize, ratio: f32) -> usize {
    ((base as f32 * ratio).round() as usize).max(1)
}

impl ModelSpec {
    /// The model's [`Footprint`] for samples of `input` shape and `classes` outputs,
    /// training at `batch`: counted with checked arithmetic from the layers'
    /// hyper-parameters alone (no weights, no scratch), so a spec of any size is safe to
    /// ask about. Errors as [`ModelSpec::build`] does, and with an [`NnError::Spec`] naming
    /// the spec when a count overflows.
    pub fn footprint(&self, input: Shape, classes: usize, batch: usize) -> Result<Footprint> {
        let net = self.build(input, classes)?;
        Ok(Footprint {
            params: net.param_len(),
            state: net.state_len(),
            flops_per_sample: net.flops_per_sample(),
            batch,
            training_memory_bytes: net.training_memory_bytes(batch)?,
        })
    }

    /// Builds the network for samples of `input` shape and `classes` outputs.
    pub fn build(&self, input: Shape, classes: usize) -> Result<Network> {
        let err = |reason: String| NnError::Spec {
            spec: self.to_string(),
            reason,
        };
        let mut b = Builder {
            shape: input,
            layers: Vec::new(),
        };
        match self {
            ModelSpec::Mlp(sizes) => {
                if sizes[0] != input.len() {
                    return Err(err(format!(
                        "first size {} must equal the input's {} values ({input})",
                        sizes[0],
                        input.len()
                    )));
                }
                if sizes[sizes.len() - 1] != classes {
                    return Err(err(format!(
                        "last size {} must equal the {classes} classes",
                        sizes[sizes.len() - 1]
                    )));
                }
                if !input.is_flat() {
                    b.push("flatten", Flatten::new(b.shape));
                }
                let hidden = sizes.len() - 2;
                for (i, pair) in sizes.windows(2).enumerate() {
                    b.push(format!("fc{}", i + 1), Dense::new(pair[0], pair[1]));
                    if i < hidden {
                        b.push(format!("relu{}", i + 1), Relu::new(b.shape));
                    }
                }
            }
            ModelSpec::ResNet20(r) => {
                if input.h < 4 || input.w < 4 {
                    return Err(err(format!(
                        "needs image input of at least 4x4, got {input}"
                    )));
                }
                let bn = BatchNormConfig::default();
                b.push("conv1", Conv2d::new(b.shape, 16, 3, 1, false));
                b.push("bn1", BatchNorm::new(b.shape, bn));
                b.push("relu1", Relu::new(b.shape));
                for (stage, (width, stride)) in [(16, 1), (32, 2), (64, 2)].into_iter().enumerate()
                {
                    let c = scaled(width, *r);
                    for block in 0..3 {
                        let (s, projection) = if block == 0 {
                            (stride, true)
                        } else {
                            (1, false)
                        };
                        let layer = ResidualBlock::new(b.shape, c, s, projection, bn);
                        b.push(format!("layer{}.{block}", stage + 1), layer);
                    }
                }
                b.push("pool", GlobalAvgPool::new(b.shape));
                b.push("fc", Dense::new(b.shape.c, classes));
            }
            ModelSpec::Cnn(r) => {
                if input.h < 4 || input.w < 4 {
                    return Err(err(format!(
                        "needs image input of at least 4x4, got {input}"
                    )));
                }
                b.push("conv1", Conv2d::new(b.shape, scaled(32, *r), 5, 1, true));
                b.push("relu1", Relu::new(b.shape));
                b.push("pool1", MaxPool2d::new(b.shape, 2));
                b.push("conv2", Conv2d::new(b.shape, scaled(64, *r), 5, 1, true));
                b.push("relu2", Relu::new(b.shape));
                b.push("pool2", MaxPool2d::new(b.shape, 2));
                b.push("flatten", Flatten::new(b.shape));
                let hidden = scaled(512, *r);
                b.push("fc1", Dense::new(b.shape.len(), hidden));
                b.push("relu3", Relu::new(b.shape));
                b.push("fc2", Dense::new(hidden, classes));
            }
        }
        Network::from_layers(self.to_string(), input, b.layers)
    }
}

/// Tracks the running shape while layers are appended.
struct Builder {
    shape: Shape,
    layers: Vec<(String, Box<dyn Layer>)>,
}

impl Builder {
    fn push(&mut self, name: impl Into<String>, layer: impl Layer + 'static) {
        self.shape = layer.output_shape();
        self.layers.push((name.into(), Box::new(layer)));
    }
}

impl FromStr for ModelSpec {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self> {
        let err = |reason: &str| NnError::Spec {
            spec: s.to_string(),
            reason: reason.into(),
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let ratio = |arg: Option<&str>| -> Result<f32> {
            match arg {
                None => Ok(1.0),
                Some(a) => match a.parse::<f32>() {
                    Ok(r) if r.is_finite() && r > 0.0 && r <= 16.0 => Ok(r),
                    _ => Err(err("width ratio must be a number in (0, 16]")),
                },
            }
        };
        match kind {
            "mlp" => {
                let arg = arg.ok_or_else(|| err("mlp needs sizes, e.g. mlp:784-256-10"))?;
                let sizes = arg
                    .split('-')
                    .map(|t| t.trim().parse::<usize>().ok().filter(|&n| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err("mlp sizes must be positive integers joined by '-'"))?;
                if sizes.len() < 2 {
                    return Err(err("mlp needs at least an input and an output size"));
                }
                Ok(ModelSpec::Mlp(sizes))
            }
            "resnet20" => Ok(ModelSpec::ResNet20(ratio(arg)?)),
            "cnn" => Ok(ModelSpec::Cnn(ratio(arg)?)),
            _ => Err(err(
                "unknown architecture; expected mlp:…, resnet20[:ratio] or cnn[:ratio]",
            )),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Mlp(sizes) => {
                let s: Vec<String> = sizes.iter().map(usize::to_string).collect();
                write!(f, "mlp:{}", s.join("-"))
            }
            ModelSpec::ResNet20(r) if *r == 1.0 => write!(f, "resnet20"),
            ModelSpec::ResNet20(r) => write!(f, "resnet20:{r}"),
            ModelSpec::Cnn(r) if *r == 1.0 => write!(f, "cnn"),
            ModelSpec::Cnn(r) => write!(f, "cnn:{r}"),
        }
    }
}

impl TryFrom<String> for ModelSpec {
    type Error = NnError;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ModelSpec> for String {
    fn from(spec: ModelSpec) -> String {
        spec.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in [
            "mlp:784-256-128-10",
            "resnet20",
            "resnet20:0.25",
            "cnn",
            "cnn:0.5",
        ] {
            let spec: ModelSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_specs_naming_them() {
        for s in [
            "mlp",
            "mlp:784",
            "mlp:784-x-10",
            "mlp:0-10",
            "resnet20:0",
            "resnet20:abc",
            "vgg",
        ] {
            let e = s.parse::<ModelSpec>().unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
        }
    }

    #[test]
    fn training_memory_counts_weights_and_activations() {
        let net = ModelSpec::Mlp(vec![4, 8, 2])
            .build(Shape::flat(4), 2)
            .unwrap();
        // 58 params ×3, no state, outputs 8 + 8 + 2 per sample, ×2, batch 10.
        assert_eq!(
            net.training_memory_bytes(10).unwrap(),
            4 * (3 * 58 + 2 * 18 * 10)
        );
        let large = ModelSpec::ResNet20(1.0)
            .build(Shape::image(32, 32, 3), 10)
            .unwrap();
        let small = ModelSpec::ResNet20(0.25)
            .build(Shape::image(32, 32, 3), 10)
            .unwrap();
        assert!(
            large.training_memory_bytes(32).unwrap() > 3 * small.training_memory_bytes(32).unwrap()
        );
    }

    #[test]
    fn mlp_must_fit_the_data() {
        let spec: ModelSpec = "mlp:784-256-10".parse().unwrap();
        assert!(spec.build(Shape::flat(100), 10).is_err());
        assert!(spec.build(Shape::image(28, 28, 1), 62).is_err());
        let net = spec.build(Shape::image(28, 28, 1), 10).unwrap();
        assert_eq!(net.param_len(), 784 * 256 + 256 + 256 * 10 + 10);
    }

    #[test]
    fn footprints_of_any_size_are_counted_not_allocated() {
        let input = Shape::flat(32);
        // 32·10⁸ + 10⁸ + 10⁹ + 10 ≈ 4.3·10⁹ parameters: 52 GB to train, counted in no time.
        let wide: ModelSpec = "mlp:32-100000000-10".parse().unwrap();
        let f = wide.footprint(input, 10, 32).unwrap();
        assert_eq!(
            f.params,
            32 * 100_000_000 + 100_000_000 + 100_000_000 * 10 + 10
        );
        // fc1, relu1, fc2.
        let flops = (2 * 32 + 1) * 100_000_000 + 100_000_000 + 2 * 100_000_000 * 10 + 10;
        assert_eq!(f.flops_per_sample, flops);
        let e = f.check_training_memory(&wide).unwrap_err().to_string();
        assert!(
            e.contains("mlp:32-100000000-10") && e.contains("16 GiB"),
            "{e}"
        );
        // The default models are well inside the limit, and the footprint is the network's.
        let small: ModelSpec = "mlp:32-256-256-10".parse().unwrap();
        let f = small.footprint(input, 10, 32).unwrap();
        f.check_training_memory(&small).unwrap();
        let net = small.build(input, 10).unwrap();
        assert_eq!(f.params, net.param_len());
        assert_eq!(
            f.training_memory_bytes,
            net.training_memory_bytes(32).unwrap()
        );
    }

    #[test]
    fn counts_that_overflow_are_errors_naming_the_spec() {
        let input = Shape::flat(4);
        // Parameters: 4·2⁶² overflows usize.
        let huge = format!("mlp:4-{}-2", 1u64 << 62);
        let e = huge
            .parse::<ModelSpec>()
            .unwrap()
            .build(input, 2)
            .unwrap_err();
        assert!(
            e.to_string().contains(&huge) && e.to_string().contains("parameter"),
            "{e}"
        );
        // FLOPs only: 2³¹·2³² = 2⁶³ weights fit in usize, 2·2³¹·2³² FLOPs overflow u64.
        let wide = format!("mlp:{}-{}-2", 1u64 << 31, 1u64 << 32);
        let e = wide
            .parse::<ModelSpec>()
            .unwrap()
            .build(Shape::flat(1 << 31), 2)
            .unwrap_err();
        assert!(
            e.to_string().contains(&wide) && e.to_string().contains("FLOP"),
            "{e}"
        );
        // Training memory: fine counts, a batch that overflows the byte count.
        let spec: ModelSpec = "mlp:4-8-2".parse().unwrap();
        let e = spec
            .footprint(input, 2, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mlp:4-8-2") && e.contains("training memory"),
            "{e}"
        );
    }
}
