/* The curve activations (DN_CURVE_*, graph.CURVES on the Python side),
 * written once over the 8-float vectors of the including variant's
 * vec8_<isa>.h, so that a layer applies its curve while its output is
 * still in cache instead of in a pass of its own.
 *
 * Everything reduces to e^x: x = n ln 2 + r with n an integer and
 * |r| <= ln 2 / 2, e^r by a degree-6 polynomial (Cephes' expf
 * coefficients, about 1 ulp), 2^n made by writing n + 127 into the
 * exponent bits.  erf (for GELU) is Abramowitz and Stegun's 7.1.26 (within
 * 1.5e-7), the same formula as numpy's path (cpu_kernels.erf). */
#ifndef DEVICENET_F32_CURVE_H
#define DEVICENET_F32_CURVE_H

/* e^x; x is kept inside [-87, 88], where e^x and its 2^n are normal floats */
INLINE v8 v8_exp(v8 x)
{
    /* 1.5 * 2^23 + 127: adding it rounds x log2(e) to an integer n, and
     * leaves n + 127 in the low mantissa bits */
    const v8 magic = v8_dup(12583039.0f);
    x = v8_max(v8_min(x, v8_dup(88.0f)), v8_dup(-87.0f));
    const v8 t = v8_fma(magic, x, v8_dup(1.44269504088896341f));
    const v8 n = v8_sub(t, magic);
    /* r = x - n ln 2, ln 2 in two parts so that n ln2_hi is exact */
    v8 r = v8_fma(x, n, v8_dup(-0.693359375f));
    r = v8_fma(r, n, v8_dup(2.12194440e-4f));
    v8 p = v8_dup(1.9875691500e-4f);
    p = v8_fma(v8_dup(1.3981999507e-3f), p, r);
    p = v8_fma(v8_dup(8.3334519073e-3f), p, r);
    p = v8_fma(v8_dup(4.1665795894e-2f), p, r);
    p = v8_fma(v8_dup(1.6666665459e-1f), p, r);
    p = v8_fma(v8_dup(5.0000001201e-1f), p, r);
    p = v8_fma(v8_add(r, v8_dup(1.0f)), p, v8_mul(r, r));
    return v8_mul(p, v8_shl23(t));
}

/* 1 / (1 + e^-x) */
INLINE v8 v8_sigmoid(v8 x)
{
    const v8 one = v8_dup(1.0f);
    return v8_div(one, v8_add(one, v8_exp(v8_sub(v8_zero(), x))));
}

/* x / (1 + e^-x): x times its sigmoid, one division */
INLINE v8 v8_silu(v8 x)
{
    return v8_div(x, v8_add(v8_dup(1.0f), v8_exp(v8_sub(v8_zero(), x))));
}

/* clip(x / 6 + 1/2, 0, 1): PyTorch's (and the fused layers') hard sigmoid */
INLINE v8 v8_hardsigmoid(v8 x)
{
    return v8_min(v8_max(v8_fma(v8_dup(0.5f), x, v8_dup(1.0f / 6.0f)), v8_zero()), v8_dup(1.0f));
}

INLINE v8 v8_hardswish(v8 x) { return v8_mul(x, v8_hardsigmoid(x)); }

/* x (1 + erf(x / sqrt 2)) / 2, erf(z) = 1 - t P(t) e^(-z^2), t = 1 / (1 + p|z|) */
INLINE v8 v8_gelu(v8 x)
{
    const v8 one = v8_dup(1.0f);
    const v8 z = v8_mul(x, v8_dup(0.70710678118654752f)), a = v8_abs(z);
    const v8 t = v8_div(one, v8_fma(one, a, v8_dup(0.3275911f)));
    v8 p = v8_dup(1.061405429f);
    p = v8_fma(v8_dup(-1.453152027f), p, t);
    p = v8_fma(v8_dup(1.421413741f), p, t);
    p = v8_fma(v8_dup(-0.284496736f), p, t);
    p = v8_fma(v8_dup(0.254829592f), p, t);
    p = v8_mul(p, t);
    const v8 erf = v8_copysign(v8_sub(one, v8_mul(p, v8_exp(v8_sub(v8_zero(), v8_mul(a, a))))), z);
    return v8_mul(v8_mul(x, v8_dup(0.5f)), v8_add(one, erf));
}

/* Curve ``kind`` over n floats at p, in place.  The last n % 8 go through
 * a padded vector, so every value gets the same arithmetic. */
#define CURVE_SPAN(F)                                                      \
    do {                                                                   \
        ptrdiff_t i = 0;                                                   \
        for (; i + 16 <= n; i += 16) { /* two chains at once */           \
            const v8 u = F(v8_load(p + i)), v = F(v8_load(p + i + 8));     \
            v8_store(p + i, u);                                            \
            v8_store(p + i + 8, v);                                        \
        }                                                                  \
        for (; i + 8 <= n; i += 8)                                         \
            v8_store(p + i, F(v8_load(p + i)));                            \
        if (i < n) {                                                       \
            float tail[8] = {0};                                           \
            memcpy(tail, p + i, (size_t)(n - i) * sizeof(float));          \
            v8_store(tail, F(v8_load(tail)));                              \
            memcpy(p + i, tail, (size_t)(n - i) * sizeof(float));          \
        }                                                                  \
    } while (0)

INLINE void curve_span(float *p, ptrdiff_t n, int kind)
{
    switch (kind) {
    case DN_CURVE_SIGMOID: CURVE_SPAN(v8_sigmoid); break;
    case DN_CURVE_HARDSIGMOID: CURVE_SPAN(v8_hardsigmoid); break;
    case DN_CURVE_HARDSWISH: CURVE_SPAN(v8_hardswish); break;
    case DN_CURVE_SILU: CURVE_SPAN(v8_silu); break;
    case DN_CURVE_GELU: CURVE_SPAN(v8_gelu); break;
    default: break;
    }
}

#endif
