/* gguf_write.c - GGUF writer (see gguf_write.h).
 *
 * Each kv is serialized (type + value bytes) when added; keys and tensor
 * records are kept in order and laid out at write time, when the alignment is
 * final. Duplicate checks are linear scans: writers hold tens of keys and at
 * most a few thousand tensors, and run once per file. Tensors are either
 * caller buffers (referenced) or fill callbacks asked for runs of rows at
 * write time, so a multi-GB file streams through one chunk buffer.
 *
 * Threading: none; a writer belongs to one thread.
 */
#include "gguf_write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"

struct wkv {
    char *key;
    uint8_t *val; /* u32 type + value bytes, little-endian */
    size_t val_len;
};

struct wtensor {
    char name[QE_GGUF_MAX_NAME];
    uint32_t type, n_dims;
    int64_t ne[QE_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* assigned at write time */
    const void *data;
    qe_gguf_fill_fn fill; /* non-NULL: bytes come from fill(ctx, ...) */
    void *ctx;
    uint64_t rows, row_bytes; /* nbytes = rows * row_bytes */
};

struct qe_gguf_writer {
    uint32_t version, alignment;
    struct wkv *kv;
    size_t n_kv, kv_cap;
    struct wtensor *t;
    size_t n_t, t_cap;
};

/* Growable byte buffer; `oom` latches the first allocation failure so that
 * callers check once at the end. put() with src NULL appends n zeros. */
struct buf {
    uint8_t *p;
    size_t len, cap;
    int oom;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->len) {
        size_t c = b->cap ? b->cap : 256;
        while (c - b->len < n) {
            if (c > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            c *= 2;
        }
        uint8_t *p = realloc(b->p, c);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    if (n && src)
        memcpy(b->p + b->len, src, n);
    else if (n)
        memset(b->p + b->len, 0, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(struct buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void put_zeros(struct buf *b, size_t n) { put(b, NULL, n); }

/* Append one value of type t read from host memory at src (elements of the
 * matching C type); returns its size in host memory. */
static size_t put_value(struct buf *b, uint32_t t, const void *src)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (t) {
    case QE_GGUF_UINT8: case QE_GGUF_INT8: case QE_GGUF_BOOL:
        memcpy(&u8, src, 1);
        put(b, &u8, 1);
        return 1;
    case QE_GGUF_UINT16: case QE_GGUF_INT16:
        memcpy(&u16, src, 2);
        put(b, (uint8_t[2]){(uint8_t)u16, (uint8_t)(u16 >> 8)}, 2);
        return 2;
    case QE_GGUF_UINT32: case QE_GGUF_INT32: case QE_GGUF_FLOAT32:
        memcpy(&u32, src, 4);
        put_u32(b, u32);
        return 4;
    case QE_GGUF_UINT64: case QE_GGUF_INT64: case QE_GGUF_FLOAT64:
        memcpy(&u64, src, 8);
        put_u64(b, u64);
        return 8;
    default:
        return 0;
    }
}

qe_status qe_gguf_writer_new(uint32_t version, qe_gguf_writer **out)
{
    *out = NULL;
    if (version != 2 && version != 3)
        return qe_fail(QE_EINVAL, "gguf writer: version %" PRIu32 " (expected 2 or 3)", version);
    qe_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return qe_fail(QE_ENOMEM, "gguf writer: out of memory");
    w->version = version;
    w->alignment = QE_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return QE_OK;
}

void qe_gguf_writer_free(qe_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static qe_status check_key(const qe_gguf_writer *w, const char *key)
{
    if (!key || !*key)
        return qe_fail(QE_EINVAL, "gguf writer: empty key");
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return qe_fail(QE_EINVAL, "gguf writer: duplicate key '%s'", key);
    return QE_OK;
}

/* Take ownership of the serialized value in b and append it under key. */
static qe_status add_kv(qe_gguf_writer *w, const char *key, struct buf *b)
{
    qe_status s = check_key(w, key);
    char *k = NULL;
    if (s != QE_OK)
        goto done;
    if (b->oom || !(k = strdup(key))) {
        s = qe_fail(QE_ENOMEM, "gguf writer: out of memory adding '%s'", key);
        goto done;
    }
    if (w->n_kv == w->kv_cap) {
        size_t c = w->kv_cap ? w->kv_cap * 2 : 16;
        struct wkv *p = realloc(w->kv, c * sizeof *p);
        if (!p) {
            s = qe_fail(QE_ENOMEM, "gguf writer: out of memory adding '%s'", key);
            goto done;
        }
        w->kv = p;
        w->kv_cap = c;
    }
    w->kv[w->n_kv++] = (struct wkv){k, b->p, b->len};
    k = NULL;
    b->p = NULL;
done:
    free(k);
    free(b->p);
    b->p = NULL;
    return s;
}

static qe_status add_scalar(qe_gguf_writer *w, const char *key, uint32_t t, const void *v)
{
    if (key && strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        if (t != QE_GGUF_UINT32)
            return qe_fail(QE_EINVAL, "gguf writer: general.alignment must be u32, not %s",
                           qe_gguf_type_name((qe_gguf_type)t));
        memcpy(&a, v, 4);
        return qe_gguf_writer_set_alignment(w, a);
    }
    struct buf b = {0};
    put_u32(&b, t);
    put_value(&b, t, v);
    return add_kv(w, key, &b);
}

/* The public scalar adders, one per C type: each hands add_scalar the value's
 * address and its GGUF type (add_bool checks 0/1 first, below). */
#define SCALAR_ADDER(name, ctype, gtype)                                            \
    qe_status qe_gguf_writer_add_##name(qe_gguf_writer *w, const char *key, ctype v) \
    {                                                                              \
        return add_scalar(w, key, gtype, &v);                                      \
    }
SCALAR_ADDER(u8, uint8_t, QE_GGUF_UINT8)
SCALAR_ADDER(i8, int8_t, QE_GGUF_INT8)
SCALAR_ADDER(u16, uint16_t, QE_GGUF_UINT16)
SCALAR_ADDER(i16, int16_t, QE_GGUF_INT16)
SCALAR_ADDER(u32, uint32_t, QE_GGUF_UINT32)
SCALAR_ADDER(i32, int32_t, QE_GGUF_INT32)
SCALAR_ADDER(u64, uint64_t, QE_GGUF_UINT64)
SCALAR_ADDER(i64, int64_t, QE_GGUF_INT64)
SCALAR_ADDER(f32, float, QE_GGUF_FLOAT32)
SCALAR_ADDER(f64, double, QE_GGUF_FLOAT64)
#undef SCALAR_ADDER

qe_status qe_gguf_writer_add_bool(qe_gguf_writer *w, const char *key, int v)
{
    if (v != 0 && v != 1)
        return qe_fail(QE_EINVAL, "gguf writer: bool '%s' must be 0 or 1, not %d", key, v);
    uint8_t b = (uint8_t)v;
    return add_scalar(w, key, QE_GGUF_BOOL, &b);
}

qe_status qe_gguf_writer_add_strn(qe_gguf_writer *w, const char *key, const char *s, size_t n)
{
    struct buf b = {0};
    put_u32(&b, QE_GGUF_STRING);
    put_str(&b, s, n);
    return add_kv(w, key, &b);
}

qe_status qe_gguf_writer_add_str(qe_gguf_writer *w, const char *key, const char *s)
{
    return qe_gguf_writer_add_strn(w, key, s, strlen(s));
}

qe_status qe_gguf_writer_add_arr(qe_gguf_writer *w, const char *key, qe_gguf_type elem,
                                 const void *vals, uint64_t n)
{
    if ((unsigned)elem >= QE_GGUF_TYPE_COUNT || elem == QE_GGUF_ARRAY || elem == QE_GGUF_STRING)
        return qe_fail(QE_EINVAL, "gguf writer: array '%s' of type %d (expected a numeric or bool"
                       " type; strings go through add_arr_str)", key ? key : "", (int)elem);
    if (key && strcmp(key, "general.alignment") == 0)
        return qe_fail(QE_EINVAL, "gguf writer: general.alignment must be u32, not an array");
    if (elem == QE_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)vals)[i] > 1)
                return qe_fail(QE_EINVAL, "gguf writer: bool %" PRIu64 " of '%s' is %u, not 0 or 1",
                               i, key, ((const uint8_t *)vals)[i]);
    struct buf b = {0};
    put_u32(&b, QE_GGUF_ARRAY);
    put_u32(&b, elem);
    put_u64(&b, n);
    const char *p = vals;
    for (uint64_t i = 0; i < n && !b.oom; i++)
        p += put_value(&b, elem, p);
    return add_kv(w, key, &b);
}

qe_status qe_gguf_writer_add_arr_str(qe_gguf_writer *w, const char *key,
                                     const char *const *strs, uint64_t n)
{
    struct buf b = {0};
    put_u32(&b, QE_GGUF_ARRAY);
    put_u32(&b, QE_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n && !b.oom; i++)
        put_str(&b, strs[i], strlen(strs[i]));
    return add_kv(w, key, &b);
}

qe_status qe_gguf_writer_set_alignment(qe_gguf_writer *w, uint32_t a)
{
    if (a == 0 || (a & (a - 1)) != 0)
        return qe_fail(QE_EINVAL, "gguf writer: alignment %" PRIu32 " is not a power of two", a);
    w->alignment = a;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0) {
            /* Only add_scalar's u32 path creates this key: val is type + u32. */
            uint8_t *v = w->kv[i].val + 4;
            for (int k = 0; k < 4; k++)
                v[k] = (uint8_t)(a >> (8 * k));
            return QE_OK;
        }
    struct buf b = {0};
    put_u32(&b, QE_GGUF_UINT32);
    put_u32(&b, a);
    return add_kv(w, "general.alignment", &b);
}

static qe_status add_tensor(qe_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                            const int64_t *ne, const void *data, qe_gguf_fill_fn fill, void *ctx)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= QE_GGUF_MAX_NAME)
        return qe_fail(QE_EINVAL, "gguf writer: tensor name '%s' must be 1..%u bytes",
                       name ? name : "", QE_GGUF_MAX_NAME - 1);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return qe_fail(QE_EINVAL, "gguf writer: duplicate tensor '%s'", name);
    if (n_dims < 1 || n_dims > QE_GGUF_MAX_DIMS)
        return qe_fail(QE_EINVAL, "gguf writer: tensor '%s' has %" PRIu32 " dims (expected 1..%u)",
                       name, n_dims, QE_GGUF_MAX_DIMS);
    struct wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .ctx = ctx};
    memcpy(t.name, name, len + 1);
    uint64_t rows = 1;
    for (uint32_t j = 0; j < QE_GGUF_MAX_DIMS; j++) {
        t.ne[j] = j < n_dims ? ne[j] : 1;
        if (t.ne[j] < 0)
            return qe_fail(QE_EINVAL, "gguf writer: tensor '%s' dim %" PRIu32 " is negative",
                           name, j);
        if (j > 0) {
            if (t.ne[j] != 0 && rows > INT64_MAX / (uint64_t)t.ne[j])
                return qe_fail(QE_ERANGE, "gguf writer: tensor '%s' is too large", name);
            rows *= (uint64_t)t.ne[j];
        }
    }
    uint64_t row;
    qe_status s = qe_dtype_row_bytes(type, t.ne[0], &row);
    if (s != QE_OK)
        return qe_fail_prefix(s == QE_ECORRUPT || s == QE_EUNSUPPORTED ? QE_EINVAL : s,
                              "gguf writer: tensor '%s'", name);
    if (rows != 0 && row > UINT64_MAX / rows)
        return qe_fail(QE_ERANGE, "gguf writer: tensor '%s' size overflows", name);
    t.nbytes = row * rows;
    t.rows = rows;
    t.row_bytes = row;
    if (w->n_t == w->t_cap) {
        size_t c = w->t_cap ? w->t_cap * 2 : 16;
        struct wtensor *p = realloc(w->t, c * sizeof *p);
        if (!p)
            return qe_fail(QE_ENOMEM, "gguf writer: out of memory adding tensor '%s'", name);
        w->t = p;
        w->t_cap = c;
    }
    w->t[w->n_t++] = t;
    return QE_OK;
}

