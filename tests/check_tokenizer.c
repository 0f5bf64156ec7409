/* check_tokenizer.c - tokenizers (SPM, byte-level BPE, tokenizer.json) and
 * the Unicode tables under them.
 *
 * Where expectations come from, never from qeval's own output:
 *   - llama.cpp's test vectors for the Phi-3 vocabulary (vocab/ggml-vocab-phi-3.gguf.inp, .out);
 *   - fixtures written by tests/oracle/hf_tokenize.py with Hugging Face
 *     `tokenizers` (tests/fixtures/tok_*.txt): the whole-file id sequence's
 *     length and SHA-256 (ids as u32 little-endian, concatenated) and the ids
 *     of the first lines; a small trained byte-level BPE with the ids of a
 *     set of cases under each pre-tokenizer (tok_bpe_cases.json); plus a few
 *     special-token cases pasted from it;
 *   - MANIFEST.md facts (stories260K: 512 tokens, BOS 1, EOS 2);
 *   - round trips (decode(encode(x)) == x) and hand-derived regex splits;
 *   - published Unicode facts (categories of specific code points, GPT-2's
 *     byte alphabet: ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
 * The SmolLM2 cases need `make models` (models/ is not in git); without the
 * model they are not added, and a TAP comment says so.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "gguf_write.h"
#include "hash.h"
#include "tok_internal.h"
#include "tokenizer.h"
#include "testutil.h"
#include "unicode.h"

#define OK(expr) ck_assert_msg((expr) == QE_OK, "%s: %s", #expr, qe_errmsg())

/* ---- helpers ---- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    ck_assert(size >= 0 && fseek(f, 0, SEEK_SET) == 0);
    char *buf = malloc((size_t)size + 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    buf[size] = '\0';
    *n = (size_t)size;
    return buf;
}

static const char *models_dir(void)
{
    const char *m = getenv("QEVAL_MODELS");
    return m && *m ? m : "models";
}

static const char *model_path(const char *rel)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", models_dir(), rel);
    return b;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static qe_tokenizer *open_tok(const char *path)
{
    qe_tokenizer *t = NULL;
    OK(qe_tokenizer_open(path, &t));
    return t;
}

static void encode(const qe_tokenizer *t, const char *s, size_t n, unsigned flags, qe_tokenizer_ids *ids)
{
    ids->n = 0;
    OK(qe_tokenizer_encode(t, s, n, flags, ids));
}

static void expect_ids(const qe_tokenizer *t, const char *s, unsigned flags, const int32_t *want, size_t n_want)
{
    qe_tokenizer_ids ids = {0};
    encode(t, s, strlen(s), flags, &ids);
    int same = ids.n == n_want;
    for (size_t i = 0; same && i < n_want; i++)
        same = ids.v[i] == want[i];
    if (!same) {
        char got[512] = "";
        for (size_t i = 0; i < ids.n && strlen(got) < 480; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids.v[i]);
        ck_abort_msg("'%s': got%s (%zu ids, expected %zu)", s, got, ids.n, n_want);
    }
    qe_tokenizer_ids_free(&ids);
}
#define EXPECT_IDS(t, s, flags, ...)                                                                  \
    do {                                                                                              \
        static const int32_t want_[] = {__VA_ARGS__};                                                 \
        expect_ids(t, s, flags, want_, sizeof want_ / sizeof want_[0]);                               \
    } while (0)

/* decode(encode(text)) must give text back, byte for byte. */
static void roundtrip(const qe_tokenizer *t, const char *text, size_t n, unsigned flags, const char *what)
{
    qe_tokenizer_ids ids = {0};
    char *back = NULL;
    size_t blen = 0;
    encode(t, text, n, flags, &ids);
    OK(qe_tokenizer_decode(t, ids.v, ids.n, 0, &back, &blen));
    size_t i = 0;
    while (i < n && i < blen && text[i] == back[i])
        i++;
    ck_assert_msg(blen == n && i == n, "%s: round trip differs at byte %zu (lengths %zu, %zu)", what, i, n, blen);
    free(back);
    qe_tokenizer_ids_free(&ids);
}

/* ---- unicode ---- */

START_TEST(test_unicode_classes)
{
    /* General categories from the Unicode Character Database. */
    ck_assert_uint_eq(qe_unicode_flags('a'), QE_UNICODE_LETTER);
    ck_assert_uint_eq(qe_unicode_flags('Z'), QE_UNICODE_LETTER);
    ck_assert_uint_eq(qe_unicode_flags('7'), QE_UNICODE_NUMBER);
    ck_assert_uint_eq(qe_unicode_flags(' '), QE_UNICODE_SEPARATOR | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags('\n'), QE_UNICODE_CONTROL | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags(0x1C), QE_UNICODE_CONTROL); /* Cc, but not White_Space */
    ck_assert_uint_eq(qe_unicode_flags(0x85), QE_UNICODE_CONTROL | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags(0xA0), QE_UNICODE_SEPARATOR | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags('\''), QE_UNICODE_PUNCT);
    ck_assert_uint_eq(qe_unicode_flags('$'), QE_UNICODE_SYMBOL);
    ck_assert_uint_eq(qe_unicode_flags(0xBD), QE_UNICODE_NUMBER);   /* ½, No */
    ck_assert_uint_eq(qe_unicode_flags(0xE9), QE_UNICODE_LETTER);   /* é */
    ck_assert_uint_eq(qe_unicode_flags(0x0301), QE_UNICODE_MARK);   /* combining acute */
    ck_assert_uint_eq(qe_unicode_flags(0x0663), QE_UNICODE_NUMBER); /* Arabic-Indic three */
    ck_assert_uint_eq(qe_unicode_flags(0x2581), QE_UNICODE_SYMBOL); /* ▁, So */
    ck_assert_uint_eq(qe_unicode_flags(0x3000), QE_UNICODE_SEPARATOR | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags(0x2028), QE_UNICODE_SEPARATOR | QE_UNICODE_SPACE);
    ck_assert_uint_eq(qe_unicode_flags(0x8A69), QE_UNICODE_LETTER); /* 詩, Lo */
    ck_assert_uint_eq(qe_unicode_flags(0x1F680), QE_UNICODE_SYMBOL); /* rocket */
    ck_assert_uint_eq(qe_unicode_flags(0xE000), QE_UNICODE_CONTROL); /* Co */
    ck_assert_uint_eq(qe_unicode_flags(0x0378), 0);                  /* unassigned */
    ck_assert_uint_eq(qe_unicode_flags(0x110000), 0);
    ck_assert_uint_eq(qe_unicode_flags(QE_UNICODE_INVALID), 0);
    /* The table is sorted and starts at U+0000. */
    ck_assert_uint_eq(qe_unicode_ranges[0] >> 8, 0);
    for (size_t i = 1; i < qe_unicode_n_ranges; i++)
        ck_assert_uint_lt(qe_unicode_ranges[i - 1] >> 8, qe_unicode_ranges[i] >> 8);
    ck_assert(qe_unicode_version[0] != '\0');
}
END_TEST

