//! Loading errors name what is wrong; saving and loading round-trip; the tokenizer pads,
//! truncates and reports bad files.

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::{fixture, max_abs_diff, B};
use unireal_model::{
    load_safetensors, save_safetensors, AutoencoderKlConfig, DiTConfig, LoadOptions, ModelError, T5Config,
    TextTokenizer,
};

#[test]
fn shape_mismatch_names_the_tensor() {
    let device = Default::default();
    // The fixture's DiT has hidden 32; a hidden-64 model cannot take it.
    let cfg: DiTConfig = serde_json::from_str(&std::fs::read_to_string(fixture("dit_config.json")).unwrap()).unwrap();
    let mut wide = DiTConfig { hidden: 64, axes_dim: [8, 12, 12], ..cfg }.init::<B>(&device);
    let err = load_safetensors(&mut wide, &fixture("dit.safetensors"), &[], LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("dit.safetensors") && msg.contains("has shape") && msg.contains('`'), "{msg}");
}

#[test]
fn missing_and_unused_tensors_are_reported_by_name() {
    let device = Default::default();
    let cfg = T5Config::from_hf_json(&std::fs::read_to_string(fixture("t5/config.json")).unwrap()).unwrap();
    // One layer more than the file has: its tensors are missing.
    let mut deeper = T5Config { num_layers: cfg.num_layers + 1, ..cfg.clone() }.init::<B>(&device);
    let path = fixture("t5/model.safetensors");
    let report = load_safetensors(&mut deeper, &path, &T5Config::hf_key_remap(), LoadOptions::default()).unwrap();
    assert!(report.missing.iter().any(|m| m == "block.2.attention.q.weight"), "{:?}", report.missing);
    assert!(report.unused.is_empty());
    let err = load_safetensors(&mut deeper, &path, &T5Config::hf_key_remap(), LoadOptions { strict: true, only: None })
        .unwrap_err();
    assert!(err.to_string().contains("missing") && err.to_string().contains("block.2."), "{err}");
    // One layer fewer: the file's extra layer is unused.
    let mut shallower = T5Config { num_layers: 1, ..cfg }.init::<B>(&device);
    let report =
        load_safetensors(&mut shallower, &path, &T5Config::hf_key_remap(), LoadOptions { strict: true, only: None })
            .unwrap();
    assert!(report.unused.iter().any(|u| u.starts_with("block.1.")), "{:?}", report.unused);
    // A missing file.
    let err = load_safetensors(&mut shallower, &fixture("nope.safetensors"), &[], LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Weights { .. }) && err.to_string().contains("nope.safetensors"));
}

#[test]
fn save_then_load_round_trips() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let cfg = AutoencoderKlConfig::from_diffusers_json(&std::fs::read_to_string(fixture("vae/config.json")).unwrap())
        .unwrap();
    let a = cfg.init::<B>(&device);
    let path = dir.path().join("vae.safetensors");
    save_safetensors(&a, &path).unwrap();
    assert!(!dir.path().join(".vae.safetensors.tmp").exists());
    let mut b = cfg.init::<B>(&device);
    let report = load_safetensors(&mut b, &path, &[], LoadOptions { strict: true, only: None }).unwrap();
    assert!(report.unused.is_empty(), "{report:?}");
    let x = Tensor::<B, 4>::ones([1, 3, 16, 16], &device) * 0.3;
    assert_eq!(max_abs_diff(a.encode(x.clone()), b.encode(x)), 0.0);
    // Saved in PyTorch's layout, it loads like the diffusers file does (same names).
    let mut c = cfg.init::<B>(&device);
    load_safetensors(
        &mut c,
        &fixture("vae/diffusion_pytorch_model.safetensors"),
        &[],
        LoadOptions { strict: true, only: None },
    )
    .unwrap();
    save_safetensors(&c, &path).unwrap();
    let mut d = cfg.init::<B>(&device);
    load_safetensors(&mut d, &path, &[], LoadOptions { strict: true, only: None }).unwrap();
    let z = Tensor::<B, 4>::ones([1, 4, 4, 4], &device) * 0.1;
    assert_eq!(max_abs_diff(c.decode(z.clone()), d.decode(z)), 0.0);
    assert_eq!(c.num_params(), d.num_params());
}

