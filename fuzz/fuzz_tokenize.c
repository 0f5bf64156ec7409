/* fuzz_tokenize.c - libFuzzer harness for the tokenizers (`make fuzz`):
 * a dataset's text is hostile bytes, and every byte of it goes through
 * qe_tokenizer_encode.
 *
 * The tokenizers of the shared data (QEVAL_DATA, default ../shared/data):
 * stories260K.gguf (SentencePiece), vocab/ggml-vocab-phi-3.gguf (SentencePiece
 * with byte fallback, llama.cpp's test vocabulary) and TinyStories-656K's
 * tokenizer.json (Hugging Face BPE). Each input is encoded by each, plain
 * and with special tokens added and parsed: success, or QE_ECORRUPT where the
 * vocabulary cannot express a byte; every id inside the vocabulary;
 * qe_tokenizer_encode_buf agreeing with it (count and ids, and QE_ERANGE
 * with the first ids when the buffer is short); the ids decoding, plain
 * and rendering control tokens, to NUL-terminated text. Broken promises
 * trap, so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "gguf.h"
#include "tokenizer.h"

#define N_TOK 3
static qe_tokenizer *toks[N_TOK];

static qe_tokenizer *load(const char *dir, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    qe_tokenizer *t = NULL;
    if (qe_tokenizer_open(path, &t) != QE_OK) {
        fprintf(stderr, "fuzz_tokenize: %s: %s\n", path, qe_errmsg());
        exit(1);
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("QEVAL_DATA");
    dir = dir && *dir ? dir : "../shared/data";
    toks[0] = load(dir, "models/stories260K.gguf");
    toks[1] = load(dir, "vocab/ggml-vocab-phi-3.gguf");
    toks[2] = load(dir, "models/TinyStories-656K");
    return 0;
}

static void one(const qe_tokenizer *t, const char *text, size_t len, unsigned flags)
{
    qe_tokenizer_ids ids = {0};
    qe_status s = qe_tokenizer_encode(t, text, len, flags, &ids);
    CHECK(s == QE_OK || s == QE_ECORRUPT);
    if (s != QE_OK) {
        CHECK(ids.n == 0);
        qe_tokenizer_ids_free(&ids);
        return;
    }
    const int32_t nv = (int32_t)qe_tokenizer_n_vocab(t);
    for (size_t i = 0; i < ids.n; i++)
        CHECK(ids.v[i] >= 0 && ids.v[i] < nv);

    /* the caller-buffer form: the same ids, or the first cap of them */
    int32_t buf[64];
    size_t n = 0;
    const size_t cap = ids.n > 1 ? ids.n / 2 : 1;
    s = qe_tokenizer_encode_buf(t, text, len, flags, buf, cap < 64 ? cap : 64, &n);
    CHECK(n == ids.n);
    CHECK(s == (n > (cap < 64 ? cap : 64) ? QE_ERANGE : QE_OK));
    const size_t held = n < cap ? n : cap < 64 ? cap : 64;
    CHECK(held == 0 || memcmp(buf, ids.v, held * sizeof *buf) == 0);

    for (unsigned r = 0; r < 2; r++) {
        char *out = NULL;
        size_t olen = 0;
        s = qe_tokenizer_decode(t, ids.v, ids.n, r ? QE_TOK_RENDER_SPECIAL : 0, &out, &olen);
        CHECK(s == QE_OK && out != NULL && out[olen] == '\0');
        free(out);
    }
    qe_tokenizer_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < N_TOK; i++) {
        one(toks[i], (const char *)data, size, 0);
        one(toks[i], (const char *)data, size, QE_TOK_ADD_SPECIAL | QE_TOK_PARSE_SPECIAL);
    }
    return 0;
}
