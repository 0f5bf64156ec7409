/* tensor.h - a read-only 2-D view of one weight tensor, and the one place
 * that turns a row of any supported element type into floats.
 *
 * A qe_tensor does not own its bytes: they live in a model's file mapping
 * (or, for in-memory models built by tests, in the caller's buffers).
 * Shapes follow GGML: ne[0] is the row length (the input dimension of a
 * matrix-vector product), ne[1] the number of rows (the output dimension);
 * rows are stored one after another, each row_bytes long. A 1-D tensor has
 * ne[1] = 1. A PyTorch Linear weight of shape [out, in] is ne = {in, out}.
 *
 * Element types accepted today: F32, F16, BF16, and the GGML block types
 * lib/quant.h decodes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
 * Quantized GGML types plug into qe_tensor_row_f32 / qe_tensor_type_supported
 * and nowhere else.
 *
 * Data may be unaligned (safetensors does not align tensors): read it with
 * memcpy or the row helper, never through a cast float pointer.
 *
 * Threading: views are plain values; the functions are pure.
 */
#ifndef QE_TENSOR_H
#define QE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

typedef struct qe_tensor {
    const char *name;  /* tensor name in the file (for messages); owned by the model */
    qe_dtype type;     /* element type, GGML numbering */
    int64_t ne[2];     /* ne[0] = row length (input dim), ne[1] = rows (output dim) */
    const void *data;  /* first byte of row 0; NULL for an absent optional tensor */
    size_t row_bytes;  /* bytes of one row: qe_dtype_row_bytes(type, ne[0]) */
    size_t nbytes;     /* ne[1] * row_bytes */
} qe_tensor;

/* 1 if rows of type t can be converted to float by qe_tensor_row_f32. */
int qe_tensor_type_supported(qe_dtype t);

/* Fill *t as a view of `data` holding ne1 rows of ne0 elements of `type`.
 * `avail` is how many bytes are readable at data; QE_ECORRUPT (naming `name`,
 * the shape and the sizes) if the tensor needs more or a different amount
 * (exact = 1: nbytes must equal avail), QE_EUNSUPPORTED for a type without a
 * row converter, QE_ERANGE on overflow. `name` is borrowed, not copied. */
qe_status qe_tensor_view(qe_tensor *t, const char *name, qe_dtype type, int64_t ne0, int64_t ne1,
                         const void *data, uint64_t avail, int exact);

/* Convert row `row` (0 <= row < ne[1]) into dst[0 .. ne[0]-1]. The caller
 * guarantees a view made by qe_tensor_view (type supported, row in range);
 * anything else is a qeval bug and asserts. */
void qe_tensor_row_f32(const qe_tensor *t, int64_t row, float *dst);

#endif
