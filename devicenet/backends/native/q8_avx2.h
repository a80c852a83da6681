/* What the AVX2 eight-bit kernels share: the requantisation of 8 int32
 * sums and their narrowing to bytes (q8_ref.requantize, exactly). */
#ifndef DEVICENET_Q8_AVX2_H
#define DEVICENET_Q8_AVX2_H

#include <immintrin.h>

#define TARGET __attribute__((target("avx2")))

/* q8_ref.requantize's rounding multiply and shift of 8 sums. */
TARGET INLINE __m256i requantize(__m256i acc, __m256i m, __m256i m_odd, __m256i e, __m256i rnd)
{
    const __m256i half = _mm256_set1_epi64x((long long)1 << 30);
    __m256i even = _mm256_add_epi64(_mm256_mul_epi32(acc, m), half);
    __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_shuffle_epi32(acc, 0xF5), m_odd), half);
    /* bits 31..62 of each product: the even ones shifted down into the low
     * halves, the odd ones up into the high halves (doubled: an add runs
     * on more ports than a shift) */
    __m256i p = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_add_epi64(odd, odd), 0xAA);
    return _mm256_srav_epi32(_mm256_add_epi32(p, rnd), e);
}

/* 16 requantised sums (int32, in order) plus the zero point, to bytes
 * clamped to [qmin, qmax]: int16 with saturation (beyond int16 the clamp
 * to [0, 255] decides the same), then uint8 with saturation. */
TARGET INLINE __m128i narrow16(__m256i p0, __m256i p1, __m256i zp16, __m128i qmin, __m128i qmax)
{
    __m256i s = _mm256_packs_epi32(p0, p1);
    s = _mm256_permute4x64_epi64(_mm256_adds_epi16(s, zp16), 0xD8);  /* columns back in order */
    __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return _mm_min_epu8(_mm_max_epu8(b, qmin), qmax);
}

#endif
