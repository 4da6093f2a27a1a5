//! The model a run trains and runs: the DiT and, when it is used, the byte-level text encoder
//! trained with it ([`UniReal`]), and what is only run, frozen ([`Frozen`]: a pretrained T5, a
//! VAE or space-to-depth), assembled from a [`ModelConfig`].

use std::path::Path;

use burn::prelude::*;
use unireal_model::t5::T5Config;
use unireal_model::{DiT, DiTConfig, Latent, SpaceToDepth, T5Encoder};

use crate::config::{BytesText, DitInit, LatentConfig, ModelConfig, PooledText, TextConfig};
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
    /// CLIP's text tower for the pooled vector (`model.pooled`).
    pub clip: Option<unireal_model::ClipText<B>>,
}

/// What the DiT reads of the prompts.
pub struct TextStates<B: Backend> {
    /// `[batch, tokens, text_dim]`.
    pub states: Tensor<B, 3>,
    /// True at padding, `[batch, tokens]`; None when the padding is attended to (`unmasked`).
    pub pad: Option<Tensor<B, 2, Bool>>,
    /// `[batch, vec_in_dim]` with `model.pooled`.
    pub pooled: Option<Tensor<B, 2>>,
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

    /// Width of the pooled text vector (`model.pooled`), if any.
    pub fn pooled_dim(&self) -> Result<Option<usize>> {
        let Some(PooledText::Clip { path, .. }) = &self.pooled else { return Ok(None) };
        let cfg_path = path.join("config.json");
        let clip = unireal_model::ClipConfig::from_hf_json(&read(&cfg_path)?)
            .map_err(|source| PipelineError::ModelConfig { path: cfg_path.clone(), source })?;
        let text = clip.text.ok_or_else(|| PipelineError::ModelConfig {
            path: cfg_path,
            source: unireal_model::ModelError::Config("model.pooled: a CLIP without a text tower".into()),
        })?;
        Ok(Some(text.hidden_size))
    }

    /// The DiT: the preset's, or for the Flux presets with `init_from` a diffusers
    /// checkpoint, the one its `transformer/config.json` describes. Checked against the latent
    /// channels, the text width and the pooled vector's width.
    pub fn dit_config(&self) -> Result<DiTConfig> {
        let (channels, _) = self.latent_shape()?;
        let text_dim = self.text_dim()?;
        let preset = &self.preset;
        if let (None, Some(path)) = (&self.dit, &self.init_from) {
            if !path.exists() {
                return Err(PipelineError::Mismatch(format!("model.init_from {} does not exist", path.display())));
            }
            if path.is_dir() && self.preset.starts_with("flux-") && self.flux_transformer_config().is_none() {
                return Err(PipelineError::Mismatch(format!(
                    "model.init_from {}: neither transformer/config.json nor config.json there (a diffusers \
                     FluxPipeline or transformer directory has one)",
                    path.display()
                )));
            }
        }
        let cfg = match (&self.dit, self.flux_transformer_config()) {
            (Some(dit), _) => dit.clone(),
            (None, Some(path)) => {
                let cfg = DiTConfig::from_diffusers_flux_json(&read(&path)?)
                    .map_err(|source| PipelineError::ModelConfig { path: path.clone(), source })?;
                let dev = preset == "flux-dev";
                if cfg.guidance_embed != dev {
                    return Err(PipelineError::Mismatch(format!(
                        "model.preset is {preset}, but {} has guidance_embeds {}: set model.preset to flux-{}",
                        path.display(),
                        cfg.guidance_embed,
                        if cfg.guidance_embed { "dev" } else { "schnell" }
                    )));
                }
                cfg
            }
            (None, None) => DiTConfig::preset(&self.preset, channels, text_dim)
                .ok_or_else(|| PipelineError::UnknownPreset(self.preset.clone()))?,
        };
        if cfg.in_channels != channels {
            return Err(PipelineError::Mismatch(format!(
                "the DiT ({preset}) takes {} latent channels, model.latent gives {channels}",
                cfg.in_channels
            )));
        }
        if cfg.text_dim != text_dim {
            return Err(PipelineError::Mismatch(format!(
                "the DiT ({preset}) takes text states {} wide, model.text gives {text_dim}",
                cfg.text_dim
            )));
        }
        match (cfg.vec_in_dim, self.pooled_dim()?) {
            (Some(d), Some(p)) if d != p => Err(PipelineError::Mismatch(format!(
                "the DiT ({preset}) takes a pooled text vector {d} wide, model.pooled gives {p}"
            ))),
            (Some(d), None) => Err(PipelineError::Mismatch(format!(
                "the DiT ({preset}) takes a pooled text vector {d} wide: set model.pooled (CLIP's text tower)"
            ))),
            (None, Some(_)) => {
                Err(PipelineError::Mismatch(format!("model.pooled is set, but the DiT ({preset}) has no vector_in")))
            }
            _ => Ok(cfg),
        }
    }

