/* check_gguf.c - GGUF reader and writer.
 *
 * Expectations come from the GGUF spec worked by hand (field positions,
 * a byte-exact tiny file), from MANIFEST.md's facts about the real files, and
 * from what the tests themselves wrote; never from the reader's own output.
 * Corrupt files are valid writer output patched at one field, so each case
 * knows the exact offset its error message must name.
 */
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_write.h"
#include "log.h"
#include "testutil.h"

#define OK(expr) ck_assert_msg((expr) == QE_OK, "%s: %s", #expr, qe_errmsg())

/* ---- helpers ---- */

static void put_le(uint8_t *p, int width, uint64_t v)
{
    for (int k = 0; k < width; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

/* Position of the only occurrence of needle in b[0..n). */
static size_t find1(const uint8_t *b, size_t n, const char *needle)
{
    size_t m = strlen(needle), pos = SIZE_MAX;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(b + i, needle, m) == 0) {
            ck_assert_msg(pos == SIZE_MAX, "'%s' occurs twice", needle);
            pos = i;
        }
    ck_assert_msg(pos != SIZE_MAX, "'%s' not found", needle);
    return pos;
}

/* Tensor data of a recognisable pattern. */
static uint8_t data_a01[64], data_a02[68], data_a03[32];

/* The base file every corruption case patches. Field positions relative to
 * the names, from the layout in gguf.h: a key of length L at q has its length
 * at q-8, type at q+L, value at q+L+4; an array's element type at q+L+4,
 * count at q+L+8, elements from q+L+16. Tensor "tn.a0N" (6 bytes) at q:
 * n_dims q+6, ne[0] q+10, ne[1] q+18, then type and offset. */
static void *build_base(uint32_t version, size_t *n)
{
    qe_gguf_writer *w = NULL;
    void *buf = NULL;
    for (size_t i = 0; i < sizeof data_a01; i++)
        data_a01[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof data_a02; i++)
        data_a02[i] = (uint8_t)(i * 13 + 5);
    for (size_t i = 0; i < sizeof data_a03; i++)
        data_a03[i] = (uint8_t)(255 - i);
    static const int32_t ints[3] = {1, 2, 3};
    static const char *const strs[3] = {"s0x", "s1y", "s2z"};
    OK(qe_gguf_writer_new(version, &w));
    OK(qe_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(qe_gguf_writer_set_alignment(w, 32));
    OK(qe_gguf_writer_add_u32(w, "t.u32", 7));
    OK(qe_gguf_writer_add_bool(w, "t.bool", 1));
    OK(qe_gguf_writer_add_arr(w, "t.arr_i32", QE_GGUF_INT32, ints, 3));
    OK(qe_gguf_writer_add_arr_str(w, "t.arr_str", strs, 3));
    OK(qe_gguf_writer_add_u8(w, "t.key_a", 1));
    OK(qe_gguf_writer_add_u8(w, "t.key_b", 2));
    OK(qe_gguf_writer_add_tensor(w, "tn.a01", QE_DT_F32, 2, (int64_t[]){8, 2}, data_a01));
    OK(qe_gguf_writer_add_tensor(w, "tn.a02", QE_DT_Q8_0, 1, (int64_t[]){32}, data_a02));
    OK(qe_gguf_writer_add_tensor(w, "tn.a03", QE_DT_F16, 2, (int64_t[]){4, 4}, data_a03));
    OK(qe_gguf_writer_write_mem(w, &buf, n));
    qe_gguf_writer_free(w);
    return buf;
}

/* ---- the corruption table ---- */

struct patch {
    const char *anchor; /* NULL: from the start of the file */
    long at;            /* position relative to the anchor */
    int width;          /* bytes written little-endian: 1, 4 or 8 */
    uint64_t value;
};

struct bad_case {
    const char *name;
    struct patch p[2];  /* p[1] used when width != 0 */
    const char *err_anchor;
    long err_at;        /* the offset the message must name, relative to err_anchor */
    qe_status status;
    const char *rule;   /* substring of the message */
    long cut;           /* > 0: remove this many bytes from the end */
};

#define HUGE40 ((uint64_t)1 << 40)
#define P(a, d, w, v) {a, d, w, v}
#define NOP {NULL, 0, 0, 0}

static const struct bad_case bad_cases[] = {
    /* header */
    {"bad magic", {P(NULL, 0, 1, 'X'), NOP}, NULL, 0, QE_ECORRUPT, "bad magic", 0},
    {"version 0", {P(NULL, 4, 4, 0), NOP}, NULL, 4, QE_ECORRUPT, "version 0", 0},
    {"version 1", {P(NULL, 4, 4, 1), NOP}, NULL, 4, QE_EUNSUPPORTED, "version 1", 0},
    {"version 4", {P(NULL, 4, 4, 4), NOP}, NULL, 4, QE_EUNSUPPORTED, "unknown GGUF version 4", 0},
    {"version 0x7fffffff", {P(NULL, 4, 4, 0x7fffffff), NOP}, NULL, 4, QE_EUNSUPPORTED,
     "unknown GGUF version", 0},
    {"byte-swapped v3", {P(NULL, 4, 4, 0x03000000u), NOP}, NULL, 4, QE_EUNSUPPORTED,
     "byte-swapped (big-endian) file", 0},
    {"byte-swapped v2", {P(NULL, 4, 4, 0x02000000u), NOP}, NULL, 4, QE_EUNSUPPORTED,
     "byte-swapped (big-endian) file", 0},
    {"tensor count cannot fit", {P(NULL, 8, 8, HUGE40), NOP}, NULL, 8, QE_ECORRUPT,
     "tensor count 1099511627776 cannot fit", 0},
    {"kv count cannot fit", {P(NULL, 16, 8, UINT64_MAX), NOP}, NULL, 16, QE_ECORRUPT,
     "kv count 18446744073709551615 cannot fit", 0},
    /* strings and keys */
    {"key longer than the file", {P("t.u32", -8, 8, HUGE40), NOP}, "t.u32", -8, QE_ECORRUPT,
     "key length 1099511627776 exceeds", 0},
    {"string value longer than the file", {P("llama", -8, 8, UINT64_MAX), NOP}, "llama", -8,
     QE_ECORRUPT, "string value length 18446744073709551615 exceeds", 0},
    {"array string longer than the file", {P("s1y", -8, 8, HUGE40), NOP}, "s1y", -8,
     QE_ECORRUPT, "array string length", 0},
    {"empty key", {P("t.u32", -8, 8, 0), NOP}, "t.u32", -8, QE_ECORRUPT, "empty key", 0},
    {"NUL inside key", {P("t.u32", 1, 1, 0), NOP}, "t.u32", 1, QE_ECORRUPT,
     "NUL byte inside key", 0},
    {"duplicate key", {P("t.key_b", 6, 1, 'a'), NOP}, "t.key_b", -8, QE_ECORRUPT,
     "duplicate key 't.key_a'", 0},
    /* value types */
    {"invalid value type 13", {P("t.u32", 5, 4, 13), NOP}, "t.u32", 5, QE_ECORRUPT,
     "invalid value type 13 for key 't.u32'", 0},
    {"invalid value type 2^32-1", {P("t.u32", 5, 4, 0xffffffffu), NOP}, "t.u32", 5, QE_ECORRUPT,
     "invalid value type 4294967295", 0},
    {"invalid array element type", {P("t.arr_i32", 13, 4, 77), NOP}, "t.arr_i32", 13,
     QE_ECORRUPT, "invalid value type 77", 0},
    {"array of arrays", {P("t.arr_i32", 13, 4, QE_GGUF_ARRAY), NOP}, "t.arr_i32", 13,
     QE_ECORRUPT, "array of arrays", 0},
    {"numeric array longer than the file", {P("t.arr_i32", 17, 8, HUGE40), NOP}, "t.arr_i32", 17,
     QE_ECORRUPT, "1099511627776 values of type i32", 0},
    {"numeric array byte size overflows", {P("t.arr_i32", 17, 8, UINT64_MAX / 2), NOP},
     "t.arr_i32", 17, QE_ECORRUPT, "more than 2^64", 0},
    {"string array longer than the file", {P("t.arr_str", 17, 8, HUGE40), NOP}, "t.arr_str", 17,
     QE_ECORRUPT, "array of 1099511627776 strings", 0},
    {"bool not 0 or 1", {P("t.bool", 10, 1, 2), NOP}, "t.bool", 10, QE_ECORRUPT,
     "bool value 2", 0},
    /* alignment */
    {"alignment not a power of two", {P("general.alignment", 21, 4, 24), NOP},
     "general.alignment", 21, QE_ECORRUPT, "general.alignment 24 is not a power of two", 0},
    {"alignment zero", {P("general.alignment", 21, 4, 0), NOP}, "general.alignment", 21,
     QE_ECORRUPT, "general.alignment 0 is not a power of two", 0},
    {"alignment not u32", {P("general.alignment", 17, 4, QE_GGUF_INT32), NOP},
     "general.alignment", 17, QE_ECORRUPT, "general.alignment has type i32, expected u32", 0},
    /* tensor infos */
    {"tensor name too long", {P("tn.a02", -8, 8, 64), NOP}, "tn.a02", -8, QE_ECORRUPT,
     "is 64 bytes (the limit is 63)", 0},
    {"tensor name longer than the file", {P("tn.a02", -8, 8, HUGE40), NOP}, "tn.a02", -8,
     QE_ECORRUPT, "tensor name length 1099511627776 exceeds", 0},
    {"empty tensor name", {P("tn.a02", -8, 8, 0), NOP}, "tn.a02", -8, QE_ECORRUPT,
     "empty tensor name", 0},
    {"NUL inside tensor name", {P("tn.a02", 2, 1, 0), NOP}, "tn.a02", 2, QE_ECORRUPT,
     "NUL byte inside tensor name", 0},
    {"duplicate tensor name", {P("tn.a03", 5, 1, '1'), NOP}, "tn.a03", -8, QE_ECORRUPT,
     "duplicate tensor name 'tn.a01'", 0},
    {"n_dims 5", {P("tn.a01", 6, 4, 5), NOP}, "tn.a01", 6, QE_ECORRUPT,
     "has 5 dimensions (expected 1..4)", 0},
    {"n_dims 0", {P("tn.a01", 6, 4, 0), NOP}, "tn.a01", 6, QE_ECORRUPT,
     "has 0 dimensions (expected 1..4)", 0},
    {"negative dimension", {P("tn.a01", 18, 8, UINT64_MAX), NOP}, "tn.a01", 18, QE_ECORRUPT,
     "dimension 1 is negative (-1)", 0},
    {"element count overflows", {P("tn.a01", 10, 8, (uint64_t)1 << 62), NOP}, "tn.a01", 18,
     QE_ECORRUPT, "element count overflows at dimension 1", 0},
    {"byte size overflows", {P("tn.a01", 10, 8, (uint64_t)1 << 61), NOP}, "tn.a01", 10,
     QE_ECORRUPT, "byte size overflows", 0},
    {"unknown tensor type (removed Q4_2)", {P("tn.a01", 26, 4, 4), NOP}, "tn.a01", 26,
     QE_ECORRUPT, "unknown type 4", 0},
    {"unknown tensor type 999", {P("tn.a01", 26, 4, 999), NOP}, "tn.a01", 26, QE_ECORRUPT,
     "unknown type 999", 0},
    {"row not a multiple of the block", {P("tn.a02", 10, 8, 48), NOP}, "tn.a02", 10,
     QE_ECORRUPT, "row length 48 is not a multiple of q8_0's block size 32", 0},
    {"tensor offset not aligned", {P("tn.a02", 22, 8, 65), NOP}, "tn.a02", 22, QE_ECORRUPT,
     "data offset 65 is not a multiple of the alignment 32", 0},
    {"tensor offset + size overflows", {P("tn.a03", 30, 8, UINT64_MAX - 31), NOP}, "tn.a03", 30,
     QE_ECORRUPT, "overflows", 0},
    {"tensor data past the end", {P("tn.a03", 30, 8, 1u << 20), NOP}, "tn.a03", 30, QE_ECORRUPT,
     "runs past the end of the file", 0},
    {"truncated last tensor", {NOP, NOP}, "tn.a03", 30, QE_ECORRUPT,
     "runs past the end of the file", 1},
    {"tensors overlap", {P("tn.a02", 22, 8, 32), NOP}, "tn.a02", 22, QE_ECORRUPT,
     "tensor 'tn.a02' data [32, 66) overlaps tensor 'tn.a01' data [0, 64)", 0},
    {"tensors overlap at the same offset", {P("tn.a03", 30, 8, 0), NOP}, "tn.a03", 30,
     QE_ECORRUPT, "tensor 'tn.a03' data [0, 32) overlaps tensor 'tn.a01' data [0, 64)", 0},
    /* Data order differs from file order: the message still names the tensor
     * whose info comes later in the file. */
    {"overlap out of file order", {P("tn.a01", 30, 8, 32), P("tn.a02", 22, 8, 0)}, "tn.a02", 22,
     QE_ECORRUPT, "tensor 'tn.a02' data [0, 34) overlaps tensor 'tn.a01' data [32, 96)", 0},
};

/* Apply case c to a copy of the base file; returns the bytes and expected
 * offset. */
static uint8_t *make_bad(const struct bad_case *c, uint32_t version, size_t *n, uint64_t *off)
{
    uint8_t *b = build_base(version, n);
    /* Locate the expected offset before patches rename things. */
    *off = (uint64_t)((long)(c->err_anchor ? find1(b, *n, c->err_anchor) : 0) + c->err_at);
    for (int k = 0; k < 2; k++) {
        const struct patch *p = &c->p[k];
        if (!p->width)
            continue;
        size_t base = p->anchor ? find1(b, *n, p->anchor) : 0;
        ck_assert((long)base + p->at >= 0 && (size_t)((long)base + p->at) + (size_t)p->width <= *n);
        put_le(b + base + p->at, p->width, p->value);
    }
    *n -= (size_t)c->cut;
    return b;
}

static void expect_rejected(const char *what, qe_status got, qe_status want, const char *name,
                            uint64_t off, const char *rule)
{
    char needle[256];
    const char *msg = qe_errmsg();
    ck_assert_msg(got == want, "%s: status %s, expected %s (%s)", what, qe_status_str(got),
                  qe_status_str(want), msg);
    snprintf(needle, sizeof needle, "%s: offset %" PRIu64 ": ", name, off);
    ck_assert_msg(strncmp(msg, needle, strlen(needle)) == 0, "%s: message '%s' does not start"
                  " with '%s'", what, msg, needle);
    ck_assert_msg(strstr(msg, rule) != NULL, "%s: message '%s' lacks '%s'", what, msg, rule);
    ck_assert_msg(strchr(msg, '\n') == NULL, "%s: message has a newline", what);
}

START_TEST(test_bad_case)
{
    const struct bad_case *c = &bad_cases[_i];
    char *dir = qe_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    for (uint32_t version = 2; version <= 3; version++) {
        size_t n;
        uint64_t off;
        uint8_t *b = make_bad(c, version, &n, &off);
        char *path = qe_test_write(dir, "bad.gguf", b, n);
        ck_assert_ptr_nonnull(path);
        qe_gguf *g = (qe_gguf *)1;
        /* Version cases patch the version field, so the base version does
         * not matter there. */
        expect_rejected(c->name, qe_gguf_open(path, &g), c->status, path, off, c->rule);
        ck_assert_ptr_null(g);
        g = (qe_gguf *)1;
        expect_rejected(c->name, qe_gguf_open_mem(b, n, "mem.gguf", &g), c->status, "mem.gguf",
                        off, c->rule);
        ck_assert_ptr_null(g);
        free(path);
        free(b);
    }
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* The unpatched base opens, so every case above fails because of its patch. */
START_TEST(test_base_valid)
{
    for (uint32_t version = 2; version <= 3; version++) {
        size_t n;
        uint8_t *b = build_base(version, &n);
        qe_gguf *g = NULL;
        OK(qe_gguf_open_mem(b, n, "base", &g));
        ck_assert_uint_eq(qe_gguf_version(g), version);
        ck_assert_uint_eq(qe_gguf_n_tensors(g), 3);
        ck_assert_uint_eq(qe_gguf_n_kv(g), 8);
        const qe_gguf_tensor *t = qe_gguf_find_tensor(g, "tn.a02");
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->offset, 64); /* after tn.a01's 64 bytes */
        ck_assert_uint_eq(t->nbytes, 34);
        t = qe_gguf_find_tensor(g, "tn.a03");
        ck_assert_uint_eq(t->offset, 128); /* 64 + 34 rounded up to 32 */
        ck_assert_int_eq(memcmp(t->data, data_a03, 32), 0);
        /* The last tensor ends the file. */
        ck_assert_uint_eq(qe_gguf_data_offset(g) + 128 + 32, n);
        qe_gguf_close(g);
        free(b);
    }
}
END_TEST

/* ---- byte-exact writer output and reading hand-made bytes ---- */

/* A v3 file with kv "a" = u32 7 and tensor "t" f32 [2] = {1, 2}, assembled
 * by hand from the spec; tensor data padded to the alignment like llama.cpp's
 * gguf_write and gguf-py do. */
static const uint8_t tiny[128] = {
    'G', 'G', 'U', 'F', 3, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 0,          /* n_tensors */
    1, 0, 0, 0, 0, 0, 0, 0,          /* n_kv */
    1, 0, 0, 0, 0, 0, 0, 0, 'a',     /* key */
    4, 0, 0, 0, 7, 0, 0, 0,          /* u32 7 */
    1, 0, 0, 0, 0, 0, 0, 0, 't',     /* tensor name */
    1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, /* n_dims 1, ne[0] 2 */
    0, 0, 0, 0,                      /* f32 */
    0, 0, 0, 0, 0, 0, 0, 0,          /* offset 0 */
    [96] = 0x00, 0x00, 0x80, 0x3f,   /* 1.0f after padding to 96 */
    0x00, 0x00, 0x00, 0x40,          /* 2.0f, then zeros up to 128: data padded too */
};

START_TEST(test_writer_bytes)
{
    qe_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t n = 0;
    const float data[2] = {1.0f, 2.0f};
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_u32(w, "a", 7));
    OK(qe_gguf_writer_add_tensor(w, "t", QE_DT_F32, 1, (int64_t[]){2}, data));
    OK(qe_gguf_writer_write_mem(w, &buf, &n));
    ck_assert_uint_eq(n, sizeof tiny);
    ck_assert_int_eq(memcmp(buf, tiny, n), 0);

    /* The reader decodes the hand-made bytes. */
    qe_gguf *g = NULL;
    uint32_t v = 0;
    OK(qe_gguf_open_mem(tiny, sizeof tiny, "tiny", &g));
    OK(qe_gguf_get_u32(g, "a", &v));
    ck_assert_uint_eq(v, 7);
    ck_assert_uint_eq(qe_gguf_data_offset(g), 96);
    ck_assert_uint_eq(qe_gguf_alignment(g), 32);
    const qe_gguf_tensor *t = qe_gguf_tensor_at(g, 0);
    ck_assert_str_eq(t->name, "t");
    ck_assert_uint_eq(t->n_dims, 1);
    ck_assert_int_eq(t->ne[0], 2);
    ck_assert_int_eq(t->ne[1], 1);
    ck_assert_uint_eq(t->n_elems, 2);
    ck_assert_uint_eq(t->nbytes, 8);
    ck_assert_ptr_eq(t->data, (const uint8_t *)qe_gguf_base(g) + 96);
    ck_assert_int_eq(memcmp(t->data, data, 8), 0);
    qe_gguf_close(g);
    free(buf);
    qe_gguf_writer_free(w);
}
END_TEST

/* ---- round trip of every value type ---- */

static const uint8_t rt_u8[] = {0, 1, 255};
static const int8_t rt_i8[] = {-128, 0, 127};
static const uint16_t rt_u16[] = {0, 65535};
static const int16_t rt_i16[] = {-32768, 32767};
static const uint32_t rt_u32[] = {0, 4294967295u, 12345};
static const int32_t rt_i32[] = {INT32_MIN, -1, INT32_MAX};
static const uint64_t rt_u64[] = {UINT64_MAX, 0};
static const int64_t rt_i64[] = {INT64_MIN, INT64_MAX};
static const float rt_f32[] = {-0.5f, 3.25f, 1e30f};
static const double rt_f64[] = {-1e300, 0.1};
static const uint8_t rt_bool[] = {1, 0, 1};
static const char *const rt_strs[] = {"", "héllo", "tab\tnew\nline"};

static void *build_all_types(uint32_t version, size_t *n)
{
    qe_gguf_writer *w = NULL;
    void *buf = NULL;
    OK(qe_gguf_writer_new(version, &w));
    OK(qe_gguf_writer_add_u8(w, "v.u8", 200));
    OK(qe_gguf_writer_add_i8(w, "v.i8", -100));
    OK(qe_gguf_writer_add_u16(w, "v.u16", 60000));
    OK(qe_gguf_writer_add_i16(w, "v.i16", -30000));
    OK(qe_gguf_writer_add_u32(w, "v.u32", 4000000000u));
    OK(qe_gguf_writer_add_i32(w, "v.i32", -2000000000));
    OK(qe_gguf_writer_add_f32(w, "v.f32", 0.15625f));
    OK(qe_gguf_writer_add_bool(w, "v.bool", 1));
    OK(qe_gguf_writer_add_str(w, "v.str", "hello"));
    OK(qe_gguf_writer_add_strn(w, "v.strn", "a\0b", 3));
    OK(qe_gguf_writer_add_u64(w, "v.u64", UINT64_MAX));
    OK(qe_gguf_writer_add_i64(w, "v.i64", INT64_MIN));
    OK(qe_gguf_writer_add_f64(w, "v.f64", 2.5e-300));
    OK(qe_gguf_writer_add_arr(w, "a.u8", QE_GGUF_UINT8, rt_u8, 3));
    OK(qe_gguf_writer_add_arr(w, "a.i8", QE_GGUF_INT8, rt_i8, 3));
    OK(qe_gguf_writer_add_arr(w, "a.u16", QE_GGUF_UINT16, rt_u16, 2));
    OK(qe_gguf_writer_add_arr(w, "a.i16", QE_GGUF_INT16, rt_i16, 2));
    OK(qe_gguf_writer_add_arr(w, "a.u32", QE_GGUF_UINT32, rt_u32, 3));
    OK(qe_gguf_writer_add_arr(w, "a.i32", QE_GGUF_INT32, rt_i32, 3));
    OK(qe_gguf_writer_add_arr(w, "a.u64", QE_GGUF_UINT64, rt_u64, 2));
    OK(qe_gguf_writer_add_arr(w, "a.i64", QE_GGUF_INT64, rt_i64, 2));
    OK(qe_gguf_writer_add_arr(w, "a.f32", QE_GGUF_FLOAT32, rt_f32, 3));
    OK(qe_gguf_writer_add_arr(w, "a.f64", QE_GGUF_FLOAT64, rt_f64, 2));
    OK(qe_gguf_writer_add_arr(w, "a.bool", QE_GGUF_BOOL, rt_bool, 3));
    OK(qe_gguf_writer_add_arr_str(w, "a.str", rt_strs, 3));
    OK(qe_gguf_writer_add_arr(w, "a.empty", QE_GGUF_UINT32, NULL, 0));
    OK(qe_gguf_writer_write_mem(w, &buf, n));
    qe_gguf_writer_free(w);
    return buf;
}

START_TEST(test_roundtrip_values)
{
    for (uint32_t version = 2; version <= 3; version++) {
        size_t n;
        void *b = build_all_types(version, &n);
        qe_gguf *g = NULL;
        OK(qe_gguf_open_mem(b, n, "rt", &g));
        ck_assert_uint_eq(qe_gguf_version(g), version);
        ck_assert_uint_eq(qe_gguf_n_kv(g), 26);
        ck_assert_uint_eq(qe_gguf_n_tensors(g), 0);
        /* File order is kept. */
        ck_assert_str_eq(qe_gguf_kv_key(g, 0), "v.u8");
        ck_assert_str_eq(qe_gguf_kv_key(g, 25), "a.empty");
        static const qe_gguf_type scalar_types[13] = {
            QE_GGUF_UINT8, QE_GGUF_INT8, QE_GGUF_UINT16, QE_GGUF_INT16, QE_GGUF_UINT32,
            QE_GGUF_INT32, QE_GGUF_FLOAT32, QE_GGUF_BOOL, QE_GGUF_STRING, QE_GGUF_STRING,
            QE_GGUF_UINT64, QE_GGUF_INT64, QE_GGUF_FLOAT64};
        for (int i = 0; i < 13; i++) {
            ck_assert_int_eq(qe_gguf_kv_type(g, (uint64_t)i), scalar_types[i]);
            ck_assert_int_eq(qe_gguf_kv_arr_type(g, (uint64_t)i), QE_GGUF_TYPE_COUNT);
            ck_assert_uint_eq(qe_gguf_kv_arr_len(g, (uint64_t)i), 0);
        }
        qe_gguf_value v;
        OK(qe_gguf_kv_value(g, 0, 0, &v));
        ck_assert_uint_eq(v.u, 200);
        OK(qe_gguf_kv_value(g, 1, 0, &v));
        ck_assert_int_eq(v.i, -100);
        OK(qe_gguf_kv_value(g, 2, 0, &v));
        ck_assert_uint_eq(v.u, 60000);
        OK(qe_gguf_kv_value(g, 3, 0, &v));
        ck_assert_int_eq(v.i, -30000);
        OK(qe_gguf_kv_value(g, 4, 0, &v));
        ck_assert_uint_eq(v.u, 4000000000u);
        OK(qe_gguf_kv_value(g, 5, 0, &v));
        ck_assert_int_eq(v.i, -2000000000);
        OK(qe_gguf_kv_value(g, 6, 0, &v));
        ck_assert(v.f == 0.15625);
        OK(qe_gguf_kv_value(g, 11, 0, &v));
        ck_assert(v.i == INT64_MIN);
        OK(qe_gguf_kv_value(g, 12, 0, &v));
        ck_assert(v.f == 2.5e-300);

        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f;
        int bo;
        const char *s;
        size_t len;
        OK(qe_gguf_get_u32(g, "v.u32", &u32));
        ck_assert_uint_eq(u32, 4000000000u);
        OK(qe_gguf_get_u32(g, "v.u8", &u32));
        ck_assert_uint_eq(u32, 200);
        OK(qe_gguf_get_u32(g, "v.u16", &u32));
        ck_assert_uint_eq(u32, 60000);
        OK(qe_gguf_get_i32(g, "v.i32", &i32));
        ck_assert_int_eq(i32, -2000000000);
        OK(qe_gguf_get_i32(g, "v.i8", &i32));
        ck_assert_int_eq(i32, -100);
        OK(qe_gguf_get_i32(g, "v.i16", &i32));
        ck_assert_int_eq(i32, -30000);
        OK(qe_gguf_get_u64(g, "v.u64", &u64));
        ck_assert(u64 == UINT64_MAX);
        OK(qe_gguf_get_f32(g, "v.f32", &f));
        ck_assert(f == 0.15625f);
        OK(qe_gguf_get_bool(g, "v.bool", &bo));
        ck_assert_int_eq(bo, 1);
        OK(qe_gguf_get_str(g, "v.str", &s, &len));
        ck_assert_str_eq(s, "hello");
        ck_assert_uint_eq(len, 5);
        OK(qe_gguf_get_str(g, "v.strn", &s, &len));
        ck_assert_uint_eq(len, 3);
        ck_assert_int_eq(memcmp(s, "a\0b", 4), 0); /* NUL-terminated too */

        /* Arrays: every element of every type. */
        struct {
            const char *key;
            qe_gguf_type t;
            uint64_t n;
        } arrs[] = {{"a.u8", QE_GGUF_UINT8, 3},    {"a.i8", QE_GGUF_INT8, 3},
                    {"a.u16", QE_GGUF_UINT16, 2},  {"a.i16", QE_GGUF_INT16, 2},
                    {"a.u32", QE_GGUF_UINT32, 3},  {"a.i32", QE_GGUF_INT32, 3},
                    {"a.u64", QE_GGUF_UINT64, 2},  {"a.i64", QE_GGUF_INT64, 2},
                    {"a.f32", QE_GGUF_FLOAT32, 3}, {"a.f64", QE_GGUF_FLOAT64, 2},
                    {"a.bool", QE_GGUF_BOOL, 3},   {"a.str", QE_GGUF_STRING, 3},
                    {"a.empty", QE_GGUF_UINT32, 0}};
        for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
            qe_gguf_type et;
            uint64_t an;
            OK(qe_gguf_get_arr(g, arrs[k].key, &et, &an));
            ck_assert_int_eq(et, arrs[k].t);
            ck_assert_uint_eq(an, arrs[k].n);
            int64_t i = qe_gguf_find_key(g, arrs[k].key);
            ck_assert_int_ge(i, 0);
            ck_assert_int_eq(qe_gguf_kv_type(g, (uint64_t)i), QE_GGUF_ARRAY);
            ck_assert_int_eq(qe_gguf_kv_arr_type(g, (uint64_t)i), arrs[k].t);
            ck_assert_uint_eq(qe_gguf_kv_arr_len(g, (uint64_t)i), arrs[k].n);
            for (uint64_t j = 0; j < an; j++) {
                OK(qe_gguf_kv_value(g, (uint64_t)i, j, &v));
                ck_assert_int_eq(v.type, arrs[k].t);
                switch (arrs[k].t) {
                case QE_GGUF_UINT8: ck_assert_uint_eq(v.u, rt_u8[j]); break;
                case QE_GGUF_INT8: ck_assert_int_eq(v.i, rt_i8[j]); break;
                case QE_GGUF_UINT16: ck_assert_uint_eq(v.u, rt_u16[j]); break;
                case QE_GGUF_INT16: ck_assert_int_eq(v.i, rt_i16[j]); break;
                case QE_GGUF_UINT32: ck_assert_uint_eq(v.u, rt_u32[j]); break;
                case QE_GGUF_INT32: ck_assert_int_eq(v.i, rt_i32[j]); break;
                case QE_GGUF_UINT64: ck_assert(v.u == rt_u64[j]); break;
                case QE_GGUF_INT64: ck_assert(v.i == rt_i64[j]); break;
                case QE_GGUF_FLOAT32: ck_assert(v.f == rt_f32[j]); break;
                case QE_GGUF_FLOAT64: ck_assert(v.f == rt_f64[j]); break;
                case QE_GGUF_BOOL: ck_assert_uint_eq(v.u, rt_bool[j]); break;
                case QE_GGUF_STRING:
                    ck_assert_str_eq(v.s, rt_strs[j]);
                    ck_assert_uint_eq(v.len, strlen(rt_strs[j]));
                    OK(qe_gguf_get_arr_str(g, "a.str", j, &s, &len));
                    ck_assert_str_eq(s, rt_strs[j]);
                    break;
                default: ck_abort();
                }
            }
        }
        float fa[3];
        OK(qe_gguf_get_arr_f32(g, "a.f32", fa, 3));
        ck_assert(fa[0] == -0.5f && fa[1] == 3.25f && fa[2] == 1e30f);
        float fd[2];
        OK(qe_gguf_get_arr_f32(g, "a.f64", fd, 2));
        ck_assert(fd[0] == (float)-1e300 && fd[1] == 0.1f);
        int32_t ia[3];
        OK(qe_gguf_get_arr_i32(g, "a.i32", ia, 3));
        ck_assert(ia[0] == INT32_MIN && ia[1] == -1 && ia[2] == INT32_MAX);
        OK(qe_gguf_get_arr_i32(g, "a.i8", ia, 3));
        ck_assert(ia[0] == -128 && ia[1] == 0 && ia[2] == 127);
        OK(qe_gguf_get_arr_i32(g, "a.empty", ia, 0));
        qe_gguf_close(g);
        free(b);
    }
}
END_TEST

