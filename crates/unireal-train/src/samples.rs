//! Sample grids: `RUN/samples/step-N.png`, one row per fixed sample: inputs | output | target.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use unireal_pipeline::image::{chw_to_image, grid, save_png};
use unireal_pipeline::{generate_pixels, tokens_per_frame, Frozen, Request, UniReal};

use crate::config::TrainConfig;
use crate::data::Batch;
use crate::error::{Result, TrainError};

/// What to sample for the first `cfg.log.samples` rows of `batch`: the run's sampler
/// settings (`log.sample_steps`, `log.guidance`, the shift for the bucket, `train.seed`).
pub fn request(cfg: &TrainConfig, batch: &Batch, latent_factor: usize, patch: usize) -> Request {
    let n = cfg.log.samples.max(1).min(batch.len());
    let plane = (3 * batch.bucket.width * batch.bucket.height) as usize;
    Request {
        prompts: batch.prompts[..n].to_vec(),
        inputs: batch.inputs[..n * batch.n_inputs * plane].to_vec(),
        input_roles: batch.input_roles[..n * batch.n_inputs].to_vec(),
        n_inputs: batch.n_inputs,
        n_outputs: batch.n_outputs,
        bucket: batch.bucket,
        steps: cfg.log.sample_steps,
        shift: cfg.train.shift.for_tokens(tokens_per_frame(batch.bucket, latent_factor, patch)),
        guidance: cfg.log.guidance,
        distilled_guidance: unireal_pipeline::DEFAULT_DISTILLED_GUIDANCE,
        seed: cfg.train.seed,
        noise: None,
    }
}

/// Samples from the fixed batch and writes `RUN/samples/step-N.png`; returns its path.
pub fn write_samples<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &TrainConfig,
    batch: &Batch,
    step: usize,
    run: &Path,
    device: &B::Device,
) -> Result<PathBuf> {
    let req = request(cfg, batch, frozen.latent.factor(), model.dit.patch);
    let out = generate_pixels(model, frozen, &cfg.model, &req, device, |_, _| {})?;
    let (w, h) = (batch.bucket.width, batch.bucket.height);
    let plane = (3 * w * h) as usize;
    let frame = |px: &[f32], k: usize| chw_to_image(&px[k * plane..(k + 1) * plane], w, h);
    let rows: Vec<Vec<image::RgbImage>> = (0..req.prompts.len())
        .map(|i| {
            let inputs = (0..batch.n_inputs).map(|k| frame(&batch.inputs, i * batch.n_inputs + k));
            let outputs = (0..batch.n_outputs).map(|k| frame(&out, i * batch.n_outputs + k));
            let targets = (0..batch.n_outputs).map(|k| frame(&batch.outputs, i * batch.n_outputs + k));
            inputs.chain(outputs).chain(targets).collect()
        })
        .collect();
    let dir = run.join("samples");
    std::fs::create_dir_all(&dir).map_err(|source| TrainError::Write { path: dir.clone(), source })?;
    let path = dir.join(format!("step-{step:08}.png"));
    save_png(&grid(&rows, (w, h)), &path)?;
    Ok(path)
}
