//! Fuzzed readers (issue 17): shard files truncated, bit-flipped or of another schema, and
//! damaged manifests. Every reader either accepts the bytes or returns a typed error naming the
//! file; none panics. `UNIREAL_FUZZ_CASES=N` runs longer (unireal_testkit::fuzz).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use unireal_core::{sample_id, ImageRole, Sample, SampleImage, Split, Task};
use unireal_shards::{
    index_rows, read_rows, read_sample_ids, verify_dir, DatasetWriter, InputRecord, InputStatus, Manifest, ShardError,
    ShardReader, WriterOptions,
};
use unireal_testkit::fuzz::{Format, Fuzz, Verdict};

/// Samples holding the real sample images (PNG and JPEG), as the video pipeline writes them.
fn samples() -> Vec<Sample> {
    let images = unireal_testkit::repo().join("datasets/samples/images");
    let image = |name: &str, role| {
        let bytes = std::fs::read(images.join(name)).unwrap();
        let (w, h) = image::image_dimensions(images.join(name)).unwrap();
        let encoding = if name.ends_with(".jpg") { "jpeg" } else { "png" };
        SampleImage { role, encoding: encoding.into(), bytes, width: w, height: h }
    };
    let pairs = [("rocket.jpg", "coffee.png"), ("chelsea.png", "rocket.jpg"), ("rocket.jpg", "rocket.jpg")];
    pairs
        .iter()
        .enumerate()
        .map(|(k, (a, b))| Sample {
            sample_id: sample_id(Task::Frame2Frame, "fuzz", &[a, b, &k.to_string()]),
            task: if k == 1 { Task::Seg } else { Task::Frame2Frame },
            source: "fuzz".into(),
            split: if k == 2 { Split::Val } else { Split::Train },
            base_prompt: format!("Turn IMG1 into RES1: case {k}"),
            context_prompt: "realistic style.".into(),
            images: vec![image(a, ImageRole::Canvas), image(b, ImageRole::Output)],
            meta: serde_json::json!({"video": format!("v{k}.mp4"), "k": k}),
        })
        .collect()
}

fn opts() -> WriterOptions {
    WriterOptions {
        // One row group per row, so that damage lands in different places of the file.
        row_group_bytes: 1,
        manifest_interval: Duration::ZERO,
        fingerprint: "fp".into(),
        ..Default::default()
    }
}

/// A finished shard directory: one shard of three rows from two inputs, and its manifest.
fn write_dataset(dir: &Path) {
    let mut w = DatasetWriter::open(dir, opts(), false).unwrap();
    let mut s = samples();
    let last = s.split_off(2);
    w.add(InputRecord::new("v0.mp4", InputStatus::Ok, ""), s).unwrap();
    w.add(InputRecord::new("v1.mp4", InputStatus::Ok, ""), last).unwrap();
    w.add(InputRecord::new("notes.txt", InputStatus::Skipped, "not a video extension"), vec![]).unwrap();
    w.finish().unwrap();
}

/// An error must name the file it is about.
fn names(e: &ShardError, path: &Path) -> Result<Verdict, String> {
    let text = e.to_string();
    if text.contains(&path.display().to_string()) {
        Ok(Verdict::Refused)
    } else {
        Err(format!("the error does not name {}: {text}", path.display()))
    }
}

/// Every way the trainer and `verify` read one shard file.
fn read_shard(path: &Path) -> Result<Verdict, String> {
    let ids = match read_sample_ids(path) {
        Ok(ids) => ids,
        Err(e) => return names(&e, path),
    };
    let mut n = 0;
    for s in ShardReader::open_files(vec![path.to_path_buf()]) {
        match s {
            Ok(s) => {
                n += 1;
                // A row the reader returns is one the contract allows, or one check() refuses.
                let _ = s.check();
            }
            Err(e) => return names(&e, path),
        }
    }
    let rows = match index_rows(path) {
        Ok(r) => r,
        Err(e) => return names(&e, path),
    };
    if rows.len() != ids.len() || n != ids.len() {
        // Both readers saw every row: a disagreement is a reader bug, not damage.
        return Err(format!("{} sample ids, {n} samples, {} indexed rows", ids.len(), rows.len()));
    }
    let all: Vec<usize> = (0..rows.len()).collect();
    match read_rows(path, &all) {
        Ok(s) if s.len() == rows.len() => Ok(Verdict::Accepted),
        Ok(s) => Err(format!("read_rows returned {} of {} rows", s.len(), rows.len())),
        Err(e) => names(&e, path),
    }
}

