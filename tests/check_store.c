/* check_store.c - the results database: migrations from every older
 * version, run keys, resume, idempotent chunk writes, views against
 * independent computations, logits, KLD, merge, and failures (disk full,
 * file size limit, read-only file, foreign files) that leave it valid. */
#define _GNU_SOURCE /* setresuid */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "hash.h"
#include "metrics.h"
#include "schemas.h"
#include "store.h"
#include "testutil.h"

static char *tmp;
static char dbpath[4096];

static void setup(void)
{
    tmp = qe_test_tmpdir();
    ck_assert_ptr_nonnull(tmp);
    snprintf(dbpath, sizeof dbpath, "%s/t.db", tmp);
}

static void teardown(void)
{
    qe_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

#define MODEL_KEY "aa00000000000000000000000000000000000000000000000000000000000001"
#define DATA_KEY "bb00000000000000000000000000000000000000000000000000000000000002"
#define TOK_KEY MODEL_KEY

static qe_store_run_config base_config(void)
{
    qe_store_run_config c = {"perplexity", MODEL_KEY, DATA_KEY, TOK_KEY, 128,
                             "f32", "f16", "f16", 4, NULL};
    return c;
}

/* One value from a sqlite query on any connection (independent reads). */
static double q_double(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    int rc = sqlite3_step(s);
    ck_assert_msg(rc == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    double v = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    return v;
}

static long long q_int(sqlite3 *db, const char *sql)
{
    return (long long)q_double(db, sql);
}

static void q_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, cap, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(s);
}

static int integrity_ok(const char *path)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char r[64];
    q_text(db, "PRAGMA integrity_check", r, sizeof r);
    int fk = (int)q_int(db, "SELECT count(*) FROM pragma_foreign_key_check");
    sqlite3_close(db);
    return !strcmp(r, "ok") && fk == 0;
}

/* Store with model, dataset, a session and one run; returns the run key. */
static qe_store *make_store(const char *path, char session[65], char run[65])
{
    qe_store *st;
    ck_assert_int_eq(qe_store_open(path, 0, 0, &st), QE_OK);
    qe_store_model m = {MODEL_KEY, "tiny", "/m/tiny.gguf", "gguf", "llama", 1000, 4000, 4100,
                        "{\"dim\": 8}", "{\"F32\": 3}"};
    ck_assert_int_eq(qe_store_put_model(st, &m), QE_OK);
    qe_store_skip skip[] = {{7, "line 7: no field 'text'"}};
    qe_store_dataset d = {DATA_KEY, "jsonl", "/d/x.jsonl", "text",
                          "cc00000000000000000000000000000000000000000000000000000000000003",
                          500, 3, 400, 1, skip};
    ck_assert_int_eq(qe_store_put_dataset(st, &d), QE_OK);
    qe_store_session ss = {"test-job", NULL, "cpu0", "pocl 5", "abc123", NULL};
    ck_assert_int_eq(qe_store_session_begin(st, &ss, session), QE_OK);
    qe_store_run_config c = base_config();
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_begin(st, &c, NULL, session, &r), QE_OK);
    snprintf(run, 65, "%s", r.run_key);
    qe_store_resume_free(&r);
    return st;
}

/* Deterministic chunk contents: n scored positions from a seed. */
struct chunk_data {
    int32_t target[64], argmax[64], topk_id[64 * 4];
    float logprob[64], topk_lp[64 * 4], kld[64];
    qe_store_chunk c;
};

static void fill_chunk(struct chunk_data *d, int64_t chunk, int n, unsigned seed)
{
    memset(d, 0, sizeof *d);
    unsigned x = seed * 2654435761u + (unsigned)chunk * 40503u + 1;
    for (int j = 0; j < n; j++) {
        x = x * 1103515245u + 12345u;
        d->target[j] = (int32_t)(x >> 16) % 500;
        d->logprob[j] = -(float)((x >> 8) % 10000) / 997.0f - 0.001f;
        d->argmax[j] = j % 3 == 0 ? d->target[j] : (d->target[j] + 1) % 500;
        d->kld[j] = (float)j / 1000.0f;
        for (int k = 0; k < 4; k++) {
            d->topk_id[j * 4 + k] = (d->argmax[j] + k) % 500;
            d->topk_lp[j * 4 + k] = -0.1f * (float)(k + 1) - (float)j / 3.0f;
        }
    }
    d->c = (qe_store_chunk){chunk, 64, n, d->target, d->logprob, d->argmax, 4, d->topk_id,
                            d->topk_lp, d->kld, 0.5, 0, 0, 0, NULL, NULL, NULL};
}

/* ---- migrations and identity ---- */

START_TEST(test_open_pragmas)
{
    qe_store *st;
    ck_assert_int_eq(qe_store_open(dbpath, 0, 1234, &st), QE_OK);
    ck_assert_int_eq(qe_store_version(st), qe_store_schema_version());
    ck_assert_int_eq(qe_store_schema_version(), (int)qe_schema_n_srcs);
    ck_assert_int_ge(qe_store_schema_version(), 3);
    sqlite3 *db = qe_store_sqlite(st);
    char mode[32];
    q_text(db, "PRAGMA journal_mode", mode, sizeof mode);
    ck_assert_str_eq(mode, "wal");
    ck_assert_int_eq(q_int(db, "PRAGMA synchronous"), 2); /* FULL */
    ck_assert_int_eq(q_int(db, "PRAGMA busy_timeout"), 1234);
    ck_assert_int_eq(q_int(db, "PRAGMA foreign_keys"), 1);
    ck_assert_int_eq(q_int(db, "PRAGMA application_id"), 0x71657661);
    ck_assert_int_eq(q_int(db, "PRAGMA user_version"), qe_store_schema_version());
    /* every documented table and view exists */
    const char *names[] = {"models", "datasets", "dataset_skipped", "dataset_tokens", "sessions",
                           "runs", "chunks", "tokens", "kld", "timings", "logits",
                           "v_run_summary", "v_topk", "v_kld", "v_format_matrix"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE name = '%s'", names[i]);
        ck_assert_msg(q_int(db, sql) == 1, "%s missing", names[i]);
    }
    qe_store_close(st);
    ck_assert_int_eq(qe_store_open(dbpath, QE_STORE_SYNC_NORMAL, 0, &st), QE_OK);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "PRAGMA synchronous"), 1);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "PRAGMA busy_timeout"), 30000);
    qe_store_close(st);
    ck_assert_int_eq(qe_store_open(dbpath, QE_STORE_READONLY, 0, &st), QE_OK);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "PRAGMA busy_timeout"), 30000);
    qe_store_close(st);
    qe_store_close(NULL);
}
END_TEST

