/* check_dtype.c - the GGML type table and half/bfloat conversions. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

START_TEST(test_sizes)
{
    /* Block layouts from ggml-common.h: d(f16) + qs; K-quants over 256. */
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q8_0), 2 + 32);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q4_0), 2 + 16);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q4_1), 2 + 2 + 16);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q5_0), 2 + 4 + 16);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q5_1), 2 + 2 + 4 + 16);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q4_K), 2 + 2 + 12 + 128);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q5_K), 2 + 2 + 12 + 32 + 128);
    ck_assert_uint_eq(qe_dtype_block_bytes(QE_DT_Q6_K), 128 + 64 + 16 + 2);
    ck_assert_uint_eq(qe_dtype_block(QE_DT_Q6_K), 256);
    uint64_t n = 0;
    ck_assert_int_eq(qe_dtype_row_bytes(QE_DT_Q4_0, 4096, &n), QE_OK);
    ck_assert_uint_eq(n, 4096 / 32 * 18);
    ck_assert_int_eq(qe_dtype_row_bytes(QE_DT_F16, 7, &n), QE_OK);
    ck_assert_uint_eq(n, 14);
    ck_assert_double_eq_tol(qe_dtype_bpw(QE_DT_Q8_0), 8.5, 1e-12);
    qe_dtype t;
    ck_assert_int_eq(qe_dtype_from_name("Q4_K", &t), QE_OK);
    ck_assert_int_eq(t, QE_DT_Q4_K);
}
END_TEST

START_TEST(test_half)
{
    /* Every half value survives half -> float -> half exactly. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qe_f16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        ck_assert_uint_eq(qe_f32_to_f16(f), h);
    }
    ck_assert(qe_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(qe_f16_to_f32(0xc000) == -2.0f);
    ck_assert(qe_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    ck_assert_uint_eq(qe_f32_to_f16(65520.0f), 0x7c00); /* rounds to +Inf */
    ck_assert_uint_eq(qe_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie to even */
    ck_assert(qe_bf16_to_f32(qe_f32_to_bf16(3.140625f)) == 3.140625f);
}
END_TEST

START_TEST(test_limits)
{
    uint64_t n = 0;
    ck_assert_int_eq(qe_dtype_row_bytes(QE_DT_Q8_0, 33, &n), QE_ECORRUPT);
    ck_assert_int_eq(qe_dtype_row_bytes(QE_DT_F32, -1, &n), QE_ECORRUPT);
    ck_assert_int_eq(qe_dtype_row_bytes(4, 32, &n), QE_EUNSUPPORTED); /* removed Q4_2 */
    ck_assert_int_eq(qe_dtype_row_bytes(99999, 32, &n), QE_EUNSUPPORTED);
    ck_assert_int_eq(qe_dtype_row_bytes(QE_DT_I64, INT64_MAX, &n), QE_ERANGE);
    ck_assert_str_eq(qe_dtype_name(77), "?");
    qe_dtype t;
    ck_assert_int_eq(qe_dtype_from_name("q9_9", &t), QE_EINVAL);
}
END_TEST

Suite *dtype_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_half);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
