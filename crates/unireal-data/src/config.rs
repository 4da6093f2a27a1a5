//! `unireal-data build` configuration: every key, its default and its meaning are in
//! docs/data-format.md ("Build configuration").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_annotate::{CaptionerConfig, SegmenterConfig};
use unireal_core::Task;
use unireal_vision::{ConditionKind, MaskFilter};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Video files, directories (searched recursively), globs, or CSV/JSONL lists of videos
    /// with optional captions.
    pub inputs: Vec<String>,
    /// The shard directory.
    pub output: PathBuf,
    /// Videos processed at once (0: one per CPU core).
    pub workers: usize,
    /// Decoder threads per video (0: FFmpeg chooses).
    pub decode_threads: usize,
    /// File extensions taken from directories and globs as videos (no dot; any case matches).
    /// The directories' other files are listed in the manifest as skipped.
    pub video_extensions: Vec<String>,
    /// Open every file a directory or glob holds with FFmpeg, whatever its extension: a file
    /// without a video extension that holds no readable video is then skipped with FFmpeg's
    /// reason instead of `not a video extension`.
    pub probe_all_files: bool,
    pub shots: ShotsConfig,
    pub pairs: PairsConfig,
    pub frames: FramesConfig,
    pub captioner: CaptionerConfig,
    /// Which task families are built, and how much of each.
    pub families: FamiliesConfig,
    /// Objects in video: segmentation, tracking and the background model (used by
    /// multi_object, insertion, object_add, seg and control).
    pub objects: ObjectsConfig,
    pub control: ControlConfig,
    pub shards: ShardsConfig,
    pub split: SplitConfig,
}

/// The containers FFmpeg's demuxers read (mov/mp4, Matroska/WebM, AVI, MPEG-PS/TS, FLV, ASF,
/// Ogg, MXF), by their usual extensions. `ogg` is in: an audio-only `.ogg` is a failed input
/// with the reason "no video stream", never left out without a word.
pub const DEFAULT_VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "mov", "m4v", "3gp", "3g2", "f4v", "mkv", "webm", "avi", "mpg", "mpeg", "vob", "ts", "m2ts", "mts", "flv",
    "wmv", "asf", "ogv", "ogg", "mxf",
];

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            inputs: vec![],
            output: PathBuf::new(),
            workers: 0,
            decode_threads: 1,
            video_extensions: DEFAULT_VIDEO_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            probe_all_files: false,
            shots: ShotsConfig::default(),
            pairs: PairsConfig::default(),
            frames: FramesConfig::default(),
            captioner: CaptionerConfig::default(),
            families: FamiliesConfig::default(),
            objects: ObjectsConfig::default(),
            control: ControlConfig::default(),
            shards: ShardsConfig::default(),
            split: SplitConfig::default(),
        }
    }
}

/// Shot-cut detection (PySceneDetect ContentDetector defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShotsConfig {
    pub threshold: f64,
    pub min_shot_frames: u64,
    pub analysis_width: u32,
}

impl Default for ShotsConfig {
    fn default() -> Self {
        let d = unireal_video::ShotOptions::default();
        ShotsConfig { threshold: d.threshold, min_shot_frames: d.min_shot_frames, analysis_width: d.analysis_width }
    }
}

/// Frame-pair selection inside a shot. Defaults follow the UniReal data toolkit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairsConfig {
    /// Time between the two frames of a pair, seconds; tried in order for each candidate.
    pub intervals_s: Vec<f64>,
    /// Candidate frames are taken on this grid (seconds from the shot start).
    pub sample_every_s: f64,
    /// Most pairs kept per shot and per video.
    pub pairs_per_shot: usize,
    pub max_pairs_per_video: usize,
    /// Keep a pair only when grayscale SSIM (at `ssim_short_side`) is below this (toolkit: 0.95) ...
    pub ssim_max: f64,
    /// ... and at least this, so that the frames still show the same scene.
    pub ssim_min: f64,
    pub ssim_short_side: u32,
    /// Largest fraction of near-black pixels allowed in either frame (toolkit: 0.10) ...
    pub max_black_fraction: f64,
    /// ... where near-black means all channels below this level (toolkit: 5).
    pub black_level: u8,
    /// Videos whose short side is below this are skipped.
    pub min_short_side: u32,
    /// Smallest motion score (mean compensated difference, 0–1) for a pair.
    pub min_motion: f64,
}

