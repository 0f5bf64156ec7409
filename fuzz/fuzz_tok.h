/* fuzz_tok.h - the checks fuzz_tokenize and fuzz_tokjson make of a
 * tokenizer on one text (tokenizer.h's promises). */
#ifndef QE_FUZZ_TOK_H
#define QE_FUZZ_TOK_H

#include "fuzz_check.h"
#include "tokenizer.h"

/* Encode text[0..len) with flags: success, or QE_ECORRUPT (nothing added)
 * where the vocabulary cannot express a byte; every id inside the
 * vocabulary; qe_tokenizer_encode_buf agreeing (the count, and the ids or,
 * QE_ERANGE, the first cap of them); the ids decoding, plain and rendering
 * control tokens, to NUL-terminated text. */
static inline void fuzz_encode(const qe_tokenizer *t, const char *text, size_t len,
                               unsigned flags)
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

    int32_t buf[64];
    size_t n = 0;
    const size_t half = ids.n > 1 ? ids.n / 2 : 1, cap = half < 64 ? half : 64;
    s = qe_tokenizer_encode_buf(t, text, len, flags, buf, cap, &n);
    CHECK(n == ids.n);
    CHECK(s == (n > cap ? QE_ERANGE : QE_OK));
    const size_t held = n < cap ? n : cap;
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

#endif
