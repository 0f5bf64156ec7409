/* batch.c - perplexity chunk planning (see batch.h). Pure functions. */
#include "batch.h"

#include <string.h>

qe_status qe_chunk_plan_make(int64_t n_tokens, int n_ctx, int64_t max_chunks, int bos,
                             qe_chunk_plan *out)
{
    memset(out, 0, sizeof *out);
    if (n_ctx < 4)
        return qe_fail(QE_EINVAL, "context of %d tokens is too small (need at least 4)", n_ctx);
    if (n_tokens < 2 * (int64_t)n_ctx)
        return qe_fail(QE_EINVAL,
                       "you need at least %lld tokens to evaluate perplexity with a context of "
                       "%d; the text tokenizes to only %lld tokens",
                       2 * (long long)n_ctx, n_ctx, (long long)n_tokens);
    out->n_ctx = n_ctx;
    out->n_chunk = n_tokens / n_ctx;
    if (max_chunks > 0 && max_chunks < out->n_chunk)
        out->n_chunk = max_chunks;
    out->first = n_ctx / 2;
    out->n_scored = n_ctx - 1 - out->first;
    out->bos = bos;
    return QE_OK;
}

void qe_chunk_fill(const qe_chunk_plan *p, const int32_t *tokens, int64_t i, int32_t *dst)
{
    memcpy(dst, tokens + i * p->n_ctx, (size_t)p->n_ctx * sizeof *dst);
    if (p->bos >= 0)
        dst[0] = p->bos;
}

int32_t qe_chunk_target(const qe_chunk_plan *p, const int32_t *tokens, int64_t i, int j)
{
    return tokens[i * p->n_ctx + j + 1];
}

int64_t qe_chunk_count_todo(const qe_chunk_plan *p, qe_chunk_skip_fn skip, void *ud)
{
    int64_t n = 0;
    for (int64_t i = 0; i < p->n_chunk; i++)
        n += !skip || !skip(ud, i);
    return n;
}

int qe_chunk_next(const qe_chunk_plan *p, qe_chunk_skip_fn skip, void *ud, int64_t *next, int n,
                  int64_t *todo)
{
    int k = 0;
    while (k < n && *next < p->n_chunk) {
        if (!skip || !skip(ud, *next))
            todo[k++] = *next;
        (*next)++;
    }
    return k;
}
