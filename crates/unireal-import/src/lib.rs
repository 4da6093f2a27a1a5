//! Expert datasets, from the files a user downloaded in their native layout, into shards of
//! the same contract as the video build (`unireal-data import FORMAT PATH --out DIR` calls
//! [`run_import`]). No FFmpeg: this crate links no video code.
//!
//! Every format is split into *units* (a Parquet row group, a chunk of lines of a list, a
//! subject folder, a chunk of references): units are processed in parallel, each unit's rows
//! go to the writer together with its record, and a unit is the grain of resume — a unit in
//! the manifest is done, a unit not in it is redone. Memory is bounded by a unit. A bad row
//! (undecodable image, missing file, broken polygon, malformed line) is recorded in its
//! unit's `stats.bad` and skipped; a unit that cannot be read at all is `failed`.
//!
//! Roles, prompts and context tags of each format: docs/data-format.md ("Imported sets"); the
//! driver (resume, workers, progress, Ctrl-C) is the video build's, `unireal_shards::driver`.

mod folders;
mod hf;
mod refcoco;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use unireal_core::{
    context_prompt, sample_id, task_context, ContextTag, ImageRole, Sample, SampleImage, Split, Style, Task,
};
use unireal_shards::driver::{drive, writer_options, Bars, RunSpec};
use unireal_shards::{InputRecord, InputStatus, Manifest};

pub use refcoco::{polygon_area, rasterize_polygons, rle_decode, rle_from_string};

/// The importable formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Instructpix2pix,
    Ultraedit,
    Magicbrush,
    EmuEdit,
    Vitonhd,
    Refcoco,
    Dreambench,
    Omnigen,
    Images,
}

impl Format {
    pub const ALL: [Format; 9] = [
        Format::Instructpix2pix,
        Format::Ultraedit,
        Format::Magicbrush,
        Format::EmuEdit,
        Format::Vitonhd,
        Format::Refcoco,
        Format::Dreambench,
        Format::Omnigen,
        Format::Images,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Instructpix2pix => "instructpix2pix",
            Format::Ultraedit => "ultraedit",
            Format::Magicbrush => "magicbrush",
            Format::EmuEdit => "emu-edit",
            Format::Vitonhd => "vitonhd",
            Format::Refcoco => "refcoco",
            Format::Dreambench => "dreambench",
            Format::Omnigen => "omnigen",
            Format::Images => "images",
        }
    }

    /// The style of the set's images and the task whose row of [`task_context`] gives its
    /// context tags (unless `context` overrides them).
    fn context(self) -> (Style, Task) {
        match self {
            Format::Instructpix2pix | Format::Ultraedit => (Style::Synthetic, Task::Edit),
            Format::Magicbrush | Format::EmuEdit => (Style::Realistic, Task::Edit),
            Format::Vitonhd => (Style::Realistic, Task::TryOn),
            // Its rows are multi_object samples and are prompted as the model saw multi_object
            // in training.
            Format::Dreambench => (Style::Realistic, Task::MultiObject),
            Format::Refcoco => (Style::Realistic, Task::Seg),
            Format::Images => (Style::Realistic, Task::TextToImage),
            // OmniGen's X1 mixes generated and real images and every task: neither a style nor
            // a task phrase is claimed (t2i's row adds none).
            Format::Omnigen => (Style::Unstated, Task::TextToImage),
        }
    }

    /// The context tags of the set's images unless `context` overrides them.
    fn default_context(self) -> Vec<ContextTag> {
        let (style, task) = self.context();
        task_context(task, style, None)
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            format!("unknown format `{s}` (expected one of: {})", Format::ALL.map(|f| f.as_str()).join(", "))
        })
    }
}

