/* synth.c - synthetic Llama (or qwen2 / gemma3) GGUF models of real shapes
 * (see synth.h).
 *
 * qe_synth_new lays out the whole file in a qe_gguf_writer: metadata, the
 * vocabulary and one fill-callback tensor per weight, so planning costs
 * nothing and writing streams. At write time the writer asks for runs of
 * rows (<= 16 MiB); fill() splits each run over worker threads by rows. A
 * row's values depend only on (seed, tensor name, row), and each row is
 * encoded on its own (f16 / Q8_0 / Q4_0 blocks never straddle rows), so the
 * bytes are the same for any thread count.
 *
 * Threading: fill() starts and joins its workers inside each call; workers
 * share nothing writable but disjoint slices of the output chunk. Worker
 * errors (allocation) are reported back as flags, because qe_fail messages
 * are per thread.
 */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_write.h"
#include "pool.h"

/* qeval's model limits (lib/model.c); synth refuses what qeval cannot open. */
#define MAX_LAYERS 4096
#define MAX_WIDTH (1 << 20)
#define MAX_VOCAB (1 << 24)
#define NORM_NOISE 0.02f
#define BIAS_STD 0.1f /* qwen2 attention biases: centred on 0, unlike norms */
/* <unk>, <s>, </s> and the 256 byte tokens come before the pieces. */
#define N_FIXED 259

static const double PI = 3.14159265358979323846;

static const qe_synth_config archs[] = {
    {.name = "llama-3.2-1b",
     .note = "Meta Llama 3.2 1B shapes with llama3 RoPE scaling (rope_freqs.weight); the real "
             "tokenizer is a 128k byte-level BPE, here a SentencePiece-style vocabulary of the "
             "same size",
     .dim = 2048, .n_layers = 16, .n_heads = 32, .n_kv_heads = 8, .head_dim = 64, .n_ff = 8192,
     .n_vocab = 128256, .n_ctx = 131072, .rope_base = 500000.0, .rms_eps = 1e-5, .tied = 1,
     .rope_factor = 32.0, .rope_low_freq = 1.0, .rope_high_freq = 4.0, .rope_orig_ctx = 8192},
    {.name = "qwen2.5-0.5b",
     .note = "Qwen2.5-0.5B shapes as a llama-architecture model: the real one is GGUF arch "
             "qwen2 with Q/K/V biases (27,648 more parameters) and a byte-level BPE tokenizer",
     .dim = 896, .n_layers = 24, .n_heads = 14, .n_kv_heads = 2, .head_dim = 64, .n_ff = 4864,
     .n_vocab = 151936, .n_ctx = 32768, .rope_base = 1000000.0, .rms_eps = 1e-6, .tied = 1},
    {.name = "smollm2-135m",
     .note = "SmolLM2-135M shapes; the real tokenizer is a 49k byte-level BPE, here a "
             "SentencePiece-style vocabulary of the same size",
     .dim = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .n_ff = 1536,
     .n_vocab = 49152, .n_ctx = 8192, .rope_base = 100000.0, .rms_eps = 1e-5, .tied = 1},
    {.name = "stories260k",
     .note = "Karpathy's stories260K shapes (tinyllamas); the real file stores a copy of the "
             "embedding as output.weight, here the model is tied",
     .dim = 64, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8, .n_ff = 172,
     .n_vocab = 512, .n_ctx = 2048, .rope_base = 10000.0, .rms_eps = 1e-5, .tied = 1},
};
#define N_ARCHS (sizeof archs / sizeof archs[0])

size_t qe_synth_arch_count(void) { return N_ARCHS; }

const qe_synth_config *qe_synth_arch(size_t i) { return i < N_ARCHS ? &archs[i] : NULL; }

qe_status qe_synth_find(const char *name, qe_synth_config *out)
{
    for (size_t i = 0; i < N_ARCHS; i++)
        if (name && strcmp(name, archs[i].name) == 0) {
            *out = archs[i];
            return QE_OK;
        }
    char list[256] = "";
    for (size_t i = 0; i < N_ARCHS; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 archs[i].name);
    return qe_fail(QE_EINVAL, "unknown architecture '%s' (known: %s)", name ? name : "", list);
}

const char *qe_synth_family_name(qe_synth_family f)
{
    switch (f) {
    case QE_SYNTH_LLAMA: return "llama";
    case QE_SYNTH_QWEN2: return "qwen2";
    case QE_SYNTH_GEMMA3: return "gemma3";
    }
    return NULL;
}

