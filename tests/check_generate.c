/* check_generate.c - the generation loop (lib/generate.h) on PoCL with real
 * models: greedy continuations against the C reference (tokens, log-probs,
 * text, EOS), outputs independent of the number of slots and of the other
 * prompts (continuous batching, chunked prompts), reproducible seeded
 * sampling, the stop rules, and the error paths.
 *
 * The reference continuation is computed here with qe_ref_step (double
 * precision) and a host arg-max; texts are checked against
 * qe_tokenizer_decode of prompt + generation. OpenCL is opened lazily in the
 * forked test process (see check_engine.c).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "generate.h"
#include "model.h"
#include "ref.h"
#include "testutil.h"
#include "tokenizer.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())
#define TOL 1e-4

/* ---- shared context ---- */


/* ---- collected results ---- */

typedef struct got {
    int done;
    int n_prompt, n_gen, top_k;
    int32_t ids[512];
    float logp[512];
    int32_t tki[512 * 8];
    float tkp[512 * 8];
    char text[4096];
    size_t text_len;
    qe_gen_finish finish;
    int stop_index;
} got;

typedef struct run {
    got *g;      /* [n] */
    size_t n;
    int order_errors;
    int prefill_after_decode; /* a slot was refilled after decoding began */
    int decoded;
    int max_seqs;
    qe_status fail_result, fail_step; /* inject callback failures */
} run;

static qe_status on_result(void *ud, const qe_gen_result *r)
{
    run *rn = ud;
    if (rn->fail_result)
        return qe_fail(rn->fail_result, "injected result failure");
    ck_assert_uint_lt(r->index, rn->n);
    got *g = &rn->g[r->index];
    ck_assert_int_eq(g->done, 0);
    ck_assert_int_le(r->n_gen, 512);
    ck_assert_int_le(r->top_k, 8);
    ck_assert_uint_lt(r->text_len, sizeof g->text);
    ck_assert_uint_eq(strlen(r->text), r->text_len);
    g->done = 1;
    g->n_prompt = r->n_prompt;
    g->n_gen = r->n_gen;
    g->top_k = r->top_k;
    memcpy(g->ids, r->ids, (size_t)r->n_gen * sizeof *r->ids);
    memcpy(g->logp, r->logp, (size_t)r->n_gen * sizeof *r->logp);
    memcpy(g->tki, r->topk_id, (size_t)r->n_gen * r->top_k * sizeof *r->topk_id);
    memcpy(g->tkp, r->topk_logp, (size_t)r->n_gen * r->top_k * sizeof *r->topk_logp);
    memcpy(g->text, r->text, r->text_len + 1);
    g->text_len = r->text_len;
    g->finish = r->finish;
    g->stop_index = r->stop_index;
    ck_assert(r->ttft_s >= 0 && r->wait_s >= 0 && r->decode_s >= 0);
    return QE_OK;
}

static qe_status on_step(void *ud, const qe_gen_step *s)
{
    run *rn = ud;
    if (rn->fail_step)
        return qe_fail(rn->fail_step, "injected step failure");
    if (!s->prefill)
        rn->decoded = 1;
    else if (rn->decoded)
        rn->prefill_after_decode = 1;
    rn->max_seqs = s->n_seqs > rn->max_seqs ? s->n_seqs : rn->max_seqs;
    ck_assert_int_ge(s->n_tokens, s->n_seqs);
    return QE_OK;
}

static run *gen_run(const qe_model *m, const qe_tokenizer *tok, const char *const *prompts,
                    size_t n, const qe_gen_opts *o)
{
    run *rn = calloc(1, sizeof *rn);
    ck_assert_ptr_nonnull(rn);
    rn->g = calloc(n, sizeof *rn->g);
    ck_assert_ptr_nonnull(rn->g);
    rn->n = n;
    qe_gen_stats st;
    OK(qe_generate(m, tok, qe_test_cl(), prompts, NULL, n, o, on_result, on_step, rn, &st));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(rn->g[i].done, "prompt %zu never finished", i);
    ck_assert_uint_eq(st.n_prompts, n);
    return rn;
}

