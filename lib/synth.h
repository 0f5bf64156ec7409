/* synth.h - synthetic Llama models with the exact tensor shapes of real
 * architectures, for speed work on machines where real weights cannot be
 * carried (`qeval synth`).
 *
 * The file written is a GGUF v3 model of architecture "llama" that
 * qe_model_open and llama.cpp load like a converted checkpoint (the
 * `family` field writes "qwen2" or "gemma3" instead: see below):
 *   metadata   general.architecture "llama", general.name "synthetic <arch>",
 *              general.file_type (qe_quant_ftype), general.quantization_version
 *              2, llama.{block_count, context_length, embedding_length,
 *              feed_forward_length, attention.head_count, head_count_kv,
 *              key_length, value_length, layer_norm_rms_epsilon,
 *              rope.freq_base, rope.dimension_count, vocab_size},
 *              qeval.synth.{arch, seed, version}, and a tokenizer (below).
 *   tensors    rope_freqs.weight (only with llama3 RoPE scaling), token_embd,
 *              blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
 *              ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, and
 *              output.weight unless the model is tied (then llama.cpp and
 *              qeval use the embedding, as for a converted tied checkpoint).
 *              Types follow qe_quant_weight_type with the generated f32
 *              values as source: norms and rope_freqs f32; matrices the
 *              chosen type; the output matrix (or the tied embedding) q8_0
 *              under q4_0; rows that are not whole 32-blocks f16 under
 *              q8_0/q4_0.
 *
 * Families other than llama (qe_synth_family): the keys are written under
 * the family's prefix ("qwen2.block_count") and general.architecture names
 * it; rope_freqs (llama3 scaling) is refused. qwen2 adds
 * blk.N.attn_{q,k,v}.bias (f32, values 0.1 z, one row each). gemma3 adds
 * blk.N.attn_{q,k}_norm (head_dim), blk.N.post_attention_norm and
 * blk.N.post_ffw_norm (dim), norms as below (a converter stores Gemma's
 * 1 + w, so 1 + noise is what a real file holds too), and
 * gemma3.attention.sliding_window = swa_window when > 0.
 *
 * Values (deterministic: a function of seed, tensor name and row only, so
 * identical for any thread count and any chunking of the writes):
 *   z        approximately standard normal: the sum of four uniform 16-bit
 *            integers of one xoshiro256** draw, centred and scaled to unit
 *            variance (Irwin-Hall, tails cut at 3.46 sigma). Integer sums and
 *            one float multiply, so the bytes do not depend on libm. Row r of
 *            tensor T draws from xoshiro256** seeded by SplitMix64 from
 *            SplitMix64(seed ^ FNV-1a(T)) + (r + 1) * 0x9E3779B97F4A7C15.
 *   matrices z / sqrt(ne0) (fan-in scaling, "N(0, 1/sqrt(in_dim))"): each
 *            projection maps a unit-RMS input to a unit-RMS output, so
 *            activations stay O(1) through any number of layers.
 *   token_embd / output
 *            z * QE_SYNTH_LOGIT_STD / sqrt(dim): logits (a normalized hidden
 *            state times the output matrix) then have a standard deviation
 *            near QE_SYNTH_LOGIT_STD, which puts the next-token entropy well
 *            inside (0, log n_vocab) like a trained model's, instead of the
 *            nearly uniform softmax fan-in scaling gives (std 1).
 *   norms    1 + 0.02 z.
 *   rope_freqs  llama3 divisors from the scaling parameters (Meta's
 *            formula, as llama.cpp's converter computes them).
 *
 * Tokenizer: tokenizer.ggml.model "llama" (SentencePiece-style, what qeval's
 * and llama.cpp's SPM tokenizers read) with exactly n_vocab pieces:
 *   0 <unk> (type 2, unknown), 1 <s> (BOS, type 3), 2 </s> (EOS, type 3),
 *   3..258 <0x00>..<0xFF> (type 6, byte fallback), all with score 0; then
 *   "▁" (U+2581) and the 94 printable ASCII characters '!'..'~'; then by
 *   length L = 2, 3, ...: "▁" + every lower-case word of L-1 letters, then
 *   every lower-case word of L letters, each group in alphabetical order,
 *   until n_vocab pieces (type 1, normal). Piece i >= 259 scores -(i - 259).
 *   Every piece of length L splits into a piece of length L-1 and a letter,
 *   so the SPM merges can reach every piece; any text round-trips (bytes
 *   without a piece fall back to <0xNN>). BOS is added, EOS is not.
 *   (Real Llama 3 and Qwen 2.5 use byte-level BPE vocabularies; tokenizer
 *   speed is not what synthetic models are for.)
 *
 * Threading: qe_synth_write runs n_threads generator threads of its own; a
 * handle is used by one calling thread at a time. The table is immutable.
 */
#ifndef QE_SYNTH_H
#define QE_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "quant.h"
#include "status.h"

/* Bumped whenever the bytes written for a given (config, type, seed) change. */
#define QE_SYNTH_VERSION 1
#define QE_SYNTH_LOGIT_STD 2.0
/* Smallest vocabulary: <unk>, <s>, </s>, the 256 byte tokens and "▁" (without
 * a "▁" piece, spaces would decode as the bytes of U+2581). */
#define QE_SYNTH_MIN_VOCAB 260
#define QE_SYNTH_DEFAULT_SEED 20240917u