qe_status qe_gguf_writer_add_tensor(qe_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

qe_status qe_gguf_writer_add_tensor_fill(qe_gguf_writer *w, const char *name, uint32_t type,
                                         uint32_t n_dims, const int64_t *ne, qe_gguf_fill_fn fill,
                                         void *ctx)
{
    if (!fill)
        return qe_fail(QE_EINVAL, "gguf writer: tensor '%s' has no fill function",
                       name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx);
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (a - x % a) % a; }

/* Rows per fill call for tensor t (see QE_GGUF_FILL_CHUNK). */
static uint64_t chunk_rows(const struct wtensor *t)
{
    uint64_t n = t->row_bytes ? QE_GGUF_FILL_CHUNK / t->row_bytes : t->rows;
    return n ? n : 1;
}

/* Ask t's fill function for rows [r0, r0 + n) into dst. */
static qe_status fill_rows(const struct wtensor *t, uint64_t r0, uint64_t n, void *dst)
{
    qe_status s = t->fill(t->ctx, r0, n, dst);
    return s == QE_OK ? QE_OK : qe_fail_prefix(s, "gguf writer: tensor '%s'", t->name);
}

/* Header, kvs, tensor infos and the padding before the data section; assigns
 * tensor offsets. *data_bytes gets the size of the data section. */
static qe_status build_meta(qe_gguf_writer *w, struct buf *b, uint64_t *data_bytes)
{
    /* Every tensor, the last one included, is padded to the alignment, as
     * llama.cpp and gguf-py write it. */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (w->t[i].nbytes > UINT64_MAX - off - w->alignment)
            return qe_fail(QE_ERANGE, "gguf writer: data section overflows");
        off += w->t[i].nbytes;
        off += pad_to(off, w->alignment);
    }
    *data_bytes = off;
    put(b, "GGUF", 4);
    put_u32(b, w->version);
    put_u64(b, w->n_t);
    put_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(b, w->kv[i].key, strlen(w->kv[i].key));
        put(b, w->kv[i].val, w->kv[i].val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        put_str(b, t->name, strlen(t->name));
        put_u32(b, t->n_dims);
        for (uint32_t j = 0; j < t->n_dims; j++)
            put_u64(b, (uint64_t)t->ne[j]);
        put_u32(b, t->type);
        put_u64(b, t->offset);
    }
    put_zeros(b, (size_t)pad_to(b->len, w->alignment));
    if (b->oom)
        return qe_fail(QE_ENOMEM, "gguf writer: out of memory building the header");
    return QE_OK;
}