/// `unireal-data import` options (`--set key=value`, or a YAML file with `--config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The `source` column (default: the format's name).
    pub source: Option<String>,
    /// Context tags (`realistic`, `synthetic`, `static_scene`, …) replacing the format's.
    pub context: Option<Vec<ContextTag>>,
    /// refcoco: the COCO image folder (train2014); default `PATH/../coco/train2014`, then
    /// `PATH/images`.
    pub images_dir: Option<PathBuf>,
    /// refcoco: the references pickle inside PATH.
    pub refs: String,
    /// Images larger than this (long side) are scaled down and re-encoded; smaller JPEG/PNG
    /// images are stored as they are.
    pub max_side: u32,
    pub jpeg_quality: u8,
    /// For sets without their own split: the fraction held out as `val`, by a stable hash.
    pub val_fraction: f64,
    /// Rows per unit for list-like formats (JSONL, image folders, RefCOCO references).
    pub unit_rows: usize,
    /// Import at most this many units (0: all), to try a set out.
    pub max_units: usize,
    /// Units processed at once (0: one per core).
    pub workers: usize,
    pub target_size_mb: f64,
    pub zstd_level: i32,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            source: None,
            context: None,
            images_dir: None,
            refs: "refs(unc).p".into(),
            max_side: 1024,
            jpeg_quality: 90,
            val_fraction: 0.0,
            unit_rows: 1000,
            max_units: 0,
            workers: 0,
            target_size_mb: 256.0,
            zstd_level: 3,
        }
    }
}

impl ImportConfig {
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 5] = [
            (self.max_side >= 16, "max_side: must be at least 16"),
            ((1..=100).contains(&self.jpeg_quality), "jpeg_quality: must lie in 1..=100"),
            ((0.0..=1.0).contains(&self.val_fraction), "val_fraction: must lie in [0, 1]"),
            (self.unit_rows >= 1, "unit_rows: must be at least 1"),
            (
                self.target_size_mb > 0.0 && (1..=22).contains(&self.zstd_level),
                "target_size_mb / zstd_level: must be positive / 1..=22",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, m)) => Err(m.to_string()),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Shards(#[from] unireal_shards::ShardError),
    #[error("interrupted: finished shards and units are kept in the manifest; run the same command again to resume")]
    Interrupted,
}

pub(crate) fn input_err(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Input { path: path.display().to_string(), message: message.into() }
}

/// One unit of work: its manifest key, and what the format needs to find it.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub key: String,
    pub file: PathBuf,
    /// Row group, chunk or subject index.
    pub part: usize,
    /// Rows of the chunk (list formats): start..end.
    pub rows: (usize, usize),
}

/// What a unit gave.
#[derive(Default)]
pub(crate) struct UnitOut {
    pub samples: Vec<Sample>,
    pub rows: u64,
    /// (row identity, reason) of the rows left out.
    pub bad: Vec<(String, String)>,
    /// The unit could not be read at all.
    pub fatal: Option<String>,
}

impl UnitOut {
    pub fn bad(&mut self, row: impl Into<String>, reason: impl Into<String>) {
        self.bad.push((row.into(), reason.into()));
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        UnitOut { fatal: Some(message.into()), ..Default::default() }
    }
}

/// A format's reader.
pub(crate) trait Importer: Sync {
    /// The units of the input, in a stable order.
    fn units(&self) -> Result<Vec<Unit>, ImportError>;
    /// Reads one unit into samples; never panics on bad input.
    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut;
}

/// What every importer uses to make samples.
pub(crate) struct Ctx {
    pub format: Format,
    pub source: String,
    pub cfg: ImportConfig,
    pub root: PathBuf,
}

impl Ctx {
    pub fn context(&self) -> String {
        context_prompt(self.cfg.context.as_deref().unwrap_or(&self.format.default_context()))
    }

    /// A stable id from the task and the row's identity in the set.
    pub fn id(&self, task: Task, parts: &[&str]) -> String {
        sample_id(task, &self.source, parts)
    }

    /// The split for sets without their own.
    pub fn hashed_split(&self, id: &str) -> Split {
        if unireal_shards::unit_hash(&format!("split:{id}")) < self.cfg.val_fraction {
            Split::Val
        } else {
            Split::Train
        }
    }

