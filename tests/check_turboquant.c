/* check_turboquant.c - the TurboQuant head-vector codec.
 *
 * Expectations from outside the code:
 *   - distortion: the paper's MSE per coordinate times d for unit vectors
 *     (REFERENCE.md: 0.0095 at 4 bits, 0.0345 at 3, 0.1175 at 2), within 5%;
 *   - the rotation equals an O(d^2) product with the Sylvester Hadamard
 *     matrix H[i][j] = (-1)^popcount(i & j) / sqrt(d) and the signs, is
 *     orthogonal and inverted by unrotate;
 *   - the sign stream is SplitMix64: seed 0 yields 0xe220a8397b1dcdaf,
 *     0x6e789e6aa1b965f4, 0x06c45d188009454f (Vigna's published outputs);
 *   - the byte layout: a vector built in the rotated domain to sit on known
 *     centroids must encode to indices packed by the rule in turboquant.h,
 *     re-implemented here;
 *   - q . k computed in the rotated domain equals q . k_decoded. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "turboquant.h"

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_normal(void)
{
    double u1 = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A uniformly random unit vector (normalised Gaussian). */
static void random_unit(float *x, int d)
{
    double ss = 0;
    double g[QE_TURBOQUANT_MAX_DIM];
    for (int i = 0; i < d; i++) {
        g[i] = rng_normal();
        ss += g[i] * g[i];
    }
    for (int i = 0; i < d; i++)
        x[i] = (float)(g[i] / sqrt(ss));
}

START_TEST(test_distortion)
{
    /* MSE per coordinate x d of a random unit vector, from the paper. */
    static const double expect[5] = {0, 0, 0.1175, 0.0345, 0.0095};
    static const int dims[3] = {64, 128, 256};
    rng_state = 42;
    float x[256], y[256];
    unsigned char b[2 + 256 / 2];
    for (int bits = 2; bits <= 4; bits++)
        for (int k = 0; k < 3; k++) {
            const int d = dims[k], n_vec = 262144 / d;
            double se = 0;
            for (int v = 0; v < n_vec; v++) {
                random_unit(x, d);
                qe_turboquant_quantize(bits, x, d, QE_TURBOQUANT_SEED, b);
                qe_turboquant_dequantize(bits, b, d, QE_TURBOQUANT_SEED, y);
                for (int i = 0; i < d; i++)
                    se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            }
            const double mse_d = se / n_vec; /* = per-coordinate MSE x d */
            ck_assert_msg(fabs(mse_d / expect[bits] - 1) < 0.05, "%d bits, d %d: MSE x d = %g, paper %g",
                          bits, d, mse_d, expect[bits]);
        }
}
END_TEST

START_TEST(test_sign_stream)
{
    static const uint64_t words[3] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull,
                                      0x06c45d188009454full};
    float s[192];
    qe_turboquant_signs(0, 192, s);
    for (int i = 0; i < 192; i++)
        ck_assert(s[i] == ((words[i / 64] >> (i % 64)) & 1 ? -1.0f : 1.0f));
    /* A prefix of a longer stream: d = 64 uses word 0 only. */
    float t[64];
    qe_turboquant_signs(0, 64, t);
    ck_assert(memcmp(s, t, sizeof t) == 0);
}
END_TEST

START_TEST(test_rotation)
{
    rng_state = 7;
    static const int dims[4] = {8, 64, 128, 256};
    for (int k = 0; k < 4; k++) {
        const int d = dims[k];
        float x[256], r[256], back[256], s[256];
        for (int i = 0; i < d; i++)
            x[i] = (float)rng_normal();
        qe_turboquant_rotate(x, d, QE_TURBOQUANT_SEED, r);
        qe_turboquant_signs(QE_TURBOQUANT_SEED, d, s);
        double nx = 0, nr = 0;
        for (int i = 0; i < d; i++) {
            double h = 0; /* (H D x)_i / sqrt(d), the slow way */
            for (int j = 0; j < d; j++)
                h += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * s[j] * x[j];
            h /= sqrt((double)d);
            ck_assert_msg(fabs(h - r[i]) < 1e-5, "d %d, coordinate %d: %g vs %g", d, i, h, (double)r[i]);
            nx += (double)x[i] * x[i];
            nr += (double)r[i] * r[i];
        }
        ck_assert(fabs(sqrt(nr) - sqrt(nx)) <= 1e-6 * sqrt(nx));
        qe_turboquant_unrotate(r, d, QE_TURBOQUANT_SEED, back);
        for (int i = 0; i < d; i++)
            ck_assert_msg(fabs(back[i] - x[i]) <= 1e-6 * (1 + fabs(x[i])), "d %d: %g vs %g", d,
                          (double)back[i], (double)x[i]);
        /* In place. */
        memcpy(back, x, sizeof back);
        qe_turboquant_rotate(back, d, QE_TURBOQUANT_SEED, back);
        ck_assert(memcmp(back, r, (size_t)d * sizeof *r) == 0);
    }
}
END_TEST

