//! The training engine's options on the sample shards, in process: `train.precision: bf16`
//! (f32 master weights, bf16 compute) against f32, and `train.activation_checkpointing`
//! against none; LoRA on a frozen FLUX.1 base.

mod common;

use std::path::Path;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use common::write_config;
use unireal_train::config::{Checkpointing, Precision};
use unireal_train::ema::flat_params;
use unireal_train::{RunOptions, SingleProcess, TrainConfig, Trainer};

/// The tests' tiny config with `set` applied.
fn config(dir: &Path, set: &[&str]) -> TrainConfig {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    unireal_core::load_config(&write_config(dir), &set).unwrap()
}

/// Every parameter of a module in f32, flattened in visit order.
fn flat<B: Backend, M: burn::module::Module<B>>(m: &M) -> Vec<f32> {
    flat_params(m).into_iter().flat_map(|t| t.cast(DType::F32).into_data().to_vec::<f32>().unwrap()).collect()
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt()
}

/// What `steps` steps of a run did.
struct Run {
    losses: Vec<f64>,
    /// How far the EMA moved from the initial weights.
    ema_moved: f64,
    /// How far the weights moved.
    weights_moved: f64,
    /// Dtypes of the trained weights and of the tensors in the checkpoint's files.
    weight_dtypes: Vec<DType>,
    checkpoint: std::path::PathBuf,
}

fn run<B: AutodiffBackend>(cfg: &TrainConfig, dir: &Path, steps: usize) -> Run {
    let opts = RunOptions { run_dir: dir.to_path_buf(), resume: false, quiet: true };
    let mut t = Trainer::<B>::new(cfg, &opts, &Default::default(), &SingleProcess).unwrap();
    let init = flat(&t.model().dit);
    let losses = (0..steps).map(|_| t.train_step().unwrap().loss).collect();
    let ema = t.ema().map(|e| flat(&e.dit)).unwrap_or_default();
    let mut weight_dtypes = vec![];
    flat_params(&t.model().dit).iter().for_each(|p| weight_dtypes.push(p.dtype()));
    Run {
        losses,
        ema_moved: dist(&ema, &init),
        weights_moved: dist(&flat(&t.model().dit), &init),
        weight_dtypes,
        checkpoint: t.save_checkpoint().unwrap(),
    }
}

/// The dtypes of every tensor in a safetensors file.
fn file_dtypes(path: &Path) -> Vec<safetensors::Dtype> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(_, v)| v.dtype()).collect()
}

/// 20 steps of the tiny preset in bf16 mixed precision and in f32, both on Flex from the same
/// initial weights: the losses agree step by step (to 1 %: bf16 rounds activations to 8 bits
/// of mantissa; measured 2026-12-03: within 4.6e-4 to 5.6e-4 relative), the weights and the EMA (decay
/// 0.999, where an EMA kept in bf16 would round `0.999·e + 0.001·w` back to `e`) move as far
/// as in f32, and the weights, in memory and in the checkpoint, are f32.
#[test]
fn bf16_mixed_precision_tracks_f32_and_its_ema_moves() {
    let dir = tempfile::tempdir().unwrap();
    let set = ["train.ema_decay=0.999", "train.lr=0.001"];
    let f32_run = run::<Autodiff<Flex>>(&config(dir.path(), &set), &dir.path().join("f32"), 20);
    let mut cfg = config(dir.path(), &set);
    cfg.train.precision = Precision::Bf16;
    let bf16_run = run::<Autodiff<Flex>>(&cfg, &dir.path().join("bf16"), 20);
    let worst = f32_run.losses.iter().zip(&bf16_run.losses).map(|(a, b)| (a - b).abs() / a.abs()).fold(0.0, f64::max);
    println!(
        "losses f32 {:?}\nlosses bf16 {:?}\nlargest relative difference {worst:.2e}",
        f32_run.losses, bf16_run.losses
    );
    assert!(worst < 0.01, "bf16 losses left the f32 run's by {worst:.3}");
    assert!(worst > 0.0, "bf16 gave f32's losses bit for bit: it did not compute in bf16");
    let ema_ratio = bf16_run.ema_moved / f32_run.ema_moved;
    let w_ratio = bf16_run.weights_moved / f32_run.weights_moved;
    println!(
        "EMA moved {:.3e} (bf16) / {:.3e} (f32) = {ema_ratio:.4}; weights {:.3e} / {:.3e} = {w_ratio:.4}",
        bf16_run.ema_moved, f32_run.ema_moved, bf16_run.weights_moved, f32_run.weights_moved
    );
    assert!(f32_run.ema_moved > 0.0);
    assert!((0.9..1.1).contains(&ema_ratio), "the bf16 run's EMA moved {ema_ratio:.3}x as far as f32's");
    assert!((0.9..1.1).contains(&w_ratio), "the bf16 run's weights moved {w_ratio:.3}x as far as f32's");
    assert!(bf16_run.weight_dtypes.iter().all(|d| *d == DType::F32), "{:?}", bf16_run.weight_dtypes);
    for file in ["model.safetensors", "ema.safetensors"] {
        let dtypes = file_dtypes(&bf16_run.checkpoint.join(file));
        assert!(!dtypes.is_empty() && dtypes.iter().all(|d| *d == safetensors::Dtype::F32), "{file}: {dtypes:?}");
    }
}

