//! Cut detection and decoding on the real sample clips.

use std::path::PathBuf;

use unireal_video::{detect_shots, FrameConverter, ShotOptions, VideoReader};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/samples")
}

/// First frames (0-based) of every shot after the first, from PySceneDetect's list-scenes CSV
/// (its "Start Frame" column is 1-based).
fn reference_cuts(video: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(samples().join(format!("reference/{video}.scenedetect.csv"))).unwrap();
    let mut starts = Vec::new();
    for line in text.lines().skip(2) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() > 1 {
            starts.push(cols[1].parse::<u64>().unwrap() - 1);
        }
    }
    starts.into_iter().filter(|&s| s > 0).collect()
}

#[test]
fn cuts_match_pyscenedetect_within_two_frames() {
    for video in ["bbb_trailer.mp4", "bikes.mp4", "box.mp4", "pedestrians.avi", "phone_dog.mp4"] {
        let expected = reference_cuts(video);
        let got = detect_shots(&samples().join("videos").join(video), ShotOptions::default(), 0).unwrap();
        assert!(got.frames > 30, "{video}: {} frames", got.frames);
        assert_eq!(
            got.cuts_frame.len(),
            expected.len(),
            "{video}: got {:?}, PySceneDetect {:?}",
            got.cuts_frame,
            expected
        );
        for (g, e) in got.cuts_frame.iter().zip(&expected) {
            assert!(g.abs_diff(*e) <= 2, "{video}: got {:?}, PySceneDetect {:?}", got.cuts_frame, expected);
        }
        // Times follow the frames.
        for (f, t) in got.cuts_frame.iter().zip(&got.cuts_s) {
            assert!((t - *f as f64 / got.fps).abs() < 0.2, "{video}: frame {f} at {t}s");
        }
    }
}

#[test]
fn decodes_every_frame_with_monotonic_time() {
    // pedestrians.avi is msmpeg4v3 in AVI; phone_dog.mp4 has a variable frame rate.
    for (video, frames) in [("pedestrians.avi", 300u64), ("phone_dog.mp4", 41), ("bikes.mp4", 250)] {
        let mut r = VideoReader::open(&samples().join("videos").join(video), 2).unwrap();
        let info = r.info().clone();
        let mut conv = FrameConverter::new(&info);
        let (mut n, mut last) = (0u64, -1.0);
        while let Some(f) = r.next_frame().unwrap() {
            assert!(f.time_s > last, "{video}: time goes back at frame {}", f.index);
            last = f.time_s;
            if n == 0 {
                let img = conv.rgb(&f, 64, 48).unwrap();
                assert_eq!(img.dimensions(), (64, 48));
            }
            n += 1;
        }
        assert_eq!(n, frames, "{video}");
        assert_eq!(r.decode_errors(), 0, "{video}");
    }
}

#[test]
fn rotation_matches_ffmpeg_autorotate() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = dir.path().join("rot.mp4");
    let png = dir.path().join("rot.png");
    let src = samples().join("videos/bikes.mp4");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .output()
            .expect("ffmpeg CLI (scripts/setup.sh)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "1",
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    // The ffmpeg CLI applies the display matrix itself (autorotate).
    run(&["-i", rotated.to_str().unwrap(), "-frames:v", "1", png.to_str().unwrap()]);
    let reference = image::open(&png).unwrap().to_rgb8();
    let mut r = VideoReader::open(&rotated, 1).unwrap();
    let info = r.info().clone();
    assert_eq!((info.width, info.height), reference.dimensions());
    let f = r.next_frame().unwrap().unwrap();
    let ours = FrameConverter::new(&info).rgb(&f, info.width, info.height).unwrap();
    let mad: f64 = ours.as_raw().iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>()
        / ours.len() as f64;
    assert!(mad < 4.0, "mean abs diff {mad} against ffmpeg's autorotated frame");
}
