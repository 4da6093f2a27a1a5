//! A trained checkpoint as inference and evaluation read it: the layout the trainer writes
//! (`RUN/checkpoints/step-NNNNNNNN/` with `model.safetensors`, `ema.safetensors`,
//! `state.json`, `config.yaml`), and the part of its config that running the model needs.
//! The trainer writes with these names and reads back its own records; nothing here knows
//! about optimizers or loaders.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Deserialize;
use unireal_flow::Guidance;

use crate::config::{ModelConfig, Shift};
use crate::error::{PipelineError, Result};
use crate::generate::tokens_per_frame;
use crate::image::{buckets, nearest_bucket, Bucket};
use crate::model::UniReal;

/// The raw weights, in PyTorch's layout.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// The EMA weights (when the run kept an EMA).
pub const EMA_WEIGHTS: &str = "ema.safetensors";
/// A LoRA run's adapters in diffusers' layout (`FluxPipeline.load_lora_weights` takes it).
pub const LORA_WEIGHTS: &str = "lora.safetensors";
/// The EMA of a LoRA run's adapters, in diffusers' layout.
pub const EMA_LORA_WEIGHTS: &str = "ema-lora.safetensors";
/// Written last: a directory with it is a finished checkpoint.
pub const STATE: &str = "state.json";
/// The run's resolved config.
pub const CONFIG: &str = "config.yaml";

/// The default bucket resolution and aspect ratios of training (`data.resolution`,
/// `data.aspect_ratios`): inference of a checkpoint picks its buckets the same way.
pub const DEFAULT_RESOLUTION: u32 = 256;
pub fn default_aspect_ratios() -> Vec<f64> {
    vec![1.0, 4.0 / 3.0, 3.0 / 4.0, 16.0 / 9.0, 9.0 / 16.0]
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn checkpoint_name(step: usize) -> String {
    format!("step-{step:08}")
}

/// Finished checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join(STATE).is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

pub fn latest(run: &Path) -> Option<(usize, PathBuf)> {
    list(run).pop()
}

/// What running a checkpoint's model needs from its `config.yaml` (the trainer's full
/// config; other keys are ignored here).
#[derive(Debug, Clone, Deserialize)]
pub struct RunConfig {
    pub model: ModelConfig,
    #[serde(default)]
    pub data: RunData,
    #[serde(default)]
    pub train: RunTrain,
    #[serde(default)]
    pub log: RunLog,
}

/// How the run's sample grids were drawn: inference's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RunLog {
    pub sample_steps: usize,
    pub guidance: Guidance,
    /// `log.infer_resolution`: the bucket resolution of inference's default output size
    /// (None: `data.resolution`).
    pub infer_resolution: Option<u32>,
}

