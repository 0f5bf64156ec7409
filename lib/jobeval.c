/* jobeval.c - one run of a job: tokens, plan, model format, chunks to the
 * store (see jobeval.h). Threading: runs on the runner's calling thread;
 * tokenization fans out over the job's workers; rows go to the writer thread
 * through the sink. */
#include "jobeval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "dataset.h"
#include "eval.h"
#include "generate.h"
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

static int beyond(const qe_runner_task *t, int64_t chunk)
{
    return t->max_chunks > 0 && chunk >= t->max_chunks;
}

static int stored(void *ud, int64_t chunk)
{
    const qe_runner_task *t = ud;
    return beyond(t, chunk) || qe_store_resume_has(t->stored, chunk);
}

static int beyond_max(void *ud, int64_t chunk) { return beyond(ud, chunk); }

static qe_status to_store(void *ud, const qe_eval_chunk *c)
{
    struct chunk_ctx *cc = ud;
    if (c->variant != cc->want_variant)
        return QE_OK; /* the reference's rows belong to its own run */
    if (qe_store_resume_has(cc->t->stored, c->index))
        return QE_OK; /* re-evaluated only for the KLD summary (see below) */
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
    eo.profile = jo ? jo->profile : 0;
    eo.skip = stored;
    eo.skip_ud = (void *)t;
    eo.logits_every = t->job->store_logits;
    eo.kv_k = kv_k;
    eo.kv_v = kv_v;
    struct chunk_ctx cc = {t, sink, 0};
    qe_eval_times tm = {0};
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
        /* A resumed variant evaluates its stored chunks again (and does not
         * store them twice) so that its KLD summary covers every chunk: the
         * database then equals an uninterrupted run's, row for row. */
        eo.skip = beyond_max;
        st = qe_eval_paired(&base, &var, 1, tok, ids, (int64_t)n, &eo, to_store, &cc, res, &tm);
        if (st)
            goto done;
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
    for (size_t i = 0; i < tm.n_kernels && st == QE_OK; i++)
        st = qe_runner_kernel_timing(sink, tm.kernels[i].name, (double)tm.kernels[i].ns * 1e-9,
                                     tm.kernels[i].calls);
done:
    free(tm.kernels);
    free(ids);
    qe_quant_model_free(qm);
    qe_quant_model_free(qm_ref);
    qe_tokenizer_close(tok);
    return st;
}

/* ---- generation runs ---- */

struct gen_ctx {
    qe_runner_sink *sink;
};

static qe_status gen_result(void *ud, const qe_gen_result *r)
{
    struct gen_ctx *g = ud;
    uint8_t h[32];
    qe_hash_sha256_buf(r->prompt, r->prompt_len, h);
    qe_store_gen_prompt p = {(int64_t)r->index, h, r->n_prompt, r->n_gen, r->ids, r->logp,
                             r->top_k, r->topk_id, r->topk_logp, r->text, r->text_len,
                             qe_gen_finish_name(r->finish), r->stop_index, r->seed, r->ttft_s,
                             r->prefill_tps, r->decode_s, r->decode_tps};
    return qe_runner_gen_prompt(g->sink, &p);
}

static qe_status gen_step(void *ud, const qe_gen_step *s)
{
    struct gen_ctx *g = ud;
    qe_store_gen_step st = {s->index, s->prefill, s->n_seqs, s->n_tokens, s->seconds};
    return qe_runner_gen_step(g->sink, &st);
}

/* "PATH:LINE" (jsonl), "PATH: row N" (csv) or "PATH" (text) of prompt i. */
static void prompt_where(const qe_dataset *ds, size_t i, char *buf, size_t n)
{
    int64_t row = qe_dataset_doc_row(ds, i);
    switch (qe_dataset_kind_of(ds)) {
    case QE_DATASET_JSONL: snprintf(buf, n, "%s:%lld", qe_dataset_path(ds), (long long)row); break;
    case QE_DATASET_CSV: snprintf(buf, n, "%s: row %lld", qe_dataset_path(ds), (long long)row); break;
    default: snprintf(buf, n, "%s", qe_dataset_path(ds)); break;
    }
}

