/* job.c - job files (format: job.h): libinih parses the INI syntax; this
 * file validates every value, remembers the line of every key for its
 * messages, checks that files exist, and expands the sweep into runs.
 *
 * libinih does not report line numbers to its handler, so the file is fed
 * to ini_parse_stream through a reader that counts lines; the handler runs
 * right after the reader returned its line, so the count is that line's.
 * libinih's process-wide options are set once (no multi-line values, long
 * lines, stop at the first error).
 *
 * Threading: parse on one thread at a time; the qe_job is read-only after.
 */
#include "job.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dtype.h"
#include "hash.h"
#include "kv_format.h"
#include "quant.h"

#define MAX_LINE 4096
#define MAX_JOB_BYTES (1u << 20)
#define MAX_ITEMS 1024

enum sec_kind { SEC_NONE, SEC_JOB, SEC_MODEL, SEC_DATASET, SEC_SWEEP, SEC_GENERATE };

/* A key seen: for duplicate detection and for messages after parsing. */
struct seen {
    enum sec_kind kind;
    int index;          /* model/dataset index, 0 otherwise */
    const char *key;    /* static key name */
    int line;
};

struct parse {
    qe_job *job;
    const char *file;
    unsigned flags;
    const char *buf;
    size_t len, pos;
    int line;
    qe_status st;               /* first error */
    char section[256];          /* as libinih gives it */
    enum sec_kind kind;
    int index;                  /* current model/dataset */
    int header_line;            /* line of the last [section] header */
    int header_has_keys;        /* the last header had a key after it */
    int new_header;             /* a header was read since the last key */
    struct seen *seen;
    size_t n_seen, cap_seen;
};

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

static void ini_setup(void)
{
    ini_allow_multiline = 0;   /* an indented line is an error, not a continuation */
    ini_max_line = MAX_LINE;
    ini_stop_on_first_error = 1;
}

static qe_status perr(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qe_status perr(struct parse *p, int line, const char *fmt, ...)
{
    if (p->st != QE_OK)
        return p->st;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        p->st = qe_fail(QE_ECORRUPT, "%s:%d: %s", p->file, line, msg);
    else
        p->st = qe_fail(QE_ECORRUPT, "%s: %s", p->file, msg);
    return p->st;
}

static int seen_line(const struct parse *p, enum sec_kind kind, int index, const char *key)
{
    for (size_t i = 0; i < p->n_seen; i++)
        if (p->seen[i].kind == kind && p->seen[i].index == index && !strcmp(p->seen[i].key, key))
            return p->seen[i].line;
    return 0;
}

/* Record a key (a static string); an error if it was given before. */
static qe_status mark(struct parse *p, const char *key, int repeatable)
{
    int prev = seen_line(p, p->kind, p->index, key);
    if (prev && !repeatable)
        return perr(p, p->line, "'%s' given twice in [%s] (first at line %d)", key, p->section,
                    prev);
    if (p->n_seen == p->cap_seen) {
        size_t n = p->cap_seen ? 2 * p->cap_seen : 32;
        struct seen *s = realloc(p->seen, n * sizeof *s);
        if (!s)
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        p->seen = s;
        p->cap_seen = n;
    }
    p->seen[p->n_seen++] = (struct seen){p->kind, p->index, key, p->line};
    return QE_OK;
}

/* ---- values ---- */

static qe_status set_str(struct parse *p, char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? QE_OK : (p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file));
}

static qe_status parse_int(struct parse *p, const char *key, const char *v, int64_t lo, int64_t hi,
                           int64_t *out)
{
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return perr(p, p->line, "%s = '%s': expected an integer %" PRId64 " .. %" PRId64, key, v,
                    lo, hi);
    *out = x;
    return QE_OK;
}

static qe_status parse_real(struct parse *p, const char *key, const char *v, double lo_excl,
                            double hi, double *out)
{
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x > lo_excl) || !(x <= hi))
        return perr(p, p->line, "%s = '%s': expected a number above %g and at most %g", key, v,
                    lo_excl, hi);
    *out = x;
    return QE_OK;
}

static qe_status parse_bool(struct parse *p, const char *key, const char *v, int *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i]))
            return *out = 1, QE_OK;
        if (!strcmp(v, no[i]))
            return *out = 0, QE_OK;
    }
    return perr(p, p->line, "%s = '%s': expected yes or no", key, v);
}