qe_status qe_gguf_writer_size(qe_gguf_writer *w, uint64_t *size)
{
    struct buf b = {0};
    uint64_t data_bytes;
    qe_status s = build_meta(w, &b, &data_bytes);
    if (s == QE_OK && data_bytes > UINT64_MAX - b.len)
        s = qe_fail(QE_ERANGE, "gguf writer: file size overflows");
    if (s == QE_OK)
        *size = b.len + data_bytes;
    free(b.p);
    return s;
}

qe_status qe_gguf_writer_write_mem(qe_gguf_writer *w, void **out, size_t *size)
{
    struct buf b = {0};
    uint64_t data_bytes;
    qe_status s = build_meta(w, &b, &data_bytes);
    if (s != QE_OK)
        goto done;
    for (size_t i = 0; i < w->n_t && !b.oom; i++) {
        const struct wtensor *t = &w->t[i];
        size_t start = b.len;
        if (t->data)
            put(&b, t->data, (size_t)t->nbytes);
        else
            put_zeros(&b, (size_t)t->nbytes);
        for (uint64_t r = 0, step = chunk_rows(t); t->fill && !b.oom && r < t->rows; r += step) {
            uint64_t n = t->rows - r < step ? t->rows - r : step;
            if ((s = fill_rows(t, r, n, b.p + start + r * t->row_bytes)) != QE_OK)
                goto done;
        }
        put_zeros(&b, (size_t)pad_to(b.len, w->alignment));
    }
    if (b.oom) {
        s = qe_fail(QE_ENOMEM, "gguf writer: out of memory for a %" PRIu64 "-byte file",
                    (uint64_t)b.len + data_bytes);
        goto done;
    }
    *out = b.p;
    *size = b.len;
    b.p = NULL;
done:
    free(b.p);
    return s;
}

