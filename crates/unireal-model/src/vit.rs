//! DINO's vision transformers, which the evaluation's DINO metrics embed images with: DINO v1
//! as transformers' `ViTModel` (facebook/dino-vits16, facebook/dino-vitb16; the checkpoints
//! hold no pooler, and the metric is the final LayerNorm's class token) and DINOv2 as
//! `Dinov2Model` (facebook/dinov2-small/-base/-large: LayerScale after attention and MLP,
//! position embeddings interpolated bicubically to the input's patch grid). Both are read from
//! a transformers directory (`config.json` + `model.safetensors` or its sharded index) in the
//! tensor names `save_pretrained` writes (`encoder.layer.N.attention.attention.query`, …);
//! [`crate::ImageProcessor::from_dir`] reads the directory's preprocessing.
//! Follows transformers' `models/vit/modeling_vit.py` and `models/dinov2/modeling_dinov2.py`.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use crate::layers::{merge_heads, sdpa, split_heads};
use crate::ModelError;

/// A ViT's hyper-parameters, named as in transformers' `ViTConfig` / `Dinov2Config`.
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// The side the position embeddings were trained at.
    pub image_size: usize,
    pub patch_size: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    /// `ViTConfig`'s default; DINOv2's is 1e-6.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    #[config(default = true)]
    pub qkv_bias: bool,
    /// DINOv2's LayerScale (`layer_scale1`/`layer_scale2`) on each residual branch.
    #[config(default = false)]
    pub layer_scale: bool,
    /// DINOv2 interpolates its position embeddings to any input size; `ViTModel` (as the
    /// metrics call it) takes `image_size` only.
    #[config(default = false)]
    pub interpolate_positions: bool,
}

impl VitConfig {
    /// facebook/dino-vits16 (ViT-S/16, DINO v1), the DINO metric's model in DreamBench and
    /// MagicBrush.
    pub fn dino_vits16() -> Self {
        VitConfig::new(384, 1536, 12, 6, 224, 16)
    }

    /// facebook/dino-vitb16 (ViT-B/16, DINO v1).
    pub fn dino_vitb16() -> Self {
        VitConfig::new(768, 3072, 12, 12, 224, 16)
    }

    fn dinov2(hidden: usize, layers: usize, heads: usize) -> Self {
        VitConfig::new(hidden, 4 * hidden, layers, heads, 518, 14)
            .with_layer_norm_eps(1e-6)
            .with_layer_scale(true)
            .with_interpolate_positions(true)
    }

    /// facebook/dinov2-small (ViT-S/14).
    pub fn dinov2_small() -> Self {
        Self::dinov2(384, 12, 6)
    }

    /// facebook/dinov2-base (ViT-B/14).
    pub fn dinov2_base() -> Self {
        Self::dinov2(768, 12, 12)
    }

    /// facebook/dinov2-large (ViT-L/14).
    pub fn dinov2_large() -> Self {
        Self::dinov2(1024, 24, 16)
    }

