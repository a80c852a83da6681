/* The eight-bit ops that go value by value (q8.h): residual add, global
 * mean pool, quantise and dequantise.  Written once in plain C, compiled
 * per instruction set (q8_pointwise_<isa>.c, which define Q8(op), the
 * variant's name): the compiler vectorises the loops; integer code and
 * single float multiplies vectorise exactly.  Where it does not, the
 * includer supplies blocks of values: ADD16 (the add), MEANPOOL16 (the sums
 * of 16 channels) and QUANTIZE32 (32 floats to bytes, after
 * QUANTIZE_SETUP); Q8_NO_FLOAT leaves out quantise and dequantise (32-bit
 * ARM, whose NEON flushes denormals: they stay in VFP code). */

#define QP 16  /* channels per block of the mean pool */

/* f rounded to an integer, half to even (rint), for |f| < 2**22: adding
 * and taking away 1.5 * 2**23 leaves no fraction bits, and the addition
 * rounds as the current mode does (to nearest even).  Plain adds, which
 * vectorise on every target; rintf becomes a library call on some. */
#define Q8_RINT(f) DN_F32(DN_F32((f) + 12582912.0f) - 12582912.0f)

/* Eight floats, int32 or bytes as GCC's generic vectors (lowered to what
 * the target has); a comparison gives -1 or 0 per lane.  Macros, not
 * functions, so that no vector crosses a call (its ABI differs by ISA). */
typedef float q8_vf __attribute__((vector_size(32)));
typedef int32_t q8_vi __attribute__((vector_size(32)));
typedef uint8_t q8_vb __attribute__((vector_size(8)));
#define Q8_DUP(T, v) ((T){v, v, v, v, v, v, v, v})
/* m ? a : b per lane, on the bits */
#define Q8_SELECT(m, a, b) ((q8_vf)(((m) & (q8_vi)(a)) | (~(m) & (q8_vi)(b))))

/* q8_ref.add: in 32-bit integers (the op checks that the sums fit). */
void Q8(add)(const dn_q8_add_args *args, ptrdiff_t i0, ptrdiff_t i1)
{
    const dn_q8_add_args a = *args;
    const int32_t za = (int32_t)a.a_zero_point, zb = (int32_t)a.b_zero_point, ma = (int32_t)a.ma,
                  mb = (int32_t)a.mb, sh = (int32_t)a.shift, zp = (int32_t)a.zero_point,
                  lo = (int32_t)a.qmin, hi = (int32_t)a.qmax;
    const int32_t rnd = (int32_t)1 << (sh - 1);
    const uint8_t *restrict x = a.a, *restrict z = a.b;
    uint8_t *y = a.y;
    ptrdiff_t i = i0;
#ifdef ADD16
    for (; i + 16 <= i1; i += 16)
        ADD16(&a, x + i, z + i, y + i);
#endif
    for (; i < i1; i++) {
        int32_t s = (((int32_t)x[i] - za) * ma + ((int32_t)z[i] - zb) * mb + rnd) >> sh;
        s += zp;
        y[i] = (uint8_t)(s < lo ? lo : s > hi ? hi : s);
    }
}

/* q8_ref.meanpool: integer sums per channel, one float multiply. */
void Q8(meanpool)(const dn_q8_meanpool_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const ptrdiff_t hw = a->hw, c = a->c;
    const int32_t bias = -(int32_t)(hw * a->zero_point);
    for (ptrdiff_t n = i0; n < i1; n++) {
        const uint8_t *restrict xn = a->x + n * hw * c;
        float *restrict yn = a->y + n * c;
        ptrdiff_t k = 0;
#ifdef MEANPOOL16
        for (; k + 16 <= c; k += 16)
            MEANPOOL16(xn + k, hw, c, bias, a->scale, yn + k);
#endif
        for (; k + QP <= c; k += QP) {
            int32_t acc[QP];
            for (ptrdiff_t j = 0; j < QP; j++)
                acc[j] = bias;
            for (ptrdiff_t p = 0; p < hw; p++)
                for (ptrdiff_t j = 0; j < QP; j++)
                    acc[j] += xn[p * c + k + j];
            for (ptrdiff_t j = 0; j < QP; j++)
                yn[k + j] = (float)acc[j] * a->scale;
        }
        for (; k < c; k++) {
            int32_t acc = bias;
            for (ptrdiff_t p = 0; p < hw; p++)
                acc += xn[p * c + k];
            yn[k] = (float)acc * a->scale;
        }
    }
}

#ifndef Q8_NO_FLOAT
/* q8_ref.quantize: rint(x * inv_scale) + zero point, clamped; the product
 * is clamped to +-512 first, so that huge values saturate (and the
 * rounding works on any float), which changes no result.  A NaN becomes
 * 0 (the comparisons put it on the low side). */
void Q8(quantize)(const dn_q8_quantize_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const float inv = a->inv_scale, zp = (float)a->zero_point;
    const float *restrict x = a->x;
    uint8_t *restrict y = a->y;
    ptrdiff_t i = i0;
    /* Eight at a time in the compiler's generic vectors: the clamps as
     * selects on the comparisons (a float ?: does not vectorise without
     * -ffinite-math-only), the same operations as the loop below. */
    const q8_vf lo = Q8_DUP(q8_vf, -512.0f), hi = Q8_DUP(q8_vf, 512.0f), magic = Q8_DUP(q8_vf, DN_Q8_MAGIC);
    const q8_vi bias = Q8_DUP(q8_vi, DN_Q8_MAGIC_BITS - (int32_t)a->zero_point), zero = Q8_DUP(q8_vi, 0),
                top = Q8_DUP(q8_vi, 255);
#ifdef QUANTIZE32
    {
        QUANTIZE_SETUP(a)
        for (; i + 32 <= i1; i += 32)
            QUANTIZE32(x + i, y + i);
    }
#endif
    for (; i + 8 <= i1; i += 8) {
        q8_vf f;
        memcpy(&f, x + i, sizeof f);
        f = f * inv;
        f = Q8_SELECT(f > lo, f, lo);
        f = Q8_SELECT(f < hi, f, hi);
        q8_vi q = (q8_vi)(f + magic) - bias;  /* rint(f) + zero point */
        q = q & (q > zero);
        q = (q & (q < top)) | (top & ~(q < top));
        const q8_vb b = __builtin_convertvector(q, q8_vb);
        memcpy(y + i, &b, sizeof b);
    }
    for (; i < i1; i++) {
        float f = DN_F32(x[i] * inv);
        f = f > -512.0f ? f : -512.0f;
        f = f < 512.0f ? f : 512.0f;
        f = Q8_RINT(f) + zp;  /* exact: small integers */
        f = f > 0.0f ? f : 0.0f;
        f = f < 255.0f ? f : 255.0f;
        y[i] = (uint8_t)(int32_t)f;
    }
}

/* q8_ref.dequantize: float32(q - zero point) * scale. */
void Q8(dequantize)(const dn_q8_dequantize_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const int32_t zp = (int32_t)a->zero_point;
    const float scale = a->scale;
    const uint8_t *restrict x = a->x;
    float *restrict y = a->y;
    for (ptrdiff_t i = i0; i < i1; i++)
        y[i] = (float)((int32_t)x[i] - zp) * scale;
}
#endif
