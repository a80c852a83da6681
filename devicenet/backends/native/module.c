/* The Python functions of devicenet.backends._native: arguments checked
 * (sizes, types, bounds) before any kernel reads a byte, then the work done
 * without the GIL. */
#include "native.h"

/* One call of a kernel, its arguments checked: the job, the geometry it
 * points to, and the buffers it reads and writes (held until released). */
typedef struct {
    job_t job;
    geometry g;
    Py_buffer buf[5];
    int worth;                              /* big enough to share among threads */
    void (*split)(job_t *, Py_ssize_t);
    int threads;
} step_t;

/* Parse a kernel's Python arguments into a step; -1 with an exception set
 * (and nothing held) when they do not check out. */
typedef int (*parser)(PyObject *args, step_t *s);

static void release(step_t *s)
{
    for (int i = 0; i < 5; i++)
        if (s->buf[i].obj)
            PyBuffer_Release(&s->buf[i]);
}

static int optional_buffer(PyObject *obj, Py_buffer *b)
{
    return obj == Py_None ? 0 : PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
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
static int parse_window(PyObject *args, step_t *s, int kind)
{
    Py_buffer *x = &s->buf[0], *wt = &s->buf[1], *out = &s->buf[2], *bias = &s->buf[3];
    PyObject *bias_obj;
    geometry *g = &s->g;
    Py_ssize_t r0, r1;
    float lo, hi;
    int ok;
    const char *name = kind == JOB_DIRECT ? "direct" : "depthwise";
    s->threads = 1;
    if (kind == JOB_DIRECT)
        ok = PyArg_ParseTuple(args, "y*y*Ow*(nnnnnnnnnnnnnn)nnff|i", x, wt, &bias_obj, out,
                              &g->h, &g->w, &g->c, &g->row0, &g->rows, &g->oh, &g->ow, &g->kh, &g->kw,
                              &g->sh, &g->sw, &g->pt, &g->pl, &g->cout, &r0, &r1, &lo, &hi, &s->threads);
    else
        ok = PyArg_ParseTuple(args, "y*y*Ow*(nnnnnnnnnnnnn)nnff|i", x, wt, &bias_obj, out,
                              &g->h, &g->w, &g->c, &g->row0, &g->rows, &g->oh, &g->ow, &g->kh, &g->kw,
                              &g->sh, &g->sw, &g->pt, &g->pl, &r0, &r1, &lo, &hi, &s->threads);
    if (!ok)
        return -1;
    if (kind != JOB_DIRECT)
        g->cout = g->c;
    const Py_ssize_t wc = kind == JOB_DIRECT ? g->c * g->cout : g->c;  /* weights per tap */
    if (optional_buffer(bias_obj, bias) < 0)
        return -1;
    if (g->h < 1 || g->w < 1 || g->c < 1 || g->cout < 1 || g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1
            || g->oh < 0 || g->ow < 0 || g->rows < 0 || g->pt < 0 || g->pl < 0
            || r0 < 0 || r1 > g->oh || r0 > r1
            || too_big(g->rows, g->w, g->c) || too_big(g->oh, g->ow, g->cout) || too_big(g->c, g->cout, 1)
            || too_big(g->kh, g->kw, wc) || too_big(g->oh, g->sh, 1) || too_big(g->ow, g->sw, 1)) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent geometry", name);
        return -1;
    }
    if (r0 < r1) {
        /* Every input row the requested output rows can read must be held. */
        Py_ssize_t first = max_z(0, r0 * g->sh - g->pt);
        Py_ssize_t last = min_z(g->h, (r1 - 1) * g->sh - g->pt + g->kh);
        if (first < g->row0 || last > g->row0 + g->rows) {
            PyErr_Format(PyExc_ValueError, "%s: input rows out of range", name);
            return -1;
        }
    }
    if (float_buffer(x, "x", g->rows * g->w * g->c) < 0
            || float_buffer(wt, "weight", g->kh * g->kw * wc) < 0
            || float_buffer(out, "out", g->oh * g->ow * g->cout) < 0
            || (bias->buf && float_buffer(bias, "bias", g->cout) < 0))
        return -1;
    s->job = (job_t){.kind = kind, .g = g, .x = x->buf, .wt = wt->buf, .bias = bias->buf, .y = out->buf,
                     .r0 = r0, .r1 = r1, .lo = lo, .hi = hi};
    s->worth = r1 > r0;
    s->split = dn_split_window;
    return 0;
}

