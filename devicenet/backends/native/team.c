/* The thread team: every call's work split into tasks, run by the caller
 * and the team's threads together. */
#include "native.h"

#if defined(__unix__) && !defined(__STDC_NO_ATOMICS__)
#define TEAM 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#endif

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

/* Cut a job into about ``tasks`` tasks of ``units`` units (rows, or
 * channels in multiples of ``align``). */
void dn_split(dn_job *j, ptrdiff_t units, ptrdiff_t tasks, ptrdiff_t align)
{
    ptrdiff_t blocks = (units + align - 1) / align;
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
    dn_job job;
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

static void take_tasks(const dn_job *j)
{
    for (;;) {
        ptrdiff_t t = (ptrdiff_t)atomic_fetch_add(&team.next_task, 1);
        if (t >= j->tasks)
            return;
        j->task(j, t);
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
static void team_run(dn_job *j)
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
static void team_run(dn_job *j) { (void)j; }

#endif

/* Run a job's tasks, on the team where it is free and the job is worth
 * sharing, else on the calling thread.  ``split(j, threads)`` cuts the
 * job for that many threads. */
void dn_run(dn_job *j, int threads, int worth, void (*split)(dn_job *, ptrdiff_t))
{
    int n = worth ? team_take(threads) : 0;
    split(j, n > 1 ? n : 1);
    if (n > 1) {
        team_run(j);
        return;
    }
    for (ptrdiff_t t = 0; t < j->tasks; t++)
        j->task(j, t);
}
