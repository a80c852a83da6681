/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): AVX2 (x86-64). */
#include "q8.h"
#if DN_X86
#pragma GCC target("avx2")
#include <immintrin.h>

/* 32 floats to bytes, q8_ref.quantize exactly: the product clamped to
 * +-512 (maxps gives its second operand for a NaN, so a NaN becomes -512
 * and then 0), rounded half to even by cvtps2dq (the default MXCSR mode,
 * as rint), narrowed to int16 (no value is beyond +-512), the zero point
 * added and saturated to [0, 255] by packuswb.  The generic vectors of
 * q8_pointwise.h narrow 8 lanes at a time through the stack; this takes a
 * fifth of their time on Lite0's float-to-integer handovers. */
static inline __attribute__((always_inline)) void quantize32(const float *x, uint8_t *y, __m256 inv,
                                                             __m256 lo, __m256 hi, __m256i zp)
{
    __m256i q[4];
    for (int j = 0; j < 4; j++) {
        const __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv);
        q[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f, lo), hi));
    }
    /* the packs work within 128-bit lanes, so the groups of four bytes
     * come out as values 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31;
     * the permute puts them back in order */
    const __m256i a = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp);
    const __m256i b = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp);
    const __m256i bytes = _mm256_packus_epi16(a, b);
    _mm256_storeu_si256((__m256i *)y, _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

#define QUANTIZE_SETUP(a)                                                          \
    const __m256 q_inv = _mm256_set1_ps((a)->inv_scale), q_lo = _mm256_set1_ps(-512.0f), \
                 q_hi = _mm256_set1_ps(512.0f);                                    \
    const __m256i q_zp = _mm256_set1_epi16((short)(a)->zero_point);
#define QUANTIZE32(x, y) quantize32(x, y, q_inv, q_lo, q_hi, q_zp)
#define Q8(op) dn_q8_##op##_avx2
#include "q8_pointwise.h"
#endif