START_TEST(test_unicode_utf8)
{
    char b[4];
    uint32_t cp;
    for (uint32_t c = 0; c <= 0x10FFFF; c += (c < 0x3000 ? 1 : 97)) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        size_t n = qe_unicode_encode(c, b);
        ck_assert_uint_eq(n, c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4);
        ck_assert_uint_eq(qe_unicode_decode(b, n, &cp), n);
        ck_assert_uint_eq(cp, c);
    }
    ck_assert_uint_eq(qe_unicode_encode(0x110000, b), 0);
    /* RFC 3629: overlong, surrogate, above U+10FFFF, truncated, stray continuation. */
    static const char *bad[] = {"\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                "\xF5\x80\x80\x80", "\xE2\x82", "\x80", "\xFF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_uint_eq(qe_unicode_decode(bad[i], strlen(bad[i]), &cp), 1);
        ck_assert_uint_eq(cp, QE_UNICODE_INVALID);
    }
    size_t at = 0;
    ck_assert(qe_unicode_valid("ok \xE2\x96\x81", 6, &at));
    ck_assert(!qe_unicode_valid("ok\xE2\x96", 4, &at));
    ck_assert_uint_eq(at, 2);
    /* llama.cpp's lead-byte lengths. */
    ck_assert_uint_eq(qe_unicode_lead_len('a'), 1);
    ck_assert_uint_eq(qe_unicode_lead_len(0x80), 1);
    ck_assert_uint_eq(qe_unicode_lead_len(0xC3), 2);
    ck_assert_uint_eq(qe_unicode_lead_len(0xE2), 3);
    ck_assert_uint_eq(qe_unicode_lead_len(0xF0), 4);
}
END_TEST

START_TEST(test_unicode_bytelevel)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 maps to itself, the other
     * 68 bytes to U+0100.. in byte order; ' ' is 'Ġ' (U+0120), '\n' is 'Ċ'. */
    ck_assert_uint_eq(qe_unicode_byte_to_cp(' '), 0x120);
    ck_assert_uint_eq(qe_unicode_byte_to_cp('\n'), 0x10A);
    ck_assert_uint_eq(qe_unicode_byte_to_cp(0), 0x100);
    ck_assert_uint_eq(qe_unicode_byte_to_cp('A'), 'A');
    ck_assert_uint_eq(qe_unicode_byte_to_cp(0xAD), 0x143);
    ck_assert_uint_eq(qe_unicode_byte_to_cp(0x7F), 0x121);
    int seen[0x200] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = qe_unicode_byte_to_cp((unsigned char)b);
        ck_assert_uint_lt(cp, 0x144);
        ck_assert_int_eq(seen[cp]++, 0);
        ck_assert_int_eq(qe_unicode_cp_to_byte(cp), b);
    }
    ck_assert_int_eq(qe_unicode_cp_to_byte(0x144), -1);
    ck_assert_int_eq(qe_unicode_cp_to_byte(0x20), -1);
    ck_assert_int_eq(qe_unicode_cp_to_byte(0x2581), -1);
}
END_TEST

/* ---- pre-tokenizer splits, derived by hand from the regexes ---- */

static void expect_split(qe_tok_pre pre, const char *text, const char *const *words, size_t n_words)
{
    size_t *ends = NULL, cap = 0, n = 0, start = 0;
    OK(qe_tok_pretok_split(pre, text, strlen(text), &ends, &cap, &n));
    ck_assert_msg(n == n_words, "'%s': %zu words, expected %zu", text, n, n_words);
    for (size_t i = 0; i < n; start = ends[i++]) {
        size_t len = ends[i] - start;
        ck_assert_msg(len == strlen(words[i]) && !memcmp(text + start, words[i], len),
                      "'%s': word %zu is '%.*s', expected '%s'", text, i, (int)len, text + start, words[i]);
    }
    free(ends);
}
#define SPLIT(pre, text, ...)                                                                          \
    do {                                                                                               \
        static const char *const w_[] = {__VA_ARGS__};                                                 \
        expect_split(pre, text, w_, sizeof w_ / sizeof w_[0]);                                         \
    } while (0)

START_TEST(test_pretok)
{
    SPLIT(QE_PRE_GPT2, "Hello world's  test", "Hello", " world", "'s", " ", " test");
    SPLIT(QE_PRE_GPT2, "\n\n 123!?", "\n\n", " 123", "!?");
    SPLIT(QE_PRE_GPT2, "a   ", "a", "   ");                 /* \s+(?!\S) at the end takes all */
    SPLIT(QE_PRE_GPT2, "x\ty", "x", "\t", "y");              /* \s+ for a lone non-space blank */
    SPLIT(QE_PRE_GPT2, "I'M ok", "I", "'", "M", " ok");      /* GPT-2 contractions are case-sensitive */
    SPLIT(QE_PRE_GPT2, "caf\xC3\xA9 \xE2\x80\x94 x", "caf\xC3\xA9", " \xE2\x80\x94", " x");
    SPLIT(QE_PRE_GPT2, "a\xFF\xFE b", "a", "\xFF\xFE", " b"); /* invalid bytes: no class, like punctuation */
    SPLIT(QE_PRE_LLAMA3, "I'M 3333333 ok", "I", "'M", " ", "333", "333", "3", " ok");
    SPLIT(QE_PRE_LLAMA3, "(hi)\n\n  x", "(hi", ")\n\n", " ", " x"); /* [^\r\n\p{L}\p{N}]?\p{L}+, [\r\n]* */
    SPLIT(QE_PRE_LLAMA3, "a \n b", "a", " \n", " b");
    SPLIT(QE_PRE_QWEN2, "ab123", "ab", "1", "2", "3");
    SPLIT(QE_PRE_SMOLLM, "abc 123x", "abc", " ", "1", "2", "3", "x");
    SPLIT(QE_PRE_SMOLLM, "v2.0  go", "v", "2", ".", "0", " ", " go");
    ck_assert_int_eq(qe_tok_pretok_from_regex("\\p{N}"), QE_PRE_NONE);
}
END_TEST

/* ---- SentencePiece (GGUF "llama") ---- */

