//! Cached frozen work (`unireal-train cache`): what the frozen encoders compute — the VAE
//! latent of every image at its training bucket and crop, the T5 states of every prompt the
//! trainer can feed (each row's fitted prompt, and "" for dropped text) — computed once into
//! a directory of safetensors shards that training then reads instead of running the
//! encoders. Space-to-depth latents and the byte text encoder are not cached: the first costs
//! nothing, the second is trained.
//!
//! The directory (`data.cache_dir`, default `RUN/cache`):
//! - `manifest.json`: the format, the [`Fingerprints`] of what made each part, and the shard
//!   files in order;
//! - `shard-NNNNN.safetensors`: f32 tensors named
//!   - `latent/{sample id}/{content}/{W}x{H}/{k}` — image `k` of the sample fitted to bucket
//!     W×H, `[channels, h, w]`, the posterior mode in model space (what training encodes);
//!     `content` hashes the sample's encoded images ([`content_hash`]), so a row rebuilt under
//!     the same id never reads a stale latent;
//!   - `text/{hash of the prompt}` — the prompt's T5 states without padding, `[tokens, d_model]`.
//!
//! Each shard is written under a temporary name and renamed when complete, and the manifest is
//! rewritten after each: a run stopped half-way keeps the shards it finished, and the next run
//! computes only what is missing (and removes files the manifest does not list).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use unireal_core::SampleImage;
use unireal_pipeline::image::load_sample_pixels;
use unireal_pipeline::{fit_prompt, Bucket, Frozen, LatentConfig, ModelConfig, TextConfig};

use crate::config::{CacheUse, TrainConfig};
use crate::data::{read_samples, Entry, Index};
use crate::error::Result;

