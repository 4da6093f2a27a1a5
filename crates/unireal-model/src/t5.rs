//! T5 encoder, v1.1 layout (RMS layer norm, bucketed relative position bias in the first layer,
//! gated-GELU feed-forward, no attention scaling), following Hugging Face's
//! `modeling_t5.py`. Parameter names map one-to-one onto `T5EncoderModel` safetensors through
//! [`T5Config::hf_key_remap`]; the tokenizer is a Hugging Face `tokenizer.json`.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

use crate::layers::{merge_heads, sdpa, split_heads};
use crate::ModelError;

/// Hyper-parameters, named as in Hugging Face's `T5Config`.
#[derive(Config, Debug, PartialEq)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[config(default = 32)]
    pub relative_attention_num_buckets: usize,
    #[config(default = 128)]
    pub relative_attention_max_distance: usize,
    #[config(default = 1e-6)]
    pub layer_norm_epsilon: f64,
}

impl T5Config {
    /// A tiny encoder for tests and the tiny training preset.
    pub fn tiny(vocab_size: usize) -> Self {
        T5Config::new(vocab_size, 64, 16, 128, 2, 4)
    }

    /// google/t5-v1_1-xxl's encoder (the text encoder of Flux and SD3), 4096 wide.
    pub fn v1_1_xxl() -> Self {
        T5Config::new(32128, 4096, 64, 10240, 24, 64)
    }

    /// google/t5-v1_1-base's encoder.
    pub fn v1_1_base() -> Self {
        T5Config::new(32128, 768, 64, 2048, 12, 12)
    }