START_TEST(test_spm_llama_vectors)
{
    /* llama.cpp's tests/test-tokenizer-0 format: inputs separated by
     * "\n__ggml_vocab_test__\n", one line of ids per input in .out, encoded
     * without BOS and without parsing special tokens. */
    size_t ni, no;
    char *inp = slurp(qe_test_data("vocab/ggml-vocab-phi-3.gguf.inp"), &ni);
    char *out = slurp(qe_test_data("vocab/ggml-vocab-phi-3.gguf.out"), &no);
    qe_tokenizer *t = open_tok(qe_test_data("vocab/ggml-vocab-phi-3.gguf"));
    ck_assert_int_eq(qe_tokenizer_kind_of(t), QE_TOKENIZER_SPM);
    ck_assert_uint_eq(qe_tokenizer_n_vocab(t), 32064);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    size_t pos = 0, cases = 0;
    char *line = out, *save = NULL;
    qe_tokenizer_ids ids = {0};
    while (pos < ni) {
        const char *next = strstr(inp + pos, sep);
        size_t len = next ? (size_t)(next - (inp + pos)) : ni - pos;
        /* The matching output line (strtok_r would skip the empty ones). */
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "case %zu: no output line", cases);
        *nl = '\0';
        encode(t, inp + pos, len, 0, &ids);
        size_t k = 0;
        for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save), k++) {
            ck_assert_msg(k < ids.n, "case %zu ('%.*s'): too few ids (%zu)", cases, (int)len, inp + pos, ids.n);
            ck_assert_msg(ids.v[k] == atoi(tok), "case %zu ('%.*s'): id %zu is %d, expected %s", cases,
                          (int)len, inp + pos, k, ids.v[k], tok);
        }
        ck_assert_msg(k == ids.n, "case %zu ('%.*s'): %zu ids, expected %zu", cases, (int)len, inp + pos, ids.n, k);
        line = nl + 1;
        cases++;
        pos = next ? pos + len + sl : ni;
    }
    ck_assert_uint_eq(cases, 46); /* the .inp file holds 46 inputs */
    ck_assert(*line == '\0');     /* and .out nothing more */
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(t);
    free(inp);
    free(out);
}
END_TEST

START_TEST(test_spm_stories260k)
{
    qe_tokenizer *t = open_tok(qe_test_data("models/stories260K.gguf"));
    /* MANIFEST.md: 512-token SentencePiece vocabulary, BOS=1, EOS=2. */
    ck_assert_uint_eq(qe_tokenizer_n_vocab(t), 512);
    ck_assert_int_eq(qe_tokenizer_bos(t), 1);
    ck_assert_int_eq(qe_tokenizer_eos(t), 2);
    ck_assert(qe_tokenizer_add_bos(t));
    ck_assert(qe_tokenizer_dummy_prefix(t));
    /* OG SentencePiece: "" -> [] without specials, [BOS] with. */
    EXPECT_IDS(t, "", QE_TOK_ADD_SPECIAL, 1);
    qe_tokenizer_ids ids = {0};
    encode(t, "", 0, 0, &ids);
    ck_assert_uint_eq(ids.n, 0);
    /* Every byte has its <0xNN> piece (Llama-2 style vocabulary): byte
     * fallback spells an unknown character as its UTF-8 bytes. */
    encode(t, "\xE8\xA9\xA9", 3, 0, &ids); /* 詩 */
    ck_assert_int_eq(ids.v[ids.n - 1], qe_tokenizer_find(t, "<0xA9>", 6));
    ck_assert_int_eq(ids.v[ids.n - 3], qe_tokenizer_find(t, "<0xE8>", 6));
    size_t n;
    const char *p = qe_tokenizer_piece(t, qe_tokenizer_find(t, "<0x0A>", 6), &n);
    ck_assert(n == 1 && p[0] == '\n');
    p = qe_tokenizer_token_text(t, 1, &n);
    ck_assert(n == 3 && !memcmp(p, "<s>", 3));
    ck_assert_int_eq(qe_tokenizer_attr_of(t, 1), QE_TOKATTR_CONTROL);
    /* Decoding skips control tokens unless asked. */
    encode(t, "Hi", 2, QE_TOK_ADD_SPECIAL, &ids);
    char *text;
    size_t len;
    OK(qe_tokenizer_decode(t, ids.v, ids.n, 0, &text, &len));
    ck_assert_str_eq(text, "Hi");
    free(text);
    OK(qe_tokenizer_decode(t, ids.v, ids.n, QE_TOK_RENDER_SPECIAL, &text, &len));
    ck_assert_str_eq(text, "<s> Hi");
    free(text);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(t);
}
END_TEST

START_TEST(test_spm_special)
{
    qe_tokenizer *t = open_tok(qe_test_data("vocab/ggml-vocab-phi-3.gguf"));
    int32_t end = qe_tokenizer_find(t, "<|end|>", 7), hi = qe_tokenizer_find(t, "\xE2\x96\x81hi", 5);
    ck_assert(end >= 0 && hi >= 0);
    ck_assert_int_eq(qe_tokenizer_attr_of(t, end), QE_TOKATTR_CONTROL);
    qe_tokenizer_ids ids = {0};
    /* Parsed: the token, then (Phi-3's rstrip) the whitespace after it is
     * dropped and "hi" gets the dummy prefix as text after a special token. */
    encode(t, "<|end|> \n hi", 12, QE_TOK_PARSE_SPECIAL, &ids);
    ck_assert_uint_eq(ids.n, 2);
    ck_assert_int_eq(ids.v[0], end);
    ck_assert_int_eq(ids.v[1], hi);
    /* Not parsed: plain text, the control token never appears. */
    encode(t, "<|end|> \n hi", 12, 0, &ids);
    ck_assert_uint_gt(ids.n, 3);
    for (size_t i = 0; i < ids.n; i++)
        ck_assert_int_ne(ids.v[i], end);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(t);
}
END_TEST

START_TEST(test_spm_roundtrip)
{
    static const char *models[] = {"models/stories260K.gguf", "vocab/ggml-vocab-phi-3.gguf"};
    static const char *texts[] = {"text/wiki.test.raw", "text/tinyshakespeare_input.txt"};
    for (size_t m = 0; m < 2; m++) {
        qe_tokenizer *t = open_tok(qe_test_data(models[m]));
        for (size_t k = 0; k < 2; k++) {
            size_t n;
            char *text = slurp(qe_test_data(texts[k]), &n);
            roundtrip(t, text, n, QE_TOK_ADD_SPECIAL, texts[k]);
            free(text);
        }
        qe_tokenizer_close(t);
    }
}
END_TEST

/* ---- fixtures from Hugging Face tokenizers ---- */

typedef struct fixture {
    size_t n_tokens;
    char sha256[65];
    int32_t *prefix;
    size_t n_prefix;
} fixture;

