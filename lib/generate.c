/* generate.c - the generation loop over a prompt list (see generate.h).
 *
 * Workload: n prompts through n_slots KV-cache slots. Each iteration first
 * admits waiting prompts into free slots, then makes one device call:
 * a prefill call when any slot still has prompt tokens to feed (chunks of
 * several slots, at most max_rows tokens), else a decode call with one token
 * for every generating slot. Host work per generated token is O(top-k) for
 * sampling plus the stop-string scan of the text's tail.
 *
 * Threading: runs on the caller's thread; callbacks too.
 */
#include "generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "engine.h"
#include "log.h"

const char *qe_gen_finish_name(qe_gen_finish f)
{
    switch (f) {
    case QE_GEN_EOS: return "eos";
    case QE_GEN_STOP: return "stop";
    case QE_GEN_LENGTH: return "length";
    case QE_GEN_CTX: return "ctx";
    default: return "?";
    }
}

qe_gen_opts qe_gen_opts_default(void)
{
    qe_gen_opts o = {.max_new = 128, .n_slots = 8, .n_ctx = 0, .max_rows = 0, .top_k = 5,
                     .sample = qe_sample_opts_default(), .stop = NULL, .n_stop = 0,
                     .parse_special = 0, .kv_k = QE_KV_F32, .kv_v = QE_KV_F32, .device = NULL,
                     .progress = 0};
    return o;
}

/* One slot's sequence in flight. */
typedef struct gen_slot {
    int active;
    size_t job;            /* prompt index */
    int fed;               /* prompt tokens prefilled so far */
    int n_gen;
    int32_t pending;       /* the last generated token, fed by the next decode call */
    int32_t *ids;          /* [cap] */
    float *logp;           /* [cap] */
    int32_t *tki;          /* [cap][top_k] */
    float *tkp;            /* [cap][top_k] */
    char *text;            /* [text_cap], NUL-terminated */
    size_t text_len, text_cap;
    int stop_index;
    uint64_t seed;
    qe_sample_rng rng;
    double t_admit, t_first, t_last;
} gen_slot;

typedef struct gen {
    const qe_gen_opts *o;
    const qe_tokenizer *tok;
    const char *const *prompts;
    const size_t *lens;
    qe_tokenizer_ids *pids; /* [n] tokenized prompts */
    size_t n;
    int32_t eos;
    int n_ctx, dk;          /* context per slot; device top-k */
    int cap;                /* tokens a slot can generate at most */
    gen_slot *slots;        /* [n_slots] */
    int n_slots;
    double t0;
    qe_gen_result_fn on_result;
    void *ud;
    qe_gen_stats *st;
} gen;

static size_t prompt_len(const gen *g, size_t i)
{
    return g->lens ? g->lens[i] : strlen(g->prompts[i]);
}

static qe_status check_opts(const qe_gen_opts *o, size_t n)
{
    if (n == 0)
        return qe_fail(QE_EINVAL, "generate: no prompts");
    if (o->max_new < 1)
        return qe_fail(QE_EINVAL, "generate: max_new %d must be >= 1", o->max_new);
    if (o->n_slots < 1 || o->n_slots > (1 << 16))
        return qe_fail(QE_EINVAL, "generate: %d slots; 1 .. %d allowed", o->n_slots, 1 << 16);
    if (o->n_ctx < 0 || o->max_rows < 0)
        return qe_fail(QE_EINVAL, "generate: n_ctx and max_rows must be >= 0");
    if (o->top_k < 0 || o->top_k > QE_ENGINE_TOP_K_MAX)
        return qe_fail(QE_EINVAL, "generate: top-k %d is outside 0 .. %d", o->top_k,
                       QE_ENGINE_TOP_K_MAX);
    if (o->n_stop < 0 || (o->n_stop > 0 && !o->stop))
        return qe_fail(QE_EINVAL, "generate: bad stop-string list");
    for (int i = 0; i < o->n_stop; i++)
        if (!o->stop[i] || !o->stop[i][0])
            return qe_fail(QE_EINVAL, "generate: stop string %d is empty", i);
    return qe_sample_check(&o->sample);
}

