//! The flow convention, t-sampling, the loss and the sampler.

use burn::prelude::*;
use unireal_flow::dit::{dit_flow_loss, DitConditioning, FlowBatch};
use unireal_flow::*;
use unireal_model::dit::ROLE_CANVAS;
use unireal_model::DiTConfig;

type B = burn::backend::Flex;

fn t1(v: &[f32]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
}

fn close(a: Tensor<B, 5>, b: Tensor<B, 5>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// t = 1 is noise, t = 0 is data, and the target is the path's derivative dx_t/dt.
#[test]
fn convention_t1_is_noise_t0_is_data() {
    let d = Default::default();
    let x0 = seeded_noise::<B, 5>([2, 1, 3, 4, 4], 1, &d);
    let eps = seeded_noise::<B, 5>([2, 1, 3, 4, 4], 2, &d);
    assert_eq!(close(interpolate(x0.clone(), eps.clone(), t1(&[1.0, 1.0])), eps.clone()), 0.0);
    assert_eq!(close(interpolate(x0.clone(), eps.clone(), t1(&[0.0, 0.0])), x0.clone()), 0.0);
    let h = 1e-2;
    let a = interpolate(x0.clone(), eps.clone(), t1(&[0.4, 0.7]));
    let b = interpolate(x0.clone(), eps.clone(), t1(&[0.4 + h, 0.7 + h]));
    let fd = (b - a.clone()) / h as f64;
    assert!(close(fd, velocity_target(x0.clone(), eps.clone())) < 1e-3);
    // And x₀ comes back from x_t and the true velocity.
    let back = predict_x0(a, velocity_target(x0.clone(), eps), t1(&[0.4, 0.7]));
    assert!(close(back, x0) < 1e-5);
}

#[test]
fn schedule_and_time_sampling() {
    let s = schedule(4, 1.0);
    assert_eq!(s, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    let s3 = schedule(4, 3.0);
    assert_eq!((s3[0], s3[4]), (1.0, 0.0));
    assert!(s3.windows(2).all(|w| w[0] > w[1]), "shifted schedule must decrease: {s3:?}");
    assert!(s3[2] > 0.5, "shift > 1 spends longer near noise: {s3:?}");
    assert!((shift_t(0.5, 3.0) - 0.75).abs() < 1e-12);
    // Flux's anchors: exp(0.5) at 256 tokens, exp(1.15) at 4096.
    let (lo, hi) = FLUX_SHIFT_ANCHORS;
    assert!((resolution_shift(256, lo, hi) - 0.5f64.exp()).abs() < 1e-9);
    assert!((resolution_shift(4096, lo, hi) - 1.15f64.exp()).abs() < 1e-9);

    let mut rng = Rng::new(0);
    for kind in [TimeSampling::Uniform, TimeSampling::default(), TimeSampling::Mode { scale: 1.29 }] {
        let ts = sample_t(&kind, 20_000, 1.0, &mut rng);
        assert!(ts.iter().all(|t| (0.0..=1.0).contains(t)), "{kind:?}");
        let mean = ts.iter().sum::<f64>() / ts.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{kind:?} mean {mean}");
    }
    // Logit-normal puts less mass near the ends than uniform.
    let ln = sample_t(&TimeSampling::default(), 20_000, 1.0, &mut rng);
    let tails = ln.iter().filter(|&&t| !(0.05..0.95).contains(&t)).count() as f64 / ln.len() as f64;
    assert!(tails < 0.06, "logit-normal tails {tails}");
    // The same seed gives the same draws.
    assert_eq!(
        sample_t(&TimeSampling::default(), 5, 2.0, &mut Rng::new(9)),
        sample_t(&TimeSampling::default(), 5, 2.0, &mut Rng::new(9))
    );
}

/// v = k_c · x for condition c: lets the guidance and the Euler step be computed by hand.
struct Linear3 {
    full: f64,
    images: f64,
    none: f64,
}

impl VelocityModel<B> for Linear3 {
    fn velocity(&self, x: Tensor<B, 5>, _t: Tensor<B, 1>, c: Condition) -> Tensor<B, 5> {
        x * match c {
            Condition::Full => self.full,
            Condition::ImagesOnly => self.images,
            Condition::None => self.none,
        }
    }
}

#[test]
fn euler_first_step_and_guidance_match_hand_computation() {
    let d = Default::default();
    let m = Linear3 { full: 0.5, images: 0.2, none: -0.1 };
    let x = seeded_noise::<B, 5>([1, 1, 2, 2, 2], 3, &d);
    let times = schedule(10, 1.0);
    let g = Guidance { text: 3.0, image: 1.5 };
    // v = v∅ + s_img (v_img − v∅) + s_txt (v_full − v_img), all ∝ x.
    let k = -0.1 + 1.5 * (0.2 - -0.1) + 3.0 * (0.5 - 0.2);
    let mut steps = vec![];
    let one = sample_euler(&m, x.clone(), &times[..2], g, true, |i, n| steps.push((i, n)));
    let want = x.clone() + x.clone() * (k * (times[1] - times[0]));
    assert!(close(one, want) < 1e-6);
    assert_eq!(steps, vec![(1, 1)]);
    // Without input images, the image scale is ignored: v_img + s_txt (v_full − v_img).
    let k2 = 0.2 + 3.0 * (0.5 - 0.2);
    let one = sample_euler(&m, x.clone(), &times[..2], g, false, |_, _| {});
    assert!(close(one, x.clone() + x.clone() * (k2 * -0.1)) < 1e-6);
    // Scales of 1 are plain conditional sampling; full runs are deterministic.
    let plain = sample_euler(&m, x.clone(), &times, Guidance { text: 1.0, image: 1.0 }, true, |_, _| {});
    let want: f64 = times.windows(2).map(|w| 1.0 + 0.5 * (w[1] - w[0])).product();
    assert!(close(plain.clone(), x.clone() * want) < 1e-5);
    let again = sample_euler(&m, x, &times, Guidance { text: 1.0, image: 1.0 }, true, |_, _| {});
    assert_eq!(close(plain, again), 0.0);
}

fn tiny_batch(n_inputs: usize, seed: u64) -> (unireal_model::DiT<B>, FlowBatch<B>) {
    let d = Default::default();
    let cfg = DiTConfig::tiny(12, 16);
    let model = cfg.init::<B>(&d);
    let text = seeded_noise::<B, 3>([2, 3, 16], seed, &d);
    let cond = DitConditioning {
        inputs: (n_inputs > 0).then(|| seeded_noise::<B, 5>([2, n_inputs, 12, 4, 4], seed + 1, &d)),
        input_roles: (n_inputs > 0).then(|| Tensor::<B, 2, Int>::full([2, n_inputs], ROLE_CANVAS, &d)),
        text: text.clone(),
        text_pad: None,
        hide_inputs: None,
        null_text: text.zeros_like(),
        null_text_pad: None,
        pooled: None,
        null_pooled: None,
        guidance: None,
    };
    let targets = seeded_noise::<B, 5>([2, 1, 12, 4, 4], seed + 2, &d);
    (model, FlowBatch { cond, targets, weights: None })
}

/// The loss is the MSE between the prediction for the output frames and ε − x₀ of the output
/// frames only: input frames are conditioning, never targets.
#[test]
fn loss_touches_only_output_tokens() {
    let d = Default::default();
    let (model, batch) = tiny_batch(2, 5);
    let noise = seeded_noise::<B, 5>([2, 1, 12, 4, 4], 11, &d);
    let t = t1(&[0.3, 0.8]);
    let got = dit_flow_loss(&model, batch.clone(), t.clone(), noise.clone());
    assert_eq!(got.per_sample.dims(), [2]);
    let x_t = interpolate(batch.targets.clone(), noise.clone(), t.clone());
    let pred = model.forward(unireal_model::DiTInput {
        inputs: batch.cond.inputs.clone(),
        input_roles: batch.cond.input_roles.clone(),
        outputs: x_t,
        t: t.clone(),
        text: batch.cond.text.clone(),
        text_pad: None,
        hide_inputs: None,
        pooled: None,
        guidance: None,
    });
    assert_eq!(pred.dims(), [2, 1, 12, 4, 4], "the model predicts output frames only");
    let want = (pred - (noise.clone() - batch.targets.clone())).powi_scalar(2).mean().into_scalar();
    assert!((got.loss.into_scalar() - want).abs() < 1e-6);
    // Weighted: a zero weight removes a sample.
    let w = FlowBatch { weights: Some(t1(&[1.0, 0.0])), ..batch };
    let l = dit_flow_loss(&model, w, t, noise);
    let first = l.per_sample.clone().narrow(0, 0, 1).into_scalar();
    assert!((l.loss.into_scalar() - first).abs() < 1e-6);
}

/// The DiT through the sampler: seeded, deterministic, guidance runs all three conditions.
#[test]
fn dit_sampling_is_deterministic() {
    let d = Default::default();
    let (model, batch) = tiny_batch(1, 7);
    let v = dit::DitVelocity { model: &model, cond: batch.cond };
    let run = || {
        let noise = seeded_noise::<B, 5>([2, 1, 12, 4, 4], 42, &d);
        sample_euler(&v, noise, &schedule(3, 1.0), Guidance::default(), true, |_, _| {})
    };
    let (a, b) = (run(), run());
    assert_eq!(close(a.clone(), b), 0.0);
    assert!(a.abs().max().into_scalar().is_finite());
}
