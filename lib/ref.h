/* ref.h - the plain-C reference forward pass: the oracle for the OpenCL path.
 *
 * Computes the forward pass described at the top of model.h one token at a
 * time with a KV cache, accumulating every dot product, norm and softmax in
 * double precision. Weights are converted row by row through
 * qe_tensor_row_f32, so any type the model accepts works. It is meant to be
 * obviously correct, not fast (llama2.c's forward is the model).
 *
 * Threading: one qe_ref is used by one thread at a time; several qe_ref over
 * the same model may run in parallel.
 */
#ifndef QE_REF_H
#define QE_REF_H

#include "kv_format.h"
#include "model.h"
#include "status.h"

typedef struct qe_ref qe_ref;

/* A forward state with room for n_ctx positions (1 <= n_ctx; the KV cache
 * takes 2 * n_layers * n_ctx * n_kv_heads * head_dim doubles). The model
 * must outlive the state. QE_EINVAL for n_ctx < 1, QE_ENOMEM. */
qe_status qe_ref_new(const qe_model *m, int n_ctx, qe_ref **out);

/* As qe_ref_new, with the KV cache held in formats kv_k and kv_v: every K row
 * (after RoPE) and V row is encoded and decoded with qe_kv_format_* as it is
 * written, which is exactly what attention over the encoded cache computes.
 * Even QE_KV_F32 rounds K and V to float here, while qe_ref_new keeps them
 * in double. QE_EINVAL for a format outside the enum; QE_EUNSUPPORTED (the
 * message names the format and the sizes) when the model's n_kv_heads x
 * head_dim rows do not fit a format. */
qe_status qe_ref_new_kv(const qe_model *m, int n_ctx, qe_kv_format kv_k, qe_kv_format kv_v,
                        qe_ref **out);

/* Forget every cached position (start a new sequence). */
void qe_ref_reset(qe_ref *r);

/* Feed `token` at position `pos` and write the next-token logits
 * (n_vocab doubles) to `logits` (may be NULL to only fill the cache).
 * 0 <= pos <= number of positions cached, pos < n_ctx: pos equal to the
 * count appends; a smaller pos rewinds, dropping positions >= pos first.
 * QE_EINVAL (with a message) for a token outside [0, n_vocab) or a bad pos. */
qe_status qe_ref_step(qe_ref *r, int token, int pos, double *logits);

/* Positions currently cached. */
int qe_ref_n_past(const qe_ref *r);

void qe_ref_free(qe_ref *r); /* NULL is fine */

/* The FFN gate activation the reference applies (model.h): silu or the tanh
 * approximation of GELU, in double. Exported for tests of device kernels. */
double qe_ref_ffn_act(qe_ffn_act act, double z);

#endif
