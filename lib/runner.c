/* runner.c - runs a job's sweep into the store (see runner.h for the steps).
 *
 * Threads: the calling thread opens everything, writes the setup rows
 * (models, datasets, session, runs), then hands the read-write store to the
 * writer thread (a one-worker qe_pool, so writes happen in the order they
 * were sent) and calls the evaluator. From then on it reads through its own
 * read-only connection and sends every write as a message; the writer
 * applies each in its own transaction. After the writer shut down the
 * calling thread owns the read-write handle again.
 *
 * Workload: a handful of models and datasets, tens of runs, thousands of
 * chunks per run; a chunk message holds a few KB of arrays.
 */
#include "runner.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hash.h"
#include "log.h"
#include "pool.h"

#ifndef QE_COMMIT
#define QE_COMMIT "unknown"
#endif

/* ---- writer messages ---- */

enum msg_kind { M_PLAN, M_CHUNK, M_WEIGHTS, M_TIMING, M_KLD, M_RUN_END, M_GEN_PROMPT,
                M_GEN_STEPS, M_GEN_END };

struct msg {
    enum msg_kind kind;
    char run_key[QE_STORE_KEY_HEX];
    char ref_key[QE_STORE_KEY_HEX];
    char dataset_key[QE_STORE_KEY_HEX], tokenizer_key[QE_STORE_KEY_HEX], tokens_key[QE_STORE_KEY_HEX];
    int64_t n_tokens, n_chunks;
    uint64_t bytes;
    char phase[80];        /* timings: a phase, or "kernel:" and a kernel name */
    double seconds;
    uint64_t n_calls;
    char status[16];
    qe_kld_summary kld;
    qe_store_chunk chunk;  /* arrays point into `data` */
    void *data;
    char **topk_json;      /* [chunk.n_scored] encoded on the evaluator's thread */
    /* generation runs: run_key holds the generation key */
    qe_store_gen_prompt gp; /* arrays point into `data` */
    uint8_t prompt_sha[32];
    qe_store_gen_step *steps;
    size_t n_steps;
};

struct writer {
    qe_store *st;
    const char *session;
};

static qe_status writer_run(void *ctx, void *job)
{
    struct writer *w = ctx;
    struct msg *m = job;
    switch (m->kind) {
    case M_PLAN: {
        qe_status r = qe_store_run_plan(w->st, m->run_key, m->n_tokens, m->n_chunks);
        if (r == QE_OK)
            r = qe_store_put_dataset_tokens(w->st, m->dataset_key, m->tokenizer_key,
                                            (uint64_t)m->n_tokens, m->tokens_key);
        return r;
    }
    case M_CHUNK: return qe_store_put_chunk(w->st, m->run_key, w->session, &m->chunk, NULL);
    case M_WEIGHTS: return qe_store_run_weight_bytes(w->st, m->run_key, m->bytes);
    case M_TIMING:
        return qe_store_add_timing(w->st, m->run_key, w->session, m->phase, m->seconds,
                                   (uint64_t)m->n_tokens, m->n_calls);
    case M_KLD: return qe_store_put_kld(w->st, m->run_key, m->ref_key, w->session, &m->kld);
    case M_RUN_END: return qe_store_run_end(w->st, m->run_key, m->status);
    case M_GEN_PROMPT: return qe_store_gen_put_prompt(w->st, m->run_key, w->session, &m->gp, NULL);
    case M_GEN_STEPS:
        return qe_store_gen_put_steps(w->st, m->run_key, w->session, m->steps, m->n_steps);
    case M_GEN_END: return qe_store_gen_end(w->st, m->run_key, m->status);
    }
    return qe_fail(QE_EINVAL, "writer: unknown message %d", (int)m->kind);
}

static void writer_free(void *ctx, void *job)
{
    (void)ctx;
    struct msg *m = job;
    for (int j = 0; m->topk_json && j < m->chunk.n_scored; j++)
        free(m->topk_json[j]);
    free(m->topk_json);
    free(m->data);
    free(m->steps);
    free(m);
}

struct qe_runner_sink {
    qe_pool *writer;
    const qe_runner_task *task;
    const char *dataset_key, *tokenizer_key;
    int planned;
    unsigned chunk_flags;
    int64_t sent;
    const qe_runner_gen_task *gen; /* generation runs: the task */
    qe_store_gen_step *steps;      /* buffered device calls */
    size_t n_steps, cap_steps;
};

static struct msg *new_msg(qe_runner_sink *s, enum msg_kind kind)
{
    struct msg *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->kind = kind;
    snprintf(m->run_key, sizeof m->run_key, "%s", s->task->run_key);
    if (s->task->ref_run_key)
        snprintf(m->ref_key, sizeof m->ref_key, "%s", s->task->ref_run_key);
    return m;
}