/* Split "a, b ,c" into trimmed items; empty items and duplicates are errors. */
static qe_status parse_list(struct parse *p, const char *key, const char *v, char ***items,
                            size_t *n)
{
    *items = NULL;
    *n = 0;
    const char *s = v;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (!len)
            return perr(p, p->line, "%s = '%s': empty item in the list", key, v);
        if (*n == MAX_ITEMS)
            return perr(p, p->line, "%s: more than %d items", key, MAX_ITEMS);
        char **grown = realloc(*items, (*n + 1) * sizeof **items);
        if (!grown || !(grown[*n] = strndup(s, len))) {
            if (grown)
                *items = grown;
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        }
        *items = grown;
        for (size_t i = 0; i < *n; i++)
            if (!strcmp((*items)[i], grown[*n])) {
                (*n)++;
                return perr(p, p->line, "%s: '%s' is listed twice", key, grown[*n - 1]);
            }
        (*n)++;
        if (!comma)
            return QE_OK;
        s = comma + 1;
    }
}

static void free_list(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

/* A path value with ${VAR} from the environment. An empty one is an error:
 * "output =" would otherwise name no file, and SQLite opens "" as a
 * temporary database that vanishes with the results. */
static qe_status expand(struct parse *p, const char *key, const char *v, char **out)
{
    if (!*v)
        return perr(p, p->line, "%s: empty, expected a path", key);
    size_t cap = strlen(v) + 1, n = 0;
    char *o = malloc(cap);
    if (!o)
        return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
    for (const char *s = v; *s;) {
        const char *add = s;
        size_t len = 1;
        if (s[0] == '$' && s[1] == '{') {
            const char *close = strchr(s + 2, '}');
            if (!close) {
                free(o);
                return perr(p, p->line, "%s: '${' without a closing '}'", key);
            }
            char var[256];
            size_t vl = (size_t)(close - s - 2);
            if (vl == 0 || vl >= sizeof var) {
                free(o);
                return perr(p, p->line, "%s: bad variable name in '%.*s'", key,
                            (int)(close - s + 1), s);
            }
            memcpy(var, s + 2, vl);
            var[vl] = '\0';
            add = getenv(var);
            if (!add || !*add) {
                free(o);
                return perr(p, p->line, "%s: ${%s} is not set in the environment", key, var);
            }
            len = strlen(add);
            s = close + 1;
        } else {
            s++;
        }
        if (n + len + 1 > cap) {
            cap = 2 * (n + len + 1);
            char *g = realloc(o, cap);
            if (!g) {
                free(o);
                return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
            }
            o = g;
        }
        memcpy(o + n, add, len);
        n += len;
    }
    o[n] = '\0';
    *out = o;
    return QE_OK;
}

/* A stop string: "quoted with \n \t \\ \" \xNN escapes", or bare text. */
static qe_status parse_cstring(struct parse *p, const char *v, char **out, size_t *len)
{
    size_t n = strlen(v);
    char *o = malloc(n + 1);
    if (!o)
        return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
    size_t k = 0;
    if (v[0] != '"') {
        memcpy(o, v, n);
        k = n;
    } else {
        if (n < 2 || v[n - 1] != '"') {
            free(o);
            return perr(p, p->line, "stop = %s: a quoted string must end with '\"'", v);
        }
        for (size_t i = 1; i < n - 1; i++) {
            char c = v[i];
            if (c == '"') {
                free(o);
                return perr(p, p->line, "stop = %s: unescaped '\"' at column %zu (write \\\")",
                            v, i + 1);
            }
            if (c != '\\') {
                o[k++] = c;
                continue;
            }
            if (++i >= n - 1) {
                free(o);
                return perr(p, p->line, "stop = %s: '\\' at the end of the string", v);
            }
            switch (v[i]) {
            case 'n': o[k++] = '\n'; break;
            case 't': o[k++] = '\t'; break;
            case 'r': o[k++] = '\r'; break;
            case '\\': o[k++] = '\\'; break;
            case '"': o[k++] = '"'; break;
            case 'x': {
                unsigned x = 0;
                int d;
                for (d = 0; d < 2 && i + 1 < n - 1; d++) {
                    char h = v[i + 1];
                    int hv = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                             : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (hv < 0)
                        break;
                    x = x * 16 + (unsigned)hv;
                    i++;
                }
                if (d != 2) {
                    free(o);
                    return perr(p, p->line, "stop = %s: \\x needs two hex digits", v);
                }
                o[k++] = (char)x;
                break;
            }
            default:
                free(o);
                return perr(p, p->line, "stop = %s: unknown escape '\\%c' (known: \\n \\t \\r "
                            "\\\\ \\\" \\xNN)", v, v[i]);
            }
        }
    }
    if (k == 0) {
        free(o);
        return perr(p, p->line, "stop: empty stop string");
    }
    o[k] = '\0';
    *out = o;
    *len = k;
    return QE_OK;
}

/* Weight formats: "native" (as stored) or a requantization target of
 * lib/quant.h; KV formats: lib/kv_format.h. Those modules decide what
 * exists, so a job can name exactly what the engine can run. */
static int weight_format_ok(const char *v)
{
    qe_dtype t;
    return !strcmp(v, "native") || (qe_dtype_from_name(v, &t) == QE_OK && qe_quant_target_ok(t));
}

static int kv_format_ok(const char *v)
{
    qe_kv_format f;
    return qe_kv_format_parse(v, &f) == QE_OK;
}

static void weight_known(char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "native");
    for (uint32_t t = 0; t < QE_DT_MAX && o < cap; t++)
        if (qe_dtype_known(t) && qe_quant_target_ok((qe_dtype)t))
            o += (size_t)snprintf(buf + o, cap - o, ", %s", qe_dtype_name(t));
}

