/* pool.c - bounded FIFO job pool and ordered pipeline on pthreads (see
 * pool.h for the ordering guarantees).
 *
 * Both keep their state under one mutex per pool/pipe; condition variables
 * signal "work available", "space available" and "done". Workers block all
 * signals (the mask is set around pthread_create, so there is no window in
 * which a worker could take a SIGINT meant for the main thread). A worker's
 * error message lives in its thread-local qe_errmsg buffer, so it is copied
 * into the pool and re-raised with qe_fail on the thread that asks.
 *
 * Workload: a few to a few thousand jobs per second (chunks, documents);
 * the single mutex is never the bottleneck. qe_split: a fork-join of
 * threads per call (per matrix or slab of rows), no queue.
 */
/* sched_getaffinity: the CPUs this process may run on (a Slurm task's or a
 * container's share), not only how many the machine has */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define MAX_WORKERS 256
#define MAX_CAPACITY ((size_t)1 << 20)
#define ERR_CAP 1024

/* Start n threads running fn(arg) with every signal blocked. On failure the
 * threads already started are left in threads[0 .. *started). */
static qe_status start_threads(pthread_t *threads, int n, void *(*fn)(void *), void *arg,
                               const char *name, int *started)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    qe_status st = QE_OK;
    *started = 0;
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&threads[i], NULL, fn, arg);
        if (rc != 0) {
            st = qe_fail(QE_EIO, "%s: cannot start worker thread %d: %s", name, i, strerror(rc));
            break;
        }
        (*started)++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return st;
}

static qe_status check_opts(const char *name, int n_workers, size_t capacity, const void *fn)
{
    if (n_workers < 1 || n_workers > MAX_WORKERS)
        return qe_fail(QE_EINVAL, "%s: %d workers: expected 1 .. %d", name, n_workers, MAX_WORKERS);
    if (capacity < 1 || capacity > MAX_CAPACITY)
        return qe_fail(QE_EINVAL, "%s: capacity %zu: expected 1 .. %zu", name, capacity,
                       MAX_CAPACITY);
    if (!fn)
        return qe_fail(QE_EINVAL, "%s: no job function", name);
    return QE_OK;
}

/* ================= FIFO pool ================= */

struct qe_pool {
    qe_pool_opts o;
    char name[64];
    pthread_mutex_t mu;
    pthread_cond_t cv_job;   /* a job was queued, or stopping */
    pthread_cond_t cv_space; /* a slot became free */
    pthread_cond_t cv_idle;  /* queue empty and no job running */
    void **ring;             /* [capacity] queued jobs */
    size_t head, count;      /* oldest job, jobs queued */
    int active;              /* jobs being run */
    int stopping;            /* shutdown asked: finish the queue, then exit */
    int joined;
    qe_status err;           /* sticky first failure */
    char errmsg[ERR_CAP];
    pthread_t *threads;
    int n_threads;
};

static void pool_release(qe_pool *p, void *job)
{
    if (p->o.free_job)
        p->o.free_job(p->o.ctx, job);
}

static qe_status pool_error(qe_pool *p)
{
    return qe_fail(p->err, "%s", p->errmsg);
}

