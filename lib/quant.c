/* quant.c - GGML block codecs: quantize F32/F16/Q8_0/Q4_0 rows, dequantize
 * the legacy (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and K-quant (Q4_K, Q5_K, Q6_K)
 * rows that llama.cpp files hold. The layouts are spelled out in quant.h.
 *
 * Written from ggml's reference functions (quantize_row_*_ref,
 * dequantize_row_*): same float expressions in the same order, so output is
 * bit-identical. Every block is read through byte offsets and memcpy, never a
 * struct cast, so rows may sit at any address.
 *
 * Threading: pure functions, safe from any thread.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#define QK 32   /* elements per legacy block */
#define QK_K 256 /* elements per K-quant super-block */
#define F16_NAN 0x7e00u

static float rd_f16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return qe_f16_to_f32(h);
}

static void wr_f16(unsigned char *p, uint16_t h) { memcpy(p, &h, 2); }

int qe_quant_can_quantize(qe_dtype t)
{
    return t == QE_DT_F32 || t == QE_DT_F16 || t == QE_DT_Q8_0 || t == QE_DT_Q4_0;
}

int qe_quant_can_dequantize(qe_dtype t)
{
    switch (t) {
    case QE_DT_F32: case QE_DT_F16: case QE_DT_BF16:
    case QE_DT_Q4_0: case QE_DT_Q4_1: case QE_DT_Q5_0: case QE_DT_Q5_1: case QE_DT_Q8_0:
    case QE_DT_Q4_K: case QE_DT_Q5_K: case QE_DT_Q6_K:
        return 1;
    default:
        return 0;
    }
}

qe_status qe_quant_check_row(qe_dtype t, int64_t n, int quantize)
{
    if (quantize ? !qe_quant_can_quantize(t) : !qe_quant_can_dequantize(t))
        return qe_fail(QE_EUNSUPPORTED, "%s: qeval cannot %s rows of this type", qe_dtype_name(t),
                       quantize ? "write" : "read");
    int64_t blk = (int64_t)qe_dtype_block(t);
    if (n < 1 || n % blk != 0)
        return qe_fail(QE_EINVAL, "%s: a row of %lld elements, expected a positive multiple of %lld",
                       qe_dtype_name(t), (long long)n, (long long)blk);
    return QE_OK;
}

/* ---- quantization ---- */

static int block_finite(const float *x, int n)
{
    for (int j = 0; j < n; j++)
        if (!isfinite(x[j]))
            return 0;
    return 1;
}

/* roundf(v) as an int8, saturated. Finite blocks never leave [-127, 127];
 * the guard only keeps a subnormal d (1/d = inf, 0 * inf = NaN) defined. */
static int8_t sat_i8(float v)
{
    if (!(v > -128.0f)) /* NaN too */
        return v < 0.0f ? -128 : 0;
    return v >= 127.0f ? 127 : (int8_t)v;
}

static void quantize_q8_0(const float *x, int64_t n, unsigned char *dst)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, dst += 2 + QK) {
        if (!block_finite(x, QK)) {
            wr_f16(dst, F16_NAN);
            memset(dst + 2, 0, QK);
            continue;
        }
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(dst, qe_f32_to_f16(d));
        for (int j = 0; j < QK; j++) {
            float v = x[j] * id;
            dst[2 + j] = (unsigned char)sat_i8(roundf(v));
        }
    }
}

/* min(15, (int)v) for v = x*id + 8.5; finite blocks give v in (0, 16.5]. */
static unsigned nibble_q4_0(float v)
{
    if (v >= 15.0f)
        return 15;
    return v > 0.0f ? (unsigned)v : 0; /* NaN -> 0 */
}

static void quantize_q4_0(const float *x, int64_t n, unsigned char *dst)
{
    for (int64_t b = 0; b < n / QK; b++, x += QK, dst += 2 + QK / 2) {
        if (!block_finite(x, QK)) {
            wr_f16(dst, F16_NAN);
            memset(dst + 2, 0, QK / 2);
            continue;
        }
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(dst, qe_f32_to_f16(d));
        for (int j = 0; j < QK / 2; j++) {
            /* Separate statements: no compiler may fuse the multiply-add. */
            float v0 = x[j] * id, v1 = x[j + QK / 2] * id;
            v0 += 8.5f;
            v1 += 8.5f;
            dst[2 + j] = (unsigned char)(nibble_q4_0(v0) | nibble_q4_0(v1) << 4);
        }
    }
}

void qe_quant_quantize_row(qe_dtype t, const float *x, int64_t n, void *dst)
{
    QE_ASSERT(qe_quant_check_row(t, n, 1) == QE_OK);
    unsigned char *p = dst;
    switch (t) {
    case QE_DT_F32:
        memcpy(p, x, (size_t)n * sizeof(float));
        break;
    case QE_DT_F16:
        for (int64_t i = 0; i < n; i++)
            wr_f16(p + 2 * i, qe_f32_to_f16(x[i]));
        break;
    case QE_DT_Q8_0:
        quantize_q8_0(x, n, p);
        break;
    case QE_DT_Q4_0:
        quantize_q4_0(x, n, p);
        break;
    default:
        QE_ASSERT(!"qe_quant_quantize_row: unsupported type");
    }
}

