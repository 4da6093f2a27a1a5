//! The model a run trains and runs: the DiT and, when it is used, the byte-level text encoder
//! trained with it ([`UniReal`]), and what is only run, frozen ([`Frozen`]: a pretrained T5, a
//! VAE or space-to-depth), assembled from a [`ModelConfig`].

use std::path::Path;

use burn::prelude::*;
use unireal_model::t5::T5Config;
use unireal_model::{DiT, DiTConfig, Latent, SpaceToDepth, T5Encoder};

use crate::config::{BytesText, DitInit, LatentConfig, ModelConfig, T5Text, TextConfig};
use crate::error::{PipelineError, Result};
use crate::prompt::FittedPrompt;

/// The trainable module.
#[derive(Module, Debug)]
pub struct UniReal<B: Backend> {
    pub dit: DiT<B>,
    /// The byte-level text encoder, trained with the DiT (`text.kind: bytes`).
    pub text: Option<T5Encoder<B>>,
}

/// Byte-level tokens: 0 = pad, 1 = end of sequence, byte b = b + 3.
pub const BYTE_VOCAB: usize = 259;

/// Tokenises prompts as UTF-8 bytes, truncated to `max_len` with the end token kept.
///
/// # Shapes
/// - returns ids `[batch, len]` and the padding mask `[batch, len]` (true at padding)
pub fn byte_tokens<B: Backend>(
    prompts: &[String],
    max_len: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let mut rows: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| {
            let mut v: Vec<i64> = p.bytes().take(max_len.saturating_sub(1)).map(|b| b as i64 + 3).collect();
            v.push(1);
            v
        })
        .collect();
    let len = rows.iter().map(Vec::len).max().unwrap_or(1);
    let pad: Vec<bool> = rows.iter().flat_map(|r| (0..len).map(move |i| i >= r.len())).collect();
    for r in &mut rows {
        r.resize(len, 0);
    }
    let b = rows.len();
    (
        Tensor::from_data(TensorData::new(rows.concat(), [b, len]), device),
        Tensor::from_data(TensorData::new(pad, [b, len]), device),
    )
}

/// Frozen parts, run without gradients.
pub struct Frozen<B: Backend> {
    pub latent: Latent<B>,
    pub t5: Option<unireal_model::T5Text<B>>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PipelineError::Read { path: path.to_path_buf(), source })
}

/// A diffusers VAE directory's `config.json`, parsed and validated.
fn vae_config(dir: &Path) -> Result<unireal_model::AutoencoderKlConfig> {
    let path = dir.join("config.json");
    unireal_model::AutoencoderKlConfig::from_diffusers_json(&read(&path)?)
        .map_err(|source| PipelineError::ModelConfig { path, source })
}

impl ModelConfig {
    /// Width of the text states the DiT receives.
    pub fn text_dim(&self) -> Result<usize> {
        Ok(match &self.text {
            TextConfig::Bytes(b) => b.width,
            TextConfig::T5(t) => {
                let path = t.path.join("config.json");
                T5Config::from_hf_json(&read(&path)?)
                    .map_err(|source| PipelineError::ModelConfig { path, source })?
                    .d_model
            }
        })
    }

    /// Latent channels and pixels per latent pixel.
    pub fn latent_shape(&self) -> Result<(usize, usize)> {
        Ok(match &self.latent {
            LatentConfig::SpaceToDepth { factor } => (3 * factor * factor, *factor),
            LatentConfig::Vae { path } => {
                let c = vae_config(path)?;
                (c.latent_channels, c.downsample_factor())
            }
        })
    }

    pub fn dit_config(&self) -> Result<DiTConfig> {
        let (channels, _) = self.latent_shape()?;
        DiTConfig::preset(&self.preset, channels, self.text_dim()?)
            .ok_or_else(|| PipelineError::UnknownPreset(self.preset.clone()))
    }

    /// Pixels per side of one DiT token: the latent factor times the patch size. Bucket sides
    /// are multiples of it.
    pub fn pixel_align(&self) -> Result<u32> {
        Ok((self.latent_shape()?.1 * self.dit_config()?.patch) as u32)
    }

