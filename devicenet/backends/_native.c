/* Compiled kernels of the CPU backend, for what numpy cannot do in one
 * fast call: depthwise convolution.
 *
 * A depthwise layer does only K*K multiply-adds per output value, so numpy
 * spends its time streaming arrays through memory, one pass per tap (or one
 * einsum pass over all taps, still bounded at a few G multiply-adds per
 * second).  Here every output pixel's channels are summed over all taps in
 * registers, with bias and the clipping activation applied before the
 * single store.
 *
 * The module is optional: setup.py builds it where a C compiler exists and
 * the backend uses numpy where it does not (cpu_kernels.py).  It uses the
 * buffer protocol only, so it does not depend on numpy's headers or
 * version.  The work runs with the GIL released, so the backend's threads
 * run bands of rows in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__unix__) && !defined(__STDC_NO_ATOMICS__)
#define TEAM 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#endif

/* Channels summed together in registers: 16 floats are two AVX or four
 * NEON vectors, which leaves registers for the inputs and weights. */
#define CB 16

/* GCC on x86-64 builds the loop twice, for AVX2 + FMA and for the baseline
 * (SSE2), and picks one when the module loads: the same build runs fast on
 * new machines and correctly on old ones.  ARM builds use the compiler's
 * target (NEON on aarch64; armhf as the distribution configures it). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

typedef struct {
    Py_ssize_t h, w, c;        /* the whole input image */
    Py_ssize_t row0, rows;     /* input rows held in the buffer: [row0, row0 + rows) */
    Py_ssize_t oh, ow;         /* output */
    Py_ssize_t kh, kw, sh, sw, pt, pl;
    Py_ssize_t cout;           /* output channels (direct convolution; depthwise: c) */
} geometry;

static inline Py_ssize_t max_z(Py_ssize_t a, Py_ssize_t b) { return a > b ? a : b; }
static inline Py_ssize_t min_z(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* Eight floats, loaded and stored at any 4-byte alignment.  GCC and Clang
 * map it onto whatever the target has: one AVX register, two SSE or NEON
 * registers. */
typedef float vf8 __attribute__((vector_size(32), aligned(4)));
#define V(p) (*(const vf8 *)(p))

/* Channels [k, k + CB) of NP = 4 output pixels side by side (columns ox,
 * ox + 1, ...), every tap in kernel rows [i0, i1) and columns [0, KW)
 * inside the image.  The eight accumulators (4 pixels x 16 channels) stay
 * in registers; each weight vector is loaded once for the four pixels. */
#define NP 4
INLINE void interior_block(const geometry *g, const float *restrict xpix,
                           const float *restrict wt, const float *restrict bias,
                           float *restrict ypix, Py_ssize_t k,
                           Py_ssize_t i0, Py_ssize_t i1, float lo, float hi,
                           const Py_ssize_t KW, const Py_ssize_t SW)
{
    const Py_ssize_t c = g->c, s = SW * c;
    vf8 b0 = {0}, b1 = {0};
    if (bias) {
        b0 = V(bias + k);
        b1 = V(bias + k + 8);
    }
    vf8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
    for (Py_ssize_t i = i0; i < i1; i++) {
        const float *xr = xpix + i * g->w * c + k;
        const float *wr = wt + i * KW * c + k;
        for (Py_ssize_t j = 0; j < KW; j++) {
            const float *xp = xr + j * c;
            const vf8 w0 = V(wr + j * c), w1 = V(wr + j * c + 8);
            a00 += V(xp) * w0;
            a01 += V(xp + 8) * w1;
            a10 += V(xp + s) * w0;
            a11 += V(xp + s + 8) * w1;
            a20 += V(xp + 2 * s) * w0;
            a21 += V(xp + 2 * s + 8) * w1;
            a30 += V(xp + 3 * s) * w0;
            a31 += V(xp + 3 * s + 8) * w1;
        }
    }
    float out[NP][CB];
    memcpy(out[0], &a00, 32); memcpy(out[0] + 8, &a01, 32);
    memcpy(out[1], &a10, 32); memcpy(out[1] + 8, &a11, 32);
    memcpy(out[2], &a20, 32); memcpy(out[2] + 8, &a21, 32);
    memcpy(out[3], &a30, 32); memcpy(out[3] + 8, &a31, 32);
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < CB; q++) {
            float v = out[p][q] < lo ? lo : out[p][q];
            ypix[p * c + k + q] = v > hi ? hi : v;
        }
}

/* Channels [k0, k1) of one output pixel, taps in [i0, i1) x [j0, j1). */
INLINE void pixel(const geometry *g, const float *restrict xpix,
                  const float *restrict wt, const float *restrict bias,
                  float *restrict ypix, Py_ssize_t k0, Py_ssize_t k1,
                  Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1,
                  float lo, float hi)
{
    const Py_ssize_t c = g->c, kw = g->kw;
    Py_ssize_t k = k0;
    for (; k + CB <= k1; k += CB) {
        vf8 a0 = {0}, a1 = {0};
        if (bias) {
            a0 = V(bias + k);
            a1 = V(bias + k + 8);
        }
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * g->w + j) * c + k;
                const float *wp = wt + (i * kw + j) * c + k;
                a0 += V(xp) * V(wp);
                a1 += V(xp + 8) * V(wp + 8);
            }
        float acc[CB];
        memcpy(acc, &a0, 32);
        memcpy(acc + 8, &a1, 32);
        for (int q = 0; q < CB; q++) {
            float v = acc[q] < lo ? lo : acc[q];
            ypix[k + q] = v > hi ? hi : v;
        }
    }
    for (; k < k1; k++) {
        float acc = bias ? bias[k] : 0.0f;
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++)
                acc += xpix[(i * g->w + j) * c + k] * wt[(i * kw + j) * c + k];
        float v = acc < lo ? lo : acc;
        ypix[k] = v > hi ? hi : v;
    }
}

