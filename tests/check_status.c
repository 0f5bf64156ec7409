/* check_status.c - the status type's names, the per-thread message and its
 * one-line rule (control bytes quoted from input stored as \xNN), context
 * prefixes, and qe_printable's escaping of untrusted bytes. */
#include <check.h>
#include <string.h>

#include "status.h"

START_TEST(test_names)
{
    ck_assert_str_eq(qe_status_str(QE_OK), "OK");
    ck_assert_str_eq(qe_status_str(QE_ECORRUPT), "ECORRUPT");
    ck_assert_str_eq(qe_status_str(QE_EINTERRUPTED), "EINTERRUPTED");
    ck_assert_str_eq(qe_status_str(QE_STATUS_COUNT), "EUNKNOWN");
    ck_assert_str_eq(qe_status_str((qe_status)-1), "EUNKNOWN");
}
END_TEST

START_TEST(test_one_line)
{
    /* a quoted token with a newline, a tab and DEL: the message stays one line */
    ck_assert_int_eq(qe_fail(QE_ECORRUPT, "t.json: id %d is '%s'", 3, "a\nb\t\x7f"), QE_ECORRUPT);
    ck_assert_str_eq(qe_errmsg(), "t.json: id 3 is 'a\\x0ab\\x09\\x7f'");
    /* UTF-8 and printable ASCII are kept as they are */
    qe_fail(QE_ECORRUPT, "piece '%s'", "\xe2\x96\x81the");
    ck_assert_str_eq(qe_errmsg(), "piece '\xe2\x96\x81the'");
    /* a prefix added on the way up keeps the rule */
    qe_fail(QE_EIO, "inner\r");
    ck_assert_int_eq(qe_fail_prefix(QE_EIO, "outer %s", "x\ny"), QE_EIO);
    ck_assert_str_eq(qe_errmsg(), "outer x\\x0ay: inner\\x0d");
    qe_errclear();
    ck_assert_str_eq(qe_errmsg(), "");
}
END_TEST

START_TEST(test_printable)
{
    char buf[256];
    ck_assert_str_eq(qe_printable("ok", 2, buf, sizeof buf), "ok");
    /* quotes, backslashes, controls and non-ASCII bytes as \xNN; NUL inside n too */
    ck_assert_str_eq(qe_printable("a'\\\n\xc3\xa9\0z", 8, buf, sizeof buf),
                     "a\\x27\\x5c\\x0a\\xc3\\xa9\\x00z");
    /* cut after 48 bytes */
    char long_in[100];
    memset(long_in, 'k', sizeof long_in);
    qe_printable(long_in, sizeof long_in, buf, sizeof buf);
    ck_assert_uint_eq(strlen(buf), 48 + 3);
    ck_assert_str_eq(buf + 48, "...");
}
END_TEST

START_TEST(test_limits)
{
    /* a message longer than the buffer is cut, still NUL-terminated */
    char big[3000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    qe_fail(QE_ERANGE, "%s", big);
    const size_t n = strlen(qe_errmsg());
    ck_assert_uint_gt(n, 500);
    ck_assert_uint_lt(n, sizeof big - 1);
    /* one of control bytes only: every escape is whole where it is cut */
    memset(big, '\n', sizeof big - 1);
    qe_fail(QE_ERANGE, "%s", big);
    const char *m = qe_errmsg();
    const size_t k = strlen(m);
    ck_assert_uint_eq(k % 4, 0);
    ck_assert_ptr_null(strchr(m, '\n'));
    ck_assert_str_eq(m + k - 4, "\\x0a");
    /* qe_printable into the smallest buffer it allows, and an empty input */
    char small[8];
    ck_assert_str_eq(qe_printable("\n\n\n", 3, small, sizeof small), "");
    ck_assert_str_eq(qe_printable("", 0, small, sizeof small), "");
    char nine[9];
    ck_assert_str_eq(qe_printable("\nab", 3, nine, sizeof nine), "\\x0a");
}
END_TEST

Suite *status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_one_line);
    tcase_add_test(tc, test_printable);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
