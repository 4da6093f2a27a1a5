//! What can go wrong assembling or running a model, each with the file or key it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model directory's `config.json` (T5, VAE) that does not parse or validate.
    #[error("{path}: {source}")]
    ModelConfig {
        path: PathBuf,
        #[source]
        source: unireal_model::ModelError,
    },
    #[error("model.preset: unknown preset `{0}` ({presets})", presets = unireal_model::DiTConfig::PRESETS.join(", "))]
    UnknownPreset(String),
    /// Parts of the model config that do not fit together (latent channels, text widths).
    #[error("model: {0}")]
    Mismatch(String),
    /// Weights that do not load (missing file, missing or unused tensors, shapes), or a model
    /// directory that does not open (its errors name the file).
    #[error(transparent)]
    Weights(unireal_model::ModelError),
    /// The T5 tokenizer failed on a prompt.
    #[error("text encoder: {0}")]
    Text(unireal_model::ModelError),
    #[error("the text encoder does not match model.text (a checkpoint of another config?)")]
    TextEncoderMismatch,
    #[error("image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("encoding a PNG")]
    EncodePng(#[source] image::ImageError),
    #[error("{0}: not a checkpoint directory, and no checkpoints under it")]
    NotACheckpoint(PathBuf),
    #[error("{path}: {message}")]
    CheckpointConfig { path: PathBuf, message: String },
    #[error("tensor data: {0}")]
    Tensor(String),
}

impl From<burn::tensor::DataError> for PipelineError {
    fn from(e: burn::tensor::DataError) -> Self {
        PipelineError::Tensor(e.to_string())
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