/* Output rows [r0, r1) of y (oh, ow, c) from x (rows, w, c), weights
 * (kh, kw, c), bias (c) or NULL; every value clipped to [lo, hi].  Taps that
 * fall on padding are skipped, which is the same as reading zeros.  KW and
 * SW are g->kw and g->sw, as constants where the caller can. */
INLINE void rows(const geometry *g, const float *restrict x, const float *restrict wt,
                 const float *restrict bias, float *restrict y,
                 Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k0, Py_ssize_t k1, float lo, float hi,
                 const Py_ssize_t KW, const Py_ssize_t SW)
{
    const Py_ssize_t c = g->c;
    /* Output columns [ox0, ox1) read no padding column. */
    Py_ssize_t ox0 = (g->pl + SW - 1) / SW, ox1 = g->ow;
    while (ox1 > ox0 && (ox1 - 1) * SW - g->pl + KW > g->w)
        ox1--;
    for (Py_ssize_t oy = r0; oy < r1; oy++) {
        const Py_ssize_t iy = oy * g->sh - g->pt;
        const Py_ssize_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = x + (iy - g->row0) * g->w * c;
        float *yrow = y + oy * g->ow * c;
        for (Py_ssize_t ox = 0; ox < g->ow; ox++) {
            const Py_ssize_t ix = ox * SW - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && k1 - k0 >= CB) {
                Py_ssize_t k = k0;
                for (; k + CB <= k1; k += CB)
                    interior_block(g, xrow + ix * c, wt, bias, yrow + ox * c, k, i0, i1, lo, hi, KW, SW);
                for (Py_ssize_t p = 0; p < NP && k < k1; p++)
                    pixel(g, xrow + (ix + p * SW) * c, wt, bias, yrow + (ox + p) * c, k, k1,
                          i0, i1, 0, KW, lo, hi);
                ox += NP - 1;
                continue;
            }
            pixel(g, xrow + ix * c, wt, bias, yrow + ox * c, k0, k1,
                  i0, i1, max_z(0, -ix), min_z(KW, g->w - ix), lo, hi);
        }
    }
}

/* Output rows [r0, r1), channels [k0, k1).  The common kernel sizes and
 * strides get their own unrolled loops. */
MULTIVERSION
static void depthwise_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                           const float *restrict bias, float *restrict y,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k0, Py_ssize_t k1, float lo, float hi)
{
    if (g->kw == 3 && g->sw == 1)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 3, 1);
    else if (g->kw == 3 && g->sw == 2)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 3, 2);
    else if (g->kw == 5 && g->sw == 1)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 5, 1);
    else if (g->kw == 5 && g->sw == 2)
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, 5, 2);
    else
        rows(g, x, wt, bias, y, r0, r1, k0, k1, lo, hi, g->kw, g->sw);
}


/* ---- direct convolution, for a few input channels ------------------------
 *
 * A network's first layer (3 input channels) makes a poor GEMM: im2col
 * copies every pixel KH*KW times into rows of only KH*KW*3 values.  Here
 * each output pixel's channels accumulate in registers over all taps, each
 * input value broadcast against a vector of output channels; weights are
 * (KH, KW, Cin, Cout).
 */

/* Output channels [k, k + CB) of NP pixels side by side, all taps inside. */
INLINE void direct_block(const geometry *g, const float *restrict xpix, const float *restrict wt,
                         const float *restrict bias, float *restrict ypix, Py_ssize_t k,
                         Py_ssize_t i0, Py_ssize_t i1, float lo, float hi,
                         const Py_ssize_t KW, const Py_ssize_t C)
{
    const Py_ssize_t c = C, co = g->cout, s = g->sw * c;
    vf8 b0 = {0}, b1 = {0};
    if (bias) {
        b0 = V(bias + k);
        b1 = V(bias + k + 8);
    }
    vf8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
    for (Py_ssize_t i = i0; i < i1; i++)
        for (Py_ssize_t j = 0; j < KW; j++) {
            const float *xp = xpix + (i * g->w + j) * c;
            const float *wp = wt + (i * KW + j) * c * co + k;
            for (Py_ssize_t ci = 0; ci < c; ci++, wp += co) {
                const vf8 w0 = V(wp), w1 = V(wp + 8);
                const float x0 = xp[ci], x1 = xp[s + ci], x2 = xp[2 * s + ci], x3 = xp[3 * s + ci];
                a00 += x0 * w0;
                a01 += x0 * w1;
                a10 += x1 * w0;
                a11 += x1 * w1;
                a20 += x2 * w0;
                a21 += x2 * w1;
                a30 += x3 * w0;
                a31 += x3 * w1;
            }
        }
    float out[NP][CB];
    memcpy(out[0], &a00, 32); memcpy(out[0] + 8, &a01, 32);
    memcpy(out[1], &a10, 32); memcpy(out[1] + 8, &a11, 32);
    memcpy(out[2], &a20, 32); memcpy(out[2] + 8, &a21, 32);
    memcpy(out[3], &a30, 32); memcpy(out[3] + 8, &a31, 32);
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < CB; q++) {
            float v = out[p][q] < lo ? lo : out[p][q];
            ypix[p * co + k + q] = v > hi ? hi : v;
        }
}

