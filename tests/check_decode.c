/* check_decode.c - the ragged-batch decoder (lib/decode.h) on a real device
 * (PoCL here): greedy continuations and statistics against the
 * double-precision reference (lib/ref.c), bit-identical results alone vs in
 * a continuously refilled batch of 16 slots with chunked prompts, the same
 * bits from both attn_rows builds (one row per call vs calls of 20 rows)
 * in every cache format, and the call contract's error paths.
 *
 * Reference statistics (log-sum-exp, arg-max, top-k) are computed in double
 * from qe_ref_step's logits, independently of the kernels (testutil.h). Caches
 * are poisoned with NaN (qe_engine_poison) before decoding, so a stale or
 * unwritten cache row read by attention would show.
 *
 * OpenCL does not survive fork(): as in check_engine.c, the unchecked
 * fixture only prepares a scratch program cache, and qe_test_cl() opens the
 * context lazily in the (forked) test process.
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
#include "kv_format.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "testutil.h"

#define OK(call) ck_assert_msg((call) == QE_OK, "%s: %s", #call, qe_errmsg())
#define TOL 1e-4 /* absolute, on log-probs, log-sum-exp and logits */

/* ---- helpers ---- */

/* An engine with KV-cache formats kk / kv, its caches poisoned with NaN. */
static qe_engine *open_engine_kv(const qe_model *m, int n_ctx, int n_slots, int top_k,
                                 qe_kv_format kk, qe_kv_format kv)
{
    qe_engine *e = qe_test_engine_kv(m, n_ctx, n_slots, top_k, kk, kv);
    OK(qe_engine_poison(e));
    return e;
}

static qe_engine *open_engine(const qe_model *m, int n_ctx, int n_slots, int top_k)
{
    const qe_engine_opts o = qe_engine_opts_default();
    return open_engine_kv(m, n_ctx, n_slots, top_k, o.kv_k, o.kv_v);
}

static qe_decode *open_decode(qe_engine *e, int max_rows)
{
    qe_decode_opts o = qe_decode_opts_default();
    o.max_rows = max_rows;
    qe_decode *d = NULL;
    OK(qe_decode_open(e, &o, &d));
    return d;
}

/* ---- against the reference ---- */

/* Prefill NP random prompts of different lengths into NP slots in one
 * ragged call, then decode greedily, every slot stepping together; feed the
 * reference the same tokens and compare every result. Returns how many
 * greedy choices had a clear margin in the reference (and so were checked
 * to be equal). */
/* Prompts are p0 tokens longer than {1, 5, 17, 30}, and the context 64 + p0
 * (p0 <= P0_MAX): p0 > 0 takes attention past one 64-key tile. */
