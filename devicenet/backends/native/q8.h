/* The eight-bit kernels: uint8 activations, int8 weights, int32 sums, one
 * requantisation per output (devicenet/backends/q8_ref.py defines the
 * arithmetic; every variant equals it bit for bit).
 *
 * Laid out as the float32 kernels are (native.h, gemm.h):
 *   q8_gemm_pack.c          the weights wt (n, k) int8, packed once into
 *                           panels of nr columns: a head of nr folded int32
 *                           biases and the columns' output stage (m, shift,
 *                           rounding; or float scales), then the weights,
 *                           k padded to what the micro-kernel consumes;
 *   q8_gemm_<MR>x<NR>c<KG>_<isa>.c
 *                           micro-kernels over one panel, requantisation
 *                           (or the hand-over to float) fused;
 *   q8_gemm_driver.c        the walk over a block of C (gemm.h's
 *                           dn_gemm_walk_block, in bytes) and the table of
 *                           micro-kernels;
 *   q8_<op>.h + q8_<op>_<isa>.c
 *                           the other ops (depthwise, add, mean pool,
 *                           quantise, dequantise), written once in plain C
 *                           and compiled per instruction set, where the
 *                           compiler's vectorisation of integer code is
 *                           exact by construction.
 */
#ifndef DEVICENET_Q8_H
#define DEVICENET_Q8_H

#include "gemm.h"

#include <float.h>

/* ---- the output stage ---------------------------------------------------
 *
 * Either uint8: zero_point + rint(clamp(float32(acc) * rscale, qmin -
 * zero_point, qmax - zero_point)), every step one float32 rounding
 * (q8_ref.requantize); or float32: clamp(float32(acc) * scale, lo, hi).
 * The rounding to an integer adds 1.5 x 2**23 and reads the float's bits
 * (exact for |v| < 2**22, as the clamped values are), where an instruction
 * set has no rounding conversion of its own. */
typedef struct {
    int32_t zero_point, qmin, qmax;  /* uint8 outputs */
    float lo, hi;                    /* float32 outputs */
    int to_float;
} dn_q8_output;

#define DN_Q8_MAGIC 12582912.0f   /* 1.5 x 2**23 */
#define DN_Q8_MAGIC_BITS 0x4B400000

/* x rounded to float32: where the compiler evaluates float arithmetic wider
 * (x87, FLT_EVAL_METHOD 2), through memory, so that every step of the
 * eight-bit arithmetic rounds once as q8_ref's does. */
#if FLT_EVAL_METHOD == 0
#define DN_F32(x) (x)
#else
static inline float dn_f32(float x)
{
    volatile float v = x;
    return v;
}
#define DN_F32(x) dn_f32(x)
#endif

/* q8_ref.requantize of one sum. */
static inline uint8_t dn_q8_requantize(int32_t acc, float rscale, int32_t zero_point, int32_t qmin, int32_t qmax)
{
    float v = DN_F32(DN_F32((float)acc) * rscale);
    const float lo = (float)(qmin - zero_point), hi = (float)(qmax - zero_point);
    v = v < lo ? lo : v > hi ? hi : v;  /* a NaN cannot occur: rscale is finite, acc an integer */
    const float rf = DN_F32(v + DN_Q8_MAGIC);
    int32_t bits;
    memcpy(&bits, &rf, sizeof bits);
    return (uint8_t)(bits - DN_Q8_MAGIC_BITS + zero_point);
}

/* ---- GEMM ----------------------------------------------------------------
 *
 * C (m, n) = output stage (bias + A (m, k) uint8 x W (k, n) int8), A's rows
 * lda bytes apart, C's rows ldc elements (bytes or floats) apart.
 *
 * A panel of nr columns is DN_Q8_HEAD 32-bit words per column: the folded
 * int32 biases, then the float32 factors (rscale or scale); then round_up(k, kr) rows of weights, kg
 * consecutive k of one column together: W[p, j] the
 * ((p / kg) * nr + j) * kg + p % kg'th weight, a byte (int8), or in a wide
 * variant's panel an int16.  Columns past n and rows past k are zeros.
 *
 * A wide variant's kernel reads A widened to uint16 (its widen, called by
 * the driver once per group of rows and block of panels, k padded with
 * zeros to a multiple of kr): with both operands int16 it multiplies pairs
 * through instructions that cannot saturate. */
#define DN_Q8_HEAD 2

/* C[0:mr_, 0:nr_] from A[0:mr_, 0:k] and one panel (k: the true depth;
 * the kernel reads no byte of A past it). */
typedef void (*dn_q8_gemm_ukernel)(size_t mr_, size_t nr_, size_t k, const uint8_t *a, size_t lda,
                                   const void *panel, void *c, size_t ldc, const dn_q8_output *out);

