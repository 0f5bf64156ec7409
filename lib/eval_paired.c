/* eval_paired.c - paired evaluation: a base model configuration and variants
 * run on the same chunks, compared token by token on the device (see
 * qe_eval_paired in eval.h), and the command-line syntax of a configuration.
 *
 * Workload: per batch of n_seq chunks, one qe_engine_prefill_paired over
 * 1 + n_var engines; host work per chunk is O(n_ctx * (1 + n_var) * top_k).
 * Host memory: per engine the batch's per-position results; per variant a
 * qe_kld (two floats per scored token, for the percentiles).
 * Threading: runs on the caller's thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch.h"
#include "cl.h"
#include "engine.h"
#include "eval.h"
#include "eval_internal.h"
#include "log.h"

/* ---- the configuration syntax ---- */

static const struct {
    const char *name;
    int file;
    qe_dtype type;
} weight_names[] = {{"file", 1, QE_DT_F32}, {"f32", 0, QE_DT_F32}, {"f16", 0, QE_DT_F16},
                    {"q8_0", 0, QE_DT_Q8_0}, {"q4_0", 0, QE_DT_Q4_0}};

qe_status qe_eval_spec_parse(const char *spec, const qe_eval_spec *dflt, qe_eval_spec *out)
{
    char item[64];
    qe_eval_spec r = *dflt;
    int seen_w = 0, seen_kv = 0, seen_k = 0, seen_v = 0;
    if (!spec || !*spec)
        return qe_fail(QE_EINVAL, "empty model configuration (expected e.g. 'q4_0+kv=tq4')");
    for (const char *p = spec;;) {
        const char *end = strchr(p, '+');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= sizeof item)
            return qe_fail(QE_EINVAL, "configuration '%s': %s item", spec,
                           n ? "an over-long" : "an empty");
        memcpy(item, p, n);
        item[n] = '\0';
        const char *eq = strchr(item, '=');
        if (!eq) {
            size_t i = 0;
            while (i < sizeof weight_names / sizeof weight_names[0] &&
                   strcasecmp(item, weight_names[i].name) != 0)
                i++;
            if (i == sizeof weight_names / sizeof weight_names[0])
                return qe_fail(QE_EINVAL,
                               "configuration '%s': unknown item '%s' (expected a weight type: "
                               "file, f32, f16, q8_0, q4_0; or kv=, kv-k=, kv-v= with a KV format)",
                               spec, item);
            if (seen_w++)
                return qe_fail(QE_EINVAL, "configuration '%s': two weight types", spec);
            r.file = weight_names[i].file;
            r.weights = weight_names[i].type;
        } else {
            const size_t key = (size_t)(eq - item);
            qe_kv_format f;
            int which; /* 0 both, 1 K, 2 V */
            if (key == 2 && strncasecmp(item, "kv", 2) == 0)
                which = 0;
            else if (key == 4 && strncasecmp(item, "kv-k", 4) == 0)
                which = 1;
            else if (key == 4 && strncasecmp(item, "kv-v", 4) == 0)
                which = 2;
            else
                return qe_fail(QE_EINVAL, "configuration '%s': unknown key in '%s' (expected kv=, "
                               "kv-k= or kv-v=)", spec, item);
            qe_status st = qe_kv_format_parse(eq + 1, &f);
            if (st != QE_OK)
                return qe_fail_prefix(st, "configuration '%s'", spec);
            if ((which == 0 && (seen_kv++ || seen_k || seen_v)) ||
                (which == 1 && (seen_k++ || seen_kv)) || (which == 2 && (seen_v++ || seen_kv)))
                return qe_fail(QE_EINVAL, "configuration '%s': the %s cache format is given twice",
                               spec, which == 1 ? "K" : which == 2 ? "V" : "K/V");
            if (which != 2)
                r.kv_k = f;
            if (which != 1)
                r.kv_v = f;
        }
        if (!end)
            break;
        p = end + 1;
    }
    *out = r;
    return QE_OK;
}

void qe_eval_spec_format(const qe_eval_spec *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s+kv-k=%s+kv-v=%s", s->file ? "file" : qe_dtype_name(s->weights),
             qe_kv_format_name(s->kv_k), qe_kv_format_name(s->kv_v));
}

/* ---- the paired loop ---- */

/* Per-engine host buffers of one batch. */
typedef struct side {
    float *lse, *logp, *kld, *dp;
    int32_t *amax, *tk_id;
    float *tk_lp;
    uint8_t *same;
    qe_ppl acc;
    qe_kld *kl;
} side;

static void side_free(side *s)
{
    free(s->lse);
    free(s->logp);
    free(s->kld);
    free(s->dp);
    free(s->amax);
    free(s->tk_id);
    free(s->tk_lp);
    free(s->same);
    qe_kld_free(s->kl);
}

