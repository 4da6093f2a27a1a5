//! The shard loader: an index of every row of every source, a deterministic sampler that
//! mixes sources by weight, shuffles each source per epoch, keeps this rank's draws and groups
//! them into batches of one signature (inputs, outputs, bucket) so no padding is needed, and a
//! prefetching decoder on worker threads.
//!
//! The sampler's position is the number of batches it has emitted: it touches no image
//! bytes, so a resumed run replays it to that count in milliseconds and continues exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use rayon::prelude::*;
use unireal_core::{Sample, Split, Task};
use unireal_flow::Rng;
use unireal_pipeline::image::{buckets, load_sample_pixels, nearest_bucket};
use unireal_pipeline::prompt::{full_prompt, role_index, FittedPrompt};
pub use unireal_pipeline::Bucket;

use crate::cache::{content_hash, latent_key, Cache, CacheError};
use crate::config::{DataConfig, TrainConfig};

/// One row the loader may draw.
#[derive(Debug, Clone)]
pub struct Entry {
    pub source: usize,
    pub file: Arc<PathBuf>,
    pub row: usize,
    pub task: Task,
    /// (inputs, outputs)
    pub signature: (usize, usize),
    pub bucket: usize,
}

/// What indexing found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexStats {
    /// Rows per (source path, split).
    pub rows: BTreeMap<String, usize>,
    /// Rows left out because they had more images than `max_inputs`/`max_outputs`.
    pub over_image_cap: usize,
}

/// The rows of all sources for one split, per source.
#[derive(Debug, Clone)]
pub struct Index {
    pub per_source: Vec<Vec<Entry>>,
    pub weights: Vec<f64>,
    pub buckets: Vec<Bucket>,
    pub stats: IndexStats,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: no manifest.json: not a shard directory")]
    NotShards { path: PathBuf },
    #[error(transparent)]
    Shards(#[from] unireal_shards::ShardError),
    #[error("decoding image {image} of sample {sample_id}: {message}")]
    Image { sample_id: String, image: usize, message: String },
    #[error("loader: {0}")]
    Loader(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("no training rows in {sources} (of at most {max_inputs} inputs and {max_outputs} outputs)")]
    NoTrainingRows { sources: String, max_inputs: usize, max_outputs: usize },
}

/// One row of a source as the index sees it, before the split.
#[derive(Debug, Clone)]
struct Scanned {
    entry: Entry,
    split: Split,
    holdout_key: String,
}

/// Every row of the sources' shards (within the image caps), per source, and how many were
/// over the caps.
fn scan(cfg: &DataConfig, buckets: &[Bucket]) -> Result<(Vec<Vec<Scanned>>, usize), DataError> {
    let mut per_source = Vec::new();
    let mut over_cap = 0;
    for (si, src) in cfg.sources.iter().enumerate() {
        let manifest = unireal_shards::Manifest::load_dataset(&src.path)?
            .ok_or_else(|| DataError::NotShards { path: src.path.clone() })?;
        let mut rows = Vec::new();
        for shard in &manifest.shards {
            let file = Arc::new(src.path.join(&shard.file));
            for r in unireal_shards::index_rows(&file)? {
                if !src.tasks.is_empty() && !src.tasks.contains(&r.task) {
                    continue;
                }
                if r.signature.0 > cfg.max_inputs || r.signature.1 > cfg.max_outputs || r.signature.1 == 0 {
                    over_cap += usize::from(r.split != Split::Test);
                    continue;
                }
                let entry = Entry {
                    source: si,
                    file: file.clone(),
                    row: r.row,
                    task: r.task,
                    signature: r.signature,
                    bucket: nearest_bucket(buckets, r.output_size.0, r.output_size.1),
                };
                rows.push(Scanned { entry, split: r.split, holdout_key: r.holdout_key });
            }
        }
        per_source.push(rows);
    }
    Ok((per_source, over_cap))
}

/// Which training rows validation holds out when the sources have no `val` rows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Holdout {
    /// The held-out keys ([`unireal_core::holdout_key`]: a video, a subject, …).
    pub keys: Vec<String>,
    pub rows: usize,
}