static void run_free(run *rn)
{
    free(rn->g);
    free(rn);
}

/* Bit-identical results. */
static void same_got(const got *a, const got *b, size_t i)
{
    ck_assert_msg(a->n_gen == b->n_gen, "prompt %zu: %d vs %d tokens", i, a->n_gen, b->n_gen);
    ck_assert_msg(memcmp(a->ids, b->ids, (size_t)a->n_gen * sizeof *a->ids) == 0, "prompt %zu: ids", i);
    ck_assert_msg(memcmp(a->logp, b->logp, (size_t)a->n_gen * sizeof *a->logp) == 0,
                  "prompt %zu: log-probs", i);
    ck_assert_msg(memcmp(a->tkp, b->tkp, (size_t)a->n_gen * a->top_k * sizeof *a->tkp) == 0,
                  "prompt %zu: top-k log-probs", i);
    ck_assert_msg(memcmp(a->tki, b->tki, (size_t)a->n_gen * a->top_k * sizeof *a->tki) == 0,
                  "prompt %zu: top-k ids", i);
    ck_assert_str_eq(a->text, b->text);
    ck_assert_int_eq(a->finish, b->finish);
}

/* ---- the reference ---- */

static int argmax2(const double *z, int n, double *margin)
{
    int b = 0, s = -1;
    for (int i = 1; i < n; i++)
        if (z[i] > z[b]) {
            s = b;
            b = i;
        } else if (s < 0 || z[i] > z[s]) {
            s = i;
        }
    *margin = z[b] - z[s];
    return b;
}

/* Compare a greedy generation with the reference fed the same tokens: every
 * log-prob and top-k log-prob within TOL, and the device's choice equal to
 * the reference arg-max wherever the reference has a clear margin (a near-
 * tie may legitimately go either way; the comparison stops there). Returns
 * the number of tokens whose choice was checked. */
static int check_ref(const qe_model *m, const qe_tokenizer *tok, const char *prompt, const got *g,
                     int max_new)
{
    const int nv = qe_model_hparams(m)->n_vocab;
    qe_tokenizer_ids p = {0};
    OK(qe_tokenizer_encode(tok, prompt, strlen(prompt), QE_TOK_ADD_SPECIAL, &p));
    ck_assert_int_eq((int)p.n, g->n_prompt);
    qe_ref *r = NULL;
    OK(qe_ref_new(m, (int)p.n + max_new, &r));
    double *z = malloc((size_t)nv * sizeof *z);
    ck_assert_ptr_nonnull(z);
    for (size_t i = 0; i < p.n; i++)
        OK(qe_ref_step(r, p.v[i], (int)i, z));
    int checked = 0;
    const int32_t eos = qe_tokenizer_eos(tok);
    for (int t = 0; t < g->n_gen; t++) {
        double margin, mx, se = 0;
        int best = argmax2(z, nv, &margin);
        mx = z[best];
        for (int i = 0; i < nv; i++)
            se += exp(z[i] - mx);
        const double lse = mx + log(se);
        ck_assert_msg(fabs(g->logp[t] - (z[g->ids[t]] - lse)) < TOL, "token %d: log-prob %.7f, ref %.7f",
                      t, (double)g->logp[t], z[g->ids[t]] - lse);
        for (int j = 0; j < g->top_k; j++) {
            const int32_t id = g->tki[t * g->top_k + j];
            ck_assert(id >= 0 && id < nv);
            ck_assert_msg(fabs(g->tkp[t * g->top_k + j] - (z[id] - lse)) < TOL, "token %d top-%d", t, j);
        }
        if (margin <= TOL)
            break;
        ck_assert_msg(g->ids[t] == best, "token %d: generated %d, reference %d", t, g->ids[t], best);
        checked++;
        if (best == eos) {
            ck_assert_int_eq(g->finish, QE_GEN_EOS);
            ck_assert_int_eq(t, g->n_gen - 1);
            break;
        }
        if (t + 1 < g->n_gen)
            OK(qe_ref_step(r, g->ids[t], (int)p.n + t, z));
    }
    /* The text: decoding prompt + generation gives the prompt's text, then this. */
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    OK(qe_tokenizer_decode(tok, p.v, p.n, 0, &a, &al));
    int32_t *all = malloc((p.n + (size_t)g->n_gen) * sizeof *all);
    ck_assert_ptr_nonnull(all);
    memcpy(all, p.v, p.n * sizeof *all);
    memcpy(all + p.n, g->ids, (size_t)g->n_gen * sizeof *all);
    OK(qe_tokenizer_decode(tok, all, p.n + (size_t)g->n_gen, 0, &b, &bl));
    ck_assert_uint_eq(bl, al + g->text_len);
    ck_assert(memcmp(b, a, al) == 0 && memcmp(b + al, g->text, g->text_len) == 0);
    free(all);
    free(a);
    free(b);
    free(z);
    qe_ref_free(r);
    qe_tokenizer_ids_free(&p);
    return checked;
}

