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
