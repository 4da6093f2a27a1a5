//! `unireal-train plan`: the memory one rank needs, estimated before launch from the config and
//! the data's largest batch, term by term: the trained weights, their gradients, AdamW's two
//! moments and the EMA (all f32, whatever `train.precision`), the bf16 copy of the DiT's
//! weights that mixed precision computes with, the frozen encoders (f32), and the activations
//! autodiff keeps for the backward pass of the largest batch signature. A LoRA run
//! (`train.lora`) trains its adapters alone: the DiT is a frozen base, kept in bf16 under mixed
//! precision (f32 otherwise), and its activations are counted as for full training (the
//! backward pass still runs through every block to reach the first adapters).
//!
//! The activation term counts, per transformer block and sample, `A·tokens·hidden` bytes for
//! the per-token tensors (projections, norms, modulation, RoPE, MLP; MLP width 4·hidden
//! included) and `S·heads·tokens²` for the attention scores and probabilities. `A` and `S`
//! were measured on the CPU backends with [`crate::memory`]'s count (docs/benchmarks.md,
//! "Memory plan"), for each precision and checkpointing mode. Per-block recomputation keeps
//! one hidden state per token and block and one block's activations at a time. The tests
//! check the estimate against the measured peak of short `tiny` and `small` runs. The total is the
//! sum of the terms: gradients are built while activations are freed, so the measured peak
//! is somewhat below it on models whose gradients are large next to their activations.

use std::path::Path;

use serde::Serialize;
use unireal_pipeline::config::{LatentConfig, TextConfig};
use unireal_pipeline::tokens_per_frame;

use crate::cache::{safetensors_header, HeaderError};
use crate::config::{Checkpointing, Precision, TrainConfig};
use crate::data::Index;
use crate::error::{Result, TrainError};

/// Activation bytes per block and sample: `A` per token and hidden unit, `S` per head and token
/// pair, by precision and `train.activation_checkpointing`. Fitted to the peak heap of 3-step
/// CPU runs of `tiny` at 264 and 858 tokens per sample (NdArray in f32, Flex in bf16;
/// docs/benchmarks.md "Memory plan"): f32 keeps about 24 f32 values per token and hidden unit
/// and 4 per score (scores and probabilities); Burn's balanced checkpointing recomputes the
/// elementwise ones; bf16 halves the per-token tensors but keeps norms and softmax in f32.
/// With per-block recomputation these are one block's, counted once: what its recomputed
/// forward keeps plus its backward pass's temporaries (the gradients of the attention scores
/// among them), which the other modes' peak, at the end of the forward pass, does not hold.
fn activation_coefficients(precision: Precision, checkpointing: Checkpointing) -> (f64, f64) {
    match (precision, checkpointing) {
        (Precision::F32, Checkpointing::Off) => (96.0, 16.0),
        (Precision::F32, Checkpointing::Burn) => (40.0, 12.0),
        (Precision::F32, Checkpointing::Blocks) => (100.0, 21.0),
        (Precision::Bf16, Checkpointing::Off) => (56.0, 14.0),
        (Precision::Bf16, Checkpointing::Burn) => (40.0, 14.0),
        (Precision::Bf16, Checkpointing::Blocks) => (54.0, 22.0),
    }
}

/// Per-block recomputation ([`Checkpointing::Blocks`]) keeps each block's input, one hidden
/// state per token in the compute dtype: these bytes per token, hidden unit and block, beside
/// one block's activations.
fn saved_input_bytes(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => 4.0,
        Precision::Bf16 => 2.0,
    }
}

/// The largest batch one rank trains on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub width: u32,
    pub height: u32,
    /// Patch tokens of one sample (every frame) and text tokens (the encoder's maximum).
    pub image_tokens: usize,
    pub text_tokens: usize,
}

/// One rank's memory, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub preset: String,
    pub precision: Precision,
    pub activation_checkpointing: Checkpointing,
    pub world_size: usize,
    pub trained_params: usize,
    pub frozen_params: usize,
    pub signature: Signature,
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub ema: u64,
    /// Mixed precision's bf16 copy of the DiT's weights, kept for the backward pass.
    pub compute_copy: u64,
    /// A LoRA run's frozen DiT (bf16 under mixed precision, else f32).
    pub base: u64,
    pub frozen: u64,
    pub activations: u64,
    pub total: u64,
    /// `train.memory_budget_gb` in bytes, or the device's memory where the binary knows it.
    pub budget: Option<u64>,
}

