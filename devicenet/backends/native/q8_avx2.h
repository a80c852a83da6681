/* What the AVX2 eight-bit kernels share: the requantisation of 8 int32
 * sums and their narrowing to bytes (q8_ref.requantize, exactly: every
 * step one float32 rounding). */
#ifndef DEVICENET_Q8_AVX2_H
#define DEVICENET_Q8_AVX2_H

#include <immintrin.h>

#define TARGET __attribute__((target("avx2")))

/* The output stage's constants (q8.h): the clamp of the scaled sums,
 * [qmin - zero_point, qmax - zero_point], and the zero point. */
typedef struct {
    __m256 lo, hi;
    __m256i zp16;
} q8_stage;

TARGET INLINE q8_stage q8_stage_of(int32_t zero_point, int32_t qmin, int32_t qmax)
{
    return (q8_stage){_mm256_set1_ps((float)(qmin - zero_point)), _mm256_set1_ps((float)(qmax - zero_point)),
                      _mm256_set1_epi16((short)zero_point)};
}

/* 8 sums times their factors, clamped and rounded half to even (the
 * default MXCSR rounding of cvtps2dq): q8_ref.requantize less the zero
 * point. */
TARGET INLINE __m256i requantize(__m256i acc, __m256 rscale, const q8_stage *st)
{
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), rscale);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, st->lo), st->hi));
}

/* 16 requantised sums (int32, in order, within the clamp) plus the zero
 * point, as bytes: the packs cannot saturate. */
TARGET INLINE __m128i narrow16(__m256i p0, __m256i p1, const q8_stage *st)
{
    __m256i s = _mm256_packs_epi32(p0, p1);
    s = _mm256_permute4x64_epi64(_mm256_add_epi16(s, st->zp16), 0xD8);  /* columns back in order */
    return _mm_packus_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

#endif
