//! Segmenters: find objects in the frames of one shot and track them from frame to frame.
//!
//! - `motion` (built-in, no model): the moving regions against the shot's background model;
//! - `command`: an external program speaking JSON lines (docs/segmenters.md), e.g. an adapter
//!   around Grounded-SAM 2 or Kosmos-2 + SAM 2;
//! - `sidecar`: per-frame PNG masks in the DAVIS layout, `DIR/<video stem>/<frame:05>.png`,
//!   one colour (or gray level) per object, black background.
//!
//! Every segmenter returns raw masks; the toolkit's mask filters are applied by the caller,
//! the same for all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::{GrayImage, Luma, RgbImage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use unireal_vision::mask::{self, Mask};
use unireal_vision::segment::{match_objects, moving_objects, object_stats};
use unireal_vision::{Background, MotionSegOptions};

use crate::external::{CommandClient, CommandConfig, CommandError};

/// One frame to segment, at the resolution masks are wanted in.
pub struct SegFrame<'a> {
    /// Decoded frame index in the video.
    pub index: u64,
    pub time_s: f64,
    pub image: &'a RgbImage,
    /// The shot's background model aligned to this frame, when one was built.
    pub background: Option<&'a Background>,
}

/// The frames of one shot to segment together (frame 0 is frame A).
pub struct SegmentRequest<'a> {
    /// The input (video key), for messages and sidecar lookup.
    pub input: &'a str,
    pub frames: &'a [SegFrame<'a>],
}

/// One object followed over the request's frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// What the segmenter called it (grounded phrase), if anything.
    pub phrase: Option<String>,
    /// Per requested frame: its mask (frame-sized) or None where it was not found.
    pub masks: Vec<Option<Mask>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("the motion segmenter needs a background model for frame {0}")]
    NoBackground(u64),
    #[error("segmenter config: {0}")]
    Config(String),
    /// The build was stopped before the request was sent.
    #[error("the build was stopped before the request was sent")]
    Interrupted,
}

impl SegmentError {
    /// Whether the external program, not the input, failed (could not start, crashed, timed
    /// out): a later run may well succeed. A malformed answer or an error it reports about
    /// the input is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SegmentError::Command(
                CommandError::Spawn { .. } | CommandError::Crashed { .. } | CommandError::Timeout { .. }
            ) | SegmentError::Interrupted
        )
    }
}

/// Finds and tracks objects.
pub trait Segmenter: Send + Sync {
    /// Short name recorded in each sample's `meta.segmenter`.
    fn name(&self) -> &'static str;
    fn segment(&self, req: &SegmentRequest<'_>) -> Result<Vec<Track>, SegmentError>;
    /// How many `segment` requests the build may have in flight at once, shared by all its
    /// workers (1: each worker asks in turn, waiting for every answer).
    fn concurrency(&self) -> usize {
        1
    }
    /// An external condition map (depth, pose, …) of one frame, when the segmenter can make
    /// one; None when it cannot.
    fn condition(&self, _kind: &str, _input: &str, _frame: &SegFrame<'_>) -> Option<Result<GrayImage, SegmentError>> {
        None
    }
}

/// `objects.segmenter` in the build config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SegmenterConfig {
    /// Built-in motion segmentation.
    Motion(MotionSegOptions),
    /// An external command (JSON lines over stdin/stdout).
    Command(CommandConfig),
    /// DAVIS-layout PNG masks.
    Sidecar {
        /// The folder holding one sub-folder of masks per video (named by the video's stem).
        dir: PathBuf,
    },
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig::Motion(MotionSegOptions::default())
    }
}

impl SegmenterConfig {
    /// Whether the segmenter itself needs a background model.
    pub fn needs_background(&self) -> bool {
        matches!(self, SegmenterConfig::Motion(_))
    }
}

