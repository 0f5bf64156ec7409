/* check_report.c - CSV exports read back with libcsv (commas, quotes and
 * newlines in fields; numbers bit-exact), aligned tables, the comparison
 * table against independently computed numbers, and SQL that must be
 * refused. */
#define _GNU_SOURCE /* open_memstream */
#include <check.h>
#include <csv.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "store.h"
#include "testutil.h"

static char *tmp;
static char dbpath[4096];
static char session[65], ref_key[65], var_key[65];
static double nll_ref, nll_var; /* sums over the chunks both runs hold */
static double ref_s1, ref_s2;   /* the reference's sums over all its tokens */
static long n_common, n_ref;

#define MODEL_KEY "aa00000000000000000000000000000000000000000000000000000000000001"
#define DATA_KEY "bb00000000000000000000000000000000000000000000000000000000000002"
static const char *weird_name = "stories \"260K\", v2\nsecond line";

/* A database with a reference run (3 chunks) and a variant (2 chunks). */
static void setup(void)
{
    tmp = qe_test_tmpdir();
    ck_assert_ptr_nonnull(tmp);
    snprintf(dbpath, sizeof dbpath, "%s/r.db", tmp);
    qe_store *st;
    ck_assert_int_eq(qe_store_open(dbpath, 0, 0, &st), QE_OK);
    qe_store_model m = {MODEL_KEY, weird_name, "/m, with comma.gguf", "gguf", "llama", 1000000,
                        4000000, 4000100, "{}", "{}"};
    ck_assert_int_eq(qe_store_put_model(st, &m), QE_OK);
    qe_store_dataset d = {DATA_KEY, "text", "/data/wiki, \"raw\".txt", NULL,
                          "cc00000000000000000000000000000000000000000000000000000000000003",
                          100, 1, 100, 0, NULL};
    ck_assert_int_eq(qe_store_put_dataset(st, &d), QE_OK);
    qe_store_session ss = {"report-test", NULL, "dev", "drv", "c", "f32"};
    ck_assert_int_eq(qe_store_session_begin(st, &ss, session), QE_OK);
    qe_store_run_config c = {"perplexity", MODEL_KEY, DATA_KEY, MODEL_KEY, 64, "f32", "f16",
                             "f16", 2, NULL};
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_begin(st, &c, NULL, session, &r), QE_OK);
    snprintf(ref_key, sizeof ref_key, "%s", r.run_key);
    qe_store_resume_free(&r);
    c.weights = "q4_0";
    c.kv_v = "tq3";
    ck_assert_int_eq(qe_store_run_begin(st, &c, ref_key, session, &r), QE_OK);
    snprintf(var_key, sizeof var_key, "%s", r.run_key);
    qe_store_resume_free(&r);
    ck_assert_int_eq(qe_store_run_plan(st, ref_key, 200, 3), QE_OK);
    ck_assert_int_eq(qe_store_run_plan(st, var_key, 200, 3), QE_OK);
    ck_assert_int_eq(qe_store_run_weight_bytes(st, var_key, 562500), QE_OK); /* 4.5 bpw */
    nll_ref = nll_var = ref_s1 = ref_s2 = 0;
    n_common = n_ref = 0;
    for (int ch = 0; ch < 3; ch++) {
        int32_t tgt[31], am[31], tid[62];
        float lp[31], lq[31], tlp[62];
        for (int j = 0; j < 31; j++) {
            tgt[j] = (ch * 31 + j) % 97;
            am[j] = j % 4 ? tgt[j] : 0;
            lp[j] = -0.05f * (float)((ch * 7 + j * 3) % 40) - 0.01f;
            lq[j] = lp[j] - 0.001f * (float)(j % 5);
            tid[2 * j] = am[j];
            tid[2 * j + 1] = am[j] + 1;
            tlp[2 * j] = -0.25f;
            tlp[2 * j + 1] = -1.5f - (float)j / 7.0f;
            ref_s1 += -(double)lp[j];
            ref_s2 += (double)lp[j] * lp[j];
            n_ref++;
            if (ch < 2) {
                nll_ref += -(double)lp[j];
                nll_var += -(double)lq[j];
                n_common++;
            }
        }
        qe_store_chunk k = {ch, 32, 31, tgt, lp, am, 2, tid, tlp, NULL, 0.25, 0, 0, 0, NULL, NULL, NULL};
        ck_assert_int_eq(qe_store_put_chunk(st, ref_key, session, &k, NULL), QE_OK);
        if (ch < 2) {
            k.logprob = lq;
            ck_assert_int_eq(qe_store_put_chunk(st, var_key, session, &k, NULL), QE_OK);
        }
    }
    qe_kld_summary ks;
    memset(&ks, 0, sizeof ks);
    ks.n = 62;
    ks.kld.mean = 0.0123456789;
    ks.kld_pct[1] = 0.25;
    ks.same_top = 0.9375;
    ck_assert_int_eq(qe_store_put_kld(st, var_key, ref_key, session, &ks), QE_OK);
    ck_assert_int_eq(qe_store_add_timing(st, var_key, session, "prefill, \"batched\"", 1.25, 64, 2),
                     QE_OK);
    qe_store_close(st);
}

