//! Image encoders for the stored images of samples (JPEG frames and maps, lossless PNG masks).

use std::io::Cursor;

use image::{GrayImage, RgbImage};

/// JPEG bytes of an RGB image: baseline, 4:4:4 (no chroma subsampling), standard tables
/// scaled to `quality` (1–100), as libjpeg does.
pub fn jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    encode(img.as_raw(), img.dimensions(), jpeg_encoder::ColorType::Rgb, quality)
}

/// JPEG bytes of a gray image (one channel).
pub fn jpeg_gray(img: &GrayImage, quality: u8) -> Result<Vec<u8>, String> {
    encode(img.as_raw(), img.dimensions(), jpeg_encoder::ColorType::Luma, quality)
}

fn encode(raw: &[u8], (w, h): (u32, u32), color: jpeg_encoder::ColorType, quality: u8) -> Result<Vec<u8>, String> {
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(format!("a {w}x{h} image is larger than JPEG allows (65535 px a side)"));
    };
    let mut buf = Vec::with_capacity(raw.len() / 8);
    let mut enc = jpeg_encoder::Encoder::new(&mut buf, quality.clamp(1, 100));
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    enc.encode(raw, w16, h16, color).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// PNG bytes of a gray image (masks and binary maps: lossless).
pub fn png_gray(img: &GrayImage) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64
    }

    #[test]
    fn jpeg_round_trips_a_real_photo_at_odd_sizes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/samples/images/chelsea.png");
        let photo = image::open(path).expect("sample image").to_rgb8();
        // Odd sizes exercise the partial 8×8 blocks at the right and bottom edges.
        let img = image::imageops::crop_imm(&photo, 3, 5, 301, 199).to_image();
        let mut last = f64::MAX;
        for q in [50, 82, 95] {
            let bytes = jpeg(&img, q).unwrap();
            let back = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap().to_rgb8();
            assert_eq!(back.dimensions(), (301, 199));
            let err = mean_abs_diff(img.as_raw(), back.as_raw());
            assert!(err < 6.0, "quality {q}: mean error {err}");
            assert!(err < last, "quality {q} is no closer than a lower one ({err} >= {last})");
            last = err;
        }
        let gray = image::imageops::grayscale(&img);
        let back = image::load_from_memory(&jpeg_gray(&gray, 90).unwrap()).unwrap();
        assert_eq!(back.color(), image::ColorType::L8, "a gray JPEG has one component");
        assert!(mean_abs_diff(gray.as_raw(), back.to_luma8().as_raw()) < 2.0);
        let err = jpeg(&RgbImage::new(70_000, 1), 90).unwrap_err();
        assert!(err.contains("70000x1"), "{err}");
    }
}
