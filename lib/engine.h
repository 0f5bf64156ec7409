/* engine.h - the OpenCL forward pass: batched prefill with per-position
 * statistics computed on the device.
 *
 * An engine holds one model's weights on one device (lib/cl.h) and the
 * activations and K/V cache for up to n_seq sequences of n_ctx positions.
 * qe_engine_prefill runs n_seq independent sequences of n_tok tokens each,
 * every one from an empty cache at positions 0 .. n_tok-1, computing the
 * forward pass of model.h in f32. For each position p >= out_first it reduces
 * the next-token logits on the device to a few numbers (log-sum-exp, the
 * target's log-prob, arg-max, top-k); only those are read back, once, at the
 * end. The LM head runs only for positions >= out_first (perplexity scores
 * the second half of each chunk), in passes of at most head_rows rows, so the
 * logits buffer stays small even for a 262144-token vocabulary.
 *
 * Output rows: position p of sequence s is row s * n_out + (p - out_first),
 * n_out = n_tok - out_first. The target of a row is the token whose log-prob
 * is wanted (for perplexity: the token at p + 1), or -1 for none.
 *
 * Weights are uploaded once at open: F32, F16, Q8_0 and Q4_0 as stored (the
 * GGML blocks byte for byte; F16 read with vload_half, no half arithmetic;
 * Q8_0/Q4_0 dequantized inside the matmul and embedding kernels, one element
 * at a time, never expanded in device memory). BF16 is converted to F32 on
 * the host (twice the device memory of the file); Q4_1, Q5_0, Q5_1, Q4_K,
 * Q5_K and Q6_K are decoded on the host exactly as ggml does and rounded
 * once to F16 (the device then holds 16 bits/weight; the rounding, <= 2^-11
 * relative, is far below those formats' own error). Norm weights and
 * rope_freqs are always converted to F32. Other types are QE_EUNSUPPORTED
 * (the per-type dispatch is engine_wfmt_of in engine.c and wt_load in
 * kernels/weights.cl). To evaluate a model at another weight type, requantize
 * it on the host first (qe_quant_model_new).
 *
 * KV cache: opts.kv_k / opts.kv_v pick the format of the K and V caches
 * (lib/kv_format.h). The engine's default is f32, the exact cache the
 * reference comparisons use; qeval perplexity's default is f16, like
 * llama.cpp's. For any other format the K/V projections go to an f32
 * staging buffer, K gets RoPE there, and a store kernel (kernels/kv.cl)
 * encodes each row into the cache, byte-identical to qe_kv_format_quantize_row
 * on devices with cl_khr_fp64 (without it, divisions and the TurboQuant norm
 * run in float and a rare byte may differ). Attention reads the encoded
 * cache directly; for TurboQuant it works in the rotated domain
 * (lib/turboquant.h), so its results equal qe_ref_new_kv's with the same
 * formats up to float rounding.
 *
 * Numerics: every row's arithmetic is independent of the other rows (fixed
 * reduction orders, tiles aligned to the row or sequence), so a sequence's
 * outputs are bit-identical whether it runs alone or in a batch, and
 * whatever out_first and head_rows are. Results are deterministic on one
 * device; different devices (PoCL vs NVIDIA) may differ in the last bits.
 *
 * Threading: an engine is used by one thread at a time, and so is its qe_cl
 * (the caller serialises). The qe_cl and the model must outlive the engine.
 */
#ifndef QE_ENGINE_H
#define QE_ENGINE_H

#include <stdint.h>

#include "cl.h"
#include "kv_format.h"
#include "model.h"
#include "status.h"

#define QE_ENGINE_TOP_K_MAX 64

typedef struct qe_engine qe_engine;

/* Which kernels compute the matrix products (every weight matmul).
 *   QE_GEMM_AUTO  tensor cores where lib/cl's probe says inline-PTX mma.sync
 *                 works (NVIDIA), else the portable FP32 kernels; the
 *                 environment variable QEVAL_GEMM=f32|mma overrides it
 *   QE_GEMM_F32   kernels/matmul.cl: operands and sums in f32, on any device
 *   QE_GEMM_MMA   kernels/mma.cl: f16 operands, f32 sums (tensor cores);
 *                 QE_EUNSUPPORTED where the probe says no
 * Both are batch-invariant (a row's results never depend on the other rows
 * of a call). They differ in the last bits: f16 operands give log-probs
 * within ~1e-3 of the f32 path on real models, so compare formats measured
 * with the same one (the runner records it with each run's device). */
