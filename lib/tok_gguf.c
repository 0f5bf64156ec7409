/* tok_gguf.c - a tokenizer from GGUF tokenizer.ggml.* metadata, with
 * llama.cpp's defaults and rules (llama-vocab.cpp, llama_vocab::impl::load):
 *   model "llama" -> SPM: BOS 1, EOS 2, UNK 0, add_bos on, add_eos off,
 *                    add_space_prefix on unless tokenizer.ggml.add_space_prefix;
 *   model "gpt2"  -> byte-level BPE: BOS = EOS = 11, no UNK, add_bos off (on
 *                    for llama3-style pre-tokenizers), merges required;
 *   tokenizer.ggml.{bos,eos,unknown}_token_id and add_{bos,eos}_token override.
 * Unlike llama.cpp, an explicit special-token id outside the vocabulary is an
 * error (llama.cpp warns and keeps the default). Text-based fix-ups llama.cpp
 * applies that change tokenization are reproduced: end-of-generation and
 * fill-in-the-middle texts (<|eot_id|>, <|im_end|>, <|end|>, <|endoftext|>,
 * <fim_prefix>, ...) become control tokens,
 * and Phi-3 vocabularies (general.name contains "phi-3"/"phi3") strip
 * whitespace to the right of their special tokens.
 *
 * Threading: builds a fresh handle from a handle that is only read.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_internal.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"

/* Optional string kv: NULL when absent; QE_ECORRUPT on a wrong type. */
static qe_status opt_str(const qe_gguf *g, const char *key, const char **out)
{
    *out = NULL;
    if (qe_gguf_find_key(g, key) < 0)
        return QE_OK;
    return qe_gguf_get_str(g, key, out, NULL);
}

static qe_status opt_bool(const qe_gguf *g, const char *key, int *v)
{
    return qe_gguf_find_key(g, key) < 0 ? QE_OK : qe_gguf_get_bool(g, key, v);
}

/* Optional token id; an id outside the vocabulary is an error. */
static qe_status opt_id(const qe_tokenizer *t, const qe_gguf *g, const char *key, int32_t *id)
{
    uint32_t v;
    if (qe_gguf_find_key(g, key) < 0)
        return QE_OK;
    qe_status st = qe_gguf_get_u32(g, key, &v);
    if (st)
        return st;
    if (v >= t->n)
        return qe_fail(QE_ECORRUPT, "%s: %s = %u is out of range (vocabulary of %u tokens)", t->source, key,
                       v, t->n);
    *id = (int32_t)v;
    return QE_OK;
}

/* Numeric array of at least n elements at kv index ki, element type checked. */
static qe_status arr_check(const qe_tokenizer *t, const qe_gguf *g, int64_t ki, const char *key, int want_float)
{
    qe_gguf_type et = qe_gguf_kv_arr_type(g, (uint64_t)ki);
    int ok = want_float ? (et == QE_GGUF_FLOAT32 || et == QE_GGUF_FLOAT64 || et == QE_GGUF_INT32)
                        : (et == QE_GGUF_INT32 || et == QE_GGUF_UINT32 || et == QE_GGUF_INT8 || et == QE_GGUF_UINT8 ||
                           et == QE_GGUF_INT16 || et == QE_GGUF_UINT16);
    if (qe_gguf_kv_type(g, (uint64_t)ki) != QE_GGUF_ARRAY || !ok)
        return qe_fail(QE_ECORRUPT, "%s: %s has type %s, expected an array of %s", t->source, key,
                       qe_gguf_type_name(qe_gguf_kv_type(g, (uint64_t)ki) == QE_GGUF_ARRAY ? et : qe_gguf_kv_type(g, (uint64_t)ki)),
                       want_float ? "f32" : "i32");
    uint64_t n = qe_gguf_kv_arr_len(g, (uint64_t)ki);
    if (n < t->n)
        return qe_fail(QE_ECORRUPT, "%s: %s has %llu elements, fewer than the %u tokens", t->source, key,
                       (unsigned long long)n, t->n);
    return QE_OK;
}

static int name_has_phi3(const char *name)
{
    char low[256];
    size_t n = 0;
    for (; name && name[n] && n + 1 < sizeof low; n++)
        low[n] = (char)tolower((unsigned char)name[n]);
    low[n] = '\0';
    return strstr(low, "phi-3") || strstr(low, "phi3");
}

