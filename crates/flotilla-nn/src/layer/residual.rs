//! The basic residual block of the CIFAR ResNets.

use super::{BatchNorm, BatchNormConfig, Conv2d, Layer, Mode, Relu};
use crate::param::{Init, ParamSpec, total_len};
use crate::tensor::{Shape, Tensor, sample_shape};

/// A sub-layer together with its parameter and state offsets inside the block's slices.
#[derive(Debug)]
struct Part<L> {
    /// PyTorch-style name prefix (`conv1`, `shortcut.bn`, …).
    name: &'static str,
    layer: L,
    params: std::ops::Range<usize>,
    state: std::ops::Range<usize>,
}

impl<L: Layer> Part<L> {
    /// Places `layer` after the parameters and state already allocated (`*p`, `*s`).
    fn new(name: &'static str, layer: L, p: &mut usize, s: &mut usize) -> Self {
        let (pl, sl) = (
            total_len(&layer.param_specs()).expect("a block's tensors fit in usize"),
            total_len(&layer.state_specs()).expect("a block's tensors fit in usize"),
        );
        let part = Self {
            name,
            layer,
            params: *p..*p + pl,
            state: *s..*s + sl,
        };
        *p += pl;
        *s += sl;
        part
    }

    fn forward(&mut self, x: Tensor, params: &[f32], state: &mut [f32], mode: Mode) -> Tensor {
        let p = &params[self.params.clone()];
        self.layer
            .forward(x, p, &mut state[self.state.clone()], mode)
    }

    fn backward(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor {
        let p = &params[self.params.clone()];
        self.layer.backward(dy, p, &mut grads[self.params.clone()])
    }

    fn param_specs(&self) -> impl Iterator<Item = ParamSpec> + '_ {
        self.layer
            .param_specs()
            .into_iter()
            .map(|s| s.prefixed(self.name))
    }

    fn state_specs(&self) -> impl Iterator<Item = ParamSpec> + '_ {
        self.layer
            .state_specs()
            .into_iter()
            .map(|s| s.prefixed(self.name))
    }
}

/// The 1×1 convolution + batch norm on the shortcut path.
#[derive(Debug)]
struct Projection {
    conv: Part<Conv2d>,
    bn: Part<BatchNorm>,
}

/// The CIFAR ResNet basic block (He et al. 2016):
///
/// ```text
/// main:     conv3x3(stride) → BN → ReLU → conv3x3(1) → BN(γ₀ = 0)
/// shortcut: conv1x1(stride) → BN        (projection)   or   identity
/// output:   ReLU(main + shortcut)
/// ```
///
/// Convolutions have no bias. The second batch norm of the main path has its γ initialised
/// to zero (whatever [`BatchNormConfig::gamma_init`] says), so a fresh block starts as (ReLU
/// of) its shortcut; the other batch norms use the given configuration.
///
/// Parameter and state names follow PyTorch: `conv1.weight`, `bn1.weight`, `bn1.bias`,
/// `conv2.weight`, `bn2.weight`, `bn2.bias`, then `shortcut.conv.weight`,
/// `shortcut.bn.weight`, `shortcut.bn.bias` (state: `bn1.running_mean`, `bn1.running_var`,
/// `bn2.…`, `shortcut.bn.…`); the block's slices are the concatenation of its sub-layers'
/// slices in that order.
#[derive(Debug)]
pub struct ResidualBlock {
    input: Shape,
    stride: usize,
    conv1: Part<Conv2d>,
    bn1: Part<BatchNorm>,
    relu1: Relu,
    conv2: Part<Conv2d>,
    bn2: Part<BatchNorm>,
    shortcut: Option<Projection>,
    relu_out: Relu,
}

impl ResidualBlock {
    /// Every sub-layer, main path then shortcut, for per-layer sums.
    fn sub_layers(&self) -> Vec<&dyn Layer> {
        let mut layers: Vec<&dyn Layer> = vec![
            &self.conv1.layer,
            &self.bn1.layer,
            &self.relu1,
            &self.conv2.layer,
            &self.bn2.layer,
            &self.relu_out,
        ];
        if let Some(sc) = &self.shortcut {
            layers.extend([&sc.conv.layer as &dyn Layer, &sc.bn.layer]);
        }
        layers
    }