static void load_fixture(const char *name, fixture *fx)
{
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    size_t n;
    char *s = slurp(path, &n), *save = NULL;
    memset(fx, 0, sizeof *fx);
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "n_tokens ", 9))
            fx->n_tokens = strtoull(line + 9, NULL, 10);
        else if (!strncmp(line, "sha256 ", 7))
            snprintf(fx->sha256, sizeof fx->sha256, "%s", line + 7);
        else if (!strncmp(line, "prefix ", 7)) {
            fx->prefix = malloc(strlen(line) * sizeof *fx->prefix);
            char *q = line + 7, *end;
            for (long v = strtol(q, &end, 10); end != q; q = end, v = strtol(q, &end, 10))
                fx->prefix[fx->n_prefix++] = (int32_t)v;
        }
    }
    ck_assert_msg(fx->n_tokens && strlen(fx->sha256) == 64 && fx->n_prefix > 100, "%s: incomplete fixture", path);
    free(s);
}

/* Tokenize a whole data file as one string (with specials, as datasets are)
 * and compare with the fixture. */
static void check_fixture(const qe_tokenizer *t, const char *fixture_name, const char *text_rel)
{
    fixture fx;
    load_fixture(fixture_name, &fx);
    size_t n;
    char *text = slurp(qe_test_data(text_rel), &n);
    qe_tokenizer_ids ids = {0};
    encode(t, text, n, QE_TOK_ADD_SPECIAL, &ids);
    for (size_t i = 0; i < fx.n_prefix && i < ids.n; i++)
        ck_assert_msg(ids.v[i] == fx.prefix[i], "%s: id %zu is %d, the oracle says %d", fixture_name, i, ids.v[i],
                      fx.prefix[i]);
    ck_assert_msg(ids.n == fx.n_tokens, "%s: %zu tokens, the oracle says %zu", fixture_name, ids.n, fx.n_tokens);
    /* The oracle's rule: SHA-256 of the ids as u32 little-endian, in order. */
    uint8_t *le = malloc(ids.n * 4), d[QE_HASH_SHA256_BYTES];
    for (size_t i = 0; i < ids.n; i++)
        for (int b = 0; b < 4; b++)
            le[4 * i + b] = (uint8_t)((uint32_t)ids.v[i] >> (8 * b));
    qe_hash_sha256_buf(le, ids.n * 4, d);
    char hex[65];
    qe_hash_hex(d, sizeof d, hex);
    ck_assert_msg(!strcmp(hex, fx.sha256), "%s: sha256 %s, the oracle says %s", fixture_name, hex, fx.sha256);
    free(le);
    free(text);
    free(fx.prefix);
    qe_tokenizer_ids_free(&ids);
}

/* The text without the characters the vocabulary lacks (which become UNK). */
static char *known_only(const qe_tokenizer *t, const char *s, size_t n, size_t *out_n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t c = qe_unicode_decode(s + i, n - i, &cp);
        if (qe_tokenizer_find(t, s + i, c) >= 0 || s[i] == ' ') {
            memcpy(o + k, s + i, c);
            k += c;
        }
        i += c;
    }
    *out_n = k;
    return o;
}

START_TEST(test_hf_tinystories)
{
    qe_tokenizer *t = open_tok(qe_test_data("models/TinyStories-656K"));
    ck_assert_int_eq(qe_tokenizer_kind_of(t), QE_TOKENIZER_HF);
    /* tokenizer.json: 2048 tokens, <|start_story|> = 1 added by the
     * TemplateProcessing post-processor, EOS <|end_story|> = 2 from
     * tokenizer_config.json, <unk> = 0. */
    ck_assert_uint_eq(qe_tokenizer_n_vocab(t), 2048);
    ck_assert_int_eq(qe_tokenizer_bos(t), 1);
    ck_assert_int_eq(qe_tokenizer_eos(t), 2);
    ck_assert_int_eq(qe_tokenizer_unk(t), 0);
    ck_assert(qe_tokenizer_add_bos(t) && !qe_tokenizer_add_eos(t));
    ck_assert(qe_tokenizer_dummy_prefix(t));
    check_fixture(t, "tok_tinystories656k_wiki.txt", "text/wiki.test.raw");
    check_fixture(t, "tok_tinystories656k_tinyshakespeare.txt", "text/tinyshakespeare_input.txt");
    /* Cases from tokenizers 0.23.3 (encode(s).ids; HF always matches added
     * tokens, which is qeval's QE_TOK_PARSE_SPECIAL). The normalizer prepends
     * "▁" to the added tokens' patterns too, so "▁<|end_story|>" matches
     * only after a space. */
    const unsigned both = QE_TOK_ADD_SPECIAL | QE_TOK_PARSE_SPECIAL;
    EXPECT_IDS(t, "Once upon a time<|end_story|> The end", both, 1, 80, 147, 201, 282, 57, 208, 183, 209, 210, 80,
               247, 183);
    EXPECT_IDS(t, " <|end_story|>x", both, 1, 80, 2, 76);
    EXPECT_IDS(t, "<|start_story|>Once", both, 1, 1, 147, 682);
    EXPECT_IDS(t, "x <unk> y", both, 1, 80, 76, 0, 80, 77);
    EXPECT_IDS(t, "", both, 1);
    /* UNK runs fuse (fuse_unk): two unknown characters, one UNK (tokenizers: [80, 0]). */
    EXPECT_IDS(t, "\xE8\xA9\xA9\xE8\xA9\xA9", 0, 80, 0);
    qe_tokenizer_close(t);
}
END_TEST

START_TEST(test_hf_roundtrip)
{
    qe_tokenizer *t = open_tok(qe_test_data("models/TinyStories-656K/tokenizer.json"));
    static const char *texts[] = {"text/wiki.test.raw", "text/tinyshakespeare_input.txt"};
    for (size_t k = 0; k < 2; k++) {
        size_t n, m;
        char *text = slurp(qe_test_data(texts[k]), &n);
        char *known = known_only(t, text, n, &m);
        ck_assert_uint_gt(m, n * 9 / 10);
        roundtrip(t, known, m, QE_TOK_ADD_SPECIAL, texts[k]);
        free(known);
        free(text);
    }
    qe_tokenizer_close(t);
}
END_TEST

/* ---- byte-level BPE pre-tokenizers against tokenizers (no model needed) ---- */