static int parse_depthwise(PyObject *args, step_t *s)
{
    return parse_window(args, s, JOB_DEPTHWISE);
}

static int parse_direct(PyObject *args, step_t *s)
{
    return parse_window(args, s, JOB_DIRECT);
}

PyDoc_STRVAR(bias_act_doc,
"bias_act(y, n, bias, lo, hi, threads=1)\n"
"\n"
"In place: every row of n values of the C-contiguous float32 buffer y\n"
"plus bias (float32, n values, or None), clipped to [lo, hi].  Runs\n"
"without the GIL, on up to ``threads`` threads.");

static int parse_bias_act(PyObject *args, step_t *s)
{
    Py_buffer *y = &s->buf[0], *bias = &s->buf[1];
    PyObject *bias_obj;
    Py_ssize_t n;
    float lo, hi;
    s->threads = 1;
    if (!PyArg_ParseTuple(args, "w*nOff|i", y, &n, &bias_obj, &lo, &hi, &s->threads)
            || optional_buffer(bias_obj, bias) < 0)
        return -1;
    if (n < 1 || y->len % (4 * n) != 0) {
        PyErr_SetString(PyExc_ValueError, "bias_act: y is not whole rows of n values");
        return -1;
    }
    if (float_buffer(y, "y", 0) < 0 || (bias->buf && float_buffer(bias, "bias", n) < 0))
        return -1;
    s->job = (job_t){.kind = JOB_EPILOGUE, .bias = bias->buf, .y = y->buf, .r1 = y->len / 4 / n, .n = n,
                     .lo = lo, .hi = hi};
    s->worth = y->len / 4 >= MIN_SHARED;
    s->split = dn_split_epilogue;
    return 0;
}

PyDoc_STRVAR(add_doc,
"add(a, b, y, lo, hi, threads=1)\n"
"\n"
"y = a + b, clipped to [lo, hi]: float32 buffers of one size (y may be a\n"
"or b).  Runs without the GIL, on up to ``threads`` threads.");

static int parse_add(PyObject *args, step_t *s)
{
    Py_buffer *a = &s->buf[0], *b = &s->buf[1], *y = &s->buf[2];
    float lo, hi;
    s->threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*w*ff|i", a, b, y, &lo, &hi, &s->threads))
        return -1;
    const Py_ssize_t n = y->len / 4;
    if (float_buffer(y, "y", 0) < 0 || float_buffer(a, "a", n) < 0 || float_buffer(b, "b", n) < 0)
        return -1;
    s->job = (job_t){.kind = JOB_ADD, .x = a->buf, .wt = b->buf, .y = y->buf, .r1 = n, .lo = lo, .hi = hi};
    s->worth = n >= MIN_SHARED;
    s->split = dn_split_epilogue;
    return 0;
}

PyDoc_STRVAR(mean_pool_doc,
"mean_pool(x, y, n, hw, c)\n"
"\n"
"y (n, c) = the mean over the hw pixels of x (n, hw, c), float32.");

