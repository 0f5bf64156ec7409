/* check_model.c - loading Llama models from GGUF and HF directories.
 * Expected values come from MANIFEST.md, config.json, the published
 * SHA256SUMS and the shapes the manifest lists - never from the loader. */
#define _DEFAULT_SOURCE /* symlink */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "model.h"
#include "testutil.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return b;
}

static char *find(char *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

static void published(const char *rel, char hex[65])
{
    size_t n;
    char *sums = slurp(qe_test_data("SHA256SUMS"), &n);
    char *at = strstr(sums, rel);
    ck_assert_msg(at && at - sums >= 66, "%s not in SHA256SUMS", rel);
    memcpy(hex, at - 66, 64);
    hex[64] = '\0';
    free(sums);
}

static void check_sha(const qe_model *m, const char *rel)
{
    char want[65], got[65];
    uint8_t d[32];
    published(rel, want);
    ck_assert_msg(qe_model_sha256(m, d) == QE_OK, "%s", qe_errmsg());
    qe_hash_hex(d, 32, got);
    ck_assert_str_eq(got, want);
}

START_TEST(test_hf_tinystories)
{
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(qe_test_data("models/TinyStories-656K"), &m) == QE_OK, "%s",
                  qe_errmsg());
    const qe_hparams *hp = qe_model_hparams(m);
    /* config.json: hidden 128, 2 layers, 8/4 heads, FFN 384, context 512,
     * vocab 2048, rms_norm_eps 1e-6, rope_theta 10000, tied, bos 1, eos 2. */
    ck_assert_int_eq(hp->n_vocab, 2048);
    ck_assert_int_eq(hp->dim, 128);
    ck_assert_int_eq(hp->n_layers, 2);
    ck_assert_int_eq(hp->n_heads, 8);
    ck_assert_int_eq(hp->n_kv_heads, 4);
    ck_assert_int_eq(hp->head_dim, 16);
    ck_assert_int_eq(hp->n_rot, 16);
    ck_assert_int_eq(hp->n_ff, 384);
    ck_assert_int_eq(hp->n_ctx_train, 512);
    ck_assert(hp->rms_eps == 1e-6f);
    ck_assert(hp->rope_base == 10000.0f);
    ck_assert_int_eq(hp->rope_layout, QE_ROPE_HALVES);
    ck_assert_int_eq(hp->rope_scaling, QE_ROPE_SCALING_NONE);
    ck_assert(hp->rope_freq_scale == 1.0f);
    ck_assert_int_eq(hp->tied, 1);
    ck_assert_int_eq(hp->bos_id, 1);
    ck_assert_int_eq(hp->eos_id, 2);
    ck_assert_int_eq(qe_model_format_of(m), QE_MODEL_HF);
    ck_assert_str_eq(qe_model_name(m), "TinyStories-656K");
    ck_assert_ptr_null(qe_model_gguf(m));
    /* "656K params", counting the tied matrix once. */
    ck_assert_uint_eq(qe_model_n_params(m), 656000);
    ck_assert_uint_eq(qe_model_weight_bytes(m), 656000 * 4);
    const qe_weights *w = qe_model_weights(m);
    ck_assert_ptr_eq(w->output.data, w->token_embd.data);
    ck_assert_ptr_null(w->rope_freqs.data);
    ck_assert_int_eq(w->layers[1].w_down.ne[0], 384);
    ck_assert_int_eq(w->layers[1].w_down.ne[1], 128);
    ck_assert_int_eq(w->layers[0].wk.ne[1], 64);
    ck_assert_int_eq(w->layers[0].wk.type, QE_DT_F32);
    ck_assert_str_eq(w->layers[0].wq.name, "model.layers.0.self_attn.q_proj.weight");
    /* Row 5 of q_proj is floats 5*128 .. 6*128 of that tensor. */
    float row[128], first;
    qe_tensor_row_f32(&w->layers[0].wq, 5, row);
    memcpy(&first, (const char *)w->layers[0].wq.data + 5 * 128 * 4, 4);
    ck_assert(row[0] == first);
    check_sha(m, "models/TinyStories-656K/model.safetensors");
    /* The weights file's path opens the same model. */
    qe_model *m2 = NULL;
    ck_assert_msg(qe_model_open(qe_test_data("models/TinyStories-656K/model.safetensors"), &m2) ==
                      QE_OK,
                  "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_hparams(m2)->n_ff, 384);
    ck_assert_str_eq(qe_model_name(m2), "TinyStories-656K");
    check_sha(m2, "models/TinyStories-656K/model.safetensors");
    qe_model_close(m2);
    char desc[1024];
    qe_model_describe(m, desc, sizeof desc);
    ck_assert_ptr_nonnull(strstr(desc, "TinyStories-656K"));
    ck_assert_ptr_nonnull(strstr(desc, "halves"));
    qe_model_describe(m, desc, 8); /* truncates, stays terminated */
    ck_assert_uint_eq(strlen(desc), 7);
    qe_model_close(m);
}
END_TEST

START_TEST(test_gguf_stories)
{
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(qe_test_data("models/stories260K.gguf"), &m) == QE_OK, "%s",
                  qe_errmsg());
    const qe_hparams *hp = qe_model_hparams(m);
    /* MANIFEST.md: 5 layers, dim 64, FFN 172, 8/4 heads, context 2048, vocab
     * 512, BOS 1, EOS 2, output.weight equal to the embedding. */
    ck_assert_int_eq(hp->n_vocab, 512);
    ck_assert_int_eq(hp->dim, 64);
    ck_assert_int_eq(hp->n_layers, 5);
    ck_assert_int_eq(hp->n_heads, 8);
    ck_assert_int_eq(hp->n_kv_heads, 4);
    ck_assert_int_eq(hp->head_dim, 8);
    ck_assert_int_eq(hp->n_rot, 8);
    ck_assert_int_eq(hp->n_ff, 172);
    ck_assert_int_eq(hp->n_ctx_train, 2048);
    ck_assert_int_eq(hp->bos_id, 1);
    ck_assert_int_eq(hp->eos_id, 2);
    ck_assert_int_eq(hp->rope_layout, QE_ROPE_PAIRS);
    ck_assert(hp->rope_base == 10000.0f); /* the file has no freq_base: llama's default */
    ck_assert(fabsf(hp->rms_eps - 1e-5f) < 1e-9f);
    ck_assert_int_eq(hp->tied, 1);
    ck_assert_int_eq(qe_model_format_of(m), QE_MODEL_GGUF);
    ck_assert_ptr_nonnull(qe_model_gguf(m));
    ck_assert_str_eq(qe_model_name(m), "stories260K");
    /* Parameters from the manifest's shapes, the shared matrix once: 260K. */
    uint64_t per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172 + 2 * 64;
    ck_assert_uint_eq(qe_model_n_params(m), 512 * 64 + 64 + 5 * per_layer);
    const qe_weights *w = qe_model_weights(m);
    ck_assert_str_eq(w->layers[4].w_down.name, "blk.4.ffn_down.weight");
    ck_assert_int_eq(w->layers[4].w_down.ne[0], 172);
    ck_assert_int_eq(w->layers[4].w_down.ne[1], 64);
    check_sha(m, "models/stories260K.gguf");
    qe_model_close(m);
}
END_TEST