/* Output channels [k0, cout) of one pixel, taps in [i0, i1) x [j0, j1). */
INLINE void direct_pixel(const geometry *g, const float *restrict xpix, const float *restrict wt,
                         const float *restrict bias, float *restrict ypix, Py_ssize_t k0,
                         Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1, float lo, float hi)
{
    const Py_ssize_t c = g->c, co = g->cout;
    for (Py_ssize_t k = k0; k < co; k++) {
        float acc = bias ? bias[k] : 0.0f;
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * g->w + j) * c;
                const float *wp = wt + (i * g->kw + j) * c * co + k;
                for (Py_ssize_t ci = 0; ci < c; ci++)
                    acc += xp[ci] * wp[ci * co];
            }
        float v = acc < lo ? lo : acc;
        ypix[k] = v > hi ? hi : v;
    }
}

/* Output rows [r0, r1) of a direct convolution; KW and C are g->kw and
 * g->c, as constants where the caller can. */
INLINE void direct_impl(const geometry *g, const float *restrict x, const float *restrict wt,
                        const float *restrict bias, float *restrict y,
                        Py_ssize_t r0, Py_ssize_t r1, float lo, float hi,
                        const Py_ssize_t KW, const Py_ssize_t C)
{
    const Py_ssize_t co = g->cout, full = co / CB * CB;
    Py_ssize_t ox0 = (g->pl + g->sw - 1) / g->sw, ox1 = g->ow;
    while (ox1 > ox0 && (ox1 - 1) * g->sw - g->pl + KW > g->w)
        ox1--;
    for (Py_ssize_t oy = r0; oy < r1; oy++) {
        const Py_ssize_t iy = oy * g->sh - g->pt;
        const Py_ssize_t i0 = max_z(0, -iy), i1 = min_z(g->kh, g->h - iy);
        const float *xrow = x + (iy - g->row0) * g->w * C;
        float *yrow = y + oy * g->ow * co;
        for (Py_ssize_t ox = 0; ox < g->ow; ox++) {
            const Py_ssize_t ix = ox * g->sw - g->pl;
            if (ox >= ox0 && ox + NP <= ox1 && full) {
                for (Py_ssize_t k = 0; k < full; k += CB)
                    direct_block(g, xrow + ix * C, wt, bias, yrow + ox * co, k, i0, i1, lo, hi, KW, C);
                for (Py_ssize_t p = 0; p < NP && full < co; p++)
                    direct_pixel(g, xrow + (ix + p * g->sw) * C, wt, bias, yrow + (ox + p) * co, full,
                                 i0, i1, 0, KW, lo, hi);
                ox += NP - 1;
                continue;
            }
            direct_pixel(g, xrow + ix * C, wt, bias, yrow + ox * co, 0,
                         i0, i1, max_z(0, -ix), min_z(KW, g->w - ix), lo, hi);
        }
    }
}

/* Output rows [r0, r1) of a direct convolution.  An RGB image through a
 * 3x3 kernel gets its own unrolled loops. */
MULTIVERSION
static void direct_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                        const float *restrict bias, float *restrict y,
                        Py_ssize_t r0, Py_ssize_t r1, float lo, float hi)
{
    if (g->kw == 3 && g->c == 3)
        direct_impl(g, x, wt, bias, y, r0, r1, lo, hi, 3, 3);
    else
        direct_impl(g, x, wt, bias, y, r0, r1, lo, hi, g->kw, g->c);
}

/* Rows [r0, r1), columns [c0, c1) of y (row length ld) plus bias, clipped
 * to [lo, hi]: the epilogue of a GEMM, one pass while y is still in cache. */
MULTIVERSION
static void epilogue(float *restrict y, Py_ssize_t ld, const float *restrict bias,
                     Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1, float lo, float hi)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        float *row = y + r * ld;
        if (bias)
            for (Py_ssize_t k = c0; k < c1; k++) {
                float v = row[k] + bias[k];
                v = v < lo ? lo : v;
                row[k] = v > hi ? hi : v;
            }
        else
            for (Py_ssize_t k = c0; k < c1; k++) {
                float v = row[k] < lo ? lo : row[k];
                row[k] = v > hi ? hi : v;
            }
    }
}

/* ---- dense layers on their stored integers -----------------------------
 *
 * A dense layer at batch 1 is a matrix-vector product: every weight is
 * read once, so its time is the time to stream the weights from memory.
 * Read as stored (int8: a quarter of float32's bytes) and widened in
 * registers, they stream four times faster, and no float32 copy of them is
 * ever made.  y[r, o] = scale[o] * (q[o, :] . x[r, :]) + bias[o].
 */
