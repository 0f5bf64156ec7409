/* check_dataset.c - every dataset kind, hashes, malformed input with row and
 * line numbers, skip_bad_rows, and tokenization order for 1/2/8 workers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "hash.h"
#include "testutil.h"

static char *tmp;

static void setup(void)
{
    tmp = qe_test_tmpdir();
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    qe_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

/* Write a fixture and open it; returns the status, *out the dataset. */
static qe_status open_str(const char *name, const char *content, qe_dataset_kind kind,
                          const char *field, int skip, qe_dataset **out)
{
    char *p = qe_test_write(tmp, name, content, strlen(content));
    ck_assert_ptr_nonnull(p);
    qe_dataset_opts o = {kind, field, skip};
    qe_status st = qe_dataset_open(p, &o, out);
    free(p);
    return st;
}

static void doc_is(const qe_dataset *ds, size_t i, const char *want)
{
    size_t len;
    const char *s = qe_dataset_doc(ds, i, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(s, want, len);
}

static void hex_of(const uint8_t *b, char hex[65])
{
    qe_hash_hex(b, 32, hex);
}

/* The documented document hash, computed here from the expected texts. */
static void docs_hash(const char *const *docs, size_t n, char hex[65])
{
    qe_hash_sha256 h;
    qe_hash_sha256_init(&h);
    qe_hash_sha256_update(&h, "qeval-docs-1", 13);
    for (size_t i = 0; i < n; i++) {
        uint64_t len = strlen(docs[i]);
        uint8_t b[8];
        for (int k = 0; k < 8; k++)
            b[k] = (uint8_t)(len >> (8 * k));
        qe_hash_sha256_update(&h, b, 8);
        qe_hash_sha256_update(&h, docs[i], len);
    }
    uint8_t d[32];
    qe_hash_sha256_final(&h, d);
    qe_hash_hex(d, 32, hex);
}

START_TEST(test_text_wikitext)
{
    qe_dataset_opts o = {QE_DATASET_TEXT, NULL, 0};
    qe_dataset *ds;
    ck_assert_int_eq(qe_dataset_open(qe_test_data("text/wiki.test.raw"), &o, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 1);
    size_t len;
    const char *s = qe_dataset_doc(ds, 0, &len);
    ck_assert_uint_eq(len, 1290590); /* MANIFEST.md */
    ck_assert_uint_eq(qe_dataset_file_bytes(ds), 1290590);
    ck_assert_uint_eq(qe_dataset_doc_bytes(ds), 1290590);
    ck_assert_int_eq(s[len], '\0');
    ck_assert_ptr_null(qe_dataset_field(ds));
    char hex[65];
    hex_of(qe_dataset_file_sha256(ds), hex);
    /* SHA256SUMS beside the data */
    ck_assert_str_eq(hex, "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
    hex_of(qe_dataset_sha256(ds), hex);
    ck_assert_str_ne(hex, "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
    qe_dataset_close(ds);
}
END_TEST

START_TEST(test_jsonl)
{
    const char *src =
        "{\"text\": \"first doc\", \"id\": 1}\n"
        "\n"
        "   \r\n"
        "{\"id\": 2, \"text\": \"caf\\u00e9 \\\"quoted\\\"\\nnew line\"}\r\n"
        "{\"text\": \"\", \"meta\": {\"body\": \"x\"}}\n"
        "{\"text\": \"last, no newline\"}";
    qe_dataset *ds;
    ck_assert_int_eq(open_str("a.jsonl", src, QE_DATASET_JSONL, NULL, 0, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 4);
    doc_is(ds, 0, "first doc");
    doc_is(ds, 1, "caf\xC3\xA9 \"quoted\"\nnew line");
    doc_is(ds, 2, "");
    doc_is(ds, 3, "last, no newline");
    ck_assert_int_eq(qe_dataset_doc_row(ds, 0), 1);
    ck_assert_int_eq(qe_dataset_doc_row(ds, 1), 4); /* blank lines counted */
    ck_assert_int_eq(qe_dataset_doc_row(ds, 3), 6);
    ck_assert_str_eq(qe_dataset_field(ds), "text");
    const char *docs[] = {"first doc", "caf\xC3\xA9 \"quoted\"\nnew line", "", "last, no newline"};
    char want[65], got[65];
    docs_hash(docs, 4, want);
    hex_of(qe_dataset_sha256(ds), got);
    ck_assert_str_eq(got, want);
    qe_dataset_close(ds);

    /* a nested field by dotted path; a key with a dot wins over the path */
    const char *nested = "{\"meta\": {\"body\": \"inner\"}}\n{\"meta.body\": \"flat\", \"meta\": {\"body\": \"no\"}}\n";
    ck_assert_int_eq(open_str("b.jsonl", nested, QE_DATASET_JSONL, "meta.body", 0, &ds), QE_OK);
    doc_is(ds, 0, "inner");
    doc_is(ds, 1, "flat");
    qe_dataset_close(ds);
    /* a UTF-8 BOM is skipped */
    ck_assert_int_eq(open_str("c.jsonl", "\xEF\xBB\xBF{\"prompt\": \"p\"}\n", QE_DATASET_JSONL,
                              "prompt", 0, &ds), QE_OK);
    doc_is(ds, 0, "p");
    qe_dataset_close(ds);
}
END_TEST

START_TEST(test_jsonl_bad_rows)
{
    const char *src = "{\"text\": \"ok 1\"}\n"
                      "{\"text\": \"unterminated}\n"
                      "[1, 2]\n"
                      "{\"txt\": \"typo\"}\n"
                      "{\"text\": 42}\n"
                      "{\"text\": \"ok 6\"}\n"
                      "{\"text\": \"a\", \"text\": \"b\"}\n";
    qe_dataset *ds = NULL;
    ck_assert_int_eq(open_str("bad.jsonl", src, QE_DATASET_JSONL, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "bad.jsonl:2: invalid JSON at column"));
    ck_assert_int_eq(open_str("bad.jsonl", src, QE_DATASET_JSONL, NULL, 1, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 2);
    doc_is(ds, 0, "ok 1");
    doc_is(ds, 1, "ok 6");
    ck_assert_uint_eq(qe_dataset_n_skipped(ds), 5);
    const int64_t rows[] = {2, 3, 4, 5, 7};
    const char *why[] = {"2: invalid JSON", "3: expected a JSON object, got an array",
                         "4: no field 'text'", "5: field 'text' is a number, expected a string",
                         "7: invalid JSON"};
    for (int i = 0; i < 5; i++) {
        const qe_dataset_skip *s = qe_dataset_skipped(ds, (size_t)i);
        ck_assert_int_eq(s->row, rows[i]);
        ck_assert_msg(strncmp(s->reason, why[i], strlen(why[i])) == 0, "%s", s->reason);
    }
    qe_dataset_close(ds);
    /* each problem alone, as an error naming its line */
    const struct {
        const char *src, *msg;
    } cases[] = {
        {"{\"text\": \"a\"}\n[1]\n", "x.jsonl:2: expected a JSON object, got an array"},
        {"{\"text\": \"a\"}\n\n{\"t\": 1}\n", "x.jsonl:3: no field 'text'"},
        {"{\"text\": null}\n", "x.jsonl:1: field 'text' is null, expected a string"},
        {"{\"text\": \"a\"} trailing\n", "x.jsonl:1: invalid JSON at column"},
        {"{\"text\": \"\xff\"}\n", "x.jsonl:1: invalid JSON"},
        {"{\"text\": \"a\\u0000b\"}\n", "x.jsonl:1: invalid JSON"},
        {"{\"text\": \"a\", \"text\": \"b\"}\n", "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(open_str("x.jsonl", cases[i].src, QE_DATASET_JSONL, NULL, 0, &ds),
                         QE_ECORRUPT);
        ck_assert_msg(strstr(qe_errmsg(), cases[i].msg), "case %zu: %s", i, qe_errmsg());
    }
}
END_TEST

START_TEST(test_csv)
{
    /* RFC 4180: commas, doubled quotes, newlines (LF and CRLF) inside quotes */
    const char *src = "id,text,label\r\n"
                      "1,plain,a\r\n"
                      "2,\"with, comma\",b\r\n"
                      "3,\"say \"\"hi\"\"\",c\r\n"
                      "\r\n"
                      "4,\"two\nlines\r\nthree\",d\r\n"
                      "5,,e\r\n"
                      "6,last,f";
    qe_dataset *ds;
    ck_assert_int_eq(open_str("a.csv", src, QE_DATASET_CSV, NULL, 0, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 6);
    doc_is(ds, 0, "plain");
    doc_is(ds, 1, "with, comma");
    doc_is(ds, 2, "say \"hi\"");
    doc_is(ds, 3, "two\nlines\r\nthree");
    doc_is(ds, 4, "");
    doc_is(ds, 5, "last");
    ck_assert_int_eq(qe_dataset_doc_row(ds, 0), 2); /* the header is row 1 */
    ck_assert_int_eq(qe_dataset_doc_row(ds, 5), 7);
    qe_dataset_close(ds);
    ck_assert_int_eq(open_str("a.csv", src, QE_DATASET_CSV, "label", 0, &ds), QE_OK);
    doc_is(ds, 3, "d");
    qe_dataset_close(ds);

    /* the same documents as JSONL hash the same: the key is the data */
    const char *jsonl = "{\"text\": \"plain\"}\n{\"text\": \"with, comma\"}\n"
                        "{\"text\": \"say \\\"hi\\\"\"}\n{\"text\": \"two\\nlines\\r\\nthree\"}\n"
                        "{\"text\": \"\"}\n{\"text\": \"last\"}\n";
    qe_dataset *dj;
    ck_assert_int_eq(open_str("same.jsonl", jsonl, QE_DATASET_JSONL, NULL, 0, &dj), QE_OK);
    ck_assert_int_eq(open_str("a.csv", src, QE_DATASET_CSV, NULL, 0, &ds), QE_OK);
    ck_assert_mem_eq(qe_dataset_sha256(ds), qe_dataset_sha256(dj), 32);
    ck_assert_mem_ne(qe_dataset_file_sha256(ds), qe_dataset_file_sha256(dj), 32);
    qe_dataset_close(dj);
    qe_dataset *dl;
    ck_assert_int_eq(open_str("b.csv", src, QE_DATASET_CSV, "label", 0, &dl), QE_OK);
    ck_assert_mem_ne(qe_dataset_sha256(ds), qe_dataset_sha256(dl), 32);
    qe_dataset_close(dl);
    qe_dataset_close(ds);
}
END_TEST

START_TEST(test_csv_bad_rows)
{
    /* line numbers: header 1; row 2 line 2; row 3 lines 3-4; row 4 line 5 */
    const char *src = "a,text\n"
                      "1,ok\n"
                      "2,\"spans\nlines\"\n"
                      "3\n"
                      "4,x,extra\n"
                      "5,fine\n";
    qe_dataset *ds;
    ck_assert_int_eq(open_str("r.csv", src, QE_DATASET_CSV, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/r.csv: row 4 (line 5): 1 fields, expected 2 as in the header"));
    ck_assert_int_eq(open_str("r.csv", src, QE_DATASET_CSV, NULL, 1, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 3);
    doc_is(ds, 1, "spans\nlines");
    doc_is(ds, 2, "fine");
    ck_assert_uint_eq(qe_dataset_n_skipped(ds), 2);
    ck_assert_int_eq(qe_dataset_skipped(ds, 0)->row, 4);
    ck_assert_int_eq(qe_dataset_skipped(ds, 1)->row, 5);
    ck_assert_str_eq(qe_dataset_skipped(ds, 1)->reason,
                     "row 5 (line 6): 3 fields, expected 2 as in the header");
    qe_dataset_close(ds);

    /* syntax errors are fatal even with skip_bad_rows */
    ck_assert_int_eq(open_str("q.csv", "a,text\n1,ok\n2,bad\"quote\n", QE_DATASET_CSV, NULL, 1,
                              &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q.csv: row 3 (line 3): malformed CSV at line 3"));
    ck_assert_int_eq(open_str("q.csv", "a,text\n1,\"x\ny\"z\n", QE_DATASET_CSV, NULL, 1, &ds),
                     QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "row 2 (line 2): malformed CSV at line 3"));
    ck_assert_int_eq(open_str("q.csv", "a,text\n1,ok\n2,\"never closed\n\n", QE_DATASET_CSV,
                              NULL, 1, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "row 3 (line 3): quoted field not closed"));
    /* header problems */
    ck_assert_int_eq(open_str("h.csv", "a,b\n1,2\n", QE_DATASET_CSV, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/h.csv: row 1 (line 1): no column 'text' in the "
                                              "header (columns: 'a', 'b')"));
    /* the names are the file's bytes: a newline or quote in one is escaped,
       the message stays one line (found by fuzz_dataset) */
    ck_assert_int_eq(open_str("h.csv", "a,\"b\nq'\"\n1,2\n", QE_DATASET_CSV, NULL, 0, &ds),
                     QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "(columns: 'a', 'b\\x0aq\\x27')"));
    ck_assert_int_eq(open_str("h.csv", "text,text\n1,2\n", QE_DATASET_CSV, NULL, 0, &ds),
                     QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "column 'text' appears twice"));
    ck_assert_int_eq(open_str("h.csv", "", QE_DATASET_CSV, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "expected a header row"));
    ck_assert_int_eq(open_str("h.csv", "text\n", QE_DATASET_CSV, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "h.csv: no documents"));
    ck_assert_int_eq(open_str("h.csv", "\xEF\xBB\xBFtext\nbom ok\n", QE_DATASET_CSV, NULL, 0, &ds),
                     QE_OK);
    doc_is(ds, 0, "bom ok");
    qe_dataset_close(ds);
}
END_TEST

START_TEST(test_ids)
{
    const char *src = "# qeval ids: one document per line\n"
                      "1 2 3\n"
                      "\n"
                      "\t10\t20  2147483647 \r\n"
                      "   # indented comment\n"
                      "0\n";
    qe_dataset *ds;
    ck_assert_int_eq(open_str("t.ids", src, QE_DATASET_IDS, NULL, 0, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 3);
    size_t n;
    const int32_t *ids = qe_dataset_doc_ids(ds, 1, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 10);
    ck_assert_int_eq(ids[2], 2147483647);
    ck_assert_int_eq(qe_dataset_doc_row(ds, 1), 4);
    ck_assert_int_eq(qe_dataset_doc_row(ds, 2), 6);
    ck_assert_uint_eq(qe_dataset_doc_bytes(ds), 7);
    ck_assert_ptr_null(qe_dataset_doc(ds, 0, &n));
    ck_assert_int_eq(qe_dataset_check_ids(ds, 512), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ids:4: token id 2147483647 (the 3rd on the line) "
                                              "is not below the vocabulary size 512"));
    /* the documented ids hash: tag, then u64le count and i32le ids per doc */
    const uint8_t want_bytes[] = {'q', 'e', 'v', 'a', 'l', '-', 'i', 'd', 's', '-', '1', 0,
                                  3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0,
                                  3, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 0xff, 0xff,
                                  0xff, 0x7f, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    uint8_t want[32];
    qe_hash_sha256_buf(want_bytes, sizeof want_bytes, want);
    ck_assert_mem_eq(qe_dataset_sha256(ds), want, 32);
    int32_t *toks;
    size_t nt;
    ck_assert_int_eq(qe_dataset_tokenize(ds, NULL, NULL, 4, &toks, &nt), QE_OK);
    ck_assert_uint_eq(nt, 7);
    ck_assert_int_eq(toks[3], 10);
    ck_assert_int_eq(toks[6], 0);
    free(toks);
    qe_dataset_close(ds);

    const struct {
        const char *src, *msg;
    } cases[] = {
        {"1 2\n3 x4\n", "e.ids:2: column 3: expected a token id (decimal integer 0 .. 2147483647), got 'x4'"},
        {"1 -2\n", "e.ids:1: column 3: expected a token id"},
        {"2147483648\n", "e.ids:1: column 1: expected a token id (decimal integer 0 .. 2147483647), got '2147483648'"},
        {"99999999999999999999999\n", "got '99999999999999999999999'"},
        {"1,2\n", "e.ids:1: column 1: expected a token id"},
        {"1 2\x01\r\n", "e.ids:1: column 3: expected a token id (decimal integer 0 .. "
                         "2147483647), got '2\\x01'"},
        {"# only comments\n\n", "e.ids: no documents"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(open_str("e.ids", cases[i].src, QE_DATASET_IDS, NULL, 0, &ds),
                         QE_ECORRUPT);
        ck_assert_msg(strstr(qe_errmsg(), cases[i].msg), "case %zu: %s", i, qe_errmsg());
    }
    ck_assert_int_eq(open_str("e.ids", "1 2\nbad\n3\n", QE_DATASET_IDS, NULL, 1, &ds), QE_OK);
    ck_assert_uint_eq(qe_dataset_n_docs(ds), 2);
    ck_assert_int_eq(qe_dataset_skipped(ds, 0)->row, 2);
    ck_assert_uint_eq(qe_dataset_doc_bytes(ds), 3);
    ck_assert_int_eq(qe_dataset_check_ids(ds, 4), QE_OK); /* ids 1 2 3 */
    ck_assert_int_eq(qe_dataset_check_ids(ds, 3), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "e.ids:3: token id 3 (the 1st on the line)"));
    qe_dataset_close(ds);
}
END_TEST

/* A toy tokenizer: one id per byte, plus the document's length as a marker. */
static qe_status byte_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
    (void)ctx;
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids)
        return qe_fail(QE_ENOMEM, "oom");
    (*ids)[0] = -(int32_t)len;
    for (size_t i = 0; i < len; i++)
        (*ids)[i + 1] = (unsigned char)text[i];
    *n = len + 1;
    if (len == 3 && !memcmp(text, "BAD", 3))
        return qe_fail(QE_EINVAL, "cannot encode");
    return QE_OK;
}

START_TEST(test_tokenize_order)
{
    /* 200 documents of varied lengths */
    size_t cap = 200 * 64, o = 0;
    char *src = malloc(cap);
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(src + o, cap - o, "{\"text\": \"doc %d %.*s\"}\n", i, i % 37,
                              "abcdefghijklmnopqrstuvwxyz0123456789");
    qe_dataset *ds;
    ck_assert_int_eq(open_str("many.jsonl", src, QE_DATASET_JSONL, NULL, 0, &ds), QE_OK);
    free(src);
    /* expected stream built directly from the documents */
    size_t n_exp = 0;
    for (size_t d = 0; d < 200; d++) {
        size_t len;
        qe_dataset_doc(ds, d, &len);
        n_exp += len + 1;
    }
    int32_t *exp = malloc(n_exp * sizeof *exp);
    size_t k = 0;
    for (size_t d = 0; d < 200; d++) {
        size_t len;
        const char *s = qe_dataset_doc(ds, d, &len);
        exp[k++] = -(int32_t)len;
        for (size_t i = 0; i < len; i++)
            exp[k++] = (unsigned char)s[i];
    }
    int workers[] = {1, 2, 8};
    for (int w = 0; w < 3; w++) {
        int32_t *t;
        size_t n;
        ck_assert_int_eq(qe_dataset_tokenize(ds, byte_encode, NULL, workers[w], &t, &n), QE_OK);
        ck_assert_uint_eq(n, n_exp);
        ck_assert_mem_eq(t, exp, n * sizeof *t);
        free(t);
    }
    free(exp);
    qe_dataset_close(ds);

    /* an encoder failure names the document and row */
    ck_assert_int_eq(open_str("f.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"BAD\"}\n",
                              QE_DATASET_JSONL, NULL, 0, &ds), QE_OK);
    int32_t *t;
    size_t n;
    ck_assert_int_eq(qe_dataset_tokenize(ds, byte_encode, NULL, 2, &t, &n), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "f.jsonl: document 1 (row 2): cannot encode"));
    ck_assert_ptr_null(t);
    ck_assert_int_eq(qe_dataset_tokenize(ds, NULL, NULL, 2, &t, &n), QE_EINVAL);
    qe_dataset_close(ds);
}
END_TEST

START_TEST(test_limits)
{
    qe_dataset *ds;
    qe_dataset_opts o = {QE_DATASET_TEXT, NULL, 0};
    ck_assert_int_eq(qe_dataset_open("/nonexistent/qeval/x.txt", &o, &ds), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent/qeval/x.txt: cannot open"));
    ck_assert_int_eq(qe_dataset_open(tmp, &o, &ds), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "not a regular file"));
    ck_assert_int_eq(open_str("empty.txt", "", QE_DATASET_TEXT, NULL, 0, &ds), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "empty file"));
    ck_assert_int_eq(open_str("all-bad.jsonl", "x\ny\n", QE_DATASET_JSONL, NULL, 1, &ds),
                     QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no documents left after skipping bad rows"));
    o.kind = (qe_dataset_kind)9;
    ck_assert_int_eq(qe_dataset_open("x", &o, &ds), QE_EINVAL);
    qe_dataset_kind k;
    ck_assert_int_eq(qe_dataset_kind_parse("jsonl", &k), QE_OK);
    ck_assert_int_eq(k, QE_DATASET_JSONL);
    ck_assert_int_eq(qe_dataset_kind_parse("parquet", &k), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "expected text, jsonl, csv or ids"));
    ck_assert_str_eq(qe_dataset_kind_name(QE_DATASET_CSV), "csv");
    /* a text file may hold any bytes, NUL included */
    char *path = qe_test_write(tmp, "nul.txt", "a\0b", 3);
    ck_assert_ptr_nonnull(path);
    o.kind = QE_DATASET_TEXT;
    ck_assert_int_eq(qe_dataset_open(path, &o, &ds), QE_OK);
    size_t len;
    ck_assert_mem_eq(qe_dataset_doc(ds, 0, &len), "a\0b", 3);
    ck_assert_uint_eq(len, 3);
    qe_dataset_close(ds);
    free(path);
    qe_dataset_close(NULL);
}
END_TEST

Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_text_wikitext);
    tcase_add_test(tc, test_jsonl);
    tcase_add_test(tc, test_jsonl_bad_rows);
    tcase_add_test(tc, test_csv);
    tcase_add_test(tc, test_csv_bad_rows);
    tcase_add_test(tc, test_ids);
    tcase_add_test(tc, test_tokenize_order);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