    /// Reads the fields above from a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        let get = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("T5 config.json: missing integer field `{k}`")))
        };
        if let Some(p) = v.get("feed_forward_proj").and_then(|p| p.as_str()) {
            if p != "gated-gelu" {
                return Err(ModelError::Config(format!(
                    "T5 config.json: feed_forward_proj `{p}` is not supported (only v1.1's gated-gelu)"
                )));
            }
        }
        let mut c = T5Config::new(
            get("vocab_size")?,
            get("d_model")?,
            get("d_kv")?,
            get("d_ff")?,
            get("num_layers")?,
            get("num_heads")?,
        );
        if let Ok(n) = get("relative_attention_num_buckets") {
            c.relative_attention_num_buckets = n;
        }
        if let Ok(n) = get("relative_attention_max_distance") {
            c.relative_attention_max_distance = n;
        }
        if let Some(e) = v.get("layer_norm_epsilon").and_then(|x| x.as_f64()) {
            c.layer_norm_epsilon = e;
        }
        Ok(c)
    }

    /// Hugging Face `T5EncoderModel` names → this module's names (regex, replacement), applied
    /// in order.
    pub fn hf_key_remap() -> Vec<(&'static str, &'static str)> {
        vec![
            (r"^encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "relative_attention_bias."),
            (r"^(shared|encoder\.embed_tokens)\.weight$", "embed_tokens.weight"),
            (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", "block.$1.attention."),
            (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", "block.$1.attention_norm."),
            (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.", "block.$1.ff."),
            (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", "block.$1.ff_norm."),
            (r"^encoder\.final_layer_norm\.", "final_layer_norm."),
        ]
    }

    /// Parameters of the encoder this config builds, counted without building it.
    pub fn num_params(&self) -> usize {
        let (d, inner) = (self.d_model, self.num_heads * self.d_kv);
        let block = 4 * d * inner + 3 * d * self.d_ff + 2 * d;
        self.vocab_size * d + self.relative_attention_num_buckets * self.num_heads + self.num_layers * block + d
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> T5Encoder<B> {
        let inner = self.num_heads * self.d_kv;
        let lin = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .with_initializer(Initializer::Normal { mean: 0.0, std: (i as f64).powf(-0.5) })
                .init(device)
        };
        let norm =
            || T5LayerNorm { weight: Initializer::Ones.init([self.d_model], device), eps: self.layer_norm_epsilon };
        T5Encoder {
            embed_tokens: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            relative_attention_bias: EmbeddingConfig::new(self.relative_attention_num_buckets, self.num_heads)
                .init(device),
            block: (0..self.num_layers)
                .map(|_| T5Block {
                    attention: T5Attention {
                        q: lin(self.d_model, inner),
                        k: lin(self.d_model, inner),
                        v: lin(self.d_model, inner),
                        o: lin(inner, self.d_model),
                    },
                    attention_norm: norm(),
                    ff: T5GatedFf {
                        wi_0: lin(self.d_model, self.d_ff),
                        wi_1: lin(self.d_model, self.d_ff),
                        wo: lin(self.d_ff, self.d_model),
                    },
                    ff_norm: norm(),
                })
                .collect(),
            final_layer_norm: norm(),
            num_heads: self.num_heads,
            num_buckets: self.relative_attention_num_buckets,
            max_distance: self.relative_attention_max_distance,
        }
    }
}

/// T5's RMS norm: `weight · x / sqrt(mean(x²) + eps)` (no mean subtraction, no bias).
#[derive(Module, Debug)]
pub struct T5LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> T5LayerNorm<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d_model]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let var = x.clone().square().mean_dim(2);
        x / (var + self.eps).sqrt() * self.weight.val().unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct T5Attention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
}

#[derive(Module, Debug)]
pub struct T5GatedFf<B: Backend> {
    pub wi_0: Linear<B>,
    pub wi_1: Linear<B>,
    pub wo: Linear<B>,
}

#[derive(Module, Debug)]
pub struct T5Block<B: Backend> {
    pub attention: T5Attention<B>,
    pub attention_norm: T5LayerNorm<B>,
    pub ff: T5GatedFf<B>,
    pub ff_norm: T5LayerNorm<B>,
}

/// The encoder stack.
#[derive(Module, Debug)]
pub struct T5Encoder<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub relative_attention_bias: Embedding<B>,
    pub block: Vec<T5Block<B>>,
    pub final_layer_norm: T5LayerNorm<B>,
    pub num_heads: usize,
    pub num_buckets: usize,
    pub max_distance: usize,
}

/// Hugging Face's `_relative_position_bucket` for a bidirectional encoder.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> i64 {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let rel = relative.abs();
    let max_exact = half / 2;
    if rel < max_exact {
        bucket += rel;
    } else {
        let large = max_exact
            + ((rel as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln()
                * (half - max_exact) as f32) as i64;
        bucket += large.min(half - 1);
    }
    bucket
}

impl<B: Backend> T5Encoder<B> {
    /// Relative position bias shared by all layers.
    ///
    /// # Shapes
    /// - returns `[1, heads, tokens, tokens]`
    pub fn position_bias(&self, len: usize, device: &B::Device) -> Tensor<B, 4> {
        let mut buckets = Vec::with_capacity(len * len);
        for q in 0..len as i64 {
            for k in 0..len as i64 {
                buckets.push(relative_position_bucket(k - q, self.num_buckets, self.max_distance));
            }
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [len, len]), device);
        // [len, len] -> [len, len, heads] -> [1, heads, len, len]
        self.relative_attention_bias.forward(ids).permute([2, 0, 1]).unsqueeze::<4>()
    }

    /// Encodes token ids; `pad` is true at padding positions, which no token attends to.
    ///
    /// # Shapes
    /// - ids: `[batch, tokens]`, pad: `[batch, tokens]` → `[batch, tokens, d_model]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let device = ids.device();
        let [b, l] = ids.dims();
        let mut bias = self.position_bias(l, &device).expand([b, self.num_heads, l, l]);
        if let Some(pad) = pad {
            // Hugging Face adds the dtype's minimum to masked keys' scores.
            let masked = pad.float().unsqueeze_dims::<4>(&[1, 2]).expand([b, self.num_heads, l, l]) * f32::MIN as f64;
            bias = bias + masked;
        }
        let mut x = self.embed_tokens.forward(ids);
        for block in &self.block {
            let h = block.attention_norm.forward(x.clone());
            let a = &block.attention;
            let (q, k, v) = (
                split_heads(a.q.forward(h.clone()), self.num_heads),
                split_heads(a.k.forward(h.clone()), self.num_heads),
                split_heads(a.v.forward(h), self.num_heads),
            );
            let attn = merge_heads(sdpa(q, k, v, None, Some(bias.clone()), Some(1.0)));
            x = x + a.o.forward(attn);
            let h = block.ff_norm.forward(x.clone());
            let f = &block.ff;
            x = x + f.wo.forward(gelu_approximate(f.wi_0.forward(h.clone())) * f.wi_1.forward(h));
        }
        self.final_layer_norm.forward(x)
    }
}

