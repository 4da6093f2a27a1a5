//! A diffusers `FluxPipeline` directory (FLUX.1-dev or -schnell as Black Forest Labs publish
//! them on the Hub) as a [`ModelConfig`] and its sampling settings, as diffusers runs it:
//! `transformer/` the DiT, `vae/` the latent space, `text_encoder_2/` + `tokenizer_2/` T5
//! padded to `max_sequence_length` with no mask, `text_encoder/` + `tokenizer/` CLIP's pooled
//! vector, `scheduler/` the flow-matching Euler schedule (resolution-dependent shift for dev,
//! its fixed `shift` otherwise). Also the latent files `unireal-infer --init-noise` reads and
//! `--out-latents` writes.

use std::path::Path;

use burn::prelude::*;

use crate::config::{LatentConfig, ModelConfig, PooledText, T5Text, TextConfig};
use crate::error::{PipelineError, Result};

/// What diffusers' `FluxPipeline` calls `max_sequence_length`: 512 for dev, 256 for schnell.
pub fn flux_max_sequence_length(guidance_embeds: bool) -> usize {
    if guidance_embeds {
        512
    } else {
        256
    }
}

/// A `FluxPipeline` directory's model and schedule.
#[derive(Debug, Clone)]
pub struct FluxPipelineDir {
    pub model: ModelConfig,
    /// The scheduler's shift for `tokens` image tokens of one frame.
    pub schedule: FluxSchedule,
    /// Sampling steps unless given: 28 for dev (diffusers' default), 4 for schnell (the
    /// timestep-distilled model's own).
    pub default_steps: usize,
}

/// `scheduler/scheduler_config.json` of a `FlowMatchEulerDiscreteScheduler`.
#[derive(Debug, Clone, PartialEq)]
pub enum FluxSchedule {
    /// `use_dynamic_shifting`: shift `exp(μ)`, μ linear in the image tokens between
    /// (`base_image_seq_len`, `base_shift`) and (`max_image_seq_len`, `max_shift`).
    Dynamic { base: (usize, f64), max: (usize, f64) },
    /// A fixed `shift` (schnell: 1.0).
    Fixed(f64),
}

impl FluxSchedule {
    pub fn shift(&self, image_tokens: usize) -> f64 {
        match *self {
            FluxSchedule::Dynamic { base, max } => unireal_flow::resolution_shift(image_tokens, base, max),
            FluxSchedule::Fixed(s) => s,
        }
    }
}

fn json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PipelineError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|e| PipelineError::CheckpointConfig { path: path.to_path_buf(), message: e.to_string() })
}

/// Whether `dir` is a diffusers pipeline directory (it has `model_index.json`).
pub fn is_pipeline_dir(dir: &Path) -> bool {
    dir.join("model_index.json").is_file()
}

impl FluxPipelineDir {
    /// Reads `dir/model_index.json` (a `FluxPipeline`), the transformer's and scheduler's
    /// configs; the weights are read when the model is built.
    pub fn open(dir: &Path) -> Result<FluxPipelineDir> {
        let index_path = dir.join("model_index.json");
        let index = json(&index_path)?;
        let class = index["_class_name"].as_str().unwrap_or("");
        if class != "FluxPipeline" {
            return Err(PipelineError::CheckpointConfig {
                path: index_path,
                message: format!("a `{class}`, not a FluxPipeline (only FLUX.1 pipelines are read)"),
            });
        }
        let transformer = json(&dir.join("transformer/config.json"))?;
        let guidance_embeds = transformer["guidance_embeds"].as_bool().unwrap_or(false);
        let sched_path = dir.join("scheduler/scheduler_config.json");
        let sched = json(&sched_path)?;
        let num = |k: &str, default: f64| sched[k].as_f64().unwrap_or(default);
        let schedule = if sched["use_dynamic_shifting"].as_bool().unwrap_or(false) {
            let ((base_len, base_shift), (max_len, max_shift)) = unireal_flow::FLUX_SHIFT_ANCHORS;
            FluxSchedule::Dynamic {
                base: (num("base_image_seq_len", base_len as f64) as usize, num("base_shift", base_shift)),
                max: (num("max_image_seq_len", max_len as f64) as usize, num("max_shift", max_shift)),
            }
        } else {
            FluxSchedule::Fixed(num("shift", 1.0))
        };
        let model = ModelConfig {
            preset: if guidance_embeds { "flux-dev" } else { "flux-schnell" }.into(),
            latent: LatentConfig::Vae { path: dir.join("vae") },
            text: TextConfig::T5(T5Text {
                tokenizer: Some(dir.join("tokenizer_2")),
                unmasked: true,
                ..T5Text::new(dir.join("text_encoder_2"), flux_max_sequence_length(guidance_embeds))
            }),
            pooled: Some(PooledText::Clip { path: dir.join("text_encoder"), tokenizer: Some(dir.join("tokenizer")) }),
            init: Default::default(),
            init_from: Some(dir.to_path_buf()),
            guidance: None,
            dit: None,
        };
        let default_steps = if guidance_embeds { crate::generate::DEFAULT_SAMPLE_STEPS } else { 4 };
        Ok(FluxPipelineDir { model, schedule, default_steps })
    }
}

/// The tensor `noise` of a safetensors file, checked to have `shape` (f32, f16 or bf16).
pub fn read_latent_file(path: &Path, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let err = |message: String| PipelineError::CheckpointConfig { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|source| PipelineError::Read { path: path.to_path_buf(), source })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let t = st.tensor(name).map_err(|_| err(format!("no tensor `{name}` (it has: {})", st.names().join(", "))))?;
    if t.shape() != shape {
        return Err(err(format!("`{name}` has shape {:?}, this image needs {shape:?}", t.shape())));
    }
    let dtype = match t.dtype() {
        safetensors::Dtype::F32 => burn::tensor::DType::F32,
        safetensors::Dtype::F16 => burn::tensor::DType::F16,
        safetensors::Dtype::BF16 => burn::tensor::DType::BF16,
        other => return Err(err(format!("`{name}` is {other:?}; f32, f16 or bf16 expected"))),
    };
    let data =
        TensorData::from_bytes_vec(t.data().to_vec(), shape.to_vec(), dtype).convert_dtype(burn::tensor::DType::F32);
    Ok(data.into_vec::<f32>()?)
}

/// Writes `tensor` as the f32 tensor `name` of a safetensors file, atomically.
pub fn write_latent_file<B: Backend, const D: usize>(path: &Path, name: &str, tensor: Tensor<B, D>) -> Result<()> {
    let shape = tensor.dims().to_vec();
    let values: Vec<f32> = tensor.into_data().convert::<f32>().into_vec()?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| PipelineError::Tensor(e.to_string()))?;
    let data =
        safetensors::tensor::serialize([(name, view)], None).map_err(|e| PipelineError::Tensor(e.to_string()))?;
    unireal_core::write_atomic(path, &data).map_err(|source| PipelineError::Write { path: path.to_path_buf(), source })
}
