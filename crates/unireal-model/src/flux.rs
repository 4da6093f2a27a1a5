//! FLUX.1 checkpoints into the [`DiT`]: Black Forest Labs' single-file layout
//! (`flux1-dev.safetensors`: `double_blocks.N.img_attn.qkv.weight`, …) and diffusers'
//! `FluxTransformer2DModel` (`transformer_blocks.N.attn.to_q.weight`, …, one file or shards).
//!
//! The DiT has Flux's blocks with BFL's fused projections, so BFL's tensors load under other
//! names only; diffusers' split ones are joined on load (q|k|v into `qkv`, q|k|v|mlp into a
//! single block's `linear1`) and the final adaLN's `(scale, shift)` halves are swapped to BFL's
//! `(shift, scale)`. UniReal's own tensors, the index and image-role embeddings, are set to zero,
//! so that a text-to-image call (one output frame at RoPE frame 0, see
//! [`DiTConfig::outputs_at_origin`]) computes exactly what Flux computes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::{Param, ParamId};
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    ApplyError, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};

use crate::weights::{weight_files, weights_in, FloatToF32};
use crate::{DiT, DiTConfig, LoadReport, ModelError};

/// Which names a Flux checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxLayout {
    /// Black Forest Labs' (`flux1-dev.safetensors`, `flux/model.py`).
    Bfl,
    /// diffusers' `FluxTransformer2DModel`.
    Diffusers,
}

/// How one DiT tensor is made from a checkpoint's tensors (PyTorch layout, dimension 0).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Key(String),
    /// Row blocks stacked in order, with the rows each has in a model of this config.
    Concat(Vec<(String, usize)>),
    /// The two halves of the rows exchanged.
    SwapHalves(String),
}

impl Source {
    fn keys(&self) -> Vec<&str> {
        match self {
            Source::Key(k) | Source::SwapHalves(k) => vec![k.as_str()],
            Source::Concat(ks) => ks.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }
}

/// Where a diffusers tensor lands in the DiT.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The DiT tensor (`double_blocks.0.img_attn.qkv.weight`).
    pub ours: String,
    /// Its first row there (PyTorch's layout: output features).
    pub offset: usize,
    /// Its rows, when it is a part of a fused tensor; None: all of them.
    pub rows: Option<usize>,
    /// Its halves exchanged there (the final adaLN's `(scale, shift)`).
    pub swap_halves: bool,
}

/// Every tensor of a diffusers `FluxTransformer2DModel` of this config, by key, with where it
/// lands in the DiT: [`flux_sources`] read the other way.
pub fn diffusers_placements(cfg: &DiTConfig) -> HashMap<String, Placement> {
    let mut out = HashMap::new();
    for (ours, source) in flux_sources(cfg, FluxLayout::Diffusers) {
        let place = |offset, rows, swap_halves| Placement { ours: ours.clone(), offset, rows, swap_halves };
        match source {
            Source::Key(k) => {
                out.insert(k, place(0, None, false));
            }
            Source::SwapHalves(k) => {
                out.insert(k, place(0, None, true));
            }
            Source::Concat(parts) => {
                let mut offset = 0;
                for (k, rows) in parts {
                    out.insert(k, place(offset, Some(rows), false));
                    offset += rows;
                }
            }
        }
    }
    out
}

/// The checkpoint file(s) of `path`: a `.safetensors` file (BFL's single file), a
/// `.safetensors.index.json`, a diffusers `transformer/` directory, or a `FluxPipeline`
/// directory (its `transformer/`).
pub fn flux_weight_files(path: &Path) -> Result<Vec<PathBuf>, ModelError> {
    if path.is_dir() {
        let dir = if path.join("transformer").is_dir() { path.join("transformer") } else { path.to_path_buf() };
        return weight_files(&weights_in(&dir, crate::weights::DIFFUSERS_WEIGHTS)?);
    }
    weight_files(path)
}

