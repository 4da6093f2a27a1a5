//! 3-axis rotary position embedding over (frame, row, column), as Flux applies it to
//! (text/image id, row, column): each axis owns a slice of the head dimension, rotated in
//! interleaved pairs `(x[2i], x[2i+1])` by `pos · θ^(−2i/d_axis)`. Text tokens sit at position
//! (0, 0, 0); image tokens of a frame at (its frame position, row, col): the k-th frame of the
//! sequence at k (1-based), or, for Flux, the outputs from 0 (see `DiTConfig::outputs_at_origin`).

use burn::prelude::*;

/// Positions of one token on the three axes.
pub type Pos3 = [f64; 3];

/// Cos/sin tables for a sequence, each angle repeated for its pair, and the pair rotation.
///
/// # Shapes
/// - cos, sin: `[1, 1, tokens, head_dim]`; rot: `[head_dim, head_dim]`
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    pub cos: Tensor<B, 4>,
    pub sin: Tensor<B, 4>,
    /// `x · rot` maps each pair `(x₀, x₁)` to `(−x₁, x₀)`.
    pub rot: Tensor<B, 2>,
}

/// Rotation angles for each token and frequency: `[tokens][head_dim / 2]`.
pub fn rope_angles(positions: &[Pos3], axes_dim: [usize; 3], theta: f64) -> Vec<f64> {
    let half: usize = axes_dim.iter().sum::<usize>() / 2;
    let mut out = Vec::with_capacity(positions.len() * half);
    for p in positions {
        for (axis, &d) in axes_dim.iter().enumerate() {
            for i in 0..d / 2 {
                let freq = theta.powf(-(2.0 * i as f64) / d as f64);
                out.push(p[axis] * freq);
            }
        }
    }
    out
}

impl<B: Backend> Rope<B> {
    pub fn new(positions: &[Pos3], axes_dim: [usize; 3], theta: f64, device: &B::Device) -> Self {
        let d = axes_dim.iter().sum::<usize>();
        let angles = rope_angles(positions, axes_dim, theta);
        let cos: Vec<f32> = angles.iter().flat_map(|a| [a.cos() as f32; 2]).collect();
        let sin: Vec<f32> = angles.iter().flat_map(|a| [a.sin() as f32; 2]).collect();
        let mut rot = vec![0f32; d * d];
        for i in 0..d / 2 {
            // out[2i] = −x[2i+1], out[2i+1] = x[2i]   (out = x · rot, rot[row = in][col = out])
            rot[(2 * i + 1) * d + 2 * i] = -1.0;
            rot[(2 * i) * d + 2 * i + 1] = 1.0;
        }
        let shape = [1, 1, positions.len(), d];
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            rot: Tensor::from_data(TensorData::new(rot, [d, d]), device),
        }
    }

    /// Rotates `x` in interleaved pairs: `(x₀cos − x₁sin, x₀sin + x₁cos)`, in f32 (as Flux
    /// does), returned in `x`'s dtype.
    ///
    /// # Shapes
    /// - x: `[batch, heads, tokens, head_dim]` → same
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        crate::precision::computed_in_f32(x, |x| {
            let rotated = x.clone().matmul(self.rot.clone().unsqueeze::<4>());
            x * self.cos.clone() + rotated * self.sin.clone()
        })
    }
}

/// Positions for `text_len` text tokens followed by one frame of `rows × cols` patches per
/// entry of `frames`, each at that frame-axis position.
pub fn sequence_positions(text_len: usize, frames: &[usize], rows: usize, cols: usize) -> Vec<Pos3> {
    let mut pos = vec![[0.0; 3]; text_len];
    for &f in frames {
        for r in 0..rows {
            for c in 0..cols {
                pos.push([f as f64, r as f64, c as f64]);
            }
        }
    }
    pos
}
