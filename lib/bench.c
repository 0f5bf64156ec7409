/* bench.c - running llama-bench-style speed tests (see bench.h).
 *
 * Workload: per (weights, kv, b) one engine (weights uploaded once) and, for
 * tg tests, one decoder; each test is (1 + reps) repetitions of one prefill
 * call or n_gen decode calls. Timing is wall time around blocking calls.
 * Threading: the caller's thread.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "engine.h"
#include "log.h"
#include "quant.h"
#include "sample.h"

#define BENCH_MAX_TOK (1 << 20) /* engine n_ctx limit */
#define BENCH_MAX_B (1 << 16)   /* engine n_seq limit */

qe_bench_opts qe_bench_opts_default(void)
{
    qe_bench_opts o = {.reps = 5, .warmup = 1, .profile = 0, .seed = 0};
    return o;
}

void qe_bench_mean_sd(const double *x, int n, double *mean, double *sd)
{
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    const double m = n > 0 ? s / n : 0;
    for (int i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

qe_status qe_bench_parse_kv(const char *s, qe_kv_format *k, qe_kv_format *v)
{
    const char *slash = strchr(s, '/');
    char kname[32];
    if (!slash) {
        qe_status st = qe_kv_format_parse(s, k);
        *v = *k;
        return st;
    }
    if ((size_t)(slash - s) >= sizeof kname)
        return qe_fail(QE_EINVAL, "KV format '%s' is not F or K/V", s);
    memcpy(kname, s, (size_t)(slash - s));
    kname[slash - s] = '\0';
    qe_status st = qe_kv_format_parse(kname, k);
    return st ? st : qe_kv_format_parse(slash + 1, v);
}

/* The weight type a weights name asks for: *native for "file" (the weights
 * as stored; "native" is accepted too), else the requantization target. */
static qe_status weights_target(const char *name, qe_dtype *t, int *native)
{
    *native = strcmp(name, "file") == 0 || strcmp(name, "native") == 0;
    if (*native)
        return QE_OK;
    qe_status st = qe_dtype_from_name(name, t);
    if (st != QE_OK || !qe_quant_target_ok(*t))
        return qe_fail(QE_EINVAL, "weights '%s': expected file, f32, f16, q8_0 or q4_0", name);
    return QE_OK;
}

static int list_max(const int *v, int n)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

qe_status qe_bench_check(const qe_model *m, const qe_bench_opts *o)
{
    const qe_hparams *hp = qe_model_hparams(m);
    if (o->n_n_prompt < 1 || o->n_n_gen < 1 || o->n_n_batch < 1 || o->n_weights < 1 || o->n_kv < 1 ||
        o->n_n_ppl < 0 || (o->n_n_ppl > 0 && !o->n_ppl))
        return qe_fail(QE_EINVAL, "bench: every list (-p, -n, -b, --weights, --kv) needs a value");
    if (o->reps < 1 || o->reps > 100000)
        return qe_fail(QE_EINVAL, "bench: %d repetitions; 1 .. 100000 allowed", o->reps);
    int tests = 0;
    for (int i = 0; i < o->n_n_prompt; i++) {
        if (o->n_prompt[i] < 0 || o->n_prompt[i] > BENCH_MAX_TOK)
            return qe_fail(QE_EINVAL, "bench: prompt size %d is outside 0 .. %d", o->n_prompt[i],
                           BENCH_MAX_TOK);
        tests += o->n_prompt[i] > 0;
    }
    for (int i = 0; i < o->n_n_ppl; i++) {
        if (o->n_ppl[i] < 0 || o->n_ppl[i] == 1 || o->n_ppl[i] > BENCH_MAX_TOK)
            return qe_fail(QE_EINVAL, "bench: ppl size %d is outside 2 .. %d (0 = none)",
                           o->n_ppl[i], BENCH_MAX_TOK);
        tests += o->n_ppl[i] > 0;
    }
    for (int i = 0; i < o->n_n_gen; i++) {
        if (o->n_gen[i] < 0 || o->n_gen[i] > BENCH_MAX_TOK)
            return qe_fail(QE_EINVAL, "bench: generation size %d is outside 0 .. %d", o->n_gen[i],
                           BENCH_MAX_TOK);
        tests += o->n_gen[i] > 0;
    }
    if (tests == 0)
        return qe_fail(QE_EINVAL, "bench: no test (every -p, --ppl and -n size is 0)");
    for (int i = 0; i < o->n_n_batch; i++)
        if (o->n_batch[i] < 1 || o->n_batch[i] > BENCH_MAX_B)
            return qe_fail(QE_EINVAL, "bench: batch %d is outside 1 .. %d", o->n_batch[i], BENCH_MAX_B);
    for (int i = 0; i < o->n_weights; i++) {
        qe_dtype t;
        int native;
        qe_status st = weights_target(o->weights[i], &t, &native);
        if (st != QE_OK)
            return qe_fail_prefix(st, "bench");
    }
    for (int i = 0; i < o->n_kv; i++) {
        qe_kv_format k, v;
        size_t rb;
        qe_status st = qe_bench_parse_kv(o->kv[i], &k, &v);
        if (st == QE_OK)
            st = qe_kv_format_row_bytes(k, hp->n_kv_heads, hp->head_dim, &rb);
        if (st == QE_OK)
            st = qe_kv_format_row_bytes(v, hp->n_kv_heads, hp->head_dim, &rb);
        if (st != QE_OK)
            return qe_fail_prefix(st, "bench: --kv %s", o->kv[i]);
    }
    return QE_OK;
}

/* ---- one (weights, kv, b) configuration ---- */

typedef struct bench_run {
    const qe_bench_opts *o;
    qe_cl *cl;
    qe_engine *e;
    qe_decode *d;
    int b, n_ctx;
    int32_t *tokens;   /* [b * n_ctx] random ids */
    int32_t *next;     /* [b] tg feedback */
    int32_t *targets;  /* ppl: [b * rows] next tokens, -1 for each sequence's last row */
    float *logp;       /* ppl: [b * rows] the targets' log-probs */
    double nll;        /* ppl: the last repetition's mean -logp over rows with a target */
    double *seconds, *tps; /* [reps] */
    qe_sample_rng rng;
} bench_run;

static qe_status run_pp(bench_run *br, int n, double *sec)
{
    qe_engine_out out = {.argmax = br->next}; /* b results: the last position of each */
    const double t = qe_now();
    qe_status st = qe_engine_prefill(br->e, br->b, n, br->tokens, n - 1, NULL, &out);
    *sec = qe_now() - t;
    return st;
}

/* pplN: the head rows of torch_peer.py's prefill (logits_to_keep N - N/2 + 1:
 * positions N/2-1 .. N-1), the targets the next tokens (none for the last),
 * statistics read back as qeval perplexity reads them. */
static qe_status run_ppl(bench_run *br, int n, double *sec)
{
    const int first = n / 2 - 1, rows = n - first;
    for (int s = 0; s < br->b; s++)
        for (int i = 0; i < rows; i++)
            br->targets[s * rows + i] = first + i < n - 1 ? br->tokens[s * n + first + i + 1] : -1;
    qe_engine_out out = {.target_logp = br->logp};
    const double t = qe_now();
    qe_status st = qe_engine_prefill(br->e, br->b, n, br->tokens, first, br->targets, &out);
    *sec = qe_now() - t;
    double sum = 0;
    int cnt = 0;
    for (int r = 0; st == QE_OK && r < br->b * rows; r++)
        if (br->targets[r] >= 0) {
            sum -= br->logp[r];
            cnt++;
        }
    br->nll = cnt ? sum / cnt : 0;
    return st;
}

static qe_status run_tg(bench_run *br, int n, double *sec, qe_decode_seq *seqs)
{
    qe_status st = QE_OK;
    for (int s = 0; s < br->b; s++) {
        qe_decode_reset(br->d, s);
        br->next[s] = br->tokens[s];
        seqs[s] = (qe_decode_seq){.slot = s, .n_tok = 1, .tokens = &br->next[s]};
    }
    qe_decode_out out = {.argmax = br->next};
    const double t = qe_now();
    for (int i = 0; i < n && st == QE_OK; i++)
        st = qe_decode_run(br->d, br->b, seqs, &out); /* arg-maxes are the next tokens */
    *sec = qe_now() - t;
    return st;
}

/* Warm-up, then the measured repetitions of one test; fn gets the result. */
enum { T_PP, T_PPL, T_TG };

static qe_status run_one(bench_run *br, int kind, int n, double *sec, qe_decode_seq *seqs)
{
    return kind == T_PP ? run_pp(br, n, sec) : kind == T_PPL ? run_ppl(br, n, sec)
                                             : run_tg(br, n, sec, seqs);
}

static qe_status run_test(bench_run *br, const qe_model *bm, const char *weights, qe_kv_format kk,
                          qe_kv_format kv, int kind, int n, qe_bench_fn fn, void *ud)
{
    const qe_bench_opts *o = br->o;
    qe_decode_seq *seqs = NULL;
    qe_cl_kernel_time *kt = NULL;
    size_t nkt = 0;
    double dummy;
    qe_status st = QE_OK;
    const int pp = kind != T_TG;
    if (!pp && !(seqs = malloc((size_t)br->b * sizeof *seqs)))
        return qe_fail(QE_ENOMEM, "bench: out of memory");
    if (o->warmup)
        st = run_one(br, kind, n, &dummy, seqs);
    if (st == QE_OK && o->profile) { /* drop what the warm-up recorded */
        st = qe_cl_profile_take(br->cl, &kt, &nkt);
        free(kt);
        kt = NULL;
        nkt = 0;
    }
    uint64_t l0, e0, l1, e1;
    qe_cl_launch_stats(br->cl, &l0, &e0);
    const uint64_t w0 = qe_cl_wait_ns(br->cl);
    for (int r = 0; r < o->reps && st == QE_OK; r++) {
        st = run_one(br, kind, n, &br->seconds[r], seqs);
        br->tps[r] = (double)br->b * n / br->seconds[r];
    }
    qe_cl_launch_stats(br->cl, &l1, &e1);
    const uint64_t w1 = qe_cl_wait_ns(br->cl);
    if (st == QE_OK && o->profile)
        st = qe_cl_profile_take(br->cl, &kt, &nkt);
    if (st == QE_OK) {
        qe_bench_result r = {.n_prompt = pp ? n : 0, .n_gen = pp ? 0 : n, .n_batch = br->b,
                             .weights = weights, .kv_k = kk, .kv_v = kv,
                             .gemm = qe_gemm_name(qe_engine_options(br->e).gemm),
                             .n_ctx = br->n_ctx,
                             .n_params = qe_model_n_params(bm),
                             .weight_bytes = qe_model_weight_bytes(bm),
                             .n_tokens = (int64_t)br->b * n, .reps = o->reps,
                             .seconds = br->seconds, .tps = br->tps, .kernels = kt,
                             .n_kernels = nkt, .launches = l1 - l0, .enqueue_ns = e1 - e0,
                             .wait_ns = w1 - w0,
                             .scored = kind == T_PPL ? n - n / 2 : 0,
                             .nll = kind == T_PPL ? br->nll : 0};
        snprintf(r.test, sizeof r.test, "%s%d", kind == T_PP ? "pp" : kind == T_PPL ? "ppl" : "tg", n);
        qe_bench_mean_sd(br->tps, o->reps, &r.mean_tps, &r.stddev_tps);
        qe_log_debug("bench: %s b=%d %s %s/%s: %.2f +/- %.2f tokens/s", r.test, br->b, weights,
                     qe_kv_format_name(kk), qe_kv_format_name(kv), r.mean_tps, r.stddev_tps);
        st = fn ? fn(ud, &r) : QE_OK;
    }
    free(kt);
    free(seqs);
    return st;
}

static qe_status run_config(const qe_model *bm, qe_cl *cl, const qe_bench_opts *o,
                            const char *weights, qe_kv_format kk, qe_kv_format kv, int b,
                            qe_bench_fn fn, void *ud)
{
    bench_run br = {.o = o, .cl = cl, .b = b};
    const int max_p = list_max(o->n_prompt, o->n_n_prompt), max_g = list_max(o->n_gen, o->n_n_gen),
              max_l = list_max(o->n_ppl, o->n_n_ppl);
    br.n_ctx = max_p > max_g ? max_p : max_g;
    br.n_ctx = max_l > br.n_ctx ? max_l : br.n_ctx;
    const size_t nrow = (size_t)b * (size_t)(max_l - max_l / 2 + 1); /* ppl's head rows */
    qe_status st = QE_OK;
    const size_t nt = (size_t)b * (size_t)br.n_ctx;
    br.tokens = malloc(nt * sizeof *br.tokens);
    br.next = malloc((size_t)b * sizeof *br.next);
    br.seconds = malloc((size_t)o->reps * sizeof *br.seconds);
    br.tps = malloc((size_t)o->reps * sizeof *br.tps);
    br.targets = max_l ? malloc(nrow * sizeof *br.targets) : NULL;
    br.logp = max_l ? malloc(nrow * sizeof *br.logp) : NULL;
    if (!br.tokens || !br.next || !br.seconds || !br.tps || (max_l && (!br.targets || !br.logp))) {
        st = qe_fail(QE_ENOMEM, "bench: out of memory for %zu tokens", nt);
        goto done;
    }
    qe_sample_rng_init(&br.rng, qe_sample_seed(o->seed, (uint64_t)b));
    const uint32_t nv = (uint32_t)qe_model_hparams(bm)->n_vocab;
    for (size_t i = 0; i < nt; i++)
        br.tokens[i] = (int32_t)(qe_sample_next(&br.rng) % nv);
    qe_engine_opts eo = qe_engine_opts_default();
    eo.n_ctx = br.n_ctx;
    eo.n_seq = b;
    eo.top_k = 1;
    /* pp runs the head on one row per sequence; ppl on about half of them,
       in passes of as many rows as the engine's logits budget holds (as
       qeval perplexity's engine) */
    eo.head_rows = max_l ? 0 : b;
    eo.kv_k = kk;
    eo.kv_v = kv;
    eo.gemm = o->gemm;
    if ((st = qe_engine_open(cl, bm, &eo, &br.e)) != QE_OK)
        goto done;
    if (max_g > 0 && (st = qe_decode_open(br.e, NULL, &br.d)) != QE_OK)
        goto done;
    for (int i = 0; i < o->n_n_prompt && st == QE_OK; i++)
        if (o->n_prompt[i] > 0)
            st = run_test(&br, bm, weights, kk, kv, T_PP, o->n_prompt[i], fn, ud);
    for (int i = 0; i < o->n_n_ppl && st == QE_OK; i++)
        if (o->n_ppl[i] > 0)
            st = run_test(&br, bm, weights, kk, kv, T_PPL, o->n_ppl[i], fn, ud);
    /* The prefill overwrote the caches: the decoder's slots start over. */
    for (int i = 0; i < o->n_n_gen && st == QE_OK; i++)
        if (o->n_gen[i] > 0)
            st = run_test(&br, bm, weights, kk, kv, T_TG, o->n_gen[i], fn, ud);
done:
    if (st != QE_OK)
        qe_fail_prefix(st, "bench: weights %s, kv %s/%s, b %d", weights, qe_kv_format_name(kk),
                       qe_kv_format_name(kv), b);
    qe_decode_close(br.d);
    qe_engine_close(br.e);
    free(br.tokens);
    free(br.next);
    free(br.targets);
    free(br.logp);
    free(br.seconds);
    free(br.tps);
    return st;
}

qe_status qe_bench_run(const qe_model *m, qe_cl *cl, const qe_bench_opts *o, qe_bench_fn fn,
                       void *ud)
{
    qe_status st = qe_bench_check(m, o);
    if (st != QE_OK)
        return st;
    if (o->profile && !qe_cl_profiling(cl))
        return qe_fail(QE_EINVAL, "bench: profiling needs a device opened with QE_CL_PROFILE");
    for (int w = 0; w < o->n_weights && st == QE_OK; w++) {
        qe_dtype target = QE_DT_F32;
        int native = 0;
        qe_quant_model *qm = NULL;
        const qe_model *bm = m;
        if ((st = weights_target(o->weights[w], &target, &native)) != QE_OK)
            break;
        if (!native) {
            if ((st = qe_quant_model_new(m, target, &qm)) != QE_OK)
                break;
            bm = qe_quant_model_get(qm);
        }
        for (int k = 0; k < o->n_kv && st == QE_OK; k++) {
            qe_kv_format kk, kv;
            if ((st = qe_bench_parse_kv(o->kv[k], &kk, &kv)) != QE_OK)
                break;
            for (int b = 0; b < o->n_n_batch && st == QE_OK; b++)
                st = run_config(bm, cl, o, o->weights[w], kk, kv, o->n_batch[b], fn, ud);
        }
        qe_quant_model_free(qm);
    }
    return st;
}
