//! The training loop: rectified flow on the DiT with AdamW, warm-up + cosine or constant LR,
//! gradient clipping and accumulation, EMA, metrics, validation loss, sample grids and
//! checkpoints. `run` is generic over the autodiff backend; the binary picks it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use unireal_core::Split;
use unireal_flow::dit::{dit_flow_loss, DitConditioning, FlowBatch};
use unireal_flow::{resolution_shift, sample_t, seeded_noise, Rng, FLUX_SHIFT_ANCHORS};

use crate::collective::{Collective, SingleProcess};

use crate::checkpoint::{self, TrainState};
use crate::config::{LrSchedule, Shift, TrainConfig};
use crate::data::{Batch, Bucket, Index, Loader, Sampler};
use crate::ema::ema_update;
use crate::generate::{chw_to_image, encode_frames, generate, grid, save_png, Request};
use crate::model::{encode_text, Frozen, UniReal};

/// How the binary asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    pub quiet: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: usize,
    pub resumed_from: Option<usize>,
    pub last_loss: f64,
    pub checkpoint: Option<PathBuf>,
}

/// Learning rate at optimizer step `step` (0-based).
pub fn learning_rate(cfg: &TrainConfig, step: usize) -> f64 {
    let t = &cfg.train;
    let warm = |w: usize| if w > 0 && step < w { (step + 1) as f64 / w as f64 } else { 1.0 };
    match t.schedule {
        LrSchedule::Constant { warmup } => t.lr * warm(warmup),
        LrSchedule::Cosine { warmup, min_ratio } => {
            if step < warmup {
                return t.lr * warm(warmup);
            }
            let span = (t.steps.saturating_sub(warmup)).max(1) as f64;
            let p = ((step - warmup) as f64 / span).min(1.0);
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            t.lr * (min_ratio + (1.0 - min_ratio) * cos)
        }
    }
}

/// The timestep shift for a batch with this many image tokens per output frame.
pub fn shift_for(cfg: &TrainConfig, tokens: usize) -> f64 {
    match &cfg.train.shift {
        Shift::Fixed(s) => *s,
        Shift::Named(_) => resolution_shift(tokens, FLUX_SHIFT_ANCHORS.0, FLUX_SHIFT_ANCHORS.1),
    }
}

struct Metrics {
    path: PathBuf,
}

