/* tok_hf.c - Hugging Face tokenizer.json (model type "BPE"): loading with
 * jansson, and the encode pipeline the `tokenizers` library runs:
 *   1. added tokens with normalized=false are cut out of the raw text;
 *   2. the rest is normalized (Prepend, Replace), then added tokens with
 *      normalized=true are cut out, matched by their normalized form;
 *   3. pre-tokenizers split the pieces into words (Metaspace, ByteLevel,
 *      Digits, Split with a known regex);
 *   4. each word starts as one symbol per character (missing characters:
 *      <0xNN> byte tokens with byte_fallback, else the unknown token, runs
 *      fused with fuse_unk) and is merged by rank (tok_bpe.c);
 *   5. TemplateProcessing adds BOS/EOS (QE_TOK_ADD_SPECIAL).
 * Components outside this set are rejected (QE_EUNSUPPORTED naming them)
 * rather than approximated.
 *
 * Threading: loading builds a fresh handle; encoding reads it only.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---- JSON helpers (every miss names the JSON path) ---- */

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static qe_status want(const qe_tokenizer *t, const json_t *j, json_type type, const char *path)
{
    static const char *names[] = {"an object", "an array", "a string", "an integer", "a number",
                                  "a boolean", "a boolean", "null"};
    if (!j)
        return qe_fail(QE_ECORRUPT, "%s: %s is missing", t->source, path);
    if (json_typeof(j) == type || (type == JSON_TRUE && json_typeof(j) == JSON_FALSE))
        return QE_OK;
    return qe_fail(QE_ECORRUPT, "%s: %s is %s, expected %s", t->source, path, type_name(j), names[type]);
}

/* Optional boolean: absent or null gives def. */
static qe_status get_bool(const qe_tokenizer *t, const json_t *obj, const char *key, const char *path,
                          int def, int *out)
{
    const json_t *j = json_object_get(obj, key);
    *out = def;
    if (!j || json_is_null(j))
        return QE_OK;
    if (!json_is_boolean(j))
        return qe_fail(QE_ECORRUPT, "%s: %s.%s is %s, expected a boolean", t->source, path, key, type_name(j));
    *out = json_is_true(j);
    return QE_OK;
}

/* Optional string: absent or null gives NULL. */
static qe_status get_str(const qe_tokenizer *t, const json_t *obj, const char *key, const char *path,
                         const char **out, size_t *len)
{
    const json_t *j = json_object_get(obj, key);
    *out = NULL;
    if (len)
        *len = 0;
    if (!j || json_is_null(j))
        return QE_OK;
    if (!json_is_string(j))
        return qe_fail(QE_ECORRUPT, "%s: %s.%s is %s, expected a string", t->source, path, key, type_name(j));
    *out = json_string_value(j);
    if (len)
        *len = json_string_length(j);
    return QE_OK;
}

