/* tok_pretok.c - the word-splitting regexes of byte-level BPE tokenizers,
 * hand-coded as state machines (no regex engine), following the structure of
 * llama.cpp's unicode.cpp custom splitters but with the regexes' exact
 * semantics (Hugging Face runs the real regexes):
 *
 *   GPT2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   LLAMA3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2   LLAMA3 with \p{N} for \p{N}{1,3}
 *   SMOLLM  \p{N} isolated first, then GPT2 inside each piece
 * Text between matches is a word too (it cannot occur with these patterns,
 * whose last alternatives match anything). The (?i:) of LLAMA3 is ASCII-only,
 * as in llama.cpp's adapted pattern. An invalid UTF-8 byte is a unit of its
 * own with no class: it matches [^\s\p{L}\p{N}].
 *
 * Threading: pure; scratch per call. Linear in the text length.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

#define VALID 0x100u /* unit is inside the current segment */
#define L QE_UNICODE_LETTER
#define N QE_UNICODE_NUMBER
#define S QE_UNICODE_SPACE

typedef struct units {
    uint32_t *cp;   /* [n] code point, QE_UNICODE_INVALID for a bad byte */
    uint16_t *fl;   /* [n] qe_unicode_flags | VALID */
    size_t *off;    /* [n+1] byte offset of each unit */
    size_t n;
} units;

typedef struct ends {
    size_t **v, *cap, *n;
} ends;

static qe_status push_end(ends *e, size_t unit_end)
{
    if (*e->n == *e->cap) {
        size_t c = *e->cap ? *e->cap * 2 : 256;
        size_t *v = realloc(*e->v, c * sizeof *v);
        if (!v)
            return qe_fail(QE_ENOMEM, "tokenizer: out of memory (%zu words)", c);
        *e->v = v, *e->cap = c;
    }
    (*e->v)[(*e->n)++] = unit_end;
    return QE_OK;
}

/* A segment [ini, end) of units: lookups outside it see nothing. */
typedef struct seg {
    const units *u;
    size_t ini, end, prev;
    ends *e;
} seg;

static uint32_t cp_at(const seg *s, size_t p) { return p < s->end ? s->u->cp[p] : 0xFFFFFFFEu; }
static unsigned fl_at(const seg *s, size_t p) { return p < s->end ? s->u->fl[p] : 0; }

static qe_status add(seg *s, size_t end)
{
    if (end == s->prev)
        return QE_OK;
    s->prev = end;
    return push_end(s->e, end);
}