static void open_model(const char *rel, qe_model **m, qe_tokenizer **tok)
{
    OK(qe_model_open(qe_test_data(rel), m));
    OK(qe_tokenizer_open(qe_test_data(rel), tok));
}

/* ---- tests ---- */

static const char *const stories[] = {
    "Once upon a time", "The little dog", "Lily and Tom went to the park. They saw", "Sam had a red",
    "One day, a big bird", "Mom said", "The cat was sad because", "Tim", "There was a tree",
    "Ben wanted to play with his", "The sun was hot and", "Sue found a box. Inside the box",
    "A girl named Amy", "The king", "It was a rainy day and", "The fish swam", "Max liked to",
    "The boy ran", "Anna saw a little", "They played", "The old man had a", "Kitty", "Bob and his dad",
    "In the garden there was",
};
#define N_STORIES (sizeof stories / sizeof stories[0])

START_TEST(test_vs_ref)
{
    qe_model *m;
    qe_tokenizer *tok;
    open_model("models/stories260K.gguf", &m, &tok);
    qe_gen_opts o = qe_gen_opts_default();
    o.max_new = 24;
    o.n_slots = 2;
    o.top_k = 5;
    run *rn = gen_run(m, tok, stories, 3, &o);
    for (size_t i = 0; i < 3; i++) {
        const got *g = &rn->g[i];
        ck_assert_int_eq(g->finish, QE_GEN_LENGTH);
        ck_assert_int_eq(g->n_gen, 24);
        ck_assert_int_ge(check_ref(m, tok, stories[i], g, o.max_new), 20);
    }
    run_free(rn);
    qe_tokenizer_close(tok);
    qe_model_close(m);
}
END_TEST

/* TinyStories-656K ends its stories with EOS: the run stops there, as the
 * reference's greedy continuation does. */
START_TEST(test_eos)
{
    qe_model *m;
    qe_tokenizer *tok;
    open_model("models/TinyStories-656K", &m, &tok);
    qe_gen_opts o = qe_gen_opts_default();
    o.max_new = 400;
    o.top_k = 3;
    const char *p[] = {"Once upon a time"};
    run *rn = gen_run(m, tok, p, 1, &o);
    const got *g = &rn->g[0];
    ck_assert_int_eq(g->finish, QE_GEN_EOS);
    ck_assert_int_lt(g->n_gen, 400);
    ck_assert_int_eq(g->ids[g->n_gen - 1], qe_tokenizer_eos(tok));
    ck_assert_int_eq(check_ref(m, tok, p[0], g, o.max_new), g->n_gen);
    run_free(rn);
    qe_tokenizer_close(tok);
    qe_model_close(m);
}
END_TEST