#define DENSE_Q(NAME, TYPE)                                                                 \
MULTIVERSION                                                                                \
static void NAME(const float *restrict x, Py_ssize_t m, Py_ssize_t k, const TYPE *restrict q, \
                 const float *restrict scales, const float *restrict bias, float *restrict y, \
                 Py_ssize_t n, Py_ssize_t o0, Py_ssize_t o1, float lo, float hi)             \
{                                                                                           \
    for (Py_ssize_t o = o0; o < o1; o++) {                                                  \
        const TYPE *qr = q + o * k;                                                         \
        for (Py_ssize_t r = 0; r < m; r++) {  /* the weight row stays in cache */           \
            const float *xr = x + r * k;                                                    \
            /* 16 partial sums: the compiler keeps them in vector registers */              \
            float part[16] = {0};                                                           \
            Py_ssize_t i = 0;                                                               \
            for (; i + 16 <= k; i += 16)                                                    \
                for (int l = 0; l < 16; l++)                                                \
                    part[l] += (float)qr[i + l] * xr[i + l];                                \
            float acc = 0.0f;                                                               \
            for (int l = 0; l < 16; l++)                                                    \
                acc += part[l];                                                             \
            for (; i < k; i++)                                                              \
                acc += (float)qr[i] * xr[i];                                                \
            float v = acc * scales[o] + (bias ? bias[o] : 0.0f);                            \
            v = v < lo ? lo : v;                                                            \
            y[r * n + o] = v > hi ? hi : v;                                                 \
        }                                                                                   \
    }                                                                                       \
}

DENSE_Q(dense_q8, signed char)
DENSE_Q(dense_q16, short)

/* ---- GEMM through the BLAS numpy uses ----------------------------------
 *
 * cblas_sgemm, found by the Python side in the BLAS library numpy loaded
 * (threads.py).  OpenBLAS builds with 64-bit integers (numpy's wheels)
 * and with 32-bit ones (Debian's) both accept integers passed as long: on
 * 64-bit targets every argument takes a whole register or stack slot and
 * a 32-bit callee reads the low half; 32-bit targets have only 32-bit
 * builds, where long is 32 bits.  The Python side checks the function on
 * a small product before using it.
 */
typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, long m, long n, long k, float alpha,
                         const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);
typedef void (*sgemv_fn)(int order, int trans, long m, long n, float alpha, const float *a, long lda,
                         const float *x, long incx, float beta, float *y, long incy);
static sgemm_fn sgemm;
static sgemv_fn sgemv;  /* one row (batch 1 through a dense layer): GEMM would pack all the weights */

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* Rows [r0, r1) and columns [c0, c1) of y (m, n) = a (m, k) @ b (k, n),
 * then the epilogue. */
static void gemm_block(const float *a, const float *b, float *y, Py_ssize_t k, Py_ssize_t n,
                       Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                       const float *bias, float lo, float hi, int clip)
{
    if (r1 <= r0 || c1 <= c0)
        return;
    if (r1 - r0 == 1 && sgemv)  /* y row = b^T a row */
        sgemv(ROW_MAJOR, TRANS, (long)k, (long)(c1 - c0), 1.0f, b + c0, (long)n,
              a + r0 * k, 1, 0.0f, y + r0 * n + c0, 1);
    else
        sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (long)(r1 - r0), (long)(c1 - c0), (long)k, 1.0f,
              a + r0 * k, (long)k, b + c0, (long)n, 0.0f, y + r0 * n + c0, (long)n);
    if (bias || clip)
        epilogue(y, n, bias, r0, r1, c0, c1, lo, hi);
}

/* ---- a team of threads for one call ------------------------------------
 *
 * Handing work to a Python thread pool costs tens of microseconds (a
 * futex wake-up and the GIL), as much as a small layer takes.  The team's
 * threads wait for the next call spinning for a short while, then asleep;
 * the caller starts on the work at once and every thread takes tasks from
 * a shared counter, so a thread that wakes late costs only its share.
 * BLAS runs single-threaded inside the tasks, so this is the one pool that
 * runs: two pools spinning on the same cores would hold each other up.
 * One call uses the team at a time; a concurrent caller works alone.
 */

enum { JOB_DEPTHWISE, JOB_DIRECT, JOB_EPILOGUE, JOB_GEMM, JOB_DENSE_Q };

/* A job is split into tasks: bands of rows, or (``across``) bands of
 * channels.  A small image with many channels is split across channels:
 * bands of rows would each read kernel-height extra input rows, and a
 * GEMM with few rows is better split by output columns. */
typedef struct {
    int kind, across;
    const geometry *g;          /* depthwise */
    const float *x, *wt, *bias; /* gemm: x is a (m, k), wt is b (k, n) */
    float *y;
    Py_ssize_t r0, r1, tasks, per;
    Py_ssize_t k, n;            /* gemm and epilogue: y has rows of n values */
    float lo, hi;
    int clip;
    const void *q;              /* dense_q: int8 or int16 weights (n, k) and their scales */
    const float *scales;
    int q_bytes;
} job_t;

