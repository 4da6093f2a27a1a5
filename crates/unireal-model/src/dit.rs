//! The UniReal diffusion transformer.
//!
//! Every task is a short "discontinuous video": N ≥ 0 input frames (clean VAE latents) and
//! M ≥ 1 output frames (noisy latents) are patchified 2×2 into tokens and concatenated with the
//! text tokens into one sequence with full attention; only the output frames' tokens are
//! predicted. Per image token: patch embedding + index embedding (the k-th input is `IMGk`, the
//! k-th output `RESk`: both use index k, the role tells them apart) + image-role embedding
//! (asset, canvas, control, output). Conditioning follows Flux (Black Forest Labs,
//! `flux/model.py`, `flux/modules/layers.py`): a timestep MLP drives adaLN-Zero modulation of
//! MM-DiT double-stream blocks (separate text and image weights, joint attention) followed by
//! single-stream blocks (parallel attention + MLP), with 3-axis RoPE over (frame, row, column)
//! and QK-RMSNorm.

use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu};

use crate::layers::{layer_norm, linear, merge_heads, modulate, sdpa, split_heads, split_n, zero_linear, RmsNorm};
use crate::lora::{adapted, LoraAdapter};
use crate::precision::in_f32;
use crate::rope::{sequence_positions, Rope};

/// Image roles as embedding indices. The order is part of the checkpoint format.
pub const ROLE_ASSET: i64 = 0;
pub const ROLE_CANVAS: i64 = 1;
pub const ROLE_CONTROL: i64 = 2;
pub const ROLE_OUTPUT: i64 = 3;
pub const NUM_ROLES: usize = 4;

const NORM_EPS: f64 = 1e-6;

/// The DiT's hyper-parameters. Presets: [`DiTConfig::tiny`], [`DiTConfig::small`],
/// [`DiTConfig::base`], [`DiTConfig::unireal`].
#[derive(Config, Debug, PartialEq)]
pub struct DiTConfig {
    /// Latent channels of one frame (4 for SD/SDXL VAEs, 16 for SD3/Flux, 3·f² for space-to-depth).
    pub in_channels: usize,
    /// Model width.
    pub hidden: usize,
    pub heads: usize,
    /// MM-DiT blocks (separate text and image streams).
    pub double_blocks: usize,
    /// Single-stream blocks over the joint sequence.
    pub single_blocks: usize,
    /// Width of the text encoder's output.
    pub text_dim: usize,
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Latent pixels per patch side.
    #[config(default = 2)]
    pub patch: usize,
    /// Highest frame index + 1 for the index embedding (at least 8).
    #[config(default = 8)]
    pub max_frames: usize,
    /// How the head dimension is split over the (frame, row, column) RoPE axes.
    pub axes_dim: [usize; 3],
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Timesteps t ∈ [0, 1] are scaled by this before the sinusoidal embedding.
    #[config(default = 1000.0)]
    pub time_factor: f64,
    #[config(default = 256)]
    pub time_freq_dim: usize,
    /// Width of a pooled text vector added to the conditioning through `vector_in` (Flux:
    /// CLIP-L's pooled output, 768); None: no such input.
    #[config(default = "None")]
    pub vec_in_dim: Option<usize>,
    /// A distilled-guidance embedding `guidance_in` (FLUX.1-dev), fed the guidance scale as
    /// the timestep is fed t.
    #[config(default = false)]
    pub guidance_embed: bool,
    /// RoPE's frame axis puts the output frames at 0, 1, … and the inputs after them (Flux
    /// places its one generated image at 0, Kontext its context image at 1), instead of every
    /// frame at 1, 2, … in sequence order.
    #[config(default = false)]
    pub outputs_at_origin: bool,
}

impl DiTConfig {
    /// Trains on a CPU in minutes: ~4 M parameters, for tests, CI and the demo.
    pub fn tiny(in_channels: usize, text_dim: usize) -> Self {
        DiTConfig::new(in_channels, 192, 4, 2, 2, text_dim, [8, 20, 20])
    }

    /// ~100 M parameters: the CPU benchmark's mid-size model.
    pub fn small(in_channels: usize, text_dim: usize) -> Self {
        DiTConfig::new(in_channels, 768, 12, 2, 6, text_dim, [16, 24, 24])
    }

    /// ~1 B parameters; Flux's head layout (head dim 128 split 16/56/56).
    pub fn base(in_channels: usize, text_dim: usize) -> Self {
        DiTConfig::new(in_channels, 2048, 16, 4, 7, text_dim, [16, 56, 56])
    }