static int parse_mean_pool(PyObject *args, step_t *s)
{
    Py_buffer *x = &s->buf[0], *y = &s->buf[1];
    Py_ssize_t n, hw, c;
    s->threads = 1;
    if (!PyArg_ParseTuple(args, "y*w*nnn|i", x, y, &n, &hw, &c, &s->threads))
        return -1;
    if (n < 0 || hw < 1 || c < 1 || too_big(n, hw, c)) {
        PyErr_SetString(PyExc_ValueError, "mean_pool: bad sizes");
        return -1;
    }
    if (float_buffer(x, "x", n * hw * c) < 0 || float_buffer(y, "y", n * c) < 0)
        return -1;
    s->job = (job_t){.kind = JOB_MEAN_POOL, .x = x->buf, .y = y->buf, .r1 = n, .k = hw, .n = c};
    s->worth = 0;
    s->split = dn_split_epilogue;
    return 0;
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

static int parse_gemm(PyObject *args, step_t *s)
{
    Py_buffer *a = &s->buf[0], *b = &s->buf[1], *y = &s->buf[2], *bias = &s->buf[3];
    PyObject *bias_obj;
    Py_ssize_t m, k, n;
    float lo, hi;
    s->threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnOff|i", a, b, y, &m, &k, &n, &bias_obj, &lo, &hi, &s->threads)
            || optional_buffer(bias_obj, bias) < 0)
        return -1;
    if (!dn_have_blas()) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: no BLAS function given (use_blas)");
        return -1;
    }
    if (m < 0 || k < 1 || n < 1 || too_big(m, k, 1) || too_big(k, n, 1) || too_big(m, n, 1)
            || m > 0x7fffffff || k > 0x7fffffff || n > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "gemm: bad sizes");
        return -1;
    }
    if (float_buffer(a, "a", m * k) < 0 || float_buffer(b, "b", k * n) < 0
            || float_buffer(y, "y", m * n) < 0 || (bias->buf && float_buffer(bias, "bias", n) < 0))
        return -1;
    s->job = (job_t){.kind = JOB_GEMM, .x = a->buf, .wt = b->buf, .bias = bias->buf, .y = y->buf, .r1 = m,
                     .k = k, .n = n, .lo = lo, .hi = hi, .clip = lo > -HUGE_VALF || hi < HUGE_VALF};
    s->worth = m * n * k >= 64 * MIN_SHARED;
    s->split = dn_split_gemm;
    return 0;
}

PyDoc_STRVAR(dense_q_doc,
"dense_q(x, q, scales, bias, y, m, k, n, lo, hi, threads=1)\n"
"\n"
"y (m, n) = x (m, k) @ (q * scales[:, None]).T + bias, clipped to\n"
"[lo, hi], for integer weights q (n, k) (int8 or int16) and their float32\n"
"per-row scales, read as stored.  x, y float32; bias (n) may be None.\n"
"All C-contiguous.  Runs without the GIL, on up to ``threads`` threads.");

static int parse_dense_q(PyObject *args, step_t *s)
{
    Py_buffer *x = &s->buf[0], *q = &s->buf[1], *scales = &s->buf[2], *y = &s->buf[3], *bias = &s->buf[4];
    PyObject *bias_obj;
    Py_ssize_t m, k, n;
    float lo, hi;
    s->threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*y*Ow*nnnff|i", x, q, scales, &bias_obj, y, &m, &k, &n,
                          &lo, &hi, &s->threads)
            || optional_buffer(bias_obj, bias) < 0)
        return -1;
    if (m < 0 || k < 1 || n < 1 || too_big(m, k, 1) || too_big(n, k, 1) || too_big(m, n, 1)) {
        PyErr_SetString(PyExc_ValueError, "dense_q: bad sizes");
        return -1;
    }
    if (q->itemsize != 1 && q->itemsize != 2) {
        PyErr_SetString(PyExc_TypeError, "dense_q: weights must be int8 or int16");
        return -1;
    }
    if (q->len < n * k * q->itemsize) {
        PyErr_Format(PyExc_ValueError, "q holds %zd values, %zd needed", q->len / q->itemsize, n * k);
        return -1;
    }
    if (float_buffer(x, "x", m * k) < 0 || float_buffer(scales, "scales", n) < 0
            || float_buffer(y, "y", m * n) < 0 || (bias->buf && float_buffer(bias, "bias", n) < 0))
        return -1;
    s->job = (job_t){.kind = JOB_DENSE_Q, .x = x->buf, .bias = bias->buf, .y = y->buf, .r1 = m, .k = k,
                     .n = n, .lo = lo, .hi = hi, .q = q->buf, .scales = scales->buf,
                     .q_bytes = (int)q->itemsize};
    s->worth = n * k >= MIN_SHARED;
    s->split = dn_split_dense;
    return 0;
}

/* ---- the Python functions: one call, or a program of calls ------------- */

static void run_step(step_t *s, int threads)
{
    dn_run(&s->job, threads, s->worth, s->split);
}

