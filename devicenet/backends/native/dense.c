/* Dense kernels: GEMMs through numpy's own BLAS with their epilogue, and
 * dense layers on their stored integers. */
#include "native.h"

/* Rows [r0, r1), columns [c0, c1) of y (row length ld) plus bias, clipped
 * to [lo, hi]: the epilogue of a GEMM, one pass while y is still in cache. */
MULTIVERSION
void dn_epilogue(float *restrict y, Py_ssize_t ld, const float *restrict bias,
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

/* ---- GEMM through the BLAS numpy uses ----------------------------------
 *
 * cblas_sgemm, found by the Python side in the BLAS library numpy loaded
 * (threads.py).  OpenBLAS builds with 64-bit integers (numpy's wheels)
 * and with 32-bit ones (Debian's) both accept integers passed as long: in
 * the Linux calling conventions of 64-bit targets (x86-64, AArch64) every
 * argument takes a whole register or 8-byte stack slot and a 32-bit
 * callee reads the low half; 32-bit targets have only 32-bit builds, where
 * long is 32 bits.  The Python side uses this on Linux only, and checks
 * the functions on small products first.
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
void dn_gemm_block(const float *a, const float *b, float *y, Py_ssize_t k, Py_ssize_t n,
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
        dn_epilogue(y, n, bias, r0, r1, c0, c1, lo, hi);
}

void dn_use_blas(void *gemm, void *gemv)
{
    sgemm = (sgemm_fn)gemm;
    sgemv = (sgemv_fn)gemv;
}

int dn_have_blas(void)
{
    return sgemm != NULL;
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
void NAME(const float *restrict x, Py_ssize_t m, Py_ssize_t k, const TYPE *restrict q, \
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

DENSE_Q(dn_dense_q8, signed char)
DENSE_Q(dn_dense_q16, short)

/* y[i] = a[i] + b[i] for i in [i0, i1), clipped to [lo, hi]: a residual
 * connection.  y may be a or b. */
MULTIVERSION
void dn_add(const float *a, const float *b, float *y, Py_ssize_t i0, Py_ssize_t i1,
            float lo, float hi)
{
    for (Py_ssize_t i = i0; i < i1; i++) {
        float v = a[i] + b[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

/* y (images, c) = the mean over hw pixels of x (images, hw, c). */
void dn_mean_pool(const float *restrict x, float *restrict y, Py_ssize_t images, Py_ssize_t hw, Py_ssize_t c)
{
    for (Py_ssize_t n = 0; n < images; n++) {
        float *yn = y + n * c;
        const float *xn = x + n * hw * c;
        for (Py_ssize_t k = 0; k < c; k++)
            yn[k] = 0.0f;
        for (Py_ssize_t p = 0; p < hw; p++)
            for (Py_ssize_t k = 0; k < c; k++)
                yn[k] += xn[p * c + k];
        for (Py_ssize_t k = 0; k < c; k++)
            yn[k] /= (float)hw;
    }
}
