/* check_jobgen.c - [generate] in job files: `qeval run`'s generation runs
 * (lib/runner.c + lib/jobeval.c qe_jobeval_generate) into a real SQLite
 * store, on PoCL through the shared test context.
 *
 * Expectations come from outside the code under test: the tokenizer turns
 * the stored ids back into the stored text; greedy picks the top candidate;
 * divergence and exact-match rates are recounted in C from the stored id
 * blobs; a prompt alone and inside a batch of 16 must agree; resumed,
 * sharded and merged databases must hold the rows of one uninterrupted run.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobeval.h"
#include "job.h"
#include "runner.h"
#include "store.h"
#include "testutil.h"
#include "tokenizer.h"

#define PROMPTS "tests/fixtures/gen_prompts.jsonl"

static char *dir;

static void setup(void) { dir = qe_test_tmpdir(); }
static void teardown(void)
{
    qe_test_rmtree(dir);
    free(dir);
}

/* A job over prompts_path: reference f32/f32 plus the given sweep lines. */
static qe_job *make_job(const char *prompts_path, const char *sweep, int slots, int max_new)
{
    char text[2048];
    snprintf(text, sizeof text,
             "[job]\nname = jobgen\ntop_k = 4\n"
             "[model s]\npath = %s\n"
             "[dataset p]\npath = %s\nfield = prompt\n"
             "[sweep]\nreference = f32\n%s"
             "[generate]\nprompts = p\nmax_new_tokens = %d\nslots = %d\n",
             qe_test_data("models/stories260K.gguf"), prompts_path, sweep, max_new, slots);
    qe_job *j = NULL;
    qe_status r = qe_job_parse_string(text, strlen(text), "gen.ini", 0, &j);
    ck_assert_msg(r == QE_OK, "%s", qe_errmsg());
    return j;
}

static qe_status run_job(const qe_job *j, const char *db, int64_t max_prompts, int shard_i,
                         int shard_n, qe_runner_stats *s)
{
    qe_jobeval_opts eo = {NULL, 0, qe_test_cl(), 0};
    qe_runner_opts o = {qe_jobeval_run, &eo, NULL, 0, db, "test-device", "test-driver",
                        shard_i, shard_n, 0, qe_jobeval_generate, NULL, max_prompts, "f32"};
    return qe_runner_run(j, &o, s);
}

static void must_run(const qe_job *j, const char *db, int64_t max_prompts, qe_runner_stats *s)
{
    qe_status r = run_job(j, db, max_prompts, 0, 0, s);
    ck_assert_msg(r == QE_OK, "%s", qe_errmsg());
}

