//! Objects in video: the analysed pairs of a shot, their background model, segmentation and
//! tracking, and the samples of the object families built from them (families.rs).
//!
//! Streaming, in the same pass as Frame2Frame: frames on a `background.step_s` grid of each
//! shot are kept at `mask_side` (a ring bounded by the background window); frame A of an
//! analysed pair is taken every `every_s` and B `interval_s` later, both converted at the
//! stored size. Once decoding has passed B by `background.window_s` (or the shot ends), the
//! pair is processed: background model aligned to A and to B, segmentation, the toolkit's
//! mask filters, tracking A → B, and the families.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use image::RgbImage;
use serde_json::json;
use unireal_annotate::{object_phrase, SegFrame, SegmentError, SegmentRequest, Segmenter, Track};
use unireal_core::Sample;
use unireal_video::{DecodedFrame, FrameConverter};
use unireal_vision::mask::{self, Mask};
use unireal_vision::segment::{median_background, object_stats, warp_to_target};
use unireal_vision::{estimate_motion, fit_long_side, Background, GlobalMotion};

use crate::captions::Deferred;
use crate::context::{PairFrame, Seen, TrackedObject, VideoContext};
use crate::families::{self, PairContext};
use crate::frame2frame::LazySmall;
use crate::pool::{Pending, Pool};

/// A segmentation request, owned, so that it can wait in the pool's queue: the input's key
/// and, per frame, its index, time, image and background.
pub(crate) struct SegmentAsk {
    input: String,
    frames: Vec<(u64, f64, RgbImage, Option<Background>)>,
    /// Set once the video's object analysis has stopped: the request is not sent.
    cancelled: Arc<AtomicBool>,
}

impl SegmentAsk {
    fn run(&self, segmenter: &dyn Segmenter) -> Result<Vec<Track>, SegmentError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(SegmentError::Interrupted);
        }
        let frames: Vec<SegFrame<'_>> = self
            .frames
            .iter()
            .map(|(index, time_s, image, bg)| SegFrame {
                index: *index,
                time_s: *time_s,
                image,
                background: bg.as_ref(),
            })
            .collect();
        segmenter.segment(&SegmentRequest { input: &self.input, frames: &frames })
    }
}

/// The segmentation request threads (crate::pool), for a segmenter with `concurrency()` > 1.
pub(crate) type SegmentPool = Pool<SegmentAsk, Result<Vec<Track>, SegmentError>>;

/// Runs `f` with a pool of `segmenter.concurrency()` request threads asking it, or with none
/// (each video asks in turn) when that is 1 or there is no segmenter.
pub(crate) fn with_segment_pool<R>(
    segmenter: Option<&dyn Segmenter>,
    stop: &AtomicBool,
    f: impl FnOnce(Option<&SegmentPool>) -> R,
) -> R {
    let Some(seg) = segmenter else { return f(None) };
    Pool::with("segment", seg.concurrency(), stop, &|ask: &SegmentAsk| ask.run(seg), interrupted, f)
}

fn interrupted() -> Result<Vec<Track>, SegmentError> {
    Err(SegmentError::Interrupted)
}

/// A pair between its background model and its samples: its segmentation is being answered
/// (None: no background, so no segmentation; control samples only). Pairs are completed in the
/// order they were found, so the samples are the same however long the answers take.
struct Awaiting {
    shot: u64,
    a: PairFrame,
    b: PairFrame,
    bg_b: Option<Background>,
    /// The background model failed (counted when the pair is completed).
    no_background: bool,
    answer: Option<Pending<Result<Vec<Track>, SegmentError>>>,
    /// `tally.pairs` when the request went out: the count had the pairs been segmented in turn.
    pairs_then: u64,
}

/// A frame of the background ring.
struct RingFrame {
    index: u64,
    time_s: f64,
    /// Analysis size (motion estimation).
    small: RgbImage,
    /// `mask_side` (background and masks).
    seg: RgbImage,
}

/// Whether a motion moves no pixel of a `w × h` frame by half a pixel or more.
fn negligible(m: &GlobalMotion, w: u32, h: u32) -> bool {
    let corner = (w.max(h) as f64 / 2.0) * (m.zoom - 1.0).abs();
    (m.dx * w as f64).abs() + corner < 0.5 && (m.dy * h as f64).abs() + corner < 0.5
}

struct Job {
    shot: u64,
    a: PairFrame,
    b: Option<PairFrame>,
    b_time: f64,
}

