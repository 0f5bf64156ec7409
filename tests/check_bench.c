/* check_bench.c - llama-bench-style speed tests (lib/bench.h): statistics,
 * the order and arithmetic of results from a tiny crossed run on PoCL, the
 * per-kernel profile's launch counts against the model's structure (7
 * matrices per layer + the LM head per forward) and against the host's own
 * launch count (qe_cl_launch_stats), the markdown / CSV / JSON
 * writers parsed back with libcsv and jansson, the database rows (the model
 * hash checked against the data set's SHA256SUMS), and the option checks.
 * OpenCL is opened in the forked test process only (see check_engine.c).
 */
#include <check.h>
#include <csv.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cl.h"
#include "engine.h"
#include "model.h"
#include "sample.h"
#include "testutil.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())

static char *cache_dir;

static void cache_setup(void)
{
    cache_dir = qe_test_tmpdir();
    ck_assert_ptr_nonnull(cache_dir);
    setenv("QEVAL_CACHE_DIR", cache_dir, 1);
}

static void cache_teardown(void)
{
    qe_test_rmtree(cache_dir);
    free(cache_dir);
    cache_dir = NULL;
    unsetenv("QEVAL_CACHE_DIR");
}

/* ---- pure host parts ---- */

START_TEST(test_stats)
{
    const double x[4] = {1, 2, 3, 4};
    double m, sd;
    qe_bench_mean_sd(x, 4, &m, &sd);
    ck_assert(fabs(m - 2.5) < 1e-12);
    ck_assert(fabs(sd - sqrt(5.0 / 3.0)) < 1e-12); /* sum of squares 5, n - 1 = 3 */
    qe_bench_mean_sd(x, 1, &m, &sd);
    ck_assert(m == 1 && sd == 0);
    qe_kv_format k, v;
    OK(qe_bench_parse_kv("tq4", &k, &v));
    ck_assert(k == QE_KV_TQ4 && v == QE_KV_TQ4);
    OK(qe_bench_parse_kv("q8_0/f16", &k, &v));
    ck_assert(k == QE_KV_Q8_0 && v == QE_KV_F16);
    ck_assert_int_eq(qe_bench_parse_kv("q8_0/", &k, &v), QE_EINVAL);
    ck_assert_int_eq(qe_bench_parse_kv("q9", &k, &v), QE_EINVAL);
    qe_bench_format f;
    OK(qe_bench_parse_format("csv", &f));
    ck_assert_int_eq(f, QE_BENCH_CSV);
    ck_assert_int_eq(qe_bench_parse_format("xml", &f), QE_EINVAL);
}
END_TEST

/* A fabricated result written in every format and read back. */
static const double fake_s[3] = {0.5, 0.25, 0.2};
static const double fake_tps[3] = {64, 128, 160};
static const qe_cl_kernel_time fake_k[2] = {{"matmul", 30, 9000000}, {"attn_rows", 10, 1000000}};

static qe_bench_result fake_result(void)
{
    qe_bench_result r = {.n_gen = 32, .n_batch = 1, .weights = "file", .kv_k = QE_KV_Q8_0,
                         .kv_v = QE_KV_F16, .gemm = "f32", .n_ctx = 32, .n_params = 1000, .weight_bytes = 4000,
                         .n_tokens = 32, .reps = 3, .seconds = fake_s, .tps = fake_tps,
                         .kernels = fake_k, .n_kernels = 2};
    strcpy(r.test, "tg32");
    qe_bench_mean_sd(fake_tps, 3, &r.mean_tps, &r.stddev_tps);
    return r;
}

static qe_bench_env fake_env(void)
{
    qe_bench_env e;
    memset(&e, 0, sizeof e);
    strcpy(e.model_path, "/m/a \"b\", c.gguf"); /* quote and comma: CSV must escape them */
    strcpy(e.model_name, "tiny");
    strcpy(e.model_sha256, "ab12");
    strcpy(e.device, "dev");
    strcpy(e.driver, "1.0");
    strcpy(e.platform, "plat");
    e.build_commit = "abc";
    e.version = "0.1";
    return e;
}

static char *write_out(qe_bench_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    qe_bench_env env = fake_env();
    qe_bench_result r = fake_result();
    qe_bench_out *o = NULL;
    OK(qe_bench_out_begin(f, fmt, &env, &o));
    OK(qe_bench_out_row(o, &r));
    OK(qe_bench_out_row(o, &r));
    OK(qe_bench_out_end(o));
    fclose(f);
    return buf;
}

