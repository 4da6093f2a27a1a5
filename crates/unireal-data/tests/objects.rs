//! The object families on the real sample clips: motion segmentation finds the box and the
//! walkers, every family is built, every mask obeys the filters; the external-segmenter
//! protocol and DAVIS sidecar masks inside a build; family weights.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use common::*;
use unireal_core::{ImageRole, Sample, Task};
use unireal_data::{run_build, BuildConfig, BuildOptions, BuildSummary};
use unireal_shards::{InputStatus, ShardReader};
use unireal_vision::mask;

/// configs/video.yaml with the small-object floors (the walkers of pedestrians.avi cover
/// 0.1-0.3 % of the frame), as a user runs it, into `out` over `inputs`.
fn repo_config(inputs: &[&Path], out: &Path, set: &[&str]) -> BuildConfig {
    let opts = SampleShards {
        inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
        config: Some("configs/video.yaml".into()),
        set: SMALL_OBJECTS.iter().chain(set).map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    sample_build_config(out, &opts)
}

fn build(cfg: &BuildConfig) -> BuildSummary {
    run_build(cfg, &BuildOptions { force: true, quiet: true, ..Default::default() }, Arc::new(AtomicBool::new(false)))
        .unwrap()
}

fn read(dir: &Path) -> Vec<Sample> {
    ShardReader::open_dir(dir).unwrap().map(|s| s.unwrap()).collect()
}

fn gray(bytes: &[u8]) -> image::GrayImage {
    image::load_from_memory(bytes).unwrap().to_luma8()
}

/// The full build over the sample clips, once per test process.
fn full_build() -> &'static (tempfile::TempDir, BuildSummary, Vec<Sample>) {
    static B: OnceLock<(tempfile::TempDir, BuildSummary, Vec<Sample>)> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = repo_config(&[&sample_videos()], dir.path(), &[]);
        let summary = build(&cfg);
        let samples = read(dir.path());
        (dir, summary, samples)
    })
}

