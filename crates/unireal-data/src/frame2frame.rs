//! Frame2Frame: two frames of one shot and an instruction describing the change.
//!
//! One forward pass over the video: every frame goes through the cut detector at analysis
//! size; frames on a grid (`pairs.sample_every_s` from the shot start) become candidates and
//! are kept, still as decoded YUV, only while a later frame may pair with them; a pair is
//! scored when its second frame arrives (near-black fraction, SSIM at short side 256) and,
//! when kept, measured, encoded and captioned. Memory is bounded by the longest interval, not
//! by the video's length.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use image::{GrayImage, RgbImage};
use serde_json::json;
use unireal_annotate::{CaptionError, Captioner, Segmenter};
use unireal_core::{index_word, result_word, sample_id, ImageRole, Sample, SampleImage, Task};
use unireal_shards::{FailureKind, InputRecord, InputStatus};
use unireal_video::{ContentDetector, DecodedFrame, FrameConverter, ShotOptions, VideoError, VideoReader};
use unireal_vision::{fit_short_side, measure_change, near_black_fraction, ssim, HsvFrame};

use crate::captions::{Ask, CaptionPool, Deferred};
use crate::config::BuildConfig;
use crate::context::{round3, VideoContext};
use crate::inputs::{InputItem, Origin, NOT_A_VIDEO_EXTENSION};
use crate::objects::{ObjectStage, SegmentPool};

/// What one video gave.
pub struct VideoOutcome {
    pub record: InputRecord,
    pub samples: Vec<Sample>,
    /// Frames decoded (for progress and throughput).
    pub frames: u64,
}

/// Progress callbacks (frames decoded), called often; must be cheap.
pub trait Progress: Sync {
    fn frames(&self, n: u64);
}

impl Progress for () {
    fn frames(&self, _: u64) {}
}

struct Candidate {
    frame: DecodedFrame,
    /// Analysis-size RGB (motion, colour, near-black).
    small: RgbImage,
    /// Gray at short side `ssim_short_side`.
    gray: GrayImage,
    black: f64,
}

#[derive(Default)]
struct Tally {
    candidates: u64,
    pairs_scored: u64,
    too_similar: u64,
    unrelated: u64,
    too_dark: u64,
    too_still: u64,
    caption_errors: u64,
    last_caption_error: String,
    /// Whether any caption error was the endpoint's (down, timed out, rate-limited).
    caption_transient: bool,
}

fn record(item: &InputItem, status: InputStatus, reason: impl Into<String>, stats: serde_json::Value) -> InputRecord {
    InputRecord { stats, ..InputRecord::new(item.key.clone(), status, reason) }
}

/// Transient trouble (an annotator down) is retried by the next run; anything else is not.
fn kind_of(transient: bool) -> FailureKind {
    if transient {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    }
}

/// The models a build annotates with.
#[derive(Clone, Copy)]
pub struct Annotators<'a> {
    pub captioner: &'a dyn Captioner,
    /// Needed when an object family is on.
    pub segmenter: Option<&'a dyn Segmenter>,
}

