/* tok_internal.h - what the tokenizer module's files (tokenizer.c, tok_*.c)
 * share. Private to the module: nothing outside lib/tok*.c includes it, and
 * its qe_tok_* names are not part of the library's API.
 */
#ifndef QE_TOK_INTERNAL_H
#define QE_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* Pre-tokenizers (word splitters) for byte-level BPE. */
typedef enum qe_tok_pre {
    QE_PRE_NONE = 0,
    QE_PRE_GPT2,   /* 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    QE_PRE_LLAMA3, /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    QE_PRE_QWEN2,  /* the llama3 pattern with \p{N} (one digit) */
    QE_PRE_SMOLLM  /* \p{N} isolated, then GPT2 */
} qe_tok_pre;

/* Per-token matching options for special/added tokens (HF AddedToken). */
enum { QE_TOKF_LSTRIP = 1, QE_TOKF_RSTRIP = 2, QE_TOKF_NORMALIZED = 4 };

/* HF normalizer steps, applied in order. */
typedef struct qe_tok_norm {
    int op;          /* QE_NORM_PREPEND or QE_NORM_REPLACE */
    char *from;      /* REPLACE: literal pattern (non-empty) */
    size_t from_len;
    char *to;        /* PREPEND: the prefix; REPLACE: the replacement */
    size_t to_len;
} qe_tok_norm;
enum { QE_NORM_PREPEND = 1, QE_NORM_REPLACE = 2 };

/* HF pre-tokenizer steps, applied in order to every current piece. */
typedef struct qe_tok_prestep {
    int op;               /* QE_PT_* */
    int flag;             /* METASPACE: prepend scheme; BYTELEVEL: add_prefix_space;
                             DIGITS: individual; SPLIT: the qe_tok_pre pattern */
    int split;            /* METASPACE: split on the replacement; BYTELEVEL: use_regex */
    char rep[8];          /* METASPACE: replacement character (UTF-8) */
    size_t rep_len;
} qe_tok_prestep;
enum { QE_PT_METASPACE = 1, QE_PT_BYTELEVEL = 2, QE_PT_DIGITS = 3, QE_PT_SPLIT = 4 };
enum { QE_PREPEND_ALWAYS = 0, QE_PREPEND_NEVER = 1, QE_PREPEND_FIRST = 2 };

/* A token matched in the input text before the model runs. */
typedef struct qe_tok_special {
    int32_t id;
    uint8_t flags;   /* QE_TOKF_* */
    uint8_t control; /* control/unknown: matched only with QE_TOK_PARSE_SPECIAL */
    char *s;         /* text matched (HF normalized tokens: their normalized form) */
    size_t len;
} qe_tok_special;

/* How a normal token's text becomes bytes. */
enum {
    QE_PIECE_RAW = 0,       /* as is */
    QE_PIECE_METASPACE = 1, /* U+2581 -> ' ' */
    QE_PIECE_BYTELEVEL = 2  /* GPT-2 byte alphabet -> bytes */
};

/* Open-addressing hash slot for (left id, right id) -> merge. */
typedef struct qe_tok_merge {
    uint64_t key;    /* (uint64)left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;   /* index in the merge list: lower merges first */
    int32_t result;  /* id of left+right */
} qe_tok_merge;

struct qe_tokenizer {
    qe_tokenizer_kind kind;
    qe_tok_pre pre;          /* BPE: word splitter */
    char pre_name[64];       /* for messages and `tokenize --help` output */
    char source[512];        /* file it came from, for messages */

    uint32_t n;              /* vocabulary size */
    char *text;              /* all token texts, back to back */
    size_t *text_off;        /* [n+1] token i is text[text_off[i] .. text_off[i+1]) */
    char *piece;             /* decoded bytes of every token, back to back */
    size_t *piece_off;       /* [n+1] */
    float *score;            /* [n] SPM piece scores (0 for other kinds) */
    uint8_t *attr;           /* [n] qe_tokenizer_attr */
    uint8_t *tflags;         /* [n] QE_TOKF_* for special matching */

    uint32_t *tab;           /* text -> id hash: slot holds id + 1, 0 = empty */
    uint32_t *tab_tag;       /* high 32 bits of each slot's hash (skips most memcmps) */
    size_t tab_mask;         /* slots - 1 (power of two) */

