//! The trainer on shards built from the real sample clips: the loss falls, a killed run resumes
//! exactly, checkpoints open in Python, the loader is deterministic and partitions by rank.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dir_bytes, losses, ran_out_of_disk, shards, write_config};
use unireal_core::Split;
use unireal_testkit::{copy_dir, repo};
use unireal_train::data::{Index, Sampler};
use unireal_train::TrainConfig;

fn train(config: &Path, run: &Path, set: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
    c.arg("--config").arg(config).arg("--run-dir").arg(run).arg("-q");
    for s in set {
        c.arg("--set").arg(s);
    }
    c
}

fn ok(out: std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "unireal-train failed:\n{err}");
    err
}

#[test]
fn tiny_preset_loss_falls_on_the_sample_shards() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("run");
    let drop = ["data.drop_text=0.15", "data.drop_images=0.15", "data.drop_both=0.15"];
    let mut set = vec!["log.val_every=20", "log.val_batches=1", "log.sample_every=40", "log.sample_steps=4"];
    set.extend(drop);
    ok(train(&cfg, &run, &set).output().unwrap());
    let l = losses(&run);
    assert_eq!(l.len(), 40);
    let first: f64 = l[..8].iter().map(|x| x.1).sum::<f64>() / 8.0;
    let last: f64 = l[l.len() - 8..].iter().map(|x| x.1).sum::<f64>() / 8.0;
    println!("loss: first 8 steps {first:.4}, last 8 steps {last:.4} ({:.2}x)", first / last);
    assert!(first / last > 1.3, "the loss did not fall clearly: {first} -> {last}");
    // Metrics carry the documented fields; a validation loss and a sample grid were written.
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first_line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for k in ["loss", "loss_by_task", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "model_flops", "tflops_per_s"]
    {
        assert!(!first_line[k].is_null(), "metrics lack {k}: {first_line}");
    }
    assert!(first_line["model_flops"].as_f64().unwrap() > 1e9, "{first_line}");
    assert!(first_line.get("mfu").is_none(), "no train.peak_tflops, no MFU: {first_line}");
    let by_task = first_line["loss_by_task"].as_object().unwrap();
    assert!(!by_task.is_empty() && by_task.values().all(|v| v.is_number()), "{first_line}");
    assert!(text.contains("\"frame2frame\":"), "no frame2frame batch in 40 steps");
    // Guidance dropout per sample: each of the three branches at its configured 0.15 (every
    // sample of these shards has input images), within four binomial standard deviations.
    let steps: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .collect();
    let n = (steps.len() * 4) as f64;
    for kind in ["text", "images", "both"] {
        let k: u64 = steps.iter().map(|v| v["dropped"][kind].as_u64().unwrap()).sum();
        let tol = 4.0 * (0.15f64 * 0.85 / n).sqrt();
        println!("dropped {kind}: {k} of {n}");
        assert!((k as f64 / n - 0.15).abs() < tol, "{kind}: {k} of {n} samples, configured 0.15");
    }
    assert!(text.contains("\"val_loss\""));
    // Validation per t bin (fixed t and noise) and per task.
    let val: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "val")
        .unwrap();
    let bins: Vec<&String> = val["val_loss_by_t"].as_object().unwrap().keys().collect();
    assert_eq!(bins, ["[0.00,0.25)", "[0.25,0.50)", "[0.50,0.75)", "[0.75,1.00]"], "{val}");
    assert!(val["val_loss_by_t"].as_object().unwrap().values().all(|v| v.as_f64().unwrap() > 0.0), "{val}");
    assert!(val["val_loss_by_task"].as_object().is_some_and(|m| !m.is_empty()), "{val}");
    let grid = image::open(run.join("samples/step-00000040.png")).unwrap();
    assert!(grid.width() > 3 * 32 && grid.height() > 32, "{}x{}", grid.width(), grid.height());
    assert!(run.join("config.yaml").is_file());
    assert!(run.join("checkpoints/step-00000040/model.safetensors").is_file());
}

/// N steps straight against N/2, a kill -9, and --resume: the same loss at every step, bit for
/// bit (same backend, same thread count; the loader, t, noise and dropout all replay from the
/// checkpoint's state).
#[test]
fn killed_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let set = [
        "train.steps=12",
        "checkpoint.every=4",
        "checkpoint.keep=5",
        "train.grad_accum=2",
        "train.ema_decay=0.9",
        "data.drop_text=0.3",
        "data.drop_images=0.3",
        "train.schedule={kind: cosine, warmup: 3, min_ratio: 0.1}",
    ];
    let straight = dir.path().join("straight");
    ok(train(&cfg, &straight, &set).output().unwrap());

    let killed = dir.path().join("killed");
    let mut child = train(&cfg, &killed, &set).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !killed.join("checkpoints/step-00000004/state.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let resumed_from = unireal_train::checkpoint::latest(&killed).unwrap().0;
    assert!(resumed_from < 12, "the run finished before it could be killed; nothing was resumed");
    let err = ok(Command::new(env!("CARGO_BIN_EXE_unireal-train"))
        .args(["--run-dir"])
        .arg(&killed)
        .args(["--resume", "-q"])
        .output()
        .unwrap());
    assert!(err.contains(&format!("resuming {} from step {resumed_from}", killed.display())), "{err}");

    let (a, b) = (losses(&straight), losses(&killed));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "losses differ after resume from step {resumed_from}");
    let w = |run: &Path| std::fs::read(run.join("checkpoints/step-00000012/model.safetensors")).unwrap();
    assert!(w(&straight) == w(&killed), "final weights differ");
    let e = |run: &Path| std::fs::read(run.join("checkpoints/step-00000012/ema.safetensors")).unwrap();
    assert!(e(&straight) == e(&killed), "final EMA weights differ");

    // Without --resume, an existing run is not overwritten.
    let out = train(&cfg, &killed, &set).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: unireal-train --run-dir"));
}

