/* inspect.c - `qeval inspect FILE.gguf`: what a GGUF file holds.
 *
 * Prints the header facts, the metadata (long arrays summarized) and the
 * tensor table as text, or all of it as one JSON object (jansson). The file
 * is fully validated by qe_gguf_open first, so a corrupt file gives exactly
 * one line on stderr and exit 3; an unreadable or missing file exit 1.
 * Bytes from the file are escaped before they reach a terminal.
 *
 * Threading: single-threaded command.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dtype.h"
#include "gguf.h"

#define JSON_ARRAY_ALL 16  /* arrays up to this long are listed whole in --json */
#define JSON_ARRAY_HEAD 8  /* longer ones: this many values, "truncated": true */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval inspect FILE.gguf [--json] [--no-tensors]\n"
            "\n"
            "Validates a GGUF model or vocabulary file and prints what it holds: version,\n"
            "alignment, data offset, every metadata key (arrays as type, length and first\n"
            "values) and the tensor table (name, type, dims, bytes, offset from the start\n"
            "of the data section).\n"
            "\n"
            "  --json        print one JSON object instead: {file, version, alignment,\n"
            "                data_offset, file_size, n_kv, metadata: {KEY: {type, value} or\n"
            "                {type: \"array\", elem_type, length, values, truncated}},\n"
            "                n_tensors, tensors: [{name, type, dims, bytes, offset}]}.\n"
            "                Arrays longer than %d list their first %d values. u64 values\n"
            "                above 2^63-1 and non-finite floats are given as strings.\n"
            "  --no-tensors  leave out the tensor table\n"
            "  --help        this text\n"
            "\n"
            "exit: 0 ok; 1 the file cannot be read (missing, not a regular file);\n"
            "2 usage; 3 the file is not valid GGUF (one line on stderr:\n"
            "'qeval inspect: FILE: offset N: what was expected').\n",
            JSON_ARRAY_ALL, JSON_ARRAY_HEAD);
}

/* Print untrusted bytes: printable ASCII and UTF-8 lead/continuation bytes
 * as is, control bytes as \xNN, so a key cannot move the cursor. */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void dims_text(const qe_gguf_tensor *t, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (uint32_t j = 0; j < t->n_dims && o < cap; j++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, j ? " x " : "", t->ne[j]);
}

static void print_text(const qe_gguf *g, int tensors)
{
    char buf[512];
    printf("file:        %s\n", qe_gguf_path(g));
    printf("version:     %" PRIu32 "\n", qe_gguf_version(g));
    printf("alignment:   %" PRIu32 "\n", qe_gguf_alignment(g));
    printf("data offset: %" PRIu64 "\n", qe_gguf_data_offset(g));
    printf("file size:   %" PRIu64 "\n", qe_gguf_file_size(g));
    printf("metadata:    %" PRIu64 " keys\n", qe_gguf_n_kv(g));
    for (uint64_t i = 0; i < qe_gguf_n_kv(g); i++) {
        qe_gguf_kv_format(g, i, buf, sizeof buf);
        printf("  ");
        put_escaped(stdout, qe_gguf_kv_key(g, i));
        size_t klen = strlen(qe_gguf_kv_key(g, i));
        printf("%*s %-6s %s\n", klen < 40 ? (int)(40 - klen) : 0, "",
               qe_gguf_type_name(qe_gguf_kv_type(g, i)), buf);
    }
    uint64_t n = qe_gguf_n_tensors(g), total = 0;
    for (uint64_t i = 0; i < n; i++)
        total += qe_gguf_tensor_at(g, i)->nbytes;
    printf("tensors:     %" PRIu64 " (%" PRIu64 " bytes of data)\n", n, total);
    if (!tensors || n == 0)
        return;
    printf("  %5s  %-40s %-6s %-24s %12s %12s\n", "#", "name", "type", "dims", "bytes", "offset");
    for (uint64_t i = 0; i < n; i++) {
        const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
        dims_text(t, buf, sizeof buf);
        printf("  %5" PRIu64 "  ", i);
        put_escaped(stdout, t->name);
        size_t nlen = strlen(t->name);
        printf("%*s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", nlen < 40 ? (int)(40 - nlen) : 0,
               "", qe_dtype_name(t->type), buf, t->nbytes, t->offset);
    }
}

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid
 * (overlong forms, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string of n bytes; bytes that are not UTF-8 become U+FFFD, since
 * JSON text must be UTF-8 and GGUF strings are not checked. */
static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *clean = malloc(n * 3 + 1);
    size_t o = 0;
    if (!clean)
        return NULL;
    for (size_t k = 0; k < n;) {
        size_t len = utf8_seq((const unsigned char *)s + k, n - k);
        if (len) {
            memcpy(clean + o, s + k, len);
            o += len;
            k += len;
        } else {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            k++;
        }
    }
    j = json_stringn(clean, o);
    free(clean);
    return j;
}

static json_t *jvalue(const qe_gguf_value *v)
{
    switch (v->type) {
    case QE_GGUF_UINT8: case QE_GGUF_UINT16: case QE_GGUF_UINT32: case QE_GGUF_UINT64:
        if (v->u > (uint64_t)INT64_MAX) {
            char b[32];
            snprintf(b, sizeof b, "%" PRIu64, v->u);
            return json_string(b);
        }
        return json_integer((json_int_t)v->u);
    case QE_GGUF_INT8: case QE_GGUF_INT16: case QE_GGUF_INT32: case QE_GGUF_INT64:
        return json_integer((json_int_t)v->i);
    case QE_GGUF_FLOAT32: case QE_GGUF_FLOAT64:
        if (!isfinite(v->f))
            return json_string(isnan(v->f) ? "nan" : v->f > 0 ? "inf" : "-inf");
        return json_real(v->f);
    case QE_GGUF_BOOL: return json_boolean(v->u);
    case QE_GGUF_STRING: return jstr(v->s, v->len);
    default: return json_null();
    }
}

