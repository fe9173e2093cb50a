//! Descriptions of the trainable parameters and non-trainable state a layer owns.
//!
//! A network's parameters live in one flat `f32` vector (and its running statistics in a
//! second one), laid out in layer order and, within a layer, in the order of its
//! [`ParamSpec`]s. Aggregation is therefore plain vector arithmetic.

use ndarray::Array1;
use ndarray_rand::RandomExt;
use rand::Rng;
use rand_distr::Uniform;

/// How a tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Glorot (Xavier) uniform: `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`, the
    /// Keras default the reference implementation uses.
    GlorotUniform {
        /// Inputs feeding one output unit (`k·k·c_in` for a convolution).
        fan_in: usize,
        /// Outputs fed by one input unit (`k·k·c_out` for a convolution).
        fan_out: usize,
    },
}

impl Init {
    /// Fills `out` according to this rule, drawing from `rng` only for random rules.
    pub fn fill<R: Rng + ?Sized>(&self, out: &mut [f32], rng: &mut R) {
        match *self {
            Init::Zeros => out.fill(0.0),
            Init::Ones => out.fill(1.0),
            Init::GlorotUniform { fan_in, fan_out } => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
                let dist = Uniform::new_inclusive(-limit, limit).expect("finite, ordered bounds");
                // ndarray-rand draws the tensor element by element in order from `rng`.
                let drawn = Array1::<f32>::random_using(out.len(), dist, rng);
                out.copy_from_slice(drawn.as_slice().expect("a fresh array is contiguous"));
            }
        }
    }
}

/// How a tensor's internal layout maps to the PyTorch layout used in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same layout (vectors: biases, BN scale/shift/statistics).
    Plain,
    /// Internal `[in, out]`; PyTorch `nn.Linear.weight` is `[out, in]`.
    DenseInOut,
    /// Internal `[kh, kw, in, out]` (HWIO); PyTorch `nn.Conv2d.weight` is `[out, in, kh, kw]`.
    ConvHwio,
}

/// One named tensor of a layer, trainable or state.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name relative to the layer, PyTorch style (`weight`, `bias`, `running_mean`, or
    /// `conv1.weight` inside a composite layer).
    pub name: String,
    /// Internal shape (see [`Layout`]).
    pub shape: Vec<usize>,
    /// Initialisation rule.
    pub init: Init,
    /// Whether weight decay applies (kernels yes; biases and BN parameters no).
    pub decay: bool,
    /// Mapping to the checkpoint layout.
    pub layout: Layout,
}

impl ParamSpec {
    /// A new spec with [`Layout::Plain`] and no weight decay.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, init: Init) -> Self {
        Self {
            name: name.into(),
            shape,
            init,
            decay: false,
            layout: Layout::Plain,
        }
    }

    /// Marks the tensor as subject to weight decay.
    pub fn with_decay(mut self) -> Self {
        self.decay = true;
        self
    }

    /// Sets the checkpoint layout.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Prefixes the name (`conv1` + `weight` → `conv1.weight`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.name = format!("{prefix}.{}", self.name);
        self
    }

    /// Number of scalars, or `None` if it does not fit in `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Number of scalars. The tensors of a built [`Network`](crate::Network) are known to
    /// fit ([`Network::from_layers`](crate::Network::from_layers) counts them with
    /// [`ParamSpec::checked_len`]).
    ///
    /// # Panics
    /// If the count does not fit in `usize`.
    pub fn len(&self) -> usize {
        self.checked_len().expect("tensor size fits in usize")
    }

    /// Whether the tensor holds no scalars.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Total scalar count of a list of specs, or `None` if it does not fit in `usize`.
pub fn total_len(specs: &[ParamSpec]) -> Option<usize> {
    specs
        .iter()
        .try_fold(0usize, |n, s| n.checked_add(s.checked_len()?))
}
