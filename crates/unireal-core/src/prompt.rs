//! The hierarchical prompt vocabulary: index words for frames and the context-prompt tags.

use serde::{Deserialize, Serialize};

/// The index word of input image `k` (1-based): `IMG1`, `IMG2`, …
pub fn index_word(k: usize) -> String {
    format!("IMG{k}")
}

/// The index word of output image `k` (1-based): `RES1`, …
pub fn result_word(k: usize) -> String {
    format!("RES{k}")
}

/// A phrase of the context prompt, which describes the data rather than the instruction.
/// The vocabulary is closed so that the model sees the same words for the same property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextTag {
    /// Real photographs or video frames.
    Realistic,
    /// Rendered or generated images.
    Synthetic,
    /// Input and output share the exact background (pixel-aligned edits).
    StaticScene,
    /// The scene moved between input and output (camera or subjects).
    DynamicScene,
    /// The output contains an object given as an asset image.
    WithReferenceObject,
    /// The output is a perception map (mask, edges, depth).
    Perception,
    /// The condition map of a control sample (input for generation, output for perception)
    /// is of this type.
    CannyControl,
    GrayControl,
    BlurControl,
    LowResControl,
    MaskControl,
    DepthControl,
    PoseControl,
    /// Another external condition map.
    OtherControl,
}

impl ContextTag {
    pub fn phrase(self) -> &'static str {
        match self {
            ContextTag::Realistic => "realistic style",
            ContextTag::Synthetic => "synthetic style",
            ContextTag::StaticScene => "static scene",
            ContextTag::DynamicScene => "dynamic scene",
            ContextTag::WithReferenceObject => "with reference object",
            ContextTag::Perception => "perception task",
            ContextTag::CannyControl => "canny edge control",
            ContextTag::GrayControl => "grayscale control",
            ContextTag::BlurControl => "blur control",
            ContextTag::LowResControl => "low resolution control",
            ContextTag::MaskControl => "mask control",
            ContextTag::DepthControl => "depth control",
            ContextTag::PoseControl => "pose control",
            ContextTag::OtherControl => "condition map control",
        }
    }
}

/// Joins tags into the context prompt: `"realistic style, dynamic scene."`.
pub fn context_prompt(tags: &[ContextTag]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let mut s = tags.iter().map(|t| t.phrase()).collect::<Vec<_>>().join(", ");
    s.push('.');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_context() {
        assert_eq!(index_word(1), "IMG1");
        assert_eq!(result_word(2), "RES2");
        assert_eq!(
            context_prompt(&[ContextTag::Realistic, ContextTag::DynamicScene]),
            "realistic style, dynamic scene."
        );
        assert_eq!(context_prompt(&[]), "");
    }
}
