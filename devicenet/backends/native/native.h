/* The compiled kernels of the CPU backend: what they share.
 *
 * The layer is laid out the way XNNPACK and ruy lay theirs out:
 *   cpu.c        which instruction sets this CPU has, found once at start-up;
 *   registry.c   for every op, its variants (best first) and the one chosen;
 *   f32_<op>_<isa>.c   one variant per file: data type, op, tile,
 *                instruction set (the algorithm of an op is written once,
 *                in f32_<op>.h, over the 8-float vectors of vec8_<isa>.h);
 *   team.c       a team of threads that splits each call into tasks;
 *   ops.c        each op's Python arguments (a typed struct per op), their
 *                checks, and how a call is cut into tasks;
 *   module.c     the Python module devicenet.backends._native.
 *
 * Only ops.c and module.c include Python.h: the kernels, the CPU detection,
 * the registry and the team are plain C, which can be compiled (and their
 * instructions counted) for any target without Python's headers.
 *
 * The module is optional: setup.py builds it where a C compiler exists and
 * the backend uses numpy where it does not (cpu_kernels.py).  It reads
 * arrays through the buffer protocol only, so it does not depend on numpy's
 * headers or version, and it works with the GIL released.
 */
#ifndef DEVICENET_NATIVE_H
#define DEVICENET_NATIVE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* The instruction sets a variant may be built for.  Each is enabled per
 * file (a target pragma), so the module is built with the distribution's
 * default flags and still holds every variant. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define DN_X86 1
#endif
/* NEON variants on every hard-float ARM build, ARMv6 ones included:
 * Raspberry Pi OS's 32-bit userland is built for ARMv6 and runs on
 * ARMv7 and ARMv8 boards with NEON as well as on ARMv6 ones without. */
#if defined(__aarch64__) || (defined(__arm__) && defined(__GNUC__) && defined(__ARM_ARCH) \
                             && __ARM_ARCH >= 6 && !defined(__SOFTFP__))
#define DN_NEON 1
#endif

