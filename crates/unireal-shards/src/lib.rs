//! The shard contract in Parquet (docs/data-format.md): one row = one training sample of any
//! task. A [`DatasetWriter`] rolls shards by size, writes each under a temporary name and
//! renames it when closed, then commits it to `manifest.json` together with the inputs whose
//! samples it completes, so a build can stop anywhere and resume without losing or
//! duplicating a sample. [`ShardReader`] streams samples back. [`driver`] runs a resumable
//! build or import into a writer; [`verify`] checks a directory against its manifest.

pub mod driver;
mod manifest;
mod partition;
mod reader;
mod schema;
pub mod verify;
mod writer;

pub use driver::{fingerprint, stable_u64, unit_hash};
pub use manifest::{
    is_file_name, partition_dirs, partition_name, FailureKind, InputRecord, InputStatus, Manifest, ShardEntry, Totals,
    MANIFEST_NAME,
};
pub use partition::Partition;
pub use reader::{
    check_index, count_by_columns, describe_schema, index_rows, read_rows, read_sample_ids, RowInfo, ShardReader,
};
pub use schema::{batch_to_samples, samples_to_batch, shard_schema};
pub use verify::{verify_dir, VerifyReport};
pub use writer::{DatasetWriter, WriterOptions};

use std::path::PathBuf;

/// Errors of the shard layer; each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: arrow::error::ArrowError },
    #[error("{path}: bad manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: row {row}: {message}")]
    Row { path: PathBuf, row: usize, message: String },
    #[error("{path}: this output was built with a different configuration (fingerprint {found}, now {expected})")]
    ConfigChanged { path: PathBuf, found: String, expected: String },
    /// Another live process writes into this directory (its `.lock` names it).
    #[error("{path}: another process is writing here ({holder})")]
    Busy { path: PathBuf, holder: String },
}

pub type Result<T, E = ShardError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ShardError {
    let path = path.into();
    move |source| ShardError::Io { path, source }
}
