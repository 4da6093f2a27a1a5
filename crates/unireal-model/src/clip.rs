//! CLIP's text and vision towers with their projections, as Hugging Face's `CLIPModel`,
//! `CLIPTextModel[WithProjection]` and `CLIPVisionModel[WithProjection]` (transformers'
//! `models/clip/modeling_clip.py`); the modules carry the same tensor names, so a checkpoint
//! loads with no remapping. Flux feeds the text tower's pooled output to `vector_in`; the
//! evaluation metrics (CLIP_dir, CLIP_im, CLIP-T/I) use both towers' projected embeddings.
//! [`crate::ImageProcessor`] is `CLIPImageProcessor` (shortest-edge bicubic resize as PIL does it
//! on 8-bit pixels, centre crop, rescale, normalise) from `preprocessor_config.json`.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};

use crate::layers::{merge_heads, sdpa, split_heads};
use crate::ModelError;

/// The text tower's hyper-parameters, named as in transformers' `CLIPTextConfig`.
#[derive(Config, Debug, PartialEq)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[config(default = 77)]
    pub max_position_embeddings: usize,
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// `hidden_act: quick_gelu` (OpenAI's checkpoints) rather than exact `gelu`.
    #[config(default = true)]
    pub quick_gelu: bool,
    /// The pooled output is the state at the first `eos_token_id`; 2, the value of configs
    /// written before transformers 4.31, means the highest token id (OpenAI's `<|endoftext|>`).
    #[config(default = 2)]
    pub eos_token_id: usize,
}

/// The vision tower's hyper-parameters, named as in transformers' `CLIPVisionConfig`.
#[derive(Config, Debug, PartialEq)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    #[config(default = true)]
    pub quick_gelu: bool,
}

/// A CLIP checkpoint's towers: both (`CLIPModel`) or one, with or without its projection.
#[derive(Config, Debug, PartialEq)]
pub struct ClipConfig {
    pub text: Option<ClipTextConfig>,
    pub vision: Option<ClipVisionConfig>,
    /// Width of the shared embedding space; None for towers without projections
    /// (`CLIPTextModel`, Flux's `text_encoder`).
    pub projection_dim: Option<usize>,
}

impl ClipConfig {
    /// openai/clip-vit-large-patch14 (ViT-L/14, 224 px; Flux's `text_encoder` is its text tower).
    pub fn vit_l_14() -> Self {
        ClipConfig {
            text: Some(ClipTextConfig::new(49408, 768, 3072, 12, 12)),
            vision: Some(ClipVisionConfig::new(1024, 4096, 24, 16, 224, 14)),
            projection_dim: Some(768),
        }
    }

    /// openai/clip-vit-base-patch32 (ViT-B/32, 224 px).
    pub fn vit_b_32() -> Self {
        ClipConfig {
            text: Some(ClipTextConfig::new(49408, 512, 2048, 12, 8)),
            vision: Some(ClipVisionConfig::new(768, 3072, 12, 12, 224, 32)),
            projection_dim: Some(512),
        }
    }

    /// Reads a transformers `config.json`: a `CLIPModel`'s (`text_config` + `vision_config`)
    /// or a single tower's (`model_type` `clip_text_model` / `clip_vision_model`). Projections
    /// are built for `CLIPModel` and the `…WithProjection` architectures.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("CLIP config.json: {e}")))?;
        let arch = v["architectures"].get(0).and_then(|a| a.as_str()).unwrap_or("");
        let projected = arch == "CLIPModel" || arch.ends_with("WithProjection");
        let model_type = v["model_type"].as_str().unwrap_or("");
        let (text_v, vision_v) = match model_type {
            "clip" => (Some(&v["text_config"]), Some(&v["vision_config"])),
            "clip_text_model" => (Some(&v), None),
            "clip_vision_model" => (None, Some(&v)),
            other => {
                return Err(ModelError::Config(format!(
                    "CLIP config.json: model_type `{other}` is not clip, clip_text_model or clip_vision_model"
                )))
            }
        };
        let text = text_v.map(parse_text).transpose()?;
        let vision = vision_v.map(parse_vision).transpose()?;
        let projection_dim = if projected {
            let p = v["projection_dim"].as_u64().ok_or_else(|| {
                ModelError::Config(format!("CLIP config.json: `{arch}` without an integer `projection_dim`"))
            })?;
            Some(p as usize)
        } else {
            None
        };
        Ok(ClipConfig { text, vision, projection_dim })
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Clip<B> {
        let proj = |d: usize| self.projection_dim.map(|p| LinearConfig::new(d, p).with_bias(false).init(device));
        Clip {
            text_projection: self.text.as_ref().and_then(|t| proj(t.hidden_size)),
            visual_projection: self.vision.as_ref().and_then(|v| proj(v.hidden_size)),
            text_model: self.text.as_ref().map(|t| t.init(device)),
            vision_model: self.vision.as_ref().map(|v| v.init(device)),
        }
    }