/// Counts recorded in the input's `stats.objects`.
#[derive(Default, Debug)]
pub struct ObjectTally {
    pub pairs: u64,
    pub pairs_with_objects: u64,
    /// Per analysed frame (A and B of every segmented pair): index, objects kept, the largest
    /// one's area.
    pub per_frame: Vec<(u64, usize, f64)>,
    pub objects: u64,
    pub tracked: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
    pub segment_errors: u64,
    pub caption_errors: u64,
    /// Whether any caption error was the endpoint's.
    pub caption_transient: bool,
    pub samples: BTreeMap<&'static str, u64>,
}

pub struct ObjectStage<'a> {
    video: &'a VideoContext<'a>,
    segmenter: &'a dyn Segmenter,
    /// The build's segmentation pool, for a segmenter answering several requests at once.
    segments: Option<&'a SegmentPool>,
    awaiting: VecDeque<Awaiting>,
    /// Set at the first error, so that the pool skips this video's queued requests.
    cancelled: Arc<AtomicBool>,
    seg_size: (u32, u32),
    ring: VecDeque<RingFrame>,
    next_ring: f64,
    shot: u64,
    shot_start: f64,
    next_job: f64,
    shot_jobs: usize,
    jobs: usize,
    pending: Vec<Job>,
    pub samples: Vec<Sample>,
    /// Control samples whose caption the pool has still to answer.
    deferred: Deferred,
    pub tally: ObjectTally,
    /// The first segmenter error: object analysis stops for this video.
    pub error: Option<String>,
    /// Whether `error` came from the segmenter program failing (down, crashed, timed out)
    /// rather than from this video.
    pub error_transient: bool,
}

impl<'a> ObjectStage<'a> {
    pub(crate) fn new(
        video: &'a VideoContext<'a>,
        segmenter: &'a dyn Segmenter,
        segments: Option<&'a SegmentPool>,
    ) -> Self {
        let info = video.info;
        ObjectStage {
            video,
            segmenter,
            segments,
            awaiting: VecDeque::new(),
            cancelled: Arc::new(AtomicBool::new(false)),
            seg_size: fit_long_side(info.width, info.height, video.cfg.objects.mask_side),
            ring: VecDeque::new(),
            next_ring: 0.0,
            shot: 0,
            shot_start: 0.0,
            next_job: 0.0,
            shot_jobs: 0,
            jobs: 0,
            pending: vec![],
            samples: vec![],
            deferred: Deferred::default(),
            tally: ObjectTally::default(),
            error: None,
            error_transient: false,
        }
    }

    /// Whether this stage wants no more frames.
    pub fn done(&self) -> bool {
        self.error.is_some() || (self.jobs >= self.video.cfg.objects.max_per_video && self.pending.is_empty())
    }

    /// Takes one decoded frame (`small`: its analysis-size RGB, made if needed). `new_shot` at
    /// the first frame and after every cut.
    pub fn push(
        &mut self,
        conv: &mut FrameConverter,
        frame: &DecodedFrame,
        small: &mut LazySmall,
        new_shot: bool,
        shot: u64,
    ) -> Result<(), String> {
        // Answers that came meanwhile: a segmenter error stops the analysis as soon as it is known.
        self.complete_ready(false);
        if self.error.is_some() {
            return Ok(());
        }
        let o = &self.video.cfg.objects;
        let bgc = &o.background;
        let t = frame.time_s;
        if new_shot {
            self.finish_shot();
            self.ring.clear();
            self.shot = shot;
            self.shot_start = t;
            self.next_ring = t;
            self.next_job = t + o.interval_s / 2.0;
            self.shot_jobs = 0;
        }
        let eps = 1e-6;
        let want_ring = t + eps >= self.next_ring;
        let want_a = t + eps >= self.next_job && self.shot_jobs < o.max_per_shot && self.jobs < o.max_per_video;
        let want_b: Vec<usize> = (0..self.pending.len())
            .filter(|&i| self.pending[i].b.is_none() && t + eps >= self.pending[i].b_time)
            .collect();
        if !(want_ring || want_a || !want_b.is_empty()) {
            self.process_ready(t);
            return Ok(());
        }
        let small = small.get(conv, frame)?;
        let seg =
            conv.rgb(frame, self.seg_size.0, self.seg_size.1).map_err(|e| format!("frame {}: {e}", frame.index))?;
        // Frames A and B join the ring too (they are frames of their own background window).
        if want_ring {
            let k = ((t - self.shot_start) / bgc.step_s).floor() + 1.0;
            self.next_ring = self.shot_start + k * bgc.step_s;
        }
        self.ring.push_back(RingFrame { index: frame.index, time_s: t, small: small.clone(), seg: seg.clone() });
        if want_a || !want_b.is_empty() {
            let (w, h) = self.video.out_size;
            let full = conv.rgb(frame, w, h).map_err(|e| format!("frame {}: {e}", frame.index))?;
            let pf = || PairFrame {
                index: frame.index,
                time_s: t,
                full: full.clone(),
                seg: seg.clone(),
                small: small.clone(),
            };
            for &i in &want_b {
                self.pending[i].b = Some(pf());
            }
            if want_a {
                self.pending.push(Job { shot: self.shot, a: pf(), b: None, b_time: t + o.interval_s });
                self.shot_jobs += 1;
                self.jobs += 1;
                self.tally.pairs += 1;
                let k = ((t - self.shot_start) / o.every_s).floor() + 1.0;
                self.next_job = self.shot_start + o.interval_s / 2.0 + k * o.every_s;
            }
        }
        // The ring keeps what a pending or future pair may still need.
        let oldest = self.pending.iter().map(|j| j.a.time_s).fold(t, f64::min) - bgc.window_s - bgc.step_s;
        while self.ring.front().is_some_and(|r| r.time_s < oldest) {
            self.ring.pop_front();
        }
        self.process_ready(t);
        Ok(())
    }

