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

void dn_q8_gemm_block(const dn_q8_gemm_variant *v, size_t k, size_t n, const uint8_t *a, size_t lda,
                      const uint8_t *packed, void *c, size_t ldc, size_t r0, size_t r1, size_t c0, size_t c1,
                      const dn_q8_output *out)
{
    if (c1 > n)
        c1 = n;
    if (r1 <= r0 || c1 <= c0)
        return;
    const size_t elem = out->to_float ? sizeof(float) : 1;
    q8_ctx ctx = {v, k, lda, ldc, out};
    dn_gemm_walk w = {(size_t)v->mr, (size_t)v->nr, (const char *)a, lda, (const char *)packed,
                      dn_q8_gemm_panel_bytes(v, k), (char *)c, ldc * elem, elem, DN_GEMM_BLOCK_BYTES};
    dn_gemm_walk_block(&w, r0, r1, c0, c1, q8_tile, NULL, &ctx);
}

/* Best first.  The registry takes the first the CPU has; weights whose
 * pairs could saturate vpmaddubsw are packed for the first exact one. */
const dn_q8_gemm_variant dn_q8_gemm_variants[] = {
#if DN_X86
    {"q8_gemm_6x16c4_avx2", 6, 16, 4, 4, DN_CPU_AVX2, 0, 0, dn_q8_gemm_6x16c4_avx2},
    {"q8_gemm_4x16c2_avx2", 4, 16, 2, 2, DN_CPU_AVX2, 1, 0, dn_q8_gemm_4x16c2_avx2},
    {"q8_gemm_4x8c2_sse2", 4, 8, 2, 2, DN_CPU_SSE2, 1, 0, dn_q8_gemm_4x8c2_sse2},
#endif
#if DN_NEON && defined(__aarch64__)
    {"q8_gemm_8x8c4_neondot", 8, 8, 4, 4, DN_CPU_NEON | DN_CPU_ASIMDDP, 1, 128, dn_q8_gemm_8x8c4_neondot},
    {"q8_gemm_8x8c1_neon", 8, 8, 1, 4, DN_CPU_NEON, 1, 0, dn_q8_gemm_8x8c1_neon},
#elif DN_NEON
    {"q8_gemm_4x8c1_neon", 4, 8, 1, 4, DN_CPU_NEON, 1, 0, dn_q8_gemm_4x8c1_neon},
#endif
    {"q8_gemm_4x4c1_scalar", 4, 4, 1, 1, 0, 1, 0, dn_q8_gemm_4x4c1_scalar},
};
const int dn_q8_gemm_nvariants = (int)(sizeof dn_q8_gemm_variants / sizeof dn_q8_gemm_variants[0]);

const dn_q8_gemm_variant *dn_q8_gemm_variant_of(dn_q8_gemm_ukernel ukernel)
{
    for (int i = 0; i < dn_q8_gemm_nvariants; i++)
        if (dn_q8_gemm_variants[i].ukernel == ukernel)
            return &dn_q8_gemm_variants[i];
    return NULL;
}
