/* store.c - the results database: open + migrations, error mapping,
 * prepared statements, models/datasets/sessions, run keys and runs.
 * Chunk writes are in store_chunk.c and merging in store_merge.c
 * (lib/store_internal.h joins them).
 *
 * Threading: a handle belongs to one thread at a time (see store.h).
 * Workload: one transaction per chunk (a few hundred token rows), tens to
 * thousands of chunks per run; statements are prepared once per handle.
 */
#define _DEFAULT_SOURCE /* gethostname */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "schemas.h"
#include "store_internal.h"

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_MODEL] = "INSERT INTO models (sha256, name, path, source_format, arch, n_params, "
                "weight_bytes, file_bytes, hparams, weight_types, added_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, " NOW ") "
                "ON CONFLICT (sha256) DO NOTHING",
    [S_DATASET] = "INSERT INTO datasets (sha256, kind, path, field, file_sha256, file_bytes, "
                  "n_docs, doc_bytes, n_skipped, added_at) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, " NOW ") "
                  "ON CONFLICT (sha256) DO NOTHING",
    [S_SKIP] = "INSERT OR IGNORE INTO dataset_skipped (dataset_sha256, row, reason) "
               "VALUES (?1, ?2, ?3)",
    [S_DSTOK] = "INSERT OR IGNORE INTO dataset_tokens (dataset_sha256, tokenizer_sha256, "
                "n_tokens, tokens_sha256) VALUES (?1, ?2, ?3, ?4)",
    [S_SESSION] = "INSERT INTO sessions (session_key, job_name, job_sha256, host, pid, device, "
                  "driver, build_commit, started_at, gemm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                  NOW ", ?9)",
    [S_SESSION_END] = "UPDATE sessions SET ended_at = " NOW " WHERE session_key = ?1",
    [S_RUN_GET] = "SELECT n_chunks FROM runs WHERE run_key = ?1",
    [S_RUN_INSERT] =
        "INSERT INTO runs (run_key, config, task, model_sha256, dataset_sha256, "
        "tokenizer_sha256, n_ctx, weights, kv_k, kv_v, top_k, chunking, ref_run_key, job_name, "
        "host, device, driver, build_commit, session_key, started_at, status) "
        "SELECT ?1, ?2, ?3, m.sha256, d.sha256, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, s.job_name, "
        "s.host, s.device, s.driver, s.build_commit, s.session_key, " NOW ", 'running' "
        "FROM sessions s, models m, datasets d "
        "WHERE s.session_key = ?14 AND m.sha256 = ?4 AND d.sha256 = ?5 "
        "ON CONFLICT (run_key) DO NOTHING",
    [S_RUN_REOPEN] = "UPDATE runs SET status = 'running', ended_at = NULL, "
                     "ref_run_key = coalesce(?2, ref_run_key) WHERE run_key = ?1",
    [S_RUN_CHUNKS] = "SELECT chunk FROM chunks WHERE run_key = ?1 ORDER BY chunk",
    [S_RUN_PLAN] = "UPDATE runs SET n_tokens = ?2, n_chunks = ?3 WHERE run_key = ?1",
    [S_RUN_PLAN_GET] = "SELECT n_tokens, n_chunks FROM runs WHERE run_key = ?1",
    [S_RUN_WBYTES] = "UPDATE runs SET weight_bytes = ?2 WHERE run_key = ?1",
    [S_RUN_END] = "UPDATE runs SET status = ?2, ended_at = " NOW " WHERE run_key = ?1",
    [S_CHUNK] = "INSERT INTO chunks (run_key, chunk, first_pos, n_scored, nll_sum, nll2_sum, "
                "n_top1, seconds, session_key, written_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                "?8, ?9, " NOW ") ON CONFLICT (run_key, chunk) DO NOTHING",
    [S_TOKEN] = "INSERT INTO tokens (run_key, chunk, pos, target, logprob, argmax, topk, kld) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_LOGITS] = "INSERT INTO logits (run_key, chunk, pos, n_vocab, codec, data) "
                 "VALUES (?1, ?2, ?3, ?4, 'zlib-f16le', ?5)",
    [S_LOGITS_GET] = "SELECT n_vocab, codec, data FROM logits "
                     "WHERE run_key = ?1 AND chunk = ?2 AND pos = ?3",
    [S_KLD_DEL] = "DELETE FROM kld WHERE run_key = ?1 AND n < ?2",
    [S_KLD] = "INSERT OR IGNORE INTO kld VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
              "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, "
              "?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, "
              "?44, ?45, ?46, ?47, " NOW ")",
    [S_TIMING] = "INSERT INTO timings (run_key, session_key, phase, seconds, n_tokens, n_calls) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_key, session_key, phase) "
                 "DO UPDATE SET seconds = seconds + excluded.seconds, "
                 "n_tokens = n_tokens + excluded.n_tokens, n_calls = n_calls + excluded.n_calls",
};

