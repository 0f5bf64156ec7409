/* quant.h - GGML weight formats on the CPU: row codecs bit-compatible with
 * llama.cpp files, and requantization of a whole model at load.
 *
 * Block layouts (little-endian; f16 = IEEE half; "element j" counts from the
 * first element of the block):
 *   Q8_0  32 elements, 34 bytes: f16 d | int8 qs[32].        x_j = qs[j] * d
 *   Q4_0  32 elements, 18 bytes: f16 d | u8 qs[16].
 *         qs[j] low nibble = element j, high nibble = element j + 16;
 *         x = (q - 8) * d
 *   Q4_1  32 elements, 20 bytes: f16 d | f16 m | u8 qs[16] (nibbles as Q4_0);
 *         x = q * d + m
 *   Q5_0  32 elements, 22 bytes: f16 d | u8 qh[4] | u8 qs[16]; q = nibble |
 *         (bit j of the u32 qh) << 4 for element j (bit j + 16 for j + 16);
 *         x = (q - 16) * d
 *   Q5_1  32 elements, 24 bytes: f16 d | f16 m | u8 qh[4] | u8 qs[16];
 *         x = q * d + m
 *   Q4_K  256 elements, 144 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qs[128].
 *         Eight sub-blocks of 32 with 6-bit scale sc and min m packed in
 *         scales[] (ggml's get_scale_min_k4: sub-block j < 4: sc = s[j] & 63,
 *         m = s[j+4] & 63; j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
 *         m = (s[j+4] >> 4) | (s[j] >> 6) << 4). Element 64r + l (l < 32)
 *         is the low nibble of qs[32r + l] (sub-block 2r), element 64r + 32 + l
 *         its high nibble (sub-block 2r + 1); x = (d*sc) * q - (dmin*m)
 *   Q5_K  256 elements, 176 bytes: f16 d | f16 dmin | u8 scales[12] |
 *         u8 qh[32] | u8 qs[128]; as Q4_K plus a fifth bit: element 32j + l
 *         (sub-block j) adds 16 when bit j of qh[l] is set
 *   Q6_K  256 elements, 210 bytes: u8 ql[128] | u8 qh[64] | int8 scales[16] |
 *         f16 d. Element 128h + 32g + l (h < 2, g < 4, l < 32): low 4 bits
 *         from ql[64h + l + 32(g & 1)] (low nibble for g < 2, high for
 *         g >= 2), high 2 bits from bits 2g..2g+1 of qh[32h + l], scale
 *         scales[8h + l/16 + 2g]; x = (d * scale) * (q - 32)
 *
 * Quantization (F32, F16, Q8_0, Q4_0) follows ggml's quantize_row_*_ref
 * exactly, so Q8_0/Q4_0 blocks match llama-quantize's byte for byte (without an
 * importance matrix):
 *   Q8_0: amax = max |x|, d = amax / 127, id = d ? 1/d : 0,
 *         qs = roundf(x * id), d stored as f16 (round to nearest even).
 *   Q4_0: max = the signed x of largest magnitude (the first one on ties),
 *         d = max / -8, id = d ? 1/d : 0, q = min(15, (int)(x * id + 8.5)).
 *   All in float, no fused multiply-add (a device kernel must compute the same
 *   float expressions in the same order to match bit for bit; OpenCL C may
 *   contract x * id + 8.5f into an fma unless FP_CONTRACT is OFF). The
 *   unfused form is what ggml's C says under ISO C and what llama.cpp's
 *   gguf-py computes; a llama-quantize built to contract it (-march=native
 *   with FMA) can differ on the rare x * id + 8.5 that rounds onto an
 *   integer. One more corner: ggml writes an all-zero Q4_0 block's scale as
 *   -0 (f16 0x8000, from 0 / -8); qeval does the same.
 * Non-finite input: a Q8_0/Q4_0 block holding NaN or +-Inf is written with
 * d = NaN (f16 0x7e00) and all quants 0, so it decodes to NaN in all 32
 * places: the damage stays visible and confined to that block. (ggml's
 * reference converts NaN to an integer there, which C leaves undefined.)
 *
 * Requantization (qe_quant_model_new) converts the 2-D weight matrices of a
 * model to a target type chosen by qe_quant_weight_type; see its comment for
 * the rule and why.
 *
 * Threading: row codecs are pure; a qe_quant_model is immutable after
 * creation and may be read from any number of threads; creating one runs
 * threads of its own (qe_quant_model_new_threads).
 */
#ifndef QE_QUANT_H
#define QE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model.h"
#include "status.h"

/* ---- row codecs ---- */

/* 1 if qe_quant_quantize_row can write type t: F32, F16, Q8_0, Q4_0. */
int qe_quant_can_quantize(qe_dtype t);
/* 1 if qe_quant_dequantize_row can read type t: F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K. */
int qe_quant_can_dequantize(qe_dtype t);

/* QE_OK if a row of n elements of t can be quantized (quantize = 1) or
 * dequantized (quantize = 0); else QE_EUNSUPPORTED naming the type, or
 * QE_EINVAL when n < 1 or is not a multiple of the type's block size. */
qe_status qe_quant_check_row(qe_dtype t, int64_t n, int quantize);

