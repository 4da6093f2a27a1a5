//! The object families built from one analysed pair (frames A and B of a shot, their
//! tracked objects and B's background model). Roles and prompts are the reference in
//! docs/data-format.md ("Task families"); context tags are `unireal_core::task_context`'s
//! (realistic style).
//!
//! | family       | images (inputs → output)                        |
//! |--------------|-------------------------------------------------|
//! | multi_object | 1…K objects of A on white (asset) → B          |
//! | insertion    | object of A (asset), B without it (canvas) → B |
//! | object_add   | B without the object (canvas) → B              |
//! | seg          | A (canvas) → the object's mask                 |
//! | control      | A (canvas) → map, or map (control) → A         |

use std::cell::OnceCell;

use image::RgbImage;
use serde_json::json;
use unireal_annotate::{object_place, SegFrame, Segmenter};
use unireal_core::{
    index_word, result_word, sample_id, ContextTag, ControlContext, ImageRole, Sample, SampleImage, Task,
};
use unireal_shards::unit_hash;
use unireal_vision::encode::{self, png_gray};
use unireal_vision::mask::{self, Mask};
use unireal_vision::{condition_map, Background, ConditionKind, ConditionMap};

use crate::captions::{Ask, Deferred};
use crate::config::ControlDirections;
use crate::context::{round3, PairFrame, Seen, TrackedObject, VideoContext};

pub(crate) struct PairContext<'s, 'a> {
    pub video: &'s VideoContext<'a>,
    pub segmenter: &'s dyn Segmenter,
    pub a: &'s PairFrame,
    pub b: &'s PairFrame,
    pub shot: u64,
    pub bg_b: Option<&'s Background>,
    pub objects: Vec<TrackedObject>,
    /// Frames A and B as JPEG, encoded once for every family that stores them.
    a_jpeg: OnceCell<Vec<u8>>,
    b_jpeg: OnceCell<Vec<u8>>,
}

/// What one pair gave.
#[derive(Default)]
pub(crate) struct Built {
    pub samples: Vec<Sample>,
    /// Control samples whose caption the pool has still to answer.
    pub deferred: Deferred,
    pub caption_errors: u64,
    /// Whether any caption error was the endpoint's (down, timed out, rate-limited).
    pub caption_transient: bool,
    /// An external-map error (stops object analysis for the video, like a segmenter error).
    pub error: Option<String>,
    pub skipped: Vec<&'static str>,
}

fn a_or_an(noun: &str) -> &'static str {
    match noun.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn image(role: ImageRole, encoding: &str, bytes: Vec<u8>, (width, height): (u32, u32)) -> SampleImage {
    SampleImage { role, encoding: encoding.into(), bytes, width, height }
}

