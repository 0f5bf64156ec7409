/* tokenizer.c - the tokenizer handle: vocabulary tables, special-token
 * splitting, the encode/decode entry points and opening by path. The models
 * live in tok_spm.c (SentencePiece), tok_bpe.c (BPE merges, GGUF byte-level
 * BPE), tok_hf.c (tokenizer.json) and tok_gguf.c (GGUF metadata).
 *
 * Threading: a handle is immutable after construction; encode/decode only
 * read it and allocate their own scratch, so concurrent calls are fine.
 * Workload: whole dataset files (MBs) in one encode call; everything is
 * hash tables and heaps, linear or n log n in the text length.
 */
#include "tokenizer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---- small buffers ---- */

static qe_status grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return QE_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return qe_fail(QE_ENOMEM, "tokenizer: buffer of %zu elements is too large", need);
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return qe_fail(QE_ENOMEM, "tokenizer: out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return QE_OK;
}

qe_status qe_tok_buf_put(qe_tok_buf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX - b->n - 1)
        return qe_fail(QE_ENOMEM, "tokenizer: text too large");
    qe_status st = grow((void **)&b->p, &b->cap, b->n + n + 1, 1);
    if (st)
        return st;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return QE_OK;
}

qe_status qe_tokenizer_ids_push(qe_tokenizer_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        qe_status st = grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v);
        if (st)
            return st;
    }
    ids->v[ids->n++] = id;
    return QE_OK;
}

void qe_tokenizer_ids_free(qe_tokenizer_ids *ids)
{
    if (!ids)
        return;
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* ---- vocabulary tables ---- */

/* FNV-1a: token texts are short, and this is only ever a table index. */
uint64_t qe_tok_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull; /* spread the bits: the high half is the tag */
    return h ^ (h >> 32);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

qe_status qe_tok_alloc(qe_tokenizer *t, uint32_t n, size_t text_bytes)
{
    if (n == 0 || n > QE_TOKENIZER_MAX_VOCAB)
        return qe_fail(QE_ERANGE, "%s: vocabulary of %u tokens (expected 1..%u)", t->source, n,
                       QE_TOKENIZER_MAX_VOCAB);
    t->n = n;
    t->text = malloc(text_bytes + 1);
    t->text_off = calloc((size_t)n + 1, sizeof *t->text_off);
    t->score = calloc(n, sizeof *t->score);
    t->attr = calloc(n, 1);
    t->tflags = calloc(n, 1);
    size_t slots = pow2_at_least((size_t)n * 2);
    t->tab = calloc(slots, sizeof *t->tab);
    t->tab_tag = calloc(slots, sizeof *t->tab_tag);
    t->tab_mask = slots - 1;
    if (!t->text || !t->text_off || !t->score || !t->attr || !t->tflags || !t->tab || !t->tab_tag)
        return qe_fail(QE_ENOMEM, "%s: out of memory for %u tokens", t->source, n);
    return QE_OK;
}

void qe_tok_set(qe_tokenizer *t, uint32_t id, const char *s, size_t len, float score, int attr)
{
    QE_ASSERT(id < t->n);
    size_t off = t->text_off[id];
    memcpy(t->text + off, s, len);
    t->text_off[id + 1] = off + len;
    t->score[id] = score;
    t->attr[id] = (uint8_t)attr;
}

int32_t qe_tok_lookup(const qe_tokenizer *t, const char *s, size_t len)
{
    uint64_t h = qe_tok_hash(s, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->tab_mask;; i = (i + 1) & t->tab_mask) {
        uint32_t v = t->tab[i];
        if (!v)
            return -1;
        if (t->tab_tag[i] != tag)
            continue;
        uint32_t id = v - 1;
        size_t a = t->text_off[id], b = t->text_off[id + 1];
        if (b - a == len && !memcmp(t->text + a, s, len))
            return (int32_t)id;
    }
}

qe_status qe_tok_merges_alloc(qe_tokenizer *t, uint32_t n)
{
    size_t slots = pow2_at_least((size_t)n * 2 + 1);
    t->merges = malloc(slots * sizeof *t->merges);
    if (!t->merges)
        return qe_fail(QE_ENOMEM, "%s: out of memory for %u merges", t->source, n);
    for (size_t i = 0; i < slots; i++)
        t->merges[i].key = UINT64_MAX;
    t->merges_mask = slots - 1;
    t->n_merges = 0;
    return QE_OK;
}

static size_t merge_slot(uint64_t key, size_t mask)
{
    key *= 0x9E3779B97F4A7C15ull;
    return (size_t)(key >> 32 ^ key) & mask;
}

void qe_tok_merge_put(qe_tokenizer *t, int32_t left, int32_t right, uint32_t rank, int32_t result)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = merge_slot(key, t->merges_mask);
    while (t->merges[i].key != UINT64_MAX) {
        if (t->merges[i].key == key)
            return; /* a repeated merge keeps its first (best) rank, as HF's map does */
        i = (i + 1) & t->merges_mask;
    }
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].result = result;
    t->n_merges++;
}