static void *pool_worker(void *arg)
{
    qe_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->cv_job, &p->mu);
        if (p->count == 0)
            break; /* stopping and drained */
        void *job = p->ring[p->head];
        p->head = (p->head + 1) % p->o.capacity;
        p->count--;
        pthread_cond_signal(&p->cv_space);
        if (p->err != QE_OK) {
            /* failed earlier: release unrun, in order */
            pthread_mutex_unlock(&p->mu);
            pool_release(p, job);
            pthread_mutex_lock(&p->mu);
        } else {
            p->active++;
            pthread_mutex_unlock(&p->mu);
            qe_errclear();
            qe_status st = p->o.run(p->o.ctx, job);
            pool_release(p, job);
            pthread_mutex_lock(&p->mu);
            p->active--;
            if (st != QE_OK && p->err == QE_OK) {
                p->err = st;
                snprintf(p->errmsg, sizeof p->errmsg, "%s",
                         *qe_errmsg() ? qe_errmsg() : qe_status_str(st));
            }
        }
        if (p->count == 0 && p->active == 0)
            pthread_cond_broadcast(&p->cv_idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qe_status qe_pool_new(const qe_pool_opts *o, qe_pool **out)
{
    *out = NULL;
    const char *name = o->name ? o->name : "pool";
    qe_status st = check_opts(name, o->n_workers, o->capacity, (const void *)o->run);
    if (st != QE_OK)
        return st;
    qe_pool *p = calloc(1, sizeof *p);
    if (!p)
        return qe_fail(QE_ENOMEM, "%s: out of memory", name);
    p->o = *o;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->o.name = p->name;
    p->ring = calloc(o->capacity, sizeof *p->ring);
    p->threads = calloc((size_t)o->n_workers, sizeof *p->threads);
    if (!p->ring || !p->threads) {
        free(p->ring);
        free(p->threads);
        free(p);
        return qe_fail(QE_ENOMEM, "%s: out of memory", name);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_job, NULL);
    pthread_cond_init(&p->cv_space, NULL);
    pthread_cond_init(&p->cv_idle, NULL);
    st = start_threads(p->threads, o->n_workers, pool_worker, p, p->name, &p->n_threads);
    if (st != QE_OK) {
        qe_pool_free(p);
        return st;
    }
    *out = p;
    return QE_OK;
}

qe_status qe_pool_submit(qe_pool *p, void *job)
{
    QE_ASSERT(job != NULL);
    pthread_mutex_lock(&p->mu);
    while (p->count == p->o.capacity && p->err == QE_OK && !p->stopping)
        pthread_cond_wait(&p->cv_space, &p->mu);
    qe_status st = QE_OK;
    if (p->err != QE_OK) {
        st = pool_error(p);
    } else if (p->stopping) {
        st = qe_fail(QE_EINVAL, "%s: job submitted after shutdown", p->name);
    } else {
        p->ring[(p->head + p->count) % p->o.capacity] = job;
        p->count++;
        pthread_cond_signal(&p->cv_job);
    }
    pthread_mutex_unlock(&p->mu);
    if (st != QE_OK)
        pool_release(p, job);
    return st;
}

qe_status qe_pool_wait(qe_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while ((p->count > 0 || p->active > 0) && !p->joined)
        pthread_cond_wait(&p->cv_idle, &p->mu);
    qe_status st = p->err != QE_OK ? pool_error(p) : QE_OK;
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* Let the workers finish the queue and join them; touches no message. */
static void pool_stop(qe_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv_job);
    pthread_cond_broadcast(&p->cv_space);
    int join = !p->joined;
    p->joined = 1;
    pthread_mutex_unlock(&p->mu);
    if (join)
        for (int i = 0; i < p->n_threads; i++)
            pthread_join(p->threads[i], NULL);
    /* Jobs left when no worker could take them (thread creation failed). */
    while (p->count > 0) {
        void *job = p->ring[p->head];
        p->head = (p->head + 1) % p->o.capacity;
        p->count--;
        pool_release(p, job);
    }
}

qe_status qe_pool_shutdown(qe_pool *p)
{
    pool_stop(p);
    return p->err != QE_OK ? pool_error(p) : QE_OK;
}

void qe_pool_free(qe_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    if (!p->joined && p->err == QE_OK) {
        /* Freed without shutdown: queued jobs are released, not run. */
        p->err = QE_EINTERRUPTED;
        snprintf(p->errmsg, sizeof p->errmsg, "%s: freed with jobs queued", p->name);
    }
    pthread_mutex_unlock(&p->mu);
    pool_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_job);
    pthread_cond_destroy(&p->cv_space);
    pthread_cond_destroy(&p->cv_idle);
    free(p->ring);
    free(p->threads);
    free(p);
}

/* ================= ordered pipeline ================= */

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct pipe_slot {
    void *item;
    int state;
    qe_status st;
    char *err; /* message of a failed work, malloc'ed */
};

