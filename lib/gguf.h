/* gguf.h - reading GGUF model files (v2 and v3), treated as hostile input.
 *
 * File layout (all little-endian):
 *   u32 magic "GGUF" (0x46554747) | u32 version (2 or 3)
 *   u64 n_tensors | u64 n_kv
 *   n_kv   x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | i64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (u32, power of two, default 32)
 *   tensor data: each tensor at data_start + offset, offset % alignment == 0
 * string = u64 length + bytes (no NUL). array = u32 elem_type + u64 n + elems;
 * arrays of arrays are rejected. ne[0] is the innermost (row) dimension.
 *
 * The file is mmap'ed read-only; tensor data pointers point into the map and
 * live until qe_gguf_close. As with any mapping, the file must not be
 * truncated while open (reads past the new end raise SIGBUS). Metadata strings are copied into NUL-terminated
 * storage owned by the handle. Every count is bounded by the bytes left, every
 * size computation is overflow-checked, and every rejection names the byte
 * offset and the rule broken (qe_errmsg()), returning QE_ECORRUPT
 * (QE_EUNSUPPORTED for an unknown version, QE_EIO if the file can't be read).
 * Messages read "NAME: offset N: <rule>", where N is the offset of the field
 * that broke the rule, and never contain a newline (bytes from the file are
 * escaped).
 *
 * Statuses, precisely:
 *   QE_EIO          the file cannot be opened, stat'ed or mapped, or is not a
 *                   regular file (a missing file is QE_EIO).
 *   QE_EUNSUPPORTED a GGUF qeval does not read: version 1 (32-bit counts),
 *                   versions above 3, byte-swapped (big-endian) files.
 *   QE_ECORRUPT     everything else: bad magic, version 0, counts or lengths
 *                   that cannot fit in the bytes left, empty keys, NUL bytes in
 *                   keys or tensor names, duplicate keys or tensor names,
 *                   invalid value types, arrays of arrays, bools other than 0/1,
 *                   general.alignment not a u32 power of two, empty tensor names
 *                   or names of QE_GGUF_MAX_NAME bytes or more, n_dims outside
 *                   1..4 (ggml accepts 0; no writer produces it and a 0-d
 *                   tensor has no row to check, so qeval rejects it), negative
 *                   dimensions, unknown tensor types (qe_dtype_known), ne[0] not
 *                   a multiple of the type's block size, element or byte counts
 *                   that overflow, tensor offsets not a multiple of the
 *                   alignment, tensor data past the end of the file or
 *                   overlapping another tensor's data.
 * Dimensions of 0 are accepted (ggml does too): such a tensor has no bytes.
 *
 * Threading: a handle is immutable after open; any number of threads may
 * read it concurrently.
 */
#ifndef QE_GGUF_H
#define QE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define QE_GGUF_MAGIC 0x46554747u /* "GGUF" read as little-endian u32 */
#define QE_GGUF_DEFAULT_ALIGNMENT 32u
#define QE_GGUF_MAX_NAME 64u /* GGML_MAX_NAME: tensor names must be shorter */
#define QE_GGUF_MAX_DIMS 4u

typedef struct qe_gguf qe_gguf;

typedef enum qe_gguf_type {
    QE_GGUF_UINT8 = 0,
    QE_GGUF_INT8 = 1,
    QE_GGUF_UINT16 = 2,
    QE_GGUF_INT16 = 3,
    QE_GGUF_UINT32 = 4,
    QE_GGUF_INT32 = 5,
    QE_GGUF_FLOAT32 = 6,
    QE_GGUF_BOOL = 7,
    QE_GGUF_STRING = 8,
    QE_GGUF_ARRAY = 9,
    QE_GGUF_UINT64 = 10,
    QE_GGUF_INT64 = 11,
    QE_GGUF_FLOAT64 = 12,
    QE_GGUF_TYPE_COUNT
} qe_gguf_type;

typedef struct qe_gguf_tensor {
    const char *name;  /* NUL-terminated, < QE_GGUF_MAX_NAME bytes */
    uint32_t n_dims;   /* 1..4 */
    int64_t ne[4];     /* elements per dimension, ne[0] innermost; unused = 1 */
    uint32_t type;     /* qe_dtype (GGML numbering) */
    uint64_t offset;   /* from the start of the data section */
    uint64_t nbytes;   /* exact size of the tensor's data */
    uint64_t n_elems;  /* product of ne */
    const void *data;  /* into the mapping: file start + data_offset + offset */
} qe_gguf_tensor;

/* Open and validate a file. On success *out owns the mapping. */
qe_status qe_gguf_open(const char *path, qe_gguf **out);
/* Same checks over a caller's buffer (copied; used by tests and the fuzzer).
 * `name` is used in messages. */
qe_status qe_gguf_open_mem(const void *data, size_t size, const char *name, qe_gguf **out);
void qe_gguf_close(qe_gguf *g); /* NULL is fine */

