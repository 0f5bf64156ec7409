/* turboquant.c - TurboQuant head-vector codec (layout, sign stream and
 * arithmetic are specified in turboquant.h so device kernels can match it).
 *
 * Scratch lives on the stack (d <= 1024 floats); no allocation.
 * Threading: pure functions, safe from any thread.
 */
#include "turboquant.h"

#include <math.h>
#include <string.h>

#include "dtype.h"

#define F16_NAN 0x7e00u

static const float C2[4] = {-1.5104f, -0.4528f, 0.4528f, 1.5104f};
static const float C3[8] = {-2.1520f, -1.3439f, -0.7560f, -0.2451f,
                            0.2451f,  0.7560f,  1.3439f,  2.1520f};
static const float C4[16] = {-2.7326f, -2.0691f, -1.6181f, -1.2562f, -0.9424f, -0.6568f,
                             -0.3881f, -0.1284f, 0.1284f,  0.3881f,  0.6568f,  0.9424f,
                             1.2562f,  1.6181f,  2.0691f,  2.7326f};

const float *qe_turboquant_centroids(int bits)
{
    return bits == 2 ? C2 : bits == 3 ? C3 : bits == 4 ? C4 : NULL;
}

qe_status qe_turboquant_check(int bits, int d)
{
    if (bits < 2 || bits > 4)
        return qe_fail(QE_EINVAL, "TurboQuant: %d bits per value, expected 2, 3 or 4", bits);
    if (d < QE_TURBOQUANT_MIN_DIM || d > QE_TURBOQUANT_MAX_DIM || (d & (d - 1)) != 0)
        return qe_fail(QE_EINVAL,
                       "TurboQuant: head dimension %d, expected a power of two in %d..%d", d,
                       QE_TURBOQUANT_MIN_DIM, QE_TURBOQUANT_MAX_DIM);
    return QE_OK;
}

size_t qe_turboquant_vec_bytes(int bits, int d) { return 2 + (size_t)d * (size_t)bits / 8; }