static void teardown(void)
{
    qe_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

/* ---- reading CSV back with libcsv ---- */

struct rows {
    char **cell; /* [n_rows][n_cols] */
    size_t n_rows, n_cols, n_cur, cap;
    int ragged;
};

static void on_field(void *s, size_t len, void *u)
{
    struct rows *r = u;
    if ((r->n_rows + 1) * 64 > r->cap) {
        r->cap = (r->n_rows + 1) * 128;
        r->cell = realloc(r->cell, r->cap * sizeof *r->cell);
    }
    char *c = malloc(len + 1);
    if (len)
        memcpy(c, s, len);
    c[len] = '\0';
    if (r->n_cur < 64)
        r->cell[r->n_rows * 64 + r->n_cur] = c;
    else
        free(c);
    r->n_cur++;
}

static void on_row(int term, void *u)
{
    (void)term;
    struct rows *r = u;
    if (r->n_rows == 0)
        r->n_cols = r->n_cur;
    else if (r->n_cur != r->n_cols)
        r->ragged = 1;
    r->n_rows++;
    r->n_cur = 0;
}

static struct rows read_csv(const char *text, size_t len)
{
    struct rows r = {0};
    struct csv_parser p;
    ck_assert_int_eq(csv_init(&p, CSV_STRICT | CSV_STRICT_FINI), 0);
    ck_assert_uint_eq(csv_parse(&p, text, len, on_field, on_row, &r), len);
    ck_assert_int_eq(csv_fini(&p, on_field, on_row, &r), 0);
    csv_free(&p);
    ck_assert_int_eq(r.ragged, 0);
    return r;
}

static const char *cell(const struct rows *r, size_t row, const char *col)
{
    for (size_t c = 0; c < r->n_cols && c < 64; c++)
        if (!strcmp(r->cell[c], col))
            return r->cell[row * 64 + c];
    ck_abort_msg("no column %s", col);
    return NULL;
}

static void free_rows(struct rows *r)
{
    for (size_t i = 0; i < r->n_rows; i++)
        for (size_t c = 0; c < r->n_cols && c < 64; c++)
            free(r->cell[i * 64 + c]);
    free(r->cell);
}

/* Run f on a read-only handle into a string. */
static char *capture(qe_status (*f)(qe_store *, const void *, FILE *), const void *arg,
                     qe_status *st_out)
{
    qe_store *st;
    ck_assert_int_eq(qe_store_open(dbpath, QE_STORE_READONLY, 0, &st), QE_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    *st_out = f(st, arg, m);
    fclose(m);
    qe_store_close(st);
    return buf;
}

static qe_status do_export(qe_store *st, const void *arg, FILE *out)
{
    return qe_report_export(st, *(const qe_export_what *)arg, out);
}

static qe_status do_query_csv(qe_store *st, const void *arg, FILE *out)
{
    return qe_report_query(st, arg, QE_REPORT_CSV, out);
}

static qe_status do_query_table(qe_store *st, const void *arg, FILE *out)
{
    return qe_report_query(st, arg, QE_REPORT_TABLE, out);
}

static qe_status do_compare(qe_store *st, const void *arg, FILE *out)
{
    return qe_report_compare(st, arg, QE_REPORT_TABLE, out);
}

static qe_status do_compare_csv(qe_store *st, const void *arg, FILE *out)
{
    return qe_report_compare(st, arg, QE_REPORT_CSV, out);
}

static double db_double(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    double v = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* ---- tests ---- */

START_TEST(test_export_runs)
{
    qe_export_what w = QE_EXPORT_RUNS;
    qe_status r;
    char *csv = capture(do_export, &w, &r);
    ck_assert_int_eq(r, QE_OK);
    struct rows t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 3);
    for (size_t i = 1; i < 3; i++) {
        ck_assert_str_eq(cell(&t, i, "model"), weird_name);            /* quotes, comma, newline */
        ck_assert_str_eq(cell(&t, i, "dataset"), "/data/wiki, \"raw\".txt");
    }
    size_t ref_row = !strcmp(cell(&t, 1, "run_key"), ref_key) ? 1 : 2;
    /* the PPL read back is the database's double, bit for bit */
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT ppl FROM v_run_summary WHERE run_key = '%s'", ref_key);
    ck_assert(strtod(cell(&t, ref_row, "ppl"), NULL) == db_double(sql));
    /* and equals exp(mean nll) computed here */
    ck_assert_double_eq_tol(strtod(cell(&t, ref_row, "ppl"), NULL), exp(ref_s1 / n_ref), 1e-9);
    ck_assert_str_eq(cell(&t, ref_row, "tokens"), "93");
    ck_assert_str_eq(cell(&t, ref_row, "ref_run_key"), ""); /* NULL */
    ck_assert_str_eq(cell(&t, 3 - ref_row, "bits_per_weight"), "4.5");
    free_rows(&t);
    free(csv);
}
END_TEST

START_TEST(test_export_tokens_kld_timings)
{
    qe_export_what w = QE_EXPORT_TOKENS;
    qe_status r;
    char *csv = capture(do_export, &w, &r);
    ck_assert_int_eq(r, QE_OK);
    struct rows t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 1 + 93 + 62);
    ck_assert_uint_eq(t.n_cols, 8);
    /* a top-k JSON field holds commas and brackets: read back intact */
    const char *tk = cell(&t, 1, "topk");
    ck_assert_ptr_nonnull(strstr(tk, "[["));
    ck_assert_ptr_nonnull(strstr(tk, "],["));
    ck_assert_ptr_nonnull(strstr(tk, ",-0.25]"));
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT logprob FROM tokens WHERE run_key = '%s' AND chunk = %s AND pos = %s",
             cell(&t, 7, "run_key"), cell(&t, 7, "chunk"), cell(&t, 7, "pos"));
    ck_assert(strtod(cell(&t, 7, "logprob"), NULL) == db_double(sql));
    ck_assert_str_eq(cell(&t, 7, "kld"), "");
    free_rows(&t);
    free(csv);

    w = QE_EXPORT_KLD;
    csv = capture(do_export, &w, &r);
    ck_assert_int_eq(r, QE_OK);
    t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 2);
    ck_assert(strtod(cell(&t, 1, "kld_mean"), NULL) == 0.0123456789);
    ck_assert_str_eq(cell(&t, 1, "same_top_pct"), "93.75");
    ck_assert_str_eq(cell(&t, 1, "kv_v"), "tq3");
    ck_assert_str_eq(cell(&t, 1, "model"), weird_name);
    free_rows(&t);
    free(csv);

    w = QE_EXPORT_TIMINGS;
    csv = capture(do_export, &w, &r);
    ck_assert_int_eq(r, QE_OK);
    t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 2);
    ck_assert_str_eq(cell(&t, 1, "phase"), "prefill, \"batched\"");
    ck_assert_str_eq(cell(&t, 1, "seconds"), "1.25");
    ck_assert_str_eq(cell(&t, 1, "n_calls"), "2");
    free_rows(&t);
    free(csv);
}
END_TEST

