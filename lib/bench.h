/* bench.h - speed tests in the manner of llama-bench: prompt processing
 * (pp) and text generation (tg), crossed over lists of settings, with a
 * warm-up and repeated measurements; outputs as markdown, CSV or JSON, and
 * rows in the results database.
 *
 * Tests (b = sequences side by side):
 *   ppN  prefill of N tokens for each of b sequences from an empty cache
 *        (qe_engine_prefill, statistics of the last position only, as
 *        llama-bench asks for the last token's logits); b*N tokens.
 *   pplN perplexity-style prefill of N tokens for each of b sequences
 *        (N >= 2): the same forward, then the LM head, log-softmax and
 *        each target's log-prob for the scored half as qeval perplexity
 *        and bench/torch_peer.py's prefill compute them: rows for positions
 *        N/2-1 .. N-1 (N - N/2 + 1 of them, the last without a target),
 *        targets the next tokens; statistics read back; b*N tokens. This is
 *        the test to set against PyTorch's prefill, which does that work;
 *        ppN leaves out the head of all but one row per sequence.
 *   tgN  N decode steps for each of b sequences from an empty cache
 *        (qe_decode_run, one token per sequence per step at positions
 *        0 .. N-1, each step's arg-max fed back); b*N tokens.
 * Token ids are drawn from a fixed-seed generator. Each test runs once
 * untimed (warm-up), then `reps` times; tokens/s = tokens / wall seconds of
 * a repetition (host round trips included), reported as mean and sample
 * standard deviation over the repetitions (llama-bench's avg_ts, stdev_ts).
 *
 * The cross product, in output order: weights x kv x b x (pp sizes, ppl
 * sizes, then tg sizes); one engine per (weights, kv, b), sized for the largest test.
 * Weights: "file" (as stored, as qeval perplexity --weights names it) or a
 * requantization target (f32, f16, q8_0, q4_0; lib/quant.h's policy). KV: a lib/kv_format.h name for both caches,
 * or "K/V" for two ("q8_0/f16").
 *
 * Profiling: with a qe_cl opened with QE_CL_PROFILE and opts.profile, the
 * device time of every kernel launch of the measured repetitions is summed
 * per kernel name (lib/cl.h qe_cl_profile_take) and reported per repetition.
 *
 * Threading: one call runs on the caller's thread (and its qe_cl).
 */
#ifndef QE_BENCH_H
#define QE_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "cl.h"
#include "engine.h"
#include "kv_format.h"
#include "model.h"
#include "status.h"

typedef struct qe_bench_opts {
    const int *n_prompt;        /* [n_n_prompt] pp sizes; a 0 entry is skipped */
    int n_n_prompt;
    const int *n_ppl;           /* [n_n_ppl] ppl sizes; may be empty, a 0 entry is skipped */
    int n_n_ppl;
    const int *n_gen;           /* [n_n_gen] tg sizes; a 0 entry is skipped */
    int n_n_gen;
    const int *n_batch;         /* [n_n_batch] sequences side by side, >= 1 */
    int n_n_batch;
    const char *const *weights; /* [n_weights] "file", "f32", "f16", "q8_0", "q4_0" */
    int n_weights;
    const char *const *kv;      /* [n_kv] cache formats, "F" or "K/V" */
    int n_kv;
    int reps;                   /* measured repetitions, >= 1 (default 5) */
    int warmup;                 /* an untimed repetition first (default 1) */
    int profile;                /* per-kernel device times (needs QE_CL_PROFILE) */
    uint64_t seed;              /* token ids */
    qe_gemm gemm;               /* matmul kernels (engine.h; default QE_GEMM_AUTO) */
} qe_bench_opts;

/* reps 5, warmup 1, no profile, seed 0; the lists are empty (the caller
 * provides them; the CLI's defaults are pp512, tg128, b 1, file, f16). */
qe_bench_opts qe_bench_opts_default(void);

