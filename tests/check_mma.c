/* check_mma.c - the tensor-core matmul path (QE_GEMM_MMA, kernels/mma.cl).
 *
 *   limits  on any device: the gemm option and QEVAL_GEMM are checked;
 *           AUTO resolves to what the probe allows (F32 on PoCL, MMA where
 *           inline-PTX mma.sync works); forcing MMA elsewhere is
 *           QE_EUNSUPPORTED
 *   mma     only where the device has mma.sync (NVIDIA; skipped with a note
 *           on PoCL, so CI covers the limits only - bench/gpu_check.sh runs
 *           this suite on the GPU machine):
 *           - prefill of the trained models in f32 / f16 / q8_0 / q4_0
 *             weights (q8_0 / q4_0 through f16 copies of the weights, the
 *             default, and through mma_tile's builds for the format, its
 *             wgmma build where the probe found wgmma and its mma.sync
 *             one; f16 through the mma.sync build and the default, wgmma
 *             where the probe found it)
 *             against the same device's f32 kernels
 *             and (f32 weights) the double reference: f16 operands carry a relative
 *             rounding error of at most 2^-11 each, so log-probs may move by
 *             a few 1e-3 through the layers: max |d| < 5e-2, mean < 5e-3
 *           - batch invariance: a sequence prefilled alone and inside a
 *             batch of 4 gives bit-identical results (q4_0, and q8_0
 *             through its f16 copies)
 *           - tile order: prefill with mma_tile's work-groups in groups of
 *             2 and 5 row tiles (QEVAL_MMA_RASTER) is bit-identical to
 *             output tiles first, f16, q8_0 and q4_0 weights, through the
 *             default, wgmma and mma.sync builds; the wgmma builds' sums
 *             are the mma.sync builds' bit for bit
 *           - decode: a sequence decoded alone (mma_skinny; with q8_0 /
 *             q4_0 weights its one-row build, which makes the layer norms,
 *             the final norm and the SwiGLU itself and does RoPE and the
 *             f16 cache writes in its Q/K/V epilogue) and sharing its calls
 *             with up to 69 others (mma_wide, in several shapes and both
 *             splits, after separate rmsnorm, silu_mul, rope_rows and
 *             kv_store launches), and alone with the one-row build's
 *             work-groups each taking several output blocks (1 and 3
 *             groups), is bit-identical in f32, f16, q8_0 and q4_0
 *             weights, and close to prefill
 *   attention on any device: prefill attention (attention.cl; attn_mma.cl
 *           too where mma.sync works) of random q, K and V in one-layer
 *           synthetic models of head_dim 32, 64 and 128, caches f32, f16,
 *           q8_0 / q4_0 and TurboQuant (tq4 / tq3, tq2 / f16, q8_0 / tq4:
 *           attn_mma rotating q and its output itself), with and without a sliding
 *           window, against a double-precision softmax over the
 *           host-decoded cache rows: max |d| < 1e-4 for the f32 kernel,
 *           < 1e-2 for f16 operands (outputs are O(1)); a prefix of the
 *           positions prefilled alone gives bit-identical rows
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "decode.h"
#include "engine.h"
#include "engine_internal.h" /* the attention test drives qe_engine_run_attention */
#include "kv_format.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "synth.h"
#include "testutil.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())
#define MAX_TOL 5e-2
#define MEAN_TOL 5e-3
#define N_TOK 48
#define N_SEQ 4
#define DEC_SLOTS 70 /* > 16 rows in a call: mma_wide; > 64: two of its row groups */

static int has_mma(void)
{
    qe_cl_caps caps;
    OK(qe_cl_probe(qe_test_cl(), &caps));
    return caps.ptx_mma;
}

static qe_model *open_model(const char *rel)
{
    const char *path = qe_test_data(rel);
    qe_model *m = NULL;
    OK(qe_model_open(path, &m));
    return m;
}

static void tokens(int32_t *t, int n, int n_vocab, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)n_vocab);
    }
}

/* qeval synth's model c (weights of type wt, values from seed) written to
 * dir/name.gguf and opened. */
static qe_model *synth_model(const char *dir, const char *name, const qe_synth_config *c,
                             qe_dtype wt, uint64_t seed)
{
    qe_synth *sy = NULL;
    OK(qe_synth_new(c, wt, seed, &sy));
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    OK(qe_synth_write(sy, path, 0));
    qe_synth_free(sy);
    qe_model *m = NULL;
    OK(qe_model_open(path, &m));
    return m;
}

/* Target log-probs (next token) of n_seq sequences of n_tok tokens. */
/* runs prefills on one engine, each asserted to give the first's bits (the
 * later ones read what the first left: kept f16 copies, engine_wh.c);
 * tlp and lse from the last. */
static void prefill_n(const qe_model *m, qe_gemm gemm, int n_seq, int n_tok, const int32_t *tok,
                      float *tlp, float *lse, int runs)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = n_tok;
    o.n_seq = n_seq;
    o.gemm = gemm;
    qe_engine *e = qe_test_engine(m, &o);
    ck_assert_int_eq(qe_engine_options(e).gemm, gemm);
    int32_t *tgt = malloc((size_t)n_seq * (size_t)n_tok * sizeof *tgt);
    ck_assert_ptr_nonnull(tgt);
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < n_tok; p++)
            tgt[s * n_tok + p] = p + 1 < n_tok ? tok[s * n_tok + p + 1] : -1;
    const size_t n = (size_t)n_seq * (size_t)n_tok;
    float *t0 = malloc(n * sizeof *t0), *l0 = malloc(n * sizeof *l0);
    ck_assert(t0 && l0);
    for (int r = 0; r < runs; r++) {
        qe_engine_out out = {.lse = lse, .target_logp = tlp};
        OK(qe_engine_prefill(e, n_seq, n_tok, tok, 0, tgt, &out));
        if (r == 0) {
            memcpy(t0, tlp, n * sizeof *t0);
            memcpy(l0, lse, n * sizeof *l0);
        }
        ck_assert_msg(memcmp(t0, tlp, n * sizeof *t0) == 0 && memcmp(l0, lse, n * sizeof *l0) == 0,
                      "prefill %d of one engine differs from its first", r + 1);
    }
    free(t0);
    free(l0);
    free(tgt);
    qe_engine_close(e);
}

static void prefill(const qe_model *m, qe_gemm gemm, int n_seq, const int32_t *tok, float *tlp,
                    float *lse)
{
    prefill_n(m, gemm, n_seq, N_TOK, tok, tlp, lse, 1);
}

typedef struct diff {
    double max, sum;
    int n;
} diff;