static const char *type_of(const json_t *obj)
{
    const json_t *ty = json_object_get(obj, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* A component's "type": *ty NULL (and QE_OK) when j is absent or null,
 * i.e. nothing to load; otherwise j must be an object with a string "type". */
static qe_status component_type(const qe_tokenizer *t, const json_t *j, const char *path,
                                const char **ty)
{
    *ty = NULL;
    if (!j || json_is_null(j))
        return QE_OK;
    qe_status st = want(t, j, JSON_OBJECT, path);
    if (st)
        return st;
    if (!(*ty = type_of(j)))
        return qe_fail(QE_ECORRUPT, "%s: %s.type is missing", t->source, path);
    return QE_OK;
}

/* Loads one component (normalizer, pre-tokenizer, post-processor) at path;
 * depth counts the enclosing "Sequence" components. */
typedef qe_status (*load_fn)(qe_tokenizer *t, const json_t *j, const char *path, int depth);

/* A "Sequence" component: j[key] must be an array; each element is loaded
 * by fn one level deeper, named path.key[i] in errors. */
static qe_status load_sequence(qe_tokenizer *t, const json_t *j, const char *key, const char *path,
                               int depth, load_fn fn)
{
    qe_status st;
    const json_t *arr = json_object_get(j, key);
    char sub[128];
    snprintf(sub, sizeof sub, "%s.%s", path, key);
    if ((st = want(t, arr, JSON_ARRAY, sub)))
        return st;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        if ((st = fn(t, json_array_get(arr, i), sub, depth + 1)))
            return st;
    }
    return QE_OK;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* ---- normalizer ---- */

static qe_status add_norm(qe_tokenizer *t, int op, const char *from, size_t from_len, const char *to,
                          size_t to_len)
{
    qe_tok_norm *v = realloc(t->norm, (t->n_norm + 1) * sizeof *v);
    if (!v)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    t->norm = v;
    qe_tok_norm *n = &v[t->n_norm];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->from = from ? dup_bytes(from, from_len) : NULL;
    n->to = dup_bytes(to, to_len);
    n->from_len = from_len;
    n->to_len = to_len;
    t->n_norm++;
    if ((from && !n->from) || !n->to)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    return QE_OK;
}

static qe_status load_normalizer(qe_tokenizer *t, const json_t *j, const char *path, int depth)
{
    const char *ty;
    qe_status st = component_type(t, j, path, &ty);
    if (st || !ty)
        return st;
    if (!strcmp(ty, "Sequence") && depth < 4)
        return load_sequence(t, j, "normalizers", path, depth, load_normalizer);
    if (!strcmp(ty, "Prepend")) {
        const char *s;
        size_t n;
        if ((st = get_str(t, j, "prepend", path, &s, &n)))
            return st;
        if (!s)
            return qe_fail(QE_ECORRUPT, "%s: %s.prepend is missing", t->source, path);
        return add_norm(t, QE_NORM_PREPEND, NULL, 0, s, n);
    }
    if (!strcmp(ty, "Replace")) {
        const json_t *pat = json_object_get(j, "pattern");
        char sub[128];
        snprintf(sub, sizeof sub, "%s.pattern", path);
        if ((st = want(t, pat, JSON_OBJECT, sub)))
            return st;
        const char *from, *to;
        size_t fn, tn;
        if ((st = get_str(t, pat, "String", sub, &from, &fn)) || (st = get_str(t, j, "content", path, &to, &tn)))
            return st;
        if (!from || !fn)
            return qe_fail(QE_EUNSUPPORTED, "%s: %s: only a non-empty String pattern is supported",
                           t->source, sub);
        if (!to)
            return qe_fail(QE_ECORRUPT, "%s: %s.content is missing", t->source, path);
        return add_norm(t, QE_NORM_REPLACE, from, fn, to, tn);
    }
    return qe_fail(QE_EUNSUPPORTED, "%s: %s.type '%s' is not supported (Sequence, Prepend, Replace)",
                   t->source, path, ty);
}

/* Apply the normalizer to s[0..n) into b (b->n reset). */
static qe_status normalize(const qe_tokenizer *t, const char *s, size_t n, qe_tok_buf *b, qe_tok_buf *tmp)
{
    qe_status st;
    b->n = 0;
    if ((st = qe_tok_buf_put(b, s, n)))
        return st;
    for (size_t k = 0; k < t->n_norm; k++) {
        const qe_tok_norm *op = &t->norm[k];
        tmp->n = 0;
        if (op->op == QE_NORM_PREPEND) {
            if (b->n == 0)
                continue; /* HF prepends only to non-empty text */
            if ((st = qe_tok_buf_put(tmp, op->to, op->to_len)) || (st = qe_tok_buf_put(tmp, b->p, b->n)))
                return st;
        } else {
            size_t run = 0;
            for (size_t i = 0; i + op->from_len <= b->n;) {
                if (memcmp(b->p + i, op->from, op->from_len)) {
                    i++;
                    continue;
                }
                if ((st = qe_tok_buf_put(tmp, b->p + run, i - run)) || (st = qe_tok_buf_put(tmp, op->to, op->to_len)))
                    return st;
                i += op->from_len;
                run = i;
            }
            if ((st = qe_tok_buf_put(tmp, b->p + run, b->n - run)))
                return st;
        }
        qe_tok_buf x = *b;
        *b = *tmp;
        *tmp = x;
    }
    return QE_OK;
}

/* ---- pre-tokenizer ---- */

static qe_status add_prestep(qe_tokenizer *t, qe_tok_prestep p)
{
    qe_tok_prestep *v = realloc(t->prestep, (t->n_prestep + 1) * sizeof *v);
    if (!v)
        return qe_fail(QE_ENOMEM, "%s: out of memory", t->source);
    t->prestep = v;
    v[t->n_prestep++] = p;
    return QE_OK;
}

static qe_status load_pretok(qe_tokenizer *t, const json_t *j, const char *path, int depth)
{
    const char *ty;
    qe_status st = component_type(t, j, path, &ty);
    if (st || !ty)
        return st;
    char sub[128];
    qe_tok_prestep p = {0};
    if (!strcmp(ty, "Sequence") && depth < 4)
        return load_sequence(t, j, "pretokenizers", path, depth, load_pretok);
    if (!strcmp(ty, "Metaspace")) {
        const char *rep, *scheme;
        size_t rn;
        int add_prefix;
        p.op = QE_PT_METASPACE;
        if ((st = get_str(t, j, "replacement", path, &rep, &rn)) || (st = get_str(t, j, "prepend_scheme", path, &scheme, NULL)) ||
            (st = get_bool(t, j, "add_prefix_space", path, 1, &add_prefix)) || (st = get_bool(t, j, "split", path, 1, &p.split)))
            return st;
        if (!rep) /* older files: str_rep */
            if ((st = get_str(t, j, "str_rep", path, &rep, &rn)))
                return st;
        if (!rep)
            rep = "\xE2\x96\x81", rn = 3;
        uint32_t cp;
        if (rn == 0 || rn >= sizeof p.rep || qe_unicode_decode(rep, rn, &cp) != rn)
            return qe_fail(QE_EUNSUPPORTED, "%s: %s.replacement must be one character", t->source, path);
        memcpy(p.rep, rep, rn);
        p.rep_len = rn;
        if (!scheme)
            p.flag = add_prefix ? QE_PREPEND_ALWAYS : QE_PREPEND_NEVER;
        else if (!strcmp(scheme, "always"))
            p.flag = QE_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "never"))
            p.flag = QE_PREPEND_NEVER;
        else if (!strcmp(scheme, "first"))
            p.flag = QE_PREPEND_FIRST;
        else
            return qe_fail(QE_ECORRUPT, "%s: %s.prepend_scheme '%s' (expected always, never, first)",
                           t->source, path, scheme);
        return add_prestep(t, p);
    }
    if (!strcmp(ty, "ByteLevel")) {
        p.op = QE_PT_BYTELEVEL;
        if ((st = get_bool(t, j, "add_prefix_space", path, 1, &p.flag)) || (st = get_bool(t, j, "use_regex", path, 1, &p.split)))
            return st;
        return add_prestep(t, p);
    }
    if (!strcmp(ty, "Digits")) {
        p.op = QE_PT_DIGITS;
        if ((st = get_bool(t, j, "individual_digits", path, 0, &p.flag)))
            return st;
        return add_prestep(t, p);
    }
    if (!strcmp(ty, "Split")) {
        const json_t *pat = json_object_get(j, "pattern");
        const char *re = NULL, *behavior;
        int invert;
        snprintf(sub, sizeof sub, "%s.pattern", path);
        if ((st = want(t, pat, JSON_OBJECT, sub)) || (st = get_str(t, pat, "Regex", sub, &re, NULL)) ||
            (st = get_str(t, j, "behavior", path, &behavior, NULL)) || (st = get_bool(t, j, "invert", path, 0, &invert)))
            return st;
        p.op = QE_PT_SPLIT;
        p.flag = re ? (int)qe_tok_pretok_from_regex(re) : QE_PRE_NONE;
        if (p.flag == QE_PRE_NONE || invert || !behavior || strcmp(behavior, "Isolated"))
            return qe_fail(QE_EUNSUPPORTED, "%s: %s: only Split with a GPT-2, Llama-3 or Qwen2 regex, "
                                            "behavior Isolated and no invert is supported",
                           t->source, path);
        return add_prestep(t, p);
    }
    return qe_fail(QE_EUNSUPPORTED, "%s: %s.type '%s' is not supported "
                                    "(Sequence, Metaspace, ByteLevel, Digits, Split)",
                   t->source, path, ty);
}