#[test]
fn every_family_is_built_from_the_sample_clips_with_documented_roles_and_prompts() {
    let (dir, summary, samples) = full_build();
    let m = &summary.manifest;
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples {
        *counted.entry(s.task.as_str().to_string()).or_default() += 1;
    }
    // Per-family counts in the manifest match the rows, and every family is there.
    assert_eq!(m.totals.tasks, counted);
    for t in ["frame2frame", "multi_object", "insertion", "object_add", "seg", "control"] {
        assert!(counted.get(t).copied().unwrap_or(0) >= 1, "no {t} samples: {counted:?}");
    }
    let roles = |s: &Sample| s.images.iter().map(|i| i.role).collect::<Vec<_>>();
    let mut control_dirs = BTreeSet::new();
    for s in samples {
        s.check().unwrap();
        assert!(s.base_prompt.contains("RES1"), "{}", s.base_prompt);
        for img in &s.images {
            let d = image::load_from_memory(&img.bytes).unwrap();
            assert_eq!((d.width(), d.height()), (img.width, img.height), "{}", s.sample_id);
        }
        let ctx = s.context_prompt.as_str();
        match s.task {
            Task::MultiObject => {
                let r = roles(s);
                let k = r.len() - 1;
                assert!((1..=3).contains(&k), "{k} assets");
                assert!(r[..k].iter().all(|r| *r == ImageRole::Asset) && r[k] == ImageRole::Output);
                for i in 1..=k {
                    assert!(s.base_prompt.contains(&format!("IMG{i}")), "{}", s.base_prompt);
                }
                assert_eq!(ctx, "realistic style, dynamic scene, with reference object.");
                // Assets are objects on white: the crop's corners are white.
                let a = image::load_from_memory(&s.images[0].bytes).unwrap().to_rgb8();
                let c = a.get_pixel(0, 0);
                assert!(c.0.iter().all(|&v| v > 235), "asset corner {c:?}");
            }
            Task::Insertion => {
                assert_eq!(roles(s), [ImageRole::Asset, ImageRole::Canvas, ImageRole::Output]);
                assert!(s.base_prompt.starts_with("Insert the ") && s.base_prompt.contains("IMG2"));
                assert_eq!(ctx, "realistic style, static scene, with reference object.");
                assert!(s.meta["background_support"].as_f64().unwrap() >= 0.6);
            }
            Task::ObjectAdd => {
                assert_eq!(roles(s), [ImageRole::Canvas, ImageRole::Output]);
                assert!(s.base_prompt.starts_with("Add a"), "{}", s.base_prompt);
                assert_eq!(ctx, "realistic style, static scene.");
                // The canvas differs from the output where the object was, and only a little
                // elsewhere.
                let (c, o) = (gray(&s.images[0].bytes), gray(&s.images[1].bytes));
                let diff: Vec<u8> = c.as_raw().iter().zip(o.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
                let changed = diff.iter().filter(|&&d| d > 40).count() as f64 / diff.len() as f64;
                assert!(changed > 0.0005 && changed < 0.36, "changed fraction {changed}");
            }
            Task::Seg => {
                assert_eq!(roles(s), [ImageRole::Canvas, ImageRole::Output]);
                assert!(s.base_prompt.starts_with("Segment the "), "{}", s.base_prompt);
                assert_eq!(ctx, "realistic style, perception task.");
                assert_eq!(s.images[1].encoding, "png");
            }
            Task::Control => {
                let dir = s.meta["direction"].as_str().unwrap();
                control_dirs.insert((s.meta["control"].as_str().unwrap().to_string(), dir.to_string()));
                let kind = s.meta["control"].as_str().unwrap();
                let tag = match kind {
                    "canny" => "canny edge control",
                    "gray" => "grayscale control",
                    "blur" => "blur control",
                    "lowres" => "low resolution control",
                    "mask" => "mask control",
                    k => panic!("unexpected control kind {k}"),
                };
                if dir == "perception" {
                    assert_eq!(roles(s), [ImageRole::Canvas, ImageRole::Output]);
                    assert_eq!(ctx, format!("realistic style, perception task, {tag}."));
                } else {
                    assert_eq!(roles(s), [ImageRole::Control, ImageRole::Output]);
                    assert_eq!(ctx, format!("realistic style, {tag}."));
                    let caption = s.base_prompt.split_once(": ").unwrap().1;
                    assert!(caption.len() > 10, "{}", s.base_prompt);
                }
            }
            Task::Frame2Frame => assert_eq!(roles(s), [ImageRole::Canvas, ImageRole::Output]),
            t => panic!("unexpected task {t}"),
        }
    }
    // Both directions and several map types over the sample set.
    let dirs: BTreeSet<&str> = control_dirs.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(dirs.len(), 2, "{control_dirs:?}");
    assert!(control_dirs.iter().map(|(k, _)| k).collect::<BTreeSet<_>>().len() >= 3, "{control_dirs:?}");
    let rep = unireal_shards::verify_dir(dir.path()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

#[test]
fn every_mask_obeys_the_filters_and_the_box_and_walkers_are_found() {
    let (_dir, summary, samples) = full_build();
    let cfg = repo_config(&[&sample_videos()], Path::new("unused"), &[]);
    let f = &cfg.objects.filters;
    let masks = samples
        .iter()
        .filter(|s| s.task == Task::Seg || (s.task == Task::Control && s.meta["control"] == "mask"))
        .map(|s| (s, gray(&s.images.iter().find(|i| i.encoding == "png").unwrap().bytes)));
    let mut n = 0;
    for (s, m) in masks {
        n += 1;
        assert!(m.as_raw().iter().all(|&v| v == 0 || v == 255), "{}: masks are binary", s.sample_id);
        if s.task == Task::Seg {
            // Masks are filtered at mask_side and scaled to the frame: allow the rounding.
            let a = mask::area_fraction(&m);
            assert!(a >= f.min_area * 0.8 && a <= f.max_area * 1.05, "{}: area {a}", s.sample_id);
            assert!(mask::borders_touched(&m) <= f.max_borders, "{}", s.sample_id);
            assert!((a - s.meta["mask_area"].as_f64().unwrap()).abs() < 1e-3);
        }
    }
    assert!(n >= 5, "{n} masks");

    // Motion segmentation finds the moving box and the walkers in most analysed frames: the
    // largest object kept in a frame has the size of the box (held by a hand, 5-36 % of the
    // view) or of walkers in a wide surveillance view (0.1-5 %).
    for (video, min_area, max_area) in [("box.mp4", 0.05, 0.36), ("pedestrians.avi", 0.001, 0.05)] {
        let rec = summary.manifest.inputs.iter().find(|i| i.path.ends_with(video)).unwrap();
        let o = &rec.stats["objects"];
        let frames = o["frames"].as_array().unwrap();
        assert_eq!(frames.len() as u64, o["frames_analysed"].as_u64().unwrap());
        let sized =
            frames.iter().filter(|f| (min_area..=max_area).contains(&f["largest_area"].as_f64().unwrap())).count();
        assert!(frames.len() >= 8 && sized * 3 >= frames.len() * 2, "{video}: {sized} of {} frames: {o}", frames.len());
        let segs: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.task == Task::Seg && s.meta["video"].as_str().unwrap().ends_with(video))
            .collect();
        assert!(segs.len() >= 4, "{video}: {} seg samples", segs.len());
        if video == "pedestrians.avi" {
            // Walkers are taller than wide: named "figure".
            let figures = segs.iter().filter(|s| s.base_prompt.contains("figure")).count();
            assert!(figures * 2 >= segs.len(), "{:?}", segs.iter().map(|s| &s.base_prompt).collect::<Vec<_>>());
        }
    }
}

fn fake_segmenter(mode: &str, timeout_s: f64) -> String {
    let program = repo().join("crates/unireal-annotate/tests/programs/fake_segmenter.py");
    format!(
        "objects.segmenter={{kind: command, command: [python3, {:?}, {mode}], timeout_s: {timeout_s}}}",
        program.to_string_lossy()
    )
}

#[test]
fn an_external_segmenter_feeds_the_families_and_its_failures_are_recorded_per_video() {
    let box_mp4 = sample_videos().join("box.mp4");
    let walkers = sample_videos().join("pedestrians.avi");
    let dir = tempfile::tempdir().unwrap();
    let ok = fake_segmenter("ok", 60.0);
    let cfg = repo_config(
        &[&box_mp4],
        &dir.path().join("ok"),
        &[
            &ok,
            "families.frame2frame.enabled=false",
            "control.kinds=[]",
            "control.external=[depth]",
            "objects.max_per_video=2",
        ],
    );
    build(&cfg);
    let samples = read(&dir.path().join("ok"));
    let seg: Vec<&Sample> = samples.iter().filter(|s| s.task == Task::Seg).collect();
    assert!(!seg.is_empty());
    for s in &seg {
        assert!(s.base_prompt.starts_with("Segment the test square "), "{}", s.base_prompt);
        assert_eq!(s.meta["segmenter"], "command");
        assert!(s.meta["mask_area"].as_f64().unwrap() > 0.05);
    }
    assert!(samples.iter().any(|s| s.task == Task::Insertion || s.task == Task::MultiObject));
    // External depth maps come through the same protocol.
    let depth: Vec<&Sample> = samples.iter().filter(|s| s.task == Task::Control).collect();
    assert_eq!(depth.len(), 4, "two pairs, both directions");
    for s in depth {
        assert_eq!(s.meta["control"], "depth");
        assert!(s.context_prompt.contains("depth control") && s.base_prompt.contains("depth map"), "{}", s.base_prompt);
        let map = s.images.iter().find(|i| i.encoding == "png").unwrap();
        let g = gray(&map.bytes);
        assert!(g.get_pixel(0, 0)[0] < 10 && g.get_pixel(g.width() - 1, 0)[0] > 245, "the test program's gradient");
    }

    // A segmenter that crashed or hung is an outage (the next run retries the video); one
    // that answers garbage about it is not.
    use unireal_shards::FailureKind::{Permanent, Transient};
    for (mode, timeout, says, kind) in [
        ("crash", 60.0, "boom", Transient),
        ("hang", 1.0, "no answer within", Transient),
        ("garbage", 60.0, "malformed", Permanent),
    ] {
        let out = dir.path().join(mode);
        let fake = fake_segmenter(mode, timeout);
        let cfg = repo_config(&[&box_mp4, &walkers], &out, &[&fake, "families.frame2frame.enabled=false"]);
        let summary = build(&cfg);
        // The run went on past each failing video and recorded why, per video.
        assert_eq!(summary.manifest.inputs.len(), 2);
        for rec in &summary.manifest.inputs {
            assert_eq!((rec.status, rec.kind), (InputStatus::Failed, Some(kind)), "{mode}: {rec:?}");
            assert!(rec.reason.contains(says) && rec.reason.contains("segmenter"), "{mode}: {}", rec.reason);
            assert_eq!(rec.stats["objects"]["segment_errors"], 1);
        }
    }
}

#[test]
fn a_segmenter_with_several_processes_is_asked_concurrently_with_the_same_samples() {
    // issue 18 point 4: with `max_processes: 3` one video keeps up to 3 segment requests in
    // flight while decoding goes on; completed in order, the samples are those of a build that
    // waits for every answer.
    let box_mp4 = sample_videos().join("box.mp4");
    let dir = tempfile::tempdir().unwrap();
    let program = repo().join("crates/unireal-annotate/tests/programs/fake_segmenter.py");
    let mut runs = vec![];
    for processes in [0, 3] {
        let log = dir.path().join(format!("log{processes}"));
        std::fs::create_dir(&log).unwrap();
        let seg = format!(
            "objects.segmenter={{kind: command, command: [python3, {:?}, slow, {:?}], max_processes: {processes}}}",
            program.to_string_lossy(),
            log.to_string_lossy()
        );
        let out = dir.path().join(format!("out{processes}"));
        let cfg =
            repo_config(&[&box_mp4], &out, &[&seg, "families.frame2frame.enabled=false", "objects.max_per_video=6"]);
        let summary = build(&cfg);
        assert_eq!(summary.manifest.inputs[0].stats["objects"]["pairs"], 6, "{:?}", summary.manifest.inputs[0]);
        let in_flight: Vec<u32> =
            std::fs::read_to_string(log.join("in_flight")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(in_flight.len(), 6, "one request per pair");
        runs.push((read(&out), *in_flight.iter().max().unwrap()));
    }
    assert_eq!(runs[0].1, 1, "max_processes 0: the video waits for each answer");
    assert!(runs[1].1 >= 2, "max_processes 3: requests overlap (at most {} in flight)", runs[1].1);
    let key = |s: &Sample| {
        (s.sample_id.clone(), s.base_prompt.clone(), s.images.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>())
    };
    let (seq, conc): (Vec<_>, Vec<_>) = (runs[0].0.iter().map(key).collect(), runs[1].0.iter().map(key).collect());
    assert!(!seq.is_empty());
    assert_eq!(seq, conc, "the same samples in the same order");

    // A crash seen through the pool is recorded as it is without one: an outage, once.
    let crash = format!(
        "objects.segmenter={{kind: command, command: [python3, {:?}, crash], max_processes: 3}}",
        program.to_string_lossy()
    );
    let out = dir.path().join("crash");
    let summary = build(&repo_config(&[&box_mp4], &out, &[&crash, "families.frame2frame.enabled=false"]));
    let rec = &summary.manifest.inputs[0];
    assert_eq!((rec.status, rec.kind), (InputStatus::Failed, Some(unireal_shards::FailureKind::Transient)), "{rec:?}");
    assert!(rec.reason.contains("boom"), "{}", rec.reason);
    assert_eq!(rec.stats["objects"]["segment_errors"], 1);
}

#[test]
fn davis_sidecar_masks_are_used_and_a_missing_folder_is_an_error_of_that_video() {
    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("Annotations");
    let folder = masks.join("box");
    std::fs::create_dir_all(&folder).unwrap();
    // Object 1 (dark red, as DAVIS's palette index 1) in a fixed box; 64×48 masks for every frame.
    for i in 0..460u32 {
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            if (16..32).contains(&x) && (12..30).contains(&y) {
                image::Rgb([128, 0, 0])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        img.save(folder.join(format!("{i:05}.png"))).unwrap();
    }
    let out = dir.path().join("shards");
    let side = format!("objects.segmenter={{kind: sidecar, dir: {:?}}}", masks.to_string_lossy());
    let cfg = repo_config(
        &[&sample_videos().join("box.mp4"), &sample_videos().join("pedestrians.avi")],
        &out,
        &[&side, "families.frame2frame.enabled=false", "objects.max_per_video=2"],
    );
    let summary = build(&cfg);
    let seg: Vec<Sample> = read(&out).into_iter().filter(|s| s.task == Task::Seg).collect();
    assert!(!seg.is_empty());
    for s in &seg {
        let m = gray(&s.images[1].bytes);
        let [x0, y0, x1, y1] = mask::bbox(&m).unwrap();
        let (w, h) = (m.width() as f64, m.height() as f64);
        let rel = [x0 as f64 / w, y0 as f64 / h, x1 as f64 / w, y1 as f64 / h];
        let want = [0.25, 0.25, 0.5, 0.625];
        assert!(rel.iter().zip(want).all(|(a, b)| (a - b).abs() < 0.03), "{rel:?}");
        assert_eq!(s.meta["segmenter"], "sidecar");
    }
    let walkers = summary.manifest.inputs.iter().find(|i| i.path.ends_with("pedestrians.avi")).unwrap();
    assert_eq!(walkers.status, InputStatus::Failed);
    assert!(walkers.reason.contains("no mask folder"), "{}", walkers.reason);
}

#[test]
fn family_weights_keep_a_stable_subset() {
    let (_dir, _summary, all) = full_build();
    let dir = tempfile::tempdir().unwrap();
    let cfg = repo_config(
        &[&sample_videos()],
        dir.path(),
        &["families.control.weight=0.4", "families.frame2frame.enabled=false"],
    );
    build(&cfg);
    let part = read(dir.path());
    let ids =
        |v: &[Sample], t: Task| v.iter().filter(|s| s.task == t).map(|s| s.sample_id.clone()).collect::<BTreeSet<_>>();
    let (c_all, c_part) = (ids(all, Task::Control), ids(&part, Task::Control));
    assert!(
        c_part.is_subset(&c_all) && !c_part.is_empty() && c_part.len() < c_all.len(),
        "{} of {}",
        c_part.len(),
        c_all.len()
    );
    // Other families are unaffected by the control weight.
    assert_eq!(ids(&part, Task::Seg), ids(all, Task::Seg));
    assert!(ids(&part, Task::Frame2Frame).is_empty());
}