/* Tensors of several types at a custom alignment, through a real file (the
 * atomic write path) and memory; both must be the same bytes. */
START_TEST(test_roundtrip_tensors)
{
    enum { NT = 5 };
    static const uint32_t types[NT] = {QE_DT_F32, QE_DT_F16, QE_DT_Q8_0, QE_DT_Q4_K, QE_DT_I8};
    static const int64_t dims[NT][4] = {{3, 5, 1, 1}, {7, 1, 1, 1}, {64, 2, 3, 1},
                                        {256, 1, 1, 2}, {0, 4, 1, 1}};
    static const uint32_t nd[NT] = {2, 1, 3, 4, 2};
    static const uint64_t bytes[NT] = {3 * 5 * 4, 7 * 2, 2 * 34 * 6, 144 * 2, 0};
    char names[NT][16];
    uint8_t *data[NT];
    qe_gguf_writer *w = NULL;
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "general.architecture", "test"));
    OK(qe_gguf_writer_set_alignment(w, 64));
    srand(7);
    for (int k = 0; k < NT; k++) {
        snprintf(names[k], sizeof names[k], "w.%d", k);
        data[k] = malloc(bytes[k] + 1);
        for (uint64_t i = 0; i < bytes[k]; i++)
            data[k][i] = (uint8_t)rand();
        OK(qe_gguf_writer_add_tensor(w, names[k], types[k], nd[k], dims[k], data[k]));
    }
    /* Alignment can change after tensors were added. */
    OK(qe_gguf_writer_set_alignment(w, 128));
    char *dir = qe_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    OK(qe_gguf_writer_write_file(w, path));
    void *mem = NULL;
    size_t n = 0;
    OK(qe_gguf_writer_write_mem(w, &mem, &n));
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, n);
    FILE *f = fopen(path, "rb");
    uint8_t *disk = malloc(n);
    ck_assert_uint_eq(fread(disk, 1, n, f), n);
    fclose(f);
    ck_assert_int_eq(memcmp(disk, mem, n), 0);
    free(disk);
    /* Only m.gguf in the directory: no temporary file left behind. */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        entries += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(entries, 1);

    qe_gguf *g = NULL;
    OK(qe_gguf_open(path, &g));
    ck_assert_uint_eq(qe_gguf_alignment(g), 128);
    ck_assert_uint_eq(qe_gguf_data_offset(g) % 128, 0);
    ck_assert_uint_eq(qe_gguf_n_tensors(g), NT);
    ck_assert_str_eq(qe_gguf_path(g), path);
    ck_assert_uint_eq(qe_gguf_file_size(g), n);
    uint32_t a;
    OK(qe_gguf_get_u32(g, "general.alignment", &a));
    ck_assert_uint_eq(a, 128);
    for (int k = 0; k < NT; k++) {
        const qe_gguf_tensor *t = qe_gguf_find_tensor(g, names[k]);
        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_eq(t, qe_gguf_tensor_at(g, (uint64_t)k));
        ck_assert_str_eq(t->name, names[k]);
        ck_assert_uint_eq(t->type, types[k]);
        ck_assert_uint_eq(t->n_dims, nd[k]);
        for (int j = 0; j < 4; j++)
            ck_assert_int_eq(t->ne[j], dims[k][j]);
        ck_assert_uint_eq(t->nbytes, bytes[k]);
        ck_assert_uint_eq(t->offset % 128, 0);
        ck_assert_ptr_eq(t->data, (const uint8_t *)qe_gguf_base(g) + qe_gguf_data_offset(g) +
                                      t->offset);
        ck_assert_int_eq(memcmp(t->data, data[k], bytes[k]), 0);
    }
    ck_assert_ptr_null(qe_gguf_find_tensor(g, "w.9"));
    ck_assert_ptr_null(qe_gguf_tensor_at(g, NT));
    qe_gguf_close(g);

    /* Rewriting the same path replaces it (rename over an existing file).
     * The writer still references data[], freed only after this. */
    OK(qe_gguf_writer_write_file(w, path));
    OK(qe_gguf_open(path, &g));
    qe_gguf_close(g);
    for (int k = 0; k < NT; k++)
        free(data[k]);
    free(mem);
    qe_gguf_writer_free(w);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_format)
{
    size_t n;
    void *b = build_all_types(3, &n);
    qe_gguf *g = NULL;
    char buf[256];
    OK(qe_gguf_open_mem(b, n, "fmt", &g));
    struct {
        const char *key, *want;
    } cases[] = {
        {"v.u8", "200"},
        {"v.i8", "-100"},
        {"v.f32", "0.15625"},
        {"v.bool", "true"},
        {"v.str", "\"hello\""},
        {"v.strn", "\"a\\x00b\""},
        {"v.u64", "18446744073709551615"},
        {"v.i64", "-9223372036854775808"},
        {"a.i8", "[i8 x 3] -128, 0, 127"},
        {"a.bool", "[bool x 3] true, false, true"},
        {"a.str", "[string x 3] \"\", \"h\xc3\xa9llo\", \"tab\\tnew\\nline\""},
        {"a.empty", "[u32 x 0]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        qe_gguf_kv_format(g, (uint64_t)qe_gguf_find_key(g, cases[k].key), buf, sizeof buf);
        ck_assert_str_eq(buf, cases[k].want);
    }
    /* A small buffer is cut and marked. */
    qe_gguf_kv_format(g, (uint64_t)qe_gguf_find_key(g, "v.u64"), buf, 8);
    ck_assert_str_eq(buf, "1844...");
    /* Out-of-range index: empty text. */
    qe_gguf_kv_format(g, 1000, buf, sizeof buf);
    ck_assert_str_eq(buf, "");
    qe_gguf_close(g);
    free(b);

    /* A long array is summarized. */
    uint16_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (uint16_t)(i * 3);
    qe_gguf_writer *w = NULL;
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_arr(w, "many", QE_GGUF_UINT16, many, 100));
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    OK(qe_gguf_open_mem(b, n, "fmt", &g));
    qe_gguf_kv_format(g, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "[u16 x 100] 0, 3, 6, 9, 12, 15, ... (94 more)");
    qe_gguf_close(g);
    qe_gguf_writer_free(w);
    free(b);
}
END_TEST