    /// A basic block from `input` to `out_channels` channels, the first convolution (and
    /// the projection) with the given `stride`.
    ///
    /// `projection` asks for a 1×1 conv + BN shortcut. An identity shortcut is only possible
    /// when `stride == 1` and the channel count is unchanged; otherwise the block uses a
    /// projection even when `projection` is false (see [`ResidualBlock::has_projection`]).
    ///
    /// # Panics
    /// If `stride` or `out_channels` is zero, on an invalid batch-norm configuration, or if
    /// a convolution's weight count does not fit in `usize`.
    pub fn new(
        input: Shape,
        out_channels: usize,
        stride: usize,
        projection: bool,
        bn: BatchNormConfig,
    ) -> Self {
        let (mut p, mut s) = (0, 0);
        let conv1 = Part::new(
            "conv1",
            Conv2d::new(input, out_channels, 3, stride, false),
            &mut p,
            &mut s,
        );
        let mid = conv1.layer.output_shape();
        let bn1 = Part::new("bn1", BatchNorm::new(mid, bn), &mut p, &mut s);
        let conv2 = Part::new(
            "conv2",
            Conv2d::new(mid, out_channels, 3, 1, false),
            &mut p,
            &mut s,
        );
        let zero_gamma = BatchNormConfig {
            gamma_init: Init::Zeros,
            ..bn
        };
        let bn2 = Part::new("bn2", BatchNorm::new(mid, zero_gamma), &mut p, &mut s);
        let identity_possible = stride == 1 && input.c == out_channels;
        let shortcut = (projection || !identity_possible).then(|| {
            let conv = Conv2d::new(input, out_channels, 1, stride, false);
            let conv = Part::new("shortcut.conv", conv, &mut p, &mut s);
            let bn = Part::new("shortcut.bn", BatchNorm::new(mid, bn), &mut p, &mut s);
            Projection { conv, bn }
        });
        if let Some(sc) = &shortcut {
            debug_assert_eq!(
                sc.conv.layer.output_shape(),
                mid,
                "shortcut matches the main path"
            );
        }
        Self {
            input,
            stride,
            conv1,
            bn1,
            relu1: Relu::new(mid),
            conv2,
            bn2,
            shortcut,
            relu_out: Relu::new(mid),
        }
    }

    /// Whether the shortcut is a 1×1 conv + BN projection (else the identity).
    pub fn has_projection(&self) -> bool {
        self.shortcut.is_some()
    }
}

impl Layer for ResidualBlock {
    fn describe(&self) -> String {
        let out = self.output_shape();
        let shortcut = if self.has_projection() {
            "projection"
        } else {
            "identity"
        };
        format!(
            "residual {}→{} stride {}, {shortcut} shortcut",
            self.input.c, out.c, self.stride
        )
    }

    fn input_shape(&self) -> Shape {
        self.input
    }

    fn output_shape(&self) -> Shape {
        self.conv2.layer.output_shape()
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        let mut specs: Vec<ParamSpec> = self.conv1.param_specs().collect();
        specs.extend(self.bn1.param_specs());
        specs.extend(self.conv2.param_specs());
        specs.extend(self.bn2.param_specs());
        if let Some(sc) = &self.shortcut {
            specs.extend(sc.conv.param_specs());
            specs.extend(sc.bn.param_specs());
        }
        specs
    }

    fn state_specs(&self) -> Vec<ParamSpec> {
        let mut specs: Vec<ParamSpec> = self.bn1.state_specs().collect();
        specs.extend(self.bn2.state_specs());
        if let Some(sc) = &self.shortcut {
            specs.extend(sc.bn.state_specs());
        }
        specs
    }

