/* Eight-bit depthwise convolution (q8_dwconv.h), AVX2 (x86-64): per pair
 * of taps and 16 channels, the two taps' bytes interleaved, widened to
 * int16 and multiplied and added by vpmaddwd with the pair's weights into
 * int32 (exact: 255 x 2047 x 2 for twelve-bit weights fits easily),
 * requantised on the vectors (q8_avx2.h). */
#include "q8.h"
#if DN_X86
#pragma GCC target("avx2")
#include "q8_avx2.h"

/* channels [k, k + 16) of one pixel; x[t] + off is the tap's channel k */
TARGET INLINE void block16(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                           ptrdiff_t off, uint8_t *y)
{
    const int16_t *w = a->w + 2 * k;
    const ptrdiff_t c2 = 2 * a->g.c;
    __m256i acc0 = _mm256_loadu_si256((const __m256i *)(a->bias + k));
    __m256i acc1 = _mm256_loadu_si256((const __m256i *)(a->bias + k + 8));
    for (ptrdiff_t p = 0; p < pairs; p++, w += c2) {
        const __m128i x0 = _mm_loadu_si128((const __m128i *)(x[2 * p] + off));
        const __m128i x1 = _mm_loadu_si128((const __m128i *)(x[2 * p + 1] + off));
        const __m256i lo = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x0, x1));  /* channels 0-7, pairs */
        const __m256i hi = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(x0, x1));  /* channels 8-15 */
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)w)));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(w + 16))));
    }
    const q8_stage st = q8_stage_of((int32_t)a->zero_point, (int32_t)a->qmin, (int32_t)a->qmax);
    const __m128i b = narrow16(requantize(acc0, _mm256_loadu_ps(a->rscale + k), &st),
                               requantize(acc1, _mm256_loadu_ps(a->rscale + k + 8), &st), &st);
    _mm_storeu_si128((__m128i *)y, b);
}

/* channels [k, k + 32): block16 twice over, its four chains of sums side
 * by side (the bytes of 8 channels' two taps interleaved in 128 bits and
 * widened across the lanes by vpmovzxbw, so that the sums come out in
 * channel order and every weight vector is one load of the op's layout) */
TARGET INLINE void block32(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                           ptrdiff_t off, uint8_t *y)
{
    const int16_t *w = a->w + 2 * k;
    const ptrdiff_t c2 = 2 * a->g.c;
    __m256i acc[4];
    for (int q = 0; q < 4; q++)
        acc[q] = _mm256_loadu_si256((const __m256i *)(a->bias + k + 8 * q));
    for (ptrdiff_t p = 0; p < pairs; p++, w += c2) {
        const uint8_t *t0 = x[2 * p] + off, *t1 = x[2 * p + 1] + off;
        const __m128i a0 = _mm_loadu_si128((const __m128i *)t0), a1 = _mm_loadu_si128((const __m128i *)(t0 + 16));
        const __m128i b0 = _mm_loadu_si128((const __m128i *)t1), b1 = _mm_loadu_si128((const __m128i *)(t1 + 16));
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a0, b0)),
                                                            _mm256_loadu_si256((const __m256i *)w)));
        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a0, b0)),
                                                            _mm256_loadu_si256((const __m256i *)(w + 16))));
        acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a1, b1)),
                                                            _mm256_loadu_si256((const __m256i *)(w + 32))));
        acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a1, b1)),
                                                            _mm256_loadu_si256((const __m256i *)(w + 48))));
    }
    const q8_stage st = q8_stage_of((int32_t)a->zero_point, (int32_t)a->qmin, (int32_t)a->qmax);
    for (int h = 0; h < 2; h++) {
        const float *f = a->rscale + k + 16 * h;
        _mm_storeu_si128((__m128i *)(y + 16 * h),
                         narrow16(requantize(acc[2 * h], _mm256_loadu_ps(f), &st),
                                  requantize(acc[2 * h + 1], _mm256_loadu_ps(f + 8), &st), &st));
    }
}

#define BLOCK32 block32
#define BLOCK16 block16
#define DWCONV dn_q8_dwconv_avx2
#include "q8_dwconv.h"
#endif
