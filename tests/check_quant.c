/* check_quant.c - GGML block codecs and model requantization.
 *
 * Expectations come from outside the code under test:
 *   - known-answer blocks whose bytes are packed here by hand from the
 *     layouts in ggml's block structs (nibble order, qh bits, K-quant 6-bit
 *     scale packing), with values that are exact in float;
 *   - the analytic error bounds of Q8_0/Q4_0 on fresh random data (the seed
 *     changes every run and is printed on failure);
 *   - the rule of qe_quant_weight_type, restated tensor by tensor for
 *     stories260K (its shapes are in MANIFEST.md);
 *   - a GGUF file written by qe_quant_model_write_gguf and read back by the
 *     ordinary loader must hold exactly the in-memory requantized bytes and
 *     the source's metadata;
 *   - more bits, closer logits: q8_0 weights move stories260K's
 *     log-probabilities less than q4_0 weights do. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"

/* ---- helpers ---- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0; }

static double rng_normal(void)
{
    return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
}

/* A fresh seed per run, reported by the assertions that use it. */
static uint64_t fresh_seed(void)
{
    uint64_t s = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() << 20;
    rng_state = s;
    return s;
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

static qe_model *open_model(const char *rel)
{
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(qe_test_data(rel), &m) == QE_OK, "%s", qe_errmsg());
    return m;
}

/* ---- known-answer blocks ---- */

START_TEST(test_q8_0_known)
{
    /* d = 0.5 (f16 0x3800): x = q * 0.5 with q from -127 to 127, so
     * amax / 127 = 0.5 exactly and every x * (1/d) is the integer q. */
    static const int q[32] = {-127, 127, 0,  1,  -1, 2,   -2,  50,  -50, 100, -100,
                              3,    4,   5,  6,  7,  8,   9,   10,  -3,  -4,  -5,
                              -6,   -7,  -8, 11, 12, 13,  -11, -12, -13, 64};
    float x[32], y[32];
    unsigned char b[34];
    for (int j = 0; j < 32; j++)
        x[j] = q[j] * 0.5f;
    qe_quant_quantize_row(QE_DT_Q8_0, x, 32, b);
    ck_assert_uint_eq(b[0], 0x00);
    ck_assert_uint_eq(b[1], 0x38);
    for (int j = 0; j < 32; j++)
        ck_assert_int_eq((int8_t)b[2 + j], q[j]);
    qe_quant_dequantize_row(QE_DT_Q8_0, b, 32, y);
    for (int j = 0; j < 32; j++)
        ck_assert(y[j] == x[j]);
    /* Rounding is roundf: half-way cases away from zero. d = 1 (amax 127):
     * 2.5 -> 3, -2.5 -> -3, 0.5 -> 1. */
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    qe_quant_quantize_row(QE_DT_Q8_0, x, 32, b);
    ck_assert(b[0] == 0x00 && b[1] == 0x3c); /* 1.0 */
    ck_assert_int_eq((int8_t)b[3], 3);
    ck_assert_int_eq((int8_t)b[4], -3);
    ck_assert_int_eq((int8_t)b[5], 1);
}
END_TEST

START_TEST(test_q4_0_known)
{
    /* max = -2 (the one value of magnitude 2): d = -2 / -8 = 0.25 (f16
     * 0x3400), 1/d = 4, and x = (q - 8) * 0.25 gives back q exactly. */
    int q[32];
    float x[32], y[32];
    unsigned char b[18];
    for (int j = 0; j < 16; j++) {
        q[j] = j;           /* element j: low nibble of byte j */
        q[j + 16] = 15 - j; /* element j + 16: high nibble of byte j */
    }
    for (int j = 0; j < 32; j++)
        x[j] = (q[j] - 8) * 0.25f;
    qe_quant_quantize_row(QE_DT_Q4_0, x, 32, b);
    ck_assert(b[0] == 0x00 && b[1] == 0x34);
    for (int j = 0; j < 16; j++)
        ck_assert_uint_eq(b[2 + j], (unsigned)(q[j] | q[j + 16] << 4));
    ck_assert_uint_eq(b[2], 0xf0); /* element 0 (q 0) low, element 16 (q 15) high */
    qe_quant_dequantize_row(QE_DT_Q4_0, b, 32, y);
    for (int j = 0; j < 32; j++)
        ck_assert(y[j] == x[j]);

    /* Two values of largest magnitude: the first one (+1) sets d = -1/8, so
     * the other (-1) would need q = 16 and is clamped to 15: -0.875. */
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    x[0] = 1.0f;
    x[1] = -1.0f;
    x[17] = 0.25f; /* 0.25 * -8 + 8.5 = 6.5 -> q 6 -> (6 - 8) * -0.125 = 0.25 */
    qe_quant_quantize_row(QE_DT_Q4_0, x, 32, b);
    ck_assert(b[0] == 0x00 && b[1] == 0xb0); /* -0.125 */
    ck_assert_uint_eq(b[2] & 0x0f, 0);       /* +1: (0 - 8) * -0.125 = 1 */
    ck_assert_uint_eq(b[3] & 0x0f, 15);      /* -1 clamped */
    ck_assert_uint_eq(b[3] >> 4, 6);         /* element 17 */
    ck_assert_uint_eq(b[4], 0x88);           /* zeros: q 8 */
    qe_quant_dequantize_row(QE_DT_Q4_0, b, 32, y);
    ck_assert(y[0] == 1.0f && y[1] == -0.875f && y[17] == 0.25f && y[2] == 0.0f);
}
END_TEST

