/* testutil.c - see testutil.h. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <check.h>

#include "cl.h"
#include "log.h"
#include "model.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *qe_test_data(const char *rel)
{
    static char bufs[8][4096];
    static int k;
    const char *root = getenv("QEVAL_DATA");
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", root && *root ? root : "../shared/data", rel);
    return b;
}

char *qe_test_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/qeval-test-XXXXXX", t && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void qe_test_rmtree(const char *dir)
{
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *qe_test_write(const char *dir, const char *name, const void *data, size_t n)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (!p)
        return NULL;
    snprintf(p, len, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        if (f)
            fclose(f);
        free(p);
        return NULL;
    }
    fclose(f);
    return p;
}

static char *cl_cache;
static char *cl_saved_env;
static qe_cl *cl_shared;

void qe_test_cl_setup(void)
{
    const char *v = getenv("QEVAL_CACHE_DIR");
    cl_saved_env = v ? strdup(v) : NULL;
    cl_cache = qe_test_tmpdir();
    ck_assert_ptr_nonnull(cl_cache);
    setenv("QEVAL_CACHE_DIR", cl_cache, 1);
}

void qe_test_cl_teardown(void)
{
    qe_cl_close(cl_shared);
    cl_shared = NULL;
    qe_test_rmtree(cl_cache);
    free(cl_cache);
    cl_cache = NULL;
    if (cl_saved_env)
        setenv("QEVAL_CACHE_DIR", cl_saved_env, 1);
    else
        unsetenv("QEVAL_CACHE_DIR");
    free(cl_saved_env);
    cl_saved_env = NULL;
}

qe_cl *qe_test_cl(void)
{
    if (!cl_shared)
        ck_assert_msg(qe_cl_open(NULL, 0, &cl_shared) == QE_OK, "qe_cl_open: %s", qe_errmsg());
    return cl_shared;
}

const char *qe_test_cl_cache_dir(void) { return cl_cache; }

/* ---- random inputs and models ---- */

static uint64_t rng = 1;

void qe_test_rng_seed(uint64_t s)
{
    rng = s * 0x9E3779B97F4A7C15ull + 1;
}

uint32_t qe_test_rnd_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

double qe_test_rnd_unit(void) { return (double)qe_test_rnd_u32() / 2147483648.0 - 1.0; }

void qe_test_rnd_tokens(int32_t *t, size_t n, int n_vocab)
{
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)(qe_test_rnd_u32() % (uint32_t)n_vocab);
}

qe_model *qe_test_model(const char *rel)
{
    qe_model *m = NULL;
    const char *path = qe_test_data(rel);
    ck_assert_msg(qe_model_open(path, &m) == QE_OK, "qe_model_open(%s): %s", path, qe_errmsg());
    return m;
}

qe_engine *qe_test_engine_on(qe_cl *cl, const qe_model *m, const qe_engine_opts *o)
{
    qe_engine *e = NULL;
    ck_assert_msg(qe_engine_open(cl, m, o, &e) == QE_OK, "qe_engine_open: %s", qe_errmsg());
    return e;
}

qe_engine *qe_test_engine(const qe_model *m, const qe_engine_opts *o)
{
    return qe_test_engine_on(qe_test_cl(), m, o);
}

qe_engine_opts qe_test_opts_kv(int n_ctx, int n_seq, int top_k, qe_kv_format kk, qe_kv_format kv)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = n_ctx;
    o.n_seq = n_seq;
    o.top_k = top_k;
    o.kv_k = kk;
    o.kv_v = kv;
    return o;
}

qe_engine *qe_test_engine_kv(const qe_model *m, int n_ctx, int n_seq, int top_k, qe_kv_format kk,
                             qe_kv_format kv)
{
    const qe_engine_opts o = qe_test_opts_kv(n_ctx, n_seq, top_k, kk, kv);
    return qe_test_engine(m, &o);
}

/* ---- engine outputs ---- */

void qe_test_res_init(qe_test_res *r, int rows, int k)
{
    r->rows = rows;
    r->k = k;
    size_t nk = (size_t)rows * (size_t)(k ? k : 1);
    r->lse = malloc((size_t)rows * sizeof(float));
    r->tlp = malloc((size_t)rows * sizeof(float));
    r->am = malloc((size_t)rows * sizeof(int32_t));
    r->tkp = malloc(nk * sizeof(float));
    r->tki = malloc(nk * sizeof(int32_t));
    ck_assert(r->lse && r->tlp && r->am && r->tkp && r->tki);
    for (size_t i = 0; i < (size_t)rows; i++) {
        r->lse[i] = r->tlp[i] = NAN;
        r->am[i] = INT32_MIN;
    }
    for (size_t i = 0; i < nk; i++) {
        r->tkp[i] = NAN;
        r->tki[i] = INT32_MIN;
    }
    r->out = (qe_engine_out){r->lse, r->tlp, r->am, r->tki, r->tkp};
}

