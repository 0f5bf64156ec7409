/* store_merge.c - qe_store_merge: fold a database written elsewhere (a
 * Slurm array task, another machine) into this one.
 *
 * The source is ATTACHed read-only (a file: URI with mode=ro, so merging
 * never writes to an input) and copied table by table with INSERT OR
 * IGNORE in one BEGIN IMMEDIATE transaction: every key is content-derived,
 * so equal keys mean equal things. Chunks are the unit: a chunk's token and
 * logit rows come from the same database as its chunk row. Bench rows (and
 * their per-kernel times) are copied the same way, by bench_key.
 *
 * Threading: as store.c (the handle's thread). Workload: a few merges of
 * databases up to a few GB; the copy runs inside SQLite.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "store.h"
#include "store_internal.h"

/* "file:PATH?mode=ro" with PATH percent-encoded (RFC 3986 unreserved and
 * '/' kept), so '?', '#' and '%' in a file name stay part of the name. */
static char *ro_uri(const char *path)
{
    size_t n = strlen(path);
    char *u = malloc(3 * n + 16);
    if (!u)
        return NULL;
    size_t o = (size_t)sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/._-~", *p))
            u[o++] = (char)*p;
        else
            o += (size_t)sprintf(u + o, "%%%02X", *p);
    }
    strcpy(u + o, "?mode=ro");
    return u;
}

/* SQLite's failure rc while doing what (a step of merging src_path), with
 * the source named first: the destination's own message names only it. A
 * constraint that fails (a foreign key, NOT NULL, CHECK) means the
 * source's rows are not ones qeval writes. */
static qe_status src_fail(qe_store *dst, const char *src_path, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return qe_fail(QE_ECORRUPT, "%s: %s: a row breaks qeval's schema (%s); nothing merged",
                       src_path, what, sqlite3_errmsg(dst->db));
    return qe_fail_prefix(qe_store_fail(dst, rc, what), "merging %s", src_path);
}

/* First column of the first row of sql, a step of merging src_path, as an
 * integer. */
static qe_status query_int(qe_store *st, const char *src_path, const char *sql, int64_t *out,
                           const char *what)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? QE_OK : src_fail(st, src_path, rc, what);
}

/* First column of the first row of sql (?1 bound to arg), a step of
 * merging src_path, as text into buf[cap]; "" when there is no row. The
 * source checks below ask for the first thing at fault this way. */
static qe_status query_text(qe_store *st, const char *src_path, const char *sql, int64_t arg,
                            char *buf, size_t cap, const char *what)
{
    sqlite3_stmt *s = NULL;
    buf[0] = '\0';
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(s) >= 1)
        rc = sqlite3_bind_int64(s, 1, arg);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(buf, cap, "%s", t ? (const char *)t : "");
        rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE) {
        qe_status r = src_fail(st, src_path, rc, what);
        sqlite3_finalize(s);
        return r;
    }
    sqlite3_finalize(s);
    return QE_OK;
}

/* Execute sql, a step of merging src_path; *changes gets the rows it
 * inserted (may be NULL). */
static qe_status exec_count(qe_store *st, const char *src_path, const char *sql,
                            int64_t *changes, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return src_fail(st, src_path, rc, what);
    if (changes)
        *changes += sqlite3_changes(st->db);
    return QE_OK;
}

/* The storage class qeval writes into a column declared decl (SQLite's
 * affinity rules), or NULL where it does not say. */
static const char *written_type(const char *decl)
{
    char u[64];
    size_t i = 0;
    for (; decl && decl[i] && i + 1 < sizeof u; i++)
        u[i] = (char)(decl[i] >= 'a' && decl[i] <= 'z' ? decl[i] - 32 : decl[i]);
    u[i] = '\0';
    if (strstr(u, "INT"))
        return "integer";
    if (strstr(u, "CHAR") || strstr(u, "CLOB") || strstr(u, "TEXT"))
        return "text";
    if (strstr(u, "BLOB"))
        return "blob";
    if (strstr(u, "REAL") || strstr(u, "FLOA") || strstr(u, "DOUB"))
        return "real";
    return NULL;
}

