/* gguf.c - GGUF v2/v3 reader: validates a whole file once at open, then
 * answers lookups from the validated image.
 *
 * The parse is a single forward pass over the header, the key/value section
 * and the tensor infos, with a cursor that checks every read against the
 * bytes left before making it. Strings (keys, string values, elements of
 * string arrays, tensor names) are copied into one NUL-terminated pool and
 * addressed by index through `str_off`, so a 262K-entry token array costs one
 * offset per token and element i is found in O(1). Keys and tensor names are
 * indexed by a sorted array (duplicates fall out of the sort; lookups are
 * binary searches). Numeric values are decoded from the image on demand.
 *
 * Memory grows with what was actually parsed, never with the counts a file
 * claims, so a hostile header cannot make us allocate gigabytes.
 *
 * Threading: open/close touch only the handle being made; a finished handle is
 * never written again, so concurrent readers need no locks.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"

/* One key/value pair. Offsets are into the file image. */
struct kv {
    uint64_t key;      /* string index of the key */
    uint64_t off;      /* offset of the key's length field (for messages) */
    uint64_t type_off; /* offset of the value-type field */
    uint64_t val_off;  /* offset of the value; arrays: of the first element */
    uint64_t str;      /* string index of a string value or of element 0 */
    uint64_t arr_len;  /* arrays: element count */
    uint32_t type;     /* qe_gguf_type */
    uint32_t arr_type; /* arrays: element type; else QE_GGUF_TYPE_COUNT */
};

/* Where a tensor's info record sits, for names and messages. */
struct tinfo {
    uint64_t name;     /* string index of the name */
    uint64_t off;      /* offset of the record (its name's length field) */
    uint64_t off_field; /* offset of the record's data-offset field */
};

/* A sorted name -> index entry for binary search. */
struct name_ix {
    const char *name;
    uint64_t i;
};

struct qe_gguf {
    char *path;
    const uint8_t *img; /* whole file: mmap'ed (mapped=1) or malloc'ed copy */
    uint64_t size;
    int own; /* 0: img is static, 1: mmap'ed, 2: malloc'ed */
    uint32_t version, alignment;
    uint64_t data_offset;

    struct kv *kv; /* n_kv, file order */
    uint64_t n_kv, kv_cap;
    struct name_ix *kv_ix; /* n_kv, sorted by key */

    qe_gguf_tensor *t;    /* n_t, file order */
    struct tinfo *ti;     /* n_t, parallel to t */
    uint64_t n_t, t_cap, ti_cap;
    struct name_ix *t_ix; /* n_t, sorted by name */

    char *pool; /* all strings, each followed by a NUL */
    uint64_t pool_len, pool_cap;
    uint64_t *str_off; /* n_str + 1: string k is pool[str_off[k] .. str_off[k+1]-1) */
    uint64_t n_str, str_cap;
};

/* Bytes of a scalar of each type; 0 for string and array (variable). */
static const uint8_t type_size[QE_GGUF_TYPE_COUNT] = {
    [QE_GGUF_UINT8] = 1,   [QE_GGUF_INT8] = 1,    [QE_GGUF_UINT16] = 2,
    [QE_GGUF_INT16] = 2,   [QE_GGUF_UINT32] = 4,  [QE_GGUF_INT32] = 4,
    [QE_GGUF_FLOAT32] = 4, [QE_GGUF_BOOL] = 1,    [QE_GGUF_UINT64] = 8,
    [QE_GGUF_INT64] = 8,   [QE_GGUF_FLOAT64] = 8,
};

static const char *const type_names[QE_GGUF_TYPE_COUNT] = {
    [QE_GGUF_UINT8] = "u8",    [QE_GGUF_INT8] = "i8",     [QE_GGUF_UINT16] = "u16",
    [QE_GGUF_INT16] = "i16",   [QE_GGUF_UINT32] = "u32",  [QE_GGUF_INT32] = "i32",
    [QE_GGUF_FLOAT32] = "f32", [QE_GGUF_BOOL] = "bool",   [QE_GGUF_STRING] = "string",
    [QE_GGUF_ARRAY] = "array", [QE_GGUF_UINT64] = "u64",  [QE_GGUF_INT64] = "i64",
    [QE_GGUF_FLOAT64] = "f64",
};

/* Smallest encodings, used to bound counts by the bytes left: a kv is at
 * least a 1-byte key (8 + 1), a type (4) and a 1-byte value; a tensor info at
 * least a 1-byte name, n_dims, one dimension, a type and an offset. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_BYTES (8u + 1u + 4u + 8u + 4u + 8u)

const char *qe_gguf_type_name(qe_gguf_type t)
{
    return (unsigned)t < QE_GGUF_TYPE_COUNT ? type_names[t] : "?";
}

static int is_int_type(uint32_t t)
{
    return t == QE_GGUF_UINT8 || t == QE_GGUF_INT8 || t == QE_GGUF_UINT16 ||
           t == QE_GGUF_INT16 || t == QE_GGUF_UINT32 || t == QE_GGUF_INT32 ||
           t == QE_GGUF_UINT64 || t == QE_GGUF_INT64;
}

/* ---- little-endian decoding (independent of the host's byte order) ---- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- parser ---- */

struct parser {
    qe_gguf *g;
    const uint8_t *p;
    uint64_t size, pos;
};

static qe_status failv(qe_status s, const qe_gguf *g, uint64_t off, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return qe_fail(s, "%s: offset %" PRIu64 ": %s", g->path, off, msg);
}