/// Every DiT tensor that a Flux checkpoint holds, with where it comes from; UniReal's
/// `index_embed` and `role_embed` are not among them.
pub fn flux_sources(cfg: &DiTConfig, layout: FluxLayout) -> Vec<(String, Source)> {
    let mut out = Vec::new();
    let h = cfg.hidden;
    let mut add = |ours: String, src: Source| out.push((ours, src));
    let key = |s: String| Source::Key(s);
    for p in ["weight", "bias"] {
        let embedders = [
            ("time_in", "time_text_embed.timestep_embedder", true),
            ("vector_in", "time_text_embed.text_embedder", cfg.vec_in_dim.is_some()),
            ("guidance_in", "time_text_embed.guidance_embedder", cfg.guidance_embed),
        ];
        for (ours, diffusers, present) in embedders {
            if !present {
                continue;
            }
            for (layer, n) in [("in_layer", 1), ("out_layer", 2)] {
                let src = match layout {
                    FluxLayout::Bfl => format!("{ours}.{layer}.{p}"),
                    FluxLayout::Diffusers => format!("{diffusers}.linear_{n}.{p}"),
                };
                add(format!("{ours}.{layer}.{p}"), key(src));
            }
        }
        match layout {
            FluxLayout::Bfl => {
                for name in ["img_in", "txt_in", "final_layer.linear"] {
                    add(format!("{name}.{p}"), key(format!("{name}.{p}")));
                }
                add(format!("final_layer.modulation.{p}"), key(format!("final_layer.adaLN_modulation.1.{p}")));
            }
            FluxLayout::Diffusers => {
                add(format!("img_in.{p}"), key(format!("x_embedder.{p}")));
                add(format!("txt_in.{p}"), key(format!("context_embedder.{p}")));
                add(format!("final_layer.linear.{p}"), key(format!("proj_out.{p}")));
                add(format!("final_layer.modulation.{p}"), Source::SwapHalves(format!("norm_out.linear.{p}")));
            }
        }
        for i in 0..cfg.double_blocks {
            let d = format!("double_blocks.{i}");
            let s = format!("transformer_blocks.{i}");
            let pairs: Vec<(String, Source)> = match layout {
                FluxLayout::Bfl => vec![
                    ("img_mod".into(), key(format!("{d}.img_mod.lin.{p}"))),
                    ("txt_mod".into(), key(format!("{d}.txt_mod.lin.{p}"))),
                    ("img_attn.qkv".into(), key(format!("{d}.img_attn.qkv.{p}"))),
                    ("txt_attn.qkv".into(), key(format!("{d}.txt_attn.qkv.{p}"))),
                    ("img_attn.proj".into(), key(format!("{d}.img_attn.proj.{p}"))),
                    ("txt_attn.proj".into(), key(format!("{d}.txt_attn.proj.{p}"))),
                    ("img_mlp.fc1".into(), key(format!("{d}.img_mlp.0.{p}"))),
                    ("img_mlp.fc2".into(), key(format!("{d}.img_mlp.2.{p}"))),
                    ("txt_mlp.fc1".into(), key(format!("{d}.txt_mlp.0.{p}"))),
                    ("txt_mlp.fc2".into(), key(format!("{d}.txt_mlp.2.{p}"))),
                ],
                FluxLayout::Diffusers => vec![
                    ("img_mod".into(), key(format!("{s}.norm1.linear.{p}"))),
                    ("txt_mod".into(), key(format!("{s}.norm1_context.linear.{p}"))),
                    (
                        "img_attn.qkv".into(),
                        Source::Concat(["q", "k", "v"].iter().map(|x| (format!("{s}.attn.to_{x}.{p}"), h)).collect()),
                    ),
                    (
                        "txt_attn.qkv".into(),
                        Source::Concat(
                            ["q", "k", "v"].iter().map(|x| (format!("{s}.attn.add_{x}_proj.{p}"), h)).collect(),
                        ),
                    ),
                    ("img_attn.proj".into(), key(format!("{s}.attn.to_out.0.{p}"))),
                    ("txt_attn.proj".into(), key(format!("{s}.attn.to_add_out.{p}"))),
                    ("img_mlp.fc1".into(), key(format!("{s}.ff.net.0.proj.{p}"))),
                    ("img_mlp.fc2".into(), key(format!("{s}.ff.net.2.{p}"))),
                    ("txt_mlp.fc1".into(), key(format!("{s}.ff_context.net.0.proj.{p}"))),
                    ("txt_mlp.fc2".into(), key(format!("{s}.ff_context.net.2.{p}"))),
                ],
            };
            for (ours, src) in pairs {
                add(format!("{d}.{ours}.{p}"), src);
            }
        }
        for i in 0..cfg.single_blocks {
            let d = format!("single_blocks.{i}");
            let s = format!("single_transformer_blocks.{i}");
            let pairs: Vec<(&str, Source)> = match layout {
                FluxLayout::Bfl => vec![
                    ("modulation", key(format!("{d}.modulation.lin.{p}"))),
                    ("linear1", key(format!("{d}.linear1.{p}"))),
                    ("linear2", key(format!("{d}.linear2.{p}"))),
                ],
                FluxLayout::Diffusers => vec![
                    ("modulation", key(format!("{s}.norm.linear.{p}"))),
                    (
                        "linear1",
                        Source::Concat(
                            [("attn.to_q", h), ("attn.to_k", h), ("attn.to_v", h), ("proj_mlp", cfg.mlp_hidden())]
                                .iter()
                                .map(|(x, rows)| (format!("{s}.{x}.{p}"), *rows))
                                .collect(),
                        ),
                    ),
                    ("linear2", key(format!("{s}.proj_out.{p}"))),
                ],
            };
            for (ours, src) in pairs {
                add(format!("{d}.{ours}.{p}"), src);
            }
        }
    }
    for i in 0..cfg.double_blocks {
        let d = format!("double_blocks.{i}");
        let s = format!("transformer_blocks.{i}");
        for (stream, q, k) in [("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")] {
            for (ours, bfl, diffusers) in [("query_norm", "query_norm", q), ("key_norm", "key_norm", k)] {
                let src = match layout {
                    FluxLayout::Bfl => format!("{d}.{stream}_attn.norm.{bfl}.scale"),
                    FluxLayout::Diffusers => format!("{s}.attn.{diffusers}.weight"),
                };
                add(format!("{d}.{stream}_attn.{ours}.scale"), key(src));
            }
        }
    }
    for i in 0..cfg.single_blocks {
        let d = format!("single_blocks.{i}");
        let s = format!("single_transformer_blocks.{i}");
        for (ours, diffusers) in [("query_norm", "norm_q"), ("key_norm", "norm_k")] {
            let src = match layout {
                FluxLayout::Bfl => format!("{d}.norm.{ours}.scale"),
                FluxLayout::Diffusers => format!("{s}.attn.{diffusers}.weight"),
            };
            add(format!("{d}.{ours}.scale"), key(src));
        }
    }
    out
}

