/* decode.h - token-by-token decoding on the OpenCL engine: KV-cache slots,
 * ragged batches, next-token statistics on the device.
 *
 * A qe_decode borrows an engine (lib/engine.h) opened with n_seq = number of
 * slots and n_ctx = positions per slot: slot s is the engine's sequence s,
 * whose K/V cache rows s * n_ctx + p hold positions p = 0 .. len(s) - 1.
 * One call, qe_decode_run, appends tokens to any set of slots at once: a
 * prompt is n_tok tokens for one slot (prefill), a decode step is one token
 * for each of several slots, and both may share a call. Each sequence in a
 * call yields the statistics of its last token's next-token distribution:
 * log-sum-exp, arg-max and top-k (ids and log-probs), reduced on the device
 * by the engine's logits kernel; only those are read back.
 *
 * Forward pass of a call (rows = all tokens of the call, in call order):
 *   embed -> per layer: rmsnorm, Q/K/V matmuls, RoPE at each row's own
 *   position, K/V rows stored into their slot, attention of each row against
 *   its slot's cache up to its position, output matmul (+residual), rmsnorm,
 *   SwiGLU FFN (+residual) -> the last row of each sequence gathered, final
 *   rmsnorm, LM head, statistics.
 * Matmuls, norms, the FFN gate and the statistics are the prefill engine's
 * kernels; kernels/decode.cl adds the per-row RoPE, the K/V store and the
 * per-row attention.
 *
 * Numerics: every row is computed from its own token, position and slot
 * contents only (fixed reduction orders, no cross-row reductions), so a
 * sequence's results are bit-identical whatever other slots share its calls,
 * however many slots the engine has, and however a prompt is split over
 * calls. They are not bit-identical to qe_engine_prefill's (different
 * attention kernel), only close.
 *
 * The engine's qe_engine_prefill uses the same caches: after it, every
 * slot's contents are garbage and must be qe_decode_reset before reuse.
 *
 * Threading: one thread at a time per decode (and per engine and qe_cl).
 */
#ifndef QE_DECODE_H
#define QE_DECODE_H

#include <stdint.h>

#include "engine.h"
#include "status.h"

typedef struct qe_decode qe_decode;

typedef struct qe_decode_opts {
    int max_rows; /* tokens per call, >= the engine's n_seq; 0 (default) =
                     max(n_seq, min(512, n_seq * n_ctx)) */
} qe_decode_opts;

qe_decode_opts qe_decode_opts_default(void);

/* A decoder over engine e (which must outlive it), every slot empty. Builds
 * kernels/decode.cl and allocates activations for max_rows tokens.
 * QE_EINVAL for max_rows out of range, QE_EUNSUPPORTED for an engine whose
 * KV cache format has no decode kernel, QE_ECL / QE_ERANGE from the device. */
qe_status qe_decode_open(qe_engine *e, const qe_decode_opts *o, qe_decode **out);
void qe_decode_close(qe_decode *d); /* NULL is fine */

int qe_decode_n_slots(const qe_decode *d);  /* the engine's n_seq */
int qe_decode_n_ctx(const qe_decode *d);    /* the engine's n_ctx */
int qe_decode_top_k(const qe_decode *d);    /* the engine's top_k */
int qe_decode_max_rows(const qe_decode *d);
/* Positions held by `slot` (0 .. n_ctx); -1 for a slot out of range. */
int qe_decode_len(const qe_decode *d, int slot);

/* Empty a slot (its next token goes to position 0). QE_EINVAL out of range. */
qe_status qe_decode_reset(qe_decode *d, int slot);

/* One sequence of a call: append tokens[0 .. n_tok) to `slot`. */
typedef struct qe_decode_seq {
    int slot;
    int n_tok;
    const int32_t *tokens;
} qe_decode_seq;

/* Results per sequence of a call, in caller memory; any pointer may be NULL
 * (not copied). Entry i belongs to seqs[i]. */
typedef struct qe_decode_out {
    float *lse;         /* [n_seqs] log sum_v exp(logit_v) */
    int32_t *argmax;    /* [n_seqs] lowest id among the largest logits */
    int32_t *topk_id;   /* [n_seqs][top_k] by logit descending, ties by lower id */
    float *topk_logp;   /* [n_seqs][top_k] their log-probs */
} qe_decode_out;

/* Append each sequence's tokens to its slot and compute the statistics of
 * the distribution after its last token. Requires 1 <= n_seqs <= n_slots,
 * each slot at most once, n_tok >= 1, len(slot) + n_tok <= n_ctx, tokens in
 * [0, n_vocab), total tokens <= max_rows: else QE_EINVAL naming the
 * sequence (checked before anything runs). Blocks until the results are on
 * the host. On a device failure the slots of the call are emptied. */
qe_status qe_decode_run(qe_decode *d, int n_seqs, const qe_decode_seq *seqs, qe_decode_out *out);

/* Tests and debugging: the n_vocab logits behind result i of the last
 * qe_decode_run into dst. QE_EINVAL when i is outside the last call. */
qe_status qe_decode_logits(qe_decode *d, int i, float *dst);

#endif
