//! The size-rolled, atomic, resumable dataset writer.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use unireal_core::Sample;

use crate::manifest::{InputRecord, InputStatus, Manifest, ShardEntry};
use crate::reader::read_sample_ids;
use crate::schema::{samples_to_batch, shard_schema};
use crate::{io_err, Result, ShardError};

/// How shards are written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A shard is closed once its file reaches this many bytes.
    pub target_shard_bytes: u64,
    /// Buffered image bytes that make one row group (one write to the file).
    pub row_group_bytes: usize,
    /// zstd level (1–22).
    pub zstd_level: i32,
    /// Fingerprint of the build configuration (see [`Manifest::fingerprint`]).
    pub fingerprint: String,
    /// Program name and version for the manifest.
    pub created_by: String,
    /// How often the manifest is rewritten when only inputs without rows were added.
    pub manifest_interval: Duration,
    /// Inputs recorded as failed for a permanent reason are tried again too (inputs with
    /// transient trouble always are).
    pub retry_failed: bool,
    /// Skipped inputs with one of these reasons are looked at again by every run (cheap
    /// verdicts that depend on settings outside the fingerprint, e.g. the build's
    /// `not a video extension`).
    pub redo_skipped: Vec<String>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            target_shard_bytes: 256 << 20,
            row_group_bytes: 32 << 20,
            zstd_level: 3,
            fingerprint: String::new(),
            created_by: format!("unireal-shards {}", env!("CARGO_PKG_VERSION")),
            retry_failed: false,
            redo_skipped: vec![],
            manifest_interval: Duration::from_secs(10),
        }
    }
}

struct OpenShard {
    name: String,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    tasks: BTreeMap<String, u64>,
    splits: BTreeMap<String, u64>,
    /// Inputs whose last rows are in this shard: committed with it.
    inputs: Vec<InputRecord>,
}

/// Writes samples into size-rolled Parquet shards under one directory and keeps its manifest.
///
/// Resume: opening a directory that has a manifest keeps its finished shards, deletes
/// temporary files and shards the manifest does not list (a kill between rename and commit),
/// and loads the sample ids already written so that none is written twice.
pub struct DatasetWriter {
    dir: PathBuf,
    opts: WriterOptions,
    manifest: Manifest,
    done_inputs: HashSet<String>,
    ids: HashSet<String>,
    buffer: Vec<Sample>,
    buffer_bytes: usize,
    open: Option<OpenShard>,
    next_seq: usize,
    dirty: bool,
    last_save: Instant,
    /// Inputs recorded earlier that this run tries again: their new record replaces the old.
    retrying: HashSet<String>,
    /// How many of them had trouble ([`InputRecord::retried`]), for the run's message.
    retried: usize,
    /// One writer per directory, for as long as this one lives.
    _lock: unireal_core::DirLock,
}

fn is_shard_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

