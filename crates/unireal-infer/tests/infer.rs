//! unireal-infer on a checkpoint in the trainer's layout (tiny model, seeded weights, the
//! trainer's config keys), so that inference is tested without linking the trainer; the
//! trainer's tests check that its checkpoints open with the same reader.

use std::path::{Path, PathBuf};
use std::process::Command;

type NdArray = burn::backend::NdArray<f32>;
use burn::prelude::Backend;
use unireal_pipeline::checkpoint::{checkpoint_name, checkpoints_dir, CONFIG, EMA_WEIGHTS, MODEL_WEIGHTS, STATE};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A run directory with one checkpoint (step 2) of the tiny preset at 32 px.
fn checkpoint(dir: &Path) -> PathBuf {
    let yaml = "model: {preset: tiny, latent: {kind: space_to_depth, factor: 2}, text: {kind: bytes, width: 32, layers: 1, max_len: 48}}\n\
                data: {sources: [{path: shards, weight: 1.0}], resolution: 32, batch_size: 2}\n\
                train: {steps: 2, ema_decay: 0.5, shift: 1.0}\nlog: {val_every: 0, sample_every: 0}\n";
    let cfg: unireal_pipeline::checkpoint::RunConfig = serde_yaml::from_str(yaml).unwrap();
    let run = dir.join("run");
    let ckpt = checkpoints_dir(&run).join(checkpoint_name(2));
    std::fs::create_dir_all(&ckpt).unwrap();
    let device = Default::default();
    for (seed, name) in [(1, MODEL_WEIGHTS), (2, EMA_WEIGHTS)] {
        <NdArray as Backend>::seed(&device, seed);
        let model = cfg.model.init::<NdArray>(&device).unwrap();
        unireal_model::save_safetensors(&model, &ckpt.join(name)).unwrap();
    }
    std::fs::write(ckpt.join(CONFIG), yaml).unwrap();
    std::fs::write(ckpt.join(STATE), "{}").unwrap();
    run
}

fn infer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unireal-infer")).args(args).output().unwrap()
}

