/* check_arch.c - the architecture switches of lib/model.c and lib/ref.c
 * (qwen2 biases, gemma3 norms, GELU, sliding window, soft-cap, per-layer
 * RoPE), checked against an independent float forward written here from the
 * formulas of model.h, against hand formulas, and by perturbation; GGUF
 * loading of synthetic qwen2 / gemma3 files (lib/synth.h) and of the real
 * Gemma 3 270M file when `make models` fetched it.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "ref.h"
#include "synth.h"
#include "testutil.h"

/* ---- in-memory models with random f32 weights (tests/testutil.h) ---- */

typedef qe_test_rmodel rmodel;

static qe_hparams base_hp(void)
{
    return (qe_hparams){.n_vocab = 97, .dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                        .head_dim = 8, .n_rot = 8, .n_ff = 40, .n_ctx_train = 256,
                        .rms_eps = 1e-6f, .rope_base = 10000.0f, .rope_factor = 1.0f,
                        .rope_freq_scale = 1.0f, .bos_id = -1, .eos_id = -1,
                        .rope_layout = QE_ROPE_HALVES};
}

static qe_hparams gemma_hp(int32_t window, int32_t pattern)
{
    qe_hparams hp = base_hp();
    hp.arch = QE_ARCH_GEMMA3;
    hp.n_layers = 3;
    hp.embd_scale = sqrtf((float)hp.dim);
    hp.attn_scale = 0.3f; /* not 1/sqrt(head_dim): the scale must be the one used */
    hp.ffn_act = QE_ACT_GELU_TANH;
    hp.qk_norm = hp.post_norms = 1;
    hp.swa_window = window;
    hp.swa_pattern = pattern;
    hp.rope_base = 1e6f;
    hp.rope_base_swa = 10000.0f;
    hp.rope_freq_scale = 0.125f; /* linear scaling x8 on global layers only */
    hp.rope_freq_scale_swa = 1.0f;
    hp.tied = 1;
    return hp;
}

/* Logits (n_vocab doubles per position) of the reference for tok[0..n-1]. */
static double *ref_logits(const qe_model *m, const int *tok, int n)
{
    int nv = qe_model_hparams(m)->n_vocab;
    double *out = malloc((size_t)n * (size_t)nv * sizeof *out);
    ck_assert_ptr_nonnull(out);
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_ref_new(m, n, &r), QE_OK);
    for (int p = 0; p < n; p++)
        ck_assert_msg(qe_ref_step(r, tok[p], p, out + (size_t)p * nv) == QE_OK, "%s", qe_errmsg());
    qe_ref_free(r);
    return out;
}

/* ---- an independent float forward, straight from model.h ---- */

static const float *fdata(const qe_tensor *t) { return (const float *)t->data; }

static void f_norm(float *o, const float *x, const float *w, int n, float eps)
{
    float ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++)
        o[i] = x[i] * s * w[i];
}

/* o[r] = sum_c W[r][c] x[c] (+ b[r]); W is ne {in, out}. */
static void f_mv(float *o, const qe_tensor *W, const qe_tensor *b, const float *x)
{
    const float *w = fdata(W);
    for (int64_t r = 0; r < W->ne[1]; r++) {
        float s = b && b->data ? fdata(b)[r] : 0.0f;
        for (int64_t c = 0; c < W->ne[0]; c++)
            s += w[r * W->ne[0] + c] * x[c];
        o[r] = s;
    }
}

/* Rotate each head_dim-long head of v in "halves" layout. */
static void f_rope(float *v, int n_heads, int hd, int n_rot, int pos, float base, float pscale)
{
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < n_rot / 2; i++) {
            float th = (float)pos * pscale * powf(base, -2.0f * (float)i / (float)n_rot);
            float *a = v + h * hd + i, *b = v + h * hd + i + n_rot / 2;
            float x = *a, y = *b;
            *a = x * cosf(th) - y * sinf(th);
            *b = x * sinf(th) + y * cosf(th);
        }
}

