/* Every op the Python side calls: its keyword arguments (the fields of its
 * struct, native.h), the checks they pass before any kernel reads a byte,
 * and how a call is cut into tasks for the team.  Adding an op is one
 * block here and one row in dn_opdefs. */
#include "ops.h"

#include <float.h>

/* Whether a * b * c could overflow the index arithmetic. */
static int too_big(ptrdiff_t a, ptrdiff_t b, ptrdiff_t c)
{
    const ptrdiff_t limit = PTRDIFF_MAX / 8;
    return (b && a > limit / b) || (c && a * b > limit / c);
}

/* Whether an argument's buffer is float32 and holds ``need`` values. */
static int floats(step_t *s, const char *name, ptrdiff_t need)
{
    Py_buffer *b = dn_step_buffer(s, name);
    if (!b->obj)  /* an optional argument left out */
        return 0;
    if (b->itemsize != 4 || (b->format && strcmp(b->format, "f") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", name);
        return -1;
    }
    if (b->len < need * 4) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd values, %zd needed", name, b->len / 4, (Py_ssize_t)need);
        return -1;
    }
    return 0;
}

static void set_job(step_t *s, int op, void (*task)(const dn_job *, ptrdiff_t),
                    void (*split)(dn_job *, ptrdiff_t), int worth)
{
    s->job.task = task;
    s->job.args = &s->args;
    s->job.fn = dn_choose(op)->fn;
    s->split = split;
    s->worth = worth;
}

/* the task's share of ``units``: [*lo, *hi) */
static void share(const dn_job *j, ptrdiff_t t, ptrdiff_t units, ptrdiff_t *lo, ptrdiff_t *hi)
{
    *lo = t * j->per;
    *hi = min_z(units, *lo + j->per);
}

/* One task per thread, or ``per_thread`` where threads may lose their core
 * mid-job (a late thread then holds up a smaller share). */
static void split_even(dn_job *j, ptrdiff_t units, ptrdiff_t threads, ptrdiff_t per_thread, ptrdiff_t align)
{
    dn_split(j, units, threads > 1 ? per_thread * threads : 1, align);
}

#define CLIP_ARGS(T) \
    {"lo", ARG_FLOAT, offsetof(T, lo), 1, -HUGE_VAL}, {"hi", ARG_FLOAT, offsetof(T, hi), 1, HUGE_VAL}
/* A float layer's activation (DN_ACT_FIELDS): the clip, then the curve
 * (DN_CURVE_*, -1 for none). */
#define ACT_ARGS(T) CLIP_ARGS(T), {"curve", ARG_SIZE, offsetof(T, curve), 1, DN_CURVE_NONE}

/* The curve checked, and the stage that applies it chosen (and counted as
 * one call of bias_act). */
static int check_curve(step_t *s, ptrdiff_t curve, dn_bias_act_fn *stage)
{
    if (curve < DN_CURVE_NONE || curve >= DN_NCURVES) {
        PyErr_Format(PyExc_ValueError, "%s: curve %zd is not one of -1..%d", s->op->name, (Py_ssize_t)curve,
                     DN_NCURVES - 1);
        return -1;
    }
    *stage = curve >= 0 ? (dn_bias_act_fn)dn_choose(DN_OP_BIAS_ACT)->fn : NULL;
    return 0;
}

/* ---- depthwise and direct convolution ---------------------------------- */

#define W(f) offsetof(dn_window_args, f)
#define WINDOW_ARGS                                                                                \
    {"x", ARG_IN, W(x)}, {"weight", ARG_IN, W(w)}, {"bias", ARG_OPT, W(bias), 1},                  \
    {"out", ARG_OUT, W(y)}, {"h", ARG_SIZE, W(g.h)}, {"w", ARG_SIZE, W(g.w)},                      \
    {"c", ARG_SIZE, W(g.c)}, {"row0", ARG_SIZE, W(g.row0)}, {"rows", ARG_SIZE, W(g.rows)},         \
    {"oh", ARG_SIZE, W(g.oh)}, {"ow", ARG_SIZE, W(g.ow)}, {"kh", ARG_SIZE, W(g.kh)},               \
    {"kw", ARG_SIZE, W(g.kw)}, {"sh", ARG_SIZE, W(g.sh)}, {"sw", ARG_SIZE, W(g.sw)},               \
    {"pad_top", ARG_SIZE, W(g.pt)}, {"pad_left", ARG_SIZE, W(g.pl)},                               \
    {"r0", ARG_SIZE, W(r0)}, {"r1", ARG_SIZE, W(r1)}, ACT_ARGS(dn_window_args)

static const dn_arg depthwise_args[] = {WINDOW_ARGS, {NULL}};
static const dn_arg direct_args[] = {WINDOW_ARGS, {"cout", ARG_SIZE, W(g.cout)}, {NULL}};

/* A depthwise task's share: output rows [b[0], b[1]) and channels [b[2], b[3]). */
static void window_share(const dn_job *j, ptrdiff_t t, const dn_geometry *g, ptrdiff_t r0, ptrdiff_t r1,
                         ptrdiff_t b[4])
{
    ptrdiff_t lo, hi;
    if (j->across) {
        share(j, t, g->c, &lo, &hi);
        b[0] = r0, b[1] = r1, b[2] = lo, b[3] = hi;
    } else {
        share(j, t, r1 - r0, &lo, &hi);
        b[0] = r0 + lo, b[1] = r0 + hi, b[2] = 0, b[3] = g->c;
    }
}

/* Bands of rows; a small image with many channels is split across
 * channels instead: bands of rows would each read KH extra input rows. */
static void window_split(dn_job *j, ptrdiff_t threads, ptrdiff_t c, ptrdiff_t rows)
{
    const ptrdiff_t blocks = (c + 15) / 16;
    if ((j->across = threads > 1 && blocks >= 8 * threads))
        split_even(j, c, threads, 2, 16);
    else
        split_even(j, rows, threads, 2, 1);
}

static void depthwise_task(const dn_job *j, ptrdiff_t t)
{
    const dn_window_args *a = j->args;
    ptrdiff_t b[4];
    window_share(j, t, &a->g, a->r0, a->r1, b);
    ((dn_dwconv_fn)j->fn)(a, b[0], b[1], b[2], b[3]);
}

static void depthwise_split(dn_job *j, ptrdiff_t threads)
{
    const dn_window_args *a = j->args;
    window_split(j, threads, a->g.c, a->r1 - a->r0);
}

static void direct_task(const dn_job *j, ptrdiff_t t)
{
    const dn_window_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->r1 - a->r0, &lo, &hi);
    ((dn_conv_direct_fn)j->fn)(a, a->r0 + lo, a->r0 + hi);
}