typedef enum qe_gemm { QE_GEMM_AUTO = 0, QE_GEMM_F32, QE_GEMM_MMA } qe_gemm;

/* "auto", "f32", "mma"; NULL for a value out of range. */
const char *qe_gemm_name(qe_gemm g);
/* The qe_gemm named s (qe_gemm_name's names); 0 when s names none. */
int qe_gemm_parse(const char *s, qe_gemm *out);

/* What an engine opened on cl with gemm `want` will use: QE_GEMM_F32 or
 * QE_GEMM_MMA (AUTO: QEVAL_GEMM, else the probe). QE_EINVAL for a bad
 * QEVAL_GEMM or `want`, QE_EUNSUPPORTED for MMA on a device without it. */
qe_status qe_engine_gemm_resolve(qe_cl *cl, qe_gemm want, qe_gemm *out);

typedef struct qe_engine_opts {
    int n_ctx;     /* positions per sequence (>= 1); default 512 */
    int n_seq;     /* sequences per batch (>= 1); default 1 */
    int top_k;     /* top-k entries per position, 0 .. QE_ENGINE_TOP_K_MAX; default 10 */
    int head_rows; /* LM-head rows per pass; 0 (default) = as many as fit a
                      64 MiB logits buffer; any value is capped at n_seq * n_ctx */
    qe_kv_format kv_k, kv_v; /* K and V cache formats; default QE_KV_F32 */
    qe_gemm gemm;  /* matrix-product kernels; default QE_GEMM_AUTO */
} qe_engine_opts;

/* The defaults above. */
qe_engine_opts qe_engine_opts_default(void);

/* Upload m's weights to cl's device, build the kernels and allocate the
 * buffers for opts (NULL = defaults). On success *out owns them.
 * QE_EINVAL for options out of range (message names the option and range),
 * QE_EUNSUPPORTED for a weight type without a device kernel, a head_dim
 * above 256, or a KV format the model's rows do not fit
 * (qe_kv_format_row_bytes), QE_ERANGE for buffers larger than the device allows, QE_ECL for
 * OpenCL failures (kernel build errors included). */
qe_status qe_engine_open(qe_cl *cl, const qe_model *m, const qe_engine_opts *opts,
                         qe_engine **out);
void qe_engine_close(qe_engine *e); /* NULL is fine */

/* The options in force (head_rows resolved; gemm resolved to F32 or MMA). */
qe_engine_opts qe_engine_options(const qe_engine *e);

/* Per-position results of a prefill, in caller memory. Row layout: see the
 * top of this file (n_rows = n_seq * (n_tok - out_first)). Any pointer may be
 * NULL: that result is not copied out. */
typedef struct qe_engine_out {
    float *lse;         /* [n_rows] log sum_v exp(logit_v) */
    float *target_logp; /* [n_rows] logit_target - lse; NAN where target is -1 */
    int32_t *argmax;    /* [n_rows] lowest id among the largest logits */
    int32_t *topk_id;   /* [n_rows][top_k] by logit descending, ties by lower id */
    float *topk_logp;   /* [n_rows][top_k] their log-probs (logit - lse) */
} qe_engine_out;

/* Prefill n_seq sequences of n_tok tokens each. tokens: [n_seq][n_tok].
 * targets: [n_rows] (row layout above), each -1 or a token id; NULL = all -1.
 * out NULL runs only the transformer and the final norm (for callers that
 * drive the LM head themselves, see qe_engine_head).
 * Requires 1 <= n_seq <= opts.n_seq, 1 <= n_tok <= opts.n_ctx,
 * 0 <= out_first < n_tok, every token in [0, n_vocab), every target -1 or in
 * [0, n_vocab): else QE_EINVAL (checked before anything is uploaded; the
 * message names the sequence and position). Blocks until the results are on
 * the host. */
qe_status qe_engine_prefill(qe_engine *e, int n_seq, int n_tok, const int32_t *tokens,
                            int out_first, const int32_t *targets, qe_engine_out *out);

/* Debug and tests: the n_vocab logits of sequence `seq` at position `pos` of
 * the last prefill (out_first <= pos < n_tok), recomputed by the same LM-head
 * kernel (bit-identical to what the statistics saw) into dst[n_vocab].
 * QE_EINVAL when no prefill ran or seq/pos is outside it. */
