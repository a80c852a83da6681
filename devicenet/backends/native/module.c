/* The Python module devicenet.backends._native: one function per op of
 * ops.c (keyword arguments only, checked before any kernel reads a byte,
 * the work done without the GIL), programs of calls, and the registry's
 * variants. */
#include "ops.h"

#include <time.h>

Py_buffer *dn_step_buffer(step_t *s, const char *name)
{
    int slot = 0;
    for (const dn_arg *a = s->op->args; a->name; a++) {
        if (a->kind == ARG_SIZE || a->kind == ARG_FLOAT)
            continue;
        if (!strcmp(a->name, name))
            return &s->buf[slot];
        slot++;
    }
    Py_UNREACHABLE();
}

static void release(step_t *s)
{
    for (int i = 0; i < MAX_BUFFERS; i++)
        if (s->buf[i].obj)
            PyBuffer_Release(&s->buf[i]);
}

static const dn_opdef *find_op(const char *name)
{
    for (const dn_opdef *op = dn_opdefs; op->name; op++)
        if (!strcmp(op->name, name))
            return op;
    PyErr_Format(PyExc_ValueError, "no kernel %s", name);
    return NULL;
}

/* Fill one argument of the op's struct from its Python value. */
static int fill(step_t *s, const dn_arg *a, PyObject *value, Py_buffer *buf)
{
    char *field = (char *)&s->args + a->offset;
    if (a->kind == ARG_SIZE) {
        Py_ssize_t v = value ? PyLong_AsSsize_t(value) : (Py_ssize_t)a->fallback;
        ptrdiff_t p = (ptrdiff_t)v;
        if (v == -1 && PyErr_Occurred())
            return -1;
        memcpy(field, &p, sizeof p);
        return 0;
    }
    if (a->kind == ARG_FLOAT) {
        float f = (float)(value ? PyFloat_AsDouble(value) : a->fallback);
        if (f == -1.0f && PyErr_Occurred())
            return -1;
        memcpy(field, &f, sizeof f);
        return 0;
    }
    void *p = NULL;
    if (value && value != Py_None) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (a->kind == ARG_OUT ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(value, buf, flags) < 0)
            return -1;
        p = buf->buf;
    } else if (a->kind != ARG_OPT && a->kind != ARG_OPT_INTS) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a buffer", s->op->name, a->name);
        return -1;
    }
    memcpy(field, &p, sizeof p);
    return 0;
}

/* Raise TypeError naming an argument the op does not take. */
static void unexpected(const dn_opdef *op, PyObject *kwargs)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kwargs, &pos, &key, &value)) {
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        int known = name && !strcmp(name, "threads");
        for (const dn_arg *a = op->args; name && !known && a->name; a++)
            known = !strcmp(a->name, name);
        if (!known) {
            PyErr_Format(PyExc_TypeError, "%s: unexpected argument %R", op->name, key);
            return;
        }
    }
    PyErr_Format(PyExc_TypeError, "%s: unexpected arguments", op->name);
}

/* Parse an op's keyword arguments (``threads`` aside) into a checked step;
 * -1 with an exception set, and nothing held, when they do not check out. */
static int parse(const dn_opdef *op, PyObject *kwargs, step_t *s)
{
    memset(s, 0, sizeof *s);
    s->op = op;
    Py_ssize_t used = 0, slot = 0;
    for (const dn_arg *a = op->args; a->name; a++) {
        PyObject *value = kwargs ? PyDict_GetItemString(kwargs, a->name) : NULL;
        Py_buffer *buf = NULL;
        if (a->kind != ARG_SIZE && a->kind != ARG_FLOAT)
            buf = &s->buf[slot++];
        if (value)
            used++;
        else if (!a->optional) {
            PyErr_Format(PyExc_TypeError, "%s: missing argument %s", op->name, a->name);
            goto fail;
        }
        if (fill(s, a, value, buf) < 0)
            goto fail;
    }
    if (kwargs && PyDict_GetItemString(kwargs, "threads"))
        used++;
    if (kwargs && used != PyDict_Size(kwargs)) {
        unexpected(op, kwargs);
        goto fail;
    }
    if (op->check(s) < 0)
        goto fail;
    return 0;
fail:
    release(s);
    return -1;
}