static void direct_split(dn_job *j, ptrdiff_t threads)
{
    const dn_window_args *a = j->args;
    j->across = 0;
    split_even(j, a->r1 - a->r0, threads, 2, 1);
}

/* The geometry of output rows [r0, r1) of a window op with wc weights per
 * tap: sizes that do not overflow, and every input row they read held. */
static int check_geometry(step_t *s, const dn_geometry *g, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t wc)
{
    const char *name = s->op->name;
    if (g->h < 1 || g->w < 1 || g->c < 1 || g->cout < 1 || g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1
            || g->oh < 0 || g->ow < 0 || g->rows < 0 || g->row0 < 0 || g->pt < 0 || g->pl < 0
            || r0 < 0 || r1 > g->oh || r0 > r1
            || too_big(g->rows, g->w, g->c) || too_big(g->oh, g->ow, g->cout) || too_big(g->c, g->cout, 1)
            || too_big(g->kh, g->kw, wc) || too_big(g->oh, g->sh, 1) || too_big(g->ow, g->sw, 1)
            || too_big(g->h, 1, 1) || too_big(g->row0, 1, 1) || too_big(g->pt, 1, 1) || too_big(g->pl, 1, 1)) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent geometry", name);
        return -1;
    }
    if (r0 < r1) {
        /* Every input row the requested output rows can read must be held. */
        ptrdiff_t first = max_z(0, r0 * g->sh - g->pt);
        ptrdiff_t last = min_z(g->h, (r1 - 1) * g->sh - g->pt + g->kh);
        if (first < g->row0 || last > g->row0 + g->rows) {
            PyErr_Format(PyExc_ValueError, "%s: input rows out of range", name);
            return -1;
        }
    }
    return 0;
}

static int check_window(step_t *s, int direct)
{
    dn_window_args *a = &s->args.window;
    dn_geometry *g = &a->g;
    if (!direct)
        g->cout = g->c;
    const ptrdiff_t wc = direct ? g->c * g->cout : g->c;  /* weights per tap */
    if (check_geometry(s, g, a->r0, a->r1, wc) < 0)
        return -1;
    if (floats(s, "x", g->rows * g->w * g->c) < 0 || floats(s, "weight", g->kh * g->kw * wc) < 0
            || floats(s, "out", g->oh * g->ow * g->cout) < 0 || floats(s, "bias", g->cout) < 0
            || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    if (direct)
        set_job(s, DN_OP_CONV_DIRECT, direct_task, direct_split, a->r1 > a->r0);
    else
        set_job(s, DN_OP_DWCONV, depthwise_task, depthwise_split, a->r1 > a->r0);
    return 0;
}

static int check_depthwise(step_t *s) { return check_window(s, 0); }
static int check_direct(step_t *s) { return check_window(s, 1); }

/* ---- bias and activation in place --------------------------------------- */

static const dn_arg bias_act_args[] = {
    {"y", ARG_OUT, offsetof(dn_bias_act_args, y)}, {"n", ARG_SIZE, offsetof(dn_bias_act_args, n)},
    {"bias", ARG_OPT, offsetof(dn_bias_act_args, bias), 1}, ACT_ARGS(dn_bias_act_args), {NULL},
};

static void bias_act_task(const dn_job *j, ptrdiff_t t)
{
    const dn_bias_act_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->rows, &lo, &hi);
    ((dn_bias_act_fn)j->fn)(a->y, a->n, a->bias, lo, hi, 0, a->n, a->lo, a->hi, (int)a->curve);
}

static void bias_act_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_bias_act_args *)j->args)->rows, threads, 1);
}

static int check_bias_act(step_t *s)
{
    dn_bias_act_args *a = &s->args.bias_act;
    Py_buffer *y = dn_step_buffer(s, "y");
    if (a->n < 1 || y->len % (4 * a->n) != 0) {
        PyErr_SetString(PyExc_ValueError, "bias_act: y is not whole rows of n values");
        return -1;
    }
    if (floats(s, "y", 0) < 0 || floats(s, "bias", a->n) < 0 || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    a->rows = y->len / 4 / a->n;
    set_job(s, DN_OP_BIAS_ACT, bias_act_task, bias_act_split, y->len / 4 >= MIN_SHARED);
    return 0;
}

/* ---- residual add -------------------------------------------------------- */

static const dn_arg add_args[] = {
    {"a", ARG_IN, offsetof(dn_add_args, a)}, {"b", ARG_IN, offsetof(dn_add_args, b)},
    {"y", ARG_OUT, offsetof(dn_add_args, y)}, ACT_ARGS(dn_add_args), {NULL},
};

static void add_task(const dn_job *j, ptrdiff_t t)
{
    const dn_add_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->n, &lo, &hi);
    ((dn_add_fn)j->fn)(a, lo, hi);
    DN_CURVE(a, a->y + lo, 0, 0, 1, 0, hi - lo);
}

static void add_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_add_args *)j->args)->n, threads, 8);
}

static int check_add(step_t *s)
{
    dn_add_args *a = &s->args.add;
    a->n = dn_step_buffer(s, "y")->len / 4;
    if (floats(s, "y", 0) < 0 || floats(s, "a", a->n) < 0 || floats(s, "b", a->n) < 0
            || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    set_job(s, DN_OP_ADD, add_task, add_split, a->n >= MIN_SHARED);
    return 0;
}

/* ---- global mean pool ---------------------------------------------------- */

static const dn_arg mean_pool_args[] = {
    {"x", ARG_IN, offsetof(dn_meanpool_args, x)}, {"y", ARG_OUT, offsetof(dn_meanpool_args, y)},
    {"images", ARG_SIZE, offsetof(dn_meanpool_args, images)}, {"hw", ARG_SIZE, offsetof(dn_meanpool_args, hw)},
    {"c", ARG_SIZE, offsetof(dn_meanpool_args, c)}, {NULL},
};

static void mean_pool_task(const dn_job *j, ptrdiff_t t)
{
    const dn_meanpool_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->images, &lo, &hi);
    ((dn_meanpool_fn)j->fn)(a, lo, hi);
}

static void mean_pool_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_meanpool_args *)j->args)->images, threads, 1);
}

static int check_mean_pool(step_t *s)
{
    dn_meanpool_args *a = &s->args.meanpool;
    if (a->images < 0 || a->hw < 1 || a->c < 1 || too_big(a->images, a->hw, a->c)) {
        PyErr_SetString(PyExc_ValueError, "mean_pool: bad sizes");
        return -1;
    }
    if (floats(s, "x", a->images * a->hw * a->c) < 0 || floats(s, "y", a->images * a->c) < 0)
        return -1;
    set_job(s, DN_OP_MEANPOOL, mean_pool_task, mean_pool_split, 0);
    return 0;
}

/* ---- channel scale ------------------------------------------------------- */

