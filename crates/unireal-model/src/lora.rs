//! LoRA (Hu et al. 2021, arXiv 2106.09685): low-rank adapters on the DiT's linear layers,
//! trained while the base weights stay frozen, and their exchange with diffusers.
//!
//! An adapter of a `Linear` `y = x·W + b` (Burn's `W: [in, out]`) adds `scale · (x·A)·B` to the
//! output features `[start, start + width)`, with `A: [in, rank]` drawn as PEFT draws it
//! (uniform in ±1/√in), `B: [rank, width]` zero, so a freshly attached adapter changes nothing,
//! and `scale = alpha / rank`. It sits beside the layer it adapts: the adapter of
//! `double_blocks.0.img_attn.qkv` is `double_blocks.0.img_attn.qkv_lora` (see
//! [`is_adapter_tensor`]). The DiT's fused projections take one adapter each: a single-stream block's
//! `linear1` (q|k|v|MLP-in) gets one over the q|k|v columns for `attn`, over the MLP columns
//! for `mlp`, over both for both.
//!
//! diffusers names the same layers apart (`attn.to_q`, `attn.to_k`, …, see
//! [`crate::flux::flux_sources`]): [`diffusers_lora`] writes an adapter of a fused layer as
//! one adapter per part with the same `A` and that part's columns of `B`, which computes the
//! same sum, with `scale` folded into `B` (so diffusers' default `lora_alpha = r` applies it).
//! [`merge_diffusers_lora`] reads a LoRA of a FLUX.1 transformer in diffusers' format
//! (`save_lora_weights`: PEFT keys, per-module ranks, `lora_adapter_metadata`'s alphas, rsLoRA)
//! and adds `scale · Bᵀ·Aᵀ` into the weights it names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use crate::flux::{diffusers_placements, Placement};
use crate::{DiT, DiTConfig, ModelError};

/// What a LoRA adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// Attention: the q, k, v projections and the output projection of every block (a
    /// single-stream block's `linear2` projects attention and MLP together).
    Attn,
    /// The MLPs (a single-stream block's MLP-in columns of `linear1`, and its `linear2`).
    Mlp,
    /// The adaLN modulation of every block.
    #[serde(rename = "mod")]
    Modulation,
}

/// `train.lora`: rank, alpha and what is adapted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    /// The adapters' output is scaled by `alpha / rank`; default `rank` (scale 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Default: `[attn]`.
    #[serde(default = "LoraConfig::default_targets")]
    pub targets: Vec<LoraTarget>,
}

impl LoraConfig {
    pub fn new(rank: usize, targets: Vec<LoraTarget>) -> Self {
        LoraConfig { rank, alpha: None, targets }
    }

    fn default_targets() -> Vec<LoraTarget> {
        vec![LoraTarget::Attn]
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha.unwrap_or(self.rank as f64) / self.rank as f64
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("train.lora.rank must be at least 1".into());
        }
        if self.targets.is_empty() {
            return Err("train.lora.targets is empty: name at least one of attn, mlp, mod".into());
        }
        if self.alpha.is_some_and(|a| !(a > 0.0 && a.is_finite())) {
            return Err(format!("train.lora.alpha {:?} must be positive", self.alpha));
        }
        Ok(())
    }

    /// Whether `other` builds the same adapters (alpha left out or equal to the rank, targets
    /// in any order).
    pub fn same_adapters(&self, other: &LoraConfig) -> bool {
        let targets = |c: &LoraConfig| c.targets.iter().copied().collect::<BTreeSet<_>>();
        self.rank == other.rank && self.scale() == other.scale() && targets(self) == targets(other)
    }

    fn has(&self, t: LoraTarget) -> bool {
        self.targets.contains(&t)
    }

    /// Parameters of the adapters [`attach_lora`] puts on a DiT of `cfg`, counted without
    /// building it.
    pub fn num_params(&self, cfg: &DiTConfig) -> usize {
        let (h, m, r) = (cfg.hidden, cfg.mlp_hidden(), self.rank);
        let (attn, mlp, modulation) =
            (self.has(LoraTarget::Attn), self.has(LoraTarget::Mlp), self.has(LoraTarget::Modulation));
        let ad = |on: bool, d_in: usize, width: usize| if on { r * (d_in + width) } else { 0 };
        let double =
            2 * (ad(modulation, h, 6 * h) + ad(attn, h, 3 * h) + ad(attn, h, h) + ad(mlp, h, m) + ad(mlp, m, h));
        let linear1 = match (attn, mlp) {
            (true, true) => ad(true, h, 3 * h + m),
            (true, false) => ad(true, h, 3 * h),
            (false, true) => ad(true, h, m),
            (false, false) => 0,
        };
        let single = ad(modulation, h, 3 * h) + linear1 + ad(attn || mlp, h + m, h);
        cfg.double_blocks * double + cfg.single_blocks * single
    }
}

