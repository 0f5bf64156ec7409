/* model.c - decoder-only transformers (llama, qwen2, gemma3) from GGUF
 * files, and Llama from Hugging Face directories: hyper-parameters, weight
 * views, shape checks, content hash.
 *
 * Both loaders fill a qe_hparams and a qe_weights whose tensors view the
 * mapped file, then pass them through check_model(), the same validation
 * qe_model_build applies to in-memory models. Nothing is copied except the
 * RoPE frequency divisors computed for HF "llama3" scaling.
 *
 * Threading: open/build/close are not concurrent with use; a built model is
 * immutable and may be read from any number of threads.
 */
#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hash.h"
#include "log.h"
#include "safetensors.h"

/* Bounds that keep every product of hyper-parameters far from overflow and
 * reject absurd files early; far above any real Llama. */
#define MAX_LAYERS 4096
#define MAX_WIDTH (1 << 20)   /* dim, n_ff, heads * head_dim */
#define MAX_VOCAB (1 << 24)

static const double PI = 3.14159265358979323846;

struct qe_model {
    qe_model_format format;
    qe_hparams hp;
    qe_weights w;
    char *path;         /* as given, or the build name */
    char *name;         /* display name */
    char *weights_path; /* the file qe_model_sha256 hashes; NULL for built models */
    qe_gguf *gguf;
    qe_safetensors *st;
    float *rope_freqs;  /* [n_rot/2] owned divisors (HF llama3 scaling) */
};

const char *qe_model_arch_name(qe_arch a)
{
    switch (a) {
    case QE_ARCH_LLAMA: return "llama";
    case QE_ARCH_QWEN2: return "qwen2";
    case QE_ARCH_GEMMA3: return "gemma3";
    }
    return "?";
}

int qe_model_layer_swa(const qe_hparams *hp, int l)
{
    if (hp->swa_window <= 0)
        return 0;
    return hp->swa_pattern == 0 || l % hp->swa_pattern < hp->swa_pattern - 1;
}

void qe_model_layer_rope(const qe_hparams *hp, int l, float *base, float *freq_scale)
{
    int swa = qe_model_layer_swa(hp, l);
    *base = swa ? hp->rope_base_swa : hp->rope_base;
    *freq_scale = swa ? hp->rope_freq_scale_swa : hp->rope_freq_scale;
}

/* Fill the switches left at 0 with their plain-Llama meaning (see qe_hparams). */
static void resolve_defaults(qe_hparams *hp)
{
    if (hp->embd_scale == 0.0f)
        hp->embd_scale = 1.0f;
    if (hp->attn_scale == 0.0f && hp->head_dim > 0)
        hp->attn_scale = (float)(1.0 / sqrt((double)hp->head_dim));
    if (hp->rope_base_swa == 0.0f)
        hp->rope_base_swa = hp->rope_base;
    if (hp->rope_freq_scale_swa == 0.0f)
        hp->rope_freq_scale_swa = hp->rope_freq_scale;
}

const char *qe_model_rope_layout_name(qe_rope_layout l)
{
    return l == QE_ROPE_PAIRS ? "pairs" : l == QE_ROPE_HALVES ? "halves" : "?";
}

