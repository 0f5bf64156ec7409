/* check_engine_formats.c - the engine's weight and KV-cache formats and the
 * paired (KL-divergence) evaluation, on a real device (PoCL here), against
 * the CPU codecs and the double-precision reference.
 *
 *   codec    device KV-cache encoder vs lib/kv_format.c, byte for byte, on
 *            random rows and hand-made corner cases; device decoder vs the
 *            CPU decoders
 *   weights  Q8_0 / Q4_0 matmul (requantized real models) and K-quant /
 *            Q4_1 / Q5_x uploads vs qe_ref on the same weights; wh.cl's
 *            f16 copies of Q8_0 / Q4_0 weights (what mma prefill reads)
 *            bit for bit against the host's dequantizer and f16 rounding
 *   kv       every KV format on a real model vs qe_ref_new_kv with the same
 *            formats
 *   kld      paired prefill: a variant against itself, against an
 *            independent host computation from full logits, q8_0 vs q4_0
 *   limits   error paths
 *
 * OpenCL state does not survive fork(): as in check_engine.c the unchecked
 * fixture only prepares a scratch program cache and qe_test_cl() opens the
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
#include "engine_internal.h" /* wt_f16's kernel and the device weights it reads */
#include "kv_format.h"
#include "log.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"
#include "turboquant.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())

static int has_fp64(void)
{
    return qe_cl_has_extension(qe_cl_device(qe_test_cl()), "cl_khr_fp64");
}

/* ---- random numbers ---- */