/// The layout whose names `keys` use, if either.
pub fn detect_layout<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<FluxLayout> {
    keys.find_map(|k| {
        if k.starts_with("double_blocks.") || k.starts_with("img_in.") {
            Some(FluxLayout::Bfl)
        } else if k.starts_with("transformer_blocks.") || k.starts_with("x_embedder.") {
            Some(FluxLayout::Diffusers)
        } else {
            None
        }
    })
}

/// Loads a FLUX.1 checkpoint (see [`flux_weight_files`] for what `path` may be) into `dit`,
/// built from `cfg`. Tensors of other dtypes become f32. A tensor of the wrong shape is an
/// error naming it; tensors `cfg` needs that the checkpoint lacks are listed in the report
/// and are an error when `strict`; the checkpoint's tensors that fill nothing are listed as
/// unused. The index and image-role embeddings are zeroed.
pub fn load_flux<B: Backend>(
    dit: &mut DiT<B>,
    cfg: &DiTConfig,
    path: &Path,
    strict: bool,
) -> Result<LoadReport, ModelError> {
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let files = flux_weight_files(path)?;
    // Every tensor of every shard, read lazily (memory-mapped) when it is applied.
    let mut tensors: BTreeMap<String, TensorSnapshot> = BTreeMap::new();
    for f in &files {
        let mut store = SafetensorsStore::from_file(f);
        let all = store
            .get_all_snapshots()
            .map_err(|e| ModelError::Weights { path: f.display().to_string(), message: e.to_string() })?;
        tensors.extend(all.iter().map(|(k, s)| (k.clone(), s.clone())));
    }
    let layout = detect_layout(tensors.keys().map(String::as_str)).ok_or_else(|| {
        err("neither Black Forest Labs' names (double_blocks.N.…) nor diffusers' (transformer_blocks.N.…): not a FLUX.1 transformer".into())
    })?;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut snapshots = Vec::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    let mut absent = Vec::new();
    for (ours, source) in flux_sources(cfg, layout) {
        let keys = source.keys();
        if let Some(k) = keys.iter().find(|k| !tensors.contains_key(**k)) {
            absent.push(format!("{ours} (from {k})"));
            continue;
        }
        used.extend(keys.iter().map(|k| k.to_string()));
        origin.insert(ours.clone(), keys.join(" + "));
        snapshots.push(converted(&ours, &source, &tensors).map_err(&err)?);
    }
    let result = dit.apply(
        snapshots,
        None,
        Some(Box::new(PyTorchToBurnAdapter.chain(FloatToF32)) as Box<dyn ModuleAdapter>),
        false,
    );
    if let Some(e) = result.errors.first() {
        return Err(err(match e {
            ApplyError::ShapeMismatch { path: t, expected, found } => format!(
                "`{}` (for the DiT's `{t}`) has shape {:?} in the file, the model expects {:?}: the checkpoint does not fit this model config",
                origin.get(t).map_or(t.as_str(), String::as_str),
                found.as_slice(),
                expected.as_slice()
            ),
            other => other.to_string(),
        }));
    }
    // UniReal's own embeddings start at zero: at step 0 the model is Flux.
    let zero = |w: &Param<Tensor<B, 2>>| Param::initialized(ParamId::new(), w.val().zeros_like());
    dit.index_embed.weight = zero(&dit.index_embed.weight);
    dit.role_embed.weight = zero(&dit.role_embed.weight);
    let unireal_own = |p: &str| p.starts_with("index_embed.") || p.starts_with("role_embed.");
    let mut missing: Vec<String> =
        result.missing.iter().map(|(p, _)| p.clone()).filter(|p| !unireal_own(p) && !origin.contains_key(p)).collect();
    missing.extend(absent);
    missing.sort();
    missing.dedup();
    if strict && !missing.is_empty() {
        return Err(err(format!(
            "{} tensor(s) this model config needs are not in the checkpoint: {}",
            missing.len(),
            crate::weights::preview(&missing)
        )));
    }
    let unused = tensors.keys().filter(|k| !used.contains(*k)).cloned().collect();
    Ok(LoadReport { loaded: result.applied.len(), missing, unused })
}

