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
use image::imageops::FilterType;
use rayon::prelude::*;
use unireal_core::{ImageRole, Sample, Split, Task};
use unireal_flow::Rng;

use crate::config::DataConfig;

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

/// A bucket: target size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub width: u32,
    pub height: u32,
}

/// Bucket sizes for `resolution²` area at each aspect ratio, both sides multiples of `align`.
pub fn buckets(resolution: u32, aspect_ratios: &[f64], align: u32) -> Vec<Bucket> {
    aspect_ratios
        .iter()
        .map(|&a| {
            let area = (resolution as f64).powi(2);
            let w = (area * a).sqrt();
            let h = w / a;
            let snap = |x: f64| (((x / align as f64).round() as u32).max(1)) * align;
            Bucket { width: snap(w), height: snap(h) }
        })
        .collect()
}

/// The bucket whose aspect ratio is nearest to `w/h` in log space.
pub fn nearest_bucket(buckets: &[Bucket], w: u32, h: u32) -> usize {
    let r = (w.max(1) as f64 / h.max(1) as f64).ln();
    (0..buckets.len())
        .min_by(|&a, &b| {
            let da = (r - (buckets[a].width as f64 / buckets[a].height as f64).ln()).abs();
            let db = (r - (buckets[b].width as f64 / buckets[b].height as f64).ln()).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(0)
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
    #[error("{path}: {message}")]
    Source { path: String, message: String },
    #[error(transparent)]
    Shards(#[from] unireal_shards::ShardError),
    #[error("decoding image {image} of sample {sample_id}: {message}")]
    Image { sample_id: String, image: usize, message: String },
    #[error("loader: {0}")]
    Loader(String),
}

impl Index {
    /// Indexes every shard the sources' manifests list, keeping rows of `split`.
    pub fn build(cfg: &DataConfig, split: Split, align: u32) -> Result<Index, DataError> {
        let buckets = buckets(cfg.resolution, &cfg.aspect_ratios, align);
        let mut per_source = Vec::new();
        let mut stats = IndexStats::default();
        for (si, src) in cfg.sources.iter().enumerate() {
            let manifest = unireal_shards::Manifest::load_dataset(&src.path)?.ok_or_else(|| DataError::Source {
                path: src.path.display().to_string(),
                message: "no manifest.json: not a shard directory (build one with `unireal-data build`)".into(),
            })?;
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

/// The text the DiT is conditioned on: context prompt, then base prompt.
pub fn full_prompt(s: &Sample) -> String {
    full_prompt_parts(&s.context_prompt, &s.base_prompt)
}

/// Joins a context prompt and a base prompt as the trainer does.
pub fn full_prompt_parts(context: &str, base: &str) -> String {
    match (context.trim(), base.trim()) {
        ("", b) => b.to_string(),
        (c, "") => c.to_string(),
        (c, b) if c.ends_with(['.', '!', '?']) => format!("{c} {b}"),
        (c, b) => format!("{c}. {b}"),
    }
}

pub fn role_index(r: ImageRole) -> i64 {
    use unireal_model::dit::*;
    match r {
        ImageRole::Asset => ROLE_ASSET,
        ImageRole::Canvas => ROLE_CANVAS,
        ImageRole::Control => ROLE_CONTROL,
        ImageRole::Output => ROLE_OUTPUT,
    }
}

/// Decodes an image, scales it to cover `bucket` and centre-crops, as `[3, H, W]` in [−1, 1].
pub fn load_pixels(bytes: &[u8], bucket: Bucket) -> Result<Vec<f32>, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
    Ok(image_to_chw(&cover_crop(&img, bucket)))
}

/// Resizes to cover the bucket (keeping aspect) and centre-crops to it.
pub fn cover_crop(img: &image::RgbImage, bucket: Bucket) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let scale = (bucket.width as f64 / w as f64).max(bucket.height as f64 / h as f64);
    let (sw, sh) =
        (((w as f64 * scale).round() as u32).max(bucket.width), ((h as f64 * scale).round() as u32).max(bucket.height));
    let resized = image::imageops::resize(img, sw, sh, FilterType::Triangle);
    let (x, y) = ((sw - bucket.width) / 2, (sh - bucket.height) / 2);
    image::imageops::crop_imm(&resized, x, y, bucket.width, bucket.height).to_image()
}

/// `[H, W, 3]` u8 → `[3, H, W]` f32 in [−1, 1].
pub fn image_to_chw(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p.0[c] as f32 / 127.5 - 1.0;
        }
    }
    out
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
                    load_pixels(&im.bytes, bucket).map_err(|message| DataError::Image {
                        sample_id: s.sample_id.clone(),
                        image: k,
                        message,
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
