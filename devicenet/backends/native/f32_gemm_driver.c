/* The float32 GEMM's driver (gemm.h) and the table of its micro-kernels. */
#include "gemm.h"

/* Bytes of packed weights kept in L2 while the row tiles pass: half of the
 * 512 KiB L2 of current x86 cores and of the Cortex-A72/A76, leaving room
 * for A and C; smaller L2s only cost some re-reads from L3. */
#ifndef DN_GEMM_BLOCK_BYTES
#define DN_GEMM_BLOCK_BYTES (256u << 10)
#endif

typedef struct {
    const dn_f32_gemm_variant *v;
    size_t k, lda, ldc;
    float lo, hi;
    int curve;
    dn_bias_act_fn stage;
} f32_ctx;

static void f32_tile(const dn_gemm_walk *w, const void *ctx, size_t mr_, size_t nr_,
                     const char *a, const char *panel, char *c)
{
    const f32_ctx *x = ctx;
    (void)w;
    x->v->ukernel(mr_, nr_, x->k, (const float *)a, x->lda, (const float *)panel, (float *)c, x->ldc,
                  x->lo, x->hi);
}

/* The curve over a row tile's stretch of the block, still in L1. */
static void f32_curve_rows(const dn_gemm_walk *w, const void *ctx, size_t mr_, size_t cols, char *c)
{
    const f32_ctx *x = ctx;
    (void)w;
    x->stage((float *)c, (ptrdiff_t)x->ldc, NULL, 0, (ptrdiff_t)mr_, 0, (ptrdiff_t)cols, -HUGE_VALF, HUGE_VALF,
             x->curve);
}

void dn_f32_gemm_block(const dn_f32_gemm_variant *v, size_t k, size_t n,
                       const float *a, size_t lda, const float *packed,
                       float *c, size_t ldc, size_t r0, size_t r1, size_t c0, size_t c1,
                       float lo, float hi, int curve, dn_bias_act_fn stage)
{
    if (c1 > n)
        c1 = n;
    if (r1 <= r0 || c1 <= c0)
        return;
    f32_ctx ctx = {v, k, lda, ldc, lo, hi, curve, stage};
    dn_gemm_walk w = {(size_t)v->mr, (size_t)v->nr, (const char *)a, lda * sizeof(float),
                      (const char *)packed, (size_t)v->nr * (k + 1) * sizeof(float),
                      (char *)c, ldc * sizeof(float), sizeof(float), DN_GEMM_BLOCK_BYTES};
    dn_gemm_walk_block(&w, r0, r1, c0, c1, f32_tile, curve >= 0 ? f32_curve_rows : NULL, &ctx);
}

/* Best first: the registry takes the first whose features the CPU has. */
const dn_f32_gemm_variant dn_f32_gemm_variants[] = {
#if DN_X86
    {"f32_gemm_6x16_avx2fma", 6, 16, DN_CPU_AVX2 | DN_CPU_FMA, dn_f32_gemm_6x16_avx2fma},
    {"f32_gemm_4x8_sse2", 4, 8, DN_CPU_SSE2, dn_f32_gemm_4x8_sse2},
#endif
#if DN_NEON && defined(__aarch64__)
    {"f32_gemm_8x8_neonfma", 8, 8, DN_CPU_NEON, dn_f32_gemm_8x8_neonfma},
#endif
#if DN_NEON && defined(__arm__)
    {"f32_gemm_4x8_neon", 4, 8, DN_CPU_NEON, dn_f32_gemm_4x8_neon},
#endif
    {"f32_gemm_4x4_scalar", 4, 4, 0, dn_f32_gemm_4x4_scalar},
};
const int dn_f32_gemm_nvariants = (int)(sizeof dn_f32_gemm_variants / sizeof dn_f32_gemm_variants[0]);

const dn_f32_gemm_variant *dn_f32_gemm_variant_of(dn_f32_gemm_ukernel ukernel)
{
    for (int i = 0; i < dn_f32_gemm_nvariants; i++)
        if (dn_f32_gemm_variants[i].ukernel == ukernel)
            return &dn_f32_gemm_variants[i];
    return NULL;
}
