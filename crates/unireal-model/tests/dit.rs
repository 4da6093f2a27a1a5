//! DiT behaviour: shapes for every input/output count, parameter counts of the presets,
//! gradients reaching every parameter, and overfitting one real sample on the CPU.

mod common;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};
use common::B;
use unireal_model::dit::{DiTInput, ROLE_ASSET, ROLE_CANVAS, ROLE_CONTROL};
use unireal_model::vae::{depth_to_space, space_to_depth};
use unireal_model::{DiT, DiTConfig};

type AB = Autodiff<B>;

fn randn<Bk: Backend, const D: usize>(shape: [usize; D], seed: u64, device: &Bk::Device) -> Tensor<Bk, D> {
    // A fixed pseudo-random fill, independent of the backend's generator.
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn input<Bk: Backend>(n: usize, m: usize, b: usize, c: usize, hw: usize, device: &Bk::Device) -> DiTInput<Bk> {
    let roles = [ROLE_CANVAS, ROLE_ASSET, ROLE_CONTROL, ROLE_ASSET];
    DiTInput {
        inputs: (n > 0).then(|| randn([b, n, c, hw, hw], 1, device)),
        input_roles: (n > 0).then(|| {
            let r: Vec<i64> = (0..b).flat_map(|_| roles[..n].to_vec()).collect();
            Tensor::from_data(TensorData::new(r, [b, n]), device)
        }),
        outputs: randn([b, m, c, hw, hw], 2, device),
        t: Tensor::from_data(TensorData::new(vec![0.25f32; b], [b]), device),
        text: randn([b, 6, 32], 3, device),
        text_pad: None,
        hide_inputs: None,
        pooled: None,
        guidance: None,
    }
}

#[test]
fn shapes_for_zero_to_four_inputs_and_one_or_two_outputs() {
    let device = Default::default();
    let model = DiTConfig::tiny(12, 32).init::<B>(&device);
    for n in 0..=4 {
        for m in 1..=2 {
            let out = model.forward(input::<B>(n, m, 2, 12, 8, &device));
            assert_eq!(out.dims(), [2, m, 12, 8, 8], "{n} inputs, {m} outputs");
        }
    }
    // Non-square latents.
    let mut x = input::<B>(1, 1, 1, 12, 4, &device);
    x.inputs = Some(randn([1, 1, 12, 4, 6], 5, &device));
    x.outputs = randn([1, 1, 12, 4, 6], 6, &device);
    assert_eq!(model.forward(x).dims(), [1, 1, 12, 4, 6]);
}

struct Counter(usize);
impl<Bk: Backend> ModuleVisitor<Bk> for Counter {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
        self.0 += p.val().shape().num_elements();
    }
}

#[test]
fn parameter_counts_of_the_presets() {
    let device = Default::default();
    for (name, built) in [("tiny", true), ("small", true), ("base", false), ("unireal", false)] {
        // 16-channel latents and a 4096-wide T5-XXL for the real presets, like Flux.
        let cfg = if name == "tiny" { DiTConfig::tiny(12, 64) } else { DiTConfig::preset(name, 16, 4096).unwrap() };
        cfg.validate().unwrap();
        let counted = cfg.num_params();
        if built {
            let mut c = Counter(0);
            cfg.init::<B>(&device).visit(&mut c);
            assert_eq!(c.0, counted, "{name}: built vs counted");
        }
        println!("preset {name:8} {:>14} parameters ({:.3} B)", counted, counted as f64 / 1e9);
        let want = match name {
            "tiny" => 2e6..8e6,
            "small" => 80e6..130e6,
            "base" => 0.8e9..1.3e9,
            _ => 4.5e9..5.5e9,
        };
        assert!(want.contains(&(counted as f64)), "{name}: {counted}");
    }
    // The T5 encoder's count too (the trained byte encoder's, for the memory plan).
    let t5 = unireal_model::T5Config::new(259, 64, 16, 128, 2, 4);
    let mut c = Counter(0);
    t5.init::<B>(&device).visit(&mut c);
    assert_eq!(c.0, t5.num_params(), "T5: built vs counted");
}

/// Collects every float parameter's id and element count.
struct Ids(Vec<(ParamId, usize)>);
impl<Bk: Backend> ModuleVisitor<Bk> for Ids {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
        self.0.push((p.id, p.val().shape().num_elements()));
    }
}

