//! Sampling from a (trained) model: prompts + input images → output images. The one entry
//! point the trainer's sample grids, `unireal-infer` and evaluation use.

use burn::prelude::*;
use unireal_flow::dit::{DitConditioning, DitVelocity};
use unireal_flow::{sample_euler, schedule, seeded_noise, Guidance};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::image::Bucket;
use crate::model::{encode_text, Frozen, UniReal};

/// Euler steps of a sample unless configured (`log.sample_steps`, `unireal-infer --steps`).
pub const DEFAULT_SAMPLE_STEPS: usize = 28;

/// FLUX.1-dev's distilled guidance when sampling (diffusers' `FluxPipeline` `guidance_scale`).
pub const DEFAULT_DISTILLED_GUIDANCE: f64 = 3.5;

/// What to generate.
pub struct Request {
    pub prompts: Vec<String>,
    /// `[batch, n_inputs, 3, H, W]` in [−1, 1], or empty with `n_inputs = 0`.
    pub inputs: Vec<f32>,
    /// `[batch, n_inputs]` role indices; empty: no role embeddings (an ablation).
    pub input_roles: Vec<i64>,
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub bucket: Bucket,
    pub steps: usize,
    pub shift: f64,
    pub guidance: Guidance,
    /// Fed to a DiT with `guidance_in` (FLUX.1-dev); ignored by others.
    pub distilled_guidance: f64,
    pub seed: u64,
    /// The starting noise `[batch, n_outputs, c, H/f, W/f]` instead of the seed's.
    pub noise: Option<Vec<f32>>,
}

/// Image tokens per frame of a bucket: latent pixels per side divided by the patch.
pub fn tokens_per_frame(bucket: Bucket, latent_factor: usize, patch: usize) -> usize {
    let per = |s: u32| s as usize / latent_factor / patch;
    per(bucket.width) * per(bucket.height)
}

/// Runs the sampler; returns the outputs' pixels.
///
/// # Shapes
/// - returns `[batch, n_outputs, 3, H, W]` in [−1, 1]
pub fn generate<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &ModelConfig,
    req: &Request,
    device: &B::Device,
    on_step: impl FnMut(usize, usize),
) -> Result<Tensor<B, 5>> {
    let z = generate_latents(model, frozen, cfg, req, device, on_step)?;
    Ok(decode_frames(&frozen.latent, z))
}

/// Runs the sampler; returns the outputs' final latents, in the latent space the DiT works in
/// (a VAE's scaled and shifted one), before decoding.
///
/// # Shapes
/// - returns `[batch, n_outputs, c, H/f, W/f]`
pub fn generate_latents<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &ModelConfig,
    req: &Request,
    device: &B::Device,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor<B, 5>> {
    let b = req.prompts.len();
    let (w, h) = (req.bucket.width as usize, req.bucket.height as usize);
    let text = encode_text(model, frozen, cfg, &req.prompts, device, device, |t| t)?;
    let empty = vec![String::new(); b];
    let null = if req.guidance.uses_null_text(req.n_inputs > 0) {
        Some(encode_text(model, frozen, cfg, &empty, device, device, |t| t)?)
    } else {
        None
    };
    let inputs = (req.n_inputs > 0).then(|| {
        let px = Tensor::<B, 5>::from_data(TensorData::new(req.inputs.clone(), [b, req.n_inputs, 3, h, w]), device);
        encode_frames(&frozen.latent, px)
    });
    // No roles for the inputs: the DiT leaves the role embeddings out (an ablation).
    let roles = (req.n_inputs > 0 && !req.input_roles.is_empty())
        .then(|| Tensor::<B, 2, Int>::from_data(TensorData::new(req.input_roles.clone(), [b, req.n_inputs]), device));
    let f = frozen.latent.factor();
    let c = frozen.latent.channels();
    let shape = [b, req.n_outputs, c, h / f, w / f];
    let noise = match &req.noise {
        Some(n) => {
            if n.len() != shape.iter().product::<usize>() {
                return Err(crate::PipelineError::Tensor(format!(
                    "the starting noise has {} values, the outputs' latents {shape:?} take {}",
                    n.len(),
                    shape.iter().product::<usize>()
                )));
            }
            Tensor::<B, 5>::from_data(TensorData::new(n.clone(), shape), device)
        }
        None => seeded_noise::<B, 5>(shape, req.seed, device),
    };
    let guidance = model.dit.guidance_in.is_some().then(|| Tensor::<B, 1>::full([b], req.distilled_guidance, device));
    let (null_text, null_text_pad, null_pooled) = match null {
        Some(n) => (n.states, n.pad, n.pooled),
        None => (text.states.clone(), text.pad.clone(), text.pooled.clone()),
    };
    let v = DitVelocity {
        model: &model.dit,
        cond: DitConditioning {
            inputs,
            input_roles: roles,
            text: text.states,
            text_pad: text.pad,
            hide_inputs: None,
            null_text,
            null_text_pad,
            pooled: text.pooled,
            null_pooled,
            guidance,
        },
    };
    Ok(sample_euler(&v, noise, &schedule(req.steps, req.shift), req.guidance, req.n_inputs > 0, &mut on_step))
}

/// [`generate`], its outputs brought to the host as `[batch, n_outputs, 3, H, W]` floats.
pub fn generate_pixels<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &ModelConfig,
    req: &Request,
    device: &B::Device,
    on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let out = generate(model, frozen, cfg, req, device, on_step)?;
    Ok(out.into_data().convert::<f32>().to_vec()?)
}

/// Pixels → latents frame by frame.
///
/// # Shapes
/// - x: `[batch, frames, 3, H, W]` → `[batch, frames, c, H/f, W/f]`
pub fn encode_frames<B: Backend>(latent: &unireal_model::Latent<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, n, _, h, w] = x.dims();
    let z = latent.encode(x.reshape([b * n, 3, h, w]));
    let [_, c, lh, lw] = z.dims();
    z.reshape([b, n, c, lh, lw])
}

/// Latents → pixels frame by frame.
///
/// # Shapes
/// - z: `[batch, frames, c, h, w]` → `[batch, frames, 3, h·f, w·f]`
pub fn decode_frames<B: Backend>(latent: &unireal_model::Latent<B>, z: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, n, c, h, w] = z.dims();
    let x = latent.decode(z.reshape([b * n, c, h, w]));
    let [_, _, ph, pw] = x.dims();
    x.reshape([b, n, 3, ph, pw])
}
