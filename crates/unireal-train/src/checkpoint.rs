//! Checkpoints: `RUN/checkpoints/step-NNNNNNNN/` holding
//! - `model.safetensors`, `ema.safetensors`: weights in PyTorch's layout (any safetensors reader);
//! - `model.mpk`, `optim.mpk`: Burn records (parameter ids, AdamW moments) for exact resume;
//! - `state.json`: step, loader position, RNG state;
//! - `config.yaml`: the resolved configuration.
//!
//! Each is written into `.step-NNNNNNNN.tmp/` and the directory is renamed when complete, so a
//! checkpoint directory either exists whole or not at all. The oldest beyond `keep` are removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use unireal_flow::Rng;

/// The small state next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Batches the loader has handed to the trainer.
    pub loader_batches: u64,
    /// The trainer's generator (t, noise, guidance dropout).
    pub rng: Rng,
    /// Wall-clock seconds of training so far.
    pub elapsed_s: f64,
    /// Data-parallel processes the run was trained with (a resume must use as many).
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn checkpoint_name(step: usize) -> String {
    format!("step-{step:08}")
}

/// Finished checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join("state.json").is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

pub fn latest(run: &Path) -> Option<(usize, PathBuf)> {
    list(run).pop()
}

/// Removes unfinished (`.tmp`) checkpoint directories, e.g. after a kill.
pub fn clean_partial(run: &Path) {
    for e in std::fs::read_dir(checkpoints_dir(run)).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Creates the temporary directory for `step`; `write` fills it; then it is renamed into place
/// and old checkpoints beyond `keep` are removed.
pub fn write(
    run: &Path,
    step: usize,
    keep: usize,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = checkpoint_name(step);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    write(&tmp)?;
    let fin = dir.join(&name);
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(|e| format!("{}: {e}", fin.display()))?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), fin.display()))?;
    let all = list(run);
    if keep > 0 && all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(fin)
}
