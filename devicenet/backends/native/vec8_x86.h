/* Eight floats on x86 as one GCC vector: the compiler maps it onto
 * whatever the file's target has (two SSE registers, one AVX register).
 * Loaded and stored at any 4-byte alignment.  Intrinsics only where GCC's
 * generic code falls short (it widens 8- and 16-bit lanes one at a time). */
#ifndef DEVICENET_VEC8_H
#define DEVICENET_VEC8_H

/* Every function here is inlined: passing eight floats by value changes
 * no call's ABI. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8 __attribute__((vector_size(32), aligned(4)));
#include <immintrin.h>

/* pixels per register block of the window kernels (window.h): AVX has
 * room for 4 x 16 channels of accumulators, SSE2 for 2 */
#ifdef __AVX__
#define V8_BLOCK_PIXELS 4
#else
#define V8_BLOCK_PIXELS 2
#endif

INLINE v8 v8_load(const float *p) { return *(const v8 *)p; }
INLINE v8 v8_zero(void) { return (v8){0}; }
INLINE v8 v8_dup(float s) { return (v8){s, s, s, s, s, s, s, s}; }
INLINE v8 v8_add(v8 a, v8 b) { return a + b; }
INLINE v8 v8_mul(v8 a, v8 b) { return a * b; }
INLINE v8 v8_fma(v8 acc, v8 a, v8 b) { return acc + a * b; }
INLINE v8 v8_fmas(v8 acc, v8 a, float s) { return acc + a * s; }
/* eight int16 lanes as floats */
INLINE v8 v8_from_i16(__m128i w)
{
#ifdef __AVX2__
    return (v8)_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(w));
#else  /* sign-extended by shifting each lane down from the top half */
    __m128 lo = _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(w, w), 16));
    __m128 hi = _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpackhi_epi16(w, w), 16));
    v8 r;
    memcpy(&r, &lo, sizeof lo);
    memcpy((char *)&r + sizeof lo, &hi, sizeof hi);
    return r;
#endif
}

INLINE v8 v8_load_i8(const signed char *p)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
#ifdef __AVX2__
    return (v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
#else
    return v8_from_i16(_mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8));
#endif
}

INLINE v8 v8_load_i16(const short *p) { return v8_from_i16(_mm_loadu_si128((const __m128i *)p)); }

INLINE void v8_store(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* What the curve activations (f32_curve.h) need besides. */
typedef int v8i __attribute__((vector_size(32)));
INLINE v8 v8_sub(v8 a, v8 b) { return a - b; }
INLINE v8 v8_div(v8 a, v8 b) { return a / b; }
/* v raised to lo, lowered to hi, where it passes them (a NaN stays a NaN) */
#ifdef __AVX__  /* maxps/minps return their second operand where either is a NaN */
INLINE v8 v8_max(v8 v, v8 lo) { return (v8)_mm256_max_ps((__m256)lo, (__m256)v); }
INLINE v8 v8_min(v8 v, v8 hi) { return (v8)_mm256_min_ps((__m256)hi, (__m256)v); }
#else
INLINE v8 v8_max(v8 v, v8 lo) { v8i m = v < lo; return (v8)(((v8i)lo & m) | ((v8i)v & ~m)); }
INLINE v8 v8_min(v8 v, v8 hi) { v8i m = v > hi; return (v8)(((v8i)hi & m) | ((v8i)v & ~m)); }
#endif
INLINE v8 v8_abs(v8 v) { return (v8)((v8i)v & 0x7fffffff); }
/* the magnitude of m with the sign of s */
INLINE v8 v8_copysign(v8 m, v8 s) { return (v8)(((v8i)m & 0x7fffffff) | ((v8i)s & (int)0x80000000u)); }
/* the bits of v shifted 23 places up: an integer in the low mantissa bits
 * becomes the exponent */
INLINE v8 v8_shl23(v8 v) { return (v8)((v8i)v << 23); }

INLINE float v8_sum(v8 v)
{
    float f[8];
    memcpy(f, &v, sizeof f);
    return ((f[0] + f[4]) + (f[1] + f[5])) + ((f[2] + f[6]) + (f[3] + f[7]));
}

/* v clipped to [lo, hi], stored at p.  max(lo, v) and min(hi, v) in this
 * order return v where v is a NaN, as the scalar clamp() does. */
INLINE void v8_store_clamped(float *p, v8 v, float lo, float hi)
{
#ifdef __AVX__
    __m256 x = _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), (__m256)v));
    _mm256_storeu_ps(p, x);
#else
    __m128 h[2];
    memcpy(h, &v, sizeof h);
    for (int i = 0; i < 2; i++)
        _mm_storeu_ps(p + 4 * i, _mm_min_ps(_mm_set1_ps(hi), _mm_max_ps(_mm_set1_ps(lo), h[i])));
#endif
}

#endif
