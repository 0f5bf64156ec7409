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
 */
#ifndef QE_JOBEVAL_H
#define QE_JOBEVAL_H

#include "runner.h"
#include "status.h"

typedef struct qe_jobeval_opts {
    const char *device; /* OpenCL device choice, or "ref"; NULL = default */
    int progress;       /* progress line on stderr */
} qe_jobeval_opts;

/* A qe_runner_eval_fn: ud is a const qe_jobeval_opts *. */
qe_status qe_jobeval_run(void *ud, const qe_runner_task *t, qe_runner_sink *sink);

#endif
