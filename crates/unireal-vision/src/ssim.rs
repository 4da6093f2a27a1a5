//! Structural similarity as scikit-image computes it by default
//! (`skimage.metrics.structural_similarity(a, b, data_range=255)`): a 7×7 uniform window,
//! sample covariance (N/(N−1)), K1 = 0.01, K2 = 0.03, averaged over the windows that lie wholly
//! inside the image. Checked against scikit-image in `tests/reference.rs`.

use image::GrayImage;

const WIN: usize = 7;

/// Integral image of `f(pixel)` with a zero first row and column.
fn integral(w: usize, h: usize, f: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut s = vec![0.0; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0.0;
        for x in 0..w {
            row += f(y * w + x);
            s[(y + 1) * (w + 1) + x + 1] = s[y * (w + 1) + x + 1] + row;
        }
    }
    s
}

/// Mean SSIM of two gray images of the same size. Images smaller than 7×7 compare exactly:
/// 1.0 when equal, else 0.0.
pub fn ssim(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "ssim needs images of the same size");
    let (w, h) = (a.width() as usize, a.height() as usize);
    if w < WIN || h < WIN {
        return if a == b { 1.0 } else { 0.0 };
    }
    let (pa, pb) = (a.as_raw(), b.as_raw());
    let sa = integral(w, h, |i| pa[i] as f64);
    let sb = integral(w, h, |i| pb[i] as f64);
    let saa = integral(w, h, |i| (pa[i] as f64).powi(2));
    let sbb = integral(w, h, |i| (pb[i] as f64).powi(2));
    let sab = integral(w, h, |i| pa[i] as f64 * pb[i] as f64);
    let n = (WIN * WIN) as f64;
    let cov_norm = n / (n - 1.0);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    // Each window's value in a row of windows at a time (a loop the compiler vectorises,
    // the same f64 operations per window), then summed in scan order as before.
    let (stride, nx) = (w + 1, w - WIN + 1);
    let mut vals = vec![0.0; nx];
    let mut total = 0.0;
    for y in 0..=(h - WIN) {
        // The row's window sums: bottom-right − top-right − bottom-left + top-left.
        let sums = |s: &[f64]| -> Vec<f64> {
            let (top, bot) = (&s[y * stride..][..stride], &s[(y + WIN) * stride..][..stride]);
            (0..nx).map(|x| bot[x + WIN] - top[x + WIN] - bot[x] + top[x]).collect()
        };
        let (bx, by, bxx, byy, bxy) = (sums(&sa), sums(&sb), sums(&saa), sums(&sbb), sums(&sab));
        for (x, v) in vals.iter_mut().enumerate() {
            let ux = bx[x] / n;
            let uy = by[x] / n;
            let vx = cov_norm * (bxx[x] / n - ux * ux);
            let vy = cov_norm * (byy[x] / n - uy * uy);
            let vxy = cov_norm * (bxy[x] / n - ux * uy);
            *v = ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        }
        for v in &vals {
            total += v;
        }
    }
    total / ((w - WIN + 1) * (h - WIN + 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u32) -> GrayImage {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        GrayImage::from_fn(w, h, |_, _| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            image::Luma([(s & 0xff) as u8])
        })
    }

    #[test]
    fn identical_is_one_and_different_is_lower() {
        let a = noise(40, 30, 1);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
        let b = noise(40, 30, 2);
        let s = ssim(&a, &b);
        assert!(s < 0.2, "{s}");
        assert!((ssim(&a, &b) - ssim(&b, &a)).abs() < 1e-12);
    }
}