/// The keys to hold out: whole keys, in the order of their stable hash, each taken while the
/// held-out rows stay within `fraction` of all rows, until that fraction is reached; when no
/// key is that small, the smallest key alone (ties by hash order). Never every key, so rows
/// are left to train on. Deterministic: the same shards give the same split in every run,
/// whatever their order.
pub fn choose_holdout<'a>(keys: impl IntoIterator<Item = &'a str>, fraction: f64) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    if fraction <= 0.0 || counts.len() < 2 {
        return Vec::new();
    }
    let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
    order.sort_by(|a, b| {
        let h = |k: &str| unireal_shards::unit_hash(&format!("holdout:{k}"));
        h(a.0).total_cmp(&h(b.0)).then(a.0.cmp(b.0))
    });
    let target = fraction * total as f64;
    let mut held = Vec::new();
    let mut rows = 0;
    for (k, n) in &order {
        if rows as f64 >= target || held.len() + 1 == order.len() {
            break;
        }
        if (rows + n) as f64 <= target {
            held.push(k.to_string());
            rows += n;
        }
    }
    if held.is_empty() {
        held.extend(order.iter().min_by_key(|(_, n)| *n).map(|(k, _)| k.to_string()));
    }
    held
}

impl Index {
    /// Indexes every shard the sources' manifests list, keeping rows of `split`.
    pub fn build(cfg: &DataConfig, split: Split, align: u32) -> Result<Index, DataError> {
        let buckets = buckets(cfg.resolution, &cfg.aspect_ratios, align);
        let (rows, over_cap) = scan(cfg, &buckets)?;
        Ok(Index::from_rows(cfg, buckets, &rows, split.as_str(), over_cap, |r| r.split == split))
    }

    /// The training and validation indexes: the `val` rows validate when there are any;
    /// otherwise, with `data.holdout` > 0, whole keys of the training rows are held out
    /// ([`choose_holdout`]) and validate instead.
    pub fn build_split(cfg: &DataConfig, align: u32) -> Result<(Index, Index, Option<Holdout>), DataError> {
        let buckets = buckets(cfg.resolution, &cfg.aspect_ratios, align);
        let (rows, over_cap) = scan(cfg, &buckets)?;
        let all = || rows.iter().flatten();
        if all().any(|r| r.split == Split::Val) || cfg.holdout <= 0.0 {
            let train = Index::from_rows(cfg, buckets.clone(), &rows, "train", over_cap, |r| r.split == Split::Train);
            let val = Index::from_rows(cfg, buckets, &rows, "val", 0, |r| r.split == Split::Val);
            return Ok((train, val, None));
        }
        let keys =
            choose_holdout(all().filter(|r| r.split == Split::Train).map(|r| r.holdout_key.as_str()), cfg.holdout);
        let set: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        let held = |r: &Scanned| r.split == Split::Train && set.contains(r.holdout_key.as_str());
        let train =
            Index::from_rows(cfg, buckets.clone(), &rows, "train", over_cap, |r| r.split == Split::Train && !held(r));
        let val = Index::from_rows(cfg, buckets, &rows, "held out", 0, held);
        let holdout = (!keys.is_empty()).then(|| Holdout { rows: val.len(), keys });
        Ok((train, val, holdout))
    }

    fn from_rows(
        cfg: &DataConfig,
        buckets: Vec<Bucket>,
        rows: &[Vec<Scanned>],
        label: &str,
        over_image_cap: usize,
        keep: impl Fn(&Scanned) -> bool,
    ) -> Index {
        let mut stats = IndexStats { over_image_cap, ..Default::default() };
        let per_source: Vec<Vec<Entry>> = rows
            .iter()
            .zip(&cfg.sources)
            .map(|(rows, src)| {
                let kept: Vec<Entry> = rows.iter().filter(|r| keep(r)).map(|r| r.entry.clone()).collect();
                stats.rows.insert(format!("{} ({label})", src.label()), kept.len());
                kept
            })
            .collect();
        Index { per_source, weights: cfg.sources.iter().map(|s| s.weight).collect(), buckets, stats }
    }

