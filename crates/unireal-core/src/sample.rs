//! One training sample of any task: the row of the shard contract (see docs/data-format.md).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $kind:literal, { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The spelling used in shards, configs and prompts.
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s { $($s => Ok($name::$var),)+ _ => Err(UnknownName {
                    kind: $kind, value: s.to_string(),
                    expected: [$($s),+].join(", "),
                }) }
            }
        }
    };
}

named_enum!(
    /// The task family a sample belongs to: the six video families of the paper and the
    /// expert-set tasks.
    Task, "task", {
        /// Instructive editing from two frames of one shot.
        Frame2Frame => "frame2frame",
        /// Customization: segmented objects of frame A as assets, frame B as target.
        MultiObject => "multi_object",
        /// Object insertion: asset object + canvas without it → frame with it.
        Insertion => "insertion",
        /// "Add a …": a frame without an object → the frame with it.
        ObjectAdd => "object_add",
        /// Referring segmentation as generation: frame + phrase → mask.
        Seg => "seg",
        /// Frame ↔ condition map (edges, depth, …).
        Control => "control",
        /// Expert instruction-editing sets (InstructPix2Pix, UltraEdit, MagicBrush).
        Edit => "edit",
        /// Virtual try-on (VITON-HD).
        TryOn => "try_on",
        /// Text-to-image pairs.
        TextToImage => "t2i",
    }
);

named_enum!(
    /// The role of one image of a sample: inputs are asset, canvas or control; outputs are
    /// output. Inputs come first in a sample, outputs last.
    ImageRole, "image role", {
        Asset => "asset",
        Canvas => "canvas",
        Control => "control",
        Output => "output",
    }
);

named_enum!(
    /// Train, held-out validation, or an evaluation set (`test`: never trained on; its rows
    /// may have no output image, e.g. EMU Edit or DreamBench prompts).
    Split, "split", {
        Train => "train",
        Val => "val",
        Test => "test",
    }
);

impl ImageRole {
    /// Whether an image of this role is an input (conditioning) frame.
    pub fn is_input(self) -> bool {
        self != ImageRole::Output
    }
}

/// One image of a sample, encoded (JPEG or PNG bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleImage {
    pub role: ImageRole,
    /// `jpeg` or `png`.
    pub encoding: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The keys of `meta` that tie rows to one origin, most specific first: a video (every pair,
/// object and control map cut from it), a DreamBench subject, a MagicBrush image (its turns).
pub const HOLDOUT_META_KEYS: [&str; 3] = ["video", "subject", "img_id"];

/// The key that held-out validation splits by, so that no origin lands on both sides: the
/// first of [`HOLDOUT_META_KEYS`] present in `meta` (with its name, so that keys of different
/// kinds never meet), else the sample id (rows independent of one another).
pub fn holdout_key(meta: &serde_json::Value, sample_id: &str) -> String {
    HOLDOUT_META_KEYS
        .iter()
        .find_map(|k| {
            meta.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| format!("{k}:{}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        })
        .unwrap_or_else(|| format!("sample:{sample_id}"))
}

/// One row of the shard contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub sample_id: String,
    pub task: Task,
    /// Where it came from: `video`, or an expert set's name.
    pub source: String,
    pub split: Split,
    pub base_prompt: String,
    pub context_prompt: String,
    /// Inputs first, outputs last.
    pub images: Vec<SampleImage>,
    /// Provenance and scores.
    pub meta: serde_json::Value,
}

impl Sample {
    /// Number of input images and of output images.
    pub fn signature(&self) -> (usize, usize) {
        let outputs = self.images.iter().filter(|i| i.role == ImageRole::Output).count();
        (self.images.len() - outputs, outputs)
    }

    /// Checks the ordering rule (inputs first, at least one output; `test` rows may have
    /// none, but then at least one input).
    pub fn check(&self) -> Result<(), String> {
        let (inputs, outputs) = self.signature();
        if outputs == 0 && self.split != Split::Test {
            return Err(format!("sample {} has no output image", self.sample_id));
        }
        if inputs + outputs == 0 {
            return Err(format!("sample {} has no image", self.sample_id));
        }
        let first_output = self.images.iter().position(|i| i.role == ImageRole::Output).unwrap_or(self.images.len());
        if self.images[first_output..].iter().any(|i| i.role.is_input()) {
            return Err(format!("sample {}: an input image follows an output image", self.sample_id));
        }
        Ok(())
    }
}

/// A stable sample id: the first 128 bits of BLAKE3 over the task, the source and the parts
/// that identify the sample within it (video key, frame indices, …), as 32 hex digits.
/// Parts are length-prefixed so that `("ab","c")` and `("a","bc")` differ.
pub fn sample_id(task: Task, source: &str, parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in [task.as_str(), source].iter().chain(parts.iter()) {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_named() {
        for t in Task::ALL {
            assert_eq!(t.as_str().parse::<Task>().unwrap(), *t);
        }
        let err = "frame_2_frame".parse::<Task>().unwrap_err();
        assert!(err.to_string().contains("frame_2_frame"));
        assert!(err.to_string().contains("frame2frame"));
        assert_eq!(serde_json::to_string(&ImageRole::Canvas).unwrap(), "\"canvas\"");
    }

    #[test]
    fn sample_ids_are_stable_and_distinct() {
        let a = sample_id(Task::Frame2Frame, "video", &["bikes.mp4", "10", "35"]);
        assert_eq!(a, sample_id(Task::Frame2Frame, "video", &["bikes.mp4", "10", "35"]));
        assert_eq!(a.len(), 32);
        assert_ne!(a, sample_id(Task::Frame2Frame, "video", &["bikes.mp4", "103", "5"]));
        assert_ne!(a, sample_id(Task::Seg, "video", &["bikes.mp4", "10", "35"]));
    }

    #[test]
    fn check_rejects_bad_order() {
        let img = |role| SampleImage { role, encoding: "jpeg".into(), bytes: vec![], width: 1, height: 1 };
        let mut s = Sample {
            sample_id: "x".into(),
            task: Task::Frame2Frame,
            source: "video".into(),
            split: Split::Train,
            base_prompt: String::new(),
            context_prompt: String::new(),
            images: vec![img(ImageRole::Canvas), img(ImageRole::Output)],
            meta: serde_json::Value::Null,
        };
        assert!(s.check().is_ok());
        assert_eq!(s.signature(), (1, 1));
        s.images.reverse();
        assert!(s.check().is_err());
        s.images = vec![img(ImageRole::Canvas)];
        assert!(s.check().is_err());
        s.split = Split::Test;
        assert!(s.check().is_ok(), "evaluation rows may lack an output");
        s.images.clear();
        assert!(s.check().is_err());
    }
}
