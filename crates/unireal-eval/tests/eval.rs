//! `unireal-eval --outputs` against scripts/reference/eval.py: the three protocols' scores on
//! test rows written as the importers write them, with tiny random CLIP and DINO models
//! (crates/unireal-model/tests/fixtures) in the published models' place. Cosines within 1e-3,
//! pixel distances within 1e-4; known values (an unchanged image, swapped captions); missing
//! and broken outputs are skipped with their reason; a wrong model directory is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, Float64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use unireal_core::{sample_id, ImageRole, Sample, SampleImage, Split, Task};
use unireal_shards::{DatasetWriter, InputRecord, InputStatus, WriterOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn models(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../unireal-model/tests/fixtures").join(name)
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap()
}

fn png(name: &str) -> SampleImage {
    let bytes = std::fs::read(fixtures().join(format!("images/{name}.png"))).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    SampleImage { role: ImageRole::Canvas, encoding: "png".into(), bytes, width: img.width(), height: img.height() }
}

fn with_role(mut i: SampleImage, role: ImageRole) -> SampleImage {
    i.role = role;
    i
}

/// A test row as `unireal-data import` writes it for `protocol`.
fn row(protocol: &str, case: &Value) -> Sample {
    let name = case["name"].as_str().unwrap();
    let s = |k: &str| case[k].as_str().map(String::from);
    let (task, images, meta) = match protocol {
        "dreambench" => {
            // As the importer writes a DreamBench row: the subject's first image as the asset,
            // every image listed in meta.subject_images (relative to the imported folder).
            let refs: Vec<&str> = case["references"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            let images = vec![with_role(png(refs[0]), ImageRole::Asset)];
            let listed: Vec<String> = refs.iter().map(|r| format!("images/{r}.png")).collect();
            let meta = serde_json::json!({"template": s("template"), "class": s("cls"), "subject_images": listed});
            (Task::MultiObject, images, meta)
        }
        _ => {
            let mut images = vec![png(case["input"].as_str().unwrap())];
            if let Some(t) = s("target") {
                images.push(with_role(png(&t), ImageRole::Output));
            }
            let meta = serde_json::json!({"input_caption": s("input_caption"), "output_caption": s("output_caption"),
                "hf_split": "test"});
            (Task::Edit, images, meta)
        }
    };
    Sample {
        sample_id: sample_id(task, protocol, &[name]),
        task,
        source: protocol.into(),
        split: Split::Test,
        base_prompt: "Turn IMG1 into RES1: edit it".into(),
        context_prompt: "realistic style, static scene.".into(),
        images,
        meta,
    }
}

fn write_shards(dir: &Path, samples: Vec<Sample>) {
    let mut w = DatasetWriter::open(dir, WriterOptions::default(), false).unwrap();
    let record = InputRecord {
        path: "fixture".into(),
        status: InputStatus::Ok,
        reason: String::new(),
        samples: 0,
        stats: Value::Null,
        kind: None,
    };
    w.add(record, samples).unwrap();
    w.finish().unwrap();
}

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unireal-eval")).args(args).output().unwrap()
}

/// `scores.parquet` as sample id → column → value (strings and floats as JSON).
fn read_scores(path: &Path) -> BTreeMap<String, BTreeMap<String, Value>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let schema = batch.schema();
        let ids = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        for r in 0..batch.num_rows() {
            let mut cols = BTreeMap::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let col = batch.column(c);
                let v = if col.is_null(r) {
                    Value::Null
                } else if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                    Value::from(s.value(r))
                } else {
                    Value::from(col.as_any().downcast_ref::<Float64Array>().unwrap().value(r))
                };
                cols.insert(field.name().clone(), v);
            }
            out.insert(ids.value(r).to_string(), cols);
        }
    }
    out
}

