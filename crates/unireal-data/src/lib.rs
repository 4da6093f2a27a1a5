//! The UniReal data-construction pipeline: videos → shots → frame pairs → captioned
//! Frame2Frame samples → Parquet shards (docs/data-format.md).

pub mod build;
pub mod config;
pub mod frame2frame;
pub mod inputs;
pub mod verify;

pub use build::{run_build, BuildError, BuildOptions, BuildSummary};
pub use config::BuildConfig;
