//! Binary masks (`GrayImage`, 0 = background, 255 = object): connected components, closing,
//! hole filling, the UniReal toolkit's mask filters, crops on white and background fills.
//!
//! The filters, in the toolkit's order: components under `min_component` of the image are
//! dropped, a `closing × closing` square closing joins what is left, and the mask is kept
//! when it covers `min_area`–`max_area` of the image, touches at most `max_borders` image
//! borders and overlaps every mask kept before it by less than `max_overlap` (intersection
//! over the smaller mask's area).

use image::{GrayImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// A binary mask: 0 or 255 per pixel.
pub type Mask = GrayImage;

/// The mask filters; defaults are the UniReal data toolkit's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskFilter {
    /// Connected components smaller than this fraction of the image are dropped.
    pub min_component: f64,
    /// Side of the square structuring element of the closing (odd; 1 = no closing).
    pub closing: u32,
    /// A mask must cover at least this fraction of the image ...
    pub min_area: f64,
    /// ... and at most this fraction.
    pub max_area: f64,
    /// Image borders (0–4) a mask may touch.
    pub max_borders: u32,
    /// Largest overlap (intersection / smaller area) with a mask kept before.
    pub max_overlap: f64,
}

impl Default for MaskFilter {
    fn default() -> Self {
        MaskFilter { min_component: 0.01, closing: 5, min_area: 0.01, max_area: 0.36, max_borders: 1, max_overlap: 0.8 }
    }
}

impl MaskFilter {
    /// The first value out of range, named by key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.min_component) {
            return Err("min_component: must lie in [0, 1)".into());
        }
        if self.closing == 0 || self.closing % 2 == 0 || self.closing > 31 {
            return Err("closing: must be an odd size in 1..=31".into());
        }
        if !(0.0..=1.0).contains(&self.min_area)
            || !(0.0..=1.0).contains(&self.max_area)
            || self.min_area >= self.max_area
        {
            return Err("min_area / max_area: need 0 <= min_area < max_area <= 1".into());
        }
        if self.max_borders > 4 {
            return Err("max_borders: must lie in 0..=4".into());
        }
        if !(0.0..=1.0).contains(&self.max_overlap) {
            return Err("max_overlap: must lie in [0, 1]".into());
        }
        Ok(())
    }
}

/// Why a mask was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    TooSmall,
    TooLarge,
    TouchesBorders,
    Overlaps,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooSmall => "too_small",
            Rejection::TooLarge => "too_large",
            Rejection::TouchesBorders => "touches_borders",
            Rejection::Overlaps => "overlaps",
        }
    }
}

/// A mask from any non-zero pixel of a gray image.
pub fn binarize(img: &GrayImage, level: u8) -> Mask {
    let raw = img.as_raw().iter().map(|&v| if v > level { 255 } else { 0 }).collect();
    GrayImage::from_raw(img.width(), img.height(), raw).expect("same size")
}

/// Number of set pixels.
pub fn count(m: &Mask) -> u64 {
    m.as_raw().iter().filter(|&&v| v != 0).count() as u64
}

/// Fraction of the image the mask covers.
pub fn area_fraction(m: &Mask) -> f64 {
    let n = (m.width() as u64 * m.height() as u64).max(1);
    count(m) as f64 / n as f64
}

/// Bounding box `[x0, y0, x1, y1)` of the set pixels, or None for an empty mask.
pub fn bbox(m: &Mask) -> Option<[u32; 4]> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in m.enumerate_pixels() {
        if p[0] != 0 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    (x0 != u32::MAX).then_some([x0, y0, x1, y1])
}

/// Centroid as fractions of width and height (the image centre for an empty mask).
pub fn centroid(m: &Mask) -> [f64; 2] {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0u64);
    for (x, y, p) in m.enumerate_pixels() {
        if p[0] != 0 {
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
            n += 1;
        }
    }
    if n == 0 {
        return [0.5, 0.5];
    }
    [sx / n as f64 / m.width() as f64, sy / n as f64 / m.height() as f64]
}

