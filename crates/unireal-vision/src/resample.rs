//! The two resamplers the families call per pair, with the arithmetic of the crates they
//! replace: `image`'s triangle [`resize`](image::imageops::resize) and imageproc's
//! [`gaussian_blur_f32`](imageproc::filter::gaussian_blur_f32). Every output value is made of
//! the same f32 operations in the same order as there, so the bytes are the same (tests);
//! the loops run a row at a time, which the compiler vectorises, instead of a pixel (or a
//! column) at a time through generic pixel accessors.

use image::{GrayImage, ImageBuffer, Pixel, RgbImage};

/// One output position's source taps: the first source index and the normalised weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// `image`'s triangle-filter taps along one axis of `src` samples scaled to `dst`.
fn triangle_taps(src: u32, dst: u32) -> Vec<Taps> {
    let ratio = src as f32 / dst as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    // The triangle's support is 1 source sample, widened by the ratio when shrinking.
    let support = sratio;
    (0..dst)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let first = ((centre - support).floor() as i64).clamp(0, src as i64 - 1);
            let end = ((centre + support).ceil() as i64).clamp(first + 1, src as i64);
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (first..end)
                .map(|i| {
                    let x = ((i as f32 - centre) / sratio).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut sum = 0.0;
            for w in &weights {
                sum += w;
            }
            for w in &mut weights {
                *w /= sum;
            }
            Taps { first: first as usize, weights }
        })
        .collect()
}

/// Triangle (bilinear, widened when shrinking) resampling of `C`-channel rows: the same
/// bytes as `image::imageops::resize(…, FilterType::Triangle)`.
fn resize_triangle<const C: usize>(src: &[u8], w: u32, h: u32, nw: u32, nh: u32) -> Vec<u8> {
    let mut out = vec![0u8; nw as usize * nh as usize * C];
    if w == 0 || h == 0 {
        return out;
    }
    if (w, h) == (nw, nh) {
        // (An image's buffer may be longer than its pixels.)
        let n = out.len();
        out.copy_from_slice(&src[..n]);
        return out;
    }
    // Vertical first, into f32 rows (as `image` does), then horizontal, rounded.
    let row = w as usize * C;
    let srcf: Vec<f32> = src.iter().map(|&v| v as f32).collect();
    let mut tmp = vec![0f32; nh as usize * row];
    for (acc, taps) in tmp.chunks_exact_mut(row).zip(triangle_taps(h, nh)) {
        for (i, &wt) in taps.weights.iter().enumerate() {
            let s = &srcf[(taps.first + i) * row..][..row];
            for (a, &v) in acc.iter_mut().zip(s) {
                *a += v * wt;
            }
        }
    }
    let taps_x = triangle_taps(w, nw);
    let orow = nw as usize * C;
    for (t, o) in tmp.chunks_exact(row).zip(out.chunks_exact_mut(orow)) {
        for (taps, px) in taps_x.iter().zip(o.chunks_exact_mut(C)) {
            let mut acc = [0f32; C];
            for (i, &wt) in taps.weights.iter().enumerate() {
                let p = &t[(taps.first + i) * C..][..C];
                for c in 0..C {
                    acc[c] += p[c] * wt;
                }
            }
            for c in 0..C {
                px[c] = round_u8(acc[c].clamp(0.0, 255.0));
            }
        }
    }
    out
}

/// `x.round() as u8` for x in [0, 255] (halves away from zero), without a libm call: the
/// fraction `x - ⌊x⌋` is exact.
#[inline(always)]
fn round_u8(x: f32) -> u8 {
    let i = x as u8;
    i + (x - i as f32 >= 0.5) as u8
}

fn from_vec<P: Pixel<Subpixel = u8>>(w: u32, h: u32, v: Vec<u8>) -> ImageBuffer<P, Vec<u8>> {
    ImageBuffer::from_raw(w, h, v).expect("sized for the image")
}

/// [`image::imageops::resize`] with `FilterType::Triangle`, bit-exact, faster.
pub fn resize_triangle_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    from_vec(w, h, resize_triangle::<3>(img.as_raw(), img.width(), img.height(), w, h))
}

/// [`image::imageops::resize`] with `FilterType::Triangle`, bit-exact, faster.
pub fn resize_triangle_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    from_vec(w, h, resize_triangle::<1>(img.as_raw(), img.width(), img.height(), w, h))
}

/// imageproc's Gaussian kernel for `sigma`: radius ⌈2σ⌉, normalised.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (2.0 * sigma).ceil() as usize;
    let pdf =
        |x: f32| (sigma * (2.0 * std::f32::consts::PI).sqrt()).recip() * (-x.powi(2) / (2.0 * sigma.powi(2))).exp();
    let mut k = vec![0.0; 2 * r + 1];
    for i in 0..=r {
        k[r + i] = pdf(i as f32);
        k[r - i] = pdf(i as f32);
    }
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|x| *x /= sum);
    k
}

/// imageproc's f32 → u8: truncated, saturated.
#[inline]
fn clamp_u8(x: f32) -> u8 {
    if x < 255.0 {
        if x > 0.0 {
            x as u8
        } else {
            0
        }
    } else {
        255
    }
}

/// [`imageproc::filter::gaussian_blur_f32`] of an RGB image, bit-exact, faster: a horizontal
/// pass to u8, then a vertical one, each sample edge-clamped.
///
/// # Panics
/// If `sigma <= 0`, as imageproc.
pub fn gaussian_blur_rgb(img: &RgbImage, sigma: f32) -> RgbImage {
    from_vec(img.width(), img.height(), gaussian_blur::<3>(img.as_raw(), img.width(), img.height(), sigma))
}