    /// Reads `DIR/config.json` and loads `DIR/model.safetensors` (or its sharded index) into
    /// the towers it describes, every tensor required (`logit_scale` is not used).
    pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Clip<B>, crate::LoadReport), ModelError> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        let cfg = ClipConfig::from_hf_json(&text).map_err(|e| {
            ModelError::Config(format!("{}: {}", path.display(), e.to_string().trim_start_matches("config: ")))
        })?;
        let mut clip = cfg.init::<B>(device);
        // A single tower saved by transformers 5 has no `text_model.` / `vision_model.` prefix
        // (4.x wrote one, as FLUX.1's text_encoder has it).
        let remap: &[(&str, &str)] = match (&cfg.text, &cfg.vision) {
            (Some(_), None) => &[(r"^(embeddings|encoder|final_layer_norm)\.", "text_model.$1.")],
            (None, Some(_)) => &[(r"^(embeddings|encoder|pre_layrnorm|post_layernorm)\.", "vision_model.$1.")],
            _ => &[],
        };
        let report = crate::load_safetensors(
            &mut clip,
            &crate::weights_in(dir, crate::weights::TRANSFORMERS_WEIGHTS)?,
            remap,
            crate::LoadOptions { strict: true, only: None },
        )?;
        Ok((clip, report))
    }
}

fn field(v: &serde_json::Value, tower: &str, k: &str) -> Result<usize, ModelError> {
    v[k].as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| ModelError::Config(format!("CLIP config.json: {tower} lacks an integer `{k}`")))
}

fn quick_gelu(v: &serde_json::Value, tower: &str) -> Result<bool, ModelError> {
    match v["hidden_act"].as_str().unwrap_or("quick_gelu") {
        "quick_gelu" => Ok(true),
        "gelu" => Ok(false),
        other => Err(ModelError::Config(format!(
            "CLIP config.json: {tower} hidden_act `{other}` is not supported (quick_gelu or gelu)"
        ))),
    }
}

fn parse_text(v: &serde_json::Value) -> Result<ClipTextConfig, ModelError> {
    let t = "text_config";
    let mut c = ClipTextConfig::new(
        field(v, t, "vocab_size")?,
        field(v, t, "hidden_size")?,
        field(v, t, "intermediate_size")?,
        field(v, t, "num_hidden_layers")?,
        field(v, t, "num_attention_heads")?,
    )
    .with_quick_gelu(quick_gelu(v, t)?);
    if let Some(n) = v["max_position_embeddings"].as_u64() {
        c.max_position_embeddings = n as usize;
    }
    if let Some(e) = v["eos_token_id"].as_u64() {
        c.eos_token_id = e as usize;
    }
    if let Some(e) = v["layer_norm_eps"].as_f64() {
        c.layer_norm_eps = e;
    }
    Ok(c)
}

fn parse_vision(v: &serde_json::Value) -> Result<ClipVisionConfig, ModelError> {
    let t = "vision_config";
    let mut c = ClipVisionConfig::new(
        field(v, t, "hidden_size")?,
        field(v, t, "intermediate_size")?,
        field(v, t, "num_hidden_layers")?,
        field(v, t, "num_attention_heads")?,
        field(v, t, "image_size")?,
        field(v, t, "patch_size")?,
    )
    .with_quick_gelu(quick_gelu(v, t)?);
    if let Some(n) = v["num_channels"].as_u64() {
        c.num_channels = n as usize;
    }
    if let Some(e) = v["layer_norm_eps"].as_f64() {
        c.layer_norm_eps = e;
    }
    Ok(c)
}

/// Both towers and their projections; a checkpoint may hold only some of them.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    pub text_model: Option<ClipTextTransformer<B>>,
    pub vision_model: Option<ClipVisionTransformer<B>>,
    pub text_projection: Option<Linear<B>>,
    pub visual_projection: Option<Linear<B>>,
}