/// `train.activation_checkpointing: burn` (Burn's balanced checkpointing: cheap activations
/// are recomputed in the backward pass) changes memory, not arithmetic: the same losses, bit
/// for bit, on NdArray in f32; and within rounding on Flex in bf16 (whose threaded kernels do
/// not sum in a fixed order).
#[test]
fn burn_checkpointing_gives_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let plain = run::<Autodiff<NdArray>>(&config(dir.path(), &[]), &dir.path().join("plain"), 8);
    let mut cfg = config(dir.path(), &[]);
    cfg.train.activation_checkpointing = Checkpointing::Burn;
    let ckpt = run::<Autodiff<NdArray, BalancedCheckpointing>>(&cfg, &dir.path().join("ckpt"), 8);
    assert_eq!(plain.losses, ckpt.losses, "checkpointing changed the f32 losses");
    let mut cfg = config(dir.path(), &[]);
    cfg.train.precision = Precision::Bf16;
    let plain = run::<Autodiff<Flex>>(&cfg, &dir.path().join("bf16"), 4);
    cfg.train.activation_checkpointing = Checkpointing::Burn;
    let ckpt = run::<Autodiff<Flex, BalancedCheckpointing>>(&cfg, &dir.path().join("bf16-ckpt"), 4);
    assert_close(&plain.losses, &ckpt.losses, 1e-4, "bf16 with Burn's checkpointing");
}

fn assert_close(a: &[f64], b: &[f64], rel: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= rel * x.abs(), "{what}: losses {b:?} against {a:?} without it");
    }
}

/// `train.activation_checkpointing: true` (per-block recomputation, `unireal_train::recompute`)
/// trains the same model as a run without it. The recomputed blocks run the same kernels on the
/// same values; only the conditioning vector's gradient is summed in another grouping, which
/// moves the embedders' gradients in the last bits (tests/recompute.rs). Measured 2026-12-04 on
/// NdArray in f32: the first 7 of 8 losses bit for bit, the 8th 1.3e-7 apart; the same with two
/// micro-batches per step; on Flex in bf16 the losses within rounding.
#[test]
fn per_block_recomputation_trains_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let plain = run::<Autodiff<NdArray>>(&config(dir.path(), &[]), &dir.path().join("plain"), 8);
    let cfg = config(dir.path(), &["train.activation_checkpointing=true"]);
    assert_eq!(cfg.train.activation_checkpointing, Checkpointing::Blocks);
    let blocks = run::<Autodiff<NdArray>>(&cfg, &dir.path().join("blocks"), 8);
    println!("losses {:?}\nper-block {:?}", plain.losses, blocks.losses);
    assert_eq!(plain.losses[..2], blocks.losses[..2], "per-block recomputation changed the first losses");
    assert_close(&plain.losses, &blocks.losses, 1e-5, "f32 with per-block recomputation");
    let moved = (plain.weights_moved - blocks.weights_moved).abs() / plain.weights_moved;
    assert!(plain.weights_moved > 0.0 && moved < 1e-5, "the weights moved {moved:.2e} differently");
    // Two micro-batches per step: each one's parts add into the step's gradient.
    let plain = run::<Autodiff<NdArray>>(&config(dir.path(), &["train.grad_accum=2"]), &dir.path().join("accum"), 3);
    let set = ["train.grad_accum=2", "train.activation_checkpointing=blocks"];
    let blocks = run::<Autodiff<NdArray>>(&config(dir.path(), &set), &dir.path().join("accum-blocks"), 3);
    assert_close(&plain.losses, &blocks.losses, 1e-5, "grad_accum 2 with per-block recomputation");
    let moved = (plain.weights_moved - blocks.weights_moved).abs() / plain.weights_moved;
    assert!(moved < 1e-5, "with grad_accum 2 the weights moved {moved:.2e} differently");
    let mut cfg = config(dir.path(), &[]);
    cfg.train.precision = Precision::Bf16;
    let plain = run::<Autodiff<Flex>>(&cfg, &dir.path().join("bf16"), 4);
    cfg.train.activation_checkpointing = Checkpointing::Blocks;
    let blocks = run::<Autodiff<Flex>>(&cfg, &dir.path().join("bf16-blocks"), 4);
    println!("bf16 losses {:?}\nper-block {:?}", plain.losses, blocks.losses);
    assert_close(&plain.losses, &blocks.losses, 1e-4, "bf16 with per-block recomputation");
}