    /// ~5 B parameters, the paper's scale: Flux width 3072 and 24 heads (Flux-dev has 19 double
    /// and 38 single blocks at 12 B; UniReal reports ~5 B).
    pub fn unireal(in_channels: usize, text_dim: usize) -> Self {
        DiTConfig::new(in_channels, 3072, 24, 8, 16, text_dim, [16, 56, 56])
    }

    /// FLUX.1-dev (Black Forest Labs, `flux/util.py` `configs["flux-dev"]`; diffusers'
    /// `FluxTransformer2DModel` defaults with `guidance_embeds=True`): 19 double and 38 single
    /// blocks, width 3072, 24 heads, T5-XXL states (4096) and CLIP-L's pooled vector (768), 16
    /// latent channels, distilled guidance. The generated image sits at RoPE frame 0.
    pub fn flux_dev() -> Self {
        DiTConfig::new(16, 3072, 24, 19, 38, 4096, [16, 56, 56])
            .with_vec_in_dim(Some(768))
            .with_guidance_embed(true)
            .with_outputs_at_origin(true)
    }

    /// FLUX.1-schnell: FLUX.1-dev without the guidance embedding (`configs["flux-schnell"]`).
    pub fn flux_schnell() -> Self {
        DiTConfig { guidance_embed: false, ..Self::flux_dev() }
    }

    /// The preset names [`DiTConfig::preset`] knows.
    pub const PRESETS: [&'static str; 6] = ["tiny", "small", "base", "unireal", "flux-dev", "flux-schnell"];

    /// A preset by name. The Flux presets fix their own latent channels and text width and
    /// ignore `in_channels` and `text_dim`.
    pub fn preset(name: &str, in_channels: usize, text_dim: usize) -> Option<Self> {
        Some(match name {
            "tiny" => Self::tiny(in_channels, text_dim),
            "small" => Self::small(in_channels, text_dim),
            "base" => Self::base(in_channels, text_dim),
            "unireal" => Self::unireal(in_channels, text_dim),
            "flux-dev" => Self::flux_dev(),
            "flux-schnell" => Self::flux_schnell(),
            _ => return None,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.hidden as f64 * self.mlp_ratio) as usize
    }

    /// Features of one token before `img_in`: channels · patch².
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.patch * self.patch
    }

    /// Checks the head and RoPE layout.
    pub fn validate(&self) -> Result<(), String> {
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!("hidden {} is not divisible by heads {}", self.hidden, self.heads));
        }
        if self.axes_dim.iter().sum::<usize>() != self.head_dim() || self.axes_dim.iter().any(|d| d % 2 != 0) {
            return Err(format!(
                "axes_dim {:?} must be even and sum to the head dimension {}",
                self.axes_dim,
                self.head_dim()
            ));
        }
        if self.max_frames < 8 {
            return Err(format!("max_frames {} must be at least 8", self.max_frames));
        }
        Ok(())
    }

    /// Parameters of the model this config builds, counted without building it.
    pub fn num_params(&self) -> usize {
        let (h, lin) = (self.hidden, |i: usize, o: usize| i * o + o);
        let (double, single) = self.block_params();
        let embedder = |d_in: usize| lin(d_in, h) + lin(h, h);
        lin(self.patch_dim(), h)
            + lin(self.text_dim, h)
            + embedder(self.time_freq_dim)
            + self.vec_in_dim.map_or(0, embedder)
            + if self.guidance_embed { embedder(self.time_freq_dim) } else { 0 }
            + (self.max_frames + NUM_ROLES) * h
            + self.double_blocks * double
            + self.single_blocks * single
            + lin(h, 2 * h)
            + lin(h, self.patch_dim())
    }

    /// Parameters of one double-stream and of one single-stream block.
    pub fn block_params(&self) -> (usize, usize) {
        let (h, m) = (self.hidden, self.mlp_hidden());
        let lin = |i: usize, o: usize| i * o + o;
        let hd = self.head_dim();
        let attn = lin(h, 3 * h) + lin(h, h) + 2 * hd;
        let mlp = lin(h, m) + lin(m, h);
        let double = 2 * (lin(h, 6 * h) + attn + mlp);
        let single = lin(h, 3 * h) + lin(h, 3 * h + m) + lin(h + m, h) + 2 * hd;
        (double, single)
    }

    /// Model FLOPs of one training pass (forward and backward) over one sample of
    /// `image_tokens` patch tokens (every frame, inputs and outputs) and `text_tokens` text
    /// tokens: 6 FLOPs per token per weight it is multiplied by (2 forward, 4 backward; biases
    /// and the per-sample modulation left out), plus attention's 12·s²·hidden per block over
    /// the joint sequence of s tokens (QKᵀ and AV, 2·s²·hidden each forward, three times that
    /// with the backward). Counted per stream: in a double-stream block a token meets only its
    /// own stream's weights, so this is below the 6·N·tokens rule, which counts both streams.
    pub fn train_flops(&self, image_tokens: usize, text_tokens: usize) -> f64 {
        let (h, m) = (self.hidden as f64, self.mlp_hidden() as f64);
        let blocks = self.double_blocks as f64 * (4.0 * h * h + 2.0 * h * m)
            + self.single_blocks as f64 * (h * (3.0 * h + m) + (h + m) * h);
        let image = image_tokens as f64 * (blocks + 2.0 * self.patch_dim() as f64 * h);
        let text = text_tokens as f64 * (blocks + self.text_dim as f64 * h);
        let s = (image_tokens + text_tokens) as f64;
        let attention = 12.0 * (self.double_blocks + self.single_blocks) as f64 * h * s * s;
        6.0 * (image + text) + attention
    }

    /// Builds the model. Panics if [`DiTConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> DiT<B> {
        if let Err(e) = self.validate() {
            panic!("invalid DiT config: {e}");
        }
        let h = self.hidden;
        let embed = |n: usize| {
            EmbeddingConfig::new(n, h).with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 }).init(device)
        };
        DiT {
            img_in: linear(self.patch_dim(), h, true, device),
            txt_in: linear(self.text_dim, h, true, device),
            time_in: MlpEmbedder::new(self.time_freq_dim, h, device),
            vector_in: self.vec_in_dim.map(|d| MlpEmbedder::new(d, h, device)),
            guidance_in: self.guidance_embed.then(|| MlpEmbedder::new(self.time_freq_dim, h, device)),
            index_embed: embed(self.max_frames),
            role_embed: embed(NUM_ROLES),
            double_blocks: (0..self.double_blocks).map(|_| DoubleStreamBlock::new(self, device)).collect(),
            single_blocks: (0..self.single_blocks).map(|_| SingleStreamBlock::new(self, device)).collect(),
            final_layer: LastLayer {
                modulation: zero_linear(h, 2 * h, device),
                linear: zero_linear(h, self.patch_dim(), device),
            },
            in_channels: self.in_channels,
            patch: self.patch,
            heads: self.heads,
            max_frames: self.max_frames,
            axes_dim: self.axes_dim,
            rope_theta: self.rope_theta,
            time_factor: self.time_factor,
            time_freq_dim: self.time_freq_dim,
            outputs_at_origin: self.outputs_at_origin,
        }
    }
}

