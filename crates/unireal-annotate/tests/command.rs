//! The external-segmenter protocol against a small test program
//! (`tests/programs/fake_segmenter.py`, standard-library Python).

use image::{Rgb, RgbImage};
use unireal_annotate::{
    build_segmenter, CommandConfig, CommandError, SegFrame, SegmentError, SegmentRequest, SegmenterConfig,
};
use unireal_vision::mask;

fn segmenter(mode: &str, timeout_s: f64) -> Box<dyn unireal_annotate::Segmenter> {
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/fake_segmenter.py");
    let cfg =
        CommandConfig { command: vec!["python3".into(), program.into(), mode.into()], timeout_s, max_processes: 0 };
    build_segmenter(&SegmenterConfig::Command(cfg)).unwrap()
}

fn frames(img: &RgbImage) -> Vec<SegFrame<'_>> {
    vec![
        SegFrame { index: 10, time_s: 1.0, image: img, background: None },
        SegFrame { index: 20, time_s: 2.0, image: img, background: None },
    ]
}

#[test]
fn round_trip_gives_masks_boxes_and_phrases() {
    let img = RgbImage::from_pixel(64, 48, Rgb([90, 120, 30]));
    let fr = frames(&img);
    let seg = segmenter("ok", 30.0);
    for _ in 0..3 {
        // The same process answers repeated requests.
        let tracks = seg.segment(&SegmentRequest { input: "videos/a.mp4", frames: &fr }).unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].phrase.as_deref(), Some("the test square"));
        let m0 = tracks[0].masks[0].as_ref().unwrap();
        assert_eq!(m0.dimensions(), (64, 48));
        assert_eq!(mask::bbox(m0), Some([16, 12, 32, 24]));
        let m1 = tracks[0].masks[1].as_ref().unwrap();
        assert_eq!(mask::bbox(m1), Some([18, 12, 34, 24]), "box answers become box masks");
    }
    let map = seg.condition("depth", "videos/a.mp4", &fr[0]).unwrap().unwrap();
    assert_eq!(map.dimensions(), (64, 48));
    assert!(map.get_pixel(0, 0)[0] < 10 && map.get_pixel(63, 0)[0] > 245);
}

#[test]
fn failures_are_errors_of_the_request_and_the_next_request_works() {
    let img = RgbImage::from_pixel(32, 32, Rgb([0, 0, 0]));
    let fr = frames(&img);
    let req = SegmentRequest { input: "videos/a.mp4", frames: &fr };
    let crash = segmenter("crash", 30.0).segment(&req).unwrap_err();
    match &crash {
        SegmentError::Command(CommandError::Crashed { stderr, .. }) => assert!(stderr.contains("boom"), "{crash}"),
        e => panic!("expected a crash, got {e}"),
    }
    let t0 = std::time::Instant::now();
    let hang = segmenter("hang", 1.0).segment(&req).unwrap_err();
    assert!(matches!(hang, SegmentError::Command(CommandError::Timeout { .. })), "{hang}");
    assert!(t0.elapsed().as_secs_f64() < 20.0);
    for (mode, what) in [("garbage", "not JSON"), ("wrong-id", "expected \"id\"")] {
        let e = segmenter(mode, 30.0).segment(&req).unwrap_err();
        assert!(matches!(e, SegmentError::Command(CommandError::Malformed { .. })), "{mode}: {e}");
        assert!(e.to_string().contains(what), "{mode}: {e}");
    }
    let e = segmenter("error", 30.0).segment(&req).unwrap_err();
    assert!(e.to_string().contains("model not loaded"), "{e}");
    // A process that exits after one answer is replaced on the next request.
    let once = segmenter("once", 30.0);
    assert!(once.segment(&req).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = once.segment(&req);
    assert!(second.is_ok(), "a fresh process answers after the pooled one exited: {second:?}");
    // A program that does not exist is a spawn error naming it.
    let cfg = CommandConfig { command: vec!["/nonexistent/segmenter".into()], timeout_s: 5.0, max_processes: 0 };
    let e = build_segmenter(&SegmenterConfig::Command(cfg)).unwrap().segment(&req).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/segmenter"), "{e}");
}