qe_status qe_engine_logits(qe_engine *e, int seq, int pos, float *dst);

/* Tests: fill every activation, cache, logits and result buffer on the
 * device with NaN, so values left from an earlier run cannot pass for new
 * ones. */
qe_status qe_engine_poison(qe_engine *e);

/* ---- for device-side consumers of the logits (paired KL-divergence) ----
 * A paired evaluation runs qe_engine_prefill on two engines (out may be NULL),
 * then, for row0 = 0, head_rows, 2*head_rows, ... calls qe_engine_head on
 * both and compares their qe_engine_logits_mem buffers with its own kernel on
 * the same queue (both engines must share one qe_cl). */

/* Enqueue (no wait) the LM head for output rows [row0, row0 + n_rows) of the
 * last prefill into the logits buffer, row row0 + i at buffer row i.
 * 1 <= n_rows <= head_rows; QE_EINVAL otherwise or when no prefill ran. */
qe_status qe_engine_head(qe_engine *e, int row0, int n_rows);
/* The logits buffer: [head_rows][n_vocab] f32, valid after qe_engine_head
 * until the next engine call. */
cl_mem qe_engine_logits_mem(const qe_engine *e);

/* Per-row comparison of a variant with a base (paired evaluation), computed
 * on the device from both engines' logits; p = softmax of base, q = of the
 * variant. Any pointer may be NULL. */
typedef struct qe_engine_kld_out {
    float *kld;       /* [n_rows] sum_v p_v (log p_v - log q_v) */
    float *dp;        /* [n_rows] q(target) - p(target); NAN where target is -1 */
    uint8_t *same_top;/* [n_rows] 1 if the arg-maxes agree, else 0 */
} qe_engine_kld_out;

/* Paired prefill: run base and n_var variant engines on the same tokens and
 * targets (arguments as qe_engine_prefill), then, per LM-head pass, base's
 * logits and statistics, each variant's logits and statistics, and a kernel
 * (kernels/kld.cl) comparing each variant's logits with base's while both
 * are on the device. Only the per-row statistics of every engine (base_out,
 * var_out[i]) and the comparison scalars (kld_out[i]) are read back; device
 * memory stays O(n_vocab x head_rows) per engine. Each output may be NULL
 * (var_out / kld_out entirely, or any pointer inside them).
 * All engines must share one qe_cl and have the same n_vocab and options
 * n_ctx, n_seq and top_k (QE_EINVAL otherwise, naming the variant); the head
 * passes use the smallest head_rows among them. seconds, when non-NULL,
 * receives [1 + n_var] device seconds per engine (base first): the queue is
 * then drained between engines to time them, which costs a few host round
 * trips per batch. Results are bit-identical to each engine's own
 * qe_engine_prefill. */
qe_status qe_engine_prefill_paired(qe_engine *base, qe_engine *const *var, int n_var, int n_seq,
                                   int n_tok, const int32_t *tokens, int out_first,
                                   const int32_t *targets, qe_engine_out *base_out,
                                   qe_engine_out *var_out, qe_engine_kld_out *kld_out,
                                   double *seconds);

/* Tests: the device's KV-cache codec for format f on n_rows rows of
 * n_heads x head_dim floats x: the cache writer (kernels/kv.cl kv_store)
 * encodes them into dst (n_rows * qe_kv_format_row_bytes bytes) and
 * attention's reader (kvfmt.cl kv_load) decodes them into y
 * ([n_rows][n_heads*head_dim]: the stored values for f32/f16/q8_0/q4_0, the
 * rotated domain - qe_turboquant_dequantize_rotated - for tq*). dst or y may
 * be NULL. head_dim <= 256. QE_EINVAL / QE_EUNSUPPORTED for sizes the format
 * does not fit, QE_ECL for device errors. */
qe_status qe_engine_kv_codec(qe_cl *cl, qe_kv_format f, int n_heads, int head_dim, int n_rows,
                             const float *x, void *dst, float *y);

/* Tests: the quotients a[i] / b[i] (i < n) that the codec's encoders for
 * format f compute on this device (kvfmt.cl KV_DIV in the program the
 * engine builds), into y[i]: the CPU's encoder divides in float, correctly
 * rounded, and the device must match it. */
qe_status qe_engine_kv_div(qe_cl *cl, qe_kv_format f, int head_dim, int n, const float *a,
                           const float *b, float *y);

#endif
