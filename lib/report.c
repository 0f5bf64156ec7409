/* report.c - aligned tables and CSV (libcsv) from the results database:
 * any query, the format comparison, and exports (see report.h).
 *
 * Tables are collected as text cells first (to know column widths), then
 * printed; CSV streams row by row. Cell text comes from the database, so it
 * is escaped before it reaches a terminal.
 *
 * Threading: single-threaded; one call at a time per store handle.
 * Workload: reports of tens to thousands of rows; exports of millions of
 * token rows stream without buffering.
 */
#include "report.h"

#include <csv.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- text tables ---- */

struct table {
    size_t n_cols, n_rows, cap;
    char **names;   /* [n_cols] */
    int *right;     /* [n_cols] right-align (numbers) */
    char **cells;   /* [n_rows][n_cols], NULL = empty */
};

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    for (size_t i = 0; i < t->n_cols; i++)
        free(t->names[i]);
    free(t->cells);
    free(t->names);
    free(t->right);
}

/* A printable copy: control bytes as \n, \t, \r or \xNN. */
static char *escaped(const char *s, size_t n)
{
    char *o = malloc(4 * n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\t' || c == '\r') {
            o[k++] = '\\';
            o[k++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)sprintf(o + k, "\\x%02x", c);
        } else {
            o[k++] = (char)c;
        }
    }
    o[k] = '\0';
    return o;
}

static qe_status table_init(struct table *t, size_t n_cols)
{
    memset(t, 0, sizeof *t);
    t->n_cols = n_cols;
    t->names = calloc(n_cols ? n_cols : 1, sizeof *t->names);
    t->right = calloc(n_cols ? n_cols : 1, sizeof *t->right);
    if (!t->names || !t->right)
        return qe_fail(QE_ENOMEM, "report: out of memory");
    return QE_OK;
}

/* Append row (n_cols cells the table takes over). A NULL cell (a failed
 * allocation) or a failed growth frees the row: QE_ENOMEM. */
static qe_status table_add(struct table *t, char **row)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (!row[i]) {
            for (size_t j = 0; j < t->n_cols; j++)
                free(row[j]);
            return qe_fail(QE_ENOMEM, "report: out of memory");
        }
    if (t->n_rows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **c = realloc(t->cells, cap * t->n_cols * sizeof *c);
        if (!c) {
            for (size_t i = 0; i < t->n_cols; i++)
                free(row[i]);
            return qe_fail(QE_ENOMEM, "report: out of memory");
        }
        t->cells = c;
        t->cap = cap;
    }
    memcpy(t->cells + t->n_rows * t->n_cols, row, t->n_cols * sizeof *row);
    t->n_rows++;
    return QE_OK;
}

/* Display width: UTF-8 code points. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; s && *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(FILE *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc(' ', out);
}

static void table_print(const struct table *t, FILE *out)
{
    size_t *w = calloc(t->n_cols ? t->n_cols : 1, sizeof *w);
    if (!w)
        return;
    for (size_t c = 0; c < t->n_cols; c++) {
        w[c] = width(t->names[c]);
        for (size_t r = 0; r < t->n_rows; r++) {
            size_t x = width(t->cells[r * t->n_cols + c]);
            w[c] = x > w[c] ? x : w[c];
        }
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        size_t x = w[c] - width(t->names[c]);
        if (t->right[c])
            pad(out, x);
        fputs(t->names[c], out);
        if (c + 1 < t->n_cols)
            pad(out, (t->right[c] ? 0 : x) + 2);
    }
    fputc('\n', out);
    for (size_t c = 0; c < t->n_cols; c++) {
        for (size_t i = 0; i < w[c]; i++)
            fputc('-', out);
        if (c + 1 < t->n_cols)
            fputs("  ", out);
    }
    fputc('\n', out);
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            const char *s = t->cells[r * t->n_cols + c];
            size_t x = w[c] - width(s);
            if (t->right[c])
                pad(out, x);
            fputs(s ? s : "", out);
            if (c + 1 < t->n_cols)
                pad(out, (t->right[c] ? 0 : x) + 2);
        }
        fputc('\n', out);
    }
    free(w);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, f);
        vsnprintf(s, (size_t)n + 1, f, ap);
        va_end(ap);
    }
    return s;
}

/* ---- statements to tables or CSV ---- */

