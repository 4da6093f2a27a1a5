//! Expert-set importers on fixtures in each set's native layout
//! (`scripts/reference/import_fixtures.py`, from the bundled sample images): row counts, bad
//! rows recorded and skipped, images decode, roles / prompts / contexts / splits as
//! documented, RefCOCO masks with the polygon's area, and resume. The CLI's errors are
//! tested with the binary, in unireal-data's tests/cli.rs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use unireal_core::{ImageRole, Sample, Split, Task};
use unireal_import::{run_import, Format, ImportConfig, ImportOptions, ImportSummary};
use unireal_shards::ShardReader;
use unireal_testkit::{import_fixtures as fixtures, sample_ids};

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn import(format: Format, out: &Path, force: bool) -> ImportSummary {
    let cfg = ImportConfig { workers: 2, ..Default::default() };
    let opts = ImportOptions { force, quiet: true, ..Default::default() };
    run_import(format, &fixtures().join(format.as_str()), out, &cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap()
}

fn read(dir: &Path) -> Vec<Sample> {
    let mut v: Vec<Sample> = ShardReader::open_dir(dir).unwrap().map(|s| s.unwrap()).collect();
    v.sort_by(|a, b| a.meta.to_string().cmp(&b.meta.to_string()));
    v
}

fn roles(s: &Sample) -> Vec<ImageRole> {
    s.images.iter().map(|i| i.role).collect()
}

use ImageRole::{Asset, Canvas, Output};

#[test]
fn every_format_imports_its_fixture_as_documented() {
    let exp = expected();
    let work = tempfile::tempdir().unwrap();
    for format in Format::ALL {
        let name = format.as_str();
        let out = work.path().join(name);
        let summary = import(format, &out, false);
        let e = &exp[name];
        let m = &summary.manifest;
        let rows: u64 = m.inputs.iter().map(|i| i.stats["rows"].as_u64().unwrap()).sum();
        let bad: u64 = m.inputs.iter().map(|i| i.stats["bad_rows"].as_u64().unwrap()).sum();
        assert_eq!(rows, e["rows"].as_u64().unwrap(), "{name}: rows read");
        assert_eq!(m.totals.rows, e["imported"].as_u64().unwrap(), "{name}: rows imported");
        assert_eq!(bad, e["bad"].as_u64().unwrap(), "{name}: bad rows: {:?}", m.inputs);
        assert_eq!(summary.bad_rows, bad);
        if let Some(u) = e.get("units") {
            assert_eq!(m.inputs.len() as u64, u.as_u64().unwrap(), "{name}: units");
        }
        // Every bad row is named with its reason.
        for i in &m.inputs {
            for b in i.stats["bad"].as_array().unwrap() {
                assert!(!b["row"].as_str().unwrap().is_empty() && !b["reason"].as_str().unwrap().is_empty(), "{b}");
            }
        }
        let rep = unireal_shards::verify_dir(&out).unwrap();
        assert!(rep.problems.is_empty(), "{name}: {:?}", rep.problems);
        let samples = read(&out);
        for s in &samples {
            s.check().unwrap();
            assert_eq!(s.source, name);
            for img in &s.images {
                let d = image::load_from_memory(&img.bytes).unwrap();
                assert_eq!((d.width(), d.height()), (img.width, img.height), "{name}");
            }
        }
        check_format(format, &samples);
    }
}

fn check_format(format: Format, samples: &[Sample]) {
    let ctx = |s: &Sample| s.context_prompt.clone();
    match format {
        Format::Instructpix2pix | Format::Ultraedit | Format::Magicbrush => {
            for s in samples {
                assert_eq!(s.task, Task::Edit);
                assert_eq!(roles(s), [Canvas, Output]);
                assert!(s.base_prompt.starts_with("Turn IMG1 into RES1: "), "{}", s.base_prompt);
                let want = if format == Format::Magicbrush {
                    "realistic style, static scene."
                } else {
                    "synthetic style, static scene."
                };
                assert_eq!(ctx(s), want);
            }
            let prompts: BTreeSet<&str> = samples.iter().map(|s| s.base_prompt.as_str()).collect();
            assert_eq!(prompts.len(), samples.len(), "one instruction per row");
            if format == Format::Ultraedit {
                let region: Vec<_> = samples.iter().filter(|s| s.meta["subset"] == "RegionBase").collect();
                assert_eq!(region.len(), 1);
                assert_eq!(region[0].meta["edit_object"], "rocket");
                assert_eq!(region[0].meta["has_mask"], true);
            }
            if format == Format::Magicbrush {
                let turns: BTreeSet<i64> = samples.iter().map(|s| s.meta["turn_index"].as_i64().unwrap()).collect();
                assert_eq!(turns, BTreeSet::from([1, 2]));
            }
        }
        Format::EmuEdit => {
            for s in samples {
                assert_eq!((s.task, s.split), (Task::Edit, Split::Test));
                assert_eq!(roles(s), [Canvas], "an evaluation set: no target image");
                assert!(s.meta["output_caption"].is_string());
            }
        }
        Format::Vitonhd => {
            let splits: Vec<Split> = samples.iter().map(|s| s.split).collect();
            assert_eq!(splits.iter().filter(|s| **s == Split::Train).count(), 1);
            for s in samples {
                assert_eq!(s.task, Task::TryOn);
                assert_eq!(ctx(s), "realistic style, with reference object.");
                assert_eq!(s.base_prompt, "Dress the person in IMG2 in the garment of IMG1 to make RES1.");
                match s.split {
                    Split::Test => assert_eq!(roles(s), [Asset, Canvas], "unpaired test pairs have no ground truth"),
                    _ => assert_eq!(roles(s), [Asset, Canvas, Output]),
                }
            }
        }
        Format::Refcoco => {
            let exp = expected();
            let areas = &exp["refcoco"]["areas"];
            let mut seen = BTreeSet::new();
            for s in samples {
                assert_eq!(s.task, Task::Seg);
                assert_eq!(roles(s), [Canvas, Output]);
                assert_eq!(s.images[1].encoding, "png");
                assert_eq!(ctx(s), "realistic style, perception task.");
                assert!(
                    s.base_prompt.starts_with("Segment ")
                        && s.base_prompt.ends_with(" in IMG1 and give its mask as RES1.")
                );
                // The mask has the annotation's area (polygon: shoelace; RLE: exact) within
                // rounding at the polygon's edge.
                let mask = image::load_from_memory(&s.images[1].bytes).unwrap().to_luma8();
                let pixels = mask.as_raw().iter().filter(|&&v| v == 255).count() as f64;
                assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255));
                let ann = s.meta["ann_id"].as_i64().unwrap().to_string();
                let want = areas[&ann].as_f64().unwrap();
                assert!((pixels - want).abs() <= 0.02 * want + 2.0, "ann {ann}: {pixels} px vs area {want}");
                seen.insert(ann);
                let split = match s.meta["refcoco_split"].as_str().unwrap() {
                    "train" => Split::Train,
                    "val" => Split::Val,
                    _ => Split::Test,
                };
                assert_eq!(s.split, split);
            }
            assert_eq!(seen.len(), 4, "polygon, quad, compressed and uncompressed RLE: {seen:?}");
        }
        Format::Dreambench => {
            for s in samples {
                assert_eq!((s.task, s.split), (Task::MultiObject, Split::Test));
                assert_eq!(roles(s), [Asset]);
                assert!(
                    s.base_prompt.starts_with("Generate RES1: a IMG1 ")
                        || s.base_prompt.starts_with("Generate RES1: a red IMG1 "),
                    "{}",
                    s.base_prompt
                );
            }
            let dog: Vec<_> = samples.iter().filter(|s| s.meta["subject"] == "dog").collect();
            assert_eq!(dog.len(), 2, "live subjects take the live prompts");
            assert!(dog.iter().any(|s| s.base_prompt.contains("IMG1 dog wearing a santa hat")));
        }
        Format::Omnigen => {
            let by: Vec<(Task, Vec<ImageRole>)> = samples.iter().map(|s| (s.task, roles(s))).collect();
            assert!(by.contains(&(Task::Edit, vec![Canvas, Output])), "{by:?}");
            assert!(by.contains(&(Task::MultiObject, vec![Asset, Asset, Output])), "{by:?}");
            assert!(by.contains(&(Task::TextToImage, vec![Output])), "{by:?}");
            for s in samples {
                assert!(!s.base_prompt.contains("<img>"), "placeholders become index words: {}", s.base_prompt);
                assert_eq!(ctx(s), "");
            }
            assert!(samples.iter().any(|s| s.base_prompt.contains("The cat in IMG1 sits next to the rocket in IMG2.")));
        }
        Format::Images => {
            for s in samples {
                assert_eq!(s.task, Task::TextToImage);
                assert_eq!(roles(s), [Output]);
                assert_eq!(ctx(s), "realistic style.");
                assert!(s.base_prompt.starts_with("Generate RES1: A "), "{}", s.base_prompt);
            }
        }
    }
}

