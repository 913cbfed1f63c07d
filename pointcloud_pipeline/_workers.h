/* Worker threads for the real-time kernels (_depth, _bev), where the caller never waits for a
 * worker that is late. Linux (futex, sched_getcpu); x86-64 and aarch64.
 *
 * Why not OpenMP: an OpenMP parallel region ends with a barrier that every thread of the team
 * must reach, so one worker preempted by another process (a robot's camera driver, planner...)
 * stalls the whole call for a scheduler time slice, even with a dynamic schedule; and idle
 * OpenMP threads spin for a while (OMP_WAIT_POLICY) against the processes beside them.
 *
 * Here the caller publishes a job of ``n`` items cut into chunks, wakes idle workers and works
 * on chunks itself; every thread claims the next chunk with one atomic increment. A worker that
 * wakes after the last chunk was claimed does nothing and the caller does not wait for it: the
 * call ends when every claimed chunk is done. So with every worker descheduled a call costs
 * the single-threaded time; the one wait left is for a worker preempted inside its chunk.
 * After a job a worker polls for the next one for PP_WORKER_SPIN_NS (kernels often come in a
 * row), then sleeps on a condition variable; workers stay off the caller's CPU (see
 * pp_place_workers).
 *
 * Which thread runs a chunk never changes the output: kernels write each item's own slots and
 * combine per-chunk results with order-free operations (integer sums, maxima).
 *
 * One job at a time per pool (each extension module has its own pool: this is a header of
 * static functions); a caller that finds the pool busy (another thread's call in flight) runs
 * its job alone instead of waiting. Workers are created on first use, up to the largest
 * ``threads - 1`` asked for; a worker that cannot be created means fewer helpers, never an
 * error. After fork() the child starts with no workers (they do not survive fork) and makes
 * new ones on its first parallel call.
 */
#ifndef POINTCLOUD_PIPELINE_WORKERS_H
#define POINTCLOUD_PIPELINE_WORKERS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sched_getcpu, pthread_setaffinity_np */
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PP_MAX_WORKERS 1024
#define PP_THREAD_NAME "pcp_worker"  /* as top -H and /proc/PID/task/TID/comm show it */
#define PP_CHUNKS_PER_THREAD 16  /* enough that a late thread's share is picked up by others */
#define PP_CALLER_SPIN_NS 100000  /* caller polls in-flight chunks this long, then sleeps */
#define PP_WORKER_SPIN_NS 50000   /* a worker polls for the next job this long, then sleeps */

/* A kernel's work on items [begin, end), run by thread ``worker`` (0 = the caller, then 1 to
 * threads - 1; index per-thread scratch with it). */
typedef void (*pp_chunk_fn)(void *context, int64_t begin, int64_t end, int worker);

typedef struct {
    pp_chunk_fn fn;
    void *context;
    int64_t items;
    int64_t chunk;
    int helpers_wanted;  /* threads - 1 */
    int helpers_joined;  /* guarded by pp_lock */
    atomic_int_fast64_t next;    /* first unclaimed item */
    atomic_int helpers_inside;   /* joined and not yet left (a futex word) */
} pp_job;

static pthread_mutex_t pp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pp_wake = PTHREAD_COND_INITIALIZER;   /* a job was published */
static pp_job *pp_current = NULL;    /* the published job; guarded by pp_lock */
static uint64_t pp_generation = 0;   /* written under pp_lock; polled with atomic loads */
static int pp_workers = 0;           /* started worker threads; guarded by pp_lock */
static pthread_t pp_threads[PP_MAX_WORKERS];  /* guarded by pp_lock */
static int pp_atfork_registered = 0; /* guarded by pp_lock */
static int pp_placement = -1;        /* keep workers off the caller's CPU; -1: not read yet */
static int pp_workers_off_cpu = -1;  /* the CPU the workers' affinity leaves out, -1: none */