impl Default for RunLog {
    fn default() -> Self {
        RunLog {
            sample_steps: crate::generate::DEFAULT_SAMPLE_STEPS,
            guidance: Guidance::default(),
            infer_resolution: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RunData {
    pub resolution: u32,
    pub aspect_ratios: Vec<f64>,
}

impl Default for RunData {
    fn default() -> Self {
        RunData { resolution: DEFAULT_RESOLUTION, aspect_ratios: default_aspect_ratios() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunTrain {
    pub shift: Shift,
    /// A LoRA run: its checkpoints hold adapters for the DiT of `model.init_from`.
    pub lora: Option<unireal_model::LoraConfig>,
}

/// A finished checkpoint directory and its config.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: RunConfig,
}

impl Checkpoint {
    /// `path` is a checkpoint directory, or a run directory (its latest checkpoint).
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let dir = if path.join(STATE).is_file() {
            path.to_path_buf()
        } else {
            latest(path).map(|c| c.1).ok_or_else(|| PipelineError::NotACheckpoint(path.to_path_buf()))?
        };
        let cfg_path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|source| PipelineError::Read { path: cfg_path.clone(), source })?;
        let config = serde_yaml::from_str(&text)
            .map_err(|e| PipelineError::CheckpointConfig { path: cfg_path, message: e.to_string() })?;
        Ok(Checkpoint { dir, config })
    }

    /// The weights file used: the EMA's when asked for and present, else the raw weights; for
    /// a LoRA run, its adapters in diffusers' layout.
    pub fn weights(&self, ema: bool) -> PathBuf {
        let (raw, averaged) = match self.config.train.lora {
            Some(_) => (LORA_WEIGHTS, EMA_LORA_WEIGHTS),
            None => (MODEL_WEIGHTS, EMA_WEIGHTS),
        };
        let e = self.dir.join(averaged);
        if ema && e.is_file() {
            e
        } else {
            self.dir.join(raw)
        }
    }

    /// The trained module with [`Checkpoint::weights`]; for a LoRA run, the DiT of
    /// `model.init_from` with the adapters merged into its weights.
    pub fn load_model<B: Backend>(&self, ema: bool, device: &B::Device) -> Result<UniReal<B>> {
        if self.config.train.lora.is_none() {
            return self.config.model.load(&self.weights(ema), device);
        }
        let model = self.config.model.init::<B>(device)?;
        Ok(crate::model::merge_lora(model, &self.config.model, &self.weights(ema))?.0)
    }

    /// The bucket nearest to `w × h` (the first bucket without a size) of the training
    /// buckets' aspect ratios at `log.infer_resolution` (default: the training resolution).
    pub fn bucket_for(&self, size: Option<(u32, u32)>) -> Result<Bucket> {
        let d = &self.config.data;
        let resolution = self.config.log.infer_resolution.unwrap_or(d.resolution);
        let all = buckets(resolution, &d.aspect_ratios, self.config.model.pixel_align()?);
        let i = size.map(|(w, h)| nearest_bucket(&all, w, h)).unwrap_or(0);
        all.get(i).copied().ok_or_else(|| PipelineError::CheckpointConfig {
            path: self.dir.join(CONFIG),
            message: "data.aspect_ratios is empty".into(),
        })
    }

    /// The sampling shift the run trained with, for a bucket.
    pub fn shift(&self, bucket: Bucket) -> Result<f64> {
        let (_, factor) = self.config.model.latent_shape()?;
        let patch = self.config.model.dit_config()?.patch;
        Ok(self.config.train.shift.for_tokens(tokens_per_frame(bucket, factor, patch)))
    }
}

/// Sampler settings a caller may override; `None` takes the run's (`log.sample_steps`,
/// `log.guidance`) or the default distilled guidance.
#[derive(Debug, Clone, Default)]
pub struct SamplerSettings {
    pub steps: Option<usize>,
    pub seed: u64,
    pub text_guidance: Option<f64>,
    pub image_guidance: Option<f64>,
    pub distilled_guidance: Option<f64>,
    /// Output frames per sample (at least 1).
    pub outputs: usize,
    /// The starting noise instead of the seed's (see [`crate::Request::noise`]).
    pub noise: Option<Vec<f32>>,
}

/// A request built by [`Checkpoint::request`], with what it did to the inputs and the prompt.
pub struct PreparedRequest {
    pub request: crate::Request,
    /// How the inputs were fitted to the bucket (apply it to a target to compare).
    pub fit: crate::image::SampleFit,
    pub prompt: crate::prompt::FittedPrompt,
}

impl Checkpoint {
    /// The bucket inputs sample at unless a size is given, as training picks a sample's: that
    /// of the first canvas or control image (the frame the output is aligned with), else of
    /// the first image; the first bucket for text-to-image.
    pub fn bucket_for_inputs(&self, inputs: &[(unireal_core::ImageRole, &image::RgbImage)]) -> Result<Bucket> {
        let sizes = inputs.iter().map(|(r, i)| (*r, i.dimensions()));
        self.bucket_for(crate::image::SampleFit::reference(sizes).or(inputs.first().map(|(_, i)| i.dimensions())))
    }

    /// One sample's request (a batch of one) with this run's sampler settings: the inputs
    /// fitted to `bucket` as training fits them (canvas and control cropped alike, assets
    /// letterboxed on white), the prompt assembled as training assembles it (the instruction
    /// kept, the context giving way when the text encoder's limit is reached).
    pub fn request<B: Backend>(
        &self,
        frozen: &crate::Frozen<B>,
        inputs: &[(unireal_core::ImageRole, &image::RgbImage)],
        base_prompt: &str,
        context: &str,
        bucket: Bucket,
        settings: &SamplerSettings,
    ) -> Result<PreparedRequest> {
        let prompt = crate::model::fit_prompt(&self.config.model, frozen, context, base_prompt);
        let fit = crate::image::SampleFit::new(bucket, inputs.iter().map(|(r, i)| (*r, i.dimensions())));
        let pixels: Vec<f32> =
            inputs.iter().flat_map(|(r, img)| crate::image::image_to_chw(&fit.apply(img, *r))).collect();
        let log = &self.config.log;
        let request = crate::Request {
            prompts: vec![prompt.text.clone()],
            inputs: pixels,
            input_roles: inputs.iter().map(|(r, _)| crate::prompt::role_index(*r)).collect(),
            n_inputs: inputs.len(),
            n_outputs: settings.outputs.max(1),
            bucket,
            steps: settings.steps.unwrap_or(log.sample_steps),
            shift: self.shift(bucket)?,
            guidance: unireal_flow::Guidance {
                text: settings.text_guidance.unwrap_or(log.guidance.text),
                image: settings.image_guidance.unwrap_or(log.guidance.image),
            },
            distilled_guidance: settings.distilled_guidance.unwrap_or(crate::DEFAULT_DISTILLED_GUIDANCE),
            seed: settings.seed,
            noise: settings.noise.clone(),
        };
        Ok(PreparedRequest { request, fit, prompt })
    }
}