const qe_tok_merge *qe_tok_merge_get(const qe_tokenizer *t, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return NULL; /* (-1, -1) would read as the empty-slot key */
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = merge_slot(key, t->merges_mask);
    for (;;) {
        const qe_tok_merge *m = &t->merges[i];
        if (m->key == key)
            return m;
        if (m->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & t->merges_mask;
    }
}

qe_status qe_tok_merge_parse(qe_tokenizer *t, const char *s, size_t len, const char *what,
                             uint64_t i, int32_t *left, int32_t *right, int32_t *result)
{
    /* "a b": the separator is the first space after byte 0 (llama.cpp), so a
     * vocabulary whose pieces hold spaces still splits the way it was written. */
    const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
    if (!sp || sp + 1 == s + len)
        return qe_fail(QE_ECORRUPT, "%s: %s[%llu] = '%.*s': expected two pieces separated by a space",
                       t->source, what, (unsigned long long)i, (int)(len > 80 ? 80 : len), s);
    size_t la = (size_t)(sp - s), lb = len - la - 1;
    *left = qe_tok_lookup(t, s, la);
    *right = qe_tok_lookup(t, sp + 1, lb);
    if (*left < 0 || *right < 0)
        return qe_fail(QE_ECORRUPT, "%s: %s[%llu] = '%.*s': piece '%.*s' is not in the vocabulary",
                       t->source, what, (unsigned long long)i, (int)(len > 80 ? 80 : len), s,
                       (int)(*left < 0 ? la : lb), *left < 0 ? s : sp + 1);
    char stackbuf[256];
    char *cat = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
    if (!cat)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    memcpy(cat, s, la);
    memcpy(cat + la, sp + 1, lb);
    *result = qe_tok_lookup(t, cat, la + lb);
    if (cat != stackbuf)
        free(cat);
    if (*result < 0)
        return qe_fail(QE_ECORRUPT, "%s: %s[%llu] = '%.*s': the merged piece is not in the vocabulary",
                       t->source, what, (unsigned long long)i, (int)(len > 80 ? 80 : len), s);
    return QE_OK;
}

/* "<0xNN>" with upper-case hex digits -> the byte, else -1. */
static int parse_byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    const char *a = memchr(hex, s[3], 16), *b = memchr(hex, s[4], 16);
    if (!a || !b || !s[3] || !s[4])
        return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

/* Decoded bytes of token id into *b (the text of control-like tokens). */
static qe_status piece_of(qe_tokenizer *t, uint32_t id, qe_tok_buf *b)
{
    const char *s = t->text + t->text_off[id];
    size_t n = t->text_off[id + 1] - t->text_off[id];
    int attr = t->attr[id];
    if (attr == QE_TOKATTR_BYTE) {
        int v = parse_byte_token(s, n);
        if (v < 0)
            return qe_fail(QE_ECORRUPT, "%s: token %u '%.*s' has type BYTE but is not <0xNN>",
                           t->source, id, (int)n, s);
        char c = (char)v;
        return qe_tok_buf_put(b, &c, 1);
    }
    if (attr == QE_TOKATTR_UNUSED || attr == QE_TOKATTR_UNDEFINED)
        return QE_OK; /* llama.cpp renders these as nothing */
    if (attr != QE_TOKATTR_NORMAL || t->piece_mode == QE_PIECE_RAW)
        return qe_tok_buf_put(b, s, n);
    if (t->piece_mode == QE_PIECE_METASPACE) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                qe_status st = qe_tok_buf_put(b, " ", 1);
                if (st)
                    return st;
                i += 3;
            } else {
                qe_status st = qe_tok_buf_put(b, s + i, 1);
                if (st)
                    return st;
                i++;
            }
        }
        return QE_OK;
    }
    /* Byte level: each code point is a byte; one outside the alphabet keeps its
     * UTF-8 (llama.cpp prints an [UNK_BYTE_..] marker there instead). */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = qe_unicode_decode(s + i, n - i, &cp);
        int byte = qe_unicode_cp_to_byte(cp);
        char c = (char)byte;
        qe_status st = byte >= 0 ? qe_tok_buf_put(b, &c, 1) : qe_tok_buf_put(b, s + i, k);
        if (st)
            return st;
        i += k;
    }
    return QE_OK;
}

