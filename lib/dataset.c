/* dataset.c - reads text, JSONL (jansson), CSV (libcsv) and pre-tokenized
 * id files into documents and hashes them (formats: dataset.h).
 *
 * The whole file is read into memory once; documents are copied into one
 * arena (text) or one id array (ids) with per-document offsets. Every byte
 * is untrusted: sizes are checked before they are used, and every error
 * names the file, the row (and line) and what was expected.
 *
 * Threading: open is single-threaded; the result is read-only.
 * qe_dataset_tokenize runs the caller's encoder on pool.h's ordered pipe.
 */
#include "dataset.h"

#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hash.h"
#include "pool.h"

#define MAX_FILE_BYTES ((uint64_t)1 << 36) /* 64 GiB: beyond that, stream instead */
#define REASON_CAP 512

struct doc {
    size_t off, len; /* into text (bytes) or ids (elements) */
    int64_t row;
};

struct qe_dataset {
    char *path;
    char *field;
    qe_dataset_kind kind;
    int skip_bad;
    char *text;           /* arena of NUL-terminated documents (text kinds) */
    size_t text_len, text_cap;
    int32_t *ids;         /* ids kind */
    size_t n_ids, ids_cap;
    struct doc *docs;
    size_t n_docs, docs_cap;
    qe_dataset_skip *skips;
    size_t n_skips, skips_cap;
    uint8_t sha[32], file_sha[32];
    uint64_t file_bytes;
};

static const char *const kind_names[] = {"text", "jsonl", "csv", "ids"};

qe_status qe_dataset_kind_parse(const char *name, qe_dataset_kind *out)
{
    for (int k = 0; k < 4; k++)
        if (name && !strcmp(name, kind_names[k])) {
            *out = (qe_dataset_kind)k;
            return QE_OK;
        }
    return qe_fail(QE_EINVAL, "dataset kind '%s': expected text, jsonl, csv or ids",
                   name ? name : "(null)");
}

const char *qe_dataset_kind_name(qe_dataset_kind k)
{
    return (unsigned)k < 4 ? kind_names[k] : "?";
}

/* ---- growth helpers ---- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return 0;
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = n;
    return 1;
}

static qe_status add_text_doc(qe_dataset *ds, const char *s, size_t len, int64_t row)
{
    if (len > SIZE_MAX - ds->text_len - 1 || !grow((void **)&ds->text, &ds->text_cap,
                                                   ds->text_len + len + 1, 1) ||
        !grow((void **)&ds->docs, &ds->docs_cap, ds->n_docs + 1, sizeof *ds->docs))
        return qe_fail(QE_ENOMEM, "%s: out of memory at row %" PRId64, ds->path, row);
    if (len)
        memcpy(ds->text + ds->text_len, s, len);
    ds->text[ds->text_len + len] = '\0';
    ds->docs[ds->n_docs++] = (struct doc){ds->text_len, len, row};
    ds->text_len += len + 1;
    return QE_OK;
}

/* A bad row: an error, or (skip_bad_rows) a recorded omission. `where` is
 * "PATH:LINE" or "PATH: row N (line L)"; the reason kept drops the path. */
static qe_status bad_row(qe_dataset *ds, int64_t row, const char *where_fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qe_status bad_row(qe_dataset *ds, int64_t row, const char *fmt, ...)
{
    char msg[REASON_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!ds->skip_bad)
        return qe_fail(QE_ECORRUPT, "%s%s", ds->path, msg);
    if (!grow((void **)&ds->skips, &ds->skips_cap, ds->n_skips + 1, sizeof *ds->skips))
        return qe_fail(QE_ENOMEM, "%s: out of memory", ds->path);
    /* msg starts with ":LINE: " or ": row N": keep what follows the colon */
    const char *r = msg[0] == ':' ? msg + 1 : msg;
    while (*r == ' ')
        r++;
    char *copy = strdup(r);
    if (!copy)
        return qe_fail(QE_ENOMEM, "%s: out of memory", ds->path);
    ds->skips[ds->n_skips++] = (qe_dataset_skip){row, copy};
    return QE_OK;
}

/* ---- file reading ---- */

static qe_status read_file(const char *path, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    qe_status st = QE_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = qe_fail(QE_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = qe_fail(QE_EIO, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES) {
        st = qe_fail(QE_ERANGE, "%s: %" PRIu64 " bytes: larger than the %" PRIu64
                     " bytes a dataset may have", path, (uint64_t)sb.st_size, MAX_FILE_BYTES);
        goto done;
    }
    size_t n = (size_t)sb.st_size;
    *buf = malloc(n + 1);
    if (!*buf) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory for %zu bytes", path, n);
        goto done;
    }
    if (n && fread(*buf, 1, n, f) != n) {
        st = qe_fail(QE_EIO, "%s: read failed: %s", path, ferror(f) ? strerror(errno) : "file shrank");
        goto done;
    }
    (*buf)[n] = '\0';
    *len = n;
done:
    if (st != QE_OK) {
        free(*buf);
        *buf = NULL;
    }
    fclose(f);
    return st;
}

static size_t skip_bom(const char *b, size_t n)
{
    return n >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3) ? 3 : 0;
}

