//! The hierarchical prompt vocabulary: index words for frames and the context-prompt tags.

use serde::{Deserialize, Serialize};

use crate::Task;

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

/// Where a sample's images come from, as the context prompt states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Real photographs or video frames (`realistic style`).
    Realistic,
    /// Rendered or generated images (`synthetic style`).
    Synthetic,
    /// Mixed or unknown: no style phrase (OmniGen's X1).
    Unstated,
}

/// The condition map of a control sample and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlContext {
    /// One of the `*Control` tags (`CannyControl`, …, `OtherControl`).
    pub map: ContextTag,
    /// Frame → map (perception) rather than map → frame (generation).
    pub perception: bool,
}

/// The context tags of a sample of `task`: the one table every producer of samples (the video
/// families, the importers) and every consumer (inference defaults) reads, so that the model
/// sees at inference the words it was trained with. `control` applies to `Task::Control` only.
///
/// | task | tags |
/// |---|---|
/// | frame2frame | style, dynamic scene |
/// | multi_object | style, dynamic scene, with reference object |
/// | insertion | style, static scene, with reference object |
/// | object_add, edit | style, static scene |
/// | seg | style, perception task |
/// | control (perception) | style, perception task, map |
/// | control (generation) | style, map |
/// | try_on | style, with reference object |
/// | t2i | style |
pub fn task_context(task: Task, style: Style, control: Option<ControlContext>) -> Vec<ContextTag> {
    use ContextTag::*;
    let mut tags = match style {
        Style::Realistic => vec![Realistic],
        Style::Synthetic => vec![Synthetic],
        Style::Unstated => vec![],
    };
    tags.extend_from_slice(match task {
        Task::Frame2Frame => &[DynamicScene][..],
        Task::MultiObject => &[DynamicScene, WithReferenceObject],
        Task::Insertion => &[StaticScene, WithReferenceObject],
        Task::ObjectAdd | Task::Edit => &[StaticScene],
        Task::Seg => &[Perception],
        Task::TryOn => &[WithReferenceObject],
        Task::Control | Task::TextToImage => &[],
    });
    if let (Task::Control, Some(c)) = (task, control) {
        if c.perception {
            tags.push(Perception);
        }
        tags.push(c.map);
    }
    tags
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

    #[test]
    fn task_contexts_follow_the_table() {
        use ContextTag::*;
        let ctx = |t, s, c| context_prompt(&task_context(t, s, c));
        assert_eq!(ctx(Task::Frame2Frame, Style::Realistic, None), "realistic style, dynamic scene.");
        assert_eq!(
            ctx(Task::MultiObject, Style::Realistic, None),
            "realistic style, dynamic scene, with reference object."
        );
        assert_eq!(
            ctx(Task::Insertion, Style::Realistic, None),
            "realistic style, static scene, with reference object."
        );
        assert_eq!(ctx(Task::Edit, Style::Synthetic, None), "synthetic style, static scene.");
        assert_eq!(ctx(Task::Seg, Style::Realistic, None), "realistic style, perception task.");
        let canny = |perception| Some(ControlContext { map: CannyControl, perception });
        assert_eq!(
            ctx(Task::Control, Style::Realistic, canny(true)),
            "realistic style, perception task, canny edge control."
        );
        assert_eq!(ctx(Task::Control, Style::Realistic, canny(false)), "realistic style, canny edge control.");
        // A control map on another task is ignored; an unstated style adds no phrase.
        assert_eq!(ctx(Task::TextToImage, Style::Unstated, canny(true)), "");
    }
}
