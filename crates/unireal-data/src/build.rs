//! `unireal-data build`: inputs → samples of every enabled family → shards, across videos in parallel.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use unireal_annotate::{build_captioner, build_segmenter};
use unireal_shards::driver::{drive, writer_options, Bars, RunSpec};
use unireal_shards::{Manifest, Partition};

use crate::captions::with_caption_pool;
use crate::config::BuildConfig;
use crate::frame2frame::{process_video, Annotators, Progress};
use crate::inputs::expand_inputs;
use crate::objects::with_segment_pool;

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Shards(#[from] unireal_shards::ShardError),
    #[error("{0}")]
    Captioner(#[from] unireal_annotate::CaptionError),
    #[error("objects.segmenter: {0}")]
    Segmenter(#[from] unireal_annotate::SegmentError),
    #[error("interrupted: finished shards and inputs are kept in the manifest; run the same command again to resume")]
    Interrupted,
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Start over: remove the previous manifest and shards in the output directory.
    pub force: bool,
    /// No progress bars (logs still go to stderr).
    pub quiet: bool,
    /// Build only partition `index` of `count` (a Slurm array task), into
    /// `output/partition-IIII-of-NNNN/`.
    pub partition: Option<Partition>,
    /// Inputs recorded as failed for a permanent reason are tried again too (those with
    /// transient trouble always are).
    pub retry_failed: bool,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Where the shards went (`output`, or its partition directory).
    pub output: std::path::PathBuf,
    pub manifest: Manifest,
    /// Inputs processed in this run (the others were done by an earlier run).
    pub processed: usize,
    pub already_done: usize,
    pub new_samples: u64,
    pub frames: u64,
    pub elapsed: Duration,
}

/// Frames decoded, on the run's `frames` counter.
struct FramesBar(ProgressBar);

impl Progress for FramesBar {
    fn frames(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Runs a build to the end. `stop` is checked between frames: when it is set, the open shard
/// is discarded (its inputs are redone on the next run) and `Interrupted` is returned.
pub fn run_build(cfg: &BuildConfig, opts: &BuildOptions, stop: Arc<AtomicBool>) -> Result<BuildSummary, BuildError> {
    cfg.validate().map_err(BuildError::Config)?;
    let captioner = build_captioner(&cfg.captioner)?;
    let segmenter = match cfg.families.needs_objects() {
        true => Some(build_segmenter(&cfg.objects.segmenter)?),
        false => None,
    };
    run_build_with(cfg, opts, stop, Annotators { captioner: &*captioner, segmenter: segmenter.as_deref() })
}

/// [`run_build`] with these annotators instead of the config's `captioner` and
/// `objects.segmenter`: a captioner or segmenter written in Rust (the `Captioner` and
/// `Segmenter` traits of unireal-annotate). `ann.segmenter` is needed when an object family is on.
pub fn run_build_with(
    cfg: &BuildConfig,
    opts: &BuildOptions,
    stop: Arc<AtomicBool>,
    ann: Annotators<'_>,
) -> Result<BuildSummary, BuildError> {
    cfg.validate().map_err(BuildError::Config)?;
    if cfg.families.needs_objects() && ann.segmenter.is_none() {
        return Err(BuildError::Config("an object family is on, but no segmenter was given".into()));
    }
    let started = Instant::now();
    let mut items =
        expand_inputs(&cfg.inputs, &cfg.video_extensions, cfg.probe_all_files).map_err(BuildError::Config)?;
    let out_dir = match opts.partition {
        Some(p) => {
            Partition::check_root(&cfg.output).map_err(BuildError::Config)?;
            let all = items.len();
            items.retain(|i| p.owns(&i.key));
            eprintln!("partition {} of {}: {} of {all} input(s)", p.index, p.count, items.len());
            p.dir(&cfg.output)
        }
        None => cfg.output.clone(),
    };
    let spec = RunSpec {
        out: &out_dir,
        writer: unireal_shards::WriterOptions {
            // `video_extensions` and `probe_all_files` may change between runs.
            redo_skipped: vec![crate::inputs::NOT_A_VIDEO_EXTENSION.into()],
            ..writer_options(
                cfg.shards.target_size_mb,
                cfg.shards.zstd_level,
                cfg.fingerprint(),
                format!("unireal-data {}", env!("CARGO_PKG_VERSION")),
            )
        },
        force: opts.force,
        workers: cfg.workers,
        thread_name: "unireal-video",
        noun: "input",
        retry_failed: opts.retry_failed,
    };
    let mut bars = Bars::new(opts.quiet, "videos");
    let frames_bar = FramesBar(bars.counter("frames"));
    let mut frames = 0u64;
    // A remote captioner and segmenter are asked by pools shared by the workers (crate::pool).
    let done = with_caption_pool(ann.captioner, ann.captioner.concurrency(), &stop, |captions| {
        with_segment_pool(ann.segmenter, &stop, |segments| {
            drive(
                &spec,
                &items,
                |i| &i.key,
                &stop,
                &bars,
                |item| process_video(item, cfg, ann, (captions, segments), &frames_bar, &stop),
                |out| {
                    frames += out.frames;
                    (out.record, out.samples)
                },
            )
        })
    })
    .map_err(|e| e.into_error(BuildError::Config, BuildError::Shards, BuildError::Interrupted))?;
    Ok(BuildSummary {
        output: out_dir,
        manifest: done.manifest,
        processed: done.processed,
        already_done: done.already_done,
        new_samples: done.new_samples,
        frames,
        elapsed: started.elapsed(),
    })
}
