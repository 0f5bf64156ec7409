/* kv_format.h - element formats of the KV cache, and their CPU codecs.
 *
 * The cache holds, for each layer and position, one K row and one V row of
 * n_kv_heads * head_dim values (K after RoPE). A format encodes such a row:
 *
 *   name   encoding of one row                                bytes per row
 *   f32    plain floats                                       4 n
 *   f16    IEEE half, round to nearest even                   2 n
 *   q8_0   GGML Q8_0 blocks of 32 along the row (lib/quant.h) 34 n / 32
 *   q4_0   GGML Q4_0 blocks of 32 along the row               18 n / 32
 *   tq4    TurboQuant, 4 bits, one vector per head            n_kv_heads * (2 + head_dim / 2)
 *   tq3    TurboQuant, 3 bits, one vector per head            n_kv_heads * (2 + 3 head_dim / 8)
 *   tq2    TurboQuant, 2 bits, one vector per head            n_kv_heads * (2 + head_dim / 4)
 * (n = n_kv_heads * head_dim.) Heads are stored one after another.
 *
 * Q8_0/Q4_0 run their blocks along the whole row, as llama.cpp's quantized
 * cache does; whenever head_dim is a multiple of 32 (every real model) that
 * is the same as blocks over each head. They need n to be a multiple of 32.
 * TurboQuant works per head vector (the rotation mixes one head's
 * coordinates), with seed QE_TURBOQUANT_SEED; it needs head_dim to be a
 * power of two in 8..1024 (lib/turboquant.h has the layout).
 *
 * Threading: pure functions, safe from any thread.
 */
#ifndef QE_KV_FORMAT_H
#define QE_KV_FORMAT_H

#include <stddef.h>

#include "status.h"

typedef enum qe_kv_format {
    QE_KV_F32 = 0,
    QE_KV_F16,
    QE_KV_Q8_0,
    QE_KV_Q4_0,
    QE_KV_TQ4,
    QE_KV_TQ3,
    QE_KV_TQ2,
    QE_KV_FORMAT_COUNT
} qe_kv_format;

/* "f32", "f16", "q8_0", "q4_0", "tq4", "tq3", "tq2"; "?" for other values. */
const char *qe_kv_format_name(qe_kv_format f);

/* Parse a name (case-insensitive). QE_EINVAL naming the string and listing
 * the valid names if it is none of them. */
qe_status qe_kv_format_parse(const char *name, qe_kv_format *out);

/* 1 for the TurboQuant formats (one encoded vector per head), else 0. */
int qe_kv_format_per_head(qe_kv_format f);

/* Bytes of one encoded row of n_heads x head_dim values. QE_EINVAL for a
 * format outside the enum or n_heads/head_dim < 1; QE_EUNSUPPORTED (naming
 * the format and the sizes) when the sizes do not fit the format: a row
 * length that is not a multiple of 32 for q8_0/q4_0, a head_dim that is not
 * a power of two in 8..1024 for tq*; QE_ERANGE on overflow. */
qe_status qe_kv_format_row_bytes(qe_kv_format f, int n_heads, int head_dim, size_t *out);

/* Encode x[0 .. n_heads*head_dim - 1] into dst (row_bytes bytes). The caller
 * guarantees qe_kv_format_row_bytes succeeded for these sizes. */
void qe_kv_format_quantize_row(qe_kv_format f, const float *x, int n_heads, int head_dim,
                               void *dst);

/* Decode one row into y[0 .. n_heads*head_dim - 1] (natural basis). */
void qe_kv_format_dequantize_row(qe_kv_format f, const void *src, int n_heads, int head_dim,
                                 float *y);

#endif
