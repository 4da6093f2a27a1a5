//! Loader throughput against the trainer's consumption, and the step time, on one config.
//!
//!   cargo bench -p unireal-train --bench loader -- [CONFIG] [--steps N] [--batches N]
//!
//! (default CONFIG: configs/train/tiny.yaml, whose shards `unireal-data build
//! configs/video.yaml` makes). The loader alone decodes `--batches` batches with the config's
//! workers; then the trainer runs `--steps` steps (NdArray) in a temporary run directory. The
//! ratio loader samples/s ÷ trainer samples/s says how far ahead of the trainer the loader is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use unireal_core::Split;
use unireal_train::data::{Index, Loader};
use unireal_train::{RunOptions, TrainConfig};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut config = PathBuf::from("configs/train/tiny.yaml");
    let (mut steps, mut batches) = (20usize, 60usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().and_then(|s| s.parse().ok()).expect("--steps N"),
            "--batches" => batches = it.next().and_then(|s| s.parse().ok()).expect("--batches N"),
            p => config = PathBuf::from(p),
        }
    }
    // Benches run in the crate directory; configs name paths from the repository root.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).unwrap();
    let mut cfg: TrainConfig = unireal_core::load_config(&config, &[]).unwrap();
    let align = cfg.model.pixel_align().unwrap();
    let index =
        Arc::new(Index::build(&cfg.data, Split::Train, align).expect("shards (unireal-data build configs/video.yaml)"));

    let loader = Loader::start(index.clone(), &cfg.data, 0, 0, None).unwrap();
    for _ in 0..2 {
        loader.next().unwrap();
    }
    let t0 = Instant::now();
    let mut samples = 0;
    for _ in 0..batches {
        samples += loader.next().unwrap().1.len();
    }
    let loader_rate = samples as f64 / t0.elapsed().as_secs_f64();
    drop(loader);

    cfg.train.steps = steps;
    cfg.log.val_every = 0;
    cfg.log.sample_every = 0;
    cfg.checkpoint.every = 0;
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions { run_dir: dir.path().join("run"), resume: false, quiet: true };
    unireal_train::run::<Autodiff<NdArray>>(&cfg, &opts, &Default::default()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "train")
        .skip(2)
        .collect();
    let step_s = median(lines.iter().map(|v| v["step_s"].as_f64().unwrap()).collect());
    let train_rate = median(lines.iter().map(|v| v["samples_per_s"].as_f64().unwrap()).collect());
    let tokens = median(lines.iter().map(|v| v["tokens_per_s"].as_f64().unwrap()).collect());
    println!(
        "config {} (preset {}, batch {}, resolution {}, {} workers)",
        config.display(),
        cfg.model.preset,
        cfg.data.batch_size,
        cfg.data.resolution,
        cfg.data.workers
    );
    println!("loader alone:   {loader_rate:8.1} samples/s ({batches} batches after 2 warm-up)");
    println!(
        "trainer:        {train_rate:8.1} samples/s, {tokens:.0} tokens/s, step {:.3} s (median of steps 3..{steps})",
        step_s
    );
    println!("ratio loader/trainer: {:.1}x", loader_rate / train_rate);
}