static void kv_known(char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int f = 0; f < QE_KV_FORMAT_COUNT && o < cap; f++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", f ? ", " : "",
                              qe_kv_format_name((qe_kv_format)f));
}

static qe_status check_formats(struct parse *p, const char *key, char **items, size_t n, int kv)
{
    for (size_t i = 0; i < n; i++)
        if (!(kv ? kv_format_ok(items[i]) : weight_format_ok(items[i]))) {
            char known[256];
            if (kv)
                kv_known(known, sizeof known);
            else
                weight_known(known, sizeof known);
            qe_errclear();
            return perr(p, p->line, "%s: unknown format '%s' (known: %s)", key, items[i], known);
        }
    return QE_OK;
}

/* ---- sections ---- */

static qe_status enter_section(struct parse *p, const char *section)
{
    snprintf(p->section, sizeof p->section, "%s", section);
    char kind[64] = "", name[192] = "";
    const char *s = section;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t kl = strcspn(s, " \t");
    snprintf(kind, sizeof kind, "%.*s", (int)(kl < 63 ? kl : 63), s);
    s += kl;
    while (*s == ' ' || *s == '\t')
        s++;
    snprintf(name, sizeof name, "%s", s);
    size_t nl = strlen(name);
    while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
        name[--nl] = '\0';
    int line = p->header_line ? p->header_line : p->line;
    p->index = 0;
    if (!strcmp(kind, "job") || !strcmp(kind, "sweep") || !strcmp(kind, "generate")) {
        if (*name)
            return perr(p, line, "[%s] takes no name", kind);
        p->kind = !strcmp(kind, "job") ? SEC_JOB : !strcmp(kind, "sweep") ? SEC_SWEEP : SEC_GENERATE;
        return QE_OK;
    }
    if (strcmp(kind, "model") && strcmp(kind, "dataset"))
        return perr(p, line, "unknown section [%s] (expected [job], [model NAME], [dataset NAME], "
                    "[sweep] or [generate])", section);
    int is_model = !strcmp(kind, "model");
    if (!*name)
        return perr(p, line, "[%s] needs a name: [%s NAME]", kind, kind);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("_.-", *c)))
            return perr(p, line, "[%s %s]: a name may hold letters, digits, '_', '.' and '-'",
                        kind, name);
    qe_job *j = p->job;
    size_t n = is_model ? j->n_models : j->n_datasets;
    for (size_t i = 0; i < n; i++) {
        const char *other = is_model ? j->models[i].name : j->datasets[i].name;
        int oline = is_model ? j->models[i].line : j->datasets[i].line;
        if (!strcmp(other, name))
            return perr(p, line, "[%s %s] appears twice (first at line %d)", kind, name, oline);
    }
    if (is_model) {
        qe_job_model *m = realloc(j->models, (n + 1) * sizeof *m);
        if (!m)
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        j->models = m;
        m[n] = (qe_job_model){strdup(name), NULL, NULL, line};
        j->n_models++;
        if (!m[n].name)
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        p->kind = SEC_MODEL;
    } else {
        qe_job_dataset *d = realloc(j->datasets, (n + 1) * sizeof *d);
        if (!d)
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        j->datasets = d;
        d[n] = (qe_job_dataset){strdup(name), NULL, QE_DATASET_TEXT, NULL, 0, line};
        j->n_datasets++;
        if (!d[n].name)
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        p->kind = SEC_DATASET;
    }
    p->index = (int)n;
    return QE_OK;
}