impl Metrics {
    /// Opens `RUN/metrics.jsonl`, dropping lines after `keep_through` (a resumed run rewrites them).
    fn open(run: &Path, keep_through: Option<usize>) -> Result<Metrics, String> {
        let path = run.join("metrics.jsonl");
        match keep_through {
            Some(step) if path.exists() => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v["step"].as_u64())
                            .is_some_and(|s| s as usize <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                unireal_core::write_atomic(&path, kept.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
        Ok(Metrics { path })
    }

    fn log(&self, v: serde_json::Value) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{v}").map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Moves what the frozen parts computed (on backend `F`) onto the model's backend `B`.
trait Lift<F: Backend, B: Backend> {
    fn lift<const D: usize>(&self, x: Tensor<F, D>) -> Tensor<B, D>;
}

/// Training: frozen parts run on the inner backend, outside the autodiff graph.
struct FromInner;
impl<B: AutodiffBackend> Lift<B::InnerBackend, B> for FromInner {
    fn lift<const D: usize>(&self, x: Tensor<B::InnerBackend, D>) -> Tensor<B, D> {
        Tensor::from_inner(x)
    }
}

/// Validation: model and frozen parts on one (non-autodiff) backend.
struct Same;
impl<B: Backend> Lift<B, B> for Same {
    fn lift<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x
    }
}

/// Tensors of a decoded batch on the model's device, in latent space.
struct LatentBatch<B: Backend> {
    inputs: Option<Tensor<B, 5>>,
    roles: Option<Tensor<B, 2, Int>>,
    targets: Tensor<B, 5>,
}

fn to_latents<B: Backend, F: Backend>(
    batch: &Batch,
    frozen: &Frozen<F>,
    lift: &impl Lift<F, B>,
    device: &B::Device,
    fdevice: &F::Device,
) -> LatentBatch<B> {
    let (b, h, w) = (batch.len(), batch.bucket.height as usize, batch.bucket.width as usize);
    let enc = |px: &[f32], n: usize| {
        let x = Tensor::<F, 5>::from_data(TensorData::new(px.to_vec(), [b, n, 3, h, w]), fdevice);
        lift.lift(encode_frames(&frozen.latent, x))
    };
    LatentBatch {
        inputs: (batch.n_inputs > 0).then(|| enc(&batch.inputs, batch.n_inputs)),
        roles: (batch.n_inputs > 0)
            .then(|| Tensor::from_data(TensorData::new(batch.input_roles.clone(), [b, batch.n_inputs]), device)),
        targets: enc(&batch.outputs, batch.n_outputs),
    }
}

/// Loss of one batch, with explicit t and noise (so validation can fix them).
#[allow(clippy::too_many_arguments)]
fn batch_loss<B: Backend, F: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<F>,
    lift: &impl Lift<F, B>,
    cfg: &TrainConfig,
    batch: &Batch,
    prompts: &[String],
    drop_images: bool,
    t: &[f64],
    noise_seed: u64,
    (world, rank): (usize, usize),
    device: &B::Device,
    fdevice: &F::Device,
) -> Result<unireal_flow::dit::FlowLoss<B>, String> {
    let lat = to_latents(batch, frozen, lift, device, fdevice);
    let (text, text_pad) = encode_text(model, frozen, &cfg.model, prompts, device, fdevice, |x| lift.lift(x))?;
    let weights: Vec<f32> =
        batch.tasks.iter().map(|t| *cfg.train.task_weights.get(t.as_str()).unwrap_or(&1.0) as f32).collect();
    let b = batch.len();
    let tt = Tensor::<B, 1>::from_data(TensorData::new(t.iter().map(|&x| x as f32).collect::<Vec<_>>(), [b]), device);
    // The noise of the global batch (all ranks' samples, interleaved as the loader deals
    // them), of which this rank takes its rows: a run on W processes with batch B draws what
    // one process with batch W·B draws.
    let mut dims = lat.targets.dims();
    let noise = if world == 1 {
        seeded_noise::<B, 5>(dims, noise_seed, device)
    } else {
        dims[0] *= world;
        let rows: Vec<i64> = (0..b).map(|j| (j * world + rank) as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [b]), device);
        seeded_noise::<B, 5>(dims, noise_seed, device).select(0, idx)
    };
    let (inputs, roles) = if drop_images { (None, None) } else { (lat.inputs, lat.roles) };
    let fb = FlowBatch {
        cond: DitConditioning {
            inputs,
            input_roles: roles,
            text: text.clone(),
            text_pad: Some(text_pad.clone()),
            null_text: text,
            null_text_pad: Some(text_pad),
        },
        targets: lat.targets,
        weights: Some(Tensor::from_data(TensorData::new(weights, [b]), device)),
    };
    Ok(dit_flow_loss(&model.dit, fb, tt, noise))
}

/// Image tokens per frame of a bucket: latent pixels per side divided by the patch.
pub fn tokens_per_frame(bucket: Bucket, latent_factor: usize, patch: usize) -> usize {
    let per = |s: u32| s as usize / latent_factor / patch;
    per(bucket.width) * per(bucket.height)
}

fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a>(&'a GradientsParams, f64);
    impl<B: AutodiffBackend> burn::module::ModuleVisitor<B> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            if let Some(g) = self.0.get::<B::InnerBackend, D>(p.id) {
                self.1 += g.square().sum().into_scalar().elem::<f64>();
            }
        }
    }
    let mut n = Norm(grads, 0.0);
    model.visit(&mut n);
    n.1.sqrt()
}

/// Trains according to `cfg` in `opts.run_dir`; with `opts.resume`, continues from the run's
/// latest checkpoint exactly where it stopped. One process; see [`run_with`].
pub fn run<B: AutodiffBackend>(cfg: &TrainConfig, opts: &RunOptions, device: &B::Device) -> Result<RunSummary, String> {
    run_with::<B>(cfg, opts, device, &SingleProcess)
}