static int special_cmp(const void *pa, const void *pb)
{
    const qe_tok_special *a = pa, *b = pb;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Sort the special list and index it by first byte. */
static qe_status special_index(qe_tokenizer *t)
{
    if (t->n_special)
        qsort(t->special, t->n_special, sizeof *t->special, special_cmp);
    t->sp_by_first = malloc((t->n_special + 1) * sizeof *t->sp_by_first);
    if (!t->sp_by_first)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    /* Counting sort by first byte keeps the longest-first order inside a bucket. */
    uint32_t count[257] = {0};
    for (size_t i = 0; i < t->n_special; i++)
        count[(unsigned char)t->special[i].s[0] + 1]++;
    for (int b = 0; b < 256; b++)
        count[b + 1] += count[b];
    memcpy(t->sp_first, count, sizeof count);
    for (size_t i = 0; i < t->n_special; i++)
        t->sp_by_first[count[(unsigned char)t->special[i].s[0]]++] = (uint32_t)i;
    return QE_OK;
}

qe_status qe_tok_finish(qe_tokenizer *t, const char *what)
{
    qe_status st = QE_OK;
    qe_tok_buf pieces = {0};
    /* Texts: valid UTF-8, unique; empty ones are kept but never matched. */
    for (uint32_t id = 0; id < t->n; id++) {
        const char *s = t->text + t->text_off[id];
        size_t n = t->text_off[id + 1] - t->text_off[id], bad;
        if (!qe_unicode_valid(s, n, &bad))
            return qe_fail(QE_ECORRUPT, "%s: %s[%u]: invalid UTF-8 at byte %zu of the piece",
                           t->source, what, id, bad);
        if (n == 0)
            continue;
        uint64_t h = qe_tok_hash(s, n);
        size_t i = (size_t)h & t->tab_mask;
        while (t->tab[i]) {
            uint32_t o = t->tab[i] - 1;
            size_t a = t->text_off[o], b = t->text_off[o + 1];
            if (b - a == n && !memcmp(t->text + a, s, n))
                return qe_fail(QE_ECORRUPT, "%s: %s[%u] '%.*s' duplicates token %u", t->source,
                               what, id, (int)(n > 80 ? 80 : n), s, o);
            i = (i + 1) & t->tab_mask;
        }
        t->tab[i] = id + 1;
        t->tab_tag[i] = (uint32_t)(h >> 32);
    }
    /* Adjacent byte pairs of every token text. */
    memset(t->pairs, 0, sizeof t->pairs);
    for (uint32_t id = 0; id < t->n; id++) {
        const unsigned char *s = (const unsigned char *)t->text + t->text_off[id];
        size_t n = t->text_off[id + 1] - t->text_off[id];
        for (size_t i = 1; i < n; i++) {
            unsigned k = (unsigned)s[i - 1] << 8 | s[i];
            t->pairs[k >> 3] |= (uint8_t)(1u << (k & 7));
        }
    }
    /* Decoded pieces. */
    t->piece_off = calloc((size_t)t->n + 1, sizeof *t->piece_off);
    if (!t->piece_off)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    for (uint32_t id = 0; id < t->n; id++) {
        if ((st = piece_of(t, id, &pieces)))
            goto done;
        t->piece_off[id + 1] = pieces.n;
    }
    if ((st = qe_tok_buf_put(&pieces, "", 0)))
        goto done;
    t->piece = pieces.p;
    pieces.p = NULL;
    /* Byte tokens. */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id = -1;
        if (t->kind == QE_TOKENIZER_BPE) {
            size_t k = qe_unicode_encode(qe_unicode_byte_to_cp((unsigned char)b), buf);
            id = qe_tok_lookup(t, buf, k); /* may be missing: see tok_bpe.c */
        } else {
            static const char hex[] = "0123456789ABCDEF";
            char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            id = qe_tok_lookup(t, name, 6);
            if (id < 0 && t->kind == QE_TOKENIZER_SPM) {
                buf[0] = (char)b; /* llama.cpp falls back to the one-byte piece */
                id = qe_tok_lookup(t, buf, 1);
            }
        }
        t->byte_tok[b] = id;
    }
    /* GGUF kinds: control, user-defined and unknown tokens are matched in the
     * input (llama.cpp's cache_special_tokens). HF loaders list their own. */
    if (t->kind != QE_TOKENIZER_HF) {
        size_t k = 0;
        for (uint32_t id = 0; id < t->n; id++) {
            int a = t->attr[id];
            k += (a == QE_TOKATTR_CONTROL || a == QE_TOKATTR_USER_DEFINED || a == QE_TOKATTR_UNKNOWN) &&
                 t->text_off[id + 1] > t->text_off[id];
        }
        t->special = calloc(k + 1, sizeof *t->special);
        if (!t->special) {
            st = qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
            goto done;
        }
        for (uint32_t id = 0; id < t->n; id++) {
            int a = t->attr[id];
            size_t n = t->text_off[id + 1] - t->text_off[id];
            if (!(a == QE_TOKATTR_CONTROL || a == QE_TOKATTR_USER_DEFINED || a == QE_TOKATTR_UNKNOWN) || !n)
                continue;
            qe_tok_special *sp = &t->special[t->n_special++];
            sp->id = (int32_t)id;
            sp->flags = t->tflags[id];
            sp->control = a != QE_TOKATTR_USER_DEFINED;
            sp->s = NULL; /* points into t->text: set below, after no more reallocs */
            sp->len = n;
        }
        for (size_t i = 0; i < t->n_special; i++)
            t->special[i].s = t->text + t->text_off[t->special[i].id];
    }
    st = special_index(t);
done:
    free(pieces.p);
    return st;
}

