//! Motion segmentation without a model: a background model over a shot's frames and the
//! regions that differ from it.
//!
//! 1. Each frame of a window around the target frame is aligned to the target by the global
//!    (camera) motion between them — a similarity warp from [`crate::estimate_motion`] — so
//!    that a panning or slowly zooming camera still gives a background; frames that moved too
//!    far are left out.
//! 2. The background is the per-pixel, per-channel temporal median of the aligned frames;
//!    its *support* is the fraction of frames that agree with it there (a low support means
//!    something stood still at that place for much of the window: no clean background).
//! 3. The foreground is where the target differs from the background by more than a level
//!    (largest channel difference); small components are dropped, a closing joins parts,
//!    holes are filled, and each connected component is one moving object.
//! 4. Objects of frame A are matched to objects of frame B by position, size and colour.

use std::borrow::Cow;

use image::{GrayImage, Luma, RgbImage};
use serde::{Deserialize, Serialize};

use crate::mask::{self, Mask};
use crate::GlobalMotion;

/// A background model of a target frame.
#[derive(Debug, Clone)]
pub struct Background {
    pub image: RgbImage,
    /// Per pixel, 255 × the fraction of aligned frames that agree with the median (within
    /// the agreement level); 0 where no frame covered the pixel.
    pub support: GrayImage,
    /// Frames that went into the median.
    pub frames: usize,
}

/// `src` warped into the coordinates of a target frame, given the motion from `src` to the
/// target (content at `p` in `src` is at `c + zoom·(p − c) + (dx·w, dy·h)` in the target),
/// with bilinear sampling. Returns the image and a validity mask (255 where `src` covered).
pub fn warp_to_target(src: &RgbImage, m: &GlobalMotion) -> (RgbImage, Mask) {
    let (w, h) = src.dimensions();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let (tx, ty) = (m.dx * w as f64, m.dy * h as f64);
    let z = if m.zoom.is_finite() && m.zoom > 0.0 { m.zoom } else { 1.0 };
    if tx.abs() < 0.25 && ty.abs() < 0.25 && (z - 1.0).abs() < 1e-4 {
        return (src.clone(), GrayImage::from_pixel(w, h, Luma([255])));
    }
    // The inverse map is separable: a column's source x and a row's source y are computed once.
    let axis = |n: u32, c: f64, t: f64| -> Vec<Option<(usize, usize, f64)>> {
        (0..n)
            .map(|i| {
                // Target pixel centre → source position.
                let p = c + ((i as f64 + 0.5) - c - t) / z - 0.5;
                if p < 0.0 || p > (n - 1) as f64 {
                    return None;
                }
                let p0 = p.floor() as u32;
                Some((p0 as usize, (p0 + 1).min(n - 1) as usize, p - p0 as f64))
            })
            .collect()
    };
    let (cols, rows) = (axis(w, cx, tx), axis(h, cy, ty));
    let mut out = RgbImage::new(w, h);
    let mut valid = GrayImage::new(w, h);
    // The map is monotone: the columns with a source are one span.
    let xa = cols.iter().position(Option::is_some).unwrap_or(0);
    let xb = cols.iter().rposition(Option::is_some).map_or(0, |x| x + 1);
    let span: Vec<(usize, usize, f64)> = cols[xa..xb].iter().map(|c| c.expect("inside the span")).collect();
    let (src, stride) = (src.as_raw(), 3 * w as usize);
    // A source row interpolated horizontally at every column, kept while consecutive target
    // rows read it (the same f64 operations as interpolating per pixel).
    let lerp_row = |y: usize, buf: &mut [f64]| {
        let row = &src[y * stride..][..stride];
        for (b, &(x0, x1, fx)) in buf[3 * xa..3 * xb].chunks_exact_mut(3).zip(&span) {
            for k in 0..3 {
                b[k] = row[3 * x0 + k] as f64 * (1.0 - fx) + row[3 * x1 + k] as f64 * fx;
            }
        }
    };
    let (mut top, mut bot) = (vec![0f64; stride], vec![0f64; stride]);
    let (mut top_y, mut bot_y) = (usize::MAX, usize::MAX);
    let (o, v) = (out.as_mut(), valid.as_mut());
    for (y, row) in rows.iter().enumerate() {
        let Some((y0, y1, fy)) = *row else { continue };
        if top_y != y0 && bot_y == y0 {
            // Moving down a row: the old bottom row is the new top one.
            std::mem::swap(&mut top, &mut bot);
            (top_y, bot_y) = (bot_y, top_y);
        }
        if top_y != y0 {
            lerp_row(y0, &mut top);
            top_y = y0;
        }
        if bot_y != y1 {
            lerp_row(y1, &mut bot);
            bot_y = y1;
        }
        let o = &mut o[y * stride..][3 * xa..3 * xb];
        for ((o, &t), &b) in o.iter_mut().zip(&top[3 * xa..3 * xb]).zip(&bot[3 * xa..3 * xb]) {
            *o = (t * (1.0 - fy) + b * fy + 0.5).clamp(0.0, 255.0) as u8;
        }
        v[y * w as usize..][xa..xb].fill(255);
    }
    (out, valid)
}