typedef struct {
    const char *name;       /* "q8_gemm_6x16c4_avx2" */
    int mr, nr;             /* register tile */
    int kg, kr;             /* k interleaved kg at a time; k padded to a multiple of kr */
    unsigned features;      /* DN_CPU_* bits required */
    int exact;              /* 0: needs weights whose adjacent pairs cannot saturate int16 */
    int a_offset;           /* the kernel reads A less this (128: as signed bytes), which the
                             * packing adds back to the bias: a_offset x the column's weight sum */
    int wide;               /* 1: the panel holds the weights as int16 (2 bytes each, same order),
                             * and the kernel reads A widened to uint16 by widen */
    dn_q8_gemm_ukernel ukernel;
    /* a wide variant's widening of rows of A: rows x k uint8 (rows lda
     * bytes apart) to uint16 rows of kp (>= k, the rest zeros) */
    void (*widen)(const uint8_t *a, size_t lda, size_t rows, size_t k, size_t kp, uint16_t *out);
} dn_q8_gemm_variant;

/* bytes of widened rows of A a wide variant's driver keeps on the stack
 * (one row at least: the packing gives deeper k to a variant that is not
 * wide) */
#define DN_Q8_WIDE_STACK (64u << 10)
#define DN_Q8_WIDE_MAX_K (DN_Q8_WIDE_STACK / 2)

/* widest panel and deepest k padding of any variant: buffers sized for
 * them hold weights packed for any variant */
#define DN_Q8_MAX_NR 16
#define DN_Q8_MAX_KR 4
/* bytes of the header in front of the panels */
#define DN_Q8_HEADER 64

/* Bytes of one panel of k rows for v, and of a whole packed (k, n) matrix
 * (header included). */
size_t dn_q8_gemm_panel_bytes(const dn_q8_gemm_variant *v, size_t k);
size_t dn_q8_gemm_packed_bytes(const dn_q8_gemm_variant *v, size_t k, size_t n);

/* Whether every pair of weights (k = 2i, 2i + 1) of every column of wt
 * (n, k) has |w0| + |w1| <= 128, so that vpmaddubsw on uint8 activations
 * cannot saturate. */
int dn_q8_gemm_pairs_safe(const int8_t *wt, size_t k, size_t n);

/* Pack wt (n, k), bias (n; NULL: zeros) and the output stage's factors
 * (rscale for uint8 outputs, or scale for float32 outputs: to_float) into
 * out for variant v, header included. */
void dn_q8_gemm_pack(const dn_q8_gemm_variant *v, int registry_index, const int8_t *wt, const int32_t *bias,
                     const float *factors, int to_float, size_t k, size_t n, uint8_t *out);
/* The registry index recorded in a packed buffer of ``bytes`` bytes for
 * this (k, n) and output kind (to_float), or -1. */
int dn_q8_gemm_tag(const uint8_t *packed, size_t bytes, size_t k, size_t n, int to_float);

/* Rows [r0, r1), columns [c0, c1) (c0 a multiple of v->nr) of C; packed
 * without its header. */
void dn_q8_gemm_block(const dn_q8_gemm_variant *v, size_t k, size_t n, const uint8_t *a, size_t lda,
                      const uint8_t *packed, void *c, size_t ldc, size_t r0, size_t r1, size_t c0, size_t c1,
                      const dn_q8_output *out);

extern const dn_q8_gemm_variant dn_q8_gemm_variants[];
extern const int dn_q8_gemm_nvariants;
const dn_q8_gemm_variant *dn_q8_gemm_variant_of(dn_q8_gemm_ukernel ukernel);

/* The arguments of op "q8_gemm_pack". */
typedef struct {
    const int8_t *wt;
    const int32_t *bias;
    const float *rscale, *scale;
    uint8_t *packed;
    ptrdiff_t k, n;
} dn_q8_gemm_pack_args;

/* The arguments of op "q8_gemm". */
typedef struct {
    const uint8_t *a, *packed;
    void *y;
    ptrdiff_t m, k, n, lda, ldc;
    ptrdiff_t zero_point, qmin, qmax;
    float lo, hi;
    dn_q8_output out;
    const dn_q8_gemm_variant *v;
} dn_q8_gemm_args;

/* The micro-kernels. */
void dn_q8_gemm_4x4c1_scalar(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                             const dn_q8_output *);
#if DN_X86
void dn_q8_gemm_6x16c4_avx2(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                            const dn_q8_output *);
void dn_q8_gemm_6x16c2_avx2(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                            const dn_q8_output *);
void dn_q8_widen_avx2(const uint8_t *a, size_t lda, size_t rows, size_t k, size_t kp, uint16_t *out);
void dn_q8_gemm_4x8c2_sse2(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                           const dn_q8_output *);
#endif
#if DN_NEON && defined(__aarch64__)
void dn_q8_gemm_8x8c4_neondot(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                              const dn_q8_output *);
void dn_q8_gemm_8x8c1_neon(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                           const dn_q8_output *);
#elif DN_NEON
void dn_q8_gemm_4x8c1_neon(size_t, size_t, size_t, const uint8_t *, size_t, const void *, void *, size_t,
                           const dn_q8_output *);
#endif

/* A micro-kernel's entry point: ROWS(MR) (the file's own macro, over its
 * rows function) for a compile-time MR up to max_mr. */