/* ---- typed accessor mismatches ---- */

START_TEST(test_accessor_mismatch)
{
    qe_gguf_writer *w = NULL;
    void *b = NULL;
    size_t n;
    static const uint32_t big_u32[2] = {5, 0xffffffffu};
    static const float fl[2] = {1, 2};
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "s", "text"));
    OK(qe_gguf_writer_add_i32(w, "neg", -1));
    OK(qe_gguf_writer_add_u64(w, "big", (uint64_t)1 << 32));
    OK(qe_gguf_writer_add_u32(w, "u32max", 0x80000000u));
    OK(qe_gguf_writer_add_i64(w, "i32min", INT32_MIN));
    OK(qe_gguf_writer_add_i64(w, "below_i32", (int64_t)INT32_MIN - 1));
    OK(qe_gguf_writer_add_u8(w, "u8", 1));
    OK(qe_gguf_writer_add_f64(w, "f64", 0.25));
    OK(qe_gguf_writer_add_bool(w, "flag", 0));
    OK(qe_gguf_writer_add_arr(w, "arr_u32", QE_GGUF_UINT32, big_u32, 2));
    OK(qe_gguf_writer_add_arr(w, "arr_f32", QE_GGUF_FLOAT32, fl, 2));
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    qe_gguf_writer_free(w);
    qe_gguf *g = NULL;
    OK(qe_gguf_open_mem(b, n, "acc.gguf", &g));
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    int bo;
    const char *s;
    qe_gguf_type et;
    float fa[3];
    int32_t ia[3];

    ck_assert_int_eq(qe_gguf_get_u32(g, "s", &u32), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "key 's' has type string, expected u32"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "acc.gguf: offset "));
    ck_assert_int_eq(qe_gguf_get_u32(g, "neg", &u32), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "value -1 does not fit u32"));
    ck_assert_int_eq(qe_gguf_get_u32(g, "big", &u32), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "value 4294967296 does not fit u32"));
    ck_assert_int_eq(qe_gguf_get_i32(g, "u32max", &i32), QE_ECORRUPT);
    OK(qe_gguf_get_i32(g, "i32min", &i32));
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_int_eq(qe_gguf_get_i32(g, "below_i32", &i32), QE_ECORRUPT);
    OK(qe_gguf_get_i32(g, "neg", &i32));
    ck_assert_int_eq(i32, -1);
    ck_assert_int_eq(qe_gguf_get_u64(g, "neg", &u64), QE_ECORRUPT);
    OK(qe_gguf_get_u64(g, "u8", &u64));
    ck_assert_uint_eq(u64, 1);
    ck_assert_int_eq(qe_gguf_get_u64(g, "f64", &u64), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_get_u32(g, "flag", &u32), QE_ECORRUPT); /* bool is not an integer */
    OK(qe_gguf_get_f32(g, "f64", &f));
    ck_assert(f == 0.25f);
    ck_assert_int_eq(qe_gguf_get_f32(g, "u8", &f), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "expected f32 or f64"));
    ck_assert_int_eq(qe_gguf_get_bool(g, "u8", &bo), QE_ECORRUPT);
    OK(qe_gguf_get_bool(g, "flag", &bo));
    ck_assert_int_eq(bo, 0);
    ck_assert_int_eq(qe_gguf_get_str(g, "arr_u32", &s, NULL), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "has type array of u32, expected string"));
    ck_assert_int_eq(qe_gguf_get_arr(g, "u8", &et, &u64), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_get_arr_str(g, "arr_u32", 0, &s, NULL), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_get_arr_f32(g, "arr_u32", fa, 2), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_get_arr_f32(g, "arr_f32", fa, 3), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "has 2 elements, expected 3"));
    ck_assert_int_eq(qe_gguf_get_arr_i32(g, "arr_f32", ia, 2), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_get_arr_i32(g, "arr_u32", ia, 2), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "value 4294967295 does not fit i32"));
    ck_assert_int_eq(qe_gguf_get_arr_i32(g, "u8", ia, 1), QE_ECORRUPT);

    /* Absent keys. */
    ck_assert_int_eq(qe_gguf_get_u32(g, "nope", &u32), QE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "key 'nope' not found"));
    ck_assert_int_eq(qe_gguf_get_i32(g, "nope", &i32), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_u64(g, "nope", &u64), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_f32(g, "nope", &f), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_bool(g, "nope", &bo), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_str(g, "nope", &s, NULL), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_arr(g, "nope", &et, &u64), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_arr_str(g, "nope", 0, &s, NULL), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_arr_f32(g, "nope", fa, 1), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_get_arr_i32(g, "nope", ia, 1), QE_ENOTFOUND);
    ck_assert_int_eq(qe_gguf_find_key(g, "nope"), -1);
    ck_assert_int_eq(qe_gguf_find_key(g, ""), -1);
    ck_assert_int_eq(qe_gguf_find_key(g, NULL), -1);

    /* Index accessors out of range. */
    qe_gguf_value v;
    uint64_t nkv = qe_gguf_n_kv(g);
    ck_assert_ptr_null(qe_gguf_kv_key(g, nkv));
    ck_assert_int_eq(qe_gguf_kv_type(g, nkv), QE_GGUF_TYPE_COUNT);
    ck_assert_int_eq(qe_gguf_kv_value(g, nkv, 0, &v), QE_ERANGE);
    ck_assert_int_eq(qe_gguf_kv_value(g, 0, 1, &v), QE_ERANGE); /* scalar has only element 0 */
    ck_assert_int_eq(qe_gguf_kv_value(g, (uint64_t)qe_gguf_find_key(g, "arr_u32"), 2, &v),
                     QE_ERANGE);
    ck_assert_ptr_null(qe_gguf_tensor_at(g, 0));
    ck_assert_ptr_null(qe_gguf_find_tensor(g, "x"));
    ck_assert_str_eq(qe_gguf_type_name(QE_GGUF_FLOAT64), "f64");
    ck_assert_str_eq(qe_gguf_type_name((qe_gguf_type)99), "?");
    qe_gguf_close(g);
    free(b);

    /* String arrays: index past the end. */
    static const char *const two[2] = {"x", "y"};
    OK(qe_gguf_writer_new(2, &w));
    OK(qe_gguf_writer_add_arr_str(w, "toks", two, 2));
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    qe_gguf_writer_free(w);
    OK(qe_gguf_open_mem(b, n, "acc2", &g));
    size_t len;
    OK(qe_gguf_get_arr_str(g, "toks", 1, &s, &len));
    ck_assert_str_eq(s, "y");
    ck_assert_int_eq(qe_gguf_get_arr_str(g, "toks", 2, &s, &len), QE_ERANGE);
    ck_assert_int_eq(qe_gguf_get_arr_str(g, "toks", UINT64_MAX, &s, &len), QE_ERANGE);
    qe_gguf_close(g);
    free(b);
}
END_TEST