static void diff_add(diff *d, double a, double b)
{
    double x = fabs(a - b);
    ck_assert_msg(isfinite(a) && isfinite(b), "non-finite log-prob %g vs %g", a, b);
    d->max = x > d->max ? x : d->max;
    d->sum += x;
    d->n++;
}

static void diff_check(const diff *d, const char *what)
{
    printf("# mma: %s: max |d logp| %.3g, mean %.3g over %d\n", what, d->max, d->sum / d->n, d->n);
    ck_assert_msg(d->max < MAX_TOL && d->sum / d->n < MEAN_TOL, "%s: max %g mean %g", what, d->max,
                  d->sum / d->n);
}

/* ---- limits ---- */

START_TEST(test_limits)
{
    qe_model *m = open_model("models/stories260K.gguf");
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = 16;
    qe_engine *e = NULL;
    o.gemm = (qe_gemm)7;
    ck_assert_int_eq(qe_engine_open(qe_test_cl(), m, &o, &e), QE_EINVAL);
    ck_assert_ptr_null(e);
    ck_assert_ptr_null(qe_gemm_name((qe_gemm)7));
    ck_assert_str_eq(qe_gemm_name(QE_GEMM_MMA), "mma");
    qe_gemm g = QE_GEMM_MMA;
    ck_assert(qe_gemm_parse("f32", &g) && g == QE_GEMM_F32);
    ck_assert(qe_gemm_parse("auto", &g) && g == QE_GEMM_AUTO);
    ck_assert(qe_gemm_parse("mma", &g) && g == QE_GEMM_MMA);
    ck_assert(!qe_gemm_parse("MMA", &g) && !qe_gemm_parse("", &g) && !qe_gemm_parse(NULL, &g));
    ck_assert_int_eq(g, QE_GEMM_MMA); /* untouched by a failed parse */

    o.gemm = QE_GEMM_AUTO;
    setenv("QEVAL_GEMM", "tensor", 1);
    ck_assert_int_eq(qe_engine_open(qe_test_cl(), m, &o, &e), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "QEVAL_GEMM=tensor"));
    setenv("QEVAL_GEMM", "f32", 1);
    OK(qe_engine_open(qe_test_cl(), m, &o, &e));
    ck_assert_int_eq(qe_engine_options(e).gemm, QE_GEMM_F32);
    qe_engine_close(e);
    unsetenv("QEVAL_GEMM");

    const int mma = has_mma();
    OK(qe_engine_open(qe_test_cl(), m, &o, &e));
    ck_assert_int_eq(qe_engine_options(e).gemm, mma ? QE_GEMM_MMA : QE_GEMM_F32);
    qe_engine_close(e);
    e = NULL;
    o.gemm = QE_GEMM_MMA;
    if (!mma) {
        ck_assert_int_eq(qe_engine_open(qe_test_cl(), m, &o, &e), QE_EUNSUPPORTED);
        ck_assert_ptr_null(e);
    }
    qe_model_close(m);
}
END_TEST

/* ---- on a device with mma.sync ---- */

#define NEED_MMA()                                                                                 \
    do {                                                                                           \
        if (!has_mma()) {                                                                          \
            printf("# mma: %s has no inline-PTX mma.sync: skipped\n",                              \
                   qe_cl_device(qe_test_cl())->name);                                              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Set (on) or unset the environment variables of spec, "NAME=VALUE"
 * words separated by spaces (an engine knob or two for one variant). */
static void env_spec(const char *spec, int on)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(w, '=');
        ck_assert_ptr_nonnull(eq);
        *eq = '\0';
        if (on)
            setenv(w, eq + 1, 1);
        else
            unsetenv(w);
    }
}

static void vs_f32_and_ref(const char *rel)
{
    qe_model *m = open_model(rel);
    const int nv = qe_model_hparams(m)->n_vocab;
    int32_t tok[N_SEQ * N_TOK];
    tokens(tok, N_SEQ * N_TOK, nv, 7);
    const qe_dtype fmts[] = {QE_DT_F32, QE_DT_F16, QE_DT_Q8_0, QE_DT_Q4_0};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        qe_quant_model *q = NULL;
        OK(qe_quant_model_new(m, fmts[f], &q));
        const qe_model *qm = qe_quant_model_get(q);
        float a[N_SEQ * N_TOK], b[N_SEQ * N_TOK], la[N_SEQ * N_TOK], lb[N_SEQ * N_TOK];
        prefill(qm, QE_GEMM_F32, N_SEQ, tok, b, lb);
        char what[128];
        /* Q8_0 / Q4_0 prefill matmuls through the format's wgmma build
           (where the probe found wgmma), its mma.sync build and the
           default, f16 copies of the weights (lib/engine_wh.c); f16
           ones through the mma.sync build and the default (MT_WG where the
           probe found wgmma). The last variant of each format runs with
           the defaults, so a holds the default's results for the reference
           below. */
        const int quant = fmts[f] == QE_DT_Q8_0 || fmts[f] == QE_DT_Q4_0;
        const char *const quant_vs[] = {"QEVAL_MMA_WGMMA=1", "QEVAL_MMA_WH=none", NULL};
        const char *const f16_vs[] = {"QEVAL_MMA_WGMMA=0", NULL}, *const f32_vs[] = {NULL};
        const char *const *vs = quant ? quant_vs : fmts[f] == QE_DT_F16 ? f16_vs : f32_vs;
        for (int v = 0; v == 0 || vs[v - 1]; v++) {
            if (vs[v])
                env_spec(vs[v], 1);
            prefill(qm, QE_GEMM_MMA, N_SEQ, tok, a, la);
            if (vs[v])
                env_spec(vs[v], 0);
            diff d = {0};
            for (int i = 0; i < N_SEQ * N_TOK; i++)
                if ((i + 1) % N_TOK)
                    diff_add(&d, a[i], b[i]);
            snprintf(what, sizeof what, "%s %s%s%s: mma vs f32 kernels", rel,
                     qe_dtype_name(fmts[f]), vs[v] ? ", " : "", vs[v] ? vs[v] : "");
            diff_check(&d, what);
        }
        if (fmts[f] == QE_DT_F32) { /* and against the double reference */
            qe_ref *r = NULL;
            double *z = malloc((size_t)nv * sizeof *z);
            ck_assert_ptr_nonnull(z);
            OK(qe_ref_new(qm, N_TOK, &r));
            diff dr = {0};
            for (int s = 0; s < N_SEQ; s++) {
                qe_ref_reset(r);
                for (int p = 0; p + 1 < N_TOK; p++) {
                    OK(qe_ref_step(r, tok[s * N_TOK + p], p, z));
                    double mx = z[0], se = 0;
                    for (int i = 1; i < nv; i++)
                        mx = z[i] > mx ? z[i] : mx;
                    for (int i = 0; i < nv; i++)
                        se += exp(z[i] - mx);
                    diff_add(&dr, a[s * N_TOK + p], z[tok[s * N_TOK + p + 1]] - mx - log(se));
                }
            }
            snprintf(what, sizeof what, "%s: mma vs the double reference", rel);
            diff_check(&dr, what);
            qe_ref_free(r);
            free(z);
        }
        qe_quant_model_free(q);
    }
    qe_model_close(m);
}

