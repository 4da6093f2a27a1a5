//! Instructions from measurements: camera pan/tilt/zoom, the moving region and where it went,
//! brightness and colour shifts. Wording varies with the seed so that the model does not
//! learn one template.

use unireal_vision::{color_name, ChangeMeasures, MovingRegion, ObjectStats};

use crate::{CaptionError, CaptionRequest, Captioner, DescribeRequest};

/// The built-in captioner (no model).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinCaptioner;

/// Thresholds: below these a change is not worth an instruction.
const PAN: f64 = 0.03;
const ZOOM: f64 = 0.04;
const OBJECT_MOVE: f64 = 0.04;
const BRIGHT: f64 = 0.04;
const WARM: f64 = 0.03;
const SAT: f64 = 0.05;

fn pick<'a>(seed: u64, salt: u64, options: &[&'a str]) -> &'a str {
    let x = seed.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let x = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    options[((x ^ (x >> 29)) % options.len() as u64) as usize]
}

/// "on the left", "at the top right", "in the centre".
fn place(center: [f64; 2]) -> &'static str {
    let col = if center[0] < 0.36 {
        0
    } else if center[0] > 0.64 {
        2
    } else {
        1
    };
    let row = if center[1] < 0.36 {
        0
    } else if center[1] > 0.64 {
        2
    } else {
        1
    };
    match (row, col) {
        (0, 0) => "at the top left",
        (0, 1) => "at the top",
        (0, 2) => "at the top right",
        (1, 0) => "on the left",
        (1, 1) => "in the centre",
        (1, 2) => "on the right",
        (2, 0) => "at the bottom left",
        (2, 1) => "at the bottom",
        _ => "at the bottom right",
    }
}

fn direction(dx: f64, dy: f64) -> &'static str {
    if dx.abs() >= dy.abs() {
        if dx > 0.0 {
            "to the right"
        } else {
            "to the left"
        }
    } else if dy > 0.0 {
        "down"
    } else {
        "up"
    }
}

/// How to name the region: "the red figure on the left".
fn subject(r: &MovingRegion, seed: u64) -> String {
    let (w, h) = (r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]);
    let noun = if h > 1.4 * w {
        pick(seed, 11, &["figure", "person", "figure"])
    } else if r.area > 0.2 {
        pick(seed, 12, &["subject", "main subject"])
    } else {
        pick(seed, 13, &["object", "subject", "object"])
    };
    let colour = color_name(r.color);
    let colour = if colour == "dark" { "dark" } else { colour };
    format!("the {colour} {noun} {}", place(r.center))
}

/// What an object looks like, from what is measured: "yellow object", "small dark figure".
pub fn object_noun(o: &ObjectStats) -> String {
    let (w, h) = (o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]);
    let noun = if h > 1.6 * w { "figure" } else { "object" };
    let size = if o.area < 0.01 {
        "small "
    } else if o.area > 0.15 {
        "large "
    } else {
        ""
    };
    format!("{size}{} {noun}", color_name(o.color))
}

/// Where an object is: "on the right", "at the top left", "in the centre".
pub fn object_place(o: &ObjectStats) -> &'static str {
    place(o.center)
}

/// Names an object from what is measured: "the yellow object on the right".
pub fn object_phrase(o: &ObjectStats) -> String {
    format!("the {} {}", object_noun(o), object_place(o))
}