static uint64_t splitmix64_word(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void qe_turboquant_signs(uint64_t seed, int d, float *s)
{
    uint64_t w = 0;
    for (int i = 0; i < d; i++) {
        if (i % 64 == 0)
            w = splitmix64_word(seed, (uint64_t)i / 64);
        s[i] = (w >> (i % 64)) & 1 ? -1.0f : 1.0f;
    }
}

/* Unnormalized Walsh-Hadamard transform in place, Sylvester order. */
static void fwht(float *t, int d)
{
    for (int len = 1; len < d; len *= 2)
        for (int i = 0; i < d; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                const float a = t[j], b = t[j + len];
                t[j] = a + b;
                t[j + len] = a - b;
            }
}

static void check_args(int bits, int d)
{
    QE_ASSERT(bits >= 2 && bits <= 4 && d >= QE_TURBOQUANT_MIN_DIM &&
              d <= QE_TURBOQUANT_MAX_DIM && (d & (d - 1)) == 0);
}

/* Pack idx[0 .. d-1] as groups of 8 indices in `bits` bytes. */
static void pack(const uint8_t *idx, int d, int bits, unsigned char *p)
{
    for (int g = 0; g < d / 8; g++) {
        uint32_t w = 0;
        for (int k = 0; k < 8; k++)
            w |= (uint32_t)idx[8 * g + k] << (bits * k);
        for (int j = 0; j < bits; j++)
            p[g * bits + j] = (unsigned char)(w >> (8 * j));
    }
}

static void unpack(const unsigned char *p, int d, int bits, uint8_t *idx)
{
    const uint32_t mask = (1u << bits) - 1;
    for (int g = 0; g < d / 8; g++) {
        uint32_t w = 0;
        for (int j = 0; j < bits; j++)
            w |= (uint32_t)p[g * bits + j] << (8 * j);
        for (int k = 0; k < 8; k++)
            idx[8 * g + k] = (uint8_t)((w >> (bits * k)) & mask);
    }
}

void qe_turboquant_quantize(int bits, const float *x, int d, uint64_t seed, void *dst)
{
    check_args(bits, d);
    unsigned char *p = dst;
    float t[QE_TURBOQUANT_MAX_DIM];
    uint8_t idx[QE_TURBOQUANT_MAX_DIM];
    double ss = 0.0;
    int finite = 1;
    for (int i = 0; i < d; i++) {
        ss += (double)x[i] * x[i];
        finite &= isfinite(x[i]) != 0;
    }
    const float norm = (float)sqrt(ss);
    memset(idx, 0, (size_t)d);
    uint16_t h = 0;
    if (!finite) {
        h = F16_NAN;
    } else if (norm > 0.0f) {
        const int n_levels = 1 << bits;
        const float *c = qe_turboquant_centroids(bits);
        float bound[15];
        for (int k = 0; k + 1 < n_levels; k++)
            bound[k] = 0.5f * (c[k] + c[k + 1]);
        qe_turboquant_signs(seed, d, t);
        for (int i = 0; i < d; i++)
            t[i] *= x[i];
        fwht(t, d);
        for (int i = 0; i < d; i++) {
            const float z = t[i] / norm;
            int k = 0;
            while (k + 1 < n_levels && z > bound[k])
                k++;
            idx[i] = (uint8_t)k;
        }
        h = qe_f32_to_f16(norm);
    }
    memcpy(p, &h, 2);
    pack(idx, d, bits, p + 2);
}

/* Centroids of the stored indices, and the stored norm. */
static float decode_centroids(int bits, const unsigned char *p, int d, float *c)
{
    uint8_t idx[QE_TURBOQUANT_MAX_DIM];
    const float *tab = qe_turboquant_centroids(bits);
    uint16_t h;
    memcpy(&h, p, 2);
    unpack(p + 2, d, bits, idx);
    for (int i = 0; i < d; i++)
        c[i] = tab[idx[i]];
    return qe_f16_to_f32(h);
}

void qe_turboquant_dequantize(int bits, const void *src, int d, uint64_t seed, float *y)
{
    check_args(bits, d);
    float s[QE_TURBOQUANT_MAX_DIM];
    const float n = decode_centroids(bits, src, d, y);
    const float scale = n / (float)d;
    fwht(y, d);
    qe_turboquant_signs(seed, d, s);
    for (int i = 0; i < d; i++)
        y[i] = s[i] * (y[i] * scale);
}

void qe_turboquant_dequantize_rotated(int bits, const void *src, int d, float *y)
{
    check_args(bits, d);
    const float n = decode_centroids(bits, src, d, y);
    const float scale = n / sqrtf((float)d);
    for (int i = 0; i < d; i++)
        y[i] *= scale;
}

void qe_turboquant_rotate(const float *x, int d, uint64_t seed, float *out)
{
    QE_ASSERT(d >= 1 && d <= QE_TURBOQUANT_MAX_DIM && (d & (d - 1)) == 0);
    float s[QE_TURBOQUANT_MAX_DIM];
    qe_turboquant_signs(seed, d, s);
    for (int i = 0; i < d; i++)
        out[i] = s[i] * x[i];
    fwht(out, d);
    const float r = sqrtf((float)d);
    for (int i = 0; i < d; i++)
        out[i] /= r;
}

void qe_turboquant_unrotate(const float *y, int d, uint64_t seed, float *out)
{
    QE_ASSERT(d >= 1 && d <= QE_TURBOQUANT_MAX_DIM && (d & (d - 1)) == 0);
    float s[QE_TURBOQUANT_MAX_DIM];
    if (out != y)
        memcpy(out, y, (size_t)d * sizeof *out);
    fwht(out, d);
    qe_turboquant_signs(seed, d, s);
    const float r = sqrtf((float)d);
    for (int i = 0; i < d; i++)
        out[i] = s[i] * (out[i] / r);
}
