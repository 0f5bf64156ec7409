/* check_engine.c - the OpenCL forward pass against the double-precision
 * reference (lib/ref.c), on a real device (PoCL here).
 *
 * Inputs are fixed-seed random token sequences; device buffers and host
 * outputs are poisoned with NaN before every run (qe_test_res). Reference
 * statistics (log-sum-exp, target log-prob, arg-max, top-k) are computed in
 * double from qe_ref_step's logits, independently of the kernels
 * (testutil.h's reference helpers).
 *
 * The OpenCL context does not survive fork() (Check forks each test unless
 * CK_FORK=no), so the unchecked fixture only prepares a scratch program cache
 * shared by the case's tests, and qe_test_cl() opens the context once per
 * process; the unchecked teardown closes it.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "dtype.h"
#include "engine.h"
#include "log.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())
#define TOL 1e-4 /* absolute, on log-probs and log-sum-exp */

/* ---- helpers ---- */

static float rnd_unit(void) /* uniform in [-1, 1), as float */
{
    return (float)qe_test_rnd_unit();
}

static qe_engine *open_engine(const qe_model *m, int n_ctx, int n_seq, int top_k, int head_rows)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = n_ctx;
    o.n_seq = n_seq;
    o.top_k = top_k;
    o.head_rows = head_rows;
    return qe_test_engine(m, &o);
}

/* Poisoned prefill. */
static void prefill(qe_engine *e, qe_test_res *r, int n_seq, int n_tok, const int32_t *tok,
                    int out_first, const int32_t *tgt)
{
    qe_test_res_init(r, n_seq * (n_tok - out_first), qe_engine_options(e).top_k);
    OK(qe_engine_poison(e));
    OK(qe_engine_prefill(e, n_seq, n_tok, tok, out_first, tgt, &r->out));
}

/* Run the reference over every sequence and compare all rows of r.
 * e may be given to also compare qe_engine_logits on a few rows. Returns the
 * number of top-k entries checked by id (near-ties skipped). */
static int check_vs_ref(const qe_model *m, qe_engine *e, const qe_test_res *r, int n_seq,
                        int n_tok, const int32_t *tok, int out_first, const int32_t *tgt)
{
    const int nv = qe_model_hparams(m)->n_vocab, k = r->k, n_out = n_tok - out_first;
    double *z = malloc((size_t)nv * sizeof *z);
    float *dz = malloc((size_t)nv * sizeof *dz);
    int *ids = malloc((size_t)(k + 2) * sizeof *ids);
    qe_ref *ref = NULL;
    ck_assert(z && dz && ids);
    OK(qe_ref_new(m, n_tok, &ref));
    int checked_ids = 0;
    for (int s = 0; s < n_seq; s++) {
        qe_ref_reset(ref);
        for (int p = 0; p < n_tok; p++) {
            OK(qe_ref_step(ref, tok[(size_t)s * n_tok + p], p, z));
            if (p < out_first)
                continue;
            const int row = s * n_out + p - out_first;
            char where[64];
            snprintf(where, sizeof where, "seq %d pos %d", s, p);
            qe_test_ref_top(z, nv, k + 2 < nv ? k + 2 : nv, ids);
            const double lse = qe_test_ref_lse(z, nv);
            checked_ids += qe_test_check_row(z, nv, ids, lse, r->lse[row], r->tkp + (size_t)row * k,
                                             r->tki + (size_t)row * k, k, TOL, where);
            const int t = tgt ? tgt[row] : -1;
            if (t >= 0)
                ck_assert_msg(fabs(r->tlp[row] - (z[t] - lse)) < TOL,
                              "%s: target %d log-prob %.7f, ref %.7f", where, t,
                              (double)r->tlp[row], z[t] - lse);
            else
                ck_assert_msg(isnan(r->tlp[row]), "%s: no target but %g", where,
                              (double)r->tlp[row]);
            if (nv < 2 || z[ids[0]] - z[ids[1]] > TOL)
                ck_assert_msg(r->am[row] == ids[0], "%s: argmax %d, ref %d", where, r->am[row],
                              ids[0]);
            /* The debug read-back on a few rows: the logits themselves. */
            if (e && (p == out_first || p == n_tok - 1) && s == n_seq - 1) {
                for (int i = 0; i < nv; i++)
                    dz[i] = NAN;
                OK(qe_engine_logits(e, s, p, dz));
                qe_test_check_logits(dz, z, nv, TOL, where);
            }
        }
    }
    qe_ref_free(ref);
    free(z);
    free(dz);
    free(ids);
    return checked_ids;
}

