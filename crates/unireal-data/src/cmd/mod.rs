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
}

/// An error with a `hint:` line for the user ([`unireal_core::Hinted`], printed by
/// [`unireal_core::hint::report`]).
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(unireal_core::Hinted::new(message.into(), hint))
}