/* ---- legacy 32-element blocks ---- */

static void dequantize_q8_0(const unsigned char *b, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++, b += 34, y += QK) {
        const float d = rd_f16(b);
        for (int j = 0; j < QK; j++)
            y[j] = (int8_t)b[2 + j] * d;
    }
}

static void dequantize_q4_0(const unsigned char *b, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++, b += 18, y += QK) {
        const float d = rd_f16(b);
        const unsigned char *qs = b + 2;
        for (int j = 0; j < QK / 2; j++) {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + QK / 2] = ((qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequantize_q4_1(const unsigned char *b, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++, b += 20, y += QK) {
        const float d = rd_f16(b), m = rd_f16(b + 2);
        const unsigned char *qs = b + 4;
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + QK / 2] = (qs[j] >> 4) * d + m;
        }
    }
}

/* Q5_0 / Q5_1: the fifth bit of element j is bit j of the u32 qh. */
static void dequantize_q5(const unsigned char *b, int64_t nb, float *y, int has_min)
{
    const size_t bytes = has_min ? 24 : 22, qh_off = has_min ? 4 : 2;
    for (int64_t i = 0; i < nb; i++, b += bytes, y += QK) {
        const float d = rd_f16(b), m = has_min ? rd_f16(b + 2) : 0.0f;
        const uint32_t qh = (uint32_t)b[qh_off] | (uint32_t)b[qh_off + 1] << 8 | (uint32_t)b[qh_off + 2] << 16 |
             (uint32_t)b[qh_off + 3] << 24; /* little-endian on any host */
        const unsigned char *qs = b + qh_off + 4;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4 & 0x10), h1 = (int)((qh >> (j + 12)) & 0x10);
            const int x0 = (qs[j] & 0x0F) | h0, x1 = (qs[j] >> 4) | h1;
            if (has_min) {
                y[j] = x0 * d + m;
                y[j + QK / 2] = x1 * d + m;
            } else {
                y[j] = (x0 - 16) * d;
                y[j + QK / 2] = (x1 - 16) * d;
            }
        }
    }
}

/* ---- K-quants (256-element super-blocks) ---- */

/* ggml's get_scale_min_k4: 6-bit scale and min of sub-block j (0..7). */
static void scale_min_k4(int j, const unsigned char *s, unsigned *sc, unsigned *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | (unsigned)(s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (unsigned)(s[j] >> 6) << 4;
    }
}

/* Q4_K (has_high = 0) and Q5_K (has_high = 1). */
static void dequantize_q45_k(const unsigned char *b, int64_t nb, float *y, int has_high)
{
    const size_t bytes = has_high ? 176 : 144;
    for (int64_t i = 0; i < nb; i++, b += bytes) {
        const float d = rd_f16(b), min = rd_f16(b + 2);
        const unsigned char *scales = b + 4;
        const unsigned char *qh = b + 16;            /* Q5_K only */
        const unsigned char *q = b + (has_high ? 48 : 16);
        unsigned u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64, q += 32, u1 <<= 2, u2 <<= 2) {
            unsigned sc, m;
            scale_min_k4(j / 32, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(j / 32 + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) {
                int v = q[l] & 0x0F;
                if (has_high && (qh[l] & u1))
                    v += 16;
                *y++ = d1 * v - m1;
            }
            for (int l = 0; l < 32; l++) {
                int v = q[l] >> 4;
                if (has_high && (qh[l] & u2))
                    v += 16;
                *y++ = d2 * v - m2;
            }
        }
    }
}

static void dequantize_q6_k(const unsigned char *b, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const float d = rd_f16(b + 208);
        const unsigned char *ql = b, *qh = b + 128;
        const signed char *sc = (const signed char *)(b + 192);
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

void qe_quant_dequantize_row(qe_dtype t, const void *src, int64_t n, float *y)
{
    QE_ASSERT(qe_quant_check_row(t, n, 0) == QE_OK);
    const unsigned char *p = src;
    switch (t) {
    case QE_DT_F32:
        memcpy(y, p, (size_t)n * sizeof(float));
        break;
    case QE_DT_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = rd_f16(p + 2 * i);
        break;
    case QE_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = qe_bf16_to_f32(h);
        }
        break;
    case QE_DT_Q8_0: dequantize_q8_0(p, n / QK, y); break;
    case QE_DT_Q4_0: dequantize_q4_0(p, n / QK, y); break;
    case QE_DT_Q4_1: dequantize_q4_1(p, n / QK, y); break;
    case QE_DT_Q5_0: dequantize_q5(p, n / QK, y, 0); break;
    case QE_DT_Q5_1: dequantize_q5(p, n / QK, y, 1); break;
    case QE_DT_Q4_K: dequantize_q45_k(p, n / QK_K, y, 0); break;
    case QE_DT_Q5_K: dequantize_q45_k(p, n / QK_K, y, 1); break;
    case QE_DT_Q6_K: dequantize_q6_k(p, n / QK_K, y); break;
    default:
        QE_ASSERT(!"qe_quant_dequantize_row: unsupported type");
    }
}