static void check_cases(const qe_tokenizer *t, const json_t *cases, const json_t *expected, const char *what)
{
    qe_tokenizer_ids ids = {0};
    for (size_t c = 0; c < json_array_size(cases); c++) {
        const json_t *cs = json_array_get(cases, c), *ex = json_array_get(expected, c);
        encode(t, json_string_value(cs), json_string_length(cs), QE_TOK_PARSE_SPECIAL, &ids);
        size_t k = 0;
        while (k < ids.n && k < json_array_size(ex) && ids.v[k] == json_integer_value(json_array_get(ex, k)))
            k++;
        ck_assert_msg(k == ids.n && k == json_array_size(ex),
                      "%s, case %zu ('%.40s'): differs at id %zu (%zu ids, the oracle has %zu)", what, c,
                      json_string_value(cs), k, ids.n, json_array_size(ex));
    }
    qe_tokenizer_ids_free(&ids);
}

START_TEST(test_bpe_pretok_oracle)
{
    /* tok_bpe_cases.json: an 800-token byte-level BPE and, for each
     * pre-tokenizer llama.cpp names, the ids Hugging Face tokenizers gives a
     * set of cases with the equivalent pre_tokenizer. The same vocabulary
     * goes through qeval twice: as a GGUF (tokenizer.ggml.pre = the name) and
     * as a tokenizer.json (the oracle's pre_tokenizer). */
    json_error_t err;
    json_t *fx = json_load_file("tests/fixtures/tok_bpe_cases.json", 0, &err);
    ck_assert_msg(fx != NULL, "tok_bpe_cases.json: line %d: %s", err.line, err.text);
    const json_t *vocab = json_object_get(fx, "vocab"), *merges = json_object_get(fx, "merges"),
                 *cases = json_object_get(fx, "cases");
    size_t nv = json_array_size(vocab), nm = json_array_size(merges);
    ck_assert(nv == 800 && nm > 100 && json_array_size(cases) > 10);
    const char **toks = malloc(nv * sizeof *toks), **mer = malloc(nm * sizeof *mer);
    int32_t *types = malloc(nv * sizeof *types);
    for (size_t i = 0; i < nv; i++) {
        toks[i] = json_string_value(json_array_get(vocab, i));
        types[i] = i == 0 ? QE_TOKATTR_CONTROL : QE_TOKATTR_NORMAL; /* 0 = <|endoftext|> */
    }
    for (size_t i = 0; i < nm; i++)
        mer[i] = json_string_value(json_array_get(merges, i));
    static const char *pres[] = {"gpt-2", "llama-bpe", "qwen2", "smollm"};
    char *dir = qe_test_tmpdir();
    for (size_t p = 0; p < 4; p++) {
        const json_t *expected = json_object_get(json_object_get(fx, "expected"), pres[p]);
        ck_assert_uint_eq(json_array_size(expected), json_array_size(cases));
        /* As a GGUF. */
        qe_gguf_writer *w = NULL;
        void *buf = NULL;
        size_t size = 0;
        qe_gguf *g = NULL;
        qe_tokenizer *t = NULL;
        OK(qe_gguf_writer_new(3, &w));
        OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
        OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.pre", pres[p]));
        OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, nv));
        OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QE_GGUF_INT32, types, nv));
        OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", mer, nm));
        OK(qe_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0));
        OK(qe_gguf_writer_write_mem(w, &buf, &size));
        OK(qe_gguf_open_mem(buf, size, pres[p], &g));
        OK(qe_tokenizer_from_gguf(g, &t));
        ck_assert_str_eq(qe_tokenizer_pre_name(t), pres[p]);
        check_cases(t, cases, expected, pres[p]);
        qe_tokenizer_close(t);
        qe_gguf_close(g);
        qe_gguf_writer_free(w);
        free(buf);
        /* As a tokenizer.json with the oracle's pre_tokenizer. */
        json_t *jv = json_object(), *jm = json_array(), *root = json_object(), *model = json_object();
        for (size_t i = 0; i < nv; i++)
            json_object_set_new(jv, toks[i], json_integer((json_int_t)i));
        for (size_t i = 0; i < nm; i++)
            json_array_append_new(jm, json_string(mer[i]));
        json_object_set_new(model, "type", json_string("BPE"));
        json_object_set_new(model, "vocab", jv);
        json_object_set_new(model, "merges", jm);
        json_object_set_new(model, "ignore_merges", json_boolean(p == 1));
        json_object_set_new(root, "model", model);
        json_object_set(root, "pre_tokenizer", json_object_get(json_object_get(fx, "pre_tokenizers"), pres[p]));
        json_object_set_new(root, "added_tokens",
                            json_pack("[{s:i, s:s, s:b, s:b}]", "id", 0, "content", "<|endoftext|>", "special", 1,
                                      "normalized", 0));
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.json", dir, pres[p]);
        ck_assert_int_eq(json_dump_file(root, path, 0), 0);
        json_decref(root);
        t = open_tok(path);
        char what[64];
        snprintf(what, sizeof what, "%s (tokenizer.json)", pres[p]);
        check_cases(t, cases, expected, what);
        qe_tokenizer_close(t);
    }
    qe_test_rmtree(dir);
    free(dir);
    free(toks);
    free(mer);
    free(types);
    json_decref(fx);
}
END_TEST

START_TEST(test_hf_metaspace)
{
    /* tok_metaspace_cases.json: TinyStories-656K's tokenizer.json with a
     * Metaspace pre-tokenizer (each prepend_scheme, split or not) instead of
     * its normalizer, and the ids tokenizers gives each case. */
    json_error_t err;
    json_t *fx = json_load_file("tests/fixtures/tok_metaspace_cases.json", 0, &err);
    json_t *base = json_load_file(qe_test_data("models/TinyStories-656K/tokenizer.json"), 0, &err);
    ck_assert(fx && base);
    const json_t *cases = json_object_get(fx, "cases"), *variants = json_object_get(fx, "variants");
    ck_assert_uint_eq(json_array_size(variants), 6);
    char *dir = qe_test_tmpdir();
    for (size_t v = 0; v < json_array_size(variants); v++) {
        const json_t *var = json_array_get(variants, v);
        json_object_set_new(base, "normalizer", json_null());
        json_object_set(base, "pre_tokenizer", json_object_get(var, "pre_tokenizer"));
        char path[1024], what[64];
        snprintf(path, sizeof path, "%s/metaspace%zu.json", dir, v);
        ck_assert_int_eq(json_dump_file(base, path, 0), 0);
        qe_tokenizer *t = open_tok(path);
        ck_assert(qe_tokenizer_dummy_prefix(t) == (v < 4)); /* "always" and "first" prepend */
        snprintf(what, sizeof what, "metaspace variant %zu", v);
        qe_tokenizer_ids ids = {0};
        for (size_t c = 0; c < json_array_size(cases); c++) {
            const json_t *cs = json_array_get(cases, c), *ex = json_array_get(json_object_get(var, "expected"), c);
            encode(t, json_string_value(cs), json_string_length(cs), QE_TOK_ADD_SPECIAL | QE_TOK_PARSE_SPECIAL, &ids);
            size_t k = 0;
            while (k < ids.n && k < json_array_size(ex) && ids.v[k] == json_integer_value(json_array_get(ex, k)))
                k++;
            ck_assert_msg(k == ids.n && k == json_array_size(ex), "%s, case %zu ('%s'): differs at id %zu", what, c,
                          json_string_value(cs), k);
        }
        qe_tokenizer_ids_free(&ids);
        qe_tokenizer_close(t);
    }
    qe_test_rmtree(dir);
    free(dir);
    json_decref(base);
    json_decref(fx);
}
END_TEST

