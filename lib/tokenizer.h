/* tokenizer.h - text <-> token ids, identical to the tools perplexity is
 * compared with (llama.cpp for GGUF files, Hugging Face `tokenizers` for
 * tokenizer.json).
 *
 * Kinds (qe_tokenizer_kind):
 *   SPM   GGUF tokenizer.ggml.model = "llama": SentencePiece-style BPE over
 *         piece scores (llama.cpp's llm_tokenizer_spm). The text gets a
 *         dummy-prefix space (tokenizer.ggml.add_space_prefix, default on)
 *         at its start and after every special token, spaces become U+2581
 *         "▁", the highest-scoring adjacent pair that forms a vocabulary
 *         piece merges first (leftmost on ties), and a final symbol that is
 *         not a piece falls back to its bytes as <0xNN> tokens.
 *   BPE   GGUF tokenizer.ggml.model = "gpt2": byte-level BPE with
 *         tokenizer.ggml.merges (rank = index) after the pre-tokenizer that
 *         tokenizer.ggml.pre names splits the text into words:
 *           gpt-2              's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 *                              ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *           llama-bpe, llama3, llama-v3
 *                              (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
 *                              \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
 *                              \s+(?!\S)|\s+   (a whole word that is a token is
 *                              kept whole: llama.cpp's ignore_merges)
 *           qwen2, deepseek-r1-qwen
 *                              the llama3 pattern with \p{N} instead of \p{N}{1,3}
 *           smollm             every \p{N} alone, then the gpt-2 pattern
 *         The patterns are hand-coded state machines (tok_pretok.c), checked
 *         against `tokenizers` running the real regexes. A byte
 *         whose byte-alphabet character is not in the vocabulary produces no
 *         token (llama.cpp drops it; SmolLM2 lacks 21 such bytes: six control
 *         bytes and bytes that valid UTF-8 never or hardly uses).
 *   HF    Hugging Face tokenizer.json with a "BPE" model: normalizers
 *         Sequence/Prepend/Replace(String)/null, pre-tokenizers
 *         Metaspace/ByteLevel/Digits/Split(known patterns)/Sequence/null,
 *         byte_fallback, unk fusing, added tokens (lstrip/rstrip), and a
 *         TemplateProcessing post-processor that says whether BOS/EOS go in.
 * Anything else (another tokenizer.ggml.model, an unknown pre-tokenizer or
 * normalizer) is QE_EUNSUPPORTED; a malformed vocabulary (missing key, ids
 * out of range, duplicate piece, a merge naming a missing token, invalid
 * UTF-8 in a piece) is QE_ECORRUPT naming the key and index.
 *
 * Special tokens. Before the model runs, the text is cut at special-token
 * texts: user-defined tokens always, control tokens (BOS, <|im_end|>, ...)
 * only with QE_TOK_PARSE_SPECIAL. Datasets are tokenized without it, as
 * llama.cpp's perplexity does. GGUF kinds follow llama.cpp (one token at a
 * time, longest first; texts such as <|end|> or <|endoftext|> count as control
 * tokens whatever their type; Phi-3's special tokens swallow the whitespace
 * after them). HF follows `tokenizers` (leftmost-longest over all added
 * tokens, lstrip/rstrip, normalized ones matched after normalization); added
 * tokens with "special": true are control tokens, so QE_TOK_PARSE_SPECIAL
 * gives what `tokenizers` gives by default.
 *
 * Invalid UTF-8 in the input is not an error: each invalid byte is a
 * symbol of its own. SPM spells it with its <0xNN> byte token (llama.cpp
 * cuts at the length the lead byte announces instead, which differs only
 * for invalid input); byte-level BPE gives it no character class, and its
 * byte alphabet encodes it losslessly (llama.cpp would substitute U+FFFD);
 * HF looks for a <0xNN> token (byte_fallback), else emits UNK. So
 * decode(encode(x)) == x for any bytes x, unless an UNK is produced, a byte
 * is dropped (see BPE), x holds special-token texts, or (SPM, HF Metaspace)
 * x holds U+2581 itself, which decodes as a space.
 *
 * Decoding concatenates each token's bytes (GPT-2 byte alphabet undone,
 * "▁" -> " ", <0xNN> -> the byte); control and unknown tokens produce
 * nothing unless QE_TOK_RENDER_SPECIAL. The dummy-prefix rule: when the
 * tokenizer adds a dummy prefix (SPM with add_space_prefix, HF with a
 * Prepend("▁") normalizer, a prepending Metaspace or ByteLevel with
 * add_prefix_space), one leading space of the decoded text is removed. The
 * tokenizer.json "decoder" section is not read: this rule and the piece
 * mapping above are what decoding does for every supported tokenizer.
 *
 * Threading: a handle is immutable after construction; any number of
 * threads may encode/decode with it at once (scratch memory is per call).
 */
#ifndef QE_TOKENIZER_H
#define QE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

typedef struct qe_tokenizer qe_tokenizer;

typedef enum qe_tokenizer_kind {
    QE_TOKENIZER_SPM = 1, /* GGUF "llama" */
    QE_TOKENIZER_BPE = 2, /* GGUF "gpt2" (byte-level) */
    QE_TOKENIZER_HF = 3   /* tokenizer.json, model type BPE */
} qe_tokenizer_kind;

/* Token attributes (GGUF tokenizer.ggml.token_type numbering). */
typedef enum qe_tokenizer_attr {
    QE_TOKATTR_UNDEFINED = 0,
    QE_TOKATTR_NORMAL = 1,
    QE_TOKATTR_UNKNOWN = 2,
    QE_TOKATTR_CONTROL = 3,
    QE_TOKATTR_USER_DEFINED = 4,
    QE_TOKATTR_UNUSED = 5,
    QE_TOKATTR_BYTE = 6
} qe_tokenizer_attr;