#[test]
fn python_safetensors_opens_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("run");
    ok(train(&cfg, &run, &["train.steps=2", "train.ema_decay=0.5"]).output().unwrap());
    let python = unireal_testkit::python();
    let script = "import sys\nfrom safetensors.numpy import load_file\nfor f in sys.argv[1:]:\n    d = load_file(f)\n    print(len(d), sum(v.size for v in d.values()), d['dit.img_in.weight'].shape)\n";
    let ckpt = run.join("checkpoints/step-00000002");
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(ckpt.join("model.safetensors"))
        .arg(ckpt.join("ema.safetensors"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {}: {e}\nhint: run scripts/setup.sh or set UNIREAL_PYTHON", python.display())
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // PyTorch layout: Linear weights are [out, in]: img_in maps 12·2·2 = 48 features to 192.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.ends_with("(192, 48)")), "{stdout}");
    assert_eq!(lines[0], lines[1]);

    // Inference's reader opens the trainer's checkpoints: the run directory resolves to its
    // latest checkpoint, both weight files load strictly, buckets and shift come from the config.
    let c = unireal_pipeline::Checkpoint::open(&run).unwrap();
    assert_eq!(c.dir, ckpt);
    let device = Default::default();
    for ema in [true, false] {
        c.load_model::<burn::backend::NdArray>(ema, &device).unwrap();
    }
    assert!(c.weights(true).ends_with("ema.safetensors") && c.weights(false).ends_with("model.safetensors"));
    assert_eq!(c.bucket_for(Some((451, 300))).unwrap(), unireal_pipeline::Bucket { width: 36, height: 28 });
    assert_eq!(c.shift(c.bucket_for(None).unwrap()).unwrap(), 1.0);
}

/// Each task's summed part of the loss over a run (`loss_share_by_task` of every step).
fn task_shares(run: &Path) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for (k, x) in v["loss_share_by_task"].as_object().into_iter().flatten() {
            *out.entry(k.clone()).or_insert(0.0) += x.as_f64().unwrap();
        }
    }
    out
}

/// `train.task_weights` act on every task, also on tasks whose batches hold only that task
/// (insertion and multi_object have their own image signatures): with the weights frozen
/// (lr 0, so both runs see the same losses), a weight of 2 doubles the task's share of the
/// summed loss and leaves the others' as they are.
#[test]
fn a_task_weight_of_two_doubles_that_tasks_share_of_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let base = ["train.steps=16", "train.lr=0", "data.drop_text=0", "data.drop_images=0", "data.drop_both=0"];
    let (plain, weighted) = (dir.path().join("plain"), dir.path().join("weighted"));
    ok(train(&cfg, &plain, &base).output().unwrap());
    let mut set = base.to_vec();
    set.push("train.task_weights={insertion: 2.0, multi_object: 2.0}");
    ok(train(&cfg, &weighted, &set).output().unwrap());
    let (a, b) = (task_shares(&plain), task_shares(&weighted));
    println!("shares over the run: {a:?} -> {b:?}");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.contains_key("insertion") || a.contains_key("multi_object"), "no weighted task drawn: {a:?}");
    for (task, x) in &a {
        let w = if task == "insertion" || task == "multi_object" { 2.0 } else { 1.0 };
        assert!((b[task] - w * x).abs() <= 1e-6 * x.abs().max(1e-9), "{task}: {x} -> {} (weight {w})", b[task]);
    }
    // On one process the shares of a step add up to its loss.
    let total: f64 = losses(&weighted).iter().map(|l| l.1).sum();
    assert!((b.values().sum::<f64>() - total).abs() < 1e-4 * total, "{b:?} vs {total}");
}

/// `unireal-train --run-dir RUN --resume` with one `--set`.
fn resume(run: &Path, set: &str) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
    c.arg("--run-dir").arg(run).args(["--resume", "-q", "--set", set]);
    c.output().unwrap()
}

/// A checkpoint whose optimizer record is damaged stops --resume with the file named and a
/// hint to fall back to the checkpoint before it.
#[test]
fn a_corrupt_checkpoint_is_named_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("run");
    ok(train(&cfg, &run, &["train.steps=2", "checkpoint.every=1", "checkpoint.keep=3"]).output().unwrap());
    let bad = run.join("checkpoints/step-00000002");
    // A resume that changes what the records are built from is refused before loading them.
    let out = resume(&run, "train.ema_decay=0.9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("train.ema_decay")
            && err.contains("hint: resume with the run's own config"),
        "{err}"
    );
    std::fs::write(bad.join("optim.mpk"), b"not a record").unwrap();
    let out = resume(&run, "train.steps=3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&bad.join("optim.mpk").display().to_string()), "{err}");
    assert!(err.contains(&format!("\n\nhint: {} is damaged", bad.display())), "{err}");
    // With the damaged one gone, the run resumes from the one before.
    std::fs::remove_dir_all(&bad).unwrap();
    let err = ok(resume(&run, "train.steps=3"));
    assert!(err.contains("from step 1"), "{err}");
}

