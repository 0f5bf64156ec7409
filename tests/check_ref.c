/* check_ref.c - the reference forward pass, tested by properties that hold
 * for any correct implementation (never by numbers it printed itself):
 *   - RoPE layouts: Q/K rows permuted the way llama.cpp's converter does,
 *     evaluated as "pairs", equal the original weights evaluated as "halves";
 *   - GQA: duplicating each KV head to make an MHA model changes nothing;
 *   - tied output == an explicit copy of the embedding;
 *   - causality: logits at i ignore tokens after i; rewinding the cache equals
 *     a fresh run;
 *   - an independent float32 forward written here (llama2.c style) agrees;
 *   - TinyStories-656K converted to GGUF the way llama.cpp's converter does
 *     (Q/K permuted, F32 or F16) and opened from disk gives the HF logits;
 *   - F16/BF16 weights equal F32 weights holding the same rounded values;
 *   - a trained model finds a TinyStories sentence far likelier than the
 *     same tokens shuffled. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_write.h"
#include "model.h"
#include "ref.h"
#include "testutil.h"

static qe_model *open_model(const char *rel)
{
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(qe_test_data(rel), &m) == QE_OK, "%s", qe_errmsg());
    return m;
}

/* Logits of every position of tok[0..n-1]: n x n_vocab doubles. */
static double *run(const qe_model *m, const int *tok, int n)
{
    int nv = qe_model_hparams(m)->n_vocab;
    double *out = malloc((size_t)n * (size_t)nv * sizeof *out);
    ck_assert_ptr_nonnull(out);
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_ref_new(m, n, &r), QE_OK);
    for (int i = 0; i < n; i++)
        ck_assert_msg(qe_ref_step(r, tok[i], i, out + (size_t)i * nv) == QE_OK, "%s", qe_errmsg());
    qe_ref_free(r);
    return out;
}

static double max_diff(const double *a, const double *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* ---- in-memory variants of a model ---- */

#define MAX_OWNED 64
typedef struct variant {
    qe_hparams hp;
    qe_weights w;
    qe_layer layers[8];
    float *owned[MAX_OWNED];
    int n_owned;
    qe_model *m;
} variant;

static void variant_init(variant *v, const qe_model *src)
{
    memset(v, 0, sizeof *v);
    v->hp = *qe_model_hparams(src);
    v->w = *qe_model_weights(src);
    ck_assert_int_le(v->hp.n_layers, 8);
    memcpy(v->layers, v->w.layers, (size_t)v->hp.n_layers * sizeof *v->layers);
    v->w.layers = v->layers;
}

/* rows x ne[0] floats, row r = src row map(r) (map NULL: r); malloc'ed. */
static float *decode_rows(const qe_tensor *src, int64_t rows, const int64_t *map)
{
    int64_t ne0 = src->ne[0];
    float *d = malloc((size_t)(ne0 * rows) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int64_t r = 0; r < rows; r++)
        qe_tensor_row_f32(src, map ? map[r] : r, d + r * ne0);
    return d;
}

/* A new F32 tensor of decode_rows(src, rows, map), owned by the variant. */
static qe_tensor remap_rows(variant *v, const qe_tensor *src, int64_t rows, const int64_t *map)
{
    ck_assert_int_lt(v->n_owned, MAX_OWNED);
    int64_t ne0 = src->ne[0];
    float *d = v->owned[v->n_owned++] = decode_rows(src, rows, map);
    qe_tensor t;
    ck_assert_int_eq(qe_tensor_view(&t, src->name, QE_DT_F32, ne0, rows, d,
                                    (uint64_t)(ne0 * rows) * sizeof(float), 1),
                     QE_OK);
    return t;
}

static void variant_build(variant *v)
{
    ck_assert_msg(qe_model_build(&v->hp, &v->w, "variant", &v->m) == QE_OK, "%s", qe_errmsg());
}

static void variant_free(variant *v)
{
    qe_model_close(v->m);
    for (int i = 0; i < v->n_owned; i++)
        free(v->owned[i]);
}

/* llama.cpp convert_hf_to_gguf.py permute():
 *   w.reshape(n_head, 2, hd/2, dim).swapaxes(1, 2).reshape(w.shape)
 * so new row h*hd + 2j + s is old row h*hd + s*hd/2 + j. */
static int64_t *rope_permutation(int n_head, int hd)
{
    int64_t *map = malloc((size_t)n_head * (size_t)hd * sizeof *map);
    ck_assert_ptr_nonnull(map);
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < hd / 2; j++)
            for (int s = 0; s < 2; s++)
                map[h * hd + 2 * j + s] = h * hd + s * (hd / 2) + j;
    return map;
}