    /// Pixels per side of one DiT token: the latent factor times the patch size. Bucket sides
    /// are multiples of it.
    pub fn pixel_align(&self) -> Result<u32> {
        Ok((self.latent_shape()?.1 * self.dit_config()?.patch) as u32)
    }

    /// The `transformer/config.json` of a Flux preset's diffusers `init_from`: the DiT's shape.
    fn flux_transformer_config(&self) -> Option<std::path::PathBuf> {
        let path = self.init_from.as_deref().filter(|_| self.preset.starts_with("flux-"))?;
        unireal_model::flux_transformer_config(path)
    }

    /// This config with the DiT's shape written in (`dit`) when it comes from `init_from`'s
    /// `transformer/config.json`: what a run records, so its checkpoints stand alone.
    pub fn resolved(&self) -> Result<ModelConfig> {
        let mut cfg = self.clone();
        if cfg.dit.is_none() && self.flux_transformer_config().is_some() {
            cfg.dit = Some(self.dit_config()?);
        }
        Ok(cfg)
    }

    /// The trainable module a run starts from: freshly initialised, its DiT loaded from
    /// `init_from` when set (every tensor of the config required, every tensor of the
    /// checkpoint used; UniReal's index and role embeddings zeroed).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<UniReal<B>> {
        let mut model = self.build::<B>(device)?;
        if let Some(path) = &self.init_from {
            let cfg = self.dit_config()?;
            let report = unireal_model::load_flux(&mut model.dit, &cfg, path, true).map_err(PipelineError::Weights)?;
            if !report.unused.is_empty() {
                let names: Vec<&str> = report.unused.iter().take(6).map(String::as_str).collect();
                return Err(PipelineError::Mismatch(format!(
                    "model.init_from {}: {} tensor(s) fill nothing in the {} DiT ({}{}): a checkpoint of another model \
                     (FLUX.1-dev's with preset flux-schnell?)",
                    path.display(),
                    report.unused.len(),
                    self.preset,
                    names.join(", "),
                    if report.unused.len() > 6 { ", …" } else { "" }
                )));
            }
        }
        Ok(model)
    }

    /// The trainable module freshly initialised, `init_from` not read: the shape that
    /// checkpoint weights are loaded into.
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<UniReal<B>> {
        let cfg = self.dit_config()?;
        let dit = match self.init {
            DitInit::Default => cfg.init(device),
            DitInit::Lookup { gain, norm_scale } => {
                unireal_model::init::LookupInit { gain, norm_scale }.apply(cfg.init(device))
            }
        };
        Ok(UniReal { dit, text: self.byte_encoder().map(|c| c.init(device)) })
    }

    /// The distilled guidance a DiT with `guidance_in` trains with (`model.guidance`, 1.0).
    pub fn train_guidance(&self) -> f64 {
        self.guidance.unwrap_or(1.0)
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
        let mut model = self.build::<B>(device)?;
        unireal_model::load_safetensors(
            &mut model,
            weights,
            &[],
            unireal_model::LoadOptions { strict: true, only: None },
        )
        .map_err(PipelineError::Weights)?;
        Ok(model)
    }

    /// Loads the frozen parts (a VAE and/or a T5 from the paths given).
    pub fn frozen<B: Backend>(&self, device: &B::Device) -> Result<Frozen<B>> {
        let latent = match &self.latent {
            LatentConfig::SpaceToDepth { factor } => Latent::SpaceToDepth(SpaceToDepth { factor: *factor }),
            LatentConfig::Vae { path } => {
                let mut vae = vae_config(path)?.init::<B>(device);
                let weights = unireal_model::weights_in(path, unireal_model::weights::DIFFUSERS_WEIGHTS)
                    .map_err(PipelineError::Weights)?;
                unireal_model::load_safetensors(
                    &mut vae,
                    &weights,
                    &[],
                    unireal_model::LoadOptions { strict: true, only: None },
                )
                .map_err(PipelineError::Weights)?;
                Latent::Kl(vae)
            }
        };
        let t5 = match &self.text {
            TextConfig::T5(t) => Some(
                unireal_model::T5Text::from_dirs(&t.path, t.tokenizer_dir(), t.max_len, device)
                    .map_err(PipelineError::Weights)?
                    .0,
            ),
            TextConfig::Bytes(_) => None,
        };
        let clip = match &self.pooled {
            Some(PooledText::Clip { path, tokenizer }) => Some(
                unireal_model::ClipText::load(path, tokenizer.as_deref().unwrap_or(path), device)
                    .map_err(PipelineError::Weights)?,
            ),
            None => None,
        };
        Ok(Frozen { latent, t5, clip })
    }
}

