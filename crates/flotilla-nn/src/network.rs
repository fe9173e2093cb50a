//! A network: an ordered list of named layers over flat weight vectors.

use crate::layer::{Layer, Mode, checked_product};
use crate::param::ParamSpec;
use crate::tensor::{Shape, Tensor, as_rows, from_rows};
use crate::{NnError, Result};
use ndarray::{Array1, Array2};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The weights of one model: trainable parameters and non-trainable state, both flat.
///
/// Layout: layers in network order; within a layer, its [`ParamSpec`]s in order, each
/// row-major in its internal shape. [`Network::named_params`] gives every tensor's range.
///
/// Serialized as two byte strings of little-endian `f32`s: a format such as bincode copies
/// them in one go, where a sequence of numbers costs a call per value (a fifth of a
/// large-fleet run's time went to encoding and decoding weights one number at a time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Trainable parameters.
    #[serde(with = "le_f32_bytes")]
    pub params: Array1<f32>,
    /// Batch-norm running statistics (empty for networks without batch norm).
    #[serde(with = "le_f32_bytes")]
    pub state: Array1<f32>,
}

impl Weights {
    /// Whether every parameter and state value is finite (no NaN, no infinity).
    ///
    /// Checked in blocks without an early exit inside a block, compiled for the widest
    /// vectors this CPU has: a value-by-value `all` was a scalar loop over every reply a
    /// server received.
    pub fn all_finite(&self) -> bool {
        let finite = |values: &Array1<f32>| match values.as_slice() {
            Some(values) => pulp::Arch::new().dispatch(AllFinite(values)),
            None => values.iter().all(|x| x.is_finite()),
        };
        finite(&self.params) && finite(&self.state)
    }
}

/// [`Weights::all_finite`] on a slice, run by [`pulp::Arch::dispatch`].
struct AllFinite<'a>(&'a [f32]);

impl pulp::WithSimd for AllFinite<'_> {
    type Output = bool;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> bool {
        const BLOCK: usize = 1024;
        self.0
            .chunks(BLOCK)
            .all(|b| b.iter().fold(true, |ok, x| ok & x.is_finite()))
    }
}

/// A flat `f32` vector as the byte string of its little-endian values.
mod le_f32_bytes {
    use ndarray::Array1;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(values: &Array1<f32>, s: S) -> Result<S::Ok, S::Error> {
        match values.as_slice() {
            // The values' own bytes, when that is their little-endian form.
            Some(v) if cfg!(target_endian = "little") => s.serialize_bytes(bytemuck::cast_slice(v)),
            _ => {
                let mut bytes = Vec::with_capacity(4 * values.len());
                for v in values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                s.serialize_bytes(&bytes)
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Array1<f32>, D::Error> {
        d.deserialize_bytes(LeF32Bytes)
    }

    struct LeF32Bytes;

    impl<'de> Visitor<'de> for LeF32Bytes {
        type Value = Array1<f32>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string of little-endian f32 values (a multiple of 4 bytes)")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
            let (values, []) = bytes.as_chunks::<4>() else {
                return Err(E::invalid_length(bytes.len(), &self));
            };
            // One pass over fixed-size chunks, which compiles to a vectorised copy on
            // little-endian machines (the bytes need not be aligned for f32; slices of
            // `chunks_exact(4)` made a scalar loop, `bytemuck::pod_collect_to_vec` a memset
            // and a copy).
            Ok(values.iter().map(|&b| f32::from_le_bytes(b)).collect())
        }

        // Human-readable formats (JSON) write a byte string as a sequence of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                bytes.push(b);
            }
            self.visit_bytes(&bytes)
        }
    }
}

/// One row of [`Network::summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// Layer name (`fc1`, `layer2.0`, ...).
    pub name: String,
    /// What the layer computes.
    pub description: String,
    /// Shape of one output sample.
    pub output: Shape,
    /// Trainable scalars.
    pub params: usize,
    /// Forward FLOPs per sample.
    pub flops: u64,
}