START_TEST(test_rope_layouts)
{
    qe_model *hf = open_model("models/TinyStories-656K");
    const qe_hparams *hp = qe_model_hparams(hf);
    ck_assert_int_eq(hp->rope_layout, QE_ROPE_HALVES);
    variant v;
    variant_init(&v, hf);
    int64_t *pq = rope_permutation(hp->n_heads, hp->head_dim);
    int64_t *pk = rope_permutation(hp->n_kv_heads, hp->head_dim);
    for (int l = 0; l < hp->n_layers; l++) {
        v.layers[l].wq = remap_rows(&v, &v.layers[l].wq, v.layers[l].wq.ne[1], pq);
        v.layers[l].wk = remap_rows(&v, &v.layers[l].wk, v.layers[l].wk.ne[1], pk);
    }
    v.hp.rope_layout = QE_ROPE_PAIRS;
    variant_build(&v);
    enum { N = 12 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 7);
    size_t n = (size_t)N * hp->n_vocab;
    double *a = run(hf, tok, N), *b = run(v.m, tok, N);
    double d = max_diff(a, b, n);
    ck_assert_msg(d < 1e-9, "pairs(permuted) vs halves(original): max diff %g", d);
    free(b);
    /* The same permuted weights with the wrong layout must differ: the test
     * above can fail. */
    qe_model_close(v.m);
    v.hp.rope_layout = QE_ROPE_HALVES;
    variant_build(&v);
    b = run(v.m, tok, N);
    d = max_diff(a, b, n);
    ck_assert_msg(d > 1e-3, "layouts indistinguishable: %g", d);
    free(a);
    free(b);
    free(pq);
    free(pk);
    variant_free(&v);
    qe_model_close(hf);
}
END_TEST

/* Grouped-query attention equals MHA with each KV head repeated for the
 * group of query heads that shares it (q head h uses kv head h / group, as
 * transformers' repeat_kv and llama.cpp do). */
static void check_gqa(const char *rel)
{
    qe_model *src = open_model(rel);
    const qe_hparams *hp = qe_model_hparams(src);
    int group = hp->n_heads / hp->n_kv_heads, hd = hp->head_dim;
    ck_assert_int_gt(group, 1);
    variant v;
    variant_init(&v, src);
    int64_t rows = (int64_t)hp->n_heads * hd;
    int64_t *map = malloc((size_t)rows * sizeof *map);
    ck_assert_ptr_nonnull(map);
    for (int h = 0; h < hp->n_heads; h++)
        for (int i = 0; i < hd; i++)
            map[h * hd + i] = (int64_t)(h / group) * hd + i;
    for (int l = 0; l < hp->n_layers; l++) {
        v.layers[l].wk = remap_rows(&v, &v.layers[l].wk, rows, map);
        v.layers[l].wv = remap_rows(&v, &v.layers[l].wv, rows, map);
    }
    v.hp.n_kv_heads = hp->n_heads;
    variant_build(&v);
    enum { N = 10 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 11);
    double *a = run(src, tok, N), *b = run(v.m, tok, N);
    double d = max_diff(a, b, (size_t)N * hp->n_vocab);
    ck_assert_msg(d < 1e-9, "%s: GQA vs MHA max diff %g", rel, d);
    free(a);
    free(b);
    free(map);
    variant_free(&v);
    qe_model_close(src);
}

START_TEST(test_gqa_hf) { check_gqa("models/TinyStories-656K"); }
END_TEST

START_TEST(test_gqa_gguf) { check_gqa("models/stories260K.gguf"); }
END_TEST

START_TEST(test_tied)
{
    qe_model *src = open_model("models/TinyStories-656K");
    const qe_hparams *hp = qe_model_hparams(src);
    ck_assert_int_eq(hp->tied, 1);
    variant v;
    variant_init(&v, src);
    v.w.output = remap_rows(&v, &v.w.token_embd, hp->n_vocab, NULL);
    v.hp.tied = 0;
    variant_build(&v);
    ck_assert_ptr_ne(qe_model_weights(v.m)->output.data, qe_model_weights(src)->token_embd.data);
    enum { N = 6 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 3);
    double *a = run(src, tok, N), *b = run(v.m, tok, N);
    ck_assert(memcmp(a, b, (size_t)N * hp->n_vocab * sizeof *a) == 0);
    free(a);
    free(b);
    variant_free(&v);
    qe_model_close(src);
}
END_TEST

