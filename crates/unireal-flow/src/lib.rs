//! Rectified flow for UniReal, as free functions over a small [`VelocityModel`] trait (the
//! shape of candle's `models/flux/sampling.rs`).
//!
//! **Convention (the only place it is written): t = 1 is noise, t = 0 is data.**
//! `x_t = (1 − t)·x₀ + t·ε`, and the model predicts the velocity `v = dx_t/dt = ε − x₀`.
//! Sampling integrates from t = 1 down to t = 0 with Euler steps `x ← x + (t_next − t)·v`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub mod dit;
pub mod rng;

pub use rng::Rng;

/// `x_t = (1 − t)·x₀ + t·ε`, t broadcast per sample.
///
/// # Shapes
/// - x0, noise: `[batch, ...]` (D dims); t: `[batch]`
pub fn interpolate<B: Backend, const D: usize>(x0: Tensor<B, D>, noise: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
    let t: Tensor<B, D> = per_sample(t);
    x0 * (t.clone().neg() + 1.0) + noise * t
}

/// The regression target `ε − x₀`.
pub fn velocity_target<B: Backend, const D: usize>(x0: Tensor<B, D>, noise: Tensor<B, D>) -> Tensor<B, D> {
    noise - x0
}

/// Recovers x₀ from a point on the path and a velocity: `x₀ = x_t − t·v`.
pub fn predict_x0<B: Backend, const D: usize>(x_t: Tensor<B, D>, v: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
    x_t - v * per_sample(t)
}

/// `[batch]` → `[batch, 1, …, 1]` for broadcasting.
fn per_sample<B: Backend, const D: usize>(t: Tensor<B, 1>) -> Tensor<B, D> {
    let b = t.dims()[0];
    let mut shape = [1usize; D];
    shape[0] = b;
    t.reshape(shape)
}

/// Mean squared error over the predicted (output) tokens only, optionally weighted per sample
/// (e.g. per-task loss weights); the weights are normalised by their sum.
///
/// # Shapes
/// - pred, target: `[batch, ...]`; weights: `[batch]` → scalar `[1]`
pub fn flow_loss<B: Backend, const D: usize>(
    pred: Tensor<B, D>,
    target: Tensor<B, D>,
    weights: Option<Tensor<B, 1>>,
) -> Tensor<B, 1> {
    weighted_mean(per_sample_mse(pred, target), weights)
}

/// Mean of per-sample losses, weighted (normalised by the weights' sum) or plain.
pub fn weighted_mean<B: Backend>(per_sample: Tensor<B, 1>, weights: Option<Tensor<B, 1>>) -> Tensor<B, 1> {
    match weights {
        None => per_sample.mean(),
        Some(w) => (per_sample * w.clone()).sum() / w.sum().clamp_min(1e-12),
    }
}

/// Mean squared error of each sample, `[batch]`.
pub fn per_sample_mse<B: Backend, const D: usize>(pred: Tensor<B, D>, target: Tensor<B, D>) -> Tensor<B, 1> {
    let b = pred.dims()[0];
    (pred - target).square().reshape([b as i32, -1]).mean_dim(1).reshape([b])
}

/// How training draws t.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeSampling {
    /// t ~ U(0, 1).
    Uniform,
    /// t = sigmoid(m + s·n), n ~ N(0, 1) (SD3's default is m = 0, s = 1).
    LogitNormal { mean: f64, std: f64 },
    /// SD3's mode sampling with heavy tails: t = 1 − u − scale·(cos²(πu/2) − 1 + u).
    Mode { scale: f64 },
}

impl Default for TimeSampling {
    fn default() -> Self {
        TimeSampling::LogitNormal { mean: 0.0, std: 1.0 }
    }
}

/// Draws `n` times in (0, 1) from `rng`, then applies the resolution shift `shift` (1 = none).
pub fn sample_t(kind: &TimeSampling, n: usize, shift: f64, rng: &mut Rng) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = match kind {
                TimeSampling::Uniform => rng.uniform(),
                TimeSampling::LogitNormal { mean, std } => sigmoid(mean + std * rng.normal()),
                TimeSampling::Mode { scale } => {
                    let u = rng.uniform();
                    1.0 - u - scale * ((std::f64::consts::PI * u / 2.0).cos().powi(2) - 1.0 + u)
                }
            };
            shift_t(t.clamp(0.0, 1.0), shift)
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// SD3's timestep shift: `t' = s·t / (1 + (s − 1)·t)`; s > 1 spends more time near noise,
/// which larger images need.
pub fn shift_t(t: f64, shift: f64) -> f64 {
    shift * t / (1.0 + (shift - 1.0) * t)
}

