/* safetensors.h - reading Hugging Face .safetensors files, treated as hostile.
 *
 * File layout:
 *   u64 N (little-endian)   length of the JSON header
 *   N bytes of JSON         an object: one member per tensor,
 *                             "name": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                      "data_offsets": [begin, end]}
 *                           plus an optional "__metadata__": {"key": "value", ...}
 *                           (string values only). Spaces may pad the header.
 *   data section            the rest of the file; a tensor's bytes are
 *                           data[begin .. end), row-major, shape[0] outermost.
 *
 * Validation (each failure is QE_ECORRUPT and names the file, the tensor or
 * the byte offset, and the rule): the header length fits the file (and at
 * most 100 MB, the reference implementation's limit); the header is valid
 * UTF-8 JSON, an object, without duplicate keys; every tensor has a known
 * dtype, a shape of non-negative integers and two data offsets
 * 0 <= begin <= end <= data section size; prod(shape) * dtype size equals
 * end - begin without overflow; tensors do not overlap (an empty one sits
 * between two others, not inside one), and - as the format requires, to
 * prevent polyglot files - together cover the data section with no hole or
 * trailing byte. More than QE_SAFETENSORS_MAX_DIMS dimensions is
 * QE_EUNSUPPORTED. Unknown members inside a tensor entry are ignored.
 *
 * The file is mmap'ed read-only; data pointers live until close. Tensor data
 * is not aligned by the format: read it with memcpy.
 *
 * Threading: a handle is immutable after open; concurrent readers are fine.
 */
#ifndef QE_SAFETENSORS_H
#define QE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define QE_SAFETENSORS_MAX_DIMS 8
#define QE_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)

typedef struct qe_safetensors qe_safetensors;

typedef enum qe_st_dtype {
    QE_ST_BOOL = 0,
    QE_ST_U8,
    QE_ST_I8,
    QE_ST_F8_E5M2,
    QE_ST_F8_E4M3,
    QE_ST_I16,
    QE_ST_U16,
    QE_ST_F16,
    QE_ST_BF16,
    QE_ST_I32,
    QE_ST_U32,
    QE_ST_F32,
    QE_ST_F64,
    QE_ST_I64,
    QE_ST_U64,
    QE_ST_DTYPE_COUNT
} qe_st_dtype;

typedef struct qe_safetensors_tensor {
    const char *name;      /* NUL-terminated, non-empty */
    qe_st_dtype dtype;
    uint32_t n_dims;       /* 0 (a scalar) .. QE_SAFETENSORS_MAX_DIMS */
    int64_t shape[QE_SAFETENSORS_MAX_DIMS]; /* as in the file: shape[0] outermost */
    uint64_t n_elems;      /* product of shape (1 for a scalar) */
    uint64_t begin, end;   /* data_offsets, relative to the data section */
    uint64_t nbytes;       /* end - begin */
    const void *data;      /* file start + data_offset + begin */
} qe_safetensors_tensor;

/* Open and validate a file; *out owns the mapping. QE_EIO if unreadable. */
qe_status qe_safetensors_open(const char *path, qe_safetensors **out);
/* Same checks over a copy of a caller's buffer; `name` is used in messages. */
qe_status qe_safetensors_open_mem(const void *data, size_t size, const char *name,
                                  qe_safetensors **out);
void qe_safetensors_close(qe_safetensors *st); /* NULL is fine */

const char *qe_safetensors_path(const qe_safetensors *st);
uint64_t qe_safetensors_file_size(const qe_safetensors *st);
uint64_t qe_safetensors_data_offset(const qe_safetensors *st); /* 8 + N */
const void *qe_safetensors_base(const qe_safetensors *st);      /* the whole file image */

/* Tensors in data-offset order. */
uint64_t qe_safetensors_n_tensors(const qe_safetensors *st);
const qe_safetensors_tensor *qe_safetensors_tensor_at(const qe_safetensors *st, uint64_t i);
const qe_safetensors_tensor *qe_safetensors_find(const qe_safetensors *st, const char *name);

/* __metadata__ value for key, or NULL. */
const char *qe_safetensors_meta(const qe_safetensors *st, const char *key);

/* "F32", ...; "?" out of range. */
const char *qe_safetensors_dtype_name(qe_st_dtype t);
/* Bytes per element (1 for BOOL and F8), 0 out of range. */
uint32_t qe_safetensors_dtype_size(qe_st_dtype t);
/* The GGML type with the same element encoding (F32, F16, BF16, F64, I8..I64),
 * or -1 when GGML has none (BOOL, U*, F8). */
int qe_safetensors_dtype_ggml(qe_st_dtype t);

#endif