START_TEST(test_causality)
{
    qe_model *m = open_model("models/TinyStories-656K");
    int nv = qe_model_hparams(m)->n_vocab;
    enum { N = 12, K = 6 };
    int a[N], b[N];
    qe_test_rmodel_tokens(a, N, nv, 5);
    memcpy(b, a, sizeof a);
    for (int i = K; i < N; i++)
        b[i] = (a[i] + 1 + i) % nv;
    double *la = run(m, a, N), *lb = run(m, b, N);
    size_t row = (size_t)nv;
    ck_assert(memcmp(la, lb, K * row * sizeof *la) == 0);
    for (int i = K; i < N; i++)
        ck_assert_msg(max_diff(la + i * row, lb + i * row, row) > 1e-6, "position %d", i);
    /* Rewind: run a, go back to K, continue with b's tokens = a fresh run of b. */
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_ref_new(m, N, &r), QE_OK);
    double *lr = malloc(row * sizeof *lr);
    ck_assert_ptr_nonnull(lr);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(qe_ref_step(r, a[i], i, NULL), QE_OK);
    ck_assert_int_eq(qe_ref_n_past(r), N);
    for (int i = K; i < N; i++) {
        ck_assert_int_eq(qe_ref_step(r, b[i], i, lr), QE_OK);
        ck_assert(memcmp(lr, lb + i * row, row * sizeof *lr) == 0);
    }
    /* Reset: position 0 again gives the first logits. */
    qe_ref_reset(r);
    ck_assert_int_eq(qe_ref_n_past(r), 0);
    ck_assert_int_eq(qe_ref_step(r, a[0], 0, lr), QE_OK);
    ck_assert(memcmp(lr, la, row * sizeof *lr) == 0);
    free(lr);
    qe_ref_free(r);
    free(la);
    free(lb);
    qe_model_close(m);
}
END_TEST

/* ---- an independent float32 forward, after llama2.c's run.c ---- */

typedef struct f32model {
    qe_hparams p;
    float *emb, *out, *out_norm;                       /* (vocab, dim), (vocab, dim), (dim) */
    float *att_norm, *wq, *wk, *wv, *wo;               /* per layer, concatenated */
    float *ffn_norm, *w1, *w2, *w3;
    float *rope_div;                                   /* (head_dim/2) or NULL */
} f32model;

static float *all_rows(const qe_tensor *t, float *dst)
{
    for (int64_t r = 0; r < t->ne[1]; r++)
        qe_tensor_row_f32(t, r, dst + r * t->ne[0]);
    return dst;
}

static float *layers_of(const qe_model *m, size_t off, size_t per_layer)
{
    const qe_hparams *p = qe_model_hparams(m);
    float *d = malloc(per_layer * (size_t)p->n_layers * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int l = 0; l < p->n_layers; l++) {
        const qe_tensor *t = (const qe_tensor *)((const char *)&qe_model_weights(m)->layers[l] + off);
        ck_assert_uint_eq((size_t)(t->ne[0] * t->ne[1]), per_layer);
        all_rows(t, d + (size_t)l * per_layer);
    }
    return d;
}

static void f32_load(f32model *f, const qe_model *m)
{
    const qe_hparams *p = qe_model_hparams(m);
    const qe_weights *w = qe_model_weights(m);
    f->p = *p;
    size_t dim = (size_t)p->dim, qd = (size_t)p->n_heads * p->head_dim,
           kvd = (size_t)p->n_kv_heads * p->head_dim, ff = (size_t)p->n_ff;
    f->emb = all_rows(&w->token_embd, malloc(dim * (size_t)p->n_vocab * sizeof(float)));
    f->out = all_rows(&w->output, malloc(dim * (size_t)p->n_vocab * sizeof(float)));
    f->out_norm = all_rows(&w->output_norm, malloc(dim * sizeof(float)));
    f->att_norm = layers_of(m, offsetof(qe_layer, attn_norm), dim);
    f->wq = layers_of(m, offsetof(qe_layer, wq), qd * dim);
    f->wk = layers_of(m, offsetof(qe_layer, wk), kvd * dim);
    f->wv = layers_of(m, offsetof(qe_layer, wv), kvd * dim);
    f->wo = layers_of(m, offsetof(qe_layer, wo), dim * qd);
    f->ffn_norm = layers_of(m, offsetof(qe_layer, ffn_norm), dim);
    f->w1 = layers_of(m, offsetof(qe_layer, w_gate), ff * dim);
    f->w3 = layers_of(m, offsetof(qe_layer, w_up), ff * dim);
    f->w2 = layers_of(m, offsetof(qe_layer, w_down), dim * ff);
    f->rope_div = w->rope_freqs.data ? all_rows(&w->rope_freqs, malloc((size_t)p->head_dim / 2 * 4))
                                     : NULL;
}

static void f32_free(f32model *f)
{
    float *ps[] = {f->emb, f->out, f->out_norm, f->att_norm, f->wq, f->wk, f->wv,
                   f->wo, f->ffn_norm, f->w1, f->w2, f->w3, f->rope_div};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        free(ps[i]);
}

static void f_rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    float ss = 0;
    for (int j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / n + eps);
    for (int j = 0; j < n; j++)
        o[j] = w[j] * (ss * x[j]);
}

/* xout (d) = W (d, n) @ x (n) */
static void f_matmul(float *xout, const float *x, const float *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        float val = 0;
        for (int j = 0; j < n; j++)
            val += w[(size_t)i * n + j] * x[j];
        xout[i] = val;
    }
}

