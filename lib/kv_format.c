/* kv_format.c - KV-cache row formats: names, sizes, and CPU codecs that
 * delegate to lib/quant.c (f32, f16, q8_0, q4_0) and lib/turboquant.c (tq*).
 * Threading: pure functions, safe from any thread.
 */
#include "kv_format.h"

#include <stdint.h>
#include <strings.h>

#include "dtype.h"
#include "quant.h"
#include "turboquant.h"

static const struct {
    const char *name;
    qe_dtype dtype; /* block formats */
    int bits;       /* TurboQuant formats; 0 for block formats */
} formats[QE_KV_FORMAT_COUNT] = {
    [QE_KV_F32] = {"f32", QE_DT_F32, 0},   [QE_KV_F16] = {"f16", QE_DT_F16, 0},
    [QE_KV_Q8_0] = {"q8_0", QE_DT_Q8_0, 0}, [QE_KV_Q4_0] = {"q4_0", QE_DT_Q4_0, 0},
    [QE_KV_TQ4] = {"tq4", QE_DT_F32, 4},    [QE_KV_TQ3] = {"tq3", QE_DT_F32, 3},
    [QE_KV_TQ2] = {"tq2", QE_DT_F32, 2},
};

static int valid(qe_kv_format f) { return (unsigned)f < QE_KV_FORMAT_COUNT; }

const char *qe_kv_format_name(qe_kv_format f) { return valid(f) ? formats[f].name : "?"; }

qe_status qe_kv_format_parse(const char *name, qe_kv_format *out)
{
    for (int f = 0; f < QE_KV_FORMAT_COUNT; f++)
        if (name && strcasecmp(name, formats[f].name) == 0) {
            *out = (qe_kv_format)f;
            return QE_OK;
        }
    return qe_fail(QE_EINVAL, "unknown KV-cache format '%s' (expected f32, f16, q8_0, q4_0, tq4, tq3 or tq2)",
                   name ? name : "(null)");
}

int qe_kv_format_per_head(qe_kv_format f) { return valid(f) && formats[f].bits != 0; }

qe_status qe_kv_format_row_bytes(qe_kv_format f, int n_heads, int head_dim, size_t *out)
{
    if (!valid(f))
        return qe_fail(QE_EINVAL, "KV-cache format %d does not exist", (int)f);
    if (n_heads < 1 || head_dim < 1)
        return qe_fail(QE_EINVAL, "KV-cache row of %d heads x %d, expected positive sizes", n_heads,
                       head_dim);
    int64_t n = (int64_t)n_heads * head_dim;
    if (formats[f].bits) {
        if (qe_turboquant_check(formats[f].bits, head_dim) != QE_OK)
            return qe_fail(QE_EUNSUPPORTED,
                           "KV-cache format %s: head dimension %d, expected a power of two in %d..%d",
                           formats[f].name, head_dim, QE_TURBOQUANT_MIN_DIM, QE_TURBOQUANT_MAX_DIM);
        uint64_t per = qe_turboquant_vec_bytes(formats[f].bits, head_dim);
        if ((uint64_t)n_heads * per > SIZE_MAX)
            return qe_fail(QE_ERANGE, "KV-cache row of %d heads overflows a size", n_heads);
        *out = (size_t)((uint64_t)n_heads * per);
        return QE_OK;
    }
    uint64_t bytes = 0;
    if (qe_dtype_row_bytes(formats[f].dtype, n, &bytes) != QE_OK)
        return qe_fail(QE_EUNSUPPORTED,
                       "KV-cache format %s: a row of %d heads x %d = %lld values, expected a multiple of %u",
                       formats[f].name, n_heads, head_dim, (long long)n,
                       qe_dtype_block(formats[f].dtype));
    if (bytes > SIZE_MAX)
        return qe_fail(QE_ERANGE, "KV-cache row of %lld values overflows a size", (long long)n);
    *out = (size_t)bytes;
    return QE_OK;
}

void qe_kv_format_quantize_row(qe_kv_format f, const float *x, int n_heads, int head_dim,
                               void *dst)
{
    QE_ASSERT(valid(f));
    if (!formats[f].bits) {
        qe_quant_quantize_row(formats[f].dtype, x, (int64_t)n_heads * head_dim, dst);
        return;
    }
    const size_t per = qe_turboquant_vec_bytes(formats[f].bits, head_dim);
    for (int h = 0; h < n_heads; h++)
        qe_turboquant_quantize(formats[f].bits, x + (size_t)h * head_dim, head_dim,
                               QE_TURBOQUANT_SEED, (unsigned char *)dst + (size_t)h * per);
}

void qe_kv_format_dequantize_row(qe_kv_format f, const void *src, int n_heads, int head_dim,
                                 float *y)
{
    QE_ASSERT(valid(f));
    if (!formats[f].bits) {
        qe_quant_dequantize_row(formats[f].dtype, src, (int64_t)n_heads * head_dim, y);
        return;
    }
    const size_t per = qe_turboquant_vec_bytes(formats[f].bits, head_dim);
    for (int h = 0; h < n_heads; h++)
        qe_turboquant_dequantize(formats[f].bits, (const unsigned char *)src + (size_t)h * per,
                                 head_dim, QE_TURBOQUANT_SEED, y + (size_t)h * head_dim);
}