    /// A path relative to the input root, for ids and meta.
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root).unwrap_or(p).to_string_lossy().replace('\\', "/")
    }

    /// Decodes an image (so that a broken one is a bad row) and stores it: as it is when it is
    /// a JPEG or PNG within `max_side`, else scaled and re-encoded.
    pub fn image(&self, role: ImageRole, bytes: Vec<u8>) -> Result<SampleImage, String> {
        let fmt = image::guess_format(&bytes).map_err(|e| format!("not an image: {e}"))?;
        let img = image::load_from_memory_with_format(&bytes, fmt).map_err(|e| format!("does not decode: {e}"))?;
        let (w, h) = (img.width(), img.height());
        let encoding = match fmt {
            image::ImageFormat::Jpeg => Some("jpeg"),
            image::ImageFormat::Png => Some("png"),
            _ => None,
        };
        if let (Some(enc), true) = (encoding, w.max(h) <= self.cfg.max_side) {
            return Ok(SampleImage { role, encoding: enc.into(), bytes, width: w, height: h });
        }
        let (nw, nh) = unireal_vision::fit_long_side(w, h, self.cfg.max_side);
        let rgb = unireal_vision::resize_rgb(&img.to_rgb8(), nw, nh);
        let jpeg = unireal_vision::encode::jpeg(&rgb, self.cfg.jpeg_quality)?;
        Ok(SampleImage { role, encoding: "jpeg".into(), bytes: jpeg, width: nw, height: nh })
    }

    /// A gray mask stored as PNG.
    pub fn mask_image(&self, m: &image::GrayImage) -> Result<SampleImage, String> {
        Ok(SampleImage {
            role: ImageRole::Output,
            encoding: "png".into(),
            bytes: unireal_vision::encode::png_gray(m)?,
            width: m.width(),
            height: m.height(),
        })
    }

    /// Reads a file of the set as an image of `role`.
    pub fn image_file(&self, role: ImageRole, path: &Path) -> Result<SampleImage, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", self.rel(path)))?;
        self.image(role, bytes).map_err(|e| format!("{}: {e}", self.rel(path)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        task: Task,
        id: String,
        split: Split,
        base_prompt: String,
        images: Vec<SampleImage>,
        meta: serde_json::Value,
    ) -> Sample {
        Sample {
            sample_id: id,
            task,
            source: self.source.clone(),
            split,
            base_prompt,
            context_prompt: self.context(),
            images,
            meta,
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub force: bool,
    pub quiet: bool,
    /// Import only the units of partition `index` of `count` (a Slurm array task), into
    /// `out/partition-IIII-of-NNNN/`; the union of all partitions is the single import.
    pub partition: Option<unireal_shards::Partition>,
    /// Units recorded as failed are imported again (their rows already written are kept).
    pub retry_failed: bool,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub manifest: Manifest,
    /// The shard directory written: `out`, or its partition's folder.
    pub output: PathBuf,
    pub processed: usize,
    pub already_done: usize,
    pub new_samples: u64,
    pub bad_rows: u64,
    pub elapsed: Duration,
}

fn importer(format: Format, root: &Path, cfg: &ImportConfig) -> Result<Box<dyn Importer>, ImportError> {
    Ok(match format {
        Format::Magicbrush if root.is_dir() && folders::magicbrush_test_dir(root).is_some() => {
            Box::new(folders::MagicBrushTest::new(&folders::magicbrush_test_dir(root).expect("checked"))?)
        }
        Format::Instructpix2pix | Format::Ultraedit | Format::Magicbrush | Format::EmuEdit => {
            Box::new(hf::HfParquet::new(format, root)?)
        }
        Format::Vitonhd => Box::new(folders::VitonHd::new(root)?),
        Format::Dreambench => Box::new(folders::DreamBench::new(root)?),
        Format::Omnigen => Box::new(folders::OmniGen::new(root, cfg.unit_rows)?),
        Format::Images => Box::new(folders::Images::new(root, cfg.unit_rows)?),
        Format::Refcoco => Box::new(refcoco::RefCoco::new(root, cfg)?),
    })
}

/// Imports `path` (a file or folder in the set's layout) into the shard directory `out`.
pub fn run_import(
    format: Format,
    path: &Path,
    out: &Path,
    cfg: &ImportConfig,
    opts: &ImportOptions,
    stop: Arc<AtomicBool>,
) -> Result<ImportSummary, ImportError> {
    cfg.validate().map_err(ImportError::Config)?;
    let started = Instant::now();
    if !path.exists() {
        return Err(input_err(path, "no such file or directory"));
    }
    let root = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let imp = importer(format, path, cfg)?;
    let mut units = imp.units()?;
    if units.is_empty() {
        return Err(input_err(path, format!("nothing to import: no files of the {} layout found", format.as_str())));
    }
    if cfg.max_units > 0 {
        units.truncate(cfg.max_units);
    }
    // After `max_units`, so that the partitions of a trial import add up to the trial import.
    let out = match opts.partition {
        Some(p) => {
            unireal_shards::Partition::check_root(out).map_err(ImportError::Config)?;
            let all = units.len();
            units.retain(|u| p.owns(&u.key));
            eprintln!("partition {} of {}: {} of {all} unit(s)", p.index, p.count, units.len());
            p.dir(out)
        }
        None => out.to_path_buf(),
    };
    let ctx = Ctx {
        format,
        source: cfg.source.clone().unwrap_or_else(|| format.as_str().to_string()),
        cfg: cfg.clone(),
        root,
    };
    let fp = json!({"format": format.as_str(), "source": ctx.source, "context": cfg.context, "max_side": cfg.max_side,
                    "jpeg_quality": cfg.jpeg_quality, "val_fraction": cfg.val_fraction, "unit_rows": cfg.unit_rows, "refs": cfg.refs});
    let spec = RunSpec {
        out: &out,
        writer: writer_options(
            cfg.target_size_mb,
            cfg.zstd_level,
            unireal_shards::fingerprint(&fp),
            format!("unireal-data {} import {}", env!("CARGO_PKG_VERSION"), format.as_str()),
        ),
        force: opts.force,
        workers: cfg.workers,
        thread_name: "unireal-import",
        noun: "unit",
        retry_failed: opts.retry_failed,
    };
    let bars = Bars::new(opts.quiet, format.as_str());
    let mut bad_rows = 0u64;
    let done = drive(
        &spec,
        &units,
        |u| &u.key,
        &stop,
        &bars,
        |u| {
            let out = imp.process(u, &ctx);
            (unit_record(u, &out), out)
        },
        |(record, out)| {
            bad_rows += out.bad.len() as u64;
            (record, out.samples)
        },
    )
    .map_err(|e| e.into_error(ImportError::Config, ImportError::Shards, ImportError::Interrupted))?;
    Ok(ImportSummary {
        manifest: done.manifest,
        output: out,
        processed: done.processed,
        already_done: done.already_done,
        new_samples: done.new_samples,
        bad_rows,
        elapsed: started.elapsed(),
    })
}

fn unit_record(unit: &Unit, out: &UnitOut) -> InputRecord {
    const SHOWN: usize = 20;
    let bad: Vec<_> = out.bad.iter().take(SHOWN).map(|(row, why)| json!({"row": row, "reason": why})).collect();
    let stats = json!({
        "rows": out.rows, "imported": out.samples.len(), "bad_rows": out.bad.len(), "bad": bad,
    });
    let (status, reason) = match (&out.fatal, out.samples.is_empty(), out.bad.len()) {
        (Some(e), _, _) => (InputStatus::Failed, e.clone()),
        (None, true, 0) => (InputStatus::Skipped, "no rows".to_string()),
        (None, true, n) => (InputStatus::Failed, format!("all {n} row(s) bad; first: {}", out.bad[0].1)),
        (None, false, 0) => (InputStatus::Ok, String::new()),
        (None, false, n) => {
            (InputStatus::Ok, format!("{n} bad row(s) skipped; first: {}: {}", out.bad[0].0, out.bad[0].1))
        }
    };
    // A unit fails on its own data (unreadable file, every row bad): permanent.
    let kind = (status == InputStatus::Failed).then_some(unireal_shards::FailureKind::Permanent);
    InputRecord { path: unit.key.clone(), status, reason, samples: 0, stats, kind }
}

/// Files under `dir` (recursively, sorted) whose extension is one of `exts`.
pub(crate) fn files_with(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| input_err(&d, e.to_string()))?;
        for e in rd {
            let p = e.map_err(|e| input_err(&d, e.to_string()))?.path();
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| exts.iter().any(|e| x.to_string_lossy().eq_ignore_ascii_case(e))) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Chunks of `n` items as units over `file`.
pub(crate) fn chunk_units(label: &str, file: &Path, total: usize, n: usize) -> Vec<Unit> {
    (0..total.div_ceil(n))
        .map(|k| {
            let (a, b) = (k * n, ((k + 1) * n).min(total));
            Unit {
                key: format!("{label}#{a}-{}", b.saturating_sub(1)),
                file: file.to_path_buf(),
                part: k,
                rows: (a, b),
            }
        })
        .collect()
}