static const dn_arg scale_args[] = {
    {"x", ARG_IN, offsetof(dn_scale_args, x)}, {"s", ARG_IN, offsetof(dn_scale_args, s)},
    {"y", ARG_OUT, offsetof(dn_scale_args, y)}, {"images", ARG_SIZE, offsetof(dn_scale_args, images)},
    {"hw", ARG_SIZE, offsetof(dn_scale_args, hw)}, {"c", ARG_SIZE, offsetof(dn_scale_args, c)}, {NULL},
};

static void scale_task(const dn_job *j, ptrdiff_t t)
{
    const dn_scale_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->images * a->hw, &lo, &hi);
    ((dn_scale_fn)j->fn)(a, lo, hi);
}

static void scale_split(dn_job *j, ptrdiff_t threads)
{
    const dn_scale_args *a = j->args;
    dn_split(j, a->images * a->hw, threads, 1);
}

static int check_scale(step_t *s)
{
    dn_scale_args *a = &s->args.scale;
    if (a->images < 0 || a->hw < 1 || a->c < 1 || too_big(a->images, a->hw, a->c)) {
        PyErr_SetString(PyExc_ValueError, "scale: bad sizes");
        return -1;
    }
    if (floats(s, "x", a->images * a->hw * a->c) < 0 || floats(s, "s", a->images * a->c) < 0
            || floats(s, "y", a->images * a->hw * a->c) < 0)
        return -1;
    set_job(s, DN_OP_SCALE, scale_task, scale_split, a->images * a->hw * a->c >= MIN_SHARED);
    return 0;
}

/* ---- GEMM ---------------------------------------------------------------- */

/* What every GEMM op shares (numpy's BLAS, devicenet's float32 and
 * eight-bit ones): an m x n product cut by rows, or by output columns when
 * the rows are few, two tasks per thread, so that a thread whose core is
 * taken away mid-layer holds up half as much; bands in whole register
 * tiles (mr rows, nr columns: a packed panel is never split).  (Each BLAS
 * call packs its share of the weights again; Lite0 measured the same with
 * one, two or four tasks per thread.) */
static void gemm_split_tiles(dn_job *j, ptrdiff_t threads, ptrdiff_t m, ptrdiff_t n, ptrdiff_t mr, ptrdiff_t nr)
{
    if ((j->across = threads > 1 && m < 64 * threads && n >= 64 * threads))
        split_even(j, n, threads, 2, nr);
    else
        split_even(j, m, threads, 2, mr);
}

/* A GEMM task's share: rows [b[0], b[1]) and columns [b[2], b[3]). */
static void gemm_share(const dn_job *j, ptrdiff_t t, ptrdiff_t m, ptrdiff_t n, ptrdiff_t b[4])
{
    ptrdiff_t lo, hi;
    if (j->across) {
        share(j, t, n, &lo, &hi);
        b[0] = 0, b[1] = m, b[2] = lo, b[3] = hi;
    } else {
        share(j, t, m, &lo, &hi);
        b[0] = lo, b[1] = hi, b[2] = 0, b[3] = n;
    }
}

/* Row strides lda of a (m, k) and ldc of y (m, n) that fit; the values a
 * and y must then hold (their last rows need not be whole). */
static int gemm_strides(const char *name, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, ptrdiff_t lda, ptrdiff_t ldc,
                        ptrdiff_t *a_len, ptrdiff_t *y_len)
{
    if (lda < k || ldc < n || too_big(m, lda, 1) || too_big(m, ldc, 1)) {
        PyErr_Format(PyExc_ValueError, "%s: bad strides", name);
        return -1;
    }
    *a_len = m ? (m - 1) * lda + k : 0;
    *y_len = m ? (m - 1) * ldc + n : 0;
    return 0;
}

#define G(f) offsetof(dn_gemm_args, f)
static const dn_arg gemm_args[] = {
    {"a", ARG_IN, G(a)}, {"b", ARG_IN, G(b)}, {"y", ARG_OUT, G(y)}, {"m", ARG_SIZE, G(m)},
    {"k", ARG_SIZE, G(k)}, {"n", ARG_SIZE, G(n)}, {"bias", ARG_OPT, G(bias), 1}, ACT_ARGS(dn_gemm_args),
    {NULL},
};

static void gemm_task(const dn_job *j, ptrdiff_t t)
{
    const dn_gemm_args *a = j->args;
    ptrdiff_t b[4];
    gemm_share(j, t, a->m, a->n, b);
    ((dn_gemm_fn)j->fn)(a, b[0], b[1], b[2], b[3]);
}

static void gemm_split(dn_job *j, ptrdiff_t threads)
{
    const dn_gemm_args *a = j->args;
    gemm_split_tiles(j, threads, a->m, a->n, 1, 16);
}

static int check_gemm(step_t *s)
{
    dn_gemm_args *a = &s->args.gemm;
    if (!dn_have_blas()) {
        PyErr_SetString(PyExc_RuntimeError, "gemm: no BLAS function given (use_blas)");
        return -1;
    }
    if (a->m < 0 || a->k < 1 || a->n < 1 || too_big(a->m, a->k, 1) || too_big(a->k, a->n, 1)
            || too_big(a->m, a->n, 1) || a->m > 0x7fffffff || a->k > 0x7fffffff || a->n > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "gemm: bad sizes");
        return -1;
    }
    if (floats(s, "a", a->m * a->k) < 0 || floats(s, "b", a->k * a->n) < 0
            || floats(s, "y", a->m * a->n) < 0 || floats(s, "bias", a->n) < 0
            || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    set_job(s, DN_OP_GEMM, gemm_task, gemm_split, a->m * a->n * a->k >= 64 * MIN_SHARED);
    return 0;
}

/* ---- devicenet's own GEMM on packed weights (gemm.h) ------------------------ */

#define PK(f) offsetof(dn_f32_gemm_pack_args, f)
static const dn_arg f32_gemm_pack_args[] = {
    {"w", ARG_OPT, PK(w), 1}, {"wt", ARG_OPT, PK(wt), 1}, {"bias", ARG_OPT, PK(bias), 1},
    {"packed", ARG_OUT, PK(packed)},
    {"k", ARG_SIZE, PK(k)}, {"n", ARG_SIZE, PK(n)}, {NULL},
};

static void f32_gemm_pack_task(const dn_job *j, ptrdiff_t t)
{
    const dn_f32_gemm_pack_args *a = j->args;
    const dn_variant *rv = (const dn_variant *)j->fn;
    (void)t;
    const size_t k = (size_t)a->k, n = (size_t)a->n;
    dn_f32_gemm_pack_tagged(a->w ? a->w : a->wt, a->w ? n : 1, a->w ? 1 : k, a->bias, k, n,
                            (int)(rv - dn_op_variant(DN_OP_F32_GEMM, 0)),
                            dn_f32_gemm_variant_of((dn_f32_gemm_ukernel)rv->fn), a->packed);
}