    /// Processes pairs whose background window has been decoded.
    fn process_ready(&mut self, t: f64) {
        let w = self.video.cfg.objects.background.window_s;
        let mut i = 0;
        while i < self.pending.len() {
            let ready = self.pending[i].b.as_ref().is_some_and(|b| t >= b.time_s + w);
            if ready {
                let job = self.pending.remove(i);
                self.process(job);
            } else {
                i += 1;
            }
        }
    }

    /// At the end of the video: the last shot's pairs, then every answer waited for.
    pub fn finish(&mut self) {
        self.finish_shot();
        self.complete_ready(true);
    }

    /// At a cut or the end of the video: pairs with a B are processed with the frames there
    /// are; pairs without one are dropped.
    fn finish_shot(&mut self) {
        for job in std::mem::take(&mut self.pending) {
            if job.b.is_some() {
                self.process(job);
            } else {
                *self.tally.skipped.entry("shot_ended_before_b").or_default() += 1;
            }
        }
    }

    /// The background of `target` from up to `max_frames` ring frames (evenly spread) in the
    /// pair's window, each aligned to the target by its camera motion to it (estimated at
    /// analysis size; not warped when it moves no pixel by half a pixel).
    fn background(&self, target: &PairFrame, lo: f64, hi: f64) -> Result<Background, String> {
        let b = &self.video.cfg.objects.background;
        let (w, h) = self.seg_size;
        let window: Vec<&RingFrame> =
            self.ring.iter().filter(|r| r.time_s >= lo - 1e-6 && r.time_s <= hi + 1e-6).collect();
        let n = window.len();
        let take = n.min(b.max_frames.max(1));
        let mut frames = Vec::with_capacity(take);
        for j in 0..take {
            let r = window[if take == 1 { 0 } else { j * (n - 1) / (take - 1) }];
            if r.index != target.index {
                let m = estimate_motion(&r.small, &target.small).global;
                if m.dx.abs() > b.max_camera_shift
                    || m.dy.abs() > b.max_camera_shift
                    || (m.zoom - 1.0).abs() > b.max_zoom_change
                {
                    continue;
                }
                if !negligible(&m, w, h) {
                    let (img, valid) = warp_to_target(&r.seg, &m);
                    let full = valid.as_raw().iter().all(|&v| v != 0);
                    frames.push((Cow::Owned(img), (!full).then_some(valid)));
                    continue;
                }
            }
            frames.push((Cow::Borrowed(&r.seg), None));
        }
        if frames.len() < b.min_frames {
            return Err(format!("{} of {} window frames align with frame {}", frames.len(), n, target.index));
        }
        Ok(median_background(&frames, b.agree_level))
    }