/* ---- special-token partition ---- */

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0 || nn > hn)
        return NULL;
    const char *end = h + hn - nn + 1;
    for (const char *p = h; p < end;) {
        p = memchr(p, nd[0], (size_t)(end - p));
        if (!p)
            return NULL;
        if (!memcmp(p, nd, nn))
            return p;
        p++;
    }
    return NULL;
}

static qe_status frag_push(qe_tok_frag **v, size_t *n, size_t *cap, size_t off, size_t len, int32_t id)
{
    qe_status st = grow((void **)v, cap, *n + 1, sizeof **v);
    if (st)
        return st;
    (*v)[(*n)++] = (qe_tok_frag){off, len, id};
    return QE_OK;
}

static int eligible(const qe_tok_special *sp, int parse_special, int normalized)
{
    if (sp->control && !parse_special)
        return 0;
    if (normalized >= 0 && !!(sp->flags & QE_TOKF_NORMALIZED) != normalized)
        return 0;
    return 1;
}

/* llama.cpp's tokenizer_st_partition: one special token at a time, longest
 * first, each cutting every text fragment at all its occurrences. */
static qe_status partition_llama(const qe_tokenizer *t, const char *text, int parse_special,
                                 qe_tok_frag **frags, size_t *n_frags, size_t *cap)
{
    qe_status st = QE_OK;
    qe_tok_frag *next = NULL;
    size_t n_next = 0, cap_next = 0;
    size_t len = (*frags)[0].len;
    /* Which tokens occur at all: one pass with the first-byte index, so a
     * vocabulary with thousands of special tokens (Gemma) costs a scan per
     * token only for those in the text. */
    uint8_t *present = calloc(t->n_special + 1, 1);
    if (!present)
        return qe_fail(QE_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        for (uint32_t j = t->sp_first[c]; j < t->sp_first[c + 1]; j++) {
            uint32_t k = t->sp_by_first[j];
            const qe_tok_special *sp = &t->special[k];
            if (!present[k] && sp->len <= len - i && !memcmp(text + i, sp->s, sp->len))
                present[k] = 1;
        }
    }
    for (size_t k = 0; k < t->n_special; k++) {
        const qe_tok_special *sp = &t->special[k];
        if (!present[k] || !eligible(sp, parse_special, -1))
            continue;
        n_next = 0;
        int changed = 0;
        for (size_t f = 0; f < *n_frags; f++) {
            qe_tok_frag fr = (*frags)[f];
            if (fr.id >= 0) {
                if ((st = frag_push(&next, &n_next, &cap_next, fr.off, fr.len, fr.id)))
                    goto done;
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *m = find_bytes(text + pos, end - pos, sp->s, sp->len);
                if (!m) {
                    if (pos < end && (st = frag_push(&next, &n_next, &cap_next, pos, end - pos, -1)))
                        goto done;
                    break;
                }
                changed = 1;
                size_t mpos = (size_t)(m - text), llen = mpos - pos;
                if (sp->flags & QE_TOKF_LSTRIP)
                    while (llen > 0 && isspace((unsigned char)text[pos + llen - 1]))
                        llen--;
                if (llen && (st = frag_push(&next, &n_next, &cap_next, pos, llen, -1)))
                    goto done;
                if ((st = frag_push(&next, &n_next, &cap_next, 0, 0, sp->id)))
                    goto done;
                pos = mpos + sp->len;
                if (sp->flags & QE_TOKF_RSTRIP)
                    while (pos < end && isspace((unsigned char)text[pos]))
                        pos++;
                if (pos >= end)
                    break;
            }
        }
        if (changed) {
            qe_tok_frag *tmp = *frags;
            *frags = next, next = tmp;
            size_t tc = *cap;
            *cap = cap_next, cap_next = tc;
            *n_frags = n_next;
        }
    }
done:
    free(next);
    free(present);
    return st;
}