/* Targets: the next token for most rows, -1 for every 7th. */
static int32_t *make_targets(int n_seq, int n_tok, const int32_t *tok, int out_first, int nv)
{
    const int n_out = n_tok - out_first;
    int32_t *t = malloc((size_t)n_seq * n_out * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int s = 0; s < n_seq; s++)
        for (int j = 0; j < n_out; j++) {
            int p = out_first + j, row = s * n_out + j;
            t[row] = row % 7 == 3 ? -1
                     : p + 1 < n_tok ? tok[(size_t)s * n_tok + p + 1]
                                     : (int32_t)(qe_test_rnd_u32() % (uint32_t)nv);
        }
    return t;
}

/* ---- real models ---- */

/* (a) every row vs the reference, (b) batch invariance, (c) out_first and
 * head-pass size invariance, on one real model. */
static void check_real(const char *rel, int n_tok, uint64_t seed)
{
    enum { NS = 3, K = 10 };
    qe_test_rng_seed(seed);
    qe_model *m = qe_test_model(rel);
    const int nv = qe_model_hparams(m)->n_vocab;
    int32_t *tok = malloc((size_t)NS * n_tok * sizeof *tok);
    ck_assert_ptr_nonnull(tok);
    qe_test_rnd_tokens(tok, (size_t)NS * n_tok, nv);
    int32_t *tgt = make_targets(NS, n_tok, tok, 0, nv);

    qe_engine *e = open_engine(m, n_tok + 5, NS, K, 0);
    qe_test_res all;
    prefill(e, &all, NS, n_tok, tok, 0, tgt);
    int ids = check_vs_ref(m, e, &all, NS, n_tok, tok, 0, tgt);
    ck_assert_int_gt(ids, NS * n_tok * K / 2); /* near-ties are rare */

    /* (b) the middle sequence alone: bit-identical rows. */
    qe_test_res one;
    prefill(e, &one, 1, n_tok, tok + n_tok, 0, tgt + n_tok);
    for (int p = 0; p < n_tok; p++) {
        const char *d = qe_test_res_row_diff(&all, n_tok + p, &one, p);
        ck_assert_msg(!d, "%s: pos %d: %s differs alone vs in a batch", rel, p, d);
    }

    /* (c) out_first > 0: the same rows, bit for bit; targets follow the rows. */
    const int of = n_tok / 2 + 1, n_out = n_tok - of;
    int32_t *tgt2 = malloc((size_t)NS * n_out * sizeof *tgt2);
    ck_assert_ptr_nonnull(tgt2);
    for (int s = 0; s < NS; s++)
        memcpy(tgt2 + s * n_out, tgt + s * n_tok + of, (size_t)n_out * sizeof *tgt2);
    qe_test_res half;
    prefill(e, &half, NS, n_tok, tok, of, tgt2);
    for (int s = 0; s < NS; s++)
        for (int j = 0; j < n_out; j++) {
            const char *d = qe_test_res_row_diff(&all, s * n_tok + of + j, &half, s * n_out + j);
            ck_assert_msg(!d, "%s: seq %d pos %d: %s differs with out_first %d", rel, s, of + j, d,
                          of);
        }

    /* Head passes of 7 rows (a ragged last pass) change nothing either. */
    qe_engine *e7 = open_engine(m, n_tok, NS, K, 7);
    ck_assert_int_eq(qe_engine_options(e7).head_rows, 7);
    qe_test_res small;
    prefill(e7, &small, NS, n_tok, tok, of, tgt2);
    qe_test_res_same(&half, &small, "head_rows 7");

    /* No targets: every target log-prob is NaN, the rest unchanged. */
    qe_test_res nt;
    prefill(e7, &nt, NS, n_tok, tok, of, NULL);
    for (int r = 0; r < NS * n_out; r++) {
        ck_assert(isnan(nt.tlp[r]));
        nt.tlp[r] = half.tlp[r];
    }
    qe_test_res_same(&half, &nt, "no targets");

    qe_test_res_free(&all);
    qe_test_res_free(&one);
    qe_test_res_free(&half);
    qe_test_res_free(&small);
    qe_test_res_free(&nt);
    qe_engine_close(e);
    qe_engine_close(e7);
    free(tok);
    free(tgt);
    free(tgt2);
    qe_model_close(m);
}

