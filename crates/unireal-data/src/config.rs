//! `unireal-data build` configuration: every key, its default and its meaning are in
//! docs/data-format.md ("Build configuration").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_annotate::CaptionerConfig;

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
    /// File extensions taken from directories and globs (lower case, no dot).
    pub video_extensions: Vec<String>,
    pub shots: ShotsConfig,
    pub pairs: PairsConfig,
    pub frames: FramesConfig,
    pub captioner: CaptionerConfig,
    pub shards: ShardsConfig,
    pub split: SplitConfig,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            inputs: vec![],
            output: PathBuf::new(),
            workers: 0,
            decode_threads: 1,
            video_extensions: ["mp4", "mov", "mkv", "avi", "webm", "m4v", "mpg", "mpeg", "flv", "wmv", "ts", "3gp"]
                .into_iter()
                .map(String::from)
                .collect(),
            shots: ShotsConfig::default(),
            pairs: PairsConfig::default(),
            frames: FramesConfig::default(),
            captioner: CaptionerConfig::default(),
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
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None if self.shots.analysis_width < 16 => Err("shots.analysis_width: must be at least 16".into()),
            None => Ok(()),
        }
    }

    /// What decides the content of the samples: a resume with a different fingerprint is
    /// refused. Inputs, output, workers and shard sizes may change between runs.
    pub fn fingerprint(&self) -> String {
        let v = serde_json::json!({
            "shots": self.shots, "pairs": self.pairs, "frames": self.frames,
            "captioner": self.captioner, "split": self.split,
        });
        blake3::hash(v.to_string().as_bytes()).to_hex()[..16].to_string()
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