/* Tokenize every prompt and choose the context. */
static qe_status prepare(gen *g, const qe_hparams *hp)
{
    const qe_gen_opts *o = g->o;
    unsigned flags = QE_TOK_ADD_SPECIAL | (o->parse_special ? QE_TOK_PARSE_SPECIAL : 0);
    size_t longest = 0, at = 0;
#define QE_GEN_INDEX(i) (o->index ? o->index[i] : (i)) /* as the caller numbers prompts */
    for (size_t i = 0; i < g->n; i++) {
        qe_status st = qe_tokenizer_encode(g->tok, g->prompts[i], prompt_len(g, i), flags, &g->pids[i]);
        if (st != QE_OK)
            return qe_fail_prefix(st, "generate: prompt %zu", QE_GEN_INDEX(i));
        if (g->pids[i].n == 0)
            return qe_fail(QE_EINVAL, "generate: prompt %zu is empty (and the model adds no BOS)",
                           QE_GEN_INDEX(i));
        if (g->pids[i].n > longest) {
            longest = g->pids[i].n;
            at = i;
        }
    }
    int64_t ctx = o->n_ctx;
    if (ctx == 0) {
        ctx = (int64_t)longest + o->max_new;
        if (hp->n_ctx_train > 0 && ctx > hp->n_ctx_train)
            ctx = hp->n_ctx_train;
    }
    if (ctx > (1 << 20))
        ctx = 1 << 20;
    if ((int64_t)longest > ctx)
        return qe_fail(QE_EINVAL, "generate: prompt %zu has %zu tokens; the context holds %lld%s",
                       QE_GEN_INDEX(at), longest, (long long)ctx,
                       o->n_ctx ? " (--ctx)" : " (the model's training context; see --ctx)");
#undef QE_GEN_INDEX
    g->n_ctx = (int)ctx;
    g->cap = o->max_new < g->n_ctx + 1 ? o->max_new : g->n_ctx + 1;
    return QE_OK;
}

static qe_status slots_alloc(gen *g)
{
    g->slots = calloc((size_t)g->n_slots, sizeof *g->slots);
    if (!g->slots)
        return qe_fail(QE_ENOMEM, "generate: out of memory");
    const size_t cap = (size_t)g->cap, k = (size_t)(g->o->top_k ? g->o->top_k : 1);
    for (int s = 0; s < g->n_slots; s++) {
        gen_slot *sl = &g->slots[s];
        sl->ids = malloc(cap * sizeof *sl->ids);
        sl->logp = malloc(cap * sizeof *sl->logp);
        sl->tki = malloc(cap * k * sizeof *sl->tki);
        sl->tkp = malloc(cap * k * sizeof *sl->tkp);
        sl->text_cap = 256;
        sl->text = malloc(sl->text_cap);
        if (!sl->ids || !sl->logp || !sl->tki || !sl->tkp || !sl->text)
            return qe_fail(QE_ENOMEM, "generate: out of memory");
    }
    return QE_OK;
}

static void slots_free(gen *g)
{
    for (int s = 0; g->slots && s < g->n_slots; s++) {
        gen_slot *sl = &g->slots[s];
        free(sl->ids);
        free(sl->logp);
        free(sl->tki);
        free(sl->tkp);
        free(sl->text);
    }
    free(g->slots);
}

static qe_status admit(gen *g, qe_decode *d, int s, size_t job)
{
    gen_slot *sl = &g->slots[s];
    sl->active = 1;
    sl->job = job;
    sl->fed = sl->n_gen = 0;
    sl->text_len = 0;
    sl->text[0] = '\0';
    sl->stop_index = -1;
    sl->seed = qe_sample_seed(g->o->sample.seed, g->o->index ? g->o->index[job] : job);
    qe_sample_rng_init(&sl->rng, sl->seed);
    sl->t_admit = qe_now();
    sl->t_first = sl->t_last = 0;
    return qe_decode_reset(d, s);
}