const char *qe_model_rope_scaling_name(qe_rope_scaling s)
{
    switch (s) {
    case QE_ROPE_SCALING_NONE: return "none";
    case QE_ROPE_SCALING_LINEAR: return "linear";
    case QE_ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "?";
}

/* ---- validation shared by every source ---- */

static qe_status check_hparams(const char *src, const qe_hparams *hp)
{
#define RANGE(field, lo, hi)                                                                      \
    if (hp->field < (lo) || hp->field > (hi))                                                     \
        return qe_fail(QE_ECORRUPT, "%s: hyper-parameter " #field " = %lld, expected %lld..%lld",  \
                       src, (long long)hp->field, (long long)(lo), (long long)(hi));
    RANGE(n_vocab, 1, MAX_VOCAB);
    RANGE(dim, 1, MAX_WIDTH);
    RANGE(n_layers, 1, MAX_LAYERS);
    RANGE(n_heads, 1, MAX_WIDTH);
    RANGE(n_kv_heads, 1, hp->n_heads);
    RANGE(head_dim, 1, MAX_WIDTH / hp->n_heads);
    RANGE(n_rot, 2, hp->head_dim);
    RANGE(n_ff, 1, MAX_WIDTH);
    RANGE(n_ctx_train, 1, INT32_MAX);
    RANGE(bos_id, -1, hp->n_vocab - 1);
    RANGE(eos_id, -1, hp->n_vocab - 1);
    RANGE(arch, QE_ARCH_LLAMA, QE_ARCH_GEMMA3);
    RANGE(ffn_act, QE_ACT_SILU, QE_ACT_GELU_TANH);
    RANGE(swa_window, 0, INT32_MAX);
    RANGE(swa_pattern, 0, MAX_LAYERS);
#undef RANGE
    if (hp->n_heads % hp->n_kv_heads != 0)
        return qe_fail(QE_ECORRUPT, "%s: %d query heads are not a multiple of %d key/value heads",
                       src, hp->n_heads, hp->n_kv_heads);
    if (hp->n_rot % 2 != 0)
        return qe_fail(QE_ECORRUPT, "%s: RoPE dimension count %d is odd", src, hp->n_rot);
    if (!(hp->rms_eps >= 0.0f && hp->rms_eps < 1.0f))
        return qe_fail(QE_ECORRUPT, "%s: RMSNorm epsilon %g, expected 0 <= eps < 1", src,
                       (double)hp->rms_eps);
    if (!(hp->rope_base > 1.0f && isfinite(hp->rope_base)))
        return qe_fail(QE_ECORRUPT, "%s: RoPE base %g, expected a finite value > 1", src,
                       (double)hp->rope_base);
    if (!(hp->rope_freq_scale > 0.0f && isfinite(hp->rope_freq_scale)) ||
        !(hp->rope_factor > 0.0f && isfinite(hp->rope_factor)))
        return qe_fail(QE_ECORRUPT, "%s: RoPE scaling factor %g / frequency scale %g, expected > 0",
                       src, (double)hp->rope_factor, (double)hp->rope_freq_scale);
    if (!(hp->rope_base_swa > 1.0f && isfinite(hp->rope_base_swa)) ||
        !(hp->rope_freq_scale_swa > 0.0f && isfinite(hp->rope_freq_scale_swa)))
        return qe_fail(QE_ECORRUPT, "%s: local-layer RoPE base %g / frequency scale %g, expected "
                       "a base > 1 and a scale > 0", src, (double)hp->rope_base_swa,
                       (double)hp->rope_freq_scale_swa);
    if (!(hp->embd_scale > 0.0f && isfinite(hp->embd_scale)) ||
        !(hp->attn_scale > 0.0f && isfinite(hp->attn_scale)))
        return qe_fail(QE_ECORRUPT, "%s: embedding scale %g / attention scale %g, expected "
                       "finite values > 0", src, (double)hp->embd_scale, (double)hp->attn_scale);
    if (!(hp->final_softcap >= 0.0f && isfinite(hp->final_softcap)))
        return qe_fail(QE_ECORRUPT, "%s: final logit soft-cap %g, expected 0 (none) or > 0", src,
                       (double)hp->final_softcap);
    if (hp->rope_layout != QE_ROPE_PAIRS && hp->rope_layout != QE_ROPE_HALVES)
        return qe_fail(QE_EINVAL, "%s: unknown RoPE layout %d", src, (int)hp->rope_layout);
    if (hp->rope_scaling < QE_ROPE_SCALING_NONE || hp->rope_scaling > QE_ROPE_SCALING_LLAMA3)
        return qe_fail(QE_EINVAL, "%s: unknown RoPE scaling %d", src, (int)hp->rope_scaling);
    return QE_OK;
}

/* The tensor must be present with shape {ne0, ne1} and a supported type. */
static qe_status expect(const char *src, const qe_tensor *t, int layer, const char *what,
                        int64_t ne0, int64_t ne1)
{
    char unnamed[64]; /* tensors of built models may have no name */
    if (layer < 0)
        snprintf(unnamed, sizeof unnamed, "(%s)", what);
    else
        snprintf(unnamed, sizeof unnamed, "(layer %d %s)", layer, what);
    const char *name = t->name ? t->name : unnamed;
    if (!t->data)
        return qe_fail(QE_ECORRUPT, "%s: tensor %s is missing", src, name);
    if (!qe_tensor_type_supported(t->type))
        return qe_fail(QE_EUNSUPPORTED, "%s: tensor %s: element type %s is not supported", src,
                       name, qe_dtype_name(t->type));
    if (t->ne[0] != ne0 || t->ne[1] != ne1)
        return qe_fail(QE_ECORRUPT,
                       "%s: tensor %s: expected shape {%lld, %lld}, found {%lld, %lld} "
                       "(ne0 = input, ne1 = output)",
                       src, name, (long long)ne0, (long long)ne1, (long long)t->ne[0],
                       (long long)t->ne[1]);
    uint64_t row = 0;
    if (qe_dtype_row_bytes(t->type, t->ne[0], &row) != QE_OK || row != t->row_bytes ||
        t->nbytes != row * (uint64_t)t->ne[1])
        return qe_fail(QE_EINVAL, "%s: tensor %s: view sizes disagree with its shape", src, name);
    return QE_OK;
}

static qe_status check_model(const char *src, const qe_hparams *hp, const qe_weights *w)
{
    qe_status st = check_hparams(src, hp);
    if (st != QE_OK)
        return st;
    int64_t d = hp->dim, q = (int64_t)hp->n_heads * hp->head_dim,
            kv = (int64_t)hp->n_kv_heads * hp->head_dim, ff = hp->n_ff, v = hp->n_vocab;
    if ((st = expect(src, &w->token_embd, -1, "token_embd", d, v)) != QE_OK ||
        (st = expect(src, &w->output_norm, -1, "output_norm", d, 1)) != QE_OK ||
        (st = expect(src, &w->output, -1, "output", d, v)) != QE_OK)
        return st;
    if (hp->tied && w->output.data != w->token_embd.data)
        return qe_fail(QE_EINVAL, "%s: tied output must view the token embedding", src);
    if (w->rope_freqs.data &&
        (st = expect(src, &w->rope_freqs, -1, "rope_freqs", hp->n_rot / 2, 1)) != QE_OK)
        return st;
    if (w->rope_freqs.data && w->rope_freqs.type != QE_DT_F32)
        return qe_fail(QE_EUNSUPPORTED, "%s: tensor %s: expected f32", src, w->rope_freqs.name);
    if (!w->layers)
        return qe_fail(QE_EINVAL, "%s: no layers", src);
    for (int l = 0; l < hp->n_layers; l++) {
        const qe_layer *L = &w->layers[l];
        if ((st = expect(src, &L->attn_norm, l, "attn_norm", d, 1)) != QE_OK ||
            (st = expect(src, &L->wq, l, "attn_q", d, q)) != QE_OK ||
            (st = expect(src, &L->wk, l, "attn_k", d, kv)) != QE_OK ||
            (st = expect(src, &L->wv, l, "attn_v", d, kv)) != QE_OK ||
            (st = expect(src, &L->wo, l, "attn_output", q, d)) != QE_OK ||
            (st = expect(src, &L->ffn_norm, l, "ffn_norm", d, 1)) != QE_OK ||
            (st = expect(src, &L->w_gate, l, "ffn_gate", d, ff)) != QE_OK ||
            (st = expect(src, &L->w_up, l, "ffn_up", d, ff)) != QE_OK ||
            (st = expect(src, &L->w_down, l, "ffn_down", ff, d)) != QE_OK)
            return st;
        if (hp->attn_bias && ((st = expect(src, &L->bq, l, "attn_q.bias", q, 1)) != QE_OK ||
                              (st = expect(src, &L->bk, l, "attn_k.bias", kv, 1)) != QE_OK ||
                              (st = expect(src, &L->bv, l, "attn_v.bias", kv, 1)) != QE_OK))
            return st;
        if (hp->qk_norm &&
            ((st = expect(src, &L->attn_q_norm, l, "attn_q_norm", hp->head_dim, 1)) != QE_OK ||
             (st = expect(src, &L->attn_k_norm, l, "attn_k_norm", hp->head_dim, 1)) != QE_OK))
            return st;
        if (hp->post_norms &&
            ((st = expect(src, &L->attn_post_norm, l, "post_attention_norm", d, 1)) != QE_OK ||
             (st = expect(src, &L->ffn_post_norm, l, "post_ffw_norm", d, 1)) != QE_OK))
            return st;
    }
    return QE_OK;
}

static qe_model *model_new(const char *path, qe_model_format fmt)
{
    qe_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->format = fmt;
    m->path = strdup(path);
    if (!m->path) {
        free(m);
        return NULL;
    }
    return m;
}

/* Display name: the last path component without a ".gguf" suffix. */
static qe_status set_name(qe_model *m, const char *name)
{
    const char *base = name;
    char *copy = NULL;
    if (!name) {
        size_t len = strlen(m->path);
        while (len > 1 && m->path[len - 1] == '/')
            len--;
        copy = strndup(m->path, len);
        if (!copy)
            return qe_fail(QE_ENOMEM, "out of memory");
        const char *slash = strrchr(copy, '/');
        base = slash && slash[1] ? slash + 1 : copy;
    }
    m->name = strdup(base);
    free(copy);
    if (!m->name)
        return qe_fail(QE_ENOMEM, "out of memory");
    if (!name) {
        size_t n = strlen(m->name);
        if (n > 5 && strcmp(m->name + n - 5, ".gguf") == 0)
            m->name[n - 5] = '\0';
    }
    return QE_OK;
}

void qe_model_close(qe_model *m)
{
    if (!m)
        return;
    free(m->w.layers);
    free(m->rope_freqs);
    qe_gguf_close(m->gguf);
    qe_safetensors_close(m->st);
    free(m->weights_path);
    free(m->name);
    free(m->path);
    free(m);
}

qe_status qe_model_build(const qe_hparams *hp, const qe_weights *w, const char *name,
                         qe_model **out)
{
    *out = NULL;
    qe_status st = QE_OK;
    if (!name)
        name = "(built model)";
    qe_model *m = model_new(name, QE_MODEL_HF);
    if (!m || (st = set_name(m, name)) != QE_OK) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    m->hp = *hp;
    resolve_defaults(&m->hp);
    if ((st = check_hparams(name, &m->hp)) != QE_OK)
        goto done;
    m->w = *w;
    m->w.layers = calloc((size_t)hp->n_layers, sizeof *m->w.layers);
    if (!m->w.layers) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    if (w->layers)
        memcpy(m->w.layers, w->layers, (size_t)hp->n_layers * sizeof *m->w.layers);
    st = check_model(name, &m->hp, &m->w);
done:
    if (st != QE_OK)
        qe_model_close(m);
    else
        *out = m;
    return st;
}

/* ---- GGUF ---- */

/* View a GGUF tensor as a matrix (n_dims 2) or vector (n_dims 1). Absent
 * optional tensors leave *t zeroed. */
static qe_status gguf_view(const qe_gguf *g, const char *name, int optional, qe_tensor *t)
{
    memset(t, 0, sizeof *t);
    const qe_gguf_tensor *gt = qe_gguf_find_tensor(g, name);
    if (!gt) {
        if (optional)
            return QE_OK;
        return qe_fail(QE_ECORRUPT, "%s: tensor %s is missing", qe_gguf_path(g), name);
    }
    if (gt->n_dims > 2)
        return qe_fail(QE_ECORRUPT, "%s: tensor %s: expected 1 or 2 dimensions, found %u",
                       qe_gguf_path(g), name, gt->n_dims);
    qe_status st = qe_tensor_view(t, gt->name, (qe_dtype)gt->type, gt->ne[0],
                                  gt->n_dims > 1 ? gt->ne[1] : 1, gt->data, gt->nbytes, 1);
    return st == QE_OK ? QE_OK : qe_fail_prefix(st, "%s", qe_gguf_path(g));
}

/* Optional u32-compatible key: *out unchanged when absent. */
static qe_status gguf_opt_u32(const qe_gguf *g, const char *key, int32_t *out)
{
    uint32_t v;
    qe_status st = qe_gguf_get_u32(g, key, &v);
    if (st == QE_ENOTFOUND)
        return QE_OK;
    if (st != QE_OK)
        return qe_fail_prefix(st, "%s", qe_gguf_path(g));
    if (v > INT32_MAX)
        return qe_fail(QE_ECORRUPT, "%s: %s = %u is out of range", qe_gguf_path(g), key, v);
    *out = (int32_t)v;
    return QE_OK;
}

static qe_status gguf_req_u32(const qe_gguf *g, const char *key, int32_t *out)
{
    if (qe_gguf_find_key(g, key) < 0)
        return qe_fail(QE_ECORRUPT, "%s: required key %s is missing", qe_gguf_path(g), key);
    return gguf_opt_u32(g, key, out);
}

static qe_status gguf_opt_f32(const qe_gguf *g, const char *key, float *out)
{
    qe_status st = qe_gguf_get_f32(g, key, out);
    if (st == QE_ENOTFOUND)
        return QE_OK;
    return st == QE_OK ? QE_OK : qe_fail_prefix(st, "%s", qe_gguf_path(g));
}

/* The architectures qeval computes, by general.architecture. */
static const struct {
    const char *name;
    qe_arch arch;
} gguf_archs[] = {
    {"llama", QE_ARCH_LLAMA},
    {"qwen2", QE_ARCH_QWEN2},
    {"gemma3", QE_ARCH_GEMMA3},
};

/* "<arch>.<suffix>" into one of a few rotating buffers (keys are short). */
static const char *arch_key(const char *arch, const char *suffix)
{
    static _Thread_local char buf[4][96];
    static _Thread_local int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s.%s", arch, suffix);
    return b;
}

/* Switches of each architecture (see the top of model.h), and the keys
 * only some architectures have. */
static qe_status gguf_arch_hparams(const qe_gguf *g, const char *an, qe_hparams *hp)
{
    const char *src = qe_gguf_path(g);
    qe_status st;
    hp->embd_scale = 1.0f;
    hp->attn_scale = (float)(1.0 / sqrt((double)hp->head_dim));
    hp->rope_base_swa = hp->rope_base;
    hp->rope_freq_scale_swa = hp->rope_freq_scale;
    switch (hp->arch) {
    case QE_ARCH_LLAMA:
        break;
    case QE_ARCH_QWEN2:
        hp->attn_bias = 1;
        hp->rope_layout = QE_ROPE_HALVES;
        break;
    case QE_ARCH_GEMMA3:
        /* llama.cpp's gemma3 hyper-parameters: scale the embedding by
         * sqrtf(n_embd); q/k norms and post norms; GELU; a sliding window on
         * 5 of every 6 layers when the file names one, those layers with RoPE
         * base 10000 and no position scaling; the 27B model (62 layers)
         * scales attention by 1/sqrt(n_embd / n_head) (query_pre_attn_scalar). */
        hp->rope_layout = QE_ROPE_HALVES;
        hp->embd_scale = sqrtf((float)hp->dim);
        hp->qk_norm = 1;
        hp->post_norms = 1;
        hp->ffn_act = QE_ACT_GELU_TANH;
        if ((st = gguf_opt_u32(g, arch_key(an, "attention.sliding_window"), &hp->swa_window)) !=
            QE_OK)
            return st;
        if (hp->swa_window > 0) {
            hp->swa_pattern = 6;
            hp->rope_base_swa = 10000.0f;
            hp->rope_freq_scale_swa = 1.0f;
        }
        if (hp->n_layers == 62)
            hp->attn_scale = (float)(1.0 / sqrt((double)(hp->dim / hp->n_heads)));
        if ((st = gguf_opt_f32(g, arch_key(an, "final_logit_softcapping"), &hp->final_softcap)) !=
            QE_OK)
            return st;
        if (!(hp->final_softcap >= 0.0f))
            return qe_fail(QE_ECORRUPT, "%s: %s = %g, expected >= 0", src,
                           arch_key(an, "final_logit_softcapping"), (double)hp->final_softcap);
        break;
    }
    return QE_OK;
}

static qe_status load_gguf(qe_model *m)
{
    qe_status st = qe_gguf_open(m->path, &m->gguf);
    if (st != QE_OK)
        return st;
    const qe_gguf *g = m->gguf;
    const char *src = m->path, *an = NULL;
    qe_hparams *hp = &m->hp;
    if ((st = qe_gguf_get_str(g, "general.architecture", &an, NULL)) != QE_OK)
        return qe_fail_prefix(st == QE_ENOTFOUND ? QE_ECORRUPT : st, "%s", src);
    size_t ai = 0, n_archs = sizeof gguf_archs / sizeof gguf_archs[0];
    while (ai < n_archs && strcmp(an, gguf_archs[ai].name) != 0)
        ai++;
    if (ai == n_archs)
        return qe_fail(QE_EUNSUPPORTED,
                       "%s: general.architecture is \"%s\"; qeval supports \"llama\", \"qwen2\" "
                       "and \"gemma3\"",
                       src, an);
    hp->arch = gguf_archs[ai].arch;
    /* The file's base name: general.name is often just "llama". */
    if ((st = set_name(m, NULL)) != QE_OK)
        return st;
    int64_t kv_idx = qe_gguf_find_key(g, arch_key(an, "attention.head_count_kv"));
    if (kv_idx >= 0 && qe_gguf_kv_type(g, (uint64_t)kv_idx) == QE_GGUF_ARRAY)
        return qe_fail(QE_EUNSUPPORTED, "%s: per-layer key/value head counts are not supported",
                       src);

    hp->bos_id = hp->eos_id = -1;
    hp->rope_base = 10000.0f;
    hp->rope_factor = hp->rope_freq_scale = 1.0f;
    hp->rope_layout = QE_ROPE_PAIRS;
    hp->rope_scaling = QE_ROPE_SCALING_NONE;
    hp->n_ctx_train = 2048;
    if ((st = gguf_req_u32(g, arch_key(an, "embedding_length"), &hp->dim)) != QE_OK ||
        (st = gguf_req_u32(g, arch_key(an, "block_count"), &hp->n_layers)) != QE_OK ||
        (st = gguf_req_u32(g, arch_key(an, "feed_forward_length"), &hp->n_ff)) != QE_OK ||
        (st = gguf_req_u32(g, arch_key(an, "attention.head_count"), &hp->n_heads)) != QE_OK ||
        (st = gguf_opt_u32(g, arch_key(an, "context_length"), &hp->n_ctx_train)) != QE_OK)
        return st;
    if ((st = qe_gguf_get_f32(g, arch_key(an, "attention.layer_norm_rms_epsilon"),
                              &hp->rms_eps)) != QE_OK)
        return qe_fail_prefix(st == QE_ENOTFOUND ? QE_ECORRUPT : st, "%s", src);
    hp->n_kv_heads = hp->n_heads;
    if ((st = gguf_opt_u32(g, arch_key(an, "attention.head_count_kv"), &hp->n_kv_heads)) != QE_OK)
        return st;
    if (hp->n_heads < 1)
        return qe_fail(QE_ECORRUPT, "%s: %s is 0", src, arch_key(an, "attention.head_count"));
    hp->head_dim = hp->dim / hp->n_heads;
    int32_t v_len = -1;
    if ((st = gguf_opt_u32(g, arch_key(an, "attention.key_length"), &hp->head_dim)) != QE_OK ||
        (st = gguf_opt_u32(g, arch_key(an, "attention.value_length"), &v_len)) != QE_OK)
        return st;
    if (v_len >= 0 && v_len != hp->head_dim)
        return qe_fail(QE_EUNSUPPORTED, "%s: key length %d != value length %d", src, hp->head_dim,
                       v_len);
    if (hp->head_dim < 1)
        return qe_fail(QE_ECORRUPT, "%s: head dimension %d, expected >= 1", src, hp->head_dim);
    hp->n_rot = hp->head_dim;
    if ((st = gguf_opt_u32(g, arch_key(an, "rope.dimension_count"), &hp->n_rot)) != QE_OK ||
        (st = gguf_opt_f32(g, arch_key(an, "rope.freq_base"), &hp->rope_base)) != QE_OK)
        return st;

    /* Scaling: rope.scaling.type + rope.scaling.factor, or the older
     * rope.scale_linear. A factor of 0 (or 1) means none. */
    const char *stype = NULL;
    float factor = 0.0f;
    if ((st = gguf_opt_f32(g, arch_key(an, "rope.scale_linear"), &factor)) != QE_OK ||
        (st = gguf_opt_f32(g, arch_key(an, "rope.scaling.factor"), &factor)) != QE_OK)
        return st;
    st = qe_gguf_get_str(g, arch_key(an, "rope.scaling.type"), &stype, NULL);
    if (st != QE_OK && st != QE_ENOTFOUND)
        return qe_fail_prefix(st, "%s", src);
    if (stype && strcmp(stype, "none") != 0 && strcmp(stype, "linear") != 0)
        return qe_fail(QE_EUNSUPPORTED, "%s: RoPE scaling type \"%s\" is not supported", src, stype);
    if (stype && strcmp(stype, "none") == 0)
        factor = 0.0f;
    if (factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0.0f && isfinite(factor)))
            return qe_fail(QE_ECORRUPT, "%s: RoPE scaling factor %g, expected > 0", src,
                           (double)factor);
        hp->rope_scaling = QE_ROPE_SCALING_LINEAR;
        hp->rope_factor = factor;
        hp->rope_freq_scale = 1.0f / factor;
    }
    if ((st = gguf_arch_hparams(g, an, hp)) != QE_OK)
        return st;

    uint32_t id;
    if (qe_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id) == QE_OK && id <= INT32_MAX)
        hp->bos_id = (int32_t)id;
    if (qe_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id) == QE_OK && id <= INT32_MAX)
        hp->eos_id = (int32_t)id;
    qe_errclear();

    qe_weights *w = &m->w;
    if ((st = gguf_view(g, "token_embd.weight", 0, &w->token_embd)) != QE_OK ||
        (st = gguf_view(g, "output_norm.weight", 0, &w->output_norm)) != QE_OK ||
        (st = gguf_view(g, "output.weight", 1, &w->output)) != QE_OK ||
        (st = gguf_view(g, "rope_freqs.weight", 1, &w->rope_freqs)) != QE_OK)
        return st;
    if (w->rope_freqs.data)
        hp->rope_scaling = QE_ROPE_SCALING_LLAMA3;
    /* n_vocab: the explicit key, else the vocabulary's size, else the embedding. */
    hp->n_vocab = (int32_t)(w->token_embd.ne[1] < INT32_MAX ? w->token_embd.ne[1] : INT32_MAX);
    qe_gguf_type et;
    uint64_t n_tok;
    if (qe_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok) == QE_OK)
        hp->n_vocab = n_tok < INT32_MAX ? (int32_t)n_tok : INT32_MAX;
    qe_errclear();
    if ((st = gguf_opt_u32(g, arch_key(an, "vocab_size"), &hp->n_vocab)) != QE_OK)
        return st;
    /* No output matrix, or one byte-identical to the embedding (llama2.c
     * exports such as stories260K write the shared matrix twice): tied, so
     * consumers keep one copy. */
    if (!w->output.data ||
        (w->output.type == w->token_embd.type && w->output.nbytes == w->token_embd.nbytes &&
         w->output.ne[0] == w->token_embd.ne[0] &&
         memcmp(w->output.data, w->token_embd.data, w->output.nbytes) == 0)) {
        w->output = w->token_embd;
        hp->tied = 1;
    }
    if ((st = check_hparams(src, hp)) != QE_OK)
        return st;
    w->layers = calloc((size_t)hp->n_layers, sizeof *w->layers);
    if (!w->layers)
        return qe_fail(QE_ENOMEM, "%s: out of memory", src);
    /* Tensor name suffixes (blk.N.<suffix>) and the switch that requires them. */
    enum { ALWAYS, BIAS, QK_NORM, POST_NORMS };
    static const struct {
        const char *suffix;
        int when;
        size_t off;
    } parts[] = {
        {"attn_norm.weight", ALWAYS, offsetof(qe_layer, attn_norm)},
        {"attn_q.weight", ALWAYS, offsetof(qe_layer, wq)},
        {"attn_k.weight", ALWAYS, offsetof(qe_layer, wk)},
        {"attn_v.weight", ALWAYS, offsetof(qe_layer, wv)},
        {"attn_output.weight", ALWAYS, offsetof(qe_layer, wo)},
        {"ffn_norm.weight", ALWAYS, offsetof(qe_layer, ffn_norm)},
        {"ffn_gate.weight", ALWAYS, offsetof(qe_layer, w_gate)},
        {"ffn_up.weight", ALWAYS, offsetof(qe_layer, w_up)},
        {"ffn_down.weight", ALWAYS, offsetof(qe_layer, w_down)},
        {"attn_q.bias", BIAS, offsetof(qe_layer, bq)},
        {"attn_k.bias", BIAS, offsetof(qe_layer, bk)},
        {"attn_v.bias", BIAS, offsetof(qe_layer, bv)},
        {"attn_q_norm.weight", QK_NORM, offsetof(qe_layer, attn_q_norm)},
        {"attn_k_norm.weight", QK_NORM, offsetof(qe_layer, attn_k_norm)},
        {"post_attention_norm.weight", POST_NORMS, offsetof(qe_layer, attn_post_norm)},
        {"post_ffw_norm.weight", POST_NORMS, offsetof(qe_layer, ffn_post_norm)},
    };
    const int on[] = {[ALWAYS] = 1, [BIAS] = hp->attn_bias, [QK_NORM] = hp->qk_norm,
                      [POST_NORMS] = hp->post_norms};
    for (int l = 0; l < hp->n_layers; l++)
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            if (!on[parts[p].when])
                continue;
            char tn[80];
            snprintf(tn, sizeof tn, "blk.%d.%s", l, parts[p].suffix);
            qe_tensor *t = (qe_tensor *)((char *)&w->layers[l] + parts[p].off);
            if ((st = gguf_view(g, tn, 0, t)) != QE_OK)
                return st;
        }
    m->weights_path = strdup(m->path);
    if (!m->weights_path)
        return qe_fail(QE_ENOMEM, "out of memory");
    return check_model(src, hp, w);
}