/// Processes one video into the samples of every enabled family. Never panics on bad
/// input: every failure becomes the record's status and reason. `captions`, `segments`: the
/// build's request pools, for a remote captioner and segmenter.
pub(crate) fn process_video(
    item: &InputItem,
    cfg: &BuildConfig,
    ann: Annotators<'_>,
    (captions, segments): (Option<&CaptionPool>, Option<&SegmentPool>),
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> VideoOutcome {
    let none = |record: InputRecord| VideoOutcome { record, samples: vec![], frames: 0 };
    let null = serde_json::Value::Null;
    if item.origin == Origin::OtherExtension {
        return none(record(item, InputStatus::Skipped, NOT_A_VIDEO_EXTENSION, null));
    }
    let mut reader = match VideoReader::open(&item.path, cfg.decode_threads) {
        Ok(r) => r,
        // Probed by content: a file FFmpeg cannot read as video is not one.
        Err(e @ (VideoError::Open { .. } | VideoError::NoVideoStream { .. })) if item.origin == Origin::Probed => {
            return none(record(item, InputStatus::Skipped, format!("not a video: {e}"), null))
        }
        Err(e) => {
            let failed = record(item, InputStatus::Failed, e.to_string(), null);
            return none(InputRecord { kind: Some(FailureKind::Permanent), ..failed });
        }
    };
    let info = reader.info().clone();
    let info_json = json!({
        "container": info.container, "codec": info.codec, "width": info.width, "height": info.height,
        "rotation": info.rotation, "fps": round3(info.fps), "duration_s": info.duration_s.map(round3),
    });
    if info.width.min(info.height) < cfg.pairs.min_short_side {
        let reason = format!(
            "resolution {}x{} is below pairs.min_short_side {}",
            info.width, info.height, cfg.pairs.min_short_side
        );
        return VideoOutcome {
            record: record(item, InputStatus::Skipped, reason, json!({ "video": info_json })),
            samples: vec![],
            frames: 0,
        };
    }
    let video = VideoContext::new(item, cfg, (ann.captioner, captions), &info);
    let mut run = Run::new(&video);
    if let (true, Some(seg)) = (cfg.families.needs_objects(), ann.segmenter) {
        run.objects = Some(ObjectStage::new(&video, seg, segments));
    }
    let result = run.decode_all(&mut reader, progress, stop);
    run.collect_captions();
    if let Some(o) = &mut run.objects {
        o.finish();
        o.collect_captions();
    }
    let frames = run.frames;
    let mut stats = json!({
        "video": info_json,
        "frames": frames,
        "shots": run.shot,
        "candidates": run.tally.candidates,
        "pairs_scored": run.tally.pairs_scored,
        "rejected": {
            "too_similar": run.tally.too_similar, "unrelated": run.tally.unrelated,
            "too_dark": run.tally.too_dark, "too_still": run.tally.too_still,
        },
        "caption_errors": run.tally.caption_errors,
        "decode_errors": run.decode_errors_seen.unwrap_or_else(|| reader.decode_errors()),
    });
    if run.stopped_early {
        stats["stopped_at_max_pairs"] = json!(true);
    }
    let mut samples = std::mem::take(&mut run.samples);
    let mut object_error = None;
    let mut object_transient = false;
    // Control captions (`describe`) that failed: how many, and whether the endpoint was down.
    let (mut control_caption_errors, mut control_caption_transient) = (0, false);
    if let Some(o) = &mut run.objects {
        stats["objects"] = o.stats_json();
        samples.append(&mut o.samples);
        object_error = o.error.clone();
        object_transient = o.error_transient;
        (control_caption_errors, control_caption_transient) = (o.tally.caption_errors, o.tally.caption_transient);
    }
    let t = &run.tally;
    let mut kind = None;
    let (status, reason) = match result {
        // Interrupted: the build loop stops writing once `stop` is set, so this is never recorded.
        Ok(()) if stop.load(Ordering::Relaxed) => (InputStatus::Failed, "interrupted".to_string()),
        // The segmenter failed and nothing was kept: its error, not a decode error that came
        // while its answer was awaited, says whether a later run may succeed.
        _ if samples.is_empty() && object_error.is_some() => {
            kind = Some(kind_of(object_transient));
            (InputStatus::Failed, object_error.clone().unwrap_or_default())
        }
        Err(e) if samples.is_empty() => {
            kind = Some(FailureKind::Permanent);
            (InputStatus::Failed, e)
        }
        Err(e) => (InputStatus::Ok, format!("kept {} pair(s) decoded before an error: {e}", samples.len())),
        Ok(()) if samples.is_empty() => {
            let mut reason = if !cfg.families.enabled(Task::Frame2Frame) && control_caption_errors > 0 {
                format!("no sample: {control_caption_errors} caption request(s) of control samples failed")
            } else if !cfg.families.enabled(Task::Frame2Frame) {
                "no object found and no control sample made (see stats.objects)".to_string()
            } else if frames < 2 {
                format!("no qualifying pair: the video has {frames} frame(s)")
            } else if t.caption_errors > 0 {
                format!(
                    "no caption for any pair ({} captioner error(s)); last: {}",
                    t.caption_errors, t.last_caption_error
                )
            } else if t.pairs_scored == 0 {
                format!(
                    "no qualifying pair: no two candidate frames {} s apart inside one shot ({} frames, {} shot(s))",
                    cfg.pairs.intervals_s.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" or "),
                    frames,
                    run.shot
                )
            } else {
                format!(
                    "no qualifying pair among {} scored: {} too similar (SSIM >= {}), {} unrelated (SSIM < {}), {} too dark, {} too still",
                    t.pairs_scored, t.too_similar, cfg.pairs.ssim_max, t.unrelated, cfg.pairs.ssim_min, t.too_dark, t.too_still
                )
            };
            // Failed when a captioner failed; transient when it was the endpoint.
            if t.caption_errors > 0 || control_caption_errors > 0 {
                kind = Some(kind_of(t.caption_transient || control_caption_transient));
                if control_caption_errors > 0 && cfg.families.enabled(Task::Frame2Frame) {
                    reason
                        .push_str(&format!("; {control_caption_errors} caption request(s) of control samples failed"));
                }
            }
            let status = if kind.is_some() { InputStatus::Failed } else { InputStatus::Skipped };
            (status, reason)
        }
        Ok(()) => {
            // Samples made, but some lost: say so, and retry the input when an annotator was
            // down (the samples already written are kept; the others are added).
            let mut notes = vec![];
            if t.caption_errors > 0 {
                notes.push(format!(
                    "{} caption request(s) failed and their pairs were left out; last: {}",
                    t.caption_errors, t.last_caption_error
                ));
            }
            if control_caption_errors > 0 {
                notes
                    .push(format!("{control_caption_errors} control sample(s) left out: their caption request failed"));
            }
            if t.caption_transient || control_caption_transient {
                kind = Some(FailureKind::Transient);
            }
            if let Some(e) = &object_error {
                notes.push(format!("object analysis stopped: {e}"));
                if object_transient {
                    kind = Some(FailureKind::Transient);
                }
            }
            (InputStatus::Ok, notes.join("; "))
        }
    };
    VideoOutcome { record: InputRecord { kind, ..record(item, status, reason, stats) }, samples, frames }
}