#[test]
fn loader_is_deterministic_partitions_by_rank_and_batches_by_signature() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: TrainConfig = unireal_core::load_config(&write_config(dir.path()), &[]).unwrap();
    let index = Arc::new(Index::build(&cfg.data, Split::Train, 4).unwrap());
    assert!(index.len() >= 8);
    let ids = |s: &mut Sampler, n: usize| -> Vec<(PathBuf, usize)> {
        (0..n).flat_map(|_| s.next_batch()).map(|e| ((*e.file).clone(), e.row)).collect()
    };
    let mut a = Sampler::new(index.clone(), 7, 4, 0, 1);
    let mut b = Sampler::new(index.clone(), 7, 4, 0, 1);
    let (xa, xb) = (ids(&mut a, 10), ids(&mut b, 10));
    assert_eq!(xa, xb);
    assert_ne!(xa, ids(&mut Sampler::new(index.clone(), 8, 4, 0, 1), 10), "the seed changes the order");
    // Replaying to a position continues exactly.
    let mut c = Sampler::new(index.clone(), 7, 4, 0, 1);
    c.skip_to(6);
    let mut d = Sampler::new(index.clone(), 7, 4, 0, 1);
    let _ = ids(&mut d, 6);
    assert_eq!(ids(&mut c, 3), ids(&mut d, 3));
    // Every batch has one signature and one bucket.
    let mut s = Sampler::new(index.clone(), 1, 4, 0, 1);
    for _ in 0..20 {
        let batch = s.next_batch();
        assert!(batch.iter().all(|e| e.signature == batch[0].signature && e.bucket == batch[0].bucket));
    }
    // Two ranks see disjoint draws of one stream; together, every row within an epoch.
    let mut r0 = Sampler::new(index.clone(), 3, 1, 0, 2);
    let mut r1 = Sampler::new(index.clone(), 3, 1, 1, 2);
    let n = index.len() / 2;
    let mut all: Vec<_> = ids(&mut r0, n);
    let other = ids(&mut r1, n);
    assert!(all.iter().all(|x| !other.contains(x)), "ranks overlap within the first epoch");
    all.extend(other);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 2 * n);

    // Decoding produces pixels in [−1, 1] of the bucket's size.
    let entries = Sampler::new(index.clone(), 0, 2, 0, 1).next_batch();
    let batch = unireal_train::data::decode_batch(&entries, &index.buckets).unwrap();
    let bk = batch.bucket;
    assert_eq!(batch.outputs.len(), 2 * batch.n_outputs * 3 * (bk.width * bk.height) as usize);
    assert!(batch.outputs.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert!(batch.prompts.iter().all(|p| p.contains("IMG1") && p.starts_with("realistic style")));

    // A source's task filter keeps its family's rows only; listed again unfiltered, the same
    // directory gives every row, so a weighted pair draws that family more often.
    let task = index.per_source[0][0].task;
    let mut mixed = cfg.clone();
    mixed.data.sources[0].tasks = vec![task];
    mixed.data.sources.push(cfg.data.sources[0].clone());
    let both = Index::build(&mixed.data, Split::Train, 4).unwrap();
    let want = index.per_source[0].iter().filter(|e| e.task == task).count();
    assert_eq!(both.per_source[0].len(), want);
    assert!(both.per_source[0].iter().all(|e| e.task == task));
    assert_eq!(both.per_source[1].len(), index.len());
    assert!(want < index.len(), "the sample shards have more than one family");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("run");
    let out = train(&cfg, &run, &["train.stepz=3"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("stepz") && err.contains("hint:"), "{err}");
    let out = train(&cfg, &run, &["model.preset=huge"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.preset"));
    let out = train(&cfg, &run, &["data.sources=[{path: /nonexistent, weight: 1}]"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent") && err.contains("hint: build shards"), "{err}");
}

/// A row whose image does not decode is left out of its batch and reported; the rest train.
#[test]
fn undecodable_rows_are_skipped_and_reported() {
    use unireal_core::{sample_id, ImageRole, Sample, SampleImage, Task};
    use unireal_shards::{DatasetWriter, InputRecord, InputStatus, WriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let photo = std::fs::read(repo().join("datasets/samples/images/coffee.png")).unwrap();
    let img = |role, bytes: Vec<u8>| SampleImage { role, encoding: "png".into(), bytes, width: 400, height: 400 };
    let samples: Vec<Sample> = (0..4)
        .map(|k| Sample {
            sample_id: sample_id(Task::Edit, "test", &[&k.to_string()]),
            task: Task::Edit,
            source: "test".into(),
            split: Split::Train,
            base_prompt: "Make IMG1 warmer to get RES1.".into(),
            context_prompt: "realistic style, static scene.".into(),
            images: vec![
                img(ImageRole::Canvas, if k == 2 { b"not a png".to_vec() } else { photo.clone() }),
                img(ImageRole::Output, photo.clone()),
            ],
            meta: serde_json::json!({}),
        })
        .collect();
    let mut w = DatasetWriter::open(&shards, WriterOptions::default(), false).unwrap();
    let rec = InputRecord {
        path: "x".into(),
        status: InputStatus::Ok,
        reason: String::new(),
        samples: 0,
        stats: serde_json::Value::Null,
        kind: None,
    };
    w.add(rec, samples).unwrap();
    w.finish().unwrap();

    let text = format!(
        "model: {{preset: tiny}}\ndata: {{sources: [{{path: {:?}}}], resolution: 32, batch_size: 4}}\n",
        shards.to_string_lossy()
    );
    let cfg: TrainConfig = unireal_core::parse_config_str(&text, "test").unwrap();
    let index = Arc::new(Index::build(&cfg.data, Split::Train, 4).unwrap());
    let entries = Sampler::new(index.clone(), 0, 4, 0, 1).next_batch();
    let batch = unireal_train::data::decode_batch(&entries, &index.buckets).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.skipped.len(), 1);
    assert!(
        batch.skipped[0].contains("row 2") && batch.skipped[0].contains("part-00000.parquet"),
        "{:?}",
        batch.skipped
    );
}

#[test]
fn bf16_trains_on_the_cpu_build_on_flex() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let run = dir.path().join("run");
    let err = ok(train(&cfg, &run, &["train.precision=bf16", "train.steps=2"]).output().unwrap());
    assert!(err.contains("on flex (CPU), bf16 mixed precision"), "{err}");
    assert_eq!(losses(&run).len(), 2);
}

/// `configs/train/tiny-t5-vae.yaml` as shipped (run from the repository root, on the test's
/// shards): the frozen Hugging Face T5 and diffusers AutoencoderKL directories in the loop.
/// The loss is finite and falls, validation runs, and the sample grid decodes through the VAE
/// into an image that is not flat.
#[test]
fn the_t5_and_vae_config_trains() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sources = format!("data.sources=[{{path: {:?}, weight: 1.0}}]", shards().to_string_lossy());
    let set = [
        sources.as_str(),
        "train.steps=24",
        "train.lr=0.002",
        "train.schedule={kind: constant, warmup: 4}",
        "log.val_every=24",
        "log.val_batches=1",
        "log.sample_every=24",
        "log.sample_steps=4",
        "checkpoint.every=24",
    ];
    let err =
        ok(train(&repo().join("configs/train/tiny-t5-vae.yaml"), &run, &set).current_dir(repo()).output().unwrap());
    println!("{err}");
    let l = losses(&run);
    assert_eq!(l.len(), 24);
    assert!(l.iter().all(|x| x.1.is_finite()), "{l:?}");
    let first: f64 = l[..6].iter().map(|x| x.1).sum::<f64>() / 6.0;
    let last: f64 = l[l.len() - 6..].iter().map(|x| x.1).sum::<f64>() / 6.0;
    println!("loss: first 6 steps {first:.4}, last 6 steps {last:.4}");
    assert!(last < first, "the loss did not fall: {first} -> {last}");
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(text.contains("\"val_loss\""));
    let grid = image::open(run.join("samples/step-00000024.png")).unwrap().to_rgb8();
    let px: Vec<f64> = grid.pixels().map(|p| p.0[1] as f64).collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / px.len() as f64;
    assert!(var > 10.0, "a flat sample grid (variance {var})");
    assert!(run.join("checkpoints/step-00000024/model.safetensors").is_file());
}

/// Every `train` line of a run's metrics.jsonl.
fn train_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .collect()
}

fn cache_cmd(config: &Path, run: &Path, set: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
    c.arg("cache").arg("--config").arg(config).arg("--run-dir").arg(run).arg("-q").current_dir(repo());
    for s in set {
        c.arg("--set").arg(s);
    }
    c
}

/// Issue 13's cached frozen work on `configs/train/tiny-t5-vae.yaml`: 20 steps that run the
/// VAE and T5, and 20 steps after `unireal-train cache` that read them instead, give the same
/// losses (the cache holds what the encoders compute: posterior modes of the same pixels,
/// T5 states of the same prompts); a second `cache` computes nothing; a resumed run is exact;
/// rows the cache lacks are encoded live and counted; a cache made with other weights is
/// refused.
#[test]
fn the_t5_and_vae_config_trains_the_same_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("configs/train/tiny-t5-vae.yaml");
    let sources = format!("data.sources=[{{path: {:?}, weight: 1.0}}]", shards().to_string_lossy());
    let set = [sources.as_str(), "train.steps=20", "log.val_every=0", "log.sample_every=0", "checkpoint.every=0"];
    let (live, cached) = (dir.path().join("live"), dir.path().join("cached"));
    ok(train(&config, &live, &set).current_dir(repo()).output().unwrap());

    let out = cache_cmd(&config, &cached, &set).output().unwrap();
    let err = ok(out.clone());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{err}{report}");
    assert!(report["latents_written"].as_u64().unwrap() > 0 && report["prompts_written"].as_u64().unwrap() > 1);
    assert!(cached.join("cache/manifest.json").is_file() && cached.join("cache/shard-00000.safetensors").is_file());
    // A second run finds everything there.
    let again: serde_json::Value =
        serde_json::from_slice(&cache_cmd(&config, &cached, &set).output().unwrap().stdout).unwrap();
    assert_eq!(again["latents_written"], 0, "{again}");
    assert_eq!(again["prompts_written"], 0, "{again}");
    assert_eq!(again["latents_present"], report["latents_written"], "{again}");

    // The cache's files damaged (fuzzed, issue 17): opened and read, or refused with an error
    // naming the file; never a panic (nor an allocation from a damaged shape).
    {
        use unireal_testkit::fuzz::{Format, Fuzz, Verdict};
        let damaged = dir.path().join("damaged-cache");
        let shard = std::fs::read(cached.join("cache/shard-00000.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&shard).unwrap();
        let names: Vec<String> = meta.tensors().keys().cloned().collect();
        let dict: &[&[u8]] = &[b"null", b"-1", b"18446744073709551615", b"[]", b"\"F64\"", b"\"../x\""];
        for (file, format, cases) in
            [("manifest.json", Format::Json, 300), ("shard-00000.safetensors", Format::Bytes, 300)]
        {
            let _ = std::fs::remove_dir_all(&damaged);
            copy_dir(&cached.join("cache"), &damaged);
            let path = damaged.join(file);
            let seed = std::fs::read(&path).unwrap();
            Fuzz::new(&format!("cache-{file}"), cases).format(format).run(&[seed], dict, |bytes| {
                std::fs::write(&path, bytes).unwrap();
                let named = |e: &dyn std::fmt::Display| match e.to_string().contains(&*damaged.to_string_lossy()) {
                    true => Ok(Verdict::Refused),
                    false => Err(format!("the error names no file of the cache: {e}")),
                };
                let cache = match unireal_train::cache::Cache::open(&damaged) {
                    Ok(Some(c)) => c,
                    Ok(None) => return Err("a cache with a manifest was not found".into()),
                    Err(e) => return named(&e),
                };
                for n in &names {
                    if let Err(e) = cache.get(n) {
                        return named(&e);
                    }
                }
                Ok(Verdict::Accepted)
            });
        }
    }

    // A disk that fills up while caching: an error naming the path, nothing half-written, and
    // once there is room the same cache.
    if let Some(disk) = unireal_testkit::Tmpfs::mount(&format!("{}k", dir_bytes(&cached.join("cache")) / 2048)) {
        let run = disk.path().join("run");
        ran_out_of_disk(&cache_cmd(&config, &run, &set).output().unwrap(), &run);
        disk.resize("256m");
        ok(cache_cmd(&config, &run, &set).output().unwrap());
        for f in ["manifest.json", "shard-00000.safetensors"] {
            let (a, b) = (run.join("cache").join(f), cached.join("cache").join(f));
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{} differs from {}",
                a.display(),
                b.display()
            );
        }
    }

    let err = ok(train(&config, &cached, &set).current_dir(repo()).output().unwrap());
    assert!(err.contains("cache: "), "{err}");
    let (a, b) = (train_lines(&live), train_lines(&cached));
    assert_eq!(a.len(), 20);
    assert_eq!(b.len(), 20);
    let step_s = |l: &[serde_json::Value]| l[2..].iter().map(|v| v["step_s"].as_f64().unwrap()).sum::<f64>() / 18.0;
    println!("mean step time (steps 3-20): live encoders {:.3} s, cache {:.3} s", step_s(&a), step_s(&b));
    let diff = a.iter().zip(&b).map(|(x, y)| (x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs());
    println!("largest loss difference, live vs cached: {:e}", diff.fold(0.0, f64::max));
    for (x, y) in a.iter().zip(&b) {
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-5 * lx.abs(), "step {}: live {lx}, cached {ly}", x["step"]);
        assert_eq!(y["cache_misses"], 0, "{y}");
        assert!(x.get("cache_misses").is_none(), "{x}");
    }

    // Resume reads the cache as the run did: a run checkpointed at step 10, its step-20
    // checkpoint removed and resumed, logs the cached run's losses bit for bit.
    let resumed = dir.path().join("resumed");
    let cache_dir = format!("data.cache_dir={:?}", cached.join("cache").to_string_lossy());
    let mut rset = set.to_vec();
    rset.extend(["checkpoint.every=10", cache_dir.as_str()]);
    ok(train(&config, &resumed, &rset).current_dir(repo()).output().unwrap());
    std::fs::remove_dir_all(resumed.join("checkpoints/step-00000020")).unwrap();
    ok(train(&config, &resumed, &rset).arg("--resume").current_dir(repo()).output().unwrap());
    let r = train_lines(&resumed);
    assert_eq!(r.len(), 20);
    for (x, y) in b.iter().zip(&r) {
        assert_eq!(x["loss"], y["loss"], "step {}: cached {}, cached and resumed {}", x["step"], x["loss"], y["loss"]);
    }

    // A cache of the Frame2Frame rows alone: the other rows are encoded live, and counted.
    let partial = dir.path().join("partial");
    let f2f = format!("data.sources=[{{path: {:?}, weight: 1.0, tasks: [frame2frame]}}]", shards().to_string_lossy());
    ok(cache_cmd(&config, &partial, &[f2f.as_str()]).output().unwrap());
    let short = [sources.as_str(), "train.steps=6", "log.val_every=0", "log.sample_every=0", "checkpoint.every=0"];
    let err = ok(train(&config, &partial, &short).current_dir(repo()).output().unwrap());
    let misses: u64 = train_lines(&partial).iter().map(|v| v["cache_misses"].as_u64().unwrap()).sum();
    assert!(misses > 0 && err.contains("not in the cache"), "{misses}\n{err}");

    // Other VAE weights: the cache is refused, naming it.
    let vae = dir.path().join("vae");
    std::fs::create_dir(&vae).unwrap();
    let fixture = repo().join("crates/unireal-model/tests/fixtures/vae");
    std::fs::copy(fixture.join("config.json"), vae.join("config.json")).unwrap();
    let mut weights = std::fs::read(fixture.join("diffusion_pytorch_model.safetensors")).unwrap();
    let last = weights.len() - 1;
    weights[last] ^= 1;
    std::fs::write(vae.join("diffusion_pytorch_model.safetensors"), weights).unwrap();
    let other = format!("model.latent={{kind: vae, path: {:?}}}", vae.to_string_lossy());
    let mut set2 = set.to_vec();
    set2.push(other.as_str());
    let out = train(&config, &dir.path().join("other"), &set2)
        .arg("--set")
        .arg(format!("data.cache_dir={:?}", cached.join("cache").to_string_lossy()))
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("VAE latents made with other weights") && err.contains("hint:"),
        "{err}"
    );
}

/// `unireal-train plan` on `configs/train/tiny.yaml` (run from the repository root, on the
/// tests' shards): a table on stderr and its JSON line on stdout whose terms add up to the
/// total; bf16 adds the compute copy and shrinks the activations, Burn's checkpointing shrinks
/// them and per-block recomputation (`true`) more;
/// an impossible budget warns and names the largest term.
#[test]
fn plan_prints_the_table_and_json_and_warns_over_budget() {
    let source = format!("data.sources=[{{path: {:?}, weight: 1.0}}]", shards().to_string_lossy());
    let plan = |set: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
        c.args(["plan", "--config", "configs/train/tiny.yaml", "--set", &source]).current_dir(repo());
        for s in set {
            c.arg("--set").arg(s);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, err)
    };
    let (f32_plan, err) = plan(&[]);
    for term in ["weights (f32)", "AdamW moments", "EMA", "activations", "total", "largest batch"] {
        assert!(err.contains(term), "no {term} in\n{err}");
    }
    assert!(!err.contains("warning"), "{err}");
    let sum: u64 = ["weights", "gradients", "optimizer", "ema", "compute_copy", "base", "frozen", "activations"]
        .iter()
        .map(|k| f32_plan[k].as_u64().unwrap())
        .sum();
    assert_eq!(f32_plan["total"].as_u64().unwrap(), sum, "{f32_plan}");
    assert_eq!(f32_plan["optimizer"].as_u64(), Some(2 * f32_plan["weights"].as_u64().unwrap()));
    let (bf16, _) = plan(&["train.precision=bf16"]);
    assert!(bf16["compute_copy"].as_u64().unwrap() > 0 && bf16["weights"] == f32_plan["weights"], "{bf16}");
    assert!(bf16["activations"].as_u64() < f32_plan["activations"].as_u64());
    let (burn, err) = plan(&["train.activation_checkpointing=burn"]);
    assert!(burn["activations"].as_u64() < f32_plan["activations"].as_u64());
    assert!(err.contains("Burn's balanced activation checkpointing"), "{err}");
    let (blocks, err) = plan(&["train.activation_checkpointing=true"]);
    assert_eq!(blocks["activation_checkpointing"], "blocks");
    assert!(blocks["activations"].as_u64() < burn["activations"].as_u64(), "{blocks}\n{burn}");
    assert!(err.contains("per-block activation checkpointing"), "{err}");
    let (tight, err) = plan(&["train.memory_budget_gb=0.001"]);
    assert_eq!(tight["budget"].as_u64(), Some(1_000_000));
    assert!(err.contains("warning: the plan's") && err.contains("the largest term is activations"), "{err}");
    assert!(err.contains("hint: train.activation_checkpointing: true"), "{err}");

    // LoRA on FLUX.1: the adapters train; the DiT is a frozen base, in bf16 under mixed
    // precision, with no gradients, moments or EMA of its own.
    let mut c = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
    c.args(["plan", "--config", "configs/train/tiny-flux.yaml", "--set", &source]).current_dir(repo());
    c.args(["--set", "train.lora={rank: 2, targets: [attn, mlp, mod]}", "--set", "train.precision=bf16"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lora: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(err.contains("frozen DiT base, LoRA (bf16)"), "{err}");
    let trained = lora["trained_params"].as_u64().unwrap();
    // 2 double blocks of width 32 (MLP 128) and 2 single blocks, rank 2.
    let per_double = 2 * 2 * ((32 + 192) + (32 + 96) + (32 + 32) + (32 + 128) + (128 + 32));
    let per_single = 2 * ((32 + 96) + (32 + 224) + (160 + 32));
    assert_eq!(trained, 2 * per_double + 2 * per_single, "{lora}");
    assert_eq!(lora["weights"].as_u64(), Some(4 * trained));
    assert_eq!(lora["optimizer"].as_u64(), Some(8 * trained));
    assert_eq!(lora["compute_copy"].as_u64(), Some(2 * trained));
    // frozen_params counts the encoders (whose f32 bytes are `frozen`) and the DiT base.
    let dit = lora["frozen_params"].as_u64().unwrap() - lora["frozen"].as_u64().unwrap() / 4;
    assert_eq!(lora["base"].as_u64(), Some(2 * dit), "{lora}");
    assert!(dit > 10 * trained, "{lora}");
}

/// Training into a filesystem that fills up (issue 17): the run stops with an error naming the
/// path, leaves only whole checkpoints (no partial one, no lock), and once there is room
/// `--resume` finishes it with the losses and final weights of a run that never ran out.
#[test]
fn a_full_disk_stops_training_cleanly_and_it_resumes_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let set = ["train.steps=6", "checkpoint.every=2", "checkpoint.keep=3", "train.ema_decay=0.9"];
    let reference = dir.path().join("reference");
    ok(train(&cfg, &reference, &set).output().unwrap());
    // Room for two and a half checkpoints: steps 2 and 4 fit, step 6 does not.
    let one = dir_bytes(&reference.join("checkpoints/step-00000002"));
    let Some(disk) = unireal_testkit::Tmpfs::mount(&format!("{}k", one * 5 / 2 / 1024)) else { return };
    let run = disk.path().join("run");
    ran_out_of_disk(&train(&cfg, &run, &set).output().unwrap(), &run);
    let kept: Vec<usize> = unireal_train::checkpoint::list(&run).into_iter().map(|(s, _)| s).collect();
    assert!(!kept.is_empty() && !kept.contains(&6), "checkpoints: {kept:?}");

    disk.resize("256m");
    let err = ok(Command::new(env!("CARGO_BIN_EXE_unireal-train"))
        .arg("--run-dir")
        .arg(&run)
        .args(["--resume", "-q"])
        .output()
        .unwrap());
    assert!(err.contains(&format!("from step {}", kept.last().unwrap())), "{err}");
    assert_eq!(losses(&run), losses(&reference));
    for f in ["model.safetensors", "ema.safetensors"] {
        let (a, b) =
            (run.join("checkpoints/step-00000006").join(f), reference.join("checkpoints/step-00000006").join(f));
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{f} differs from the reference's");
    }
}

/// Fuzzed training configs (issue 17): the test's tiny config over the sample shards and the
/// shipped presets, damaged (bytes and YAML trees), then loaded, validated and planned as
/// `unireal-train plan` does: accepted, or refused with an error naming the file; never a panic.
#[test]
fn damaged_train_configs_give_errors_naming_the_file() {
    use unireal_testkit::fuzz::{Format, Fuzz, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = vec![std::fs::read(write_config(dir.path())).unwrap()];
    for preset in ["tiny.yaml", "tiny-t5-vae.yaml", "flux-finetune.yaml"] {
        seeds.push(std::fs::read(repo().join("configs/train").join(preset)).unwrap());
    }
    let path = dir.path().join("fuzzed.yaml");
    let dict: &[&[u8]] = &[b"~", b": ", b"- ", b"0", b"-1", b"1e999", b".nan", b"18446744073709551615", b"[", b"{"];
    Fuzz::new("train-config", 400).format(Format::Yaml).run(&seeds, dict, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let cfg: TrainConfig = match unireal_core::load_config(&path, &[]) {
            Ok(c) => c,
            Err(e) if e.to_string().contains(&path.display().to_string()) => return Ok(Verdict::Refused),
            Err(e) => return Err(format!("the error does not name the file: {e}")),
        };
        if cfg.validate().is_err() {
            return Ok(Verdict::Refused);
        }
        // The plan of a valid config: the shipped presets read shards and weights that are not
        // here, which is an error, not a panic.
        if let Ok(p) = unireal_train::plan::plan(&cfg, 1, None) {
            let _ = (p.table(), p.largest());
        }
        Ok(Verdict::Accepted)
    });
}

/// Fuzzed checkpoint directories (issue 17): each file of a real checkpoint damaged in turn
/// (truncated, bit-flipped, its JSON and YAML trees changed) and read as `--resume` and
/// `unireal-infer` read it: loaded, or refused with an error naming that file; never a panic.
/// `UNIREAL_FUZZ_CASES=N` runs longer (unireal_testkit::fuzz).
#[test]
fn damaged_checkpoint_files_give_errors_naming_the_file() {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::AutodiffModule;
    use unireal_testkit::fuzz::{Format, Fuzz, Verdict};
    use unireal_train::checkpoint;
    type B = Autodiff<NdArray>;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = write_config(dir.path());
    let run = dir.path().join("run");
    ok(train(&cfg_path, &run, &["train.steps=2", "checkpoint.every=2", "train.ema_decay=0.9"]).output().unwrap());
    let saved = run.join("checkpoints/step-00000002");
    let cfg: TrainConfig = unireal_core::load_config(&run.join("config.yaml"), &[]).unwrap();
    let device = Default::default();
    let model = cfg.model.build::<B>(&device).unwrap();
    let work = dir.path().join("damaged");
    let names = |e: &dyn std::fmt::Display, path: &Path| {
        let text = e.to_string();
        match text.contains(&path.display().to_string()) {
            true => Ok(Verdict::Refused),
            false => Err(format!("the error does not name {}: {text}", path.display())),
        }
    };
    let dict: &[&[u8]] =
        &[b"null", b"-1", b"18446744073709551615", b"[]", b"{}", b"\"dtype\"", b"\"F64\"", b"\xff\xff"];
    for (file, format, cases) in [
        ("state.json", Format::Json, 400),
        ("config.yaml", Format::Yaml, 300),
        ("ema.safetensors", Format::Bytes, 60),
        ("model.safetensors", Format::Bytes, 60),
        ("optim.mpk", Format::Bytes, 40),
        ("model.mpk", Format::Bytes, 40),
    ] {
        let _ = std::fs::remove_dir_all(&work);
        copy_dir(&saved, &work);
        let path = work.join(file);
        let seed = std::fs::read(&path).unwrap();
        Fuzz::new(&format!("checkpoint-{file}"), cases).format(format).run(&[seed], dict, |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match file {
                // What a resume checks first: whether the saved config allows it.
                "config.yaml" => match checkpoint::incompatible_key(&work, &cfg) {
                    Ok(None) => Ok(Verdict::Accepted),
                    Ok(Some(_)) => Ok(Verdict::Refused),
                    Err(e) => names(&e, &path),
                },
                // What unireal-infer and unireal-eval read.
                "model.safetensors" => {
                    let mut m = model.valid();
                    let opts = unireal_model::LoadOptions { strict: true, only: None };
                    match unireal_model::load_safetensors(&mut m, &path, &[], opts) {
                        Ok(_) => Ok(Verdict::Accepted),
                        Err(e) => names(&e, &path),
                    }
                }
                _ => {
                    let optim = unireal_train::optim::optimizer::<B>(&cfg.train);
                    match checkpoint::load(&work, model.clone(), optim, Some(model.valid()), &device, false) {
                        Ok(_) => Ok(Verdict::Accepted),
                        Err(e) => names(&e, &path),
                    }
                }
            }
        });
    }
}