void qe_test_res_free(qe_test_res *r)
{
    free(r->lse);
    free(r->tlp);
    free(r->am);
    free(r->tkp);
    free(r->tki);
}

const char *qe_test_res_row_diff(const qe_test_res *a, int ra, const qe_test_res *b, int rb)
{
    const size_t k = (size_t)a->k;
    if (memcmp(&a->lse[ra], &b->lse[rb], sizeof(float)) != 0)
        return "lse";
    if (memcmp(&a->tlp[ra], &b->tlp[rb], sizeof(float)) != 0 && !(isnan(a->tlp[ra]) && isnan(b->tlp[rb])))
        return "target log-prob";
    if (a->am[ra] != b->am[rb])
        return "arg-max";
    if (memcmp(a->tki + ra * k, b->tki + rb * k, k * sizeof(int32_t)) != 0)
        return "top-k ids";
    if (memcmp(a->tkp + ra * k, b->tkp + rb * k, k * sizeof(float)) != 0)
        return "top-k log-probs";
    return NULL;
}

void qe_test_res_same(const qe_test_res *a, const qe_test_res *b, const char *what)
{
    ck_assert_msg(a->rows == b->rows && a->k == b->k, "%s: %d rows of top-%d vs %d of top-%d", what,
                  a->rows, a->k, b->rows, b->k);
    for (int r = 0; r < a->rows; r++) {
        const char *d = qe_test_res_row_diff(a, r, b, r);
        ck_assert_msg(!d, "%s: row %d: %s differs", what, r, d);
    }
}

/* ---- the reference side ---- */

void qe_test_ref_top(const double *z, int n, int k, int *ids)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++)
                taken = ids[q] == i;
            if (!taken && (best < 0 || z[i] > z[best]))
                best = i;
        }
        ids[j] = best;
    }
}

double qe_test_ref_lse(const double *z, int n)
{
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++)
        s += exp(z[i] - mx);
    return mx + log(s);
}

int qe_test_check_row(const double *z, int nv, const int *ids, double lse, float dev_lse,
                      const float *tkp, const int32_t *tki, int k, double tol, const char *where)
{
    ck_assert_msg(fabs(dev_lse - lse) < tol, "%s: lse %.7f, ref %.7f", where, (double)dev_lse, lse);
    int checked = 0;
    for (int j = 0; j < k; j++) {
        ck_assert_msg(fabs(tkp[j] - (z[ids[j]] - lse)) < tol, "%s: top-%d log-prob %.7f, ref %.7f",
                      where, j, (double)tkp[j], z[ids[j]] - lse);
        const int near = (j > 0 && z[ids[j - 1]] - z[ids[j]] <= tol) ||
                         (j + 1 < nv && z[ids[j]] - z[ids[j + 1]] <= tol);
        if (near)
            continue;
        ck_assert_msg(tki[j] == ids[j], "%s: top-%d id %d, ref %d", where, j, tki[j], ids[j]);
        checked++;
    }
    return checked;
}

void qe_test_check_logits(const float *dz, const double *z, int nv, double tol, const char *where)
{
    for (int i = 0; i < nv; i++)
        ck_assert_msg(fabs(dz[i] - z[i]) < tol, "%s: logit %d %.7f, ref %.7f", where, i,
                      (double)dz[i], z[i]);
}

void qe_test_diff_add(qe_test_diff *d, int row, double d_lse, double d_tlp)
{
    ck_assert_msg(isfinite(d_lse) && isfinite(d_tlp), "row %d: not finite", row);
    d->max_lse = d_lse > d->max_lse ? d_lse : d->max_lse;
    d->max_tlp = d_tlp > d->max_tlp ? d_tlp : d->max_tlp;
    d->sum_tlp += d_tlp;
    d->n++;
}

double qe_test_diff_mean(const qe_test_diff *d) { return d->n ? d->sum_tlp / d->n : 0.0; }

void qe_test_check_kv_diff(const char *kk, const char *kv, const qe_test_diff *same,
                           const qe_test_diff *vs_f32)
{
    const double mean = qe_test_diff_mean(same);
    if (!vs_f32) {
        ck_assert_msg(same->max_tlp < 1e-4 && same->max_lse < 1e-4,
                      "%s/%s cache: max |d logp| %.3g, |d lse| %.3g", kk, kv, same->max_tlp,
                      same->max_lse);
        return;
    }
    const double mean0 = qe_test_diff_mean(vs_f32);
    ck_assert_msg(mean <= 2e-5 || mean <= 0.2 * mean0,
                  "%s/%s: mean |d logp| %.3g vs its own format, %.3g vs f32", kk, kv, mean, mean0);
    ck_assert_msg(mean <= 5e-4 && same->max_tlp <= 2e-2, "%s/%s: mean |d logp| %.3g, max %.3g", kk,
                  kv, mean, same->max_tlp);
}