static void run_task(const job_t *j, Py_ssize_t t)
{
    Py_ssize_t lo = t * j->per, hi = (t + 1) * j->per;
    switch (j->kind) {
    case JOB_DEPTHWISE:
        if (j->across)
            depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0, j->r1,
                           lo, min_z(j->g->c, hi), j->lo, j->hi);
        else
            depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0 + lo, min_z(j->r1, j->r0 + hi),
                           0, j->g->c, j->lo, j->hi);
        break;
    case JOB_DIRECT:
        direct_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0 + lo, min_z(j->r1, j->r0 + hi), j->lo, j->hi);
        break;
    case JOB_EPILOGUE:
        epilogue(j->y, j->n, j->bias, j->r0 + lo, min_z(j->r1, j->r0 + hi), 0, j->n, j->lo, j->hi);
        break;
    case JOB_DENSE_Q:
        if (j->q_bytes == 1)
            dense_q8(j->x, j->r1, j->k, j->q, j->scales, j->bias, j->y, j->n, lo, min_z(j->n, hi), j->lo, j->hi);
        else
            dense_q16(j->x, j->r1, j->k, j->q, j->scales, j->bias, j->y, j->n, lo, min_z(j->n, hi), j->lo, j->hi);
        break;
    case JOB_GEMM:
        if (j->across)
            gemm_block(j->x, j->wt, j->y, j->k, j->n, j->r0, j->r1, lo, min_z(j->n, hi),
                       j->bias, j->lo, j->hi, j->clip);
        else
            gemm_block(j->x, j->wt, j->y, j->k, j->n, j->r0 + lo, min_z(j->r1, j->r0 + hi), 0, j->n,
                       j->bias, j->lo, j->hi, j->clip);
        break;
    }
}

/* Cut a job into about ``tasks`` tasks of ``units`` units (rows, or
 * channels in multiples of ``align``). */
static void split(job_t *j, Py_ssize_t units, Py_ssize_t tasks, Py_ssize_t align)
{
    Py_ssize_t blocks = (units + align - 1) / align;
    tasks = max_z(1, min_z(tasks, blocks));
    j->per = (blocks + tasks - 1) / tasks * align;
    j->tasks = (units + j->per - 1) / j->per;
}

#ifdef TEAM

#define MAX_THREADS 64
/* How long an idle thread waits awake: about the gap between two layers. */
#define SPIN_NS 50000

static struct {
    pthread_mutex_t mu, busy_mu;  /* busy_mu: held by the call using the team */
    pthread_cond_t cv;
    int workers;
    job_t job;
    atomic_uint gen, closed;      /* job number; last job whose caller is done */
    atomic_long next_task;        /* next task of the job to take */
    atomic_int busy, sleepers;    /* threads inside a job; threads asleep */
} team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void take_tasks(const job_t *j)
{
    for (;;) {
        Py_ssize_t t = (Py_ssize_t)atomic_fetch_add(&team.next_task, 1);
        if (t >= j->tasks)
            return;
        run_task(j, t);
    }
}

static void *worker(void *arg)
{
    unsigned seen = atomic_load(&team.gen);
    (void)arg;
    for (;;) {
        long long until = now_ns() + SPIN_NS;
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load(&team.gen)) == seen) {
            relax();
            if (++spins % 64 == 0 && now_ns() > until) {
                pthread_mutex_lock(&team.mu);
                atomic_fetch_add(&team.sleepers, 1);
                while ((gen = atomic_load(&team.gen)) == seen)
                    pthread_cond_wait(&team.cv, &team.mu);
                atomic_fetch_sub(&team.sleepers, 1);
                pthread_mutex_unlock(&team.mu);
                break;
            }
        }
        seen = gen;
        /* Join only while the job is still the current one and open: its
         * caller waits for every thread that counted itself busy before the
         * caller closed the job, and sets no new job until then. */
        atomic_fetch_add(&team.busy, 1);
        if (atomic_load(&team.gen) == gen && atomic_load(&team.closed) != gen)
            take_tasks(&team.job);
        atomic_fetch_sub(&team.busy, 1);
    }
    return NULL;
}

/* After fork() only the calling thread exists in the child. */
static void team_after_fork(void)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    team.mu = mu;
    team.busy_mu = mu;
    team.cv = cv;
    team.workers = 0;
    atomic_store(&team.busy, 0);
    atomic_store(&team.sleepers, 0);
}

/* Grow the team to n - 1 threads (the caller is the n-th); return how
 * many threads a job can use. */
static int team_size(int n)
{
    static int registered;
    if (!registered) {
        pthread_atfork(NULL, NULL, team_after_fork);
        registered = 1;
    }
    n = n > MAX_THREADS ? MAX_THREADS : n;
    while (team.workers < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        team.workers++;
    }
    return min_z(n, team.workers + 1);
}

/* Take the team for one job; 0 when another call has it or one thread
 * is asked for: the caller then runs every task itself. */
static int team_take(int threads)
{
    if (threads < 2 || pthread_mutex_trylock(&team.busy_mu) != 0)
        return 0;
    return team_size(threads);
}

