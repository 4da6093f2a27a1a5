//! The copy task: the output is its own canvas. A model that reads its inputs solves it at
//! once, so its clean-image estimate at t = 1 (pure noise, where sampling starts) is the
//! canvas; a per-patch denoiser that ignores its inputs can do no better than the mean image.
//! This is the diagnostic that would have caught the demo's noise (issue 13): trained from
//! `LookupInit`, the tiny DiT must beat the mean-colour image clearly within 200 CPU steps, on
//! crops of a photograph it never trained on.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use unireal_model::dit::{DiTInput, ROLE_CANVAS};
use unireal_model::init::LookupInit;
use unireal_model::vae::{depth_to_space, space_to_depth};
use unireal_model::{DiT, DiTConfig};

type AB = Autodiff<NdArray>;

const SIDE: u32 = 24;
const BATCH: usize = 4;
const STEPS: usize = 200;

/// xorshift64*: uniform in (0, 1), and standard normals by Box–Muller.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}

/// A sample photograph scaled to 64 px on its short side.
fn photo(name: &str) -> image::RgbImage {
    let path = format!("{}/../../datasets/samples/images/{name}", env!("CARGO_MANIFEST_DIR"));
    let img = image::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (w, h) = (img.width(), img.height());
    let s = 64.0 / w.min(h) as f64;
    img.resize_exact(
        (w as f64 * s).round() as u32,
        (h as f64 * s).round() as u32,
        image::imageops::FilterType::Triangle,
    )
    .to_rgb8()
}

/// A random SIDE×SIDE crop as `[3, SIDE, SIDE]` in [−1, 1].
fn crop(img: &image::RgbImage, rng: &mut Rng) -> Vec<f32> {
    let x = (rng.uniform() * (img.width() - SIDE) as f64) as u32;
    let y = (rng.uniform() * (img.height() - SIDE) as f64) as u32;
    let view = image::imageops::crop_imm(img, x, y, SIDE, SIDE).to_image();
    let s = SIDE as usize;
    let mut chw = vec![0f32; 3 * s * s];
    for (i, p) in view.pixels().enumerate() {
        for c in 0..3 {
            chw[c * s * s + i] = p.0[c] as f32 / 127.5 - 1.0;
        }
    }
    chw
}

/// Crops as space-to-depth latents `[b, 1, 12, SIDE/2, SIDE/2]`.
fn latents<Bk: Backend>(crops: &[Vec<f32>], device: &Bk::Device) -> Tensor<Bk, 5> {
    let s = SIDE as usize;
    let px = Tensor::<Bk, 4>::from_data(TensorData::new(crops.concat(), [crops.len(), 3, s, s]), device);
    space_to_depth(px, 2).unsqueeze_dim(1)
}

fn forward<Bk: Backend>(model: &DiT<Bk>, canvas: Tensor<Bk, 5>, x_t: Tensor<Bk, 5>, t: Tensor<Bk, 1>) -> Tensor<Bk, 5> {
    let (b, device) = (canvas.dims()[0], canvas.device());
    model.forward(DiTInput {
        inputs: Some(canvas),
        input_roles: Some(Tensor::full([b, 1], ROLE_CANVAS, &device)),
        outputs: x_t,
        t,
        text: Tensor::zeros([b, 1, 32], &device),
        text_pad: None,
        hide_inputs: None,
        pooled: None,
        guidance: None,
    })
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64 / 2.0).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// PSNR of the clean-image estimate at t = 1 (`x̂₀ = z − v̂`) and of each crop's mean colour,
/// over fixed held-out crops and fixed noise.
fn evaluate(model: &DiT<NdArray>, held_out: &[Vec<f32>]) -> (f64, f64) {
    let device = Default::default();
    let canvas = latents::<NdArray>(held_out, &device);
    let mut rng = Rng(99);
    let z = Tensor::<NdArray, 5>::from_data(
        TensorData::new(rng.normals(canvas.shape().num_elements()), canvas.dims()),
        &device,
    );
    let t = Tensor::ones([held_out.len()], &device);
    let est = z.clone() - forward(model, canvas, z, t);
    let [b, _, c, h, w] = est.dims();
    let px = depth_to_space(est.reshape([b, c, h, w]), 2).into_data().to_vec::<f32>().unwrap();
    let truth = held_out.concat();
    let s = (SIDE * SIDE) as usize;
    let mean: Vec<f32> = truth
        .chunks(s)
        .flat_map(|plane| {
            let m = plane.iter().sum::<f32>() / s as f32;
            std::iter::repeat_n(m, s)
        })
        .collect();
    (psnr(&px, &truth), psnr(&mean, &truth))
}

#[test]
fn the_tiny_dit_learns_to_copy_its_canvas() {
    let device = Default::default();
    let train: Vec<image::RgbImage> = ["chelsea.png", "coffee.png", "horse.png", "rocket.jpg"].map(photo).to_vec();
    let astronaut = photo("astronaut.png");
    let mut rng = Rng(7);
    let held_out: Vec<Vec<f32>> = (0..8).map(|_| crop(&astronaut, &mut rng)).collect();

    let mut model = LookupInit::new().apply(DiTConfig::tiny(12, 32).init::<AB>(&device));
    let (before, mean) = evaluate(&model.valid(), &held_out);
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let crops: Vec<Vec<f32>> =
            (0..BATCH).map(|i| crop(&train[(step * BATCH + i) % train.len()], &mut rng)).collect();
        let x0 = latents::<AB>(&crops, &device);
        let z = Tensor::<AB, 5>::from_data(TensorData::new(rng.normals(x0.shape().num_elements()), x0.dims()), &device);
        // Logit-normal t, as the trainer's default.
        let t: Vec<f32> = (0..BATCH).map(|_| 1.0 / (1.0 + (-rng.normal()).exp()) as f32).collect();
        let t = Tensor::<AB, 1>::from_data(TensorData::new(t, [BATCH]), &device);
        let t5 = t.clone().reshape([BATCH, 1, 1, 1, 1]);
        let x_t = x0.clone() * (t5.clone().neg() + 1.0) + z.clone() * t5;
        let loss = (forward(&model, x0.clone(), x_t, t) - (z - x0)).square().mean();
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = 5e-4 * ((step + 1) as f64 / 20.0).min(1.0);
        model = optim.step(lr, model, grads);
    }
    let (after, _) = evaluate(&model.valid(), &held_out);
    println!(
        "copy task, {STEPS} steps: loss {:.3} -> {:.3}; estimate at t = 1: {before:.1} -> {after:.1} dB, mean colour {mean:.1} dB",
        losses[..10].iter().sum::<f32>() / 10.0,
        losses[STEPS - 10..].iter().sum::<f32>() / 10.0,
    );
    assert!(
        after >= mean + 3.0,
        "the estimate at t = 1 ({after:.1} dB) does not beat the mean colour ({mean:.1} dB) by 3 dB"
    );
}
