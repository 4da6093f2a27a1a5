//! The training loop as a [`Trainer`] built once (config, model, optimizer, EMA, data,
//! collective, resumed state) with [`Trainer::train_step`], [`Trainer::validate`],
//! [`Trainer::write_samples`] and [`Trainer::save_checkpoint`]; [`Trainer::fit`] runs them
//! to the configured step count. The components live beside it: [`crate::optim`] (AdamW, LR
//! schedule), [`crate::loss`] (the objective of a batch), [`crate::data`] (loader, fixed
//! batches), [`crate::metrics`], [`crate::checkpoint`], [`crate::samples`] and
//! [`crate::collective`]. Generic over the autodiff backend; the binary picks it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use unireal_flow::{sample_t, Rng};
use unireal_pipeline::{fit_prompt, tokens_per_frame, Frozen, UniReal};

use crate::cache::{self, Cache};
use crate::checkpoint::{self, Restored, Snapshot, TrainState};
use crate::collective::{self, Collective, SingleProcess};
use crate::config::{Dropped, TrainConfig};
use crate::data::{Batch, TrainData};
use crate::ema::{ema_update, trained_mask};
use crate::error::{Result, TrainError};
use crate::loss::{task_weights, Draws, FromInner, Objective, Part, Same};
use crate::metrics::{DropCounts, Metrics, StepStats};
use crate::optim::{clip_global_norm, learning_rate, optimizer, Optim};

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

/// Trains according to `cfg` in `opts.run_dir`; with `opts.resume`, continues from the run's
/// latest checkpoint exactly where it stopped. One process; see [`run_with`].
pub fn run<B: AutodiffBackend>(cfg: &TrainConfig, opts: &RunOptions, device: &B::Device) -> Result<RunSummary> {
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
) -> Result<RunSummary> {
    Trainer::<B>::new(cfg, opts, device, coll)?.fit(opts.quiet)
}

/// What [`Trainer::validate`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ValStats {
    pub loss: f64,
    /// `[a, b)` → mean per-sample loss at t in that bin.
    pub by_t: Vec<(String, f64)>,
    pub by_task: BTreeMap<String, f64>,
}

impl ValStats {
    fn to_json(&self, step: usize) -> serde_json::Value {
        let by_t: serde_json::Map<String, serde_json::Value> =
            self.by_t.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({"kind": "val", "step": step, "val_loss": self.loss, "val_loss_by_t": by_t,
               "val_loss_by_task": self.by_task})
    }
}

/// The name of t bin `k` of `bins`: `[0.25,0.50)`.
pub fn t_bin_name(k: usize, bins: usize) -> String {
    let edge = |i: usize| i as f64 / bins as f64;
    format!("[{:.2},{:.2}{}", edge(k), edge(k + 1), if k + 1 == bins { "]" } else { ")" })
}

/// What one micro-batch did.
#[derive(Debug, Default)]
struct MicroStats {
    /// Its loss / grad_accum.
    loss: f64,
    samples: usize,
    tokens: usize,
    skipped: usize,
    dropped: DropCounts,
    truncated: usize,
    /// Images and prompts a cache in use did not hold.
    cache_misses: usize,
    /// Model FLOPs of its forward and backward ([`Trainer::batch_flops`]).
    flops: f64,
}

impl std::ops::AddAssign for MicroStats {
    fn add_assign(&mut self, o: MicroStats) {
        self.loss += o.loss;
        self.samples += o.samples;
        self.tokens += o.tokens;
        self.skipped += o.skipped;
        self.dropped += o.dropped;
        self.truncated += o.truncated;
        self.cache_misses += o.cache_misses;
        self.flops += o.flops;
    }
}

/// One task's samples in a step.
#[derive(Debug, Default)]
struct TaskTotals {
    /// Sum of per-sample losses (unweighted).
    loss: f64,
    samples: usize,
    /// The task's part of the step's loss: Σ weight·loss / (batch size · grad_accum).
    share: f64,
}

