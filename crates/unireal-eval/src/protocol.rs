//! The three protocols: which test rows each reads, which images and captions each metric
//! compares, and the per-sample scores. The definitions and the code each follows are in
//! docs/evaluation.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::RgbImage;
use unireal_core::{ImageRole, Sample, Split};

use crate::metrics::{cosine, difference, pixel_distances, Embedders};
use crate::EvalError;

/// A benchmark and its way of scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// EMU Edit's test set: the edit against its input and the captions.
    EmuEdit,
    /// MagicBrush's test set: EMU Edit's metrics, and MagicBrush's own against the target.
    Magicbrush,
    /// DreamBench: the generation against the prompt and the subject's reference images.
    Dreambench,
}

/// One metric: its column name, the paper's name and how many digits the report prints.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
}

const fn m(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label }
}

/// EMU Edit's five (Table 2's columns).
const EMU: [Metric; 5] =
    [m("clip_dir", "CLIP_dir"), m("clip_im", "CLIP_im"), m("clip_out", "CLIP_out"), m("l1", "L1"), m("dino", "DINO")];
/// MagicBrush's own, against the ground-truth target.
const MAGICBRUSH_GT: [Metric; 5] =
    [m("gt_l1", "L1"), m("gt_l2", "L2"), m("gt_clip_i", "CLIP-I"), m("gt_dino", "DINO"), m("gt_clip_t", "CLIP-T")];
/// DreamBench's three (Table 3's columns).
const DREAMBENCH: [Metric; 3] = [m("clip_t", "CLIP-T"), m("clip_i", "CLIP-I"), m("dino", "DINO")];

impl Protocol {
    /// The `source` of the test rows it reads (the importer's format name).
    pub fn source(self) -> &'static str {
        match self {
            Protocol::EmuEdit => "emu-edit",
            Protocol::Magicbrush => "magicbrush",
            Protocol::Dreambench => "dreambench",
        }
    }

    /// Every metric it computes, in report order.
    pub fn metrics(self) -> Vec<Metric> {
        match self {
            Protocol::EmuEdit => EMU.to_vec(),
            Protocol::Magicbrush => EMU.iter().chain(MAGICBRUSH_GT.iter()).copied().collect(),
            Protocol::Dreambench => DREAMBENCH.to_vec(),
        }
    }

    /// The paper's table(s) this protocol fills: a title and its metrics.
    pub fn tables(self) -> Vec<(&'static str, Vec<Metric>)> {
        match self {
            Protocol::EmuEdit => vec![("EMU Edit test (Table 2)", EMU.to_vec())],
            Protocol::Magicbrush => vec![
                ("MagicBrush test (Table 2)", EMU.to_vec()),
                ("MagicBrush test, MagicBrush's protocol (against the target)", MAGICBRUSH_GT.to_vec()),
            ],
            Protocol::Dreambench => vec![("DreamBench (Table 3)", DREAMBENCH.to_vec())],
        }
    }
}

