/* fuzz_model.c - libFuzzer harness for models past the file readers (`make
 * fuzz`): hostile hyper-parameters and tensor shapes in files that the GGUF
 * and safetensors readers themselves accept.
 *
 * Structure-aware, two modes chosen by the first byte of an input:
 *   even  the image is stories260K.gguf (QEVAL_DATA, default ../shared/data)
 *         and the rest is a list of 6-byte edits: byte 0 even sets one of the
 *         file's 32-bit llama.* / tokenizer.ggml.* values (byte 1 picks which,
 *         bytes 2..5 are the new bits), odd one of its tensors' dimensions
 *         (byte 1 picks which, bytes 2..5 the new value); the edited image is
 *         written to a file;
 *   odd   the rest is a config.json, written into a Hugging Face directory
 *         beside (a link to) TinyStories-656K's model.safetensors.
 * The file or directory is opened by qe_model_open. A rejected model must
 * carry a one-line message naming it; an accepted one must keep model.h's
 * promises: positive sizes, n_kv_heads dividing n_heads, an even n_rot <=
 * head_dim, every tensor's shape as the hyper-parameters say, bos / eos
 * inside the vocabulary or -1; and qe_ref must run two tokens through it.
 * Broken promises trap, so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "gguf.h"
#include "model.h"
#include "ref.h"

static uint8_t *image;
static size_t image_len;
static char path[4096], hf_dir[4000], hf_config[4096];
static size_t kv_off[64], n_kv;     /* where each 32-bit llama.* value lies */
static size_t dim_off[512], n_dims; /* where each tensor dimension (u64) lies */