    /// The sub-layers' counts (convolutions, batch norms, ReLUs, projection) plus one
    /// addition per output value for the residual sum.
    fn flops_per_sample(&self) -> Option<u64> {
        let out = u64::try_from(self.output_shape().len()).ok()?;
        self.sub_layers()
            .iter()
            .try_fold(out, |n, l| n.checked_add(l.flops_per_sample()?))
    }

    fn activations_per_sample(&self) -> Option<usize> {
        self.sub_layers()
            .iter()
            .try_fold(0usize, |n, l| n.checked_add(l.activations_per_sample()?))
    }

    fn forward(&mut self, x: Tensor, params: &[f32], state: &mut [f32], mode: Mode) -> Tensor {
        assert_eq!(sample_shape(&x), self.input, "residual block input shape");
        let skip = match &mut self.shortcut {
            Some(sc) => {
                let s = sc.conv.forward(x.clone(), params, state, mode);
                sc.bn.forward(s, params, state, mode)
            }
            None => x.clone(),
        };
        let h = self.conv1.forward(x, params, state, mode);
        let h = self.bn1.forward(h, params, state, mode);
        let h = self.relu1.forward(h, &[], &mut [], mode);
        let h = self.conv2.forward(h, params, state, mode);
        let mut h = self.bn2.forward(h, params, state, mode);
        h += &skip;
        self.relu_out.forward(h, &[], &mut [], mode)
    }

    fn backward(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor {
        let d = self.relu_out.backward(dy, &[], &mut []);
        // The sum's gradient `d` flows into both paths.
        let (d_main, d_skip) = match &mut self.shortcut {
            Some(sc) => {
                let g = sc.bn.backward(d.clone(), params, grads);
                let d_skip = sc.conv.backward(g, params, grads);
                (d, d_skip)
            }
            None => (d.clone(), d),
        };
        let g = self.bn2.backward(d_main, params, grads);
        let g = self.conv2.backward(g, params, grads);
        let g = self.relu1.backward(g, &[], &mut []);
        let g = self.bn1.backward(g, params, grads);
        let mut dx = self.conv1.backward(g, params, grads);
        dx += &d_skip;
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_tensor(n: usize, s: Shape, rng: &mut ChaCha8Rng) -> Tensor {
        Tensor::from_shape_fn((n, s.h, s.w, s.c), |_| rng.random_range(-1.0..1.0))
    }

    /// Random parameters and running statistics that keep every ReLU of the block away from
    /// its kink, so finite differences never straddle one. With at most ~3.3 for |x̂|: the
    /// main-path batch norms have γ in [0.2, 0.5] and β = +3 on even channels (always
    /// active) and −3 on odd ones (always dead), so |bn output| > 1.3; the shortcut is smaller
    /// than that (the input is in [−1, 1]; the shortcut BN has γ in [0.1, 0.2] and β in
    /// [−0.2, 0.2]). Convolution weights are ±[0.3, 0.7] with random signs.
    fn random_params_state(block: &ResidualBlock, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
        let mut params = Vec::new();
        for spec in block.param_specs() {
            let name = spec.name.as_str();
            let main_bn = name.starts_with("bn");
            for ch in 0..spec.len() {
                params.push(if name == "shortcut.bn.weight" {
                    rng.random_range(0.1..0.2)
                } else if main_bn && name.ends_with("weight") {
                    rng.random_range(0.2..0.5)
                } else if main_bn {
                    if ch % 2 == 0 { 3.0 } else { -3.0 }
                } else if name == "shortcut.bn.bias" {
                    rng.random_range(-0.2..0.2)
                } else {
                    // Convolution weights: magnitudes bounded away from 0 keep each batch
                    // norm's input variance away from 0, where it is strongly non-linear.
                    let v = rng.random_range(0.3..0.7);
                    if rng.random::<bool>() { v } else { -v }
                });
            }
        }
        let state = block
            .state_specs()
            .iter()
            .flat_map(|s| {
                let var = s.name.ends_with("running_var");
                (0..s.len())
                    .map(move |_| if var { 1.5 } else { 0.1 })
                    .collect::<Vec<_>>()
            })
            .collect();
        (params, state)
    }

    #[test]
    fn shapes_param_names_and_counts() {
        let bn = BatchNormConfig::default();
        let block = ResidualBlock::new(Shape::image(32, 32, 16), 32, 2, true, bn);
        assert_eq!(block.output_shape(), Shape::image(16, 16, 32));
        assert!(block.has_projection());
        let specs = block.param_specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "bn1.weight",
                "bn1.bias",
                "conv2.weight",
                "bn2.weight",
                "bn2.bias",
                "shortcut.conv.weight",
                "shortcut.bn.weight",
                "shortcut.bn.bias"
            ]
        );
        let conv_weights: usize = specs
            .iter()
            .filter(|s| s.shape.len() == 4)
            .map(ParamSpec::len)
            .sum();
        assert_eq!(conv_weights, 4608 + 9216 + 512);
        assert_eq!(total_len(&specs), Some(4608 + 9216 + 512 + 3 * 2 * 32));
        assert_eq!(specs[0].shape, vec![3, 3, 16, 32]);
        assert_eq!(specs[6].shape, vec![1, 1, 16, 32]);
        assert_eq!(specs[1].init, Init::Ones);
        assert_eq!(specs[4].init, Init::Zeros, "second BN starts at γ = 0");
        assert_eq!(specs[7].init, Init::Ones);
        let state: Vec<String> = block.state_specs().into_iter().map(|s| s.name).collect();
        assert_eq!(
            state,
            [
                "bn1.running_mean",
                "bn1.running_var",
                "bn2.running_mean",
                "bn2.running_var",
                "shortcut.bn.running_mean",
                "shortcut.bn.running_var"
            ]
        );
        assert_eq!(
            block.describe(),
            "residual 16→32 stride 2, projection shortcut"
        );
        let convs = 2 * 16 * 16 * (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32);
        let elementwise = 16 * 16 * 32 * (3 * 2 + 2 + 1);
        assert_eq!(block.flops_per_sample(), Some((convs + elementwise) as u64));

        let identity = ResidualBlock::new(Shape::image(8, 8, 16), 16, 1, false, bn);
        assert!(!identity.has_projection());
        assert_eq!(identity.output_shape(), Shape::image(8, 8, 16));
        assert_eq!(
            total_len(&identity.param_specs()),
            Some(2 * 2304 + 2 * 2 * 16)
        );
        assert_eq!(identity.state_specs().len(), 4);
        assert_eq!(
            identity.describe(),
            "residual 16→16 stride 1, identity shortcut"
        );
    }

