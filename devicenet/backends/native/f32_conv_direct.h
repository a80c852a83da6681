/* Direct convolution for a few input channels, written once over the
 * 8-float vectors of the including variant's vec8_<isa>.h.  The includer
 * defines CONV_DIRECT, the variant's name.
 *
 * A network's first layer (3 input channels) makes a poor GEMM: im2col
 * copies every pixel KH*KW times into rows of only KH*KW*3 values.  Here
 * each output pixel's channels accumulate in registers over all taps, each
 * input value broadcast against a vector of output channels; weights are
 * (KH, KW, Cin, Cout). */
#include "window.h"

#define DC_DECLARE(p) v8 a##p##0 = b0, a##p##1 = b1;
#define DC_ACC(p)                                              \
    {                                                          \
        const float xv = xp[p * s + ci];                       \
        a##p##0 = v8_fmas(a##p##0, w0, xv);                    \
        a##p##1 = v8_fmas(a##p##1, w1, xv);                    \
    }
#define DC_STORE(p)                                            \
    v8_store_clamped(y + p * co, a##p##0, lo, hi);             \
    v8_store_clamped(y + p * co + 8, a##p##1, lo, hi);

/* Output channels [k, k + CB) of NP pixels side by side, all taps inside. */
INLINE void direct_block(const dn_window_args *a, const float *restrict xpix, float *restrict ypix,
                         ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1, const ptrdiff_t KW, const ptrdiff_t C)
{
    const ptrdiff_t c = C, co = a->g.cout, s = a->g.sw * c, w = a->g.w;
    const float lo = a->lo, hi = a->hi;
    v8 b0, b1;
    load_bias(a->bias, k, &b0, &b1);
    EACH_P(DC_DECLARE)
    for (ptrdiff_t i = i0; i < i1; i++)
        for (ptrdiff_t j = 0; j < KW; j++) {
            const float *xp = xpix + (i * w + j) * c;
            const float *wp = a->w + (i * KW + j) * c * co + k;
            for (ptrdiff_t ci = 0; ci < c; ci++, wp += co) {
                const v8 w0 = v8_load(wp), w1 = v8_load(wp + 8);
                EACH_P(DC_ACC)
            }
        }
    float *y = ypix + k;
    EACH_P(DC_STORE)
}

/* Output channels [k0, cout) of one pixel, taps in [i0, i1) x [j0, j1). */
INLINE void direct_pixel(const dn_window_args *a, const float *restrict xpix, float *restrict ypix,
                         ptrdiff_t k0, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1)
{
    const ptrdiff_t c = a->g.c, co = a->g.cout, kw = a->g.kw, w = a->g.w;
    for (ptrdiff_t k = k0; k < co; k++) {
        float acc = a->bias ? a->bias[k] : 0.0f;
        for (ptrdiff_t i = i0; i < i1; i++)
            for (ptrdiff_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * w + j) * c;
                const float *wp = a->w + (i * kw + j) * c * co + k;
                for (ptrdiff_t ci = 0; ci < c; ci++)
                    acc += xp[ci] * wp[ci * co];
            }
        ypix[k] = clamp(acc, a->lo, a->hi);
    }
}

/* Output rows [r0, r1); KW and C are g->kw and g->c, as constants where
 * the caller can. */
INLINE void direct_rows(const dn_window_args *a, ptrdiff_t r0, ptrdiff_t r1, const ptrdiff_t KW, const ptrdiff_t C)
{
    const dn_geometry *g = &a->g;
    const ptrdiff_t co = g->cout, full = co / CB * CB;
    ptrdiff_t ox0, ox1;
    interior_columns(g, KW, g->sw, &ox0, &ox1);
    for (ptrdiff_t oy = r0; oy < r1; oy++) {
        const ptrdiff_t iy = oy * g->sh - g->pt;
        const ptrdiff_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = a->x + (iy - g->row0) * g->w * C;
        float *yrow = a->y + oy * g->ow * co;
        for (ptrdiff_t ox = 0; ox < g->ow; ox++) {
            const ptrdiff_t ix = ox * g->sw - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && full) {
                for (ptrdiff_t k = 0; k < full; k += CB)
                    direct_block(a, xrow + ix * C, yrow + ox * co, k, i0, i1, KW, C);
                for (ptrdiff_t p = 0; p < NP && full < co; p++)
                    direct_pixel(a, xrow + (ix + p * g->sw) * C, yrow + (ox + p) * co, full, i0, i1, 0, KW);
                ox += NP - 1;
                continue;
            }
            direct_pixel(a, xrow + ix * C, yrow + ox * co, 0, i0, i1, max_z(0, -ix), min_z(KW, g->w - ix));
        }
        DN_CURVE(a, yrow, 0, 0, 1, 0, g->ow * co);  /* while the row is in cache */
    }
}

/* An RGB image through a 3x3 kernel gets its own unrolled loops. */
void CONV_DIRECT(const dn_window_args *args, ptrdiff_t r0, ptrdiff_t r1)
{
    /* a copy the outputs cannot alias: its fields stay in registers */
    const dn_window_args a = *args;
    if (a.g.kw == 3 && a.g.c == 3)
        direct_rows(&a, r0, r1, 3, 3);
    else
        direct_rows(&a, r0, r1, a.g.kw, a.g.c);
}
