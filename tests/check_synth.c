/* check_synth.c - synthetic models (lib/synth.h).
 *
 * Expectations come from outside the code under test:
 *   - the published configurations of Llama-3.2-1B, Qwen2.5-0.5B and
 *     SmolLM2-135M (Hugging Face config.json values, restated here) and
 *     their published parameter counts (Llama-3.2-1B: 1,235,814,400 with the
 *     tied embedding counted once), plus a tensor list built here from the
 *     Llama layout (HF Linear [out, in] = GGUF ne {in, out});
 *   - the documented value rules: matrices have standard deviation
 *     1/sqrt(in), the embedding QE_SYNTH_LOGIT_STD/sqrt(dim), norms 1 +
 *     0.02 z; an f16 file holds exactly the f16 rounding of the f32 file's
 *     values (qe_f32_to_f16, tested in check_dtype); Q8_0/Q4_0 stay within
 *     their analytic error bounds of the f32 values;
 *   - llama3 RoPE divisors restated from Meta's reference formula;
 *   - the documented vocabulary scheme ("▁a" is piece 354, ...);
 *   - the reference forward: logits finite, next-token entropy between 10%
 *     and 99% of log(n_vocab), through 2 and 24 layers. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_write.h"
#include "model.h"
#include "quant.h"
#include "ref.h"
#include "synth.h"
#include "testutil.h"
#include "tokenizer.h"

/* ---- helpers ---- */

static char *tmp_dir;

static void setup(void) { tmp_dir = qe_test_tmpdir(); }
static void teardown(void)
{
    qe_test_rmtree(tmp_dir);
    free(tmp_dir);
    tmp_dir = NULL;
}

static const char *tmp_path(const char *name)
{
    static char buf[4][4200];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tmp_dir, name);
    return b;
}

/* A small custom model: the stories260k entry with overrides. */
static qe_synth_config small(int32_t dim, int32_t layers, int32_t heads, int32_t kv, int32_t ff,
                             int32_t vocab)
{
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("stories260k", &c), QE_OK);
    c.name = "test";
    c.dim = dim, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv, c.n_ff = ff;
    c.n_vocab = vocab, c.head_dim = 0;
    return c;
}

static void write_model(const qe_synth_config *c, qe_dtype type, uint64_t seed, int threads,
                        const char *path)
{
    qe_synth *s = NULL;
    ck_assert_int_eq(qe_synth_new(c, type, seed, &s), QE_OK);
    ck_assert_int_eq(qe_synth_write(s, path, threads), QE_OK);
    uint64_t want = 0;
    struct stat sb;
    ck_assert_int_eq(qe_synth_file_bytes(s, &want), QE_OK);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq((uint64_t)sb.st_size, want);
    qe_synth_free(s);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    int eq = na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
}

/* ---- the architecture table ---- */

/* Published config.json values. */
START_TEST(test_table_published)
{
    static const struct {
        const char *name;
        int32_t dim, layers, heads, kv, hd, ff, vocab, ctx;
        double theta, eps;
    } pub[] = {
        {"llama-3.2-1b", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0, 1e-5},
        {"qwen2.5-0.5b", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000.0, 1e-6},
        {"smollm2-135m", 576, 30, 9, 3, 64, 1536, 49152, 8192, 100000.0, 1e-5},
        {"stories260k", 64, 5, 8, 4, 8, 172, 512, 2048, 10000.0, 1e-5},
    };
    ck_assert_uint_eq(qe_synth_arch_count(), 4);
    for (size_t i = 0; i < 4; i++) {
        qe_synth_config c;
        ck_assert_int_eq(qe_synth_find(pub[i].name, &c), QE_OK);
        ck_assert_str_eq(c.name, pub[i].name);
        ck_assert_str_eq(qe_synth_arch(i)->name, pub[i].name);
        ck_assert_int_eq(c.dim, pub[i].dim);
        ck_assert_int_eq(c.n_layers, pub[i].layers);
        ck_assert_int_eq(c.n_heads, pub[i].heads);
        ck_assert_int_eq(c.n_kv_heads, pub[i].kv);
        ck_assert_int_eq(c.head_dim, pub[i].hd);
        ck_assert_int_eq(c.head_dim, c.dim / c.n_heads); /* the table keeps this rule */
        ck_assert_int_eq(c.n_ff, pub[i].ff);
        ck_assert_int_eq(c.n_vocab, pub[i].vocab);
        ck_assert_int_eq(c.n_ctx, pub[i].ctx);
        ck_assert(c.rope_base == pub[i].theta);
        ck_assert(c.rms_eps == pub[i].eps);
        ck_assert_int_eq(c.tied, 1);
        ck_assert_int_eq(qe_synth_check(&c), QE_OK);
        ck_assert(c.note && *c.note);
    }
    ck_assert_ptr_null(qe_synth_arch(4));
    /* Llama 3.2: rope_scaling {rope_type llama3, factor 32, low 1, high 4, 8192}. */
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("llama-3.2-1b", &c), QE_OK);
    ck_assert(c.rope_factor == 32.0 && c.rope_low_freq == 1.0 && c.rope_high_freq == 4.0);
    ck_assert_int_eq(c.rope_orig_ctx, 8192);
    ck_assert_int_eq(qe_synth_find("qwen2.5-0.5b", &c), QE_OK);
    ck_assert(c.rope_factor == 0.0);
}
END_TEST