/// The per-pixel temporal median of aligned frames (with their validity masks; None means
/// wholly valid); frames that needed no warp are borrowed. `agree`: a frame agrees with the
/// median at a pixel when no channel differs by more than this.
pub fn median_background(frames: &[(Cow<'_, RgbImage>, Option<Mask>)], agree: u8) -> Background {
    assert!(!frames.is_empty(), "median_background needs at least one frame");
    let (w, h) = frames[0].0.dimensions();
    assert!(frames.iter().all(|(f, _)| f.dimensions() == (w, h)), "frames of one size");
    let n = w as usize * h as usize;
    let mut image = vec![0u8; 3 * n];
    let mut support = vec![0u8; n];
    let raws: Vec<(&[u8], Option<&[u8]>)> =
        frames.iter().map(|(f, v)| (f.as_raw().as_slice(), v.as_ref().map(|v| v.as_raw().as_slice()))).collect();
    // Runs of RUN pixels: a sorting network of byte-wise min/max across the frames, which the
    // compiler vectorises over the run's bytes. Where a frame does not cover a pixel, its
    // slot holds 0 or 255 instead, as many of each as keep the covering frames' median at the
    // middle position: with k covering and u others, ⌊(k+u)/2⌋ − ⌊k/2⌋ zeros.
    const RUN: usize = 16;
    let m = frames.len();
    let mut lanes: Vec<[u8; 3 * RUN]> = vec![[0; 3 * RUN]; m];
    let mut covers: Vec<[u8; RUN]> = vec![[1; RUN]; m];
    let mut i = 0;
    while i < n {
        // The last run may be shorter; the lanes' bytes past it are left over and not used.
        let run = RUN.min(n - i);
        let mut k = [0u16; RUN];
        for (c, (_, v)) in covers.iter_mut().zip(&raws) {
            if let Some(v) = v {
                for (c, &b) in c.iter_mut().zip(&v[i..i + run]) {
                    *c = (b != 0) as u8;
                }
            }
            for (k, &c) in k[..run].iter_mut().zip(c.iter()) {
                *k += c as u16;
            }
        }
        let all = k[..run].iter().all(|&k| k as usize == m);
        let mut zeros = [0u16; RUN];
        if !all {
            for (z, &k) in zeros.iter_mut().zip(&k) {
                let (k, u) = (k as usize, m - k as usize);
                *z = ((k + u) / 2 - k / 2) as u16;
            }
        }
        for ((lane, (f, _)), c) in lanes.iter_mut().zip(&raws).zip(&covers) {
            lane[..3 * run].copy_from_slice(&f[3 * i..3 * (i + run)]);
            if !all {
                for p in 0..run {
                    if c[p] == 0 {
                        let fill = if zeros[p] > 0 { 0 } else { 255 };
                        zeros[p] = zeros[p].saturating_sub(1);
                        lane[3 * p..3 * p + 3].fill(fill);
                    }
                }
            }
        }
        // Odd-even transposition sort: m rounds sort m values exactly.
        for round in 0..m {
            let mut j = round % 2;
            while j + 1 < m {
                let (lo, hi) = lanes.split_at_mut(j + 1);
                let (p, q) = (&mut lo[j], &mut hi[0]);
                for (x, y) in p.iter_mut().zip(q.iter_mut()) {
                    let (a, b) = (*x, *y);
                    *x = a.min(b);
                    *y = a.max(b);
                }
                j += 2;
            }
        }
        let med = lanes[m / 2];
        // Covering frames agreeing at each pixel: per byte, whether it and the next two (a
        // pixel's three channels where the byte is a pixel's first) agree, summed over the
        // frames; all byte-wise, vectorised.
        let mut agreeing = [0u16; 3 * RUN];
        let mut ok = [0u8; 3 * RUN + 2];
        for ((f, _), c) in raws.iter().zip(&covers) {
            for ((o, v), md) in ok.iter_mut().zip(&f[3 * i..3 * (i + run)]).zip(&med) {
                *o = (v.abs_diff(*md) <= agree) as u8;
            }
            for (j, a) in agreeing.iter_mut().enumerate() {
                *a += (ok[j] & ok[j + 1] & ok[j + 2] & c[j / 3]) as u16;
            }
        }
        for p in 0..run {
            // Pixels no frame covers stay 0.
            if k[p] > 0 {
                image[3 * (i + p)..3 * (i + p) + 3].copy_from_slice(&med[3 * p..3 * p + 3]);
                support[i + p] = (255 * agreeing[3 * p] as usize / k[p] as usize) as u8;
            }
        }
        i += run;
    }
    Background {
        image: RgbImage::from_raw(w, h, image).expect("sized"),
        support: GrayImage::from_raw(w, h, support).expect("sized"),
        frames: frames.len(),
    }
}

/// Options of [`moving_objects`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionSegOptions {
    /// A pixel is foreground when a channel differs from the background by more than this.
    pub diff_level: u8,
    /// Foreground components smaller than this fraction of the image are noise.
    pub min_component: f64,
    /// Closing size (odd) that joins the parts of one object.
    pub closing: u32,
}

impl Default for MotionSegOptions {
    fn default() -> Self {
        MotionSegOptions { diff_level: 30, min_component: 0.0005, closing: 5 }
    }
}

/// The foreground mask of `frame` against a background of the same size.
pub fn foreground(frame: &RgbImage, bg: &Background, opts: &MotionSegOptions) -> Mask {
    assert_eq!(frame.dimensions(), bg.image.dimensions(), "foreground needs a background of the frame's size");
    let (f, b) = (frame.as_raw().chunks_exact(3), bg.image.as_raw().chunks_exact(3));
    let raw = f
        .zip(b)
        .zip(bg.support.as_raw())
        .map(|((p, q), &s)| {
            let d = p[0].abs_diff(q[0]).max(p[1].abs_diff(q[1])).max(p[2].abs_diff(q[2]));
            if s != 0 && d > opts.diff_level {
                255
            } else {
                0
            }
        })
        .collect();
    GrayImage::from_raw(frame.width(), frame.height(), raw).expect("same size")
}

/// The moving objects of `frame`: foreground components after clean-up, largest first.
pub fn moving_objects(frame: &RgbImage, bg: &Background, opts: &MotionSegOptions) -> Vec<Mask> {
    let fg = foreground(frame, bg, opts);
    let total = fg.width() as f64 * fg.height() as f64;
    let min_pixels = (opts.min_component * total).ceil().max(1.0) as u64;
    let fg = mask::remove_small_components(&fg, min_pixels);
    let fg = mask::fill_holes(&mask::close(&fg, opts.closing));
    mask::components(&fg).into_iter().filter(|m| mask::count(m) >= min_pixels).collect()
}

/// What is measured of one object for matching and naming.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectStats {
    /// Fraction of the image.
    pub area: f64,
    /// Centre, fractions of width and height.
    pub center: [f64; 2],
    /// Bounding box as fractions: x0, y0, x1, y1.
    pub bbox: [f64; 4],
    /// Mean RGB under the mask.
    pub color: [f64; 3],
}

