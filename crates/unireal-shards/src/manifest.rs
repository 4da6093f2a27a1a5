//! `manifest.json`: the finished shards and the fate of every input.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{io_err, Result, ShardError};

pub const MANIFEST_NAME: &str = "manifest.json";

/// A finished (closed and renamed) shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name relative to the output directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    /// Rows per task.
    pub tasks: BTreeMap<String, u64>,
    /// Rows per split.
    pub splits: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    /// Processed; `samples` rows came from it (possibly zero, with the reason).
    Ok,
    /// Readable but not used (no qualifying pair, too small, …).
    Skipped,
    /// Could not be read or processed.
    Failed,
}

/// What became of one input (a video file, an expert-set file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    pub status: InputStatus,
    /// Why it was skipped or failed, or notes on an ok input; empty when there is nothing to say.
    #[serde(default)]
    pub reason: String,
    /// Rows written from this input.
    #[serde(default)]
    pub samples: u64,
    /// Measurements (duration, frames, shots, pairs tried, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub stats: serde_json::Value,
}

/// Totals over the finished shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub bytes: u64,
    pub tasks: BTreeMap<String, u64>,
    pub splits: BTreeMap<String, u64>,
    pub inputs: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Names the program that wrote it.
    pub created_by: String,
    /// Fingerprint of the build configuration; a resume with another configuration is refused.
    pub fingerprint: String,
    pub shards: Vec<ShardEntry>,
    /// Derived from `shards` and `inputs` on every save, for people and other tools.
    pub totals: Totals,
    pub inputs: Vec<InputRecord>,
}

impl Manifest {
    pub fn new(created_by: &str, fingerprint: &str) -> Self {
        Manifest {
            format: "unireal-shards".into(),
            version: 1,
            created_by: created_by.into(),
            fingerprint: fingerprint.into(),
            shards: vec![],
            totals: Totals::default(),
            inputs: vec![],
        }
    }

    /// Reads `DIR/manifest.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| ShardError::Manifest { path: path.clone(), message: e.to_string() })?;
        if m.format != "unireal-shards" || m.version != 1 {
            return Err(ShardError::Manifest {
                path,
                message: format!("unsupported format {} version {}", m.format, m.version),
            });
        }
        Ok(Some(m))
    }

    /// Recomputes the totals.
    pub fn update_totals(&mut self) {
        let mut t = Totals::default();
        for s in &self.shards {
            t.rows += s.rows;
            t.bytes += s.bytes;
            for (k, v) in &s.tasks {
                *t.tasks.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &s.splits {
                *t.splits.entry(k.clone()).or_default() += v;
            }
        }
        for i in &self.inputs {
            let k = serde_json::to_value(i.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            *t.inputs.entry(k).or_default() += 1;
        }
        self.totals = t;
    }

    /// Writes `DIR/manifest.json` atomically (temporary name, then rename).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        self.update_totals();
        let path = dir.join(MANIFEST_NAME);
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| ShardError::Manifest { path: path.clone(), message: e.to_string() })?;
        unireal_core::write_atomic(&path, &text).map_err(io_err(&path))
    }
}