/// Full fine-tuning from a FLUX.1-dev FluxPipeline directory (the tiny one of
/// scripts/reference/pretrained.py) through configs/train/tiny-flux.yaml: the DiT starts from
/// its transformer, T5 runs unmasked, CLIP gives the pooled vector, and a resumed run reads its
/// checkpoint, not the pretrained weights again.
#[test]
fn full_fine_tuning_starts_from_a_flux_pipeline_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let flux = dir.path().join("FLUX.1-tiny");
    copy_dir(&repo().join("crates/unireal-model/tests/fixtures/flux"), &flux);
    let f = flux.to_string_lossy();
    let run = dir.path().join("run");
    let sources = format!("data.sources=[{{path: {:?}, weight: 1.0}}]", shards().to_string_lossy());
    let model = format!(
        "model={{preset: flux-dev, init_from: {f}, latent: {{kind: vae, path: {f}/vae}}, \
         text: {{kind: t5, path: {f}/text_encoder_2, tokenizer: {f}/tokenizer_2, max_len: 512, unmasked: true}}, \
         pooled: {{kind: clip, path: {f}/text_encoder, tokenizer: {f}/tokenizer}}, guidance: 1.0}}"
    );
    let set = [
        sources.as_str(),
        model.as_str(),
        "train.steps=4",
        "log.val_every=0",
        "log.sample_every=0",
        "checkpoint.every=2",
    ];
    ok(train(&repo().join("configs/train/tiny-flux.yaml"), &run, &set).output().unwrap());
    let l = losses(&run);
    assert_eq!(l.len(), 4);
    assert!(l.iter().all(|x| x.1.is_finite() && x.1 > 0.0), "{l:?}");
    // The run's config records the DiT's shape read from transformer/config.json.
    let saved = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    assert!(saved.contains("guidance_embed: true") && saved.contains("vec_in_dim: 32"), "{saved}");
    // The pretrained transformer gone: a resumed run does not need it.
    std::fs::remove_dir_all(flux.join("transformer")).unwrap();
    ok(resume(&run, "train.steps=6"));
    assert_eq!(losses(&run).len(), 6);
    // A fresh run does need it, and says which file is missing.
    let out = train(&repo().join("configs/train/tiny-flux.yaml"), &dir.path().join("run2"), &set).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("transformer"), "{err}");
}

