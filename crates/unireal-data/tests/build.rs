//! End-to-end builds on the real sample clips, bad inputs, and kill + resume.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use unireal_core::{ImageRole, Task};
use unireal_data::{run_build, BuildConfig, BuildOptions};
use unireal_shards::{InputStatus, Manifest, ShardReader};

/// A Frame2Frame-only build (the object families have their own tests in objects.rs).
fn config(inputs: Vec<PathBuf>, output: &Path) -> BuildConfig {
    sample_build_config(output, &SampleShards { inputs, ..SampleShards::frame2frame() })
}

#[test]
fn build_over_the_samples_gives_frame2frame_rows_from_every_clip() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config(vec![sample_videos()], out.path());
    let summary = run_build(
        &cfg,
        &BuildOptions { force: false, quiet: true, ..Default::default() },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let m = &summary.manifest;
    assert_eq!(m.inputs.len(), 5);
    for i in &m.inputs {
        // Every bundled clip has qualifying pairs.
        assert_eq!(i.status, InputStatus::Ok, "{i:?}");
        assert!(i.samples >= 1, "{i:?}");
    }
    let mut per_video = std::collections::BTreeMap::new();
    let mut captions = BTreeSet::new();
    for s in ShardReader::open_dir(out.path()).unwrap() {
        let s = s.unwrap();
        assert_eq!(s.task, Task::Frame2Frame);
        assert_eq!(s.images.iter().map(|i| i.role).collect::<Vec<_>>(), [ImageRole::Canvas, ImageRole::Output]);
        for img in &s.images {
            let d = image::load_from_memory(&img.bytes).unwrap();
            assert_eq!((d.width(), d.height()), (img.width, img.height));
            assert!(img.width.max(img.height) <= 1024);
        }
        let instruction = s.base_prompt.split_once(": ").map(|x| x.1).unwrap_or("");
        assert!(
            s.base_prompt.contains("IMG1") && s.base_prompt.contains("RES1") && instruction.len() > 8,
            "{}",
            s.base_prompt
        );
        captions.insert(instruction.to_string());
        let meta = &s.meta;
        let frames = meta["frames"].as_array().unwrap();
        assert!(frames[0].as_u64().unwrap() < frames[1].as_u64().unwrap());
        let ssim = meta["ssim"].as_f64().unwrap();
        assert!((0.25..0.95).contains(&ssim), "{ssim}");
        assert!(meta["black_fraction"][0].as_f64().unwrap() < 0.1);
        *per_video.entry(meta["video"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_video.len(), 5, "{per_video:?}");
    assert!(captions.len() >= 5, "captions vary with the change: {captions:?}");
    let rep = unireal_shards::verify_dir(out.path()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);

    // bikes.mp4 has 5 cuts (frames 30, 76, 137, 187, 242): no pair may straddle one.
    let cuts = [0u64, 30, 76, 137, 187, 242, u64::MAX];
    for s in ShardReader::open_dir(out.path())
        .unwrap()
        .map(|s| s.unwrap())
        .filter(|s| s.meta["video"].as_str().unwrap().ends_with("bikes.mp4"))
    {
        let f: Vec<u64> = s.meta["frames"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let shot = |x: u64| cuts.iter().rposition(|c| *c <= x).unwrap();
        // ±2 frames of slack for the detector against the reference.
        assert!(shot(f[0] + 2) == shot(f[1].saturating_sub(2)) || shot(f[0]) == shot(f[1]), "pair {f:?} crosses a cut");
    }
}

#[test]
fn bad_inputs_are_recorded_and_the_run_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let v = work.path().join("videos");
    std::fs::create_dir_all(v.join("dir with spaces é")).unwrap();
    let bikes = sample_videos().join("bikes.mp4");
    std::fs::write(v.join("empty.mp4"), b"").unwrap();
    let bytes = std::fs::read(&bikes).unwrap();
    // bikes.mp4 keeps its index (moov) at the end: cut short, it cannot be opened at all.
    std::fs::write(v.join("truncated.mp4"), &bytes[..bytes.len() / 3]).unwrap();
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(v.join("random.mp4"), noise).unwrap();
    std::fs::copy(&bikes, v.join("dir with spaces é/clip ünïcode.mp4")).unwrap();
    let s = |p: &str| v.join(p).to_string_lossy().into_owned();
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", &s("audio_only.mp4")]);
    ffmpeg(&["-i", &bikes.to_string_lossy(), "-frames:v", "1", "-an", &s("one_frame.mp4")]);
    ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:s=320x240:d=4:r=10", "-pix_fmt", "yuv420p", &s("static.mp4")]);
    // Ogg: a Theora clip is a video like any other; an audio-only .ogg is a failed input.
    ffmpeg(&["-i", &bikes.to_string_lossy(), "-an", "-c:v", "libtheora", "-q:v", "6", &s("theora.ogv")]);
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "libvorbis", &s("vorbis.ogg")]);
    // Files that are not videos are listed as skipped, not dropped without a word.
    std::fs::write(v.join("notes.txt"), b"shot list").unwrap();
    // With the index first, a file cut short decodes as far as it goes.
    let faststart = work.path().join("faststart.mp4");
    ffmpeg(&["-i", &bikes.to_string_lossy(), "-c", "copy", "-movflags", "+faststart", &faststart.to_string_lossy()]);
    let fs_bytes = std::fs::read(&faststart).unwrap();
    std::fs::write(v.join("truncated_faststart.mp4"), &fs_bytes[..fs_bytes.len() * 2 / 3]).unwrap();
    // Rotation metadata: the stored frames must come out upright (portrait).
    ffmpeg(&[
        "-i",
        &bikes.to_string_lossy(),
        "-t",
        "3",
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        &s("rotated.mp4"),
    ]);

    let out = work.path().join("out");
    let cfg = config(vec![v.clone(), v.join("missing.mp4")], &out);
    let summary = run_build(
        &cfg,
        &BuildOptions { force: false, quiet: true, ..Default::default() },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let by_name = |n: &str| {
        summary.manifest.inputs.iter().find(|i| i.path.ends_with(n)).unwrap_or_else(|| panic!("{n} not in manifest"))
    };
    let expect = |n: &str, status: InputStatus, words: &str| {
        let r = by_name(n);
        assert_eq!(r.status, status, "{r:?}");
        assert!(r.reason.to_lowercase().contains(words), "{n}: {}", r.reason);
    };
    expect("empty.mp4", InputStatus::Failed, "empty");
    expect("random.mp4", InputStatus::Failed, "");
    expect("audio_only.mp4", InputStatus::Failed, "no video stream");
    expect("vorbis.ogg", InputStatus::Failed, "no video stream");
    expect("notes.txt", InputStatus::Skipped, "not a video extension");
    let theora = by_name("theora.ogv");
    assert_eq!(
        (theora.status, theora.stats["video"]["codec"].as_str()),
        (InputStatus::Ok, Some("theora")),
        "{theora:?}"
    );
    assert!(theora.samples > 0, "{theora:?}");
    expect("one_frame.mp4", InputStatus::Skipped, "1 frame");
    expect("static.mp4", InputStatus::Skipped, "too similar");
    expect("missing.mp4", InputStatus::Failed, "missing.mp4");
    assert!(!by_name("random.mp4").reason.is_empty());
    expect("truncated.mp4", InputStatus::Failed, "cannot open");
    let t = by_name("truncated_faststart.mp4");
    assert_eq!(t.status, InputStatus::Ok, "{t:?}");
    assert!(t.samples > 0 && t.stats["frames"].as_u64().unwrap() < 250, "{t:?}");
    let spaced = by_name("clip ünïcode.mp4");
    assert_eq!(spaced.status, InputStatus::Ok, "{spaced:?}");
    assert!(spaced.samples > 0);
    let rot = by_name("rotated.mp4");
    // `rotate=90` is stored as a display matrix that FFmpeg applies as a 270° clockwise turn.
    assert_eq!(rot.stats["video"]["rotation"], 270, "{rot:?}");
    for s in ShardReader::open_dir(&out).unwrap().map(|s| s.unwrap()) {
        if s.meta["video"].as_str().unwrap().ends_with("rotated.mp4") {
            assert!(
                s.images[0].height > s.images[0].width,
                "rotated frames are portrait: {:?}",
                (s.images[0].width, s.images[0].height)
            );
        }
    }
    assert_eq!(summary.manifest.inputs.len(), 13);
    // Nothing half-written is left.
    for e in std::fs::read_dir(&out).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(n == "manifest.json" || (n.starts_with("part-") && n.ends_with(".parquet")), "{n}");
    }

    // probe_all_files: every file is opened, whatever its name; what FFmpeg cannot read as
    // video is skipped with its reason, a video under another name is read.
    let odd = work.path().join("odd names");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(v.join("one_frame.mp4"), odd.join("frame.bin")).unwrap();
    std::fs::copy(v.join("notes.txt"), odd.join("notes.txt")).unwrap();
    let mut cfg = config(vec![odd.clone()], &work.path().join("out-probed"));
    cfg.probe_all_files = true;
    let probed = run_build(&cfg, &BuildOptions { quiet: true, ..Default::default() }, Arc::new(AtomicBool::new(false)))
        .unwrap()
        .manifest;
    let reason = |n: &str| {
        let r = probed.inputs.iter().find(|i| i.path.ends_with(n)).unwrap_or_else(|| panic!("{n}: {probed:?}"));
        (r.status, r.reason.clone())
    };
    let (status, why) = reason("frame.bin");
    assert!(status == InputStatus::Skipped && why.contains("1 frame"), "{why}");
    let (status, why) = reason("notes.txt");
    assert!(status == InputStatus::Skipped && why.starts_with("not a video: "), "{why}");
}

