//! transformers' image processors for the vision towers, read from a model directory's
//! `preprocessor_config.json`: `CLIPImageProcessor` (CLIP), `ViTImageProcessor` (DINO v1) and
//! `BitImageProcessor` (DINOv2). Each resizes (to a shortest edge, or to an exact size), centre
//! crops, rescales to [0, 1] and normalises. Resizing is PIL's bilinear or bicubic filter on
//! 8-bit pixels in PIL's fixed-point arithmetic, so the pixels equal those of transformers'
//! PIL processors (and of torchvision's `Resize` on PIL images, which the benchmarks'
//! scripts use).

use std::path::Path;

use crate::ModelError;

/// How an image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The shorter side becomes this many pixels, the longer one keeps the aspect ratio
    /// (truncated), as transformers' `get_resize_output_image_size` does.
    ShortestEdge(u32),
    /// Both sides are set, the aspect ratio is not kept (`size: {height, width}`).
    Exact { width: u32, height: u32 },
}

/// PIL's resampling filters that the processors use (`resample` 2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Bilinear,
    Bicubic,
}

/// How a centre crop's offset is rounded when the margin is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropOffset {
    /// transformers' `center_crop`: `(size - crop) // 2`.
    Floor,
    /// torchvision's `CenterCrop`: `int(round((size - crop) / 2))`, halves to even.
    RoundHalfEven,
}

impl CropOffset {
    fn offset(self, margin: i64) -> i64 {
        match self {
            CropOffset::Floor => margin.div_euclid(2),
            // A crop larger than the image: torchvision pads floor(-margin/2) before it.
            CropOffset::RoundHalfEven if margin < 0 => -((-margin) / 2),
            // margin/2 is an integer or a half; a half rounds to the even neighbour.
            CropOffset::RoundHalfEven => {
                let floor = margin.div_euclid(2);
                if margin.rem_euclid(2) == 1 && floor % 2 != 0 {
                    floor + 1
                } else {
                    floor
                }
            }
        }
    }
}

/// An image processor: resize, centre crop, rescale, normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    pub resize: Option<Resize>,
    pub resample: Resample,
    /// (width, height) of the centre crop.
    pub crop: Option<(u32, u32)>,
    pub crop_offset: CropOffset,
    pub rescale_factor: Option<f32>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// OpenAI CLIP's normalisation (transformers' `OPENAI_CLIP_MEAN` / `_STD`).
