//! Checkpoints: `RUN/checkpoints/step-NNNNNNNN/` holding
//! - `model.safetensors`, `ema.safetensors`: weights in PyTorch's layout (any safetensors reader;
//!   `unireal_pipeline::Checkpoint` reads them for inference);
//! - `model.mpk`, `optim.mpk`: Burn records (parameter ids, AdamW moments) for exact resume;
//! - a LoRA run (`train.lora`): `model.safetensors` and `ema.safetensors` hold the adapters
//!   alone, `lora.safetensors` and `ema-lora.safetensors` the same in diffusers' layout, and
//!   there is no `model.mpk` (the adapters' parameter ids are stable, [`unireal_model::lora`]):
//!   the frozen base is read from `model.init_from` again;
//! - `state.json`: step, loader position, RNG state;
//! - `config.yaml`: the resolved configuration.
//!
//! Each is written into `.step-NNNNNNNN.tmp/` and the directory is renamed when complete, so a
//! checkpoint directory either exists whole or not at all. The oldest beyond `keep` are removed.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FileRecorder, FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError};
use burn::tensor::backend::AutodiffBackend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use unireal_flow::Rng;
use unireal_model::lora::is_adapter_tensor;
pub use unireal_pipeline::checkpoint::{checkpoint_name, checkpoints_dir, latest, list};
use unireal_pipeline::checkpoint::{CONFIG, EMA_LORA_WEIGHTS, EMA_WEIGHTS, LORA_WEIGHTS, MODEL_WEIGHTS, STATE};
use unireal_pipeline::UniReal;

use crate::optim::Optim;

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
    #[serde(default = "TrainState::single")]
    pub world_size: usize,
}

impl TrainState {
    fn single() -> usize {
        1
    }

    /// The state of a run that has not started.
    pub fn fresh(seed: u64, world_size: usize) -> TrainState {
        TrainState { step: 0, loader_batches: 0, rng: Rng::new(seed), elapsed_s: 0.0, world_size }
    }
}

/// A checkpoint that cannot be written or read back, with the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Burn record (`model.mpk`, `optim.mpk`) or the saved config that does not load or save.
    #[error("checkpoint {path}: {message}")]
    Record { path: PathBuf, message: String },
    #[error("checkpoint {path}")]
    Weights {
        path: PathBuf,
        #[source]
        source: unireal_model::ModelError,
    },
    #[error("checkpoint {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The first key of `cfg` that a resume from checkpoint `dir` cannot take: what the saved
/// records are built from (`model`, EMA on or off). Other keys (steps, LR, logging, data) may
/// change on resume.
pub fn incompatible_key(dir: &Path, cfg: &crate::TrainConfig) -> Result<Option<&'static str>> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let saved: crate::TrainConfig = unireal_core::parse_config_str(&text, &path.display().to_string())
        .map_err(|e| CheckpointError::Record { path: path.clone(), message: e.to_string() })?;
    Ok(if saved.model != cfg.model {
        Some("model")
    } else if (saved.train.ema_decay > 0.0) != (cfg.train.ema_decay > 0.0) {
        Some("train.ema_decay (EMA on or off)")
    } else if match (&saved.train.lora, &cfg.train.lora) {
        (Some(a), Some(b)) => !a.same_adapters(b),
        (a, b) => a.is_some() != b.is_some(),
    } {
        Some("train.lora")
    } else {
        None
    })
}

impl CheckpointError {
    /// The checkpoint directory the failing file is in.
    pub fn checkpoint_dir(&self) -> Option<&Path> {
        let p = match self {
            CheckpointError::Io { path, .. }
            | CheckpointError::Record { path, .. }
            | CheckpointError::Weights { path, .. }
            | CheckpointError::State { path, .. } => path,
        };
        p.parent().filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
    }
}

