/* check_engine_arch.c - the OpenCL engine's architecture switches (qwen2
 * biases; gemma3 embedding scale, q/k norms, post norms, GELU, sliding
 * window with per-layer RoPE, soft-cap) against the double-precision
 * reference, on a real device (PoCL here):
 *
 *   synth   random in-memory models of each architecture, several
 *           sequences, every position scored: max |delta log-prob| < 1e-3
 *   window  on the device too, a token outside the sliding window's
 *           receptive field leaves the last position's results bit-identical,
 *           one inside changes them
 *   decode  the ragged-batch decoder (lib/decode.h) on the same models: a
 *           prompt, then one token per call, every step's log-probs vs the
 *           reference
 *   models  the first tokens of wiki.test.raw through SmolLM2-135M (llama)
 *           and Gemma 3 270M (gemma3) from models/ (`make models`), skipped
 *           with a note when absent
 *
 * OpenCL state does not survive fork(): as in check_engine.c the unchecked
 * fixture only prepares a scratch program cache and qe_test_cl() opens the
 * context lazily inside the test process.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cl.h"
#include "decode.h"
#include "engine.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"
#include "tokenizer.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())

/* ---- random in-memory models (tests/testutil.h) ---- */

typedef qe_test_rmodel rmodel;

static void rmodel_build(rmodel *r, const qe_hparams *hp, uint64_t seed)
{
    qe_test_rmodel_init(r, hp, seed);
    qe_test_rmodel_build(r, "engine-arch");
}

static qe_hparams base_hp(void)
{
    return (qe_hparams){.n_vocab = 301, .dim = 48, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                        .head_dim = 16, .n_rot = 16, .n_ff = 80, .n_ctx_train = 256,
                        .rms_eps = 1e-6f, .rope_base = 10000.0f, .rope_factor = 1.0f,
                        .rope_freq_scale = 1.0f, .bos_id = -1, .eos_id = -1,
                        .rope_layout = QE_ROPE_HALVES, .tied = 1};
}

static qe_hparams gemma_hp(int32_t window, int32_t pattern)
{
    qe_hparams hp = base_hp();
    hp.arch = QE_ARCH_GEMMA3;
    hp.embd_scale = sqrtf((float)hp.dim);
    hp.attn_scale = 0.2f;
    hp.ffn_act = QE_ACT_GELU_TANH;
    hp.qk_norm = hp.post_norms = 1;
    hp.swa_window = window;
    hp.swa_pattern = pattern;
    hp.rope_base = 1e6f;
    hp.rope_base_swa = 10000.0f;
    hp.rope_freq_scale = 0.25f;
    hp.rope_freq_scale_swa = 1.0f;
    return hp;
}

/* ---- engine vs reference ---- */

/* Prefill n_seq sequences of n_tok tokens, score positions >= out_first
 * (target: the next token, -1 at the end) and compare each target log-prob
 * with the reference's. Returns max |delta|. */
