/* GEMM through the BLAS numpy itself uses, with bias and activation added
 * while the output is in cache: the gemm op's "blas" variant.
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
#include "native.h"

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, long m, long n, long k, float alpha,
                         const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);
typedef void (*sgemv_fn)(int order, int trans, long m, long n, float alpha, const float *a, long lda,
                         const float *x, long incx, float beta, float *y, long incy);
static sgemm_fn sgemm;
static sgemv_fn sgemv;  /* one row (batch 1 through a dense layer): GEMM would pack all the weights */

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* Rows [r0, r1) and columns [c0, c1) of y (m, n) = a (m, k) @ b (k, n),
 * then the output stage (the selected bias_act variant). */
void dn_f32_gemm_blas(const dn_gemm_args *g, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1)
{
    const ptrdiff_t k = g->k, n = g->n;
    if (r1 <= r0 || c1 <= c0)
        return;
    if (r1 - r0 == 1 && sgemv)  /* y row = b^T a row */
        sgemv(ROW_MAJOR, TRANS, (long)k, (long)(c1 - c0), 1.0f, g->b + c0, (long)n,
              g->a + r0 * k, 1, 0.0f, g->y + r0 * n + c0, 1);
    else
        sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (long)(r1 - r0), (long)(c1 - c0), (long)k, 1.0f,
              g->a + r0 * k, (long)k, g->b + c0, (long)n, 0.0f, g->y + r0 * n + c0, (long)n);
    if (g->bias || g->lo > -HUGE_VALF || g->hi < HUGE_VALF || g->curve >= 0)
        DN_KERNEL(DN_OP_BIAS_ACT, dn_bias_act_fn)(g->y, n, g->bias, r0, r1, c0, c1, g->lo, g->hi,
                                                  (int)g->curve);
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
