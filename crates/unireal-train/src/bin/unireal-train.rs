//! `unireal-train --config configs/train/tiny.yaml [--set key=value]… [--run-dir DIR] [--resume]`
//! `unireal-train cache --config … [--set …] [--run-dir DIR] [--force]`
//! `unireal-train plan --config … [--set …]`
//! `unireal-train merge --checkpoint RUN/checkpoints/step-N --out DIR [--no-ema] [--dtype bf16|f32]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use unireal_core::{Hinted, WithHint};
use unireal_train::config::Checkpointing;
use unireal_train::{Collective, RunOptions, RunSummary, TrainConfig, TrainError};

/// The CPU backend of f32 training and of the frozen encoders: NdArray when built (the faster
/// one, docs/benchmarks.md), else Flex.
#[cfg(all(not(feature = "cuda"), feature = "ndarray"))]
type Cpu = burn::backend::NdArray;
#[cfg(all(not(feature = "cuda"), not(feature = "ndarray"), feature = "flex"))]
type Cpu = burn::backend::Flex;

/// The backend a run of `cfg` trains on, for the log line.
fn backend_name(cfg: &TrainConfig) -> String {
    let bf16 = cfg.train.precision == unireal_train::config::Precision::Bf16;
    let name = if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "ndarray") && !bf16 {
        "ndarray (CPU)"
    } else {
        "flex (CPU)"
    };
    let precision = if bf16 { ", bf16 mixed precision" } else { "" };
    let ckpt = match cfg.train.activation_checkpointing {
        Checkpointing::Off => "",
        Checkpointing::Blocks => ", per-block activation recomputation",
        Checkpointing::Burn => ", Burn's balanced activation checkpointing",
    };
    format!("{name}{precision}{ckpt}")
}

/// [`unireal_train::run_with`] on backend `B` under autodiff, with Burn's balanced
/// checkpointing when `train.activation_checkpointing` is `burn` (per-block recomputation
/// runs on plain autodiff: the trainer drives it).
fn run_on<B: burn::tensor::backend::Backend>(
    cfg: &TrainConfig,
    opts: &RunOptions,
    device: &B::Device,
    coll: &dyn Collective,
) -> Result<RunSummary, TrainError> {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    use burn::backend::Autodiff;
    if cfg.train.activation_checkpointing == Checkpointing::Burn {
        unireal_train::run_with::<Autodiff<B, BalancedCheckpointing>>(cfg, opts, device, coll)
    } else {
        unireal_train::run_with::<Autodiff<B>>(cfg, opts, device, coll)
    }
}

/// Train the UniReal DiT on shards (rectified flow), with checkpoints, metrics and samples.
#[derive(Parser, Debug)]
#[command(name = "unireal-train", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Training config (YAML). With --resume it may be left out: the run's config.yaml is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key with a YAML value, e.g. `--set train.steps=40`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where checkpoints, metrics.jsonl, samples and config.yaml go (default: runs/<config name>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Compute the frozen encoders' outputs once (VAE latents of every image at its bucket,
    /// T5 states of every prompt) into the run's cache (data.cache_dir, default RUN/cache),
    /// which training with the same config then reads instead of running the encoders.
    Cache(CacheArgs),
    /// Estimate one rank's memory before launch: weights, gradients, AdamW moments, EMA, the
    /// bf16 compute copy, frozen encoders and the activations of the largest batch the data
    /// can produce, at the configured precision and checkpointing. A table on stderr, one JSON
    /// line on stdout; a warning when the total exceeds train.memory_budget_gb (on the CUDA
    /// build, GPU 0's memory when that is not set).
    Plan(PlanArgs),
    /// Write a checkpoint's whole DiT as a diffusers FluxTransformer2DModel directory
    /// (config.json + diffusion_pytorch_model*.safetensors): a LoRA run's adapters merged into
    /// the base it read from model.init_from, or a full fine-tune's weights. diffusers loads it
    /// with FluxTransformer2DModel.from_pretrained(DIR), e.g. into
    /// FluxPipeline.from_pretrained(BASE, transformer=…). Runs of a flux preset only.
    Merge(MergeArgs),
}

#[derive(clap::Args, Debug)]
struct MergeArgs {
    /// A checkpoint directory (RUN/checkpoints/step-N) or a run directory (its latest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The directory to write; it must not exist.
    #[arg(long)]
    out: PathBuf,
    /// The raw weights or adapters instead of their EMA.
    #[arg(long)]
    no_ema: bool,
    /// The weights' dtype: bf16 (FLUX.1's release dtype) or f32.
    #[arg(long, default_value = "bf16")]
    dtype: String,
}

