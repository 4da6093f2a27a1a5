//! The demo's recipe learns to edit: `configs/train/tiny.yaml`, what `bash scripts/demo.sh`
//! trains, run as it is on shards of the sample clips, must leave a checkpoint whose sampled
//! Frame2Frame edit reads its input frame — its PSNR against the target frame above a flat
//! image of the target's mean colour by [`MARGIN_DB`], at a size a person can look at (issue 13:
//! at 600 steps of the old recipe the edit was 4×4-pixel noise, 2 dB *below* that baseline).
//! The edit is sampled as the demo samples it with `unireal-infer`'s defaults: the checkpoint's
//! EMA weights, the run's sampler settings and `log.infer_resolution`, the row fitted as
//! training fits it. It trains the demo's full length (8–10 minutes on 2 cores), the longest
//! test of the suite. `UNIREAL_DEMO_TEST_OUT=DIR` keeps the edit and its target as PNGs.

use std::path::PathBuf;
use std::process::Command;

use unireal_core::{Split, Task};
use unireal_pipeline::image::{chw_to_image, mean_colour, psnr};
use unireal_pipeline::{fit_prompt, generate_pixels, Checkpoint};
use unireal_testkit::{repo, SampleShards};
use unireal_train::data::{decode_batch, Entry, Index};
use unireal_train::TrainConfig;

type B = burn::backend::NdArray<f32>;

/// How far above the mean-colour baseline the demo's edit must be (dB), at ≥ 64 px on its
/// short side (issue 13).
const MARGIN_DB: f64 = 3.0;

#[test]
fn the_demo_config_learns_a_frame2frame_edit() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let opts = SampleShards { max_side: Some(256), val_fraction: Some(0.0), ..Default::default() };
    unireal_testkit::build_samples(&shards, &opts);

    // The demo's config as it is, its sources pointed at these shards.
    let demo = repo().join("configs/train/tiny.yaml");
    let mut cfg: TrainConfig = unireal_core::load_config(&demo, &[]).unwrap();
    for s in &mut cfg.data.sources {
        s.path = shards.clone();
    }
    let config = dir.path().join("demo.yaml");
    std::fs::write(&config, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let run = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_unireal-train"))
        .arg("--config")
        .arg(&config)
        .arg("--run-dir")
        .arg(&run)
        .arg("-q")
        .output()
        .unwrap();
    assert!(out.status.success(), "unireal-train failed:\n{}", String::from_utf8_lossy(&out.stderr));

    // The demo's edit: the first Frame2Frame row of the first shard.
    let device = Default::default();
    let ckpt = Checkpoint::open(&run).unwrap();
    let model = ckpt.load_model::<B>(true, &device).unwrap();
    let frozen = cfg.model.frozen::<B>(&device).unwrap();
    let index = Index::build(&cfg.data, Split::Train, cfg.model.pixel_align().unwrap()).unwrap();
    let entry = index.per_source.iter().flatten().find(|e| e.task == Task::Frame2Frame).expect("a frame2frame row");
    // At the size unireal-infer samples it by default: its training bucket's aspect ratio at
    // the run's log.infer_resolution.
    let trained = index.buckets[entry.bucket];
    let bucket = ckpt.bucket_for(Some((trained.width, trained.height))).unwrap();
    let entry = Entry { bucket: 0, ..entry.clone() };
    let mut batch = decode_batch(std::slice::from_ref(&entry), &[bucket]).unwrap();
    batch.fit_prompts(|c, b| fit_prompt(&cfg.model, &frozen, c, b));
    let req = unireal_train::samples::request(&cfg, &batch, frozen.latent.factor(), model.dit.patch);
    let px = generate_pixels(&model, &frozen, &cfg.model, &req, &device, |_, _| {}).unwrap();

    let (w, h) = (batch.bucket.width, batch.bucket.height);
    eprintln!("demo edit {w}x{h}");
    let edit = chw_to_image(&px, w, h);
    let target = chw_to_image(&batch.outputs, w, h);
    let (got, base) = (psnr(&edit, &target), psnr(&mean_colour(&target), &target));
    let keep: PathBuf = std::env::var_os("UNIREAL_DEMO_TEST_OUT").map(PathBuf::from).unwrap_or_default();
    if !keep.as_os_str().is_empty() {
        edit.save(keep.join("demo-test-edit.png")).unwrap();
        target.save(keep.join("demo-test-target.png")).unwrap();
    }
    eprintln!("demo edit {w}x{h}: PSNR {got:.2} dB against the target; mean colour {base:.2} dB");
    assert!(got >= base + MARGIN_DB, "the demo's edit is {got:.2} dB, the mean-colour image {base:.2} dB");
    assert!(w.min(h) >= 64, "the demo's edit is {w}x{h}: too small to look at");
}