static float f_gelu(float z)
{
    return 0.5f * z * (1.0f + tanhf(0.7978845608f * (z + 0.044715f * z * z * z)));
}

/* The whole sequence at once (no cache): logits [n][n_vocab]. Every switch
 * is read from hp as the header defines it; window / pattern / rope per
 * layer are recomputed here rather than taken from qe_model_layer_*. */
static float *f_forward(const qe_hparams *hp, const qe_weights *w, const int *tok, int n)
{
    int d = hp->dim, hd = hp->head_dim, q = hp->n_heads * hd, kv = hp->n_kv_heads * hd;
    float *x = calloc((size_t)(n * d), sizeof *x), *h = malloc((size_t)d * sizeof *h);
    float *Q = malloc((size_t)(n * q) * sizeof *Q), *K = malloc((size_t)(n * kv) * sizeof *K);
    float *V = malloc((size_t)(n * kv) * sizeof *V), *a = malloc((size_t)q * sizeof *a);
    float *o = malloc((size_t)d * sizeof *o), *g = malloc((size_t)hp->n_ff * sizeof *g);
    float *u = malloc((size_t)hp->n_ff * sizeof *u), *att = malloc((size_t)n * sizeof *att);
    float *xs = malloc((size_t)(n * d) * sizeof *xs);
    float *logits = malloc((size_t)n * (size_t)hp->n_vocab * sizeof *logits);
    ck_assert(x && h && Q && K && V && a && o && g && u && att && xs && logits);
    for (int p = 0; p < n; p++)
        for (int i = 0; i < d; i++)
            x[p * d + i] = fdata(&w->token_embd)[(int64_t)tok[p] * d + i] * hp->embd_scale;
    for (int l = 0; l < hp->n_layers; l++) {
        const qe_layer *L = &w->layers[l];
        int local = hp->swa_window > 0 &&
                    (hp->swa_pattern == 0 || l % hp->swa_pattern != hp->swa_pattern - 1);
        float base = local ? hp->rope_base_swa : hp->rope_base;
        float ps = local ? hp->rope_freq_scale_swa : hp->rope_freq_scale;
        for (int p = 0; p < n; p++) {
            f_norm(h, x + p * d, fdata(&L->attn_norm), d, hp->rms_eps);
            f_mv(Q + p * q, &L->wq, hp->attn_bias ? &L->bq : NULL, h);
            f_mv(K + p * kv, &L->wk, hp->attn_bias ? &L->bk : NULL, h);
            f_mv(V + p * kv, &L->wv, hp->attn_bias ? &L->bv : NULL, h);
            if (hp->qk_norm) {
                for (int hh = 0; hh < hp->n_heads; hh++)
                    f_norm(Q + p * q + hh * hd, Q + p * q + hh * hd, fdata(&L->attn_q_norm), hd,
                           hp->rms_eps);
                for (int hh = 0; hh < hp->n_kv_heads; hh++)
                    f_norm(K + p * kv + hh * hd, K + p * kv + hh * hd, fdata(&L->attn_k_norm), hd,
                           hp->rms_eps);
            }
            f_rope(Q + p * q, hp->n_heads, hd, hp->n_rot, p, base, ps);
            f_rope(K + p * kv, hp->n_kv_heads, hd, hp->n_rot, p, base, ps);
        }
        for (int p = 0; p < n; p++) {
            for (int hh = 0; hh < hp->n_heads; hh++) {
                int kh = hh / (hp->n_heads / hp->n_kv_heads);
                float mx = -INFINITY, sum = 0;
                for (int t = 0; t <= p; t++) {
                    att[t] = -INFINITY;
                    if (local && p - t >= hp->swa_window)
                        continue;
                    float s = 0;
                    for (int i = 0; i < hd; i++)
                        s += Q[p * q + hh * hd + i] * K[t * kv + kh * hd + i];
                    att[t] = s * hp->attn_scale;
                    mx = fmaxf(mx, att[t]);
                }
                for (int t = 0; t <= p; t++) {
                    att[t] = att[t] == -INFINITY ? 0.0f : expf(att[t] - mx);
                    sum += att[t];
                }
                for (int i = 0; i < hd; i++) {
                    float s = 0;
                    for (int t = 0; t <= p; t++)
                        s += att[t] / sum * V[t * kv + kh * hd + i];
                    a[hh * hd + i] = s;
                }
            }
            f_mv(o, &L->wo, NULL, a);
            if (hp->post_norms)
                f_norm(o, o, fdata(&L->attn_post_norm), d, hp->rms_eps);
            for (int i = 0; i < d; i++)
                xs[p * d + i] = x[p * d + i] + o[i];
        }
        for (int p = 0; p < n; p++) {
            f_norm(h, xs + p * d, fdata(&L->ffn_norm), d, hp->rms_eps);
            f_mv(g, &L->w_gate, NULL, h);
            f_mv(u, &L->w_up, NULL, h);
            for (int i = 0; i < hp->n_ff; i++)
                g[i] = (hp->ffn_act == QE_ACT_GELU_TANH ? f_gelu(g[i]) : g[i] / (1 + expf(-g[i]))) *
                       u[i];
            f_mv(o, &L->w_down, NULL, g);
            if (hp->post_norms)
                f_norm(o, o, fdata(&L->ffn_post_norm), d, hp->rms_eps);
            for (int i = 0; i < d; i++)
                x[p * d + i] = xs[p * d + i] + o[i];
        }
    }
    for (int p = 0; p < n; p++) {
        f_norm(h, x + p * d, fdata(&w->output_norm), d, hp->rms_eps);
        float *lg = logits + (size_t)p * hp->n_vocab;
        f_mv(lg, &w->output, NULL, h);
        if (hp->final_softcap > 0)
            for (int v = 0; v < hp->n_vocab; v++)
                lg[v] = hp->final_softcap * tanhf(lg[v] / hp->final_softcap);
    }
    free(x), free(h), free(Q), free(K), free(V), free(a), free(o), free(g), free(u), free(att);
    free(xs);
    return logits;
}