static char *path_in(const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static qe_store *open_ro(const char *path)
{
    qe_store *st = NULL;
    ck_assert_int_eq(qe_store_open(path, QE_STORE_READONLY, 0, &st), QE_OK);
    return st;
}

/* ids blob -> int32 array (little-endian), *n entries */
static int32_t *blob_ids(const void *b, int bytes, int *n)
{
    ck_assert_int_eq(bytes % 4, 0);
    *n = bytes / 4;
    int32_t *v = malloc((size_t)(*n ? *n : 1) * 4);
    const unsigned char *p = b;
    for (int i = 0; i < *n; i++)
        v[i] = (int32_t)((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
    return v;
}

/* Independent first-divergence position of two id arrays (-1: identical). */
static int diverge(const int32_t *a, int na, const int32_t *b, int nb)
{
    int m = na < nb ? na : nb;
    for (int i = 0; i < m; i++)
        if (a[i] != b[i])
            return i;
    return na == nb ? -1 : m;
}

/* All (gen_key, prompt_index, ids, text) rows in key order, as one string,
 * for comparing databases. */
static char *dump(const char *path)
{
    qe_store *st = open_ro(path);
    sqlite3_stmt *s = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(qe_store_sqlite(st),
                                        "SELECT gen_key, prompt_index, hex(ids), text, finish, "
                                        "(SELECT group_concat(hex(topk_ids) || hex(topk_logp) || "
                                        "quote(logp), ',') FROM (SELECT * FROM gen_tokens t WHERE "
                                        "t.prompt_key = p.prompt_key ORDER BY pos)) "
                                        "FROM gen_prompts p ORDER BY 1, 2", -1, &s, NULL),
                     SQLITE_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    while (sqlite3_step(s) == SQLITE_ROW)
        fprintf(f, "%s|%d|%s|%s|%s|%s\n", sqlite3_column_text(s, 0), sqlite3_column_int(s, 1),
                sqlite3_column_text(s, 2), sqlite3_column_text(s, 3), sqlite3_column_text(s, 4),
                sqlite3_column_text(s, 5));
    fclose(f);
    sqlite3_finalize(s);
    qe_store_close(st);
    return buf;
}

/* The fixture on f32, q8_0 and q4_0 weights x f32 and tq4 KV: every row,
 * the text, the top-k, the divergence view and the exact-match rate. */
START_TEST(test_formats)
{
    qe_job *j = make_job(PROMPTS, "weights = q8_0, q4_0\nkv = f32, tq4\n", 16, 16);
    ck_assert_uint_eq(j->n_runs, 0);
    ck_assert_uint_eq(j->n_gen_runs, 6);
    char *db = path_in("g.db");
    qe_runner_stats s;
    must_run(j, db, 0, &s);
    ck_assert_uint_eq(s.gen_evaluated, 6);
    ck_assert_int_eq(s.prompts_sent, 6 * 16);

    qe_store *st = open_ro(db);
    sqlite3 *q = qe_store_sqlite(st);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_runs"), 6);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_runs WHERE status = 'done'"), 6);
    ck_assert_int_eq(q_int(q, "SELECT count(DISTINCT weights || '/' || kv_k) FROM gen_runs"), 6);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM (SELECT weights, kv_k FROM gen_runs "
                              "WHERE (weights, kv_k) IN (VALUES ('f32','f32'), ('q8_0','f32'), "
                              "('q4_0','f32'), ('f32','tq4')))"), 4);
    /* one row per prompt and format, one token row per generated id */
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_prompts"), 6 * 16);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM (SELECT gen_key FROM gen_prompts GROUP BY "
                              "gen_key HAVING count(DISTINCT prompt_index) = 16)"), 6);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_prompts WHERE length(text) = 0"), 0);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_prompts WHERE length(ids) != 4 * n_gen "
                              "OR n_gen < 1 OR n_gen > 16"), 0);
    ck_assert_int_eq(q_int(q, "SELECT sum(n_gen) FROM gen_prompts"),
                     q_int(q, "SELECT count(*) FROM gen_tokens"));
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_tokens WHERE length(topk_ids) != 16 "
                              "OR length(topk_logp) != 16"), 0);
    /* greedy: the generated token is the first candidate */
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_tokens t JOIN gen_prompts p ON "
                              "p.prompt_key = t.prompt_key WHERE substr(p.ids, 4 * t.pos + 1, 4) "
                              "!= substr(t.topk_ids, 1, 4)"), 0);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_steps"), q_int(q,
                     "SELECT count(*) FROM gen_steps WHERE n_seqs >= 1 AND n_seqs <= 16 AND "
                     "n_tokens >= n_seqs AND seconds >= 0"));
    ck_assert_int_ge(q_int(q, "SELECT count(*) FROM gen_steps WHERE prefill = 1"), 6);
    /* decode steps of the batch hold up to 16 sequences at once */
    ck_assert_int_eq(q_int(q, "SELECT max(n_seqs) FROM gen_steps WHERE prefill = 0"), 16);

    qe_tokenizer *tok = NULL;
    ck_assert_int_eq(qe_tokenizer_open(qe_test_data("models/stories260K.gguf"), &tok), QE_OK);
    sqlite3_stmt *r = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(q,
        "SELECT p.ids, p.text, p.finish, b.ids, v.diverge_pos, p.prompt_key, g.ref_gen_key "
        "FROM gen_prompts p JOIN gen_runs g ON g.gen_key = p.gen_key "
        "JOIN gen_prompts b ON b.gen_key = coalesce(g.ref_gen_key, g.gen_key) "
        "AND b.prompt_index = p.prompt_index "
        "JOIN v_gen_divergence v ON v.prompt_key = p.prompt_key ORDER BY p.gen_key", -1, &r, NULL),
        SQLITE_OK);
    int rows = 0, refs = 0;
    while (sqlite3_step(r) == SQLITE_ROW) {
        int n, nb;
        int32_t *ids = blob_ids(sqlite3_column_blob(r, 0), sqlite3_column_bytes(r, 0), &n);
        int32_t *ref = blob_ids(sqlite3_column_blob(r, 3), sqlite3_column_bytes(r, 3), &nb);
        const char *text = (const char *)sqlite3_column_text(r, 1);
        /* the stored ids decode to the stored text (decode drops the SPM
         * dummy-prefix space at the very start) */
        char *dec = NULL;
        size_t dl = 0;
        ck_assert_int_eq(qe_tokenizer_decode(tok, ids, (size_t)n, 0, &dec, &dl), QE_OK);
        ck_assert_msg(!strcmp(text, dec) || (text[0] == ' ' && !strcmp(text + 1, dec)),
                      "text '%s' vs decoded '%s'", text, dec);
        free(dec);
        ck_assert_str_eq((const char *)sqlite3_column_text(r, 2),
                         n == 16 ? "length" : "eos");
        /* the view's divergence equals an independent comparison */
        int want = diverge(ids, n, ref, nb);
        ck_assert_int_eq(sqlite3_column_int(r, 4), want);
        if (sqlite3_column_type(r, 6) == SQLITE_NULL) {
            refs++;
            ck_assert_int_eq(sqlite3_column_int(r, 4), -1);
        }
        free(ids);
        free(ref);
        rows++;
    }
    sqlite3_finalize(r);
    ck_assert_int_eq(rows, 6 * 16);
    ck_assert_int_eq(refs, 16);

    /* exact-match rate per variant = an independent count over the blobs */
    ck_assert_int_eq(sqlite3_prepare_v2(q,
        "SELECT s.gen_key, s.exact_match, s.min_diverge, s.prompts_done, s.is_reference "
        "FROM v_gen_summary s", -1, &r, NULL), SQLITE_OK);
    int n_sum = 0;
    while (sqlite3_step(r) == SQLITE_ROW) {
        n_sum++;
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT p.ids, b.ids FROM gen_prompts p JOIN gen_runs g ON g.gen_key = p.gen_key "
                 "JOIN gen_prompts b ON b.gen_key = coalesce(g.ref_gen_key, g.gen_key) AND "
                 "b.prompt_index = p.prompt_index WHERE p.gen_key = '%s'",
                 (const char *)sqlite3_column_text(r, 0));
        sqlite3_stmt *e = NULL;
        ck_assert_int_eq(sqlite3_prepare_v2(q, sql, -1, &e, NULL), SQLITE_OK);
        int same = 0, total = 0, min_div = 1 << 30;
        while (sqlite3_step(e) == SQLITE_ROW) {
            int na, nb;
            int32_t *a = blob_ids(sqlite3_column_blob(e, 0), sqlite3_column_bytes(e, 0), &na);
            int32_t *b = blob_ids(sqlite3_column_blob(e, 1), sqlite3_column_bytes(e, 1), &nb);
            int d = diverge(a, na, b, nb);
            same += d < 0;
            if (d >= 0 && d < min_div)
                min_div = d;
            total++;
            free(a);
            free(b);
        }
        sqlite3_finalize(e);
        ck_assert_int_eq(total, 16);
        ck_assert_int_eq(sqlite3_column_int(r, 3), 16);
        ck_assert_double_eq_tol(sqlite3_column_double(r, 1), (double)same / total, 1e-12);
        if (sqlite3_column_int(r, 4))
            ck_assert_int_eq(same, 16);
        if (same < total)
            ck_assert_int_eq(sqlite3_column_int(r, 2), min_div);
        else
            ck_assert_int_eq(sqlite3_column_type(r, 2), SQLITE_NULL);
    }
    sqlite3_finalize(r);
    ck_assert_int_eq(n_sum, 6);
    qe_tokenizer_close(tok);
    qe_store_close(st);
    free(db);
    qe_job_free(j);
}
END_TEST