/// Builds the segmenter a config names.
pub fn build_segmenter(cfg: &SegmenterConfig) -> Result<Box<dyn Segmenter>, SegmentError> {
    Ok(match cfg {
        SegmenterConfig::Motion(o) => {
            if o.closing % 2 == 0 {
                return Err(SegmentError::Config("closing: must be odd".into()));
            }
            Box::new(MotionSegmenter { opts: o.clone(), max_shift: 0.3 })
        }
        SegmenterConfig::Command(c) => Box::new(CommandSegmenter { client: CommandClient::new(c.clone())? }),
        SegmenterConfig::Sidecar { dir } => {
            if !dir.is_dir() {
                return Err(SegmentError::Config(format!("sidecar dir {} is not a directory", dir.display())));
            }
            Box::new(SidecarSegmenter { dir: dir.clone() })
        }
    })
}

/// Moving regions against the background, matched from frame 0 to every other frame.
pub struct MotionSegmenter {
    pub opts: MotionSegOptions,
    /// Largest centre shift between matched objects, fraction of the diagonal.
    pub max_shift: f64,
}

impl Segmenter for MotionSegmenter {
    fn name(&self) -> &'static str {
        "motion"
    }

    fn segment(&self, req: &SegmentRequest<'_>) -> Result<Vec<Track>, SegmentError> {
        let mut per_frame = Vec::with_capacity(req.frames.len());
        for f in req.frames {
            let bg = f.background.ok_or(SegmentError::NoBackground(f.index))?;
            let objs = moving_objects(f.image, bg, &self.opts);
            let stats: Vec<_> = objs.iter().map(|m| object_stats(f.image, m)).collect();
            per_frame.push((objs, stats));
        }
        Ok(link(per_frame, self.max_shift))
    }
}

/// Links per-frame objects into tracks: frame 0's objects matched into each later frame;
/// objects of later frames left unmatched become tracks of their own.
fn link(per_frame: Vec<(Vec<Mask>, Vec<unireal_vision::ObjectStats>)>, max_shift: f64) -> Vec<Track> {
    let n = per_frame.len();
    let Some((first_masks, first_stats)) = per_frame.first() else { return vec![] };
    let mut tracks: Vec<Track> = first_masks
        .iter()
        .map(|m| {
            let mut masks = vec![None; n];
            masks[0] = Some(m.clone());
            Track { phrase: None, masks }
        })
        .collect();
    for (k, (masks, stats)) in per_frame.iter().enumerate().skip(1) {
        let matched = match_objects(first_stats, stats, max_shift);
        let mut used = vec![false; masks.len()];
        for (i, j) in matched {
            tracks[i].masks[k] = Some(masks[j].clone());
            used[j] = true;
        }
        for (m, _) in masks.iter().zip(&used).filter(|(_, u)| !**u) {
            let mut ms = vec![None; n];
            ms[k] = Some(m.clone());
            tracks.push(Track { phrase: None, masks: ms });
        }
    }
    tracks
}

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, SegmentError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "unireal-seg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)
            .map_err(|e| SegmentError::File { path: p.display().to_string(), message: e.to_string() })?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), SegmentError> {
    img.save(path).map_err(|e| SegmentError::File { path: path.display().to_string(), message: e.to_string() })
}

/// Reads a mask PNG (any non-black pixel is the object), scaled to `(w, h)`.
fn read_mask(path: &str, w: u32, h: u32) -> Result<Mask, SegmentError> {
    let img = image::open(path).map_err(|e| SegmentError::File { path: path.into(), message: e.to_string() })?;
    let gray = GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let p = image::GenericImageView::get_pixel(&img, x, y).0;
        Luma([if p[0] | p[1] | p[2] != 0 { 255 } else { 0 }])
    });
    Ok(mask::resize_mask(&gray, w, h))
}

/// A box `[x0, y0, x1, y1]` in pixels as a mask.
fn box_mask(b: &[f64], w: u32, h: u32) -> Option<Mask> {
    let [x0, y0, x1, y1] = <[f64; 4]>::try_from(b).ok()?;
    Some(GrayImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
        Luma([if fx >= x0 && fx < x1 && fy >= y0 && fy < y1 { 255 } else { 0 }])
    }))
}