qe_status qe_jobeval_generate(void *ud, const qe_runner_gen_task *t, qe_runner_sink *sink)
{
    const qe_jobeval_opts *jo = ud;
    const qe_job_generate *jg = &t->job->generate;
    qe_status st = QE_OK;
    qe_tokenizer *tok = NULL;
    qe_quant_model *qm = NULL;
    const qe_model *m = t->model;
    const char **prompts = calloc(t->n_prompts + 1, sizeof *prompts);
    size_t *lens = calloc(t->n_prompts + 1, sizeof *lens);
    size_t *index = calloc(t->n_prompts + 1, sizeof *index);
    size_t n = 0;
    if (!prompts || !lens || !index) {
        st = qe_fail(QE_ENOMEM, "generation %.12s: out of memory", t->gen_key);
        goto done;
    }
    if (qe_dataset_kind_of(t->prompts) == QE_DATASET_IDS) {
        st = qe_fail(QE_EINVAL, "%s: an ids dataset holds no prompt text",
                     qe_dataset_path(t->prompts));
        goto done;
    }
    /* Every prompt is checked, stored or not: a bad dataset fails at once. */
    for (size_t i = 0; i < t->n_prompts; i++) {
        size_t len = 0;
        const char *doc = qe_dataset_doc(t->prompts, i, &len);
        if (!doc || len == 0) {
            char where[1200];
            prompt_where(t->prompts, i, where, sizeof where);
            st = qe_fail(QE_ECORRUPT, "%s: prompt %zu is empty (expected text to continue)", where,
                         i);
            goto done;
        }
        if ((t->done && t->done[i]) || (t->max_prompts > 0 && (int64_t)i >= t->max_prompts))
            continue;
        prompts[n] = doc;
        lens[n] = len;
        index[n++] = i;
    }
    if (n == 0)
        goto done;
    qe_gen_opts o = qe_gen_opts_default();
    if ((st = run_kv(t->run, &o.kv_k, &o.kv_v))) {
        qe_fail_prefix(st, "generation %s", t->gen_key);
        goto done;
    }
    if ((st = qe_tokenizer_open(t->tokenizer_path, &tok)) ||
        (st = run_model(t->model, t->run->weights, &qm, &m)))
        goto done;
    o.max_new = jg->max_new_tokens;
    o.n_slots = jg->n_slots > 0 ? jg->n_slots : 8;
    o.top_k = t->job->top_k;
    o.sample.temp = jg->sampling == QE_SAMPLE_RANDOM ? (float)jg->temperature : 0.0f;
    o.sample.top_k = jg->top_k;
    o.sample.top_p = (float)jg->top_p;
    o.sample.seed = jg->seed;
    o.stop = (const char *const *)jg->stop;
    o.n_stop = (int)jg->n_stop;
    o.device = jo && jo->device && strcmp(jo->device, "ref") ? jo->device : NULL;
    o.progress = jo ? jo->progress : 0;
    o.index = index;
    for (size_t i = 0; i < jg->n_stop; i++)
        if (jg->stop_len[i] != strlen(jg->stop[i])) {
            st = qe_fail(QE_EINVAL, "%s: [generate] stop string %zu holds a NUL byte, which "
                         "generation cannot match", t->job->path, i + 1);
            goto done;
        }
    struct gen_ctx gc = {sink};
    qe_gen_stats gs;
    st = qe_generate(m, tok, jo ? jo->cl : NULL, prompts, lens, n, &o, gen_result, gen_step, &gc,
                     &gs);
    if (st) {
        qe_fail_prefix(st, "[model %s] %s kv %s/%s: prompts %s", t->model_spec->name,
                       t->run->weights, t->run->kv_k, t->run->kv_v, qe_dataset_path(t->prompts));
        goto done;
    }
done:
    free(prompts);
    free(lens);
    free(index);
    qe_quant_model_free(qm);
    qe_tokenizer_close(tok);
    return st;
}