/// Runs the CLI on `config` and kills it once the manifest lists `kill_after` shards.
/// Returns whether it was killed (false: it finished first).
fn run_and_kill(config: &Path, out: &Path, kill_after: usize, signal: &str) -> bool {
    let mut child =
        Command::new(bin()).args(["build", "-q"]).arg(config).stderr(std::process::Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return false;
        }
        let shards = Manifest::load(out).ok().flatten().map(|m| m.shards.len()).unwrap_or(0);
        if shards >= kill_after {
            Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success(), "a killed build must not report success");
            return true;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "build did not progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_build_resumes_to_exactly_the_uninterrupted_sample_ids() {
    let work = tempfile::tempdir().unwrap();
    // Small shards so that a build commits many of them.
    let small = SampleShards { workers: 1, set: vec!["shards.target_size_mb=0.25".into()], ..Default::default() };
    let full = work.path().join("full");
    let cfg_full = write_build_config(work.path(), &full, &small);
    let status = Command::new(bin()).args(["build", "-q"]).arg(&cfg_full).status().unwrap();
    assert!(status.success());
    let expected = sample_ids(&full);
    assert!(expected.len() >= 10);
    let n_shards = Manifest::load(&full).unwrap().unwrap().shards.len();
    assert!(n_shards >= 3, "{n_shards} shards");

    let part = work.path().join("part");
    let cfg_part = write_build_config(work.path(), &part, &small);
    let killed = run_and_kill(&cfg_part, &part, 1, "-KILL");
    // A SIGTERM'd run cleans its temporary shard itself.
    let killed2 = run_and_kill(&cfg_part, &part, n_shards.min(2), "-TERM");
    if killed2 {
        for e in std::fs::read_dir(&part).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.ends_with(".tmp"), "SIGTERM left {n}");
        }
    }
    let status = Command::new(bin()).args(["build", "-q"]).arg(&cfg_part).status().unwrap();
    assert!(status.success());
    assert!(killed || killed2, "the build finished before it could be killed");
    let got = sample_ids(&part);
    assert_eq!(got, expected, "resumed build differs from the uninterrupted one");
    let m = Manifest::load(&part).unwrap().unwrap();
    assert_eq!(m.inputs.len(), 5);
    assert_eq!(m.totals.rows as usize, expected.len());
    let rep = unireal_shards::verify_dir(&part).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);

    // A finished build run again does nothing; --force rebuilds the same ids.
    let status = Command::new(bin()).args(["build", "-q"]).arg(&cfg_part).status().unwrap();
    assert!(status.success());
    assert_eq!(sample_ids(&part), expected);
    let status = Command::new(bin()).args(["build", "-q", "--force"]).arg(&cfg_part).status().unwrap();
    assert!(status.success());
    assert_eq!(sample_ids(&part), expected);
}