/* The offset just past the one occurrence of u64 len + s in the image. */
static size_t after(const char *s)
{
    const size_t n = strlen(s);
    for (size_t i = 0; i + 8 + n <= image_len; i++) {
        uint64_t len;
        memcpy(&len, image + i, 8);
        if (len == n && memcmp(image + i + 8, s, n) == 0)
            return i + 8 + n;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char src[4096];
    snprintf(src, sizeof src, "%s/models/stories260K.gguf", fuzz_data());
    qe_gguf *g = NULL;
    if (qe_gguf_open(src, &g) != QE_OK) {
        fprintf(stderr, "fuzz_model: %s\n", qe_errmsg());
        exit(1);
    }
    /* the reader's own image of the file, copied: every input edits a copy */
    image_len = (size_t)qe_gguf_file_size(g);
    image = malloc(image_len);
    CHECK(image != NULL);
    memcpy(image, qe_gguf_base(g), image_len);
    for (uint64_t i = 0; i < qe_gguf_n_kv(g) && n_kv < 64; i++) {
        const qe_gguf_type t = qe_gguf_kv_type(g, i);
        const char *k = qe_gguf_kv_key(g, i);
        if ((t == QE_GGUF_UINT32 || t == QE_GGUF_INT32 || t == QE_GGUF_FLOAT32) &&
            (strncmp(k, "llama.", 6) == 0 || strncmp(k, "tokenizer.ggml.", 15) == 0)) {
            const size_t a = after(k);
            if (a)
                kv_off[n_kv++] = a + 4; /* past the u32 type */
        }
    }
    for (uint64_t i = 0; i < qe_gguf_n_tensors(g); i++) {
        const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
        const size_t a = after(t->name);
        for (uint32_t d = 0; a && d < t->n_dims && n_dims < 512; d++)
            dim_off[n_dims++] = a + 4 + 8 * d; /* past the u32 n_dims */
    }
    qe_gguf_close(g);
    fuzz_tmp(path, sizeof path - 5, "model");
    strcat(path, ".gguf"); /* the name a model file has */
    fuzz_tmp(hf_dir, sizeof hf_dir, "hf");
    snprintf(hf_config, sizeof hf_config, "%s/config.json", hf_dir);
    char link[4096];
    snprintf(link, sizeof link, "%s/model.safetensors", hf_dir);
    snprintf(src, sizeof src, "%s/models/TinyStories-656K/model.safetensors", fuzz_data());
    if (mkdir(hf_dir, 0700) != 0 || symlink(src, link) != 0) {
        perror(hf_dir);
        exit(1);
    }
    return 0;
}

static void check_shape(const qe_tensor *t, int64_t ne0, int64_t ne1)
{
    CHECK(t->data != NULL && t->ne[0] == ne0 && t->ne[1] == ne1);
}

static void check_model(const qe_model *m)
{
    const qe_hparams *hp = qe_model_hparams(m);
    const qe_weights *w = qe_model_weights(m);
    CHECK(hp->dim >= 1 && hp->n_layers >= 1 && hp->n_heads >= 1 && hp->n_kv_heads >= 1);
    CHECK(hp->n_heads % hp->n_kv_heads == 0);
    CHECK(hp->head_dim >= 1 && hp->n_rot >= 0 && hp->n_rot % 2 == 0 && hp->n_rot <= hp->head_dim);
    CHECK(hp->n_ff >= 1 && hp->n_vocab >= 1);
    CHECK(hp->bos_id >= -1 && hp->bos_id < hp->n_vocab);
    CHECK(hp->eos_id >= -1 && hp->eos_id < hp->n_vocab);
    const int64_t q = (int64_t)hp->n_heads * hp->head_dim, kv = (int64_t)hp->n_kv_heads * hp->head_dim;
    check_shape(&w->token_embd, hp->dim, hp->n_vocab);
    check_shape(&w->output, hp->dim, hp->n_vocab);
    check_shape(&w->output_norm, hp->dim, 1);
    for (int l = 0; l < hp->n_layers; l++) {
        const qe_layer *L = &w->layers[l];
        check_shape(&L->attn_norm, hp->dim, 1);
        check_shape(&L->wq, hp->dim, q);
        check_shape(&L->wk, hp->dim, kv);
        check_shape(&L->wv, hp->dim, kv);
        check_shape(&L->wo, q, hp->dim);
        check_shape(&L->ffn_norm, hp->dim, 1);
        check_shape(&L->w_gate, hp->dim, hp->n_ff);
        check_shape(&L->w_up, hp->dim, hp->n_ff);
        check_shape(&L->w_down, hp->n_ff, hp->dim);
    }
    char desc[1024];
    qe_model_describe(m, desc, sizeof desc);
    /* two tokens through the double-precision reference */
    qe_ref *r = NULL;
    if (qe_ref_new(m, 4, &r) != QE_OK)
        return;
    double *logits = malloc(sizeof(double) * (size_t)hp->n_vocab);
    CHECK(logits != NULL);
    for (int pos = 0; pos < 2; pos++) {
        qe_status s = qe_ref_step(r, pos % hp->n_vocab, pos, logits);
        CHECK(s == QE_OK || s == QE_ECORRUPT || s == QE_EUNSUPPORTED || s == QE_ENOMEM);
    }
    free(logits);
    qe_ref_free(r);
}

static void open_and_check(const char *p)
{
    qe_model *m = NULL;
    qe_status s = qe_model_open(p, &m);
    if (s != QE_OK) {
        fuzz_rejected(s, m, p);
        return;
    }
    check_model(m);
    qe_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const int hf = data[0] % 2;
    data++, size--;
    if (hf) {
        fuzz_put(hf_config, data, size);
        open_and_check(hf_dir);
        return 0;
    }
    uint8_t *img = malloc(image_len);
    CHECK(img != NULL);
    memcpy(img, image, image_len);
    for (size_t i = 0; i + 6 <= size; i += 6) {
        uint32_t v;
        memcpy(&v, data + i + 2, 4);
        if (data[i] % 2 == 0 && n_kv) {
            memcpy(img + kv_off[data[i + 1] % n_kv], &v, 4);
        } else if (n_dims) {
            const uint64_t d = v;
            memcpy(img + dim_off[data[i + 1] % n_dims], &d, 8);
        }
    }
    fuzz_put(path, img, image_len);
    free(img);
    open_and_check(path);
    return 0;
}
