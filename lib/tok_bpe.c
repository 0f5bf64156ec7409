/* tok_bpe.c - rank-ordered BPE merges (shared by GGUF "gpt2" vocabularies
 * and tokenizer.json BPE models) and the GGUF byte-level BPE pipeline.
 *
 * Merging: the symbols of a word sit in a linked list; every adjacent pair
 * with a merge goes into a min-heap keyed by (rank, left position). A popped
 * pair still applies if its left symbol and that symbol's right neighbour
 * still hold the ids it was pushed with; then the right symbol folds into
 * the left one and the two new neighbour pairs are pushed. This is the order
 * Hugging Face's Word::merge_all and llama.cpp's llm_tokenizer_bpe_session
 * both produce; O(n log n) per word.
 *
 * Threading: reads the handle only; scratch is per call.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

static qe_status try_pair(const qe_tokenizer *t, const int32_t *sym, int32_t l, int32_t r, qe_tok_heap *h)
{
    if (l < 0 || r < 0)
        return QE_OK;
    const qe_tok_merge *m = qe_tok_merge_get(t, sym[l], sym[r]);
    return m ? qe_tok_heap_push(h, (qe_tok_pair){.key = m->rank, .left = l, .a = sym[l], .b = sym[r]})
             : QE_OK;
}

/* Merge the stretch sym[lo..hi) and append its final ids. */
static qe_status merge_stretch(const qe_tokenizer *t, int32_t *sym, int32_t *next, int32_t *prev, size_t lo,
                               size_t hi, qe_tok_heap *h, qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    h->n = 0;
    for (size_t i = lo; i < hi; i++) {
        prev[i] = i > lo ? (int32_t)i - 1 : -1;
        next[i] = i + 1 < hi ? (int32_t)i + 1 : -1;
    }
    for (size_t i = lo + 1; i < hi; i++)
        if ((st = try_pair(t, sym, (int32_t)i - 1, (int32_t)i, h)))
            return st;
    while (h->n) {
        qe_tok_pair c = qe_tok_heap_pop(h); /* a, b: the ids the pair had when pushed */
        int32_t r = next[c.left];
        if (sym[c.left] != c.a || r < 0 || sym[r] != c.b)
            continue; /* stale */
        sym[c.left] = qe_tok_merge_get(t, c.a, c.b)->result;
        sym[r] = -2; /* dead */
        next[c.left] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = c.left;
        if ((st = try_pair(t, sym, prev[c.left], c.left, h)) || (st = try_pair(t, sym, c.left, next[c.left], h)))
            return st;
    }
    for (int32_t i = (int32_t)lo; i != -1; i = next[i])
        if (sym[i] >= 0 && (st = qe_tokenizer_ids_push(out, sym[i])))
            return st;
    return QE_OK;
}

qe_status qe_tok_bpe_merge(const qe_tokenizer *t, int32_t *sym, size_t n, const uint8_t *cut,
                           qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    qe_tok_heap h = {0};
    int32_t *next = NULL, *prev = NULL;
    if (n == 0)
        return QE_OK;
    if (n == 1)
        return sym[0] >= 0 ? qe_tokenizer_ids_push(out, sym[0]) : QE_OK;
    if (n > INT32_MAX)
        return qe_fail(QE_ERANGE, "tokenizer: a word of %zu symbols is too long", n);
    next = malloc(n * sizeof *next);
    prev = malloc(n * sizeof *prev);
    if (!next || !prev) {
        st = qe_fail(QE_ENOMEM, "tokenizer: out of memory for a word of %zu symbols", n);
        goto done;
    }
    size_t lo = 0;
    for (size_t i = 1; i <= n && !st; i++) {
        if (i < n && !(cut && cut[i]))
            continue;
        st = merge_stretch(t, sym, next, prev, lo, i, &h, out);
        lo = i;
    }
done:
    free(next);
    free(prev);
    qe_tok_heap_free(&h);
    return st;
}

/* ---- word cache ---- */

struct qe_tok_cache_slot {
    size_t key, key_len; /* into keys */
    size_t val, val_len; /* into vals */
    int used;
};

int qe_tok_cache_get(const qe_tok_cache *c, const char *s, size_t n, qe_tokenizer_ids *out)
{
    if (!c->slot)
        return 0;
    for (size_t i = (size_t)qe_tok_hash(s, n) & c->mask;; i = (i + 1) & c->mask) {
        const struct qe_tok_cache_slot *e = &c->slot[i];
        if (!e->used)
            return 0;
        if (e->key_len == n && !memcmp(c->keys.p + e->key, s, n)) {
            size_t n0 = out->n;
            for (size_t k = 0; k < e->val_len; k++)
                if (qe_tokenizer_ids_push(out, c->vals.v[e->val + k])) {
                    out->n = n0; /* out of memory: the caller redoes the work and reports it */
                    return 0;
                }
            return 1;
        }
    }
}

