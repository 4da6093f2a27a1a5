//! Forward + backward of the DiT on the CPU backends (Flex, NdArray), one training step's
//! worth of work without the optimizer. `scripts/bench-model.sh` runs this and the same model
//! in PyTorch in one go and prints the ratios.
//!
//!   cargo bench -p unireal-model --bench dit -- [tiny|small|base]… [--steps N]
//!
//! With `--features cuda` it times the CUDA backend first; `UNIREAL_BENCH_CPU=0` skips the CPU
//! backends (for `base` on a GPU machine); `UNIREAL_BENCH_BACKENDS=ndarray` (or `flex`,
//! comma-separated) times only those. `--features blas` sends NdArray's matmuls to the
//! system OpenBLAS (docs/benchmarks.md has the comparison).
//!
//! Prints one JSON line per (backend, preset): median milliseconds per step.

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unireal_model::dit::{DiTInput, ROLE_CANVAS};
use unireal_model::DiTConfig;

/// The benchmark's shapes: (config, batch, latent side, text tokens).
pub fn workload(preset: &str) -> (DiTConfig, usize, usize, usize) {
    match preset {
        // 64×64 pixels through space-to-depth(2): 12×32×32 latents, 256 tokens per frame.
        "tiny" => (DiTConfig::tiny(12, 64), 2, 32, 16),
        // SD3/Flux-style 16-channel 32×32 latents (256 px), 256 tokens per frame.
        "small" => (DiTConfig::small(16, 256), 1, 32, 32),
        // ~1 B at 512 px (64×64 latents, 1024 tokens per frame) with T5-XXL-width text: GPU only.
        "base" => (DiTConfig::base(16, 4096), 1, 64, 128),
        other => panic!("unknown preset {other}"),
    }
}

fn fill<Bk: Backend, const D: usize>(shape: [usize; D], seed: u32, device: &Bk::Device) -> Tensor<Bk, D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2000) as f32 / 1000.0 - 1.0).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn run<Bk: AutodiffBackend>(backend: &str, preset: &str, steps: usize) {
    let device = Default::default();
    let (cfg, b, side, text_len) = workload(preset);
    let model = cfg.init::<Bk>(&device);
    let c = cfg.in_channels;
    let step = || {
        let input = DiTInput {
            inputs: Some(fill::<Bk, 5>([b, 1, c, side, side], 1, &device)),
            input_roles: Some(Tensor::full([b, 1], ROLE_CANVAS, &device)),
            outputs: fill::<Bk, 5>([b, 1, c, side, side], 2, &device),
            t: Tensor::full([b], 0.5, &device),
            text: fill::<Bk, 3>([b, text_len, cfg.text_dim], 3, &device),
            text_pad: None,
            hide_inputs: None,
            pooled: None,
            guidance: None,
        };
        let target = fill::<Bk, 5>([b, 1, c, side, side], 4, &device);
        let loss = (model.forward(input) - target).powi_scalar(2).mean();
        let grads = loss.backward();
        // Force the work to finish.
        let _ = loss.into_scalar();
        drop(grads);
    };
    step(); // warm-up
    let mut times: Vec<f64> = (0..steps)
        .map(|_| {
            let t0 = Instant::now();
            step();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"impl\": \"burn-{backend}\", \"preset\": \"{preset}\", \"params\": {}, \"ms_per_step\": {median:.1}}}",
        cfg.num_params()
    );
}

/// `UNIREAL_BENCH_BACKENDS=ndarray` (comma-separated) times only those CPU backends.
fn wanted(backend: &str) -> bool {
    std::env::var("UNIREAL_BENCH_BACKENDS").map_or(true, |v| v.split(',').any(|b| b.trim() == backend))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut steps = 5;
    let mut presets = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().and_then(|s| s.parse().ok()).expect("--steps N"),
            p => presets.push(p.to_string()),
        }
    }
    if presets.is_empty() {
        presets = vec!["tiny".into(), "small".into()];
    }
    let cpu = std::env::var("UNIREAL_BENCH_CPU").map_or(true, |v| v != "0");
    for p in &presets {
        #[cfg(feature = "cuda")]
        run::<Autodiff<burn::backend::Cuda>>("cuda", p, steps);
        if cpu && wanted("flex") {
            run::<Autodiff<Flex>>("flex", p, steps);
        }
        if cpu && wanted("ndarray") {
            run::<Autodiff<NdArray>>("ndarray", p, steps);
        }
    }
}
