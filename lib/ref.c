/* ref.c - the reference forward pass (the math is spelled out at the top of
 * model.h, every architecture switch included). Modelled on llama2.c's forward(): one token per call, a KV cache
 * of doubles, every reduction accumulated in double. Weight rows go through
 * qe_tensor_row_f32, the single per-type decoder, so this file never looks at
 * element types. With qe_ref_new_kv, K and V rows make a round trip through a
 * KV-cache format (lib/kv_format.h) before they are cached.
 *
 * Threading: a qe_ref belongs to one thread at a time.
 * Cost: one pass over every weight per token; meant for small models and
 * spot checks, not throughput.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct qe_ref {
    const qe_model *m;
    int n_ctx;   /* positions the cache holds */
    int n_past;  /* positions currently cached */
    int64_t q_dim, kv_dim, max_row;
    double *x;   /* (dim) residual stream */
    double *xb;  /* (max(dim, q_dim)) normalised input / attention output */
    double *xb2; /* (dim) projection output */
    double *q;   /* (q_dim) queries of this position */
    double *hb;  /* (n_ff) gate, then silu(gate) * up */
    double *hb2; /* (n_ff) up */
    double *att; /* (n_ctx) attention scores of one head */
    double *k_cache; /* (n_layers, n_ctx, kv_dim) */
    double *v_cache; /* (n_layers, n_ctx, kv_dim) */
    float *row;  /* (max_row) one decoded weight row */
    int kv_codec;            /* 1: K/V rows pass through kv_k / kv_v (qe_ref_new_kv) */
    qe_kv_format kv_k, kv_v;
    float *kv_f;             /* (kv_dim) a K or V row as float */
    unsigned char *kv_bytes; /* (max row bytes of kv_k, kv_v) one encoded row */
};

