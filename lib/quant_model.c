/* quant_model.c - requantizing a model's weights at load, and writing the
 * result as a llama.cpp-compatible GGUF file (`qeval quantize`).
 *
 * The policy (which tensor gets which type) is qe_quant_weight_type, the only
 * place it lives; the conversion decodes each row to float through
 * qe_tensor_row_f32 and encodes it with qe_quant_quantize_row, one row at a
 * time, so any type qeval reads can be requantized to any target it writes.
 *
 * Threading: creation and writing belong to one thread; a finished
 * qe_quant_model is immutable. Creation converts each matrix's rows on
 * several threads at once (qe_quant_model_new_threads), each row by itself,
 * so the bytes are the same for any thread count. Workload: one pass over
 * the weights, memory for the converted matrices only. One thread took 14.8 s
 * for Llama-3.2-1B's 1.24 B f16 weights to q8_0 on the GPU machine's host,
 * longer than the wikitext-2 perplexity run that followed.
 */
#include "quant.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_write.h"
#include "pool.h"

#define QNT_VERSION 2 /* GGML_QNT_VERSION, written as general.quantization_version */

struct qe_quant_model {
    const qe_model *src; /* borrowed: names and unconverted tensors point into it */
    qe_dtype target;
    int n_threads;       /* converting threads; 0: qe_split_threads of each matrix */
    qe_model *model;     /* built over bufs[] and src's views */
    void **bufs;         /* [n_bufs] converted tensor data */
    int n_bufs;
    char *name;
};

int qe_quant_target_ok(qe_dtype t)
{
    return t == QE_DT_F32 || t == QE_DT_F16 || t == QE_DT_Q8_0 || t == QE_DT_Q4_0;
}

qe_dtype qe_quant_weight_type(qe_quant_role role, qe_dtype src, qe_dtype target, int64_t ne0)
{
    QE_ASSERT(qe_quant_target_ok(target));
    if (role == QE_QUANT_ROLE_OTHER)
        return src;
    qe_dtype t = target;
    if (target == QE_DT_Q4_0 && role == QE_QUANT_ROLE_OUTPUT)
        t = QE_DT_Q8_0;
    if (ne0 % (int64_t)qe_dtype_block(t) != 0)
        t = QE_DT_F16;
    return t;
}

uint32_t qe_quant_ftype(qe_dtype target)
{
    switch (target) {
    case QE_DT_F32: return 0;
    case QE_DT_F16: return 1;
    case QE_DT_Q4_0: return 2;
    case QE_DT_Q8_0: return 7;
    default: QE_ASSERT(!"qe_quant_ftype: not a requantization target"); return 0;
    }
}

/* A matrix being converted: rows [i0, i1) of it on one thread (qe_split). */
typedef struct {
    const qe_tensor *in;
    qe_dtype t;
    size_t rb;
    unsigned char *buf;
} qm_job;

static int qm_rows(void *ctx, int64_t i0, int64_t i1)
{
    const qm_job *j = ctx;
    float *row = malloc((size_t)j->in->ne[0] * sizeof *row);
    if (!row)
        return QE_ENOMEM;
    for (int64_t r = i0; r < i1; r++) {
        qe_tensor_row_f32(j->in, r, row);
        qe_quant_quantize_row(j->t, row, j->in->ne[0], j->buf + (size_t)r * j->rb);
    }
    free(row);
    return 0;
}

/* *out = `in` converted for `role`, its data in a new buffer of q (or `in`
 * itself when the type stays). */
static qe_status convert(qe_quant_model *q, qe_quant_role role, const qe_tensor *in, qe_tensor *out)
{
    const qe_dtype t = qe_quant_weight_type(role, in->type, q->target, in->ne[0]);
    if (t == in->type) {
        *out = *in;
        return QE_OK;
    }
    uint64_t rb = 0;
    qe_status st = qe_dtype_row_bytes(t, in->ne[0], &rb);
    if (st != QE_OK)
        return qe_fail_prefix(st, "requantizing %s", in->name);
    if ((uint64_t)in->ne[1] > SIZE_MAX / rb)
        return qe_fail(QE_ERANGE, "requantizing %s: %lld rows of %llu bytes overflow a size",
                       in->name, (long long)in->ne[1], (unsigned long long)rb);
    const size_t size = (size_t)rb * (size_t)in->ne[1];
    unsigned char *buf = malloc(size);
    if (!buf)
        return qe_fail(QE_ENOMEM, "requantizing %s: out of memory for %zu bytes", in->name, size);
    q->bufs[q->n_bufs++] = buf;
    const int nt = q->n_threads ? q->n_threads : qe_split_threads(in->ne[0] * in->ne[1]);
    qm_job job = {in, t, (size_t)rb, buf};
    if (qe_split(in->ne[1], nt, qm_rows, &job))
        return qe_fail(QE_ENOMEM, "requantizing %s: out of memory for a row of %lld elements",
                       in->name, (long long)in->ne[0]);
    return qe_tensor_view(out, in->name, t, in->ne[0], in->ne[1], buf, size, 1);
}

