//! Colour measures: grayscale, means, near-black fraction, HSV frame difference, colour names.

use image::{GrayImage, RgbImage};

/// ITU-R BT.601 luma, with OpenCV's `COLOR_RGB2GRAY` fixed-point arithmetic (bit-exact).
pub fn to_gray(img: &RgbImage) -> GrayImage {
    const SHIFT: u32 = 15;
    let (w, h) = img.dimensions();
    let mut out = GrayImage::new(w, h);
    for (o, p) in out.as_mut().iter_mut().zip(img.as_raw().chunks_exact(3)) {
        let y = 9798 * p[0] as u32 + 19235 * p[1] as u32 + 3735 * p[2] as u32;
        *o = ((y + (1 << (SHIFT - 1))) >> SHIFT) as u8;
    }
    out
}

/// Mean of each channel, in [0, 255].
pub fn mean_rgb(img: &RgbImage) -> [f64; 3] {
    let mut s = [0u64; 3];
    for p in img.as_raw().chunks_exact(3) {
        s[0] += p[0] as u64;
        s[1] += p[1] as u64;
        s[2] += p[2] as u64;
    }
    let n = (img.width() as u64 * img.height() as u64).max(1) as f64;
    [s[0] as f64 / n, s[1] as f64 / n, s[2] as f64 / n]
}

/// Fraction of pixels whose three channels are all below `level` (the UniReal toolkit uses 5).
pub fn near_black_fraction(img: &RgbImage, level: u8) -> f64 {
    let n = (img.width() as usize * img.height() as usize).max(1);
    let black = img.as_raw().chunks_exact(3).filter(|p| p[0] < level && p[1] < level && p[2] < level).count();
    black as f64 / n as f64
}

const HSV_SHIFT: u32 = 12;

/// OpenCV's fixed-point division tables for 8-bit RGB→HSV: `round((255 << 12) / v)` and
/// `round((180 << 12) / (6 · diff))`, entry 0 being 0.
const fn hsv_tables() -> ([i32; 256], [i32; 256]) {
    let (mut sdiv, mut hdiv) = ([0i32; 256], [0i32; 256]);
    let mut i = 1;
    while i < 256 {
        let (sn, hn) = (255i64 << HSV_SHIFT, 180i64 << HSV_SHIFT);
        sdiv[i] = ((2 * sn + i as i64) / (2 * i as i64)) as i32;
        hdiv[i] = ((2 * hn + 6 * i as i64) / (12 * i as i64)) as i32;
        i += 1;
    }
    (sdiv, hdiv)
}
static HSV_DIV: ([i32; 256], [i32; 256]) = hsv_tables();

/// OpenCV's 8-bit RGB→HSV (`COLOR_RGB2HSV`, the same fixed-point arithmetic): H in [0, 180),
/// S and V in [0, 255].
#[inline]
pub fn rgb_to_hsv8(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (sdiv, hdiv) = (&HSV_DIV.0, &HSV_DIV.1);
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let v = r.max(g).max(b);
    let diff = v - r.min(g).min(b);
    let half = 1 << (HSV_SHIFT - 1);
    let s = (diff * sdiv[v as usize] + half) >> HSV_SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * hdiv[diff as usize] + half) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    (h as u8, s as u8, v as u8)
}

/// Mean HSV saturation in [0, 1].
pub fn mean_saturation(img: &RgbImage) -> f64 {
    let n = (img.width() as usize * img.height() as usize).max(1);
    let s: u64 = img.as_raw().chunks_exact(3).map(|p| rgb_to_hsv8(p[0], p[1], p[2]).1 as u64).sum();
    s as f64 / n as f64 / 255.0
}

/// A frame in planar 8-bit HSV, for the content (shot-cut) score.
#[derive(Debug, Clone)]
pub struct HsvFrame {
    pub width: u32,
    pub height: u32,
    h: Vec<u8>,
    s: Vec<u8>,
    v: Vec<u8>,
}

impl HsvFrame {
    /// Bit-exact [`rgb_to_hsv8`] of every pixel; 16 pixels at a time with AVX2 where the CPU
    /// has it.
    pub fn from_rgb(img: &RgbImage) -> Self {
        let n = img.width() as usize * img.height() as usize;
        let (mut h, mut s, mut v) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
        let rgb = img.as_raw();
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2; the four slices hold n pixels.
            done = unsafe { hsv_avx2(rgb, &mut h, &mut s, &mut v) };
        }
        for i in done..n {
            (h[i], s[i], v[i]) = rgb_to_hsv8(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
        }
        HsvFrame { width: img.width(), height: img.height(), h, s, v }
    }