/* max |ref - float| over all logits, relative to the largest |logit|. */
static double diff_vs_float(rmodel *r, int n, unsigned seed)
{
    int tok[64];
    ck_assert_int_le(n, 64);
    qe_test_rmodel_tokens(tok, n, r->hp.n_vocab, seed);
    double *a = ref_logits(r->m, tok, n);
    float *b = f_forward(qe_model_hparams(r->m), qe_model_weights(r->m), tok, n);
    double md = 0, mx = 0;
    for (size_t i = 0; i < (size_t)n * (size_t)r->hp.n_vocab; i++) {
        md = fmax(md, fabs(a[i] - (double)b[i]));
        mx = fmax(mx, fabs(a[i]));
    }
    free(a);
    free(b);
    return md / fmax(mx, 1e-30);
}

/* ---- tests ---- */

/* Values of torch.nn.functional.gelu(x, approximate="tanh") in float64
 * (PyTorch 2.x), an implementation independent of qeval. */
START_TEST(test_gelu_values)
{
    static const double x[] = {-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, 3.0};
    static const double y[] = {-0.0036373920817729943, -0.15880800939172324,
                               -0.15428599017485606,   0.0,
                               0.149675350701685,      0.84119199060827676,
                               1.954597694087775,      2.9963626079182268};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        ck_assert_msg(fabs(qe_ref_ffn_act(QE_ACT_GELU_TANH, x[i]) - y[i]) < 1e-15,
                      "gelu_tanh(%g) = %.17g, torch says %.17g", x[i],
                      qe_ref_ffn_act(QE_ACT_GELU_TANH, x[i]), y[i]);
    /* silu(1) = 1 / (1 + e^-1) */
    ck_assert(fabs(qe_ref_ffn_act(QE_ACT_SILU, 1.0) - 0.7310585786300049) < 1e-15);
}
END_TEST