    /// Backgrounds of A and B; B reuses A's when the camera did not move between them.
    fn backgrounds(&self, a: &PairFrame, b: &PairFrame, lo: f64, hi: f64) -> Result<(Background, Background), String> {
        let bg_a = self.background(a, lo, hi)?;
        let (w, h) = self.seg_size;
        let still = negligible(&estimate_motion(&a.small, &b.small).global, w, h);
        let bg_b = if still { bg_a.clone() } else { self.background(b, lo, hi)? };
        Ok((bg_a, bg_b))
    }

    /// A pair whose window is decoded: its backgrounds, then its segmentation asked for
    /// (through the pool when there is one); completed in turn by `complete_ready`.
    fn process(&mut self, job: Job) {
        if self.error.is_some() {
            return;
        }
        let Some(b) = job.b else { return };
        let a = job.a;
        let w = self.video.cfg.objects.background.window_s;
        let (lo, hi) = (a.time_s - w, b.time_s + w);
        let needs_bg = self.video.cfg.objects.segmenter.needs_background()
            || self.video.cfg.families.enabled(unireal_core::Task::Insertion)
            || self.video.cfg.families.enabled(unireal_core::Task::ObjectAdd);
        let (bg_a, bg_b) = match needs_bg {
            true => match self.backgrounds(&a, &b, lo, hi) {
                Ok((x, y)) => (Some(x), Some(y)),
                Err(_) => (None, None),
            },
            false => (None, None),
        };
        let no_background = needs_bg && bg_a.is_none();
        // Without a background the motion segmenter finds nothing; control samples need no
        // objects and are still made.
        let answer = if bg_a.is_none() && self.video.cfg.objects.segmenter.needs_background() {
            None
        } else if let Some(pool) = self.segments {
            let frames =
                vec![(a.index, a.time_s, a.seg.clone(), bg_a), (b.index, b.time_s, b.seg.clone(), bg_b.clone())];
            let ask = SegmentAsk { input: self.video.key().to_string(), frames, cancelled: self.cancelled.clone() };
            Some(Pool::ask(Some(pool), ask, |q| q.run(self.segmenter)))
        } else {
            let frames = [
                SegFrame { index: a.index, time_s: a.time_s, image: &a.seg, background: bg_a.as_ref() },
                SegFrame { index: b.index, time_s: b.time_s, image: &b.seg, background: bg_b.as_ref() },
            ];
            Some(Pending::Now(self.segmenter.segment(&SegmentRequest { input: self.video.key(), frames: &frames })))
        };
        self.awaiting.push_back(Awaiting {
            shot: job.shot,
            a,
            b,
            bg_b,
            no_background,
            answer,
            pairs_then: self.tally.pairs,
        });
        // No more pairs waiting than the pool has threads: memory stays bounded.
        let limit = self.segmenter.concurrency().max(1);
        while self.awaiting.len() > limit {
            let next = self.awaiting.pop_front().expect("non-empty");
            self.complete(next);
        }
        self.complete_ready(false);
    }

    /// Completes the waiting pairs in order, up to the first whose answer is still to come
    /// (`wait`: all of them).
    fn complete_ready(&mut self, wait: bool) {
        while self.awaiting.front().is_some_and(|p| wait || p.answer.as_ref().is_none_or(Pending::ready)) {
            let next = self.awaiting.pop_front().expect("non-empty");
            self.complete(next);
        }
    }

    /// A pair's masks filtered and tracked, and its samples. After the first segmenter error
    /// the video's remaining pairs are left out, as if they had never been asked for.
    fn complete(&mut self, p: Awaiting) {
        if self.error.is_some() {
            return;
        }
        let Awaiting { shot, a, b, bg_b, no_background, answer, pairs_then } = p;
        if no_background {
            *self.tally.skipped.entry("no_background").or_default() += 1;
        }
        let objects = match answer.map(Pending::wait) {
            None => vec![],
            Some(Err(e)) => {
                self.tally.segment_errors += 1;
                self.error = Some(format!("segmenter {}: {e}", self.segmenter.name()));
                self.error_transient = e.is_transient();
                self.stopped(pairs_then);
                return;
            }
            Some(Ok(tracks)) => {
                let objects = self.filter_and_track(tracks, &a, &b);
                if !objects.is_empty() {
                    self.tally.pairs_with_objects += 1;
                }
                self.tally.objects += objects.iter().filter(|o| o.a.is_some()).count() as u64;
                self.tally.tracked += objects.iter().filter(|o| o.a.is_some() && o.b.is_some()).count() as u64;
                objects
            }
        };
        let ctx = PairContext::new((self.video, self.segmenter), (&a, &b), shot, bg_b.as_ref(), objects);
        let out = families::build(&ctx);
        self.take(out);
        if self.error.is_some() {
            // An external condition map failed.
            self.stopped(pairs_then);
        }
    }

