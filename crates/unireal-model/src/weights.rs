//! Loading and saving module weights as safetensors through burn-store, with Hugging Face /
//! diffusers names mapped by regex and PyTorch's layout (`Linear` weights `[out, in]`,
//! norm `weight`/`bias`) adapted.

use std::path::Path;

use burn::prelude::*;
use burn_store::{
    ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
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
}

/// Loads `path` into `module`. `remap` rules (regex, replacement) rename file keys to module
/// paths, in order. Shape mismatches are errors naming the tensor; missing tensors are errors
/// when `strict`; both lists are in the report.
pub fn load_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remap: &[(&str, &str)],
    options: LoadOptions,
) -> Result<LoadReport, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Weights { path: path.display().to_string(), message: "no such file".into() });
    }
    let remapper = KeyRemapper::from_patterns(remap.to_vec()).map_err(|e| ModelError::Weights {
        path: path.display().to_string(),
        message: format!("bad remap rule: {e}"),
    })?;
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter)
        .validate(false)
        .allow_partial(true);
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
    let mut missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    missing.sort();
    // burn-store reports a PyTorch norm's `weight`/`bias` as unused even when it filled the
    // module's `gamma`/`beta` from it: only keys that filled nothing are unused.
    let applied: std::collections::HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    let norm_alias = |k: &str| {
        k.strip_suffix(".weight")
            .map(|p| format!("{p}.gamma"))
            .or_else(|| k.strip_suffix(".bias").map(|p| format!("{p}.beta")))
    };
    let mut unused: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !norm_alias(k).is_some_and(|a| applied.contains(a.as_str())))
        .cloned()
        .collect();
    unused.sort();
    if options.strict && !missing.is_empty() {
        return Err(ModelError::Weights {
            path: path.display().to_string(),
            message: format!("{} tensor(s) missing: {}", missing.len(), preview(&missing)),
        });
    }
    Ok(LoadReport { loaded: result.applied.len(), missing, unused })
}

fn preview(names: &[String]) -> String {
    let mut s = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        s.push_str(&format!(", … ({} more)", names.len() - 8));
    }
    s
}

/// Saves `module` to `path` in PyTorch's layout (so `safetensors.torch.load_file` and
/// `load_state_dict` take it), writing a temporary file and renaming it.
pub fn save_safetensors<B: Backend, M: ModuleSnapshot<B>>(module: &M, path: &Path) -> Result<(), ModelError> {
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
    module.save_into(&mut store).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("rename {}: {e}", tmp.display())))
}