static void one_task(dn_job *j, ptrdiff_t threads)
{
    (void)threads;
    dn_split(j, 1, 1, 1);
}

static int f32_gemm_sizes(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, const char *name)
{
    if (m < 0 || k < 1 || n < 1 || too_big(m, k, 1) || too_big(k + 1, n + DN_GEMM_MAX_NR, 1)
            || too_big(m, n, 1)) {
        PyErr_Format(PyExc_ValueError, "%s: bad sizes", name);
        return -1;
    }
    return 0;
}

/* Floats of weights (k, n) packed for v, header included. */
static ptrdiff_t packed_floats(const dn_f32_gemm_variant *v, ptrdiff_t k, ptrdiff_t n)
{
    return DN_GEMM_HEADER + (ptrdiff_t)dn_f32_gemm_packed_floats((size_t)k, (size_t)n, v->nr);
}

static int check_f32_gemm_pack(step_t *s)
{
    dn_f32_gemm_pack_args *a = &s->args.f32_gemm_pack;
    const dn_variant *rv = dn_selected(DN_OP_F32_GEMM);
    if (!a->w == !a->wt) {
        PyErr_SetString(PyExc_TypeError, "f32_gemm_pack: give w (k, n) or wt (n, k)");
        return -1;
    }
    if (f32_gemm_sizes(0, a->k, a->n, "f32_gemm_pack") < 0 || floats(s, "w", a->k * a->n) < 0
            || floats(s, "wt", a->k * a->n) < 0 || floats(s, "bias", a->n) < 0
            || floats(s, "packed", packed_floats(dn_f32_gemm_variant_of((dn_f32_gemm_ukernel)rv->fn), a->k, a->n)) < 0)
        return -1;
    s->job.task = f32_gemm_pack_task;
    s->job.args = &s->args;
    s->job.fn = (dn_fn)rv;  /* the registry row: the header records its index */
    s->split = one_task;
    s->worth = 0;
    return 0;
}

#define FG(f) offsetof(dn_f32_gemm_args, f)
static const dn_arg f32_gemm_args[] = {
    {"a", ARG_IN, FG(a)}, {"packed", ARG_IN, FG(packed)}, {"y", ARG_OUT, FG(y)}, {"m", ARG_SIZE, FG(m)},
    {"k", ARG_SIZE, FG(k)}, {"n", ARG_SIZE, FG(n)}, {"lda", ARG_SIZE, FG(lda)}, {"ldc", ARG_SIZE, FG(ldc)},
    ACT_ARGS(dn_f32_gemm_args), {NULL},
};

static void f32_gemm_task(const dn_job *j, ptrdiff_t t)
{
    const dn_f32_gemm_args *a = j->args;
    ptrdiff_t b[4];
    gemm_share(j, t, a->m, a->n, b);
    dn_f32_gemm_block(a->v, (size_t)a->k, (size_t)a->n, a->a, (size_t)a->lda, a->packed + DN_GEMM_HEADER, a->y,
                      (size_t)a->ldc, (size_t)b[0], (size_t)b[1], (size_t)b[2], (size_t)b[3], a->lo, a->hi,
                      (int)a->curve, a->stage);
}

static void f32_gemm_split(dn_job *j, ptrdiff_t threads)
{
    const dn_f32_gemm_args *a = j->args;
    gemm_split_tiles(j, threads, a->m, a->n, a->v->mr, a->v->nr);
}

static int check_f32_gemm(step_t *s)
{
    dn_f32_gemm_args *a = &s->args.f32_gemm;
    if (f32_gemm_sizes(a->m, a->k, a->n, "f32_gemm") < 0)
        return -1;
    ptrdiff_t a_len, y_len;
    if (gemm_strides("f32_gemm", a->m, a->k, a->n, a->lda, a->ldc, &a_len, &y_len) < 0)
        return -1;
    if (floats(s, "a", a_len) < 0 || floats(s, "y", y_len) < 0 || floats(s, "packed", DN_GEMM_HEADER) < 0
            || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    const Py_buffer *p = dn_step_buffer(s, "packed");
    const int index = dn_f32_gemm_tag(a->packed, (size_t)(p->len / 4), (size_t)a->k, (size_t)a->n);
    const dn_variant *rv = dn_op_variant(DN_OP_F32_GEMM, index);
    a->v = rv ? dn_f32_gemm_variant_of((dn_f32_gemm_ukernel)rv->fn) : NULL;
    if (!a->v || !dn_variant_available(rv)) {
        PyErr_SetString(PyExc_ValueError, "f32_gemm: packed holds no weights of this k and n packed "
                        "for this module and CPU (f32_gemm_pack)");
        return -1;
    }
    if (floats(s, "packed", packed_floats(a->v, a->k, a->n)) < 0)
        return -1;
    s->job.task = f32_gemm_task;
    s->job.args = &s->args;
    s->job.fn = dn_count(DN_OP_F32_GEMM, rv)->fn;
    s->split = f32_gemm_split;
    s->worth = a->m * a->n * a->k >= 64 * MIN_SHARED;
    return 0;
}

/* ---- dense layers on their stored integers -------------------------------- */

#define Q(f) offsetof(dn_dense_q_args, f)
static const dn_arg dense_q_args[] = {
    {"x", ARG_IN, Q(x)}, {"q", ARG_INTS, Q(q)}, {"scales", ARG_IN, Q(scales)},
    {"bias", ARG_OPT, Q(bias), 1}, {"y", ARG_OUT, Q(y)}, {"m", ARG_SIZE, Q(m)}, {"k", ARG_SIZE, Q(k)},
    {"n", ARG_SIZE, Q(n)}, ACT_ARGS(dn_dense_q_args), {NULL},
};

static void dense_q_task(const dn_job *j, ptrdiff_t t)
{
    const dn_dense_q_args *a = j->args;
    ptrdiff_t lo, hi;
    share(j, t, a->n, &lo, &hi);
    ((dn_dense_q_fn)j->fn)(a, lo, hi);
    DN_CURVE(a, a->y, a->n, 0, a->m, lo, hi);
}

/* bands of output channels, several per thread */
static void dense_q_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_dense_q_args *)j->args)->n, 2 * threads, 16);
}