/* ---- real files (facts from MANIFEST.md) ---- */

START_TEST(test_stories260k)
{
    qe_gguf *g = NULL;
    OK(qe_gguf_open(qe_test_data("models/stories260K.gguf"), &g));
    const char *s;
    uint32_t u;
    float eps;
    OK(qe_gguf_get_str(g, "general.architecture", &s, NULL));
    ck_assert_str_eq(s, "llama");
    OK(qe_gguf_get_u32(g, "llama.block_count", &u));
    ck_assert_uint_eq(u, 5);
    OK(qe_gguf_get_u32(g, "llama.embedding_length", &u));
    ck_assert_uint_eq(u, 64);
    OK(qe_gguf_get_u32(g, "llama.feed_forward_length", &u));
    ck_assert_uint_eq(u, 172);
    OK(qe_gguf_get_u32(g, "llama.attention.head_count", &u));
    ck_assert_uint_eq(u, 8);
    OK(qe_gguf_get_u32(g, "llama.attention.head_count_kv", &u));
    ck_assert_uint_eq(u, 4);
    OK(qe_gguf_get_u32(g, "llama.context_length", &u));
    ck_assert_uint_eq(u, 2048);
    OK(qe_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u));
    ck_assert_uint_eq(u, 1);
    OK(qe_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u));
    ck_assert_uint_eq(u, 2);
    /* llama2.c models use RMSNorm epsilon 1e-5. */
    OK(qe_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    ck_assert_float_eq_tol(eps, 1e-5f, 1e-9f);
    qe_gguf_type et;
    uint64_t n;
    OK(qe_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n));
    ck_assert_int_eq(et, QE_GGUF_STRING);
    ck_assert_uint_eq(n, 512);
    /* SentencePiece with byte fallback: <unk> <s> </s>, then <0x00>..<0xFF>. */
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, NULL));
    ck_assert_str_eq(s, "<unk>");
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1, &s, NULL));
    ck_assert_str_eq(s, "<s>");
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 2, &s, NULL));
    ck_assert_str_eq(s, "</s>");
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3 + 0x41, &s, NULL));
    ck_assert_str_eq(s, "<0x41>");
    float *scores = malloc(512 * sizeof *scores);
    OK(qe_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, 512));
    free(scores);

    /* 48 F32 tensors: token_embd, output_norm, output + 9 per layer x 5. */
    ck_assert_uint_eq(qe_gguf_n_tensors(g), 48);
    uint64_t total = 0, end = 0;
    for (uint64_t i = 0; i < 48; i++) {
        const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
        ck_assert_uint_eq(t->type, QE_DT_F32);
        ck_assert_uint_eq(t->nbytes, t->n_elems * 4);
        ck_assert_ptr_eq(qe_gguf_find_tensor(g, t->name), t);
        total += t->n_elems;
        if (t->offset + t->nbytes > end)
            end = t->offset + t->nbytes;
    }
    /* Parameter count from the shapes: embeddings and output 2*512*64,
     * output_norm 64; per layer q,o 64*64, k,v 64*32 (4 KV heads of 8),
     * gate,up,down 64*172, two norms 64. */
    uint64_t per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172 + 2 * 64;
    ck_assert_uint_eq(total, 2 * 512 * 64 + 64 + 5 * per_layer);
    ck_assert_uint_le(qe_gguf_data_offset(g) + end, qe_gguf_file_size(g));
    const qe_gguf_tensor *emb = qe_gguf_find_tensor(g, "token_embd.weight");
    const qe_gguf_tensor *out = qe_gguf_find_tensor(g, "output.weight");
    ck_assert_ptr_nonnull(emb);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(emb->n_dims, 2);
    ck_assert_int_eq(emb->ne[0], 64);
    ck_assert_int_eq(emb->ne[1], 512);
    /* MANIFEST: output.weight equals the token embedding. */
    ck_assert_uint_eq(out->nbytes, emb->nbytes);
    ck_assert_int_eq(memcmp(out->data, emb->data, emb->nbytes), 0);
    const qe_gguf_tensor *k = qe_gguf_find_tensor(g, "blk.4.attn_k.weight");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->ne[0], 64);
    ck_assert_int_eq(k->ne[1], 32);
    const qe_gguf_tensor *down = qe_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    ck_assert_int_eq(down->ne[0], 172);
    ck_assert_int_eq(down->ne[1], 64);
    ck_assert_ptr_null(qe_gguf_find_tensor(g, "blk.5.attn_k.weight"));
    /* Trained weights are finite and not all zero. */
    const float *w = emb->data;
    double sum = 0;
    for (uint64_t i = 0; i < emb->n_elems; i++) {
        ck_assert(isfinite(w[i]));
        sum += fabs(w[i]);
    }
    ck_assert(sum > 0);
    qe_gguf_close(g);
}
END_TEST