static double rnd_normal(void)
{
    double u = (qe_test_rnd_unit() + 1.0) / 2.0, v = (qe_test_rnd_unit() + 1.0) / 2.0;
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
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
        const double scale = kind == 7 ? 1e30 : kind == 8 ? 1e-40 : pow(10.0, qe_test_rnd_unit() * 3);
        for (int i = 0; i < n; i++) {
            double g = rnd_normal();
            if (qe_test_rnd_u32() % 31 == 0)
                g *= 8; /* outliers */
            v[i] = (float)(g * scale);
        }
        switch (kind) {
        case 1:
            memset(v, 0, (size_t)n * sizeof *v);
            break;
        case 2:
            v[qe_test_rnd_u32() % (uint32_t)n] = NAN;
            break;
        case 3:
            v[qe_test_rnd_u32() % (uint32_t)n] = qe_test_rnd_u32() & 1 ? INFINITY : -INFINITY;
            break;
        case 4: /* ties: +-8 in every block, the first of them decides Q4_0's sign */
            for (int b = 0; b < n / 32; b++) {
                v[32 * b + (int)(qe_test_rnd_u32() % 16)] = 8.0f;
                v[32 * b + 16 + (int)(qe_test_rnd_u32() % 16)] = -8.0f;
            }
            break;
        case 5: /* Q4_0 with max -8: d = 1, id = 1, x + 8.5 hits .5 steps; Q8_0 halves */
            for (int i = 0; i < n; i++)
                v[i] = (float)((int)(qe_test_rnd_u32() % 33) - 16) * 0.5f;
            for (int b = 0; b < n / 32; b++)
                v[32 * b] = -8.0f;
            break;
        case 6: /* small integers: many exact .5 products in Q8_0 */
            for (int i = 0; i < n; i++)
                v[i] = (float)((int)(qe_test_rnd_u32() % 255) - 127);
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
    OK(qe_engine_kv_codec(qe_test_cl(), f, n_heads, head_dim, n_rows, x, dev, y));
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
    qe_test_rng_seed(77);
    /* several head vectors a TurboQuant work-group (4 of 8 or 16, 2 of 32 or 64), one */
    const int shapes[][2] = {{4, 8}, {4, 16}, {6, 32}, {2, 64}, {1, 128}, {3, 256}};
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

/* Run the reference (ref_new_kv with kv formats when kv_codec, else the
 * double-cache reference) over every sequence and compare r's rows. Every
 * row's target is the next token (the last position: token 0). */
static qe_test_diff ref_diff(const qe_model *m, const qe_test_res *r, int n_seq, int n_tok,
                             const int32_t *tok, int kv_codec, qe_kv_format kk, qe_kv_format kvv)
{
    const int nv = qe_model_hparams(m)->n_vocab;
    double *z = malloc((size_t)nv * sizeof *z);
    ck_assert_ptr_nonnull(z);
    qe_ref *ref = NULL;
    if (kv_codec)
        OK(qe_ref_new_kv(m, n_tok, kk, kvv, &ref));
    else
        OK(qe_ref_new(m, n_tok, &ref));
    qe_test_diff d = {0};
    for (int s = 0; s < n_seq; s++) {
        qe_ref_reset(ref);
        for (int p = 0; p < n_tok; p++) {
            OK(qe_ref_step(ref, tok[(size_t)s * n_tok + p], p, z));
            const int row = s * n_tok + p;
            const int t = p + 1 < n_tok ? tok[(size_t)s * n_tok + p + 1] : 0;
            const double lse = qe_test_ref_lse(z, nv);
            qe_test_diff_add(&d, row, fabs(r->lse[row] - lse), fabs(r->tlp[row] - (z[t] - lse)));
        }
    }
    qe_ref_free(ref);
    free(z);
    return d;
}

/* Prefill n_seq random sequences of n_tok on e (targets: next token, the
 * last row token 0), poisoned first. */
static void run(qe_engine *e, qe_test_res *r, int n_seq, int n_tok, const int32_t *tok)
{
    int32_t *tgt = malloc((size_t)n_seq * n_tok * sizeof *tgt);
    ck_assert_ptr_nonnull(tgt);
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < n_tok; p++)
            tgt[s * n_tok + p] = p + 1 < n_tok ? tok[s * n_tok + p + 1] : 0;
    qe_test_res_init(r, n_seq * n_tok, qe_engine_options(e).top_k);
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
    qe_test_rng_seed(seed);
    qe_model *m = qe_test_model(rel);
    int32_t tok[NS * 128];
    ck_assert_int_le(n_tok, 128);
    qe_test_rnd_tokens(tok, (size_t)NS * n_tok, qe_model_hparams(m)->n_vocab);
    const qe_dtype types[] = {QE_DT_Q8_0, QE_DT_Q4_0};
    for (int i = 0; i < 2; i++) {
        qe_quant_model *qm = NULL;
        OK(qe_quant_model_new(m, types[i], &qm));
        const qe_model *q = qe_quant_model_get(qm);
        /* The requantized model really holds blocks (not a silent f32 copy). */
        ck_assert_int_eq(qe_model_weights(q)->layers[0].wq.type, types[i]);
        qe_engine *e = qe_test_engine_kv(q, n_tok, NS, 4, QE_KV_F32, QE_KV_F32);
        qe_test_res r;
        run(e, &r, NS, n_tok, tok);
        qe_test_diff d = ref_diff(q, &r, NS, n_tok, tok, 0, QE_KV_F32, QE_KV_F32);
        ck_assert_msg(d.max_tlp < 1e-4 && d.max_lse < 1e-4, "%s %s: max |d logp| %.3g, |d lse| %.3g",
                      rel, qe_dtype_name(types[i]), d.max_tlp, d.max_lse);
        qe_test_res_free(&r);
        qe_engine_close(e);
        qe_quant_model_free(qm);
    }
    qe_model_close(m);
}

/* (weights) wh.cl's wt_f16 on device weight w (tensor t as uploaded):
 * elements whose f16 copy differs from the host's dequantized value
 * rounded to f16. */
static size_t wt_f16_bad(qe_engine *e, const dev_weight *w, const qe_tensor *t)
{
    const size_t K = (size_t)w->ne0, N = (size_t)w->ne1;
    cl_mem out = NULL;
    OK(qe_cl_alloc(qe_test_cl(), 2 * K * N, QE_CL_RW, NULL, &out));
    ck_assert_ptr_nonnull(e->k_wt_f16[w->fmt]);
    /* as engine_wh.c launches it: on the side queue (finished with the main
       one), the whole weight or, as the LM head's copy is made, in slices of
       rows (a last short one) */
    if (N < 3) {
        OK(qe_engine_run_wt_f16(e, w, out, 0, (int)N, QE_CL_SIDE, NULL, NULL));
    } else {
        const int part = (int)N / 3 + 1;
        for (int r0 = 0; r0 < (int)N; r0 += part)
            OK(qe_engine_run_wt_f16(e, w, out, r0, r0 + part <= (int)N ? part : (int)N - r0,
                                    QE_CL_SIDE, NULL, NULL));
    }
    OK(qe_cl_finish(e->cl));
    uint16_t *dev = malloc(2 * K * N);
    float *row = malloc(K * sizeof *row);
    ck_assert(dev && row);
    OK(qe_cl_read(qe_test_cl(), out, 0, 2 * K * N, dev));
    size_t bad = 0;
    for (size_t r = 0; r < N; r++) {
        qe_tensor_row_f32(t, (int64_t)r, row);
        for (size_t i = 0; i < K; i++)
            bad += dev[r * K + i] != qe_f32_to_f16(row[i]);
    }
    free(dev);
    free(row);
    qe_cl_free(out);
    return bad;
}

/* The encoders' quotients (kvfmt.cl KV_DIV, in the programs the engine
 * builds: q8_0's plain one, and tq4's with ptx.cl on NVIDIA) are the CPU's
 * float divisions, bit for bit, on a device that can divide correctly
 * rounded: NVIDIA's OpenCL had compiled KV_DIV's double quotient to an
 * approximate float division, 1 ulp off for 38.0M of 134.2M random pairs
 * on the H100, too rare a flip for the codec rows above to show. Quotients
 * of the encoders' kinds: a block maximum over 127 or -8, 1 over the
 * scale, and rotated elements over their norm. */
#define DIV_N (1 << 18)
START_TEST(test_codec_div)
{
    qe_test_rng_seed(23);
    float *a = malloc(DIV_N * sizeof *a), *b = malloc(DIV_N * sizeof *b);
    float *y = malloc(DIV_N * sizeof *y);
    ck_assert(a && b && y);
    for (int i = 0; i < DIV_N; i++) {
        const double m = pow(2.0, 24.0 * qe_test_rnd_unit()); /* magnitudes 2^-24 .. 2^24 */
        switch (i % 4) {
        case 0: /* amax / 127 */
            a[i] = (float)(fabs(rnd_normal()) * m);
            b[i] = 127.0f;
            break;
        case 1: /* mx / -8 */
            a[i] = (float)(rnd_normal() * m);
            b[i] = -8.0f;
            break;
        case 2: /* 1 / d */
            a[i] = 1.0f;
            b[i] = (float)(fabs(rnd_normal()) * m + 1e-30);
            break;
        default: /* z = t / norm */
            a[i] = (float)(rnd_normal() * m);
            b[i] = (float)(fabs(rnd_normal()) * m * 8.0 + 1e-30);
        }
    }
    const int exact = qe_cl_device(qe_test_cl())->fp32_div_rn;
    const qe_kv_format fs[] = {QE_KV_Q8_0, QE_KV_TQ4};
    for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
        OK(qe_engine_kv_div(qe_test_cl(), fs[k], 64, DIV_N, a, b, y));
        int bad = 0;
        for (int i = 0; i < DIV_N; i++) {
            volatile float c = a[i] / b[i]; /* the CPU encoder's float division */
            bad += y[i] != c;
        }
        printf("# codec: %s encoder's quotients off the CPU's: %d of %d "
               "(the device divides correctly rounded: %s)\n",
               qe_kv_format_name(fs[k]), bad, DIV_N, exact ? "yes" : "no");
        if (exact)
            ck_assert_msg(bad == 0, "%s: %d of %d quotients differ from the CPU's",
                          qe_kv_format_name(fs[k]), bad, DIV_N);
    }
    free(a);
    free(b);
    free(y);
}
END_TEST