/* The whole forward of each architecture agrees with the float forward above. */
START_TEST(test_forward_vs_float)
{
    struct {
        const char *what;
        qe_hparams hp;
    } cases[4];
    cases[0].what = "llama";
    cases[0].hp = base_hp();
    cases[1].what = "qwen2 (biases)";
    cases[1].hp = base_hp();
    cases[1].hp.arch = QE_ARCH_QWEN2;
    cases[1].hp.attn_bias = 1;
    cases[2].what = "gemma3 (window 5, pattern 3, soft-cap)";
    cases[2].hp = gemma_hp(5, 3);
    cases[2].hp.final_softcap = 4.0f;
    cases[3].what = "gemma3 (no window, untied)";
    cases[3].hp = gemma_hp(0, 0);
    cases[3].hp.tied = 0;
    for (int c = 0; c < 4; c++) {
        rmodel r;
        qe_test_rmodel_init(&r, &cases[c].hp, 100 + (uint64_t)c);
        qe_test_rmodel_build(&r, "arch-test");
        double rel = diff_vs_float(&r, 24, 7 + (unsigned)c);
        printf("# %s: reference vs float forward, max relative diff %.2e\n", cases[c].what, rel);
        ck_assert_msg(rel < 2e-5, "%s: %.3g", cases[c].what, rel);
        qe_test_rmodel_free(&r);
    }
}
END_TEST

/* Zero biases compute exactly what the same model without biases does;
 * non-zero ones change the logits. */
START_TEST(test_bias)
{
    qe_hparams hp = base_hp();
    hp.arch = QE_ARCH_QWEN2;
    hp.attn_bias = 1;
    rmodel r;
    qe_test_rmodel_init(&r, &hp, 5);
    int tok[12];
    qe_test_rmodel_tokens(tok, 12, hp.n_vocab, 3);
    qe_test_rmodel_build(&r, "arch-test");
    double *with = ref_logits(r.m, tok, 12);
    for (int l = 0; l < hp.n_layers; l++) {
        qe_layer *L = &r.w.layers[l];
        const qe_tensor *b[3] = {&L->bq, &L->bk, &L->bv};
        for (int k = 0; k < 3; k++)
            memset((void *)b[k]->data, 0, b[k]->nbytes);
    }
    qe_test_rmodel_build(&r, "arch-test");
    double *zero = ref_logits(r.m, tok, 12);
    r.hp.attn_bias = 0;
    r.hp.arch = QE_ARCH_LLAMA;
    qe_test_rmodel_build(&r, "arch-test");
    double *none = ref_logits(r.m, tok, 12);
    size_t n = 12 * (size_t)hp.n_vocab;
    ck_assert_mem_eq(zero, none, n * sizeof *zero);
    double md = 0;
    for (size_t i = 0; i < n; i++)
        md = fmax(md, fabs(with[i] - none[i]));
    ck_assert_msg(md > 1e-3, "biases changed nothing (%g)", md);
    free(with), free(zero), free(none);
    qe_test_rmodel_free(&r);
}
END_TEST