static const size_t layer_matrices[] = {
    offsetof(qe_layer, wq),     offsetof(qe_layer, wk),   offsetof(qe_layer, wv),
    offsetof(qe_layer, wo),     offsetof(qe_layer, w_gate), offsetof(qe_layer, w_up),
    offsetof(qe_layer, w_down),
};
#define N_LAYER_MATRICES (sizeof layer_matrices / sizeof layer_matrices[0])

qe_status qe_quant_model_new(const qe_model *src, qe_dtype target, qe_quant_model **out)
{
    return qe_quant_model_new_threads(src, target, 0, out);
}

qe_status qe_quant_model_new_threads(const qe_model *src, qe_dtype target, int n_threads,
                                     qe_quant_model **out)
{
    *out = NULL;
    if (!qe_quant_target_ok(target))
        return qe_fail(QE_EINVAL, "cannot requantize to %s (expected f32, f16, q8_0 or q4_0)",
                       qe_dtype_name(target));
    if (n_threads < 0 || n_threads > QE_SPLIT_MAX)
        return qe_fail(QE_EINVAL, "requantizing: %d threads (expected 0 for one per CPU, or 1 .. %d)",
                       n_threads, QE_SPLIT_MAX);
    const qe_hparams *hp = qe_model_hparams(src);
    const qe_weights *w = qe_model_weights(src);
    qe_status st = QE_OK;
    qe_weights nw = *w;
    nw.layers = NULL;
    qe_quant_model *q = calloc(1, sizeof *q);
    if (!q)
        return qe_fail(QE_ENOMEM, "requantizing: out of memory");
    q->src = src;
    q->target = target;
    q->n_threads = n_threads;
    const size_t max_bufs = 2 + (size_t)hp->n_layers * N_LAYER_MATRICES;
    q->bufs = calloc(max_bufs, sizeof *q->bufs);
    nw.layers = malloc((size_t)hp->n_layers * sizeof *nw.layers);
    size_t name_len = strlen(qe_model_name(src)) + 16;
    q->name = malloc(name_len);
    if (!q->bufs || !nw.layers || !q->name) {
        st = qe_fail(QE_ENOMEM, "requantizing: out of memory");
        goto done;
    }
    snprintf(q->name, name_len, "%s-%s", qe_model_name(src), qe_dtype_name(target));
    memcpy(nw.layers, w->layers, (size_t)hp->n_layers * sizeof *nw.layers);

    /* A tied matrix is the output matrix too, and gets the output's type. */
    st = convert(q, hp->tied ? QE_QUANT_ROLE_OUTPUT : QE_QUANT_ROLE_TOKEN_EMBD, &w->token_embd,
                 &nw.token_embd);
    if (st == QE_OK && !hp->tied)
        st = convert(q, QE_QUANT_ROLE_OUTPUT, &w->output, &nw.output);
    if (hp->tied)
        nw.output = nw.token_embd;
    for (int l = 0; st == QE_OK && l < hp->n_layers; l++)
        for (size_t p = 0; st == QE_OK && p < N_LAYER_MATRICES; p++)
            st = convert(q, QE_QUANT_ROLE_MATRIX,
                         (const qe_tensor *)((const char *)&w->layers[l] + layer_matrices[p]),
                         (qe_tensor *)((char *)&nw.layers[l] + layer_matrices[p]));
    if (st == QE_OK)
        st = qe_model_build(hp, &nw, q->name, &q->model);
done:
    free(nw.layers);
    if (st != QE_OK)
        qe_quant_model_free(q);
    else
        *out = q;
    return st;
}

const qe_model *qe_quant_model_get(const qe_quant_model *q) { return q->model; }

qe_dtype qe_quant_model_target(const qe_quant_model *q) { return q->target; }

void qe_quant_model_free(qe_quant_model *q)
{
    if (!q)
        return;
    qe_model_close(q->model);
    for (int i = 0; i < q->n_bufs; i++)
        free(q->bufs[i]);
    free(q->bufs);
    free(q->name);
    free(q);
}

/* ---- GGUF output ---- */

