//! The small frame of cut detection, which every decoded frame becomes, straight from 8-bit
//! 4:2:0 planes: bilinear sampling of Y, U and V at each output pixel's centre (the sampling
//! swscale's fast-bilinear scaler does at these ratios, and OpenCV's `INTER_LINEAR` that
//! PySceneDetect downscales with; chroma from the nearest chroma row), then BT.601 YUV → RGB
//! as swscale's default (limited range, or full for JPEG-range formats). Fixed point
//! throughout; the AVX2 path computes the same integers as the scalar one, eight pixels at a
//! time.

use image::RgbImage;

/// Weights are in 1/64ths per axis; a blended sample is scaled by 64 · 64.
const WBITS: u32 = 6;
const ONE: i32 = 1 << WBITS;

/// Source taps of each output position along one axis: the first sample and the weight of
/// the second (the second is the next sample, or the last one again at the edge).
fn taps(src: usize, dst: usize, chroma: bool) -> Vec<(u32, i32)> {
    let n = if chroma { src.div_ceil(2) } else { src };
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            // The output centre in luma samples, then in this plane's samples (chroma centred
            // between its two luma samples).
            let centre = (o as f64 + 0.5) * ratio;
            let p = if chroma { centre / 2.0 - 0.5 } else { centre - 0.5 };
            let p = p.clamp(0.0, (n - 1) as f64);
            let (mut i, mut f) = (p.floor() as u32, ((p - p.floor()) * ONE as f64).round() as i32);
            if f == ONE {
                (i, f) = (i + 1, 0);
            }
            if i as usize >= n - 1 {
                (i, f) = (n as u32 - 1, 0);
            }
            (i, f)
        })
        .collect()
}

/// An 8-bit plane: bytes, stride, width, height.
pub(crate) struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane<'_> {
    /// Row `y0` blended with the next at `fy`/64, scaled by 64 (at most 255 · 64, an i16),
    /// into `out`, with one extra entry repeating the last: a sample's right neighbour is
    /// always there.
    #[inline(always)]
    fn blend_row(&self, (y0, fy): (u32, i32), out: &mut [i16]) {
        let y0 = y0 as usize;
        let y1 = (y0 + 1).min(self.height - 1);
        let (a, b) = (&self.data[y0 * self.stride..][..self.width], &self.data[y1 * self.stride..][..self.width]);
        if fy == 0 {
            // On a source row (as at whole ratios): the next row is not read.
            for (o, &p) in out.iter_mut().zip(a) {
                *o = p as i16 * ONE as i16;
            }
        } else {
            let (wa, wb) = ((ONE - fy) as i16, fy as i16);
            for ((o, &p), &q) in out.iter_mut().zip(a).zip(b) {
                *o = p as i16 * wa + q as i16 * wb;
            }
        }
        out[self.width] = out[self.width - 1];
    }
}

/// Per output column of one plane: the first source sample, and the two weights as the
/// 16-bit pair `(64 − f) | f << 16` that `pmaddwd` multiplies a sample pair by.
struct Columns {
    first: Vec<i32>,
    weights: Vec<i32>,
}

impl Columns {
    fn new(taps: &[(u32, i32)]) -> Self {
        Columns {
            first: taps.iter().map(|&(i, _)| i as i32).collect(),
            weights: taps.iter().map(|&(_, f)| (ONE - f) | (f << 16)).collect(),
        }
    }

    /// Output column `i` from a blended row: scaled by 64 · 64.
    #[inline(always)]
    fn sample(&self, row: &[i16], i: usize) -> i32 {
        let (x0, w) = (self.first[i] as usize, self.weights[i]);
        row[x0] as i32 * (w & 0xffff) + row[x0 + 1] as i32 * (w >> 16)
    }
}

/// The YUV → RGB step in fixed point, shared by both paths.
#[derive(Clone, Copy)]
struct Matrix {
    gain: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
    yoff: i32,
    coff: i32,
}

/// Values carry 12 fractional bits, the coefficients 8: round at bit 20.
const SHIFT: u32 = 2 * WBITS + 8;

impl Matrix {
    /// BT.601 in 1/256ths: luma gain and offset, R from V, G from U and V, B from U.
    fn new(full_range: bool) -> Self {
        let (gain, off, rv, gu, gv, bu) =
            if full_range { (256, 0, 359, 88, 183, 454) } else { (298, 16, 409, 100, 208, 516) };
        Matrix { gain, rv, gu, gv, bu, yoff: off << (2 * WBITS), coff: 128 << (2 * WBITS) }
    }