static qe_status send(qe_runner_sink *s, struct msg *m)
{
    if (!m)
        return qe_fail(QE_ENOMEM, "run %.12s: out of memory", s->task->run_key);
    return qe_pool_submit(s->writer, m); /* releases m on failure */
}

qe_status qe_runner_plan(qe_runner_sink *s, int64_t n_tokens, const uint8_t tokens_sha256[32],
                         int64_t n_chunks)
{
    struct msg *m = new_msg(s, M_PLAN);
    if (m) {
        m->n_tokens = n_tokens;
        m->n_chunks = n_chunks;
        snprintf(m->dataset_key, sizeof m->dataset_key, "%s", s->dataset_key);
        snprintf(m->tokenizer_key, sizeof m->tokenizer_key, "%s", s->tokenizer_key);
        qe_hash_hex(tokens_sha256, 32, m->tokens_key);
    }
    s->planned = 1;
    return send(s, m);
}

/* Copy len bytes to the next aligned spot of *cur. */
static const void *take(uint8_t **cur, const void *src, size_t len)
{
    if (!src || !len)
        return NULL;
    uint8_t *dst = *cur;
    memcpy(dst, src, len);
    *cur += (len + 15) & ~(size_t)15;
    return dst;
}

qe_status qe_runner_chunk(qe_runner_sink *s, const qe_store_chunk *c)
{
    if (!s->planned)
        return qe_fail(QE_EINVAL, "run %.12s: chunk %lld before the plan (call qe_runner_plan "
                       "first)", s->task->run_key, (long long)c->chunk);
    if (c->n_scored < 0 || c->top_k < 0 || c->n_logits < 0 || c->n_vocab < 0)
        return qe_fail(QE_EINVAL, "run %.12s: chunk %lld: negative sizes", s->task->run_key,
                       (long long)c->chunk);
    size_t ns = (size_t)c->n_scored, k = (size_t)c->top_k;
    size_t nl = c->logits ? (size_t)c->n_logits : 0, nv = (size_t)c->n_vocab;
    size_t a16 = 15;
    size_t sizes[] = {ns * 4, ns * 4, ns * 4, ns * k * 4, ns * k * 4, c->kld ? ns * 4 : 0,
                      nl * 4, nl * nv * 4};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + a16) & ~a16;
    struct msg *m = new_msg(s, M_CHUNK);
    uint8_t *data = m ? malloc(total ? total : 1) : NULL;
    if (!data) {
        free(m);
        return qe_fail(QE_ENOMEM, "run %.12s: out of memory for chunk %lld", s->task->run_key,
                       (long long)c->chunk);
    }
    m->data = data;
    m->chunk = *c;
    m->chunk.flags |= s->chunk_flags;
    uint8_t *cur = data;
    m->chunk.target = take(&cur, c->target, sizes[0]);
    m->chunk.logprob = take(&cur, c->logprob, sizes[1]);
    m->chunk.argmax = take(&cur, c->argmax, sizes[2]);
    m->chunk.topk_id = take(&cur, c->topk_id, sizes[3]);
    m->chunk.topk_logprob = take(&cur, c->topk_logprob, sizes[4]);
    m->chunk.kld = take(&cur, c->kld, sizes[5]);
    m->chunk.logit_pos = take(&cur, c->logit_pos, sizes[6]);
    m->chunk.logits = take(&cur, c->logits, sizes[7]);
    if (!c->logits)
        m->chunk.n_logits = 0;
    /* Formatting the top-k floats is most of a chunk write's CPU time: do it
     * here, beside the device work, rather than on the writer thread. */
    if (c->top_k && c->topk_id && c->topk_logprob && !(m->chunk.flags & QE_STORE_CHUNK_NO_TOKENS)) {
        m->topk_json = calloc(ns ? ns : 1, sizeof *m->topk_json);
        for (size_t j = 0; m->topk_json && j < ns; j++)
            if (!(m->topk_json[j] = qe_store_topk_json(c->topk_id + j * k, c->topk_logprob + j * k,
                                                       c->top_k))) {
                writer_free(NULL, m);
                return qe_fail(QE_ENOMEM, "run %.12s: out of memory for chunk %lld",
                               s->task->run_key, (long long)c->chunk);
            }
        if (!m->topk_json) {
            writer_free(NULL, m);
            return qe_fail(QE_ENOMEM, "run %.12s: out of memory", s->task->run_key);
        }
        m->chunk.topk_json = m->topk_json;
    }
    s->sent++;
    return send(s, m);
}