enum { P0_MAX = 96 };
static void check_model_vs_ref_at(const qe_model *m, const char *rel, uint64_t seed, int p0)
{
    enum { NP = 4, K = 10, STEPS = 24 };
    ck_assert_int_le(p0, P0_MAX);
    const int ctx = 64 + p0, plen[NP] = {p0 + 1, p0 + 5, p0 + 17, p0 + 30};
    qe_test_rng_seed(seed);
    const int nv = qe_model_hparams(m)->n_vocab;
    qe_engine *e = open_engine(m, ctx, NP, K);
    qe_decode *d = open_decode(e, 0);
    ck_assert_int_eq(qe_decode_n_slots(d), NP);
    ck_assert_int_eq(qe_decode_max_rows(d), NP * ctx < 512 ? NP * ctx : 512);

    int32_t prompt[NP][30 + P0_MAX], next[NP];
    qe_ref *ref[NP];
    double *z = malloc((size_t)nv * sizeof *z);
    float *dz = malloc((size_t)nv * sizeof *dz);
    ck_assert(z && dz);
    qe_decode_seq seqs[NP];
    for (int s = 0; s < NP; s++) {
        for (int p = 0; p < plen[s]; p++)
            prompt[s][p] = (int32_t)(qe_test_rnd_u32() % (uint32_t)nv);
        OK(qe_ref_new(m, ctx, &ref[s]));
        /* slots in reverse order: slot numbers need not follow call order */
        seqs[s] = (qe_decode_seq){.slot = NP - 1 - s, .n_tok = plen[s], .tokens = prompt[s]};
    }
    float lse[NP], tkp[NP * K];
    int32_t am[NP], tki[NP * K];
    qe_decode_out out = {lse, am, tki, tkp};
    int clear = 0, total = 0;
    for (int step = 0; step <= STEPS; step++) {
        for (int i = 0; i < NP * K; i++) {
            tkp[i] = NAN;
            tki[i] = -7;
        }
        OK(qe_decode_run(d, NP, seqs, &out));
        for (int s = 0; s < NP; s++) {
            const int pos0 = step == 0 ? 0 : plen[s] + step - 1;
            for (int p = 0; p < seqs[s].n_tok; p++)
                OK(qe_ref_step(ref[s], seqs[s].tokens[p], pos0 + p, z));
            ck_assert_int_eq(qe_decode_len(d, seqs[s].slot), plen[s] + step);
            char where[96];
            snprintf(where, sizeof where, "%s seq %d step %d", rel, s, step);
            int ids[K + 1];
            qe_test_ref_top(z, nv, K + 1, ids);
            qe_test_check_row(z, nv, ids, qe_test_ref_lse(z, nv), lse[s], tkp + s * K, tki + s * K,
                              K, TOL, where);
            ck_assert_int_eq(am[s], tki[s * K]);
            /* The greedy choice; where the reference's margin is clear the
             * two must agree (otherwise both continue with the device's). */
            total++;
            if (z[ids[0]] - z[ids[1]] > TOL) {
                ck_assert_msg(am[s] == ids[0], "%s seq %d step %d: greedy %d, reference %d", rel, s,
                              step, am[s], ids[0]);
                clear++;
            }
            next[s] = am[s];
            if (step == STEPS && s == 1) {
                for (int i = 0; i < nv; i++)
                    dz[i] = NAN;
                OK(qe_decode_logits(d, s, dz));
                qe_test_check_logits(dz, z, nv, TOL, where);
            }
        }
        for (int s = 0; s < NP; s++)
            seqs[s] = (qe_decode_seq){.slot = NP - 1 - s, .n_tok = 1, .tokens = &next[s]};
    }
    ck_assert_int_ge(clear, total - 2); /* near-ties are rare */
    for (int s = 0; s < NP; s++)
        qe_ref_free(ref[s]);
    free(z);
    free(dz);
    qe_decode_close(d);
    qe_engine_close(e);
}

static void check_model_vs_ref(const qe_model *m, const char *rel, uint64_t seed)
{
    check_model_vs_ref_at(m, rel, seed, 0);
}

static void check_vs_ref(const char *rel, uint64_t seed)
{
    qe_model *m = qe_test_model(rel);
    check_model_vs_ref(m, rel, seed);
    qe_model_close(m);
}

START_TEST(test_stories260k) { check_vs_ref("models/stories260K.gguf", 7); }
END_TEST

START_TEST(test_tinystories656k) { check_vs_ref("models/TinyStories-656K", 8); }
END_TEST

/* A vocabulary of 70001 ids: the decoder splits each row's statistics among
 * 64 work-groups of 256 (engine.c qe_engine_stats_parts; the last part
 * shorter than the others) and merges them (logits.cl logit_merge), where
 * stories260K's 512 ids take one work-group and TinyStories' 2048 two.
 * Log-sum-exp, arg-max and top-10 against the double reference. */
START_TEST(test_wide_vocab)
{
    const qe_hparams hp = {.n_vocab = 70001, .dim = 32, .n_layers = 2, .n_heads = 4,
                           .n_kv_heads = 2, .head_dim = 8, .n_rot = 8, .n_ff = 64,
                           .n_ctx_train = 256, .rms_eps = 1e-5f, .rope_base = 10000.0f,
                           .rope_factor = 1.0f, .rope_freq_scale = 1.0f, .bos_id = -1,
                           .eos_id = -1, .tied = 1};
    qe_test_rmodel r;
    qe_test_rmodel_init(&r, &hp, 41);
    qe_test_rmodel_build(&r, "wide-vocab");
    check_model_vs_ref(r.m, "wide-vocab", 9);
    qe_test_rmodel_free(&r);
}
END_TEST

/* ---- batch invariance ---- */