static inline ptrdiff_t max_z(ptrdiff_t a, ptrdiff_t b) { return a > b ? a : b; }
static inline ptrdiff_t min_z(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

/* v clipped to [lo, hi] (a NaN stays a NaN) */
static inline float clamp(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* ---- CPU features (cpu.c) --------------------------------------------- */

enum {
    DN_CPU_SSE2 = 1 << 0,
    DN_CPU_AVX2 = 1 << 1,
    DN_CPU_FMA = 1 << 2,
    DN_CPU_AVX512F = 1 << 3,
    DN_CPU_NEON = 1 << 4,      /* armv7 NEON, or aarch64's Advanced SIMD */
    DN_CPU_NEON_FMA = 1 << 5,  /* vfma (VFPv4 on armv7; always on aarch64) */
    DN_CPU_ASIMDDP = 1 << 6,   /* aarch64 dot product */
    DN_CPU_FPHP = 1 << 7,      /* aarch64 half-precision arithmetic */
    DN_CPU_NFEATURES = 8
};

void dn_cpu_detect(void);
unsigned dn_cpu_features(void);                 /* what the CPU has */
const char *dn_cpu_feature_name(int bit);       /* "avx2", ...; bit is the index */
int dn_cpu_has(const char *feature);

/* ---- each op's arguments ---------------------------------------------- */

/* The curve a float layer may apply after its clip (graph.CURVES, in that
 * order; f32_curve.h computes them). */
enum { DN_CURVE_NONE = -1, DN_CURVE_SIGMOID, DN_CURVE_HARDSIGMOID, DN_CURVE_HARDSWISH, DN_CURVE_SILU,
       DN_CURVE_GELU, DN_NCURVES };

/* The bias and activation stage: rows [r0, r1), columns [c0, c1) of y (row
 * length ld) plus bias (or none), clipped to [lo, hi], then curve
 * (DN_CURVE_*), in place. */
typedef void (*dn_bias_act_fn)(float *y, ptrdiff_t ld, const float *bias, ptrdiff_t r0, ptrdiff_t r1,
                               ptrdiff_t c0, ptrdiff_t c1, float lo, float hi, int curve);

/* A float layer's activation: clipped to [lo, hi] as it is stored, then,
 * where curve is not DN_CURVE_NONE, the curve applied by ``stage`` (the
 * bias_act variant chosen when the call is checked) while the output is
 * still in cache. */
#define DN_ACT_FIELDS \
    float lo, hi;     \
    ptrdiff_t curve;  \
    dn_bias_act_fn stage;

/* Rows [r0, r1), columns [c0, c1) of y (row length ld) through a layer's
 * curve, where it has one. */
#define DN_CURVE(args, y, ld, r0, r1, c0, c1)                                               \
    do {                                                                                    \
        if ((args)->curve >= 0)                                                             \
            (args)->stage((y), (ld), NULL, (r0), (r1), (c0), (c1), -HUGE_VALF, HUGE_VALF,   \
                          (int)(args)->curve);                                              \
    } while (0)

/* The geometry of a window op (depthwise, direct convolution) on one image. */
typedef struct {
    ptrdiff_t h, w, c;         /* the whole input image */
    ptrdiff_t row0, rows;      /* input rows held in the buffer: [row0, row0 + rows) */
    ptrdiff_t oh, ow;          /* output */
    ptrdiff_t kh, kw, sh, sw, pt, pl;
    ptrdiff_t cout;            /* output channels (direct convolution; depthwise: c) */
} dn_geometry;

/* depthwise and direct: output rows [r0, r1) of y from x; weights (KH, KW, C)
 * (depthwise) or (KH, KW, C, Cout) (direct); bias or NULL; clipped to [lo, hi]. */
typedef struct {
    dn_geometry g;
    const float *x, *w, *bias;
    float *y;
    ptrdiff_t r0, r1;
    DN_ACT_FIELDS
} dn_window_args;

/* y (m, n) = x (m, k) @ (q * scales[:, None]).T + bias, q int8 or int16 (n, k). */
typedef struct {
    const float *x;
    const void *q;
    const float *scales, *bias;
    float *y;
    ptrdiff_t m, k, n;
    DN_ACT_FIELDS
} dn_dense_q_args;

/* y = clip(a + b): n values */
typedef struct {
    const float *a, *b;
    float *y;
    ptrdiff_t n;
    DN_ACT_FIELDS
} dn_add_args;

/* y (images, c) = the mean over hw pixels of x (images, hw, c) */
typedef struct {
    const float *x;
    float *y;
    ptrdiff_t images, hw, c;
} dn_meanpool_args;

/* y (images, hw, c) = x (images, hw, c) times s (images, c), per channel */
typedef struct {
    const float *x, *s;
    float *y;
    ptrdiff_t images, hw, c;
} dn_scale_args;

/* In place: every row of n values of y (rows of them) plus bias, clipped. */
typedef struct {
    float *y;
    const float *bias;
    ptrdiff_t rows, n;
    DN_ACT_FIELDS
} dn_bias_act_args;

/* y (m, n) = clip(a (m, k) @ b (k, n) + bias) */
typedef struct {
    const float *a, *b, *bias;
    float *y;
    ptrdiff_t m, k, n;
    DN_ACT_FIELDS
} dn_gemm_args;

/* ---- one signature per op: the variants' functions ---------------------- */

/* rows [r0, r1), channels [k0, k1) */
typedef void (*dn_dwconv_fn)(const dn_window_args *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t k0, ptrdiff_t k1);
/* rows [r0, r1) */
typedef void (*dn_conv_direct_fn)(const dn_window_args *a, ptrdiff_t r0, ptrdiff_t r1);
/* output channels [o0, o1) */
typedef void (*dn_dense_q_fn)(const dn_dense_q_args *a, ptrdiff_t o0, ptrdiff_t o1);
/* values [i0, i1) */
typedef void (*dn_add_fn)(const dn_add_args *a, ptrdiff_t i0, ptrdiff_t i1);
/* images [i0, i1) */
typedef void (*dn_meanpool_fn)(const dn_meanpool_args *a, ptrdiff_t i0, ptrdiff_t i1);
/* pixels [p0, p1) of the whole batch */
typedef void (*dn_scale_fn)(const dn_scale_args *a, ptrdiff_t p0, ptrdiff_t p1);
/* rows [r0, r1), columns [c0, c1) */
typedef void (*dn_gemm_fn)(const dn_gemm_args *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1);

/* Declares the variants of an op, one per instruction set: dn_f32_<op>_<isa>. */
#define DN_DECLARE(OP, RET, ARGS)                                              \
    RET dn_f32_##OP##_scalar ARGS; RET dn_f32_##OP##_sse2 ARGS;                \
    RET dn_f32_##OP##_avx2fma ARGS; RET dn_f32_##OP##_neon ARGS;

DN_DECLARE(dwconv, void, (const dn_window_args *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t))
DN_DECLARE(conv_direct, void, (const dn_window_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(dense_q8, void, (const dn_dense_q_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(dense_q16, void, (const dn_dense_q_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(add, void, (const dn_add_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(meanpool, void, (const dn_meanpool_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(scale, void, (const dn_scale_args *, ptrdiff_t, ptrdiff_t))
DN_DECLARE(bias_act, void, (float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            float, float, int))
void dn_f32_gemm_blas(const dn_gemm_args *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1);
void dn_use_blas(void *sgemm, void *sgemv);
int dn_have_blas(void);

/* ---- the registry (registry.c) ------------------------------------------ */

enum { DN_OP_DWCONV, DN_OP_CONV_DIRECT, DN_OP_DENSE_Q8, DN_OP_DENSE_Q16, DN_OP_ADD, DN_OP_MEANPOOL,
       DN_OP_SCALE, DN_OP_BIAS_ACT, DN_OP_GEMM, DN_OP_F32_GEMM, DN_OP_Q8_GEMM,
       DN_OP_Q8_DWCONV, DN_OP_Q8_ADD, DN_OP_Q8_MEANPOOL, DN_OP_Q8_QUANTIZE, DN_OP_Q8_DEQUANTIZE, DN_NOPS };

typedef void (*dn_fn)(void);

typedef struct {
    const char *name;        /* "f32_dwconv_4x16_avx2" */
    unsigned features;       /* DN_CPU_* bits it needs */
    dn_fn fn;                /* of the op's signature (dn_<op>_fn) */
    int (*usable)(void);     /* NULL, or whether it can run now (the BLAS was found) */
} dn_variant;

void dn_registry_init(void);
const char *dn_op_name(int op);
int dn_op_count(int op);
const dn_variant *dn_op_variant(int op, int i);
int dn_variant_available(const dn_variant *v);
/* The op's selected variant: the first available one in table order,
 * unless one was forced. */
const dn_variant *dn_selected(int op);
/* dn_selected, counted as one call made with it (calls of the op, at the
 * time they are checked) */
const dn_variant *dn_choose(int op);
/* Count one call made with variant v of an op (chosen earlier); v. */
const dn_variant *dn_count(int op, const dn_variant *v);
long dn_variant_calls(int op, int i);
/* Force the named variant of an op (NULL: back to the automatic choice);
 * -1 when it is not built or cannot run on this CPU. */
int dn_force(int op, const char *name);
/* Limit every op to instruction sets up to ``isa`` (scalar, sse2, avx2,
 * neon); -1 for an unknown name. */
int dn_limit_isa(const char *isa);

#define DN_KERNEL(op, type) ((type)dn_selected(op)->fn)

/* ---- jobs for the team (team.c) ---------------------------------------- */

/* A job is one call cut into tasks: ``task(j, t)`` runs the t-th of
 * ``tasks``, each ``per`` units (rows, or ``across``: channels). */
typedef struct dn_job {
    void (*task)(const struct dn_job *j, ptrdiff_t t);
    const void *args;        /* the op's argument struct */
    dn_fn fn;                /* the op's variant */
    ptrdiff_t tasks, per;
    int across;
} dn_job;

/* Run a job's tasks: on the team where it is free and the job is ``worth``
 * sharing, else on the calling thread.  ``split(j, threads)`` cuts the job
 * into tasks for that many threads. */
void dn_run(dn_job *j, int threads, int worth, void (*split)(dn_job *, ptrdiff_t));
/* Cut a job into about ``tasks`` tasks of ``units`` units (in multiples of
 * ``align``). */
void dn_split(dn_job *j, ptrdiff_t units, ptrdiff_t tasks, ptrdiff_t align);

/* Values below which a job is not worth handing to other threads. */
#define MIN_SHARED 32768

#endif