/// Whether the module tensor at `path` belongs to an adapter: what a LoRA run trains, saves
/// and restores (a burn-store path filter; the container type is not needed).
pub fn is_adapter_tensor(path: &str, _container: &str) -> bool {
    path.contains("_lora.")
}

/// A low-rank adapter of one `Linear`.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// Down projection, `[in, rank]`.
    pub a: Param<Tensor<B, 2>>,
    /// Up projection, `[rank, width]`; zero when attached.
    pub b: Param<Tensor<B, 2>>,
    /// alpha / rank.
    pub scale: f64,
    /// The first output feature of the adapted layer this adds to.
    pub start: usize,
}

/// A stable parameter id for the tensor at `path`: a resumed run rebuilds its adapters with
/// the ids its optimizer state was saved under (FNV-1a of the path).
fn stable_id(path: &str) -> ParamId {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in path.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    ParamId::from(h)
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter of the layer at `path` (`d_in` inputs), adding to outputs
    /// `[start, start + width)`.
    pub fn new(
        path: &str,
        d_in: usize,
        rank: usize,
        start: usize,
        width: usize,
        scale: f64,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::<B, 2>::random([d_in, rank], burn::tensor::Distribution::Uniform(-bound, bound), device);
        let b = Tensor::<B, 2>::zeros([rank, width], device);
        LoraAdapter {
            a: Param::initialized(stable_id(&format!("{path}_lora.a")), a.require_grad()),
            b: Param::initialized(stable_id(&format!("{path}_lora.b")), b.require_grad()),
            scale,
            start,
        }
    }

    pub fn rank(&self) -> usize {
        self.a.dims()[1]
    }

    /// Output features it adds to.
    pub fn width(&self) -> usize {
        self.b.dims()[1]
    }

    /// `scale · (x·A)·B`.
    ///
    /// # Shapes
    /// - x: `[..., in]` → `[..., width]`
    /// Computed in `x`'s dtype: a LoRA run's base may compute in bf16 while the adapters are
    /// f32 (sampling; training casts the adapters itself).
    pub fn delta<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let down = burn::tensor::module::linear(x, self.a.val().cast(dtype), None);
        burn::tensor::module::linear(down, self.b.val().cast(dtype), None) * self.scale
    }
}

/// `linear(x)`, plus the adapter's `scale · (x·A)·B` on its output features when there is one.
///
/// # Shapes
/// - x: `[..., in]` → `[..., out]`
pub fn adapted<B: Backend, const D: usize>(
    linear: &Linear<B>,
    lora: Option<&LoraAdapter<B>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let Some(l) = lora else { return linear.forward(x) };
    let y = linear.forward(x.clone());
    let delta = l.delta(x);
    let out = y.dims()[D - 1];
    let (start, width) = (l.start, l.width());
    if start == 0 && width == out {
        return y + delta;
    }
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        parts.push(y.clone().narrow(D - 1, 0, start));
    }
    parts.push(y.clone().narrow(D - 1, start, width) + delta);
    if start + width < out {
        parts.push(y.narrow(D - 1, start + width, out - start - width));
    }
    Tensor::cat(parts, D - 1)
}