#[test]
fn writes_pngs_of_the_right_size_for_edits_and_text_to_image() {
    let dir = tempfile::tempdir().unwrap();
    let run = checkpoint(dir.path());
    let ckpt = run.join("checkpoints/step-00000002");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let image = s(&repo().join("datasets/samples/images/chelsea.png")); // 451×300

    // Edit: one canvas image; the size comes from the training buckets at its aspect ratio
    // (resolution 32, ratio 1.5 → the 4:3 bucket, 36×28, multiples of 4).
    let out = dir.path().join("edit.png");
    let edit = |out: &Path, extra: &[&str]| {
        let (ckpt, out) = (s(&ckpt), s(out));
        let mut args = vec![
            "--checkpoint",
            &ckpt,
            "--image",
            &image,
            "--prompt",
            "Turn IMG1 into RES1: pan left.",
            "--steps",
            "3",
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        infer(&args)
    };
    let r = edit(&out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), s(&out));
    assert_eq!(image::open(&out).unwrap().to_rgb8().dimensions(), (36, 28));

    // An explicit size is rounded up to the model's multiple; seeds make it deterministic.
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    for p in [&a, &b] {
        let r = infer(&[
            "--checkpoint",
            &s(&run),
            "--image",
            &image,
            "--prompt",
            "zoom in",
            "--size",
            "38x24",
            "--steps",
            "2",
            "--seed",
            "5",
            "--out",
            &s(p),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    assert_eq!(image::open(&a).unwrap().to_rgb8().dimensions(), (40, 24));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // Text-to-image with two output frames.
    let t = dir.path().join("t2i.png");
    let r = infer(&[
        "--checkpoint",
        &s(&ckpt),
        "--task",
        "t2i",
        "--prompt",
        "a cat",
        "--outputs",
        "2",
        "--steps",
        "2",
        "--no-ema",
        "--out",
        &s(&t),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(image::open(&t).unwrap().to_rgb8().dimensions(), (32, 32));
    assert!(dir.path().join("t2i-2.png").is_file());

    // --target: one JSON line per output with its PSNR and the mean-colour baseline. The
    // target is the first edit's own output, so that PSNR is that of the 8-bit round trip.
    let r = edit(&dir.path().join("again.png"), &["--target", &s(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let q: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(q["output"].as_str().unwrap(), s(&dir.path().join("again.png")));
    // Identical images: infinite PSNR, which JSON writes as null; the baseline is finite.
    assert!(q["psnr_db"].is_null(), "{q}");
    let base = q["mean_colour_psnr_db"].as_f64().unwrap();
    assert!(base.is_finite() && base > 0.0, "{q}");

    // Errors say what is wrong and what to do.
    let r = infer(&["--checkpoint", &s(dir.path()), "--prompt", "x"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("not a checkpoint") && err.contains("hint:"), "{err}");
    let r = infer(&["--checkpoint", &s(&ckpt), "--image", &image, "--role", "output", "--prompt", "x"]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("--role"));
    let r = infer(&["--checkpoint", &s(&ckpt), "--image", "/nonexistent.png", "--prompt", "x"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent.png"));
    let r = infer(&["--checkpoint", &s(&ckpt), "--lora", "x.safetensors", "--prompt", "x"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("--lora") && err.contains("hint:"), "{err}");
}

/// A tiny FLUX.1-dev `FluxPipeline` directory (scripts/reference/pretrained.py: bf16 T5 in two
/// shards, CLIP's tokenizer as vocab.json + merges.txt, dynamic shifting): four steps from the
/// same `--init-noise` end on diffusers' `FluxPipeline` latents (`output_type="latent"`).
#[test]
fn flux_pipeline_directory_matches_diffusers() {
    let fixtures = repo().join("crates/unireal-model/tests/fixtures");
    let io = fixtures.join("flux_pipeline_io.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let (png, latents) = (dir.path().join("flux.png"), dir.path().join("latents.safetensors"));
    let out = infer(&[
        "--checkpoint",
        fixtures.join("flux").to_str().unwrap(),
        "--prompt",
        "a photograph of an astronaut holding a flag on the moon",
        "--size",
        "48x32",
        "--steps",
        "4",
        "--init-noise",
        io.to_str().unwrap(),
        "--out-latents",
        latents.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f32s = |bytes: &[u8], name: &str| {
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let t = st.tensor(name).unwrap();
        let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        (t.shape().to_vec(), v)
    };
    let (got_shape, got) = f32s(&std::fs::read(&latents).unwrap(), "latents");
    let (want_shape, want) = f32s(&std::fs::read(&io).unwrap(), "latents");
    assert_eq!(got_shape, want_shape);
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(d < 1e-3, "latents differ from diffusers' FluxPipeline by {d}");
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (48, 32));

    // With diffusers' LoRA (PEFT, alpha in its metadata) merged: diffusers' latents with
    // load_lora_weights.
    let lora = fixtures.join("flux-lora/pytorch_lora_weights.safetensors");
    let out = infer(&[
        "--checkpoint",
        fixtures.join("flux").to_str().unwrap(),
        "--prompt",
        "a photograph of an astronaut holding a flag on the moon",
        "--size",
        "48x32",
        "--steps",
        "4",
        "--init-noise",
        io.to_str().unwrap(),
        "--lora",
        lora.to_str().unwrap(),
        "--out-latents",
        latents.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("40 modules, rank 4"), "{err}");
    let (_, got) = f32s(&std::fs::read(&latents).unwrap(), "latents");
    let (_, want) = f32s(&std::fs::read(fixtures.join("flux_lora_io.safetensors")).unwrap(), "latents");
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(d < 1e-3, "latents with the LoRA differ from diffusers' by {d}");

    // FLUX.1 itself does not edit; noise of the wrong size is named.
    let img = repo().join("datasets/samples/images/astronaut.png");
    let out = infer(&[
        "--checkpoint",
        fixtures.join("flux").to_str().unwrap(),
        "--prompt",
        "x",
        "--image",
        img.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--image") && err.contains("\n\nhint: "), "{err}");
    let out = infer(&[
        "--checkpoint",
        fixtures.join("flux").to_str().unwrap(),
        "--prompt",
        "x",
        "--size",
        "64x32",
        "--init-noise",
        io.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("[1, 4, 8, 16]") && err.contains("flux_pipeline_io"), "{err}");
}
