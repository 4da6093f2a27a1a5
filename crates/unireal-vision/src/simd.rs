//! AVX2 pieces the vector paths share: here the HSV conversion, in unireal-video the sampler
//! of cut detection. Callers check for AVX2 at run time (`is_x86_feature_detected!`).

use std::arch::x86_64::*;

/// The byte shuffles between 16 packed RGB pixels (48 bytes, three 16-byte chunks) and their
/// R, G and B planes. Pixel p's channel c is byte `3p + c`: position `(3p + c) % 16` of chunk
/// `(3p + c) / 16`. `.0[c][chunk]` gathers channel c's bytes found in `chunk` to their pixel's
/// place; `.1[chunk][c]` puts channel c's bytes to their place in `chunk`. Other lanes are
/// 0x80 (a zero), so the three shuffles of a plane or a chunk combine with OR.
const fn rgb_shuffles() -> ([[[u8; 16]; 3]; 3], [[[u8; 16]; 3]; 3]) {
    let (mut planes, mut packed) = ([[[0x80u8; 16]; 3]; 3], [[[0x80u8; 16]; 3]; 3]);
    let mut p = 0;
    while p < 16 {
        let mut c = 0;
        while c < 3 {
            let (chunk, at) = ((3 * p + c) / 16, (3 * p + c) % 16);
            planes[c][chunk][p] = at as u8;
            packed[chunk][c][at] = p as u8;
            c += 1;
        }
        p += 1;
    }
    (planes, packed)
}

const SHUFFLES: ([[[u8; 16]; 3]; 3], [[[u8; 16]; 3]; 3]) = rgb_shuffles();

/// The R, G and B planes of the 16 packed RGB pixels at `p`.
///
/// # Safety
/// AVX2; 48 bytes readable at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn rgb_planes(p: *const u8) -> [__m128i; 3] {
    // SAFETY: the caller's promise.
    unsafe {
        let chunks = [
            _mm_loadu_si128(p as *const __m128i),
            _mm_loadu_si128(p.add(16) as *const __m128i),
            _mm_loadu_si128(p.add(32) as *const __m128i),
        ];
        std::array::from_fn(|c| {
            let shuffle =
                |k: usize| _mm_shuffle_epi8(chunks[k], _mm_loadu_si128(SHUFFLES.0[c][k].as_ptr() as *const __m128i));
            _mm_or_si128(_mm_or_si128(shuffle(0), shuffle(1)), shuffle(2))
        })
    }
}

/// Writes 16 pixels given as R, G and B planes to `out` as packed RGB.
///
/// # Safety
/// AVX2; 48 bytes writable at `out`.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn store_rgb(planes: [__m128i; 3], out: *mut u8) {
    // SAFETY: the caller's promise.
    unsafe {
        for chunk in 0..3 {
            let shuffle = |c: usize| {
                _mm_shuffle_epi8(planes[c], _mm_loadu_si128(SHUFFLES.1[chunk][c].as_ptr() as *const __m128i))
            };
            let bytes = _mm_or_si128(_mm_or_si128(shuffle(0), shuffle(1)), shuffle(2));
            _mm_storeu_si128(out.add(16 * chunk) as *mut __m128i, bytes);
        }
    }
}

/// Sixteen 32-bit values (two halves of eight lanes, in order) saturated to bytes in [0, 255].
///
/// # Safety
/// AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn pack_u8(lo: __m256i, hi: __m256i) -> __m128i {
    let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(lo, hi));
    _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_packing_round_trip() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let rgb: Vec<u8> = (0..48).map(|i| (i * 5 + 1) as u8).collect();
        let mut back = [0u8; 48];
        // SAFETY: AVX2 is present; 48 bytes each way.
        let planes = unsafe { rgb_planes(rgb.as_ptr()) };
        let mut lanes = [[0u8; 16]; 3];
        for (l, p) in lanes.iter_mut().zip(planes) {
            // SAFETY: 16 bytes.
            unsafe { _mm_storeu_si128(l.as_mut_ptr() as *mut __m128i, p) };
        }
        for p in 0..16 {
            assert_eq!([lanes[0][p], lanes[1][p], lanes[2][p]], [rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]]);
        }
        // SAFETY: as above.
        unsafe { store_rgb(planes, back.as_mut_ptr()) };
        assert_eq!(back.as_slice(), rgb.as_slice());
        // SAFETY: AVX2 is present.
        let packed = unsafe {
            let lo = _mm256_setr_epi32(-5, 0, 1, 254, 255, 256, 70000, -70000);
            let hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
            let mut out = [0u8; 16];
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, pack_u8(lo, hi));
            out
        };
        assert_eq!(packed, [0, 0, 1, 254, 255, 255, 255, 0, 8, 9, 10, 11, 12, 13, 14, 15]);
    }
}