/* logits with a soft-cap c equal c tanh(z / c) of the uncapped logits z. */
START_TEST(test_softcap)
{
    qe_hparams hp = gemma_hp(0, 0);
    rmodel r;
    qe_test_rmodel_init(&r, &hp, 11);
    int tok[8];
    qe_test_rmodel_tokens(tok, 8, hp.n_vocab, 4);
    qe_test_rmodel_build(&r, "arch-test");
    double *z = ref_logits(r.m, tok, 8);
    const double c = 1.5;
    r.hp.final_softcap = (float)c;
    qe_test_rmodel_build(&r, "arch-test");
    double *capped = ref_logits(r.m, tok, 8);
    double mx = 0;
    for (size_t i = 0; i < 8 * (size_t)hp.n_vocab; i++) {
        ck_assert(fabs(capped[i] - c * tanh(z[i] / c)) < 1e-12);
        ck_assert(fabs(capped[i]) < c);
        mx = fmax(mx, fabs(z[i]));
    }
    ck_assert_msg(mx > c, "the uncapped logits never exceed the cap (%g): the test proves nothing",
                  mx);
    free(z), free(capped);
    qe_test_rmodel_free(&r);
}
END_TEST

/* A token outside the receptive field of sliding layers cannot move the
 * logits; one inside it does. Two local layers of window W see tokens
 * p - 2 (W - 1) .. p at position p. */
START_TEST(test_window_perturb)
{
    const int W = 4, P = 13, N = P + 1;
    qe_hparams hp = gemma_hp(W, 0); /* pattern 0: every layer local */
    hp.n_layers = 2;
    rmodel r;
    qe_test_rmodel_init(&r, &hp, 21);
    qe_test_rmodel_build(&r, "arch-test");
    int tok[16];
    qe_test_rmodel_tokens(tok, N, hp.n_vocab, 8);
    int nv = hp.n_vocab;
    double *base = ref_logits(r.m, tok, N);
    int first_seen = P - 2 * (W - 1);
    for (int j = 0; j < P; j++) {
        int t2[16];
        memcpy(t2, tok, sizeof t2);
        t2[j] = (tok[j] + 1 + j) % nv;
        double *pert = ref_logits(r.m, t2, N);
        double md = 0;
        for (int v = 0; v < nv; v++)
            md = fmax(md, fabs(pert[(size_t)P * nv + v] - base[(size_t)P * nv + v]));
        if (j < first_seen)
            ck_assert_msg(md == 0.0, "token %d (outside the window) moved position %d by %g", j,
                          P, md);
        else
            ck_assert_msg(md > 1e-6, "token %d (inside the window) did not move position %d", j,
                          P);
        free(pert);
    }
    free(base);
    /* Pattern 2: layer 1 is global, so even token 0 reaches position P. */
    r.hp.swa_pattern = 2;
    qe_test_rmodel_build(&r, "arch-test");
    ck_assert_int_eq(qe_model_layer_swa(&r.hp, 0), 1);
    ck_assert_int_eq(qe_model_layer_swa(&r.hp, 1), 0);
    double *g = ref_logits(r.m, tok, N);
    int t2[16];
    memcpy(t2, tok, sizeof t2);
    t2[0] = (tok[0] + 1) % nv;
    double *gp = ref_logits(r.m, t2, N);
    double md = 0;
    for (int v = 0; v < nv; v++)
        md = fmax(md, fabs(gp[(size_t)P * nv + v] - g[(size_t)P * nv + v]));
    ck_assert_msg(md > 1e-6, "a global layer did not carry token 0 to position %d", P);
    free(g), free(gp);
    qe_test_rmodel_free(&r);
}
END_TEST

/* llama.cpp's gemma3 layout: with pattern 6, layers 5, 11, 17 of 18 are
 * global (Gemma 3 270M's config.json layer_types says the same). */
START_TEST(test_layer_pattern)
{
    qe_hparams hp = gemma_hp(512, 6);
    hp.n_layers = 18;
    for (int l = 0; l < 18; l++)
        ck_assert_int_eq(qe_model_layer_swa(&hp, l), !(l == 5 || l == 11 || l == 17));
    float b, s;
    qe_model_layer_rope(&hp, 4, &b, &s);
    ck_assert(b == 10000.0f && s == 1.0f);
    qe_model_layer_rope(&hp, 5, &b, &s);
    ck_assert(b == 1e6f && s == 0.125f);
    hp.swa_window = 0;
    for (int l = 0; l < 18; l++)
        ck_assert_int_eq(qe_model_layer_swa(&hp, l), 0);
}
END_TEST