/// Two-layer MLP embedding the sinusoidal timestep (Flux's `MLPEmbedder`).
#[derive(Module, Debug)]
pub struct MlpEmbedder<B: Backend> {
    pub in_layer: Linear<B>,
    pub out_layer: Linear<B>,
}

impl<B: Backend> MlpEmbedder<B> {
    fn new(d_in: usize, hidden: usize, device: &B::Device) -> Self {
        MlpEmbedder { in_layer: linear(d_in, hidden, true, device), out_layer: linear(hidden, hidden, true, device) }
    }

    /// # Shapes
    /// - x: `[batch, freq_dim]` → `[batch, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out_layer.forward(silu(self.in_layer.forward(x)))
    }
}

/// Sinusoidal embedding of `t · time_factor`, `[cos | sin]` halves as in Flux's
/// `timestep_embedding`, in f32.
///
/// # Shapes
/// - t: `[batch]` → `[batch, dim]`
pub fn timestep_embedding<B: Backend>(t: Tensor<B, 1>, dim: usize, time_factor: f64) -> Tensor<B, 2> {
    let t = in_f32(t);
    let half = dim / 2;
    let device = t.device();
    // In f32 as Flux and diffusers compute them: at guidance 3.5 (an argument of 3500) one ulp
    // of a frequency moves the angle by 2e-4.
    let freqs: Vec<f32> = (0..half).map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp()).collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze::<2>(); // [1, half]
    let args = (t * time_factor).unsqueeze_dim::<2>(1) * freqs; // [batch, half]
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