/* ---- Hugging Face directory ---- */

/* Integer member of config.json: required (dflt < -1 means required), or
 * dflt when absent or null. */
static qe_status cfg_int(const char *src, json_t *cfg, const char *key, int64_t dflt, int64_t lo,
                         int64_t hi, int32_t *out)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (dflt < -1)
            return qe_fail(QE_ECORRUPT, "%s: required member \"%s\" is missing", src, key);
        *out = (int32_t)dflt;
        return QE_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return qe_fail(QE_ECORRUPT, "%s: \"%s\" must be an integer in %lld..%lld", src, key,
                       (long long)lo, (long long)hi);
    *out = (int32_t)json_integer_value(v);
    return QE_OK;
}

static qe_status cfg_num(const char *src, json_t *cfg, const char *key, double dflt, float *out)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return QE_OK;
    }
    if (!json_is_number(v))
        return qe_fail(QE_ECORRUPT, "%s: \"%s\" must be a number", src, key);
    *out = (float)json_number_value(v);
    return QE_OK;
}

/* bos/eos: an integer, a list of integers (the first is taken) or null. */
static qe_status cfg_token(const char *src, json_t *cfg, const char *key, int32_t *out)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    *out = -1;
    if (!v || json_is_null(v))
        return QE_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return qe_fail(QE_ECORRUPT, "%s: \"%s\" must be a token id", src, key);
    *out = (int32_t)json_integer_value(v);
    return QE_OK;
}

