/* pool.h - worker threads fed through bounded queues (modelled on redis
 * bio.c): a FIFO job pool, and an ordered pipeline; and a fork-join split
 * of a range among threads.
 *
 * qe_pool: N workers take jobs from one bounded FIFO queue guarded by a
 *   mutex and condition variables. Ordering guarantee: jobs START in
 *   submission order; with one worker (the SQLite writer) each job also
 *   finishes before the next starts, so effects happen in submission order.
 *   Backpressure: qe_pool_submit blocks while `capacity` jobs wait.
 *   Failure is sticky: after a job returns an error the pool runs no further
 *   job (queued and later jobs are released unrun through free_job), and
 *   every later submit/wait/shutdown returns that error with its message.
 *   This keeps a writer from recording "run finished" after a lost chunk.
 *
 * qe_pipe: the ordered pipeline. The producer pushes items (sequence numbers
 *   0, 1, 2, ... in push order); N workers run `work` on them in any order
 *   and concurrently; the consumer pops them strictly in sequence order. So
 *   whatever the worker count, the consumer sees the same items in the same
 *   order, and results built by the consumer are bit-identical for 1, 2 or 8
 *   workers as long as `work` depends only on its item. At most `capacity`
 *   items are in flight (pushed, not yet popped): push blocks beyond that.
 *
 * Workers block every signal (signals go to the main thread). Shutdown is
 * explicit: qe_pool_shutdown / qe_pipe_free join the threads. Threads must
 * not be created before a fork() whose child uses the pool.
 *
 * Threading: submit/push may be called from any thread; pop from one
 * consumer thread at a time; wait/shutdown/free from the owner thread.
 */
#ifndef QE_POOL_H
#define QE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- FIFO job pool ---- */

typedef struct qe_pool qe_pool;

/* Runs one job on a worker thread; a non-OK status (with qe_fail's message
 * on that thread) stops the pool. */
typedef qe_status (*qe_pool_job_fn)(void *ctx, void *job);
/* Releases a job after it ran, or instead of running it (pool failed or
 * freed). NULL: jobs are not owned by the pool. */
typedef void (*qe_pool_free_fn)(void *ctx, void *job);

typedef struct qe_pool_opts {
    const char *name;          /* for messages, e.g. "writer"; NULL = "pool" */
    int n_workers;             /* 1 .. 256 */
    size_t capacity;           /* queued jobs at most, 1 .. 1<<20 */
    qe_pool_job_fn run;        /* required */
    qe_pool_free_fn free_job;  /* optional */
    void *ctx;                 /* passed to run and free_job */
} qe_pool_opts;

/* Start the workers. QE_EINVAL for options out of range, QE_ENOMEM, QE_EIO
 * when a thread cannot be created. */
qe_status qe_pool_new(const qe_pool_opts *o, qe_pool **out);

/* Queue a job (not NULL), blocking while the queue is full. If the pool has
 * failed or was shut down, the job is released through free_job and the
 * pool's error (or QE_EINVAL after shutdown) is returned. */
qe_status qe_pool_submit(qe_pool *p, void *job);

/* Block until every job submitted so far has finished (or was released
 * after a failure). Returns the pool's sticky error, QE_OK if none. */
qe_status qe_pool_wait(qe_pool *p);

/* Finish the queued jobs, stop and join the workers. Returns the sticky
 * error. Afterwards only qe_pool_free is allowed (submit returns EINVAL). */
qe_status qe_pool_shutdown(qe_pool *p);

/* Shut down if still running (jobs still queued are released unrun),
 * free everything. NULL is fine. */
void qe_pool_free(qe_pool *p);

/* ---- ordered pipeline ---- */

typedef struct qe_pipe qe_pipe;

/* Prepares item number `seq` on a worker thread. A non-OK status is handed
 * to the consumer with the item when it pops it; the pipe goes on. */
typedef qe_status (*qe_pipe_work_fn)(void *ctx, uint64_t seq, void *item);

