//! Captioners behind one trait, chosen in the build config:
//! - [`BuiltinCaptioner`]: no model; instructions from what is measured between the frames;
//! - [`OpenAiCaptioner`]: an OpenAI-compatible chat-completions endpoint (a VLM);
//! - [`SidecarCaptioner`]: captions given with the inputs (a CSV/JSONL list).
//!
//! and segmenters behind another ([`Segmenter`], chosen by `objects.segmenter`):
//! - motion segmentation over the shot's background model (no model);
//! - an external command speaking JSON lines ([`CommandClient`]; Grounded-SAM 2 and the
//!   like plug in here, as do external depth or pose maps);
//! - sidecar masks in the DAVIS layout.

mod builtin;
pub mod external;
mod openai;
pub mod segment;

pub use builtin::{describe_frame, object_noun, object_phrase, object_place, BuiltinCaptioner};
pub use external::{CommandClient, CommandConfig, CommandError};
pub use openai::{OpenAiCaptioner, OpenAiConfig, UNIREAL_TOOLKIT_PROMPT};
pub use segment::{build_segmenter, SegFrame, SegmentError, SegmentRequest, Segmenter, SegmenterConfig, Track};

use serde::{Deserialize, Serialize};
use unireal_vision::ChangeMeasures;

/// Everything a captioner may use to describe the change from the first frame to the second.
pub struct CaptionRequest<'a> {
    /// The input the pair came from (for messages).
    pub input: &'a str,
    pub first_jpeg: &'a [u8],
    pub second_jpeg: &'a [u8],
    pub change: &'a ChangeMeasures,
    /// A caption given with the input, if any.
    pub sidecar: Option<&'a str>,
    /// Varies wording deterministically (derived from the sample id).
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    #[error("{input}: no sidecar caption for this input and no fallback configured")]
    NoSidecar { input: String },
    #[error("caption endpoint {url}: {message}")]
    Endpoint { url: String, message: String },
    #[error("captioner config: {0}")]
    Config(String),
    /// The build was stopped (Ctrl-C, SIGTERM) before the request was sent.
    #[error("not asked: the build was stopped")]
    Interrupted,
}

impl CaptionError {
    /// Whether the endpoint, not the input, failed (unreachable, timed out, rate-limited,
    /// answering errors after the retries): a later run may well succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CaptionError::Endpoint { .. } | CaptionError::Interrupted)
    }
}

/// Everything a captioner may use to describe one frame (the caption of a control sample).
pub struct DescribeRequest<'a> {
    pub input: &'a str,
    pub jpeg: &'a [u8],
    /// Mean RGB of the frame.
    pub mean_rgb: [f64; 3],
    /// Phrases of the objects found in it ("the yellow object on the right").
    pub objects: &'a [String],
    pub sidecar: Option<&'a str>,
    pub seed: u64,
}

/// Describes the change between two frames as an instruction, and single frames.
pub trait Captioner: Send + Sync {
    /// Short name recorded in each sample's `meta.caption_source`.
    fn name(&self) -> &'static str;
    fn caption(&self, req: &CaptionRequest<'_>) -> Result<String, CaptionError>;
    /// A one-sentence description of a frame.
    fn describe(&self, req: &DescribeRequest<'_>) -> Result<String, CaptionError>;
    /// Requests worth having in flight at once: a remote endpoint's `concurrency`; 1 for a
    /// captioner that answers in-process (the build then asks it directly).
    fn concurrency(&self) -> usize {
        1
    }
}

/// `captioner:` in the build config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CaptionerConfig {
    /// Built-in, no model.
    Builtin,
    /// An OpenAI-compatible endpoint.
    Openai(OpenAiConfig),
    /// Captions from the input list; inputs without one use the built-in captioner when
    /// `fallback_builtin` is true, else they are skipped.
    Sidecar {
        #[serde(default = "yes")]
        fallback_builtin: bool,
    },
}

fn yes() -> bool {
    true
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        CaptionerConfig::Builtin
    }
}

/// Builds the captioner a config names.
pub fn build_captioner(cfg: &CaptionerConfig) -> Result<Box<dyn Captioner>, CaptionError> {
    Ok(match cfg {
        CaptionerConfig::Builtin => Box::new(BuiltinCaptioner),
        CaptionerConfig::Openai(c) => Box::new(OpenAiCaptioner::new(c.clone())?),
        CaptionerConfig::Sidecar { fallback_builtin } => {
            Box::new(SidecarCaptioner { fallback: fallback_builtin.then_some(BuiltinCaptioner) })
        }
    })
}

/// Uses the caption given with the input.
pub struct SidecarCaptioner {
    pub fallback: Option<BuiltinCaptioner>,
}

impl Captioner for SidecarCaptioner {
    fn name(&self) -> &'static str {
        "sidecar"
    }
    fn caption(&self, req: &CaptionRequest<'_>) -> Result<String, CaptionError> {
        match (req.sidecar.map(str::trim).filter(|s| !s.is_empty()), &self.fallback) {
            (Some(s), _) => Ok(s.to_string()),
            (None, Some(b)) => b.caption(req),
            (None, None) => Err(CaptionError::NoSidecar { input: req.input.to_string() }),
        }
    }
    fn describe(&self, req: &DescribeRequest<'_>) -> Result<String, CaptionError> {
        match (req.sidecar.map(str::trim).filter(|s| !s.is_empty()), &self.fallback) {
            (Some(s), _) => Ok(s.to_string()),
            (None, Some(b)) => b.describe(req),
            (None, None) => Err(CaptionError::NoSidecar { input: req.input.to_string() }),
        }
    }
}
