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
    /// Row blocks stacked in order.
    Concat(Vec<String>),
    /// The two halves of the rows exchanged.
    SwapHalves(String),
}

impl Source {
    fn keys(&self) -> Vec<&str> {
        match self {
            Source::Key(k) | Source::SwapHalves(k) => vec![k.as_str()],
            Source::Concat(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
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
                        Source::Concat(["q", "k", "v"].iter().map(|x| format!("{s}.attn.to_{x}.{p}")).collect()),
                    ),
                    (
                        "txt_attn.qkv".into(),
                        Source::Concat(["q", "k", "v"].iter().map(|x| format!("{s}.attn.add_{x}_proj.{p}")).collect()),
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
                            ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]
                                .iter()
                                .map(|x| format!("{s}.{x}.{p}"))
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
        for (k, p) in keys.iter().zip(&parts).skip(1) {
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
