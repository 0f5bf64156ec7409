/* bench_out.c - reporting bench results (see bench.h): the environment of a
 * run, markdown / CSV / JSON tables, and rows in the results database.
 *
 * Workload: a handful of rows per run; nothing here is hot.
 * Threading: each handle is used by one thread at a time.
 */
#include "bench.h"

#include <csv.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "hash.h"
#include "store.h"

#ifndef QE_COMMIT
#define QE_COMMIT "unknown"
#endif
#ifndef QE_VERSION
#define QE_VERSION "0"
#endif

/* ---- environment ---- */

qe_status qe_bench_env_make(const qe_model *m, qe_cl *cl, qe_bench_env *env)
{
    memset(env, 0, sizeof *env);
    snprintf(env->model_path, sizeof env->model_path, "%s", qe_model_path(m));
    snprintf(env->model_name, sizeof env->model_name, "%s", qe_model_name(m));
    const qe_gguf *g = qe_model_gguf(m);
    const char *arch = NULL;
    size_t len = 0;
    if (g && qe_gguf_find_key(g, "qeval.synth.arch") >= 0 &&
        qe_gguf_get_str(g, "qeval.synth.arch", &arch, &len) == QE_OK) {
        env->synthetic = 1;
        snprintf(env->synth_arch, sizeof env->synth_arch, "%.*s", (int)len, arch);
    } else if (g && qe_gguf_find_key(g, "qeval.synth.arch") >= 0) {
        env->synthetic = 1; /* present but not a string: still a synthetic file */
    }
    uint8_t sha[32];
    if (qe_model_format_of(m) == QE_MODEL_GGUF || qe_model_format_of(m) == QE_MODEL_HF) {
        qe_status st = qe_model_sha256(m, sha);
        if (st == QE_OK)
            qe_hash_hex(sha, 32, env->model_sha256);
        else if (st != QE_EINVAL) /* built models have no file */
            return st;
    }
    const qe_cl_device_info *d = qe_cl_device(cl);
    snprintf(env->device, sizeof env->device, "%s", d->name);
    snprintf(env->driver, sizeof env->driver, "%s", d->driver_version);
    snprintf(env->platform, sizeof env->platform, "%s", d->platform_name);
    env->build_commit = QE_COMMIT;
    env->version = QE_VERSION;
    return QE_OK;
}

qe_status qe_bench_parse_format(const char *s, qe_bench_format *out)
{
    if (!strcmp(s, "md"))
        *out = QE_BENCH_MD;
    else if (!strcmp(s, "csv"))
        *out = QE_BENCH_CSV;
    else if (!strcmp(s, "json"))
        *out = QE_BENCH_JSON;
    else
        return qe_fail(QE_EINVAL, "output format '%s': expected md, csv or json", s);
    return QE_OK;
}

/* ---- the result as JSON (the JSON output, the CSV sample columns and the
 * database key share it) ---- */

static json_t *jreal_array(const double *x, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, isfinite(x[i]) ? json_real(x[i]) : json_null());
    return a;
}