START_TEST(test_query)
{
    qe_status r;
    char *csv = capture(do_query_csv, "SELECT name, n_params, 0.1 AS x, NULL AS empty, "
                                      "x'00ff' AS b FROM models", &r);
    ck_assert_msg(r == QE_OK, "%s", qe_errmsg());
    struct rows t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 2);
    ck_assert_str_eq(cell(&t, 1, "name"), weird_name);
    ck_assert_str_eq(cell(&t, 1, "n_params"), "1000000");
    ck_assert(strtod(cell(&t, 1, "x"), NULL) == 0.1);
    ck_assert_str_eq(cell(&t, 1, "empty"), "");
    ck_assert_str_eq(cell(&t, 1, "b"), "00ff");
    free_rows(&t);
    free(csv);

    char *tab = capture(do_query_table, "SELECT name, n_params FROM models UNION ALL "
                                        "SELECT 'x', 7", &r);
    ck_assert_int_eq(r, QE_OK);
    /* the newline inside the name is shown escaped; numbers right-aligned */
    const char *want = "name                             n_params\n"  /* 31 + 2 */
                       "-------------------------------  --------\n"
                       "stories \"260K\", v2\\nsecond line   1000000\n"
                       "x                                       7\n";
    ck_assert_str_eq(tab, want);
    free(tab);

    const struct {
        const char *sql, *msg;
    } bad[] = {
        {"DELETE FROM runs", "SQL: "},
        {"UPDATE runs SET status = 'x'", "SQL: "},
        {"SELECT 1; SELECT 2", "SQL: one statement at a time"},
        {"SELEC 1", "SQL: near \"SELEC\": syntax error"},
        {"SELECT * FROM no_such_table", "SQL: no such table: no_such_table"},
        {"  ", "SQL: no statement"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *o = capture(do_query_table, bad[i].sql, &r);
        ck_assert_msg(r == QE_EINVAL, "%s: %d", bad[i].sql, r);
        ck_assert_msg(strstr(qe_errmsg(), bad[i].msg), "%s: %s", bad[i].sql, qe_errmsg());
        free(o);
    }
    /* the trailing semicolon of one statement is fine */
    free(capture(do_query_csv, "SELECT 1;", &r));
    ck_assert_msg(r == QE_OK, "%s", qe_errmsg());
}
END_TEST

