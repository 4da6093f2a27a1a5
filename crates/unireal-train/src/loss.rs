//! The training objective of one decoded batch: frozen encoders → latents and text states,
//! then the rectified-flow loss of the DiT on the output frames, with the t, noise and
//! dropout the trainer drew ([`Draws`]), so that validation can fix them.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unireal_flow::dit::{dit_flow_loss, flow_problem, DitConditioning, FlowBatch, FlowLoss};
use unireal_flow::seeded_noise;
use unireal_model::precision::cast_params;
use unireal_pipeline::generate::encode_frames;
use unireal_pipeline::{encode_pooled, encode_text, Frozen, UniReal};

use crate::cache::Cache;
use crate::config::{Checkpointing, Dropped, TrainConfig};
use crate::data::Batch;
use crate::error::Result;

/// Moves what the frozen parts computed (on backend `F`) onto the model's backend `B`.
pub trait Lift<F: Backend, B: Backend> {
    fn lift<const D: usize>(&self, x: Tensor<F, D>) -> Tensor<B, D>;
}

/// Training: frozen parts run on the inner backend, outside the autodiff graph.
pub struct FromInner;
impl<B: AutodiffBackend> Lift<B::InnerBackend, B> for FromInner {
    fn lift<const D: usize>(&self, x: Tensor<B::InnerBackend, D>) -> Tensor<B, D> {
        Tensor::from_inner(x)
    }
}

/// Validation: model and frozen parts on one (non-autodiff) backend.
pub struct Same;
impl<B: Backend> Lift<B, B> for Same {
    fn lift<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x
    }
}

/// `train.task_weights` of each sample of `batch` (1 for tasks not listed). The batch's loss is
/// `Σ wᵢ·lᵢ / batch size`, so a task's contribution to the gradient over a run scales with its
/// weight, whatever the batches it is grouped in.
pub fn task_weights(cfg: &TrainConfig, batch: &Batch) -> Vec<f64> {
    batch.tasks.iter().map(|t| *cfg.train.task_weights.get(t.as_str()).unwrap_or(&1.0)).collect()
}

/// What the trainer's generator drew for one batch.
#[derive(Debug, Clone)]
pub struct Draws {
    /// The prompts after text dropout ("" where dropped).
    pub prompts: Vec<String>,
    /// Per sample: what guidance dropout did (the prompt is already "" where `text`; input
    /// images are hidden where `images`).
    pub dropped: Vec<Dropped>,
    /// One t per sample.
    pub t: Vec<f64>,
    /// Seed of the noise of the global batch.
    pub noise_seed: u64,
}

impl Draws {
    /// Full conditioning (validation): the batch's prompts, its images, these t.
    pub fn conditional(batch: &Batch, t: Vec<f64>, noise_seed: u64) -> Draws {
        Draws { prompts: batch.prompts.clone(), dropped: vec![Dropped::default(); batch.len()], t, noise_seed }
    }
}

/// This process's share of the global batch: rows `j·world + rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub world: usize,
    pub rank: usize,
}

impl Part {
    pub const SINGLE: Part = Part { world: 1, rank: 0 };

    /// The global index of this rank's sample `j`.
    pub fn global(self, j: usize) -> usize {
        j * self.world + self.rank
    }
}

/// The model and encoders a loss is computed with.
pub struct Objective<'a, B: Backend, F: Backend, L: Lift<F, B>> {
    pub model: &'a UniReal<B>,
    pub frozen: &'a Frozen<F>,
    pub lift: L,
    pub cfg: &'a TrainConfig,
    pub device: &'a B::Device,
    pub fdevice: &'a F::Device,
    /// The frozen encoders' outputs, read where it holds them instead of running the encoders
    /// (the batch's latents come from the loader: [`Batch::latents`]).
    pub cache: Option<&'a Cache>,
}

