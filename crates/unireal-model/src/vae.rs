//! Latent spaces: diffusers' `AutoencoderKL` (encoder/decoder of ResNet blocks, one mid-block
//! self-attention, GroupNorm; parameter names as in diffusers' safetensors) with the scaling
//! and shift factors of the SD/SDXL (4-channel) and SD3/Flux (16-channel) VAEs, and a
//! parameter-free space-to-depth latent for tiny runs and tests.
//!
//! Pixels are in [−1, 1]. `encode` returns model-space latents `(mean − shift) · scale`;
//! `decode` undoes that first.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::layers::sdpa;

/// `AutoencoderKL` hyper-parameters, named as in diffusers' `config.json`.
#[derive(Config, Debug, PartialEq)]
pub struct AutoencoderKlConfig {
    #[config(default = 3)]
    pub in_channels: usize,
    #[config(default = 3)]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[config(default = 2)]
    pub layers_per_block: usize,
    pub latent_channels: usize,
    #[config(default = 32)]
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
    #[config(default = 0.0)]
    pub shift_factor: f64,
    /// SD/SDXL have 1×1 `quant_conv`/`post_quant_conv`; SD3/Flux do not.
    #[config(default = true)]
    pub use_quant_conv: bool,
}

impl AutoencoderKlConfig {
    /// SD 1.x/2.x (and, with scaling 0.13025, SDXL): 4 latent channels, factor 0.18215.
    pub fn sd() -> Self {
        AutoencoderKlConfig::new(vec![128, 256, 512, 512], 4, 0.18215)
    }

    /// SDXL's VAE.
    pub fn sdxl() -> Self {
        AutoencoderKlConfig::new(vec![128, 256, 512, 512], 4, 0.13025)
    }

    /// SD3: 16 channels, scaling 1.5305, shift 0.0609, no quant convs.
    pub fn sd3() -> Self {
        AutoencoderKlConfig::new(vec![128, 256, 512, 512], 16, 1.5305)
            .with_shift_factor(0.0609)
            .with_use_quant_conv(false)
    }

    /// Flux: 16 channels, scaling 0.3611, shift 0.1159, no quant convs.
    pub fn flux() -> Self {
        AutoencoderKlConfig::new(vec![128, 256, 512, 512], 16, 0.3611)
            .with_shift_factor(0.1159)
            .with_use_quant_conv(false)
    }