/* Rotate one head in place as complex numbers (re, im), per layout; the
 * position is scaled by pos_scale and frequency i divided by div[i]. */
static void f_rope(float *v, int hd, int pos, float base, int halves, float pos_scale,
                   const float *div)
{
    for (int i = 0; i < hd / 2; i++) {
        float freq = 1.0f / powf(base, (float)(2 * i) / (float)hd) / (div ? div[i] : 1.0f);
        float ang = (float)pos * pos_scale * freq, fcr = cosf(ang), fci = sinf(ang);
        float *re = halves ? &v[i] : &v[2 * i], *im = halves ? &v[i + hd / 2] : &v[2 * i + 1];
        float a = *re, b = *im;
        *re = a * fcr - b * fci;
        *im = a * fci + b * fcr;
    }
}

/* Logits for tok[0..n-1] into out (n x vocab floats). */
static void f32_forward(const f32model *f, const int *tok, int n, float *out)
{
    const qe_hparams *p = &f->p;
    int dim = p->dim, hd = p->head_dim, qd = p->n_heads * hd, kvd = p->n_kv_heads * hd;
    int kv_mul = p->n_heads / p->n_kv_heads, L = p->n_layers, ff = p->n_ff;
    float *x = malloc(dim * sizeof(float)), *xb = malloc((size_t)(qd > dim ? qd : dim) * 4),
          *xb2 = malloc(dim * sizeof(float)), *q = malloc(qd * sizeof(float)),
          *hb = malloc(ff * sizeof(float)), *hb2 = malloc(ff * sizeof(float)),
          *att = malloc((size_t)n * 4), *kc = malloc((size_t)L * n * kvd * 4),
          *vc = malloc((size_t)L * n * kvd * 4);
    ck_assert(x && xb && xb2 && q && hb && hb2 && att && kc && vc);
    for (int pos = 0; pos < n; pos++) {
        memcpy(x, f->emb + (size_t)tok[pos] * dim, dim * sizeof(float));
        for (int l = 0; l < L; l++) {
            float *k = kc + ((size_t)l * n + pos) * kvd, *v = vc + ((size_t)l * n + pos) * kvd;
            f_rmsnorm(xb, x, f->att_norm + (size_t)l * dim, dim, p->rms_eps);
            f_matmul(q, xb, f->wq + (size_t)l * qd * dim, dim, qd);
            f_matmul(k, xb, f->wk + (size_t)l * kvd * dim, dim, kvd);
            f_matmul(v, xb, f->wv + (size_t)l * kvd * dim, dim, kvd);
            for (int h = 0; h < p->n_heads; h++)
                f_rope(q + h * hd, hd, pos, p->rope_base, p->rope_layout == QE_ROPE_HALVES,
                       p->rope_freq_scale, f->rope_div);
            for (int h = 0; h < p->n_kv_heads; h++)
                f_rope(k + h * hd, hd, pos, p->rope_base, p->rope_layout == QE_ROPE_HALVES,
                       p->rope_freq_scale, f->rope_div);
            for (int h = 0; h < p->n_heads; h++) {
                float *qh = q + h * hd, mx = -INFINITY, sum = 0;
                for (int t = 0; t <= pos; t++) {
                    const float *kt = kc + ((size_t)l * n + t) * kvd + (h / kv_mul) * hd;
                    float s = 0;
                    for (int i = 0; i < hd; i++)
                        s += qh[i] * kt[i];
                    att[t] = s / sqrtf((float)hd);
                    mx = att[t] > mx ? att[t] : mx;
                }
                for (int t = 0; t <= pos; t++) {
                    att[t] = expf(att[t] - mx);
                    sum += att[t];
                }
                float *o = xb + h * hd;
                memset(o, 0, hd * sizeof(float));
                for (int t = 0; t <= pos; t++) {
                    const float *vt = vc + ((size_t)l * n + t) * kvd + (h / kv_mul) * hd;
                    for (int i = 0; i < hd; i++)
                        o[i] += att[t] / sum * vt[i];
                }
            }
            f_matmul(xb2, xb, f->wo + (size_t)l * dim * qd, qd, dim);
            for (int i = 0; i < dim; i++)
                x[i] += xb2[i];
            f_rmsnorm(xb, x, f->ffn_norm + (size_t)l * dim, dim, p->rms_eps);
            f_matmul(hb, xb, f->w1 + (size_t)l * ff * dim, dim, ff);
            f_matmul(hb2, xb, f->w3 + (size_t)l * ff * dim, dim, ff);
            for (int i = 0; i < ff; i++)
                hb[i] = hb[i] * (1.0f / (1.0f + expf(-hb[i]))) * hb2[i];
            f_matmul(xb2, hb, f->w2 + (size_t)l * dim * ff, ff, dim);
            for (int i = 0; i < dim; i++)
                x[i] += xb2[i];
        }
        f_rmsnorm(x, x, f->out_norm, dim, p->rms_eps);
        f_matmul(out + (size_t)pos * p->n_vocab, x, f->out, dim, p->n_vocab);
    }
    float *ps[] = {x, xb, xb2, q, hb, hb2, att, kc, vc};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        free(ps[i]);
}

