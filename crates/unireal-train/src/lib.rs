//! The UniReal trainer: a streaming loader over shard directories ([`data`]), the training loop
//! ([`trainer`]) with checkpoints ([`checkpoint`]), EMA ([`ema`]) and sample grids
//! ([`generate`]), over the model of `unireal-model` and the flow of `unireal-flow`. It never
//! links ffmpeg: shards hold encoded images.

pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data;
pub mod ema;
pub mod generate;
pub mod model;
pub mod trainer;

pub use collective::{Collective, SingleProcess};
pub use config::TrainConfig;
pub use trainer::{run, run_with, RunOptions, RunSummary};
