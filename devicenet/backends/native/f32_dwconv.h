/* Depthwise convolution, written once over the 8-float vectors of the
 * including variant's vec8_<isa>.h.  The includer defines DWCONV, the
 * variant's name.
 *
 * A depthwise layer does only K*K multiply-adds per output value, so numpy
 * spends its time streaming arrays through memory, one pass per tap.  Here
 * every output pixel's channels are summed over all taps in registers. */
#include "window.h"

#define DW_DECLARE(p) v8 a##p##0 = b0, a##p##1 = b1;
#define DW_ACC(p)                                              \
    a##p##0 = v8_fma(a##p##0, v8_load(xp + p * s), w0);        \
    a##p##1 = v8_fma(a##p##1, v8_load(xp + p * s + 8), w1);
#define DW_STORE(p)                                            \
    v8_store_clamped(y + p * c, a##p##0, lo, hi);              \
    v8_store_clamped(y + p * c + 8, a##p##1, lo, hi);

/* Channels [k, k + CB) of NP output pixels side by side, every tap in
 * kernel rows [i0, i1) and columns [0, KW) inside the image; each weight
 * vector is loaded once for the NP pixels. */
INLINE void interior_block(const dn_window_args *a, const float *restrict xpix, float *restrict ypix,
                           ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1, const ptrdiff_t KW, const ptrdiff_t SW)
{
    const ptrdiff_t c = a->g.c, s = SW * c, w = a->g.w;
    const float *restrict wt = a->w;
    const float lo = a->lo, hi = a->hi;
    v8 b0, b1;
    load_bias(a->bias, k, &b0, &b1);
    EACH_P(DW_DECLARE)
    for (ptrdiff_t i = i0; i < i1; i++) {
        const float *xr = xpix + i * w * c + k;
        const float *wr = wt + i * KW * c + k;
        for (ptrdiff_t j = 0; j < KW; j++) {
            const float *xp = xr + j * c;
            const v8 w0 = v8_load(wr + j * c), w1 = v8_load(wr + j * c + 8);
            EACH_P(DW_ACC)
        }
    }
    float *y = ypix + k;
    EACH_P(DW_STORE)
}

/* Channels [k0, k1) of one output pixel, taps in [i0, i1) x [j0, j1). */
INLINE void pixel(const dn_window_args *a, const float *restrict xpix, float *restrict ypix,
                  ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1)
{
    const ptrdiff_t c = a->g.c, kw = a->g.kw, w = a->g.w;
    const float *restrict wt = a->w, *restrict bias = a->bias;
    ptrdiff_t k = k0;
    for (; k + CB <= k1; k += CB) {
        v8 a0, a1;
        load_bias(bias, k, &a0, &a1);
        for (ptrdiff_t i = i0; i < i1; i++)
            for (ptrdiff_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * w + j) * c + k;
                const float *wp = wt + (i * kw + j) * c + k;
                a0 = v8_fma(a0, v8_load(xp), v8_load(wp));
                a1 = v8_fma(a1, v8_load(xp + 8), v8_load(wp + 8));
            }
        v8_store_clamped(ypix + k, a0, a->lo, a->hi);
        v8_store_clamped(ypix + k + 8, a1, a->lo, a->hi);
    }
    for (; k < k1; k++) {
        float acc = bias ? bias[k] : 0.0f;
        for (ptrdiff_t i = i0; i < i1; i++)
            for (ptrdiff_t j = j0; j < j1; j++)
                acc += xpix[(i * w + j) * c + k] * wt[(i * kw + j) * c + k];
        ypix[k] = clamp(acc, a->lo, a->hi);
    }
}

/* Output rows [r0, r1), channels [k0, k1).  KW and SW are g->kw and g->sw,
 * as constants where the caller can. */
INLINE void rows(const dn_window_args *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t k0, ptrdiff_t k1,
                 const ptrdiff_t KW, const ptrdiff_t SW)
{
    const dn_geometry *g = &a->g;
    const ptrdiff_t c = g->c;
    ptrdiff_t ox0, ox1;
    interior_columns(g, KW, SW, &ox0, &ox1);
    for (ptrdiff_t oy = r0; oy < r1; oy++) {
        const ptrdiff_t iy = oy * g->sh - g->pt;
        const ptrdiff_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = a->x + (iy - g->row0) * g->w * c;
        float *yrow = a->y + oy * g->ow * c;
        for (ptrdiff_t ox = 0; ox < g->ow; ox++) {
            const ptrdiff_t ix = ox * SW - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && k1 - k0 >= CB) {
                ptrdiff_t k = k0;
                for (; k + CB <= k1; k += CB)
                    interior_block(a, xrow + ix * c, yrow + ox * c, k, i0, i1, KW, SW);
                for (ptrdiff_t p = 0; p < NP && k < k1; p++)
                    pixel(a, xrow + (ix + p * SW) * c, yrow + (ox + p) * c, k, k1, i0, i1, 0, KW);
                ox += NP - 1;
                continue;
            }
            pixel(a, xrow + ix * c, yrow + ox * c, k0, k1, i0, i1, max_z(0, -ix), min_z(KW, g->w - ix));
        }
        DN_CURVE(a, yrow, c, 0, g->ow, k0, k1);  /* while the row is in cache */
    }
}

/* The common kernel sizes and strides get their own unrolled loops. */
void DWCONV(const dn_window_args *args, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t k0, ptrdiff_t k1)
{
    /* a copy the outputs cannot alias: its fields stay in registers */
    const dn_window_args a = *args;
    const ptrdiff_t kw = a.g.kw, sw = a.g.sw;
    if (kw == 3 && sw == 1)
        rows(&a, r0, r1, k0, k1, 3, 1);
    else if (kw == 3 && sw == 2)
        rows(&a, r0, r1, k0, k1, 3, 2);
    else if (kw == 5 && sw == 1)
        rows(&a, r0, r1, k0, k1, 5, 1);
    else if (kw == 5 && sw == 2)
        rows(&a, r0, r1, k0, k1, 5, 2);
    else
        rows(&a, r0, r1, k0, k1, kw, sw);
}