/* ---- errors ---- */

qe_status qe_store_fail(qe_store *st, int rc, const char *what)
{
    const char *path = st ? st->path : "database";
    const char *msg = st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int sys = st && st->db ? sqlite3_system_errno(st->db) : 0;
    char extra[160] = "";
    if (sys && ((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL ||
                (rc & 0xff) == SQLITE_CANTOPEN))
        snprintf(extra, sizeof extra, " (%s)", strerror(sys));
    else if (rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_TRUNCATE)
        snprintf(extra, sizeof extra, " while writing: is the disk full, or a file size limit "
                 "(ulimit -f) reached?");
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return qe_fail(QE_EIO, "%s: %s: database or disk is full%s", path, what, extra);
    case SQLITE_READONLY:
        return qe_fail(QE_EIO, "%s: %s: the database is read-only (%s)", path, what, msg);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        return qe_fail(QE_EIO, "%s: %s: %s%s", path, what, msg, extra);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return qe_fail(QE_ECORRUPT, "%s: %s: %s", path, what, msg);
    case SQLITE_NOMEM: return qe_fail(QE_ENOMEM, "%s: %s: out of memory", path, what);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return qe_fail(QE_EDB, "%s: %s: %s (another process held the lock for longer than "
                       "busy_timeout, %d ms)", path, what, msg, st ? st->busy_ms : 0);
    default: return qe_fail(QE_EDB, "%s: %s: %s", path, what, msg);
    }
}

/* ---- statements and transactions ---- */

qe_status qe_store__stmt(qe_store *st, int id, sqlite3_stmt **out)
{
    QE_ASSERT(id >= 0 && id < S_COUNT && stmt_sql[id]);
    if (!st->stmts[id]) {
        int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &st->stmts[id], NULL);
        if (rc != SQLITE_OK)
            return qe_store_fail(st, rc, "preparing a statement");
    }
    sqlite3_reset(st->stmts[id]);
    sqlite3_clear_bindings(st->stmts[id]);
    *out = st->stmts[id];
    return QE_OK;
}

/* ---- helpers shared with store_chunk.c and store_merge.c ---- */

/* Run a prepared statement to completion (no rows expected). */
qe_status qe_store__step_done(qe_store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    qe_status r = rc == SQLITE_DONE ? QE_OK : qe_store_fail(st, rc, what);
    sqlite3_reset(s);
    return r;
}

void qe_store__bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

int qe_store__is_key(const char *k)
{
    if (!k || strlen(k) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
            return 0;
    return 1;
}

qe_status qe_store__need_key(const char *what, const char *k)
{
    if (!qe_store__is_key(k))
        return qe_fail(QE_EINVAL, "%s '%s': expected 64 lower-case hex digits", what,
                       k ? k : "(null)");
    return QE_OK;
}

qe_status qe_store__exec_one(qe_store *st, sqlite3_stmt *s, const char *what)
{
    qe_status r = qe_store__begin(st, what);
    if (r == QE_OK)
        r = qe_store__step_done(st, s, what);
    if (r == QE_OK)
        r = qe_store__commit(st, what);
    if (r != QE_OK)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store__begin(qe_store *st, const char *what)
{
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_BEGIN, &s);
    return r != QE_OK ? r : qe_store__step_done(st, s, what);
}

qe_status qe_store__commit(qe_store *st, const char *what)
{
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_COMMIT, &s);
    return r != QE_OK ? r : qe_store__step_done(st, s, what);
}