/* Rows valid from schema version 1 on, written by hand (not by the store). */
static const char *v1_rows =
    "INSERT INTO models VALUES ('" MODEL_KEY "', 'm', '/m', 'gguf', 'llama', 100, 400, 400, "
    "'{}', '{}', '2024-01-01T00:00:00Z');"
    "INSERT INTO datasets VALUES ('" DATA_KEY "', 'text', '/d', NULL, "
    "'cc00000000000000000000000000000000000000000000000000000000000003', 10, 1, 10, 0, "
    "'2024-01-01T00:00:00Z');"
    "INSERT INTO sessions VALUES ('dd00000000000000000000000000000000000000000000000000000000000004',"
    " 'old', NULL, 'h', 1, 'dev', 'drv', 'c0', '2024-01-01T00:00:00Z', NULL);"
    "INSERT INTO runs (run_key, config, task, model_sha256, dataset_sha256, tokenizer_sha256, "
    "n_ctx, weights, kv_k, kv_v, top_k, chunking, job_name, host, device, driver, build_commit, "
    "session_key, n_tokens, n_chunks, started_at, status) VALUES "
    "('ee00000000000000000000000000000000000000000000000000000000000005', 'cfg', 'perplexity', '"
    MODEL_KEY "', '" DATA_KEY "', '" MODEL_KEY "', 8, 'native', 'f16', 'f16', 0, "
    "'llama-perplexity', 'old', 'h', 'dev', 'drv', 'c0', "
    "'dd00000000000000000000000000000000000000000000000000000000000004', 16, 2, "
    "'2024-01-01T00:00:00Z', 'running');"
    /* two chunks, 3 scored tokens each: nll 1,2,3 and 1,1,1 */
    "INSERT INTO chunks VALUES ('ee00000000000000000000000000000000000000000000000000000000000005',"
    " 0, 4, 3, 6.0, 14.0, 1, 1.0, 'dd00000000000000000000000000000000000000000000000000000000000004',"
    " 'x');"
    "INSERT INTO chunks VALUES ('ee00000000000000000000000000000000000000000000000000000000000005',"
    " 1, 4, 3, 3.0, 3.0, 0, 1.0, 'dd00000000000000000000000000000000000000000000000000000000000004',"
    " 'x');";

START_TEST(test_migrate_every_old_version)
{
    int n = qe_store_schema_version();
    for (int v = 1; v < n; v++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/v%d.db", tmp, v);
        /* a database as an older qeval left it: migrations 1..v only */
        sqlite3 *db;
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        for (int i = 0; i < v; i++)
            ck_assert_int_eq(sqlite3_exec(db, qe_schema_srcs[i].src, NULL, NULL, NULL), SQLITE_OK);
        char sql[128];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d", v,
                 0x71657661);
        ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, v1_rows, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        qe_store *st;
        ck_assert_int_eq(qe_store_open(path, QE_STORE_READONLY, 0, &st), QE_EUNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(qe_errmsg(), "upgrade it with 'qeval merge --db "));
        ck_assert_int_eq(qe_store_open(path, 0, 0, &st), QE_OK);
        ck_assert_int_eq(qe_store_version(st), n);
        qe_store_close(st);
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(q_int(db, "PRAGMA user_version"), n);
        ck_assert_int_eq(q_int(db, "SELECT count(*) FROM chunks"), 2);
        /* the views read the old rows: 6 tokens, mean nll 1.5 */
        ck_assert_int_eq(q_int(db, "SELECT tokens FROM v_run_summary"), 6);
        ck_assert_double_eq_tol(q_double(db, "SELECT ppl FROM v_run_summary"), exp(1.5), 1e-12);
        /* error: PPL * sqrt((<nll^2> - <nll>^2) / (N - 1)), nll = 1 2 3 1 1 1 */
        double var = 17.0 / 6 - 1.5 * 1.5;
        ck_assert_double_eq_tol(q_double(db, "SELECT ppl_err FROM v_run_summary"),
                                exp(1.5) * sqrt(var / 5), 1e-12);
        ck_assert_int_eq(q_int(db, "SELECT count(*) FROM v_format_matrix"), 1);
        ck_assert_int_eq(q_int(db, "SELECT count(*) FROM kld"), 0); /* a table of migration 2 */
        sqlite3_close(db);
        ck_assert(integrity_ok(path));
    }
}
END_TEST

START_TEST(test_foreign_files)
{
    qe_store *st;
    /* an SQLite database of something else */
    char path[4200];
    snprintf(path, sizeof path, "%s/other.db", tmp);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE foo (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(qe_store_open(path, 0, 0, &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "other.db: not a qeval database"));
    /* nothing was added to it */
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM sqlite_master"), 1);
    sqlite3_close(db);
    /* another application's id */
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA application_id = 42", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(qe_store_open(path, 0, 0, &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "application_id 0x0000002a"));
    /* not SQLite at all */
    const char *junk = "hello, this is not a database file at all, just text that is longer "
                       "than the 100-byte SQLite header..........";
    char *txt = qe_test_write(tmp, "notes.db", junk, strlen(junk));
    ck_assert_int_eq(qe_store_open(txt, 0, 0, &st), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "notes.db"));
    free(txt);
    /* a newer qeval's database */
    ck_assert_int_eq(qe_store_open(dbpath, 0, 0, &st), QE_OK);
    qe_store_close(st);
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(qe_store_open(dbpath, 0, 0, &st), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "schema version 99 is newer"));
    /* missing directory; read-only open of a missing file */
    ck_assert_int_eq(qe_store_open("/nonexistent-dir/qeval/x.db", 0, 0, &st), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent-dir/qeval/x.db: cannot open"));
    snprintf(path, sizeof path, "%s/missing.db", tmp);
    ck_assert_int_eq(qe_store_open(path, QE_STORE_READONLY, 0, &st), QE_EIO);
    /* an empty path, which SQLite would open as a temporary database */
    ck_assert_int_eq(qe_store_open("", 0, 0, &st), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "empty database path"));
    ck_assert_ptr_null(st);
}
END_TEST

/* ---- run keys and resume ---- */