static qe_status unknown_key(struct parse *p, const char *key, const char *known)
{
    return perr(p, p->line, "unknown key '%s' in [%s] (known: %s)", key, p->section, known);
}

static qe_status key_job(struct parse *p, const char *k, const char *v)
{
    qe_job *j = p->job;
    int64_t x;
    if (!strcmp(k, "name")) {
        if (mark(p, "name", 0) || !*v)
            return p->st ? p->st : perr(p, p->line, "name: empty");
        return set_str(p, &j->name, v);
    }
    if (!strcmp(k, "output")) {
        if (mark(p, "output", 0))
            return p->st;
        free(j->output);
        j->output = NULL;
        return expand(p, k, v, &j->output);
    }
    const struct {
        const char *key;
        int64_t lo, hi;
        int *dst;
    } ints[] = {{"n_ctx", 4, 1 << 20, &j->n_ctx},      {"n_seq", 1, 4096, &j->n_seq},
                {"top_k", 0, 64, &j->top_k},          {"workers", 1, 256, &j->workers},
                {"store_logits", 0, 1 << 20, &j->store_logits}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!strcmp(k, ints[i].key)) {
            if (mark(p, ints[i].key, 0) || parse_int(p, k, v, ints[i].lo, ints[i].hi, &x))
                return p->st;
            *ints[i].dst = (int)x;
            return QE_OK;
        }
    if (!strcmp(k, "chunks")) {
        if (mark(p, "chunks", 0) || parse_int(p, k, v, 0, INT64_C(1) << 31, &x))
            return p->st;
        j->max_chunks = x;
        return QE_OK;
    }
    if (!strcmp(k, "store_tokens"))
        return mark(p, "store_tokens", 0) ? p->st : parse_bool(p, k, v, &j->store_tokens);
    if (!strcmp(k, "synchronous")) {
        if (mark(p, "synchronous", 0))
            return p->st;
        if (strcmp(v, "full") && strcmp(v, "normal"))
            return perr(p, p->line, "synchronous = '%s': expected full or normal", v);
        j->sync_normal = !strcmp(v, "normal");
        return QE_OK;
    }
    if (!strcmp(k, "devices")) {
        if (mark(p, "devices", 0))
            return p->st;
        return parse_list(p, k, v, &j->devices, &j->n_devices);
    }
    return unknown_key(p, k, "name, output, n_ctx, n_seq, top_k, devices, workers, chunks, "
                             "store_tokens, store_logits, synchronous");
}

static qe_status key_model(struct parse *p, const char *k, const char *v)
{
    qe_job_model *m = &p->job->models[p->index];
    if (!strcmp(k, "path"))
        return mark(p, "path", 0) ? p->st : expand(p, k, v, &m->path);
    if (!strcmp(k, "tokenizer"))
        return mark(p, "tokenizer", 0) ? p->st : expand(p, k, v, &m->tokenizer);
    return unknown_key(p, k, "path, tokenizer");
}

static qe_status key_dataset(struct parse *p, const char *k, const char *v)
{
    qe_job_dataset *d = &p->job->datasets[p->index];
    if (!strcmp(k, "path"))
        return mark(p, "path", 0) ? p->st : expand(p, k, v, &d->path);
    if (!strcmp(k, "kind")) {
        if (mark(p, "kind", 0))
            return p->st;
        if (qe_dataset_kind_parse(v, &d->kind) != QE_OK)
            return perr(p, p->line, "kind = '%s': expected text, jsonl, csv or ids", v);
        return QE_OK;
    }
    if (!strcmp(k, "field")) {
        if (mark(p, "field", 0) || !*v)
            return p->st ? p->st : perr(p, p->line, "field: empty");
        return set_str(p, &d->field, v);
    }
    if (!strcmp(k, "skip_bad_rows"))
        return mark(p, "skip_bad_rows", 0) ? p->st : parse_bool(p, k, v, &d->skip_bad_rows);
    return unknown_key(p, k, "path, kind, field, skip_bad_rows");
}

