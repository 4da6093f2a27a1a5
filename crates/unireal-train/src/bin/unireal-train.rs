//! `unireal-train --config configs/train/tiny.yaml [--set key=value]… [--run-dir DIR] [--resume]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_train::{Collective, RunOptions, TrainConfig};

#[cfg(all(not(feature = "cuda"), feature = "ndarray"))]
type Backend = burn::backend::Autodiff<burn::backend::NdArray>;
#[cfg(all(not(feature = "cuda"), not(feature = "ndarray"), feature = "flex"))]
type Backend = burn::backend::Autodiff<burn::backend::Flex>;

const BACKEND: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "ndarray") {
    "ndarray (CPU)"
} else {
    "flex (CPU)"
};

/// Train the UniReal DiT on shards (rectified flow), with checkpoints, metrics and samples.
#[derive(Parser, Debug)]
#[command(name = "unireal-train", version)]
struct Args {
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

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.0);
            if let Some(h) = e.1 {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

struct Failure(String, Option<String>);

/// Runs on the backend this binary was built for, at the configured precision.
#[cfg(feature = "cuda")]
fn dispatch(cfg: &TrainConfig, opts: &RunOptions, coll: &dyn Collective) -> Result<unireal_train::RunSummary, String> {
    use burn::backend::{Autodiff, Cuda};
    use unireal_train::config::Precision;
    // One GPU per process: the local rank picks it (CUDA_VISIBLE_DEVICES set by Slurm also works).
    let local = ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.parse::<usize>().ok()))
        .unwrap_or(0);
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").map(|v| v.split(',').count()).unwrap_or(usize::MAX);
    let device = burn::backend::cuda::CudaDevice::new(if visible <= 1 { 0 } else { local });
    match cfg.train.precision {
        Precision::F32 => unireal_train::run_with::<Autodiff<Cuda<f32>>>(cfg, opts, &device, coll),
        Precision::Bf16 => unireal_train::run_with::<Autodiff<Cuda<burn::tensor::bf16>>>(cfg, opts, &device, coll),
    }
}

#[cfg(not(feature = "cuda"))]
fn dispatch(cfg: &TrainConfig, opts: &RunOptions, coll: &dyn Collective) -> Result<unireal_train::RunSummary, String> {
    if cfg.train.precision != unireal_train::config::Precision::F32 {
        return Err(
            "train.precision: bf16 needs the CUDA build (cargo build --features cuda); the CPU backends train in f32"
                .into(),
        );
    }
    unireal_train::run_with::<Backend>(cfg, opts, &Default::default(), coll)
}

/// MPI when the process was started by mpirun/srun and the binary has the `mpi` feature;
/// else one process.
fn collective() -> Result<Box<dyn Collective>, Failure> {
    #[cfg(feature = "mpi")]
    if unireal_train::collective::Mpi::launched() {
        return unireal_train::collective::Mpi::init()
            .map(|m| Box::new(m) as Box<dyn Collective>)
            .ok_or_else(|| Failure("MPI could not be initialised".into(), None));
    }
    // Started as one of several tasks by srun or mpirun, but built without MPI: each process
    // would train alone and write the same run directory.
    #[cfg(not(feature = "mpi"))]
    for v in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"] {
        if let Some(n) = std::env::var(v).ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 1) {
            return Err(Failure(
                format!("started as one of {n} processes ({v}), but this unireal-train was built without MPI"),
                Some("cargo build --release -p unireal-train --features mpi (docs/cluster.md)".into()),
            ));
        }
    }
    Ok(Box::new(unireal_train::SingleProcess))
}

fn run(args: Args) -> Result<(), Failure> {
    let run_dir = match (&args.run_dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => PathBuf::from("runs").join(c.file_stem().unwrap_or_default()),
        (None, None) => {
            return Err(Failure(
                "no --config given".into(),
                Some("unireal-train --config configs/train/tiny.yaml (or --run-dir DIR --resume)".into()),
            ))
        }
    };
    let config_path = match (&args.config, args.resume) {
        (Some(c), _) => c.clone(),
        (None, true) => run_dir.join("config.yaml"),
        (None, false) => {
            return Err(Failure(
                "no --config given".into(),
                Some(format!("pass --config FILE, or --resume to continue {}", run_dir.display())),
            ))
        }
    };
    let cfg: TrainConfig = unireal_core::load_config(&config_path, &args.set)
        .map_err(|e| Failure(e.to_string(), Some("every key is documented in docs/configuration.md".into())))?;
    cfg.validate().map_err(|e| Failure(format!("{}: {e}", config_path.display()), None))?;
    let coll = collective()?;
    let main_rank = coll.rank() == 0;
    if main_rank {
        eprintln!(
            "unireal-train: preset {} on {BACKEND}, {} steps, {} process(es), run directory {}",
            cfg.model.preset,
            cfg.train.steps,
            coll.world_size(),
            run_dir.display()
        );
    }
    let opts = RunOptions { run_dir: run_dir.clone(), resume: args.resume, quiet: args.quiet };
    let summary = dispatch(&cfg, &opts, coll.as_ref()).map_err(|e| {
        let hint = if e.contains("--resume") || e.contains("already holds") {
            Some(format!("unireal-train --run-dir {} --resume", run_dir.display()))
        } else if e.contains("manifest") {
            Some("build shards first: unireal-data build configs/video.yaml".into())
        } else {
            None
        };
        Failure(e, hint)
    })?;
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