/* model_type decides when present; architectures otherwise. */
static int cfg_is_llama(json_t *cfg)
{
    json_t *mt = json_object_get(cfg, "model_type"), *ar = json_object_get(cfg, "architectures");
    if (json_is_string(mt))
        return strcmp(json_string_value(mt), "llama") == 0;
    for (size_t i = 0; json_is_array(ar) && i < json_array_size(ar); i++) {
        json_t *a = json_array_get(ar, i);
        if (json_is_string(a) && strcmp(json_string_value(a), "LlamaForCausalLM") == 0)
            return 1;
    }
    return 0;
}

/* rope_scaling: null, {"type"|"rope_type": "default"|"linear"|"llama3", "factor": f, ...}.
 * llama3 divisors follow Meta's reference (and llama.cpp's converter). */
static qe_status cfg_rope_scaling(qe_model *m, const char *src, json_t *cfg)
{
    qe_hparams *hp = &m->hp;
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (!rs || json_is_null(rs))
        return QE_OK;
    if (!json_is_object(rs))
        return qe_fail(QE_ECORRUPT, "%s: \"rope_scaling\" must be an object or null", src);
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty)
        ty = json_object_get(rs, "type");
    if (!json_is_string(ty))
        return qe_fail(QE_ECORRUPT, "%s: rope_scaling needs a string \"rope_type\"", src);
    const char *type = json_string_value(ty);
    if (strcmp(type, "default") == 0)
        return QE_OK;
    float factor = 0;
    qe_status st = cfg_num(src, rs, "factor", 0.0, &factor);
    if (st != QE_OK)
        return st;
    if (!(factor > 0.0f && isfinite(factor)))
        return qe_fail(QE_ECORRUPT, "%s: rope_scaling.factor %g, expected > 0", src, (double)factor);
    hp->rope_factor = factor;
    if (strcmp(type, "linear") == 0) {
        hp->rope_scaling = QE_ROPE_SCALING_LINEAR;
        hp->rope_freq_scale = 1.0f / factor;
        return QE_OK;
    }
    if (strcmp(type, "llama3") != 0)
        return qe_fail(QE_EUNSUPPORTED, "%s: RoPE scaling type \"%s\" is not supported", src, type);
    float lo = 1, hi = 4;
    int32_t old_ctx = 8192;
    if ((st = cfg_num(src, rs, "low_freq_factor", 1.0, &lo)) != QE_OK ||
        (st = cfg_num(src, rs, "high_freq_factor", 4.0, &hi)) != QE_OK ||
        (st = cfg_int(src, rs, "original_max_position_embeddings", 8192, 1, INT32_MAX, &old_ctx)) !=
            QE_OK)
        return st;
    if (!(lo > 0 && hi > lo))
        return qe_fail(QE_ECORRUPT, "%s: rope_scaling needs 0 < low_freq_factor < high_freq_factor",
                       src);
    if (hp->n_rot < 2 || hp->n_rot > MAX_WIDTH)
        return qe_fail(QE_ECORRUPT, "%s: head dimension %d", src, hp->n_rot);
    int n = hp->n_rot / 2;
    m->rope_freqs = malloc((size_t)n * sizeof *m->rope_freqs);
    if (!m->rope_freqs)
        return qe_fail(QE_ENOMEM, "%s: out of memory", src);
    double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (int i = 0; i < n; i++) {
        double freq = pow(hp->rope_base, -2.0 * i / hp->n_rot), wavelen = 2 * PI / freq;
        double f;
        if (wavelen < high_wavelen)
            f = 1.0;
        else if (wavelen > low_wavelen)
            f = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        m->rope_freqs[i] = (float)f;
    }
    hp->rope_scaling = QE_ROPE_SCALING_LLAMA3;
    return qe_tensor_view(&m->w.rope_freqs, "rope_freqs (computed from rope_scaling)", QE_DT_F32,
                          n, 1, m->rope_freqs, (uint64_t)n * sizeof(float), 1);
}