/* Pieces of a pre-tokenized fragment: text[off .. off+len) of a buffer. */
typedef struct pieces {
    qe_tok_buf text;
    size_t *off, *len;
    uint8_t *first; /* starts at offset 0 of the original input */
    size_t n, cap;
} pieces;

static qe_status piece_add(pieces *p, const char *s, size_t n, int first)
{
    if (p->n == p->cap) {
        size_t c = p->cap ? p->cap * 2 : 64;
        size_t *o = realloc(p->off, c * sizeof *o), *l = o ? realloc(p->len, c * sizeof *l) : NULL;
        uint8_t *f = l ? realloc(p->first, c) : NULL;
        if (o)
            p->off = o;
        if (l)
            p->len = l;
        if (f)
            p->first = f;
        if (!f)
            return qe_fail(QE_ENOMEM, "tokenizer: out of memory (%zu words)", c);
        p->cap = c;
    }
    p->off[p->n] = p->text.n;
    p->len[p->n] = n;
    p->first[p->n] = (uint8_t)first;
    p->n++;
    return qe_tok_buf_put(&p->text, s, n);
}

/* Append s[0..n) to the last piece (used to build a piece from parts). */
static qe_status piece_extend(pieces *p, const char *s, size_t n)
{
    p->len[p->n - 1] += n;
    return qe_tok_buf_put(&p->text, s, n);
}

static void pieces_free(pieces *p)
{
    free(p->text.p);
    free(p->off);
    free(p->len);
    free(p->first);
}

static qe_status split_into(pieces *out, const char *s, size_t n, int first, qe_tok_pre pre, size_t **ends,
                            size_t *cap)
{
    size_t nw = 0, start = 0;
    qe_status st = qe_tok_pretok_split(pre, s, n, ends, cap, &nw);
    for (size_t w = 0; w < nw && !st; start = (*ends)[w++])
        st = piece_add(out, s + start, (*ends)[w] - start, first && start == 0);
    return st;
}

/* A new piece holding s[0..n) mapped into GPT-2's byte alphabet. */
static qe_status piece_add_bytelevel(pieces *p, const char *s, size_t n, int first)
{
    qe_status st = piece_add(p, "", 0, first);
    for (size_t i = 0; i < n && !st; i++) {
        char u[4];
        st = piece_extend(p, u, qe_unicode_encode(qe_unicode_byte_to_cp((unsigned char)s[i]), u));
    }
    return st;
}

/* Metaspace: ' ' -> replacement, a prefix replacement (per prepend_scheme,
 * unless already there), then with split a new piece before every
 * replacement (HF's MergedWithNext). */
static qe_status metaspace(const qe_tok_prestep *ps, const char *s, size_t n, int first, pieces *out,
                           qe_tok_buf *r)
{
    qe_status st = QE_OK;
    r->n = 0;
    if (n == 0)
        return QE_OK;
    /* After the replacement the text starts with it iff it started with ' ' or with it. */
    int starts = s[0] == ' ' || (n >= ps->rep_len && !memcmp(s, ps->rep, ps->rep_len));
    int pre = ps->flag == QE_PREPEND_ALWAYS || (ps->flag == QE_PREPEND_FIRST && first);
    if (pre && !starts)
        st = qe_tok_buf_put(r, ps->rep, ps->rep_len);
    for (size_t i = 0; i < n && !st; i++)
        st = s[i] == ' ' ? qe_tok_buf_put(r, ps->rep, ps->rep_len) : qe_tok_buf_put(r, s + i, 1);
    if (st)
        return st;
    if (r->n == 0)
        return QE_OK;
    if (!ps->split)
        return piece_add(out, r->p, r->n, first);
    size_t start = 0;
    for (size_t i = 1; i + ps->rep_len <= r->n; i++) {
        if (memcmp(r->p + i, ps->rep, ps->rep_len))
            continue;
        if ((st = piece_add(out, r->p + start, i - start, first && start == 0)))
            return st;
        start = i;
    }
    return piece_add(out, r->p + start, r->n - start, first && start == 0);
}