/* Set obj[key] = v, stealing v; returns 1 on failure (NULL v included). */
static int jset(json_t *obj, const char *key, json_t *v)
{
    return v == NULL || json_object_set_new(obj, key, v) != 0;
}

static int jpush(json_t *arr, json_t *v) { return v == NULL || json_array_append_new(arr, v) != 0; }

static json_t *jkv(const qe_gguf *g, uint64_t i, int *bad)
{
    json_t *o = json_object();
    qe_gguf_value v;
    qe_gguf_type t = qe_gguf_kv_type(g, i);
    if (!o) {
        *bad = 1;
        return NULL;
    }
    *bad |= jset(o, "type", json_string(qe_gguf_type_name(t)));
    if (t != QE_GGUF_ARRAY) {
        *bad |= qe_gguf_kv_value(g, i, 0, &v) != QE_OK;
        *bad |= jset(o, "value", jvalue(&v));
        return o;
    }
    uint64_t n = qe_gguf_kv_arr_len(g, i), shown = n <= JSON_ARRAY_ALL ? n : JSON_ARRAY_HEAD;
    json_t *vals = json_array();
    *bad |= jset(o, "elem_type", json_string(qe_gguf_type_name(qe_gguf_kv_arr_type(g, i))));
    *bad |= jset(o, "length", json_integer((json_int_t)n));
    for (uint64_t j = 0; j < shown && vals; j++) {
        *bad |= qe_gguf_kv_value(g, i, j, &v) != QE_OK;
        *bad |= jpush(vals, jvalue(&v));
    }
    *bad |= jset(o, "values", vals);
    *bad |= jset(o, "truncated", json_boolean(shown < n));
    return o;
}

static int print_json(const qe_gguf *g, int tensors)
{
    int bad = 0;
    json_t *root = json_object(), *meta = json_object(), *tarr = NULL;
    if (!root || !meta) {
        bad = 1;
        goto done;
    }
    bad |= jset(root, "file", jstr(qe_gguf_path(g), strlen(qe_gguf_path(g))));
    bad |= jset(root, "version", json_integer(qe_gguf_version(g)));
    bad |= jset(root, "alignment", json_integer(qe_gguf_alignment(g)));
    bad |= jset(root, "data_offset", json_integer((json_int_t)qe_gguf_data_offset(g)));
    bad |= jset(root, "file_size", json_integer((json_int_t)qe_gguf_file_size(g)));
    bad |= jset(root, "n_kv", json_integer((json_int_t)qe_gguf_n_kv(g)));
    for (uint64_t i = 0; i < qe_gguf_n_kv(g); i++) {
        const char *key = qe_gguf_kv_key(g, i);
        json_t *k = jstr(key, strlen(key)); /* object keys must be UTF-8 too */
        json_t *v = jkv(g, i, &bad);
        if (k && v)
            bad |= json_object_set_new(meta, json_string_value(k), v) != 0;
        else
            json_decref(v);
        json_decref(k);
        bad |= !k || !v;
    }
    bad |= jset(root, "metadata", meta);
    meta = NULL;
    bad |= jset(root, "n_tensors", json_integer((json_int_t)qe_gguf_n_tensors(g)));
    if (tensors) {
        tarr = json_array();
        for (uint64_t i = 0; i < qe_gguf_n_tensors(g) && tarr; i++) {
            const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
            json_t *o = json_object(), *dims = json_array();
            for (uint32_t j = 0; j < t->n_dims && dims; j++)
                bad |= jpush(dims, json_integer(t->ne[j]));
            bad |= !o || jset(o, "name", jstr(t->name, strlen(t->name)));
            bad |= !o || jset(o, "type", json_string(qe_dtype_name(t->type)));
            bad |= !o || jset(o, "dims", dims);
            bad |= !o || jset(o, "bytes", json_integer((json_int_t)t->nbytes));
            bad |= !o || jset(o, "offset", json_integer((json_int_t)t->offset));
            bad |= jpush(tarr, o);
        }
        bad |= jset(root, "tensors", tarr);
    }
    if (!bad) {
        bad |= json_dumpf(root, stdout, JSON_INDENT(2)) != 0;
        fputc('\n', stdout);
    }
done:
    json_decref(meta);
    json_decref(root);
    if (bad)
        fprintf(stderr, "qeval inspect: out of memory building the JSON output\n");
    return bad;
}

int qe_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, tensors = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-tensors")) {
            tensors = 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            return qe_cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (path) {
            return qe_cli_usage_error("inspect", "one file at a time ('%s' and '%s')", path, a);
        } else {
            path = a;
        }
    }
    if (!path)
        return qe_cli_usage_error("inspect", "missing FILE.gguf");
    qe_gguf *g = NULL;
    qe_status s = qe_gguf_open(path, &g);
    if (s != QE_OK)
        return qe_cli_report("inspect", s);
    int rc = QE_EXIT_OK;
    if (json)
        rc = print_json(g, tensors) ? QE_EXIT_FAIL : QE_EXIT_OK;
    else
        print_text(g, tensors);
    qe_gguf_close(g);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qeval inspect: cannot write the output\n");
        rc = QE_EXIT_FAIL;
    }
    return rc;
}