/* Unpack index i by the rule in turboquant.h: groups of 8 in `bits` bytes,
 * little-endian, index k at bits [bits*k, bits*k + bits). */
static int unpack_index(const unsigned char *p, int bits, int i)
{
    uint32_t w = 0;
    for (int j = 0; j < bits; j++)
        w |= (uint32_t)p[2 + (i / 8) * bits + j] << (8 * j);
    return (int)((w >> (bits * (i % 8))) & ((1u << bits) - 1));
}

/* REFERENCE.md's Lloyd-Max centroids for N(0, 1), positive halves. */
static const double ref_centroids[5][8] = {
    [2] = {0.4528, 1.5104},
    [3] = {0.2451, 0.7560, 1.3439, 2.1520},
    [4] = {0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.6181, 2.0691, 2.7326},
};

/* Index (ascending order) of the centroid nearest z; *margin = distance to
 * the nearest decision boundary. */
static int nearest(int bits, double z, double *margin)
{
    const int half = 1 << (bits - 1);
    double c[16];
    for (int k = 0; k < half; k++) {
        c[half + k] = ref_centroids[bits][k];
        c[half - 1 - k] = -ref_centroids[bits][k];
    }
    int best = 0;
    for (int k = 1; k < 2 * half; k++)
        if (fabs(z - c[k]) < fabs(z - c[best]))
            best = k;
    *margin = INFINITY;
    for (int k = 0; k + 1 < 2 * half; k++)
        *margin = fmin(*margin, fabs(z - 0.5 * (c[k] + c[k + 1])));
    return best;
}

START_TEST(test_layout)
{
    /* Build the rotated unit vector u from centroid values, x = 3 * D H u
     * (unrotate). The encoder sees z = sqrt(d) u, whose nearest centroids
     * are computed here independently; the packed indices must match them
     * and the table must be REFERENCE.md's. */
    rng_state = 99;
    for (int bits = 2; bits <= 4; bits++) {
        const float *c = qe_turboquant_centroids(bits);
        const int half = 1 << (bits - 1);
        for (int k = 0; k < half; k++) {
            ck_assert(c[half + k] == (float)ref_centroids[bits][k]);
            ck_assert(c[half - 1 - k] == -(float)ref_centroids[bits][k]);
        }
        for (int d = 8; d <= 256; d *= 2) {
            float u[256], x[256], dec[256];
            double ss = 0;
            for (int i = 0; i < d; i++) {
                u[i] = c[rng_next() % (1u << bits)];
                ss += (double)u[i] * u[i];
            }
            for (int i = 0; i < d; i++)
                u[i] = (float)(u[i] / sqrt(ss));
            qe_turboquant_unrotate(u, d, QE_TURBOQUANT_SEED, x);
            for (int i = 0; i < d; i++)
                x[i] *= 3.0f;
            unsigned char b[2 + 256 / 2];
            ck_assert_uint_eq(qe_turboquant_vec_bytes(bits, d), 2 + (size_t)d * bits / 8);
            qe_turboquant_quantize(bits, x, d, QE_TURBOQUANT_SEED, b);
            uint16_t h;
            memcpy(&h, b, 2);
            const float n16 = qe_f16_to_f32(h);
            ck_assert(fabsf(n16 - 3.0f) <= 3.0f / 1024);
            int checked = 0;
            for (int i = 0; i < d; i++) {
                double margin;
                const int want = nearest(bits, sqrt((double)d) * u[i], &margin);
                if (margin < 1e-4)
                    continue; /* too close to a boundary to call */
                checked++;
                ck_assert_msg(unpack_index(b, bits, i) == want, "%d bits, d %d, index %d: %d vs %d",
                              bits, d, i, unpack_index(b, bits, i), want);
            }
            ck_assert_int_ge(checked, d - 2);
            /* Decoding in the rotated basis follows the stored indices. */
            qe_turboquant_dequantize_rotated(bits, b, d, dec);
            for (int i = 0; i < d; i++)
                ck_assert(fabsf(dec[i] - c[unpack_index(b, bits, i)] * n16 / sqrtf((float)d)) <=
                          1e-6f * n16);
        }
    }
}
END_TEST

