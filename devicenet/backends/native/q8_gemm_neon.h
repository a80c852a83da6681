/* The NEON eight-bit GEMM micro-kernels (q8.h), written once for both:
 * included by q8_gemm_4x8c1_neon.c (32-bit ARM) and q8_gemm_8x8c1_neon.c
 * (AArch64), which define DN_NEON_MR (rows of the tile, two accumulators
 * each) and DN_NEON_NAME.
 *
 * Eight columns; k four steps at a time: the weights of a step are 8
 * int8 widened to int16, the four activations of each row widened to
 * int16 once and used by lane (vmlal_lane_s16 sums into int32 exactly, for
 * any weights).  The output stage is q8_neon.h's. */
#ifndef DEVICENET_Q8_GEMM_NEON_H
#define DEVICENET_Q8_GEMM_NEON_H

#include "q8.h"
#include "q8_neon.h"

#define NR 8

/* The four activations at p (fewer where k ends: the weights past k are
 * zeros), as int16. */
__attribute__((always_inline))
static inline int16x4_t four(const uint8_t *p, size_t have)
{
    uint32_t v = 0;
    memcpy(&v, p, have < 4 ? have : 4);
    return vreinterpret_s16_u16(vget_low_u16(vmovl_u8(vcreate_u8((uint64_t)v))));
}

#define MLAL(i, w, lane)                                                             \
    acc[i][0] = vmlal_lane_s16(acc[i][0], vget_low_s16(w), x, lane);                \
    acc[i][1] = vmlal_lane_s16(acc[i][1], vget_high_s16(w), x, lane);

__attribute__((always_inline))
static inline void rows(const size_t MR, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                        const int32_t *head, void *c, size_t ldc, const dn_q8_output *out)
{
    int32x4_t acc[DN_NEON_MR][2];
    const uint8_t *ar[DN_NEON_MR];
    const int8_t *w = (const int8_t *)(head + DN_Q8_HEAD * NR);
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = vld1q_s32(head);  /* the bias */
        acc[i][1] = vld1q_s32(head + 4);
        ar[i] = a + i * lda;
    }
    for (size_t p = 0; p < k; p += 4, w += 4 * NR) {
        const int16x8_t w0 = vmovl_s8(vld1_s8(w)), w1 = vmovl_s8(vld1_s8(w + 8));
        const int16x8_t w2 = vmovl_s8(vld1_s8(w + 16)), w3 = vmovl_s8(vld1_s8(w + 24));
#pragma GCC unroll 8
        for (size_t i = 0; i < MR; i++) {
            const int16x4_t x = four(ar[i] + p, k - p);
            MLAL(i, w0, 0)
            MLAL(i, w1, 1)
            MLAL(i, w2, 2)
            MLAL(i, w3, 3)
        }
    }
    q8_neon_store_tile(MR, nr_, acc, head, c, ldc, out);
}

#define ROWS(MR) rows(MR, nr_, k, a, lda, panel, c, ldc, out)
DN_Q8_GEMM_ENTRY(DN_NEON_NAME, DN_NEON_MR)

#endif
