//! Images ↔ tensors: aspect buckets, the resize-and-crop every image of a sample gets, pixels
//! as `[3, H, W]` floats in [−1, 1], and PNG output (single images and the trainer's grids).

use std::path::Path;

use image::imageops::FilterType;

use unireal_core::{ImageRole, SampleImage};

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

/// The background asset images are fitted on: white, as the object families and the
/// customization sets store their assets (objects cut out on white).
pub const ASSET_BACKGROUND: image::Rgb<u8> = image::Rgb([255, 255, 255]);

/// How the images of one sample reach its bucket. Canvas, control and output images are
/// pixel-aligned views of one scene: each is first brought to the size of the reference (the
/// first output, else the first canvas or control image) and then gets the reference's one
/// cover-and-centre-crop, so a pixel of the canvas lands exactly where the same pixel of the
/// output does. Asset images are subjects to reuse, not aligned with anything: they are fitted
/// whole inside the bucket and letterboxed on [`ASSET_BACKGROUND`], so no part is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleFit {
    pub bucket: Bucket,
    /// Size of the reference image; `None` when the sample has only assets.
    pub reference: Option<(u32, u32)>,
}

impl SampleFit {
    /// The fit of a sample whose images have these roles and sizes (in sample order).
    pub fn new(bucket: Bucket, images: impl IntoIterator<Item = (ImageRole, (u32, u32))>) -> SampleFit {
        SampleFit { bucket, reference: SampleFit::reference(images) }
    }

    /// The size every aligned image is brought to: the first output's, else the first canvas
    /// or control image's; `None` when the sample has only assets.
    pub fn reference(images: impl IntoIterator<Item = (ImageRole, (u32, u32))>) -> Option<(u32, u32)> {
        let images: Vec<(ImageRole, (u32, u32))> = images.into_iter().collect();
        images
            .iter()
            .find(|(r, _)| *r == ImageRole::Output)
            .or_else(|| images.iter().find(|(r, _)| matches!(r, ImageRole::Canvas | ImageRole::Control)))
            .map(|(_, size)| *size)
    }

    /// `img` (of role `role`) at the bucket's size.
    pub fn apply(&self, img: &image::RgbImage, role: ImageRole) -> image::RgbImage {
        match (role, self.reference) {
            (ImageRole::Asset, _) => letterbox(img, self.bucket, ASSET_BACKGROUND),
            (_, Some((w, h))) if img.dimensions() != (w, h) => {
                cover_crop(&image::imageops::resize(img, w, h, FilterType::Triangle), self.bucket)
            }
            _ => cover_crop(img, self.bucket),
        }
    }
}

/// Decodes every image of a sample and fits it to `bucket` ([`SampleFit`]), as `[3, H, W]` in
/// [−1, 1], in sample order. The error carries the index of the image that failed.
pub fn load_sample_pixels(
    images: &[SampleImage],
    bucket: Bucket,
) -> std::result::Result<Vec<Vec<f32>>, (usize, image::ImageError)> {
    let fit = SampleFit::new(bucket, images.iter().map(|im| (im.role, (im.width, im.height))));
    images
        .iter()
        .enumerate()
        .map(|(k, im)| {
            let img = image::load_from_memory(&im.bytes).map_err(|e| (k, e))?.to_rgb8();
            Ok(image_to_chw(&fit.apply(&img, im.role)))
        })
        .collect()
}

/// Resizes to fit inside the bucket (keeping aspect) and centres it on `background`: the
/// whole image is kept.
pub fn letterbox(img: &image::RgbImage, bucket: Bucket, background: image::Rgb<u8>) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let scale = (bucket.width as f64 / w as f64).min(bucket.height as f64 / h as f64);
    let fit = |side: u32, max: u32| ((side as f64 * scale).round() as u32).clamp(1, max);
    let (sw, sh) = (fit(w, bucket.width), fit(h, bucket.height));
    let resized = image::imageops::resize(img, sw, sh, FilterType::Triangle);
    let mut out = image::RgbImage::from_pixel(bucket.width, bucket.height, background);
    let (x, y) = ((bucket.width - sw) / 2, (bucket.height - sh) / 2);
    image::imageops::replace(&mut out, &resized, x as i64, y as i64);
    out
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

/// Peak signal-to-noise ratio of `a` against `b` (same size), in dB over 8-bit RGB: the
/// figure the demo and the quality tests report. Identical images give infinity.
pub fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "psnr of images of different sizes");
    let n = a.as_raw().len().max(1) as f64;
    let mse = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / n;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// A flat image of `img`'s mean colour: the baseline a picture must beat to show more than