START_TEST(test_vs_f32_260k) { NEED_MMA(); vs_f32_and_ref("models/stories260K.gguf"); }
END_TEST

START_TEST(test_vs_f32_656k) { NEED_MMA(); vs_f32_and_ref("models/TinyStories-656K"); }
END_TEST

START_TEST(test_batch_invariance)
{
    NEED_MMA();
    qe_model *m = open_model("models/TinyStories-656K");
    int32_t tok[N_SEQ * N_TOK];
    tokens(tok, N_SEQ * N_TOK, qe_model_hparams(m)->n_vocab, 11);
    /* Q4_0 through mma_tile's Q4_0 build, Q8_0 through f16 copies of its
       weights (the defaults) */
    const qe_dtype fmts[] = {QE_DT_Q4_0, QE_DT_Q8_0};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        qe_quant_model *q = NULL;
        OK(qe_quant_model_new(m, fmts[f], &q));
        float a[N_SEQ * N_TOK], la[N_SEQ * N_TOK], b[N_TOK], lb[N_TOK];
        prefill(qe_quant_model_get(q), QE_GEMM_MMA, N_SEQ, tok, a, la);
        /* sequence 2 alone */
        prefill(qe_quant_model_get(q), QE_GEMM_MMA, 1, tok + 2 * N_TOK, b, lb);
        for (int p = 0; p < N_TOK; p++) {
            ck_assert_msg(memcmp(&la[2 * N_TOK + p], &lb[p], sizeof(float)) == 0,
                          "%s pos %d: lse %.9g in a batch, %.9g alone", qe_dtype_name(fmts[f]), p,
                          (double)la[2 * N_TOK + p], (double)lb[p]);
            if (p + 1 < N_TOK)
                ck_assert(memcmp(&a[2 * N_TOK + p], &b[p], sizeof(float)) == 0);
        }
        qe_quant_model_free(q);
    }
    qe_model_close(m);
}
END_TEST

/* mma_tile's work-group orders (QEVAL_MMA_RASTER, read at engine open):
 * 8 sequences of N_TOK tokens are 3 row tiles of 128, so groups of 2 row
 * tiles end with a partial group and groups of 5 are one partial group;
 * each order must compute every tile once, as the default order does. For
 * f16, Q8_0 and Q4_0 weights, through the default build, the wgmma builds
 * (QEVAL_MMA_WGMMA=1, where the probe found wgmma) and the mma.sync ones;
 * and the wgmma builds' sums are the mma.sync builds' bit for bit (the
 * same k in each 16-wide step). A wgmma build that reads registers still
 * in use gives other sums for other orders (session 20's first Q8_0 one).
 * Q4_0's default reads f16 copies of its weights (lib/engine_wh.c), with
 * the same k in each step as its own builds: its sums must be theirs too
 * (test_wh_ring checks the copies' ordering where copies overlap). */
START_TEST(test_tile_order)
{
    NEED_MMA();
    enum { NS = 8 };
    qe_model *m = open_model("models/TinyStories-656K");
    static int32_t tok[NS * N_TOK];
    static float a[NS * N_TOK], la[NS * N_TOK], b[NS * N_TOK], lb[NS * N_TOK];
    static float wa[NS * N_TOK], wla[NS * N_TOK], da[NS * N_TOK], dla[NS * N_TOK];
    tokens(tok, NS * N_TOK, qe_model_hparams(m)->n_vocab, 13);
    const qe_dtype fmts[] = {QE_DT_F16, QE_DT_Q8_0, QE_DT_Q4_0};
    const char *const orders[] = {"2", "5"};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        qe_quant_model *q = NULL;
        OK(qe_quant_model_new(m, fmts[f], &q));
        /* default, wgmma, mma.sync */
        const char *const builds[] = {NULL, "QEVAL_MMA_WGMMA=1",
                                      fmts[f] == QE_DT_F16 ? "QEVAL_MMA_WGMMA=0"
                                                           : "QEVAL_MMA_WGMMA=0 QEVAL_MMA_WH=none"};
        /* the LM head in its own format's build throughout (its f16 copy,
           engine_wh.c, sums a Q8_0 head in another k order than Q8_0's
           build; q4_0 models keep a Q8_0 head): these compare the layers' */
        setenv("QEVAL_MMA_WH_HEAD", "0", 1);
        for (int v = 0; v < 3; v++) {
            if (builds[v])
                env_spec(builds[v], 1);
            setenv("QEVAL_MMA_RASTER", "0", 1);
            prefill(qe_quant_model_get(q), QE_GEMM_MMA, NS, tok, a, la);
            for (size_t i = 0; i < sizeof orders / sizeof *orders; i++) {
                setenv("QEVAL_MMA_RASTER", orders[i], 1);
                prefill(qe_quant_model_get(q), QE_GEMM_MMA, NS, tok, b, lb);
                ck_assert_msg(memcmp(la, lb, sizeof la) == 0 && memcmp(a, b, sizeof a) == 0,
                              "%s weights, %s: groups of %s row tiles differ from the default "
                              "order",
                              qe_dtype_name(fmts[f]), builds[v] ? builds[v] : "default",
                              orders[i]);
            }
            unsetenv("QEVAL_MMA_RASTER");
            if (builds[v])
                env_spec(builds[v], 0);
            if (v == 0) {
                memcpy(da, a, sizeof a);
                memcpy(dla, la, sizeof la);
            } else if (v == 1) {
                memcpy(wa, a, sizeof a);
                memcpy(wla, la, sizeof la);
            } else {
                ck_assert_msg(memcmp(wla, la, sizeof la) == 0 && memcmp(wa, a, sizeof a) == 0,
                              "%s weights: the wgmma build's sums differ from mma.sync's",
                              qe_dtype_name(fmts[f]));
                ck_assert_msg(fmts[f] != QE_DT_Q4_0 ||
                                  (memcmp(dla, la, sizeof la) == 0 && memcmp(da, a, sizeof a) == 0),
                              "q4_0 weights: the default build's sums (through f16 copies) "
                              "differ from the format's own build's");
            }
        }
        unsetenv("QEVAL_MMA_WH_HEAD");
        qe_quant_model_free(q);
    }
    qe_model_close(m);
}
END_TEST