typedef struct csv_rows {
    char cell[3][32][128];
    int row, col, max_col;
} csv_rows;

static void csv_cb1(void *s, size_t n, void *ud)
{
    csv_rows *c = ud;
    if (c->row < 3 && c->col < 32)
        snprintf(c->cell[c->row][c->col], 128, "%.*s", (int)n, (const char *)s);
    c->col++;
}

static void csv_cb2(int ch, void *ud)
{
    (void)ch;
    csv_rows *c = ud;
    c->max_col = c->col > c->max_col ? c->col : c->max_col;
    c->col = 0;
    c->row++;
}

static int csv_col(const csv_rows *c, const char *name)
{
    for (int i = 0; i < 32; i++)
        if (!strcmp(c->cell[0][i], name))
            return i;
    ck_abort_msg("no CSV column %s", name);
    return -1;
}

START_TEST(test_outputs)
{
    /* markdown: header, separator, two rows, then the kernel table */
    char *md = write_out(QE_BENCH_MD);
    ck_assert_ptr_nonnull(strstr(md, "| tiny | 3.91 KiB | 1.00 K | dev | file | q8_0/f16 | f32 | 1 | tg32 | 117.33 ± 48.88 |"));
    ck_assert_ptr_nonnull(strstr(md, "| matmul | 10.0 | 3.000 | 90.0 |")); /* per repetition */
    ck_assert_ptr_nonnull(strstr(md, "| attn_rows | 3.3 | 0.333 | 10.0 |"));
    free(md);

    /* CSV through libcsv's parser */
    char *csv = write_out(QE_BENCH_CSV);
    struct csv_parser p;
    csv_rows *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(csv_init(&p, CSV_STRICT | CSV_STRICT_FINI), 0);
    ck_assert_uint_eq(csv_parse(&p, csv, strlen(csv), csv_cb1, csv_cb2, c), strlen(csv));
    csv_fini(&p, csv_cb1, csv_cb2, c);
    csv_free(&p);
    ck_assert_int_eq(c->row, 3);
    ck_assert_int_eq(c->max_col, 27);
    ck_assert_str_eq(c->cell[1][csv_col(c, "gemm")], "f32");
    ck_assert_str_eq(c->cell[1][csv_col(c, "model_path")], "/m/a \"b\", c.gguf");
    ck_assert_str_eq(c->cell[2][csv_col(c, "test")], "tg32");
    ck_assert_str_eq(c->cell[1][csv_col(c, "kv_k")], "q8_0");
    ck_assert(fabs(atof(c->cell[1][csv_col(c, "mean_tps")]) - 352.0 / 3) < 1e-4);
    json_error_t err;
    json_t *s = json_loads(c->cell[1][csv_col(c, "samples_tps")], 0, &err);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(json_array_size(s), 3);
    ck_assert(json_real_value(json_array_get(s, 2)) == 160);
    json_decref(s);
    free(c);
    free(csv);

    /* JSON */
    char *js = write_out(QE_BENCH_JSON);
    json_t *j = json_loads(js, 0, &err);
    ck_assert_msg(j != NULL, "%s", err.text);
    ck_assert_uint_eq(json_array_size(j), 2);
    json_t *r0 = json_array_get(j, 0);
    ck_assert_str_eq(json_string_value(json_object_get(r0, "kv_v")), "f16");
    ck_assert_str_eq(json_string_value(json_object_get(r0, "gemm")), "f32");
    ck_assert_int_eq(json_integer_value(json_object_get(r0, "n_gen")), 32);
    ck_assert(json_is_false(json_object_get(r0, "synthetic")));
    ck_assert(fabs(json_real_value(json_object_get(r0, "stddev_tps")) - 48.8808) < 1e-3);
    json_t *k = json_object_get(r0, "kernels");
    ck_assert_uint_eq(json_array_size(k), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(k, 0), "total_ns")), 9000000);
    json_decref(j);
    free(js);
}
END_TEST

/* ---- on the device ---- */

typedef struct collected {
    int n;
    qe_bench_result r[32];
    double mean_check[32];
    uint64_t matmul[32], attn[32], attention[32], store[32], copy[32];
    const char *gemm; /* what every result must record: the device probe's choice */
} collected;

static uint64_t kcalls(const qe_bench_result *r, const char *name)
{
    for (size_t i = 0; i < r->n_kernels; i++)
        if (!strcmp(r->kernels[i].name, name))
            return r->kernels[i].calls;
    return 0;
}