/// Self-attention projections of one stream: fused qkv, QK-RMSNorm, output projection. The
/// `*_lora` fields are LoRA adapters of the layer they are named after ([`crate::lora`]).
#[derive(Module, Debug)]
pub struct StreamAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub qkv_lora: Option<LoraAdapter<B>>,
    pub query_norm: RmsNorm<B>,
    pub key_norm: RmsNorm<B>,
    pub proj: Linear<B>,
    pub proj_lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> StreamAttention<B> {
    fn new(cfg: &DiTConfig, device: &B::Device) -> Self {
        let h = cfg.hidden;
        StreamAttention {
            qkv: linear(h, 3 * h, true, device),
            qkv_lora: None,
            query_norm: RmsNorm::new(cfg.head_dim(), NORM_EPS, device),
            key_norm: RmsNorm::new(cfg.head_dim(), NORM_EPS, device),
            proj: linear(h, h, true, device),
            proj_lora: None,
        }
    }

    /// # Shapes
    /// - x: `[batch, tokens, hidden]` → q, k, v: `[batch, heads, tokens, head_dim]`
    fn qkv(&self, x: Tensor<B, 3>, heads: usize) -> [Tensor<B, 4>; 3] {
        let [q, k, v] = split_n(adapted(&self.qkv, self.qkv_lora.as_ref(), x), 2);
        [
            self.query_norm.forward(split_heads(q, heads)),
            self.key_norm.forward(split_heads(k, heads)),
            split_heads(v, heads),
        ]
    }
    /// The output projection.
    ///
    /// # Shapes
    /// - x: `[batch, tokens, hidden]` → same
    fn project(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        adapted(&self.proj, self.proj_lora.as_ref(), x)
    }
}

/// Feed-forward of one stream: Linear → GELU (tanh) → Linear.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc1_lora: Option<LoraAdapter<B>>,
    pub fc2: Linear<B>,
    pub fc2_lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Mlp<B> {
    fn new(cfg: &DiTConfig, device: &B::Device) -> Self {
        Mlp {
            fc1: linear(cfg.hidden, cfg.mlp_hidden(), true, device),
            fc1_lora: None,
            fc2: linear(cfg.mlp_hidden(), cfg.hidden, true, device),
            fc2_lora: None,
        }
    }

    /// # Shapes
    /// - x: `[batch, tokens, hidden]` → same
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = gelu_approximate(adapted(&self.fc1, self.fc1_lora.as_ref(), x));
        adapted(&self.fc2, self.fc2_lora.as_ref(), hidden)
    }
}

/// MM-DiT block: text and image streams with their own modulation, projections and MLPs,
/// attending jointly over the concatenated sequence (text first).
#[derive(Module, Debug)]
pub struct DoubleStreamBlock<B: Backend> {
    pub img_mod: Linear<B>,
    pub img_mod_lora: Option<LoraAdapter<B>>,
    pub img_attn: StreamAttention<B>,
    pub img_mlp: Mlp<B>,
    pub txt_mod: Linear<B>,
    pub txt_mod_lora: Option<LoraAdapter<B>>,
    pub txt_attn: StreamAttention<B>,
    pub txt_mlp: Mlp<B>,
    pub heads: usize,
}

impl<B: Backend> DoubleStreamBlock<B> {
    fn new(cfg: &DiTConfig, device: &B::Device) -> Self {
        let h = cfg.hidden;
        DoubleStreamBlock {
            img_mod: zero_linear(h, 6 * h, device),
            img_mod_lora: None,
            img_attn: StreamAttention::new(cfg, device),
            img_mlp: Mlp::new(cfg, device),
            txt_mod: zero_linear(h, 6 * h, device),
            txt_mod_lora: None,
            txt_attn: StreamAttention::new(cfg, device),
            txt_mlp: Mlp::new(cfg, device),
            heads: cfg.heads,
        }
    }

    /// # Shapes
    /// - img: `[batch, img_tokens, hidden]`, txt: `[batch, txt_tokens, hidden]`, vec: `[batch, hidden]`
    /// - rope over `txt_tokens + img_tokens`; mask `[batch, heads, L, L]`
    /// - returns (img, txt) with their input shapes
    pub fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        vec: Tensor<B, 2>,
        rope: &Rope<B>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let v = silu(vec);
        let [i_sh1, i_sc1, i_g1, i_sh2, i_sc2, i_g2] =
            split_n(adapted(&self.img_mod, self.img_mod_lora.as_ref(), v.clone()), 1);
        let [t_sh1, t_sc1, t_g1, t_sh2, t_sc2, t_g2] =
            split_n(adapted(&self.txt_mod, self.txt_mod_lora.as_ref(), v), 1);
        let txt_len = txt.dims()[1];