/// A one-sentence description of a frame from what is measured: its brightness, its
/// dominant colour and the objects found in it.
pub fn describe_frame(req: &DescribeRequest<'_>) -> String {
    let m = req.mean_rgb;
    let luma = (0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255.0;
    let light = if luma < 0.3 {
        pick(req.seed, 21, &["a dim", "a dark", "a low-light"])
    } else if luma > 0.65 {
        pick(req.seed, 21, &["a bright", "a brightly lit", "a light"])
    } else {
        pick(req.seed, 21, &["a", "a real-world", "an everyday"])
    };
    let scene = pick(req.seed, 22, &["scene", "photo", "video frame"]);
    let tone = color_name(m);
    let mut s = format!("{light} {scene} in {tone} tones");
    match req.objects {
        [] => {}
        [one] => s.push_str(&format!(" with {one}")),
        [init @ .., last] => s.push_str(&format!(" with {} and {last}", init.join(", "))),
    }
    capitalise(&s) + "."
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Builds the instruction for a measured change.
pub fn describe(m: &ChangeMeasures, seed: u64) -> String {
    let g = m.motion.global;
    let mut clauses: Vec<String> = Vec::new();

    // Camera. Content moving left means the camera turned right.
    let pan = if g.dx.abs() >= PAN { Some(if g.dx < 0.0 { "right" } else { "left" }) } else { None };
    let tilt = if g.dy.abs() >= PAN { Some(if g.dy < 0.0 { "down" } else { "up" }) } else { None };
    let zoom = if (g.zoom - 1.0).abs() >= ZOOM { Some(if g.zoom > 1.0 { "in" } else { "out" }) } else { None };
    match (pan, tilt) {
        (Some(p), Some(t)) => {
            clauses.push(format!("{} the camera {t} and to the {p}", pick(seed, 1, &["move", "turn", "swing"])))
        }
        (Some(p), None) => clauses.push(
            pick(
                seed,
                2,
                &[
                    "pan the camera to the {}",
                    "turn the view to the {}",
                    "move the camera to the {}",
                    "shift the viewpoint to the {}",
                ],
            )
            .replace("{}", p),
        ),
        (None, Some(t)) => clauses
            .push(pick(seed, 3, &["tilt the camera {}", "tilt the view {}", "point the camera {}"]).replace("{}", t)),
        (None, None) => {}
    }
    let region = m.motion.region.as_ref();
    if let Some(z) = zoom {
        let target = match (z, region) {
            ("in", Some(r)) => format!(" on {}", subject(r, seed)),
            _ => String::new(),
        };
        let verb = if z == "in" {
            pick(seed, 4, &["zoom in", "move closer", "zoom in"])
        } else {
            pick(seed, 4, &["zoom out", "pull the camera back", "widen the shot"])
        };
        clauses.push(format!("{verb}{target}"));
    }

    // The moving region.
    if let Some(r) = region {
        let moved = (r.dx.powi(2) + r.dy.powi(2)).sqrt();
        if moved >= OBJECT_MOVE {
            let dir = direction(r.dx, r.dy);
            let s = subject(r, seed);
            clauses.push(
                pick(seed, 5, &["move {s} {d}", "have {s} move {d}", "let {s} shift {d}", "make {s} go {d}"])
                    .replace("{s}", &s)
                    .replace("{d}", dir),
            );
        } else if zoom.is_none() && clauses.is_empty() {
            let s = subject(r, seed);
            clauses.push(
                pick(
                    seed,
                    6,
                    &[
                        "change the pose of {s}",
                        "let {s} move slightly",
                        "show {s} a moment later",
                        "make {s} change its position slightly",
                    ],
                )
                .replace("{s}", &s),
            );
        }
    }

    // Light and colour.
    if m.brightness_delta >= BRIGHT {
        clauses
            .push(pick(seed, 7, &["brighten the scene", "make the image brighter", "raise the lighting"]).to_string());
    } else if m.brightness_delta <= -BRIGHT {
        clauses.push(pick(seed, 7, &["darken the scene", "make the image darker", "dim the lighting"]).to_string());
    }
    if m.warmth_delta >= WARM {
        clauses.push(pick(seed, 8, &["give it a warmer tone", "warm up the colours"]).to_string());
    } else if m.warmth_delta <= -WARM {
        clauses.push(pick(seed, 8, &["give it a cooler tone", "cool down the colours"]).to_string());
    }
    if m.saturation_delta >= SAT {
        clauses.push(pick(seed, 9, &["make the colours more vivid", "boost the saturation"]).to_string());
    } else if m.saturation_delta <= -SAT {
        clauses.push(pick(seed, 9, &["mute the colours", "make the colours paler"]).to_string());
    }

    if clauses.is_empty() {
        clauses.push(
            pick(
                seed,
                10,
                &[
                    "show the same scene a moment later",
                    "let the scene move on slightly",
                    "advance the scene by a moment",
                    "show what happens next in this scene",
                ],
            )
            .to_string(),
        );
    }
    let sentence = match clauses.len() {
        1 => clauses[0].clone(),
        2 => format!("{} and {}", clauses[0], clauses[1]),
        n => format!("{}, and {}", clauses[..n - 1].join(", "), clauses[n - 1]),
    };
    format!("{}.", capitalise(&sentence))
}

impl Captioner for BuiltinCaptioner {
    fn name(&self) -> &'static str {
        "builtin"
    }
    fn caption(&self, req: &CaptionRequest<'_>) -> Result<String, CaptionError> {
        Ok(describe(req.change, req.seed))
    }
    fn describe(&self, req: &DescribeRequest<'_>) -> Result<String, CaptionError> {
        Ok(describe_frame(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unireal_vision::{GlobalMotion, MotionEstimate};

    fn measures(dx: f64, dy: f64, zoom: f64, region: Option<MovingRegion>) -> ChangeMeasures {
        ChangeMeasures {
            ssim: 0.5,
            black_a: 0.0,
            black_b: 0.0,
            motion_score: 0.1,
            motion: MotionEstimate {
                global: GlobalMotion { dx, dy, zoom },
                inlier_fraction: 1.0,
                textured_blocks: 50,
                compensated_diff: 0.1,
                region,
            },
            brightness_delta: 0.0,
            warmth_delta: 0.0,
            saturation_delta: 0.0,
        }
    }

    #[test]
    fn camera_directions_follow_the_content() {
        // Content moves left → the camera panned right.
        let s = describe(&measures(-0.1, 0.0, 1.0, None), 0).to_lowercase();
        assert!(s.contains("right") && !s.contains("left"), "{s}");
        let s = describe(&measures(0.0, 0.0, 1.2, None), 0).to_lowercase();
        assert!(s.contains("zoom in") || s.contains("closer"), "{s}");
        let s = describe(&measures(0.0, 0.0, 0.8, None), 3).to_lowercase();
        assert!(s.contains("out") || s.contains("back") || s.contains("widen"), "{s}");
    }

    #[test]
    fn names_the_moving_object_and_its_direction() {
        let r = MovingRegion {
            bbox: [0.1, 0.3, 0.3, 0.9],
            center: [0.2, 0.6],
            area: 0.1,
            dx: 0.2,
            dy: 0.0,
            color: [220.0, 30.0, 30.0],
        };
        let s = describe(&measures(0.0, 0.0, 1.0, Some(r)), 7);
        assert!(s.contains("red") && s.contains("on the left") && s.contains("to the right"), "{s}");
        assert!(s.ends_with('.') && s.chars().next().unwrap().is_uppercase(), "{s}");
    }

    #[test]
    fn wording_varies_but_is_deterministic() {
        let m = measures(0.1, 0.0, 1.0, None);
        let all: std::collections::HashSet<String> = (0..40).map(|seed| describe(&m, seed)).collect();
        assert!(all.len() >= 3, "{all:?}");
        assert_eq!(describe(&m, 5), describe(&m, 5));
        let still = describe(&measures(0.0, 0.0, 1.0, None), 1);
        assert!(!still.is_empty());
    }
}