/// [`run`] as one rank of a data-parallel job: rank and world size come from `coll`; rank 0's
/// initial weights are broadcast; each rank reads its share of every global batch
/// (`data.batch_size` per rank), gradients are averaged over the ranks before the optimizer
/// step; only rank 0 writes checkpoints, metrics and samples. With W ranks of batch B the
/// steps equal one process's with batch W·B (same t, noise and text dropout per sample).
pub fn run_with<B: AutodiffBackend>(
    cfg: &TrainConfig,
    opts: &RunOptions,
    device: &B::Device,
    coll: &dyn Collective,
) -> Result<RunSummary, String> {
    cfg.validate()?;
    let (rank, world) = (coll.rank(), coll.world_size());
    if world == 1 && cfg.data.world_size > 1 {
        return Err(format!(
            "data.world_size is {} but this process runs alone: data-parallel training needs the `mpi` build \
             launched by mpirun or srun (docs/cluster.md)",
            cfg.data.world_size
        ));
    }
    let mut cfg_owned = cfg.clone();
    cfg_owned.data.rank = rank;
    cfg_owned.data.world_size = world;
    let cfg = &cfg_owned;
    let is_main = rank == 0;
    let run = &opts.run_dir;
    std::fs::create_dir_all(run).map_err(|e| format!("{}: {e}", run.display()))?;
    if is_main {
        checkpoint::clean_partial(run);
    }
    let resume_from = if opts.resume {
        Some(checkpoint::latest(run).ok_or_else(|| {
            format!("--resume: {} has no finished checkpoint", checkpoint::checkpoints_dir(run).display())
        })?)
    } else {
        if checkpoint::latest(run).is_some() {
            return Err(format!(
                "{} already holds checkpoints; pass --resume to continue it, or choose another --run-dir",
                run.display()
            ));
        }
        None
    };
    // The run's config without the per-process rank (resuming sets it again).
    let mut shared = cfg.clone();
    shared.data.rank = 0;
    shared.data.world_size = 1;
    let yaml = serde_yaml::to_string(&shared).map_err(|e| e.to_string())?;
    if is_main {
        unireal_core::write_atomic(&run.join("config.yaml"), yaml.as_bytes()).map_err(|e| e.to_string())?;
    }

    // Model and frozen parts.
    let dit_cfg = cfg.model.dit_config()?;
    let frozen = cfg.model.frozen::<B::InnerBackend>(device)?;
    let align = (frozen.latent.factor() * dit_cfg.patch) as u32;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    // Seeded initialisation: two runs of one config start from the same weights.
    B::seed(device, cfg.train.seed);
    let mut model = cfg.model.init::<B>(device)?;
    let adamw = AdamWConfig::new()
        .with_beta_1(cfg.train.betas[0] as f32)
        .with_beta_2(cfg.train.betas[1] as f32)
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.train.weight_decay as f32)
        .with_grad_clipping(
            (cfg.train.grad_clip > 0.0)
                .then_some(burn::grad_clipping::GradientClippingConfig::Norm(cfg.train.grad_clip as f32)),
        );
    let mut optim = adamw.init::<B, UniReal<B>>();
    let mut ema: Option<UniReal<B::InnerBackend>> = (cfg.train.ema_decay > 0.0).then(|| model.valid());
    let mut state =
        TrainState { step: 0, loader_batches: 0, rng: Rng::new(cfg.train.seed), elapsed_s: 0.0, world_size: world };

    if let Some((step, dir)) = &resume_from {
        model = model
            .load_file(dir.join("model"), &recorder, device)
            .map_err(|e| format!("{}: {e}", dir.join("model.mpk").display()))?;
        let rec = recorder
            .load(dir.join("optim"), device)
            .map_err(|e| format!("{}: {e}", dir.join("optim.mpk").display()))?;
        optim = optim.load_record(rec);
        if let Some(e) = ema.as_mut() {
            let mut m = e.clone();
            unireal_model::load_safetensors(
                &mut m,
                &dir.join("ema.safetensors"),
                &[],
                unireal_model::LoadOptions { strict: true },
            )
            .map_err(|e| e.to_string())?;
            *e = m;
        }
        let text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| e.to_string())?;
        state = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", dir.join("state.json").display()))?;
        if state.world_size != world {
            return Err(format!(
                "{} was trained on {} process(es); resume it with as many (this job has {world})",
                run.display(),
                state.world_size
            ));
        }
        if is_main {
            eprintln!("resuming {} from step {step}", run.display());
        }
    }
    // Every rank starts from rank 0's weights.
    model = crate::collective::broadcast_module(model, coll, 0)?;
    let metrics = if is_main { Some(Metrics::open(run, resume_from.as_ref().map(|r| r.0))?) } else { None };
    let log = |v: serde_json::Value| -> Result<(), String> {
        match &metrics {
            Some(m) => m.log(v),
            None => Ok(()),
        }
    };

    // Data.
    let train_index = Arc::new(Index::build(&cfg.data, Split::Train, align).map_err(|e| e.to_string())?);
    if train_index.is_empty() {
        return Err(format!(
            "no training rows in {} (of at most {} inputs and {} outputs)",
            cfg.data.sources.iter().map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", "),
            cfg.data.max_inputs,
            cfg.data.max_outputs
        ));
    }
    let val_index = Arc::new(Index::build(&cfg.data, Split::Val, align).map_err(|e| e.to_string())?);
    if is_main {
        eprintln!(
            "data: {} training rows, {} validation rows, {} over the image caps; buckets {:?}",
            train_index.len(),
            val_index.len(),
            train_index.stats.over_image_cap,
            train_index.buckets.iter().map(|b| format!("{}x{}", b.width, b.height)).collect::<Vec<_>>()
        );
    }
    if world > 1 && is_main {
        eprintln!(
            "data-parallel: {world} processes over {}, {} samples per rank and step",
            coll.name(),
            cfg.data.batch_size * cfg.train.grad_accum
        );
    }
    // Fixed validation batches (the train split when there is no val split, said in the log).
    let fixed_index = if val_index.is_empty() { train_index.clone() } else { val_index.clone() };
    let mut fixed_batches = Vec::new();
    let n_fixed = cfg.log.val_batches.max(if cfg.log.sample_every > 0 { 1 } else { 0 });
    if (cfg.log.val_every > 0 || cfg.log.sample_every > 0) && n_fixed > 0 {
        let mut s = Sampler::new(fixed_index.clone(), cfg.train.seed ^ 0x5eed, cfg.data.batch_size, 0, 1);
        for _ in 0..n_fixed {
            let entries = s.next_batch();
            let b = crate::data::decode_batch(&entries, &fixed_index.buckets).map_err(|e| e.to_string())?;
            if !b.is_empty() {
                fixed_batches.push(b);
            }
        }
        if val_index.is_empty() {
            eprintln!("note: no `val` rows; validation loss and samples use fixed training batches");
        }
    }
    let loader = Loader::start(train_index.clone(), &cfg.data, cfg.train.seed, state.loader_batches)
        .map_err(|e| e.to_string())?;

    let total = cfg.train.steps;
    let bar = if opts.quiet || !is_main { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(state.step as u64);
    let mut last_loss = f64::NAN;
    let mut last_ckpt = None;
    let started = Instant::now() - std::time::Duration::from_secs_f64(state.elapsed_s);

    let mut comm_total = 0.0;
    while state.step < total {
        let t0 = Instant::now();
        let lr = learning_rate(cfg, state.step);
        let mut accum = GradientsAccumulator::<UniReal<B>>::new();
        let (mut loss_sum, mut samples, mut tokens, mut skipped) = (0.0, 0usize, 0usize, 0usize);
        let mut by_task: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for _ in 0..cfg.train.grad_accum {
            let (pos, batch) = loader.next().map_err(|e| e.to_string())?;
            state.loader_batches = pos;
            skipped += batch.skipped.len();
            let b = batch.len();
            // Per-sample draws are made for the global batch (b per rank, dealt
            // round-robin by the loader) and this rank keeps its share, so that every rank's
            // generator stays in step and W ranks reproduce one process with batch W·b.
            let mine = |j: usize| j * world + rank;
            let drops: Vec<bool> = (0..b * world).map(|_| state.rng.uniform() < cfg.data.drop_text).collect();
            let prompts: Vec<String> = batch
                .prompts
                .iter()
                .enumerate()
                .map(|(j, p)| if drops[mine(j)] { String::new() } else { p.clone() })
                .collect();
            let drop_images = batch.n_inputs > 0 && state.rng.uniform() < cfg.data.drop_images;
            let per_frame = tokens_per_frame(batch.bucket, frozen.latent.factor(), dit_cfg.patch);
            let shift = shift_for(cfg, per_frame);
            let t_all = sample_t(&cfg.train.time_sampling, b * world, shift, &mut state.rng);
            let t: Vec<f64> = (0..b).map(|j| t_all[mine(j)]).collect();
            let noise_seed = state.rng.next_u64();
            let out = batch_loss(
                &model,
                &frozen,
                &FromInner,
                cfg,
                &batch,
                &prompts,
                drop_images,
                &t,
                noise_seed,
                (world, rank),
                device,
                device,
            )?;
            let per: Vec<f32> =
                out.per_sample.clone().into_data().convert::<f32>().to_vec().map_err(|e| format!("{e:?}"))?;
            for (task, l) in batch.tasks.iter().zip(&per) {
                let e = by_task.entry(task.as_str().to_string()).or_default();
                e.0 += *l as f64;
                e.1 += 1;
            }
            let loss = out.loss / cfg.train.grad_accum as f64;
            loss_sum += loss.clone().into_scalar().elem::<f64>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accum.accumulate(&model, grads);
            samples += b;
            let text_len = batch.prompts.iter().map(|p| p.len()).max().unwrap_or(0) + 1;
            tokens += b * (per_frame * (batch.n_inputs + batch.n_outputs) + text_len);
        }
        // The one place gradients exist before the optimizer step: averaged over the ranks.
        let bucket = (cfg.train.allreduce_bucket_mb * 1024.0 * 1024.0 / 4.0) as usize;
        let (grads, comm_s) = crate::collective::sync_gradients(&model, accum.grads(), coll, bucket)?;
        comm_total += comm_s;
        if world > 1 {
            let mut l = [loss_sum as f32];
            coll.all_reduce_sum(&mut l)?;
            loss_sum = l[0] as f64 / world as f64;
        }
        let gnorm = grad_norm(&model, &grads);
        model = optim.step(lr, model, grads);
        if let Some(e) = ema.take() {
            ema = Some(ema_update(e, &model.valid(), cfg.train.ema_decay));
        }
        state.step += 1;
        state.elapsed_s = started.elapsed().as_secs_f64();
        last_loss = loss_sum;
        let dt = t0.elapsed().as_secs_f64();
        if is_main {
            let tasks: serde_json::Map<String, serde_json::Value> =
                by_task.iter().map(|(k, (s, n))| (k.clone(), serde_json::json!(s / *n as f64))).collect();
            log(serde_json::json!({
                "kind": "train", "step": state.step, "loss": loss_sum, "loss_by_task": tasks, "lr": lr,
                "grad_norm": gnorm, "samples_per_s": (samples * world) as f64 / dt,
                "tokens_per_s": (tokens * world) as f64 / dt, "step_s": dt, "allreduce_s": comm_s,
                "world_size": world, "loader_batches": state.loader_batches, "skipped_rows": skipped,
            }))?;
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {loss_sum:.4} lr {lr:.2e}"));

        let at = |every: usize| every > 0 && (state.step.is_multiple_of(every) || state.step == total);
        if is_main && at(cfg.log.val_every) && !fixed_batches.is_empty() {
            let mut vrng = Rng::new(0x7a1_u64 ^ cfg.train.seed);
            let mut sum = 0.0;
            // On the inner backend: no autodiff graph is built for validation.
            let vm = model.valid();
            for batch in fixed_batches.iter().take(cfg.log.val_batches.max(1)) {
                let per_frame = tokens_per_frame(batch.bucket, frozen.latent.factor(), dit_cfg.patch);
                let t = sample_t(&cfg.train.time_sampling, batch.len(), shift_for(cfg, per_frame), &mut vrng);
                let seed = vrng.next_u64();
                let out = batch_loss(
                    &vm,
                    &frozen,
                    &Same,
                    cfg,
                    batch,
                    &batch.prompts,
                    false,
                    &t,
                    seed,
                    (1, 0),
                    device,
                    device,
                )?;
                sum += out.loss.into_scalar().elem::<f64>();
            }
            let val = sum / cfg.log.val_batches.max(1).min(fixed_batches.len()) as f64;
            log(serde_json::json!({"kind": "val", "step": state.step, "val_loss": val}))?;
            bar.println(format!("step {}: validation loss {val:.4}", state.step));
        }
        if is_main && at(cfg.log.sample_every) && !fixed_batches.is_empty() {
            let m = match (&ema, cfg.log.sample_ema) {
                (Some(e), true) => e.clone(),
                _ => model.valid(),
            };
            let path = write_samples(&m, &frozen, cfg, &fixed_batches[0], state.step, run, device)?;
            log(serde_json::json!({"kind": "samples", "step": state.step, "path": path}))?;
        }
        let ckpt_due =
            state.step == total || (cfg.checkpoint.every > 0 && state.step.is_multiple_of(cfg.checkpoint.every));
        if is_main && ckpt_due {
            let st = state.clone();
            let dir = checkpoint::write(run, state.step, cfg.checkpoint.keep, |tmp| {
                unireal_model::save_safetensors(&model.valid(), &tmp.join("model.safetensors"))
                    .map_err(|e| e.to_string())?;
                if let Some(e) = &ema {
                    unireal_model::save_safetensors(e, &tmp.join("ema.safetensors")).map_err(|e| e.to_string())?;
                }
                model.clone().save_file(tmp.join("model"), &recorder).map_err(|e| e.to_string())?;
                recorder.record(optim.to_record(), tmp.join("optim")).map_err(|e| e.to_string())?;
                std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&st).unwrap())
                    .map_err(|e| e.to_string())?;
                std::fs::write(tmp.join("config.yaml"), &yaml).map_err(|e| e.to_string())?;
                Ok(())
            })?;
            last_ckpt = Some(dir);
        }
    }
    bar.finish_and_clear();
    if world > 1 {
        // Every rank says what it holds: equal hashes mean the ranks stayed in step.
        eprintln!(
            "rank {rank}/{world}: weights {} after {} steps ({:.3} s in all-reduce)",
            crate::collective::weights_hash(&model.valid()),
            state.step,
            comm_total
        );
    }
    Ok(RunSummary { steps: state.step, resumed_from: resume_from.map(|r| r.0), last_loss, checkpoint: last_ckpt })
}

