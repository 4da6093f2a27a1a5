//! Loading and saving module weights as safetensors through burn-store, with Hugging Face /
//! diffusers names mapped by regex and PyTorch's layout (`Linear` weights `[out, in]`,
//! norm `weight`/`bias`) adapted. A checkpoint is one `*.safetensors` file or a sharded set
//! described by `*.safetensors.index.json` (what `save_pretrained` writes past its
//! `max_shard_size`); f16, bf16 and f64 tensors are converted to f32 as they load.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore, TensorSnapshot,
};

use crate::ModelError;

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors of the module filled from the file.
    pub loaded: usize,
    /// Module tensors the file lacks (after remapping).
    pub missing: Vec<String>,
    /// File tensors no module tensor asked for (after remapping).
    pub unused: Vec<String>,
}

/// How to read a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Missing tensors are an error (unused ones never are; they are reported).
    pub strict: bool,
    /// Only the module tensors whose path this accepts (with their container type) are
    /// loaded and can be missing, e.g. [`crate::lora::is_adapter_tensor`].
    pub only: Option<fn(&str, &str) -> bool>,
}

/// The weights' file stem of a transformers model directory (`model.safetensors`).
pub const TRANSFORMERS_WEIGHTS: &str = "model";
/// The weights' file stem of a diffusers model directory (`diffusion_pytorch_model.safetensors`).
pub const DIFFUSERS_WEIGHTS: &str = "diffusion_pytorch_model";

/// The weights file of a model directory: `DIR/STEM.safetensors`, or else the sharded set's
/// `DIR/STEM.safetensors.index.json` (`model` for transformers, `diffusion_pytorch_model` for
/// diffusers). The error names both paths it looked for.
pub fn weights_in(dir: &Path, stem: &str) -> Result<PathBuf, ModelError> {
    let single = dir.join(format!("{stem}.safetensors"));
    if single.is_file() {
        return Ok(single);
    }
    let index = dir.join(format!("{stem}.safetensors.index.json"));
    if index.is_file() {
        return Ok(index);
    }
    Err(ModelError::Weights {
        path: dir.display().to_string(),
        message: format!("neither {stem}.safetensors nor {stem}.safetensors.index.json is there"),
    })
}

/// Whether `path` names a sharded set's index rather than a safetensors file.
fn is_index(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".safetensors.index.json"))
}