static int is_space_at(const char *s, size_t n, size_t *k)
{
    uint32_t cp;
    *k = qe_unicode_decode(s, n, &cp);
    return (qe_unicode_flags(cp) & QE_UNICODE_SPACE) != 0;
}

/* Hugging Face's AddedVocabulary split: leftmost-longest over all tokens at
 * once; lstrip/rstrip swallow Unicode whitespace around a match. */
static qe_status partition_hf(const qe_tokenizer *t, const char *text, size_t len, int parse_special,
                              int normalized, qe_tok_frag **frags, size_t *n_frags, size_t *cap)
{
    qe_status st = QE_OK;
    *n_frags = 0;
    size_t start_off = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)text[i];
        const qe_tok_special *hit = NULL;
        for (uint32_t j = t->sp_first[c]; j < t->sp_first[c + 1]; j++) {
            const qe_tok_special *sp = &t->special[t->sp_by_first[j]];
            if (sp->len <= len - i && eligible(sp, parse_special, normalized) &&
                !memcmp(text + i, sp->s, sp->len)) {
                hit = sp;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->len;
        if (hit->flags & QE_TOKF_LSTRIP) {
            /* Back over whitespace code points, not before the previous match. */
            size_t s = start;
            while (s > start_off) {
                size_t b = s - 1, k;
                while (b > start_off && ((unsigned char)text[b] & 0xC0) == 0x80)
                    b--;
                if (!is_space_at(text + b, s - b, &k) || b + k != s)
                    break;
                s = b;
            }
            start = s;
        }
        if (hit->flags & QE_TOKF_RSTRIP) {
            size_t k;
            while (stop < len && is_space_at(text + stop, len - stop, &k))
                stop += k;
        }
        if (start_off < start && (st = frag_push(frags, n_frags, cap, start_off, start - start_off, -1)))
            return st;
        if ((st = frag_push(frags, n_frags, cap, 0, 0, hit->id)))
            return st;
        start_off = stop;
        i = stop;
    }
    if (start_off < len && (st = frag_push(frags, n_frags, cap, start_off, len - start_off, -1)))
        return st;
    return QE_OK;
}

