/* eval.h - perplexity over a token stream, on an OpenCL device or the plain-C
 * reference: the loop that turns chunks into per-token results.
 *
 *   tokens --qe_chunk_plan (lib/batch.h)--> chunks of n_ctx, BOS rule
 *          --n_seq chunks per device batch--> qe_engine_prefill (lib/engine.h)
 *             or qe_ref_step (lib/ref.h) for device "ref"
 *          --per scored position: target log-prob, argmax, top-k-->
 *          qe_ppl accumulator (lib/metrics.h) in chunk order --> callback
 *
 * The callback sees every chunk's results in chunk order, whatever n_seq is,
 * and the accumulated statistics are identical for every n_seq (each
 * sequence's device computation is independent of its batch neighbours, and
 * sums are taken in chunk order).
 *
 * Threading: one call runs on the calling thread; the device work is queued
 * on the qe_cl handle it opens.
 */
#ifndef QE_EVAL_H
#define QE_EVAL_H

#include <stdint.h>

#include "metrics.h"
#include "model.h"
#include "status.h"
#include "tokenizer.h"

#define QE_EVAL_MAX_SEQ 4096 /* chunks per device batch, at most */

typedef struct qe_eval_opts {
    int n_ctx;          /* tokens per chunk (default 512) */
    int64_t max_chunks; /* <= 0: all */
    int n_seq;          /* chunks per device batch (default 4) */
    int top_k;          /* top-k entries recorded per scored position (default 10) */
    const char *device; /* OpenCL device choice (lib/cl.h), or "ref" for the C reference */
    int progress;       /* show a progress line on stderr */
    /* Optional: chunks for which skip(skip_ud, index) is non-zero are not
     * evaluated and not reported (a resumed job's stored chunks). Running
     * statistics then cover the evaluated chunks only. */
    int (*skip)(void *skip_ud, int64_t chunk);
    void *skip_ud;
    int logits_every;   /* > 0: also return the full logits of every N-th
                           scored position (first, first+N, ...) */
} qe_eval_opts;

qe_eval_opts qe_eval_opts_default(void);

/* Results of one chunk; arrays are valid during the callback only. */
typedef struct qe_eval_chunk {
    int64_t index;           /* chunk number, 0-based */
    int first;               /* first scored position (n_ctx/2) */
    int n_scored;            /* scored positions: first .. n_ctx-2 */
    const int32_t *target;   /* [n_scored] token predicted at each scored position */
    const float *logp;       /* [n_scored] log-prob of the target */
    const int32_t *argmax;   /* [n_scored] */
    int top_k;
    const int32_t *topk_id;  /* [n_scored][top_k], by log-prob descending */
    const float *topk_logp;  /* [n_scored][top_k] */
    double nll_sum;          /* this chunk's sum of -logp */
    int n_logits;            /* rows of full logits below (opts.logits_every) */
    int n_vocab;
    const int32_t *logit_pos;/* [n_logits] chunk positions */
    const float *logits;     /* [n_logits][n_vocab] */
    qe_ppl_result running;   /* over all chunks so far */
    double seconds;          /* device time of the batch this chunk ran in / chunks in it */
} qe_eval_chunk;

typedef qe_status (*qe_eval_chunk_fn)(void *ud, const qe_eval_chunk *c);

typedef struct qe_eval_times {
    double upload;     /* device open, kernel builds, weight upload */
    double prefill;    /* forward passes incl. on-device statistics and read-back */
    double metrics;    /* host-side accumulation and callbacks */
    int64_t n_chunks;
    int64_t n_tokens;  /* tokens run through the model (n_chunks * n_ctx) */
    char device[256];  /* device name used ("C reference (double)" for ref) */
} qe_eval_times;

/* Evaluate perplexity of m over tokens[0..n_tokens) (already tokenized, BOS
 * included as the tokenizer adds it). tok, when non-NULL, supplies the text
 * of scored tokens for word/byte perplexity and the BOS rule (first token of
 * each chunk replaced by BOS when the tokenizer adds BOS). fn may be NULL.
 * QE_EINVAL for bad options or too little text (llama-perplexity's rule:
 * at least 2*n_ctx tokens); device errors pass through. */
qe_status qe_eval_perplexity(const qe_model *m, const qe_tokenizer *tok, const int32_t *tokens,
                             int64_t n_tokens, const qe_eval_opts *o, qe_eval_chunk_fn fn,
                             void *ud, qe_ppl_result *out, qe_eval_times *times);

#endif