static int check_dense_q(step_t *s)
{
    dn_dense_q_args *a = &s->args.dense_q;
    Py_buffer *q = dn_step_buffer(s, "q");
    if (a->m < 0 || a->k < 1 || a->n < 1 || too_big(a->m, a->k, 1) || too_big(a->n, a->k, 1)
            || too_big(a->m, a->n, 1)) {
        PyErr_SetString(PyExc_ValueError, "dense_q: bad sizes");
        return -1;
    }
    if ((q->itemsize != 1 && q->itemsize != 2) || (q->format && !strchr("bh", q->format[strlen(q->format) - 1]))) {
        PyErr_SetString(PyExc_TypeError, "dense_q: weights must be int8 or int16");
        return -1;
    }
    if (q->len < a->n * a->k * q->itemsize) {
        PyErr_Format(PyExc_ValueError, "q holds %zd values, %zd needed", q->len / q->itemsize,
                     (Py_ssize_t)(a->n * a->k));
        return -1;
    }
    if (floats(s, "x", a->m * a->k) < 0 || floats(s, "scales", a->n) < 0
            || floats(s, "y", a->m * a->n) < 0 || floats(s, "bias", a->n) < 0
            || check_curve(s, a->curve, &a->stage) < 0)
        return -1;
    set_job(s, q->itemsize == 1 ? DN_OP_DENSE_Q8 : DN_OP_DENSE_Q16, dense_q_task, dense_q_split,
            a->n * a->k >= MIN_SHARED);
    return 0;
}

/* ---- eight-bit ops (q8.h) -------------------------------------------------- */

/* Whether an argument's buffer holds ``need`` values of one of the buffer
 * formats ``formats`` (struct module codes) of ``size`` bytes each. */
static int typed(step_t *s, const char *name, const char *formats, Py_ssize_t size, const char *what,
                 ptrdiff_t need)
{
    Py_buffer *b = dn_step_buffer(s, name);
    if (!b->obj)  /* an optional argument left out */
        return 0;
    const char *f = b->format ? b->format + strlen(b->format) - 1 : "B";
    if (b->itemsize != size || !*f || !strchr(formats, *f)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s", s->op->name, name, what);
        return -1;
    }
    if (b->len < need * size) {
        PyErr_Format(PyExc_ValueError, "%s: %s holds %zd values, %zd needed", s->op->name, name,
                     b->len / size, (Py_ssize_t)need);
        return -1;
    }
    return 0;
}

#define U8(s, name, need) typed(s, name, "B", 1, "uint8", need)
#define I8(s, name, need) typed(s, name, "b", 1, "int8", need)
#define I32(s, name, need) typed(s, name, "il", 4, "int32", need)
#define F32(s, name, need) typed(s, name, "f", 4, "float32", need)

/* Whether the optional buffer ``name`` was given. */
static int given(step_t *s, const char *name)
{
    return dn_step_buffer(s, name)->obj != NULL;
}

/* Requantisation factors (q8_ref.requant_scale): finite, >= 0; NULL: none. */
static int q8_factors(step_t *s, const float *rscale, ptrdiff_t n)
{
    for (ptrdiff_t c = 0; rscale && c < n; c++)
        if (!(rscale[c] >= 0.0f && rscale[c] <= FLT_MAX)) {
            PyErr_Format(PyExc_ValueError, "%s: requantisation factors must be finite and >= 0", s->op->name);
            return -1;
        }
    return 0;
}

/* A zero point and clamp of uint8 outputs. */
static int q8_range(step_t *s, ptrdiff_t zero_point, ptrdiff_t qmin, ptrdiff_t qmax)
{
    if (zero_point < 0 || zero_point > 255 || qmin < 0 || qmax > 255 || qmin > qmax) {
        PyErr_Format(PyExc_ValueError, "%s: zero_point, qmin and qmax must lie in [0, 255], qmin <= qmax",
                     s->op->name);
        return -1;
    }
    return 0;
}

#define Q8_RANGE_ARGS(T)                                                                           \
    {"zero_point", ARG_SIZE, offsetof(T, zero_point), 1, 0}, {"qmin", ARG_SIZE, offsetof(T, qmin), 1, 0}, \
    {"qmax", ARG_SIZE, offsetof(T, qmax), 1, 255}

#define QP(f) offsetof(dn_q8_gemm_pack_args, f)
static const dn_arg q8_gemm_pack_args[] = {
    {"wt", ARG_INTS, QP(wt)}, {"bias", ARG_OPT_INTS, QP(bias), 1}, {"rscale", ARG_OPT, QP(rscale), 1},
    {"scale", ARG_OPT, QP(scale), 1}, {"packed", ARG_OUT, QP(packed)},
    {"k", ARG_SIZE, QP(k)}, {"n", ARG_SIZE, QP(n)}, {NULL},
};

static void q8_gemm_pack_task(const dn_job *j, ptrdiff_t t)
{
    const dn_q8_gemm_pack_args *a = j->args;
    const dn_variant *rv = (const dn_variant *)j->fn;
    (void)t;
    dn_q8_gemm_pack(dn_q8_gemm_variant_of((dn_q8_gemm_ukernel)rv->fn), (int)(rv - dn_op_variant(DN_OP_Q8_GEMM, 0)),
                    a->wt, a->bias, a->rscale ? a->rscale : a->scale, a->scale != NULL, (size_t)a->k, (size_t)a->n, a->packed);
}

static const dn_q8_gemm_variant *q8_variant(const dn_variant *rv)
{
    return dn_q8_gemm_variant_of((dn_q8_gemm_ukernel)rv->fn);
}

/* Whether variant v computes these weights exactly: a kernel that could
 * saturate needs weights whose pairs cannot; one that reads A less an
 * offset adds offset x 127 x k to sums the quantiser keeps within 2**30,
 * so k must leave room in int32; a wide one keeps a row of A widened on
 * the stack. */
static int q8_gemm_fits(const dn_q8_gemm_variant *v, const int8_t *wt, size_t k, size_t n)
{
    if ((v->a_offset && k > ((size_t)1 << 16)) || (v->wide && k > DN_Q8_WIDE_MAX_K - DN_Q8_MAX_KR))
        return 0;
    return v->exact || dn_q8_gemm_pairs_safe(wt, k, n);
}

/* The selected variant, or where it cannot compute these weights exactly,
 * the first one after it that can and that the CPU has. */
static const dn_variant *q8_gemm_for(const int8_t *wt, size_t k, size_t n)
{
    const dn_variant *rv = dn_selected(DN_OP_Q8_GEMM);
    if (q8_gemm_fits(q8_variant(rv), wt, k, n))
        return rv;
    for (int i = (int)(rv - dn_op_variant(DN_OP_Q8_GEMM, 0)) + 1; i < dn_op_count(DN_OP_Q8_GEMM); i++) {
        const dn_variant *next = dn_op_variant(DN_OP_Q8_GEMM, i);
        if (dn_variant_available(next) && q8_gemm_fits(q8_variant(next), wt, k, n))
            return next;
    }
    return dn_op_variant(DN_OP_Q8_GEMM, dn_op_count(DN_OP_Q8_GEMM) - 1);
}

