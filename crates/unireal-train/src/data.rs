//! The shard loader: an index of every row of every source, a deterministic sampler that
//! mixes sources by weight, shuffles each source per epoch, keeps this rank's draws and groups
//! them into batches of one signature (inputs, outputs, bucket) so no padding is needed, and a
//! prefetching decoder on worker threads.
//!
//! The sampler's position is the number of batches it has emitted: it touches no image
//! bytes, so a resumed run replays it to that count in milliseconds and continues exactly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use rayon::prelude::*;
use unireal_core::{Sample, Split, Task};
use unireal_flow::Rng;
use unireal_pipeline::image::{buckets, load_pixels, nearest_bucket};
use unireal_pipeline::prompt::{full_prompt, role_index};
pub use unireal_pipeline::Bucket;

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
    #[error("no training rows in {sources} (of at most {max_inputs} inputs and {max_outputs} outputs)")]
    NoTrainingRows { sources: String, max_inputs: usize, max_outputs: usize },
}

impl Index {
    /// Indexes every shard the sources' manifests list, keeping rows of `split`.
    pub fn build(cfg: &DataConfig, split: Split, align: u32) -> Result<Index, DataError> {
        let buckets = buckets(cfg.resolution, &cfg.aspect_ratios, align);
        let mut per_source = Vec::new();
        let mut stats = IndexStats::default();
        for (si, src) in cfg.sources.iter().enumerate() {
            let manifest = unireal_shards::Manifest::load_dataset(&src.path)?
                .ok_or_else(|| DataError::NotShards { path: src.path.clone() })?;
            let mut entries = Vec::new();
            for shard in &manifest.shards {
                let file = Arc::new(src.path.join(&shard.file));
                for r in unireal_shards::index_rows(&file)? {
                    if r.split != split {
                        continue;
                    }
                    if r.signature.0 > cfg.max_inputs || r.signature.1 > cfg.max_outputs || r.signature.1 == 0 {
                        stats.over_image_cap += 1;
                        continue;
                    }
                    entries.push(Entry {
                        source: si,
                        file: file.clone(),
                        row: r.row,
                        task: r.task,
                        signature: r.signature,
                        bucket: nearest_bucket(&buckets, r.output_size.0, r.output_size.1),
                    });
                }
            }
            stats.rows.insert(format!("{} ({})", src.path.display(), split.as_str()), entries.len());
            per_source.push(entries);
        }
        Ok(Index { per_source, weights: cfg.sources.iter().map(|s| s.weight).collect(), buckets, stats })
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
    /// `context prompt` + `base prompt`.
    pub prompts: Vec<String>,
    pub bucket: Bucket,
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// `[batch, n_inputs, 3, H, W]`, row-major.
    pub inputs: Vec<f32>,
    /// Image-role embedding indices, `[batch, n_inputs]`.
    pub input_roles: Vec<i64>,
    /// `[batch, n_outputs, 3, H, W]`.
    pub outputs: Vec<f32>,
    /// Rows left out because an image did not decode: `file row N: reason`.
    pub skipped: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.sample_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sample_ids.is_empty()
    }
}

/// Reads and decodes the samples of `entries` (one signature) into a [`Batch`].
pub fn decode_batch(entries: &[Entry], buckets: &[Bucket]) -> Result<Batch, DataError> {
    // Read rows file by file, then put them back in batch order.
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
    let samples: Vec<Sample> = samples.into_iter().map(|s| s.expect("every row read")).collect();
    let bucket = buckets[entries[0].bucket];
    let (n, m) = entries[0].signature;
    // A sample whose image does not decode is left out of the batch (and reported); the
    // run goes on.
    let decoded: Vec<Result<Vec<Vec<f32>>, DataError>> = samples
        .par_iter()
        .map(|s| {
            s.images
                .iter()
                .enumerate()
                .map(|(k, im)| {
                    load_pixels(&im.bytes, bucket).map_err(|e| DataError::Image {
                        sample_id: s.sample_id.clone(),
                        image: k,
                        message: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
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
    let mut batch = Batch {
        sample_ids: samples.iter().map(|s| s.sample_id.clone()).collect(),
        tasks: samples.iter().map(|s| s.task).collect(),
        prompts: samples.iter().map(full_prompt).collect(),
        bucket,
        n_inputs: n,
        n_outputs: m,
        inputs: Vec::new(),
        input_roles: Vec::new(),
        outputs: Vec::new(),
        skipped,
    };
    for (s, px) in samples.iter().zip(pixels) {
        for (im, p) in s.images.iter().zip(px) {
            if im.role.is_input() {
                batch.inputs.extend(p);
                batch.input_roles.push(role_index(im.role));
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
    /// Starts after `skip` batches (the checkpoint's position).
    pub fn start(index: Arc<Index>, cfg: &DataConfig, seed: u64, skip: u64) -> Result<Loader, DataError> {
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
            let batch = pool.install(|| decode_batch(&entries, &index.buckets));
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
/// validation and sample grids use (from the `val` split, else from training rows, which
/// the log says), and the loader started at the run's position.
pub struct TrainData {
    pub train: Arc<Index>,
    pub val: Arc<Index>,
    pub fixed: Vec<Batch>,
    /// The fixed batches are training rows (the sources have no `val` rows).
    pub fixed_from_train: bool,
    pub loader: Loader,
}

impl TrainData {
    /// Indexes the sources with bucket sides multiples of `align` and starts the loader after
    /// `loader_batches` batches (a resumed run's position).
    pub fn open(cfg: &TrainConfig, align: u32, loader_batches: u64) -> Result<TrainData, DataError> {
        let d = &cfg.data;
        let train = Arc::new(Index::build(d, Split::Train, align)?);
        if train.is_empty() {
            let sources = d.sources.iter().map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(DataError::NoTrainingRows { sources, max_inputs: d.max_inputs, max_outputs: d.max_outputs });
        }
        let val = Arc::new(Index::build(d, Split::Val, align)?);
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
        let loader = Loader::start(train.clone(), d, cfg.train.seed, loader_batches)?;
        Ok(TrainData { train, val, fixed, fixed_from_train, loader })
    }
}