static qe_status collect(void *ud, const qe_bench_result *r)
{
    collected *c = ud;
    ck_assert_int_lt(c->n, 32);
    const int i = c->n++;
    c->r[i] = *r;
    double s = 0;
    for (int j = 0; j < r->reps; j++) {
        ck_assert(r->seconds[j] > 0);
        ck_assert(fabs(r->tps[j] - (double)r->n_tokens / r->seconds[j]) < 1e-9 * r->tps[j]);
        s += r->tps[j];
    }
    c->mean_check[i] = s / r->reps;
    /* every launch of the measured repetitions is one the profile counted,
       and each took the host some time to enqueue */
    uint64_t launches = 0;
    for (size_t j = 0; j < r->n_kernels; j++)
        launches += r->kernels[j].calls;
    ck_assert_uint_gt(launches, 0);
    ck_assert_uint_eq(r->launches, launches);
    ck_assert_uint_gt(r->enqueue_ns, 0);
    /* each repetition ends by waiting for the device (a read or a finish) */
    ck_assert_uint_gt(r->wait_ns, 0);
    /* the matmul kernels of the engine's gemm: one launch per weight product */
    ck_assert_str_eq(r->gemm, c->gemm);
    c->matmul[i] = !strcmp(r->gemm, "f32") ? kcalls(r, "matmul")
                                           : kcalls(r, "mma_tile") + kcalls(r, "mma_skinny");
    c->attn[i] = kcalls(r, "attn_rows");
    c->attention[i] = kcalls(r, "attention");
    c->store[i] = kcalls(r, "kv_store");
    c->copy[i] = kcalls(r, "copy_rows");
    c->r[i].seconds = c->r[i].tps = NULL;
    c->r[i].kernels = NULL;
    return QE_OK;
}

/* Options of the given lists (each array's length counted by the macro
 * below), 2 repetitions, profiled. */
static qe_bench_opts opts_of(const int *p, int np, const int *n, int nn, const int *b, int nb,
                             const char *const *w, int nw, const char *const *kv, int nk)
{
    qe_bench_opts o = qe_bench_opts_default();
    o.n_prompt = p;
    o.n_n_prompt = np;
    o.n_gen = n;
    o.n_n_gen = nn;
    o.n_batch = b;
    o.n_n_batch = nb;
    o.weights = w;
    o.n_weights = nw;
    o.kv = kv;
    o.n_kv = nk;
    o.reps = 2;
    o.profile = 1;
    return o;
}
#define N_OF(a) ((int)(sizeof(a) / sizeof *(a)))
#define OPTS(p, n, b, w, kv) opts_of(p, N_OF(p), n, N_OF(n), b, N_OF(b), w, N_OF(w), kv, N_OF(kv))

/* A collector for results on cl, expecting the matmul kernels gemm auto
 * picks: QEVAL_GEMM when it names one (bench/gpu_check.sh sets f32), else
 * tensor cores where the probe found mma.sync. */
static collected *collector(qe_cl *cl)
{
    collected *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    qe_cl_caps caps;
    OK(qe_cl_probe(cl, &caps));
    const char *env = getenv("QEVAL_GEMM");
    c->gemm = env && (!strcmp(env, "f32") || !strcmp(env, "mma")) ? env
              : caps.ptx_mma                                       ? "mma"
                                                                   : "f32";
    return c;
}