START_TEST(test_legacy_dequant_known)
{
    /* Q4_1: d = 0.5, m = -3: x = q * 0.5 - 3. */
    unsigned char b1[20];
    float y[32];
    put16(b1, 0x3800);
    put16(b1 + 2, 0xc200); /* -3 */
    for (int j = 0; j < 16; j++)
        b1[4 + j] = (unsigned char)(j | (15 - j) << 4);
    qe_quant_dequantize_row(QE_DT_Q4_1, b1, 32, y);
    for (int j = 0; j < 16; j++) {
        ck_assert(y[j] == j * 0.5f - 3.0f);
        ck_assert(y[j + 16] == (15 - j) * 0.5f - 3.0f);
    }
    /* Q5_0: d = 0.25; element j takes bit j of the little-endian u32 qh as
     * its fifth bit; x = (q - 16) * 0.25. */
    unsigned char b5[24];
    int q5[32];
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) {
        q5[j] = (j * 7 + 3) % 32;
        if (q5[j] & 16)
            qh |= 1u << j;
    }
    put16(b5, 0x3400);
    for (int k = 0; k < 4; k++)
        b5[2 + k] = (unsigned char)(qh >> (8 * k));
    for (int j = 0; j < 16; j++)
        b5[6 + j] = (unsigned char)((q5[j] & 15) | (q5[j + 16] & 15) << 4);
    qe_quant_dequantize_row(QE_DT_Q5_0, b5, 32, y);
    for (int j = 0; j < 32; j++)
        ck_assert_msg(y[j] == (q5[j] - 16) * 0.25f, "q5_0 element %d: %g", j, (double)y[j]);
    /* Q5_1: the same quants behind d = 0.25 and m = 1: x = q * 0.25 + 1. */
    put16(b5, 0x3400);
    put16(b5 + 2, 0x3c00);
    for (int k = 0; k < 4; k++)
        b5[4 + k] = (unsigned char)(qh >> (8 * k));
    for (int j = 0; j < 16; j++)
        b5[8 + j] = (unsigned char)((q5[j] & 15) | (q5[j + 16] & 15) << 4);
    qe_quant_dequantize_row(QE_DT_Q5_1, b5, 32, y);
    for (int j = 0; j < 32; j++)
        ck_assert_msg(y[j] == q5[j] * 0.25f + 1.0f, "q5_1 element %d: %g", j, (double)y[j]);
}
END_TEST

/* ggml's 12-byte K-quant scale block: eight 6-bit scales and mins. */
static void pack_scales_k4(const int sc[8], const int mn[8], unsigned char s[12])
{
    for (int j = 0; j < 4; j++) {
        s[j] = (unsigned char)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (unsigned char)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (unsigned char)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

START_TEST(test_k_dequant_known)
{
    /* Scales and mins use the high bits (>= 16) in sub-blocks 4..7, which
     * live in the top two bits of bytes 0..7. d = 1, dmin = 0.5. */
    static const int sc[8] = {1, 2, 3, 63, 17, 33, 63, 48};
    static const int mn[8] = {0, 1, 5, 63, 16, 40, 2, 31};
    unsigned char b[176];
    float y[256];
    int q[256];
    /* Q4_K: 32-byte run r holds sub-block 2r in low and 2r+1 in high nibbles. */
    memset(b, 0, sizeof b);
    put16(b, 0x3c00);
    put16(b + 2, 0x3800);
    pack_scales_k4(sc, mn, b + 4);
    for (int i = 0; i < 256; i++)
        q[i] = (i * 7 + i / 32) & 15;
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < 32; l++)
            b[16 + 32 * r + l] = (unsigned char)(q[64 * r + l] | q[64 * r + 32 + l] << 4);
    qe_quant_dequantize_row(QE_DT_Q4_K, b, 256, y);
    for (int i = 0; i < 256; i++) {
        const int j = i / 32;
        ck_assert_msg(y[i] == (float)(sc[j] * q[i] - 0.5 * mn[j]), "q4_k element %d: %g", i,
                      (double)y[i]);
    }
    /* Q5_K: qh[l] bit j is the fifth bit of element l of sub-block j. */
    memset(b, 0, sizeof b);
    put16(b, 0x3c00);
    put16(b + 2, 0x3800);
    pack_scales_k4(sc, mn, b + 4);
    for (int i = 0; i < 256; i++) {
        q[i] = (i * 11 + 3 * (i / 32)) % 32;
        if (q[i] & 16)
            b[16 + i % 32] |= (unsigned char)(1u << (i / 32));
    }
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < 32; l++)
            b[48 + 32 * r + l] = (unsigned char)((q[64 * r + l] & 15) | (q[64 * r + 32 + l] & 15) << 4);
    qe_quant_dequantize_row(QE_DT_Q5_K, b, 256, y);
    for (int i = 0; i < 256; i++) {
        const int j = i / 32;
        ck_assert_msg(y[i] == (float)(sc[j] * q[i] - 0.5 * mn[j]), "q5_k element %d: %g", i,
                      (double)y[i]);
    }
}
END_TEST