/* A prompt generated alone (a 1-prompt job, 1 slot) and inside the batch of
 * 16 (16 slots) gives the same greedy ids, text and top-k. */
START_TEST(test_alone_vs_batch)
{
    const int pick = 10; /* the longest prompt of the fixture */
    FILE *f = fopen(PROMPTS, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    for (int i = 0; i <= pick; i++)
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    char *one = qe_test_write(dir, "one.jsonl", line, strlen(line));
    qe_job *jb = make_job(PROMPTS, "kv = f32\n", 16, 16);
    qe_job *ja = make_job(one, "kv = f32\n", 1, 16);
    char *dbb = path_in("batch.db"), *dba = path_in("alone.db");
    qe_runner_stats s;
    must_run(jb, dbb, 0, &s);
    must_run(ja, dba, 0, &s);
    ck_assert_int_eq(s.prompts_sent, 1);
    const char *sql = "SELECT hex(ids) || '|' || text || '|' || (SELECT group_concat(hex(topk_ids)"
                      ", '') FROM (SELECT topk_ids FROM gen_tokens t WHERE t.prompt_key = "
                      "p.prompt_key ORDER BY pos)) FROM gen_prompts p WHERE prompt_index = ?1";
    char *got[2];
    const char *dbs[2] = {dbb, dba};
    for (int k = 0; k < 2; k++) {
        qe_store *st = open_ro(dbs[k]);
        sqlite3_stmt *q = NULL;
        ck_assert_int_eq(sqlite3_prepare_v2(qe_store_sqlite(st), sql, -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_int(q, 1, k == 0 ? pick : 0);
        ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
        got[k] = strdup((const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        qe_store_close(st);
    }
    ck_assert_str_eq(got[0], got[1]);
    free(got[0]);
    free(got[1]);
    free(one);
    free(dba);
    free(dbb);
    qe_job_free(ja);
    qe_job_free(jb);
}
END_TEST

/* Stopped after 5 prompts (a limit), then resumed: the same rows as one
 * uninterrupted run, nothing twice; a third run generates nothing. */
START_TEST(test_resume)
{
    qe_job *j = make_job(PROMPTS, "weights = q8_0\nkv = f32\n", 4, 12);
    char *full = path_in("full.db"), *part = path_in("part.db");
    qe_runner_stats s;
    must_run(j, full, 0, &s);
    must_run(j, part, 5, &s);
    ck_assert_int_eq(s.prompts_sent, 2 * 5);
    qe_store *st = open_ro(part);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "SELECT count(*) FROM gen_prompts"), 10);
    ck_assert_int_eq(q_int(qe_store_sqlite(st),
                           "SELECT count(*) FROM gen_runs WHERE status = 'partial'"), 2);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "SELECT count(*) FROM v_gen_summary WHERE "
                           "status = 'partial' AND prompts_done = 5"), 2);
    qe_store_close(st);
    must_run(j, part, 0, &s);
    ck_assert_int_eq(s.prompts_sent, 2 * 11);
    ck_assert_uint_eq(s.gen_complete, 0);
    must_run(j, part, 0, &s);
    ck_assert_int_eq(s.prompts_sent, 0);
    ck_assert_uint_eq(s.gen_complete, 2);
    st = open_ro(part);
    sqlite3 *q = qe_store_sqlite(st);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_prompts"), 2 * 16);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_runs WHERE status = 'done'"), 2);
    ck_assert_int_eq(q_int(q, "SELECT count(*) FROM gen_tokens"),
                     q_int(q, "SELECT sum(n_gen) FROM gen_prompts"));
    /* steps of two sessions, none lost or doubled: prefill steps cover 32 prompts */
    ck_assert_int_eq(q_int(q, "SELECT count(DISTINCT session_key) FROM gen_steps"), 2);
    qe_store_close(st);
    char *a = dump(full), *b = dump(part);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    free(full);
    free(part);
    qe_job_free(j);
}
END_TEST

