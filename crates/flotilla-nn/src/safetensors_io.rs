//! Model files in the [safetensors](https://huggingface.co/docs/safetensors) format, laid
//! out as a PyTorch `state_dict`.
//!
//! # Names
//! One `F32` tensor per entry of [`Network::named_params`] and [`Network::named_state`],
//! named `<layer>.<tensor>` exactly as those report: `fc1.weight`, `fc1.bias`,
//! `conv1.weight`, `bn1.weight` (γ), `bn1.bias` (β), `bn1.running_mean`, `bn1.running_var`;
//! residual blocks nest theirs: `layer1.0.conv1.weight`, `layer1.0.bn2.running_var`,
//! `layer1.0.shortcut.conv.weight`, `layer1.0.shortcut.bn.bias`. `Network::summary` lists a
//! model's layer names. In PyTorch, give each block submodules `conv1, bn1, conv2, bn2` and
//! a `shortcut` module with submodules `conv` and `bn`.
//!
//! # Layouts
//! Tensors are stored in PyTorch's layout, converted from the internal one by
//! [`ParamSpec::layout`](crate::ParamSpec):
//!
//! | [`Layout`] | internal | stored (PyTorch) |
//! |---|---|---|
//! | `Plain` | `[n]` | `[n]` (biases, BN γ/β/statistics) |
//! | `DenseInOut` | `[in, out]` | `[out, in]` (`nn.Linear.weight`) |
//! | `ConvHwio` | `[kh, kw, in, out]` | `[out, in, kh, kw]` (`nn.Conv2d.weight`) |
//!
//! The header's `__metadata__` holds `{"format": "pt", "flotilla_spec": "<spec string>"}`.
//!
//! # Loading
//! Every tensor the network expects must be present as `F32` in its PyTorch shape. Extra
//! tensors are allowed only when named `*.num_batches_tracked` (PyTorch's BN counters; they
//! are ignored); any other unknown tensor, a missing one, a wrong dtype or shape, and a
//! truncated or corrupt file are [`NnError::Checkpoint`] errors naming the file and the
//! tensor. The spec recorded in the metadata is not checked, so files exported from PyTorch
//! load as long as names and shapes match.
//!
//! # PyTorch counterpart
//! For `mlp:784-256-128-10`:
//!
//! ```python
//! import torch, torch.nn as nn
//! from safetensors.torch import load_file, save_file
//!
//! class Mlp(nn.Module):
//!     def __init__(self):
//!         super().__init__()
//!         self.fc1 = nn.Linear(784, 256)
//!         self.fc2 = nn.Linear(256, 128)
//!         self.fc3 = nn.Linear(128, 10)
//!
//!     def forward(self, x):  # x: [batch, 784]
//!         x = torch.relu(self.fc1(x))
//!         x = torch.relu(self.fc2(x))
//!         return self.fc3(x)
//!
//! model = Mlp()
//! model.load_state_dict(load_file("model.safetensors"))
//! save_file(model.state_dict(), "back.safetensors", metadata={"format": "pt"})
//! ```
//!
//! Caveats when mirroring a model in PyTorch:
//! - Batch-norm momentum conventions differ: flotilla uses the Keras convention
//!   (`running = 0.99·running + 0.01·batch`, momentum 0.99), which is `momentum=0.01` in
//!   PyTorch; the method's eps is 1e-3 (`nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)`).
//!   PyTorch's `running_var` uses the unbiased batch variance.
//! - Activations here are NHWC, but convolution weights are stored in PyTorch's layout and
//!   [`Flatten`](crate::layer::Flatten) orders features as PyTorch's `nn.Flatten` does on
//!   NCHW (channel, then row, then column), so a PyTorch model takes NCHW input and flattens
//!   as usual, with no permute. Flat inputs (MLPs) need no change.