/* A copy of stories260K.gguf with `from` replaced by `to` (same length)
 * right after the key `key`; returns the temp file path. */
static char *gguf_patch(const char *dir, const char *key, const void *from, const void *to,
                        size_t n)
{
    size_t len;
    char *b = slurp(qe_test_data("models/stories260K.gguf"), &len);
    char *k = find(b, len, key, strlen(key));
    ck_assert_ptr_nonnull(k);
    char *v = find(k, len - (size_t)(k - b), from, n);
    ck_assert_msg(v && v - k < 64, "value after %s not found", key);
    memcpy(v, to, n);
    char *p = qe_test_write(dir, "patched.gguf", b, len);
    free(b);
    return p;
}

/* A directory with config.json = the real one with `from` replaced by `to`
 * and a symlink to the real model.safetensors (with_weights). */
static char *hf_variant(const char *from, const char *to, int with_weights)
{
    char *dir = qe_test_tmpdir();
    size_t len;
    char *cfg = slurp(qe_test_data("models/TinyStories-656K/config.json"), &len);
    char *at = strstr(cfg, from);
    ck_assert_msg(at != NULL, "'%s' not in config.json", from);
    size_t out_len = len - strlen(from) + strlen(to);
    char *out = malloc(out_len + 1);
    ck_assert_ptr_nonnull(out);
    size_t pre = (size_t)(at - cfg);
    memcpy(out, cfg, pre);
    strcpy(out + pre, to);
    strcpy(out + pre + strlen(to), at + strlen(from));
    free(qe_test_write(dir, "config.json", out, out_len));
    if (with_weights) {
        char link[4096];
        snprintf(link, sizeof link, "%s/model.safetensors", dir);
        char *target = realpath(qe_test_data("models/TinyStories-656K/model.safetensors"), NULL);
        ck_assert_ptr_nonnull(target);
        ck_assert_int_eq(symlink(target, link), 0);
        free(target);
    }
    free(cfg);
    free(out);
    return dir;
}

