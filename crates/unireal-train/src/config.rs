//! The training configuration: typed, with defaults, unknown keys rejected. Every key is
//! documented in docs/configuration.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use unireal_flow::{Guidance, TimeSampling};
pub use unireal_pipeline::config::{BytesText, DitInit, LatentConfig, ModelConfig, Shift, T5Text, TextConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A shard directory (with manifest.json).
    pub path: PathBuf,
    /// Relative draw probability of this source.
    #[serde(default = "SourceConfig::default_weight")]
    pub weight: f64,
    /// Only rows of these task families (empty: every row). One directory may be listed
    /// twice, filtered and not, to draw some families more often than their row counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<unireal_core::Task>,
}

impl SourceConfig {
    fn default_weight() -> f64 {
        1.0
    }

    /// The source as logs and errors name it: its path, and its task filter when it has one.
    pub fn label(&self) -> String {
        if self.tasks.is_empty() {
            self.path.display().to_string()
        } else {
            let tasks: Vec<&str> = self.tasks.iter().map(|t| t.as_str()).collect();
            format!("{} [{}]", self.path.display(), tasks.join(", "))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Shard directories (each with manifest.json), mixed by weight; at least one.
    pub sources: Vec<SourceConfig>,
    /// Bucket area is about `resolution²` pixels.
    pub resolution: u32,
    /// Width/height ratios of the buckets; each sample goes to the nearest (in log ratio).
    pub aspect_ratios: Vec<f64>,
    pub batch_size: usize,
    /// Samples with more input or output images are skipped (and counted).
    pub max_inputs: usize,
    pub max_outputs: usize,
    /// Image-decoding threads.
    pub workers: usize,
    /// Batches decoded ahead of the trainer.
    pub prefetch: usize,
    /// Guidance dropout, drawn once per sample (OmniGen / InstructPix2Pix style), three
    /// exclusive events: the prompt alone replaced by "" (trains the images-only branch)…
    pub drop_text: f64,
    /// …the input images alone hidden (the text-only branch; samples with inputs)…
    pub drop_images: f64,
    /// …or both (the unconditional branch of three-way guidance).
    pub drop_both: f64,
    /// When the sources have no `val` rows: the fraction of training rows held out to
    /// validate on, by whole video / subject / image (`unireal_core::holdout_key`), chosen by
    /// a stable hash; 0 = validate on fixed training batches.
    pub holdout: f64,
    /// Whether training reads the cache of the frozen encoders' outputs that
    /// `unireal-train cache` writes (`crate::cache`): `auto` when it exists, `off`, or
    /// `require` (an error without one).
    pub cache: CacheUse,
    /// Where that cache is; default `RUN/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Data-parallel rank and world size (the loader keeps every world-th draw).
    pub rank: usize,
    pub world_size: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            sources: Vec::new(),
            resolution: unireal_pipeline::checkpoint::DEFAULT_RESOLUTION,
            aspect_ratios: unireal_pipeline::checkpoint::default_aspect_ratios(),
            batch_size: 4,
            max_inputs: 4,
            max_outputs: 2,
            workers: 2,
            prefetch: 4,
            drop_text: 0.05,
            drop_images: 0.05,
            drop_both: 0.05,
            holdout: 0.05,
            cache: CacheUse::Auto,
            cache_dir: None,
            rank: 0,
            world_size: 1,
        }
    }
}

