//! `RUN/metrics.jsonl`: one JSON object per line, `kind` = `train` (every step), `val` or
//! `samples`. A resumed run first drops the lines after its checkpoint's step, so the file
//! reads as if the run had never stopped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Result, TrainError};

/// Samples of a step whose conditioning guidance dropout removed (this rank's samples): the
/// prompt alone, the input images alone, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    pub text: usize,
    pub images: usize,
    pub both: usize,
}

impl DropCounts {
    pub fn add(&mut self, d: crate::config::Dropped) {
        match (d.text, d.images) {
            (true, true) => self.both += 1,
            (true, false) => self.text += 1,
            (false, true) => self.images += 1,
            (false, false) => {}
        }
    }
}

impl std::ops::AddAssign for DropCounts {
    fn add_assign(&mut self, o: DropCounts) {
        (self.text, self.images, self.both) = (self.text + o.text, self.images + o.images, self.both + o.both);
    }
}

/// Peak dense TFLOP/s of known GPUs from their vendors' data sheets (without sparsity), by the
/// name `nvidia-smi` reports: the bf16 tensor-core figure, and for f32 training the TF32 one
/// (Burn's autotuned f32 matmuls run on tensor cores in TF32). The first entry whose key the
/// name contains wins, so the more specific keys come first. Used for MFU when
/// `train.peak_tflops` is not set.
const KNOWN_DEVICES: &[(&str, f64, f64)] = &[
    ("GH200", 989.0, 494.0),
    ("H200 NVL", 835.0, 418.0),
    ("H200", 989.0, 494.0),
    ("H100 PCIe", 756.0, 378.0),
    ("H100 NVL", 835.0, 418.0),
    ("H100", 989.0, 494.0),
    ("A100", 312.0, 156.0),
    ("L40S", 362.0, 183.0),
    ("RTX 4090", 165.0, 82.6),
];

/// Peak dense TFLOP/s of the GPU named `name` at `precision`, when it is a known one.
pub fn known_peak_tflops(name: &str, precision: crate::config::Precision) -> Option<f64> {
    let (_, bf16, f32) = KNOWN_DEVICES.iter().find(|(key, _, _)| name.contains(key))?;
    Some(match precision {
        crate::config::Precision::Bf16 => *bf16,
        crate::config::Precision::F32 => *f32,
    })
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub step: usize,
    /// Mean loss over the step's micro-batches (and ranks).
    pub loss: f64,
    /// Mean per-sample loss per task (this rank's samples), unweighted.
    pub loss_by_task: BTreeMap<String, f64>,
    /// Each task's part of `loss` (this rank's samples), with its `train.task_weights`:
    /// on one process they sum to `loss`.
    pub loss_share_by_task: BTreeMap<String, f64>,
    pub lr: f64,
    /// Global L2 norm of the gradients, before clipping.
    pub grad_norm: f64,
    /// Samples and tokens (image + text) of the step, over all ranks.
    pub samples: usize,
    pub tokens: usize,
    pub step_s: f64,
    /// Seconds in the gradient all-reduce.
    pub allreduce_s: f64,
    pub world_size: usize,
    /// The loader position after the step.
    pub loader_batches: u64,
    /// Rows left out because an image did not decode.
    pub skipped_rows: usize,
    /// Guidance dropout of the step's samples (this rank's).
    pub dropped: DropCounts,
    /// Prompts of the step (this rank's) that lost context clauses, or whose instruction alone
    /// was longer than the text encoder takes ([`unireal_pipeline::prompt::fit_prompt`]).
    pub truncated_prompts: usize,
    /// With a cache in use (`unireal-train cache`): the images and prompts of the step (this
    /// rank's) it did not hold, which the frozen encoders computed instead.
    pub cache_misses: Option<usize>,
    /// Model FLOPs of the step over all ranks (forward and backward; `DiTConfig::train_flops`).
    pub model_flops: f64,
    /// Peak TFLOP/s of all the run's devices together (`train.peak_tflops` × ranks), for MFU.
    pub peak_tflops: Option<f64>,
    /// The most heap bytes live at once during the step (this rank), where the binary counts
    /// them ([`crate::memory`]): on the CPU backends, the training memory.
    pub peak_mem_bytes: Option<usize>,
}

impl StepStats {
    /// The `train` line of metrics.jsonl.
    pub fn to_json(&self) -> Value {
        let mut line = json!({
            "kind": "train", "step": self.step, "loss": self.loss, "loss_by_task": self.loss_by_task,
            "loss_share_by_task": self.loss_share_by_task,
            "lr": self.lr, "grad_norm": self.grad_norm,
            "samples_per_s": self.samples as f64 / self.step_s, "tokens_per_s": self.tokens as f64 / self.step_s,
            "step_s": self.step_s, "allreduce_s": self.allreduce_s, "world_size": self.world_size,
            "loader_batches": self.loader_batches, "skipped_rows": self.skipped_rows,
            "dropped": self.dropped, "truncated_prompts": self.truncated_prompts,
        });
        if let Some(m) = self.cache_misses {
            line["cache_misses"] = json!(m);
        }
        let tflops = self.model_flops / self.step_s / 1e12;
        line["model_flops"] = json!(self.model_flops);
        line["tflops_per_s"] = json!(tflops);
        if let Some(peak) = self.peak_tflops {
            line["mfu"] = json!(tflops / peak);
        }
        if let Some(bytes) = self.peak_mem_bytes {
            line["peak_mem_gb"] = json!(bytes as f64 / 1e9);
        }
        line
    }
}