        let [iq, ik, iv] = self.img_attn.qkv(modulate(layer_norm(img.clone(), NORM_EPS), i_sh1, i_sc1), self.heads);
        let [tq, tk, tv] = self.txt_attn.qkv(modulate(layer_norm(txt.clone(), NORM_EPS), t_sh1, t_sc1), self.heads);
        // Joint sequence, text first: [b, heads, txt + img, head_dim]
        let q = rope.apply(Tensor::cat(vec![tq, iq], 2));
        let k = rope.apply(Tensor::cat(vec![tk, ik], 2));
        let v = Tensor::cat(vec![tv, iv], 2);
        let attn = merge_heads(sdpa(q, k, v, mask, None, None)); // [b, L, hidden]
        let total = attn.dims()[1];
        let txt_attn = attn.clone().narrow(1, 0, txt_len);
        let img_attn = attn.narrow(1, txt_len, total - txt_len);

        let img = img + self.img_attn.project(img_attn) * i_g1.unsqueeze_dim::<3>(1);
        let img = img.clone()
            + self.img_mlp.forward(modulate(layer_norm(img, NORM_EPS), i_sh2, i_sc2)) * i_g2.unsqueeze_dim::<3>(1);
        let txt = txt + self.txt_attn.project(txt_attn) * t_g1.unsqueeze_dim::<3>(1);
        let txt = txt.clone()
            + self.txt_mlp.forward(modulate(layer_norm(txt, NORM_EPS), t_sh2, t_sc2)) * t_g2.unsqueeze_dim::<3>(1);
        (img, txt)
    }
}

/// Single-stream block over the joint sequence: one fused projection to qkv and the MLP's
/// hidden layer, attention and MLP in parallel, one output projection (Flux's
/// `SingleStreamBlock`).
#[derive(Module, Debug)]
pub struct SingleStreamBlock<B: Backend> {
    pub modulation: Linear<B>,
    pub modulation_lora: Option<LoraAdapter<B>>,
    pub linear1: Linear<B>,
    pub linear1_lora: Option<LoraAdapter<B>>,
    pub linear2: Linear<B>,
    pub linear2_lora: Option<LoraAdapter<B>>,
    pub query_norm: RmsNorm<B>,
    pub key_norm: RmsNorm<B>,
    pub heads: usize,
    pub hidden: usize,
}

impl<B: Backend> SingleStreamBlock<B> {
    fn new(cfg: &DiTConfig, device: &B::Device) -> Self {
        let (h, m) = (cfg.hidden, cfg.mlp_hidden());
        SingleStreamBlock {
            modulation: zero_linear(h, 3 * h, device),
            modulation_lora: None,
            linear1: linear(h, 3 * h + m, true, device),
            linear1_lora: None,
            linear2: linear(h + m, h, true, device),
            linear2_lora: None,
            query_norm: RmsNorm::new(cfg.head_dim(), NORM_EPS, device),
            key_norm: RmsNorm::new(cfg.head_dim(), NORM_EPS, device),
            heads: cfg.heads,
            hidden: h,
        }
    }

    /// # Shapes
    /// - x: `[batch, L, hidden]`, vec: `[batch, hidden]` → `[batch, L, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        vec: Tensor<B, 2>,
        rope: &Rope<B>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [shift, scale, gate] = split_n(adapted(&self.modulation, self.modulation_lora.as_ref(), silu(vec)), 1);
        let x_mod = modulate(layer_norm(x.clone(), NORM_EPS), shift, scale);
        let h1 = adapted(&self.linear1, self.linear1_lora.as_ref(), x_mod); // [b, L, 3h + mlp]
        let [b, l, width] = h1.dims();
        let h = self.hidden;
        let q = self.query_norm.forward(split_heads(h1.clone().narrow(2, 0, h), self.heads));
        let k = self.key_norm.forward(split_heads(h1.clone().narrow(2, h, h), self.heads));
        let v = split_heads(h1.clone().narrow(2, 2 * h, h), self.heads);
        let mlp = h1.narrow(2, 3 * h, width - 3 * h);
        let attn = merge_heads(sdpa(rope.apply(q), rope.apply(k), v, mask, None, None));
        debug_assert_eq!(attn.dims(), [b, l, h]);
        let out = adapted(&self.linear2, self.linear2_lora.as_ref(), Tensor::cat(vec![attn, gelu_approximate(mlp)], 2));
        x + out * gate.unsqueeze_dim::<3>(1)
    }
}

/// adaLN (shift, scale) then the projection back to patch features.
#[derive(Module, Debug)]
pub struct LastLayer<B: Backend> {
    pub modulation: Linear<B>,
    pub linear: Linear<B>,
}