void qe_store__rollback(qe_store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int pragma_int(qe_store *st, const char *sql, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(s, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

/* ---- open, migrations ---- */

int qe_store_schema_version(void)
{
    return (int)qe_schema_n_srcs;
}

static qe_status migrate(qe_store *st)
{
    for (int i = st->version; i < (int)qe_schema_n_srcs; i++) {
        qe_status r = qe_store__begin(st, "starting a migration");
        if (r != QE_OK)
            return r;
        /* another process may have migrated meanwhile: re-read under the lock */
        int v = 0;
        int rc = pragma_int(st, "PRAGMA user_version", &v);
        if (rc != SQLITE_OK) {
            r = qe_store_fail(st, rc, "reading user_version");
            goto fail;
        }
        if (v > i) {
            st->version = v;
            qe_store__rollback(st);
            i = v - 1;
            continue;
        }
        char *err = NULL;
        rc = sqlite3_exec(st->db, qe_schema_srcs[i].src, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
            r = qe_fail(rc == SQLITE_FULL ? QE_EIO : QE_EDB, "%s: migration %s: %s", st->path,
                        qe_schema_srcs[i].name, err ? err : sqlite3_errstr(rc));
            sqlite3_free(err);
            goto fail;
        }
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d", i + 1,
                 QE_STORE_APP_ID);
        rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            r = qe_store_fail(st, rc, "recording the schema version");
            goto fail;
        }
        r = qe_store__commit(st, qe_schema_srcs[i].name);
        if (r != QE_OK)
            goto fail;
        st->version = i + 1;
        continue;
    fail:
        qe_store__rollback(st);
        return r;
    }
    return QE_OK;
}

static qe_status check_identity(qe_store *st)
{
    int app = 0, ver = 0, n_tables = 0;
    int rc = pragma_int(st, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = pragma_int(st, "PRAGMA user_version", &ver);
    if (rc == SQLITE_OK)
        rc = pragma_int(st, "SELECT count(*) FROM sqlite_master", &n_tables);
    if (rc != SQLITE_OK)
        return qe_store_fail(st, rc, "reading the schema");
    if (app != 0 && app != QE_STORE_APP_ID)
        return qe_fail(QE_ECORRUPT, "%s: not a qeval database (application_id 0x%08x)", st->path,
                       (unsigned)app);
    if (app == 0 && (ver != 0 || n_tables != 0))
        return qe_fail(QE_ECORRUPT, "%s: not a qeval database (it holds %d schema objects and "
                       "user_version %d, but no qeval application_id)", st->path, n_tables, ver);
    if (ver > (int)qe_schema_n_srcs)
        return qe_fail(QE_EUNSUPPORTED, "%s: schema version %d is newer than this qeval's (%d): "
                       "use a newer qeval", st->path, ver, (int)qe_schema_n_srcs);
    st->version = ver;
    return QE_OK;
}

qe_status qe_store_open(const char *path, unsigned flags, int busy_ms, qe_store **out)
{
    *out = NULL;
    /* SQLite opens "" as a private temporary database, deleted on close:
       every result written to it would be lost without a word */
    if (!path || !*path)
        return qe_fail(QE_EINVAL, "store: empty database path");
    qe_store *st = calloc(1, sizeof *st);
    if (!st)
        return qe_fail(QE_ENOMEM, "%s: out of memory", path);
    qe_status r = QE_OK;
    st->path = strdup(path);
    st->readonly = (flags & QE_STORE_READONLY) != 0;
    st->busy_ms = busy_ms > 0 ? busy_ms : 30000;
    if (!st->path) {
        r = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    int oflags = st->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &st->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        r = qe_fail(QE_EIO, "%s: cannot open the database: %s%s", path,
                    st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc),
                    st->readonly ? "" : " (does its directory exist and is it writable?)");
        goto done;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, st->busy_ms);
    if (!st->readonly && sqlite3_db_readonly(st->db, "main") == 1) {
        r = qe_fail(QE_EIO, "%s: the database file is read-only (no write permission)", path);
        goto done;
    }
    r = check_identity(st);
    if (r != QE_OK)
        goto done;
    rc = sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        r = qe_store_fail(st, rc, "enabling foreign keys");
        goto done;
    }
    if (st->readonly) {
        if (st->version < (int)qe_schema_n_srcs) {
            r = qe_fail(QE_EUNSUPPORTED, "%s: schema version %d, this qeval reads version %d: "
                        "upgrade it with 'qeval merge --db %s'", path, st->version,
                        (int)qe_schema_n_srcs, path);
            goto done;
        }
    } else {
        char *err = NULL;
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(s, 0);
            rc = mode && !strcmp(mode, "wal") ? SQLITE_OK : SQLITE_ERROR;
            if (rc != SQLITE_OK)
                r = qe_fail(QE_EDB, "%s: cannot use WAL journaling (journal mode is '%s'); is "
                            "the file on a network file system?", path, mode ? mode : "?");
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_OK) {
            if (r == QE_OK)
                r = qe_store_fail(st, rc, "setting journal_mode=WAL");
            goto done;
        }
        rc = sqlite3_exec(st->db, flags & QE_STORE_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                               : "PRAGMA synchronous = FULL",
                          NULL, NULL, &err);
        sqlite3_free(err);
        if (rc != SQLITE_OK) {
            r = qe_store_fail(st, rc, "setting synchronous");
            goto done;
        }
        r = migrate(st);
    }