type Result<T, E = CheckpointError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
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
pub fn write(run: &Path, step: usize, keep: usize, write: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let name = checkpoint_name(step);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // A failed write (a full disk) leaves nothing half-written; the last checkpoint stays.
    // Every file reaches the disk before the rename makes the checkpoint count, and the
    // rename itself before the old ones go: a crash of the machine leaves a whole one.
    if let Err(e) = write(&tmp).and_then(|()| sync_files(&tmp)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let fin = dir.join(&name);
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(io(&fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
    let all = list(run);
    if keep > 0 && all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(fin)
}

/// Flushes every file of `dir` to the disk.
fn sync_files(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = e.map_err(io(dir))?.path();
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
    }
    Ok(())
}

/// A Burn record at `path` that did not save or load.
fn record_err(path: PathBuf) -> impl FnOnce(burn::record::RecorderError) -> CheckpointError {
    move |e| CheckpointError::Record { path, message: e.to_string() }
}

fn recorder() -> MpkRecorder {
    MpkRecorder
}

/// Burn's named MessagePack records, the bytes of its `NamedMpkFileRecorder` at full precision
/// (which reads them, and whose files this reads), written so that a failed write is reported
/// with its cause: Burn's own recorder turns a full disk into "invalid value write" and drops
/// the error of its final flush. Here the file is flushed and synced before it counts.
#[derive(Debug, Clone, Default)]
pub struct MpkRecorder;

/// A writer that keeps the first I/O error (the encoder reports only that one happened).
struct KeepError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> std::io::Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.error.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<B: burn::tensor::backend::Backend> Recorder<B> for MpkRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    /// As Burn's default, with the metadata of Burn's own recorder, so that the files are
    /// byte for byte those of `NamedMpkFileRecorder<FullPrecisionSettings>`.
    fn record<R: burn::record::Record<B>>(&self, record: R, file: PathBuf) -> Result<(), RecorderError> {
        let item = record.into_item::<FullPrecisionSettings>();
        let item = burn::record::BurnRecord::<_, B>::new::<NamedMpkFileRecorder<FullPrecisionSettings>>(item);
        <Self as Recorder<B>>::save_item(self, item, file)
    }

    fn save_item<I: Serialize>(&self, item: I, mut file: PathBuf) -> Result<(), RecorderError> {
        use std::io::Write;
        file.set_extension("mpk");
        // (the caller names the file)
        let failed = |e: std::io::Error| RecorderError::Unknown(e.to_string());
        let f = std::fs::File::create(&file).map_err(failed)?;
        let mut w = KeepError { inner: std::io::BufWriter::new(f), error: None };
        let encoded = rmp_serde::encode::write_named(&mut w, &item);
        if let Some(e) = w.error.take() {
            return Err(failed(e));
        }
        encoded.map_err(|e| RecorderError::Unknown(e.to_string()))?;
        w.flush().map_err(failed)?;
        let f = w.inner.into_inner().map_err(|e| failed(e.into_error()))?;
        f.sync_all().map_err(failed)
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        <NamedMpkFileRecorder<FullPrecisionSettings> as Recorder<B>>::load_item(&NamedMpkFileRecorder::new(), file)
    }
}

impl<B: burn::tensor::backend::Backend> FileRecorder<B> for MpkRecorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

/// What a checkpoint holds, borrowed from the trainer for [`save`].
pub struct Snapshot<'a, B: AutodiffBackend> {
    pub model: &'a UniReal<B>,
    pub optim: &'a Optim<B>,
    pub ema: Option<&'a UniReal<B::InnerBackend>>,
    pub state: &'a TrainState,
    /// The resolved config, as written to `RUN/config.yaml`.
    pub config_yaml: &'a str,
    /// A LoRA run's DiT config: the checkpoint holds the adapters (and their diffusers export).
    pub lora: Option<&'a unireal_model::DiTConfig>,
}