/// One batch for the DiT. All frames of a batch share one latent size (the loader buckets by
/// size and by the number of inputs and outputs).
#[derive(Debug, Clone)]
pub struct DiTInput<B: Backend> {
    /// Clean latents of the input frames, `[batch, inputs, channels, height, width]`; `None`
    /// for text-to-image (N = 0).
    pub inputs: Option<Tensor<B, 5>>,
    /// Role of each input frame ([`ROLE_ASSET`], [`ROLE_CANVAS`], [`ROLE_CONTROL`]), `[batch, inputs]`;
    /// `None` with input frames leaves the inputs' role embeddings out (an ablation).
    pub input_roles: Option<Tensor<B, 2, Int>>,
    /// Noisy latents of the output frames at time `t`, `[batch, outputs, channels, height, width]`.
    pub outputs: Tensor<B, 5>,
    /// Flow time per sample, `[batch]`, t = 1 is noise and t = 0 is data.
    pub t: Tensor<B, 1>,
    /// Text-encoder states, `[batch, text_tokens, text_dim]`.
    pub text: Tensor<B, 3>,
    /// True where a text token is padding, `[batch, text_tokens]`.
    pub text_pad: Option<Tensor<B, 2, Bool>>,
    /// True for the samples whose input frames are hidden, `[batch]`: their tokens stay in the
    /// sequence (so every frame keeps its position) but no query attends to them, which is
    /// what the image-unconditional branch of guidance is trained and sampled with.
    pub hide_inputs: Option<Tensor<B, 1, Bool>>,
    /// The pooled text vector for `vector_in`, `[batch, vec_in_dim]`; required by a model with
    /// `vec_in_dim`, ignored by one without.
    pub pooled: Option<Tensor<B, 2>>,
    /// The distilled guidance scale per sample, `[batch]`, for `guidance_in` (FLUX.1-dev);
    /// required by a model with `guidance_embed`.
    pub guidance: Option<Tensor<B, 1>>,
}

/// The UniReal DiT. Build it with [`DiTConfig::init`].
#[derive(Module, Debug)]
pub struct DiT<B: Backend> {
    pub img_in: Linear<B>,
    pub txt_in: Linear<B>,
    pub time_in: MlpEmbedder<B>,
    /// Flux's pooled-text embedder (`vec_in_dim`).
    pub vector_in: Option<MlpEmbedder<B>>,
    /// FLUX.1-dev's guidance embedder (`guidance_embed`).
    pub guidance_in: Option<MlpEmbedder<B>>,
    pub index_embed: Embedding<B>,
    pub role_embed: Embedding<B>,
    pub double_blocks: Vec<DoubleStreamBlock<B>>,
    pub single_blocks: Vec<SingleStreamBlock<B>>,
    pub final_layer: LastLayer<B>,
    pub in_channels: usize,
    pub patch: usize,
    pub heads: usize,
    pub max_frames: usize,
    pub axes_dim: [usize; 3],
    pub rope_theta: f64,
    pub time_factor: f64,
    pub time_freq_dim: usize,
    pub outputs_at_origin: bool,
}

/// Cuts frames into `patch × patch` tokens, channel-major within a token (Flux's
/// `b c (h ph) (w pw) -> b (h w) (c ph pw)`), frames one after another.
///
/// # Shapes
/// - x: `[batch, frames, channels, height, width]` → `[batch, frames · (height/p) · (width/p), channels · p²]`
pub fn patchify<B: Backend>(x: Tensor<B, 5>, p: usize) -> Tensor<B, 3> {
    let [b, f, c, h, w] = x.dims();
    let (rh, rw) = (h / p, w / p);
    // [b, f, c, rh, p, rw, p] -> [b, f, rh, rw, c, p, p]
    x.reshape([b * f, c, rh, p, rw, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, f * rh * rw, c * p * p])
}

/// Inverse of [`patchify`].
///
/// # Shapes
/// - tokens: `[batch, frames · rows · cols, channels · p²]` → `[batch, frames, channels, rows·p, cols·p]`
pub fn unpatchify<B: Backend>(tokens: Tensor<B, 3>, frames: usize, rows: usize, cols: usize, p: usize) -> Tensor<B, 5> {
    let [b, _, d] = tokens.dims();
    let c = d / (p * p);
    // [b·f, rows, cols, c, p, p] -> [b·f, c, rows, p, cols, p]
    tokens.reshape([b * frames, rows, cols, c, p, p]).permute([0, 3, 1, 4, 2, 5]).reshape([
        b,
        frames,
        c,
        rows * p,
        cols * p,
    ])
}

