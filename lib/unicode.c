/* unicode.c - UTF-8, code point classes and the byte-level alphabet.
 *
 * Threading: stateless; the tables are const. Workload: qe_unicode_flags
 * runs once per code point of every tokenized text: a table for Latin-1,
 * else a 12-step bisection of the ~2,300-entry range table.
 */
#include "unicode.h"

unsigned qe_unicode_flags(uint32_t cp)
{
    if (cp < 256)
        return qe_unicode_latin1[cp];
    if (cp > 0x10FFFF)
        return 0;
    /* Bisect for the last entry whose first code point is <= cp. */
    size_t lo = 0, hi = qe_unicode_n_ranges;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((qe_unicode_ranges[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return qe_unicode_ranges[lo] & 0xffu;
}

size_t qe_unicode_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b = u[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, c = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, c = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, c = b & 0x07, min = 0x10000;
    } else {
        *cp = QE_UNICODE_INVALID;
        return 1;
    }
    if (n < len) {
        *cp = QE_UNICODE_INVALID;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = QE_UNICODE_INVALID;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = QE_UNICODE_INVALID;
        return 1;
    }
    *cp = c;
    return len;
}

size_t qe_unicode_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

size_t qe_unicode_lead_len(unsigned char b)
{
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[b >> 4];
}

int qe_unicode_valid(const char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = qe_unicode_decode(s + i, n - i, &cp);
        if (cp == QE_UNICODE_INVALID) {
            if (bad)
                *bad = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* Bytes GPT-2 keeps as themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

/* The 68 others get U+0100 + their rank among themselves, in byte order:
 * 0x00..0x20 -> ranks 0..32, 0x7F..0xA0 -> 33..66, 0xAD -> 67. */
uint32_t qe_unicode_byte_to_cp(unsigned char b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b <= 0xA0)
        return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67; /* 0xAD */
}

int qe_unicode_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = cp - 0x100;
    if (k <= 32)
        return (int)k;
    if (k <= 66)
        return (int)(0x7F + k - 33);
    return k == 67 ? 0xAD : -1;
}