    /// Reads a diffusers `config.json`.
    pub fn from_diffusers_json(text: &str) -> Result<Self, crate::ModelError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| crate::ModelError::Config(e.to_string()))?;
        let err = |k: &str| crate::ModelError::Config(format!("VAE config.json: missing or bad field `{k}`"));
        let usize_of = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let channels = v
            .get("block_out_channels")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect::<Vec<_>>())
            .ok_or_else(|| err("block_out_channels"))?;
        let mut c = AutoencoderKlConfig::new(
            channels,
            usize_of("latent_channels").ok_or_else(|| err("latent_channels"))?,
            v.get("scaling_factor").and_then(|x| x.as_f64()).ok_or_else(|| err("scaling_factor"))?,
        );
        if let Some(x) = usize_of("in_channels") {
            c.in_channels = x;
        }
        if let Some(x) = usize_of("out_channels") {
            c.out_channels = x;
        }
        if let Some(x) = usize_of("layers_per_block") {
            c.layers_per_block = x;
        }
        if let Some(x) = usize_of("norm_num_groups") {
            c.norm_num_groups = x;
        }
        if let Some(x) = v.get("shift_factor").and_then(|x| x.as_f64()) {
            c.shift_factor = x;
        }
        if let Some(x) = v.get("use_quant_conv").and_then(|x| x.as_bool()) {
            c.use_quant_conv = x;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks what `init` relies on: at least one block, channel counts divisible by the
    /// GroupNorm group count.
    pub fn validate(&self) -> Result<(), crate::ModelError> {
        let err = |m: String| Err(crate::ModelError::Config(format!("VAE config: {m}")));
        if self.block_out_channels.is_empty() {
            return err("block_out_channels is empty".into());
        }
        let g = self.norm_num_groups;
        if g == 0 || self.block_out_channels.iter().any(|c| c % g != 0) {
            return err(format!(
                "block_out_channels {:?} must be multiples of norm_num_groups {g}",
                self.block_out_channels
            ));
        }
        if self.latent_channels == 0 {
            return err("latent_channels is 0".into());
        }
        Ok(())
    }

    /// Pixels per latent pixel along a side.
    pub fn downsample_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Builds the VAE. Panics if [`AutoencoderKlConfig::validate`] fails (configs read with
    /// `from_diffusers_json` are validated there).
    pub fn init<B: Backend>(&self, device: &B::Device) -> AutoencoderKl<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let ch = &self.block_out_channels;
        let g = self.norm_num_groups;
        let conv3 = |i: usize, o: usize| {
            Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)
        };
        let conv1 = |i: usize, o: usize| Conv2dConfig::new([i, o], [1, 1]).init(device);
        let norm = |c: usize| GroupNormConfig::new(g, c).with_epsilon(1e-6).init(device);
        let resnet = |i: usize, o: usize| ResnetBlock {
            norm1: norm(i),
            conv1: conv3(i, o),
            norm2: norm(o),
            conv2: conv3(o, o),
            conv_shortcut: (i != o).then(|| conv1(i, o)),
        };
        let last = ch[ch.len() - 1];
        let mid = || MidBlock {
            resnets: vec![resnet(last, last), resnet(last, last)],
            attentions: vec![MidAttention {
                group_norm: norm(last),
                to_q: LinearConfig::new(last, last).init(device),
                to_k: LinearConfig::new(last, last).init(device),
                to_v: LinearConfig::new(last, last).init(device),
                to_out: vec![LinearConfig::new(last, last).init(device)],
            }],
        };
        let mut down_blocks = Vec::new();
        let mut prev = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            down_blocks.push(DownBlock {
                resnets: (0..self.layers_per_block).map(|j| resnet(if j == 0 { prev } else { c }, c)).collect(),
                downsamplers: if i + 1 < ch.len() {
                    vec![Downsample { conv: Conv2dConfig::new([c, c], [3, 3]).with_stride([2, 2]).init(device) }]
                } else {
                    vec![]
                },
            });
            prev = c;
        }
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::new();
        let mut prev = rev[0];
        for (i, &c) in rev.iter().enumerate() {
            up_blocks.push(UpBlock {
                resnets: (0..=self.layers_per_block).map(|j| resnet(if j == 0 { prev } else { c }, c)).collect(),
                upsamplers: if i + 1 < rev.len() { vec![Upsample { conv: conv3(c, c) }] } else { vec![] },
            });
            prev = c;
        }
        let quant = self.use_quant_conv;
        let l = self.latent_channels;
        AutoencoderKl {
            encoder: VaeEncoder {
                conv_in: conv3(self.in_channels, ch[0]),
                down_blocks,
                mid_block: mid(),
                conv_norm_out: norm(last),
                conv_out: conv3(last, 2 * l),
            },
            decoder: VaeDecoder {
                conv_in: conv3(l, last),
                mid_block: mid(),
                up_blocks,
                conv_norm_out: norm(ch[0]),
                conv_out: conv3(ch[0], self.out_channels),
            },
            quant_conv: quant.then(|| conv1(2 * l, 2 * l)),
            post_quant_conv: quant.then(|| conv1(l, l)),
            scaling_factor: self.scaling_factor,
            shift_factor: self.shift_factor,
        }
    }
}

/// diffusers' `ResnetBlock2D` (no time embedding, no dropout, output scale 1).
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv2d<B>,
    pub norm2: GroupNorm<B>,
    pub conv2: Conv2d<B>,
    /// A 1×1 convolution when the channel count changes.
    pub conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    /// # Shapes
    /// - x: `[batch, c_in, h, w]` → `[batch, c_out, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let x = match &self.conv_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        x + h
    }
}

/// diffusers' single-head `Attention` of the VAE mid-block, with its residual.
#[derive(Module, Debug)]
pub struct MidAttention<B: Backend> {
    pub group_norm: GroupNorm<B>,
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    pub to_out: Vec<Linear<B>>,
}