START_TEST(test_phi3_vocab)
{
    const char *path = qe_test_data("vocab/ggml-vocab-phi-3.gguf");
    qe_gguf *g = NULL;
    double t0 = qe_now();
    OK(qe_gguf_open(path, &g));
    double dt = qe_now() - t0;
    /* 32K strings must not take long (generous bound: sanitizers, 2 shared cores). */
    ck_assert_msg(dt < 1.0, "opening the phi-3 vocab took %.3f s", dt);
    ck_assert_uint_eq(qe_gguf_n_tensors(g), 0);
    ck_assert_uint_le(qe_gguf_data_offset(g), qe_gguf_file_size(g));
    qe_gguf_type et;
    uint64_t n;
    OK(qe_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n));
    ck_assert_int_eq(et, QE_GGUF_STRING);
    ck_assert_uint_eq(n, 32064);
    const char *s;
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1, &s, NULL));
    ck_assert_str_eq(s, "<s>");
    /* Phi-3 adds its special tokens after Llama's 32000. */
    OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 32000, &s, NULL));
    ck_assert_str_eq(s, "<|endoftext|>");
    ck_assert_int_eq(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 32064, &s, NULL), QE_ERANGE);
    OK(qe_gguf_get_str(g, "general.architecture", &s, NULL));
    ck_assert_str_eq(s, "phi3");
    float *scores = malloc(32064 * sizeof *scores);
    OK(qe_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, 32064));
    free(scores);
    /* Random access over the whole array is O(1) per element. */
    size_t total = 0, len;
    t0 = qe_now();
    for (uint64_t i = 0; i < n; i++) {
        OK(qe_gguf_get_arr_str(g, "tokenizer.ggml.tokens", (i * 7919) % n, &s, &len));
        total += len;
    }
    ck_assert_msg(qe_now() - t0 < 1.0, "32K lookups took %.3f s", qe_now() - t0);
    ck_assert_uint_gt(total, n);
    qe_gguf_close(g);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_open_errors)
{
    qe_gguf *g = (qe_gguf *)1;
    ck_assert_int_eq(qe_gguf_open("/nonexistent/x.gguf", &g), QE_EIO);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent/x.gguf"));
    char *dir = qe_test_tmpdir();
    ck_assert_int_eq(qe_gguf_open(dir, &g), QE_EIO); /* a directory */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "not a regular file"));
    char *empty = qe_test_write(dir, "empty.gguf", "", 0);
    ck_assert_int_eq(qe_gguf_open(empty, &g), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "offset 0: bad magic"));
    ck_assert_int_eq(qe_gguf_open_mem("", 0, "e", &g), QE_ECORRUPT);
    ck_assert_int_eq(qe_gguf_open_mem("GGUF", 4, "e", &g), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "e: offset 4: version needs 4 bytes"));
    /* A control byte in a key is escaped: messages stay on one line. */
    qe_gguf_close(NULL);
    free(empty);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* Hostile bytes in names are escaped so messages stay one line. */
