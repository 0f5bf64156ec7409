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

#include "store.h"
#include "store_internal.h"

#define APP_ID 0x71657661

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

/* First column of the first row of sql as an integer. */
static qe_status query_int(qe_store *st, const char *sql, int64_t *out, const char *what)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? QE_OK : qe_store_fail(st, rc, what);
}

/* Execute sql; *changes gets the rows it inserted (may be NULL). */
static qe_status exec_count(qe_store *st, const char *sql, int64_t *changes, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return qe_store_fail(st, rc, what);
    if (changes)
        *changes += sqlite3_changes(st->db);
    return QE_OK;
}

static qe_status check_source(qe_store *dst, const char *src_path)
{
    int64_t app = 0, ver = 0;
    qe_status r = query_int(dst, "PRAGMA src.application_id", &app, "reading the source");
    if (r == QE_OK)
        r = query_int(dst, "PRAGMA src.user_version", &ver, "reading the source");
    if (r != QE_OK)
        return qe_fail_prefix(r, "merging %s", src_path);
    if (app != APP_ID)
        return qe_fail(QE_ECORRUPT, "%s: not a qeval database (application_id 0x%08llx)",
                       src_path, (unsigned long long)app);
    if (ver > dst->version)
        return qe_fail(QE_EUNSUPPORTED, "%s: schema version %lld is newer than this qeval's (%d): "
                       "merge with a newer qeval", src_path, (long long)ver, dst->version);
    if (ver != dst->version)
        return qe_fail(QE_EUNSUPPORTED, "%s: schema version %lld, the destination has %d: "
                       "upgrade the older one first ('qeval merge --db FILE' with no input)",
                       src_path, (long long)ver, dst->version);
    return QE_OK;
}

qe_status qe_store_merge(qe_store *dst, const char *src_path, qe_store_merge_stats *stats)
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
        int bad = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT;
        r = qe_fail(bad ? QE_ECORRUPT : QE_EIO, "%s: cannot attach: %s", src_path,
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
        r = exec_count(dst, plain[i].sql, plain[i].count, "merging");
    if (r != QE_OK)
        goto done;

    /* Runs in both: keep the earliest start, the latest end, any plan. */
    r = query_int(dst, "SELECT count(*) FROM src.runs s WHERE NOT EXISTS "
                       "(SELECT 1 FROM main.runs d WHERE d.run_key = s.run_key)",
                  &stats->runs, "merging runs");
    if (r == QE_OK)
        r = exec_count(
            dst,
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
    r = query_int(dst, "SELECT count(*) FROM src.chunks s JOIN main.chunks d "
                       "ON d.run_key = s.run_key AND d.chunk = s.chunk "
                       "WHERE s.nll_sum IS NOT d.nll_sum OR s.n_scored != d.n_scored",
                  &stats->conflicts, "merging chunks");
    const struct {
        const char *sql;
        int64_t *count;
    } chunked[] = {
        {"CREATE TEMP TABLE merge_new (run_key TEXT, chunk INTEGER, "
         "PRIMARY KEY (run_key, chunk)) WITHOUT ROWID", NULL},
        {"INSERT INTO temp.merge_new SELECT run_key, chunk FROM src.chunks s WHERE NOT EXISTS "
         "(SELECT 1 FROM main.chunks d WHERE d.run_key = s.run_key AND d.chunk = s.chunk)", NULL},
        {"INSERT INTO main.chunks SELECT s.* FROM src.chunks s "
         "JOIN temp.merge_new n ON n.run_key = s.run_key AND n.chunk = s.chunk", &stats->chunks},
        {"INSERT OR IGNORE INTO main.tokens SELECT t.* FROM src.tokens t "
         "JOIN temp.merge_new n ON n.run_key = t.run_key AND n.chunk = t.chunk", &stats->tokens},
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
        r = exec_count(dst, chunked[i].sql, chunked[i].count, "merging");

    /* Speed measurements (schemas/004_bench.sql): bench_key is the SHA-256
     * of the row's content, so a row in both is the same measurement; a
     * row's kernel times come after it (they reference it). */
    if (r == QE_OK)
        r = exec_count(dst, "INSERT OR IGNORE INTO main.bench SELECT * FROM src.bench",
                       &stats->bench, "merging bench rows");
    if (r == QE_OK)
        r = exec_count(dst, "INSERT OR IGNORE INTO main.bench_kernels SELECT * FROM src.bench_kernels",
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
        r = exec_count(dst, gen_sql[i], gen_count[i], "merging generations");
    if (r == QE_OK)
        r = qe_store__commit(dst, "merging");
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
