/* check_pool.c - FIFO pool ordering, backpressure, sticky failures; the
 * ordered pipeline gives the same sequence for 1, 2 and 8 workers. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- FIFO pool ---- */

struct rec {
    pthread_mutex_t mu;
    int order[1000]; /* job values in the order they ran */
    int n_run;
    int n_freed;
    int fail_at;     /* job value that fails, -1 none */
    int sigint_blocked;
    /* gate: jobs wait while closed */
    pthread_cond_t cv;
    int gate_open;
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->fail_at = -1;
    r->gate_open = 1;
    r->sigint_blocked = 1;
}

static qe_status rec_run(void *ctx, void *job)
{
    struct rec *r = ctx;
    int v = *(int *)job;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    pthread_mutex_lock(&r->mu);
    if (!sigismember(&cur, SIGINT) || !sigismember(&cur, SIGTERM))
        r->sigint_blocked = 0;
    while (!r->gate_open)
        pthread_cond_wait(&r->cv, &r->mu);
    r->order[r->n_run++] = v;
    pthread_mutex_unlock(&r->mu);
    if (v == r->fail_at)
        return qe_fail(QE_EDB, "job %d: disk on fire", v);
    return QE_OK;
}

static void rec_free(void *ctx, void *job)
{
    struct rec *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->n_freed++;
    pthread_mutex_unlock(&r->mu);
    free(job);
}

static int *job_of(int v)
{
    int *j = malloc(sizeof *j);
    *j = v;
    return j;
}

START_TEST(test_pool_fifo_one_worker)
{
    struct rec r;
    rec_init(&r);
    qe_pool_opts o = {"writer", 1, 4, rec_run, rec_free, &r};
    qe_pool *p;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    for (int i = 0; i < 500; i++)
        ck_assert_int_eq(qe_pool_submit(p, job_of(i)), QE_OK);
    ck_assert_int_eq(qe_pool_wait(p), QE_OK);
    ck_assert_int_eq(r.n_run, 500);
    for (int i = 0; i < 500; i++)
        ck_assert_int_eq(r.order[i], i);
    for (int i = 500; i < 600; i++)
        ck_assert_int_eq(qe_pool_submit(p, job_of(i)), QE_OK);
    ck_assert_int_eq(qe_pool_shutdown(p), QE_OK); /* drains the queue */
    ck_assert_int_eq(r.n_run, 600);
    ck_assert_int_eq(r.n_freed, 600);
    ck_assert_int_eq(r.order[599], 599);
    ck_assert_int_eq(r.sigint_blocked, 1);
    qe_pool_free(p);
}
END_TEST

START_TEST(test_pool_many_workers)
{
    struct rec r;
    rec_init(&r);
    qe_pool_opts o = {"w8", 8, 3, rec_run, rec_free, &r};
    qe_pool *p;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(qe_pool_submit(p, job_of(i)), QE_OK);
    ck_assert_int_eq(qe_pool_shutdown(p), QE_OK);
    /* each job ran exactly once */
    char seen[1000] = {0};
    ck_assert_int_eq(r.n_run, 1000);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(seen[r.order[i]], 0);
        seen[r.order[i]] = 1;
    }
    ck_assert_int_eq(r.n_freed, 1000);
    ck_assert_int_eq(r.sigint_blocked, 1);
    qe_pool_free(p);
}
END_TEST

struct submitter {
    qe_pool *p;
    int returned;
    pthread_mutex_t mu;
};