START_TEST(test_message_escaping)
{
    qe_gguf_writer *w = NULL;
    void *b = NULL;
    size_t n;
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_u8(w, "k\nA", 1));
    OK(qe_gguf_writer_add_u8(w, "k\nB", 2));
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    qe_gguf_writer_free(w);
    uint8_t *p = b;
    p[find1(p, n, "k\nB") + 2] = 'A';
    qe_gguf *g = NULL;
    ck_assert_int_eq(qe_gguf_open_mem(b, n, "esc", &g), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "duplicate key 'k\\x0aA'"));
    ck_assert_ptr_null(strchr(qe_errmsg(), '\n'));
    free(b);
}
END_TEST

/* Every prefix of a valid file is rejected cleanly, naming an offset. */
START_TEST(test_truncations)
{
    size_t n;
    uint8_t *b = build_base(3, &n);
    for (size_t len = 0; len < n; len++) {
        qe_gguf *g = NULL;
        qe_status s = qe_gguf_open_mem(b, len, "cut", &g);
        ck_assert_msg(s == QE_ECORRUPT, "prefix of %zu bytes: %s", len, qe_status_str(s));
        ck_assert_msg(strncmp(qe_errmsg(), "cut: offset ", 12) == 0, "%zu: %s", len, qe_errmsg());
        ck_assert_ptr_null(g);
    }
    free(b);
}
END_TEST

