//! Condition maps for the control family: Canny edges, grayscale, Gaussian blur, low
//! resolution and object masks. Every map has the frame's size.

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::mask::Mask;
use crate::resample::resize_triangle_rgb;

/// A built-in condition map type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// Canny edges (white on black) of the frame at its stored size.
    Canny,
    /// The frame in grayscale (BT.601 luma).
    Gray,
    /// The frame blurred by a Gaussian whose sigma is 1 % of the short side.
    Blur,
    /// The frame at 1/4 of its size, scaled back up (bilinear).
    Lowres,
    /// The moving objects' masks (white on black).
    Mask,
}

impl ConditionKind {
    pub const ALL: [ConditionKind; 5] =
        [ConditionKind::Canny, ConditionKind::Gray, ConditionKind::Blur, ConditionKind::Lowres, ConditionKind::Mask];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::Canny => "canny",
            ConditionKind::Gray => "gray",
            ConditionKind::Blur => "blur",
            ConditionKind::Lowres => "lowres",
            ConditionKind::Mask => "mask",
        }
    }

    /// How prompts name the map: "Canny edge map", "grayscale image", …
    pub fn phrase(self) -> &'static str {
        match self {
            ConditionKind::Canny => "Canny edge map",
            ConditionKind::Gray => "grayscale image",
            ConditionKind::Blur => "blurred image",
            ConditionKind::Lowres => "low-resolution image",
            ConditionKind::Mask => "object mask",
        }
    }
}

/// A condition map: gray maps are stored losslessly (PNG) when they are binary, colour ones
/// as JPEG.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionMap {
    Binary(GrayImage),
    Gray(GrayImage),
    Rgb(RgbImage),
}

/// Canny edges of an RGB frame (thresholds on the Sobel magnitude after imageproc's σ = 1.4
/// smoothing; 50/120 keeps object outlines and drops most texture).
pub fn canny(img: &RgbImage) -> GrayImage {
    imageproc::edges::canny(&crate::to_gray(img), 50.0, 120.0)
}

/// A Gaussian blur with sigma = `frac` × the short side.
pub fn blur(img: &RgbImage, frac: f64) -> RgbImage {
    let sigma = (img.width().min(img.height()) as f64 * frac).max(0.5) as f32;
    crate::resample::gaussian_blur_rgb(img, sigma)
}

/// Down by `factor` (triangle filter widened to the factor) and back up to the original size (bilinear).
pub fn lowres(img: &RgbImage, factor: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let small = resize_triangle_rgb(img, (w / factor.max(1)).max(1), (h / factor.max(1)).max(1));
    resize_triangle_rgb(&small, w, h)
}

/// The union of masks (all of the frame's size).
pub fn union(masks: &[&Mask], w: u32, h: u32) -> Mask {
    let mut raw = vec![0u8; w as usize * h as usize];
    for m in masks {
        for (o, &v) in raw.iter_mut().zip(m.as_raw()) {
            *o |= if v != 0 { 255 } else { 0 };
        }
    }
    GrayImage::from_raw(w, h, raw).expect("sized")
}

/// Computes a map of `kind` for a frame. `masks` (frame-sized) are needed only for `Mask`;
/// None when the kind needs masks and none are given.
pub fn condition_map(kind: ConditionKind, img: &RgbImage, masks: &[&Mask]) -> Option<ConditionMap> {
    Some(match kind {
        ConditionKind::Canny => ConditionMap::Binary(canny(img)),
        ConditionKind::Gray => ConditionMap::Gray(crate::to_gray(img)),
        ConditionKind::Blur => ConditionMap::Rgb(blur(img, 0.01)),
        ConditionKind::Lowres => ConditionMap::Rgb(lowres(img, 4)),
        ConditionKind::Mask if masks.is_empty() => return None,
        ConditionKind::Mask => ConditionMap::Binary(union(masks, img.width(), img.height())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;
    use image::Rgb;

    fn square() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            if (16..48).contains(&x) && (12..36).contains(&y) {
                Rgb([240, 240, 240])
            } else {
                Rgb([20, 20, 20])
            }
        })
    }

    #[test]
    fn maps_have_the_frames_size_and_the_expected_content() {
        let img = square();
        let e = canny(&img);
        assert_eq!(e.dimensions(), (64, 48));
        // Edges lie on the square's outline, not inside it or in the flat background.
        assert!(e.get_pixel(5, 5)[0] == 0 && e.get_pixel(32, 24)[0] == 0);
        let on_outline = (12..36).filter(|&y| (14..18).any(|x| e.get_pixel(x, y)[0] == 255)).count();
        assert!(on_outline > 15, "left edge found on {on_outline} rows");
        let b = blur(&img, 0.05);
        assert_eq!(b.dimensions(), (64, 48));
        let edge = b.get_pixel(16, 24)[0];
        assert!(edge > 40 && edge < 220, "blurred edge {edge}");
        let l = lowres(&img, 4);
        assert_eq!(l.dimensions(), (64, 48));
        assert_eq!(l.get_pixel(32, 24)[0], 240);
        let m = GrayImage::from_fn(64, 48, |x, _| Luma([if x < 10 { 255 } else { 0 }]));
        match condition_map(ConditionKind::Mask, &img, &[&m]) {
            Some(ConditionMap::Binary(u)) => assert_eq!(u, m),
            other => panic!("unexpected {other:?}"),
        }
        assert!(condition_map(ConditionKind::Mask, &img, &[]).is_none());
    }
}