enum { INV_K = 8, INV_GEN = 24, INV_PLEN = 9 };

typedef struct trace {
    float lse[INV_GEN], tkp[INV_GEN][INV_K];
    int32_t tki[INV_GEN][INV_K];
} trace;

/* The target prompt decoded alone in a one-slot engine, prefilled in one call. */
static void run_alone(const qe_model *m, const int32_t *prompt, trace *t)
{
    qe_engine *e = open_engine(m, 64, 1, INV_K);
    qe_decode *d = open_decode(e, 0);
    qe_decode_seq s = {.slot = 0, .n_tok = INV_PLEN, .tokens = prompt};
    int32_t tok = 0;
    for (int g = 0; g < INV_GEN; g++) {
        qe_decode_out out = {&t->lse[g], &tok, t->tki[g], t->tkp[g]};
        OK(qe_decode_run(d, 1, &s, &out));
        s = (qe_decode_seq){.slot = 0, .n_tok = 1, .tokens = &tok};
    }
    qe_decode_close(d);
    qe_engine_close(e);
}

/* The same prompt as job TARGET among NJ jobs pushed through 16 slots with
 * continuous batching: a finished slot is refilled with the next job at
 * once, prompts go in chunks of at most 4 tokens, and chunks share calls
 * with other slots' decode steps. */
static void run_batched(const qe_model *m, const int32_t *target_prompt, trace *t)
{
    enum { NS = 16, NJ = 26, TARGET = 19, CHUNK = 4 };
    const int nv = qe_model_hparams(m)->n_vocab;
    qe_engine *e = open_engine(m, 64, NS, INV_K);
    qe_decode *d = open_decode(e, 40);
    int32_t prompts[NJ][INV_PLEN + 24];
    int plen[NJ], ngen[NJ];
    for (int j = 0; j < NJ; j++) {
        plen[j] = j == TARGET ? INV_PLEN : 1 + (int)(qe_test_rnd_u32() % 24);
        ngen[j] = j == TARGET ? INV_GEN : 1 + (int)(qe_test_rnd_u32() % 20);
        for (int p = 0; p < plen[j]; p++)
            prompts[j][p] = j == TARGET ? target_prompt[p] : (int32_t)(qe_test_rnd_u32() % (uint32_t)nv);
    }
    int job[NS], fed[NS], got[NS];
    int32_t last[NS];
    for (int s = 0; s < NS; s++)
        job[s] = -1;
    int next_job = 0, done = 0, calls = 0, target_seen = 0;
    while (done < NJ) {
        for (int s = 0; s < NS; s++)
            if (job[s] < 0 && next_job < NJ) {
                job[s] = next_job++;
                fed[s] = got[s] = 0;
                OK(qe_decode_reset(d, s));
            }
        qe_decode_seq seqs[NS];
        int slot_of[NS], n = 0, rows = 0;
        /* Visit slots in a rotating order so the target's row moves around. */
        for (int i = 0; i < NS; i++) {
            int s = (i + calls) % NS;
            if (job[s] < 0)
                continue;
            int j = job[s], take = fed[s] < plen[j] ? plen[j] - fed[s] : 1;
            take = take > CHUNK ? CHUNK : take;
            if (rows + take > qe_decode_max_rows(d))
                continue;
            seqs[n] = (qe_decode_seq){.slot = s, .n_tok = take,
                                      .tokens = fed[s] < plen[j] ? prompts[j] + fed[s] : &last[s]};
            slot_of[n++] = s;
            rows += take;
        }
        ck_assert_int_ge(n, 1);
        float lse[NS], tkp[NS * INV_K];
        int32_t am[NS], tki[NS * INV_K];
        qe_decode_out out = {lse, am, tki, tkp};
        OK(qe_decode_run(d, n, seqs, &out));
        calls++;
        for (int i = 0; i < n; i++) {
            int s = slot_of[i], j = job[s];
            fed[s] += seqs[i].n_tok;
            if (fed[s] < plen[j])
                continue; /* a prompt chunk: no token yet */
            if (j == TARGET) {
                target_seen++;
                t->lse[got[s]] = lse[i];
                memcpy(t->tki[got[s]], tki + i * INV_K, sizeof t->tki[0]);
                memcpy(t->tkp[got[s]], tkp + i * INV_K, sizeof t->tkp[0]);
            }
            last[s] = am[i];
            if (++got[s] == ngen[j]) {
                job[s] = -1;
                done++;
            }
        }
    }
    ck_assert_int_eq(target_seen, INV_GEN);
    qe_decode_close(d);
    qe_engine_close(e);
}

