//! The metrics' building blocks: CLIP image and text embeddings, DINO image embeddings (each
//! L2-normalised), their cosine, and pixel distances. Which images and captions each metric
//! compares is the protocol's ([`crate::protocol`]).
//!
//! Preprocessing, as the benchmarks' scripts do it:
//! - CLIP: the model directory's `preprocessor_config.json` (for OpenAI's checkpoints: shortest
//!   edge 224 bicubic, centre crop, OpenAI's statistics) with the crop offset rounded as
//!   torchvision's `CenterCrop` rounds it, which is `clip.load`'s transform;
//!   prompts tokenised to the text tower's 77 positions, truncated with the end token kept.
//! - DINO v1 (`ViTModel`): torchvision's `Resize(⌊s·8/7⌋, BICUBIC)`, `CenterCrop(s)`, ImageNet
//!   statistics at the model's `image_size` s (256 → 224 for dino-vits16), as MagicBrush's
//!   `image_eval.py` and Kosmos-G's DreamBench scorer transform images; the class token after
//!   the final LayerNorm is the embedding (torch.hub's `dino_vits16` output).
//! - DINOv2: the directory's processor (256 → 224 bicubic, ImageNet statistics).
//! - L1 / L2: the generated image resized to the reference's size (PIL's bicubic, Pillow's
//!   default for `Image.resize`), both as `ToTensor` makes them (0…1), mean over pixels and
//!   channels of |a − b| and (a − b)².

use std::path::Path;

use burn::prelude::*;
use image::RgbImage;
use unireal_model::image_processor::{pil_resize, CropOffset};
use unireal_model::{
    clip_tokenizer, Clip, ClipConfig, ImageProcessor, Resample, Resize, TextTokenizer, Vit, VitConfig,
};

use crate::EvalError;

/// The CLIP and DINO towers a protocol scores with, and their preprocessing.
pub struct Embedders<B: Backend> {
    clip: Clip<B>,
    clip_proc: ImageProcessor,
    tokenizer: TextTokenizer,
    dino: Vit<B>,
    dino_proc: ImageProcessor,
    device: B::Device,
}

impl<B: Backend> Embedders<B> {
    /// A transformers `CLIPModel` directory (both towers with projections, a tokenizer and
    /// `preprocessor_config.json`) and a DINO directory (`ViTModel` or `Dinov2Model`).
    pub fn load(clip_dir: &Path, dino_dir: &Path, device: &B::Device) -> Result<Self, EvalError> {
        let model = |dir: &Path, e: unireal_model::ModelError| EvalError::Model { dir: dir.to_path_buf(), source: e };
        let (clip, _) = ClipConfig::load::<B>(clip_dir, device).map_err(|e| model(clip_dir, e))?;
        let complete = clip.text_model.is_some()
            && clip.vision_model.is_some()
            && clip.text_projection.is_some()
            && clip.visual_projection.is_some();
        if !complete {
            return Err(model(
                clip_dir,
                unireal_model::ModelError::Config(
                    "the CLIP metrics need a CLIPModel (both towers with their projections), e.g. openai/clip-vit-large-patch14"
                        .into(),
                ),
            ));
        }
        let positions =
            clip.text_model.as_ref().map(|t| t.embeddings.position_embedding.weight.dims()[0]).unwrap_or(77);
        let tokenizer = clip_tokenizer(clip_dir, positions).map_err(|e| model(clip_dir, e))?;
        let mut clip_proc = ImageProcessor::from_dir(clip_dir).map_err(|e| model(clip_dir, e))?;
        // clip.load's transform is torchvision's: its CenterCrop rounds the offset half to even.
        clip_proc.crop_offset = CropOffset::RoundHalfEven;
        let (dino, _) = VitConfig::load::<B>(dino_dir, device).map_err(|e| model(dino_dir, e))?;
        let dino_proc = if dino.embeddings.interpolate {
            ImageProcessor::from_dir(dino_dir).map_err(|e| model(dino_dir, e))?
        } else {
            dino_eval_transform(dino.embeddings.image_size as u32)
        };
        Ok(Embedders { clip, clip_proc, tokenizer, dino, dino_proc, device: device.clone() })
    }