static qe_status sql_error(qe_store *st, int rc, const char *what)
{
    return qe_store_fail(st, rc, what);
}

static void csv_real(FILE *out, double v)
{
    if (isnan(v))
        return; /* SQLite has no NaN; be safe */
    if (isinf(v))
        fputs(v > 0 ? "inf" : "-inf", out);
    else
        fprintf(out, "%.17g", v);
}

static qe_status emit_csv(qe_store *st, sqlite3_stmt *s, FILE *out)
{
    int n = sqlite3_column_count(s);
    for (int c = 0; c < n; c++) {
        const char *name = sqlite3_column_name(s, c);
        if (c)
            fputc(',', out);
        csv_fwrite(out, name, strlen(name));
    }
    fputc('\n', out);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int c = 0; c < n; c++) {
            if (c)
                fputc(',', out);
            switch (sqlite3_column_type(s, c)) {
            case SQLITE_INTEGER:
                fprintf(out, "%lld", (long long)sqlite3_column_int64(s, c));
                break;
            case SQLITE_FLOAT: csv_real(out, sqlite3_column_double(s, c)); break;
            case SQLITE_TEXT: {
                const unsigned char *t = sqlite3_column_text(s, c);
                csv_fwrite(out, t, (size_t)sqlite3_column_bytes(s, c));
                break;
            }
            case SQLITE_BLOB: {
                const unsigned char *b = sqlite3_column_blob(s, c);
                int len = sqlite3_column_bytes(s, c);
                for (int i = 0; i < len; i++)
                    fprintf(out, "%02x", b[i]);
                break;
            }
            default: break; /* NULL: empty field */
            }
        }
        fputc('\n', out);
    }
    if (rc != SQLITE_DONE)
        return sql_error(st, rc, "reading rows");
    if (ferror(out))
        return qe_fail(QE_EIO, "writing CSV failed");
    return QE_OK;
}

static qe_status emit_table(qe_store *st, sqlite3_stmt *s, FILE *out)
{
    int n = sqlite3_column_count(s);
    struct table t;
    qe_status r = table_init(&t, (size_t)n);
    int *seen_text = calloc(n ? (size_t)n : 1, sizeof *seen_text);
    int *any_number = calloc(n ? (size_t)n : 1, sizeof *any_number);
    char **row = calloc(n ? (size_t)n : 1, sizeof *row);
    if (r == QE_OK && (!seen_text || !any_number || !row))
        r = qe_fail(QE_ENOMEM, "report: out of memory");
    for (int c = 0; r == QE_OK && c < n; c++) {
        const char *name = sqlite3_column_name(s, c);
        if (!(t.names[c] = escaped(name, strlen(name))))
            r = qe_fail(QE_ENOMEM, "report: out of memory");
    }
    int rc = SQLITE_DONE;
    while (r == QE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int c = 0; c < n; c++) {
            char *cell = NULL;
            switch (sqlite3_column_type(s, c)) {
            case SQLITE_INTEGER:
                cell = fmt("%lld", (long long)sqlite3_column_int64(s, c));
                break;
            case SQLITE_FLOAT: cell = fmt("%.10g", sqlite3_column_double(s, c)); break;
            case SQLITE_TEXT:
                cell = escaped((const char *)sqlite3_column_text(s, c),
                               (size_t)sqlite3_column_bytes(s, c));
                seen_text[c] = 1;
                break;
            case SQLITE_BLOB:
                cell = fmt("<blob %d bytes>", sqlite3_column_bytes(s, c));
                seen_text[c] = 1;
                break;
            default: cell = fmt("%s", ""); break;
            }
            if (sqlite3_column_type(s, c) != SQLITE_NULL)
                any_number[c] |= sqlite3_column_type(s, c) <= SQLITE_FLOAT;
            row[c] = cell;
            if (!cell)
                r = qe_fail(QE_ENOMEM, "report: out of memory");
        }
        if (r == QE_OK)
            r = table_add(&t, row);
        else
            for (int c = 0; c < n; c++)
                free(row[c]);
    }
    if (r == QE_OK && rc != SQLITE_DONE)
        r = sql_error(st, rc, "reading rows");
    if (r == QE_OK) {
        for (int c = 0; c < n; c++)
            t.right[c] = !seen_text[c] && any_number[c];
        table_print(&t, out);
        if (ferror(out))
            r = qe_fail(QE_EIO, "writing the table failed");
    }
    table_free(&t);
    free(seen_text);
    free(any_number);
    free(row);
    return r;
}