typedef struct qe_pipe_opts {
    const char *name;          /* for messages; NULL = "pipe" */
    int n_workers;             /* 1 .. 256 */
    size_t capacity;           /* items in flight at most, 1 .. 1<<20 */
    qe_pipe_work_fn work;      /* required */
    qe_pool_free_fn free_item; /* releases items never popped (qe_pipe_free); optional */
    void *ctx;
} qe_pipe_opts;

qe_status qe_pipe_new(const qe_pipe_opts *o, qe_pipe **out);

/* Hand an item to the workers; its sequence number is the number of pushes
 * before it. Blocks while `capacity` items are in flight, so a thread that
 * both pushes and pops must pop before pushing more than capacity items
 * (qe_pipe_run does this). QE_EINVAL after qe_pipe_end. */
qe_status qe_pipe_push(qe_pipe *p, void *item);

/* No more pushes: pop returns QE_ENOTFOUND once every item was popped. */
void qe_pipe_end(qe_pipe *p);

/* The next item in sequence order once its work has finished (blocks).
 * *item and *seq are set even when the item's work failed: then that
 * status and message are returned and the caller still owns the item.
 * QE_ENOTFOUND (no message) after qe_pipe_end when nothing is left. */
qe_status qe_pipe_pop(qe_pipe *p, void **item, uint64_t *seq);

/* Stop the workers (items in progress finish), join them, release items
 * never popped through free_item. NULL is fine. */
void qe_pipe_free(qe_pipe *p);

/* Consumer of qe_pipe_run: called in sequence order on the calling thread.
 * The consumer owns the item from then on. A non-OK status stops the run. */
typedef qe_status (*qe_pipe_consume_fn)(void *ctx, uint64_t seq, void *item);
/* Producer of qe_pipe_run: sets *item to the item numbered seq (not NULL).
 * Runs on the calling thread; a non-OK status stops the run. */
typedef qe_status (*qe_pipe_make_fn)(void *ctx, uint64_t seq, void **item);

/* The whole pipeline on the calling thread: for seq in 0 .. n-1 make an
 * item, let the workers prepare it, consume it in order. The first error
 * (from make, work or consume) stops it and is returned; items not consumed
 * are released through o->free_item. */
qe_status qe_pipe_run(const qe_pipe_opts *o, uint64_t n, qe_pipe_make_fn make,
                      qe_pipe_consume_fn consume, void *ctx);

/* ---- fork-join split ---- */

#define QE_SPLIT_MAX 64 /* threads of one split at most */

/* The threads a split uses by default, 1 .. QE_SPLIT_MAX: QEVAL_THREADS
 * when it holds a count of 1 or more (anything else is ignored with a
 * warning), else the CPUs this process may run on (its affinity mask: a
 * Slurm task's cores, not the whole node's), else the online CPUs. */
int qe_split_cpus(void);

/* Below this many elements of work (of row conversions at about 5 ns an
 * element, 0.3 ms on one core) a split runs on the calling thread: starting
 * threads (tens of us each) would cost more than they save. */
#define QE_SPLIT_MIN ((int64_t)1 << 16)

/* Threads for a split of `elements` elements of work: qe_split_cpus, or 1
 * below QE_SPLIT_MIN. */
int qe_split_threads(int64_t elements);

/* Runs range [i0, i1) of a split. Returns 0, or a nonzero code that
 * qe_split returns; it must not need a message from this thread (qe_fail's
 * is per thread): the caller of qe_split writes one. */
typedef int (*qe_split_fn)(void *ctx, int64_t i0, int64_t i1);

/* fn over [0, n) cut into n_threads contiguous ranges (range k is
 * [n k / t, n (k + 1) / t), t = min(n_threads, n)), range 0 on the calling
 * thread and the others on threads of their own, joined before it returns;
 * a range whose thread cannot start runs on the calling thread afterwards.
 * For work whose results do not depend on the cut (each index by itself),
 * so the same for any n_threads. Returns the first nonzero code by range,
 * 0 if none. n_threads is clamped to 1 .. QE_SPLIT_MAX; n <= 0 runs nothing. */
int qe_split(int64_t n, int n_threads, qe_split_fn fn, void *ctx);

#endif