static qe_status corrupt(const qe_gguf *g, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qe_status corrupt(const qe_gguf *g, uint64_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qe_status s = failv(QE_ECORRUPT, g, off, fmt, ap);
    va_end(ap);
    return s;
}

static qe_status unsupported(const qe_gguf *g, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qe_status unsupported(const qe_gguf *g, uint64_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qe_status s = failv(QE_EUNSUPPORTED, g, off, fmt, ap);
    va_end(ap);
    return s;
}

static uint64_t left(const struct parser *ps) { return ps->size - ps->pos; }

/* Check that n bytes remain for `what`; the error names the position. */
static qe_status need(struct parser *ps, uint64_t n, const char *what)
{
    if (n > left(ps))
        return corrupt(ps->g, ps->pos, "%s needs %" PRIu64 " bytes but only %" PRIu64
                       " remain (truncated file?)", what, n, left(ps));
    return QE_OK;
}

static qe_status rd_u32(struct parser *ps, const char *what, uint32_t *v)
{
    qe_status s = need(ps, 4, what);
    if (s == QE_OK) {
        *v = le32(ps->p + ps->pos);
        ps->pos += 4;
    }
    return s;
}

static qe_status rd_u64(struct parser *ps, const char *what, uint64_t *v)
{
    qe_status s = need(ps, 8, what);
    if (s == QE_OK) {
        *v = le64(ps->p + ps->pos);
        ps->pos += 8;
    }
    return s;
}

/* Grow *arr (elements of size es, capacity *cap) to hold at least n. Growth
 * doubles, so total work stays linear. */
static qe_status grow(void **arr, uint64_t *cap, uint64_t n, size_t es)
{
    if (n <= *cap)
        return QE_OK;
    uint64_t c = *cap ? *cap : 16;
    while (c < n)
        c = c > UINT64_MAX / 2 ? n : c * 2;
    if (c > SIZE_MAX / es)
        return qe_fail(QE_ENOMEM, "gguf: table of %" PRIu64 " entries is too large", c);
    void *p = realloc(*arr, (size_t)c * es);
    if (!p)
        return qe_fail(QE_ENOMEM, "gguf: out of memory for %" PRIu64 " entries", c);
    *arr = p;
    *cap = c;
    return QE_OK;
}

/* Append n bytes at src to the string pool as string number g->n_str. */
static qe_status pool_add(qe_gguf *g, const uint8_t *src, uint64_t n)
{
    qe_status s = grow((void **)&g->str_off, &g->str_cap, g->n_str + 2, sizeof *g->str_off);
    if (s == QE_OK)
        s = grow((void **)&g->pool, &g->pool_cap, g->pool_len + n + 1, 1);
    if (s != QE_OK)
        return s;
    memcpy(g->pool + g->pool_len, src, n);
    g->pool[g->pool_len + n] = '\0';
    g->str_off[g->n_str] = g->pool_len;
    g->pool_len += n + 1;
    g->str_off[++g->n_str] = g->pool_len;
    return QE_OK;
}

static const char *str_at(const qe_gguf *g, uint64_t k) { return g->pool + g->str_off[k]; }

static uint64_t str_len(const qe_gguf *g, uint64_t k)
{
    return g->str_off[k + 1] - g->str_off[k] - 1;
}

/* Read a string (u64 length + bytes) into the pool. `what` names it. */
static qe_status rd_string(struct parser *ps, const char *what, uint64_t *len_out)
{
    uint64_t at = ps->pos, n;
    qe_status s = rd_u64(ps, what, &n);
    if (s != QE_OK)
        return s;
    if (n > left(ps))
        return corrupt(ps->g, at, "%s length %" PRIu64 " exceeds the %" PRIu64
                       " bytes left in the file", what, n, left(ps));
    s = pool_add(ps->g, ps->p + ps->pos, n);
    if (s == QE_OK) {
        ps->pos += n;
        if (len_out)
            *len_out = n;
    }
    return s;
}

/* Read a name (key or tensor name): a string that must be non-empty, shorter
 * than max bytes, and hold no NUL byte, since callers look names up as C
 * strings. The length rules come first so that an over-long name is reported
 * as such, not as the NUL bytes of the fields it swallowed. */
static qe_status rd_name(struct parser *ps, const char *what, uint64_t max)
{
    char nb[256];
    uint64_t at = ps->pos, n;
    qe_status s = rd_string(ps, what, &n);
    if (s != QE_OK)
        return s;
    if (n == 0)
        return corrupt(ps->g, at, "empty %s", what);
    if (n >= max)
        return corrupt(ps->g, at, "%s '%s' is %" PRIu64 " bytes (the limit is %" PRIu64 ")", what,
                       qe_printable((const char *)ps->p + at + 8, n, nb, sizeof nb), n, max - 1);
    const char *z = memchr(ps->p + at + 8, 0, n);
    if (z)
        return corrupt(ps->g, at + 8 + (uint64_t)(z - (const char *)(ps->p + at + 8)),
                       "NUL byte inside %s", what);
    return QE_OK;
}

static qe_status check_value_type(struct parser *ps, uint64_t at, uint32_t t, const char *key)
{
    char kb[256];
    if (t >= QE_GGUF_TYPE_COUNT)
        return corrupt(ps->g, at, "invalid value type %" PRIu32 " for key '%s' (expected 0..%d)",
                       t, qe_printable(key, strlen(key), kb, sizeof kb), QE_GGUF_TYPE_COUNT - 1);
    return QE_OK;
}

/* Skip n fixed-size elements of type t, checking bools are 0 or 1. A count
 * that cannot fit is reported at `at` (the array's length field). */
static qe_status skip_fixed(struct parser *ps, uint32_t t, uint64_t n, const char *key,
                            uint64_t at)
{
    char kb[256];
    uint64_t es = type_size[t];
    if (n > left(ps) / es)
        return corrupt(ps->g, at, "%" PRIu64 " values of type %s for key '%s' need %s"
                       " bytes but only %" PRIu64 " remain", n, type_names[t],
                       qe_printable(key, strlen(key), kb, sizeof kb),
                       n > UINT64_MAX / es ? "more than 2^64" : "more", left(ps));
    if (t == QE_GGUF_BOOL)
        for (uint64_t k = 0; k < n; k++)
            if (ps->p[ps->pos + k] > 1)
                return corrupt(ps->g, ps->pos + k, "bool value %u for key '%s' (expected 0 or 1)",
                               ps->p[ps->pos + k], qe_printable(key, strlen(key), kb, sizeof kb));
    ps->pos += n * es;
    return QE_OK;
}

static qe_status parse_kv(struct parser *ps)
{
    qe_gguf *g = ps->g;
    qe_status s = grow((void **)&g->kv, &g->kv_cap, g->n_kv + 1, sizeof *g->kv);
    if (s != QE_OK)
        return s;
    struct kv *k = &g->kv[g->n_kv];
    memset(k, 0, sizeof *k);
    k->off = ps->pos;
    k->key = g->n_str;
    k->arr_type = QE_GGUF_TYPE_COUNT;
    if ((s = rd_name(ps, "key", UINT64_MAX)) != QE_OK)
        return s;
    const char *key = str_at(g, k->key);
    k->type_off = ps->pos;
    if ((s = rd_u32(ps, "value type", &k->type)) != QE_OK ||
        (s = check_value_type(ps, k->type_off, k->type, key)) != QE_OK)
        return s;
    k->val_off = ps->pos;
    if (k->type == QE_GGUF_STRING) {
        k->str = g->n_str;
        s = rd_string(ps, "string value", NULL);
    } else if (k->type == QE_GGUF_ARRAY) {
        uint64_t et_off = ps->pos;
        char kb[256];
        if ((s = rd_u32(ps, "array element type", &k->arr_type)) != QE_OK ||
            (s = check_value_type(ps, et_off, k->arr_type, key)) != QE_OK)
            return s;
        if (k->arr_type == QE_GGUF_ARRAY)
            return corrupt(g, et_off, "array of arrays for key '%s' (nested arrays are not"
                           " allowed)",
                           qe_printable(key, strlen(key), kb, sizeof kb));
        uint64_t n_off = ps->pos;
        if ((s = rd_u64(ps, "array length", &k->arr_len)) != QE_OK)
            return s;
        k->val_off = ps->pos;
        if (k->arr_type == QE_GGUF_STRING) {
            /* Each element is at least its 8-byte length. */
            if (k->arr_len > left(ps) / 8)
                return corrupt(g, n_off, "array of %" PRIu64 " strings for key '%s' cannot fit"
                               " in the %" PRIu64 " bytes left", k->arr_len,
                               qe_printable(key, strlen(key), kb, sizeof kb), left(ps));
            k->str = g->n_str;
            for (uint64_t j = 0; j < k->arr_len && s == QE_OK; j++)
                s = rd_string(ps, "array string", NULL);
        } else {
            s = skip_fixed(ps, k->arr_type, k->arr_len, key, n_off);
        }
    } else {
        s = skip_fixed(ps, k->type, 1, key, ps->pos);
    }
    if (s == QE_OK)
        g->n_kv++;
    return s;
}

static int cmp_name(const void *a, const void *b)
{
    const struct name_ix *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Build a sorted index of n names, where name k is string index
 * *(uint64_t *)(base + k * stride). *dup gets the index of the later of the
 * duplicated pair that comes first in the file (*first the earlier one), or
 * UINT64_MAX if all names differ. */
static qe_status build_index(struct name_ix **out, uint64_t n, const qe_gguf *g,
                             const void *base, size_t stride, uint64_t *dup, uint64_t *first)
{
    *dup = *first = UINT64_MAX;
    if (n == 0)
        return QE_OK;
    struct name_ix *ix = malloc((size_t)n * sizeof *ix);
    if (!ix)
        return qe_fail(QE_ENOMEM, "%s: out of memory for a name index", g->path);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t si;
        memcpy(&si, (const char *)base + k * stride, sizeof si);
        ix[k].name = str_at(g, si);
        ix[k].i = k;
    }
    qsort(ix, (size_t)n, sizeof *ix, cmp_name);
    /* Report the duplicate that comes first in the file. */
    for (uint64_t k = 1; k < n; k++)
        if (strcmp(ix[k - 1].name, ix[k].name) == 0 && ix[k].i < *dup) {
            *dup = ix[k].i;
            *first = ix[k - 1].i;
        }
    *out = ix;
    return QE_OK;
}

static qe_status check_alignment(qe_gguf *g)
{
    g->alignment = QE_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = qe_gguf_find_key(g, "general.alignment");
    if (i < 0)
        return QE_OK;
    const struct kv *k = &g->kv[i];
    if (k->type != QE_GGUF_UINT32)
        return corrupt(g, k->type_off, "general.alignment has type %s, expected u32",
                       type_names[k->type]);
    uint32_t a = le32(g->img + k->val_off);
    if (a == 0 || (a & (a - 1)) != 0)
        return corrupt(g, k->val_off, "general.alignment %" PRIu32 " is not a power of two", a);
    g->alignment = a;
    return QE_OK;
}

/* One tensor-info record: name, dims, type, offset, with every per-tensor rule
 * that does not need the data-section position. */
static qe_status parse_tensor(struct parser *ps)
{
    qe_gguf *g = ps->g;
    char nb[256];
    qe_status s = grow((void **)&g->t, &g->t_cap, g->n_t + 1, sizeof *g->t);
    if (s == QE_OK)
        s = grow((void **)&g->ti, &g->ti_cap, g->n_t + 1, sizeof *g->ti);
    if (s != QE_OK)
        return s;
    qe_gguf_tensor *t = &g->t[g->n_t];
    struct tinfo *ti = &g->ti[g->n_t];
    memset(t, 0, sizeof *t);
    uint64_t at = ps->pos, name_len;
    ti->off = at;
    ti->name = g->n_str;
    if ((s = rd_name(ps, "tensor name", QE_GGUF_MAX_NAME)) != QE_OK)
        return s;
    name_len = str_len(g, ti->name);
    const char *name = qe_printable(str_at(g, ti->name), name_len, nb, sizeof nb);
    uint64_t nd_off = ps->pos;
    if ((s = rd_u32(ps, "tensor n_dims", &t->n_dims)) != QE_OK)
        return s;
    if (t->n_dims < 1 || t->n_dims > QE_GGUF_MAX_DIMS)
        return corrupt(g, nd_off, "tensor '%s' has %" PRIu32 " dimensions (expected 1..%u)",
                       name, t->n_dims, QE_GGUF_MAX_DIMS);
    uint64_t ne_off = ps->pos;
    int64_t n_elems = 1;
    for (uint32_t j = 0; j < QE_GGUF_MAX_DIMS; j++)
        t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        uint64_t v, o = ps->pos;
        if ((s = rd_u64(ps, "tensor dimension", &v)) != QE_OK)
            return s;
        t->ne[j] = (int64_t)v;
        if (t->ne[j] < 0)
            return corrupt(g, o, "tensor '%s' dimension %" PRIu32 " is negative (%" PRId64 ")",
                           name, j, t->ne[j]);
        if (t->ne[j] != 0 && n_elems > INT64_MAX / t->ne[j])
            return corrupt(g, o, "tensor '%s' element count overflows at dimension %" PRIu32
                           " (%" PRId64 ")", name, j, t->ne[j]);
        n_elems *= t->ne[j];
    }
    uint64_t ty_off = ps->pos;
    if ((s = rd_u32(ps, "tensor type", &t->type)) != QE_OK)
        return s;
    if (!qe_dtype_known(t->type))
        return corrupt(g, ty_off, "tensor '%s' has unknown type %" PRIu32, name, t->type);
    uint32_t block = qe_dtype_block(t->type), bb = qe_dtype_block_bytes(t->type);
    if ((uint64_t)t->ne[0] % block != 0)
        return corrupt(g, ne_off, "tensor '%s' row length %" PRId64 " is not a multiple of %s's"
                       " block size %" PRIu32, name, t->ne[0], qe_dtype_name(t->type), block);
    t->n_elems = (uint64_t)n_elems;
    /* bytes = (elements / block) * block_bytes; elements is a multiple of
     * block because ne[0] is. */
    uint64_t blocks = t->n_elems / block;
    if (blocks > UINT64_MAX / bb)
        return corrupt(g, ne_off, "tensor '%s' byte size overflows (%" PRIu64 " %s blocks)",
                       name, blocks, qe_dtype_name(t->type));
    t->nbytes = blocks * bb;
    uint64_t off_at = ps->pos;
    ti->off_field = off_at;
    if ((s = rd_u64(ps, "tensor offset", &t->offset)) != QE_OK)
        return s;
    if (t->offset % g->alignment != 0)
        return corrupt(g, off_at, "tensor '%s' data offset %" PRIu64 " is not a multiple of the"
                       " alignment %" PRIu32, name, t->offset, g->alignment);
    if (t->nbytes > UINT64_MAX - t->offset)
        return corrupt(g, off_at, "tensor '%s' data offset %" PRIu64 " + size %" PRIu64
                       " overflows", name, t->offset, t->nbytes);
    g->n_t++;
    return QE_OK;
}

/* A tensor's byte range, for the overlap check. */
struct span {
    uint64_t begin, end, i;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Data-section rules: every tensor inside the file, no two overlapping. */
static qe_status check_data(qe_gguf *g)
{
    char nb[256], nb2[256];
    qe_status s = QE_OK;
    struct span *order = NULL;
    if (g->n_t == 0)
        goto done;
    uint64_t room = g->size - g->data_offset;
    for (uint64_t k = 0; k < g->n_t; k++) {
        qe_gguf_tensor *t = &g->t[k];
        if (t->offset > room || t->nbytes > room - t->offset) {
            const char *nm = t->name;
            s = corrupt(g, g->ti[k].off_field,
                        "tensor '%s' data [%" PRIu64 ", %" PRIu64 ") runs past the end of the"
                        " file (data section of %" PRIu64 " bytes at offset %" PRIu64 ")",
                        qe_printable(nm, strlen(nm), nb, sizeof nb), t->offset,
                        t->offset + t->nbytes, room, g->data_offset);
            goto done;
        }
    }
    order = malloc((size_t)g->n_t * sizeof *order);
    if (!order) {
        s = qe_fail(QE_ENOMEM, "%s: out of memory", g->path);
        goto done;
    }
    for (uint64_t k = 0; k < g->n_t; k++)
        order[k] = (struct span){g->t[k].offset, g->t[k].offset + g->t[k].nbytes, k};
    qsort(order, (size_t)g->n_t, sizeof *order, cmp_span);
    /* Walk in offset order keeping the furthest end seen; empty tensors
     * occupy no bytes and cannot overlap anything. */
    uint64_t end = 0, owner = UINT64_MAX;
    for (uint64_t r = 0; r < g->n_t; r++) {
        uint64_t k = order[r].i;
        const qe_gguf_tensor *t = &g->t[k];
        if (t->nbytes == 0)
            continue;
        if (owner != UINT64_MAX && t->offset < end) {
            /* Name the tensor whose info comes later in the file. */
            uint64_t a = owner < k ? owner : k, b = owner < k ? k : owner;
            const qe_gguf_tensor *tb = &g->t[b], *ta = &g->t[a];
            const char *na = ta->name, *nbn = tb->name;
            s = corrupt(g, g->ti[b].off_field,
                        "tensor '%s' data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' data [%"
                        PRIu64 ", %" PRIu64 ")", qe_printable(nbn, strlen(nbn), nb, sizeof nb),
                        tb->offset, tb->offset + tb->nbytes, qe_printable(na, strlen(na), nb2,
                        sizeof nb2), ta->offset, ta->offset + ta->nbytes);
            goto done;
        }
        if (t->offset + t->nbytes > end) {
            end = t->offset + t->nbytes;
            owner = k;
        }
    }
done:
    free(order);
    return s;
}

static qe_status parse(qe_gguf *g)
{
    struct parser ps = {g, g->img, g->size, 0};
    qe_status s;
    char nb[256];
    if (g->size < 4 || memcmp(g->img, "GGUF", 4) != 0) {
        char got[64];
        return corrupt(g, 0, "bad magic '%s' (expected \"GGUF\")",
                       qe_printable((const char *)g->img, g->size < 4 ? g->size : 4, got, sizeof got));
    }
    ps.pos = 4;
    if ((s = rd_u32(&ps, "version", &g->version)) != QE_OK)
        return s;
    uint32_t v = g->version, sw = __builtin_bswap32(v);
    if (v != 2 && v != 3) {
        if (sw >= 1 && sw <= 3)
            return unsupported(g, 4, "byte-swapped (big-endian) file: version reads 0x%08" PRIx32
                               " (big-endian GGUF is not supported)", v);
        if (v == 0)
            return corrupt(g, 4, "version 0 (no such GGUF version; expected 2 or 3)");
        if (v == 1)
            return unsupported(g, 4, "GGUF version 1 is not supported (expected 2 or 3)");
        return unsupported(g, 4, "unknown GGUF version %" PRIu32 " (expected 2 or 3)", v);
    }
    uint64_t n_t, n_kv;
    if ((s = rd_u64(&ps, "tensor count", &n_t)) != QE_OK ||
        (s = rd_u64(&ps, "kv count", &n_kv)) != QE_OK)
        return s;
    uint64_t rest = left(&ps);
    if (n_kv > rest / MIN_KV_BYTES)
        return corrupt(g, 16, "kv count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left"
                       " (each kv takes at least %u)", n_kv, rest, MIN_KV_BYTES);
    if (n_t > (rest - n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return corrupt(g, 8, "tensor count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left"
                       " after %" PRIu64 " kvs (each tensor info takes at least %u)", n_t, rest,
                       n_kv, MIN_TENSOR_BYTES);
    for (uint64_t k = 0; k < n_kv; k++)
        if ((s = parse_kv(&ps)) != QE_OK)
            return s;
    uint64_t dup, first;
    const void *keys = g->kv ? (const char *)g->kv + offsetof(struct kv, key) : NULL;
    if ((s = build_index(&g->kv_ix, g->n_kv, g, keys, sizeof *g->kv, &dup, &first)) != QE_OK)
        return s;
    if (dup != UINT64_MAX) {
        const char *key = str_at(g, g->kv[dup].key);
        return corrupt(g, g->kv[dup].off, "duplicate key '%s' (first at offset %" PRIu64 ")",
                       qe_printable(key, strlen(key), nb, sizeof nb), g->kv[first].off);
    }
    if ((s = check_alignment(g)) != QE_OK)
        return s;
    for (uint64_t k = 0; k < n_t; k++)
        if ((s = parse_tensor(&ps)) != QE_OK)
            return s;
    /* The pool has stopped moving only now: point tensor names into it, and
     * re-point the key index, whose pointers the tensor names' growth of the
     * pool may have left dangling (same strings, so the order holds). */
    for (uint64_t k = 0; k < g->n_t; k++)
        g->t[k].name = str_at(g, g->ti[k].name);
    for (uint64_t k = 0; k < g->n_kv; k++)
        g->kv_ix[k].name = str_at(g, g->kv[g->kv_ix[k].i].key);
    const void *names = g->ti ? (const char *)g->ti + offsetof(struct tinfo, name) : NULL;
    if ((s = build_index(&g->t_ix, g->n_t, g, names, sizeof *g->ti, &dup, &first)) != QE_OK)
        return s;
    if (dup != UINT64_MAX)
        return corrupt(g, g->ti[dup].off, "duplicate tensor name '%s' (first at offset %" PRIu64
                       ")",
                       qe_printable(g->t[dup].name, strlen(g->t[dup].name), nb, sizeof nb),
                       g->ti[first].off);
    uint64_t a = g->alignment, end = ps.pos;
    uint64_t pad = (a - end % a) % a;
    if (g->n_t == 0 && pad > g->size - end) {
        g->data_offset = g->size; /* vocab-only files may omit the final padding */
    } else if (pad > g->size - end) {
        return corrupt(g, end, "data section (aligned to %" PRIu64 ") would start past the end"
                       " of the file (%" PRIu64 " bytes)", a, g->size);
    } else {
        g->data_offset = end + pad;
    }
    if ((s = check_data(g)) != QE_OK)
        return s;
    for (uint64_t k = 0; k < g->n_t; k++)
        g->t[k].data = g->img + g->data_offset + g->t[k].offset;
    return QE_OK;
}

/* ---- open/close ---- */

static qe_status new_handle(const char *name, qe_gguf **out)
{
    qe_gguf *g = calloc(1, sizeof *g);
    char *p = strdup(name ? name : "(memory)");
    if (!g || !p) {
        free(g);
        free(p);
        return qe_fail(QE_ENOMEM, "gguf: out of memory opening %s", name ? name : "(memory)");
    }
    g->path = p;
    *out = g;
    return QE_OK;
}

qe_status qe_gguf_open(const char *path, qe_gguf **out)
{
    static const uint8_t empty[1];
    qe_gguf *g = NULL;
    int fd = -1;
    qe_status s;
    *out = NULL;
    if ((s = new_handle(path, &g)) != QE_OK)
        goto done;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        s = qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        s = qe_fail(QE_EIO, "%s: not a regular file", path);
        goto done;
    }
    g->size = (uint64_t)st.st_size;
    if (g->size == 0) {
        g->img = empty;
    } else {
        if (g->size > SIZE_MAX) {
            s = qe_fail(QE_EIO, "%s: file of %" PRIu64 " bytes cannot be mapped", path, g->size);
            goto done;
        }
        void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            s = qe_fail(QE_EIO, "%s: mmap failed: %s", path, strerror(errno));
            goto done;
        }
        g->img = m;
        g->own = 1;
    }
    s = parse(g);
done:
    if (fd >= 0)
        close(fd);
    if (s != QE_OK) {
        qe_gguf_close(g);
        g = NULL;
    }
    *out = g;
    return s;
}

qe_status qe_gguf_open_mem(const void *data, size_t size, const char *name, qe_gguf **out)
{
    qe_gguf *g = NULL;
    qe_status s;
    *out = NULL;
    if ((s = new_handle(name, &g)) != QE_OK)
        goto done;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        s = qe_fail(QE_ENOMEM, "%s: out of memory copying %zu bytes", g->path, size);
        goto done;
    }
    if (size)
        memcpy(copy, data, size);
    g->img = copy;
    g->own = 2;
    g->size = size;
    s = parse(g);
done:
    if (s != QE_OK) {
        qe_gguf_close(g);
        g = NULL;
    }
    *out = g;
    return s;
}

void qe_gguf_close(qe_gguf *g)
{
    if (!g)
        return;
    if (g->own == 1)
        munmap((void *)g->img, (size_t)g->size);
    else if (g->own == 2)
        free((void *)g->img);
    free(g->kv);
    free(g->kv_ix);
    free(g->t);
    free(g->ti);
    free(g->t_ix);
    free(g->pool);
    free(g->str_off);
    free(g->path);
    free(g);
}

/* ---- handle facts ---- */

const char *qe_gguf_path(const qe_gguf *g) { return g->path; }
uint32_t qe_gguf_version(const qe_gguf *g) { return g->version; }
uint32_t qe_gguf_alignment(const qe_gguf *g) { return g->alignment; }
uint64_t qe_gguf_data_offset(const qe_gguf *g) { return g->data_offset; }
uint64_t qe_gguf_file_size(const qe_gguf *g) { return g->size; }
const void *qe_gguf_base(const qe_gguf *g) { return g->img; }

/* ---- metadata by index ---- */

uint64_t qe_gguf_n_kv(const qe_gguf *g) { return g->n_kv; }

const char *qe_gguf_kv_key(const qe_gguf *g, uint64_t i)
{
    return i < g->n_kv ? str_at(g, g->kv[i].key) : NULL;
}

qe_gguf_type qe_gguf_kv_type(const qe_gguf *g, uint64_t i)
{
    return i < g->n_kv ? (qe_gguf_type)g->kv[i].type : QE_GGUF_TYPE_COUNT;
}

qe_gguf_type qe_gguf_kv_arr_type(const qe_gguf *g, uint64_t i)
{
    return i < g->n_kv ? (qe_gguf_type)g->kv[i].arr_type : QE_GGUF_TYPE_COUNT;
}

uint64_t qe_gguf_kv_arr_len(const qe_gguf *g, uint64_t i)
{
    return i < g->n_kv ? g->kv[i].arr_len : 0;
}

static int cmp_lookup(const void *key, const void *elem)
{
    return strcmp(key, ((const struct name_ix *)elem)->name);
}

int64_t qe_gguf_find_key(const qe_gguf *g, const char *key)
{
    if (!g || !key || g->n_kv == 0)
        return -1;
    const struct name_ix *e = bsearch(key, g->kv_ix, (size_t)g->n_kv, sizeof *e, cmp_lookup);
    return e ? (int64_t)e->i : -1;
}

/* Decode value j of kv k (j == 0 for scalars); the caller checked j. */
static void decode(const qe_gguf *g, const struct kv *k, uint64_t j, qe_gguf_value *v)
{
    uint32_t t = k->type == QE_GGUF_ARRAY ? k->arr_type : k->type;
    memset(v, 0, sizeof *v);
    v->type = (qe_gguf_type)t;
    if (t == QE_GGUF_STRING) {
        v->s = str_at(g, k->str + j);
        v->len = (size_t)str_len(g, k->str + j);
        return;
    }
    const uint8_t *p = g->img + k->val_off + j * type_size[t];
    uint32_t w;
    uint64_t q;
    float f;
    double d;
    switch (t) {
    case QE_GGUF_UINT8: v->u = p[0]; break;
    case QE_GGUF_BOOL: v->u = p[0]; break;
    case QE_GGUF_INT8: v->i = (int8_t)p[0]; break;
    case QE_GGUF_UINT16: v->u = le16(p); break;
    case QE_GGUF_INT16: v->i = (int16_t)le16(p); break;
    case QE_GGUF_UINT32: v->u = le32(p); break;
    case QE_GGUF_INT32: v->i = (int32_t)le32(p); break;
    case QE_GGUF_UINT64: v->u = le64(p); break;
    case QE_GGUF_INT64: v->i = (int64_t)le64(p); break;
    case QE_GGUF_FLOAT32:
        w = le32(p);
        memcpy(&f, &w, 4);
        v->f = f;
        break;
    case QE_GGUF_FLOAT64:
        q = le64(p);
        memcpy(&d, &q, 8);
        v->f = d;
        break;
    default: break;
    }
}

qe_status qe_gguf_kv_value(const qe_gguf *g, uint64_t i, uint64_t j, qe_gguf_value *out)
{
    if (i >= g->n_kv)
        return qe_fail(QE_ERANGE, "%s: kv index %" PRIu64 " out of range (%" PRIu64 " kvs)",
                       g->path, i, g->n_kv);
    const struct kv *k = &g->kv[i];
    uint64_t n = k->type == QE_GGUF_ARRAY ? k->arr_len : 1;
    if (j >= n)
        return qe_fail(QE_ERANGE, "%s: element %" PRIu64 " of key '%s' out of range (%" PRIu64
                       " values)", g->path, j, str_at(g, k->key), n);
    decode(g, k, j, out);
    return QE_OK;
}

/* ---- typed getters ---- */

static qe_status lookup(const qe_gguf *g, const char *key, const struct kv **out)
{
    char kb[256];
    int64_t i = qe_gguf_find_key(g, key);
    if (i < 0)
        return qe_fail(QE_ENOTFOUND, "%s: key '%s' not found", g->path,
                       qe_printable(key, strlen(key), kb, sizeof kb));
    *out = &g->kv[i];
    return QE_OK;
}

/* "u32", or "array of u32" for arrays. */
static const char *full_type(const struct kv *k, char *buf, size_t cap)
{
    if (k->type != QE_GGUF_ARRAY)
        return type_names[k->type];
    snprintf(buf, cap, "array of %s", type_names[k->arr_type]);
    return buf;
}

static qe_status mismatch(const qe_gguf *g, const struct kv *k, const char *want)
{
    char kb[256], tb[64];
    const char *key = str_at(g, k->key);
    return corrupt(g, k->type_off, "key '%s' has type %s, expected %s",
                   qe_printable(key, strlen(key), kb, sizeof kb), full_type(k, tb, sizeof tb), want);
}

/* Integer value as sign + magnitude, so one range check serves all types. */
static void int_parts(const qe_gguf_value *v, int *neg, uint64_t *mag)
{
    if (v->type == QE_GGUF_INT8 || v->type == QE_GGUF_INT16 || v->type == QE_GGUF_INT32 ||
        v->type == QE_GGUF_INT64) {
        *neg = v->i < 0;
        *mag = *neg ? (uint64_t)(-(v->i + 1)) + 1 : (uint64_t)v->i;
    } else {
        *neg = 0;
        *mag = v->u;
    }
}

/* Check that integer element j of k fits [-neg_max, pos_max]; store as i64
 * or u64. `want` names the requested type in messages. */
static qe_status get_int(const qe_gguf *g, const struct kv *k, uint64_t j, const char *want,
                         uint64_t neg_max, uint64_t pos_max, int *neg, uint64_t *mag)
{
    char kb[256];
    qe_gguf_value v;
    decode(g, k, j, &v);
    int_parts(&v, neg, mag);
    if ((*neg && *mag > neg_max) || (!*neg && *mag > pos_max)) {
        const char *key = str_at(g, k->key);
        uint64_t at = k->type == QE_GGUF_ARRAY ? k->val_off + j * type_size[v.type] : k->val_off;
        return corrupt(g, at, "key '%s' value %s%" PRIu64 " does not fit %s",
                       qe_printable(key, strlen(key), kb, sizeof kb), *neg ? "-" : "", *mag, want);
    }
    return QE_OK;
}

static qe_status get_scalar_int(const qe_gguf *g, const char *key, const char *want,
                                uint64_t neg_max, uint64_t pos_max, int *neg, uint64_t *mag)
{
    const struct kv *k;
    qe_status s = lookup(g, key, &k);
    if (s != QE_OK)
        return s;
    if (!is_int_type(k->type))
        return mismatch(g, k, want);
    return get_int(g, k, 0, want, neg_max, pos_max, neg, mag);
}

qe_status qe_gguf_get_u32(const qe_gguf *g, const char *key, uint32_t *out)
{
    int neg;
    uint64_t mag;
    qe_status s = get_scalar_int(g, key, "u32", 0, UINT32_MAX, &neg, &mag);
    if (s == QE_OK)
        *out = (uint32_t)mag;
    return s;
}

qe_status qe_gguf_get_i32(const qe_gguf *g, const char *key, int32_t *out)
{
    int neg;
    uint64_t mag;
    qe_status s = get_scalar_int(g, key, "i32", (uint64_t)INT32_MAX + 1, INT32_MAX, &neg, &mag);
    if (s == QE_OK)
        *out = neg ? (int32_t)(-(int64_t)(mag - 1) - 1) : (int32_t)mag;
    return s;
}

qe_status qe_gguf_get_u64(const qe_gguf *g, const char *key, uint64_t *out)
{
    int neg;
    uint64_t mag;
    qe_status s = get_scalar_int(g, key, "u64", 0, UINT64_MAX, &neg, &mag);
    if (s == QE_OK)
        *out = mag;
    return s;
}

qe_status qe_gguf_get_f32(const qe_gguf *g, const char *key, float *out)
{
    const struct kv *k;
    qe_status s = lookup(g, key, &k);
    if (s != QE_OK)
        return s;
    if (k->type != QE_GGUF_FLOAT32 && k->type != QE_GGUF_FLOAT64)
        return mismatch(g, k, "f32 or f64");
    qe_gguf_value v;
    decode(g, k, 0, &v);
    *out = (float)v.f;
    return QE_OK;
}

qe_status qe_gguf_get_bool(const qe_gguf *g, const char *key, int *out)
{
    const struct kv *k;
    qe_status s = lookup(g, key, &k);
    if (s != QE_OK)
        return s;
    if (k->type != QE_GGUF_BOOL)
        return mismatch(g, k, "bool");
    *out = g->img[k->val_off] != 0;
    return QE_OK;
}

qe_status qe_gguf_get_str(const qe_gguf *g, const char *key, const char **out, size_t *len)
{
    const struct kv *k;
    qe_status s = lookup(g, key, &k);
    if (s != QE_OK)
        return s;
    if (k->type != QE_GGUF_STRING)
        return mismatch(g, k, "string");
    *out = str_at(g, k->str);
    if (len)
        *len = (size_t)str_len(g, k->str);
    return QE_OK;
}

qe_status qe_gguf_get_arr(const qe_gguf *g, const char *key, qe_gguf_type *elem, uint64_t *n)
{
    const struct kv *k;
    qe_status s = lookup(g, key, &k);
    if (s != QE_OK)
        return s;
    if (k->type != QE_GGUF_ARRAY)
        return mismatch(g, k, "array");
    *elem = (qe_gguf_type)k->arr_type;
    *n = k->arr_len;
    return QE_OK;
}

/* Look up an array key whose elements pass `ok`, with exactly `want_n`
 * elements unless want_n is UINT64_MAX. */
static qe_status lookup_arr(const qe_gguf *g, const char *key, int (*ok)(uint32_t),
                            const char *want, uint64_t want_n, const struct kv **out)
{
    char kb[256];
    qe_status s = lookup(g, key, out);
    if (s != QE_OK)
        return s;
    const struct kv *k = *out;
    if (k->type != QE_GGUF_ARRAY || !ok(k->arr_type))
        return mismatch(g, k, want);
    if (want_n != UINT64_MAX && k->arr_len != want_n)
        return corrupt(g, k->val_off - 8, "array '%s' has %" PRIu64 " elements, expected %" PRIu64,
                       qe_printable(key, strlen(key), kb, sizeof kb), k->arr_len, want_n);
    return QE_OK;
}

static int is_str(uint32_t t) { return t == QE_GGUF_STRING; }
static int is_float(uint32_t t) { return t == QE_GGUF_FLOAT32 || t == QE_GGUF_FLOAT64; }

qe_status qe_gguf_get_arr_str(const qe_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len)
{
    const struct kv *k;
    char kb[256];
    qe_status st = lookup_arr(g, key, is_str, "array of string", UINT64_MAX, &k);
    if (st != QE_OK)
        return st;
    if (i >= k->arr_len)
        return qe_fail(QE_ERANGE, "%s: index %" PRIu64 " past the end of array '%s' (%" PRIu64
                       " elements)", g->path, i, qe_printable(key, strlen(key), kb, sizeof kb),
                       k->arr_len);
    *s = str_at(g, k->str + i);
    if (len)
        *len = (size_t)str_len(g, k->str + i);
    return QE_OK;
}

qe_status qe_gguf_get_arr_f32(const qe_gguf *g, const char *key, float *dst, uint64_t n)
{
    const struct kv *k;
    qe_status s = lookup_arr(g, key, is_float, "array of f32 or f64", n, &k);
    if (s != QE_OK)
        return s;
    qe_gguf_value v;
    for (uint64_t j = 0; j < n; j++) {
        decode(g, k, j, &v);
        dst[j] = (float)v.f;
    }
    return QE_OK;
}

qe_status qe_gguf_get_arr_i32(const qe_gguf *g, const char *key, int32_t *dst, uint64_t n)
{
    const struct kv *k;
    qe_status s = lookup_arr(g, key, is_int_type, "array of integers", n, &k);
    if (s != QE_OK)
        return s;
    int neg;
    uint64_t mag;
    for (uint64_t j = 0; j < n; j++) {
        if ((s = get_int(g, k, j, "i32", (uint64_t)INT32_MAX + 1, INT32_MAX, &neg, &mag)) != QE_OK)
            return s;
        dst[j] = neg ? (int32_t)(-(int64_t)(mag - 1) - 1) : (int32_t)mag;
    }
    return QE_OK;
}

/* ---- formatting for inspect ---- */

/* Bounded text builder: appends until cap-1 bytes, then marks the text cut. */
struct sb {
    char *buf;
    size_t cap, len;
    int cut;
};

static void sb_add(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sb *b, const char *fmt, ...)
{
    if (b->cut)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->cut = 1;
        b->len = b->cap - 1;
    } else {
        b->len += (size_t)n;
    }
}