static double engine_vs_ref_kv(const qe_model *m, const int32_t *tok, int n_seq, int n_tok,
                               int out_first, qe_kv_format kv_k, qe_kv_format kv_v)
{
    const int nv = qe_model_hparams(m)->n_vocab, n_out = n_tok - out_first;
    qe_engine *e = qe_test_engine_kv(m, n_tok, n_seq, 1, kv_k, kv_v);
    OK(qe_engine_poison(e));
    int32_t *tg = malloc((size_t)(n_seq * n_out) * sizeof *tg);
    float *lp = malloc((size_t)(n_seq * n_out) * sizeof *lp);
    double *logits = malloc((size_t)nv * sizeof *logits);
    ck_assert(tg && lp && logits);
    for (int s = 0; s < n_seq; s++)
        for (int p = out_first; p < n_tok; p++)
            tg[s * n_out + p - out_first] = p + 1 < n_tok ? tok[s * n_tok + p + 1] : -1;
    qe_engine_out out = {.target_logp = lp};
    OK(qe_engine_prefill(e, n_seq, n_tok, tok, out_first, tg, &out));
    qe_ref *r = NULL;
    if (kv_k == QE_KV_F32 && kv_v == QE_KV_F32)
        OK(qe_ref_new(m, n_tok, &r));
    else
        OK(qe_ref_new_kv(m, n_tok, kv_k, kv_v, &r));
    double md = 0;
    for (int s = 0; s < n_seq; s++) {
        qe_ref_reset(r);
        for (int p = 0; p < n_tok; p++) {
            int want = p >= out_first && p + 1 < n_tok;
            OK(qe_ref_step(r, tok[s * n_tok + p], p, want ? logits : NULL));
            if (!want)
                continue;
            double mx = -INFINITY, sum = 0;
            for (int v = 0; v < nv; v++)
                mx = fmax(mx, logits[v]);
            for (int v = 0; v < nv; v++)
                sum += exp(logits[v] - mx);
            double ref = logits[tok[s * n_tok + p + 1]] - mx - log(sum);
            double got = lp[s * n_out + p - out_first];
            ck_assert_msg(isfinite(got), "sequence %d position %d: %g", s, p, got);
            md = fmax(md, fabs(got - ref));
        }
    }
    qe_ref_free(r);
    free(tg), free(lp), free(logits);
    qe_engine_close(e);
    return md;
}

static double engine_vs_ref(const qe_model *m, const int32_t *tok, int n_seq, int n_tok,
                            int out_first)
{
    return engine_vs_ref_kv(m, tok, n_seq, n_tok, out_first, QE_KV_F32, QE_KV_F32);
}

START_TEST(test_synth)
{
    struct {
        const char *what;
        qe_hparams hp;
    } cases[4];
    cases[0].what = "qwen2 (biases)";
    cases[0].hp = base_hp();
    cases[0].hp.arch = QE_ARCH_QWEN2;
    cases[0].hp.attn_bias = 1;
    cases[1].what = "gemma3 (window 7, pattern 3, soft-cap 5)";
    cases[1].hp = gemma_hp(7, 3);
    cases[1].hp.final_softcap = 5.0f;
    cases[2].what = "gemma3 (window 40 > keys per tile, pattern 2)";
    cases[2].hp = gemma_hp(40, 2);
    cases[3].what = "gemma3 (no window, untied)";
    cases[3].hp = gemma_hp(0, 0);
    cases[3].hp.tied = 0;
    enum { NS = 2, NT = 70 };
    int32_t tok[NS * NT];
    for (int c = 0; c < 4; c++) {
        rmodel r;
        rmodel_build(&r, &cases[c].hp, 500 + (uint64_t)c);
        qe_test_rmodel_tokens(tok, NS * NT, r.hp.n_vocab, 77 + (uint64_t)c);
        double md = engine_vs_ref(r.m, tok, NS, NT, 0);
        printf("# engine_arch: %s: max |delta log-prob| %.2e\n", cases[c].what, md);
        ck_assert_msg(md < 1e-3, "%s: %g", cases[c].what, md);
        /* The staging path of encoded caches (bias, norm and RoPE before the
         * K/V store kernel), against the reference with the same formats. */
        if (c < 2) {
            md = engine_vs_ref_kv(r.m, tok, NS, NT, 0, QE_KV_Q8_0, QE_KV_F16);
            printf("# engine_arch: %s, KV q8_0/f16: max |delta log-prob| %.2e\n", cases[c].what,
                   md);
            ck_assert_msg(md < 1e-3, "%s (KV q8_0/f16): %g", cases[c].what, md);
        }
        qe_test_rmodel_free(&r);
    }
}
END_TEST

/* max over v of |log_softmax(a)_v - log_softmax(b)_v| (a float, b double). */
static double logsoftmax_diff(const float *a, const double *b, int n)
{
    double ma = -INFINITY, mb = -INFINITY, sa = 0, sb = 0, md = 0;
    for (int v = 0; v < n; v++) {
        ma = fmax(ma, a[v]);
        mb = fmax(mb, b[v]);
    }
    for (int v = 0; v < n; v++) {
        sa += exp(a[v] - ma);
        sb += exp(b[v] - mb);
    }
    for (int v = 0; v < n; v++)
        md = fmax(md, fabs((a[v] - ma - log(sa)) - (b[v] - mb - log(sb))));
    return md;
}

