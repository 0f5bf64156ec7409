/* check_engine_formats.c - the engine's weight and KV-cache formats and the
 * paired (KL-divergence) evaluation, on a real device (PoCL here), against
 * the CPU codecs and the double-precision reference.
 *
 *   codec    device KV-cache encoder vs lib/kv_format.c, byte for byte, on
 *            random rows and hand-made corner cases; device decoder vs the
 *            CPU decoders
 *   weights  Q8_0 / Q4_0 matmul (requantized real models) and K-quant /
 *            Q4_1 / Q5_x uploads vs qe_ref on the same weights
 *   kv       every KV format on a real model vs qe_ref_new_kv with the same
 *            formats
 *   kld      paired prefill: a variant against itself, against an
 *            independent host computation from full logits, q8_0 vs q4_0
 *   limits   error paths
 *
 * OpenCL state does not survive fork(): as in check_engine.c the unchecked
 * fixture only prepares a scratch program cache and shared_cl() opens the
 * context once per process.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "dtype.h"
#include "engine.h"
#include "kv_format.h"
#include "log.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"
#include "turboquant.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())

/* ---- shared context ---- */

static char *shared_cache;
static char *saved_cache_env;
static qe_cl *shared;

static void shared_setup(void)
{
    const char *v = getenv("QEVAL_CACHE_DIR");
    saved_cache_env = v ? strdup(v) : NULL;
    shared_cache = qe_test_tmpdir();
    ck_assert_ptr_nonnull(shared_cache);
    setenv("QEVAL_CACHE_DIR", shared_cache, 1);
}

static void shared_teardown(void)
{
    qe_cl_close(shared);
    shared = NULL;
    qe_test_rmtree(shared_cache);
    free(shared_cache);
    shared_cache = NULL;
    if (saved_cache_env)
        setenv("QEVAL_CACHE_DIR", saved_cache_env, 1);
    else
        unsetenv("QEVAL_CACHE_DIR");
    free(saved_cache_env);
    saved_cache_env = NULL;
}

static qe_cl *shared_cl(void)
{
    if (!shared)
        OK(qe_cl_open(NULL, 0, &shared));
    return shared;
}

static int has_fp64(void)
{
    return qe_cl_has_extension(qe_cl_device(shared_cl()), "cl_khr_fp64");
}

/* ---- random numbers ---- */

static uint64_t rng = 1;

static void rng_seed(uint64_t s)
{
    rng = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint32_t rnd_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static double rnd_unit(void) /* uniform in [-1, 1) */
{
    return (double)rnd_u32() / 2147483648.0 - 1.0;
}

static double rnd_normal(void)
{
    double u = (rnd_unit() + 1.0) / 2.0, v = (rnd_unit() + 1.0) / 2.0;
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void rnd_tokens(int32_t *t, size_t n, int n_vocab)
{
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)(rnd_u32() % (uint32_t)n_vocab);
}

static qe_model *open_model(const char *rel)
{
    qe_model *m = NULL;
    OK(qe_model_open(qe_test_data(rel), &m));
    return m;
}

static qe_engine *open_engine_kv(const qe_model *m, int n_ctx, int n_seq, int top_k,
                                 qe_kv_format kk, qe_kv_format kvv)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = n_ctx;
    o.n_seq = n_seq;
    o.top_k = top_k;
    o.kv_k = kk;
    o.kv_v = kvv;
    qe_engine *e = NULL;
    OK(qe_engine_open(shared_cl(), m, &o, &e));
    return e;
}

/* ---- codec: device encoder vs lib/kv_format.c ---- */

static const qe_kv_format all_kv[] = {QE_KV_F32, QE_KV_F16, QE_KV_Q8_0, QE_KV_Q4_0,
                                      QE_KV_TQ4, QE_KV_TQ3, QE_KV_TQ2};
#define N_KV (int)(sizeof all_kv / sizeof all_kv[0])

/* Fill rows of n values with a mix of distributions and corner cases:
 * Gaussian rows with outliers, a zero row, rows holding NaN / Inf, Q4_0 ties
 * of equal magnitude and opposite sign, values that land exactly on Q4_0's
 * x*id + 8.5 integers and Q8_0's .5 rounding points, rows too large for an
 * f16 scale and rows with subnormal scales. */
