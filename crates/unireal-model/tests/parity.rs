//! Parity with PyTorch: tiny random-initialised reference modules (transformers'
//! `T5EncoderModel`, diffusers' `AutoencoderKL`, a plain-PyTorch DiT) saved by
//! scripts/reference/model.py, loaded through the real loading path, outputs matched to 1e-4;
//! FLUX.1, CLIP and LoRA against diffusers and transformers (scripts/reference/pretrained.py).

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
    let report =
        load_safetensors(&mut model, &fixture("dit.safetensors"), &[], LoadOptions { strict: true, only: None })
            .unwrap();
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
        LoadOptions { strict: true, only: None },
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
        LoadOptions { strict: true, only: None },
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
    use unireal_model::{Clip, ClipConfig, ImageProcessor};
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
    let proc = ImageProcessor::from_json(&fixture("clip/preprocessor_config.json")).unwrap();
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

/// DINO v1 (`ViTModel`, no pooler) and DINOv2 (`Dinov2Model`) against transformers (tiny
/// random configs, scripts/reference/dino.py): each directory's processor on two sample
/// photographs (ViT's bilinear square resize; BiT's bicubic shortest edge + crop), and the
/// last hidden states, DINOv2's with its position embeddings interpolated (5x5 → 4x4 and 4x6).
#[test]
fn dino_and_dinov2_match_transformers() {
    use unireal_model::{ImageProcessor, VitConfig};
    let device = Default::default();
    let io = Io::open("dino_io.safetensors");
    for name in ["dino", "dinov2"] {
        let (vit, report) = VitConfig::load::<B>(&fixture(name), &device).unwrap();
        assert!(report.missing.is_empty(), "{name}: {report:?}");
        let unused: &[&str] = if name == "dinov2" { &["embeddings.mask_token"] } else { &[] };
        assert_eq!(report.unused, unused, "{name}");
        let proc = ImageProcessor::from_dir(&fixture(name)).unwrap();
        let want = io.f32::<4>(&format!("{name}_pixels"), &device);
        for (i, image) in ["chelsea.png", "coffee.png"].iter().enumerate() {
            let path = format!("{}/../../datasets/samples/images/{image}", env!("CARGO_MANIFEST_DIR"));
            let rgb = image::open(&path).unwrap().to_rgb8();
            let (w, h) = proc.output_size(rgb.width(), rgb.height());
            let pixels = proc.preprocess(rgb.as_raw(), rgb.width(), rgb.height());
            let got = Tensor::<B, 1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, h as usize, w as usize]);
            let d = max_abs_diff(got, want.clone().slice([i..i + 1]));
            assert!(d < 1e-5, "{name} {image}: preprocessed pixels differ from transformers' by {d}");
        }
        let out = vit.forward(want).unwrap();
        let hidden = io.f32::<3>(&format!("{name}_hidden"), &device);
        let d = max_abs_diff(out.cls.clone(), hidden.clone().slice([0..2, 0..1]).squeeze_dim::<2>(1));
        assert!(d < TOL, "{name} class token: max |Δ| = {d}");
        let d = max_abs_diff(out.hidden, hidden);
        assert!(d < TOL, "{name} last_hidden_state: max |Δ| = {d}");
    }
    let (dinov2, _) = VitConfig::load::<B>(&fixture("dinov2"), &device).unwrap();
    let out = dinov2.forward(io.f32::<4>("rect_pixels", &device)).unwrap();
    let d = max_abs_diff(out.hidden, io.f32::<3>("rect_hidden", &device));
    assert!(d < TOL, "dinov2 on 32x48 px (a 4x6 grid): max |Δ| = {d}");

    // DINO v1 takes its trained size only; a CLIP directory is not a ViT.
    let (dino, _) = VitConfig::load::<B>(&fixture("dino"), &device).unwrap();
    let err = dino.forward(Tensor::zeros([1, 3, 32, 48], &device)).unwrap_err().to_string();
    assert!(err.contains("32x32") && err.contains("48x32"), "{err}");
    let err = VitConfig::load::<B>(&fixture("clip"), &device).err().unwrap().to_string();
    assert!(err.contains("config.json") && err.contains("model_type `clip`"), "{err}");
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

/// The tiny FLUX.1-dev transformer of the fixtures (flux/transformer/, flux_io's shapes).
fn tiny_flux_dev() -> DiTConfig {
    DiTConfig::new(4, 32, 2, 2, 2, 32, [4, 6, 6])
        .with_vec_in_dim(Some(32))
        .with_guidance_embed(true)
        .with_outputs_at_origin(true)
}

fn tiny_flux_base(device: &burn::tensor::Device<B>) -> unireal_model::DiT<B> {
    let cfg = tiny_flux_dev();
    let mut dit = cfg.init::<B>(device);
    unireal_model::load_flux(&mut dit, &cfg, &fixture("flux"), true).unwrap();
    dit
}