/// The built-in captioner behind an endpoint that fails (`CaptionError::Endpoint`, as the
/// OpenAI client reports an outage) on the calls `down` picks: (input, call number); `down`
/// may also panic.
struct Outage {
    down: Box<dyn Fn(&str, usize) -> bool + Send + Sync>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Outage {
    fn new(down: impl Fn(&str, usize) -> bool + Send + Sync + 'static) -> Self {
        Outage { down: Box::new(down), calls: Default::default() }
    }
}

impl unireal_annotate::Captioner for Outage {
    fn name(&self) -> &'static str {
        "builtin"
    }
    fn caption(&self, req: &unireal_annotate::CaptionRequest<'_>) -> Result<String, unireal_annotate::CaptionError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if (self.down)(req.input, n) {
            return Err(unireal_annotate::CaptionError::Endpoint {
                url: "http://vlm.test/v1".into(),
                message: "HTTP 503: overloaded (after 4 attempt(s))".into(),
            });
        }
        unireal_annotate::BuiltinCaptioner.caption(req)
    }
    fn describe(&self, req: &unireal_annotate::DescribeRequest<'_>) -> Result<String, unireal_annotate::CaptionError> {
        unireal_annotate::BuiltinCaptioner.describe(req)
    }
}

/// A remote captioner stand-in: the built-in captions after a delay, counting the requests
/// in flight at once.
struct Slow {
    concurrency: usize,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Slow {
    fn new(concurrency: usize) -> Self {
        Slow { concurrency, in_flight: Default::default(), most: Default::default() }
    }

    fn answer<T>(&self, f: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let r = f();
        self.in_flight.fetch_sub(1, SeqCst);
        r
    }
}

impl unireal_annotate::Captioner for Slow {
    fn name(&self) -> &'static str {
        "builtin"
    }
    fn caption(&self, req: &unireal_annotate::CaptionRequest<'_>) -> Result<String, unireal_annotate::CaptionError> {
        self.answer(|| unireal_annotate::BuiltinCaptioner.caption(req))
    }
    fn describe(&self, req: &unireal_annotate::DescribeRequest<'_>) -> Result<String, unireal_annotate::CaptionError> {
        self.answer(|| unireal_annotate::BuiltinCaptioner.describe(req))
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// A remote captioner (issue 18) is asked through the build's request pool: with one worker,
/// several requests (Frame2Frame captions and control descriptions) are in flight at once
/// while decoding goes on, and the samples are those of a build that asks one at a time.
#[test]
fn a_remote_captioner_is_asked_concurrently_with_the_same_samples() {
    let work = tempfile::tempdir().unwrap();
    let v = sample_videos();
    let opts = SampleShards { inputs: vec![v.join("box.mp4"), v.join("bikes.mp4")], workers: 1, ..Default::default() };
    let mut cfg = sample_build_config(&work.path().join("x"), &opts);
    let segmenter = unireal_annotate::build_segmenter(&cfg.objects.segmenter).unwrap();
    let mut build = |name: &str, captioner: &Slow| {
        cfg.output = work.path().join(name);
        let ann = unireal_data::Annotators { captioner, segmenter: Some(&*segmenter) };
        let opts = BuildOptions { quiet: true, ..Default::default() };
        let started = std::time::Instant::now();
        unireal_data::run_build_with(&cfg, &opts, Arc::new(AtomicBool::new(false)), ann).unwrap();
        let secs = started.elapsed().as_secs_f64();
        let mut rows: Vec<(String, String, usize)> = unireal_shards::ShardReader::open_dir(&cfg.output)
            .unwrap()
            .map(|s| s.unwrap())
            .map(|s| (s.sample_id, s.base_prompt, s.images.iter().map(|i| i.bytes.len()).sum()))
            .collect();
        rows.sort();
        (rows, secs)
    };
    let (one, pooled) = (Slow::new(1), Slow::new(6));
    let (a, secs_one) = build("one-at-a-time", &one);
    let (b, secs_pooled) = build("pooled", &pooled);
    println!("one request at a time: {secs_one:.1} s; six in flight: {secs_pooled:.1} s");
    assert_eq!(one.most.load(std::sync::atomic::Ordering::SeqCst), 1);
    let most = pooled.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most >= 3, "at most {most} request(s) in flight with a pool of 6");
    assert!(a.iter().any(|r| r.0.starts_with("control")) || a.len() > 10, "{} rows", a.len());
    assert_eq!(a, b);
}

/// A panic while one video is processed (here in a captioner plugged in through
/// `run_build_with`) fails that input with the panic's message; the other videos are built.
#[test]
fn a_panic_on_one_video_fails_that_input_and_the_build_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let v = sample_videos();
    let out = work.path().join("out");
    let cfg = config(vec![v.join("bikes.mp4"), v.join("box.mp4")], &out);
    let captioner = Outage::new(|input, _| match input.contains("bikes") {
        true => panic!("test captioner: no caption for {input}"),
        false => false,
    });
    let ann = unireal_data::Annotators { captioner: &captioner, segmenter: None };
    let opts = BuildOptions { quiet: true, ..Default::default() };
    let m = unireal_data::run_build_with(&cfg, &opts, Arc::new(AtomicBool::new(false)), ann).unwrap().manifest;
    let by = |n: &str| m.inputs.iter().find(|i| i.path.ends_with(n)).unwrap_or_else(|| panic!("{n}: {m:?}"));
    let bikes = by("bikes.mp4");
    assert_eq!(bikes.status, InputStatus::Failed, "{bikes:?}");
    assert!(
        bikes.reason.starts_with("panicked") && bikes.reason.contains("test captioner: no caption for"),
        "{bikes:?}"
    );
    let boxed = by("box.mp4");
    assert!(boxed.status == InputStatus::Ok && boxed.samples > 0, "{boxed:?}");
    assert_eq!(m.totals.rows, boxed.samples);
    let rep = unireal_shards::verify_dir(&out).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

/// Failures by kind: a video whose captions all failed while the endpoint was down is failed
/// and transient, one that lost some pairs is ok with the reason and transient; the next run
/// retries both (keeping what they gave) and not the corrupt file, which `retry_failed` tries
/// again. The manifest never lists an input twice, and accounts for every sample.
#[test]
fn transient_failures_are_retried_and_permanent_ones_only_when_asked() {
    use unireal_shards::FailureKind;
    let work = tempfile::tempdir().unwrap();
    let v = sample_videos();
    std::fs::write(work.path().join("empty.mp4"), b"").unwrap();
    let out = work.path().join("out");
    let mut cfg = config(vec![v.join("bikes.mp4"), v.join("box.mp4"), work.path().join("empty.mp4")], &out);
    cfg.workers = 1;
    let run = |captioner: &Outage, retry_failed: bool| {
        let ann = unireal_data::Annotators { captioner, segmenter: None };
        let opts = BuildOptions { quiet: true, retry_failed, ..Default::default() };
        unireal_data::run_build_with(&cfg, &opts, Arc::new(AtomicBool::new(false)), ann).unwrap()
    };
    let find = |m: &Manifest, n: &str| {
        let hits: Vec<_> = m.inputs.iter().filter(|i| i.path.ends_with(n)).cloned().collect();
        assert_eq!(hits.len(), 1, "{n} listed {} times", hits.len());
        hits[0].clone()
    };
    // Down for every bikes.mp4 request and for every other box.mp4 one.
    let first = run(&Outage::new(|input, n| input.ends_with("bikes.mp4") || n % 2 == 1), false);
    let m = &first.manifest;
    let bikes = find(m, "bikes.mp4");
    assert_eq!((bikes.status, bikes.kind), (InputStatus::Failed, Some(FailureKind::Transient)), "{bikes:?}");
    assert!(bikes.reason.contains("no caption for any pair") && bikes.reason.contains("HTTP 503"), "{bikes:?}");
    let boxed = find(m, "box.mp4");
    assert_eq!((boxed.status, boxed.kind), (InputStatus::Ok, Some(FailureKind::Transient)), "{boxed:?}");
    assert!(boxed.samples > 0 && boxed.reason.contains("caption request(s) failed"), "{boxed:?}");
    let empty = find(m, "empty.mp4");
    assert_eq!((empty.status, empty.kind), (InputStatus::Failed, Some(FailureKind::Permanent)), "{empty:?}");

    // The endpoint is back: both are retried, their earlier samples kept; empty.mp4 is not.
    let second = run(&Outage::new(|_, _| false), false);
    assert_eq!((second.processed, second.already_done), (2, 1));
    let m = &second.manifest;
    let bikes = find(m, "bikes.mp4");
    assert!(bikes.status == InputStatus::Ok && bikes.kind.is_none() && bikes.samples > 0, "{bikes:?}");
    let boxed2 = find(m, "box.mp4");
    assert!(boxed2.kind.is_none() && boxed2.reason.is_empty() && boxed2.samples > boxed.samples, "{boxed2:?}");
    assert_eq!(m.inputs.len(), 3);
    let rep = unireal_shards::verify_dir(&out).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // Every sample of a build that never met the outage (and, from box.mp4, the pairs of a
    // second interval made while a first one had no caption).
    let clean = work.path().join("clean");
    let mut clean_cfg = cfg.clone();
    clean_cfg.output = clean.clone();
    run_build(&clean_cfg, &BuildOptions { quiet: true, ..Default::default() }, Arc::new(AtomicBool::new(false)))
        .unwrap();
    let ids: BTreeSet<String> = sample_ids(&out).into_iter().collect();
    let missing: Vec<String> = sample_ids(&clean).into_iter().filter(|i| !ids.contains(i)).collect();
    assert!(missing.is_empty(), "samples of the clean build missing after the retries: {missing:?}");

    // Nothing left to retry but the permanent failure, which only retry_failed tries again.
    assert_eq!(run(&Outage::new(|_, _| false), false).processed, 0);
    let third = run(&Outage::new(|_, _| false), true);
    assert_eq!(third.processed, 1);
    assert_eq!(find(&third.manifest, "empty.mp4").status, InputStatus::Failed);
    assert_eq!(third.manifest.inputs.len(), 3);
}

/// `not a video extension` depends on `video_extensions`, which may change between runs: a
/// later run with the extension added builds the file. A shard directory kept among the videos
/// is not scanned as input.
#[test]
fn a_file_skipped_for_its_extension_is_built_once_the_extension_is_listed() {
    let work = tempfile::tempdir().unwrap();
    let v = work.path().join("videos");
    std::fs::create_dir_all(&v).unwrap();
    let bikes = sample_videos().join("bikes.mp4");
    ffmpeg(&[
        "-i",
        &bikes.to_string_lossy(),
        "-t",
        "5",
        "-c",
        "copy",
        "-f",
        "mp4",
        &v.join("clip.video").to_string_lossy(),
    ]);
    // The output inside the scanned folder.
    let out = v.join("shards");
    let mut cfg = config(vec![v.clone()], &out);
    let run = |cfg: &BuildConfig| {
        run_build(cfg, &BuildOptions { quiet: true, ..Default::default() }, Arc::new(AtomicBool::new(false))).unwrap()
    };
    // The folder holds no file with a video extension at all: an error naming it.
    let err = run_build(&cfg, &BuildOptions { quiet: true, ..Default::default() }, Arc::new(AtomicBool::new(false)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no file with a video extension"), "{err}");
    std::fs::copy(&bikes, v.join("bikes.mp4")).unwrap();
    let first = run(&cfg).manifest;
    let clip = first.inputs.iter().find(|i| i.path.ends_with("clip.video")).unwrap();
    assert_eq!((clip.status, clip.reason.as_str()), (InputStatus::Skipped, "not a video extension"));
    assert_eq!(first.inputs.len(), 2, "{:?}", first.inputs);
    cfg.video_extensions.push("video".into());
    let second = run(&cfg);
    assert_eq!(second.processed, 1, "only clip.video is looked at again");
    let clip = second.manifest.inputs.iter().find(|i| i.path.ends_with("clip.video")).unwrap();
    assert!(clip.status == InputStatus::Ok && clip.samples > 0, "{clip:?}");
    // The shard directory inside the scanned folder never became an input.
    assert_eq!(second.manifest.inputs.len(), 2, "{:?}", second.manifest.inputs);
}

/// A build into a filesystem that fills up stops with an error naming the path, leaves only
/// finished shards and a valid manifest (no temporary file, no lock), and once there is room
/// the same command completes it: the sample ids of a build that never ran out.
#[test]
fn a_full_disk_stops_the_build_cleanly_and_it_resumes_once_there_is_room() {
    let Some(disk) = unireal_testkit::Tmpfs::mount("480k") else { return };
    let v = sample_videos();
    let inputs = vec![v.join("bikes.mp4"), v.join("box.mp4")];
    let out = disk.path().join("out");
    let mut cfg = config(inputs.clone(), &out);
    // About 650 kB of shards in all, a few per shard.
    cfg.shards.target_size_mb = 0.1;
    let opts = BuildOptions { quiet: true, ..Default::default() };
    let err = run_build(&cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap_err().to_string();
    unireal_testkit::assert_stopped_cleanly_on_a_full_disk(&out, &err);

    disk.resize("64m");
    run_build(&cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap();
    let full = tempfile::tempdir().unwrap();
    let mut plain = cfg.clone();
    plain.output = full.path().join("out");
    run_build(&plain, &opts, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(sample_ids(&out), sample_ids(&plain.output));
}
