//! The UniReal DiT as a [`VelocityModel`], and its training loss.

use burn::prelude::*;
use unireal_model::{DiT, DiTInput};

use crate::{interpolate, per_sample_mse, velocity_target, weighted_mean, Condition, VelocityModel};

/// What a DiT call is conditioned on, with the "empty" text used when guidance drops it.
#[derive(Debug, Clone)]
pub struct DitConditioning<B: Backend> {
    /// Clean input latents `[batch, inputs, c, h, w]`, or `None` (text-to-image).
    pub inputs: Option<Tensor<B, 5>>,
    /// `[batch, inputs]`.
    pub input_roles: Option<Tensor<B, 2, Int>>,
    /// `[batch, tokens, text_dim]` and its padding mask.
    pub text: Tensor<B, 3>,
    pub text_pad: Option<Tensor<B, 2, Bool>>,
    /// Samples whose input images are hidden (guidance dropout in training), `[batch]`.
    pub hide_inputs: Option<Tensor<B, 1, Bool>>,
    /// The encoding of the empty prompt, `[batch, tokens', text_dim]`, for guidance.
    pub null_text: Tensor<B, 3>,
    pub null_text_pad: Option<Tensor<B, 2, Bool>>,
    /// The pooled text vector `[batch, vec_in_dim]` of a DiT with `vector_in` (Flux), and the
    /// empty prompt's.
    pub pooled: Option<Tensor<B, 2>>,
    pub null_pooled: Option<Tensor<B, 2>>,
    /// The distilled guidance scale `[batch]` of a DiT with `guidance_in` (FLUX.1-dev).
    pub guidance: Option<Tensor<B, 1>>,
}

/// A DiT closed over its conditioning.
pub struct DitVelocity<'a, B: Backend> {
    pub model: &'a DiT<B>,
    pub cond: DitConditioning<B>,
}

impl<B: Backend> VelocityModel<B> for DitVelocity<'_, B> {
    fn velocity(&self, x_t: Tensor<B, 5>, t: Tensor<B, 1>, condition: Condition) -> Tensor<B, 5> {
        let c = &self.cond;
        let (text, text_pad, pooled) = match condition {
            Condition::Full => (c.text.clone(), c.text_pad.clone(), c.pooled.clone()),
            Condition::ImagesOnly | Condition::None => {
                (c.null_text.clone(), c.null_text_pad.clone(), c.null_pooled.clone())
            }
        };
        // Without images, the input frames stay in the sequence but are hidden from every
        // query: the positions the model was trained with when its images were dropped.
        let hide_inputs = match (condition, &c.inputs) {
            (Condition::None, Some(x)) => Some(Tensor::<B, 1, Bool>::full([x.dims()[0]], true, &x.device())),
            _ => c.hide_inputs.clone(),
        };
        self.model.forward(DiTInput {
            inputs: c.inputs.clone(),
            input_roles: c.input_roles.clone(),
            outputs: x_t,
            t,
            text,
            text_pad,
            hide_inputs,
            pooled,
            guidance: c.guidance.clone(),
        })
    }
}

/// One training batch in latent space.
#[derive(Debug, Clone)]
pub struct FlowBatch<B: Backend> {
    pub cond: DitConditioning<B>,
    /// Clean output latents x₀, `[batch, outputs, c, h, w]`.
    pub targets: Tensor<B, 5>,
    /// Per-sample loss weights, `[batch]`.
    pub weights: Option<Tensor<B, 1>>,
}

/// The loss of one batch and its per-sample parts (for per-task metrics).
pub struct FlowLoss<B: Backend> {
    /// Scalar `[1]`.
    pub loss: Tensor<B, 1>,
    /// `[batch]`.
    pub per_sample: Tensor<B, 1>,
}

/// Rectified-flow loss of the DiT: noise only the output frames, `x_t = (1 − t)·x₀ + t·ε`,
/// predict `ε − x₀` for the output tokens, MSE over those tokens only. Input frames enter clean.
///
/// # Shapes
/// - noise: like `batch.targets`; t: `[batch]`
pub fn dit_flow_loss<B: Backend>(
    model: &DiT<B>,
    batch: FlowBatch<B>,
    t: Tensor<B, 1>,
    noise: Tensor<B, 5>,
) -> FlowLoss<B> {
    let weights = batch.weights.clone();
    let (input, target) = flow_problem(batch, t, noise);
    let per_sample = per_sample_mse(model.forward(input), target);
    FlowLoss { loss: weighted_mean(per_sample.clone(), weights), per_sample }
}

/// What [`dit_flow_loss`] asks of the DiT: its input (the output frames noised to `x_t`) and
/// the velocity it should predict. The batch's `weights` are left to the caller.
///
/// # Shapes
/// - noise: like `batch.targets`; t: `[batch]`; the target is like `batch.targets`
pub fn flow_problem<B: Backend>(
    batch: FlowBatch<B>,
    t: Tensor<B, 1>,
    noise: Tensor<B, 5>,
) -> (DiTInput<B>, Tensor<B, 5>) {
    let x_t = interpolate(batch.targets.clone(), noise.clone(), t.clone());
    let target = velocity_target(batch.targets, noise);
    let c = batch.cond;
    let input = DiTInput {
        inputs: c.inputs,
        input_roles: c.input_roles,
        outputs: x_t,
        t,
        text: c.text,
        text_pad: c.text_pad,
        hide_inputs: c.hide_inputs,
        pooled: c.pooled,
        guidance: c.guidance,
    };
    (input, target)
}