/* Two shards (one generation run each) merged equal the unsharded run, and
 * merging again adds nothing. */
START_TEST(test_merge)
{
    qe_job *j = make_job(PROMPTS, "weights = q4_0\nkv = f32\n", 8, 8);
    char *full = path_in("full.db"), *s0 = path_in("s0.db"), *s1 = path_in("s1.db");
    char *m = path_in("merged.db");
    qe_runner_stats s;
    must_run(j, full, 0, &s);
    ck_assert_int_eq(run_job(j, s0, 0, 0, 2, &s), QE_OK);
    ck_assert_uint_eq(s.gen_runs, 1);
    ck_assert_int_eq(run_job(j, s1, 0, 1, 2, &s), QE_OK);
    ck_assert_uint_eq(s.gen_runs, 1);
    qe_store *st = NULL;
    ck_assert_int_eq(qe_store_open(m, 0, 0, &st), QE_OK);
    qe_store_merge_stats ms;
    ck_assert_int_eq(qe_store_merge(st, s1, 0, &ms), QE_OK); /* the variant first */
    ck_assert_int_eq(ms.gen_runs, 1);
    ck_assert_int_eq(ms.gen_prompts, 16);
    ck_assert_int_eq(qe_store_merge(st, s0, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.gen_prompts, 16);
    ck_assert_int_eq(qe_store_merge(st, s0, 0, &ms), QE_OK);
    ck_assert_int_eq(ms.gen_runs, 0);
    ck_assert_int_eq(ms.gen_prompts, 0);
    qe_store_close(st);
    char *a = dump(full), *b = dump(m);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    /* the divergence view reads the same in both */
    const char *dv = "SELECT group_concat(prompt_index || ':' || diverge_pos, ',') FROM "
                     "(SELECT * FROM v_gen_divergence ORDER BY gen_key, prompt_index)";
    qe_store *fa = open_ro(full), *fb = open_ro(m);
    sqlite3_stmt *qa = NULL, *qb = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(qe_store_sqlite(fa), dv, -1, &qa, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(qe_store_sqlite(fb), dv, -1, &qb, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(qa), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_step(qb), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(qa, 0),
                     (const char *)sqlite3_column_text(qb, 0));
    ck_assert_int_eq(q_int(qe_store_sqlite(fb), "SELECT count(*) FROM gen_runs WHERE status = "
                                                "'done'"), 2);
    sqlite3_finalize(qa);
    sqlite3_finalize(qb);
    qe_store_close(fa);
    qe_store_close(fb);
    free(full);
    free(s0);
    free(s1);
    free(m);
    qe_job_free(j);
}
END_TEST

/* ---- limits ---- */

static void expect_fail(const char *jsonl, qe_status want, const char *msg)
{
    char *p = qe_test_write(dir, "bad.jsonl", jsonl, strlen(jsonl));
    qe_job *j = make_job(p, "kv = f32\n", 2, 4);
    char *db = path_in("bad.db");
    qe_runner_stats s;
    qe_status r = run_job(j, db, 0, 0, 0, &s);
    ck_assert_int_eq(r, want);
    ck_assert_msg(strstr(qe_errmsg(), msg) != NULL, "message '%s' lacks '%s'", qe_errmsg(), msg);
    free(db);
    free(p);
    qe_job_free(j);
}

START_TEST(test_limits)
{
    /* an empty prompt: file and line */
    expect_fail("{\"prompt\": \"Once\"}\n{\"prompt\": \"Tom\"}\n{\"prompt\": \"\"}\n",
                QE_ECORRUPT, "bad.jsonl:3: prompt 2 is empty");
    /* a row without the field: the dataset names file and line */
    expect_fail("{\"prompt\": \"Once\"}\n{\"text\": \"Tom\"}\n", QE_ECORRUPT, "bad.jsonl");
    expect_fail("{\"prompt\": \"Once\"}\n{\"text\": \"Tom\"}\n", QE_ECORRUPT, "2");
    /* not JSON */
    expect_fail("{\"prompt\": \"Once\"\n", QE_ECORRUPT, "bad.jsonl:1");
    /* an ids dataset cannot be prompts: the job names its line */
    char text[1024];
    snprintf(text, sizeof text, "[model s]\npath = %s\n[dataset p]\npath = %s/x.ids\n"
             "[generate]\nprompts = p\n", qe_test_data("models/stories260K.gguf"), dir);
    qe_job *j = NULL;
    ck_assert_int_eq(qe_job_parse_string(text, strlen(text), "g.ini", QE_JOB_NO_FILE_CHECK, &j),
                     QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "g.ini:6: prompts = 'p': an ids dataset"));
    /* a job with [generate] and no generator */
    j = make_job(PROMPTS, "kv = f32\n", 2, 4);
    char *db = path_in("x.db");
    qe_runner_opts o = {qe_jobeval_run, NULL, NULL, 0, db, NULL, NULL, 0, 0, 0, NULL, NULL, 0, NULL};
    ck_assert_int_eq(qe_runner_run(j, &o, NULL), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no generator"));
    qe_job_free(j);
    /* store: a prompt for a generation run that is not there */
    qe_store *st = NULL;
    ck_assert_int_eq(qe_store_open(db, 0, 0, &st), QE_OK);
    char key[QE_STORE_KEY_HEX];
    memset(key, 'a', 64);
    key[64] = 0;
    uint8_t h[32] = {0};
    int32_t id = 5;
    float lp = -1;
    qe_store_gen_prompt p = {0, h, 1, 1, &id, &lp, 0, NULL, NULL, "x", 1, "eos", -1, 0,
                             0, 0, 0, 0};
    ck_assert_int_eq(qe_store_gen_put_prompt(st, key, key, &p, NULL), QE_ENOTFOUND);
    p.n_gen = -1;
    ck_assert_int_eq(qe_store_gen_put_prompt(st, key, key, &p, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_store_gen_put_prompt(st, "nope", key, &p, NULL), QE_EINVAL);
    ck_assert_int_eq(q_int(qe_store_sqlite(st), "SELECT count(*) FROM gen_prompts"), 0);
    /* config: bad keys and values are named */
    qe_store_gen_config c = {key, key, "xyz", "f32", "f32", "f32", 8, 0, 1, 1, 0, 0, 0, NULL,
                             NULL, 4};
    ck_assert_int_eq(qe_store_gen_key(&c, key), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "tokenizer 'xyz'"));
    c.tokenizer_sha256 = key;
    c.weights = "f 32";
    ck_assert_int_eq(qe_store_gen_key(&c, key), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "weights 'f 32'"));
    c.weights = "f32";
    c.max_new = 0;
    ck_assert_int_eq(qe_store_gen_key(&c, key), QE_EINVAL);
    /* keys depend on the options: a stop string changes the key */
    c.max_new = 8;
    char k1[QE_STORE_KEY_HEX], k2[QE_STORE_KEY_HEX];
    ck_assert_int_eq(qe_store_gen_key(&c, k1), QE_OK);
    const char *stop[] = {"\n"};
    size_t stop_len[] = {1};
    c.n_stop = 1;
    c.stop = stop;
    c.stop_len = stop_len;
    ck_assert_int_eq(qe_store_gen_key(&c, k2), QE_OK);
    ck_assert_str_ne(k1, k2);
    qe_store_close(st);
    free(db);
}
END_TEST

Suite *jobgen_suite(void)
{
    Suite *s = suite_create("jobgen");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_formats);
    tcase_add_test(tc, test_alone_vs_batch);
    tcase_add_test(tc, test_resume);
    tcase_add_test(tc, test_merge);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 120);
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