/* Run a job's tasks on the team (the caller included), then give the
 * team back. */
static void team_run(job_t *j)
{
    team.job = *j;
    atomic_store(&team.next_task, 0);
    unsigned gen = atomic_fetch_add(&team.gen, 1) + 1;
    if (atomic_load(&team.sleepers) > 0) {
        pthread_mutex_lock(&team.mu);
        pthread_cond_broadcast(&team.cv);
        pthread_mutex_unlock(&team.mu);
    }
    take_tasks(j);
    atomic_store(&team.closed, gen);
    /* The last tasks are running on other threads.  Yield rather than spin:
     * one of them may be waiting for this very core. */
    while (atomic_load(&team.busy) > 0)
        sched_yield();
    pthread_mutex_unlock(&team.busy_mu);
}

#else

static int team_take(int threads) { (void)threads; return 0; }
static void team_run(job_t *j) { (void)j; }

#endif

/* Run a job's tasks, on the team where it is free and the job is worth
 * sharing, else on the calling thread.  ``split_for(j, threads)`` cuts
 * the job for that many threads. */
static void run(job_t *j, int threads, int worth, void (*split_for)(job_t *, Py_ssize_t))
{
    int n = worth ? team_take(threads) : 0;
    split_for(j, n > 1 ? n : 1);
    if (n > 1) {
        team_run(j);
        return;
    }
    for (Py_ssize_t t = 0; t < j->tasks; t++)
        run_task(j, t);
}

static void split_window(job_t *j, Py_ssize_t threads)
{
    const Py_ssize_t blocks = (j->g->c + CB - 1) / CB;
    if (threads == 1) {
        j->across = 0;
        split(j, j->r1 - j->r0, 1, 1);
    } else if (j->kind == JOB_DIRECT) {
        j->across = 0;
        split(j, j->r1 - j->r0, 2 * threads, 1);
    } else if ((j->across = blocks >= 8 * threads))
        split(j, j->g->c, 2 * threads, CB);
    else
        split(j, j->r1 - j->r0, 2 * threads, 1);
}

static void split_epilogue(job_t *j, Py_ssize_t threads)
{
    split(j, j->r1 - j->r0, threads, 1);
}

/* GEMM tasks: one per thread (each BLAS call packs its share of the
 * weights again), by rows, or by output columns when the rows are few. */
static void split_gemm(job_t *j, Py_ssize_t threads)
{
    Py_ssize_t m = j->r1 - j->r0;
    if ((j->across = threads > 1 && m < 64 * threads && j->n >= 64 * threads))
        split(j, j->n, threads, 16);
    else
        split(j, m, threads, 1);
}

/* Dense tasks: bands of output channels, several per thread. */
static void split_dense(job_t *j, Py_ssize_t threads)
{
    split(j, j->n, 2 * threads, 16);
}

/* Values below which a job is not worth a hand-off. */
#define MIN_SHARED 32768

/* Release the buffers that were taken (the bias may not have been). */
static void release(Py_buffer *a, Py_buffer *b, Py_buffer *c, Py_buffer *d)
{
    Py_buffer *all[] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (all[i] && all[i]->obj)
            PyBuffer_Release(all[i]);
}

/* Whether a * b * c could overflow the index arithmetic. */
static int too_big(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c)
{
    const Py_ssize_t limit = PY_SSIZE_T_MAX / 8;
    return (b && a > limit / b) || (c && a * b > limit / c);
}