qe_status qe_eval_paired(const qe_eval_variant *base, const qe_eval_variant *vars, int n_var,
                         const qe_tokenizer *tok, const int32_t *tokens, int64_t n_tokens,
                         const qe_eval_opts *o, qe_eval_chunk_fn fn, void *ud,
                         qe_eval_variant_result *res, qe_eval_times *times)
{
    qe_status st = QE_OK;
    qe_eval_times tm = {0};
    qe_chunk_plan plan;
    if (o->device && !strcmp(o->device, "ref"))
        return qe_fail(QE_EINVAL, "paired evaluation runs on an OpenCL device, not 'ref'");
    if (o->logits_every > 0)
        return qe_fail(QE_EINVAL, "paired evaluation does not return full logits");
    if (n_var < 1 || n_var > QE_EVAL_MAX_VARIANTS || !base || !vars)
        return qe_fail(QE_EINVAL, "paired evaluation of %d variants (expected 1 .. %d)", n_var,
                       QE_EVAL_MAX_VARIANTS);
    const int nv = qe_model_hparams(base->model)->n_vocab;
    for (int i = 0; i < n_var; i++)
        if (qe_model_hparams(vars[i].model)->n_vocab != nv)
            return qe_fail(QE_EINVAL, "variant %s has %d vocabulary entries, the base %s has %d",
                           vars[i].name, qe_model_hparams(vars[i].model)->n_vocab, base->name, nv);
    if (o->n_seq < 1 || o->n_seq > QE_EVAL_MAX_SEQ || o->top_k < 0 ||
        o->top_k > QE_ENGINE_TOP_K_MAX)
        return qe_fail(QE_EINVAL, "batch of %d sequences / top-k %d out of range (1..%d, 0..%d)",
                       o->n_seq, o->top_k, QE_EVAL_MAX_SEQ, QE_ENGINE_TOP_K_MAX);
    int bos = tok && qe_tokenizer_add_bos(tok) ? qe_tokenizer_bos(tok) : -1;
    if ((st = qe_chunk_plan_make(n_tokens, o->n_ctx, o->max_chunks, bos, &plan)))
        return st;
    const int n_ctx = plan.n_ctx, first = plan.first, rows = n_ctx - first, k = o->top_k;
    const int n_seq = (int64_t)o->n_seq < plan.n_chunk ? o->n_seq : (int)plan.n_chunk;
    const size_t nr = (size_t)n_seq * rows;
    const int n_eng = 1 + n_var;

    qe_cl *cl = NULL;
    qe_engine *eng[1 + QE_EVAL_MAX_VARIANTS] = {0};
    side sd[1 + QE_EVAL_MAX_VARIANTS];
    memset(sd, 0, sizeof sd);
    qe_engine_out eo[1 + QE_EVAL_MAX_VARIANTS];
    qe_engine_kld_out ko[QE_EVAL_MAX_VARIANTS];
    double sec[1 + QE_EVAL_MAX_VARIANTS];
    int64_t todo[QE_EVAL_MAX_SEQ];
    int32_t *in = malloc((size_t)n_seq * n_ctx * sizeof *in);
    int32_t *tgr = malloc(nr * sizeof *tgr);
    if (!in || !tgr) {
        st = qe_fail(QE_ENOMEM, "out of memory for a batch of %d x %d positions", n_seq, n_ctx);
        goto done;
    }
    for (int i = 0; i < n_eng; i++) {
        side *s = &sd[i];
        s->lse = malloc(nr * sizeof(float));
        s->logp = malloc(nr * sizeof(float));
        s->amax = malloc(nr * sizeof(int32_t));
        s->tk_id = malloc((nr * (size_t)k + 1) * sizeof(int32_t));
        s->tk_lp = malloc((nr * (size_t)k + 1) * sizeof(float));
        if (i > 0) {
            s->kld = malloc(nr * sizeof(float));
            s->dp = malloc(nr * sizeof(float));
            s->same = malloc(nr);
        }
        if (!s->lse || !s->logp || !s->amax || !s->tk_id || !s->tk_lp ||
            (i > 0 && (!s->kld || !s->dp || !s->same))) {
            st = qe_fail(QE_ENOMEM, "out of memory for a batch of %d x %d positions", n_seq, n_ctx);
            goto done;
        }
        if (i > 0 && (st = qe_kld_new(&s->kl)))
            goto done;
        qe_ppl_init(&s->acc);
        eo[i] = (qe_engine_out){s->lse, s->logp, s->amax, s->tk_id, s->tk_lp};
        if (i > 0)
            ko[i - 1] = (qe_engine_kld_out){s->kld, s->dp, s->same};
    }

    if ((st = qe_cl_open(o->device, o->profile ? QE_CL_PROFILE : 0, &cl)))
        goto done;
    snprintf(tm.device, sizeof tm.device, "%s", qe_cl_device(cl)->name);
    for (int i = 0; i < n_eng; i++) {
        const qe_eval_variant *v = i ? &vars[i - 1] : base;
        qe_engine_opts eopt = qe_engine_opts_default();
        eopt.n_ctx = n_ctx;
        eopt.n_seq = n_seq;
        eopt.top_k = k;
        eopt.kv_k = v->kv_k;
        eopt.kv_v = v->kv_v;
        double t0 = qe_now();
        if ((st = qe_engine_open(cl, v->model, &eopt, &eng[i]))) {
            qe_fail_prefix(st, "%s", v->name);
            goto done;
        }
        if (res)
            res[i].upload = qe_now() - t0;
        tm.upload += qe_now() - t0;
    }
    if (res)
        for (int i = 0; i < n_eng; i++)
            res[i].seconds = 0, res[i].n_tokens = 0;

    qe_progress prog;
    const int64_t n_eval = qe_chunk_count_todo(&plan, o->skip, o->skip_ud);
    if (o->progress)
        qe_progress_begin(&prog, "paired perplexity", (uint64_t)(n_eval * n_ctx));
    int64_t next = 0;
    for (;;) {
        const int ns = qe_chunk_next(&plan, o->skip, o->skip_ud, &next, n_seq, todo);
        if (ns == 0)
            break;
        for (int s = 0; s < ns; s++) {
            qe_chunk_fill(&plan, tokens, todo[s], in + (size_t)s * n_ctx);
            for (int j = 0; j < rows; j++)
                tgr[(size_t)s * rows + j] =
                    first + j < n_ctx - 1 ? qe_chunk_target(&plan, tokens, todo[s], first + j) : -1;
        }
        double tb = qe_now();
        st = qe_engine_prefill_paired(eng[0], eng + 1, n_var, ns, n_ctx, in, first, tgr, &eo[0],
                                      &eo[1], ko, sec);
        if (st)
            goto done;
        double te = qe_now();
        tm.prefill += te - tb;
        for (int i = 0; res && i < n_eng; i++) {
            res[i].seconds += sec[i];
            res[i].n_tokens += (int64_t)ns * n_ctx;
        }
        for (int s = 0; s < ns; s++) {
            const size_t r0 = (size_t)s * rows;
            for (int i = 0; i < n_eng; i++) {
                side *d = &sd[i];
                double sum = 0;
                for (int j = 0; j < plan.n_scored; j++) {
                    const double nll = -(double)d->logp[r0 + j];
                    qe_ppl_add(&d->acc, nll);
                    sum += nll;
                    if (i > 0) {
                        qe_kld_token t = {.kld = d->kld[r0 + j], .nll_q = nll,
                                          .nll_base = -(double)sd[0].logp[r0 + j],
                                          .same_top = d->same[r0 + j]};
                        if ((st = qe_kld_add(d->kl, &t)))
                            goto done;
                    }
                }
                qe_eval_credit_text(&d->acc, tok, tgr + r0, plan.n_scored);
                qe_eval_chunk ch = {
                    .index = todo[s], .first = first, .n_scored = plan.n_scored,
                    .target = tgr + r0, .logp = d->logp + r0, .argmax = d->amax + r0,
                    .top_k = k, .topk_id = d->tk_id + r0 * k, .topk_logp = d->tk_lp + r0 * k,
                    .nll_sum = sum, .n_vocab = nv, .running = qe_ppl_result_of(&d->acc),
                    .seconds = (te - tb) / ns, .variant = i,
                    .kld = i ? d->kld + r0 : NULL, .dp = i ? d->dp + r0 : NULL,
                    .same_top = i ? d->same + r0 : NULL};
                if (fn && (st = fn(ud, &ch)))
                    goto done;
            }
        }
        tm.n_chunks += ns;
        tm.n_tokens += (int64_t)ns * n_ctx;
        tm.metrics += qe_now() - te;
        if (o->progress)
            qe_progress_update(&prog, (uint64_t)tm.n_tokens);
    }
    if (o->progress)
        qe_progress_end(&prog, (uint64_t)tm.n_tokens);
    for (int i = 0; res && i < n_eng; i++) {
        res[i].ppl = qe_ppl_result_of(&sd[i].acc);
        memset(&res[i].kld, 0, sizeof res[i].kld);
        if (i > 0 && (st = qe_kld_summarize(sd[i].kl, &res[i].kld)))
            goto done;
    }

done:
    if (st == QE_OK && o->profile && cl)
        st = qe_cl_profile_take(cl, &tm.kernels, &tm.n_kernels);
    if (times)
        *times = tm;
    else
        free(tm.kernels);
    for (int i = 0; i < n_eng; i++) {
        qe_engine_close(eng[i]);
        side_free(&sd[i]);
    }
    free(in);
    free(tgr);
    qe_cl_close(cl);
    return st;
}