struct Run<'a> {
    video: &'a VideoContext<'a>,
    cfg: &'a BuildConfig,
    conv: FrameConverter,
    detector: ContentDetector,
    analysis: (u32, u32),
    gray_size: (u32, u32),
    buffer: VecDeque<Candidate>,
    objects: Option<ObjectStage<'a>>,
    shot: u64,
    shot_start: (u64, f64),
    next_grid: f64,
    shot_pairs: usize,
    /// Frame indices of the last kept pair: the next pair starts at or after its second
    /// frame, so pairs of a shot do not overlap and spread over it.
    last_pair: Option<(u64, u64)>,
    /// The last pair's frame B, encoded: (frame index, JPEG).
    last_jpeg: Option<(u64, Vec<u8>)>,
    /// Decode errors up to the last frame analysed, when decoding ran ahead on its own thread
    /// and the analysis stopped first (else the reader's count).
    decode_errors_seen: Option<u32>,
    samples: Vec<Sample>,
    /// Pairs whose caption the pool has still to answer.
    deferred: Deferred,
    tally: Tally,
    frames: u64,
    stopped_early: bool,
}

impl<'a> Run<'a> {
    fn new(video: &'a VideoContext<'a>) -> Self {
        let (cfg, info) = (video.cfg, video.info);
        let opts = ShotOptions {
            threshold: cfg.shots.threshold,
            min_shot_frames: cfg.shots.min_shot_frames,
            analysis_width: cfg.shots.analysis_width,
        };
        Run {
            video,
            cfg,
            conv: FrameConverter::new(info),
            detector: ContentDetector::new(opts),
            analysis: unireal_video::analysis_size(info.width, info.height, cfg.shots.analysis_width),
            gray_size: fit_short_side(info.width, info.height, cfg.pairs.ssim_short_side),
            buffer: VecDeque::new(),
            objects: None,
            shot: 0,
            shot_start: (0, 0.0),
            next_grid: 0.0,
            shot_pairs: 0,
            last_pair: None,
            last_jpeg: None,
            decode_errors_seen: None,
            samples: vec![],
            deferred: Deferred::default(),
            tally: Tally::default(),
            frames: 0,
            stopped_early: false,
        }
    }