/* qe_model_build fills zero switches with plain Llama values. */
START_TEST(test_defaults)
{
    qe_hparams hp = base_hp();
    rmodel r;
    qe_test_rmodel_init(&r, &hp, 1);
    qe_test_rmodel_build(&r, "arch-test");
    const qe_hparams *h = qe_model_hparams(r.m);
    ck_assert(h->embd_scale == 1.0f);
    ck_assert(fabsf(h->attn_scale - 1.0f / sqrtf(8.0f)) < 1e-7f);
    ck_assert(h->rope_base_swa == h->rope_base && h->rope_freq_scale_swa == h->rope_freq_scale);
    qe_test_rmodel_free(&r);
}
END_TEST

/* ---- GGUF files ---- */

static char *write_synth(const char *dir, const char *name, qe_synth_family fam, int32_t window)
{
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("stories260k", &c), QE_OK);
    c.family = fam;
    c.swa_window = window;
    c.n_layers = 7;
    c.name = name;
    qe_synth *s = NULL;
    ck_assert_msg(qe_synth_new(&c, QE_DT_F32, 42, &s) == QE_OK, "%s", qe_errmsg());
    size_t len = strlen(dir) + strlen(name) + 8;
    char *path = malloc(len);
    snprintf(path, len, "%s/%s.gguf", dir, name);
    ck_assert_int_eq(qe_synth_write(s, path, 1), QE_OK);
    qe_synth_free(s);
    return path;
}

