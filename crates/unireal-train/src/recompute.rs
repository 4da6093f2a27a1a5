//! Per-block activation recomputation (`train.activation_checkpointing: true` or `blocks`).
//!
//! Burn 0.21's `BalancedCheckpointing` recomputes only the operations it counts as cheap: it
//! keeps every matmul's output and, under mixed precision, every cast, so on the DiT it saves
//! about a third of the activations in f32 and almost nothing in bf16 (docs/benchmarks.md
//! "Memory plan"). This module
//! recomputes whole blocks instead, in the way `torch.utils.checkpoint` does per block, with
//! Burn's public autodiff API only:
//!
//! 1. the embedders run under autodiff (their graph is small and is kept);
//! 2. the blocks run outside any graph (untracked), and each block's input is kept;
//! 3. the last layer and the loss run under autodiff from the last block's output, taken as a
//!    leaf, and back-propagate: the gradients of the last layer's weights, and of that output
//!    and of the conditioning vector;
//! 4. from the last block to the first: the block's forward pass again, under autodiff, from
//!    its kept input taken as a leaf, then the backward pass of `Σ output · d output` (whose
//!    gradient is the vector-Jacobian product the chain rule asks for): the block's weight
//!    gradients, and the gradients of its input and of the conditioning vector;
//! 5. the embedders' backward pass from `Σ x₀ · d x₀` over the token streams and the
//!    conditioning vector, whose gradient is summed over every block and the last layer.
//!
//! Each part's gradients go to `collect` as soon as they exist, so a block's graph is freed
//! before the next one is built. The arithmetic is that of the plain backward pass: the same
//! kernels on the same values. Only the conditioning vector's gradient is summed in another
//! grouping (each block's two terms from `silu(vec)` first, where the plain pass adds all
//! blocks' product terms, then all sigmoid terms), so the embedders' gradients may differ in
//! the last bits (tests/recompute.rs measures how little; tests/engine.rs trains with it).

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::FloatDType;
use unireal_flow::per_sample_mse;
use unireal_model::dit::Embedded;
use unireal_model::precision::cast_params;
use unireal_model::{DiT, DiTInput};

/// `module` in the compute dtype (itself in f32).
fn compute<B: Backend, M: Module<B>>(module: M, dtype: Option<FloatDType>) -> M {
    match dtype {
        Some(d) => cast_params(module, d),
        None => module,
    }
}

/// An untracked tensor as a leaf of a new graph.
fn leaf<B: AutodiffBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.detach().require_grad()
}

/// `Σ y · dy` over every element: its gradient with respect to `y` is `dy`.
fn vjp<B: AutodiffBackend, const D: usize>(y: Tensor<B, D>, dy: Tensor<B::InnerBackend, D>) -> Tensor<B, 1> {
    (y * Tensor::from_inner(dy)).sum()
}

/// The gradient of `x` in `grads`, which must be there: `x` is a leaf the graph used.
fn grad_of<B: AutodiffBackend, const D: usize>(
    x: &Tensor<B, D>,
    grads: &mut B::Gradients,
    what: &str,
) -> Tensor<B::InnerBackend, D> {
    x.grad_remove(grads).unwrap_or_else(|| panic!("per-block recomputation: no gradient reached {what}"))
}

fn add<B: Backend, const D: usize>(acc: Option<Tensor<B, D>>, x: Option<Tensor<B, D>>) -> Option<Tensor<B, D>> {
    match (acc, x) {
        (Some(a), Some(x)) => Some(a + x),
        (a, x) => a.or(x),
    }
}