/// The metrics file of a run.
pub struct Metrics {
    path: PathBuf,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Write { path: path.to_path_buf(), source }
}

impl Metrics {
    /// Opens `RUN/metrics.jsonl`: a new run starts it empty; a run resumed from step
    /// `Some(k)` keeps the lines of steps ≤ k and drops the rest (they are logged again).
    pub fn open(run: &Path, keep_through: Option<usize>) -> Result<Metrics> {
        let path = run.join("metrics.jsonl");
        match keep_through {
            Some(step) if path.exists() => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| TrainError::Io { path: path.clone(), source })?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<Value>(l)
                            .ok()
                            .and_then(|v| v["step"].as_u64())
                            .is_some_and(|s| s as usize <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                unireal_core::write_atomic(&path, kept.as_bytes()).map_err(write_err(&path))?;
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
        Ok(Metrics { path })
    }

    /// Appends one line.
    pub fn log(&self, v: &Value) -> Result<()> {
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(write_err(&self.path))?;
        writeln!(f, "{v}").map_err(write_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(run: &Path) -> Vec<(String, u64)> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["kind"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap()))
            .collect()
    }

    #[test]
    fn resume_drops_the_lines_after_the_checkpoint_and_a_new_run_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::open(dir.path(), None).unwrap();
        for s in 1..=6 {
            m.log(&json!({"kind": "train", "step": s})).unwrap();
            if s % 3 == 0 {
                m.log(&json!({"kind": "val", "step": s})).unwrap();
            }
        }
        // Killed after step 6, resumed from the checkpoint of step 4.
        let m = Metrics::open(dir.path(), Some(4)).unwrap();
        let kept = steps(dir.path());
        assert_eq!(kept.iter().map(|k| k.1).max(), Some(4));
        assert_eq!(kept.len(), 5, "train 1-4 and val 3: {kept:?}");
        m.log(&json!({"kind": "train", "step": 5})).unwrap();
        assert_eq!(steps(dir.path()).last().unwrap(), &("train".to_string(), 5));
        Metrics::open(dir.path(), None).unwrap();
        assert!(!dir.path().join("metrics.jsonl").exists());
    }

    #[test]
    fn known_devices_give_their_peak_at_the_training_precision() {
        use crate::config::Precision;
        assert_eq!(known_peak_tflops("NVIDIA H100 80GB HBM3", Precision::Bf16), Some(989.0));
        assert_eq!(known_peak_tflops("NVIDIA H100 PCIe", Precision::Bf16), Some(756.0));
        assert_eq!(known_peak_tflops("NVIDIA H200", Precision::F32), Some(494.0));
        assert_eq!(known_peak_tflops("NVIDIA GH200 480GB", Precision::Bf16), Some(989.0));
        assert_eq!(known_peak_tflops("NVIDIA A100-SXM4-80GB", Precision::Bf16), Some(312.0));
        assert_eq!(known_peak_tflops("Tesla T4", Precision::Bf16), None);
    }

    #[test]
    fn step_stats_carry_the_documented_fields() {
        let s = StepStats {
            step: 3,
            loss: 0.5,
            loss_by_task: BTreeMap::from([("seg".to_string(), 0.25)]),
            loss_share_by_task: BTreeMap::from([("seg".to_string(), 0.5)]),
            lr: 1e-4,
            grad_norm: 2.0,
            samples: 8,
            tokens: 800,
            step_s: 2.0,
            allreduce_s: 0.0,
            world_size: 1,
            loader_batches: 3,
            skipped_rows: 0,
            dropped: DropCounts { text: 1, images: 0, both: 2 },
            truncated_prompts: 1,
            cache_misses: None,
            model_flops: 4e12,
            peak_tflops: Some(4.0),
            peak_mem_bytes: Some(1_500_000_000),
        };
        let v = s.to_json();
        assert_eq!(v["peak_mem_gb"], 1.5);
        assert_eq!(v["samples_per_s"], 4.0);
        assert_eq!(v["tokens_per_s"], 400.0);
        assert_eq!(v["loss_by_task"]["seg"], 0.25);
        assert_eq!(v["kind"], "train");
        assert_eq!(v["dropped"], json!({"text": 1, "images": 0, "both": 2}));
        // 4e12 FLOPs in 2 s on a 4 TFLOP/s device: 2 TFLOP/s, half of it.
        assert_eq!(v["tflops_per_s"], 2.0);
        assert_eq!(v["mfu"], 0.5);
        assert!(v.get("cache_misses").is_none());
        let v = StepStats { peak_tflops: None, cache_misses: Some(3), peak_mem_bytes: None, ..s }.to_json();
        assert!(v.get("mfu").is_none());
        assert!(v.get("peak_mem_gb").is_none());
        assert_eq!(v["cache_misses"], 3);
    }
}