/// A snapshot at the DiT path `ours` whose data is `source` made from `tensors` when read.
fn converted(
    ours: &str,
    source: &Source,
    tensors: &BTreeMap<String, TensorSnapshot>,
) -> Result<TensorSnapshot, String> {
    let parts: Vec<TensorSnapshot> = source.keys().iter().map(|k| tensors[*k].clone()).collect();
    let first = &parts[0].shape;
    let mut shape = first.clone();
    if let Source::Concat(keys) = source {
        for ((k, rows), p) in keys.iter().zip(&parts) {
            if p.shape.as_slice().first() != Some(rows) {
                return Err(format!("`{k}` has shape {:?}, this model config expects {rows} rows", p.shape.as_slice()));
            }
        }
        for ((k, _), p) in keys.iter().zip(&parts).skip(1) {
            if p.shape.num_dims() != first.num_dims() || p.shape.as_slice()[1..] != first.as_slice()[1..] {
                return Err(format!(
                    "`{k}` has shape {:?}, which cannot be stacked under {:?}",
                    p.shape.as_slice(),
                    first.as_slice()
                ));
            }
        }
        shape.as_mut_slice()[0] = parts.iter().map(|p| p.shape.as_slice()[0]).sum();
    }
    if matches!(source, Source::SwapHalves(_)) && shape.as_slice()[0] % 2 != 0 {
        return Err(format!("`{}` has an odd first dimension; it cannot be split in halves", source.keys()[0]));
    }
    let data_fns: Vec<_> = parts.iter().map(|p| p.clone_data_fn()).collect();
    let out_shape = shape.clone();
    let swap = matches!(source, Source::SwapHalves(_));
    let single = parts.len() == 1 && !swap;
    let data = Rc::new(move || {
        if single {
            return data_fns[0]();
        }
        let mut rows: Vec<f32> = Vec::with_capacity(out_shape.num_elements());
        for f in &data_fns {
            rows.extend(
                f()?.convert_dtype(DType::F32)
                    .into_vec::<f32>()
                    .map_err(|e| burn_store::TensorSnapshotError::DataError(format!("{e:?}")))?,
            );
        }
        if swap {
            let half = rows.len() / 2;
            rows.rotate_left(half);
        }
        Ok(TensorData::new(rows, out_shape.clone()))
    });
    let dtype = if single { parts[0].dtype } else { DType::F32 };
    Ok(TensorSnapshot::from_closure(
        data,
        dtype,
        shape,
        ours.split('.').map(str::to_string).collect(),
        Vec::new(),
        ParamId::new(),
    ))
}