static qe_status load(qe_tokenizer *t, const qe_gguf *g)
{
    qe_status st;
    const char *model, *pre, *name;
    if ((st = opt_str(g, KEY_MODEL, &model)) || (st = opt_str(g, KEY_PRE, &pre)) ||
        (st = opt_str(g, "general.name", &name)))
        return st;
    if (!model)
        return qe_fail(QE_ECORRUPT, "%s: key '%s' is missing (no tokenizer in this file)", t->source, KEY_MODEL);
    if (!strcmp(model, "llama")) {
        t->kind = QE_TOKENIZER_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = 1, t->dummy_prefix = 1;
        t->piece_mode = QE_PIECE_METASPACE;
        snprintf(t->pre_name, sizeof t->pre_name, "spm");
    } else if (!strcmp(model, "gpt2")) {
        t->kind = QE_TOKENIZER_BPE;
        t->bos = 11, t->eos = 11, t->unk = -1;
        t->piece_mode = QE_PIECE_BYTELEVEL;
        if (!pre)
            return qe_fail(QE_EUNSUPPORTED, "%s: key '%s' is missing; qeval needs the pre-tokenizer name "
                                            "(llama.cpp would fall back to a degraded default)",
                           t->source, KEY_PRE);
        if (!strcmp(pre, "gpt-2")) {
            t->pre = QE_PRE_GPT2;
        } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) {
            t->pre = QE_PRE_LLAMA3, t->ignore_merges = 1, t->add_bos = 1;
        } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) {
            t->pre = QE_PRE_QWEN2;
        } else if (!strcmp(pre, "smollm")) {
            t->pre = QE_PRE_SMOLLM;
        } else {
            return qe_fail(QE_EUNSUPPORTED, "%s: %s = '%s' is not supported (gpt-2, llama-bpe, llama3, "
                                            "llama-v3, qwen2, deepseek-r1-qwen, smollm)",
                           t->source, KEY_PRE, pre);
        }
        snprintf(t->pre_name, sizeof t->pre_name, "%s", pre);
    } else {
        return qe_fail(QE_EUNSUPPORTED, "%s: %s = '%s' is not supported (llama, gpt2)", t->source, KEY_MODEL, model);
    }
    if ((st = opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->dummy_prefix)))
        return st;

    /* Tokens, scores, types. */
    int64_t ki = qe_gguf_find_key(g, KEY_TOKENS);
    if (ki < 0)
        return qe_fail(QE_ECORRUPT, "%s: key '%s' is missing", t->source, KEY_TOKENS);
    if (qe_gguf_kv_type(g, (uint64_t)ki) != QE_GGUF_ARRAY || qe_gguf_kv_arr_type(g, (uint64_t)ki) != QE_GGUF_STRING)
        return qe_fail(QE_ECORRUPT, "%s: %s is not an array of strings", t->source, KEY_TOKENS);
    uint64_t n = qe_gguf_kv_arr_len(g, (uint64_t)ki);
    if (n == 0 || n > QE_TOKENIZER_MAX_VOCAB)
        return qe_fail(QE_ERANGE, "%s: %s has %llu tokens (expected 1..%u)", t->source, KEY_TOKENS,
                       (unsigned long long)n, QE_TOKENIZER_MAX_VOCAB);
    size_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        qe_gguf_value v;
        if ((st = qe_gguf_kv_value(g, (uint64_t)ki, i, &v)))
            return st;
        bytes += v.len;
    }
    if ((st = qe_tok_alloc(t, (uint32_t)n, bytes)))
        return st;
    int64_t si = qe_gguf_find_key(g, KEY_SCORES), ti = qe_gguf_find_key(g, KEY_TYPES);
    if (si >= 0 && (st = arr_check(t, g, si, KEY_SCORES, 1)))
        return st;
    if (ti >= 0 && (st = arr_check(t, g, ti, KEY_TYPES, 0)))
        return st;
    for (uint64_t i = 0; i < n; i++) {
        qe_gguf_value v, sv, tv;
        float score = 0.0f;
        int attr = QE_TOKATTR_NORMAL;
        if ((st = qe_gguf_kv_value(g, (uint64_t)ki, i, &v)))
            return st;
        if (si >= 0) {
            if ((st = qe_gguf_kv_value(g, (uint64_t)si, i, &sv)))
                return st;
            score = sv.type == QE_GGUF_INT32 ? (float)sv.i : (float)sv.f;
        }
        if (ti >= 0) {
            if ((st = qe_gguf_kv_value(g, (uint64_t)ti, i, &tv)))
                return st;
            int64_t ty = tv.type == QE_GGUF_UINT32 || tv.type == QE_GGUF_UINT8 || tv.type == QE_GGUF_UINT16
                             ? (int64_t)tv.u : tv.i;
            /* Unknown numbers are UNDEFINED, as in llama.cpp. */
            attr = ty >= QE_TOKATTR_NORMAL && ty <= QE_TOKATTR_BYTE ? (int)ty : QE_TOKATTR_UNDEFINED;
        }
        qe_tok_set(t, (uint32_t)i, v.s, v.len, score, attr);
    }
    /* Texts llama.cpp forces to control (its EOT/EOG and FIM detection). */
    static const char *eog[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
        "<|prefix|>", "<｜fim▁begin｜>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
        "<|suffix|>", "<｜fim▁hole｜>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "▁<MID>", "<|code_middle|>",
        "<|middle|>", "<｜fim▁end｜>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"};
    for (size_t k = 0; k < sizeof eog / sizeof eog[0]; k++) {
        for (uint32_t id = 0; id < t->n; id++) {
            size_t len = t->text_off[id + 1] - t->text_off[id];
            if (len == strlen(eog[k]) && !memcmp(t->text + t->text_off[id], eog[k], len) &&
                t->attr[id] != QE_TOKATTR_CONTROL)
                t->attr[id] = QE_TOKATTR_CONTROL;
        }
    }
    if (name_has_phi3(name)) {
        /* llama.cpp: every special token of Phi-3 swallows whitespace to its
         * right, except <unk>, <s> and <|endoftext|>; </s> does too. */
        for (uint32_t id = 0; id < t->n; id++) {
            const char *s = t->text + t->text_off[id];
            size_t len = t->text_off[id + 1] - t->text_off[id];
            int a = t->attr[id];
            int sp = a == QE_TOKATTR_CONTROL || a == QE_TOKATTR_USER_DEFINED || a == QE_TOKATTR_UNKNOWN;
            int keep = (len == 5 && !memcmp(s, "<unk>", 5)) || (len == 3 && !memcmp(s, "<s>", 3)) ||
                       (len == 13 && !memcmp(s, "<|endoftext|>", 13));
            int eos = len == 4 && !memcmp(s, "</s>", 4);
            if ((sp || eos) && !keep)
                t->tflags[id] |= QE_TOKF_RSTRIP;
        }
    }
    if ((st = qe_tok_finish(t, KEY_TOKENS)))
        return st;

    /* Merges (BPE). */
    if (t->kind == QE_TOKENIZER_BPE) {
        int64_t mi = qe_gguf_find_key(g, KEY_MERGES);
        if (mi < 0)
            return qe_fail(QE_ECORRUPT, "%s: key '%s' is missing (a gpt2 tokenizer needs merges)", t->source,
                           KEY_MERGES);
        if (qe_gguf_kv_type(g, (uint64_t)mi) != QE_GGUF_ARRAY || qe_gguf_kv_arr_type(g, (uint64_t)mi) != QE_GGUF_STRING)
            return qe_fail(QE_ECORRUPT, "%s: %s is not an array of strings", t->source, KEY_MERGES);
        uint64_t nm = qe_gguf_kv_arr_len(g, (uint64_t)mi);
        if (nm > UINT32_MAX / 4)
            return qe_fail(QE_ERANGE, "%s: %s has %llu entries", t->source, KEY_MERGES, (unsigned long long)nm);
        if ((st = qe_tok_merges_alloc(t, (uint32_t)nm)))
            return st;
        for (uint64_t i = 0; i < nm; i++) {
            qe_gguf_value v;
            int32_t l, r, res;
            if ((st = qe_gguf_kv_value(g, (uint64_t)mi, i, &v)) ||
                (st = qe_tok_merge_parse(t, v.s, v.len, KEY_MERGES, i, &l, &r, &res)))
                return st;
            qe_tok_merge_put(t, l, r, (uint32_t)i, res);
        }
    }

    /* Special ids and flags. Defaults outside the vocabulary are dropped. */
    if (t->bos >= (int32_t)t->n)
        t->bos = -1;
    if (t->eos >= (int32_t)t->n)
        t->eos = -1;
    if (t->unk >= (int32_t)t->n)
        t->unk = -1;
    if ((st = opt_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos)) ||
        (st = opt_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos)) ||
        (st = opt_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos)))
        return st;
    if (t->add_bos && t->bos < 0)
        return qe_fail(QE_ECORRUPT, "%s: tokenizer.ggml.add_bos_token is true but there is no BOS token", t->source);
    if (t->add_eos && t->eos < 0)
        return qe_fail(QE_ECORRUPT, "%s: tokenizer.ggml.add_eos_token is true but there is no EOS token", t->source);
    return QE_OK;
}

