/* check_kv_format.c - KV-cache formats: names, row sizes, codecs, and the
 * reference forward running with an encoded cache.
 *
 * Expectations: row sizes from the block layouts (34 bytes per 32 for Q8_0,
 * 2 + d*b/8 per head for TurboQuant); a row codec equals the per-block /
 * per-head codecs applied piece by piece; in the forward pass, the f32
 * cache agrees with the double cache to float precision, and fewer bits
 * move the log-probabilities more (f16 < q8_0 < q4_0, tq4 < tq3 < tq2). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_format.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"
#include "turboquant.h"

START_TEST(test_names)
{
    static const char *names[] = {"f32", "f16", "q8_0", "q4_0", "tq4", "tq3", "tq2"};
    for (int f = 0; f < QE_KV_FORMAT_COUNT; f++) {
        qe_kv_format g = QE_KV_FORMAT_COUNT;
        ck_assert_str_eq(qe_kv_format_name((qe_kv_format)f), names[f]);
        ck_assert_int_eq(qe_kv_format_parse(names[f], &g), QE_OK);
        ck_assert_int_eq(g, f);
    }
    qe_kv_format g;
    ck_assert_int_eq(qe_kv_format_parse("TQ3", &g), QE_OK);
    ck_assert_int_eq(g, QE_KV_TQ3);
    ck_assert(qe_kv_format_per_head(QE_KV_TQ4) && !qe_kv_format_per_head(QE_KV_Q8_0));
}
END_TEST

START_TEST(test_row_bytes)
{
    size_t n = 0;
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_F32, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 128 * 4);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_F16, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 128 * 2);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_Q8_0, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 4 * 34);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_Q4_0, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 4 * 18);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_TQ4, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 66);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_TQ3, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 50);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_TQ2, 8, 128, &n), QE_OK);
    ck_assert_uint_eq(n, 8 * 34);
    /* stories260K: 4 KV heads of 8: rows of 32 fit Q8_0 blocks */
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_Q8_0, 4, 8, &n), QE_OK);
    ck_assert_uint_eq(n, 34);
}
END_TEST

START_TEST(test_row_codecs)
{
    enum { H = 3, D = 64 };
    float x[H * D], y[H * D], z[H * D];
    unsigned char a[H * D * 4], b[H * D * 4];
    uint32_t s = 77;
    for (int i = 0; i < H * D; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (float)(1 + i / D);
    }
    /* Block formats: the row is one GGML row of 192 values. */
    qe_kv_format_quantize_row(QE_KV_Q4_0, x, H, D, a);
    qe_quant_quantize_row(QE_DT_Q4_0, x, H * D, b);
    ck_assert(memcmp(a, b, H * D / 32 * 18) == 0);
    qe_kv_format_dequantize_row(QE_KV_Q4_0, a, H, D, y);
    qe_quant_dequantize_row(QE_DT_Q4_0, b, H * D, z);
    ck_assert(memcmp(y, z, sizeof y) == 0);
    qe_kv_format_quantize_row(QE_KV_F16, x, H, D, a);
    qe_kv_format_dequantize_row(QE_KV_F16, a, H, D, y);
    for (int i = 0; i < H * D; i++)
        ck_assert(fabsf(y[i] - x[i]) <= fabsf(x[i]) / 2048);
    qe_kv_format_quantize_row(QE_KV_F32, x, H, D, a);
    qe_kv_format_dequantize_row(QE_KV_F32, a, H, D, y);
    ck_assert(memcmp(x, y, sizeof x) == 0);
    /* TurboQuant: heads one after another, each its own vector. */
    const size_t per = qe_turboquant_vec_bytes(3, D);
    qe_kv_format_quantize_row(QE_KV_TQ3, x, H, D, a);
    for (int h = 0; h < H; h++) {
        qe_turboquant_quantize(3, x + h * D, D, QE_TURBOQUANT_SEED, b + h * per);
        ck_assert(memcmp(a + h * per, b + h * per, per) == 0);
    }
    qe_kv_format_dequantize_row(QE_KV_TQ3, a, H, D, y);
    for (int h = 0; h < H; h++) {
        qe_turboquant_dequantize(3, b + h * per, D, QE_TURBOQUANT_SEED, z);
        ck_assert(memcmp(y + h * D, z, D * sizeof *z) == 0);
    }
}
END_TEST

/* ---- the reference forward with an encoded cache ---- */

static double *logprobs_run(const qe_model *m, int kv_codec, qe_kv_format f, const int *tok, int n)
{
    const int nv = qe_model_hparams(m)->n_vocab;
    double *out = malloc((size_t)n * nv * sizeof *out);
    qe_ref *r = NULL;
    ck_assert_ptr_nonnull(out);
    if (kv_codec)
        ck_assert_msg(qe_ref_new_kv(m, n, f, f, &r) == QE_OK, "%s", qe_errmsg());
    else
        ck_assert_int_eq(qe_ref_new(m, n, &r), QE_OK);
    for (int i = 0; i < n; i++) {
        double *l = out + (size_t)i * nv;
        ck_assert_int_eq(qe_ref_step(r, tok[i], i, l), QE_OK);
        double mx = -INFINITY, z = 0;
        for (int v = 0; v < nv; v++)
            mx = fmax(mx, l[v]);
        for (int v = 0; v < nv; v++)
            z += exp(l[v] - mx);
        for (int v = 0; v < nv; v++)
            l[v] -= mx + log(z);
    }
    qe_ref_free(r);
    return out;
}