fn grad_norms<Bk: AutodiffBackend>(model: &DiT<Bk>, grads: &GradientsParams) -> Vec<f32> {
    struct Norms<'a>(&'a GradientsParams, Vec<f32>);
    impl<Bk: AutodiffBackend> ModuleVisitor<Bk> for Norms<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
            let g = self.0.get::<Bk::InnerBackend, D>(p.id);
            self.1.push(g.map_or(0.0, |g| g.abs().sum().into_scalar().elem::<f32>()));
        }
    }
    let mut n = Norms(grads, vec![]);
    model.visit(&mut n);
    n.1
}

/// adaLN-Zero starts every block as the identity and the output projection at zero, so the
/// first steps move only those; each Adam step opens the next link of the chain; after six every parameter gets a gradient.
#[test]
fn gradients_reach_every_parameter() {
    let device = Default::default();
    let mut model = DiTConfig::tiny(12, 32).init::<AB>(&device);
    let mut ids = Ids(vec![]);
    model.visit(&mut ids);
    let mut optim = AdamConfig::new().init();
    let mut last = vec![];
    for _ in 0..6 {
        let mut x = input::<AB>(2, 1, 2, 12, 4, &device);
        x.text_pad = Some(Tensor::from_data(
            TensorData::new(
                vec![false, false, false, false, true, true, false, false, false, false, false, false],
                [2, 6],
            ),
            &device,
        ));
        let target = randn::<AB, 5>([2, 1, 12, 4, 4], 9, &device);
        let loss = (model.forward(x) - target).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        last = grad_norms(&model, &grads);
        model = optim.step(1e-2, model, grads);
    }
    assert_eq!(last.len(), ids.0.len());
    let dead: Vec<usize> =
        last.iter().enumerate().filter(|(_, g)| **g == 0.0 || !g.is_finite()).map(|(i, _)| i).collect();
    assert!(dead.is_empty(), "{} of {} parameter tensors got no gradient: {dead:?}", dead.len(), last.len());
}