#[test]
fn an_import_resumes_and_a_forced_one_gives_the_same_ids() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ip2p");
    let first = import(Format::Instructpix2pix, &out, false);
    let ids = sample_ids(&out);
    assert_eq!(ids.len(), 3);
    let again = import(Format::Instructpix2pix, &out, false);
    assert_eq!((again.processed, again.already_done, again.new_samples), (0, first.processed, 0));
    assert_eq!(sample_ids(&out), ids);
    // Half done: a unit missing from the manifest is redone, and its rows, already in a
    // finished shard, are not written twice.
    let path = out.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inputs = m["inputs"].as_array_mut().unwrap();
    let dropped = inputs.iter().position(|i| i["samples"].as_u64() == Some(2)).unwrap();
    inputs.remove(dropped);
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let redo = import(Format::Instructpix2pix, &out, false);
    assert_eq!((redo.processed, redo.new_samples), (1, 0));
    assert_eq!(redo.manifest.inputs.len(), 3);
    assert_eq!(sample_ids(&out), ids);
    let forced = import(Format::Instructpix2pix, &out, true);
    assert_eq!(forced.new_samples, 3);
    assert_eq!(sample_ids(&out), ids);
}

/// MagicBrush's test archive (`edit_sessions.json`, `global_descriptions.json`,
/// `images/<img_id>/…`, here under `test/`): every turn a `test` row whose canvas is the
/// turn's input (turn 2's is turn 1's ground truth) and whose output is the ground truth, the
/// captions in meta; a turn whose image is missing is a bad row, named.
#[test]
fn magicbrush_test_archive_imports_every_turn_as_test() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("magicbrush");
    let test = root.join("test");
    let samples = unireal_testkit::repo().join("datasets/samples/images");
    for (id, files) in [("139306", vec!["input", "output1", "output2"]), ("242679", vec!["input", "output1"])] {
        let dir = test.join("images").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        for (k, f) in files.iter().enumerate() {
            let src = ["horse.png", "chelsea.png", "coffee.png"][k];
            std::fs::copy(samples.join(src), dir.join(format!("{id}-{f}.png"))).unwrap();
        }
    }
    let turn = |id: &str, input: &str, k: usize, instruction: &str| {
        serde_json::json!({"input": format!("{id}-{input}.png"), "mask": format!("{id}-mask{k}.png"),
            "output": format!("{id}-output{k}.png"), "instruction": instruction})
    };
    let sessions = serde_json::json!({
        "139306": [turn("139306", "input", 1, "Put a cat on the seat."), turn("139306", "output1", 2, "Make it a cup.")],
        "242679": [turn("242679", "input", 1, "Add a hat."), turn("242679", "output1", 2, "Missing image.")],
    });
    std::fs::write(test.join("edit_sessions.json"), sessions.to_string()).unwrap();
    let captions = serde_json::json!({"139306": {"139306-input.png": "a horse in a field",
        "139306-output1.png": "a cat on a seat", "139306-output2.png": "a cup of coffee"}});
    std::fs::write(test.join("global_descriptions.json"), captions.to_string()).unwrap();

    let out = work.path().join("shards");
    let cfg = ImportConfig { workers: 2, ..Default::default() };
    let opts = ImportOptions { force: false, quiet: true, ..Default::default() };
    let summary = run_import(Format::Magicbrush, &root, &out, &cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!((summary.manifest.totals.rows, summary.bad_rows), (3, 1), "{:?}", summary.manifest.inputs);
    let bad =
        summary.manifest.inputs.iter().flat_map(|i| i.stats["bad"].as_array().unwrap().clone()).collect::<Vec<_>>();
    assert!(bad[0].to_string().contains("242679-output2.png"), "{bad:?}");
    let rows = read(&out);
    assert!(rows.iter().all(|s| s.split == Split::Test && s.task == Task::Edit && roles(s) == [Canvas, Output]));
    let second = rows.iter().find(|s| s.meta["img_id"] == "139306" && s.meta["turn_index"] == 2).unwrap();
    assert_eq!(second.base_prompt, "Turn IMG1 into RES1: Make it a cup.");
    assert_eq!(
        (second.meta["input_caption"].as_str(), second.meta["output_caption"].as_str()),
        (Some("a cat on a seat"), Some("a cup of coffee"))
    );
    // Turn 2 edits turn 1's ground truth.
    let first = rows.iter().find(|s| s.meta["img_id"] == "139306" && s.meta["turn_index"] == 1).unwrap();
    assert_eq!(second.images[0].bytes, first.images[1].bytes);
    // No captions for a session: null, not invented.
    let other = rows.iter().find(|s| s.meta["img_id"] == "242679").unwrap();
    assert!(other.meta["output_caption"].is_null());
}

