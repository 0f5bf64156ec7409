/* check_runner.c - `qeval run`'s machinery end to end with a minimal
 * perplexity evaluator over the plain-C reference forward (test code only;
 * the real loop is lib/eval): stored rows equal what was evaluated, an
 * interrupted job resumes to the same database as an uninterrupted one,
 * chunk limits, shards + merge, writer failures, dry runs. */
#include <check.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"
#include "hash.h"
#include "job.h"
#include "ref.h"
#include "runner.h"
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

/* ---- a minimal evaluator: qe_ref, one chunk at a time ---- */

struct ev {
    int fail_after;     /* return QE_EINTERRUPTED after this many chunks; 0 never */
    int poison;         /* send a positive log-prob in the 2nd chunk */
    int calls, chunks;  /* evaluator calls, chunks evaluated */
    int64_t seen[64];   /* chunk indices evaluated in the last call */
    int n_seen;
};

static qe_status ref_eval(void *ud, const qe_runner_task *t, qe_runner_sink *sink)
{
    struct ev *e = ud;
    e->calls++;
    e->n_seen = 0;
    const qe_hparams *hp = qe_model_hparams(t->model);
    int32_t *tok = NULL;
    size_t n = 0;
    qe_ref *ref = NULL;
    double *logits = NULL;
    qe_status r = qe_dataset_check_ids(t->dataset, hp->n_vocab);
    if (r == QE_OK)
        r = qe_dataset_tokenize(t->dataset, NULL, NULL, t->job->workers, &tok, &n);
    qe_chunk_plan plan;
    if (r == QE_OK)
        r = qe_chunk_plan_make((int64_t)n, t->job->n_ctx, 0, hp->bos_id, &plan);
    if (r != QE_OK)
        goto done;
    uint8_t sha[32];
    uint8_t *le = malloc(4 * n);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++)
            le[4 * i + b] = (uint8_t)((uint32_t)tok[i] >> (8 * b));
    qe_hash_sha256_buf(le, 4 * n, sha);
    free(le);
    r = qe_runner_plan(sink, (int64_t)n, sha, plan.n_chunk);
    if (r == QE_OK)
        r = qe_ref_new(t->model, plan.n_ctx, &ref);
    if (r != QE_OK)
        goto done;
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    int k = t->job->top_k;
    int32_t ids[64], target[64], argmax[64], topk_id[64 * 16];
    float lp[64], topk_lp[64 * 16];
    for (int64_t c = 0; c < plan.n_chunk && r == QE_OK; c++) {
        if (t->max_chunks > 0 && c >= t->max_chunks)
            break;
        if (qe_store_resume_has(t->stored, c))
            continue;
        qe_chunk_fill(&plan, tok, c, ids);
        qe_ref_reset(ref);
        for (int pos = 0; pos < plan.n_ctx - 1 && r == QE_OK; pos++) {
            r = qe_ref_step(ref, ids[pos], pos, pos >= plan.first ? logits : NULL);
            if (r != QE_OK || pos < plan.first)
                continue;
            int j = pos - plan.first;
            double mx = logits[0];
            int am = 0;
            for (int v = 1; v < hp->n_vocab; v++)
                if (logits[v] > mx)
                    mx = logits[v], am = v;
            double z = 0;
            for (int v = 0; v < hp->n_vocab; v++)
                z += exp(logits[v] - mx);
            double lse = mx + log(z);
            target[j] = qe_chunk_target(&plan, tok, c, pos);
            lp[j] = (float)(logits[target[j]] - lse);
            argmax[j] = am;
            /* top-k by selection: largest first, ties by lower id */
            for (int q = 0; q < k; q++) {
                int best = -1;
                for (int v = 0; v < hp->n_vocab; v++) {
                    int taken = 0;
                    for (int p = 0; p < q; p++)
                        taken |= topk_id[j * k + p] == v;
                    if (!taken && (best < 0 || logits[v] > logits[best]))
                        best = v;
                }
                topk_id[j * k + q] = best;
                topk_lp[j * k + q] = (float)(logits[best] - lse);
            }
        }
        if (r != QE_OK)
            break;
        if (e->poison && e->chunks == 1)
            lp[0] = 0.5f;
        qe_store_chunk ch = {c, plan.first, plan.n_scored, target, lp, argmax, k, topk_id,
                             topk_lp, NULL, 0.01, 0, 0, 0, NULL, NULL, NULL};
        r = qe_runner_chunk(sink, &ch);
        e->chunks++;
        e->seen[e->n_seen++] = c;
        if (r == QE_OK && e->fail_after && e->chunks == e->fail_after)
            r = qe_fail(QE_EINTERRUPTED, "test: interrupted after %d chunks", e->chunks);
    }
    if (r == QE_OK)
        r = qe_runner_weight_bytes(sink, qe_model_weight_bytes(t->model));
