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

#include "fuzz_tok.h"

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
    const char *dir = fuzz_data();
    toks[0] = load(dir, "models/stories260K.gguf");
    toks[1] = load(dir, "vocab/ggml-vocab-phi-3.gguf");
    toks[2] = load(dir, "models/TinyStories-656K");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < N_TOK; i++) {
        fuzz_encode(toks[i], (const char *)data, size, 0);
        fuzz_encode(toks[i], (const char *)data, size, QE_TOK_ADD_SPECIAL | QE_TOK_PARSE_SPECIAL);
    }
    return 0;
}