/* ---- JSONL ---- */

/* The field's value: key `field` exactly, else a dotted path. */
static json_t *json_field(json_t *obj, const char *field)
{
    json_t *v = json_object_get(obj, field);
    if (v || !strchr(field, '.'))
        return v;
    char part[256];
    const char *s = field;
    while (obj && json_is_object(obj)) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, s, n);
        part[n] = '\0';
        obj = json_object_get(obj, part);
        if (!dot)
            return obj;
        s = dot + 1;
    }
    return NULL;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static qe_status parse_jsonl(qe_dataset *ds, const char *buf, size_t n)
{
    size_t i = skip_bom(buf, n);
    int64_t line = 0;
    qe_status st = QE_OK;
    while (i < n && st == QE_OK) {
        const char *s = buf + i;
        const char *nl = memchr(s, '\n', n - i);
        size_t len = nl ? (size_t)(nl - s) : n - i;
        i += len + (nl ? 1 : 0);
        line++;
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
            k++;
        if (k == len)
            continue; /* blank line */
        json_error_t err;
        json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);
        if (!v) {
            st = bad_row(ds, line, ":%" PRId64 ": invalid JSON at column %d: %s", line,
                         err.column, err.text);
            continue;
        }
        if (!json_is_object(v)) {
            st = bad_row(ds, line, ":%" PRId64 ": expected a JSON object, got %s", line,
                         json_kind(v));
        } else {
            json_t *f = json_field(v, ds->field);
            if (!f)
                st = bad_row(ds, line, ":%" PRId64 ": no field '%s'", line, ds->field);
            else if (!json_is_string(f))
                st = bad_row(ds, line, ":%" PRId64 ": field '%s' is %s, expected a string",
                             line, ds->field, json_kind(f));
            else
                st = add_text_doc(ds, json_string_value(f), json_string_length(f), line);
        }
        json_decref(v);
    }
    return st;
}

/* ---- CSV ---- */

struct csv_state {
    qe_dataset *ds;
    qe_status st;
    int64_t line;          /* line of the byte being fed (1-based) */
    int64_t record;        /* records completed */
    int64_t rec_line;      /* line the current record starts on */
    int between;           /* no byte of a record seen since the last ended */
    char **header;         /* column names of record 1 */
    size_t n_header, header_cap;
    long column;           /* index of ds->field in the header, -1 unknown */
    size_t n_fields;       /* fields of the current record */
    char *value;           /* the chosen column's value in this record */
    size_t value_len;
    int value_set;
};

static void csv_field(void *s, size_t len, void *u)
{
    struct csv_state *c = u;
    if (c->st != QE_OK)
        return;
    if (c->record == 0) {
        if (!grow((void **)&c->header, &c->header_cap, c->n_header + 1, sizeof *c->header) ||
            !(c->header[c->n_header] = malloc(len + 1))) {
            c->st = qe_fail(QE_ENOMEM, "%s: out of memory", c->ds->path);
            return;
        }
        if (len)
            memcpy(c->header[c->n_header], s, len);
        c->header[c->n_header][len] = '\0';
        c->n_header++;
    } else if ((long)c->n_fields == c->column) {
        free(c->value);
        c->value = malloc(len + 1);
        if (!c->value) {
            c->st = qe_fail(QE_ENOMEM, "%s: out of memory", c->ds->path);
            return;
        }
        if (len)
            memcpy(c->value, s, len);
        c->value[len] = '\0';
        c->value_len = len;
        c->value_set = 1;
    }
    c->n_fields++;
}