impl MemoryPlan {
    /// The terms by name, in table order.
    pub fn terms(&self) -> [(&'static str, u64); 8] {
        [
            ("weights (f32)", self.weights),
            ("gradients (f32)", self.gradients),
            ("AdamW moments (f32)", self.optimizer),
            ("EMA (f32)", self.ema),
            ("bf16 compute copy", self.compute_copy),
            (
                match self.precision {
                    Precision::F32 => "frozen DiT base, LoRA (f32)",
                    Precision::Bf16 => "frozen DiT base, LoRA (bf16)",
                },
                self.base,
            ),
            ("frozen encoders (f32)", self.frozen),
            ("activations", self.activations),
        ]
    }

    /// The largest term.
    pub fn largest(&self) -> (&'static str, u64) {
        self.terms().into_iter().max_by_key(|t| t.1).unwrap_or(("weights (f32)", self.weights))
    }

    /// Whether the total is over the budget.
    pub fn over_budget(&self) -> bool {
        self.budget.is_some_and(|b| self.total > b)
    }

    /// The human table (stderr) for `unireal-train plan`.
    pub fn table(&self) -> String {
        let gb = |b: u64| b as f64 / 1e9;
        let s = &self.signature;
        let mut out = format!(
            "memory plan per rank: preset {} ({:.1} M trained parameters{}), {}, {}activation checkpointing, {} rank(s)\n\
             largest batch: {} × ({} input{} + {} output{} at {}x{} px) = {} image + {} text tokens per sample\n",
            self.preset,
            self.trained_params as f64 / 1e6,
            if self.frozen_params > 0 {
                format!(", {:.1} M frozen", self.frozen_params as f64 / 1e6)
            } else {
                String::new()
            },
            match self.precision {
                Precision::F32 => "f32",
                Precision::Bf16 => "bf16 mixed precision",
            },
            match self.activation_checkpointing {
                Checkpointing::Off => "no ",
                Checkpointing::Blocks => "per-block ",
                Checkpointing::Burn => "Burn's balanced ",
            },
            self.world_size,
            s.batch,
            s.inputs,
            if s.inputs == 1 { "" } else { "s" },
            s.outputs,
            if s.outputs == 1 { "" } else { "s" },
            s.width,
            s.height,
            s.image_tokens,
            s.text_tokens,
        );
        for (name, bytes) in self.terms() {
            out += &format!("  {name:<24} {:>9.3} GB\n", gb(bytes));
        }
        out += &format!("  {:<24} {:>9.3} GB", "total", gb(self.total));
        if let Some(b) = self.budget {
            out += &format!(" of {:.3} GB budget ({:.0} %)", gb(b), 100.0 * self.total as f64 / b as f64);
        }
        out
    }
}

/// Float parameters in the weights of a model directory (`STEM.safetensors`, or the shards of
/// `STEM.safetensors.index.json`).
fn safetensors_params(dir: &Path, stem: &str) -> Result<usize> {
    let weights = unireal_model::weights_in(dir, stem)
        .and_then(|w| unireal_model::weight_files(&w))
        .map_err(|e| TrainError::Plan { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut n = 0;
    for f in weights {
        n += header_params(&f)?;
    }
    Ok(n)
}

/// Elements of every tensor a safetensors file's header lists (the header only is read).
fn header_params(path: &Path) -> Result<usize> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let (tensors, _) = safetensors_header(&f).map_err(|e| match e {
        HeaderError::Io(source) => io(source),
        HeaderError::Format(message) => TrainError::Plan { path: path.to_path_buf(), message },
    })?;
    Ok(tensors
        .values()
        .filter_map(|t| t["shape"].as_array())
        .map(|shape| shape.iter().map(|d| d.as_u64().unwrap_or(0) as usize).product::<usize>())
        .sum())
}

/// The batch with the most tokens that `cfg`'s training data can produce.
pub fn largest_signature(cfg: &TrainConfig) -> Result<Signature> {
    let align = cfg.model.pixel_align()?;
    let (train, _, _) = Index::build_split(&cfg.data, align)?;
    let (_, factor) = cfg.model.latent_shape()?;
    let patch = cfg.model.dit_config()?.patch;
    let text_tokens = match &cfg.model.text {
        TextConfig::Bytes(b) => b.max_len,
        TextConfig::T5(t) => t.max_len,
    };
    let largest = train
        .per_source
        .iter()
        .flatten()
        .map(|e| {
            let bucket = train.buckets[e.bucket];
            let (n, m) = e.signature;
            ((n + m) * tokens_per_frame(bucket, factor, patch), n, m, bucket)
        })
        .max_by_key(|x| x.0)
        .ok_or_else(|| {
            let d = &cfg.data;
            TrainError::Data(crate::data::DataError::NoTrainingRows {
                sources: d.sources.iter().map(|s| s.label()).collect::<Vec<_>>().join(", "),
                max_inputs: d.max_inputs,
                max_outputs: d.max_outputs,
            })
        })?;
    let (image_tokens, inputs, outputs, bucket) = largest;
    Ok(Signature {
        batch: cfg.data.batch_size,
        inputs,
        outputs,
        width: bucket.width,
        height: bucket.height,
        image_tokens,
        text_tokens,
    })
}

/// The plan of one rank of `cfg` with `world_size` ranks, for the largest batch of its data;
/// `device_memory` is the budget when `train.memory_budget_gb` is not set.
pub fn plan(cfg: &TrainConfig, world_size: usize, device_memory: Option<u64>) -> Result<MemoryPlan> {
    let dit = cfg.model.dit_config()?;
    let text_params = cfg.model.byte_encoder().map_or(0, |c| c.num_params());
    let signature = largest_signature(cfg)?;
    let dit_params = dit.num_params();
    let lora = cfg.train.lora.as_ref().map(|l| l.num_params(&dit));
    let trained = lora.unwrap_or(dit_params) + text_params;
    let mut encoders = 0;
    if let LatentConfig::Vae { path } = &cfg.model.latent {
        encoders += safetensors_params(path, unireal_model::weights::DIFFUSERS_WEIGHTS)?;
    }
    if let TextConfig::T5(t) = &cfg.model.text {
        encoders += safetensors_params(&t.path, unireal_model::weights::TRANSFORMERS_WEIGHTS)?;
    }
    if let Some(unireal_pipeline::PooledText::Clip { path, .. }) = &cfg.model.pooled {
        encoders += safetensors_params(path, unireal_model::weights::TRANSFORMERS_WEIGHTS)?;
    }
    let frozen_params = encoders + if lora.is_some() { dit_params } else { 0 };
    let f32 = |n: usize| 4 * n as u64;
    let t = &cfg.train;
    // Accumulated gradients are a second set when micro-batches are summed.
    let gradients = f32(trained) * if t.grad_accum > 1 { 2 } else { 1 };
    let (a, s) = activation_coefficients(t.precision, t.activation_checkpointing);
    let blocks = (dit.double_blocks + dit.single_blocks) as f64;
    let tokens = (signature.image_tokens + signature.text_tokens) as f64;
    let (hidden, heads) = (dit.hidden as f64, dit.heads as f64);
    let block = a * tokens * hidden + s * heads * tokens * tokens;
    let per_sample = match t.activation_checkpointing {
        Checkpointing::Blocks => blocks * saved_input_bytes(t.precision) * tokens * hidden + block,
        _ => blocks * block,
    };
    let activations = (signature.batch as f64 * per_sample) as u64;
    let mut p = MemoryPlan {
        preset: cfg.model.preset.clone(),
        precision: t.precision,
        activation_checkpointing: t.activation_checkpointing,
        world_size,
        trained_params: trained,
        frozen_params,
        signature,
        weights: f32(trained),
        gradients,
        optimizer: 2 * f32(trained),
        ema: if t.ema_decay > 0.0 { f32(trained) } else { 0 },
        // LoRA: the adapters' bf16 copy only; the base is kept in bf16 itself.
        compute_copy: match t.precision {
            Precision::F32 => 0,
            // Per-block recomputation casts one block at a time.
            Precision::Bf16 => match (lora, t.activation_checkpointing) {
                (Some(l), _) => 2 * l as u64,
                (None, Checkpointing::Blocks) => {
                    let (double, single) = dit.block_params();
                    let in_blocks = dit.double_blocks * double + dit.single_blocks * single;
                    2 * (dit_params - in_blocks + double.max(single)) as u64
                }
                (None, _) => 2 * dit_params as u64,
            },
        },
        base: match (lora, t.precision) {
            (None, _) => 0,
            (Some(_), Precision::F32) => f32(dit_params),
            (Some(_), Precision::Bf16) => 2 * dit_params as u64,
        },
        frozen: f32(encoders),
        activations,
        total: 0,
        budget: t.memory_budget_gb.map(|g| (g * 1e9) as u64).or(device_memory),
    };
    p.total = p.terms().iter().map(|t| t.1).sum();
    Ok(p)
}