done:
    if (r != QE_OK) {
        qe_store_close(st);
        return r;
    }
    *out = st;
    return QE_OK;
}

void qe_store_close(qe_store *st)
{
    if (!st)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    sqlite3_close_v2(st->db);
    free(st->path);
    free(st);
}

const char *qe_store_path(const qe_store *st) { return st->path; }
int qe_store_version(const qe_store *st) { return st->version; }
sqlite3 *qe_store_sqlite(qe_store *st) { return st->db; }

/* ---- models, datasets, sessions ---- */

qe_status qe_store_put_model(qe_store *st, const qe_store_model *m)
{
    qe_status r = qe_store__need_key("model sha256", m->sha256);
    sqlite3_stmt *s = NULL;
    if (r == QE_OK)
        r = qe_store__stmt(st, S_MODEL, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, m->sha256);
    qe_store__bind_text(s, 2, m->name ? m->name : "");
    qe_store__bind_text(s, 3, m->path ? m->path : "");
    qe_store__bind_text(s, 4, m->source_format ? m->source_format : "gguf");
    qe_store__bind_text(s, 5, m->arch ? m->arch : "llama");
    sqlite3_bind_int64(s, 6, (sqlite3_int64)m->n_params);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)m->weight_bytes);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)m->file_bytes);
    qe_store__bind_text(s, 9, m->hparams_json ? m->hparams_json : "{}");
    qe_store__bind_text(s, 10, m->weight_types_json ? m->weight_types_json : "{}");
    return qe_store__exec_one(st, s, "storing a model");
}

