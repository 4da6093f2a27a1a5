use std::path::PathBuf;

use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// A shard directory (with manifest.json).
    dir: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rep = unireal_shards::verify_dir(&a.dir)
        .map_err(|e| hinted(e, "point verify at the `output` directory of a build"))?;
    for p in &rep.problems {
        println!("problem: {p}");
    }
    println!(
        "{}: {} shard(s), {} row(s), {} image(s), {} problem(s)",
        a.dir.display(),
        rep.shards,
        rep.rows,
        rep.images,
        rep.problems.len()
    );
    let inputs: Vec<String> = rep.inputs.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("inputs: {}", if inputs.is_empty() { "none recorded".into() } else { inputs.join(", ") });
    let retry = |k: &str| rep.inputs.get(k).copied().unwrap_or(0);
    if retry("failed (transient)") + retry("ok (transient trouble)") > 0 {
        eprintln!("the next run of the same build or import retries the inputs with transient trouble");
    }
    if retry("failed (permanent)") > 0 {
        eprintln!("inputs that failed for good are tried again with --retry-failed (reasons: inspect DIR)");
    }
    if !rep.problems.is_empty() {
        return Err(hinted(
            format!("{} problem(s) in {}", rep.problems.len(), a.dir.display()),
            "rebuild with `unireal-data build CONFIG --force` if shards are damaged",
        ));
    }
    Ok(())
}