START_TEST(test_exact_cells)
{
    /* Known bytes: 2 bits, d = 64, rotated coordinates cycling through the
     * indices 0, 1, 2, 3. With equal numbers of inner (0.4528) and outer
     * (1.5104) centroids, z = c * sqrt(d) / ||c|| = c / sqrt(1.2432) stays
     * in each centroid's own cell (0.406 < 0.9816 < 1.355), so every byte
     * packs indices 0, 1, 2, 3 from its low bits up: 0b11100100. */
    const int bits = 2, d = 64;
    const float *c = qe_turboquant_centroids(bits);
    float y[64], x[64];
    double ss = 0;
    for (int i = 0; i < d; i++)
        ss += (double)c[i % 4] * c[i % 4];
    for (int i = 0; i < d; i++)
        y[i] = (float)(c[i % 4] / sqrt(ss));
    qe_turboquant_unrotate(y, d, QE_TURBOQUANT_SEED, x);
    unsigned char b[2 + 16];
    qe_turboquant_quantize(bits, x, d, QE_TURBOQUANT_SEED, b);
    ck_assert(b[0] == 0x00 && b[1] == 0x3c); /* norm 1 (x is a unit vector) */
    for (int j = 2; j < 18; j++)
        ck_assert_uint_eq(b[j], 0xE4);
    /* 3 bits, d = 16: indices 0..7, then 3, 4, 3, 4, ...; groups of 8
     * indices in 3 bytes, index k at bits 3k..3k+2 of a little-endian word:
     * w0 = sum k << 3k = 0xFAC688 -> 88 C6 FA; w1 = 0x8E38E3 -> E3 38 8E.
     * z is set on the centroids except the outermost pair, which takes the
     * slack so that ||z||^2 = d (the rotated vector is a unit vector). */
    const float *c3 = qe_turboquant_centroids(3);
    float z[16], y3[16], x3[16];
    double inner = 0;
    for (int k = 0; k < 16; k++) {
        z[k] = k < 8 ? c3[k] : c3[3 + k % 2];
        if (k != 0 && k != 7)
            inner += (double)z[k] * z[k];
    }
    const double r = sqrt((16.0 - inner) / 2);
    ck_assert(r > 0.5 * (1.3439 + 2.1520) + 0.1); /* inside the outer cell */
    z[0] = (float)-r;
    z[7] = (float)r;
    for (int k = 0; k < 16; k++)
        y3[k] = z[k] / 4.0f; /* / sqrt(16) */
    qe_turboquant_unrotate(y3, 16, QE_TURBOQUANT_SEED, x3);
    unsigned char b3[2 + 6];
    qe_turboquant_quantize(3, x3, 16, QE_TURBOQUANT_SEED, b3);
    ck_assert(b3[0] == 0x00 && b3[1] == 0x3c);
    static const unsigned char want3[6] = {0x88, 0xC6, 0xFA, 0xE3, 0x38, 0x8E};
    for (int j = 0; j < 6; j++)
        ck_assert_msg(b3[2 + j] == want3[j], "byte %d: %02x", j, b3[2 + j]);
}
END_TEST