/* ---- in-memory models with random f32 weights ---- */

static uint64_t rmodel_rng = 1;

static double rmodel_rnd(void) /* uniform in [-1, 1) */
{
    rmodel_rng = rmodel_rng * 6364136223846793005u + 1442695040888963407u;
    return (double)(rmodel_rng >> 11) / (double)(1ull << 52) - 1.0;
}

static qe_tensor rmodel_vec(qe_test_rmodel *r, int64_t ne0, int64_t ne1, double mean, double amp)
{
    ck_assert_int_lt(r->n_bufs, 512);
    float *d = malloc((size_t)(ne0 * ne1) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < ne0 * ne1; i++)
        d[i] = (float)(mean + amp * rmodel_rnd());
    r->bufs[r->n_bufs++] = d;
    qe_tensor t;
    ck_assert_int_eq(qe_tensor_view(&t, NULL, QE_DT_F32, ne0, ne1, d,
                                    (uint64_t)(ne0 * ne1) * sizeof *d, 1),
                     QE_OK);
    return t;
}

void qe_test_rmodel_init(qe_test_rmodel *r, const qe_hparams *hp, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    rmodel_rng = seed;
    r->hp = *hp;
    int64_t d = hp->dim, q = (int64_t)hp->n_heads * hp->head_dim,
            kv = (int64_t)hp->n_kv_heads * hp->head_dim, ff = hp->n_ff;
    r->w.token_embd = rmodel_vec(r, d, hp->n_vocab, 0, 1.0);
    r->w.output_norm = rmodel_vec(r, d, 1, 1.0, 0.2);
    r->w.output = hp->tied ? r->w.token_embd
                           : rmodel_vec(r, d, hp->n_vocab, 0, 2.0 / sqrt((double)d));
    r->w.layers = calloc((size_t)hp->n_layers, sizeof *r->w.layers);
    ck_assert_ptr_nonnull(r->w.layers);
    for (int l = 0; l < hp->n_layers; l++) {
        qe_layer *L = &r->w.layers[l];
        L->attn_norm = rmodel_vec(r, d, 1, 1.0, 0.2);
        L->wq = rmodel_vec(r, d, q, 0, 1.7 / sqrt((double)d));
        L->wk = rmodel_vec(r, d, kv, 0, 1.7 / sqrt((double)d));
        L->wv = rmodel_vec(r, d, kv, 0, 1.7 / sqrt((double)d));
        L->wo = rmodel_vec(r, q, d, 0, 1.7 / sqrt((double)q));
        L->ffn_norm = rmodel_vec(r, d, 1, 1.0, 0.2);
        L->w_gate = rmodel_vec(r, d, ff, 0, 1.7 / sqrt((double)d));
        L->w_up = rmodel_vec(r, d, ff, 0, 1.7 / sqrt((double)d));
        L->w_down = rmodel_vec(r, ff, d, 0, 1.7 / sqrt((double)ff));
        if (hp->attn_bias) {
            L->bq = rmodel_vec(r, q, 1, 0, 0.5);
            L->bk = rmodel_vec(r, kv, 1, 0, 0.5);
            L->bv = rmodel_vec(r, kv, 1, 0, 0.5);
        }
        if (hp->qk_norm) {
            L->attn_q_norm = rmodel_vec(r, hp->head_dim, 1, 1.0, 0.3);
            L->attn_k_norm = rmodel_vec(r, hp->head_dim, 1, 1.0, 0.3);
        }
        if (hp->post_norms) {
            L->attn_post_norm = rmodel_vec(r, d, 1, 1.0, 0.3);
            L->ffn_post_norm = rmodel_vec(r, d, 1, 1.0, 0.3);
        }
    }
}

void qe_test_rmodel_build(qe_test_rmodel *r, const char *name)
{
    qe_model_close(r->m);
    r->m = NULL;
    ck_assert_msg(qe_model_build(&r->hp, &r->w, name, &r->m) == QE_OK, "%s", qe_errmsg());
}

void qe_test_rmodel_free(qe_test_rmodel *r)
{
    qe_model_close(r->m);
    for (int i = 0; i < r->n_bufs; i++)
        free(r->bufs[i]);
    free(r->w.layers);
}

void qe_test_rmodel_tokens(int32_t *tok, int n, int nv, uint64_t seed)
{
    rmodel_rng = seed;
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)((rmodel_rnd() + 1.0) * 0.5 * nv) % nv;
}