use crate::network::NamedTensor;
use crate::{Layout, Network, NnError, Result, Weights};
use ndarray::{ArrayView, ArrayViewD, Dimension, Ix2, Ix4, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Axis permutation taking a tensor's internal layout to the stored one, and its stored
/// shape. `None` if the internal shape does not have the rank its layout needs.
fn to_stored(layout: Layout, shape: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let perm = match (layout, shape.len()) {
        (Layout::Plain, r) => (0..r).collect(),
        (Layout::DenseInOut, 2) => vec![1, 0],
        (Layout::ConvHwio, 4) => vec![3, 2, 0, 1],
        _ => return None,
    };
    let stored = perm.iter().map(|&a| shape[a]).collect();
    Some((perm, stored))
}

/// Inverse of a permutation.
fn invert(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Reorders `data` (row-major in `shape`) by permuting its axes with `perm`.
fn permute(data: &[f32], shape: &[usize], perm: &[usize]) -> Option<Vec<f32>> {
    let view = ArrayViewD::from_shape(IxDyn(shape), data)
        .ok()?
        .permuted_axes(IxDyn(perm));
    // Iterated in fixed dimensions where they apply (dense and convolution kernels): the
    // dynamic-dimension iterator costs about 25 ns a value (P1's model took 5 ms to save).
    fn values<D: Dimension>(view: ArrayView<'_, f32, D>) -> Vec<f32> {
        view.iter().copied().collect()
    }
    Some(match view.ndim() {
        2 => values(view.into_dimensionality::<Ix2>().ok()?),
        4 => values(view.into_dimensionality::<Ix4>().ok()?),
        _ => values(view),
    })
}

/// One tensor ready for serialisation.
struct Stored {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Stored {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Every named tensor of `network` with its flat source vector (params, then state).
fn all_tensors<'a>(network: &Network, weights: &'a Weights) -> Vec<(NamedTensor, &'a [f32])> {
    let params = weights.params.as_slice().unwrap_or(&[]);
    let state = weights.state.as_slice().unwrap_or(&[]);
    let p = network.named_params().into_iter().map(|t| (t, params));
    p.chain(network.named_state().into_iter().map(|t| (t, state)))
        .collect()
}

/// Writes `weights` of `network` to `path` as a PyTorch-style safetensors file, replacing
/// any existing file.
///
/// One `F32` tensor per [`Network::named_params`] and [`Network::named_state`] entry, under
/// its full name (`fc1.weight`, `layer1.0.conv1.weight`, `bn1.running_mean`), in PyTorch
/// layout: dense weights `[out, in]`, convolution weights `[out, in, kh, kw]`, vectors as
/// they are. Metadata: `{"format": "pt", "flotilla_spec": <spec>}`. The module
/// documentation in `safetensors_io.rs` has the details and a PyTorch counterpart.
pub fn save_safetensors(path: &Path, network: &Network, weights: &Weights) -> Result<()> {
    network.check_weights(weights)?;
    let fail = |reason: String| NnError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    // Weights deserialised from elsewhere may be non-contiguous: work on standard copies.
    let weights = Weights {
        params: weights.params.as_standard_layout().into_owned(),
        state: weights.state.as_standard_layout().into_owned(),
    };
    let mut tensors = Vec::new();
    for (t, flat) in all_tensors(network, &weights) {
        let layout_err = || {
            fail(format!(
                "tensor `{}`: shape does not fit its layout",
                t.name
            ))
        };
        let (perm, shape) = to_stored(t.spec.layout, &t.spec.shape).ok_or_else(layout_err)?;
        let data = permute(&flat[t.range.clone()], &t.spec.shape, &perm).ok_or_else(layout_err)?;
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((t.name, Stored { shape, bytes }));
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("flotilla_spec".to_string(), network.spec().to_string()),
    ]);
    let mut bytes =
        safetensors::serialize(tensors.iter().map(|(n, s)| (n.as_str(), s)), Some(metadata))
            .map_err(|e| fail(format!("cannot serialise: {e}")))?;
    sort_metadata(&mut bytes).map_err(fail)?;
    std::fs::write(path, bytes).map_err(|source| NnError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Rewrites the header's `__metadata__` with its keys in sorted order: the library takes
/// the metadata as a `HashMap`, whose random iteration order would otherwise make two
/// saves of the same weights differ in their bytes. The header keeps its length (the same
/// keys and values, reordered), so the data offsets stay valid.
fn sort_metadata(bytes: &mut [u8]) -> std::result::Result<(), String> {
    let len = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| 8 + n <= bytes.len())
        .ok_or("serialised header has no valid length")?;
    let header = &bytes[8..8 + len];
    let json = header.trim_ascii_end();
    let mut entries: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| format!("serialised header: {e}"))?;
    if let Some(meta) = entries.get_mut("__metadata__") {
        let sorted: std::collections::BTreeMap<String, String> =
            serde_json::from_value(meta.take()).map_err(|e| format!("metadata: {e}"))?;
        *meta = serde_json::to_value(sorted).map_err(|e| format!("metadata: {e}"))?;
    }
    let canonical = serde_json::to_vec(&entries).map_err(|e| format!("header: {e}"))?;
    if canonical.len() != json.len() {
        return Err("reordered header changed length".into());
    }
    bytes[8..8 + canonical.len()].copy_from_slice(&canonical);
    Ok(())
}

/// Reads weights for `network` from a file in the format of [`save_safetensors`].
///
/// Every expected tensor must be present as `F32` in its PyTorch shape; extra tensors are
/// allowed only if named `*.num_batches_tracked` (ignored). Anything else, and a truncated
/// or corrupt file, is an [`NnError::Checkpoint`] naming the file and the tensor; a file
/// that cannot be read is an [`NnError::Io`].
pub fn load_safetensors(path: &Path, network: &Network) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_safetensors(&bytes, path, network)
}

/// Reads weights for `network` from the bytes of a file in the format of
/// [`save_safetensors`], as [`load_safetensors`] does; errors name `path` as the file the
/// bytes came from.
pub fn parse_safetensors(bytes: &[u8], path: &Path, network: &Network) -> Result<Weights> {
    let fail = |reason: String| NnError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(format!("not a readable safetensors file: {e}")))?;

    let mut params = vec![0.0f32; network.param_len()];
    let mut state = vec![0.0f32; network.state_len()];
    let mut expected = HashSet::new();
    for (is_param, list) in [
        (true, network.named_params()),
        (false, network.named_state()),
    ] {
        for t in list {
            let view = file
                .tensor(&t.name)
                .map_err(|_| fail(format!("missing tensor `{}`", t.name)))?;
            if view.dtype() != Dtype::F32 {
                return Err(fail(format!(
                    "tensor `{}` has dtype {:?}, expected F32",
                    t.name,
                    view.dtype()
                )));
            }
            let layout_err = || {
                fail(format!(
                    "tensor `{}`: shape does not fit its layout",
                    t.name
                ))
            };
            let (perm, stored) = to_stored(t.spec.layout, &t.spec.shape).ok_or_else(layout_err)?;
            if view.shape() != stored.as_slice() {
                return Err(fail(format!(
                    "tensor `{}` has shape {:?}, expected {:?} (PyTorch layout)",
                    t.name,
                    view.shape(),
                    stored
                )));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let internal = permute(&data, &stored, &invert(&perm)).ok_or_else(layout_err)?;
            let target = if is_param { &mut params } else { &mut state };
            target[t.range].copy_from_slice(&internal);
            expected.insert(t.name);
        }
    }
    let mut unknown: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| !expected.contains(*n) && !n.ends_with(".num_batches_tracked"))
        .collect();
    unknown.sort_unstable();
    if let Some(first) = unknown.first() {
        return Err(fail(format!(
            "unexpected tensor `{first}` ({} unknown in all) for model `{}`",
            unknown.len(),
            network.spec()
        )));
    }
    Ok(Weights {
        params: params.into(),
        state: state.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelSpec, Shape};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::path::PathBuf;

    /// A fresh path in the system temp directory, removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir();
            Self(dir.join(format!(
                "flotilla-nn-{}-{name}.safetensors",
                std::process::id()
            )))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn build(spec: &str, input: Shape, classes: usize) -> Network {
        spec.parse::<ModelSpec>()
            .unwrap()
            .build(input, classes)
            .unwrap()
    }

    /// Initialised weights with every value (state included) made distinct and nonzero.
    fn random_weights(net: &Network, seed: u64) -> Weights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = net.init(&mut rng);
        w.params.mapv_inplace(|v| v + rng.random_range(-0.1..0.1));
        w.state.mapv_inplace(|v| v + rng.random_range(0.1..1.0));
        w
    }

    fn bits(v: &ndarray::Array1<f32>) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn assert_round_trip(spec: &str, input: Shape, classes: usize) {
        let net = build(spec, input, classes);
        let w = random_weights(&net, 7);
        assert!(!w.params.is_empty(), "{spec} has parameters");
        let file = TempPath::new(&format!("round-trip-{}", spec.replace([':', '.'], "_")));
        save_safetensors(&file.0, &net, &w).unwrap();
        let back = load_safetensors(&file.0, &net).unwrap();
        assert_eq!(bits(&back.params), bits(&w.params), "{spec} params");
        assert_eq!(bits(&back.state), bits(&w.state), "{spec} state");
        let bytes = std::fs::read(&file.0).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["format"], "pt");
        assert_eq!(meta["flotilla_spec"], spec);
        assert_eq!(st.len(), net.named_params().len() + net.named_state().len());
    }

    #[test]
    fn round_trip_is_bit_identical_mlp() {
        assert_round_trip("mlp:12-8-5", Shape::flat(12), 5);
    }

    #[test]
    fn round_trip_is_bit_identical_resnet() {
        assert_round_trip("resnet20:0.25", Shape::image(8, 8, 3), 4);
    }

    #[test]
    fn dense_weights_are_stored_transposed() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let w = random_weights(&net, 8);
        let file = TempPath::new("dense-layout");
        save_safetensors(&file.0, &net, &w).unwrap();
        let bytes = std::fs::read(&file.0).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let fc1 = st.tensor("fc1.weight").unwrap();
        assert_eq!(fc1.shape(), &[8, 12]);
        let stored: Vec<f32> = fc1
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let range = net.named_params()[0].range.clone();
        let internal = &w.params.as_slice().unwrap()[range];
        for i in 0..12 {
            for j in 0..8 {
                assert_eq!(internal[i * 8 + j], stored[j * 12 + i], "W[{i}][{j}]");
            }
        }
    }

    #[test]
    fn conv_layout_maps_hwio_to_oihw_and_back() {
        let shape = [3, 2, 4, 5]; // kh, kw, in, out
        let data: Vec<f32> = (0..120).map(|v| v as f32).collect();
        let (perm, stored_shape) = to_stored(Layout::ConvHwio, &shape).unwrap();
        assert_eq!(stored_shape, vec![5, 4, 3, 2]);
        let stored = permute(&data, &shape, &perm).unwrap();
        let at_internal =
            |h: usize, w: usize, i: usize, o: usize| data[((h * 2 + w) * 4 + i) * 5 + o];
        let at_stored =
            |o: usize, i: usize, h: usize, w: usize| stored[((o * 4 + i) * 3 + h) * 2 + w];
        for (h, w, i, o) in [(0, 0, 0, 0), (2, 1, 3, 4), (1, 0, 2, 3), (0, 1, 1, 2)] {
            assert_eq!(at_internal(h, w, i, o), at_stored(o, i, h, w));
        }
        assert_eq!(
            permute(&stored, &stored_shape, &invert(&perm)).unwrap(),
            data
        );
        assert!(to_stored(Layout::ConvHwio, &[3, 3]).is_none());
    }

    #[test]
    fn another_architecture_is_an_error_naming_a_tensor() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let file = TempPath::new("other-arch");
        save_safetensors(&file.0, &net, &random_weights(&net, 1)).unwrap();
        let narrower = build("mlp:12-6-5", Shape::flat(12), 5);
        let e = load_safetensors(&file.0, &narrower)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fc1.weight") && e.contains("[6, 12]"), "{e}");
        let deeper = build("mlp:12-8-8-5", Shape::flat(12), 5);
        let e = load_safetensors(&file.0, &deeper).unwrap_err().to_string();
        assert!(e.contains("fc2.weight"), "{e}");
        let shallower = build("mlp:12-5", Shape::flat(12), 5);
        let e = load_safetensors(&file.0, &shallower)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fc1.weight"), "{e}");
    }

    /// Rewrites `from` into `to` with `extra` tensors added and `drop` removed.
    fn rewrite(from: &Path, to: &Path, extra: &[(&str, Dtype, Vec<usize>)], drop: &str) {
        let bytes = std::fs::read(from).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let zeros: Vec<Vec<u8>> = extra
            .iter()
            .map(|(_, d, s)| vec![0u8; s.iter().product::<usize>() * d.bitsize() / 8])
            .collect();
        let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != drop)
            .collect();
        for ((name, dtype, shape), data) in extra.iter().zip(&zeros) {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            views.push((name.to_string(), view));
        }
        std::fs::write(to, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    #[test]
    fn extra_and_mistyped_tensors() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let (a, b) = (TempPath::new("extra-a"), TempPath::new("extra-b"));
        save_safetensors(&a.0, &net, &random_weights(&net, 2)).unwrap();

        rewrite(
            &a.0,
            &b.0,
            &[("bn1.num_batches_tracked", Dtype::I64, vec![])],
            "",
        );
        load_safetensors(&b.0, &net).unwrap();

        rewrite(&a.0, &b.0, &[("head.weight", Dtype::F32, vec![2, 2])], "");
        let e = load_safetensors(&b.0, &net).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor `head.weight`"), "{e}");

        rewrite(&a.0, &b.0, &[("fc2.bias", Dtype::F64, vec![5])], "fc2.bias");
        let e = load_safetensors(&b.0, &net).unwrap_err().to_string();
        assert!(e.contains("fc2.bias") && e.contains("F64"), "{e}");

        rewrite(&a.0, &b.0, &[], "fc1.bias");
        let e = load_safetensors(&b.0, &net).unwrap_err().to_string();
        assert!(e.contains("missing tensor `fc1.bias`"), "{e}");
    }

    #[test]
    fn truncated_or_missing_files_are_errors_naming_the_path() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let file = TempPath::new("truncated");
        save_safetensors(&file.0, &net, &random_weights(&net, 3)).unwrap();
        let bytes = std::fs::read(&file.0).unwrap();
        let shown = file.0.display().to_string();
        for keep in [bytes.len() - 4, bytes.len() / 2, 20, 7, 0] {
            std::fs::write(&file.0, &bytes[..keep]).unwrap();
            let e = load_safetensors(&file.0, &net).unwrap_err();
            assert!(matches!(e, NnError::Checkpoint { .. }), "{e:?}");
            assert!(e.to_string().contains(&shown), "{e}");
        }
        std::fs::write(&file.0, b"{\"not\": \"safetensors\"}").unwrap();
        assert!(matches!(
            load_safetensors(&file.0, &net),
            Err(NnError::Checkpoint { .. })
        ));
        let missing = TempPath::new("does-not-exist");
        let e = load_safetensors(&missing.0, &net).unwrap_err();
        assert!(matches!(e, NnError::Io { .. }) && e.to_string().contains("does-not-exist"));
    }

    #[test]
    fn parsing_bytes_matches_loading_the_file_and_names_the_given_path() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let file = TempPath::new("parse");
        let w = random_weights(&net, 4);
        save_safetensors(&file.0, &net, &w).unwrap();
        let bytes = std::fs::read(&file.0).unwrap();
        let origin = Path::new("received/model.safetensors");
        let parsed = parse_safetensors(&bytes, origin, &net).unwrap();
        assert_eq!(bits(&parsed.params), bits(&w.params));
        assert_eq!(bits(&parsed.state), bits(&w.state));
        let e = parse_safetensors(&bytes[..bytes.len() / 2], origin, &net).unwrap_err();
        assert!(
            matches!(&e, NnError::Checkpoint { path, .. } if path == origin),
            "{e:?}"
        );
    }

    #[test]
    fn saving_checks_the_weights_fit() {
        let net = build("mlp:12-8-5", Shape::flat(12), 5);
        let other = build("mlp:12-6-5", Shape::flat(12), 5);
        let file = TempPath::new("wrong-weights");
        let w = random_weights(&other, 4);
        assert!(matches!(
            save_safetensors(&file.0, &net, &w),
            Err(NnError::Shape { .. })
        ));
    }
}
