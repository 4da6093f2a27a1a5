//! `unireal-train plan` against the heap a short CPU run really uses: this test binary counts
//! its allocations ([`unireal_train::memory::CountingAlloc`]), trains `tiny` and `small` for a
//! few steps on the sample shards (`small` also with per-block recomputation) and checks the plan's total is within 25 % of the measured
//! peak. One test in its own binary, so that no other test allocates meanwhile.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use common::write_config;
use unireal_train::memory::{live_bytes, CountingAlloc};
use unireal_train::{RunOptions, SingleProcess, TrainConfig, Trainer};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The most bytes the run held above what was live before it, over `steps` steps.
fn measured_peak<B: AutodiffBackend>(cfg: &TrainConfig, run: &Path, steps: usize) -> usize {
    let before = live_bytes();
    let opts = RunOptions { run_dir: run.to_path_buf(), resume: false, quiet: true };
    let mut t = Trainer::<B>::new(cfg, &opts, &Default::default(), &SingleProcess).unwrap();
    let peak = (0..steps).map(|_| t.train_step().unwrap().peak_mem_bytes.expect("counting")).max().unwrap();
    peak - before
}

#[test]
fn the_memory_plan_is_within_a_quarter_of_the_measured_peak() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    for (preset, batch, checkpointing) in [("tiny", "4", "false"), ("small", "2", "false"), ("small", "2", "blocks")] {
        let set: Vec<String> = [
            format!("model.preset={preset}"),
            format!("data.batch_size={batch}"),
            format!("train.activation_checkpointing={checkpointing}"),
            // One input and one output per sample, so that every step has the plan's largest
            // signature (up to the bucket's aspect).
            "data.max_inputs=1".into(),
            "data.max_outputs=1".into(),
            "train.ema_decay=0.999".into(),
        ]
        .into();
        let cfg: TrainConfig = unireal_core::load_config(&config, &set).unwrap();
        let plan = unireal_train::plan::plan(&cfg, 1, None).unwrap();
        let run = dir.path().join(format!("{preset}-{checkpointing}"));
        let measured = measured_peak::<Autodiff<NdArray>>(&cfg, &run, 3);
        let ratio = plan.total as f64 / measured as f64;
        println!(
            "{preset}, checkpointing {checkpointing}: plan {:.3} GB (activations {:.3}), measured peak {:.3} GB: {ratio:.2}x\n{}",
            plan.total as f64 / 1e9,
            plan.activations as f64 / 1e9,
            measured as f64 / 1e9,
            plan.table()
        );
        assert!((0.75..=1.25).contains(&ratio), "{preset}, {checkpointing}: the plan is {ratio:.2}x the measured peak");
    }
}