/* Every value of the source of the storage class its column's declared
 * type gives what qeval writes, or NULL: SQLite keeps text in an INTEGER
 * column, and readers take such a value as 0 (a chunk plan of 0, say).
 * And no NULL key: the primary key of a table with rowids takes one unless
 * declared NOT NULL, and a NULL never equals another, so INSERT OR IGNORE
 * would copy such a row on every merge (WITHOUT ROWID tables refuse them
 * themselves). One scan of each table; the first column at fault is
 * named. */
static qe_status check_values(qe_store *dst, const char *src_path)
{
    sqlite3_stmt *t = NULL;
    int rc = sqlite3_prepare_v2(
        dst->db,
        "SELECT name, sql NOT LIKE '%WITHOUT ROWID%' FROM main.sqlite_master WHERE type = "
        "'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
        -1, &t, NULL);
    char table[128] = "", bad[128] = "";
    qe_status r = QE_OK;
    while (r == QE_OK && !bad[0] && rc == SQLITE_OK && (rc = sqlite3_step(t)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(t, 0);
        const int rowids = sqlite3_column_int(t, 1);
        snprintf(table, sizeof table, "%s", name ? name : "");
        /* 'k' + column: a NULL key; 't' + column: another storage class */
        sqlite3_str *q = sqlite3_str_new(dst->db);
        sqlite3_str_appendall(q, "SELECT bad FROM (SELECT CASE");
        sqlite3_stmt *c = NULL;
        char *info = sqlite3_mprintf("SELECT name, type, pk FROM pragma_table_info(%Q, 'main')",
                                     table);
        rc = info ? sqlite3_prepare_v2(dst->db, info, -1, &c, NULL) : SQLITE_NOMEM;
        int n = 0;
        while (c && (rc = sqlite3_step(c)) == SQLITE_ROW) {
            const char *col = (const char *)sqlite3_column_text(c, 0);
            const char *want = written_type((const char *)sqlite3_column_text(c, 1));
            if (!col)
                continue;
            if (rowids && sqlite3_column_int(c, 2) > 0 && ++n)
                sqlite3_str_appendf(q, " WHEN \"%w\" IS NULL THEN 'k' || %Q", col, col);
            if (want && ++n)
                sqlite3_str_appendf(q, " WHEN typeof(\"%w\") NOT IN ('null', '%s') THEN 't' || %Q",
                                    col, want, col);
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_finalize(c);
        sqlite3_free(info);
        sqlite3_str_appendf(q, " END AS bad FROM src.\"%w\") WHERE bad IS NOT NULL LIMIT 1",
                            table);
        char *sql = sqlite3_str_finish(q);
        if (rc == SQLITE_OK && n && !sql)
            rc = SQLITE_NOMEM;
        if (rc == SQLITE_OK && n)
            r = query_text(dst, src_path, sql, 0, bad, sizeof bad, "reading the source's values");
        sqlite3_free(sql);
    }
    sqlite3_finalize(t);
    if (r != QE_OK)
        return r;
    if (bad[0] == 'k')
        return qe_fail(QE_ECORRUPT, "%s: table %s: a row without its key (%s is NULL)", src_path,
                       table, bad + 1);
    if (bad[0])
        return qe_fail(QE_ECORRUPT, "%s: table %s, column %s: a value of a type qeval does not "
                       "write there", src_path, table, bad + 1);
    if (rc != SQLITE_DONE)
        return src_fail(dst, src_path, rc, "reading the source's values");
    return QE_OK;
}

/* Rows qeval never writes, beyond their types (check_values): each rule a
 * query that describes the source's first such row in one line (?1 its
 * bound), refused whole as corrupt. */
static const struct {
    const char *sql;
    int64_t bound;
    const char *what;
} row_rules[] = {
    /* Every chunk inside its run's plan (the destination's where it has
       the run, else the source's): a resumed job refuses a run holding one
       past it, so merging it in would break the destination's run. */
    {"SELECT printf('run %.16s...: chunk %lld outside its plan of %lld chunks', c.run_key, "
     "c.chunk, min(coalesce(d.n_chunks, r.n_chunks, ?1), ?1)) FROM src.chunks c LEFT JOIN "
     "src.runs r ON r.run_key = c.run_key LEFT JOIN main.runs d ON d.run_key = c.run_key "
     "WHERE c.chunk < 0 OR c.chunk >= min(coalesce(d.n_chunks, r.n_chunks, ?1), ?1) LIMIT 1",
     QE_STORE_MAX_CHUNKS, "reading the source's chunks"},
    /* The counts readers add up in SQL within what qeval writes (C ints):
       a chunk's scored positions and top-1 hits, a prompt's generated
       tokens. With at most QE_STORE_MAX_CHUNKS chunks a run their sums stay
       far inside SQLite's 64-bit integers; one chunk scoring 2^63 - 1
       positions had made every comparison of the merged database fail with
       "integer overflow" (fuzz/fuzz_merge.c found it). */
    {"SELECT printf('run %.16s...: chunk %lld scores %lld positions with %lld top-1 hits "
     "(expected 0 <= hits <= positions <= %lld)', run_key, chunk, n_scored, n_top1, ?1) "
     "FROM src.chunks WHERE n_scored NOT BETWEEN 0 AND ?1 OR n_top1 NOT BETWEEN 0 AND n_scored "
     "LIMIT 1",
     INT32_MAX, "reading the source's chunks"},
    {"SELECT printf('generation %.16s...: prompt %lld generated %lld tokens (expected 0 .. "
     "%lld)', gen_key, prompt_index, n_gen, ?1) FROM src.gen_prompts WHERE n_gen NOT BETWEEN "
     "0 AND ?1 LIMIT 1",
     INT32_MAX, "reading the source's prompts"},
};

static qe_status check_rows(qe_store *dst, const char *src_path)
{
    char bad[200];
    for (size_t i = 0; i < sizeof row_rules / sizeof row_rules[0]; i++) {
        qe_status r = query_text(dst, src_path, row_rules[i].sql, row_rules[i].bound, bad,
                                 sizeof bad, row_rules[i].what);
        if (r != QE_OK)
            return r;
        if (bad[0])
            return qe_fail(QE_ECORRUPT, "%s: %s", src_path, bad);
    }
    return QE_OK;
}

static qe_status check_source(qe_store *dst, const char *src_path)
{
    int64_t app = 0, ver = 0;
    qe_status r =
        query_int(dst, src_path, "PRAGMA src.application_id", &app, "reading the source");
    if (r == QE_OK)
        r = query_int(dst, src_path, "PRAGMA src.user_version", &ver, "reading the source");
    if (r != QE_OK)
        return r;
    if (app != QE_STORE_APP_ID)
        return qe_fail(QE_ECORRUPT, "%s: not a qeval database (application_id 0x%08llx)",
                       src_path, (unsigned long long)app);
    if (ver > dst->version)
        return qe_fail(QE_EUNSUPPORTED, "%s: schema version %lld is newer than this qeval's (%d): "
                       "merge with a newer qeval", src_path, (long long)ver, dst->version);
    if (ver != dst->version)
        return qe_fail(QE_EUNSUPPORTED, "%s: schema version %lld, the destination has %d: "
                       "upgrade the older one first ('qeval merge --db FILE' with no input)",
                       src_path, (long long)ver, dst->version);
    /* The copy is SELECT * table by table, so each of the destination's
       tables must be in the source as the same migrations created it: a
       column renamed, moved or added by hand, or a view in a table's
       place, would put values under other columns' names. */
    char bad[128];
    r = query_text(dst, src_path,
                   "SELECT m.name FROM main.sqlite_master m WHERE m.type = 'table' AND m.name NOT "
                   "LIKE 'sqlite!_%' ESCAPE '!' AND NOT EXISTS (SELECT 1 FROM src.sqlite_master s "
                   "WHERE s.type = 'table' AND s.name = m.name AND s.sql IS m.sql) ORDER BY "
                   "m.name LIMIT 1",
                   0, bad, sizeof bad, "reading the source's schema");
    if (r != QE_OK)
        return r;
    if (bad[0])
        return qe_fail(QE_ECORRUPT, "%s: table %s is not the one schema version %lld defines "
                       "(changed by hand?)", src_path, bad, (long long)ver);
    r = check_values(dst, src_path);
    return r != QE_OK ? r : check_rows(dst, src_path);
}

/* The token rows of the chunks in temp.merge_new (numbered by seq from 1),
 * most of a merge's work: about a hundred statements of consecutive new
 * chunks each, so that a progress line (progress) can follow them.
 * *added gets the rows inserted. */
static qe_status copy_tokens(qe_store *dst, const char *src_path, int progress, int64_t *added)
{
    int64_t n_new = 0, total = 0;
    qe_status r = query_int(dst, src_path, "SELECT count(*) FROM temp.merge_new", &n_new,
                            "merging tokens");
    if (r == QE_OK && progress)
        r = query_int(dst, src_path,
                      "SELECT count(*) FROM temp.merge_new n JOIN src.tokens t ON "
                      "t.run_key = n.run_key AND t.chunk = n.chunk",
                      &total, "merging tokens");
    sqlite3_stmt *s = NULL;
    int rc = SQLITE_OK;
    if (r == QE_OK)
        rc = sqlite3_prepare_v2(dst->db,
                                "INSERT OR IGNORE INTO main.tokens SELECT t.* FROM temp.merge_new "
                                "n JOIN src.tokens t ON t.run_key = n.run_key AND t.chunk = "
                                "n.chunk WHERE n.seq > ?1 AND n.seq <= ?2",
                                -1, &s, NULL);
    char what[200];
    snprintf(what, sizeof what, "merging %s", src_path);
    qe_progress p;
    if (progress)
        qe_progress_begin(&p, what, (uint64_t)total);
    const int64_t step = n_new / 100 > 1 ? n_new / 100 : 1;
    int64_t done = 0;
    for (int64_t lo = 0; r == QE_OK && rc == SQLITE_OK && lo < n_new; lo += step) {
        sqlite3_bind_int64(s, 1, lo);
        sqlite3_bind_int64(s, 2, lo + step);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            break; /* the message is read before the statement goes */
        rc = SQLITE_OK;
        done += sqlite3_changes(dst->db);
        if (progress)
            qe_progress_update(&p, (uint64_t)done);
        sqlite3_reset(s);
    }
    if (r == QE_OK && rc != SQLITE_OK)
        r = src_fail(dst, src_path, rc, "merging");
    sqlite3_finalize(s);
    if (progress)
        qe_progress_end(&p, (uint64_t)done);
    *added += done;
    return r;
}

qe_status qe_store_merge(qe_store *dst, const char *src_path, unsigned flags,
                         qe_store_merge_stats *stats)
{
    qe_store_merge_stats tmp;
    if (!stats)
        stats = &tmp;
    memset(stats, 0, sizeof *stats);
    if (dst->readonly)
        return qe_fail(QE_EINVAL, "%s: opened read-only: cannot merge into it", dst->path);
    struct stat ss, sd;
    if (stat(src_path, &ss) != 0)
        return qe_fail(QE_EIO, "%s: cannot open: %s", src_path, strerror(errno));
    if (!S_ISREG(ss.st_mode))
        return qe_fail(QE_EIO, "%s: not a regular file", src_path);
    if (stat(dst->path, &sd) == 0 && sd.st_dev == ss.st_dev && sd.st_ino == ss.st_ino)
        return qe_fail(QE_EINVAL, "%s: is the destination database itself", src_path);

    char *uri = ro_uri(src_path);
    if (!uri)
        return qe_fail(QE_ENOMEM, "%s: out of memory", src_path);
    int attached = 0, in_tx = 0;
    qe_status r = QE_OK;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(dst->db, "ATTACH DATABASE ?1 AS src", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, uri, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        /* the file was there (stat above): unless reading it failed, its
           bytes are what SQLite refused ("unsupported file format" from a
           header it does not know is SQLITE_ERROR) */
        const int e = rc & 0xff;
        const int io = e == SQLITE_IOERR || e == SQLITE_CANTOPEN || e == SQLITE_PERM ||
                       e == SQLITE_BUSY || e == SQLITE_LOCKED || e == SQLITE_FULL;
        r = qe_fail(e == SQLITE_NOMEM ? QE_ENOMEM : io ? QE_EIO : QE_ECORRUPT,
                    "%s: cannot attach: %s", src_path,
                    sqlite3_errmsg(dst->db));
        goto done;
    }
    attached = 1;
    r = check_source(dst, src_path);
    if (r != QE_OK)
        goto done;
    r = qe_store__begin(dst, "merging");
    if (r != QE_OK)
        goto done;
    in_tx = 1;

    /* Whole rows keyed by content: the source's copy adds what is missing. */
    const struct {
        const char *sql;
        int64_t *count;
    } plain[] = {
        {"INSERT OR IGNORE INTO main.models SELECT * FROM src.models", &stats->models},
        {"INSERT OR IGNORE INTO main.datasets SELECT * FROM src.datasets", &stats->datasets},
        {"INSERT OR IGNORE INTO main.dataset_skipped SELECT * FROM src.dataset_skipped", NULL},
        {"INSERT OR IGNORE INTO main.dataset_tokens SELECT * FROM src.dataset_tokens", NULL},
        {"INSERT OR IGNORE INTO main.sessions SELECT * FROM src.sessions", &stats->sessions},
    };
    for (size_t i = 0; r == QE_OK && i < sizeof plain / sizeof plain[0]; i++)
        r = exec_count(dst, src_path, plain[i].sql, plain[i].count, "merging");
    if (r != QE_OK)
        goto done;

    /* Runs in both: keep the earliest start, the latest end, any plan. */
    r = query_int(dst, src_path, "SELECT count(*) FROM src.runs s WHERE NOT EXISTS "
                       "(SELECT 1 FROM main.runs d WHERE d.run_key = s.run_key)",
                  &stats->runs, "merging runs");
    if (r == QE_OK)
        r = exec_count(
            dst, src_path,
            "INSERT INTO main.runs SELECT * FROM src.runs WHERE true "
            "ON CONFLICT (run_key) DO UPDATE SET "
            "n_tokens = coalesce(runs.n_tokens, excluded.n_tokens), "
            "n_chunks = coalesce(runs.n_chunks, excluded.n_chunks), "
            "weight_bytes = coalesce(runs.weight_bytes, excluded.weight_bytes), "
            "ref_run_key = coalesce(runs.ref_run_key, excluded.ref_run_key), "
            "started_at = min(runs.started_at, excluded.started_at), "
            "ended_at = CASE WHEN runs.ended_at IS NULL OR excluded.ended_at IS NULL "
            "THEN coalesce(runs.ended_at, excluded.ended_at) "
            "ELSE max(runs.ended_at, excluded.ended_at) END",
            NULL, "merging runs");
    if (r != QE_OK)
        goto done;

    /* Chunks: new ones come with their tokens and logits; a chunk in both
     * keeps the destination's rows (a conflict when the sums differ). */
    r = query_int(dst, src_path, "SELECT count(*) FROM src.chunks s JOIN main.chunks d "
                       "ON d.run_key = s.run_key AND d.chunk = s.chunk "
                       "WHERE s.nll_sum IS NOT d.nll_sum OR s.n_scored != d.n_scored",
                  &stats->conflicts, "merging chunks");
    const struct {
        const char *sql;
        int64_t *count;
    } chunked[] = {
        {"CREATE TEMP TABLE merge_new (seq INTEGER PRIMARY KEY, run_key TEXT, chunk INTEGER, "
         "UNIQUE (run_key, chunk))", NULL},
        {"INSERT INTO temp.merge_new (run_key, chunk) SELECT run_key, chunk FROM src.chunks s "
         "WHERE NOT EXISTS (SELECT 1 FROM main.chunks d WHERE d.run_key = s.run_key AND "
         "d.chunk = s.chunk) ORDER BY run_key, chunk", NULL},
        {"INSERT INTO main.chunks SELECT s.* FROM src.chunks s "
         "JOIN temp.merge_new n ON n.run_key = s.run_key AND n.chunk = s.chunk", &stats->chunks},
        {NULL, NULL}, /* their tokens: copy_tokens */
        {"INSERT OR IGNORE INTO main.logits SELECT l.* FROM src.logits l "
         "JOIN temp.merge_new n ON n.run_key = l.run_key AND n.chunk = l.chunk", NULL},
        {"DROP TABLE temp.merge_new", NULL},
        /* a KLD summary over more tokens replaces one over fewer */
        {"DELETE FROM main.kld WHERE run_key IN (SELECT s.run_key FROM src.kld s "
         "JOIN main.kld d ON d.run_key = s.run_key WHERE s.n > d.n)", NULL},
        {"INSERT OR IGNORE INTO main.kld SELECT * FROM src.kld", &stats->kld},
        {"INSERT OR IGNORE INTO main.timings SELECT * FROM src.timings", NULL},
        /* a run whose planned chunks are all here now is done */
        {"UPDATE main.runs SET status = 'done' WHERE status != 'done' AND n_chunks IS NOT NULL "
         "AND (SELECT count(*) FROM main.chunks c WHERE c.run_key = runs.run_key) >= n_chunks",
         NULL},
    };
    for (size_t i = 0; r == QE_OK && i < sizeof chunked / sizeof chunked[0]; i++)
        r = chunked[i].sql
                ? exec_count(dst, src_path, chunked[i].sql, chunked[i].count, "merging")
                : copy_tokens(dst, src_path, flags & QE_STORE_MERGE_PROGRESS, &stats->tokens);

    /* Speed measurements (schemas/004_bench.sql): bench_key is the SHA-256
     * of the row's content, so a row in both is the same measurement; a
     * row's kernel times come after it (they reference it). */
    if (r == QE_OK)
        r = exec_count(dst, src_path, "INSERT OR IGNORE INTO main.bench SELECT * FROM src.bench",
                       &stats->bench, "merging bench rows");
    if (r == QE_OK)
        r = exec_count(dst, src_path,
                       "INSERT OR IGNORE INTO main.bench_kernels SELECT * FROM src.bench_kernels",
                       NULL, "merging bench rows");

    /* Generation runs (schemas/005_generate.sql): a prompt row is written
     * with all its tokens, so a prompt's gen_tokens rows are those of the
     * database its gen_prompts row comes from; a prompt in both keeps dst's. */
    const char *const gen_sql[] = {
        "INSERT OR IGNORE INTO main.gen_runs SELECT * FROM src.gen_runs",
        "UPDATE main.gen_runs SET ref_gen_key = (SELECT s.ref_gen_key FROM src.gen_runs s "
        "WHERE s.gen_key = gen_runs.gen_key) WHERE ref_gen_key IS NULL",
        "CREATE TEMP TABLE merge_gen_new (prompt_key TEXT PRIMARY KEY) WITHOUT ROWID",
        "INSERT INTO temp.merge_gen_new SELECT prompt_key FROM src.gen_prompts s WHERE NOT EXISTS "
        "(SELECT 1 FROM main.gen_prompts d WHERE d.prompt_key = s.prompt_key)",
        "INSERT INTO main.gen_prompts SELECT s.* FROM src.gen_prompts s "
        "JOIN temp.merge_gen_new n ON n.prompt_key = s.prompt_key",
        "INSERT OR IGNORE INTO main.gen_tokens SELECT t.* FROM src.gen_tokens t "
        "JOIN temp.merge_gen_new n ON n.prompt_key = t.prompt_key",
        "DROP TABLE temp.merge_gen_new",
        "INSERT OR IGNORE INTO main.gen_steps SELECT * FROM src.gen_steps",
        "UPDATE main.gen_runs SET status = 'done' WHERE status != 'done' AND "
        "(SELECT count(*) FROM main.gen_prompts p WHERE p.gen_key = gen_runs.gen_key) >= n_prompts",
    };
    int64_t *gen_count[] = {&stats->gen_runs, NULL, NULL, NULL, &stats->gen_prompts, NULL, NULL,
                            NULL, NULL};
    for (size_t i = 0; r == QE_OK && i < sizeof gen_sql / sizeof gen_sql[0]; i++)
        r = exec_count(dst, src_path, gen_sql[i], gen_count[i], "merging generations");
    if (r == QE_OK && (r = qe_store__commit(dst, "merging")) != QE_OK)
        r = qe_fail_prefix(r, "merging %s", src_path);
    if (r == QE_OK)
        in_tx = 0;
done:
    if (in_tx)
        qe_store__rollback(dst);
    if (r != QE_OK)
        sqlite3_exec(dst->db, "DROP TABLE IF EXISTS temp.merge_new", NULL, NULL, NULL);
    if (r != QE_OK)
        sqlite3_exec(dst->db, "DROP TABLE IF EXISTS temp.merge_gen_new", NULL, NULL, NULL);
    if (attached)
        sqlite3_exec(dst->db, "DETACH DATABASE src", NULL, NULL, NULL);
    free(uri);
    return r;
}