/// the average of its scene (its PSNR against `img` is set by the image's own variance).
pub fn mean_colour(img: &image::RgbImage) -> image::RgbImage {
    let n = (img.width() as u64 * img.height() as u64).max(1) as f64;
    let mut sum = [0f64; 3];
    for p in img.pixels() {
        for (s, &v) in sum.iter_mut().zip(&p.0) {
            *s += v as f64;
        }
    }
    let mean = sum.map(|s| (s / n).round() as u8);
    image::RgbImage::from_pixel(img.width(), img.height(), image::Rgb(mean))
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
    fn psnr_against_known_errors_and_the_mean_colour_baseline() {
        let a = image::RgbImage::from_fn(8, 4, |x, y| image::Rgb([(x * 30) as u8, (y * 60) as u8, 100]));
        assert_eq!(psnr(&a, &a), f64::INFINITY);
        // Every channel of every pixel off by 5: MSE 25.
        let b = image::RgbImage::from_fn(8, 4, |x, y| {
            let p = a.get_pixel(x, y).0;
            image::Rgb([p[0] + 5, p[1] + 5, p[2] + 5])
        });
        assert!((psnr(&a, &b) - 10.0 * (65025.0f64 / 25.0).log10()).abs() < 1e-9);
        let m = mean_colour(&a);
        assert_eq!(m.get_pixel(0, 0).0, [105, 90, 100]);
        assert!(m.pixels().all(|p| p == m.get_pixel(7, 3)));
        assert!(psnr(&a, &m) < psnr(&a, &b));
    }

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

    fn png(img: &image::RgbImage, role: ImageRole) -> SampleImage {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        SampleImage { role, encoding: "png".into(), bytes, width: img.width(), height: img.height() }
    }

    /// A scene and a second view of it at another resolution (a control map made at half size).
    fn scene(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x ^ y) & 0xff) as u8])
        })
    }

    #[test]
    fn canvas_control_and_output_get_one_crop_pixel_for_pixel() {
        let bucket = Bucket { width: 24, height: 32 };
        let out = scene(120, 80);
        // The canvas is the same frame; the control map was made at half the resolution.
        let control = image::imageops::resize(&out, 60, 40, FilterType::Triangle);
        let imgs = [png(&out, ImageRole::Canvas), png(&control, ImageRole::Control), png(&out, ImageRole::Output)];
        let px = load_sample_pixels(&imgs, bucket).unwrap();
        assert_eq!(px[0], px[2], "canvas and output crops differ");
        assert_eq!(px[0].len(), 3 * 24 * 32);
        // The control map lands where the frame does: same crop of the same content, up to the
        // resampling of the smaller map.
        let mean_abs: f32 = px[1].iter().zip(&px[2]).map(|(a, b)| (a - b).abs()).sum::<f32>() / px[1].len() as f32;
        assert!(mean_abs < 0.03, "control map misaligned: mean |diff| {mean_abs}");
        // What the crop keeps is the centre of the frame: the middle column of the output
        // bucket is the middle column of the frame.
        let fit = SampleFit::new(bucket, imgs.iter().map(|i| (i.role, (i.width, i.height))));
        assert_eq!(fit.reference, Some((120, 80)));
        assert_eq!(fit.apply(&out, ImageRole::Canvas), cover_crop(&out, bucket));

        // A control map of the whole frame stored at another aspect ratio (squeezed into
        // 80×40): one transform stretches it back to the frame's size first, so it still
        // lands where the frame does. Cropped on its own, as before, it would not.
        let squeezed = image::imageops::resize(&out, 80, 40, FilterType::Triangle);
        let imgs = [png(&squeezed, ImageRole::Control), png(&out, ImageRole::Output)];
        let px = load_sample_pixels(&imgs, bucket).unwrap();
        // The red channel is the column's position in the frame.
        let red = |v: &[f32]| v[..24 * 32].to_vec();
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
        let aligned = diff(&red(&px[0]), &red(&px[1]));
        let alone = diff(&red(&image_to_chw(&cover_crop(&squeezed, bucket))), &red(&px[1]));
        assert!(aligned < 0.02, "the squeezed control map is misaligned: mean |diff| {aligned}");
        assert!(alone > 0.04, "a crop of its own would have been aligned too ({alone}): the test shows nothing");
    }

    #[test]
    fn a_tall_asset_keeps_every_mask_pixel() {
        // A tall cut-out on white: red blocks at its very top and bottom.
        let mut asset = image::RgbImage::from_pixel(30, 120, ASSET_BACKGROUND);
        for y in (0..10).chain(110..120) {
            for x in 5..25 {
                asset.put_pixel(x, y, image::Rgb([255, 0, 0]));
            }
        }
        let bucket = Bucket { width: 64, height: 48 };
        let fitted = letterbox(&asset, bucket, ASSET_BACKGROUND);
        assert_eq!(fitted.dimensions(), (64, 48));
        let red_rows: Vec<u32> = (0..48).filter(|&y| (0..64).any(|x| fitted.get_pixel(x, y).0[1] < 128)).collect();
        // Both blocks survive: the first and last rows of the fitted asset are red.
        assert_eq!(red_rows.first(), Some(&0), "the top of the asset was cut");
        assert_eq!(red_rows.last(), Some(&47), "the bottom of the asset was cut");
        // Covering the bucket would have cut both.
        let cut = cover_crop(&asset, bucket);
        assert!((0..64).all(|x| cut.get_pixel(x, 0).0[1] > 128), "cover_crop keeps the top after all?");
        // Through the sample loader, with the asset beside a canvas and an output.
        let frame = scene(80, 60);
        let imgs = [png(&asset, ImageRole::Asset), png(&frame, ImageRole::Canvas), png(&frame, ImageRole::Output)];
        let px = load_sample_pixels(&imgs, bucket).unwrap();
        assert_eq!(chw_to_image(&px[0], 64, 48), fitted);
        assert_eq!(px[1], px[2]);
    }
}