qe_status qe_synth_check(const qe_synth_config *c)
{
#define RANGE(field, what, lo, hi)                                                                 \
    if (c->field < (lo) || c->field > (hi))                                                        \
        return qe_fail(QE_EINVAL, "%s %lld is out of range (expected %lld..%lld)", what,            \
                       (long long)c->field, (long long)(lo), (long long)(hi));
    RANGE(dim, "dim", 1, MAX_WIDTH);
    RANGE(n_layers, "layers", 1, MAX_LAYERS);
    RANGE(n_heads, "heads", 1, MAX_WIDTH);
    RANGE(n_kv_heads, "kv heads", 1, MAX_WIDTH);
    RANGE(head_dim, "head dim", 0, MAX_WIDTH);
    RANGE(n_ff, "ffn", 1, MAX_WIDTH);
    RANGE(n_vocab, "vocab", QE_SYNTH_MIN_VOCAB, MAX_VOCAB);
    RANGE(n_ctx, "ctx", 1, INT32_MAX);
    RANGE(family, "family", QE_SYNTH_LLAMA, QE_SYNTH_GEMMA3);
    RANGE(swa_window, "sliding window", 0, INT32_MAX);
#undef RANGE
    if (c->family != QE_SYNTH_LLAMA && c->rope_factor != 0.0)
        return qe_fail(QE_EINVAL, "llama3 RoPE scaling is written for the llama family only");
    if (c->head_dim == 0 && c->dim % c->n_heads != 0)
        return qe_fail(QE_EINVAL, "%d heads do not divide dim %d (give the head dim explicitly)",
                       c->n_heads, c->dim);
    int64_t hd = c->head_dim ? c->head_dim : c->dim / c->n_heads;
    if ((int64_t)c->n_heads * hd > MAX_WIDTH)
        return qe_fail(QE_EINVAL, "heads x head dim = %d x %lld exceeds %d", c->n_heads,
                       (long long)hd, MAX_WIDTH);
    if (c->n_heads % c->n_kv_heads != 0)
        return qe_fail(QE_EINVAL, "%d kv heads do not divide %d heads", c->n_kv_heads, c->n_heads);
    if (hd % 2 != 0)
        return qe_fail(QE_EINVAL, "head dim %lld is odd (RoPE rotates pairs)", (long long)hd);
    if (!(c->rope_base > 1.0 && isfinite(c->rope_base)))
        return qe_fail(QE_EINVAL, "RoPE base %g: expected a finite value > 1", c->rope_base);
    if (!(c->rms_eps >= 0.0 && c->rms_eps < 1.0))
        return qe_fail(QE_EINVAL, "RMSNorm epsilon %g: expected 0 <= eps < 1", c->rms_eps);
    if (c->rope_factor != 0.0 &&
        !(c->rope_factor > 0.0 && isfinite(c->rope_factor) && c->rope_low_freq > 0.0 &&
          c->rope_high_freq > c->rope_low_freq && isfinite(c->rope_high_freq) &&
          c->rope_orig_ctx >= 1))
        return qe_fail(QE_EINVAL, "llama3 RoPE scaling needs factor > 0, 0 < low_freq_factor < "
                                  "high_freq_factor and an original context >= 1");
    return QE_OK;
}

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro256ss(uint64_t st[4])
{
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return h;
}

/* x[i] = mean + std * z_i for row `row` of the tensor keyed `key`. The sum of
 * four uniform u16 has mean 131070 and standard deviation
 * sqrt(4 * (65536^2 - 1) / 12) ~= 65536 / sqrt(3). */
static void gen_row(uint64_t key, uint64_t row, int64_t n, float mean, float std, float *x)
{
    uint64_t sm = key + (row + 1) * 0x9E3779B97F4A7C15u, st[4];
    for (int k = 0; k < 4; k++)
        st[k] = splitmix64(&sm);
    const float scale = (float)(std * sqrt(3.0) / 65536.0);
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = xoshiro256ss(st);
        int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) +
                      (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48);
        /* Two statements: no compiler may fuse them into an fma. */
        float v = scale * (float)(sum - 131070);
        x[i] = mean + v;
    }
}

/* ---- the vocabulary ---- */

