/* runner.h - `qeval run`: a job's runs, resumably, into the results store.
 *
 * qe_runner_run does, for a parsed job (job.h):
 *   1. open the store (job output, or opts->db_path), begin a session;
 *   2. open and hash every model and dataset the runs need (model: SHA-256
 *      of its weights file; dataset: of its documents; tokenizer: of the file
 *      the vocabulary comes from) and store them;
 *   3. for every run: compute its key (qe_store_run_key), create or find its
 *      row and read which chunks are stored (qe_store_run_begin);
 *   4. start the writer thread, which from then on owns the only write
 *      connection, fed through a bounded queue (pool.h);
 *   5. for every run not complete yet: call the evaluator with the task
 *      (model, dataset, formats, stored chunks) and a sink; the evaluator
 *      evaluates the chunks not stored and hands each chunk's results to
 *      the sink, which copies them to the writer (one transaction each);
 *   6. mark the run done (every planned chunk stored), partial (a chunk
 *      limit stopped it) or failed, end the session;
 *   7. [generate] (job->gen_runs): for every generation run (model x
 *      format over the prompts dataset; key qe_store_gen_key) with prompts
 *      not stored, call the generator with the stored-prompt set; it hands
 *      each finished prompt and device call to the sink; mark it done,
 *      partial (max_prompts) or failed.
 * An interrupted job resumes where it stopped: stored chunks are skipped,
 * and writing a chunk twice is a no-op. Results do not depend on the
 * number of workers or on n_seq: the evaluator must deliver each chunk's
 * numbers as a function of the chunk alone.
 *
 * Sharding (Slurm arrays): with shard_count N > 1 only runs i with
 * i % N == shard_index are evaluated; each task writes its own database and
 * `qeval merge` joins them (content keys never collide).
 *
 * Threading: call qe_runner_run from one thread. The evaluator runs on that
 * thread; sink calls must come from it too (they block while the writer's
 * queue is full).
 *
 * Wiring an evaluation loop (cmd/run.c's run_evaluator points at it):
 *   qe_status eval_run(void *ud, const qe_runner_task *t, qe_runner_sink *s)
 *   1. tokens: qe_dataset_tokenize(t->dataset, encode, tok, t->job->workers,
 *      &ids, &n) with `encode` calling the tokenizer opened from
 *      t->tokenizer_path (ids datasets need none: check them with
 *      qe_dataset_check_ids against n_vocab);
 *   2. plan: qe_chunk_plan_make(n, t->job->n_ctx, 0, bos, &plan) - the FULL
 *      plan - then qe_runner_plan(s, n, SHA-256 of the ids as int32 LE,
 *      plan.n_chunk);
 *   3. weights in t->run->weights, KV cache in t->run->kv_k / kv_v, batches
 *      of t->job->n_seq chunks, t->job->top_k entries per position;
 *   4. evaluate chunks i < t->max_chunks (when > 0) that are not
 *      qe_store_resume_has(t->stored, i); for each, fill a qe_store_chunk
 *      from the per-chunk callback (index, first, n_scored, targets,
 *      log-probs, argmax, top-k ids/log-probs, seconds; optionally logits
 *      every t->job->store_logits-th position) and return
 *      qe_runner_chunk(s, &c) from the callback so a writer failure stops
 *      the loop;
 *   5. qe_runner_weight_bytes (converted weights), qe_runner_timing per
 *      phase (and qe_runner_kernel_timing per kernel when profiling), and
 *      for a variant (t->ref_run_key != NULL) qe_runner_kld.
 */
#ifndef QE_RUNNER_H
#define QE_RUNNER_H

#include <stdint.h>

#include "dataset.h"
#include "job.h"
#include "metrics.h"
#include "model.h"
#include "status.h"
#include "store.h"

typedef struct qe_runner_sink qe_runner_sink;

/* One run to evaluate. Everything is owned by the runner and valid during
 * the evaluator call. */
typedef struct qe_runner_task {
    const qe_job *job;             /* n_ctx, n_seq, top_k, workers, store_logits ... */
    size_t index;                  /* into job->runs */
    const qe_job_run *run;         /* weights, kv_k, kv_v formats */
    const qe_job_model *model_spec;
    const qe_job_dataset *dataset_spec;
    const qe_model *model;         /* as stored in its file (native weights) */
    const qe_dataset *dataset;     /* documents, or ids for an ids dataset */
    const char *tokenizer_path;    /* the file holding the vocabulary: the
                                      [model] tokenizer, the .gguf, or an HF
                                      directory's tokenizer.json */
    const char *run_key;
    const char *ref_run_key;       /* the KLD reference, NULL for a reference */
    const qe_store_resume *stored; /* chunks already stored: skip those */
    int64_t max_chunks;            /* evaluate chunks below this index only; 0 = all */
} qe_runner_task;

/* Evaluate one run: plan (qe_runner_plan), then every chunk i of the plan
 * with i < max_chunks (when > 0) and !qe_store_resume_has(stored, i), each
 * handed to qe_runner_chunk. Return QE_OK, or the first error (including
 * one returned by a sink call). */
typedef qe_status (*qe_runner_eval_fn)(void *ud, const qe_runner_task *t, qe_runner_sink *sink);