/// Number of image borders (0–4) the mask touches.
pub fn borders_touched(m: &Mask) -> u32 {
    let (w, h) = m.dimensions();
    if w == 0 || h == 0 {
        return 0;
    }
    let row = |y: u32| (0..w).any(|x| m.get_pixel(x, y)[0] != 0);
    let col = |x: u32| (0..h).any(|y| m.get_pixel(x, y)[0] != 0);
    row(0) as u32 + row(h - 1) as u32 + col(0) as u32 + col(w - 1) as u32
}

/// Intersection over the smaller mask's area (0 when either is empty).
pub fn overlap(a: &Mask, b: &Mask) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "overlap needs masks of the same size");
    let (mut na, mut nb, mut both) = (0u64, 0u64, 0u64);
    for (&pa, &pb) in a.as_raw().iter().zip(b.as_raw()) {
        na += (pa != 0) as u64;
        nb += (pb != 0) as u64;
        both += (pa != 0 && pb != 0) as u64;
    }
    let small = na.min(nb);
    if small == 0 {
        0.0
    } else {
        both as f64 / small as f64
    }
}

/// A run of set pixels: `(row, first column, end column)`.
type Run = (u32, u32, u32);

/// The runs of set pixels of a mask, row by row.
fn runs(m: &Mask) -> Vec<Run> {
    let w = m.width() as usize;
    let mut out = Vec::new();
    if w == 0 {
        return out;
    }
    for (y, row) in m.as_raw().chunks_exact(w).enumerate() {
        let mut x = 0;
        while let Some(start) = row[x..].iter().position(|&p| p != 0) {
            let x0 = x + start;
            let x1 = row[x0..].iter().position(|&p| p == 0).map_or(w, |n| x0 + n);
            out.push((y as u32, x0 as u32, x1 as u32));
            x = x1;
            if x == w {
                break;
            }
        }
    }
    out
}

/// 8-connected components over runs: the mask's runs, each run's component, and the pixel
/// count of each component. Components are numbered in raster order of their first pixel,
/// as imageproc's `connected_components` labels them. Any non-zero pixel is set (imageproc
/// would also split touching pixels of different non-zero values; masks here are 0/255).
fn labelled(m: &Mask) -> (Vec<Run>, Vec<usize>, Vec<u64>) {
    let runs = runs(m);
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    // Runs of the previous row are [prev, cur); a run touches one above it (8-connected)
    // when their column spans overlap once widened by one.
    let (mut prev, mut cur) = (0, 0);
    for i in 0..runs.len() {
        let (y, x0, x1) = runs[i];
        if i == 0 || runs[i - 1].0 != y {
            (prev, cur) = if i > 0 && runs[i - 1].0 + 1 == y { (cur, i) } else { (i, i) };
        }
        for j in prev..cur {
            let (_, p0, p1) = runs[j];
            if p1 < x0 {
                continue;
            }
            if p0 > x1 {
                break;
            }
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            // The older run's root stays root: every root is its component's first run.
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut label = vec![usize::MAX; runs.len()];
    let mut sizes = Vec::new();
    let mut of_run = Vec::with_capacity(runs.len());
    for i in 0..runs.len() {
        let r = root(&mut parent, i);
        if label[r] == usize::MAX {
            label[r] = sizes.len();
            sizes.push(0);
        }
        sizes[label[r]] += (runs[i].2 - runs[i].1) as u64;
        of_run.push(label[r]);
    }
    (runs, of_run, sizes)
}

/// A mask of `m`'s size with the given runs set.
fn from_runs<'a>(m: &Mask, runs: impl Iterator<Item = &'a Run>) -> Mask {
    let w = m.width() as usize;
    let mut raw = vec![0u8; w * m.height() as usize];
    for &(y, x0, x1) in runs {
        raw[y as usize * w + x0 as usize..y as usize * w + x1 as usize].fill(255);
    }
    GrayImage::from_raw(m.width(), m.height(), raw).expect("sized")
}

/// The 8-connected components of a mask, largest first (ties in raster order of their first
/// pixel), each as its own mask.
pub fn components(m: &Mask) -> Vec<Mask> {
    let (runs, of_run, sizes) = labelled(m);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&l| (std::cmp::Reverse(sizes[l]), l));
    order.into_iter().map(|l| from_runs(m, runs.iter().zip(&of_run).filter(|(_, &c)| c == l).map(|(r, _)| r))).collect()
}

