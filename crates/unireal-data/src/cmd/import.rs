use std::path::PathBuf;

use unireal_import::{run_import, Format, ImportConfig, ImportError, ImportOptions};

use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// instructpix2pix, ultraedit, magicbrush, emu-edit, vitonhd, refcoco, dreambench,
    /// omnigen or images.
    format: String,
    /// The downloaded set in its native layout: a folder (or one file of it).
    path: PathBuf,
    /// The shard directory to write (resumed when it exists).
    #[arg(long)]
    out: PathBuf,
    /// Import options from a YAML file (every key in docs/data-format.md, "Imported sets").
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    w: super::WriteArgs,
    #[command(flatten)]
    p: super::PartitionArgs,
}

fn config(a: &Args) -> anyhow::Result<ImportConfig> {
    let hint = "the import options are listed in docs/data-format.md (\"Imported sets\")";
    if let Some(p) = &a.config {
        return unireal_core::load_config(p, &a.w.set).map_err(|e| hinted(e.to_string(), hint));
    }
    let mut tree = serde_yaml::Value::Mapping(Default::default());
    for s in &a.w.set {
        unireal_core::apply_override(&mut tree, s).map_err(|e| hinted(e.to_string(), hint))?;
    }
    let text = serde_yaml::to_string(&tree)?;
    unireal_core::parse_config_str(&text, "--set").map_err(|e| hinted(e.to_string(), hint))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let format: Format = a.format.parse().map_err(|e: String| hinted(e, "pick one of the formats listed above"))?;
    let cfg = config(&a)?;
    let stop = super::stop_on_ctrl_c();
    let opts = ImportOptions {
        force: a.w.force,
        quiet: a.w.quiet,
        partition: a.p.partition()?,
        retry_failed: a.w.retry_failed,
    };
    let s = match run_import(format, &a.path, &a.out, &cfg, &opts, stop) {
        Ok(s) => s,
        Err(e @ ImportError::Input { .. }) => {
            return Err(hinted(
                e.to_string(),
                "check the path and the layout the format expects (docs/data-format.md, \"Imported sets\")",
            ))
        }
        Err(ImportError::Config(m)) => return Err(hinted(format!("config: {m}"), "fix the option named above")),
        Err(ImportError::Shards(e)) => {
            return Err(super::writer_error(e, "pass --force to import again from scratch, or choose another --out"))
        }
        Err(e) => return Err(e.into()),
    };
    let m = &s.manifest;
    eprintln!(
        "done: {} new sample(s) from {} unit(s) in {:.1} s ({} bad row(s) skipped){}",
        s.new_samples,
        s.processed,
        s.elapsed.as_secs_f64(),
        s.bad_rows,
        if s.already_done > 0 { format!("; {} unit(s) were already done", s.already_done) } else { String::new() }
    );
    let count = |k: &str| m.totals.inputs.get(k).copied().unwrap_or(0);
    eprintln!(
        "output: {} — {} sample(s) in {} shard(s); units: {} ok, {} skipped, {} failed",
        s.output.display(),
        m.totals.rows,
        m.shards.len(),
        count("ok"),
        count("skipped"),
        count("failed")
    );
    if s.bad_rows > 0 || count("failed") > 0 {
        eprintln!(
            "bad rows and failed units are listed in {}/manifest.json (inputs[].reason, inputs[].stats.bad)",
            s.output.display()
        );
    }
    println!("{}", s.output.display());
    Ok(())
}