/* View an HF tensor: [out, in] matrices become ne {in, out}, [n] vectors {n, 1}. */
static qe_status hf_view(const qe_safetensors *s, const char *name, int optional, int n_dims,
                         qe_tensor *t)
{
    memset(t, 0, sizeof *t);
    const char *src = qe_safetensors_path(s);
    const qe_safetensors_tensor *x = qe_safetensors_find(s, name);
    if (!x) {
        if (optional)
            return QE_OK;
        return qe_fail(QE_ECORRUPT, "%s: tensor %s is missing", src, name);
    }
    if ((int)x->n_dims != n_dims)
        return qe_fail(QE_ECORRUPT, "%s: tensor %s: expected %d dimensions, found %u", src, name,
                       n_dims, x->n_dims);
    int g = qe_safetensors_dtype_ggml(x->dtype);
    if (g < 0 || !qe_tensor_type_supported((qe_dtype)g))
        return qe_fail(QE_EUNSUPPORTED, "%s: tensor %s: dtype %s is not supported (F32, F16, BF16)",
                       src, name, qe_safetensors_dtype_name(x->dtype));
    int64_t ne0 = n_dims == 2 ? x->shape[1] : x->shape[0], ne1 = n_dims == 2 ? x->shape[0] : 1;
    if (ne0 < 1 || ne1 < 1)
        return qe_fail(QE_ECORRUPT, "%s: tensor %s: empty shape", src, name);
    qe_status st = qe_tensor_view(t, x->name, (qe_dtype)g, ne0, ne1, x->data, x->nbytes, 1);
    return st == QE_OK ? QE_OK : qe_fail_prefix(st, "%s", src);
}

