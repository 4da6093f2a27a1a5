//! Small building blocks shared by the DiT: parameter-free LayerNorm, RMSNorm with a learned
//! scale, adaLN modulation, attention over `[batch, heads, tokens, head_dim]`.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::DType;

use crate::precision::{computed_in_f32, in_f32};

/// A `Linear` with DiT's default initialisation (Xavier uniform weights, zero bias).
pub fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device)
}

/// A zero-initialised `Linear` (adaLN-Zero modulation, final projection).
pub fn zero_linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out).with_initializer(Initializer::Zeros).init(device)
}

/// LayerNorm over the last dimension without learned affine parameters (DiT's `norm1`/`norm2`),
/// computed in f32 and returned in `x`'s dtype.
///
/// # Shapes
/// - x: `[..., d]` → `[..., d]`
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    computed_in_f32(x, |x| {
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(D - 1);
        centered / (var + eps).sqrt()
    })
}

/// RMSNorm with a learned per-channel `scale` (Flux's QK-norm).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub scale: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn new(d: usize, eps: f64, device: &B::Device) -> Self {
        RmsNorm { scale: Initializer::Ones.init([d], device), eps }
    }

    /// Normalised in f32, scaled in `x`'s dtype.
    ///
    /// # Shapes
    /// - x: `[..., d]` → `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let normed = computed_in_f32(x, |x| {
            let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
            x / rms
        });
        normed * self.scale.val().unsqueeze::<D>()
    }
}

/// Scale-and-shift of adaLN: `(1 + scale) · x + shift`.
///
/// # Shapes
/// - x: `[batch, tokens, d]`; shift, scale: `[batch, d]`
pub fn modulate<B: Backend>(x: Tensor<B, 3>, shift: Tensor<B, 2>, scale: Tensor<B, 2>) -> Tensor<B, 3> {
    x * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim::<3>(1)
}

/// Splits `dim` into `N` equal parts (adaLN's shift/scale/gate, fused qkv). The width is a
/// multiple of `N` by construction of the layer that produced `x`.
///
/// # Shapes
/// - x: `[..., N·d, ...]` → N × `[..., d, ...]`
pub fn split_n<B: Backend, const D: usize, const N: usize>(x: Tensor<B, D>, dim: usize) -> [Tensor<B, D>; N] {
    let width = x.dims()[dim];
    debug_assert_eq!(width % N, 0, "width {width} does not split into {N}");
    std::array::from_fn(|i| x.clone().narrow(dim, i * width / N, width / N))
}

/// Multi-head split.
///
/// # Shapes
/// - x: `[batch, tokens, heads·head_dim]` → `[batch, heads, tokens, head_dim]`
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
}

/// Inverse of [`split_heads`].
///
/// # Shapes
/// - x: `[batch, heads, tokens, head_dim]` → `[batch, tokens, heads·head_dim]`
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Scaled dot-product attention, softmax(q·kᵀ·scale)·v; `mask` is true where a key is hidden.
/// Burn's fused `attention` op (a flash-attention kernel on CUDA); under autodiff in a compute
/// dtype below f32, the same computed with the softmax in f32 (Burn's autodiff decomposes
/// the fused op in the input's dtype).
///
/// # Shapes
/// - q, k, v: `[batch, heads, tokens, head_dim]`; mask: `[batch, heads, tokens, tokens]`
/// - returns `[batch, heads, tokens, head_dim]`
pub fn sdpa<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    bias: Option<Tensor<B, 4>>,
    scale: Option<f64>,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    if dtype == DType::F32 || !B::ad_enabled(&q.device()) {
        let options = AttentionModuleOptions { scale, ..Default::default() };
        return attention(q, k, v, mask, bias, options);
    }
    let scale = scale.unwrap_or_else(|| 1.0 / (q.dims()[3] as f64).sqrt());
    let mut scores = in_f32(q.matmul(k.swap_dims(2, 3))) * scale;
    if let Some(b) = bias {
        scores = scores + in_f32(b);
    }
    if let Some(m) = mask {
        scores = scores.mask_fill(m, f32::NEG_INFINITY);
    }
    softmax(scores, 3).cast(dtype).matmul(v)
}
