//! Images ↔ tensors: aspect buckets, the resize-and-crop every image of a sample gets, pixels
//! as `[3, H, W]` floats in [−1, 1], and PNG output (single images and the trainer's grids).

use std::path::Path;

use image::imageops::FilterType;

use crate::error::{PipelineError, Result};

/// A bucket: target size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub width: u32,
    pub height: u32,
}

/// Bucket sizes for `resolution²` area at each aspect ratio, both sides multiples of `align`.
pub fn buckets(resolution: u32, aspect_ratios: &[f64], align: u32) -> Vec<Bucket> {
    aspect_ratios
        .iter()
        .map(|&a| {
            let area = (resolution as f64).powi(2);
            let w = (area * a).sqrt();
            let h = w / a;
            let snap = |x: f64| (((x / align as f64).round() as u32).max(1)) * align;
            Bucket { width: snap(w), height: snap(h) }
        })
        .collect()
}

/// The bucket whose aspect ratio is nearest to `w/h` in log space.
pub fn nearest_bucket(buckets: &[Bucket], w: u32, h: u32) -> usize {
    let r = (w.max(1) as f64 / h.max(1) as f64).ln();
    (0..buckets.len())
        .min_by(|&a, &b| {
            let da = (r - (buckets[a].width as f64 / buckets[a].height as f64).ln()).abs();
            let db = (r - (buckets[b].width as f64 / buckets[b].height as f64).ln()).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(0)
}

/// Decodes an image, scales it to cover `bucket` and centre-crops, as `[3, H, W]` in [−1, 1].
pub fn load_pixels(bytes: &[u8], bucket: Bucket) -> Result<Vec<f32>, image::ImageError> {
    let img = image::load_from_memory(bytes)?.to_rgb8();
    Ok(image_to_chw(&cover_crop(&img, bucket)))
}

/// Opens an image file as RGB.
pub fn open_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(image::open(path).map_err(|source| PipelineError::Image { path: path.to_path_buf(), source })?.to_rgb8())
}

/// Resizes to cover the bucket (keeping aspect) and centre-crops to it.
pub fn cover_crop(img: &image::RgbImage, bucket: Bucket) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let scale = (bucket.width as f64 / w as f64).max(bucket.height as f64 / h as f64);
    let (sw, sh) =
        (((w as f64 * scale).round() as u32).max(bucket.width), ((h as f64 * scale).round() as u32).max(bucket.height));
    let resized = image::imageops::resize(img, sw, sh, FilterType::Triangle);
    let (x, y) = ((sw - bucket.width) / 2, (sh - bucket.height) / 2);
    image::imageops::crop_imm(&resized, x, y, bucket.width, bucket.height).to_image()
}

/// `[H, W, 3]` u8 → `[3, H, W]` f32 in [−1, 1].
pub fn image_to_chw(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p.0[c] as f32 / 127.5 - 1.0;
        }
    }
    out
}

/// `[3, H, W]` floats in [−1, 1] → an RGB image.
pub fn chw_to_image(px: &[f32], w: u32, h: u32) -> image::RgbImage {
    let plane = (w * h) as usize;
    image::RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let v = |c: usize| ((px[c * plane + i].clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// Writes a PNG under a temporary name, then renames it.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(PipelineError::EncodePng)?;
    unireal_core::write_atomic(path, &bytes).map_err(|source| PipelineError::Write { path: path.to_path_buf(), source })
}

/// One row per sample: its input frames, the generated output(s), the target(s), left to right.
pub fn grid(rows: &[Vec<image::RgbImage>], cell: (u32, u32)) -> image::RgbImage {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let pad = 2;
    let (w, h) = (cols * (cell.0 + pad) + pad, rows.len() as u32 * (cell.1 + pad) + pad);
    let mut out = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            image::imageops::replace(
                &mut out,
                img,
                (pad + c as u32 * (cell.0 + pad)) as i64,
                (pad + r as u32 * (cell.1 + pad)) as i64,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_aligned_and_the_nearest_is_by_log_ratio() {
        let b = buckets(256, &[1.0, 16.0 / 9.0, 9.0 / 16.0], 16);
        assert!(b.iter().all(|b| b.width % 16 == 0 && b.height % 16 == 0));
        assert_eq!(b[0], Bucket { width: 256, height: 256 });
        assert_eq!(nearest_bucket(&b, 1920, 1080), 1);
        assert_eq!(nearest_bucket(&b, 1080, 1920), 2);
        assert_eq!(nearest_bucket(&b, 500, 480), 0);
    }

    #[test]
    fn pixels_round_trip_and_cover_crop_fills_the_bucket() {
        let img = image::RgbImage::from_fn(40, 20, |x, y| image::Rgb([x as u8 * 6, y as u8 * 12, 200]));
        let back = chw_to_image(&image_to_chw(&img), 40, 20);
        assert_eq!(img, back);
        let c = cover_crop(&img, Bucket { width: 16, height: 16 });
        assert_eq!(c.dimensions(), (16, 16));
    }
}