START_TEST(test_batch_invariance)
{
    qe_test_rng_seed(11);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    int32_t prompt[INV_PLEN];
    for (int p = 0; p < INV_PLEN; p++)
        prompt[p] = (int32_t)(qe_test_rnd_u32() % 512);
    trace *alone = calloc(1, sizeof *alone), *batched = calloc(1, sizeof *batched);
    ck_assert(alone && batched);
    run_alone(m, prompt, alone);
    run_batched(m, prompt, batched);
    for (int g = 0; g < INV_GEN; g++) {
        ck_assert_msg(memcmp(&alone->lse[g], &batched->lse[g], sizeof(float)) == 0,
                      "position %d: lse %.9g alone, %.9g batched", g, (double)alone->lse[g],
                      (double)batched->lse[g]);
        ck_assert_msg(memcmp(alone->tki[g], batched->tki[g], sizeof alone->tki[g]) == 0,
                      "position %d: top-k ids differ", g);
        ck_assert_msg(memcmp(alone->tkp[g], batched->tkp[g], sizeof alone->tkp[g]) == 0,
                      "position %d: top-k log-probs differ", g);
    }
    free(alone);
    free(batched);
    qe_model_close(m);
}
END_TEST

/* One token per call for sequence 0 of tok ([NS][AK_NT]), alone (one slot)
 * or beside NS - 1 others (every call NS > 16 rows: the decoder's grouped
 * build of attn_rows, where a single row uses the one-head build); the
 * log-sum-exp after each token. */
enum { AK_NT = 12, AK_NS = 20 };
static void attn_kernels_lse(const qe_model *m, qe_kv_format kk, qe_kv_format kv, const int32_t *tok,
                             int shared, float *lse)
{
    qe_engine *e = open_engine_kv(m, AK_NT, shared ? AK_NS : 1, 2, kk, kv);
    qe_decode *d = open_decode(e, 0);
    for (int p = 0; p < AK_NT; p++) {
        qe_decode_seq seqs[AK_NS];
        const int n = shared ? AK_NS : 1;
        for (int i = 0; i < n; i++) /* sequence 0 rides in slot 7 of the shared engine */
            seqs[i] = (qe_decode_seq){.slot = shared ? (i + 7) % AK_NS : 0, .n_tok = 1,
                                      .tokens = &tok[i * AK_NT + p]};
        float l[AK_NS];
        qe_decode_out out = {.lse = l};
        OK(qe_decode_run(d, n, seqs, &out));
        lse[p] = l[0];
    }
    qe_decode_close(d);
    qe_engine_close(e);
}

/* The two attn_rows builds give the same bits in every cache format. */
START_TEST(test_attn_kernels)
{
    qe_test_rng_seed(31);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    int32_t tok[AK_NS * AK_NT];
    for (int i = 0; i < AK_NS * AK_NT; i++)
        tok[i] = (int32_t)(qe_test_rnd_u32() % 512);
    const qe_kv_format fmts[][2] = {{QE_KV_F32, QE_KV_F32}, {QE_KV_F16, QE_KV_Q8_0},
                                    {QE_KV_Q4_0, QE_KV_TQ3}, {QE_KV_TQ4, QE_KV_TQ4},
                                    {QE_KV_TQ2, QE_KV_F16}};
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        float alone[AK_NT], shared[AK_NT];
        attn_kernels_lse(m, fmts[f][0], fmts[f][1], tok, 0, alone);
        attn_kernels_lse(m, fmts[f][0], fmts[f][1], tok, 1, shared);
        for (int p = 0; p < AK_NT; p++)
            ck_assert_msg(memcmp(&alone[p], &shared[p], sizeof(float)) == 0,
                          "K %s / V %s, step %d: lse %.9g alone, %.9g in calls of %d rows",
                          qe_kv_format_name(fmts[f][0]), qe_kv_format_name(fmts[f][1]), p,
                          (double)alone[p], (double)shared[p], AK_NS);
    }
    qe_model_close(m);
}
END_TEST