impl<B: Backend> MidAttention<B> {
    /// # Shapes
    /// - x: `[batch, c, h, w]` → same
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        // [b, c, h, w] -> [b, h·w, c]
        let t = self.group_norm.forward(x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let heads = |l: &Linear<B>| l.forward(t.clone()).unsqueeze_dim::<4>(1); // [b, 1, h·w, c]
        let a = sdpa(heads(&self.to_q), heads(&self.to_k), heads(&self.to_v), None, None, None);
        let out = self.to_out[0].forward(a.squeeze_dim::<3>(1)); // [b, h·w, c]
                                                                 // [b, h·w, c] -> [b, c, h, w]
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}

#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock<B>>,
    pub attentions: Vec<MidAttention<B>>,
}

impl<B: Backend> MidBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.resnets[0].forward(x);
        let x = self.attentions[0].forward(x);
        self.resnets[1].forward(x)
    }
}

/// Stride-2 3×3 convolution after padding one zero column/row on the right/bottom.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
}

#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock<B>>,
    pub downsamplers: Vec<Downsample<B>>,
}

/// Nearest-neighbour 2× upsampling, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    pub conv: Conv2d<B>,
}

#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock<B>>,
    pub upsamplers: Vec<Upsample<B>>,
}

/// Nearest-neighbour upsampling by 2.
///
/// # Shapes
/// - x: `[batch, c, h, w]` → `[batch, c, 2h, 2w]`
pub fn upsample_nearest2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    // [b, c, h, 1, w, 1] -> [b, c, h, 2, w, 2] -> [b, c, 2h, 2w]
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