static void codec_rows(float *x, int n_rows, int n)
{
    for (int r = 0; r < n_rows; r++) {
        float *v = x + (size_t)r * n;
        const int kind = r % 10;
        const double scale = kind == 7 ? 1e30 : kind == 8 ? 1e-40 : pow(10.0, rnd_unit() * 3);
        for (int i = 0; i < n; i++) {
            double g = rnd_normal();
            if (rnd_u32() % 31 == 0)
                g *= 8; /* outliers */
            v[i] = (float)(g * scale);
        }
        switch (kind) {
        case 1:
            memset(v, 0, (size_t)n * sizeof *v);
            break;
        case 2:
            v[rnd_u32() % (uint32_t)n] = NAN;
            break;
        case 3:
            v[rnd_u32() % (uint32_t)n] = rnd_u32() & 1 ? INFINITY : -INFINITY;
            break;
        case 4: /* ties: +-8 in every block, the first of them decides Q4_0's sign */
            for (int b = 0; b < n / 32; b++) {
                v[32 * b + (int)(rnd_u32() % 16)] = 8.0f;
                v[32 * b + 16 + (int)(rnd_u32() % 16)] = -8.0f;
            }
            break;
        case 5: /* Q4_0 with max -8: d = 1, id = 1, x + 8.5 hits .5 steps; Q8_0 halves */
            for (int i = 0; i < n; i++)
                v[i] = (float)((int)(rnd_u32() % 33) - 16) * 0.5f;
            for (int b = 0; b < n / 32; b++)
                v[32 * b] = -8.0f;
            break;
        case 6: /* small integers: many exact .5 products in Q8_0 */
            for (int i = 0; i < n; i++)
                v[i] = (float)((int)(rnd_u32() % 255) - 127);
            break;
        default:
            break;
        }
    }
}

/* Encode random rows for format f at (n_heads, head_dim) on both sides and
 * compare bytes; decode on the device and compare with the CPU decoders.
 * Returns the number of differing rows (reported, expected 0 with fp64). */
static int codec_case(qe_kv_format f, int n_heads, int head_dim, int n_rows)
{
    size_t rb = 0;
    OK(qe_kv_format_row_bytes(f, n_heads, head_dim, &rb));
    const int n = n_heads * head_dim;
    float *x = malloc((size_t)n_rows * n * sizeof *x), *y = malloc((size_t)n_rows * n * sizeof *y);
    float *yc = malloc((size_t)n * sizeof *yc);
    unsigned char *dev = malloc(rb * (size_t)n_rows), *cpu = malloc(rb);
    ck_assert(x && y && yc && dev && cpu);
    codec_rows(x, n_rows, n);
    for (size_t i = 0; i < (size_t)n_rows * n; i++)
        y[i] = -12345.0f;
    OK(qe_engine_kv_codec(shared_cl(), f, n_heads, head_dim, n_rows, x, dev, y));
    int bad = 0;
    for (int r = 0; r < n_rows; r++) {
        const unsigned char *d = dev + (size_t)r * rb;
        qe_kv_format_quantize_row(f, x + (size_t)r * n, n_heads, head_dim, cpu);
        if (memcmp(d, cpu, rb) != 0) {
            size_t at = 0;
            while (d[at] == cpu[at])
                at++;
            fprintf(stderr, "# %s %dx%d row %d (kind %d): byte %zu device %02x cpu %02x\n",
                    qe_kv_format_name(f), n_heads, head_dim, r, r % 10, at, d[at], cpu[at]);
            bad++;
            continue;
        }
        /* Decoding: what attention reads (tq*: the rotated domain). */
        if (qe_kv_format_per_head(f)) {
            const int bits = f == QE_KV_TQ4 ? 4 : f == QE_KV_TQ3 ? 3 : 2;
            const size_t vb = qe_turboquant_vec_bytes(bits, head_dim);
            for (int h = 0; h < n_heads; h++)
                qe_turboquant_dequantize_rotated(bits, cpu + h * vb, head_dim, yc + h * head_dim);
        } else {
            qe_kv_format_dequantize_row(f, cpu, n_heads, head_dim, yc);
        }
        const float *yd = y + (size_t)r * n;
        for (int i = 0; i < n; i++) {
            if (isnan(yc[i])) {
                ck_assert_msg(isnan(yd[i]), "%s row %d value %d: device %g, cpu NaN",
                              qe_kv_format_name(f), r, i, (double)yd[i]);
                continue;
            }
            /* Same float expressions: equal (tq: one division by the device's
             * float sqrt constant, allowed 1 ulp). */
            const double tol = qe_kv_format_per_head(f) ? fabs(yc[i]) * 2.4e-7 : 0.0;
            ck_assert_msg(yd[i] == yc[i] || fabs((double)yd[i] - yc[i]) <= tol, "%s row %d value %d: device %.9g, cpu %.9g",
                          qe_kv_format_name(f), r, i, (double)yd[i], (double)yc[i]);
        }
    }
    free(x);
    free(y);
    free(yc);
    free(dev);
    free(cpu);
    return bad;
}