qe_status qe_store_put_dataset(qe_store *st, const qe_store_dataset *d)
{
    qe_status r = qe_store__need_key("dataset sha256", d->sha256);
    if (r == QE_OK)
        r = qe_store__need_key("dataset file sha256", d->file_sha256);
    if (r != QE_OK)
        return r;
    r = qe_store__begin(st, "storing a dataset");
    if (r != QE_OK)
        return r;
    sqlite3_stmt *s = NULL;
    r = qe_store__stmt(st, S_DATASET, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, d->sha256);
    qe_store__bind_text(s, 2, d->kind);
    qe_store__bind_text(s, 3, d->path ? d->path : "");
    qe_store__bind_text(s, 4, d->field);
    qe_store__bind_text(s, 5, d->file_sha256);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)d->file_bytes);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)d->n_docs);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)d->doc_bytes);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)d->n_skipped);
    r = qe_store__step_done(st, s, "storing a dataset");
    int added = sqlite3_changes(st->db) > 0;
    for (size_t i = 0; r == QE_OK && added && i < d->n_skipped; i++) {
        r = qe_store__stmt(st, S_SKIP, &s);
        if (r != QE_OK)
            break;
        qe_store__bind_text(s, 1, d->sha256);
        sqlite3_bind_int64(s, 2, d->skipped[i].row);
        qe_store__bind_text(s, 3, d->skipped[i].reason ? d->skipped[i].reason : "");
        r = qe_store__step_done(st, s, "storing a skipped row");
    }
    if (r == QE_OK)
        r = qe_store__commit(st, "storing a dataset");
done:
    if (r != QE_OK)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store_put_dataset_tokens(qe_store *st, const char *dataset_sha256,
                                      const char *tokenizer_sha256, uint64_t n_tokens,
                                      const char *tokens_sha256)
{
    qe_status r = qe_store__need_key("dataset sha256", dataset_sha256);
    if (r == QE_OK)
        r = qe_store__need_key("tokenizer sha256", tokenizer_sha256);
    if (r == QE_OK)
        r = qe_store__need_key("tokens sha256", tokens_sha256);
    sqlite3_stmt *s = NULL;
    if (r == QE_OK)
        r = qe_store__stmt(st, S_DSTOK, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, dataset_sha256);
    qe_store__bind_text(s, 2, tokenizer_sha256);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)n_tokens);
    qe_store__bind_text(s, 4, tokens_sha256);
    return qe_store__exec_one(st, s, "storing dataset tokens");
}

qe_status qe_store_session_begin(qe_store *st, const qe_store_session *ss,
                                 char key[QE_STORE_KEY_HEX])
{
    static unsigned long counter; /* sessions begun by this process */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&mu);
    unsigned long n = counter++;
    pthread_mutex_unlock(&mu);
    char seed[512];
    int len = snprintf(seed, sizeof seed, "qeval-session 1\n%s\n%ld\n%lld.%09ld\n%lu\n", host,
                       (long)getpid(), (long long)ts.tv_sec, ts.tv_nsec, n);
    uint8_t d[32];
    qe_hash_sha256_buf(seed, (size_t)len, d);
    qe_hash_hex(d, 32, key);
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_SESSION, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, key);
    qe_store__bind_text(s, 2, ss->job_name ? ss->job_name : "");
    qe_store__bind_text(s, 3, ss->job_sha256);
    qe_store__bind_text(s, 4, host);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)getpid());
    qe_store__bind_text(s, 6, ss->device ? ss->device : "");
    qe_store__bind_text(s, 7, ss->driver ? ss->driver : "");
    qe_store__bind_text(s, 8, ss->build_commit ? ss->build_commit : "");
    qe_store__bind_text(s, 9, ss->gemm ? ss->gemm : "-");
    return qe_store__exec_one(st, s, "starting a session");
}

qe_status qe_store_session_end(qe_store *st, const char *session_key)
{
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_SESSION_END, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, session_key);
    return qe_store__exec_one(st, s, "ending a session");
}

/* ---- run keys ---- */

int qe_store__name_ok(const char *v)
{
    if (!v || !*v || strlen(v) > 64)
        return 0;
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_./:+-", *p)))
            return 0;
    return 1;
}

