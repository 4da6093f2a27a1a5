//! Initialisations of a fresh DiT beyond each layer's own.
//!
//! [`LookupInit`] starts the image attention as a same-position lookup across frames. An
//! editing DiT has to learn that the output token at (row, column) should read the input
//! tokens at the same (row, column) before it can learn anything else about the edit; from
//! the default initialisation, attention is almost uniform and the tiny preset spends its
//! first ~1 000 steps as a per-patch denoiser that ignores its inputs (issue 13).
//! The research behind the defaults is in `scripts/research/demo_learning/README.md`.

use burn::module::Param;
use burn::prelude::*;

use crate::dit::DiT;
use crate::layers::RmsNorm;

/// Same-position lookup at step 0: the query and key projections of the image stream (double
/// blocks) and of the joint stream (single blocks) get one shared bias of `gain` in every
/// head dimension that RoPE rotates by row or column (not by frame), and their QK-RMSNorm
/// scales start at `norm_scale`. After the norm and RoPE, that bias contributes
/// `gain'² · Σ cos(Δrow·ω) + cos(Δcol·ω)` to every query–key score: largest where row and
/// column agree, whatever the frame, so each token starts out attending to its own position
/// in every frame. All of it is ordinary trainable weight afterwards.
#[derive(Config, Debug, PartialEq)]
pub struct LookupInit {
    #[config(default = 4.0)]
    pub gain: f64,
    #[config(default = 3.0)]
    pub norm_scale: f64,
}

impl LookupInit {
    /// `dit` with the lookup added to its freshly initialised weights.
    pub fn apply<B: Backend>(&self, mut dit: DiT<B>) -> DiT<B> {
        let heads = dit.heads;
        let frame_dims = dit.axes_dim[0];
        let head_dim: usize = dit.axes_dim.iter().sum();
        let hidden = heads * head_dim;
        // Per head: 0 on the frame axis, `gain` on the row and column axes.
        let per_head: Vec<f32> = (0..head_dim).map(|d| if d < frame_dims { 0.0 } else { self.gain as f32 }).collect();
        let qk: Vec<f32> = per_head.iter().copied().cycle().take(hidden).collect();
        let add = |bias: Option<Param<Tensor<B, 1>>>| {
            bias.map(|b| {
                b.map(|t| {
                    let n = t.dims()[0];
                    let mut v = qk.clone();
                    v.extend(qk.iter().copied()); // q and k
                    v.resize(n, 0.0); // v and (single blocks) the MLP input: unchanged
                    t.clone() + Tensor::from_data(TensorData::new(v, [n]), &t.device())
                })
            })
        };
        let scale = |n: RmsNorm<B>, s: f64| RmsNorm { scale: n.scale.map(|t| t.ones_like() * s), ..n };
        for block in &mut dit.double_blocks {
            let attn = &mut block.img_attn;
            attn.qkv.bias = add(attn.qkv.bias.take());
            attn.query_norm = scale(attn.query_norm.clone(), self.norm_scale);
            attn.key_norm = scale(attn.key_norm.clone(), self.norm_scale);
        }
        for block in &mut dit.single_blocks {
            block.linear1.bias = add(block.linear1.bias.take());
            block.query_norm = scale(block.query_norm.clone(), self.norm_scale);
            block.key_norm = scale(block.key_norm.clone(), self.norm_scale);
        }
        dit
    }
}
