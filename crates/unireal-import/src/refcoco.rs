//! RefCOCO / RefCOCO+ / RefCOCOg (the REFER layout): `instances.json` (COCO annotations)
//! and `refs(unc).p` (a Python pickle: a list of references, each with an annotation id,
//! a split and sentences). Each sentence becomes a referring-segmentation sample: the COCO
//! image (canvas) + the sentence → the annotation's mask (output), rasterised from its
//! polygons or decoded from its RLE. Units are chunks of `unit_rows` references.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use serde::Deserialize;
use serde_json::{json, Value};
use unireal_core::{index_word, result_word, ImageRole, Split, Task};

use crate::{chunk_units, input_err, Ctx, ImportConfig, ImportError, Importer, Unit, UnitOut};

#[derive(Deserialize)]
struct Instances {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnn>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: i64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct CocoAnn {
    id: i64,
    segmentation: Value,
    #[serde(default)]
    area: f64,
}

#[derive(Deserialize)]
struct Ref {
    ref_id: i64,
    ann_id: i64,
    image_id: i64,
    split: String,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    sent: String,
}

pub(crate) struct RefCoco {
    refs_file: PathBuf,
    refs: Vec<Ref>,
    images: HashMap<i64, CocoImage>,
    anns: HashMap<i64, CocoAnn>,
    images_dir: PathBuf,
    unit_rows: usize,
}

impl RefCoco {
    pub fn new(root: &Path, cfg: &ImportConfig) -> Result<Self, ImportError> {
        let inst_path = root.join("instances.json");
        let refs_file = root.join(&cfg.refs);
        if !inst_path.is_file() || !refs_file.is_file() {
            return Err(input_err(
                root,
                format!("expected instances.json and {} in it (the REFER layout; `--set refs=refs(google).p` for another split)", cfg.refs),
            ));
        }
        let text = std::fs::read(&inst_path).map_err(|e| input_err(&inst_path, e.to_string()))?;
        let inst: Instances = serde_json::from_slice(&text).map_err(|e| input_err(&inst_path, e.to_string()))?;
        let file = std::fs::File::open(&refs_file).map_err(|e| input_err(&refs_file, e.to_string()))?;
        // REFER's pickles come from Python 2: its `str` values are decoded as UTF-8.
        let refs: Vec<Ref> =
            serde_pickle::from_reader(std::io::BufReader::new(file), serde_pickle::DeOptions::new().decode_strings())
                .map_err(|e| input_err(&refs_file, format!("not a REFER references pickle: {e}")))?;
        let candidates: Vec<PathBuf> = cfg
            .images_dir
            .iter()
            .cloned()
            .chain([
                root.join("images"),
                root.join("train2014"),
                root.join("../coco/train2014"),
                root.join("../images/train2014"),
                root.join("../images/mscoco/images/train2014"),
            ])
            .collect();
        let images_dir = candidates.iter().find(|p| p.is_dir()).cloned().ok_or_else(|| {
            input_err(root, "no COCO image folder found: set it with `--set images_dir=PATH/TO/train2014`")
        })?;
        Ok(RefCoco {
            refs_file,
            refs,
            images: inst.images.into_iter().map(|i| (i.id, i)).collect(),
            anns: inst.annotations.into_iter().map(|a| (a.id, a)).collect(),
            images_dir,
            unit_rows: cfg.unit_rows,
        })
    }