static qe_status finish(gen *g, gen_slot *sl, qe_gen_finish why)
{
    const qe_tokenizer_ids *p = &g->pids[sl->job];
    qe_gen_result r = {
        .index = g->o->index ? g->o->index[sl->job] : sl->job, .prompt = g->prompts[sl->job],
        .prompt_len = prompt_len(g, sl->job),
        .n_prompt = (int)p->n, .prompt_ids = p->v, .n_gen = sl->n_gen, .ids = sl->ids,
        .logp = sl->logp, .top_k = g->o->top_k, .topk_id = sl->tki, .topk_logp = sl->tkp,
        .text = sl->text, .text_len = sl->text_len, .finish = why, .stop_index = sl->stop_index,
        .seed = sl->seed, .wait_s = sl->t_admit - g->t0, .ttft_s = sl->t_first - sl->t_admit,
        .decode_s = sl->t_last - sl->t_first};
    r.prefill_tps = r.ttft_s > 0 ? (double)r.n_prompt / r.ttft_s : 0;
    r.decode_tps = r.n_gen > 1 && r.decode_s > 0 ? (double)(r.n_gen - 1) / r.decode_s : 0;
    sl->active = 0;
    g->st->gen_tokens += sl->n_gen;
    return g->on_result ? g->on_result(g->ud, &r) : QE_OK;
}

/* Append token id's text; return the index of a stop string now present in
 * the text (the text cut before it), or -1. */
static qe_status append_text(gen *g, gen_slot *sl, int32_t id, int *hit)
{
    *hit = -1;
    qe_tokenizer_attr a = qe_tokenizer_attr_of(g->tok, id);
    if (a == QE_TOKATTR_CONTROL || a == QE_TOKATTR_UNKNOWN)
        return QE_OK; /* as qe_tokenizer_decode renders them: nothing */
    size_t pl = 0;
    const char *piece = qe_tokenizer_piece(g->tok, id, &pl);
    if (!piece || pl == 0)
        return QE_OK;
    if (sl->text_len + pl + 1 > sl->text_cap) {
        size_t cap = sl->text_cap * 2 > sl->text_len + pl + 1 ? sl->text_cap * 2 : sl->text_len + pl + 1;
        char *t = realloc(sl->text, cap);
        if (!t)
            return qe_fail(QE_ENOMEM, "generate: out of memory for generated text");
        sl->text = t;
        sl->text_cap = cap;
    }
    const size_t old = sl->text_len;
    memcpy(sl->text + old, piece, pl);
    sl->text_len += pl;
    sl->text[sl->text_len] = '\0';
    /* Only matches that end in the new bytes are new; the earliest wins. */
    size_t best = SIZE_MAX;
    for (int i = 0; i < g->o->n_stop; i++) {
        const char *stop = g->o->stop[i];
        const size_t sn = strlen(stop);
        if (sn > sl->text_len)
            continue;
        for (size_t at = old + 1 >= sn ? old + 1 - sn : 0; at + sn <= sl->text_len; at++)
            if (memcmp(sl->text + at, stop, sn) == 0) {
                if (at < best) {
                    best = at;
                    *hit = i;
                }
                break;
            }
    }
    if (*hit >= 0) {
        sl->text_len = best;
        sl->text[best] = '\0';
    }
    return QE_OK;
}

/* Take the next token of slot sl from its row of device results. */
static qe_status take_token(gen *g, gen_slot *sl, const int32_t *tki, const float *tkp, int *done)
{
    const int dk = g->dk, k = g->o->top_k;
    const int c = qe_sample_pick(&g->o->sample, tkp, dk, &sl->rng);
    const int32_t id = tki[c];
    const int n = sl->n_gen;
    sl->ids[n] = id;
    sl->logp[n] = tkp[c];
    memcpy(sl->tki + (size_t)n * k, tki, (size_t)k * sizeof *tki);
    memcpy(sl->tkp + (size_t)n * k, tkp, (size_t)k * sizeof *tkp);
    sl->n_gen = n + 1;
    sl->t_last = qe_now();
    if (n == 0)
        sl->t_first = sl->t_last;
    sl->pending = id;
    *done = 0;
    if (id == g->eos) {
        *done = 1;
        return finish(g, sl, QE_GEN_EOS);
    }
    int hit = -1;
    qe_status st = append_text(g, sl, id, &hit);
    if (st != QE_OK)
        return st;
    qe_gen_finish why = QE_GEN_EOS;
    if (hit >= 0) {
        sl->stop_index = hit;
        why = QE_GEN_STOP;
    } else if (sl->n_gen >= g->o->max_new) {
        why = QE_GEN_LENGTH;
    } else if ((int64_t)g->pids[sl->job].n + sl->n_gen > g->n_ctx) {
        why = QE_GEN_CTX; /* no position left for the pending token */
    } else {
        return QE_OK;
    }
    *done = 1;
    return finish(g, sl, why);
}