/// Samples from the fixed batch and writes `RUN/samples/step-N.png`: inputs | output | target.
fn write_samples<B: Backend>(
    model: &UniReal<B>,
    frozen: &Frozen<B>,
    cfg: &TrainConfig,
    batch: &Batch,
    step: usize,
    run: &Path,
    device: &B::Device,
) -> Result<PathBuf, String> {
    let n = cfg.log.samples.max(1).min(batch.len());
    let (w, h) = (batch.bucket.width, batch.bucket.height);
    let plane = (3 * w * h) as usize;
    let per_frame = tokens_per_frame(batch.bucket, frozen.latent.factor(), model.dit.patch);
    let req = Request {
        prompts: batch.prompts[..n].to_vec(),
        inputs: batch.inputs[..n * batch.n_inputs * plane].to_vec(),
        input_roles: batch.input_roles[..n * batch.n_inputs].to_vec(),
        n_inputs: batch.n_inputs,
        n_outputs: batch.n_outputs,
        bucket: batch.bucket,
        steps: cfg.log.sample_steps,
        shift: shift_for(cfg, per_frame),
        guidance: cfg.log.guidance,
        seed: cfg.train.seed,
    };
    let out = generate(model, frozen, &cfg.model, &req, device, |_, _| {})?;
    let out: Vec<f32> = out.into_data().convert::<f32>().to_vec().map_err(|e| format!("{e:?}"))?;
    let mut rows = Vec::new();
    for i in 0..n {
        let mut row = Vec::new();
        for k in 0..batch.n_inputs {
            let o = (i * batch.n_inputs + k) * plane;
            row.push(chw_to_image(&batch.inputs[o..o + plane], w, h));
        }
        for k in 0..batch.n_outputs {
            let o = (i * batch.n_outputs + k) * plane;
            row.push(chw_to_image(&out[o..o + plane], w, h));
        }
        for k in 0..batch.n_outputs {
            let o = (i * batch.n_outputs + k) * plane;
            row.push(chw_to_image(&batch.outputs[o..o + plane], w, h));
        }
        rows.push(row);
    }
    let dir = run.join("samples");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("step-{step:08}.png"));
    save_png(&grid(&rows, (w, h)), &path)?;
    Ok(path)
}