START_TEST(test_run_key)
{
    qe_store_run_config c = base_config();
    char *text;
    ck_assert_int_eq(qe_store_run_config_text(&c, &text), QE_OK);
    const char *want = "qeval-run 1\ntask=perplexity\nmodel=" MODEL_KEY "\ndataset=" DATA_KEY
                       "\ntokenizer=" TOK_KEY "\nn_ctx=128\nweights=f32\nkv_k=f16\nkv_v=f16\n"
                       "top_k=4\nchunking=llama-perplexity\n";
    ck_assert_str_eq(text, want);
    free(text);
    char key[65], hex[65];
    uint8_t d[32];
    ck_assert_int_eq(qe_store_run_key(&c, key), QE_OK);
    qe_hash_sha256_buf(want, strlen(want), d);
    qe_hash_hex(d, 32, hex);
    ck_assert_str_eq(key, hex);
    /* every field changes the key */
    char k2[65];
    qe_store_run_config v;
#define CHANGES(stmt)                                   \
    do {                                                \
        v = c;                                          \
        stmt;                                           \
        ck_assert_int_eq(qe_store_run_key(&v, k2), QE_OK); \
        ck_assert_str_ne(k2, key);                      \
    } while (0)
    CHANGES(v.model_sha256 = "aa00000000000000000000000000000000000000000000000000000000000009");
    CHANGES(v.dataset_sha256 = "bb00000000000000000000000000000000000000000000000000000000000009");
    CHANGES(v.tokenizer_sha256 = "ab00000000000000000000000000000000000000000000000000000000000009");
    CHANGES(v.n_ctx = 256);
    CHANGES(v.weights = "q4_0");
    CHANGES(v.kv_k = "q8_0");
    CHANGES(v.kv_v = "tq3");
    CHANGES(v.top_k = 5);
    CHANGES(v.chunking = "other");
    CHANGES(v.task = "generate");
    /* bad values */
    v = c;
    v.model_sha256 = "AA00000000000000000000000000000000000000000000000000000000000001";
    ck_assert_int_eq(qe_store_run_key(&v, k2), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "run config: model 'AA00"));
    v = c;
    v.weights = "q4 0\nmodel=x";
    ck_assert_int_eq(qe_store_run_key(&v, k2), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "run config: weights"));
    v = c;
    v.kv_v = NULL;
    ck_assert_int_eq(qe_store_run_key(&v, k2), QE_EINVAL);
    v = c;
    v.n_ctx = 0;
    ck_assert_int_eq(qe_store_run_key(&v, k2), QE_EINVAL);
    v = c;
    v.top_k = -1;
    ck_assert_int_eq(qe_store_run_key(&v, k2), QE_EINVAL);
}
END_TEST

START_TEST(test_resume_and_idempotent_chunks)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    sqlite3 *db = qe_store_sqlite(st);
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_resume(st, run, &r), QE_OK);
    ck_assert_int_eq(r.n_done, 0);
    ck_assert_int_eq(r.first_missing, 0);
    ck_assert_int_eq(r.n_chunks, -1);
    qe_store_resume_free(&r);
    ck_assert_int_eq(qe_store_run_plan(st, run, 1000, 7), QE_OK);
    ck_assert_int_eq(qe_store_run_plan(st, run, 1000, 7), QE_OK); /* same plan again */
    ck_assert_int_eq(qe_store_run_plan(st, run, 999, 7), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "planned as 1000 tokens in 7 chunks, now 999"));

    struct chunk_data cd;
    int written;
    int64_t chunks[] = {0, 1, 3};
    for (int i = 0; i < 3; i++) {
        fill_chunk(&cd, chunks[i], 63, 1);
        ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, &written), QE_OK);
        ck_assert_int_eq(written, 1);
    }
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), 3 * 63);
    /* the same chunk again, even with other numbers: nothing changes */
    fill_chunk(&cd, 1, 63, 99);
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, &written), QE_OK);
    ck_assert_int_eq(written, 0);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM chunks"), 3);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), 3 * 63);
    fill_chunk(&cd, 1, 63, 1);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT logprob FROM tokens WHERE chunk = 1 AND pos = 64");
    ck_assert(q_double(db, sql) == (double)cd.logprob[0]); /* the first write's value */

    ck_assert_int_eq(qe_store_run_resume(st, run, &r), QE_OK);
    ck_assert_int_eq(r.n_done, 3);
    ck_assert_int_eq(r.n_chunks, 7);
    ck_assert_int_eq(r.first_missing, 2);
    ck_assert(qe_store_resume_has(&r, 3));
    ck_assert(!qe_store_resume_has(&r, 2));
    ck_assert(!qe_store_resume_has(&r, 6));
    ck_assert(!qe_store_resume_has(&r, -1));
    qe_store_resume_free(&r);

    /* beginning the same config again finds it */
    qe_store_run_config c = base_config();
    ck_assert_int_eq(qe_store_run_begin(st, &c, NULL, session, &r), QE_OK);
    ck_assert_int_eq(r.existed, 1);
    ck_assert_str_eq(r.run_key, run);
    ck_assert_int_eq(r.n_done, 3);
    qe_store_resume_free(&r);
    /* a changed model hash is another run, with nothing done */
    c.model_sha256 = "aa00000000000000000000000000000000000000000000000000000000000009";
    ck_assert_int_eq(qe_store_run_begin(st, &c, NULL, session, &r), QE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "model aa00000000000000000000000000000000000000000000000000000000000009 is not stored"));
    qe_store_model m = {c.model_sha256, "other", "/m2", "gguf", "llama", 1000, 2000, 2000, NULL, NULL};
    ck_assert_int_eq(qe_store_put_model(st, &m), QE_OK);
    ck_assert_int_eq(qe_store_run_begin(st, &c, run, session, &r), QE_OK);
    ck_assert_int_eq(r.existed, 0);
    ck_assert_str_ne(r.run_key, run);
    ck_assert_int_eq(r.n_done, 0);
    qe_store_resume_free(&r);
    ck_assert_int_eq(qe_store_run_end(st, run, "partial"), QE_OK);
    snprintf(sql, sizeof sql, "SELECT status = 'partial' AND ended_at IS NOT NULL FROM runs WHERE run_key = '%s'", run);
    ck_assert_int_eq(q_int(db, sql), 1);
    ck_assert_int_eq(qe_store_run_end(st, run, "finished"), QE_EINVAL);
    /* a chunk index stored as a real (an edited file) is another key to
       SQLite beside the integer it reads as: resume refuses it rather than
       count chunk 3 twice */
    snprintf(sql, sizeof sql,
             "INSERT INTO chunks SELECT run_key, 3.5, first_pos, n_scored, nll_sum, nll2_sum, "
             "n_top1, seconds, session_key, written_at FROM chunks WHERE chunk = 3");
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM chunks"), 4);
    ck_assert_int_eq(qe_store_run_resume(st, run, &r), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "a chunk index that is not an integer"));
    ck_assert_int_eq(sqlite3_exec(db, "DELETE FROM chunks WHERE typeof(chunk) = 'real'", NULL,
                                  NULL, NULL), SQLITE_OK);
    qe_store_close(st);
    ck_assert(integrity_ok(dbpath));
}
END_TEST

