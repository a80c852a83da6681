/* Packing of a GEMM's weights (gemm.h): once, when a model is loaded. */
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
    dn_f32_gemm_pack_strided(w, n, 1, bias, k, n, nr, packed);
}

void dn_f32_gemm_pack_strided(const float *w, size_t k_stride, size_t n_stride, const float *bias,
                              size_t k, size_t n, int nr, float *packed)
{
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    for (size_t p = 0; p < panels; p++) {
        size_t c0 = p * (size_t)nr, cols = n - c0 < (size_t)nr ? n - c0 : (size_t)nr;
        float *out = packed + p * (size_t)nr * (k + 1);
        memset(out, 0, (size_t)nr * (k + 1) * sizeof(float));
        if (bias)
            memcpy(out, bias + c0, cols * sizeof(float));
        if (n_stride == 1)  /* W (k, n): rows of the panel are runs of W's rows */
            for (size_t r = 0; r < k; r++)
                memcpy(out + (r + 1) * (size_t)nr, w + r * k_stride + c0, cols * sizeof(float));
        else  /* column by column, each read in order (W^T (n, k), as layers store it) */
            for (size_t j = 0; j < cols; j++)
                for (size_t r = 0; r < k; r++)
                    out[(r + 1) * (size_t)nr + j] = w[r * k_stride + (c0 + j) * n_stride];
    }
}

/* The header: a mark, the registry index, k and n (as 32-bit halves, so
 * that the floats it is kept in are never read as floats). */
enum { MARK = 0x474e4450 };  /* "PDNG" */

static void header(uint32_t h[6], int registry_index, size_t k, size_t n)
{
    const uint64_t k64 = k, n64 = n;
    h[0] = MARK;
    h[1] = (uint32_t)registry_index;
    h[2] = (uint32_t)k64, h[3] = (uint32_t)(k64 >> 32);
    h[4] = (uint32_t)n64, h[5] = (uint32_t)(n64 >> 32);
}

void dn_f32_gemm_pack_tagged(const float *w, size_t k_stride, size_t n_stride, const float *bias,
                             size_t k, size_t n, int registry_index, const dn_f32_gemm_variant *v, float *out)
{
    uint32_t h[6];
    header(h, registry_index, k, n);
    memset(out, 0, DN_GEMM_HEADER * sizeof(float));
    memcpy(out, h, sizeof h);
    dn_f32_gemm_pack_strided(w, k_stride, n_stride, bias, k, n, v->nr, out + DN_GEMM_HEADER);
}

int dn_f32_gemm_tag(const float *packed, size_t floats, size_t k, size_t n)
{
    uint32_t h[6], want[6];
    if (floats < DN_GEMM_HEADER)
        return -1;
    memcpy(h, packed, sizeof h);
    header(want, (int)h[1], k, n);
    return memcmp(h, want, sizeof h) ? -1 : (int)h[1];
}