    #[test]
    fn impossible_identity_shortcut_becomes_a_projection() {
        let bn = BatchNormConfig::default();
        assert!(ResidualBlock::new(Shape::image(8, 8, 16), 16, 2, false, bn).has_projection());
        assert!(ResidualBlock::new(Shape::image(8, 8, 16), 32, 1, false, bn).has_projection());
        // A projection may also be requested where identity would do (ResNet-20 stage 1).
        assert!(ResidualBlock::new(Shape::image(8, 8, 16), 16, 1, true, bn).has_projection());
    }

    #[test]
    fn forward_is_the_composition_of_its_sub_layers_on_consecutive_slices() {
        let mut rng = ChaCha8Rng::seed_from_u64(40);
        let (shape, cout, stride) = (Shape::image(5, 4, 3), 4, 2);
        let bn = BatchNormConfig::default();
        let mut block = ResidualBlock::new(shape, cout, stride, true, bn);
        let (params, state) = random_params_state(&block, &mut rng);
        let x = random_tensor(3, shape, &mut rng);
        // The documented layout: conv1, bn1, conv2, bn2, shortcut.conv, shortcut.bn.
        let mid = Shape::image(3, 2, cout);
        let mut conv1 = Conv2d::new(shape, cout, 3, stride, false);
        let mut bn1 = BatchNorm::new(mid, bn);
        let mut conv2 = Conv2d::new(mid, cout, 3, 1, false);
        let mut bn2 = BatchNorm::new(mid, bn);
        let mut sc_conv = Conv2d::new(shape, cout, 1, stride, false);
        let mut sc_bn = BatchNorm::new(mid, bn);
        let p_lens = [
            3 * 3 * 3 * cout,
            2 * cout,
            3 * 3 * cout * cout,
            2 * cout,
            3 * cout,
            2 * cout,
        ];
        let mut p = Vec::new();
        let mut rest = &params[..];
        for len in p_lens {
            let (head, tail) = rest.split_at(len);
            p.push(head);
            rest = tail;
        }
        assert!(rest.is_empty());
        for mode in [Mode::Train, Mode::Eval] {
            let mut block_state = state.clone();
            let y = block.forward(x.clone(), &params, &mut block_state, mode);
            let mut s = state.clone();
            let (s1, s) = s.split_at_mut(2 * cout);
            let (s2, s3) = s.split_at_mut(2 * cout);
            let h = conv1.forward(x.clone(), p[0], &mut [], mode);
            let h = bn1.forward(h, p[1], s1, mode).mapv(|v| v.max(0.0));
            let h = conv2.forward(h, p[2], &mut [], mode);
            let h = bn2.forward(h, p[3], s2, mode);
            let skip = sc_conv.forward(x.clone(), p[4], &mut [], mode);
            let skip = sc_bn.forward(skip, p[5], s3, mode);
            assert_eq!(y, (h + skip).mapv(|v| v.max(0.0)), "{mode:?}");
            let manual_state: Vec<f32> = [&*s1, &*s2, &*s3].concat();
            assert_eq!(block_state, manual_state, "{mode:?}");
        }
    }