/// `dit` with adapters as `cfg` asks on every block (replacing any it had). Attach them after
/// the base weights are loaded and frozen (`no_grad`): the adapters are what requires grad.
pub fn attach_lora<B: Backend>(mut dit: DiT<B>, cfg: &LoraConfig, device: &B::Device) -> DiT<B> {
    let (rank, scale) = (cfg.rank, cfg.scale());
    let (attn, mlp, modulation) =
        (cfg.has(LoraTarget::Attn), cfg.has(LoraTarget::Mlp), cfg.has(LoraTarget::Modulation));
    let new = |path: &str, linear: &Linear<B>, start: usize, width: usize| {
        let d_in = linear.weight.dims()[0];
        Some(LoraAdapter::new(path, d_in, rank, start, width, scale, device))
    };
    let full =
        |path: &str, linear: &Linear<B>, on: bool| on.then(|| new(path, linear, 0, linear.weight.dims()[1])).flatten();
    for (i, block) in dit.double_blocks.iter_mut().enumerate() {
        let p = format!("double_blocks.{i}");
        block.img_mod_lora = full(&format!("{p}.img_mod"), &block.img_mod, modulation);
        block.txt_mod_lora = full(&format!("{p}.txt_mod"), &block.txt_mod, modulation);
        for (stream, a, m) in
            [("img", &mut block.img_attn, &mut block.img_mlp), ("txt", &mut block.txt_attn, &mut block.txt_mlp)]
        {
            a.qkv_lora = full(&format!("{p}.{stream}_attn.qkv"), &a.qkv, attn);
            a.proj_lora = full(&format!("{p}.{stream}_attn.proj"), &a.proj, attn);
            m.fc1_lora = full(&format!("{p}.{stream}_mlp.fc1"), &m.fc1, mlp);
            m.fc2_lora = full(&format!("{p}.{stream}_mlp.fc2"), &m.fc2, mlp);
        }
    }
    for (i, block) in dit.single_blocks.iter_mut().enumerate() {
        let p = format!("single_blocks.{i}");
        let qkv = 3 * block.hidden;
        let out = block.linear1.weight.dims()[1];
        block.modulation_lora = full(&format!("{p}.modulation"), &block.modulation, modulation);
        // linear1 is q|k|v then the MLP's input: one adapter over the columns of what is adapted.
        let l1 = format!("{p}.linear1");
        block.linear1_lora = match (attn, mlp) {
            (true, true) => new(&l1, &block.linear1, 0, out),
            (true, false) => new(&l1, &block.linear1, 0, qkv),
            (false, true) => new(&l1, &block.linear1, qkv, out - qkv),
            (false, false) => None,
        };
        block.linear2_lora = full(&format!("{p}.linear2"), &block.linear2, attn || mlp);
    }
    dit
}

/// Every adapter of `dit`, with the path of the `Linear` it adapts, in block order.
pub fn adapters<B: Backend>(dit: &DiT<B>) -> Vec<(String, &LoraAdapter<B>)> {
    let mut all: Vec<(String, &Option<LoraAdapter<B>>)> = Vec::new();
    for (i, b) in dit.double_blocks.iter().enumerate() {
        let p = format!("double_blocks.{i}");
        all.push((format!("{p}.img_mod"), &b.img_mod_lora));
        all.push((format!("{p}.txt_mod"), &b.txt_mod_lora));
        for (s, a, m) in [("img", &b.img_attn, &b.img_mlp), ("txt", &b.txt_attn, &b.txt_mlp)] {
            all.push((format!("{p}.{s}_attn.qkv"), &a.qkv_lora));
            all.push((format!("{p}.{s}_attn.proj"), &a.proj_lora));
            all.push((format!("{p}.{s}_mlp.fc1"), &m.fc1_lora));
            all.push((format!("{p}.{s}_mlp.fc2"), &m.fc2_lora));
        }
    }
    for (i, b) in dit.single_blocks.iter().enumerate() {
        let p = format!("single_blocks.{i}");
        all.push((format!("{p}.modulation"), &b.modulation_lora));
        all.push((format!("{p}.linear1"), &b.linear1_lora));
        all.push((format!("{p}.linear2"), &b.linear2_lora));
    }
    all.into_iter().filter_map(|(p, a)| a.as_ref().map(|a| (p, a))).collect()
}

/// One tensor of a safetensors state dict: name, shape, f32 values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The key prefix of the transformer's part of a diffusers pipeline's LoRA.
const TRANSFORMER_PREFIX: &str = "transformer.";

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    t.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| ModelError::Config(format!("reading a tensor: {e:?}")))
}

