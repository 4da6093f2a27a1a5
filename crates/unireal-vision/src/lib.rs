//! Pure-Rust image measures on small frames: grayscale conversion, SSIM (scikit-image's
//! definition), near-black fraction, HSV frame difference (PySceneDetect's content score),
//! global motion (pan/tilt/zoom), the moving region, colour shifts and colour names; masks
//! and the toolkit's mask filters, motion segmentation over a background model, and the
//! condition maps of the control family; the encoders of stored images.
//!
//! Images are `image::RgbImage` / `image::GrayImage`; everything here is deterministic.

pub mod color;
pub mod condition;
pub mod encode;
pub mod mask;
pub mod motion;
pub mod resample;
pub mod segment;
#[cfg(target_arch = "x86_64")]
pub mod simd;
pub mod ssim;

pub use color::{color_name, mean_rgb, near_black_fraction, to_gray, HsvFrame};
pub use condition::{condition_map, ConditionKind, ConditionMap};
pub use mask::{Mask, MaskFilter, Rejection};
pub use motion::{estimate_motion, GlobalMotion, MotionEstimate, MovingRegion};
pub use segment::{Background, MotionSegOptions, ObjectStats};
pub use ssim::ssim;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

/// Size that scales `(w, h)` so its short side is `short` (never upscales), keeping the aspect.
pub fn fit_short_side(w: u32, h: u32, short: u32) -> (u32, u32) {
    let s = w.min(h);
    if s <= short || s == 0 {
        return (w, h);
    }
    let scale = short as f64 / s as f64;
    (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1))
}

/// Size that scales `(w, h)` so its long side is at most `long` (never upscales).
pub fn fit_long_side(w: u32, h: u32, long: u32) -> (u32, u32) {
    let l = w.max(h);
    if long == 0 || l <= long {
        return (w, h);
    }
    let scale = long as f64 / l as f64;
    (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1))
}

/// Resizes an RGB image with a triangle (bilinear) filter.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    resample::resize_triangle_rgb(img, w, h)
}

/// Resizes a gray image with a triangle (bilinear) filter.
pub fn resize_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    resample::resize_triangle_gray(img, w, h)
}

/// What changed between two frames, measured; the input of the built-in captioner and the
/// scores recorded in a sample's `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeMeasures {
    /// Grayscale SSIM at short side 256.
    pub ssim: f64,
    /// Fraction of near-black pixels (all channels below the level) in each frame.
    pub black_a: f64,
    pub black_b: f64,
    /// Mean absolute gray difference after compensating the global motion, in [0, 1].
    pub motion_score: f64,
    /// Camera motion and the moving region.
    pub motion: MotionEstimate,
    /// Mean luma change B − A, in [-1, 1].
    pub brightness_delta: f64,
    /// Change of (R − B)/255 between the frames: positive means warmer.
    pub warmth_delta: f64,
    /// Change of mean saturation, in [-1, 1].
    pub saturation_delta: f64,
}

/// Measures the change between two frames.
///
/// `a`, `b`: small RGB frames of the same size (analysis resolution, e.g. 256 wide) for
/// motion and colour; `ga`, `gb`: grayscale at short side 256 for SSIM.
pub fn measure_change(a: &RgbImage, b: &RgbImage, ga: &GrayImage, gb: &GrayImage, black_level: u8) -> ChangeMeasures {
    let motion = estimate_motion(a, b);
    let (ma, mb) = (mean_rgb(a), mean_rgb(b));
    let luma = |m: [f64; 3]| (0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255.0;
    let warmth = |m: [f64; 3]| (m[0] - m[2]) / 255.0;
    ChangeMeasures {
        ssim: ssim(ga, gb),
        black_a: near_black_fraction(a, black_level),
        black_b: near_black_fraction(b, black_level),
        motion_score: motion.compensated_diff,
        brightness_delta: luma(mb) - luma(ma),
        warmth_delta: warmth(mb) - warmth(ma),
        saturation_delta: color::mean_saturation(b) - color::mean_saturation(a),
        motion,
    }
}

/// A seeded xorshift64 generator for the unit tests' noise (no dependency, same on every run).
#[cfg(test)]
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits() {
        assert_eq!(fit_short_side(1920, 1080, 256), (455, 256));
        assert_eq!(fit_short_side(200, 100, 256), (200, 100));
        assert_eq!(fit_long_side(1920, 1080, 1024), (1024, 576));
        assert_eq!(fit_long_side(640, 480, 0), (640, 480));
    }
}
