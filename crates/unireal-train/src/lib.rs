//! The UniReal trainer: a [`Trainer`] ([`trainer`]) with its components beside it — the
//! streaming loader over shard directories ([`data`]), the objective of a batch ([`loss`]),
//! AdamW and the LR schedule ([`optim`]), EMA ([`ema`]), metrics ([`metrics`]), checkpoints
//! ([`checkpoint`]), the cache of the frozen encoders' outputs ([`cache`]), sample grids ([`samples`]) and data-parallel communication
//! ([`collective`]) — over the model and sampler of `unireal-pipeline`. It never links
//! ffmpeg: shards hold encoded images.

pub mod cache;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data;
pub mod ema;
pub mod error;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod plan;
pub mod recompute;
pub mod samples;
pub mod trainer;

pub use collective::{Collective, SingleProcess};
pub use config::TrainConfig;
pub use error::TrainError;
pub use trainer::{run, run_with, RunOptions, RunSummary, Trainer};