typedef enum qe_synth_family {
    QE_SYNTH_LLAMA = 0,
    QE_SYNTH_QWEN2 = 1, /* + Q/K/V biases */
    QE_SYNTH_GEMMA3 = 2 /* + q/k norms, post norms, sliding window */
} qe_synth_family;

typedef struct qe_synth_config {
    const char *name;   /* table name, or a label such as "stories260k:dim=32"; recorded
                           as qeval.synth.arch and in general.name. Borrowed. */
    const char *note;   /* how the real model differs from this synthetic one */
    int32_t dim;        /* residual width (n_embd, hidden_size) */
    int32_t n_layers;   /* transformer blocks */
    int32_t n_heads;    /* query heads */
    int32_t n_kv_heads; /* key/value heads; divides n_heads */
    int32_t head_dim;   /* per head; 0 = dim / n_heads (n_heads must divide dim) */
    int32_t n_ff;       /* FFN hidden width (intermediate_size) */
    int32_t n_vocab;    /* >= QE_SYNTH_MIN_VOCAB */
    int32_t n_ctx;      /* llama.context_length (max_position_embeddings) */
    double rope_base;   /* rope_theta */
    double rms_eps;     /* RMSNorm epsilon */
    int tied;           /* 1: no output.weight; the embedding is the output matrix */
    /* llama3 RoPE scaling (rope_freqs.weight); rope_factor 0 means none. */
    double rope_factor, rope_low_freq, rope_high_freq;
    int32_t rope_orig_ctx; /* original_max_position_embeddings */
    qe_synth_family family; /* GGUF architecture written (every table entry: llama) */
    int32_t swa_window;     /* gemma3: attention.sliding_window; 0 writes no key */
} qe_synth_config;

/* "llama", "qwen2", "gemma3"; NULL for a value outside the enum. */
const char *qe_synth_family_name(qe_synth_family f);

/* The architecture table: llama-3.2-1b, qwen2.5-0.5b, smollm2-135m,
 * stories260k. bench/archs.json holds a copy that tests compare. */
size_t qe_synth_arch_count(void);
const qe_synth_config *qe_synth_arch(size_t i); /* NULL when i >= count */

/* Copy the table entry called `name` to *out. QE_EINVAL for an unknown name;
 * the message lists the known ones. */
qe_status qe_synth_find(const char *name, qe_synth_config *out);

/* QE_OK if c describes a model synth can write; else QE_EINVAL naming the
 * first rule broken: sizes >= 1 and within qeval's model limits (dim, n_ff
 * and n_heads * head_dim <= 2^20, n_layers <= 4096, n_vocab in
 * QE_SYNTH_MIN_VOCAB..2^24), n_heads dividing dim when head_dim is 0,
 * n_kv_heads dividing n_heads, an even head_dim (RoPE rotates pairs), a
 * finite rope_base > 1, 0 <= rms_eps < 1, sane llama3 scaling parameters
 * (llama family only), a known family, swa_window >= 0. */
qe_status qe_synth_check(const qe_synth_config *c);

/* One tensor of the plan, in file order. */
typedef struct qe_synth_tensor {
    char name[48];      /* GGUF tensor name */
    qe_dtype type;      /* as written */
    uint32_t n_dims;    /* 1 (vectors) or 2 (matrices) */
    int64_t ne[2];      /* ne[0] = row length (input dim), ne[1] = rows; 1 for vectors */
    uint64_t nbytes;    /* bytes of data */
    qe_quant_role role; /* role given to qe_quant_weight_type */
    float std;          /* standard deviation of the values (of the noise around 1 for
                           norms); 0 for rope_freqs */
} qe_synth_tensor;

typedef struct qe_synth qe_synth;

/* Plan the model c (checked with qe_synth_check; head_dim resolved) with
 * matrices of type `weights` (f32, f16, q8_0 or q4_0; QE_EINVAL otherwise)
 * and values from `seed`. Builds the metadata and vocabulary (a few MB for
 * 150k tokens) but no tensor data: planning a 1B model is instant.
 * c->name and c->note are copied. */
qe_status qe_synth_new(const qe_synth_config *c, qe_dtype weights, uint64_t seed, qe_synth **out);
void qe_synth_free(qe_synth *s); /* NULL is fine */

/* The resolved configuration (head_dim filled in). */
const qe_synth_config *qe_synth_config_of(const qe_synth *s);
size_t qe_synth_n_tensors(const qe_synth *s);
const qe_synth_tensor *qe_synth_tensor_at(const qe_synth *s, size_t i); /* NULL past the end */
/* Weight elements: every tensor but rope_freqs (a buffer, not a parameter,
 * in Hugging Face's count); a tied embedding once. */
uint64_t qe_synth_n_params(const qe_synth *s);
/* Bytes of all tensor data, alignment padding excluded. */
uint64_t qe_synth_data_bytes(const qe_synth *s);
/* Exact size of the file qe_synth_write produces. */
qe_status qe_synth_file_bytes(qe_synth *s, uint64_t *out);

/* Generate and write the model to `path` atomically (temporary file +
 * rename), streaming: memory stays at a few 16 MiB chunks whatever the model
 * size. n_threads generator threads (< 1: qe_split_cpus, pool.h);
 * the bytes do not depend on it. QE_EIO naming the path when it cannot be
 * written (path untouched), QE_ENOMEM. */
qe_status qe_synth_write(qe_synth *s, const char *path, int n_threads);

#endif