/* ---- SmolLM2 (byte-level BPE), when `make models` has run ---- */

START_TEST(test_bpe_smollm2)
{
    qe_tokenizer *t = open_tok(model_path("smollm2-135m-q4_1.gguf"));
    ck_assert_int_eq(qe_tokenizer_kind_of(t), QE_TOKENIZER_BPE);
    ck_assert_str_eq(qe_tokenizer_pre_name(t), "smollm");
    ck_assert_uint_eq(qe_tokenizer_n_vocab(t), 49152);
    ck_assert(!qe_tokenizer_add_bos(t)); /* tokenizer.ggml.add_bos_token = false */
    check_fixture(t, "tok_smollm2_wiki.txt", "text/wiki.test.raw");
    check_fixture(t, "tok_smollm2_tinyshakespeare.txt", "text/tinyshakespeare_input.txt");
    static const char *texts[] = {"text/wiki.test.raw", "text/tinyshakespeare_input.txt"};
    for (size_t k = 0; k < 2; k++) {
        size_t n;
        char *text = slurp(qe_test_data(texts[k]), &n);
        roundtrip(t, text, n, QE_TOK_ADD_SPECIAL, texts[k]);
        free(text);
    }
    /* Invalid UTF-8 survives: each bad byte is a symbol of its own. */
    roundtrip(t, "ok\xC3(\xE2\x82 z\x80", 9, 0, "invalid UTF-8");
    /* A byte whose alphabet character SmolLM2 lacks (0x04) is dropped, as
     * llama.cpp drops it. */
    qe_tokenizer_ids ids = {0};
    char *back;
    size_t blen;
    encode(t, "a\x04" "b", 3, 0, &ids);
    OK(qe_tokenizer_decode(t, ids.v, ids.n, 0, &back, &blen));
    ck_assert_str_eq(back, "ab");
    free(back);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(t);
}
END_TEST

START_TEST(test_bpe_smollm2_hf_json)
{
    /* The same tokenizer rebuilt as tokenizer.json by the oracle script. */
    qe_tokenizer *t = open_tok(model_path("smollm2-135m-hf"));
    ck_assert_int_eq(qe_tokenizer_kind_of(t), QE_TOKENIZER_HF);
    check_fixture(t, "tok_smollm2_wiki.txt", "text/wiki.test.raw");
    check_fixture(t, "tok_smollm2_tinyshakespeare.txt", "text/tinyshakespeare_input.txt");
    size_t n;
    char *text = slurp(qe_test_data("text/wiki.test.raw"), &n);
    roundtrip(t, text, n, 0, "wiki.test.raw");
    free(text);
    qe_tokenizer_close(t);
}
END_TEST

/* ---- limits ---- */

static qe_gguf_writer *spm_writer(const char *const *tokens, size_t n)
{
    qe_gguf_writer *w = NULL;
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"));
    OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tokens, n));
    return w;
}

/* Open the writer's file from memory as a tokenizer; expect status want and
 * a message containing needle. */
static void expect_gguf(qe_gguf_writer *w, qe_status want, const char *needle)
{
    void *buf = NULL;
    size_t size = 0;
    qe_gguf *g = NULL;
    qe_tokenizer *t = NULL;
    OK(qe_gguf_writer_write_mem(w, &buf, &size));
    OK(qe_gguf_open_mem(buf, size, "bad.gguf", &g));
    qe_status st = qe_tokenizer_from_gguf(g, &t);
    ck_assert_msg(st == want, "expected %s, got %s: %s", qe_status_str(want), qe_status_str(st), qe_errmsg());
    if (needle)
        ck_assert_msg(strstr(qe_errmsg(), needle), "message '%s' lacks '%s'", qe_errmsg(), needle);
    ck_assert(want != QE_OK || t != NULL);
    ck_assert(want == QE_OK || t == NULL);
    qe_tokenizer_close(t);
    qe_gguf_close(g);
    qe_gguf_writer_free(w);
    free(buf);
}

START_TEST(test_limits_gguf)
{
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    qe_gguf_writer *w;

    expect_gguf(spm_writer(toks, 6), QE_OK, NULL);

    OK(qe_gguf_writer_new(3, &w)); /* no tokenizer at all */
    OK(qe_gguf_writer_add_str(w, "general.architecture", "llama"));
    expect_gguf(w, QE_ECORRUPT, "tokenizer.ggml.model");

    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "bert"));
    OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 6));
    expect_gguf(w, QE_EUNSUPPORTED, "bert");

    OK(qe_gguf_writer_new(3, &w)); /* tokens of the wrong type */
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"));
    OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.tokens", QE_GGUF_UINT32, (uint32_t[]){1, 2}, 2));
    expect_gguf(w, QE_ECORRUPT, "tokenizer.ggml.tokens");

    w = spm_writer(toks, 6); /* BOS id outside the vocabulary */
    OK(qe_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 6));
    expect_gguf(w, QE_ECORRUPT, "bos_token_id = 6");

    static const char *const dup[] = {"<unk>", "<s>", "</s>", "a", "a"};
    expect_gguf(spm_writer(dup, 5), QE_ECORRUPT, "tokens[4]");

    static const char *const badutf[] = {"<unk>", "<s>", "</s>", "a\xFF"};
    expect_gguf(spm_writer(badutf, 4), QE_ECORRUPT, "tokens[3]: invalid UTF-8");

    w = spm_writer(toks, 6); /* fewer scores than tokens */
    OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.scores", QE_GGUF_FLOAT32, (float[]){0, 0, 0}, 3));
    expect_gguf(w, QE_ECORRUPT, "tokenizer.ggml.scores");

    w = spm_writer(toks, 6); /* a BYTE token that is not <0xNN> */
    OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QE_GGUF_INT32, (int32_t[]){2, 3, 3, 6, 1, 1}, 6));
    expect_gguf(w, QE_ECORRUPT, "BYTE");

    static const char *const one[] = {"a"}; /* default BOS 1 is outside: add_bos has no token */
    expect_gguf(spm_writer(one, 1), QE_ECORRUPT, "add_bos_token");

    /* gpt2: merges required, must name tokens, pre-tokenizer must be known. */
    static const char *const bt[] = {"a", "b", "ab"};
    static const char *const merges_ok[] = {"a b"}, *const merges_missing[] = {"a c"}, *const merges_nosp[] = {"ab"};
    const char *const *merge_sets[] = {merges_ok, merges_missing, merges_nosp, NULL};
    const qe_status want[] = {QE_OK, QE_ECORRUPT, QE_ECORRUPT, QE_ECORRUPT};
    const char *needle[] = {NULL, "merges[0] = 'a c': piece 'c'", "expected two pieces", "merges' is missing"};
    for (int k = 0; k < 4; k++) {
        OK(qe_gguf_writer_new(3, &w));
        OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
        OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt-2"));
        OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", bt, 3));
        if (merge_sets[k])
            OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merge_sets[k], 1));
        expect_gguf(w, want[k], needle[k]);
    }
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.pre", "tekken"));
    OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", bt, 3));
    OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges_ok, 1));
    expect_gguf(w, QE_EUNSUPPORTED, "tekken");
}
END_TEST