/* Run one pre-tokenizer step over every piece of in, into out. */
static qe_status prestep_run(const qe_tok_prestep *ps, const pieces *in, pieces *out, pieces *tmp,
                             qe_tok_buf *scratch, size_t **ends, size_t *cap)
{
    qe_status st = QE_OK;
    out->n = 0;
    out->text.n = 0;
    for (size_t i = 0; i < in->n && !st; i++) {
        const char *s = in->text.p + in->off[i];
        size_t n = in->len[i];
        int first = in->first[i];
        if (ps->op == QE_PT_METASPACE) {
            st = metaspace(ps, s, n, first, out, scratch);
        } else if (ps->op == QE_PT_BYTELEVEL) {
            /* Optional prefix space, optional GPT-2 split, then the byte alphabet. */
            scratch->n = 0;
            if (ps->flag && !(n && s[0] == ' '))
                st = qe_tok_buf_put(scratch, " ", 1);
            if (!st)
                st = qe_tok_buf_put(scratch, s, n);
            tmp->n = 0;
            tmp->text.n = 0;
            if (!st && ps->split)
                st = split_into(tmp, scratch->p, scratch->n, first, QE_PRE_GPT2, ends, cap);
            else if (!st && scratch->n)
                st = piece_add(tmp, scratch->p, scratch->n, first);
            for (size_t w = 0; w < tmp->n && !st; w++)
                st = piece_add_bytelevel(out, tmp->text.p + tmp->off[w], tmp->len[w], tmp->first[w]);
        } else if (ps->op == QE_PT_DIGITS) {
            /* Digits isolated one by one (individual) or as runs; the rest in runs. */
            size_t k = 0;
            while (k < n && !st) {
                uint32_t cp;
                size_t e = k + qe_unicode_decode(s + k, n - k, &cp);
                int dig = (qe_unicode_flags(cp) & QE_UNICODE_NUMBER) != 0;
                while (e < n && !(dig && ps->flag)) {
                    size_t c2 = qe_unicode_decode(s + e, n - e, &cp);
                    if (((qe_unicode_flags(cp) & QE_UNICODE_NUMBER) != 0) != dig)
                        break;
                    e += c2;
                }
                st = piece_add(out, s + k, e - k, first && k == 0);
                k = e;
            }
        } else {
            st = split_into(out, s, n, first, (qe_tok_pre)ps->flag, ends, cap);
        }
    }
    return st;
}

/* ---- the model ---- */

/* Words up to this many bytes are cached (longer ones rarely repeat). */
#define CACHE_MAX_WORD 256

typedef struct word_scratch {
    int32_t *sym;
    uint8_t *cut;
    size_t cap;
    qe_tok_cache cache;
} word_scratch;

static qe_status bpe_word(const qe_tokenizer *t, const char *s, size_t n, word_scratch *ws, qe_tokenizer_ids *out)
{
    qe_status st;
    if (n == 0)
        return QE_OK;
    if (n <= CACHE_MAX_WORD && qe_tok_cache_get(&ws->cache, s, n, out))
        return QE_OK;
    size_t before = out->n;
    int32_t whole = t->ignore_merges ? qe_tok_lookup(t, s, n) : -1;
    if (whole >= 0) {
        if ((st = qe_tokenizer_ids_push(out, whole)))
            return st;
        goto cache;
    }
    if (ws->cap < n) {
        int32_t *v = realloc(ws->sym, n * sizeof *v);
        if (v)
            ws->sym = v;
        uint8_t *c = v ? realloc(ws->cut, n) : NULL;
        if (!c)
            return qe_fail(QE_ENOMEM, "tokenizer: out of memory for a word of %zu bytes", n);
        ws->cut = c, ws->cap = n;
    }
    int32_t *v = ws->sym;
    uint8_t *cut = ws->cut;
    size_t k = 0;
    int unk_pending = 0; /* HF keeps one pending (fused) unknown and emits it
                            only before the next known character or at the end */
    int prev_direct = 0; /* previous symbol is a character found in the vocabulary */
    unsigned char prev_last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t c = qe_unicode_decode(s + i, n - i, &cp);
        int32_t id = qe_tok_lookup(t, s + i, c);
        if (id >= 0) {
            if (unk_pending)
                cut[k] = 0, v[k++] = t->unk, unk_pending = 0, prev_direct = 0;
            /* A gap between two plain characters whose bytes no token holds
             * side by side: no merge can cross it. */
            cut[k] = prev_direct && !qe_tok_pair_seen(t, prev_last, (unsigned char)s[i]);
            v[k++] = id;
            prev_direct = 1, prev_last = (unsigned char)s[i + c - 1];
        } else {
            int all = t->byte_fallback;
            for (size_t b = 0; b < c && all; b++)
                all = t->byte_tok[(unsigned char)s[i + b]] >= 0;
            if (all) {
                for (size_t b = 0; b < c; b++)
                    cut[k] = 0, v[k++] = t->byte_tok[(unsigned char)s[i + b]];
            } else if (t->unk >= 0) {
                if (unk_pending && !t->fuse_unk)
                    cut[k] = 0, v[k++] = t->unk;
                unk_pending = 1;
            } /* no unknown token: HF drops the character */
            prev_direct = 0;
        }
        i += c;
    }
    if (unk_pending)
        cut[k] = 0, v[k++] = t->unk;
    if ((st = qe_tok_bpe_merge(t, v, k, cut, out)))
        return st;