static json_t *result_json(const qe_bench_env *env, const qe_bench_result *r, int kernels)
{
    json_t *o = json_object();
    json_object_set_new(o, "build_commit", json_string(env->build_commit));
    json_object_set_new(o, "qeval_version", json_string(env->version));
    json_object_set_new(o, "device", json_string(env->device));
    json_object_set_new(o, "driver", json_string(env->driver));
    json_object_set_new(o, "platform", json_string(env->platform));
    json_object_set_new(o, "model_path", json_string(env->model_path));
    json_object_set_new(o, "model_name", json_string(env->model_name));
    json_object_set_new(o, "model_sha256", json_string(env->model_sha256));
    json_object_set_new(o, "synthetic", json_boolean(env->synthetic));
    json_object_set_new(o, "synth_arch", env->synthetic ? json_string(env->synth_arch) : json_null());
    json_object_set_new(o, "n_params", json_integer((json_int_t)r->n_params));
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)r->weight_bytes));
    json_object_set_new(o, "weights", json_string(r->weights));
    json_object_set_new(o, "kv_k", json_string(qe_kv_format_name(r->kv_k)));
    json_object_set_new(o, "kv_v", json_string(qe_kv_format_name(r->kv_v)));
    json_object_set_new(o, "gemm", json_string(r->gemm));
    json_object_set_new(o, "test", json_string(r->test));
    json_object_set_new(o, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(r->n_gen));
    json_object_set_new(o, "n_batch", json_integer(r->n_batch));
    json_object_set_new(o, "n_ctx", json_integer(r->n_ctx));
    json_object_set_new(o, "reps", json_integer(r->reps));
    json_object_set_new(o, "n_tokens", json_integer((json_int_t)r->n_tokens));
    json_object_set_new(o, "mean_tps", json_real(r->mean_tps));
    json_object_set_new(o, "stddev_tps", json_real(r->stddev_tps));
    json_object_set_new(o, "samples_s", jreal_array(r->seconds, r->reps));
    json_object_set_new(o, "samples_tps", jreal_array(r->tps, r->reps));
    json_object_set_new(o, "launches", json_integer((json_int_t)r->launches));
    json_object_set_new(o, "enqueue_s", json_real((double)r->enqueue_ns / 1e9));
    json_object_set_new(o, "wait_s", json_real((double)r->wait_ns / 1e9));
    if (r->scored) { /* ppl: what its head computed, for a check against the peer's nll */
        json_object_set_new(o, "scored", json_integer(r->scored));
        json_object_set_new(o, "nll", isfinite(r->nll) ? json_real(r->nll) : json_null());
    }
    if (kernels && r->n_kernels) {
        json_t *k = json_array();
        for (size_t i = 0; i < r->n_kernels; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "kernel", json_string(r->kernels[i].name));
            json_object_set_new(e, "calls", json_integer((json_int_t)r->kernels[i].calls));
            json_object_set_new(e, "total_ns", json_integer((json_int_t)r->kernels[i].ns));
            json_array_append_new(k, e);
        }
        json_object_set_new(o, "kernels", k);
    }
    return o;
}

/* ---- tables ---- */

typedef struct kept {    /* a profiled result, for the markdown breakdown */
    char title[160];
    int reps;
    qe_cl_kernel_time *k;
    size_t n;
    uint64_t launches, enqueue_ns, wait_ns;
} kept;

struct qe_bench_out {
    FILE *f;
    qe_bench_format fmt;
    const qe_bench_env *env;
    json_t *rows;        /* JSON */
    kept *prof;          /* markdown */
    size_t n_prof;
};