START_TEST(test_wt_f16)
{
    const char *const models[] = {"models/stories260K.gguf", "models/TinyStories-656K"};
    const qe_dtype types[] = {QE_DT_Q8_0, QE_DT_Q4_0};
    for (size_t mi = 0; mi < 2; mi++) {
        qe_model *m = qe_test_model(models[mi]);
        for (size_t ti = 0; ti < 2; ti++) {
            qe_quant_model *qm = NULL;
            OK(qe_quant_model_new(m, types[ti], &qm));
            const qe_model *q = qe_quant_model_get(qm);
            qe_engine *e = qe_test_engine_kv(q, 16, 1, 4, QE_KV_F32, QE_KV_F32);
            const qe_layer *src = &qe_model_weights(q)->layers[0];
            const dev_layer *d = &e->layers[0];
            const qe_tensor *ts[] = {&src->wq, &src->wk, &src->wo, &src->w_gate, &src->w_down};
            const dev_weight *ws[] = {&d->wq, &d->wk, &d->wo, &d->w_gate, &d->w_down};
            int checked = 0;
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
                if (ts[i]->type != types[ti])
                    continue; /* a width the format cannot hold stays as it was */
                size_t bad = wt_f16_bad(e, ws[i], ts[i]);
                ck_assert_msg(bad == 0, "%s %s tensor %s: %zu of %lld f16 elements differ",
                              models[mi], qe_dtype_name(types[ti]), ts[i]->name, bad,
                              (long long)ts[i]->ne[0] * ts[i]->ne[1]);
                checked++;
            }
            ck_assert_int_ge(checked, 3);
            qe_engine_close(e);
            qe_quant_model_free(qm);
        }
        qe_model_close(m);
    }
}
END_TEST

START_TEST(test_weights_260k) { check_weights("models/stories260K.gguf", 64, 5); }
END_TEST

START_TEST(test_weights_656k) { check_weights("models/TinyStories-656K", 48, 6); }
END_TEST

/* (kv) Every cache format on stories260K against qe_ref_new_kv. */
START_TEST(test_kv_formats)
{
    enum { NS = 2, NT = 64 };
    qe_test_rng_seed(9);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    int32_t tok[NS * NT];
    qe_test_rnd_tokens(tok, NS * NT, qe_model_hparams(m)->n_vocab);
    const qe_kv_format pairs[][2] = {
        {QE_KV_F32, QE_KV_F32},   {QE_KV_F16, QE_KV_F16}, {QE_KV_Q8_0, QE_KV_Q8_0},
        {QE_KV_Q4_0, QE_KV_Q4_0}, {QE_KV_TQ4, QE_KV_TQ4}, {QE_KV_TQ3, QE_KV_TQ3},
        {QE_KV_TQ2, QE_KV_TQ2},   {QE_KV_TQ4, QE_KV_Q8_0}, {QE_KV_F16, QE_KV_TQ3}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        qe_engine *e = qe_test_engine_kv(m, NT, NS, 4, pairs[i][0], pairs[i][1]);
        qe_test_res r;
        run(e, &r, NS, NT, tok);
        qe_test_diff d = ref_diff(m, &r, NS, NT, tok, 1, pairs[i][0], pairs[i][1]);
        qe_test_diff d0 = ref_diff(m, &r, NS, NT, tok, 1, QE_KV_F32, QE_KV_F32);
        const char *kk = qe_kv_format_name(pairs[i][0]), *kv = qe_kv_format_name(pairs[i][1]);
        fprintf(stderr, "# kv %s/%s: |d logp| vs the same format: mean %.3g, max %.3g; vs f32: mean %.3g\n",
                kk, kv, qe_test_diff_mean(&d), d.max_tlp, qe_test_diff_mean(&d0));
        qe_test_check_kv_diff(kk, kv, &d, i == 0 ? NULL : &d0);
        qe_test_res_free(&r);
        qe_engine_close(e);
    }
    qe_model_close(m);
}
END_TEST


/* ---- weights stored in formats the device reads as f16 ---- */

#define MAX_BUFS 32
typedef struct synth {
    void *bufs[MAX_BUFS];
    int n;
} synth;

/* A tensor of random blocks of type t (ne0 x ne1): random quants, block
 * scales set to finite values that give weights of about +-amp. */