qe_status qe_tok_partition(const qe_tokenizer *t, const char *text, size_t len, int parse_special,
                           int normalized, qe_tok_frag **frags, size_t *n_frags)
{
    size_t cap = 0;
    qe_status st;
    *frags = NULL;
    *n_frags = 0;
    if (len == 0)
        return QE_OK;
    if (t->special_hf) {
        st = partition_hf(t, text, len, parse_special, normalized, frags, n_frags, &cap);
    } else {
        st = frag_push(frags, n_frags, &cap, 0, len, -1);
        if (!st)
            st = partition_llama(t, text, parse_special, frags, n_frags, &cap);
    }
    if (st) {
        free(*frags);
        *frags = NULL;
        *n_frags = 0;
    }
    return st;
}

/* ---- encode ---- */

/* SPM: dummy prefix, then every ' ' becomes U+2581. */
static qe_status spm_fragment(const qe_tokenizer *t, const char *s, size_t n, int prefix,
                              qe_tok_buf *buf, qe_tokenizer_ids *out)
{
    buf->n = 0;
    qe_status st = QE_OK;
    if (prefix && (st = qe_tok_buf_put(buf, "\xE2\x96\x81", 3)))
        return st;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ')
            continue;
        if ((st = qe_tok_buf_put(buf, s + run, i - run)) || (st = qe_tok_buf_put(buf, "\xE2\x96\x81", 3)))
            return st;
        run = i + 1;
    }
    if ((st = qe_tok_buf_put(buf, s + run, n - run)))
        return st;
    return qe_tok_spm_encode(t, buf->p, buf->n, out);
}

qe_status qe_tokenizer_encode(const qe_tokenizer *t, const char *text, size_t len, unsigned flags,
                              qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    size_t n0 = out->n;
    qe_tok_frag *frags = NULL;
    size_t n_frags = 0;
    qe_tok_buf buf = {0};
    if (len && !text)
        return qe_fail(QE_EINVAL, "tokenizer: NULL text");
    int add = (flags & QE_TOK_ADD_SPECIAL) != 0, parse = (flags & QE_TOK_PARSE_SPECIAL) != 0;
    if ((st = qe_tok_partition(t, text, len, parse, t->kind == QE_TOKENIZER_HF ? 0 : -1, &frags, &n_frags)))
        goto done;
    if (add && t->add_bos && (st = qe_tokenizer_ids_push(out, t->bos)))
        goto done;
    int prev_special = 1;
    for (size_t f = 0; f < n_frags; f++) {
        const qe_tok_frag *fr = &frags[f];
        if (fr->id >= 0) {
            st = qe_tokenizer_ids_push(out, fr->id);
            prev_special = 1;
        } else if (t->kind == QE_TOKENIZER_SPM) {
            st = spm_fragment(t, text + fr->off, fr->len, t->dummy_prefix && prev_special, &buf, out);
            prev_special = 0;
        } else if (t->kind == QE_TOKENIZER_BPE) {
            st = qe_tok_bpe_encode(t, text + fr->off, fr->len, out);
        } else {
            st = qe_tok_hf_encode(t, text + fr->off, fr->len, fr->off == 0, flags, out);
        }
        if (st)
            goto done;
    }
    if (add && t->add_eos && (st = qe_tokenizer_ids_push(out, t->eos)))
        goto done;
done:
    if (st)
        out->n = n0;
    free(frags);
    free(buf.p);
    return st;
}

qe_status qe_tokenizer_encode_buf(const qe_tokenizer *t, const char *text, size_t len,
                                  unsigned flags, int32_t *buf, size_t cap, size_t *n_out)
{
    qe_tokenizer_ids ids = {0};
    qe_status st = qe_tokenizer_encode(t, text, len, flags, &ids);
    if (st)
        return st;
    *n_out = ids.n;
    const size_t held = ids.n < cap ? ids.n : cap;
    if (held) /* ids.v is NULL when nothing was encoded, and buf may be with cap 0 */
        memcpy(buf, ids.v, held * sizeof *buf);
    if (ids.n > cap)
        st = qe_fail(QE_ERANGE, "tokenizer: %zu tokens do not fit a buffer of %zu", ids.n, cap);
    qe_tokenizer_ids_free(&ids);
    return st;
}

/* ---- decode ---- */