    pub fn len(&self) -> usize {
        self.per_source.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The deterministic draw order: weighted source choice, per-source epoch permutations, rank
/// partition, grouping by signature.
pub struct Sampler {
    index: Arc<Index>,
    seed: u64,
    batch_size: usize,
    rank: usize,
    world: usize,
    mix: Rng,
    /// Per source: (epoch, cursor, permutation).
    cursors: Vec<(u64, usize, Vec<usize>)>,
    draws: u64,
    pending: BTreeMap<(usize, usize, usize), Vec<Entry>>,
    /// Batches emitted so far: the position saved in checkpoints.
    pub batches: u64,
}

fn permutation(n: usize, seed: u64, source: usize, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed).fork(((source as u64) << 32) ^ epoch);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i as u64 + 1) as usize);
    }
    p
}

impl Sampler {
    pub fn new(index: Arc<Index>, seed: u64, batch_size: usize, rank: usize, world: usize) -> Sampler {
        let cursors =
            index.per_source.iter().enumerate().map(|(s, e)| (0, 0, permutation(e.len(), seed, s, 0))).collect();
        Sampler {
            index,
            seed,
            batch_size,
            rank,
            world,
            mix: Rng::new(seed).fork(u64::MAX),
            cursors,
            draws: 0,
            pending: BTreeMap::new(),
            batches: 0,
        }
    }

    fn draw(&mut self) -> Entry {
        let idx = &self.index;
        let live: Vec<usize> = (0..idx.per_source.len()).filter(|&s| !idx.per_source[s].is_empty()).collect();
        let total: f64 = live.iter().map(|&s| idx.weights[s]).sum();
        let mut u = self.mix.uniform() * total;
        let mut source = *live.last().expect("index is not empty");
        for &s in &live {
            if u < idx.weights[s] {
                source = s;
                break;
            }
            u -= idx.weights[s];
        }
        let n = idx.per_source[source].len();
        let (epoch, cursor, perm) = &mut self.cursors[source];
        if *cursor == n {
            *epoch += 1;
            *cursor = 0;
            *perm = permutation(n, self.seed, source, *epoch);
        }
        let e = idx.per_source[source][perm[*cursor]].clone();
        *cursor += 1;
        e
    }

    /// The next batch of entries (all one signature), this rank's share of the stream.
    pub fn next_batch(&mut self) -> Vec<Entry> {
        assert!(!self.index.is_empty(), "sampling from an empty index");
        loop {
            let e = self.draw();
            let mine = self.draws % self.world as u64 == self.rank as u64;
            self.draws += 1;
            if !mine {
                continue;
            }
            let key = (e.signature.0, e.signature.1, e.bucket);
            let group = self.pending.entry(key).or_default();
            group.push(e);
            if group.len() == self.batch_size {
                self.batches += 1;
                return self.pending.remove(&key).expect("just filled");
            }
        }
    }

    /// Replays the draw order up to `batches` emitted batches (used on resume).
    pub fn skip_to(&mut self, batches: u64) {
        while self.batches < batches {
            self.next_batch();
        }
    }
}

/// A decoded batch: pixels in [−1, 1], channel-first, ready for the latent encoder.
#[derive(Debug, Clone)]
pub struct Batch {
    pub sample_ids: Vec<String>,
    pub tasks: Vec<Task>,
    /// What the text encoder sees: context prompt + base prompt, as fitted to the encoder's
    /// limit by the trainer ([`Batch::fit_prompts`]).
    pub prompts: Vec<String>,
    /// The rows' context and base prompts.
    pub contexts: Vec<String>,
    pub bases: Vec<String>,
    pub bucket: Bucket,
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// `[batch, n_inputs, 3, H, W]`, row-major.
    pub inputs: Vec<f32>,
    /// Image-role embedding indices, `[batch, n_inputs]`.
    pub input_roles: Vec<i64>,
    /// `[batch, n_outputs, 3, H, W]`.
    pub outputs: Vec<f32>,
    /// The latents of every image, when the cache held them all (`inputs` and `outputs` are
    /// then empty: nothing was decoded).
    pub latents: Option<CachedLatents>,
    /// Images of the batch that a cache in use did not hold (encoded from pixels instead).
    pub cache_misses: usize,
    /// Rows left out because an image did not decode: `file row N: reason`.
    pub skipped: Vec<String>,
}