/// A mask's area, centroid, bounding box and mean colour: the values of
/// [`mask::area_fraction`], [`mask::centroid`], [`mask::bbox`] and [`mask::masked_mean`]
/// (exact integer sums there too), in one pass over the set span of each row.
pub fn object_stats(frame: &RgbImage, m: &Mask) -> ObjectStats {
    let (w, h) = (m.width() as f64, m.height() as f64);
    if frame.dimensions() != m.dimensions() {
        let b = mask::bbox(m).unwrap_or([0, 0, 0, 0]);
        return ObjectStats {
            area: mask::area_fraction(m),
            center: mask::centroid(m),
            bbox: [b[0] as f64 / w, b[1] as f64 / h, b[2] as f64 / w, b[3] as f64 / h],
            color: mask::masked_mean(frame, m),
        };
    }
    let mw = m.width() as usize;
    let (mut b, mut n, mut sx, mut sy, mut rgb) = ([u32::MAX, u32::MAX, 0, 0], 0u64, 0u64, 0u64, [0u64; 3]);
    for (y, (row, px)) in m.as_raw().chunks_exact(mw.max(1)).zip(frame.as_raw().chunks_exact(3 * mw.max(1))).enumerate()
    {
        let Some(x0) = row.iter().position(|&p| p != 0) else { continue };
        let x1 = row.iter().rposition(|&p| p != 0).expect("a set pixel") + 1;
        b = [b[0].min(x0 as u32), b[1].min(y as u32), b[2].max(x1 as u32), y as u32 + 1];
        let mut k = 0u64;
        for (x, (&p, c)) in row[x0..x1].iter().zip(px[3 * x0..3 * x1].chunks_exact(3)).enumerate() {
            if p != 0 {
                k += 1;
                sx += (x0 + x) as u64;
                for (s, &v) in rgb.iter_mut().zip(c) {
                    *s += v as u64;
                }
            }
        }
        n += k;
        sy += k * y as u64;
    }
    if n == 0 {
        return ObjectStats { area: 0.0, center: [0.5, 0.5], bbox: [0.0; 4], color: [128.0; 3] };
    }
    let nf = n as f64;
    ObjectStats {
        area: nf / (m.width() as u64 * m.height() as u64) as f64,
        // Σ (x + 0.5) is exact in f64 at these sizes, as in `mask::centroid`.
        center: [(sx as f64 + 0.5 * nf) / nf / w, (sy as f64 + 0.5 * nf) / nf / h],
        bbox: [b[0] as f64 / w, b[1] as f64 / h, b[2] as f64 / w, b[3] as f64 / h],
        color: rgb.map(|v| v as f64 / nf),
    }
}

