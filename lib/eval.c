/* eval.c - the perplexity loop (see eval.h).
 * Workload: n_chunk chunks of n_ctx tokens, n_seq per device batch; host work
 * per chunk is O(n_ctx * top_k), the device does the O(n_ctx * model) part.
 * Threading: runs on the caller's thread. */
#include "eval.h"
#include "eval_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cl.h"
#include "engine.h"
#include "log.h"
#include "ref.h"

qe_eval_opts qe_eval_opts_default(void)
{
    qe_eval_opts o = {.n_ctx = 512, .max_chunks = 0, .n_seq = 4, .top_k = 10,
                      .device = NULL, .progress = 1, .kv_k = QE_KV_F32, .kv_v = QE_KV_F32};
    return o;
}

/* The C reference as a backend: one position at a time, double precision,
 * the same per-position outputs the engine computes on the device. */
static qe_status ref_chunk(qe_ref *r, const qe_model *m, const int32_t *in, int n_ctx, int first,
                           const int32_t *targets, int top_k, double *logits, float *logp,
                           int32_t *argmax, int32_t *topk_id, float *topk_lp, int every,
                           float *full)
{
    int n_vocab = qe_model_hparams(m)->n_vocab;
    qe_ref_reset(r);
    for (int p = 0; p < n_ctx; p++) {
        qe_status st = qe_ref_step(r, in[p], p, logits);
        if (st)
            return st;
        if (p < first)
            continue;
        int row = p - first, best = 0;
        if (every > 0 && row % every == 0 && p < n_ctx - 1)
            for (int v = 0; v < n_vocab; v++)
                full[(size_t)(row / every) * n_vocab + v] = (float)logits[v];
        double mx = logits[0];
        for (int v = 1; v < n_vocab; v++)
            if (logits[v] > mx) {
                mx = logits[v];
                best = v;
            }
        double s = 0;
        for (int v = 0; v < n_vocab; v++)
            s += exp(logits[v] - mx);
        double lse = mx + log(s);
        argmax[row] = best;
        logp[row] = targets[row] >= 0 ? (float)(logits[targets[row]] - lse) : NAN;
        /* top-k by insertion: logit descending, ties by lower id */
        int32_t *ids = topk_id + (size_t)row * top_k;
        float *lps = topk_lp + (size_t)row * top_k;
        int have = 0;
        for (int v = 0; v < n_vocab && top_k > 0; v++) {
            double x = logits[v];
            if (have == top_k && x <= logits[ids[have - 1]])
                continue;
            int j = have < top_k ? have++ : top_k - 1;
            while (j > 0 && logits[ids[j - 1]] < x) {
                ids[j] = ids[j - 1];
                j--;
            }
            ids[j] = v;
        }
        for (int j = 0; j < top_k; j++)
            lps[j] = (float)(logits[ids[j]] - lse);
    }
    return QE_OK;
}

/* Word/byte accounting of one chunk's scored targets (their decoded bytes). */
void qe_eval_credit_text(qe_ppl *acc, const qe_tokenizer *tok, const int32_t *target, int n)
{
    if (!tok)
        return;
    int in_word = 0;
    double bytes = 0, words = 0;
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *piece = qe_tokenizer_piece(tok, target[i], &len);
        if (!piece)
            continue;
        bytes += (double)len;
        words += qe_count_words(piece, len, &in_word);
    }
    qe_ppl_add_text(acc, bytes, words);
}