START_TEST(test_decode)
{
    qe_hparams cases[3];
    cases[0] = base_hp();
    cases[0].arch = QE_ARCH_QWEN2;
    cases[0].attn_bias = 1;
    cases[1] = gemma_hp(7, 3);
    cases[1].final_softcap = 5.0f;
    cases[2] = gemma_hp(70, 2); /* window start beyond the first 64-key tile */
    enum { N = 100, PROMPT = 30 };
    int32_t tok[N];
    for (int c = 0; c < 3; c++) {
        rmodel r;
        rmodel_build(&r, &cases[c], 900 + (uint64_t)c);
        qe_test_rmodel_tokens(tok, N, r.hp.n_vocab, 31 + (uint64_t)c);
        qe_engine_opts o = qe_engine_opts_default();
        o.n_ctx = N;
        o.n_seq = 2;
        o.top_k = 2;
        qe_engine *e = NULL;
        qe_decode *d = NULL;
        qe_ref *ref = NULL;
        OK(qe_engine_open(qe_test_cl(), r.m, &o, &e));
        OK(qe_decode_open(e, NULL, &d));
        OK(qe_ref_new(r.m, N, &ref));
        const int nv = r.hp.n_vocab;
        float *got = malloc((size_t)nv * sizeof *got);
        double *want = malloc((size_t)nv * sizeof *want);
        ck_assert(got && want);
        double md = 0;
        /* The prompt in one call, then one token per call. */
        for (int p = 0; p < PROMPT - 1; p++)
            OK(qe_ref_step(ref, tok[p], p, NULL));
        for (int p = PROMPT - 1; p < N; p++) {
            OK(qe_ref_step(ref, tok[p], p, want));
            qe_decode_seq sq = {0, p == PROMPT - 1 ? PROMPT : 1,
                                p == PROMPT - 1 ? tok : tok + p};
            OK(qe_decode_run(d, 1, &sq, NULL));
            OK(qe_decode_logits(d, 0, got));
            md = fmax(md, logsoftmax_diff(got, want, nv));
        }
        printf("# engine_arch: decode, case %d: max |delta log-prob| %.2e over %d steps\n", c, md,
               N - PROMPT + 1);
        ck_assert_msg(md < 1e-3, "decode case %d: %g", c, md);
        free(got), free(want);
        qe_ref_free(ref);
        qe_decode_close(d);
        qe_engine_close(e);
        qe_test_rmodel_free(&r);
    }
}
END_TEST

/* Sliding window on the device: two local layers of window W see tokens
 * p - 2 (W - 1) .. p at position p. */
START_TEST(test_window)
{
    const int W = 5, N = 24, P = N - 1;
    qe_hparams hp = gemma_hp(W, 0);
    hp.n_layers = 2;
    rmodel r;
    rmodel_build(&r, &hp, 9);
    int32_t tok[24], t2[24];
    qe_test_rmodel_tokens(tok, N, hp.n_vocab, 3);
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = N;
    o.top_k = 4;
    qe_engine *e = NULL;
    OK(qe_engine_open(qe_test_cl(), r.m, &o, &e));
    float *base = malloc((size_t)hp.n_vocab * sizeof *base), *pert = malloc((size_t)hp.n_vocab * sizeof *pert);
    ck_assert(base && pert);
    OK(qe_engine_prefill(e, 1, N, tok, P, NULL, NULL));
    OK(qe_engine_logits(e, 0, P, base));
    for (int j = 0; j < P; j++) {
        memcpy(t2, tok, sizeof t2);
        t2[j] = (tok[j] + 1 + j) % hp.n_vocab;
        OK(qe_engine_prefill(e, 1, N, t2, P, NULL, NULL));
        OK(qe_engine_logits(e, 0, P, pert));
        int same = memcmp(base, pert, (size_t)hp.n_vocab * sizeof *base) == 0;
        if (j < P - 2 * (W - 1))
            ck_assert_msg(same, "token %d (outside the window) changed position %d", j, P);
        else
            ck_assert_msg(!same, "token %d (inside the window) left position %d unchanged", j, P);
    }
    free(base), free(pert);
    qe_engine_close(e);
    qe_test_rmodel_free(&r);
}
END_TEST