static void csv_record(int term, void *u)
{
    (void)term;
    struct csv_state *c = u;
    c->between = 1;
    if (c->st != QE_OK)
        return;
    int64_t row = ++c->record;
    if (row == 1) {
        /* header: find the column, once */
        for (size_t j = 0; j < c->n_header; j++) {
            if (strcmp(c->header[j], c->ds->field))
                continue;
            if (c->column >= 0) {
                c->st = qe_fail(QE_ECORRUPT, "%s: row 1 (line %" PRId64 "): column '%s' appears "
                                "twice in the header", c->ds->path, c->rec_line, c->ds->field);
                return;
            }
            c->column = (long)j;
        }
        if (c->column < 0) {
            /* the header's names are the file's bytes: escaped, so that a
               newline or control byte in one cannot break the message */
            char names[256] = "", one[208];
            size_t o = 0;
            for (size_t j = 0; j < c->n_header && o < sizeof names - 8; j++)
                o += (size_t)snprintf(
                    names + o, sizeof names - o, "%s'%s'", j ? ", " : "",
                    qe_printable(c->header[j], strlen(c->header[j]), one, sizeof one));
            c->st = qe_fail(QE_ECORRUPT, "%s: row 1 (line %" PRId64 "): no column '%s' in the "
                            "header (columns: %s)", c->ds->path, c->rec_line, c->ds->field, names);
        }
    } else if (c->n_fields != c->n_header) {
        c->st = bad_row(c->ds, row, ": row %" PRId64 " (line %" PRId64 "): %zu fields, expected "
                        "%zu as in the header", row, c->rec_line, c->n_fields, c->n_header);
    } else {
        QE_ASSERT(c->value_set);
        c->st = add_text_doc(c->ds, c->value, c->value_len, row);
    }
    c->n_fields = 0;
    c->value_set = 0;
}

static qe_status parse_csv(qe_dataset *ds, const char *buf, size_t n)
{
    struct csv_parser p;
    struct csv_state c = {.ds = ds, .line = 1, .rec_line = 1, .between = 1, .column = -1};
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return qe_fail(QE_ENOMEM, "%s: cannot start the CSV parser", ds->path);
    qe_status st = QE_OK;
    /* One byte at a time, so a record's first line and the line of a syntax
     * error are known exactly (a few ns per byte). */
    for (size_t i = skip_bom(buf, n); i < n && c.st == QE_OK; i++) {
        unsigned char b = (unsigned char)buf[i];
        if (c.between && b != '\n' && b != '\r') {
            c.between = 0;
            c.rec_line = c.line;
        }
        if (csv_parse(&p, buf + i, 1, csv_field, csv_record, &c) != 1) {
            st = qe_fail(QE_ECORRUPT, "%s: row %" PRId64 " (line %" PRId64 "): malformed CSV at "
                         "line %" PRId64 ": a quote inside an unquoted field, or text after a "
                         "closing quote (write \"\" for a quote inside a quoted field)",
                         ds->path, c.record + 1, c.rec_line, c.line);
            goto done;
        }
        if (b == '\n')
            c.line++;
    }
    if (c.st == QE_OK && csv_fini(&p, csv_field, csv_record, &c) != 0) {
        st = qe_fail(QE_ECORRUPT, "%s: row %" PRId64 " (line %" PRId64 "): quoted field not "
                     "closed before the end of the file", ds->path, c.record + 1, c.rec_line);
        goto done;
    }
    st = c.st;
    if (st == QE_OK && c.record == 0)
        st = qe_fail(QE_ECORRUPT, "%s: empty CSV file: expected a header row", ds->path);
done:
    csv_free(&p);
    for (size_t j = 0; j < c.n_header; j++)
        free(c.header[j]);
    free(c.header);
    free(c.value);
    return st;
}

/* ---- pre-tokenized ids ---- */