static qe_status loop(gen *g, qe_decode *d, qe_gen_step_fn on_step)
{
    const int ns = g->n_slots, dk = g->dk, max_rows = qe_decode_max_rows(d);
    qe_status st = QE_OK;
    qe_decode_seq *seqs = malloc((size_t)ns * sizeof *seqs);
    int *slot_of = malloc((size_t)ns * sizeof *slot_of);
    int32_t *tki = malloc((size_t)ns * dk * sizeof *tki);
    float *tkp = malloc((size_t)ns * dk * sizeof *tkp);
    qe_progress pg;
    size_t next = 0, n_done = 0;
    int64_t step = 0;
    if (!seqs || !slot_of || !tki || !tkp) {
        st = qe_fail(QE_ENOMEM, "generate: out of memory");
        goto done;
    }
    /* Progress in tokens run (prompts + generated) against the most there
     * can be, every prompt generating max_new: a bound, reached only then. */
    uint64_t bound = 0, run = 0;
    for (size_t i = 0; i < g->n; i++)
        bound += g->pids[i].n + (uint64_t)g->o->max_new;
    if (g->o->progress)
        qe_progress_begin(&pg, "generate", bound);
    while (n_done < g->n) {
        for (int s = 0; s < ns && next < g->n; s++)
            if (!g->slots[s].active && (st = admit(g, d, s, next++)) != QE_OK)
                goto done;
        int n = 0, rows = 0, prefill = 0;
        for (int s = 0; s < ns && rows < max_rows; s++) {
            gen_slot *sl = &g->slots[s];
            const int left = sl->active ? (int)g->pids[sl->job].n - sl->fed : 0;
            if (left <= 0)
                continue;
            const int take = left < max_rows - rows ? left : max_rows - rows;
            seqs[n] = (qe_decode_seq){.slot = s, .n_tok = take, .tokens = g->pids[sl->job].v + sl->fed};
            slot_of[n++] = s;
            rows += take;
            prefill = 1;
        }
        for (int s = 0; !prefill && s < ns; s++)
            if (g->slots[s].active) {
                seqs[n] = (qe_decode_seq){.slot = s, .n_tok = 1, .tokens = &g->slots[s].pending};
                slot_of[n++] = s;
                rows++;
            }
        QE_ASSERT(n > 0);
        qe_decode_out out = {.topk_id = tki, .topk_logp = tkp};
        const double t = qe_now();
        if ((st = qe_decode_run(d, n, seqs, &out)) != QE_OK)
            goto done;
        const double dt = qe_now() - t;
        if (prefill) {
            g->st->prefill_s += dt;
            g->st->prefill_calls++;
            g->st->prompt_tokens += rows;
        } else {
            g->st->decode_s += dt;
            g->st->decode_calls++;
            g->st->decode_rows += rows;
        }
        qe_gen_step sp = {.index = step++, .prefill = prefill, .n_seqs = n, .n_tokens = rows,
                          .seconds = dt};
        if (on_step && (st = on_step(g->ud, &sp)) != QE_OK)
            goto done;
        for (int i = 0; i < n; i++) {
            gen_slot *sl = &g->slots[slot_of[i]];
            if (prefill) {
                sl->fed += seqs[i].n_tok;
                if (sl->fed < (int)g->pids[sl->job].n)
                    continue; /* more of the prompt to come: no token yet */
            }
            int fin = 0;
            if ((st = take_token(g, sl, tki + (size_t)i * dk, tkp + (size_t)i * dk, &fin)) != QE_OK)
                goto done;
            n_done += (size_t)fin;
        }
        run += (uint64_t)rows;
        if (g->o->progress)
            qe_progress_update(&pg, run);
    }
    if (g->o->progress)
        qe_progress_end(&pg, run);
done:
    free(seqs);
    free(slot_of);
    free(tki);
    free(tkp);
    return st;
}

