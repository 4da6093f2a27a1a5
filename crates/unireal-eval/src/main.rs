//! `unireal-eval --protocol emu-edit|magicbrush|dreambench --shards DIR --clip DIR --dino DIR
//! (--checkpoint RUN | --outputs DIR) --out REPORT_DIR`
//!
//! Scores a benchmark's test rows with its CLIP and DINO metrics: images a UniReal checkpoint
//! generates for them (`--checkpoint`, into `REPORT_DIR/generated/`, resumable), or images any
//! model made (`--outputs`, `SAMPLE_ID.png`). Writes `scores.parquet`, `report.json` and
//! `report.md` into `--out`. Logs and progress go to stderr; the means go to stdout as one
//! JSON line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_core::Hinted;
use unireal_eval::generate::{generate_rows, GenerateOptions};
use unireal_eval::{score_rows, test_rows, write_reports, Embedders, Generated, Protocol, RowOptions};
use unireal_pipeline::checkpoint::SamplerSettings;

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
    /// A directory of generated images named SAMPLE_ID.png, one per test row (any model).
    #[arg(long, conflicts_with = "checkpoint", required_unless_present = "checkpoint")]
    outputs: Option<PathBuf>,
    /// A UniReal checkpoint (RUN/checkpoints/step-N or a run directory) that generates each
    /// test row into OUT/generated/ first; a rerun keeps what is there.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Sampling steps (default: the run's log.sample_steps).
    #[arg(long, requires = "checkpoint")]
    steps: Option<usize>,
    /// Base seed; each row's is this plus a hash of its sample id.
    #[arg(long, default_value_t = 0, requires = "checkpoint")]
    seed: u64,
    /// Text guidance scale (default: the run's log.guidance.text).
    #[arg(long, requires = "checkpoint")]
    text_guidance: Option<f64>,
    /// Image guidance scale (default: the run's log.guidance.image).
    #[arg(long, requires = "checkpoint")]
    image_guidance: Option<f64>,
    /// Sample with the raw weights instead of the EMA's.
    #[arg(long, requires = "checkpoint")]
    no_ema: bool,
    /// Rows sampled together (rows of one bucket and input roles, among this many at a
    /// time). A row's image does not depend on it: each starts from its own seed's noise.
    #[arg(long, default_value_t = 4, requires = "checkpoint")]
    batch: usize,
    /// Table 4's ablation: generate without the context prompt (the instruction alone).
    #[arg(long, requires = "checkpoint")]
    no_context_prompt: bool,
    /// Table 4's ablation: generate without image prompts (the DiT's image-role embeddings
    /// of every frame left out).
    #[arg(long, requires = "checkpoint")]
    no_image_prompt: bool,
    /// DreamBench: the dataset folder given to `unireal-data import dreambench`, so that every
    /// image of a subject is a reference (without it: the row's one asset image).
    #[arg(long)]
    references: Option<PathBuf>,
    /// Only rows of this Hugging Face split (`meta.hf_split`; EMU Edit's `test` or
    /// `validation`, both of which the importer writes as split test).
    #[arg(long)]
    hf_split: Option<String>,
    /// Only the first N test rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Where the report files (and, with --checkpoint, the generated images) go.
    #[arg(long)]
    out: PathBuf,
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = args.outputs.as_ref().filter(|d| !d.is_dir()) {
        return Err(Hinted::new(
            format!("--outputs {}: not a directory", dir.display()),
            "it should hold one SAMPLE_ID.png per test row",
        )
        .into());
    }
    if let Some(dir) = args.references.as_ref().filter(|d| !d.is_dir()) {
        return Err(Hinted::new(
            format!("--references {}: not a directory", dir.display()),
            "pass the DreamBooth dataset folder that `unireal-data import dreambench` read",
        )
        .into());
    }
    let row_opts = RowOptions { references: args.references.clone(), hf_split: args.hf_split.clone() };
    let mut rows = test_rows(&args.shards, args.protocol, &row_opts)?;
    if let Some(n) = args.limit {
        rows.truncate(n);
    }
    eprintln!("{} {} test rows from {}", rows.len(), args.protocol.source(), args.shards.display());
    let device = Default::default();
    // The scorers load first: a wrong model directory fails before any generation.
    let emb = Embedders::<Backend>::load(&args.clip, &args.dino, &device)?;
    let mut setup = BTreeMap::from([
        ("clip".to_string(), args.clip.display().to_string()),
        ("dino".to_string(), args.dino.display().to_string()),
        ("shards".to_string(), args.shards.display().to_string()),
    ]);
    if let Some(r) = &args.references {
        setup.insert("references".into(), r.display().to_string());
    }
    if let Some(h) = &args.hf_split {
        setup.insert("hf_split".into(), h.clone());
    }
    let (outputs, failed) = match (&args.outputs, &args.checkpoint) {
        (Some(dir), _) => (dir.clone(), BTreeMap::new()),
        (None, Some(ckpt)) => {
            let dir = args.out.join("generated");
            let opts = GenerateOptions {
                settings: SamplerSettings {
                    steps: args.steps,
                    seed: args.seed,
                    text_guidance: args.text_guidance,
                    image_guidance: args.image_guidance,
                    ..Default::default()
                },
                no_ema: args.no_ema,
                no_context_prompt: args.no_context_prompt,
                no_image_prompt: args.no_image_prompt,
                batch: args.batch,
            };
            let g = generate_rows::<Backend>(ckpt, &rows, &dir, &opts, &device)?;
            eprintln!("generated {}, kept {}, failed {}", g.generated, g.reused, g.failed.len());
            setup.insert("checkpoint".into(), ckpt.display().to_string());
            setup.insert(
                "sampling".into(),
                format!(
                    "seed {} (+ sample id hash), steps {}, guidance text {} image {}, {}{}{}",
                    args.seed,
                    args.steps.map_or("of the run".into(), |s| s.to_string()),
                    args.text_guidance.map_or("of the run".into(), |g| g.to_string()),
                    args.image_guidance.map_or("of the run".into(), |g| g.to_string()),
                    if args.no_ema { "raw weights" } else { "EMA weights" },
                    if args.no_context_prompt { ", no context prompt" } else { "" },
                    if args.no_image_prompt { ", no image prompts" } else { "" },
                ),
            );
            (dir, g.failed)
        }
        (None, None) => unreachable!("clap requires --outputs or --checkpoint"),
    };
    setup.insert("outputs".into(), outputs.display().to_string());
    let outcomes = score_rows(args.protocol, &rows, &Generated { dir: &outputs, failed: &failed }, &emb);
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