qe_status qe_store_run_config_text(const qe_store_run_config *c, char **text)
{
    *text = NULL;
    const char *chunking = c->chunking ? c->chunking : "llama-perplexity";
    const struct {
        const char *name, *v;
        int key;
    } f[] = {{"task", c->task, 0},          {"model", c->model_sha256, 1},
             {"dataset", c->dataset_sha256, 1}, {"tokenizer", c->tokenizer_sha256, 1},
             {"weights", c->weights, 0},    {"kv_k", c->kv_k, 0},
             {"kv_v", c->kv_v, 0},          {"chunking", chunking, 0}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].key && !qe_store__is_key(f[i].v))
            return qe_fail(QE_EINVAL, "run config: %s '%s': expected 64 lower-case hex digits",
                           f[i].name, f[i].v ? f[i].v : "(null)");
        if (!f[i].key && !qe_store__name_ok(f[i].v))
            return qe_fail(QE_EINVAL, "run config: %s '%s': expected 1 to 64 characters from "
                           "[A-Za-z0-9_./:+-]", f[i].name, f[i].v ? f[i].v : "(null)");
    }
    if (c->n_ctx < 1)
        return qe_fail(QE_EINVAL, "run config: n_ctx %d: expected at least 1", c->n_ctx);
    if (c->top_k < 0 || c->top_k > QE_STORE_MAX_TOP_K)
        return qe_fail(QE_EINVAL, "run config: top_k %d: expected 0 .. %d", c->top_k,
                       QE_STORE_MAX_TOP_K);
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "qeval-run 1\ntask=%s\nmodel=%s\ndataset=%s\ntokenizer=%s\nn_ctx=%d\n"
                     "weights=%s\nkv_k=%s\nkv_v=%s\ntop_k=%d\nchunking=%s\n",
                     c->task, c->model_sha256, c->dataset_sha256, c->tokenizer_sha256, c->n_ctx,
                     c->weights, c->kv_k, c->kv_v, c->top_k, chunking);
    QE_ASSERT(n > 0 && (size_t)n < sizeof buf);
    *text = strdup(buf);
    return *text ? QE_OK : qe_fail(QE_ENOMEM, "run config: out of memory");
}

qe_status qe_store_run_key(const qe_store_run_config *c, char key[QE_STORE_KEY_HEX])
{
    char *text;
    qe_status r = qe_store_run_config_text(c, &text);
    if (r != QE_OK)
        return r;
    uint8_t d[32];
    qe_hash_sha256_buf(text, strlen(text), d);
    qe_hash_hex(d, 32, key);
    free(text);
    return QE_OK;
}

/* ---- runs ---- */

void qe_store_resume_free(qe_store_resume *r)
{
    if (!r)
        return;
    free(r->done);
    r->done = NULL;
    r->done_len = 0;
}

int qe_store_resume_has(const qe_store_resume *r, int64_t i)
{
    return i >= 0 && i < r->done_len && r->done[i];
}

qe_status qe_store_run_resume(qe_store *st, const char *run_key, qe_store_resume *out)
{
    memset(out, 0, sizeof *out);
    out->n_chunks = -1;
    qe_status r = qe_store__need_key("run key", run_key);
    sqlite3_stmt *s = NULL;
    if (r == QE_OK)
        r = qe_store__stmt(st, S_RUN_GET, &s);
    if (r != QE_OK)
        return r;
    snprintf(out->run_key, sizeof out->run_key, "%s", run_key);
    qe_store__bind_text(s, 1, run_key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return qe_fail(QE_ENOTFOUND, "%s: no run %s", st->path, run_key);
    }
    if (rc != SQLITE_ROW) {
        r = qe_store_fail(st, rc, "reading a run");
        sqlite3_reset(s);
        return r;
    }
    out->existed = 1;
    if (sqlite3_column_type(s, 0) != SQLITE_NULL)
        out->n_chunks = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    r = qe_store__stmt(st, S_RUN_CHUNKS, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, run_key);
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t c = sqlite3_column_int64(s, 0);
        /* an index stored as text or a real (a file edited by hand) reads
           as a number here but is another key to SQLite: 1 and '1' would
           both count */
        if (sqlite3_column_type(s, 0) != SQLITE_INTEGER) {
            r = qe_fail(QE_ECORRUPT, "%s: run %s: a chunk index that is not an integer",
                        st->path, run_key);
            break;
        }
        if (c < 0 || c >= QE_STORE_MAX_CHUNKS || (out->n_chunks >= 0 && c >= out->n_chunks)) {
            r = qe_fail(QE_ECORRUPT, "%s: run %s: chunk index %" PRId64 " outside the plan of %"
                        PRId64 " chunks", st->path, run_key, c, out->n_chunks);
            break;
        }
        if ((size_t)c >= cap) {
            size_t ncap = cap ? cap : 64;
            while (ncap <= (size_t)c)
                ncap *= 2;
            uint8_t *nd = realloc(out->done, ncap);
            if (!nd) {
                r = qe_fail(QE_ENOMEM, "%s: out of memory", st->path);
                break;
            }
            memset(nd + cap, 0, ncap - cap);
            out->done = nd;
            cap = ncap;
        }
        out->done[c] = 1;
        out->n_done++;
        out->done_len = c + 1;
    }
    if (r == QE_OK && rc != SQLITE_DONE)
        r = qe_store_fail(st, rc, "reading a run's chunks");
    sqlite3_reset(s);
    if (r != QE_OK) {
        qe_store_resume_free(out);
        return r;
    }
    while (out->first_missing < out->done_len && out->done[out->first_missing])
        out->first_missing++;
    return QE_OK;
}