    #[test]
    fn fresh_block_is_relu_of_its_shortcut() {
        // With γ₂ = 0 the main path contributes β₂ = 0: identity block → ReLU(x).
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let shape = Shape::image(4, 4, 3);
        let mut block = ResidualBlock::new(shape, 3, 1, false, BatchNormConfig::default());
        let mut params = vec![0.0; total_len(&block.param_specs()).unwrap()];
        let mut state = vec![0.0; total_len(&block.state_specs()).unwrap()];
        let mut offset = 0;
        for spec in block.param_specs() {
            spec.init
                .fill(&mut params[offset..offset + spec.len()], &mut rng);
            offset += spec.len();
        }
        let mut offset = 0;
        for spec in block.state_specs() {
            spec.init
                .fill(&mut state[offset..offset + spec.len()], &mut rng);
            offset += spec.len();
        }
        let x = random_tensor(2, shape, &mut rng);
        let y = block.forward(x.clone(), &params, &mut state, Mode::Train);
        assert_eq!(y, x.mapv(|v| v.max(0.0)));
    }

    #[test]
    fn state_slices_are_updated_in_place_in_train_mode_only() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let shape = Shape::image(4, 4, 2);
        let mut block = ResidualBlock::new(shape, 4, 2, true, BatchNormConfig::default());
        let (params, state) = random_params_state(&block, &mut rng);
        let x = random_tensor(3, shape, &mut rng);
        let mut s = state.clone();
        block.forward(x.clone(), &params, &mut s, Mode::Eval);
        assert_eq!(s, state);
        block.forward(x, &params, &mut s, Mode::Train);
        // Every one of the three batch norms moved its running statistics.
        for chunk in s.chunks(4).zip(state.chunks(4)) {
            assert_ne!(chunk.0, chunk.1);
        }
    }

    /// A block chains up to seven `f32` layers, so central differences carry more rounding
    /// noise than a single layer's: with `eps = 1e-2` the worst relative error over 20 seeds
    /// of these configurations was 1.1e-2 (it falls as `1/eps`, i.e. it is noise, not bias),
    /// hence the tolerance of 1.5e-2.
    #[test]
    fn gradients_match_finite_differences() {
        for seed in 0..3 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for (shape, cout, stride, projection) in [
                (Shape::image(3, 4, 2), 2, 1, false),
                (Shape::image(4, 5, 2), 3, 2, true),
                (Shape::image(3, 3, 3), 3, 1, true),
            ] {
                let bn = BatchNormConfig::default();
                let mut block = ResidualBlock::new(shape, cout, stride, projection, bn);
                let (params, state) = random_params_state(&block, &mut rng);
                let x = random_tensor(4, shape, &mut rng);
                let (input, param) = check_layer(&mut block, &x, &params, &state, 1e-2, 0);
                let what = format!("{} (seed {seed})", block.describe());
                input.assert_within(1.5e-2, &format!("{what} input"));
                param.assert_within(1.5e-2, &format!("{what} params"));
            }
        }
    }

    /// A layer whose backward pass is deliberately wrong, to show the checks can fail.
    #[derive(Debug)]
    struct Broken<L> {
        inner: L,
        /// Scale applied to the returned input gradient.
        dx_scale: f32,
        /// Whether to zero the last parameter gradient (a bias).
        drop_bias_grad: bool,
    }

    impl<L: Layer> Layer for Broken<L> {
        fn describe(&self) -> String {
            format!("broken {}", self.inner.describe())
        }
        fn input_shape(&self) -> Shape {
            self.inner.input_shape()
        }
        fn output_shape(&self) -> Shape {
            self.inner.output_shape()
        }
        fn param_specs(&self) -> Vec<ParamSpec> {
            self.inner.param_specs()
        }
        fn state_specs(&self) -> Vec<ParamSpec> {
            self.inner.state_specs()
        }
        fn flops_per_sample(&self) -> Option<u64> {
            self.inner.flops_per_sample()
        }
        fn forward(&mut self, x: Tensor, params: &[f32], state: &mut [f32], mode: Mode) -> Tensor {
            self.inner.forward(x, params, state, mode)
        }
        fn backward(&mut self, dy: Tensor, params: &[f32], grads: &mut [f32]) -> Tensor {
            let dx = self.inner.backward(dy, params, grads);
            if self.drop_bias_grad
                && let Some(g) = grads.last_mut()
            {
                *g = 0.0;
            }
            dx * self.dx_scale
        }
    }

    #[test]
    fn gradient_checks_catch_wrong_backward_passes() {
        let mut rng = ChaCha8Rng::seed_from_u64(44);
        let shape = Shape::image(4, 4, 2);
        let x = random_tensor(2, shape, &mut rng);
        let conv = Conv2d::new(shape, 3, 3, 1, true);
        let params: Vec<f32> = (0..total_len(&conv.param_specs()).unwrap())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();

        let mut ok = Broken {
            inner: conv,
            dx_scale: 1.0,
            drop_bias_grad: false,
        };
        let (input, param) = check_layer(&mut ok, &x, &params, &[], 1e-2, 0);
        input.assert_within(1e-2, "unbroken conv input");
        param.assert_within(1e-2, "unbroken conv params");

        let mut scaled = Broken {
            dx_scale: 1.1,
            ..ok
        };
        let (input, param) = check_layer(&mut scaled, &x, &params, &[], 1e-2, 0);
        assert!(
            input.max_rel_error > 1e-2,
            "scaled dx not caught: {input:?}"
        );
        param.assert_within(1e-2, "conv params with scaled dx");

        let mut no_bias = Broken {
            dx_scale: 1.0,
            drop_bias_grad: true,
            ..scaled
        };
        let (input, param) = check_layer(&mut no_bias, &x, &params, &[], 1e-2, 0);
        input.assert_within(1e-2, "conv input with dropped bias grad");
        assert!(
            param.max_rel_error > 1e-2,
            "dropped bias grad not caught: {param:?}"
        );

        // The same on a composite layer: a residual block whose input gradient is off by 10%.
        let block = ResidualBlock::new(shape, 2, 1, false, BatchNormConfig::default());
        let (params, state) = random_params_state(&block, &mut rng);
        let mut broken = Broken {
            inner: block,
            dx_scale: 1.1,
            drop_bias_grad: false,
        };
        let (input, _) = check_layer(&mut broken, &x, &params, &state, 1e-3, 0);
        assert!(
            input.max_rel_error > 1e-2,
            "scaled residual dx not caught: {input:?}"
        );
    }
}