/// A padded batch of token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[batch][len]`, padded with the pad id.
    pub ids: Vec<Vec<u32>>,
    /// `[batch][len]`, true at padding.
    pub pad: Vec<Vec<bool>>,
    pub len: usize,
}

impl TokenBatch {
    /// # Shapes
    /// - returns ids `[batch, len]` and the padding mask `[batch, len]`
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        let b = self.ids.len();
        let ids: Vec<i64> = self.ids.iter().flatten().map(|&i| i as i64).collect();
        let pad: Vec<bool> = self.pad.iter().flatten().copied().collect();
        (
            Tensor::from_data(TensorData::new(ids, [b, self.len]), device),
            Tensor::from_data(TensorData::new(pad, [b, self.len]), device),
        )
    }
}

/// A Hugging Face `tokenizer.json` (T5's SentencePiece-unigram one, or any other), with the
/// end-of-sequence token its post-processor appends, truncation and padding to the batch's
/// longest sequence.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
    max_len: usize,
}

impl TextTokenizer {
    /// `pad_token` is looked up in the vocabulary (T5: `<pad>`, id 0).
    pub fn from_file(path: &Path, pad_token: &str, max_len: usize) -> Result<Self, ModelError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_tokenizer(inner, pad_token, max_len)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// A tokenizer built in memory; the error names no file.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, pad_token: &str, max_len: usize) -> Result<Self, String> {
        let pad_id =
            inner.token_to_id(pad_token).ok_or_else(|| format!("the vocabulary has no pad token `{pad_token}`"))?;
        Ok(TextTokenizer { inner, pad_id, max_len })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokens `text` takes before truncation (with the special tokens the post-processor adds).
    pub fn count(&self, text: &str) -> Result<usize, ModelError> {
        let enc = self.inner.encode(text, true).map_err(|e| ModelError::Tokenizer(format!("{text:?}: {e}")))?;
        Ok(enc.get_ids().len())
    }

    /// Tokens kept per prompt; longer ones are cut at the end.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids padded to the batch's longest sequence (at most `max_len`).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TokenBatch, ModelError> {
        self.encode(texts, false)
    }

    /// Token ids each padded to `max_len`, as `padding="max_length"` does (how diffusers
    /// calls CLIP and T5 for Flux).
    pub fn encode_to_max_len(&self, texts: &[&str]) -> Result<TokenBatch, ModelError> {
        self.encode(texts, true)
    }

    fn encode(&self, texts: &[&str], to_max_len: bool) -> Result<TokenBatch, ModelError> {
        let mut ids = Vec::with_capacity(texts.len());
        for t in texts {
            let enc = self.inner.encode(*t, true).map_err(|e| ModelError::Tokenizer(format!("{t:?}: {e}")))?;
            let mut v = enc.get_ids().to_vec();
            if v.len() > self.max_len {
                // Keep the final special token (T5's `</s>`) when truncating.
                let last = v[v.len() - 1];
                v.truncate(self.max_len);
                if let Some(l) = v.last_mut() {
                    *l = last;
                }
            }
            ids.push(v);
        }
        let len = if to_max_len { self.max_len } else { ids.iter().map(Vec::len).max().unwrap_or(0).max(1) };
        let pad = ids.iter().map(|v| (0..len).map(|i| i >= v.len()).collect()).collect();
        for v in &mut ids {
            v.resize(len, self.pad_id);
        }
        Ok(TokenBatch { ids, pad, len })
    }
}