/// The external-command segmenter.
pub struct CommandSegmenter {
    pub client: CommandClient,
}

fn frame_json(f: &SegFrame<'_>, path: &Path) -> Value {
    json!({
        "path": path.display().to_string(), "index": f.index, "time_s": f.time_s,
        "width": f.image.width(), "height": f.image.height(),
    })
}

impl CommandSegmenter {
    /// The tracks of a `segment` answer for frames of the given sizes (masks read from the
    /// PNGs it names, or boxes drawn), or a malformed-answer error that quotes it.
    pub fn tracks(&self, v: &Value, sizes: &[(u32, u32)]) -> Result<Vec<Track>, SegmentError> {
        let bad = |message: String| {
            SegmentError::Command(CommandError::Malformed {
                program: self.client.program().into(),
                message,
                line: v.to_string().chars().take(200).collect(),
            })
        };
        let objects = v.get("objects").and_then(Value::as_array).ok_or_else(|| bad("no \"objects\" list".into()))?;
        let mut tracks = Vec::new();
        for (o, obj) in objects.iter().enumerate() {
            let masks = obj.get("masks").and_then(Value::as_array);
            let boxes = obj.get("boxes").and_then(Value::as_array);
            if masks.is_none() && boxes.is_none() {
                return Err(bad(format!("objects[{o}] has neither \"masks\" nor \"boxes\"")));
            }
            let mut per = Vec::with_capacity(sizes.len());
            for (k, &(w, h)) in sizes.iter().enumerate() {
                let m = match (masks.and_then(|m| m.get(k)).and_then(Value::as_str), boxes.and_then(|b| b.get(k))) {
                    (Some(""), _) => return Err(bad(format!("objects[{o}].masks[{k}] is an empty path"))),
                    (Some(path), _) => Some(read_mask(path, w, h)?),
                    (None, Some(Value::Array(b))) => {
                        let b: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
                        Some(
                            box_mask(&b, w, h)
                                .ok_or_else(|| bad(format!("objects[{o}].boxes[{k}] is not 4 numbers")))?,
                        )
                    }
                    _ => None,
                };
                per.push(m);
            }
            let phrase = obj.get("phrase").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
            tracks.push(Track { phrase: phrase.map(String::from), masks: per });
        }
        Ok(tracks)
    }
}

impl Segmenter for CommandSegmenter {
    fn name(&self) -> &'static str {
        "command"
    }

    /// `max_processes`: that many requests in flight, each in its own process (0: one per
    /// build worker, each worker waiting for its answers).
    fn concurrency(&self) -> usize {
        self.client.max_processes().max(1)
    }

    fn segment(&self, req: &SegmentRequest<'_>) -> Result<Vec<Track>, SegmentError> {
        let dir = TempDir::new()?;
        let mut frames = Vec::new();
        for (k, f) in req.frames.iter().enumerate() {
            let p = dir.0.join(format!("frame{k}.png"));
            save_png(f.image, &p)?;
            frames.push(frame_json(f, &p));
        }
        let v = self.client.call(json!({
            "op": "segment", "video": req.input, "frames": frames, "out_dir": dir.0.display().to_string(),
        }))?;
        let sizes: Vec<(u32, u32)> = req.frames.iter().map(|f| f.image.dimensions()).collect();
        self.tracks(&v, &sizes)
    }

    fn condition(&self, kind: &str, input: &str, frame: &SegFrame<'_>) -> Option<Result<GrayImage, SegmentError>> {
        let run = || -> Result<GrayImage, SegmentError> {
            let dir = TempDir::new()?;
            let p = dir.0.join("frame.png");
            save_png(frame.image, &p)?;
            let out = dir.0.join(format!("{kind}.png"));
            let v = self.client.call(json!({
                "op": "condition", "kind": kind, "video": input, "frame": frame_json(frame, &p),
                "out": out.display().to_string(),
            }))?;
            let path = v.get("map").and_then(Value::as_str).ok_or_else(|| {
                SegmentError::Command(CommandError::Malformed {
                    program: self.client.program().into(),
                    message: "no \"map\" path".into(),
                    line: v.to_string(),
                })
            })?;
            let img =
                image::open(path).map_err(|e| SegmentError::File { path: path.into(), message: e.to_string() })?;
            let (w, h) = frame.image.dimensions();
            Ok(unireal_vision::resize_gray(&img.to_luma8(), w, h))
        };
        Some(run())
    }
}