START_TEST(test_q6_k_known)
{
    /* Q6_K: ql[128] | qh[64] | int8 scales[16] | f16 d. Within each half h
     * (128 elements), element e = 32 g + l takes its low 4 bits from
     * ql[64h + l + 32 (g & 1)] (low nibble for g < 2, high for g >= 2), its
     * high 2 bits from bits 2g..2g+1 of qh[32h + l], and scale
     * scales[8h + l / 16 + 2g]. x = d * scale * (q - 32). */
    unsigned char b[210];
    float y[256];
    int q[256], s[16];
    memset(b, 0, sizeof b);
    for (int k = 0; k < 16; k++) {
        s[k] = (k % 2 ? -1 : 1) * (k * 9 + 1) % 128;
        b[192 + k] = (unsigned char)(int8_t)s[k];
    }
    put16(b + 208, 0x3400); /* d = 0.25 */
    for (int i = 0; i < 256; i++) {
        q[i] = (i * 13 + i / 16) % 64;
        const int h = i / 128, e = i % 128, g = e / 32, l = e % 32;
        unsigned char *lo = &b[64 * h + l + 32 * (g & 1)];
        *lo |= (unsigned char)((q[i] & 15) << (g >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (unsigned char)((q[i] >> 4) << (2 * g));
    }
    qe_quant_dequantize_row(QE_DT_Q6_K, b, 256, y);
    for (int i = 0; i < 256; i++) {
        const int h = i / 128, e = i % 128, g = e / 32, l = e % 32;
        const int sc = s[8 * h + l / 16 + 2 * g];
        ck_assert_msg(y[i] == (float)(0.25 * sc * (q[i] - 32)), "q6_k element %d: %g vs %g", i,
                      (double)y[i], 0.25 * sc * (q[i] - 32));
    }
}
END_TEST

/* ---- analytic error bounds on fresh random data ---- */

/* Largest rounding error of an f16 near |d|: half a step of its binade. */
static double f16_half_step(double d)
{
    d = fabs(d);
    return d >= 6.103515625e-05 ? d / 2048 : 2.98023223876953125e-08; /* 2^-14, 2^-25 */
}

START_TEST(test_error_bounds)
{
    const uint64_t seed = fresh_seed();
    enum { N = 32 * 4096 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    unsigned char *b = malloc(N * 2);
    ck_assert(x && y && b);
    for (int i = 0; i < N; i++) /* blocks of very different scales */
        x[i] = (float)(rng_normal() * pow(10.0, (double)((i / 32) % 7) - 3.0));
    /* Q8_0: |x - q d16| <= |d|/2 (rounding) + 127 |d - d16| (f16 scale),
     * |d - d16| <= half an f16 step: |d| 2^-11, or 2^-25 below 2^-14 where
     * halves are subnormal; a few float ulps more for x * (1/d). */
    qe_quant_quantize_row(QE_DT_Q8_0, x, N, b);
    qe_quant_dequantize_row(QE_DT_Q8_0, b, N, y);
    for (int blk = 0; blk < N / 32; blk++) {
        double amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmax(amax, fabs(x[32 * blk + j]));
        const double d = amax / 127, bound = d * (0.5 + 1e-5) + 127 * f16_half_step(d);
        for (int j = 0; j < 32; j++) {
            const int i = 32 * blk + j;
            ck_assert_msg(fabs(x[i] - y[i]) <= bound, "seed %llu: q8_0 element %d: %g -> %g, bound %g",
                          (unsigned long long)seed, i, (double)x[i], (double)y[i], bound);
        }
    }
    /* Q4_0: with t = x / d in [-8, 8], q = min(15, floor(t + 8.5)): the error
     * is <= |d|/2 while t <= 7.5, and |d| (t - 7) above, where q is clamped
     * (only values of the other sign than max reach there); plus
     * |q - 8| |d - d16| <= 8 half f16 steps from the scale. */
    qe_quant_quantize_row(QE_DT_Q4_0, x, N, b);
    qe_quant_dequantize_row(QE_DT_Q4_0, b, N, y);
    int clamped = 0;
    for (int blk = 0; blk < N / 32; blk++) {
        double amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabs(x[32 * blk + j]) > amax) {
                amax = fabs(x[32 * blk + j]);
                max = x[32 * blk + j];
            }
        const double d = max / -8;
        for (int j = 0; j < 32; j++) {
            const int i = 32 * blk + j;
            const double t = x[i] / d;
            double bound = fabs(d) * (t > 7.5 ? t - 7 : 0.5);
            bound += fabs(d) * 1e-5 + 8 * f16_half_step(d);
            clamped += t > 7.5;
            ck_assert_msg(fabs(x[i] - y[i]) <= bound,
                          "seed %llu: q4_0 element %d: %g -> %g (t %g), bound %g",
                          (unsigned long long)seed, i, (double)x[i], (double)y[i], t, bound);
        }
    }
    ck_assert_int_gt(clamped, 0); /* the clamped branch was exercised */
    free(x);
    free(y);
    free(b);
}
END_TEST

/* ---- requantizing stories260K ---- */

/* stories260K: dim 64, FFN 172, tied (output.weight equals the embedding).
 * The rule for each of its tensors, restated from qe_quant_weight_type's
 * contract: matrices -> target; rows of 172 (ffn_down) cannot hold 32-blocks
 * -> f16; the tied embedding is the output -> q8_0 under q4_0. */
START_TEST(test_requant_types)
{
    qe_model *src = open_model("models/stories260K.gguf");
    const qe_weights *sw = qe_model_weights(src);
    static const qe_dtype targets[4] = {QE_DT_Q8_0, QE_DT_Q4_0, QE_DT_F16, QE_DT_F32};
    static const qe_dtype embd[4] = {QE_DT_Q8_0, QE_DT_Q8_0, QE_DT_F16, QE_DT_F32};
    static const qe_dtype down[4] = {QE_DT_F16, QE_DT_F16, QE_DT_F16, QE_DT_F32};
    float *a = malloc(172 * sizeof *a), *c = malloc(172 * sizeof *c);
    for (int k = 0; k < 4; k++) {
        qe_quant_model *q = NULL;
        ck_assert_msg(qe_quant_model_new(src, targets[k], &q) == QE_OK, "%s", qe_errmsg());
        const qe_model *m = qe_quant_model_get(q);
        const qe_weights *w = qe_model_weights(m);
        ck_assert_int_eq(qe_quant_model_target(q), targets[k]);
        ck_assert(qe_model_hparams(m)->tied);
        ck_assert_int_eq(w->token_embd.type, embd[k]);
        ck_assert_ptr_eq(w->output.data, w->token_embd.data);
        for (int l = 0; l < 5; l++) {
            const qe_layer *L = &w->layers[l];
            const qe_tensor *mat[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up};
            for (int p = 0; p < 6; p++)
                ck_assert_int_eq(mat[p]->type, targets[k]);
            ck_assert_int_eq(L->w_down.type, down[k]);
            ck_assert_int_eq(L->attn_norm.type, QE_DT_F32);
            ck_assert_ptr_eq(L->attn_norm.data, sw->layers[l].attn_norm.data); /* borrowed */
            ck_assert_ptr_eq(L->ffn_norm.data, sw->layers[l].ffn_norm.data);
        }
        ck_assert_ptr_eq(w->output_norm.data, sw->output_norm.data);
        if (targets[k] == QE_DT_F32) /* same type: the source bytes, not a copy */
            ck_assert_ptr_eq(w->layers[2].wq.data, sw->layers[2].wq.data);
        /* Every row decodes close to the source row: within a step of the
         * coarsest format used (q4_0: |d| <= max|x|/8). */
        const qe_tensor *pairs[][2] = {{&sw->layers[3].w_up, &w->layers[3].w_up},
                                       {&sw->layers[0].w_down, &w->layers[0].w_down},
                                       {&sw->token_embd, &w->token_embd}};
        for (int p = 0; p < 3; p++)
            for (int64_t r = 0; r < pairs[p][0]->ne[1]; r++) {
                qe_tensor_row_f32(pairs[p][0], r, a);
                qe_tensor_row_f32(pairs[p][1], r, c);
                double amax = 0;
                for (int64_t i = 0; i < pairs[p][0]->ne[0]; i++)
                    amax = fmax(amax, fabs(a[i]));
                for (int64_t i = 0; i < pairs[p][0]->ne[0]; i++)
                    ck_assert(fabs(a[i] - c[i]) <= amax / 8 + 1e-6);
            }
        qe_quant_model_free(q);
    }
    free(a);
    free(c);
    qe_model_close(src);
}
END_TEST

/* Every converted matrix has the same bytes whatever the thread count: 1,
 * 3 and 8 threads splitting each matrix's rows, and the default. */
static void check_same_tensor(const qe_tensor *a, const qe_tensor *b, const char *what)
{
    ck_assert_int_eq(a->type, b->type);
    ck_assert_int_eq(a->nbytes, b->nbytes);
    ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "%s: %s differs", what, a->name);
}

START_TEST(test_requant_threads)
{
    static const char *const models[] = {"models/stories260K.gguf", "models/TinyStories-656K"};
    static const qe_dtype targets[] = {QE_DT_Q8_0, QE_DT_Q4_0, QE_DT_F16};
    static const int threads[] = {3, 8, 0};
    for (int mi = 0; mi < 2; mi++) {
        qe_model *src = open_model(models[mi]);
        const int n_layers = qe_model_hparams(src)->n_layers;
        for (int k = 0; k < 3; k++) {
            qe_quant_model *one = NULL;
            ck_assert_msg(qe_quant_model_new_threads(src, targets[k], 1, &one) == QE_OK, "%s",
                          qe_errmsg());
            const qe_weights *w1 = qe_model_weights(qe_quant_model_get(one));
            for (int n = 0; n < 3; n++) {
                qe_quant_model *q = NULL;
                ck_assert_msg(qe_quant_model_new_threads(src, targets[k], threads[n], &q) == QE_OK,
                              "%s", qe_errmsg());
                const qe_weights *w = qe_model_weights(qe_quant_model_get(q));
                char what[96];
                snprintf(what, sizeof what, "%s %s, %d threads against 1", models[mi],
                         qe_dtype_name(targets[k]), threads[n]);
                check_same_tensor(&w1->token_embd, &w->token_embd, what);
                for (int l = 0; l < n_layers; l++) {
                    const qe_layer *a = &w1->layers[l], *b = &w->layers[l];
                    const qe_tensor *ma[] = {&a->wq, &a->wk, &a->wv, &a->wo,
                                             &a->w_gate, &a->w_up, &a->w_down};
                    const qe_tensor *mb[] = {&b->wq, &b->wk, &b->wv, &b->wo,
                                             &b->w_gate, &b->w_up, &b->w_down};
                    for (int p = 0; p < 7; p++)
                        check_same_tensor(ma[p], mb[p], what);
                }
                qe_quant_model_free(q);
            }
            qe_quant_model_free(one);
        }
        qe_model_close(src);
    }
}
END_TEST

/* The policy table itself, for shapes stories260K lacks. */
START_TEST(test_weight_type_rule)
{
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_MATRIX, QE_DT_F32, QE_DT_Q4_0, 4096), QE_DT_Q4_0);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_TOKEN_EMBD, QE_DT_F16, QE_DT_Q4_0, 4096), QE_DT_Q4_0);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_OUTPUT, QE_DT_F16, QE_DT_Q4_0, 4096), QE_DT_Q8_0);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_OUTPUT, QE_DT_F16, QE_DT_Q8_0, 4096), QE_DT_Q8_0);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_OUTPUT, QE_DT_Q6_K, QE_DT_F16, 4096), QE_DT_F16);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_OTHER, QE_DT_F32, QE_DT_Q4_0, 4096), QE_DT_F32);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_OTHER, QE_DT_F16, QE_DT_F32, 4096), QE_DT_F16);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_MATRIX, QE_DT_F32, QE_DT_Q8_0, 11008 + 16), QE_DT_F16);
    ck_assert_int_eq(qe_quant_weight_type(QE_QUANT_ROLE_MATRIX, QE_DT_BF16, QE_DT_F32, 100), QE_DT_F32);
    ck_assert_uint_eq(qe_quant_ftype(QE_DT_F32), 0);
    ck_assert_uint_eq(qe_quant_ftype(QE_DT_F16), 1);
    ck_assert_uint_eq(qe_quant_ftype(QE_DT_Q4_0), 2);
    ck_assert_uint_eq(qe_quant_ftype(QE_DT_Q8_0), 7);
}
END_TEST

