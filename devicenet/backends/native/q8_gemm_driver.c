/* The eight-bit GEMM's driver (q8.h) and the table of its micro-kernels:
 * the float32 GEMM's walk over blocks of C (gemm.h), in bytes. */
#include "q8.h"

#ifndef DN_GEMM_BLOCK_BYTES
#define DN_GEMM_BLOCK_BYTES (256u << 10)
#endif

typedef struct {
    const dn_q8_gemm_variant *v;
    size_t k, lda, ldc;
    const dn_q8_output *out;
} q8_ctx;

static void q8_tile(const dn_gemm_walk *w, const void *ctx, size_t mr_, size_t nr_,
                    const char *a, const char *panel, char *c)
{
    const q8_ctx *x = ctx;
    (void)w;
    x->v->ukernel(mr_, nr_, x->k, (const uint8_t *)a, x->lda, panel, c, x->ldc, x->out);
}

/* The walk of gemm.h for a wide variant (q8.h): each group of rows of A is
 * widened to uint16 once, k padded with zeros to the panel's depth, and
 * every panel of the block reads it from there. */
static void walk_wide(const dn_q8_gemm_variant *v, size_t k, const uint8_t *a, size_t lda, const uint8_t *packed,
                      char *c, size_t c_row, size_t elem, size_t r0, size_t r1, size_t c0, size_t c1,
                      const dn_q8_output *out)
{
    const size_t kp = (k + (size_t)v->kr - 1) / (size_t)v->kr * (size_t)v->kr;
    const size_t panel = dn_q8_gemm_panel_bytes(v, k), nr = (size_t)v->nr;
    /* on the stack: the rows of a tile (fewer, down to one, for a k so deep
     * that they would pass DN_Q8_WIDE_STACK bytes; q8_gemm_fits keeps one
     * row within it) */
    size_t mr = (size_t)v->mr;
    while (mr > 1 && mr * kp * 2 > DN_Q8_WIDE_STACK)
        mr--;
    uint16_t wide[mr * kp];
    const size_t per_block = DN_GEMM_BLOCK_BYTES / panel;
    const size_t block = (per_block ? per_block : 1) * nr;
    for (size_t cb = c0; cb < c1; cb += block) {
        const size_t ce = c1 - cb < block ? c1 : cb + block;
        for (size_t r = r0; r < r1; r += mr) {
            const size_t mr_ = r1 - r < mr ? r1 - r : mr;
            v->widen(a + r * lda, lda, mr_, k, kp, wide);
            for (size_t col = cb; col < ce; col += nr)
                v->ukernel(mr_, ce - col < nr ? ce - col : nr, k, (const uint8_t *)wide, kp * 2,
                           packed + col / nr * panel, c + r * c_row + col * elem, c_row / elem, out);
        }
    }
}

void dn_q8_gemm_block(const dn_q8_gemm_variant *v, size_t k, size_t n, const uint8_t *a, size_t lda,
                      const uint8_t *packed, void *c, size_t ldc, size_t r0, size_t r1, size_t c0, size_t c1,
                      const dn_q8_output *out)
{
    if (c1 > n)
        c1 = n;
    if (r1 <= r0 || c1 <= c0)
        return;
    const size_t elem = out->to_float ? sizeof(float) : 1;
    if (v->wide) {
        walk_wide(v, k, a, lda, packed, (char *)c, ldc * elem, elem, r0, r1, c0, c1, out);
        return;
    }
    q8_ctx ctx = {v, k, lda, ldc, out};
    dn_gemm_walk w = {(size_t)v->mr, (size_t)v->nr, (const char *)a, lda, (const char *)packed,
                      dn_q8_gemm_panel_bytes(v, k), (char *)c, ldc * elem, elem, DN_GEMM_BLOCK_BYTES};
    dn_gemm_walk_block(&w, r0, r1, c0, c1, q8_tile, NULL, &ctx);
}

/* Best first.  The registry takes the first the CPU has; weights whose
 * pairs could saturate vpmaddubsw are packed for the first exact one. */
const dn_q8_gemm_variant dn_q8_gemm_variants[] = {
#if DN_X86
    {"q8_gemm_6x16c4_avx2", 6, 16, 4, 4, DN_CPU_AVX2, 0, 0, 0, dn_q8_gemm_6x16c4_avx2},
    {"q8_gemm_6x16c2_avx2", 6, 16, 2, 2, DN_CPU_AVX2, 1, 0, 1, dn_q8_gemm_6x16c2_avx2, dn_q8_widen_avx2},
    {"q8_gemm_4x8c2_sse2", 4, 8, 2, 2, DN_CPU_SSE2, 1, 0, 0, dn_q8_gemm_4x8c2_sse2},
#endif
#if DN_NEON && defined(__aarch64__)
    {"q8_gemm_8x8c4_neondot", 8, 8, 4, 4, DN_CPU_NEON | DN_CPU_ASIMDDP, 1, 128, 0, dn_q8_gemm_8x8c4_neondot},
    {"q8_gemm_8x8c1_neon", 8, 8, 1, 4, DN_CPU_NEON, 1, 0, 0, dn_q8_gemm_8x8c1_neon},
#elif DN_NEON
    {"q8_gemm_4x8c1_neon", 4, 8, 1, 4, DN_CPU_NEON, 1, 0, 0, dn_q8_gemm_4x8c1_neon},
#endif
    {"q8_gemm_4x4c1_scalar", 4, 4, 1, 1, 0, 1, 0, 0, dn_q8_gemm_4x4c1_scalar},
};
const int dn_q8_gemm_nvariants = (int)(sizeof dn_q8_gemm_variants / sizeof dn_q8_gemm_variants[0]);

const dn_q8_gemm_variant *dn_q8_gemm_variant_of(dn_q8_gemm_ukernel ukernel)
{
    for (int i = 0; i < dn_q8_gemm_nvariants; i++)
        if (dn_q8_gemm_variants[i].ukernel == ukernel)
            return &dn_q8_gemm_variants[i];
    return NULL;
}
