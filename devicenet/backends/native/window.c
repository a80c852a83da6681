/* Window kernels: depthwise convolution, and direct convolution for few
 * input channels.
 *
 * A depthwise layer does only K*K multiply-adds per output value, so numpy
 * spends its time streaming arrays through memory, one pass per tap (or one
 * einsum pass over all taps, still bounded at a few G multiply-adds per
 * second).  Here every output pixel's channels are summed over all taps in
 * registers, with bias and the clipping activation applied before the
 * single store.  Taps that fall on padding are skipped, which is the same
 * as reading zeros, so the input is never copied into a padded buffer.
 */
#include "native.h"

#define NP 4

/* The output columns [ox0, ox1) whose taps read no padding column. */
INLINE void interior_columns(const geometry *g, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t *ox0, Py_ssize_t *ox1)
{
    *ox0 = (g->pl + sw - 1) / sw;
    *ox1 = g->ow;
    while (*ox1 > *ox0 && (*ox1 - 1) * sw - g->pl + kw > g->w)
        (*ox1)--;
}

/* Store NP pixels' CB channels (two vectors each), clipped to [lo, hi],
 * at y, y + stride, ... */
INLINE void store_block(const vf8 *acc, float *restrict y, Py_ssize_t stride, float lo, float hi)
{
    float out[2 * NP * 8];
    memcpy(out, acc, sizeof out);
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < CB; q++) {
            float v = out[p * CB + q] < lo ? lo : out[p * CB + q];
            y[p * stride + q] = v > hi ? hi : v;
        }
}

/* Channels [k, k + CB) of NP = 4 output pixels side by side (columns ox,
 * ox + 1, ...), every tap in kernel rows [i0, i1) and columns [0, KW)
 * inside the image.  The eight accumulators (4 pixels x 16 channels) stay
 * in registers; each weight vector is loaded once for the four pixels. */
INLINE void interior_block(const geometry *g, const float *restrict xpix,
                           const float *restrict wt, const float *restrict bias,
                           float *restrict ypix, Py_ssize_t k,
                           Py_ssize_t i0, Py_ssize_t i1, float lo, float hi,
                           const Py_ssize_t KW, const Py_ssize_t SW)
{
    const Py_ssize_t c = g->c, s = SW * c;
    vf8 b0 = {0}, b1 = {0};
    if (bias) {
        b0 = V(bias + k);
        b1 = V(bias + k + 8);
    }
    vf8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
    for (Py_ssize_t i = i0; i < i1; i++) {
        const float *xr = xpix + i * g->w * c + k;
        const float *wr = wt + i * KW * c + k;
        for (Py_ssize_t j = 0; j < KW; j++) {
            const float *xp = xr + j * c;
            const vf8 w0 = V(wr + j * c), w1 = V(wr + j * c + 8);
            a00 += V(xp) * w0;
            a01 += V(xp + 8) * w1;
            a10 += V(xp + s) * w0;
            a11 += V(xp + s + 8) * w1;
            a20 += V(xp + 2 * s) * w0;
            a21 += V(xp + 2 * s + 8) * w1;
            a30 += V(xp + 3 * s) * w0;
            a31 += V(xp + 3 * s + 8) * w1;
        }
    }
    const vf8 acc[2 * NP] = {a00, a01, a10, a11, a20, a21, a30, a31};
    store_block(acc, ypix + k, c, lo, hi);
}

/* Channels [k0, k1) of one output pixel, taps in [i0, i1) x [j0, j1). */
INLINE void pixel(const geometry *g, const float *restrict xpix,
                  const float *restrict wt, const float *restrict bias,
                  float *restrict ypix, Py_ssize_t k0, Py_ssize_t k1,
                  Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1,
                  float lo, float hi)
{
    const Py_ssize_t c = g->c, kw = g->kw;
    Py_ssize_t k = k0;
    for (; k + CB <= k1; k += CB) {
        vf8 a0 = {0}, a1 = {0};
        if (bias) {
            a0 = V(bias + k);
            a1 = V(bias + k + 8);
        }
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * g->w + j) * c + k;
                const float *wp = wt + (i * kw + j) * c + k;
                a0 += V(xp) * V(wp);
                a1 += V(xp + 8) * V(wp + 8);
            }
        float acc[CB];
        memcpy(acc, &a0, 32);
        memcpy(acc + 8, &a1, 32);
        for (int q = 0; q < CB; q++) {
            float v = acc[q] < lo ? lo : acc[q];
            ypix[k + q] = v > hi ? hi : v;
        }
    }
    for (; k < k1; k++) {
        float acc = bias ? bias[k] : 0.0f;
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++)
                acc += xpix[(i * g->w + j) * c + k] * wt[(i * kw + j) * c + k];
        float v = acc < lo ? lo : acc;
        ypix[k] = v > hi ? hi : v;
    }
}

