/* Eight-bit depthwise convolution (q8_dwconv.h), AVX2 (x86-64): per pair
 * of taps and 16 channels, the two taps' bytes interleaved, widened to
 * int16 and multiplied and added by vpmaddwd with the pair's weights into
 * int32 (exact: 255 x 128 x 2 fits easily), requantised on the vectors
 * (q8_avx2.h). */
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

/* channels [k, k + 32): the bytes interleaved within each 128-bit lane
 * (three shuffles per 16 channels instead of four), so that the sums come
 * out as [0-3 | 16-19], [4-7 | 20-23], [8-11 | 24-27], [12-15 | 28-31] and
 * each half's weights are loaded into its lane; put in order at the end */
TARGET INLINE __m256i lanes(const int16_t *lo, const int16_t *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

TARGET INLINE void block32(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                           ptrdiff_t off, uint8_t *y)
{
    const int16_t *w = a->w + 2 * k;
    const ptrdiff_t c2 = 2 * a->g.c;
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc[4] = {zero, zero, zero, zero};
    for (ptrdiff_t p = 0; p < pairs; p++, w += c2) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(x[2 * p] + off));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(x[2 * p + 1] + off));
        const __m256i lo = _mm256_unpacklo_epi8(x0, x1), hi = _mm256_unpackhi_epi8(x0, x1);
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), lanes(w, w + 32)));
        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), lanes(w + 8, w + 40)));
        acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), lanes(w + 16, w + 48)));
        acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), lanes(w + 24, w + 56)));
    }
    const q8_stage st = q8_stage_of((int32_t)a->zero_point, (int32_t)a->qmin, (int32_t)a->qmax);
    for (int h = 0; h < 2; h++) {
        const ptrdiff_t kh = k + 16 * h;
        const int sel = h ? 0x31 : 0x20;
        __m256i s[2];
        s[0] = _mm256_permute2x128_si256(acc[0], acc[1], sel);
        s[1] = _mm256_permute2x128_si256(acc[2], acc[3], sel);
        __m256i r[2];
        for (int q = 0; q < 2; q++) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(a->bias + kh + 8 * q));
            r[q] = requantize(_mm256_add_epi32(s[q], b), _mm256_loadu_ps(a->rscale + kh + 8 * q), &st);
        }
        _mm_storeu_si128((__m128i *)(y + 16 * h), narrow16(r[0], r[1], &st));
    }
}

#define BLOCK32 block32
#define BLOCK16 block16
#define DWCONV dn_q8_dwconv_avx2
#include "q8_dwconv.h"
#endif
