/* model.h - a decoder-only transformer: hyper-parameters and weight views.
 *
 * Architectures (qe_arch), each a set of switches in qe_hparams that every
 * consumer reads, over one forward pass (below):
 *   llama   the base case;
 *   qwen2   llama plus Q/K/V biases; RoPE on halves (llama.cpp's converter
 *           does not permute Qwen2's Q/K rows: GGML NEOX rope);
 *   gemma3  embedding scaled by sqrt(dim); per-head RMSNorm of q and k before
 *           RoPE; RMSNorm of the attention and FFN outputs before each
 *           residual add; GELU (tanh approximation) in the gated FFN;
 *           sliding-window attention on local layers (llama.cpp's pattern:
 *           layer l is local iff l % 6 < 5, window from
 *           gemma3.attention.sliding_window; no window key or 0 = every layer
 *           global) with RoPE base 10000 and no position scaling on local
 *           layers, rope.freq_base and the file's (linear) scaling on global
 *           ones; attention scale 1/sqrt(head_dim), except the 62-layer (27B)
 *           model: 1/sqrt(dim / n_heads) (query_pre_attn_scalar); logits
 *           soft-capped only when gemma3.final_logit_softcapping is present
 *           and > 0 (Gemma 3 checkpoints have none). Gemma's RMSNorm
 *           multiplies by (1 + w): llama.cpp's converter stores 1 + w in the
 *           GGUF, so the file's norm weights are used as they are. RoPE on
 *           halves.
 *
 * Sources:
 *   - a GGUF file whose general.architecture is "llama", "qwen2" or
 *     "gemma3" (any other string is QE_EUNSUPPORTED, and the message names
 *     it); keys are read under the architecture's prefix ("gemma3.block_count");
 *   - a Hugging Face directory holding config.json (model_type "llama", or
 *     no model_type and architectures ["LlamaForCausalLM"]) and a single
 *     model.safetensors; or the path of a .safetensors file, whose directory
 *     holds config.json. (Llama only.)
 *
 * Weights are qe_tensor views into the mmap'ed file: nothing is copied, and
 * the views live until qe_model_close. Every tensor's shape is checked
 * against the hyper-parameters at open (the message names the tensor, the
 * expected and the actual shape).
 *
 * The forward pass every consumer (lib/ref.c, lib/engine.c) computes; the
 * bracketed steps run only when the switch named is on:
 *   x = token_embd[token] * embd_scale                          (dim)
 *   for each layer l:
 *     h = rmsnorm(x, attn_norm)       rmsnorm(v,w)_i = v_i / sqrt(mean(v^2) + rms_eps) * w_i
 *     q = wq h, k = wk h, v = wv h    (n_heads | n_kv_heads) x head_dim
 *     [attn_bias: q += bq, k += bk, v += bv]
 *     [qk_norm: each head of q = rmsnorm(head, attn_q_norm), of k with attn_k_norm]
 *     rope(q), rope(k) per head, at position pos (see qe_rope_layout), with
 *           the layer's base and position scale (qe_model_layer_rope)
 *     a_h = softmax_j(q_h . k_{g(h),j} * attn_scale) v_{g(h),j}
 *           over j <= pos, and j > pos - swa_window on sliding layers
 *           (qe_model_layer_swa), with g(h) = h / (n_heads / n_kv_heads)
 *     o = wo a;  [post_norms: o = rmsnorm(o, attn_post_norm)];  x += o
 *     h = rmsnorm(x, ffn_norm)
 *     f = w_down (act(w_gate h) * (w_up h))   act: silu(z) = z / (1 + e^-z), or
 *           gelu_tanh(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
 *     [post_norms: f = rmsnorm(f, ffn_post_norm)];  x += f
 *   logits = output (rmsnorm(x, output_norm))                    (n_vocab)
 *   [final_softcap > 0: logits = final_softcap * tanh(logits / final_softcap)]
 *
 * RoPE: for pair index i in 0 .. n_rot/2 - 1 and position pos,
 *   theta_i = (pos * rope_freq_scale) * rope_base^(-2i / n_rot) / f_i
 * where f_i = rope_freqs[i] when weights.rope_freqs is present, else 1.
 * The pair (a, b) rotated by theta_i is chosen by rope_layout:
 *   QE_ROPE_PAIRS  (a, b) = (x[2i], x[2i+1])          GGUF "llama": llama.cpp's
 *                  converter permuted the Q/K rows of the HF checkpoint so that
 *                  adjacent elements form the pairs;
 *   QE_ROPE_HALVES (a, b) = (x[i], x[i + n_rot/2])     Hugging Face checkpoints,
 *                  GGUF "qwen2" and "gemma3".
 *   a' = a cos(theta) - b sin(theta);  b' = a sin(theta) + b cos(theta).
 * Dimensions n_rot .. head_dim-1 of a head are not rotated. Weights are
 * never permuted at load: consumers apply the layout the model states.
 *
 * Threading: a model is immutable after open/build; any number of threads
 * may read it (views included) concurrently.
 */