/* Parameters of a tied Llama, counted from the HF module shapes. */
static uint64_t llama_params(uint64_t d, uint64_t layers, uint64_t heads, uint64_t kv, uint64_t hd,
                             uint64_t ff, uint64_t vocab)
{
    uint64_t per_layer = d * heads * hd      /* q_proj */
                         + 2 * d * kv * hd   /* k_proj, v_proj */
                         + heads * hd * d    /* o_proj */
                         + 3 * d * ff        /* gate, up, down */
                         + 2 * d;            /* input / post-attention norms */
    return vocab * d + layers * per_layer + d; /* embed_tokens, layers, final norm */
}

/* The llama-3.2-1b plan, without writing 2.5 GB. */
START_TEST(test_plan_llama32_1b)
{
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("llama-3.2-1b", &c), QE_OK);
    qe_synth *s = NULL;
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_F16, 1, &s), QE_OK);
    ck_assert_uint_eq(qe_synth_n_params(s), 1235814400u); /* published */
    ck_assert_uint_eq(qe_synth_n_params(s), llama_params(2048, 16, 32, 8, 64, 8192, 128256));

    /* The expected tensor list, in the Llama GGUF layout. */
    struct { char name[48]; int64_t ne0, ne1; int vec; } want[200];
    size_t n = 0;
#define WANT(nm, a, b, v) do { snprintf(want[n].name, 48, "%s", nm); want[n].ne0 = a; \
                               want[n].ne1 = b; want[n].vec = v; n++; } while (0)
    WANT("rope_freqs.weight", 32, 1, 1);
    WANT("token_embd.weight", 2048, 128256, 0);
    for (int l = 0; l < 16; l++) {
        char b[48];
#define L(suffix, a, bb, v) do { snprintf(b, 48, "blk.%d.%s.weight", l, suffix); WANT(b, a, bb, v); } while (0)
        L("attn_norm", 2048, 1, 1);
        L("attn_q", 2048, 2048, 0);
        L("attn_k", 2048, 512, 0);
        L("attn_v", 2048, 512, 0);
        L("attn_output", 2048, 2048, 0);
        L("ffn_norm", 2048, 1, 1);
        L("ffn_gate", 2048, 8192, 0);
        L("ffn_up", 2048, 8192, 0);
        L("ffn_down", 8192, 2048, 0);
#undef L
    }
    WANT("output_norm.weight", 2048, 1, 1);
#undef WANT
    ck_assert_uint_eq(qe_synth_n_tensors(s), n);
    ck_assert_uint_eq(n, 147);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const qe_synth_tensor *t = qe_synth_tensor_at(s, i);
        ck_assert_str_eq(t->name, want[i].name);
        ck_assert_int_eq(t->ne[0], want[i].ne0);
        ck_assert_int_eq(t->ne[1], want[i].ne1);
        ck_assert_uint_eq(t->n_dims, want[i].vec ? 1 : 2);
        ck_assert_int_eq(t->type, want[i].vec ? QE_DT_F32 : QE_DT_F16);
        ck_assert_uint_eq(t->nbytes, (uint64_t)want[i].ne0 * want[i].ne1 * (want[i].vec ? 4 : 2));
        bytes += t->nbytes;
    }
    ck_assert_ptr_null(qe_synth_tensor_at(s, n));
    ck_assert_uint_eq(qe_synth_data_bytes(s), bytes);
    /* 1-D tensors: 33 norms of 2048 and 32 divisors in f32; the rest f16. */
    uint64_t norms = 33 * 2048;
    ck_assert_uint_eq(bytes, 2 * (1235814400u - norms) + 4 * norms + 4 * 32);
    uint64_t file = 0;
    ck_assert_int_eq(qe_synth_file_bytes(s, &file), QE_OK);
    /* Header + vocabulary: more than the 128256 strings' length prefixes,
     * far less than the weights. */
    ck_assert_uint_gt(file, bytes + 128256u * 8);
    ck_assert_uint_lt(file, bytes + (8u << 20));
    qe_synth_free(s);

    /* q4_0: matrices q4_0, the tied embedding q8_0 (the output rule). */
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_Q4_0, 1, &s), QE_OK);
    ck_assert_int_eq(qe_synth_tensor_at(s, 1)->type, QE_DT_Q8_0);
    ck_assert_int_eq(qe_synth_tensor_at(s, 3)->type, QE_DT_Q4_0);
    ck_assert_int_eq(qe_synth_tensor_at(s, 2)->type, QE_DT_F32);
    ck_assert_uint_eq(qe_synth_tensor_at(s, 1)->nbytes, 2048u / 32 * 34 * 128256);
    qe_synth_free(s);
}
END_TEST