/* ---- cache and weight formats ---- */

/* |target log-prob| and |log-sum-exp| differences of decoding two random
 * sequences (16-token prompts, then one token per call, both slots in every
 * call) against a reference run with cache formats rk / rv. */
static qe_test_diff format_diff(const qe_model *m, qe_kv_format kk, qe_kv_format kv,
                                qe_kv_format rk, qe_kv_format rv, const int32_t *tok /* [2][NT] */)
{
    enum { NT = 48, NP = 16 };
    const int nv = qe_model_hparams(m)->n_vocab;
    qe_engine *e = open_engine_kv(m, NT, 2, 4, kk, kv);
    qe_decode *d = open_decode(e, 0);
    qe_ref *ref[2];
    double *z = malloc((size_t)nv * sizeof *z);
    float *dz = malloc((size_t)nv * sizeof *dz);
    ck_assert(z && dz);
    for (int s = 0; s < 2; s++)
        OK(qe_ref_new_kv(m, NT, rk, rv, &ref[s]));
    qe_test_diff f = {0};
    int fed = 0;
    while (fed < NT - 1) {
        const int take = fed == 0 ? NP : 1;
        qe_decode_seq seqs[2] = {{.slot = 1, .n_tok = take, .tokens = tok + fed},
                                 {.slot = 0, .n_tok = take, .tokens = tok + NT + fed}};
        float lse[2];
        qe_decode_out out = {.lse = lse};
        OK(qe_decode_run(d, 2, seqs, &out));
        for (int s = 0; s < 2; s++) {
            for (int p = fed; p < fed + take; p++)
                OK(qe_ref_step(ref[s], tok[s * NT + p], p, z));
            const int32_t t = tok[s * NT + fed + take];
            OK(qe_decode_logits(d, s, dz));
            const double l = qe_test_ref_lse(z, nv);
            qe_test_diff_add(&f, f.n, fabs(lse[s] - l),
                             fabs(((double)dz[t] - lse[s]) - (z[t] - l)));
        }
        fed += take;
    }
    for (int s = 0; s < 2; s++)
        qe_ref_free(ref[s]);
    free(z);
    free(dz);
    qe_decode_close(d);
    qe_engine_close(e);
    return f;
}

/* Every KV-cache format through the decoder against qe_ref_new_kv with the
 * same formats, with check_engine_formats.c's criteria for the prefill: a
 * cache that encodes like the reference's is far closer to it than to the
 * f32 cache (rounding of K/V may flip a rare code, hence not 1e-4). */
START_TEST(test_kv_formats)
{
    enum { NT = 48 };
    qe_test_rng_seed(21);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    int32_t tok[2 * NT];
    for (int i = 0; i < 2 * NT; i++)
        tok[i] = (int32_t)(qe_test_rnd_u32() % 512);
    const qe_kv_format pairs[][2] = {
        {QE_KV_F32, QE_KV_F32},   {QE_KV_F16, QE_KV_F16}, {QE_KV_Q8_0, QE_KV_Q8_0},
        {QE_KV_Q4_0, QE_KV_Q4_0}, {QE_KV_TQ4, QE_KV_TQ4}, {QE_KV_TQ3, QE_KV_TQ3},
        {QE_KV_TQ2, QE_KV_TQ2},   {QE_KV_TQ4, QE_KV_Q8_0}, {QE_KV_F16, QE_KV_TQ3}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const qe_kv_format kk = pairs[i][0], kv = pairs[i][1];
        qe_test_diff same = format_diff(m, kk, kv, kk, kv, tok);
        fprintf(stderr, "# decode kv %s/%s: |d logp| vs the same format: mean %.3g, max %.3g\n",
                qe_kv_format_name(kk), qe_kv_format_name(kv), qe_test_diff_mean(&same), same.max_tlp);
        qe_test_diff f32 = {0};
        if (i > 0)
            f32 = format_diff(m, kk, kv, QE_KV_F32, QE_KV_F32, tok);
        qe_test_check_kv_diff(qe_kv_format_name(kk), qe_kv_format_name(kv), &same,
                              i == 0 ? NULL : &f32);
    }
    qe_model_close(m);
}
END_TEST