/* Open the variant and expect status `want` with `phrase` in the message. */
static void hf_expect(const char *from, const char *to, qe_status want, const char *phrase)
{
    char *dir = hf_variant(from, to, 1);
    qe_model *m = NULL;
    qe_status s = qe_model_open(dir, &m);
    ck_assert_msg(s == want, "%s -> %s: got %s (%s)", from, to, qe_status_str(s), qe_errmsg());
    ck_assert_msg(strstr(qe_errmsg(), phrase), "message '%s' lacks '%s'", qe_errmsg(), phrase);
    ck_assert_ptr_null(m);
    qe_test_rmtree(dir);
    free(dir);
}

START_TEST(test_unknown_arch)
{
    char *dir = qe_test_tmpdir();
    char *p = gguf_patch(dir, "general.architecture", "llama", "mamba", 5);
    qe_model *m = NULL;
    ck_assert_int_eq(qe_model_open(p, &m), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "\"mamba\""));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "patched.gguf"));
    free(p);
    qe_test_rmtree(dir);
    free(dir);
    hf_expect("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", QE_EUNSUPPORTED, "\"gpt2\"");
    /* A real file of another architecture (a vocabulary-only phi-3 GGUF). */
    ck_assert_int_eq(qe_model_open(qe_test_data("vocab/ggml-vocab-phi-3.gguf"), &m), QE_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "\"phi3\""));
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_shape_mismatch)
{
    char *dir = qe_test_tmpdir();
    uint32_t from = 172, to = 171;
    char *p = gguf_patch(dir, "llama.feed_forward_length", &from, &to, 4);
    qe_model *m = NULL;
    ck_assert_int_eq(qe_model_open(p, &m), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "blk.0.ffn_gate.weight"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "expected shape {64, 171}"));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "found {64, 172}"));
    free(p);
    qe_test_rmtree(dir);
    free(dir);
    hf_expect("\"intermediate_size\": 384", "\"intermediate_size\": 383", QE_ECORRUPT,
              "model.layers.0.mlp.gate_proj.weight: expected shape {128, 383}, found {128, 384}");
    hf_expect("\"vocab_size\": 2048", "\"vocab_size\": 2049", QE_ECORRUPT,
              "lm_head.weight: expected shape {128, 2049}");
    /* 4 kv heads of 16 -> 8 kv heads: k_proj has 64 rows, 128 expected. */
    hf_expect("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 8", QE_ECORRUPT,
              "k_proj.weight: expected shape {128, 128}, found {128, 64}");
}
END_TEST

START_TEST(test_rope_scaling)
{
    char *dir = hf_variant("\"rope_scaling\": null",
                           "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}", 1);
    qe_model *m = NULL;
    ck_assert_msg(qe_model_open(dir, &m) == QE_OK, "%s", qe_errmsg());
    ck_assert_int_eq(qe_model_hparams(m)->rope_scaling, QE_ROPE_SCALING_LINEAR);
    ck_assert(qe_model_hparams(m)->rope_factor == 4.0f);
    ck_assert(qe_model_hparams(m)->rope_freq_scale == 0.25f);
    qe_model_close(m);
    qe_test_rmtree(dir);
    free(dir);
    /* llama3: wavelengths 2*pi*10000^(2i/16). Below 8192/4 (i = 0) the
     * divisor is 1; above 8192/1 (i = 7: 19869) it is the factor 8. */
    dir = hf_variant("\"rope_scaling\": null",
                     "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                     "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                     "\"original_max_position_embeddings\": 8192}",
                     1);
    ck_assert_msg(qe_model_open(dir, &m) == QE_OK, "%s", qe_errmsg());
    const qe_weights *w = qe_model_weights(m);
    ck_assert_int_eq(qe_model_hparams(m)->rope_scaling, QE_ROPE_SCALING_LLAMA3);
    ck_assert(qe_model_hparams(m)->rope_freq_scale == 1.0f);
    ck_assert_int_eq(w->rope_freqs.ne[0], 8);
    float f[8];
    qe_tensor_row_f32(&w->rope_freqs, 0, f);
    ck_assert(f[0] == 1.0f);
    ck_assert(f[7] == 8.0f);
    for (int i = 1; i < 8; i++)
        ck_assert(f[i] >= f[i - 1]);
    qe_model_close(m);
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_limits_files)
{
    qe_model *m = NULL;
    ck_assert_int_eq(qe_model_open("/nonexistent/model.gguf", &m), QE_EIO);
    ck_assert_ptr_null(m);
    char *dir = qe_test_tmpdir();
    ck_assert_int_eq(qe_model_open(dir, &m), QE_EIO); /* no config.json */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "config.json"));
    char *p = qe_test_write(dir, "config.json", "{\"model_type\": ", 15);
    ck_assert_int_eq(qe_model_open(dir, &m), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "invalid JSON"));
    free(p);
    p = qe_test_write(dir, "config.json", "[]", 2);
    ck_assert_int_eq(qe_model_open(dir, &m), QE_ECORRUPT);
    free(p);
    /* A text file is not a GGUF file. */
    p = qe_test_write(dir, "x.gguf", "hello, world", 12);
    ck_assert_int_ne(qe_model_open(p, &m), QE_OK);
    ck_assert_ptr_null(m);
    free(p);
    qe_test_rmtree(dir);
    free(dir);
    /* Config without weights. */
    dir = hf_variant("\"hidden_size\": 128", "\"hidden_size\": 128", 0);
    ck_assert_int_eq(qe_model_open(dir, &m), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "model.safetensors"));
    qe_test_rmtree(dir);
    free(dir);
    qe_model_close(NULL);
}
END_TEST

