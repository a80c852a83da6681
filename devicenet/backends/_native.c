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
#include <stddef.h>
#include <string.h>

#if defined(__unix__) && !defined(__STDC_NO_ATOMICS__)
#define TEAM 1
#include <pthread.h>
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
} geometry;

static inline Py_ssize_t max_z(Py_ssize_t a, Py_ssize_t b) { return a > b ? a : b; }
static inline Py_ssize_t min_z(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* Channels [k, k + CB) of NP output pixels side by side (columns ox, ox +
 * 1, ...), every tap in kernel rows [i0, i1) and columns [0, KW) inside the
 * image.  The weights are loaded once for NP pixels; with KW and SW known
 * at compile time the tap loops unroll and, at stride 1, the NP + KW - 1
 * input pixels of a kernel row are loaded once each. */
#define NP 4
INLINE void interior_block(const geometry *g, const float *restrict xpix,
                           const float *restrict wt, const float *restrict bias,
                           float *restrict ypix, Py_ssize_t k,
                           Py_ssize_t i0, Py_ssize_t i1, float lo, float hi,
                           const Py_ssize_t KW, const Py_ssize_t SW)
{
    const Py_ssize_t c = g->c;
    float acc[NP][CB];
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < CB; q++)
            acc[p][q] = bias ? bias[k + q] : 0.0f;
    for (Py_ssize_t i = i0; i < i1; i++) {
        const float *xr = xpix + i * g->w * c + k;
        const float *wr = wt + i * KW * c + k;
        for (Py_ssize_t j = 0; j < KW; j++)
            for (int p = 0; p < NP; p++)
                for (int q = 0; q < CB; q++)
                    acc[p][q] += xr[(p * SW + j) * c + q] * wr[j * c + q];
    }
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < CB; q++) {
            float v = acc[p][q] < lo ? lo : acc[p][q];
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
        float acc[CB];
        for (int q = 0; q < CB; q++)
            acc[q] = bias ? bias[k + q] : 0.0f;
        for (Py_ssize_t i = i0; i < i1; i++)
            for (Py_ssize_t j = j0; j < j1; j++) {
                const float *xp = xpix + (i * g->w + j) * c + k;
                const float *wp = wt + (i * kw + j) * c + k;
                for (int q = 0; q < CB; q++)
                    acc[q] += xp[q] * wp[q];
            }
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


/* y (rows, n) += bias (n), then clipped to [lo, hi]: the epilogue of a
 * GEMM, one pass while y is still in cache. */
MULTIVERSION
static void bias_act_rows(float *restrict y, const float *restrict bias, Py_ssize_t n,
                          Py_ssize_t r0, Py_ssize_t r1, float lo, float hi)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        float *row = y + r * n;
        if (bias)
            for (Py_ssize_t k = 0; k < n; k++) {
                float v = row[k] + bias[k];
                v = v < lo ? lo : v;
                row[k] = v > hi ? hi : v;
            }
        else
            for (Py_ssize_t k = 0; k < n; k++) {
                float v = row[k] < lo ? lo : row[k];
                row[k] = v > hi ? hi : v;
            }
    }
}

/* ---- a team of threads for the rows of one call ------------------------
 *
 * Handing work to a Python thread pool costs tens of microseconds (a
 * futex wake-up and the GIL), as much as a small layer takes.  The team's
 * threads wait for the next call spinning for a short while, then asleep;
 * the caller starts on the rows at once and every thread takes chunks of
 * rows from a shared counter, so a thread that wakes late costs nothing
 * but its share.  One call uses the team at a time; a concurrent caller
 * runs its rows alone.
 */
#ifdef TEAM

#define MAX_THREADS 64
/* How long an idle thread waits awake.  Short: BLAS's threads wait
 * spinning too, and a thread spinning on through the next GEMM would keep
 * that GEMM's thread off its core. */
#define SPIN_NS 10000

/* A job is split into tasks: bands of rows, or, where the image is small
 * and the channels many, bands of channels (threads working on the same
 * rows would each read the other's input rows). */
typedef struct {
    const geometry *g;              /* NULL: a bias_act job over rows of n values */
    const float *x, *wt, *bias;
    float *y;
    Py_ssize_t r0, r1, tasks, per;  /* per: rows or channels in a task */
    int by_channel;
    float lo, hi;
    Py_ssize_t n;
} job_t;

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
        if (!j->g)
            bias_act_rows(j->y, j->bias, j->n, j->r0 + t * j->per, min_z(j->r1, j->r0 + (t + 1) * j->per),
                          j->lo, j->hi);
        else if (j->by_channel)
            depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0, j->r1,
                           t * j->per, min_z(j->g->c, (t + 1) * j->per), j->lo, j->hi);
        else
            depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0 + t * j->per,
                           min_z(j->r1, j->r0 + (t + 1) * j->per), 0, j->g->c, j->lo, j->hi);
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

/* Grow the team to n - 1 threads (the caller is the n-th). */
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
    return team.workers + 1;
}

/* Run a job's tasks on the team (the caller included). */
static void run_job(job_t *j, int threads)
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
    while (atomic_load(&team.busy) > 0)
        relax();
    (void)threads;
}