/// A named tensor of the network with its range in the flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Full name (`layer1.0.conv1.weight`).
    pub name: String,
    /// The tensor's description, name relative to its layer.
    pub spec: ParamSpec,
    /// Its scalars in the flat vector.
    pub range: Range<usize>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    layer: Box<dyn Layer>,
    params: Range<usize>,
    state: Range<usize>,
    /// The layer's forward FLOPs per sample, counted once at construction.
    flops: u64,
}

/// An architecture plus the scratch space its forward and backward passes use.
///
/// It owns no weights: every pass takes the flat vectors of a [`Weights`], so one network
/// can serve many clients in turn. Input is an NHWC batch; output is `[batch, classes]`
/// logits.
#[derive(Debug)]
pub struct Network {
    spec: String,
    input: Shape,
    classes: usize,
    slots: Vec<Slot>,
    param_len: usize,
    state_len: usize,
    flops_per_sample: u64,
    activations_per_sample: usize,
}

impl Network {
    /// Chains `layers` (name, layer) after checking that each input shape matches the
    /// previous output, starting from `input`. The last layer must output flat logits.
    ///
    /// Counts parameters, state, FLOPs and activations with checked arithmetic: a count
    /// that does not fit (`usize` scalars, `u64` FLOPs) is an [`NnError::Spec`] naming
    /// `spec` and the layer. Nothing of the model's size is allocated here: layers hold
    /// hyper-parameters, and weights and scratch come later.
    pub fn from_layers(
        spec: impl Into<String>,
        input: Shape,
        layers: Vec<(String, Box<dyn Layer>)>,
    ) -> Result<Self> {
        let spec = spec.into();
        let overflow = |what: &str, name: &str| NnError::Spec {
            spec: spec.clone(),
            reason: format!("the {what} count overflows at layer `{name}`"),
        };
        let mut shape = input;
        let (mut p, mut s, mut flops, mut activations) = (0usize, 0usize, 0u64, 0usize);
        let mut slots = Vec::with_capacity(layers.len());
        for (name, layer) in layers {
            if layer.input_shape() != shape {
                return Err(NnError::Shape {
                    what: format!("input of layer `{name}` of `{spec}`"),
                    expected: shape.to_string(),
                    got: layer.input_shape().to_string(),
                });
            }
            shape = layer.output_shape();
            let p_end = crate::total_len(&layer.param_specs())
                .and_then(|n| p.checked_add(n))
                .ok_or_else(|| overflow("parameter", &name))?;
            let s_end = crate::total_len(&layer.state_specs())
                .and_then(|n| s.checked_add(n))
                .ok_or_else(|| overflow("state", &name))?;
            let f = layer
                .flops_per_sample()
                .ok_or_else(|| overflow("FLOP", &name))?;
            flops = flops
                .checked_add(f)
                .ok_or_else(|| overflow("FLOP", &name))?;
            activations = layer
                .activations_per_sample()
                .and_then(|a| activations.checked_add(a))
                .ok_or_else(|| overflow("activation", &name))?;
            slots.push(Slot {
                name,
                layer,
                params: p..p_end,
                state: s..s_end,
                flops: f,
            });
            (p, s) = (p_end, s_end);
        }
        if !shape.is_flat() {
            return Err(NnError::Shape {
                what: format!("output of `{spec}`"),
                expected: "flat logits".into(),
                got: shape.to_string(),
            });
        }
        Ok(Self {
            spec,
            input,
            classes: shape.c,
            slots,
            param_len: p,
            state_len: s,
            flops_per_sample: flops,
            activations_per_sample: activations,
        })
    }