START_TEST(test_limits_config)
{
    hf_expect("\"hidden_size\": 128,", "", QE_ECORRUPT, "\"hidden_size\" is missing");
    hf_expect("\"hidden_size\": 128", "\"hidden_size\": \"128\"", QE_ECORRUPT,
              "\"hidden_size\" must be an integer");
    hf_expect("\"hidden_size\": 128", "\"hidden_size\": -128", QE_ECORRUPT, "\"hidden_size\"");
    hf_expect("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", QE_ECORRUPT,
              "not a multiple of 3");
    hf_expect("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}",
              QE_EUNSUPPORTED, "\"yarn\"");
    hf_expect("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": -1}",
              QE_ECORRUPT, "rope_scaling.factor");
    hf_expect("\"attention_bias\": false", "\"attention_bias\": true", QE_EUNSUPPORTED, "biases");
    hf_expect("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", QE_EUNSUPPORTED, "silu");
    hf_expect("\"rope_theta\": 10000.0", "\"rope_theta\": 0.5", QE_ECORRUPT, "RoPE base");
    hf_expect("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1", QE_ECORRUPT, "epsilon");
    hf_expect("\"bos_token_id\": 1", "\"bos_token_id\": 4096", QE_ECORRUPT, "bos_id");
    hf_expect("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1", QE_ECORRUPT,
              "tie_word_embeddings");
    /* Untied, but the file only has lm_head: the embedding is missing. */
    hf_expect("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", QE_ECORRUPT,
              "model.embed_tokens.weight is missing");
    hf_expect("\"bos_token_id\": 1,", "\"bos_token_id\": 1, \"bos_token_id\": 1,", QE_ECORRUPT,
              "duplicate");
}
END_TEST

START_TEST(test_limits_build)
{
    /* qe_model_build applies the same checks to in-memory weights. */
    qe_model *src = NULL, *m = NULL;
    ck_assert_int_eq(qe_model_open(qe_test_data("models/TinyStories-656K"), &src), QE_OK);
    qe_hparams hp = *qe_model_hparams(src);
    qe_weights w = *qe_model_weights(src);
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_OK);
    ck_assert_uint_eq(qe_model_n_params(m), qe_model_n_params(src));
    uint8_t d[32];
    ck_assert_int_eq(qe_model_sha256(m, d), QE_EINVAL);
    qe_model_close(m);

    qe_layer layers[2];
    memcpy(layers, w.layers, sizeof layers);
    w.layers = layers;
    layers[1].wo.data = NULL;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "model.layers.1.self_attn.o_proj.weight is missing"));
    ck_assert_ptr_null(m);
    layers[1].wo = layers[1].wq; /* same shape: fine */
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_OK);
    qe_model_close(m);
    layers[1].wo = layers[1].wk; /* 64 rows, not 128 */
    layers[1].wo.name = NULL;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "(layer 1 attn_output): expected shape {128, 128}"));
    layers[1].wo = layers[1].wq;
    /* tied, but output views a copy rather than the embedding itself */
    hp.tied = 1;
    void *copy = malloc(w.token_embd.nbytes);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, w.token_embd.data, w.token_embd.nbytes);
    w.output.data = copy;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "tied"));
    hp.tied = 0;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_OK);
    qe_model_close(m);
    free(copy);
    w.output = w.token_embd;
    hp.n_rot = 15;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "odd"));
    hp.n_rot = 16;
    hp.n_kv_heads = 0;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_ECORRUPT);
    hp.n_kv_heads = 4;
    hp.rope_freq_scale = 0;
    ck_assert_int_eq(qe_model_build(&hp, &w, "copy", &m), QE_ECORRUPT);
    ck_assert_ptr_null(m);
    qe_model_close(src);
}
END_TEST

Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("load");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_hf_tinystories);
    tcase_add_test(tc, test_gguf_stories);
    tcase_add_test(tc, test_rope_scaling);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 30);
    tcase_add_test(lim, test_unknown_arch);
    tcase_add_test(lim, test_shape_mismatch);
    tcase_add_test(lim, test_limits_files);
    tcase_add_test(lim, test_limits_config);
    tcase_add_test(lim, test_limits_build);
    suite_add_tcase(s, lim);
    return s;
}