static PyObject *call(PyObject *args, parser parse)
{
    step_t s;
    memset(&s, 0, sizeof s);
    if (parse(args, &s) < 0) {
        release(&s);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    run_step(&s, s.threads);
    Py_END_ALLOW_THREADS
    release(&s);
    Py_RETURN_NONE;
}

#define KERNEL(NAME)                                                  \
    static PyObject *NAME(PyObject *self, PyObject *args)             \
    {                                                                 \
        return call(args, parse_##NAME);                              \
    }
KERNEL(depthwise)
KERNEL(direct)
KERNEL(bias_act)
KERNEL(add)
KERNEL(mean_pool)
KERNEL(gemm)
KERNEL(dense_q)

static const struct {
    const char *name;
    parser parse;
} PARSERS[] = {
    {"depthwise", parse_depthwise}, {"direct", parse_direct}, {"bias_act", parse_bias_act},
    {"add", parse_add}, {"mean_pool", parse_mean_pool}, {"gemm", parse_gemm}, {"dense_q", parse_dense_q},
};

typedef struct {
    Py_ssize_t count;
    step_t steps[];
} program_t;

static void free_program(PyObject *capsule)
{
    program_t *p = PyCapsule_GetPointer(capsule, "devicenet.program");
    if (!p)
        return;
    for (Py_ssize_t i = 0; i < p->count; i++)
        release(&p->steps[i]);
    PyMem_Free(p);
}

PyDoc_STRVAR(program_doc,
"program(calls)\n"
"\n"
"A program: calls, a sequence of (name, args) where name is one of this\n"
"module's kernels and args its arguments, each checked now and its\n"
"buffers held.  run_program() then runs them all in order without\n"
"returning to Python between them.");

static PyObject *program(PyObject *self, PyObject *args)
{
    PyObject *calls, *seq;
    if (!PyArg_ParseTuple(args, "O", &calls) || !(seq = PySequence_Fast(calls, "program: calls must be a sequence")))
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    program_t *p = PyMem_Calloc(1, sizeof(program_t) + (size_t)count * sizeof(step_t));
    if (!p) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *capsule = PyCapsule_New(p, "devicenet.program", free_program);
    if (!capsule) {
        PyMem_Free(p);
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *call_args;
        const char *name;
        if (!PyArg_ParseTuple(item, "sO!", &name, &PyTuple_Type, &call_args))
            goto fail;
        parser parse = NULL;
        for (size_t k = 0; k < sizeof PARSERS / sizeof PARSERS[0]; k++)
            if (!strcmp(PARSERS[k].name, name))
                parse = PARSERS[k].parse;
        if (!parse) {
            PyErr_Format(PyExc_ValueError, "program: no kernel %s", name);
            goto fail;
        }
        step_t *s = &p->steps[p->count];
        if (parse(call_args, s) < 0) {
            release(s);
            goto fail;
        }
        p->count++;
    }
    Py_DECREF(seq);
    return capsule;
fail:
    Py_DECREF(seq);
    Py_DECREF(capsule);  /* releases the steps parsed so far */
    return NULL;
}

PyDoc_STRVAR(run_program_doc,
"run_program(program, threads=1)\n"
"\n"
"Run a program's calls in order, without the GIL, on up to ``threads``\n"
"threads.");

static PyObject *run_program(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "O|i", &capsule, &threads))
        return NULL;
    program_t *p = PyCapsule_GetPointer(capsule, "devicenet.program");
    if (!p)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < p->count; i++)
        run_step(&p->steps[i], threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"depthwise", depthwise, METH_VARARGS, depthwise_doc},
    {"direct", direct, METH_VARARGS, direct_doc},
    {"bias_act", bias_act, METH_VARARGS, bias_act_doc},
    {"add", add, METH_VARARGS, add_doc},
    {"mean_pool", mean_pool, METH_VARARGS, mean_pool_doc},
    {"gemm", gemm, METH_VARARGS, gemm_doc},
    {"dense_q", dense_q, METH_VARARGS, dense_q_doc},
    {"use_blas", use_blas, METH_VARARGS, use_blas_doc},
    {"program", program, METH_VARARGS, program_doc},
    {"run_program", run_program, METH_VARARGS, run_program_doc},
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