/// A LoRA run from the tiny FLUX.1-dev pipeline on the command line: its checkpoint holds the
/// adapters and their diffusers export, inference's reader merges them into the base,
/// `unireal-train merge` writes that DiT as a diffusers transformer (the same weights, exactly),
/// and, where the venv has torch + diffusers + peft, diffusers samples the same latents with
/// our `lora.safetensors` through `load_lora_weights` as with the merged transformer, and
/// others than without it.
#[test]
fn lora_run_merges_and_loads_in_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo().join("crates/unireal-model/tests/fixtures");
    let flux = fixtures.join("flux");
    let f = flux.to_string_lossy();
    let run = dir.path().join("run");
    let sources = format!("data.sources=[{{path: {:?}, weight: 1.0}}]", shards().to_string_lossy());
    let model = format!(
        "model={{preset: flux-dev, init_from: {f}, latent: {{kind: vae, path: {f}/vae}}, \
         text: {{kind: t5, path: {f}/text_encoder_2, tokenizer: {f}/tokenizer_2, max_len: 512, unmasked: true}}, \
         pooled: {{kind: clip, path: {f}/text_encoder, tokenizer: {f}/tokenizer}}, guidance: 1.0}}"
    );
    let set = [
        sources.as_str(),
        model.as_str(),
        "train.lora={rank: 2, targets: [attn, mlp]}",
        "train.steps=3",
        "train.lr=0.05",
        "train.ema_decay=0",
        "log.val_every=0",
        "log.sample_every=0",
        "checkpoint.every=3",
    ];
    let err = ok(train(&repo().join("configs/train/tiny-flux.yaml"), &run, &set).output().unwrap());
    assert!(err.contains("lora: rank 2") && err.contains("the base is frozen"), "{err}");
    let ckpt = run.join("checkpoints/step-00000003");
    for file in ["lora.safetensors", "model.safetensors", "optim.mpk", "state.json", "config.yaml"] {
        assert!(ckpt.join(file).is_file(), "{file}");
    }
    assert!(!ckpt.join("model.mpk").exists() && !ckpt.join("ema-lora.safetensors").exists());

    // Inference's reader: the base of model.init_from with the adapters merged.
    let c = unireal_pipeline::Checkpoint::open(&run).unwrap();
    assert!(c.weights(true).ends_with("lora.safetensors"));
    let device = Default::default();
    let merged = c.load_model::<burn::backend::NdArray>(true, &device).unwrap();

    let merge = |out: &Path, dtype: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unireal-train"));
        cmd.args(["merge", "--checkpoint"]).arg(&run).arg("--out").arg(out).args(["--dtype", dtype]).output().unwrap()
    };
    let transformer = dir.path().join("merged");
    let out = merge(&transformer, "f32");
    let err = ok(out);
    assert!(err.contains("merged into"), "{err}");
    let cfg = c.config.model.dit_config().unwrap();
    let mut back = cfg.init::<burn::backend::NdArray>(&device);
    let report = unireal_model::load_flux(&mut back, &cfg, &transformer, true).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
    let flat = |m: &unireal_model::DiT<burn::backend::NdArray>| -> Vec<f32> {
        unireal_train::ema::flat_params(m).into_iter().flat_map(|t| t.into_data().to_vec::<f32>().unwrap()).collect()
    };
    assert_eq!(flat(&back), flat(&merged.dit), "the merged transformer differs from the checkpoint's DiT");
    let out = merge(&transformer, "f32");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("already exists") && err.contains("hint:"), "{err}");

    // diffusers, where the venv has it.
    let python = unireal_testkit::python();
    let probe = Command::new(&python).args(["-c", "import torch, diffusers, peft"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping diffusers' side: {} lacks torch, diffusers or peft", python.display());
        return;
    }
    let noise = fixtures.join("flux_pipeline_io.safetensors");
    let sample = |extra: &[&std::ffi::OsStr], out: &Path| {
        let mut cmd = Command::new(&python);
        cmd.arg(repo().join("scripts/reference/lora_check.py")).arg("--pipeline").arg(&flux);
        cmd.args(extra).arg("--noise").arg(&noise).arg("--out").arg(out);
        cmd.args(["--prompt", "a photograph of an astronaut holding a flag on the moon"]);
        cmd.args(["--width", "48", "--height", "32", "--steps", "4"]);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("latents").unwrap();
        t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f32>>()
    };
    let lora = sample(&["--lora".as_ref(), ckpt.join("lora.safetensors").as_os_str()], &dir.path().join("a.st"));
    let whole = sample(&["--transformer".as_ref(), transformer.as_os_str()], &dir.path().join("b.st"));
    let plain = sample(&[], &dir.path().join("c.st"));
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff(&lora, &whole) < 1e-4, "load_lora_weights vs merged: {}", diff(&lora, &whole));
    assert!(diff(&lora, &plain) > 1e-3, "the adapters changed nothing: {}", diff(&lora, &plain));
}