    /// PySceneDetect's content score: the mean of the three channels' mean absolute
    /// differences (hue not wrapped, as there). Frames of different sizes score `f64::MAX`.
    pub fn content_delta(&self, other: &HsvFrame) -> f64 {
        if self.width != other.width || self.height != other.height {
            return f64::MAX;
        }
        // Chunks of 64 KiB keep each partial sum inside sad_row's u32.
        let mad = |a: &[u8], b: &[u8]| {
            let s: u64 =
                a.chunks(1 << 16).zip(b.chunks(1 << 16)).map(|(x, y)| crate::motion::sad_row(x, y) as u64).sum();
            s as f64 / a.len().max(1) as f64
        };
        (mad(&self.h, &other.h) + mad(&self.s, &other.s) + mad(&self.v, &other.v)) / 3.0
    }
}

/// [`rgb_to_hsv8`] of the first `16 · ⌊n / 16⌋` pixels (returned), with OpenCV's tables
/// gathered and its fixed-point arithmetic in 32-bit lanes: the same bytes as the scalar path.
///
/// # Safety
/// The CPU must have AVX2; `rgb` holds at least `3n` bytes for `n = h.len() = s.len() = v.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsv_avx2(rgb: &[u8], h: &mut [u8], s: &mut [u8], v: &mut [u8]) -> usize {
    use crate::simd;
    use std::arch::x86_64::*;
    // SAFETY: AVX2 is present (the caller's promise); every load reads 48 bytes at 48k with
    // 16k + 16 <= n pixels, every store writes 16 bytes at 16k < n; the gathers index tables
    // of 256 entries with values in [0, 255].
    unsafe {
        let n = h.len();
        assert!(s.len() == n && v.len() == n && rgb.len() >= 3 * n);
        let (sdiv, hdiv) = (HSV_DIV.0.as_ptr(), HSV_DIV.1.as_ptr());
        let half = _mm256_set1_epi32(1 << (HSV_SHIFT - 1));
        let c180 = _mm256_set1_epi32(180);
        // Eight pixels' (h, s) in 32-bit lanes from their r, g, b and v.
        let hs = |r: __m256i, g: __m256i, b: __m256i, vmax: __m256i| {
            let diff = _mm256_sub_epi32(vmax, _mm256_min_epi32(_mm256_min_epi32(r, g), b));
            let sd = _mm256_i32gather_epi32::<4>(sdiv, vmax);
            let hd = _mm256_i32gather_epi32::<4>(hdiv, diff);
            let sat = _mm256_srai_epi32::<{ HSV_SHIFT as i32 }>(_mm256_add_epi32(_mm256_mullo_epi32(diff, sd), half));
            // v == r: g - b; else v == g: b - r + 2·diff; else r - g + 4·diff.
            let from_b = _mm256_add_epi32(_mm256_sub_epi32(r, g), _mm256_slli_epi32::<2>(diff));
            let from_g = _mm256_add_epi32(_mm256_sub_epi32(b, r), _mm256_slli_epi32::<1>(diff));
            let num = _mm256_blendv_epi8(from_b, from_g, _mm256_cmpeq_epi32(vmax, g));
            let num = _mm256_blendv_epi8(num, _mm256_sub_epi32(g, b), _mm256_cmpeq_epi32(vmax, r));
            let hue = _mm256_srai_epi32::<{ HSV_SHIFT as i32 }>(_mm256_add_epi32(_mm256_mullo_epi32(num, hd), half));
            let hue = _mm256_add_epi32(hue, _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), hue), c180));
            (hue, sat)
        };
        let blocks = n / 16;
        for k in 0..blocks {
            let [r8, g8, b8] = simd::rgb_planes(rgb.as_ptr().add(48 * k));
            let v8 = _mm_max_epu8(_mm_max_epu8(r8, g8), b8);
            let widen = |x: __m128i| (_mm256_cvtepu8_epi32(x), _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(x)));
            let ((r0, r1), (g0, g1), (b0, b1), (v0, v1)) = (widen(r8), widen(g8), widen(b8), widen(v8));
            let (h0, s0) = hs(r0, g0, b0, v0);
            let (h1, s1) = hs(r1, g1, b1, v1);
            _mm_storeu_si128(h.as_mut_ptr().add(16 * k) as *mut __m128i, simd::pack_u8(h0, h1));
            _mm_storeu_si128(s.as_mut_ptr().add(16 * k) as *mut __m128i, simd::pack_u8(s0, s1));
            _mm_storeu_si128(v.as_mut_ptr().add(16 * k) as *mut __m128i, v8);
        }
        16 * blocks
    }
}