/* Walk everything an opened handle offers (what the fuzzer does). */
static void walk(const qe_gguf *g)
{
    char buf[128];
    qe_gguf_value v;
    for (uint64_t i = 0; i < qe_gguf_n_kv(g); i++) {
        qe_gguf_kv_format(g, i, buf, sizeof buf);
        uint64_t m = qe_gguf_kv_type(g, i) == QE_GGUF_ARRAY ? qe_gguf_kv_arr_len(g, i) : 1;
        for (uint64_t j = 0; j < m; j++)
            ck_assert_int_eq(qe_gguf_kv_value(g, i, j, &v), QE_OK);
        ck_assert_int_eq(qe_gguf_find_key(g, qe_gguf_kv_key(g, i)), (int64_t)i);
    }
    for (uint64_t i = 0; i < qe_gguf_n_tensors(g); i++) {
        const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
        ck_assert_ptr_eq(qe_gguf_find_tensor(g, t->name), t);
        if (t->nbytes) {
            volatile uint8_t x = ((const uint8_t *)t->data)[0];
            x ^= ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)x;
        }
    }
}

/* Every single-byte change of a valid file either opens (and walks) or is
 * rejected with an offset; never anything else. Sanitizers watch. */
START_TEST(test_byte_flips)
{
    size_t n;
    uint8_t *b = build_base(3, &n);
    static const uint8_t vals[] = {0x00, 0x01, 0x40, 0x80, 0xff};
    int opened = 0, rejected = 0;
    for (size_t pos = 0; pos < n; pos++) {
        uint8_t keep = b[pos];
        for (size_t k = 0; k < sizeof vals; k++) {
            if (vals[k] == keep)
                continue;
            b[pos] = vals[k];
            qe_gguf *g = NULL;
            qe_status s = qe_gguf_open_mem(b, n, "flip", &g);
            if (s == QE_OK) {
                walk(g);
                qe_gguf_close(g);
                opened++;
            } else {
                ck_assert_msg(s == QE_ECORRUPT || s == QE_EUNSUPPORTED, "pos %zu: %s", pos,
                              qe_status_str(s));
                ck_assert_msg(strncmp(qe_errmsg(), "flip: offset ", 13) == 0, "%s", qe_errmsg());
                rejected++;
            }
        }
        b[pos] = keep;
    }
    /* Flips inside tensor data and string values leave a valid file. */
    ck_assert_int_gt(opened, 0);
    ck_assert_int_gt(rejected, 0);
    free(b);
}
END_TEST