const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// ImageNet's (`IMAGENET_DEFAULT_MEAN` / `_STD`), what DINO and DINOv2 use.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ImageProcessor {
    /// OpenAI's CLIP preprocessing at `size` px (224 for ViT-L/14 and ViT-B/32).
    pub fn openai(size: u32) -> Self {
        ImageProcessor {
            resize: Some(Resize::ShortestEdge(size)),
            resample: Resample::Bicubic,
            crop: Some((size, size)),
            crop_offset: CropOffset::Floor,
            rescale_factor: Some(1.0 / 255.0),
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        }
    }

    /// transformers' form of DINO's evaluation transform (shortest edge 256 bicubic, centre
    /// crop 224 with a floored offset, ImageNet normalisation): facebook/dinov2-*'s
    /// `preprocessor_config.json`.
    pub fn imagenet_eval() -> Self {
        ImageProcessor {
            resize: Some(Resize::ShortestEdge(256)),
            resample: Resample::Bicubic,
            crop: Some((224, 224)),
            crop_offset: CropOffset::Floor,
            rescale_factor: Some(1.0 / 255.0),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Reads `preprocessor_config.json`. Its `image_processor_type` (or the older
    /// `feature_extractor_type`) decides the defaults of absent keys as transformers does:
    /// ViT's processor resizes to a square with bilinear filtering and normalises by 0.5,
    /// CLIP's and BiT's resize the shortest edge with bicubic filtering and normalise by
    /// OpenAI's statistics. Only `resample` 2 (bilinear) and 3 (bicubic) are supported.
    pub fn from_json(path: &Path) -> Result<Self, ModelError> {
        let err = |m: String| ModelError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let kind = v["image_processor_type"].as_str().or_else(|| v["feature_extractor_type"].as_str()).unwrap_or("");
        let vit = kind.starts_with("ViTImageProcessor") || kind.starts_with("ViTFeatureExtractor");
        let on = |k: &str| v[k].as_bool().unwrap_or(true);
        let resample = match v["resample"].as_u64().unwrap_or(if vit { 2 } else { 3 }) {
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            other => return Err(err(format!("resample {other} is not supported (2, bilinear, or 3, bicubic)"))),
        };
        let resize = if on("do_resize") {
            let s = &v["size"];
            Some(match (s["shortest_edge"].as_u64(), s["height"].as_u64(), s["width"].as_u64(), s.as_u64()) {
                (Some(e), ..) => Resize::ShortestEdge(e as u32),
                (None, Some(h), Some(w), _) => Resize::Exact { width: w as u32, height: h as u32 },
                // An integer size: a square for ViT's processor (`default_to_square`), the
                // shortest edge for the others.
                (.., Some(n)) if vit => Resize::Exact { width: n as u32, height: n as u32 },
                (.., Some(n)) => Resize::ShortestEdge(n as u32),
                _ if s.is_null() && vit => Resize::Exact { width: 224, height: 224 },
                _ => {
                    return Err(err(format!(
                        "`size` {s} is not supported ({{\"shortest_edge\": N}}, {{\"height\": H, \"width\": W}} or N)"
                    )))
                }
            })
        } else {
            None
        };
        // ViT's processor has no centre crop unless asked for.
        let crop = if v["do_center_crop"].as_bool().unwrap_or(!vit) {
            let c = &v["crop_size"];
            let (h, w) = match (c["height"].as_u64(), c["width"].as_u64(), c.as_u64()) {
                (Some(h), Some(w), _) => (h, w),
                (_, _, Some(s)) => (s, s),
                _ => return Err(err(format!("`crop_size` {c} has no height and width"))),
            };
            Some((w as u32, h as u32))
        } else {
            None
        };
        let triple = |k: &str, default: [f32; 3]| -> Result<[f32; 3], ModelError> {
            match v.get(k) {
                None => Ok(default),
                Some(a) => {
                    let xs: Vec<f32> =
                        a.as_array().into_iter().flatten().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
                    xs.try_into().map_err(|_| err(format!("`{k}` is not three numbers")))
                }
            }
        };
        let (mean, std) = if vit { ([0.5; 3], [0.5; 3]) } else { (OPENAI_MEAN, OPENAI_STD) };
        let normalize = on("do_normalize");
        Ok(ImageProcessor {
            resize,
            resample,
            crop,
            crop_offset: CropOffset::Floor,
            rescale_factor: on("do_rescale").then(|| v["rescale_factor"].as_f64().unwrap_or(1.0 / 255.0) as f32),
            mean: if normalize { triple("image_mean", mean)? } else { [0.0; 3] },
            std: if normalize { triple("image_std", std)? } else { [1.0; 3] },
        })
    }

    /// `DIR/preprocessor_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        Self::from_json(&dir.join("preprocessor_config.json"))
    }

    /// The output side lengths (width, height) for an input of `width × height`.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (w, h) = self.resized(width, height);
        self.crop.unwrap_or((w, h))
    }

    fn resized(&self, width: u32, height: u32) -> (u32, u32) {
        match self.resize {
            // transformers' get_resize_output_image_size: the long side truncated.
            Some(Resize::ShortestEdge(s)) if width <= height => (s, (s as u64 * height as u64 / width as u64) as u32),
            Some(Resize::ShortestEdge(s)) => ((s as u64 * width as u64 / height as u64) as u32, s),
            Some(Resize::Exact { width, height }) => (width, height),
            None => (width, height),
        }
    }

    /// Channel-first pixels `[3, out_h, out_w]` (row-major) from interleaved 8-bit RGB.
    pub fn preprocess(&self, rgb: &[u8], width: u32, height: u32) -> Vec<f32> {
        assert_eq!(rgb.len(), 3 * width as usize * height as usize, "RGB buffer of {width}x{height}");
        let (rw, rh) = self.resized(width, height);
        let resized = if (rw, rh) == (width, height) {
            rgb.to_vec()
        } else {
            pil_resize(rgb, width as usize, height as usize, rw as usize, rh as usize, self.resample)
        };
        let (cw, ch) = self.crop.unwrap_or((rw, rh));
        // A crop larger than the image pads with zeros around it.
        let top = self.crop_offset.offset(rh as i64 - ch as i64);
        let left = self.crop_offset.offset(rw as i64 - cw as i64);
        let scale = self.rescale_factor.unwrap_or(1.0);
        let mut out = vec![0.0f32; 3 * (cw * ch) as usize];
        for c in 0..3 {
            for y in 0..ch as i64 {
                for x in 0..cw as i64 {
                    let (sy, sx) = (y + top, x + left);
                    let raw = if (0..rh as i64).contains(&sy) && (0..rw as i64).contains(&sx) {
                        resized[(sy as usize * rw as usize + sx as usize) * 3 + c] as f32
                    } else {
                        0.0
                    };
                    out[(c * ch as usize + y as usize) * cw as usize + x as usize] =
                        (raw * scale - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }
}

impl Resample {
    /// PIL's filter support (half-width at scale 1).
    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    /// PIL's filter kernels: the triangle, and the cubic with a = −0.5.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear if x < 1.0 => 1.0 - x,
            Resample::Bilinear => 0.0,
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point bits of PIL's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index, the first
/// input index and its integer weights.
fn coefficients(in_size: usize, out_size: usize, filter: Resample) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut w: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|k| *k /= total);
            }
            let fixed = w
                .iter()
                .map(|&k| (k * (1i64 << PRECISION_BITS) as f64 + if k < 0.0 { -0.5 } else { 0.5 }) as i64)
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `PIL.Image.resize((out_w, out_h), filter)` on interleaved RGB: a horizontal pass to 8 bits,
/// then a vertical one, in PIL's fixed-point arithmetic, so the pixels match PIL's.
pub fn pil_resize(rgb: &[u8], w: usize, h: usize, out_w: usize, out_h: usize, filter: Resample) -> Vec<u8> {
    let round = 1i64 << (PRECISION_BITS - 1);
    let horizontal = if out_w == w {
        rgb.to_vec()
    } else {
        let coeffs = coefficients(w, out_w, filter);
        let mut tmp = vec![0u8; out_w * h * 3];
        for y in 0..h {
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut ss = round;
                    for (i, &kk) in k.iter().enumerate() {
                        ss += rgb[(y * w + xmin + i) * 3 + c] as i64 * kk;
                    }
                    tmp[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        tmp
    };
    if out_h == h {
        return horizontal;
    }
    let coeffs = coefficients(h, out_h, filter);
    let mut out = vec![0u8; out_w * out_h * 3];
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..3 {
                let mut ss = round;
                for (i, &kk) in k.iter().enumerate() {
                    ss += horizontal[((ymin + i) * out_w + x) * 3 + c] as i64 * kk;
                }
                out[(yy * out_w + x) * 3 + c] = clip8(ss);
            }
        }
    }
    out
}

/// PyTorch's `interpolate(mode="bicubic", align_corners=False)` of a `[h, w, d]` grid
/// (row-major, channels last) to `[out_h, out_w, d]`: cubic convolution with a = −0.75 on
/// source coordinates `(i + 0.5)·in/out − 0.5`, border samples repeated.
pub fn torch_bicubic(x: &[f32], h: usize, w: usize, d: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let c1 = |t: f64| ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let c2 = |t: f64| ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A;
    let taps = |in_size: usize, out_size: usize, i: usize| -> ([usize; 4], [f64; 4]) {
        let real = (i as f64 + 0.5) * in_size as f64 / out_size as f64 - 0.5;
        let base = real.floor();
        let t = real - base;
        let at = |k: i64| (base as i64 + k).clamp(0, in_size as i64 - 1) as usize;
        ([at(-1), at(0), at(1), at(2)], [c2(t + 1.0), c1(t), c1(1.0 - t), c2(2.0 - t)])
    };
    let mut out = vec![0.0f32; out_h * out_w * d];
    for oy in 0..out_h {
        let (ys, wy) = taps(h, out_h, oy);
        for ox in 0..out_w {
            let (xs, wx) = taps(w, out_w, ox);
            for c in 0..d {
                let mut acc = 0.0f64;
                for (yi, &y) in ys.iter().enumerate() {
                    for (xi, &xx) in xs.iter().enumerate() {
                        acc += wy[yi] * wx[xi] * x[(y * w + xx) * d + c] as f64;
                    }
                }
                out[(oy * out_w + ox) * d + c] = acc as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_weights_sum_to_one_in_fixed_point() {
        for filter in [Resample::Bilinear, Resample::Bicubic] {
            for (input, output) in [(500, 30), (30, 30), (7, 30), (451, 224)] {
                for (_, k) in coefficients(input, output, filter) {
                    let sum: i64 = k.iter().sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{input}->{output}: {sum}");
                }
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_the_crop_is_centred() {
        let p = ImageProcessor::openai(8);
        assert_eq!(p.resized(20, 10), (16, 8));
        assert_eq!(p.resized(10, 25), (8, 20));
        let rgb: Vec<u8> = (0..20 * 10).flat_map(|_| [200u8, 100, 50]).collect();
        let out = p.preprocess(&rgb, 20, 10);
        assert_eq!(out.len(), 3 * 8 * 8);
        for (c, v) in [200.0f32, 100.0, 50.0].iter().enumerate() {
            let want = (v / 255.0 - p.mean[c]) / p.std[c];
            assert!(out[c * 64..(c + 1) * 64].iter().all(|x| (x - want).abs() < 1e-5), "channel {c}");
        }
    }

    #[test]
    fn an_integer_size_is_a_square_for_vit_and_a_shortest_edge_for_clip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preprocessor_config.json");
        std::fs::write(&path, r#"{"feature_extractor_type": "ViTFeatureExtractor", "size": 224}"#).unwrap();
        let vit = ImageProcessor::from_json(&path).unwrap();
        assert_eq!(
            (vit.resize, vit.resample, vit.crop, vit.mean),
            (Some(Resize::Exact { width: 224, height: 224 }), Resample::Bilinear, None, [0.5; 3])
        );
        assert_eq!(vit.output_size(640, 480), (224, 224));
        std::fs::write(&path, r#"{"image_processor_type": "CLIPImageProcessor", "size": 224, "crop_size": 224}"#)
            .unwrap();
        let clip = ImageProcessor::from_json(&path).unwrap();
        assert_eq!((clip.resize, clip.resample), (Some(Resize::ShortestEdge(224)), Resample::Bicubic));
        std::fs::write(&path, r#"{"resample": 0}"#).unwrap();
        let err = ImageProcessor::from_json(&path).unwrap_err().to_string();
        assert!(err.contains("preprocessor_config.json") && err.contains("resample 0"), "{err}");
    }

    #[test]
    fn torchvision_rounds_crop_offsets_half_to_even() {
        // Python: int(round(m / 2)) for m = 0..=7.
        let want = [0, 0, 1, 2, 2, 2, 3, 4];
        for (m, w) in want.iter().enumerate() {
            assert_eq!(CropOffset::RoundHalfEven.offset(m as i64), *w, "margin {m}");
        }
        assert_eq!(CropOffset::Floor.offset(3), 1);
        // Larger crops pad floor(-m / 2) before the image: offsets -1, -1, -3 for m = -3, -2, -7.
        for (m, w) in [(-3, -1), (-2, -1), (-7, -3)] {
            assert_eq!(CropOffset::RoundHalfEven.offset(m), w, "margin {m}");
        }
    }

    #[test]
    fn torch_bicubic_keeps_a_grid_of_its_own_size_and_a_constant() {
        let x: Vec<f32> = (0..3 * 3 * 2).map(|i| i as f32).collect();
        assert_eq!(torch_bicubic(&x, 3, 3, 2, 3, 3), x);
        let flat = vec![0.25f32; 5 * 5];
        assert!(torch_bicubic(&flat, 5, 5, 1, 2, 3).iter().all(|v| (v - 0.25).abs() < 1e-6));
    }
}
