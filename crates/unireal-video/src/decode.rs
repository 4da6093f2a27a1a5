use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as RawFrame;
use ffmpeg_next as ffmpeg;
use image::{GrayImage, ImageBuffer, RgbImage};

/// Why a video could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: not a readable file: {reason}")]
    NotAFile { path: PathBuf, reason: String },
    #[error("{path}: the file is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: the path is not valid UTF-8, which FFmpeg needs")]
    NonUtf8Path { path: PathBuf },
    #[error("{path}: FFmpeg cannot open it as media: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: no video stream (streams: {streams})")]
    NoVideoStream { path: PathBuf, streams: String },
    #[error("{path}: no decoder for the video codec: {reason}")]
    Decoder { path: PathBuf, reason: String },
    #[error("{path}: too many decode errors ({errors}), the last: {reason}")]
    Corrupt { path: PathBuf, errors: u32, reason: String },
    #[error("{path}: cannot convert frame {index}: {reason}")]
    Convert { path: PathBuf, index: u64, reason: String },
}

static INIT: Once = Once::new();

/// Initialises FFmpeg once and silences its own log (errors are returned, not printed).
/// Set `UNIREAL_FFMPEG_LOG=1` to see FFmpeg's warnings.
pub fn init() {
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        let level = if std::env::var_os("UNIREAL_FFMPEG_LOG").is_some() {
            ffmpeg::util::log::Level::Warning
        } else {
            ffmpeg::util::log::Level::Quiet
        };
        ffmpeg::util::log::set_level(level);
    });
}

/// What a video is, from its container and stream headers.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub path: PathBuf,
    /// Container format name(s), e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    pub codec: String,
    /// Display size: after rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation applied to the coded frames for display: 0, 90, 180 or 270.
    pub rotation: u32,
    /// Average frame rate (frames per second); 0 when unknown.
    pub fps: f64,
    /// Stream or container duration in seconds, when known.
    pub duration_s: Option<f64>,
    /// Frame count from the header, when known (exact count comes from decoding).
    pub frames_hint: Option<u64>,
}

fn rational(r: ffmpeg::Rational) -> f64 {
    if r.denominator() == 0 {
        0.0
    } else {
        r.numerator() as f64 / r.denominator() as f64
    }
}

/// Clockwise display rotation from a display matrix (as `ffmpeg -autorotate` does):
/// `theta = -av_display_rotation_get(matrix)`, rounded to a multiple of 90.
fn rotation_from_matrix(data: &[u8]) -> Option<u32> {
    if data.len() < 36 {
        return None;
    }
    let m = |i: usize| {
        i32::from_le_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]) as f64 / 65536.0
    };
    let (a, b, c, d) = (m(0), m(1), m(3), m(4));
    let sx = (a * a + c * c).sqrt();
    let sy = (b * b + d * d).sqrt();
    if sx == 0.0 || sy == 0.0 {
        return None;
    }
    // av_display_rotation_get = -atan2(b / sy, a / sx) in degrees; theta is its negation.
    let theta = (b / sy).atan2(a / sx).to_degrees();
    let r = ((theta / 90.0).round() as i64).rem_euclid(4) as u32 * 90;
    Some(r)
}

fn check_path(path: &Path) -> Result<(), VideoError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| VideoError::NotAFile { path: path.to_path_buf(), reason: e.to_string() })?;
    if !meta.is_file() {
        return Err(VideoError::NotAFile { path: path.to_path_buf(), reason: "not a regular file".into() });
    }
    if meta.len() == 0 {
        return Err(VideoError::Empty { path: path.to_path_buf() });
    }
    if path.to_str().is_none() {
        return Err(VideoError::NonUtf8Path { path: path.to_path_buf() });
    }
    Ok(())
}

/// Reads a video's headers.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    Ok(VideoReader::open(path, 1)?.info().clone())
}

/// One decoded frame with its position in the stream.
pub struct DecodedFrame {
    /// 0-based index in decode (presentation) order.
    pub index: u64,
    /// Presentation time in seconds from the stream start.
    pub time_s: f64,
    pub raw: RawFrame,
}

