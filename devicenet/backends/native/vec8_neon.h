/* Eight floats as two NEON registers, through arm_neon.h's intrinsics:
 * GCC puts ARMv7 float arithmetic on NEON only when told to, through
 * intrinsics or -funsafe-math-optimizations (NEON flushes denormals to
 * zero), and we want neither that flag nor a build that needs NEON to
 * load.  On 32-bit ARM the file enables NEON for itself, so a build with
 * the distribution's default flags (Debian: ARMv7 with VFPv3 only;
 * Raspberry Pi OS: ARMv6) still holds these variants; they run only where
 * the CPU has NEON (cpu.c). */
#ifndef DEVICENET_VEC8_H
#define DEVICENET_VEC8_H

#if defined(__arm__) && !defined(__ARM_NEON) && __ARM_ARCH < 7
#pragma GCC target("arch=armv7-a,fpu=neon")  /* NEON came with ARMv7 */
#elif defined(__arm__) && !defined(__ARM_NEON)
#pragma GCC target("fpu=neon")
#endif
#include <arm_neon.h>

/* pixels per register block of the window kernels (window.h): AArch64's
 * 32 vector registers hold 4 x 16 channels of accumulators, ARMv7's 16 hold 2 */
#if defined(__aarch64__)
#define V8_BLOCK_PIXELS 4
#else
#define V8_BLOCK_PIXELS 2
#endif

typedef struct { float32x4_t a, b; } v8;

#if defined(__aarch64__)
#define V8_MLA(acc, x, y) vfmaq_f32(acc, x, y)
#define V8_MLA_N(acc, x, s) vfmaq_n_f32(acc, x, s)
#else  /* vmla: multiply, then add (not fused); NEON on every ARMv7 */
#define V8_MLA(acc, x, y) vmlaq_f32(acc, x, y)
#define V8_MLA_N(acc, x, s) vmlaq_n_f32(acc, x, s)
#endif

INLINE v8 v8_pair(float32x4_t a, float32x4_t b) { v8 r; r.a = a; r.b = b; return r; }
INLINE v8 v8_load(const float *p) { return v8_pair(vld1q_f32(p), vld1q_f32(p + 4)); }
INLINE v8 v8_zero(void) { return v8_pair(vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)); }
INLINE v8 v8_dup(float s) { return v8_pair(vdupq_n_f32(s), vdupq_n_f32(s)); }
INLINE v8 v8_add(v8 x, v8 y) { return v8_pair(vaddq_f32(x.a, y.a), vaddq_f32(x.b, y.b)); }
INLINE v8 v8_mul(v8 x, v8 y) { return v8_pair(vmulq_f32(x.a, y.a), vmulq_f32(x.b, y.b)); }
INLINE v8 v8_fma(v8 acc, v8 x, v8 y) { return v8_pair(V8_MLA(acc.a, x.a, y.a), V8_MLA(acc.b, x.b, y.b)); }
INLINE v8 v8_fmas(v8 acc, v8 x, float s) { return v8_pair(V8_MLA_N(acc.a, x.a, s), V8_MLA_N(acc.b, x.b, s)); }

INLINE v8 v8_widen(int16x8_t w)
{
    return v8_pair(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), vcvtq_f32_s32(vmovl_s16(vget_high_s16(w))));
}
INLINE v8 v8_load_i8(const signed char *p) { return v8_widen(vmovl_s8(vld1_s8((const int8_t *)p))); }
INLINE v8 v8_load_i16(const short *p) { return v8_widen(vld1q_s16((const int16_t *)p)); }

INLINE void v8_store(float *p, v8 v)
{
    vst1q_f32(p, v.a);
    vst1q_f32(p + 4, v.b);
}

/* What the curve activations (f32_curve.h) need besides. */
INLINE v8 v8_sub(v8 x, v8 y) { return v8_pair(vsubq_f32(x.a, y.a), vsubq_f32(x.b, y.b)); }
#if defined(__aarch64__)
INLINE float32x4_t v4_div(float32x4_t x, float32x4_t y) { return vdivq_f32(x, y); }
#else  /* ARMv7 NEON has no division: a reciprocal estimate (8 bits), then
        * two Newton-Raphson steps (each doubles the bits) */
INLINE float32x4_t v4_div(float32x4_t x, float32x4_t y)
{
    float32x4_t r = vrecpeq_f32(y);
    r = vmulq_f32(r, vrecpsq_f32(y, r));
    r = vmulq_f32(r, vrecpsq_f32(y, r));
    return vmulq_f32(x, r);
}
#endif
INLINE v8 v8_div(v8 x, v8 y) { return v8_pair(v4_div(x.a, y.a), v4_div(x.b, y.b)); }
/* v raised to lo, lowered to hi, where it passes them (a NaN stays a NaN) */
INLINE v8 v8_max(v8 v, v8 lo)
{
    return v8_pair(vbslq_f32(vcltq_f32(v.a, lo.a), lo.a, v.a), vbslq_f32(vcltq_f32(v.b, lo.b), lo.b, v.b));
}
INLINE v8 v8_min(v8 v, v8 hi)
{
    return v8_pair(vbslq_f32(vcgtq_f32(v.a, hi.a), hi.a, v.a), vbslq_f32(vcgtq_f32(v.b, hi.b), hi.b, v.b));
}
INLINE v8 v8_abs(v8 v) { return v8_pair(vabsq_f32(v.a), vabsq_f32(v.b)); }
/* the magnitude of m with the sign of s */
INLINE v8 v8_copysign(v8 m, v8 s)
{
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    return v8_pair(vbslq_f32(sign, s.a, m.a), vbslq_f32(sign, s.b, m.b));
}
/* the bits of v shifted 23 places up: an integer in the low mantissa bits
 * becomes the exponent */
INLINE v8 v8_shl23(v8 v)
{
    return v8_pair(vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(v.a), 23)),
                   vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(v.b), 23)));
}

INLINE float v8_sum(v8 v)
{
    float32x4_t s = vaddq_f32(v.a, v.b);
#if defined(__aarch64__)
    return vaddvq_f32(s);
#else
    float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    return vget_lane_f32(vpadd_f32(t, t), 0);
#endif
}

INLINE void v8_store_clamped(float *p, v8 v, float lo, float hi)
{
    const float32x4_t l = vdupq_n_f32(lo), h = vdupq_n_f32(hi);
    vst1q_f32(p, vminq_f32(vmaxq_f32(v.a, l), h));
    vst1q_f32(p + 4, vminq_f32(vmaxq_f32(v.b, l), h));
}

#endif