/// The mask without its 8-connected components smaller than `min_pixels`.
pub fn remove_small_components(m: &Mask, min_pixels: u64) -> Mask {
    let (runs, of_run, sizes) = labelled(m);
    from_runs(m, runs.iter().zip(&of_run).filter(|(_, &c)| sizes[c] >= min_pixels).map(|(r, _)| r))
}

/// Morphological closing with a `size × size` square (size odd; 1 returns the mask).
///
/// The image is padded by the radius first, so that a mask touching a border is not eroded
/// away from it.
pub fn close(m: &Mask, size: u32) -> Mask {
    let r = size / 2;
    if r == 0 || m.width() == 0 || m.height() == 0 {
        return m.clone();
    }
    let (w, h) = (m.width() as usize, m.height() as usize);
    let r = r as usize;
    let (pw, ph) = (w + 2 * r, h + 2 * r);
    // Binarised and padded by r, the border rows and columns replicated, so that the erosion
    // sees the object continue outside.
    let src = m.as_raw();
    let mut padded = vec![0u8; pw * ph];
    for y in 0..ph {
        let sy = y.saturating_sub(r).min(h - 1);
        let (row, out) = (&src[sy * w..(sy + 1) * w], &mut padded[y * pw..(y + 1) * pw]);
        for (o, &v) in out[r..r + w].iter_mut().zip(row) {
            *o = if v != 0 { 255 } else { 0 };
        }
        let (first, last) = (out[r], out[r + w - 1]);
        out[..r].fill(first);
        out[r + w..].fill(last);
    }
    let closed = square_filter(&square_filter(&padded, pw, ph, r, u8::max), pw, ph, r, u8::min);
    let raw = (0..h).flat_map(|y| closed[(y + r) * pw + r..(y + r) * pw + r + w].iter().copied()).collect();
    GrayImage::from_raw(w as u32, h as u32, raw).expect("sized")
}

/// Max (dilation) or min (erosion) of a binary image over the `(2r+1)²` square around each
/// pixel, the window clipped at the image's edges: separable, a row pass then a column pass,
/// each a few shifted slice operations the compiler vectorises. The same as imageproc's
/// `dilate`/`erode` with `Norm::LInf`, which go through a full distance transform.
fn square_filter(src: &[u8], w: usize, h: usize, r: usize, op: impl Fn(u8, u8) -> u8 + Copy) -> Vec<u8> {
    let mut rows = src.to_vec();
    for (out, row) in rows.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
        for d in 1..=r.min(w.saturating_sub(1)) {
            for (o, &v) in out[..w - d].iter_mut().zip(&row[d..]) {
                *o = op(*o, v);
            }
            for (o, &v) in out[d..].iter_mut().zip(&row[..w - d]) {
                *o = op(*o, v);
            }
        }
    }
    let mut out = rows.clone();
    for y in 0..h {
        for d in 1..=r {
            for yy in [y.checked_sub(d), Some(y + d).filter(|&v| v < h)].into_iter().flatten() {
                let (o, v) = (&mut out[y * w..(y + 1) * w], &rows[yy * w..(yy + 1) * w]);
                for (o, &v) in o.iter_mut().zip(v) {
                    *o = op(*o, v);
                }
            }
        }
    }
    out
}