static qe_tensor synth_blocks(synth *sy, const char *name, qe_dtype t, int ne0, int ne1, float amp)
{
    uint64_t rb = 0;
    OK(qe_dtype_row_bytes(t, ne0, &rb));
    const size_t bb = qe_dtype_block_bytes(t), nb = (size_t)rb * ne1 / bb;
    unsigned char *d = malloc((size_t)rb * ne1);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_lt(sy->n, MAX_BUFS);
    sy->bufs[sy->n++] = d;
    for (size_t i = 0; i < (size_t)rb * ne1; i++)
        d[i] = (unsigned char)qe_test_rnd_u32();
    for (size_t b = 0; b < nb; b++) {
        unsigned char *blk = d + b * bb;
        const float r = (float)(0.5 + 0.5 * (qe_test_rnd_unit() + 1.0) / 2.0); /* 0.5 .. 1 */
        uint16_t h0, h1;
        switch (t) {
        case QE_DT_Q4_1: case QE_DT_Q5_1: /* x = q d + m */
            h0 = qe_f32_to_f16(amp * r / (t == QE_DT_Q4_1 ? 8.0f : 16.0f));
            h1 = qe_f32_to_f16(-amp * r);
            memcpy(blk, &h0, 2);
            memcpy(blk + 2, &h1, 2);
            break;
        case QE_DT_Q5_0: /* x = (q - 16) d */
            h0 = qe_f32_to_f16(amp * r / 16.0f);
            memcpy(blk, &h0, 2);
            break;
        case QE_DT_Q4_K: case QE_DT_Q5_K: /* x = d sc q - dmin m, sc, m < 64 */
            h0 = qe_f32_to_f16(amp * r / (63.0f * (t == QE_DT_Q4_K ? 8.0f : 16.0f)));
            h1 = qe_f32_to_f16(amp * r / 63.0f);
            memcpy(blk, &h0, 2);
            memcpy(blk + 2, &h1, 2);
            break;
        case QE_DT_Q6_K: /* x = d scale (q - 32), |scale| < 128 */
            h0 = qe_f32_to_f16(amp * r / (127.0f * 32.0f));
            memcpy(blk + 208, &h0, 2);
            break;
        default:
            ck_abort_msg("synth_blocks: type %s", qe_dtype_name(t));
        }
    }
    qe_tensor out;
    OK(qe_tensor_view(&out, name, t, ne0, ne1, d, rb * (uint64_t)ne1, 1));
    return out;
}

static qe_tensor synth_mat(synth *sy, const char *name, int ne0, int ne1, float off, float amp)
{
    const size_t n = (size_t)ne0 * ne1;
    float *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_lt(sy->n, MAX_BUFS);
    sy->bufs[sy->n++] = v;
    for (size_t i = 0; i < n; i++)
        v[i] = off + amp * (float)qe_test_rnd_unit();
    qe_tensor out;
    OK(qe_tensor_view(&out, name, QE_DT_F32, ne0, ne1, v, (uint64_t)n * 4, 1));
    return out;
}

static qe_tensor synth_f32(synth *sy, const char *name, int ne0, float off, float amp)
{
    return synth_mat(sy, name, ne0, 1, off, amp);
}

/* A random F32 model of shape hp (one layer used per hp.n_layers <= 1). */
static qe_model *synth_model(synth *sy, qe_layer *L, const qe_hparams *hp)
{
    qe_weights w;
    memset(&w, 0, sizeof w);
    memset(L, 0, sizeof *L);
    const int d = hp->dim, q = hp->n_heads * hp->head_dim, kv = hp->n_kv_heads * hp->head_dim;
    w.token_embd = synth_mat(sy, "token_embd", d, hp->n_vocab, 0, 1);
    w.output = synth_mat(sy, "output", d, hp->n_vocab, 0, 0.3f);
    w.output_norm = synth_f32(sy, "output_norm", d, 1, 0.2f);
    L->attn_norm = synth_f32(sy, "attn_norm", d, 1, 0.2f);
    L->ffn_norm = synth_f32(sy, "ffn_norm", d, 1, 0.2f);
    L->wq = synth_mat(sy, "wq", d, q, 0, 0.3f);
    L->wk = synth_mat(sy, "wk", d, kv, 0, 0.3f);
    L->wv = synth_mat(sy, "wv", d, kv, 0, 0.3f);
    L->wo = synth_mat(sy, "wo", q, d, 0, 0.3f);
    L->w_gate = synth_mat(sy, "w_gate", d, hp->n_ff, 0, 0.3f);
    L->w_up = synth_mat(sy, "w_up", d, hp->n_ff, 0, 0.3f);
    L->w_down = synth_mat(sy, "w_down", hp->n_ff, d, 0, 0.3f);
    w.layers = L;
    qe_model *m = NULL;
    OK(qe_model_build(hp, &w, "synth", &m));
    return m;
}

static void synth_free(synth *sy)
{
    for (int i = 0; i < sy->n; i++)
        free(sy->bufs[i]);
    sy->n = 0;
}

/* A model whose matrices are Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K: on the
 * device these are decoded on the host and rounded once to F16, so the
 * result must equal, bit for bit, the same model converted to F16 on the
 * host first (qe_quant_model_new), and match the reference on that F16
 * model; against the reference on the original blocks it differs only by
 * that rounding. */