    #[inline(always)]
    fn rgb(&self, y: i32, u: i32, v: i32) -> [u8; 3] {
        let yy = self.gain * (y - self.yoff);
        let (d, e) = (u - self.coff, v - self.coff);
        let clip = |x: i32| ((x + (1 << (SHIFT - 1))) >> SHIFT).clamp(0, 255) as u8;
        [clip(yy + self.rv * e), clip(yy - self.gu * d - self.gv * e), clip(yy + self.bu * d)]
    }
}

/// The frame at `(w, h)` as RGB; `y`, `u`, `v` are a 4:2:0 frame's planes. `vector`: AVX2
/// where the CPU has it (the same bytes).
pub(crate) fn yuv420_to_rgb(y: Plane, u: Plane, v: Plane, full_range: bool, w: u32, h: u32, vector: bool) -> RgbImage {
    #[cfg(target_arch = "x86_64")]
    if vector && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { convert_avx2(y, u, v, full_range, w, h) };
    }
    let _ = vector;
    convert(y, u, v, full_range, w, h, &mut |_, _, _, _, _, _, _| 0)
}

/// The vector path for one output row: it writes the row's first pixels and returns how many
/// (a multiple of 16); the scalar loop does the rest.
type RowHead<'a> = dyn FnMut(&[i16], &[i16], &[i16], &Columns, &Columns, &Matrix, &mut [u8]) -> usize + 'a;