static qe_status emit(qe_store *st, sqlite3_stmt *s, qe_report_format f, FILE *out)
{
    return f == QE_REPORT_CSV ? emit_csv(st, s, out) : emit_table(st, s, out);
}

qe_status qe_report_query(qe_store *st, const char *sql, qe_report_format f, FILE *out)
{
    sqlite3 *db = qe_store_sqlite(st);
    sqlite3_stmt *s = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, &tail);
    if (rc != SQLITE_OK)
        return qe_fail(QE_EINVAL, "SQL: %s", sqlite3_errmsg(db));
    qe_status r = QE_OK;
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';'))
        tail++;
    if (!s)
        r = qe_fail(QE_EINVAL, "SQL: no statement");
    else if (tail && *tail)
        r = qe_fail(QE_EINVAL, "SQL: one statement at a time (extra text: '%.40s')", tail);
    else if (!sqlite3_stmt_readonly(s))
        r = qe_fail(QE_EINVAL, "SQL: only statements that read are allowed");
    else
        r = emit(st, s, f, out);
    sqlite3_finalize(s);
    return r;
}

/* ---- compare ---- */

static const char *const compare_cols =
    "model, dataset, n_ctx, weights, kv_k, kv_v, is_reference, ppl, ppl_err, delta_ppl_pct, "
    "kld_mean, kld_p99, same_top_pct, bits_per_weight, weight_bytes, tokens_per_s, chunks_done, "
    "n_chunks, run_key";

static const char *const compare_ref_sql =
    "WITH ref AS (SELECT run_key, dataset_sha256, n_ctx FROM runs WHERE run_key = ?1), "
    "pair AS (SELECT c.run_key, sum(c.nll_sum) AS s_q, sum(b.nll_sum) AS s_b, "
    "sum(c.n_scored) AS n FROM chunks c JOIN chunks b ON b.run_key = ?1 AND b.chunk = c.chunk "
    "GROUP BY c.run_key) "
    "SELECT s.model, s.dataset, s.n_ctx, s.weights, s.kv_k, s.kv_v, s.run_key = ?1 AS "
    "is_reference, s.ppl, s.ppl_err, CASE WHEN p.n > 0 THEN 100.0 * (exp((p.s_q - p.s_b) / p.n) "
    "- 1.0) END AS delta_ppl_pct, k.kld_mean, k.kld_p99, 100.0 * k.same_top AS same_top_pct, "
    "s.bits_per_weight, s.weight_bytes, s.tokens_per_s, s.chunks_done, s.n_chunks, s.run_key "
    "FROM v_run_summary s JOIN ref ON ref.dataset_sha256 = s.dataset_sha256 AND "
    "ref.n_ctx = s.n_ctx LEFT JOIN pair p ON p.run_key = s.run_key "
    "LEFT JOIN kld k ON k.run_key = s.run_key AND k.ref_run_key = ?1 "
    "ORDER BY s.run_key = ?1 DESC, s.model, s.weights, s.kv_k, s.kv_v";

