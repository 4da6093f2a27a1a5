//! The object families built from one analysed pair (frames A and B of a shot, their
//! tracked objects and B's background model). Roles, prompts and context tags are the
//! reference in docs/data-format.md ("Task families").
//!
//! | family       | images (inputs → output)                        | context tags                                   |
//! |--------------|-------------------------------------------------|------------------------------------------------|
//! | multi_object | 1…K objects of A on white (asset) → B          | realistic, dynamic scene, with reference object |
//! | insertion    | object of A (asset), B without it (canvas) → B | realistic, static scene, with reference object  |
//! | object_add   | B without the object (canvas) → B              | realistic, static scene                        |
//! | seg          | A (canvas) → the object's mask                 | realistic, perception                          |
//! | control      | A (canvas) → map, or map (control) → A         | realistic, [perception,] <map> control          |

use std::cell::OnceCell;

use image::RgbImage;
use serde_json::json;
use unireal_annotate::{object_noun, object_place, DescribeRequest, SegFrame};
use unireal_core::{
    context_prompt, index_word, result_word, sample_id, ContextTag, ImageRole, Sample, SampleImage, Task,
};
use unireal_vision::mask::{self, Mask};
use unireal_vision::{condition_map, Background, ConditionKind, ConditionMap, ObjectStats};

use crate::config::ControlDirections;
use crate::encode::{self, png_gray, unit_hash};
use crate::frame2frame::{round3, split_for};
use crate::objects::{ObjectStage, PairFrame};

/// An object that passed the filters in A, B or both (masks at `mask_side`).
pub(crate) struct TrackedObject {
    /// The segmenter's phrase, or one from what is measured.
    pub phrase: String,
    pub given_phrase: Option<String>,
    pub mask_a: Option<Mask>,
    pub mask_b: Option<Mask>,
    pub stats_a: Option<ObjectStats>,
    pub stats_b: Option<ObjectStats>,
    /// `mask_a` at the stored frame size, made once when a family first needs it.
    pub full_a: OnceCell<Mask>,
}

impl TrackedObject {
    /// "yellow object" (measured) or the segmenter's phrase without its article.
    fn noun(&self, stats: &ObjectStats) -> String {
        match &self.given_phrase {
            Some(p) => {
                let p = p.trim();
                ["the ", "a ", "an "].iter().find_map(|a| p.strip_prefix(a)).unwrap_or(p).to_string()
            }
            None => object_noun(stats),
        }
    }

    /// "the yellow object on the right", placed where it is in the given frame.
    fn named(&self, stats: &ObjectStats) -> String {
        format!("the {} {}", self.noun(stats), object_place(stats))
    }

    fn meta(&self) -> serde_json::Value {
        let s = |o: &Option<ObjectStats>| {
            o.map(|o| json!({"bbox": o.bbox.map(round3), "area": round3(o.area), "color": unireal_vision::color_name(o.color)}))
        };
        json!({"phrase": self.phrase, "a": s(&self.stats_a), "b": s(&self.stats_b)})
    }
}