static int float_buffer(Py_buffer *b, const char *what, Py_ssize_t need)
{
    if (b->itemsize != 4 || (b->format && strcmp(b->format, "f") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", what);
        return -1;
    }
    if (b->len < need * 4) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd values, %zd needed", what, b->len / 4, need);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(depthwise_doc,
"depthwise(x, weight, bias, out, geometry, r0, r1, lo, hi, threads=1)\n"
"\n"
"Depthwise convolution of one image, output rows [r0, r1) of out.\n"
"\n"
"x: C-contiguous float32 (rows, W, C), input rows [row0, row0 + rows) of\n"
"the image; weight: float32 (KH, KW, C); bias: float32 (C) or None;\n"
"out: writable float32 (OH, OW, C).  geometry: the tuple\n"
"(H, W, C, row0, rows, OH, OW, KH, KW, SH, SW, pad_top, pad_left).\n"
"Outputs are clipped to [lo, hi].  The input rows that rows r0..r1 read\n"
"must be in x.  Runs without the GIL, on up to ``threads`` threads.");

PyDoc_STRVAR(direct_doc,
"direct(x, weight, bias, out, geometry, r0, r1, lo, hi, threads=1)\n"
"\n"
"Convolution of one image with few input channels, as depthwise() but\n"
"with weight (KH, KW, C, Cout), bias (Cout), out (OH, OW, Cout) and\n"
"geometry ending with Cout.");

/* depthwise() and direct(): one window job over the rows of one image. */
static PyObject *window_call(PyObject *args, int kind)
{
    Py_buffer x = {0}, wt = {0}, out = {0}, bias = {0};
    PyObject *bias_obj, *result = NULL;
    geometry g;
    Py_ssize_t r0, r1;
    float lo, hi;
    int threads = 1, ok;
    const char *name = kind == JOB_DIRECT ? "direct" : "depthwise";
    if (kind == JOB_DIRECT)
        ok = PyArg_ParseTuple(args, "y*y*Ow*(nnnnnnnnnnnnnn)nnff|i", &x, &wt, &bias_obj, &out,
                              &g.h, &g.w, &g.c, &g.row0, &g.rows, &g.oh, &g.ow, &g.kh, &g.kw,
                              &g.sh, &g.sw, &g.pt, &g.pl, &g.cout, &r0, &r1, &lo, &hi, &threads);
    else
        ok = PyArg_ParseTuple(args, "y*y*Ow*(nnnnnnnnnnnnn)nnff|i", &x, &wt, &bias_obj, &out,
                              &g.h, &g.w, &g.c, &g.row0, &g.rows, &g.oh, &g.ow, &g.kh, &g.kw,
                              &g.sh, &g.sw, &g.pt, &g.pl, &r0, &r1, &lo, &hi, &threads);
    if (!ok)
        return NULL;
    if (kind != JOB_DIRECT)
        g.cout = g.c;
    const Py_ssize_t wc = kind == JOB_DIRECT ? g.c * g.cout : g.c;  /* weights per tap */
    if (bias_obj != Py_None && PyObject_GetBuffer(bias_obj, &bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (g.h < 1 || g.w < 1 || g.c < 1 || g.cout < 1 || g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1
            || g.oh < 0 || g.ow < 0 || g.rows < 0 || g.pt < 0 || g.pl < 0
            || r0 < 0 || r1 > g.oh || r0 > r1
            || too_big(g.rows, g.w, g.c) || too_big(g.oh, g.ow, g.cout) || too_big(g.c, g.cout, 1)
            || too_big(g.kh, g.kw, wc) || too_big(g.oh, g.sh, 1) || too_big(g.ow, g.sw, 1)) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent geometry", name);
        goto done;
    }
    if (r0 < r1) {
        /* Every input row the requested output rows can read must be held. */
        Py_ssize_t first = max_z(0, r0 * g.sh - g.pt);
        Py_ssize_t last = min_z(g.h, (r1 - 1) * g.sh - g.pt + g.kh);
        if (first < g.row0 || last > g.row0 + g.rows) {
            PyErr_Format(PyExc_ValueError, "%s: input rows out of range", name);
            goto done;
        }
    }
    if (float_buffer(&x, "x", g.rows * g.w * g.c) < 0
            || float_buffer(&wt, "weight", g.kh * g.kw * wc) < 0
            || float_buffer(&out, "out", g.oh * g.ow * g.cout) < 0
            || (bias.buf && float_buffer(&bias, "bias", g.cout) < 0))
        goto done;
    job_t j = {kind, 0, &g, x.buf, wt.buf, bias.buf, out.buf, r0, r1};
    j.lo = lo;
    j.hi = hi;
    Py_BEGIN_ALLOW_THREADS
    run(&j, threads, r1 > r0, split_window);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&x, &wt, &out, &bias);
    return result;
}

static PyObject *depthwise(PyObject *self, PyObject *args)
{
    return window_call(args, JOB_DEPTHWISE);
}

static PyObject *direct(PyObject *self, PyObject *args)
{
    return window_call(args, JOB_DIRECT);
}

PyDoc_STRVAR(bias_act_doc,
"bias_act(y, n, bias, lo, hi, threads=1)\n"
"\n"
"In place: every row of n values of the C-contiguous float32 buffer y\n"
"plus bias (float32, n values, or None), clipped to [lo, hi].  Runs\n"
"without the GIL, on up to ``threads`` threads.");

static PyObject *bias_act(PyObject *self, PyObject *args)
{
    Py_buffer y = {0}, bias = {0};
    PyObject *bias_obj, *result = NULL;
    Py_ssize_t n;
    float lo, hi;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "w*nOff|i", &y, &n, &bias_obj, &lo, &hi, &threads))
        return NULL;
    if (bias_obj != Py_None && PyObject_GetBuffer(bias_obj, &bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (n < 1 || y.len % (4 * n) != 0) {
        PyErr_SetString(PyExc_ValueError, "bias_act: y is not whole rows of n values");
        goto done;
    }
    if (float_buffer(&y, "y", 0) < 0 || (bias.buf && float_buffer(&bias, "bias", n) < 0))
        goto done;
    job_t j = {JOB_EPILOGUE, 0, NULL, NULL, NULL, bias.buf, y.buf, 0, y.len / 4 / n};
    j.n = n;
    j.lo = lo;
    j.hi = hi;
    Py_BEGIN_ALLOW_THREADS
    run(&j, threads, y.len / 4 >= MIN_SHARED, split_epilogue);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&y, &bias, NULL, NULL);
    return result;
}

PyDoc_STRVAR(use_blas_doc,
"use_blas(sgemm, sgemv)\n"
"\n"
"Use the cblas_sgemm and cblas_sgemv functions at these addresses (ints;\n"
"0 to forget one) for gemm().");

