/* tok_spm.c - SentencePiece-style BPE over piece scores, as llama.cpp's
 * llm_tokenizer_spm_session does it:
 *   1. cut the (already escaped) text into symbols, one per UTF-8 character;
 *      an invalid byte is a symbol of its own (llama.cpp instead takes as many
 *      bytes as the lead byte announces, which can swallow the U+2581 of a
 *      following space: then decoding would not give the text back);
 *   2. every adjacent pair whose concatenation is a vocabulary entry goes into
 *      a max-heap keyed by that entry's score (ties: leftmost pair first);
 *   3. pop the best pair; skip it if either side was merged meanwhile (the
 *      byte counts no longer add up); merge and push the two new neighbours;
 *   4. each final symbol is its vocabulary entry, or else its bytes as
 *      <0xNN> tokens (the unknown token where the vocabulary lacks one).
 * The whole text is one sequence, but it is cut where no vocabulary entry
 * holds the two bytes around a gap (tokenizer.c's pair table): no pair can
 * form across such a gap, so each stretch merges independently with the
 * same result, and the heaps stay small. O(n log n) at worst.
 *
 * Threading: reads the handle only; scratch is per call.
 */
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode.h"

typedef struct sym {
    size_t start; /* byte offset in the text */
    size_t n;     /* bytes; 0 once merged into the left neighbour */
    int32_t prev, next;
    int32_t id;   /* vocabulary entry of the symbol, -1 if none */
} sym;

static qe_status try_pair(const qe_tokenizer *t, const char *text, const sym *s, int32_t l, int32_t r,
                          qe_tok_heap *h)
{
    if (l < 0 || r < 0)
        return QE_OK;
    size_t size = s[l].n + s[r].n;
    int32_t id = qe_tok_lookup(t, text + s[l].start, size);
    if (id < 0)
        return QE_OK;
    /* Highest score first: the heap pops the lowest key. */
    return qe_tok_heap_push(h, (qe_tok_pair){.key = -(double)t->score[id], .left = l, .a = r,
                                             .b = id, .size = size});
}

/* Merge symbols s[0..n) (one stretch between cuts: prev/next local) and
 * append the result. */
static qe_status spm_stretch(const qe_tokenizer *t, const char *text, sym *s, size_t n, qe_tok_heap *h,
                             qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    h->n = 0;
    for (size_t i = 0; i < n; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 1; i < n; i++)
        if ((st = try_pair(t, text, s, (int32_t)i - 1, (int32_t)i, h)))
            return st;
    while (h->n) {
        qe_tok_pair b = qe_tok_heap_pop(h); /* a: right symbol, b: the id the pair forms */
        sym *l = &s[b.left], *r = &s[b.a];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side changed since the pair was pushed */
        l->n += r->n;
        r->n = 0;
        l->id = b.b;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = b.left;
        if ((st = try_pair(t, text, s, l->prev, b.left, h)) || (st = try_pair(t, text, s, b.left, l->next, h)))
            return st;
    }
    for (int32_t i = 0; i != -1; i = s[i].next) {
        if (s[i].id >= 0) {
            if ((st = qe_tokenizer_ids_push(out, s[i].id)))
                return st;
            continue;
        }
        for (size_t j = 0; j < s[i].n; j++) {
            unsigned char byte = (unsigned char)text[s[i].start + j];
            int32_t id = t->byte_tok[byte] >= 0 ? t->byte_tok[byte] : t->unk;
            if (id < 0)
                return qe_fail(QE_ECORRUPT, "%s: the vocabulary has no token for byte 0x%02X "
                                            "(no <0x%02X> piece and no unknown token)",
                               t->source, byte, byte);
            if ((st = qe_tokenizer_ids_push(out, id)))
                return st;
        }
    }
    return QE_OK;
}

qe_status qe_tok_spm_encode(const qe_tokenizer *t, const char *text, size_t len,
                            qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    qe_tok_heap h = {0};
    sym *s = NULL;
    size_t n = 0;
    if (len == 0)
        return QE_OK;
    if (len > INT32_MAX)
        return qe_fail(QE_ERANGE, "tokenizer: a text fragment of %zu bytes is too long (max %d)", len,
                       INT32_MAX);
    s = malloc(len * sizeof *s);
    if (!s)
        return qe_fail(QE_ENOMEM, "tokenizer: out of memory for %zu symbols", len);
    for (size_t off = 0; off < len; n++) {
        uint32_t cp;
        size_t k = qe_unicode_decode(text + off, len - off, &cp);
        s[n].start = off;
        s[n].n = k;
        s[n].id = qe_tok_lookup(t, text + off, k);
        off += k;
    }
    /* Stretches end where no token holds the two bytes around the gap: no
     * pair can form across it, so each stretch merges on its own exactly as
     * it would inside the whole sequence. */
    size_t from = 0;
    for (size_t i = 1; i <= n && !st; i++) {
        if (i < n && qe_tok_pair_seen(t, (unsigned char)text[s[i].start - 1], (unsigned char)text[s[i].start]))
            continue;
        st = spm_stretch(t, text, s + from, i - from, &h, out);
        from = i;
    }
    free(s);
    qe_tok_heap_free(&h);
    return st;
}
