/* Packing of a GEMM's weights (gemm.h): once, when a model is loaded. */
#include <string.h>

#include "gemm.h"

size_t dn_f32_gemm_packed_floats(size_t k, size_t n, int nr)
{
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    return panels * (size_t)nr * (k + 1);
}

/* Panel p holds columns [p nr, p nr + nr): their bias, then row by row
 * their weights, so that a micro-kernel reads it front to back; columns
 * past n are zeros, which lets every kernel compute whole panels. */
void dn_f32_gemm_pack(const float *w, const float *bias, size_t k, size_t n, int nr, float *packed)
{
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    for (size_t p = 0; p < panels; p++) {
        size_t c0 = p * (size_t)nr, cols = n - c0 < (size_t)nr ? n - c0 : (size_t)nr;
        float *out = packed + p * (size_t)nr * (k + 1);
        memset(out, 0, (size_t)nr * (k + 1) * sizeof(float));
        if (bias)
            memcpy(out, bias + c0, cols * sizeof(float));
        for (size_t r = 0; r < k; r++)
            memcpy(out + (r + 1) * (size_t)nr, w + r * n + c0, cols * sizeof(float));
    }
}