static inline void pp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t pp_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Poll ``done(argument)`` for up to ``limit_ns``; returns its last value. */
static int pp_spin_until(int (*done)(const void *), const void *argument, int64_t limit_ns)
{
    int64_t deadline = pp_now_ns() + limit_ns;
    int polls;
    for (;;) {
        for (polls = 0; polls < 64; polls++) {
            if (done(argument))
                return 1;
            pp_cpu_relax();
        }
        if (pp_now_ns() >= deadline)
            return done(argument);
    }
}

static int pp_generation_changed(const void *seen)
{
    return __atomic_load_n(&pp_generation, __ATOMIC_RELAXED) != *(const uint64_t *)seen;
}

static int pp_helpers_left(const void *job)
{
    return atomic_load_explicit(&((pp_job *)job)->helpers_inside, memory_order_acquire) == 0;
}

static void pp_run_chunks(pp_job *job, int worker)
{
    int64_t begin, end;
    for (;;) {
        begin = atomic_fetch_add_explicit(&job->next, job->chunk, memory_order_relaxed);
        if (begin >= job->items)
            return;
        end = begin + job->chunk < job->items ? begin + job->chunk : job->items;
        job->fn(job->context, begin, end, worker);
    }
}

static void *pp_worker_main(void *first_generation)
{
    /* the generation before the job being published as this worker starts: it may join it */
    uint64_t seen = (uint64_t)(uintptr_t)first_generation;
    pp_job *job;
    int worker;
    pthread_mutex_lock(&pp_lock);
    for (;;) {
        while (pp_generation == seen || pp_current == NULL)
            pthread_cond_wait(&pp_wake, &pp_lock);
        seen = pp_generation;
        job = pp_current;
        if (job->helpers_joined >= job->helpers_wanted)
            continue;  /* enough helpers already: this job is not ours */
        worker = ++job->helpers_joined;
        atomic_fetch_add_explicit(&job->helpers_inside, 1, memory_order_relaxed);
        pthread_mutex_unlock(&pp_lock);
        pp_run_chunks(job, worker);
        /* Leave without the lock (a helper preempted while holding it would stall the caller).
         * release: the chunks' writes happen before the caller sees the count drop. This is
         * the helper's last access to the job, which the caller may free as soon as it sees
         * 0; the wake-up only names the address (at worst a spurious wake-up of a later
         * futex there, which futex users allow for). */
        if (atomic_fetch_sub_explicit(&job->helpers_inside, 1, memory_order_release) == 1)
            syscall(SYS_futex, &job->helpers_inside, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        /* kernels often come in a row (a frame's cloud, then its BEV): stay awake briefly so
         * that the next call does not pay a wake-up */
        pp_spin_until(pp_generation_changed, &seen, PP_WORKER_SPIN_NS);
        pthread_mutex_lock(&pp_lock);
    }
    return NULL;
}

static void pp_after_fork_in_child(void)
{
    /* only the forking thread exists in the child: forget the workers and their job */
    pthread_mutex_init(&pp_lock, NULL);
    pthread_cond_init(&pp_wake, NULL);
    pp_current = NULL;
    pp_workers = 0;
    pp_workers_off_cpu = -1;
}

static void pp_start_workers(int wanted)  /* call with pp_lock held */
{
    pthread_t thread;
    pthread_attr_t attr;
    if (!pp_atfork_registered) {
        pp_atfork_registered = pthread_atfork(NULL, NULL, pp_after_fork_in_child) == 0;
    }
    if (wanted > PP_MAX_WORKERS)
        wanted = PP_MAX_WORKERS;
    if (pp_workers >= wanted || pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);  /* kernels use little stack */
    while (pp_workers < wanted
           && pthread_create(&thread, &attr, pp_worker_main,
                             (void *)(uintptr_t)pp_generation) == 0) {
        pthread_setname_np(thread, PP_THREAD_NAME);
        pp_threads[pp_workers++] = thread;
        pp_workers_off_cpu = -1;  /* the new one has the full mask */
    }
    pthread_attr_destroy(&attr);
}

/* Keep the workers off the CPU the caller runs on (call with pp_lock held).
 *
 * A woken thread is often placed on its waker's CPU even when another CPU is idle; a worker
 * there only takes turns with the caller (or preempts it, and the caller then queues behind
 * other processes). So the workers may run on the caller's own CPUs (its affinity mask, read
 * again whenever the caller's CPU changes) except the one it is on. Costs a system call per
 * worker when the caller has moved to another CPU since the last call, none otherwise.
 * POINTCLOUD_PIPELINE_WORKER_AFFINITY=off leaves the workers' affinity alone. */
static void pp_place_workers(void)
{
    cpu_set_t allowed;
    const char *setting;
    int cpu, i;
    if (pp_placement < 0) {
        setting = getenv("POINTCLOUD_PIPELINE_WORKER_AFFINITY");
        pp_placement = setting == NULL || strcmp(setting, "off") != 0;
    }
    cpu = sched_getcpu();
    if (!pp_placement || cpu < 0 || cpu >= CPU_SETSIZE || cpu == pp_workers_off_cpu)
        return;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return;
    CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) == 0)
        return;  /* the caller may use one CPU only: nothing better to offer the workers */
    for (i = 0; i < pp_workers; i++)
        pthread_setaffinity_np(pp_threads[i], sizeof(allowed), &allowed);
    pp_workers_off_cpu = cpu;
}

