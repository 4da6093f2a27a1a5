//! Video input through the system FFmpeg (ffmpeg-next): probing, streaming decode with
//! rotation applied, frame conversion at any size through swscale, and shot-cut detection.
//!
//! Decoding is a single forward pass; nothing here keeps more than the current frame, so
//! memory does not grow with the length of a video.

mod decode;
mod shots;
mod small;

pub use decode::{init, probe, DecodedFrame, FrameConverter, VideoError, VideoInfo, VideoReader};
pub use shots::{analysis_size, detect_shots, ContentDetector, ShotOptions, ShotReport};