/// The adapters of `dit` (built from `cfg`, a FLUX.1-shaped DiT) as the LoRA state dict that
/// diffusers' `FluxPipeline.load_lora_weights` takes: `transformer.<module>.lora_A.weight`
/// `[rank, in]` and `.lora_B.weight` `[rows, rank]` per diffusers module, the scale folded
/// into `lora_B`. Sorted by key.
pub fn diffusers_lora<B: Backend>(dit: &DiT<B>, cfg: &DiTConfig) -> Result<Vec<NamedTensor>, ModelError> {
    let placements = diffusers_placements(cfg);
    // ours → its diffusers parts (key, first row, rows)
    let mut parts: BTreeMap<&str, Vec<(&str, usize, Option<usize>)>> = BTreeMap::new();
    for (key, p) in &placements {
        if p.swap_halves {
            continue;
        }
        parts.entry(p.ours.as_str()).or_default().push((key.as_str(), p.offset, p.rows));
    }
    let mut out = Vec::new();
    for (path, adapter) in adapters(dit) {
        let ours = format!("{path}.weight");
        let Some(ps) = parts.get(ours.as_str()) else {
            return Err(ModelError::Config(format!(
                "the adapter of `{path}` has no place in diffusers' FLUX.1 layout"
            )));
        };
        let (start, width, rank) = (adapter.start, adapter.width(), adapter.rank());
        let a_t = values(adapter.a.val().transpose())?; // [rank, in]
        let d_in = adapter.a.dims()[0];
        // [width, rank], scale folded in.
        let b_t = values(adapter.b.val().transpose() * adapter.scale)?;
        let total = dit_out_features(dit, &path).unwrap_or(start + width);
        let mut covered = 0;
        for (key, offset, rows) in ps {
            let rows = rows.unwrap_or(total);
            let (lo, hi) = (*offset, offset + rows);
            if hi <= start || lo >= start + width {
                continue;
            }
            if lo < start || hi > start + width {
                return Err(ModelError::Config(format!(
                    "the adapter of `{path}` covers outputs {start}..{} and cuts `{key}` (rows {lo}..{hi})",
                    start + width
                )));
            }
            let module = key.strip_suffix(".weight").unwrap_or(key);
            out.push((format!("{TRANSFORMER_PREFIX}{module}.lora_A.weight"), vec![rank, d_in], a_t.clone()));
            let b_rows = b_t[(lo - start) * rank..(hi - start) * rank].to_vec();
            out.push((format!("{TRANSFORMER_PREFIX}{module}.lora_B.weight"), vec![rows, rank], b_rows));
            covered += rows;
        }
        if covered != width {
            return Err(ModelError::Config(format!(
                "the adapter of `{path}` covers {width} outputs, diffusers' modules {covered}"
            )));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Output features of the `Linear` at `path` (`double_blocks.N.…` or `single_blocks.N.…`).
fn dit_out_features<B: Backend>(dit: &DiT<B>, path: &str) -> Option<usize> {
    let mut it = path.splitn(3, '.');
    let (kind, i, rest) = (it.next()?, it.next()?.parse::<usize>().ok()?, it.next()?);
    let linear = match kind {
        "double_blocks" => {
            let b = dit.double_blocks.get(i)?;
            match rest {
                "img_mod" => &b.img_mod,
                "txt_mod" => &b.txt_mod,
                "img_attn.qkv" => &b.img_attn.qkv,
                "txt_attn.qkv" => &b.txt_attn.qkv,
                "img_attn.proj" => &b.img_attn.proj,
                "txt_attn.proj" => &b.txt_attn.proj,
                "img_mlp.fc1" => &b.img_mlp.fc1,
                "img_mlp.fc2" => &b.img_mlp.fc2,
                "txt_mlp.fc1" => &b.txt_mlp.fc1,
                "txt_mlp.fc2" => &b.txt_mlp.fc2,
                _ => return None,
            }
        }
        "single_blocks" => {
            let b = dit.single_blocks.get(i)?;
            match rest {
                "modulation" => &b.modulation,
                "linear1" => &b.linear1,
                "linear2" => &b.linear2,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(linear.weight.dims()[1])
}

/// Writes `tensors` as a safetensors file (f32, `format: pt`), atomically.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<(), ModelError> {
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?;
    unireal_core::write_atomic(path, &data).map_err(|e| err(e.to_string()))
}

/// Saves [`diffusers_lora`] to `path`; returns the number of diffusers modules.
pub fn save_diffusers_lora<B: Backend>(dit: &DiT<B>, cfg: &DiTConfig, path: &Path) -> Result<usize, ModelError> {
    let tensors = diffusers_lora(dit, cfg)?;
    write_safetensors(path, &tensors)?;
    Ok(tensors.len() / 2)
}

/// What [`merge_diffusers_lora`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// diffusers modules merged.
    pub modules: usize,
    /// Their ranks, smallest and largest.
    pub ranks: (usize, usize),
}

/// One module of a LoRA file.
struct FileAdapter {
    /// `[rank, in]`
    a: TensorData,
    /// `[rows, rank]`
    b: TensorData,
    scale: f64,
}

/// The transformer modules of a diffusers/PEFT LoRA file with their scales.
fn read_lora_file(path: &Path) -> Result<BTreeMap<String, FileAdapter>, ModelError> {
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
    // diffusers' `lora_adapter_metadata`: the PEFT LoraConfig the LoRA was trained with.
    let config: serde_json::Value = match meta.metadata().as_ref().and_then(|m| m.get("lora_adapter_metadata")) {
        Some(s) => serde_json::from_str(s).map_err(|e| err(format!("lora_adapter_metadata is not JSON: {e}")))?,
        None => serde_json::Value::Null,
    };
    let conf = |k: &str| config.get(format!("{TRANSFORMER_PREFIX}{k}"));
    if conf("use_dora").and_then(|v| v.as_bool()) == Some(true) {
        return Err(err("a DoRA (use_dora) adapter: only plain LoRA merges".into()));
    }
    let mut a: BTreeMap<String, TensorData> = BTreeMap::new();
    let mut b: BTreeMap<String, TensorData> = BTreeMap::new();
    let mut other = Vec::new();
    for (name, view) in st.tensors() {
        if name.starts_with("text_encoder") {
            return Err(err(format!(
                "`{name}`: a LoRA of the text encoders; only the transformer's (`transformer.…`) is supported"
            )));
        }
        let key = name.strip_prefix(TRANSFORMER_PREFIX).unwrap_or(&name);
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            d => return Err(err(format!("`{name}` is {d:?}; a LoRA holds floats"))),
        };
        let data =
            TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype).convert_dtype(DType::F32);
        if let Some(m) = key.strip_suffix(".lora_A.weight") {
            a.insert(m.to_string(), data);
        } else if let Some(m) = key.strip_suffix(".lora_B.weight") {
            b.insert(m.to_string(), data);
        } else {
            other.push(name);
        }
    }
    if !other.is_empty() {
        other.sort();
        return Err(err(format!(
            "{} key(s) are not diffusers/PEFT LoRA weights (`transformer.<module>.lora_A.weight` / `.lora_B.weight`): {}",
            other.len(),
            crate::weights::preview(&other)
        )));
    }
    if a.is_empty() {
        return Err(err("no `lora_A`/`lora_B` weights: not a diffusers LoRA".into()));
    }
    let lora_alpha = conf("lora_alpha").and_then(|v| v.as_f64());
    let rslora = conf("use_rslora").and_then(|v| v.as_bool()) == Some(true);
    if let Some(k) = conf("alpha_pattern")
        .and_then(|v| v.as_object())
        .and_then(|m| m.keys().find(|k| k.contains(|c: char| "*+?[](){}|\\^$".contains(c))))
    {
        return Err(err(format!(
            "alpha_pattern key `{k}` is a regular expression; only module names are matched here"
        )));
    }
    let pattern = |name: &str, module: &str| -> Option<f64> {
        let map = conf(name)?.as_object()?;
        map.iter()
            .find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}")))
            .and_then(|(_, v)| v.as_f64())
    };
    let mut out = BTreeMap::new();
    for (module, a_data) in a {
        let b_data = b.remove(&module).ok_or_else(|| err(format!("`{module}` has lora_A but no lora_B")))?;
        let (ash, bsh) = (a_data.shape.clone(), b_data.shape.clone());
        if ash.len() != 2 || bsh.len() != 2 || ash[0] != bsh[1] {
            return Err(err(format!(
                "`{module}`: lora_A {ash:?} and lora_B {bsh:?} are not [rank, in] and [out, rank]"
            )));
        }
        let rank = ash[0] as f64;
        // PEFT's scaling is lora_alpha / r (rsLoRA: / √r). Without metadata diffusers (0.42,
        // `get_peft_kwargs`) gives every module lora_alpha = its own rank: scale 1.
        let alpha = pattern("alpha_pattern", &module).or(lora_alpha).unwrap_or(rank);
        let scale = if rslora { alpha / rank.sqrt() } else { alpha / rank };
        out.insert(module, FileAdapter { a: a_data, b: b_data, scale });
    }
    if let Some(m) = b.keys().next() {
        return Err(err(format!("`{m}` has lora_B but no lora_A")));
    }
    Ok(out)
}

/// Adds the LoRA of a diffusers/PEFT file (FluxPipeline's `save_lora_weights`, or what
/// [`save_diffusers_lora`] writes) into the weights of `dit`, built from `cfg`, a FLUX.1-shaped
/// DiT: `W += scale · (B·A)` for every module the file names, wherever the DiT keeps it (a
/// part of a fused projection, the final adaLN's swapped halves). A module the DiT does not
/// have is an error naming it.
pub fn merge_diffusers_lora<B: Backend>(
    dit: DiT<B>,
    cfg: &DiTConfig,
    path: &Path,
) -> Result<(DiT<B>, MergeReport), ModelError> {
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let file = read_lora_file(path)?;
    let placements = diffusers_placements(cfg);
    let mut by_ours: HashMap<String, Vec<(&str, &Placement, &FileAdapter)>> = HashMap::new();
    let mut unknown = Vec::new();
    for (module, adapter) in &file {
        match placements.get(&format!("{module}.weight")) {
            Some(p) => by_ours.entry(p.ours.clone()).or_default().push((module.as_str(), p, adapter)),
            None => unknown.push(module.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(err(format!(
            "{} module(s) are not in this FLUX.1 transformer: {}",
            unknown.len(),
            crate::weights::preview(&unknown)
        )));
    }
    let ranks: BTreeSet<usize> = file.values().map(|f| f.a.shape[0]).collect();
    let report = MergeReport {
        modules: file.len(),
        ranks: (ranks.first().copied().unwrap_or(0), ranks.last().copied().unwrap_or(0)),
    };
    let mut mapper = AddDeltas { path: Vec::new(), deltas: by_ours, error: None };
    let dit = dit.map(&mut mapper);
    if let Some(e) = mapper.error {
        return Err(err(e));
    }
    if let Some(left) = mapper.deltas.keys().next() {
        return Err(err(format!("the DiT has no tensor `{left}` to merge into")));
    }
    Ok((dit, report))
}

/// Adds each file adapter's `scale · (B·A)ᵀ` into the columns of the DiT weight it belongs to.
struct AddDeltas<'a> {
    path: Vec<String>,
    deltas: HashMap<String, Vec<(&'a str, &'a Placement, &'a FileAdapter)>>,
    error: Option<String>,
}

impl<B: Backend> ModuleMapper<B> for AddDeltas<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(list) = self.deltas.remove(&self.path.join(".")) else { return param };
        if D != 2 {
            self.error.get_or_insert(format!("`{}` is not a weight matrix", self.path.join(".")));
            return param;
        }
        let (id, w, mapper) = param.consume();
        let (device, dtype, dims) = (w.device(), w.dtype(), w.dims());
        let [d_in, out] = [dims[0], dims[1]];
        let mut w2: Tensor<B, 2> = w.reshape([d_in, out]);
        for (module, p, f) in list {
            let (rank, a_in, rows) = (f.a.shape[0], f.a.shape[1], f.b.shape[0]);
            let expected = p.rows.unwrap_or(out);
            if a_in != d_in || rows != expected || p.offset + rows > out {
                self.error.get_or_insert(format!(
                    "`{module}`: lora_B [{rows}, {rank}] · lora_A [{rank}, {a_in}] does not fit the weight it adds to, \
                     [{expected}, {d_in}] (the DiT's `{}`)",
                    p.ours
                ));
                return Param::from_mapped_value(id, w2.reshape(dims), mapper);
            }
            let a = Tensor::<B, 2>::from_data(f.a.clone(), &device); // [rank, in]
            let b = Tensor::<B, 2>::from_data(f.b.clone(), &device); // [rows, rank]
                                                                     // Burn's [in, out] layout: (B·A)ᵀ = Aᵀ·Bᵀ, [in, rows].
            let mut d = a.transpose().matmul(b.transpose()) * f.scale;
            if p.swap_halves {
                let half = rows / 2;
                d = Tensor::cat(vec![d.clone().narrow(1, half, rows - half), d.narrow(1, 0, half)], 1);
            }
            let cols = p.offset..p.offset + rows;
            let cur = w2.clone().slice([0..d_in, cols.clone()]);
            w2 = w2.slice_assign([0..d_in, cols], cur + d.cast(dtype));
        }
        Param::from_mapped_value(id, w2.reshape(dims), mapper)
    }
}