START_TEST(test_views_match_independent_math)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    sqlite3 *db = qe_store_sqlite(st);
    ck_assert_int_eq(qe_store_run_plan(st, run, 900, 4), QE_OK);
    qe_ppl ppl;
    qe_ppl_init(&ppl);
    double s1 = 0, s2 = 0;
    long n = 0, top1 = 0;
    struct chunk_data cd;
    for (int64_t ch = 0; ch < 4; ch++) {
        fill_chunk(&cd, ch, 63, 5);
        for (int j = 0; j < 63; j++) {
            double nll = -(double)cd.logprob[j];
            qe_ppl_add(&ppl, nll);
            s1 += nll;
            s2 += nll * nll;
            n++;
            top1 += cd.argmax[j] == cd.target[j];
        }
        /* chunk 2's top-k arrives encoded already (as the runner sends it) */
        char *js[64] = {0};
        if (ch == 2) {
            for (int j = 0; j < 63; j++)
                js[j] = qe_store_topk_json(cd.topk_id + 4 * j, cd.topk_lp + 4 * j, 4);
            cd.c.topk_json = js;
        }
        ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_OK);
        for (int j = 0; j < 63; j++)
            free(js[j]);
    }
    qe_ppl_result pr = qe_ppl_result_of(&ppl);
    double ppl_here = exp(s1 / (double)n);
    double err_here = ppl_here * sqrt((s2 / (double)n - (s1 / n) * (s1 / n)) / (double)(n - 1));
    ck_assert_int_eq(q_int(db, "SELECT tokens FROM v_run_summary"), n);
    ck_assert_double_eq_tol(q_double(db, "SELECT ppl FROM v_run_summary"), ppl_here, 1e-9 * ppl_here);
    ck_assert_double_eq_tol(q_double(db, "SELECT ppl FROM v_run_summary"), pr.ppl, 1e-9 * pr.ppl);
    ck_assert_double_eq_tol(q_double(db, "SELECT ppl_err FROM v_run_summary"), err_here, 1e-9 * err_here);
    ck_assert_double_eq_tol(q_double(db, "SELECT ppl_err FROM v_run_summary"), pr.ppl_err, 1e-9 * err_here);
    ck_assert_double_eq_tol(q_double(db, "SELECT top1_pct FROM v_run_summary"), 100.0 * top1 / n, 1e-9);
    char st_[32];
    q_text(db, "SELECT status FROM v_run_summary", st_, sizeof st_);
    ck_assert_str_eq(st_, "complete");
    /* tokens/s: 4 chunks of 128 tokens in 4 x 0.5 s */
    ck_assert_double_eq_tol(q_double(db, "SELECT tokens_per_s FROM v_run_summary"), 256.0, 1e-9);
    /* bits per weight: not known until the evaluator says (weights f32, not native) */
    ck_assert_int_eq(q_int(db, "SELECT bits_per_weight IS NULL FROM v_run_summary"), 1);
    ck_assert_int_eq(qe_store_run_weight_bytes(st, run, 4000), QE_OK);
    ck_assert_double_eq_tol(q_double(db, "SELECT bits_per_weight FROM v_run_summary"), 32.0, 1e-12);
    /* top-k JSON expands to the exact floats */
    fill_chunk(&cd, 2, 63, 5);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT pos, rank, id, logprob FROM v_topk WHERE "
                                            "chunk = 2 ORDER BY pos, rank", -1, &s, NULL), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        int j = sqlite3_column_int(s, 0) - 64, k = sqlite3_column_int(s, 1) - 1;
        ck_assert_int_eq(sqlite3_column_int(s, 2), cd.topk_id[j * 4 + k]);
        ck_assert((float)sqlite3_column_double(s, 3) == cd.topk_lp[j * 4 + k]);
        rows++;
    }
    sqlite3_finalize(s);
    ck_assert_int_eq(rows, 63 * 4);
    ck_assert((float)q_double(db, "SELECT kld FROM tokens WHERE chunk = 2 AND pos = 70") == cd.kld[6]);
    ck_assert_int_eq(q_int(db, "SELECT target FROM tokens WHERE chunk = 2 AND pos = 70"), cd.target[6]);
    qe_store_close(st);
}
END_TEST

START_TEST(test_format_matrix_and_kld)
{
    char session[65], ref[65];
    qe_store *st = make_store(dbpath, session, ref);
    sqlite3 *db = qe_store_sqlite(st);
    qe_store_run_config c = base_config();
    c.weights = "q4_0";
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_begin(st, &c, ref, session, &r), QE_OK);
    char var[65];
    snprintf(var, sizeof var, "%s", r.run_key);
    qe_store_resume_free(&r);
    /* reference: chunks 0..2; variant: chunks 0..1 with nll + 0.1 each */
    struct chunk_data cd;
    double sb = 0, sq = 0;
    int n = 0;
    for (int64_t ch = 0; ch < 3; ch++) {
        fill_chunk(&cd, ch, 20, 3);
        ck_assert_int_eq(qe_store_put_chunk(st, ref, session, &cd.c, NULL), QE_OK);
        if (ch == 2)
            break;
        for (int j = 0; j < 20; j++) {
            sb += -(double)cd.logprob[j];
            cd.logprob[j] -= 0.1f;
            sq += -(double)cd.logprob[j];
            n++;
        }
        ck_assert_int_eq(qe_store_put_chunk(st, var, session, &cd.c, NULL), QE_OK);
    }
    /* delta PPL over the chunks both hold */
    double want = 100.0 * (exp((sq - sb) / n) - 1.0);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT delta_ppl_pct FROM v_format_matrix WHERE run_key = '%s'", var);
    ck_assert_double_eq_tol(q_double(db, sql), want, 1e-9);
    snprintf(sql, sizeof sql, "SELECT delta_ppl_pct FROM v_format_matrix WHERE run_key = '%s'", ref);
    ck_assert_double_eq_tol(q_double(db, sql), 0.0, 1e-12);
    /* the reference sorts first */
    char first[80];
    q_text(db, "SELECT weights FROM v_format_matrix LIMIT 1", first, sizeof first);
    ck_assert_str_eq(first, "f32");

    qe_kld_summary k;
    memset(&k, 0, sizeof k);
    k.n = 10;
    k.kld.mean = 0.25;
    k.kld_pct[1] = 0.9; /* 99 % */
    k.same_top = 0.875;
    k.ppl_q = NAN;      /* non-finite values are stored as NULL */
    ck_assert_int_eq(qe_store_put_kld(st, var, ref, session, &k), QE_OK);
    k.n = 5;
    k.kld.mean = 9;
    ck_assert_int_eq(qe_store_put_kld(st, var, ref, session, &k), QE_OK); /* fewer tokens: kept */
    ck_assert_double_eq(q_double(db, "SELECT kld_mean FROM kld"), 0.25);
    k.n = 20;
    k.kld.mean = 0.5;
    ck_assert_int_eq(qe_store_put_kld(st, var, ref, session, &k), QE_OK); /* more: replaces */
    ck_assert_double_eq(q_double(db, "SELECT kld_mean FROM v_kld"), 0.5);
    ck_assert_double_eq(q_double(db, "SELECT kld_p99 FROM v_kld"), 0.9);
    ck_assert_double_eq(q_double(db, "SELECT same_top_pct FROM v_kld"), 87.5);
    ck_assert_int_eq(q_int(db, "SELECT ppl_q IS NULL FROM v_kld"), 1);
    char w[32];
    q_text(db, "SELECT ref_weights FROM v_kld", w, sizeof w);
    ck_assert_str_eq(w, "f32");
    snprintf(sql, sizeof sql, "SELECT kld_mean FROM v_format_matrix WHERE run_key = '%s'", var);
    ck_assert_double_eq(q_double(db, sql), 0.5);

    ck_assert_int_eq(qe_store_add_timing(st, var, session, "prefill", 1.5, 100, 1), QE_OK);
    ck_assert_int_eq(qe_store_add_timing(st, var, session, "prefill", 0.25, 28, 1), QE_OK);
    ck_assert_double_eq(q_double(db, "SELECT seconds FROM timings WHERE phase = 'prefill'"), 1.75);
    ck_assert_int_eq(q_int(db, "SELECT n_tokens FROM timings"), 128);
    ck_assert_int_eq(q_int(db, "SELECT n_calls FROM timings"), 2);
    ck_assert_int_eq(qe_store_add_timing(st, var, session, "", 1, 0, 0), QE_EINVAL);
    qe_store_close(st);
}
END_TEST

