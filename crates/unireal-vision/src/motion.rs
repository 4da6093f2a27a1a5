//! Global motion (camera pan, tilt, zoom) and the moving region between two frames.
//!
//! Method: a whole-frame translation search at 1/4 of the analysis size gives the dominant
//! shift; 8×8 blocks at 1/2 size are matched around it; a similarity model
//! `d = a·(p − c) + t` (zoom `1 + a`, translation `t`) is fitted to the textured blocks by
//! trimmed least squares; blocks that disagree with the model, or differ after compensation,
//! form the moving region (largest 4-connected cluster).

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::color::to_gray;

/// Camera motion between frame A and frame B, as the motion of the scene content.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GlobalMotion {
    /// Horizontal content shift as a fraction of the width; positive: content moves right
    /// (the camera panned left).
    pub dx: f64,
    /// Vertical content shift as a fraction of the height; positive: content moves down
    /// (the camera tilted up).
    pub dy: f64,
    /// Content scale B/A; above 1 the camera zoomed in (or moved forward).
    pub zoom: f64,
}

/// The largest region that moved on its own (relative to the camera motion).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MovingRegion {
    /// Bounding box in frame B as fractions of width and height: x0, y0, x1, y1.
    pub bbox: [f64; 4],
    /// Centre in frame B, fractions of width and height.
    pub center: [f64; 2],
    /// Fraction of the frame the region covers.
    pub area: f64,
    /// Its own motion from A to B, compensated for the camera, fractions of width/height.
    pub dx: f64,
    pub dy: f64,
    /// Mean RGB of the region in frame B.
    pub color: [f64; 3],
}

/// The result of [`estimate_motion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionEstimate {
    pub global: GlobalMotion,
    /// Fraction of textured blocks that follow the global model.
    pub inlier_fraction: f64,
    /// Number of textured blocks the model was fitted to.
    pub textured_blocks: usize,
    /// Mean absolute gray difference after compensating the global motion, in [0, 1].
    pub compensated_diff: f64,
    pub region: Option<MovingRegion>,
}

const BLOCK: u32 = 8;

fn half(g: &GrayImage) -> GrayImage {
    let (w, h) = ((g.width() / 2).max(1), (g.height() / 2).max(1));
    let (gw, gh) = (g.width() as usize, g.height() as usize);
    let src = g.as_raw();
    let mut out = vec![0u8; w as usize * h as usize];
    for (y, o) in out.chunks_exact_mut(w as usize).enumerate() {
        let y0 = (2 * y).min(gh - 1);
        let (r0, r1) = (&src[y0 * gw..][..gw], &src[(y0 + 1).min(gh - 1) * gw..][..gw]);
        for (x, o) in o.iter_mut().enumerate() {
            let x0 = (2 * x).min(gw - 1);
            let x1 = (x0 + 1).min(gw - 1);
            let s = r0[x0] as u32 + r0[x1] as u32 + r1[x0] as u32 + r1[x1] as u32;
            *o = ((s + 2) / 4) as u8;
        }
    }
    GrayImage::from_raw(w, h, out).expect("sized")
}

/// Sum of absolute differences of two byte rows of the same length (SSE2's `psadbw` on
/// x86-64, where it is part of the baseline; a scalar loop elsewhere). Exact: the same sum
/// as the scalar loop.
#[inline]
pub(crate) fn sad_row(a: &[u8], b: &[u8]) -> u32 {
    assert_eq!(a.len(), b.len(), "sad_row needs rows of the same length");
    #[cfg(target_arch = "x86_64")]
    let (mut s, i) = {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi64, _mm_cvtsi128_si64, _mm_loadl_epi64, _mm_loadu_si128, _mm_sad_epu8,
            _mm_setzero_si128, _mm_unpackhi_epi64,
        };
        let n = a.len();
        let mut i = 0;
        // SAFETY: SSE2 is part of the x86-64 baseline; every load reads 16 (or 8) bytes at
        // i < i + 16 <= n (or i + 8 <= n) of slices of length n, unaligned loads allowed.
        unsafe {
            let mut acc = _mm_setzero_si128();
            while i + 16 <= n {
                let va = _mm_loadu_si128(a.as_ptr().add(i) as *const __m128i);
                let vb = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                acc = _mm_add_epi64(acc, _mm_sad_epu8(va, vb));
                i += 16;
            }
            if i + 8 <= n {
                let va = _mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i);
                let vb = _mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i);
                acc = _mm_add_epi64(acc, _mm_sad_epu8(va, vb));
                i += 8;
            }
            ((_mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc))) as u64, i)
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (mut s, i) = (0u64, 0);
    for (x, y) in a[i..].iter().zip(&b[i..]) {
        s += x.abs_diff(*y) as u64;
    }
    s as u32
}