    qe_tok_merge *merges;    /* (left, right) -> merge hash; NULL for SPM */
    size_t merges_mask;
    uint32_t n_merges;

    int32_t bos, eos, unk;   /* -1 when absent */
    int add_bos, add_eos;
    int dummy_prefix;        /* SPM add_space_prefix; HF Prepend/Metaspace prefix */
    int ignore_merges;       /* a word that is a token stays whole (llama3) */
    uint8_t pairs[8192];     /* bit (a << 8 | b): bytes a, b are adjacent in some token's
                                text. Where they are not, no piece or merge can span the
                                gap between them, so merging can run on either side
                                separately (this keeps the heaps small). */
    int32_t byte_tok[256];   /* SPM/HF: <0xNN> token; BPE: token of the byte's alphabet
                                character; -1 when absent */

    qe_tok_special *special; /* [n_special] tokens matched in the input before the
                                model runs, longest text first (ties: lower id) */
    size_t n_special;
    int special_hf;          /* 1: HF leftmost-longest matching; 0: llama.cpp order */
    uint32_t sp_first[257];  /* HF: specials whose text starts with byte b are */
    uint32_t *sp_by_first;   /* sp_by_first[sp_first[b] .. sp_first[b+1]) (longest first) */
    int piece_mode;          /* how normal tokens decode: QE_PIECE_* */

    /* HF model options */
    int byte_fallback, fuse_unk;
    int bytelevel;           /* pieces are in GPT-2's byte alphabet */
    qe_tok_norm *norm;
    size_t n_norm;
    qe_tok_prestep *prestep;
    size_t n_prestep;
};

/* ---- vocabulary building (tokenizer.c) ---- */

/* Allocate the per-token arrays of an n-token vocabulary whose texts take
 * text_bytes in all; texts are then added in id order with qe_tok_set. */
qe_status qe_tok_alloc(qe_tokenizer *t, uint32_t n, size_t text_bytes);
/* Store token id's text (its id must be the next one in order) and score. */
void qe_tok_set(qe_tokenizer *t, uint32_t id, const char *s, size_t len, float score, int attr);
/* After all texts are set: check UTF-8, build the text hash (rejecting
 * duplicates), the decoded pieces, byte tokens and the special-token list.
 * `what` names the source for messages ("tokenizer.ggml.tokens"). */
qe_status qe_tok_finish(qe_tokenizer *t, const char *what);
/* Insert merge `rank` = (left, right) -> result (merge hash must be sized). */
qe_status qe_tok_merges_alloc(qe_tokenizer *t, uint32_t n);
void qe_tok_merge_put(qe_tokenizer *t, int32_t left, int32_t right, uint32_t rank, int32_t result);
/* Parse merge text "a b" (split at the first space after byte 0) into ids;
 * QE_ECORRUPT naming `what` and index i when malformed or naming a missing token. */
qe_status qe_tok_merge_parse(qe_tokenizer *t, const char *s, size_t len, const char *what,
                             uint64_t i, int32_t *left, int32_t *right, int32_t *result);

/* 1 if bytes a, b occur next to each other in some token's text. */
static inline int qe_tok_pair_seen(const qe_tokenizer *t, unsigned char a, unsigned char b)
{
    unsigned k = (unsigned)a << 8 | b;
    return (t->pairs[k >> 3] >> (k & 7)) & 1;
}

/* Hash of a byte string (table index, not a content hash). */
uint64_t qe_tok_hash(const char *s, size_t n);
/* Id of text, or -1 (the hash lookup; any thread). */
int32_t qe_tok_lookup(const qe_tokenizer *t, const char *s, size_t len);
/* Merge of (left, right), or NULL. */
const qe_tok_merge *qe_tok_merge_get(const qe_tokenizer *t, int32_t left, int32_t right);

/* ---- scratch ---- */
typedef struct qe_tok_buf {
    char *p;
    size_t n, cap;
} qe_tok_buf;
qe_status qe_tok_buf_put(qe_tok_buf *b, const char *s, size_t n);

/* ---- models ---- */

/* SPM: text already escaped (spaces as U+2581, dummy prefix added). */
qe_status qe_tok_spm_encode(const qe_tokenizer *t, const char *text, size_t len,
                            qe_tokenizer_ids *out);