/* Output rows [r0, r1) of y (oh, ow, c) from x (rows, w, c), weights
 * (kh, kw, c), bias (c) or NULL; every value clipped to [lo, hi].  Taps that
 * fall on padding are skipped, which is the same as reading zeros.  KW and
 * SW are g->kw and g->sw, as constants where the caller can. */
INLINE void rows(const geometry *g, const float *restrict x, const float *restrict wt,
                 const float *restrict bias, float *restrict y,
                 Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k0, Py_ssize_t k1, float lo, float hi,
                 const Py_ssize_t KW, const Py_ssize_t SW)
{
    const Py_ssize_t c = g->c;
    Py_ssize_t ox0, ox1;
    interior_columns(g, KW, SW, &ox0, &ox1);
    for (Py_ssize_t oy = r0; oy < r1; oy++) {
        const Py_ssize_t iy = oy * g->sh - g->pt;
        const Py_ssize_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = x + (iy - g->row0) * g->w * c;
        float *yrow = y + oy * g->ow * c;
        for (Py_ssize_t ox = 0; ox < g->ow; ox++) {
            const Py_ssize_t ix = ox * SW - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && k1 - k0 >= CB) {
                Py_ssize_t k = k0;
                for (; k + CB <= k1; k += CB)
                    interior_block(g, xrow + ix * c, wt, bias, yrow + ox * c, k, i0, i1, lo, hi, KW, SW);
                for (Py_ssize_t p = 0; p < NP && k < k1; p++)
                    pixel(g, xrow + (ix + p * SW) * c, wt, bias, yrow + (ox + p) * c, k, k1,
                          i0, i1, 0, KW, lo, hi);
                ox += NP - 1;
                continue;
            }
            pixel(g, xrow + ix * c, wt, bias, yrow + ox * c, k0, k1,
                  i0, i1, max_z(0, -ix), min_z(KW, g->w - ix), lo, hi);
        }
    }
}

/* Output rows [r0, r1), channels [k0, k1).  The common kernel sizes and
 * strides get their own unrolled loops. */
MULTIVERSION
void dn_depthwise_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                       const float *restrict bias, float *restrict y,
                       Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k0, Py_ssize_t k1, float lo, float hi)
{
    if (g->kw == 3 && g->sw == 1)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 3, 1);
    else if (g->kw == 3 && g->sw == 2)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 3, 2);
    else if (g->kw == 5 && g->sw == 1)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 5, 1);
    else if (g->kw == 5 && g->sw == 2)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 5, 2);
    else
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, g->kw, g->sw);
}


/* ---- direct convolution, for a few input channels ------------------------
 *
 * A network's first layer (3 input channels) makes a poor GEMM: im2col
 * copies every pixel KH*KW times into rows of only KH*KW*3 values.  Here
 * each output pixel's channels accumulate in registers over all taps, each
 * input value broadcast against a vector of output channels; weights are
 * (KH, KW, Cin, Cout).
 */

