/* tensor.c - weight views and the single per-type row converter.
 * Adding a weight format (a GGML quant) means: accept it in
 * qe_tensor_type_supported and decode one row of it in qe_tensor_row_f32.
 * GGML block types are decoded by lib/quant.c.
 * Pure functions: safe from any thread. */
#include "tensor.h"

#include <string.h>

#include "quant.h"

int qe_tensor_type_supported(qe_dtype t)
{
    return t == QE_DT_F32 || t == QE_DT_F16 || t == QE_DT_BF16 || qe_quant_can_dequantize(t);
}

qe_status qe_tensor_view(qe_tensor *t, const char *name, qe_dtype type, int64_t ne0, int64_t ne1,
                         const void *data, uint64_t avail, int exact)
{
    uint64_t row = 0;
    if (!qe_tensor_type_supported(type))
        return qe_fail(QE_EUNSUPPORTED, "tensor %s: element type %s is not supported (f32, f16, bf16, q4_0, q4_1, "
                       "q5_0, q5_1, q8_0, q4_k, q5_k, q6_k)",
                       name, qe_dtype_name(type));
    if (ne0 < 1 || ne1 < 1)
        return qe_fail(QE_ECORRUPT, "tensor %s: shape {%lld, %lld} has an empty dimension", name,
                       (long long)ne0, (long long)ne1);
    qe_status st = qe_dtype_row_bytes(type, ne0, &row);
    if (st != QE_OK)
        return qe_fail_prefix(st, "tensor %s", name);
    if ((uint64_t)ne1 > UINT64_MAX / row || row > SIZE_MAX ||
        (uint64_t)ne1 * row > SIZE_MAX)
        return qe_fail(QE_ERANGE, "tensor %s: {%lld, %lld} of %s overflows a size", name,
                       (long long)ne0, (long long)ne1, qe_dtype_name(type));
    uint64_t need = (uint64_t)ne1 * row;
    if (exact ? need != avail : need > avail)
        return qe_fail(QE_ECORRUPT, "tensor %s: shape {%lld, %lld} of %s needs %llu bytes, the file holds %llu",
                       name, (long long)ne0, (long long)ne1, qe_dtype_name(type),
                       (unsigned long long)need, (unsigned long long)avail);
    t->name = name;
    t->type = type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->data = data;
    t->row_bytes = (size_t)row;
    t->nbytes = (size_t)need;
    return QE_OK;
}

void qe_tensor_row_f32(const qe_tensor *t, int64_t row, float *dst)
{
    QE_ASSERT(t->data != NULL && row >= 0 && row < t->ne[1]);
    const unsigned char *p = (const unsigned char *)t->data + (size_t)row * t->row_bytes;
    int64_t n = t->ne[0];
    switch (t->type) {
    case QE_DT_F32:
        memcpy(dst, p, (size_t)n * sizeof(float));
        break;
    case QE_DT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qe_f16_to_f32(h);
        }
        break;
    case QE_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qe_bf16_to_f32(h);
        }
        break;
    default:
        qe_quant_dequantize_row(t->type, p, n, dst); /* asserts on types it cannot read */
    }
}
