//! The UniReal data-construction pipeline: videos → shots → frame pairs and analysed object
//! pairs → samples of the six video task families (Frame2Frame, multi_object, insertion,
//! object_add, seg, control) → Parquet shards (docs/data-format.md).

pub mod build;
pub mod config;
mod encode;
mod families;
pub mod frame2frame;
pub mod import;
pub mod inputs;
pub mod objects;
mod pipeline;
pub mod preview;
pub mod verify;

pub use build::{run_build, BuildError, BuildOptions, BuildSummary, Partition};
pub use config::BuildConfig;