impl<'s, 'a> PairContext<'s, 'a> {
    pub fn new(
        (video, segmenter): (&'s VideoContext<'a>, &'s dyn Segmenter),
        (a, b): (&'s PairFrame, &'s PairFrame),
        shot: u64,
        bg_b: Option<&'s Background>,
        objects: Vec<TrackedObject>,
    ) -> Self {
        PairContext { video, segmenter, a, b, shot, bg_b, objects, a_jpeg: OnceCell::new(), b_jpeg: OnceCell::new() }
    }

    /// Frame A (`a = true`) or B at the stored size, as JPEG bytes.
    fn frame_jpeg(&self, a: bool) -> Result<Vec<u8>, String> {
        let (cell, frame) = if a { (&self.a_jpeg, self.a) } else { (&self.b_jpeg, self.b) };
        if let Some(j) = cell.get() {
            return Ok(j.clone());
        }
        let j = self.jpeg(&frame.full)?;
        Ok(cell.get_or_init(|| j).clone())
    }

    /// An object of A cropped onto white (the asset image of multi_object and insertion).
    fn object_crop(&self, a: &Seen) -> Option<RgbImage> {
        mask::crop_on_white(&self.a.full, self.full(a), self.cfg().objects.crop_margin)
    }

    /// An object's mask at the stored size.
    fn full<'o>(&self, seen: &'o Seen) -> &'o Mask {
        seen.full.get_or_init(|| self.full_mask(&seen.mask))
    }

    fn cfg(&self) -> &crate::config::BuildConfig {
        self.video.cfg
    }

    fn key(&self) -> &str {
        self.video.key()
    }

    fn id(&self, task: Task, parts: &[&str]) -> String {
        let (a, b) = (self.a.index.to_string(), self.b.index.to_string());
        let mut all = vec![self.key(), a.as_str(), b.as_str()];
        all.extend_from_slice(parts);
        sample_id(task, "video", &all)
    }

    /// Whether the family is on and this sample falls in its kept fraction.
    fn keep(&self, task: Task, id: &str) -> bool {
        self.cfg().families.get(task).is_some_and(|f| f.enabled && unit_hash(&format!("keep:{id}")) < f.weight)
    }

    fn seed(id: &str) -> u64 {
        u64::from_str_radix(&id[..16], 16).unwrap_or(0)
    }

    fn jpeg(&self, img: &RgbImage) -> Result<Vec<u8>, String> {
        self.video.jpeg(img)
    }

    /// A mask at `mask_side` scaled to the stored frame size.
    fn full_mask(&self, m: &Mask) -> Mask {
        let (w, h) = self.video.out_size;
        mask::resize_mask(m, w, h)
    }

    fn meta(&self, extra: serde_json::Value) -> serde_json::Value {
        let info = self.video.info;
        let mut m = json!({
            "video": self.key(),
            "shot": self.shot,
            "frames": [self.a.index, self.b.index],
            "times_s": [round3(self.a.time_s), round3(self.b.time_s)],
            "fps": round3(info.fps),
            "source_size": [info.width, info.height],
            "rotation": info.rotation,
            "segmenter": self.segmenter.name(),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (m.as_object_mut(), extra) {
            o.extend(e);
        }
        m
    }

    /// A sample of `task`; `control` (the map and its direction) for `Task::Control` only.
    fn sample(
        &self,
        (task, control): (Task, Option<ControlContext>),
        id: String,
        base: String,
        images: Vec<SampleImage>,
        meta: serde_json::Value,
    ) -> Sample {
        Sample {
            split: self.video.split(&id),
            sample_id: id,
            task,
            source: "video".into(),
            base_prompt: base,
            context_prompt: self.video.context_prompt(task, control),
            images,
            meta: self.meta(meta),
        }
    }
}

/// Builds every enabled family from one pair.
pub(crate) fn build(ctx: &PairContext<'_, '_>) -> Built {
    let mut out = Built::default();
    let r = (|| -> Result<(), String> {
        seg(ctx, &mut out)?;
        multi_object(ctx, &mut out)?;
        insertion_and_add(ctx, &mut out)?;
        control(ctx, &mut out)?;
        Ok(())
    })();
    if let Err(e) = r {
        out.error = Some(e);
    }
    out
}

fn seg(ctx: &PairContext<'_, '_>, out: &mut Built) -> Result<(), String> {
    if !ctx.cfg().families.enabled(Task::Seg) {
        return Ok(());
    }
    let size = ctx.video.out_size;
    let in_a = ctx.objects.iter().filter_map(|o| Some((o, o.a.as_ref()?)));
    for (k, (o, a)) in in_a.take(ctx.cfg().objects.max_seg).enumerate() {
        let id = ctx.id(Task::Seg, &[&k.to_string()]);
        if !ctx.keep(Task::Seg, &id) {
            continue;
        }
        let (full, st) = (ctx.full(a), &a.stats);
        let images = vec![
            image(ImageRole::Canvas, "jpeg", ctx.frame_jpeg(true)?, size),
            image(ImageRole::Output, "png", png_gray(full)?, size),
        ];
        let base = format!("Segment {} in {} and give its mask as {}.", o.named(st), index_word(1), result_word(1));
        let meta = json!({"object": o.meta(), "mask_area": round3(mask::area_fraction(full))});
        out.samples.push(ctx.sample((Task::Seg, None), id, base, images, meta));
    }
    Ok(())
}

fn multi_object(ctx: &PairContext<'_, '_>, out: &mut Built) -> Result<(), String> {
    {
        if !ctx.cfg().families.enabled(Task::MultiObject) {
            return Ok(());
        }
        let both: Vec<(&TrackedObject, &Seen, &Seen)> =
            ctx.objects.iter().filter_map(|o| Some((o, o.a.as_ref()?, o.b.as_ref()?))).collect();
        let n = both.len().min(ctx.cfg().objects.max_assets);
        if n == 0 {
            return Ok(());
        }
        // How many assets: varies by pair, from a hash of the pair alone.
        let k = 1 + (PairContext::seed(&ctx.id(Task::MultiObject, &["count"])) % n as u64) as usize;
        let chosen = &both[..k];
        let id = ctx.id(Task::MultiObject, &[&k.to_string()]);
        if !ctx.keep(Task::MultiObject, &id) {
            return Ok(());
        }
        let mut images = Vec::new();
        for (_, a, _) in chosen {
            let crop = ctx.object_crop(a).ok_or("empty mask after scaling")?;
            images.push(image(ImageRole::Asset, "jpeg", ctx.jpeg(&crop)?, crop.dimensions()));
        }
        images.push(image(ImageRole::Output, "jpeg", ctx.frame_jpeg(false)?, ctx.video.out_size));
        let words: Vec<String> = (1..=k).map(index_word).collect();
        let names: Vec<String> = chosen.iter().map(|(o, _, b)| o.named(&b.stats)).collect();
        let base =
            format!("Put {} together in one scene as {}, with {}.", join_and(&words), result_word(1), join_and(&names));
        let meta = json!({"objects": chosen.iter().map(|(o, _, _)| o.meta()).collect::<Vec<_>>()});
        out.samples.push(ctx.sample((Task::MultiObject, None), id, base, images, meta));
        Ok(())
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Mean background support (0–1) under a mask.
fn support_under(bg: &Background, m: &Mask) -> f64 {
    let (mut s, mut n) = (0u64, 0u64);
    for (p, q) in bg.support.as_raw().iter().zip(m.as_raw()) {
        if *q != 0 {
            s += *p as u64;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        s as f64 / n as f64 / 255.0
    }
}

fn insertion_and_add(ctx: &PairContext<'_, '_>, out: &mut Built) -> Result<(), String> {
    let fam = &ctx.cfg().families;
    if !fam.enabled(Task::Insertion) && !fam.enabled(Task::ObjectAdd) {
        return Ok(());
    }
    let Some(bg) = ctx.bg_b else { return Ok(()) };
    let b_objects: Vec<(&TrackedObject, &Seen)> = ctx.objects.iter().filter_map(|o| Some((o, o.b.as_ref()?))).collect();
    if b_objects.is_empty() {
        return Ok(());
    }
    let min_clean = ctx.cfg().objects.background.min_clean;
    let dilate = ctx.cfg().objects.background.fill_dilate;
    // The largest object of B with a clean background behind it; the other objects of B
    // stay in the canvas.
    let Some((o, b, support)) = b_objects
        .iter()
        .map(|&(o, b)| (o, b, support_under(bg, &mask::dilate(&b.mask, 1))))
        .find(|(_, _, s)| *s >= min_clean)
    else {
        out.skipped.push("no_clean_background");
        return Ok(());
    };
    let (w, h) = ctx.video.out_size;
    let (mb, sb) = (&b.mask, &b.stats);
    // Grow the mask a little at mask_side so that the object's soft edge goes too.
    let hole = ctx.full_mask(&mask::dilate(mb, dilate));
    let fill = unireal_vision::resize_rgb(&bg.image, w, h);
    let canvas = mask::fill_masked(&ctx.b.full, &fill, &hole, 3);
    let canvas_jpeg = ctx.jpeg(&canvas)?;
    let out_jpeg = ctx.frame_jpeg(false)?;
    let meta = json!({"object": o.meta(), "background_support": round3(support), "background_frames": bg.frames});
    let noun = o.noun(sb);
    let place = object_place(sb);

    let id = ctx.id(Task::ObjectAdd, &[]);
    if ctx.keep(Task::ObjectAdd, &id) {
        let images = vec![
            image(ImageRole::Canvas, "jpeg", canvas_jpeg.clone(), (w, h)),
            image(ImageRole::Output, "jpeg", out_jpeg.clone(), (w, h)),
        ];
        let base = format!("Add {} {noun} {place} to {} to make {}.", a_or_an(&noun), index_word(1), result_word(1));
        out.samples.push(ctx.sample((Task::ObjectAdd, None), id, base, images, meta.clone()));
    }

    let id = ctx.id(Task::Insertion, &[]);
    if let (Some(a), true) = (&o.a, ctx.keep(Task::Insertion, &id)) {
        let crop = ctx.object_crop(a).ok_or("empty mask after scaling")?;
        let images = vec![
            image(ImageRole::Asset, "jpeg", ctx.jpeg(&crop)?, crop.dimensions()),
            image(ImageRole::Canvas, "jpeg", canvas_jpeg, (w, h)),
            image(ImageRole::Output, "jpeg", out_jpeg, (w, h)),
        ];
        let base = format!(
            "Insert the {noun} of {} into {} {place} to make {}.",
            index_word(1),
            index_word(2),
            result_word(1)
        );
        out.samples.push(ctx.sample((Task::Insertion, None), id, base, images, meta));
    }
    Ok(())
}

/// A control map type: built in, or external (asked of the command segmenter).
#[derive(Clone)]
enum MapKind {
    Builtin(ConditionKind),
    External(String),
}

impl MapKind {
    fn name(&self) -> &str {
        match self {
            MapKind::Builtin(k) => k.as_str(),
            MapKind::External(s) => s,
        }
    }

    fn phrase(&self) -> String {
        match self {
            MapKind::Builtin(k) => k.phrase().to_string(),
            MapKind::External(s) => format!("{s} map"),
        }
    }

    fn tag(&self) -> ContextTag {
        match self {
            MapKind::Builtin(ConditionKind::Canny) => ContextTag::CannyControl,
            MapKind::Builtin(ConditionKind::Gray) => ContextTag::GrayControl,
            MapKind::Builtin(ConditionKind::Blur) => ContextTag::BlurControl,
            MapKind::Builtin(ConditionKind::Lowres) => ContextTag::LowResControl,
            MapKind::Builtin(ConditionKind::Mask) => ContextTag::MaskControl,
            MapKind::External(s) if s == "depth" => ContextTag::DepthControl,
            MapKind::External(s) if s == "pose" => ContextTag::PoseControl,
            MapKind::External(_) => ContextTag::OtherControl,
        }
    }
}

fn control(ctx: &PairContext<'_, '_>, out: &mut Built) -> Result<(), String> {
    if !ctx.cfg().families.enabled(Task::Control) {
        return Ok(());
    }
    let c = &ctx.cfg().control;
    let mut kinds: Vec<MapKind> = c.kinds.iter().copied().map(MapKind::Builtin).collect();
    if matches!(ctx.cfg().objects.segmenter, unireal_annotate::SegmenterConfig::Command(_)) {
        kinds.extend(c.external.iter().cloned().map(MapKind::External));
    }
    let masks_a: Vec<&Mask> = ctx.objects.iter().filter_map(|o| Some(ctx.full(o.a.as_ref()?))).collect();
    // Take kinds in turn by a hash of the pair; the mask map needs objects.
    let start = (PairContext::seed(&ctx.id(Task::Control, &["kind"])) % kinds.len().max(1) as u64) as usize;
    let Some(kind) = (0..kinds.len())
        .map(|i| kinds[(start + i) % kinds.len()].clone())
        .find(|k| !matches!(k, MapKind::Builtin(ConditionKind::Mask)) || !masks_a.is_empty())
    else {
        return Ok(());
    };
    let size = ctx.video.out_size;
    let q = ctx.cfg().frames.jpeg_quality;
    let (map_bytes, encoding) = match &kind {
        MapKind::Builtin(k) => match condition_map(*k, &ctx.a.full, &masks_a).ok_or("no masks for the mask map")? {
            ConditionMap::Binary(g) => (png_gray(&g)?, "png"),
            ConditionMap::Gray(g) => (encode::jpeg_gray(&g, q)?, "jpeg"),
            ConditionMap::Rgb(m) => (encode::jpeg(&m, q)?, "jpeg"),
        },
        MapKind::External(name) => {
            let f = SegFrame { index: ctx.a.index, time_s: ctx.a.time_s, image: &ctx.a.full, background: None };
            match ctx.segmenter.condition(name, ctx.key(), &f) {
                Some(Ok(g)) => (png_gray(&g)?, "png"),
                Some(Err(e)) => return Err(format!("external {name} map: {e}")),
                None => return Ok(()),
            }
        }
    };
    let frame_jpeg = ctx.frame_jpeg(true)?;
    let meta = json!({"control": kind.name()});
    let (perception, generation) = match c.directions {
        ControlDirections::Perception => (true, false),
        ControlDirections::Generation => (false, true),
        ControlDirections::Both => (true, true),
    };
    let phrase = kind.phrase();
    if perception {
        let id = ctx.id(Task::Control, &[kind.name(), "perception"]);
        if ctx.keep(Task::Control, &id) {
            let images = vec![
                image(ImageRole::Canvas, "jpeg", frame_jpeg.clone(), size),
                image(ImageRole::Output, encoding, map_bytes.clone(), size),
            ];
            let base = format!("Produce the {phrase} of {} as {}.", index_word(1), result_word(1));
            let mut m = meta.clone();
            m["direction"] = "perception".into();
            let control = ControlContext { map: kind.tag(), perception: true };
            out.samples.push(ctx.sample((Task::Control, Some(control)), id, base, images, m));
        }
    }
    if generation {
        let id = ctx.id(Task::Control, &[kind.name(), "generation"]);
        if ctx.keep(Task::Control, &id) {
            let phrases: Vec<String> =
                ctx.objects.iter().filter_map(|o| o.a.as_ref().map(|a| o.named(&a.stats))).take(2).collect();
            let answer = ctx.video.ask(Ask::Describe {
                input: ctx.key().into(),
                jpeg: frame_jpeg.clone(),
                mean_rgb: unireal_vision::mean_rgb(&ctx.a.small),
                objects: phrases,
                sidecar: ctx.video.item.caption.clone(),
                seed: PairContext::seed(&id),
            });
            let images = vec![
                image(ImageRole::Control, encoding, map_bytes, size),
                image(ImageRole::Output, "jpeg", frame_jpeg, size),
            ];
            // The caption completes it.
            let base = format!("Generate {} from the {phrase} {}: ", result_word(1), index_word(1));
            let mut m = meta;
            m["direction"] = "generation".into();
            m["caption_source"] = ctx.video.captioner.name().into();
            let control = ControlContext { map: kind.tag(), perception: false };
            let sample = ctx.sample((Task::Control, Some(control)), id, base, images, m);
            match out.deferred.push(sample, answer) {
                None => {}
                Some(Ok(s)) => out.samples.push(s),
                Some(Err(e)) => {
                    out.caption_errors += 1;
                    out.caption_transient |= e.is_transient();
                }
            }
        }
    }
    Ok(())
}
