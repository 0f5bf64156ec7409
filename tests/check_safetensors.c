/* check_safetensors.c - the .safetensors reader on a real checkpoint and on
 * hand-made files, one per validation rule. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "safetensors.h"
#include "testutil.h"

/* A file image: u64 LE header length, the header, then data_len bytes
 * (byte i = i & 0xff). */
static uint8_t *mk(const char *header, size_t data_len, size_t *size)
{
    size_t n = strlen(header);
    *size = 8 + n + data_len;
    uint8_t *b = malloc(*size);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + n + i] = (uint8_t)i;
    return b;
}

/* Open a made-up file; return its status and keep the message. */
static qe_status try_open(const char *header, size_t data_len)
{
    size_t size;
    uint8_t *b = mk(header, data_len, &size);
    qe_safetensors *st = NULL;
    qe_status s = qe_safetensors_open_mem(b, size, "t.safetensors", &st);
    if (s == QE_OK)
        ck_assert_ptr_nonnull(st);
    else
        ck_assert_ptr_null(st);
    qe_safetensors_close(st);
    free(b);
    return s;
}

START_TEST(test_tinystories)
{
    /* MANIFEST.md: 656K F32 parameters, hidden 128, 2 layers, vocab 2048;
     * the tied embedding is stored once. */
    qe_safetensors *st = NULL;
    const char *path = qe_test_data("models/TinyStories-656K/model.safetensors");
    ck_assert_msg(qe_safetensors_open(path, &st) == QE_OK, "%s", qe_errmsg());
    uint64_t elems = 0;
    for (uint64_t i = 0; i < qe_safetensors_n_tensors(st); i++) {
        const qe_safetensors_tensor *t = qe_safetensors_tensor_at(st, i);
        ck_assert_int_eq(t->dtype, QE_ST_F32);
        ck_assert_uint_eq(t->nbytes, t->n_elems * 4);
        if (i > 0) /* offset order, contiguous */
            ck_assert_uint_eq(t->begin, qe_safetensors_tensor_at(st, i - 1)->end);
        elems += t->n_elems;
    }
    ck_assert_uint_eq(elems, 656000);
    ck_assert_uint_eq(qe_safetensors_data_offset(st) + 656000 * 4, qe_safetensors_file_size(st));
    const qe_safetensors_tensor *t = qe_safetensors_find(st, "model.layers.1.mlp.down_proj.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->n_dims, 2);
    ck_assert_int_eq(t->shape[0], 128);
    ck_assert_int_eq(t->shape[1], 384);
    t = qe_safetensors_find(st, "model.norm.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->n_dims, 1);
    ck_assert_int_eq(t->shape[0], 128);
    ck_assert_ptr_null(qe_safetensors_find(st, "model.embed_tokens.weight"));
    ck_assert_str_eq(qe_safetensors_meta(st, "format"), "pt");
    ck_assert_ptr_null(qe_safetensors_meta(st, "nope"));
    qe_safetensors_close(st);
}
END_TEST

START_TEST(test_synthetic)
{
    /* Three tensors out of offset order, an empty one, metadata, padding. */
    const char *h = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[4,10]},"
                    "\"a\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[0,4]},"
                    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[10,10]},"
                    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[10,18]},"
                    "\"__metadata__\":{\"format\":\"pt\"}}    ";
    size_t size;
    uint8_t *b = mk(h, 18, &size);
    qe_safetensors *st = NULL;
    ck_assert_msg(qe_safetensors_open_mem(b, size, "syn", &st) == QE_OK, "%s", qe_errmsg());
    ck_assert_uint_eq(qe_safetensors_n_tensors(st), 4);
    const qe_safetensors_tensor *a = qe_safetensors_tensor_at(st, 0);
    ck_assert_str_eq(a->name, "a");
    ck_assert_int_eq(qe_safetensors_dtype_ggml(a->dtype), QE_DT_F16);
    ck_assert_uint_eq(a->n_elems, 2);
    ck_assert_uint_eq(((const uint8_t *)a->data)[0], 0);
    const qe_safetensors_tensor *bt = qe_safetensors_find(st, "b");
    ck_assert_uint_eq(((const uint8_t *)bt->data)[0], 4);
    ck_assert_uint_eq(qe_safetensors_find(st, "e")->n_elems, 0);
    const qe_safetensors_tensor *s = qe_safetensors_find(st, "s");
    ck_assert_uint_eq(s->n_dims, 0);
    ck_assert_uint_eq(s->n_elems, 1);
    ck_assert_str_eq(qe_safetensors_meta(st, "format"), "pt");
    ck_assert_str_eq(qe_safetensors_dtype_name(QE_ST_BF16), "BF16");
    ck_assert_int_eq(qe_safetensors_dtype_ggml(QE_ST_U8), -1);
    qe_safetensors_close(st);
    free(b);
    /* No tensors at all is a valid (empty) file. */
    ck_assert_int_eq(try_open("{}", 0), QE_OK);
}
END_TEST