/// Keys hidden from every query, `[batch, L]` (L = text + input + output tokens): text
/// padding and the input tokens of samples in `hide_inputs`; `None` when nothing is hidden.
fn key_mask<B: Backend>(
    text_pad: Option<Tensor<B, 2, Bool>>,
    hide_inputs: Option<Tensor<B, 1, Bool>>,
    [b, text, inputs, outputs]: [usize; 4],
    device: &B::Device,
) -> Option<Tensor<B, 2, Bool>> {
    let hide_inputs = hide_inputs.filter(|_| inputs > 0);
    if text_pad.is_none() && hide_inputs.is_none() {
        return None;
    }
    let visible = |len: usize| Tensor::<B, 2, Bool>::full([b, len], false, device);
    let parts = [
        text_pad.unwrap_or_else(|| visible(text)),
        match hide_inputs {
            Some(h) => h.unsqueeze_dim::<2>(1).expand([b, inputs]),
            None => visible(inputs),
        },
        visible(outputs),
    ];
    Some(Tensor::cat(parts.into_iter().filter(|p| p.dims()[1] > 0).collect(), 1))
}

/// The DiT's forward pass up to its first block ([`DiT::embed`]): the two token streams, the
/// conditioning vector and what every block shares. [`DiT::forward`] is `embed`, the blocks in
/// order, then [`DiT::finish`]; per-block activation recomputation in the trainer runs the
/// same three parts separately.
#[derive(Debug, Clone)]
pub struct Embedded<B: Backend> {
    /// Image tokens (inputs then outputs), `[batch, img_tokens, hidden]`.
    pub img: Tensor<B, 3>,
    /// Text tokens, `[batch, txt_tokens, hidden]`.
    pub txt: Tensor<B, 3>,
    /// The adaLN conditioning vector, `[batch, hidden]`.
    pub vec: Tensor<B, 2>,
    /// RoPE over `txt_tokens + img_tokens`.
    pub rope: Rope<B>,
    /// Keys hidden from every query, `[batch, heads, L, L]`.
    pub mask: Option<Tensor<B, 4, Bool>>,
    pub layout: Layout,
}

/// Where the output frames sit in the joint sequence, for [`DiT::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Output frames.
    pub outputs: usize,
    /// Token rows and columns of a frame.
    pub rows: usize,
    pub cols: usize,
    /// The dtype the prediction is returned in (that of the noisy outputs).
    pub out_dtype: burn::tensor::DType,
}

impl<B: Backend> DiT<B> {
    /// Predicts the velocity ε − x₀ of the output frames. Computes in the dtype of the
    /// parameters (see [`crate::precision`] for mixed precision) and returns the prediction in
    /// the dtype of `input.outputs`.
    ///
    /// # Shapes
    /// - see [`DiTInput`]; returns `[batch, outputs, channels, height, width]`
    pub fn forward(&self, input: DiTInput<B>) -> Tensor<B, 5> {
        let Embedded { mut img, mut txt, vec, rope, mask, layout } = self.embed(input);
        for block in &self.double_blocks {
            (img, txt) = block.forward(img, txt, vec.clone(), &rope, mask.clone());
        }
        let mut x = Tensor::cat(vec![txt, img], 1);
        for block in &self.single_blocks {
            x = block.forward(x, vec.clone(), &rope, mask.clone());
        }
        self.finish(x, vec, &layout)
    }