START_TEST(test_run)
{
    qe_model *m = NULL;
    OK(qe_model_open(qe_test_data("models/stories260K.gguf"), &m));
    const int L = qe_model_hparams(m)->n_layers, per_fwd = 7 * L + 1;
    qe_cl *cl = NULL;
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &cl));
    static const int p[] = {8, 0}, n[] = {3}, b[] = {1, 2};
    static const char *const w[] = {"file", "q8_0"}, *const kv[] = {"f32", "tq4/q8_0"};
    qe_bench_opts o = OPTS(p, n, b, w, kv);
    collected *c = collector(cl);
    OK(qe_bench_run(m, cl, &o, collect, c));
    ck_assert_int_eq(c->n, 16); /* 2 weights x 2 kv x 2 b x (pp8, tg3) */
    uint64_t native_bytes = 0;
    for (int i = 0; i < 16; i++) {
        const qe_bench_result *r = &c->r[i];
        const int wi = i / 8, ki = (i / 4) % 2, bi = (i / 2) % 2, pp = i % 2 == 0;
        ck_assert_str_eq(r->test, pp ? "pp8" : "tg3");
        ck_assert_str_eq(r->weights, w[wi]);
        ck_assert_int_eq(r->kv_k, ki ? QE_KV_TQ4 : QE_KV_F32);
        ck_assert_int_eq(r->kv_v, ki ? QE_KV_Q8_0 : QE_KV_F32);
        ck_assert_int_eq(r->n_batch, b[bi]);
        ck_assert_int_eq(r->n_tokens, (int64_t)b[bi] * (pp ? 8 : 3));
        ck_assert_int_eq(r->n_ctx, 8);
        ck_assert(fabs(r->mean_tps - c->mean_check[i]) < 1e-9 * r->mean_tps);
        ck_assert(r->stddev_tps >= 0);
        /* launches over 2 repetitions: pp one forward, tg 3 */
        const uint64_t fwd = pp ? 2 : 6;
        /* with the tensor-core kernels a decode step launches Q/K/V and gate/up
           as one matmul each (qe_engine_run_matmul_n) */
        const int fused = !pp && !strcmp(r->gemm, "mma");
        ck_assert_uint_eq(c->matmul[i], fwd * (uint64_t)(fused ? 4 * L + 1 : per_fwd));
        ck_assert_uint_eq(pp ? c->attention[i] : c->attn[i], fwd * (uint64_t)L);
        ck_assert_uint_eq(pp ? c->attn[i] : c->attention[i], 0);
        ck_assert_uint_eq(c->store[i], ki ? fwd * 2 * L : 0); /* only encoded caches */
        /* decode writes encoded caches straight into their slots (kv_store);
           only an f32 cache is copied there */
        ck_assert_uint_eq(c->copy[i], pp || ki ? 0 : fwd * 2 * L);
        if (wi == 0)
            native_bytes = r->weight_bytes;
        else /* 8.5 of 32 bits per weight */
            ck_assert_uint_lt(r->weight_bytes * 3, native_bytes);
    }
    /* profiling needs a profiling queue */
    qe_cl *plain = NULL;
    OK(qe_cl_open(NULL, 0, &plain));
    ck_assert_int_eq(qe_bench_run(m, plain, &o, collect, c), QE_EINVAL);
    qe_cl_close(plain);
    free(c);
    qe_cl_close(cl);
    qe_model_close(m);
}
END_TEST

/* pplN against the engine run directly: bench.c draws b * N ids from
 * qe_sample_seed(seed, b) (each modulo n_vocab) and scores positions
 * N/2 .. N-1 from the rows at N/2-1 .. N-2, as qeval perplexity does; the
 * NLL it reports must be that prefill's mean -log p(target), whatever b. */
static double direct_nll(const qe_model *m, qe_cl *cl, int b, int n, uint64_t seed)
{
    const int nv = qe_model_hparams(m)->n_vocab, first = n / 2 - 1, rows = n - first;
    int32_t *tok = malloc((size_t)b * n * sizeof *tok), *tg = malloc((size_t)b * rows * sizeof *tg);
    float *lp = malloc((size_t)b * rows * sizeof *lp);
    ck_assert(tok && tg && lp);
    qe_sample_rng rng;
    qe_sample_rng_init(&rng, qe_sample_seed(seed, (uint64_t)b));
    for (int i = 0; i < b * n; i++)
        tok[i] = (int32_t)(qe_sample_next(&rng) % (uint32_t)nv);
    for (int s = 0; s < b; s++)
        for (int i = 0; i < rows; i++)
            tg[s * rows + i] = first + i + 1 < n ? tok[s * n + first + i + 1] : -1;
    qe_engine_opts eo = qe_engine_opts_default();
    eo.n_ctx = n;
    eo.n_seq = b;
    eo.kv_k = eo.kv_v = QE_KV_F16;
    eo.head_rows = 3; /* other head passes than the bench's: the same statistics */
    qe_engine *e = NULL;
    OK(qe_engine_open(cl, m, &eo, &e));
    qe_engine_out out = {.target_logp = lp};
    OK(qe_engine_prefill(e, b, n, tok, first, tg, &out));
    double sum = 0;
    int cnt = 0;
    for (int r = 0; r < b * rows; r++)
        if (tg[r] >= 0) {
            ck_assert(isfinite(lp[r]) && lp[r] <= 0);
            sum -= lp[r];
            cnt++;
        }
    ck_assert_int_eq(cnt, b * (n - n / 2));
    qe_engine_close(e);
    free(tok);
    free(tg);
    free(lp);
    return sum / cnt;
}

