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

/// What kind of trouble an input met, which decides whether a later run tries it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The input is at fault (corrupt, unsupported, no video stream, a bad row), or the
    /// pipeline panicked on it: the same run would fail the same way. Tried again only with
    /// `--retry-failed`.
    Permanent,
    /// Something outside the input failed (the captioner or segmenter unreachable, timed out,
    /// rate-limited or crashed): the next run tries the input again, keeping the samples it
    /// already gave.
    Transient,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Permanent => "permanent",
            FailureKind::Transient => "transient",
        }
    }
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
    /// Set when something went wrong: on a failed input, whether a later run retries it; on an
    /// ok one, `transient` when part of it was lost to an outage (pairs without a caption) and
    /// the next run tries it again. A failed record without it (older manifests) is permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
}

impl InputRecord {
    /// A record without samples, stats or kind.
    pub fn new(path: impl Into<String>, status: InputStatus, reason: impl Into<String>) -> Self {
        InputRecord {
            path: path.into(),
            status,
            reason: reason.into(),
            samples: 0,
            stats: serde_json::Value::Null,
            kind: None,
        }
    }

    /// Whether a run tries this input again: transient trouble always, a permanent failure
    /// with `retry_failed`.
    pub fn retried(&self, retry_failed: bool) -> bool {
        match (self.status, self.kind) {
            (_, Some(FailureKind::Transient)) => true,
            (InputStatus::Failed, _) => retry_failed,
            _ => false,
        }
    }
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
        // Shards are files of this directory: a damaged or hand-edited name must not lead the
        // reader (or a resumed writer's sweep) elsewhere.
        for s in &m.shards {
            if !is_file_name(&s.file) {
                return Err(ShardError::Manifest {
                    path,
                    message: format!("shard {:?} is not a file name in this directory", s.file),
                });
            }
        }
        Ok(Some(m))
    }

    /// Recomputes the totals.
    pub fn update_totals(&mut self) {
        let mut t = Totals::default();
        // Saturating: a damaged manifest's counts must not overflow (`verify` reports them).
        let add = |to: &mut u64, v: u64| *to = to.saturating_add(v);
        for s in &self.shards {
            add(&mut t.rows, s.rows);
            add(&mut t.bytes, s.bytes);
            for (k, v) in &s.tasks {
                add(t.tasks.entry(k.clone()).or_default(), *v);
            }
            for (k, v) in &s.splits {
                add(t.splits.entry(k.clone()).or_default(), *v);
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

    /// Reads a dataset directory: `DIR/manifest.json`, or, for a partitioned build (data
    /// build over a Slurm array), the union of `DIR/partition-I-of-N/manifest.json` with shard
    /// paths relative to `DIR`. `Ok(None)` when there is neither. Partitions of different
    /// builds (fingerprints) in one directory are an error.
    pub fn load_dataset(dir: &Path) -> Result<Option<Manifest>> {
        if let Some(m) = Manifest::load(dir)? {
            return Ok(Some(m));
        }
        let parts = partition_dirs(dir)?;
        let mut union: Option<Manifest> = None;
        for (name, pdir) in parts {
            let Some(m) = Manifest::load(&pdir)? else { continue };
            let u = union.get_or_insert_with(|| Manifest::new(&m.created_by, &m.fingerprint));
            if u.fingerprint != m.fingerprint {
                return Err(ShardError::Manifest {
                    path: pdir.join(MANIFEST_NAME),
                    message: format!(
                        "partition {name} was built with another configuration (fingerprint {} vs {})",
                        m.fingerprint, u.fingerprint
                    ),
                });
            }
            u.shards.extend(m.shards.into_iter().map(|mut s| {
                s.file = format!("{name}/{}", s.file);
                s
            }));
            u.inputs.extend(m.inputs);
        }
        if let Some(u) = union.as_mut() {
            u.update_totals();
        }
        Ok(union)
    }
}

/// The name of partition `index` of `count` under a build's output.
/// Whether a manifest's `name` is a plain file name (one component, no `..`, not absolute):
/// damaged or hand-edited names must not lead a reader or a sweep out of the directory.
pub fn is_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None))
}

pub fn partition_name(index: usize, count: usize) -> String {
    format!("partition-{index:04}-of-{count:04}")
}

/// `(name, path)` of the partition directories of a partitioned build, sorted by name.
pub fn partition_dirs(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out: Vec<(String, std::path::PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n.starts_with("partition-") && n.contains("-of-"))
        .collect();
    out.sort();
    Ok(out)
}