/* A quoted string with control bytes, quotes and backslashes escaped, at
 * most `max` input bytes. */
static void sb_quoted(struct sb *b, const char *s, size_t n, size_t max)
{
    sb_add(b, "\"");
    for (size_t k = 0; k < n && k < max && !b->cut; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\')
            sb_add(b, "\\%c", c);
        else if (c == '\n')
            sb_add(b, "\\n");
        else if (c == '\t')
            sb_add(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            sb_add(b, "\\x%02x", c);
        else
            sb_add(b, "%c", c);
    }
    sb_add(b, n > max ? "\"..." : "\"");
}

static void sb_value(struct sb *b, const qe_gguf_value *v, size_t max_str)
{
    switch (v->type) {
    case QE_GGUF_UINT8: case QE_GGUF_UINT16: case QE_GGUF_UINT32: case QE_GGUF_UINT64:
        sb_add(b, "%" PRIu64, v->u);
        break;
    case QE_GGUF_INT8: case QE_GGUF_INT16: case QE_GGUF_INT32: case QE_GGUF_INT64:
        sb_add(b, "%" PRId64, v->i);
        break;
    case QE_GGUF_FLOAT32: sb_add(b, "%.9g", v->f); break;
    case QE_GGUF_FLOAT64: sb_add(b, "%.17g", v->f); break;
    case QE_GGUF_BOOL: sb_add(b, "%s", v->u ? "true" : "false"); break;
    case QE_GGUF_STRING: sb_quoted(b, v->s, v->len, max_str); break;
    default: sb_add(b, "?"); break;
    }
}

#define FORMAT_ARRAY_HEAD 6   /* array elements shown before "... (N more)" */
#define FORMAT_ELEM_STR 40    /* bytes shown of each string inside an array */

void qe_gguf_kv_format(const qe_gguf *g, uint64_t i, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    struct sb b = {buf, cap, 0, 0};
    buf[0] = '\0';
    if (i >= g->n_kv)
        return;
    const struct kv *k = &g->kv[i];
    qe_gguf_value v;
    if (k->type != QE_GGUF_ARRAY) {
        decode(g, k, 0, &v);
        sb_value(&b, &v, SIZE_MAX);
    } else {
        sb_add(&b, "[%s x %" PRIu64 "]", type_names[k->arr_type], k->arr_len);
        uint64_t shown = k->arr_len < FORMAT_ARRAY_HEAD ? k->arr_len : FORMAT_ARRAY_HEAD;
        for (uint64_t j = 0; j < shown && !b.cut; j++) {
            decode(g, k, j, &v);
            sb_add(&b, j ? ", " : " ");
            sb_value(&b, &v, FORMAT_ELEM_STR);
        }
        if (shown < k->arr_len)
            sb_add(&b, ", ... (%" PRIu64 " more)", k->arr_len - shown);
    }
    if (b.cut && cap >= 4)
        memcpy(buf + cap - 4, "...", 4);
}

/* ---- tensors ---- */

uint64_t qe_gguf_n_tensors(const qe_gguf *g) { return g->n_t; }

const qe_gguf_tensor *qe_gguf_tensor_at(const qe_gguf *g, uint64_t i)
{
    return i < g->n_t ? &g->t[i] : NULL;
}

const qe_gguf_tensor *qe_gguf_find_tensor(const qe_gguf *g, const char *name)
{
    if (!g || !name || g->n_t == 0)
        return NULL;
    const struct name_ix *e = bsearch(name, g->t_ix, (size_t)g->n_t, sizeof *e, cmp_lookup);
    return e ? &g->t[e->i] : NULL;
}
