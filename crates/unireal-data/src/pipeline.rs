//! What the video build and the importers share: work items processed on a thread pool, each
//! result handed to the shard writer on the calling thread as it arrives, stopping cleanly.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use unireal_shards::{DatasetWriter, Manifest, ShardError, WriterOptions};

/// A pool of `workers` threads named `name-N` (0: one per core), or why it cannot start.
pub(crate) fn thread_pool(workers: usize, name: &'static str) -> Result<rayon::ThreadPool, String> {
    let n = if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { workers };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| format!("workers: cannot start {n} threads: {e}"))
}

/// Writer options for shards of `target_mb` (row groups of a quarter of that).
pub(crate) fn writer_options(
    target_mb: f64,
    zstd_level: i32,
    fingerprint: String,
    created_by: String,
) -> WriterOptions {
    WriterOptions {
        target_shard_bytes: (target_mb * 1024.0 * 1024.0) as u64,
        row_group_bytes: ((target_mb * 1024.0 * 1024.0 / 4.0) as usize).clamp(1 << 16, 64 << 20),
        zstd_level,
        fingerprint,
        created_by,
        ..Default::default()
    }
}

/// How [`run_to_writer`] ended.
pub(crate) enum Ended {
    Finished(Manifest),
    Interrupted,
}

/// Runs `work` over `items` on the pool and hands every result to
/// `sink` on this thread, in completion order, with the writer. Once `stop` is set no new
/// item starts, and the results still coming are only `seen` (for progress), not written.
/// The first writer error sets `stop`; the writer is then aborted (the open shard is
/// discarded: its items are redone on the next run) and the error returned. An interrupted
/// run aborts the writer the same way.
pub(crate) fn run_to_writer<I: Sync, O: Send>(
    items: &[I],
    pool: rayon::ThreadPool,
    stop: &AtomicBool,
    mut writer: DatasetWriter,
    work: impl Fn(&I) -> O + Sync,
    mut seen: impl FnMut(&O),
    mut sink: impl FnMut(&mut DatasetWriter, O) -> Result<(), ShardError>,
) -> Result<Ended, ShardError> {
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
        return Ok(Ended::Interrupted);
    }
    Ok(Ended::Finished(writer.finish()?))
}