static void *submit_thread(void *arg)
{
    struct submitter *s = arg;
    qe_status st = qe_pool_submit(s->p, job_of(99));
    pthread_mutex_lock(&s->mu);
    s->returned = st == QE_OK ? 1 : -1;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

START_TEST(test_pool_backpressure)
{
    struct rec r;
    rec_init(&r);
    r.gate_open = 0;
    qe_pool_opts o = {"bp", 1, 2, rec_run, rec_free, &r};
    qe_pool *p;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    ck_assert_int_eq(qe_pool_submit(p, job_of(0)), QE_OK); /* taken, waits at the gate */
    sleep_ms(50);
    ck_assert_int_eq(qe_pool_submit(p, job_of(1)), QE_OK); /* queue: 1 */
    ck_assert_int_eq(qe_pool_submit(p, job_of(2)), QE_OK); /* queue: 1 2 (full) */
    struct submitter s = {p, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t;
    pthread_create(&t, NULL, submit_thread, &s);
    sleep_ms(100);
    pthread_mutex_lock(&s.mu);
    int early = s.returned;
    pthread_mutex_unlock(&s.mu);
    ck_assert_int_eq(early, 0); /* still blocked: the queue is full */
    pthread_mutex_lock(&r.mu);
    r.gate_open = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(t, NULL);
    ck_assert_int_eq(s.returned, 1);
    ck_assert_int_eq(qe_pool_shutdown(p), QE_OK);
    ck_assert_int_eq(r.n_run, 4);
    ck_assert_int_eq(r.order[3], 99);
    qe_pool_free(p);
}
END_TEST

START_TEST(test_pool_sticky_failure)
{
    struct rec r;
    rec_init(&r);
    r.fail_at = 3;
    qe_pool_opts o = {"writer", 1, 2, rec_run, rec_free, &r};
    qe_pool *p;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    qe_status st = QE_OK;
    int submitted = 0;
    for (int i = 0; i < 50 && st == QE_OK; i++) {
        st = qe_pool_submit(p, job_of(i));
        submitted++;
    }
    if (st == QE_OK)
        st = qe_pool_wait(p);
    ck_assert_int_eq(st, QE_EDB);
    ck_assert_str_eq(qe_errmsg(), "job 3: disk on fire");
    /* nothing after the failed job ran */
    ck_assert_int_eq(r.n_run, 4);
    ck_assert_int_eq(r.order[3], 3);
    qe_errclear();
    ck_assert_int_eq(qe_pool_submit(p, job_of(1000)), QE_EDB);
    ck_assert_str_eq(qe_errmsg(), "job 3: disk on fire");
    ck_assert_int_eq(qe_pool_shutdown(p), QE_EDB);
    qe_pool_free(p);
    ck_assert_int_eq(r.n_freed, submitted + 1); /* every job released once */
}
END_TEST

START_TEST(test_pool_free_without_shutdown)
{
    struct rec r;
    rec_init(&r);
    r.gate_open = 0;
    qe_pool_opts o = {"f", 1, 8, rec_run, rec_free, &r};
    qe_pool *p;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(qe_pool_submit(p, job_of(i)), QE_OK);
    sleep_ms(20);
    pthread_mutex_lock(&r.mu);
    r.gate_open = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    qe_pool_free(p); /* the running job finishes, the rest are released */
    ck_assert_int_eq(r.n_freed, 5);
    ck_assert_int_le(r.n_run, 5);
    qe_pool_free(NULL);
}
END_TEST

/* ---- ordered pipeline ---- */

struct item {
    uint64_t seq;
    double value;    /* set by work */
    int done_rank;   /* completion order among workers */
};

struct pctx {
    pthread_mutex_t mu;
    int n_done;
    int fail_seq;
    int n_freed;
    int n_made;
    double sum;      /* consumer's running sum, order-sensitive */
    uint64_t next;   /* the consumer's expected seq */
    int order_ok;
    int first_done;  /* seq of the first item to finish */
};

/* Values of very different magnitudes: their floating-point sum depends on
 * the order they are added in. */
static double value_of(uint64_t seq)
{
    double v = (seq % 3 == 0 ? 1e16 : 1.0) * (1.0 + (double)(seq % 7) / 3.0);
    return seq % 2 ? -v : v;
}

static qe_status p_work(void *ctx, uint64_t seq, void *it)
{
    struct pctx *c = ctx;
    struct item *x = it;
    if (seq == 0)
        sleep_ms(100); /* item 0 finishes last when others run beside it */
    x->value = value_of(seq);
    pthread_mutex_lock(&c->mu);
    if (c->n_done == 0)
        c->first_done = (int)seq;
    x->done_rank = c->n_done++;
    pthread_mutex_unlock(&c->mu);
    if ((int)seq == c->fail_seq)
        return qe_fail(QE_ECORRUPT, "item %llu: bad row", (unsigned long long)seq);
    return QE_OK;
}

static qe_status p_make(void *ctx, uint64_t seq, void **out)
{
    struct pctx *c = ctx;
    struct item *x = calloc(1, sizeof *x);
    if (!x)
        return qe_fail(QE_ENOMEM, "oom");
    x->seq = seq;
    c->n_made++;
    *out = x;
    return QE_OK;
}

static qe_status p_consume(void *ctx, uint64_t seq, void *it)
{
    struct pctx *c = ctx;
    struct item *x = it;
    if (seq != c->next || x->seq != seq)
        c->order_ok = 0;
    c->next++;
    c->sum += x->value;
    free(x);
    return QE_OK;
}

static void p_free(void *ctx, void *it)
{
    struct pctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->n_freed++;
    pthread_mutex_unlock(&c->mu);
    free(it);
}

static void pctx_init(struct pctx *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->fail_seq = -1;
    c->order_ok = 1;
    c->first_done = -1;
}

START_TEST(test_pipe_order_1_2_8)
{
    /* The sum computed sequentially, without the pipe. */
    double expect = 0, reversed = 0;
    for (uint64_t s = 0; s < 300; s++)
        expect += value_of(s);
    for (uint64_t s = 300; s-- > 0;)
        reversed += value_of(s);
    ck_assert(expect != reversed); /* so the check below can see order */
    int workers[] = {1, 2, 8};
    for (int w = 0; w < 3; w++) {
        struct pctx c;
        pctx_init(&c);
        qe_pipe_opts o = {"tok", workers[w], 16, p_work, p_free, &c};
        ck_assert_int_eq(qe_pipe_run(&o, 300, p_make, p_consume, &c), QE_OK);
        ck_assert_int_eq(c.order_ok, 1);
        ck_assert_int_eq((int)c.next, 300);
        ck_assert(c.sum == expect); /* bit-identical */
        ck_assert_int_eq(c.n_freed, 0);
        if (workers[w] >= 2)
            ck_assert_int_ne(c.first_done, 0); /* work finished out of order... */
    }
}
END_TEST

START_TEST(test_pipe_push_pop)
{
    struct pctx c;
    pctx_init(&c);
    qe_pipe_opts o = {"pp", 4, 8, p_work, p_free, &c};
    qe_pipe *p;
    ck_assert_int_eq(qe_pipe_new(&o, &p), QE_OK);
    for (uint64_t s = 0; s < 8; s++) {
        void *x = NULL;
        p_make(&c, s, &x);
        ck_assert_int_eq(qe_pipe_push(p, x), QE_OK);
    }
    qe_pipe_end(p);
    void *it;
    uint64_t seq;
    for (uint64_t s = 0; s < 8; s++) {
        ck_assert_int_eq(qe_pipe_pop(p, &it, &seq), QE_OK);
        ck_assert_uint_eq(seq, s);
        ck_assert_uint_eq(((struct item *)it)->seq, s);
        free(it);
    }
    ck_assert_int_eq(qe_pipe_pop(p, &it, &seq), QE_ENOTFOUND);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(qe_pipe_push(p, &c), QE_EINVAL);
    qe_pipe_free(p);
}
END_TEST

START_TEST(test_pipe_error_stops_run)
{
    struct pctx c;
    pctx_init(&c);
    c.fail_seq = 5;
    qe_pipe_opts o = {"tok", 3, 4, p_work, p_free, &c};
    ck_assert_int_eq(qe_pipe_run(&o, 100, p_make, p_consume, &c), QE_ECORRUPT);
    ck_assert_str_eq(qe_errmsg(), "item 5: bad row");
    ck_assert_int_eq((int)c.next, 5); /* items 0..4 consumed, in order */
    ck_assert_int_eq(c.order_ok, 1);
    /* everything made was consumed or released exactly once */
    ck_assert_int_eq(c.n_made, 5 + c.n_freed);
}
END_TEST

/* qe_split: every index in exactly one range, ranges in order, the first
 * failing range's code, whatever the thread count. */
struct sctx {
    int hits[1000];
    int64_t fail_at; /* ranges ending past this index return 7 + their start; -1: none */
    int calls;
    pthread_mutex_t mu;
};

static int s_range(void *ctx, int64_t i0, int64_t i1)
{
    struct sctx *c = ctx;
    for (int64_t i = i0; i < i1; i++)
        c->hits[i]++; /* ranges are disjoint: no lock needed */
    pthread_mutex_lock(&c->mu);
    c->calls++;
    pthread_mutex_unlock(&c->mu);
    return c->fail_at >= 0 && i1 > c->fail_at ? (int)(7 + i0) : 0;
}

START_TEST(test_split)
{
    static const int64_t ns[] = {1, 2, 7, 64, 999, 1000};
    static const int threads[] = {1, 2, 3, 8, 64, 1000};
    ck_assert_int_ge(qe_split_cpus(), 1);
    ck_assert_int_le(qe_split_cpus(), QE_SPLIT_MAX);
    /* QEVAL_THREADS picks the count, clamped; junk is ignored */
    const char *was = getenv("QEVAL_THREADS");
    char *saved = was ? strdup(was) : NULL;
    setenv("QEVAL_THREADS", "3", 1);
    ck_assert_int_eq(qe_split_cpus(), 3);
    setenv("QEVAL_THREADS", "1000", 1);
    ck_assert_int_eq(qe_split_cpus(), QE_SPLIT_MAX);
    static const char *const junk[] = {"0", "-2", "4x", "many", "99999999999999999999"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        setenv("QEVAL_THREADS", junk[i], 1);
        ck_assert_int_ge(qe_split_cpus(), 1);
        ck_assert_int_le(qe_split_cpus(), QE_SPLIT_MAX);
    }
    if (saved)
        setenv("QEVAL_THREADS", saved, 1);
    else
        unsetenv("QEVAL_THREADS");
    free(saved);
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof threads / sizeof threads[0]; b++) {
            struct sctx c = {.fail_at = -1};
            pthread_mutex_init(&c.mu, NULL);
            ck_assert_int_eq(qe_split(ns[a], threads[b], s_range, &c), 0);
            for (int64_t i = 0; i < 1000; i++)
                ck_assert_msg(c.hits[i] == (i < ns[a]), "n %lld, %d threads: index %lld hit %d times",
                              (long long)ns[a], threads[b], (long long)i, c.hits[i]);
            const int64_t want = threads[b] > QE_SPLIT_MAX ? QE_SPLIT_MAX : threads[b];
            ck_assert_int_eq(c.calls, want < ns[a] ? want : ns[a]);
            pthread_mutex_destroy(&c.mu);
        }
    /* ranges of 100 from 400 on fail: the first by range order wins */
    struct sctx c = {.fail_at = 450};
    pthread_mutex_init(&c.mu, NULL);
    ck_assert_int_eq(qe_split(1000, 10, s_range, &c), 7 + 400);
    ck_assert_int_eq(c.calls, 10); /* every range ran */
    pthread_mutex_destroy(&c.mu);
}
END_TEST

START_TEST(test_limits)
{
    struct rec r;
    rec_init(&r);
    qe_pool *p;
    qe_pool_opts o = {"x", 0, 4, rec_run, NULL, &r};
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "0 workers"));
    o.n_workers = 1;
    o.capacity = 0;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "capacity 0"));
    o.capacity = 4;
    o.run = NULL;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_EINVAL);
    o.run = rec_run;
    o.n_workers = 100000;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_EINVAL);
    o.n_workers = 1;
    o.free_job = rec_free;
    ck_assert_int_eq(qe_pool_new(&o, &p), QE_OK);
    ck_assert_int_eq(qe_pool_shutdown(p), QE_OK);
    ck_assert_int_eq(qe_pool_submit(p, job_of(1)), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "after shutdown"));
    ck_assert_int_eq(r.n_freed, 1); /* the refused job was released */
    qe_pool_free(p);

    struct pctx c;
    pctx_init(&c);
    qe_pipe *pp;
    qe_pipe_opts po = {"y", 1, 0, p_work, NULL, &c};
    ck_assert_int_eq(qe_pipe_new(&po, &pp), QE_EINVAL);
    po.capacity = 2;
    po.work = NULL;
    ck_assert_int_eq(qe_pipe_new(&po, &pp), QE_EINVAL);
    qe_pipe_free(NULL);

    /* qe_split: nothing for n <= 0, one range for fewer than one thread */
    struct sctx sc = {.fail_at = -1};
    pthread_mutex_init(&sc.mu, NULL);
    ck_assert_int_eq(qe_split(0, 4, s_range, &sc), 0);
    ck_assert_int_eq(qe_split(-5, 4, s_range, &sc), 0);
    ck_assert_int_eq(sc.calls, 0);
    ck_assert_int_eq(qe_split(5, 0, s_range, &sc), 0);
    ck_assert_int_eq(qe_split(5, -3, s_range, &sc), 0);
    ck_assert_int_eq(sc.calls, 2);
    ck_assert_int_eq(sc.hits[4], 2);
    pthread_mutex_destroy(&sc.mu);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_pool_fifo_one_worker);
    tcase_add_test(tc, test_pool_many_workers);
    tcase_add_test(tc, test_pool_backpressure);
    tcase_add_test(tc, test_pool_sticky_failure);
    tcase_add_test(tc, test_pool_free_without_shutdown);
    tcase_add_test(tc, test_pipe_order_1_2_8);
    tcase_add_test(tc, test_pipe_push_pop);
    tcase_add_test(tc, test_pipe_error_stops_run);
    tcase_add_test(tc, test_split);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