/// `data.cache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    /// Read the cache when its directory has one.
    #[default]
    Auto,
    /// Always run the frozen encoders.
    Off,
    /// Refuse to start without a cache (when the config runs a frozen encoder).
    Require,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    Constant {
        warmup: usize,
    },
    /// Linear warm-up, then cosine decay to `min_ratio · lr` at the last step.
    Cosine {
        warmup: usize,
        min_ratio: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub steps: usize,
    pub seed: u64,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    /// Global gradient-norm clip; 0 = off.
    pub grad_clip: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Data-parallel runs: gradients are all-reduced in buckets of this many MiB.
    pub allreduce_bucket_mb: f64,
    /// Data-parallel runs: a rank that waits this many seconds in one collective (another
    /// rank died or hangs) ends with an error, and with it the job; 0 = wait forever.
    pub collective_timeout_s: f64,
    /// EMA decay per optimizer step; 0 = no EMA.
    pub ema_decay: f64,
    pub time_sampling: TimeSampling,
    /// Timestep shift: a number, or `auto` for Flux's resolution-dependent shift.
    pub shift: Shift,
    /// Loss weight per task name (default 1).
    pub task_weights: BTreeMap<String, f64>,
    /// Compute precision: `f32`, or `bf16` mixed precision (f32 master weights, bf16 compute).
    pub precision: Precision,
    /// Peak dense TFLOP/s of one device at the training precision (e.g. 989 for an H100 SXM in
    /// bf16): metrics.jsonl then has MFU, the achieved model TFLOP/s over this × ranks.
    pub peak_tflops: Option<f64>,
    /// What the backward pass recomputes instead of keeping: `false` (nothing), `true` or
    /// `blocks` (every transformer block, from its saved input), `burn` (the cheap operations
    /// only: Burn's `BalancedCheckpointing`). See [`Checkpointing`].
    pub activation_checkpointing: Checkpointing,
    /// Memory of one device in GB (10⁹ bytes) that `unireal-train plan` checks its estimate
    /// against (on the CUDA build, the device's own memory when this is not set).
    pub memory_budget_gb: Option<f64>,
    /// LoRA: train low-rank adapters (`{rank, alpha, targets}`) on the frozen DiT loaded from
    /// `model.init_from` instead of every weight. Checkpoints then hold the adapters
    /// (`lora.safetensors` in diffusers' layout) and no copy of the base.
    pub lora: Option<unireal_model::LoraConfig>,
}

/// `train.activation_checkpointing`: activation memory traded for compute. Every mode trains
/// the same model: the losses equal those of a run without it (docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "CheckpointingValue", into = "CheckpointingValue")]
pub enum Checkpointing {
    /// Keep every activation the backward pass needs (`false`).
    #[default]
    Off,
    /// Per-block recomputation (`true` or `blocks`): the forward pass keeps only each DiT
    /// block's input; the backward pass runs each block's forward again, from the last block
    /// to the first, and back-propagates through it alone. Activation memory is then one
    /// block's plus one hidden state per block, for about one more forward pass of compute.
    Blocks,
    /// Burn's `BalancedCheckpointing` autodiff (`burn`): operations Burn counts as cheap
    /// (element-wise, reshapes) are recomputed, matmuls and casts kept. Saves less than
    /// `blocks` (about a third of the activations in f32, almost nothing in bf16) for less
    /// recompute.
    Burn,
}

/// How [`Checkpointing`] is written in a config: a bool or a mode's name.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CheckpointingValue {
    Bool(bool),
    Name(String),
}

impl TryFrom<CheckpointingValue> for Checkpointing {
    type Error = String;
    fn try_from(v: CheckpointingValue) -> std::result::Result<Self, String> {
        match v {
            CheckpointingValue::Bool(false) => Ok(Checkpointing::Off),
            CheckpointingValue::Bool(true) => Ok(Checkpointing::Blocks),
            CheckpointingValue::Name(n) => match n.as_str() {
                "off" => Ok(Checkpointing::Off),
                "blocks" => Ok(Checkpointing::Blocks),
                "burn" => Ok(Checkpointing::Burn),
                _ => Err(format!("unknown activation checkpointing `{n}` (false, true, blocks or burn)")),
            },
        }
    }
}