done:
    free(logits);
    qe_ref_free(ref);
    free(tok);
    return r;
}

/* ---- fixtures ---- */

/* 100 ids below 512 (stories260K's vocabulary): 6 chunks of 16. */
static char *write_ids(const char *name)
{
    char text[2048];
    size_t o = 0;
    unsigned x = 12345;
    for (int i = 0; i < 100; i++) {
        x = x * 1103515245u + 12345u;
        o += (size_t)snprintf(text + o, sizeof text - o, "%u%s", (x >> 16) % 500 + 3,
                              i % 25 == 24 ? "\n" : " ");
    }
    return qe_test_write(tmp, name, text, o);
}

static qe_job *make_job(const char *db, const char *extra_job_keys, const char *ids_path)
{
    char text[4096];
    snprintf(text, sizeof text,
             "[job]\nname = runner-test\noutput = %s\nn_ctx = 16\ntop_k = 3\nworkers = 2\n%s"
             "[model s]\npath = ${QEVAL_DATA}/models/stories260K.gguf\n"
             "[dataset ids]\npath = %s\n"
             "[sweep]\nreference = native\nkv = f16, q8_0\n",
             db, extra_job_keys, ids_path);
    qe_job *j;
    qe_status r = qe_job_parse_string(text, strlen(text), "runner.ini", 0, &j);
    ck_assert_msg(r == QE_OK, "%s", qe_errmsg());
    return j;
}

static qe_runner_opts opts_for(struct ev *e)
{
    qe_runner_opts o = {ref_eval, e, NULL, 0, NULL, "test-device", "test-driver", 0, 0, 2, NULL, NULL, 0, "mma"};
    return o;
}

static long long q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

/* Rows of a's tokens that b holds with the very same values. */
static long long same_tokens(const char *a, const char *b)
{
    sqlite3 *db = open_db(a);
    char sql[4400];
    snprintf(sql, sizeof sql, "ATTACH '%s' AS b", b);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    long long n = q_int(db, "SELECT count(*) FROM main.tokens x JOIN b.tokens y ON "
                            "x.run_key = y.run_key AND x.chunk = y.chunk AND x.pos = y.pos "
                            "AND x.target = y.target AND x.logprob = y.logprob AND "
                            "x.argmax = y.argmax AND x.topk = y.topk");
    sqlite3_close(db);
    return n;
}

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmp, name);
}

/* ---- tests ---- */

START_TEST(test_run_full)
{
    char db[4200];
    path_in(db, sizeof db, "full.db");
    char *ids = write_ids("x.ids");
    qe_job *job = make_job(db, "", ids);
    ck_assert_uint_eq(job->n_runs, 2);
    struct ev e = {0};
    qe_runner_opts o = opts_for(&e);
    qe_runner_stats s;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_uint_eq(s.runs, 2);
    ck_assert_uint_eq(s.evaluated, 2);
    ck_assert_int_eq(s.chunks_sent, 12);
    ck_assert_int_eq(e.chunks, 12);
    sqlite3 *h = open_db(db);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'done'"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE n_chunks = 6 AND n_tokens = 100"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM chunks"), 12);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM tokens"), 12 * 7); /* 16 - 1 - 8 scored */
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM v_topk"), 12 * 7 * 3);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE ref_run_key IS NOT NULL"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs r JOIN runs b ON b.run_key = r.ref_run_key "
                              "WHERE b.kv_k = 'f16' AND r.kv_k = 'q8_0'"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM sessions WHERE ended_at IS NOT NULL AND "
                              "device = 'test-device' AND job_name = 'runner-test' AND gemm = 'mma'"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM timings WHERE phase = 'run'"), 2);
    ck_assert_int_eq(q_int(h, "SELECT n_tokens FROM dataset_tokens"), 100);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM models WHERE n_params > 0 AND arch = 'llama' "
                              "AND source_format = 'gguf'"), 1);
    /* the model key is the file's SHA-256 (SHA256SUMS is not listing models; hash it here) */
    uint8_t d[32];
    char hex[65], sql[256];
    ck_assert_int_eq(qe_hash_sha256_file(qe_test_data("models/stories260K.gguf"), d), QE_OK);
    qe_hash_hex(d, 32, hex);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM models WHERE sha256 = '%s'", hex);
    ck_assert_int_eq(q_int(h, sql), 1);
    /* the gguf carries the vocabulary: tokenizer key = model key */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE tokenizer_sha256 = '%s'", hex);
    ck_assert_int_eq(q_int(h, sql), 2);
    /* kv formats do not change the reference evaluator: both runs equal */
    ck_assert_int_eq(q_int(h, "SELECT count(DISTINCT ppl) FROM v_run_summary"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM v_run_summary WHERE status = 'complete' "
                              "AND bits_per_weight = 32"), 2);
    sqlite3_close(h);

    /* running the job again evaluates nothing */
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_uint_eq(s.evaluated, 0);
    ck_assert_uint_eq(s.complete, 2);
    ck_assert_int_eq(e.calls, 2);
    qe_job_free(job);
    free(ids);
}
END_TEST