    fn convert(&mut self, f: &DecodedFrame, size: (u32, u32)) -> Result<RgbImage, String> {
        self.conv.rgb(f, size.0, size.1).map_err(|e| format!("frame {}: {e}", f.index))
    }

    /// With fewer workers than cores, decodes the video on a thread of its own, a few frames
    /// ahead of the analysis here, so that one video's decoding and analysis run side by side.
    /// (With a worker per core the cores are busy already, and handing frames between threads
    /// only costs: measured 5 % slower.)
    fn decode_all(
        &mut self,
        reader: &mut VideoReader,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        /// Decoded frames waiting for the analysis (each holds a decoder buffer).
        const AHEAD: usize = 2;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if self.cfg.workers == 0 { cores } else { self.cfg.workers };
        if workers >= cores {
            let frames = std::iter::from_fn(|| reader.next_frame().map_err(|e| e.to_string()).transpose());
            return self.analyse(frames, progress, stop);
        }
        std::thread::scope(|s| {
            // Each frame travels with the decoder's error count so far.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(DecodedFrame, u32), String>>(AHEAD);
            s.spawn(move || {
                // Ends at the end of the stream, at an error, or when the analysis stops
                // listening (it stopped early).
                while let Some(next) = reader.next_frame().map_err(|e| e.to_string()).transpose() {
                    let failed = next.is_err();
                    if tx.send(next.map(|f| (f, reader.decode_errors()))).is_err() || failed {
                        break;
                    }
                }
            });
            let (seen, ended) = (std::cell::Cell::new(0), std::cell::Cell::new(false));
            let (seen_ref, ended_ref) = (&seen, &ended);
            // Owns the receiver: dropped when the analysis returns, which stops the decoder.
            let frames = std::iter::from_fn(move || match rx.recv() {
                Ok(Ok((frame, errors))) => {
                    seen_ref.set(errors);
                    Some(Ok(frame))
                }
                Ok(Err(e)) => {
                    ended_ref.set(true);
                    Some(Err(e))
                }
                Err(_) => {
                    ended_ref.set(true);
                    None
                }
            });
            let result = self.analyse(frames, progress, stop);
            if !ended.get() {
                // The analysis stopped first: the decoder may have run a few frames further;
                // its errors there are not this video's, as on the one-thread path.
                self.decode_errors_seen = Some(seen.get());
            }
            result
        })
    }

