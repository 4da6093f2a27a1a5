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
    if !rep.problems.is_empty() {
        return Err(hinted(
            format!("{} problem(s) in {}", rep.problems.len(), a.dir.display()),
            "rebuild with `unireal-data build CONFIG --force` if shards are damaged",
        ));
    }
    Ok(())
}
