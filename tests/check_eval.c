/* check_eval.c - the perplexity loop end to end on real models and real text:
 * the OpenCL path (PoCL) against the double-precision C reference, and
 * batch invariance. OpenCL is opened inside each test (forked child): OpenCL
 * state does not survive fork(), so no unchecked fixture touches it. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "testutil.h"

#define N_CTX 128
#define N_CHUNKS 8

typedef struct collected {
    int64_t n_chunks;
    int n_scored;
    float logp[N_CHUNKS][N_CTX];
    int32_t argmax[N_CHUNKS][N_CTX];
    int32_t target[N_CHUNKS][N_CTX];
} collected;

static qe_status collect(void *ud, const qe_eval_chunk *c)
{
    collected *col = ud;
    ck_assert_int_eq(c->index, col->n_chunks); /* chunk order, whatever the batching */
    col->n_scored = c->n_scored;
    memcpy(col->logp[c->index], c->logp, (size_t)c->n_scored * sizeof(float));
    memcpy(col->argmax[c->index], c->argmax, (size_t)c->n_scored * sizeof(int32_t));
    memcpy(col->target[c->index], c->target, (size_t)c->n_scored * sizeof(int32_t));
    col->n_chunks++;
    return QE_OK;
}

typedef struct fixture {
    qe_model *m;
    qe_tokenizer *tok;
    qe_tokenizer_ids ids;
} fixture;

static void open_model(fixture *f, const char *rel)
{
    const char *path = qe_test_data(rel);
    ck_assert_msg(qe_model_open(path, &f->m) == QE_OK, "%s", qe_errmsg());
    ck_assert_msg(qe_tokenizer_open(path, &f->tok) == QE_OK, "%s", qe_errmsg());
    /* The first 64 KiB of wikitext give well over N_CHUNKS * N_CTX tokens. */
    FILE *fp = fopen(qe_test_data("text/wiki.test.raw"), "rb");
    ck_assert_ptr_nonnull(fp);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    memset(&f->ids, 0, sizeof f->ids);
    ck_assert_int_eq(qe_tokenizer_encode(f->tok, text, n, QE_TOK_ADD_SPECIAL, &f->ids), QE_OK);
    ck_assert_int_ge((int64_t)f->ids.n, N_CHUNKS * N_CTX);
}

static void close_model(fixture *f)
{
    qe_tokenizer_ids_free(&f->ids);
    qe_tokenizer_close(f->tok);
    qe_model_close(f->m);
}

static void run(fixture *f, const char *device, int n_seq, collected *col, qe_ppl_result *r)
{
    qe_eval_opts o = qe_eval_opts_default();
    o.n_ctx = N_CTX;
    o.max_chunks = N_CHUNKS;
    o.n_seq = n_seq;
    o.device = device;
    o.progress = 0;
    memset(col, 0, sizeof *col);
    qe_status st = qe_eval_perplexity(f->m, f->tok, f->ids.v, (int64_t)f->ids.n, &o, collect, col,
                                      r, NULL);
    ck_assert_msg(st == QE_OK, "%s: %s", device ? device : "default", qe_errmsg());
    ck_assert_int_eq(col->n_chunks, N_CHUNKS);
}

/* OpenCL vs the C reference on every scored token of the first 8 chunks. */
static void compare_with_ref(const char *rel)
{
    fixture f;
    open_model(&f, rel);
    static collected a, b;
    qe_ppl_result ra, rb;
    run(&f, "ref", 1, &a, &ra);
    run(&f, NULL, 4, &b, &rb);
    double worst = 0;
    for (int c = 0; c < N_CHUNKS; c++)
        for (int j = 0; j < a.n_scored; j++) {
            ck_assert_int_eq(a.target[c][j], b.target[c][j]);
            double d = fabs((double)a.logp[c][j] - (double)b.logp[c][j]);
            if (d > worst)
                worst = d;
        }
    ck_assert_msg(worst < 1e-4, "%s: max |dlogp| %.3g", rel, worst);
    /* PPL equal to 5 significant digits */
    ck_assert_msg(fabs(ra.ppl - rb.ppl) / ra.ppl < 5e-6, "ppl ref %.7g vs cl %.7g", ra.ppl, rb.ppl);
    ck_assert_uint_eq(ra.n, (uint64_t)N_CHUNKS * (N_CTX / 2 - 1));
    close_model(&f);
}

START_TEST(test_stories260k_vs_ref) { compare_with_ref("models/stories260K.gguf"); }
END_TEST