/// [`imageproc::filter::gaussian_blur_f32`] of a gray image, bit-exact, faster.
pub fn gaussian_blur_gray(img: &GrayImage, sigma: f32) -> GrayImage {
    from_vec(img.width(), img.height(), gaussian_blur::<1>(img.as_raw(), img.width(), img.height(), sigma))
}

fn gaussian_blur<const C: usize>(src: &[u8], w: u32, h: u32, sigma: f32) -> Vec<u8> {
    assert!(sigma > 0.0, "sigma must be > 0.0");
    let k = gaussian_kernel(sigma);
    let r = k.len() / 2;
    let (w, h) = (w as usize, h as usize);
    let row = w * C;
    let mut mid = vec![0u8; row * h];
    if row == 0 || h == 0 {
        return mid;
    }
    let mut srcf = vec![0f32; row];
    let mut acc = vec![0f32; row];
    // A tap's source column for output column x, clamped to the image.
    let col = |x: usize, i: usize| (x + i).saturating_sub(r).min(w - 1);
    for (s, m) in src.chunks_exact(row).zip(mid.chunks_exact_mut(row)) {
        for (f, &v) in srcf.iter_mut().zip(s) {
            *f = v as f32;
        }
        acc.fill(0.0);
        // Columns whose taps all lie inside: one kernel tap at a time over the whole span.
        let (lo, hi) = (r.min(w), w.saturating_sub(r).max(r.min(w)));
        for (i, &kv) in k.iter().enumerate().filter(|_| hi > lo) {
            let span = &mut acc[lo * C..hi * C];
            let from = &srcf[(lo + i - r) * C..][..span.len()];
            for (a, &v) in span.iter_mut().zip(from) {
                *a += v * kv;
            }
        }
        // The margins, tap by tap with clamped columns.
        for x in (0..lo).chain(hi..w) {
            for c in 0..C {
                let mut a = 0.0;
                for (i, &kv) in k.iter().enumerate() {
                    a += srcf[col(x, i) * C + c] * kv;
                }
                acc[x * C + c] = a;
            }
        }
        for (o, &a) in m.iter_mut().zip(&acc) {
            *o = clamp_u8(a);
        }
    }
    let midf: Vec<f32> = mid.iter().map(|&v| v as f32).collect();
    let mut out = vec![0u8; row * h];
    for (y, o) in out.chunks_exact_mut(row).enumerate() {
        acc.fill(0.0);
        for (i, &kv) in k.iter().enumerate() {
            let sy = (y + i).saturating_sub(r).min(h - 1);
            for (a, &v) in acc.iter_mut().zip(&midf[sy * row..][..row]) {
                *a += v * kv;
            }
        }
        for (o, &a) in o.iter_mut().zip(&acc) {
            *o = clamp_u8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{resize, FilterType};

    fn noisy(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut next = crate::xorshift(seed);
        let mut img = RgbImage::new(w, h);
        // Smooth ramps plus noise: values across the whole range, edges and flat parts.
        for (x, y, p) in img.enumerate_pixels_mut() {
            let n = next() as u32;
            *p = image::Rgb([
                ((x * 255 / w.max(1)) as u8).wrapping_add((n & 15) as u8),
                ((y * 255 / h.max(1)) as u8) ^ ((n >> 8) as u8 & 7),
                (n >> 16) as u8,
            ]);
        }
        img
    }

    #[test]
    fn triangle_resize_is_images_to_the_byte() {
        let sizes = [(1, 1), (3, 2), (17, 9), (64, 36), (101, 57), (256, 144)];
        for (k, &(w, h)) in sizes.iter().enumerate() {
            let img = noisy(w, h, k as u64 + 1);
            let gray = crate::to_gray(&img);
            for &(nw, nh) in
                &[(1, 1), (2, 5), (w * 2, h * 2), ((w / 4).max(1), (h / 4).max(1)), (w * 3 / 2 + 1, h), (w, h + 3)]
            {
                assert_eq!(
                    resize_triangle_rgb(&img, nw, nh),
                    resize(&img, nw, nh, FilterType::Triangle),
                    "rgb {w}x{h} -> {nw}x{nh}"
                );
                assert_eq!(
                    resize_triangle_gray(&gray, nw, nh),
                    resize(&gray, nw, nh, FilterType::Triangle),
                    "gray {w}x{h} -> {nw}x{nh}"
                );
            }
        }
    }

    #[test]
    fn rounding_is_f32_round() {
        let mut x = 0.0f32;
        while x <= 255.0 {
            assert_eq!(round_u8(x), x.round() as u8, "{x}");
            x = f32::from_bits(x.to_bits() + 97);
        }
        for x in [0.5f32, 0.49999997, 1.5, 254.5, 254.49998, 255.0] {
            assert_eq!(round_u8(x), x.round() as u8, "{x}");
        }
    }

    #[test]
    fn gaussian_blur_is_imageprocs_to_the_byte() {
        for (k, &(w, h)) in [(1, 1), (2, 7), (9, 4), (40, 23), (160, 90)].iter().enumerate() {
            let img = noisy(w, h, 10 + k as u64);
            for sigma in [0.5f32, 1.4, 2.3, 5.76] {
                assert_eq!(
                    gaussian_blur_rgb(&img, sigma),
                    imageproc::filter::gaussian_blur_f32(&img, sigma),
                    "{w}x{h} sigma {sigma}"
                );
            }
        }
    }
}
