//! Small helpers every sample builder uses: image encoders and stable hashes.

use std::io::Cursor;

use image::{GrayImage, RgbImage};

/// JPEG bytes of an RGB image.
pub(crate) fn jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::with_capacity(img.len() / 8));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

/// JPEG bytes of a gray image (one channel).
pub(crate) fn jpeg_gray(img: &GrayImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::with_capacity(img.len() / 8));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

/// PNG bytes of a gray image (masks and binary maps: lossless).
pub(crate) fn png_gray(img: &GrayImage) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

/// A stable 64-bit number from a string (the first 8 bytes of its BLAKE3 hash).
pub(crate) fn stable_u64(s: &str) -> u64 {
    let h = blake3::hash(s.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A stable number in [0, 1) from a string.
pub(crate) fn unit_hash(s: &str) -> f64 {
    stable_u64(s) as f64 / (u64::MAX as f64 + 1.0)
}
