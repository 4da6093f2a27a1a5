//! The report files: `scores.parquet` (one row per sample: its scores, the captions and
//! images they compared, or why it was skipped), `report.json` (means, counts, skipped rows
//! with reasons) and `report.md` (the paper's table layout with its published rows beside
//! ours). Each file is written to a temporary name and renamed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::protocol::{Protocol, SampleScores, TestRow};
use crate::EvalError;

/// One sample's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sample_id: String,
    pub result: Result<SampleScores, String>,
    pub row: TestRow,
}

/// What `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub rows: usize,
    pub scored: usize,
    pub skipped: usize,
    /// Each metric's mean over the samples that have it.
    pub means: BTreeMap<String, f64>,
    /// How many samples each mean is over.
    pub counts: BTreeMap<String, usize>,
    /// Samples without a score, with the reason.
    pub skipped_rows: Vec<Skipped>,
    /// Metrics left out of scored samples (a caption missing), with the reason and how often.
    pub missing_metrics: BTreeMap<String, BTreeMap<String, usize>>,
    /// What scored: the model directories and where the images came from.
    pub setup: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub sample_id: String,
    pub reason: String,
}

impl Report {
    pub fn new(protocol: Protocol, outcomes: &[Outcome], setup: BTreeMap<String, String>) -> Self {
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut missing: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut skipped_rows = Vec::new();
        for o in outcomes {
            match &o.result {
                Ok(s) => {
                    for (k, v) in &s.values {
                        let e = sums.entry(k.to_string()).or_default();
                        e.0 += v;
                        e.1 += 1;
                    }
                    for (k, why) in &s.missing {
                        *missing.entry(k.to_string()).or_default().entry(why.clone()).or_default() += 1;
                    }
                }
                Err(reason) => skipped_rows.push(Skipped { sample_id: o.sample_id.clone(), reason: reason.clone() }),
            }
        }
        Report {
            protocol,
            rows: outcomes.len(),
            scored: outcomes.len() - skipped_rows.len(),
            skipped: skipped_rows.len(),
            means: sums.iter().map(|(k, (s, n))| (k.clone(), s / *n as f64)).collect(),
            counts: sums.iter().map(|(k, (_, n))| (k.clone(), *n)).collect(),
            skipped_rows,
            missing_metrics: missing,
            setup,
        }
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Write { path: path.to_path_buf(), message: e.to_string() }
}

/// Writes the three files into `dir` (created if needed) and returns the report.
pub fn write_reports(
    dir: &Path,
    protocol: Protocol,
    outcomes: &[Outcome],
    setup: BTreeMap<String, String>,
) -> Result<Report, EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    write_scores(&dir.join("scores.parquet"), protocol, outcomes)?;
    let report = Report::new(protocol, outcomes, setup);
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    let path = dir.join("report.json");
    unireal_core::write_atomic(&path, format!("{json}\n").as_bytes()).map_err(|e| write_err(&path, e))?;
    let path = dir.join("report.md");
    unireal_core::write_atomic(&path, markdown(&report).as_bytes()).map_err(|e| write_err(&path, e))?;
    Ok(report)
}

/// `scores.parquet`: `sample_id`, `status` (`scored` or `skipped`), `reason` (why skipped, or
/// which metrics were left out), the metric inputs (`input_caption`, `output_caption`:
/// DreamBench's prompt), and one nullable f64 column per metric.
fn write_scores(path: &Path, protocol: Protocol, outcomes: &[Outcome]) -> Result<(), EvalError> {
    let metrics = protocol.metrics();
    let mut fields = vec![
        Field::new("sample_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("input_caption", DataType::Utf8, true),
        Field::new("output_caption", DataType::Utf8, true),
    ];
    fields.extend(metrics.iter().map(|m| Field::new(m.key, DataType::Float64, true)));
    let schema = Arc::new(Schema::new(fields));
    let text = |f: &dyn Fn(&Outcome) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(outcomes.iter().map(f).collect::<Vec<_>>()))
    };
    let mut columns: Vec<ArrayRef> = vec![
        text(&|o| Some(o.sample_id.clone())),
        text(&|o| Some(if o.result.is_ok() { "scored" } else { "skipped" }.to_string())),
        text(&|o| {
            Some(match &o.result {
                Ok(s) => s.missing.iter().map(|(k, why)| format!("{k}: {why}")).collect::<Vec<_>>().join("; "),
                Err(why) => why.clone(),
            })
        }),
        text(&|o| o.row.input_caption.clone()),
        text(&|o| o.row.output_caption.clone()),
    ];
    for m in &metrics {
        let values: Vec<Option<f64>> =
            outcomes.iter().map(|o| o.result.as_ref().ok().and_then(|s| s.values.get(m.key).copied())).collect();
        columns.push(Arc::new(Float64Array::from(values)));
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| write_err(path, e))?;
    let tmp = path.with_file_name(".scores.parquet.tmp");
    let result = (|| -> Result<(), String> {
        let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut w = ArrowWriter::try_new(file, schema, None).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.close().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| write_err(path, e))
}

