/* The body of the NEON float32 GEMM micro-kernels (gemm.h), written once
 * for both: included by f32_gemm_4x8_neon.c (32-bit ARM, vmla) and
 * f32_gemm_8x8_neonfma.c (AArch64, fused multiply-add), which define
 *   DN_NEON_MR          rows of the tile (the accumulators: 2 per row),
 *   DN_NEON_MLA_LANE    acc + b * x[lane] (vmlaq_lane_f32 or vfmaq_lane_f32).
 * Eight columns: two vectors.  k goes two steps at a time, so each row's
 * two values of A come in one 64-bit load and are used by lane. */
#ifndef DEVICENET_F32_GEMM_NEON_H
#define DEVICENET_F32_GEMM_NEON_H

#include <arm_neon.h>

#include "gemm.h"

#define NR 8

__attribute__((always_inline))
static inline void rows(const size_t MR, size_t nr_, size_t kc, const float *a, size_t lda,
                        const float *w, float *c, size_t ldc, float lo, float hi)
{
    float32x4_t acc[DN_NEON_MR][2];
    const float *ar[DN_NEON_MR];
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
        acc[i][0] = vld1q_f32(w);  /* the bias */
        acc[i][1] = vld1q_f32(w + 4);
        ar[i] = a + i * lda;
    }
    w += NR;
    size_t p = 0;
    for (; p + 2 <= kc; p += 2, w += 2 * NR) {
        float32x4_t b0 = vld1q_f32(w), b1 = vld1q_f32(w + 4);
        float32x4_t b2 = vld1q_f32(w + 8), b3 = vld1q_f32(w + 12);
#pragma GCC unroll 8
        for (size_t i = 0; i < MR; i++) {
            float32x2_t x = vld1_f32(ar[i] + p);
            acc[i][0] = DN_NEON_MLA_LANE(acc[i][0], b0, x, 0);
            acc[i][1] = DN_NEON_MLA_LANE(acc[i][1], b1, x, 0);
            acc[i][0] = DN_NEON_MLA_LANE(acc[i][0], b2, x, 1);
            acc[i][1] = DN_NEON_MLA_LANE(acc[i][1], b3, x, 1);
        }
    }
    if (p < kc) {
        float32x4_t b0 = vld1q_f32(w), b1 = vld1q_f32(w + 4);
#pragma GCC unroll 8
        for (size_t i = 0; i < MR; i++) {
            float32x2_t x = vld1_dup_f32(ar[i] + p);
            acc[i][0] = DN_NEON_MLA_LANE(acc[i][0], b0, x, 0);
            acc[i][1] = DN_NEON_MLA_LANE(acc[i][1], b1, x, 0);
        }
    }
    float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++) {
        float32x4_t y0 = vminq_f32(vmaxq_f32(acc[i][0], vlo), vhi);
        float32x4_t y1 = vminq_f32(vmaxq_f32(acc[i][1], vlo), vhi);
        float *ci = c + i * ldc;
        if (nr_ == NR) {
            vst1q_f32(ci, y0);
            vst1q_f32(ci + 4, y1);
        } else {
            float t[NR];
            vst1q_f32(t, y0);
            vst1q_f32(t + 4, y1);
            memcpy(ci, t, nr_ * sizeof(float));
        }
    }
}

void DN_NEON_NAME(size_t mr_, size_t nr_, size_t kc, const float *a, size_t lda,
                  const float *panel, float *c, size_t ldc, float lo, float hi)
{
#define ROWS(MR) rows(MR, nr_, kc, a, lda, panel, c, ldc, lo, hi)
    DN_GEMM_ROWS_SWITCH(mr_, DN_NEON_MR)
}

#endif