/// Fills holes: background pixels not 4-connected to the image border become set.
pub fn fill_holes(m: &Mask) -> Mask {
    let (w, h) = (m.width() as usize, m.height() as usize);
    if w == 0 || h == 0 {
        return m.clone();
    }
    let raw = m.as_raw();
    let mut outside = vec![false; w * h];
    // Span filling from every border pixel: a seed's whole run of unset pixels in its row is
    // marked at once, and the runs above and below it become seeds.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for x in 0..w {
        stack.push((x, 0));
        stack.push((x, h - 1));
    }
    for y in 0..h {
        stack.push((0, y));
        stack.push((w - 1, y));
    }
    let open = |outside: &[bool], i: usize| raw[i] == 0 && !outside[i];
    while let Some((x, y)) = stack.pop() {
        let row = y * w;
        if !open(&outside, row + x) {
            continue;
        }
        let (mut l, mut r) = (x, x);
        while l > 0 && open(&outside, row + l - 1) {
            l -= 1;
        }
        while r + 1 < w && open(&outside, row + r + 1) {
            r += 1;
        }
        outside[row + l..=row + r].fill(true);
        for ny in [y.wrapping_sub(1), y + 1] {
            if ny >= h {
                continue;
            }
            let mut inside_run = false;
            for nx in l..=r {
                let o = open(&outside, ny * w + nx);
                if o && !inside_run {
                    stack.push((nx, ny));
                }
                inside_run = o;
            }
        }
    }
    let out = outside.iter().map(|&o| if o { 0 } else { 255 }).collect();
    GrayImage::from_raw(m.width(), m.height(), out).expect("same size")
}

/// The toolkit's clean-up of one mask: small components dropped, then the closing.
pub fn clean(m: &Mask, f: &MaskFilter) -> Mask {
    let total = m.width() as f64 * m.height() as f64;
    let min_pixels = (f.min_component * total).ceil().max(1.0) as u64;
    close(&remove_small_components(m, min_pixels), f.closing)
}

/// Whether a cleaned mask passes the area and border filters.
pub fn check(m: &Mask, f: &MaskFilter) -> Result<(), Rejection> {
    let a = area_fraction(m);
    if a < f.min_area || a == 0.0 {
        return Err(Rejection::TooSmall);
    }
    if a > f.max_area {
        return Err(Rejection::TooLarge);
    }
    if borders_touched(m) > f.max_borders {
        return Err(Rejection::TouchesBorders);
    }
    Ok(())
}

/// Applies the filters to candidate masks in order: cleans each, checks it, and keeps it
/// when it overlaps no kept mask by `max_overlap` or more. Returns, per candidate, the
/// cleaned mask or why it was dropped.
pub fn filter_masks(candidates: &[Mask], f: &MaskFilter) -> Vec<Result<Mask, Rejection>> {
    let mut kept: Vec<Mask> = Vec::new();
    let mut out = Vec::with_capacity(candidates.len());
    for m in candidates {
        let c = clean(m, f);
        let r = check(&c, f).and_then(|()| {
            if kept.iter().any(|k| overlap(k, &c) >= f.max_overlap) {
                Err(Rejection::Overlaps)
            } else {
                Ok(())
            }
        });
        out.push(match r {
            Ok(()) => {
                kept.push(c.clone());
                Ok(c)
            }
            Err(e) => Err(e),
        });
    }
    out
}

/// Scales a mask to `(w, h)` (bilinear, then thresholded at half), keeping edges smooth.
pub fn resize_mask(m: &Mask, w: u32, h: u32) -> Mask {
    if m.dimensions() == (w, h) {
        return m.clone();
    }
    binarize(&crate::resize_gray(m, w, h), 127)
}

/// Grows a mask by `r` pixels (square).
pub fn dilate(m: &Mask, r: u32) -> Mask {
    if r == 0 || m.width() == 0 || m.height() == 0 {
        return m.clone();
    }
    let (w, h) = (m.width() as usize, m.height() as usize);
    let bin: Vec<u8> = m.as_raw().iter().map(|&v| if v != 0 { 255 } else { 0 }).collect();
    GrayImage::from_raw(w as u32, h as u32, square_filter(&bin, w, h, r as usize, u8::max)).expect("sized")
}

