//! The driver of a resumable run, shared by the video build (unireal-data) and the importers
//! (unireal-import): work items (videos, import units) are processed on a thread pool and each
//! result is handed, with its input record, to the shard writer on the calling thread as it
//! arrives. Items already in the manifest are skipped (resume); a stop flag (Ctrl-C) ends the
//! run cleanly, discarding the open shard; progress bars and one status line per input that
//! has a reason.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use unireal_core::Sample;

use crate::{DatasetWriter, FailureKind, InputRecord, InputStatus, Manifest, ShardError, WriterOptions};

/// A fingerprint of what decides the content of the samples (a config as JSON): a resume
/// with another fingerprint is refused ([`ShardError::ConfigChanged`]).
pub fn fingerprint(what: &serde_json::Value) -> String {
    blake3::hash(what.to_string().as_bytes()).to_hex()[..16].to_string()
}

/// A stable 64-bit number from a string (the first 8 bytes of its BLAKE3 hash).
pub fn stable_u64(s: &str) -> u64 {
    let h = blake3::hash(s.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A stable number in [0, 1) from a string (splits and kept fractions by hash).
pub fn unit_hash(s: &str) -> f64 {
    stable_u64(s) as f64 / (u64::MAX as f64 + 1.0)
}

/// Writer options for shards of `target_mb` (row groups of a quarter of that).
pub fn writer_options(target_mb: f64, zstd_level: i32, fingerprint: String, created_by: String) -> WriterOptions {
    WriterOptions {
        target_shard_bytes: (target_mb * 1024.0 * 1024.0) as u64,
        row_group_bytes: ((target_mb * 1024.0 * 1024.0 / 4.0) as usize).clamp(1 << 16, 64 << 20),
        zstd_level,
        fingerprint,
        created_by,
        ..Default::default()
    }
}

impl InputRecord {
    /// The line a run prints for this record, when it has a reason: `warning: PATH: REASON`
    /// (ok, with something to say), `skipped PATH: REASON`, `failed PATH: REASON`.
    pub fn status_line(&self) -> Option<String> {
        if self.reason.is_empty() {
            return None;
        }
        let word = match self.status {
            InputStatus::Ok => "warning:",
            InputStatus::Skipped => "skipped",
            InputStatus::Failed => "failed",
        };
        match (self.status, self.kind) {
            (InputStatus::Failed, Some(k)) => Some(format!("{word} ({}) {}: {}", k.as_str(), self.path, self.reason)),
            _ => Some(format!("{word} {}: {}", self.path, self.reason)),
        }
    }
}

/// Where and how a run writes.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The shard directory.
    pub out: &'a Path,
    pub writer: WriterOptions,
    /// Start over: remove the previous manifest and shards first.
    pub force: bool,
    /// Items processed at once (0: one per core), on threads named `thread_name-N`.
    pub workers: usize,
    pub thread_name: &'static str,
    /// What an item is called in messages (`input`, `unit`).
    pub noun: &'static str,
    /// Items recorded as failed for a permanent reason are tried again too (`--retry-failed`);
    /// items with transient trouble always are.
    pub retry_failed: bool,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Driven {
    pub manifest: Manifest,
    /// Items processed in this run (the others were done by an earlier one).
    pub processed: usize,
    pub already_done: usize,
    pub new_samples: u64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The thread pool could not start (the message names `workers`).
    #[error("{0}")]
    Workers(String),
    #[error(transparent)]
    Shards(#[from] ShardError),
    /// The stop flag was set: finished shards and items are kept in the manifest.
    #[error("interrupted")]
    Interrupted,
}

impl DriveError {
    /// The caller's error for each case: `workers` takes the message, `shards` the writer's
    /// error.
    pub fn into_error<E>(
        self,
        workers: impl FnOnce(String) -> E,
        shards: impl FnOnce(ShardError) -> E,
        interrupted: E,
    ) -> E {
        match self {
            DriveError::Workers(m) => workers(m),
            DriveError::Shards(e) => shards(e),
            DriveError::Interrupted => interrupted,
        }
    }
}

/// The progress bars of a run: items (`[=====>   ] done/todo`), any counters the caller adds,
/// and samples written. Hidden when quiet (status lines are then not printed either).
pub struct Bars {
    multi: MultiProgress,
    items: ProgressBar,
    samples: ProgressBar,
    counters: Vec<ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Bars {
    /// `prefix` names the items (`videos`, the import format).
    pub fn new(quiet: bool, prefix: &str) -> Bars {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let multi = MultiProgress::with_draw_target(target);
        let items =
            multi.add(ProgressBar::new(0).with_style(
                style("{prefix:>8} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}").progress_chars("=> "),
            ));
        items.set_prefix(prefix.to_string());
        let samples = multi.add(ProgressBar::no_length().with_style(style("{prefix:>8} {pos}")));
        samples.set_prefix("samples");
        Bars { multi, items, samples, counters: vec![] }
    }

    /// A counter with its rate (`frames 1234 (250/s)`), shown above the samples; the caller
    /// increments it (from any thread).
    pub fn counter(&mut self, prefix: &'static str) -> ProgressBar {
        let bar = self
            .multi
            .insert_before(&self.samples, ProgressBar::no_length().with_style(style("{prefix:>8} {pos} ({per_sec})")));
        bar.set_prefix(prefix);
        self.counters.push(bar.clone());
        bar
    }

    /// Prints a line above the bars (nothing when quiet).
    pub fn println(&self, line: impl AsRef<str>) {
        let _ = self.multi.println(line);
    }

    fn finish(&self) {
        for b in [&self.items].into_iter().chain(&self.counters).chain([&self.samples]) {
            b.finish_and_clear();
        }
    }
}

/// A pool of `workers` threads named `name-N` (0: one per core), or why it cannot start.
pub fn thread_pool(workers: usize, name: &'static str) -> Result<rayon::ThreadPool, String> {
    let n = if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| format!("workers: cannot start {n} threads: {e}"))
}

/// Runs a resumable run: opens the writer on `spec.out`, skips the items whose `key` the
/// manifest lists as done, runs `work` over the others on a pool of `spec.workers` and writes
/// what `rows` makes of each result (its record and samples) in completion order, printing
/// the record's [status line](InputRecord::status_line).
///
/// `stop` is checked before each item starts; once it is set, results still coming are not
/// written, the open shard is discarded (its items are redone on the next run) and
/// [`DriveError::Interrupted`] returned. The first writer error stops the run the same way
/// and is returned. A panic in `work` is caught: the item is recorded as failed with the
/// panic's message, and the run goes on.
pub fn drive<I: Sync, O: Send>(
    spec: &RunSpec<'_>,
    items: &[I],
    key: impl Fn(&I) -> &str + Sync,
    stop: &AtomicBool,
    bars: &Bars,
    work: impl Fn(&I) -> O + Sync,
    mut rows: impl FnMut(O) -> (InputRecord, Vec<Sample>),
) -> Result<Driven, DriveError> {
    let opts = WriterOptions { retry_failed: spec.retry_failed, ..spec.writer.clone() };
    let writer = DatasetWriter::open(spec.out, opts, spec.force)?;
    let todo: Vec<&I> = items.iter().filter(|i| !writer.is_done(key(i))).collect();
    let already_done = items.len() - todo.len();
    if already_done > 0 {
        eprintln!(
            "resuming: {already_done} of {} {}(s) already done in {}",
            items.len(),
            spec.noun,
            spec.out.display()
        );
    }
    if writer.retrying() > 0 {
        eprintln!(
            "retrying {} {}(s) recorded with {} trouble",
            writer.retrying(),
            spec.noun,
            if spec.retry_failed { "any" } else { "transient" }
        );
    }
    bars.items.set_length(todo.len() as u64);
    let pool = thread_pool(spec.workers, spec.thread_name).map_err(DriveError::Workers)?;
    let mut new_samples = 0u64;
    let ended = run_to_writer(
        &todo,
        pool,
        stop,
        writer,
        // A panic in one item's work (a bug, or a model's) fails that item, not the run.
        |item| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)))
                .map_err(|payload| (key(item).to_string(), panic_message(payload.as_ref())))
        },
        |_| bars.items.inc(1),
        |writer, out| {
            let (record, samples) = match out {
                Ok(out) => rows(out),
                Err((path, message)) => (panicked(path, &message), vec![]),
            };
            if let Some(line) = record.status_line() {
                bars.println(line);
            }
            let n = writer.add(record, samples)?;
            new_samples += n;
            bars.samples.inc(n);
            Ok(())
        },
    );
    bars.finish();
    match ended? {
        Some(manifest) => Ok(Driven { manifest, processed: todo.len(), already_done, new_samples }),
        None => Err(DriveError::Interrupted),
    }
}