impl<B: Backend> Clip<B> {
    /// The text tower's output and, with a projection, the text embeddings.
    ///
    /// # Shapes
    /// - ids: `[batch, tokens]` (tokens ≤ max_position_embeddings); pad: `[batch, tokens]`,
    ///   true at padding (None: every token attends, as Flux's pipeline calls it)
    /// - returns hidden `[batch, tokens, hidden]`, pooled `[batch, hidden]`, embeds
    ///   `[batch, projection_dim]`
    pub fn encode_text(
        &self,
        ids: Tensor<B, 2, Int>,
        pad: Option<Tensor<B, 2, Bool>>,
    ) -> Result<ClipOutput<B>, ModelError> {
        let tower = self.text_model.as_ref().ok_or_else(|| ModelError::Config("this CLIP has no text tower".into()))?;
        let (hidden, pooled) = tower.forward(ids, pad);
        let embeds = self.text_projection.as_ref().map(|p| p.forward(pooled.clone()));
        Ok(ClipOutput { hidden, pooled, embeds })
    }

    /// The vision tower's output and, with a projection, the image embeddings.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image_size, image_size]`, as [`crate::ImageProcessor`] makes them
    /// - returns hidden `[batch, 1 + patches, hidden]`, pooled `[batch, hidden]`, embeds
    ///   `[batch, projection_dim]`
    pub fn encode_image(&self, pixels: Tensor<B, 4>) -> Result<ClipOutput<B>, ModelError> {
        let tower =
            self.vision_model.as_ref().ok_or_else(|| ModelError::Config("this CLIP has no vision tower".into()))?;
        let (hidden, pooled) = tower.forward(pixels)?;
        let embeds = self.visual_projection.as_ref().map(|p| p.forward(pooled.clone()));
        Ok(ClipOutput { hidden, pooled, embeds })
    }
}

/// CLIP's tokenizer in `dir`: its `tokenizer.json`, or else one built from the slow
/// tokenizer's `vocab.json` and `merges.txt` (what FLUX.1's `tokenizer/` holds) with the
/// pipeline transformers' `CLIPTokenizer` gives it: NFC, whitespace runs to one space, lower
/// case; CLIP's word pattern then byte-level; BPE with `</w>` word ends;
/// `<|startoftext|> … <|endoftext|>`. Padding is `<|endoftext|>`.
pub fn clip_tokenizer(dir: &Path, max_len: usize) -> Result<crate::TextTokenizer, ModelError> {
    const PAD: &str = "<|endoftext|>";
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return crate::TextTokenizer::from_file(&json, PAD, max_len);
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| {
            ModelError::Tokenizer(format!(
                "{}: neither tokenizer.json nor the slow tokenizer's vocab.json + merges.txt: {e}",
                dir.display()
            ))
        })
    };
    let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read("vocab.json")?)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", dir.join("vocab.json").display())))?;
    let merges_txt = read("merges.txt")?;
    let merges: Vec<&str> = merges_txt.lines().filter(|l| !l.starts_with("#version") && !l.trim().is_empty()).collect();
    let id = |t: &str| {
        vocab.get(t).and_then(|v| v.as_u64()).ok_or_else(|| {
            ModelError::Tokenizer(format!("{}: vocab.json has no `{t}`", dir.join("vocab.json").display()))
        })
    };
    let (bos, eos) = (id("<|startoftext|>")?, id(PAD)?);
    let special = |content: &str, id: u64| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special("<|startoftext|>", bos), special(PAD, eos)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [PAD, eos], "cls": ["<|startoftext|>", bos],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": PAD, "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    let inner: tokenizers::Tokenizer = tokenizer
        .to_string()
        .parse()
        .map_err(|e| ModelError::Tokenizer(format!("{}: building CLIP's tokenizer: {e}", dir.display())))?;
    crate::TextTokenizer::from_tokenizer(inner, PAD, max_len)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", dir.display())))
}

/// CLIP's text tower with its tokenizer, as Flux uses it: prompts padded to 77 tokens, no
/// attention mask, the pooled output.
pub struct ClipText<B: Backend> {
    pub tokenizer: crate::TextTokenizer,
    pub clip: Clip<B>,
}

impl<B: Backend> ClipText<B> {
    /// A text tower directory (`config.json` + weights) and its tokenizer directory (for
    /// FLUX.1: `text_encoder/` and `tokenizer/`).
    pub fn load(model_dir: &Path, tokenizer_dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let (clip, _) = ClipConfig::load::<B>(model_dir, device)?;
        let max_len = clip
            .text_model
            .as_ref()
            .map(|t| t.embeddings.position_embedding.weight.dims()[0])
            .ok_or_else(|| ModelError::Config(format!("{}: a CLIP without a text tower", model_dir.display())))?;
        Ok(ClipText { tokenizer: clip_tokenizer(tokenizer_dir, max_len)?, clip })
    }