static int check_q8_gemm_pack(step_t *s)
{
    dn_q8_gemm_pack_args *a = &s->args.q8_gemm_pack;
    if (f32_gemm_sizes(0, a->k, a->n, "q8_gemm_pack") < 0)
        return -1;
    if (given(s, "rscale") == given(s, "scale")) {
        PyErr_SetString(PyExc_TypeError, "q8_gemm_pack: give rscale (uint8 outputs) or scale (float32 outputs)");
        return -1;
    }
    if (I8(s, "wt", a->n * a->k) < 0 || I32(s, "bias", a->n) < 0 || F32(s, "rscale", a->n) < 0
            || F32(s, "scale", a->n) < 0 || q8_factors(s, a->rscale, a->n) < 0)
        return -1;
    const dn_variant *rv = q8_gemm_for(a->wt, (size_t)a->k, (size_t)a->n);
    if (U8(s, "packed", (ptrdiff_t)dn_q8_gemm_packed_bytes(q8_variant(rv), (size_t)a->k, (size_t)a->n)) < 0)
        return -1;
    s->job.task = q8_gemm_pack_task;
    s->job.args = &s->args;
    s->job.fn = (dn_fn)rv;  /* the registry row: the header records its index */
    s->split = one_task;
    s->worth = 0;
    return 0;
}

#define QG(f) offsetof(dn_q8_gemm_args, f)
static const dn_arg q8_gemm_args[] = {
    {"a", ARG_INTS, QG(a)}, {"packed", ARG_INTS, QG(packed)}, {"y", ARG_OUT, QG(y)}, {"m", ARG_SIZE, QG(m)},
    {"k", ARG_SIZE, QG(k)}, {"n", ARG_SIZE, QG(n)}, {"lda", ARG_SIZE, QG(lda)}, {"ldc", ARG_SIZE, QG(ldc)},
    Q8_RANGE_ARGS(dn_q8_gemm_args), CLIP_ARGS(dn_q8_gemm_args), {NULL},
};

static void q8_gemm_task(const dn_job *j, ptrdiff_t t)
{
    const dn_q8_gemm_args *a = j->args;
    ptrdiff_t b[4];
    gemm_share(j, t, a->m, a->n, b);
    dn_q8_gemm_block(a->v, (size_t)a->k, (size_t)a->n, a->a, (size_t)a->lda, a->packed + DN_Q8_HEADER, a->y,
                     (size_t)a->ldc, (size_t)b[0], (size_t)b[1], (size_t)b[2], (size_t)b[3], &a->out);
}

static void q8_gemm_split(dn_job *j, ptrdiff_t threads)
{
    const dn_q8_gemm_args *a = j->args;
    gemm_split_tiles(j, threads, a->m, a->n, a->v->mr, a->v->nr);
}

static int check_q8_gemm(step_t *s)
{
    dn_q8_gemm_args *a = &s->args.q8_gemm;
    if (f32_gemm_sizes(a->m, a->k, a->n, "q8_gemm") < 0)
        return -1;
    ptrdiff_t a_len, y_len;
    if (gemm_strides("q8_gemm", a->m, a->k, a->n, a->lda, a->ldc, &a_len, &y_len) < 0)
        return -1;
    const int to_float = dn_step_buffer(s, "y")->itemsize == 4;
    if (q8_range(s, a->zero_point, a->qmin, a->qmax) < 0 || U8(s, "a", a_len) < 0
            || (to_float ? F32(s, "y", y_len) : U8(s, "y", y_len)) < 0 || U8(s, "packed", DN_Q8_HEADER) < 0)
        return -1;
    const Py_buffer *p = dn_step_buffer(s, "packed");
    const int index = dn_q8_gemm_tag(a->packed, (size_t)p->len, (size_t)a->k, (size_t)a->n, to_float);
    const dn_variant *rv = dn_op_variant(DN_OP_Q8_GEMM, index);
    a->v = rv ? q8_variant(rv) : NULL;
    if (!a->v || !dn_variant_available(rv)) {
        PyErr_Format(PyExc_ValueError, "q8_gemm: packed holds no weights of this k and n packed for %s "
                     "outputs by this module and CPU (q8_gemm_pack)", to_float ? "float32" : "uint8");
        return -1;
    }
    if (U8(s, "packed", (ptrdiff_t)dn_q8_gemm_packed_bytes(a->v, (size_t)a->k, (size_t)a->n)) < 0)
        return -1;
    a->out = (dn_q8_output){(int32_t)a->zero_point, (int32_t)a->qmin, (int32_t)a->qmax, a->lo, a->hi, to_float};
    s->job.task = q8_gemm_task;
    s->job.args = &s->args;
    s->job.fn = dn_count(DN_OP_Q8_GEMM, rv)->fn;
    s->split = q8_gemm_split;
    s->worth = a->m * a->n * a->k >= 64 * MIN_SHARED;
    return 0;
}

/* depthwise: the window ops' geometry (check_window's rules), eight-bit */
#define QD(f) offsetof(dn_q8_dwconv_args, f)
static const dn_arg q8_dwconv_args[] = {
    {"x", ARG_INTS, QD(x)}, {"weight", ARG_INTS, QD(w)}, {"bias", ARG_INTS, QD(bias)},
    {"rscale", ARG_IN, QD(rscale)}, {"out", ARG_OUT, QD(y)}, {"h", ARG_SIZE, QD(g.h)}, {"w", ARG_SIZE, QD(g.w)},
    {"c", ARG_SIZE, QD(g.c)}, {"row0", ARG_SIZE, QD(g.row0)}, {"rows", ARG_SIZE, QD(g.rows)},
    {"oh", ARG_SIZE, QD(g.oh)}, {"ow", ARG_SIZE, QD(g.ow)}, {"kh", ARG_SIZE, QD(g.kh)},
    {"kw", ARG_SIZE, QD(g.kw)}, {"sh", ARG_SIZE, QD(g.sh)}, {"sw", ARG_SIZE, QD(g.sw)},
    {"pad_top", ARG_SIZE, QD(g.pt)}, {"pad_left", ARG_SIZE, QD(g.pl)},
    {"r0", ARG_SIZE, QD(r0)}, {"r1", ARG_SIZE, QD(r1)}, {"x_zero_point", ARG_SIZE, QD(x_zero_point)},
    Q8_RANGE_ARGS(dn_q8_dwconv_args), {NULL},
};

static void q8_dwconv_task(const dn_job *j, ptrdiff_t t)
{
    const dn_q8_dwconv_args *a = j->args;
    ptrdiff_t b[4];
    window_share(j, t, &a->g, a->r0, a->r1, b);
    ((dn_q8_dwconv_fn)j->fn)(a, b[0], b[1], b[2], b[3]);
}