static qe_status key_sweep(struct parse *p, const char *k, const char *v)
{
    qe_job *j = p->job;
    if (!strcmp(k, "reference")) {
        if (mark(p, "reference", 0))
            return p->st;
        char *one = (char *)v;
        if (check_formats(p, k, &one, 1, 0))
            return p->st;
        return set_str(p, &j->reference, v);
    }
    if (!strcmp(k, "weights")) {
        if (mark(p, "weights", 0) || parse_list(p, k, v, &j->weights, &j->n_weights))
            return p->st;
        return check_formats(p, k, j->weights, j->n_weights, 0);
    }
    if (!strcmp(k, "kv")) {
        char **items;
        size_t n;
        if (mark(p, "kv", 0))
            return p->st;
        qe_status r = parse_list(p, k, v, &items, &n);
        if (r == QE_OK) {
            j->kv_k = calloc(n, sizeof *j->kv_k);
            j->kv_v = calloc(n, sizeof *j->kv_v);
            if (!j->kv_k || !j->kv_v)
                r = p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        }
        for (size_t i = 0; r == QE_OK && i < n; i++) {
            char *slash = strchr(items[i], '/');
            j->kv_k[i] = slash ? strndup(items[i], (size_t)(slash - items[i])) : strdup(items[i]);
            j->kv_v[i] = strdup(slash ? slash + 1 : items[i]);
            j->n_kv = i + 1;
            if (!j->kv_k[i] || !j->kv_v[i])
                r = p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
            if (r == QE_OK)
                r = check_formats(p, k, &j->kv_k[i], 1, 1);
            if (r == QE_OK)
                r = check_formats(p, k, &j->kv_v[i], 1, 1);
        }
        free_list(items, n);
        return r;
    }
    return unknown_key(p, k, "reference, weights, kv");
}

/* [generate] keys; `prompts` is resolved after parsing (datasets may follow). */
static qe_status key_generate(struct parse *p, const char *k, const char *v, char **prompts)
{
    qe_job_generate *g = &p->job->generate;
    int64_t x;
    g->enabled = 1;
    if (!strcmp(k, "prompts"))
        return mark(p, "prompts", 0) ? p->st : set_str(p, prompts, v);
    if (!strcmp(k, "max_new_tokens")) {
        if (mark(p, "max_new_tokens", 0) || parse_int(p, k, v, 1, 1 << 20, &x))
            return p->st;
        g->max_new_tokens = (int)x;
        return QE_OK;
    }
    if (!strcmp(k, "slots")) {
        if (mark(p, "slots", 0) || parse_int(p, k, v, 1, 4096, &x))
            return p->st;
        g->n_slots = (int)x;
        return QE_OK;
    }
    if (!strcmp(k, "sampling")) {
        if (mark(p, "sampling", 0))
            return p->st;
        if (strcmp(v, "greedy") && strcmp(v, "sample"))
            return perr(p, p->line, "sampling = '%s': expected greedy or sample", v);
        g->sampling = !strcmp(v, "sample") ? QE_SAMPLE_RANDOM : QE_SAMPLE_GREEDY;
        return QE_OK;
    }
    if (!strcmp(k, "temperature"))
        return mark(p, "temperature", 0) ? p->st : parse_real(p, k, v, 0, 100, &g->temperature);
    if (!strcmp(k, "top_p"))
        return mark(p, "top_p", 0) ? p->st : parse_real(p, k, v, 0, 1, &g->top_p);
    if (!strcmp(k, "top_k")) {
        if (mark(p, "top_k", 0) || parse_int(p, k, v, 0, 1 << 20, &x))
            return p->st;
        g->top_k = (int)x;
        return QE_OK;
    }
    if (!strcmp(k, "seed")) {
        errno = 0;
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (mark(p, "seed", 0))
            return p->st;
        if (!*v || *end || errno || *v == '-')
            return perr(p, p->line, "seed = '%s': expected an integer 0 .. 18446744073709551615",
                        v);
        g->seed = s;
        return QE_OK;
    }
    if (!strcmp(k, "stop")) {
        char *s = NULL;
        size_t len = 0;
        if (mark(p, "stop", 1) || parse_cstring(p, v, &s, &len))
            return p->st;
        char **ns = realloc(g->stop, (g->n_stop + 1) * sizeof *ns);
        size_t *nl = ns ? realloc(g->stop_len, (g->n_stop + 1) * sizeof *nl) : NULL;
        if (ns)
            g->stop = ns;
        if (nl)
            g->stop_len = nl;
        if (!ns || !nl) {
            free(s);
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        }
        g->stop[g->n_stop] = s;
        g->stop_len[g->n_stop++] = len;
        return QE_OK;
    }
    return unknown_key(p, k, "prompts, max_new_tokens, slots, sampling, temperature, top_k, "
                             "top_p, seed, stop");
}