/* Run fn over items [0, items) on up to ``threads`` threads (the caller included); returns
 * when every item is done. threads <= 1, a single chunk or a busy pool: the caller alone. */
static void pp_parallel_for(int64_t items, int threads, pp_chunk_fn fn, void *context)
{
    static const struct timespec pp_wait_limit = {0, 1000000};  /* re-check every 1 ms */
    pp_job job;
    int inside, wake;
    if (items <= 0)
        return;
    if (threads > PP_MAX_WORKERS + 1)
        threads = PP_MAX_WORKERS + 1;
    job.chunk = items / ((int64_t)threads * PP_CHUNKS_PER_THREAD);
    if (job.chunk < 1)
        job.chunk = 1;
    if (threads <= 1 || job.chunk >= items) {
        fn(context, 0, items, 0);
        return;
    }
    job.fn = fn;
    job.context = context;
    job.items = items;
    job.helpers_wanted = threads - 1;
    job.helpers_joined = 0;
    atomic_init(&job.next, 0);
    atomic_init(&job.helpers_inside, 0);

    pthread_mutex_lock(&pp_lock);
    if (pp_current != NULL) {  /* another caller's job in flight: do not wait for it */
        pthread_mutex_unlock(&pp_lock);
        fn(context, 0, items, 0);
        return;
    }
    pp_start_workers(threads - 1);
    pp_place_workers();
    pp_current = &job;
    __atomic_store_n(&pp_generation, pp_generation + 1, __ATOMIC_RELAXED);
    /* wake as many sleeping workers as the job can use (workers still polling after their
     * last job see the new generation without a wake-up) */
    for (wake = 0; wake < job.helpers_wanted && wake < pp_workers; wake++)
        pthread_cond_signal(&pp_wake);
    pthread_mutex_unlock(&pp_lock);

    pp_run_chunks(&job, 0);

    pthread_mutex_lock(&pp_lock);
    pp_current = NULL;  /* no helper joins from now on */
    pthread_mutex_unlock(&pp_lock);
    /* wait for the chunks helpers are still running: usually done by now, or within
     * microseconds; sleep only when a helper was preempted inside its chunk */
    if (pp_spin_until(pp_helpers_left, &job, PP_CALLER_SPIN_NS))
        return;
    while ((inside = atomic_load_explicit(&job.helpers_inside, memory_order_acquire)) != 0)
        syscall(SYS_futex, &job.helpers_inside, FUTEX_WAIT_PRIVATE, inside, &pp_wait_limit,
                NULL, 0);
}

/* total += value, from any thread (a kernel's per-chunk counts; integer: order-free) */
static inline void pp_add_int64(int64_t *total, int64_t value)
{
    __atomic_fetch_add(total, value, __ATOMIC_RELAXED);
}

#endif