/// The repository's tiny FLUX.1-dev pipeline (scripts/reference/pretrained.py).
fn tiny_flux() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../unireal-model/tests/fixtures/flux")
}

/// A LoRA run's config: the tests' shards and loop, the tiny FLUX.1-dev pipeline's model,
/// adapters on every block linear.
fn lora_config(dir: &Path, extra: &[&str]) -> TrainConfig {
    let f = tiny_flux().to_string_lossy().into_owned();
    let model = format!(
        "model={{preset: flux-dev, init_from: {f}, latent: {{kind: vae, path: {f}/vae}}, \
         text: {{kind: t5, path: {f}/text_encoder_2, tokenizer: {f}/tokenizer_2, max_len: 512, unmasked: true}}, \
         pooled: {{kind: clip, path: {f}/text_encoder, tokenizer: {f}/tokenizer}}, guidance: 1.0}}"
    );
    let mut set = vec![
        model.as_str(),
        "train.lora={rank: 4, alpha: 8, targets: [attn, mlp, mod]}",
        "train.lr=0.01",
        "train.ema_decay=0.9",
        "data.batch_size=2",
        "log.val_every=0",
        "log.sample_every=0",
    ];
    set.extend_from_slice(extra);
    config(dir, &set)
}

/// The DiT without its adapters.
fn base<B: Backend>(mut dit: unireal_model::DiT<B>) -> unireal_model::DiT<B> {
    for b in &mut dit.double_blocks {
        (b.img_mod_lora, b.txt_mod_lora) = (None, None);
        for (a, m) in [(&mut b.img_attn, &mut b.img_mlp), (&mut b.txt_attn, &mut b.txt_mlp)] {
            (a.qkv_lora, a.proj_lora, m.fc1_lora, m.fc2_lora) = (None, None, None, None);
        }
    }
    for b in &mut dit.single_blocks {
        (b.modulation_lora, b.linear1_lora, b.linear2_lora) = (None, None, None);
    }
    dit
}

/// The adapters of a DiT, flattened.
fn adapter_values<B: Backend>(dit: &unireal_model::DiT<B>) -> Vec<f32> {
    unireal_model::lora::adapters(dit)
        .into_iter()
        .flat_map(|(_, a)| [a.a.val(), a.b.val()])
        .flat_map(|t| t.cast(DType::F32).into_data().to_vec::<f32>().unwrap())
        .collect()
}