#[test]
fn tokenizer_pads_truncates_and_reports_bad_files() {
    let tok = TextTokenizer::from_file(&fixture("tokenizer.json"), "<pad>", 6).unwrap();
    assert!(tok.vocab_size() > 50);
    let batch = tok.encode_batch(&["the camera", "pan the camera to the left and zoom in on the cyclist"]).unwrap();
    assert_eq!(batch.len, 6, "truncated to max_len");
    let eos = 1;
    assert_eq!(*batch.ids[1].last().unwrap(), eos, "truncation keeps </s>");
    let short = batch.ids[0].iter().position(|&i| i == eos).unwrap();
    assert!(batch.pad[0][short + 1..].iter().all(|&p| p) && !batch.pad[0][short]);
    assert!(batch.ids[0][short + 1..].iter().all(|&i| i == 0), "padded with <pad> = 0");
    assert!(batch.pad[1].iter().all(|&p| !p));

    let err = TextTokenizer::from_file(&fixture("missing-tokenizer.json"), "<pad>", 8).err().unwrap();
    assert!(err.to_string().contains("missing-tokenizer.json"), "{err}");
    let err = TextTokenizer::from_file(&fixture("tokenizer.json"), "[PAD]", 8).err().unwrap();
    assert!(err.to_string().contains("[PAD]"), "{err}");
}

#[test]
fn bad_vae_config_is_a_typed_error() {
    let err = AutoencoderKlConfig::from_diffusers_json(
        r#"{"block_out_channels": [], "latent_channels": 4, "scaling_factor": 0.5}"#,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Config(_)) && err.to_string().contains("block_out_channels"), "{err}");
    let err = AutoencoderKlConfig::from_diffusers_json(
        r#"{"block_out_channels": [8, 12], "latent_channels": 4, "scaling_factor": 0.5, "norm_num_groups": 8}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("norm_num_groups"), "{err}");
}

/// A T5 saved by transformers in bf16 across two shards (`model.safetensors.index.json`, the
/// layout T5-XXL and Flux ship in) loads through the index, converted to f32, and computes what
/// transformers computes with those weights; a shard gone is an error naming it.
#[test]
fn sharded_bf16_checkpoints_load_through_their_index() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture("t5-sharded")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    std::fs::copy(fixture("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    assert_eq!(unireal_model::weights_in(dir.path(), "model").unwrap(), index);
    let files = unireal_model::weight_files(&index).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");

    let (text, report) = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
    let cfg = T5Config::from_hf_json(&std::fs::read_to_string(fixture("t5/config.json")).unwrap()).unwrap();
    let mut all = cfg.clone().init::<B>(&device);
    let single =
        load_safetensors(&mut all, &fixture("t5/model.safetensors"), &T5Config::hf_key_remap(), LoadOptions::default())
            .unwrap();
    assert_eq!(report.loaded, single.loaded, "every tensor is filled from one shard or the other");
    let io = common::Io::open("t5_io.safetensors");
    let out = text.encoder.forward(io.i64::<2>("ids", &device), Some(io.i64::<2>("mask", &device).equal_elem(0)));
    assert_eq!(text.encoder.embed_tokens.weight.val().dtype(), burn::tensor::DType::F32, "bf16 converted on load");
    let want = common::Io::open("t5-sharded_io.safetensors").f32::<3>("out", &device);
    let d = max_abs_diff(out, want);
    assert!(d < 1e-4, "bf16 shards through f32: max |Δ| = {d}");

    // A deeper model misses the same tensors in both shards: reported once, strict refuses.
    let mut deeper = T5Config { num_layers: cfg.num_layers + 1, ..cfg }.init::<B>(&device);
    let err =
        load_safetensors(&mut deeper, &index, &T5Config::hf_key_remap(), LoadOptions { strict: true, only: None })
            .unwrap_err();
    assert!(err.to_string().contains("block.2.") && err.to_string().contains("index.json"), "{err}");

    let second = files[1].file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&files[1]).unwrap();
    let err = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).err().unwrap();
    assert!(err.to_string().contains(&second) && err.to_string().contains("weight_map"), "{err}");
    std::fs::remove_file(&index).unwrap();
    let err = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).err().unwrap();
    assert!(err.to_string().contains("model.safetensors.index.json"), "{err}");
}

/// A directory with SentencePiece's `spiece.model` and no `tokenizer.json` gets an error that
/// says how to write one.
#[test]
fn only_spiece_model_gets_a_hint() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("t5/config.json"), dir.path().join("config.json")).unwrap();
    std::fs::copy(fixture("t5/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("spiece.model"), b"sentencepiece").unwrap();
    let err = unireal_model::T5Text::<B>::from_hf_dir(dir.path(), 64, &device).err().unwrap();
    let report = unireal_core::hint::report(&err);
    assert!(
        report.contains("spiece.model") && report.contains("\n\nhint: ") && report.contains("save_pretrained"),
        "{report}"
    );
}
