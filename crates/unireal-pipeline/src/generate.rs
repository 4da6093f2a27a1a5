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

/// What to generate.
pub struct Request {
    pub prompts: Vec<String>,
    /// `[batch, n_inputs, 3, H, W]` in [−1, 1], or empty with `n_inputs = 0`.
    pub inputs: Vec<f32>,
    pub input_roles: Vec<i64>,
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub bucket: Bucket,
    pub steps: usize,
    pub shift: f64,
    pub guidance: Guidance,
    pub seed: u64,
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
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor<B, 5>> {
    let b = req.prompts.len();
    let (w, h) = (req.bucket.width as usize, req.bucket.height as usize);
    let (text, text_pad) = encode_text(model, frozen, cfg, &req.prompts, device, device, |t| t)?;
    let empty = vec![String::new(); b];
    let (null_text, null_pad) = encode_text(model, frozen, cfg, &empty, device, device, |t| t)?;
    let inputs = (req.n_inputs > 0).then(|| {
        let px = Tensor::<B, 5>::from_data(TensorData::new(req.inputs.clone(), [b, req.n_inputs, 3, h, w]), device);
        encode_frames(&frozen.latent, px)
    });
    let roles = (req.n_inputs > 0)
        .then(|| Tensor::<B, 2, Int>::from_data(TensorData::new(req.input_roles.clone(), [b, req.n_inputs]), device));
    let f = frozen.latent.factor();
    let c = frozen.latent.channels();
    let noise = seeded_noise::<B, 5>([b, req.n_outputs, c, h / f, w / f], req.seed, device);
    let v = DitVelocity {
        model: &model.dit,
        cond: DitConditioning {
            inputs,
            input_roles: roles,
            text,
            text_pad: Some(text_pad),
            hide_inputs: None,
            null_text,
            null_text_pad: Some(null_pad),
        },
    };
    let z = sample_euler(&v, noise, &schedule(req.steps, req.shift), req.guidance, req.n_inputs > 0, &mut on_step);
    Ok(decode_frames(&frozen.latent, z))
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