struct handler_ctx {
    struct parse *p;
    char *prompts;
};

static int handler(void *user, const char *section, const char *key, const char *value)
{
    struct handler_ctx *h = user;
    struct parse *p = h->p;
    if (p->st != QE_OK)
        return 0;
    p->header_has_keys = 1;
    if (p->kind == SEC_NONE || p->new_header || strcmp(section, p->section)) {
        p->new_header = 0;
        if (!*section)
            return perr(p, p->line, "'%s' before any [section]", key), 0;
        if (enter_section(p, section) != QE_OK)
            return 0;
    }
    switch (p->kind) {
    case SEC_JOB: key_job(p, key, value); break;
    case SEC_MODEL: key_model(p, key, value); break;
    case SEC_DATASET: key_dataset(p, key, value); break;
    case SEC_SWEEP: key_sweep(p, key, value); break;
    case SEC_GENERATE: key_generate(p, key, value, &h->prompts); break;
    default: QE_ASSERT(0);
    }
    return p->st == QE_OK;
}

/* libinih's reader: one line, counted; headers noted for messages. */
static char *reader(char *str, int num, void *stream)
{
    struct parse *p = stream;
    if (p->pos >= p->len || p->st != QE_OK)
        return NULL;
    const char *s = p->buf + p->pos;
    const char *nl = memchr(s, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - s) + 1 : p->len - p->pos;
    p->line++;
    if (memchr(s, '\0', n)) {
        perr(p, p->line, "NUL byte in the line");
        return NULL;
    }
    if (n + 1 > (size_t)num) {
        perr(p, p->line, "line longer than %d bytes", num - 2);
        return NULL;
    }
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t'))
        k++;
    if (k < n && s[k] == '[') {
        if (p->header_line && !p->header_has_keys) {
            perr(p, p->header_line, "empty section (no keys before line %d)", p->line);
            return NULL;
        }
        p->header_line = p->line;
        p->header_has_keys = 0;
        p->new_header = 1;
    }
    memcpy(str, s, n);
    str[n] = '\0';
    p->pos += n;
    return str;
}

/* ---- after parsing ---- */

