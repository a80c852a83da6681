/* Eight-bit GEMM micro-kernel, 4 x 8 tile, two k per step through 16-bit
 * pmaddwd, SSE2 (q8.h): the x86-64 baseline, exact for any int8 weights.
 * SSE2 has no signed 32 x 32 -> 64-bit multiply, so the sums go through
 * the portable output stage. */
#include "q8.h"
#if DN_X86
#include <emmintrin.h>

#define NR 8
#if defined(__i386__) && !defined(__SSE2__)
#define TARGET __attribute__((target("sse2")))
#else
#define TARGET
#endif

TARGET __attribute__((always_inline))
static inline void rows(const size_t MR, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                        const int32_t *head, void *c, size_t ldc, const dn_q8_output *out)
{
    __m128i acc[4][2];
    const uint8_t *ar[4];
    const int8_t *w = (const int8_t *)(head + DN_Q8_HEAD * NR);
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = _mm_loadu_si128((const __m128i *)head);  /* the bias */
        acc[i][1] = _mm_loadu_si128((const __m128i *)(head + 4));
        ar[i] = a + i * lda;
    }
    for (size_t p = 0; p < k; p += 2, w += 2 * NR) {
        /* 8 columns x 2 k, sign-extended to int16 (each byte in the high
         * half, shifted down) */
        const __m128i wb = _mm_loadu_si128((const __m128i *)w);
        const __m128i w0 = _mm_srai_epi16(_mm_unpacklo_epi8(wb, wb), 8);
        const __m128i w1 = _mm_srai_epi16(_mm_unpackhi_epi8(wb, wb), 8);
#pragma GCC unroll 4
        for (size_t i = 0; i < MR; i++) {
            /* the pair of A, zero-extended to two int16, in every lane */
            const int pair = ar[i][p] | (p + 1 < k ? ar[i][p + 1] << 16 : 0);
            const __m128i x = _mm_set1_epi32(pair);
            acc[i][0] = _mm_add_epi32(acc[i][0], _mm_madd_epi16(x, w0));
            acc[i][1] = _mm_add_epi32(acc[i][1], _mm_madd_epi16(x, w1));
        }
    }
    int32_t sums[4 * NR];
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; i++) {
        _mm_storeu_si128((__m128i *)(sums + i * NR), acc[i][0]);
        _mm_storeu_si128((__m128i *)(sums + i * NR + 4), acc[i][1]);
    }
    dn_q8_store_tile(MR, nr_, NR, sums, head, c, ldc, out);
}

#define ROWS(MR) rows(MR, nr_, k, a, lda, panel, c, ldc, out)
TARGET DN_Q8_GEMM_ENTRY(dn_q8_gemm_4x8c2_sse2, 4)
#endif