static void run_step(step_t *s, int threads)
{
    dn_run(&s->job, threads, s->worth, s->split);
}

/* Every op's Python function: self is its index in dn_opdefs. */
static PyObject *call_op(PyObject *self, PyObject *args, PyObject *kwargs)
{
    const dn_opdef *op = &dn_opdefs[PyLong_AsLong(self)];
    int threads = 1;
    step_t s;
    if (PyTuple_GET_SIZE(args)) {
        PyErr_Format(PyExc_TypeError, "%s takes keyword arguments only", op->name);
        return NULL;
    }
    PyObject *t = kwargs ? PyDict_GetItemString(kwargs, "threads") : NULL;
    if (t && (threads = PyLong_AsLong(t)) == -1 && PyErr_Occurred())
        return NULL;
    if (parse(op, kwargs, &s) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    run_step(&s, threads);
    Py_END_ALLOW_THREADS
    release(&s);
    Py_RETURN_NONE;
}

/* ---- programs: runs of calls without returning to Python ---------------- */

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
"A program: calls, a sequence of (name, kwargs) where name is one of this\n"
"module's kernels and kwargs (a dict) its arguments, each checked now and\n"
"its buffers held.  run_program() then runs them all in order without\n"
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
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *kwargs;
        const char *name;
        const dn_opdef *op;
        if (!PyArg_ParseTuple(item, "sO!", &name, &PyDict_Type, &kwargs) || !(op = find_op(name))
                || parse(op, kwargs, &p->steps[p->count]) < 0)
            goto fail;
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
"run_program(program, threads=1, times=None)\n"
"\n"
"Run a program's calls in order, without the GIL, on up to ``threads``\n"
"threads.  ``times``, a writable float64 buffer of one value per call,\n"
"receives each call's seconds (a per-layer profile of the program as it\n"
"runs, without Python between the layers).");

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static PyObject *run_program(PyObject *self, PyObject *args)
{
    PyObject *capsule, *times_obj = Py_None;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "O|iO", &capsule, &threads, &times_obj))
        return NULL;
    program_t *p = PyCapsule_GetPointer(capsule, "devicenet.program");
    if (!p)
        return NULL;
    Py_buffer times = {0};
    if (times_obj != Py_None) {
        if (PyObject_GetBuffer(times_obj, &times, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return NULL;
        if (times.itemsize != 8 || (times.format && strcmp(times.format, "d") != 0)
                || times.len < (Py_ssize_t)(p->count * 8)) {
            PyBuffer_Release(&times);
            PyErr_Format(PyExc_ValueError, "run_program: times must be float64 with %zd values", p->count);
            return NULL;
        }
    }
    double *t = times.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < p->count; i++) {
        const double t0 = t ? seconds_now() : 0.0;
        run_step(&p->steps[i], threads);
        if (t)
            t[i] = seconds_now() - t0;
    }
    Py_END_ALLOW_THREADS
    if (t)
        PyBuffer_Release(&times);
    Py_RETURN_NONE;
}

/* ---- the registry, seen from Python --------------------------------------- */

static int registry_op(const char *name)
{
    for (int op = 0; op < DN_NOPS; op++)
        if (!strcmp(dn_op_name(op), name))
            return op;
    PyErr_Format(PyExc_ValueError, "no op %s", name);
    return -1;
}

static PyObject *feature_names(unsigned features)
{
    PyObject *names = PyList_New(0);
    for (int bit = 0; names && bit < DN_CPU_NFEATURES; bit++)
        if (features & (1u << bit)) {
            PyObject *s = PyUnicode_FromString(dn_cpu_feature_name(bit));
            if (!s || PyList_Append(names, s) < 0) {
                Py_XDECREF(s);
                Py_CLEAR(names);
            }
            Py_XDECREF(s);
        }
    if (!names)
        return NULL;
    PyObject *t = PyList_AsTuple(names);
    Py_DECREF(names);
    return t;
}

PyDoc_STRVAR(ops_doc, "ops()\n\nThe names of the ops that have variants.");

static PyObject *ops(PyObject *self, PyObject *unused)
{
    PyObject *t = PyTuple_New(DN_NOPS);
    for (int op = 0; t && op < DN_NOPS; op++)
        PyTuple_SET_ITEM(t, op, PyUnicode_FromString(dn_op_name(op)));
    return t;
}