/* Piece i (>= N_FIXED) of the synthetic vocabulary into out (room for 16
 * bytes: at most "▁" and 6 letters below 2^24 pieces); returns its length.
 * See synth.h for the scheme. */
static size_t piece(uint64_t i, char *out)
{
    static const char meta[] = "\xe2\x96\x81"; /* U+2581 */
    uint64_t k = i - N_FIXED;
    if (k < 95) {
        if (k == 0) {
            memcpy(out, meta, 3);
            return 3;
        }
        out[0] = (char)(0x20 + k);
        return 1;
    }
    k -= 95;
    for (int len = 2;; len++) {
        /* "▁" + (len-1) letters, then len letters. */
        for (int prefixed = 1; prefixed >= 0; prefixed--) {
            int letters = len - prefixed;
            uint64_t count = 1;
            for (int j = 0; j < letters; j++)
                count *= 26;
            if (k < count) {
                size_t n = 0;
                if (prefixed) {
                    memcpy(out, meta, 3);
                    n = 3;
                }
                for (int j = letters - 1; j >= 0; j--) {
                    out[n + (size_t)j] = (char)('a' + k % 26);
                    k /= 26;
                }
                return n + (size_t)letters;
            }
            k -= count;
        }
    }
}

static qe_status add_vocab(qe_gguf_writer *w, int32_t n)
{
    qe_status st = QE_OK;
    /* Longest entry: "▁" + 6 letters (vocabularies up to 2^24) + NUL. */
    char *text = malloc((size_t)n * 16);
    const char **tok = malloc((size_t)n * sizeof *tok);
    float *score = malloc((size_t)n * sizeof *score);
    int32_t *type = malloc((size_t)n * sizeof *type);
    if (!text || !tok || !score || !type) {
        st = qe_fail(QE_ENOMEM, "synth: out of memory for a %d-token vocabulary", n);
        goto done;
    }
    static const char *special[3] = {"<unk>", "<s>", "</s>"};
    char *p = text;
    for (int32_t i = 0; i < n; i++) {
        tok[i] = p;
        if (i < 3) {
            p += sprintf(p, "%s", special[i]);
            type[i] = i == 0 ? 2 : 3; /* UNKNOWN, CONTROL */
            score[i] = 0.0f;
        } else if (i < N_FIXED) {
            p += sprintf(p, "<0x%02X>", (unsigned)(i - 3));
            type[i] = 6; /* BYTE */
            score[i] = 0.0f;
        } else {
            p += piece((uint64_t)i, p);
            type[i] = 1; /* NORMAL */
            score[i] = -(float)(i - N_FIXED);
        }
        *p++ = '\0';
    }
    if ((st = qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama")) != QE_OK ||
        (st = qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tok, (uint64_t)n)) != QE_OK ||
        (st = qe_gguf_writer_add_arr(w, "tokenizer.ggml.scores", QE_GGUF_FLOAT32, score,
                                     (uint64_t)n)) != QE_OK ||
        (st = qe_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QE_GGUF_INT32, type,
                                     (uint64_t)n)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0)) != QE_OK ||
        (st = qe_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1)) != QE_OK ||
        (st = qe_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0)) != QE_OK)
        goto done;
done:
    free(type);
    free(score);
    free(tok);
    free(text);
    return st;
}

/* ---- the plan ---- */

struct tctx {
    qe_synth *s;
    size_t index; /* into s->t */
    uint64_t key; /* SplitMix64(seed ^ FNV-1a(name)) */
    int rope;     /* rope_freqs.weight: computed, not drawn */
};

struct qe_synth {
    qe_synth_config c; /* resolved; name and note point into label/note below */
    char *label, *note;
    qe_dtype weights;
    uint64_t seed;
    qe_synth_tensor *t;
    struct tctx *ctx; /* one per tensor, handed to the writer */
    size_t n_t;
    uint64_t n_params, data_bytes;
    qe_gguf_writer *w;
    int n_threads; /* set by qe_synth_write */
};

const qe_synth_config *qe_synth_config_of(const qe_synth *s) { return &s->c; }
size_t qe_synth_n_tensors(const qe_synth *s) { return s->n_t; }
const qe_synth_tensor *qe_synth_tensor_at(const qe_synth *s, size_t i)
{
    return i < s->n_t ? &s->t[i] : NULL;
}
uint64_t qe_synth_n_params(const qe_synth *s) { return s->n_params; }
uint64_t qe_synth_data_bytes(const qe_synth *s) { return s->data_bytes; }