/// The paper's published rows (UniReal, arXiv 2412.07774, Tables 2 and 3) for a table:
/// method and one value per column (None: not reported). Transcribed for reference; the
/// paper's own table is authoritative.
fn published(title: &str) -> Vec<(&'static str, Vec<Option<f64>>)> {
    let r = |v: [f64; 5]| v.iter().map(|x| (*x >= 0.0).then_some(*x)).collect::<Vec<_>>();
    if title.starts_with("EMU Edit") {
        vec![
            ("InstructPix2Pix", r([0.078, 0.834, 0.219, 0.121, 0.762])),
            ("MagicBrush", r([0.090, 0.838, 0.222, 0.100, 0.776])),
            ("UltraEdit", r([0.107, 0.793, 0.283, 0.071, 0.844])),
            ("EMU Edit", r([0.109, 0.859, 0.231, 0.094, 0.819])),
            ("UniReal", r([0.127, 0.851, 0.285, 0.099, 0.790])),
        ]
    } else if title == "MagicBrush test (Table 2)" {
        vec![
            ("InstructPix2Pix", r([0.115, 0.837, 0.245, 0.093, 0.767])),
            ("MagicBrush", r([0.123, 0.883, 0.261, 0.058, 0.871])),
            ("UltraEdit", r([-1.0, 0.868, -1.0, 0.088, 0.792])),
            ("EMU Edit", r([0.135, 0.897, 0.261, 0.052, 0.879])),
            ("UniReal", r([0.151, 0.903, 0.308, 0.081, 0.837])),
        ]
    } else if title.starts_with("DreamBench") {
        let r3 = |v: [f64; 3]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        vec![
            ("DreamBooth", r3([0.305, 0.803, 0.668])),
            ("BLIP-Diffusion", r3([0.302, 0.805, 0.670])),
            ("SuTI", r3([0.304, 0.819, 0.741])),
            ("OmniGen", r3([0.320, 0.810, 0.693])),
            ("UniReal", r3([0.326, 0.806, 0.702])),
        ]
    } else {
        Vec::new()
    }
}

/// `report.md`: per table, the paper's rows and this evaluation's means (with counts).
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# Evaluation: {}\n\n{} test rows: {} scored, {} skipped.\n\n",
        r.protocol.source(),
        r.rows,
        r.scored,
        r.skipped
    );
    for (title, metrics) in r.protocol.tables() {
        s.push_str(&format!(
            "## {title}\n\n| method | {} |\n|---|",
            metrics.iter().map(|m| m.label).collect::<Vec<_>>().join(" | ")
        ));
        s.push_str(&"---|".repeat(metrics.len()));
        s.push('\n');
        for (method, values) in published(title) {
            let cells: Vec<String> =
                values.iter().map(|v| v.map(|x| format!("{x:.3}")).unwrap_or("–".into())).collect();
            s.push_str(&format!("| {method} (paper) | {} |\n", cells.join(" | ")));
        }
        let ours: Vec<String> = metrics
            .iter()
            .map(|m| match (r.means.get(m.key), r.counts.get(m.key)) {
                (Some(v), Some(n)) => format!("**{v:.3}** (n={n})"),
                _ => "–".into(),
            })
            .collect();
        s.push_str(&format!("| **this run** | {} |\n\n", ours.join(" | ")));
    }
    if !r.missing_metrics.is_empty() {
        s.push_str("Metrics left out of scored samples:\n\n");
        for (k, whys) in &r.missing_metrics {
            for (why, n) in whys {
                s.push_str(&format!("- `{k}`: {why} ({n} samples)\n"));
            }
        }
        s.push('\n');
    }
    if !r.skipped_rows.is_empty() {
        s.push_str("Skipped samples (first 20; all in report.json):\n\n");
        for k in r.skipped_rows.iter().take(20) {
            s.push_str(&format!("- `{}`: {}\n", k.sample_id, k.reason));
        }
        s.push('\n');
    }
    s.push_str("Setup:\n\n");
    for (k, v) in &r.setup {
        s.push_str(&format!("- {k}: `{v}`\n"));
    }
    s.push_str(
        "\nThe paper's rows are transcribed from UniReal (arXiv 2412.07774) Tables 2 and 3 for reference; \
         they were computed with the published CLIP/DINO models on the full test sets (docs/evaluation.md).\n",
    );
    s
}