static qe_status load_hf(qe_model *m)
{
    qe_status st = QE_OK;
    json_t *cfg = NULL;
    char *cfg_path = NULL;
    qe_hparams *hp = &m->hp;
    qe_weights *w = &m->w;
    size_t plen = strlen(m->path) + 32;
    int default_weights = !m->weights_path; /* else the .safetensors path given */
    if (!(cfg_path = malloc(plen)) || (default_weights && !(m->weights_path = malloc(plen)))) {
        st = qe_fail(QE_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(cfg_path, plen, "%s/config.json", m->path);
    if (default_weights)
        snprintf(m->weights_path, plen, "%s/model.safetensors", m->path);
    const char *src = cfg_path;
    json_error_t err;
    cfg = json_load_file(cfg_path, JSON_REJECT_DUPLICATES, &err);
    if (!cfg) {
        struct stat sb;
        if (stat(cfg_path, &sb) != 0)
            st = qe_fail(QE_EIO, "%s: cannot open: %s (a model directory needs config.json)",
                         cfg_path, strerror(errno));
        else
            st = qe_fail(QE_ECORRUPT, "%s: line %d column %d: invalid JSON: %s", cfg_path,
                         err.line, err.column, err.text);
        goto done;
    }
    if (!json_is_object(cfg)) {
        st = qe_fail(QE_ECORRUPT, "%s: expected a JSON object", src);
        goto done;
    }
    if (!cfg_is_llama(cfg)) {
        json_t *mt = json_object_get(cfg, "model_type");
        st = qe_fail(QE_EUNSUPPORTED,
                     "%s: model_type is \"%s\"; qeval supports \"llama\" (LlamaForCausalLM) only",
                     src, json_is_string(mt) ? json_string_value(mt) : "(none)");
        goto done;
    }
    json_t *act = json_object_get(cfg, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        st = qe_fail(QE_EUNSUPPORTED, "%s: hidden_act must be \"silu\"", src);
        goto done;
    }
    if (json_is_true(json_object_get(cfg, "attention_bias")) ||
        json_is_true(json_object_get(cfg, "mlp_bias"))) {
        st = qe_fail(QE_EUNSUPPORTED, "%s: attention/MLP biases are not supported", src);
        goto done;
    }
    /* Defaults are transformers' LlamaConfig defaults. */
    if ((st = cfg_int(src, cfg, "hidden_size", -2, 1, MAX_WIDTH, &hp->dim)) != QE_OK ||
        (st = cfg_int(src, cfg, "num_hidden_layers", -2, 1, MAX_LAYERS, &hp->n_layers)) != QE_OK ||
        (st = cfg_int(src, cfg, "num_attention_heads", -2, 1, MAX_WIDTH, &hp->n_heads)) != QE_OK ||
        (st = cfg_int(src, cfg, "intermediate_size", -2, 1, MAX_WIDTH, &hp->n_ff)) != QE_OK ||
        (st = cfg_int(src, cfg, "vocab_size", 32000, 1, MAX_VOCAB, &hp->n_vocab)) != QE_OK ||
        (st = cfg_int(src, cfg, "max_position_embeddings", 2048, 1, INT32_MAX, &hp->n_ctx_train)) !=
            QE_OK)
        goto done;
    if ((st = cfg_int(src, cfg, "num_key_value_heads", hp->n_heads, 1, MAX_WIDTH,
                      &hp->n_kv_heads)) != QE_OK ||
        (st = cfg_int(src, cfg, "head_dim", hp->dim / hp->n_heads, 1, MAX_WIDTH, &hp->head_dim)) !=
            QE_OK ||
        (st = cfg_num(src, cfg, "rms_norm_eps", 1e-6, &hp->rms_eps)) != QE_OK ||
        (st = cfg_num(src, cfg, "rope_theta", 10000.0, &hp->rope_base)) != QE_OK ||
        (st = cfg_token(src, cfg, "bos_token_id", &hp->bos_id)) != QE_OK ||
        (st = cfg_token(src, cfg, "eos_token_id", &hp->eos_id)) != QE_OK)
        goto done;
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie)) {
        st = qe_fail(QE_ECORRUPT, "%s: \"tie_word_embeddings\" must be true or false", src);
        goto done;
    }
    int tie_cfg = json_is_true(tie);
    hp->n_rot = hp->head_dim;
    hp->rope_layout = QE_ROPE_HALVES;
    hp->rope_scaling = QE_ROPE_SCALING_NONE;
    hp->rope_factor = hp->rope_freq_scale = 1.0f;
    if ((st = cfg_rope_scaling(m, src, cfg)) != QE_OK || (st = set_name(m, NULL)) != QE_OK)
        goto done;

    if ((st = qe_safetensors_open(m->weights_path, &m->st)) != QE_OK)
        goto done;
    src = m->weights_path;
    /* A tied checkpoint may store the shared matrix under either name
     * (safetensors drops duplicates: TinyStories-656K keeps only lm_head). */
    if ((st = hf_view(m->st, "model.embed_tokens.weight", tie_cfg, 2, &w->token_embd)) != QE_OK ||
        (st = hf_view(m->st, "lm_head.weight", 1, 2, &w->output)) != QE_OK ||
        (st = hf_view(m->st, "model.norm.weight", 0, 1, &w->output_norm)) != QE_OK)
        goto done;
    if (!w->token_embd.data && !w->output.data) {
        st = qe_fail(QE_ECORRUPT, "%s: tensor model.embed_tokens.weight is missing", src);
        goto done;
    }
    if (tie_cfg || !w->output.data) {
        if (!tie_cfg)
            qe_log_debug("%s: no lm_head.weight: using the embedding as output", src);
        if (!w->token_embd.data)
            w->token_embd = w->output;
        w->output = w->token_embd;
        hp->tied = 1;
    }
    w->layers = calloc((size_t)hp->n_layers, sizeof *w->layers);
    if (!w->layers) {
        st = qe_fail(QE_ENOMEM, "out of memory");
        goto done;
    }
    static const struct {
        const char *suffix;
        int n_dims;
        size_t off;
    } parts[] = {
        {"input_layernorm", 1, offsetof(qe_layer, attn_norm)},
        {"self_attn.q_proj", 2, offsetof(qe_layer, wq)},
        {"self_attn.k_proj", 2, offsetof(qe_layer, wk)},
        {"self_attn.v_proj", 2, offsetof(qe_layer, wv)},
        {"self_attn.o_proj", 2, offsetof(qe_layer, wo)},
        {"post_attention_layernorm", 1, offsetof(qe_layer, ffn_norm)},
        {"mlp.gate_proj", 2, offsetof(qe_layer, w_gate)},
        {"mlp.up_proj", 2, offsetof(qe_layer, w_up)},
        {"mlp.down_proj", 2, offsetof(qe_layer, w_down)},
    };
    for (int l = 0; l < hp->n_layers; l++)
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            char tn[96];
            snprintf(tn, sizeof tn, "model.layers.%d.%s.weight", l, parts[p].suffix);
            qe_tensor *t = (qe_tensor *)((char *)&w->layers[l] + parts[p].off);
            if ((st = hf_view(m->st, tn, 0, parts[p].n_dims, t)) != QE_OK)
                goto done;
        }
    resolve_defaults(hp);
    st = check_model(src, hp, w);