qe_status qe_synth_file_bytes(qe_synth *s, uint64_t *out) { return qe_gguf_writer_size(s->w, out); }

void qe_synth_free(qe_synth *s)
{
    if (!s)
        return;
    qe_gguf_writer_free(s->w);
    free(s->ctx);
    free(s->t);
    free(s->note);
    free(s->label);
    free(s);
}

/* Append a tensor to the plan (s->t has room for all of them). */
static void plan(qe_synth *s, const char *name, qe_quant_role role, int64_t ne0, int64_t ne1,
                 float std)
{
    qe_synth_tensor *t = &s->t[s->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->role = role;
    t->type = qe_quant_weight_type(role, QE_DT_F32, s->weights, ne0);
    t->n_dims = role == QE_QUANT_ROLE_OTHER ? 1 : 2;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->std = std;
    uint64_t row = 0;
    QE_ASSERT(qe_dtype_row_bytes(t->type, ne0, &row) == QE_OK); /* sizes checked already */
    t->nbytes = row * (uint64_t)ne1;
    s->data_bytes += t->nbytes;
    if (strcmp(name, "rope_freqs.weight") != 0)
        s->n_params += (uint64_t)ne0 * (uint64_t)ne1;
}

static qe_status fill(void *ctx, uint64_t row0, uint64_t n_rows, void *dst);

static qe_status add_metadata(qe_synth *s)
{
    const qe_synth_config *c = &s->c;
    qe_gguf_writer *w = s->w;
    const char *fam = qe_synth_family_name(c->family);
    char name[320];
    snprintf(name, sizeof name, "synthetic %s", c->name);
    /* "<family>.<key>" */
    char k[16][64];
    static const char *const keys[16] = {
        "block_count", "context_length", "embedding_length", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "rope.freq_base",
        "attention.layer_norm_rms_epsilon", "attention.key_length", "attention.value_length",
        "vocab_size", "rope.dimension_count", "attention.sliding_window"};
    for (int i = 0; i < 16 && keys[i]; i++)
        snprintf(k[i], sizeof k[i], "%s.%s", fam, keys[i]);
    qe_status st;
    if ((st = qe_gguf_writer_add_str(w, "general.architecture", fam)) != QE_OK ||
        (st = qe_gguf_writer_add_str(w, "general.type", "model")) != QE_OK ||
        (st = qe_gguf_writer_add_str(w, "general.name", name)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[0], (uint32_t)c->n_layers)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[1], (uint32_t)c->n_ctx)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[2], (uint32_t)c->dim)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[3], (uint32_t)c->n_ff)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[4], (uint32_t)c->n_heads)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[5], (uint32_t)c->n_kv_heads)) != QE_OK ||
        (st = qe_gguf_writer_add_f32(w, k[6], (float)c->rope_base)) != QE_OK ||
        (st = qe_gguf_writer_add_f32(w, k[7], (float)c->rms_eps)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[8], (uint32_t)c->head_dim)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[9], (uint32_t)c->head_dim)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, "general.file_type", qe_quant_ftype(s->weights))) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[10], (uint32_t)c->n_vocab)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, k[11], (uint32_t)c->head_dim)) != QE_OK ||
        (c->family == QE_SYNTH_GEMMA3 && c->swa_window > 0 &&
         (st = qe_gguf_writer_add_u32(w, k[12], (uint32_t)c->swa_window)) != QE_OK) ||
        (st = qe_gguf_writer_add_u32(w, "general.quantization_version", 2)) != QE_OK ||
        (st = add_vocab(w, c->n_vocab)) != QE_OK ||
        (st = qe_gguf_writer_add_str(w, "qeval.synth.arch", c->name)) != QE_OK ||
        (st = qe_gguf_writer_add_u64(w, "qeval.synth.seed", s->seed)) != QE_OK ||
        (st = qe_gguf_writer_add_u32(w, "qeval.synth.version", QE_SYNTH_VERSION)) != QE_OK)
        return st;
    return QE_OK;
}