/// DAVIS-layout sidecar masks.
pub struct SidecarSegmenter {
    pub dir: PathBuf,
}

impl Segmenter for SidecarSegmenter {
    fn name(&self) -> &'static str {
        "sidecar"
    }

    fn segment(&self, req: &SegmentRequest<'_>) -> Result<Vec<Track>, SegmentError> {
        let stem = Path::new(req.input).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let folder = self.dir.join(&stem);
        if !folder.is_dir() {
            return Err(SegmentError::File {
                path: folder.display().to_string(),
                message: "no mask folder for this video".into(),
            });
        }
        // Object id (its colour) → per-frame mask.
        let mut objects: BTreeMap<[u8; 3], Vec<Option<Mask>>> = BTreeMap::new();
        for (k, f) in req.frames.iter().enumerate() {
            let path = folder.join(format!("{:05}.png", f.index));
            if !path.exists() {
                continue;
            }
            let img = image::open(&path)
                .map_err(|e| SegmentError::File { path: path.display().to_string(), message: e.to_string() })?
                .to_rgb8();
            let mut ids: BTreeMap<[u8; 3], GrayImage> = BTreeMap::new();
            for (x, y, p) in img.enumerate_pixels() {
                if p.0 != [0, 0, 0] {
                    ids.entry(p.0).or_insert_with(|| GrayImage::new(img.width(), img.height())).put_pixel(
                        x,
                        y,
                        Luma([255]),
                    );
                }
            }
            let (w, h) = f.image.dimensions();
            for (id, m) in ids {
                objects.entry(id).or_insert_with(|| vec![None; req.frames.len()])[k] =
                    Some(mask::resize_mask(&m, w, h));
            }
        }
        Ok(objects.into_values().map(|masks| Track { phrase: None, masks }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keeps_unmatched_objects_as_their_own_tracks() {
        let m = |x: u32| {
            GrayImage::from_fn(40, 40, |i, j| {
                Luma([if (x..x + 8).contains(&i) && (10..18).contains(&j) { 255 } else { 0 }])
            })
        };
        let img = RgbImage::from_pixel(40, 40, image::Rgb([200, 0, 0]));
        let f0 = vec![m(2)];
        let f1 = vec![m(5), m(30)];
        let s0: Vec<_> = f0.iter().map(|x| object_stats(&img, x)).collect();
        let s1: Vec<_> = f1.iter().map(|x| object_stats(&img, x)).collect();
        let t = link(vec![(f0, s0), (f1, s1)], 0.3);
        assert_eq!(t.len(), 2);
        assert!(t[0].masks.iter().all(Option::is_some));
        assert!(t[1].masks[0].is_none() && t[1].masks[1].is_some());
    }

    #[test]
    fn configs_read_from_yaml() {
        let c: SegmenterConfig = serde_json::from_str(r#"{"kind": "motion", "diff_level": 25}"#).unwrap();
        assert!(matches!(c, SegmenterConfig::Motion(ref o) if o.diff_level == 25));
        let c: SegmenterConfig =
            serde_json::from_str(r#"{"kind": "command", "command": ["x"], "timeout_s": 5}"#).unwrap();
        assert!(matches!(c, SegmenterConfig::Command(_)));
        assert!(serde_json::from_str::<SegmenterConfig>(r#"{"kind": "motion", "nope": 1}"#).is_err());
        assert!(build_segmenter(&SegmenterConfig::Sidecar { dir: "/nonexistent/masks".into() }).is_err());
    }
}