START_TEST(test_logits)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    enum { NV = 3000 };
    static float logits[2][NV];
    for (int v = 0; v < NV; v++) {
        logits[0][v] = (float)((v * 37) % 200 - 100) / 8.0f; /* exact in f16 */
        logits[1][v] = -(float)(v % 64) * 0.25f;
    }
    int32_t pos[2] = {64, 70};
    struct chunk_data cd;
    fill_chunk(&cd, 0, 63, 2);
    cd.c.n_logits = 2;
    cd.c.n_vocab = NV;
    cd.c.logit_pos = pos;
    cd.c.logits = &logits[0][0];
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_OK);
    sqlite3 *db = qe_store_sqlite(st);
    ck_assert_int_lt(q_int(db, "SELECT length(data) FROM logits WHERE pos = 70"), 2 * NV / 4);
    for (int i = 0; i < 2; i++) {
        float *got;
        int nv;
        ck_assert_int_eq(qe_store_get_logits(st, run, 0, pos[i], &got, &nv), QE_OK);
        ck_assert_int_eq(nv, NV);
        ck_assert_mem_eq(got, logits[i], sizeof logits[i]);
        free(got);
    }
    float *got;
    int nv;
    ck_assert_int_eq(qe_store_get_logits(st, run, 0, 65, &got, &nv), QE_ENOTFOUND);
    ck_assert_int_eq(sqlite3_exec(db, "UPDATE logits SET data = x'789c0300000000' WHERE pos = 64",
                                  NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(qe_store_get_logits(st, run, 0, 64, &got, &nv), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "does not inflate to 3000 halves"));
    /* positions outside the scored range are refused */
    pos[1] = 10;
    cd.c.chunk = 1;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "logit position 10 outside"));
    qe_store_close(st);
}
END_TEST

/* ---- merge ---- */

START_TEST(test_merge_union)
{
    char sa[65], sb[65], run[65], run_b[65];
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/a.db", tmp);
    snprintf(pb, sizeof pb, "%s/b.db", tmp);
    qe_store *a = make_store(pa, sa, run);
    qe_store *b = make_store(pb, sb, run_b);
    ck_assert_str_eq(run, run_b); /* same config, same key in both */
    ck_assert_int_eq(qe_store_run_plan(a, run, 600, 4), QE_OK);
    ck_assert_int_eq(qe_store_run_plan(b, run, 600, 4), QE_OK);
    struct chunk_data cd;
    /* a: chunks 0 1; b: chunks 1 2 3 (chunk 1 identical), plus a second run */
    for (int64_t ch = 0; ch < 2; ch++) {
        fill_chunk(&cd, ch, 30, 7);
        ck_assert_int_eq(qe_store_put_chunk(a, run, sa, &cd.c, NULL), QE_OK);
    }
    for (int64_t ch = 1; ch < 4; ch++) {
        fill_chunk(&cd, ch, 30, 7);
        ck_assert_int_eq(qe_store_put_chunk(b, run, sb, &cd.c, NULL), QE_OK);
    }
    qe_store_run_config c = base_config();
    c.kv_k = c.kv_v = "q8_0";
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_begin(b, &c, run, sb, &r), QE_OK);
    fill_chunk(&cd, 0, 30, 8);
    ck_assert_int_eq(qe_store_put_chunk(b, r.run_key, sb, &cd.c, NULL), QE_OK);
    qe_store_resume_free(&r);
    qe_store_close(b);
    uint8_t before[32], after[32];
    ck_assert_int_eq(qe_hash_sha256_file(pb, before), QE_OK);

    qe_store_merge_stats ms;
    /* with the progress line (stderr), which follows the token rows' batches */
    ck_assert_int_eq(qe_store_merge(a, pb, QE_STORE_MERGE_PROGRESS, &ms), QE_OK);
    ck_assert_int_eq(ms.models, 0);
    ck_assert_int_eq(ms.datasets, 0);
    ck_assert_int_eq(ms.sessions, 1);
    ck_assert_int_eq(ms.runs, 1);
    ck_assert_int_eq(ms.chunks, 3); /* 2 3 and the second run's 0 */
    ck_assert_int_eq(ms.tokens, 90);
    ck_assert_int_eq(ms.conflicts, 0);
    sqlite3 *db = qe_store_sqlite(a);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM runs"), 2);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM chunks"), 5);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), 5 * 30);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM (SELECT DISTINCT run_key, chunk, pos FROM tokens)"), 150);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT status FROM runs WHERE run_key = '%s'", run);
    char status[32];
    q_text(db, sql, status, sizeof status);
    ck_assert_str_eq(status, "done"); /* all 4 planned chunks are here now */
    /* merging again adds nothing; the input was not modified */
    ck_assert_int_eq(qe_store_merge(a, pb, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.runs + ms.chunks + ms.tokens + ms.sessions, 0);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), 150);
    ck_assert_int_eq(qe_hash_sha256_file(pb, after), QE_OK);
    ck_assert_mem_eq(before, after, 32);
    qe_store_close(a);
    ck_assert(integrity_ok(pa));
}
END_TEST