START_TEST(test_stories260k) { check_real("models/stories260K.gguf", 96, 260); }
END_TEST

START_TEST(test_tinystories656k) { check_real("models/TinyStories-656K", 72, 656); }
END_TEST

/* ---- in-memory models ---- */

#define MAX_OWNED 96
typedef struct synth {
    qe_hparams hp;
    qe_weights w;
    qe_layer layers[8];
    void *owned[MAX_OWNED];
    int n_owned;
    qe_model *m;
} synth;

static void *synth_alloc(synth *s, size_t bytes)
{
    ck_assert_int_lt(s->n_owned, MAX_OWNED);
    void *p = malloc(bytes);
    ck_assert_ptr_nonnull(p);
    s->owned[s->n_owned++] = p;
    return p;
}

/* A tensor of `type` from ne0 x ne1 floats (rounded to the type). */
static qe_tensor synth_from(synth *s, const char *name, qe_dtype type, int64_t ne0, int64_t ne1,
                            const float *v)
{
    size_t n = (size_t)(ne0 * ne1), es = type == QE_DT_F32 ? 4 : 2;
    unsigned char *d = synth_alloc(s, n * es);
    for (size_t i = 0; i < n; i++) {
        if (type == QE_DT_F32) {
            memcpy(d + 4 * i, &v[i], 4);
        } else {
            uint16_t h = type == QE_DT_F16 ? qe_f32_to_f16(v[i]) : qe_f32_to_bf16(v[i]);
            memcpy(d + 2 * i, &h, 2);
        }
    }
    qe_tensor t;
    OK(qe_tensor_view(&t, name, type, ne0, ne1, d, n * es, 1));
    return t;
}

/* Random tensor: offset + scale * U[-1, 1). */
static qe_tensor synth_rand(synth *s, const char *name, qe_dtype type, int64_t ne0, int64_t ne1,
                            float offset, float scale)
{
    size_t n = (size_t)(ne0 * ne1);
    float *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++)
        v[i] = offset + scale * rnd_unit();
    qe_tensor t = synth_from(s, name, type, ne0, ne1, v);
    free(v);
    return t;
}

/* An existing tensor converted to `type`. */
static qe_tensor synth_convert(synth *s, const qe_tensor *src, qe_dtype type)
{
    size_t n = (size_t)(src->ne[0] * src->ne[1]);
    float *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t r = 0; r < src->ne[1]; r++)
        qe_tensor_row_f32(src, r, v + r * src->ne[0]);
    qe_tensor t = synth_from(s, src->name, type, src->ne[0], src->ne[1], v);
    free(v);
    return t;
}