qe_status qe_runner_weight_bytes(qe_runner_sink *s, uint64_t bytes)
{
    struct msg *m = new_msg(s, M_WEIGHTS);
    if (m)
        m->bytes = bytes;
    return send(s, m);
}

/* A timings row: phase = prefix name. */
static qe_status send_timing(qe_runner_sink *s, const char *prefix, const char *name,
                             double seconds, uint64_t n_tokens, uint64_t n_calls)
{
    struct msg *m = new_msg(s, M_TIMING);
    if (m) {
        snprintf(m->phase, sizeof m->phase, "%s%s", prefix, name ? name : "");
        m->seconds = seconds;
        m->n_tokens = (int64_t)n_tokens;
        m->n_calls = n_calls;
    }
    return send(s, m);
}

qe_status qe_runner_timing(qe_runner_sink *s, const char *phase, double seconds,
                           uint64_t n_tokens)
{
    return send_timing(s, "", phase, seconds, n_tokens, 1);
}

qe_status qe_runner_kernel_timing(qe_runner_sink *s, const char *kernel, double seconds,
                                  uint64_t n_calls)
{
    return send_timing(s, "kernel:", kernel, seconds, 0, n_calls);
}

qe_status qe_runner_kld(qe_runner_sink *s, const qe_kld_summary *k)
{
    if (!s->task->ref_run_key)
        return qe_fail(QE_EINVAL, "run %.12s: a reference run has no KLD of its own",
                       s->task->run_key);
    struct msg *m = new_msg(s, M_KLD);
    if (m)
        m->kld = *k;
    return send(s, m);
}

qe_status qe_runner_gen_prompt(qe_runner_sink *s, const qe_store_gen_prompt *p)
{
    if (!s->gen)
        return qe_fail(QE_EINVAL, "run %.12s: a generation result outside a generation run",
                       s->task ? s->task->run_key : "?");
    if (p->n_gen < 0 || p->top_k < 0 || p->top_k > 64 || !p->prompt_sha256 || !p->finish)
        return qe_fail(QE_EINVAL, "generation %.12s: prompt %lld: bad sizes", s->gen->gen_key,
                       (long long)p->index);
    size_t ng = (size_t)p->n_gen, k = (size_t)p->top_k, a16 = 15;
    size_t sizes[] = {ng * 4, ng * 4, ng * k * 4, ng * k * 4, p->text_len + 1};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + a16) & ~a16;
    struct msg *m = calloc(1, sizeof *m);
    uint8_t *data = m ? malloc(total) : NULL;
    if (!data) {
        free(m);
        return qe_fail(QE_ENOMEM, "generation %.12s: out of memory", s->gen->gen_key);
    }
    m->kind = M_GEN_PROMPT;
    snprintf(m->run_key, sizeof m->run_key, "%s", s->gen->gen_key);
    m->data = data;
    m->gp = *p;
    memcpy(m->prompt_sha, p->prompt_sha256, 32);
    m->gp.prompt_sha256 = m->prompt_sha;
    uint8_t *cur = data;
    m->gp.ids = take(&cur, p->ids, sizes[0]);
    m->gp.logp = take(&cur, p->logp, sizes[1]);
    m->gp.topk_id = take(&cur, p->topk_id, sizes[2]);
    m->gp.topk_logp = take(&cur, p->topk_logp, sizes[3]);
    char *text = (char *)cur;
    if (p->text_len)
        memcpy(text, p->text, p->text_len);
    text[p->text_len] = '\0';
    m->gp.text = text;
    static const char *const finishes[] = {"eos", "stop", "length", "ctx"};
    m->gp.finish = NULL; /* a static string: the caller's may not outlive the call */
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(p->finish, finishes[i]))
            m->gp.finish = finishes[i];
    if (!m->gp.finish) {
        writer_free(NULL, m);
        return qe_fail(QE_EINVAL, "generation %.12s: prompt %lld: unknown finish '%s'",
                       s->gen->gen_key, (long long)p->index, p->finish);
    }
    s->sent++;
    return qe_pool_submit(s->writer, m);
}

qe_status qe_runner_gen_step(qe_runner_sink *s, const qe_store_gen_step *step)
{
    if (!s->gen)
        return qe_fail(QE_EINVAL, "a generation step outside a generation run");
    if (s->n_steps == s->cap_steps) {
        size_t cap = s->cap_steps ? 2 * s->cap_steps : 64;
        qe_store_gen_step *v = realloc(s->steps, cap * sizeof *v);
        if (!v)
            return qe_fail(QE_ENOMEM, "generation %.12s: out of memory", s->gen->gen_key);
        s->steps = v;
        s->cap_steps = cap;
    }
    s->steps[s->n_steps++] = *step;
    return QE_OK;
}

/* ---- models, datasets ---- */

