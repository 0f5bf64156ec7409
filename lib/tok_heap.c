/* tok_heap.c - the binary min-heap both merge loops use (SentencePiece by
 * score, BPE by rank): pairs ordered by (key, left), so among equal keys the
 * leftmost pair merges first, as llama.cpp and Hugging Face do.
 * Threading: a heap belongs to one encode call. */
#include <stdlib.h>

#include "tok_internal.h"

static int before(const qe_tok_pair *a, const qe_tok_pair *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

qe_status qe_tok_heap_push(qe_tok_heap *h, qe_tok_pair p)
{
    if (h->n == h->cap) {
        size_t k = h->cap ? h->cap * 2 : 256;
        qe_tok_pair *v = realloc(h->v, k * sizeof *v);
        if (!v)
            return qe_fail(QE_ENOMEM, "tokenizer: out of memory (merge heap of %zu)", k);
        h->v = v, h->cap = k;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&p, &h->v[up]))
            break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = p;
    return QE_OK;
}

qe_tok_pair qe_tok_heap_pop(qe_tok_heap *h)
{
    qe_tok_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

void qe_tok_heap_free(qe_tok_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