/// A run, ready to step.
pub struct Trainer<'c, B: AutodiffBackend> {
    /// The config with this process's rank and world size.
    cfg: TrainConfig,
    /// The run's config as written to `RUN/config.yaml` (rank 0 of 1).
    config_yaml: String,
    run: PathBuf,
    device: B::Device,
    coll: &'c dyn Collective,
    part: Part,
    /// Out only while the optimizer steps it (owned there, so updates can be in place).
    model: Option<UniReal<B>>,
    frozen: Frozen<B::InnerBackend>,
    optim: Optim<B>,
    ema: Option<UniReal<B::InnerBackend>>,
    state: TrainState,
    resumed_from: Option<usize>,
    data: TrainData,
    /// The frozen encoders' outputs (`unireal-train cache`), when the run reads them.
    cache: Option<Arc<Cache>>,
    /// Which parameters train (visit order): all of them, or a LoRA run's adapters.
    trained: Vec<bool>,
    /// The DiT's shape and the trained text encoder's parameter count, for model FLOPs.
    dit_cfg: unireal_model::DiTConfig,
    text_params: usize,
    /// Rank 0 only.
    metrics: Option<Metrics>,
    /// `log.eval`'s rows, scorers and the run as a checkpoint reads it; rank 0 only.
    eval: Option<TrainEval<B::InnerBackend>>,
    /// Training seconds of the run before this process (from the checkpoint).
    elapsed_before_s: f64,
    started: Instant,
    allreduce_total_s: f64,
    /// `RUN/.lock`, held by rank 0 for the trainer's life.
    _lock: Option<unireal_core::DirLock>,
}

/// What `log.eval` needs, loaded once.
struct TrainEval<B: burn::prelude::Backend> {
    protocol: unireal_eval::Protocol,
    rows: Vec<unireal_eval::TestRow>,
    emb: unireal_eval::Embedders<B>,
    /// The run's config as `unireal-infer` and `unireal-eval --checkpoint` read a checkpoint's,
    /// so rows are generated as they would be from a saved checkpoint.
    ckpt: unireal_pipeline::Checkpoint,
}

/// The checkpoint a run resumes from, after checking the run directory agrees with `resume`.
fn resume_point(run: &Path, resume: bool) -> Result<Option<(usize, PathBuf)>> {
    match (checkpoint::latest(run), resume) {
        (Some(latest), true) => Ok(Some(latest)),
        (None, true) => Err(TrainError::NothingToResume { checkpoints: checkpoint::checkpoints_dir(run) }),
        (Some(_), false) => Err(TrainError::RunExists { run: run.to_path_buf() }),
        (None, false) => Ok(None),
    }
}

/// `cfg` with the rank and world size of `coll`, and the YAML of the run's shared config.
fn resolve_config(cfg: &TrainConfig, coll: &dyn Collective) -> Result<(TrainConfig, String)> {
    cfg.validate()?;
    if coll.world_size() == 1 && cfg.data.world_size > 1 {
        return Err(TrainError::NotLaunchedByMpi(cfg.data.world_size));
    }
    let mut shared = cfg.clone();
    // The DiT's shape read from `init_from` is written into the run's config.
    shared.model = cfg.model.resolved()?;
    shared.data.rank = 0;
    shared.data.world_size = 1;
    let yaml = serde_yaml::to_string(&shared).map_err(TrainError::SerializeConfig)?;
    let mut mine = cfg.clone();
    mine.model = shared.model.clone();
    mine.data.rank = coll.rank();
    mine.data.world_size = coll.world_size();
    Ok((mine, yaml))
}

