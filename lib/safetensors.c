/* safetensors.c - validating reader for .safetensors files (format and rules
 * in safetensors.h). The JSON header is parsed by jansson; everything after
 * that is bounds and overflow arithmetic on the numbers it yields.
 * Threading: handles are immutable after open. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"

struct qe_safetensors {
    char *path;
    const uint8_t *base; /* file image */
    uint64_t size;
    int mapped;          /* 1: base is an mmap, else malloc'ed */
    uint64_t data_off;   /* 8 + header length */
    json_t *root;        /* owns the tensor names and metadata strings */
    qe_safetensors_tensor *t;
    uint64_t n;
};

static const struct {
    const char *name;
    uint32_t size;
    int ggml;
} dtypes[QE_ST_DTYPE_COUNT] = {
    [QE_ST_BOOL] = {"BOOL", 1, -1},        [QE_ST_U8] = {"U8", 1, -1},
    [QE_ST_I8] = {"I8", 1, QE_DT_I8},      [QE_ST_F8_E5M2] = {"F8_E5M2", 1, -1},
    [QE_ST_F8_E4M3] = {"F8_E4M3", 1, -1},  [QE_ST_I16] = {"I16", 2, QE_DT_I16},
    [QE_ST_U16] = {"U16", 2, -1},          [QE_ST_F16] = {"F16", 2, QE_DT_F16},
    [QE_ST_BF16] = {"BF16", 2, QE_DT_BF16}, [QE_ST_I32] = {"I32", 4, QE_DT_I32},
    [QE_ST_U32] = {"U32", 4, -1},          [QE_ST_F32] = {"F32", 4, QE_DT_F32},
    [QE_ST_F64] = {"F64", 8, QE_DT_F64},   [QE_ST_I64] = {"I64", 8, QE_DT_I64},
    [QE_ST_U64] = {"U64", 8, -1},
};

const char *qe_safetensors_dtype_name(qe_st_dtype t)
{
    return (unsigned)t < QE_ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

uint32_t qe_safetensors_dtype_size(qe_st_dtype t)
{
    return (unsigned)t < QE_ST_DTYPE_COUNT ? dtypes[t].size : 0;
}

int qe_safetensors_dtype_ggml(qe_st_dtype t)
{
    return (unsigned)t < QE_ST_DTYPE_COUNT ? dtypes[t].ggml : -1;
}

/* A JSON number that is a non-negative integer, else -1. */
static int64_t json_nonneg(const json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    return (int64_t)json_integer_value(v);
}

/* Parse one tensor entry `v` named `name` into *t (offsets still relative). */
static qe_status parse_tensor(const char *file, const char *name, json_t *v, uint64_t data_len,
                              qe_safetensors_tensor *t)
{
    if (!*name)
        return qe_fail(QE_ECORRUPT, "%s: header: a tensor has an empty name", file);
    if (!json_is_object(v))
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': expected an object", file, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': \"dtype\" missing or not a string",
                       file, name);
    int found = -1;
    for (int i = 0; i < QE_ST_DTYPE_COUNT; i++)
        if (strcmp(json_string_value(dt), dtypes[i].name) == 0)
            found = i;
    if (found < 0)
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': unknown dtype \"%s\"", file, name,
                       json_string_value(dt));
    if (!json_is_array(shape))
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': \"shape\" missing or not an array",
                       file, name);
    if (json_array_size(shape) > QE_SAFETENSORS_MAX_DIMS)
        return qe_fail(QE_EUNSUPPORTED, "%s: header: tensor '%s': %zu dimensions, at most %d supported",
                       file, name, json_array_size(shape), QE_SAFETENSORS_MAX_DIMS);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return qe_fail(QE_ECORRUPT,
                       "%s: header: tensor '%s': \"data_offsets\" must be an array [begin, end]", file,
                       name);
    t->name = name;
    t->dtype = (qe_st_dtype)found;
    t->n_dims = (uint32_t)json_array_size(shape);
    t->n_elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        int64_t e = json_nonneg(json_array_get(shape, d));
        if (e < 0)
            return qe_fail(QE_ECORRUPT,
                           "%s: header: tensor '%s': shape[%u] is not a non-negative integer", file,
                           name, d);
        t->shape[d] = e;
        if (e != 0 && t->n_elems > UINT64_MAX / (uint64_t)e)
            return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': element count overflows 64 bits",
                           file, name);
        t->n_elems *= (uint64_t)e;
    }
    for (uint32_t d = t->n_dims; d < QE_SAFETENSORS_MAX_DIMS; d++)
        t->shape[d] = 1;
    int64_t b = json_nonneg(json_array_get(offs, 0)), e = json_nonneg(json_array_get(offs, 1));
    if (b < 0 || e < 0)
        return qe_fail(QE_ECORRUPT,
                       "%s: header: tensor '%s': data_offsets must be non-negative integers", file,
                       name);
    if (b > e)
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': data_offsets begin %lld > end %lld",
                       file, name, (long long)b, (long long)e);
    if ((uint64_t)e > data_len)
        return qe_fail(QE_ECORRUPT,
                       "%s: header: tensor '%s': data_offsets end %lld is past the data section "
                       "(%llu bytes)",
                       file, name, (long long)e, (unsigned long long)data_len);
    uint32_t es = dtypes[found].size;
    if (t->n_elems > UINT64_MAX / es)
        return qe_fail(QE_ECORRUPT, "%s: header: tensor '%s': byte size overflows 64 bits", file,
                       name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    t->nbytes = t->end - t->begin;
    if (t->n_elems * es != t->nbytes)
        return qe_fail(QE_ECORRUPT,
                       "%s: header: tensor '%s': shape holds %llu elements of %s (%llu bytes) but "
                       "data_offsets span %llu bytes",
                       file, name, (unsigned long long)t->n_elems, dtypes[found].name,
                       (unsigned long long)(t->n_elems * es), (unsigned long long)t->nbytes);
    return QE_OK;
}