    /// The text tower's pooled output for each prompt, padded to the tower's length (77) and
    /// run without a mask, as diffusers' `FluxPipeline._get_clip_prompt_embeds` runs it.
    ///
    /// # Shapes
    /// - returns `[prompts, hidden]`
    pub fn pooled(&self, prompts: &[&str], device: &B::Device) -> Result<Tensor<B, 2>, ModelError> {
        let (ids, _) = self.tokenizer.encode_to_max_len(prompts)?.to_tensors::<B>(device);
        Ok(self.clip.encode_text(ids, None)?.pooled)
    }
}

/// A tower's `last_hidden_state`, `pooler_output` and projected embeddings (when projected).
#[derive(Debug, Clone)]
pub struct ClipOutput<B: Backend> {
    pub hidden: Tensor<B, 3>,
    pub pooled: Tensor<B, 2>,
    pub embeds: Option<Tensor<B, 2>>,
}

/// Multi-head self-attention with biased q/k/v/out projections.
#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]`; mask: `[batch, heads, tokens, tokens]`, true where hidden
    /// - returns `[batch, tokens, d]`
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let q = split_heads(self.q_proj.forward(x.clone()), self.heads);
        let k = split_heads(self.k_proj.forward(x.clone()), self.heads);
        let v = split_heads(self.v_proj.forward(x), self.heads);
        self.out_proj.forward(merge_heads(sdpa(q, k, v, mask, None, None)))
    }
}

/// fc1 → quick_gelu (x·σ(1.702x)) or gelu → fc2.
#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub quick_gelu: bool,
}

impl<B: Backend> ClipMlp<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]` → `[batch, tokens, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        self.fc2.forward(h)
    }
}

/// A pre-LayerNorm transformer layer.
#[derive(Module, Debug)]
pub struct ClipLayer<B: Backend> {
    pub self_attn: ClipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: ClipMlp<B>,
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipLayer<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]` → `[batch, tokens, d]`
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// The stack of layers.
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub layers: Vec<ClipLayer<B>>,
}

impl<B: Backend> ClipEncoder<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]` → `[batch, tokens, d]`
    pub fn forward(&self, mut x: Tensor<B, 3>, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        for layer in &self.layers {
            x = layer.forward(x, mask.clone());
        }
        x
    }
}

fn encoder<B: Backend>(
    d: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    eps: f64,
    quick: bool,
    device: &B::Device,
) -> ClipEncoder<B> {
    let linear = |i, o| LinearConfig::new(i, o).init(device);
    let norm = || LayerNormConfig::new(d).with_epsilon(eps).init(device);
    ClipEncoder {
        layers: (0..layers)
            .map(|_| ClipLayer {
                self_attn: ClipAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    heads,
                },
                layer_norm1: norm(),
                mlp: ClipMlp { fc1: linear(d, ff), fc2: linear(ff, d), quick_gelu: quick },
                layer_norm2: norm(),
            })
            .collect(),
    }
}

/// Token and absolute position embeddings.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings<B: Backend> {
    pub token_embedding: Embedding<B>,
    pub position_embedding: Embedding<B>,
}

/// The text tower: causal self-attention over token + position embeddings, a final
/// LayerNorm, pooled at the end-of-text token.
#[derive(Module, Debug)]
pub struct ClipTextTransformer<B: Backend> {
    pub embeddings: ClipTextEmbeddings<B>,
    pub encoder: ClipEncoder<B>,
    pub final_layer_norm: LayerNorm<B>,
    pub eos_token_id: usize,
    pub heads: usize,
}

impl ClipTextConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipTextTransformer<B> {
        let d = self.hidden_size;
        ClipTextTransformer {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(self.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(self.max_position_embeddings, d).init(device),
            },
            encoder: encoder(
                d,
                self.intermediate_size,
                self.num_hidden_layers,
                self.num_attention_heads,
                self.layer_norm_eps,
                self.quick_gelu,
                device,
            ),
            final_layer_norm: LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device),
            eos_token_id: self.eos_token_id,
            heads: self.num_attention_heads,
        }
    }
}

