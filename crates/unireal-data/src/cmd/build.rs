use std::path::PathBuf;

use unireal_data::{run_build, BuildConfig, BuildError, BuildOptions};

use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// The build config (YAML), e.g. configs/video.yaml.
    config: PathBuf,
    #[command(flatten)]
    w: super::WriteArgs,
    #[command(flatten)]
    p: super::PartitionArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg: BuildConfig = unireal_core::load_config(&a.config, &a.w.set).map_err(|e| {
        hinted(e.to_string(), "every key and its default is listed in docs/data-format.md (\"Build configuration\")")
    })?;
    let stop = super::stop_on_ctrl_c();
    let opts = BuildOptions {
        force: a.w.force,
        quiet: a.w.quiet,
        partition: a.p.partition()?,
        retry_failed: a.w.retry_failed,
    };
    let summary = match run_build(&cfg, &opts, stop) {
        Ok(s) => s,
        Err(BuildError::Config(m)) => {
            return Err(hinted(
                format!("{}: {m}", a.config.display()),
                "fix the key named above, or override it with --set KEY=VALUE",
            ))
        }
        Err(BuildError::Shards(e)) => {
            return Err(super::writer_error(e, "pass --force to rebuild from scratch, or choose another `output`"))
        }
        Err(e) => return Err(e.into()),
    };
    let m = &summary.manifest;
    let count = |k: &str| m.totals.inputs.get(k).copied().unwrap_or(0);
    let secs = summary.elapsed.as_secs_f64();
    eprintln!(
        "done: {} new sample(s) from {} video(s) in {:.1} s ({} frames, {:.0} frames/s){}",
        summary.new_samples,
        summary.processed,
        secs,
        summary.frames,
        summary.frames as f64 / secs.max(1e-9),
        if summary.already_done > 0 { format!("; {} done earlier", summary.already_done) } else { String::new() }
    );
    eprintln!(
        "output: {} — {} sample(s) in {} shard(s), {:.1} MiB; inputs: {} ok, {} skipped, {} failed",
        summary.output.display(),
        m.totals.rows,
        m.shards.len(),
        m.totals.bytes as f64 / (1024.0 * 1024.0),
        count("ok"),
        count("skipped"),
        count("failed"),
    );
    if count("skipped") + count("failed") > 0 {
        eprintln!("reasons are in {}/manifest.json (inputs[].reason)", summary.output.display());
    }
    Ok(())
}