qe_status qe_eval_perplexity(const qe_model *m, const qe_tokenizer *tok, const int32_t *tokens,
                             int64_t n_tokens, const qe_eval_opts *o, qe_eval_chunk_fn fn,
                             void *ud, qe_ppl_result *out, qe_eval_times *times)
{
    qe_status st = QE_OK;
    qe_eval_times tm = {0};
    qe_chunk_plan plan;
    int use_ref = o->device && !strcmp(o->device, "ref");
    int bos = tok && qe_tokenizer_add_bos(tok) ? qe_tokenizer_bos(tok) : -1;
    if (o->n_seq < 1 || o->n_seq > QE_EVAL_MAX_SEQ || o->top_k < 0 ||
        o->top_k > QE_ENGINE_TOP_K_MAX)
        return qe_fail(QE_EINVAL, "batch of %d sequences / top-k %d out of range (1..%d, 0..%d)",
                       o->n_seq, o->top_k, QE_EVAL_MAX_SEQ, QE_ENGINE_TOP_K_MAX);
    if ((st = qe_chunk_plan_make(n_tokens, o->n_ctx, o->max_chunks, bos, &plan)))
        return st;
    const int n_ctx = plan.n_ctx, first = plan.first, rows = n_ctx - first, k = o->top_k;
    const int n_seq = (int64_t)o->n_seq < plan.n_chunk ? o->n_seq : (int)plan.n_chunk;
    const size_t nr = (size_t)n_seq * rows;

    qe_cl *cl = NULL;
    qe_engine *eng = NULL;
    qe_ref *ref = NULL;
    double *ref_logits = NULL;
    int32_t *in = malloc((size_t)n_seq * n_ctx * sizeof *in);
    int32_t *tg = malloc((size_t)n_seq * n_ctx * sizeof *tg);
    float *lse = malloc(nr * sizeof *lse), *logp = malloc(nr * sizeof *logp);
    int32_t *amax = malloc(nr * sizeof *amax);
    const int every = o->logits_every > 0 ? o->logits_every : 0;
    const int n_sel = every ? (n_ctx - 1 - first + every - 1) / every : 0;
    const size_t n_vocab = (size_t)qe_model_hparams(m)->n_vocab;
    float *full = every ? malloc((size_t)n_seq * n_sel * n_vocab * sizeof *full) : NULL;
    int32_t *sel_pos = every ? malloc((size_t)n_sel * sizeof *sel_pos) : NULL;
    for (int i = 0; i < n_sel; i++)
        sel_pos[i] = first + i * every;
    int32_t *tk_id = malloc((nr * (size_t)k + 1) * sizeof *tk_id);
    float *tk_lp = malloc((nr * (size_t)k + 1) * sizeof *tk_lp);
    if (!in || !tg || !lse || !logp || !amax || !tk_id || !tk_lp ||
        (every && (!full || !sel_pos))) {
        st = qe_fail(QE_ENOMEM, "out of memory for a batch of %d x %d positions", n_seq, n_ctx);
        goto done;
    }

    double t0 = qe_now();
    if (use_ref) {
        ref_logits = malloc((size_t)qe_model_hparams(m)->n_vocab * sizeof *ref_logits);
        if (!ref_logits) {
            st = qe_fail(QE_ENOMEM, "out of memory for reference logits");
            goto done;
        }
        /* An f32 cache: the double-precision reference, as before; any other
         * format: K/V rows through that format's codec (qe_ref_new_kv). */
        if (o->kv_k == QE_KV_F32 && o->kv_v == QE_KV_F32)
            st = qe_ref_new(m, n_ctx, &ref);
        else
            st = qe_ref_new_kv(m, n_ctx, o->kv_k, o->kv_v, &ref);
        if (st)
            goto done;
        snprintf(tm.device, sizeof tm.device, "C reference (double)");
    } else {
        qe_engine_opts eo = qe_engine_opts_default();
        eo.n_ctx = n_ctx;
        eo.n_seq = n_seq;
        eo.top_k = k;
        eo.kv_k = o->kv_k;
        eo.kv_v = o->kv_v;
        if ((st = qe_cl_open(o->device, o->profile ? QE_CL_PROFILE : 0, &cl)) || (st = qe_engine_open(cl, m, &eo, &eng)))
            goto done;
        snprintf(tm.device, sizeof tm.device, "%s", qe_cl_device(cl)->name);
    }
    tm.upload = qe_now() - t0;

    qe_ppl acc;
    qe_ppl_init(&acc);
    qe_progress prog;
    const int64_t n_eval = qe_chunk_count_todo(&plan, o->skip, o->skip_ud); /* for the ETA */
    if (o->progress)
        qe_progress_begin(&prog, "perplexity", (uint64_t)(n_eval * n_ctx));
    int64_t next = 0; /* next chunk index to consider */
    int64_t todo[QE_EVAL_MAX_SEQ];
    for (;;) {
        /* The next n_seq chunks that are not skipped, in chunk order. */
        const int ns = qe_chunk_next(&plan, o->skip, o->skip_ud, &next, n_seq, todo);
        if (ns == 0)
            break;
        for (int s = 0; s < ns; s++) {
            qe_chunk_fill(&plan, tokens, todo[s], in + (size_t)s * n_ctx);
            for (int j = 0; j < n_ctx; j++)
                tg[(size_t)s * n_ctx + j] =
                    j >= first && j < n_ctx - 1 ? qe_chunk_target(&plan, tokens, todo[s], j) : -1;
        }
        double tb = qe_now();
        if (use_ref) {
            for (int s = 0; s < ns && !st; s++)
                st = ref_chunk(ref, m, in + (size_t)s * n_ctx, n_ctx, first,
                               tg + (size_t)s * n_ctx + first, k, ref_logits,
                               logp + (size_t)s * rows, amax + (size_t)s * rows,
                               tk_id + (size_t)s * rows * k, tk_lp + (size_t)s * rows * k,
                               every, full + (every ? (size_t)s * n_sel * n_vocab : 0));
        } else {
            /* Targets of the output rows only: the engine indexes them per row. */
            int32_t *tgr = tg; /* compact [ns][rows] in place (rows start at first) */
            for (int s = 0; s < ns; s++)
                memmove(tgr + (size_t)s * rows, tg + (size_t)s * n_ctx + first,
                        (size_t)rows * sizeof *tg);
            qe_engine_out eo = {lse, logp, amax, tk_id, tk_lp};
            st = qe_engine_prefill(eng, ns, n_ctx, in, first, tgr, &eo);
            /* Full logits of the chosen rows, recomputed by the same head. */
            for (int s = 0; s < ns && !st && every; s++)
                for (int i = 0; i < n_sel && !st; i++)
                    st = qe_engine_logits(eng, s, sel_pos[i],
                                          full + ((size_t)s * n_sel + i) * n_vocab);
        }
        if (st)
            goto done;
        double te = qe_now();
        tm.prefill += te - tb;
        for (int s = 0; s < ns; s++) {
            size_t r0 = (size_t)s * rows;
            int32_t *target = use_ref ? tg + (size_t)s * n_ctx + first : tg + r0;
            double sum = 0;
            for (int j = 0; j < plan.n_scored; j++) {
                double nll = -(double)logp[r0 + j];
                qe_ppl_add(&acc, nll);
                sum += nll;
            }
            qe_eval_credit_text(&acc, tok, target, plan.n_scored);
            qe_eval_chunk ch = {
                .index = todo[s], .first = first, .n_scored = plan.n_scored, .target = target,
                .logp = logp + r0, .argmax = amax + r0, .top_k = k,
                .topk_id = tk_id + r0 * k, .topk_logp = tk_lp + r0 * k, .nll_sum = sum,
                .running = qe_ppl_result_of(&acc), .seconds = (te - tb) / ns,
                .n_logits = n_sel, .n_vocab = (int)n_vocab, .logit_pos = sel_pos,
                .logits = every ? full + (size_t)s * n_sel * n_vocab : NULL};
            if (fn && (st = fn(ud, &ch)))
                goto done;
        }
        tm.n_chunks += ns;
        tm.n_tokens += (int64_t)ns * n_ctx;
        tm.metrics += qe_now() - te;
        if (o->progress)
            qe_progress_update(&prog, (uint64_t)tm.n_tokens);
    }
    if (o->progress)
        qe_progress_end(&prog, (uint64_t)tm.n_tokens);
    if (out)
        *out = qe_ppl_result_of(&acc);

done:
    if (st == QE_OK && o->profile && cl)
        st = qe_cl_profile_take(cl, &tm.kernels, &tm.n_kernels);
    if (times)
        *times = tm;
    else
        free(tm.kernels);
    free(in);
    free(tg);
    free(lse);
    free(logp);
    free(amax);
    free(tk_id);
    free(tk_lp);
    free(ref_logits);
    free(full);
    free(sel_pos);
    qe_ref_free(ref);
    qe_engine_close(eng);
    qe_cl_close(cl);
    return st;
}
