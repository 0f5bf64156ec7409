/* check_metrics.c - perplexity and KLD statistics against hand-derived values. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "metrics.h"

START_TEST(test_ppl_small)
{
    /* nll = 1, 2, 3: mean 2, population variance 2/3, N-1 = 2. */
    qe_ppl p;
    qe_ppl_init(&p);
    qe_ppl_add(&p, 1);
    qe_ppl_add(&p, 2);
    qe_ppl_add(&p, 3);
    qe_ppl_add_text(&p, 12, 3);
    qe_ppl_result r = qe_ppl_result_of(&p);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_double_eq_tol(r.ppl, exp(2.0), 1e-12);
    ck_assert_double_eq_tol(r.ppl_err, exp(2.0) * sqrt(1.0 / 3.0), 1e-12);
    ck_assert_double_eq_tol(r.word_ppl, exp(6.0 / 3), 1e-12);
    ck_assert_double_eq_tol(r.byte_ppl, exp(6.0 / 12), 1e-12);
    ck_assert_double_eq_tol(r.bits_per_byte, 0.5 / log(2.0), 1e-12);
}
END_TEST

START_TEST(test_words)
{
    int st = 0;
    double w = qe_count_words(" hello wor", 10, &st);
    w += qe_count_words("ld  foo\n", 8, &st); /* "world" continues across spans */
    w += qe_count_words("\tbar", 4, &st);
    ck_assert_double_eq(w, 4);
}
END_TEST

START_TEST(test_percentile)
{
    float v[101];
    for (int i = 0; i < 101; i++)
        v[i] = (float)(i + 1);
    ck_assert_double_eq_tol(qe_percentile_sorted(v, 101, 0.9), 91, 1e-9);
    ck_assert_double_eq_tol(qe_percentile_sorted(v, 101, 0.999), 100.9, 1e-4);
    ck_assert_double_eq(qe_percentile_sorted(v, 101, 0), 1);
    ck_assert_double_eq(qe_percentile_sorted(v, 101, 1), 101);
}
END_TEST

START_TEST(test_kld_summary)
{
    /* Random per-token values; every statistic recomputed here directly. */
    enum { N = 1000 };
    static double kl[N], nq[N], nb[N];
    int same = 0;
    qe_kld *k;
    ck_assert_int_eq(qe_kld_new(&k), QE_OK);
    srand(7);
    for (int i = 0; i < N; i++) {
        kl[i] = (double)rand() / RAND_MAX * 0.1;
        nb[i] = (double)rand() / RAND_MAX * 5;
        nq[i] = nb[i] + ((double)rand() / RAND_MAX - 0.4) * 0.5;
        qe_kld_token t = {kl[i], nq[i], nb[i], i % 4 != 0};
        same += i % 4 != 0;
        ck_assert_int_eq(qe_kld_add(k, &t), QE_OK);
    }
    qe_kld_summary s;
    ck_assert_int_eq(qe_kld_summarize(k, &s), QE_OK);
    double mk = 0, mq = 0, mb = 0, mdp = 0;
    for (int i = 0; i < N; i++) {
        mk += kl[i] / N;
        mq += nq[i] / N;
        mb += nb[i] / N;
        mdp += (exp(-nq[i]) - exp(-nb[i])) / N;
    }
    double vq = 0, vb = 0, c = 0, vk = 0, ms = 0;
    for (int i = 0; i < N; i++) {
        vq += (nq[i] - mq) * (nq[i] - mq) / N;
        vb += (nb[i] - mb) * (nb[i] - mb) / N;
        c += (nq[i] - mq) * (nb[i] - mb) / N;
        vk += (kl[i] - mk) * (kl[i] - mk) / N;
        double d = exp(-nq[i]) - exp(-nb[i]);
        ms += d * d / N;
    }
    ck_assert_uint_eq(s.n, N);
    ck_assert_double_eq_tol(s.kld.mean, mk, 1e-9);
    ck_assert_double_eq_tol(s.kld.err, sqrt(vk / (N - 1)), 1e-7);
    ck_assert_double_eq_tol(s.ppl_q, exp(mq), 1e-9);
    ck_assert_double_eq_tol(s.ppl_base, exp(mb), 1e-9);
    ck_assert_double_eq_tol(s.ln_ratio, mq - mb, 1e-9);
    double eq = sqrt(vq / (N - 1)), eb = sqrt(vb / (N - 1)), cv = c / (N - 1);
    ck_assert_double_eq_tol(s.ln_ratio_err, sqrt(eq * eq + eb * eb - 2 * cv), 1e-7);
    ck_assert_double_eq_tol(s.cor, c / sqrt(vq * vb), 1e-6);
    ck_assert_double_eq_tol(s.dp.mean, mdp, 1e-7);
    ck_assert_double_eq_tol(s.dp_rms, sqrt(ms), 1e-7);
    ck_assert_double_eq_tol(s.same_top, (double)same / N, 1e-12);
    ck_assert_double_eq_tol(s.same_top_err, sqrt(0.75 * 0.25 / (N - 1)), 1e-12);
    ck_assert(s.kld_min <= s.kld_pct[7] && s.kld_pct[7] <= s.kld_median);
    ck_assert(s.kld_median <= s.kld_pct[0] && s.kld_pct[0] <= s.kld_max);
    qe_kld_free(k);
}
END_TEST

START_TEST(test_limits)
{
    qe_ppl p;
    qe_ppl_init(&p);
    qe_ppl_result r = qe_ppl_result_of(&p);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_double_eq(r.ppl_err, 0);
    qe_ppl_add(&p, 2);
    r = qe_ppl_result_of(&p); /* one token: no spread, no error bar, no NaN */
    ck_assert_double_eq_tol(r.ppl, exp(2.0), 1e-12);
    ck_assert_double_eq(r.ppl_err, 0);
    ck_assert_double_eq(r.word_ppl, 0);
    qe_kld *k;
    ck_assert_int_eq(qe_kld_new(&k), QE_OK);
    qe_kld_summary s;
    ck_assert_int_eq(qe_kld_summarize(k, &s), QE_OK);
    ck_assert_uint_eq(s.n, 0);
    /* Identical distributions: KLD 0, same-top 100 %, ratio 1 exactly. */
    for (int i = 0; i < 50; i++) {
        qe_kld_token t = {0.0, 1.0 + i * 0.01, 1.0 + i * 0.01, 1};
        qe_kld_add(k, &t);
    }
    ck_assert_int_eq(qe_kld_summarize(k, &s), QE_OK);
    ck_assert_double_eq(s.kld.mean, 0);
    ck_assert_double_eq(s.same_top, 1);
    ck_assert_double_eq(s.ln_ratio, 0);
    ck_assert_double_eq(s.dp_rms, 0);
    ck_assert_double_eq(s.dp_rms_err, 0);
    qe_kld_free(k);
    qe_kld_free(NULL);
    ck_assert_double_eq(qe_percentile_sorted(NULL, 0, 0.5), 0);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ppl_small);
    tcase_add_test(tc, test_words);
    tcase_add_test(tc, test_percentile);
    tcase_add_test(tc, test_kld_summary);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
