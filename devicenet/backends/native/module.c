/* The Python functions of devicenet.backends._native: arguments checked
 * (sizes, types, bounds) before any kernel reads a byte, then the work done
 * without the GIL. */
#include "native.h"

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
    job_t j = {.kind = kind, .g = &g, .x = x.buf, .wt = wt.buf, .bias = bias.buf, .y = out.buf,
               .r0 = r0, .r1 = r1, .lo = lo, .hi = hi};
    Py_BEGIN_ALLOW_THREADS
    dn_run(&j, threads, r1 > r0, dn_split_window);
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
    job_t j = {.kind = JOB_EPILOGUE, .bias = bias.buf, .y = y.buf, .r1 = y.len / 4 / n, .n = n,
               .lo = lo, .hi = hi};
    Py_BEGIN_ALLOW_THREADS
    dn_run(&j, threads, y.len / 4 >= MIN_SHARED, dn_split_epilogue);
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
    dn_use_blas((void *)(uintptr_t)gemm_address, (void *)(uintptr_t)gemv_address);
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
    if (!dn_have_blas()) {
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
    job_t j = {.kind = JOB_GEMM, .x = a.buf, .wt = b.buf, .bias = bias.buf, .y = y.buf, .r1 = m,
               .k = k, .n = n, .lo = lo, .hi = hi, .clip = lo > -HUGE_VALF || hi < HUGE_VALF};
    Py_BEGIN_ALLOW_THREADS
    dn_run(&j, threads, m * n * k >= 64 * MIN_SHARED, dn_split_gemm);
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
    job_t j = {.kind = JOB_DENSE_Q, .x = x.buf, .bias = bias.buf, .y = y.buf, .r1 = m, .k = k, .n = n,
               .lo = lo, .hi = hi, .q = q.buf, .scales = scales.buf, .q_bytes = (int)q.itemsize};
    Py_BEGIN_ALLOW_THREADS
    dn_run(&j, threads, n * k >= MIN_SHARED, dn_split_dense);
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
    PyModuleDef_HEAD_INIT, .m_name = "_native", .m_doc = "Compiled kernels of the CPU backend.",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