/// Mean absolute difference between `a` and `b` shifted by (sx, sy) over their overlap,
/// or None if the overlap is under half the frame.
fn shifted_mad(a: &GrayImage, b: &GrayImage, sx: i32, sy: i32) -> Option<f64> {
    let (w, h) = (a.width() as i32, a.height() as i32);
    let (x0, x1) = (0.max(-sx), w.min(w - sx));
    let (y0, y1) = (0.max(-sy), h.min(h - sy));
    if x1 <= x0 || y1 <= y0 || ((x1 - x0) * (y1 - y0)) * 2 < w * h {
        return None;
    }
    let (pa, pb) = (a.as_raw(), b.as_raw());
    let mut s = 0u64;
    for y in y0..y1 {
        let ra = (y * w) as usize;
        let rb = ((y + sy) * w) as usize;
        let (xa, xb) = (ra + x0 as usize, rb + (x0 + sx) as usize);
        let len = (x1 - x0) as usize;
        s += sad_row(&pa[xa..xa + len], &pb[xb..xb + len]) as u64;
    }
    Some(s as f64 / ((x1 - x0) * (y1 - y0)) as f64)
}

/// Best whole-frame translation (content of A moves by (sx, sy) into B).
fn global_shift(a: &GrayImage, b: &GrayImage) -> (i32, i32) {
    let (rx, ry) = ((a.width() as i32 / 4).max(1), (a.height() as i32 / 4).max(1));
    let mut best = (f64::MAX, 0, 0);
    for sy in -ry..=ry {
        for sx in -rx..=rx {
            if let Some(m) = shifted_mad(a, b, sx, sy) {
                // Prefer small shifts on ties (static frames, flat regions).
                let m = m + 1e-3 * ((sx * sx + sy * sy) as f64).sqrt();
                if m < best.0 {
                    best = (m, sx, sy);
                }
            }
        }
    }
    (best.1, best.2)
}

struct Block {
    /// Top-left corner in A.
    x: u32,
    y: u32,
    textured: bool,
    /// Best displacement A → B.
    d: (f64, f64),
}

/// An 8×8 block of A, its rows packed.
fn block_of(a: &GrayImage, x: u32, y: u32) -> [u8; 64] {
    let (w, pa) = (a.width() as usize, a.as_raw());
    std::array::from_fn(|i| pa[(y as usize + i / 8) * w + x as usize + i % 8])
}

/// SAD between a packed block of A and the block of B at (x + dx, y + dy), if it lies inside B.
fn block_sad(blk: &[u8; 64], b: &GrayImage, x: u32, y: u32, dx: i32, dy: i32) -> Option<u32> {
    let (bx, by) = (x as i32 + dx, y as i32 + dy);
    if bx < 0 || by < 0 || bx + BLOCK as i32 > b.width() as i32 || by + BLOCK as i32 > b.height() as i32 {
        return None;
    }
    let (w, pb) = (b.width() as usize, b.as_raw());
    let start = by as usize * w + bx as usize;
    let rows = &pb[start..start + 7 * w + 8];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi64, _mm_cvtsi128_si64, _mm_loadl_epi64, _mm_loadu_si128, _mm_sad_epu8,
            _mm_unpackhi_epi64, _mm_unpacklo_epi64,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline; row j's 8 bytes start at j·w and
        // j·w + 8 <= 7·w + 8 = rows.len(); blk has 64 bytes; unaligned loads allowed.
        unsafe {
            let p = rows.as_ptr();
            let mut acc = _mm_sad_epu8(
                _mm_loadu_si128(blk.as_ptr() as *const __m128i),
                _mm_unpacklo_epi64(_mm_loadl_epi64(p as *const __m128i), _mm_loadl_epi64(p.add(w) as *const __m128i)),
            );
            for j in [2, 4, 6] {
                let vb = _mm_unpacklo_epi64(
                    _mm_loadl_epi64(p.add(j * w) as *const __m128i),
                    _mm_loadl_epi64(p.add((j + 1) * w) as *const __m128i),
                );
                acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128(blk.as_ptr().add(8 * j) as *const __m128i), vb));
            }
            Some((_mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc))) as u32)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Some((0..8).map(|j| sad_row(&blk[8 * j..8 * j + 8], &rows[j * w..j * w + 8])).sum())
}

