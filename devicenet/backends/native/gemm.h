/* devicenet's own float32 GEMM: C = clamp(A x W + bias, lo, hi).
 *
 * Three parts, kept apart as ruy and XNNPACK keep them:
 *   f32_gemm_pack.c        the weights W (k, n), packed once (at load) into
 *                          panels nr columns wide: each panel is nr bias
 *                          values, then k rows of nr weights, zero-padded
 *                          past column n;
 *   f32_gemm_<MR>x<NR>_<isa>.c
 *                          micro-kernels: an MR x NR tile of C summed in
 *                          registers over one panel, bias and clamp fused;
 *   f32_gemm_driver.c      the walk over a block of C, tile by tile, in
 *                          the order that keeps operands in cache.
 * A is (m, k) row-major with row stride lda, C is (m, n) with row stride
 * ldc (both in elements).
 *
 * The registry (registry.c) lists the micro-kernels as the variants of op
 * "f32_gemm"; ops.c packs and calls them.  Like every kernel here, this
 * is plain C without Python.h.
 */
#ifndef DEVICENET_GEMM_H
#define DEVICENET_GEMM_H

#include "native.h"

/* C[0:mr_, 0:nr_] = clamp(A[0:mr_, 0:kc] x panel + bias_panel, lo, hi) for
 * mr_ <= mr, nr_ <= nr.  panel: nr bias values, then kc rows of nr
 * weights. */
typedef void (*dn_f32_gemm_ukernel)(size_t mr_, size_t nr_, size_t kc, const float *a, size_t lda,
                                    const float *panel, float *c, size_t ldc, float lo, float hi);

typedef struct {
    const char *name;       /* "f32_gemm_6x16_avx2fma" */
    int mr, nr;             /* register tile */
    unsigned features;      /* DN_CPU_* bits required */
    dn_f32_gemm_ukernel ukernel;
} dn_f32_gemm_variant;

/* The widest panel of any variant: a buffer of
 * dn_f32_gemm_packed_floats(k, n, DN_GEMM_MAX_NR) floats holds the weights
 * packed for any of them. */
#define DN_GEMM_MAX_NR 16

/* Floats of the packed weights of a (k, n) matrix for panels nr wide. */
size_t dn_f32_gemm_packed_floats(size_t k, size_t n, int nr);

/* Pack w (k, n, row-major) and bias (n values, or NULL for zeros) into
 * dn_f32_gemm_packed_floats(k, n, nr) floats. */
void dn_f32_gemm_pack(const float *w, const float *bias, size_t k, size_t n, int nr, float *packed);
/* The same for W[r, c] at w[r * k_stride + c * n_stride]: (n, 1) is W
 * row-major, (1, k) its transpose (n, k) row-major, the layout in which
 * layers store their weights (no transposed copy needed). */
void dn_f32_gemm_pack_strided(const float *w, size_t k_stride, size_t n_stride, const float *bias,
                              size_t k, size_t n, int nr, float *packed);

/* Rows [r0, r1) and columns [c0, c1) of C (c0 a multiple of v->nr): one
 * task's share of a GEMM whose weights were packed for v->nr, clipped to
 * [lo, hi] in the micro-kernel, then each tile, as it is written, through
 * curve (DN_CURVE_*) by ``stage``. */
void dn_f32_gemm_block(const dn_f32_gemm_variant *v, size_t k, size_t n,
                       const float *a, size_t lda, const float *packed,
                       float *c, size_t ldc, size_t r0, size_t r1, size_t c0, size_t c1,
                       float lo, float hi, int curve, dn_bias_act_fn stage);

/* ---- the walk over a block of C, for any element type ------------------
 *
 * Shared by every GEMM family (float32 here, the eight-bit kernels later):
 * sizes in bytes, one call of ``tile`` per register tile.  Columns go in
 * blocks whose panels fit in the L2 cache together; inside a block, each
 * row tile of A is read from memory once and stays in L1 while it meets
 * every panel of the block, and the block's panels stay in L2 while all
 * the row tiles pass.  Inlined into each driver, with its micro-kernel
 * call as ``tile``, and ``rows`` (or NULL), called on each row tile's
 * stretch of the block once every tile of it is written (still in L1):
 * where an output stage that costs per call (a curve activation) runs. */
typedef struct {
    size_t mr, nr;              /* register tile */
    const char *a;              /* A: rows of a_row bytes */
    size_t a_row;
    const char *packed;         /* panels of panel_bytes each */
    size_t panel_bytes;
    char *c;                    /* C: rows of c_row bytes, elements of c_elem bytes */
    size_t c_row, c_elem;
    size_t block_bytes;         /* panel bytes held in L2 at once */
} dn_gemm_walk;

typedef void (*dn_gemm_tile)(const dn_gemm_walk *w, const void *ctx, size_t mr_, size_t nr_,
                             const char *a, const char *panel, char *c);