struct qe_pipe {
    qe_pipe_opts o;
    char name[64];
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* an item was pushed, or stopping */
    pthread_cond_t cv_space; /* an item was popped */
    pthread_cond_t cv_done;  /* an item's work finished */
    struct pipe_slot *slots; /* [capacity], item seq at slots[seq % capacity] */
    uint64_t pushed, taken, popped; /* popped <= taken <= pushed <= popped + capacity */
    int ended, stopping;
    pthread_t *threads;
    int n_threads;
};

static void *pipe_worker(void *arg)
{
    qe_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->taken == p->pushed && !p->stopping)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stopping)
            break;
        uint64_t seq = p->taken++;
        struct pipe_slot *s = &p->slots[seq % p->o.capacity];
        s->state = SLOT_RUNNING;
        void *item = s->item;
        pthread_mutex_unlock(&p->mu);
        qe_errclear();
        qe_status st = p->o.work(p->o.ctx, seq, item);
        char *err = NULL;
        if (st != QE_OK)
            err = strdup(*qe_errmsg() ? qe_errmsg() : qe_status_str(st));
        pthread_mutex_lock(&p->mu);
        s->st = st;
        s->err = err;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qe_status qe_pipe_new(const qe_pipe_opts *o, qe_pipe **out)
{
    *out = NULL;
    const char *name = o->name ? o->name : "pipe";
    qe_status st = check_opts(name, o->n_workers, o->capacity, (const void *)o->work);
    if (st != QE_OK)
        return st;
    qe_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return qe_fail(QE_ENOMEM, "%s: out of memory", name);
    p->o = *o;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->o.name = p->name;
    p->slots = calloc(o->capacity, sizeof *p->slots);
    p->threads = calloc((size_t)o->n_workers, sizeof *p->threads);
    if (!p->slots || !p->threads) {
        free(p->slots);
        free(p->threads);
        free(p);
        return qe_fail(QE_ENOMEM, "%s: out of memory", name);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_space, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    st = start_threads(p->threads, o->n_workers, pipe_worker, p, p->name, &p->n_threads);
    if (st != QE_OK) {
        qe_pipe_free(p);
        return st;
    }
    *out = p;
    return QE_OK;
}

qe_status qe_pipe_push(qe_pipe *p, void *item)
{
    pthread_mutex_lock(&p->mu);
    while (p->pushed - p->popped == p->o.capacity && !p->ended)
        pthread_cond_wait(&p->cv_space, &p->mu);
    qe_status st = QE_OK;
    if (p->ended) {
        st = qe_fail(QE_EINVAL, "%s: item pushed after the end", p->name);
    } else {
        struct pipe_slot *s = &p->slots[p->pushed % p->o.capacity];
        s->item = item;
        s->state = SLOT_QUEUED;
        s->st = QE_OK;
        s->err = NULL;
        p->pushed++;
        pthread_cond_signal(&p->cv_work);
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

void qe_pipe_end(qe_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->ended = 1;
    pthread_cond_broadcast(&p->cv_done);
    pthread_cond_broadcast(&p->cv_space);
    pthread_mutex_unlock(&p->mu);
}

qe_status qe_pipe_pop(qe_pipe *p, void **item, uint64_t *seq)
{
    *item = NULL;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->popped < p->pushed && p->slots[p->popped % p->o.capacity].state == SLOT_DONE)
            break;
        if (p->popped == p->pushed && p->ended) {
            pthread_mutex_unlock(&p->mu);
            return QE_ENOTFOUND;
        }
        pthread_cond_wait(&p->cv_done, &p->mu);
    }
    struct pipe_slot *s = &p->slots[p->popped % p->o.capacity];
    *item = s->item;
    if (seq)
        *seq = p->popped;
    qe_status st = s->st;
    char *err = s->err;
    s->state = SLOT_FREE;
    s->item = NULL;
    s->err = NULL;
    p->popped++;
    pthread_cond_signal(&p->cv_space);
    pthread_mutex_unlock(&p->mu);
    if (st != QE_OK)
        qe_fail(st, "%s", err ? err : qe_status_str(st));
    free(err);
    return st;
}

void qe_pipe_free(qe_pipe *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    p->ended = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_cond_broadcast(&p->cv_space);
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    for (uint64_t s = p->popped; s < p->pushed; s++) {
        struct pipe_slot *sl = &p->slots[s % p->o.capacity];
        if (p->o.free_item && sl->item)
            p->o.free_item(p->o.ctx, sl->item);
        free(sl->err);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_space);
    pthread_cond_destroy(&p->cv_done);
    free(p->slots);
    free(p->threads);
    free(p);
}

qe_status qe_pipe_run(const qe_pipe_opts *o, uint64_t n, qe_pipe_make_fn make,
                      qe_pipe_consume_fn consume, void *ctx)
{
    qe_pipe *p = NULL;
    qe_status st = qe_pipe_new(o, &p);
    uint64_t made = 0, consumed = 0;
    while (st == QE_OK && consumed < n) {
        /* Keep the pipe full, then take the next item in order. */
        while (made < n && made - consumed < o->capacity) {
            void *item = NULL;
            st = make(ctx, made, &item);
            if (st != QE_OK)
                break;
            QE_ASSERT(item != NULL);
            st = qe_pipe_push(p, item);
            QE_ASSERT(st == QE_OK); /* never full, never ended here */
            made++;
        }
        if (st != QE_OK)
            break;
        void *item;
        uint64_t seq;
        st = qe_pipe_pop(p, &item, &seq);
        if (st != QE_OK) {
            if (item && o->free_item)
                o->free_item(o->ctx, item);
            break;
        }
        consumed++;
        st = consume(ctx, seq, item);
    }
    qe_pipe_free(p);
    return st;
}

/* ---- fork-join split ---- */

int qe_split_cpus(void)
{
    long n = 0;
    const char *env = getenv("QEVAL_THREADS");
    if (env && *env) {
        char *end;
        errno = 0;
        n = strtol(env, &end, 10);
        if (errno || *end || n < 1) {
            /* said once a process: every split asks */
            static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
            static int warned;
            pthread_mutex_lock(&mu);
            if (!warned)
                qe_log_warn("QEVAL_THREADS=%s is not a thread count of 1 or more: ignored", env);
            warned = 1;
            pthread_mutex_unlock(&mu);
            n = 0;
        }
    }
    cpu_set_t set;
    if (n < 1 && sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > QE_SPLIT_MAX ? QE_SPLIT_MAX : (int)n;
}

int qe_split_threads(int64_t elements)
{
    return elements < QE_SPLIT_MIN ? 1 : qe_split_cpus();
}

typedef struct {
    qe_split_fn fn;
    void *ctx;
    int64_t i0, i1;
    int rc;
} split_range;

static void *split_run(void *arg)
{
    split_range *r = arg;
    r->rc = r->fn(r->ctx, r->i0, r->i1);
    return NULL;
}

int qe_split(int64_t n, int n_threads, qe_split_fn fn, void *ctx)
{
    if (n <= 0)
        return 0;
    int64_t nt = n_threads < 1 ? 1 : n_threads > QE_SPLIT_MAX ? QE_SPLIT_MAX : n_threads;
    if (nt > n)
        nt = n;
    split_range r[QE_SPLIT_MAX];
    pthread_t tid[QE_SPLIT_MAX];
    int started[QE_SPLIT_MAX] = {0};
    for (int64_t k = 0; k < nt; k++)
        r[k] = (split_range){fn, ctx, n * k / nt, n * (k + 1) / nt, 0};
    /* the threads block every signal, as the pool's workers do */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int64_t k = 1; k < nt; k++)
        started[k] = pthread_create(&tid[k], NULL, split_run, &r[k]) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    split_run(&r[0]);
    for (int64_t k = 1; k < nt; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            split_run(&r[k]);
    }
    for (int64_t k = 0; k < nt; k++)
        if (r[k].rc)
            return r[k].rc;
    return 0;
}