/* The f16 copies (lib/engine_wh.c) with the GPU behind the host, as in
 * real prefill: a synthetic model of Llama-3.2-1B's layer widths (3
 * layers, Q4_0 weights), 8 sequences of 512 tokens (gate and up about
 * 0.6 ms a launch on the H200, a copy about 25 us), the default build
 * (copies on the side queue), resident (the default here) and in the ring
 * (QEVAL_MMA_WH_RESIDENT=0), each two prefills of one engine (the second
 * reads the kept copies, or the ring's reused slots), against Q4_0's own
 * mma.sync build (QEVAL_MMA_WGMMA=0 QEVAL_MMA_WH=none), which puts the same
 * k in each step: the same bits, unless a copy overwrites a slot a matmul
 * still reads, or a matmul reads a copy not yet made. (TinyStories-656K's
 * tiny launches keep the GPU up with the host, so no copy overlaps a
 * matmul there and test_tile_order alone would not notice a dropped wait.) */
START_TEST(test_wh_ring)
{
    NEED_MMA();
    enum { NS = 8, NT = 512 };
    char *dir = qe_test_tmpdir();
    qe_synth_config c;
    OK(qe_synth_find("llama-3.2-1b", &c));
    c.name = "wh-ring";
    c.n_layers = 3;
    c.n_vocab = QE_SYNTH_MIN_VOCAB;
    qe_model *m = synth_model(dir, "wh-ring", &c, QE_DT_Q4_0, 5);
    const size_t n = (size_t)NS * NT;
    int32_t *tok = malloc(n * sizeof *tok);
    float *a = malloc(n * sizeof *a), *la = malloc(n * sizeof *la);
    float *b = malloc(n * sizeof *b), *lb = malloc(n * sizeof *lb);
    ck_assert(tok && a && la && b && lb);
    tokens(tok, (int)n, c.n_vocab, 21);
    env_spec("QEVAL_MMA_WGMMA=0 QEVAL_MMA_WH=none", 1);
    prefill_n(m, QE_GEMM_MMA, NS, NT, tok, b, lb, 1);
    env_spec("QEVAL_MMA_WGMMA=0 QEVAL_MMA_WH=none", 0);
    const char *const modes[] = {NULL, "QEVAL_MMA_WH_RESIDENT=0"};
    for (int v = 0; v < 2; v++) {
        if (modes[v])
            env_spec(modes[v], 1);
        prefill_n(m, QE_GEMM_MMA, NS, NT, tok, a, la, 2);
        if (modes[v])
            env_spec(modes[v], 0);
        size_t bad = 0, first = n;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&la[i], &lb[i], sizeof *la) || memcmp(&a[i], &b[i], sizeof *a)) {
                bad++;
                first = first < i ? first : i;
            }
        ck_assert_msg(bad == 0, "q4_0 through %s copies: %zu of %zu positions differ from "
                                "Q4_0's own build, the first %zu (lse %.9g vs %.9g)",
                      v ? "the ring's" : "resident", bad, n, first,
                      first < n ? (double)la[first] : 0.0, first < n ? (double)lb[first] : 0.0);
    }
    free(tok);
    free(a);
    free(la);
    free(b);
    free(lb);
    qe_model_close(m);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* Decode N_TOK tokens of sequence 0 one per call, alone (1 slot) or with up
 * to 19 other sequences in the same calls (20 slots, sequence 0 in slot 2;
 * sequence s > 0 reads the tokens of sequence s % N_SEQ); the log-sum-exp
 * after each token. */
static void decode_lse(const qe_model *m, const int32_t *tok, int shared, float *lse)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = N_TOK;
    o.n_seq = shared ? DEC_SLOTS : 1;
    o.gemm = QE_GEMM_MMA;
    qe_engine *e = qe_test_engine(m, &o);
    qe_decode *d = NULL;
    OK(qe_decode_open(e, NULL, &d));
    float l[DEC_SLOTS];
    int max_n = 0;
    for (int p = 0; p < N_TOK; p++) {
        qe_decode_seq seqs[DEC_SLOTS];
        int n = 0;
        for (int s = 0; s < (shared ? DEC_SLOTS : 1); s++) {
            /* the others start late and stop early: ragged batches */
            if (s > 0 && (p < (s % 4) * 3 || p > N_TOK - 1 - (s % 5) * 4))
                continue;
            /* sequence s in slot (s + 2) % DEC_SLOTS: sequence 0 rides in slot 2 */
            seqs[n++] = (qe_decode_seq){.slot = shared ? (s + 2) % DEC_SLOTS : 0, .n_tok = 1,
                                        .tokens = &tok[(s % N_SEQ) * N_TOK + p]};
        }
        max_n = n > max_n ? n : max_n;
        qe_decode_out out = {.lse = l};
        OK(qe_decode_run(d, n, seqs, &out));
        lse[p] = l[0];
    }
    ck_assert_int_eq(max_n, shared ? DEC_SLOTS : 1);
    qe_decode_close(d);
    qe_engine_close(e);
}

START_TEST(test_decode)
{
    NEED_MMA();
    qe_model *m = open_model("models/stories260K.gguf");
    static const qe_dtype fmts[] = {QE_DT_Q8_0, QE_DT_Q4_0, QE_DT_F16, QE_DT_F32};
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        qe_quant_model *q = NULL;
        OK(qe_quant_model_new(m, fmts[f], &q));
        const qe_model *qm = qe_quant_model_get(q);
        int32_t tok[N_SEQ * N_TOK];
        tokens(tok, N_SEQ * N_TOK, qe_model_hparams(m)->n_vocab, 5);
        float alone[N_TOK], shared[N_TOK], tlp[N_TOK], pl[N_TOK];
        decode_lse(qm, tok, 0, alone);
        /* the one-row build with fewer work-groups than output blocks, each
           taking several in turn (Q/K/V with RoPE and the cache writes, the
           LM head): one group for all, and 3, which leaves some a block more */
        static const char *const x1_groups[] = {"1", "3"};
        for (size_t i = 0; i < sizeof x1_groups / sizeof x1_groups[0]; i++) {
            float looped[N_TOK];
            setenv("QEVAL_MMA_X1_GROUPS", x1_groups[i], 1);
            decode_lse(qm, tok, 0, looped);
            unsetenv("QEVAL_MMA_X1_GROUPS");
            for (int p = 0; p < N_TOK; p++)
                ck_assert_msg(memcmp(&alone[p], &looped[p], sizeof(float)) == 0,
                              "%s, %s one-row groups, step %d: lse %.9g, %.9g with a group a "
                              "block", qe_dtype_name(fmts[f]), x1_groups[i], p,
                              (double)looped[p], (double)alone[p]);
        }
        /* calls of more than 16 rows: mma_wide in its default shape (split
           chosen per call), and others with each split forced; the
           single-row calls keep mma_skinny */
        static const char *const shapes[] = {NULL, "1,1,1", "2,4,1000000", "1,2,1000000", "2,3,1"};
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            if (shapes[i])
                setenv("QEVAL_MMA_WIDE", shapes[i], 1);
            decode_lse(qm, tok, 1, shared);
            unsetenv("QEVAL_MMA_WIDE");
            for (int p = 0; p < N_TOK; p++)
                ck_assert_msg(memcmp(&alone[p], &shared[p], sizeof(float)) == 0,
                              "%s, shape %s, step %d: lse %.9g alone, %.9g sharing calls",
                              qe_dtype_name(fmts[f]), shapes[i] ? shapes[i] : "default", p,
                              (double)alone[p], (double)shared[p]);
        }
        if (fmts[f] == QE_DT_Q8_0) {
            prefill(qm, QE_GEMM_MMA, 1, tok, tlp, pl);
            diff d = {0};
            for (int p = 0; p < N_TOK; p++)
                diff_add(&d, alone[p], pl[p]);
            diff_check(&d, "stories260K q8_0: decode vs prefill log-sum-exp");
        }
        qe_quant_model_free(q);
    }
    qe_model_close(m);
}
END_TEST