START_TEST(test_weights_kquants)
{
    enum { NT = 24 };
    qe_test_rng_seed(61);
    qe_hparams hp = {.n_vocab = 96, .dim = 256, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2,
                     .head_dim = 64, .n_rot = 64, .n_ff = 256, .n_ctx_train = 64, .rms_eps = 1e-5f,
                     .rope_base = 10000.0f, .rope_layout = QE_ROPE_PAIRS,
                     .rope_scaling = QE_ROPE_SCALING_NONE, .rope_factor = 1.0f,
                     .rope_freq_scale = 1.0f, .bos_id = -1, .eos_id = -1, .tied = 0};
    synth sy = {0};
    qe_layer L;
    memset(&L, 0, sizeof L);
    qe_weights w;
    memset(&w, 0, sizeof w);
    w.token_embd = synth_blocks(&sy, "token_embd", QE_DT_Q4_1, 256, hp.n_vocab, 1.0f);
    w.output = synth_blocks(&sy, "output", QE_DT_Q6_K, 256, hp.n_vocab, 0.2f);
    w.output_norm = synth_f32(&sy, "output_norm", 256, 1.0f, 0.2f);
    L.attn_norm = synth_f32(&sy, "attn_norm", 256, 1.0f, 0.2f);
    L.ffn_norm = synth_f32(&sy, "ffn_norm", 256, 1.0f, 0.2f);
    L.wq = synth_blocks(&sy, "wq", QE_DT_Q4_K, 256, 256, 0.12f);
    L.wk = synth_blocks(&sy, "wk", QE_DT_Q5_K, 256, 128, 0.12f);
    L.wv = synth_blocks(&sy, "wv", QE_DT_Q5_0, 256, 128, 0.06f);
    L.wo = synth_blocks(&sy, "wo", QE_DT_Q5_1, 256, 256, 0.06f);
    L.w_gate = synth_blocks(&sy, "w_gate", QE_DT_Q6_K, 256, 256, 0.06f);
    L.w_up = synth_blocks(&sy, "w_up", QE_DT_Q4_1, 256, 256, 0.06f);
    L.w_down = synth_blocks(&sy, "w_down", QE_DT_Q4_K, 256, 256, 0.06f);
    w.layers = &L;
    qe_model *m = NULL;
    OK(qe_model_build(&hp, &w, "kquants", &m));
    qe_quant_model *f16 = NULL;
    OK(qe_quant_model_new(m, QE_DT_F16, &f16));
    ck_assert_int_eq(qe_model_weights(qe_quant_model_get(f16))->layers[0].wq.type, QE_DT_F16);

    int32_t tok[NT];
    qe_test_rnd_tokens(tok, NT, hp.n_vocab);
    qe_engine *e = qe_test_engine_kv(m, NT, 1, 4, QE_KV_F32, QE_KV_F32);
    qe_engine *e16 = qe_test_engine_kv(qe_quant_model_get(f16), NT, 1, 4, QE_KV_F32, QE_KV_F32);
    qe_test_res r, r16;
    run(e, &r, 1, NT, tok);
    run(e16, &r16, 1, NT, tok);
    qe_test_res_same(&r, &r16, "K-quant model vs its F16 conversion");
    qe_test_diff d = ref_diff(qe_quant_model_get(f16), &r, 1, NT, tok, 0, QE_KV_F32, QE_KV_F32);
    ck_assert_msg(d.max_tlp < 1e-4 && d.max_lse < 1e-4, "vs the reference on F16: max |d logp| %.3g",
                  d.max_tlp);
    qe_test_diff d0 = ref_diff(m, &r, 1, NT, tok, 0, QE_KV_F32, QE_KV_F32);
    fprintf(stderr, "# K-quants on the device vs the reference on the blocks: max |d logp| %.3g\n",
            d0.max_tlp);
    ck_assert_msg(d0.max_tlp < 1e-2, "vs the reference on the blocks: max |d logp| %.3g", d0.max_tlp);
    qe_test_res_free(&r);
    qe_test_res_free(&r16);
    qe_engine_close(e);
    qe_engine_close(e16);
    qe_quant_model_free(f16);
    qe_model_close(m);
    synth_free(&sy);
}
END_TEST

/* ---- paired prefill ---- */

/* Results of one paired prefill: base and variants' rows, comparison rows. */
typedef struct paired {
    int rows, n_var;
    qe_test_res base, var[4];
    float *kld[4], *dp[4];
    uint8_t *same[4];
} paired;

static void paired_run(paired *pr, qe_engine *base, qe_engine **var, int n_var, int n_seq,
                       int n_tok, const int32_t *tok, int out_first, const int32_t *tgt,
                       double *seconds)
{
    const int rows = n_seq * (n_tok - out_first), k = qe_engine_options(base).top_k;
    ck_assert_int_le(n_var, 4);
    pr->rows = rows;
    pr->n_var = n_var;
    qe_test_res_init(&pr->base, rows, k);
    OK(qe_engine_poison(base));
    qe_engine_out vo[4];
    qe_engine_kld_out ko[4];
    for (int i = 0; i < n_var; i++) {
        qe_test_res_init(&pr->var[i], rows, k);
        vo[i] = pr->var[i].out;
        pr->kld[i] = malloc((size_t)rows * sizeof(float));
        pr->dp[i] = malloc((size_t)rows * sizeof(float));
        pr->same[i] = malloc((size_t)rows);
        ck_assert(pr->kld[i] && pr->dp[i] && pr->same[i]);
        for (int r = 0; r < rows; r++) {
            pr->kld[i][r] = pr->dp[i][r] = NAN;
            pr->same[i][r] = 7;
        }
        ko[i] = (qe_engine_kld_out){pr->kld[i], pr->dp[i], pr->same[i]};
        OK(qe_engine_poison(var[i]));
    }
    OK(qe_engine_prefill_paired(base, var, n_var, n_seq, n_tok, tok, out_first, tgt, &pr->base.out,
                                vo, ko, seconds));
}