qe_status qe_tokenizer_from_gguf(const qe_gguf *g, qe_tokenizer **out)
{
    *out = NULL;
    qe_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return qe_fail(QE_ENOMEM, "%s: out of memory", qe_gguf_path(g));
    snprintf(t->source, sizeof t->source, "%s", qe_gguf_path(g));
    t->bos = t->eos = t->unk = -1;
    qe_status st = load(t, g);
    if (st) {
        qe_tokenizer_close(t);
        return st;
    }
    *out = t;
    return QE_OK;
}

qe_status qe_tokenizer_open(const char *path, qe_tokenizer **out)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qe_fail(QE_EIO, "%s: cannot open (no such file or directory)", path);
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + sizeof "/tokenizer.json";
        char *p = malloc(n);
        if (!p)
            return qe_fail(QE_ENOMEM, "%s: out of memory", path);
        snprintf(p, n, "%s/tokenizer.json", path);
        qe_status st = qe_tokenizer_from_hf_json(p, out);
        free(p);
        return st;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json"))
        return qe_tokenizer_from_hf_json(path, out);
    qe_gguf *g = NULL;
    qe_status st = qe_gguf_open(path, &g);
    if (!st)
        st = qe_tokenizer_from_gguf(g, out);
    qe_gguf_close(g);
    return st;
}