#[derive(clap::Args, Debug)]
struct PlanArgs {
    /// Training config (YAML), as for training.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key with a YAML value, as for training.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Processes of the data-parallel job, for the record: data.batch_size is per process, so
    /// the per-rank terms do not depend on it.
    #[arg(long, default_value_t = 1)]
    world_size: usize,
}

#[derive(clap::Args, Debug)]
struct CacheArgs {
    /// Training config (YAML), as for training.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key with a YAML value, as for training.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run the cache is for (default: runs/<config name>); it goes in DIR/cache unless
    /// data.cache_dir says otherwise.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Replace a cache made with other encoder weights or settings.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// Counts heap bytes, so that CPU runs log their peak memory (metrics.jsonl `peak_mem_gb`).
#[global_allocator]
static ALLOC: unireal_train::memory::CountingAlloc = unireal_train::memory::CountingAlloc;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Err(e) if e.is::<AlreadyReported>() => ExitCode::FAILURE,
        r => unireal_core::hint::exit(r),
    }
}

/// An error one rank of several has printed already (with its rank).
#[derive(Debug, thiserror::Error)]
#[error("reported above")]
struct AlreadyReported;

const BUILD_SHARDS: &str =
    "build shards first: unireal-data build configs/video.yaml (or point data.sources at a build's output)";

/// What the user can do about a training error, by its kind.
fn hint_for(e: &TrainError, run_dir: &Path) -> Option<String> {
    use unireal_shards::ShardError;
    use unireal_train::data::DataError;
    Some(match e {
        TrainError::RunExists { .. } => {
            format!("unireal-train --run-dir {} --resume continues it; or choose another --run-dir", run_dir.display())
        }
        TrainError::NothingToResume { .. } => "start it without --resume".into(),
        TrainError::WorldSizeChanged { trained, .. } => {
            format!("resume it with {trained} process(es) (mpirun -np {trained} / srun --ntasks {trained})")
        }
        TrainError::NotLaunchedByMpi(_) => {
            "data-parallel training needs the `mpi` build launched by mpirun or srun (docs/cluster.md)".into()
        }
        TrainError::Config(_) => "every key is documented in docs/configuration.md".into(),
        TrainError::Data(DataError::NotShards { .. } | DataError::Shards(ShardError::Manifest { .. })) => {
            BUILD_SHARDS.into()
        }
        TrainError::Data(DataError::Shards(ShardError::Io { path, .. }))
            if path.file_name().is_some_and(|n| n == "manifest.json") || !path.exists() =>
        {
            BUILD_SHARDS.into()
        }
        TrainError::Data(DataError::Shards(_) | DataError::Image { .. }) => {
            "check the shards with unireal-data verify DIR (it decodes every image)".into()
        }
        TrainError::Collective(unireal_train::collective::CollectiveError::Mismatch { .. }) => {
            "start every rank with the same --config and --set (and the same model files)".into()
        }
        TrainError::Busy { .. } => "one run per directory: wait for that run to finish or stop it (the lock of a \
             killed process ends with it), or choose another --run-dir"
            .into(),
        TrainError::ResumeConfigChanged { .. } => format!(
            "resume with the run's own config (unireal-train --run-dir {} --resume, --set only steps, LR, \
             logging or data), or start a new --run-dir",
            run_dir.display()
        ),
        TrainError::Data(DataError::NoTrainingRows { .. }) => {
            "check the sources' splits and data.max_inputs / data.max_outputs (unireal-data inspect DIR)".into()
        }
        TrainError::Checkpoint(c) => match c.checkpoint_dir() {
            Some(dir) => format!(
                "{} is damaged: delete it to resume from the checkpoint before it, or start a new --run-dir",
                dir.display()
            ),
            None => "check that the run directory is writable and the disk has room".into(),
        },
        TrainError::Write { .. } => "check that the run directory is writable and the disk has room".into(),
        TrainError::Cache(unireal_train::cache::CacheError::Mismatch { .. }) => format!(
            "rebuild it for this config: unireal-train cache --config … --run-dir {} --force; or set data.cache=off",
            run_dir.display()
        ),
        TrainError::Cache(unireal_train::cache::CacheError::Missing { .. }) => format!(
            "make it first: unireal-train cache --config … --run-dir {}; or set data.cache=auto",
            run_dir.display()
        ),
        TrainError::Cache(_) => "the cache is damaged: make it again with unireal-train cache --force".into(),
        _ => return None,
    })
}