done:
    json_decref(cfg);
    free(cfg_path);
    return st;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

qe_status qe_model_open(const char *path, qe_model **out)
{
    *out = NULL;
    qe_status st = QE_OK;
    qe_model *m = NULL;
    char *dir = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        m = model_new(path, QE_MODEL_HF);
    } else if (ends_with(path, ".safetensors")) {
        /* A weights file names its HF directory (config.json beside it). */
        const char *slash = strrchr(path, '/');
        dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
        if (!dir)
            goto oom;
        m = model_new(dir, QE_MODEL_HF);
        if (m && !(m->weights_path = strdup(path)))
            goto oom;
    } else {
        m = model_new(path, QE_MODEL_GGUF);
    }
    if (!m)
        goto oom;
    st = m->format == QE_MODEL_HF ? load_hf(m) : load_gguf(m);
    goto done;
oom:
    st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
done:
    free(dir);
    if (st != QE_OK)
        qe_model_close(m);
    else
        *out = m;
    return st;
}

const qe_hparams *qe_model_hparams(const qe_model *m) { return &m->hp; }
const qe_weights *qe_model_weights(const qe_model *m) { return &m->w; }
qe_model_format qe_model_format_of(const qe_model *m) { return m->format; }
const char *qe_model_path(const qe_model *m) { return m->path; }
const char *qe_model_name(const qe_model *m) { return m->name ? m->name : m->path; }
const qe_gguf *qe_model_gguf(const qe_model *m) { return m->gguf; }

