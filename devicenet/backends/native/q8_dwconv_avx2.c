/* Eight-bit depthwise convolution (q8_dwconv.h), AVX2 (x86-64): per pair
 * of taps and 16 channels, the two taps' bytes interleaved, widened to
 * int16 and multiplied and added by vpmaddwd with the pair's weights into
 * int32 (exact: 255 x 128 x 2 fits easily), requantised on the vectors. */
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
    const __m256i m0 = _mm256_loadu_si256((const __m256i *)(a->m + k));
    const __m256i m1 = _mm256_loadu_si256((const __m256i *)(a->m + k + 8));
    const __m256i e0 = _mm256_loadu_si256((const __m256i *)(a->e + k));
    const __m256i e1 = _mm256_loadu_si256((const __m256i *)(a->e + k + 8));
    const __m256i one = _mm256_set1_epi32(1);
    /* 2**(e - 1) or 0: (1 << e) >> 1 */
    const __m256i r0 = _mm256_srli_epi32(_mm256_sllv_epi32(one, e0), 1);
    const __m256i r1 = _mm256_srli_epi32(_mm256_sllv_epi32(one, e1), 1);
    const __m128i b = narrow16(requantize(acc0, m0, _mm256_srli_epi64(m0, 32), e0, r0),
                               requantize(acc1, m1, _mm256_srli_epi64(m1, 32), e1, r1),
                               _mm256_set1_epi16((short)a->zero_point), _mm_set1_epi8((char)a->qmin),
                               _mm_set1_epi8((char)a->qmax));
    _mm_storeu_si128((__m128i *)y, b);
}

#define BLOCK16 block16
#define DWCONV dn_q8_dwconv_avx2
#include "q8_dwconv.h"
#endif