START_TEST(test_plan_other_archs)
{
    qe_synth_config c;
    qe_synth *s = NULL;
    /* SmolLM2-135M: 134,515,008 published. */
    ck_assert_int_eq(qe_synth_find("smollm2-135m", &c), QE_OK);
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_Q8_0, 1, &s), QE_OK);
    ck_assert_uint_eq(qe_synth_n_params(s), 134515008u);
    ck_assert_uint_eq(qe_synth_n_params(s), llama_params(576, 30, 9, 3, 64, 1536, 49152));
    ck_assert_uint_eq(qe_synth_n_tensors(s), 2 + 9 * 30); /* no rope_freqs, no output */
    qe_synth_free(s);
    /* Qwen2.5-0.5B: 494,032,768 published, less its Q/K/V biases
     * (24 layers x (896 + 128 + 128)). */
    ck_assert_int_eq(qe_synth_find("qwen2.5-0.5b", &c), QE_OK);
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_F32, 1, &s), QE_OK);
    ck_assert_uint_eq(qe_synth_n_params(s), 494032768u - 24u * (896 + 128 + 128));
    qe_synth_free(s);
    /* stories260k under q8_0: rows of 172 are not whole blocks -> f16. */
    ck_assert_int_eq(qe_synth_find("stories260k", &c), QE_OK);
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_Q8_0, 1, &s), QE_OK);
    for (size_t i = 0; i < qe_synth_n_tensors(s); i++) {
        const qe_synth_tensor *t = qe_synth_tensor_at(s, i);
        qe_dtype want = t->n_dims == 1 ? QE_DT_F32 : t->ne[0] == 172 ? QE_DT_F16 : QE_DT_Q8_0;
        ck_assert_msg(t->type == want, "%s", t->name);
    }
    qe_synth_free(s);
    /* Untied: output.weight comes last, the embedding takes the matrix rule. */
    c.tied = 0;
    ck_assert_int_eq(qe_synth_new(&c, QE_DT_Q4_0, 1, &s), QE_OK);
    const qe_synth_tensor *last = qe_synth_tensor_at(s, qe_synth_n_tensors(s) - 1);
    ck_assert_str_eq(last->name, "output.weight");
    ck_assert_int_eq(last->type, QE_DT_Q8_0);
    ck_assert_int_eq(qe_synth_tensor_at(s, 0)->type, QE_DT_Q4_0); /* token_embd */
    qe_synth_free(s);
}
END_TEST

/* ---- written models ---- */