/// flux_io's inputs through `dit`, unpacked `[2, 4, 8, 12]`.
fn flux_out(dit: &unireal_model::DiT<B>, io: &Io, device: &burn::tensor::Device<B>) -> Tensor<B, 4> {
    dit.forward(DiTInput {
        inputs: None,
        input_roles: None,
        outputs: io.f32::<4>("latents", device).unsqueeze_dim(1),
        t: io.f32::<1>("t", device),
        text: io.f32::<3>("text", device),
        text_pad: None,
        hide_inputs: None,
        pooled: Some(io.f32::<2>("pooled", device)),
        guidance: Some(io.f32::<1>("guidance", device)),
    })
    .squeeze_dim(1)
}

/// A LoRA that PEFT trained and diffusers saved (`FluxPipeline.save_lora_weights`: q, k, v
/// with their own A, rank 4, lora_alpha 8 in the file's metadata) merges into the DiT's fused
/// weights and computes what diffusers computes with `load_lora_weights`.
#[test]
fn diffusers_lora_merges_into_the_dit_as_diffusers_applies_it() {
    let device = Default::default();
    let io = Io::open("flux_io.safetensors");
    let want = Io::open("flux_lora_io.safetensors").f32::<4>("out_dev", &device);
    let base = tiny_flux_base(&device);
    let plain = flux_out(&base, &io, &device);
    assert!(max_abs_diff(plain, want.clone()) > 0.1, "the fixture LoRA must change the output");
    let path = fixture("flux-lora/pytorch_lora_weights.safetensors");
    let (dit, report) = unireal_model::merge_diffusers_lora(base, &tiny_flux_dev(), &path).unwrap();
    assert_eq!((report.modules, report.ranks), (40, (4, 4)));
    let d = max_abs_diff(flux_out(&dit, &io, &device), want);
    assert!(d < TOL, "max |Δ| = {d}");
}

/// Sets every adapter's B of `dit` to random values (fresh adapters have B = 0).
fn randomize_adapters(dit: unireal_model::DiT<B>) -> unireal_model::DiT<B> {
    use burn::module::{ModuleMapper, Param};
    struct Randomize(Vec<String>);
    impl ModuleMapper<B> for Randomize {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if !self.0.join(".").ends_with("_lora.b") {
                return p;
            }
            let (id, t, mapper) = p.consume();
            let r = Tensor::random(t.shape(), burn::tensor::Distribution::Normal(0.0, 0.3), &t.device());
            Param::from_mapped_value(id, r, mapper)
        }
    }
    dit.map(&mut Randomize(Vec::new()))
}

/// The keys and shapes of a safetensors file.
fn key_shapes(bytes: &[u8]) -> Vec<(String, Vec<usize>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut v: Vec<(String, Vec<usize>)> = st.tensors().into_iter().map(|(k, t)| (k, t.shape().to_vec())).collect();
    v.sort();
    v
}

/// Adapters attached to the fused projections change nothing until trained; exported, they
/// have exactly the keys and shapes of diffusers' own LoRA of the same modules, and merged back
/// from that file they compute what the adapters compute, for each set of targets.
#[test]
fn adapters_export_to_diffusers_layout_and_merge_back() {
    use unireal_model::lora::{attach_lora, diffusers_lora, write_safetensors};
    use unireal_model::{LoraConfig, LoraTarget};
    let device = Default::default();
    let io = Io::open("flux_io.safetensors");
    let cfg = tiny_flux_dev();
    let base = tiny_flux_base(&device);
    let plain = flux_out(&base, &io, &device);
    let dir = tempfile::tempdir().unwrap();
    let all = vec![LoraTarget::Attn, LoraTarget::Mlp, LoraTarget::Modulation];
    for targets in [all.clone(), vec![LoraTarget::Attn], vec![LoraTarget::Mlp], vec![LoraTarget::Modulation]] {
        let lora = LoraConfig { rank: 3, alpha: Some(6.0), targets: targets.clone() };
        let adapted = attach_lora(base.clone(), &lora, &device);
        assert_eq!(max_abs_diff(flux_out(&adapted, &io, &device), plain.clone()), 0.0, "{targets:?}: B starts at 0");
        let adapted = randomize_adapters(adapted);
        let want = flux_out(&adapted, &io, &device);
        assert!(max_abs_diff(want.clone(), plain.clone()) > 1e-3, "{targets:?}: trained adapters change the output");
        let tensors = diffusers_lora(&adapted, &cfg).unwrap();
        let path = dir.path().join("lora.safetensors");
        write_safetensors(&path, &tensors).unwrap();
        if targets == all {
            // diffusers' LoRA of every block linear, rank 4: ours has rank 3.
            let theirs: Vec<(String, Vec<usize>)> =
                key_shapes(&std::fs::read(fixture("flux-lora/pytorch_lora_weights.safetensors")).unwrap())
                    .into_iter()
                    .map(|(k, s)| (k, s.into_iter().map(|d| if d == 4 { 3 } else { d }).collect()))
                    .collect();
            assert_eq!(key_shapes(&std::fs::read(&path).unwrap()), theirs);
        }
        let (merged, report) = unireal_model::merge_diffusers_lora(base.clone(), &cfg, &path).unwrap();
        assert_eq!(report.modules, tensors.len() / 2);
        let d = max_abs_diff(flux_out(&merged, &io, &device), want);
        assert!(d < TOL, "{targets:?}: merged from the export, max |Δ| = {d}");
    }
}