static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at p: length of the match (0 if none). */
static size_t contraction(const seg *s, size_t p, int icase)
{
    if (cp_at(s, p) != '\'' || p + 1 >= s->end)
        return 0;
    uint32_t a = cp_at(s, p + 1), b = p + 2 < s->end ? cp_at(s, p + 2) : 0;
    if (icase)
        a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

static qe_status split_gpt2(seg *s)
{
    qe_status st = QE_OK;
    for (size_t pos = s->ini; pos < s->end && !st;) {
        uint32_t cp = cp_at(s, pos);
        unsigned f = fl_at(s, pos);
        size_t k = contraction(s, pos, 0);
        if (k) {
            pos += k;
            st = add(s, pos);
            continue;
        }
        unsigned f2 = cp == ' ' ? fl_at(s, pos + 1) : f;
        if (f2 & L) { /* ' ?\p{L}+' */
            pos += cp == ' ';
            while (fl_at(s, pos) & L)
                pos++;
            st = add(s, pos);
            continue;
        }
        if (f2 & N) { /* ' ?\p{N}+' */
            pos += cp == ' ';
            while (fl_at(s, pos) & N)
                pos++;
            st = add(s, pos);
            continue;
        }
        if ((f2 & VALID) && !(f2 & (S | L | N))) { /* ' ?[^\s\p{L}\p{N}]+' */
            pos += cp == ' ';
            for (unsigned g = fl_at(s, pos); (g & VALID) && !(g & (S | L | N)); g = fl_at(s, pos))
                pos++;
            st = add(s, pos);
            continue;
        }
        size_t nws = 0;
        while (fl_at(s, pos + nws) & S)
            nws++;
        if (nws > 1 && pos + nws < s->end) { /* '\s+(?!\S)': leave one for the next word */
            pos += nws - 1;
            st = add(s, pos);
            continue;
        }
        pos += nws ? nws : 1; /* '\s+', or a lone unit nothing matched */
        st = add(s, pos);
    }
    return st;
}

static qe_status split_llama3(seg *s, size_t max_digits)
{
    qe_status st = QE_OK;
    for (size_t pos = s->ini; pos < s->end && !st;) {
        uint32_t cp = cp_at(s, pos);
        unsigned f = fl_at(s, pos);
        size_t k = contraction(s, pos, 1);
        if (k) {
            pos += k;
            st = add(s, pos);
            continue;
        }
        /* '[^\r\n\p{L}\p{N}]?\p{L}+' */
        if (cp != '\r' && cp != '\n' && !(f & N) && ((f & L) || (fl_at(s, pos + 1) & L))) {
            pos++;
            while (fl_at(s, pos) & L)
                pos++;
            st = add(s, pos);
            continue;
        }
        if (f & N) { /* '\p{N}{1,max_digits}' */
            size_t ini = pos;
            while ((fl_at(s, pos) & N) && pos - ini < max_digits)
                pos++;
            st = add(s, pos);
            continue;
        }
        unsigned f2 = cp == ' ' ? fl_at(s, pos + 1) : f;
        if ((f2 & VALID) && !(f2 & (S | L | N))) { /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
            pos += cp == ' ';
            for (unsigned g = fl_at(s, pos); (g & VALID) && !(g & (S | L | N)); g = fl_at(s, pos))
                pos++;
            while (cp_at(s, pos) == '\r' || cp_at(s, pos) == '\n')
                pos++;
            st = add(s, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (fl_at(s, pos + nws) & S) {
            uint32_t c = cp_at(s, pos + nws);
            if (c == '\r' || c == '\n')
                last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn) { /* '\s*[\r\n]+' */
            pos = last_rn;
            st = add(s, pos);
            continue;
        }
        if (nws > 1 && pos + nws < s->end) { /* '\s+(?!\S)' */
            pos += nws - 1;
            st = add(s, pos);
            continue;
        }
        pos += nws ? nws : 1;
        st = add(s, pos);
    }
    return st;
}

qe_status qe_tok_pretok_split(qe_tok_pre pre, const char *text, size_t len, size_t **endsv,
                              size_t *cap, size_t *n_words)
{
    qe_status st = QE_OK;
    units u = {0};
    *n_words = 0;
    if (len == 0)
        return QE_OK;
    u.cp = malloc(len * sizeof *u.cp);
    u.fl = malloc(len * sizeof *u.fl);
    u.off = malloc((len + 1) * sizeof *u.off);
    if (!u.cp || !u.fl || !u.off) {
        st = qe_fail(QE_ENOMEM, "tokenizer: out of memory for %zu code points", len);
        goto done;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = qe_unicode_decode(text + i, len - i, &cp);
        u.cp[u.n] = cp;
        u.fl[u.n] = (uint16_t)(qe_unicode_flags(cp) | VALID);
        u.off[u.n++] = i;
        i += k;
    }
    u.off[u.n] = len;

    ends e = {endsv, cap, n_words};
    seg s = {&u, 0, u.n, 0, &e};
    switch (pre) {
    case QE_PRE_GPT2: st = split_gpt2(&s); break;
    case QE_PRE_LLAMA3: st = split_llama3(&s, 3); break;
    case QE_PRE_QWEN2: st = split_llama3(&s, 1); break;
    case QE_PRE_SMOLLM:
        /* '\p{N}' isolated: GPT2 runs on the stretches between digits. */
        for (size_t p = 0; p < u.n && !st;) {
            if (u.fl[p] & N) {
                st = add(&s, ++p);
                continue;
            }
            size_t q = p;
            while (q < u.n && !(u.fl[q] & N))
                q++;
            seg sub = {&u, p, q, s.prev, &e};
            st = split_gpt2(&sub);
            s.prev = sub.prev;
            p = q;
        }
        break;
    default: st = add(&s, u.n); break;
    }
    if (!st && s.prev != u.n)
        st = add(&s, u.n);
    /* Unit indices -> byte offsets. */
    for (size_t i = 0; i < *n_words && !st; i++)
        (*endsv)[i] = u.off[(*endsv)[i]];
done:
    free(u.cp);
    free(u.fl);
    free(u.off);
    return st;
}

qe_tok_pre qe_tok_pretok_from_regex(const char *re)
{
    static const struct {
        const char *re;
        qe_tok_pre pre;
    } known[] = {
        {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", QE_PRE_GPT2},
        {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", QE_PRE_GPT2},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
         QE_PRE_LLAMA3},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
         QE_PRE_QWEN2},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(re, known[i].re))
            return known[i].pre;
    return QE_PRE_NONE;
}