/* Copy metadata entry i of g to the writer, same key, type and value. */
static qe_status copy_kv(const qe_gguf *g, uint64_t i, qe_gguf_writer *w)
{
    const char *key = qe_gguf_kv_key(g, i);
    const qe_gguf_type t = qe_gguf_kv_type(g, i);
    qe_gguf_value v;
    qe_status st = QE_OK;
    if (t != QE_GGUF_ARRAY) {
        if ((st = qe_gguf_kv_value(g, i, 0, &v)) != QE_OK)
            return st;
        switch (t) {
        case QE_GGUF_UINT8: return qe_gguf_writer_add_u8(w, key, (uint8_t)v.u);
        case QE_GGUF_INT8: return qe_gguf_writer_add_i8(w, key, (int8_t)v.i);
        case QE_GGUF_UINT16: return qe_gguf_writer_add_u16(w, key, (uint16_t)v.u);
        case QE_GGUF_INT16: return qe_gguf_writer_add_i16(w, key, (int16_t)v.i);
        case QE_GGUF_UINT32: return qe_gguf_writer_add_u32(w, key, (uint32_t)v.u);
        case QE_GGUF_INT32: return qe_gguf_writer_add_i32(w, key, (int32_t)v.i);
        case QE_GGUF_UINT64: return qe_gguf_writer_add_u64(w, key, v.u);
        case QE_GGUF_INT64: return qe_gguf_writer_add_i64(w, key, v.i);
        case QE_GGUF_FLOAT32: return qe_gguf_writer_add_f32(w, key, (float)v.f);
        case QE_GGUF_FLOAT64: return qe_gguf_writer_add_f64(w, key, v.f);
        case QE_GGUF_BOOL: return qe_gguf_writer_add_bool(w, key, (int)v.u);
        case QE_GGUF_STRING: return qe_gguf_writer_add_strn(w, key, v.s, v.len);
        default: return qe_fail(QE_ECORRUPT, "metadata key %s: value type %d", key, (int)t);
        }
    }
    const qe_gguf_type et = qe_gguf_kv_arr_type(g, i);
    const uint64_t n = qe_gguf_kv_arr_len(g, i);
    static const unsigned char size[QE_GGUF_TYPE_COUNT] = {
        [QE_GGUF_UINT8] = 1, [QE_GGUF_INT8] = 1,    [QE_GGUF_UINT16] = 2, [QE_GGUF_INT16] = 2,
        [QE_GGUF_UINT32] = 4, [QE_GGUF_INT32] = 4,  [QE_GGUF_FLOAT32] = 4, [QE_GGUF_BOOL] = 1,
        [QE_GGUF_STRING] = sizeof(char *), [QE_GGUF_UINT64] = 8, [QE_GGUF_INT64] = 8,
        [QE_GGUF_FLOAT64] = 8,
    };
    if ((unsigned)et >= QE_GGUF_TYPE_COUNT || size[et] == 0)
        return qe_fail(QE_ECORRUPT, "metadata key %s: array element type %d", key, (int)et);
    if (n > SIZE_MAX / 8)
        return qe_fail(QE_ERANGE, "metadata key %s: array of %llu elements", key,
                       (unsigned long long)n);
    unsigned char *buf = malloc(n ? (size_t)n * size[et] : 1);
    if (!buf)
        return qe_fail(QE_ENOMEM, "metadata key %s: out of memory", key);
    for (uint64_t j = 0; st == QE_OK && j < n; j++) {
        if ((st = qe_gguf_kv_value(g, i, j, &v)) != QE_OK)
            break;
        unsigned char *e = buf + (size_t)j * size[et];
        union {
            uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            uint64_t u64; int64_t i64; float f32; double f64; const char *s;
        } x;
        switch (et) {
        case QE_GGUF_UINT8: case QE_GGUF_BOOL: x.u8 = (uint8_t)v.u; break;
        case QE_GGUF_INT8: x.i8 = (int8_t)v.i; break;
        case QE_GGUF_UINT16: x.u16 = (uint16_t)v.u; break;
        case QE_GGUF_INT16: x.i16 = (int16_t)v.i; break;
        case QE_GGUF_UINT32: x.u32 = (uint32_t)v.u; break;
        case QE_GGUF_INT32: x.i32 = (int32_t)v.i; break;
        case QE_GGUF_UINT64: x.u64 = v.u; break;
        case QE_GGUF_INT64: x.i64 = v.i; break;
        case QE_GGUF_FLOAT32: x.f32 = (float)v.f; break;
        case QE_GGUF_FLOAT64: x.f64 = v.f; break;
        default: /* string */
            if (strlen(v.s) != v.len)
                st = qe_fail(QE_EUNSUPPORTED,
                             "metadata key %s: string %llu of the array holds a NUL byte", key,
                             (unsigned long long)j);
            x.s = v.s;
            break;
        }
        memcpy(e, &x, size[et]);
    }
    if (st == QE_OK)
        st = et == QE_GGUF_STRING
                 ? qe_gguf_writer_add_arr_str(w, key, (const char *const *)(void *)buf, n)
                 : qe_gguf_writer_add_arr(w, key, et, buf, n);
    free(buf);
    return st;
}