impl<'c, B: AutodiffBackend> Trainer<'c, B> {
    /// Sets up a run in `opts.run_dir`: a new one (the directory must hold no checkpoint) or,
    /// with `opts.resume`, the latest checkpoint's model, optimizer, EMA, RNG and loader
    /// position.
    pub fn new(cfg: &TrainConfig, opts: &RunOptions, device: &B::Device, coll: &'c dyn Collective) -> Result<Self> {
        let (cfg, config_yaml) = resolve_config(cfg, coll)?;
        coll.set_timeout(cfg.train.collective_timeout_s);
        let part = Part { world: coll.world_size(), rank: coll.rank() };
        let is_main = part.rank == 0;
        let run = opts.run_dir.clone();
        std::fs::create_dir_all(&run).map_err(|source| TrainError::Write { path: run.clone(), source })?;
        // One run per directory: rank 0 holds `RUN/.lock` before it sweeps partial checkpoints.
        // Every rank learns whether it got it, so that none waits in a collective for a rank
        // that gave up.
        let lock = match is_main {
            true => Some(unireal_core::DirLock::acquire(&run, "unireal-train").map_err(|e| match e {
                unireal_core::LockError::Held { holder, .. } => TrainError::Busy { run: run.clone(), holder },
                unireal_core::LockError::Io { path, source } => TrainError::Write { path, source },
            })),
            false => None,
        };
        let locked = collective::all_ok(coll, !matches!(lock, Some(Err(_))))?;
        let lock = match lock {
            Some(l) => Some(l?),
            None if !locked => {
                return Err(TrainError::Busy { run: run.clone(), holder: "rank 0 names the holder".into() })
            }
            None => None,
        };
        if is_main {
            checkpoint::clean_partial(&run);
        }
        let resume_from = resume_point(&run, opts.resume)?;
        let frozen = cfg.model.frozen::<B::InnerBackend>(device)?;
        // Seeded initialisation: two runs of one config start from the same weights.
        B::seed(device, cfg.train.seed);
        // A resumed run's weights come from its checkpoint: `init_from` is not read again,
        // except by a LoRA run, whose checkpoints hold the adapters alone.
        let mut model = if resume_from.is_some() && cfg.train.lora.is_none() {
            cfg.model.build::<B>(device)?
        } else {
            cfg.model.init::<B>(device)?
        };
        if let Some(lora) = &cfg.train.lora {
            model = unireal_pipeline::with_lora(model, lora, cfg.train.precision.compute_dtype(), device);
        }
        let trained = trained_mask(&model);
        let mut optim = optimizer::<B>(&cfg.train);
        let mut ema = (cfg.train.ema_decay > 0.0).then(|| model.valid());
        let mut state = TrainState::fresh(cfg.train.seed, part.world);
        if let Some((step, dir)) = &resume_from {
            if let Some(key) = checkpoint::incompatible_key(dir, &cfg)? {
                return Err(TrainError::ResumeConfigChanged { checkpoint: dir.clone(), key });
            }
            let r: Restored<B> = checkpoint::load(dir, model, optim, ema, device, cfg.train.lora.is_some())?;
            (model, optim, ema, state) = (r.model, r.optim, r.ema, r.state);
            if state.world_size != part.world {
                return Err(TrainError::WorldSizeChanged { run, trained: state.world_size, now: part.world });
            }
            if is_main {
                eprintln!("resuming {} from step {step}", run.display());
            }
        }
        // Written once the resume is known to work: a refused resume leaves the run's config.
        if is_main {
            let path = run.join("config.yaml");
            unireal_core::write_atomic(&path, config_yaml.as_bytes())
                .map_err(|source| TrainError::Write { path, source })?;
        }
        // Every rank starts from rank 0's weights.
        // Every rank must pack the same weights and gradients: refused on every rank if not.
        let mut shapes = blake3::Hasher::new();
        for (t, _) in crate::ema::flat_params(&model).iter().zip(&trained).filter(|(_, on)| **on) {
            shapes.update(&(t.shape().num_elements() as u64).to_le_bytes());
        }
        let layout = u64::from_le_bytes(shapes.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        collective::check_agreement(coll, "the trained weights (count and sizes)", layout)?;
        let model = collective::broadcast_module(model, coll, 0, &trained)?;
        let metrics = if is_main { Some(Metrics::open(&run, resume_from.as_ref().map(|r| r.0))?) } else { None };
        let cache = cache::open_for_run(&cfg, &run)?.map(Arc::new);
        let dit_cfg = cfg.model.dit_config()?;
        let text_params = model.text.as_ref().map_or(0, |t| t.num_params());
        let mut data = TrainData::open(&cfg, cfg.model.pixel_align()?, state.loader_batches, cache.clone())?;
        for b in &mut data.fixed {
            b.fit_prompts(|c, base| fit_prompt(&cfg.model, &frozen, c, base));
        }
        let eval = match (&cfg.log.eval, is_main) {
            (Some(e), true) => {
                let opts = unireal_eval::RowOptions { references: e.references.clone(), hf_split: e.hf_split.clone() };
                let mut rows = unireal_eval::test_rows(&e.shards, e.protocol, &opts)?;
                rows.truncate(e.limit);
                let emb = unireal_eval::Embedders::load(&e.clip, &e.dino, device)?;
                let config = serde_yaml::from_str(&config_yaml).map_err(|e| {
                    TrainError::Config(crate::config::InvalidConfig {
                        key: "log.eval".into(),
                        message: format!("the run's config as a checkpoint reads it: {e}"),
                    })
                })?;
                let ckpt = unireal_pipeline::Checkpoint { dir: run.clone(), config };
                Some(TrainEval { protocol: e.protocol, rows, emb, ckpt })
            }
            _ => None,
        };
        let trainer = Trainer {
            eval,
            config_yaml,
            run,
            device: device.clone(),
            coll,
            part,
            model: Some(model),
            frozen,
            optim,
            ema,
            elapsed_before_s: state.elapsed_s,
            started: Instant::now(),
            state,
            resumed_from: resume_from.map(|r| r.0),
            data,
            cache,
            trained,
            dit_cfg,
            text_params,
            metrics,
            allreduce_total_s: 0.0,
            _lock: lock,
            cfg,
        };
        trainer.announce();
        Ok(trainer)
    }

    /// The trained module (raw weights).
    pub fn model(&self) -> &UniReal<B> {
        self.model.as_ref().expect("the model is only taken out during the optimizer step")
    }

    /// The EMA of the weights, when `train.ema_decay` > 0.
    pub fn ema(&self) -> Option<&UniReal<B::InnerBackend>> {
        self.ema.as_ref()
    }

    fn is_main(&self) -> bool {
        self.part.rank == 0
    }

    /// What the data looks like, on rank 0's stderr.
    fn announce(&self) {
        if !self.is_main() {
            return;
        }
        let (train, val) = (&self.data.train, &self.data.val);
        eprintln!(
            "data: {} training rows, {} validation rows, {} over the image caps; buckets {:?}",
            train.len(),
            val.len(),
            train.stats.over_image_cap,
            train.buckets.iter().map(|b| format!("{}x{}", b.width, b.height)).collect::<Vec<_>>()
        );
        if self.part.world > 1 {
            eprintln!(
                "data-parallel: {} processes over {}, {} samples per rank and step",
                self.part.world,
                self.coll.name(),
                self.cfg.data.batch_size * self.cfg.train.grad_accum
            );
        }
        if let Some(h) = &self.data.holdout {
            eprintln!(
                "validation: {} training rows held out (data.holdout {}): {}",
                h.rows,
                self.cfg.data.holdout,
                h.keys.join(", ")
            );
        }
        if let Some(lora) = &self.cfg.train.lora {
            let adapters = unireal_model::lora::adapters(&self.model().dit);
            let params: usize = adapters.iter().map(|(_, a)| a.a.num_params() + a.b.num_params()).sum();
            let total = self.model().dit.num_params();
            let targets: Vec<String> = lora
                .targets
                .iter()
                .map(|t| serde_json::to_value(t).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            eprintln!(
                "lora: rank {}, alpha {}, targets {}: {} adapters, {} trained parameters ({:.3}% of the DiT's {}); the base is frozen",
                lora.rank,
                lora.alpha.unwrap_or(lora.rank as f64),
                targets.join(", ").replace('"', ""),
                adapters.len(),
                params,
                100.0 * params as f64 / total as f64,
                total
            );
        }
        if let Some(c) = &self.cache {
            let (latents, prompts) = c.counts();
            eprintln!(
                "cache: {} ({latents} latents, {prompts} prompts): the frozen encoders run only for what it lacks",
                c.dir().display()
            );
        }
        if self.data.fixed_from_train && !self.data.fixed.is_empty() {
            eprintln!("note: no `val` rows; validation loss and samples use fixed training batches");
        }
    }

    /// Optimizer steps done.
    pub fn step(&self) -> usize {
        self.state.step
    }

    fn tokens_per_frame(&self, batch: &Batch) -> usize {
        tokens_per_frame(batch.bucket, self.frozen.latent.factor(), self.model().dit.patch)
    }

    /// Per-sample draws for the global batch (b per rank, dealt round-robin by the loader), of
    /// which this rank keeps its share, so that every rank's generator stays in step and W
    /// ranks reproduce one process with batch W·b.
    fn draw(&mut self, batch: &Batch) -> Draws {
        let (b, world) = (batch.len(), self.part.world);
        let shift = self.cfg.train.shift.for_tokens(self.tokens_per_frame(batch));
        let rng = &mut self.state.rng;
        let has_inputs = batch.n_inputs > 0;
        let all: Vec<Dropped> = (0..b * world).map(|_| self.cfg.data.dropout(rng.uniform(), has_inputs)).collect();
        let dropped: Vec<Dropped> = (0..b).map(|j| all[self.part.global(j)]).collect();
        let prompts =
            dropped.iter().zip(&batch.prompts).map(|(d, p)| if d.text { String::new() } else { p.clone() }).collect();
        let t_all = sample_t(&self.cfg.train.time_sampling, b * world, shift, rng);
        let t = (0..b).map(|j| t_all[self.part.global(j)]).collect();
        Draws { prompts, dropped, t, noise_seed: rng.next_u64() }
    }

    /// One micro-batch: forward, backward, gradients into `accum`; the per-task losses into
    /// `by_task`.
    fn micro_batch(
        &mut self,
        accum: &mut GradientsAccumulator<UniReal<B>>,
        by_task: &mut BTreeMap<String, TaskTotals>,
    ) -> Result<MicroStats> {
        let (pos, mut batch) = self.data.loader.next()?;
        self.state.loader_batches = pos;
        let truncated = batch.fit_prompts(|c, b| fit_prompt(&self.cfg.model, &self.frozen, c, b));
        let draws = self.draw(&batch);
        let objective = Objective {
            model: self.model(),
            frozen: &self.frozen,
            lift: FromInner,
            cfg: &self.cfg,
            device: &self.device,
            fdevice: &self.device,
            cache: self.cache.as_deref(),
        };
        let cache_misses = batch.cache_misses + self.text_misses(&draws.prompts);
        let model = self.model();
        let (value, per) = objective.backward(&batch, &draws, self.part, self.cfg.train.grad_accum, |g| {
            accum.accumulate(model, GradientsParams::from_grads(g, model))
        })?;
        let norm = (batch.len() * self.cfg.train.grad_accum) as f64;
        for ((task, l), w) in batch.tasks.iter().zip(&per).zip(task_weights(&self.cfg, &batch)) {
            let e = by_task.entry(task.as_str().to_string()).or_default();
            e.loss += *l as f64;
            e.samples += 1;
            e.share += w * *l as f64 / norm;
        }
        let b = batch.len();
        let text_len = batch.prompts.iter().map(|p| p.len()).max().unwrap_or(0) + 1;
        let image_tokens = self.tokens_per_frame(&batch) * (batch.n_inputs + batch.n_outputs);
        let tokens = b * (image_tokens + text_len);
        let flops = b as f64 * self.sample_flops(image_tokens, text_len);
        let mut dropped = DropCounts::default();
        draws.dropped.iter().for_each(|d| dropped.add(*d));
        Ok(MicroStats {
            loss: value,
            samples: b,
            tokens,
            skipped: batch.skipped.len(),
            dropped,
            truncated,
            cache_misses,
            flops,
        })
    }

    /// Model FLOPs of training on one sample: the DiT's ([`unireal_model::DiTConfig::train_flops`])
    /// and, when the byte text encoder is trained, 6 per its parameter per text token. The
    /// frozen encoders' work is not model FLOPs.
    fn sample_flops(&self, image_tokens: usize, text_tokens: usize) -> f64 {
        self.dit_cfg.train_flops(image_tokens, text_tokens) + 6.0 * (self.text_params * text_tokens) as f64
    }

    /// Prompts of a batch that the cache in use has no text states for (0 without a cache of
    /// text states).
    fn text_misses(&self, prompts: &[String]) -> usize {
        match self.cache.as_deref().filter(|c| c.has_text()) {
            Some(c) => prompts.iter().filter(|p| !c.contains(&cache::text_key(p))).count(),
            None => 0,
        }
    }

    /// One optimizer step over `train.grad_accum` micro-batches: gradients averaged over the
    /// ranks, AdamW, EMA. Writes the step's line of metrics.jsonl.
    pub fn train_step(&mut self) -> Result<StepStats> {
        let t0 = Instant::now();
        crate::memory::reset_peak();
        let lr = learning_rate(&self.cfg.train, self.state.step);
        let mut accum = GradientsAccumulator::<UniReal<B>>::new();
        let mut by_task = BTreeMap::new();
        let mut micro = MicroStats::default();
        for _ in 0..self.cfg.train.grad_accum {
            micro += self.micro_batch(&mut accum, &mut by_task)?;
        }
        let mut loss = micro.loss;
        // The one place gradients exist before the optimizer step: averaged over the ranks.
        let bucket = (self.cfg.train.allreduce_bucket_mb * 1024.0 * 1024.0 / 4.0) as usize;
        let (grads, allreduce_s) = collective::sync_gradients(self.model(), accum.grads(), self.coll, bucket)?;
        self.allreduce_total_s += allreduce_s;
        let world = self.part.world;
        if world > 1 {
            let mut l = [loss as f32];
            self.coll.all_reduce_sum(&mut l)?;
            loss = l[0] as f64 / world as f64;
        }
        // Clipped after the all-reduce: every rank scales the same averaged gradients.
        let (grads, gnorm) = clip_global_norm(self.model(), grads, self.cfg.train.grad_clip);
        if let Some(model) = self.model.take() {
            self.model = Some(self.optim.step(lr, model, grads));
        }
        if let Some(e) = self.ema.take() {
            self.ema = Some(ema_update(e, &self.model().valid(), self.cfg.train.ema_decay, &self.trained));
        }
        self.state.step += 1;
        self.state.elapsed_s = self.elapsed_before_s + self.started.elapsed().as_secs_f64();
        let stats = StepStats {
            step: self.state.step,
            loss,
            loss_by_task: by_task.iter().map(|(k, t)| (k.clone(), t.loss / t.samples as f64)).collect(),
            loss_share_by_task: by_task.into_iter().map(|(k, t)| (k, t.share)).collect(),
            lr,
            grad_norm: gnorm,
            samples: micro.samples * world,
            tokens: micro.tokens * world,
            step_s: t0.elapsed().as_secs_f64(),
            allreduce_s,
            world_size: world,
            loader_batches: self.state.loader_batches,
            skipped_rows: micro.skipped,
            dropped: micro.dropped,
            truncated_prompts: micro.truncated,
            cache_misses: self.cache.is_some().then_some(micro.cache_misses),
            model_flops: micro.flops * world as f64,
            peak_tflops: self.cfg.train.peak_tflops.map(|p| p * world as f64),
            peak_mem_bytes: crate::memory::counting().then(crate::memory::peak_bytes),
        };
        self.log(&stats.to_json())?;
        Ok(stats)
    }

    fn log(&self, line: &serde_json::Value) -> Result<()> {
        match &self.metrics {
            Some(m) => m.log(line),
            None => Ok(()),
        }
    }

    /// Validation on the fixed batches (`log.val_batches`), on the inner backend (no autodiff
    /// graph), logged as `val`; None without fixed batches:
    /// - `val_loss`: t drawn as in training and noise from a fixed seed (the same at every step);
    /// - `val_loss_by_t`: with `log.val_t_bins` = K > 0, every sample again at K fixed t, one
    ///   per bin `[k/K, (k+1)/K)` (stratified within the bin by the sample's position), with
    ///   fixed noise: how well each part of the sampling trajectory is learned;
    /// - `val_loss_by_task`: the mean per-sample loss of each task over those passes.
    pub fn validate(&self) -> Result<Option<ValStats>> {
        let batches: Vec<&Batch> = self.data.fixed.iter().take(self.cfg.log.val_batches.max(1)).collect();
        if batches.is_empty() {
            return Ok(None);
        }
        let mut rng = Rng::new(0x7a1_u64 ^ self.cfg.train.seed);
        let model = self.model().valid();
        let objective = Objective {
            model: &model,
            frozen: &self.frozen,
            lift: Same,
            cfg: &self.cfg,
            device: &self.device,
            fdevice: &self.device,
            cache: self.cache.as_deref(),
        };
        let bins = self.cfg.log.val_t_bins;
        let mut by_t = vec![(0.0, 0usize); bins];
        let mut by_task: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut sum = 0.0;
        for (i, batch) in batches.iter().enumerate() {
            let shift = self.cfg.train.shift.for_tokens(self.tokens_per_frame(batch));
            let t = sample_t(&self.cfg.train.time_sampling, batch.len(), shift, &mut rng);
            let draws = Draws::conditional(batch, t, rng.next_u64());
            sum += objective.loss(batch, &draws, Part::SINGLE)?.loss.into_scalar().elem::<f64>();
            let b = batch.len();
            for (k, bin) in by_t.iter_mut().enumerate() {
                let t = (0..b).map(|j| (k as f64 + (j as f64 + 0.5) / b as f64) / bins as f64).collect();
                let noise_seed = (0xb1_u64 << 32) ^ (i as u64) ^ self.cfg.train.seed;
                let draws = Draws::conditional(batch, t, noise_seed);
                let per: Vec<f32> = objective.loss(batch, &draws, Part::SINGLE)?.per_sample.into_data().to_vec()?;
                for (task, l) in batch.tasks.iter().zip(&per) {
                    *bin = (bin.0 + *l as f64, bin.1 + 1);
                    let e = by_task.entry(task.as_str().to_string()).or_default();
                    *e = (e.0 + *l as f64, e.1 + 1);
                }
            }
        }
        let stats = ValStats {
            loss: sum / batches.len() as f64,
            by_t: by_t.iter().enumerate().map(|(k, (s, n))| (t_bin_name(k, bins), s / (*n).max(1) as f64)).collect(),
            by_task: by_task.into_iter().map(|(k, (s, n))| (k, s / n.max(1) as f64)).collect(),
        };
        self.log(&stats.to_json(self.state.step))?;
        Ok(Some(stats))
    }

    /// A sample grid of the first fixed batch (EMA weights when `log.sample_ema`); None
    /// without fixed batches. Logged as `samples`. [`Trainer::fit`] calls it on rank 0 only;
    /// any rank that calls it writes.
    pub fn write_samples(&self) -> Result<Option<PathBuf>> {
        let Some(batch) = self.data.fixed.first() else { return Ok(None) };
        let model = match (&self.ema, self.cfg.log.sample_ema) {
            (Some(e), true) => e.clone(),
            _ => self.model().valid(),
        };
        let path = crate::samples::write_samples(
            &model,
            &self.frozen,
            &self.cfg,
            batch,
            self.state.step,
            &self.run,
            &self.device,
        )?;
        self.log(&json!({"kind": "samples", "step": self.state.step, "path": path}))?;
        Ok(Some(path))
    }

    /// `log.eval`: its rows generated with the sampling weights (EMA when `log.sample_ema`),
    /// as `unireal-eval --checkpoint` generates them, and scored; logged as `eval` with each
    /// metric's mean. None without `log.eval` (or off rank 0).
    pub fn evaluate(&self) -> Result<Option<unireal_eval::ModelEval>> {
        let Some(e) = &self.eval else { return Ok(None) };
        let model = match (&self.ema, self.cfg.log.sample_ema) {
            (Some(m), true) => m.clone(),
            _ => self.model().valid(),
        };
        let opts = unireal_eval::generate::GenerateOptions {
            settings: unireal_pipeline::checkpoint::SamplerSettings { seed: self.cfg.train.seed, ..Default::default() },
            ..Default::default()
        };
        let r = unireal_eval::evaluate_model(
            e.protocol,
            &e.rows,
            &e.ckpt,
            &model,
            &self.frozen,
            &e.emb,
            &opts,
            &self.device,
        );
        self.log(&json!({
            "kind": "eval", "step": self.state.step, "protocol": e.protocol, "rows": r.rows,
            "scored": r.scored, "means": r.means, "counts": r.counts,
            "skipped": r.skipped.iter().take(5).map(|s| json!({"sample_id": s.sample_id, "reason": s.reason})).collect::<Vec<_>>(),
        }))?;
        Ok(Some(r))
    }

    /// Writes the checkpoint of the current step (atomically; the oldest beyond
    /// `checkpoint.keep` go). [`Trainer::fit`] calls it on rank 0 only; any rank that calls it
    /// writes.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let snap = Snapshot {
            model: self.model(),
            optim: &self.optim,
            ema: self.ema.as_ref(),
            state: &self.state,
            config_yaml: &self.config_yaml,
            lora: self.cfg.train.lora.as_ref().map(|_| &self.dit_cfg),
        };
        Ok(checkpoint::save(&self.run, self.cfg.checkpoint.keep, &snap)?)
    }