/* Flags for encode and decode. */
enum {
    QE_TOK_ADD_SPECIAL = 1 << 0,    /* encode: add BOS/EOS as the model says (add_bos/add_eos) */
    QE_TOK_PARSE_SPECIAL = 1 << 1,  /* encode: control-token texts in the input become those tokens */
    QE_TOK_RENDER_SPECIAL = 1 << 2  /* decode: control tokens produce their text */
};

/* Largest vocabulary accepted (ids must fit comfortably in int32). */
#define QE_TOKENIZER_MAX_VOCAB (1u << 24)

/* Growable id buffer: encode appends to it. Start from {0}; free with
 * qe_tokenizer_ids_free. */
typedef struct qe_tokenizer_ids {
    int32_t *v;   /* [n] token ids */
    size_t n;     /* ids held */
    size_t cap;   /* allocated */
} qe_tokenizer_ids;

void qe_tokenizer_ids_free(qe_tokenizer_ids *ids); /* releases v, zeroes the struct */
/* Append one id (QE_ENOMEM on failure, ids unchanged). */
qe_status qe_tokenizer_ids_push(qe_tokenizer_ids *ids, int32_t id);

/* ---- construction ---- */

/* From a GGUF file's tokenizer.ggml.* metadata. The tokenizer copies what it
 * needs; g may be closed afterwards. */
qe_status qe_tokenizer_from_gguf(const qe_gguf *g, qe_tokenizer **out);
/* From a Hugging Face tokenizer.json. BOS/EOS ids come from its
 * post-processor, else from tokenizer_config.json (bos_token, eos_token) or
 * config.json (bos_token_id, eos_token_id) beside it when present. */
qe_status qe_tokenizer_from_hf_json(const char *path, qe_tokenizer **out);
/* `path` is a .gguf file, a tokenizer.json, or a directory holding
 * tokenizer.json (a Hugging Face model directory). */
qe_status qe_tokenizer_open(const char *path, qe_tokenizer **out);
void qe_tokenizer_close(qe_tokenizer *t); /* NULL is fine */

/* ---- encoding ---- */

/* Tokenize text[0..len) (any bytes; NUL is an ordinary byte) and append the
 * ids to *out. flags: QE_TOK_ADD_SPECIAL, QE_TOK_PARSE_SPECIAL. On failure
 * (QE_ENOMEM, or QE_ECORRUPT when the vocabulary cannot express a byte)
 * out->n is unchanged. */
qe_status qe_tokenizer_encode(const qe_tokenizer *t, const char *text, size_t len, unsigned flags,
                              qe_tokenizer_ids *out);
/* Same into a caller buffer of cap ids: *n_out receives the count; if it
 * exceeds cap, returns QE_ERANGE and buf holds the first cap ids. */
qe_status qe_tokenizer_encode_buf(const qe_tokenizer *t, const char *text, size_t len,
                                  unsigned flags, int32_t *buf, size_t cap, size_t *n_out);

/* ---- decoding ---- */

/* Text of ids[0..n) into a malloc'ed buffer (*text, NUL-terminated, caller
 * frees; *len excludes the NUL). flags: QE_TOK_RENDER_SPECIAL. QE_EINVAL
 * naming the position if an id is out of range. */
qe_status qe_tokenizer_decode(const qe_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                              char **text, size_t *len);
/* Bytes token `id` stands for in decoded text (before the dummy-prefix
 * rule): "▁the" -> " the", <0x0A> -> "\n", control tokens -> their text.
 * Points into the handle. NULL (and *len = 0) if id is out of range. */
const char *qe_tokenizer_piece(const qe_tokenizer *t, int32_t id, size_t *len);
/* The vocabulary entry itself ("▁the", "Ġthe", "<0x0A>"); NULL if out of range. */
const char *qe_tokenizer_token_text(const qe_tokenizer *t, int32_t id, size_t *len);
/* Id of a vocabulary entry given its exact text, or -1. */
int32_t qe_tokenizer_find(const qe_tokenizer *t, const char *text, size_t len);

/* ---- properties ---- */
qe_tokenizer_kind qe_tokenizer_kind_of(const qe_tokenizer *t);
const char *qe_tokenizer_kind_name(const qe_tokenizer *t); /* "spm", "bpe", "hf-bpe" */
/* Pre-tokenizer / normalizer summary ("gpt-2", "smollm", "prepend+replace", ...). */
const char *qe_tokenizer_pre_name(const qe_tokenizer *t);
uint32_t qe_tokenizer_n_vocab(const qe_tokenizer *t);
int32_t qe_tokenizer_bos(const qe_tokenizer *t); /* -1 when there is none */
int32_t qe_tokenizer_eos(const qe_tokenizer *t); /* -1 when there is none */
int32_t qe_tokenizer_unk(const qe_tokenizer *t); /* -1 when there is none */
int qe_tokenizer_add_bos(const qe_tokenizer *t); /* 1 if QE_TOK_ADD_SPECIAL prepends BOS */
int qe_tokenizer_add_eos(const qe_tokenizer *t); /* 1 if QE_TOK_ADD_SPECIAL appends EOS */
/* 1 if encoding adds a dummy-prefix space (and decoding removes one). */
int qe_tokenizer_dummy_prefix(const qe_tokenizer *t);
qe_tokenizer_attr qe_tokenizer_attr_of(const qe_tokenizer *t, int32_t id); /* UNDEFINED if out of range */
float qe_tokenizer_score(const qe_tokenizer *t, int32_t id); /* SPM piece score; 0 otherwise */

#endif