PyDoc_STRVAR(variants_doc,
"variants(op)\n"
"\n"
"The variants of an op, best first: (name, features it needs, selected,\n"
"available on this CPU, calls made with it so far) for each.");

static PyObject *variants(PyObject *self, PyObject *args)
{
    const char *name;
    int op;
    if (!PyArg_ParseTuple(args, "s", &name) || (op = registry_op(name)) < 0)
        return NULL;
    const dn_variant *chosen = dn_selected(op);
    PyObject *list = PyList_New(dn_op_count(op));
    for (int i = 0; list && i < dn_op_count(op); i++) {
        const dn_variant *v = dn_op_variant(op, i);
        PyObject *item = Py_BuildValue("(sNOOl)", v->name, feature_names(v->features),
                                       v == chosen ? Py_True : Py_False,
                                       dn_variant_available(v) ? Py_True : Py_False, dn_variant_calls(op, i));
        if (!item)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

PyDoc_STRVAR(force_doc,
"force(op, name=None)\n"
"\n"
"Run the named variant of an op from the next call on (None: the best one\n"
"this CPU has).  Programs keep the variants they were made with.");

static PyObject *force(PyObject *self, PyObject *args)
{
    const char *op_name, *name = NULL;
    int op;
    if (!PyArg_ParseTuple(args, "s|z", &op_name, &name) || (op = registry_op(op_name)) < 0)
        return NULL;
    if (dn_force(op, name) < 0) {
        PyErr_Format(PyExc_ValueError, "%s: no variant %s that this CPU can run", op_name, name);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(limit_isa_doc,
"limit_isa(isa)\n"
"\n"
"Let every op use instruction sets up to isa only (scalar, sse2, avx2,\n"
"neon; \"\" for all), as DEVICENET_KERNEL_ISA does when the module loads.");

static PyObject *limit_isa(PyObject *self, PyObject *args)
{
    const char *isa;
    if (!PyArg_ParseTuple(args, "s", &isa))
        return NULL;
    if (dn_limit_isa(isa) < 0) {
        PyErr_Format(PyExc_ValueError, "unknown instruction set %s", isa);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(cpu_features_doc, "cpu_features()\n\nThe instruction sets this CPU has, as the variants name them.");

static PyObject *cpu_features(PyObject *self, PyObject *unused)
{
    return feature_names(dn_cpu_features());
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

static PyMethodDef methods[] = {
    {"program", program, METH_VARARGS, program_doc},
    {"run_program", run_program, METH_VARARGS, run_program_doc},
    {"ops", ops, METH_NOARGS, ops_doc},
    {"variants", variants, METH_VARARGS, variants_doc},
    {"force", force, METH_VARARGS, force_doc},
    {"limit_isa", limit_isa, METH_VARARGS, limit_isa_doc},
    {"cpu_features", cpu_features, METH_NOARGS, cpu_features_doc},
    {"use_blas", use_blas, METH_VARARGS, use_blas_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_native", .m_doc = "Compiled kernels of the CPU backend.",
    .m_size = -1, .m_methods = methods,
};

/* the ops' functions: one method definition each (they live as long as the module) */
static PyMethodDef op_methods[32];

PyMODINIT_FUNC PyInit__native(void)
{
    dn_registry_init();
    const char *isa = getenv("DEVICENET_KERNEL_ISA");
    if (isa && dn_limit_isa(isa) < 0) {
        PyErr_Format(PyExc_ImportError, "DEVICENET_KERNEL_ISA: unknown instruction set %s", isa);
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    for (int i = 0; m && dn_opdefs[i].name; i++) {
        op_methods[i] = (PyMethodDef){dn_opdefs[i].name, (PyCFunction)(void (*)(void))call_op,
                                      METH_VARARGS | METH_KEYWORDS, dn_opdefs[i].doc};
        PyObject *index = PyLong_FromLong(i), *fn = index ? PyCFunction_NewEx(&op_methods[i], index, NULL) : NULL;
        Py_XDECREF(index);
        if (!fn || PyModule_AddObject(m, dn_opdefs[i].name, fn) < 0) {
            Py_XDECREF(fn);
            Py_CLEAR(m);
        }
    }
    return m;
}