/// The files holding the tensors of `path` (a `*.safetensors` file: itself; an index: its
/// shards, in name order, each checked to exist). Hashing and sizing a model read these.
pub fn weight_files(path: &Path) -> Result<Vec<PathBuf>, ModelError> {
    if !is_index(path) {
        if !path.is_file() {
            return Err(ModelError::Weights { path: path.display().to_string(), message: "no such file".into() });
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_str(&text).map_err(|e| err(format!("not a safetensors index: {e}")))?;
    if index.weight_map.is_empty() {
        return Err(err("the index's `weight_map` is empty".into()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let shards: BTreeSet<&String> = index.weight_map.values().collect();
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        if Path::new(shard).components().count() != 1 {
            return Err(err(format!("shard `{shard}` is not a file name beside the index")));
        }
        let file = dir.join(shard);
        if !file.is_file() {
            return Err(err(format!(
                "shard `{shard}` is listed in `weight_map` but {} does not exist",
                file.display()
            )));
        }
        files.push(file);
    }
    Ok(files)
}

/// Converts every f16, bf16 or f64 tensor of a file to f32 as it is read (modules hold f32
/// master weights; mixed precision casts a copy).
#[derive(Debug, Clone, Default)]
pub(crate) struct FloatToF32;

impl ModuleAdapter for FloatToF32 {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if !matches!(snapshot.dtype, DType::F16 | DType::BF16 | DType::F64) {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(DType::F32))),
            DType::F32,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Loads `path` into `module`: a `*.safetensors` file, or a `*.safetensors.index.json` whose
/// shards are read one after another. `remap` rules (regex, replacement) rename file keys to
/// module paths, in order. Half-precision tensors become f32. Shape mismatches are errors
/// naming the tensor and the file; missing tensors (in no shard) are errors when `strict`;
/// both lists are in the report.
pub fn load_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remap: &[(&str, &str)],
    options: LoadOptions,
) -> Result<LoadReport, ModelError> {
    let files = weight_files(path)?;
    let remapper = KeyRemapper::from_patterns(remap.to_vec()).map_err(|e| ModelError::Weights {
        path: path.display().to_string(),
        message: format!("bad remap rule: {e}"),
    })?;
    let mut applied: BTreeSet<String> = BTreeSet::new();
    let mut missing: Option<BTreeSet<String>> = None;
    let mut unused: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        let (a, mut m, u) = load_one(module, file, remapper.clone(), options.only)?;
        if let Some(keep) = options.only {
            m.retain(|p| keep(p, ""));
        }
        applied.extend(a);
        // Missing overall: missing from every shard.
        missing = Some(match missing {
            None => m,
            Some(prev) => prev.intersection(&m).cloned().collect(),
        });
        unused.extend(u);
    }
    let missing: Vec<String> = missing.unwrap_or_default().into_iter().collect();
    let unused: Vec<String> = unused.into_iter().collect();
    if options.strict && !missing.is_empty() {
        return Err(ModelError::Weights {
            path: path.display().to_string(),
            message: format!("{} tensor(s) missing: {}", missing.len(), preview(&missing)),
        });
    }
    Ok(LoadReport { loaded: applied.len(), missing, unused })
}

type Names = BTreeSet<String>;

/// One safetensors file into `module`: the module paths it filled, those it lacks, and its
/// keys that filled nothing.
fn load_one<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remapper: KeyRemapper,
    only: Option<fn(&str, &str) -> bool>,
) -> Result<(Names, Names, Names), ModelError> {
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatToF32))
        .validate(false)
        .allow_partial(true);
    if let Some(keep) = only {
        store = store.with_predicate(keep);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::Weights { path: path.display().to_string(), message: e.to_string() })?;
    if let Some(e) = result.errors.first() {
        let message = match e {
            ApplyError::ShapeMismatch { path: t, expected, found } => {
                format!(
                    "tensor `{t}` has shape {:?} in the file, the model expects {:?}",
                    found.as_slice(),
                    expected.as_slice()
                )
            }
            other => other.to_string(),
        };
        return Err(ModelError::Weights { path: path.display().to_string(), message });
    }
    let missing = result.missing.iter().map(|(p, _)| p.clone()).collect();
    // burn-store reports a PyTorch norm's `weight`/`bias` as unused even when it filled the
    // module's `gamma`/`beta` from it: only keys that filled nothing are unused.
    let applied: HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    let norm_alias = |k: &str| {
        k.strip_suffix(".weight")
            .map(|p| format!("{p}.gamma"))
            .or_else(|| k.strip_suffix(".bias").map(|p| format!("{p}.beta")))
    };
    let unused = result
        .unused
        .iter()
        .filter(|k| !norm_alias(k).is_some_and(|a| applied.contains(a.as_str())))
        .cloned()
        .collect();
    Ok((result.applied.iter().cloned().collect(), missing, unused))
}

/// The first names of a list, and how many more.
pub(crate) fn preview(names: &[String]) -> String {
    let mut s = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        s.push_str(&format!(", … ({} more)", names.len() - 8));
    }
    s
}

/// Saves `module` to `path` in PyTorch's layout (so `safetensors.torch.load_file` and
/// `load_state_dict` take it), writing a temporary file and renaming it.
pub fn save_safetensors<B: Backend, M: ModuleSnapshot<B>>(module: &M, path: &Path) -> Result<(), ModelError> {
    save_safetensors_only(module, path, None)
}

/// [`save_safetensors`] of the tensors whose module path `only` accepts (with their container
/// type), e.g. [`crate::lora::is_adapter_tensor`].
pub fn save_safetensors_only<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    path: &Path,
    only: Option<fn(&str, &str) -> bool>,
) -> Result<(), ModelError> {
    let err = |message: String| ModelError::Weights { path: path.display().to_string(), message };
    let name = path.file_name().ok_or_else(|| err("not a file path".into()))?.to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // One metadata entry, as transformers/diffusers write it: the file is byte-for-byte
    // reproducible (burn-store's default entries come out of a HashMap in varying order).
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_to_adapter(BurnToPyTorchAdapter)
        .clear_metadata()
        .metadata("format", "pt")
        .overwrite(true);
    if let Some(keep) = only {
        store = store.with_predicate(keep);
    }
    module.save_into(&mut store).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("rename {}: {e}", tmp.display())))
}