START_TEST(test_rotated_dot)
{
    rng_state = 2024;
    for (int bits = 2; bits <= 4; bits++)
        for (int d = 8; d <= 256; d *= 2)
            for (int t = 0; t < 20; t++) {
                float q[256], k[256], kq[256], qr[256], kr[256];
                for (int i = 0; i < d; i++) {
                    q[i] = (float)rng_normal();
                    k[i] = (float)(3 * rng_normal());
                }
                unsigned char b[2 + 256 / 2];
                qe_turboquant_quantize(bits, k, d, QE_TURBOQUANT_SEED, b);
                qe_turboquant_dequantize(bits, b, d, QE_TURBOQUANT_SEED, kq);
                qe_turboquant_rotate(q, d, QE_TURBOQUANT_SEED, qr);
                qe_turboquant_dequantize_rotated(bits, b, d, kr);
                double a = 0, r = 0, nq = 0, nk = 0;
                for (int i = 0; i < d; i++) {
                    a += (double)q[i] * kq[i];
                    r += (double)qr[i] * kr[i];
                    nq += (double)q[i] * q[i];
                    nk += (double)kq[i] * kq[i];
                }
                ck_assert_msg(fabs(a - r) <= 1e-5 * sqrt(nq * nk), "%d bits, d %d: %g vs %g", bits,
                              d, a, r);
                /* and the value rotated back is the natural-basis decode */
                float back[256];
                qe_turboquant_unrotate(kr, d, QE_TURBOQUANT_SEED, back);
                for (int i = 0; i < d; i++)
                    ck_assert(fabsf(back[i] - kq[i]) <= 1e-5f * (float)sqrt(nk));
            }
}
END_TEST

START_TEST(test_limits)
{
    ck_assert_int_eq(qe_turboquant_check(4, 128), QE_OK);
    ck_assert_int_eq(qe_turboquant_check(2, 8), QE_OK);
    ck_assert_int_eq(qe_turboquant_check(3, 1024), QE_OK);
    ck_assert_int_eq(qe_turboquant_check(1, 128), QE_EINVAL);
    ck_assert_int_eq(qe_turboquant_check(5, 128), QE_EINVAL);
    ck_assert_int_eq(qe_turboquant_check(4, 96), QE_EINVAL); /* not a power of two */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "96"));
    ck_assert_int_eq(qe_turboquant_check(4, 4), QE_EINVAL);
    ck_assert_int_eq(qe_turboquant_check(4, 2048), QE_EINVAL);
    ck_assert_int_eq(qe_turboquant_check(4, 0), QE_EINVAL);
    ck_assert_int_eq(qe_turboquant_check(4, -64), QE_EINVAL);
    ck_assert_uint_eq(qe_turboquant_vec_bytes(4, 128), 66);
    ck_assert_uint_eq(qe_turboquant_vec_bytes(3, 128), 50);
    ck_assert_uint_eq(qe_turboquant_vec_bytes(2, 128), 34);
    ck_assert_ptr_null(qe_turboquant_centroids(5));

    float x[64], y[64];
    unsigned char b[2 + 32];
    /* zero vector: norm 0, decodes to zeros */
    memset(x, 0, sizeof x);
    qe_turboquant_quantize(4, x, 64, QE_TURBOQUANT_SEED, b);
    ck_assert(b[0] == 0 && b[1] == 0);
    qe_turboquant_dequantize(4, b, 64, QE_TURBOQUANT_SEED, y);
    for (int i = 0; i < 64; i++)
        ck_assert(y[i] == 0.0f);
    /* NaN or Inf anywhere: the vector decodes to NaN everywhere */
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 64; i++)
            x[i] = (float)i - 30.0f;
        x[17] = k ? INFINITY : NAN;
        qe_turboquant_quantize(3, x, 64, QE_TURBOQUANT_SEED, b);
        qe_turboquant_dequantize(3, b, 64, QE_TURBOQUANT_SEED, y);
        for (int i = 0; i < 64; i++)
            ck_assert(isnan(y[i]));
    }
    /* a norm beyond f16's range saturates to Inf, as a Q8_0 scale would */
    for (int i = 0; i < 64; i++)
        x[i] = 1e5f;
    qe_turboquant_quantize(4, x, 64, QE_TURBOQUANT_SEED, b);
    ck_assert(b[0] == 0x00 && b[1] == 0x7c);
}
END_TEST

Suite *turboquant_suite(void)
{
    Suite *s = suite_create("turboquant");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_distortion);
    tcase_add_test(tc, test_sign_stream);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_exact_cells);
    tcase_add_test(tc, test_rotated_dot);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