#[test]
fn damaged_shard_files_give_errors_naming_the_file() {
    let src = tempfile::tempdir().unwrap();
    write_dataset(src.path());
    let m = Manifest::load(src.path()).unwrap().unwrap();
    let shard = std::fs::read(src.path().join(&m.shards[0].file)).unwrap();
    let manifest = std::fs::read(src.path().join("manifest.json")).unwrap();

    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(&m.shards[0].file);
    std::fs::write(work.path().join("manifest.json"), &manifest).unwrap();
    let dict: &[&[u8]] = &[b"PAR1", b"\0\0\0\0", b"\xff\xff\xff\x7f", b"sample_id", b"frame2frame", b"{\"video\""];
    Fuzz::new("shard-file", 1500).run(&[shard], dict, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let verdict = read_shard(&path)?;
        // `verify` over the same bytes reports, and never panics.
        let rep = verify_dir(work.path()).map_err(|e| format!("verify refused a readable manifest: {e}"))?;
        if verdict == Verdict::Refused && rep.problems.is_empty() {
            return Err("verify found no problem in a shard the reader refuses".into());
        }
        Ok(verdict)
    });
}

#[test]
fn a_parquet_file_of_another_schema_is_refused_by_name() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, RecordBatch)> = vec![
        (
            "sample_id as a number",
            RecordBatch::try_from_iter([("sample_id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)]).unwrap(),
        ),
        (
            "only a sample_id column",
            RecordBatch::try_from_iter([("sample_id", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef)])
                .unwrap(),
        ),
        (
            "other columns",
            RecordBatch::try_from_iter([
                ("id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
                ("task", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
            ])
            .unwrap(),
        ),
    ];
    for (what, batch) in cases {
        let path = dir.path().join("part-00000.parquet");
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        // read_sample_ids reads one column; the sample readers need the whole contract.
        let full = ShardReader::open_files(vec![path.clone()]).next().expect("a result");
        let e = full.expect_err(what);
        assert!(e.to_string().contains(&path.display().to_string()), "{what}: {e}");
        let e = index_rows(&path).expect_err(what);
        assert!(e.to_string().contains(&path.display().to_string()), "{what}: {e}");
        assert_eq!(read_shard(&path), Ok(Verdict::Refused), "{what}");
    }
}

#[test]
fn damaged_manifests_give_errors_naming_the_file() {
    let src = tempfile::tempdir().unwrap();
    write_dataset(src.path());
    let m = Manifest::load(src.path()).unwrap().unwrap();
    let shard_name = m.shards[0].file.clone();
    let shard = std::fs::read(src.path().join(&shard_name)).unwrap();
    let manifest = std::fs::read(src.path().join("manifest.json")).unwrap();
    let dict: &[&[u8]] = &[
        b"null",
        b"-1",
        b"18446744073709551615",
        b"1e400",
        b"\"../x\"",
        b"\"/\"",
        b"\"failed\"",
        b"\"transient\"",
        b"[]",
        b"{}",
        b"\"partition-0-of-2\"",
    ];
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("out");
    let path = dir.join("manifest.json");
    Fuzz::new("manifest", 1500).format(Format::Json).run(&[manifest], dict, |bytes| {
        // A fresh directory each case: opening a writer may remove shards the manifest no
        // longer lists.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&shard_name), &shard).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let verdict = match Manifest::load(&dir) {
            Ok(Some(_)) => Verdict::Accepted,
            Ok(None) => return Err("a manifest that exists was not found".into()),
            Err(e) => names(&e, &path)?,
        };
        match verify_dir(&dir) {
            Ok(_) if verdict == Verdict::Refused => return Err("verify accepted a manifest load() refuses".into()),
            Ok(_) => {}
            Err(e) if !e.contains(&path.display().to_string()) => {
                return Err(format!("verify's error does not name {}: {e}", path.display()))
            }
            Err(_) => {}
        }
        // A resumed build reads the manifest and the shards it lists.
        match DatasetWriter::open(&dir, opts(), false) {
            Ok(w) => {
                w.finish().map_err(|e| format!("a writer that opened could not finish: {e}"))?;
            }
            Err(ShardError::ConfigChanged { .. }) => {}
            Err(e) => {
                let text = e.to_string();
                if !text.contains(&dir.display().to_string()) {
                    return Err(format!("the writer's error names no file under {}: {text}", dir.display()));
                }
            }
        }
        Ok(verdict)
    });
}