/// `--shard-index/--num-shards` (a Slurm array): units are split by a stable hash of their key,
/// each partition writes its own folder, and the union is the single import, none twice.
#[test]
fn the_union_of_partitioned_imports_is_the_single_import() {
    let work = tempfile::tempdir().unwrap();
    // One reference per unit: 6 units (7 rows: one reference has two sentences) to split.
    let cfg = ImportConfig { workers: 1, unit_rows: 1, ..Default::default() };
    let src = fixtures().join("refcoco");
    let run = |out: &Path, partition| {
        let opts = ImportOptions { quiet: true, partition, ..Default::default() };
        run_import(Format::Refcoco, &src, out, &cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap()
    };
    let single = work.path().join("single");
    let one = run(&single, None);
    assert_eq!(one.manifest.inputs.len(), 6);
    let parts = work.path().join("parts");
    let mut units = Vec::new();
    for i in 0..3 {
        let s = run(&parts, Some(unireal_shards::Partition::new(i, 3).unwrap()));
        assert_eq!(s.output, parts.join(format!("partition-{i:04}-of-0003")));
        assert!(s.manifest.inputs.len() < 6, "partition {i} took every unit");
        units.extend(s.manifest.inputs.iter().map(|r| r.path.clone()));
    }
    units.sort();
    let mut all: Vec<String> = one.manifest.inputs.iter().map(|r| r.path.clone()).collect();
    all.sort();
    assert_eq!(units, all, "every unit in exactly one partition");
    let ids = sample_ids(&parts);
    assert_eq!(ids, sample_ids(&single));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "a sample id in two partitions");
    let rep = unireal_shards::verify_dir(&parts).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

/// An import into a filesystem that fills up (issue 17) stops with an error naming the path,
/// leaves only finished shards and a valid manifest, and once there is room the same command
/// completes it: the sample ids of an import that never ran out.
#[test]
fn a_full_disk_stops_the_import_cleanly_and_it_resumes_once_there_is_room() {
    let work = tempfile::tempdir().unwrap();
    // An image folder with captions: the sample images, four times over.
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for k in 0..4 {
        for e in std::fs::read_dir(unireal_testkit::repo().join("datasets/samples/images")).unwrap() {
            let p = e.unwrap().path();
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let ext = p.extension().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&p, images.join(format!("{k}-{stem}.{ext}"))).unwrap();
            std::fs::write(images.join(format!("{k}-{stem}.txt")), format!("a photo of a {stem}")).unwrap();
        }
    }
    let cfg = ImportConfig { workers: 2, unit_rows: 2, target_size_mb: 0.3, ..Default::default() };
    let opts = ImportOptions { quiet: true, ..Default::default() };
    let never = || Arc::new(AtomicBool::new(false));
    let plain = work.path().join("plain");
    let full = run_import(Format::Images, &images, &plain, &cfg, &opts, never()).unwrap();
    assert!(full.manifest.shards.len() >= 4, "{:?}", full.manifest.shards);

    let Some(disk) = unireal_testkit::Tmpfs::mount(&format!("{}k", full.manifest.totals.bytes / 2048)) else { return };
    let out = disk.path().join("out");
    let err = run_import(Format::Images, &images, &out, &cfg, &opts, never()).unwrap_err().to_string();
    unireal_testkit::assert_stopped_cleanly_on_a_full_disk(&out, &err);

    disk.resize("64m");
    run_import(Format::Images, &images, &out, &cfg, &opts, never()).unwrap();
    assert_eq!(sample_ids(&out), sample_ids(&plain));
}