    fn analyse(
        &mut self,
        frames: impl IntoIterator<Item = Result<DecodedFrame, String>>,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let max_interval = self.cfg.pairs.intervals_s.iter().cloned().fold(0.0, f64::max);
        let step = self.cfg.pairs.sample_every_s;
        let mut unreported = 0u64;
        for frame in frames {
            let frame = frame?;
            self.frames = frame.index + 1;
            unreported += 1;
            if unreported >= 16 {
                progress.frames(unreported);
                unreported = 0;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            let sampled = self
                .conv
                .rgb_sampled(&frame, self.analysis.0, self.analysis.1)
                .map_err(|e| format!("frame {}: {e}", frame.index))?;
            let is_cut = self.detector.push(frame.index, HsvFrame::from_rgb(&sampled));
            let mut small = LazySmall::new(self.analysis);
            if frame.index == 0 || is_cut {
                if is_cut {
                    self.shot += 1;
                }
                self.buffer.clear();
                self.shot_start = (frame.index, frame.time_s);
                self.next_grid = frame.time_s;
                self.shot_pairs = 0;
            }
            if let Some(o) = &mut self.objects {
                o.push(&mut self.conv, &frame, &mut small, frame.index == 0 || is_cut, self.shot)?;
            }
            let pairs_done = !self.cfg.families.enabled(Task::Frame2Frame)
                || self.samples.len() + self.deferred.len() >= self.cfg.pairs.max_pairs_per_video;
            if pairs_done {
                if self.objects.as_ref().is_none_or(|o| o.done()) {
                    self.stopped_early = self.cfg.families.enabled(Task::Frame2Frame);
                    break;
                }
                continue;
            }
            // Frames on the grid become candidates.
            if frame.time_s + 1e-6 < self.next_grid {
                continue;
            }
            let k = ((frame.time_s - self.shot_start.1) / step).floor() + 1.0;
            self.next_grid = self.shot_start.1 + k * step;
            self.tally.candidates += 1;
            let gray = self
                .conv
                .gray(&frame, self.gray_size.0, self.gray_size.1)
                .map_err(|e| format!("frame {}: {e}", frame.index))?;
            let small = small.take(&mut self.conv, &frame)?;
            let black = near_black_fraction(&small, self.cfg.pairs.black_level);
            let cand = Candidate { frame, small, gray, black };
            // Drop candidates too old to pair with anything still to come.
            while self.buffer.front().is_some_and(|c| cand.frame.time_s - c.frame.time_s > max_interval + step) {
                self.buffer.pop_front();
            }
            if self.shot_pairs < self.cfg.pairs.pairs_per_shot {
                self.try_pairs(&cand)?;
            }
            self.buffer.push_back(cand);
        }
        progress.frames(unreported);
        Ok(())
    }

    /// Tries `b` as the second frame of a pair with a buffered candidate, interval by interval.
    fn try_pairs(&mut self, b: &Candidate) -> Result<(), String> {
        let step = self.cfg.pairs.sample_every_s;
        for &interval in &self.cfg.pairs.intervals_s {
            let target = b.frame.time_s - interval;
            let Some(ai) = (0..self.buffer.len())
                .filter(|&i| (self.buffer[i].frame.time_s - target).abs() <= step / 2.0 + 1e-6)
                .min_by(|&i, &j| {
                    (self.buffer[i].frame.time_s - target)
                        .abs()
                        .total_cmp(&(self.buffer[j].frame.time_s - target).abs())
                })
            else {
                continue;
            };
            let a = &self.buffer[ai];
            if let Some((la, lb)) = self.last_pair {
                if a.frame.index < lb || a.frame.index <= la {
                    continue;
                }
            }
            self.tally.pairs_scored += 1;
            let p = &self.cfg.pairs;
            let a = &self.buffer[ai];
            if a.black >= p.max_black_fraction || b.black >= p.max_black_fraction {
                self.tally.too_dark += 1;
                continue;
            }
            let s = ssim(&a.gray, &b.gray);
            if s >= p.ssim_max {
                self.tally.too_similar += 1;
                continue;
            }
            if s < p.ssim_min {
                self.tally.unrelated += 1;
                continue;
            }
            let mut change = measure_change(&a.small, &b.small, &a.gray, &b.gray, p.black_level);
            change.ssim = s;
            if change.motion_score < p.min_motion {
                self.tally.too_still += 1;
                continue;
            }
            if self.make_sample(ai, b, interval, change)? {
                self.last_pair = Some((self.buffer[ai].frame.index, b.frame.index));
                self.shot_pairs += 1;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Encodes, captions and records one pair; false when the captioner failed.
    fn make_sample(
        &mut self,
        ai: usize,
        b: &Candidate,
        interval: f64,
        change: unireal_vision::ChangeMeasures,
    ) -> Result<bool, String> {
        let a_frame = &self.buffer[ai].frame;
        let (ia, ta) = (a_frame.index, a_frame.time_s);
        let video = self.video;
        let id = sample_id(Task::Frame2Frame, "video", &[video.key(), &ia.to_string(), &b.frame.index.to_string()]);
        let (w, h) = video.out_size;
        // Consecutive pairs often share a frame (B of one is A of the next): encoded once.
        let ja = match self.last_jpeg.take() {
            Some((i, j)) if i == ia => j,
            _ => video.jpeg(&self.conv.rgb(&self.buffer[ai].frame, w, h).map_err(|e| format!("frame {ia}: {e}"))?)?,
        };
        let jb = video.jpeg(&self.convert(&b.frame, video.out_size)?)?;
        self.last_jpeg = Some((b.frame.index, jb.clone()));
        let seed = u64::from_str_radix(&id[..16], 16).unwrap_or(0);
        let answer = video.ask(Ask::Caption {
            input: video.key().into(),
            first: ja.clone(),
            second: jb.clone(),
            change: change.clone(),
            sidecar: video.item.caption.clone(),
            seed,
        });
        let g = change.motion.global;
        let meta = json!({
            "video": video.key(),
            "shot": self.shot,
            "shot_start_frame": self.shot_start.0,
            "frames": [ia, b.frame.index],
            "times_s": [round3(ta), round3(b.frame.time_s)],
            "interval_s": interval,
            "fps": round3(video.info.fps),
            "source_size": [video.info.width, video.info.height],
            "rotation": video.info.rotation,
            "ssim": round3(change.ssim),
            "black_fraction": [round3(change.black_a), round3(change.black_b)],
            "motion_score": round3(change.motion_score),
            "global_motion": {"dx": round3(g.dx), "dy": round3(g.dy), "zoom": round3(g.zoom), "inliers": round3(change.motion.inlier_fraction)},
            "moving_region": change.motion.region.map(|r| json!({
                "bbox": r.bbox.map(round3), "area": round3(r.area), "dx": round3(r.dx), "dy": round3(r.dy),
                "color": unireal_vision::color_name(r.color),
            })),
            "brightness_delta": round3(change.brightness_delta),
            "warmth_delta": round3(change.warmth_delta),
            "caption_source": match (video.captioner.name(), video.item.caption.is_some()) {
                ("sidecar", false) => "builtin",
                (name, _) => name,
            },
        });
        let sample = Sample {
            split: video.split(&id),
            sample_id: id,
            task: Task::Frame2Frame,
            source: "video".into(),
            // The caption completes it.
            base_prompt: format!("Turn {} into {}: ", index_word(1), result_word(1)),
            context_prompt: video.context_prompt(Task::Frame2Frame, None),
            images: vec![
                SampleImage { role: ImageRole::Canvas, encoding: "jpeg".into(), bytes: ja, width: w, height: h },
                SampleImage { role: ImageRole::Output, encoding: "jpeg".into(), bytes: jb, width: w, height: h },
            ],
            meta,
        };
        match self.deferred.push(sample, answer) {
            None => Ok(true),
            Some(Ok(sample)) => {
                self.samples.push(sample);
                Ok(true)
            }
            Some(Err(e)) => {
                self.caption_failed(&e);
                Ok(false)
            }
        }
    }

    fn caption_failed(&mut self, e: &CaptionError) {
        self.tally.caption_errors += 1;
        self.tally.last_caption_error = e.to_string();
        self.tally.caption_transient |= e.is_transient();
    }

    /// The pairs the pool has answered for, in the order they were found.
    fn collect_captions(&mut self) {
        for r in self.deferred.resolve() {
            match r {
                Ok(sample) => self.samples.push(sample),
                Err(e) => self.caption_failed(&e),
            }
        }
    }
}

/// A frame's analysis-size RGB (swscale's fast bilinear), made on first use: only frames on
/// the candidate and background grids need it, while cut detection samples every frame.
pub struct LazySmall {
    size: (u32, u32),
    img: Option<RgbImage>,
}

impl LazySmall {
    pub(crate) fn new(size: (u32, u32)) -> Self {
        LazySmall { size, img: None }
    }

    pub(crate) fn get(&mut self, conv: &mut FrameConverter, frame: &DecodedFrame) -> Result<&RgbImage, String> {
        if self.img.is_none() {
            let img =
                conv.rgb_fast(frame, self.size.0, self.size.1).map_err(|e| format!("frame {}: {e}", frame.index))?;
            self.img = Some(img);
        }
        Ok(self.img.as_ref().expect("made above"))
    }

    pub(crate) fn take(mut self, conv: &mut FrameConverter, frame: &DecodedFrame) -> Result<RgbImage, String> {
        self.get(conv, frame)?;
        Ok(self.img.expect("made above"))
    }
}