START_TEST(test_gguf_qwen2)
{
    char *dir = qe_test_tmpdir();
    char *path = write_synth(dir, "q2", QE_SYNTH_QWEN2, 0);
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(path, &m) == QE_OK, "%s", qe_errmsg());
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(hp->arch, QE_ARCH_QWEN2);
    ck_assert_int_eq(hp->attn_bias, 1);
    ck_assert_int_eq(hp->rope_layout, QE_ROPE_HALVES);
    ck_assert_int_eq(hp->qk_norm | hp->post_norms | hp->swa_window, 0);
    const qe_layer *L = &qe_model_weights(m)->layers[6];
    ck_assert_str_eq(L->bk.name, "blk.6.attn_k.bias");
    ck_assert_int_eq(L->bk.ne[0], 4 * 8);
    char desc[1024];
    qe_model_describe(m, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "qwen2") && strstr(desc, "q/k/v biases"), "%s", desc);
    qe_model_close(m);
    free(path);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_gguf_gemma3)
{
    char *dir = qe_test_tmpdir();
    char *path = write_synth(dir, "g3", QE_SYNTH_GEMMA3, 16);
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(path, &m) == QE_OK, "%s", qe_errmsg());
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(hp->arch, QE_ARCH_GEMMA3);
    ck_assert(hp->embd_scale == sqrtf(64.0f));
    ck_assert(hp->attn_scale == (float)(1.0 / sqrt(8.0)));
    ck_assert_int_eq(hp->ffn_act, QE_ACT_GELU_TANH);
    ck_assert_int_eq(hp->swa_window, 16);
    ck_assert_int_eq(hp->swa_pattern, 6);
    ck_assert(hp->rope_base_swa == 10000.0f && hp->rope_freq_scale_swa == 1.0f);
    ck_assert_int_eq(hp->rope_layout, QE_ROPE_HALVES);
    ck_assert(hp->final_softcap == 0.0f);
    ck_assert_str_eq(qe_model_weights(m)->layers[3].ffn_post_norm.name, "blk.3.post_ffw_norm.weight");
    ck_assert_int_eq(qe_model_weights(m)->layers[3].attn_q_norm.ne[0], 8);
    qe_model_close(m);
    free(path);
    /* No sliding_window key: every layer global. */
    path = write_synth(dir, "g3nowin", QE_SYNTH_GEMMA3, 0);
    ck_assert_msg(qe_model_open(path, &m) == QE_OK, "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_hparams(m)->swa_window, 0);
    ck_assert_int_eq(qe_model_layer_swa(qe_model_hparams(m), 0), 0);
    qe_model_close(m);
    free(path);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz);
    ck_assert(fread(b, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Replace the first occurrence of `from` after `after` (same length). */
static void patch(char *b, size_t n, const char *after, const char *from, const char *to)
{
    size_t la = strlen(after), lf = strlen(from);
    ck_assert_uint_eq(lf, strlen(to));
    for (size_t i = 0; i + la <= n; i++)
        if (memcmp(b + i, after, la) == 0)
            for (size_t j = i + la; j + lf <= n; j++)
                if (memcmp(b + j, from, lf) == 0) {
                    memcpy(b + j, to, lf);
                    return;
                }
    ck_abort_msg("pattern %s not found", from);
}

START_TEST(test_limits)
{
    char *dir = qe_test_tmpdir();
    char *path = write_synth(dir, "g3", QE_SYNTH_GEMMA3, 16);
    size_t n;
    char *bytes = slurp(path, &n);
    qe_model *m = NULL;

    /* An architecture qeval does not compute: named in the message. */
    char *b2 = malloc(n);
    memcpy(b2, bytes, n);
    patch(b2, n, "general.architecture", "gemma3", "gemmaX");
    char *p2 = qe_test_write(dir, "arch.gguf", b2, n);
    ck_assert_int_eq(qe_model_open(p2, &m), QE_EUNSUPPORTED);
    ck_assert_msg(strstr(qe_errmsg(), "\"gemmaX\""), "%s", qe_errmsg());
    free(p2);

    /* A gemma3 file without a q norm tensor: named. */
    memcpy(b2, bytes, n);
    patch(b2, n, "", "blk.2.attn_q_norm.weight", "blk.2.attn_q_nxrm.weight");
    p2 = qe_test_write(dir, "qnorm.gguf", b2, n);
    ck_assert_int_eq(qe_model_open(p2, &m), QE_ECORRUPT);
    ck_assert_msg(strstr(qe_errmsg(), "blk.2.attn_q_norm.weight"), "%s", qe_errmsg());
    free(p2);
    free(b2);
    free(bytes);
    free(path);

    /* Switches on without their tensors, and out-of-range switches. */
    qe_hparams hp = gemma_hp(4, 2);
    rmodel r;
    qe_test_rmodel_init(&r, &hp, 3);
    r.w.layers[1].attn_k_norm.data = NULL;
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
    ck_assert_msg(strstr(qe_errmsg(), "layer 1 attn_k_norm"), "%s", qe_errmsg());
    r.w.layers[1].attn_k_norm = r.w.layers[1].attn_q_norm;
    r.hp.attn_bias = 1; /* no bias tensors */
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
    ck_assert_msg(strstr(qe_errmsg(), "attn_q.bias"), "%s", qe_errmsg());
    r.hp.attn_bias = 0;
    const struct {
        float *f;
        float v;
    } bad_f[] = {{&r.hp.final_softcap, -1.0f}, {&r.hp.final_softcap, NAN},
                 {&r.hp.embd_scale, INFINITY}, {&r.hp.attn_scale, -0.5f},
                 {&r.hp.rope_base_swa, 0.5f},  {&r.hp.rope_freq_scale_swa, -1.0f}};
    for (size_t i = 0; i < sizeof bad_f / sizeof bad_f[0]; i++) {
        float keep = *bad_f[i].f;
        *bad_f[i].f = bad_f[i].v;
        ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
        *bad_f[i].f = keep;
    }
    r.hp.swa_pattern = -1;
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
    r.hp.swa_pattern = 2;
    r.hp.arch = (qe_arch)7;
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
    r.hp.arch = QE_ARCH_GEMMA3;
    r.hp.ffn_act = (qe_ffn_act)5;
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_ECORRUPT);
    r.hp.ffn_act = QE_ACT_GELU_TANH;
    ck_assert_int_eq(qe_model_build(&r.hp, &r.w, "x", &m), QE_OK);
    qe_model_close(m);
    qe_test_rmodel_free(&r);

    /* synth refuses llama3 scaling outside the llama family, unknown families. */
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("llama-3.2-1b", &c), QE_OK);
    c.family = QE_SYNTH_QWEN2;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);
    c.family = (qe_synth_family)9;
    c.rope_factor = 0;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);
    ck_assert_ptr_null(qe_synth_family_name((qe_synth_family)9));
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- the real Gemma 3 270M (models/, from `make models`) ---- */