impl Default for PairsConfig {
    fn default() -> Self {
        PairsConfig {
            intervals_s: vec![2.0, 1.0],
            sample_every_s: 0.5,
            pairs_per_shot: 2,
            max_pairs_per_video: 16,
            ssim_max: 0.95,
            ssim_min: 0.25,
            ssim_short_side: 256,
            max_black_fraction: 0.10,
            black_level: 5,
            min_short_side: 128,
            min_motion: 0.0,
        }
    }
}

/// The frames stored in the shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramesConfig {
    /// Longest side of stored frames (0: the video's own size).
    pub max_side: u32,
    pub jpeg_quality: u8,
}

impl Default for FramesConfig {
    fn default() -> Self {
        FramesConfig { max_side: 1024, jpeg_quality: 90 }
    }
}

/// One task family: on or off, and the fraction of its eligible samples kept (by a stable
/// hash of the sample id, so a resumed or repeated build keeps the same ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamilyConfig {
    pub enabled: bool,
    pub weight: f64,
}

impl Default for FamilyConfig {
    fn default() -> Self {
        FamilyConfig { enabled: true, weight: 1.0 }
    }
}

/// The six video task families of the paper.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamiliesConfig {
    pub frame2frame: FamilyConfig,
    pub multi_object: FamilyConfig,
    pub insertion: FamilyConfig,
    pub object_add: FamilyConfig,
    pub seg: FamilyConfig,
    pub control: FamilyConfig,
}

impl FamiliesConfig {
    pub fn get(&self, task: Task) -> Option<&FamilyConfig> {
        Some(match task {
            Task::Frame2Frame => &self.frame2frame,
            Task::MultiObject => &self.multi_object,
            Task::Insertion => &self.insertion,
            Task::ObjectAdd => &self.object_add,
            Task::Seg => &self.seg,
            Task::Control => &self.control,
            _ => return None,
        })
    }

    pub fn enabled(&self, task: Task) -> bool {
        self.get(task).is_some_and(|f| f.enabled && f.weight > 0.0)
    }

    /// Whether any family needs the object stage.
    pub fn needs_objects(&self) -> bool {
        [Task::MultiObject, Task::Insertion, Task::ObjectAdd, Task::Seg, Task::Control].iter().any(|t| self.enabled(*t))
    }

    fn all(&self) -> [(&'static str, &FamilyConfig); 6] {
        [
            ("frame2frame", &self.frame2frame),
            ("multi_object", &self.multi_object),
            ("insertion", &self.insertion),
            ("object_add", &self.object_add),
            ("seg", &self.seg),
            ("control", &self.control),
        ]
    }
}

/// Objects in video. An *analysed pair* is frame A and frame B = A + `interval_s` of one
/// shot; A is taken every `every_s` from the shot start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectsConfig {
    pub every_s: f64,
    pub interval_s: f64,
    pub max_per_shot: usize,
    pub max_per_video: usize,
    /// Long side at which frames are segmented and the background is modelled.
    pub mask_side: u32,
    pub segmenter: SegmenterConfig,
    /// The toolkit's mask filters, applied to every segmenter's masks.
    pub filters: MaskFilter,
    pub background: BackgroundConfig,
    /// multi_object: at most this many objects (asset images) per sample.
    pub max_assets: usize,
    /// seg: samples per analysed pair at most (one per object).
    pub max_seg: usize,
    /// Margin around an object's box when it is cropped onto white, fraction of the box.
    pub crop_margin: f64,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig {
            every_s: 2.0,
            interval_s: 1.0,
            max_per_shot: 3,
            max_per_video: 8,
            mask_side: 512,
            segmenter: SegmenterConfig::default(),
            filters: MaskFilter::default(),
            background: BackgroundConfig::default(),
            max_assets: 3,
            max_seg: 2,
            crop_margin: 0.05,
        }
    }
}

