use std::time::Duration;

use unireal_core::{sample_id, ImageRole, Sample, SampleImage, Split, Task};
use unireal_shards::{DatasetWriter, InputRecord, InputStatus, Manifest, ShardReader, WriterOptions};

fn sample(video: &str, k: usize, payload: usize) -> Sample {
    // Incompressible bytes, so that shard sizes follow the payload.
    let noise = |n: usize, salt: u64| {
        let mut x = (k as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15) ^ salt;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
    };
    let img =
        |role, n: usize| SampleImage { role, encoding: "jpeg".into(), bytes: noise(n, n as u64), width: 8, height: 6 };
    Sample {
        sample_id: sample_id(Task::Frame2Frame, "video", &[video, &k.to_string()]),
        task: Task::Frame2Frame,
        source: "video".into(),
        split: if k % 5 == 0 { Split::Val } else { Split::Train },
        base_prompt: format!("Turn IMG1 into RES1: pan left {k}"),
        context_prompt: "realistic style, dynamic scene.".into(),
        images: vec![img(ImageRole::Canvas, payload), img(ImageRole::Output, payload + 1)],
        meta: serde_json::json!({"video": video, "k": k}),
    }
}

fn record(path: &str) -> InputRecord {
    InputRecord {
        path: path.into(),
        status: InputStatus::Ok,
        reason: String::new(),
        samples: 0,
        stats: serde_json::Value::Null,
        kind: None,
    }
}

fn opts(target: u64) -> WriterOptions {
    WriterOptions {
        target_shard_bytes: target,
        row_group_bytes: 1 << 14,
        manifest_interval: Duration::ZERO,
        fingerprint: "fp1".into(),
        ..Default::default()
    }
}

#[test]
fn round_trip_and_roll_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::open(dir.path(), opts(40_000), false).unwrap();
    let mut all = Vec::new();
    for v in 0..6 {
        let video = format!("v{v}.mp4");
        let samples: Vec<Sample> = (0..5).map(|k| sample(&video, v * 10 + k, 3000)).collect();
        all.extend(samples.clone());
        assert_eq!(w.add(record(&video), samples).unwrap(), 5);
    }
    w.add(InputRecord { status: InputStatus::Failed, reason: "bad".into(), ..record("bad.mp4") }, vec![]).unwrap();
    let m = w.finish().unwrap();
    assert!(m.shards.len() >= 3, "rolled into {} shards", m.shards.len());
    assert_eq!(m.totals.rows, 30);
    assert_eq!(m.totals.tasks["frame2frame"], 30);
    assert_eq!(m.inputs.len(), 7);
    assert_eq!(m.totals.inputs["failed"], 1);
    let back: Vec<Sample> = ShardReader::open_dir(dir.path()).unwrap().map(|s| s.unwrap()).collect();
    assert_eq!(back, all);
    // Only shards and the manifest are left.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(n == "manifest.json" || (n.starts_with("part-") && n.ends_with(".parquet")), "{n}");
    }
}

#[test]
fn resume_after_kill_keeps_committed_and_redoes_pending() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::open(dir.path(), opts(60_000), false).unwrap();
    for v in 0..4 {
        let video = format!("v{v}.mp4");
        w.add(record(&video), (0..4).map(|k| sample(&video, v * 10 + k, 3000)).collect()).unwrap();
    }
    // A kill: the writer is dropped without finish (its lock ends with it, as with a killed
    // process); its temporary shard stays behind.
    drop(w);
    let m = Manifest::load(dir.path()).unwrap().unwrap();
    let committed: Vec<String> = m.inputs.iter().map(|i| i.path.clone()).collect();
    assert!(!committed.is_empty() && committed.len() < 4, "{committed:?}");

    let mut w = DatasetWriter::open(dir.path(), opts(60_000), false).unwrap();
    let leftover = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(leftover, 0, "temporary files are cleaned on open");
    for v in 0..4 {
        let video = format!("v{v}.mp4");
        if w.is_done(&video) {
            continue;
        }
        w.add(record(&video), (0..4).map(|k| sample(&video, v * 10 + k, 3000)).collect()).unwrap();
    }
    let m = w.finish().unwrap();
    let ids: Vec<String> = ShardReader::open_dir(dir.path()).unwrap().map(|s| s.unwrap().sample_id).collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 16);
    assert_eq!(unique.len(), 16);
    assert_eq!(m.inputs.len(), 4);
}

