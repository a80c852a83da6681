/* Float32 GEMM micro-kernel, 4 x 8 tile, SSE2 (gemm.h): the x86-64
 * baseline, for CPUs without AVX2.  8 accumulators, two weight vectors,
 * one broadcast value of A, and room for the products (no FMA). */
#include "gemm.h"
#if DN_X86
#include <emmintrin.h>

#define NR 8
#if defined(__i386__) && !defined(__SSE2__)
#define TARGET __attribute__((target("sse2")))
#else
#define TARGET
#endif

TARGET __attribute__((always_inline))
static inline void rows(const size_t MR, size_t nr_, size_t kc, const float *a, size_t lda,
                        const float *w, float *c, size_t ldc, float lo, float hi)
{
    __m128 acc[4][2];
    const float *ar[4];
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = _mm_loadu_ps(w);  /* the bias */
        acc[i][1] = _mm_loadu_ps(w + 4);
        ar[i] = a + i * lda;
    }
    w += NR;
    for (size_t p = 0; p < kc; p++, w += NR) {
        __m128 b0 = _mm_loadu_ps(w), b1 = _mm_loadu_ps(w + 4);
#pragma GCC unroll 4
        for (size_t i = 0; i < MR; i++) {
            __m128 x = _mm_set1_ps(ar[i][p]);
            acc[i][0] = _mm_add_ps(acc[i][0], _mm_mul_ps(x, b0));
            acc[i][1] = _mm_add_ps(acc[i][1], _mm_mul_ps(x, b1));
        }
    }
    __m128 vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; i++) {
        __m128 y0 = _mm_min_ps(_mm_max_ps(acc[i][0], vlo), vhi);
        __m128 y1 = _mm_min_ps(_mm_max_ps(acc[i][1], vlo), vhi);
        float *ci = c + i * ldc;
        if (nr_ == NR) {
            _mm_storeu_ps(ci, y0);
            _mm_storeu_ps(ci + 4, y1);
        } else {
            float t[NR];
            _mm_storeu_ps(t, y0);
            _mm_storeu_ps(t + 4, y1);
            memcpy(ci, t, nr_ * sizeof(float));
        }
    }
}

TARGET
void dn_f32_gemm_4x8_sse2(size_t mr_, size_t nr_, size_t kc, const float *a, size_t lda,
                          const float *panel, float *c, size_t ldc, float lo, float hi)
{
#define ROWS(MR) rows(MR, nr_, kc, a, lda, panel, c, ldc, lo, hi)
    DN_GEMM_ROWS_SWITCH(mr_, 4)
}
#endif