/// The `format` of manifests this build writes and reads.
pub const FORMAT: &str = "unireal-cache/1";
/// The version of the transform from a shard's image to a bucket's pixels
/// ([`unireal_pipeline::image::SampleFit`]); part of the latents' fingerprint, so latents
/// made with another crop or resize are refused. Bump it when that transform changes.
pub const TRANSFORM_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
/// Shards roll at about this many bytes of tensor data.
const SHARD_BYTES: usize = 256 << 20;
/// Images (prompts) per encoder call while building.
const ENCODE_BATCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{dir} holds {part} made with other weights or settings than this config's (fingerprint {cached}, now {now})"
    )]
    Mismatch { dir: PathBuf, part: &'static str, cached: String, now: String },
    #[error("{dir}: no cache there (data.cache: require)")]
    Missing { dir: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// What made each part of a cache: a BLAKE3 hash of the frozen encoder's files (config,
/// weights, tokenizer) and of the settings its output depends on (the image transform's
/// version; the token limit). None for a part the config does not run frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// `latent: vae`: the VAE's.
    pub latent: Option<String>,
    /// `text: t5`: the T5 encoder's.
    pub text: Option<String>,
}

/// The weight files of model directory `dir` (`STEM.safetensors`, or the index and its shards).
fn model_files(dir: &Path, stem: &str) -> Result<Vec<PathBuf>, CacheError> {
    let format = |e: unireal_model::ModelError| CacheError::Format { path: dir.to_path_buf(), message: e.to_string() };
    let weights = unireal_model::weights_in(dir, stem).map_err(format)?;
    let shards = unireal_model::weight_files(&weights).map_err(format)?;
    Ok(if shards.first() == Some(&weights) { shards } else { [vec![weights], shards].concat() })
}

fn hash_files(label: &str, files: &[PathBuf]) -> Result<String, CacheError> {
    let mut h = blake3::Hasher::new();
    h.update(label.as_bytes());
    for path in files {
        let mut f = File::open(path).map_err(io(path))?;
        let len = f.metadata().map_err(io(path))?.len();
        h.update(&len.to_le_bytes());
        std::io::copy(&mut f, &mut h).map_err(io(path))?;
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}

impl Fingerprints {
    /// Hashes the frozen encoders `cfg` names (reads their weight files once).
    pub fn of(cfg: &ModelConfig) -> Result<Fingerprints, CacheError> {
        let latent = match &cfg.latent {
            LatentConfig::Vae { path } => Some(hash_files(
                &format!("vae posterior mode; transform {TRANSFORM_VERSION}"),
                &[vec![path.join("config.json")], model_files(path, unireal_model::weights::DIFFUSERS_WEIGHTS)?]
                    .concat(),
            )?),
            LatentConfig::SpaceToDepth { .. } => None,
        };
        let text = match &cfg.text {
            // `unmasked` (Flux's way) states are not cached: T5 runs live.
            TextConfig::T5(t) if !t.unmasked => Some(hash_files(
                &format!("t5 states; max_len {}", t.max_len),
                &[
                    vec![t.path.join("config.json"), t.tokenizer_dir().join("tokenizer.json")],
                    model_files(&t.path, unireal_model::weights::TRANSFORMERS_WEIGHTS)?,
                ]
                .concat(),
            )?),
            TextConfig::T5(_) | TextConfig::Bytes(_) => None,
        };
        Ok(Fingerprints { latent, text })
    }

    /// Nothing the config runs is frozen and worth caching.
    pub fn is_empty(&self) -> bool {
        self.latent.is_none() && self.text.is_none()
    }
}

/// A hash of a sample's encoded images (16 hex digits).
pub fn content_hash(images: &[SampleImage]) -> String {
    let mut h = blake3::Hasher::new();
    for im in images {
        h.update(&(im.bytes.len() as u64).to_le_bytes());
        h.update(&im.bytes);
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The name of image `k`'s latent at `bucket`.
pub fn latent_key(sample_id: &str, content: &str, bucket: Bucket, k: usize) -> String {
    format!("latent/{sample_id}/{content}/{}x{}/{k}", bucket.width, bucket.height)
}

/// The name of a prompt's text states.
pub fn text_key(prompt: &str) -> String {
    format!("text/{}", &blake3::hash(prompt.as_bytes()).to_hex()[..32])
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub fingerprints: Fingerprints,
    pub shards: Vec<ShardInfo>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub tensors: usize,
    pub bytes: u64,
}

/// Where one tensor lies.
#[derive(Debug, Clone)]
struct Slot {
    shard: usize,
    offset: u64,
    shape: Vec<usize>,
}

/// An open cache: its manifest and an index of every tensor, read with positioned reads
/// (shared by the loader's threads).
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    pub manifest: Manifest,
    files: Vec<File>,
    index: HashMap<String, Slot>,
    /// The parts the run's config reads from it (see [`Cache::for_config`]); all by default.
    use_latents: bool,
    use_text: bool,
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Why a safetensors header could not be read.
pub(crate) enum HeaderError {
    Io(std::io::Error),
    Format(String),
}

/// The header of the safetensors file `f` (only the header is read): each tensor's entry as
/// JSON by name, `__metadata__` left out, and where the data starts.
pub(crate) fn safetensors_header(f: &File) -> Result<(BTreeMap<String, serde_json::Value>, u64), HeaderError> {
    let mut n = [0u8; 8];
    f.read_exact_at(&mut n, 0).map_err(HeaderError::Io)?;
    let n = u64::from_le_bytes(n);
    let len = f.metadata().map_err(HeaderError::Io)?.len();
    if n > (1 << 31).min(len.saturating_sub(8)) {
        return Err(HeaderError::Format(format!(
            "a safetensors header of {n} bytes in a file of {len}: not a safetensors file, or a truncated one"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact_at(&mut buf, 8).map_err(HeaderError::Io)?;
    let mut raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&buf).map_err(|e| HeaderError::Format(format!("safetensors header: {e}")))?;
    raw.remove("__metadata__");
    Ok((raw, 8 + n))
}

/// The header of a cache shard (tensor name → info, every tensor F32) and where its data starts.
fn read_header(f: &File, path: &Path) -> Result<(BTreeMap<String, TensorInfo>, u64), CacheError> {
    let bad = |message: String| CacheError::Format { path: path.to_path_buf(), message };
    let (raw, start) = safetensors_header(f).map_err(|e| match e {
        HeaderError::Io(source) => CacheError::Io { path: path.to_path_buf(), source },
        HeaderError::Format(message) => bad(message),
    })?;
    let len = f.metadata().map_err(|source| CacheError::Io { path: path.to_path_buf(), source })?.len();
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        let info: TensorInfo = serde_json::from_value(v).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        // Checked: a damaged header must not overflow, nor point past the end of the file.
        let bytes = info.shape.iter().try_fold(4u64, |n, &d| n.checked_mul(d as u64));
        let [from, to] = info.data_offsets;
        if to.checked_add(start).is_none_or(|end| end > len) || from > to {
            return Err(bad(format!("tensor {name}: data at {from}..{to} past the end of the file ({len} bytes)")));
        }
        if info.dtype != "F32" || bytes != Some(to - from) {
            return Err(bad(format!(
                "tensor {name}: {} {:?}, expected F32 data of that shape",
                info.dtype, info.shape
            )));
        }
        out.insert(name, info);
    }
    Ok((out, start))
}

impl Cache {
    /// Opens the cache in `dir`; None when it has no manifest.
    pub fn open(dir: &Path) -> Result<Option<Cache>, CacheError> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| CacheError::Format { path: path.clone(), message: e.to_string() })?;
        if manifest.format != FORMAT {
            return Err(CacheError::Format {
                path,
                message: format!("format {:?}; this build reads {FORMAT:?}", manifest.format),
            });
        }
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for (i, s) in manifest.shards.iter().enumerate() {
            if !unireal_shards::is_file_name(&s.file) {
                return Err(CacheError::Format {
                    path,
                    message: format!("shard {:?} is not a file name in this directory", s.file),
                });
            }
            let p = dir.join(&s.file);
            let f = File::open(&p).map_err(io(&p))?;
            let (header, start) = read_header(&f, &p)?;
            for (name, info) in header {
                index.insert(name, Slot { shard: i, offset: start + info.data_offsets[0], shape: info.shape });
            }
            files.push(f);
        }
        Ok(Some(Cache { dir: dir.to_path_buf(), manifest, files, index, use_latents: true, use_text: true }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tensors in the cache.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many latents and prompts it holds.
    pub fn counts(&self) -> (usize, usize) {
        let latents = self.index.keys().filter(|k| k.starts_with("latent/")).count();
        (latents, self.index.len() - latents)
    }

    /// Refuses a cache whose parts were made by other encoders than `now`'s (or lack a part
    /// `now` runs frozen).
    pub fn check(&self, now: &Fingerprints) -> Result<(), CacheError> {
        let cached = &self.manifest.fingerprints;
        let parts = [("VAE latents", &cached.latent, &now.latent), ("T5 text states", &cached.text, &now.text)];
        for (part, cached, now) in parts {
            if let Some(now) = now {
                if cached.as_ref() != Some(now) {
                    return Err(CacheError::Mismatch {
                        dir: self.dir.clone(),
                        part,
                        cached: cached.clone().unwrap_or_else(|| "none".into()),
                        now: now.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// [`Cache::check`]ed against `now`, and reading only the parts `now` runs frozen: a
    /// cache with T5 states serves a config whose text is not cached (`unmasked`, bytes) its
    /// latents only.
    pub fn for_config(mut self, now: &Fingerprints) -> Result<Cache, CacheError> {
        self.check(now)?;
        self.use_latents = now.latent.is_some();
        self.use_text = now.text.is_some();
        Ok(self)
    }

    /// It holds VAE latents that the run reads.
    pub fn has_latents(&self) -> bool {
        self.use_latents && self.manifest.fingerprints.latent.is_some()
    }

    /// It holds T5 text states that the run reads.
    pub fn has_text(&self) -> bool {
        self.use_text && self.manifest.fingerprints.text.is_some()
    }

    /// The error for a tensor of this cache that is not what its name promises.
    pub fn malformed(&self, key: &str, message: String) -> CacheError {
        CacheError::Format { path: self.dir.join(MANIFEST), message: format!("{key}: {message}") }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The tensor named `key` (shape, data); None when it is not cached.
    pub fn get(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>, CacheError> {
        let Some(slot) = self.index.get(key) else { return Ok(None) };
        let n: usize = slot.shape.iter().product();
        let mut bytes = vec![0u8; 4 * n];
        let path = self.dir.join(&self.manifest.shards[slot.shard].file);
        self.files[slot.shard].read_exact_at(&mut bytes, slot.offset).map_err(io(&path))?;
        let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(Some((slot.shape.clone(), data)))
    }

    /// The text states of `prompts` as the T5 encoder gives a batch — padded to the longest
    /// (with zeros, which the padding mask hides) — and the mask (true at padding); None when
    /// a prompt is not cached.
    ///
    /// # Shapes
    /// - returns states `[batch, len, d_model]` and the padding mask `[batch, len]`
    pub fn text_states<B: Backend>(
        &self,
        prompts: &[String],
        device: &B::Device,
    ) -> Result<Option<(Tensor<B, 3>, Tensor<B, 2, Bool>)>, CacheError> {
        let mut rows = Vec::with_capacity(prompts.len());
        for p in prompts {
            match self.get(&text_key(p))? {
                Some((shape, data)) => rows.push((shape[0], shape[1], data)),
                None => return Ok(None),
            }
        }
        let (b, len) = (rows.len(), rows.iter().map(|r| r.0).max().unwrap_or(1));
        let d = rows.first().map(|r| r.1).unwrap_or(1);
        let mut states = vec![0f32; b * len * d];
        let mut pad = vec![true; b * len];
        for (i, (n, _, data)) in rows.iter().enumerate() {
            states[i * len * d..i * len * d + n * d].copy_from_slice(data);
            pad[i * len..i * len + n].iter_mut().for_each(|p| *p = false);
        }
        Ok(Some((
            Tensor::from_data(TensorData::new(states, [b, len, d]), device),
            Tensor::from_data(TensorData::new(pad, [b, len]), device),
        )))
    }
}

/// The cache directory of a run: `data.cache_dir`, else `RUN/cache`.
pub fn cache_dir(cfg: &TrainConfig, run: &Path) -> PathBuf {
    cfg.data.cache_dir.clone().unwrap_or_else(|| run.join("cache"))
}

/// The cache a run reads, per `data.cache`: None when it is off, when the config runs no
/// frozen encoder, or (`auto`) when the directory has none; an error when it was made with
/// other encoders, or (`require`) when there is none.
pub fn open_for_run(cfg: &TrainConfig, run: &Path) -> Result<Option<Cache>, CacheError> {
    let dir = cache_dir(cfg, run);
    if cfg.data.cache == CacheUse::Off {
        return Ok(None);
    }
    let no_frozen =
        matches!(cfg.model.latent, LatentConfig::SpaceToDepth { .. }) && matches!(cfg.model.text, TextConfig::Bytes(_));
    if no_frozen {
        return Ok(None);
    }
    match Cache::open(&dir)? {
        Some(c) => Ok(Some(c.for_config(&Fingerprints::of(&cfg.model)?)?)),
        None if cfg.data.cache == CacheUse::Require => Err(CacheError::Missing { dir }),
        None => Ok(None),
    }
}

/// Writes shards and keeps the manifest listing the finished ones.
struct Writer {
    dir: PathBuf,
    manifest: Manifest,
    pending: Vec<(String, Vec<usize>, Vec<f32>)>,
    pending_bytes: usize,
    shard_bytes: usize,
}

impl Writer {
    /// Continues `existing` (made with the same fingerprints) or starts an empty cache; files
    /// the manifest does not list (a stopped run's) are removed.
    fn new(dir: &Path, fingerprints: Fingerprints, existing: Option<Manifest>) -> Result<Writer, CacheError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let manifest = existing.unwrap_or(Manifest {
            format: FORMAT.into(),
            fingerprints,
            shards: Vec::new(),
            created_by: format!("unireal-train {}", env!("CARGO_PKG_VERSION")),
        });
        let listed: HashSet<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
        for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("shard-") && !listed.contains(name.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Writer { dir: dir.to_path_buf(), manifest, pending: Vec::new(), pending_bytes: 0, shard_bytes: SHARD_BYTES })
    }

    fn add(&mut self, key: String, shape: Vec<usize>, data: Vec<f32>) -> Result<(), CacheError> {
        self.pending_bytes += 4 * data.len();
        self.pending.push((key, shape, data));
        if self.pending_bytes >= self.shard_bytes {
            self.roll()?;
        }
        Ok(())
    }

    /// Writes the pending tensors as the next shard, then the manifest that lists it.
    fn roll(&mut self) -> Result<(), CacheError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = format!("shard-{:05}.safetensors", self.manifest.shards.len());
        let path = self.dir.join(&file);
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
            self.pending.drain(..).map(|(k, s, d)| (k, s, d.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
        let views = bytes
            .iter()
            .map(|(k, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (k.as_str(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| CacheError::Format { path: path.clone(), message: e.to_string() })?;
        let data = safetensors::tensor::serialize(views, None)
            .map_err(|e| CacheError::Format { path: path.clone(), message: e.to_string() })?;
        unireal_core::write_atomic(&path, &data).map_err(io(&path))?;
        self.manifest.shards.push(ShardInfo { file, tensors: bytes.len(), bytes: data.len() as u64 });
        self.pending_bytes = 0;
        self.write_manifest()
    }

    fn write_manifest(&self) -> Result<(), CacheError> {
        let path = self.dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(&self.manifest).expect("a manifest serialises");
        unireal_core::write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    fn finish(mut self) -> Result<Manifest, CacheError> {
        self.roll()?;
        self.write_manifest()?;
        Ok(self.manifest)
    }
}

/// What [`build`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheReport {
    pub dir: PathBuf,
    /// None when the config runs no frozen encoder (nothing was written).
    pub fingerprints: Option<Fingerprints>,
    pub rows: usize,
    pub latents_written: usize,
    pub latents_present: usize,
    pub prompts_written: usize,
    pub prompts_present: usize,
    /// Rows left out because an image did not decode: `file row N: reason`.
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// Splits an encoder output `[n, …]` into its rows (shape without the first axis, data).
fn rows_of<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
    let dims = x.dims();
    let data: Vec<f32> = x.into_data().convert::<f32>().to_vec()?;
    let per = data.len() / dims[0].max(1);
    Ok(data.chunks(per.max(1)).map(|c| (dims[1..].to_vec(), c.to_vec())).collect())
}

/// Computes what `cfg`'s frozen encoders would compute for every row its sources give
/// training and validation (within the image caps, at each row's bucket), and writes what
/// `dir` lacks. A cache made with other encoders is refused unless `force`, which replaces
/// it. `progress` is told the rows done.
pub fn build<B: Backend>(
    cfg: &TrainConfig,
    dir: &Path,
    force: bool,
    device: &B::Device,
    progress: impl Fn(usize, usize),
) -> Result<CacheReport> {
    let started = Instant::now();
    cfg.validate()?;
    let mut report = CacheReport { dir: dir.to_path_buf(), ..Default::default() };
    let fp = Fingerprints::of(&cfg.model)?;
    if fp.is_empty() {
        return Ok(report);
    }
    report.fingerprints = Some(fp.clone());
    let existing = match Cache::open(dir)? {
        Some(c) if c.manifest.fingerprints == fp => Some(c),
        Some(c) if force => {
            for s in &c.manifest.shards {
                let _ = std::fs::remove_file(dir.join(&s.file));
            }
            let _ = std::fs::remove_file(dir.join(MANIFEST));
            None
        }
        Some(c) => {
            c.check(&fp)?;
            // Same parts, but one more or fewer than the config runs frozen.
            return Err(CacheError::Mismatch {
                dir: dir.to_path_buf(),
                part: "another set of parts",
                cached: format!("{:?}", c.manifest.fingerprints),
                now: format!("{fp:?}"),
            }
            .into());
        }
        None => None,
    };
    let frozen: Frozen<B> = cfg.model.frozen::<B>(device)?;
    let (train, val, _) = Index::build_split(&cfg.data, cfg.model.pixel_align()?)?;
    let buckets = train.buckets.clone();
    // A row listed by two sources (a task filter over the same shards) is cached once.
    let mut seen = HashSet::new();
    let entries: Vec<Entry> = train
        .per_source
        .iter()
        .chain(&val.per_source)
        .flatten()
        .filter(|e| seen.insert((e.file.clone(), e.row)))
        .cloned()
        .collect();
    report.rows = entries.len();
    let mut writer = Writer::new(dir, fp.clone(), existing.as_ref().map(|c| c.manifest.clone()))?;
    // Keys added in this run; "" (dropped text) is always among the prompts.
    let mut written: HashSet<String> = HashSet::from([text_key("")]);
    let have =
        |k: &str, written: &HashSet<String>| existing.as_ref().is_some_and(|c| c.contains(k)) || written.contains(k);
    let mut prompts: Vec<String> = vec![String::new()];
    let mut done = 0;
    for chunk in entries.chunks(32) {
        let samples = read_samples(chunk)?;
        let mut todo: BTreeMap<(u32, u32), Vec<(String, Vec<f32>)>> = BTreeMap::new();
        for (e, s) in chunk.iter().zip(&samples) {
            if fp.latent.is_some() {
                let bucket = buckets[e.bucket];
                let content = content_hash(&s.images);
                let keys: Vec<String> =
                    (0..s.images.len()).map(|k| latent_key(&s.sample_id, &content, bucket, k)).collect();
                if keys.iter().all(|k| have(k, &written)) {
                    report.latents_present += keys.len();
                } else {
                    match load_sample_pixels(&s.images, bucket) {
                        Ok(px) => {
                            for (k, p) in keys.into_iter().zip(px) {
                                if have(&k, &written) {
                                    report.latents_present += 1;
                                } else if written.insert(k.clone()) {
                                    todo.entry((bucket.width, bucket.height)).or_default().push((k, p));
                                }
                            }
                        }
                        Err((k, err)) => {
                            report.skipped.push(format!("{} row {}: image {k}: {err}", e.file.display(), e.row))
                        }
                    }
                }
            }
            if fp.text.is_some() {
                let prompt = fit_prompt(&cfg.model, &frozen, &s.context_prompt, &s.base_prompt).text;
                if written.insert(text_key(&prompt)) {
                    prompts.push(prompt);
                }
            }
        }
        for ((w, h), images) in todo {
            for group in images.chunks(ENCODE_BATCH) {
                let n = group.len();
                let px: Vec<f32> = group.iter().flat_map(|(_, p)| p.iter().copied()).collect();
                let x = Tensor::<B, 4>::from_data(TensorData::new(px, [n, 3, h as usize, w as usize]), device);
                for ((key, _), (shape, data)) in group.iter().zip(rows_of(frozen.latent.encode(x))?) {
                    writer.add(key.clone(), shape, data)?;
                    report.latents_written += 1;
                }
            }
        }
        done += chunk.len();
        progress(done, entries.len());
    }
    if let Some(t5) = frozen.t5.as_ref().filter(|_| fp.text.is_some()) {
        let missing: Vec<String> = prompts
            .into_iter()
            .filter(|p| {
                let present = existing.as_ref().is_some_and(|c| c.contains(&text_key(p)));
                report.prompts_present += usize::from(present);
                !present
            })
            .collect();
        for group in missing.chunks(ENCODE_BATCH) {
            let refs: Vec<&str> = group.iter().map(String::as_str).collect();
            let (states, pad) = t5.encode(&refs, device).map_err(unireal_pipeline::PipelineError::Text)?;
            let pad: Vec<bool> = pad.into_data().to_vec()?;
            let len = pad.len() / group.len();
            for (j, (p, (shape, data))) in group.iter().zip(rows_of(states)?).enumerate() {
                let n = pad[j * len..(j + 1) * len].iter().filter(|x| !**x).count();
                writer.add(text_key(p), vec![n, shape[1]], data[..n * shape[1]].to_vec())?;
                report.prompts_written += 1;
            }
        }
    }
    writer.finish()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray;

    fn fingerprints() -> Fingerprints {
        Fingerprints { latent: Some("aa".into()), text: Some("bb".into()) }
    }

    /// Shards roll, the manifest lists them, every tensor reads back as written, a stopped
    /// run's unlisted shard is removed, and a continued cache keeps the old shards.
    #[test]
    fn written_tensors_read_back_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(dir.path(), fingerprints(), None).unwrap();
        w.shard_bytes = 64;
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = (0..5)
            .map(|i| (format!("latent/s{i}/c/8x8/0"), vec![2, 3, 1], (0..6).map(|j| (i * 10 + j) as f32).collect()))
            .collect();
        for (k, s, d) in &tensors {
            w.add(k.clone(), s.clone(), d.clone()).unwrap();
        }
        let m = w.finish().unwrap();
        assert!(m.shards.len() >= 2, "{m:?}");
        std::fs::write(dir.path().join("shard-00099.safetensors"), b"partial").unwrap();

        let c = Cache::open(dir.path()).unwrap().unwrap();
        assert_eq!(c.len(), 5);
        for (k, s, d) in &tensors {
            assert_eq!(c.get(k).unwrap(), Some((s.clone(), d.clone())), "{k}");
        }
        assert_eq!(c.get("latent/none").unwrap(), None);
        c.check(&fingerprints()).unwrap();
        let other = Fingerprints { latent: Some("cc".into()), text: Some("bb".into()) };
        assert!(matches!(c.check(&other), Err(CacheError::Mismatch { part: "VAE latents", .. })));
        // A config that runs its text live (T5 `unmasked`) reads the latents only.
        let latents_only = Cache::open(dir.path())
            .unwrap()
            .unwrap()
            .for_config(&Fingerprints { latent: Some("aa".into()), text: None })
            .unwrap();
        assert!(latents_only.has_latents() && !latents_only.has_text());
        assert!(c.has_latents() && c.has_text());

        let mut w = Writer::new(dir.path(), fingerprints(), Some(c.manifest.clone())).unwrap();
        assert!(!dir.path().join("shard-00099.safetensors").exists());
        w.add("text/x".into(), vec![1, 2], vec![1.0, 2.0]).unwrap();
        w.finish().unwrap();
        let c = Cache::open(dir.path()).unwrap().unwrap();
        assert_eq!(c.counts(), (5, 1));
    }

    /// Text states come back padded with zeros to the longest prompt, the mask true there.
    #[test]
    fn text_states_pad_to_the_longest_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(dir.path(), fingerprints(), None).unwrap();
        w.add(text_key("long"), vec![3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        w.add(text_key(""), vec![1, 2], vec![7., 8.]).unwrap();
        w.finish().unwrap();
        let c = Cache::open(dir.path()).unwrap().unwrap();
        let (states, pad) = c.text_states::<B>(&["".into(), "long".into()], &Default::default()).unwrap().unwrap();
        assert_eq!(states.dims(), [2, 3, 2]);
        let s: Vec<f32> = states.into_data().to_vec().unwrap();
        assert_eq!(s, [7., 8., 0., 0., 0., 0., 1., 2., 3., 4., 5., 6.]);
        let p: Vec<bool> = pad.into_data().to_vec().unwrap();
        assert_eq!(p, [false, true, true, false, false, false]);
        assert!(c.text_states::<B>(&["unseen".into()], &Default::default()).unwrap().is_none());
    }
}