/* Heads of 64 and 128 dimensions (Llama-3.2-1B's and Llama-3-8B's): in
 * attn_rows a key row is one round of 16-byte loads at 64 (AT_KB), two at
 * 128; GQA 4/2 (the grouped build serves the prompt call); contexts of up
 * to 150 keys, so three 64-key tiles, the last partial. Against the
 * double reference; then TurboQuant caches against the reference with the
 * same formats (test_kv_formats' criteria). */
START_TEST(test_head_dims)
{
    for (int hd = 64; hd <= 128; hd += 64) {
        const qe_hparams hp = {.n_vocab = 300, .dim = 64, .n_layers = 2, .n_heads = 4,
                               .n_kv_heads = 2, .head_dim = hd, .n_rot = hd, .n_ff = 96,
                               .n_ctx_train = 256, .rms_eps = 1e-5f, .rope_base = 10000.0f,
                               .rope_factor = 1.0f, .rope_freq_scale = 1.0f, .bos_id = -1,
                               .eos_id = -1, .tied = 1};
        char name[32];
        snprintf(name, sizeof name, "head-dim-%d", hd);
        qe_test_rmodel r;
        qe_test_rmodel_init(&r, &hp, 43 + (uint64_t)hd);
        qe_test_rmodel_build(&r, name);
        check_model_vs_ref_at(r.m, name, 10, P0_MAX);
        /* TurboQuant caches: attn_rows' kv_tq_load8_lut over one (64) and
           two (128) 64-element rounds of a key row */
        enum { NT = 48 };
        int32_t tok[2 * NT];
        for (int i = 0; i < 2 * NT; i++)
            tok[i] = (int32_t)(qe_test_rnd_u32() % (uint32_t)hp.n_vocab);
        const qe_kv_format pairs[][2] = {{QE_KV_TQ4, QE_KV_TQ3}, {QE_KV_TQ2, QE_KV_TQ4}};
        for (int i = 0; i < 2; i++) {
            const qe_kv_format kk = pairs[i][0], kv = pairs[i][1];
            qe_test_diff same = format_diff(r.m, kk, kv, kk, kv, tok);
            qe_test_diff f32 = format_diff(r.m, kk, kv, QE_KV_F32, QE_KV_F32, tok);
            fprintf(stderr, "# %s kv %s/%s: |d logp| vs the same format: mean %.3g, max %.3g\n",
                    name, qe_kv_format_name(kk), qe_kv_format_name(kv), qe_test_diff_mean(&same),
                    same.max_tlp);
            qe_test_check_kv_diff(qe_kv_format_name(kk), qe_kv_format_name(kv), &same, &f32);
        }
        qe_test_rmodel_free(&r);
    }
}
END_TEST

/* Quantized weights go through the same matmul: a Q8_0 and a Q4_0 model
 * decode like the reference over the same blocks. */
