//! Helpers shared by the trainer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use unireal_testkit::SampleShards;

/// `(step, loss)` of every training step a run logged in `metrics.jsonl`.
pub fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Shards of every family from datasets/samples/videos, built once per test process.
pub fn shards() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let opts = SampleShards { max_side: Some(256), val_fraction: Some(0.0), ..Default::default() };
        let out = dir.join("shards");
        let summary = unireal_testkit::build_samples(&out, &opts);
        assert!(summary.manifest.totals.rows >= 8, "{:?}", summary.manifest.totals);
        out
    })
}

/// A tiny, fast config over the sample shards, with `extra` YAML lines merged by `--set`.
pub fn write_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
model: {{preset: tiny, latent: {{kind: space_to_depth, factor: 2}}, text: {{kind: bytes, width: 32, layers: 1, max_len: 48}}}}
data:
  sources: [{{path: {:?}, weight: 1.0}}]
  resolution: 32
  batch_size: 4
  workers: 2
  prefetch: 2
train:
  steps: 40
  lr: 0.002
  schedule: {{kind: constant, warmup: 5}}
  ema_decay: 0.0
log: {{val_every: 0, sample_every: 0}}
checkpoint: {{every: 0, keep: 2}}
"#,
        shards().to_string_lossy()
    );
    let p = dir.join("tiny.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { dir_bytes(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// Names of the files and directories under `dir` (relative, with `/`), sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(tree(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        out.push(name);
    }
    out.sort();
    out
}

/// A command writing into `run` that failed on a full disk: the error names the disk and
/// `run`, and no temporary file or lock is left there.
pub fn ran_out_of_disk(out: &std::process::Output, run: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("No space left on device") && err.contains(&*run.to_string_lossy()), "{err}");
    let left = tree(run);
    assert!(!left.iter().any(|n| n.ends_with(".tmp") || n.ends_with(".lock")), "left behind: {left:?}");
}
