//! `unireal-data`: build training shards from videos, and look at them.

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "unireal-data", version, about = "UniReal data construction: videos → training shards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build shards of every enabled task family from the videos a config names (resumes by default).
    Build(cmd::build::Args),
    /// Detect shot cuts in video files.
    Shots(cmd::shots::Args),
    /// Show a shard directory's or file's schema, counts and a few rows.
    Inspect(cmd::inspect::Args),
    /// Check a shard directory against its manifest; every image must decode.
    Verify(cmd::verify::Args),
    /// Import an expert dataset from its native layout into shards (resumes by default).
    Import(cmd::import::Args),
    /// Render a self-contained HTML gallery of built samples, filterable by task.
    Preview(cmd::preview::Args),
}

fn main() -> std::process::ExitCode {
    keep_frames_on_the_heap();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(a),
        Command::Shots(a) => cmd::shots::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Preview(a) => cmd::preview::run(a),
    };
    unireal_core::hint::exit(result)
}

/// glibc hands allocations above a dynamic threshold to `mmap` and trims the heap's top after
/// 128 KiB free: a build that allocates and frees frame-sized buffers (analysis frames, HSV
/// planes, masks, full frames) for every decoded frame faults fresh zeroed pages in each
/// time. Keeping buffers under 32 MiB on the heap and trimming only past 64 MiB free saves
/// a fifth of the page faults and about 2.5 % of the CPU of `build` (docs/benchmarks.md).
fn keep_frames_on_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