/// Writes checkpoint `state.step` of `run` atomically; returns its directory.
pub fn save<B: AutodiffBackend>(run: &Path, keep: usize, snap: &Snapshot<'_, B>) -> Result<PathBuf> {
    write(run, snap.state.step, keep, |tmp| {
        let only = snap.lora.map(|_| is_adapter_tensor as fn(&str, &str) -> bool);
        let weights = |m: &UniReal<B::InnerBackend>, name: &str| {
            let path = tmp.join(name);
            unireal_model::save_safetensors_only(m, &path, only)
                .map_err(|source| CheckpointError::Weights { path, source })
        };
        let model = snap.model.valid();
        weights(&model, MODEL_WEIGHTS)?;
        if let Some(e) = snap.ema {
            weights(e, EMA_WEIGHTS)?;
        }
        let record_err = |name: &str| record_err(tmp.join(name));
        match snap.lora {
            Some(cfg) => {
                let export = |m: &UniReal<B::InnerBackend>, name: &str| {
                    let path = tmp.join(name);
                    unireal_model::save_diffusers_lora(&m.dit, cfg, &path)
                        .map(|_| ())
                        .map_err(|source| CheckpointError::Weights { path, source })
                };
                export(&model, LORA_WEIGHTS)?;
                if let Some(e) = snap.ema {
                    export(e, EMA_LORA_WEIGHTS)?;
                }
            }
            None => {
                snap.model.clone().save_file(tmp.join("model"), &recorder()).map_err(record_err("model.mpk"))?;
            }
        }
        recorder().record(snap.optim.to_record(), tmp.join("optim")).map_err(record_err("optim.mpk"))?;
        let state = tmp.join(STATE);
        let json = serde_json::to_string_pretty(snap.state)
            .map_err(|source| CheckpointError::State { path: state.clone(), source })?;
        std::fs::write(&state, json).map_err(io(&state))?;
        let cfg = tmp.join(CONFIG);
        std::fs::write(&cfg, snap.config_yaml).map_err(io(&cfg))
    })
}

/// What [`load`] restores.
pub struct Restored<B: AutodiffBackend> {
    pub model: UniReal<B>,
    pub optim: Optim<B>,
    pub ema: Option<UniReal<B::InnerBackend>>,
    pub state: TrainState,
}

/// Restores the model, optimizer, EMA and state of checkpoint `dir` into freshly built ones
/// (the records carry the parameter ids the optimizer state is keyed by). With `lora`, only
/// the adapters are read, into a model that has its base already.
pub fn load<B: AutodiffBackend>(
    dir: &Path,
    model: UniReal<B>,
    optim: Optim<B>,
    ema: Option<UniReal<B::InnerBackend>>,
    device: &B::Device,
    lora: bool,
) -> Result<Restored<B>> {
    let record_err = |name: &str| record_err(dir.join(name));
    let only = lora.then_some(is_adapter_tensor as fn(&str, &str) -> bool);
    let options = unireal_model::LoadOptions { strict: true, only };
    let model = if lora {
        let mut m = model;
        let path = dir.join(MODEL_WEIGHTS);
        unireal_model::load_safetensors(&mut m, &path, &[], options)
            .map_err(|source| CheckpointError::Weights { path, source })?;
        m
    } else {
        model.load_file(dir.join("model"), &recorder(), device).map_err(record_err("model.mpk"))?
    };
    let rec = recorder().load(dir.join("optim"), device).map_err(record_err("optim.mpk"))?;
    let optim = optim.load_record(rec);
    let ema = match ema {
        Some(mut m) => {
            let path = dir.join(EMA_WEIGHTS);
            unireal_model::load_safetensors(&mut m, &path, &[], options)
                .map_err(|source| CheckpointError::Weights { path, source })?;
            Some(m)
        }
        None => None,
    };
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let state = serde_json::from_str(&text).map_err(|source| CheckpointError::State { path, source })?;
    Ok(Restored { model, optim, ema, state })
}