/// A batch's latents read from the cache, as the frozen latent encoder would give them.
#[derive(Debug, Clone)]
pub struct CachedLatents {
    /// `[batch, n_inputs, c, h, w]`.
    pub inputs: Vec<f32>,
    /// `[batch, n_outputs, c, h, w]`.
    pub outputs: Vec<f32>,
    /// `[c, h, w]` of one image.
    pub shape: [usize; 3],
}

impl Batch {
    pub fn len(&self) -> usize {
        self.sample_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sample_ids.is_empty()
    }

    /// Sets each prompt to its context and base prompts as `fit` joins them (so the
    /// instruction survives the text encoder's limit); returns how many were truncated.
    pub fn fit_prompts(&mut self, fit: impl Fn(&str, &str) -> FittedPrompt) -> usize {
        let fitted: Vec<FittedPrompt> = self.contexts.iter().zip(&self.bases).map(|(c, b)| fit(c, b)).collect();
        let truncated = fitted.iter().filter(|f| f.truncated).count();
        self.prompts = fitted.into_iter().map(|f| f.text).collect();
        truncated
    }
}

/// Reads the rows of `entries` (any signatures), in their order, file by file.
pub fn read_samples(entries: &[Entry]) -> Result<Vec<Sample>, DataError> {
    let mut by_file: BTreeMap<&PathBuf, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_file.entry(&e.file).or_default().push((i, e.row));
    }
    let mut samples: Vec<Option<Sample>> = vec![None; entries.len()];
    for (file, rows) in by_file {
        let got = unireal_shards::read_rows(file, &rows.iter().map(|r| r.1).collect::<Vec<_>>())?;
        for ((i, _), s) in rows.into_iter().zip(got) {
            samples[i] = Some(s);
        }
    }
    Ok(samples.into_iter().map(|s| s.expect("every row read")).collect())
}

/// Reads and decodes the samples of `entries` (one signature) into a [`Batch`].
pub fn decode_batch(entries: &[Entry], buckets: &[Bucket]) -> Result<Batch, DataError> {
    decode_batch_cached(entries, buckets, None)
}

/// The latents of every image of `samples` at `bucket` from `cache`, split into inputs and
/// outputs; or, when it lacks any, how many (and nothing is read).
fn cached_latents(
    cache: &Cache,
    samples: &[Sample],
    bucket: Bucket,
) -> Result<Result<CachedLatents, usize>, DataError> {
    let keys: Vec<(bool, String)> = samples
        .iter()
        .flat_map(|s| {
            let content = content_hash(&s.images);
            let id = &s.sample_id;
            s.images.iter().enumerate().map(move |(k, im)| (im.role.is_input(), latent_key(id, &content, bucket, k)))
        })
        .collect();
    let missing = keys.iter().filter(|(_, k)| !cache.contains(k)).count();
    if missing > 0 {
        return Ok(Err(missing));
    }
    let mut l = CachedLatents { inputs: Vec::new(), outputs: Vec::new(), shape: [0; 3] };
    for (i, (input, key)) in keys.iter().enumerate() {
        let (shape, data) = cache.get(key)?.unwrap_or_default();
        match shape[..] {
            [c, h, w] if i == 0 || l.shape == [c, h, w] => l.shape = [c, h, w],
            _ => {
                return Err(cache
                    .malformed(key, format!("shape {shape:?}, the batch's other latents {:?}", l.shape))
                    .into())
            }
        }
        if *input { &mut l.inputs } else { &mut l.outputs }.extend(data);
    }
    Ok(Ok(l))
}

/// A batch of `samples` at `bucket` with their ids, tasks, prompts and input roles, and no
/// pixels or latents yet.
fn describe(samples: &[Sample], bucket: Bucket, (n_inputs, n_outputs): (usize, usize)) -> Batch {
    Batch {
        sample_ids: samples.iter().map(|s| s.sample_id.clone()).collect(),
        tasks: samples.iter().map(|s| s.task).collect(),
        prompts: samples.iter().map(full_prompt).collect(),
        contexts: samples.iter().map(|s| s.context_prompt.clone()).collect(),
        bases: samples.iter().map(|s| s.base_prompt.clone()).collect(),
        bucket,
        n_inputs,
        n_outputs,
        inputs: Vec::new(),
        input_roles: samples
            .iter()
            .flat_map(|s| s.images.iter().filter(|im| im.role.is_input()).map(|im| role_index(im.role)))
            .collect(),
        outputs: Vec::new(),
        latents: None,
        cache_misses: 0,
        skipped: Vec::new(),
    }
}

