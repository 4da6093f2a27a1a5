//! What the trainer trains (the DiT, and the byte-level text encoder when it is used) and what
//! it only runs (a pretrained T5, a VAE).

use burn::prelude::*;
use unireal_model::t5::T5Config;
use unireal_model::{DiT, DiTConfig, Latent, SpaceToDepth, T5Encoder, T5Text};

use crate::config::{LatentConfig, ModelConfig, TextConfig};

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
    pub t5: Option<T5Text<B>>,
}

/// A diffusers VAE directory's `config.json`, parsed and validated.
fn vae_config(dir: &std::path::Path) -> Result<unireal_model::AutoencoderKlConfig, String> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    unireal_model::AutoencoderKlConfig::from_diffusers_json(&text).map_err(|e| format!("{}: {e}", p.display()))
}

impl ModelConfig {
    /// Width of the text states the DiT receives.
    pub fn text_dim(&self) -> Result<usize, String> {
        Ok(match &self.text {
            TextConfig::Bytes { width, .. } => *width,
            TextConfig::T5 { path, .. } => {
                let p = path.join("config.json");
                let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                T5Config::from_hf_json(&text).map_err(|e| format!("{}: {e}", p.display()))?.d_model
            }
        })
    }

    /// Latent channels and pixels per latent pixel.
    pub fn latent_shape(&self) -> Result<(usize, usize), String> {
        Ok(match &self.latent {
            LatentConfig::SpaceToDepth { factor } => (3 * factor * factor, *factor),
            LatentConfig::Vae { path } => {
                let c = vae_config(path)?;
                (c.latent_channels, c.downsample_factor())
            }
        })
    }

    pub fn dit_config(&self) -> Result<DiTConfig, String> {
        let (channels, _) = self.latent_shape()?;
        DiTConfig::preset(&self.preset, channels, self.text_dim()?)
            .ok_or_else(|| format!("model.preset: unknown preset `{}`", self.preset))
    }

    /// A freshly initialised trainable module.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<UniReal<B>, String> {
        let dit = self.dit_config()?.init(device);
        let text = match &self.text {
            TextConfig::Bytes { width, layers, .. } => {
                let heads = (width / 16).max(1);
                Some(T5Config::new(BYTE_VOCAB, *width, width / heads, width * 2, *layers, heads).init(device))
            }
            TextConfig::T5 { .. } => None,
        };
        Ok(UniReal { dit, text })
    }

    /// Loads the frozen parts (a VAE and/or a T5 from the paths given).
    pub fn frozen<B: Backend>(&self, device: &B::Device) -> Result<Frozen<B>, String> {
        let latent = match &self.latent {
            LatentConfig::SpaceToDepth { factor } => Latent::SpaceToDepth(SpaceToDepth { factor: *factor }),
            LatentConfig::Vae { path } => {
                let mut vae = vae_config(path)?.init::<B>(device);
                unireal_model::load_safetensors(
                    &mut vae,
                    &path.join("diffusion_pytorch_model.safetensors"),
                    &[],
                    unireal_model::LoadOptions { strict: true },
                )
                .map_err(|e| e.to_string())?;
                Latent::Kl(vae)
            }
        };
        let t5 = match &self.text {
            TextConfig::T5 { path, max_len } => {
                Some(T5Text::from_hf_dir(path, *max_len, device).map_err(|e| e.to_string())?.0)
            }
            TextConfig::Bytes { .. } => None,
        };
        Ok(Frozen { latent, t5 })
    }
}

/// Text states and padding mask for prompts: the trainable byte encoder of `model`, or the
/// frozen T5 (computed on `F`, brought over with `from_frozen`).
pub fn encode_text<B: Backend, F: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<F>,
    cfg: &ModelConfig,
    prompts: &[String],
    device: &B::Device,
    fdevice: &F::Device,
    from_frozen: impl Fn(Tensor<F, 3>) -> Tensor<B, 3>,
) -> Result<(Tensor<B, 3>, Tensor<B, 2, Bool>), String> {
    match (&model.text, &frozen.t5, &cfg.text) {
        (Some(enc), _, TextConfig::Bytes { max_len, .. }) => {
            let (ids, pad) = byte_tokens::<B>(prompts, *max_len, device);
            Ok((enc.forward(ids, Some(pad.clone())), pad))
        }
        (_, Some(t5), TextConfig::T5 { .. }) => {
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            let (states, pad) = t5.encode(&refs, fdevice).map_err(|e| e.to_string())?;
            let pad = Tensor::<B, 2, Bool>::from_data(pad.into_data(), device);
            Ok((from_frozen(states), pad))
        }
        _ => Err("the text encoder does not match model.text".into()),
    }
}