/* ---- GGUF output ---- */

static void expect_same_tensor(const qe_tensor *a, const qe_tensor *b, const char *what)
{
    if (!a->data && !b->data)
        return; /* an optional tensor (model.h) this architecture lacks */
    ck_assert_msg(a->type == b->type, "%s: type %s vs %s", what, qe_dtype_name(a->type),
                  qe_dtype_name(b->type));
    ck_assert_msg(a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->nbytes == b->nbytes, "%s", what);
    ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "%s: bytes differ", what);
}

static void check_written(const qe_model *src, qe_dtype target, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/out-%s.gguf", dir, qe_dtype_name(target));
    qe_quant_model *q = NULL;
    ck_assert_msg(qe_quant_model_new(src, target, &q) == QE_OK, "%s", qe_errmsg());
    ck_assert_msg(qe_quant_model_write_gguf(q, path) == QE_OK, "%s", qe_errmsg());
    qe_model *back = NULL;
    ck_assert_msg(qe_model_open(path, &back) == QE_OK, "%s", qe_errmsg());

    /* Weights: byte-identical to the in-memory requantization. */
    const qe_weights *a = qe_model_weights(back), *b = qe_model_weights(qe_quant_model_get(q));
    ck_assert(qe_model_hparams(back)->tied); /* output.weight written equal to the embedding */
    expect_same_tensor(&a->token_embd, &b->token_embd, "token_embd");
    expect_same_tensor(&a->output, &b->output, "output");
    expect_same_tensor(&a->output_norm, &b->output_norm, "output_norm");
    for (int l = 0; l < qe_model_hparams(back)->n_layers; l++) {
        const qe_tensor *ta = (const qe_tensor *)&a->layers[l], *tb = (const qe_tensor *)&b->layers[l];
        for (size_t p = 0; p < sizeof(qe_layer) / sizeof(qe_tensor); p++) {
            char what[64];
            snprintf(what, sizeof what, "layer %d tensor %zu", l, p);
            expect_same_tensor(&ta[p], &tb[p], what);
        }
    }

    /* File: the source's tensors in the source's order, every source key
     * with its value, file_type = llama.cpp's ftype, quantization_version 2. */
    const qe_gguf *gs = qe_model_gguf(src), *gb = qe_model_gguf(back);
    ck_assert_uint_eq(qe_gguf_version(gb), 3);
    ck_assert_uint_eq(qe_gguf_alignment(gb), qe_gguf_alignment(gs));
    ck_assert_uint_eq(qe_gguf_n_tensors(gb), qe_gguf_n_tensors(gs));
    for (uint64_t i = 0; i < qe_gguf_n_tensors(gs); i++) {
        const qe_gguf_tensor *x = qe_gguf_tensor_at(gs, i), *y = qe_gguf_tensor_at(gb, i);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_uint_eq(x->n_dims, y->n_dims);
        ck_assert(x->ne[0] == y->ne[0] && x->ne[1] == y->ne[1]);
        ck_assert_uint_eq(y->offset % qe_gguf_alignment(gb), 0);
    }
    for (uint64_t i = 0; i < qe_gguf_n_kv(gs); i++) {
        const char *key = qe_gguf_kv_key(gs, i);
        int64_t j = qe_gguf_find_key(gb, key);
        ck_assert_msg(j >= 0, "key %s lost", key);
        if (!strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version"))
            continue;
        char va[512], vb[512];
        qe_gguf_kv_format(gs, i, va, sizeof va);
        qe_gguf_kv_format(gb, (uint64_t)j, vb, sizeof vb);
        ck_assert_msg(strcmp(va, vb) == 0, "key %s: %s vs %s", key, va, vb);
        ck_assert_int_eq(qe_gguf_kv_type(gs, i), qe_gguf_kv_type(gb, (uint64_t)j));
        ck_assert_uint_eq(qe_gguf_kv_arr_len(gs, i), qe_gguf_kv_arr_len(gb, (uint64_t)j));
    }
    uint32_t ft = 99, qv = 99;
    ck_assert_int_eq(qe_gguf_get_u32(gb, "general.file_type", &ft), QE_OK);
    ck_assert_int_eq(qe_gguf_get_u32(gb, "general.quantization_version", &qv), QE_OK);
    static const uint32_t llama_ftype[] = {[QE_DT_F32] = 0, [QE_DT_F16] = 1, [QE_DT_Q4_0] = 2,
                                           [QE_DT_Q8_0] = 7};
    ck_assert_uint_eq(ft, llama_ftype[target]);
    ck_assert_uint_eq(qv, 2);
    /* The whole vocabulary survives, string by string. */
    uint64_t n_src = 0, n_back = 0;
    qe_gguf_type et;
    ck_assert_int_eq(qe_gguf_get_arr(gs, "tokenizer.ggml.tokens", &et, &n_src), QE_OK);
    ck_assert_int_eq(qe_gguf_get_arr(gb, "tokenizer.ggml.tokens", &et, &n_back), QE_OK);
    ck_assert_uint_eq(n_src, n_back);
    for (uint64_t i = 0; i < n_src; i++) {
        const char *s1, *s2;
        size_t l1, l2;
        ck_assert_int_eq(qe_gguf_get_arr_str(gs, "tokenizer.ggml.tokens", i, &s1, &l1), QE_OK);
        ck_assert_int_eq(qe_gguf_get_arr_str(gb, "tokenizer.ggml.tokens", i, &s2, &l2), QE_OK);
        ck_assert(l1 == l2 && memcmp(s1, s2, l1) == 0);
    }

    /* Requantizing the written file to its own type copies every tensor. */
    qe_quant_model *again = NULL;
    ck_assert_int_eq(qe_quant_model_new(back, target, &again), QE_OK);
    const qe_weights *c = qe_model_weights(qe_quant_model_get(again));
    ck_assert_ptr_eq(c->layers[1].wq.data, a->layers[1].wq.data);
    ck_assert_ptr_eq(c->token_embd.data, a->token_embd.data);
    qe_quant_model_free(again);
    qe_model_close(back);
    qe_quant_model_free(q);
}

START_TEST(test_write_gguf)
{
    qe_model *src = open_model("models/stories260K.gguf");
    char *dir = qe_test_tmpdir();
    check_written(src, QE_DT_Q8_0, dir);
    check_written(src, QE_DT_Q4_0, dir);
    check_written(src, QE_DT_F16, dir);
    qe_test_rmtree(dir);
    free(dir);
    qe_model_close(src);
}
END_TEST

/* ---- more bits, closer to the F32 model ---- */

static double mean_abs_logprob_diff(const qe_model *a, const qe_model *b, const int *tok, int n)
{
    int nv = qe_model_hparams(a)->n_vocab;
    double *la = malloc((size_t)nv * sizeof *la), *lb = malloc((size_t)nv * sizeof *lb);
    qe_ref *ra = NULL, *rb = NULL;
    ck_assert_int_eq(qe_ref_new(a, n, &ra), QE_OK);
    ck_assert_int_eq(qe_ref_new(b, n, &rb), QE_OK);
    double sum = 0;
    for (int i = 0; i + 1 < n; i++) {
        ck_assert_int_eq(qe_ref_step(ra, tok[i], i, la), QE_OK);
        ck_assert_int_eq(qe_ref_step(rb, tok[i], i, lb), QE_OK);
        double ma = -INFINITY, mb = -INFINITY, za = 0, zb = 0;
        for (int v = 0; v < nv; v++) {
            ma = fmax(ma, la[v]);
            mb = fmax(mb, lb[v]);
        }
        for (int v = 0; v < nv; v++) {
            za += exp(la[v] - ma);
            zb += exp(lb[v] - mb);
        }
        const int t = tok[i + 1];
        sum += fabs((la[t] - ma - log(za)) - (lb[t] - mb - log(zb)));
    }
    qe_ref_free(ra);
    qe_ref_free(rb);
    free(la);
    free(lb);
    return sum / (n - 1);
}

START_TEST(test_quality_ordering)
{
    qe_model *src = open_model("models/stories260K.gguf");
    enum { N = 48 };
    int tok[N];
    uint32_t s = 12345;
    tok[0] = 1; /* BOS */
    for (int i = 1; i < N; i++) {
        s = s * 1103515245u + 12345u;
        tok[i] = 3 + (int)((s >> 8) % 500u);
    }
    qe_quant_model *q8 = NULL, *q4 = NULL, *f16 = NULL;
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_Q8_0, &q8), QE_OK);
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_Q4_0, &q4), QE_OK);
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_F16, &f16), QE_OK);
    const double d16 = mean_abs_logprob_diff(src, qe_quant_model_get(f16), tok, N);
    const double d8 = mean_abs_logprob_diff(src, qe_quant_model_get(q8), tok, N);
    const double d4 = mean_abs_logprob_diff(src, qe_quant_model_get(q4), tok, N);
    fprintf(stderr, "# stories260K mean |dlogprob| vs f32: f16 %.5f q8_0 %.5f q4_0 %.5f\n", d16, d8, d4);
    ck_assert_msg(d16 < d8 && d8 < d4, "f16 %g q8_0 %g q4_0 %g", d16, d8, d4);
    /* Q4_0's step is max/8 where Q8_0's is max/127: 16x coarser weights
     * must cost clearly more than twice as much. */
    ck_assert_msg(d8 < 0.1, "q8_0 moved log-probabilities by %g nats on average", d8);
    ck_assert_msg(d4 > 4 * d8, "q4_0 %g vs q8_0 %g", d4, d8);
    qe_quant_model_free(q8);
    qe_quant_model_free(q4);
    qe_quant_model_free(f16);
    qe_model_close(src);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits)
{
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q8_0, 33, 1), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "33"));
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q4_K, 128, 0), QE_EINVAL);
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q4_0, 0, 1), QE_EINVAL);
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q4_1, 32, 1), QE_EUNSUPPORTED); /* read-only */
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q4_1, 32, 0), QE_OK);
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q2_K, 256, 0), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q2_k"));
    ck_assert_int_eq(qe_quant_check_row(QE_DT_Q8_0, 64, 1), QE_OK);
    ck_assert(!qe_quant_target_ok(QE_DT_Q4_1) && !qe_quant_target_ok(QE_DT_BF16));

    /* Non-finite input: that block decodes to NaN, the others are intact. */
    float x[96], y[96];
    unsigned char b[3 * 34];
    for (int i = 0; i < 96; i++)
        x[i] = (float)(i % 7) - 3.0f;
    x[40] = NAN;
    x[70] = INFINITY;
    qe_quant_quantize_row(QE_DT_Q8_0, x, 96, b);
    qe_quant_dequantize_row(QE_DT_Q8_0, b, 96, y);
    for (int i = 0; i < 32; i++)
        ck_assert(fabsf(y[i] - x[i]) <= 3.0f / 127);
    for (int i = 32; i < 96; i++)
        ck_assert(isnan(y[i]));
    qe_quant_quantize_row(QE_DT_Q4_0, x, 96, b);
    qe_quant_dequantize_row(QE_DT_Q4_0, b, 96, y);
    for (int i = 0; i < 32; i++)
        ck_assert(fabsf(y[i] - x[i]) <= 3.0f / 8);
    for (int i = 32; i < 96; i++)
        ck_assert(isnan(y[i]));
    /* All zeros, and magnitudes so small that 1/d overflows: defined, and
     * zero after decoding (their f16 scale is 0). ggml's Q4_0 writes the
     * scale of an all-zero block as -0 (0 / -8). */
    for (int i = 0; i < 32; i++)
        x[i] = i == 3 ? 1e-40f : 0.0f;
    qe_quant_quantize_row(QE_DT_Q4_0, x, 32, b);
    ck_assert(b[0] == 0x00 && b[1] == 0x80);
    qe_quant_dequantize_row(QE_DT_Q4_0, b, 32, y);
    for (int i = 0; i < 32; i++)
        ck_assert(y[i] == 0.0f);
    qe_quant_quantize_row(QE_DT_Q8_0, x, 32, b);
    qe_quant_dequantize_row(QE_DT_Q8_0, b, 32, y);
    for (int i = 0; i < 32; i++)
        ck_assert(y[i] == 0.0f);
    for (int i = 0; i < 32; i++)
        x[i] = 0.0f;
    qe_quant_quantize_row(QE_DT_Q8_0, x, 32, b);
    ck_assert(b[0] == 0 && b[1] == 0);

    /* Requantization and GGUF output refuse what they cannot do. */
    qe_model *src = open_model("models/stories260K.gguf");
    qe_quant_model *q = NULL;
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_Q4_1, &q), QE_EINVAL);
    ck_assert_ptr_null(q);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q4_1"));
    ck_assert_int_eq(qe_quant_model_new_threads(src, QE_DT_Q8_0, -1, &q), QE_EINVAL);
    ck_assert_ptr_null(q);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "-1 threads"));
    ck_assert_int_eq(qe_quant_model_new_threads(src, QE_DT_Q8_0, 65, &q), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "1 .. 64"));
    ck_assert_int_eq(qe_quant_model_new_threads(src, QE_DT_Q8_0, 64, &q), QE_OK); /* > rows: fine */
    qe_quant_model_free(q);
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_Q8_0, &q), QE_OK);
    ck_assert_int_eq(qe_quant_model_write_gguf(q, "/nonexistent-dir/x.gguf"), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent-dir/x.gguf"));
    qe_quant_model_free(q);
    qe_quant_model_free(NULL);
    qe_model_close(src);
    src = open_model("models/TinyStories-656K");
    ck_assert_int_eq(qe_quant_model_new(src, QE_DT_Q8_0, &q), QE_OK); /* HF models requantize */
    ck_assert_int_eq(qe_quant_model_write_gguf(q, "/tmp/never-written.gguf"), QE_EUNSUPPORTED);
    ck_assert_int_eq(access("/tmp/never-written.gguf", F_OK), -1);
    qe_quant_model_free(q);
    qe_model_close(src);
}
END_TEST

Suite *quant_suite(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("codecs");
    tcase_add_test(tc, test_q8_0_known);
    tcase_add_test(tc, test_q4_0_known);
    tcase_add_test(tc, test_legacy_dequant_known);
    tcase_add_test(tc, test_k_dequant_known);
    tcase_add_test(tc, test_q6_k_known);
    tcase_add_test(tc, test_error_bounds);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_requant_types);
    tcase_add_test(tc, test_requant_threads);
    tcase_add_test(tc, test_weight_type_rule);
    tcase_add_test(tc, test_write_gguf);
    tcase_add_test(tc, test_quality_ordering);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