static void run_rows(const geometry *g, const float *x, const float *wt, const float *bias, float *y,
                     Py_ssize_t r0, Py_ssize_t r1, float lo, float hi, int threads)
{
    const Py_ssize_t blocks = (g->c + CB - 1) / CB;
    if (threads < 2 || (r1 - r0 < 2 && blocks < 2) || pthread_mutex_trylock(&team.busy_mu) != 0) {
        depthwise_rows(g, x, wt, bias, y, r0, r1, 0, g->c, lo, hi);
        return;
    }
    threads = team_size(threads);
    /* Where the image is small and the channels many, threads take bands of
     * channels: bands of rows would each read kernel-height extra rows. */
    job_t j = {g, x, wt, bias, y, r0, r1, 0, 0, blocks >= 8 * threads, lo, hi, 0};
    if (j.by_channel) {
        j.per = (blocks + 2 * threads - 1) / (2 * threads) * CB;
        j.tasks = (g->c + j.per - 1) / j.per;
    } else {
        j.per = (r1 - r0 + 2 * threads - 1) / (2 * threads);
        j.tasks = (r1 - r0 + j.per - 1) / j.per;
    }
    run_job(&j, threads);
    pthread_mutex_unlock(&team.busy_mu);
}

/* Rows shorter than this many values in all are not worth a hand-off. */
#define MIN_SHARED 32768

static void run_bias_act(float *y, const float *bias, Py_ssize_t rows, Py_ssize_t n,
                         float lo, float hi, int threads)
{
    if (threads < 2 || rows < 2 * threads || rows * n < MIN_SHARED
            || pthread_mutex_trylock(&team.busy_mu) != 0) {
        bias_act_rows(y, bias, n, 0, rows, lo, hi);
        return;
    }
    threads = team_size(threads);
    job_t j = {NULL, NULL, NULL, bias, y, 0, rows, 0, 0, 0, lo, hi, n};
    j.per = (rows + threads - 1) / threads;
    j.tasks = (rows + j.per - 1) / j.per;
    run_job(&j, threads);
    pthread_mutex_unlock(&team.busy_mu);
}

#else

static void run_rows(const geometry *g, const float *x, const float *wt, const float *bias, float *y,
                     Py_ssize_t r0, Py_ssize_t r1, float lo, float hi, int threads)
{
    (void)threads;
    depthwise_rows(g, x, wt, bias, y, r0, r1, 0, g->c, lo, hi);
}

static void run_bias_act(float *y, const float *bias, Py_ssize_t rows, Py_ssize_t n,
                         float lo, float hi, int threads)
{
    (void)threads;
    bias_act_rows(y, bias, n, 0, rows, lo, hi);
}

#endif

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

static PyObject *depthwise(PyObject *self, PyObject *args)
{
    Py_buffer x = {0}, wt = {0}, out = {0}, bias = {0};
    PyObject *bias_obj, *result = NULL;
    geometry g;
    Py_ssize_t r0, r1;
    float lo, hi;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*Ow*(nnnnnnnnnnnnn)nnff|i", &x, &wt, &bias_obj, &out,
                          &g.h, &g.w, &g.c, &g.row0, &g.rows, &g.oh, &g.ow,
                          &g.kh, &g.kw, &g.sh, &g.sw, &g.pt, &g.pl, &r0, &r1, &lo, &hi, &threads))
        return NULL;
    if (bias_obj != Py_None && PyObject_GetBuffer(bias_obj, &bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (g.h < 1 || g.w < 1 || g.c < 1 || g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1
            || g.oh < 0 || g.ow < 0 || g.rows < 0 || g.pt < 0 || g.pl < 0
            || r0 < 0 || r1 > g.oh || r0 > r1
            || too_big(g.rows, g.w, g.c) || too_big(g.oh, g.ow, g.c) || too_big(g.kh, g.kw, g.c)
            || too_big(g.oh, g.sh, 1) || too_big(g.ow, g.sw, 1)) {
        PyErr_SetString(PyExc_ValueError, "depthwise: inconsistent geometry");
        goto done;
    }
    if (r0 < r1) {
        /* Every input row the requested output rows can read must be held. */
        Py_ssize_t first = max_z(0, r0 * g.sh - g.pt);
        Py_ssize_t last = min_z(g.h, (r1 - 1) * g.sh - g.pt + g.kh);
        if (first < g.row0 || last > g.row0 + g.rows) {
            PyErr_SetString(PyExc_ValueError, "depthwise: input rows out of range");
            goto done;
        }
    }
    if (float_buffer(&x, "x", g.rows * g.w * g.c) < 0
            || float_buffer(&wt, "weight", g.kh * g.kw * g.c) < 0
            || float_buffer(&out, "out", g.oh * g.ow * g.c) < 0
            || (bias.buf && float_buffer(&bias, "bias", g.c) < 0))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    run_rows(&g, x.buf, wt.buf, bias.buf, out.buf, r0, r1, lo, hi, threads);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&wt);
    PyBuffer_Release(&out);
    if (bias.buf)
        PyBuffer_Release(&bias);
    return result;
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
    Py_BEGIN_ALLOW_THREADS
    run_bias_act(y.buf, bias.buf, y.len / 4 / n, n, lo, hi, threads);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&y);
    if (bias.buf)
        PyBuffer_Release(&bias);
    return result;
}

static PyMethodDef methods[] = {
    {"depthwise", depthwise, METH_VARARGS, depthwise_doc},
    {"bias_act", bias_act, METH_VARARGS, bias_act_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Compiled kernels of the CPU backend.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