/// The object on a white background, cropped to its bounding box grown by `margin` (a
/// fraction of the box's longer side). `mask` must have the image's size.
pub fn crop_on_white(img: &RgbImage, mask: &Mask, margin: f64) -> Option<RgbImage> {
    assert_eq!(img.dimensions(), mask.dimensions(), "crop_on_white needs a mask of the image's size");
    let [x0, y0, x1, y1] = bbox(mask)?;
    let pad = ((x1 - x0).max(y1 - y0) as f64 * margin).round() as u32;
    let (x0, y0) = (x0.saturating_sub(pad), y0.saturating_sub(pad));
    let (x1, y1) = ((x1 + pad).min(img.width()), (y1 + pad).min(img.height()));
    Some(RgbImage::from_fn(x1 - x0, y1 - y0, |x, y| {
        if mask.get_pixel(x0 + x, y0 + y)[0] != 0 {
            *img.get_pixel(x0 + x, y0 + y)
        } else {
            Rgb([255, 255, 255])
        }
    }))
}

/// Each pixel's L∞ (chessboard) distance to the nearest mask pixel, saturating at 255:
/// imageproc's `distance_transform(mask, Norm::LInf)`, by two raster passes over the
/// 8-neighbourhood, which give the exact chessboard distance. An empty mask gives 255
/// everywhere (imageproc gives width + height, which a wide feather would take for "near").
pub fn chessboard_distance(mask: &Mask) -> GrayImage {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let mut d: Vec<u8> = mask.as_raw().iter().map(|&v| if v != 0 { 0 } else { 255 }).collect();
    for y in 0..h {
        for x in 0..w {
            let mut m = d[y * w + x];
            if x > 0 {
                m = m.min(d[y * w + x - 1].saturating_add(1));
            }
            if y > 0 {
                let up = (y - 1) * w;
                m = m.min(d[up + x].saturating_add(1));
                if x > 0 {
                    m = m.min(d[up + x - 1].saturating_add(1));
                }
                if x + 1 < w {
                    m = m.min(d[up + x + 1].saturating_add(1));
                }
            }
            d[y * w + x] = m;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let mut m = d[y * w + x];
            if x + 1 < w {
                m = m.min(d[y * w + x + 1].saturating_add(1));
            }
            if y + 1 < h {
                let down = (y + 1) * w;
                m = m.min(d[down + x].saturating_add(1));
                if x > 0 {
                    m = m.min(d[down + x - 1].saturating_add(1));
                }
                if x + 1 < w {
                    m = m.min(d[down + x + 1].saturating_add(1));
                }
            }
            d[y * w + x] = m;
        }
    }
    GrayImage::from_raw(w as u32, h as u32, d).expect("sized")
}

/// `img` with the pixels under `mask` replaced by `fill` (same size), blended over a
/// `feather`-pixel band at the mask's edge so that no hard seam is left.
pub fn fill_masked(img: &RgbImage, fill: &RgbImage, mask: &Mask, feather: u32) -> RgbImage {
    assert_eq!(img.dimensions(), fill.dimensions());
    assert_eq!(img.dimensions(), mask.dimensions());
    // Weight 1 inside the mask, falling linearly to 0 over `feather` pixels outside it.
    let alpha: GrayImage = if feather == 0 {
        mask.clone()
    } else {
        let dist = chessboard_distance(mask);
        let f = feather + 1;
        let raw =
            dist.as_raw().iter().map(|&d| if d as u32 >= f { 0 } else { (255 * (f - d as u32) / f) as u8 }).collect();
        GrayImage::from_raw(mask.width(), mask.height(), raw).expect("same size")
    };
    let mut out = img.as_raw().clone();
    for ((o, q), &a) in out.chunks_exact_mut(3).zip(fill.as_raw().chunks_exact(3)).zip(alpha.as_raw()) {
        let a = a as u32;
        if a == 0 {
            continue;
        }
        for c in 0..3 {
            o[c] = ((q[c] as u32 * a + o[c] as u32 * (255 - a) + 127) / 255) as u8;
        }
    }
    RgbImage::from_raw(img.width(), img.height(), out).expect("same size")
}