#[test]
fn scores_match_the_reference_for_every_protocol() {
    let cases = cases();
    for protocol in ["emu-edit", "magicbrush", "dreambench"] {
        let tmp = tempfile::tempdir().unwrap();
        let (shards, outputs, report) =
            (tmp.path().join("shards"), tmp.path().join("outputs"), tmp.path().join("report"));
        std::fs::create_dir_all(&outputs).unwrap();
        let list = cases[protocol].as_array().unwrap();
        let mut samples: Vec<Sample> = list.iter().map(|c| row(protocol, c)).collect();
        for (case, s) in list.iter().zip(&samples) {
            let out = case["output"].as_str().unwrap();
            std::fs::copy(fixtures().join(format!("images/{out}.png")), outputs.join(format!("{}.png", s.sample_id)))
                .unwrap();
        }
        // Two rows whose outputs are missing or broken: skipped with the reason.
        let mut missing = row(protocol, &list[0]);
        missing.sample_id = sample_id(missing.task, protocol, &["missing"]);
        let mut broken = row(protocol, &list[0]);
        broken.sample_id = sample_id(broken.task, protocol, &["broken"]);
        std::fs::write(outputs.join(format!("{}.png", broken.sample_id)), b"not a png").unwrap();
        let (missing_id, broken_id) = (missing.sample_id.clone(), broken.sample_id.clone());
        samples.push(missing);
        samples.push(broken);
        write_shards(&shards, samples.clone());

        let (clip, dino, root) = (models("clip"), models("dino"), fixtures());
        let mut args = vec![
            "--protocol",
            protocol,
            "--shards",
            shards.to_str().unwrap(),
            "--clip",
            clip.to_str().unwrap(),
            "--dino",
            dino.to_str().unwrap(),
            "--outputs",
            outputs.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ];
        if protocol == "dreambench" {
            // Every image of the subject is a reference (the expected scores average over all).
            args.extend(["--references", root.to_str().unwrap()]);
        }
        let out = eval(&args);
        assert!(out.status.success(), "{protocol}: {}", String::from_utf8_lossy(&out.stderr));
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["scored"], list.len(), "{protocol}: {summary}");

        let scores = read_scores(&report.join("scores.parquet"));
        assert_eq!(scores.len(), samples.len(), "{protocol}: one row per sample");
        for (case, s) in list.iter().zip(&samples) {
            let got = &scores[&s.sample_id];
            assert_eq!(got["status"], "scored", "{protocol} {}: {got:?}", case["name"]);
            let expected = case["expected"].as_object().unwrap();
            for (metric, want) in expected {
                let want = want.as_f64().unwrap();
                let v = got[metric].as_f64().unwrap_or_else(|| panic!("{protocol} {}: no {metric}", case["name"]));
                let tol = if metric.ends_with("l1") || metric.ends_with("l2") { 1e-4 } else { 1e-3 };
                assert!((v - want).abs() < tol, "{protocol} {} {metric}: {v} vs transformers' {want}", case["name"]);
            }
            // Metrics the reference could not compute (no captions) are null, with the reason.
            for m in ["clip_dir", "clip_out", "gt_clip_t"] {
                if got.contains_key(m) && !expected.contains_key(m) {
                    assert_eq!(got[m], Value::Null, "{protocol} {}: {m}", case["name"]);
                    assert!(got["reason"].as_str().unwrap().contains(m), "{got:?}");
                }
            }
        }
        for (id, why) in [(&missing_id, "no output image"), (&broken_id, "does not decode")] {
            assert_eq!(scores[id]["status"], "skipped");
            assert!(scores[id]["reason"].as_str().unwrap().contains(why), "{:?}", scores[id]);
        }

        let json: Value = serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
        assert_eq!((json["rows"].as_u64(), json["skipped"].as_u64()), (Some(samples.len() as u64), Some(2)));
        // Each mean is over the samples that have the metric.
        for (metric, mean) in json["means"].as_object().unwrap() {
            let values: Vec<f64> = list.iter().filter_map(|c| c["expected"][metric].as_f64()).collect();
            let want = values.iter().sum::<f64>() / values.len() as f64;
            assert!((mean.as_f64().unwrap() - want).abs() < 1e-3, "{protocol} mean {metric}");
            assert_eq!(json["counts"][metric].as_u64(), Some(values.len() as u64), "{protocol} count {metric}");
        }
        if protocol == "emu-edit" {
            // Known values, from the binary: an output identical to its input gives CLIP_im =
            // DINO = 1, L1 = 0 and CLIP_dir = 0; swapping the captions flips CLIP_dir's sign.
            let id = |name: &str| {
                let i = list.iter().position(|c| c["name"] == name).unwrap();
                samples[i].sample_id.clone()
            };
            let same = &scores[&id("unchanged")];
            for (m, want) in [("clip_im", 1.0), ("dino", 1.0), ("l1", 0.0), ("clip_dir", 0.0)] {
                assert!((same[m].as_f64().unwrap() - want).abs() < 1e-5, "unchanged {m}: {}", same[m]);
            }
            let a = scores[&id("cat_to_coffee")]["clip_dir"].as_f64().unwrap();
            let b = scores[&id("swapped")]["clip_dir"].as_f64().unwrap();
            assert!(a.abs() > 1e-2 && (a + b).abs() < 1e-5, "CLIP_dir {a} and with swapped captions {b}");
        }
        let md = std::fs::read_to_string(report.join("report.md")).unwrap();
        assert!(md.contains("| UniReal (paper) |") && md.contains("| **this run** |"), "{md}");
    }
}

