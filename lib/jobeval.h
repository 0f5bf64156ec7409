/* jobeval.h - the evaluator `qeval run` hands each run of a job to: it joins
 * the job runner (lib/runner.h: datasets, store, writer thread) and the
 * perplexity loop (lib/eval.h: chunks on the device).
 *
 *   task -> dataset documents --qe_dataset_tokenize (workers, ordered)--> ids
 *        -> qe_runner_plan (token hash, chunk count: resume checks it)
 *        -> model in the run's weight format (qe_quant_model_new)
 *        -> qe_eval_perplexity, skipping chunks the store already holds
 *        -> each chunk's per-token rows -> qe_runner_chunk (writer thread)
 *        -> timings and weight bytes -> the run's rows
 *
 *   generation task -> prompts not stored -> model in the run's formats
 *        -> qe_generate (continuous batching) -> each finished prompt and
 *           each device call -> qe_runner_gen_prompt / qe_runner_gen_step
 */
#ifndef QE_JOBEVAL_H
#define QE_JOBEVAL_H

#include "runner.h"
#include "status.h"

struct qe_cl;

typedef struct qe_jobeval_opts {
    const char *device; /* OpenCL device choice, or "ref"; NULL = default */
    int progress;       /* progress line on stderr */
    struct qe_cl *cl;   /* generation: an open device to use (NULL: open `device`;
                           "ref" has no generation and uses the default device) */
    int profile;        /* perplexity runs: per-kernel device times into the timings
                           table (phase "kernel:<name>", n_calls launches) */
} qe_jobeval_opts;

/* A qe_runner_eval_fn: ud is a const qe_jobeval_opts *. */
qe_status qe_jobeval_run(void *ud, const qe_runner_task *t, qe_runner_sink *sink);

/* A qe_runner_gen_fn ([generate]): the prompts not stored yet, continued
 * with qe_generate (lib/generate.h) by the model in the run's weight and KV
 * formats, [job] top_k log-prob candidates per token, [generate] slots side
 * by side; each result and device call to the sink. An empty prompt is
 * QE_ECORRUPT naming the prompts file and its line (row). */
qe_status qe_jobeval_generate(void *ud, const qe_runner_gen_task *t, qe_runner_sink *sink);

#endif
