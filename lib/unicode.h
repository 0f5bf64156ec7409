/* unicode.h - the Unicode facts the tokenizers need: UTF-8 decoding, code
 * point classes (\p{L}, \p{N}, \s, ...) and GPT-2's byte <-> code point map.
 *
 * The class table is generated (tools/gen_unicode.py -> lib/unicode_data.c)
 * from Python's unicodedata; regenerate it rather than editing it.
 *
 * Threading: pure functions over read-only tables; any thread.
 */
#ifndef QE_UNICODE_H
#define QE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class bits returned by qe_unicode_flags(). The general-category bits are
 * exclusive; SPACE (White_Space) may be combined with SEPARATOR or CONTROL.
 * An unassigned code point (Cn), or anything past U+10FFFF, has flags 0. */
enum {
    QE_UNICODE_LETTER = 1 << 0,    /* \p{L} */
    QE_UNICODE_NUMBER = 1 << 1,    /* \p{N} */
    QE_UNICODE_PUNCT = 1 << 2,     /* \p{P} */
    QE_UNICODE_SYMBOL = 1 << 3,    /* \p{S} */
    QE_UNICODE_MARK = 1 << 4,      /* \p{M} */
    QE_UNICODE_SEPARATOR = 1 << 5, /* \p{Z} */
    QE_UNICODE_CONTROL = 1 << 6,   /* \p{C} except Cn */
    QE_UNICODE_SPACE = 1 << 7      /* White_Space, i.e. regex \s */
};

/* Marks a byte that does not start a valid UTF-8 sequence (see decode). */
#define QE_UNICODE_INVALID 0xFFFFFFFFu

/* Generated table (lib/unicode_data.c): (first code point << 8) | flags,
 * sorted; each entry holds until the next one's first code point. */
extern const uint32_t qe_unicode_ranges[];
extern const size_t qe_unicode_n_ranges;
extern const char qe_unicode_version[]; /* e.g. "14.0.0" */
extern const uint8_t qe_unicode_latin1[256]; /* flags of U+0000..U+00FF */

/* Class bits of a code point (QE_UNICODE_INVALID gives 0). */
unsigned qe_unicode_flags(uint32_t cp);

/* Decode one code point from s[0..n) (n >= 1), strictly as RFC 3629 says (no
 * overlong forms, no surrogates, nothing past U+10FFFF, no truncation).
 * Returns the bytes consumed; for an invalid sequence it consumes 1 byte and
 * stores QE_UNICODE_INVALID in *cp. */
size_t qe_unicode_decode(const char *s, size_t n, uint32_t *cp);

/* UTF-8 of cp (<= 0x10FFFF) into out; returns 1..4, or 0 if cp is too large. */
size_t qe_unicode_encode(uint32_t cp, char out[4]);

/* Length of the UTF-8 sequence a lead byte announces, from its high nibble
 * alone (continuation bytes count as 1): llama.cpp's unicode_len_utf8, which
 * its SentencePiece tokenizer uses to cut text into symbols. */
size_t qe_unicode_lead_len(unsigned char b);

/* 1 if s[0..n) is valid UTF-8; otherwise 0 and the offset of the first bad
 * byte in *bad (may be NULL). */
int qe_unicode_valid(const char *s, size_t n, size_t *bad);

/* GPT-2's byte-level alphabet: every byte maps to a printable code point
 * (printable Latin-1 bytes to themselves, the rest to U+0100 + k). */
uint32_t qe_unicode_byte_to_cp(unsigned char b);
/* Inverse: the byte, or -1 if cp is not in the alphabet. */
int qe_unicode_cp_to_byte(uint32_t cp);

#endif