static qe_status check_path(struct parse *p, int line, const char *what, const char *path,
                            int dir_ok)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return perr(p, line, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(sb.st_mode) && !(dir_ok && S_ISDIR(sb.st_mode)))
        return perr(p, line, "%s %s: not a %s", what, path, dir_ok ? "file or directory" : "file");
    return QE_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static qe_status finish(struct parse *p, const char *prompts)
{
    qe_job *j = p->job;
    if (j->n_models == 0)
        return perr(p, 0, "no [model NAME] section: a job needs a model");
    if (j->n_datasets == 0)
        return perr(p, 0, "no [dataset NAME] section: a job needs a dataset");
    for (size_t i = 0; i < j->n_models; i++) {
        qe_job_model *m = &j->models[i];
        if (!m->path)
            return perr(p, m->line, "[model %s] has no path", m->name);
        if (!(p->flags & QE_JOB_NO_FILE_CHECK)) {
            int l = seen_line(p, SEC_MODEL, (int)i, "path");
            if (check_path(p, l, "model", m->path, 1))
                return p->st;
            l = seen_line(p, SEC_MODEL, (int)i, "tokenizer");
            if (m->tokenizer && check_path(p, l, "tokenizer", m->tokenizer, 0))
                return p->st;
        }
    }
    for (size_t i = 0; i < j->n_datasets; i++) {
        qe_job_dataset *d = &j->datasets[i];
        if (!d->path)
            return perr(p, d->line, "[dataset %s] has no path", d->name);
        if (!seen_line(p, SEC_DATASET, (int)i, "kind"))
            d->kind = ends_with(d->path, ".jsonl") ? QE_DATASET_JSONL
                      : ends_with(d->path, ".csv") ? QE_DATASET_CSV
                      : ends_with(d->path, ".ids") ? QE_DATASET_IDS : QE_DATASET_TEXT;
        int has_field = d->kind == QE_DATASET_JSONL || d->kind == QE_DATASET_CSV;
        int fl = seen_line(p, SEC_DATASET, (int)i, "field");
        if (fl && !has_field)
            return perr(p, fl, "[dataset %s]: field applies to jsonl and csv, not %s", d->name,
                        qe_dataset_kind_name(d->kind));
        if (has_field && !d->field && set_str(p, &d->field, "text"))
            return p->st;
        if (!(p->flags & QE_JOB_NO_FILE_CHECK) &&
            check_path(p, seen_line(p, SEC_DATASET, (int)i, "path"), "dataset", d->path, 0))
            return p->st;
    }
    if (!j->reference && set_str(p, &j->reference, "native"))
        return p->st;
    for (size_t i = 0; i < j->n_weights; i++)
        if (!strcmp(j->weights[i], j->reference))
            return perr(p, seen_line(p, SEC_SWEEP, 0, "weights"), "weights: '%s' is the "
                        "reference already", j->reference);
    if (j->n_kv == 0) {
        j->kv_k = calloc(1, sizeof *j->kv_k);
        j->kv_v = calloc(1, sizeof *j->kv_v);
        if (!j->kv_k || !j->kv_v || !(j->kv_k[0] = strdup("f16")) || !(j->kv_v[0] = strdup("f16")))
            return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
        j->n_kv = 1;
    }
    qe_job_generate *g = &j->generate;
    if (g->enabled) {
        int gl = seen_line(p, SEC_GENERATE, 0, "prompts");
        if (!prompts)
            return perr(p, 0, "[generate] needs prompts = DATASET");
        g->prompts = -1;
        for (size_t i = 0; i < j->n_datasets; i++)
            if (!strcmp(j->datasets[i].name, prompts))
                g->prompts = (int)i;
        if (g->prompts < 0)
            return perr(p, gl, "prompts = '%s': no [dataset %s] section", prompts, prompts);
        if (j->datasets[g->prompts].kind == QE_DATASET_IDS)
            return perr(p, gl, "prompts = '%s': an ids dataset holds no prompt text (expected "
                        "jsonl, csv or text)", prompts);
        static const char *const sample_only[] = {"temperature", "top_k", "top_p", "seed"};
        for (int i = 0; i < 4 && g->sampling == QE_SAMPLE_GREEDY; i++) {
            int l = seen_line(p, SEC_GENERATE, 0, sample_only[i]);
            if (l)
                return perr(p, l, "%s applies to sampling = sample, and sampling is greedy",
                            sample_only[i]);
        }
    }
    /* the sweep; the prompts of [generate] are not a perplexity dataset */
    size_t per_pair = (1 + j->n_weights) * j->n_kv;
    size_t n_ppl = j->n_datasets - (g->enabled ? 1 : 0);
    size_t total = j->n_models * n_ppl * per_pair;
    j->runs = calloc(total ? total : 1, sizeof *j->runs);
    j->gen_runs = g->enabled ? calloc(j->n_models * per_pair, sizeof *j->gen_runs) : NULL;
    if (!j->runs || (g->enabled && !j->gen_runs))
        return p->st = qe_fail(QE_ENOMEM, "%s: out of memory", p->file);
    for (size_t m = 0; m < j->n_models && g->enabled; m++) {
        int ref = (int)j->n_gen_runs;
        for (size_t w = 0; w <= j->n_weights; w++)
            for (size_t k = 0; k < j->n_kv; k++)
                j->gen_runs[j->n_gen_runs++] = (qe_job_run){
                    (int)m, g->prompts, w ? j->weights[w - 1] : j->reference, j->kv_k[k],
                    j->kv_v[k], (w == 0 && k == 0) ? -1 : ref};
    }
    for (size_t m = 0; m < j->n_models; m++)
        for (size_t d = 0; d < j->n_datasets; d++) {
            if (g->enabled && (int)d == g->prompts)
                continue;
            int ref = (int)j->n_runs;
            for (size_t w = 0; w <= j->n_weights; w++)
                for (size_t k = 0; k < j->n_kv; k++)
                    j->runs[j->n_runs++] = (qe_job_run){
                        (int)m, (int)d, w ? j->weights[w - 1] : j->reference, j->kv_k[k],
                        j->kv_v[k], (w == 0 && k == 0) ? -1 : ref};
        }
    QE_ASSERT(j->n_runs == total);
    return QE_OK;
}

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 4 && !strcmp(b + n - 4, ".ini"))
        n -= 4;
    return strndup(b, n);
}