/* One measured test. Arrays are valid during the callback only. */
typedef struct qe_bench_result {
    char test[32];              /* "pp512", "ppl512", "tg128" */
    int n_prompt, n_gen;        /* one of them is 0 (pp and ppl: n_prompt) */
    int scored;                 /* ppl: rows with a target a sequence (N - N/2); else 0 */
    double nll;                 /* ppl: mean -log p(target) over those rows, last repetition */
    int n_batch;
    const char *weights;        /* as given */
    qe_kv_format kv_k, kv_v;
    const char *gemm;           /* the matmul kernels used: "f32" or "mma" (qe_gemm_name) */
    int n_ctx;                  /* the engine's positions per sequence */
    uint64_t n_params, weight_bytes; /* of the model as benchmarked */
    int64_t n_tokens;           /* tokens per repetition: b * (n_prompt or n_gen) */
    int reps;
    const double *seconds;      /* [reps] wall seconds per repetition */
    const double *tps;          /* [reps] n_tokens / seconds */
    double mean_tps, stddev_tps;
    const qe_cl_kernel_time *kernels; /* [n_kernels] summed over the reps (profile) */
    size_t n_kernels;
    uint64_t launches, enqueue_ns; /* kernel launches and host time enqueueing them, summed
                                      over the reps (qe_cl_launch_stats) */
    uint64_t wait_ns;              /* host time blocked on the device over the reps
                                      (qe_cl_wait_ns) */
} qe_bench_result;

typedef qe_status (*qe_bench_fn)(void *ud, const qe_bench_result *r);

/* Validate options against the model before anything runs: non-empty lists
 * (the ppl list may be empty), pp/ppl/tg sizes in 0 .. 2^20 (ppl: 0 or >= 2)
 * with at least one test, b in 1 .. 65536, known
 * weight and KV names (the formats must fit the model's rows), reps >= 1.
 * QE_EINVAL naming the list and value; QE_EUNSUPPORTED for a KV format the
 * model's head sizes do not fit. */
qe_status qe_bench_check(const qe_model *m, const qe_bench_opts *o);

/* Run every test (qe_bench_check first) on cl and call fn with each result
 * in order. A non-OK return from fn stops the run with that status. */
qe_status qe_bench_run(const qe_model *m, qe_cl *cl, const qe_bench_opts *o, qe_bench_fn fn,
                       void *ud);

/* Mean and sample standard deviation (n - 1; 0 when n < 2) of x[0 .. n). */
void qe_bench_mean_sd(const double *x, int n, double *mean, double *sd);

/* Parse "F" or "K/V" into two formats (QE_EINVAL naming the text). */
qe_status qe_bench_parse_kv(const char *s, qe_kv_format *k, qe_kv_format *v);

/* ---- reporting (bench_out.c) ---- */

/* What every row of one model on one device shares. */
typedef struct qe_bench_env {
    char model_path[1024];
    char model_name[256];
    char model_sha256[65];   /* hex SHA-256 of the weights file; "" for built models */
    int synthetic;           /* the GGUF has qeval.synth.arch metadata */
    char synth_arch[64];     /* its value, "" otherwise */
    char device[256], driver[128], platform[128];
    const char *build_commit, *version;
} qe_bench_env;

/* Fill env from the model (hashes the weights file: ~1-2 s per GB) and the
 * device. */
qe_status qe_bench_env_make(const qe_model *m, qe_cl *cl, qe_bench_env *env);

typedef enum qe_bench_format { QE_BENCH_MD = 0, QE_BENCH_CSV, QE_BENCH_JSON } qe_bench_format;

/* "md", "csv", "json" (QE_EINVAL otherwise). */
qe_status qe_bench_parse_format(const char *s, qe_bench_format *out);

/* A results table written to f as rows arrive: markdown and CSV stream
 * (header first), JSON is one array written at qe_bench_out_end. Markdown
 * adds a per-kernel breakdown table after the main one for profiled
 * results; JSON carries a "kernels" array per result; CSV has no kernels. */
typedef struct qe_bench_out qe_bench_out;

qe_status qe_bench_out_begin(FILE *f, qe_bench_format fmt, const qe_bench_env *env,
                             qe_bench_out **out);
qe_status qe_bench_out_row(qe_bench_out *o, const qe_bench_result *r);
/* Finish the table (and the profile tables, JSON array); frees o. */
qe_status qe_bench_out_end(qe_bench_out *o);
void qe_bench_out_free(qe_bench_out *o); /* without finishing; NULL is fine */

/* Rows in the results database (lib/store.h; tables bench and bench_kernels,
 * schemas/004_bench.sql). One transaction per result: the bench row (every
 * setting, mean, stddev and each repetition as JSON arrays) and its kernel
 * rows. Its key is the SHA-256 of the row's settings, environment, samples
 * and time, so databases from several machines merge without collisions. */
typedef struct qe_bench_db qe_bench_db;

qe_status qe_bench_db_open(const char *path, qe_bench_db **out);
qe_status qe_bench_db_put(qe_bench_db *db, const qe_bench_env *env, const qe_bench_opts *o,
                          const qe_bench_result *r);
void qe_bench_db_close(qe_bench_db *db); /* NULL is fine */

#endif
