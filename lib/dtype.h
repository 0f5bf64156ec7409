/* dtype.h - GGML tensor element types: numbering, block shapes, sizes.
 *
 * Numbering is GGML's (ggml.h `enum ggml_type`), so values read from a GGUF
 * tensor-info record index this table directly. A "block" is the smallest
 * unit a type can be split at: 1 element for plain floats, 32 for Q4_0/Q8_0,
 * 256 for the K-quants. A row of n elements needs n % block == 0 and takes
 * n / block * block_bytes bytes.
 *
 * Also the scalar half/bfloat conversions every module needs.
 */
#ifndef QE_DTYPE_H
#define QE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum qe_dtype {
    QE_DT_F32 = 0,
    QE_DT_F16 = 1,
    QE_DT_Q4_0 = 2,
    QE_DT_Q4_1 = 3,
    QE_DT_Q5_0 = 6,
    QE_DT_Q5_1 = 7,
    QE_DT_Q8_0 = 8,
    QE_DT_Q8_1 = 9,
    QE_DT_Q2_K = 10,
    QE_DT_Q3_K = 11,
    QE_DT_Q4_K = 12,
    QE_DT_Q5_K = 13,
    QE_DT_Q6_K = 14,
    QE_DT_Q8_K = 15,
    QE_DT_I8 = 24,
    QE_DT_I16 = 25,
    QE_DT_I32 = 26,
    QE_DT_I64 = 27,
    QE_DT_F64 = 28,
    QE_DT_BF16 = 30,
    QE_DT_MAX = 40 /* one past the largest value this table may ever hold */
} qe_dtype;

/* 1 if t is a type qeval knows the layout of, else 0 (any uint32 is safe). */
int qe_dtype_known(uint32_t t);

/* "f32", "q4_0", ... (lower case, as users type them); "?" if unknown. */
const char *qe_dtype_name(uint32_t t);

/* Parse a name (case-insensitive); QE_EINVAL if no such type. */
qe_status qe_dtype_from_name(const char *name, qe_dtype *out);

/* Elements per block and bytes per block; 0 for unknown types. */
uint32_t qe_dtype_block(uint32_t t);
uint32_t qe_dtype_block_bytes(uint32_t t);

/* Bytes of a row of n elements of type t. QE_ECORRUPT if n is negative or not
 * a multiple of the block size, QE_EUNSUPPORTED if t is unknown, QE_ERANGE on
 * overflow. Messages name the type and n; callers add context. */
qe_status qe_dtype_row_bytes(uint32_t t, int64_t n, uint64_t *out);

/* Bits per weight (block_bytes * 8 / block), 0 for unknown types. */
double qe_dtype_bpw(uint32_t t);

/* IEEE half and bfloat16 <-> float; round-to-nearest-even, NaN/Inf kept. */
float qe_f16_to_f32(uint16_t h);
uint16_t qe_f32_to_f16(float f);
float qe_bf16_to_f32(uint16_t b);
uint16_t qe_f32_to_bf16(float f);

#endif
