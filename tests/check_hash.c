/* check_hash.c - SHA-256 against FIPS 180-4 test vectors and the published
 * checksums of the shared test data (SHA256SUMS). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "testutil.h"

static void hex_of(const void *data, size_t n, char hex[65])
{
    uint8_t d[32];
    qe_hash_sha256_buf(data, n, d);
    qe_hash_hex(d, 32, hex);
}

START_TEST(test_vectors)
{
    char hex[65];
    hex_of("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m448, strlen(m448), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    hex_of(m896, strlen(m896), hex);
    ck_assert_str_eq(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* One million 'a', fed in uneven pieces through the streaming API. */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    qe_hash_sha256 c;
    qe_hash_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
        size_t n = step < sizeof a - off ? step : sizeof a - off;
        qe_hash_sha256_update(&c, a + off, n);
        off += n;
        step = step * 3 + 1;
    }
    uint8_t d[32];
    qe_hash_sha256_final(&c, d);
    qe_hash_hex(d, 32, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_split_points)
{
    /* Any split of a message into two updates gives the one-shot digest. */
    uint8_t msg[200], one[32], two[32];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof msg; n += 13) {
        qe_hash_sha256_buf(msg, n, one);
        for (size_t cut = 0; cut <= n; cut++) {
            qe_hash_sha256 c;
            qe_hash_sha256_init(&c);
            qe_hash_sha256_update(&c, msg, cut);
            qe_hash_sha256_update(&c, msg + cut, n - cut);
            qe_hash_sha256_final(&c, two);
            ck_assert_mem_eq(one, two, 32);
        }
    }
}
END_TEST

/* The published checksum of `rel` from $QEVAL_DATA/SHA256SUMS. */
static void published(const char *rel, char hex[65])
{
    FILE *f = fopen(qe_test_data("SHA256SUMS"), "r");
    ck_assert_ptr_nonnull(f);
    char line[1024], h[65], name[900];
    hex[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%64s %899s", h, name) == 2 && strcmp(name, rel) == 0)
            memcpy(hex, h, 65);
    fclose(f);
    ck_assert_msg(hex[0], "%s not in SHA256SUMS", rel);
}

START_TEST(test_files)
{
    const char *files[] = {"models/stories260K.gguf", "models/TinyStories-656K/config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char want[65], got[65];
        uint8_t d[32];
        published(files[i], want);
        ck_assert_msg(qe_hash_sha256_file(qe_test_data(files[i]), d) == QE_OK, "%s", qe_errmsg());
        qe_hash_hex(d, 32, got);
        ck_assert_str_eq(got, want);
    }
}
END_TEST

START_TEST(test_limits)
{
    uint8_t d[32];
    ck_assert_int_eq(qe_hash_sha256_file("/nonexistent/file", d), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent/file"));
    char *dir = qe_test_tmpdir();
    ck_assert_int_eq(qe_hash_sha256_file(dir, d), QE_EIO); /* reading a directory fails */
    qe_test_rmtree(dir);
    free(dir);
    char hex[3];
    uint8_t one = 0xa5;
    qe_hash_hex(&one, 1, hex);
    ck_assert_str_eq(hex, "a5");
}
END_TEST

Suite *hash_suite(void)
{
    Suite *s = suite_create("hash");
    TCase *tc = tcase_create("sha256");
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_split_points);
    tcase_add_test(tc, test_files);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