    /// After the first error: the pairs counted as if segmented in turn (none found after
    /// this pair went out), and this video's requests still queued in the pool not sent.
    fn stopped(&mut self, pairs_then: u64) {
        self.tally.pairs = pairs_then;
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn take(&mut self, mut out: families::Built) {
        for s in out.samples {
            self.keep(s);
        }
        self.deferred.append(&mut out.deferred);
        self.tally.caption_errors += out.caption_errors;
        self.tally.caption_transient |= out.caption_transient;
        for why in out.skipped {
            *self.tally.skipped.entry(why).or_default() += 1;
        }
        if let Some(e) = out.error {
            self.tally.segment_errors += 1;
            self.error.get_or_insert(e);
        }
    }

    fn keep(&mut self, s: Sample) {
        *self.tally.samples.entry(s.task.as_str()).or_default() += 1;
        self.samples.push(s);
    }

    /// The control samples the pool has answered for, in the order they were made.
    pub(crate) fn collect_captions(&mut self) {
        for r in self.deferred.resolve() {
            match r {
                Ok(s) => self.keep(s),
                Err(e) => {
                    self.tally.caption_errors += 1;
                    self.tally.caption_transient |= e.is_transient();
                }
            }
        }
    }

    /// Applies the mask filters in each frame (tracks in the segmenter's order) and names
    /// the objects that survive in A or B.
    fn filter_and_track(
        &mut self,
        tracks: Vec<unireal_annotate::Track>,
        a: &PairFrame,
        b: &PairFrame,
    ) -> Vec<TrackedObject> {
        let f = &self.video.cfg.objects.filters;
        let mut kept: Vec<[Option<Mask>; 2]> = vec![[None, None]; tracks.len()];
        for k in 0..2 {
            let (idx, cands): (Vec<usize>, Vec<Mask>) =
                tracks.iter().enumerate().filter_map(|(i, t)| Some((i, t.masks.get(k)?.clone()?))).unzip();
            for (i, r) in idx.into_iter().zip(mask::filter_masks(&cands, f)) {
                match r {
                    Ok(m) => kept[i][k] = Some(m),
                    Err(why) => *self.tally.rejected.entry(why.as_str()).or_default() += 1,
                }
            }
        }
        for (k, index) in [a.index, b.index].into_iter().enumerate() {
            let areas: Vec<f64> = kept.iter().filter_map(|m| m[k].as_ref()).map(mask::area_fraction).collect();
            self.tally.per_frame.push((index, areas.len(), areas.iter().cloned().fold(0.0, f64::max)));
        }
        let mut out = Vec::new();
        for (t, [ma, mb]) in tracks.into_iter().zip(kept) {
            let seen_a = ma.map(|m| Seen::new(object_stats(&a.seg, &m), m));
            let seen_b = mb.map(|m| Seen::new(object_stats(&b.seg, &m), m));
            let Some(named) = seen_a.as_ref().or(seen_b.as_ref()).map(|s| &s.stats) else { continue };
            let phrase = t.phrase.clone().unwrap_or_else(|| object_phrase(named));
            out.push(TrackedObject { phrase, given_phrase: t.phrase, a: seen_a, b: seen_b });
        }
        out
    }

    /// `stats.objects` of the input's record.
    pub fn stats_json(&self) -> serde_json::Value {
        let t = &self.tally;
        json!({
            "segmenter": self.segmenter.name(),
            "pairs": t.pairs, "pairs_with_objects": t.pairs_with_objects,
            "frames_analysed": t.per_frame.len(),
            "frames_with_objects": t.per_frame.iter().filter(|f| f.1 > 0).count(),
            "frames": t.per_frame.iter().map(|(i, n, a)| json!({"frame": i, "objects": n, "largest_area": (a * 1e4).round() / 1e4})).collect::<Vec<_>>(),
            "objects": t.objects, "tracked": t.tracked,
            "rejected_masks": t.rejected, "skipped_pairs": t.skipped,
            "segment_errors": t.segment_errors, "caption_errors": t.caption_errors,
            "samples": t.samples,
        })
    }
}