/* Outputs do not depend on the slots, the call size or the neighbours:
 * 24 prompts one at a time vs 16 slots refilled as prompts stop (at
 * different lengths: stop string "."), prompts chunked by max_rows 24; the
 * first prompt alone; and the same for seeded sampling. */
START_TEST(test_batch_independence)
{
    qe_model *m;
    qe_tokenizer *tok;
    open_model("models/stories260K.gguf", &m, &tok);
    const char *stop[] = {"."};
    qe_gen_opts o = qe_gen_opts_default();
    o.max_new = 40;
    o.top_k = 4;
    o.stop = stop;
    o.n_stop = 1;
    o.n_slots = 1;
    run *seq = gen_run(m, tok, stories, N_STORIES, &o);
    o.n_slots = 16;
    o.max_rows = 24;
    run *bat = gen_run(m, tok, stories, N_STORIES, &o);
    ck_assert_int_eq(bat->max_seqs, 16);
    ck_assert(bat->prefill_after_decode); /* slots were refilled mid-run */
    int stopped = 0;
    for (size_t i = 0; i < N_STORIES; i++) {
        same_got(&seq->g[i], &bat->g[i], i);
        stopped += bat->g[i].finish == QE_GEN_STOP;
    }
    ck_assert_int_gt(stopped, 3);
    o.n_slots = 1;
    o.max_rows = 0;
    run *one = gen_run(m, tok, stories, 1, &o);
    same_got(&one->g[0], &bat->g[0], 0);
    run_free(one);
    run_free(seq);
    run_free(bat);

    /* Seeded sampling: the same for 1 and 16 slots; another seed differs. */
    qe_gen_opts s = qe_gen_opts_default();
    s.max_new = 20;
    s.top_k = 8;
    s.sample.temp = 0.9f;
    s.sample.top_k = 8;
    s.sample.top_p = 0.95f;
    s.sample.seed = 1234;
    s.n_slots = 1;
    run *s1 = gen_run(m, tok, stories, N_STORIES, &s);
    s.n_slots = 16;
    s.max_rows = 24;
    run *s16 = gen_run(m, tok, stories, N_STORIES, &s);
    s.sample.seed = 1235;
    run *other = gen_run(m, tok, stories, N_STORIES, &s);
    int differ = 0;
    for (size_t i = 0; i < N_STORIES; i++) {
        same_got(&s1->g[i], &s16->g[i], i);
        differ += strcmp(s1->g[i].text, other->g[i].text) != 0;
        /* each sampled token is one of its row's top 8, with that log-prob */
        const got *g = &s16->g[i];
        for (int t = 0; t < g->n_gen; t++) {
            int j = 0;
            while (j < 8 && g->tki[t * 8 + j] != g->ids[t])
                j++;
            ck_assert_int_lt(j, 8);
            ck_assert(g->tkp[t * 8 + j] == g->logp[t]);
        }
    }
    ck_assert_int_gt(differ, 0);
    run_free(s1);
    run_free(s16);
    run_free(other);
    qe_tokenizer_close(tok);
    qe_model_close(m);
}
END_TEST