/// The shot's background model: the temporal median of frames around the analysed pair,
/// aligned to each target frame by the camera motion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackgroundConfig {
    /// Frames up to this long before A and after B take part ...
    pub window_s: f64,
    /// ... taken every `step_s`.
    pub step_s: f64,
    /// Fewer aligned frames than this: no background model (the pair is skipped and counted).
    pub min_frames: usize,
    /// At most this many frames, evenly spread over the window, go into the median.
    pub max_frames: usize,
    /// Frames whose content moved further than this (fraction of the frame) from the target,
    /// or zoomed by more than `max_zoom_change`, are left out.
    pub max_camera_shift: f64,
    pub max_zoom_change: f64,
    /// A frame agrees with the median at a pixel when no channel differs by more than this.
    pub agree_level: u8,
    /// insertion / object_add: the mean background support under the object must reach this
    /// (else there is no clean background to fill with and the pair makes neither).
    pub min_clean: f64,
    /// Pixels the object's mask is grown by before it is filled from the background.
    pub fill_dilate: u32,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig {
            window_s: 8.0,
            step_s: 0.5,
            min_frames: 5,
            max_frames: 9,
            max_camera_shift: 0.25,
            max_zoom_change: 0.1,
            agree_level: 16,
            min_clean: 0.6,
            fill_dilate: 3,
        }
    }
}

/// Which way a control sample goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlDirections {
    /// frame → map
    Perception,
    /// map + caption → frame
    Generation,
    Both,
}