static qe_status parse_ids(qe_dataset *ds, const char *buf, size_t n)
{
    size_t i = skip_bom(buf, n);
    int64_t line = 0;
    qe_status st = QE_OK;
    while (i < n && st == QE_OK) {
        const char *s = buf + i;
        const char *nl = memchr(s, '\n', n - i);
        size_t len = nl ? (size_t)(nl - s) : n - i;
        i += len + (nl ? 1 : 0);
        line++;
        if (len && s[len - 1] == '\r')
            len--;
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\t'))
            k++;
        if (k == len || s[k] == '#')
            continue;
        size_t start = ds->n_ids;
        int bad = 0;
        while (k < len && !bad) {
            if (s[k] == ' ' || s[k] == '\t') {
                k++;
                continue;
            }
            size_t col = k + 1;
            uint64_t v = 0;
            size_t d = k;
            while (d < len && s[d] >= '0' && s[d] <= '9' && v <= INT32_MAX)
                v = v * 10 + (uint64_t)(s[d++] - '0');
            int end_ok = d == len || s[d] == ' ' || s[d] == '\t';
            if (d == k || !end_ok || v > INT32_MAX) {
                size_t e = k;
                while (e < len && s[e] != ' ' && s[e] != '\t' && e - k < 24)
                    e++;
                char got[112];
                st = bad_row(ds, line, ":%" PRId64 ": column %zu: expected a token id (decimal "
                             "integer 0 .. 2147483647), got '%s'", line, col,
                             qe_printable(s + k, e - k, got, sizeof got));
                bad = 1;
                break;
            }
            if (!grow((void **)&ds->ids, &ds->ids_cap, ds->n_ids + 1, sizeof *ds->ids))
                return qe_fail(QE_ENOMEM, "%s: out of memory at line %" PRId64, ds->path, line);
            ds->ids[ds->n_ids++] = (int32_t)v;
            k = d;
        }
        if (bad) {
            ds->n_ids = start; /* drop the partial document */
            continue;
        }
        if (!grow((void **)&ds->docs, &ds->docs_cap, ds->n_docs + 1, sizeof *ds->docs))
            return qe_fail(QE_ENOMEM, "%s: out of memory at line %" PRId64, ds->path, line);
        ds->docs[ds->n_docs++] = (struct doc){start, ds->n_ids - start, line};
    }
    return st;
}

/* ---- hashing ---- */