impl From<Checkpointing> for CheckpointingValue {
    fn from(c: Checkpointing) -> Self {
        match c {
            Checkpointing::Off => CheckpointingValue::Bool(false),
            Checkpointing::Blocks => CheckpointingValue::Name("blocks".into()),
            Checkpointing::Burn => CheckpointingValue::Name("burn".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    /// Mixed precision: parameters, gradients, AdamW moments and EMA stay in f32; each step's
    /// forward and backward run on a bfloat16 copy of the DiT's weights with bfloat16
    /// activations, except norms, RoPE, the softmax, the timestep embedding and the loss
    /// (f32). The trained byte-level text encoder and the frozen encoders run in f32. On the
    /// CPU build this runs on Burn's Flex backend (NdArray cannot cast).
    Bf16,
}

impl Precision {
    /// The dtype the DiT computes in, when it is not its parameters' f32.
    pub fn compute_dtype(self) -> Option<burn::tensor::FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(burn::tensor::FloatDType::BF16),
        }
    }
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            steps: 1000,
            seed: 0,
            lr: 1e-4,
            schedule: LrSchedule::Cosine { warmup: 100, min_ratio: 0.1 },
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            grad_clip: 1.0,
            grad_accum: 1,
            allreduce_bucket_mb: 25.0,
            collective_timeout_s: 1800.0,
            ema_decay: 0.999,
            time_sampling: TimeSampling::default(),
            shift: Shift::default(),
            task_weights: BTreeMap::new(),
            precision: Precision::F32,
            peak_tflops: None,
            activation_checkpointing: Checkpointing::Off,
            memory_budget_gb: None,
            lora: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Validation loss every K steps (0 = never), over this many batches of the `val` split.
    pub val_every: usize,
    pub val_batches: usize,
    /// Validation also evaluates every sample at this many fixed t, one per equal bin of
    /// [0, 1], logged as `val_loss_by_t` (0 = off).
    pub val_t_bins: usize,
    /// Sample grids every K steps (0 = never) from this many fixed validation samples.
    pub sample_every: usize,
    pub samples: usize,
    pub sample_steps: usize,
    pub guidance: Guidance,
    /// Sample with the EMA weights (when EMA is on).
    pub sample_ema: bool,
    /// The bucket resolution of `unireal-infer`'s default output size for this run's
    /// checkpoints (None: `data.resolution`): a model trained small can be sampled larger.
    pub infer_resolution: Option<u32>,
    /// A benchmark's metrics during training (None: off); see [`EvalLogConfig`].
    pub eval: Option<EvalLogConfig>,
}

/// `log.eval`: every `every` steps, the first `limit` test rows of a benchmark (shards
/// `unireal-data import` wrote) are generated with the sampling weights and scored as
/// `unireal-eval` scores them; the means go to metrics.jsonl as `kind: eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalLogConfig {
    /// `emu-edit`, `magicbrush` or `dreambench`.
    pub protocol: unireal_eval::Protocol,
    /// The test split's shard directory.
    pub shards: PathBuf,
    /// A transformers CLIPModel directory.
    pub clip: PathBuf,
    /// A DINO (ViTModel) or DINOv2 directory.
    pub dino: PathBuf,
    #[serde(default = "default_eval_every")]
    pub every: usize,
    /// Test rows scored (the first ones, the same at every evaluation).
    #[serde(default = "default_eval_limit")]
    pub limit: usize,
    /// DreamBench: the dataset folder the shards were imported from (every reference image).
    #[serde(default)]
    pub references: Option<PathBuf>,
    /// Only rows of this Hugging Face split (`meta.hf_split`: EMU Edit's `test` or `validation`).
    #[serde(default)]
    pub hf_split: Option<String>,
}

fn default_eval_every() -> usize {
    1000
}

fn default_eval_limit() -> usize {
    16
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            val_every: 100,
            val_batches: 4,
            val_t_bins: 4,
            sample_every: 500,
            samples: 4,
            sample_steps: unireal_pipeline::generate::DEFAULT_SAMPLE_STEPS,
            guidance: Guidance::default(),
            sample_ema: true,
            infer_resolution: None,
            eval: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every K steps (and at the end); 0 = only at the end.
    pub every: usize,
    /// Checkpoints kept (oldest removed first).
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 500, keep: 3 }
    }
}

/// A value serde accepted but the trainer cannot use: the key and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidConfig {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Result<(), InvalidConfig> {
    Err(InvalidConfig { key: key.to_string(), message: message.into() })
}

/// What guidance dropout did to one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped {
    pub text: bool,
    pub images: bool,
}