static void *alloc_doubles(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static qe_status ref_new(const qe_model *m, int n_ctx, int kv_codec, qe_kv_format kv_k,
                         qe_kv_format kv_v, qe_ref **out)
{
    *out = NULL;
    if (n_ctx < 1)
        return qe_fail(QE_EINVAL, "reference forward: n_ctx %d, expected >= 1", n_ctx);
    const qe_hparams *hp = qe_model_hparams(m);
    size_t k_bytes = 0, v_bytes = 0;
    qe_status st = QE_OK;
    if (kv_codec && ((st = qe_kv_format_row_bytes(kv_k, hp->n_kv_heads, hp->head_dim, &k_bytes)) != QE_OK ||
                     (st = qe_kv_format_row_bytes(kv_v, hp->n_kv_heads, hp->head_dim, &v_bytes)) != QE_OK))
        return qe_fail_prefix(st, "reference forward: %s", qe_model_name(m));
    qe_ref *r = calloc(1, sizeof *r);
    if (!r)
        return qe_fail(QE_ENOMEM, "reference forward: out of memory");
    r->m = m;
    r->kv_codec = kv_codec;
    r->kv_k = kv_k;
    r->kv_v = kv_v;
    r->n_ctx = n_ctx;
    r->q_dim = (int64_t)hp->n_heads * hp->head_dim;
    r->kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    r->max_row = hp->dim;
    if (r->q_dim > r->max_row)
        r->max_row = r->q_dim;
    if (hp->n_ff > r->max_row)
        r->max_row = hp->n_ff;
    /* Widths are bounded by the model checks (< 2^20), layers < 2^12, so only
     * the cache size can overflow. */
    int64_t cache = (int64_t)hp->n_layers * n_ctx;
    if (cache > INT64_MAX / r->kv_dim || cache * r->kv_dim > (int64_t)(SIZE_MAX / sizeof(double))) {
        st = qe_fail(QE_ERANGE, "reference forward: KV cache for n_ctx %d is too large", n_ctx);
        goto done;
    }
    cache *= r->kv_dim;
    r->x = alloc_doubles(hp->dim);
    r->xb = alloc_doubles(r->max_row);
    r->xb2 = alloc_doubles(hp->dim);
    r->q = alloc_doubles(r->q_dim);
    r->hb = alloc_doubles(hp->n_ff);
    r->hb2 = alloc_doubles(hp->n_ff);
    r->att = alloc_doubles(n_ctx);
    r->k_cache = alloc_doubles(cache);
    r->v_cache = alloc_doubles(cache);
    r->row = calloc((size_t)r->max_row, sizeof(float));
    r->kv_f = calloc((size_t)r->kv_dim, sizeof(float));
    r->kv_bytes = malloc(k_bytes > v_bytes ? k_bytes : v_bytes > 0 ? v_bytes : 1);
    if (!r->x || !r->xb || !r->xb2 || !r->q || !r->hb || !r->hb2 || !r->att || !r->k_cache ||
        !r->v_cache || !r->row || !r->kv_f || !r->kv_bytes)
        st = qe_fail(QE_ENOMEM, "reference forward: out of memory for n_ctx %d", n_ctx);
done:
    if (st != QE_OK)
        qe_ref_free(r);
    else
        *out = r;
    return st;
}

qe_status qe_ref_new(const qe_model *m, int n_ctx, qe_ref **out)
{
    return ref_new(m, n_ctx, 0, QE_KV_F32, QE_KV_F32, out);
}

qe_status qe_ref_new_kv(const qe_model *m, int n_ctx, qe_kv_format kv_k, qe_kv_format kv_v,
                        qe_ref **out)
{
    return ref_new(m, n_ctx, 1, kv_k, kv_v, out);
}

void qe_ref_free(qe_ref *r)
{
    if (!r)
        return;
    free(r->x);
    free(r->xb);
    free(r->xb2);
    free(r->q);
    free(r->hb);
    free(r->hb2);
    free(r->att);
    free(r->k_cache);
    free(r->v_cache);
    free(r->row);
    free(r->kv_f);
    free(r->kv_bytes);
    free(r);
}

void qe_ref_reset(qe_ref *r) { r->n_past = 0; }

int qe_ref_n_past(const qe_ref *r) { return r->n_past; }

/* out[i] = sum_j W[i][j] * x[j] for the ne[1] rows of W; x has ne[0] entries. */
static void matvec(qe_ref *r, const qe_tensor *w, const double *x, double *out)
{
    for (int64_t i = 0; i < w->ne[1]; i++) {
        qe_tensor_row_f32(w, i, r->row);
        double s = 0.0;
        for (int64_t j = 0; j < w->ne[0]; j++)
            s += (double)r->row[j] * x[j];
        out[i] = s;
    }
}

/* out = x / sqrt(mean(x^2) + eps) * w; out may alias x. */
static void rmsnorm(qe_ref *r, const qe_tensor *w, const double *x, double *out, int n, double eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    qe_tensor_row_f32(w, 0, r->row);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale * (double)r->row[i];
}

/* Each of the n_heads heads of v (head_dim long) normalised with w. */
static void head_norm(qe_ref *r, const qe_tensor *w, double *v, int n_heads, int head_dim,
                      double eps)
{
    for (int h = 0; h < n_heads; h++)
        rmsnorm(r, w, v + (size_t)h * head_dim, v + (size_t)h * head_dim, head_dim, eps);
}

/* v += bias (n entries). */
static void add_bias(qe_ref *r, const qe_tensor *b, double *v, int64_t n)
{
    qe_tensor_row_f32(b, 0, r->row);
    for (int64_t i = 0; i < n; i++)
        v[i] += (double)r->row[i];
}

double qe_ref_ffn_act(qe_ffn_act act, double z)
{
    if (act == QE_ACT_GELU_TANH) {
        /* gelu_pytorch_tanh, ggml_gelu */
        const double k = 0.79788456080286535588; /* sqrt(2 / pi) */
        return 0.5 * z * (1.0 + tanh(k * (z + 0.044715 * z * z * z)));
    }
    return z / (1.0 + exp(-z));
}

/* Rotate the n_heads heads of v (each head_dim long) for position pos in layer l. */
static void rope(const qe_hparams *hp, const qe_weights *w, int l, double *v, int n_heads, int pos)
{
    int half = hp->n_rot / 2;
    float base, pos_scale;
    qe_model_layer_rope(hp, l, &base, &pos_scale);
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * pos_scale * pow(base, -2.0 * i / hp->n_rot);
        if (w->rope_freqs.data) {
            float f;
            memcpy(&f, (const char *)w->rope_freqs.data + (size_t)i * sizeof f, sizeof f);
            theta /= f;
        }
        double c = cos(theta), s = sin(theta);
        for (int h = 0; h < n_heads; h++) {
            double *hv = v + (size_t)h * hp->head_dim;
            int ia = hp->rope_layout == QE_ROPE_PAIRS ? 2 * i : i;
            int ib = hp->rope_layout == QE_ROPE_PAIRS ? 2 * i + 1 : i + half;
            double a = hv[ia], b = hv[ib];
            hv[ia] = a * c - b * s;
            hv[ib] = a * s + b * c;
        }
    }
}

/* Replace a K or V row by what the cache format gives back for it. */
static void kv_roundtrip(qe_ref *r, qe_kv_format f, double *row)
{
    const qe_hparams *hp = qe_model_hparams(r->m);
    for (int64_t i = 0; i < r->kv_dim; i++)
        r->kv_f[i] = (float)row[i];
    qe_kv_format_quantize_row(f, r->kv_f, hp->n_kv_heads, hp->head_dim, r->kv_bytes);
    qe_kv_format_dequantize_row(f, r->kv_bytes, hp->n_kv_heads, hp->head_dim, r->kv_f);
    for (int64_t i = 0; i < r->kv_dim; i++)
        row[i] = r->kv_f[i];
}

