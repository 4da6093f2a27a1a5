//! The UniReal data-construction pipeline: videos → shots → frame pairs and analysed object
//! pairs → samples of the six video task families (Frame2Frame, multi_object, insertion,
//! object_add, seg, control) → Parquet shards (docs/data-format.md).
//!
//! The video modules form a chain, each using only those after it: `build` (the run, on
//! `unireal_shards::driver`) → `frame2frame` (one pass over a video) → `objects` (analysed
//! pairs) → `families` (their samples) → `context` (what one video's stages share). The
//! expert-set importers are another crate, unireal-import (no FFmpeg); the `unireal-data`
//! binary runs both.

pub mod build;
mod captions;
pub mod config;
mod context;
mod families;
pub mod frame2frame;
pub mod inputs;
pub mod objects;
mod pool;
pub mod preview;

pub use build::{run_build, run_build_with, BuildError, BuildOptions, BuildSummary};
pub use config::BuildConfig;
pub use frame2frame::Annotators;
pub use unireal_shards::Partition;