static void q8_dwconv_split(dn_job *j, ptrdiff_t threads)
{
    const dn_q8_dwconv_args *a = j->args;
    window_split(j, threads, a->g.c, a->r1 - a->r0);
}

static int check_q8_dwconv(step_t *s)
{
    dn_q8_dwconv_args *a = &s->args.q8_dwconv;
    dn_geometry *g = &a->g;
    g->cout = g->c;
    if (check_geometry(s, g, a->r0, a->r1, g->c) < 0)
        return -1;
    if (g->kh * g->kw > 64) {
        PyErr_SetString(PyExc_ValueError, "q8_dwconv: more than 64 taps");
        return -1;
    }
    if (q8_range(s, a->zero_point, a->qmin, a->qmax) < 0 || q8_range(s, a->x_zero_point, 0, 255) < 0
            || U8(s, "x", g->rows * g->w * g->c) < 0
            || typed(s, "weight", "h", 2, "int16", (g->kh * g->kw + 1) / 2 * 2 * g->c) < 0
            || I32(s, "bias", g->c) < 0 || F32(s, "rscale", g->c) < 0 || q8_factors(s, a->rscale, g->c) < 0
            || U8(s, "out", g->oh * g->ow * g->c) < 0)
        return -1;
    set_job(s, DN_OP_Q8_DWCONV, q8_dwconv_task, q8_dwconv_split, a->r1 > a->r0);
    return 0;
}

/* residual add */
#define QA(f) offsetof(dn_q8_add_args, f)
static const dn_arg q8_add_args[] = {
    {"a", ARG_INTS, QA(a)}, {"b", ARG_INTS, QA(b)}, {"y", ARG_OUT, QA(y)},
    {"a_zero_point", ARG_SIZE, QA(a_zero_point)}, {"b_zero_point", ARG_SIZE, QA(b_zero_point)},
    {"ma", ARG_SIZE, QA(ma)}, {"mb", ARG_SIZE, QA(mb)}, {"shift", ARG_SIZE, QA(shift)},
    Q8_RANGE_ARGS(dn_q8_add_args), {NULL},
};

/* value-by-value ops: the task's share of values [lo, hi) */
#define VALUES_TASK(name, T, FN_T, count)                                     \
    static void name(const dn_job *j, ptrdiff_t t)                             \
    {                                                                          \
        const T *a = j->args;                                                  \
        ptrdiff_t lo, hi;                                                      \
        share(j, t, a->count, &lo, &hi);                                       \
        ((FN_T)j->fn)(a, lo, hi);                                              \
    }

VALUES_TASK(q8_add_task, dn_q8_add_args, dn_q8_add_fn, n)
VALUES_TASK(q8_meanpool_task, dn_q8_meanpool_args, dn_q8_meanpool_fn, images)
VALUES_TASK(q8_quantize_task, dn_q8_quantize_args, dn_q8_quantize_fn, n)
VALUES_TASK(q8_dequantize_task, dn_q8_dequantize_args, dn_q8_dequantize_fn, n)

static void q8_add_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_q8_add_args *)j->args)->n, threads, 64);
}

static void q8_quantize_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_q8_quantize_args *)j->args)->n, threads, 64);
}

static void q8_dequantize_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_q8_dequantize_args *)j->args)->n, threads, 64);
}

static int check_q8_add(step_t *s)
{
    dn_q8_add_args *a = &s->args.q8_add;
    const ptrdiff_t limit = (ptrdiff_t)1 << 21;
    a->n = dn_step_buffer(s, "y")->len;
    if (q8_range(s, a->zero_point, a->qmin, a->qmax) < 0 || q8_range(s, a->a_zero_point, 0, 255) < 0
            || q8_range(s, a->b_zero_point, 0, 255) < 0)
        return -1;
    if (a->ma <= -limit || a->ma >= limit || a->mb <= -limit || a->mb >= limit || a->shift < 1 || a->shift > 31) {
        PyErr_SetString(PyExc_ValueError, "q8_add: ma and mb must lie within +-2**21 and shift in [1, 31]");
        return -1;
    }
    if (U8(s, "y", a->n) < 0 || U8(s, "a", a->n) < 0 || U8(s, "b", a->n) < 0)
        return -1;
    set_job(s, DN_OP_Q8_ADD, q8_add_task, q8_add_split, a->n >= 4 * MIN_SHARED);
    return 0;
}

/* global mean pool to float32 */
#define QM(f) offsetof(dn_q8_meanpool_args, f)
static const dn_arg q8_meanpool_args[] = {
    {"x", ARG_INTS, QM(x)}, {"y", ARG_OUT, QM(y)}, {"images", ARG_SIZE, QM(images)}, {"hw", ARG_SIZE, QM(hw)},
    {"c", ARG_SIZE, QM(c)}, {"zero_point", ARG_SIZE, QM(zero_point)}, {"scale", ARG_FLOAT, QM(scale)}, {NULL},
};

static void q8_meanpool_split(dn_job *j, ptrdiff_t threads)
{
    dn_split(j, ((const dn_q8_meanpool_args *)j->args)->images, threads, 1);
}

static int check_q8_meanpool(step_t *s)
{
    dn_q8_meanpool_args *a = &s->args.q8_meanpool;
    /* sums of hw uint8 within int32 */
    if (a->images < 0 || a->hw < 1 || a->c < 1 || a->hw > (1 << 23) || too_big(a->images, a->hw, a->c)) {
        PyErr_SetString(PyExc_ValueError, "q8_meanpool: bad sizes");
        return -1;
    }
    if (q8_range(s, a->zero_point, 0, 255) < 0 || U8(s, "x", a->images * a->hw * a->c) < 0
            || F32(s, "y", a->images * a->c) < 0)
        return -1;
    set_job(s, DN_OP_Q8_MEANPOOL, q8_meanpool_task, q8_meanpool_split, 0);
    return 0;
}

/* float32 <-> uint8 */
static const dn_arg q8_quantize_args[] = {
    {"x", ARG_IN, offsetof(dn_q8_quantize_args, x)}, {"y", ARG_OUT, offsetof(dn_q8_quantize_args, y)},
    {"inv_scale", ARG_FLOAT, offsetof(dn_q8_quantize_args, inv_scale)},
    {"zero_point", ARG_SIZE, offsetof(dn_q8_quantize_args, zero_point)}, {NULL},
};

static int check_q8_quantize(step_t *s)
{
    dn_q8_quantize_args *a = &s->args.q8_quantize;
    a->n = dn_step_buffer(s, "y")->len;
    if (q8_range(s, a->zero_point, 0, 255) < 0 || U8(s, "y", a->n) < 0 || F32(s, "x", a->n) < 0)
        return -1;
    set_job(s, DN_OP_Q8_QUANTIZE, q8_quantize_task, q8_quantize_split, a->n >= MIN_SHARED);
    return 0;
}