impl<B: Backend, F: Backend, L: Lift<F, B>> Objective<'_, B, F, L> {
    /// Latents of a batch's pixels, on the model's device.
    ///
    /// # Shapes
    /// - returns (inputs `[b, n_inputs, c, h, w]`, roles `[b, n_inputs]`) when there are
    ///   inputs, and targets `[b, n_outputs, c, h, w]`
    fn latents(&self, batch: &Batch) -> (Option<(Tensor<B, 5>, Tensor<B, 2, Int>)>, Tensor<B, 5>) {
        let (b, h, w) = (batch.len(), batch.bucket.height as usize, batch.bucket.width as usize);
        // The cache's latents when the loader read them (then there are no pixels), else the
        // frozen encoder's.
        let enc = |px: &[f32], cached: Option<(&Vec<f32>, [usize; 3])>, n: usize| match cached {
            Some((z, [c, lh, lw])) => {
                Tensor::<B, 5>::from_data(TensorData::new(z.clone(), [b, n, c, lh, lw]), self.device)
            }
            None => {
                let x = Tensor::<F, 5>::from_data(TensorData::new(px.to_vec(), [b, n, 3, h, w]), self.fdevice);
                self.lift.lift(encode_frames(&self.frozen.latent, x))
            }
        };
        let cached = batch.latents.as_ref();
        let inputs = (batch.n_inputs > 0).then(|| {
            let roles = TensorData::new(batch.input_roles.clone(), [b, batch.n_inputs]);
            (
                enc(&batch.inputs, cached.map(|l| (&l.inputs, l.shape)), batch.n_inputs),
                Tensor::from_data(roles, self.device),
            )
        });
        (inputs, enc(&batch.outputs, cached.map(|l| (&l.outputs, l.shape)), batch.n_outputs))
    }

    /// The flow loss of `batch` under `draws`, for this rank's `part` of the global batch.
    pub fn loss(&self, batch: &Batch, draws: &Draws, part: Part) -> Result<FlowLoss<B>> {
        let (fb, tt, noise, w) = self.flow_batch(batch, draws, part)?;
        // Mixed precision: the step runs on a copy of the weights in the compute dtype (its
        // gradients reach the f32 weights through the casts).
        let dit = match self.cfg.train.precision.compute_dtype() {
            None => std::borrow::Cow::Borrowed(&self.model.dit),
            Some(dtype) => std::borrow::Cow::Owned(cast_params(self.model.dit.clone(), dtype)),
        };
        let out = dit_flow_loss(&dit, fb, tt, noise);
        Ok(FlowLoss { loss: weighted_loss(out.per_sample.clone(), w), per_sample: out.per_sample })
    }

    /// What the DiT is trained on for `batch` under `draws`: the flow batch, t, the noise and
    /// the per-sample weights.
    ///
    /// # Shapes
    /// - t and weights: `[batch]`; the noise is like the batch's targets
    #[allow(clippy::type_complexity)]
    fn flow_batch(
        &self,
        batch: &Batch,
        draws: &Draws,
        part: Part,
    ) -> Result<(FlowBatch<B>, Tensor<B, 1>, Tensor<B, 5>, Tensor<B, 1>)> {
        let (inputs, targets) = self.latents(batch);
        let cached_text = match self.cache.filter(|c| c.has_text()) {
            Some(c) => c.text_states::<B>(&draws.prompts, self.device).map_err(crate::TrainError::from)?,
            None => None,
        };
        let (text, text_pad, pooled) = match cached_text {
            // The cache holds T5's states; CLIP's pooled vector (a small tower) is computed.
            Some((t, pad)) => {
                (t, Some(pad), encode_pooled(self.frozen, &draws.prompts, self.fdevice, |x| self.lift.lift(x))?)
            }
            None => {
                let s = encode_text(
                    self.model,
                    self.frozen,
                    &self.cfg.model,
                    &draws.prompts,
                    self.device,
                    self.fdevice,
                    |x| self.lift.lift(x),
                )?;
                (s.states, s.pad, s.pooled)
            }
        };
        let weights: Vec<f32> = task_weights(self.cfg, batch).into_iter().map(|w| w as f32).collect();
        let b = batch.len();
        let t: Vec<f32> = draws.t.iter().map(|&x| x as f32).collect();
        let tt = Tensor::<B, 1>::from_data(TensorData::new(t, [b]), self.device);
        // The noise of the global batch (all ranks' samples, interleaved as the loader deals
        // them), of which this rank takes its rows: a run on W processes with batch B draws what
        // one process with batch W·B draws.
        let mut dims = targets.dims();
        let noise = if part.world == 1 {
            seeded_noise::<B, 5>(dims, draws.noise_seed, self.device)
        } else {
            dims[0] *= part.world;
            let rows: Vec<i64> = (0..b).map(|j| part.global(j) as i64).collect();
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [b]), self.device);
            seeded_noise::<B, 5>(dims, draws.noise_seed, self.device).select(0, idx)
        };
        let (inputs, input_roles) = inputs.unzip();
        // Dropped images stay in the sequence, hidden from every query (as the sampler's
        // image-free branch has them).
        let hide: Vec<bool> = draws.dropped.iter().map(|d| d.images).collect();
        let hide_inputs = (inputs.is_some() && hide.contains(&true))
            .then(|| Tensor::<B, 1, Bool>::from_data(TensorData::new(hide, [b]), self.device));
        let fb = FlowBatch {
            cond: DitConditioning {
                inputs,
                input_roles,
                text: text.clone(),
                text_pad: text_pad.clone(),
                hide_inputs,
                null_text: text,
                null_text_pad: text_pad,
                pooled: pooled.clone(),
                null_pooled: pooled,
                guidance: self
                    .model
                    .dit
                    .guidance_in
                    .is_some()
                    .then(|| Tensor::<B, 1>::full([b], self.cfg.model.train_guidance(), self.device)),
            },
            targets,
            weights: None,
        };
        let w = Tensor::<B, 1>::from_data(TensorData::new(weights, [b]), self.device);
        Ok((fb, tt, noise, w))
    }
}