/// A reference image: stored in the row, or a file of the dataset.
#[derive(Debug, Clone)]
pub enum Reference {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Reference {
    fn load(&self) -> Result<RgbImage, String> {
        match self {
            Reference::Bytes(b) => decode(b),
            Reference::File(p) => {
                let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                decode(&bytes).map_err(|e| format!("{} {e}", p.display()))
            }
        }
    }
}

/// Options of reading test rows.
#[derive(Debug, Clone, Default)]
pub struct RowOptions {
    /// DreamBench: the dataset folder given to `unireal-data import dreambench`; every file of
    /// a row's `meta.subject_images` under it is a reference (else the row's asset images).
    pub references: Option<PathBuf>,
    /// Only rows whose `meta.hf_split` is this (EMU Edit's Hugging Face split).
    pub hf_split: Option<String>,
}

/// A test row as a protocol reads it.
#[derive(Debug, Clone)]
pub struct TestRow {
    pub sample_id: String,
    /// The image to edit (EMU Edit, MagicBrush).
    pub input: Option<Vec<u8>>,
    /// The ground-truth result (MagicBrush).
    pub target: Option<Vec<u8>>,
    /// The subject's reference images (DreamBench).
    pub references: Vec<Reference>,
    pub input_caption: Option<String>,
    /// The output caption (EMU Edit, MagicBrush) or the prompt with the class noun (DreamBench).
    pub output_caption: Option<String>,
    /// The whole sample (generation needs its prompts and roles).
    pub sample: Sample,
}

fn meta_str(s: &Sample, key: &str) -> Option<String> {
    s.meta.get(key).and_then(|v| v.as_str()).map(str::trim).filter(|v| !v.is_empty()).map(String::from)
}

impl TestRow {
    /// The protocol's view of a shard row.
    pub fn new(protocol: Protocol, s: Sample, opts: &RowOptions) -> Self {
        let first = |role: ImageRole| s.images.iter().find(|i| i.role == role).map(|i| i.bytes.clone());
        let (input, target, references) = match protocol {
            Protocol::EmuEdit | Protocol::Magicbrush => {
                (first(ImageRole::Canvas), first(ImageRole::Output), Vec::new())
            }
            Protocol::Dreambench => {
                let listed: Vec<&str> = s
                    .meta
                    .get("subject_images")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                let references = match &opts.references {
                    Some(root) if !listed.is_empty() => listed.iter().map(|f| Reference::File(root.join(f))).collect(),
                    _ => s
                        .images
                        .iter()
                        .filter(|i| i.role == ImageRole::Asset)
                        .map(|i| Reference::Bytes(i.bytes.clone()))
                        .collect(),
                };
                (None, None, references)
            }
        };
        let (input_caption, output_caption) = match protocol {
            Protocol::EmuEdit | Protocol::Magicbrush => (meta_str(&s, "input_caption"), meta_str(&s, "output_caption")),
            Protocol::Dreambench => (None, dreambench_prompt(&s)),
        };
        TestRow { sample_id: s.sample_id.clone(), input, target, references, input_caption, output_caption, sample: s }
    }
}

/// DreamBench's prompt with the class noun in place of the subject's token ("a dog in the
/// jungle"), as the CLIP-T scorers use it: from the importer's `template` and `class`, else
/// the base prompt without its index words.
fn dreambench_prompt(s: &Sample) -> Option<String> {
    if let (Some(t), Some(class)) = (meta_str(s, "template"), meta_str(s, "class")) {
        return Some(t.replacen("{0} ", "", 1).replacen("{0}", "", 1).replacen("{1}", &class, 1));
    }
    let p = s.base_prompt.split_once(':').map(|(_, p)| p).unwrap_or(&s.base_prompt);
    let words: Vec<&str> = p.split_whitespace().filter(|w| !w.starts_with("IMG") && !w.starts_with("RES")).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The test rows of `protocol` in a shard directory (split `test`, its source), in order.
pub fn test_rows(shards: &Path, protocol: Protocol, opts: &RowOptions) -> Result<Vec<TestRow>, EvalError> {
    let reader = unireal_shards::ShardReader::open_dir(shards).map_err(|e| EvalError::Shards(e.to_string()))?;
    let mut rows = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for s in reader {
        let s = s.map_err(|e| EvalError::Shards(e.to_string()))?;
        *seen.entry(format!("{} ({})", s.source, s.split.as_str())).or_default() += 1;
        let split_ok = opts.hf_split.as_ref().is_none_or(|want| meta_str(&s, "hf_split").as_ref() == Some(want));
        if s.split == Split::Test && s.source == protocol.source() && split_ok {
            rows.push(TestRow::new(protocol, s, opts));
        }
    }
    if rows.is_empty() {
        let mut found = seen.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
        if let Some(h) = &opts.hf_split {
            found.push_str(&format!("; none with meta.hf_split `{h}`"));
        }
        return Err(EvalError::NoRows {
            dir: shards.to_path_buf(),
            source_name: protocol.source(),
            found: if found.is_empty() { "no rows".into() } else { found },
        });
    }
    Ok(rows)
}

/// One sample's scores: each metric's value, or why it has none.
#[derive(Debug, Clone, Default)]
pub struct SampleScores {
    pub values: BTreeMap<&'static str, f64>,
    /// Metrics that could not be computed for this sample, with the reason.
    pub missing: BTreeMap<&'static str, String>,
}

/// Decodes an image held in a shard or a file.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, String> {
    image::load_from_memory(bytes).map(|i| i.to_rgb8()).map_err(|e| format!("does not decode: {e}"))
}

/// Scores `generated` for `row` under `protocol`. An input or reference image that does not
/// decode is an error for the sample (it is skipped with the reason); a missing caption only
/// leaves the metrics that need it out.
pub fn score<B: Backend>(
    protocol: Protocol,
    row: &TestRow,
    generated: &RgbImage,
    emb: &Embedders<B>,
) -> Result<SampleScores, String> {
    let mut out = SampleScores::default();
    let gen_clip = emb.clip_images(&[generated]).map_err(|e| e.to_string())?.remove(0);
    let gen_dino = emb.dino_images(&[generated]).map_err(|e| e.to_string())?.remove(0);
    match protocol {
        Protocol::EmuEdit | Protocol::Magicbrush => {
            let input = decode(row.input.as_deref().ok_or("the row has no input (canvas) image")?)
                .map_err(|e| format!("input image {e}"))?;
            let in_clip = emb.clip_images(&[&input]).map_err(|e| e.to_string())?.remove(0);
            let in_dino = emb.dino_images(&[&input]).map_err(|e| e.to_string())?.remove(0);
            out.values.insert("clip_im", cosine(&gen_clip, &in_clip));
            out.values.insert("dino", cosine(&gen_dino, &in_dino));
            out.values.insert("l1", pixel_distances(generated, &input).0);
            let out_text = match &row.output_caption {
                Some(c) => Some(emb.clip_texts(&[c]).map_err(|e| e.to_string())?.remove(0)),
                None => None,
            };
            match &out_text {
                Some(t) => {
                    out.values.insert("clip_out", cosine(&gen_clip, t));
                }
                None => {
                    out.missing.insert("clip_out", "no output_caption in the row's meta".into());
                }
            }
            match (&row.input_caption, &out_text) {
                (Some(c), Some(t_out)) => {
                    let t_in = emb.clip_texts(&[c]).map_err(|e| e.to_string())?.remove(0);
                    out.values.insert("clip_dir", cosine(&difference(&gen_clip, &in_clip), &difference(t_out, &t_in)));
                }
                _ => {
                    out.missing.insert("clip_dir", "needs input_caption and output_caption in the row's meta".into());
                }
            }
            if protocol == Protocol::Magicbrush {
                match &row.target {
                    Some(bytes) => {
                        let target = decode(bytes).map_err(|e| format!("target image {e}"))?;
                        let (l1, l2) = pixel_distances(generated, &target);
                        out.values.insert("gt_l1", l1);
                        out.values.insert("gt_l2", l2);
                        let t_clip = emb.clip_images(&[&target]).map_err(|e| e.to_string())?.remove(0);
                        let t_dino = emb.dino_images(&[&target]).map_err(|e| e.to_string())?.remove(0);
                        out.values.insert("gt_clip_i", cosine(&gen_clip, &t_clip));
                        out.values.insert("gt_dino", cosine(&gen_dino, &t_dino));
                    }
                    None => {
                        for k in ["gt_l1", "gt_l2", "gt_clip_i", "gt_dino"] {
                            out.missing.insert(k, "the row has no target (output) image".into());
                        }
                    }
                }
                match &out_text {
                    Some(t) => {
                        out.values.insert("gt_clip_t", cosine(&gen_clip, t));
                    }
                    None => {
                        out.missing.insert("gt_clip_t", "no output_caption in the row's meta".into());
                    }
                }
            }
        }
        Protocol::Dreambench => {
            if row.references.is_empty() {
                return Err("the row has no reference (asset) image of the subject".into());
            }
            let refs = row
                .references
                .iter()
                .enumerate()
                .map(|(i, r)| r.load().map_err(|e| format!("reference image {}: {e}", i + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&RgbImage> = refs.iter().collect();
            let r_clip = emb.clip_images(&refs).map_err(|e| e.to_string())?;
            let r_dino = emb.dino_images(&refs).map_err(|e| e.to_string())?;
            let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len() as f64;
            out.values.insert("clip_i", mean(r_clip.iter().map(|r| cosine(&gen_clip, r)).collect()));
            out.values.insert("dino", mean(r_dino.iter().map(|r| cosine(&gen_dino, r)).collect()));
            match &row.output_caption {
                Some(p) => {
                    let t = emb.clip_texts(&[p]).map_err(|e| e.to_string())?.remove(0);
                    out.values.insert("clip_t", cosine(&gen_clip, &t));
                }
                None => {
                    out.missing.insert("clip_t", "no prompt in the row".into());
                }
            }
        }
    }
    Ok(out)
}
