/* jobeval.c - one run of a job: tokens, plan, model format, chunks to the
 * store (see jobeval.h). Threading: runs on the runner's calling thread;
 * tokenization fans out over the job's workers; rows go to the writer thread
 * through the sink. */
#include "jobeval.h"

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "dataset.h"
#include "eval.h"
#include "hash.h"
#include "log.h"
#include "quant.h"
#include "store.h"
#include "tokenizer.h"

static qe_status encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
    qe_tokenizer_ids out = {0};
    qe_status st = qe_tokenizer_encode(ctx, text, len, QE_TOK_ADD_SPECIAL, &out);
    if (st) {
        qe_tokenizer_ids_free(&out);
        return st;
    }
    *ids = out.v;
    *n = out.n;
    return QE_OK;
}

struct chunk_ctx {
    const qe_runner_task *t;
    qe_runner_sink *sink;
    int want_variant; /* paired runs: store only this variant's chunks */
};

static int stored(void *ud, int64_t chunk)
{
    const qe_runner_task *t = ud;
    return (t->max_chunks > 0 && chunk >= t->max_chunks) || qe_store_resume_has(t->stored, chunk);
}

static qe_status to_store(void *ud, const qe_eval_chunk *c)
{
    struct chunk_ctx *cc = ud;
    if (c->variant != cc->want_variant)
        return QE_OK; /* the reference's rows belong to its own run */
    qe_store_chunk sc;
    memset(&sc, 0, sizeof sc);
    sc.chunk = c->index;
    sc.first = c->first;
    sc.n_scored = c->n_scored;
    sc.target = c->target;
    sc.logprob = c->logp;
    sc.argmax = c->argmax;
    sc.top_k = c->top_k;
    sc.topk_id = c->topk_id;
    sc.topk_logprob = c->topk_logp;
    sc.seconds = c->seconds;
    sc.n_logits = c->n_logits;
    sc.n_vocab = c->n_vocab;
    sc.logit_pos = c->logit_pos;
    sc.logits = c->logits;
    sc.kld = c->kld;
    return qe_runner_chunk(cc->sink, &sc);
}

/* The model a run evaluates: as stored ("native") or requantized (*qm owns it). */
static qe_status run_model(const qe_model *native, const char *weights, qe_quant_model **qm,
                           const qe_model **out)
{
    *out = native;
    if (!strcmp(weights, "native"))
        return QE_OK;
    qe_dtype target;
    qe_status st = qe_dtype_from_name(weights, &target);
    if (st || (st = qe_quant_model_new(native, target, qm)))
        return st;
    *out = qe_quant_model_get(*qm);
    return QE_OK;
}

static qe_status run_kv(const qe_job_run *r, qe_kv_format *k, qe_kv_format *v)
{
    qe_status st = qe_kv_format_parse(r->kv_k, k);
    return st ? st : qe_kv_format_parse(r->kv_v, v);
}

qe_status qe_jobeval_run(void *ud, const qe_runner_task *t, qe_runner_sink *sink)
{
    const qe_jobeval_opts *jo = ud;
    qe_status st = QE_OK;
    qe_tokenizer *tok = NULL;
    qe_quant_model *qm = NULL, *qm_ref = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const qe_model *m = t->model;

    qe_kv_format kv_k, kv_v;
    if ((st = run_kv(t->run, &kv_k, &kv_v))) {
        qe_fail_prefix(st, "run %s", t->run_key);
        goto done;
    }
    double t0 = qe_now();
    if ((st = qe_tokenizer_open(t->tokenizer_path, &tok)))
        goto done;
    if ((st = qe_dataset_tokenize(t->dataset, encode, tok, t->job->workers, &ids, &n)))
        goto done;
    if ((st = qe_dataset_check_ids(t->dataset, (int32_t)qe_model_hparams(m)->n_vocab)))
        goto done;
    double t_tok = qe_now() - t0;

    int bos = qe_tokenizer_add_bos(tok) ? qe_tokenizer_bos(tok) : -1;
    qe_chunk_plan plan;
    if ((st = qe_chunk_plan_make((int64_t)n, t->job->n_ctx, 0, bos, &plan)))
        goto done;
    uint8_t h[32];
    {
        /* The ids' hash, as int32 little-endian (the store's rule). */
        qe_hash_sha256 hc;
        qe_hash_sha256_init(&hc);
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)ids[i];
            uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
            qe_hash_sha256_update(&hc, b, 4);
        }
        qe_hash_sha256_final(&hc, h);
    }
    if ((st = qe_runner_plan(sink, (int64_t)n, h, plan.n_chunk)))
        goto done;

    if ((st = run_model(t->model, t->run->weights, &qm, &m)))
        goto done;
    if ((st = qe_runner_weight_bytes(sink, qe_model_weight_bytes(m))))
        goto done;

    qe_eval_opts eo = qe_eval_opts_default();
    eo.n_ctx = t->job->n_ctx;
    eo.n_seq = t->job->n_seq;
    eo.top_k = t->job->top_k;
    eo.device = jo ? jo->device : NULL;
    eo.progress = jo ? jo->progress : 0;
    eo.skip = stored;
    eo.skip_ud = (void *)t;
    eo.logits_every = t->job->store_logits;
    eo.kv_k = kv_k;
    eo.kv_v = kv_v;
    struct chunk_ctx cc = {t, sink, 0};
    qe_eval_times tm;
    /* A variant runs beside its reference (qe_eval_paired) so KL-divergence
     * is computed on the device against the reference's logits; the
     * reference's own rows come from its own run. Full-logit storage and the
     * C reference have no paired mode: those variants store no KLD. */
    int paired = t->run->ref >= 0 && eo.logits_every == 0 && !(eo.device && !strcmp(eo.device, "ref"));
    if (paired) {
        const qe_job_run *rr = &t->job->runs[t->run->ref];
        qe_eval_variant base = {"reference", NULL, QE_KV_F32, QE_KV_F32}, var = {"variant", m, kv_k, kv_v};
        if ((st = run_model(t->model, rr->weights, &qm_ref, &base.model)) ||
            (st = run_kv(rr, &base.kv_k, &base.kv_v)))
            goto done;
        qe_eval_variant_result res[2];
        cc.want_variant = 1;
        st = qe_eval_paired(&base, &var, 1, tok, ids, (int64_t)n, &eo, to_store, &cc, res, &tm);
        if (st)
            goto done;
        /* The summary covers the chunks evaluated in this call (all of them
         * unless the run was resumed). */
        if (res[1].kld.n > 0 && (st = qe_runner_kld(sink, &res[1].kld)))
            goto done;
    } else {
        st = qe_eval_perplexity(m, tok, ids, (int64_t)n, &eo, to_store, &cc, NULL, &tm);
        if (st)
            goto done;
    }
    if ((st = qe_runner_timing(sink, "tokenize", t_tok, n)) ||
        (st = qe_runner_timing(sink, "upload", tm.upload, 0)) ||
        (st = qe_runner_timing(sink, "prefill", tm.prefill, (uint64_t)tm.n_tokens)) ||
        (st = qe_runner_timing(sink, "metrics", tm.metrics, 0)))
        goto done;
done:
    free(ids);
    qe_quant_model_free(qm);
    qe_quant_model_free(qm_ref);
    qe_tokenizer_close(tok);
    return st;
}