/// One real sample (a sample photograph → its grayscale version, as an edit), fixed noise and
/// times: the tiny DiT must drive the flow loss down at least tenfold.
#[test]
fn tiny_dit_overfits_one_real_sample() {
    let device = Default::default();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/samples/images/astronaut.png");
    let img = image::open(path).unwrap().resize_exact(32, 32, image::imageops::FilterType::Triangle).to_rgb8();
    let to_tensor = |rgb: &image::RgbImage| {
        let v: Vec<f32> = rgb.pixels().flat_map(|p| p.0).map(|x| x as f32 / 127.5 - 1.0).collect();
        // [H, W, 3] -> [1, 3, H, W]
        Tensor::<AB, 3>::from_data(TensorData::new(v, [32, 32, 3]), &device).permute([2, 0, 1]).unsqueeze::<4>()
    };
    let gray = image::DynamicImage::ImageRgb8(img.clone()).grayscale().to_rgb8();
    // Space-to-depth latents, factor 2: [1, 12, 16, 16]; round trip is exact.
    let x_in = space_to_depth(to_tensor(&img), 2);
    let x0 = space_to_depth(to_tensor(&gray), 2);
    let back = depth_to_space(x0.clone(), 2);
    assert_eq!((back - to_tensor(&gray)).abs().max().into_scalar(), 0.0);

    let b = 4;
    let inputs = x_in.unsqueeze_dim::<5>(1).repeat_dim(0, b); // [4, 1, 12, 16, 16]
    let targets = x0.unsqueeze_dim::<5>(1).repeat_dim(0, b);
    let noise = randn::<AB, 5>([b, 1, 12, 16, 16], 17, &device);
    let t = Tensor::<AB, 1>::from_data(TensorData::new(vec![0.2f32, 0.45, 0.7, 0.9], [b]), &device);
    let t5 = t.clone().reshape([b, 1, 1, 1, 1]);
    let x_t = targets.clone() * (t5.clone().neg() + 1.0) + noise.clone() * t5;
    let target_v = noise - targets;
    let text = randn::<AB, 3>([1, 4, 32], 23, &device).repeat_dim(0, b);

    let mut model = DiTConfig::tiny(12, 32).init::<AB>(&device);
    let mut optim = AdamConfig::new().init();
    let mut losses = vec![];
    for _ in 0..60 {
        let pred = model.forward(DiTInput {
            inputs: Some(inputs.clone()),
            input_roles: Some(Tensor::full([b, 1], ROLE_CANVAS, &device)),
            outputs: x_t.clone(),
            t: t.clone(),
            text: text.clone(),
            text_pad: None,
            hide_inputs: None,
            pooled: None,
            guidance: None,
        });
        let loss = (pred - target_v.clone()).powi_scalar(2).mean();
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(2e-3, model, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    println!("overfit: loss {first:.4} -> {last:.5} ({:.1}x)", first / last);
    assert!(first / last >= 10.0, "loss fell only {first} -> {last}");
}

/// Every parameter nudged by fixed noise, so that the zero-initialised gates and output
/// projection are open and every input can reach the prediction.
fn perturbed<Bk: Backend>(model: DiT<Bk>) -> DiT<Bk> {
    struct Nudge(u64);
    impl<Bk: Backend> burn::module::ModuleMapper<Bk> for Nudge {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
            let (id, t, mapper) = p.consume();
            self.0 += 1;
            let noise = randn::<Bk, D>(t.dims(), self.0, &t.device()) * 0.2;
            // A leaf again under autodiff, so that it gets gradients.
            let grad = t.is_require_grad();
            Param::from_mapped_value(id, (t + noise).detach().set_require_grad(grad), mapper)
        }
    }
    model.map(&mut Nudge(100))
}

/// A sample whose inputs are hidden predicts the same whatever its input images hold (no
/// query sees them), its batch neighbour still reads its own, and hiding keeps the sequence's
/// positions: the guidance branch without images is the one trained with dropped images.
#[test]
fn hidden_inputs_are_invisible_to_the_prediction() {
    let device = Default::default();
    let model = perturbed(DiTConfig::tiny(12, 32).init::<B>(&device));
    let mut x = input::<B>(2, 1, 2, 12, 4, &device);
    x.hide_inputs = Some(Tensor::from_data(TensorData::new(vec![true, false], [2]), &device));
    let before = model.forward(x.clone());
    // Other input images for both samples.
    x.inputs = Some(randn([2, 2, 12, 4, 4], 77, &device));
    let after = model.forward(x.clone());
    let diff = |a: Tensor<B, 5>, b: Tensor<B, 5>, i: usize| {
        (a.narrow(0, i, 1) - b.narrow(0, i, 1)).abs().max().into_scalar().elem::<f32>()
    };
    assert!(diff(before.clone(), after.clone(), 0) < 1e-5, "a hidden input changed the prediction");
    assert!(diff(before, after.clone(), 1) > 1e-3, "a visible input did not change the prediction");
    // Hidden is not removed: without the input frames the outputs sit at other positions.
    let mut removed = x.clone();
    removed.inputs = None;
    removed.input_roles = None;
    removed.hide_inputs = None;
    assert!(diff(model.forward(removed), after, 0) > 1e-4, "hiding should keep the frame positions");
}

/// Training FLOPs of the tiny preset, counted by hand: per token, each stream's attention
/// (4·h²) and MLP (2·h·m) weights in the two double blocks, the fused linears of the two
/// single blocks (h·(3h+m) + (h+m)·h), the patch embedding in and out (image tokens) or the
/// text projection (text tokens), 6 FLOPs each; attention 12·s²·h per block.
#[test]
fn train_flops_of_the_tiny_preset() {
    let cfg = DiTConfig::tiny(12, 64); // hidden 192, MLP 768, 2 + 2 blocks, patch_dim 48
    let (h, m) = (192.0, 768.0);
    let blocks = 2.0 * (4.0 * h * h + 2.0 * h * m) + 2.0 * (h * (3.0 * h + m) + (h + m) * h);
    let want = 6.0 * (200.0 * (blocks + 2.0 * 48.0 * h) + 50.0 * (blocks + 64.0 * h)) + 12.0 * 4.0 * h * 250.0 * 250.0;
    assert_eq!(cfg.train_flops(200, 50), want);
    // Below the 6·N·tokens rule, which also counts the other stream of each double block and
    // the per-sample modulation (together about 60 % of this DiT's parameters); above a quarter of it.
    let rule = 6.0 * cfg.num_params() as f64 * 250.0;
    let linear = cfg.train_flops(200, 50) - 12.0 * 4.0 * h * 250.0 * 250.0;
    assert!(linear < rule && linear > rule / 4.0, "{linear} vs {rule}");
}

/// Flattened gradients of every parameter, in visit order, with their dtypes.
fn flat_grads<Bk: AutodiffBackend>(model: &DiT<Bk>, grads: &GradientsParams) -> (Vec<f32>, Vec<DType>) {
    struct Flat<'a>(&'a GradientsParams, Vec<f32>, Vec<DType>);
    impl<Bk: AutodiffBackend> ModuleVisitor<Bk> for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
            let g = self.0.get::<Bk::InnerBackend, D>(p.id).expect("every parameter has a gradient");
            self.2.push(g.dtype());
            self.1.extend(g.cast(DType::F32).into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut f = Flat(grads, vec![], vec![]);
    model.visit(&mut f);
    (f.1, f.2)
}

/// Mixed precision (`train.precision: bf16`): the DiT run on a bf16 copy of its f32 weights
/// predicts what it predicts in f32 to within bf16's rounding, but not bit for bit (the copy
/// really computes in bf16); the prediction comes back in f32; under autodiff every gradient
/// reaches its f32 weight in f32 and points where the f32 gradient does.
#[test]
fn bf16_compute_on_f32_weights_tracks_f32() {
    use unireal_model::precision::cast_params;
    let device = Default::default();
    let pad = |x: &mut DiTInput<AB>| {
        let p = [false, false, false, false, true, true, false, false, false, false, false, false];
        x.text_pad = Some(Tensor::from_data(TensorData::new(p.to_vec(), [2, 6]), &device));
    };
    let model = perturbed(DiTConfig::tiny(12, 32).init::<AB>(&device));
    let target = randn::<AB, 5>([2, 1, 12, 8, 8], 9, &device);
    let run = |m: &DiT<AB>, bf16: bool| {
        let mut x = input::<AB>(2, 1, 2, 12, 8, &device);
        pad(&mut x);
        let pred = if bf16 { cast_params(m.clone(), FloatDType::BF16).forward(x) } else { m.forward(x) };
        assert_eq!(pred.dtype(), DType::F32, "the prediction comes back in the input's dtype");
        let loss = (pred.clone() - target.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), m);
        (pred.inner().into_data().to_vec::<f32>().unwrap(), flat_grads(m, &grads))
    };
    let (p32, (g32, _)) = run(&model, false);
    let (p16, (g16, dtypes)) = run(&model, true);
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = p32.iter().zip(&p16).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&p32);
    println!("prediction: relative difference bf16 vs f32 {rel:.2e}");
    assert!(rel > 1e-4, "bf16 compute gave the f32 prediction ({rel:.1e}): nothing ran in bf16");
    assert!(rel < 4e-2, "bf16 compute is {rel:.2e} away from f32");
    assert!(dtypes.iter().all(|d| *d == DType::F32), "gradient dtypes {dtypes:?}");
    let dot: f64 = g32.iter().zip(&g16).map(|(a, b)| *a as f64 * *b as f64).sum();
    let cos = dot / (norm(&g32) * norm(&g16));
    println!("gradients: cosine bf16 vs f32 {cos:.5}");
    assert!(cos > 0.995, "bf16 gradients point elsewhere: cosine {cos}");
}

/// The Flux presets count FLUX.1's published parameters (11 901 408 320 for dev, diffusers'
/// `FluxTransformer2DModel`), plus UniReal's index and role embeddings.
#[test]
fn flux_presets_have_flux_parameter_counts() {
    let own = (8 + unireal_model::dit::NUM_ROLES) * 3072;
    assert_eq!(DiTConfig::flux_dev().num_params() - own, 11_901_408_320);
    // schnell lacks the guidance embedder: 256·3072 + 3072 + 3072·3072 + 3072 parameters.
    assert_eq!(
        DiTConfig::flux_dev().num_params() - DiTConfig::flux_schnell().num_params(),
        256 * 3072 + 3072 * 3073 + 3072
    );
    assert_eq!(DiTConfig::preset("flux-dev", 4, 32), Some(DiTConfig::flux_dev()));
}