cache:
    if (n <= CACHE_MAX_WORD)
        return qe_tok_cache_put(&ws->cache, s, n, out, before);
    return QE_OK;
}

qe_status qe_tok_hf_encode(const qe_tokenizer *t, const char *text, size_t len, int first, unsigned flags,
                           qe_tokenizer_ids *out)
{
    qe_status st = QE_OK;
    qe_tok_buf norm = {0}, tmp = {0};
    qe_tok_frag *frags = NULL;
    size_t n_frags = 0, *ends = NULL, ends_cap = 0;
    word_scratch ws = {0};
    pieces a = {0}, b = {0}, c = {0};
    qe_tok_buf scratch = {0};
    if ((st = normalize(t, text, len, &norm, &tmp)))
        goto done;
    if ((st = qe_tok_partition(t, norm.p ? norm.p : "", norm.n, (flags & QE_TOK_PARSE_SPECIAL) != 0, 1,
                               &frags, &n_frags)))
        goto done;
    for (size_t f = 0; f < n_frags; f++) {
        if (frags[f].id >= 0) {
            if ((st = qe_tokenizer_ids_push(out, frags[f].id)))
                goto done;
            continue;
        }
        a.n = 0, a.text.n = 0;
        if ((st = piece_add(&a, norm.p + frags[f].off, frags[f].len, first && frags[f].off == 0)))
            goto done;
        for (size_t k = 0; k < t->n_prestep; k++) {
            if ((st = prestep_run(&t->prestep[k], &a, &b, &c, &scratch, &ends, &ends_cap)))
                goto done;
            pieces x = a;
            a = b;
            b = x;
        }
        for (size_t w = 0; w < a.n; w++)
            if ((st = bpe_word(t, a.text.p + a.off[w], a.len[w], &ws, out)))
                goto done;
    }
done:
    free(norm.p);
    free(tmp.p);
    free(frags);
    free(ends);
    free(ws.sym);
    free(ws.cut);
    qe_tok_cache_free(&ws.cache);
    pieces_free(&a);
    pieces_free(&b);
    pieces_free(&c);
    free(scratch.p);
    return st;
}

/* ---- loading ---- */

/* Append "+part" (or "part" to an empty name), truncating quietly. */
static void append_name(char *name, size_t cap, const char *part)
{
    size_t l = strlen(name);
    if (l + 1 < cap)
        snprintf(name + l, cap - l, "%s%s", l ? "+" : "", part);
}

static qe_status read_file(const char *path, char **out, size_t *len)
{
    qe_status st = QE_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    long size;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = qe_fail(QE_EIO, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    buf = malloc((size_t)size + 1);
    if (!buf) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory for %ld bytes", path, size);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        st = qe_fail(QE_EIO, "%s: read error", path);
        goto done;
    }
    *out = buf, *len = (size_t)size;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return st;
}

typedef struct entry {
    const char *s;
    size_t len;
    int attr;
    const json_t *added; /* the added_tokens object, if any */
} entry;

