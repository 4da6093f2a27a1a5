use std::path::PathBuf;

use unireal_data::preview::{write_gallery, PreviewError, PreviewOptions};

use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// A shard directory (the `output` of a build or an import).
    dir: PathBuf,
    /// The HTML file to write (one self-contained page).
    #[arg(long, default_value = "gallery.html")]
    out: PathBuf,
    /// At most this many samples per task.
    #[arg(long, default_value_t = PreviewOptions::default().per_task)]
    per_task: usize,
    /// Long side of the thumbnails, pixels.
    #[arg(long, default_value_t = PreviewOptions::default().thumb)]
    thumb: u32,
    /// Only this task (repeatable), e.g. `--task seg`.
    #[arg(long = "task")]
    tasks: Vec<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for t in &a.tasks {
        t.parse::<unireal_core::Task>()
            .map_err(|e| hinted(format!("--task: {e}"), "use a task name as in the shards' `task` column"))?;
    }
    let opts = PreviewOptions { per_task: a.per_task.max(1), thumb: a.thumb.clamp(32, 1024), tasks: a.tasks };
    let summary = match write_gallery(&a.dir, &a.out, &opts) {
        Ok(s) => s,
        Err(PreviewError::Shards(e)) => {
            return Err(hinted(
                e.to_string(),
                "point preview at the `output` directory of `unireal-data build` or `import`",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let shown: usize = summary.shown.values().sum();
    let seen: u64 = summary.seen.values().sum();
    let per: Vec<String> = summary.seen.iter().map(|(t, n)| format!("{t} {}/{n}", summary.shown[t])).collect();
    eprintln!("wrote {}: {shown} of {seen} sample(s) ({})", a.out.display(), per.join(", "));
    if summary.bad_images > 0 {
        eprintln!(
            "warning: {} image(s) did not decode (shown as placeholders); run `unireal-data verify`",
            summary.bad_images
        );
    }
    println!("{}", a.out.display());
    Ok(())
}