    /// A freshly initialised trainable module.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<UniReal<B>> {
        let dit = match self.init {
            DitInit::Default => self.dit_config()?.init(device),
            DitInit::Lookup { gain, norm_scale } => {
                unireal_model::init::LookupInit { gain, norm_scale }.apply(self.dit_config()?.init(device))
            }
        };
        Ok(UniReal { dit, text: self.byte_encoder().map(|c| c.init(device)) })
    }

    /// The trained byte-level text encoder's config (`text.kind: bytes`); None for a frozen T5.
    pub fn byte_encoder(&self) -> Option<T5Config> {
        match &self.text {
            TextConfig::Bytes(BytesText { width, layers, .. }) => {
                let heads = (width / 16).max(1);
                Some(T5Config::new(BYTE_VOCAB, *width, width / heads, width * 2, *layers, heads))
            }
            TextConfig::T5(_) => None,
        }
    }

    /// A trainable module with the weights of a safetensors file (a checkpoint's
    /// `model.safetensors` or `ema.safetensors`), every tensor required.
    pub fn load<B: Backend>(&self, weights: &Path, device: &B::Device) -> Result<UniReal<B>> {
        let mut model = self.init::<B>(device)?;
        unireal_model::load_safetensors(&mut model, weights, &[], unireal_model::LoadOptions { strict: true })
            .map_err(PipelineError::Weights)?;
        Ok(model)
    }

    /// Loads the frozen parts (a VAE and/or a T5 from the paths given).
    pub fn frozen<B: Backend>(&self, device: &B::Device) -> Result<Frozen<B>> {
        let latent = match &self.latent {
            LatentConfig::SpaceToDepth { factor } => Latent::SpaceToDepth(SpaceToDepth { factor: *factor }),
            LatentConfig::Vae { path } => {
                let mut vae = vae_config(path)?.init::<B>(device);
                let weights =
                    unireal_model::weights_in(path, "diffusion_pytorch_model").map_err(PipelineError::Weights)?;
                unireal_model::load_safetensors(&mut vae, &weights, &[], unireal_model::LoadOptions { strict: true })
                    .map_err(PipelineError::Weights)?;
                Latent::Kl(vae)
            }
        };
        let t5 = match &self.text {
            TextConfig::T5(T5Text { path, max_len }) => {
                Some(unireal_model::T5Text::from_hf_dir(path, *max_len, device).map_err(PipelineError::Weights)?.0)
            }
            TextConfig::Bytes(_) => None,
        };
        Ok(Frozen { latent, t5 })
    }
}

/// Whether `prompt` reaches the configured text encoder whole: at most `max_len − 1` bytes
/// (plus the end token) for `bytes`, at most `max_len` tokens of the T5 tokenizer for `t5`.
pub fn prompt_fits<B: Backend>(cfg: &ModelConfig, frozen: &Frozen<B>, prompt: &str) -> bool {
    match (&cfg.text, &frozen.t5) {
        (TextConfig::Bytes(b), _) => prompt.len() < b.max_len,
        (TextConfig::T5(_), Some(t5)) => t5.tokenizer.count(prompt).is_ok_and(|n| n <= t5.tokenizer.max_len()),
        (TextConfig::T5(_), None) => true,
    }
}

/// [`fit_prompt`](crate::prompt::fit_prompt) for the configured text encoder.
pub fn fit_prompt<B: Backend>(cfg: &ModelConfig, frozen: &Frozen<B>, context: &str, base: &str) -> FittedPrompt {
    crate::prompt::fit_prompt(context, base, |p| prompt_fits(cfg, frozen, p))
}

/// Text states and padding mask for prompts: the trainable byte encoder of `model`, or the
/// frozen T5 (computed on `F`, brought over with `from_frozen`).
///
/// # Shapes
/// - returns states `[batch, len, text_dim]` and the padding mask `[batch, len]`
pub fn encode_text<B: Backend, F: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<F>,
    cfg: &ModelConfig,
    prompts: &[String],
    device: &B::Device,
    fdevice: &F::Device,
    from_frozen: impl Fn(Tensor<F, 3>) -> Tensor<B, 3>,
) -> Result<(Tensor<B, 3>, Tensor<B, 2, Bool>)> {
    match (&model.text, &frozen.t5, &cfg.text) {
        (Some(enc), _, TextConfig::Bytes(b)) => {
            let (ids, pad) = byte_tokens::<B>(prompts, b.max_len, device);
            Ok((enc.forward(ids, Some(pad.clone())), pad))
        }
        (_, Some(t5), TextConfig::T5(_)) => {
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            let (states, pad) = t5.encode(&refs, fdevice).map_err(PipelineError::Text)?;
            let pad = Tensor::<B, 2, Bool>::from_data(pad.into_data(), device);
            Ok((from_frozen(states), pad))
        }
        _ => Err(PipelineError::TextEncoderMismatch),
    }
}