static int write_all(FILE *f, const void *p, uint64_t n)
{
    static const uint8_t z[4096];
    if (p)
        return fwrite(p, 1, (size_t)n, f) == (size_t)n;
    while (n) { /* NULL: zeros */
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        if (fwrite(z, 1, k, f) != k)
            return 0;
        n -= k;
    }
    return 1;
}

/* Stream a fill tensor to f (the file being written for `path`) through the
 * chunk buffer *buf, grown as needed. */
static qe_status write_fill(const struct wtensor *t, FILE *f, const char *path, uint8_t **buf,
                            size_t *cap)
{
    uint64_t step = chunk_rows(t);
    if (step > t->rows)
        step = t->rows;
    uint64_t need = step * t->row_bytes;
    if (need > SIZE_MAX)
        return qe_fail(QE_ERANGE, "gguf writer: tensor '%s': rows too large", t->name);
    if (need > *cap) {
        uint8_t *p = realloc(*buf, (size_t)need);
        if (!p)
            return qe_fail(QE_ENOMEM, "gguf writer: out of memory for tensor '%s'", t->name);
        *buf = p;
        *cap = (size_t)need;
    }
    for (uint64_t r = 0; r < t->rows; r += step) {
        uint64_t n = t->rows - r < step ? t->rows - r : step;
        qe_status s = fill_rows(t, r, n, *buf);
        if (s != QE_OK)
            return s;
        if (!write_all(f, *buf, n * t->row_bytes))
            return qe_fail(QE_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return QE_OK;
}

qe_status qe_gguf_writer_write_file(qe_gguf_writer *w, const char *path)
{
    struct buf b = {0};
    uint64_t data_bytes, pos = 0;
    char *tmp = NULL;
    uint8_t *chunk = NULL;
    size_t chunk_cap = 0;
    FILE *f = NULL;
    int fd = -1, created = 0;
    qe_status s = build_meta(w, &b, &data_bytes);
    if (s != QE_OK)
        goto done;
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    if (!(tmp = malloc(n))) {
        s = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    if ((fd = mkstemp(tmp)) >= 0)
        created = 1;
    if (fd < 0 || !(f = fdopen(fd, "wb"))) {
        s = qe_fail(QE_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    fd = -1; /* now owned by f */
    pos = b.len;
    int ok = write_all(f, b.p, b.len);
    for (size_t i = 0; i < w->n_t && ok; i++) {
        const struct wtensor *t = &w->t[i];
        pos += t->nbytes;
        uint64_t pad = pad_to(pos, w->alignment);
        if (t->fill)
            ok = (s = write_fill(t, f, path, &chunk, &chunk_cap)) == QE_OK;
        else
            ok = write_all(f, t->data, t->nbytes);
        ok = ok && write_all(f, NULL, pad);
        pos += pad;
    }
    if (s != QE_OK)
        goto done;
    /* mkstemp makes the file 0600; a model file is meant to be shared. */
    ok = ok && fflush(f) == 0 && fchmod(fileno(f), 0644) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0)
        ok = 0;
    f = NULL;
    if (!ok || rename(tmp, path) != 0) {
        s = qe_fail(QE_EIO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
done:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (s != QE_OK && created)
        unlink(tmp);
    free(tmp);
    free(chunk);
    free(b.p);
    return s;
}
