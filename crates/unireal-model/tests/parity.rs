//! Parity with PyTorch: tiny random-initialised reference modules (transformers'
//! `T5EncoderModel`, diffusers' `AutoencoderKL`, a plain-PyTorch DiT) saved by
//! scripts/reference/model.py, loaded through the real loading path, outputs matched to 1e-4.

mod common;

use burn::prelude::*;
use common::{fixture, max_abs_diff, Io, B};
use unireal_model::dit::DiTInput;
use unireal_model::{load_safetensors, AutoencoderKlConfig, DiTConfig, LoadOptions, T5Config, TextTokenizer};

const TOL: f32 = 1e-4;

#[test]
fn dit_matches_pytorch() {
    let device = Default::default();
    let cfg: DiTConfig = serde_json::from_str(&std::fs::read_to_string(fixture("dit_config.json")).unwrap()).unwrap();
    let mut model = cfg.init::<B>(&device);
    let report = load_safetensors(&mut model, &fixture("dit.safetensors"), &[], LoadOptions { strict: true }).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
    assert_eq!(report.loaded, model.num_params_tensors());

    let io = Io::open("dit_io.safetensors");
    let input = DiTInput {
        inputs: Some(io.f32::<5>("inputs", &device)),
        input_roles: Some(io.i64::<2>("roles", &device)),
        outputs: io.f32::<5>("outputs", &device),
        t: io.f32::<1>("t", &device),
        text: io.f32::<3>("text", &device),
        text_pad: Some(io.bool::<2>("pad", &device)),
        hide_inputs: None,
        pooled: None,
        guidance: None,
    };
    let edit = model.forward(input.clone());
    let d = max_abs_diff(edit, io.f32::<5>("edit", &device));
    assert!(d < TOL, "editing (1 input, padded text): max |Δ| = {d}");

    let t2i = model.forward(DiTInput { inputs: None, input_roles: None, text_pad: None, ..input });
    let d = max_abs_diff(t2i, io.f32::<5>("t2i", &device));
    assert!(d < TOL, "text-to-image (0 inputs): max |Δ| = {d}");
}

trait CountTensors {
    fn num_params_tensors(&self) -> usize;
}

impl<M: burn::module::Module<B>> CountTensors for M {
    fn num_params_tensors(&self) -> usize {
        struct Count(usize);
        impl burn::module::ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<B, D>>) {
                self.0 += 1;
            }
        }
        let mut c = Count(0);
        self.visit(&mut c);
        c.0
    }
}

#[test]
fn t5_with_tokenizer_matches_transformers() {
    let device = Default::default();
    let cfg = T5Config::from_hf_json(&std::fs::read_to_string(fixture("t5/config.json")).unwrap()).unwrap();
    let mut model = cfg.init::<B>(&device);
    let report = load_safetensors(
        &mut model,
        &fixture("t5/model.safetensors"),
        &T5Config::hf_key_remap(),
        LoadOptions { strict: true },
    )
    .unwrap();
    assert!(report.missing.is_empty(), "{report:?}");
    assert!(report.unused.is_empty(), "{report:?}");

    // Tokenise the same prompts through tokenizer.json and compare with the fixture's ids.
    let tok = TextTokenizer::from_file(&fixture("tokenizer.json"), "<pad>", 64).unwrap();
    let batch = tok
        .encode_batch(&[
            "Turn IMG1 into RES1: pan the camera to the left and zoom in on the cyclist.",
            "tilt the camera up to show the mountains",
        ])
        .unwrap();
    let io = Io::open("t5_io.safetensors");
    let (ids, pad) = batch.to_tensors::<B>(&device);
    assert_eq!(ids.to_data(), io.i64::<2>("ids", &device).to_data(), "token ids differ from Python's tokenizers");
    let want_pad = io.i64::<2>("mask", &device).equal_elem(0);
    assert_eq!(pad.to_data(), want_pad.to_data());

    let out = model.forward(ids, Some(pad));
    let d = max_abs_diff(out, io.f32::<3>("out", &device));
    assert!(d < TOL, "T5 last_hidden_state: max |Δ| = {d}");
}

#[test]
fn vae_matches_diffusers() {
    let device = Default::default();
    let cfg = AutoencoderKlConfig::from_diffusers_json(&std::fs::read_to_string(fixture("vae/config.json")).unwrap())
        .unwrap();
    assert_eq!((cfg.scaling_factor, cfg.shift_factor, cfg.latent_channels), (0.5, 0.1, 4));
    let mut vae = cfg.init::<B>(&device);
    let report = load_safetensors(
        &mut vae,
        &fixture("vae/diffusion_pytorch_model.safetensors"),
        &[],
        LoadOptions { strict: true },
    )
    .unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");

    let io = Io::open("vae_io.safetensors");
    let (mean, _) = vae.encode_moments(io.f32::<4>("image", &device));
    let d = max_abs_diff(mean, io.f32::<4>("mean", &device));
    assert!(d < TOL, "posterior mean: max |Δ| = {d}");
    let z = vae.encode(io.f32::<4>("image", &device));
    let d = max_abs_diff(z.clone(), io.f32::<4>("z", &device));
    assert!(d < TOL, "scaled latent: max |Δ| = {d}");
    let d = max_abs_diff(vae.decode(io.f32::<4>("z", &device)), io.f32::<4>("decoded", &device));
    assert!(d < TOL, "decode: max |Δ| = {d}");
}

