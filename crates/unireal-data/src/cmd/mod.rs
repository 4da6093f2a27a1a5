//! One file per subcommand: parse arguments, load config, call the library.

pub mod build;
pub mod import;
pub mod inspect;
pub mod preview;
pub mod shots;
pub mod verify;

/// A flag set by the first Ctrl-C (or SIGTERM): the run finishes cleanly, discarding the open
/// shard and keeping the manifest. A second one exits at once.
pub fn stop_on_ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping: discarding the unfinished shard (press Ctrl-C again to exit at once)");
    });
    stop
}

/// The options every writing subcommand (build, import) takes.
#[derive(clap::Args)]
pub struct WriteArgs {
    /// Override a config key with a YAML value: `--set key.path=value`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start over: delete the output's manifest and shards first.
    #[arg(long)]
    pub force: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Try inputs recorded as failed for a permanent reason again (corrupt, unsupported, a
    /// panic); inputs that failed for a transient one (captioner or segmenter down) always are.
    #[arg(long)]
    pub retry_failed: bool,
}

/// Which partition of a run split over a Slurm array this process writes (build, import).
#[derive(clap::Args)]
pub struct PartitionArgs {
    /// Process only partition I of --num-shards (0-based), into OUT/partition-IIII-of-NNNN;
    /// default: from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set.
    #[arg(long, value_name = "I", requires = "num_shards")]
    shard_index: Option<usize>,
    /// The number of partitions (array tasks) the inputs are split into.
    #[arg(long, value_name = "N", requires = "shard_index")]
    num_shards: Option<usize>,
}

impl PartitionArgs {
    /// The flags' partition, else the Slurm array's, else none.
    pub fn partition(&self) -> anyhow::Result<Option<unireal_shards::Partition>> {
        use unireal_shards::Partition;
        Ok(match (self.shard_index, self.num_shards) {
            (Some(i), Some(n)) => {
                Some(Partition::new(i, n).map_err(|e| hinted(e, "--shard-index counts from 0 to --num-shards - 1"))?)
            }
            _ => Partition::from_slurm_env(|k| std::env::var(k).ok())
                .map_err(|e| hinted(e, "submit the array as --array=0-(N-1), or pass --shard-index/--num-shards"))?,
        })
    }
}

/// A writer error of a writing command (build, import) with its hint: a full disk, a busy
/// output, or a changed config (`restart`: how this command starts over).
pub fn writer_error(e: unireal_shards::ShardError, restart: &str) -> anyhow::Error {
    use unireal_shards::ShardError;
    match e {
        ShardError::Io { path, source } if source.raw_os_error() == Some(28) => hinted(
            format!("{}: {source}", path.display()),
            "free space on that device (or choose another output) and run the same command again: it resumes where it stopped",
        ),
        e @ ShardError::Busy { .. } => hinted(
            e.to_string(),
            "one writer per output: wait for that process to finish or stop it (the lock of a killed process ends with it), or choose another output",
        ),
        e @ ShardError::ConfigChanged { .. } => hinted(e.to_string(), restart),
        e => e.into(),
    }
}

/// An error with a `hint:` line for the user ([`unireal_core::Hinted`], printed by
/// [`unireal_core::hint::report`]).
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(unireal_core::Hinted::new(message.into(), hint))
}