static void paired_free(paired *pr)
{
    qe_test_res_free(&pr->base);
    for (int i = 0; i < pr->n_var; i++) {
        qe_test_res_free(&pr->var[i]);
        free(pr->kld[i]);
        free(pr->dp[i]);
        free(pr->same[i]);
    }
}

static int32_t *next_targets(int n_seq, int n_tok, const int32_t *tok, int out_first)
{
    const int n_out = n_tok - out_first;
    int32_t *t = malloc((size_t)n_seq * n_out * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int s = 0; s < n_seq; s++)
        for (int j = 0; j < n_out; j++) {
            const int p = out_first + j;
            t[s * n_out + j] = j % 5 == 2 ? -1 : p + 1 < n_tok ? tok[s * n_tok + p + 1] : 1;
        }
    return t;
}

/* A variant identical to the base (another engine over the same weights and
 * formats) has KLD exactly 0, dp exactly 0 and the same arg-max on every
 * row; and each engine's rows are bit-identical to its own prefill. */
START_TEST(test_kld_self)
{
    enum { NS = 2, NT = 48, OF = 20 };
    qe_test_rng_seed(31);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    qe_quant_model *qm = NULL;
    OK(qe_quant_model_new(m, QE_DT_Q4_0, &qm));
    const qe_model *q = qe_quant_model_get(qm);
    int32_t tok[NS * NT];
    qe_test_rnd_tokens(tok, NS * NT, qe_model_hparams(m)->n_vocab);
    int32_t *tgt = next_targets(NS, NT, tok, OF);
    qe_engine *base = qe_test_engine_kv(q, NT, NS, 5, QE_KV_TQ3, QE_KV_Q8_0);
    qe_engine *v[2] = {qe_test_engine_kv(q, NT, NS, 5, QE_KV_TQ3, QE_KV_Q8_0),
                       qe_test_engine_kv(m, NT, NS, 5, QE_KV_F32, QE_KV_F32)};
    paired pr;
    double sec[3] = {-1, -1, -1};
    paired_run(&pr, base, v, 2, NS, NT, tok, OF, tgt, sec);
    for (int i = 0; i < 3; i++)
        ck_assert(sec[i] > 0);
    qe_test_res_same(&pr.base, &pr.var[0], "identical variant");
    int differs = 0;
    for (int r = 0; r < pr.rows; r++) {
        ck_assert_msg(pr.kld[0][r] == 0.0f, "row %d: KLD %g against itself", r, (double)pr.kld[0][r]);
        ck_assert_int_eq(pr.same[0][r], 1);
        if (tgt[r] >= 0)
            ck_assert_msg(pr.dp[0][r] == 0.0f, "row %d: dp %g against itself", r, (double)pr.dp[0][r]);
        else
            ck_assert(isnan(pr.dp[0][r]));
        /* the other variant (f32 weights and cache) really differs */
        ck_assert_msg(pr.kld[1][r] > 0.0f, "row %d: KLD %g of f32 vs q4_0", r, (double)pr.kld[1][r]);
        ck_assert(pr.same[1][r] <= 1);
        differs += pr.same[1][r] == 0;
    }
    ck_assert_int_gt(differs, 0);
    /* Paired rows are the engines' own prefill rows, bit for bit. */
    qe_test_res own;
    qe_test_res_init(&own, pr.rows, 5);
    OK(qe_engine_poison(v[1]));
    OK(qe_engine_prefill(v[1], NS, NT, tok, OF, tgt, &own.out));
    qe_test_res_same(&own, &pr.var[1], "variant 1 alone vs paired");
    qe_test_res_free(&own);
    paired_free(&pr);
    free(tgt);
    qe_engine_close(base);
    qe_engine_close(v[0]);
    qe_engine_close(v[1]);
    qe_quant_model_free(qm);
    qe_model_close(m);
}
END_TEST

/* Device KLD, dp and same-top against a host computation in double from the
 * full logits of both engines (qe_engine_logits), on TinyStories-656K
 * (2048-token vocabulary) with head passes of 7 rows for the variant (the
 * pair uses the smaller). */