static PyObject *use_blas(PyObject *self, PyObject *args)
{
    unsigned long long gemm_address, gemv_address;
    if (!PyArg_ParseTuple(args, "KK", &gemm_address, &gemv_address))
        return NULL;
    sgemm = (sgemm_fn)(uintptr_t)gemm_address;
    sgemv = (sgemv_fn)(uintptr_t)gemv_address;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gemm_doc,
"gemm(a, b, y, m, k, n, bias, lo, hi, threads=1)\n"
"\n"
"y (m, n) = a (m, k) @ b (k, n) + bias, clipped to [lo, hi]; all\n"
"C-contiguous float32, bias (n values) may be None.  Runs without the\n"
"GIL, on up to ``threads`` threads, BLAS single-threaded in each.");

static PyObject *gemm(PyObject *self, PyObject *args)
{
    Py_buffer a = {0}, b = {0}, y = {0}, bias = {0};
    PyObject *bias_obj, *result = NULL;
    Py_ssize_t m, k, n;
    float lo, hi;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnOff|i", &a, &b, &y, &m, &k, &n, &bias_obj, &lo, &hi, &threads))
        return NULL;
    if (bias_obj != Py_None && PyObject_GetBuffer(bias_obj, &bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (!sgemm) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: no BLAS function given (use_blas)");
        goto done;
    }
    if (m < 0 || k < 1 || n < 1 || too_big(m, k, 1) || too_big(k, n, 1) || too_big(m, n, 1)
            || m > 0x7fffffff || k > 0x7fffffff || n > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "gemm: bad sizes");
        goto done;
    }
    if (float_buffer(&a, "a", m * k) < 0 || float_buffer(&b, "b", k * n) < 0
            || float_buffer(&y, "y", m * n) < 0 || (bias.buf && float_buffer(&bias, "bias", n) < 0))
        goto done;
    job_t j = {JOB_GEMM, 0, NULL, a.buf, b.buf, bias.buf, y.buf, 0, m};
    j.k = k;
    j.n = n;
    j.lo = lo;
    j.hi = hi;
    j.clip = lo > -HUGE_VALF || hi < HUGE_VALF;
    Py_BEGIN_ALLOW_THREADS
    run(&j, threads, m * n * k >= 64 * MIN_SHARED, split_gemm);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&a, &b, &y, &bias);
    return result;
}

PyDoc_STRVAR(dense_q_doc,
"dense_q(x, q, scales, bias, y, m, k, n, lo, hi, threads=1)\n"
"\n"
"y (m, n) = x (m, k) @ (q * scales[:, None]).T + bias, clipped to\n"
"[lo, hi], for integer weights q (n, k) (int8 or int16) and their float32\n"
"per-row scales, read as stored.  x, y float32; bias (n) may be None.\n"
"All C-contiguous.  Runs without the GIL, on up to ``threads`` threads.");

static PyObject *dense_q(PyObject *self, PyObject *args)
{
    Py_buffer x = {0}, q = {0}, scales = {0}, y = {0}, bias = {0};
    PyObject *bias_obj, *result = NULL;
    Py_ssize_t m, k, n;
    float lo, hi;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*y*Ow*nnnff|i", &x, &q, &scales, &bias_obj, &y, &m, &k, &n,
                          &lo, &hi, &threads))
        return NULL;
    if (bias_obj != Py_None && PyObject_GetBuffer(bias_obj, &bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (m < 0 || k < 1 || n < 1 || too_big(m, k, 1) || too_big(n, k, 1) || too_big(m, n, 1)) {
        PyErr_SetString(PyExc_ValueError, "dense_q: bad sizes");
        goto done;
    }
    if (q.itemsize != 1 && q.itemsize != 2) {
        PyErr_SetString(PyExc_TypeError, "dense_q: weights must be int8 or int16");
        goto done;
    }
    if (q.len < n * k * q.itemsize) {
        PyErr_Format(PyExc_ValueError, "q holds %zd values, %zd needed", q.len / q.itemsize, n * k);
        goto done;
    }
    if (float_buffer(&x, "x", m * k) < 0 || float_buffer(&scales, "scales", n) < 0
            || float_buffer(&y, "y", m * n) < 0 || (bias.buf && float_buffer(&bias, "bias", n) < 0))
        goto done;
    job_t j = {JOB_DENSE_Q, 0, NULL, x.buf, NULL, bias.buf, y.buf, 0, m};
    j.k = k;
    j.n = n;
    j.lo = lo;
    j.hi = hi;
    j.q = q.buf;
    j.scales = scales.buf;
    j.q_bytes = (int)q.itemsize;
    Py_BEGIN_ALLOW_THREADS
    run(&j, threads, n * k >= MIN_SHARED, split_dense);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&x, &q, &scales, &y);
    release(&bias, NULL, NULL, NULL);
    return result;
}

static PyMethodDef methods[] = {
    {"depthwise", depthwise, METH_VARARGS, depthwise_doc},
    {"direct", direct, METH_VARARGS, direct_doc},
    {"bias_act", bias_act, METH_VARARGS, bias_act_doc},
    {"gemm", gemm, METH_VARARGS, gemm_doc},
    {"dense_q", dense_q, METH_VARARGS, dense_q_doc},
    {"use_blas", use_blas, METH_VARARGS, use_blas_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Compiled kernels of the CPU backend.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