START_TEST(test_writer_limits)
{
    qe_gguf_writer *w = NULL;
    ck_assert_int_eq(qe_gguf_writer_new(1, &w), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_new(4, &w), QE_EINVAL);
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_u32(w, "k", 1));
    ck_assert_int_eq(qe_gguf_writer_add_u8(w, "k", 1), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "duplicate key 'k'"));
    ck_assert_int_eq(qe_gguf_writer_add_u8(w, "", 1), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_bool(w, "b", 2), QE_EINVAL);
    static const uint8_t bad_bools[2] = {0, 3};
    ck_assert_int_eq(qe_gguf_writer_add_arr(w, "bb", QE_GGUF_BOOL, bad_bools, 2), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_arr(w, "aa", QE_GGUF_ARRAY, bad_bools, 0), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_arr(w, "as", QE_GGUF_STRING, bad_bools, 0), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_set_alignment(w, 0), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_set_alignment(w, 48), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_i32(w, "general.alignment", 64), QE_EINVAL);
    OK(qe_gguf_writer_add_u32(w, "general.alignment", 64)); /* same as set_alignment */
    OK(qe_gguf_writer_set_alignment(w, 16));                /* replaces, no duplicate */
    char name64[65];
    memset(name64, 'n', 64);
    name64[64] = '\0';
    int64_t ne[4] = {32, 1, 1, 1};
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, name64, QE_DT_F32, 1, ne, NULL), QE_EINVAL);
    name64[63] = '\0'; /* 63 bytes is the longest allowed */
    OK(qe_gguf_writer_add_tensor(w, name64, QE_DT_F32, 1, ne, NULL));
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, name64, QE_DT_F32, 1, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "", QE_DT_F32, 1, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "t0", QE_DT_F32, 0, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "t5", QE_DT_F32, 5, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "tq", 4, 1, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "tb", QE_DT_Q4_K, 1, ne, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "tn", QE_DT_F32, 2, (int64_t[]){4, -1}, NULL),
                     QE_EINVAL);
    ck_assert_int_eq(qe_gguf_writer_add_tensor(w, "tr", QE_DT_F32, 2,
                                               (int64_t[]){INT64_MAX, 2}, NULL), QE_ERANGE);
    /* What was accepted still makes a valid file. */
    void *b = NULL;
    size_t n;
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    qe_gguf *g = NULL;
    OK(qe_gguf_open_mem(b, n, "w", &g));
    ck_assert_uint_eq(qe_gguf_alignment(g), 16);
    ck_assert_uint_eq(qe_gguf_n_kv(g), 2);
    ck_assert_uint_eq(qe_gguf_n_tensors(g), 1);
    const uint8_t *z = qe_gguf_tensor_at(g, 0)->data;
    for (int i = 0; i < 128; i++)
        ck_assert_uint_eq(z[i], 0); /* NULL data writes zeros */
    qe_gguf_close(g);
    free(b);
    /* A path in a missing directory fails with EIO and names the path. */
    ck_assert_int_eq(qe_gguf_writer_write_file(w, "/nonexistent/dir/x.gguf"), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent/dir/x.gguf"));
    qe_gguf_writer_free(w);
    qe_gguf_writer_free(NULL);
}
END_TEST

/* ---- fuzz seeds ---- */

/* The seeds in fuzz/seeds are writer output. QEVAL_WRITE_SEEDS=DIR rewrites
 * them there; otherwise this checks each committed seed still opens. */
static void write_seeds(const char *dir)
{
    char path[4096];
    size_t n;
    void *b;
    FILE *f;
    struct {
        const char *name;
        void *(*make)(uint32_t, size_t *);
        uint32_t version;
    } seeds[] = {{"base-v3.gguf", build_base, 3}, {"base-v2.gguf", build_base, 2},
                 {"all-types-v3.gguf", build_all_types, 3}};
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        b = seeds[k].make(seeds[k].version, &n);
        snprintf(path, sizeof path, "%s/%s", dir, seeds[k].name);
        ck_assert_ptr_nonnull(f = fopen(path, "wb"));
        ck_assert_uint_eq(fwrite(b, 1, n, f), n);
        fclose(f);
        free(b);
    }
    /* A vocab-like file: 300 tokens, scores and types, no tensors, no final
     * padding (like llama.cpp's vocab files); and a quantized model shape. */
    qe_gguf_writer *w = NULL;
    char tok[300][16];
    const char *toks[300];
    float scores[300];
    int32_t types[300];
    for (int i = 0; i < 300; i++) {
        snprintf(tok[i], sizeof tok[i], i < 3 ? (i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>")
                                              : "tok%d", i);
        toks[i] = tok[i];
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(qe_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"));
    OK(qe_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 300));
    OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.scores", QE_GGUF_FLOAT32, scores, 300));
    OK(qe_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QE_GGUF_INT32, types, 300));
    OK(qe_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1));
    OK(qe_gguf_writer_add_str(w, "general.name", "vocab")); /* ends in non-zero bytes */
    OK(qe_gguf_writer_write_mem(w, &b, &n));
    qe_gguf_writer_free(w);
    /* Drop the trailing padding the writer adds. */
    uint8_t *p = b;
    while (n > 0 && p[n - 1] == 0)
        n--;
    snprintf(path, sizeof path, "%s/vocab-nopad.gguf", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "wb"));
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);

    OK(qe_gguf_writer_new(3, &w));
    OK(qe_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(qe_gguf_writer_add_u32(w, "llama.block_count", 1));
    OK(qe_gguf_writer_add_u32(w, "general.alignment", 64));
    static const uint32_t qt[5] = {QE_DT_Q4_0, QE_DT_Q8_0, QE_DT_Q6_K, QE_DT_BF16, QE_DT_Q4_1};
    static const char *const qn[5] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight",
                                      "output.weight", "token_embd.weight", "blk.0.ffn_up.weight"};
    for (int k = 0; k < 5; k++) {
        int64_t ne[2] = {256, 2};
        OK(qe_gguf_writer_add_tensor(w, qn[k], qt[k], 2, ne, NULL));
    }
    snprintf(path, sizeof path, "%s/quant-v3.gguf", dir);
    OK(qe_gguf_writer_write_file(w, path));
    qe_gguf_writer_free(w);
}

START_TEST(test_seeds)
{
    const char *out = getenv("QEVAL_WRITE_SEEDS");
    if (out && *out)
        write_seeds(out);
    const char *dir = out && *out ? out : "fuzz/seeds";
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s (run from the repository root)", dir);
    int count = 0;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        qe_gguf *g = NULL;
        OK(qe_gguf_open(path, &g));
        ck_assert_uint_lt(qe_gguf_file_size(g), 64 * 1024);
        walk(g);
        qe_gguf_close(g);
        count++;
    }
    closedir(d);
    ck_assert_int_ge(count, 5);
}
END_TEST

Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_base_valid);
    tcase_add_test(core, test_writer_bytes);
    tcase_add_test(core, test_roundtrip_values);
    tcase_add_test(core, test_roundtrip_tensors);
    tcase_add_test(core, test_format);
    tcase_add_test(core, test_accessor_mismatch);
    tcase_add_test(core, test_seeds);
    suite_add_tcase(s, core);
    TCase *real = tcase_create("real_files");
    tcase_add_test(real, test_stories260k);
    tcase_add_test(real, test_phi3_vocab);
    tcase_set_timeout(real, 30);
    suite_add_tcase(s, real);
    TCase *rej = tcase_create("rejections");
    tcase_add_loop_test(rej, test_bad_case, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    suite_add_tcase(s, rej);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_open_errors);
    tcase_add_test(lim, test_message_escaping);
    tcase_add_test(lim, test_truncations);
    tcase_add_test(lim, test_byte_flips);
    tcase_add_test(lim, test_writer_limits);
    tcase_set_timeout(lim, 60);
    suite_add_tcase(s, lim);
    return s;
}