    /// Reads a transformers `config.json` of `model_type` `vit` (DINO v1) or `dinov2`.
    /// DINOv2's SwiGLU MLP (dinov2-giant) and activations other than `gelu` are refused.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("ViT config.json: {e}")))?;
        let int = |k: &str| {
            v[k].as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("ViT config.json lacks an integer `{k}`")))
        };
        if let Some(act) = v["hidden_act"].as_str().filter(|a| *a != "gelu") {
            return Err(ModelError::Config(format!("ViT config.json: hidden_act `{act}` is not supported (gelu)")));
        }
        let model_type = v["model_type"].as_str().unwrap_or("");
        if model_type != "vit" && model_type != "dinov2" {
            return Err(ModelError::Config(format!(
                "ViT config.json: model_type `{model_type}` is not vit (DINO v1) or dinov2"
            )));
        }
        let hidden = int("hidden_size")?;
        let mut c = match model_type {
            "vit" => VitConfig::new(
                hidden,
                int("intermediate_size")?,
                int("num_hidden_layers")?,
                int("num_attention_heads")?,
                int("image_size")?,
                int("patch_size")?,
            ),
            "dinov2" => {
                if v["use_swiglu_ffn"].as_bool().unwrap_or(false) {
                    return Err(ModelError::Config(
                        "ViT config.json: DINOv2 with use_swiglu_ffn (dinov2-giant) is not supported".into(),
                    ));
                }
                let ratio = v["mlp_ratio"].as_f64().unwrap_or(4.0);
                VitConfig::new(
                    hidden,
                    (hidden as f64 * ratio) as usize,
                    int("num_hidden_layers")?,
                    int("num_attention_heads")?,
                    int("image_size")?,
                    int("patch_size")?,
                )
                .with_layer_norm_eps(1e-6)
                .with_layer_scale(true)
                .with_interpolate_positions(true)
            }
            _ => unreachable!("model_type checked above"),
        };
        if let Some(n) = v["num_channels"].as_u64() {
            c.num_channels = n as usize;
        }
        if let Some(e) = v["layer_norm_eps"].as_f64() {
            c.layer_norm_eps = e;
        }
        if let Some(b) = v["qkv_bias"].as_bool() {
            c.qkv_bias = b;
        }
        Ok(c)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        let d = self.hidden_size;
        let p = self.patch_size;
        let grid = self.image_size / p;
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        let scale = || self.layer_scale.then(|| LayerScale { lambda1: Initializer::Ones.init([d], device) });
        Vit {
            embeddings: VitEmbeddings {
                cls_token: Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, 1, d], device),
                position_embeddings: Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, grid * grid + 1, d], device),
                patch_embeddings: PatchEmbeddings {
                    projection: Conv2dConfig::new([self.num_channels, d], [p, p]).with_stride([p, p]).init(device),
                },
                image_size: self.image_size,
                patch_size: p,
                interpolate: self.interpolate_positions,
            },
            encoder: VitEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|_| VitLayer {
                        norm1: norm(),
                        attention: VitAttention {
                            attention: VitSelfAttention {
                                query: linear(d, d, self.qkv_bias),
                                key: linear(d, d, self.qkv_bias),
                                value: linear(d, d, self.qkv_bias),
                                heads: self.num_attention_heads,
                            },
                            output: VitSelfOutput { dense: linear(d, d, true) },
                        },
                        layer_scale1: scale(),
                        norm2: norm(),
                        mlp: VitMlp {
                            fc1: linear(d, self.intermediate_size, true),
                            fc2: linear(self.intermediate_size, d, true),
                        },
                        layer_scale2: scale(),
                    })
                    .collect(),
            },
            layernorm: norm(),
        }
    }

    /// Reads `DIR/config.json` and loads `DIR/model.safetensors` (or its sharded index), every
    /// tensor required. `ViTModel`'s `pooler` and DINOv2's `mask_token`, which the class token
    /// does not use, are reported unused.
    pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Vit<B>, crate::LoadReport), ModelError> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        let cfg = VitConfig::from_hf_json(&text).map_err(|e| {
            ModelError::Config(format!("{}: {}", path.display(), e.to_string().trim_start_matches("config: ")))
        })?;
        let mut vit = cfg.init::<B>(device);
        let report = crate::load_safetensors(
            &mut vit,
            &crate::weights_in(dir, crate::weights::TRANSFORMERS_WEIGHTS)?,
            VIT_REMAP,
            crate::LoadOptions { strict: true, only: None },
        )?;
        Ok((vit, report))
    }
}

/// transformers' ViT names → this module's (DINOv2's names are this module's): the
/// pre-norms and the MLP, and the prefix of a model saved with a head.
const VIT_REMAP: &[(&str, &str)] = &[
    (r"^(vit|dinov2)\.", ""),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", "encoder.layer.${1}.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", "encoder.layer.${1}.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", "encoder.layer.${1}.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", "encoder.layer.${1}.mlp.fc2."),
];

/// The stride-`patch` convolution that embeds patches.
#[derive(Module, Debug)]
pub struct PatchEmbeddings<B: Backend> {
    pub projection: Conv2d<B>,
}

/// The class token, the patch embedding and the absolute position embeddings.
#[derive(Module, Debug)]
pub struct VitEmbeddings<B: Backend> {
    pub cls_token: Param<Tensor<B, 3>>,
    pub position_embeddings: Param<Tensor<B, 3>>,
    pub patch_embeddings: PatchEmbeddings<B>,
    pub image_size: usize,
    pub patch_size: usize,
    pub interpolate: bool,
}

impl<B: Backend> VitEmbeddings<B> {
    /// The position embeddings for a `gh × gw` patch grid: as trained when it is the
    /// trained square grid, else (DINOv2) the patch part resized by PyTorch's bicubic
    /// `interpolate` (a = −0.75, `align_corners=False`), as `Dinov2Embeddings` does.
    ///
    /// # Shapes
    /// - returns `[1, 1 + gh·gw, d]`
    fn positions(&self, gh: usize, gw: usize) -> Tensor<B, 3> {
        let pos = self.position_embeddings.val();
        let [_, n, d] = pos.dims();
        if n - 1 == gh * gw && gh == gw {
            return pos;
        }
        let s = ((n - 1) as f64).sqrt().round() as usize;
        let host: Vec<f32> =
            pos.clone().slice([0..1, 1..n, 0..d]).into_data().convert::<f32>().to_vec().expect("converted to f32");
        let resized = crate::image_processor::torch_bicubic(&host, s, s, d, gh, gw);
        let device = pos.device();
        let patch = Tensor::<B, 1>::from_floats(resized.as_slice(), &device).reshape([1, gh * gw, d]);
        Tensor::cat(vec![pos.slice([0..1, 0..1, 0..d]), patch], 1)
    }
}