    /// The spec string the network was built from.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        self.input
    }

    /// Number of output classes (logits per sample).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Trainable scalar count.
    pub fn param_len(&self) -> usize {
        self.param_len
    }

    /// State scalar count (batch-norm running statistics).
    pub fn state_len(&self) -> usize {
        self.state_len
    }

    /// Forward FLOPs per sample; a training step costs about three times this.
    pub fn flops_per_sample(&self) -> u64 {
        self.flops_per_sample
    }

    /// Memory to train at `batch` samples per step \[bytes\], as `f32`: parameters three
    /// times (weights, gradients, momentum), the state, and every layer's output twice per
    /// sample (the activation kept for backward and its gradient). Device profiles compare
    /// it with their memory to decide which models a device can train.
    ///
    /// Errors ([`NnError::Spec`], naming the spec and the batch) if the count overflows
    /// `u64`.
    pub fn training_memory_bytes(&self, batch: usize) -> Result<u64> {
        let weights = checked_product(&[3, self.param_len]);
        let activations = checked_product(&[2, self.activations_per_sample, batch]);
        weights
            .zip(u64::try_from(self.state_len).ok())
            .and_then(|(w, s)| w.checked_add(s)?.checked_add(activations?)?.checked_mul(4))
            .ok_or_else(|| NnError::Spec {
                spec: self.spec.clone(),
                reason: format!("the training memory at batch {batch} overflows u64 bytes"),
            })
    }

    /// One row per layer: name, description, output shape, parameters, FLOPs.
    pub fn summary(&self) -> Vec<LayerSummary> {
        self.slots
            .iter()
            .map(|s| LayerSummary {
                name: s.name.clone(),
                description: s.layer.describe(),
                output: s.layer.output_shape(),
                params: s.params.len(),
                flops: s.flops,
            })
            .collect()
    }

    /// Every trainable tensor with its full name and flat range.
    pub fn named_params(&self) -> Vec<NamedTensor> {
        self.named(|l| l.param_specs(), |s| s.params.start)
    }

    /// Every state tensor with its full name and flat range.
    pub fn named_state(&self) -> Vec<NamedTensor> {
        self.named(|l| l.state_specs(), |s| s.state.start)
    }

    fn named(
        &self,
        specs: impl Fn(&dyn Layer) -> Vec<ParamSpec>,
        start: impl Fn(&Slot) -> usize,
    ) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let mut at = start(slot);
            for spec in specs(slot.layer.as_ref()) {
                let range = at..at + spec.len();
                at = range.end;
                out.push(NamedTensor {
                    name: format!("{}.{}", slot.name, spec.name),
                    spec,
                    range,
                });
            }
        }
        out
    }

    /// Per-scalar weight-decay mask: `true` where decay applies (kernels).
    pub fn decay_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.param_len];
        for t in self.named_params() {
            mask[t.range].fill(t.spec.decay);
        }
        mask
    }

    /// Fresh weights: each tensor initialised by its rule, drawing from `rng` in layout order.
    pub fn init<R: Rng + ?Sized>(&self, rng: &mut R) -> Weights {
        let mut params = Array1::zeros(self.param_len);
        let mut state = Array1::zeros(self.state_len);
        let flat = params.as_slice_mut().expect("fresh array is contiguous");
        for t in self.named_params() {
            t.spec.init.fill(&mut flat[t.range], rng);
        }
        let flat = state.as_slice_mut().expect("fresh array is contiguous");
        for t in self.named_state() {
            t.spec.init.fill(&mut flat[t.range], rng);
        }
        Weights { params, state }
    }

    /// Checks that `weights` has this network's layout sizes.
    pub fn check_weights(&self, weights: &Weights) -> Result<()> {
        for (what, got, expected) in [
            ("parameter vector", weights.params.len(), self.param_len),
            ("state vector", weights.state.len(), self.state_len),
        ] {
            if got != expected {
                return Err(NnError::Shape {
                    what: format!("{what} of `{}`", self.spec),
                    expected: expected.to_string(),
                    got: got.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Runs the layers on `x` and returns `[batch, classes]` logits.
    ///
    /// In [`Mode::Train`] the activations are kept for [`Network::backward`] and batch-norm
    /// running statistics in `state` are updated.
    ///
    /// # Panics
    /// If `x`'s sample shape or the slice lengths do not match the network (a caller bug;
    /// see [`Network::check_weights`]).
    pub fn forward(
        &mut self,
        x: Tensor,
        params: &[f32],
        state: &mut [f32],
        mode: Mode,
    ) -> Array2<f32> {
        assert_eq!(params.len(), self.param_len, "parameter vector length");
        assert_eq!(state.len(), self.state_len, "state vector length");
        let n = x.dim().0;
        let mut h = x;
        for slot in &mut self.slots {
            h = slot.layer.forward(
                h,
                &params[slot.params.clone()],
                &mut state[slot.state.clone()],
                mode,
            );
        }
        as_rows(&h)
            .to_owned()
            .into_shape_with_order((n, self.classes))
            .expect("flat logits")
    }

    /// Back-propagates `dlogits` (`[batch, classes]`) through the last training forward and
    /// writes the full parameter gradient into `grads`.
    ///
    /// The gradient stops at the first trainable layer: its input is data (or a
    /// parameter-free function of it), so that layer computes no input gradient
    /// ([`Layer::backward_params`]) and the layers before it are not visited. For an MLP on
    /// images this skips the widest product of the step (`dY·Wᵀ` onto the 784 pixels).
    pub fn backward(&mut self, dlogits: Array2<f32>, params: &[f32], grads: &mut [f32]) {
        assert_eq!(grads.len(), self.param_len, "gradient vector length");
        let Some(first) = self.slots.iter().position(|s| !s.params.is_empty()) else {
            return;
        };
        let n = dlogits.nrows();
        let mut d = from_rows(dlogits, n, Shape::flat(self.classes));
        let (head, later) = self.slots.split_at_mut(first + 1);
        for slot in later.iter_mut().rev() {
            d = slot.layer.backward(
                d,
                &params[slot.params.clone()],
                &mut grads[slot.params.clone()],
            );
        }
        let slot = &mut head[first];
        slot.layer.backward_params(
            d,
            &params[slot.params.clone()],
            &mut grads[slot.params.clone()],
        );
    }

    /// Evaluation-mode logits for a batch (state untouched).
    pub fn predict(&mut self, x: Tensor, weights: &Weights) -> Array2<f32> {
        let params = weights.params.as_slice().expect("weights are contiguous");
        let mut state = weights.state.to_vec();
        self.forward(x, params, &mut state, Mode::Eval)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Weights;
    use ndarray::Array1;
    use proptest::prelude::*;

    fn weights(params: Vec<u32>, state: Vec<u32>) -> Weights {
        let floats = |bits: Vec<u32>| Array1::from_iter(bits.into_iter().map(f32::from_bits));
        Weights {
            params: floats(params),
            state: floats(state),
        }
    }

    fn bits(w: &Weights) -> (Vec<u32>, Vec<u32>) {
        let of = |a: &Array1<f32>| a.iter().map(|v| v.to_bits()).collect();
        (of(&w.params), of(&w.state))
    }

    proptest! {
        /// Every value comes back bit for bit (NaN payloads and signed zeros included),
        /// through bincode as on the wire and through JSON.
        #[test]
        fn weights_round_trip_bit_for_bit(
            params in prop::collection::vec(any::<u32>(), 0..300),
            state in prop::collection::vec(any::<u32>(), 0..40),
        ) {
            let w = weights(params, state);
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(&w, config).unwrap();
            // Two length prefixes of at most 5 bytes each, then the raw values.
            prop_assert!(bytes.len() <= 10 + 4 * (w.params.len() + w.state.len()));
            let (back, read): (Weights, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            prop_assert_eq!(read, bytes.len());
            prop_assert_eq!(bits(&back), bits(&w));
            let json = serde_json::to_string(&w).unwrap();
            let back: Weights = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(bits(&back), bits(&w));
        }
    }

    #[test]
    fn all_finite_finds_any_non_finite_value() {
        let finite = weights(vec![1.0f32.to_bits(); 3000], vec![0; 5]);
        assert!(finite.all_finite());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 1023, 1024, 2999] {
                let mut w = finite.clone();
                w.params[at] = bad;
                assert!(!w.all_finite(), "{bad} at {at}");
            }
            let mut w = finite.clone();
            w.state[4] = bad;
            assert!(!w.all_finite(), "{bad} in the state");
        }
    }

    #[test]
    fn a_byte_string_that_is_not_whole_floats_is_an_error() {
        let config = bincode::config::standard();
        let mut bytes = bincode::serde::encode_to_vec(weights(vec![1, 2], vec![]), config).unwrap();
        // params: length 8 → 7, dropping one byte of the second value.
        assert_eq!(bytes[0], 8);
        bytes[0] = 7;
        bytes.remove(8);
        let err = bincode::serde::decode_from_slice::<Weights, _>(&bytes, config).unwrap_err();
        assert!(err.to_string().contains("multiple of 4"), "{err}");
    }
}