static const dn_arg q8_dequantize_args[] = {
    {"x", ARG_INTS, offsetof(dn_q8_dequantize_args, x)}, {"y", ARG_OUT, offsetof(dn_q8_dequantize_args, y)},
    {"scale", ARG_FLOAT, offsetof(dn_q8_dequantize_args, scale)},
    {"zero_point", ARG_SIZE, offsetof(dn_q8_dequantize_args, zero_point)}, {NULL},
};

static int check_q8_dequantize(step_t *s)
{
    dn_q8_dequantize_args *a = &s->args.q8_dequantize;
    a->n = dn_step_buffer(s, "y")->len / 4;
    if (q8_range(s, a->zero_point, 0, 255) < 0 || F32(s, "y", a->n) < 0 || U8(s, "x", a->n) < 0)
        return -1;
    set_job(s, DN_OP_Q8_DEQUANTIZE, q8_dequantize_task, q8_dequantize_split, a->n >= MIN_SHARED);
    return 0;
}

/* ---- the table ------------------------------------------------------------ */

const dn_opdef dn_opdefs[] = {
    {"depthwise", "Depthwise convolution of one image, output rows [r0, r1) of out.\n\n"
     "x: float32 (rows, w, c), input rows [row0, row0 + rows) of an image of\n"
     "h x w pixels and c channels; weight: float32 (kh, kw, c); bias: float32\n"
     "(c) or None; out: float32 (oh, ow, c).  Stride sh x sw, padding pad_top\n"
     "and pad_left (the rest follows).  Outputs are clipped to [lo, hi].  The\n"
     "input rows that rows r0..r1 read must be in x.",
     depthwise_args, check_depthwise},
    {"direct", "Convolution of one image with few input channels, as depthwise() but\n"
     "with weight (kh, kw, c, cout), bias (cout) and out (oh, ow, cout).",
     direct_args, check_direct},
    {"bias_act", "In place: every row of n values of y plus bias (n values, or None),\n"
     "clipped to [lo, hi].",
     bias_act_args, check_bias_act},
    {"add", "y = a + b, clipped to [lo, hi]: float32 buffers of one size (y may be\n"
     "a or b).",
     add_args, check_add},
    {"mean_pool", "y (images, c) = the mean over the hw pixels of x (images, hw, c).",
     mean_pool_args, check_mean_pool},
    {"scale", "y (images, hw, c) = x (images, hw, c) times s (images, c), channel by channel\n"
     "(a squeeze-and-excitation gate); y may be x.",
     scale_args, check_scale},
    {"gemm", "y (m, n) = a (m, k) @ b (k, n) + bias, clipped to [lo, hi]; bias (n\n"
     "values) may be None.  Through numpy's BLAS (use_blas), single-threaded\n"
     "inside each task.",
     gemm_args, check_gemm},
    {"f32_gemm_pack", "Pack w (k, n), or its transpose wt (n, k), and bias (n values, or\n"
     "None) into packed for the selected f32_gemm variant: float32, at least\n"
     "16 + (k + 1) * n16 values, n16 being n rounded up to a multiple of 16.",
     f32_gemm_pack_args, check_f32_gemm_pack},
    {"f32_gemm", "y (m, n, rows ldc apart) = a (m, k, rows lda apart) @ w + bias,\n"
     "clipped to [lo, hi], with w and bias as f32_gemm_pack packed them (for\n"
     "the variant selected then, which runs).",
     f32_gemm_args, check_f32_gemm},
    {"dense_q", "y (m, n) = x (m, k) @ (q * scales[:, None]).T + bias, clipped to\n"
     "[lo, hi], for integer weights q (n, k) (int8 or int16) and their float32\n"
     "per-row scales, read as stored; bias (n) may be None.",
     dense_q_args, check_dense_q},
    {"q8_gemm_pack", "Pack int8 weights wt (n, k), as layers store them, for the selected\n"
     "q8_gemm variant (or, where a pair of adjacent weights could saturate it,\n"
     "the first exact one): bias int32 (n, already folded: q8_ref.fold_bias) or\n"
     "None, and the output stage: m and e int32 (n) for uint8 outputs\n"
     "(q8_ref.requantize), or scale float32 (n) for float32 ones\n"
     "(q8_ref.dequantize_acc).  packed: uint8, at least\n"
     "64 + n16 * (16 + k4) bytes, n16 being n rounded up to a multiple of 16\n"
     "and k4 k rounded up to a multiple of 4.",
     q8_gemm_pack_args, check_q8_gemm_pack},
    {"q8_gemm", "y (m, n, rows ldc apart) = the output stage of bias + a (m, k, uint8,\n"
     "rows lda bytes apart) @ w, with w, bias and the stage as q8_gemm_pack\n"
     "packed them: y uint8 (requantised to zero_point, clamped to [qmin,\n"
     "qmax]) or float32 (clamped to [lo, hi]), as packed.",
     q8_gemm_args, check_q8_gemm},
    {"q8_dwconv", "Eight-bit depthwise convolution of one image, output rows [r0, r1) of\n"
     "out (q8_ref.dwconv_acc, then requantize): x uint8 (rows, w, c) holding\n"
     "input rows [row0, row0 + rows), padded taps reading x_zero_point;\n"
     "weight int16 (pairs, c, 2): taps t = i * kw + j in pairs (2p, 2p + 1),\n"
     "an odd last one with a zero partner (cpu_q8.DepthwiseQ8 lays them out);\n"
     "bias int32 (c, folded); m and e int32 (c); at most 64 taps;\n"
     "out uint8 (oh, ow, c) at zero_point, clamped to [qmin, qmax].  The\n"
     "geometry arguments are depthwise()'s.",
     q8_dwconv_args, check_q8_dwconv},
    {"q8_add", "y = q8_ref.add(a, b, a_zero_point, b_zero_point, ma, mb, shift,\n"
     "zero_point, qmin, qmax): uint8 buffers of one size (y may be a or b);\n"
     "|ma|, |mb| < 2**21, 1 <= shift <= 31.",
     q8_add_args, check_q8_add},
    {"q8_meanpool", "y (images, c) float32 = q8_ref.meanpool of x (images, hw, c) uint8\n"
     "with its zero_point and scale (the input's scale / hw).",
     q8_meanpool_args, check_q8_meanpool},
    {"q8_quantize", "y uint8 = q8_ref.quantize(x float32, scale, zero_point), given\n"
     "inv_scale = float32(1 / scale).",
     q8_quantize_args, check_q8_quantize},
    {"q8_dequantize", "y float32 = q8_ref.dequantize(x uint8, scale, zero_point).",
     q8_dequantize_args, check_q8_dequantize},
    {NULL},
};