/// What a panic was raised with (`panic!`'s message), or a stand-in when it was not text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
}

/// The record of an item whose work panicked: failed, with the panic's message.
fn panicked(path: String, message: &str) -> InputRecord {
    let reason = format!("panicked (a bug in the pipeline or its model; please report it with this input): {message}");
    InputRecord { kind: Some(FailureKind::Permanent), ..InputRecord::new(path, InputStatus::Failed, reason) }
}

/// Runs `work` over `items` on the pool and hands every result to `sink` on this thread, in
/// completion order, with the writer. Once `stop` is set no new item starts, and the results
/// still coming are only `seen` (for progress), not written. The first writer error sets
/// `stop`; the writer is then aborted (the open shard is discarded) and the error returned.
/// An interrupted run aborts the writer the same way and gives `None`.
fn run_to_writer<I: Sync, O: Send>(
    items: &[I],
    pool: rayon::ThreadPool,
    stop: &AtomicBool,
    mut writer: DatasetWriter,
    work: impl Fn(&I) -> O + Sync,
    mut seen: impl FnMut(&O),
    mut sink: impl FnMut(&mut DatasetWriter, O) -> Result<(), ShardError>,
) -> Result<Option<Manifest>, ShardError> {
    let (tx, rx) = crossbeam_channel::bounded::<O>(pool.current_num_threads() * 2);
    let mut write_error = None;
    std::thread::scope(|scope| {
        let work = &work;
        scope.spawn(move || {
            pool.install(|| {
                items.par_iter().for_each_with(tx, |tx, item| {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = tx.send(work(item));
                });
            });
        });
        for out in rx.iter() {
            seen(&out);
            if stop.load(Ordering::Relaxed) || write_error.is_some() {
                continue; // drain so the workers can finish
            }
            if let Err(e) = sink(&mut writer, out) {
                write_error = Some(e);
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    if let Some(e) = write_error {
        let _ = writer.abort();
        return Err(e);
    }
    if stop.load(Ordering::Relaxed) {
        writer.abort()?;
        return Ok(None);
    }
    Ok(Some(writer.finish()?))
}