/* Encode x[0 .. n-1] as one row of type t into dst (qe_dtype_row_bytes(t, n)
 * bytes). The caller guarantees qe_quant_check_row(t, n, 1) == QE_OK; other
 * arguments are qeval bugs and assert. */
void qe_quant_quantize_row(qe_dtype t, const float *x, int64_t n, void *dst);

/* Decode one row of n elements of type t at src (any alignment) into
 * y[0 .. n-1], exactly as ggml's dequantize_row_* does. The caller guarantees
 * qe_quant_check_row(t, n, 0) == QE_OK. */
void qe_quant_dequantize_row(qe_dtype t, const void *src, int64_t n, float *y);

/* ---- which type each weight gets ---- */

typedef enum qe_quant_role {
    QE_QUANT_ROLE_OTHER = 0,  /* 1-D tensors: norms, rope_freqs - never converted */
    QE_QUANT_ROLE_MATRIX,     /* per-layer projections (attn_q/k/v/output, ffn_*) */
    QE_QUANT_ROLE_TOKEN_EMBD, /* token embedding of a model with its own output matrix */
    QE_QUANT_ROLE_OUTPUT      /* output matrix, or the embedding of a tied model */
} qe_quant_role;

/* Targets of requantization: QE_DT_F32, F16, Q8_0, Q4_0 (the types qeval's
 * device code reads). */
int qe_quant_target_ok(qe_dtype target);

/* The type a tensor of `role`, stored as `src`, with rows of ne0 elements,
 * gets when the model is requantized to `target`. The one place this policy
 * lives:
 *   - OTHER keeps `src` (llama.cpp never converts 1-D tensors or norms).
 *   - f32 / f16 targets: every matrix becomes the target (llama-quantize
 *     ALL_F32 / MOSTLY_F16).
 *   - q8_0: every matrix becomes Q8_0 (llama-quantize MOSTLY_Q8_0, output
 *     and embedding included).
 *   - q4_0: MATRIX and TOKEN_EMBD become Q4_0; OUTPUT becomes Q8_0.
 *     llama-quantize puts output.weight (or the embedding, when there is no
 *     output matrix) in Q6_K, and in Q8_0 when the row length does not fit
 *     Q6_K's 256-element blocks. qeval's device code reads no K-quants, so it
 *     takes llama.cpp's own substitute, Q8_0, every time: the quality-
 *     critical output matrix keeps >= 6 bits, at 8.5 bits/weight instead of
 *     6.56.
 *   - A row length that is not a multiple of 32 cannot hold Q8_0/Q4_0
 *     blocks: such a matrix becomes F16, llama-quantize's last fallback (it
 *     refuses the file outright for Q4_0/Q8_0; qeval degrades instead).
 *   - Whenever the chosen type equals `src` the bytes are copied unchanged.
 * `target` must satisfy qe_quant_target_ok. */
qe_dtype qe_quant_weight_type(qe_quant_role role, qe_dtype src, qe_dtype target, int64_t ne0);

/* llama.cpp's general.file_type for a target: ALL_F32 0, MOSTLY_F16 1,
 * MOSTLY_Q4_0 2, MOSTLY_Q8_0 7. */
uint32_t qe_quant_ftype(qe_dtype target);

/* ---- requantized models ---- */

typedef struct qe_quant_model qe_quant_model;

/* Convert the matrices of `src` as qe_quant_weight_type says (rows decoded
 * with qe_tensor_row_f32, encoded with qe_quant_quantize_row) into buffers
 * owned by the result, and build a model over them (qe_model_build). Tensors
 * that keep their type, and tensor names, are borrowed from src: src must
 * outlive the result. A tied model stays tied (one converted matrix, role
 * OUTPUT). QE_EINVAL for a target outside f32/f16/q8_0/q4_0, QE_ENOMEM. */
qe_status qe_quant_model_new(const qe_model *src, qe_dtype target, qe_quant_model **out);
/* The same with n_threads converting threads (1 .. 64; each matrix's rows
 * split among them), or 0: qe_split_threads (pool.h) of each matrix;
 * qe_quant_model_new is 0.
 * The bytes do not depend on it. QE_EINVAL for a count out of range,
 * QE_ENOMEM (also for a thread's row buffer). */
qe_status qe_quant_model_new_threads(const qe_model *src, qe_dtype target, int n_threads,
                                     qe_quant_model **out);

/* The requantized model; owned by q. */
const qe_model *qe_quant_model_get(const qe_quant_model *q);
qe_dtype qe_quant_model_target(const qe_quant_model *q);

/* Write q as a GGUF v3 file at `path`, llama.cpp-compatible: every metadata
 * key of the source file copied in order, general.file_type set to
 * qe_quant_ftype(target) and general.quantization_version to 2 (added when
 * absent, as llama-quantize does), the source's alignment kept, and every
 * source tensor in the source order: model weights as converted (a source
 * output.weight that qeval read as tied gets the same bytes as
 * token_embd.weight, so the pair stays tied), tensors qeval does not use
 * copied unchanged. Written atomically (temporary file + rename).
 * QE_EUNSUPPORTED if the source is not a GGUF file, or holds an array of
 * strings with NUL bytes inside (the writer takes C strings); QE_EIO naming
 * the path on write failures. */
qe_status qe_quant_model_write_gguf(const qe_quant_model *q, const char *path);

void qe_quant_model_free(qe_quant_model *q); /* NULL is fine */

#endif