/// `DIR/tokenizer.json`, or an error with the way to write it when the directory has only
/// SentencePiece's `spiece.model` (as Google's T5 releases and some Flux copies ship).
pub fn tokenizer_json(dir: &Path) -> Result<std::path::PathBuf, ModelError> {
    let path = dir.join("tokenizer.json");
    if path.is_file() || !dir.join("spiece.model").is_file() {
        return Ok(path);
    }
    let d = dir.display();
    Err(ModelError::Hinted(unireal_core::Hinted::new(
        format!("{d} has spiece.model but no tokenizer.json, and only tokenizer.json (Hugging Face's fast tokenizer) is read"),
        format!(
            "write tokenizer.json beside it once, with transformers, sentencepiece and protobuf installed: \
             python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{d}').save_pretrained('{d}')\""
        ),
    )))
}

/// Tokenizer + encoder: prompts in, `[batch, tokens, d_model]` states and the padding mask out.
/// The DiT takes any `[batch, tokens, text_dim]` tensor, so precomputed embeddings can be
/// passed to it directly instead.
pub struct T5Text<B: Backend> {
    pub tokenizer: TextTokenizer,
    pub encoder: T5Encoder<B>,
}

impl<B: Backend> T5Text<B> {
    /// A T5 encoder directory and a separate tokenizer directory (FLUX.1's `text_encoder_2/`
    /// and `tokenizer_2/`).
    pub fn from_dirs(
        model_dir: &Path,
        tokenizer_dir: &Path,
        max_len: usize,
        device: &B::Device,
    ) -> Result<(Self, crate::LoadReport), ModelError> {
        let path = model_dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        let cfg = T5Config::from_hf_json(&text)?;
        let tokenizer = TextTokenizer::from_file(&tokenizer_json(tokenizer_dir)?, "<pad>", max_len)?;
        let mut encoder = cfg.init::<B>(device);
        let report = crate::load_safetensors(
            &mut encoder,
            &crate::weights_in(model_dir, crate::weights::TRANSFORMERS_WEIGHTS)?,
            &T5Config::hf_key_remap(),
            crate::LoadOptions { strict: true, only: None },
        )?;
        Ok((T5Text { tokenizer, encoder }, report))
    }

    /// Loads a Hugging Face T5 directory: `config.json`, `tokenizer.json` and
    /// `model.safetensors` or a sharded `model.safetensors.index.json` (a `T5EncoderModel` or a
    /// full T5: the decoder's tensors are unused; f16/bf16 tensors become f32).
    pub fn from_hf_dir(
        dir: &Path,
        max_len: usize,
        device: &B::Device,
    ) -> Result<(Self, crate::LoadReport), ModelError> {
        Self::from_dirs(dir, dir, max_len, device)
    }

    /// Every prompt padded to `max_len` and encoded without a mask, the padding attended
    /// to, as diffusers' `FluxPipeline._get_t5_prompt_embeds` does.
    ///
    /// # Shapes
    /// - returns states `[batch, max_len, d_model]`
    pub fn encode_unmasked(&self, prompts: &[&str], device: &B::Device) -> Result<Tensor<B, 3>, ModelError> {
        let (ids, _) = self.tokenizer.encode_to_max_len(prompts)?.to_tensors::<B>(device);
        Ok(self.encoder.forward(ids, None))
    }

    /// # Shapes
    /// - returns states `[batch, tokens, d_model]` and the padding mask `[batch, tokens]`
    pub fn encode(
        &self,
        prompts: &[&str],
        device: &B::Device,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 2, Bool>), ModelError> {
        let batch = self.tokenizer.encode_batch(prompts)?;
        let (ids, pad) = batch.to_tensors::<B>(device);
        Ok((self.encoder.forward(ids, Some(pad.clone())), pad))
    }
}