const char *qe_gguf_path(const qe_gguf *g);
uint32_t qe_gguf_version(const qe_gguf *g);
uint32_t qe_gguf_alignment(const qe_gguf *g);
/* Byte offset of the data section: the end of the tensor infos rounded up to
 * the alignment, or the file size for a file with no tensors that ends
 * without that padding (llama.cpp's vocab-only files do). */
uint64_t qe_gguf_data_offset(const qe_gguf *g);
uint64_t qe_gguf_file_size(const qe_gguf *g);
const void *qe_gguf_base(const qe_gguf *g);      /* start of the whole file image */

/* ---- metadata ---- */
/* Index-based accessors return NULL / QE_GGUF_TYPE_COUNT / 0 for i >= n_kv. */
uint64_t qe_gguf_n_kv(const qe_gguf *g);
const char *qe_gguf_kv_key(const qe_gguf *g, uint64_t i);
qe_gguf_type qe_gguf_kv_type(const qe_gguf *g, uint64_t i);
/* For arrays: element type and count (0/QE_GGUF_TYPE_COUNT for non-arrays). */
qe_gguf_type qe_gguf_kv_arr_type(const qe_gguf *g, uint64_t i);
uint64_t qe_gguf_kv_arr_len(const qe_gguf *g, uint64_t i);
/* Index of key, or -1. */
int64_t qe_gguf_find_key(const qe_gguf *g, const char *key);
const char *qe_gguf_type_name(qe_gguf_type t); /* "u32", "string", "array", ... */

/* Typed getters. QE_ENOTFOUND if the key is absent; QE_ECORRUPT naming the key,
 * the expected and the actual type on a mismatch. Integer getters accept any
 * integer type whose value fits the requested one (files disagree on i32 vs
 * u32); the float getter accepts f32 and f64. */
qe_status qe_gguf_get_u32(const qe_gguf *g, const char *key, uint32_t *out);
qe_status qe_gguf_get_i32(const qe_gguf *g, const char *key, int32_t *out);
qe_status qe_gguf_get_u64(const qe_gguf *g, const char *key, uint64_t *out);
qe_status qe_gguf_get_f32(const qe_gguf *g, const char *key, float *out);
qe_status qe_gguf_get_bool(const qe_gguf *g, const char *key, int *out);
/* String: NUL-terminated copy owned by the handle; *len may be NULL. */
qe_status qe_gguf_get_str(const qe_gguf *g, const char *key, const char **out, size_t *len);

/* Arrays. get_arr gives element type and count (QE_ECORRUPT if the key is not
 * an array). The element getters check the element type like the scalar
 * getters do, and i < n (QE_ERANGE otherwise). get_arr_f32/_i32 fail with
 * QE_ECORRUPT if the array does not hold exactly n elements, or an element
 * does not fit. */
qe_status qe_gguf_get_arr(const qe_gguf *g, const char *key, qe_gguf_type *elem, uint64_t *n);
qe_status qe_gguf_get_arr_str(const qe_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len);
/* Whole numeric arrays converted into caller memory of exactly n elements. */
qe_status qe_gguf_get_arr_f32(const qe_gguf *g, const char *key, float *dst, uint64_t n);
qe_status qe_gguf_get_arr_i32(const qe_gguf *g, const char *key, int32_t *dst, uint64_t n);

/* Value of any scalar kv (or a short array summary) as text, for `inspect`.
 * Writes at most cap bytes including the NUL. Strings are quoted with
 * control bytes escaped; arrays show their type, length and first six values:
 * "[u32 x 512] 1, 2, 3, 4, 5, 6, ... (506 more)". */
void qe_gguf_kv_format(const qe_gguf *g, uint64_t i, char *buf, size_t cap);

/* One decoded value of kv i: the scalar itself (j == 0) or element j of an
 * array. Exactly one of u / i / f / s is meaningful, chosen by type. */
typedef struct qe_gguf_value {
    qe_gguf_type type; /* scalar or element type, never QE_GGUF_ARRAY */
    uint64_t u;        /* u8, u16, u32, u64, bool (0 or 1) */
    int64_t i;         /* i8, i16, i32, i64 */
    double f;          /* f32, f64 */
    const char *s;     /* string: NUL-terminated, owned by the handle; may hold NULs */
    size_t len;        /* string length in bytes */
} qe_gguf_value;
/* QE_ERANGE if i >= n_kv, or j is past the array (j != 0 for a scalar). */
qe_status qe_gguf_kv_value(const qe_gguf *g, uint64_t i, uint64_t j, qe_gguf_value *out);

/* ---- tensors ---- */
uint64_t qe_gguf_n_tensors(const qe_gguf *g);
const qe_gguf_tensor *qe_gguf_tensor_at(const qe_gguf *g, uint64_t i);
const qe_gguf_tensor *qe_gguf_find_tensor(const qe_gguf *g, const char *name); /* NULL if absent */

#endif
