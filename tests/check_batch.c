/* check_batch.c - chunk planning follows llama-perplexity's rules; a
 * resumed run's batches take the chunks not yet done, in order. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

START_TEST(test_plan)
{
    qe_chunk_plan p;
    /* 1000 tokens at n_ctx 128: 7 chunks, scored 64..126 = 63 per chunk
     * (llama-perplexity scores 255 at n_ctx 512). */
    ck_assert_int_eq(qe_chunk_plan_make(1000, 128, 0, 1, &p), QE_OK);
    ck_assert_int_eq(p.n_chunk, 7);
    ck_assert_int_eq(p.first, 64);
    ck_assert_int_eq(p.n_scored, 63);
    ck_assert_int_eq(qe_chunk_plan_make(1 << 20, 512, 0, 1, &p), QE_OK);
    ck_assert_int_eq(p.n_scored, 255);
    ck_assert_int_eq(qe_chunk_plan_make(1000, 128, 3, 1, &p), QE_OK);
    ck_assert_int_eq(p.n_chunk, 3);
    /* exactly 2*n_ctx tokens: 2 chunks */
    ck_assert_int_eq(qe_chunk_plan_make(256, 128, 0, -1, &p), QE_OK);
    ck_assert_int_eq(p.n_chunk, 2);
}
END_TEST

START_TEST(test_fill)
{
    int32_t toks[40], dst[8];
    for (int i = 0; i < 40; i++)
        toks[i] = 100 + i;
    qe_chunk_plan p;
    ck_assert_int_eq(qe_chunk_plan_make(40, 8, 0, 1, &p), QE_OK);
    qe_chunk_fill(&p, toks, 2, dst);
    ck_assert_int_eq(dst[0], 1); /* BOS replaces the first token */
    ck_assert_int_eq(dst[1], 117);
    ck_assert_int_eq(dst[7], 123);
    ck_assert_int_eq(qe_chunk_target(&p, toks, 2, 6), 123);
    ck_assert_int_eq(qe_chunk_target(&p, toks, 0, 0), 101); /* never BOS */
    ck_assert_int_eq(qe_chunk_plan_make(40, 8, 0, -1, &p), QE_OK);
    qe_chunk_fill(&p, toks, 1, dst);
    ck_assert_int_eq(dst[0], 108); /* no BOS: text token kept */
}
END_TEST

/* chunks 1, 2, 5 and every multiple of 7 are done */
static int done(void *ud, int64_t i)
{
    ++*(int *)ud;
    return i == 1 || i == 2 || i == 5 || i % 7 == 0;
}

START_TEST(test_next)
{
    qe_chunk_plan p;
    ck_assert_int_eq(qe_chunk_plan_make(20 * 8, 8, 0, 1, &p), QE_OK); /* chunks 0 .. 19 */
    int calls = 0;
    /* left: 3 4 6 8 9 10 11 12 13 15 16 17 18 19 */
    ck_assert_int_eq(qe_chunk_count_todo(&p, done, &calls), 14);
    ck_assert_int_eq(calls, 20);
    ck_assert_int_eq(qe_chunk_count_todo(&p, NULL, NULL), 20);
    static const int64_t want[] = {3, 4, 6, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19};
    int64_t next = 0, todo[4];
    size_t got = 0;
    int n, batches = 0;
    while ((n = qe_chunk_next(&p, done, &calls, &next, 4, todo)) > 0) {
        ck_assert_int_le(n, 4);
        for (int k = 0; k < n; k++, got++) {
            ck_assert_uint_lt(got, sizeof want / sizeof want[0]);
            ck_assert_int_eq(todo[k], want[got]);
        }
        batches++;
    }
    ck_assert_uint_eq(got, sizeof want / sizeof want[0]);
    ck_assert_int_eq(batches, 4); /* 4 + 4 + 4 + 2 */
    ck_assert_int_eq(next, 20);
    /* after the end: nothing, and next stays */
    ck_assert_int_eq(qe_chunk_next(&p, done, &calls, &next, 4, todo), 0);
    ck_assert_int_eq(next, 20);
    /* no skip function: every chunk, n at a time */
    next = 18;
    ck_assert_int_eq(qe_chunk_next(&p, NULL, NULL, &next, 4, todo), 2);
    ck_assert_int_eq(todo[0], 18);
    ck_assert_int_eq(todo[1], 19);
}
END_TEST

START_TEST(test_limits)
{
    qe_chunk_plan p;
    ck_assert_int_eq(qe_chunk_plan_make(255, 128, 0, 1, &p), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "at least 256 tokens"));
    ck_assert_int_eq(qe_chunk_plan_make(0, 128, 0, 1, &p), QE_EINVAL);
    ck_assert_int_eq(qe_chunk_plan_make(100, 2, 0, 1, &p), QE_EINVAL);
    ck_assert_int_eq(qe_chunk_plan_make(100, -5, 0, 1, &p), QE_EINVAL);
}
END_TEST

Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_plan);
    tcase_add_test(tc, test_fill);
    tcase_add_test(tc, test_next);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