/* Mean and standard deviation of a whole tensor through the row decoder. */
static void tensor_stats(const qe_tensor *t, double *mean, double *sd)
{
    float *row = malloc((size_t)t->ne[0] * sizeof *row);
    double s = 0, s2 = 0, n = 0;
    for (int64_t r = 0; r < t->ne[1]; r++) {
        qe_tensor_row_f32(t, r, row);
        for (int64_t i = 0; i < t->ne[0]; i++) {
            s += row[i];
            s2 += (double)row[i] * row[i];
            n++;
        }
    }
    free(row);
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

START_TEST(test_open_hparams)
{
    /* stories260k as in the table, and a custom untied shape with an
     * explicit head dim (heads x head_dim != dim). */
    qe_synth_config a, b = small(96, 3, 6, 2, 256, 300);
    ck_assert_int_eq(qe_synth_find("stories260k", &a), QE_OK);
    b.head_dim = 32;
    b.tied = 0;
    b.n_ctx = 128;
    b.rope_base = 50000.0;
    b.rms_eps = 1e-6;
    const qe_synth_config *cs[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        const qe_synth_config *c = cs[k];
        const char *path = tmp_path(k ? "b.gguf" : "a.gguf");
        write_model(c, QE_DT_F32, 77, 2, path);
        qe_model *m = NULL;
        ck_assert_int_eq(qe_model_open(path, &m), QE_OK);
        const qe_hparams *hp = qe_model_hparams(m);
        ck_assert_int_eq(hp->dim, c->dim);
        ck_assert_int_eq(hp->n_layers, c->n_layers);
        ck_assert_int_eq(hp->n_heads, c->n_heads);
        ck_assert_int_eq(hp->n_kv_heads, c->n_kv_heads);
        ck_assert_int_eq(hp->head_dim, k ? 32 : 8);
        ck_assert_int_eq(hp->n_rot, hp->head_dim);
        ck_assert_int_eq(hp->n_ff, c->n_ff);
        ck_assert_int_eq(hp->n_vocab, c->n_vocab);
        ck_assert_int_eq(hp->n_ctx_train, c->n_ctx);
        ck_assert(hp->rope_base == (float)c->rope_base);
        ck_assert(hp->rms_eps == (float)c->rms_eps);
        ck_assert_int_eq(hp->rope_scaling, QE_ROPE_SCALING_NONE);
        ck_assert_int_eq(hp->rope_layout, QE_ROPE_PAIRS);
        ck_assert_int_eq(hp->tied, c->tied);
        ck_assert_int_eq(hp->bos_id, 1);
        ck_assert_int_eq(hp->eos_id, 2);

        /* Metadata that records the origin. */
        const qe_gguf *g = qe_model_gguf(m);
        const char *str;
        uint64_t seed;
        uint32_t u;
        char want[64];
        snprintf(want, sizeof want, "synthetic %s", c->name);
        ck_assert_int_eq(qe_gguf_get_str(g, "general.name", &str, NULL), QE_OK);
        ck_assert_str_eq(str, want);
        ck_assert_int_eq(qe_gguf_get_str(g, "qeval.synth.arch", &str, NULL), QE_OK);
        ck_assert_str_eq(str, c->name);
        ck_assert_int_eq(qe_gguf_get_u64(g, "qeval.synth.seed", &seed), QE_OK);
        ck_assert_uint_eq(seed, 77);
        ck_assert_int_eq(qe_gguf_get_u32(g, "general.file_type", &u), QE_OK);
        ck_assert_uint_eq(u, 0); /* ALL_F32 */

        /* Value scales as documented. */
        const qe_weights *w = qe_model_weights(m);
        double mean, sd;
        tensor_stats(&w->layers[0].w_down, &mean, &sd);
        ck_assert_double_lt(fabs(mean), 0.1 / sqrt((double)c->n_ff));
        ck_assert_double_lt(fabs(sd * sqrt((double)c->n_ff) - 1.0), 0.05);
        tensor_stats(&w->layers[c->n_layers - 1].wo, &mean, &sd);
        ck_assert_double_lt(fabs(sd * sqrt((double)hp->n_heads * hp->head_dim) - 1.0), 0.05);
        tensor_stats(&w->token_embd, &mean, &sd);
        ck_assert_double_lt(fabs(sd * sqrt((double)c->dim) / QE_SYNTH_LOGIT_STD - 1.0), 0.05);
        tensor_stats(&w->layers[1].attn_norm, &mean, &sd);
        ck_assert_double_lt(fabs(mean - 1.0), 0.02);
        ck_assert_double_gt(sd, 0.01);
        ck_assert_double_lt(sd, 0.03);
        if (!c->tied) {
            ck_assert_ptr_ne(w->output.data, w->token_embd.data);
            ck_assert(memcmp(w->output.data, w->token_embd.data, w->output.nbytes) != 0);
        }
        qe_model_close(m);
    }
}
END_TEST

/* Llama-3.2-style RoPE scaling survives shrinking the other sizes. */
START_TEST(test_rope_freqs)
{
    qe_synth_config c;
    ck_assert_int_eq(qe_synth_find("llama-3.2-1b", &c), QE_OK);
    c.name = "llama-3.2-1b-small";
    c.dim = 256, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.n_ff = 64, c.n_vocab = 300;
    c.head_dim = 0; /* 128: 64 RoPE pairs */
    const char *path = tmp_path("r.gguf");
    write_model(&c, QE_DT_F16, 5, 1, path);
    qe_model *m = NULL;
    ck_assert_int_eq(qe_model_open(path, &m), QE_OK);
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(hp->rope_scaling, QE_ROPE_SCALING_LLAMA3);
    const qe_tensor *rf = &qe_model_weights(m)->rope_freqs;
    ck_assert_int_eq(rf->ne[0], 64);
    float got[64];
    qe_tensor_row_f32(rf, 0, got);
    /* Meta's apply_scaling (llama3.1 reference): wavelength 2 pi / freq;
     * < 8192/4 keeps, > 8192/1 divides by 32, smooth in between. */
    int kept = 0, scaled = 0, smooth = 0;
    for (int i = 0; i < 64; i++) {
        double freq = 1.0 / pow(500000.0, (2.0 * i) / 128.0);
        double wl = 2 * 3.141592653589793 / freq, want;
        if (wl < 2048.0) {
            want = 1.0, kept++;
        } else if (wl > 8192.0) {
            want = 32.0, scaled++;
        } else {
            double sm = (8192.0 / wl - 1.0) / 3.0;
            want = 1.0 / ((1 - sm) / 32.0 + sm), smooth++;
        }
        ck_assert_double_eq_tol(got[i], want, 1e-5 * want);
    }
    ck_assert(kept > 0 && scaled > 0 && smooth > 0); /* all three branches seen */
    qe_model_close(m);
}
END_TEST

/* Same seed: same bytes for any thread count; a tensor's bytes depend on
 * its name and the seed only. */
START_TEST(test_determinism)
{
    /* Matrices above the 65536-element threshold, so threads do split rows. */
    qe_synth_config c = small(256, 2, 4, 2, 512, 400);
    write_model(&c, QE_DT_Q4_0, 9, 1, tmp_path("t1.gguf"));
    write_model(&c, QE_DT_Q4_0, 9, 3, tmp_path("t3.gguf"));
    write_model(&c, QE_DT_Q4_0, 9, 64, tmp_path("t64.gguf"));
    write_model(&c, QE_DT_Q4_0, 10, 3, tmp_path("s10.gguf"));
    ck_assert(files_equal(tmp_path("t1.gguf"), tmp_path("t3.gguf")));
    ck_assert(files_equal(tmp_path("t1.gguf"), tmp_path("t64.gguf")));
    ck_assert(!files_equal(tmp_path("t1.gguf"), tmp_path("s10.gguf")));

    /* One more layer: layer 0's tensors keep their bytes. */
    qe_synth_config d = c;
    d.n_layers = 3;
    write_model(&d, QE_DT_Q4_0, 9, 2, tmp_path("l3.gguf"));
    qe_gguf *g2 = NULL, *g3 = NULL, *g10 = NULL;
    ck_assert_int_eq(qe_gguf_open(tmp_path("t1.gguf"), &g2), QE_OK);
    ck_assert_int_eq(qe_gguf_open(tmp_path("l3.gguf"), &g3), QE_OK);
    ck_assert_int_eq(qe_gguf_open(tmp_path("s10.gguf"), &g10), QE_OK);
    const qe_gguf_tensor *a = qe_gguf_find_tensor(g2, "blk.0.ffn_up.weight"),
                         *b = qe_gguf_find_tensor(g3, "blk.0.ffn_up.weight"),
                         *e = qe_gguf_find_tensor(g10, "blk.0.ffn_up.weight"),
                         *q = qe_gguf_find_tensor(g2, "blk.0.ffn_gate.weight");
    ck_assert(a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0);
    ck_assert(memcmp(a->data, e->data, a->nbytes) != 0);
    ck_assert(memcmp(a->data, q->data, a->nbytes) != 0); /* same shape, other name */
    qe_gguf_close(g2);
    qe_gguf_close(g3);
    qe_gguf_close(g10);

    /* A row's values do not depend on how the writer cuts the tensor: a
     * 20 MB f32 embedding comes in two 16 MiB runs, its Q8_0 twin in one;
     * row 17000 (past the first run) must hold the same values. */
    qe_synth_config big = small(256, 1, 4, 2, 64, 20000);
    write_model(&big, QE_DT_F32, 4, 2, tmp_path("e32.gguf"));
    write_model(&big, QE_DT_Q8_0, 4, 2, tmp_path("e8.gguf"));
    qe_model *m32 = NULL, *m8 = NULL;
    ck_assert_int_eq(qe_model_open(tmp_path("e32.gguf"), &m32), QE_OK);
    ck_assert_int_eq(qe_model_open(tmp_path("e8.gguf"), &m8), QE_OK);
    const qe_tensor *t32 = &qe_model_weights(m32)->token_embd, *t8 = &qe_model_weights(m8)->token_embd;
    ck_assert_uint_gt(t32->nbytes, QE_GGUF_FILL_CHUNK);
    ck_assert_uint_lt(t8->nbytes, QE_GGUF_FILL_CHUNK);
    float x[256];
    unsigned char q8[8 * 34];
    for (int64_t r = 16383; r <= 17000; r += 617) {
        qe_tensor_row_f32(t32, r, x);
        qe_quant_quantize_row(QE_DT_Q8_0, x, 256, q8);
        ck_assert(memcmp(q8, (const unsigned char *)t8->data + r * t8->row_bytes, sizeof q8) == 0);
    }
    qe_model_close(m32);
    qe_model_close(m8);
}
END_TEST

/* Every format: opens, and holds the f32 file's values encoded as the
 * format says. */
START_TEST(test_formats)
{
    qe_synth_config c = small(64, 2, 4, 4, 96, 320);
    static const qe_dtype types[4] = {QE_DT_F32, QE_DT_F16, QE_DT_Q8_0, QE_DT_Q4_0};
    qe_model *m[4] = {0};
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.gguf", k);
        write_model(&c, types[k], 3, 2, tmp_path(name));
        ck_assert_int_eq(qe_model_open(tmp_path(name), &m[k]), QE_OK);
        uint32_t ft;
        ck_assert_int_eq(qe_gguf_get_u32(qe_model_gguf(m[k]), "general.file_type", &ft), QE_OK);
        static const uint32_t ftype[4] = {0, 1, 7, 2}; /* llama.cpp's numbers */
        ck_assert_uint_eq(ft, ftype[k]);
    }
    const qe_weights *w[4];
    for (int k = 0; k < 4; k++)
        w[k] = qe_model_weights(m[k]);
    ck_assert_int_eq(w[1]->layers[0].wq.type, QE_DT_F16);
    ck_assert_int_eq(w[2]->layers[0].wq.type, QE_DT_Q8_0);
    ck_assert_int_eq(w[3]->layers[0].wq.type, QE_DT_Q4_0);
    ck_assert_int_eq(w[3]->token_embd.type, QE_DT_Q8_0);
    ck_assert_int_eq(w[3]->layers[0].w_down.type, QE_DT_Q4_0); /* 96 = 3 blocks */
    ck_assert_int_eq(w[3]->layers[0].ffn_norm.type, QE_DT_F32);

    const qe_tensor *t[4];
    for (int k = 0; k < 4; k++)
        t[k] = &w[k]->layers[1].w_gate;
    int64_t n = t[0]->ne[0];
    float x[64], y[64];
    double err8 = 0, err4 = 0, ref = 0;
    for (int64_t r = 0; r < t[0]->ne[1]; r++) {
        qe_tensor_row_f32(t[0], r, x);
        /* f16: exactly the rounding of the f32 values. */
        const unsigned char *h = (const unsigned char *)t[1]->data + r * t[1]->row_bytes;
        for (int64_t i = 0; i < n; i++) {
            uint16_t bits = (uint16_t)(h[2 * i] | h[2 * i + 1] << 8);
            ck_assert_uint_eq(bits, qe_f32_to_f16(x[i]));
        }
        /* Q8_0 / Q4_0: each element within half a step (plus the f16
         * rounding of the scale) of its block's maximum / 127 or / 8. */
        for (int k = 2; k < 4; k++) {
            qe_tensor_row_f32(t[k], r, y);
            for (int64_t b0 = 0; b0 < n; b0 += 32) {
                double amax = 0;
                for (int i = 0; i < 32; i++)
                    amax = fmax(amax, fabs(x[b0 + i]));
                double step = amax / (k == 2 ? 127.0 : 8.0);
                for (int i = 0; i < 32; i++) {
                    double e = fabs((double)x[b0 + i] - y[b0 + i]);
                    ck_assert_double_le(e, step * (k == 2 ? 0.51 : 1.01) + amax * 1e-3);
                    *(k == 2 ? &err8 : &err4) += e * e;
                }
            }
        }
        for (int64_t i = 0; i < n; i++)
            ref += (double)x[i] * x[i];
    }
    ck_assert_double_lt(sqrt(err8 / ref), 0.02);
    ck_assert_double_lt(sqrt(err4 / ref), 0.2);
    ck_assert_double_gt(err4, err8);
    for (int k = 0; k < 4; k++)
        qe_model_close(m[k]);
}
END_TEST

