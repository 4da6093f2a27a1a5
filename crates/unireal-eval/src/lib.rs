//! The paper's evaluation (Tables 2 and 3 of UniReal, arXiv 2412.07774): CLIP and DINO metrics
//! on the EMU Edit, MagicBrush and DreamBench test splits that `unireal-data import` writes.
//! [`generate`] runs a checkpoint on the test rows, [`metrics`] embeds and compares,
//! [`protocol`] says what each benchmark compares, [`report`] writes `scores.parquet`,
//! `report.json` and `report.md`. Neither the trainer nor FFmpeg is
//! linked: the binary reads shards, images and the CLIP/DINO weights the user names.

pub mod generate;
pub mod metrics;
pub mod protocol;
pub mod report;

use std::path::{Path, PathBuf};

use burn::prelude::*;
pub use metrics::Embedders;
pub use protocol::{score, test_rows, Protocol, Reference, RowOptions, SampleScores, TestRow};
pub use report::{write_reports, Outcome, Report};

/// Errors of the evaluation, each naming the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("model {dir}: {source}")]
    Model {
        dir: PathBuf,
        #[source]
        source: unireal_model::ModelError,
    },
    #[error("{0}")]
    Forward(unireal_model::ModelError),
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: unireal_pipeline::PipelineError,
    },
    #[error("shards: {0}")]
    Shards(String),
    #[error("{dir}: no `{source_name}` rows of split test (found {found})")]
    NoRows { dir: PathBuf, source_name: &'static str, found: String },
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Outputs { path: PathBuf, message: String },
}

/// Where the images to score come from: `DIR/SAMPLE_ID.png` (or `.jpg`/`.jpeg`), and the
/// rows that could not be generated, with the reason.
pub struct Generated<'a> {
    pub dir: &'a Path,
    pub failed: &'a std::collections::BTreeMap<String, String>,
}

/// The generated image of `row`, or why there is none (not generated, missing, unreadable or
/// undecodable: the sample is skipped with that reason, so one bad file does not stop an
/// evaluation).
pub fn generated_image(source: &Generated, row: &TestRow) -> Result<image::RgbImage, String> {
    if let Some(reason) = source.failed.get(&row.sample_id) {
        return Err(format!("not generated: {reason}"));
    }
    let dir = source.dir;
    let found = ["png", "jpg", "jpeg"].iter().map(|e| dir.join(format!("{}.{e}", row.sample_id))).find(|p| p.is_file());
    let path = found.ok_or_else(|| format!("no output image {}/{}.png", dir.display(), row.sample_id))?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    protocol::decode(&bytes).map_err(|e| format!("{} {e}", path.display()))
}

/// Scores every row: each sample's scores or the reason it was skipped, in row order, with a
/// progress bar on stderr.
pub fn score_rows<B: Backend>(
    protocol: Protocol,
    rows: &[TestRow],
    source: &Generated,
    emb: &Embedders<B>,
) -> Vec<Outcome> {
    let bar = indicatif::ProgressBar::new(rows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("scoring {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]")
            .expect("a valid template"),
    );
    let out = rows
        .iter()
        .map(|row| {
            let result = generated_image(source, row).and_then(|img| score(protocol, row, &img, emb));
            bar.inc(1);
            Outcome { sample_id: row.sample_id.clone(), result, row: row.clone() }
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// What [`evaluate_model`] measured.
#[derive(Debug, Clone)]
pub struct ModelEval {
    pub rows: usize,
    pub scored: usize,
    /// Each metric's mean over the rows that have it, and how many.
    pub means: std::collections::BTreeMap<String, f64>,
    pub counts: std::collections::BTreeMap<String, usize>,
    /// The rows not scored, with the reason.
    pub skipped: Vec<report::Skipped>,
}

/// Generates each row with `model` (as `--checkpoint` does, nothing written) and scores it:
/// the trainer's `log.eval`.
pub fn evaluate_model<B: Backend>(
    protocol: Protocol,
    rows: &[TestRow],
    ckpt: &unireal_pipeline::Checkpoint,
    model: &unireal_pipeline::UniReal<B>,
    frozen: &unireal_pipeline::Frozen<B>,
    emb: &Embedders<B>,
    opts: &generate::GenerateOptions,
    device: &B::Device,
) -> ModelEval {
    let outcomes: Vec<Outcome> = rows
        .iter()
        .map(|row| {
            let result = generate::generate_image(ckpt, model, frozen, row, opts, device)
                .map_err(|e| format!("not generated: {e}"))
                .and_then(|img| score(protocol, row, &img, emb));
            Outcome { sample_id: row.sample_id.clone(), result, row: row.clone() }
        })
        .collect();
    let r = Report::new(protocol, &outcomes, Default::default());
    ModelEval { rows: r.rows, scored: r.scored, means: r.means, counts: r.counts, skipped: r.skipped_rows }
}
