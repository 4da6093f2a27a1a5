//! Per-block recomputation (`unireal_train::recompute`) against the plain backward pass on one
//! batch: the same loss and the same gradient for every parameter of the DiT, in f32 on
//! NdArray and in bf16 mixed precision on Flex.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};
use unireal_flow::{per_sample_mse, seeded_noise};
use unireal_model::dit::{ROLE_ASSET, ROLE_CANVAS};
use unireal_model::precision::cast_params;
use unireal_model::{DiT, DiTConfig, DiTInput};
use unireal_train::recompute::flow_loss_by_block;

/// Every parameter nudged, so that the zero-initialised gates and last layer are open and every
/// block reaches the prediction (a fresh DiT's blocks get no gradient through them).
fn opened<B: AutodiffBackend>(dit: DiT<B>) -> DiT<B> {
    struct Nudge(u64);
    impl<B: AutodiffBackend> ModuleMapper<B> for Nudge {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = p.consume();
            self.0 += 1;
            let noise = seeded_noise::<B, D>(t.dims(), self.0, &t.device()) * 0.1;
            Param::from_mapped_value(id, (t + noise).detach().require_grad(), mapper)
        }
    }
    dit.map(&mut Nudge(7))
}

/// Two samples, one input and one output frame each, with text padding on the second.
fn batch<B: Backend>(device: &B::Device) -> (DiTInput<B>, Tensor<B, 5>) {
    let (b, c, hw, text, dim) = (2, 12, 8, 6, 32);
    let roles = TensorData::new(vec![ROLE_CANVAS, ROLE_ASSET], [b, 1]);
    let pad: Vec<bool> = (0..b * text).map(|i| i == 2 * text - 1).collect();
    let input = DiTInput {
        inputs: Some(seeded_noise([b, 1, c, hw, hw], 1, device)),
        input_roles: Some(Tensor::from_data(roles, device)),
        outputs: seeded_noise([b, 1, c, hw, hw], 2, device),
        t: Tensor::from_data(TensorData::new(vec![0.3f32, 0.8], [b]), device),
        text: seeded_noise([b, text, dim], 3, device),
        text_pad: Some(Tensor::from_data(TensorData::new(pad, [b, text]), device)),
        hide_inputs: None,
        pooled: None,
        guidance: None,
    };
    (input, seeded_noise([b, 1, c, hw, hw], 4, device))
}

/// The largest difference between two gradients of each parameter, over the largest
/// magnitude of that gradient, and the parameters the second lacks.
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    worst: f64,
    params: usize,
    missing: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let flat = |g: Tensor<B::InnerBackend, D>| g.cast(DType::F32).into_data().to_vec::<f32>().unwrap();
        let Some(a) = self.a.get::<B::InnerBackend, D>(param.id).map(flat) else { return };
        self.params += 1;
        let Some(b) = self.b.get::<B::InnerBackend, D>(param.id).map(flat) else {
            self.missing += 1;
            return;
        };
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12) as f64;
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
        self.worst = self.worst.max(diff / scale);
    }
}

/// The plain loss and gradient, and those of per-block recomputation, of one batch.
fn both<B: AutodiffBackend>(dtype: Option<FloatDType>) -> (f32, f32, f64, usize) {
    let device = Default::default();
    let dit = opened(DiTConfig::tiny(12, 32).init::<B>(&device));
    let loss_of = |per_sample: Tensor<B, 1>| per_sample.mean() / 2.0;

    let (input, target) = batch::<B>(&device);
    let computed = match dtype {
        Some(d) => cast_params(dit.clone(), d),
        None => dit.clone(),
    };
    let loss = loss_of(per_sample_mse(computed.forward(input), target));
    let plain_loss = loss.clone().into_scalar().elem::<f32>();
    let plain = GradientsParams::from_grads(loss.backward(), &dit);

    let (input, target) = batch::<B>(&device);
    let mut accum = GradientsAccumulator::<DiT<B>>::new();
    let mut parts = 0;
    let (loss, _) = flow_loss_by_block(&dit, dtype, input, target, loss_of, |g| {
        parts += 1;
        accum.accumulate(&dit, GradientsParams::from_grads(g, &dit));
    });
    let blocks = accum.grads();
    let mut cmp = Compare { a: &plain, b: &blocks, worst: 0.0, params: 0, missing: 0 };
    dit.visit(&mut cmp);
    assert!(cmp.params >= 78, "only {} parameters had gradients", cmp.params);
    assert_eq!(cmp.missing, 0, "per-block recomputation left {} parameters without a gradient", cmp.missing);
    // tiny: 2 double blocks (24 tensors each), 2 single (8 each), embedders and last layer (14).
    // Parts: the blocks, the last layer, the embedders.
    assert_eq!(parts, 6);
    (plain_loss, loss.into_scalar().elem::<f32>(), cmp.worst, cmp.params)
}

#[test]
fn per_block_recomputation_gives_the_plain_gradients_in_f32() {
    let (plain, blocks, worst, params) = both::<Autodiff<NdArray>>(None);
    println!("f32: loss {plain} / {blocks}; {params} gradients, largest difference {worst:.2e} of the gradient's largest entry");
    assert_eq!(plain, blocks);
    assert!(worst < 1e-5, "gradients differ by {worst:.2e}");
}

#[test]
fn per_block_recomputation_gives_the_plain_gradients_in_bf16() {
    let (plain, blocks, worst, params) = both::<Autodiff<Flex>>(Some(FloatDType::BF16));
    println!("bf16: loss {plain} / {blocks}; {params} gradients, largest difference {worst:.2e} of the gradient's largest entry");
    assert!((plain - blocks).abs() <= 1e-5 * plain.abs(), "loss {blocks} against {plain}");
    assert!(worst < 2e-2, "gradients differ by {worst:.2e}");
}