impl DiTConfig {
    /// The DiT of a diffusers `FluxTransformer2DModel`'s `config.json` (its block counts,
    /// widths, `guidance_embeds` and RoPE axes; `in_channels` counts the 2×2 packed latent,
    /// so the latent has a quarter of them).
    pub fn from_diffusers_flux_json(text: &str) -> Result<DiTConfig, ModelError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("Flux transformer config.json: {e}")))?;
        let get = |k: &str| {
            v[k].as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("Flux transformer config.json: no integer `{k}`")))
        };
        let packed = get("in_channels")?;
        if packed % 4 != 0 || get("patch_size").unwrap_or(1) != 1 {
            return Err(ModelError::Config(format!(
                "Flux transformer config.json: in_channels {packed} with patch_size {} is not a 2x2-packed latent",
                v["patch_size"]
            )));
        }
        let heads = get("num_attention_heads")?;
        let axes: Vec<usize> = v["axes_dims_rope"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as usize).collect())
            .unwrap_or_else(|| vec![16, 56, 56]);
        let axes: [usize; 3] = axes.try_into().map_err(|_| {
            ModelError::Config("Flux transformer config.json: `axes_dims_rope` is not three numbers".into())
        })?;
        let cfg = DiTConfig::new(
            packed / 4,
            heads * get("attention_head_dim")?,
            heads,
            get("num_layers")?,
            get("num_single_layers")?,
            get("joint_attention_dim")?,
            axes,
        )
        .with_vec_in_dim(Some(get("pooled_projection_dim")?))
        .with_guidance_embed(v["guidance_embeds"].as_bool().unwrap_or(false))
        .with_outputs_at_origin(true);
        cfg.validate().map_err(|e| ModelError::Config(format!("Flux transformer config.json: {e}")))?;
        Ok(cfg)
    }
}

/// The `config.json` of the diffusers transformer at `path` (a `transformer/` directory or a
/// `FluxPipeline` directory), if it has one; BFL's single file has none.
pub fn flux_transformer_config(path: &Path) -> Option<PathBuf> {
    [path.join("transformer/config.json"), path.join("config.json")].into_iter().find(|p| p.is_file())
}

