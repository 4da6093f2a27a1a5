//! Fuzzed segmenter protocol (issue 17): answer lines of an external segmenter, damaged, are
//! accepted as tracks or refused as a malformed answer (or a mask file that cannot be read),
//! never a panic. `UNIREAL_FUZZ_CASES=N` runs longer (unireal_testkit::fuzz).

use unireal_annotate::external::check_answer;
use unireal_annotate::segment::CommandSegmenter;
use unireal_annotate::{CommandClient, CommandConfig, CommandError, SegmentError};
use unireal_testkit::fuzz::{Format, Fuzz, Verdict};

#[test]
fn damaged_segmenter_answers_are_refused_not_panics() {
    // Real mask PNGs: a sample image thresholded, one full-size and one smaller (masks are
    // scaled to the frame).
    let dir = tempfile::tempdir().unwrap();
    let img = image::open(unireal_testkit::repo().join("datasets/samples/images/coffee.png")).unwrap().to_luma8();
    let mask = image::GrayImage::from_fn(img.width(), img.height(), |x, y| {
        image::Luma([if img.get_pixel(x, y).0[0] > 128 { 255 } else { 0 }])
    });
    let (big, small) = (dir.path().join("m0.png"), dir.path().join("m1.png"));
    mask.save(&big).unwrap();
    image::imageops::resize(&mask, 40, 30, image::imageops::FilterType::Nearest).save(&small).unwrap();
    let seed = serde_json::json!({
        "id": 7,
        "objects": [
            {"phrase": "a cup", "masks": [big.display().to_string(), small.display().to_string()]},
            {"phrase": " box ", "boxes": [[1.5, 2, 30, 40], [2, 3, 31, 41.25]]},
            {"masks": [null, small.display().to_string()]},
        ],
    });
    let sizes = [(64u32, 48u32), (64, 48)];
    let seg = CommandSegmenter {
        client: CommandClient::new(CommandConfig { command: vec!["fake-segmenter".into()], ..Default::default() })
            .unwrap(),
    };
    let dict: &[&[u8]] = &[b"null", b"\"id\"", b"7", b"[]", b"{}", b"\"masks\"", b"\"boxes\"", b"-1e999", b"\"/\""];
    Fuzz::new("segmenter-answer", 3000).format(Format::Json).run(&[seed.to_string().into_bytes()], dict, |bytes| {
        let line = String::from_utf8_lossy(bytes);
        let v = match check_answer(&line, 7) {
            Ok(v) => v,
            Err(m) if m.is_empty() => return Err("an empty reason".into()),
            Err(_) => return Ok(Verdict::Refused),
        };
        match seg.tracks(&v, &sizes) {
            Ok(tracks) => {
                for t in &tracks {
                    if t.masks.len() != sizes.len() {
                        return Err(format!("a track of {} masks for {} frames", t.masks.len(), sizes.len()));
                    }
                    if let Some(m) = t.masks.iter().flatten().find(|m| m.dimensions() != sizes[0]) {
                        return Err(format!("a {:?} mask for a {:?} frame", m.dimensions(), sizes[0]));
                    }
                }
                Ok(Verdict::Accepted)
            }
            Err(SegmentError::Command(CommandError::Malformed { program, .. })) if program == "fake-segmenter" => {
                Ok(Verdict::Refused)
            }
            Err(SegmentError::File { path, .. }) if !path.is_empty() => Ok(Verdict::Refused),
            Err(e) => Err(format!("an unexpected error: {e}")),
        }
    });
}
