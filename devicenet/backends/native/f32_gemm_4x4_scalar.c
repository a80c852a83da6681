/* Float32 GEMM micro-kernel, 4 x 4 tile, portable C (gemm.h): every CPU
 * runs it, ARMv6 boards (Raspberry Pi 1 and Zero) among them.  16
 * accumulators fit the 32 single-precision VFP registers. */
#include "gemm.h"

#define NR 4

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void rows(const size_t MR, size_t nr_, size_t kc, const float *a, size_t lda,
                        const float *w, float *c, size_t ldc, float lo, float hi)
{
    float acc[4][NR];
    const float *ar[4];
    for (size_t i = 0; i < MR; i++) {
        for (size_t j = 0; j < NR; j++)
            acc[i][j] = w[j];  /* the bias */
        ar[i] = a + i * lda;
    }
    w += NR;
    for (size_t p = 0; p < kc; p++, w += NR)
        for (size_t i = 0; i < MR; i++) {
            float x = ar[i][p];
            for (size_t j = 0; j < NR; j++)
                acc[i][j] += x * w[j];
        }
    for (size_t i = 0; i < MR; i++)
        for (size_t j = 0; j < nr_; j++) {
            float v = acc[i][j] < lo ? lo : acc[i][j];
            c[i * ldc + j] = v > hi ? hi : v;
        }
}

void dn_f32_gemm_4x4_scalar(size_t mr_, size_t nr_, size_t kc, const float *a, size_t lda,
                            const float *panel, float *c, size_t ldc, float lo, float hi)
{
#define ROWS(MR) rows(MR, nr_, kc, a, lda, panel, c, ldc, lo, hi)
    DN_GEMM_ROWS_SWITCH(mr_, 4)
}
