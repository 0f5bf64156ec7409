/* fuzz_merge.c - libFuzzer harness for `qeval merge`'s inputs (`make
 * fuzz`): results databases written elsewhere, which a user merges without
 * reading them first.
 *
 * Byte-level mutations of a SQLite file mostly give pages SQLite refuses,
 * so an input here is a list of edits to a real database (FUZZ_MERGE_SEED,
 * default build-fuzz/merge-seed.db: runs with chunks, tokens, logits and a
 * KLD summary, generations and bench rows, which `make fuzz` writes with
 * fuzz/merge-seed*.ini): values set to NULL, numbers, text, blobs or
 * another row's value; rows deleted or copied under a changed column;
 * columns renamed, swapped or added, tables dropped or replaced by views;
 * the application id or schema version changed; bytes of the file
 * overwritten. CHECK and foreign-key constraints are off while editing,
 * as in any tool a user may have touched the file with.
 *
 * The edited file is opened as it is and read (its own results database
 * damaged: every reader below must work or explain in one line), or merged
 * into a new database (or one holding the seed already: the conflict
 * path). A refused merge must say why with a
 * malformed- or unsupported-input status in one line naming the source,
 * and leave the destination as it was. An accepted one must give a
 * database that passes SQLite's integrity and foreign-key checks, that
 * merging the same file again leaves as it is, and whose readers (the
 * comparison table, every CSV export, the stored logits, the resume and
 * generation bookkeeping) work on it. Broken promises trap.
 *
 * Threading: libFuzzer's single thread.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "report.h"
#include "store.h"

#define MAX_TABLES 32
#define MAX_COLS 64

typedef struct {
    char name[64];
    int n_cols;
    char col[MAX_COLS][64];
    char pk[256]; /* "a, b": the primary key's columns, or "rowid" */
} table_info;

static char seed_path[4096], src[4200], dst[4200];
static unsigned char *seed;
static size_t seed_len;
static table_info tables[MAX_TABLES];
static int n_tables;
static FILE *devnull;

