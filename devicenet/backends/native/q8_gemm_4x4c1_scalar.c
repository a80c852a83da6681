/* Eight-bit GEMM micro-kernel, 4 x 4 tile, portable C (q8.h): every CPU
 * runs it, and it is exact for any int8 weights. */
#include "q8.h"

#define NR 4

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void rows(const size_t MR, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                        const int32_t *head, void *c, size_t ldc, const dn_q8_output *out)
{
    int32_t acc[4 * NR];
    const uint8_t *ar[4];
    const int8_t *w = (const int8_t *)(head + DN_Q8_HEAD * NR);
    for (size_t i = 0; i < MR; i++) {
        for (size_t j = 0; j < NR; j++)
            acc[i * NR + j] = head[j];
        ar[i] = a + i * lda;
    }
    for (size_t p = 0; p < k; p++, w += NR)
        for (size_t i = 0; i < MR; i++) {
            const int32_t x = ar[i][p];
            for (size_t j = 0; j < NR; j++)
                acc[i * NR + j] += x * w[j];
        }
    dn_q8_store_tile(MR, nr_, NR, acc, head, c, ldc, out);
}

#define ROWS(MR) rows(MR, nr_, k, a, lda, panel, c, ldc, out)
DN_Q8_GEMM_ENTRY(dn_q8_gemm_4x4c1_scalar, 4)