/// A plain English name for a mean colour: "red", "dark blue", "white", …
pub fn color_name(rgb: [f64; 3]) -> &'static str {
    let (h, s, v) = rgb_to_hsv8(rgb[0].round() as u8, rgb[1].round() as u8, rgb[2].round() as u8);
    let (hue, s, v) = (h as f64 * 2.0, s as f64 / 255.0, v as f64 / 255.0);
    if v < 0.2 {
        return "dark";
    }
    if s < 0.2 {
        return if v > 0.8 {
            "white"
        } else if v > 0.45 {
            "grey"
        } else {
            "dark grey"
        };
    }
    let name = match hue {
        h if !(15.0..345.0).contains(&h) => "red",
        h if h < 40.0 => {
            if v < 0.55 {
                return "brown";
            }
            "orange"
        }
        h if h < 70.0 => "yellow",
        h if h < 160.0 => "green",
        h if h < 200.0 => "teal",
        h if h < 255.0 => "blue",
        h if h < 290.0 => "purple",
        _ => "pink",
    };
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_matches_opencv_conventions() {
        assert_eq!(rgb_to_hsv8(255, 0, 0), (0, 255, 255));
        assert_eq!(rgb_to_hsv8(0, 255, 0), (60, 255, 255));
        assert_eq!(rgb_to_hsv8(0, 0, 255), (120, 255, 255));
        assert_eq!(rgb_to_hsv8(10, 10, 10), (0, 0, 10));
    }

    #[test]
    fn hsv_frame_is_rgb_to_hsv8_for_every_colour() {
        // All 2^24 colours (the vector path), then a size that leaves a scalar tail.
        let all = RgbImage::from_fn(4096, 4096, |x, y| {
            let i = y * 4096 + x;
            image::Rgb([(i >> 16) as u8, (i >> 8) as u8, i as u8])
        });
        let odd = RgbImage::from_fn(101, 37, |x, y| image::Rgb([(x * 7) as u8, (y * 13 + x) as u8, (x * y) as u8]));
        for img in [all, odd] {
            let f = HsvFrame::from_rgb(&img);
            for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
                assert_eq!((f.h[i], f.s[i], f.v[i]), rgb_to_hsv8(p[0], p[1], p[2]), "pixel {i} {p:?}");
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(color_name([250.0, 20.0, 20.0]), "red");
        assert_eq!(color_name([30.0, 60.0, 220.0]), "blue");
        assert_eq!(color_name([240.0, 240.0, 240.0]), "white");
        assert_eq!(color_name([20.0, 20.0, 20.0]), "dark");
        assert_eq!(color_name([60.0, 200.0, 60.0]), "green");
    }

    #[test]
    fn black_fraction_and_delta() {
        let mut img = RgbImage::from_pixel(10, 10, image::Rgb([200, 100, 50]));
        for x in 0..10 {
            img.put_pixel(x, 0, image::Rgb([0, 4, 2]));
        }
        assert!((near_black_fraction(&img, 5) - 0.1).abs() < 1e-12);
        let a = HsvFrame::from_rgb(&img);
        assert_eq!(a.content_delta(&a), 0.0);
        let b = HsvFrame::from_rgb(&RgbImage::from_pixel(10, 10, image::Rgb([0, 0, 0])));
        assert!(a.content_delta(&b) > 27.0);
        // Against the definition on noisy frames whose size is no multiple of 16.
        let noisy = |k: u32| {
            RgbImage::from_fn(101, 37, |x, y| image::Rgb([(x * 7 + k) as u8, (y * 13 * k) as u8, (x * y + k) as u8]))
        };
        let (p, q) = (HsvFrame::from_rgb(&noisy(3)), HsvFrame::from_rgb(&noisy(11)));
        let mad =
            |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64;
        let want = (mad(&p.h, &q.h) + mad(&p.s, &q.s) + mad(&p.v, &q.v)) / 3.0;
        assert!((p.content_delta(&q) - want).abs() < 1e-12 && want > 10.0, "{} against {want}", p.content_delta(&q));
    }
}