/// A merged transformer written in diffusers' layout (f32, sharded when asked) has diffusers'
/// keys and shapes and loads back to the same outputs; bf16 within its rounding.
#[test]
fn merged_transformer_exports_in_diffusers_layout() {
    use unireal_model::flux::{export_diffusers, ExportDtype};
    let device = Default::default();
    let io = Io::open("flux_io.safetensors");
    let cfg = tiny_flux_dev();
    let lora = fixture("flux-lora/pytorch_lora_weights.safetensors");
    let (merged, _) = unireal_model::merge_diffusers_lora(tiny_flux_base(&device), &cfg, &lora).unwrap();
    let want = flux_out(&merged, &io, &device);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("transformer");
    assert_eq!(export_diffusers(&merged, &cfg, &out, ExportDtype::F32, 40_000).unwrap(), 0);
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("diffusion_pytorch_model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shards: std::collections::BTreeSet<&str> =
        index["weight_map"].as_object().unwrap().values().filter_map(|v| v.as_str()).collect();
    assert!(shards.len() > 1, "{shards:?}");
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert_eq!(DiTConfig::from_diffusers_flux_json(&config).unwrap(), cfg);
    // The same keys and shapes as diffusers' save_pretrained of this transformer.
    let mut ours = Vec::new();
    for shard in &shards {
        ours.extend(key_shapes(&std::fs::read(out.join(shard)).unwrap()));
    }
    ours.sort();
    let theirs = key_shapes(&std::fs::read(fixture("flux/transformer/diffusion_pytorch_model.safetensors")).unwrap());
    assert_eq!(ours, theirs);
    let mut back = cfg.init::<B>(&device);
    let report = unireal_model::load_flux(&mut back, &cfg, &out, true).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
    let d = max_abs_diff(flux_out(&back, &io, &device), want.clone());
    assert!(d < 1e-5, "f32 export: max |Δ| = {d}");

    let bf16 = dir.path().join("bf16");
    export_diffusers(&merged, &cfg, &bf16, ExportDtype::Bf16, usize::MAX).unwrap();
    assert!(bf16.join("diffusion_pytorch_model.safetensors").is_file());
    let mut back = cfg.init::<B>(&device);
    unireal_model::load_flux(&mut back, &cfg, &bf16, true).unwrap();
    let d = max_abs_diff(flux_out(&back, &io, &device), want);
    assert!(d > 0.0 && d < 0.05, "bf16 export: max |Δ| = {d}");

    let err = export_diffusers(&merged, &cfg, &out, ExportDtype::F32, usize::MAX).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let tiny = DiTConfig::tiny(4, 32);
    let err = export_diffusers(&tiny.init::<B>(&device), &tiny, &dir.path().join("t"), ExportDtype::F32, usize::MAX)
        .unwrap_err()
        .to_string();
    assert!(err.contains("FLUX.1's layout needs"), "{err}");
}

/// Files that are not a LoRA of this transformer are refused by name.
#[test]
fn foreign_lora_files_are_refused_by_name() {
    use unireal_model::lora::write_safetensors;
    let device = Default::default();
    let cfg = tiny_flux_dev();
    let dir = tempfile::tempdir().unwrap();
    let write = |keys: &[(&str, Vec<usize>)]| {
        let path = dir.path().join("x.safetensors");
        let t: Vec<_> =
            keys.iter().map(|(k, s)| (k.to_string(), s.clone(), vec![0.1f32; s.iter().product()])).collect();
        write_safetensors(&path, &t).unwrap();
        path
    };
    let merge = |path: std::path::PathBuf| {
        unireal_model::merge_diffusers_lora(tiny_flux_base(&device), &cfg, &path).unwrap_err().to_string()
    };
    let unknown = write(&[
        ("transformer.transformer_blocks.9.attn.to_q.lora_A.weight", vec![2, 32]),
        ("transformer.transformer_blocks.9.attn.to_q.lora_B.weight", vec![32, 2]),
    ]);
    let err = merge(unknown);
    assert!(err.contains("transformer_blocks.9.attn.to_q") && err.contains("not in this FLUX.1 transformer"), "{err}");
    let text = write(&[("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_A.weight", vec![2, 32])]);
    assert!(merge(text).contains("text encoders"));
    let kohya = write(&[("lora_unet_single_blocks_0_linear1.lora_down.weight", vec![2, 32])]);
    assert!(merge(kohya).contains("not diffusers/PEFT LoRA weights"));
    let wrong = write(&[
        ("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", vec![2, 16]),
        ("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", vec![32, 2]),
    ]);
    let err = merge(wrong);
    assert!(
        err.contains("transformer_blocks.0.attn.to_q") && err.contains("double_blocks.0.img_attn.qkv.weight"),
        "{err}"
    );
}