    /// Each image's embedding, one forward per image (processors without a crop give
    /// images of different sizes), L2-normalised.
    fn embed(
        &self,
        proc: &ImageProcessor,
        images: &[&RgbImage],
        forward: impl Fn(Tensor<B, 4>) -> Result<Tensor<B, 2>, unireal_model::ModelError>,
    ) -> Result<Vec<Vec<f32>>, EvalError> {
        images
            .iter()
            .map(|img| {
                let (w, h) = proc.output_size(img.width(), img.height());
                let data = proc.preprocess(img.as_raw(), img.width(), img.height());
                let pixels =
                    Tensor::<B, 1>::from_floats(data.as_slice(), &self.device).reshape([1, 3, h as usize, w as usize]);
                Ok(unit_rows(forward(pixels).map_err(EvalError::Forward)?).remove(0))
            })
            .collect()
    }

    /// CLIP's projected image embeddings, L2-normalised.
    pub fn clip_images(&self, images: &[&RgbImage]) -> Result<Vec<Vec<f32>>, EvalError> {
        self.embed(&self.clip_proc, images, |px| Ok(self.clip.encode_image(px)?.embeds.expect("checked at load")))
    }

    /// CLIP's projected text embeddings, L2-normalised.
    pub fn clip_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EvalError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenizer.encode_to_max_len(texts).map_err(EvalError::Forward)?;
        let (ids, pad) = batch.to_tensors::<B>(&self.device);
        let out = self.clip.encode_text(ids, Some(pad)).map_err(EvalError::Forward)?;
        Ok(unit_rows(out.embeds.expect("checked at load")))
    }

    /// DINO's class tokens, L2-normalised.
    pub fn dino_images(&self, images: &[&RgbImage]) -> Result<Vec<Vec<f32>>, EvalError> {
        self.embed(&self.dino_proc, images, |px| Ok(self.dino.forward(px)?.cls))
    }
}

/// DINO v1's evaluation transform at `size` px: torchvision's `Resize(⌊size·8/7⌋, bicubic)`,
/// `CenterCrop(size)` (offsets rounded half to even), ImageNet statistics.
pub fn dino_eval_transform(size: u32) -> ImageProcessor {
    let mut p = ImageProcessor::imagenet_eval();
    p.resize = Some(Resize::ShortestEdge(size * 8 / 7));
    p.resample = Resample::Bicubic;
    p.crop = Some((size, size));
    p.crop_offset = CropOffset::RoundHalfEven;
    p
}

/// The rows of `[n, d]`, each divided by its L2 norm.
fn unit_rows<B: Backend>(x: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [n, d] = x.dims();
    let v: Vec<f32> = x.into_data().convert::<f32>().to_vec().expect("converted to f32");
    (0..n)
        .map(|i| {
            let r = &v[i * d..(i + 1) * d];
            let norm = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(|x| (*x as f64 / norm) as f32).collect()
        })
        .collect()
}

/// The cosine of two vectors (1 − scipy's cosine distance).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// `a − b`, elementwise.
pub fn difference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// L1 and L2 (mean absolute and mean squared difference on 0…1 pixels) of `generated`
/// against `reference`, the generated image first resized to the reference's size with PIL's
/// bicubic filter.
pub fn pixel_distances(generated: &RgbImage, reference: &RgbImage) -> (f64, f64) {
    let (w, h) = reference.dimensions();
    let g = if generated.dimensions() == (w, h) {
        generated.as_raw().clone()
    } else {
        pil_resize(
            generated.as_raw(),
            generated.width() as usize,
            generated.height() as usize,
            w as usize,
            h as usize,
            Resample::Bicubic,
        )
    };
    let (mut l1, mut l2) = (0.0f64, 0.0f64);
    for (a, b) in g.iter().zip(reference.as_raw()) {
        let d = (*a as f64 - *b as f64) / 255.0;
        l1 += d.abs();
        l2 += d * d;
    }
    let n = g.len().max(1) as f64;
    (l1 / n, l2 / n)
}
