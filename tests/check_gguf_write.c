/* check_gguf_write.c - the GGUF writer's streaming tensors
 * (qe_gguf_writer_add_tensor_fill) and qe_gguf_writer_size.
 *
 * Expectations: a file whose tensors come from fill callbacks must be byte
 * for byte the file written from the same bytes held in memory (the
 * buffered path, tested in check_gguf.c); the callback sees the run
 * contract of gguf_write.h (whole rows, in order, each run at most
 * QE_GGUF_FILL_CHUNK bytes unless one row is larger); the size query equals
 * the length actually written; a failing callback leaves no file. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_write.h"
#include "testutil.h"

/* A source that copies rows out of a buffer and records its calls. */
struct src {
    const unsigned char *bytes;
    uint64_t row_bytes;
    uint64_t next_row;   /* the row the next call must start at */
    uint64_t calls, max_run;
    int bad;             /* a call broke the contract */
    int fail_at_call;    /* > 0: that call returns QE_EIO */
};

static qe_status src_fill(void *ctx, uint64_t row0, uint64_t n, void *dst)
{
    struct src *s = ctx;
    s->calls++;
    if (s->fail_at_call > 0 && s->calls == (uint64_t)s->fail_at_call)
        return qe_fail(QE_EIO, "planted failure");
    if (row0 != s->next_row || n == 0)
        s->bad = 1;
    if (n > s->max_run)
        s->max_run = n;
    memcpy(dst, s->bytes + row0 * s->row_bytes, n * s->row_bytes);
    s->next_row = row0 + n;
    return QE_OK;
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* Two writers with the same metadata and tensors: buffered (w1) and
 * streamed (w2). Tensor 0: 20 MiB of f32 rows of 1024 (several runs);
 * tensor 1: a small Q8_0 matrix; tensor 2: a 1-D f16 vector. */
START_TEST(test_fill_equals_buffered)
{
    const int64_t ne0[2] = {1024, 5120}, ne1[2] = {64, 3}, ne2[1] = {7};
    const size_t n0 = 1024 * 5120 * 4, n1 = 2 * 3 * 34, n2 = 14;
    unsigned char *b0 = pattern(n0, 1), *b1 = pattern(n1, 2), *b2 = pattern(n2, 3);
    /* Q8_0 scales must be finite for no reason here: the writer copies bytes. */
    qe_gguf_writer *w1 = NULL, *w2 = NULL;
    ck_assert_int_eq(qe_gguf_writer_new(3, &w1), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_new(3, &w2), QE_OK);
    struct src s0 = {b0, 4096, 0, 0, 0, 0, 0}, s1 = {b1, 68, 0, 0, 0, 0, 0},
               s2 = {b2, 14, 0, 0, 0, 0, 0};
    qe_gguf_writer *ws[2] = {w1, w2};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(qe_gguf_writer_add_str(ws[k], "general.architecture", "test"), QE_OK);
        ck_assert_int_eq(qe_gguf_writer_set_alignment(ws[k], 64), QE_OK);
    }
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w1, "big", QE_DT_F32, 2, ne0, b0), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w1, "q", QE_DT_Q8_0, 2, ne1, b1), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w1, "v", QE_DT_F16, 1, ne2, b2), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w2, "big", QE_DT_F32, 2, ne0, src_fill, &s0),
                     QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w2, "q", QE_DT_Q8_0, 2, ne1, src_fill, &s1),
                     QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w2, "v", QE_DT_F16, 1, ne2, src_fill, &s2),
                     QE_OK);

    void *m1 = NULL, *m2 = NULL;
    size_t l1 = 0, l2 = 0;
    ck_assert_int_eq(qe_gguf_writer_write_mem(w1, &m1, &l1), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_write_mem(w2, &m2, &l2), QE_OK);
    ck_assert_uint_eq(l1, l2);
    ck_assert(memcmp(m1, m2, l1) == 0);
    /* Run contract: 20 MiB of 4 KiB rows in runs of 16 MiB = 4096 rows. */
    ck_assert(!s0.bad && !s1.bad && !s2.bad);
    ck_assert_uint_eq(s0.next_row, 5120);
    ck_assert_uint_eq(s0.calls, 2);
    ck_assert_uint_eq(s0.max_run, QE_GGUF_FILL_CHUNK / 4096);
    ck_assert_uint_eq(s1.calls, 1);
    ck_assert_uint_eq(s2.calls, 1);

    uint64_t size = 0;
    ck_assert_int_eq(qe_gguf_writer_size(w2, &size), QE_OK);
    ck_assert_uint_eq(size, l2);
    ck_assert_int_eq(qe_gguf_writer_size(w1, &size), QE_OK);
    ck_assert_uint_eq(size, l1);

    /* The same bytes through write_file, which streams through one buffer. */
    char *dir = qe_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/s.gguf", dir);
    s0.next_row = s1.next_row = s2.next_row = 0;
    s0.calls = 0;
    ck_assert_int_eq(qe_gguf_writer_write_file(w2, path), QE_OK);
    ck_assert(!s0.bad && s0.calls == 2);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *back = malloc(l1 + 1);
    ck_assert_uint_eq(fread(back, 1, l1 + 1, f), l1);
    fclose(f);
    ck_assert(memcmp(back, m1, l1) == 0);
    /* And the reader accepts it, with the bytes where they belong. */
    qe_gguf *g = NULL;
    ck_assert_int_eq(qe_gguf_open(path, &g), QE_OK);
    const qe_gguf_tensor *t = qe_gguf_find_tensor(g, "q");
    ck_assert_ptr_nonnull(t);
    ck_assert(memcmp(t->data, b1, n1) == 0);
    qe_gguf_close(g);

    free(back);
    qe_test_rmtree(dir);
    free(dir);
    free(m1);
    free(m2);
    qe_gguf_writer_free(w1);
    qe_gguf_writer_free(w2);
    free(b0);
    free(b1);
    free(b2);
}
END_TEST

