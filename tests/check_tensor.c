/* check_tensor.c - weight views and the per-type row decoder. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor.h"

START_TEST(test_rows)
{
    /* IEEE encodings: f16 0x3c00 = 1, 0xc000 = -2, 0x3555 ~ 1/3 (0.333252);
     * bf16 0x3f80 = 1, 0xc040 = -3, 0x4049 = 3.140625. */
    uint16_t h[6] = {0x3c00, 0xc000, 0x3555, 0x0000, 0x3c00, 0x3c00};
    uint16_t b[6] = {0x3f80, 0xc040, 0x4049, 0x8000, 0x3f80, 0x3f80};
    qe_tensor t;
    float row[3];
    ck_assert_int_eq(qe_tensor_view(&t, "h", QE_DT_F16, 3, 2, h, sizeof h, 1), QE_OK);
    ck_assert_uint_eq(t.row_bytes, 6);
    ck_assert_uint_eq(t.nbytes, 12);
    qe_tensor_row_f32(&t, 0, row);
    ck_assert(row[0] == 1.0f && row[1] == -2.0f && row[2] == 0.333251953125f);
    ck_assert_int_eq(qe_tensor_view(&t, "b", QE_DT_BF16, 3, 2, b, sizeof b, 1), QE_OK);
    qe_tensor_row_f32(&t, 0, row);
    ck_assert(row[0] == 1.0f && row[1] == -3.0f && row[2] == 3.140625f);
    qe_tensor_row_f32(&t, 1, row);
    ck_assert(row[0] == 0.0f && signbit(row[0]) && row[1] == 1.0f);
    /* F32 rows at an odd (unaligned) address, as safetensors may place them. */
    unsigned char raw[1 + 4 * 4];
    float vals[4] = {0.5f, -1.25f, 3.0f, 1e-3f};
    memcpy(raw + 1, vals, sizeof vals);
    ck_assert_int_eq(qe_tensor_view(&t, "f", QE_DT_F32, 2, 2, raw + 1, 16, 1), QE_OK);
    qe_tensor_row_f32(&t, 1, row);
    ck_assert(row[0] == 3.0f && row[1] == 1e-3f);
    ck_assert(qe_tensor_type_supported(QE_DT_F32) && qe_tensor_type_supported(QE_DT_F16) &&
              qe_tensor_type_supported(QE_DT_BF16));
}
END_TEST

START_TEST(test_limits)
{
    float d[8] = {0};
    qe_tensor t;
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(qe_tensor_view(&t, "q", QE_DT_Q2_K, 256, 1, d, 1000, 0), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q2_k"));
    ck_assert_int_eq(qe_tensor_view(&t, "e", QE_DT_F32, 0, 4, d, sizeof d, 0), QE_ECORRUPT);
    ck_assert_int_eq(qe_tensor_view(&t, "e", QE_DT_F32, 4, -1, d, sizeof d, 0), QE_ECORRUPT);
    /* 9 floats do not fit in 32 bytes; 4 floats fit but are not exact. */
    ck_assert_int_eq(qe_tensor_view(&t, "big", QE_DT_F32, 3, 3, d, sizeof d, 0), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "needs 36 bytes"));
    ck_assert_ptr_null(t.name); /* failed views leave *t alone */
    ck_assert_int_eq(qe_tensor_view(&t, "x", QE_DT_F32, 2, 2, d, sizeof d, 0), QE_OK);
    ck_assert_int_eq(qe_tensor_view(&t, "x", QE_DT_F32, 2, 2, d, sizeof d, 1), QE_ECORRUPT);
    ck_assert_int_eq(qe_tensor_view(&t, "o", QE_DT_F32, INT64_MAX / 2, 4, d, sizeof d, 0),
                     QE_ERANGE);
    ck_assert_int_eq(qe_tensor_view(&t, "o", QE_DT_F32, 1 << 30, INT64_MAX / 2, d, sizeof d, 0),
                     QE_ERANGE);
}
END_TEST

Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("rows");
    tcase_add_test(tc, test_rows);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