/* Next-token entropy of the reference forward after each of 16 tokens. */
static void check_logits(const char *path)
{
    qe_model *m = NULL;
    qe_ref *r = NULL;
    ck_assert_int_eq(qe_model_open(path, &m), QE_OK);
    const qe_hparams *hp = qe_model_hparams(m);
    ck_assert_int_eq(qe_ref_new(m, 16, &r), QE_OK);
    double *lg = malloc((size_t)hp->n_vocab * sizeof *lg);
    int tok = 1;
    for (int pos = 0; pos < 16; pos++) {
        ck_assert_int_eq(qe_ref_step(r, tok, pos, lg), QE_OK);
        double mx = -INFINITY, z = 0, h = 0;
        for (int i = 0; i < hp->n_vocab; i++) {
            ck_assert_msg(isfinite(lg[i]), "logit %d at position %d is %g", i, pos, lg[i]);
            mx = fmax(mx, lg[i]);
        }
        for (int i = 0; i < hp->n_vocab; i++)
            z += exp(lg[i] - mx);
        double lz = mx + log(z), pmax = exp(mx - lz);
        for (int i = 0; i < hp->n_vocab; i++) {
            double lp = lg[i] - lz;
            h -= exp(lp) * lp;
        }
        double frac = h / log((double)hp->n_vocab);
        ck_assert_msg(frac > 0.10 && frac < 0.99, "%s: position %d: entropy %.3f = %.1f%% of log V",
                      path, pos, h, 100 * frac);
        ck_assert_double_lt(pmax, 0.99);
        tok = (tok * 7919 + 13) % hp->n_vocab;
    }
    free(lg);
    qe_ref_free(r);
    qe_model_close(m);
}