qe_status qe_tokenizer_decode(const qe_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                              char **text, size_t *len)
{
    qe_tok_buf b = {0};
    qe_status st = qe_tok_buf_put(&b, "", 0);
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (id < 0 || (uint32_t)id >= t->n) {
            st = qe_fail(QE_EINVAL, "token %zu: id %d is out of range (vocabulary of %u)", i, id, t->n);
            break;
        }
        int a = t->attr[id];
        if ((a == QE_TOKATTR_CONTROL || a == QE_TOKATTR_UNKNOWN) && !(flags & QE_TOK_RENDER_SPECIAL))
            continue;
        st = qe_tok_buf_put(&b, t->piece + t->piece_off[id], t->piece_off[id + 1] - t->piece_off[id]);
    }
    if (st) {
        free(b.p);
        return st;
    }
    /* The dummy-prefix rule: encode added one space in front, decode takes it away. */
    if (t->dummy_prefix && b.n && b.p[0] == ' ') {
        memmove(b.p, b.p + 1, b.n - 1);
        b.n--;
    }
    b.p[b.n] = '\0';
    *text = b.p;
    *len = b.n;
    return QE_OK;
}

/* ---- accessors ---- */

const char *qe_tokenizer_piece(const qe_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n) {
        *len = 0;
        return NULL;
    }
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece + t->piece_off[id];
}

const char *qe_tokenizer_token_text(const qe_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n) {
        *len = 0;
        return NULL;
    }
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}

int32_t qe_tokenizer_find(const qe_tokenizer *t, const char *text, size_t len)
{
    return len ? qe_tok_lookup(t, text, len) : -1;
}

qe_tokenizer_kind qe_tokenizer_kind_of(const qe_tokenizer *t) { return t->kind; }

const char *qe_tokenizer_kind_name(const qe_tokenizer *t)
{
    switch (t->kind) {
    case QE_TOKENIZER_SPM: return "spm";
    case QE_TOKENIZER_BPE: return "bpe";
    default: return "hf-bpe";
    }
}

const char *qe_tokenizer_pre_name(const qe_tokenizer *t) { return t->pre_name; }
uint32_t qe_tokenizer_n_vocab(const qe_tokenizer *t) { return t->n; }
int32_t qe_tokenizer_bos(const qe_tokenizer *t) { return t->bos; }
int32_t qe_tokenizer_eos(const qe_tokenizer *t) { return t->eos; }
int32_t qe_tokenizer_unk(const qe_tokenizer *t) { return t->unk; }
int qe_tokenizer_add_bos(const qe_tokenizer *t) { return t->add_bos; }
int qe_tokenizer_add_eos(const qe_tokenizer *t) { return t->add_eos; }
int qe_tokenizer_dummy_prefix(const qe_tokenizer *t) { return t->dummy_prefix; }

qe_tokenizer_attr qe_tokenizer_attr_of(const qe_tokenizer *t, int32_t id)
{
    return id < 0 || (uint32_t)id >= t->n ? QE_TOKATTR_UNDEFINED : (qe_tokenizer_attr)t->attr[id];
}

float qe_tokenizer_score(const qe_tokenizer *t, int32_t id)
{
    return id < 0 || (uint32_t)id >= t->n ? 0.0f : t->score[id];
}

/* ---- lifecycle ---- */

void qe_tokenizer_close(qe_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_off);
    free(t->piece);
    free(t->piece_off);
    free(t->score);
    free(t->attr);
    free(t->tflags);
    free(t->tab);
    free(t->tab_tag);
    free(t->merges);
    if (t->kind == QE_TOKENIZER_HF)
        for (size_t i = 0; i < t->n_special; i++)
            free(t->special[i].s);
    free(t->special);
    free(t->sp_by_first);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].from);
        free(t->norm[i].to);
    }
    free(t->norm);
    free(t->prestep);
    free(t);
}

qe_status qe_tokenizer_from_hf_json(const char *path, qe_tokenizer **out)
{
    *out = NULL;
    qe_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return qe_fail(QE_ENOMEM, "%s: out of memory", path);
    t->kind = QE_TOKENIZER_HF;
    t->bos = t->eos = t->unk = -1;
    snprintf(t->source, sizeof t->source, "%s", path);
    qe_status st = qe_tok_hf_load(t, path);
    if (st) {
        qe_tokenizer_close(t);
        return st;
    }
    *out = t;
    return QE_OK;
}