START_TEST(test_merge_conflicts_and_errors)
{
    char sa[65], sb[65], run[65];
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/a.db", tmp);
    snprintf(pb, sizeof pb, "%s/b.db", tmp);
    qe_store *a = make_store(pa, sa, run);
    qe_store *b = make_store(pb, sb, run);
    struct chunk_data cd;
    fill_chunk(&cd, 0, 30, 7);
    ck_assert_int_eq(qe_store_put_chunk(a, run, sa, &cd.c, NULL), QE_OK);
    float kept = cd.logprob[0];
    fill_chunk(&cd, 0, 30, 9); /* same chunk, other numbers (another device) */
    ck_assert_int_eq(qe_store_put_chunk(b, run, sb, &cd.c, NULL), QE_OK);
    qe_store_close(b);
    qe_store_merge_stats ms;
    ck_assert_int_eq(qe_store_merge(a, pb, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.conflicts, 1);
    ck_assert_int_eq(ms.chunks, 0);
    ck_assert((float)q_double(qe_store_sqlite(a), "SELECT logprob FROM tokens WHERE pos = 64") == kept);
    /* errors */
    ck_assert_int_eq(qe_store_merge(a, pa, 0, &ms), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "is the destination database itself"));
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/none.db", tmp);
    ck_assert_int_eq(qe_store_merge(a, missing, 0, &ms), QE_EIO);
    const char *junk = "not sqlite at all, just some text that is long enough to look like a "
                       "file with a header...........................";
    char *txt = qe_test_write(tmp, "x.db", junk, strlen(junk));
    ck_assert_int_ne(qe_store_merge(a, txt, 0, &ms), QE_OK);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "x.db"));
    free(txt);
    /* an older schema */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(pb, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(qe_store_merge(a, pb, 0, &ms), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "schema version 1"));
    /* a name with URI characters */
    char odd[4200];
    snprintf(odd, sizeof odd, "%s/odd?name#%%.db", tmp);
    qe_store *o = make_store(odd, sb, run);
    qe_store_close(o);
    ck_assert_int_eq(qe_store_merge(a, odd, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.sessions, 1);
    qe_store_close(a);
    ck_assert(integrity_ok(pa));
}
END_TEST

/* Run sql on the database file at path, foreign keys and CHECK
 * constraints off, as any tool editing it by hand may have them. */
static void edit_db(const char *path, const char *sql)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1", NULL, NULL, NULL),
                     SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* A source with qeval's application id and version but tables or rows
 * qeval does not write is refused as a whole: exit 3's status, a message
 * naming the source, the destination as it was. */
START_TEST(test_merge_hand_edited)
{
    char sa[65], sb[65], run[65];
    char pa[4200], pb[4200], pc[4200];
    snprintf(pa, sizeof pa, "%s/a.db", tmp);
    qe_store *a = make_store(pa, sa, run);
    sqlite3 *db = qe_store_sqlite(a);
    struct chunk_data cd;
    static const char *const edits[] = {
        /* two columns' names swapped: SELECT * would put n_top1 under n_scored */
        "ALTER TABLE chunks RENAME COLUMN n_scored TO x; "
        "ALTER TABLE chunks RENAME COLUMN n_top1 TO n_scored; "
        "ALTER TABLE chunks RENAME COLUMN x TO n_top1",
        /* a column added */
        "ALTER TABLE timings ADD COLUMN note TEXT",
        /* a view in a table's place */
        "ALTER TABLE kld RENAME TO kld_old; CREATE VIEW kld AS SELECT * FROM kld_old",
        /* a table gone */
        "DROP TABLE gen_steps",
        /* rows: a run whose session is not there (the destination has another) */
        "DELETE FROM sessions",
        /* a value its CHECK forbids, in a table copied by plain INSERT */
        "UPDATE runs SET n_ctx = 0",
        /* a NULL key (a rowid table's TEXT primary key takes one), which would
           never conflict and so be copied again by every merge */
        "UPDATE sessions SET session_key = NULL",
        /* text where qeval writes integers: a reader would take it as 0 */
        "UPDATE runs SET n_chunks = 'four'",
        /* a chunk past its run's plan, which a resumed job refuses */
        "UPDATE chunks SET chunk = 7",
        /* counts past what qeval writes: the comparison's sums overflowed
           (fuzz/fuzz_merge.c) */
        "UPDATE chunks SET n_scored = 9223372036854775807",
        "UPDATE chunks SET n_top1 = n_scored + 1",
    };
    static const char *const says[] = {"table chunks is not the one schema version",
                                       "table timings is not", "table kld is not",
                                       "table gen_steps is not", "a row breaks qeval's schema",
                                       "a row breaks qeval's schema",
                                       "table sessions: a row without its key",
                                       "table runs, column n_chunks: a value of a type",
                                       "chunk 7 outside its plan of 4 chunks",
                                       "chunk 0 scores 9223372036854775807 positions",
                                       "top-1 hits (expected 0 <= hits <= positions"};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        snprintf(pb, sizeof pb, "%s/b%zu.db", tmp, i);
        qe_store *b = make_store(pb, sb, run);
        qe_store_run_config c = base_config();
        c.kv_k = c.kv_v = "q8_0"; /* a run a lacks, so that its row is copied */
        qe_store_resume r;
        ck_assert_int_eq(qe_store_run_begin(b, &c, run, sb, &r), QE_OK);
        ck_assert_int_eq(qe_store_run_plan(b, r.run_key, 600, 4), QE_OK);
        fill_chunk(&cd, 0, 30, 8);
        ck_assert_int_eq(qe_store_put_chunk(b, r.run_key, sb, &cd.c, NULL), QE_OK);
        qe_store_resume_free(&r);
        qe_store_close(b);
        /* the untouched copy merges */
        snprintf(pc, sizeof pc, "%s/c%zu.db", tmp, i);
        qe_store *c2 = make_store(pc, sb, run);
        qe_store_close(c2);
        edit_db(pb, edits[i]);
        const long long runs = q_int(db, "SELECT count(*) FROM runs"),
                        sessions = q_int(db, "SELECT count(*) FROM sessions");
        qe_store_merge_stats ms;
        ck_assert_msg(qe_store_merge(a, pb, 0, &ms) == QE_ECORRUPT, "edit %zu merged", i);
        ck_assert_msg(strstr(qe_errmsg(), says[i]) && strncmp(qe_errmsg(), pb, strlen(pb)) == 0,
                      "edit %zu: %s", i, qe_errmsg());
        ck_assert_int_eq(q_int(db, "SELECT count(*) FROM runs"), runs);
        ck_assert_int_eq(q_int(db, "SELECT count(*) FROM sessions"), sessions);
        ck_assert_int_eq(qe_store_merge(a, pc, 0, &ms), QE_OK);
    }
    /* a header SQLite does not read (the read format version, byte 19): an
       input at fault, not a failure to read it (exit 3, not 1) */
    FILE *f = fopen(pc, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 19, SEEK_SET), 0);
    ck_assert_int_ne(fputc(9, f), EOF);
    ck_assert_int_eq(fclose(f), 0);
    qe_store_merge_stats ms;
    ck_assert_int_eq(qe_store_merge(a, pc, 0, &ms), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "cannot attach"));
    qe_store_close(a);
    ck_assert(integrity_ok(pa));
}
END_TEST