/// Matches objects of frame A to objects of frame B (one to one): pairs whose area ratio is
/// within 1:2.5, whose centres are at most `max_shift` apart (fraction of the diagonal) and
/// whose mean colours are close, cheapest first. Returns `(index in a, index in b)`.
pub fn match_objects(a: &[ObjectStats], b: &[ObjectStats], max_shift: f64) -> Vec<(usize, usize)> {
    let mut cand = Vec::new();
    for (i, oa) in a.iter().enumerate() {
        for (j, ob) in b.iter().enumerate() {
            let ratio = (oa.area.max(1e-9) / ob.area.max(1e-9)).ln().abs();
            let shift = ((oa.center[0] - ob.center[0]).powi(2) + (oa.center[1] - ob.center[1]).powi(2)).sqrt()
                / std::f64::consts::SQRT_2;
            let colour = (0..3).map(|c| (oa.color[c] - ob.color[c]).powi(2)).sum::<f64>().sqrt() / 255.0;
            if ratio > 2.5f64.ln() || shift > max_shift || colour > 0.25 {
                continue;
            }
            cand.push((ratio + 2.0 * shift / max_shift.max(1e-9) + 4.0 * colour, i, j));
        }
    }
    cand.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut out = Vec::new();
    for (_, i, j) in cand {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            out.push((i, j));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A textured static background with a red square at `(x, y)`.
    fn scene(x: u32, y: u32) -> RgbImage {
        RgbImage::from_fn(120, 90, |i, j| {
            if (x..x + 16).contains(&i) && (y..y + 16).contains(&j) {
                Rgb([220, 30, 30])
            } else {
                let v = ((i * 7 + j * 13) % 50 + 80) as u8;
                Rgb([v, v, v / 2 + 40])
            }
        })
    }

    #[test]
    fn median_removes_a_moving_object_and_segments_it() {
        let frames: Vec<_> = (0..7).map(|k| (Cow::Owned(scene(10 + 14 * k, 40)), None)).collect();
        let bg = median_background(&frames, 12);
        // The square never stays anywhere for more than 2 of 7 frames: the median is clean.
        assert_eq!(bg.image, scene(200, 200));
        let objs = moving_objects(&scene(52, 40), &bg, &MotionSegOptions::default());
        assert_eq!(objs.len(), 1);
        assert_eq!(mask::bbox(&objs[0]), Some([52, 40, 68, 56]));
        let st = object_stats(&scene(52, 40), &objs[0]);
        assert!(st.color[0] > 200.0 && st.color[1] < 50.0);
    }

    #[test]
    fn median_equals_the_per_pixel_definition() {
        // Noisy frames with partial validity masks; sizes that are not a multiple of the
        // vectorised run; odd and even frame counts; a pixel no frame covers.
        let mut rand = crate::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let (w, h) = (37, 11);
        for count in [1, 2, 3, 4, 5, 8, 9] {
            let frames: Vec<(Cow<'_, RgbImage>, Option<Mask>)> = (0..count)
                .map(|k| {
                    let img = RgbImage::from_fn(w, h, |_, _| {
                        Rgb([rand() as u8, (rand() % 40) as u8, if rand() % 2 == 0 { 128 } else { 255 }])
                    });
                    // (5, 5) only frames 2, 5, 8 cover (none with 1 or 2 frames); odd frames
                    // miss a corner too.
                    let valid = (k % 3 != 2).then(|| {
                        GrayImage::from_fn(w, h, |i, j| {
                            let hole = (i, j) == (5, 5) || (k % 2 == 1 && i < 10 && j < 4);
                            // Rows 6.. : random coverage, every count of covering frames.
                            Luma([if hole || (j >= 6 && rand() % 3 == 0) { 0 } else { 255 }])
                        })
                    });
                    (Cow::Owned(img), valid)
                })
                .collect();
            let bg = median_background(&frames, 10);
            for (i, j) in (0..h).flat_map(|j| (0..w).map(move |i| (i, j))) {
                let covering: Vec<Rgb<u8>> = frames
                    .iter()
                    .filter(|(_, v)| v.as_ref().is_none_or(|v| v.get_pixel(i, j)[0] != 0))
                    .map(|(f, _)| *f.get_pixel(i, j))
                    .collect();
                if covering.is_empty() {
                    assert_eq!(bg.support.get_pixel(i, j)[0], 0);
                    continue;
                }
                let med: [u8; 3] = std::array::from_fn(|c| {
                    let mut v: Vec<u8> = covering.iter().map(|p| p[c]).collect();
                    v.sort();
                    v[v.len() / 2]
                });
                assert_eq!(bg.image.get_pixel(i, j).0, med, "{count} frames, pixel ({i}, {j})");
                let agree = covering.iter().filter(|p| (0..3).all(|c| p[c].abs_diff(med[c]) <= 10)).count();
                assert_eq!(bg.support.get_pixel(i, j)[0] as usize, 255 * agree / covering.len());
            }
        }
    }

    /// warp_to_target's definition, per pixel.
    fn warp_reference(src: &RgbImage, m: &GlobalMotion) -> (RgbImage, Mask) {
        let (w, h) = src.dimensions();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let (tx, ty, z) = (m.dx * w as f64, m.dy * h as f64, m.zoom);
        let mut out = RgbImage::new(w, h);
        let mut valid = GrayImage::new(w, h);
        for (x, y) in (0..h).flat_map(|y| (0..w).map(move |x| (x, y))) {
            let px = cx + ((x as f64 + 0.5) - cx - tx) / z - 0.5;
            let py = cy + ((y as f64 + 0.5) - cy - ty) / z - 0.5;
            if px < 0.0 || py < 0.0 || px > (w - 1) as f64 || py > (h - 1) as f64 {
                continue;
            }
            let (x0, y0) = (px.floor() as u32, py.floor() as u32);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (px - x0 as f64, py - y0 as f64);
            let (a, b, c, d) =
                (src.get_pixel(x0, y0), src.get_pixel(x1, y0), src.get_pixel(x0, y1), src.get_pixel(x1, y1));
            let v = std::array::from_fn(|k| {
                let top = a[k] as f64 * (1.0 - fx) + b[k] as f64 * fx;
                let bot = c[k] as f64 * (1.0 - fx) + d[k] as f64 * fx;
                (top * (1.0 - fy) + bot * fy + 0.5).clamp(0.0, 255.0) as u8
            });
            out.put_pixel(x, y, Rgb(v));
            valid.put_pixel(x, y, Luma([255]));
        }
        (out, valid)
    }

    #[test]
    fn warp_equals_its_per_pixel_definition() {
        let src =
            RgbImage::from_fn(97, 61, |x, y| Rgb([(x * 37 % 256) as u8, (y * 91 % 256) as u8, ((x * y) % 251) as u8]));
        for (dx, dy, zoom) in [
            (0.013, -0.027, 1.0),
            (-0.2, 0.1, 1.0),
            (0.0, 0.0, 1.07),
            (0.01, 0.02, 0.93),
            (0.0, 0.3, 1.5),
            (0.0, 0.0, 0.6),
        ] {
            let m = GlobalMotion { dx, dy, zoom };
            assert_eq!(warp_to_target(&src, &m), warp_reference(&src, &m), "{m:?}");
        }
    }

    #[test]
    fn warp_follows_the_motion_convention() {
        let src = scene(30, 30);
        // Content moves 10 px right: the square's left edge goes from 30 to 40.
        let m = GlobalMotion { dx: 10.0 / 120.0, dy: 0.0, zoom: 1.0 };
        let (out, valid) = warp_to_target(&src, &m);
        assert_eq!(*out.get_pixel(45, 35), Rgb([220, 30, 30]));
        assert_ne!(*out.get_pixel(35, 35), Rgb([220, 30, 30]));
        assert_eq!(valid.get_pixel(5, 5)[0], 0, "nothing comes in from the left");
        assert_eq!(valid.get_pixel(100, 5)[0], 255);
    }

    #[test]
    fn object_stats_equal_the_four_measures() {
        let mut next = crate::xorshift(3);
        for (w, h) in [(1, 1), (5, 3), (64, 40), (129, 77)] {
            let frame = RgbImage::from_fn(w, h, |_, _| image::Rgb([next() as u8, next() as u8, next() as u8]));
            let noise = Mask::from_fn(w, h, |_, _| image::Luma([if next() % 5 == 0 { 255 } else { 0 }]));
            for m in [noise.clone(), mask::dilate(&noise, 2), Mask::new(w, h)] {
                let b = mask::bbox(&m).unwrap_or([0, 0, 0, 0]);
                let (fw, fh) = (w as f64, h as f64);
                let want = ObjectStats {
                    area: mask::area_fraction(&m),
                    center: mask::centroid(&m),
                    bbox: [b[0] as f64 / fw, b[1] as f64 / fh, b[2] as f64 / fw, b[3] as f64 / fh],
                    color: mask::masked_mean(&frame, &m),
                };
                let got = object_stats(&frame, &m);
                assert_eq!(
                    (got.area, got.center, got.bbox, got.color),
                    (want.area, want.center, want.bbox, want.color),
                    "{w}x{h}"
                );
            }
        }
    }

    #[test]
    fn objects_match_across_frames() {
        let a = [
            ObjectStats { area: 0.02, center: [0.2, 0.5], bbox: [0.0; 4], color: [200.0, 30.0, 30.0] },
            ObjectStats { area: 0.05, center: [0.7, 0.5], bbox: [0.0; 4], color: [30.0, 30.0, 200.0] },
        ];
        let b = [
            ObjectStats { area: 0.05, center: [0.75, 0.5], bbox: [0.0; 4], color: [35.0, 30.0, 190.0] },
            ObjectStats { area: 0.021, center: [0.25, 0.52], bbox: [0.0; 4], color: [205.0, 35.0, 30.0] },
            ObjectStats { area: 0.3, center: [0.5, 0.9], bbox: [0.0; 4], color: [100.0; 3] },
        ];
        assert_eq!(match_objects(&a, &b, 0.3), vec![(0, 1), (1, 0)]);
        assert!(match_objects(&a, &b, 0.01).is_empty());
    }
}