/// The resolution-dependent shift of Flux (`get_lin_function(x1=256, y1=0.5, x2=4096,
/// y2=1.15)`, used as `exp(mu)`): linear in the number of image tokens between two anchors.
pub fn resolution_shift(image_tokens: usize, base: (usize, f64), max: (usize, f64)) -> f64 {
    let (x1, y1) = (base.0 as f64, base.1);
    let (x2, y2) = (max.0 as f64, max.1);
    let m = (y2 - y1) / (x2 - x1);
    let mu = m * image_tokens as f64 + (y1 - m * x1);
    mu.exp()
}

/// Flux's default anchors for [`resolution_shift`].
pub const FLUX_SHIFT_ANCHORS: ((usize, f64), (usize, f64)) = ((256, 0.5), (4096, 1.15));

/// The sampling schedule: `steps + 1` times from 1 to 0, shifted by `shift`.
pub fn schedule(steps: usize, shift: f64) -> Vec<f64> {
    (0..=steps).map(|i| shift_t(1.0 - i as f64 / steps as f64, shift)).collect()
}

/// What a model call is conditioned on, for classifier-free guidance over text and images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Text and input images.
    Full,
    /// Input images, empty text.
    ImagesOnly,
    /// Neither: empty text, and the input images hidden from every query (they keep their
    /// place in the sequence, as when training drops a sample's images).
    None,
}

/// A velocity predictor: the network plus whatever conditioning it closes over.
pub trait VelocityModel<B: Backend> {
    /// # Shapes
    /// - x_t: `[batch, outputs, channels, height, width]`; t: `[batch]` → same shape as x_t
    fn velocity(&self, x_t: Tensor<B, 5>, t: Tensor<B, 1>, condition: Condition) -> Tensor<B, 5>;
}

/// Guidance scales; 1.0 for both is plain conditional sampling (one model call per step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    pub text: f64,
    pub image: f64,
}

impl Guidance {
    /// Whether [`guided_velocity`] evaluates a branch without the text (so the empty
    /// prompt's encoding is needed).
    pub fn uses_null_text(&self, has_images: bool) -> bool {
        !(self.text == 1.0 && (self.image == 1.0 || !has_images))
    }
}

impl Default for Guidance {
    fn default() -> Self {
        Guidance { text: 3.0, image: 1.6 }
    }
}

/// OmniGen's three-way guidance:
/// `v = v_∅ + s_img·(v_img − v_∅) + s_txt·(v_full − v_img)`. With `s_img = 1` it is the
/// two-way text guidance `v_img + s_txt·(v_full − v_img)`, with both 1 it is `v_full`.
pub fn guided_velocity<B: Backend, M: VelocityModel<B>>(
    model: &M,
    x: Tensor<B, 5>,
    t: Tensor<B, 1>,
    g: Guidance,
    has_images: bool,
) -> Tensor<B, 5> {
    let full = model.velocity(x.clone(), t.clone(), Condition::Full);
    if !g.uses_null_text(has_images) {
        return full;
    }
    let img = model.velocity(x.clone(), t.clone(), Condition::ImagesOnly);
    if !has_images || g.image == 1.0 {
        return img.clone() + (full - img) * g.text;
    }
    let none = model.velocity(x, t, Condition::None);
    none.clone() + (img.clone() - none) * g.image + (full - img) * g.text
}

/// Euler sampling from pure noise at t = 1 to data at t = 0 over `times` (see [`schedule`]).
/// Deterministic for a given `noise`.
///
/// # Shapes
/// - noise: `[batch, outputs, channels, height, width]` → same
pub fn sample_euler<B: Backend, M: VelocityModel<B>>(
    model: &M,
    noise: Tensor<B, 5>,
    times: &[f64],
    guidance: Guidance,
    has_images: bool,
    mut on_step: impl FnMut(usize, usize),
) -> Tensor<B, 5> {
    let b = noise.dims()[0];
    let device = noise.device();
    let mut x = noise;
    let steps = times.len().saturating_sub(1);
    for (i, w) in times.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let tt = Tensor::<B, 1>::full([b], t, &device);
        let v = guided_velocity(model, x.clone(), tt, guidance, has_images);
        x = x + v * (t_next - t);
        on_step(i + 1, steps);
    }
    x
}

/// Seeded standard-normal noise, identical on every backend.
pub fn seeded_noise<B: Backend, const D: usize>(shape: [usize; D], seed: u64, device: &B::Device) -> Tensor<B, D> {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}