static void check_f32_model(const qe_model *m, const char *rel)
{
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(hp->n_rot, hp->head_dim); /* f_rope rotates whole heads */
    f32model f;
    f32_load(&f, m);
    enum { N = 24 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 99);
    size_t n = (size_t)N * hp->n_vocab;
    float *lf = malloc(n * sizeof *lf);
    ck_assert_ptr_nonnull(lf);
    f32_forward(&f, tok, N, lf);
    double *ld = run(m, tok, N), d = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(ld[i] - lf[i]));
        mag = fmax(mag, fabs(ld[i]));
    }
    ck_assert_msg(mag > 1.0, "%s: logits suspiciously small (%g)", rel, mag);
    ck_assert_msg(d < 1e-4 * mag, "%s: double vs float32 max diff %g (max |logit| %g)", rel, d,
                  mag);
    fprintf(stderr, "# %s: double vs float32 max diff %.3g, max |logit| %.3g\n", rel, d, mag);
    free(ld);
    free(lf);
    f32_free(&f);
}

static void check_f32(const char *rel)
{
    qe_model *m = open_model(rel);
    check_f32_model(m, rel);
    qe_model_close(m);
}

START_TEST(test_f32_hf) { check_f32("models/TinyStories-656K"); }
END_TEST

START_TEST(test_f32_gguf) { check_f32("models/stories260K.gguf"); }
END_TEST

START_TEST(test_f32_scaled)
{
    /* RoPE scalings against the float32 forward's own reading of them:
     * positions times rope_freq_scale; frequencies divided by rope_freqs. */
    qe_model *src = open_model("models/TinyStories-656K");
    variant v;
    variant_init(&v, src);
    v.hp.rope_scaling = QE_ROPE_SCALING_LINEAR;
    v.hp.rope_factor = 4.0f;
    v.hp.rope_freq_scale = 0.25f;
    variant_build(&v);
    check_f32_model(v.m, "linear x4");
    qe_model_close(v.m);
    float div[8] = {1, 1, 1.5f, 2, 3, 5, 8, 8};
    ck_assert_int_eq(qe_tensor_view(&v.w.rope_freqs, "rope_freqs", QE_DT_F32, 8, 1, div,
                                    sizeof div, 1),
                     QE_OK);
    v.hp.rope_scaling = QE_ROPE_SCALING_LLAMA3;
    v.hp.rope_factor = 8.0f;
    v.hp.rope_freq_scale = 1.0f;
    variant_build(&v);
    check_f32_model(v.m, "divisors");
    variant_free(&v);
    qe_model_close(src);
}
END_TEST

/* ---- other weight types and the GGUF convention, end to end ---- */

typedef enum { ROUND_F16, ROUND_BF16 } rounding;

static float round_to(float x, rounding r)
{
    return r == ROUND_F16 ? qe_f16_to_f32(qe_f32_to_f16(x)) : qe_bf16_to_f32(qe_f32_to_bf16(x));
}

/* Matrix t as 16-bit values (F16 or BF16), rows reordered by map (or not). */
static uint16_t *to_16(const qe_tensor *t, rounding r, const int64_t *map)
{
    int64_t ne0 = t->ne[0], rows = t->ne[1];
    uint16_t *d = malloc((size_t)(ne0 * rows) * 2);
    float *row = malloc((size_t)ne0 * sizeof *row);
    ck_assert(d && row);
    for (int64_t i = 0; i < rows; i++) {
        qe_tensor_row_f32(t, map ? map[i] : i, row);
        for (int64_t j = 0; j < ne0; j++)
            d[i * ne0 + j] = r == ROUND_F16 ? qe_f32_to_f16(row[j]) : qe_f32_to_bf16(row[j]);
    }
    free(row);
    return d;
}

/* The seven matrices of a layer, by offset. */
static const size_t matrices[] = {offsetof(qe_layer, wq),     offsetof(qe_layer, wk),
                                  offsetof(qe_layer, wv),     offsetof(qe_layer, wo),
                                  offsetof(qe_layer, w_gate), offsetof(qe_layer, w_up),
                                  offsetof(qe_layer, w_down)};