/* Which of session, model, dataset is missing (for a clear message). */
static qe_status explain_missing(qe_store *st, const qe_store_run_config *cfg,
                                 const char *session_key)
{
    const struct {
        const char *sql, *what, *key;
    } q[] = {{"SELECT 1 FROM sessions WHERE session_key = ?1", "session", session_key},
             {"SELECT 1 FROM models WHERE sha256 = ?1", "model", cfg->model_sha256},
             {"SELECT 1 FROM datasets WHERE sha256 = ?1", "dataset", cfg->dataset_sha256}};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(st->db, q[i].sql, -1, &s, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(s, 1, q[i].key, -1, SQLITE_STATIC);
            rc = sqlite3_step(s);
        }
        sqlite3_finalize(s);
        if (rc == SQLITE_DONE)
            return qe_fail(QE_ENOTFOUND, "%s: cannot start a run: %s %s is not stored", st->path,
                           q[i].what, q[i].key);
        if (rc != SQLITE_ROW)
            return qe_store_fail(st, rc, "starting a run");
    }
    return qe_fail(QE_EDB, "%s: cannot start a run (unknown reason)", st->path);
}

qe_status qe_store_run_begin(qe_store *st, const qe_store_run_config *cfg,
                             const char *ref_run_key, const char *session_key,
                             qe_store_resume *out)
{
    memset(out, 0, sizeof *out);
    char key[QE_STORE_KEY_HEX], *text = NULL;
    qe_status r = qe_store_run_config_text(cfg, &text);
    if (r == QE_OK)
        r = qe_store_run_key(cfg, key);
    if (r == QE_OK && ref_run_key)
        r = qe_store__need_key("reference run key", ref_run_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r != QE_OK) {
        free(text);
        return r;
    }
    int existed = 0;
    r = qe_store__begin(st, "starting a run");
    sqlite3_stmt *s = NULL;
    if (r == QE_OK)
        r = qe_store__stmt(st, S_RUN_INSERT, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, key);
    qe_store__bind_text(s, 2, text);
    qe_store__bind_text(s, 3, cfg->task);
    qe_store__bind_text(s, 4, cfg->model_sha256);
    qe_store__bind_text(s, 5, cfg->dataset_sha256);
    qe_store__bind_text(s, 6, cfg->tokenizer_sha256);
    sqlite3_bind_int(s, 7, cfg->n_ctx);
    qe_store__bind_text(s, 8, cfg->weights);
    qe_store__bind_text(s, 9, cfg->kv_k);
    qe_store__bind_text(s, 10, cfg->kv_v);
    sqlite3_bind_int(s, 11, cfg->top_k);
    qe_store__bind_text(s, 12, cfg->chunking ? cfg->chunking : "llama-perplexity");
    qe_store__bind_text(s, 13, ref_run_key);
    qe_store__bind_text(s, 14, session_key);
    r = qe_store__step_done(st, s, "starting a run");
    if (r != QE_OK)
        goto done;
    if (sqlite3_changes(st->db) == 0) {
        /* present already, or something it needs is missing */
        r = qe_store__stmt(st, S_RUN_GET, &s);
        if (r != QE_OK)
            goto done;
        qe_store__bind_text(s, 1, key);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) {
            r = explain_missing(st, cfg, session_key);
            goto done;
        }
        if (rc != SQLITE_ROW) {
            r = qe_store_fail(st, rc, "starting a run");
            goto done;
        }
        existed = 1;
        r = qe_store__stmt(st, S_RUN_REOPEN, &s);
        if (r != QE_OK)
            goto done;
        qe_store__bind_text(s, 1, key);
        qe_store__bind_text(s, 2, ref_run_key);
        r = qe_store__step_done(st, s, "reopening a run");
        if (r != QE_OK)
            goto done;
    }
    r = qe_store__commit(st, "starting a run");