/// Why a DiT cannot be written as a diffusers `FluxTransformer2DModel`, if it cannot.
fn diffusers_incompatibility(cfg: &DiTConfig) -> Option<String> {
    let checks = [
        (cfg.patch == 2, "patch 2 (Flux packs 2x2 latent pixels)".to_string()),
        (cfg.vec_in_dim.is_some(), "a pooled text input (vec_in_dim)".to_string()),
        (cfg.mlp_ratio == 4.0, format!("mlp_ratio 4 (this one: {})", cfg.mlp_ratio)),
        (cfg.time_freq_dim == 256 && cfg.time_factor == 1000.0, "Flux's timestep embedding (256, x1000)".to_string()),
        (cfg.rope_theta == 10000.0, "RoPE theta 10000".to_string()),
        (cfg.outputs_at_origin, "the generated frame at RoPE frame 0 (outputs_at_origin)".to_string()),
    ];
    checks.into_iter().find(|(ok, _)| !ok).map(|(_, what)| format!("FLUX.1's layout needs {what}"))
}

/// diffusers' `config.json` of a `FluxTransformer2DModel` with `cfg`'s shape.
pub fn diffusers_flux_config_json(cfg: &DiTConfig) -> Result<String, ModelError> {
    if let Some(e) = diffusers_incompatibility(cfg) {
        return Err(ModelError::Config(e));
    }
    let v = serde_json::json!({
        "_class_name": "FluxTransformer2DModel",
        "attention_head_dim": cfg.head_dim(),
        "axes_dims_rope": cfg.axes_dim,
        "guidance_embeds": cfg.guidance_embed,
        "in_channels": cfg.in_channels * 4,
        "joint_attention_dim": cfg.text_dim,
        "num_attention_heads": cfg.heads,
        "num_layers": cfg.double_blocks,
        "num_single_layers": cfg.single_blocks,
        "out_channels": null,
        "patch_size": 1,
        "pooled_projection_dim": cfg.vec_in_dim,
    });
    serde_json::to_string_pretty(&v).map_err(|e| ModelError::Config(e.to_string()))
}

/// The dtype of exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    /// What FLUX.1 is released in.
    Bf16,
}

/// Largest shard [`export_diffusers`] writes (diffusers' `save_pretrained` default, 10 GB).
pub const MAX_SHARD_BYTES: usize = 10_000_000_000;

