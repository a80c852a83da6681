/* The compiled kernels of the CPU backend: what they share.
 *
 * numpy cannot do these in a few fast calls:
 *   window.c  depthwise convolution, and direct convolution for layers of
 *             few input channels (a network's first), summing every output
 *             pixel in registers;
 *   dense.c   GEMMs through the BLAS numpy itself uses, with bias and
 *             activation added while the output is in cache, and dense
 *             layers computed straight from their stored int8/int16 weights;
 *   team.c    a team of threads that splits each call into tasks;
 *   module.c  the Python functions (module devicenet.backends._native).
 *
 * The module is optional: setup.py builds it where a C compiler exists and
 * the backend uses numpy where it does not (cpu_kernels.py).  It reads
 * arrays through the buffer protocol only, so it does not depend on numpy's
 * headers or version, and it works with the GIL released.
 */
#ifndef DEVICENET_NATIVE_H
#define DEVICENET_NATIVE_H

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

/* Values below which a job is not worth handing to other threads. */
#define MIN_SHARED 32768

/* ---- kernels (window.c, dense.c) --------------------------------------- */

void dn_depthwise_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                       const float *restrict bias, float *restrict y,
                       Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t k0, Py_ssize_t k1, float lo, float hi);
void dn_direct_rows(const geometry *g, const float *restrict x, const float *restrict wt,
                    const float *restrict bias, float *restrict y,
                    Py_ssize_t r0, Py_ssize_t r1, float lo, float hi);
void dn_epilogue(float *restrict y, Py_ssize_t ld, const float *restrict bias,
                 Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1, float lo, float hi);
void dn_dense_q8(const float *restrict x, Py_ssize_t m, Py_ssize_t k, const signed char *restrict q,
                 const float *restrict scales, const float *restrict bias, float *restrict y,
                 Py_ssize_t n, Py_ssize_t o0, Py_ssize_t o1, float lo, float hi);
void dn_dense_q16(const float *restrict x, Py_ssize_t m, Py_ssize_t k, const short *restrict q,
                  const float *restrict scales, const float *restrict bias, float *restrict y,
                  Py_ssize_t n, Py_ssize_t o0, Py_ssize_t o1, float lo, float hi);
void dn_add(const float *a, const float *b, float *y, Py_ssize_t i0, Py_ssize_t i1,
            float lo, float hi);
void dn_mean_pool(const float *restrict x, float *restrict y, Py_ssize_t images, Py_ssize_t hw, Py_ssize_t c);
void dn_use_blas(void *sgemm, void *sgemv);
int dn_have_blas(void);
void dn_gemm_block(const float *a, const float *b, float *y, Py_ssize_t k, Py_ssize_t n,
                   Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                   const float *bias, float lo, float hi, int clip);

/* ---- jobs for the team (team.c) ---------------------------------------- */

enum { JOB_DEPTHWISE, JOB_DIRECT, JOB_EPILOGUE, JOB_GEMM, JOB_DENSE_Q, JOB_ADD, JOB_MEAN_POOL };

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

/* Run a job's tasks: on the team where it is free and the job is ``worth``
 * sharing, else on the calling thread.  ``split_for(j, threads)`` cuts the
 * job into tasks for that many threads. */
void dn_run(job_t *j, int threads, int worth, void (*split_for)(job_t *, Py_ssize_t));
void dn_split_window(job_t *j, Py_ssize_t threads);
void dn_split_epilogue(job_t *j, Py_ssize_t threads);
void dn_split_gemm(job_t *j, Py_ssize_t threads);
void dn_split_dense(job_t *j, Py_ssize_t threads);

#endif