#define DN_Q8_GEMM_ENTRY(NAME, max_mr)                                                            \
    void NAME(size_t mr_, size_t nr_, size_t k, const uint8_t *a, size_t lda, const void *panel,   \
              void *c, size_t ldc, const dn_q8_output *out)                                        \
    {                                                                                              \
        DN_GEMM_ROWS_SWITCH(mr_, max_mr)                                                           \
    }

/* The whole-panel output stage for kernels that finish in scalar code:
 * rows of nr int32 sums acc[i * nr + j]. */
static inline void dn_q8_store_tile(size_t mr_, size_t nr_, size_t nr, const int32_t *acc, const int32_t *head,
                                    void *c, size_t ldc, const dn_q8_output *out)
{
    const float *scale = (const float *)(const void *)(head + nr);
    for (size_t i = 0; i < mr_; i++)
        for (size_t j = 0; j < nr_; j++) {
            const int32_t s = acc[i * nr + j];
            if (out->to_float)
                ((float *)c)[i * ldc + j] = clamp((float)s * scale[j], out->lo, out->hi);
            else
                ((uint8_t *)c)[i * ldc + j] = dn_q8_requantize(s, scale[j], out->zero_point, out->qmin,
                                                               out->qmax);
        }
}


/* ---- the other eight-bit ops ------------------------------------------ */

/* Depthwise convolution of one image, output rows [r0, r1): x uint8 (rows,
 * w, c) holding input rows [row0, row0 + rows); w int16 (pairs of taps,
 * c, 2) as q8_dwconv.h lays them out; bias int32 (c, folded); padded taps
 * read as x_zero_point; y uint8 (oh, ow, c) requantised per channel
 * (rscale). */
typedef struct {
    dn_geometry g;
    const uint8_t *x;
    const int16_t *w;
    const int32_t *bias;
    const float *rscale;
    uint8_t *y;
    ptrdiff_t r0, r1;
    ptrdiff_t x_zero_point, zero_point, qmin, qmax;
} dn_q8_dwconv_args;

/* y = q8_ref.add(a, b, ...): n values; |ma|, |mb| < 2**21 so that the sums
 * fit int32; 1 <= shift <= 31. */
typedef struct {
    const uint8_t *a, *b;
    uint8_t *y;
    ptrdiff_t n;
    ptrdiff_t a_zero_point, b_zero_point, ma, mb, shift, zero_point, qmin, qmax;
} dn_q8_add_args;

/* y (images, c) float32 = q8_ref.meanpool of x (images, hw, c) uint8. */
typedef struct {
    const uint8_t *x;
    float *y;
    ptrdiff_t images, hw, c, zero_point;
    float scale;
} dn_q8_meanpool_args;

/* y = q8_ref.quantize(x) (inv_scale = float32(1 / scale)), or
 * q8_ref.dequantize(x): n values. */
typedef struct {
    const float *x;
    uint8_t *y;
    ptrdiff_t n, zero_point;
    float inv_scale;
} dn_q8_quantize_args;

typedef struct {
    const uint8_t *x;
    float *y;
    ptrdiff_t n, zero_point;
    float scale;
} dn_q8_dequantize_args;

/* rows [r0, r1), channels [k0, k1) */
typedef void (*dn_q8_dwconv_fn)(const dn_q8_dwconv_args *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t);
/* values (add, quantize, dequantize) or images (meanpool) [i0, i1) */
typedef void (*dn_q8_add_fn)(const dn_q8_add_args *, ptrdiff_t, ptrdiff_t);
typedef void (*dn_q8_meanpool_fn)(const dn_q8_meanpool_args *, ptrdiff_t, ptrdiff_t);
typedef void (*dn_q8_quantize_fn)(const dn_q8_quantize_args *, ptrdiff_t, ptrdiff_t);
typedef void (*dn_q8_dequantize_fn)(const dn_q8_dequantize_args *, ptrdiff_t, ptrdiff_t);

/* The variants of the ops written once (q8_<op>.h), one per instruction
 * set: dn_q8_<op>_<isa>. */
#define DN_Q8_DECLARE(OP, ARGS)                                                    \
    void dn_q8_##OP##_scalar ARGS; void dn_q8_##OP##_sse2 ARGS;                    \
    void dn_q8_##OP##_avx2 ARGS; void dn_q8_##OP##_neon ARGS;

DN_Q8_DECLARE(dwconv, (const dn_q8_dwconv_args *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t))
DN_Q8_DECLARE(add, (const dn_q8_add_args *, ptrdiff_t, ptrdiff_t))
DN_Q8_DECLARE(meanpool, (const dn_q8_meanpool_args *, ptrdiff_t, ptrdiff_t))
DN_Q8_DECLARE(quantize, (const dn_q8_quantize_args *, ptrdiff_t, ptrdiff_t))
DN_Q8_DECLARE(dequantize, (const dn_q8_dequantize_args *, ptrdiff_t, ptrdiff_t))

#endif
