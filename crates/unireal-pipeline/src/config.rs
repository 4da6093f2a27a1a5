//! What a model run is made of, as configured: the DiT preset, the latent space (a frozen VAE
//! or parameter-free space-to-depth) and the text encoder (a frozen T5 or a small byte-level
//! encoder trained with the DiT), and the timestep shift. The trainer's config embeds these;
//! inference and evaluation read them back from a checkpoint's `config.yaml`. Every key is
//! documented in docs/configuration.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_flow::{resolution_shift, FLUX_SHIFT_ANCHORS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// DiT preset: `tiny`, `small`, `base`, `unireal`, `flux-dev`, `flux-schnell`.
    pub preset: String,
    #[serde(default)]
    pub latent: LatentConfig,
    #[serde(default)]
    pub text: TextConfig,
    /// A pooled text vector for the DiT's `vector_in` (the Flux presets need CLIP's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled: Option<PooledText>,
    /// How a fresh DiT starts (ignored when weights are loaded).
    #[serde(default)]
    pub init: DitInit,
    /// Pretrained DiT weights a fresh run starts from: a FLUX.1 checkpoint (Black Forest Labs'
    /// single file, a diffusers `transformer/` directory or a whole `FluxPipeline` directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// The distilled guidance scale a DiT with `guidance_in` (FLUX.1-dev) is trained with;
    /// default 1.0. Sampling uses its own (`unireal-infer --distilled-guidance`, 3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// The DiT's shape when it came from `init_from`'s `transformer/config.json`: the trainer
    /// writes it into the run's config, so that its checkpoints do not need `init_from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dit: Option<unireal_model::DiTConfig>,
}

/// `model.pooled`: where the pooled text vector comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PooledText {
    /// A CLIP text tower (transformers `CLIPTextModel` directory; FLUX.1's `text_encoder/`),
    /// its pooled output at 77 tokens; `tokenizer` defaults to `path` (FLUX.1: `tokenizer/`,
    /// whose vocab.json + merges.txt are read when there is no tokenizer.json).
    Clip {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokenizer: Option<PathBuf>,
    },
}

/// `model.init`: the initialisation of a fresh DiT.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DitInit {
    /// Each layer's own initialisation.
    #[default]
    Default,
    /// Image attention starts as a same-position lookup across frames
    /// ([`unireal_model::init::LookupInit`]): the model reads its inputs from the first steps.
    Lookup {
        #[serde(default = "DitInit::default_gain")]
        gain: f64,
        #[serde(default = "DitInit::default_norm_scale")]
        norm_scale: f64,
    },
}

impl DitInit {
    fn default_gain() -> f64 {
        unireal_model::init::LookupInit::new().gain
    }

    fn default_norm_scale() -> f64 {
        unireal_model::init::LookupInit::new().norm_scale
    }
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
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TextConfig {
    /// A small T5 encoder over UTF-8 bytes, trained with the DiT (no files needed).
    Bytes(BytesText),
    /// A Hugging Face T5 directory (config.json, tokenizer.json, model.safetensors), frozen.
    T5(T5Text),
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig::Bytes(BytesText::default())
    }
}

/// `text: {kind: bytes, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BytesText {
    pub width: usize,
    pub layers: usize,
    /// Tokens (bytes + the end token) per prompt.
    pub max_len: usize,
}

impl Default for BytesText {
    fn default() -> Self {
        BytesText { width: 64, layers: 2, max_len: 128 }
    }
}

/// `text: {kind: t5, path: DIR, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct T5Text {
    pub path: PathBuf,
    /// The directory with `tokenizer.json`, when it is not `path` (FLUX.1: `tokenizer_2/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    #[serde(default = "T5Text::default_max_len")]
    pub max_len: usize,
    /// Every prompt padded to `max_len` and the padding attended to, in T5 and in the DiT:
    /// how Flux was trained (diffusers' `FluxPipeline`: 512 tokens for dev, 256 for schnell).
    /// Default false: padded to the batch's longest prompt and masked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmasked: bool,
}

impl T5Text {
    /// A T5 directory holding its own tokenizer, prompts padded per batch and masked.
    pub fn new(path: PathBuf, max_len: usize) -> Self {
        T5Text { path, tokenizer: None, max_len, unmasked: false }
    }

    /// The directory with `tokenizer.json`.
    pub fn tokenizer_dir(&self) -> &std::path::Path {
        self.tokenizer.as_deref().unwrap_or(&self.path)
    }

    /// The byte encoder's default length: both encoders see prompts of one length.
    fn default_max_len() -> usize {
        BytesText::default().max_len
    }
}

/// The timestep shift: a number, or `auto` for Flux's resolution-dependent shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Shift {
    Fixed(f64),
    Named(String),
}

impl Default for Shift {
    fn default() -> Self {
        Shift::Fixed(1.0)
    }
}

impl Shift {
    /// The shift for a frame of this many image tokens (`auto`: Flux's line through
    /// 256 → 0.5 and 4096 → 1.15, exponentiated).
    pub fn for_tokens(&self, tokens: usize) -> f64 {
        match self {
            Shift::Fixed(s) => *s,
            Shift::Named(_) => resolution_shift(tokens, FLUX_SHIFT_ANCHORS.0, FLUX_SHIFT_ANCHORS.1),
        }
    }

    /// Checks what serde cannot: the only name is `auto`.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Shift::Named(n) if n != "auto" => Err(format!("`{n}` (a number or `auto`)")),
            Shift::Fixed(s) if !(*s > 0.0 && s.is_finite()) => Err(format!("{s} must be positive")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_is_fixed_or_flux_auto() {
        assert_eq!(Shift::Fixed(3.0).for_tokens(4096), 3.0);
        let auto = Shift::Named("auto".into());
        // Flux's anchors: 256 tokens → e^0.5, 4096 → e^1.15, linear in between.
        assert!((auto.for_tokens(256) - 0.5f64.exp()).abs() < 1e-12);
        assert!((auto.for_tokens(4096) - 1.15f64.exp()).abs() < 1e-12);
        let mid = auto.for_tokens(2176);
        assert!((mid.ln() - 0.825).abs() < 1e-9, "{mid}");
        assert!(auto.validate().is_ok());
        assert!(Shift::Named("flux".into()).validate().is_err());
        assert!(Shift::Fixed(0.0).validate().is_err());
    }

    #[test]
    fn text_config_reads_both_kinds_and_rejects_unknown_keys() {
        let bytes: TextConfig = serde_yaml::from_str("{kind: bytes, width: 32}").unwrap();
        assert_eq!(bytes, TextConfig::Bytes(BytesText { width: 32, ..BytesText::default() }));
        let t5: TextConfig = serde_yaml::from_str("{kind: t5, path: /m}").unwrap();
        assert_eq!(t5, TextConfig::T5(T5Text::new("/m".into(), 128)));
        let yaml = serde_yaml::to_string(&t5).unwrap();
        assert!(!yaml.contains("unmasked") && !yaml.contains("tokenizer"), "{yaml}");
        assert!(serde_yaml::from_str::<TextConfig>("{kind: bytes, widht: 32}").is_err());
        // The written form is the one read.
        let yaml = serde_yaml::to_string(&bytes).unwrap();
        assert!(yaml.contains("kind: bytes") && yaml.contains("width: 32"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<TextConfig>(&yaml).unwrap(), bytes);
    }
}
