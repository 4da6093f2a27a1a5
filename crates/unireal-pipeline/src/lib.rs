//! What running a UniReal model needs, shared by the trainer, `unireal-infer` and evaluation
//! so that none of them links another: the model, latent and text configs ([`config`]), the
//! trainable module and the frozen encoders built from them ([`model`]), prompt and role
//! assembly ([`prompt`]), images ↔ tensors and buckets ([`image`]), and the sampling entry
//! point ([`generate`]). No data loading, no training.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod flux;
pub mod generate;
pub mod image;
pub mod model;
pub mod prompt;

pub use checkpoint::Checkpoint;
pub use config::{BytesText, DitInit, LatentConfig, ModelConfig, PooledText, Shift, T5Text, TextConfig};
pub use error::PipelineError;
pub use generate::{
    generate, generate_latents, generate_pixels, tokens_per_frame, Request, DEFAULT_DISTILLED_GUIDANCE,
};
pub use image::Bucket;
pub use model::{
    encode_pooled, encode_text, fit_prompt, merge_lora, prompt_fits, with_lora, Frozen, TextStates, UniReal,
};