impl DatasetWriter {
    /// Opens (or creates) `dir`. With `force`, everything this writer owns there (manifest,
    /// shards, temporary files) is removed first.
    pub fn open(dir: &Path, opts: WriterOptions, force: bool) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Before anything is removed: a second writer must not sweep the first one's files.
        let lock = unireal_core::DirLock::acquire(dir, &opts.created_by).map_err(|e| match e {
            unireal_core::LockError::Held { dir, holder } => ShardError::Busy { path: dir, holder },
            unireal_core::LockError::Io { path, source } => ShardError::Io { path, source },
        })?;
        if !dir.join(crate::MANIFEST_NAME).exists() {
            if let Some((name, _)) = crate::partition_dirs(dir)?.first() {
                return Err(ShardError::Manifest {
                    path: dir.join(name),
                    message: "this directory holds a partitioned build: write each partition into its own \
                              partition-I-of-N directory (unireal-data build --shard-index I --num-shards N), \
                              or choose another output"
                        .into(),
                });
            }
        }
        let existing = if force { None } else { Manifest::load(dir)? };
        if let Some(m) = &existing {
            if !opts.fingerprint.is_empty() && m.fingerprint != opts.fingerprint {
                return Err(ShardError::ConfigChanged {
                    path: dir.join(crate::MANIFEST_NAME),
                    found: m.fingerprint.clone(),
                    expected: opts.fingerprint.clone(),
                });
            }
        }
        let manifest = existing.unwrap_or_else(|| Manifest::new(&opts.created_by, &opts.fingerprint));
        let listed: HashSet<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = is_temp_name(&name)
                || (is_shard_name(&name) && !listed.contains(name.as_str()))
                || (force && name == crate::MANIFEST_NAME);
            if stale {
                fs::remove_file(entry.path()).map_err(io_err(entry.path()))?;
            }
        }
        let mut ids = HashSet::new();
        for s in &manifest.shards {
            let path = dir.join(&s.file);
            let shard_ids = read_sample_ids(&path)?;
            if shard_ids.len() as u64 != s.rows {
                return Err(ShardError::Manifest {
                    path: dir.join(crate::MANIFEST_NAME),
                    message: format!("{} has {} rows, the manifest says {}", s.file, shard_ids.len(), s.rows),
                });
            }
            ids.extend(shard_ids);
        }
        let next_seq = manifest
            .shards
            .iter()
            .filter_map(|s| s.file.strip_prefix("part-")?.strip_suffix(".parquet")?.parse::<usize>().ok())
            .map(|n| n + 1)
            .max()
            .unwrap_or(0);
        let redo = |i: &InputRecord| i.status == InputStatus::Skipped && opts.redo_skipped.contains(&i.reason);
        let (again, done): (Vec<&InputRecord>, Vec<&InputRecord>) =
            manifest.inputs.iter().partition(|i| i.retried(opts.retry_failed) || redo(i));
        let done_inputs = done.iter().map(|i| i.path.clone()).collect();
        let retried = again.iter().filter(|i| !redo(i)).count();
        let retrying = again.iter().map(|i| i.path.clone()).collect();
        let mut w = DatasetWriter {
            dir: dir.to_path_buf(),
            opts,
            manifest,
            done_inputs,
            ids,
            buffer: vec![],
            buffer_bytes: 0,
            open: None,
            next_seq,
            dirty: false,
            last_save: Instant::now(),
            retrying,
            retried,
            _lock: lock,
        };
        w.manifest.save(&w.dir)?;
        Ok(w)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest as last committed plus what is recorded since.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether an input is already recorded as finished (ok, skipped or failed), and not to be
    /// tried again ([`InputRecord::retried`]).
    pub fn is_done(&self, input: &str) -> bool {
        self.done_inputs.contains(input)
    }

    /// Whether a sample id is already written (or buffered).
    pub fn contains(&self, sample_id: &str) -> bool {
        self.ids.contains(sample_id)
    }

    /// The temporary file being written, if any (for cleanup on a signal).
    pub fn temp_path(&self) -> Option<PathBuf> {
        self.open.as_ref().map(|o| o.tmp.clone())
    }

    /// Adds one input's samples and its record. Samples whose id is already written are
    /// dropped; the record's `samples` is set to the number kept. The record is committed
    /// to the manifest once every kept sample is in a finished shard. Returns rows kept.
    pub fn add(&mut self, mut record: InputRecord, samples: Vec<Sample>) -> Result<u64> {
        let mut kept = 0u64;
        for s in samples {
            if self.ids.insert(s.sample_id.clone()) {
                self.buffer_bytes += s.images.iter().map(|i| i.bytes.len()).sum::<usize>() + 256;
                self.buffer.push(s);
                kept += 1;
            }
        }
        record.samples = kept;
        self.done_inputs.insert(record.path.clone());
        if kept == 0 {
            self.commit_input(record);
            self.dirty = true;
        } else {
            if self.buffer_bytes >= self.opts.row_group_bytes {
                self.flush_buffer()?;
            }
            // The record rides with the shard that will hold its last row: the open one, or
            // the next one if the buffer has not been written yet.
            self.ensure_open()?;
            self.open.as_mut().expect("opened").inputs.push(record);
            if self.open.as_ref().is_some_and(|o| o.writer.bytes_written() as u64 >= self.opts.target_shard_bytes) {
                self.close_shard()?;
            }
        }
        if self.dirty && self.last_save.elapsed() >= self.opts.manifest_interval {
            self.save_manifest()?;
        }
        Ok(kept)
    }

    fn ensure_open(&mut self) -> Result<()> {
        if self.open.is_some() {
            return Ok(());
        }
        let name = format!("part-{:05}.parquet", self.next_seq);
        self.next_seq += 1;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let level = ZstdLevel::try_new(self.opts.zstd_level)
            .map_err(|source| ShardError::Parquet { path: tmp.clone(), source })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_created_by(self.opts.created_by.clone())
            .build();
        let writer = ArrowWriter::try_new(file, shard_schema(), Some(props))
            .map_err(|source| ShardError::Parquet { path: tmp.clone(), source })?;
        self.open = Some(OpenShard {
            name,
            tmp,
            writer,
            rows: 0,
            tasks: BTreeMap::new(),
            splits: BTreeMap::new(),
            inputs: vec![],
        });
        Ok(())
    }

    /// Writes buffered samples as one row group of the open shard.
    fn flush_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.ensure_open()?;
        let open = self.open.as_mut().expect("opened");
        let batch =
            samples_to_batch(&self.buffer).map_err(|source| ShardError::Arrow { path: open.tmp.clone(), source })?;
        open.writer.write(&batch).map_err(|source| ShardError::Parquet { path: open.tmp.clone(), source })?;
        open.writer.flush().map_err(|source| ShardError::Parquet { path: open.tmp.clone(), source })?;
        for s in self.buffer.drain(..) {
            open.rows += 1;
            *open.tasks.entry(s.task.as_str().to_string()).or_default() += 1;
            *open.splits.entry(s.split.as_str().to_string()).or_default() += 1;
        }
        self.buffer_bytes = 0;
        Ok(())
    }

    /// Closes the open shard, renames it into place and commits it to the manifest.
    fn close_shard(&mut self) -> Result<()> {
        self.flush_buffer()?;
        let Some(open) = self.open.take() else { return Ok(()) };
        let OpenShard { name, tmp, writer, rows, tasks, splits, inputs } = open;
        let file = writer.into_inner().map_err(|source| ShardError::Parquet { path: tmp.clone(), source })?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        if rows == 0 {
            fs::remove_file(&tmp).map_err(io_err(&tmp))?;
        } else {
            let dest = self.dir.join(&name);
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            let bytes = fs::metadata(&dest).map_err(io_err(&dest))?.len();
            self.manifest.shards.push(ShardEntry { file: name, rows, bytes, tasks, splits });
        }
        for r in inputs {
            self.commit_input(r);
        }
        self.save_manifest()
    }

    /// Adds a record to the manifest; a retried input's earlier record is replaced, its
    /// samples (still in their shards) counted in the new one.
    fn commit_input(&mut self, mut record: InputRecord) {
        if self.retrying.remove(&record.path) {
            if let Some(pos) = self.manifest.inputs.iter().position(|i| i.path == record.path) {
                record.samples += self.manifest.inputs.remove(pos).samples;
            }
        }
        self.manifest.inputs.push(record);
    }

    /// How many inputs recorded with trouble this run tries again.
    pub fn retrying(&self) -> usize {
        self.retried
    }

    fn save_manifest(&mut self) -> Result<()> {
        self.manifest.save(&self.dir)?;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }

    /// Closes the last shard and writes the final manifest.
    pub fn finish(mut self) -> Result<Manifest> {
        if !self.buffer.is_empty() || self.open.is_some() {
            self.close_shard()?;
        }
        self.save_manifest()?;
        Ok(self.manifest.clone())
    }

    /// Stops without committing what is open: its temporary file is removed, and the inputs
    /// it held will be processed again by the next run.
    pub fn abort(mut self) -> Result<()> {
        if let Some(open) = self.open.take() {
            drop(open.writer);
            let _ = fs::remove_file(&open.tmp);
        }
        self.save_manifest()
    }
}
