/* Rows [r0, r1), columns [c0, c1) of y (row length ld) plus bias (or
 * none), clipped to [lo, hi], then through curve (DN_CURVE_*), in place:
 * the output stage of a GEMM, and the curve of any float layer, one pass
 * while y is still in cache.  Over the 8-float vectors of the including
 * variant's vec8_<isa>.h; the includer defines BIAS_ACT. */
#include "f32_curve.h"

void BIAS_ACT(float *y, ptrdiff_t ld, const float *bias, ptrdiff_t r0, ptrdiff_t r1,
              ptrdiff_t c0, ptrdiff_t c1, float lo, float hi, int curve)
{
    const int clip = bias || lo > -HUGE_VALF || hi < HUGE_VALF;
    if (!clip && curve >= 0 && ld == c1 - c0) {  /* whole rows: one stretch */
        curve_span(y + r0 * ld + c0, (r1 - r0) * ld, curve);
        return;
    }
    for (ptrdiff_t r = r0; r < r1; r++) {
        float *row = y + r * ld;
        ptrdiff_t k = c0;
        if (bias) {
            for (; k + 8 <= c1; k += 8)
                v8_store_clamped(row + k, v8_add(v8_load(row + k), v8_load(bias + k)), lo, hi);
            for (; k < c1; k++)
                row[k] = clamp(row[k] + bias[k], lo, hi);
        } else if (clip) {
            for (; k + 8 <= c1; k += 8)
                v8_store_clamped(row + k, v8_load(row + k), lo, hi);
            for (; k < c1; k++)
                row[k] = clamp(row[k], lo, hi);
        }
        if (curve >= 0)
            curve_span(row + c0, c1 - c0, curve);
    }
}
