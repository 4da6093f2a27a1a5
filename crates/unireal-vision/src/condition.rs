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
    canny_gray(&crate::to_gray(img), 50.0, 120.0)
}

/// imageproc's [`canny`](imageproc::edges::canny), bit-exact, faster: its σ = 1.4 blur, Sobel
/// gradients (edge-clamped), magnitude, non-maximum suppression along the gradient direction
/// quantised to 45° (the direction only computed where the magnitude reaches `low`: weaker
/// pixels can never join an edge) and hysteresis over its six-neighbour walk.
///
/// # Panics
/// Unless `0 < low <= high` (with `low` at 0 the walk would leave the image, as imageproc's).
pub fn canny_gray(gray: &GrayImage, low: f32, high: f32) -> GrayImage {
    assert!(low > 0.0 && high >= low, "canny thresholds need 0 < low <= high");
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mut out = vec![0u8; w * h];
    if w < 3 || h < 3 {
        // No inner pixel: imageproc's suppression and hysteresis visit none.
        return GrayImage::from_raw(w as u32, h as u32, out).expect("sized");
    }
    let blurred = crate::resample::gaussian_blur_gray(gray, 1.4);
    let b = blurred.as_raw();
    // Sobel, clamped at the edges.
    let at =
        |x: isize, y: isize| b[y.clamp(0, h as isize - 1) as usize * w + x.clamp(0, w as isize - 1) as usize] as i32;
    let mut g = vec![0f32; w * h];
    let (mut gx, mut gy) = (vec![0i16; w * h], vec![0i16; w * h]);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let sx = -at(x - 1, y - 1) + at(x + 1, y - 1) - 2 * at(x - 1, y) + 2 * at(x + 1, y) - at(x - 1, y + 1)
                + at(x + 1, y + 1);
            let sy = -at(x - 1, y - 1) - 2 * at(x, y - 1) - at(x + 1, y - 1)
                + at(x - 1, y + 1)
                + 2 * at(x, y + 1)
                + at(x + 1, y + 1);
            let i = y as usize * w + x as usize;
            (gx[i], gy[i]) = (sx as i16, sy as i16);
            g[i] = (sx as i16 as f32).hypot(sy as i16 as f32);
        }
    }
    const RADIANS_TO_DEGREES: f32 = 180f32 / std::f32::consts::PI;
    let mut thin = vec![0f32; w * h];
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            if g[i] < low {
                continue;
            }
            let mut angle = (gy[i] as f32).atan2(gx[i] as f32) * RADIANS_TO_DEGREES;
            if angle < 0.0 {
                angle += 180.0;
            }
            let (a, b) = if !(22.5..157.5).contains(&angle) {
                (i - 1, i + 1)
            } else if angle < 67.5 {
                (i + w + 1, i - w - 1)
            } else if angle < 112.5 {
                (i - w, i + w)
            } else {
                (i + w - 1, i - w + 1)
            };
            if !(g[i] < g[a] || g[i] < g[b]) {
                thin[i] = g[i];
            }
        }
    }
    let mut stack = Vec::new();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            if thin[i] >= high && out[i] == 0 {
                out[i] = 255;
                stack.push(i);
                while let Some(j) = stack.pop() {
                    for n in [j + 1, j + w + 1, j + w, j - w - 1, j - 1, j + w - 1] {
                        if thin[n] >= low && out[n] == 0 {
                            out[n] = 255;
                            stack.push(n);
                        }
                    }
                }
            }
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out).expect("sized")
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
        assert_eq!(m.dimensions(), (w, h), "union needs masks of the frame's size");
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

    #[test]
    fn canny_is_imageprocs_to_the_byte() {
        let photo = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/samples/images/chelsea.png"))
            .expect("sample image")
            .to_luma8();
        let mut next = crate::xorshift(5);
        let noise =
            GrayImage::from_fn(90, 61, |x, y| Luma([((x * 3 + y * 2) as u8).wrapping_add((next() % 60) as u8)]));
        for img in [photo, noise, GrayImage::new(3, 3), GrayImage::from_pixel(4, 7, Luma([200]))] {
            for (low, high) in [(50.0, 120.0), (10.0, 30.0), (1.0, 5.0)] {
                assert_eq!(
                    canny_gray(&img, low, high),
                    imageproc::edges::canny(&img, low, high),
                    "{:?} {low}/{high}",
                    img.dimensions()
                );
            }
        }
    }
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