START_TEST(test_ppl)
{
    qe_model *m = NULL;
    OK(qe_model_open(qe_test_data("models/stories260K.gguf"), &m));
    qe_cl *cl = NULL;
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &cl));
    static const int zero[] = {0}, l[] = {16, 0, 9}, b[] = {1, 3};
    static const char *const w[] = {"file"}, *const kv[] = {"f16"};
    qe_bench_opts o = OPTS(zero, zero, b, w, kv);
    o.n_ppl = l;
    o.n_n_ppl = N_OF(l);
    o.seed = 7;
    collected *c = collector(cl);
    OK(qe_bench_run(m, cl, &o, collect, c));
    ck_assert_int_eq(c->n, 4); /* 2 b x (ppl16, ppl9) */
    for (int i = 0; i < 4; i++) {
        const qe_bench_result *r = &c->r[i];
        const int n = l[2 * (i % 2)], bb = b[i / 2];
        char name[16];
        snprintf(name, sizeof name, "ppl%d", n);
        ck_assert_str_eq(r->test, name);
        ck_assert_int_eq(r->n_prompt, n);
        ck_assert_int_eq(r->n_gen, 0);
        ck_assert_int_eq(r->n_tokens, (int64_t)bb * n);
        ck_assert_int_eq(r->n_ctx, 16);
        ck_assert_int_eq(r->scored, n - n / 2);
        const double want = direct_nll(m, cl, bb, n, o.seed);
        ck_assert_msg(fabs(r->nll - want) <= 1e-6 * want, "%s b %d: nll %.9g, engine %.9g", r->test, bb,
                      r->nll, want);
    }
    free(c);
    qe_cl_close(cl);
    qe_model_close(m);
}
END_TEST

/* The SHA-256 the data set publishes for a file (SHA256SUMS). */
static void published_sha(const char *rel, char out[65])
{
    FILE *f = fopen(qe_test_data("SHA256SUMS"), "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char hex[65], name[400];
        if (sscanf(line, "%64s %399s", hex, name) == 2 && !strcmp(name, rel))
            memcpy(out, hex, 65);
    }
    fclose(f);
    ck_assert_uint_eq(strlen(out), 64);
}

typedef struct db_ctx {
    qe_bench_db *db;
    const qe_bench_env *env;
    const qe_bench_opts *o;
} db_ctx;

static qe_status db_put(void *ud, const qe_bench_result *r)
{
    const db_ctx *c = ud;
    return qe_bench_db_put(c->db, c->env, c->o, r);
}