/* ---- real models from models/ ---- */

static const char *models_path(const char *rel)
{
    static char buf[2][1024];
    static int k;
    char *b = buf[k++ & 1];
    const char *d = getenv("QEVAL_MODELS");
    snprintf(b, sizeof buf[0], "%s/%s", d && *d ? d : "models", rel);
    return b;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

#define SMOLLM2 "smollm2-135m-q4_1.gguf"
#define GEMMA3 "gemma-3-270m-q4_k_m.gguf"

/* The first n_tok tokens of wiki.test.raw (BOS first when the model adds
 * one, as perplexity does), last n_out positions scored. as_f16: run both
 * sides on the model's matrices requantized to F16 (the engine holds Q4_1
 * as F16, see engine.h: this way both compute with the same weights). */
static void check_real(const char *file, int n_tok, int n_out, int as_f16)
{
    qe_model *m = NULL;
    qe_quant_model *q = NULL;
    OK(qe_model_open(models_path(file), &m));
    if (as_f16)
        OK(qe_quant_model_new(m, QE_DT_F16, &q));
    const qe_model *run = q ? qe_quant_model_get(q) : m;
    qe_tokenizer *tk = NULL;
    OK(qe_tokenizer_from_gguf(qe_model_gguf(m), &tk));
    FILE *f = fopen(qe_test_data("text/wiki.test.raw"), "rb");
    ck_assert_ptr_nonnull(f);
    char text[8192];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    qe_tokenizer_ids ids = {0};
    OK(qe_tokenizer_encode(tk, text, len, QE_TOK_ADD_SPECIAL, &ids));
    ck_assert_uint_ge(ids.n, (size_t)n_tok);
    double md = engine_vs_ref(run, ids.v, 1, n_tok, n_tok - n_out);
    printf("# engine_arch: %s: %d tokens, last %d scored: max |delta log-prob| %.2e\n", file, n_tok,
           n_out - 1, md);
    ck_assert_msg(md < 1e-3, "%s: %g", file, md);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(tk);
    qe_quant_model_free(q);
    qe_model_close(m);
}

START_TEST(test_smollm2) { check_real(SMOLLM2, 40, 5, 1); }
END_TEST

/* Gemma's Q5_0 / Q4_K / Q6_K are also held as F16 by the engine, but its
 * embedding and output (Q8_0) are read as stored; the F16 rounding of the
 * rest stays well inside the bound, so the file is compared as it is. */
START_TEST(test_gemma3) { check_real(GEMMA3, 40, 4, 0); }
END_TEST

Suite *engine_arch_suite(void)
{
    Suite *s = suite_create("engine_arch");
    TCase *tc = tcase_create("synth");
    tcase_set_timeout(tc, 240);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(tc, test_synth);
    tcase_add_test(tc, test_window);
    tcase_add_test(tc, test_decode);
    suite_add_tcase(s, tc);

    TCase *real = tcase_create("models");
    tcase_set_timeout(real, 600);
    tcase_add_unchecked_fixture(real, qe_test_cl_setup, qe_test_cl_teardown);
    int any = 0;
    if (exists(models_path(SMOLLM2))) {
        tcase_add_test(real, test_smollm2);
        any = 1;
    } else {
        printf("# engine_arch: %s absent (run `make models`): SmolLM2 case skipped\n",
               models_path(SMOLLM2));
    }
    if (exists(models_path(GEMMA3))) {
        tcase_add_test(real, test_gemma3);
        any = 1;
    } else {
        printf("# engine_arch: %s absent (run `make models`): Gemma 3 270M case skipped\n",
               models_path(GEMMA3));
    }
    if (any)
        suite_add_tcase(s, real);
    return s;
}
