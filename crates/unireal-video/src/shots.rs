//! Shot-cut detection with a content detector in PySceneDetect's family: the mean absolute
//! difference of consecutive frames in HSV (hue, saturation, value averaged), compared to a
//! threshold, with a minimum shot length.

use std::path::Path;

use serde_json::json;
use unireal_vision::HsvFrame;

use crate::decode::{FrameConverter, VideoError, VideoReader};

/// Cut-detector settings. The defaults are PySceneDetect's `detect-content` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotOptions {
    /// Content score (0–255 scale) at or above which a frame starts a new shot.
    pub threshold: f64,
    /// A cut is only accepted this many frames or more after the previous one.
    pub min_shot_frames: u64,
    /// Width of the analysis frames (height follows the aspect ratio).
    pub analysis_width: u32,
}

impl Default for ShotOptions {
    fn default() -> Self {
        ShotOptions { threshold: 27.0, min_shot_frames: 15, analysis_width: 256 }
    }
}

/// Streaming cut detector: feed frames in order, learn whether each starts a new shot.
#[derive(Debug, Clone)]
pub struct ContentDetector {
    opts: ShotOptions,
    prev: Option<HsvFrame>,
    last_cut: u64,
    /// The latest content score, for diagnostics.
    pub last_score: f64,
}

impl ContentDetector {
    pub fn new(opts: ShotOptions) -> Self {
        ContentDetector { opts, prev: None, last_cut: 0, last_score: 0.0 }
    }

    /// Feeds frame `index` (analysis size, HSV). Returns true if it is the first frame of a new
    /// shot. Frame 0 starts the first shot and is not reported as a cut.
    pub fn push(&mut self, index: u64, frame: HsvFrame) -> bool {
        let cut = match &self.prev {
            None => false,
            Some(prev) => {
                self.last_score = prev.content_delta(&frame);
                self.last_score >= self.opts.threshold
                    && index.saturating_sub(self.last_cut) >= self.opts.min_shot_frames
            }
        };
        if cut {
            self.last_cut = index;
        }
        self.prev = Some(frame);
        cut
    }
}

/// Analysis size for a display size: `analysis_width` wide (never wider than the video),
/// height from the aspect ratio, both even.
pub fn analysis_size(w: u32, h: u32, analysis_width: u32) -> (u32, u32) {
    let aw = analysis_width.min(w).max(2);
    let ah = ((h as f64 * aw as f64 / w as f64).round() as u32).max(2);
    (aw & !1, ah & !1)
}

/// The cuts of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotReport {
    pub fps: f64,
    pub frames: u64,
    /// 0-based index of the first frame of each new shot.
    pub cuts_frame: Vec<u64>,
    /// Presentation time of those frames, seconds.
    pub cuts_s: Vec<f64>,
}

impl ShotReport {
    pub fn to_json(&self, path: &Path) -> serde_json::Value {
        json!({
            "path": path.to_string_lossy(),
            "fps": self.fps,
            "frames": self.frames,
            "cuts_frame": self.cuts_frame,
            "cuts_s": self.cuts_s.iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        })
    }
}

/// Decodes a whole file and reports its cuts.
pub fn detect_shots(path: &Path, opts: ShotOptions, threads: usize) -> Result<ShotReport, VideoError> {
    let mut reader = VideoReader::open(path, threads)?;
    let info = reader.info().clone();
    let mut conv = FrameConverter::new(&info);
    let (aw, ah) = analysis_size(info.width, info.height, opts.analysis_width);
    let mut det = ContentDetector::new(opts);
    let mut report = ShotReport { fps: info.fps, frames: 0, cuts_frame: vec![], cuts_s: vec![] };
    while let Some(frame) = reader.next_frame()? {
        let small = conv.rgb_sampled(&frame, aw, ah).map_err(|reason| VideoError::Convert {
            path: path.to_path_buf(),
            index: frame.index,
            reason,
        })?;
        if det.push(frame.index, HsvFrame::from_rgb(&small)) {
            report.cuts_frame.push(frame.index);
            report.cuts_s.push(frame.time_s);
        }
        report.frames = frame.index + 1;
    }
    Ok(report)
}