impl DataConfig {
    /// The dropout of one sample from a uniform draw `u` in [0, 1): text alone, images alone
    /// or both, with `drop_text`, `drop_images` and `drop_both` as exclusive probabilities.
    /// Images are only dropped where the sample has inputs.
    pub fn dropout(&self, u: f64, has_inputs: bool) -> Dropped {
        let (t, i, b) = (self.drop_text, self.drop_images, self.drop_both);
        let d = if u < t {
            Dropped { text: true, images: false }
        } else if u < t + i {
            Dropped { text: false, images: true }
        } else if u < t + i + b {
            Dropped { text: true, images: true }
        } else {
            Dropped::default()
        };
        Dropped { images: d.images && has_inputs, ..d }
    }
}

impl TrainConfig {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let d = &self.data;
        if d.sources.is_empty() {
            return invalid("data.sources", "at least one shard directory is needed");
        }
        if let Some(s) = d.sources.iter().find(|s| !(s.weight > 0.0 && s.weight.is_finite())) {
            return invalid("data.sources", format!("weight of {} must be positive", s.path.display()));
        }
        for (k, v) in [("data.batch_size", d.batch_size), ("data.prefetch", d.prefetch), ("data.workers", d.workers)] {
            if v == 0 {
                return invalid(k, "must be at least 1");
            }
        }
        if d.aspect_ratios.is_empty() || d.aspect_ratios.iter().any(|a| a.is_nan() || *a <= 0.0) {
            return invalid("data.aspect_ratios", "a non-empty list of positive width/height ratios");
        }
        if let Some(e) = &self.log.eval {
            if e.every == 0 || e.limit == 0 {
                return invalid("log.eval", "every and limit must be at least 1 (or leave log.eval out)");
            }
        }
        if d.resolution == 0 || self.log.infer_resolution == Some(0) {
            return invalid("data.resolution", "data.resolution and log.infer_resolution must be positive");
        }
        if d.world_size == 0 || d.rank >= d.world_size {
            return invalid("data.rank", format!("{} must be below data.world_size {}", d.rank, d.world_size));
        }
        for (k, p) in
            [("data.drop_text", d.drop_text), ("data.drop_images", d.drop_images), ("data.drop_both", d.drop_both)]
        {
            if !(0.0..=1.0).contains(&p) {
                return invalid(k, format!("{p} is not a probability"));
            }
        }
        if !(0.0..1.0).contains(&d.holdout) {
            return invalid("data.holdout", format!("{} must be in [0, 1)", d.holdout));
        }
        if d.drop_text + d.drop_images + d.drop_both > 1.0 {
            return invalid("data.drop_text", "drop_text + drop_images + drop_both (exclusive events) exceed 1");
        }
        let t = &self.train;
        for (k, v) in [("train.steps", t.steps), ("train.grad_accum", t.grad_accum)] {
            if v == 0 {
                return invalid(k, "must be at least 1");
            }
        }
        if t.peak_tflops.is_some_and(|p| !(p > 0.0 && p.is_finite())) {
            return invalid("train.peak_tflops", "must be a positive number of TFLOP/s");
        }
        if t.memory_budget_gb.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
            return invalid("train.memory_budget_gb", "must be a positive number of GB");
        }
        if !(t.allreduce_bucket_mb > 0.0) {
            return invalid("train.allreduce_bucket_mb", "must be positive");
        }
        if !(t.collective_timeout_s >= 0.0 && t.collective_timeout_s.is_finite()) {
            return invalid("train.collective_timeout_s", "seconds >= 0 (0: wait forever)");
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return invalid("train.ema_decay", format!("{} must be in [0, 1)", t.ema_decay));
        }
        if let Err(m) = t.shift.validate() {
            return invalid("train.shift", m);
        }
        if let Some(lora) = &t.lora {
            if let Err(m) = lora.validate() {
                return invalid("train.lora", m);
            }
            if self.model.init_from.is_none() {
                return invalid(
                    "train.lora",
                    "adapters train on a pretrained DiT: set model.init_from (a FLUX.1 checkpoint)",
                );
            }
            if matches!(self.model.text, unireal_pipeline::TextConfig::Bytes(_)) {
                return invalid(
                    "train.lora",
                    "only the adapters train, so the byte-level text encoder would stay random: use text.kind: t5",
                );
            }
        }
        if unireal_model::DiTConfig::preset(&self.model.preset, 12, 64).is_none() {
            let known = unireal_model::DiTConfig::PRESETS.join(", ");
            return invalid("model.preset", format!("`{}` ({known})", self.model.preset));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `train.activation_checkpointing` reads a bool or a mode's name, writes back what it read
    /// (a run's config.yaml), and names the choices when it cannot.
    #[test]
    fn activation_checkpointing_reads_bools_and_names() {
        let read = |v: &str| serde_yaml::from_str::<Checkpointing>(v);
        for (v, mode) in [
            ("false", Checkpointing::Off),
            ("off", Checkpointing::Off),
            ("true", Checkpointing::Blocks),
            ("blocks", Checkpointing::Blocks),
            ("burn", Checkpointing::Burn),
        ] {
            assert_eq!(read(v).unwrap(), mode, "{v}");
            assert_eq!(read(&serde_yaml::to_string(&mode).unwrap()).unwrap(), mode);
        }
        let err = read("sometimes").unwrap_err().to_string();
        assert!(err.contains("`sometimes` (false, true, blocks or burn)"), "{err}");
    }

    /// Over an even grid of draws the three exclusive events occur at their configured rates,
    /// and a sample without input images loses only its text.
    #[test]
    fn guidance_dropout_rates_are_the_configured_ones() {
        let d = DataConfig { drop_text: 0.1, drop_images: 0.2, drop_both: 0.3, ..DataConfig::default() };
        let n = 10_000;
        let count = |has_inputs: bool| {
            let mut c = [0usize; 4];
            for i in 0..n {
                let x = d.dropout((i as f64 + 0.5) / n as f64, has_inputs);
                c[(x.text as usize) | ((x.images as usize) << 1)] += 1;
            }
            c.map(|k| k as f64 / n as f64)
        };
        let [none, text, images, both] = count(true);
        for (got, want) in [(none, 0.4), (text, 0.1), (images, 0.2), (both, 0.3)] {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        let [none, text, images, both] = count(false);
        assert_eq!((images, both), (0.0, 0.0));
        assert!((text - 0.4).abs() < 1e-3 && (none - 0.6).abs() < 1e-3, "{text} {none}");
    }

    /// `model.init: {kind: lookup}` reaches the fresh DiT: its image-attention norms start at
    /// the configured scale, and the default leaves them at 1.
    #[cfg(feature = "ndarray")]
    #[test]
    fn lookup_init_is_applied_to_a_fresh_model() {
        let device = Default::default();
        let scale = |yaml: &str| {
            let cfg: ModelConfig = serde_yaml::from_str(yaml).unwrap();
            let model = cfg.init::<burn::backend::NdArray>(&device).unwrap();
            let s = model.dit.double_blocks[0].img_attn.query_norm.scale.val().into_data().to_vec::<f32>().unwrap();
            let t = model.dit.double_blocks[0].txt_attn.query_norm.scale.val().into_data().to_vec::<f32>().unwrap();
            (s[0], t[0])
        };
        assert_eq!(scale("{preset: tiny}"), (1.0, 1.0));
        assert_eq!(scale("{preset: tiny, init: {kind: lookup}}"), (3.0, 1.0));
        assert_eq!(scale("{preset: tiny, init: {kind: lookup, gain: 2.0, norm_scale: 2.5}}"), (2.5, 1.0));
        assert!(serde_yaml::from_str::<ModelConfig>("{preset: tiny, init: {kind: lookup, gian: 2}}").is_err());
    }

    #[test]
    fn dropout_probabilities_that_exceed_one_are_refused() {
        let mut cfg: TrainConfig =
            serde_yaml::from_str("{model: {preset: tiny}, data: {sources: [{path: x, weight: 1.0}]}}").unwrap();
        cfg.validate().unwrap();
        (cfg.data.drop_text, cfg.data.drop_images, cfg.data.drop_both) = (0.5, 0.4, 0.2);
        assert_eq!(cfg.validate().unwrap_err().key, "data.drop_text");
        cfg.data.drop_both = 0.0;
        cfg.data.holdout = 1.0;
        assert_eq!(cfg.validate().unwrap_err().key, "data.holdout");
    }

    #[test]
    fn lora_needs_a_pretrained_dit_and_a_frozen_text_encoder() {
        let yaml = |model: &str, lora: &str| {
            format!("{{model: {model}, data: {{sources: [{{path: x}}]}}, train: {{lora: {lora}}}}}")
        };
        let cfg: TrainConfig = serde_yaml::from_str(&yaml("{preset: tiny}", "{rank: 4}")).unwrap();
        let lora = cfg.train.lora.as_ref().unwrap();
        assert_eq!((lora.targets.as_slice(), lora.scale()), ([unireal_model::LoraTarget::Attn].as_slice(), 1.0));
        let e = cfg.validate().unwrap_err();
        assert!(e.key == "train.lora" && e.message.contains("model.init_from"), "{e}");
        let cfg: TrainConfig =
            serde_yaml::from_str(&yaml("{preset: flux-dev, init_from: w}", "{rank: 4, alpha: 8, targets: [mod]}"))
                .unwrap();
        assert_eq!(cfg.train.lora.as_ref().unwrap().scale(), 2.0);
        let e = cfg.validate().unwrap_err();
        assert!(e.key == "train.lora" && e.message.contains("text.kind: t5"), "{e}");
        let t5 = "{preset: flux-dev, init_from: w, text: {kind: t5, path: t}}";
        let cfg: TrainConfig = serde_yaml::from_str(&yaml(t5, "{rank: 4}")).unwrap();
        cfg.validate().unwrap();
        let cfg: TrainConfig = serde_yaml::from_str(&yaml(t5, "{rank: 0}")).unwrap();
        assert_eq!(cfg.validate().unwrap_err().key, "train.lora");
        // A resume compares adapters, not spellings.
        use unireal_model::LoraTarget::{Attn, Mlp};
        let a = unireal_model::LoraConfig { rank: 4, alpha: None, targets: vec![Attn, Mlp] };
        assert!(a.same_adapters(&unireal_model::LoraConfig { rank: 4, alpha: Some(4.0), targets: vec![Mlp, Attn] }));
        assert!(!a.same_adapters(&unireal_model::LoraConfig { rank: 4, alpha: Some(8.0), ..a.clone() }));
        assert!(!a.same_adapters(&unireal_model::LoraConfig { targets: vec![Attn], ..a.clone() }));
        let err = serde_yaml::from_str::<TrainConfig>(&yaml(t5, "{rank: 4, targets: [qkv]}")).unwrap_err().to_string();
        assert!(err.contains("qkv") && err.contains("attn"), "{err}");
    }

    /// Every config under configs/train parses; flux-finetune is LoRA, and a full fine-tune
    /// with `--set train.lora=null`.
    #[test]
    fn the_shipped_train_configs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/train");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let cfg: TrainConfig = unireal_core::load_config(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "{n} configs");
        let flux = dir.join("flux-finetune.yaml");
        let cfg: TrainConfig = unireal_core::load_config(&flux, &[]).unwrap();
        assert_eq!(cfg.train.lora.as_ref().map(|l| l.rank), Some(16));
        let full: TrainConfig = unireal_core::load_config(&flux, &["train.lora=null".to_string()]).unwrap();
        assert_eq!(full.train.lora, None);
    }

    #[test]
    fn a_source_filters_by_task_and_names_its_filter() {
        let cfg: TrainConfig = serde_yaml::from_str(
            "{model: {preset: tiny}, data: {sources: [{path: s, weight: 3, tasks: [frame2frame, seg]}, {path: s}]}}",
        )
        .unwrap();
        let [f, all] = &cfg.data.sources[..] else { panic!("two sources") };
        assert_eq!(f.tasks, [unireal_core::Task::Frame2Frame, unireal_core::Task::Seg]);
        assert!(all.tasks.is_empty());
        assert_eq!((f.label().as_str(), all.label().as_str()), ("s [frame2frame, seg]", "s"));
        let err = serde_yaml::from_str::<TrainConfig>(
            "{model: {preset: tiny}, data: {sources: [{path: s, tasks: [frame_to_frame]}]}}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("frame_to_frame") && err.contains("frame2frame"), "{err}");
    }
}
