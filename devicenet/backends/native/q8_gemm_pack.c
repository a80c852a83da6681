/* Packing of an eight-bit GEMM's weights (q8.h): once, when a model is
 * loaded. */
#include "q8.h"

#include <stdlib.h>

static size_t round_up(size_t x, size_t to)
{
    return (x + to - 1) / to * to;
}

size_t dn_q8_gemm_panel_bytes(const dn_q8_gemm_variant *v, size_t k)
{
    return (size_t)v->nr * (DN_Q8_HEAD * 4 + round_up(k, (size_t)v->kr) * (v->wide ? 2 : 1));
}

size_t dn_q8_gemm_packed_bytes(const dn_q8_gemm_variant *v, size_t k, size_t n)
{
    return DN_Q8_HEADER + (n + (size_t)v->nr - 1) / (size_t)v->nr * dn_q8_gemm_panel_bytes(v, k);
}

int dn_q8_gemm_pairs_safe(const int8_t *wt, size_t k, size_t n)
{
    for (size_t c = 0; c < n; c++)
        for (size_t p = 0; p + 1 < k; p += 2) {
            const int s = abs(wt[c * k + p]) + abs(wt[c * k + p + 1]);
            if (s > 128)
                return 0;
        }
    return 1;
}

/* The header: a mark, the registry index, k and n (32-bit halves), and
 * whether the outputs are float32. */
enum { MARK = 0x38514e44 };  /* "DNQ8" */

static void header(uint32_t h[7], int registry_index, size_t k, size_t n, int to_float)
{
    const uint64_t k64 = k, n64 = n;
    h[0] = MARK;
    h[1] = (uint32_t)registry_index;
    h[2] = (uint32_t)k64, h[3] = (uint32_t)(k64 >> 32);
    h[4] = (uint32_t)n64, h[5] = (uint32_t)(n64 >> 32);
    h[6] = (uint32_t)!!to_float;
}

void dn_q8_gemm_pack(const dn_q8_gemm_variant *v, int registry_index, const int8_t *wt, const int32_t *bias,
                     const float *factors, int to_float, size_t k, size_t n, uint8_t *out)
{
    const size_t nr = (size_t)v->nr, kg = (size_t)v->kg, panel = dn_q8_gemm_panel_bytes(v, k);
    uint32_t h[7];
    header(h, registry_index, k, n, to_float);
    memset(out, 0, DN_Q8_HEADER);
    memcpy(out, h, sizeof h);
    out += DN_Q8_HEADER;
    for (size_t c0 = 0; c0 < n; c0 += nr) {
        const size_t cols = n - c0 < nr ? n - c0 : nr;
        int32_t *head = (int32_t *)(void *)out;  /* panels are multiples of 4 bytes */
        int8_t *w = (int8_t *)(out + DN_Q8_HEAD * 4 * nr);
        int16_t *w16 = (int16_t *)(void *)w;
        memset(out, 0, panel);
        for (size_t j = 0; j < cols; j++) {
            const int8_t *src = wt + (c0 + j) * k;
            int64_t wsum = 0;
            for (size_t p = 0; p < k; p++) {
                const size_t at = ((p / kg) * nr + j) * kg + p % kg;
                if (v->wide)
                    w16[at] = src[p];
                else
                    w[at] = src[p];
                wsum += src[p];
            }
            /* within 2**30 + 128 x 127 x k: the quantiser bounds the sums */
            head[j] = (int32_t)((bias ? bias[c0 + j] : 0) + (int64_t)v->a_offset * wsum);
            memcpy(head + nr + j, factors + c0 + j, 4);
        }
        out += panel;
    }
}

int dn_q8_gemm_tag(const uint8_t *packed, size_t bytes, size_t k, size_t n, int to_float)
{
    uint32_t h[7], want[7];
    if (bytes < DN_Q8_HEADER)
        return -1;
    memcpy(h, packed, sizeof h);
    header(want, (int)h[1], k, n, to_float);
    return memcmp(h, want, sizeof h) ? -1 : (int)h[1];
}