/* ---- the LM head reduced to statistics as it runs ---- */

enum { HL_SEQ = 8, HL_TOK = 100 };

/* One prefill of the first n_seq of HL_SEQ sequences (each one's last row
 * without a target) on an engine of top-K k: per row lse, target log-prob,
 * arg-max, and (k = 1) the top-1 id and log-prob. */
static void head_stats(const qe_model *m, int k, int n_seq, const int32_t *tok, float *lse,
                       float *tlp, int32_t *amax, int32_t *tid, float *tlk)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = HL_TOK;
    o.n_seq = HL_SEQ;
    o.top_k = k;
    o.gemm = QE_GEMM_MMA;
    qe_engine *e = qe_test_engine(m, &o);
    static int32_t tgt[HL_SEQ * HL_TOK];
    for (int r = 0; r < n_seq * HL_TOK; r++)
        tgt[r] = r % HL_TOK + 1 < HL_TOK ? tok[r + 1] : -1;
    qe_engine_out out = {.lse = lse, .target_logp = tlp, .argmax = amax,
                         .topk_id = k ? tid : NULL, .topk_logp = k ? tlk : NULL};
    OK(qe_engine_prefill(e, n_seq, HL_TOK, tok, 0, tgt, &out));
    qe_engine_close(e);
}

/* Prefill's LM head through mma_tile_lse and logit_tiles (the default
 * where the f16 wgmma build serves the head and top-K is at most 1: f16
 * weights, and Q8_0 ones through the head's f16 copy) against logit_stats
 * over stored logits (QEVAL_MMA_LSE=0): the same arg-max and top-1, lse and
 * log-probs within 1e-4 (the same terms summed in another order). A vocab
 * of 1,000 ends in a partial tile of 104 ids. And the fused rows do not
 * depend on the batch: one sequence alone gives its rows of the batch of
 * 8 bit for bit. */