/// A forward-only decoder of a file's best video stream.
pub struct VideoReader {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    time_base: f64,
    start_pts: Option<i64>,
    info: VideoInfo,
    next_index: u64,
    eof_sent: bool,
    packets_read: u64,
    errors: u32,
    last_error: String,
    last_time: f64,
}

/// Decode errors tolerated before a file is called corrupt: a few damaged packets in a long
/// video are skipped, a file that is mostly damage is not.
const MAX_ERRORS: u32 = 64;

impl VideoReader {
    /// Opens `path` and its best video stream. `threads` is the decoder's thread count
    /// (0 lets FFmpeg choose).
    pub fn open(path: &Path, threads: usize) -> Result<Self, VideoError> {
        init();
        check_path(path)?;
        let input = ffmpeg::format::input(path)
            .map_err(|e| VideoError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
        let stream = match input.streams().best(ffmpeg::media::Type::Video) {
            Some(s) => s,
            None => {
                let streams = input
                    .streams()
                    .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
                    .collect::<Vec<_>>();
                let streams = if streams.is_empty() { "none".to_string() } else { streams.join(", ") };
                return Err(VideoError::NoVideoStream { path: path.to_path_buf(), streams });
            }
        };
        let stream_index = stream.index();
        let time_base = rational(stream.time_base());
        let mut rotation = 0;
        for sd in stream.side_data() {
            if sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix {
                rotation = rotation_from_matrix(sd.data()).unwrap_or(0);
            }
        }
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| VideoError::Decoder { path: path.to_path_buf(), reason: e.to_string() })?;
        ctx.set_threading(threading::Config { kind: threading::Type::Frame, count: threads, ..Default::default() });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| VideoError::Decoder { path: path.to_path_buf(), reason: e.to_string() })?;
        let (cw, ch) = (decoder.width(), decoder.height());
        if cw == 0 || ch == 0 {
            return Err(VideoError::Decoder {
                path: path.to_path_buf(),
                reason: "the stream has no frame size".into(),
            });
        }
        let (width, height) = if rotation % 180 == 90 { (ch, cw) } else { (cw, ch) };
        let mut fps = rational(stream.avg_frame_rate());
        if !(fps.is_finite() && fps > 0.0) {
            fps = rational(stream.rate());
        }
        let duration_s = if stream.duration() > 0 {
            Some(stream.duration() as f64 * time_base)
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64)
        } else {
            None
        };
        let codec = decoder
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("{:?}", decoder.id()).to_lowercase());
        let info = VideoInfo {
            path: path.to_path_buf(),
            container: input.format().name().to_string(),
            codec,
            width,
            height,
            rotation,
            fps: if fps.is_finite() { fps } else { 0.0 },
            duration_s,
            frames_hint: (stream.frames() > 0).then_some(stream.frames() as u64),
        };
        let start_pts = (stream.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE).then_some(stream.start_time());
        Ok(VideoReader {
            input,
            decoder,
            stream_index,
            time_base,
            start_pts,
            info,
            next_index: 0,
            eof_sent: false,
            packets_read: 0,
            errors: 0,
            last_error: String::new(),
            last_time: -1.0,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decode errors skipped so far.
    pub fn decode_errors(&self) -> u32 {
        self.errors
    }

    fn note_error(&mut self, e: ffmpeg::Error) -> Result<(), VideoError> {
        self.errors += 1;
        self.last_error = e.to_string();
        if self.errors > MAX_ERRORS && self.errors as u64 * 2 > self.packets_read {
            return Err(VideoError::Corrupt {
                path: self.info.path.clone(),
                errors: self.errors,
                reason: self.last_error.clone(),
            });
        }
        Ok(())
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        loop {
            let mut raw = RawFrame::empty();
            match self.decoder.receive_frame(&mut raw) {
                Ok(()) => {
                    let index = self.next_index;
                    self.next_index += 1;
                    let time_s = match raw.timestamp() {
                        Some(ts) => (ts - self.start_pts.unwrap_or(0)) as f64 * self.time_base,
                        None if self.info.fps > 0.0 => index as f64 / self.info.fps,
                        None => index as f64,
                    };
                    // Keep time monotonic even for broken timestamps.
                    let time_s = if time_s > self.last_time { time_s } else { self.last_time + 1e-3 };
                    self.last_time = time_s;
                    return Ok(Some(DecodedFrame { index, time_s, raw }));
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    self.note_error(e)?;
                    if self.eof_sent {
                        return Ok(None);
                    }
                }
            }
            if self.eof_sent {
                // Draining: EAGAIN after EOF should not happen; stop rather than spin.
                return Ok(None);
            }
            // Feed the decoder the next packet of our stream.
            loop {
                let mut packet = ffmpeg::Packet::empty();
                match packet.read(&mut self.input) {
                    Ok(()) => {
                        if packet.stream() != self.stream_index {
                            continue;
                        }
                        self.packets_read += 1;
                        if let Err(e) = self.decoder.send_packet(&packet) {
                            self.note_error(e)?;
                        }
                        break;
                    }
                    Err(ffmpeg::Error::Eof) => {
                        let _ = self.decoder.send_eof();
                        self.eof_sent = true;
                        break;
                    }
                    Err(e) => {
                        self.note_error(e)?;
                        // A read error that repeats without progress ends the stream.
                        if self.errors > MAX_ERRORS {
                            let _ = self.decoder.send_eof();
                            self.eof_sent = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Converts decoded frames to RGB at any size with swscale, then applies the rotation.
/// Keeps one scaler per (input format, size, output size).
pub struct FrameConverter {
    rotation: u32,
    /// Scaler contexts with their reused output frames, by (input format, size, output
    /// format, output size, fast).
    scalers: Vec<(ScalerKey, scaling::Context, RawFrame)>,
}

type ScalerKey = (Pixel, u32, u32, Pixel, u32, u32, bool);

// SAFETY: an SwsContext is owned by one converter and only used through &mut self.
unsafe impl Send for FrameConverter {}

impl FrameConverter {
    pub fn new(info: &VideoInfo) -> Self {
        FrameConverter { rotation: info.rotation, scalers: Vec::new() }
    }

    /// The frame as RGB with display size `(w, h)` (after rotation), area-averaged: for frames
    /// that are stored or shown.
    pub fn rgb(&mut self, frame: &DecodedFrame, w: u32, h: u32) -> Result<RgbImage, String> {
        self.convert(frame, w, h, false, false)
    }

    /// Like [`rgb`](Self::rgb) but with swscale's fast bilinear filter: for the small analysis
    /// frames (motion, change measures), where speed matters more than the last bit of
    /// anti-aliasing.
    pub fn rgb_fast(&mut self, frame: &DecodedFrame, w: u32, h: u32) -> Result<RgbImage, String> {
        self.convert(frame, w, h, true, false)
    }

    /// The small frame of cut detection, which every decoded frame goes through: 8-bit 4:2:0
    /// frames (nearly all video) sampled straight from their planes (luma bilinear, chroma
    /// bilinear along the row from the nearest chroma row, weights in 1/64), 3–4× faster than
    /// swscale's fast bilinear and close to it, not equal; other formats as
    /// [`rgb_fast`](Self::rgb_fast).
    pub fn rgb_sampled(&mut self, frame: &DecodedFrame, w: u32, h: u32) -> Result<RgbImage, String> {
        self.convert(frame, w, h, true, true)
    }

    fn convert(&mut self, frame: &DecodedFrame, w: u32, h: u32, fast: bool, sampled: bool) -> Result<RgbImage, String> {
        let (sw, sh) = if self.rotation % 180 == 90 { (h, w) } else { (w, h) };
        let raw = &frame.raw;
        let full_range = match raw.format() {
            Pixel::YUV420P => Some(false),
            Pixel::YUVJ420P => Some(true),
            _ => None,
        };
        let img = match full_range {
            Some(full_range)
                if sampled
                    && raw.width() >= 2
                    && raw.height() >= 2
                    && sw >= 1
                    && sh >= 1
                    && sw <= raw.width()
                    && sh <= raw.height() =>
            {
                let plane = |i: usize| crate::small::Plane {
                    data: raw.data(i),
                    stride: raw.stride(i),
                    width: raw.plane_width(i) as usize,
                    height: raw.plane_height(i) as usize,
                };
                crate::small::yuv420_to_rgb(plane(0), plane(1), plane(2), full_range, sw, sh, true)
            }
            _ => RgbImage::from_raw(sw, sh, self.swscale(raw, Pixel::RGB24, sw, sh, fast)?)
                .ok_or("swscale returned a short frame")?,
        };
        Ok(self.rotated(img))
    }

    /// The frame's luma as gray at display size `(w, h)`, area-averaged, expanded to full
    /// range as swscale does: for the structural comparison of candidate frames, without the
    /// chroma and RGB work of [`rgb`](Self::rgb).
    pub fn gray(&mut self, frame: &DecodedFrame, w: u32, h: u32) -> Result<GrayImage, String> {
        let (sw, sh) = if self.rotation % 180 == 90 { (h, w) } else { (w, h) };
        let img = GrayImage::from_raw(sw, sh, self.swscale(&frame.raw, Pixel::GRAY8, sw, sh, false)?)
            .ok_or("swscale returned a short frame")?;
        Ok(self.rotated(img))
    }

    /// An image converted at stored size, turned to display orientation.
    fn rotated<P: image::Pixel + 'static>(
        &self,
        img: ImageBuffer<P, Vec<P::Subpixel>>,
    ) -> ImageBuffer<P, Vec<P::Subpixel>> {
        match self.rotation {
            90 => image::imageops::rotate90(&img),
            180 => image::imageops::rotate180(&img),
            270 => image::imageops::rotate270(&img),
            _ => img,
        }
    }

    /// The frame scaled to `(sw, sh)` in `format` (RGB24 or GRAY8), rows packed.
    fn swscale(&mut self, raw: &RawFrame, format: Pixel, sw: u32, sh: u32, fast: bool) -> Result<Vec<u8>, String> {
        let key = (raw.format(), raw.width(), raw.height(), format, sw, sh, fast);
        let pos = match self.scalers.iter().position(|s| s.0 == key) {
            Some(p) => p,
            None => {
                let flags = if fast { scaling::Flags::FAST_BILINEAR } else { scaling::Flags::AREA };
                let ctx = scaling::Context::get(key.0, key.1, key.2, format, sw, sh, flags)
                    .map_err(|e| format!("swscale {:?} {}x{} -> {format:?} {sw}x{sh}: {e}", key.0, key.1, key.2))?;
                if self.scalers.len() >= 8 {
                    self.scalers.remove(0);
                }
                self.scalers.push((key, ctx, RawFrame::empty()));
                self.scalers.len() - 1
            }
        };
        let (_, ctx, out) = &mut self.scalers[pos];
        ctx.run(raw, out).map_err(|e| e.to_string())?;
        let (stride, data) = (out.stride(0), out.data(0));
        let row = sw as usize * if format == Pixel::GRAY8 { 1 } else { 3 };
        let mut buf = Vec::with_capacity(row * sh as usize);
        for y in 0..sh as usize {
            buf.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(deg: f64) -> Vec<u8> {
        // av_display_rotation_set(matrix, angle) with angle = -deg (counter-clockwise).
        let r = (-deg).to_radians();
        let (c, s) = (r.cos(), r.sin());
        let vals = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
        let mut out = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let fixed = if i == 8 { (v * (1u64 << 30) as f64) as i32 } else { (v * 65536.0).round() as i32 };
            out.extend_from_slice(&fixed.to_le_bytes());
        }
        out
    }

    #[test]
    fn rotation_matrix_angles() {
        for deg in [0.0, 90.0, 180.0, 270.0] {
            assert_eq!(rotation_from_matrix(&matrix(deg)), Some(deg as u32), "{deg}");
        }
        assert_eq!(rotation_from_matrix(&[0u8; 8]), None);
    }
}