/// The control family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Built-in condition maps; one is chosen per analysed pair, in turn by a stable hash.
    pub kinds: Vec<ConditionKind>,
    /// External maps (e.g. `depth`, `pose`) asked of the `command` segmenter; they join the
    /// rotation when the segmenter is a command.
    pub external: Vec<String>,
    pub directions: ControlDirections,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { kinds: ConditionKind::ALL.to_vec(), external: vec![], directions: ControlDirections::Both }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardsConfig {
    /// A shard is closed when it reaches this size.
    pub target_size_mb: f64,
    pub zstd_level: i32,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig { target_size_mb: 256.0, zstd_level: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitBy {
    /// All samples of a video go to the same split (no leakage between splits).
    Video,
    /// Each sample is assigned on its own.
    Sample,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Fraction of videos (or samples) held out as `val`, by a stable hash.
    pub val_fraction: f64,
    pub by: SplitBy,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { val_fraction: 0.05, by: SplitBy::Video }
    }
}

impl BuildConfig {
    /// Checks values serde cannot: returns the first problem, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.pairs;
        let checks: [(bool, &str); 14] = [
            (!self.inputs.is_empty(), "inputs: at least one input (file, directory, glob or list) is needed"),
            (!self.output.as_os_str().is_empty(), "output: the shard directory must be set"),
            (
                !p.intervals_s.is_empty() && p.intervals_s.iter().all(|i| *i > 0.0 && i.is_finite()),
                "pairs.intervals_s: needs one or more positive intervals",
            ),
            (p.sample_every_s > 0.0, "pairs.sample_every_s: must be positive"),
            (
                p.intervals_s.iter().all(|i| *i >= p.sample_every_s),
                "pairs.intervals_s: every interval must be at least pairs.sample_every_s",
            ),
            (
                p.pairs_per_shot > 0 && p.max_pairs_per_video > 0,
                "pairs.pairs_per_shot / pairs.max_pairs_per_video: must be at least 1",
            ),
            (
                (0.0..=1.0).contains(&p.ssim_max) && (-1.0..=1.0).contains(&p.ssim_min),
                "pairs.ssim_min / pairs.ssim_max: must lie in [-1, 1]",
            ),
            (p.ssim_min < p.ssim_max, "pairs.ssim_min: must be below pairs.ssim_max"),
            ((0.0..=1.0).contains(&p.max_black_fraction), "pairs.max_black_fraction: must lie in [0, 1]"),
            (p.ssim_short_side >= 16, "pairs.ssim_short_side: must be at least 16"),
            ((1..=100).contains(&self.frames.jpeg_quality), "frames.jpeg_quality: must lie in 1..=100"),
            (self.shards.target_size_mb > 0.0, "shards.target_size_mb: must be positive"),
            ((1..=22).contains(&self.shards.zstd_level), "shards.zstd_level: must lie in 1..=22"),
            ((0.0..=1.0).contains(&self.split.val_fraction), "split.val_fraction: must lie in [0, 1]"),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(msg.to_string());
        }
        if self.video_extensions.is_empty() && !self.probe_all_files {
            return Err("video_extensions: empty, so directories and globs would yield no video (set probe_all_files: true to open every file)".into());
        }
        if let Some(e) =
            self.video_extensions.iter().find(|e| e.is_empty() || e.starts_with('.') || e.contains(['/', '*']))
        {
            return Err(format!("video_extensions: `{e}` is not an extension: write it without the dot, e.g. `mp4`"));
        }
        if self.decode_threads > 1024 {
            // FFmpeg takes the count as a C int; a huge one wraps and every video fails to open.
            return Err("decode_threads: at most 1024 (0: FFmpeg chooses)".into());
        }
        if !(self.shots.threshold.is_finite() && self.shots.threshold >= 0.0) {
            return Err("shots.threshold: must be a number >= 0 (content score, 0-255 scale)".into());
        }
        if self.shots.analysis_width < 16 {
            return Err("shots.analysis_width: must be at least 16".into());
        }
        for (name, f) in self.families.all() {
            if !(0.0..=1.0).contains(&f.weight) {
                return Err(format!("families.{name}.weight: must lie in [0, 1] (the fraction of samples kept)"));
            }
        }
        if !self.families.all().iter().any(|(_, f)| f.enabled && f.weight > 0.0) {
            return Err("families: every family is switched off".into());
        }
        let o = &self.objects;
        let b = &o.background;
        let checks: [(bool, &str); 9] = [
            (o.every_s > 0.0 && o.interval_s > 0.0, "objects.every_s / objects.interval_s: must be positive"),
            (o.max_per_shot > 0 && o.max_per_video > 0, "objects.max_per_shot / objects.max_per_video: must be at least 1"),
            (o.mask_side >= 32, "objects.mask_side: must be at least 32"),
            (o.max_assets >= 1, "objects.max_assets: must be at least 1"),
            ((0.0..=1.0).contains(&o.crop_margin), "objects.crop_margin: must lie in [0, 1]"),
            (b.window_s >= 0.0 && b.step_s > 0.0, "objects.background.window_s / step_s: must be positive"),
            (b.min_frames >= 3 && b.max_frames >= b.min_frames, "objects.background.min_frames / max_frames: need 3 <= min_frames <= max_frames (a median of fewer keeps the object)"),
            ((0.0..=1.0).contains(&b.min_clean), "objects.background.min_clean: must lie in [0, 1]"),
            (b.max_camera_shift >= 0.0 && b.max_zoom_change >= 0.0, "objects.background.max_camera_shift / max_zoom_change: must not be negative"),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(msg.to_string());
        }
        o.filters.validate().map_err(|e| format!("objects.filters.{e}"))?;
        if self.families.enabled(Task::Control) && self.control.kinds.is_empty() && self.control.external.is_empty() {
            return Err("control.kinds: the control family is on but no condition map is listed".into());
        }
        if !self.control.external.is_empty() && !matches!(o.segmenter, SegmenterConfig::Command(_)) {
            return Err(
                "control.external: external maps come from a `command` segmenter (objects.segmenter.kind: command)"
                    .into(),
            );
        }
        Ok(())
    }

    /// What decides the content of the samples: a resume with a different fingerprint is
    /// refused. Inputs, output, workers and shard sizes may change between runs.
    pub fn fingerprint(&self) -> String {
        let v = serde_json::json!({
            "shots": self.shots, "pairs": self.pairs, "frames": self.frames,
            "captioner": self.captioner, "split": self.split,
            "families": self.families, "objects": self.objects, "control": self.control,
        });
        unireal_shards::fingerprint(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_once_inputs_and_output_are_set() {
        let mut c = BuildConfig::default();
        assert!(c.validate().unwrap_err().starts_with("inputs"));
        c.inputs = vec!["v".into()];
        c.output = "out".into();
        c.validate().unwrap();
        c.pairs.ssim_min = 0.99;
        assert!(c.validate().unwrap_err().starts_with("pairs.ssim_min"));
        let mut c = BuildConfig { inputs: vec!["v".into()], output: "out".into(), ..Default::default() };
        c.video_extensions = vec![".ogv".into()];
        assert!(c.validate().unwrap_err().contains("`.ogv` is not an extension"));
        c.video_extensions.clear();
        assert!(c.validate().unwrap_err().starts_with("video_extensions: empty"));
        c.probe_all_files = true;
        c.validate().unwrap();
    }

    #[test]
    fn fingerprint_ignores_workers_but_not_pairs() {
        let a = BuildConfig::default();
        let mut b = a.clone();
        b.workers = 7;
        b.inputs = vec!["x".into()];
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.pairs.ssim_max = 0.9;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
