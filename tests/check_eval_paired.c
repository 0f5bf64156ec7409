/* check_eval_paired.c - paired evaluation (qe_eval_paired) on real text and
 * the command-line configuration syntax (qe_eval_spec_parse).
 *
 * The paired runs open OpenCL inside each test (forked child): OpenCL state
 * does not survive fork(), so no unchecked fixture touches it.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "quant.h"
#include "testutil.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())
#define N_CTX 128
#define N_CHUNKS 6
#define N_VAR 2

/* ---- configuration syntax ---- */

START_TEST(test_spec_parse)
{
    const qe_eval_spec dflt = {.file = 1, .weights = QE_DT_F32, .kv_k = QE_KV_F16, .kv_v = QE_KV_F16};
    qe_eval_spec s;
    OK(qe_eval_spec_parse("q4_0", &dflt, &s));
    ck_assert(!s.file && s.weights == QE_DT_Q4_0 && s.kv_k == QE_KV_F16 && s.kv_v == QE_KV_F16);
    OK(qe_eval_spec_parse("kv=tq4", &dflt, &s));
    ck_assert(s.file && s.kv_k == QE_KV_TQ4 && s.kv_v == QE_KV_TQ4);
    OK(qe_eval_spec_parse("Q8_0+KV-K=TQ3+kv-v=q4_0", &dflt, &s));
    ck_assert(!s.file && s.weights == QE_DT_Q8_0 && s.kv_k == QE_KV_TQ3 && s.kv_v == QE_KV_Q4_0);
    OK(qe_eval_spec_parse("kv-v=f32+file", &dflt, &s));
    ck_assert(s.file && s.kv_k == QE_KV_F16 && s.kv_v == QE_KV_F32);
    const qe_eval_spec base = s;
    OK(qe_eval_spec_parse("f16", &base, &s)); /* the rest from the base */
    ck_assert(!s.file && s.weights == QE_DT_F16 && s.kv_k == QE_KV_F16 && s.kv_v == QE_KV_F32);
    char buf[64];
    qe_eval_spec_format(&s, buf, sizeof buf);
    ck_assert_str_eq(buf, "f16+kv-k=f16+kv-v=f32");
    qe_eval_spec back;
    OK(qe_eval_spec_parse(buf, &dflt, &back));
    ck_assert(memcmp(&back, &s, sizeof s) == 0);

    static const struct {
        const char *spec, *msg;
    } bad[] = {
        {"", "empty"},
        {"q5_1", "unknown item 'q5_1'"},
        {"q8_0+q4_0", "two weight types"},
        {"kv=f16+kv=f32", "given twice"},
        {"kv-k=f16+kv=f32", "given twice"},
        {"kv=f16+kv-v=f32", "given twice"},
        {"kv-k=f16+kv-k=f32", "given twice"},
        {"kv=tq5", "tq5"},
        {"kv=", "''"},
        {"kx=f16", "unknown key"},
        {"q8_0+", "an empty item"},
        {"+q8_0", "an empty item"},
        {"q8_0++kv=f16", "an empty item"},
        {"kvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkv=f16", "over-long"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s.kv_k = (qe_kv_format)77;
        ck_assert_msg(qe_eval_spec_parse(bad[i].spec, &dflt, &s) == QE_EINVAL, "'%s' accepted",
                      bad[i].spec);
        ck_assert_msg(strstr(qe_errmsg(), bad[i].msg), "'%s': message '%s' lacks '%s'",
                      bad[i].spec, qe_errmsg(), bad[i].msg);
        ck_assert_int_eq(s.kv_k, 77); /* untouched on error */
    }
    ck_assert_int_eq(qe_eval_spec_parse(NULL, &dflt, &s), QE_EINVAL);
}
END_TEST

/* ---- paired runs ---- */

typedef struct fixture {
    qe_model *m;
    qe_tokenizer *tok;
    qe_tokenizer_ids ids;
} fixture;

static void open_fixture(fixture *f)
{
    const char *path = qe_test_data("models/stories260K.gguf");
    OK(qe_model_open(path, &f->m));
    OK(qe_tokenizer_open(path, &f->tok));
    FILE *fp = fopen(qe_test_data("text/wiki.test.raw"), "rb");
    ck_assert_ptr_nonnull(fp);
    static char text[32768];
    size_t n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    memset(&f->ids, 0, sizeof f->ids);
    OK(qe_tokenizer_encode(f->tok, text, n, QE_TOK_ADD_SPECIAL, &f->ids));
    ck_assert_int_ge((int64_t)f->ids.n, N_CHUNKS * N_CTX);
}

static void close_fixture(fixture *f)
{
    qe_tokenizer_ids_free(&f->ids);
    qe_tokenizer_close(f->tok);
    qe_model_close(f->m);
}

/* What the callback saw, per configuration. */
typedef struct seen {
    int calls, next_variant;
    int64_t next_chunk;
    int n_scored;
    float logp[1 + N_VAR][N_CHUNKS][N_CTX];
    float kld[1 + N_VAR][N_CHUNKS][N_CTX];
    uint8_t same[1 + N_VAR][N_CHUNKS][N_CTX];
} seen;

static qe_status collect(void *ud, const qe_eval_chunk *c)
{
    seen *s = ud;
    /* chunk order, and within a chunk the base then the variants */
    ck_assert_int_eq(c->index, s->next_chunk);
    ck_assert_int_eq(c->variant, s->next_variant);
    ck_assert_int_lt(c->index, N_CHUNKS);
    s->n_scored = c->n_scored;
    memcpy(s->logp[c->variant][c->index], c->logp, (size_t)c->n_scored * sizeof(float));
    if (c->variant == 0) {
        ck_assert(c->kld == NULL && c->dp == NULL && c->same_top == NULL);
    } else {
        ck_assert(c->kld && c->dp && c->same_top);
        memcpy(s->kld[c->variant][c->index], c->kld, (size_t)c->n_scored * sizeof(float));
        memcpy(s->same[c->variant][c->index], c->same_top, (size_t)c->n_scored);
    }
    s->calls++;
    if (++s->next_variant == 1 + N_VAR) {
        s->next_variant = 0;
        s->next_chunk++;
    }
    return QE_OK;
}

static qe_status plain_collect(void *ud, const qe_eval_chunk *c)
{
    seen *s = ud;
    ck_assert_int_eq(c->variant, 0);
    ck_assert_int_lt(c->index, N_CHUNKS);
    memcpy(s->logp[0][c->index], c->logp, (size_t)c->n_scored * sizeof(float));
    return QE_OK;
}

static qe_eval_opts opts(int n_seq)
{
    qe_eval_opts o = qe_eval_opts_default();
    o.n_ctx = N_CTX;
    o.max_chunks = N_CHUNKS;
    o.n_seq = n_seq;
    o.progress = 0;
    return o;
}

/* The base (f32 weights, f32 cache), a copy of it, and Q8_0 weights with a
 * TurboQuant K cache: the copy's KLD summary is exactly zero, the base's and
 * the variant's own results equal their plain qe_eval_perplexity runs, and
 * the per-token KLD the callback sees is what the summary holds. */
START_TEST(test_paired)
{
    fixture f;
    open_fixture(&f);
    qe_quant_model *q8 = NULL;
    OK(qe_quant_model_new(f.m, QE_DT_Q8_0, &q8));
    const qe_eval_variant base = {"f32", f.m, QE_KV_F32, QE_KV_F32};
    const qe_eval_variant vars[N_VAR] = {{"copy", f.m, QE_KV_F32, QE_KV_F32},
                                         {"q8_0+tq4", qe_quant_model_get(q8), QE_KV_TQ4, QE_KV_F32}};
    seen *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    qe_eval_variant_result res[1 + N_VAR];
    qe_eval_times tm;
    qe_eval_opts o = opts(4);
    OK(qe_eval_paired(&base, vars, N_VAR, f.tok, f.ids.v, (int64_t)f.ids.n, &o, collect, s, res, &tm));
    ck_assert_int_eq(s->calls, N_CHUNKS * (1 + N_VAR));
    ck_assert_int_eq(tm.n_chunks, N_CHUNKS);
    const uint64_t n_tok = (uint64_t)N_CHUNKS * (N_CTX / 2 - 1); /* llama-perplexity's rule */
    for (int i = 0; i <= N_VAR; i++) {
        ck_assert_uint_eq(res[i].ppl.n, n_tok);
        ck_assert(res[i].seconds > 0 && res[i].upload > 0);
        ck_assert_int_eq(res[i].n_tokens, (int64_t)N_CHUNKS * N_CTX);
    }
    ck_assert_uint_eq(res[0].kld.n, 0);

    /* the copy */
    const qe_kld_summary *c = &res[1].kld;
    ck_assert_uint_eq(c->n, n_tok);
    ck_assert(c->kld.mean == 0 && c->kld.err == 0 && c->kld_max == 0 && c->kld_min == 0);
    ck_assert(c->dp.mean == 0 && c->dp_rms == 0 && c->same_top == 1.0 && c->ln_ratio == 0);
    ck_assert(c->ppl_q == c->ppl_base && c->ppl_q == res[0].ppl.ppl);

    /* the variant: KLD > 0, summary consistent with the per-token values */
    const qe_kld_summary *k = &res[2].kld;
    double sum = 0, mx = 0;
    int same = 0;
    for (int ch = 0; ch < N_CHUNKS; ch++)
        for (int j = 0; j < s->n_scored; j++) {
            sum += s->kld[2][ch][j];
            mx = s->kld[2][ch][j] > mx ? s->kld[2][ch][j] : mx;
            same += s->same[2][ch][j];
        }
    ck_assert(k->kld.mean > 0);
    ck_assert_msg(fabs(k->kld.mean - sum / (double)n_tok) <= 1e-9 * sum, "mean KLD %.9g vs %.9g",
                  k->kld.mean, sum / (double)n_tok);
    ck_assert(k->kld_max == (float)mx);
    ck_assert(fabs(k->same_top - same / (double)n_tok) < 1e-12);
    ck_assert(k->ppl_q == res[2].ppl.ppl && k->ppl_base == res[0].ppl.ppl);

    /* plain runs of the base and of the variant give the same per-token values */
    const qe_eval_variant *plain[2] = {&base, &vars[1]};
    const int slot[2] = {0, 2};
    for (int i = 0; i < 2; i++) {
        qe_eval_opts po = opts(3);
        po.kv_k = plain[i]->kv_k;
        po.kv_v = plain[i]->kv_v;
        seen *p = calloc(1, sizeof *p);
        ck_assert_ptr_nonnull(p);
        qe_ppl_result r;
        OK(qe_eval_perplexity(plain[i]->model, f.tok, f.ids.v, (int64_t)f.ids.n, &po,
                              plain_collect, p, &r, NULL));
        ck_assert_msg(r.ppl == res[slot[i]].ppl.ppl, "%s: PPL %.9g alone, %.9g paired",
                      plain[i]->name, r.ppl, res[slot[i]].ppl.ppl);
        for (int ch = 0; ch < N_CHUNKS; ch++)
            ck_assert_msg(memcmp(p->logp[0][ch], s->logp[slot[i]][ch],
                                 (size_t)s->n_scored * sizeof(float)) == 0,
                          "%s: chunk %d log-probs differ alone vs paired", plain[i]->name, ch);
        free(p);
    }
    free(s);
    qe_quant_model_free(q8);
    close_fixture(&f);
}
END_TEST

START_TEST(test_paired_limits)
{
    fixture f;
    open_fixture(&f);
    const qe_eval_variant base = {"base", f.m, QE_KV_F32, QE_KV_F32};
    const qe_eval_variant v = {"v", f.m, QE_KV_F16, QE_KV_F16};
    qe_eval_variant_result res[2];
    qe_eval_opts o = opts(2);
    o.device = "ref";
    ck_assert_int_eq(qe_eval_paired(&base, &v, 1, f.tok, f.ids.v, (int64_t)f.ids.n, &o, NULL, NULL,
                                    res, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "OpenCL"));
    o = opts(2);
    o.logits_every = 4;
    ck_assert_int_eq(qe_eval_paired(&base, &v, 1, f.tok, f.ids.v, (int64_t)f.ids.n, &o, NULL, NULL,
                                    res, NULL), QE_EINVAL);
    o = opts(2);
    ck_assert_int_eq(qe_eval_paired(&base, &v, 0, f.tok, f.ids.v, (int64_t)f.ids.n, &o, NULL, NULL,
                                    res, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_eval_paired(&base, &v, QE_EVAL_MAX_VARIANTS + 1, f.tok, f.ids.v,
                                    (int64_t)f.ids.n, &o, NULL, NULL, res, NULL), QE_EINVAL);
    /* another vocabulary */
    qe_model *m2 = NULL;
    OK(qe_model_open(qe_test_data("models/TinyStories-656K"), &m2));
    const qe_eval_variant other = {"656K", m2, QE_KV_F32, QE_KV_F32};
    ck_assert_int_eq(qe_eval_paired(&base, &other, 1, f.tok, f.ids.v, (int64_t)f.ids.n, &o, NULL,
                                    NULL, res, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "vocabulary"));
    /* too little text */
    ck_assert_int_eq(qe_eval_paired(&base, &v, 1, f.tok, f.ids.v, 100, &o, NULL, NULL, res, NULL),
                     QE_EINVAL);
    qe_model_close(m2);
    close_fixture(&f);
}
END_TEST

Suite *eval_paired_suite(void)
{
    Suite *s = suite_create("eval_paired");
    TCase *sp = tcase_create("syntax");
    tcase_add_test(sp, test_spec_parse);
    suite_add_tcase(s, sp);
    TCase *tc = tcase_create("paired");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_paired);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 60);
    tcase_add_test(lim, test_paired_limits);
    suite_add_tcase(s, lim);
    return s;
}