START_TEST(test_head_lse)
{
    NEED_MMA();
    char *dir = qe_test_tmpdir();
    qe_synth_config c = {.name = "head-lse", .dim = 128, .n_layers = 2, .n_heads = 2,
                         .n_kv_heads = 1, .head_dim = 64, .n_ff = 256, .n_vocab = 1000,
                         .n_ctx = 256, .rope_base = 10000.0, .rms_eps = 1e-5};
    enum { N = HL_SEQ * HL_TOK };
    static int32_t tok[N], a_am[N], b_am[N], a_id[N], b_id[N], s_am[N], s_id[N];
    static float a_l[N], a_t[N], a_k[N], b_l[N], b_t[N], b_k[N], s_l[N], s_t[N], s_k[N];
    tokens(tok, N, c.n_vocab, 29);
    const qe_dtype wts[] = {QE_DT_F16, QE_DT_Q8_0};
    for (size_t w = 0; w < sizeof wts / sizeof wts[0]; w++) {
        qe_model *m = synth_model(dir, qe_dtype_name(wts[w]), &c, wts[w], 11);
        for (int k = 0; k <= 1; k++) {
            head_stats(m, k, HL_SEQ, tok, a_l, a_t, a_am, a_id, a_k);
            setenv("QEVAL_MMA_LSE", "0", 1);
            head_stats(m, k, HL_SEQ, tok, b_l, b_t, b_am, b_id, b_k);
            unsetenv("QEVAL_MMA_LSE");
            double dl = 0, dt = 0;
            for (int r = 0; r < N; r++) {
                const int last = r % HL_TOK == HL_TOK - 1;
                ck_assert_msg(a_am[r] == b_am[r], "%s top-K %d row %d: arg-max %d, logit_stats %d",
                              qe_dtype_name(wts[w]), k, r, (int)a_am[r], (int)b_am[r]);
                ck_assert(isfinite(a_l[r]) && last == isnan(a_t[r]) && last == isnan(b_t[r]));
                dl = fmax(dl, fabs((double)a_l[r] - b_l[r]));
                dt = last ? dt : fmax(dt, fabs((double)a_t[r] - b_t[r]));
                if (k) {
                    ck_assert_int_eq(a_id[r], b_id[r]);
                    dt = fmax(dt, fabs((double)a_k[r] - b_k[r]));
                }
            }
            printf("# mma: head statistics as the head runs, %s top-K %d: max |d lse| %.3g, "
                   "|d logp| %.3g against logit_stats\n",
                   qe_dtype_name(wts[w]), k, dl, dt);
            ck_assert_msg(dl < 1e-4 && dt < 1e-4, "%s top-K %d: lse %g, logp %g apart",
                          qe_dtype_name(wts[w]), k, dl, dt);
            head_stats(m, k, 1, tok, s_l, s_t, s_am, s_id, s_k);
            ck_assert_msg(memcmp(s_l, a_l, HL_TOK * sizeof *s_l) == 0 &&
                              memcmp(s_t, a_t, HL_TOK * sizeof *s_t) == 0 &&
                              memcmp(s_am, a_am, HL_TOK * sizeof *s_am) == 0 &&
                              (!k || memcmp(s_k, a_k, HL_TOK * sizeof *s_k) == 0),
                          "%s top-K %d: one sequence's statistics differ from its rows of 8",
                          qe_dtype_name(wts[w]), k);
        }
        qe_model_close(m);
    }
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- RoPE in the Q and K matmuls' epilogue ---- */

enum { RE_SEQ = 3, RE_TOK = 100, RE_CTX = 128 };
#define RE_ROWS (RE_SEQ * RE_TOK)
#define RE_K 10

typedef struct rope_out {
    float lse[RE_ROWS], tlp[RE_ROWS], tlk[RE_ROWS * RE_K];
    int32_t tid[RE_ROWS * RE_K];
} rope_out;

/* One prefill of RE_SEQ sequences of RE_TOK tokens (positions past RE_TOK
 * of the RE_CTX-row caches unused, so a row's position is not its cache
 * row) with caches kk / kv and top-K 10, on a profiled context: the
 * results into *out, and the launches of rope.cl's kernel (ropes[0]) and
 * of kv.cl's kv_store (ropes[1]). */
static void rope_run(uint64_t ropes[2], qe_cl *cl, const qe_model *m, qe_kv_format kk, qe_kv_format kv,
                         const int32_t *tok, rope_out *out)
{
    qe_engine_opts o = qe_test_opts_kv(RE_CTX, RE_SEQ, RE_K, kk, kv);
    o.gemm = QE_GEMM_MMA;
    qe_engine *e = qe_test_engine_on(cl, m, &o);
    int32_t tgt[RE_ROWS], t[RE_ROWS];
    for (int r = 0; r < RE_ROWS; r++) {
        t[r] = tok[r];
        tgt[r] = r % RE_TOK + 1 < RE_TOK ? tok[r + 1] : -1;
    }
    qe_cl_kernel_time *kt = NULL;
    size_t nk = 0;
    OK(qe_cl_profile_take(cl, &kt, &nk)); /* the open's launches */
    free(kt);
    qe_engine_out eo = {.lse = out->lse, .target_logp = out->tlp, .topk_id = out->tid,
                        .topk_logp = out->tlk};
    OK(qe_engine_prefill(e, RE_SEQ, RE_TOK, t, 0, tgt, &eo));
    OK(qe_cl_profile_take(cl, &kt, &nk));
    ropes[0] = ropes[1] = 0;
    for (size_t i = 0; i < nk; i++) {
        ropes[0] += strcmp(kt[i].name, "rope") == 0 ? kt[i].calls : 0;
        ropes[1] += strcmp(kt[i].name, "kv_store") == 0 ? kt[i].calls : 0;
    }
    free(kt);
    qe_engine_close(e);
}

/* Prefill with RoPE applied by the Q matmul and the K (or K and V) matmul
 * as they store (kernels/mma.cl MT_ROPE, engine.c rope_fuses) gives the
 * bits of rope.cl's pass over the stored rows (QEVAL_MMA_ROPE=0): every
 * lse, target log-prob and top-10 entry equal, and rope.cl never runs;
 * with f16 caches the pair writes them (MT_KV16), and with TurboQuant ones
 * encodes them (MT_KVTQ: tq4 / tq4, tq3 / tq2), and kv_store never runs
 * either.
 * Heads of 64 in the pairs layout (f16 weights, and Q8_0 through their f16
 * copies), heads of 80 (straddling the 128-output tiles) under llama3
 * frequency scaling, and TinyStories-656K
 * (Hugging Face's halves layout, heads of 16) as f16; K through the pair
 * launch (f16 caches), alone into its f32 cache, and alone into a staging
 * buffer (Q8_0 K beside an f32 V). Where the probe finds no wgmma the
 * MT_ROPE build does not exist: rope.cl runs, and the bits are compared
 * the same. */
START_TEST(test_rope_epilogue)
{
    NEED_MMA();
    char *dir = qe_test_tmpdir();
    qe_cl *cl = NULL;
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &cl));
    qe_cl_caps caps;
    OK(qe_cl_probe(cl, &caps));
    qe_synth_config c64 = {.name = "rope64", .dim = 128, .n_layers = 2, .n_heads = 2,
                           .n_kv_heads = 1, .head_dim = 64, .n_ff = 256, .n_vocab = 600,
                           .n_ctx = 256, .rope_base = 10000.0, .rms_eps = 1e-5};
    qe_synth_config c80 = c64;
    c80.name = "rope80";
    c80.dim = 160;
    c80.n_heads = 4;
    c80.n_kv_heads = 2;
    c80.head_dim = 80;
    c80.rope_base = 500000.0;
    c80.rope_factor = 32.0;
    c80.rope_low_freq = 1.0;
    c80.rope_high_freq = 4.0;
    c80.rope_orig_ctx = 64;
    qe_model *ms[4];
    ms[0] = synth_model(dir, "rope64-f16", &c64, QE_DT_F16, 5);
    ms[1] = synth_model(dir, "rope64-q8", &c64, QE_DT_Q8_0, 6);
    ms[2] = synth_model(dir, "rope80-f16", &c80, QE_DT_F16, 7);
    qe_model *st = open_model("models/TinyStories-656K");
    qe_quant_model *st16 = NULL;
    OK(qe_quant_model_new(st, QE_DT_F16, &st16));
    ms[3] = (qe_model *)qe_quant_model_get(st16);
    const char *const names[] = {"heads of 64, f16", "heads of 64, q8_0",
                                 "heads of 80 (straddling tiles), f16", "TinyStories-656K (halves), f16"};
    ck_assert_int_eq(qe_model_hparams(ms[2])->n_rot, 80); /* the synth rotates whole heads */
    const qe_kv_format kvs[][2] = {{QE_KV_F16, QE_KV_F16}, {QE_KV_F32, QE_KV_F32},
                                   {QE_KV_Q8_0, QE_KV_F32}, {QE_KV_TQ4, QE_KV_TQ4},
                                   {QE_KV_TQ3, QE_KV_TQ2}};
    static rope_out a, b;
    static int32_t tok[RE_ROWS];
    for (int i = 0; i < 4; i++) {
        const qe_hparams *hp = qe_model_hparams(ms[i]);
        tokens(tok, RE_ROWS, hp->n_vocab, 17 + (uint64_t)i);
        for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
            /* both caches f16 (MT_KV16) or both TurboQuant (MT_KVTQ, which
               needs power-of-two heads): the pair writes them */
            const int tq = qe_kv_format_per_head(kvs[k][0]) && qe_kv_format_per_head(kvs[k][1]);
            if (tq && (hp->head_dim & (hp->head_dim - 1)))
                continue;
            uint64_t fused[2], apart[2];
            rope_run(fused, cl, ms[i], kvs[k][0], kvs[k][1], tok, &a);
            setenv("QEVAL_MMA_ROPE", "0", 1);
            rope_run(apart, cl, ms[i], kvs[k][0], kvs[k][1], tok, &b);
            unsetenv("QEVAL_MMA_ROPE");
            const char *kn = qe_kv_format_name(kvs[k][0]), *vn = qe_kv_format_name(kvs[k][1]);
            printf("# mma: RoPE in the epilogue, %s, K %s V %s: rope / kv_store launches %llu / "
                   "%llu, %llu / %llu apart\n",
                   names[i], kn, vn, (unsigned long long)fused[0], (unsigned long long)fused[1],
                   (unsigned long long)apart[0], (unsigned long long)apart[1]);
            const uint64_t nl = (uint64_t)hp->n_layers;
            const int direct = kvs[k][0] == QE_KV_F16 || tq;
            /* apart: one kv_store a layer for K, V beside it in one format */
            const uint64_t stores = kvs[k][0] == QE_KV_F32                           ? 0
                                    : kvs[k][1] != QE_KV_F32 && kvs[k][1] != kvs[k][0] ? 2 * nl
                                                                                     : nl;
            ck_assert_msg(apart[0] == 2 * nl && apart[1] == stores,
                          "%s: rope ran %llu times apart, kv_store %llu", names[i],
                          (unsigned long long)apart[0], (unsigned long long)apart[1]);
            ck_assert_msg(fused[0] == (caps.wgmma ? 0 : apart[0]) &&
                              fused[1] == (caps.wgmma && direct ? 0 : apart[1]),
                          "%s K %s V %s: rope ran %llu times, kv_store %llu", names[i], kn, vn,
                          (unsigned long long)fused[0], (unsigned long long)fused[1]);
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0,
                          "%s K %s V %s: RoPE in the epilogue changed the results", names[i], kn,
                          vn);
        }
    }
    for (int i = 0; i < 3; i++)
        qe_model_close(ms[i]);
    qe_quant_model_free(st16);
    qe_model_close(st);
    qe_cl_close(cl);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- prefill attention against a double-precision softmax ---- */