    /// Steps to `train.steps`, validating, sampling and checkpointing on rank 0 as configured
    /// (and at the last step).
    pub fn fit(mut self, quiet: bool) -> Result<RunSummary> {
        let total = self.cfg.train.steps;
        let bar = if quiet || !self.is_main() { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(self.state.step as u64);
        let (mut last_loss, mut last_ckpt) = (f64::NAN, None);
        let mut noted_misses = false;
        while self.state.step < total {
            let stats = self.train_step()?;
            last_loss = stats.loss;
            if let Some(m) = stats.cache_misses.filter(|&m| m > 0 && !noted_misses) {
                noted_misses = true;
                bar.suspend(|| {
                    eprintln!(
                        "note: step {}: {m} image(s)/prompt(s) not in the cache were encoded by the frozen encoders \
                     (metrics.jsonl counts them as cache_misses; unireal-train cache adds them)",
                        stats.step
                    )
                });
            }
            bar.set_position(stats.step as u64);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.0} tokens/s",
                stats.loss,
                stats.lr,
                stats.tokens as f64 / stats.step_s
            ));
            let step = stats.step;
            let due = |every: usize| every > 0 && (step.is_multiple_of(every) || step == total);
            let validate = due(self.cfg.log.val_every);
            let samples = due(self.cfg.log.sample_every);
            let checkpoint =
                step == total || (self.cfg.checkpoint.every > 0 && step.is_multiple_of(self.cfg.checkpoint.every));
            let eval = self.cfg.log.eval.as_ref().is_some_and(|e| due(e.every));
            if self.is_main() {
                if validate {
                    if let Some(val) = self.validate()? {
                        bar.println(format!("step {step}: validation loss {:.4}", val.loss));
                    }
                }
                if samples {
                    self.write_samples()?;
                }
                if checkpoint {
                    last_ckpt = Some(self.save_checkpoint()?);
                }
                // After the checkpoint: an evaluation that fails does not cost the step's weights.
                if eval {
                    if let Some(r) = self.evaluate()? {
                        let means: Vec<String> = r.means.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                        bar.println(format!(
                            "step {step}: eval ({} of {} rows) {}",
                            r.scored,
                            r.rows,
                            means.join(", ")
                        ));
                    }
                }
            }
            // The other ranks wait for rank 0's work alone as long as it takes, here, rather
            // than in the next step's all-reduce, whose wait train.collective_timeout_s bounds.
            if (validate || samples || checkpoint || eval) && self.part.world > 1 {
                self.coll.wait_for_all()?;
            }
        }
        bar.finish_and_clear();
        if self.part.world > 1 {
            // Every rank says what it holds: equal hashes mean the ranks stayed in step. One
            // write of the whole line (eprintln! writes its pieces one by one, and the ranks'
            // lines, printed at the same moment, would interleave).
            let line = format!(
                "rank {}/{}: weights {} after {} steps ({:.3} s in all-reduce)\n",
                self.part.rank,
                self.part.world,
                collective::weights_hash(&self.model().valid()),
                self.state.step,
                self.allreduce_total_s
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }
        Ok(RunSummary { steps: self.state.step, resumed_from: self.resumed_from, last_loss, checkpoint: last_ckpt })
    }
}

#[cfg(test)]
mod tests {
    use super::t_bin_name;

    #[test]
    fn t_bins_cover_zero_to_one() {
        let names: Vec<String> = (0..4).map(|k| t_bin_name(k, 4)).collect();
        assert_eq!(names, ["[0.00,0.25)", "[0.25,0.50)", "[0.50,0.75)", "[0.75,1.00]"]);
        assert_eq!(t_bin_name(0, 1), "[0.00,1.00]");
    }
}