START_TEST(test_tinystories656k_vs_ref) { compare_with_ref("models/TinyStories-656K"); }
END_TEST

/* The same chunks batched 1, 3 and 8 at a time give bit-identical results. */
START_TEST(test_batch_invariance)
{
    fixture f;
    open_model(&f, "models/stories260K.gguf");
    static collected a, b, c;
    qe_ppl_result ra, rb, rc;
    run(&f, NULL, 1, &a, &ra);
    run(&f, NULL, 3, &b, &rb);
    run(&f, NULL, 8, &c, &rc);
    ck_assert(memcmp(a.logp, b.logp, sizeof a.logp) == 0);
    ck_assert(memcmp(a.logp, c.logp, sizeof a.logp) == 0);
    ck_assert(memcmp(a.argmax, c.argmax, sizeof a.argmax) == 0);
    ck_assert(ra.ppl == rb.ppl && ra.ppl == rc.ppl);
    ck_assert(ra.ppl_err == rc.ppl_err);
    close_model(&f);
}
END_TEST

/* Full logits of every 16th scored position agree with the per-position
 * statistics the device computed (log-softmax of the target), for the
 * engine and for the reference. */
static qe_status check_logits(void *ud, const qe_eval_chunk *c)
{
    int *rows = ud;
    ck_assert_int_eq(c->n_logits, (c->n_scored + 15) / 16);
    for (int i = 0; i < c->n_logits; i++) {
        int j = c->logit_pos[i] - c->first;
        ck_assert_int_eq(j, i * 16);
        const float *l = c->logits + (size_t)i * c->n_vocab;
        double mx = l[0], s = 0;
        for (int v = 1; v < c->n_vocab; v++)
            mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < c->n_vocab; v++)
            s += exp(l[v] - mx);
        double lp = l[c->target[j]] - mx - log(s);
        ck_assert_msg(fabs(lp - c->logp[j]) < 1e-4, "row %d: %.6f vs %.6f", j, lp, c->logp[j]);
        (*rows)++;
    }
    return QE_OK;
}

START_TEST(test_full_logits)
{
    fixture f;
    open_model(&f, "models/stories260K.gguf");
    const char *devs[2] = {NULL, "ref"};
    for (int d = 0; d < 2; d++) {
        qe_eval_opts o = qe_eval_opts_default();
        o.n_ctx = N_CTX;
        o.max_chunks = 3;
        o.n_seq = 2;
        o.device = devs[d];
        o.progress = 0;
        o.logits_every = 16;
        int rows = 0;
        qe_ppl_result r;
        ck_assert_int_eq(qe_eval_perplexity(f.m, f.tok, f.ids.v, (int64_t)f.ids.n, &o,
                                            check_logits, &rows, &r, NULL), QE_OK);
        ck_assert_int_eq(rows, 3 * 4); /* 63 scored positions: 0, 16, 32, 48 */
    }
    close_model(&f);
}
END_TEST

START_TEST(test_limits)
{
    fixture f;
    open_model(&f, "models/stories260K.gguf");
    qe_eval_opts o = qe_eval_opts_default();
    o.progress = 0;
    o.device = "ref";
    qe_ppl_result r;
    /* Too little text for the context: llama-perplexity's rule, a clear error. */
    o.n_ctx = 128;
    ck_assert_int_eq(qe_eval_perplexity(f.m, f.tok, f.ids.v, 255, &o, NULL, NULL, &r, NULL),
                     QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "at least 256 tokens"));
    /* Exactly one chunk is fine with --chunks 1. */
    o.max_chunks = 1;
    ck_assert_int_eq(qe_eval_perplexity(f.m, f.tok, f.ids.v, 256, &o, NULL, NULL, &r, NULL),
                     QE_OK);
    ck_assert_uint_eq(r.n, 63);
    ck_assert(r.ppl > 1 && isfinite(r.ppl));
    o.n_seq = 0;
    ck_assert_int_eq(qe_eval_perplexity(f.m, f.tok, f.ids.v, 256, &o, NULL, NULL, &r, NULL),
                     QE_EINVAL);
    o.n_seq = 1;
    o.device = "no-such-device-anywhere";
    ck_assert_int_ne(qe_eval_perplexity(f.m, f.tok, f.ids.v, 256, &o, NULL, NULL, &r, NULL),
                     QE_OK);
    close_model(&f);
}
END_TEST

Suite *eval_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_stories260k_vs_ref);
    tcase_add_test(tc, test_tinystories656k_vs_ref);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_full_logits);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 300);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