START_TEST(test_quant_weights)
{
    enum { NT = 48 };
    qe_test_rng_seed(22);
    qe_model *m = qe_test_model("models/stories260K.gguf");
    int32_t tok[2 * NT];
    for (int i = 0; i < 2 * NT; i++)
        tok[i] = (int32_t)(qe_test_rnd_u32() % 512);
    const qe_dtype types[] = {QE_DT_Q8_0, QE_DT_Q4_0};
    for (int i = 0; i < 2; i++) {
        qe_quant_model *qm = NULL;
        OK(qe_quant_model_new(m, types[i], &qm));
        const qe_model *q = qe_quant_model_get(qm);
        ck_assert_int_eq(qe_model_weights(q)->layers[0].wq.type, types[i]);
        qe_test_diff f = format_diff(q, QE_KV_F32, QE_KV_F32, QE_KV_F32, QE_KV_F32, tok);
        ck_assert_msg(f.max_tlp < TOL && f.max_lse < TOL, "%s: max |d logp| %.3g, |d lse| %.3g",
                      qe_dtype_name(types[i]), f.max_tlp, f.max_lse);
        qe_quant_model_free(qm);
    }
    qe_model_close(m);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits)
{
    qe_model *m = qe_test_model("models/stories260K.gguf");
    qe_engine *e = open_engine(m, 8, 3, 4);
    qe_decode *d = NULL;
    qe_decode_opts o = qe_decode_opts_default();
    o.max_rows = 2; /* fewer than the slots */
    ck_assert_int_eq(qe_decode_open(e, &o, &d), QE_EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "max_rows 2"));
    ck_assert_int_eq(qe_decode_open(NULL, NULL, &d), QE_EINVAL);
    d = open_decode(e, 6);
    ck_assert_int_eq(qe_decode_max_rows(d), 6);
    ck_assert_int_eq(qe_decode_n_ctx(d), 8);
    ck_assert_int_eq(qe_decode_top_k(d), 4);

    int32_t toks[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bad = 512, neg = -1;
    qe_decode_seq s[4];
    qe_decode_out none = {0};
    ck_assert_int_eq(qe_decode_run(d, 0, s, &none), QE_EINVAL);
    s[0] = (qe_decode_seq){.slot = 3, .n_tok = 1, .tokens = toks};
    ck_assert_int_eq(qe_decode_run(d, 1, s, &none), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "slot 3"));
    s[0] = (qe_decode_seq){.slot = 1, .n_tok = 1, .tokens = toks};
    s[1] = (qe_decode_seq){.slot = 1, .n_tok = 1, .tokens = toks};
    ck_assert_int_eq(qe_decode_run(d, 2, s, &none), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "both use slot 1"));
    s[0] = (qe_decode_seq){.slot = 0, .n_tok = 0, .tokens = toks};
    ck_assert_int_eq(qe_decode_run(d, 1, s, &none), QE_EINVAL);
    s[0] = (qe_decode_seq){.slot = 0, .n_tok = 1, .tokens = &bad};
    ck_assert_int_eq(qe_decode_run(d, 1, s, &none), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "id 512"));
    s[0] = (qe_decode_seq){.slot = 0, .n_tok = 1, .tokens = &neg};
    ck_assert_int_eq(qe_decode_run(d, 1, s, &none), QE_EINVAL);
    /* more tokens than max_rows in one call */
    s[0] = (qe_decode_seq){.slot = 0, .n_tok = 4, .tokens = toks};
    s[1] = (qe_decode_seq){.slot = 1, .n_tok = 3, .tokens = toks};
    ck_assert_int_eq(qe_decode_run(d, 2, s, &none), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "max_rows"));
    /* nothing above ran: every slot is still empty */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(qe_decode_len(d, i), 0);
    ck_assert_int_eq(qe_decode_len(d, 3), -1);
    ck_assert_int_eq(qe_decode_logits(d, 0, NULL), QE_EINVAL); /* no call yet */

    /* a slot fills up at n_ctx */
    s[0] = (qe_decode_seq){.slot = 2, .n_tok = 6, .tokens = toks};
    OK(qe_decode_run(d, 1, s, NULL));
    s[0].n_tok = 2;
    OK(qe_decode_run(d, 1, s, &none));
    ck_assert_int_eq(qe_decode_len(d, 2), 8);
    s[0].n_tok = 1;
    ck_assert_int_eq(qe_decode_run(d, 1, s, &none), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "8 of 8 positions"));
    ck_assert_int_eq(qe_decode_logits(d, 1, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_decode_reset(d, 3), QE_EINVAL);
    ck_assert_int_eq(qe_decode_reset(d, -1), QE_EINVAL);
    OK(qe_decode_reset(d, 2));
    ck_assert_int_eq(qe_decode_len(d, 2), 0);
    OK(qe_decode_run(d, 1, s, &none));
    qe_decode_close(d);
    qe_decode_close(NULL);
    qe_engine_close(e);
    qe_model_close(m);
}
END_TEST

Suite *decode_suite(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("ref");
    tcase_set_timeout(tc, 180);
    tcase_add_unchecked_fixture(tc, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(tc, test_stories260k);
    tcase_add_test(tc, test_tinystories656k);
    tcase_add_test(tc, test_wide_vocab);
    tcase_add_test(tc, test_head_dims);
    tcase_add_test(tc, test_attn_kernels);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_kv_formats);
    tcase_add_test(tc, test_quant_weights);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 60);
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
