//! The training configuration: typed, with defaults, unknown keys rejected. Every key is
//! documented in docs/configuration.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_flow::{Guidance, TimeSampling};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// DiT preset: `tiny`, `small`, `base`, `unireal`.
    pub preset: String,
    #[serde(default)]
    pub latent: LatentConfig,
    #[serde(default)]
    pub text: TextConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatentConfig {
    /// Parameter-free: each factor×factor pixel block becomes 3·factor² channels.
    SpaceToDepth { factor: usize },
    /// A diffusers AutoencoderKL directory (config.json + diffusion_pytorch_model.safetensors), frozen.
    Vae { path: PathBuf },
}

impl Default for LatentConfig {
    fn default() -> Self {
        LatentConfig::SpaceToDepth { factor: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TextConfig {
    /// A small T5 encoder over UTF-8 bytes, trained with the DiT (no files needed).
    Bytes {
        #[serde(default = "default_bytes_width")]
        width: usize,
        #[serde(default = "default_bytes_layers")]
        layers: usize,
        #[serde(default = "default_max_len")]
        max_len: usize,
    },
    /// A Hugging Face T5 directory (config.json, tokenizer.json, model.safetensors), frozen.
    T5 {
        path: PathBuf,
        #[serde(default = "default_max_len")]
        max_len: usize,
    },
}

fn default_bytes_width() -> usize {
    64
}
fn default_bytes_layers() -> usize {
    2
}
fn default_max_len() -> usize {
    128
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig::Bytes { width: 64, layers: 2, max_len: 128 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A shard directory (with manifest.json).
    pub path: PathBuf,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub sources: Vec<SourceConfig>,
    /// Bucket area is about `resolution²` pixels.
    #[serde(default = "default_resolution")]
    pub resolution: u32,
    /// Width/height ratios of the buckets; each sample goes to the nearest (in log ratio).
    #[serde(default = "default_aspects")]
    pub aspect_ratios: Vec<f64>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Samples with more input or output images are skipped (and counted).
    #[serde(default = "default_max_inputs")]
    pub max_inputs: usize,
    #[serde(default = "default_max_outputs")]
    pub max_outputs: usize,
    /// Image-decoding threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Batches decoded ahead of the trainer.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Classifier-free-guidance dropout: probability that a sample's prompt is replaced by "".
    #[serde(default = "default_drop_text")]
    pub drop_text: f64,
    /// Probability that a batch's input images are dropped (the model sees outputs and text only).
    #[serde(default = "default_drop_images")]
    pub drop_images: f64,
    /// Data-parallel rank and world size (the loader keeps every world-th draw).
    #[serde(default)]
    pub rank: usize,
    #[serde(default = "one_usize")]
    pub world_size: usize,
}

fn default_resolution() -> u32 {
    256
}
fn default_aspects() -> Vec<f64> {
    vec![1.0, 4.0 / 3.0, 3.0 / 4.0, 16.0 / 9.0, 9.0 / 16.0]
}
fn default_batch() -> usize {
    4
}
fn default_max_inputs() -> usize {
    4
}
fn default_max_outputs() -> usize {
    2
}
fn default_workers() -> usize {
    2
}
fn default_prefetch() -> usize {
    4
}
fn default_drop_text() -> f64 {
    0.1
}
fn default_drop_images() -> f64 {
    0.05
}
fn one_usize() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    Constant {
        warmup: usize,
    },
    /// Linear warm-up, then cosine decay to `min_ratio · lr` at the last step.
    Cosine {
        warmup: usize,
        min_ratio: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub steps: usize,
    pub seed: u64,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    /// Global gradient-norm clip; 0 = off.
    pub grad_clip: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Data-parallel runs: gradients are all-reduced in buckets of this many MiB.
    pub allreduce_bucket_mb: f64,
    /// EMA decay per optimizer step; 0 = no EMA.
    pub ema_decay: f64,
    pub time_sampling: TimeSampling,
    /// Timestep shift: a number, or `auto` for Flux's resolution-dependent shift.
    pub shift: Shift,
    /// Loss weight per task name (default 1).
    pub task_weights: BTreeMap<String, f64>,
    /// Float type of weights and activations: `f32`, or `bf16` on the CUDA build.
    pub precision: Precision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    /// Everything in bfloat16 (weights, AdamW moments, EMA): half the memory, less precise
    /// updates. Burn 0.21 has no mixed precision.
    Bf16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Shift {
    Fixed(f64),
    Named(String),
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            steps: 1000,
            seed: 0,
            lr: 1e-4,
            schedule: LrSchedule::Cosine { warmup: 100, min_ratio: 0.1 },
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            grad_clip: 1.0,
            grad_accum: 1,
            allreduce_bucket_mb: 25.0,
            ema_decay: 0.999,
            time_sampling: TimeSampling::default(),
            shift: Shift::Fixed(1.0),
            task_weights: BTreeMap::new(),
            precision: Precision::F32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Validation loss every K steps (0 = never), over this many batches of the `val` split.
    pub val_every: usize,
    pub val_batches: usize,
    /// Sample grids every K steps (0 = never) from this many fixed validation samples.
    pub sample_every: usize,
    pub samples: usize,
    pub sample_steps: usize,
    pub guidance: Guidance,
    /// Sample with the EMA weights (when EMA is on).
    pub sample_ema: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            val_every: 100,
            val_batches: 4,
            sample_every: 500,
            samples: 4,
            sample_steps: 28,
            guidance: Guidance::default(),
            sample_ema: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every K steps (and at the end); 0 = only at the end.
    pub every: usize,
    /// Checkpoints kept (oldest removed first).
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 500, keep: 3 }
    }
}

impl TrainConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.data;
        if d.sources.is_empty() {
            return Err("data.sources: at least one shard directory is needed".into());
        }
        if let Some(s) = d.sources.iter().find(|s| !(s.weight > 0.0 && s.weight.is_finite())) {
            return Err(format!("data.sources: weight of {} must be positive", s.path.display()));
        }
        if d.batch_size == 0 || d.prefetch == 0 || d.workers == 0 {
            return Err("data.batch_size, data.prefetch and data.workers must be at least 1".into());
        }
        if d.aspect_ratios.is_empty() || d.aspect_ratios.iter().any(|a| a.is_nan() || *a <= 0.0) {
            return Err("data.aspect_ratios: a non-empty list of positive width/height ratios".into());
        }
        if d.world_size == 0 || d.rank >= d.world_size {
            return Err(format!("data.rank {} must be below data.world_size {}", d.rank, d.world_size));
        }
        for (k, p) in [("data.drop_text", d.drop_text), ("data.drop_images", d.drop_images)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{k}: {p} is not a probability"));
            }
        }
        let t = &self.train;
        if t.steps == 0 || t.grad_accum == 0 {
            return Err("train.steps and train.grad_accum must be at least 1".into());
        }
        if !(t.allreduce_bucket_mb > 0.0) {
            return Err("train.allreduce_bucket_mb: must be positive".into());
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return Err(format!("train.ema_decay: {} must be in [0, 1)", t.ema_decay));
        }
        if let Shift::Named(n) = &t.shift {
            if n != "auto" {
                return Err(format!("train.shift: `{n}` (a number or `auto`)"));
            }
        }
        if unireal_model::DiTConfig::preset(&self.model.preset, 12, 64).is_none() {
            return Err(format!("model.preset: `{}` (tiny, small, base, unireal)", self.model.preset));
        }
        Ok(())
    }
}
