/* Eight-bit depthwise convolution (q8.h), written once: the walk over
 * output pixels and the portable sums here, the vector sums of 16
 * channels in the including variant (q8_dwconv_<isa>.c, which defines
 * DWCONV and, for a vector variant, BLOCK16 and optionally BLOCK32: see
 * block_scalar).
 *
 * The weights come in pairs of taps (the op's layout): int16 (pairs, c, 2),
 * taps t = i * kw + j paired (2p, 2p + 1), an odd last tap paired with a
 * zero weight, so that a vector variant multiplies and adds two taps at a
 * time (vpmaddwd) or takes them apart in one load (vld2).  Each output
 * pixel sums channel block by channel block in registers from the folded
 * bias and requantises, reading its taps through one pointer each (a tap
 * on the padding reads a row of the input's zero point, q8_ref.pad).  The
 * pixels whose taps all fall inside the input's width (the interior of a
 * row) set those pointers up once per row and move them a stride a pixel;
 * only the edge pixels check each tap. */

#define DW_CHUNK 4096           /* channels per pass: the padding row's length */
#define DW_MAX_TAPS 64          /* kh * kw (the op checks) */

/* Channels [k, k + cb) of one pixel, any cb: taps' rows x[t] (offset so
 * that x[t][j] is channel k + j), weights w at channel k of pair 0, c
 * channels apart per pair. */
INLINE void block_scalar(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                         ptrdiff_t cb, uint8_t *y)
{
    const ptrdiff_t c = a->g.c;
    for (ptrdiff_t j = 0; j < cb; j++) {
        int32_t acc = a->bias[k + j];
        const int16_t *w = a->w + 2 * (k + j);
        for (ptrdiff_t p = 0; p < pairs; p++, w += 2 * c)
            acc += (int32_t)x[2 * p][j] * w[0] + (int32_t)x[2 * p + 1][j] * w[1];
        y[j] = dn_q8_requantize(acc, a->rscale[k + j], (int32_t)a->zero_point, (int32_t)a->qmin,
                                (int32_t)a->qmax);
    }
}

/* Channels [kc, kend) of one pixel from its taps' rows x[t] (at channel
 * kc, x[taps] the odd last tap's partner). */
INLINE void pixel(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t taps,
                  ptrdiff_t kc, ptrdiff_t kend, uint8_t *y)
{
    ptrdiff_t k = kc;
#ifdef BLOCK32
    for (; k + 32 <= kend; k += 32)
        BLOCK32(a, x, pairs, k, k - kc, y + k);
#endif
#ifdef BLOCK16
    for (; k + 16 <= kend; k += 16)
        BLOCK16(a, x, pairs, k, k - kc, y + k);
#endif
    if (k < kend) {
        const uint8_t *xt[DW_MAX_TAPS + 1];
        for (ptrdiff_t t = 0; t <= taps; t++)
            xt[t] = x[t] + (k - kc);
        block_scalar(a, xt, pairs, k, kend - k, y + k);
    }
}

/* Channels [kc, kend) of output pixel ox, its taps' rows iy0.. checked one
 * by one (a tap off the image reads pad); x: room for the taps' pointers. */
INLINE void edge_pixel(const dn_q8_dwconv_args *a, const uint8_t **x, const uint8_t *pad, ptrdiff_t iy0,
                       ptrdiff_t ox, ptrdiff_t pairs, ptrdiff_t taps, ptrdiff_t kc, ptrdiff_t kend, uint8_t *y)
{
    const dn_geometry *g = &a->g;
    const ptrdiff_t ix0 = ox * g->sw - g->pl;
    for (ptrdiff_t i = 0, t = 0; i < g->kh; i++)
        for (ptrdiff_t j = 0; j < g->kw; j++, t++) {
            const ptrdiff_t iy = iy0 + i, ix = ix0 + j;
            x[t] = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w
                ? a->x + ((iy - g->row0) * g->w + ix) * g->c + kc : pad;
        }
    x[taps] = x[0];  /* an odd last tap's partner: its weight is zero */
    pixel(a, x, pairs, taps, kc, kend, y);
}

void DWCONV(const dn_q8_dwconv_args *args, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t k0, ptrdiff_t k1)
{
    const dn_q8_dwconv_args a = *args;  /* a copy the outputs cannot alias */
    const dn_geometry *g = &a.g;
    const ptrdiff_t c = g->c, taps = g->kh * g->kw, pairs = (taps + 1) / 2;
    uint8_t pad[DW_CHUNK];
    const uint8_t *x[DW_MAX_TAPS + 1];
    memset(pad, (int)a.x_zero_point, sizeof pad);
    /* the output columns [in0, in1) whose taps all fall inside the input's
     * width (in0 <= in1) */
    const ptrdiff_t in0 = min_z((g->pl + g->sw - 1) / g->sw, g->ow);
    ptrdiff_t in1 = g->ow;
    while (in1 > in0 && (in1 - 1) * g->sw - g->pl + g->kw > g->w)
        in1--;
    for (ptrdiff_t oy = r0; oy < r1; oy++) {
        const ptrdiff_t iy0 = oy * g->sh - g->pt;
        uint8_t *yrow = a.y + oy * g->ow * c;
        for (ptrdiff_t kc = k0; kc < k1; kc += DW_CHUNK) {
            const ptrdiff_t kend = min_z(k1, kc + DW_CHUNK);
            /* the pixels at the left and right edges */
            for (ptrdiff_t ox = 0; ox < in0; ox++)
                edge_pixel(&a, x, pad, iy0, ox, pairs, taps, kc, kend, yrow + ox * c);
            for (ptrdiff_t ox = in1; ox < g->ow; ox++)
                edge_pixel(&a, x, pad, iy0, ox, pairs, taps, kc, kend, yrow + ox * c);
            if (in1 <= in0)
                continue;
            /* the interior: a tap on a padding row reads the pad (the same
             * bytes for every pixel) and stays put; the others move sw
             * pixels a step */
            ptrdiff_t step[DW_MAX_TAPS + 1];
            const ptrdiff_t ix0 = in0 * g->sw - g->pl;
            for (ptrdiff_t i = 0, t = 0; i < g->kh; i++)
                for (ptrdiff_t j = 0; j < g->kw; j++, t++) {
                    const ptrdiff_t iy = iy0 + i;
                    const int inside = iy >= 0 && iy < g->h;
                    x[t] = inside ? a.x + ((iy - g->row0) * g->w + ix0 + j) * c + kc : pad;
                    step[t] = inside ? g->sw * c : 0;
                }
            x[taps] = x[0], step[taps] = step[0];
            for (ptrdiff_t ox = in0; ox < in1; ox++) {
                pixel(&a, x, pairs, taps, kc, kend, yrow + ox * c);
                for (ptrdiff_t t = 0; t <= taps; t++)
                    x[t] += step[t];
            }
        }
    }
}
