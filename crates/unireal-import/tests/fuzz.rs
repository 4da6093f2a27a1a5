//! Fuzzed importer rows (issue 17): each importer's own files (JSONL rows, COCO annotations,
//! RefCOCO's pickle, Hugging Face Parquet, pair lists, prompt lists) damaged, then imported.
//! A damaged file gives bad rows or a failed unit with its reason, or an error naming the
//! input; no unit panics (the driver would record a panic as a failed unit: that fails here).
//! "Refused" counts imports that stopped with such an error or recorded more bad rows or
//! failed units than the fixture does.
//! `UNIREAL_FUZZ_CASES=N` runs longer (unireal_testkit::fuzz).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use unireal_import::{run_import, Format, ImportConfig, ImportError, ImportOptions};
use unireal_shards::InputStatus;
use unireal_testkit::copy_dir;
use unireal_testkit::fuzz::{Format as Structure, Fuzz, Verdict};

fn fuzz_file(format: Format, file: &str, structure: Structure, cases: usize) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join(format.as_str());
    copy_dir(&unireal_testkit::import_fixtures().join(format.as_str()), &root);
    if format == Format::Refcoco {
        // Its images live beside it, as in the fixture tree (`PATH/../coco/train2014`).
        copy_dir(&unireal_testkit::import_fixtures().join("coco"), &work.path().join("coco"));
    }
    let target = root.join(file);
    let seed = std::fs::read(&target).unwrap();
    let out = work.path().join("out");
    let cfg = ImportConfig { workers: 1, unit_rows: 2, ..Default::default() };
    let opts = ImportOptions { force: true, quiet: true, ..Default::default() };
    let dict: &[&[u8]] = &[b"null", b"\"\"", b"-1", b"[]", b"{}", b"\n", b" ", b"../", b"\xff\xfe", b"99999999999"];
    let name = format!("import-{}-{}", format.as_str(), file.replace(['/', '(', ')'], "_"));
    let import = || run_import(format, &root, &out, &cfg, &opts, Arc::new(AtomicBool::new(false)));
    let damage = |s: &unireal_import::ImportSummary| {
        let failed = s.manifest.inputs.iter().filter(|i| i.status == InputStatus::Failed).count();
        (failed, s.bad_rows)
    };
    // The fixtures hold bad rows and failing units on purpose: a case is refused when it
    // adds to them.
    let baseline = damage(&import().unwrap());
    Fuzz::new(&name, cases).format(structure).run(&[seed], dict, |bytes| {
        std::fs::write(&target, bytes).unwrap();
        match import() {
            Ok(summary) => {
                let inputs = &summary.manifest.inputs;
                if let Some(i) = inputs.iter().find(|i| i.reason.starts_with("panicked")) {
                    return Err(format!("unit {}: {}", i.path, i.reason));
                }
                if let Some(i) = inputs.iter().find(|i| i.status == InputStatus::Failed && i.reason.trim().is_empty()) {
                    return Err(format!("unit {} failed without a reason", i.path));
                }
                let (failed, bad) = damage(&summary);
                Ok(if failed > baseline.0 || bad > baseline.1 { Verdict::Refused } else { Verdict::Accepted })
            }
            Err(ImportError::Input { path, .. }) if !path.is_empty() => Ok(Verdict::Refused),
            Err(e) => Err(format!("an unexpected error: {e}")),
        }
    });
}

#[test]
fn damaged_omnigen_rows() {
    fuzz_file(Format::Omnigen, "train.jsonl", Structure::Json, 300);
}

#[test]
fn damaged_refcoco_annotations_and_references() {
    fuzz_file(Format::Refcoco, "instances.json", Structure::Json, 300);
    fuzz_file(Format::Refcoco, "refs(unc).p", Structure::Bytes, 300);
}

#[test]
fn damaged_hugging_face_parquet() {
    fuzz_file(Format::Instructpix2pix, "data/train-00001-of-00002.parquet", Structure::Bytes, 300);
}

#[test]
fn damaged_pair_and_prompt_lists() {
    fuzz_file(Format::Vitonhd, "train_pairs.txt", Structure::Bytes, 200);
    fuzz_file(Format::Dreambench, "dataset/prompts_and_classes.txt", Structure::Bytes, 200);
}
