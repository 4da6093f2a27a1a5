//! The UniReal model side in Burn 0.21: the DiT ([`dit`]) with its layers and 3-axis RoPE, the
//! T5 encoder and tokenizer ([`t5`]), CLIP's text and vision towers ([`clip`]), DINO's ViTs ([`vit`]) and the towers' image processors ([`image_processor`]), the VAE and the parameter-free latent ([`vae`]), and
//! safetensors loading ([`weights`]). No I/O beyond reading the weight, config and tokenizer
//! files a user names.

pub mod clip;
pub mod dit;
pub mod flux;
pub mod image_processor;
pub mod init;
pub mod layers;
pub mod lora;
pub mod precision;
pub mod rope;
pub mod t5;
pub mod vae;
pub mod vit;
pub mod weights;

pub use clip::{clip_tokenizer, Clip, ClipConfig, ClipOutput, ClipText, ClipTextConfig, ClipVisionConfig};
pub use dit::{DiT, DiTConfig, DiTInput};
pub use flux::{flux_transformer_config, load_flux, FluxLayout};
pub use image_processor::{CropOffset, ImageProcessor, Resample, Resize};
pub use lora::{attach_lora, merge_diffusers_lora, save_diffusers_lora, LoraConfig, LoraTarget};
pub use t5::{T5Config, T5Encoder, T5Text, TextTokenizer, TokenBatch};
pub use vae::{AutoencoderKl, AutoencoderKlConfig, Latent, SpaceToDepth};
pub use vit::{Vit, VitConfig, VitOutput};
pub use weights::{
    load_safetensors, save_safetensors, save_safetensors_only, weight_files, weights_in, LoadOptions, LoadReport,
};

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weights {path}: {message}")]
    Weights { path: String, message: String },
    #[error("config: {0}")]
    Config(String),
    #[error("tokenizer {0}")]
    Tokenizer(String),
    /// An error with what the user can do about it (shown as `hint:` by the binaries).
    #[error("{0}")]
    Hinted(#[source] unireal_core::Hinted),
}