#[inline(always)]
fn convert(y: Plane, u: Plane, v: Plane, full_range: bool, w: u32, h: u32, head: &mut RowHead) -> RgbImage {
    let (w, h) = (w as usize, h as usize);
    // What the taps and the vector path's gathers rely on: 4:2:0 chroma planes of at least
    // half the luma's size (rounded up), and every row of each plane inside its bytes.
    assert!(w >= 1 && h >= 1 && y.width >= 1 && y.height >= 1, "an empty frame has nothing to sample");
    for (p, (pw, ph)) in [
        (&y, (y.width, y.height)),
        (&u, (y.width.div_ceil(2), y.height.div_ceil(2))),
        (&v, (y.width.div_ceil(2), y.height.div_ceil(2))),
    ] {
        assert!(p.width >= pw && p.height >= ph && p.stride >= p.width, "not a 4:2:0 plane of this frame");
        assert!(p.data.len() >= (p.height - 1) * p.stride + p.width, "a plane shorter than its rows");
    }
    let (lx, cx) = (Columns::new(&taps(y.width, w, false)), Columns::new(&taps(y.width, w, true)));
    // Chroma rows are taken whole (the nearest to each output row): half the chroma bytes
    // read, which is most of the time here (the frame is read from memory once).
    let ly = taps(y.height, h, false);
    let cy: Vec<(u32, i32)> = taps(y.height, h, true)
        .into_iter()
        .map(|(i, f)| if 2 * f < ONE { (i, 0) } else { ((i + 1).min(u.height as u32 - 1), 0) })
        .collect();
    let m = Matrix::new(full_range);
    let mut out = vec![0u8; 3 * w * h];
    let (mut ry, mut ru, mut rv) = (vec![0i16; y.width + 1], vec![0i16; u.width + 1], vec![0i16; v.width + 1]);
    for (row, out) in out.chunks_exact_mut(3 * w).enumerate() {
        y.blend_row(ly[row], &mut ry);
        u.blend_row(cy[row], &mut ru);
        v.blend_row(cy[row], &mut rv);
        let done = head(&ry, &ru, &rv, &lx, &cx, &m, out);
        for (i, px) in out.chunks_exact_mut(3).enumerate().skip(done) {
            px.copy_from_slice(&m.rgb(lx.sample(&ry, i), cx.sample(&ru, i), cx.sample(&rv, i)));
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("sized")
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_avx2(y: Plane, u: Plane, v: Plane, full_range: bool, w: u32, h: u32) -> RgbImage {
    use std::arch::x86_64::*;
    use unireal_vision::simd;
    let mut head = |ry: &[i16], ru: &[i16], rv: &[i16], lx: &Columns, cx: &Columns, m: &Matrix, out: &mut [u8]| {
        let n = lx.first.len() / 16 * 16;
        // SAFETY: AVX2 is present; gathers read the i16 pair at a column's first sample,
        // which is at most the row's width - 1 (the rows hold width + 1 entries); loads of
        // the column tables read 8 entries at i < n <= their length; stores write 48 bytes at
        // 3i, i + 16 <= n <= out.len() / 3.
        unsafe {
            let half = _mm256_set1_epi32(1 << (SHIFT - 1));
            let (gain, rvc, guc, gvc, buc) = (
                _mm256_set1_epi32(m.gain),
                _mm256_set1_epi32(m.rv),
                _mm256_set1_epi32(m.gu),
                _mm256_set1_epi32(m.gv),
                _mm256_set1_epi32(m.bu),
            );
            let (yoff, coff) = (_mm256_set1_epi32(m.yoff), _mm256_set1_epi32(m.coff));
            let at = |row: &[i16], c: &Columns, i: usize| {
                let idx = _mm256_loadu_si256(c.first.as_ptr().add(i) as *const __m256i);
                let wts = _mm256_loadu_si256(c.weights.as_ptr().add(i) as *const __m256i);
                _mm256_madd_epi16(_mm256_i32gather_epi32::<2>(row.as_ptr() as *const i32, idx), wts)
            };
            // Eight pixels' R, G, B in 32-bit lanes.
            let rgb8 = |i: usize| {
                let yy = _mm256_mullo_epi32(gain, _mm256_sub_epi32(at(ry, lx, i), yoff));
                let d = _mm256_sub_epi32(at(ru, cx, i), coff);
                let e = _mm256_sub_epi32(at(rv, cx, i), coff);
                let clip = |x: __m256i| _mm256_srai_epi32::<{ SHIFT as i32 }>(_mm256_add_epi32(x, half));
                (
                    clip(_mm256_add_epi32(yy, _mm256_mullo_epi32(rvc, e))),
                    clip(_mm256_sub_epi32(
                        _mm256_sub_epi32(yy, _mm256_mullo_epi32(guc, d)),
                        _mm256_mullo_epi32(gvc, e),
                    )),
                    clip(_mm256_add_epi32(yy, _mm256_mullo_epi32(buc, d))),
                )
            };
            for i in (0..n).step_by(16) {
                let (r0, g0, b0) = rgb8(i);
                let (r1, g1, b1) = rgb8(i + 8);
                let planes = [simd::pack_u8(r0, r1), simd::pack_u8(g0, g1), simd::pack_u8(b0, b1)];
                simd::store_rgb(planes, out.as_mut_ptr().add(3 * i));
            }
        }
        n
    };
    convert(y, u, v, full_range, w, h, &mut head)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 4:2:0 frame of noise and ramps with odd sizes and padded strides.
    fn planes(w: usize, h: usize) -> [(Vec<u8>, usize, usize, usize); 3] {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut plane = |pw: usize, ph: usize| {
            let stride = pw + 7;
            let data = (0..stride * ph).map(|i| ((i % stride * 255 / pw) as u64 ^ (next() & 31)) as u8).collect();
            (data, stride, pw, ph)
        };
        [plane(w, h), plane(w.div_ceil(2), h.div_ceil(2)), plane(w.div_ceil(2), h.div_ceil(2))]
    }

    #[test]
    fn vector_and_scalar_paths_agree() {
        for (w, h, ow, oh) in
            [(1280, 720, 256, 144), (641, 273, 256, 108), (333, 201, 40, 25), (19, 9, 18, 8), (2, 2, 2, 2)]
        {
            let p = planes(w, h);
            let pl = |i: usize| Plane { data: &p[i].0, stride: p[i].1, width: p[i].2, height: p[i].3 };
            for full in [false, true] {
                let a = yuv420_to_rgb(pl(0), pl(1), pl(2), full, ow, oh, true);
                let b = yuv420_to_rgb(pl(0), pl(1), pl(2), full, ow, oh, false);
                assert_eq!(a, b, "{w}x{h} -> {ow}x{oh} full range {full}");
            }
        }
    }

    #[test]
    fn grey_and_primaries_convert_as_bt601() {
        // Flat planes: limited-range black, white and mid grey, and pure red.
        let flat = |yv: u8, uv: u8, vv: u8| {
            let (yb, ub, vb) = (vec![yv; 64], vec![uv; 16], vec![vv; 16]);
            let img = yuv420_to_rgb(
                Plane { data: &yb, stride: 8, width: 8, height: 8 },
                Plane { data: &ub, stride: 4, width: 4, height: 4 },
                Plane { data: &vb, stride: 4, width: 4, height: 4 },
                false,
                4,
                4,
                true,
            );
            img.get_pixel(1, 1).0
        };
        assert_eq!(flat(16, 128, 128), [0, 0, 0]);
        assert_eq!(flat(235, 128, 128), [255, 255, 255]);
        assert_eq!(flat(126, 128, 128), [128, 128, 128]);
        let red = flat(81, 90, 240);
        assert!(red[0] >= 253 && red[1] <= 2 && red[2] <= 2, "{red:?}");
    }
}