START_TEST(test_kld_host)
{
    enum { NS = 2, NT = 40, OF = 25 };
    qe_test_rng_seed(41);
    qe_model *m = qe_test_model("models/TinyStories-656K");
    qe_quant_model *qm = NULL;
    OK(qe_quant_model_new(m, QE_DT_Q4_0, &qm));
    const int nv = qe_model_hparams(m)->n_vocab, n_out = NT - OF;
    int32_t tok[NS * NT];
    qe_test_rnd_tokens(tok, NS * NT, nv);
    int32_t *tgt = next_targets(NS, NT, tok, OF);
    qe_engine *base = qe_test_engine_kv(m, NT, NS, 3, QE_KV_F32, QE_KV_F32);
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = NT;
    o.n_seq = NS;
    o.top_k = 3;
    o.head_rows = 7;
    o.kv_k = QE_KV_TQ4;
    o.kv_v = QE_KV_Q4_0;
    qe_engine *v = NULL;
    OK(qe_engine_open(qe_test_cl(), qe_quant_model_get(qm), &o, &v));
    paired pr;
    paired_run(&pr, base, &v, 1, NS, NT, tok, OF, tgt, NULL);
    float *zp = malloc((size_t)nv * sizeof *zp), *zq = malloc((size_t)nv * sizeof *zq);
    ck_assert(zp && zq);
    double max_rel = 0;
    for (int s = 0; s < NS; s++)
        for (int p = OF; p < NT; p += 3) {
            const int r = s * n_out + p - OF;
            OK(qe_engine_logits(base, s, p, zp));
            OK(qe_engine_logits(v, s, p, zq));
            double mp = zp[0], mq = zq[0];
            int ap = 0, aq = 0;
            for (int i = 1; i < nv; i++) {
                if (zp[i] > mp) {
                    mp = zp[i];
                    ap = i;
                }
                if (zq[i] > mq) {
                    mq = zq[i];
                    aq = i;
                }
            }
            double sp = 0, sq = 0;
            for (int i = 0; i < nv; i++) {
                sp += exp(zp[i] - mp);
                sq += exp(zq[i] - mq);
            }
            const double lp = mp + log(sp), lq = mq + log(sq);
            double kld = 0;
            for (int i = 0; i < nv; i++)
                kld += exp(zp[i] - lp) * ((zp[i] - lp) - (zq[i] - lq));
            const double rel = fabs(pr.kld[0][r] - kld) / (kld + 1e-9);
            max_rel = rel > max_rel ? rel : max_rel;
            ck_assert_msg(fabs(pr.kld[0][r] - kld) <= 1e-7 + 1e-4 * kld,
                          "seq %d pos %d: device KLD %.9g, host %.9g", s, p, (double)pr.kld[0][r], kld);
            ck_assert_int_eq(pr.same[0][r], ap == aq);
            const int t = tgt[r];
            if (t < 0) {
                ck_assert(isnan(pr.dp[0][r]));
                continue;
            }
            const double dp = exp(zq[t] - lq) - exp(zp[t] - lp);
            ck_assert_msg(fabs(pr.dp[0][r] - dp) <= 1e-6, "seq %d pos %d: device dp %.9g, host %.9g",
                          s, p, (double)pr.dp[0][r], dp);
        }
    fprintf(stderr, "# kld vs host: max relative difference %.3g\n", max_rel);
    free(zp);
    free(zq);
    paired_free(&pr);
    free(tgt);
    qe_engine_close(base);
    qe_engine_close(v);
    qe_quant_model_free(qm);
    qe_model_close(m);
}
END_TEST

/* On stories260K, Q8_0 weights stay much closer to F32 than Q4_0 do. */
START_TEST(test_kld_order)
{
    enum { NS = 4, NT = 64, OF = 32 };
    qe_test_rng_seed(51);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    qe_quant_model *q8 = NULL, *q4 = NULL;
    OK(qe_quant_model_new(m, QE_DT_Q8_0, &q8));
    OK(qe_quant_model_new(m, QE_DT_Q4_0, &q4));
    int32_t tok[NS * NT];
    qe_test_rnd_tokens(tok, NS * NT, qe_model_hparams(m)->n_vocab);
    int32_t *tgt = next_targets(NS, NT, tok, OF);
    qe_engine *base = qe_test_engine_kv(m, NT, NS, 1, QE_KV_F32, QE_KV_F32);
    qe_engine *v[2] = {qe_test_engine_kv(qe_quant_model_get(q8), NT, NS, 1, QE_KV_F32, QE_KV_F32),
                       qe_test_engine_kv(qe_quant_model_get(q4), NT, NS, 1, QE_KV_F32, QE_KV_F32)};
    paired pr;
    paired_run(&pr, base, v, 2, NS, NT, tok, OF, tgt, NULL);
    double mean[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        for (int r = 0; r < pr.rows; r++) {
            ck_assert(isfinite(pr.kld[i][r]) && pr.kld[i][r] > -1e-6f);
            mean[i] += pr.kld[i][r] / pr.rows;
        }
    }
    fprintf(stderr, "# stories260K mean KLD vs f32: q8_0 %.3g, q4_0 %.3g\n", mean[0], mean[1]);
    ck_assert_msg(mean[0] > 0 && mean[0] * 10 < mean[1], "mean KLD q8_0 %.3g, q4_0 %.3g", mean[0],
                  mean[1]);
    paired_free(&pr);
    free(tgt);
    qe_engine_close(base);
    qe_engine_close(v[0]);
    qe_engine_close(v[1]);
    qe_quant_model_free(q8);
    qe_quant_model_free(q4);
    qe_model_close(m);
}
END_TEST

/* ---- limits ---- */

static qe_status try_open(const qe_model *m, qe_kv_format kk, qe_kv_format kvv, int top_k,
                          qe_engine **e)
{
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = 16;
    o.n_seq = 2;
    o.top_k = top_k;
    o.kv_k = kk;
    o.kv_v = kvv;
    *e = NULL;
    return qe_engine_open(qe_test_cl(), m, &o, e);
}