/* BPE merge loop over initial symbols sym[0..n) (ids, -1 for "no token";
 * modified in place); appends the final ids (skipping -1) to out. cut[i]
 * (may be NULL) says no merge can span the gap before symbol i, so the
 * stretches between cuts are merged independently (same result, smaller
 * heaps). */
qe_status qe_tok_bpe_merge(const qe_tokenizer *t, int32_t *sym, size_t n, const uint8_t *cut,
                           qe_tokenizer_ids *out);

/* Per-call cache of word -> ids (words repeat: most BPE work is redone
 * otherwise). Keys are copied. */
typedef struct qe_tok_cache {
    struct qe_tok_cache_slot *slot;
    size_t mask, used;
    qe_tok_buf keys;            /* word bytes */
    qe_tokenizer_ids vals;      /* ids */
} qe_tok_cache;
/* Append the cached ids of word s[0..n) to out and return 1, or return 0. */
int qe_tok_cache_get(const qe_tok_cache *c, const char *s, size_t n, qe_tokenizer_ids *out);
/* Remember that s[0..n) encodes to the ids out holds from index `from` on
 * (none when the word gave no ids; out->v may then still be NULL). */
qe_status qe_tok_cache_put(qe_tok_cache *c, const char *s, size_t n, const qe_tokenizer_ids *out,
                           size_t from);
void qe_tok_cache_free(qe_tok_cache *c);
/* GGUF byte-level BPE on one fragment of raw text (pre-tokenizer included). */
qe_status qe_tok_bpe_encode(const qe_tokenizer *t, const char *text, size_t len,
                            qe_tokenizer_ids *out);
/* HF pipeline on one fragment that survived added-token splitting:
 * normalize, split again on normalized added tokens, pre-tokenize, BPE.
 * `first`: the fragment starts the input (Metaspace prepend_scheme "first"). */
qe_status qe_tok_hf_encode(const qe_tokenizer *t, const char *text, size_t len, int first,
                           unsigned flags, qe_tokenizer_ids *out);

/* ---- pre-tokenizer (tok_pretok.c) ---- */

/* Split text[0..len) into words with pattern `pre`; writes the end offset of
 * each word into *ends (malloc'ed/grown as needed, *cap its capacity) and
 * their count into *n_words. Invalid UTF-8 bytes are one-byte units of no
 * class. */
qe_status qe_tok_pretok_split(qe_tok_pre pre, const char *text, size_t len, size_t **ends,
                              size_t *cap, size_t *n_words);
/* Pattern for a Hugging Face Split regex, or QE_PRE_NONE if unknown. */
qe_tok_pre qe_tok_pretok_from_regex(const char *re);

/* ---- special-token partition (tokenizer.c) ---- */
typedef struct qe_tok_frag {
    size_t off, len; /* text fragment (id < 0) */
    int32_t id;      /* >= 0: a special token */
} qe_tok_frag;
/* Cut text into fragments at the texts of the eligible special tokens (all
 * when parse_special, else non-control ones). `normalized`: -1 all, 0 only
 * tokens without QE_TOKF_NORMALIZED, 1 only those with it (HF). */
qe_status qe_tok_partition(const qe_tokenizer *t, const char *text, size_t len, int parse_special,
                           int normalized, qe_tok_frag **frags, size_t *n_frags);

/* ---- merge heap (tok_heap.c), shared by the SPM and BPE merge loops ---- */
typedef struct qe_tok_pair {
    double key;          /* lower pops first: BPE rank, or -score for SPM */
    int32_t left;        /* symbol index of the pair's left half (ties: lower first) */
    int32_t a, b, c;     /* the caller's: BPE lid/rid, SPM right/id */
    size_t size;         /* the caller's: SPM bytes of the pair when pushed */
} qe_tok_pair;
typedef struct qe_tok_heap {
    qe_tok_pair *v;
    size_t n, cap;
} qe_tok_heap;
qe_status qe_tok_heap_push(qe_tok_heap *h, qe_tok_pair p);
qe_tok_pair qe_tok_heap_pop(qe_tok_heap *h); /* h->n > 0 */
void qe_tok_heap_free(qe_tok_heap *h);

/* ---- loaders ---- */
qe_status qe_tok_hf_load(qe_tokenizer *t, const char *path);

#endif
