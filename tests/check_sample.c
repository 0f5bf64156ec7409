/* check_sample.c - host-side token choice (lib/sample.h): the SplitMix64
 * stream against its published first output, per-sequence seeds, greedy,
 * and the empirical frequencies of temperature / top-k / top-p sampling
 * against probabilities computed here from the definitions. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())

START_TEST(test_rng)
{
    /* SplitMix64 (Steele, Lea, Flood 2014) seeded with 0: the first output
     * is 0xE220A8397B1DCDAF, as in Vigna's reference splitmix64.c. */
    qe_sample_rng r;
    qe_sample_rng_init(&r, 0);
    ck_assert_uint_eq(qe_sample_next(&r), 0xE220A8397B1DCDAFull);
    /* uniform: in [0, 1), mean near 1/2 */
    double s = 0;
    for (int i = 0; i < 100000; i++) {
        double u = qe_sample_uniform(&r);
        ck_assert(u >= 0 && u < 1);
        s += u;
    }
    ck_assert(fabs(s / 100000 - 0.5) < 0.005);
    /* seeds: deterministic, distinct across indices and run seeds */
    ck_assert_uint_eq(qe_sample_seed(7, 3), qe_sample_seed(7, 3));
    ck_assert_uint_ne(qe_sample_seed(7, 3), qe_sample_seed(7, 4));
    ck_assert_uint_ne(qe_sample_seed(7, 3), qe_sample_seed(8, 3));
    ck_assert_uint_ne(qe_sample_seed(0, 0), qe_sample_seed(0, 1));
}
END_TEST

START_TEST(test_greedy)
{
    const float lp[4] = {-0.5f, -1.0f, -2.0f, -3.0f};
    qe_sample_opts o = qe_sample_opts_default();
    ck_assert(o.temp == 0);
    qe_sample_rng r;
    qe_sample_rng_init(&r, 42);
    ck_assert_int_eq(qe_sample_pick(&o, lp, 4, &r), 0);
    ck_assert_uint_eq(r.state, 42); /* greedy draws nothing */
    /* top_k 1 and a tiny top_p leave only the first candidate */
    o.temp = 1.0f;
    o.top_k = 1;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(qe_sample_pick(&o, lp, 4, &r), 0);
    ck_assert_uint_ne(r.state, 42); /* sampling drew numbers */
    o.top_k = 0;
    o.top_p = 0.01f;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(qe_sample_pick(&o, lp, 4, &r), 0);
    ck_assert_int_eq(qe_sample_pick(&o, lp, 1, &r), 0);
}
END_TEST

/* Empirical frequencies of n draws vs expected probabilities p[0..k). */
static void check_freq(const qe_sample_opts *o, const float *lp, int n_cand, const double *p, int k)
{
    enum { N = 50000 };
    int count[8] = {0};
    qe_sample_rng r;
    qe_sample_rng_init(&r, 99);
    for (int i = 0; i < N; i++) {
        int c = qe_sample_pick(o, lp, n_cand, &r);
        ck_assert(c >= 0 && c < n_cand);
        count[c]++;
    }
    for (int i = 0; i < n_cand; i++) {
        double want = i < k ? p[i] : 0, f = (double)count[i] / N;
        /* 6 binomial standard deviations */
        double tol = 6 * sqrt(want * (1 - want) / N) + 1e-9;
        ck_assert_msg(fabs(f - want) <= tol, "candidate %d: frequency %.5f, expected %.5f", i, f, want);
    }
}

START_TEST(test_frequencies)
{
    const double pr[4] = {0.5, 0.3, 0.15, 0.05};
    float lp[4];
    for (int i = 0; i < 4; i++)
        lp[i] = (float)log(pr[i]);
    qe_sample_opts o = qe_sample_opts_default();
    o.temp = 1;
    o.top_k = 0;
    check_freq(&o, lp, 4, pr, 4);
    /* temperature 0.5: p_i^2 renormalised */
    double t[4], z = 0;
    for (int i = 0; i < 4; i++)
        z += t[i] = pr[i] * pr[i];
    for (int i = 0; i < 4; i++)
        t[i] /= z;
    o.temp = 0.5f;
    check_freq(&o, lp, 4, t, 4);
    /* top_k 2: the first two renormalised */
    const double k2[2] = {0.5 / 0.8, 0.3 / 0.8};
    o.temp = 1;
    o.top_k = 2;
    check_freq(&o, lp, 4, k2, 2);
    /* top_p 0.7: 0.5 < 0.7 <= 0.8 keeps two */
    o.top_k = 0;
    o.top_p = 0.7f;
    check_freq(&o, lp, 4, k2, 2);
    /* top_p 0.9: 0.8 < 0.9 <= 0.95 keeps three */
    const double k3[3] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95};
    o.top_p = 0.9f;
    check_freq(&o, lp, 4, k3, 3);
    /* the same seed gives the same picks */
    qe_sample_rng a, b;
    qe_sample_rng_init(&a, 5);
    qe_sample_rng_init(&b, 5);
    o.top_p = 1;
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(qe_sample_pick(&o, lp, 4, &a), qe_sample_pick(&o, lp, 4, &b));
}
END_TEST

START_TEST(test_limits)
{
    qe_sample_opts o = qe_sample_opts_default();
    OK(qe_sample_check(&o));
    o.temp = -0.1f;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "temperature"));
    o.temp = NAN;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    o = qe_sample_opts_default();
    o.top_k = -1;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    o = qe_sample_opts_default();
    o.top_p = 0;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    o.top_p = 1.5f;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    o.top_p = NAN;
    ck_assert_int_eq(qe_sample_check(&o), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "top-p"));
    /* -inf log-probs (zero probability) are never drawn */
    const float lp[3] = {0.0f, -INFINITY, -INFINITY};
    o = qe_sample_opts_default();
    o.temp = 2;
    qe_sample_rng r;
    qe_sample_rng_init(&r, 1);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(qe_sample_pick(&o, lp, 3, &r), 0);
}
END_TEST

Suite *sample_suite(void)
{
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60); /* 250k draws: slow under ASan on a loaded machine */
    tcase_add_test(tc, test_rng);
    tcase_add_test(tc, test_greedy);
    tcase_add_test(tc, test_frequencies);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