/// The displacement of A's block at `(x, y)` into B within `radius` of the global shift `g`
/// with the lowest cost, SAD plus the L1 distance to `g` (which breaks ties towards it); the
/// first in row-major scan order among equal costs. `(u32::MAX, g)` when no displaced block
/// lies inside B. With `sse41`, eight horizontal displacements at a time (`mpsadbw`, then
/// `phminposuw`, which also takes the first of equal minima): the same answer.
fn best_match(
    blk: &[u8; 64],
    b: &GrayImage,
    (x, y): (u32, u32),
    g: (i32, i32),
    radius: i32,
    sse41: bool,
) -> (u32, i32, i32) {
    let (gsx, gsy) = g;
    let (w, h) = (b.width() as i32, b.height() as i32);
    let mut best = (u32::MAX, gsx, gsy);
    // Displacements keeping the block inside B; the others have no SAD.
    let (dx_lo, dx_hi) = ((gsx - radius).max(-(x as i32)), (gsx + radius).min(w - BLOCK as i32 - x as i32));
    let (dy_lo, dy_hi) = ((gsy - radius).max(-(y as i32)), (gsy + radius).min(h - BLOCK as i32 - y as i32));
    let _ = sse41;
    for dy in dy_lo..=dy_hi {
        let mut dx = dx_lo;
        while dx <= dx_hi {
            #[cfg(target_arch = "x86_64")]
            {
                let start = ((y as i32 + dy) * w + x as i32 + dx) as usize;
                // The 16-byte row loads stay inside B's buffer.
                if sse41 && start + 7 * w as usize + 16 <= b.as_raw().len() {
                    let n = (dx_hi - dx + 1).min(8);
                    // SAFETY: SSE4.1 is present; the loads read 16 bytes at start + j·w, j < 8,
                    // inside the buffer (checked above), and 8 bytes of the 64-byte block.
                    let (cost, i) = unsafe {
                        costs8(blk, b.as_raw().as_ptr().add(start), w as usize, dx - gsx, (dy - gsy).abs(), n)
                    };
                    if (cost as u32) < best.0 {
                        best = (cost as u32, dx + i as i32, dy);
                    }
                    dx += 8;
                    continue;
                }
            }
            let s = block_sad(blk, b, x, y, dx, dy).expect("inside B");
            let cost = s + ((dx - gsx).abs() + (dy - gsy).abs()) as u32;
            if cost < best.0 {
                best = (cost, dx, dy);
            }
            dx += 1;
        }
    }
    best
}

/// Costs of the block at eight consecutive displacements starting at `p` (B's pixel under the
/// block's top-left corner): SAD + |dx − gsx| + `pen_y` for the first `n`, the rest never
/// chosen; returns the lowest and its index (the first of equals).
///
/// # Safety
/// SSE4.1; 16 bytes readable at `p + j·w` for j in 0..8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn costs8(blk: &[u8; 64], p: *const u8, w: usize, dx_off: i32, pen_y: i32, n: i32) -> (u16, usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise.
    unsafe {
        let mut sad = _mm_setzero_si128();
        for j in 0..BLOCK as usize {
            let row = _mm_loadu_si128(p.add(j * w) as *const __m128i);
            let a = _mm_loadl_epi64(blk.as_ptr().add(8 * j) as *const __m128i);
            // Offsets 0..8 of B's row against A's bytes 0..4, then B's bytes 4.. against 4..8.
            sad = _mm_add_epi16(sad, _mm_mpsadbw_epu8::<0b000>(row, a));
            sad = _mm_add_epi16(sad, _mm_mpsadbw_epu8::<0b101>(row, a));
        }
        let lane = _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7);
        let pen = _mm_add_epi16(
            _mm_abs_epi16(_mm_add_epi16(_mm_set1_epi16(dx_off as i16), lane)),
            _mm_set1_epi16(pen_y as i16),
        );
        let unused = _mm_cmpgt_epi16(lane, _mm_set1_epi16((n - 1) as i16));
        let cost = _mm_or_si128(_mm_add_epi16(sad, pen), unused);
        let m = _mm_cvtsi128_si32(_mm_minpos_epu16(cost)) as u32;
        ((m & 0xffff) as u16, (m >> 16 & 7) as usize)
    }
}