static qe_status cache_grow(qe_tok_cache *c)
{
    size_t cap = c->slot ? (c->mask + 1) * 2 : 1024;
    struct qe_tok_cache_slot *v = calloc(cap, sizeof *v);
    if (!v)
        return qe_fail(QE_ENOMEM, "tokenizer: out of memory (word cache of %zu)", cap);
    for (size_t i = 0; c->slot && i <= c->mask; i++) {
        if (!c->slot[i].used)
            continue;
        size_t j = (size_t)qe_tok_hash(c->keys.p + c->slot[i].key, c->slot[i].key_len) & (cap - 1);
        while (v[j].used)
            j = (j + 1) & (cap - 1);
        v[j] = c->slot[i];
    }
    free(c->slot);
    c->slot = v;
    c->mask = cap - 1;
    return QE_OK;
}

qe_status qe_tok_cache_put(qe_tok_cache *c, const char *s, size_t n, const qe_tokenizer_ids *out,
                           size_t from)
{
    const size_t k = out->n - from;
    qe_status st;
    if ((!c->slot || (c->used + 1) * 2 > c->mask + 1) && (st = cache_grow(c)))
        return st;
    struct qe_tok_cache_slot e = {c->keys.n, n, c->vals.n, k, 1};
    if ((st = qe_tok_buf_put(&c->keys, s, n)))
        return st;
    for (size_t i = 0; i < k; i++)
        if ((st = qe_tokenizer_ids_push(&c->vals, out->v[from + i])))
            return st;
    size_t i = (size_t)qe_tok_hash(s, n) & c->mask;
    while (c->slot[i].used)
        i = (i + 1) & c->mask;
    c->slot[i] = e;
    c->used++;
    return QE_OK;
}

void qe_tok_cache_free(qe_tok_cache *c)
{
    free(c->slot);
    free(c->keys.p);
    qe_tokenizer_ids_free(&c->vals);
    memset(c, 0, sizeof *c);
}

qe_status qe_tok_bpe_encode(const qe_tokenizer *t, const char *text, size_t len, qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    size_t *ends = NULL, cap = 0, n_words = 0;
    int32_t *sym = NULL;
    qe_tok_buf word = {0};
    qe_tok_cache cache = {0};
    if ((st = qe_tok_pretok_split(t->pre, text, len, &ends, &cap, &n_words)))
        goto done;
    sym = malloc((len ? len : 1) * sizeof *sym);
    if (!sym) {
        st = qe_fail(QE_ENOMEM, "tokenizer: out of memory for %zu symbols", len);
        goto done;
    }
    size_t start = 0;
    for (size_t w = 0; w < n_words; start = ends[w++]) {
        const unsigned char *p = (const unsigned char *)text + start;
        size_t n = ends[w] - start, before = out->n;
        if (qe_tok_cache_get(&cache, (const char *)p, n, out))
            continue;
        int whole = 0;
        if (t->ignore_merges) {
            /* A whole word that is a token stays whole (llama.cpp's
             * ignore_merges, HF's BPE ignore_merges). */
            word.n = 0;
            for (size_t i = 0; i < n && !st; i++) {
                char u[4];
                st = qe_tok_buf_put(&word, u, qe_unicode_encode(qe_unicode_byte_to_cp(p[i]), u));
            }
            if (st)
                goto done;
            int32_t id = qe_tok_lookup(t, word.p, word.n);
            if (id >= 0) {
                if ((st = qe_tokenizer_ids_push(out, id)))
                    goto done;
                whole = 1;
            }
        }
        if (!whole) {
            /* One initial symbol per byte: its character in the byte alphabet. A
             * byte whose character is not in the vocabulary (SmolLM2 lacks 21,
             * control bytes and bytes UTF-8 never uses) gets no token: llama.cpp
             * drops it, and so does HF's BPE without an unknown token. */
            for (size_t i = 0; i < n; i++)
                sym[i] = t->byte_tok[p[i]];
            if ((st = qe_tok_bpe_merge(t, sym, n, NULL, out)))
                goto done;
        }
        if ((st = qe_tok_cache_put(&cache, (const char *)p, n, out, before)))
            goto done;
    }
done:
    free(ends);
    free(sym);
    free(word.p);
    qe_tok_cache_free(&cache);
    return st;
}