impl<B: Backend> ClipTextTransformer<B> {
    /// # Shapes
    /// - ids: `[batch, tokens]`; pad: `[batch, tokens]`, true at padding
    /// - returns the last hidden state `[batch, tokens, d]` and the pooled state `[batch, d]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Option<Tensor<B, 2, Bool>>) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [b, l] = ids.dims();
        let device = ids.device();
        let host: Vec<i64> = ids.to_data().convert::<i64>().to_vec().unwrap_or_default();
        let positions = Tensor::<B, 1, Int>::arange(0..l as i64, &device).unsqueeze::<2>();
        let x = self.embeddings.token_embedding.forward(ids) + self.embeddings.position_embedding.forward(positions);
        // Causal: query i sees keys j ≤ i; padding keys are hidden too.
        let causal = Tensor::<B, 2, Bool>::tril_mask([l, l], 0, &device).unsqueeze::<4>().expand([b, self.heads, l, l]);
        let mask = match pad {
            Some(p) => causal.bool_or(p.unsqueeze_dims::<4>(&[1, 2]).expand([b, self.heads, l, l])),
            None => causal,
        };
        let hidden = self.final_layer_norm.forward(self.encoder.forward(x, Some(mask)));
        let d = hidden.dims()[2];
        let rows: Vec<Tensor<B, 3>> = (0..b)
            .map(|i| {
                let row = &host[i * l..(i + 1) * l];
                let at = self.pooled_position(row);
                hidden.clone().slice([i..i + 1, at..at + 1, 0..d])
            })
            .collect();
        let pooled = Tensor::cat(rows, 0).reshape([b, d]);
        (hidden, pooled)
    }

    /// Where a sequence is pooled: its first `eos_token_id`, or (legacy configs with
    /// `eos_token_id` 2) its first highest id; the last token when neither is found.
    fn pooled_position(&self, row: &[i64]) -> usize {
        if self.eos_token_id == 2 {
            let max = row.iter().copied().max().unwrap_or(0);
            return row.iter().position(|&t| t == max).unwrap_or(0);
        }
        row.iter().position(|&t| t == self.eos_token_id as i64).unwrap_or(row.len().saturating_sub(1))
    }
}

/// Patch embedding (a stride-`patch` convolution without bias), the class token and absolute
/// position embeddings.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    pub class_embedding: Param<Tensor<B, 1>>,
    pub patch_embedding: Conv2d<B>,
    pub position_embedding: Embedding<B>,
    pub image_size: usize,
}

/// The vision tower: ViT with a class token, `pre_layrnorm` (sic, the checkpoints' name)
/// before the layers and `post_layernorm` on the pooled class token.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer<B: Backend> {
    pub embeddings: ClipVisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: ClipEncoder<B>,
    pub post_layernorm: LayerNorm<B>,
}

impl ClipVisionConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipVisionTransformer<B> {
        let d = self.hidden_size;
        let p = self.patch_size;
        let patches = (self.image_size / p).pow(2);
        ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Initializer::Normal { mean: 0.0, std: 0.02 }.init([d], device),
                patch_embedding: Conv2dConfig::new([self.num_channels, d], [p, p])
                    .with_stride([p, p])
                    .with_bias(false)
                    .init(device),
                position_embedding: EmbeddingConfig::new(patches + 1, d).init(device),
                image_size: self.image_size,
            },
            pre_layrnorm: LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device),
            encoder: encoder(
                d,
                self.intermediate_size,
                self.num_hidden_layers,
                self.num_attention_heads,
                self.layer_norm_eps,
                self.quick_gelu,
                device,
            ),
            post_layernorm: LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device),
        }
    }
}

impl<B: Backend> ClipVisionTransformer<B> {
    /// # Shapes
    /// - pixels: `[batch, channels, image_size, image_size]`
    /// - returns the last hidden state `[batch, 1 + patches, d]` and the pooled state `[batch, d]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Result<(Tensor<B, 3>, Tensor<B, 2>), ModelError> {
        let [b, _, h, w] = pixels.dims();
        let size = self.embeddings.image_size;
        if h != size || w != size {
            return Err(ModelError::Config(format!(
                "CLIP's vision tower takes {size}x{size} px images, got {w}x{h} (preprocess them with ImageProcessor)"
            )));
        }
        let patches = self.embeddings.patch_embedding.forward(pixels); // [b, d, gh, gw]
        let [_, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = self.embeddings.class_embedding.val().reshape([1, 1, d]).expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, patches], 1) + self.embeddings.position_embedding.weight.val().unsqueeze::<3>();
        let hidden = self.encoder.forward(self.pre_layrnorm.forward(x), None);
        let pooled = self.post_layernorm.forward(hidden.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]));
        Ok((hidden, pooled))
    }
}
