//! `unireal-eval --protocol emu-edit|magicbrush|dreambench --shards DIR --clip DIR --dino DIR
//! --outputs DIR --out REPORT_DIR`
//!
//! Scores images generated for a benchmark's test rows (`SAMPLE_ID.png` in `--outputs`, made
//! by any model) with the benchmark's CLIP and DINO metrics, and writes `scores.parquet`,
//! `report.json` and `report.md` into `--out`. Logs and progress go to stderr; the report's
//! means go to stdout as one JSON line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_core::Hinted;
use unireal_eval::{score_rows, test_rows, write_reports, Embedders, Generated, Protocol};

type Backend = burn::backend::NdArray;

/// Score generated images with the paper's metrics (UniReal Tables 2 and 3).
#[derive(Parser, Debug)]
#[command(name = "unireal-eval", version)]
struct Args {
    /// Which benchmark's rows and metrics.
    #[arg(long, value_enum)]
    protocol: Protocol,
    /// The shard directory `unireal-data import` wrote the test set into (split `test`).
    #[arg(long)]
    shards: PathBuf,
    /// A transformers CLIPModel directory (openai/clip-vit-large-patch14 for EMU Edit's
    /// protocol, openai/clip-vit-base-patch32 for MagicBrush's and DreamBench's).
    #[arg(long)]
    clip: PathBuf,
    /// A DINO directory: facebook/dino-vits16 (ViTModel) as the protocols use, or a DINOv2.
    #[arg(long)]
    dino: PathBuf,
    /// A directory of generated images named SAMPLE_ID.png, one per test row.
    #[arg(long, conflicts_with = "checkpoint")]
    outputs: Option<PathBuf>,
    /// A UniReal checkpoint to generate the test rows with (not built yet: generate with
    /// unireal-infer and pass --outputs).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Only the first N test rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Where the report files go.
    #[arg(long)]
    out: PathBuf,
}

fn run(args: Args) -> anyhow::Result<()> {
    let outputs = match (&args.outputs, &args.checkpoint) {
        (Some(dir), None) => dir.clone(),
        (None, Some(ckpt)) => {
            return Err(Hinted::new(
                format!("--checkpoint {}: generating the test rows from a checkpoint is not built yet", ckpt.display()),
                "generate each row with unireal-infer into a directory as SAMPLE_ID.png and pass it as --outputs",
            )
            .into())
        }
        _ => {
            return Err(Hinted::new(
                "nothing to score: neither --outputs nor --checkpoint is given",
                "pass --outputs DIR with one SAMPLE_ID.png per test row",
            )
            .into())
        }
    };
    if !outputs.is_dir() {
        return Err(Hinted::new(
            format!("--outputs {}: not a directory", outputs.display()),
            "it should hold one SAMPLE_ID.png per test row",
        )
        .into());
    }
    let mut rows = test_rows(&args.shards, args.protocol)?;
    if let Some(n) = args.limit {
        rows.truncate(n);
    }
    eprintln!("{} {} test rows from {}", rows.len(), args.protocol.source(), args.shards.display());
    let device = Default::default();
    let emb = Embedders::<Backend>::load(&args.clip, &args.dino, &device)?;
    let outcomes = score_rows(args.protocol, &rows, &Generated::Dir(&outputs), &emb);
    let setup = BTreeMap::from([
        ("clip".to_string(), args.clip.display().to_string()),
        ("dino".to_string(), args.dino.display().to_string()),
        ("shards".to_string(), args.shards.display().to_string()),
        ("outputs".to_string(), outputs.display().to_string()),
    ]);
    let report = write_reports(&args.out, args.protocol, &outcomes, setup)?;
    eprintln!(
        "scored {} of {} rows ({} skipped); wrote {}/report.md",
        report.scored,
        report.rows,
        report.skipped,
        args.out.display()
    );
    if report.scored == 0 {
        let first = report.skipped_rows.first().map(|s| s.reason.clone()).unwrap_or_default();
        return Err(Hinted::new(
            format!("no test row could be scored (the first: {first}); the report files say why for each"),
            format!("--outputs {} should hold one SAMPLE_ID.png per test row", outputs.display()),
        )
        .into());
    }
    println!(
        "{}",
        serde_json::json!({"protocol": args.protocol, "rows": report.rows, "scored": report.scored,
            "skipped": report.skipped, "means": report.means})
    );
    Ok(())
}

fn main() -> ExitCode {
    unireal_core::hint::exit(run(Args::parse()))
}