#[derive(Module, Debug)]
pub struct VaeEncoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub down_blocks: Vec<DownBlock<B>>,
    pub mid_block: MidBlock<B>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> VaeEncoder<B> {
    /// # Shapes
    /// - x: `[batch, 3, H, W]` → `[batch, 2·latent, H/f, W/f]` (mean and log-variance)
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.conv_in.forward(x);
        for block in &self.down_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for d in &block.downsamplers {
                x = d.conv.forward(x.pad((0, 1, 0, 1), burn::tensor::ops::PadMode::Constant(0.0)));
            }
        }
        let x = self.mid_block.forward(x);
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct VaeDecoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub mid_block: MidBlock<B>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> VaeDecoder<B> {
    /// # Shapes
    /// - z: `[batch, latent, h, w]` → `[batch, 3, h·f, w·f]`
    pub fn forward(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.conv_in.forward(z);
        let mut x = self.mid_block.forward(x);
        for block in &self.up_blocks {
            for r in &block.resnets {
                x = r.forward(x);
            }
            for u in &block.upsamplers {
                x = u.conv.forward(upsample_nearest2(x));
            }
        }
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKl<B: Backend> {
    pub encoder: VaeEncoder<B>,
    pub decoder: VaeDecoder<B>,
    pub quant_conv: Option<Conv2d<B>>,
    pub post_quant_conv: Option<Conv2d<B>>,
    pub scaling_factor: f64,
    pub shift_factor: f64,
}

impl<B: Backend> AutoencoderKl<B> {
    /// The posterior's mean and log-variance before scaling.
    ///
    /// # Shapes
    /// - x: `[batch, 3, H, W]` → (mean, logvar) `[batch, latent, H/f, W/f]` each
    pub fn encode_moments(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let mut m = self.encoder.forward(x);
        if let Some(q) = &self.quant_conv {
            m = q.forward(m);
        }
        let c = m.dims()[1] / 2;
        (m.clone().narrow(1, 0, c), m.narrow(1, c, c))
    }

    /// Model-space latents from the posterior mode: `(mean − shift) · scale`.
    pub fn encode(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        (self.encode_moments(x).0 - self.shift_factor) * self.scaling_factor
    }

    /// Pixels in [−1, 1] (not clamped) from model-space latents.
    pub fn decode(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut z = z / self.scaling_factor + self.shift_factor;
        if let Some(p) = &self.post_quant_conv {
            z = p.forward(z);
        }
        self.decoder.forward(z)
    }
}

/// Parameter-free latent: each `factor × factor` block of pixels becomes `3·factor²` channels
/// (channel-major, then row, then column within the block).
///
/// # Shapes
/// - x: `[batch, c, H, W]` → `[batch, c·f², H/f, W/f]`
pub fn space_to_depth<B: Backend>(x: Tensor<B, 4>, f: usize) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    // [b, c, h/f, f, w/f, f] -> [b, c, f, f, h/f, w/f]
    x.reshape([b, c, h / f, f, w / f, f]).permute([0, 1, 3, 5, 2, 4]).reshape([b, c * f * f, h / f, w / f])
}

/// Inverse of [`space_to_depth`].
///
/// # Shapes
/// - z: `[batch, c·f², h, w]` → `[batch, c, h·f, w·f]`
pub fn depth_to_space<B: Backend>(z: Tensor<B, 4>, f: usize) -> Tensor<B, 4> {
    let [b, cf, h, w] = z.dims();
    let c = cf / (f * f);
    // [b, c, f, f, h, w] -> [b, c, h, f, w, f]
    z.reshape([b, c, f, f, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([b, c, h * f, w * f])
}

/// Which latent space a run uses.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per run; Box is not a burn Module
pub enum Latent<B: Backend> {
    /// [`space_to_depth`] with this factor; no parameters.
    SpaceToDepth(SpaceToDepth),
    Kl(AutoencoderKl<B>),
}

/// The parameter-free latent's settings.
#[derive(Module, Debug, Clone)]
pub struct SpaceToDepth {
    pub factor: usize,
}

impl<B: Backend> Latent<B> {
    /// Channels of one latent frame for 3-channel images.
    pub fn channels(&self) -> usize {
        match self {
            Latent::SpaceToDepth(s) => 3 * s.factor * s.factor,
            Latent::Kl(vae) => vae.decoder.conv_in.weight.dims()[1],
        }
    }

    /// Pixels per latent pixel along a side.
    pub fn factor(&self) -> usize {
        match self {
            Latent::SpaceToDepth(s) => s.factor,
            Latent::Kl(vae) => 1 << vae.encoder.down_blocks.iter().filter(|d| !d.downsamplers.is_empty()).count(),
        }
    }

    /// # Shapes
    /// - x: `[batch, 3, H, W]` in [−1, 1] → `[batch, channels, H/f, W/f]`
    pub fn encode(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Latent::SpaceToDepth(s) => space_to_depth(x, s.factor),
            Latent::Kl(vae) => vae.encode(x),
        }
    }

    /// # Shapes
    /// - z: `[batch, channels, h, w]` → `[batch, 3, h·f, w·f]`
    pub fn decode(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Latent::SpaceToDepth(s) => depth_to_space(z, s.factor),
            Latent::Kl(vae) => vae.decode(z),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray;

    #[test]
    fn latent_channels_and_factor() {
        let d = Default::default();
        let s2d = Latent::<B>::SpaceToDepth(SpaceToDepth { factor: 4 });
        assert_eq!((s2d.channels(), s2d.factor()), (48, 4));
        let x = Tensor::<B, 4>::ones([1, 3, 16, 8], &d);
        assert_eq!(s2d.encode(x.clone()).dims(), [1, 48, 4, 2]);
        assert_eq!(s2d.decode(s2d.encode(x)).dims(), [1, 3, 16, 8]);
        let cfg = AutoencoderKlConfig::new(vec![8, 16, 16], 4, 0.5).with_norm_num_groups(4).with_layers_per_block(1);
        assert_eq!(cfg.downsample_factor(), 4);
        let kl = Latent::Kl(cfg.init::<B>(&d));
        assert_eq!((kl.channels(), kl.factor()), (4, 4));
        let z = kl.encode(Tensor::<B, 4>::zeros([1, 3, 16, 16], &d));
        assert_eq!(z.dims(), [1, 4, 4, 4]);
        assert_eq!(kl.decode(z).dims(), [1, 3, 16, 16]);
    }
}