/* Read the seed's tables, their columns and keys, once. */
static void read_tables(sqlite3 *db)
{
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name "
                                 "NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
                             -1, &s, NULL) == SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW && n_tables < MAX_TABLES)
        snprintf(tables[n_tables++].name, sizeof tables[0].name, "%s",
                 (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    for (int t = 0; t < n_tables; t++) {
        table_info *ti = &tables[t];
        char sql[160];
        snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", ti->name);
        CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
        char pk[8][64];
        int n_pk = 0;
        while (sqlite3_step(s) == SQLITE_ROW && ti->n_cols < MAX_COLS) {
            const char *c = (const char *)sqlite3_column_text(s, 1);
            snprintf(ti->col[ti->n_cols++], sizeof ti->col[0], "%s", c);
            const int k = sqlite3_column_int(s, 5);
            if (k >= 1 && k <= 8) {
                snprintf(pk[k - 1], sizeof pk[0], "%s", c);
                n_pk = k > n_pk ? k : n_pk;
            }
        }
        sqlite3_finalize(s);
        size_t o = 0;
        for (int k = 0; k < n_pk; k++)
            o += (size_t)snprintf(ti->pk + o, sizeof ti->pk - o, "%s%s", k ? ", " : "", pk[k]);
        if (!n_pk)
            snprintf(ti->pk, sizeof ti->pk, "rowid");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *p = getenv("FUZZ_MERGE_SEED");
    snprintf(seed_path, sizeof seed_path, "%s", p && *p ? p : "build-fuzz/merge-seed.db");
    FILE *f = fopen(seed_path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_merge: %s: cannot open (make fuzz writes it)\n", seed_path);
        exit(1);
    }
    CHECK(fseek(f, 0, SEEK_END) == 0);
    seed_len = (size_t)ftell(f);
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    seed = malloc(seed_len);
    CHECK(seed && fread(seed, 1, seed_len, f) == seed_len);
    fclose(f);
    sqlite3 *db;
    CHECK(sqlite3_open_v2(seed_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    read_tables(db);
    sqlite3_close(db);
    CHECK(n_tables > 0);
    fuzz_tmp(src, sizeof src, "merge-src.db");
    fuzz_tmp(dst, sizeof dst, "merge-dst.db");
    devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    return 0;
}

/* ---- the edit list ---- */

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned take(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t take64(reader *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | take(r);
    return v;
}

/* Bind parameter i of s to a value the input chooses. */
static void bind_value(sqlite3_stmt *s, int i, reader *r)
{
    char buf[128];
    const unsigned kind = take(r) % 8;
    size_t n;
    switch (kind) {
    case 0: sqlite3_bind_null(s, i); break;
    case 1: sqlite3_bind_int64(s, i, (int8_t)take(r)); break;
    case 2: sqlite3_bind_int64(s, i, (int64_t)take64(r)); break;
    case 3: {
        const uint64_t u = take64(r);
        double d;
        memcpy(&d, &u, sizeof d);
        sqlite3_bind_double(s, i, d);
        break;
    }
    case 4:
    case 5:
        n = take(r) % sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)take(r);
        if (kind == 4)
            sqlite3_bind_text(s, i, buf, (int)n, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(s, i, buf, (int)n, SQLITE_TRANSIENT);
        break;
    case 6: /* a well-formed key that names nothing */
        for (int k = 0; k < 64; k++)
            buf[k] = "0123456789abcdef"[take(r) % 16];
        sqlite3_bind_text(s, i, buf, 64, SQLITE_TRANSIENT);
        break;
    default: sqlite3_bind_int64(s, i, take(r) & 1 ? INT64_MAX : INT64_MIN); break;
    }
}

/* "WHERE (pk) = (SELECT pk FROM t LIMIT 1 OFFSET ?k)": one row of t. */
static int where_row(char *b, size_t cap, const table_info *t, int k)
{
    return snprintf(b, cap, " WHERE (%s) = (SELECT %s FROM %s LIMIT 1 OFFSET ?%d)", t->pk, t->pk,
                    t->name, k);
}

/* Run sql (parameters from the input: ?1 a value, ?2 a row, ?3 another
 * row); an edit SQLite refuses is simply not made. */
static void run_edit(sqlite3 *db, const char *sql, reader *r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return;
    const int np = sqlite3_bind_parameter_count(s);
    if (np >= 1)
        bind_value(s, 1, r);
    for (int i = 2; i <= np; i++)
        sqlite3_bind_int(s, i, (int)(take(r) % 64));
    while (sqlite3_step(s) == SQLITE_ROW)
        ;
    sqlite3_finalize(s);
}

typedef struct {
    uint32_t at;
    uint8_t v;
} patch;

static void edit(sqlite3 *db, reader *r, patch *pt, int *n_pt)
{
    const unsigned op = take(r) % 10;
    const table_info *t = &tables[take(r) % (unsigned)n_tables];
    const char *c = t->col[take(r) % (unsigned)t->n_cols];
    const char *c2 = t->col[take(r) % (unsigned)t->n_cols];
    char sql[1400], w[400];
    size_t o;
    switch (op) {
    case 0:
    case 1:
    case 2: /* a value */
        where_row(w, sizeof w, t, 2);
        snprintf(sql, sizeof sql, "UPDATE %s SET %s = ?1%s", t->name, c, w);
        run_edit(db, sql, r);
        break;
    case 3: /* another row's value of the column (a key repeated) */
        where_row(w, sizeof w, t, 2);
        snprintf(sql, sizeof sql,
                 "UPDATE %s SET %s = (SELECT %s FROM %s LIMIT 1 OFFSET ?3)%s", t->name, c, c,
                 t->name, w);
        run_edit(db, sql, r);
        break;
    case 4: /* a row gone */
        where_row(w, sizeof w, t, 2);
        snprintf(sql, sizeof sql, "DELETE FROM %s%s", t->name, w);
        run_edit(db, sql, r);
        break;
    case 5: /* a row copied with one column changed */
        o = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s SELECT ", t->name);
        for (int i = 0; i < t->n_cols; i++)
            o += (size_t)snprintf(sql + o, sizeof sql - o, "%s%s", i ? ", " : "",
                                  t->col[i] == c ? "?1" : t->col[i]);
        where_row(w, sizeof w, t, 2);
        snprintf(sql + o, sizeof sql - o, " FROM %s%s", t->name, w);
        run_edit(db, sql, r);
        break;
    case 6: /* the schema */
        switch (take(r) % 5) {
        case 0:
            snprintf(sql, sizeof sql,
                     "ALTER TABLE %s RENAME COLUMN %s TO fz_tmp; ALTER TABLE %s RENAME COLUMN %s "
                     "TO %s; ALTER TABLE %s RENAME COLUMN fz_tmp TO %s",
                     t->name, c, t->name, c2, c, t->name, c2);
            break;
        case 1: snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN fz_extra", t->name); break;
        case 2: snprintf(sql, sizeof sql, "DROP TABLE %s", t->name); break;
        case 3:
            snprintf(sql, sizeof sql,
                     "ALTER TABLE %s RENAME TO fz_old; CREATE VIEW %s AS SELECT * FROM fz_old",
                     t->name, t->name);
            break;
        default: snprintf(sql, sizeof sql, "ALTER TABLE %s DROP COLUMN %s", t->name, c); break;
        }
        sqlite3_exec(db, sql, NULL, NULL, NULL);
        break;
    case 7: /* the header's application id or schema version, now and then */
        if (take(r) < 24) {
            snprintf(sql, sizeof sql, "PRAGMA %s = %d",
                     take(r) & 1 ? "application_id" : "user_version", (int)(int8_t)take(r));
            sqlite3_exec(db, sql, NULL, NULL, NULL);
        }
        break;
    default: /* a byte of the file, after the edits */
        if (*n_pt < 16) {
            pt[*n_pt].at = (uint32_t)take(r) << 16 | (uint32_t)take(r) << 8 | take(r);
            pt[(*n_pt)++].v = (uint8_t)take(r);
        }
        break;
    }
}

/* ---- the checks ---- */

static int64_t q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
}

/* Rows in all of the destination's tables. */
static int64_t total_rows(sqlite3 *db)
{
    int64_t n = 0;
    for (int t = 0; t < n_tables; t++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM main.%s", tables[t].name);
        n += q_int(db, sql);
    }
    return n;
}

static void unlink_db(const char *p)
{
    static const char *const sfx[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        char b[4300];
        snprintf(b, sizeof b, "%s%s", p, sfx[i]);
        unlink(b);
    }
}

/* s is what a reader promises: QE_OK where strict (a merged database,
 * which passed merge's checks), else QE_OK or a failure explained in one
 * line. */
static void fine(qe_status s, int strict)
{
    if (s == QE_OK || (!strict && qe_errmsg()[0] && strchr(qe_errmsg(), '\n') == NULL))
        return;
    fprintf(stderr, "fuzz_merge: a reader failed (%s): %s\n", qe_status_str(s), qe_errmsg());
    CHECK(0);
}

/* Prepare sql on db: where strict it must compile (the tables are
 * qeval's); elsewhere a dropped table just skips the check. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql, int strict)
{
    sqlite3_stmt *s = NULL;
    const int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    CHECK(rc == SQLITE_OK || !strict);
    return rc == SQLITE_OK ? s : NULL;
}

/* What users read from a results database works on it: the comparison
 * table, every CSV export, the stored logits, the resume and generation
 * bookkeeping. */
static void read_back(const char *path, int strict)
{
    qe_store *st = NULL;
    qe_status r = qe_store_open(path, QE_STORE_READONLY, 0, &st);
    fine(r, strict);
    if (r != QE_OK)
        return;
    fine(qe_report_compare(st, NULL, QE_REPORT_TABLE, devnull), strict);
    fine(qe_report_compare(st, NULL, QE_REPORT_CSV, devnull), strict);
    for (int w = QE_EXPORT_RUNS; w <= QE_EXPORT_GENERATIONS; w++)
        fine(qe_report_export(st, (qe_export_what)w, devnull), strict);
    sqlite3 *db = qe_store_sqlite(st);
    /* stored logits decode or are refused as corrupt (where a reader can
       ask for them: positions are ints) */
    sqlite3_stmt *s = prep(db,
                           "SELECT run_key, chunk, pos FROM logits WHERE pos BETWEEN 0 AND "
                           "2147483647 LIMIT 40",
                           strict);
    while (s && sqlite3_step(s) == SQLITE_ROW) {
        float *v = NULL;
        int nv = 0;
        const char *rk = (const char *)sqlite3_column_text(s, 0);
        r = qe_store_get_logits(st, rk ? rk : "", sqlite3_column_int64(s, 1),
                                sqlite3_column_int(s, 2), &v, &nv);
        if (strict)
            CHECK(r == QE_OK || r == QE_ECORRUPT);
        fine(r == QE_ECORRUPT ? QE_OK : r, strict);
        CHECK(r != QE_OK || (v && nv > 0));
        CHECK(strchr(qe_errmsg(), '\n') == NULL);
        free(v);
    }
    sqlite3_finalize(s);
    /* each run's stored chunks, as a resumed job reads them */
    s = prep(db, "SELECT run_key FROM runs", strict);
    while (s && sqlite3_step(s) == SQLITE_ROW) {
        qe_store_resume res;
        const char *rk = (const char *)sqlite3_column_text(s, 0);
        r = qe_store_run_resume(st, rk ? rk : "", &res);
        fine(r, strict);
        if (r == QE_OK) {
            CHECK(res.n_done >= 0 && res.n_done <= res.done_len);
            qe_store_resume_free(&res);
        }
    }
    sqlite3_finalize(s);
    s = prep(db, "SELECT gen_key, n_prompts FROM gen_runs", strict);
    while (s && sqlite3_step(s) == SQLITE_ROW) {
        uint8_t *done = NULL;
        size_t n_done = 0;
        const int64_t np = sqlite3_column_int64(s, 1);
        const char *gk = (const char *)sqlite3_column_text(s, 0);
        fine(qe_store_gen_stored(st, gk ? gk : "", (size_t)(np > 0 && np < 4096 ? np : 1), &done,
                                 &n_done),
             strict);
        free(done);
    }
    sqlite3_finalize(s);
    qe_store_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    const unsigned mode = take(&r);
    unlink_db(src);
    fuzz_put(src, seed, seed_len);
    sqlite3 *db;
    CHECK(sqlite3_open(src, &db) == SQLITE_OK);
    sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1", NULL, NULL, NULL);
    patch pt[16];
    int n_pt = 0;
    for (int i = 0; i < 24 && r.n; i++)
        edit(db, &r, pt, &n_pt);
    CHECK(sqlite3_close(db) == SQLITE_OK);
    if (n_pt) {
        FILE *f = fopen(src, "r+b");
        CHECK(f != NULL);
        for (int i = 0; i < n_pt; i++) {
            CHECK(fseek(f, (long)(pt[i].at % seed_len), SEEK_SET) == 0);
            CHECK(fputc(pt[i].v, f) != EOF);
        }
        CHECK(fclose(f) == 0);
    }
    if (mode & 2) { /* opened as it is, as a job resuming into it or a report would */
        read_back(src, 0);
        return 0;
    }

    unlink_db(dst);
    qe_store *st;
    CHECK(qe_store_open(dst, 0, 0, &st) == QE_OK);
    if (mode & 1) /* the seed first: the edited rows meet their originals */
        CHECK(qe_store_merge(st, seed_path, 0, NULL) == QE_OK);
    sqlite3 *ddb = qe_store_sqlite(st);
    const int64_t before = total_rows(ddb);
    qe_store_merge_stats ms;
    const qe_status s = qe_store_merge(st, src, 0, &ms);
    if (s != QE_OK) {
        if (s != QE_ECORRUPT && s != QE_EUNSUPPORTED && s != QE_ENOMEM) {
            fprintf(stderr, "fuzz_merge: refused as %s: %s\n", qe_status_str(s), qe_errmsg());
            CHECK(0);
        }
        CHECK(strstr(qe_errmsg(), src) != NULL);
        CHECK(strchr(qe_errmsg(), '\n') == NULL);
        CHECK(total_rows(ddb) == before);
        qe_store_close(st);
        return 0;
    }
    /* merging it again adds nothing */
    const int64_t after = total_rows(ddb);
    CHECK(qe_store_merge(st, src, 0, &ms) == QE_OK);
    CHECK(ms.models + ms.datasets + ms.sessions + ms.runs + ms.chunks + ms.tokens + ms.kld +
              ms.bench + ms.gen_runs + ms.gen_prompts ==
          0);
    CHECK(total_rows(ddb) == after);
    CHECK(q_int(ddb, "SELECT count(*) FROM pragma_foreign_key_check") == 0);
    sqlite3_stmt *ic;
    CHECK(sqlite3_prepare_v2(ddb, "PRAGMA integrity_check", -1, &ic, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(ic) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(ic, 0), "ok") == 0);
    sqlite3_finalize(ic);
    qe_store_close(st);
    read_back(dst, 1);
    return 0;
}