/// q/k/v projections of multi-head self-attention.
#[derive(Module, Debug)]
pub struct VitSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub heads: usize,
}

/// The attention's output projection.
#[derive(Module, Debug)]
pub struct VitSelfOutput<B: Backend> {
    pub dense: Linear<B>,
}

/// Multi-head self-attention (transformers' `ViTAttention` / `Dinov2Attention` layout).
#[derive(Module, Debug)]
pub struct VitAttention<B: Backend> {
    pub attention: VitSelfAttention<B>,
    pub output: VitSelfOutput<B>,
}

impl<B: Backend> VitAttention<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]` → `[batch, tokens, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let a = &self.attention;
        let q = split_heads(a.query.forward(x.clone()), a.heads);
        let k = split_heads(a.key.forward(x.clone()), a.heads);
        let v = split_heads(a.value.forward(x), a.heads);
        self.output.dense.forward(merge_heads(sdpa(q, k, v, None, None, None)))
    }
}

/// fc1 → gelu → fc2.
#[derive(Module, Debug)]
pub struct VitMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

/// DINOv2's per-channel scale of a residual branch.
#[derive(Module, Debug)]
pub struct LayerScale<B: Backend> {
    pub lambda1: Param<Tensor<B, 1>>,
}

/// A pre-LayerNorm transformer layer, with LayerScale in DINOv2.
#[derive(Module, Debug)]
pub struct VitLayer<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attention: VitAttention<B>,
    pub layer_scale1: Option<LayerScale<B>>,
    pub norm2: LayerNorm<B>,
    pub mlp: VitMlp<B>,
    pub layer_scale2: Option<LayerScale<B>>,
}

impl<B: Backend> VitLayer<B> {
    /// # Shapes
    /// - x: `[batch, tokens, d]` → `[batch, tokens, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let scaled = |h: Tensor<B, 3>, s: &Option<LayerScale<B>>| match s {
            Some(s) => h * s.lambda1.val().unsqueeze::<3>(),
            None => h,
        };
        let h = self.attention.forward(self.norm1.forward(x.clone()));
        let x = x + scaled(h, &self.layer_scale1);
        let h = self.mlp.fc2.forward(gelu(self.mlp.fc1.forward(self.norm2.forward(x.clone()))));
        x.clone() + scaled(h, &self.layer_scale2)
    }
}

/// The stack of layers.
#[derive(Module, Debug)]
pub struct VitEncoder<B: Backend> {
    pub layer: Vec<VitLayer<B>>,
}

/// A ViT without a head: embeddings, layers, the final LayerNorm.
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    pub embeddings: VitEmbeddings<B>,
    pub encoder: VitEncoder<B>,
    pub layernorm: LayerNorm<B>,
}

/// A ViT's `last_hidden_state` and its class token (DINO's image embedding).
#[derive(Debug, Clone)]
pub struct VitOutput<B: Backend> {
    pub hidden: Tensor<B, 3>,
    pub cls: Tensor<B, 2>,
}

impl<B: Backend> Vit<B> {
    /// # Shapes
    /// - pixels: `[batch, channels, height, width]` as the directory's processor makes them
    ///   (`image_size` square for DINO v1; any multiple of the patch for DINOv2)
    /// - returns hidden `[batch, 1 + patches, d]` and cls `[batch, d]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Result<VitOutput<B>, ModelError> {
        let [b, _, h, w] = pixels.dims();
        let e = &self.embeddings;
        if !e.interpolate && (h != e.image_size || w != e.image_size) {
            return Err(ModelError::Config(format!(
                "this ViT takes {s}x{s} px images, got {w}x{h} (preprocess them with its ImageProcessor)",
                s = e.image_size
            )));
        }
        let patches = e.patch_embeddings.projection.forward(pixels); // [b, d, gh, gw]
        let [_, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = e.cls_token.val().expand([b, 1, d]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + e.positions(gh, gw);
        for layer in &self.encoder.layer {
            x = layer.forward(x);
        }
        let hidden = self.layernorm.forward(x);
        let cls = hidden.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]);
        Ok(VitOutput { hidden, cls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_sizes() {
        let s = VitConfig::dino_vits16();
        assert_eq!((s.hidden_size, s.num_attention_heads, s.patch_size), (384, 6, 16));
        let l = VitConfig::dinov2_large();
        assert_eq!((l.hidden_size, l.intermediate_size, l.num_hidden_layers, l.patch_size), (1024, 4096, 24, 14));
    }
}