START_TEST(test_limits)
{
    qe_test_rng_seed(99);
    qe_engine *e = NULL;
    /* head_dim 12 (not a power of two), n_kv * head_dim = 12 (not a multiple of 32) */
    qe_hparams hp = {.n_vocab = 40, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                     .head_dim = 12, .n_rot = 12, .n_ff = 32, .n_ctx_train = 64, .rms_eps = 1e-5f,
                     .rope_base = 10000.0f, .rope_layout = QE_ROPE_PAIRS,
                     .rope_scaling = QE_ROPE_SCALING_NONE, .rope_factor = 1.0f,
                     .rope_freq_scale = 1.0f, .bos_id = -1, .eos_id = -1, .tied = 0};
    synth sy = {0};
    qe_layer L;
    qe_model *m = synth_model(&sy, &L, &hp);
    ck_assert_int_eq(try_open(m, QE_KV_TQ4, QE_KV_F32, 2, &e), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "tq4"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "K cache"));
    ck_assert_ptr_null(e);
    ck_assert_int_eq(try_open(m, QE_KV_F16, QE_KV_Q8_0, 2, &e), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "V cache"));
    ck_assert_int_eq(try_open(m, (qe_kv_format)99, QE_KV_F32, 2, &e), QE_EINVAL);
    ck_assert_int_eq(try_open(m, QE_KV_F32, (qe_kv_format)-1, 2, &e), QE_EINVAL);
    /* f16 fits any shape */
    OK(try_open(m, QE_KV_F16, QE_KV_F16, 2, &e));

    /* paired prefill: mismatched variants */
    qe_model *m260 = qe_test_model("models/stories260K.gguf");
    qe_engine *b = NULL, *v = NULL, *v3 = NULL;
    OK(try_open(m260, QE_KV_F32, QE_KV_F32, 2, &b));
    OK(try_open(m260, QE_KV_Q8_0, QE_KV_F32, 2, &v));
    OK(try_open(m260, QE_KV_F32, QE_KV_F32, 3, &v3));
    int32_t tok[2 * 16], tgt[2 * 8];
    qe_test_rnd_tokens(tok, 32, 40);
    for (int i = 0; i < 16; i++)
        tgt[i] = -1;
    float kl[16];
    qe_engine_kld_out ko = {.kld = kl};
    ck_assert_int_eq(qe_engine_prefill_paired(b, &e, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL); /* vocabulary 40 vs 512 */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "vocabulary"));
    ck_assert_int_eq(qe_engine_prefill_paired(b, &v3, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "top_k"));
    ck_assert_int_eq(qe_engine_prefill_paired(NULL, &v, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL);
    ck_assert_int_eq(qe_engine_prefill_paired(b, NULL, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL);
    ck_assert_int_eq(qe_engine_prefill_paired(b, &v, 1, 3, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL); /* n_seq above the engines' */
    ck_assert_int_eq(qe_engine_prefill_paired(b, &v, 1, 2, 17, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL); /* n_tok above n_ctx */
    tgt[3] = 512;
    ck_assert_int_eq(qe_engine_prefill_paired(b, &v, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "target 512"));
    tgt[3] = -1;
    /* another context on the same device is not "shared" */
    qe_cl *cl2 = NULL;
    OK(qe_cl_open(NULL, 0, &cl2));
    qe_engine_opts o = qe_engine_opts_default();
    o.n_ctx = 16;
    o.n_seq = 2;
    o.top_k = 2;
    qe_engine *other = NULL;
    OK(qe_engine_open(cl2, m260, &o, &other));
    ck_assert_int_eq(qe_engine_prefill_paired(b, &other, 1, 2, 16, tok, 8, tgt, NULL, NULL, &ko, NULL),
                     QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "context"));
    /* no variants at all is a plain prefill of the base */
    OK(qe_engine_prefill_paired(b, NULL, 0, 2, 16, tok, 8, tgt, NULL, NULL, NULL, NULL));

    /* the device codec's own checks */
    float x[64] = {0};
    unsigned char enc[64];
    ck_assert_int_eq(qe_engine_kv_codec(qe_test_cl(), QE_KV_Q4_0, 1, 16, 1, x, enc, NULL),
                     QE_EUNSUPPORTED);
    ck_assert_int_eq(qe_engine_kv_codec(qe_test_cl(), QE_KV_TQ3, 1, 12, 1, x, enc, NULL),
                     QE_EUNSUPPORTED);
    ck_assert_int_eq(qe_engine_kv_codec(qe_test_cl(), QE_KV_F16, 1, 16, 0, x, enc, NULL), QE_EINVAL);
    /* and its quotients': no pairs, heads it does not build for */
    float q[64];
    const float one[64] = {1.0f};
    ck_assert_int_eq(qe_engine_kv_div(qe_test_cl(), QE_KV_Q8_0, 64, 0, one, one, q), QE_EINVAL);
    ck_assert_int_eq(qe_engine_kv_div(qe_test_cl(), QE_KV_Q8_0, 0, 1, one, one, q), QE_EINVAL);
    ck_assert_int_eq(qe_engine_kv_div(qe_test_cl(), QE_KV_TQ4, 512, 1, one, one, q), QE_EINVAL);
    /* one pair: 1 / 1 */
    OK(qe_engine_kv_div(qe_test_cl(), QE_KV_TQ4, 16, 1, one, one, q));
    ck_assert(q[0] == 1.0f);

    qe_engine_close(other);
    qe_cl_close(cl2);
    qe_engine_close(b);
    qe_engine_close(v);
    qe_engine_close(v3);
    qe_engine_close(e);
    qe_model_close(m260);
    qe_model_close(m);
    synth_free(&sy);
}
END_TEST

Suite *engine_formats_suite(void)
{
    Suite *s = suite_create("engine_formats");
    TCase *tc = tcase_create("formats");
    tcase_set_timeout(tc, 240);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(tc, test_codec);
    tcase_add_test(tc, test_codec_div);
    tcase_add_test(tc, test_weights_260k);
    tcase_add_test(tc, test_weights_656k);
    tcase_add_test(tc, test_weights_kquants);
    tcase_add_test(tc, test_wt_f16);
    tcase_add_test(tc, test_kv_formats);
    suite_add_tcase(s, tc);
    TCase *kl = tcase_create("kld");
    tcase_set_timeout(kl, 120);
    tcase_add_unchecked_fixture(kl, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(kl, test_kld_self);
    tcase_add_test(kl, test_kld_host);
    tcase_add_test(kl, test_kld_order);
    suite_add_tcase(s, kl);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 120);
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