struct model_slot {
    qe_model *m;
    char key[QE_STORE_KEY_HEX];
    char tok_key[QE_STORE_KEY_HEX];
    char *tok_path;
};

struct dataset_slot {
    qe_dataset *d;
    char key[QE_STORE_KEY_HEX];
};

/* The weights file of a model path: the .gguf / .safetensors itself, or an
 * HF directory's model.safetensors. */
static char *weights_file(const char *path, const char *name)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + strlen(name) + 2;
        char *p = malloc(n);
        if (p)
            snprintf(p, n, "%s/%s", path, name);
        return p;
    }
    if (!strcmp(name, "model.safetensors"))
        return strdup(path);
    /* a .safetensors path: the sibling file `name` */
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) : 1;
    size_t n = dir + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s/%s", (int)dir, slash ? path : ".", name);
    return p;
}

static char *hparams_json(const qe_model *m)
{
    const qe_hparams *h = qe_model_hparams(m);
    json_t *o = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:s,s:s,s:f,s:i,s:i,s:b}",
                          "n_vocab", h->n_vocab, "dim", h->dim, "n_layers", h->n_layers,
                          "n_heads", h->n_heads, "n_kv_heads", h->n_kv_heads, "head_dim",
                          h->head_dim, "n_rot", h->n_rot, "n_ff", h->n_ff, "n_ctx_train",
                          h->n_ctx_train, "rms_eps", (double)h->rms_eps, "rope_base",
                          (double)h->rope_base, "rope_layout",
                          qe_model_rope_layout_name(h->rope_layout), "rope_scaling",
                          qe_model_rope_scaling_name(h->rope_scaling), "rope_factor",
                          (double)h->rope_factor, "bos_id", h->bos_id, "eos_id", h->eos_id,
                          "tied", h->tied);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

