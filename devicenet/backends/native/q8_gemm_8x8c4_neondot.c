/* Eight-bit GEMM micro-kernel, 8 x 8 tile, four k per step through the
 * dot-product instructions of ARMv8.2 (SDOT, AArch64 CPUs that have them:
 * Cortex-A55, A76 and later; chosen at run time).
 *
 * SDOT multiplies signed bytes by signed bytes, so the activations enter
 * with 128 taken away (an exclusive or of their top bit): the sums then
 * lack 128 x the column's weight sum, which the packing adds to the
 * column's bias (dn_q8_gemm_variant.a_offset).  Every product and sum is
 * exact in int32, for any int8 weights.  One SDOT by element adds, for 4
 * columns, the dot products of their 4 weights with 4 bytes of a row of A
 * (one lane of a 16-byte load, which holds k..k+15), so a row's load
 * serves four steps.  The output stage is q8_neon.h's. */
#include "q8.h"
#if DN_NEON && defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include "q8_neon.h"

#define NR 8
#define MR 8

/* 16 bytes of a row of A from k = p (fewer where the row ends: zeros,
 * whose weights are zero too), less 128, as signed bytes. */
__attribute__((always_inline))
static inline int8x16_t row16(const uint8_t *p, size_t have)
{
    uint8x16_t v;
    if (have >= 16)
        v = vld1q_u8(p);
    else {
        uint8_t t[16] = {0};
        memcpy(t, p, have);
        v = vld1q_u8(t);
    }
    return vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80)));
}

#define DOT(i, g, lane)                                                              \
    acc[i][0] = vdotq_laneq_s32(acc[i][0], w[g][0], x[i], lane);                    \
    acc[i][1] = vdotq_laneq_s32(acc[i][1], w[g][1], x[i], lane);

__attribute__((always_inline))
static inline void rows(const size_t mr, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                        const int32_t *head, void *c, size_t ldc, const dn_q8_output *out)
{
    int32x4_t acc[MR][2];
    const int8_t *wp = (const int8_t *)(head + DN_Q8_HEAD * NR);
#pragma GCC unroll 8
    for (size_t i = 0; i < mr; i++) {
        acc[i][0] = vld1q_s32(head);  /* the bias, 128 x the weight sums added */
        acc[i][1] = vld1q_s32(head + 4);
    }
    for (size_t p = 0; p < k; p += 16) {
        const size_t groups = k - p >= 16 ? 4 : (k - p + 3) / 4;
        int8x16_t x[MR];
#pragma GCC unroll 8
        for (size_t i = 0; i < mr; i++)
            x[i] = row16(a + i * lda + p, k - p);
        int8x16_t w[4][2];
        for (size_t g = 0; g < groups; g++, wp += 4 * NR) {
            w[g][0] = vld1q_s8(wp);       /* columns 0-3, 4 k each */
            w[g][1] = vld1q_s8(wp + 16);  /* columns 4-7 */
        }
        if (groups == 4) {
#pragma GCC unroll 8
            for (size_t i = 0; i < mr; i++) {
                DOT(i, 0, 0)
                DOT(i, 1, 1)
                DOT(i, 2, 2)
                DOT(i, 3, 3)
            }
        } else {  /* the last, partial step */
#pragma GCC unroll 8
            for (size_t i = 0; i < mr; i++) {
                DOT(i, 0, 0)
                if (groups > 1) {
                    DOT(i, 1, 1)
                }
                if (groups > 2) {
                    DOT(i, 2, 2)
                }
            }
        }
    }
    q8_neon_store_tile(mr, nr_, acc, head, c, ldc, out);
}

#define ROWS(M) rows(M, nr_, k, a, lda, panel, c, ldc, out)
DN_Q8_GEMM_ENTRY(dn_q8_gemm_8x8c4_neondot, MR)
#endif