/* The full key of the one run whose key starts with prefix. */
static qe_status resolve_run(qe_store *st, const char *prefix, char key[QE_STORE_KEY_HEX])
{
    size_t n = strlen(prefix);
    if (n < 4 || n > 64 || strspn(prefix, "0123456789abcdef") != n)
        return qe_fail(QE_EINVAL, "--ref '%s': expected 4 to 64 lower-case hex digits of a run key",
                       prefix);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(qe_store_sqlite(st),
                                "SELECT run_key FROM runs WHERE substr(run_key, 1, ?2) = ?1 "
                                "ORDER BY run_key LIMIT 2", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sql_error(st, rc, "finding the reference run");
    sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)n);
    int found = 0;
    qe_status r = QE_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (found++ == 0)
            snprintf(key, QE_STORE_KEY_HEX, "%s", (const char *)sqlite3_column_text(s, 0));
    }
    if (rc != SQLITE_DONE)
        r = sql_error(st, rc, "finding the reference run");
    else if (found == 0)
        r = qe_fail(QE_ENOTFOUND, "%s: no run key starts with '%s'", qe_store_path(st), prefix);
    else if (found > 1)
        r = qe_fail(QE_EINVAL, "--ref '%s' matches several runs: give more digits", prefix);
    sqlite3_finalize(s);
    return r;
}

static char *human_bytes(double b)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    return u ? fmt("%.2f %s", b, unit[u]) : fmt("%.0f B", b);
}

static const char *base_name(const char *p)
{
    const char *b = p ? strrchr(p, '/') : NULL;
    return b ? b + 1 : p ? p : "";
}

static char *num_cell(sqlite3_stmt *s, int c, const char *f, double scale)
{
    if (sqlite3_column_type(s, c) == SQLITE_NULL)
        return fmt("%s", "");
    return fmt(f, sqlite3_column_double(s, c) * scale);
}