/* Visit every distinct weight tensor once (tied output skipped). */
static void each_tensor(const qe_model *m, void (*fn)(const qe_tensor *, uint64_t *), uint64_t *acc)
{
    const qe_weights *w = &m->w;
    fn(&w->token_embd, acc);
    fn(&w->output_norm, acc);
    if (!m->hp.tied)
        fn(&w->output, acc);
    for (int l = 0; l < m->hp.n_layers; l++) {
        const qe_layer *L = &w->layers[l];
        const qe_tensor *ts[] = {&L->attn_norm, &L->wq,          &L->wk,          &L->wv,
                                 &L->wo,        &L->ffn_norm,    &L->w_gate,      &L->w_up,
                                 &L->w_down,    &L->bq,          &L->bk,          &L->bv,
                                 &L->attn_q_norm, &L->attn_k_norm, &L->attn_post_norm,
                                 &L->ffn_post_norm};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            if (ts[i]->data) /* the optional ones are absent unless their switch is on */
                fn(ts[i], acc);
    }
}

static void add_elems(const qe_tensor *t, uint64_t *acc) { *acc += (uint64_t)(t->ne[0] * t->ne[1]); }
static void add_bytes(const qe_tensor *t, uint64_t *acc) { *acc += t->nbytes; }

uint64_t qe_model_n_params(const qe_model *m)
{
    uint64_t n = 0;
    each_tensor(m, add_elems, &n);
    return n;
}

uint64_t qe_model_weight_bytes(const qe_model *m)
{
    uint64_t n = 0;
    each_tensor(m, add_bytes, &n);
    return n;
}

qe_status qe_model_sha256(const qe_model *m, uint8_t out[32])
{
    if (m->gguf) {
        qe_hash_sha256_buf(qe_gguf_base(m->gguf), (size_t)qe_gguf_file_size(m->gguf), out);
        return QE_OK;
    }
    if (m->st) {
        qe_hash_sha256_buf(qe_safetensors_base(m->st), (size_t)qe_safetensors_file_size(m->st), out);
        return QE_OK;
    }
    return qe_fail(QE_EINVAL, "%s: a model built in memory has no file to hash", m->path);
}

void qe_model_describe(const qe_model *m, char *buf, size_t cap)
{
    const qe_hparams *hp = &m->hp;
    if (!cap)
        return;
    int n = snprintf(
        buf, cap,
        "%s (%s, %s): %.2fM params, %.2f MiB of weights (%s)\n"
        "  vocab %d, dim %d, layers %d, heads %d/%d kv, head_dim %d, ffn %d, context %d\n"
        "  rms_eps %g, rope base %g, layout %s, n_rot %d, scaling %s",
        m->name, m->format == QE_MODEL_GGUF ? "gguf" : "hf", qe_model_arch_name(hp->arch),
        (double)qe_model_n_params(m) / 1e6,
        (double)qe_model_weight_bytes(m) / (1 << 20), qe_dtype_name(m->w.layers[0].wq.type),
        hp->n_vocab, hp->dim, hp->n_layers, hp->n_heads, hp->n_kv_heads, hp->head_dim, hp->n_ff,
        hp->n_ctx_train, (double)hp->rms_eps, (double)hp->rope_base,
        qe_model_rope_layout_name(hp->rope_layout), hp->n_rot,
        qe_model_rope_scaling_name(hp->rope_scaling));
    if (n >= 0 && (size_t)n < cap && hp->rope_scaling != QE_ROPE_SCALING_NONE)
        n += snprintf(buf + n, cap - (size_t)n, " x%g", (double)hp->rope_factor);
    if (n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "\n  output %s, bos %d, eos %d",
                      hp->tied ? "tied to the embedding" : "separate", hp->bos_id, hp->eos_id);
    if (n >= 0 && (size_t)n < cap && hp->arch != QE_ARCH_LLAMA)
        n += snprintf(buf + n, cap - (size_t)n,
                      "\n  %s: embedding x%g, attention scale %g, ffn %s%s%s%s",
                      qe_model_arch_name(hp->arch), (double)hp->embd_scale,
                      (double)hp->attn_scale, hp->ffn_act == QE_ACT_SILU ? "silu" : "gelu-tanh",
                      hp->attn_bias ? ", q/k/v biases" : "", hp->qk_norm ? ", q/k norms" : "",
                      hp->post_norms ? ", post norms" : "");
    if (n >= 0 && (size_t)n < cap && hp->swa_window > 0)
        n += snprintf(buf + n, cap - (size_t)n,
                      "\n  sliding window %d on layers l %% %d < %d (rope base %g there)",
                      hp->swa_window, hp->swa_pattern, hp->swa_pattern - 1,
                      (double)hp->rope_base_swa);
    if (n >= 0 && (size_t)n < cap && hp->final_softcap > 0)
        snprintf(buf + n, cap - (size_t)n, "\n  final logit soft-cap %g", (double)hp->final_softcap);
}