/* One hand-made file per rule: the expected status and a phrase of the
 * message that names the rule. */
static const struct {
    const char *header;
    size_t data_len;
    qe_status want;
    const char *phrase;
} bad[] = {
    {"[1,2]", 0, QE_ECORRUPT, "JSON object starting with '{'"},
    {"{\"a\":", 0, QE_ECORRUPT, "invalid JSON header"},
    {"{} x", 0, QE_ECORRUPT, "invalid JSON header"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, QE_ECORRUPT, "duplicate"},
    {"{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT,
     "unknown dtype \"F17\""},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT, "\"dtype\" missing"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT,
     "shape[0] is not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT,
     "shape[0] is not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT, "\"shape\" missing"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT,
     "data_offsets span 4 bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
     QE_ECORRUPT, "element count overflows"},
    {"{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,4]}}", 4,
     QE_ECORRUPT, "byte size overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, QE_ECORRUPT,
     "past the data section"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, QE_ECORRUPT,
     "begin 4 > end 0"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, QE_ECORRUPT,
     "must be non-negative integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, QE_ECORRUPT,
     "must be an array [begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, QE_ECORRUPT, "overlaps"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, QE_ECORRUPT, "forbids holes"},
    /* an empty tensor inside another's bytes (found by fuzz_safetensors) */
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
     8, QE_ECORRUPT, "tensor 'e' (data_offsets [4, 4]) overlaps tensor 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, QE_ECORRUPT,
     "2 trailing bytes"},
    {"{\"__metadata__\":{\"k\":1}}", 0, QE_ECORRUPT, "value must be a string"},
    {"{\"__metadata__\":[]}", 0, QE_ECORRUPT, "\"__metadata__\" must be an object"},
    {"{\"a\":[]}", 0, QE_ECORRUPT, "tensor 'a': expected an object"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QE_ECORRUPT,
     "empty name"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     QE_EUNSUPPORTED, "9 dimensions"},
};

START_TEST(test_bad_header)
{
    qe_status s = try_open(bad[_i].header, bad[_i].data_len);
    ck_assert_msg(s == bad[_i].want, "case %d: got %s (%s)", _i, qe_status_str(s), qe_errmsg());
    ck_assert_msg(strstr(qe_errmsg(), bad[_i].phrase), "case %d: message '%s' lacks '%s'", _i,
                  qe_errmsg(), bad[_i].phrase);
    ck_assert_msg(strstr(qe_errmsg(), "t.safetensors"), "case %d: no file name in '%s'", _i,
                  qe_errmsg());
}
END_TEST

START_TEST(test_bad_length)
{
    qe_safetensors *st = NULL;
    uint8_t b[16] = {0};
    /* Shorter than the length field. */
    ck_assert_int_eq(qe_safetensors_open_mem(b, 7, "t.safetensors", &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "at least 8"));
    /* Length past the end of the file. */
    b[0] = 9;
    ck_assert_int_eq(qe_safetensors_open_mem(b, 16, "t.safetensors", &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "exceeds the 8 bytes after it"));
    /* Length over the reference implementation's 100 MB cap. */
    b[0] = 0;
    b[4] = 1; /* 2^32 */
    ck_assert_int_eq(qe_safetensors_open_mem(b, 16, "t.safetensors", &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "limit"));
    /* The maximal u64. */
    memset(b, 0xff, 8);
    ck_assert_int_eq(qe_safetensors_open_mem(b, 16, "t.safetensors", &st), QE_ECORRUPT);
    ck_assert_ptr_null(st);
    /* Missing and empty files. */
    ck_assert_int_eq(qe_safetensors_open("/nonexistent/x.safetensors", &st), QE_EIO);
    char *dir = qe_test_tmpdir();
    char *p = qe_test_write(dir, "empty.safetensors", "", 0);
    ck_assert_int_eq(qe_safetensors_open(p, &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "empty.safetensors"));
    ck_assert_int_eq(qe_safetensors_open(dir, &st), QE_EIO); /* a directory */
    free(p);
    qe_test_rmtree(dir);
    free(dir);
    qe_safetensors_close(NULL);
}
END_TEST

START_TEST(test_truncated_real)
{
    /* Every prefix shorter than the real file must be rejected, never crash:
     * cutting anywhere leaves either a broken header or missing data. */
    FILE *f = fopen(qe_test_data("models/TinyStories-656K/model.safetensors"), "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_eq(n, sizeof buf);
    for (size_t cut = 0; cut < n; cut += 7) {
        qe_safetensors *st = NULL;
        ck_assert_int_eq(qe_safetensors_open_mem(buf, cut, "cut", &st), QE_ECORRUPT);
    }
}
END_TEST

Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("read");
    tcase_add_test(tc, test_tinystories);
    tcase_add_test(tc, test_synthetic);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_loop_test(lim, test_bad_header, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(lim, test_bad_length);
    tcase_add_test(lim, test_truncated_real);
    suite_add_tcase(s, lim);
    return s;
}