    /// The embedders: patch, frame index and role embeddings of the image tokens, the text
    /// projection, the conditioning vector (timestep, guidance, pooled text), RoPE and the
    /// attention mask.
    ///
    /// # Shapes
    /// - see [`DiTInput`] and [`Embedded`]
    pub fn embed(&self, input: DiTInput<B>) -> Embedded<B> {
        let device = input.outputs.device();
        let out_dtype = input.outputs.dtype();
        let dtype = self.img_in.weight.val().dtype();
        let [b, m, c, h, w] = input.outputs.dims();
        assert_eq!(c, self.in_channels, "output latents have {c} channels, the model expects {}", self.in_channels);
        assert!(h % self.patch == 0 && w % self.patch == 0, "latent size {h}x{w} is not a multiple of the patch");
        let n = input.inputs.as_ref().map_or(0, |x| x.dims()[1]);
        assert!(n.max(m) <= self.max_frames, "{n} inputs / {m} outputs exceed max_frames {}", self.max_frames);
        let (rows, cols) = (h / self.patch, w / self.patch);
        let per_frame = rows * cols;

        // Frame ids: index k within inputs or within outputs, role per frame.
        let mut index_ids: Vec<i64> = (0..n as i64).collect();
        index_ids.extend(0..m as i64);
        let index_ids = Tensor::<B, 1, Int>::from_data(TensorData::new(index_ids, [n + m]), &device)
            .unsqueeze::<2>()
            .expand([b, n + m]);
        let out_roles = Tensor::<B, 2, Int>::full([b, m], ROLE_OUTPUT, &device);
        let role_emb = match (&input.input_roles, n) {
            (_, 0) => self.role_embed.forward(out_roles),
            (Some(r), _) => self.role_embed.forward(Tensor::cat(vec![r.clone(), out_roles], 1)),
            // Input frames without roles: their role embeddings (the "image prompts" of
            // UniReal's Table 4 ablation) left out; the outputs keep theirs.
            (None, _) => {
                let out = self.role_embed.forward(out_roles);
                let hidden = out.dims()[2];
                Tensor::cat(vec![Tensor::<B, 3>::zeros([b, n, hidden], &device).cast(out.dtype()), out], 1)
            }
        };
        // [b, frames, hidden] -> one row per token: [b, frames, 1, hidden] -> [b, frames·per_frame, hidden]
        let frame_emb = self.index_embed.forward(index_ids) + role_emb;
        let hidden = frame_emb.dims()[2];
        let frame_emb = frame_emb.unsqueeze_dim::<4>(2).expand([b, n + m, per_frame, hidden]).reshape([
            b,
            (n + m) * per_frame,
            hidden,
        ]);

        let frames = match input.inputs {
            Some(x) if n > 0 => Tensor::cat(vec![x, input.outputs], 1),
            _ => input.outputs,
        };
        let img = self.img_in.forward(patchify(frames.cast(dtype), self.patch)) + frame_emb;
        let txt = self.txt_in.forward(input.text.cast(dtype));
        let txt_len = txt.dims()[1];
        let t_emb = timestep_embedding(input.t, self.time_freq_dim, self.time_factor);
        let mut vec = self.time_in.forward(t_emb.cast(dtype));
        if let Some(g_in) = &self.guidance_in {
            let g = input.guidance.expect("this DiT has guidance_in (FLUX.1-dev): DiTInput.guidance is required");
            let g_emb = timestep_embedding(g, self.time_freq_dim, self.time_factor);
            vec = vec + g_in.forward(g_emb.cast(dtype));
        }
        if let Some(v_in) = &self.vector_in {
            let pooled = input.pooled.expect("this DiT has vector_in (Flux): DiTInput.pooled is required");
            vec = vec + v_in.forward(pooled.cast(dtype));
        }

        let frame_order = if self.outputs_at_origin {
            // Outputs at 0..m, then the inputs: in sequence order (inputs first) m..m+n, 0..m.
            (m..m + n).chain(0..m).collect()
        } else {
            (1..=n + m).collect::<Vec<_>>()
        };
        let positions = sequence_positions(txt_len, &frame_order, rows, cols);
        let rope = Rope::new(&positions, self.axes_dim, self.rope_theta, &device);
        let total = positions.len();
        let mask = key_mask(input.text_pad, input.hide_inputs, [b, txt_len, n * per_frame, m * per_frame], &device)
            .map(|hidden| hidden.unsqueeze_dims::<4>(&[1, 2]).expand([b, self.heads, total, total]));

        Embedded { img, txt, vec, rope, mask, layout: Layout { outputs: m, rows, cols, out_dtype } }
    }

    /// The last layer on the joint sequence after the blocks: adaLN, then the projection of the
    /// output frames' tokens (the last ones of the sequence) back to latent patches.
    ///
    /// # Shapes
    /// - x: `[batch, L, hidden]`, vec: `[batch, hidden]` → `[batch, outputs, channels, height, width]`
    pub fn finish(&self, x: Tensor<B, 3>, vec: Tensor<B, 2>, layout: &Layout) -> Tensor<B, 5> {
        let Layout { outputs: m, rows, cols, out_dtype } = *layout;
        let total = x.dims()[1];
        let per_frame = rows * cols;
        let out = x.narrow(1, total - m * per_frame, m * per_frame);
        let [shift, scale] = split_n(self.final_layer.modulation.forward(silu(vec)), 1);
        let out = self.final_layer.linear.forward(modulate(layer_norm(out, NORM_EPS), shift, scale));
        unpatchify(out, m, rows, cols, self.patch).cast(out_dtype)
    }
}
