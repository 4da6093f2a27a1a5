//! Image encoders for the stored images of samples (JPEG frames and maps, lossless PNG masks).

use std::io::Cursor;

use image::{GrayImage, RgbImage};

/// JPEG bytes of an RGB image.
pub fn jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::with_capacity(img.len() / 8));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

/// JPEG bytes of a gray image (one channel).
pub fn jpeg_gray(img: &GrayImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::with_capacity(img.len() / 8));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

/// PNG bytes of a gray image (masks and binary maps: lossless).
pub fn png_gray(img: &GrayImage) -> Result<Vec<u8>, String> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}