START_TEST(test_reference_logits)
{
    qe_synth_config a;
    ck_assert_int_eq(qe_synth_find("stories260k", &a), QE_OK);
    write_model(&a, QE_DT_F32, QE_SYNTH_DEFAULT_SEED, 2, tmp_path("s.gguf"));
    check_logits(tmp_path("s.gguf"));
    /* Deep and wide-vocabulary: 24 layers, 8192 tokens, q8_0. */
    qe_synth_config d = small(64, 24, 4, 2, 128, 8192);
    write_model(&d, QE_DT_Q8_0, 1, 2, tmp_path("d.gguf"));
    check_logits(tmp_path("d.gguf"));
}
END_TEST

START_TEST(test_tokenizer)
{
    qe_synth_config c = small(64, 1, 2, 1, 64, 20000);
    write_model(&c, QE_DT_F16, 1, 2, tmp_path("v.gguf"));
    qe_tokenizer *t = NULL;
    ck_assert_int_eq(qe_tokenizer_open(tmp_path("v.gguf"), &t), QE_OK);
    ck_assert_uint_eq(qe_tokenizer_n_vocab(t), 20000);
    ck_assert_str_eq(qe_tokenizer_kind_name(t), "spm");
    ck_assert_int_eq(qe_tokenizer_bos(t), 1);
    ck_assert_int_eq(qe_tokenizer_eos(t), 2);
    ck_assert_int_eq(qe_tokenizer_unk(t), 0);
    ck_assert_int_eq(qe_tokenizer_add_bos(t), 1);
    ck_assert_int_eq(qe_tokenizer_attr_of(t, 3 + 0x41), QE_TOKATTR_BYTE);

    /* The documented ids: "▁" 259, "!" 260, "~" 353, "▁a" 354, "aa" 380,
     * "▁aa" 1056; the last piece of a 20000 vocabulary is "▁bap" (19999 -
     * 19308 = 691 = 1*26^2 + 0*26 + 15 into the "▁"+3-letter group, which
     * follows 259 + 95 + (26 + 676) + (676 + 17576) = 19308 pieces). */
    static const struct { const char *s; int32_t id; } ids[] = {
        {"\xe2\x96\x81", 259}, {"!", 260}, {"~", 353}, {"\xe2\x96\x81" "a", 354},
        {"aa", 380}, {"\xe2\x96\x81" "aa", 1056}, {"\xe2\x96\x81" "bap", 19999},
        {"<0x0A>", 13}, {"<s>", 1}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ck_assert_int_eq(qe_tokenizer_find(t, ids[i].s, strlen(ids[i].s)), ids[i].id);

    qe_tokenizer_ids out = {0};
    const char *abc = "a b c";
    ck_assert_int_eq(qe_tokenizer_encode(t, abc, strlen(abc), QE_TOK_ADD_SPECIAL, &out), QE_OK);
    ck_assert_uint_eq(out.n, 4);
    ck_assert_int_eq(out.v[0], 1);
    ck_assert_int_eq(out.v[1], 354);
    ck_assert_int_eq(out.v[2], 355);
    ck_assert_int_eq(out.v[3], 356);
    qe_tokenizer_ids_free(&out);

    /* Every printable ASCII character, tabs and newlines round-trip, and
     * merges make words shorter than their letters. */
    char text[512];
    size_t n = 0;
    for (int ch = 0x20; ch < 0x7f; ch++)
        text[n++] = (char)ch;
    n += (size_t)snprintf(text + n, sizeof text - n,
                          "\n\tthe quick brown fox jumps over the lazy dog\r\n");
    ck_assert_int_eq(qe_tokenizer_encode(t, text, n, 0, &out), QE_OK);
    ck_assert_uint_lt(out.n, n);
    char *back = NULL;
    size_t blen = 0;
    ck_assert_int_eq(qe_tokenizer_decode(t, out.v, out.n, 0, &back, &blen), QE_OK);
    ck_assert_uint_eq(blen, n);
    ck_assert(memcmp(back, text, n) == 0);
    free(back);
    qe_tokenizer_ids_free(&out);
    qe_tokenizer_close(t);

    /* The smallest vocabulary: specials, bytes and "▁", still lossless. */
    c.n_vocab = QE_SYNTH_MIN_VOCAB;
    ck_assert_int_eq(c.n_vocab, 260);
    write_model(&c, QE_DT_F16, 1, 1, tmp_path("min.gguf"));
    ck_assert_int_eq(qe_tokenizer_open(tmp_path("min.gguf"), &t), QE_OK);
    const char *hi = "Hi there\n";
    ck_assert_int_eq(qe_tokenizer_encode(t, hi, strlen(hi), 0, &out), QE_OK);
    /* A byte token each, and "▁" for the dummy prefix and the space. */
    ck_assert_uint_eq(out.n, strlen(hi) + 1);
    ck_assert_int_eq(out.v[0], 259);
    ck_assert_int_eq(out.v[1], 3 + 'H');
    ck_assert_int_eq(qe_tokenizer_decode(t, out.v, out.n, 0, &back, &blen), QE_OK);
    ck_assert_str_eq(back, hi);
    free(back);
    qe_tokenizer_ids_free(&out);
    qe_tokenizer_close(t);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limits)
{
    qe_synth_config c, base;
    ck_assert_int_eq(qe_synth_find("stories260k", &base), QE_OK);
    /* Unknown names list the known ones. */
    ck_assert_int_eq(qe_synth_find("llama-9000", &c), QE_EINVAL);
    for (size_t i = 0; i < qe_synth_arch_count(); i++)
        ck_assert_ptr_nonnull(strstr(qe_errmsg(), qe_synth_arch(i)->name));
    ck_assert_int_eq(qe_synth_find(NULL, &c), QE_EINVAL);

    static const struct {
        int32_t dim, heads, kv, hd, layers, ff, vocab;
        const char *msg;
    } bad[] = {
        {96, 5, 1, 0, 1, 64, 300, "do not divide dim"},
        {96, 6, 4, 0, 1, 64, 300, "kv heads do not divide"},
        {96, 6, 2, 15, 1, 64, 300, "is odd"},
        {90, 6, 2, 0, 1, 64, 300, "is odd"},              /* 90 / 6 = 15 */
        {(1 << 20) + 1, 1, 1, 0, 1, 64, 300, "dim"},
        {64, 1024, 1, 2048, 1, 64, 300, "exceeds"},       /* 2^21 > 2^20 */
        {64, 2, 1, 0, 4097, 64, 300, "layers"},
        {64, 2, 1, 0, 1, 0, 300, "ffn"},
        {64, 2, 1, 0, 1, 64, 259, "vocab"},
        {64, 2, 1, 0, 1, 64, (1 << 24) + 1, "vocab"},
        {64, 0, 1, 0, 1, 64, 300, "heads"},
        {64, 2, 1, -2, 1, 64, 300, "head dim"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = base;
        c.dim = bad[i].dim, c.n_heads = bad[i].heads, c.n_kv_heads = bad[i].kv;
        c.head_dim = bad[i].hd, c.n_layers = bad[i].layers, c.n_ff = bad[i].ff;
        c.n_vocab = bad[i].vocab;
        qe_synth *s = (qe_synth *)1;
        ck_assert_msg(qe_synth_new(&c, QE_DT_F16, 1, &s) == QE_EINVAL, "case %zu", i);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(qe_errmsg(), bad[i].msg), "case %zu: '%s'", i, qe_errmsg());
    }
    c = base;
    c.rope_base = 1.0;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);
    c = base;
    c.rms_eps = NAN;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);
    c = base;
    c.rope_factor = 8.0, c.rope_low_freq = 4.0, c.rope_high_freq = 1.0, c.rope_orig_ctx = 8192;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);
    c.n_ctx = 0;
    ck_assert_int_eq(qe_synth_check(&c), QE_EINVAL);

    /* Weight types synth cannot write. */
    qe_synth *s = NULL;
    ck_assert_int_eq(qe_synth_new(&base, QE_DT_Q4_1, 1, &s), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "q4_1"));

    /* Unwritable output: EIO naming the path, nothing left behind. */
    ck_assert_int_eq(qe_synth_new(&base, QE_DT_F16, 1, &s), QE_OK);
    ck_assert_int_eq(qe_synth_write(s, "/nonexistent-dir/x.gguf", 2), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent-dir/x.gguf"));
    char *dir = qe_test_tmpdir();
    char p[4200];
    snprintf(p, sizeof p, "%s/sub", dir);
    ck_assert_int_eq(mkdir(p, 0555), 0);
    snprintf(p, sizeof p, "%s/sub/x.gguf", dir);
    if (access(p, W_OK) != 0 && geteuid() != 0) /* root writes anywhere */
        ck_assert_int_eq(qe_synth_write(s, p, 2), QE_EIO);
    snprintf(p, sizeof p, "%s", dir); /* a directory is no file */
    ck_assert_int_eq(qe_synth_write(s, p, 2), QE_EIO);
    qe_synth_free(s);
    qe_synth_free(NULL);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

Suite *synth_suite(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_table_published);
    tcase_add_test(tc, test_plan_llama32_1b);
    tcase_add_test(tc, test_plan_other_archs);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_open_hparams);
    tcase_add_test(tc, test_rope_freqs);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_formats);
    tcase_add_test(tc, test_reference_logits);
    tcase_add_test(tc, test_tokenizer);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