START_TEST(test_codec)
{
    rng_seed(77);
    const int shapes[][2] = {{4, 8}, {4, 16}, {2, 64}, {1, 128}, {3, 256}};
    int bad = 0, rows = 0;
    for (int k = 0; k < N_KV; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            bad += codec_case(all_kv[k], shapes[s][0], shapes[s][1], 60);
            rows += 60;
        }
    /* With cl_khr_fp64 the encoder is exact; without it float divisions and
     * the float norm may flip a rare boundary decision. */
    if (has_fp64())
        ck_assert_msg(bad == 0, "%d of %d encoded rows differ from the CPU encoder", bad, rows);
    else
        ck_assert_msg(bad * 100 <= rows, "%d of %d encoded rows differ from the CPU encoder", bad, rows);
}
END_TEST

/* ---- comparisons with the reference ---- */

/* Per-position results of a prefill. */
typedef struct res {
    int rows, k;
    float *lse, *tlp, *tkp;
    int32_t *am, *tki;
    qe_engine_out out;
} res;

static void res_init(res *r, int rows, int k)
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

static void res_free(res *r)
{
    free(r->lse);
    free(r->tlp);
    free(r->am);
    free(r->tkp);
    free(r->tki);
}

/* Differences of one run against the reference. */
typedef struct diff {
    double max_lse, max_tlp, sum_tlp; /* absolute, on log-sum-exp and target log-probs */
    int n, n_over;                    /* rows compared, rows with |d tlp| > 1e-4 */
    int max_row;
} diff;

/* Run the reference (ref_new_kv with kv formats when kv_codec, else the
 * double-cache reference) over every sequence and compare r's rows. Every
 * row's target is the next token (the last position: token 0). */
static diff ref_diff(const qe_model *m, const res *r, int n_seq, int n_tok, const int32_t *tok,
                     int kv_codec, qe_kv_format kk, qe_kv_format kvv)
{
    const int nv = qe_model_hparams(m)->n_vocab;
    double *z = malloc((size_t)nv * sizeof *z);
    ck_assert_ptr_nonnull(z);
    qe_ref *ref = NULL;
    if (kv_codec)
        OK(qe_ref_new_kv(m, n_tok, kk, kvv, &ref));
    else
        OK(qe_ref_new(m, n_tok, &ref));
    diff d = {0};
    for (int s = 0; s < n_seq; s++) {
        qe_ref_reset(ref);
        for (int p = 0; p < n_tok; p++) {
            OK(qe_ref_step(ref, tok[(size_t)s * n_tok + p], p, z));
            const int row = s * n_tok + p;
            const int t = p + 1 < n_tok ? tok[(size_t)s * n_tok + p + 1] : 0;
            double mx = z[0], se = 0;
            for (int i = 1; i < nv; i++)
                mx = z[i] > mx ? z[i] : mx;
            for (int i = 0; i < nv; i++)
                se += exp(z[i] - mx);
            const double lse = mx + log(se);
            const double dl = fabs(r->lse[row] - lse), dt = fabs(r->tlp[row] - (z[t] - lse));
            ck_assert_msg(isfinite(r->lse[row]) && isfinite(r->tlp[row]), "row %d not finite", row);
            d.max_lse = dl > d.max_lse ? dl : d.max_lse;
            if (dt > d.max_tlp) {
                d.max_tlp = dt;
                d.max_row = row;
            }
            d.sum_tlp += dt;
            d.n_over += dt > 1e-4;
            d.n++;
        }
    }
    qe_ref_free(ref);
    free(z);
    return d;
}

/* Prefill n_seq random sequences of n_tok on e (targets: next token, the
 * last row token 0), poisoned first. */
static void run(qe_engine *e, res *r, int n_seq, int n_tok, const int32_t *tok)
{
    int32_t *tgt = malloc((size_t)n_seq * n_tok * sizeof *tgt);
    ck_assert_ptr_nonnull(tgt);
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < n_tok; p++)
            tgt[s * n_tok + p] = p + 1 < n_tok ? tok[s * n_tok + p + 1] : 0;
    res_init(r, n_seq * n_tok, qe_engine_options(e).top_k);
    OK(qe_engine_poison(e));
    OK(qe_engine_prefill(e, n_seq, n_tok, tok, 0, tgt, &r->out));
    free(tgt);
}

/* (weights) A real model requantized to Q8_0 and Q4_0: the device matmul
 * reads the blocks as stored, the reference decodes the same blocks; both
 * with an f32/double cache. */
