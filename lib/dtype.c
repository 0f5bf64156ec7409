/* dtype.c - the GGML type table and scalar float conversions.
 * Pure functions, no state: safe from any thread. */
#include "dtype.h"

#include <string.h>
#include <strings.h>

struct info {
    const char *name;
    uint32_t block, bytes;
};

/* Block sizes from ggml's type traits (QK4_0 = 32, QK_K = 256, ...). */
static const struct info table[QE_DT_MAX] = {
    [QE_DT_F32] = {"f32", 1, 4},       [QE_DT_F16] = {"f16", 1, 2},
    [QE_DT_Q4_0] = {"q4_0", 32, 18},   [QE_DT_Q4_1] = {"q4_1", 32, 20},
    [QE_DT_Q5_0] = {"q5_0", 32, 22},   [QE_DT_Q5_1] = {"q5_1", 32, 24},
    [QE_DT_Q8_0] = {"q8_0", 32, 34},   [QE_DT_Q8_1] = {"q8_1", 32, 36},
    [QE_DT_Q2_K] = {"q2_k", 256, 84},  [QE_DT_Q3_K] = {"q3_k", 256, 110},
    [QE_DT_Q4_K] = {"q4_k", 256, 144}, [QE_DT_Q5_K] = {"q5_k", 256, 176},
    [QE_DT_Q6_K] = {"q6_k", 256, 210}, [QE_DT_Q8_K] = {"q8_k", 256, 292},
    [QE_DT_I8] = {"i8", 1, 1},         [QE_DT_I16] = {"i16", 1, 2},
    [QE_DT_I32] = {"i32", 1, 4},       [QE_DT_I64] = {"i64", 1, 8},
    [QE_DT_F64] = {"f64", 1, 8},       [QE_DT_BF16] = {"bf16", 1, 2},
};

int qe_dtype_known(uint32_t t) { return t < QE_DT_MAX && table[t].name != NULL; }

const char *qe_dtype_name(uint32_t t) { return qe_dtype_known(t) ? table[t].name : "?"; }

qe_status qe_dtype_from_name(const char *name, qe_dtype *out)
{
    for (uint32_t t = 0; t < QE_DT_MAX; t++)
        if (table[t].name && strcasecmp(name, table[t].name) == 0) {
            *out = (qe_dtype)t;
            return QE_OK;
        }
    return qe_fail(QE_EINVAL, "unknown tensor type '%s'", name);
}

uint32_t qe_dtype_block(uint32_t t) { return qe_dtype_known(t) ? table[t].block : 0; }

uint32_t qe_dtype_block_bytes(uint32_t t) { return qe_dtype_known(t) ? table[t].bytes : 0; }

double qe_dtype_bpw(uint32_t t)
{
    return qe_dtype_known(t) ? 8.0 * table[t].bytes / table[t].block : 0.0;
}

qe_status qe_dtype_row_bytes(uint32_t t, int64_t n, uint64_t *out)
{
    if (!qe_dtype_known(t))
        return qe_fail(QE_EUNSUPPORTED, "unknown tensor type %u", t);
    if (n < 0)
        return qe_fail(QE_ECORRUPT, "negative element count %lld", (long long)n);
    if ((uint64_t)n % table[t].block != 0)
        return qe_fail(QE_ECORRUPT, "row of %lld elements is not a multiple of %s's block size %u",
                       (long long)n, table[t].name, table[t].block);
    uint64_t blocks = (uint64_t)n / table[t].block;
    if (blocks > UINT64_MAX / table[t].bytes)
        return qe_fail(QE_ERANGE, "row of %lld %s elements overflows 64-bit size",
                       (long long)n, table[t].name);
    *out = blocks * table[t].bytes;
    return QE_OK;
}

float qe_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t qe_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) /* Inf or NaN (keep NaN quiet and non-zero) */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal half or zero */
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into the exponent, which is still correct */
    return (uint16_t)(sign | half);
}

float qe_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t qe_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