/// Mean RGB under the mask (mid-gray for an empty mask).
pub fn masked_mean(img: &RgbImage, mask: &Mask) -> [f64; 3] {
    let (mut s, mut n) = ([0.0; 3], 0u64);
    for (p, m) in img.pixels().zip(mask.pixels()) {
        if m[0] != 0 {
            for c in 0..3 {
                s[c] += p[c] as f64;
            }
            n += 1;
        }
    }
    if n == 0 {
        return [128.0; 3];
    }
    s.map(|v| v / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;
    use imageproc::distance_transform::Norm;

    #[test]
    fn dilate_and_close_equal_imageprocs_morphology() {
        let mut rand = crate::xorshift(0x0bad_5eed_1234_4321u64);
        let masks = [
            GrayImage::from_fn(61, 43, |_, _| Luma([if rand() % 13 == 0 { 255 } else { 0 }])),
            GrayImage::from_fn(50, 37, |x, y| {
                Luma([if (x / 6 + y / 5) % 3 == 0 && (x + y) % 11 != 0 { 200 } else { 0 }])
            }),
            GrayImage::from_fn(9, 7, |x, y| Luma([if x == 0 || (x, y) == (8, 6) { 255 } else { 0 }])),
        ];
        for (i, m) in masks.iter().enumerate() {
            for r in 1..=4u32 {
                assert_eq!(dilate(m, r), imageproc::morphology::dilate(m, Norm::LInf, r as u8), "mask {i}, r {r}");
                // The closing as before: replicate-padded by r, imageproc's close, cropped.
                let (w, h) = m.dimensions();
                let padded = GrayImage::from_fn(w + 2 * r, h + 2 * r, |x, y| {
                    *m.get_pixel(x.saturating_sub(r).min(w - 1), y.saturating_sub(r).min(h - 1))
                });
                let want =
                    image::imageops::crop_imm(&imageproc::morphology::close(&padded, Norm::LInf, r as u8), r, r, w, h)
                        .to_image();
                assert_eq!(close(m, 2 * r + 1), want, "mask {i}, size {}", 2 * r + 1);
            }
        }
    }

    #[test]
    fn chessboard_distance_equals_imageprocs_transform() {
        let mut rand = crate::xorshift(0x1234_5678_9abc_def1u64);
        // Scattered points, blobs, and distances past 255 (saturation).
        let masks = [
            GrayImage::from_fn(61, 43, |_, _| Luma([if rand() % 97 == 0 { 255 } else { 0 }])),
            GrayImage::from_fn(80, 50, |x, y| {
                Luma([if (x / 9 + y / 7) % 4 == 0 && (x * y) % 5 != 1 { 255 } else { 0 }])
            }),
            GrayImage::from_fn(300, 3, |x, y| Luma([if (x, y) == (2, 1) { 1 } else { 0 }])),
        ];
        for (i, m) in masks.iter().enumerate() {
            let want = imageproc::distance_transform::distance_transform(m, Norm::LInf);
            assert_eq!(chessboard_distance(m), want, "mask {i}");
        }
        // Without a mask pixel imageproc gives w + h; no pixel is near a mask here.
        assert!(chessboard_distance(&GrayImage::new(17, 9)).pixels().all(|p| p[0] == 255));
    }

    fn rect(w: u32, h: u32, r: [u32; 4]) -> Mask {
        GrayImage::from_fn(w, h, |x, y| Luma([if x >= r[0] && x < r[2] && y >= r[1] && y < r[3] { 255 } else { 0 }]))
    }

    fn or(a: &Mask, b: &Mask) -> Mask {
        GrayImage::from_fn(a.width(), a.height(), |x, y| Luma([a.get_pixel(x, y)[0] | b.get_pixel(x, y)[0]]))
    }

    #[test]
    fn measures() {
        let m = rect(100, 50, [10, 10, 30, 20]);
        assert_eq!(count(&m), 200);
        assert!((area_fraction(&m) - 0.04).abs() < 1e-12);
        assert_eq!(bbox(&m), Some([10, 10, 30, 20]));
        let c = centroid(&m);
        assert!((c[0] - 0.2).abs() < 1e-9 && (c[1] - 0.3).abs() < 1e-9);
        assert_eq!(borders_touched(&m), 0);
        assert_eq!(borders_touched(&rect(100, 50, [0, 0, 30, 20])), 2);
        assert_eq!(bbox(&GrayImage::new(4, 4)), None);
    }

    #[test]
    fn components_are_split_largest_first_and_small_ones_dropped() {
        let m = or(&rect(100, 100, [5, 5, 10, 10]), &rect(100, 100, [50, 50, 80, 80]));
        let c = components(&m);
        assert_eq!(c.len(), 2);
        assert_eq!(count(&c[0]), 900);
        assert_eq!(count(&c[1]), 25);
        let r = remove_small_components(&m, 26);
        assert_eq!(count(&r), 900);
    }

    #[test]
    fn components_equal_imageprocs_labelling() {
        use imageproc::region_labelling::{connected_components, Connectivity};
        let mut next = crate::xorshift(7);
        for (w, h, density) in [(1, 1, 2), (7, 1, 2), (1, 9, 2), (40, 30, 3), (97, 61, 5), (200, 120, 8)] {
            // Sparse noise, then grown a little: components of many shapes, some touching
            // only at a corner.
            let noise = GrayImage::from_fn(w, h, |_, _| Luma([if next() % density == 0 { 255 } else { 0 }]));
            for m in [noise.clone(), dilate(&noise, 1)] {
                let labels = connected_components(&m, Connectivity::Eight, Luma([0u8]));
                let n = labels.as_raw().iter().copied().max().unwrap_or(0) as usize;
                let mut sizes = vec![0u64; n + 1];
                labels.as_raw().iter().for_each(|&l| sizes[l as usize] += 1);
                let mut order: Vec<usize> = (1..=n).collect();
                order.sort_by_key(|&l| (std::cmp::Reverse(sizes[l]), l));
                let want: Vec<Mask> = order
                    .iter()
                    .map(|&l| {
                        GrayImage::from_fn(w, h, |x, y| {
                            Luma([if labels.get_pixel(x, y)[0] as usize == l { 255 } else { 0 }])
                        })
                    })
                    .collect();
                assert_eq!(components(&m), want, "{w}x{h}");
                let kept = GrayImage::from_fn(w, h, |x, y| {
                    let l = labels.get_pixel(x, y)[0] as usize;
                    Luma([if l != 0 && sizes[l] >= 3 { 255 } else { 0 }])
                });
                assert_eq!(remove_small_components(&m, 3), kept, "{w}x{h}");
            }
        }
    }

    #[test]
    fn closing_joins_near_parts_and_keeps_border_contact() {
        // Two bars 2 px apart join under a 5×5 closing; a bar on the border stays on it.
        let m = or(&rect(40, 40, [0, 10, 20, 20]), &rect(40, 40, [22, 10, 30, 20]));
        let c = close(&m, 5);
        assert_eq!(components(&c).len(), 1);
        assert_eq!(c.get_pixel(0, 15)[0], 255, "the border column stays set");
        assert_eq!(c.get_pixel(21, 15)[0], 255);
        assert_eq!(close(&m, 1), m);
    }

    #[test]
    fn holes_are_filled() {
        let ring = GrayImage::from_fn(30, 30, |x, y| {
            let inside = (5..25).contains(&x) && (5..25).contains(&y);
            let hole = (10..20).contains(&x) && (10..20).contains(&y);
            Luma([if inside && !hole { 255 } else { 0 }])
        });
        let f = fill_holes(&ring);
        assert_eq!(count(&f), 400);
        // Against a pixel-by-pixel flood from the border on noise of several densities.
        let mut rand = crate::xorshift(11);
        for (w, h, density) in [(1, 1, 2), (9, 1, 3), (1, 7, 3), (33, 21, 2), (64, 48, 3), (80, 60, 5)] {
            let m = GrayImage::from_fn(w, h, |_, _| Luma([if rand() % density == 0 { 0 } else { 255 }]));
            let (wu, hu) = (w as usize, h as usize);
            let mut outside = vec![false; wu * hu];
            let mut stack: Vec<(usize, usize)> = (0..wu)
                .flat_map(|x| [(x, 0), (x, hu - 1)])
                .chain((0..hu).flat_map(|y| [(0, y), (wu - 1, y)]))
                .collect();
            while let Some((x, y)) = stack.pop() {
                if outside[y * wu + x] || m.get_pixel(x as u32, y as u32)[0] != 0 {
                    continue;
                }
                outside[y * wu + x] = true;
                stack.extend(
                    [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)]
                        .into_iter()
                        .filter(|&(a, b)| a < wu && b < hu),
                );
            }
            let want =
                GrayImage::from_fn(w, h, |x, y| Luma([if outside[y as usize * wu + x as usize] { 0 } else { 255 }]));
            assert_eq!(fill_holes(&m), want, "{w}x{h}");
        }
    }

    #[test]
    fn filters_follow_the_toolkit() {
        let f = MaskFilter::default();
        let (w, h) = (100, 100);
        let ok = rect(w, h, [10, 10, 40, 40]); // 9 %
        let tiny = rect(w, h, [60, 60, 65, 65]); // 0.25 %: dropped as a component, then empty
        let big = rect(w, h, [20, 20, 90, 90]); // 49 %
        let corner = rect(w, h, [0, 0, 30, 30]); // two borders
        let dup = rect(w, h, [12, 12, 40, 40]); // inside `ok`
        let r = filter_masks(&[ok.clone(), tiny, big, corner, dup], &f);
        assert_eq!(r[0].as_ref().map(count).ok(), Some(900));
        assert_eq!(r[1], Err(Rejection::TooSmall));
        assert_eq!(r[2], Err(Rejection::TooLarge));
        assert_eq!(r[3], Err(Rejection::TouchesBorders));
        assert_eq!(r[4], Err(Rejection::Overlaps));
        // A small speck next to a kept mask is removed from it.
        let with_speck = or(&ok, &rect(w, h, [80, 80, 82, 82]));
        assert_eq!(count(&clean(&with_speck, &f)), 900);
        assert!(f.validate().is_ok());
        assert!(MaskFilter { closing: 4, ..f.clone() }.validate().unwrap_err().starts_with("closing"));
    }

    #[test]
    fn crops_and_fills() {
        let img = RgbImage::from_pixel(50, 40, Rgb([10, 20, 30]));
        let m = rect(50, 40, [10, 10, 20, 30]);
        let c = crop_on_white(&img, &m, 0.1).unwrap();
        assert_eq!(c.dimensions(), (14, 24)); // 10×20 box grown by 2 px on each side
        assert_eq!(*c.get_pixel(0, 0), Rgb([255, 255, 255]));
        assert_eq!(*c.get_pixel(7, 12), Rgb([10, 20, 30]));
        let fill = RgbImage::from_pixel(50, 40, Rgb([200, 200, 200]));
        let f = fill_masked(&img, &fill, &m, 2);
        assert_eq!(*f.get_pixel(15, 20), Rgb([200, 200, 200]));
        assert_eq!(*f.get_pixel(40, 5), Rgb([10, 20, 30]));
        let edge = f.get_pixel(8, 20)[0];
        assert!(edge > 10 && edge < 200, "feathered edge: {edge}");
        assert_eq!(masked_mean(&img, &m), [10.0, 20.0, 30.0]);
        let up = resize_mask(&m, 100, 80);
        assert!((area_fraction(&up) - area_fraction(&m)).abs() < 0.01);
    }
}