static void synth_free(synth *s)
{
    qe_model_close(s->m);
    for (int i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
}

/* A random model of the given shape, every matrix of type wt. */
static void synth_random(synth *s, const qe_hparams *hp, qe_dtype wt)
{
    memset(s, 0, sizeof *s);
    s->hp = *hp;
    ck_assert_int_le(hp->n_layers, 8);
    const int d = hp->dim, q = hp->n_heads * hp->head_dim, kv = hp->n_kv_heads * hp->head_dim;
    const float sd = 1.0f / sqrtf((float)d), sq = 1.0f / sqrtf((float)q),
                sf = 1.0f / sqrtf((float)hp->n_ff);
    s->w.token_embd = synth_rand(s, "token_embd", wt, d, hp->n_vocab, 0, 1);
    s->w.output_norm = synth_rand(s, "output_norm", QE_DT_F32, d, 1, 1, 0.2f);
    s->w.output = hp->tied ? s->w.token_embd : synth_rand(s, "output", wt, d, hp->n_vocab, 0, 3 * sd);
    for (int l = 0; l < hp->n_layers; l++) {
        qe_layer *L = &s->layers[l];
        L->attn_norm = synth_rand(s, "attn_norm", QE_DT_F32, d, 1, 1, 0.2f);
        L->wq = synth_rand(s, "wq", wt, d, q, 0, 2 * sd);
        L->wk = synth_rand(s, "wk", wt, d, kv, 0, 2 * sd);
        L->wv = synth_rand(s, "wv", wt, d, kv, 0, sd);
        L->wo = synth_rand(s, "wo", wt, q, d, 0, sq);
        L->ffn_norm = synth_rand(s, "ffn_norm", QE_DT_F32, d, 1, 1, 0.2f);
        L->w_gate = synth_rand(s, "w_gate", wt, d, hp->n_ff, 0, sd);
        L->w_up = synth_rand(s, "w_up", wt, d, hp->n_ff, 0, sd);
        L->w_down = synth_rand(s, "w_down", wt, hp->n_ff, d, 0, sf);
    }
    s->w.layers = s->layers;
}

static void synth_build(synth *s, const char *name)
{
    ck_assert_msg(qe_model_build(&s->hp, &s->w, name, &s->m) == QE_OK, "%s", qe_errmsg());
}

/* Check every row of n_seq random sequences against the reference. */
static void check_synth(const qe_model *m, int n_ctx, int n_seq, int n_tok, int out_first, int k)
{
    const int nv = qe_model_hparams(m)->n_vocab;
    int32_t *tok = malloc((size_t)n_seq * n_tok * sizeof *tok);
    ck_assert_ptr_nonnull(tok);
    qe_test_rnd_tokens(tok, (size_t)n_seq * n_tok, nv);
    int32_t *tgt = make_targets(n_seq, n_tok, tok, out_first, nv);
    qe_engine *e = open_engine(m, n_ctx, n_seq, k, 0);
    qe_test_res r;
    prefill(e, &r, n_seq, n_tok, tok, out_first, tgt);
    ck_assert_int_gt(check_vs_ref(m, e, &r, n_seq, n_tok, tok, out_first, tgt), 0);
    qe_test_res_free(&r);
    qe_engine_close(e);
    free(tok);
    free(tgt);
}

/* (d) MHA, untied output, F16 weights (one layer BF16, norms F16), on
 * stories260K's weights with fresh K/V projections; halves RoPE on 6 of 8
 * head dims, rope_freqs divisors and a linear position scale. The reference
 * reads the same rounded weights. */
START_TEST(test_mha_f16)
{
    qe_test_rng_seed(16);
    qe_model *src = qe_test_model("models/stories260K.gguf");
    const qe_hparams *hp0 = qe_model_hparams(src);
    const qe_weights *w0 = qe_model_weights(src);
    synth s;
    memset(&s, 0, sizeof s);
    s.hp = *hp0;
    s.hp.n_kv_heads = s.hp.n_heads;
    s.hp.tied = 0;
    s.hp.n_rot = s.hp.head_dim - 2;
    s.hp.rope_layout = QE_ROPE_HALVES;
    s.hp.rope_scaling = QE_ROPE_SCALING_LINEAR;
    s.hp.rope_factor = 2.0f;
    s.hp.rope_freq_scale = 0.5f;
    ck_assert_int_le(s.hp.n_layers, 8);
    const int d = s.hp.dim, kv = s.hp.n_heads * s.hp.head_dim;
    s.w.token_embd = synth_convert(&s, &w0->token_embd, QE_DT_F16);
    s.w.output = synth_rand(&s, "output", QE_DT_F16, d, s.hp.n_vocab, 0, 0.5f);
    s.w.output_norm = synth_convert(&s, &w0->output_norm, QE_DT_F16);
    float div[16];
    for (int i = 0; i < s.hp.n_rot / 2; i++)
        div[i] = 1.0f + 3.0f * (rnd_unit() + 1.0f) / 2.0f;
    s.w.rope_freqs = synth_from(&s, "rope_freqs", QE_DT_F32, s.hp.n_rot / 2, 1, div);
    for (int l = 0; l < s.hp.n_layers; l++) {
        const qe_layer *L0 = &w0->layers[l];
        qe_layer *L = &s.layers[l];
        qe_dtype t = l == 1 ? QE_DT_BF16 : QE_DT_F16;
        L->attn_norm = synth_convert(&s, &L0->attn_norm, QE_DT_F16);
        L->ffn_norm = synth_convert(&s, &L0->ffn_norm, QE_DT_F16);
        L->wq = synth_convert(&s, &L0->wq, t);
        L->wk = synth_rand(&s, "wk", t, d, kv, 0, 0.3f);
        L->wv = synth_rand(&s, "wv", t, d, kv, 0, 0.3f);
        L->wo = synth_convert(&s, &L0->wo, t);
        L->w_gate = synth_convert(&s, &L0->w_gate, t);
        L->w_up = synth_convert(&s, &L0->w_up, t);
        L->w_down = synth_convert(&s, &L0->w_down, t);
    }
    s.w.layers = s.layers;
    synth_build(&s, "mha-f16");
    check_synth(s.m, 80, 2, 80, 20, 12);
    synth_free(&s);
    qe_model_close(src);
}
END_TEST

/* Attention at length: head_dim 256 (the limit), 2048 positions, GQA 2/1,
 * pairs RoPE over half the head, an F32 random model. */
START_TEST(test_long_context)
{
    qe_test_rng_seed(2048);
    qe_hparams hp = {.n_vocab = 67, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                     .head_dim = 256, .n_rot = 128, .n_ff = 48, .n_ctx_train = 2048,
                     .rms_eps = 0.05f, .rope_base = 10000.0f, .rope_layout = QE_ROPE_PAIRS,
                     .rope_scaling = QE_ROPE_SCALING_NONE, .rope_factor = 1.0f,
                     .rope_freq_scale = 1.0f, .bos_id = -1, .eos_id = -1, .tied = 0};
    synth s;
    synth_random(&s, &hp, QE_DT_F32);
    synth_build(&s, "long");
    check_synth(s.m, 2048, 1, 2048, 0, 5);
    synth_free(&s);
}
END_TEST

/* Exact ties: output rows 3, 7 and 259 are one large random row, the others
 * small, so wherever that row's logit is positive the three tie for the
 * lead (259 shares a work-item's strided list with 3 for reduction widths
 * 256 down to 4, 7 does not). Arg-max and top-k must rank them by lower id. */
START_TEST(test_ties)
{
    qe_test_rng_seed(333);
    qe_hparams hp = {.n_vocab = 300, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                     .head_dim = 8, .n_rot = 8, .n_ff = 40, .n_ctx_train = 64, .rms_eps = 1e-5f,
                     .rope_base = 10000.0f, .rope_factor = 1.0f, .rope_freq_scale = 1.0f,
                     .bos_id = -1, .eos_id = -1, .tied = 0};
    synth s;
    synth_random(&s, &hp, QE_DT_F32);
    float *out = synth_alloc(&s, (size_t)hp.n_vocab * hp.dim * sizeof(float)), big[32];
    for (int i = 0; i < hp.dim; i++)
        big[i] = 2.0f * rnd_unit();
    for (int v = 0; v < hp.n_vocab; v++)
        for (int i = 0; i < hp.dim; i++)
            out[v * hp.dim + i] = v == 3 || v == 7 || v == 259 ? big[i] : 0.05f * rnd_unit();
    OK(qe_tensor_view(&s.w.output, "output", QE_DT_F32, hp.dim, hp.n_vocab, out,
                      (uint64_t)hp.n_vocab * hp.dim * sizeof(float), 1));
    synth_build(&s, "ties");
    enum { NT = 40, K = 8 };
    int32_t tok[NT];
    qe_test_rnd_tokens(tok, NT, hp.n_vocab);
    qe_engine *e = open_engine(s.m, NT, 1, K, 0);
    qe_test_res r;
    prefill(e, &r, 1, NT, tok, 0, NULL);
    check_vs_ref(s.m, e, &r, 1, NT, tok, 0, NULL);
    int led = 0;
    float z[300];
    for (int p = 0; p < NT; p++) {
        OK(qe_engine_logits(e, 0, p, z));
        ck_assert(z[3] == z[7] && z[3] == z[259]);
        int lead = 1;
        for (int v = 0; v < hp.n_vocab; v++)
            lead &= v == 3 || v == 7 || v == 259 || z[v] < z[3];
        if (!lead)
            continue;
        led++;
        ck_assert_int_eq(r.am[p], 3);
        ck_assert_int_eq(r.tki[p * K + 0], 3);
        ck_assert_int_eq(r.tki[p * K + 1], 7);
        ck_assert_int_eq(r.tki[p * K + 2], 259);
        ck_assert(r.tkp[p * K + 0] == r.tkp[p * K + 2]);
    }
    ck_assert_int_gt(led, NT / 5);
    qe_test_res_free(&r);
    qe_engine_close(e);
    synth_free(&s);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits)
{
    qe_test_rng_seed(7);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    const int nv = qe_model_hparams(m)->n_vocab;
    qe_cl *cl = qe_test_cl();
    qe_engine *e = NULL;
    qe_engine_opts o = qe_engine_opts_default();
    ck_assert_int_eq(o.top_k, 10);

    o.n_ctx = 0;
    ck_assert_int_eq(qe_engine_open(cl, m, &o, &e), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n_ctx"));
    ck_assert_ptr_null(e);
    o = qe_engine_opts_default();
    o.n_seq = 0;
    ck_assert_int_eq(qe_engine_open(cl, m, &o, &e), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n_seq"));
    o = qe_engine_opts_default();
    o.top_k = QE_ENGINE_TOP_K_MAX + 1;
    ck_assert_int_eq(qe_engine_open(cl, m, &o, &e), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "top_k"));
    o.top_k = -1;
    ck_assert_int_eq(qe_engine_open(cl, m, &o, &e), QE_EINVAL);
    o = qe_engine_opts_default();
    o.head_rows = -1;
    ck_assert_int_eq(qe_engine_open(cl, m, &o, &e), QE_EINVAL);
    ck_assert_int_eq(qe_engine_open(NULL, m, NULL, &e), QE_EINVAL);
    qe_engine_close(NULL);

    /* top_k above a tiny vocabulary; head_dim above 256 */
    qe_hparams hp = {.n_vocab = 5, .dim = 8, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1,
                     .head_dim = 8, .n_rot = 8, .n_ff = 8, .n_ctx_train = 16, .rms_eps = 1e-5f,
                     .rope_base = 10000.0f, .rope_factor = 1.0f, .rope_freq_scale = 1.0f,
                     .bos_id = -1, .eos_id = -1, .tied = 1};
    synth s;
    synth_random(&s, &hp, QE_DT_F32);
    synth_build(&s, "tiny");
    o = qe_engine_opts_default();
    o.n_ctx = 16;
    ck_assert_int_eq(qe_engine_open(cl, s.m, &o, &e), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "top_k"));
    o.top_k = 5; /* the whole vocabulary is fine */
    OK(qe_engine_open(cl, s.m, &o, &e));
    int32_t t5[4] = {0, 4, 3, 1};
    qe_test_res r5;
    prefill(e, &r5, 1, 4, t5, 0, NULL);
    for (int row = 0; row < 4; row++) { /* a permutation of the vocabulary */
        int seen = 0;
        for (int j = 0; j < 5; j++)
            seen |= 1 << r5.tki[row * 5 + j];
        ck_assert_int_eq(seen, 31);
    }
    qe_test_res_free(&r5);
    qe_engine_close(e);
    e = NULL;
    synth_free(&s);
    hp.head_dim = 264;
    hp.n_rot = 8;
    synth_random(&s, &hp, QE_DT_F32);
    synth_build(&s, "wide");
    o.top_k = 2;
    ck_assert_int_eq(qe_engine_open(cl, s.m, &o, &e), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "head_dim"));
    synth_free(&s);

    /* (Every weight type a model can hold now has a device path; the
     * KV-format and paired-evaluation limits are in check_engine_formats.c.) */

    /* prefill arguments */
    e = open_engine(m, 16, 2, 4, 0);
    int32_t tok[2 * 17], tgt[2 * 17];
    float lse[2 * 17];
    qe_engine_out out = {.lse = lse};
    qe_test_rnd_tokens(tok, 2 * 17, nv);
    for (int i = 0; i < 2 * 17; i++)
        tgt[i] = -1;
    float z[512];
    ck_assert_int_eq(qe_engine_logits(e, 0, 0, z), QE_EINVAL); /* nothing ran yet */
    ck_assert_int_eq(qe_engine_head(e, 0, 1), QE_EINVAL);
    ck_assert_int_eq(qe_engine_prefill(e, 1, 17, tok, 0, tgt, &out), QE_EINVAL); /* n_tok > n_ctx */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n_tok 17"));
    ck_assert_int_eq(qe_engine_prefill(e, 1, 0, tok, 0, tgt, &out), QE_EINVAL);
    ck_assert_int_eq(qe_engine_prefill(e, 3, 8, tok, 0, tgt, &out), QE_EINVAL); /* n_seq > max */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n_seq 3"));
    ck_assert_int_eq(qe_engine_prefill(e, 0, 8, tok, 0, tgt, &out), QE_EINVAL);
    ck_assert_int_eq(qe_engine_prefill(e, 1, 8, tok, 8, tgt, &out), QE_EINVAL); /* out_first */
    ck_assert_int_eq(qe_engine_prefill(e, 1, 8, tok, -1, tgt, &out), QE_EINVAL);
    tok[8 + 5] = nv; /* sequence 1, position 5 */
    ck_assert_int_eq(qe_engine_prefill(e, 2, 8, tok, 0, tgt, &out), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "sequence 1 position 5"));
    tok[8 + 5] = -1;
    ck_assert_int_eq(qe_engine_prefill(e, 2, 8, tok, 0, tgt, &out), QE_EINVAL);
    tok[8 + 5] = 3;
    tgt[6] = nv; /* row 6 at out_first 4: sequence 1, position 6 */
    ck_assert_int_eq(qe_engine_prefill(e, 2, 8, tok, 4, tgt, &out), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "sequence 1 position 6"));
    tgt[6] = -2;
    ck_assert_int_eq(qe_engine_prefill(e, 2, 8, tok, 4, tgt, &out), QE_EINVAL);
    tgt[6] = -1;
    ck_assert_int_eq(qe_engine_logits(e, 0, 0, z), QE_EINVAL); /* still nothing ran */

    /* a valid run, then the debug calls' ranges */
    for (int i = 0; i < 8; i++)
        lse[i] = NAN;
    OK(qe_engine_prefill(e, 2, 8, tok, 4, tgt, &out));
    for (int i = 0; i < 8; i++)
        ck_assert(isfinite(lse[i]));
    OK(qe_engine_logits(e, 1, 7, z));
    ck_assert_int_eq(qe_engine_logits(e, 1, 3, z), QE_EINVAL); /* below out_first */
    ck_assert_int_eq(qe_engine_logits(e, 1, 8, z), QE_EINVAL);
    ck_assert_int_eq(qe_engine_logits(e, 2, 7, z), QE_EINVAL);
    OK(qe_engine_head(e, 0, 8));
    ck_assert_int_eq(qe_engine_head(e, 1, 8), QE_EINVAL); /* past the 8 rows */
    ck_assert_int_eq(qe_engine_head(e, 0, 0), QE_EINVAL);
    ck_assert_ptr_nonnull(qe_engine_logits_mem(e));
    OK(qe_engine_prefill(e, 2, 8, tok, 4, tgt, NULL)); /* trunk only */
    qe_engine_close(e);
    qe_model_close(m);
}
END_TEST

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("ref");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(tc, test_stories260k);
    tcase_add_test(tc, test_tinystories656k);
    tcase_add_test(tc, test_mha_f16);
    tcase_add_test(tc, test_long_context);
    tcase_add_test(tc, test_ties);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 60);
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