/// Runs on the backend this binary was built for (f32 weights; bf16 is a compute dtype).
#[cfg(feature = "cuda")]
fn dispatch(cfg: &TrainConfig, opts: &RunOptions, coll: &dyn Collective) -> anyhow::Result<RunSummary> {
    // One GPU per process: the local rank picks it (CUDA_VISIBLE_DEVICES set by Slurm also works).
    let local = ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.parse::<usize>().ok()))
        .unwrap_or(0);
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").map(|v| v.split(',').count()).unwrap_or(usize::MAX);
    let device = burn::backend::cuda::CudaDevice::new(if visible <= 1 { 0 } else { local });
    with_hint(run_on::<burn::backend::Cuda<f32>>(cfg, opts, &device, coll), &opts.run_dir)
}

/// On the CPU: f32 on [`Cpu`]; bf16 mixed precision on Flex, which can cast (NdArray cannot).
#[cfg(not(feature = "cuda"))]
fn dispatch(cfg: &TrainConfig, opts: &RunOptions, coll: &dyn Collective) -> anyhow::Result<RunSummary> {
    let r = match cfg.train.precision {
        unireal_train::config::Precision::F32 => run_on::<Cpu>(cfg, opts, &Default::default(), coll),
        #[cfg(feature = "flex")]
        unireal_train::config::Precision::Bf16 => run_on::<burn::backend::Flex>(cfg, opts, &Default::default(), coll),
        #[cfg(not(feature = "flex"))]
        unireal_train::config::Precision::Bf16 => return Err(Hinted::new(
            "train.precision: bf16 needs the Flex or CUDA backend; this unireal-train was built with NdArray only",
            "cargo build --release -p unireal-train (the default features include flex), or --set train.precision=f32",
        )
        .into()),
    };
    with_hint(r, &opts.run_dir)
}

/// A training error with the hint its kind calls for.
/// Set when the error is one every rank returns itself (found by a collective check), so the
/// job ends without an MPI abort and every rank prints it.
static EVERY_RANK_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn with_hint<T>(r: Result<T, TrainError>, run_dir: &Path) -> anyhow::Result<T> {
    if let Err(
        TrainError::Busy { .. } | TrainError::Collective(unireal_train::collective::CollectiveError::Mismatch { .. }),
    ) = &r
    {
        EVERY_RANK_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    r.map_err(|e| match hint_for(&e, run_dir) {
        Some(h) => Hinted::new(e, h).into(),
        None => e.into(),
    })
}

/// MPI when the process was started by mpirun/srun and the binary has the `mpi` feature;
/// else one process.
fn collective() -> anyhow::Result<Box<dyn Collective>> {
    #[cfg(feature = "mpi")]
    if unireal_train::collective::Mpi::launched() {
        return unireal_train::collective::Mpi::init()
            .map(|m| Box::new(m) as Box<dyn Collective>)
            .ok_or_else(|| anyhow::anyhow!("MPI could not be initialised (it was initialised already)"));
    }
    // Started as one of several tasks by srun or mpirun, but built without MPI: each process
    // would train alone and write the same run directory.
    #[cfg(not(feature = "mpi"))]
    for v in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"] {
        if let Some(n) = std::env::var(v).ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 1) {
            return Err(Hinted::new(
                format!("started as one of {n} processes ({v}), but this unireal-train was built without MPI"),
                "cargo build --release -p unireal-train --features mpi (docs/cluster.md)",
            )
            .into());
        }
    }
    Ok(Box::new(unireal_train::SingleProcess))
}

/// The run directory a config's run uses by default: runs/<config name>.
fn default_run_dir(config: &Path) -> PathBuf {
    PathBuf::from("runs").join(config.file_stem().unwrap_or_default())
}

/// A config file with `--set` overrides applied, validated.
fn load(config: &Path, set: &[String]) -> anyhow::Result<TrainConfig> {
    let cfg: TrainConfig =
        unireal_core::load_config(config, set).hint("every key is documented in docs/configuration.md")?;
    cfg.validate()
        .map_err(|e| format!("{}: {e}", config.display()))
        .hint("every key is documented in docs/configuration.md")?;
    Ok(cfg)
}