/// The whole text path from a Hugging Face directory (config.json, tokenizer.json,
/// model.safetensors), as a user points the trainer at one.
#[test]
fn t5_text_from_a_hugging_face_directory() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("t5/config.json", "config.json"),
        ("t5/model.safetensors", "model.safetensors"),
        ("tokenizer.json", "tokenizer.json"),
    ] {
        std::fs::copy(fixture(from), dir.path().join(to)).unwrap();
    }
    let (text, report) = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).unwrap();
    assert!(report.missing.is_empty());
    let (states, pad) = text
        .encode(
            &[
                "Turn IMG1 into RES1: pan the camera to the left and zoom in on the cyclist.",
                "tilt the camera up to show the mountains",
            ],
            &device,
        )
        .unwrap();
    let io = Io::open("t5_io.safetensors");
    assert!(max_abs_diff(states, io.f32::<3>("out", &device)) < TOL);
    assert_eq!(pad.dims(), io.i64::<2>("mask", &device).dims());
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).err().unwrap();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

/// CLIP against transformers' `CLIPModel` (tiny random config, quick_gelu): the tokenizer
/// (tokenizer.json, padded to 77 as diffusers pads for Flux), both towers' hidden states,
/// pooled outputs and projected embeddings, and `CLIPImageProcessor`'s pixels for two sample
/// photographs.
#[test]
fn clip_matches_transformers() {
    use unireal_model::{Clip, ClipConfig, ClipImageProcessor};
    let device = Default::default();
    let (clip, report): (Clip<B>, _) = ClipConfig::load(&fixture("clip"), &device).unwrap();
    assert_eq!(report.missing, Vec::<String>::new());
    assert_eq!(report.unused, ["logit_scale"], "{report:?}");
    let io = Io::open("clip_io.safetensors");

    let tok = TextTokenizer::from_file(&fixture("clip/tokenizer.json"), "<|endoftext|>", 77).unwrap();
    let batch = tok
        .encode_to_max_len(&["a photograph of an astronaut holding a flag on the moon", "a cat on a wooden floor"])
        .unwrap();
    let (ids, pad) = batch.to_tensors::<B>(&device);
    assert_eq!(
        ids.to_data(),
        io.i64::<2>("ids", &device).to_data(),
        "token ids differ from transformers' CLIPTokenizer"
    );
    // The same vocabulary as the slow tokenizer's vocab.json + merges.txt (FLUX.1's tokenizer/).
    let slow = unireal_model::clip_tokenizer(&fixture("flux/tokenizer"), 77).unwrap();
    let (slow_ids, _) = slow
        .encode_to_max_len(&["a photograph of an astronaut holding a flag on the moon", "a cat on a wooden floor"])
        .unwrap()
        .to_tensors::<B>(&device);
    assert_eq!(slow_ids.to_data(), ids.to_data(), "vocab.json + merges.txt tokenise differently");
    assert_eq!(pad.to_data(), io.i64::<2>("mask", &device).equal_elem(0).to_data());

    let text = clip.encode_text(ids, Some(pad)).unwrap();
    for (name, got, want) in [
        ("text pooled", text.pooled.clone(), io.f32::<2>("text_pooled", &device)),
        ("text embeds", text.embeds.clone().unwrap(), io.f32::<2>("text_embeds", &device)),
    ] {
        let d = max_abs_diff(got, want);
        assert!(d < TOL, "{name}: max |Δ| = {d}");
    }
    let d = max_abs_diff(text.hidden, io.f32::<3>("text_hidden", &device));
    assert!(d < TOL, "text last_hidden_state: max |Δ| = {d}");

    let image = clip.encode_image(io.f32::<4>("pixel_values", &device)).unwrap();
    let d = max_abs_diff(image.hidden, io.f32::<3>("vision_hidden", &device));
    assert!(d < TOL, "vision last_hidden_state: max |Δ| = {d}");
    let d = max_abs_diff(image.pooled, io.f32::<2>("vision_pooled", &device));
    assert!(d < TOL, "vision pooled: max |Δ| = {d}");
    let d = max_abs_diff(image.embeds.unwrap(), io.f32::<2>("image_embeds", &device));
    assert!(d < TOL, "image embeds: max |Δ| = {d}");

    // The processor's pixels: PIL's bicubic on 8-bit pixels, reproduced exactly.
    let proc = ClipImageProcessor::from_json(&fixture("clip/preprocessor_config.json")).unwrap();
    let want = io.f32::<4>("pixel_values", &device);
    for (i, name) in ["chelsea.png", "coffee.png"].iter().enumerate() {
        let path = format!("{}/../../datasets/samples/images/{name}", env!("CARGO_MANIFEST_DIR"));
        let rgb = image::open(&path).unwrap().to_rgb8();
        let (w, h) = proc.output_size(rgb.width(), rgb.height());
        let pixels = proc.preprocess(rgb.as_raw(), rgb.width(), rgb.height());
        let got = Tensor::<B, 1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, h as usize, w as usize]);
        let d = max_abs_diff(got, want.clone().slice([i..i + 1]));
        assert!(d < 1e-5, "{name}: preprocessed pixels differ from CLIPImageProcessor's by {d}");
    }

    // A vision tower refuses images of another size, naming both.
    let err = clip.encode_image(Tensor::zeros([1, 3, 32, 32], &device)).unwrap_err();
    assert!(err.to_string().contains("30x30") && err.to_string().contains("32x32"), "{err}");
}

