/* Every op's variants, best first, and which one runs.
 *
 * An op runs the first variant in its table whose instruction sets the CPU
 * has (cpu.c), unless a test forced one (dn_force) or the environment
 * capped the instruction sets (DEVICENET_KERNEL_ISA, dn_limit_isa).  Each
 * table ends with the portable variant, which every CPU can run.  Adding a
 * variant is one row here and one file f32_<op>_<isa>.c.
 */
#include "q8.h"

#include <stdlib.h>

#define FN(f) ((dn_fn)(f))

#if DN_X86
#define X86(...) __VA_ARGS__,
#else
#define X86(...)
#endif
#if DN_NEON
#define NEON(...) __VA_ARGS__,
#else
#define NEON(...)
#endif
/* pixels x channels of the NEON window kernels' register block (window.h) */
#if defined(__aarch64__)
#define NEON_TILE "4x16"
#else
#define NEON_TILE "2x16"
#endif

#define AVX2FMA (DN_CPU_AVX2 | DN_CPU_FMA)

/* The variants of an op that has one per instruction set, tile in its name. */
#define PER_ISA(op, x86_tile, sse2_tile, neon_tile, scalar_tile)                                   \
    {                                                                                              \
        X86({"f32_" #op x86_tile "_avx2fma", AVX2FMA, FN(dn_f32_##op##_avx2fma), NULL})             \
        X86({"f32_" #op sse2_tile "_sse2", DN_CPU_SSE2, FN(dn_f32_##op##_sse2), NULL})              \
        NEON({"f32_" #op neon_tile "_neon", DN_CPU_NEON, FN(dn_f32_##op##_neon), NULL})             \
        {"f32_" #op scalar_tile "_scalar", 0, FN(dn_f32_##op##_scalar), NULL},                     \
    }

static const dn_variant dwconv[] = PER_ISA(dwconv, "_4x16", "_2x16", "_" NEON_TILE, "_2x16");
static const dn_variant conv_direct[] = PER_ISA(conv_direct, "_4x16", "_2x16", "_" NEON_TILE, "_2x16");
static const dn_variant dense_q8[] = PER_ISA(dense_q8, "", "", "", "");
static const dn_variant dense_q16[] = PER_ISA(dense_q16, "", "", "", "");
static const dn_variant add[] = PER_ISA(add, "", "", "", "");
static const dn_variant meanpool[] = PER_ISA(meanpool, "", "", "", "");
static const dn_variant scale[] = PER_ISA(scale, "", "", "", "");
static const dn_variant bias_act[] = PER_ISA(bias_act, "", "", "", "");
static const dn_variant gemm[] = {
    /* numpy's own BLAS, once the Python side has found it (use_blas) */
    {"f32_gemm_blas", 0, FN(dn_f32_gemm_blas), dn_have_blas},
};

/* devicenet's own GEMM (gemm.h): its micro-kernels, on weights packed for
 * the one selected when they were packed */
static const dn_variant f32_gemm[] = {
    X86({"f32_gemm_6x16_avx2fma", AVX2FMA, FN(dn_f32_gemm_6x16_avx2fma), NULL})
    X86({"f32_gemm_4x8_sse2", DN_CPU_SSE2, FN(dn_f32_gemm_4x8_sse2), NULL})
#if DN_NEON && defined(__aarch64__)
    {"f32_gemm_8x8_neonfma", DN_CPU_NEON, FN(dn_f32_gemm_8x8_neonfma), NULL},
#elif DN_NEON
    {"f32_gemm_4x8_neon", DN_CPU_NEON, FN(dn_f32_gemm_4x8_neon), NULL},
#endif
    {"f32_gemm_4x4_scalar", 0, FN(dn_f32_gemm_4x4_scalar), NULL},
};

/* the eight-bit GEMM (q8.h): weights are packed for the variant selected
 * then, or for the first exact one where they could saturate it */
static const dn_variant q8_gemm[] = {
    X86({"q8_gemm_6x16c4_avx2", DN_CPU_AVX2, FN(dn_q8_gemm_6x16c4_avx2), NULL})
    X86({"q8_gemm_6x16c2_avx2", DN_CPU_AVX2, FN(dn_q8_gemm_6x16c2_avx2), NULL})
    X86({"q8_gemm_4x8c2_sse2", DN_CPU_SSE2, FN(dn_q8_gemm_4x8c2_sse2), NULL})
#if DN_NEON && defined(__aarch64__)
    {"q8_gemm_8x8c4_neondot", DN_CPU_NEON | DN_CPU_ASIMDDP, FN(dn_q8_gemm_8x8c4_neondot), NULL},
    {"q8_gemm_8x8c1_neon", DN_CPU_NEON, FN(dn_q8_gemm_8x8c1_neon), NULL},
#elif DN_NEON
    {"q8_gemm_4x8c1_neon", DN_CPU_NEON, FN(dn_q8_gemm_4x8c1_neon), NULL},
#endif
    {"q8_gemm_4x4c1_scalar", 0, FN(dn_q8_gemm_4x4c1_scalar), NULL},
};

/* the other eight-bit ops (q8_<op>.h): one variant per instruction set;
 * quantise and dequantise have no NEON one on 32-bit ARM, whose NEON
 * flushes denormals (the portable variant, VFP code, is the exact one) */
#if DN_NEON && defined(__aarch64__)
#define NEON64(...) __VA_ARGS__,
#else
#define NEON64(...)
#endif
#define Q8_VARIANTS(op, NEON_ROW)                                                                  \
    {                                                                                              \
        X86({"q8_" #op "_avx2", DN_CPU_AVX2, FN(dn_q8_##op##_avx2), NULL})                          \
        X86({"q8_" #op "_sse2", DN_CPU_SSE2, FN(dn_q8_##op##_sse2), NULL})                          \
        NEON_ROW({"q8_" #op "_neon", DN_CPU_NEON, FN(dn_q8_##op##_neon), NULL})                     \
        {"q8_" #op "_scalar", 0, FN(dn_q8_##op##_scalar), NULL},                                   \
    }

static const dn_variant q8_dwconv[] = Q8_VARIANTS(dwconv, NEON);
static const dn_variant q8_add[] = Q8_VARIANTS(add, NEON);
static const dn_variant q8_meanpool[] = Q8_VARIANTS(meanpool, NEON);
static const dn_variant q8_quantize[] = Q8_VARIANTS(quantize, NEON64);
static const dn_variant q8_dequantize[] = Q8_VARIANTS(dequantize, NEON64);

#define TABLE(name, t) {name, t, (int)(sizeof t / sizeof t[0])}

static const struct {
    const char *name;
    const dn_variant *variants;
    int count;
} OPS[DN_NOPS] = {
    [DN_OP_DWCONV] = TABLE("depthwise", dwconv),
    [DN_OP_CONV_DIRECT] = TABLE("direct", conv_direct),
    [DN_OP_DENSE_Q8] = TABLE("dense_q8", dense_q8),
    [DN_OP_DENSE_Q16] = TABLE("dense_q16", dense_q16),
    [DN_OP_ADD] = TABLE("add", add),
    [DN_OP_MEANPOOL] = TABLE("mean_pool", meanpool),
    [DN_OP_SCALE] = TABLE("scale", scale),
    [DN_OP_BIAS_ACT] = TABLE("bias_act", bias_act),
    [DN_OP_GEMM] = TABLE("gemm", gemm),
    [DN_OP_F32_GEMM] = TABLE("f32_gemm", f32_gemm),
    [DN_OP_Q8_GEMM] = TABLE("q8_gemm", q8_gemm),
    [DN_OP_Q8_DWCONV] = TABLE("q8_dwconv", q8_dwconv),
    [DN_OP_Q8_ADD] = TABLE("q8_add", q8_add),
    [DN_OP_Q8_MEANPOOL] = TABLE("q8_meanpool", q8_meanpool),
    [DN_OP_Q8_QUANTIZE] = TABLE("q8_quantize", q8_quantize),
    [DN_OP_Q8_DEQUANTIZE] = TABLE("q8_dequantize", q8_dequantize),
};

#define MAX_VARIANTS 8

static unsigned allowed = ~0u;     /* instruction sets the variants may use */
static int forced[DN_NOPS];        /* index + 1 of a forced variant; 0: automatic */
static long chosen[DN_NOPS][MAX_VARIANTS];  /* calls made with each variant (tests check coverage) */

void dn_registry_init(void)
{
    for (int op = 0; op < DN_NOPS; op++)
        if (OPS[op].count > MAX_VARIANTS)
            abort();
    dn_cpu_detect();
    memset(forced, 0, sizeof forced);
}

const char *dn_op_name(int op)
{
    return op >= 0 && op < DN_NOPS ? OPS[op].name : NULL;
}

int dn_op_count(int op)
{
    return OPS[op].count;
}

const dn_variant *dn_op_variant(int op, int i)
{
    return i >= 0 && i < OPS[op].count ? &OPS[op].variants[i] : NULL;
}

int dn_variant_available(const dn_variant *v)
{
    const unsigned have = dn_cpu_features() & allowed;
    return (v->features & ~have) == 0 && (!v->usable || v->usable());
}

const dn_variant *dn_selected(int op)
{
    if (forced[op])
        return &OPS[op].variants[forced[op] - 1];
    for (int i = 0; i < OPS[op].count - 1; i++)
        if (dn_variant_available(&OPS[op].variants[i]))
            return &OPS[op].variants[i];
    return &OPS[op].variants[OPS[op].count - 1];
}

const dn_variant *dn_choose(int op)
{
    return dn_count(op, dn_selected(op));
}

const dn_variant *dn_count(int op, const dn_variant *v)
{
    chosen[op][v - OPS[op].variants]++;
    return v;
}

long dn_variant_calls(int op, int i)
{
    return chosen[op][i];
}

int dn_force(int op, const char *name)
{
    if (!name) {
        forced[op] = 0;
        return 0;
    }
    for (int i = 0; i < OPS[op].count; i++)
        if (!strcmp(OPS[op].variants[i].name, name)) {
            if (!dn_variant_available(&OPS[op].variants[i]))
                return -1;
            forced[op] = i + 1;
            return 0;
        }
    return -1;
}

int dn_limit_isa(const char *isa)
{
    static const struct {
        const char *name;
        unsigned features;
    } LEVELS[] = {
        {"scalar", 0},
        {"sse2", DN_CPU_SSE2},
        {"avx2", DN_CPU_SSE2 | AVX2FMA},
        {"avx2fma", DN_CPU_SSE2 | AVX2FMA},
        {"neon", DN_CPU_NEON | DN_CPU_NEON_FMA},
        {"", ~0u},
    };
    for (size_t i = 0; i < sizeof LEVELS / sizeof LEVELS[0]; i++)
        if (!strcmp(LEVELS[i].name, isa)) {
            allowed = LEVELS[i].features;
            return 0;
        }
    return -1;
}