START_TEST(test_half_types)
{
    /* An in-memory model with F16 (then BF16) matrices equals one whose F32
     * matrices hold the same rounded values: the row decoder is exact. */
    /* stories260K: its F32 weights are not all f16- or bf16-exact
     * (TinyStories-656K's values sampled were exactly both). */
    qe_model *src = open_model("models/stories260K.gguf");
    const qe_hparams *hp = qe_model_hparams(src);
    enum { N = 8 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 21);
    for (int r = ROUND_F16; r <= ROUND_BF16; r++) {
        variant half, f32;
        variant_init(&half, src);
        variant_init(&f32, src);
        uint16_t *bufs[8 * 7];
        int nb = 0;
        for (int l = 0; l < hp->n_layers; l++)
            for (size_t k = 0; k < sizeof matrices / sizeof matrices[0]; k++) {
                qe_tensor *th = (qe_tensor *)((char *)&half.layers[l] + matrices[k]);
                qe_tensor *tf = (qe_tensor *)((char *)&f32.layers[l] + matrices[k]);
                uint16_t *d = bufs[nb++] = to_16(th, (rounding)r, NULL);
                *tf = remap_rows(&f32, tf, tf->ne[1], NULL);
                float *fd = (float *)tf->data;
                for (int64_t i = 0; i < tf->ne[0] * tf->ne[1]; i++)
                    fd[i] = round_to(fd[i], (rounding)r);
                ck_assert_int_eq(qe_tensor_view(th, th->name, r == ROUND_F16 ? QE_DT_F16 : QE_DT_BF16,
                                                th->ne[0], th->ne[1], d,
                                                (uint64_t)(th->ne[0] * th->ne[1]) * 2, 1),
                                 QE_OK);
            }
        variant_build(&half);
        variant_build(&f32);
        double *a = run(half.m, tok, N), *b = run(f32.m, tok, N), *o = run(src, tok, N);
        size_t n = (size_t)N * hp->n_vocab;
        ck_assert(memcmp(a, b, n * sizeof *a) == 0);
        ck_assert_msg(max_diff(a, o, n) > 0, "rounding changed nothing?");
        free(a);
        free(b);
        free(o);
        for (int i = 0; i < nb; i++)
            free(bufs[i]);
        variant_free(&half);
        variant_free(&f32);
    }
    qe_model_close(src);
}
END_TEST

/* Write TinyStories-656K as llama.cpp's convert_hf_to_gguf.py would: llama
 * keys, Q/K rows permuted, matrices in `wt` (F32 or F16), norms and the
 * embedding in F32, no output.weight (tied). Buffers go to keep[]. */
static char *convert(const qe_model *hf, const char *dir, qe_dtype wt, float linear,
                     void **keep, int *n_keep)
{
    const qe_hparams *hp = qe_model_hparams(hf);
    const qe_weights *w = qe_model_weights(hf);
    qe_gguf_writer *g = NULL;
    ck_assert_int_eq(qe_gguf_writer_new(3, &g), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_str(g, "general.architecture", "llama"), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.context_length", 512), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.embedding_length", 128), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.block_count", 2), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.feed_forward_length", 384), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.attention.head_count", 8), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.attention.head_count_kv", 4), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "llama.rope.dimension_count", 16), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_f32(g, "llama.rope.freq_base", 10000.0f), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-6f),
                     QE_OK);
    if (linear != 1.0f) {
        ck_assert_int_eq(qe_gguf_writer_add_str(g, "llama.rope.scaling.type", "linear"), QE_OK);
        ck_assert_int_eq(qe_gguf_writer_add_f32(g, "llama.rope.scaling.factor", linear), QE_OK);
    }
    ck_assert_int_eq(qe_gguf_writer_add_u32(g, "tokenizer.ggml.bos_token_id", 1), QE_OK);
    int64_t *pq = rope_permutation(hp->n_heads, hp->head_dim);
    int64_t *pk = rope_permutation(hp->n_kv_heads, hp->head_dim);
    ck_assert_int_le(*n_keep + 2 + 2 + 9 * 2, 128);
    keep[(*n_keep)++] = pq;
    keep[(*n_keep)++] = pk;
    struct item {
        const char *name;
        const qe_tensor *t;
        const int64_t *map;
        int matrix;
    } list[2 + 9 * 2];
    int n = 0;
    list[n++] = (struct item){"token_embd.weight", &w->token_embd, NULL, 0};
    list[n++] = (struct item){"output_norm.weight", &w->output_norm, NULL, 0};
    static char names[2][9][48];
    static const char *parts[9] = {"attn_norm", "attn_q",   "attn_k", "attn_v", "attn_output",
                                   "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < 2; l++) {
        const qe_layer *L = &w->layers[l];
        const qe_tensor *ts[9] = {&L->attn_norm, &L->wq,     &L->wk,   &L->wv,    &L->wo,
                                  &L->ffn_norm,  &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 9; k++) {
            snprintf(names[l][k], sizeof names[l][k], "blk.%d.%s.weight", l, parts[k]);
            list[n++] = (struct item){names[l][k], ts[k], k == 1 ? pq : k == 2 ? pk : NULL,
                                      k != 0 && k != 5};
        }
    }
    for (int i = 0; i < n; i++) {
        const qe_tensor *t = list[i].t;
        int64_t ne[2] = {t->ne[0], t->ne[1]};
        void *d;
        qe_dtype type = QE_DT_F32;
        if (list[i].matrix && wt == QE_DT_F16) {
            d = to_16(t, ROUND_F16, list[i].map);
            type = QE_DT_F16;
        } else {
            d = decode_rows(t, t->ne[1], list[i].map);
        }
        keep[(*n_keep)++] = d;
        ck_assert_int_eq(qe_gguf_writer_add_tensor(g, list[i].name, type, ne[1] == 1 ? 1 : 2, ne, d),
                         QE_OK);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/converted-%s.gguf", dir, qe_dtype_name(wt));
    ck_assert_msg(qe_gguf_writer_write_file(g, path) == QE_OK, "%s", qe_errmsg());
    qe_gguf_writer_free(g);
    return strdup(path);
}

