/* Eight-bit depthwise convolution (q8_dwconv.h), SSE2 (x86-64's
 * baseline): per pair of taps and 16 channels, the two taps' bytes
 * interleaved, widened to int16 and multiplied and added by pmaddwd with
 * the pair's weights into int32; SSE2 has no signed 64-bit product, so the
 * sums are requantised in portable code. */
#include "q8.h"
#if DN_X86
#pragma GCC target("sse2")
#include <emmintrin.h>

INLINE void block16(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                    ptrdiff_t off, uint8_t *y)
{
    const int16_t *w = a->w + 2 * k;
    const ptrdiff_t c2 = 2 * a->g.c;
    const __m128i zero = _mm_setzero_si128();
    __m128i acc[4];
    for (int q = 0; q < 4; q++)
        acc[q] = _mm_loadu_si128((const __m128i *)(a->bias + k + 4 * q));
    for (ptrdiff_t p = 0; p < pairs; p++, w += c2) {
        const __m128i x0 = _mm_loadu_si128((const __m128i *)(x[2 * p] + off));
        const __m128i x1 = _mm_loadu_si128((const __m128i *)(x[2 * p + 1] + off));
        const __m128i lo = _mm_unpacklo_epi8(x0, x1), hi = _mm_unpackhi_epi8(x0, x1);  /* channel pairs */
        acc[0] = _mm_add_epi32(acc[0], _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), _mm_loadu_si128((const __m128i *)w)));
        acc[1] = _mm_add_epi32(acc[1], _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), _mm_loadu_si128((const __m128i *)(w + 8))));
        acc[2] = _mm_add_epi32(acc[2], _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), _mm_loadu_si128((const __m128i *)(w + 16))));
        acc[3] = _mm_add_epi32(acc[3], _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), _mm_loadu_si128((const __m128i *)(w + 24))));
    }
    int32_t sums[16];
    for (int q = 0; q < 4; q++)
        _mm_storeu_si128((__m128i *)(sums + 4 * q), acc[q]);
    for (int j = 0; j < 16; j++)
        y[j] = dn_q8_requantize(sums[j], a->rscale[k + j], (int32_t)a->zero_point, (int32_t)a->qmin,
                                (int32_t)a->qmax);
}

#define BLOCK16 block16
#define DWCONV dn_q8_dwconv_sse2
#include "q8_dwconv.h"
#endif