#[test]
fn duplicates_are_dropped_and_config_change_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::open(dir.path(), opts(1 << 30), false).unwrap();
    let s = sample("a.mp4", 1, 10);
    assert_eq!(w.add(record("a.mp4"), vec![s.clone(), s.clone()]).unwrap(), 1);
    assert_eq!(w.add(record("b.mp4"), vec![s]).unwrap(), 0);
    w.finish().unwrap();
    let other = WriterOptions { fingerprint: "fp2".into(), ..opts(1 << 30) };
    let err = DatasetWriter::open(dir.path(), other.clone(), false).err().unwrap().to_string();
    assert!(err.contains("different configuration"), "{err}");
    let w = DatasetWriter::open(dir.path(), other, true).unwrap();
    assert_eq!(w.manifest().shards.len(), 0);
}

/// One writer per directory: a second one is refused, naming the first; once the first is
/// gone (finished, or killed) the directory can be written again.
#[test]
fn a_second_writer_into_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = DatasetWriter::open(
        dir.path(),
        WriterOptions { created_by: "unireal-data build".into(), ..opts(1 << 30) },
        false,
    )
    .unwrap();
    let err = DatasetWriter::open(dir.path(), opts(1 << 30), true).err().unwrap();
    assert!(matches!(err, unireal_shards::ShardError::Busy { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("another process is writing here (unireal-data build, pid"), "{msg}");
    // Refused before touching anything: --force did not remove the first writer's manifest.
    assert!(dir.path().join("manifest.json").is_file());
    w.finish().unwrap();
    DatasetWriter::open(dir.path(), opts(1 << 30), false).unwrap().finish().unwrap();
}

/// The trainer's random access: a metadata index without image bytes, and rows by number.
#[test]
fn index_rows_and_read_rows_agree_with_a_full_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::open(dir.path(), opts(40_000), false).unwrap();
    let samples: Vec<Sample> = (0..12).map(|k| sample("v.mp4", k, 3000)).collect();
    w.add(record("v.mp4"), samples).unwrap();
    let m = w.finish().unwrap();
    let mut all = Vec::new();
    for shard in &m.shards {
        let path = dir.path().join(&shard.file);
        let full: Vec<Sample> =
            unireal_shards::ShardReader::open_files(vec![path.clone()]).map(|s| s.unwrap()).collect();
        let index = unireal_shards::index_rows(&path).unwrap();
        assert_eq!(index.len(), full.len());
        for (i, (r, s)) in index.iter().zip(&full).enumerate() {
            assert_eq!(
                (r.row, &r.sample_id, r.task, r.split, r.signature),
                (i, &s.sample_id, s.task, s.split, s.signature())
            );
            assert_eq!(r.output_size, (8, 6));
            assert_eq!(r.holdout_key, "video:v.mp4");
        }
        // Out of order, with a repeat: returned in the order asked.
        let want: Vec<usize> = (0..full.len()).rev().chain([0]).collect();
        let got = unireal_shards::read_rows(&path, &want).unwrap();
        for (g, &r) in got.iter().zip(&want) {
            assert_eq!(g, &full[r]);
        }
        let err = unireal_shards::read_rows(&path, &[full.len()]).unwrap_err();
        assert!(err.to_string().contains(&shard.file), "{err}");
        all.extend(full);
    }
    assert_eq!(all.len(), 12);
}