typedef void (*dn_gemm_rows)(const dn_gemm_walk *w, const void *ctx, size_t mr_, size_t cols, char *c);

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void dn_gemm_walk_block(const dn_gemm_walk *w, size_t r0, size_t r1, size_t c0, size_t c1,
                                      dn_gemm_tile tile, dn_gemm_rows rows, const void *ctx)
{
    size_t per_block = w->block_bytes / w->panel_bytes;
    size_t block = (per_block ? per_block : 1) * w->nr;
    for (size_t cb = c0; cb < c1; cb += block) {
        size_t ce = c1 - cb < block ? c1 : cb + block;
        for (size_t r = r0; r < r1; r += w->mr) {
            size_t mr_ = r1 - r < w->mr ? r1 - r : w->mr;
            const char *a = w->a + r * w->a_row;
            char *c = w->c + r * w->c_row;
            for (size_t col = cb; col < ce; col += w->nr)
                tile(w, ctx, mr_, ce - col < w->nr ? ce - col : w->nr, a,
                     w->packed + col / w->nr * w->panel_bytes, c + col * w->c_elem);
            if (rows)
                rows(w, ctx, mr_, ce - cb, c + cb * w->c_elem);
        }
    }
}

/* A micro-kernel's entry point: ROWS(MR) for the constant MR = mr_ (1 to
 * max_mr), so that each row count gets its own unrolled loop. */
#define DN_GEMM_ROWS_SWITCH(mr_, max_mr)                   \
    switch (mr_) {                                         \
    case 8: if ((max_mr) >= 8) { ROWS(8); } break;         \
    case 7: if ((max_mr) >= 7) { ROWS(7); } break;         \
    case 6: if ((max_mr) >= 6) { ROWS(6); } break;         \
    case 5: if ((max_mr) >= 5) { ROWS(5); } break;         \
    case 4: ROWS(4); break;                                \
    case 3: ROWS(3); break;                                \
    case 2: ROWS(2); break;                                \
    case 1: ROWS(1); break;                                \
    }

/* The variants built into this module, best first; the last is the
 * portable one that every CPU runs. */
extern const dn_f32_gemm_variant dn_f32_gemm_variants[];
extern const int dn_f32_gemm_nvariants;

/* The variant of this table whose micro-kernel is ``ukernel`` (a registry
 * row's function), or NULL. */
const dn_f32_gemm_variant *dn_f32_gemm_variant_of(dn_f32_gemm_ukernel ukernel);

/* ---- packed weights as the Python side holds them ----------------------
 *
 * A header of DN_GEMM_HEADER floats, then the panels: the header records
 * the registry variant the weights were packed for and (k, n), so that a
 * call checks it runs the matching micro-kernel on a matching matrix. */
#define DN_GEMM_HEADER 16
void dn_f32_gemm_pack_tagged(const float *w, size_t k_stride, size_t n_stride, const float *bias,
                             size_t k, size_t n, int registry_index, const dn_f32_gemm_variant *v, float *out);
/* The registry index recorded in the header of a packed buffer of
 * ``floats`` floats, or -1 when there is none or it was packed for
 * another (k, n).  (The caller checks the size against the variant.) */
int dn_f32_gemm_tag(const float *packed, size_t floats, size_t k, size_t n);

/* C (m, n, row stride ldc) = clamp(A (m, k, row stride lda) x W + bias):
 * the arguments of op "f32_gemm" (ops.c). */
typedef struct {
    const float *a, *packed;    /* packed: with its header */
    float *y;
    ptrdiff_t m, k, n, lda, ldc;
    DN_ACT_FIELDS
    const dn_f32_gemm_variant *v;   /* the one the weights were packed for */
} dn_f32_gemm_args;

/* Pack w (k, n) or wt (n, k) and bias into packed (header included) for
 * the selected variant: the arguments of op "f32_gemm_pack". */
typedef struct {
    const float *w, *wt, *bias;
    float *packed;
    ptrdiff_t k, n;
} dn_f32_gemm_pack_args;

/* The micro-kernels (one per file; those of other architectures are not
 * built). */
void dn_f32_gemm_4x4_scalar(size_t, size_t, size_t, const float *, size_t, const float *, float *, size_t,
                            float, float);
#if DN_X86
void dn_f32_gemm_4x8_sse2(size_t, size_t, size_t, const float *, size_t, const float *, float *, size_t,
                          float, float);
void dn_f32_gemm_6x16_avx2fma(size_t, size_t, size_t, const float *, size_t, const float *, float *, size_t,
                              float, float);
#endif
#if DN_NEON && defined(__arm__)
void dn_f32_gemm_4x8_neon(size_t, size_t, size_t, const float *, size_t, const float *, float *, size_t,
                          float, float);
#endif
#if DN_NEON && defined(__aarch64__)
void dn_f32_gemm_8x8_neonfma(size_t, size_t, size_t, const float *, size_t, const float *, float *, size_t,
                             float, float);
#endif

#endif
