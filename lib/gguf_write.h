/* gguf_write.h - building GGUF files (v2 or v3) in memory or on disk.
 *
 * Usage: qe_gguf_writer_new, then any number of qe_gguf_writer_add_* calls
 * (metadata is written in the order added; tensors too), then
 * qe_gguf_writer_write_file or _write_mem (either may be called more than
 * once), then qe_gguf_writer_free. The layout written is the one lib/gguf.h
 * describes: header, kvs, tensor infos, padding to the alignment, then each
 * tensor's data at the next multiple of the alignment.
 *
 * The writer refuses (QE_EINVAL, message names the key or tensor) anything
 * that lib/gguf.c would reject: empty or duplicate keys, arrays of arrays,
 * bools other than 0/1, an alignment that is not a u32 power of two, tensor
 * names empty or of QE_GGUF_MAX_NAME bytes or more or duplicated, n_dims
 * outside 1..4, negative dimensions, unknown types, rows that are not whole
 * blocks. So every file it writes opens; tests corrupt its output byte by byte
 * to make invalid files.
 *
 * Values are given in host byte order and written little-endian. Tensor data
 * is raw bytes in GGML layout, written as is.
 *
 * Threading: a writer belongs to one thread at a time.
 */
#ifndef QE_GGUF_WRITE_H
#define QE_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

typedef struct qe_gguf_writer qe_gguf_writer;

/* A writer for GGUF `version` (2 or 3; the two share one layout). */
qe_status qe_gguf_writer_new(uint32_t version, qe_gguf_writer **out);
void qe_gguf_writer_free(qe_gguf_writer *w); /* NULL is fine */

/* Scalar metadata. `key` is copied. add_bool takes 0 or 1. */
qe_status qe_gguf_writer_add_u8(qe_gguf_writer *w, const char *key, uint8_t v);
qe_status qe_gguf_writer_add_i8(qe_gguf_writer *w, const char *key, int8_t v);
qe_status qe_gguf_writer_add_u16(qe_gguf_writer *w, const char *key, uint16_t v);
qe_status qe_gguf_writer_add_i16(qe_gguf_writer *w, const char *key, int16_t v);
qe_status qe_gguf_writer_add_u32(qe_gguf_writer *w, const char *key, uint32_t v);
qe_status qe_gguf_writer_add_i32(qe_gguf_writer *w, const char *key, int32_t v);
qe_status qe_gguf_writer_add_u64(qe_gguf_writer *w, const char *key, uint64_t v);
qe_status qe_gguf_writer_add_i64(qe_gguf_writer *w, const char *key, int64_t v);
qe_status qe_gguf_writer_add_f32(qe_gguf_writer *w, const char *key, float v);
qe_status qe_gguf_writer_add_f64(qe_gguf_writer *w, const char *key, double v);
qe_status qe_gguf_writer_add_bool(qe_gguf_writer *w, const char *key, int v);
/* A string value (copied); _strn takes n bytes that may include NULs. */
qe_status qe_gguf_writer_add_str(qe_gguf_writer *w, const char *key, const char *s);
qe_status qe_gguf_writer_add_strn(qe_gguf_writer *w, const char *key, const char *s, size_t n);

/* An array of n numeric or bool values of type `elem`, read from `vals` as
 * the matching C type (uint8_t for u8 and bool, int16_t for i16, float for
 * f32, double for f64, ...). Copied. */
qe_status qe_gguf_writer_add_arr(qe_gguf_writer *w, const char *key, qe_gguf_type elem,
                                 const void *vals, uint64_t n);
/* An array of n NUL-terminated strings (copied). */
qe_status qe_gguf_writer_add_arr_str(qe_gguf_writer *w, const char *key,
                                     const char *const *strs, uint64_t n);

/* Set general.alignment (a power of two): adds the u32 key, or changes its
 * value if already added. Adding "general.alignment" with add_u32 does the
 * same; any other type for that key is refused. Default 32. */
qe_status qe_gguf_writer_set_alignment(qe_gguf_writer *w, uint32_t alignment);

/* A tensor of `type` (qe_dtype) with n_dims dimensions ne[0..n_dims-1]
 * (ne[0] innermost). Its size follows from type and dims (lib/dtype.h).
 * `data` must hold exactly that many bytes and stay valid until the last
 * write call: it is referenced, not copied, so writing a large model needs no
 * second copy of it. NULL data writes zeros. */
qe_status qe_gguf_writer_add_tensor(qe_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data);

/* Streaming tensor sources, for files larger than memory. The writer asks
 * `fill` for the tensor's bytes while it writes, in runs of whole rows (a row
 * is ne[0] elements; a tensor has ne[1] * ne[2] * ne[3] rows): row0 = 0
 * first, each call continuing where the last stopped, n_rows >= 1, until
 * every row was produced. Each run holds at most
 * max(1, QE_GGUF_FILL_CHUNK / row_bytes) rows; fill must write exactly
 * n_rows * row_bytes bytes to dst (which is not aligned). A write call asks
 * for every row once, so a file written twice asks twice. A status other
 * than QE_OK stops the write: write_file leaves `path` untouched, write_mem
 * returns nothing, and the status comes back with the tensor's name added to
 * the message. */
#define QE_GGUF_FILL_CHUNK ((uint64_t)16 << 20)
typedef qe_status (*qe_gguf_fill_fn)(void *ctx, uint64_t row0, uint64_t n_rows, void *dst);

/* As qe_gguf_writer_add_tensor, with the bytes produced by fill(ctx, ...)
 * at write time (see above); ctx must stay valid until the last write call. */
qe_status qe_gguf_writer_add_tensor_fill(qe_gguf_writer *w, const char *name, uint32_t type,
                                         uint32_t n_dims, const int64_t *ne, qe_gguf_fill_fn fill,
                                         void *ctx);

/* The exact size in bytes of the file a write call would produce now,
 * without producing it. QE_ERANGE when it does not fit 64 bits, QE_ENOMEM. */
qe_status qe_gguf_writer_size(qe_gguf_writer *w, uint64_t *size);

/* The whole file into a malloc'ed buffer the caller frees. */
qe_status qe_gguf_writer_write_mem(qe_gguf_writer *w, void **out, size_t *size);
/* The whole file to `path`, atomically: written to a temporary file in the
 * same directory, flushed to disk, then renamed over `path`. On failure
 * `path` is untouched and the temporary file removed. QE_EIO names the path. */
qe_status qe_gguf_writer_write_file(qe_gguf_writer *w, const char *path);

#endif