/* Special token ids named in a TemplateProcessing "single" template. */
static qe_status load_template(qe_tokenizer *t, const json_t *pp, const char *path)
{
    qe_status st;
    const json_t *single = json_object_get(pp, "single"), *specials = json_object_get(pp, "special_tokens");
    char sub[160];
    snprintf(sub, sizeof sub, "%s.single", path);
    if ((st = want(t, single, JSON_ARRAY, sub)))
        return st;
    int seen_seq = 0, n_before = 0, n_after = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *it = json_array_get(single, i), *sp = json_object_get(it, "SpecialToken");
        if (json_object_get(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
        if (!json_is_object(sp))
            return qe_fail(QE_ECORRUPT, "%s: %s: expected SpecialToken or Sequence", t->source, sub);
        const char *name;
        if ((st = get_str(t, sp, "id", sub, &name, NULL)))
            return st;
        const json_t *def = name ? json_object_get(specials, name) : NULL, *ids = json_object_get(def, "ids");
        if (!json_is_array(ids) || json_array_size(ids) != 1 || !json_is_integer(json_array_get(ids, 0)))
            return qe_fail(QE_EUNSUPPORTED, "%s: %s: special token '%s' must map to exactly one id in "
                                            "%s.special_tokens", t->source, sub, name ? name : "?", path);
        json_int_t id = json_integer_value(json_array_get(ids, 0));
        if (id < 0 || id >= (json_int_t)t->n)
            return qe_fail(QE_ECORRUPT, "%s: %s: special token id %lld is out of range (vocabulary of %u)",
                           t->source, sub, (long long)id, t->n);
        if (!seen_seq) {
            t->bos = (int32_t)id, t->add_bos = 1, n_before++;
        } else {
            t->eos = (int32_t)id, t->add_eos = 1, n_after++;
        }
    }
    if (n_before > 1 || n_after > 1)
        return qe_fail(QE_EUNSUPPORTED, "%s: %s.single: more than one special token on a side", t->source, path);
    return QE_OK;
}

static qe_status load_post(qe_tokenizer *t, const json_t *j, const char *path, int depth)
{
    if (!j || json_is_null(j))
        return QE_OK;
    qe_status st = want(t, j, JSON_OBJECT, path);
    if (st)
        return st;
    const char *ty = type_of(j);
    if (ty && !strcmp(ty, "TemplateProcessing"))
        return load_template(t, j, path);
    if (ty && !strcmp(ty, "ByteLevel"))
        return QE_OK; /* only trims offsets */
    if (ty && !strcmp(ty, "Sequence") && depth < 4)
        return load_sequence(t, j, "processors", path, depth, load_post);
    return qe_fail(QE_EUNSUPPORTED, "%s: %s.type '%s' is not supported (TemplateProcessing, ByteLevel, Sequence)",
                   t->source, path, ty ? ty : "?");
}

/* Optional JSON file beside tokenizer.json; NULL when absent. */
static qe_status load_side(const char *dir, const char *name, json_t **out)
{
    char p[1024];
    *out = NULL;
    snprintf(p, sizeof p, "%s%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f)
        return QE_OK;
    fclose(f);
    json_error_t err;
    /* Integers as doubles: these files hold values like model_max_length = 1e30
     * written as an integer, which jansson's 64-bit integers reject. */
    *out = json_load_file(p, JSON_DECODE_INT_AS_REAL, &err);
    if (!*out)
        return qe_fail(QE_ECORRUPT, "%s: line %d column %d: %s", p, err.line, err.column, err.text);
    return QE_OK;
}

static int32_t side_token(const qe_tokenizer *t, const json_t *v)
{
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? qe_tok_lookup(t, json_string_value(v), json_string_length(v)) : -1;
}

static int32_t side_id(const qe_tokenizer *t, const json_t *v)
{
    if (json_is_array(v))
        v = json_array_get(v, 0);
    if (!json_is_number(v))
        return -1;
    double id = json_number_value(v);
    return id >= 0 && id < (double)t->n && id == (double)(int32_t)id ? (int32_t)id : -1;
}

/* BOS/EOS ids the post-processor did not give: tokenizer_config.json
 * (bos_token, eos_token), then config.json (bos_token_id, eos_token_id). */
static qe_status load_side_ids(qe_tokenizer *t, const char *path)
{
    qe_status st;
    char dir[1024];
    const char *slash = strrchr(path, '/');
    size_t dn = slash ? (size_t)(slash - path) + 1 : 0;
    if (dn >= sizeof dir)
        return QE_OK;
    memcpy(dir, path, dn);
    dir[dn] = '\0';
    json_t *tc = NULL, *cf = NULL;
    if ((st = load_side(dir, "tokenizer_config.json", &tc)) || (st = load_side(dir, "config.json", &cf)))
        goto done;
    if (t->bos < 0)
        t->bos = side_token(t, json_object_get(tc, "bos_token"));
    if (t->eos < 0)
        t->eos = side_token(t, json_object_get(tc, "eos_token"));
    if (t->bos < 0)
        t->bos = side_id(t, json_object_get(cf, "bos_token_id"));
    if (t->eos < 0)
        t->eos = side_id(t, json_object_get(cf, "eos_token_id"));
done:
    json_decref(tc);
    json_decref(cf);
    return st;
}

qe_status qe_tok_hf_load(qe_tokenizer *t, const char *path)
{
    qe_status st = QE_OK;
    json_error_t err;
    entry *ent = NULL;
    char *bytes_in = NULL;
    size_t n_in = 0;
    /* Read whole, then parse: json_load_file reads a character at a time. */
    if ((st = read_file(path, &bytes_in, &n_in)))
        return st;
    json_t *root = json_loadb(bytes_in, n_in, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    free(bytes_in);
    if (!root)
        return qe_fail(QE_ECORRUPT, "%s: line %d column %d: %s", path, err.line, err.column, err.text);
    t->special_hf = 1;
    const json_t *model = json_object_get(root, "model"), *vocab, *merges, *added;
    if ((st = want(t, root, JSON_OBJECT, "the top level")) || (st = want(t, model, JSON_OBJECT, "model")))
        goto done;
    const char *ty = type_of(model);
    if (ty && strcmp(ty, "BPE")) {
        st = qe_fail(QE_EUNSUPPORTED, "%s: model.type '%s' is not supported (BPE)", path, ty);
        goto done;
    }
    vocab = json_object_get(model, "vocab");
    merges = json_object_get(model, "merges");
    added = json_object_get(root, "added_tokens");
    if ((st = want(t, vocab, JSON_OBJECT, "model.vocab")) || (st = want(t, merges, JSON_ARRAY, "model.merges")))
        goto done;
    if (added && !json_is_null(added) && (st = want(t, added, JSON_ARRAY, "added_tokens")))
        goto done;
    const char *unk_s, *cs, *es;
    size_t unk_n;
    int ign;
    if ((st = get_bool(t, model, "byte_fallback", "model", 0, &t->byte_fallback)) ||
        (st = get_bool(t, model, "fuse_unk", "model", 0, &t->fuse_unk)) ||
        (st = get_bool(t, model, "ignore_merges", "model", 0, &ign)) ||
        (st = get_str(t, model, "unk_token", "model", &unk_s, &unk_n)) ||
        (st = get_str(t, model, "continuing_subword_prefix", "model", &cs, NULL)) ||
        (st = get_str(t, model, "end_of_word_suffix", "model", &es, NULL)))
        goto done;
    t->ignore_merges = ign;
    const json_t *dropout = json_object_get(model, "dropout");
    if ((cs && *cs) || (es && *es) || (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)) {
        st = qe_fail(QE_EUNSUPPORTED, "%s: model: continuing_subword_prefix, end_of_word_suffix and dropout "
                                      "are not supported", path);
        goto done;
    }

    /* Ids: the vocabulary plus added tokens must cover 0..n-1 exactly. */
    json_int_t max_id = -1;
    for (void *it = json_object_iter((json_t *)vocab); it; it = json_object_iter_next((json_t *)vocab, it)) {
        json_t *v = json_object_iter_value(it);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= QE_TOKENIZER_MAX_VOCAB) {
            st = qe_fail(QE_ECORRUPT, "%s: model.vocab['%s'] = %s: expected an id in 0..%u", path,
                         json_object_iter_key(it), json_is_integer(v) ? "out of range" : type_name(v),
                         QE_TOKENIZER_MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(v) > max_id)
            max_id = json_integer_value(v);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= QE_TOKENIZER_MAX_VOCAB || !json_is_string(c) || !json_string_length(c)) {
            st = qe_fail(QE_ECORRUPT, "%s: added_tokens[%zu]: expected an object with an id in 0..%u and a "
                                      "non-empty content string", path, i, QE_TOKENIZER_MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(id) > max_id)
            max_id = json_integer_value(id);
    }
    if (max_id < 0) {
        st = qe_fail(QE_ECORRUPT, "%s: model.vocab is empty", path);
        goto done;
    }
    uint32_t n = (uint32_t)max_id + 1;
    ent = calloc(n, sizeof *ent);
    if (!ent) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory for %u tokens", path, n);
        goto done;
    }
    size_t bytes = 0;
    for (void *it = json_object_iter((json_t *)vocab); it; it = json_object_iter_next((json_t *)vocab, it)) {
        json_int_t id = json_integer_value(json_object_iter_value(it));
        if (ent[id].s) {
            st = qe_fail(QE_ECORRUPT, "%s: model.vocab: id %lld is used by both '%s' and '%s'", path,
                         (long long)id, ent[id].s, json_object_iter_key(it));
            goto done;
        }
        ent[id].s = json_object_iter_key(it);
        ent[id].len = json_object_iter_key_len(it);
        ent[id].attr = QE_TOKATTR_NORMAL;
        bytes += ent[id].len;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        int special, single;
        char sub[64];
        snprintf(sub, sizeof sub, "added_tokens[%zu]", i);
        if ((st = get_bool(t, a, "special", sub, 0, &special)) || (st = get_bool(t, a, "single_word", sub, 0, &single)))
            goto done;
        if (single) {
            st = qe_fail(QE_EUNSUPPORTED, "%s: %s: single_word added tokens are not supported", path, sub);
            goto done;
        }
        if (ent[id].s && (ent[id].len != json_string_length(c) || memcmp(ent[id].s, json_string_value(c), ent[id].len))) {
            st = qe_fail(QE_ECORRUPT, "%s: %s: id %lld is '%s' in model.vocab but '%s' here", path, sub,
                         (long long)id, ent[id].s, json_string_value(c));
            goto done;
        }
        if (!ent[id].s)
            bytes += json_string_length(c);
        ent[id].s = json_string_value(c);
        ent[id].len = json_string_length(c);
        ent[id].attr = special ? QE_TOKATTR_CONTROL : QE_TOKATTR_USER_DEFINED;
        ent[id].added = a;
    }
    for (uint32_t id = 0; id < n; id++)
        if (!ent[id].s) {
            st = qe_fail(QE_ECORRUPT, "%s: no token has id %u (ids must run 0..%u without gaps)", path, id, n - 1);
            goto done;
        }
    if ((st = qe_tok_alloc(t, n, bytes)))
        goto done;
    for (uint32_t id = 0; id < n; id++) {
        int attr = ent[id].attr;
        if (attr == QE_TOKATTR_NORMAL && t->byte_fallback && ent[id].len == 6 && !memcmp(ent[id].s, "<0x", 3))
            attr = QE_TOKATTR_BYTE;
        qe_tok_set(t, id, ent[id].s, ent[id].len, 0.0f, attr);
    }

    /* Normalizer and pre-tokenizer decide how pieces decode. */
    if ((st = load_normalizer(t, json_object_get(root, "normalizer"), "normalizer", 0)) ||
        (st = load_pretok(t, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0)))
        goto done;
    t->piece_mode = QE_PIECE_RAW;
    for (size_t k = 0; k < t->n_norm; k++) {
        const qe_tok_norm *o = &t->norm[k];
        if (o->op == QE_NORM_REPLACE && o->from_len == 1 && o->from[0] == ' ' && !strcmp(o->to, "\xE2\x96\x81"))
            t->piece_mode = QE_PIECE_METASPACE;
        if (o->op == QE_NORM_PREPEND && !strcmp(o->to, "\xE2\x96\x81"))
            t->dummy_prefix = 1;
    }
    /* A summary for messages: "normalizer+metaspace+byte_fallback". */
    t->pre_name[0] = '\0';
    if (t->n_norm)
        append_name(t->pre_name, sizeof t->pre_name, "normalizer");
    for (size_t k = 0; k < t->n_prestep; k++) {
        const qe_tok_prestep *p = &t->prestep[k];
        if (p->op == QE_PT_METASPACE) {
            t->piece_mode = QE_PIECE_METASPACE;
            t->dummy_prefix |= p->flag != QE_PREPEND_NEVER;
        }
        if (p->op == QE_PT_BYTELEVEL) {
            t->piece_mode = QE_PIECE_BYTELEVEL;
            t->bytelevel = 1;
            t->dummy_prefix |= p->flag;
        }
        static const char *names[] = {"?", "metaspace", "bytelevel", "digits", "split"};
        append_name(t->pre_name, sizeof t->pre_name, names[p->op]);
    }
    if (!t->n_prestep)
        append_name(t->pre_name, sizeof t->pre_name, "none");
    if (t->byte_fallback)
        append_name(t->pre_name, sizeof t->pre_name, "byte_fallback");

    /* Added tokens are matched in the input; normalized ones by their normalized form. */
    t->special = calloc(json_array_size(added) + 1, sizeof *t->special);
    if (!t->special) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        int normalized, lstrip, rstrip;
        char sub[64];
        snprintf(sub, sizeof sub, "added_tokens[%zu]", i);
        if ((st = get_bool(t, a, "normalized", sub, 0, &normalized)) || (st = get_bool(t, a, "lstrip", sub, 0, &lstrip)) ||
            (st = get_bool(t, a, "rstrip", sub, 0, &rstrip)))
            goto done;
        qe_tok_special *sp = &t->special[t->n_special];
        sp->id = id;
        sp->control = t->attr[id] == QE_TOKATTR_CONTROL;
        sp->flags = (uint8_t)((normalized ? QE_TOKF_NORMALIZED : 0) | (lstrip ? QE_TOKF_LSTRIP : 0) |
                              (rstrip ? QE_TOKF_RSTRIP : 0));
        const char *c = json_string_value(json_object_get(a, "content"));
        size_t cn = json_string_length(json_object_get(a, "content"));
        if (normalized) {
            qe_tok_buf nb = {0}, tb = {0};
            st = normalize(t, c, cn, &nb, &tb);
            free(tb.p);
            if (st) {
                free(nb.p);
                goto done;
            }
            if (nb.n == 0) { /* normalized to nothing: it can never match */
                free(nb.p);
                continue;
            }
            sp->s = nb.p, sp->len = nb.n;
        } else {
            sp->s = dup_bytes(c, cn), sp->len = cn;
            if (!sp->s) {
                st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
                goto done;
            }
        }
        t->n_special++;
    }
    if ((st = qe_tok_finish(t, "model.vocab")))
        goto done;

    /* Merges: "a b" strings or ["a", "b"] pairs; rank = position. */
    size_t nm = json_array_size(merges);
    if (nm > UINT32_MAX / 4) {
        st = qe_fail(QE_ERANGE, "%s: model.merges has %zu entries", path, nm);
        goto done;
    }
    if ((st = qe_tok_merges_alloc(t, (uint32_t)nm)))
        goto done;
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        int32_t l, r, res;
        if (json_is_string(m)) {
            st = qe_tok_merge_parse(t, json_string_value(m), json_string_length(m), "model.merges", i, &l, &r, &res);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            size_t la = json_string_length(a), lb = json_string_length(b);
            char *cat = malloc(la + lb + 1);
            if (!cat) {
                st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(cat, json_string_value(a), la);
            memcpy(cat + la, json_string_value(b), lb);
            l = qe_tok_lookup(t, json_string_value(a), la);
            r = qe_tok_lookup(t, json_string_value(b), lb);
            res = qe_tok_lookup(t, cat, la + lb);
            free(cat);
            if (l < 0 || r < 0 || res < 0)
                st = qe_fail(QE_ECORRUPT, "%s: model.merges[%zu] = ['%s', '%s']: %s is not in the vocabulary",
                             path, i, json_string_value(a), json_string_value(b),
                             l < 0 ? "the first piece" : r < 0 ? "the second piece" : "the merged piece");
        } else {
            st = qe_fail(QE_ECORRUPT, "%s: model.merges[%zu] is %s, expected \"a b\" or [\"a\", \"b\"]", path, i,
                         type_name(m));
        }
        if (st)
            goto done;
        qe_tok_merge_put(t, l, r, (uint32_t)i, res);
    }

    if (unk_s) {
        t->unk = qe_tok_lookup(t, unk_s, unk_n);
        if (t->unk < 0) {
            st = qe_fail(QE_ECORRUPT, "%s: model.unk_token '%s' is not in the vocabulary", path, unk_s);
            goto done;
        }
        if (t->attr[t->unk] == QE_TOKATTR_NORMAL || t->attr[t->unk] == QE_TOKATTR_CONTROL)
            t->attr[t->unk] = QE_TOKATTR_UNKNOWN;
    }
    if ((st = load_post(t, json_object_get(root, "post_processor"), "post_processor", 0)))
        goto done;
    st = load_side_ids(t, path);
done:
    free(ent);
    json_decref(root);
    return st;
}