qe_status qe_ref_step(qe_ref *r, int token, int pos, double *logits)
{
    const qe_hparams *hp = qe_model_hparams(r->m);
    const qe_weights *w = qe_model_weights(r->m);
    if (token < 0 || token >= hp->n_vocab)
        return qe_fail(QE_EINVAL, "reference forward: token %d outside the vocabulary (0..%d)",
                       token, hp->n_vocab - 1);
    if (pos < 0 || pos > r->n_past || pos >= r->n_ctx)
        return qe_fail(QE_EINVAL,
                       "reference forward: position %d, expected 0..%d (cached %d, n_ctx %d)", pos,
                       r->n_past < r->n_ctx - 1 ? r->n_past : r->n_ctx - 1, r->n_past, r->n_ctx);
    r->n_past = pos; /* a rewind drops the positions after pos */
    int dim = hp->dim, head_dim = hp->head_dim, group = hp->n_heads / hp->n_kv_heads;
    double eps = hp->rms_eps, att_scale = hp->attn_scale;

    qe_tensor_row_f32(&w->token_embd, token, r->row);
    for (int i = 0; i < dim; i++)
        r->x[i] = (double)r->row[i] * hp->embd_scale;

    for (int l = 0; l < hp->n_layers; l++) {
        const qe_layer *L = &w->layers[l];
        double *kc = r->k_cache + ((size_t)l * r->n_ctx) * (size_t)r->kv_dim;
        double *vc = r->v_cache + ((size_t)l * r->n_ctx) * (size_t)r->kv_dim;
        double *k = kc + (size_t)pos * r->kv_dim, *v = vc + (size_t)pos * r->kv_dim;

        rmsnorm(r, &L->attn_norm, r->x, r->xb, dim, eps);
        matvec(r, &L->wq, r->xb, r->q);
        matvec(r, &L->wk, r->xb, k);
        matvec(r, &L->wv, r->xb, v);
        if (hp->attn_bias) {
            add_bias(r, &L->bq, r->q, r->q_dim);
            add_bias(r, &L->bk, k, r->kv_dim);
            add_bias(r, &L->bv, v, r->kv_dim);
        }
        if (hp->qk_norm) {
            head_norm(r, &L->attn_q_norm, r->q, hp->n_heads, head_dim, eps);
            head_norm(r, &L->attn_k_norm, k, hp->n_kv_heads, head_dim, eps);
        }
        rope(hp, w, l, r->q, hp->n_heads, pos);
        rope(hp, w, l, k, hp->n_kv_heads, pos);
        /* Sliding layers see positions t0 .. pos (t > pos - window). */
        int t0 = 0;
        if (qe_model_layer_swa(hp, l) && pos - hp->swa_window + 1 > 0)
            t0 = pos - hp->swa_window + 1;
        if (r->kv_codec) {
            kv_roundtrip(r, r->kv_k, k);
            kv_roundtrip(r, r->kv_v, v);
        }

        for (int h = 0; h < hp->n_heads; h++) {
            const double *qh = r->q + (size_t)h * head_dim;
            size_t kv_off = (size_t)(h / group) * head_dim;
            double mx = -INFINITY;
            for (int t = t0; t <= pos; t++) {
                const double *kt = kc + (size_t)t * r->kv_dim + kv_off;
                double s = 0.0;
                for (int i = 0; i < head_dim; i++)
                    s += qh[i] * kt[i];
                r->att[t] = s * att_scale;
                if (r->att[t] > mx)
                    mx = r->att[t];
            }
            double sum = 0.0;
            for (int t = t0; t <= pos; t++) {
                r->att[t] = exp(r->att[t] - mx);
                sum += r->att[t];
            }
            double *out = r->xb + (size_t)h * head_dim;
            for (int i = 0; i < head_dim; i++)
                out[i] = 0.0;
            for (int t = t0; t <= pos; t++) {
                const double *vt = vc + (size_t)t * r->kv_dim + kv_off;
                double a = r->att[t] / sum;
                for (int i = 0; i < head_dim; i++)
                    out[i] += a * vt[i];
            }
        }
        matvec(r, &L->wo, r->xb, r->xb2);
        if (hp->post_norms)
            rmsnorm(r, &L->attn_post_norm, r->xb2, r->xb2, dim, eps);
        for (int i = 0; i < dim; i++)
            r->x[i] += r->xb2[i];

        rmsnorm(r, &L->ffn_norm, r->x, r->xb, dim, eps);
        matvec(r, &L->w_gate, r->xb, r->hb);
        matvec(r, &L->w_up, r->xb, r->hb2);
        for (int i = 0; i < hp->n_ff; i++) {
            r->hb[i] = qe_ref_ffn_act(hp->ffn_act, r->hb[i]) * r->hb2[i];
        }
        matvec(r, &L->w_down, r->hb, r->xb2);
        if (hp->post_norms)
            rmsnorm(r, &L->ffn_post_norm, r->xb2, r->xb2, dim, eps);
        for (int i = 0; i < dim; i++)
            r->x[i] += r->xb2[i];
    }
    r->n_past = pos + 1;
    if (logits) {
        rmsnorm(r, &w->output_norm, r->x, r->xb, dim, eps);
        matvec(r, &w->output, r->xb, logits);
        if (hp->final_softcap > 0)
            for (int i = 0; i < hp->n_vocab; i++)
                logits[i] = hp->final_softcap * tanh(logits[i] / hp->final_softcap);
    }
    return QE_OK;
}
