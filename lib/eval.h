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

#include "cl.h"
#include "kv_format.h"
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
    qe_kv_format kv_k, kv_v; /* KV-cache formats; default f32 (exact, what the
                           reference comparisons use; qeval perplexity's own
                           default is f16, llama.cpp's). Device "ref" honours
                           them through qe_ref_new_kv (f32: the double cache). */
    int profile;        /* per-kernel device times (OpenCL profiling events) into
                           qe_eval_times.kernels; ignored by device "ref" */
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
    /* Paired evaluation (qe_eval_paired) only; 0 / NULL otherwise. */
    int variant;             /* 0 the base, 1 .. n_var the variants */
    const float *kld;        /* [n_scored] KL(base || this variant); NULL for the base */
    const float *dp;         /* [n_scored] p_variant(target) - p_base(target) */
    const uint8_t *same_top; /* [n_scored] 1 where the arg-maxes agree */
} qe_eval_chunk;

typedef qe_status (*qe_eval_chunk_fn)(void *ud, const qe_eval_chunk *c);

typedef struct qe_eval_times {
    double upload;     /* device open, kernel builds, weight upload */
    double prefill;    /* forward passes incl. on-device statistics and read-back */
    double metrics;    /* host-side accumulation and callbacks */
    int64_t n_chunks;
    int64_t n_tokens;  /* tokens run through the model (n_chunks * n_ctx) */
    char device[256];  /* device name used ("C reference (double)" for ref) */
    /* with opts.profile: device time per kernel over the whole evaluation
       (lib/cl.h qe_cl_profile_take), malloc'ed: the caller frees kernels;
       NULL / 0 otherwise */
    qe_cl_kernel_time *kernels;
    size_t n_kernels;
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

/* ---- paired evaluation: a base and variants on the same chunks ----
 *
 * One engine per model (all on one OpenCL device and queue), every batch of
 * chunks run through the base and every variant (qe_engine_prefill_paired):
 * the KL-divergence, dp and same-top of each scored token are computed on
 * the device while the base's logits are still there. Per variant, the
 * tokens are accumulated in chunk order into its own perplexity and a
 * qe_kld against the base (llama-perplexity's --kl-divergence statistics). */

typedef struct qe_eval_variant {
    const char *name;       /* label for reports (borrowed) */
    const qe_model *model;  /* its weights (a requantized model is fine; borrowed) */
    qe_kv_format kv_k, kv_v;
} qe_eval_variant;

typedef struct qe_eval_variant_result {
    qe_ppl_result ppl;      /* the variant's own perplexity */
    qe_kld_summary kld;     /* against the base; all zero for the base itself */
    double upload;          /* seconds to open its engine (kernels, weights) */
    double seconds;         /* device seconds charged to its engine */
    int64_t n_tokens;       /* tokens it ran (n_chunks * n_ctx) */
} qe_eval_variant_result;

/* Evaluate base and vars[0 .. n_var) on the same chunks of tokens (options
 * and BOS rule as qe_eval_perplexity; o->kv_k/kv_v are ignored: every
 * variant names its own). fn, when non-NULL, is called per chunk in chunk
 * order, for the base (variant 0) and then each variant (1 .. n_var).
 * res[0 .. n_var] receives the base's and each variant's results.
 * QE_EINVAL for device "ref" (paired evaluation needs an OpenCL device),
 * o->logits_every > 0, n_var outside 1 .. QE_EVAL_MAX_VARIANTS, models with
 * different vocabularies, and what qe_eval_perplexity refuses. */
#define QE_EVAL_MAX_VARIANTS 16
qe_status qe_eval_paired(const qe_eval_variant *base, const qe_eval_variant *vars, int n_var,
                         const qe_tokenizer *tok, const int32_t *tokens, int64_t n_tokens,
                         const qe_eval_opts *o, qe_eval_chunk_fn fn, void *ud,
                         qe_eval_variant_result *res, qe_eval_times *times);

/* A model configuration as written on qeval's command line:
 *   SPEC := ITEM ("+" ITEM)*
 *   ITEM := WEIGHTS | "kv=" KV | "kv-k=" KV | "kv-v=" KV
 *   WEIGHTS := "file" (the weights as stored) | "f32" | "f16" | "q8_0" | "q4_0"
 *   KV := a lib/kv_format.h name (f32, f16, q8_0, q4_0, tq4, tq3, tq2)
 * Names are case-insensitive. Whatever SPEC does not name comes from `dflt`
 * (so a variant "kv=tq4" is its reference with a TurboQuant cache). */
typedef struct qe_eval_spec {
    int file;               /* 1: the weights as stored; 0: requantized to `weights` */
    qe_dtype weights;       /* QE_DT_F32, F16, Q8_0 or Q4_0 when file == 0 */
    qe_kv_format kv_k, kv_v;
} qe_eval_spec;

/* Parse spec into *out starting from *dflt. QE_EINVAL naming the item and
 * what was expected for an empty spec or item, an unknown weight type or KV
 * format, an item given twice, or two weight types. */
qe_status qe_eval_spec_parse(const char *spec, const qe_eval_spec *dflt, qe_eval_spec *out);

/* Write spec as the canonical "WEIGHTS+kv-k=K+kv-v=V" text into buf. */
void qe_eval_spec_format(const qe_eval_spec *spec, char *buf, size_t cap);

#endif