/// The CLIP and DINO transforms against reference pixels, on images whose crop margin is odd
/// (torchvision rounds the offset half to even; transformers would floor it).
#[test]
fn transforms_match_torchvision_pixels() {
    let cases = cases();
    let clip = {
        let mut p = unireal_model::ImageProcessor::from_dir(&models("clip")).unwrap();
        p.crop_offset = unireal_model::CropOffset::RoundHalfEven;
        p
    };
    for (which, proc) in [("clip", clip), ("dino", unireal_eval::metrics::dino_eval_transform(32))] {
        let px = &cases["pixels"][which];
        let name = px["image"].as_str().unwrap();
        let img = image::open(fixtures().join(format!("images/{name}.png"))).unwrap().to_rgb8();
        let got = proc.preprocess(img.as_raw(), img.width(), img.height());
        let want: Vec<f64> = px["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(got.len(), want.len(), "{which}");
        let d = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(d < 1e-5, "{which} pixels of {name} differ from torchvision's by {d}");
    }
}

#[test]
fn bad_invocations_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let cases = cases();
    write_shards(&shards, vec![row("emu-edit", &cases["emu-edit"][0])]);
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    let base = |protocol: &str, dino: &Path| {
        eval(&[
            "--protocol",
            protocol,
            "--shards",
            shards.to_str().unwrap(),
            "--clip",
            models("clip").to_str().unwrap(),
            "--dino",
            dino.to_str().unwrap(),
            "--outputs",
            outputs.to_str().unwrap(),
            "--out",
            tmp.path().join("report").to_str().unwrap(),
        ])
    };
    // A CLIP directory where DINO belongs: the file and what it is.
    let out = base("emu-edit", &models("clip"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("config.json") && err.contains("model_type `clip`"), "{err}");
    // No rows of the protocol's source: what the shards hold instead.
    let out = base("dreambench", &models("dino"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no `dreambench` rows") && err.contains("emu-edit (test): 1"),
        "{err}"
    );
    // Nothing to score (an empty --outputs): a failure, after the report files say why.
    let out = base("emu-edit", &models("dino"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no test row could be scored") && err.contains("hint:"), "{err}");
    assert!(tmp.path().join("report/report.json").is_file());
    // A Hugging Face split no row has: the filter is named.
    let out = eval(&[
        "--protocol",
        "emu-edit",
        "--shards",
        shards.to_str().unwrap(),
        "--clip",
        models("clip").to_str().unwrap(),
        "--dino",
        models("dino").to_str().unwrap(),
        "--outputs",
        outputs.to_str().unwrap(),
        "--hf-split",
        "validation",
        "--out",
        tmp.path().join("report").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("meta.hf_split `validation`"), "{err}");
}

/// Every weight drawn from N(0, 0.05): adaLN-Zero's initial DiT predicts zero whatever the
/// prompt, so a row's prompt would not change what is generated.
fn randomized<B: burn::prelude::Backend, M: burn::module::Module<B>>(module: M) -> M {
    use burn::module::{ModuleMapper, Param};
    use burn::prelude::Tensor;
    struct Random;
    impl<B: burn::prelude::Backend> ModuleMapper<B> for Random {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = param.consume();
            let r = Tensor::random(t.shape(), burn::tensor::Distribution::Normal(0.0, 0.05), &t.device());
            Param::from_mapped_value(id, r, mapper)
        }
    }
    module.map(&mut Random)
}

/// A run directory with one checkpoint (step 2) of the tiny preset at 32 px, random weights
/// in the trainer's layout (as unireal-infer's test makes one).
fn tiny_checkpoint(dir: &Path) -> PathBuf {
    use burn::backend::NdArray;
    use burn::prelude::Backend;
    use unireal_pipeline::checkpoint::{checkpoint_name, checkpoints_dir, CONFIG, EMA_WEIGHTS, MODEL_WEIGHTS, STATE};
    let yaml = "model: {preset: tiny, latent: {kind: space_to_depth, factor: 2}, text: {kind: bytes, width: 32, layers: 1, max_len: 128}}\n\
                data: {sources: [{path: shards, weight: 1.0}], resolution: 32, batch_size: 2}\n\
                train: {steps: 2, ema_decay: 0.5, shift: 1.0}\nlog: {val_every: 0, sample_every: 0, sample_steps: 2}\n";
    let cfg: unireal_pipeline::checkpoint::RunConfig = serde_yaml::from_str(yaml).unwrap();
    let run = dir.join("run");
    let ckpt = checkpoints_dir(&run).join(checkpoint_name(2));
    std::fs::create_dir_all(&ckpt).unwrap();
    let device = Default::default();
    for (seed, name) in [(1, MODEL_WEIGHTS), (2, EMA_WEIGHTS)] {
        <NdArray as Backend>::seed(&device, seed);
        let model = randomized(cfg.model.init::<NdArray>(&device).unwrap());
        unireal_model::save_safetensors(&model, &ckpt.join(name)).unwrap();
    }
    std::fs::write(ckpt.join(CONFIG), yaml).unwrap();
    std::fs::write(ckpt.join(STATE), "{}").unwrap();
    run
}

/// `--checkpoint` on a MagicBrush-layout test split: every row generated into
/// OUT/generated/, the three report files written; a rerun after a kill (an image missing)
/// keeps what is there, regenerates the missing image identically (per-row seeds) and scores
/// each sample once; `--no-context-prompt` changes what is generated.
#[test]
fn checkpoint_generates_resumes_and_scores_each_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_checkpoint(tmp.path());
    let shards = tmp.path().join("shards");
    let cases = cases();
    let list = cases["magicbrush"].as_array().unwrap();
    let mut samples: Vec<Sample> = list.iter().map(|c| row("magicbrush", c)).collect();
    // A third row with the first one's input (its bucket and roles): sampled in one batch with it.
    let mut again = row("magicbrush", &list[0]);
    again.sample_id = sample_id(again.task, "magicbrush", &["again"]);
    again.base_prompt = "Turn IMG1 into RES1: make it blue".into();
    samples.push(again);
    write_shards(&shards, samples.clone());
    let (clip, dino) = (models("clip"), models("dino"));
    let go = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--protocol",
            "magicbrush",
            "--shards",
            shards.to_str().unwrap(),
            "--clip",
            clip.to_str().unwrap(),
            "--dino",
            dino.to_str().unwrap(),
            "--checkpoint",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = eval(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let out = tmp.path().join("eval");
    let summary = go(&out, &[]);
    assert_eq!(summary["scored"], samples.len(), "{summary}");
    for f in ["scores.parquet", "report.json", "report.md"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let png = |dir: &Path, s: &Sample| dir.join("generated").join(format!("{}.png", s.sample_id));
    let first: Vec<Vec<u8>> = samples.iter().map(|s| std::fs::read(png(&out, s)).unwrap()).collect();
    // At the bucket the run gives the row's input (the one unireal-infer would use).
    let img = image::load_from_memory(&first[0]).unwrap();
    let input = &samples[0].images[0];
    let bucket =
        unireal_pipeline::Checkpoint::open(&run).unwrap().bucket_for(Some((input.width, input.height))).unwrap();
    assert_eq!((img.width(), img.height()), (bucket.width, bucket.height));

    // A kill before the second image was written: the rerun keeps the first, makes the
    // second again, identically, and the scores hold each sample once.
    std::fs::remove_file(png(&out, &samples[1])).unwrap();
    std::fs::write(png(&out, &samples[0]), &first[1]).unwrap(); // marks it: kept, not regenerated
    let again = go(&out, &[]);
    assert_eq!(again["scored"], samples.len());
    assert!(std::fs::read(png(&out, &samples[1])).unwrap() == first[1], "the same seed, the same image");
    assert!(std::fs::read(png(&out, &samples[0])).unwrap() == first[1], "an existing image is kept");
    let scores = read_scores(&out.join("scores.parquet"));
    assert_eq!(scores.len(), samples.len());

    // A rerun with other settings into the same directory would mix images: refused.
    let o = eval(&[
        "--protocol",
        "magicbrush",
        "--shards",
        shards.to_str().unwrap(),
        "--clip",
        clip.to_str().unwrap(),
        "--dino",
        dino.to_str().unwrap(),
        "--checkpoint",
        run.to_str().unwrap(),
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("other settings") && err.contains("another --out"), "{err}");

    // Batching does not change a row's image: each starts from its own seed's noise.
    let single = tmp.path().join("single");
    go(&single, &["--batch", "1"]);
    for (s, want) in samples.iter().zip(&first) {
        let a = image::load_from_memory(&std::fs::read(png(&single, s)).unwrap()).unwrap().to_rgb8();
        let b = image::load_from_memory(want).unwrap().to_rgb8();
        let d = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(d <= 1, "{}: batched and unbatched differ by {d} levels", s.sample_id);
    }
    // The context ablation generates from the instruction alone: other images.
    let ablated = tmp.path().join("ablated");
    go(&ablated, &["--no-context-prompt"]);
    assert!(std::fs::read(png(&ablated, &samples[1])).unwrap() != first[1], "the same image without the context");
    // So does the image-prompt ablation (no role embeddings).
    let no_roles = tmp.path().join("no-roles");
    go(&no_roles, &["--no-image-prompt"]);
    assert!(std::fs::read(png(&no_roles, &samples[1])).unwrap() != first[1], "the same image without image prompts");
}