#define AT_CTX 150 /* 3 key tiles of attn_mma (the last partial), 3 of its query blocks */
#define AT_SEQ 2
#define AT_PREFIX 100

/* A one-layer synthetic Llama with 4 query heads of hd over 2 KV heads. */
static qe_model *attn_model(const char *dir, int hd)
{
    qe_synth_config c = {.name = "attn-test", .dim = 4 * hd, .n_layers = 1, .n_heads = 4,
                         .n_kv_heads = 2, .head_dim = hd, .n_ff = 32, .n_vocab = QE_SYNTH_MIN_VOCAB,
                         .n_ctx = 256, .rope_base = 10000.0, .rms_eps = 1e-5};
    char name[32];
    snprintf(name, sizeof name, "attn%d", hd);
    return synth_model(dir, name, &c, QE_DT_F16, 3);
}

/* out[s][p][h*hd + d] in double: causal (and windowed) softmax attention of
 * q against the decoded caches kd / vd ([AT_SEQ*AT_CTX][n_kv*hd]). */
static void attn_ref(const float *q, const float *kd, const float *vd, int n_tok, int hd,
                     double scale, int window, double *out)
{
    const int nh = 4, nkv = 2, qd = nh * hd, kvd = nkv * hd;
    double w[AT_CTX];
    for (int s = 0; s < AT_SEQ; s++)
        for (int p = 0; p < n_tok; p++)
            for (int h = 0; h < nh; h++) {
                const float *qr = q + ((size_t)s * n_tok + p) * qd + h * hd;
                const int g = h / (nh / nkv), j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
                double mx = -INFINITY, sum = 0;
                for (int j = j0; j <= p; j++) {
                    const float *kr = kd + ((size_t)s * AT_CTX + j) * kvd + g * hd;
                    double dot = 0;
                    for (int d = 0; d < hd; d++)
                        dot += (double)qr[d] * kr[d];
                    w[j] = dot * scale;
                    mx = w[j] > mx ? w[j] : mx;
                }
                for (int j = j0; j <= p; j++)
                    sum += (w[j] = exp(w[j] - mx));
                double *o = out + ((size_t)s * n_tok + p) * qd + h * hd;
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int j = j0; j <= p; j++)
                        acc += w[j] * vd[((size_t)s * AT_CTX + j) * kvd + g * hd + d];
                    o[d] = acc / sum;
                }
            }
}

/* Run layer 0's attention of e over n_tok positions of q; the output rows. */
static void attn_run(qe_engine *e, const float *q, int n_tok, float *att)
{
    const size_t n = (size_t)AT_SEQ * n_tok * e->q_dim * sizeof(float);
    OK(qe_cl_write(e->cl, e->q, 0, n, q, 1));
    OK(qe_engine_run_attention(e, &e->layers[0], AT_SEQ, n_tok));
    OK(qe_cl_read(e->cl, e->att, 0, n, att));
}

/* An engine of AT_SEQ x AT_CTX positions with this gemm and these caches. */
static qe_engine *attn_engine(const qe_model *m, qe_gemm gemm, qe_kv_format kf, qe_kv_format vf)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = AT_CTX;
    o.n_seq = AT_SEQ;
    o.gemm = gemm;
    o.kv_k = kf;
    o.kv_v = vf;
    return qe_test_engine(m, &o);
}