/// Writes `dit` (of `cfg`, FLUX.1-shaped) as a diffusers `FluxTransformer2DModel` directory
/// `out` (which must not exist): `config.json` and `diffusion_pytorch_model.safetensors`, or
/// shards of at most `max_shard_bytes` with `diffusion_pytorch_model.safetensors.index.json`,
/// as `save_pretrained` writes them. Fused projections are split into diffusers' modules and
/// the final adaLN's halves swapped back. UniReal's index and role embeddings have no place
/// there: the count of their non-zero values is returned (0 for a LoRA run, whose base keeps
/// them at zero). Written into a temporary directory renamed at the end.
pub fn export_diffusers<B: Backend>(
    dit: &DiT<B>,
    cfg: &DiTConfig,
    out: &Path,
    dtype: ExportDtype,
    max_shard_bytes: usize,
) -> Result<usize, ModelError> {
    let err = |message: String| ModelError::Weights { path: out.display().to_string(), message };
    let config = diffusers_flux_config_json(cfg)?;
    if out.exists() {
        return Err(err("already exists; give a new directory".into()));
    }
    // Every DiT tensor, flat (no copy), by path.
    struct Collect<B: Backend> {
        path: Vec<String>,
        all: HashMap<String, (Vec<usize>, Tensor<B, 1>)>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect<B> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let t = p.val();
            self.all.insert(self.path.join("."), (t.dims().to_vec(), t.reshape([-1])));
        }
    }
    let mut c = Collect { path: Vec::new(), all: HashMap::new() };
    dit.visit(&mut c);
    let tensor = |ours: &str| -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let (dims, t) = c.all.get(ours).ok_or_else(|| err(format!("the DiT has no `{ours}`")))?;
        let v: Vec<f32> =
            t.clone().into_data().convert::<f32>().into_vec().map_err(|e| err(format!("`{ours}`: {e:?}")))?;
        // Burn's Linear weights are [in, out]; PyTorch's [out, in].
        Ok(match dims[..] {
            [i, o] => ((vec![o, i]), (0..o * i).map(|k| v[(k % i) * o + k / i]).collect()),
            _ => (dims.clone(), v),
        })
    };
    let nonzero_own = ["index_embed.weight", "role_embed.weight"]
        .iter()
        .filter_map(|p| tensor(p).ok())
        .map(|(_, v)| v.iter().filter(|x| **x != 0.0).count())
        .sum();
    // Every diffusers tensor, the parts of one DiT tensor together (read and transposed once).
    let mut keys: Vec<(String, Placement)> = diffusers_placements(cfg).into_iter().collect();
    keys.sort_by(|a, b| (&a.1.ours, a.1.offset).cmp(&(&b.1.ours, b.1.offset)));
    let bytes_per = match dtype {
        ExportDtype::F32 => 4,
        ExportDtype::Bf16 => 2,
    };
    let shape_of = |p: &Placement| -> Result<Vec<usize>, ModelError> {
        let (dims, _) = c.all.get(&p.ours).ok_or_else(|| err(format!("the DiT has no `{}`", p.ours)))?;
        let mut shape: Vec<usize> = if dims.len() == 2 { vec![dims[1], dims[0]] } else { dims.clone() };
        if let Some(rows) = p.rows {
            shape[0] = rows;
        }
        Ok(shape)
    };
    let mut shards: Vec<Vec<(String, Placement, Vec<usize>)>> = vec![Vec::new()];
    let mut size = 0usize;
    let mut total = 0usize;
    for (key, p) in keys {
        let shape = shape_of(&p)?;
        let n = shape.iter().product::<usize>() * bytes_per;
        if size > 0 && size + n > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        total += n;
        shards.last_mut().expect("one shard at least").push((key, p, shape));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    let tmp = out.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| err(format!("create {}: {e}", tmp.display())))?;
    let stem = crate::weights::DIFFUSERS_WEIGHTS;
    let count = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut cached: (String, Vec<f32>) = (String::new(), Vec::new());
    for (i, shard) in shards.into_iter().enumerate() {
        let file = if count == 1 {
            format!("{stem}.safetensors")
        } else {
            format!("{stem}-{:05}-of-{count:05}.safetensors", i + 1)
        };
        let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(shard.len());
        for (key, p, shape) in shard {
            if cached.0 != p.ours {
                cached = (p.ours.clone(), tensor(&p.ours)?.1);
            }
            let row: usize = shape[1..].iter().product();
            let mut v = cached.1[p.offset * row..(p.offset + shape[0]) * row].to_vec();
            if p.swap_halves {
                let half = v.len() / 2;
                v.rotate_left(half);
            }
            let bytes = match dtype {
                ExportDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ExportDtype::Bf16 => v.iter().flat_map(|x| burn::tensor::bf16::from_f32(*x).to_le_bytes()).collect(),
            };
            weight_map.insert(key.clone(), serde_json::Value::String(file.clone()));
            data.push((key, shape, bytes));
        }
        let st_dtype = match dtype {
            ExportDtype::F32 => safetensors::Dtype::F32,
            ExportDtype::Bf16 => safetensors::Dtype::BF16,
        };
        let views = data
            .iter()
            .map(|(k, shape, b)| {
                safetensors::tensor::TensorView::new(st_dtype, shape.clone(), b)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| err(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(metadata), &tmp.join(&file)).map_err(|e| err(e.to_string()))?;
    }
    if count > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let text = serde_json::to_string_pretty(&index).map_err(|e| err(e.to_string()))?;
        std::fs::write(tmp.join(format!("{stem}.safetensors.index.json")), text).map_err(|e| err(e.to_string()))?;
    }
    std::fs::write(tmp.join("config.json"), config).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, out).map_err(|e| err(format!("rename {}: {e}", tmp.display())))?;
    Ok(nonzero_own)
}