START_TEST(test_db)
{
    char *dir = qe_test_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/bench.db", dir);
    qe_model *m = NULL;
    OK(qe_model_open(qe_test_data("models/stories260K.gguf"), &m));
    qe_cl *cl = NULL;
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &cl));
    qe_bench_env env;
    OK(qe_bench_env_make(m, cl, &env));
    char want[65];
    published_sha("models/stories260K.gguf", want);
    ck_assert_str_eq(env.model_sha256, want);
    ck_assert_int_eq(env.synthetic, 0);
    static const int p[] = {4}, n[] = {2}, b[] = {1};
    static const char *const w[] = {"file"}, *const kv[] = {"f16"};
    qe_bench_opts o = OPTS(p, n, b, w, kv);
    o.reps = 3;
    qe_bench_db *db = NULL;
    OK(qe_bench_db_open(path, &db));
    db_ctx ctx = {db, &env, &o};
    OK(qe_bench_run(m, cl, &o, db_put, &ctx));
    qe_bench_db_close(db);

    sqlite3 *s = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(s,
                                        "SELECT test, n_batch, reps, mean_tps, samples_tps, model_sha256, "
                                        "synthetic, kv_k, kv_v, weights, profiled, length(bench_key), gemm "
                                        "FROM bench ORDER BY test",
                                        -1, &q, NULL),
                     SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        rows++;
        const char *test = (const char *)sqlite3_column_text(q, 0);
        ck_assert(!strcmp(test, "pp4") || !strcmp(test, "tg2"));
        ck_assert_int_eq(sqlite3_column_int(q, 2), 3);
        json_error_t err;
        json_t *a = json_loads((const char *)sqlite3_column_text(q, 4), 0, &err);
        ck_assert_uint_eq(json_array_size(a), 3);
        double mean = 0;
        for (size_t i = 0; i < 3; i++)
            mean += json_real_value(json_array_get(a, i)) / 3;
        json_decref(a);
        ck_assert(fabs(mean - sqlite3_column_double(q, 3)) < 1e-9 * mean);
        ck_assert_str_eq((const char *)sqlite3_column_text(q, 5), want);
        ck_assert_int_eq(sqlite3_column_int(q, 6), 0);
        ck_assert_str_eq((const char *)sqlite3_column_text(q, 7), "f16");
        ck_assert_str_eq((const char *)sqlite3_column_text(q, 9), "file");
        ck_assert_int_eq(sqlite3_column_int(q, 10), 1);
        ck_assert_int_eq(sqlite3_column_int(q, 11), 64);
        const char *gemm = (const char *)sqlite3_column_text(q, 12);
        ck_assert_msg(!strcmp(gemm, "f32") || !strcmp(gemm, "mma"), "gemm %s", gemm);
    }
    sqlite3_finalize(q);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(sqlite3_prepare_v2(s,
                                        "SELECT b.test, k.calls FROM bench_kernels k JOIN bench b "
                                        "USING (bench_key) WHERE k.kernel = 'matmul' ORDER BY b.test",
                                        -1, &q, NULL),
                     SQLITE_OK);
    const int per_fwd = 7 * qe_model_hparams(m)->n_layers + 1;
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(q, 1), 3 * per_fwd);     /* pp4: 1 forward x 3 reps */
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(q, 1), 3 * 2 * per_fwd); /* tg2: 2 forwards x 3 reps */
    sqlite3_finalize(q);
    sqlite3_close(s);
    qe_cl_close(cl);
    qe_model_close(m);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_limits)
{
    qe_model *m = NULL;
    OK(qe_model_open(qe_test_data("models/stories260K.gguf"), &m));
    static const int p[] = {16}, zero[] = {0}, neg[] = {-1}, big[] = {(1 << 20) + 1}, b[] = {1},
                     b0[] = {0}, bbig[] = {70000};
    static const char *const w[] = {"file"}, *const wbad[] = {"q5_k"}, *const kv[] = {"f16"},
                             *const kvbad[] = {"q9"};
    qe_bench_opts o = qe_bench_opts_default();
    o.n_prompt = p;
    o.n_n_prompt = 1;
    o.n_gen = p;
    o.n_n_gen = 1;
    o.n_batch = b;
    o.n_n_batch = 1;
    o.weights = w;
    o.n_weights = 1;
    o.kv = kv;
    o.n_kv = 1;
    OK(qe_bench_check(m, &o));
    qe_bench_opts t = o;
    t.n_n_batch = 0;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t = o;
    t.n_prompt = neg;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t = o;
    t.n_gen = big;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t = o;
    t.n_prompt = zero;
    t.n_gen = zero;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no test"));
    static const int one[] = {1}, l2[] = {2};
    t = o; /* ppl: 0 or at least 2 (a row to score and the next token) */
    t.n_ppl = one;
    t.n_n_ppl = 1;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "ppl size 1"));
    t.n_ppl = neg;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t.n_ppl = NULL; /* a count without a list */
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t.n_ppl = l2; /* the only test */
    t.n_prompt = zero;
    t.n_gen = zero;
    OK(qe_bench_check(m, &t));
    t = o;
    t.n_batch = b0;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t.n_batch = bbig;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "batch 70000"));
    t = o;
    t.weights = wbad;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q5_k"));
    t = o;
    t.kv = kvbad;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    t = o;
    t.reps = 0;
    ck_assert_int_eq(qe_bench_check(m, &t), QE_EINVAL);
    /* an unwritable database path */
    qe_bench_db *db = NULL;
    ck_assert_int_ne(qe_bench_db_open("/nonexistent-dir/x/bench.db", &db), QE_OK);
    ck_assert_ptr_null(db);
    qe_bench_db_close(NULL);
    qe_bench_out_free(NULL);
    qe_model_close(m);
}
END_TEST

Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *host = tcase_create("host");
    tcase_add_test(host, test_stats);
    tcase_add_test(host, test_outputs);
    suite_add_tcase(s, host);
    TCase *dev = tcase_create("device");
    tcase_set_timeout(dev, 240);
    tcase_add_unchecked_fixture(dev, cache_setup, cache_teardown);
    tcase_add_test(dev, test_run);
    tcase_add_test(dev, test_db);
    tcase_add_test(dev, test_ppl);
    suite_add_tcase(s, dev);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
