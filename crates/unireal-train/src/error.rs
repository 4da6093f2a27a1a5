//! Everything the trainer can fail on, each with the path, key or count it concerns, so that
//! the binary can say what to do (`hint:`) by looking at the variant, never at the message.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::checkpoint::CheckpointError;
use crate::collective::CollectiveError;
use crate::config::InvalidConfig;
use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// Assembling or running the model (configs of model directories, weights, text encoder).
    #[error(transparent)]
    Pipeline(#[from] unireal_pipeline::PipelineError),
    /// Setting up `log.eval` (its shards, its CLIP and DINO directories).
    #[error("log.eval: {0}")]
    Eval(#[from] unireal_eval::EvalError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serialising the resolved config")]
    SerializeConfig(#[source] serde_yaml::Error),
    #[error("--resume: {key} differs from the checkpoint's config ({checkpoint})")]
    ResumeConfigChanged { checkpoint: PathBuf, key: &'static str },
    /// Another live process trains in this run directory (its `.lock` names it).
    #[error("{run}: another process is training here ({holder})")]
    Busy { run: PathBuf, holder: String },
    #[error("{run} already holds checkpoints")]
    RunExists { run: PathBuf },
    #[error("--resume: {checkpoints} has no finished checkpoint")]
    NothingToResume { checkpoints: PathBuf },
    #[error("{run} was trained on {trained} process(es); this job has {now}")]
    WorldSizeChanged { run: PathBuf, trained: usize, now: usize },
    /// A model file the memory plan reads.
    #[error("{path}: {message}")]
    Plan { path: PathBuf, message: String },
    #[error("data.world_size is {0} but this process runs alone")]
    NotLaunchedByMpi(usize),
}

/// Tensor data brought to the host: the pipeline's error (`PipelineError::Tensor`).
impl From<burn::tensor::DataError> for TrainError {
    fn from(e: burn::tensor::DataError) -> Self {
        TrainError::Pipeline(e.into())
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