pub(crate) struct PairContext<'s, 'a> {
    pub stage: &'s ObjectStage<'a>,
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
    pub caption_errors: u64,
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
        stage: &'s ObjectStage<'a>,
        (a, b): (&'s PairFrame, &'s PairFrame),
        shot: u64,
        bg_b: Option<&'s Background>,
        objects: Vec<TrackedObject>,
    ) -> Self {
        PairContext { stage, a, b, shot, bg_b, objects, a_jpeg: OnceCell::new(), b_jpeg: OnceCell::new() }
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
    fn object_crop(&self, o: &TrackedObject) -> Option<RgbImage> {
        mask::crop_on_white(&self.a.full, self.full_a(o)?, self.cfg().objects.crop_margin)
    }

    /// An object's mask in A at the stored size.
    fn full_a<'o>(&self, o: &'o TrackedObject) -> Option<&'o Mask> {
        let m = o.mask_a.as_ref()?;
        Some(o.full_a.get_or_init(|| self.full_mask(m)))
    }

    fn cfg(&self) -> &crate::config::BuildConfig {
        self.stage.cfg
    }

    fn key(&self) -> &str {
        &self.stage.item.key
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
        encode::jpeg(img, self.cfg().frames.jpeg_quality)
    }

    /// A mask at `mask_side` scaled to the stored frame size.
    fn full_mask(&self, m: &Mask) -> Mask {
        let (w, h) = self.stage.out_size();
        mask::resize_mask(m, w, h)
    }

    fn meta(&self, extra: serde_json::Value) -> serde_json::Value {
        let info = self.stage.info;
        let mut m = json!({
            "video": self.key(),
            "shot": self.shot,
            "frames": [self.a.index, self.b.index],
            "times_s": [round3(self.a.time_s), round3(self.b.time_s)],
            "fps": round3(info.fps),
            "source_size": [info.width, info.height],
            "rotation": info.rotation,
            "segmenter": self.stage.segmenter.name(),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (m.as_object_mut(), extra) {
            o.extend(e);
        }
        m
    }

    fn sample(
        &self,
        task: Task,
        id: String,
        base: String,
        tags: &[ContextTag],
        images: Vec<SampleImage>,
        meta: serde_json::Value,
    ) -> Sample {
        Sample {
            split: split_for(self.cfg(), self.key(), &id),
            sample_id: id,
            task,
            source: "video".into(),
            base_prompt: base,
            context_prompt: context_prompt(tags),
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
    let size = ctx.stage.out_size();
    for (k, o) in ctx.objects.iter().filter(|o| o.mask_a.is_some()).take(ctx.cfg().objects.max_seg).enumerate() {
        let id = ctx.id(Task::Seg, &[&k.to_string()]);
        if !ctx.keep(Task::Seg, &id) {
            continue;
        }
        let (full, st) = (ctx.full_a(o).expect("filtered"), o.stats_a.as_ref().expect("with mask"));
        let images = vec![
            image(ImageRole::Canvas, "jpeg", ctx.frame_jpeg(true)?, size),
            image(ImageRole::Output, "png", png_gray(full)?, size),
        ];
        let base = format!("Segment {} in {} and give its mask as {}.", o.named(st), index_word(1), result_word(1));
        let meta = json!({"object": o.meta(), "mask_area": round3(mask::area_fraction(full))});
        out.samples.push(ctx.sample(
            Task::Seg,
            id,
            base,
            &[ContextTag::Realistic, ContextTag::Perception],
            images,
            meta,
        ));
    }
    Ok(())
}

fn multi_object(ctx: &PairContext<'_, '_>, out: &mut Built) -> Result<(), String> {
    {
        if !ctx.cfg().families.enabled(Task::MultiObject) {
            return Ok(());
        }
        let both: Vec<&TrackedObject> =
            ctx.objects.iter().filter(|o| o.mask_a.is_some() && o.mask_b.is_some()).collect();
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
        for o in chosen {
            let crop = ctx.object_crop(o).ok_or("empty mask after scaling")?;
            images.push(image(ImageRole::Asset, "jpeg", ctx.jpeg(&crop)?, crop.dimensions()));
        }
        images.push(image(ImageRole::Output, "jpeg", ctx.frame_jpeg(false)?, ctx.stage.out_size()));
        let words: Vec<String> = (1..=k).map(index_word).collect();
        let names: Vec<String> = chosen.iter().map(|o| o.named(o.stats_b.as_ref().expect("both"))).collect();
        let base =
            format!("Put {} together in one scene as {}, with {}.", join_and(&words), result_word(1), join_and(&names));
        let meta = json!({"objects": chosen.iter().map(|o| o.meta()).collect::<Vec<_>>()});
        let tags = [ContextTag::Realistic, ContextTag::DynamicScene, ContextTag::WithReferenceObject];
        out.samples.push(ctx.sample(Task::MultiObject, id, base, &tags, images, meta));
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
    let b_objects: Vec<&TrackedObject> = ctx.objects.iter().filter(|o| o.mask_b.is_some()).collect();
    if b_objects.is_empty() {
        return Ok(());
    }
    let min_clean = ctx.cfg().objects.background.min_clean;
    let dilate = ctx.cfg().objects.background.fill_dilate;
    // The largest object of B with a clean background behind it; the other objects of B
    // stay in the canvas.
    let Some((o, support)) = b_objects
        .iter()
        .map(|o| {
            let grown = mask::dilate(o.mask_b.as_ref().expect("filtered"), 1);
            (*o, support_under(bg, &grown))
        })
        .find(|(_, s)| *s >= min_clean)
    else {
        out.skipped.push("no_clean_background");
        return Ok(());
    };
    let (w, h) = ctx.stage.out_size();
    let mb = o.mask_b.as_ref().expect("filtered");
    let sb = o.stats_b.as_ref().expect("with mask");
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
        let tags = [ContextTag::Realistic, ContextTag::StaticScene];
        out.samples.push(ctx.sample(Task::ObjectAdd, id, base, &tags, images, meta.clone()));
    }

    let id = ctx.id(Task::Insertion, &[]);
    if o.mask_a.is_some() && ctx.keep(Task::Insertion, &id) {
        let crop = ctx.object_crop(o).ok_or("empty mask after scaling")?;
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
        let tags = [ContextTag::Realistic, ContextTag::StaticScene, ContextTag::WithReferenceObject];
        out.samples.push(ctx.sample(Task::Insertion, id, base, &tags, images, meta));
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
    let masks_a: Vec<&Mask> = ctx.objects.iter().filter_map(|o| ctx.full_a(o)).collect();
    // Take kinds in turn by a hash of the pair; the mask map needs objects.
    let start = (PairContext::seed(&ctx.id(Task::Control, &["kind"])) % kinds.len().max(1) as u64) as usize;
    let Some(kind) = (0..kinds.len())
        .map(|i| kinds[(start + i) % kinds.len()].clone())
        .find(|k| !matches!(k, MapKind::Builtin(ConditionKind::Mask)) || !masks_a.is_empty())
    else {
        return Ok(());
    };
    let size = ctx.stage.out_size();
    let q = ctx.cfg().frames.jpeg_quality;
    let (map_bytes, encoding) = match &kind {
        MapKind::Builtin(k) => match condition_map(*k, &ctx.a.full, &masks_a).ok_or("no masks for the mask map")? {
            ConditionMap::Binary(g) => (png_gray(&g)?, "png"),
            ConditionMap::Gray(g) => (encode::jpeg_gray(&g, q)?, "jpeg"),
            ConditionMap::Rgb(m) => (encode::jpeg(&m, q)?, "jpeg"),
        },
        MapKind::External(name) => {
            let f = SegFrame { index: ctx.a.index, time_s: ctx.a.time_s, image: &ctx.a.full, background: None };
            match ctx.stage.segmenter.condition(name, ctx.key(), &f) {
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
            let tags = [ContextTag::Realistic, ContextTag::Perception, kind.tag()];
            let mut m = meta.clone();
            m["direction"] = "perception".into();
            out.samples.push(ctx.sample(Task::Control, id, base, &tags, images, m));
        }
    }
    if generation {
        let id = ctx.id(Task::Control, &[kind.name(), "generation"]);
        if ctx.keep(Task::Control, &id) {
            let phrases: Vec<String> =
                ctx.objects.iter().filter_map(|o| o.stats_a.as_ref().map(|s| o.named(s))).take(2).collect();
            let req = DescribeRequest {
                input: ctx.key(),
                jpeg: &frame_jpeg,
                mean_rgb: unireal_vision::mean_rgb(&ctx.a.small),
                objects: &phrases,
                sidecar: ctx.stage.item.caption.as_deref(),
                seed: PairContext::seed(&id),
            };
            match ctx.stage.captioner.describe(&req) {
                Ok(caption) => {
                    let images = vec![
                        image(ImageRole::Control, encoding, map_bytes, size),
                        image(ImageRole::Output, "jpeg", frame_jpeg, size),
                    ];
                    let base = format!("Generate {} from the {phrase} {}: {caption}", result_word(1), index_word(1));
                    let tags = [ContextTag::Realistic, kind.tag()];
                    let mut m = meta;
                    m["direction"] = "generation".into();
                    m["caption_source"] = ctx.stage.captioner.name().into();
                    out.samples.push(ctx.sample(Task::Control, id, base, &tags, images, m));
                }
                Err(_) => out.caption_errors += 1,
            }
        }
    }
    Ok(())
}