    fn mask(&self, ann: &CocoAnn, w: u32, h: u32) -> Result<GrayImage, String> {
        let m = match &ann.segmentation {
            Value::Array(polys) => {
                let polys: Vec<Vec<f64>> = polys
                    .iter()
                    .map(|p| {
                        p.as_array()
                            .ok_or("a polygon is not a list")?
                            .iter()
                            .map(|v| v.as_f64().ok_or("a polygon coordinate is not a number"))
                            .collect::<Result<Vec<f64>, _>>()
                    })
                    .collect::<Result<_, _>>()?;
                rasterize_polygons(&polys, w, h)?
            }
            Value::Object(rle) => {
                let size: Vec<u32> = rle
                    .get("size")
                    .and_then(Value::as_array)
                    .map(|s| s.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect())
                    .unwrap_or_default();
                let [rh, rw] = size[..] else { return Err("RLE without [height, width] size".into()) };
                let counts: Vec<u64> = match rle.get("counts") {
                    Some(Value::String(s)) => rle_from_string(s)?,
                    Some(Value::Array(a)) => {
                        a.iter().map(|v| v.as_u64().ok_or("RLE count is not a number")).collect::<Result<_, _>>()?
                    }
                    _ => return Err("RLE without counts".into()),
                };
                let m = rle_decode(&counts, rw, rh)?;
                unireal_vision::mask::resize_mask(&m, w, h)
            }
            _ => return Err("segmentation is neither polygons nor RLE".into()),
        };
        if unireal_vision::mask::count(&m) == 0 {
            return Err("the mask is empty".into());
        }
        Ok(m)
    }
}

/// Rasterises COCO polygons (`[x1, y1, x2, y2, …]` each, pixel coordinates) into a mask: a
/// pixel is set when its centre lies inside a polygon (even-odd rule per polygon, union over
/// polygons). A polygon with fewer than 3 points, an odd number of coordinates or a
/// non-finite coordinate is an error.
pub fn rasterize_polygons(polys: &[Vec<f64>], w: u32, h: u32) -> Result<GrayImage, String> {
    if polys.is_empty() {
        return Err("no polygon".into());
    }
    let mut m = GrayImage::new(w, h);
    for (k, p) in polys.iter().enumerate() {
        if p.len() < 6 || p.len() % 2 != 0 || p.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "polygon {k} is broken: {} coordinates (need an even number, at least 6, all finite)",
                p.len()
            ));
        }
        let pts: Vec<(f64, f64)> = p.chunks(2).map(|c| (c[0], c[1])).collect();
        let mut xs = Vec::new();
        for y in 0..h {
            let yc = y as f64 + 0.5;
            xs.clear();
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                if (a.1 <= yc && yc < b.1) || (b.1 <= yc && yc < a.1) {
                    xs.push(a.0 + (yc - a.1) * (b.0 - a.0) / (b.1 - a.1));
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks(2) {
                let [xa, xb] = pair else { continue };
                // Pixels whose centre x + 0.5 lies in [xa, xb).
                let x0 = (xa - 0.5).ceil().max(0.0) as i64;
                let x1 = ((xb - 0.5).ceil() as i64).min(w as i64);
                for x in x0..x1 {
                    m.put_pixel(x as u32, y, Luma([255]));
                }
            }
        }
    }
    Ok(m)
}

/// The area of a polygon (shoelace), as COCO's `area` is for polygon annotations.
pub fn polygon_area(p: &[f64]) -> f64 {
    let n = p.len() / 2;
    let mut s = 0.0;
    for i in 0..n {
        let j = (i + 1) % n;
        s += p[2 * i] * p[2 * j + 1] - p[2 * j] * p[2 * i + 1];
    }
    s.abs() / 2.0
}

/// pycocotools' compressed RLE string to run lengths.
pub fn rle_from_string(s: &str) -> Result<Vec<u64>, String> {
    let b = s.as_bytes();
    let (mut p, mut counts) = (0usize, Vec::<i64>::new());
    while p < b.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let c = *b.get(p).ok_or("RLE string ends inside a number")? as i64 - 48;
            if !(0..64).contains(&c) || k > 12 {
                return Err("RLE string has a character out of range".into());
            }
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && (c & 0x10) != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x += counts[counts.len() - 2];
        }
        counts.push(x);
    }
    counts.into_iter().map(|c| u64::try_from(c).map_err(|_| "RLE count is negative".to_string())).collect()
}

/// Run lengths (column-major, starting with background) to a `w × h` mask.
pub fn rle_decode(counts: &[u64], w: u32, h: u32) -> Result<GrayImage, String> {
    let total = w as u64 * h as u64;
    if counts.iter().sum::<u64>() != total {
        return Err(format!("RLE covers {} pixels, the image has {total}", counts.iter().sum::<u64>()));
    }
    let mut m = GrayImage::new(w, h);
    let mut i = 0u64;
    for (k, &c) in counts.iter().enumerate() {
        if k % 2 == 1 {
            for j in i..i + c {
                let (x, y) = ((j / h as u64) as u32, (j % h as u64) as u32);
                m.put_pixel(x, y, Luma([255]));
            }
        }
        i += c;
    }
    Ok(m)
}