START_TEST(test_compare)
{
    qe_status r;
    char *tab = capture(do_compare, NULL, &r);
    ck_assert_int_eq(r, QE_OK);
    /* expected cells, computed here from the stored log-probs */
    double ppl = exp(ref_s1 / n_ref);
    double err = ppl * sqrt((ref_s2 / n_ref - (ref_s1 / n_ref) * (ref_s1 / n_ref)) / (n_ref - 1));
    char want[128];
    snprintf(want, sizeof want, "%.4f ± %.4f", ppl, err);
    ck_assert_msg(strstr(tab, want), "%s not in\n%s", want, tab);
    snprintf(want, sizeof want, "%+.3f%%", 100.0 * (exp((nll_var - nll_ref) / n_common) - 1));
    ck_assert_msg(strstr(tab, want), "%s not in\n%s", want, tab);
    ck_assert_ptr_nonnull(strstr(tab, "0.012346"));   /* mean KLD */
    ck_assert_ptr_nonnull(strstr(tab, "0.250000"));   /* KLD 99 % */
    ck_assert_ptr_nonnull(strstr(tab, "93.75%"));     /* same top */
    ck_assert_ptr_nonnull(strstr(tab, "f16/tq3"));    /* K/V formats differ */
    ck_assert_ptr_nonnull(strstr(tab, "549.32 KiB")); /* 562500 bytes */
    ck_assert_ptr_nonnull(strstr(tab, "2/3"));        /* chunks done/planned */
    ck_assert_ptr_nonnull(strstr(tab, "wiki, \"raw\".txt"));
    /* the reference comes first and says so */
    const char *l3 = strchr(strchr(tab, '\n') + 1, '\n') + 1;
    ck_assert_ptr_nonnull(strstr(l3, " ref "));
    ck_assert(strstr(l3, "f32") && strstr(l3, "f32") < strchr(l3, '\n'));
    free(tab);

    /* --ref by prefix: the variant as the reference */
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", var_key);
    tab = capture(do_compare, prefix, &r);
    ck_assert_int_eq(r, QE_OK);
    snprintf(want, sizeof want, "%+.3f%%", 100.0 * (exp((nll_ref - nll_var) / n_common) - 1));
    ck_assert_msg(strstr(tab, want), "%s not in\n%s", want, tab);
    ck_assert_ptr_null(strstr(tab, "0.012346")); /* that KLD is against the other run */
    free(tab);

    char *csv = capture(do_compare_csv, NULL, &r);
    ck_assert_int_eq(r, QE_OK);
    struct rows t = read_csv(csv, strlen(csv));
    ck_assert_uint_eq(t.n_rows, 3);
    ck_assert_str_eq(cell(&t, 1, "is_reference"), "1");
    ck_assert_str_eq(cell(&t, 2, "weights"), "q4_0");
    ck_assert_double_eq_tol(strtod(cell(&t, 2, "delta_ppl_pct"), NULL),
                            100.0 * (exp((nll_var - nll_ref) / n_common) - 1), 1e-9);
    free_rows(&t);
    free(csv);

    free(capture(do_compare, "zzzz", &r));
    ck_assert_int_eq(r, QE_EINVAL);
    free(capture(do_compare, "abc", &r));
    ck_assert_int_eq(r, QE_EINVAL);
    free(capture(do_compare, "0000", &r));
    ck_assert_int_eq(r, QE_ENOTFOUND);
}
END_TEST