static void human_bytes(uint64_t b, char *buf, size_t cap)
{
    const double v = (double)b;
    if (v >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", v / (1024.0 * 1024 * 1024));
    else if (v >= 1024.0 * 1024)
        snprintf(buf, cap, "%.2f MiB", v / (1024.0 * 1024));
    else
        snprintf(buf, cap, "%.2f KiB", v / 1024.0);
}

static void human_count(uint64_t n, char *buf, size_t cap)
{
    const double v = (double)n;
    if (v >= 1e9)
        snprintf(buf, cap, "%.2f B", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.2f M", v / 1e6);
    else
        snprintf(buf, cap, "%.2f K", v / 1e3);
}

static const char *const csv_cols[] = {
    "build_commit", "qeval_version", "device",  "driver",     "platform",   "model_path",
    "model_name",   "model_sha256",  "synthetic", "synth_arch", "n_params",   "weight_bytes",
    "weights",      "kv_k",          "kv_v",    "gemm",       "test",       "n_prompt",   "n_gen",
    "n_batch",      "n_ctx",         "reps",    "n_tokens",   "mean_tps",   "stddev_tps",
    "samples_s",    "samples_tps"};
#define N_CSV_COLS (sizeof csv_cols / sizeof csv_cols[0])

qe_status qe_bench_out_begin(FILE *f, qe_bench_format fmt, const qe_bench_env *env,
                             qe_bench_out **out)
{
    qe_bench_out *o = calloc(1, sizeof *o);
    if (!o)
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    o->f = f;
    o->fmt = fmt;
    o->env = env;
    if (fmt == QE_BENCH_JSON && !(o->rows = json_array())) {
        free(o);
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    }
    if (fmt == QE_BENCH_MD) {
        fprintf(f, "| model | size | params | device | weights | kv | gemm | b | test | t/s |\n"
                   "| ----- | ---: | -----: | ------ | ------- | -- | ---- | --: | ---: | --: |\n");
    } else if (fmt == QE_BENCH_CSV) {
        for (size_t i = 0; i < N_CSV_COLS; i++)
            fprintf(f, "%s%s", i ? "," : "", csv_cols[i]);
        fputc('\n', f);
    }
    *out = o;
    return ferror(f) ? qe_fail(QE_EIO, "bench: write error") : QE_OK;
}

static void csv_str(FILE *f, const char *s, int first)
{
    if (!first)
        fputc(',', f);
    csv_fwrite(f, s, strlen(s));
}

static void csv_json(FILE *f, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    csv_str(f, s ? s : "", 0);
    free(s);
}

static qe_status keep_profile(qe_bench_out *o, const qe_bench_result *r)
{
    kept *p = realloc(o->prof, (o->n_prof + 1) * sizeof *p);
    if (!p)
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    o->prof = p;
    kept *k = &p[o->n_prof];
    memset(k, 0, sizeof *k);
    k->k = malloc(r->n_kernels * sizeof *k->k);
    if (!k->k)
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    memcpy(k->k, r->kernels, r->n_kernels * sizeof *k->k);
    k->n = r->n_kernels;
    k->reps = r->reps;
    k->launches = r->launches;
    k->enqueue_ns = r->enqueue_ns;
    k->wait_ns = r->wait_ns;
    snprintf(k->title, sizeof k->title, "%s, b %d, weights %s, kv %s/%s, gemm %s", r->test,
             r->n_batch, r->weights, qe_kv_format_name(r->kv_k), qe_kv_format_name(r->kv_v),
             r->gemm);
    o->n_prof++;
    return QE_OK;
}

qe_status qe_bench_out_row(qe_bench_out *o, const qe_bench_result *r)
{
    FILE *f = o->f;
    const qe_bench_env *env = o->env;
    if (o->fmt == QE_BENCH_MD) {
        char size[32], params[32], kv[40];
        human_bytes(r->weight_bytes, size, sizeof size);
        human_count(r->n_params, params, sizeof params);
        if (r->kv_k == r->kv_v)
            snprintf(kv, sizeof kv, "%s", qe_kv_format_name(r->kv_k));
        else
            snprintf(kv, sizeof kv, "%s/%s", qe_kv_format_name(r->kv_k), qe_kv_format_name(r->kv_v));
        fprintf(f, "| %s%s | %s | %s | %s | %s | %s | %s | %d | %s | %.2f ± %.2f |\n",
                env->model_name, env->synthetic ? " (synthetic)" : "", size, params, env->device,
                r->weights, kv, r->gemm, r->n_batch, r->test, r->mean_tps, r->stddev_tps);
        if (r->n_kernels) {
            qe_status st = keep_profile(o, r);
            if (st != QE_OK)
                return st;
        }
    } else if (o->fmt == QE_BENCH_CSV) {
        csv_str(f, env->build_commit, 1);
        csv_str(f, env->version, 0);
        csv_str(f, env->device, 0);
        csv_str(f, env->driver, 0);
        csv_str(f, env->platform, 0);
        csv_str(f, env->model_path, 0);
        csv_str(f, env->model_name, 0);
        csv_str(f, env->model_sha256, 0);
        fprintf(f, ",%d", env->synthetic);
        csv_str(f, env->synth_arch, 0);
        fprintf(f, ",%llu,%llu", (unsigned long long)r->n_params, (unsigned long long)r->weight_bytes);
        csv_str(f, r->weights, 0);
        csv_str(f, qe_kv_format_name(r->kv_k), 0);
        csv_str(f, qe_kv_format_name(r->kv_v), 0);
        csv_str(f, r->gemm, 0);
        csv_str(f, r->test, 0);
        fprintf(f, ",%d,%d,%d,%d,%d,%lld,%.6f,%.6f", r->n_prompt, r->n_gen, r->n_batch, r->n_ctx,
                r->reps, (long long)r->n_tokens, r->mean_tps, r->stddev_tps);
        json_t *s = jreal_array(r->seconds, r->reps), *t = jreal_array(r->tps, r->reps);
        csv_json(f, s);
        csv_json(f, t);
        json_decref(s);
        json_decref(t);
        fputc('\n', f);
    } else {
        json_t *j = result_json(env, r, 1);
        if (!j || json_array_append_new(o->rows, j))
            return qe_fail(QE_ENOMEM, "bench: out of memory");
    }
    fflush(f);
    return ferror(f) ? qe_fail(QE_EIO, "bench: write error") : QE_OK;
}

static int by_time_desc(const void *a, const void *b)
{
    const qe_cl_kernel_time *x = a, *y = b;
    return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : strcmp(x->name, y->name);
}

qe_status qe_bench_out_end(qe_bench_out *o)
{
    FILE *f = o->f;
    int bad = 0;
    if (o->fmt == QE_BENCH_JSON) {
        bad = json_dumpf(o->rows, f, JSON_INDENT(2)) != 0;
        fputc('\n', f);
    }
    for (size_t i = 0; i < o->n_prof; i++) {
        kept *k = &o->prof[i];
        uint64_t total = 0;
        for (size_t j = 0; j < k->n; j++)
            total += k->k[j].ns;
        qsort(k->k, k->n, sizeof *k->k, by_time_desc);
        fprintf(f, "\nkernels: %s (device time per repetition, %d repetitions)\n\n"
                   "| kernel | calls | ms | %% |\n| ------ | ----: | --: | --: |\n",
                k->title, k->reps);
        for (size_t j = 0; j < k->n; j++)
            fprintf(f, "| %s | %.1f | %.3f | %.1f |\n", k->k[j].name, (double)k->k[j].calls / k->reps,
                    (double)k->k[j].ns / 1e6 / k->reps,
                    total ? 100.0 * (double)k->k[j].ns / (double)total : 0.0);
        fprintf(f, "| total | | %.3f | 100.0 |\n", (double)total / 1e6 / k->reps);
        /* with profiling events on, so a little dearer than in a plain run */
        if (k->launches)
            fprintf(f, "\nhost: %.1f launches per repetition, %.2f us each in "
                       "clEnqueueNDRangeKernel (%.3f ms); %.3f ms blocked on the device\n",
                    (double)k->launches / k->reps, (double)k->enqueue_ns / 1e3 / (double)k->launches,
                    (double)k->enqueue_ns / 1e6 / k->reps, (double)k->wait_ns / 1e6 / k->reps);
    }
    fflush(f);
    qe_status st = bad || ferror(f) ? qe_fail(QE_EIO, "bench: write error") : QE_OK;
    qe_bench_out_free(o);
    return st;
}

void qe_bench_out_free(qe_bench_out *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n_prof; i++)
        free(o->prof[i].k);
    free(o->prof);
    json_decref(o->rows);
    free(o);
}

/* ---- database ---- */

struct qe_bench_db {
    qe_store *st;
    sqlite3_stmt *row, *kern;
};

static const char sql_row[] =
    "INSERT OR IGNORE INTO bench (bench_key, created_at, build_commit, qeval_version, device, "
    "driver, platform, model_path, model_name, model_sha256, synthetic, synth_arch, n_params, "
    "weight_bytes, weights, kv_k, kv_v, test, n_prompt, n_gen, n_batch, n_ctx, warmup, reps, "
    "n_tokens, mean_tps, stddev_tps, samples_s, samples_tps, profiled, gemm) VALUES (?1, ?2, ?3, "
    "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, "
    "?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)";
static const char sql_kern[] =
    "INSERT OR IGNORE INTO bench_kernels (bench_key, kernel, calls, total_ns) VALUES (?1, ?2, ?3, ?4)";

qe_status qe_bench_db_open(const char *path, qe_bench_db **out)
{
    *out = NULL;
    qe_bench_db *db = calloc(1, sizeof *db);
    if (!db)
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    qe_status st = qe_store_open(path, 0, 0, &db->st);
    int rc = SQLITE_OK;
    if (st == QE_OK) {
        sqlite3 *s = qe_store_sqlite(db->st);
        if ((rc = sqlite3_prepare_v2(s, sql_row, -1, &db->row, NULL)) != SQLITE_OK ||
            (rc = sqlite3_prepare_v2(s, sql_kern, -1, &db->kern, NULL)) != SQLITE_OK)
            st = qe_store_fail(db->st, rc, "preparing the bench insert");
    }
    if (st != QE_OK) {
        qe_bench_db_close(db);
        return st;
    }
    *out = db;
    return QE_OK;
}

void qe_bench_db_close(qe_bench_db *db)
{
    if (!db)
        return;
    sqlite3_finalize(db->row);
    sqlite3_finalize(db->kern);
    qe_store_close(db->st);
    free(db);
}

static void now_iso(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

qe_status qe_bench_db_put(qe_bench_db *db, const qe_bench_env *env, const qe_bench_opts *o,
                          const qe_bench_result *r)
{
    if (!r->gemm || !r->weights)
        return qe_fail(QE_EINVAL, "bench: a result without its gemm or weights name");
    sqlite3 *s = qe_store_sqlite(db->st);
    char created[40], key[65];
    now_iso(created, sizeof created);
    json_t *j = result_json(env, r, 1);
    json_t *ss = jreal_array(r->seconds, r->reps), *ts = jreal_array(r->tps, r->reps);
    char *samples_s = json_dumps(ss, JSON_COMPACT), *samples_tps = json_dumps(ts, JSON_COMPACT);
    char *canon = NULL;
    qe_status st = QE_OK;
    int rc = SQLITE_OK;
    if (j) {
        json_object_set_new(j, "created_at", json_string(created));
        json_object_set_new(j, "warmup", json_integer(o->warmup));
        canon = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    }
    if (!j || !samples_s || !samples_tps || !canon) {
        st = qe_fail(QE_ENOMEM, "bench: out of memory");
        goto done;
    }
    uint8_t h[32];
    qe_hash_sha256_buf(canon, strlen(canon), h);
    qe_hash_hex(h, 32, key);
    if ((rc = sqlite3_exec(s, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK) {
        st = qe_store_fail(db->st, rc, "bench: begin");
        goto done;
    }
    sqlite3_stmt *q = db->row;
    const char *texts[] = {key, created, env->build_commit, env->version, env->device, env->driver,
                           env->platform, env->model_path, env->model_name, env->model_sha256};
    for (int i = 0; i < 10; i++)
        sqlite3_bind_text(q, i + 1, texts[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 11, env->synthetic);
    if (env->synthetic)
        sqlite3_bind_text(q, 12, env->synth_arch, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 12);
    sqlite3_bind_int64(q, 13, (sqlite3_int64)r->n_params);
    sqlite3_bind_int64(q, 14, (sqlite3_int64)r->weight_bytes);
    sqlite3_bind_text(q, 15, r->weights, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 16, qe_kv_format_name(r->kv_k), -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 17, qe_kv_format_name(r->kv_v), -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 18, r->test, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 19, r->n_prompt);
    sqlite3_bind_int(q, 20, r->n_gen);
    sqlite3_bind_int(q, 21, r->n_batch);
    sqlite3_bind_int(q, 22, r->n_ctx);
    sqlite3_bind_int(q, 23, o->warmup);
    sqlite3_bind_int(q, 24, r->reps);
    sqlite3_bind_int64(q, 25, (sqlite3_int64)r->n_tokens);
    sqlite3_bind_double(q, 26, r->mean_tps);
    sqlite3_bind_double(q, 27, r->stddev_tps);
    sqlite3_bind_text(q, 28, samples_s, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 29, samples_tps, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 30, r->n_kernels > 0);
    sqlite3_bind_text(q, 31, r->gemm, -1, SQLITE_STATIC);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    for (size_t i = 0; rc == SQLITE_DONE && i < r->n_kernels; i++) {
        sqlite3_stmt *k = db->kern;
        sqlite3_bind_text(k, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(k, 2, r->kernels[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(k, 3, (sqlite3_int64)r->kernels[i].calls);
        sqlite3_bind_int64(k, 4, (sqlite3_int64)r->kernels[i].ns);
        rc = sqlite3_step(k);
        sqlite3_reset(k);
        sqlite3_clear_bindings(k);
    }
    if (rc != SQLITE_DONE) {
        st = qe_store_fail(db->st, rc, "bench: inserting a result");
        sqlite3_exec(s, "ROLLBACK", NULL, NULL, NULL);
        goto done;
    }
    if ((rc = sqlite3_exec(s, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
        st = qe_store_fail(db->st, rc, "bench: commit");
        sqlite3_exec(s, "ROLLBACK", NULL, NULL, NULL);
    }
done:
    json_decref(j);
    json_decref(ss);
    json_decref(ts);
    free(samples_s);
    free(samples_tps);
    free(canon);
    return st;
}