/// LoRA from FLUX.1: only the adapters train (the base, and the EMA's base, stay the
/// pretrained weights bit for bit), a checkpoint holds the adapters alone (no Burn record of
/// the model), diffusers' layout beside them with exactly the keys and shapes of diffusers' own
/// LoRA of these modules, and a resumed run continues exactly as an uninterrupted one.
#[test]
fn lora_trains_only_the_adapters_and_resumes_exactly() {
    type A = Autodiff<NdArray>;
    let dir = tempfile::tempdir().unwrap();
    let cfg = lora_config(dir.path(), &[]);
    let opts = |run: &str, resume| RunOptions { run_dir: dir.path().join(run), resume, quiet: true };
    let device = Default::default();

    let mut t = Trainer::<A>::new(&cfg, &opts("straight", false), &device, &SingleProcess).unwrap();
    let base0 = flat(&base(t.model().dit.clone()));
    let adapters0 = adapter_values(&t.model().dit);
    assert!(adapters0.iter().any(|x| *x != 0.0), "A is random");
    let straight: Vec<f64> = (0..4).map(|_| t.train_step().unwrap().loss).collect();
    assert!(straight.iter().all(|l| l.is_finite()), "{straight:?}");
    assert_eq!(flat(&base(t.model().dit.clone())), base0, "the frozen base changed");
    let ema = t.ema().unwrap();
    assert_eq!(flat(&base(ema.dit.clone())), base0, "the EMA's base changed");
    let trained = adapter_values(&t.model().dit);
    assert!(dist(&trained, &adapters0) > 0.0 && dist(&adapter_values(&ema.dit), &adapters0) > 0.0);

    let ckpt = t.save_checkpoint().unwrap();
    assert!(!ckpt.join("model.mpk").exists(), "a LoRA checkpoint has no record of the base");
    for file in ["model.safetensors", "ema.safetensors"] {
        let bytes = std::fs::read(ckpt.join(file)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        // 2 double blocks x 10 adapted layers + 2 single blocks x 3, A and B each.
        assert_eq!(st.names().len(), 52, "{file}");
        assert!(st.names().iter().all(|k| k.contains("_lora.")), "{file}: {:?}", st.names());
    }
    let key_shapes = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<(String, Vec<usize>)> = st.tensors().into_iter().map(|(k, t)| (k, t.shape().to_vec())).collect();
        v.sort();
        v
    };
    let diffusers = key_shapes(&tiny_flux().join("../flux-lora/pytorch_lora_weights.safetensors"));
    assert_eq!(key_shapes(&ckpt.join("lora.safetensors")), diffusers);
    assert_eq!(key_shapes(&ckpt.join("ema-lora.safetensors")), diffusers);

    // Two steps, a checkpoint, a new process's resume, two more: the same losses.
    let mut t = Trainer::<A>::new(&cfg, &opts("resumed", false), &device, &SingleProcess).unwrap();
    let mut resumed: Vec<f64> = (0..2).map(|_| t.train_step().unwrap().loss).collect();
    t.save_checkpoint().unwrap();
    drop(t);
    let mut t = Trainer::<A>::new(&cfg, &opts("resumed", true), &device, &SingleProcess).unwrap();
    resumed.extend((0..2).map(|_| t.train_step().unwrap().loss));
    assert_eq!(resumed, straight, "a resumed LoRA run left the uninterrupted one");
    assert_eq!(flat(&base(t.model().dit.clone())), base0);

    // Per-block recomputation on FLUX.1's DiT (pooled-text and guidance embedders in the
    // conditioning vector), training the adapters of a frozen base: the same losses.
    let cfg = lora_config(dir.path(), &["train.activation_checkpointing=blocks"]);
    let mut t = Trainer::<A>::new(&cfg, &opts("blocks", false), &device, &SingleProcess).unwrap();
    let blocks: Vec<f64> = (0..4).map(|_| t.train_step().unwrap().loss).collect();
    assert_eq!(blocks, straight, "per-block recomputation changed the LoRA run's losses");
    assert_eq!(adapter_values(&t.model().dit), trained, "per-block recomputation trained other adapters");
}

/// With `train.precision: bf16` a LoRA run keeps its frozen base in bf16 (no f32 copy) while the
/// adapters, their moments and their EMA stay f32, and it samples its grids.
#[test]
fn lora_keeps_the_base_in_bf16_and_the_adapters_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let set = ["train.precision=bf16", "log.sample_every=1000", "log.samples=1", "log.sample_steps=2"];
    let cfg = lora_config(dir.path(), &set);
    let opts = RunOptions { run_dir: dir.path().join("run"), resume: false, quiet: true };
    let mut t = Trainer::<Autodiff<Flex>>::new(&cfg, &opts, &Default::default(), &SingleProcess).unwrap();
    let losses: Vec<f64> = (0..2).map(|_| t.train_step().unwrap().loss).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let base_dtypes: Vec<DType> = flat_params(&base(t.model().dit.clone())).iter().map(|p| p.dtype()).collect();
    assert!(base_dtypes.iter().all(|d| *d == DType::BF16), "{base_dtypes:?}");
    for (path, a) in unireal_model::lora::adapters(&t.model().dit) {
        assert_eq!((a.a.val().dtype(), a.b.val().dtype()), (DType::F32, DType::F32), "{path}");
    }
    // Sampling runs the bf16 base with the f32 adapters outside the training step's casts.
    let grid = t.write_samples().unwrap().expect("fixed batches");
    assert!(grid.is_file(), "{}", grid.display());
    let ckpt = t.save_checkpoint().unwrap();
    let dtypes = file_dtypes(&ckpt.join("lora.safetensors"));
    assert!(dtypes.iter().all(|d| *d == safetensors::Dtype::F32), "{dtypes:?}");
}