/* Output channels [k, k + CB) of NP pixels side by side, all taps inside. */
INLINE void direct_block(const geometry *g, const float *restrict xpix, const float *restrict wt,
                         const float *restrict bias, float *restrict ypix, Py_ssize_t k,
                         Py_ssize_t i0, Py_ssize_t i1, float lo, float hi,
                         const Py_ssize_t KW, const Py_ssize_t C)
{
    const Py_ssize_t c = C, co = g->cout, s = g->sw * c;
    vf8 b0 = {0}, b1 = {0};
    if (bias) {
        b0 = V(bias + k);
        b1 = V(bias + k + 8);
    }
    vf8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
    for (Py_ssize_t i = i0; i < i1; i++)
        for (Py_ssize_t j = 0; j < KW; j++) {
            const float *xp = xpix + (i * g->w + j) * c;
            const float *wp = wt + (i * KW + j) * c * co + k;
            for (Py_ssize_t ci = 0; ci < c; ci++, wp += co) {
                const vf8 w0 = V(wp), w1 = V(wp + 8);
                const float x0 = xp[ci], x1 = xp[s + ci], x2 = xp[2 * s + ci], x3 = xp[3 * s + ci];
                a00 += x0 * w0;
                a01 += x0 * w1;
                a10 += x1 * w0;
                a11 += x1 * w1;
                a20 += x2 * w0;
                a21 += x2 * w1;
                a30 += x3 * w0;
                a31 += x3 * w1;
            }
        }
    const vf8 acc[2 * NP] = {a00, a01, a10, a11, a20, a21, a30, a31};
    store_block(acc, ypix + k, co, lo, hi);
}

/* Output channels [k0, cout) of one pixel, taps in [i0, i1) x [j0, j1). */
INLINE void direct_pixel(const geometry *g, const float *restrict xpix, const float *restrict wt,
                         const float *restrict bias, float *restrict ypix, Py_ssize_t k0,
                         Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1, float lo, float hi)
{
    const Py_ssize_t c = g->c, co = g->cout;
    for (Py_ssize_t k = k0; k < co; k++) {
        float acc = bias ? bias[k] : 0.0f;
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * g->w + j) * c;
                const float *wp = wt + (i * g->kw + j) * c * co + k;
                for (Py_ssize_t ci = 0; ci < c; ci++)
                    acc += xp[ci] * wp[ci * co];
            }
        float v = acc < lo ? lo : acc;
        ypix[k] = v > hi ? hi : v;
    }
}

/* Output rows [r0, r1) of a direct convolution; KW and C are g->kw and
 * g->c, as constants where the caller can. */
INLINE void direct_impl(const geometry *g, const float *restrict x, const float *restrict wt,
                        const float *restrict bias, float *restrict y,
                        Py_ssize_t r0, Py_ssize_t r1, float lo, float hi,
                        const Py_ssize_t KW, const Py_ssize_t C)
{
    const Py_ssize_t co = g->cout, full = co / CB * CB;
    Py_ssize_t ox0, ox1;
    interior_columns(g, KW, g->sw, &ox0, &ox1);
    for (Py_ssize_t oy = r0; oy < r1; oy++) {
        const Py_ssize_t iy = oy * g->sh - g->pt;
        const Py_ssize_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = x + (iy - g->row0) * g->w * C;
        float *yrow = y + oy * g->ow * co;
        for (Py_ssize_t ox = 0; ox < g->ow; ox++) {
            const Py_ssize_t ix = ox * g->sw - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && full) {
                for (Py_ssize_t k = 0; k < full; k += CB)
                    direct_block(g, xrow + ix * C, wt, bias, yrow + ox * co, k, i0, i1, lo, hi, KW, C);
                for (Py_ssize_t p = 0; p < NP && full < co; p++)
                    direct_pixel(g, xrow + (ix + p * g->sw) * C, wt, bias, yrow + (ox + p) * co, full,
                                 i0, i1, 0, KW, lo, hi);
                ox += NP - 1;
                continue;
            }
            direct_pixel(g, xrow + ix * C, wt, bias, yrow + ox * co, 0,
                         i0, i1, max_z(0, -ix), min_z(KW, g->w - ix), lo, hi);
        }
    }
}

/* Output rows [r0, r1) of a direct convolution.  An RGB image through a
 * 3x3 kernel gets its own unrolled loops. */
MULTIVERSION
void dn_direct_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                    const float *restrict bias, float *restrict y,
                    Py_ssize_t r0, Py_ssize_t r1, float lo, float hi)
{
    if (g->kw == 3 && g->c == 3)
        direct_impl(g, x, wt, bias, y, r0, r1, lo, hi, 3, 3);
    else
        direct_impl(g, x, wt, bias, y, r0, r1, lo, hi, g->kw, g->c);
}