START_TEST(test_gguf_conversion)
{
    qe_model *hf = open_model("models/TinyStories-656K");
    const qe_hparams *hp = qe_model_hparams(hf);
    char *dir = qe_test_tmpdir();
    void *keep[128];
    int n_keep = 0;
    enum { N = 12 };
    int tok[N];
    qe_test_rmodel_tokens(tok, N, hp->n_vocab, 31);
    size_t n = (size_t)N * hp->n_vocab;
    double *want = run(hf, tok, N);

    /* F32: the converted file reproduces the HF model. */
    char *path = convert(hf, dir, QE_DT_F32, 1.0f, keep, &n_keep);
    qe_model *g = NULL;
    ck_assert_msg(qe_model_open(path, &g) == QE_OK, "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_hparams(g)->rope_layout, QE_ROPE_PAIRS);
    ck_assert_int_eq(qe_model_hparams(g)->tied, 1);
    ck_assert_int_eq(qe_model_hparams(g)->eos_id, -1);
    double *got = run(g, tok, N), d = max_diff(want, got, n);
    ck_assert_msg(d < 1e-9, "converted F32 GGUF vs HF: max diff %g", d);
    free(got);
    qe_model_close(g);
    free(path);

    /* F16 matrices: equal to the HF model with its matrices rounded to f16. */
    path = convert(hf, dir, QE_DT_F16, 1.0f, keep, &n_keep);
    ck_assert_msg(qe_model_open(path, &g) == QE_OK, "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_weights(g)->layers[1].w_up.type, QE_DT_F16);
    variant r;
    variant_init(&r, hf);
    for (int l = 0; l < hp->n_layers; l++)
        for (size_t k = 0; k < sizeof matrices / sizeof matrices[0]; k++) {
            qe_tensor *t = (qe_tensor *)((char *)&r.layers[l] + matrices[k]);
            *t = remap_rows(&r, t, t->ne[1], NULL);
            float *fd = (float *)t->data;
            for (int64_t i = 0; i < t->ne[0] * t->ne[1]; i++)
                fd[i] = round_to(fd[i], ROUND_F16);
        }
    variant_build(&r);
    double *ref16 = run(r.m, tok, N);
    got = run(g, tok, N);
    d = max_diff(ref16, got, n);
    ck_assert_msg(d < 1e-9, "converted F16 GGUF vs rounded HF: max diff %g", d);
    free(got);
    free(ref16);
    qe_model_close(g);
    free(path);

    /* Linear RoPE scaling keys reach the forward like config.json's do. */
    path = convert(hf, dir, QE_DT_F32, 2.0f, keep, &n_keep);
    ck_assert_msg(qe_model_open(path, &g) == QE_OK, "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_hparams(g)->rope_scaling, QE_ROPE_SCALING_LINEAR);
    ck_assert(qe_model_hparams(g)->rope_freq_scale == 0.5f);
    qe_model_close(r.m);
    r.hp.rope_scaling = QE_ROPE_SCALING_LINEAR;
    r.hp.rope_factor = 2.0f;
    r.hp.rope_freq_scale = 0.5f;
    memcpy(r.layers, qe_model_weights(hf)->layers, 2 * sizeof r.layers[0]);
    variant_build(&r);
    double *lin = run(r.m, tok, N);
    got = run(g, tok, N);
    d = max_diff(lin, got, n);
    ck_assert_msg(d < 1e-9, "linear-scaled GGUF vs HF: max diff %g", d);
    ck_assert_msg(max_diff(lin, want, n) > 1e-4, "scaling changed nothing");
    free(got);
    free(lin);
    qe_model_close(g);
    free(path);

    variant_free(&r);
    for (int i = 0; i < n_keep; i++)
        free(keep[i]);
    free(want);
    qe_test_rmtree(dir);
    free(dir);
    qe_model_close(hf);
}
END_TEST

/* ---- sanity on real text ---- */

/* Mean negative log-likelihood of tok[1..n-1] given the prefix. */
static double mean_nll(const qe_model *m, const int *tok, int n)
{
    int nv = qe_model_hparams(m)->n_vocab;
    double *l = run(m, tok, n), nll = 0;
    for (int i = 0; i + 1 < n; i++) {
        const double *row = l + (size_t)i * nv;
        double mx = row[0], s = 0;
        for (int v = 1; v < nv; v++)
            mx = fmax(mx, row[v]);
        for (int v = 0; v < nv; v++)
            s += exp(row[v] - mx);
        nll += mx + log(s) - row[tok[i + 1]];
    }
    free(l);
    return nll / (n - 1);
}

START_TEST(test_story_nll)
{
    /* Tokenize with TinyStories-656K's own vocabulary (tokenizer.json:
     * spaces become U+2581 and one is prepended), greedily by longest match:
     * not the exact BPE segmentation, but every token is a real vocabulary
     * piece of real text. */
    json_error_t err;
    json_t *tj = json_load_file(qe_test_data("models/TinyStories-656K/tokenizer.json"), 0, &err);
    ck_assert_ptr_nonnull(tj);
    json_t *vocab = json_object_get(json_object_get(tj, "model"), "vocab");
    ck_assert(json_is_object(vocab));
    const char *text = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park with her mom. One day, she saw a big red ball. She "
                       "ran to the ball and kicked it. The ball went very high. Lily was "
                       "happy and laughed.";
    char norm[2048] = "\xe2\x96\x81";
    for (const char *c = text; *c; c++)
        strcat(norm, *c == ' ' ? "\xe2\x96\x81" : (char[2]){*c, 0});
    int tok[256], n = 0;
    tok[n++] = 1; /* BOS, config.json bos_token_id */
    for (size_t at = 0; norm[at];) {
        size_t best = 0;
        int id = -1;
        for (size_t len = 1; norm[at + len - 1] && len < 64; len++) {
            char piece[64];
            memcpy(piece, norm + at, len);
            piece[len] = '\0';
            json_t *v = json_object_get(vocab, piece);
            if (json_is_integer(v)) {
                best = len;
                id = (int)json_integer_value(v);
            }
        }
        ck_assert_msg(id >= 0, "no vocabulary piece at '%s'", norm + at);
        ck_assert_int_lt(n, 256);
        tok[n++] = id;
        at += best;
    }
    json_decref(tj);
    ck_assert_int_gt(n, 30);
    qe_model *m = open_model("models/TinyStories-656K");
    double story = mean_nll(m, tok, n);
    /* The same tokens in a scrambled order (BOS kept first). */
    for (int i = n - 1; i > 1; i--) {
        int j = 1 + (int)((unsigned)(i * 7919 + 13) % (unsigned)i), t = tok[i];
        tok[i] = tok[j];
        tok[j] = t;
    }
    double shuffled = mean_nll(m, tok, n);
    /* Uniform guessing costs ln(2048) = 7.62 nats. */
    ck_assert_msg(story < 0.5 * log(2048.0), "story NLL %g", story);
    ck_assert_msg(shuffled > story + 1.0, "story %g vs shuffled %g", story, shuffled);
    fprintf(stderr, "# story NLL %.4f, shuffled %.4f over %d tokens\n", story, shuffled, n);
    qe_model_close(m);
}
END_TEST

START_TEST(test_limits)
{
    qe_model *m = open_model("models/TinyStories-656K");
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_ref_new(m, 0, &r), QE_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qe_ref_new(m, 4, &r), QE_OK);
    double *l = malloc(2048 * sizeof *l);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(qe_ref_step(r, -1, 0, l), QE_EINVAL);
    ck_assert_int_eq(qe_ref_step(r, 2048, 0, l), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "2048"));
    ck_assert_int_eq(qe_ref_step(r, 5, 1, l), QE_EINVAL); /* nothing cached at 0 */
    ck_assert_int_eq(qe_ref_step(r, 5, -1, l), QE_EINVAL);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(qe_ref_step(r, 5, i, l), QE_OK);
    ck_assert_int_eq(qe_ref_step(r, 5, 4, l), QE_EINVAL); /* cache full */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n_ctx 4"));
    for (int v = 0; v < 2048; v++)
        ck_assert(isfinite(l[v]));
    free(l);
    qe_ref_free(r);
    qe_ref_free(NULL);
    qe_model_close(m);
}
END_TEST

Suite *ref_suite(void)
{
    Suite *s = suite_create("ref");
    TCase *tc = tcase_create("properties");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rope_layouts);
    tcase_add_test(tc, test_gqa_hf);
    tcase_add_test(tc, test_gqa_gguf);
    tcase_add_test(tc, test_tied);
    tcase_add_test(tc, test_causality);
    tcase_add_test(tc, test_f32_hf);
    tcase_add_test(tc, test_f32_gguf);
    tcase_add_test(tc, test_f32_scaled);
    tcase_add_test(tc, test_half_types);
    tcase_add_test(tc, test_gguf_conversion);
    tcase_add_test(tc, test_story_nll);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