/* Called before each run is evaluated or skipped (progress display). */
typedef void (*qe_runner_note_fn)(void *ud, const qe_runner_task *t, int will_evaluate);

/* One generation run ([generate], job->gen_runs): the prompts continued by
 * one model in one weight/KV format. Owned by the runner, valid during the
 * generator call. */
typedef struct qe_runner_gen_task {
    const qe_job *job;
    size_t index;                  /* into job->gen_runs */
    const qe_job_run *run;         /* weights, kv_k, kv_v; dataset = the prompts */
    const qe_job_model *model_spec;
    const qe_job_dataset *prompts_spec;
    const qe_model *model;         /* native weights */
    const qe_dataset *prompts;     /* one prompt per document */
    const char *tokenizer_path;
    const char *gen_key;
    const char *ref_gen_key;       /* the reference format's run, NULL for it */
    const uint8_t *done;           /* [n_prompts] 1: stored already, skip it */
    size_t n_prompts, n_done;
    int64_t max_prompts;           /* generate prompts i < max_prompts only; 0 = all */
} qe_runner_gen_task;

/* Generate every prompt i with !t->done[i] (and i < max_prompts when > 0),
 * handing each result to qe_runner_gen_prompt and each device call to
 * qe_runner_gen_step. Return QE_OK or the first error. */
typedef qe_status (*qe_runner_gen_fn)(void *ud, const qe_runner_gen_task *t,
                                      qe_runner_sink *sink);
typedef void (*qe_runner_gen_note_fn)(void *ud, const qe_runner_gen_task *t, int will_generate);

typedef struct qe_runner_opts {
    qe_runner_eval_fn evaluate; /* required unless dry_run */
    void *ud;                   /* passed to evaluate and note */
    qe_runner_note_fn note;     /* optional */
    int dry_run;                /* hash and compute keys; read the store if it
                                   exists; write nothing, evaluate nothing */
    const char *db_path;        /* NULL: job->output */
    const char *device;         /* for the session and run rows; NULL = "none" */
    const char *driver;         /* NULL = "none" */
    int shard_index, shard_count; /* shard_count <= 1: every run */
    int queue;                  /* writer queue capacity; 0 = 64 */
    /* [generate]: generation runs follow the perplexity runs; their shard
     * index is job->n_runs + their index in job->gen_runs */
    qe_runner_gen_fn generate;  /* required for a job with [generate] unless dry_run */
    qe_runner_gen_note_fn gen_note; /* optional */
    int64_t max_prompts;        /* prompts per generation run at most; 0 = all */
    const char *gemm;           /* for the session row: the engine's matmul kernels
                                   ("f32", "mma"; NULL = "-", the C reference) */
} qe_runner_opts;

typedef struct qe_runner_stats {
    size_t runs;            /* in this shard */
    size_t evaluated;       /* runs the evaluator was called for */
    size_t complete;        /* runs found complete (skipped) */
    int64_t chunks_sent;    /* chunks handed to the sink */
    size_t gen_runs;        /* generation runs in this shard */
    size_t gen_evaluated;   /* generation runs the generator was called for */
    size_t gen_complete;    /* found complete (skipped) */
    int64_t prompts_sent;   /* prompts handed to the sink */
} qe_runner_stats;

qe_status qe_runner_run(const qe_job *job, const qe_runner_opts *o, qe_runner_stats *stats);

/* ---- the sink: called by the evaluator ---- */

/* The run's plan: tokens of the dataset, their SHA-256 (int32
 * little-endian ids), and chunks in the full plan. Must come before the
 * first chunk; a plan that differs from the stored one is QE_ECORRUPT. */
qe_status qe_runner_plan(qe_runner_sink *s, int64_t n_tokens, const uint8_t tokens_sha256[32],
                         int64_t n_chunks);
/* One chunk's results (qe_store_chunk; arrays are copied before return).
 * job store_tokens = no drops the token rows. Blocks while the writer's
 * queue is full; returns the writer's error once it failed. */
qe_status qe_runner_chunk(qe_runner_sink *s, const qe_store_chunk *c);
/* Bytes of the weights in the evaluated format (for bits per weight). */
qe_status qe_runner_weight_bytes(qe_runner_sink *s, uint64_t bytes);
/* Seconds spent in a phase ("load", "tokenize", "prefill", ...). */
qe_status qe_runner_timing(qe_runner_sink *s, const char *phase, double seconds,
                           uint64_t n_tokens);
/* Device seconds of one kernel over the run and its launches (OpenCL
 * profiling events): a timings row with phase "kernel:<name>". */
qe_status qe_runner_kernel_timing(qe_runner_sink *s, const char *kernel, double seconds,
                                  uint64_t n_calls);
/* The KLD summary of this run against task->ref_run_key. */
qe_status qe_runner_kld(qe_runner_sink *s, const qe_kld_summary *k);

/* Generation runs: one finished prompt (arrays copied before return), one
 * device call (buffered; written when the generator returns). */
qe_status qe_runner_gen_prompt(qe_runner_sink *s, const qe_store_gen_prompt *p);
qe_status qe_runner_gen_step(qe_runner_sink *s, const qe_store_gen_step *step);

#endif