/* Write a tokenizer.json into a fresh directory and open it. */
static void expect_json(const char *json, qe_status want, const char *needle)
{
    char *dir = qe_test_tmpdir();
    char *path = qe_test_write(dir, "tokenizer.json", json, strlen(json));
    qe_tokenizer *t = NULL;
    qe_status st = qe_tokenizer_open(dir, &t);
    ck_assert_msg(st == want, "expected %s, got %s: %s\n%s", qe_status_str(want), qe_status_str(st), qe_errmsg(), json);
    if (needle)
        ck_assert_msg(strstr(qe_errmsg(), needle), "message '%s' lacks '%s'", qe_errmsg(), needle);
    qe_tokenizer_close(t);
    qe_test_rmtree(dir);
    free(path);
    free(dir);
}

#define JSON_MODEL(vocab, merges) "{\"model\": {\"type\": \"BPE\", \"vocab\": " vocab ", \"merges\": " merges "}"

START_TEST(test_limits_json)
{
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 1, \"ab\": 2}", "[\"a b\"]") "}", QE_OK, NULL);
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 1, \"ab\": 2}", "[[\"a\", \"b\"]]") "}", QE_OK, NULL);
    expect_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}", QE_ECORRUPT, "line 1");
    expect_json("[1, 2]", QE_ECORRUPT, "the top level");
    expect_json("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", QE_EUNSUPPORTED, "Unigram");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 2}", "[]") "}", QE_ECORRUPT, "no token has id 1");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 0}", "[]") "}", QE_ECORRUPT, "id 0 is used by both");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": \"1\"}", "[]") "}", QE_ECORRUPT, "model.vocab['b']");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 99999999}", "[]") "}", QE_ECORRUPT, "model.vocab['b']");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 1}", "[\"a b\"]") "}", QE_ECORRUPT, "merges[0] = 'a b': the merged");
    expect_json(JSON_MODEL("{\"a\": 0, \"b\": 1}", "[\"a x\"]") "}", QE_ECORRUPT, "piece 'x'");
    expect_json(JSON_MODEL("{\"a\": 0}", "[7]") "}", QE_ECORRUPT, "merges[0] is an integer");
    expect_json(JSON_MODEL("{\"a\": 0}", "{}") "}", QE_ECORRUPT, "model.merges is an object");
    expect_json("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", QE_ECORRUPT, "model.vocab is missing");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"normalizer\": {\"type\": \"NFKC\"}}", QE_EUNSUPPORTED,
                "normalizer.type 'NFKC'");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
                QE_EUNSUPPORTED, "Whitespace");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                "{\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\", \"invert\": false}}",
                QE_EUNSUPPORTED, "Split");
    /* Sequence components name the element at fault */
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": "
                "[{\"type\": \"Prepend\", \"prepend\": \"x\"}, {\"type\": \"NFKC\"}]}}",
                QE_EUNSUPPORTED, "normalizer.normalizers[1].type 'NFKC'");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"normalizer\": {\"prepend\": \"x\"}}", QE_ECORRUPT,
                "normalizer.type is missing");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"pre_tokenizer\": {\"type\": \"Sequence\", "
                "\"pretokenizers\": {}}}", QE_ECORRUPT, "pre_tokenizer.pretokenizers is an object");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"pre_tokenizer\": {\"type\": \"Sequence\", "
                "\"pretokenizers\": [{}]}}", QE_ECORRUPT, "pre_tokenizer.pretokenizers[0].type is missing");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"post_processor\": {\"type\": \"Sequence\", "
                "\"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": \"BertProcessing\"}]}}",
                QE_EUNSUPPORTED, "post_processor.processors[1].type 'BertProcessing'");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"added_tokens\": [{\"id\": 0, \"content\": \"b\"}]}",
                QE_ECORRUPT, "'a' in model.vocab but 'b' here");
    /* a newline in a quoted token keeps the message one line (fuzz_tokjson) */
    expect_json(JSON_MODEL("{\"\\n\": 0}", "[]") ", \"added_tokens\": [{\"id\": 0, \"content\": \"b\"}]}",
                QE_ECORRUPT, "id 0 is '\\x0a' in model.vocab but 'b' here");
    {
        /* a word none of whose characters the vocabulary has, with no unknown
           token: HF drops them, the word gives no ids (found by
           fuzz_tokjson: the word cache was handed a NULL id array) */
        const char *json = JSON_MODEL("{\"a\": 0}", "[]") "}";
        char *dir = qe_test_tmpdir();
        char *path = qe_test_write(dir, "tokenizer.json", json, strlen(json));
        qe_tokenizer *t = NULL;
        OK(qe_tokenizer_open(dir, &t));
        qe_tokenizer_ids ids = {0};
        OK(qe_tokenizer_encode(t, "b", 1, 0, &ids));
        ck_assert_uint_eq(ids.n, 0);
        OK(qe_tokenizer_encode(t, "ba", 2, 0, &ids));
        ck_assert_uint_eq(ids.n, 1);
        ck_assert_int_eq(ids.v[0], 0);
        qe_tokenizer_ids_free(&ids);
        qe_tokenizer_close(t);
        qe_test_rmtree(dir);
        free(path);
        free(dir);
    }
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"added_tokens\": [{\"id\": -1, \"content\": \"b\"}]}",
                QE_ECORRUPT, "added_tokens[0]");
    expect_json(JSON_MODEL("{\"a\": 0}", "[]") ", \"post_processor\": {\"type\": \"BertProcessing\"}}",
                QE_EUNSUPPORTED, "BertProcessing");
    expect_json("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<u>\"}}",
                QE_ECORRUPT, "unk_token '<u>'");
    qe_tokenizer *t = NULL;
    ck_assert_int_eq(qe_tokenizer_open("/nonexistent/qeval/tokenizer.json", &t), QE_EIO);
    ck_assert_int_eq(qe_tokenizer_open("/nonexistent/qeval", &t), QE_EIO);
    ck_assert(t == NULL);
    qe_tokenizer_close(NULL);
}
END_TEST

