/* The thread team: every call's work split into tasks, run by the caller
 * and the team's threads together. */
#include "native.h"

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

static void run_task(const job_t *j, Py_ssize_t t)
{
    Py_ssize_t lo = t * j->per, hi = (t + 1) * j->per;
    switch (j->kind) {
    case JOB_DEPTHWISE:
        if (j->across)
            dn_depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0, j->r1,
                              lo, min_z(j->g->c, hi), j->lo, j->hi);
        else
            dn_depthwise_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0 + lo, min_z(j->r1, j->r0 + hi),
                              0, j->g->c, j->lo, j->hi);
        break;
    case JOB_DIRECT:
        dn_direct_rows(j->g, j->x, j->wt, j->bias, j->y, j->r0 + lo, min_z(j->r1, j->r0 + hi), j->lo, j->hi);
        break;
    case JOB_ADD:
        dn_add(j->x, j->wt, j->y, j->r0 + lo, min_z(j->r1, j->r0 + hi), j->lo, j->hi);
        break;
    case JOB_MEAN_POOL: {  /* images [lo, hi) */
        Py_ssize_t i0 = j->r0 + lo, i1 = min_z(j->r1, j->r0 + hi);
        if (i1 > i0)
            dn_mean_pool(j->x + i0 * j->k * j->n, j->y + i0 * j->n, i1 - i0, j->k, j->n);
        break;
    }
    case JOB_EPILOGUE:
        dn_epilogue(j->y, j->n, j->bias, j->r0 + lo, min_z(j->r1, j->r0 + hi), 0, j->n, j->lo, j->hi);
        break;
    case JOB_DENSE_Q:
        if (j->q_bytes == 1)
            dn_dense_q8(j->x, j->r1, j->k, j->q, j->scales, j->bias, j->y, j->n, lo, min_z(j->n, hi), j->lo, j->hi);
        else
            dn_dense_q16(j->x, j->r1, j->k, j->q, j->scales, j->bias, j->y, j->n, lo, min_z(j->n, hi), j->lo, j->hi);
        break;
    case JOB_GEMM:
        if (j->across)
            dn_gemm_block(j->x, j->wt, j->y, j->k, j->n, j->r0, j->r1, lo, min_z(j->n, hi),
                          j->bias, j->lo, j->hi, j->clip);
        else
            dn_gemm_block(j->x, j->wt, j->y, j->k, j->n, j->r0 + lo, min_z(j->r1, j->r0 + hi), 0, j->n,
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
} team = {.mu = PTHREAD_MUTEX_INITIALIZER, .busy_mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

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
void dn_run(job_t *j, int threads, int worth, void (*split_for)(job_t *, Py_ssize_t))
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

void dn_split_window(job_t *j, Py_ssize_t threads)
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

void dn_split_epilogue(job_t *j, Py_ssize_t threads)
{
    split(j, j->r1 - j->r0, threads, 1);
}

/* GEMM tasks, by rows, or by output columns when the rows are few: two
 * per thread, so that a thread whose core is taken away mid-layer holds up
 * half as much.  (Each BLAS call packs its share of the weights again;
 * Lite0 measured the same with one, two or four per thread.) */
void dn_split_gemm(job_t *j, Py_ssize_t threads)
{
    Py_ssize_t m = j->r1 - j->r0, tasks = threads > 1 ? 2 * threads : 1;
    if ((j->across = threads > 1 && m < 64 * threads && j->n >= 64 * threads))
        split(j, j->n, tasks, 16);
    else
        split(j, m, tasks, 1);
}

/* Dense tasks: bands of output channels, several per thread. */
void dn_split_dense(job_t *j, Py_ssize_t threads)
{
    split(j, j->n, 2 * threads, 16);
}
