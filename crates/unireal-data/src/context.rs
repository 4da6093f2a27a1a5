//! What every stage of one video shares: the input, the build config, the captioner, the
//! stream's info and the stored frame size; the frames of an analysed pair and the objects
//! tracked from A to B; small helpers. A leaf of the video modules, which form a chain:
//! frame2frame → objects → families → context.

use image::RgbImage;
use serde_json::json;
use unireal_annotate::{object_noun, object_place, Captioner};
use unireal_core::{context_prompt, task_context, ControlContext, Split, Style, Task};
use unireal_video::VideoInfo;
use unireal_vision::mask::Mask;
use unireal_vision::{fit_long_side, ObjectStats};

use crate::captions::{self, Answer, Ask, CaptionPool};
use crate::config::{BuildConfig, SplitBy};
use crate::inputs::InputItem;

/// One video being built.
pub(crate) struct VideoContext<'a> {
    pub item: &'a InputItem,
    pub cfg: &'a BuildConfig,
    pub captioner: &'a dyn Captioner,
    /// The build's caption request pool, for a remote captioner (crate::captions).
    pub captions: Option<&'a CaptionPool>,
    pub info: &'a VideoInfo,
    /// The stored frame size (`frames.max_side`).
    pub out_size: (u32, u32),
}

impl<'a> VideoContext<'a> {
    pub fn new(
        item: &'a InputItem,
        cfg: &'a BuildConfig,
        (captioner, captions): (&'a dyn Captioner, Option<&'a CaptionPool>),
        info: &'a VideoInfo,
    ) -> Self {
        let out_size = fit_long_side(info.width, info.height, cfg.frames.max_side);
        VideoContext { item, cfg, captioner, captions, info, out_size }
    }

    /// Asks the captioner, through the pool when there is one.
    pub fn ask(&self, ask: Ask) -> Answer {
        captions::ask(self.captioner, self.captions, ask)
    }

    /// The input's key (its manifest path).
    pub fn key(&self) -> &'a str {
        &self.item.key
    }

    /// The split of sample `id` of this video.
    pub fn split(&self, id: &str) -> Split {
        let u = match self.cfg.split.by {
            SplitBy::Video => unireal_shards::unit_hash(&format!("split:{}", self.key())),
            SplitBy::Sample => unireal_shards::unit_hash(&format!("split:{id}")),
        };
        if u < self.cfg.split.val_fraction {
            Split::Val
        } else {
            Split::Train
        }
    }

    /// The context prompt of a sample of `task` (video frames: realistic style).
    pub fn context_prompt(&self, task: Task, control: Option<ControlContext>) -> String {
        context_prompt(&task_context(task, Style::Realistic, control))
    }

    /// JPEG bytes of a stored frame or crop (`frames.jpeg_quality`).
    pub fn jpeg(&self, img: &RgbImage) -> Result<Vec<u8>, String> {
        unireal_vision::encode::jpeg(img, self.cfg.frames.jpeg_quality)
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Frame A or B of an analysed pair.
pub(crate) struct PairFrame {
    pub index: u64,
    pub time_s: f64,
    /// At the stored size (`frames.max_side`).
    pub full: RgbImage,
    /// At `objects.mask_side`.
    pub seg: RgbImage,
    /// At analysis size.
    pub small: RgbImage,
}

/// An object as seen in one frame of the pair: its mask (at `mask_side`) that passed the
/// filters, and what is measured of it there.
pub(crate) struct Seen {
    pub mask: Mask,
    pub stats: ObjectStats,
    /// `mask` at the stored frame size, made once when a family first needs it.
    pub full: std::cell::OnceCell<Mask>,
}

impl Seen {
    pub fn new(stats: ObjectStats, mask: Mask) -> Self {
        Seen { mask, stats, full: Default::default() }
    }
}

/// An object that passed the filters in A, B or both.
pub(crate) struct TrackedObject {
    /// The segmenter's phrase, or one from what is measured.
    pub phrase: String,
    pub given_phrase: Option<String>,
    pub a: Option<Seen>,
    pub b: Option<Seen>,
}

impl TrackedObject {
    /// "yellow object" (measured) or the segmenter's phrase without its article.
    pub fn noun(&self, stats: &ObjectStats) -> String {
        match &self.given_phrase {
            Some(p) => {
                let p = p.trim();
                ["the ", "a ", "an "].iter().find_map(|a| p.strip_prefix(a)).unwrap_or(p).to_string()
            }
            None => object_noun(stats),
        }
    }

    /// "the yellow object on the right", placed where it is in the given frame.
    pub fn named(&self, stats: &ObjectStats) -> String {
        format!("the {} {}", self.noun(stats), object_place(stats))
    }

    pub fn meta(&self) -> serde_json::Value {
        let s = |o: &Option<Seen>| {
            o.as_ref().map(|o| {
                let o = &o.stats;
                json!({"bbox": o.bbox.map(round3), "area": round3(o.area), "color": unireal_vision::color_name(o.color)})
            })
        };
        json!({"phrase": self.phrase, "a": s(&self.a), "b": s(&self.b)})
    }
}
