/* engine_pair.c - paired prefill: a base engine and variant engines on the
 * same tokens, their logits compared on the device (kernels/kld.cl) so that
 * only per-row scalars leave it (see qe_engine_prefill_paired in engine.h).
 *
 * Schedule of one call, all on the shared in-order queue:
 *   uploads + trunk of base, then of every variant (each engine keeps its
 *     own final-normed rows, hout)
 *   per head pass of hr rows (hr = the smallest head_rows):
 *     base: LM head + logit_stats          -> base logits, base stats
 *     each variant: LM head + logit_stats  -> its logits, its stats
 *                   kld_rows(base, variant) -> its comparison rows
 *   read back: base stats, every variant's stats and comparison rows.
 * Device memory: each engine's own logits buffer (hr x n_vocab); base's
 * holds a pass's rows while every variant is compared with it.
 *
 * Threading: as engine.c; the engines share one qe_cl, so the caller
 * serialises all of them.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_internal.h"
#include "log.h"

/* Enqueue kld_rows for rows [row0, row0+n) of v against base (both heads
 * for these rows are queued already). */
static qe_status run_kld(qe_engine *v, const qe_engine *base, int row0, int n)
{
    const int nv = v->hp.n_vocab;
    qe_status st = qe_cl_args(v->k_kld, 7, sizeof(cl_mem), &base->logits, sizeof(cl_mem),
                              &base->stats, sizeof(cl_mem), &v->logits, sizeof(cl_mem), &v->stats,
                              sizeof(int), &nv, sizeof(cl_mem), &v->kld, sizeof(int), &row0);
    size_t global = (size_t)n * (size_t)v->rw, local = (size_t)v->rw;
    if (st == QE_OK)
        st = qe_cl_run(v->cl, v->k_kld, 1, &global, &local, NULL);
    return st;
}

/* Drain the queue and charge the time since *t to seconds[i]. */
static qe_status lap(qe_cl *cl, double *seconds, int i, double *t)
{
    if (!seconds)
        return QE_OK;
    qe_status st = qe_cl_finish(cl);
    const double now = qe_now();
    seconds[i] += now - *t;
    *t = now;
    return st;
}

qe_status qe_engine_prefill_paired(qe_engine *base, qe_engine *const *var, int n_var, int n_seq,
                                   int n_tok, const int32_t *tokens, int out_first,
                                   const int32_t *targets, qe_engine_out *base_out,
                                   qe_engine_out *var_out, qe_engine_kld_out *kld_out,
                                   double *seconds)
{
    if (!base || n_var < 0 || (n_var > 0 && !var))
        return qe_fail(QE_EINVAL, "engine: paired prefill needs a base engine and %d variants", n_var);
    int hr = base->opt.head_rows;
    for (int i = 0; i < n_var; i++) {
        const qe_engine *v = var[i];
        if (!v || v->cl != base->cl)
            return qe_fail(QE_EINVAL, "engine: paired prefill: variant %d does not share the base's "
                           "OpenCL context", i);
        if (v->hp.n_vocab != base->hp.n_vocab)
            return qe_fail(QE_EINVAL, "engine: paired prefill: variant %d has %d vocabulary entries, "
                           "the base %d", i, v->hp.n_vocab, base->hp.n_vocab);
        if (v->opt.top_k != base->opt.top_k)
            return qe_fail(QE_EINVAL, "engine: paired prefill: variant %d has top_k %d, the base %d",
                           i, v->opt.top_k, base->opt.top_k);
        hr = v->opt.head_rows < hr ? v->opt.head_rows : hr;
    }
    qe_status st = qe_engine_check_prefill(base, n_seq, n_tok, tokens, out_first, targets);
    for (int i = 0; st == QE_OK && i < n_var; i++)
        if ((st = qe_engine_check_prefill(var[i], n_seq, n_tok, tokens, out_first, targets)) != QE_OK)
            qe_fail_prefix(st, "variant %d", i);
    if (st != QE_OK)
        return st;

    const int out_rows = n_seq * (n_tok - out_first);
    double t = seconds ? qe_now() : 0.0;
    for (int i = 0; seconds && i <= n_var; i++)
        seconds[i] = 0.0;
    st = qe_engine_begin(base, n_seq, n_tok, tokens, out_first, targets, 1);
    if (st == QE_OK)
        st = lap(base->cl, seconds, 0, &t);
    for (int i = 0; st == QE_OK && i < n_var; i++) {
        st = qe_engine_begin(var[i], n_seq, n_tok, tokens, out_first, targets, 1);
        if (st == QE_OK)
            st = lap(base->cl, seconds, 1 + i, &t);
    }
    for (int r0 = 0; st == QE_OK && r0 < out_rows; r0 += hr) {
        const int n = out_rows - r0 < hr ? out_rows - r0 : hr;
        st = qe_engine_run_head(base, r0, n, 1);
        if (st == QE_OK)
            st = lap(base->cl, seconds, 0, &t);
        for (int i = 0; st == QE_OK && i < n_var; i++) {
            st = qe_engine_run_head(var[i], r0, n, 1);
            if (st == QE_OK)
                st = run_kld(var[i], base, r0, n);
            if (st == QE_OK)
                st = lap(base->cl, seconds, 1 + i, &t);
        }
    }
    if (st == QE_OK)
        st = qe_cl_read(base->cl, base->stats, 0, (size_t)out_rows * base->stride * sizeof(float),
                        base->hstats);
    for (int i = 0; st == QE_OK && i < n_var; i++) {
        qe_engine *v = var[i];
        st = qe_cl_read(v->cl, v->stats, 0, (size_t)out_rows * v->stride * sizeof(float), v->hstats);
        if (st == QE_OK)
            st = qe_cl_read(v->cl, v->kld, 0, (size_t)out_rows * KLD_STRIDE * sizeof(float), v->hkld);
    }
    if (st != QE_OK)
        return qe_fail_prefix(st, "engine: paired prefill");

    base->ran = 1;
    qe_engine_unpack(base, out_rows, base_out);
    for (int i = 0; i < n_var; i++) {
        qe_engine *v = var[i];
        v->ran = 1;
        if (var_out)
            qe_engine_unpack(v, out_rows, &var_out[i]);
        const qe_engine_kld_out *k = kld_out ? &kld_out[i] : NULL;
        for (int r = 0; k && r < out_rows; r++) {
            const float *row = v->hkld + (size_t)r * KLD_STRIDE;
            if (k->kld)
                k->kld[r] = row[0];
            if (k->dp)
                k->dp[r] = row[1];
            if (k->same_top)
                k->same_top[r] = row[2] != 0.0f;
        }
    }
    return QE_OK;
}