#ifndef QE_MODEL_H
#define QE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"
#include "tensor.h"

typedef struct qe_model qe_model;

typedef enum qe_model_format {
    QE_MODEL_GGUF = 0, /* one .gguf file */
    QE_MODEL_HF = 1    /* Hugging Face directory: config.json + model.safetensors */
} qe_model_format;

typedef enum qe_rope_layout {
    QE_ROPE_PAIRS = 0, /* rotate (x[2i], x[2i+1]): GGUF llama (GGML rope mode 0) */
    QE_ROPE_HALVES = 1 /* rotate (x[i], x[i+n_rot/2]): HF / GPT-NeoX style */
} qe_rope_layout;

typedef enum qe_rope_scaling {
    QE_ROPE_SCALING_NONE = 0,
    QE_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_factor */
    QE_ROPE_SCALING_LLAMA3 = 2  /* per-frequency divisors, in weights.rope_freqs */
} qe_rope_scaling;

typedef enum qe_arch {
    QE_ARCH_LLAMA = 0,
    QE_ARCH_QWEN2 = 1,
    QE_ARCH_GEMMA3 = 2
} qe_arch;

typedef enum qe_ffn_act {
    QE_ACT_SILU = 0,     /* z / (1 + e^-z) */
    QE_ACT_GELU_TANH = 1 /* z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) */
} qe_ffn_act;

typedef struct qe_hparams {
    int32_t n_vocab;     /* rows of token_embd and output */
    int32_t dim;         /* residual stream width (n_embd, hidden_size) */
    int32_t n_layers;    /* transformer blocks */
    int32_t n_heads;     /* query heads */
    int32_t n_kv_heads;  /* key/value heads; divides n_heads */
    int32_t head_dim;    /* per head; n_heads * head_dim need not equal dim */
    int32_t n_rot;       /* leading dims of each head that RoPE rotates; even, <= head_dim */
    int32_t n_ff;        /* FFN hidden width (intermediate_size) */
    int32_t n_ctx_train; /* context length the model was trained with */
    float rms_eps;       /* added to mean(x^2) in RMSNorm */
    float rope_base;     /* theta base (rope_theta, rope.freq_base) */
    qe_rope_layout rope_layout;
    qe_rope_scaling rope_scaling; /* as recorded in the file */
    float rope_factor;            /* the file's scaling factor; 1 when none */
    float rope_freq_scale;        /* multiplies positions: 1/rope_factor for LINEAR, else 1 */
    int32_t bos_id;      /* -1 when the file does not say */
    int32_t eos_id;      /* -1 when the file does not say */
    int tied;            /* 1: output views token_embd (the file has no output matrix,
                            or its bytes equal the embedding's) */
    /* Architecture switches (see the top of this file). Zero everywhere is
     * plain Llama: qe_model_build turns embd_scale 0 into 1, attn_scale 0
     * into 1/sqrt(head_dim), rope_base_swa 0 into rope_base and
     * rope_freq_scale_swa 0 into rope_freq_scale. */
    qe_arch arch;
    float embd_scale;          /* multiplies the token embedding */
    float attn_scale;          /* multiplies q . k */
    qe_ffn_act ffn_act;        /* gate activation */
    int attn_bias;             /* 1: layers have bq, bk, bv */
    int qk_norm;               /* 1: layers have attn_q_norm, attn_k_norm */
    int post_norms;            /* 1: layers have attn_post_norm, ffn_post_norm */
    int32_t swa_window;        /* 0: no sliding window; else local layers see
                                  positions pos - swa_window + 1 .. pos */
    int32_t swa_pattern;       /* layer l is local iff swa_window > 0 and
                                  (swa_pattern == 0 or l % swa_pattern < swa_pattern - 1) */
    float rope_base_swa;       /* RoPE base of local layers */
    float rope_freq_scale_swa; /* position scale of local layers */
    float final_softcap;       /* 0: none; else logits = c tanh(logits / c) */
} qe_hparams;