static const char *models_path(const char *rel)
{
    static char buf[1024];
    const char *d = getenv("QEVAL_MODELS");
    snprintf(buf, sizeof buf, "%s/%s", d && *d ? d : "models", rel);
    return buf;
}

#define GEMMA_FILE "gemma-3-270m-q4_k_m.gguf"

/* Facts from the model card / config.json of google/gemma-3-270m: 18 layers,
 * hidden 640, 4 heads of 256, 1 kv head, ffn 2048, vocabulary 262144,
 * sliding window 512, rope_theta 1e6, local base 10000, global layers 5, 11, 17. */
START_TEST(test_gemma3_270m)
{
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(models_path(GEMMA_FILE), &m) == QE_OK, "%s", qe_errmsg());
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(hp->arch, QE_ARCH_GEMMA3);
    ck_assert_int_eq(hp->n_layers, 18);
    ck_assert_int_eq(hp->dim, 640);
    ck_assert_int_eq(hp->n_heads, 4);
    ck_assert_int_eq(hp->n_kv_heads, 1);
    ck_assert_int_eq(hp->head_dim, 256);
    ck_assert_int_eq(hp->n_ff, 2048);
    ck_assert_int_eq(hp->n_vocab, 262144);
    ck_assert_int_eq(hp->swa_window, 512);
    ck_assert(hp->rope_base == 1e6f && hp->rope_base_swa == 10000.0f);
    ck_assert(hp->attn_scale == 1.0f / 16.0f);
    ck_assert_int_eq(hp->tied, 1);
    int global = 0;
    for (int l = 0; l < 18; l++)
        global += !qe_model_layer_swa(hp, l) * (1 << l);
    ck_assert_int_eq(global, (1 << 5) | (1 << 11) | (1 << 17));
    qe_model_close(m);
}
END_TEST

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

Suite *arch_suite(void)
{
    Suite *s = suite_create("arch");
    TCase *tc = tcase_create("ref");
    tcase_add_test(tc, test_gelu_values);
    tcase_add_test(tc, test_forward_vs_float);
    tcase_add_test(tc, test_bias);
    tcase_add_test(tc, test_softcap);
    tcase_add_test(tc, test_window_perturb);
    tcase_add_test(tc, test_layer_pattern);
    tcase_add_test(tc, test_defaults);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    TCase *g = tcase_create("gguf");
    tcase_add_test(g, test_gguf_qwen2);
    tcase_add_test(g, test_gguf_gemma3);
    tcase_set_timeout(g, 60);
    suite_add_tcase(s, g);

    if (exists(models_path(GEMMA_FILE))) {
        TCase *real = tcase_create("gemma3_270m");
        tcase_add_test(real, test_gemma3_270m);
        tcase_set_timeout(real, 60);
        suite_add_tcase(s, real);
    } else {
        printf("# arch: %s absent (run `make models`): Gemma 3 270M case skipped\n",
               models_path(GEMMA_FILE));
    }

    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    tcase_set_timeout(lim, 60);
    suite_add_tcase(s, lim);
    return s;
}
