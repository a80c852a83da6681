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