START_TEST(test_limits)
{
    qe_export_what w;
    ck_assert_int_eq(qe_report_export_parse("tokens", &w), QE_OK);
    ck_assert_int_eq(w, QE_EXPORT_TOKENS);
    ck_assert_int_eq(qe_report_export_parse("logits", &w), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "expected runs, tokens, kld, timings or generations"));
    qe_export_what bad = (qe_export_what)9;
    qe_status r;
    free(capture(do_export, &bad, &r));
    ck_assert_int_eq(r, QE_EINVAL);
    /* an ambiguous prefix: make two runs share their first digits is not
     * possible by construction; a 1-digit prefix is refused as too short */
    free(capture(do_compare, "a", &r));
    ck_assert_int_eq(r, QE_EINVAL);
    /* an empty database compares to a sentence, not an error */
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty.db", tmp);
    qe_store *st;
    ck_assert_int_eq(qe_store_open(empty, 0, 0, &st), QE_OK);
    qe_store_close(st);
    ck_assert_int_eq(qe_store_open(empty, QE_STORE_READONLY, 0, &st), QE_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ck_assert_int_eq(qe_report_compare(st, NULL, QE_REPORT_TABLE, m), QE_OK);
    fclose(m);
    ck_assert_ptr_nonnull(strstr(buf, "no runs in"));
    free(buf);
    qe_store_close(st);
}
END_TEST

Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_export_runs);
    tcase_add_test(tc, test_export_tokens_kld_timings);
    tcase_add_test(tc, test_query);
    tcase_add_test(tc, test_compare);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