static int by_offset(const void *a, const void *b)
{
    const qe_safetensors_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Validate st->base[0 .. size) and fill the tensor table. */
static qe_status parse(qe_safetensors *st)
{
    const char *file = st->path;
    if (st->size < 8)
        return qe_fail(QE_ECORRUPT, "%s: offset 0: file is %llu bytes, expected at least 8 (header length)",
                       file, (unsigned long long)st->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | st->base[i];
    if (n > QE_SAFETENSORS_MAX_HEADER)
        return qe_fail(QE_ECORRUPT, "%s: offset 0: header length %llu exceeds the %u-byte limit",
                       file, (unsigned long long)n, QE_SAFETENSORS_MAX_HEADER);
    if (n > st->size - 8)
        return qe_fail(QE_ECORRUPT,
                       "%s: offset 0: header length %llu exceeds the %llu bytes after it", file,
                       (unsigned long long)n, (unsigned long long)(st->size - 8));
    if (n < 2 || st->base[8] != '{')
        return qe_fail(QE_ECORRUPT, "%s: offset 8: header must be a JSON object starting with '{'",
                       file);
    json_error_t err;
    st->root = json_loadb((const char *)st->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!st->root)
        return qe_fail(QE_ECORRUPT, "%s: offset %llu (header line %d column %d): invalid JSON header: %s",
                       file, (unsigned long long)(8 + (err.position > 0 ? err.position : 0)),
                       err.line, err.column, err.text);
    if (!json_is_object(st->root))
        return qe_fail(QE_ECORRUPT, "%s: offset 8: header must be a JSON object", file);
    st->data_off = 8 + n;
    uint64_t data_len = st->size - st->data_off;

    size_t cap = json_object_size(st->root);
    st->t = calloc(cap ? cap : 1, sizeof *st->t);
    if (!st->t)
        return qe_fail(QE_ENOMEM, "%s: out of memory for %zu tensor entries", file, cap);
    const char *key;
    json_t *v;
    json_object_foreach(st->root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v))
                return qe_fail(QE_ECORRUPT, "%s: header: \"__metadata__\" must be an object", file);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv)
            {
                if (!json_is_string(mv))
                    return qe_fail(QE_ECORRUPT,
                                   "%s: header: __metadata__ \"%s\": value must be a string", file,
                                   mk);
            }
            continue;
        }
        qe_status s = parse_tensor(file, key, v, data_len, &st->t[st->n]);
        if (s != QE_OK)
            return s;
        st->n++;
    }

    /* Overlaps, holes and trailing bytes, in offset order. An empty tensor
     * owns no bytes but, as in the reference implementation (each tensor
     * begins where the one before it in offset order ends), sits between two
     * tensors, not inside one. */
    qsort(st->t, st->n, sizeof *st->t, by_offset);
    uint64_t covered = 0;
    const char *prev = NULL;
    for (uint64_t i = 0; i < st->n; i++) {
        qe_safetensors_tensor *t = &st->t[i];
        t->data = st->base + st->data_off + t->begin;
        if (t->begin < covered)
            return qe_fail(QE_ECORRUPT,
                           "%s: offset %llu: tensor '%s' (data_offsets [%llu, %llu]) overlaps "
                           "tensor '%s'",
                           file, (unsigned long long)(st->data_off + t->begin), t->name,
                           (unsigned long long)t->begin, (unsigned long long)t->end, prev);
        if (t->begin > covered)
            return qe_fail(QE_ECORRUPT,
                           "%s: offset %llu: data bytes [%llu, %llu) belong to no tensor (the "
                           "format forbids holes)",
                           file, (unsigned long long)(st->data_off + covered),
                           (unsigned long long)covered, (unsigned long long)t->begin);
        covered = t->end;
        prev = t->name;
    }
    if (covered != data_len)
        return qe_fail(QE_ECORRUPT,
                       "%s: offset %llu: %llu trailing bytes after the last tensor's data", file,
                       (unsigned long long)(st->data_off + covered),
                       (unsigned long long)(data_len - covered));
    return QE_OK;
}