START_TEST(test_resume_equals_uninterrupted)
{
    char full[4200], part[4200];
    path_in(full, sizeof full, "full.db");
    path_in(part, sizeof part, "part.db");
    char *ids = write_ids("x.ids");
    qe_job *jf = make_job(full, "", ids), *jp = make_job(part, "", ids);
    struct ev e = {0};
    qe_runner_opts o = opts_for(&e);
    ck_assert_int_eq(qe_runner_run(jf, &o, NULL), QE_OK);

    struct ev ei = {.fail_after = 2};
    qe_runner_opts oi = opts_for(&ei);
    ck_assert_int_eq(qe_runner_run(jp, &oi, NULL), QE_EINTERRUPTED);
    ck_assert_str_eq(qe_errmsg(), "test: interrupted after 2 chunks");
    sqlite3 *h = open_db(part);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM chunks"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'failed'"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'running'"), 1);
    sqlite3_close(h);

    struct ev er = {0};
    qe_runner_opts orr = opts_for(&er);
    qe_runner_stats s;
    ck_assert_int_eq(qe_runner_run(jp, &orr, &s), QE_OK);
    ck_assert_int_eq(er.chunks, 4 + 6); /* the 2 stored chunks were skipped */
    ck_assert_int_eq(s.chunks_sent, 10);
    h = open_db(part);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'done'"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM tokens"), 84);
    sqlite3_close(h);
    /* the same rows as the uninterrupted job, bit for bit */
    ck_assert_int_eq(same_tokens(part, full), 84);
    qe_job_free(jf);
    qe_job_free(jp);
    free(ids);
}
END_TEST

START_TEST(test_chunk_limit_and_no_tokens)
{
    char db[4200];
    path_in(db, sizeof db, "lim.db");
    char *ids = write_ids("x.ids");
    qe_job *j3 = make_job(db, "chunks = 3\nstore_tokens = no\n", ids);
    struct ev e = {0};
    qe_runner_opts o = opts_for(&e);
    ck_assert_int_eq(qe_runner_run(j3, &o, NULL), QE_OK);
    ck_assert_int_eq(e.chunks, 6);
    sqlite3 *h = open_db(db);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'partial'"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM chunks WHERE chunk < 3"), 6);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM tokens"), 0);
    ck_assert_int_eq(q_int(h, "SELECT sum(n_scored) FROM chunks"), 6 * 7);
    sqlite3_close(h);
    /* the same limit again: complete as far as asked */
    qe_runner_stats s;
    ck_assert_int_eq(qe_runner_run(j3, &o, &s), QE_OK);
    ck_assert_uint_eq(s.evaluated, 0);
    /* no limit: the rest */
    qe_job *jall = make_job(db, "", ids);
    struct ev e2 = {0};
    qe_runner_opts o2 = opts_for(&e2);
    ck_assert_int_eq(qe_runner_run(jall, &o2, &s), QE_OK);
    ck_assert_int_eq(e2.chunks, 6);
    ck_assert_int_eq(e2.seen[0], 3);
    h = open_db(db);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE status = 'done'"), 2);
    sqlite3_close(h);
    qe_job_free(j3);
    qe_job_free(jall);
    free(ids);
}
END_TEST

