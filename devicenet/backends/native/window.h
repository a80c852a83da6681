/* What the window ops' templates (f32_dwconv.h, f32_conv_direct.h) share.
 *
 * Both sum every output pixel over all taps in registers, a block of NP
 * pixels side by side by CB = 16 channels (two 8-float vectors each), with
 * bias and the clipping activation applied before the single store.  Taps
 * that fall on padding are skipped, which is the same as reading zeros, so
 * the input is never copied into a padded buffer.  NP is the vec8 header's
 * choice: four where the target has room for 8 accumulators of 8 floats
 * (AVX, AArch64), two where it has 16 vector registers of 4 (SSE2, ARMv7
 * NEON), so that the accumulators and the weights stay in registers. */
#ifndef DEVICENET_WINDOW_H
#define DEVICENET_WINDOW_H

#define CB 16
#define NP V8_BLOCK_PIXELS

/* X(p) for every pixel p of a register block */
#if NP == 4
#define EACH_P(X) X(0) X(1) X(2) X(3)
#elif NP == 2
#define EACH_P(X) X(0) X(1)
#else
#error "NP must be 2 or 4"
#endif

/* The bias of channels [k, k + CB), or zeros. */
INLINE void load_bias(const float *bias, ptrdiff_t k, v8 *b0, v8 *b1)
{
    *b0 = bias ? v8_load(bias + k) : v8_zero();
    *b1 = bias ? v8_load(bias + k + 8) : v8_zero();
}

/* The output columns [ox0, ox1) whose taps read no padding column. */
INLINE void interior_columns(const dn_geometry *g, ptrdiff_t kw, ptrdiff_t sw, ptrdiff_t *ox0, ptrdiff_t *ox1)
{
    *ox0 = (g->pl + sw - 1) / sw;
    *ox1 = g->ow;
    while (*ox1 > *ox0 && (*ox1 - 1) * sw - g->pl + kw > g->w)
        (*ox1)--;
}

#endif