START_TEST(test_stops)
{
    qe_model *m;
    qe_tokenizer *tok;
    open_model("models/stories260K.gguf", &m, &tok);
    const char *p[] = {"Once upon a time"};
    qe_gen_opts o = qe_gen_opts_default();
    o.max_new = 5;
    run *rn = gen_run(m, tok, p, 1, &o);
    ck_assert_int_eq(rn->g[0].finish, QE_GEN_LENGTH);
    ck_assert_int_eq(rn->g[0].n_gen, 5);
    ck_assert_int_eq(rn->g[0].stop_index, -1);
    run_free(rn);

    /* A stop string taken from the middle of the unstopped text. */
    o.max_new = 40;
    run *full = gen_run(m, tok, p, 1, &o);
    const got *f = &full->g[0];
    ck_assert_uint_gt(f->text_len, 30);
    char stop[8];
    memcpy(stop, f->text + 20, 5);
    stop[5] = '\0';
    const size_t cut = (size_t)(strstr(f->text, stop) - f->text);
    const char *stops[] = {"zzzz-never", stop};
    o.stop = stops;
    o.n_stop = 2;
    run *st = gen_run(m, tok, p, 1, &o);
    const got *g = &st->g[0];
    ck_assert_int_eq(g->finish, QE_GEN_STOP);
    ck_assert_int_eq(g->stop_index, 1);
    ck_assert_uint_eq(g->text_len, cut);
    ck_assert(memcmp(g->text, f->text, cut) == 0);
    ck_assert_int_lt(g->n_gen, f->n_gen);
    ck_assert(memcmp(g->ids, f->ids, (size_t)g->n_gen * sizeof *g->ids) == 0);
    run_free(st);
    run_free(full);

    /* A full context: n_ctx - n_prompt + 1 tokens, the last never fed. */
    qe_tokenizer_ids ids = {0};
    OK(qe_tokenizer_encode(tok, p[0], strlen(p[0]), QE_TOK_ADD_SPECIAL, &ids));
    o.stop = NULL;
    o.n_stop = 0;
    o.n_ctx = (int)ids.n + 3;
    run *cx = gen_run(m, tok, p, 1, &o);
    ck_assert_int_eq(cx->g[0].finish, QE_GEN_CTX);
    ck_assert_int_eq(cx->g[0].n_gen, 4);
    run_free(cx);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(tok);
    qe_model_close(m);
}
END_TEST

START_TEST(test_limits)
{
    qe_model *m;
    qe_tokenizer *tok;
    open_model("models/stories260K.gguf", &m, &tok);
    const char *p[] = {"Once", "Once upon a time there was a very long prompt"};
    run rn = {0};
    got g[2];
    memset(g, 0, sizeof g);
    rn.g = g;
    rn.n = 2;
    qe_gen_opts o = qe_gen_opts_default();
    qe_cl *cl = qe_test_cl();
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 0, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    o.max_new = 0;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    o = qe_gen_opts_default();
    o.n_slots = 0;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    o = qe_gen_opts_default();
    o.top_k = 65;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    o = qe_gen_opts_default();
    o.sample.temp = -1;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    o = qe_gen_opts_default();
    const char *empty[] = {""};
    o.stop = empty;
    o.n_stop = 1;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    /* a prompt longer than the context is named */
    o = qe_gen_opts_default();
    o.n_ctx = 4;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, NULL, &rn, NULL), QE_EINVAL);
    ck_assert_msg(strstr(qe_errmsg(), "prompt 1 has") != NULL, "%s", qe_errmsg());
    ck_assert_int_eq(g[0].done + g[1].done, 0); /* nothing ran */
    /* a failing callback stops the run with its status */
    o = qe_gen_opts_default();
    o.max_new = 3;
    rn.fail_result = QE_EIO;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, on_step, &rn, NULL), QE_EIO);
    rn.fail_result = QE_OK;
    rn.fail_step = QE_EINTERRUPTED;
    ck_assert_int_eq(qe_generate(m, tok, cl, p, NULL, 2, &o, on_result, on_step, &rn, NULL),
                     QE_EINTERRUPTED);
    ck_assert_str_eq(qe_gen_finish_name(QE_GEN_CTX), "ctx");
    ck_assert_str_eq(qe_gen_finish_name((qe_gen_finish)99), "?");
    qe_tokenizer_close(tok);
    qe_model_close(m);
}
END_TEST

Suite *generate_suite(void)
{
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(tc, test_vs_ref);
    tcase_add_test(tc, test_eos);
    tcase_add_test(tc, test_batch_independence);
    tcase_add_test(tc, test_stops);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 60);
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
