/* fuzz_tokjson.c - libFuzzer harness for Hugging Face tokenizer.json files
 * (`make fuzz`), which come with downloaded model directories.
 *
 * Each input is written to tokenizer.json in a directory of its own under
 * the temporary directory (no tokenizer_config.json or config.json beside
 * it) and loaded by qe_tokenizer_from_hf_json. A rejected input must carry
 * a one-line message naming the file; an accepted tokenizer must encode a
 * fixed text (ASCII, accents, CJK, an emoji, control bytes, an invalid
 * UTF-8 byte and special-token texts), plain and with special tokens added
 * and parsed, to ids inside its vocabulary (or refuse with QE_ECORRUPT when
 * its vocabulary cannot express a byte), decode them to NUL-terminated
 * text, and answer every per-id query for every id. Broken promises trap,
 * so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_tok.h"

static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char dir[4000];
    fuzz_tmp(dir, sizeof dir, "tokjson");
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    return 0;
}

static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe6\x88\xa6\xe5\xa0\xb4 "
                           "\xf0\x9f\xa6\x99\t\r\n<s></s><|endoftext|> ab\xff a b  x";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_put(path, data, size);
    qe_tokenizer *t = NULL;
    qe_status s = qe_tokenizer_from_hf_json(path, &t);
    if (s != QE_OK) {
        fuzz_rejected(s, t, path);
        return 0;
    }
    const uint32_t nv = qe_tokenizer_n_vocab(t);
    CHECK(nv >= 1 && nv <= QE_TOKENIZER_MAX_VOCAB);
    CHECK(qe_tokenizer_bos(t) >= -1 && qe_tokenizer_bos(t) < (int32_t)nv);
    CHECK(qe_tokenizer_eos(t) >= -1 && qe_tokenizer_eos(t) < (int32_t)nv);
    CHECK(qe_tokenizer_unk(t) >= -1 && qe_tokenizer_unk(t) < (int32_t)nv);
    for (uint32_t id = 0; id < nv && id < 4096; id++) {
        size_t len = 0;
        CHECK(qe_tokenizer_token_text(t, (int32_t)id, &len) != NULL);
        CHECK(qe_tokenizer_piece(t, (int32_t)id, &len) != NULL);
        (void)qe_tokenizer_attr_of(t, (int32_t)id);
    }
    size_t past = 1;
    CHECK(qe_tokenizer_token_text(t, (int32_t)nv, &past) == NULL && past == 0);
    fuzz_encode(t, text, sizeof text - 1, 0);
    fuzz_encode(t, text, sizeof text - 1, QE_TOK_ADD_SPECIAL | QE_TOK_PARSE_SPECIAL);
    qe_tokenizer_close(t);
    return 0;
}