/// The ViT-L/14 and ViT-B/32 presets have the published sizes.
#[test]
fn clip_presets_have_the_published_sizes() {
    let l = unireal_model::ClipConfig::vit_l_14();
    let (t, v) = (l.text.unwrap(), l.vision.unwrap());
    assert_eq!(
        (t.hidden_size, t.num_hidden_layers, v.hidden_size, v.num_hidden_layers, v.patch_size),
        (768, 12, 1024, 24, 14)
    );
    let b = unireal_model::ClipConfig::vit_b_32();
    assert_eq!((b.projection_dim, b.vision.unwrap().patch_size), (Some(512), 32));
}

/// FLUX.1 transformers saved by diffusers (`FluxTransformer2DModel`, a `FluxPipeline`-style
/// directory) and in Black Forest Labs' single-file layout load into the DiT and compute
/// diffusers' output: text-to-image, one output frame at RoPE frame 0, pooled vector and (dev)
/// distilled guidance; both `guidance_embeds` settings.
#[test]
fn flux_checkpoints_match_diffusers() {
    use unireal_model::load_flux;
    let device = Default::default();
    let io = Io::open("flux_io.safetensors");
    let latents = io.f32::<4>("latents", &device);
    for (name, dir, bfl, guidance) in [
        ("dev", "flux", "flux/flux1-tiny-dev.safetensors", true),
        ("schnell", "flux-schnell", "flux-schnell/flux1-tiny-schnell.safetensors", false),
    ] {
        let cfg = DiTConfig::new(4, 32, 2, 2, 2, 32, [4, 6, 6])
            .with_vec_in_dim(Some(32))
            .with_guidance_embed(guidance)
            .with_outputs_at_origin(true);
        let want = io.f32::<4>(&format!("out_{name}"), &device);
        for path in [fixture(dir), fixture(bfl)] {
            let mut dit = cfg.init::<B>(&device);
            let report = load_flux(&mut dit, &cfg, &path, true).unwrap();
            assert!(report.missing.is_empty() && report.unused.is_empty(), "{name} {}: {report:?}", path.display());
            assert_eq!(dit.index_embed.weight.val().abs().max().into_scalar(), 0.0);
            let out = dit.forward(DiTInput {
                inputs: None,
                input_roles: None,
                outputs: latents.clone().unsqueeze_dim(1),
                t: io.f32::<1>("t", &device),
                text: io.f32::<3>("text", &device),
                text_pad: None,
                hide_inputs: None,
                pooled: Some(io.f32::<2>("pooled", &device)),
                guidance: guidance.then(|| io.f32::<1>("guidance", &device)),
            });
            let d = max_abs_diff(out.squeeze_dim(1), want.clone());
            assert!(d < TOL, "flux-{name} from {}: max |Δ| = {d}", path.display());
        }
    }

    // dev's checkpoint in a schnell config: the guidance embedder is left unused; schnell's in a
    // dev config: the guidance embedder is missing, by name.
    let schnell = DiTConfig::new(4, 32, 2, 2, 2, 32, [4, 6, 6]).with_vec_in_dim(Some(32)).with_outputs_at_origin(true);
    let mut dit = schnell.init::<B>(&device);
    let report = load_flux(&mut dit, &schnell, &fixture("flux/flux1-tiny-dev.safetensors"), true).unwrap();
    assert_eq!(report.unused.len(), 4, "{:?}", report.unused);
    assert!(report.unused.iter().all(|k| k.starts_with("guidance_in.")));
    let dev = schnell.clone().with_guidance_embed(true);
    let mut dit = dev.init::<B>(&device);
    let err = load_flux(&mut dit, &dev, &fixture("flux-schnell"), true).unwrap_err().to_string();
    assert!(err.contains("guidance_in.in_layer.weight") && err.contains("time_text_embed.guidance_embedder"), "{err}");
    // A wider model: the mismatch names the checkpoint's tensor.
    let wide = DiTConfig { hidden: 64, heads: 4, ..schnell };
    let mut dit = wide.init::<B>(&device);
    let err = load_flux(&mut dit, &wide, &fixture("flux-schnell"), true).unwrap_err().to_string();
    assert!(err.contains("has shape") && err.contains("flux-schnell"), "{err}");
}
