/* Eight floats as plain C: the portable variants (ARMv6, or any CPU the
 * vector variants do not cover) run on this. */
#ifndef DEVICENET_VEC8_H
#define DEVICENET_VEC8_H

typedef struct { float f[8]; } v8;

#define V8_EACH(expr) for (int l = 0; l < 8; l++) expr
#define V8_BLOCK_PIXELS 2  /* of the window kernels (window.h) */

INLINE v8 v8_load(const float *p) { v8 r; memcpy(r.f, p, sizeof r.f); return r; }
INLINE v8 v8_zero(void) { v8 r = {{0}}; return r; }
INLINE v8 v8_dup(float s) { v8 r; V8_EACH(r.f[l] = s); return r; }
INLINE v8 v8_add(v8 a, v8 b) { V8_EACH(a.f[l] += b.f[l]); return a; }
INLINE v8 v8_mul(v8 a, v8 b) { V8_EACH(a.f[l] *= b.f[l]); return a; }
INLINE v8 v8_fma(v8 acc, v8 a, v8 b) { V8_EACH(acc.f[l] += a.f[l] * b.f[l]); return acc; }
INLINE v8 v8_fmas(v8 acc, v8 a, float s) { V8_EACH(acc.f[l] += a.f[l] * s); return acc; }
INLINE v8 v8_load_i8(const signed char *p) { v8 r; V8_EACH(r.f[l] = (float)p[l]); return r; }
INLINE v8 v8_load_i16(const short *p) { v8 r; V8_EACH(r.f[l] = (float)p[l]); return r; }
INLINE void v8_store(float *p, v8 v) { memcpy(p, v.f, sizeof v.f); }

/* What the curve activations (f32_curve.h) need besides. */
INLINE v8 v8_sub(v8 a, v8 b) { V8_EACH(a.f[l] -= b.f[l]); return a; }
INLINE v8 v8_div(v8 a, v8 b) { V8_EACH(a.f[l] /= b.f[l]); return a; }
/* v raised to lo, lowered to hi, where it passes them (a NaN stays a NaN) */
INLINE v8 v8_max(v8 v, v8 lo) { V8_EACH(v.f[l] = v.f[l] < lo.f[l] ? lo.f[l] : v.f[l]); return v; }
INLINE v8 v8_min(v8 v, v8 hi) { V8_EACH(v.f[l] = v.f[l] > hi.f[l] ? hi.f[l] : v.f[l]); return v; }
INLINE v8 v8_abs(v8 v) { V8_EACH(v.f[l] = fabsf(v.f[l])); return v; }
/* the magnitude of m with the sign of s */
INLINE v8 v8_copysign(v8 m, v8 s) { V8_EACH(m.f[l] = copysignf(m.f[l], s.f[l])); return m; }
/* the bits of v shifted 23 places up: an integer in the low mantissa bits
 * becomes the exponent */
INLINE v8 v8_shl23(v8 v)
{
    uint32_t u[8];
    memcpy(u, v.f, sizeof u);
    V8_EACH(u[l] <<= 23);
    memcpy(v.f, u, sizeof u);
    return v;
}

INLINE float v8_sum(v8 v)
{
    const float *f = v.f;
    return ((f[0] + f[4]) + (f[1] + f[5])) + ((f[2] + f[6]) + (f[3] + f[7]));
}

INLINE void v8_store_clamped(float *p, v8 v, float lo, float hi)
{
    V8_EACH(p[l] = v.f[l] < lo ? lo : (v.f[l] > hi ? hi : v.f[l]));
}

#endif