/// Each sample's loss times its task's weight, over the batch size (a fixed normaliser, not the
/// weights' sum): a batch of one task with weight 2 counts twice.
fn weighted_loss<B: Backend>(per_sample: Tensor<B, 1>, weights: Tensor<B, 1>) -> Tensor<B, 1> {
    (per_sample * weights).mean()
}

impl<B: AutodiffBackend, L: Lift<B::InnerBackend, B>> Objective<'_, B, B::InnerBackend, L> {
    /// The loss of `batch` under `draws` over `divisor` (the micro-batches of a step), back-propagated: the gradient goes to
    /// `collect`, in one part or, with per-block recomputation
    /// (`train.activation_checkpointing: blocks`, [`crate::recompute`]), in one part per block
    /// and two more, whose sum is the gradient. Returns that loss and the per-sample
    /// losses.
    pub fn backward(
        &self,
        batch: &Batch,
        draws: &Draws,
        part: Part,
        divisor: usize,
        mut collect: impl FnMut(B::Gradients),
    ) -> Result<(f64, Vec<f32>)> {
        let (loss, per_sample) = if self.cfg.train.activation_checkpointing == Checkpointing::Blocks {
            let (fb, tt, noise, w) = self.flow_batch(batch, draws, part)?;
            let (input, target) = flow_problem(fb, tt, noise);
            let dtype = self.cfg.train.precision.compute_dtype();
            let loss_of = |per_sample| weighted_loss(per_sample, w) / divisor as f64;
            crate::recompute::flow_loss_by_block(&self.model.dit, dtype, input, target, loss_of, collect)
        } else {
            let out = self.loss(batch, draws, part)?;
            let loss = out.loss / divisor as f64;
            collect(loss.backward());
            (loss.inner(), out.per_sample.inner())
        };
        let per_sample = per_sample.into_data().convert::<f32>().to_vec().map_err(crate::TrainError::from)?;
        Ok((loss.into_scalar().elem::<f64>(), per_sample))
    }
}