/* A row longer than the chunk still comes one row per call. */
START_TEST(test_fill_huge_rows)
{
    const int64_t ne[2] = {(int64_t)(QE_GGUF_FILL_CHUNK / 4 + 8), 2}; /* f32: rows of 16 MiB + 32 */
    uint64_t row = (uint64_t)ne[0] * 4;
    unsigned char *b = pattern((size_t)(row * 2), 9);
    struct src s = {b, row, 0, 0, 0, 0, 0};
    qe_gguf_writer *w = NULL;
    ck_assert_int_eq(qe_gguf_writer_new(3, &w), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w, "h", QE_DT_F32, 2, ne, src_fill, &s), QE_OK);
    void *m = NULL;
    size_t l = 0;
    ck_assert_int_eq(qe_gguf_writer_write_mem(w, &m, &l), QE_OK);
    ck_assert(!s.bad);
    ck_assert_uint_eq(s.calls, 2);
    ck_assert_uint_eq(s.max_run, 1);
    ck_assert(memcmp((char *)m + l - 2 * row, b, 2 * row) == 0); /* 32-aligned: no tail pad */
    free(m);
    qe_gguf_writer_free(w);
    free(b);
}
END_TEST

START_TEST(test_limits)
{
    qe_gguf_writer *w = NULL;
    const int64_t ne[2] = {64, 3000};
    unsigned char *b = pattern(64 * 3000 * 4, 4);
    struct src s = {b, 256, 0, 0, 0, 0, 1};
    ck_assert_int_eq(qe_gguf_writer_new(3, &w), QE_OK);
    /* No callback, a bad shape: refused like add_tensor refuses them. */
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w, "x", QE_DT_F32, 2, ne, NULL, NULL),
                     QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w, "x", QE_DT_Q8_0, 2,
                                                    (int64_t[2]){33, 2}, src_fill, &s),
                     QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w, "x", QE_DT_F32, 2, ne, src_fill, &s), QE_OK);
    ck_assert_int_eq(qe_gguf_writer_add_tensor_fill(w, "x", QE_DT_F32, 2, ne, src_fill, &s),
                     QE_EINVAL); /* duplicate */

    /* A failing source: the status comes back naming the tensor; no file,
     * no temporary file left beside it. */
    char *dir = qe_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/f.gguf", dir);
    ck_assert_int_eq(qe_gguf_writer_write_file(w, path), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "planted failure"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "'x'"));
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(rmdir(dir), 0); /* empty: the temporary file is gone */
    free(dir);
    void *m = (void *)1;
    size_t l = 0;
    s.calls = 0;
    ck_assert_int_eq(qe_gguf_writer_write_mem(w, &m, &l), QE_EIO);
    ck_assert_ptr_eq(m, (void *)1); /* untouched */
    /* Unwritable path: EIO naming it, the source never asked. */
    s.calls = 0;
    s.fail_at_call = 0;
    ck_assert_int_eq(qe_gguf_writer_write_file(w, "/nonexistent-dir/f.gguf"), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent-dir/f.gguf"));
    ck_assert_uint_eq(s.calls, 0);
    qe_gguf_writer_free(w);
    free(b);
}
END_TEST

Suite *gguf_write_suite(void)
{
    Suite *s = suite_create("gguf_write");
    TCase *tc = tcase_create("stream");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fill_equals_buffered);
    tcase_add_test(tc, test_fill_huge_rows);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