qe_status qe_synth_new(const qe_synth_config *c, qe_dtype weights, uint64_t seed, qe_synth **out)
{
    *out = NULL;
    qe_status st = qe_synth_check(c);
    if (st != QE_OK)
        return st;
    if (!qe_quant_target_ok(weights))
        return qe_fail(QE_EINVAL, "weights type %s: expected f32, f16, q8_0 or q4_0",
                       qe_dtype_name(weights));
    qe_synth *s = calloc(1, sizeof *s);
    size_t max_t = 4 + 13 * (size_t)c->n_layers;
    if (!s || !(s->label = strdup(c->name ? c->name : "custom")) ||
        !(s->note = strdup(c->note ? c->note : "")) || !(s->t = calloc(max_t, sizeof *s->t)) ||
        !(s->ctx = calloc(max_t, sizeof *s->ctx))) {
        st = qe_fail(QE_ENOMEM, "synth: out of memory");
        goto done;
    }
    s->c = *c;
    s->c.name = s->label;
    s->c.note = s->note;
    if (s->c.head_dim == 0)
        s->c.head_dim = c->dim / c->n_heads;
    s->weights = weights;
    s->seed = seed;

    const int64_t d = s->c.dim, q = (int64_t)s->c.n_heads * s->c.head_dim,
                  kv = (int64_t)s->c.n_kv_heads * s->c.head_dim, ff = s->c.n_ff, v = s->c.n_vocab;
    const float embd_std = (float)(QE_SYNTH_LOGIT_STD / sqrt((double)d));
    if (s->c.rope_factor != 0.0)
        plan(s, "rope_freqs.weight", QE_QUANT_ROLE_OTHER, s->c.head_dim / 2, 1, 0.0f);
    plan(s, "token_embd.weight", s->c.tied ? QE_QUANT_ROLE_OUTPUT : QE_QUANT_ROLE_TOKEN_EMBD, d, v,
         embd_std);
    for (int l = 0; l < s->c.n_layers; l++) {
        static const struct {
            const char *suffix;
            int in_q, in_ff, out; /* input dim: q, n_ff, else dim; out: 0 d, 1 q, 2 kv, 3 ff */
        } parts[] = {
            {"attn_norm", 0, 0, -1}, {"attn_q", 0, 0, 1},      {"attn_k", 0, 0, 2},
            {"attn_v", 0, 0, 2},     {"attn_output", 1, 0, 0}, {"ffn_norm", 0, 0, -1},
            {"ffn_gate", 0, 0, 3},   {"ffn_up", 0, 0, 3},      {"ffn_down", 0, 1, 0},
        };
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
            char tn[48];
            snprintf(tn, sizeof tn, "blk.%d.%s.weight", l, parts[k].suffix);
            if (parts[k].out < 0) {
                plan(s, tn, QE_QUANT_ROLE_OTHER, d, 1, NORM_NOISE);
                continue;
            }
            int64_t in = parts[k].in_q ? q : parts[k].in_ff ? ff : d;
            int64_t outs[4] = {d, q, kv, ff};
            plan(s, tn, QE_QUANT_ROLE_MATRIX, in, outs[parts[k].out],
                 (float)(1.0 / sqrt((double)in)));
        }
        char tn[48];
        if (s->c.family == QE_SYNTH_QWEN2) {
            static const char *bias[3] = {"attn_q", "attn_k", "attn_v"};
            for (int k = 0; k < 3; k++) {
                snprintf(tn, sizeof tn, "blk.%d.%s.bias", l, bias[k]);
                plan(s, tn, QE_QUANT_ROLE_OTHER, k == 0 ? q : kv, 1, BIAS_STD);
            }
        } else if (s->c.family == QE_SYNTH_GEMMA3) {
            static const char *hnorm[2] = {"attn_q_norm", "attn_k_norm"};
            static const char *pnorm[2] = {"post_attention_norm", "post_ffw_norm"};
            for (int k = 0; k < 2; k++) {
                snprintf(tn, sizeof tn, "blk.%d.%s.weight", l, hnorm[k]);
                plan(s, tn, QE_QUANT_ROLE_OTHER, s->c.head_dim, 1, NORM_NOISE);
            }
            for (int k = 0; k < 2; k++) {
                snprintf(tn, sizeof tn, "blk.%d.%s.weight", l, pnorm[k]);
                plan(s, tn, QE_QUANT_ROLE_OTHER, d, 1, NORM_NOISE);
            }
        }
    }
    plan(s, "output_norm.weight", QE_QUANT_ROLE_OTHER, d, 1, NORM_NOISE);
    if (!s->c.tied)
        plan(s, "output.weight", QE_QUANT_ROLE_OUTPUT, d, v, embd_std);

    if ((st = qe_gguf_writer_new(3, &s->w)) != QE_OK || (st = add_metadata(s)) != QE_OK)
        goto done;
    for (size_t i = 0; i < s->n_t; i++) {
        const qe_synth_tensor *t = &s->t[i];
        uint64_t h = seed ^ fnv1a(t->name);
        s->ctx[i] = (struct tctx){s, i, splitmix64(&h), strcmp(t->name, "rope_freqs.weight") == 0};
        if ((st = qe_gguf_writer_add_tensor_fill(s->w, t->name, t->type, t->n_dims, t->ne, fill,
                                                 &s->ctx[i])) != QE_OK)
            goto done;
    }