/* The tensor of q that replaces the source file's tensor `name`, or NULL
 * for tensors the model does not use (copied unchanged). */
static const qe_tensor *replacement(const qe_quant_model *q, const char *name)
{
    static const size_t layer_tensors[] = {
        offsetof(qe_layer, attn_norm), offsetof(qe_layer, wq),     offsetof(qe_layer, wk),
        offsetof(qe_layer, wv),        offsetof(qe_layer, wo),     offsetof(qe_layer, ffn_norm),
        offsetof(qe_layer, w_gate),    offsetof(qe_layer, w_up),   offsetof(qe_layer, w_down),
    };
    const qe_weights *sw = qe_model_weights(q->src), *qw = qe_model_weights(q->model);
    /* A tied model's output views the embedding, whose name it carries. */
    if (strcmp(name, "output.weight") == 0)
        return sw->output.data ? &qw->output : NULL;
    const qe_tensor *s[] = {&sw->token_embd, &sw->output_norm, &sw->rope_freqs};
    const qe_tensor *d[] = {&qw->token_embd, &qw->output_norm, &qw->rope_freqs};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (s[i]->data && s[i]->name && strcmp(s[i]->name, name) == 0)
            return d[i];
    for (int l = 0; l < qe_model_hparams(q->src)->n_layers; l++)
        for (size_t p = 0; p < sizeof layer_tensors / sizeof layer_tensors[0]; p++) {
            const qe_tensor *st = (const qe_tensor *)((const char *)&sw->layers[l] + layer_tensors[p]);
            if (st->name && strcmp(st->name, name) == 0)
                return (const qe_tensor *)((const char *)&qw->layers[l] + layer_tensors[p]);
        }
    return NULL;
}

qe_status qe_quant_model_write_gguf(const qe_quant_model *q, const char *path)
{
    const qe_gguf *g = qe_model_gguf(q->src);
    if (!g)
        return qe_fail(QE_EUNSUPPORTED, "%s: writing GGUF needs a GGUF source model",
                       qe_model_path(q->src));
    qe_gguf_writer *w = NULL;
    qe_status st = qe_gguf_writer_new(3, &w);
    if (st != QE_OK)
        return st;
    const uint32_t ftype = qe_quant_ftype(q->target);
    int have_ftype = 0, have_qv = 0;
    for (uint64_t i = 0; st == QE_OK && i < qe_gguf_n_kv(g); i++) {
        const char *key = qe_gguf_kv_key(g, i);
        if (strcmp(key, "general.file_type") == 0) {
            have_ftype = 1;
            st = qe_gguf_writer_add_u32(w, key, ftype);
        } else if (strcmp(key, "general.quantization_version") == 0) {
            have_qv = 1;
            st = qe_gguf_writer_add_u32(w, key, QNT_VERSION);
        } else {
            st = copy_kv(g, i, w);
        }
    }
    if (st == QE_OK && !have_qv)
        st = qe_gguf_writer_add_u32(w, "general.quantization_version", QNT_VERSION);
    if (st == QE_OK && !have_ftype)
        st = qe_gguf_writer_add_u32(w, "general.file_type", ftype);
    for (uint64_t i = 0; st == QE_OK && i < qe_gguf_n_tensors(g); i++) {
        const qe_gguf_tensor *gt = qe_gguf_tensor_at(g, i);
        const qe_tensor *t = replacement(q, gt->name);
        if (t && gt->n_dims <= 2 && gt->ne[0] == t->ne[0] &&
            (gt->n_dims == 1 ? 1 : gt->ne[1]) == t->ne[1])
            st = qe_gguf_writer_add_tensor(w, gt->name, t->type, gt->n_dims, gt->ne, t->data);
        else
            st = qe_gguf_writer_add_tensor(w, gt->name, gt->type, gt->n_dims, gt->ne, gt->data);
    }
    if (st == QE_OK)
        st = qe_gguf_writer_write_file(w, path);
    else
        st = qe_fail_prefix(st, "%s", qe_gguf_path(g));
    qe_gguf_writer_free(w);
    return st;
}