/// `unireal-train cache`.
fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&args.config));
    let cfg = load(&args.config, &args.set)?;
    let dir = unireal_train::cache::cache_dir(&cfg, &run_dir);
    let bar = if args.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} rows")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = build_cache(&cfg, &dir, args.force, progress).map_err(|e| {
        let hint = match &e {
            TrainError::Cache(unireal_train::cache::CacheError::Mismatch { .. }) => Some(format!(
                "unireal-train cache --force replaces it; or set data.cache_dir to keep both (now {})",
                dir.display()
            )),
            _ => hint_for(&e, &run_dir),
        };
        match hint {
            Some(h) => anyhow::Error::from(Hinted::new(e, h)),
            None => e.into(),
        }
    })?;
    bar.finish_and_clear();
    if report.fingerprints.is_none() {
        eprintln!(
            "nothing to cache: {} runs no frozen encoder (model.latent space_to_depth costs nothing, \
             model.text bytes is trained); training runs as it is",
            args.config.display()
        );
        return Ok(());
    }
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    eprintln!(
        "cache: {} rows in {:.1} s: {} latents written ({} there already), {} prompts written ({} there already); \
         training with this config and --run-dir {} reads it",
        report.rows,
        report.seconds,
        report.latents_written,
        report.latents_present,
        report.prompts_written,
        report.prompts_present,
        run_dir.display()
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// [`unireal_train::cache::build`] on the backend training's frozen encoders run on (f32 on
/// CUDA, whatever `train.precision` is).
fn build_cache(
    cfg: &TrainConfig,
    dir: &Path,
    force: bool,
    progress: impl Fn(usize, usize),
) -> Result<unireal_train::cache::CacheReport, TrainError> {
    #[cfg(feature = "cuda")]
    type Frozen = burn::backend::Cuda<f32>;
    #[cfg(not(feature = "cuda"))]
    type Frozen = Cpu;
    #[cfg(feature = "cuda")]
    let device = burn::backend::cuda::CudaDevice::new(0);
    #[cfg(not(feature = "cuda"))]
    let device = Default::default();
    unireal_train::cache::build::<Frozen>(cfg, dir, force, &device, progress)
}

/// `unireal-train merge`: the checkpoint's DiT (LoRA merged) in diffusers' layout.
fn merge(args: MergeArgs) -> anyhow::Result<()> {
    use unireal_model::flux::{diffusers_flux_config_json, export_diffusers, ExportDtype, MAX_SHARD_BYTES};
    let dtype = match args.dtype.as_str() {
        "bf16" => ExportDtype::Bf16,
        "f32" => ExportDtype::F32,
        other => return Err(Hinted::new(format!("--dtype {other}"), "--dtype bf16 or --dtype f32").into()),
    };
    if args.out.exists() {
        return Err(Hinted::new(
            format!("--out {} already exists", args.out.display()),
            "give a directory that does not exist yet",
        )
        .into());
    }
    let ckpt = unireal_pipeline::Checkpoint::open(&args.checkpoint).map_err(|e| match e {
        unireal_pipeline::PipelineError::NotACheckpoint(_) => {
            Hinted::new(e, "point --checkpoint at RUN/checkpoints/step-N or at the run directory").into()
        }
        e => anyhow::Error::new(e),
    })?;
    let cfg = ckpt.config.model.dit_config()?;
    if let Err(e) = diffusers_flux_config_json(&cfg) {
        return Err(Hinted::new(
            format!("{}: {e}", ckpt.dir.display()),
            "merge writes FLUX.1's layout: it takes runs of model.preset flux-dev or flux-schnell",
        )
        .into());
    }
    #[cfg(feature = "cuda")]
    type Merge = burn::backend::Cuda<f32>;
    #[cfg(not(feature = "cuda"))]
    type Merge = Cpu;
    #[cfg(feature = "cuda")]
    let device = burn::backend::cuda::CudaDevice::new(0);
    #[cfg(not(feature = "cuda"))]
    let device = Default::default();
    let weights = ckpt.weights(!args.no_ema);
    let model = ckpt.load_model::<Merge>(!args.no_ema, &device)?;
    let dropped = export_diffusers(&model.dit, &cfg, &args.out, dtype, MAX_SHARD_BYTES)?;
    if dropped > 0 {
        eprintln!(
            "warning: UniReal's index and role embeddings ({dropped} non-zero values) have no place in FLUX.1's \
             layout and are left out: the exported transformer is this run's for text-to-image only"
        );
    }
    let what = match (&ckpt.config.train.lora, &ckpt.config.model.init_from) {
        (Some(_), Some(base)) => format!("{} merged into {}", weights.display(), base.display()),
        _ => weights.display().to_string(),
    };
    eprintln!("merge: {what} -> {} ({})", args.out.display(), args.dtype);
    println!("{}", args.out.display());
    Ok(())
}

/// One field of GPU 0 from nvidia-smi, on the CUDA build (None elsewhere or without it).
fn nvidia_smi(field: &str) -> Option<String> {
    if !cfg!(feature = "cuda") {
        return None;
    }
    let out = std::process::Command::new("nvidia-smi")
        .args([&format!("--query-gpu={field}"), "--format=csv,noheader,nounits", "-i", "0"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// GPU 0's memory in bytes.
fn device_memory() -> Option<u64> {
    let mib: u64 = nvidia_smi("memory.total")?.parse().ok()?;
    Some(mib << 20)
}

/// `unireal-train plan`.
fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let cfg = load(&args.config, &args.set)?;
    let p = with_hint(
        unireal_train::plan::plan(&cfg, args.world_size.max(1), device_memory()),
        &default_run_dir(&args.config),
    )?;
    eprintln!("{}", p.table());
    if p.over_budget() {
        let (name, bytes) = p.largest();
        eprintln!(
            "warning: the plan's {:.2} GB exceed the budget of {:.2} GB; the largest term is {name} ({:.2} GB)\n\n\
             hint: {}",
            p.total as f64 / 1e9,
            p.budget.unwrap_or(0) as f64 / 1e9,
            bytes as f64 / 1e9,
            if name == "activations" && cfg.train.activation_checkpointing != Checkpointing::Blocks {
                "train.activation_checkpointing: true (per-block recomputation), a smaller data.batch_size (with train.grad_accum) or data.resolution"
            } else if name == "activations" {
                "a smaller data.batch_size (with train.grad_accum) or data.resolution"
            } else {
                "more ranks do not shrink per-rank weights here; train.precision: bf16 only shrinks activations: \
                 choose a smaller model.preset"
            }
        );
    }
    println!("{}", serde_json::to_string(&p)?);
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Cache(c)) => return cache(c),
        Some(Command::Plan(p)) => return plan(p),
        Some(Command::Merge(m)) => return merge(m),
        None => {}
    }
    let run_dir = match (&args.run_dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => default_run_dir(c),
        (None, None) => {
            return Err(Hinted::new(
                "no --config given",
                "unireal-train --config configs/train/tiny.yaml (or --run-dir DIR --resume)",
            )
            .into())
        }
    };
    let config_path = match (&args.config, args.resume) {
        (Some(c), _) => c.clone(),
        (None, true) => run_dir.join("config.yaml"),
        (None, false) => {
            return Err(Hinted::new(
                "no --config given",
                format!("pass --config FILE, or --resume to continue {}", run_dir.display()),
            )
            .into())
        }
    };
    let mut cfg = load(&config_path, &args.set)?;
    let coll = collective()?;
    let main_rank = coll.rank() == 0;
    // MFU on a known GPU without train.peak_tflops.
    if cfg.train.peak_tflops.is_none() {
        if let Some((name, peak)) = nvidia_smi("name")
            .and_then(|n| unireal_train::metrics::known_peak_tflops(&n, cfg.train.precision).map(|p| (n, p)))
        {
            if main_rank {
                eprintln!("MFU against {name}'s {peak} TFLOP/s (its data sheet; train.peak_tflops overrides)");
            }
            cfg.train.peak_tflops = Some(peak);
        }
    }
    if main_rank {
        eprintln!(
            "unireal-train: preset {} on {}, {} steps, {} process(es), run directory {}",
            cfg.model.preset,
            backend_name(&cfg),
            cfg.train.steps,
            coll.world_size(),
            run_dir.display()
        );
    }
    let opts = RunOptions { run_dir: run_dir.clone(), resume: args.resume, quiet: args.quiet };
    let summary = match dispatch(&cfg, &opts, coll.as_ref()) {
        Ok(s) => s,
        // Several ranks: the error is printed here, with the rank, in one write (eprintln!
        // writes its pieces one by one, and another rank's lines would split it).
        Err(e) if coll.world_size() > 1 => {
            let text = format!("rank {}: {}\n", coll.rank(), unireal_core::hint::report(e.as_ref()));
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
            if EVERY_RANK_FAILED.load(std::sync::atomic::Ordering::Relaxed) {
                // Every rank has it: each prints it before any exits (the launcher ends the
                // job at the first failed exit).
                let _ = coll.wait_for_all();
            } else {
                // Some ranks only (a full disk on rank 0, a file one node cannot read): the
                // others would wait in a collective, so the whole job ends.
                coll.abort(1);
            }
            return Err(AlreadyReported.into());
        }
        Err(e) => return Err(e),
    };
    if !main_rank {
        return Ok(());
    }
    eprintln!(
        "done: {} steps{}, last loss {:.4}; metrics in {}, samples in {}",
        summary.steps,
        summary.resumed_from.map(|s| format!(" (resumed from {s})")).unwrap_or_default(),
        summary.last_loss,
        run_dir.join("metrics.jsonl").display(),
        run_dir.join("samples").display()
    );
    if let Some(c) = summary.checkpoint {
        println!("{}", c.display());
    }
    Ok(())
}