/// `log.eval`: an EMU Edit-layout test split scored during training with tiny CLIP and DINO
/// models (crates/unireal-model/tests/fixtures), every `every` steps and at the end: one
/// `eval` line each in metrics.jsonl with EMU Edit's five means over the rows.
#[test]
fn log_eval_scores_the_benchmark_during_training() {
    use unireal_core::{sample_id, ImageRole, Sample, SampleImage, Task};
    use unireal_shards::{DatasetWriter, InputRecord, InputStatus, WriterOptions};
    let dir = tempfile::tempdir().unwrap();
    // Two EMU Edit test rows as the importer writes them: an input image and both captions.
    let test = dir.path().join("emu-edit");
    let mut w = DatasetWriter::open(&test, WriterOptions::default(), false).unwrap();
    let rows: Vec<Sample> =
        [("horse.png", "a horse in a field", "a zebra in a field"), ("chelsea.png", "a cat", "a dog")]
            .iter()
            .map(|(file, input, output)| {
                let bytes = std::fs::read(repo().join("datasets/samples/images").join(file)).unwrap();
                let img = image::load_from_memory(&bytes).unwrap();
                Sample {
                    sample_id: sample_id(Task::Edit, "emu-edit", &[file]),
                    task: Task::Edit,
                    source: "emu-edit".into(),
                    split: Split::Test,
                    base_prompt: format!("Turn IMG1 into RES1: make it {output}"),
                    context_prompt: "realistic style, static scene.".into(),
                    images: vec![SampleImage {
                        role: ImageRole::Canvas,
                        encoding: "png".into(),
                        bytes,
                        width: img.width(),
                        height: img.height(),
                    }],
                    meta: serde_json::json!({"input_caption": input, "output_caption": output}),
                }
            })
            .collect();
    let record = InputRecord {
        path: "emu".into(),
        status: InputStatus::Ok,
        reason: String::new(),
        samples: 0,
        stats: serde_json::Value::Null,
        kind: None,
    };
    w.add(record, rows).unwrap();
    w.finish().unwrap();

    let cfg = write_config(dir.path());
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let models = repo().join("crates/unireal-model/tests/fixtures");
    yaml["log"]["eval"] = serde_yaml::to_value(serde_json::json!({
        "protocol": "emu-edit", "shards": test, "clip": models.join("clip"), "dino": models.join("dino"),
        "every": 2, "limit": 2,
    }))
    .unwrap();
    std::fs::write(&cfg, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let run = dir.path().join("run");
    ok(train(&cfg, &run, &["train.steps=3", "log.sample_steps=2"]).output().unwrap());
    let evals: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval")
        .collect();
    let steps: Vec<u64> = evals.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 3], "every 2 steps and at the end");
    for e in &evals {
        assert_eq!(
            (e["protocol"].as_str(), e["rows"].as_u64(), e["scored"].as_u64()),
            (Some("emu-edit"), Some(2), Some(2)),
            "{e}"
        );
        for m in ["clip_dir", "clip_im", "clip_out", "l1", "dino"] {
            let v = e["means"][m].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && e["counts"][m] == 2, "{m}: {e}");
        }
        assert!(e["means"]["l1"].as_f64().unwrap() > 0.0);
    }
    // A wrong model directory stops the run before it trains, naming log.eval.
    yaml["log"]["eval"]["dino"] = serde_yaml::to_value(models.join("clip")).unwrap();
    std::fs::write(&cfg, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let out = train(&cfg, &dir.path().join("run2"), &["train.steps=1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("log.eval") && err.contains("model_type `clip`"), "{err}");
}
