/* batch.h - how a token stream becomes perplexity chunks (llama-perplexity's
 * default mode, REFERENCE.md):
 *   n_chunk = n_tokens / n_ctx (remainder dropped; at least 2*n_ctx tokens are
 *   required, as llama-perplexity requires); chunk i is tokens[i*n_ctx ..
 *   (i+1)*n_ctx); if the model adds BOS its first token is replaced by BOS;
 *   positions n_ctx/2 .. n_ctx-2 are scored, each predicting the next token.
 * Chunks are grouped n_seq at a time into one device batch; the grouping never
 * changes which tokens are scored or in which order results are reported.
 */
#ifndef QE_BATCH_H
#define QE_BATCH_H

#include <stdint.h>

#include "status.h"

typedef struct qe_chunk_plan {
    int n_ctx;       /* tokens per chunk */
    int64_t n_chunk; /* chunks evaluated */
    int first;       /* first scored position (n_ctx/2) */
    int n_scored;    /* scored positions per chunk: n_ctx - 1 - first */
    int bos;         /* token put at position 0, or -1 to keep the text's token */
} qe_chunk_plan;

/* Plan chunks over n_tokens. max_chunks <= 0 means all. QE_EINVAL for
 * n_ctx < 4; QE_ECORRUPT-free: too little text is QE_EINVAL with
 * llama-perplexity's message ("need at least 2*n_ctx tokens"). */
qe_status qe_chunk_plan_make(int64_t n_tokens, int n_ctx, int64_t max_chunks, int bos,
                             qe_chunk_plan *out);

/* Copy chunk `i`'s n_ctx input ids into dst (BOS rule applied). */
void qe_chunk_fill(const qe_chunk_plan *p, const int32_t *tokens, int64_t i, int32_t *dst);

/* Target of scored position j (first <= j < n_ctx-1) of chunk i: the text's
 * token at i*n_ctx + j + 1 (never the BOS replacement). */
int32_t qe_chunk_target(const qe_chunk_plan *p, const int32_t *tokens, int64_t i, int j);

/* A resumed run's done chunks: non-zero for a chunk already in the results
 * (a NULL function marks none). */
typedef int (*qe_chunk_skip_fn)(void *ud, int64_t chunk);

/* The plan's chunks that skip leaves to evaluate (a run's ETA counts these). */
int64_t qe_chunk_count_todo(const qe_chunk_plan *p, qe_chunk_skip_fn skip, void *ud);

/* The next batch: up to n chunks from *next on that skip leaves, in chunk
 * order, into todo[0 ..]; *next moves past the last one looked at. Returns
 * how many (0 when no chunk is left). */
int qe_chunk_next(const qe_chunk_plan *p, qe_chunk_skip_fn skip, void *ud, int64_t *next, int n,
                  int64_t *todo);

#endif