fn block_std(a: &GrayImage, x: u32, y: u32) -> f64 {
    let (mut s, mut s2) = (0.0, 0.0);
    for j in 0..BLOCK {
        for i in 0..BLOCK {
            let v = a.get_pixel(x + i, y + j)[0] as f64;
            s += v;
            s2 += v * v;
        }
    }
    let n = (BLOCK * BLOCK) as f64;
    (s2 / n - (s / n).powi(2)).max(0.0).sqrt()
}

/// Fits `d = a·q + t` by least squares over the selected blocks; returns (a, tx, ty).
fn fit_similarity(qs: &[(f64, f64)], ds: &[(f64, f64)], keep: &[bool]) -> Option<(f64, f64, f64)> {
    let (mut n, mut sqq, mut sqx, mut sqy, mut sdq, mut sdx, mut sdy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for ((q, d), k) in qs.iter().zip(ds).zip(keep) {
        if !k {
            continue;
        }
        n += 1.0;
        sqq += q.0 * q.0 + q.1 * q.1;
        sqx += q.0;
        sqy += q.1;
        sdq += d.0 * q.0 + d.1 * q.1;
        sdx += d.0;
        sdy += d.1;
    }
    if n < 3.0 {
        return None;
    }
    let denom = sqq - (sqx * sqx + sqy * sqy) / n;
    let a = if denom.abs() < 1e-9 { 0.0 } else { (sdq - (sqx * sdx + sqy * sdy) / n) / denom };
    Some((a, (sdx - a * sqx) / n, (sdy - a * sqy) / n))
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Estimates the camera motion and the moving region from frame `a` to frame `b`
/// (same size; analysis resolution, about 256 pixels wide, is plenty).
pub fn estimate_motion(a: &RgbImage, b: &RgbImage) -> MotionEstimate {
    assert_eq!(a.dimensions(), b.dimensions(), "estimate_motion needs frames of the same size");
    let (ga, gb) = (half(&to_gray(a)), half(&to_gray(b)));
    let (w, h) = ga.dimensions();
    let (qa, qb) = (half(&ga), half(&gb));
    let (gsx, gsy) = global_shift(&qa, &qb);
    let (gsx, gsy) = (gsx * 2, gsy * 2);
    let radius = ((w.max(h) as f64 * 0.12).round() as i32).max(2);

    // Match blocks around the global shift.
    #[cfg(target_arch = "x86_64")]
    let sse41 = std::arch::is_x86_feature_detected!("sse4.1");
    #[cfg(not(target_arch = "x86_64"))]
    let sse41 = false;
    let mut blocks = Vec::new();
    let (nbx, nby) = (w / BLOCK, h / BLOCK);
    for by in 0..nby {
        for bx in 0..nbx {
            let (x, y) = (bx * BLOCK, by * BLOCK);
            let textured = block_std(&ga, x, y) >= 4.0;
            let blk = block_of(&ga, x, y);
            let best = best_match(&blk, &gb, (x, y), (gsx, gsy), radius, sse41);
            blocks.push(Block { x, y, textured: textured && best.0 != u32::MAX, d: (best.1 as f64, best.2 as f64) });
        }
    }

    // Fit the similarity model to textured blocks, trimming outliers.
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let half_b = BLOCK as f64 / 2.0;
    let qs: Vec<(f64, f64)> = blocks.iter().map(|b| (b.x as f64 + half_b - cx, b.y as f64 + half_b - cy)).collect();
    let ds: Vec<(f64, f64)> = blocks.iter().map(|b| b.d).collect();
    let mut keep: Vec<bool> = blocks.iter().map(|b| b.textured).collect();
    let textured = keep.iter().filter(|k| **k).count();
    let mut model = (0.0, gsx as f64, gsy as f64);
    if textured >= 6 {
        for _ in 0..4 {
            let Some(m) = fit_similarity(&qs, &ds, &keep) else { break };
            model = m;
            let res: Vec<f64> = qs
                .iter()
                .zip(&ds)
                .map(|(q, d)| ((d.0 - m.0 * q.0 - m.1).powi(2) + (d.1 - m.0 * q.1 - m.2).powi(2)).sqrt())
                .collect();
            let mut kept_res: Vec<f64> = res.iter().zip(&keep).filter(|(_, k)| **k).map(|(r, _)| *r).collect();
            let thr = (2.5 * median(&mut kept_res)).max(1.5);
            for (i, b) in blocks.iter().enumerate() {
                keep[i] = b.textured && res[i] <= thr;
            }
        }
    }
    let (a_zoom, tx, ty) = model;
    let scale = (1.0 + a_zoom).max(0.1);
    let inliers = keep.iter().filter(|k| **k).count();

    // Difference after compensation, per pixel and per block.
    let (pa, pb) = (ga.as_raw(), gb.as_raw());
    let sample = |x: f64, y: f64| -> Option<f64> {
        if x < 0.0 || y < 0.0 || x > (w - 1) as f64 || y > (h - 1) as f64 {
            return None;
        }
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
        let (fx, fy) = (x - x0 as f64, y - y0 as f64);
        let p = |xx: usize, yy: usize| pa[yy * w as usize + xx] as f64;
        Some((p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx) * (1.0 - fy) + (p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx) * fy)
    };
    let mut block_diff = vec![(0.0f64, 0u32); (nbx * nby) as usize];
    let (mut total, mut count) = (0.0, 0u64);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = (cx + (x as f64 - cx - tx) / scale, cy + (y as f64 - cy - ty) / scale);
            if let Some(v) = sample(sx, sy) {
                let d = (pb[(y * w + x) as usize] as f64 - v).abs();
                total += d;
                count += 1;
                let (bx, by) = (x / BLOCK, y / BLOCK);
                if bx < nbx && by < nby {
                    let e = &mut block_diff[(by * nbx + bx) as usize];
                    e.0 += d;
                    e.1 += 1;
                }
            }
        }
    }
    let compensated_diff = if count > 0 { total / count as f64 / 255.0 } else { 1.0 };

    // Moving blocks: they disagree with the model, or differ strongly after compensation.
    let bdiff: Vec<f64> = block_diff.iter().map(|(s, n)| if *n > 0 { s / *n as f64 } else { 0.0 }).collect();
    let mut sorted = bdiff.clone();
    let diff_thr = (3.0 * median(&mut sorted)).max(25.0);
    let moving: Vec<bool> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let pred = (a_zoom * qs[i].0 + tx, a_zoom * qs[i].1 + ty);
            let own = ((b.d.0 - pred.0).powi(2) + (b.d.1 - pred.1).powi(2)).sqrt();
            (b.textured && own > 2.5 && !keep[i]) || bdiff[i] > diff_thr
        })
        .collect();
    let clusters: Vec<Vec<usize>> = clusters(&moving, nbx as usize, nby as usize)
        .into_iter()
        .filter(|c| c.len() >= 2 && c.len() as f64 / (nbx * nby) as f64 >= 0.01)
        .take(2)
        .collect();
    let summaries: Vec<ClusterSummary> = clusters.iter().map(|c| summarize(c, &blocks, b, (nbx, nby))).collect();
    // An object that moved far leaves two clusters: where it is now (it stands out from its
    // surroundings in B) and where it was (background shows through there in B).
    let object = (0..summaries.len()).max_by(|&i, &j| summaries[i].contrast.total_cmp(&summaries[j].contrast));
    let region = object.map(|oi| {
        let o = &summaries[oi];
        let cluster = &clusters[oi];
        let own = {
            let (mut mx, mut my, mut mn) = (0.0, 0.0, 0.0);
            for &i in cluster {
                if blocks[i].textured {
                    let pred = (a_zoom * qs[i].0 + tx, a_zoom * qs[i].1 + ty);
                    mx += blocks[i].d.0 - pred.0;
                    my += blocks[i].d.1 - pred.1;
                    mn += 1.0;
                }
            }
            if mn > 0.0 {
                (mx / mn / w as f64, my / mn / h as f64)
            } else {
                (0.0, 0.0)
            }
        };
        let (dx, dy) = match summaries.get(1 - oi.min(1)).filter(|_| summaries.len() == 2) {
            Some(from) if (0.33..3.0).contains(&(o.area / from.area)) => {
                (o.center[0] - from.center[0], o.center[1] - from.center[1])
            }
            _ => own,
        };
        MovingRegion { bbox: o.bbox, center: o.center, area: o.area, dx, dy, color: o.color }
    });
    MotionEstimate {
        global: GlobalMotion { dx: tx / w as f64, dy: ty / h as f64, zoom: scale },
        inlier_fraction: if textured > 0 { inliers as f64 / textured as f64 } else { 0.0 },
        textured_blocks: textured,
        compensated_diff,
        region,
    }
}