done:
    if (st != QE_OK)
        qe_synth_free(s);
    else
        *out = s;
    return st;
}

/* ---- generation ---- */

/* llama3 divisor for RoPE pair i (Meta's reference; lib/model.c computes the
 * same from a Hugging Face config). */
static float llama3_divisor(const qe_synth_config *c, int i)
{
    double freq = pow(c->rope_base, -2.0 * i / c->head_dim), wavelen = 2 * PI / freq;
    double low_wavelen = c->rope_orig_ctx / c->rope_low_freq,
           high_wavelen = c->rope_orig_ctx / c->rope_high_freq;
    if (wavelen < high_wavelen)
        return 1.0f;
    if (wavelen > low_wavelen)
        return (float)c->rope_factor;
    double smooth = (c->rope_orig_ctx / wavelen - c->rope_low_freq) /
                    (c->rope_high_freq - c->rope_low_freq);
    return (float)(1.0 / ((1.0 - smooth) / c->rope_factor + smooth));
}

/* Rows [row0 + i0, row0 + i1) of a fill into its buffer (a qe_split range). */
struct fill_job {
    const struct tctx *tc;
    uint64_t row0;
    unsigned char *dst;
};

static int fill_rows(void *ctx, int64_t i0, int64_t i1)
{
    const struct fill_job *j = ctx;
    const qe_synth *s = j->tc->s;
    const qe_synth_tensor *t = &s->t[j->tc->index];
    size_t row_bytes = (size_t)(t->nbytes / (uint64_t)t->ne[1]);
    float *x = malloc((size_t)t->ne[0] * sizeof *x);
    if (!x)
        return QE_ENOMEM;
    /* Vectors are norms (around 1) except biases (around 0). */
    int norm = t->role == QE_QUANT_ROLE_OTHER && !strstr(t->name, ".bias");
    for (int64_t r = i0; r < i1; r++) {
        if (j->tc->rope)
            for (int64_t i = 0; i < t->ne[0]; i++)
                x[i] = llama3_divisor(&s->c, (int)i);
        else
            gen_row(j->tc->key, j->row0 + (uint64_t)r, t->ne[0], norm ? 1.0f : 0.0f, t->std, x);
        qe_quant_quantize_row(t->type, x, t->ne[0], j->dst + (size_t)r * row_bytes);
    }
    free(x);
    return 0;
}

/* The writer's fill callback: rows [row0, row0 + n_rows) of one tensor, on
 * the writer's threads (the same bytes for any count: each row by itself). */
static qe_status fill(void *ctx, uint64_t row0, uint64_t n_rows, void *dst)
{
    const struct tctx *tc = ctx;
    const qe_synth *s = tc->s;
    const qe_synth_tensor *t = &s->t[tc->index];
    const int nt = (int64_t)(n_rows * (uint64_t)t->ne[0]) < QE_SPLIT_MIN ? 1 : s->n_threads;
    struct fill_job j = {tc, row0, dst};
    if (qe_split((int64_t)n_rows, nt, fill_rows, &j))
        return qe_fail(QE_ENOMEM, "out of memory for a row of %lld elements",
                       (long long)t->ne[0]);
    return QE_OK;
}

qe_status qe_synth_write(qe_synth *s, const char *path, int n_threads)
{
    if (n_threads < 1)
        n_threads = qe_split_cpus();
    s->n_threads = n_threads > QE_SPLIT_MAX ? QE_SPLIT_MAX : n_threads;
    return qe_gguf_writer_write_file(s->w, path);
}