/// [`decode_batch`], reading the latents from `cache` instead of decoding pixels when it holds
/// every image of the batch (see [`Batch::latents`]); otherwise the pixels are decoded and
/// [`Batch::cache_misses`] counts the images it lacked.
pub fn decode_batch_cached(entries: &[Entry], buckets: &[Bucket], cache: Option<&Cache>) -> Result<Batch, DataError> {
    let samples = read_samples(entries)?;
    let bucket = buckets[entries[0].bucket];
    let signature = entries[0].signature;
    let mut cache_misses = 0;
    if let Some(cache) = cache.filter(|c| c.has_latents()) {
        match cached_latents(cache, &samples, bucket)? {
            Ok(latents) => return Ok(Batch { latents: Some(latents), ..describe(&samples, bucket, signature) }),
            Err(missing) => cache_misses = missing,
        }
    }
    // A sample whose image does not decode is left out of the batch (and reported); the
    // run goes on.
    let decoded: Vec<Result<Vec<Vec<f32>>, DataError>> = samples
        .par_iter()
        .map(|s| {
            load_sample_pixels(&s.images, bucket).map_err(|(k, e)| DataError::Image {
                sample_id: s.sample_id.clone(),
                image: k,
                message: e.to_string(),
            })
        })
        .collect();
    let mut skipped = Vec::new();
    let mut kept = Vec::new();
    for ((s, e), d) in samples.into_iter().zip(entries).zip(decoded) {
        match d {
            Ok(px) => kept.push((s, px)),
            Err(err) => skipped.push(format!("{} row {}: {err}", e.file.display(), e.row)),
        }
    }
    let (samples, pixels): (Vec<Sample>, Vec<Vec<Vec<f32>>>) = kept.into_iter().unzip();
    let mut batch = Batch { cache_misses, skipped, ..describe(&samples, bucket, signature) };
    for (s, px) in samples.iter().zip(pixels) {
        for (im, p) in s.images.iter().zip(px) {
            if im.role.is_input() {
                batch.inputs.extend(p);
            } else {
                batch.outputs.extend(p);
            }
        }
    }
    Ok(batch)
}

/// Batches decoded on worker threads, `prefetch` ahead, in the sampler's order.
pub struct Loader {
    rx: Receiver<Result<(u64, Batch), DataError>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Loader {
    /// Starts after `skip` batches (the checkpoint's position); reads latents from `cache`
    /// where it holds them ([`decode_batch_cached`]).
    pub fn start(
        index: Arc<Index>,
        cfg: &DataConfig,
        seed: u64,
        skip: u64,
        cache: Option<Arc<Cache>>,
    ) -> Result<Loader, DataError> {
        let (tx, rx) = bounded(cfg.prefetch);
        let mut sampler = Sampler::new(index.clone(), seed, cfg.batch_size, cfg.rank, cfg.world_size);
        sampler.skip_to(skip);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.workers)
            .build()
            .map_err(|e| DataError::Loader(format!("{} decoding threads: {e}", cfg.workers)))?;
        let thread = std::thread::spawn(move || loop {
            let entries = sampler.next_batch();
            let pos = sampler.batches;
            let batch = pool.install(|| decode_batch_cached(&entries, &index.buckets, cache.as_deref()));
            if let Ok(b) = &batch {
                for s in &b.skipped {
                    eprintln!("warning: skipped {s}");
                }
                if b.is_empty() {
                    continue;
                }
            }
            if tx.send(batch.map(|b| (pos, b))).is_err() {
                return;
            }
        });
        Ok(Loader { rx, _thread: thread })
    }

    /// The next batch and the loader position after it.
    pub fn next(&self) -> Result<(u64, Batch), DataError> {
        self.rx.recv().map_err(|_| DataError::Loader("the decoding thread stopped (it panicked)".into()))?
    }
}

