//! The training configuration: typed, with defaults, unknown keys rejected. Every key is
//! documented in docs/configuration.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_flow::{Guidance, TimeSampling};
pub use unireal_pipeline::config::{BytesText, LatentConfig, ModelConfig, Shift, T5Text, TextConfig};

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
pub struct SourceConfig {
    /// A shard directory (with manifest.json).
    pub path: PathBuf,
    /// Relative draw probability of this source.
    #[serde(default = "SourceConfig::default_weight")]
    pub weight: f64,
}

impl SourceConfig {
    fn default_weight() -> f64 {
        1.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Shard directories (each with manifest.json), mixed by weight; at least one.
    pub sources: Vec<SourceConfig>,
    /// Bucket area is about `resolution²` pixels.
    pub resolution: u32,
    /// Width/height ratios of the buckets; each sample goes to the nearest (in log ratio).
    pub aspect_ratios: Vec<f64>,
    pub batch_size: usize,
    /// Samples with more input or output images are skipped (and counted).
    pub max_inputs: usize,
    pub max_outputs: usize,
    /// Image-decoding threads.
    pub workers: usize,
    /// Batches decoded ahead of the trainer.
    pub prefetch: usize,
    /// Classifier-free-guidance dropout: probability that a sample's prompt is replaced by "".
    pub drop_text: f64,
    /// Probability that a batch's input images are dropped (the model sees outputs and text only).
    pub drop_images: f64,
    /// Data-parallel rank and world size (the loader keeps every world-th draw).
    pub rank: usize,
    pub world_size: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            sources: Vec::new(),
            resolution: unireal_pipeline::checkpoint::DEFAULT_RESOLUTION,
            aspect_ratios: unireal_pipeline::checkpoint::default_aspect_ratios(),
            batch_size: 4,
            max_inputs: 4,
            max_outputs: 2,
            workers: 2,
            prefetch: 4,
            drop_text: 0.1,
            drop_images: 0.05,
            rank: 0,
            world_size: 1,
        }
    }
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
            shift: Shift::default(),
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
    /// Validation also evaluates every sample at this many fixed t, one per equal bin of
    /// [0, 1], logged as `val_loss_by_t` (0 = off).
    pub val_t_bins: usize,
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
            val_t_bins: 4,
            sample_every: 500,
            samples: 4,
            sample_steps: unireal_pipeline::generate::DEFAULT_SAMPLE_STEPS,
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

/// A value serde accepted but the trainer cannot use: the key and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidConfig {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Result<(), InvalidConfig> {
    Err(InvalidConfig { key: key.to_string(), message: message.into() })
}

impl TrainConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let d = &self.data;
        if d.sources.is_empty() {
            return invalid("data.sources", "at least one shard directory is needed");
        }
        if let Some(s) = d.sources.iter().find(|s| !(s.weight > 0.0 && s.weight.is_finite())) {
            return invalid("data.sources", format!("weight of {} must be positive", s.path.display()));
        }
        for (k, v) in [("data.batch_size", d.batch_size), ("data.prefetch", d.prefetch), ("data.workers", d.workers)] {
            if v == 0 {
                return invalid(k, "must be at least 1");
            }
        }
        if d.aspect_ratios.is_empty() || d.aspect_ratios.iter().any(|a| a.is_nan() || *a <= 0.0) {
            return invalid("data.aspect_ratios", "a non-empty list of positive width/height ratios");
        }
        if d.world_size == 0 || d.rank >= d.world_size {
            return invalid("data.rank", format!("{} must be below data.world_size {}", d.rank, d.world_size));
        }
        for (k, p) in [("data.drop_text", d.drop_text), ("data.drop_images", d.drop_images)] {
            if !(0.0..=1.0).contains(&p) {
                return invalid(k, format!("{p} is not a probability"));
            }
        }
        let t = &self.train;
        for (k, v) in [("train.steps", t.steps), ("train.grad_accum", t.grad_accum)] {
            if v == 0 {
                return invalid(k, "must be at least 1");
            }
        }
        if !(t.allreduce_bucket_mb > 0.0) {
            return invalid("train.allreduce_bucket_mb", "must be positive");
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return invalid("train.ema_decay", format!("{} must be in [0, 1)", t.ema_decay));
        }
        if let Err(m) = t.shift.validate() {
            return invalid("train.shift", m);
        }
        if unireal_model::DiTConfig::preset(&self.model.preset, 12, 64).is_none() {
            return invalid("model.preset", format!("`{}` (tiny, small, base, unireal)", self.model.preset));
        }
        Ok(())
    }
}