/* n bench rows through lib/bench's writer (keys from content), each a
 * different pp size; the first carries two per-kernel times. `tag` names
 * the model, so two databases' rows differ. */
static void put_bench_rows(const char *path, const char *tag, int n)
{
    qe_bench_db *db = NULL;
    ck_assert_int_eq(qe_bench_db_open(path, &db), QE_OK);
    qe_bench_env env;
    memset(&env, 0, sizeof env);
    snprintf(env.model_path, sizeof env.model_path, "/m/%s.gguf", tag);
    snprintf(env.model_name, sizeof env.model_name, "%s", tag);
    snprintf(env.device, sizeof env.device, "cpu0");
    snprintf(env.driver, sizeof env.driver, "pocl 5");
    snprintf(env.platform, sizeof env.platform, "Portable Computing Language");
    env.build_commit = "abc123";
    env.version = "0.1.0";
    qe_bench_opts o = qe_bench_opts_default();
    static const qe_cl_kernel_time kt[2] = {{"matmul", 12, 3000}, {"rmsnorm", 4, 200}};
    for (int i = 0; i < n; i++) {
        const double sec[2] = {0.5 + i, 0.25 + i}, tps[2] = {32 / sec[0], 32 / sec[1]};
        qe_bench_result r;
        memset(&r, 0, sizeof r);
        r.n_prompt = 16 << i;
        snprintf(r.test, sizeof r.test, "pp%d", r.n_prompt);
        r.n_batch = 1;
        r.gemm = i % 2 ? "mma" : "f32";
        r.weights = "file";
        r.kv_k = r.kv_v = QE_KV_F16;
        r.n_ctx = r.n_prompt;
        r.n_params = 1000;
        r.weight_bytes = 4000;
        r.n_tokens = r.n_prompt;
        r.reps = 2;
        r.seconds = sec;
        r.tps = tps;
        qe_bench_mean_sd(tps, 2, &r.mean_tps, &r.stddev_tps);
        r.kernels = i == 0 ? kt : NULL;
        r.n_kernels = i == 0 ? 2 : 0;
        ck_assert_int_eq(qe_bench_db_put(db, &env, &o, &r), QE_OK);
    }
    qe_bench_db_close(db);
}

/* Rows of table in database `other` (ATTACHed to db) that db lacks. */
static long long missing_rows(sqlite3 *db, const char *other, const char *table)
{
    char sql[600];
    snprintf(sql, sizeof sql, "ATTACH DATABASE '%s' AS other", other);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT * FROM other.%s EXCEPT SELECT * FROM main.%s)", table,
             table);
    long long n = q_int(db, sql);
    ck_assert_int_eq(sqlite3_exec(db, "DETACH DATABASE other", NULL, NULL, NULL), SQLITE_OK);
    return n;
}

/* Bench rows of both inputs end up in the destination once, with their
 * kernel times; merging again adds nothing. b holds a's rows too (merged
 * into it before its own were added), so the overlap is exercised. */
START_TEST(test_merge_bench)
{
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/a.db", tmp);
    snprintf(pb, sizeof pb, "%s/b.db", tmp);
    put_bench_rows(pa, "alpha", 2);
    qe_store *b = NULL;
    ck_assert_int_eq(qe_store_open(pb, 0, 0, &b), QE_OK);
    qe_store_merge_stats ms;
    ck_assert_int_eq(qe_store_merge(b, pa, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.bench, 2);
    qe_store_close(b);
    put_bench_rows(pb, "beta", 3);

    qe_store *a = NULL;
    ck_assert_int_eq(qe_store_open(pa, 0, 0, &a), QE_OK);
    sqlite3 *db = qe_store_sqlite(a);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM bench"), 2);
    ck_assert_int_eq(qe_store_merge(a, pb, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.bench, 3); /* beta's; alpha's were there */
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM bench"), 5);
    ck_assert_int_eq(q_int(db, "SELECT count(DISTINCT model_name || test) FROM bench"), 5);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM bench_kernels"), 4); /* 2 per tag */
    ck_assert_int_eq(missing_rows(db, pb, "bench"), 0);
    ck_assert_int_eq(missing_rows(db, pb, "bench_kernels"), 0);
    /* again: nothing new */
    ck_assert_int_eq(qe_store_merge(a, pb, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.bench, 0);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM bench"), 5);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM bench_kernels"), 4);
    qe_store_close(a);
    ck_assert(integrity_ok(pa));
}
END_TEST

/* ---- failures that must leave the database valid ---- */

START_TEST(test_disk_full)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    sqlite3 *db = qe_store_sqlite(st);
    long long pages = q_int(db, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", pages + 12);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    struct chunk_data cd;
    qe_status r = QE_OK;
    int64_t ch;
    for (ch = 0; ch < 1000 && r == QE_OK; ch++) {
        fill_chunk(&cd, ch, 63, 4);
        r = qe_store_put_chunk(st, run, session, &cd.c, NULL);
    }
    ck_assert_int_eq(r, QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.db: storing a"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "database or disk is full"));
    int64_t stored = ch - 1;
    ck_assert_int_gt(stored, 0);
    /* whole chunks only: the failed one left nothing behind */
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM chunks"), stored);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), stored * 63);
    qe_store_close(st);
    ck_assert(integrity_ok(dbpath));
    ck_assert_int_eq(qe_store_open(dbpath, 0, 0, &st), QE_OK);
    fill_chunk(&cd, stored, 63, 4);
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_OK);
    qe_store_close(st);
}
END_TEST

START_TEST(test_file_size_limit)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    qe_store_close(st);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* child: writes may not grow any file beyond 256 KiB */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {256 * 1024, 256 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        qe_store *c;
        if (qe_store_open(dbpath, 0, 0, &c) != QE_OK)
            _exit(10);
        struct chunk_data cd;
        qe_status r = QE_OK;
        for (int64_t ch = 0; ch < 100000 && r == QE_OK; ch++) {
            fill_chunk(&cd, ch, 63, 4);
            r = qe_store_put_chunk(c, run, session, &cd.c, NULL);
        }
        int ok = r == QE_EIO && strstr(qe_errmsg(), "t.db") && (strstr(qe_errmsg(), "File too large") || strstr(qe_errmsg(), "ulimit -f"));
        if (!ok)
            fprintf(stderr, "child: %d %s\n", r, qe_errmsg());
        qe_store_close(c);
        _exit(ok ? 0 : 11);
    }
    int ws;
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert(WIFEXITED(ws));
    ck_assert_int_eq(WEXITSTATUS(ws), 0);
    ck_assert(integrity_ok(dbpath));
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    long long chunks = q_int(db, "SELECT count(*) FROM chunks");
    ck_assert_int_gt(chunks, 0);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens"), chunks * 63);
    sqlite3_close(db);
}
END_TEST