START_TEST(test_shards_merge)
{
    char full[4200], a[4200], b[4200];
    path_in(full, sizeof full, "full.db");
    path_in(a, sizeof a, "a.db");
    path_in(b, sizeof b, "b.db");
    char *ids = write_ids("x.ids");
    qe_job *job = make_job(full, "", ids);
    struct ev e = {0};
    qe_runner_opts o = opts_for(&e);
    ck_assert_int_eq(qe_runner_run(job, &o, NULL), QE_OK);
    qe_runner_stats s;
    o.db_path = a;
    o.shard_index = 0;
    o.shard_count = 2;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_uint_eq(s.runs, 1);
    o.db_path = b;
    o.shard_index = 1;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_uint_eq(s.runs, 1);
    /* the variant in shard 1 names the reference computed in shard 0 */
    sqlite3 *h = open_db(b);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs WHERE ref_run_key IS NOT NULL"), 1);
    sqlite3_close(h);
    char merged[4200];
    path_in(merged, sizeof merged, "merged.db");
    qe_store *st;
    ck_assert_int_eq(qe_store_open(merged, 0, 0, &st), QE_OK);
    ck_assert_int_eq(qe_store_merge(st, a, 0, NULL), QE_OK);
    ck_assert_int_eq(qe_store_merge(st, b, 0, NULL), QE_OK);
    qe_store_close(st);
    ck_assert_int_eq(same_tokens(merged, full), 84);
    h = open_db(merged);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM tokens"), 84);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM runs"), 2);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM models"), 1);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM sessions"), 2);
    sqlite3_close(h);
    o.shard_index = 2;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_EINVAL);
    qe_job_free(job);
    free(ids);
}
END_TEST

static int notes;
static int64_t noted_done;
static void count_note(void *ud, const qe_runner_task *t, int evaluate)
{
    (void)ud;
    ck_assert_int_eq(evaluate, 0);
    ck_assert_uint_eq(strlen(t->run_key), 64);
    notes++;
    noted_done += t->stored->n_done;
}

START_TEST(test_dry_run_and_errors)
{
    char db[4200];
    path_in(db, sizeof db, "dry.db");
    char *ids = write_ids("x.ids");
    qe_job *job = make_job(db, "", ids);
    qe_runner_opts o = {NULL, NULL, count_note, 1, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, 0, NULL};
    qe_runner_stats s;
    notes = 0;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_int_eq(notes, 2);
    struct stat sb;
    ck_assert_int_ne(stat(db, &sb), 0); /* nothing written */
    o.dry_run = 0;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_EUNSUPPORTED);
    ck_assert_int_ne(stat(db, &sb), 0);

    /* a bad chunk fails in the writer; the error comes back with its message */
    struct ev e = {.poison = 1};
    qe_runner_opts op = opts_for(&e);
    ck_assert_int_eq(qe_runner_run(job, &op, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "logprob[0] = 0.5"));
    sqlite3 *h = open_db(db);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM chunks"), 1);
    sqlite3_close(h);
    /* a dry run reads what is stored, and still writes nothing */
    struct stat before;
    ck_assert_int_eq(stat(db, &before), 0);
    notes = 0;
    noted_done = 0;
    o.dry_run = 1;
    ck_assert_int_eq(qe_runner_run(job, &o, &s), QE_OK);
    ck_assert_int_eq(notes, 2);
    ck_assert_int_eq(noted_done, 1);
    h = open_db(db);
    ck_assert_int_eq(q_int(h, "SELECT count(*) FROM sessions"), 1);
    sqlite3_close(h);
    qe_job_free(job);

    /* a dataset that is bad at run time names its file and line */
    char *bad = qe_test_write(tmp, "bad.ids", "1 2 3\n4 five 6\n", 15);
    job = make_job(db, "", bad);
    struct ev e2 = {0};
    qe_runner_opts o2 = opts_for(&e2);
    ck_assert_int_eq(qe_runner_run(job, &o2, NULL), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "[dataset ids]: "));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "bad.ids:2: column 3: expected a token id"));
    ck_assert_int_eq(e2.calls, 0);
    qe_job_free(job);
    free(bad);
    free(ids);
}
END_TEST

Suite *runner_suite(void)
{
    Suite *s = suite_create("runner");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_run_full);
    tcase_add_test(tc, test_resume_equals_uninterrupted);
    tcase_add_test(tc, test_chunk_limit_and_no_tokens);
    tcase_add_test(tc, test_shards_merge);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_set_timeout(lim, 120);
    tcase_add_test(lim, test_dry_run_and_errors);
    suite_add_tcase(s, lim);
    return s;
}