/// The trainable module of a LoRA run (`train.lora`): `model`'s DiT frozen (`no_grad`),
/// kept in `base_dtype` when given (bf16: the base needs no f32 master copy), with fresh
/// adapters as `lora` asks, the only tensors that require grad.
pub fn with_lora<B: Backend>(
    model: UniReal<B>,
    lora: &unireal_model::LoraConfig,
    base_dtype: Option<burn::tensor::FloatDType>,
    device: &B::Device,
) -> UniReal<B> {
    let mut dit = model.dit.no_grad();
    if let Some(dtype) = base_dtype {
        dit = unireal_model::precision::cast_params(dit, dtype);
    }
    UniReal { dit: unireal_model::attach_lora(dit, lora, device), text: model.text.map(|t| t.no_grad()) }
}

/// `model` with the LoRA of a diffusers file (FluxPipeline's `save_lora_weights`, a LoRA run's
/// `lora.safetensors`) merged into its DiT's weights, whose shape `cfg` gives.
pub fn merge_lora<B: Backend>(
    model: UniReal<B>,
    cfg: &ModelConfig,
    path: &Path,
) -> Result<(UniReal<B>, unireal_model::lora::MergeReport)> {
    let (dit, report) =
        unireal_model::merge_diffusers_lora(model.dit, &cfg.dit_config()?, path).map_err(PipelineError::Weights)?;
    Ok((UniReal { dit, ..model }, report))
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

/// Text states, padding mask and pooled vector for prompts: the trainable byte encoder of
/// `model` or the frozen T5, and the frozen CLIP (computed on `F`, brought over with
/// `from_frozen`).
///
/// # Shapes
/// - states `[batch, len, text_dim]`, pad `[batch, len]`, pooled `[batch, vec_in_dim]`
pub fn encode_text<B: Backend, F: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<F>,
    cfg: &ModelConfig,
    prompts: &[String],
    device: &B::Device,
    fdevice: &F::Device,
    from_frozen: impl Fn(Tensor<F, 3>) -> Tensor<B, 3>,
) -> Result<TextStates<B>> {
    let unmasked = matches!(&cfg.text, TextConfig::T5(t) if t.unmasked);
    let (states, pad) = match (&frozen.t5, unmasked) {
        (Some(t5), true) => {
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            (from_frozen(t5.encode_unmasked(&refs, fdevice).map_err(PipelineError::Text)?), None)
        }
        _ => {
            let (s, p) = encode_states(model, frozen, cfg, prompts, device, fdevice, &from_frozen)?;
            (s, Some(p))
        }
    };
    let pooled = encode_pooled(frozen, prompts, fdevice, from_frozen)?;
    Ok(TextStates { states, pad, pooled })
}

/// The pooled text vector of `model.pooled` (None without it).
///
/// # Shapes
/// - returns `[batch, vec_in_dim]`
pub fn encode_pooled<B: Backend, F: Backend>(
    frozen: &Frozen<F>,
    prompts: &[String],
    fdevice: &F::Device,
    from_frozen: impl Fn(Tensor<F, 3>) -> Tensor<B, 3>,
) -> Result<Option<Tensor<B, 2>>> {
    let Some(clip) = &frozen.clip else { return Ok(None) };
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let pooled = clip.pooled(&refs, fdevice).map_err(PipelineError::Text)?;
    let [b, d] = pooled.dims();
    Ok(Some(from_frozen(pooled.reshape([b, 1, d])).reshape([b, d])))
}

/// The masked text states of the byte encoder or of T5.
fn encode_states<B: Backend, F: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<F>,
    cfg: &ModelConfig,
    prompts: &[String],
    device: &B::Device,
    fdevice: &F::Device,
    from_frozen: &impl Fn(Tensor<F, 3>) -> Tensor<B, 3>,
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