/// The data side of a run: the training and validation indexes, the fixed batches that
/// validation and sample grids use (from the `val` split, else from the keys `data.holdout`
/// holds out of the training rows, else from training rows, which the log says), and the
/// loader started at the run's position.
pub struct TrainData {
    pub train: Arc<Index>,
    pub val: Arc<Index>,
    /// The training rows held out to validate on, when the sources have no `val` rows.
    pub holdout: Option<Holdout>,
    pub fixed: Vec<Batch>,
    /// The fixed batches are training rows (the sources have no `val` rows).
    pub fixed_from_train: bool,
    pub loader: Loader,
}

impl TrainData {
    /// Indexes the sources with bucket sides multiples of `align` and starts the loader after
    /// `loader_batches` batches (a resumed run's position), reading latents from `cache` where
    /// it holds them. The fixed batches are always decoded: sample grids show their pixels.
    pub fn open(
        cfg: &TrainConfig,
        align: u32,
        loader_batches: u64,
        cache: Option<Arc<Cache>>,
    ) -> Result<TrainData, DataError> {
        let d = &cfg.data;
        let (train, val, holdout) = Index::build_split(d, align)?;
        let (train, val) = (Arc::new(train), Arc::new(val));
        if train.is_empty() {
            let sources = d.sources.iter().map(|s| s.label()).collect::<Vec<_>>().join(", ");
            return Err(DataError::NoTrainingRows { sources, max_inputs: d.max_inputs, max_outputs: d.max_outputs });
        }
        let fixed_from_train = val.is_empty();
        let fixed_index = if fixed_from_train { train.clone() } else { val.clone() };
        let mut fixed = Vec::new();
        let n_fixed = cfg.log.val_batches.max(if cfg.log.sample_every > 0 { 1 } else { 0 });
        if (cfg.log.val_every > 0 || cfg.log.sample_every > 0) && n_fixed > 0 {
            let mut s = Sampler::new(fixed_index.clone(), cfg.train.seed ^ 0x5eed, d.batch_size, 0, 1);
            for _ in 0..n_fixed {
                let b = decode_batch(&s.next_batch(), &fixed_index.buckets)?;
                if !b.is_empty() {
                    fixed.push(b);
                }
            }
        }
        let loader = Loader::start(train.clone(), d, cfg.train.seed, loader_batches, cache)?;
        Ok(TrainData { train, val, holdout, fixed, fixed_from_train, loader })
    }
}

#[cfg(test)]
mod tests {
    use super::choose_holdout;

    fn keys() -> Vec<String> {
        (0..40).flat_map(|v| std::iter::repeat(format!("video:clip{v}.mp4")).take(1 + v % 5)).collect()
    }

    /// Whole keys, at most the fraction of rows and close to it, the same keys whatever the
    /// row order.
    #[test]
    fn the_held_out_split_is_whole_keys_and_stable() {
        let rows = keys();
        let held = choose_holdout(rows.iter().map(String::as_str), 0.1);
        let n_held = rows.iter().filter(|k| held.contains(k)).count();
        assert!(!held.is_empty() && held.len() < 40, "{held:?}");
        let share = n_held as f64 / rows.len() as f64;
        assert!(share <= 0.1 && share > 0.1 - 5.0 / rows.len() as f64, "{share}");

        let reversed = choose_holdout(rows.iter().rev().map(String::as_str), 0.1);
        assert_eq!(held, reversed);
    }

    #[test]
    fn one_key_is_never_held_out_and_zero_holds_out_nothing() {
        assert!(choose_holdout(["a", "a", "a"], 0.5).is_empty());
        assert!(choose_holdout(["a", "b", "c"], 0.0).is_empty());
        assert_eq!(choose_holdout(["a", "b"], 0.99).len(), 1);
        // No key fits in 5 %: the smallest one alone, not the first in hash order.
        let rows: Vec<&str> = [("big", 40), ("mid", 20), ("small", 3)].iter().flat_map(|(k, n)| vec![*k; *n]).collect();
        assert_eq!(choose_holdout(rows.iter().copied(), 0.01), ["small"]);
    }
}
