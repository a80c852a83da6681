/* Float32 GEMM micro-kernel, 6 x 16 tile, AVX2 + FMA (gemm.h).
 *
 * 12 accumulators (6 rows x two 8-float vectors), two weight vectors and
 * one broadcast value of A: 15 of the 16 ymm registers.  Compiled for
 * AVX2 by target attribute, so a baseline build contains it; the registry
 * runs it only on CPUs with AVX2 and FMA. */
#include "gemm.h"
#if DN_X86
#include <immintrin.h>

#define NR 16
#define TARGET __attribute__((target("avx2,fma")))

/* MR rows by NV vectors of 8 columns (constants once inlined: the loops
 * unroll and the accumulators live in registers).  NV = 1 serves a last
 * panel of at most 8 columns (a width of 24 or 40 channels) at half the
 * work. */
TARGET __attribute__((always_inline))
static inline void rows(const size_t MR, const size_t NV, size_t nr_, size_t kc, const float *a, size_t lda,
                        const float *w, float *c, size_t ldc, float lo, float hi)
{
    __m256 acc[6][2];
    const float *ar[6];
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = _mm256_loadu_ps(w);  /* the bias */
        acc[i][1] = NV == 2 ? _mm256_loadu_ps(w + 8) : acc[i][0];
        ar[i] = a + i * lda;
    }
    w += NR;
#pragma GCC unroll 4  /* (4% over Lite0's GEMMs: less loop overhead per 12 FMAs) */
    for (size_t p = 0; p < kc; p++, w += NR) {
        __m256 b0 = _mm256_loadu_ps(w), b1 = NV == 2 ? _mm256_loadu_ps(w + 8) : b0;
#pragma GCC unroll 6
        for (size_t i = 0; i < MR; i++) {
            __m256 x = _mm256_broadcast_ss(ar[i] + p);
            acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
            if (NV == 2)
                acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
        }
    }
    __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; i++) {
        __m256 y0 = _mm256_min_ps(_mm256_max_ps(acc[i][0], vlo), vhi);
        __m256 y1 = _mm256_min_ps(_mm256_max_ps(acc[i][1], vlo), vhi);
        float *ci = c + i * ldc;
        if (nr_ == 8 * NV) {
            _mm256_storeu_ps(ci, y0);
            if (NV == 2)
                _mm256_storeu_ps(ci + 8, y1);
        } else {  /* the last panel of a matrix whose width is not a multiple of 16 */
            float t[NR];
            _mm256_storeu_ps(t, y0);
            _mm256_storeu_ps(t + 8, y1);
            memcpy(ci, t, nr_ * sizeof(float));
        }
    }
}

TARGET
void dn_f32_gemm_6x16_avx2fma(size_t mr_, size_t nr_, size_t kc, const float *a, size_t lda,
                              const float *panel, float *c, size_t ldc, float lo, float hi)
{
#define ROWS(MR) \
    (nr_ > 8 ? rows(MR, 2, nr_, kc, a, lda, panel, c, ldc, lo, hi) \
             : rows(MR, 1, nr_, kc, a, lda, panel, c, ldc, lo, hi))
    DN_GEMM_ROWS_SWITCH(mr_, 6)
}
#endif
