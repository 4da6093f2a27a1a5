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
    let err =
        load_safetensors(&mut deeper, &path, &T5Config::hf_key_remap(), LoadOptions { strict: true }).unwrap_err();
    assert!(err.to_string().contains("missing") && err.to_string().contains("block.2."), "{err}");
    // One layer fewer: the file's extra layer is unused.
    let mut shallower = T5Config { num_layers: 1, ..cfg }.init::<B>(&device);
    let report =
        load_safetensors(&mut shallower, &path, &T5Config::hf_key_remap(), LoadOptions { strict: true }).unwrap();
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
    let report = load_safetensors(&mut b, &path, &[], LoadOptions { strict: true }).unwrap();
    assert!(report.unused.is_empty(), "{report:?}");
    let x = Tensor::<B, 4>::ones([1, 3, 16, 16], &device) * 0.3;
    assert_eq!(max_abs_diff(a.encode(x.clone()), b.encode(x)), 0.0);
    // Saved in PyTorch's layout, it loads like the diffusers file does (same names).
    let mut c = cfg.init::<B>(&device);
    load_safetensors(&mut c, &fixture("vae/diffusion_pytorch_model.safetensors"), &[], LoadOptions { strict: true })
        .unwrap();
    save_safetensors(&c, &path).unwrap();
    let mut d = cfg.init::<B>(&device);
    load_safetensors(&mut d, &path, &[], LoadOptions { strict: true }).unwrap();
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
