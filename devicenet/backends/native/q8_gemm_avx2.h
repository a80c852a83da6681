/* The AVX2 eight-bit GEMM micro-kernels (q8.h), written once for both:
 * included by q8_gemm_6x16c4_avx2.c and q8_gemm_6x16c2_avx2.c, which
 * define KG (how many k one step consumes, the panel's interleave) and
 * NAME.
 *
 * An MR x 16 tile: per row two vectors of 8 int32 sums.  One step reads,
 * for 16 columns, KG consecutive k of each, and the same KG activations
 * of a row in every lane:
 *   KG = 4: vpmaddubsw multiplies the uint8 activations by the int8
 *           weights and adds pairs into int16 (exact while no pair of
 *           weights has |w0| + |w1| > 128: the packing checks), then
 *           vpmaddwd by ones adds the two pairs into int32;
 *   KG = 2: the panel holds the weights as int16 (a wide panel, q8.h)
 *           and the driver hands over each group of rows of A widened to
 *           uint16, so a pair of k is one 32-bit broadcast load and one
 *           vpmaddwd multiplies it and adds it into int32: exact for any
 *           int8 weights.  Per multiply the same 16 products as KG = 4,
 *           but an add per multiply instead of per two: about 0.8x its
 *           speed (scripts/bench_q8.py --wmax 127).
 * The output stage runs on the vectors: a float32 multiply, clamp and
 * rounding conversion per 8 sums (q8_avx2.h), or the float32 outputs. */
#include "q8_avx2.h"

#define NR 16

#if KG == 4
/* The four bytes of A at p (fewer where k ends: the weights past k are
 * zeros) as one 32-bit lane value. */
TARGET INLINE __m256i broadcast_a(const uint8_t *p, size_t have)
{
    uint32_t v = 0;
    if (have >= 4)
        memcpy(&v, p, 4);
    else
        memcpy(&v, p, have);
    return _mm256_set1_epi32((int)v);
}
#endif

TARGET INLINE void store_bytes(uint8_t *c, size_t nr_, __m128i v)
{
    if (nr_ == NR)
        _mm_storeu_si128((__m128i *)c, v);
    else {
        uint8_t t[NR];
        _mm_storeu_si128((__m128i *)t, v);
        memcpy(c, t, nr_);
    }
}

TARGET INLINE void store_floats(float *c, size_t nr_, __m256 y0, __m256 y1)
{
    if (nr_ == NR) {
        _mm256_storeu_ps(c, y0);
        _mm256_storeu_ps(c + 8, y1);
    } else {
        float t[NR];
        _mm256_storeu_ps(t, y0);
        _mm256_storeu_ps(t + 8, y1);
        memcpy(c, t, nr_ * sizeof(float));
    }
}

TARGET __attribute__((always_inline))
static inline void rows(const size_t MR, const size_t NV, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                        const int32_t *head, void *c, size_t ldc, const dn_q8_output *out)
{
    __m256i acc[MR_MAX][2];
    const uint8_t *ar[MR_MAX];
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = _mm256_loadu_si256((const __m256i *)head);  /* the bias */
        acc[i][1] = _mm256_loadu_si256((const __m256i *)(head + 8));
        ar[i] = a + i * lda;
    }
#if KG == 4
    const int8_t *w = (const int8_t *)(head + DN_Q8_HEAD * NR);
    const __m256i ones = _mm256_set1_epi16(1);
#define GROUP 4
#define STEP(have)                                                                               \
    {                                                                                            \
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);                               \
        const __m256i w1 = NV == 2 ? _mm256_loadu_si256((const __m256i *)(w + 32)) : w0;         \
        _Pragma("GCC unroll 8") for (size_t i = 0; i < MR; i++)                                  \
        {                                                                                        \
            const __m256i x = broadcast_a(ar[i] + p, have);                                      \
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones)); \
            if (NV == 2)                                                                         \
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones)); \
        }                                                                                        \
    }
#else
    /* A comes widened to uint16 by the driver, k padded with a zero to an
     * even depth (q8_gemm_driver.c): each pair is one 32-bit broadcast
     * load.  One pair a step: with more, the compiler reassociates the
     * sums into trees that spill. */
    const int16_t *w = (const int16_t *)(head + DN_Q8_HEAD * NR);
#define GROUP 2
#define STEP(have)                                                                               \
    {                                                                                            \
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);                               \
        const __m256i w1 = NV == 2 ? _mm256_loadu_si256((const __m256i *)(w + 16)) : w0;         \
        _Pragma("GCC unroll 8") for (size_t i = 0; i < MR; i++)                                  \
        {                                                                                        \
            int32_t pair;                                                                        \
            memcpy(&pair, ar[i] + 2 * p, 4);                                                     \
            const __m256i x = _mm256_set1_epi32(pair);                                           \
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(x, w0));                   \
            if (NV == 2)                                                                         \
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(x, w1));               \
        }                                                                                        \
    }
#endif
    size_t p = 0;
    for (; p + GROUP <= k; p += GROUP, w += GROUP * NR)
        STEP(GROUP)
    if (p < k)  /* the last, partial group: the weights past k are zeros */
        STEP(k - p)
#undef STEP
#undef GROUP
    if (out->to_float) {
        const __m256 s0 = _mm256_loadu_ps((const float *)(head + NR)), s1 = _mm256_loadu_ps((const float *)(head + NR + 8));
        const __m256 lo = _mm256_set1_ps(out->lo), hi = _mm256_set1_ps(out->hi);
#pragma GCC unroll 8
        for (size_t i = 0; i < MR; i++) {
            __m256 y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][0]), s0);
            __m256 y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][1]), s1);
            store_floats((float *)c + i * ldc, nr_, _mm256_min_ps(_mm256_max_ps(y0, lo), hi),
                         _mm256_min_ps(_mm256_max_ps(y1, lo), hi));
        }
        return;
    }
    const __m256 f0 = _mm256_loadu_ps((const float *)(head + NR)), f1 = _mm256_loadu_ps((const float *)(head + NR + 8));
    const q8_stage st = q8_stage_of(out->zero_point, out->qmin, out->qmax);
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++)
        store_bytes((uint8_t *)c + i * ldc, nr_,
                    narrow16(requantize(acc[i][0], f0, &st), requantize(acc[i][1], f1, &st), &st));
}

/* NV = 1: a last panel of at most 8 columns (24 or 40 channels) at half the work */
#define ROWS(MR) (nr_ > 8 ? rows(MR, 2, nr_, k, a, lda, panel, c, ldc, out) \
                          : rows(MR, 1, nr_, k, a, lda, panel, c, ldc, out))
TARGET DN_Q8_GEMM_ENTRY(NAME, MR_MAX)