START_TEST(test_limits_input)
{
    qe_tokenizer *spm = open_tok(qe_test_data("models/stories260K.gguf"));
    qe_tokenizer *hf = open_tok(qe_test_data("models/TinyStories-656K"));
    qe_tokenizer_ids ids = {0};
    /* Empty input: nothing, or only BOS. */
    encode(hf, "", 0, 0, &ids);
    ck_assert_uint_eq(ids.n, 0);
    /* Invalid UTF-8: SPM byte-falls-back exactly; HF (no byte pieces here)
     * maps the bytes to UNK. */
    static const char bad[] = "a\xFF\xFE b\xE2\x82 c\xC0\x80\xED\xA0\x80";
    roundtrip(spm, bad, sizeof bad - 1, QE_TOK_ADD_SPECIAL, "invalid UTF-8 (SPM)");
    encode(spm, "\xFF", 1, 0, &ids);
    ck_assert_int_eq(ids.v[ids.n - 1], qe_tokenizer_find(spm, "<0xFF>", 6));
    encode(hf, bad, sizeof bad - 1, 0, &ids);
    int unk = 0;
    for (size_t i = 0; i < ids.n; i++)
        unk += ids.v[i] == qe_tokenizer_unk(hf);
    ck_assert_int_ge(unk, 3);
    /* NUL bytes are text like any other. */
    roundtrip(spm, "a\0b", 3, 0, "NUL");
    /* Very long input: 8 MiB without a space, and 2 MiB of one repeated word. */
    size_t big = 8u << 20;
    char *s = malloc(big);
    for (size_t i = 0; i < big; i++)
        s[i] = (char)('a' + (i * 7 + i / 3) % 26);
    roundtrip(spm, s, big, QE_TOK_ADD_SPECIAL, "8 MiB (SPM)");
    roundtrip(hf, s, big, QE_TOK_ADD_SPECIAL, "8 MiB (HF)");
    for (size_t i = 0; i < (2u << 20); i++)
        s[i] = "the cat "[i % 8];
    roundtrip(spm, s, 2u << 20, 0, "2 MiB of words (SPM)");
    free(s);
    /* Caller buffer too small: QE_ERANGE, with the count needed. */
    int32_t buf[2];
    size_t need = 0;
    ck_assert_int_eq(qe_tokenizer_encode_buf(spm, "hello world", 11, QE_TOK_ADD_SPECIAL, buf, 2, &need), QE_ERANGE);
    ck_assert_uint_gt(need, 2);
    ck_assert_int_eq(buf[0], 1);
    /* Nothing encoded into no buffer (fuzz_tokenize found the empty copy
       reading a NULL id array): QE_OK and a count of 0. */
    need = 1;
    ck_assert_int_eq(qe_tokenizer_encode_buf(spm, "", 0, 0, NULL, 0, &need), QE_OK);
    ck_assert_uint_eq(need, 0);
    /* Decoding an id outside the vocabulary. */
    char *text = NULL;
    size_t len;
    int32_t bad_ids[] = {5, 512};
    ck_assert_int_eq(qe_tokenizer_decode(spm, bad_ids, 2, 0, &text, &len), QE_EINVAL);
    ck_assert(strstr(qe_errmsg(), "512"));
    bad_ids[1] = -1;
    ck_assert_int_eq(qe_tokenizer_decode(spm, bad_ids, 2, 0, &text, &len), QE_EINVAL);
    ck_assert(text == NULL);
    ck_assert(qe_tokenizer_piece(spm, 512, &len) == NULL && len == 0);
    ck_assert(qe_tokenizer_token_text(spm, -1, &len) == NULL);
    ck_assert_int_eq(qe_tokenizer_attr_of(spm, 99999), QE_TOKATTR_UNDEFINED);
    ck_assert_int_eq(qe_tokenizer_find(spm, "", 0), -1);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(spm);
    qe_tokenizer_close(hf);
}
END_TEST

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *uc = tcase_create("unicode");
    tcase_add_test(uc, test_unicode_classes);
    tcase_add_test(uc, test_unicode_utf8);
    tcase_add_test(uc, test_unicode_bytelevel);
    tcase_add_test(uc, test_pretok);
    suite_add_tcase(s, uc);

    TCase *spm = tcase_create("spm");
    tcase_add_test(spm, test_spm_llama_vectors);
    tcase_add_test(spm, test_spm_stories260k);
    tcase_add_test(spm, test_spm_special);
    tcase_add_test(spm, test_spm_roundtrip);
    tcase_set_timeout(spm, 60);
    suite_add_tcase(s, spm);

    TCase *bpe = tcase_create("bpe");
    tcase_add_test(bpe, test_bpe_pretok_oracle);
    tcase_set_timeout(bpe, 60);
    suite_add_tcase(s, bpe);

    TCase *hf = tcase_create("hf");
    tcase_add_test(hf, test_hf_tinystories);
    tcase_add_test(hf, test_hf_roundtrip);
    tcase_add_test(hf, test_hf_metaspace);
    tcase_set_timeout(hf, 60);
    suite_add_tcase(s, hf);

    if (exists(model_path("smollm2-135m-q4_1.gguf"))) {
        TCase *sm = tcase_create("smollm2");
        tcase_add_test(sm, test_bpe_smollm2);
        if (exists(model_path("smollm2-135m-hf/tokenizer.json")))
            tcase_add_test(sm, test_bpe_smollm2_hf_json);
        else
            printf("# tokenizer: %s absent (run tests/oracle/hf_tokenize.py): HF-json SmolLM2 case skipped\n",
                   model_path("smollm2-135m-hf/tokenizer.json"));
        tcase_set_timeout(sm, 60);
        suite_add_tcase(s, sm);
    } else {
        printf("# tokenizer: %s absent (run `make models`): SmolLM2 cases skipped\n",
               model_path("smollm2-135m-q4_1.gguf"));
    }

    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits_gguf);
    tcase_add_test(lim, test_limits_json);
    tcase_add_test(lim, test_limits_input);
    tcase_set_timeout(lim, 120);
    suite_add_tcase(s, lim);
    return s;
}