done:
    free(text);
    if (r != QE_OK) {
        qe_store__rollback(st);
        return r;
    }
    r = qe_store_run_resume(st, key, out);
    out->existed = existed;
    return r;
}

qe_status qe_store_run_plan(qe_store *st, const char *run_key, int64_t n_tokens, int64_t n_chunks)
{
    if (n_tokens < 0 || n_chunks < 0 || n_chunks > QE_STORE_MAX_CHUNKS)
        return qe_fail(QE_EINVAL, "run plan: %" PRId64 " tokens, %" PRId64 " chunks: out of "
                       "range", n_tokens, n_chunks);
    qe_status r = qe_store__need_key("run key", run_key);
    if (r == QE_OK)
        r = qe_store__begin(st, "recording a run plan");
    if (r != QE_OK)
        return r;
    sqlite3_stmt *s = NULL;
    r = qe_store__stmt(st, S_RUN_PLAN_GET, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, run_key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        r = qe_fail(QE_ENOTFOUND, "%s: no run %s", st->path, run_key);
    } else if (rc != SQLITE_ROW) {
        r = qe_store_fail(st, rc, "reading a run plan");
    } else if (sqlite3_column_type(s, 1) != SQLITE_NULL &&
               (sqlite3_column_int64(s, 0) != n_tokens || sqlite3_column_int64(s, 1) != n_chunks)) {
        r = qe_fail(QE_ECORRUPT, "%s: run %s was planned as %lld tokens in %lld chunks, now %"
                    PRId64 " tokens in %" PRId64 " chunks: the same run key must see the same "
                    "tokens (did the tokenizer change?)", st->path, run_key,
                    sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), n_tokens, n_chunks);
    }
    sqlite3_reset(s);
    if (r != QE_OK)
        goto done;
    r = qe_store__stmt(st, S_RUN_PLAN, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, n_tokens);
    sqlite3_bind_int64(s, 3, n_chunks);
    r = qe_store__step_done(st, s, "recording a run plan");
    if (r == QE_OK)
        r = qe_store__commit(st, "recording a run plan");
done:
    if (r != QE_OK)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store_run_weight_bytes(qe_store *st, const char *run_key, uint64_t bytes)
{
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_RUN_WBYTES, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)bytes);
    return qe_store__exec_one(st, s, "recording weight bytes");
}

qe_status qe_store_run_end(qe_store *st, const char *run_key, const char *status)
{
    if (!status || (strcmp(status, "done") && strcmp(status, "partial") && strcmp(status, "failed")))
        return qe_fail(QE_EINVAL, "run status '%s': expected done, partial or failed",
                       status ? status : "(null)");
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_RUN_END, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, run_key);
    qe_store__bind_text(s, 2, status);
    return qe_store__exec_one(st, s, "ending a run");
}