qe_status qe_job_parse_string(const char *text, size_t len, const char *name, unsigned flags,
                              qe_job **out)
{
    *out = NULL;
    pthread_once(&ini_once, ini_setup);
    qe_job *j = calloc(1, sizeof *j);
    if (!j)
        return qe_fail(QE_ENOMEM, "%s: out of memory", name);
    struct parse p = {.job = j, .file = name, .flags = flags, .buf = text, .len = len};
    struct handler_ctx h = {&p, NULL};
    j->n_ctx = 512;
    j->n_seq = 1;
    j->top_k = 10;
    j->workers = 2;
    j->store_tokens = 1;
    j->generate.max_new_tokens = 128;
    j->generate.n_slots = 8;
    j->generate.temperature = 1.0;
    j->generate.top_p = 1.0;
    j->path = strdup(name);
    qe_hash_sha256_buf(text, len, j->sha256);
    if (!j->path) {
        p.st = qe_fail(QE_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    if (len > MAX_JOB_BYTES) {
        perr(&p, 0, "%zu bytes: a job file may have at most %u", len, MAX_JOB_BYTES);
        goto done;
    }
    int rc = ini_parse_stream(reader, &p, handler, &h);
    if (p.st == QE_OK && rc > 0)
        perr(&p, rc, "expected [section] or key = value");
    else if (p.st == QE_OK && rc < 0)
        p.st = qe_fail(QE_ENOMEM, "%s: libinih failed (%d)", name, rc);
    if (p.st == QE_OK && p.header_line && !p.header_has_keys)
        perr(&p, p.header_line, "empty section (no keys before the end of the file)");
    if (p.st != QE_OK)
        goto done;
    if (!j->name && !(j->name = base_name(name))) {
        p.st = qe_fail(QE_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    if (!j->output && set_str(&p, &j->output, "results/qeval.db"))
        goto done;
    finish(&p, h.prompts);
done:
    free(h.prompts);
    free(p.seen);
    if (p.st != QE_OK) {
        qe_job_free(j);
        return p.st;
    }
    *out = j;
    return QE_OK;
}

qe_status qe_job_parse_file(const char *path, unsigned flags, qe_job **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(MAX_JOB_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_JOB_BYTES + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return qe_fail(QE_ENOMEM, "%s: out of memory", path);
    qe_status r;
    if (err)
        r = qe_fail(QE_EIO, "%s: read failed", path);
    else
        r = qe_job_parse_string(buf, n, path, flags, out);
    free(buf);
    return r;
}

void qe_job_free(qe_job *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n_models; i++) {
        free(j->models[i].name);
        free(j->models[i].path);
        free(j->models[i].tokenizer);
    }
    free(j->models);
    for (size_t i = 0; i < j->n_datasets; i++) {
        free(j->datasets[i].name);
        free(j->datasets[i].path);
        free(j->datasets[i].field);
    }
    free(j->datasets);
    free_list(j->devices, j->n_devices);
    free_list(j->weights, j->n_weights);
    free_list(j->kv_k, j->n_kv);
    free_list(j->kv_v, j->n_kv);
    free_list(j->generate.stop, j->generate.n_stop);
    free(j->generate.stop_len);
    free(j->reference);
    free(j->runs);
    free(j->gen_runs);
    free(j->name);
    free(j->output);
    free(j->path);
    free(j);
}