qe_status qe_generate(const qe_model *m, const qe_tokenizer *tok, qe_cl *cl,
                      const char *const *prompts, const size_t *lens, size_t n,
                      const qe_gen_opts *o, qe_gen_result_fn on_result, qe_gen_step_fn on_step,
                      void *ud, qe_gen_stats *stats)
{
    qe_gen_opts def = qe_gen_opts_default();
    qe_gen_stats local;
    o = o ? o : &def;
    stats = stats ? stats : &local;
    memset(stats, 0, sizeof *stats);
    gen g = {.o = o, .tok = tok, .prompts = prompts, .lens = lens, .n = n,
             .on_result = on_result, .ud = ud, .st = stats};
    qe_cl *own = NULL;
    qe_engine *e = NULL;
    qe_decode *d = NULL;
    qe_status st = check_opts(o, n);
    if (st != QE_OK)
        return st;
    const qe_hparams *hp = qe_model_hparams(m);
    g.pids = calloc(n, sizeof *g.pids);
    if (!g.pids)
        return qe_fail(QE_ENOMEM, "generate: out of memory");
    if ((st = prepare(&g, hp)) != QE_OK)
        goto done;
    g.eos = qe_tokenizer_eos(tok) >= 0 ? qe_tokenizer_eos(tok) : hp->eos_id;
    g.n_slots = (size_t)o->n_slots < n ? o->n_slots : (int)n;
    /* The device top-k: what the result records, and what sampling may pick from. */
    int want = o->sample.temp > 0 ? (o->sample.top_k > 0 ? o->sample.top_k : QE_ENGINE_TOP_K_MAX) : 1;
    want = want > QE_ENGINE_TOP_K_MAX ? QE_ENGINE_TOP_K_MAX : want;
    g.dk = o->top_k > want ? o->top_k : want;
    g.dk = g.dk > hp->n_vocab ? hp->n_vocab : g.dk;
    if (o->top_k > g.dk) {
        st = qe_fail(QE_EINVAL, "generate: top-k %d is above the vocabulary (%d)", o->top_k, hp->n_vocab);
        goto done;
    }
    if ((st = slots_alloc(&g)) != QE_OK)
        goto done;

    const double t_up = qe_now();
    if (!cl) {
        if ((st = qe_cl_open(o->device, 0, &own)) != QE_OK)
            goto done;
        cl = own;
    }
    snprintf(stats->device, sizeof stats->device, "%s", qe_cl_device(cl)->name);
    qe_engine_opts eo = qe_engine_opts_default();
    eo.n_ctx = g.n_ctx;
    eo.n_seq = g.n_slots;
    eo.top_k = g.dk;
    eo.head_rows = 1; /* the decoder has its own logits buffer */
    eo.kv_k = o->kv_k;
    eo.kv_v = o->kv_v;
    qe_decode_opts dopt = qe_decode_opts_default();
    dopt.max_rows = o->max_rows;
    if ((st = qe_engine_open(cl, m, &eo, &e)) != QE_OK || (st = qe_decode_open(e, &dopt, &d)) != QE_OK)
        goto done;
    stats->upload_s = qe_now() - t_up;
    stats->n_prompts = n;
    stats->n_slots = g.n_slots;
    stats->n_ctx = g.n_ctx;
    stats->max_rows = qe_decode_max_rows(d);
    g.t0 = qe_now();
    st = loop(&g, d, on_step);
    stats->wall_s = qe_now() - g.t0;
done:
    qe_decode_close(d);
    qe_engine_close(e);
    qe_cl_close(own);
    slots_free(&g);
    for (size_t i = 0; i < n; i++)
        qe_tokenizer_ids_free(&g.pids[i]);
    free(g.pids);
    return st;
}