static void attn_case(const qe_model *m, qe_gemm gemm, qe_kv_format kf, qe_kv_format vf)
{
    const int hd = qe_model_hparams(m)->head_dim, kvd = 2 * hd, qd = 4 * hd;
    qe_engine *e = attn_engine(m, gemm, kf, vf);
    ck_assert_msg((e->k_attn_mma != NULL) == (gemm == QE_GEMM_MMA),
                  "hd %d gemm %s: attn_mma built %d", hd, qe_gemm_name(gemm), e->k_attn_mma != NULL);
    /* under mma, caches that are not f16 are decoded once a layer for
       attn_mma's f16 build (engine.c run_kv16); e0 attends them as the
       format's own build does, tile by tile, and must give the same bits */
    const int kv16 = e->k_attn_mma && (kf != QE_KV_F16 || vf != QE_KV_F16);
    ck_assert_msg((e->k_attn16 != NULL) == kv16, "hd %d %s/%s: f16 attention built %d", hd,
                  qe_kv_format_name(kf), qe_kv_format_name(vf), e->k_attn16 != NULL);
    qe_engine *e0 = NULL;
    if (kv16) {
        setenv("QEVAL_MMA_KV16", "0", 1);
        e0 = attn_engine(m, gemm, kf, vf);
        unsetenv("QEVAL_MMA_KV16");
        ck_assert_ptr_null(e0->k_attn16);
        e0->hp.attn_scale = 4.0f / sqrtf((float)hd);
    }
    /* scores of a few units: the softmax is neither flat nor one-hot */
    e->hp.attn_scale = 4.0f / sqrtf((float)hd);
    const size_t rows = (size_t)AT_SEQ * AT_CTX;
    float *q = malloc(rows * qd * sizeof *q), *kv = malloc(rows * kvd * sizeof *kv);
    float *dec[2] = {malloc(rows * kvd * sizeof(float)), malloc(rows * kvd * sizeof(float))};
    float *att = malloc(rows * qd * sizeof *att), *att2 = malloc(rows * qd * sizeof *att2);
    double *ref = malloc(rows * qd * sizeof *ref);
    ck_assert(q && kv && dec[0] && dec[1] && att && att2 && ref);
    qe_test_rng_seed(0xA77u + (uint64_t)hd);
    for (size_t i = 0; i < rows * qd; i++)
        q[i] = (float)qe_test_rnd_unit();
    for (int c = 0; c < 2; c++) { /* K, then V: encoded on the host, decoded for the reference */
        const qe_kv_format f = c ? vf : kf;
        const size_t rb = e->kv_row_bytes[c];
        uint8_t *bytes = malloc(rows * rb);
        ck_assert_ptr_nonnull(bytes);
        for (size_t i = 0; i < rows * kvd; i++)
            kv[i] = (float)qe_test_rnd_unit();
        for (size_t r = 0; r < rows; r++) {
            qe_kv_format_quantize_row(f, kv + r * kvd, 2, hd, bytes + r * rb);
            qe_kv_format_dequantize_row(f, bytes + r * rb, 2, hd, dec[c] + r * kvd);
        }
        OK(qe_cl_write(e->cl, c ? e->layers[0].vc : e->layers[0].kc, 0, rows * rb, bytes, 1));
        if (e0)
            OK(qe_cl_write(e0->cl, c ? e0->layers[0].vc : e0->layers[0].kc, 0, rows * rb, bytes, 1));
        free(bytes);
    }
    const double tol = gemm == QE_GEMM_MMA ? 1e-2 : 1e-4;
    for (int window = 0; window <= 37; window += 37) {
        e->hp.swa_window = window; /* layer 0 is local when > 0 (swa_pattern 0: all layers) */
        e->hp.swa_pattern = 0;
        attn_run(e, q, AT_CTX, att);
        if (e0) {
            e0->hp.swa_window = window;
            e0->hp.swa_pattern = 0;
            attn_run(e0, q, AT_CTX, att2);
            ck_assert_msg(memcmp(att, att2, rows * qd * sizeof *att) == 0,
                          "hd %d %s/%s window %d: f16 keys and values give other bits", hd,
                          qe_kv_format_name(kf), qe_kv_format_name(vf), window);
        }
        attn_ref(q, dec[0], dec[1], AT_CTX, hd, e->hp.attn_scale, window, ref);
        double mx = 0;
        for (size_t i = 0; i < rows * qd; i++) {
            ck_assert_msg(isfinite(att[i]), "row %zu: %g", i / qd, (double)att[i]);
            const double d = fabs(att[i] - ref[i]);
            mx = d > mx ? d : mx;
        }
        printf("# attention: hd %d, %s, K %s V %s, window %d: max |d| %.3g vs double\n", hd,
               e->k_attn_mma ? "attn_mma" : "attention", qe_kv_format_name(kf),
               qe_kv_format_name(vf), window, mx);
        ck_assert_msg(mx < tol, "hd %d %s/%s window %d: max |d| %g", hd, qe_kv_format_name(kf),
                      qe_kv_format_name(vf), window, mx);
        /* the first AT_PREFIX positions alone (q rows re-laid out densely) */
        float *qp = malloc((size_t)AT_SEQ * AT_PREFIX * qd * sizeof *qp);
        ck_assert_ptr_nonnull(qp);
        for (int s = 0; s < AT_SEQ; s++)
            memcpy(qp + (size_t)s * AT_PREFIX * qd, q + (size_t)s * AT_CTX * qd,
                   (size_t)AT_PREFIX * qd * sizeof *qp);
        attn_run(e, qp, AT_PREFIX, att2);
        for (int s = 0; s < AT_SEQ; s++)
            ck_assert_msg(memcmp(att2 + (size_t)s * AT_PREFIX * qd, att + (size_t)s * AT_CTX * qd,
                                 (size_t)AT_PREFIX * qd * sizeof(float)) == 0,
                          "hd %d window %d: sequence %d's first %d positions differ alone", hd,
                          window, s, AT_PREFIX);
        free(qp);
    }
    free(q);
    free(kv);
    free(dec[0]);
    free(dec[1]);
    free(att);
    free(att2);
    free(ref);
    qe_engine_close(e);
    qe_engine_close(e0);
}

START_TEST(test_attention)
{
    char *dir = qe_test_tmpdir();
    const int mma = has_mma();
    static const int hds[] = {32, 64, 128};
    static const qe_kv_format fmts[][2] = {
        {QE_KV_F32, QE_KV_F32}, {QE_KV_F16, QE_KV_F16}, {QE_KV_Q8_0, QE_KV_Q4_0},
        {QE_KV_TQ4, QE_KV_TQ3}, {QE_KV_TQ2, QE_KV_F16}, {QE_KV_Q8_0, QE_KV_TQ4}};
    for (size_t i = 0; i < sizeof hds / sizeof hds[0]; i++) {
        qe_model *m = attn_model(dir, hds[i]);
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
            attn_case(m, QE_GEMM_F32, fmts[f][0], fmts[f][1]);
            if (mma)
                attn_case(m, QE_GEMM_MMA, fmts[f][0], fmts[f][1]);
        }
        qe_model_close(m);
    }
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

Suite *mma_suite(void)
{
    Suite *s = suite_create("mma");
    TCase *lim = tcase_create("limits");
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    /* on a GPU with a cold program cache, opening an MMA engine compiles
       kernels/mma.cl several times: longer than Check's default 4 s */
    tcase_set_timeout(lim, 300);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    TCase *tc = tcase_create("mma");
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_vs_f32_260k);
    tcase_add_test(tc, test_vs_f32_656k);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_tile_order);
    tcase_add_test(tc, test_wh_ring);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_head_lse);
    tcase_add_test(tc, test_rope_epilogue);
    suite_add_tcase(s, tc);
    TCase *at = tcase_create("attention");
    tcase_add_unchecked_fixture(at, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_set_timeout(at, 300);
    tcase_add_test(at, test_attention);
    suite_add_tcase(s, at);
    return s;
}