/// The 4-connected clusters of `true` cells on a `nx × ny` grid, largest first.
fn clusters(cells: &[bool], nx: usize, ny: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; cells.len()];
    let mut out: Vec<Vec<usize>> = Vec::new();
    for start in 0..cells.len() {
        if !cells[start] || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        let mut cluster = Vec::new();
        seen[start] = true;
        while let Some(i) = stack.pop() {
            cluster.push(i);
            let (x, y) = (i % nx, i / nx);
            let mut push = |j: usize| {
                if cells[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < nx {
                push(i + 1);
            }
            if y > 0 {
                push(i - nx);
            }
            if y + 1 < ny {
                push(i + nx);
            }
        }
        cluster.sort_unstable();
        out.push(cluster);
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    out
}

struct ClusterSummary {
    bbox: [f64; 4],
    center: [f64; 2],
    area: f64,
    color: [f64; 3],
    /// Distance between the cluster's mean colour in B and that of the ring of blocks around it.
    contrast: f64,
}

/// Mean RGB of frame `b` (analysis resolution) over half-size blocks `cells`.
fn cells_color(cells: &[usize], blocks: &[Block], b: &RgbImage) -> Option<[f64; 3]> {
    let (mut rgb, mut n) = ([0.0; 3], 0.0);
    for &i in cells {
        let blk = &blocks[i];
        for j in 0..2 * BLOCK {
            for k in 0..2 * BLOCK {
                let (px, py) = (2 * blk.x + k, 2 * blk.y + j);
                if px < b.width() && py < b.height() {
                    let p = b.get_pixel(px, py);
                    for c in 0..3 {
                        rgb[c] += p[c] as f64;
                    }
                    n += 1.0;
                }
            }
        }
    }
    (n > 0.0).then(|| [rgb[0] / n, rgb[1] / n, rgb[2] / n])
}

fn summarize(cluster: &[usize], blocks: &[Block], b: &RgbImage, (nbx, nby): (u32, u32)) -> ClusterSummary {
    let (w, h) = ((nbx * BLOCK) as f64, (nby * BLOCK) as f64);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    let (mut sx, mut sy) = (0.0, 0.0);
    let mut inside = vec![false; blocks.len()];
    for &i in cluster {
        let blk = &blocks[i];
        inside[i] = true;
        x0 = x0.min(blk.x);
        y0 = y0.min(blk.y);
        x1 = x1.max(blk.x + BLOCK);
        y1 = y1.max(blk.y + BLOCK);
        sx += blk.x as f64 + BLOCK as f64 / 2.0;
        sy += blk.y as f64 + BLOCK as f64 / 2.0;
    }
    // The ring: blocks next to the cluster (8-neighbourhood) that are not in it.
    let mut ring = Vec::new();
    for &i in cluster {
        let (x, y) = ((i as u32 % nbx) as i64, (i as u32 / nbx) as i64);
        for (ox, oy) in [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
            let (nx, ny) = (x + ox, y + oy);
            if nx >= 0 && ny >= 0 && nx < nbx as i64 && ny < nby as i64 {
                let j = (ny * nbx as i64 + nx) as usize;
                if !inside[j] {
                    inside[j] = true;
                    ring.push(j);
                }
            }
        }
    }
    let color = cells_color(cluster, blocks, b).unwrap_or([0.0; 3]);
    let contrast = cells_color(&ring, blocks, b)
        .map(|r| ((color[0] - r[0]).powi(2) + (color[1] - r[1]).powi(2) + (color[2] - r[2]).powi(2)).sqrt())
        .unwrap_or(0.0);
    let n = cluster.len() as f64;
    ClusterSummary {
        bbox: [x0 as f64 / w, y0 as f64 / h, (x1 as f64 / w).min(1.0), (y1 as f64 / h).min(1.0)],
        center: [sx / n / w, sy / n / h],
        area: n / (nbx * nby) as f64,
        color,
        contrast,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_block_search_equals_the_scan() {
        // Noise (distinct costs), and coarse flat patches (many equal costs, where the first
        // in scan order must win), at every block position, with shifts that reach the edges.
        let mut rand = crate::xorshift(0x51_7cc1_b727_220a);
        let noise = GrayImage::from_fn(64, 40, |_, _| image::Luma([(rand() >> 24) as u8]));
        let flat = GrayImage::from_fn(64, 40, |x, y| image::Luma([((x / 16 + y / 16) % 2 * 200) as u8]));
        for (a, b) in [(&noise, &noise), (&flat, &flat), (&noise, &flat)] {
            for (x, y) in (0..5).flat_map(|by| (0..8).map(move |bx| (bx * 8, by * 8))) {
                let blk = block_of(a, x, y);
                for (g, radius) in [((0, 0), 6), ((3, -2), 9), ((-20, 10), 15), ((0, 0), 40)] {
                    let scan = {
                        let mut best = (u32::MAX, g.0, g.1);
                        for dy in (g.1 - radius)..=(g.1 + radius) {
                            for dx in (g.0 - radius)..=(g.0 + radius) {
                                if let Some(s) = block_sad(&blk, b, x, y, dx, dy) {
                                    let cost = s + ((dx - g.0).abs() + (dy - g.1).abs()) as u32;
                                    if cost < best.0 {
                                        best = (cost, dx, dy);
                                    }
                                }
                            }
                        }
                        best
                    };
                    assert_eq!(best_match(&blk, b, (x, y), g, radius, false), scan, "({x}, {y}) {g:?} {radius}");
                    #[cfg(target_arch = "x86_64")]
                    let sse41 = std::arch::is_x86_feature_detected!("sse4.1");
                    #[cfg(not(target_arch = "x86_64"))]
                    let sse41 = false;
                    assert_eq!(best_match(&blk, b, (x, y), g, radius, sse41), scan, "({x}, {y}) {g:?} {radius}");
                }
            }
        }
    }

    #[test]
    fn sad_row_equals_the_scalar_sum() {
        // Every length through the 16-, 8- and 1-byte paths, at unaligned offsets, with
        // differences up to 255 (where a signed or saturating SAD would be wrong).
        let mut rand = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let bytes: Vec<u8> = (0..300).map(|_| (rand() >> 24) as u8).collect();
        for len in 0..70 {
            for off in [0, 1, 3] {
                let (a, b) = (&bytes[off..off + len], &bytes[150 + 2 * off..150 + 2 * off + len]);
                let scalar: u32 = a.iter().zip(b).map(|(p, q)| p.abs_diff(*q) as u32).sum();
                assert_eq!(sad_row(a, b), scalar, "len {len}, offset {off}");
            }
        }
        assert_eq!(sad_row(&[0; 16], &[255; 16]), 16 * 255);
        // The packed 8×8 block against B at every placement, inside and outside.
        let a = GrayImage::from_fn(21, 13, |x, y| image::Luma([bytes[(y * 21 + x) as usize % 300]]));
        let b = GrayImage::from_fn(21, 13, |x, y| image::Luma([bytes[(x * 13 + y) as usize % 300]]));
        for (x, y) in [(0, 0), (8, 0), (13, 5)] {
            let blk = block_of(&a, x, y);
            for (dx, dy) in (-14..=14).flat_map(|dy| (-14..=14).map(move |dx| (dx, dy))) {
                let (bx, by) = (x as i32 + dx, y as i32 + dy);
                let inside = bx >= 0 && by >= 0 && bx + 8 <= 21 && by + 8 <= 13;
                let want = inside.then(|| {
                    (0..8)
                        .flat_map(|j| (0..8).map(move |i| (i, j)))
                        .map(|(i, j)| {
                            a.get_pixel(x + i, y + j)[0]
                                .abs_diff(b.get_pixel((bx + i as i32) as u32, (by + j as i32) as u32)[0])
                                as u32
                        })
                        .sum::<u32>()
                });
                assert_eq!(block_sad(&blk, &b, x, y, dx, dy), want, "block ({x}, {y}) moved by ({dx}, {dy})");
            }
        }
    }

    /// A smooth textured scene, rendered with a content shift and scale about the centre.
    fn scene(w: u32, h: u32, shift: (f64, f64), zoom: f64) -> RgbImage {
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        RgbImage::from_fn(w, h, |x, y| {
            // Point of the underlying scene seen at (x, y).
            let u = (x as f64 - cx - shift.0) / zoom + cx;
            let v = (y as f64 - cy - shift.1) / zoom + cy;
            let t = ((u * 0.21).sin() * (v * 0.17).cos() + (u * 0.05 + v * 0.08).sin()) * 60.0 + 128.0;
            let g = ((u * 0.11).cos() * 50.0 + (v * 0.13).sin() * 50.0 + 128.0).clamp(0.0, 255.0);
            image::Rgb([t.clamp(0.0, 255.0) as u8, g as u8, 100])
        })
    }

    #[test]
    fn static_frames_have_no_motion() {
        let a = scene(256, 144, (0.0, 0.0), 1.0);
        let m = estimate_motion(&a, &a);
        assert!(m.global.dx.abs() < 1e-9 && m.global.dy.abs() < 1e-9);
        assert!((m.global.zoom - 1.0).abs() < 1e-9);
        assert!(m.region.is_none());
        assert_eq!(m.compensated_diff, 0.0);
    }

    #[test]
    fn recovers_pan() {
        let a = scene(256, 144, (0.0, 0.0), 1.0);
        let b = scene(256, 144, (-30.0, 10.0), 1.0);
        let m = estimate_motion(&a, &b);
        assert!((m.global.dx - (-30.0 / 256.0)).abs() < 0.02, "{:?}", m.global);
        assert!((m.global.dy - (10.0 / 144.0)).abs() < 0.03, "{:?}", m.global);
        assert!((m.global.zoom - 1.0).abs() < 0.03, "{:?}", m.global);
    }

    #[test]
    fn recovers_zoom() {
        let a = scene(256, 144, (0.0, 0.0), 1.0);
        let b = scene(256, 144, (0.0, 0.0), 1.2);
        let m = estimate_motion(&a, &b);
        assert!((m.global.zoom - 1.2).abs() < 0.05, "{:?}", m.global);
        assert!(m.global.dx.abs() < 0.02, "{:?}", m.global);
    }

    #[test]
    fn finds_a_moving_object() {
        let a = scene(256, 144, (0.0, 0.0), 1.0);
        let mut b = a.clone();
        let mut a2 = a.clone();
        // A red square moves from the left to the right on a static background.
        for y in 50..90 {
            for x in 40..80 {
                a2.put_pixel(x, y, image::Rgb([220, 30, 30]));
            }
            for x in 160..200 {
                b.put_pixel(x, y, image::Rgb([220, 30, 30]));
            }
        }
        let m = estimate_motion(&a2, &b);
        assert!(m.global.dx.abs() < 0.02, "{:?}", m.global);
        let r = m.region.expect("a moving region");
        assert!(r.area > 0.01 && r.area < 0.5, "{r:?}");
        assert_eq!(crate::color_name(r.color), "red", "{r:?}");
        assert!(r.center[0] > 0.55, "the region is where the square is now: {r:?}");
        assert!(r.dx > 0.3, "it moved right by about 120/256 of the width: {r:?}");
        assert!(r.dy.abs() < 0.05, "{r:?}");
    }
}