/* Mean |log p(next token)| difference over positions 1.. (position 0 sees
 * only itself, and attention over one position ignores K). */
static double mean_diff(const double *a, const double *b, const int *tok, int n, int nv)
{
    double s = 0;
    for (int i = 0; i + 1 < n; i++)
        s += fabs(a[(size_t)i * nv + tok[i + 1]] - b[(size_t)i * nv + tok[i + 1]]);
    return s / (n - 1);
}

START_TEST(test_ref_kv)
{
    qe_model *m = NULL;
    ck_assert_int_eq(qe_model_open(qe_test_data("models/stories260K.gguf"), &m), QE_OK);
    const int nv = qe_model_hparams(m)->n_vocab;
    enum { N = 64 };
    int tok[N];
    uint32_t s = 4242;
    tok[0] = 1;
    for (int i = 1; i < N; i++) {
        s = s * 1103515245u + 12345u;
        tok[i] = 3 + (int)((s >> 8) % 500u);
    }
    double *base = logprobs_run(m, 0, QE_KV_F32, tok, N);
    double diff[QE_KV_FORMAT_COUNT];
    for (int f = 0; f < QE_KV_FORMAT_COUNT; f++) {
        double *lp = logprobs_run(m, 1, (qe_kv_format)f, tok, N);
        diff[f] = mean_diff(base, lp, tok, N, nv);
        fprintf(stderr, "# stories260K KV %-5s mean |dlogprob| %.6f\n",
                qe_kv_format_name((qe_kv_format)f), diff[f]);
        free(lp);
    }
    ck_assert_msg(diff[QE_KV_F32] < 1e-5, "f32 cache vs double cache: %g", diff[QE_KV_F32]);
    ck_assert(diff[QE_KV_F32] < diff[QE_KV_F16]);
    ck_assert(diff[QE_KV_F16] < diff[QE_KV_Q8_0]);
    ck_assert(diff[QE_KV_Q8_0] < diff[QE_KV_Q4_0]);
    ck_assert(diff[QE_KV_TQ4] < diff[QE_KV_TQ3]);
    ck_assert(diff[QE_KV_TQ3] < diff[QE_KV_TQ2]);
    ck_assert(diff[QE_KV_Q8_0] < diff[QE_KV_TQ4]);
    free(base);
    qe_model_close(m);
}
END_TEST

START_TEST(test_limits)
{
    qe_kv_format g = QE_KV_F16;
    size_t n = 0;
    ck_assert_int_eq(qe_kv_format_parse("q5_0", &g), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q5_0"));
    ck_assert_int_eq(g, QE_KV_F16); /* untouched */
    ck_assert_int_eq(qe_kv_format_parse("", &g), QE_EINVAL);
    ck_assert_int_eq(qe_kv_format_parse(NULL, &g), QE_EINVAL);
    ck_assert_str_eq(qe_kv_format_name((qe_kv_format)99), "?");
    ck_assert_int_eq(qe_kv_format_row_bytes((qe_kv_format)99, 1, 32, &n), QE_EINVAL);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_Q8_0, 0, 32, &n), QE_EINVAL);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_Q8_0, 3, 8, &n), QE_EUNSUPPORTED); /* 24 values */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q8_0"));
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_TQ4, 8, 96, &n), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "96"));
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_TQ3, 8, 4, &n), QE_EUNSUPPORTED);
    ck_assert_int_eq(qe_kv_format_row_bytes(QE_KV_F16, 3, 7, &n), QE_OK); /* any size */

    qe_model *m = NULL;
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_model_open(qe_test_data("models/stories260K.gguf"), &m), QE_OK);
    ck_assert_int_eq(qe_ref_new_kv(m, 8, (qe_kv_format)99, QE_KV_F32, &r), QE_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qe_ref_new_kv(m, 0, QE_KV_TQ4, QE_KV_TQ4, &r), QE_EINVAL);
    ck_assert_int_eq(qe_ref_new_kv(m, 8, QE_KV_Q4_0, QE_KV_TQ2, &r), QE_OK); /* K and V differ */
    double *l = malloc((size_t)qe_model_hparams(m)->n_vocab * sizeof *l);
    ck_assert_int_eq(qe_ref_step(r, 1, 0, l), QE_OK);
    ck_assert_int_eq(qe_ref_step(r, 5, 1, l), QE_OK);
    ck_assert(isfinite(l[0]));
    free(l);
    qe_ref_free(r);
    qe_model_close(m);
}
END_TEST

Suite *kv_format_suite(void)
{
    Suite *s = suite_create("kv_format");
    TCase *tc = tcase_create("formats");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_row_bytes);
    tcase_add_test(tc, test_row_codecs);
    tcase_add_test(tc, test_ref_kv);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
