use std::path::PathBuf;

use unireal_shards::{count_by_columns, describe_schema, InputStatus, Manifest, ShardReader};

use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// A shard directory (with manifest.json) or one .parquet shard.
    path: PathBuf,
    /// How many rows to show.
    #[arg(long, default_value_t = 3)]
    rows: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (files, manifest) = if a.path.is_dir() {
        let m = Manifest::load_dataset(&a.path)?.ok_or_else(|| {
            hinted(
                format!("{}: no manifest.json", a.path.display()),
                "point inspect at the `output` directory of a build, or at one .parquet file",
            )
        })?;
        (m.shards.iter().map(|s| a.path.join(&s.file)).collect::<Vec<_>>(), Some(m))
    } else if a.path.is_file() {
        (vec![a.path.clone()], None)
    } else {
        return Err(hinted(
            format!("{}: no such file or directory", a.path.display()),
            "pass a shard directory or a .parquet file",
        ));
    };
    println!("{}", a.path.display());
    if let Some(m) = &manifest {
        println!(
            "manifest: {} shard(s), {} row(s), {:.1} MiB, written by {}",
            m.shards.len(),
            m.totals.rows,
            m.totals.bytes as f64 / 1048576.0,
            m.created_by
        );
        for s in &m.shards {
            println!("  {}  {} rows  {:.1} MiB", s.file, s.rows, s.bytes as f64 / 1048576.0);
        }
    }
    let Some(first) = files.first() else {
        println!("no shards yet");
        return Ok(());
    };
    println!("schema:\n{}", describe_schema(first)?.trim_end());
    println!("rows by task / source / split:");
    for (k, n) in count_by_columns(&files, &["task", "source", "split"])? {
        println!("  {:<14} {:<10} {:<6} {n}", k[0], k[1], k[2]);
    }
    if let Some(m) = &manifest {
        let t = &m.totals.inputs;
        println!(
            "inputs: {} ok, {} skipped, {} failed",
            t.get("ok").unwrap_or(&0),
            t.get("skipped").unwrap_or(&0),
            t.get("failed").unwrap_or(&0)
        );
        for i in m.inputs.iter().filter(|i| i.status != InputStatus::Ok) {
            println!("  {:?} {}: {}", i.status, i.path, i.reason);
        }
    }
    print_rows(&files, a.rows)
}

fn print_rows(files: &[PathBuf], n: usize) -> anyhow::Result<()> {
    for (i, s) in ShardReader::open_files(files.to_vec()).take(n).enumerate() {
        let s = s?;
        println!("row {i}: {}", s.sample_id);
        println!("  task: {}  source: {}  split: {}", s.task, s.source, s.split);
        println!("  base_prompt: {}", s.base_prompt);
        println!("  context_prompt: {}", s.context_prompt);
        let imgs: Vec<String> = s
            .images
            .iter()
            .map(|im| format!("{} {}x{} {} {} KiB", im.role, im.width, im.height, im.encoding, im.bytes.len() / 1024))
            .collect();
        println!("  images: {}", imgs.join(" | "));
        println!("  meta: {}", s.meta);
    }
    Ok(())
}