static qe_status compare_table(qe_store *st, sqlite3_stmt *s, int quiet_empty, int *printed,
                               FILE *out)
{
    static const char *const names[] = {"model", "dataset", "n_ctx", "weights", "kv", "PPL",
                                        "ΔPPL", "KLD", "KLD 99%", "same top", "bpw", "size",
                                        "tok/s", "chunks", "run"};
    static const int right[] = {0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    enum { N = sizeof names / sizeof names[0] };
    struct table t;
    qe_status r = table_init(&t, N);
    for (int c = 0; r == QE_OK && c < N; c++) {
        t.right[c] = right[c];
        if (!(t.names[c] = strdup(names[c])))
            r = qe_fail(QE_ENOMEM, "report: out of memory");
    }
    int rc = SQLITE_DONE;
    while (r == QE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        char *row[N];
        const char *kk = (const char *)sqlite3_column_text(s, 4);
        const char *kv = (const char *)sqlite3_column_text(s, 5);
        const char *ds = (const char *)sqlite3_column_text(s, 1);
        int is_ref = sqlite3_column_int(s, 6);
        row[0] = escaped((const char *)sqlite3_column_text(s, 0),
                         (size_t)sqlite3_column_bytes(s, 0));
        row[1] = escaped(base_name(ds), strlen(base_name(ds)));
        row[2] = fmt("%d", sqlite3_column_int(s, 2));
        row[3] = fmt("%s", (const char *)sqlite3_column_text(s, 3));
        row[4] = kk && kv && strcmp(kk, kv) ? fmt("%s/%s", kk, kv) : fmt("%s", kk ? kk : "");
        row[5] = sqlite3_column_type(s, 7) == SQLITE_NULL ? fmt("%s", "")
                 : sqlite3_column_type(s, 8) == SQLITE_NULL
                     ? fmt("%.4f", sqlite3_column_double(s, 7))
                     : fmt("%.4f ± %.4f", sqlite3_column_double(s, 7), sqlite3_column_double(s, 8));
        row[6] = is_ref ? fmt("%s", "ref") : num_cell(s, 9, "%+.3f%%", 1);
        row[7] = num_cell(s, 10, "%.6f", 1);
        row[8] = num_cell(s, 11, "%.6f", 1);
        row[9] = num_cell(s, 12, "%.2f%%", 1);
        row[10] = num_cell(s, 13, "%.2f", 1);
        row[11] = sqlite3_column_type(s, 14) == SQLITE_NULL
                      ? fmt("%s", "") : human_bytes(sqlite3_column_double(s, 14));
        row[12] = num_cell(s, 15, "%.0f", 1);
        row[13] = sqlite3_column_type(s, 17) == SQLITE_NULL
                      ? fmt("%d/?", sqlite3_column_int(s, 16))
                      : fmt("%d/%d", sqlite3_column_int(s, 16), sqlite3_column_int(s, 17));
        row[14] = fmt("%.12s", (const char *)sqlite3_column_text(s, 18));
        r = table_add(&t, row);
    }
    if (r == QE_OK && rc != SQLITE_DONE)
        r = sql_error(st, rc, "reading the comparison");
    if (r == QE_OK) {
        if (t.n_rows == 0 && !quiet_empty)
            fprintf(out, "no runs in %s\n", qe_store_path(st));
        else if (t.n_rows)
            table_print(&t, out);
        *printed = t.n_rows > 0;
    }
    table_free(&t);
    return r;
}

/* ---- the generation table (v_gen_summary) ---- */

static const char *const gen_sql =
    "SELECT model, prompts, weights, kv_k, kv_v, is_reference, prompts_done, n_prompts, "
    "exact_match, mean_diverge, min_diverge, mean_n_gen, mean_decode_tps, mean_ttft_s, gen_key "
    "FROM v_gen_summary";

static qe_status gen_count(qe_store *st, int64_t *n)
{
    sqlite3_stmt *s = NULL;
    *n = 0;
    int rc = sqlite3_prepare_v2(qe_store_sqlite(st), "SELECT count(*) FROM gen_runs", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? QE_OK : sql_error(st, rc, "counting generation runs");
}

/* Per model x format: prompts stored, exact-match rate and first divergence
 * against the reference format, mean generated length, speed. */
static qe_status gen_table(qe_store *st, FILE *out)
{
    static const char *const names[] = {"model", "prompts", "weights", "kv", "done", "exact",
                                        "div mean", "div min", "gen len", "decode tok/s",
                                        "TTFT ms", "gen"};
    static const int right[] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    enum { N = sizeof names / sizeof names[0] };
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(qe_store_sqlite(st), gen_sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sql_error(st, rc, "preparing the generation table");
    struct table t;
    qe_status r = table_init(&t, N);
    for (int c = 0; r == QE_OK && c < N; c++) {
        t.right[c] = right[c];
        if (!(t.names[c] = strdup(names[c])))
            r = qe_fail(QE_ENOMEM, "report: out of memory");
    }
    while (r == QE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        char *row[N];
        const char *kk = (const char *)sqlite3_column_text(s, 3);
        const char *kv = (const char *)sqlite3_column_text(s, 4);
        const char *ds = (const char *)sqlite3_column_text(s, 1);
        int is_ref = sqlite3_column_int(s, 5);
        row[0] = escaped((const char *)sqlite3_column_text(s, 0),
                         (size_t)sqlite3_column_bytes(s, 0));
        row[1] = escaped(base_name(ds), strlen(base_name(ds)));
        row[2] = fmt("%s", (const char *)sqlite3_column_text(s, 2));
        row[3] = kk && kv && strcmp(kk, kv) ? fmt("%s/%s", kk, kv) : fmt("%s", kk ? kk : "");
        row[4] = fmt("%d/%d", sqlite3_column_int(s, 6), sqlite3_column_int(s, 7));
        row[5] = is_ref ? fmt("%s", "ref") : num_cell(s, 8, "%.1f%%", 100);
        row[6] = num_cell(s, 9, "%.1f", 1);
        row[7] = num_cell(s, 10, "%.0f", 1);
        row[8] = num_cell(s, 11, "%.1f", 1);
        row[9] = num_cell(s, 12, "%.1f", 1);
        row[10] = num_cell(s, 13, "%.1f", 1000);
        row[11] = fmt("%.12s", (const char *)sqlite3_column_text(s, 14));
        r = table_add(&t, row);
    }
    if (r == QE_OK && rc != SQLITE_DONE)
        r = sql_error(st, rc, "reading the generation table");
    if (r == QE_OK && t.n_rows) {
        fprintf(out, "generations (exact: prompts whose generated ids equal the reference's; "
                     "div: first differing position, over prompts that differ)\n");
        table_print(&t, out);
    }
    table_free(&t);
    sqlite3_finalize(s);
    return r;
}

qe_status qe_report_compare(qe_store *st, const char *ref_run, qe_report_format f, FILE *out)
{
    char key[QE_STORE_KEY_HEX];
    char sql[512];
    qe_status r = QE_OK;
    if (ref_run) {
        r = resolve_run(st, ref_run, key);
        if (r != QE_OK)
            return r;
    } else {
        snprintf(sql, sizeof sql, "SELECT %s FROM v_format_matrix", compare_cols);
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(qe_store_sqlite(st), ref_run ? compare_ref_sql : sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sql_error(st, rc, "preparing the comparison");
    if (ref_run)
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int64_t n_gen = 0;
    int printed = 0;
    if (f != QE_REPORT_CSV)
        r = gen_count(st, &n_gen);
    if (r == QE_OK)
        r = f == QE_REPORT_CSV ? emit_csv(st, s, out)
                               : compare_table(st, s, n_gen > 0, &printed, out);
    sqlite3_finalize(s);
    if (r == QE_OK && n_gen > 0) {
        if (printed)
            fputc('\n', out);
        r = gen_table(st, out);
    }
    return r;
}

/* ---- export ---- */

static const char *const export_names[] = {"runs", "tokens", "kld", "timings", "generations"};
static const char *const export_sql[] = {
    "SELECT * FROM v_run_summary ORDER BY model, dataset, n_ctx, weights, kv_k, kv_v",
    "SELECT run_key, chunk, pos, target, logprob, argmax, topk, kld FROM tokens "
    "ORDER BY run_key, chunk, pos",
    "SELECT * FROM v_kld ORDER BY model, dataset, n_ctx, weights, kv_k, kv_v",
    "SELECT t.run_key, m.name AS model, d.path AS dataset, r.weights, r.kv_k, r.kv_v, "
    "t.session_key, t.phase, t.seconds, t.n_tokens, t.n_calls FROM timings t "
    "JOIN runs r ON r.run_key = t.run_key JOIN models m ON m.sha256 = r.model_sha256 "
    "JOIN datasets d ON d.sha256 = r.dataset_sha256 ORDER BY t.run_key, t.session_key, t.phase",
    "SELECT m.name AS model, ds.path AS prompts, g.weights, g.kv_k, g.kv_v, p.prompt_index, "
    "p.prompt_sha256, p.n_prompt, p.n_gen, p.ids, p.text, p.finish, p.stop_index, p.seed, "
    "p.ttft_s, p.prefill_tps, p.decode_s, p.decode_tps, v.diverge_pos, p.gen_key, "
    "coalesce(g.ref_gen_key, g.gen_key) AS ref_gen_key, p.prompt_key FROM gen_prompts p "
    "JOIN gen_runs g ON g.gen_key = p.gen_key JOIN models m ON m.sha256 = g.model_sha256 "
    "JOIN datasets ds ON ds.sha256 = g.prompts_sha256 "
    "JOIN v_gen_divergence v ON v.prompt_key = p.prompt_key "
    "ORDER BY m.name, ds.path, g.weights, g.kv_k, g.kv_v, p.prompt_index",
};

qe_status qe_report_export_parse(const char *name, qe_export_what *out)
{
    for (int i = 0; i < 5; i++)
        if (name && !strcmp(name, export_names[i])) {
            *out = (qe_export_what)i;
            return QE_OK;
        }
    return qe_fail(QE_EINVAL, "--what '%s': expected runs, tokens, kld, timings or generations",
                   name ? name : "(null)");
}

qe_status qe_report_export(qe_store *st, qe_export_what what, FILE *out)
{
    if ((unsigned)what > QE_EXPORT_GENERATIONS)
        return qe_fail(QE_EINVAL, "export: unknown table %d", (int)what);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(qe_store_sqlite(st), export_sql[what], -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sql_error(st, rc, "preparing the export");
    qe_status r = emit_csv(st, s, out);
    sqlite3_finalize(s);
    return r;
}