qe_status qe_safetensors_open(const char *path, qe_safetensors **out)
{
    *out = NULL;
    qe_status s = QE_OK;
    int fd = -1;
    qe_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        s = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s = qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = qe_fail(QE_EIO, "%s: not a readable regular file", path);
        goto done;
    }
    st->size = (uint64_t)sb.st_size;
    if (st->size >= 8) { /* smaller files fail in parse() with a clear message */
        void *p = mmap(NULL, (size_t)st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            s = qe_fail(QE_EIO, "%s: mmap of %llu bytes failed: %s", path,
                        (unsigned long long)st->size, strerror(errno));
            goto done;
        }
        st->base = p;
        st->mapped = 1;
    }
    s = parse(st);
done:
    if (fd >= 0)
        close(fd);
    if (s != QE_OK)
        qe_safetensors_close(st);
    else
        *out = st;
    return s;
}

qe_status qe_safetensors_open_mem(const void *data, size_t size, const char *name,
                                  qe_safetensors **out)
{
    *out = NULL;
    qe_status s = QE_OK;
    qe_safetensors *st = calloc(1, sizeof *st);
    uint8_t *copy = NULL;
    if (!st || !(st->path = strdup(name)) || !(copy = malloc(size ? size : 1))) {
        s = qe_fail(QE_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    if (size)
        memcpy(copy, data, size);
    st->base = copy;
    st->size = size;
    s = parse(st);
done:
    if (s != QE_OK)
        qe_safetensors_close(st);
    else
        *out = st;
    return s;
}

void qe_safetensors_close(qe_safetensors *st)
{
    if (!st)
        return;
    if (st->mapped)
        munmap((void *)st->base, (size_t)st->size);
    else
        free((void *)st->base);
    json_decref(st->root);
    free(st->t);
    free(st->path);
    free(st);
}

const char *qe_safetensors_path(const qe_safetensors *st) { return st->path; }
uint64_t qe_safetensors_file_size(const qe_safetensors *st) { return st->size; }
uint64_t qe_safetensors_data_offset(const qe_safetensors *st) { return st->data_off; }
const void *qe_safetensors_base(const qe_safetensors *st) { return st->base; }
uint64_t qe_safetensors_n_tensors(const qe_safetensors *st) { return st->n; }

const qe_safetensors_tensor *qe_safetensors_tensor_at(const qe_safetensors *st, uint64_t i)
{
    return i < st->n ? &st->t[i] : NULL;
}

const qe_safetensors_tensor *qe_safetensors_find(const qe_safetensors *st, const char *name)
{
    for (uint64_t i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0)
            return &st->t[i];
    return NULL;
}

const char *qe_safetensors_meta(const qe_safetensors *st, const char *key)
{
    json_t *m = json_object_get(st->root, "__metadata__");
    json_t *v = m ? json_object_get(m, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}