/// The loss `loss_of(per-sample MSE of the DiT's prediction against target)` and its gradient,
/// computed with per-block recomputation on `dit` (f32 parameters; the forward and backward
/// passes in `dtype` when given, as [`crate::loss::Objective`] does without recomputation).
/// Every part of the gradient goes to `collect`; their sum is the gradient of the loss.
/// Returns the loss and the per-sample MSE, outside the graph.
///
/// # Shapes
/// - target: like `input.outputs`; `loss_of` maps `[batch]` to `[1]`
pub fn flow_loss_by_block<B: AutodiffBackend>(
    dit: &DiT<B>,
    dtype: Option<FloatDType>,
    input: DiTInput<B>,
    target: Tensor<B, 5>,
    loss_of: impl FnOnce(Tensor<B, 1>) -> Tensor<B, 1>,
    mut collect: impl FnMut(B::Gradients),
) -> (Tensor<B::InnerBackend, 1>, Tensor<B::InnerBackend, 1>) {
    // The DiT without its blocks: the embedders and the last layer, in the compute dtype.
    let outer = compute(DiT { double_blocks: Vec::new(), single_blocks: Vec::new(), ..dit.clone() }, dtype);
    let Embedded { img, txt, vec, rope, mask, layout } = outer.embed(input);

    // The blocks outside any graph (untracked inputs and weights: no step keeps a tensor),
    // keeping each one's input. Still on the autodiff backend, so that every layer computes
    // as it does in training (attention decomposed, its softmax in f32 under bf16).
    let vec_untracked = vec.clone().detach();
    let (mut h_img, mut h_txt) = (img.clone().detach(), txt.clone().detach());
    let mut double_inputs = Vec::with_capacity(dit.double_blocks.len());
    for block in &dit.double_blocks {
        double_inputs.push((h_img.clone(), h_txt.clone()));
        (h_img, h_txt) =
            compute(block.clone().no_grad(), dtype).forward(h_img, h_txt, vec_untracked.clone(), &rope, mask.clone());
    }
    let txt_len = h_txt.dims()[1];
    let mut x = Tensor::cat(vec![h_txt, h_img], 1);
    let mut single_inputs = Vec::with_capacity(dit.single_blocks.len());
    for block in &dit.single_blocks {
        single_inputs.push(x.clone());
        x = compute(block.clone().no_grad(), dtype).forward(x, vec_untracked.clone(), &rope, mask.clone());
    }

    // The last layer and the loss, then back through the blocks one at a time.
    let (x, v) = (leaf(x), leaf(vec_untracked.clone()));
    let per_sample = per_sample_mse(outer.finish(x.clone(), v.clone(), &layout), target);
    let per_sample_value = per_sample.clone().inner();
    let loss = loss_of(per_sample);
    let loss_value = loss.clone().inner();
    let mut grads = loss.backward();
    let mut dx = grad_of(&x, &mut grads, "the last block's output");
    let mut dvec = v.grad_remove(&mut grads);
    collect(grads);
    drop((x, v));

    for (block, input) in dit.single_blocks.iter().zip(single_inputs).rev() {
        let (x, v) = (leaf(input), leaf(vec_untracked.clone()));
        let y = compute(block.clone(), dtype).forward(x.clone(), v.clone(), &rope, mask.clone());
        let mut grads = vjp(y, dx).backward();
        dx = grad_of(&x, &mut grads, "a single-stream block's input");
        dvec = add(dvec, v.grad_remove(&mut grads));
        collect(grads);
    }

    let total = dx.dims()[1];
    let mut d_txt = dx.clone().narrow(1, 0, txt_len);
    let mut d_img = dx.narrow(1, txt_len, total - txt_len);
    for (block, (img_in, txt_in)) in dit.double_blocks.iter().zip(double_inputs).rev() {
        let (i, t, v) = (leaf(img_in), leaf(txt_in), leaf(vec_untracked.clone()));
        let (img_out, txt_out) =
            compute(block.clone(), dtype).forward(i.clone(), t.clone(), v.clone(), &rope, mask.clone());
        let mut grads = (vjp(img_out, d_img) + vjp(txt_out, d_txt)).backward();
        d_img = grad_of(&i, &mut grads, "a double-stream block's image input");
        d_txt = grad_of(&t, &mut grads, "a double-stream block's text input");
        dvec = add(dvec, v.grad_remove(&mut grads));
        collect(grads);
    }

    // The embedders, from the gradients of what they produced. (In a LoRA run with a frozen
    // text encoder nothing here trains and the pass yields no gradient: Burn 0.21 cannot tell
    // a tracked intermediate tensor from an untracked one, and the pass is cheap.)
    let mut head = vjp(img, d_img) + vjp(txt, d_txt);
    if let Some(dvec) = dvec {
        head = head + vjp(vec, dvec);
    }
    collect(head.backward());
    (loss_value, per_sample_value)
}