START_TEST(test_read_only)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    qe_store_close(st);
    /* a read-only handle refuses writes and leaves the file alone */
    ck_assert_int_eq(qe_store_open(dbpath, QE_STORE_READONLY, 0, &st), QE_OK);
    qe_store_model m = {"ab00000000000000000000000000000000000000000000000000000000000001", "x",
                        "/x", "gguf", "llama", 1, 1, 1, NULL, NULL};
    ck_assert_int_eq(qe_store_put_model(st, &m), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "read-only"));
    qe_store_merge_stats ms;
    ck_assert_int_eq(qe_store_merge(st, dbpath, 0, &ms), QE_EINVAL);
    qe_store_close(st);
    /* a file without write permission: checked as an unprivileged user,
     * since root may write anything */
    ck_assert_int_eq(chmod(tmp, 0755), 0);
    ck_assert_int_eq(chmod(dbpath, 0444), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
            _exit(10);
        qe_store *c = NULL;
        qe_status r = qe_store_open(dbpath, 0, 0, &c);
        int ok = r == QE_EIO && strstr(qe_errmsg(), "the database file is read-only");
        if (!ok)
            fprintf(stderr, "child: %d %s\n", r, qe_errmsg());
        qe_store_close(c);
        _exit(ok ? 0 : 11);
    }
    int ws;
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert(WIFEXITED(ws));
    ck_assert_int_eq(WEXITSTATUS(ws), 0);
    ck_assert_int_eq(chmod(dbpath, 0644), 0);
    ck_assert(integrity_ok(dbpath));
}
END_TEST

START_TEST(test_limits)
{
    char session[65], run[65];
    qe_store *st = make_store(dbpath, session, run);
    struct chunk_data cd;
    fill_chunk(&cd, 0, 10, 1);
    cd.c.logprob = NULL;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "target, logprob and argmax are required"));
    fill_chunk(&cd, 0, 10, 1);
    cd.logprob[3] = NAN;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "logprob[3]"));
    fill_chunk(&cd, 0, 10, 1);
    cd.logprob[3] = 0.5f;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    fill_chunk(&cd, -1, 10, 1);
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    fill_chunk(&cd, 0, 10, 1);
    cd.c.topk_id = NULL;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    fill_chunk(&cd, 0, 10, 1);
    char *none[10] = {0};
    cd.c.topk_json = none;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "topk_json[0] is NULL"));
    fill_chunk(&cd, 0, 10, 1);
    cd.c.seconds = -1;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_EINVAL);
    fill_chunk(&cd, 0, 10, 1);
    ck_assert_int_eq(qe_store_put_chunk(st, "xyz", session, &cd.c, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_store_put_chunk(st, "ff00000000000000000000000000000000000000000000000000000000000000",
                                        session, &cd.c, NULL), QE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "is not stored"));
    /* -inf log-probs (probability 0) are valid: stored as NULL, PPL infinite */
    fill_chunk(&cd, 0, 10, 1);
    cd.logprob[0] = -INFINITY;
    ck_assert_int_eq(qe_store_put_chunk(st, run, session, &cd.c, NULL), QE_OK);
    sqlite3 *db = qe_store_sqlite(st);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM tokens WHERE logprob IS NULL"), 1);
    ck_assert(isinf(q_double(db, "SELECT nll_sum FROM chunks")));
    qe_store_resume r;
    ck_assert_int_eq(qe_store_run_resume(st, "ff00000000000000000000000000000000000000000000000000000000000000", &r), QE_ENOTFOUND);
    ck_assert_int_eq(qe_store_run_plan(st, run, -1, 3), QE_EINVAL);
    ck_assert_int_eq(qe_store_put_dataset_tokens(st, DATA_KEY, "nothex", 10, DATA_KEY), QE_EINVAL);
    ck_assert_int_eq(qe_store_put_dataset_tokens(st, DATA_KEY, MODEL_KEY, 10, DATA_KEY), QE_OK);
    ck_assert_int_eq(q_int(db, "SELECT n_tokens FROM dataset_tokens"), 10);
    ck_assert_int_eq(q_int(db, "SELECT count(*) FROM dataset_skipped WHERE row = 7"), 1);
    ck_assert_int_eq(qe_store_session_end(st, session), QE_OK);
    ck_assert_int_eq(q_int(db, "SELECT ended_at IS NOT NULL FROM sessions"), 1);
    /* a session without a gemm is the C reference's */
    ck_assert_int_eq(q_int(db, "SELECT gemm = '-' FROM sessions"), 1);
    qe_store_close(st);
}
END_TEST

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_open_pragmas);
    tcase_add_test(tc, test_migrate_every_old_version);
    tcase_add_test(tc, test_run_key);
    tcase_add_test(tc, test_resume_and_idempotent_chunks);
    tcase_add_test(tc, test_views_match_independent_math);
    tcase_add_test(tc, test_format_matrix_and_kld);
    tcase_add_test(tc, test_logits);
    tcase_add_test(tc, test_merge_union);
    tcase_add_test(tc, test_merge_conflicts_and_errors);
    tcase_add_test(tc, test_merge_hand_edited);
    tcase_add_test(tc, test_merge_bench);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_set_timeout(lim, 60);
    tcase_add_test(lim, test_foreign_files);
    tcase_add_test(lim, test_disk_full);
    tcase_add_test(lim, test_file_size_limit);
    tcase_add_test(lim, test_read_only);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
