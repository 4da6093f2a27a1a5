//! Sampling from a (trained) model: prompts + input images → output images, and the PNG grids
//! the trainer writes (inputs | output | target).

use std::path::Path;

use burn::prelude::*;
use unireal_flow::dit::{DitConditioning, DitVelocity};
use unireal_flow::{sample_euler, schedule, seeded_noise, Guidance};

use crate::config::ModelConfig;
use crate::data::Bucket;
use crate::model::{encode_text, Frozen, UniReal};

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

/// Runs the sampler; returns the outputs' pixels `[batch, n_outputs, 3, H, W]` in [−1, 1].
pub fn generate<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &ModelConfig,
    req: &Request,
    device: &B::Device,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor<B, 5>, String> {
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
            null_text,
            null_text_pad: Some(null_pad),
        },
    };
    let z = sample_euler(&v, noise, &schedule(req.steps, req.shift), req.guidance, req.n_inputs > 0, &mut on_step);
    Ok(decode_frames(&frozen.latent, z))
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

/// `[3, H, W]` floats in [−1, 1] → an RGB image.
pub fn chw_to_image(px: &[f32], w: u32, h: u32) -> image::RgbImage {
    let plane = (w * h) as usize;
    image::RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let v = |c: usize| ((px[c * plane + i].clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// Writes a PNG under a temporary name, then renames it.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<(), String> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    unireal_core::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// One row per sample: its input frames, the generated output(s), the target(s), left to right.
pub fn grid(rows: &[Vec<image::RgbImage>], cell: (u32, u32)) -> image::RgbImage {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let pad = 2;
    let (w, h) = (cols * (cell.0 + pad) + pad, rows.len() as u32 * (cell.1 + pad) + pad);
    let mut out = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            image::imageops::replace(
                &mut out,
                img,
                (pad + c as u32 * (cell.0 + pad)) as i64,
                (pad + r as u32 * (cell.1 + pad)) as i64,
            );
        }
    }
    out
}
