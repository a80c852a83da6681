/* What the NEON eight-bit kernels share: requantisation of 8 int32 sums
 * to bytes, exactly q8_ref.requantize (every step one float32 rounding;
 * ARMv7 NEON flushes subnormals to zero, which only a factor below
 * 2**-126 could meet, and its products round to 0 either way).
 * On 32-bit ARM a file
 * that includes this enables NEON for itself (as vec8_neon.h does), so a
 * build with the distribution's default flags holds the NEON variants. */
#ifndef DEVICENET_Q8_NEON_H
#define DEVICENET_Q8_NEON_H

#if defined(__arm__) && !defined(__ARM_NEON) && __ARM_ARCH < 7
#pragma GCC target("arch=armv7-a,fpu=neon")  /* NEON came with ARMv7 */
#elif defined(__arm__) && !defined(__ARM_NEON)
#pragma GCC target("fpu=neon")
#endif
#include <arm_neon.h>

/* The output stage's constants (q8.h): the clamp of the scaled sums,
 * [qmin - zero_point, qmax - zero_point], and the zero point. */
typedef struct {
    float32x4_t lo, hi;
    int32x4_t zp;
} q8_stage;

__attribute__((always_inline))
static inline q8_stage q8_stage_of(int32_t zero_point, int32_t qmin, int32_t qmax)
{
    q8_stage st = {vdupq_n_f32((float)(qmin - zero_point)), vdupq_n_f32((float)(qmax - zero_point)),
#if defined(__aarch64__)
                   vdupq_n_s32(zero_point)};
#else
                   vdupq_n_s32(DN_Q8_MAGIC_BITS - zero_point)};
#endif
    return st;
}

/* 4 sums times their factors, clamped, rounded half to even, plus the zero
 * point: AArch64's vcvtnq, or on ARMv7 (whose conversions truncate) the
 * float's bits after adding 1.5 x 2**23. */
__attribute__((always_inline))
static inline int32x4_t requantize4(int32x4_t acc, float32x4_t rscale, const q8_stage *st)
{
    const float32x4_t v = vminq_f32(vmaxq_f32(vmulq_f32(vcvtq_f32_s32(acc), rscale), st->lo), st->hi);
#if defined(__aarch64__)
    return vaddq_s32(vcvtnq_s32_f32(v), st->zp);
#else
    return vsubq_s32(vreinterpretq_s32_f32(vaddq_f32(v, vdupq_n_f32(DN_Q8_MAGIC))), st->zp);
#endif
}

/* 8 sums to bytes (within [qmin, qmax] already: the narrowing is exact). */
__attribute__((always_inline))
static inline uint8x8_t requantize8(int32x4_t a0, int32x4_t a1, float32x4_t f0, float32x4_t f1, const q8_stage *st)
{
    const int16x8_t s = vcombine_s16(vmovn_s32(requantize4(a0, f0, st)), vmovn_s32(requantize4(a1, f1, st)));
    return vqmovun_s16(s);
}

/* The output stage of an MR x 8 GEMM tile (rows of two accumulators;
 * nr_ <= 8 columns stored), uint8 or float32 (q8.h), the factors at
 * head + 8. */
__attribute__((always_inline))
static inline void q8_neon_store_tile(size_t mr, size_t nr_, int32x4_t (*acc)[2], const int32_t *head, void *c,
                                      size_t ldc, const dn_q8_output *out)
{
    const float32x4_t f0 = vld1q_f32((const float *)(head + 8)), f1 = vld1q_f32((const float *)(head + 12));
    if (out->to_float) {
        const float32x4_t lo = vdupq_n_f32(out->lo), hi = vdupq_n_f32(out->hi);
#pragma GCC unroll 8
        for (size_t i = 0; i < mr; i++) {
            float32x4_t y0 = vminq_f32(vmaxq_f32(vmulq_f32(vcvtq_f32_s32(acc[i][0]), f0), lo), hi);
            float32x4_t y1 = vminq_f32(vmaxq_f32(vmulq_f32(vcvtq_f32_s32(acc[i][1]), f1), lo), hi);
            float t[8], *ci = (float *)c + i * ldc;
            vst1q_f32(nr_ == 8 ? ci : t, y0);
            vst1q_f32(nr_ == 8 ? ci + 4 : t + 4, y1);
            if (nr_ != 8)
                memcpy(ci, t, nr_ * sizeof(float));
        }
        return;
    }
    const q8_stage st = q8_stage_of(out->zero_point, out->qmin, out->qmax);
#pragma GCC unroll 8
    for (size_t i = 0; i < mr; i++) {
        const uint8x8_t b = requantize8(acc[i][0], acc[i][1], f0, f1, &st);
        uint8_t *ci = (uint8_t *)c + i * ldc;
        if (nr_ == 8)
            vst1_u8(ci, b);
        else {
            uint8_t t[8];
            vst1_u8(t, b);
            memcpy(ci, t, nr_);
        }
    }
}

#endif