impl Importer for RefCoco {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        let label = self.refs_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(chunk_units(&label, &self.refs_file, self.refs.len(), self.unit_rows))
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let mut out = UnitOut::default();
        for r in &self.refs[unit.rows.0..unit.rows.1] {
            let split = match r.split.as_str() {
                "train" => Split::Train,
                "val" => Split::Val,
                _ => Split::Test,
            };
            // The image and mask are shared by the reference's sentences.
            let made = (|| -> Result<_, String> {
                let img =
                    self.images.get(&r.image_id).ok_or(format!("image {} is not in instances.json", r.image_id))?;
                let ann =
                    self.anns.get(&r.ann_id).ok_or(format!("annotation {} is not in instances.json", r.ann_id))?;
                let mask = self.mask(ann, img.width, img.height).map_err(|e| format!("annotation {}: {e}", ann.id))?;
                let canvas = ctx.image_file(ImageRole::Canvas, &self.images_dir.join(&img.file_name))?;
                let mask = unireal_vision::mask::resize_mask(&mask, canvas.width, canvas.height);
                let area = unireal_vision::mask::count(&mask);
                Ok((img, ann, canvas, ctx.mask_image(&mask)?, area))
            })();
            for (k, sent) in r.sentences.iter().enumerate() {
                out.rows += 1;
                let rid = format!("ref {} sentence {k}", r.ref_id);
                match &made {
                    Ok((img, ann, canvas, mask, area)) => {
                        let id = ctx.id(Task::Seg, &[&r.ref_id.to_string(), &k.to_string()]);
                        let base = format!(
                            "Segment {} in {} and give its mask as {}.",
                            sent.sent.trim(),
                            index_word(1),
                            result_word(1)
                        );
                        let meta = json!({
                            "ref_id": r.ref_id, "ann_id": r.ann_id, "image_id": r.image_id, "file_name": img.file_name,
                            "refcoco_split": r.split, "sentence": k, "coco_area": ann.area, "mask_pixels": area,
                        });
                        out.samples.push(ctx.sample(
                            Task::Seg,
                            id,
                            split,
                            base,
                            vec![canvas.clone(), mask.clone()],
                            meta,
                        ));
                    }
                    Err(e) => out.bad(rid, e.clone()),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygons_rasterise_to_their_area() {
        // A 10×6 rectangle with corners on pixel edges covers exactly 60 pixels.
        let m = rasterize_polygons(&[vec![2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 2.0, 9.0]], 20, 20).unwrap();
        assert_eq!(unireal_vision::mask::count(&m), 60);
        // A triangle: within its perimeter of the shoelace area.
        let t = vec![10.0, 10.0, 80.0, 20.0, 40.0, 70.0];
        let m = rasterize_polygons(&[t.clone()], 100, 100).unwrap();
        let (got, want) = (unireal_vision::mask::count(&m) as f64, polygon_area(&t));
        assert!((got - want).abs() < 0.02 * want, "{got} vs {want}");
        assert!(rasterize_polygons(&[vec![1.0, 2.0, 3.0]], 10, 10).is_err());
        assert!(rasterize_polygons(&[vec![1.0, 2.0, 3.0, 4.0, f64::NAN, 1.0]], 10, 10).is_err());
    }

    #[test]
    fn rle_round_trips() {
        // pycocotools encodes counts [3, 2, 5, 4, 1] (a 3×5 mask) as "32513"? Check the
        // decoder against counts with deltas and large numbers instead.
        for counts in [vec![3u64, 2, 5, 4, 1], vec![0, 15], vec![100, 2000, 3, 1897]] {
            let s = encode(&counts);
            assert_eq!(rle_from_string(&s).unwrap(), counts, "{s}");
        }
        let m = rle_decode(&[1, 2, 3], 2, 3).unwrap();
        // Column-major: pixels 1 and 2 are (0, 1) and (0, 2).
        assert_eq!(m.get_pixel(0, 1)[0], 255);
        assert_eq!(m.get_pixel(0, 2)[0], 255);
        assert_eq!(m.get_pixel(0, 0)[0], 0);
        assert!(rle_decode(&[1, 2], 2, 3).is_err());
    }

    /// pycocotools' rleToString, for the test.
    fn encode(counts: &[u64]) -> String {
        let mut s = String::new();
        for (i, &c) in counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= counts[i - 2] as i64;
            }
            loop {
                let mut ch = x & 0x1f;
                x >>= 5;
                let more = if ch & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    ch |= 0x20;
                }
                s.push((ch as u8 + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }
}