static void check_weights(const char *rel, int n_tok, uint64_t seed)
{
    enum { NS = 2 };
    rng_seed(seed);
    qe_model *m = open_model(rel);
    int32_t tok[NS * 128];
    ck_assert_int_le(n_tok, 128);
    rnd_tokens(tok, (size_t)NS * n_tok, qe_model_hparams(m)->n_vocab);
    const qe_dtype types[] = {QE_DT_Q8_0, QE_DT_Q4_0};
    for (int i = 0; i < 2; i++) {
        qe_quant_model *qm = NULL;
        OK(qe_quant_model_new(m, types[i], &qm));
        const qe_model *q = qe_quant_model_get(qm);
        /* The requantized model really holds blocks (not a silent f32 copy). */
        ck_assert_int_eq(qe_model_weights(q)->layers[0].wq.type, types[i]);
        qe_engine *e = open_engine_kv(q, n_tok, NS, 4, QE_KV_F32, QE_KV_F32);
        res r;
        run(e, &r, NS, n_tok, tok);
        diff d = ref_diff(q, &r, NS, n_tok, tok, 0, QE_KV_F32, QE_KV_F32);
        ck_assert_msg(d.max_tlp < 1e-4 && d.max_lse < 1e-4, "%s %s: max |d logp| %.3g, |d lse| %.3g",
                      rel, qe_dtype_name(types[i]), d.max_tlp, d.max_lse);
        res_free(&r);
        qe_engine_close(e);
        qe_quant_model_free(qm);
    }
    qe_model_close(m);
}

START_TEST(test_weights_260k) { check_weights("models/stories260K.gguf", 64, 5); }
END_TEST

START_TEST(test_weights_656k) { check_weights("models/TinyStories-656K", 48, 6); }
END_TEST

/* (kv) Every cache format on stories260K against qe_ref_new_kv. */
START_TEST(test_kv_formats)
{
    enum { NS = 2, NT = 64 };
    rng_seed(9);
    qe_model *m = open_model("models/stories260K.gguf");
    int32_t tok[NS * NT];
    rnd_tokens(tok, NS * NT, qe_model_hparams(m)->n_vocab);
    const qe_kv_format pairs[][2] = {
        {QE_KV_F32, QE_KV_F32},   {QE_KV_F16, QE_KV_F16}, {QE_KV_Q8_0, QE_KV_Q8_0},
        {QE_KV_Q4_0, QE_KV_Q4_0}, {QE_KV_TQ4, QE_KV_TQ4}, {QE_KV_TQ3, QE_KV_TQ3},
        {QE_KV_TQ2, QE_KV_TQ2},   {QE_KV_TQ4, QE_KV_Q8_0}, {QE_KV_F16, QE_KV_TQ3}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        qe_engine *e = open_engine_kv(m, NT, NS, 4, pairs[i][0], pairs[i][1]);
        res r;
        run(e, &r, NS, NT, tok);
        diff d = ref_diff(m, &r, NS, NT, tok, 1, pairs[i][0], pairs[i][1]);
        diff d0 = ref_diff(m, &r, NS, NT, tok, 1, QE_KV_F32, QE_KV_F32);
        const double mean = d.sum_tlp / d.n, mean0 = d0.sum_tlp / d0.n;
        fprintf(stderr, "# kv %s/%s: |d logp| vs the same format: mean %.3g, max %.3g; vs f32: mean %.3g\n",
                qe_kv_format_name(pairs[i][0]), qe_kv_format_name(pairs[i][1]), mean, d.max_tlp,
                mean0);
        if (i == 0) {
            ck_assert_msg(d.max_tlp < 1e-4 && d.max_lse < 1e-4, "f32 cache: max |d logp| %.3g",
                          d.max_tlp);
        } else {
            ck_assert_msg(mean <= 2e-5 || mean <= 0.2 * mean0,
                          "%s/%s: mean |d logp| %.3g vs its own format, %.3g vs f32",
                          qe_kv_format_name(pairs[i][0]), qe_kv_format_name(pairs[i][1]), mean,
                          mean0);
            ck_assert_msg(mean <= 5e-4 && d.max_tlp <= 2e-2, "%s/%s: mean |d logp| %.3g, max %.3g",
                          qe_kv_format_name(pairs[i][0]), qe_kv_format_name(pairs[i][1]), mean,
                          d.max_tlp);
        }
        res_free(&r);
        qe_engine_close(e);
    }
    qe_model_close(m);
}
END_TEST

Suite *engine_formats_suite(void)
{
    Suite *s = suite_create("engine_formats");
    TCase *tc = tcase_create("formats");
    tcase_set_timeout(tc, 240);
    tcase_add_unchecked_fixture(tc, shared_setup, shared_teardown);
    tcase_add_test(tc, test_codec);
    tcase_add_test(tc, test_weights_260k);
    tcase_add_test(tc, test_weights_656k);
    tcase_add_test(tc, test_kv_formats);
    suite_add_tcase(s, tc);
    return s;
}