static void count_type(json_t *o, const qe_tensor *t)
{
    if (!t->data)
        return;
    const char *name = qe_dtype_name(t->type);
    json_t *v = json_object_get(o, name);
    json_object_set_new(o, name, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static char *weight_types_json(const qe_model *m)
{
    const qe_weights *w = qe_model_weights(m);
    const qe_hparams *h = qe_model_hparams(m);
    json_t *o = json_object();
    if (!o)
        return NULL;
    count_type(o, &w->token_embd);
    count_type(o, &w->output_norm);
    if (!h->tied)
        count_type(o, &w->output);
    for (int32_t l = 0; l < h->n_layers; l++) {
        const qe_layer *y = &w->layers[l];
        const qe_tensor *ts[] = {&y->attn_norm, &y->wq, &y->wk, &y->wv, &y->wo,
                                 &y->ffn_norm, &y->w_gate, &y->w_up, &y->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            count_type(o, ts[i]);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static qe_status file_key(const char *path, char key[QE_STORE_KEY_HEX])
{
    uint8_t d[32];
    qe_status r = qe_hash_sha256_file(path, d);
    if (r == QE_OK)
        qe_hash_hex(d, 32, key);
    return r;
}

static qe_status open_model(const qe_job_model *spec, struct model_slot *s, qe_store *st)
{
    qe_status r = qe_model_open(spec->path, &s->m);
    if (r != QE_OK)
        return qe_fail_prefix(r, "[model %s]", spec->name);
    uint8_t d[32];
    r = qe_model_sha256(s->m, d);
    if (r != QE_OK)
        return r;
    qe_hash_hex(d, 32, s->key);
    int gguf = qe_model_format_of(s->m) == QE_MODEL_GGUF;
    if (spec->tokenizer) {
        s->tok_path = strdup(spec->tokenizer);
    } else if (gguf) {
        s->tok_path = strdup(spec->path);
    } else {
        s->tok_path = weights_file(spec->path, "tokenizer.json");
    }
    if (!s->tok_path)
        return qe_fail(QE_ENOMEM, "out of memory");
    if (!spec->tokenizer && gguf) {
        memcpy(s->tok_key, s->key, sizeof s->key); /* the vocabulary is in the .gguf */
    } else {
        r = file_key(s->tok_path, s->tok_key);
        if (r != QE_OK)
            return qe_fail_prefix(r, "[model %s]: tokenizer (set tokenizer = PATH)", spec->name);
    }
    if (!st)
        return QE_OK;
    char *wf = gguf ? strdup(spec->path) : weights_file(spec->path, "model.safetensors");
    struct stat sb;
    uint64_t file_bytes = wf && stat(wf, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    free(wf);
    char *hp = hparams_json(s->m), *wt = weight_types_json(s->m);
    qe_store_model row = {s->key, qe_model_name(s->m), spec->path, gguf ? "gguf" : "hf",
                          "llama", qe_model_n_params(s->m), qe_model_weight_bytes(s->m),
                          file_bytes, hp, wt};
    r = hp && wt ? qe_store_put_model(st, &row) : qe_fail(QE_ENOMEM, "out of memory");
    free(hp);
    free(wt);
    return r;
}

static qe_status open_dataset(const qe_job_dataset *spec, struct dataset_slot *s, qe_store *st)
{
    qe_dataset_opts o = {spec->kind, spec->field, spec->skip_bad_rows};
    qe_status r = qe_dataset_open(spec->path, &o, &s->d);
    if (r != QE_OK)
        return qe_fail_prefix(r, "[dataset %s]", spec->name);
    qe_hash_hex(qe_dataset_sha256(s->d), 32, s->key);
    if (!st)
        return QE_OK;
    char file_key_hex[QE_STORE_KEY_HEX];
    qe_hash_hex(qe_dataset_file_sha256(s->d), 32, file_key_hex);
    size_t n_skip = qe_dataset_n_skipped(s->d);
    qe_store_skip *skips = calloc(n_skip ? n_skip : 1, sizeof *skips);
    if (!skips)
        return qe_fail(QE_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_skip; i++) {
        const qe_dataset_skip *k = qe_dataset_skipped(s->d, i);
        skips[i] = (qe_store_skip){k->row, k->reason};
    }
    if (n_skip)
        qe_log_warn("[dataset %s]: %zu bad rows skipped (first: %s)", spec->name, n_skip,
                    skips[0].reason);
    qe_store_dataset row = {s->key, qe_dataset_kind_name(spec->kind), spec->path, spec->field,
                            file_key_hex, qe_dataset_file_bytes(s->d), qe_dataset_n_docs(s->d),
                            qe_dataset_doc_bytes(s->d), n_skip, skips};
    r = qe_store_put_dataset(st, &row);
    free(skips);
    return r;
}

/* ---- the job ---- */

static int in_shard(const qe_runner_opts *o, size_t i)
{
    return o->shard_count <= 1 || (int)(i % (size_t)o->shard_count) == o->shard_index;
}

static qe_store_run_config config_of(const qe_job *job, const qe_job_run *r,
                                     const struct model_slot *m, const struct dataset_slot *d)
{
    qe_store_run_config c = {"perplexity", m->key, d->key, m->tok_key, job->n_ctx,
                             r->weights, r->kv_k, r->kv_v, job->top_k, NULL};
    return c;
}

static qe_store_gen_config gen_config_of(const qe_job *job, const qe_job_run *r,
                                         const struct model_slot *m, const struct dataset_slot *d)
{
    const qe_job_generate *g = &job->generate;
    qe_store_gen_config c = {m->key, d->key, m->tok_key, r->weights, r->kv_k, r->kv_v,
                             g->max_new_tokens, g->sampling == QE_SAMPLE_RANDOM, g->temperature,
                             g->top_p, g->top_k, g->seed, g->n_stop,
                             (const char *const *)g->stop, g->stop_len, job->top_k};
    return c;
}

static int gen_in_shard(const qe_runner_opts *o, const qe_job *job, size_t g)
{
    return in_shard(o, job->n_runs + g);
}

/* Prompts the limit asks for are all stored. */
static int gen_complete(const uint8_t *done, size_t n, int64_t max_prompts)
{
    size_t want = max_prompts > 0 && (uint64_t)max_prompts < n ? (size_t)max_prompts : n;
    for (size_t i = 0; i < want; i++)
        if (!done || !done[i])
            return 0;
    return 1;
}

/* Chunks the limit asks for are all stored. */
static int complete(const qe_store_resume *r, int64_t max_chunks)
{
    if (r->n_chunks < 0)
        return 0;
    int64_t want = max_chunks > 0 && max_chunks < r->n_chunks ? max_chunks : r->n_chunks;
    for (int64_t i = 0; i < want; i++)
        if (!qe_store_resume_has(r, i))
            return 0;
    return 1;
}

/* The message that ends run (or generation) key in the store, its status
 * set by the caller; NULL when out of memory. */
static struct msg *end_msg(enum msg_kind kind, const char *key)
{
    struct msg *m = calloc(1, sizeof *m);
    if (m) {
        m->kind = kind;
        snprintf(m->run_key, sizeof m->run_key, "%s", key);
    }
    return m;
}

/* A run or generation failed with r (wr: the writer's own status). While
 * the writer works, store end as "failed" and return r with the failing
 * code's message (the writer's wait would otherwise replace it); else drop
 * end. */
static qe_status end_failed(qe_pool *writer, struct msg *end, qe_status r, qe_status wr)
{
    if (wr != QE_OK) {
        free(end);
        return r;
    }
    snprintf(end->status, sizeof end->status, "failed");
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", qe_errmsg());
    qe_pool_submit(writer, end);
    qe_pool_wait(writer);
    return qe_fail(r, "%s", msg);
}

static const char *end_status(const qe_store_resume *r)
{
    return r->n_chunks >= 0 && r->n_done >= r->n_chunks ? "done" : "partial";
}

qe_status qe_runner_run(const qe_job *job, const qe_runner_opts *o, qe_runner_stats *stats)
{
    qe_runner_stats tmp;
    if (!stats)
        stats = &tmp;
    memset(stats, 0, sizeof *stats);
    if (!o->evaluate && !o->dry_run)
        return qe_fail(QE_EUNSUPPORTED, "%s: no evaluator to run the job with", job->path);
    if (job->n_gen_runs && !o->generate && !o->dry_run)
        return qe_fail(QE_EUNSUPPORTED, "%s: no generator to run the [generate] section with",
                       job->path);
    if (o->shard_count > 1 && (o->shard_index < 0 || o->shard_index >= o->shard_count))
        return qe_fail(QE_EINVAL, "shard %d/%d: expected 0 <= index < count", o->shard_index,
                       o->shard_count);
    const char *db_path = o->db_path ? o->db_path : job->output;
    struct model_slot *models = calloc(job->n_models, sizeof *models);
    struct dataset_slot *datasets = calloc(job->n_datasets, sizeof *datasets);
    char (*keys)[QE_STORE_KEY_HEX] = calloc(job->n_runs + 1, sizeof *keys);
    qe_store_resume *resume = calloc(job->n_runs + 1, sizeof *resume);
    const size_t n_gen = job->n_gen_runs;
    char (*gkeys)[QE_STORE_KEY_HEX] = calloc(n_gen + 1, sizeof *gkeys);
    uint8_t **gdone = calloc(n_gen + 1, sizeof *gdone);
    size_t *gn_done = calloc(n_gen + 1, sizeof *gn_done);
    qe_store *st = NULL, *ro = NULL;
    qe_pool *writer = NULL;
    struct writer w = {NULL, NULL};
    char session[QE_STORE_KEY_HEX] = "";
    qe_status r = QE_OK;
    if (!models || !datasets || !keys || !resume || !gkeys || !gdone || !gn_done) {
        r = qe_fail(QE_ENOMEM, "out of memory");
        goto done;
    }

    /* 1. the store */
    struct stat sb;
    int db_exists = stat(db_path, &sb) == 0;
    if (!o->dry_run) {
        r = qe_store_open(db_path, job->sync_normal ? QE_STORE_SYNC_NORMAL : 0, 0, &st);
        if (r != QE_OK)
            goto done;
        char job_hex[QE_STORE_KEY_HEX];
        qe_hash_hex(job->sha256, 32, job_hex);
        qe_store_session ss = {job->name, job_hex, o->device ? o->device : "none",
                               o->driver ? o->driver : "none", QE_COMMIT, o->gemm};
        r = qe_store_session_begin(st, &ss, session);
        if (r != QE_OK)
            goto done;
    }
    if (db_exists || st) {
        r = qe_store_open(db_path, QE_STORE_READONLY, 0, &ro);
        if (r != QE_OK)
            goto done;
    }

    /* 2. models and datasets this shard needs */
    for (size_t i = 0; i < job->n_runs && r == QE_OK; i++) {
        if (!in_shard(o, i))
            continue;
        stats->runs++;
        const qe_job_run *run = &job->runs[i];
        if (!models[run->model].m)
            r = open_model(&job->models[run->model], &models[run->model], st);
        if (r == QE_OK && !datasets[run->dataset].d)
            r = open_dataset(&job->datasets[run->dataset], &datasets[run->dataset], st);
    }
    for (size_t g = 0; g < n_gen && r == QE_OK; g++) {
        if (!gen_in_shard(o, job, g))
            continue;
        stats->gen_runs++;
        const qe_job_run *run = &job->gen_runs[g];
        if (!models[run->model].m)
            r = open_model(&job->models[run->model], &models[run->model], st);
        if (r == QE_OK && !datasets[run->dataset].d)
            r = open_dataset(&job->datasets[run->dataset], &datasets[run->dataset], st);
    }
    if (r != QE_OK)
        goto done;

    /* 3. keys (of this shard's runs and their references, which share their
     * model and dataset) and run rows */
    for (size_t i = 0; i < job->n_runs && r == QE_OK; i++) {
        const qe_job_run *run = &job->runs[i];
        if (!models[run->model].m || !datasets[run->dataset].d)
            continue;
        qe_store_run_config c = config_of(job, run, &models[run->model], &datasets[run->dataset]);
        r = qe_store_run_key(&c, keys[i]);
    }
    for (size_t i = 0; i < job->n_runs && r == QE_OK; i++) {
        if (!in_shard(o, i))
            continue;
        const qe_job_run *run = &job->runs[i];
        const char *ref = run->ref >= 0 ? keys[run->ref] : NULL;
        if (st) {
            qe_store_run_config c = config_of(job, run, &models[run->model],
                                              &datasets[run->dataset]);
            r = qe_store_run_begin(st, &c, ref, session, &resume[i]);
        } else {
            snprintf(resume[i].run_key, sizeof resume[i].run_key, "%s", keys[i]);
            resume[i].n_chunks = -1;
            if (ro) {
                r = qe_store_run_resume(ro, keys[i], &resume[i]);
                if (r == QE_ENOTFOUND) {
                    qe_errclear();
                    resume[i].n_chunks = -1;
                    snprintf(resume[i].run_key, sizeof resume[i].run_key, "%s", keys[i]);
                    r = QE_OK;
                }
            }
        }
    }
    if (r != QE_OK)
        goto done;
    /* ... and the generation runs' keys and rows */
    for (size_t g = 0; g < n_gen && r == QE_OK; g++) {
        const qe_job_run *run = &job->gen_runs[g];
        if (!models[run->model].m || !datasets[run->dataset].d)
            continue;
        qe_store_gen_config c = gen_config_of(job, run, &models[run->model],
                                              &datasets[run->dataset]);
        r = qe_store_gen_key(&c, gkeys[g]);
    }
    for (size_t g = 0; g < n_gen && r == QE_OK; g++) {
        if (!gen_in_shard(o, job, g))
            continue;
        const qe_job_run *run = &job->gen_runs[g];
        size_t n_prompts = qe_dataset_n_docs(datasets[run->dataset].d);
        if (st) {
            qe_store_gen_config c = gen_config_of(job, run, &models[run->model],
                                                  &datasets[run->dataset]);
            r = qe_store_gen_begin(st, &c, run->ref >= 0 ? gkeys[run->ref] : NULL, session,
                                   n_prompts, &gdone[g], &gn_done[g]);
        } else if (ro) {
            r = qe_store_gen_stored(ro, gkeys[g], n_prompts, &gdone[g], &gn_done[g]);
        }
    }
    if (r != QE_OK)
        goto done;

    /* 4. the writer owns the write connection from here on */
    if (st) {
        w.st = st;
        w.session = session;
        qe_pool_opts po = {"writer", 1, (size_t)(o->queue > 0 ? o->queue : 64), writer_run,
                           writer_free, &w};
        r = qe_pool_new(&po, &writer);
        if (r != QE_OK)
            goto done;
    }

    /* 5. evaluate */
    for (size_t i = 0; i < job->n_runs && r == QE_OK; i++) {
        if (!in_shard(o, i))
            continue;
        const qe_job_run *run = &job->runs[i];
        qe_runner_task t = {job, i, run, &job->models[run->model], &job->datasets[run->dataset],
                            models[run->model].m, datasets[run->dataset].d,
                            models[run->model].tok_path, keys[i],
                            run->ref >= 0 ? keys[run->ref] : NULL, &resume[i], job->max_chunks};
        int todo = !complete(&resume[i], job->max_chunks);
        if (o->note)
            o->note(o->ud, &t, todo && !o->dry_run);
        if (o->dry_run)
            continue;
        qe_runner_sink sink = {writer, &t, datasets[run->dataset].key, models[run->model].tok_key,
                               0, job->store_tokens ? 0 : QE_STORE_CHUNK_NO_TOKENS, 0, NULL,
                               NULL, 0, 0};
        struct msg *end = end_msg(M_RUN_END, keys[i]);
        if (!end) {
            r = qe_fail(QE_ENOMEM, "out of memory");
            break;
        }
        if (!todo) {
            stats->complete++;
            snprintf(end->status, sizeof end->status, "%s", end_status(&resume[i]));
            r = qe_pool_submit(writer, end);
            continue;
        }
        stats->evaluated++;
        double t0 = qe_now();
        r = o->evaluate(o->ud, &t, &sink);
        stats->chunks_sent += sink.sent;
        qe_status wr = qe_pool_wait(writer);
        if (r == QE_OK && wr != QE_OK)
            r = wr;
        if (r == QE_OK && !sink.planned)
            r = qe_fail(QE_EINVAL, "run %.12s: the evaluator returned without a plan", keys[i]);
        if (r != QE_OK) {
            r = end_failed(writer, end, r, wr);
            break;
        }
        qe_store_resume now;
        r = qe_store_run_resume(ro, keys[i], &now);
        if (r != QE_OK) {
            free(end);
            break;
        }
        snprintf(end->status, sizeof end->status, "%s", end_status(&now));
        qe_store_resume_free(&now);
        struct msg *tm = calloc(1, sizeof *tm);
        if (tm) {
            tm->kind = M_TIMING;
            snprintf(tm->run_key, sizeof tm->run_key, "%s", keys[i]);
            snprintf(tm->phase, sizeof tm->phase, "run");
            tm->seconds = qe_now() - t0;
            r = qe_pool_submit(writer, tm);
        }
        if (r == QE_OK)
            r = qe_pool_submit(writer, end);
        else
            free(end);
    }

    /* 7. generation runs, after every perplexity run of the shard */
    for (size_t g = 0; g < n_gen && r == QE_OK; g++) {
        if (!gen_in_shard(o, job, g))
            continue;
        const qe_job_run *run = &job->gen_runs[g];
        size_t n_prompts = qe_dataset_n_docs(datasets[run->dataset].d);
        qe_runner_gen_task t = {job, g, run, &job->models[run->model],
                                &job->datasets[run->dataset], models[run->model].m,
                                datasets[run->dataset].d, models[run->model].tok_path, gkeys[g],
                                run->ref >= 0 ? gkeys[run->ref] : NULL, gdone[g], n_prompts,
                                gn_done[g], o->max_prompts};
        int todo = !gen_complete(gdone[g], n_prompts, o->max_prompts);
        if (o->gen_note)
            o->gen_note(o->ud, &t, todo && !o->dry_run);
        if (o->dry_run)
            continue;
        struct msg *end = end_msg(M_GEN_END, gkeys[g]);
        if (!end) {
            r = qe_fail(QE_ENOMEM, "out of memory");
            break;
        }
        if (!todo) {
            stats->gen_complete++;
            snprintf(end->status, sizeof end->status, "%s",
                     gen_complete(gdone[g], n_prompts, 0) ? "done" : "partial");
            r = qe_pool_submit(writer, end);
            continue;
        }
        stats->gen_evaluated++;
        qe_runner_sink sink = {writer, NULL, datasets[run->dataset].key,
                               models[run->model].tok_key, 1, 0, 0, &t, NULL, 0, 0};
        r = o->generate(o->ud, &t, &sink);
        stats->prompts_sent += sink.sent;
        if (sink.n_steps) { /* the steps of what was generated, even after a failure */
            struct msg *sm = calloc(1, sizeof *sm);
            if (sm) {
                sm->kind = M_GEN_STEPS;
                snprintf(sm->run_key, sizeof sm->run_key, "%s", gkeys[g]);
                sm->steps = sink.steps;
                sm->n_steps = sink.n_steps;
                sink.steps = NULL;
                qe_status sr = qe_pool_submit(writer, sm);
                if (r == QE_OK)
                    r = sr;
            }
        }
        free(sink.steps);
        qe_status wr = qe_pool_wait(writer);
        if (r == QE_OK && wr != QE_OK)
            r = wr;
        if (r != QE_OK) {
            r = end_failed(writer, end, r, wr);
            break;
        }
        uint8_t *now = NULL;
        size_t n_now = 0;
        r = qe_store_gen_stored(ro, gkeys[g], n_prompts, &now, &n_now);
        free(now);
        if (r != QE_OK) {
            free(end);
            break;
        }
        snprintf(end->status, sizeof end->status, "%s", n_now >= n_prompts ? "done" : "partial");
        r = qe_pool_submit(writer, end);
    }

done:
    /* 6. hand the write connection back, end the session */
    if (writer) {
        qe_status wr = qe_pool_shutdown(writer);
        if (r == QE_OK)
            r = wr;
        qe_pool_free(writer);
    }
    if (st && *session) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qe_errmsg());
        qe_status er = qe_store_session_end(st, session);
        if (r == QE_OK)
            r = er;
        else
            qe_fail(r, "%s", msg);
    }
    qe_store_close(ro);
    qe_store_close(st);
    for (size_t i = 0; resume && i < job->n_runs; i++)
        qe_store_resume_free(&resume[i]);
    for (size_t i = 0; models && i < job->n_models; i++) {
        qe_model_close(models[i].m);
        free(models[i].tok_path);
    }
    for (size_t i = 0; datasets && i < job->n_datasets; i++)
        qe_dataset_close(datasets[i].d);
    free(models);
    free(datasets);
    free(keys);
    free(resume);
    for (size_t g = 0; gdone && g < n_gen; g++)
        free(gdone[g]);
    free(gkeys);
    free(gdone);
    free(gn_done);
    return r;
}