static void put_u64le(uint8_t b[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static void hash_docs(qe_dataset *ds)
{
    qe_hash_sha256 h;
    qe_hash_sha256_init(&h);
    uint8_t len8[8];
    if (ds->kind == QE_DATASET_IDS) {
        qe_hash_sha256_update(&h, "qeval-ids-1", 12); /* with its NUL */
        for (size_t d = 0; d < ds->n_docs; d++) {
            put_u64le(len8, ds->docs[d].len);
            qe_hash_sha256_update(&h, len8, 8);
            for (size_t j = 0; j < ds->docs[d].len; j++) {
                uint8_t b[4];
                uint32_t v = (uint32_t)ds->ids[ds->docs[d].off + j];
                for (int k = 0; k < 4; k++)
                    b[k] = (uint8_t)(v >> (8 * k));
                qe_hash_sha256_update(&h, b, 4);
            }
        }
    } else {
        qe_hash_sha256_update(&h, "qeval-docs-1", 13);
        for (size_t d = 0; d < ds->n_docs; d++) {
            put_u64le(len8, ds->docs[d].len);
            qe_hash_sha256_update(&h, len8, 8);
            qe_hash_sha256_update(&h, ds->text + ds->docs[d].off, ds->docs[d].len);
        }
    }
    qe_hash_sha256_final(&h, ds->sha);
}

/* ---- open/close ---- */

qe_status qe_dataset_open(const char *path, const qe_dataset_opts *o, qe_dataset **out)
{
    *out = NULL;
    if ((unsigned)o->kind > QE_DATASET_IDS)
        return qe_fail(QE_EINVAL, "%s: unknown dataset kind %d", path, (int)o->kind);
    const char *field = o->field && *o->field ? o->field : "text";
    char *buf = NULL;
    size_t n = 0;
    qe_dataset *ds = calloc(1, sizeof *ds);
    qe_status st = QE_OK;
    if (!ds)
        return qe_fail(QE_ENOMEM, "%s: out of memory", path);
    ds->kind = o->kind;
    ds->skip_bad = o->skip_bad_rows != 0;
    ds->path = strdup(path);
    if (o->kind == QE_DATASET_JSONL || o->kind == QE_DATASET_CSV)
        ds->field = strdup(field);
    if (!ds->path || ((o->kind == QE_DATASET_JSONL || o->kind == QE_DATASET_CSV) && !ds->field)) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    st = read_file(path, &buf, &n);
    if (st != QE_OK)
        goto done;
    ds->file_bytes = n;
    qe_hash_sha256_buf(buf, n, ds->file_sha);
    switch (o->kind) {
    case QE_DATASET_TEXT:
        /* the file buffer becomes the arena: one document, no copy */
        ds->text = buf;
        ds->text_len = ds->text_cap = n + 1;
        buf = NULL;
        if (!grow((void **)&ds->docs, &ds->docs_cap, 1, sizeof *ds->docs)) {
            st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        ds->docs[ds->n_docs++] = (struct doc){0, n, 0};
        if (n == 0)
            st = qe_fail(QE_ECORRUPT, "%s: empty file: no text to evaluate", path);
        break;
    case QE_DATASET_JSONL: st = parse_jsonl(ds, buf, n); break;
    case QE_DATASET_CSV: st = parse_csv(ds, buf, n); break;
    case QE_DATASET_IDS: st = parse_ids(ds, buf, n); break;
    }
    if (st == QE_OK && ds->n_docs == 0)
        st = qe_fail(QE_ECORRUPT, "%s: no documents%s", path,
                     ds->n_skips ? " left after skipping bad rows" : "");
    if (st != QE_OK)
        goto done;
    hash_docs(ds);
done:
    free(buf);
    if (st != QE_OK) {
        qe_dataset_close(ds);
        return st;
    }
    *out = ds;
    return QE_OK;
}

void qe_dataset_close(qe_dataset *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n_skips; i++)
        free((char *)ds->skips[i].reason);
    free(ds->skips);
    free(ds->docs);
    free(ds->text);
    free(ds->ids);
    free(ds->field);
    free(ds->path);
    free(ds);
}

/* ---- accessors ---- */

qe_dataset_kind qe_dataset_kind_of(const qe_dataset *ds) { return ds->kind; }
const char *qe_dataset_path(const qe_dataset *ds) { return ds->path; }
const char *qe_dataset_field(const qe_dataset *ds) { return ds->field; }
size_t qe_dataset_n_docs(const qe_dataset *ds) { return ds->n_docs; }
const uint8_t *qe_dataset_sha256(const qe_dataset *ds) { return ds->sha; }
const uint8_t *qe_dataset_file_sha256(const qe_dataset *ds) { return ds->file_sha; }
uint64_t qe_dataset_file_bytes(const qe_dataset *ds) { return ds->file_bytes; }
size_t qe_dataset_n_skipped(const qe_dataset *ds) { return ds->n_skips; }

const char *qe_dataset_doc(const qe_dataset *ds, size_t i, size_t *len)
{
    QE_ASSERT(i < ds->n_docs);
    if (ds->kind == QE_DATASET_IDS) {
        *len = 0;
        return NULL;
    }
    *len = ds->docs[i].len;
    return ds->text + ds->docs[i].off;
}

const int32_t *qe_dataset_doc_ids(const qe_dataset *ds, size_t i, size_t *n)
{
    QE_ASSERT(i < ds->n_docs);
    if (ds->kind != QE_DATASET_IDS) {
        *n = 0;
        return NULL;
    }
    *n = ds->docs[i].len;
    return ds->ids + ds->docs[i].off;
}

int64_t qe_dataset_doc_row(const qe_dataset *ds, size_t i)
{
    QE_ASSERT(i < ds->n_docs);
    return ds->docs[i].row;
}

uint64_t qe_dataset_doc_bytes(const qe_dataset *ds)
{
    if (ds->kind == QE_DATASET_IDS)
        return ds->n_ids;
    uint64_t b = 0;
    for (size_t i = 0; i < ds->n_docs; i++)
        b += ds->docs[i].len;
    return b;
}

const qe_dataset_skip *qe_dataset_skipped(const qe_dataset *ds, size_t i)
{
    QE_ASSERT(i < ds->n_skips);
    return &ds->skips[i];
}

qe_status qe_dataset_check_ids(const qe_dataset *ds, int32_t n_vocab)
{
    if (ds->kind != QE_DATASET_IDS)
        return QE_OK;
    for (size_t d = 0; d < ds->n_docs; d++)
        for (size_t j = 0; j < ds->docs[d].len; j++) {
            int32_t v = ds->ids[ds->docs[d].off + j];
            if (v >= n_vocab)
                return qe_fail(QE_ECORRUPT, "%s:%" PRId64 ": token id %" PRId32 " (the %zu%s on "
                               "the line) is not below the vocabulary size %" PRId32, ds->path,
                               ds->docs[d].row, v, j + 1,
                               j == 0 ? "st" : j == 1 ? "nd" : j == 2 ? "rd" : "th", n_vocab);
        }
    return QE_OK;
}

/* ---- tokenization through the ordered pipeline ---- */

struct tok_item {
    size_t doc;
    int32_t *ids;
    size_t n;
};

struct tok_ctx {
    const qe_dataset *ds;
    qe_dataset_encode_fn encode;
    void *ctx;
    int32_t *out;
    size_t n_out, cap;
};

static qe_status tok_make(void *c, uint64_t seq, void **item)
{
    (void)c;
    struct tok_item *it = calloc(1, sizeof *it);
    if (!it)
        return qe_fail(QE_ENOMEM, "tokenize: out of memory");
    it->doc = (size_t)seq;
    *item = it;
    return QE_OK;
}

static qe_status tok_work(void *c, uint64_t seq, void *item)
{
    (void)seq;
    struct tok_ctx *t = c;
    struct tok_item *it = item;
    size_t len;
    const char *s = qe_dataset_doc(t->ds, it->doc, &len);
    qe_status st = t->encode(t->ctx, s, len, &it->ids, &it->n);
    if (st != QE_OK)
        return qe_fail_prefix(st, "%s: document %zu (row %" PRId64 ")", t->ds->path, it->doc,
                              t->ds->docs[it->doc].row);
    return QE_OK;
}

static void tok_free(void *c, void *item)
{
    (void)c;
    struct tok_item *it = item;
    free(it->ids);
    free(it);
}

static qe_status tok_consume(void *c, uint64_t seq, void *item)
{
    (void)seq;
    struct tok_ctx *t = c;
    struct tok_item *it = item;
    qe_status st = QE_OK;
    if (it->n > SIZE_MAX - t->n_out ||
        !grow((void **)&t->out, &t->cap, t->n_out + it->n, sizeof *t->out))
        st = qe_fail(QE_ENOMEM, "%s: out of memory for %zu tokens", t->ds->path, t->n_out + it->n);
    else if (it->n)
        memcpy(t->out + t->n_out, it->ids, it->n * sizeof *t->out);
    if (st == QE_OK)
        t->n_out += it->n;
    tok_free(c, item);
    return st;
}

qe_status qe_dataset_tokenize(const qe_dataset *ds, qe_dataset_encode_fn encode, void *ctx,
                              int n_workers, int32_t **tokens, size_t *n_tokens)
{
    *tokens = NULL;
    *n_tokens = 0;
    if (ds->kind == QE_DATASET_IDS) {
        int32_t *out = malloc((ds->n_ids ? ds->n_ids : 1) * sizeof *out);
        if (!out)
            return qe_fail(QE_ENOMEM, "%s: out of memory for %zu ids", ds->path, ds->n_ids);
        if (ds->n_ids)
            memcpy(out, ds->ids, ds->n_ids * sizeof *out);
        *tokens = out;
        *n_tokens = ds->n_ids;
        return QE_OK;
    }
    if (!encode)
        return qe_fail(QE_EINVAL, "%s: a text dataset needs a tokenizer", ds->path);
    struct tok_ctx t = {ds, encode, ctx, NULL, 0, 0};
    qe_pipe_opts o = {"tokenize", n_workers, (size_t)(2 * n_workers), tok_work, tok_free, &t};
    qe_status st = qe_pipe_run(&o, ds->n_docs, tok_make, tok_consume, &t);
    if (st != QE_OK) {
        free(t.out);
        return st;
    }
    *tokens = t.out;
    *n_tokens = t.n_out;
    return QE_OK;
}