typedef struct qe_layer {
    qe_tensor attn_norm; /* ne {dim, 1} */
    qe_tensor wq;        /* ne {dim, n_heads * head_dim} */
    qe_tensor wk;        /* ne {dim, n_kv_heads * head_dim} */
    qe_tensor wv;        /* ne {dim, n_kv_heads * head_dim} */
    qe_tensor wo;        /* ne {n_heads * head_dim, dim} */
    qe_tensor ffn_norm;  /* ne {dim, 1} */
    qe_tensor w_gate;    /* ne {dim, n_ff}  (w1) */
    qe_tensor w_up;      /* ne {dim, n_ff}  (w3) */
    qe_tensor w_down;    /* ne {n_ff, dim}  (w2) */
    /* Present only when the switch named is on (data NULL otherwise). */
    qe_tensor bq;             /* ne {n_heads * head_dim, 1}     attn_bias */
    qe_tensor bk;             /* ne {n_kv_heads * head_dim, 1}  attn_bias */
    qe_tensor bv;             /* ne {n_kv_heads * head_dim, 1}  attn_bias */
    qe_tensor attn_q_norm;    /* ne {head_dim, 1}  qk_norm (shared by every head) */
    qe_tensor attn_k_norm;    /* ne {head_dim, 1}  qk_norm */
    qe_tensor attn_post_norm; /* ne {dim, 1}  post_norms */
    qe_tensor ffn_post_norm;  /* ne {dim, 1}  post_norms */
} qe_layer;

typedef struct qe_weights {
    qe_tensor token_embd;  /* ne {dim, n_vocab}: row t is token t's embedding */
    qe_tensor output_norm; /* ne {dim, 1} */
    qe_tensor output;      /* ne {dim, n_vocab}; equals token_embd (same data) when tied */
    qe_tensor rope_freqs;  /* ne {n_rot/2, 1} theta divisors; data NULL when absent */
    qe_layer *layers;      /* [n_layers] */
} qe_weights;

/* Open a model: `path` is a .gguf file or a Hugging Face directory (see the
 * top of this file). On success *out owns the mapping and the views.
 * QE_ECORRUPT for malformed files (message names file, offset/tensor, rule),
 * QE_EUNSUPPORTED for other architectures, weight types without a row
 * converter, or RoPE scalings qeval does not compute; QE_EIO when unreadable. */
qe_status qe_model_open(const char *path, qe_model **out);

/* A model over caller-owned weights (tests, format conversions). hp and the
 * qe_weights struct (layers array included) are copied; the tensor data and
 * names are borrowed and must outlive the model. hp->tied = 1 requires
 * w->output to view the same data as w->token_embd. Shapes, types and
 * hyper-parameters are checked exactly as qe_model_open checks a file. */
qe_status qe_model_build(const qe_hparams *hp, const qe_weights *w, const char *name,
                         qe_model **out);

void qe_model_close(qe_model *m); /* NULL is fine */

const qe_hparams *qe_model_hparams(const qe_model *m);
const qe_weights *qe_model_weights(const qe_model *m);
qe_model_format qe_model_format_of(const qe_model *m);
/* The path given to qe_model_open (a directory for HF), or the build name. */
const char *qe_model_path(const qe_model *m);
/* general.name, or the directory / file base name. Never NULL. */
const char *qe_model_name(const qe_model *m);
/* The GGUF handle (vocabulary for the tokenizer), NULL for HF/built models. */
const qe_gguf *qe_model_gguf(const qe_model *m);
/* Number of weight elements (tied output counted once). */
uint64_t qe_model_n_params(const qe_model *m);
/* Bytes of all weight tensors as stored (tied output counted once). */
uint64_t qe_model_weight_bytes(const qe_model *m);

/* SHA-256 of the weights file's bytes: the .gguf file, or model.safetensors
 * of an HF directory (so it equals `sha256sum FILE`). Computed on each call
 * from the mapping (about 1-2 s per GB): callers keep the result.
 * QE_EINVAL for built models, which have no file. */
qe_status qe_model_sha256(const qe_model *m, uint8_t out[32]);

/* A few lines for humans: source, architecture, shapes, RoPE, weight types.
 * Writes at most cap bytes including the NUL (truncates). */
void qe_model_describe(const qe_model *m, char *buf, size_t cap);

/* 1 if layer l attends through the sliding window (see qe_hparams). */
int qe_model_layer_swa(const qe_hparams *hp, int l);
/* RoPE base and position scale of layer l: rope_base_swa / rope_freq_scale_swa
 * on local layers, rope_base / rope_freq_scale elsewhere. */
void qe_model_layer_rope(const qe_hparams *hp, int l, float *base, float *freq_scale);

const char *qe_model_arch_name(qe_arch a);                 /* "llama", "qwen2", "gemma3" */
const char *qe_model_rope_layout_name(qe_rope_layout l);   /* "pairs", "halves" */
const char *qe_model_rope_scaling_name(qe_rope_scaling s); /* "none", "linear", "llama3" */

#endif
