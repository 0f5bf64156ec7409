/* arch.cl - the steps only some architectures take (model.h's switches):
 * biases and per-head norms of q/k/v, post norms fused with the residual
 * add, the GELU gate, the embedding scale and the final logit soft-cap.
 * Built into the common program (needs -DQE_NW like norm.cl). Every kernel
 * works on one row at a time in a fixed order, so results do not depend on
 * the batch.
 */
#ifndef QE_NW
#error "build with -DQE_NW=<reduction width>"
#endif

/* qk_prep: for logical row r (sequence s = r / n_tok, position p = r % n_tok),
 *   buffer row s * seq_stride + p (ld floats), head h (head_dim floats v):
 *     use_bias: v += bias[h * head_dim ..]
 *     use_norm: v = v / sqrt(mean(v^2) + eps) * w     (w: [head_dim])
 *   One work-item per (head, row), the head's elements in order:
 *   global (n_heads, n_rows), any local size. Unused pointers may be any
 *   buffer (never read).
 */
__kernel void qk_prep(__global float *x, int ld, int n_tok, int seq_stride, int head_dim,
                      const __global float *bias, int use_bias,
                      const __global float *w, int use_norm, float eps)
{
    const int h = get_global_id(0), r = get_global_id(1);
    __global float *v =
        x + ((size_t)(r / n_tok) * seq_stride + r % n_tok) * ld + (size_t)h * head_dim;
    if (use_bias)
        for (int i = 0; i < head_dim; i++)
            v[i] += bias[h * head_dim + i];
    if (use_norm) {
        float ss = 0.0f;
        for (int i = 0; i < head_dim; i++)
            ss += v[i] * v[i];
        const float scale = 1.0f / sqrt(ss / (float)head_dim + eps);
        for (int i = 0; i < head_dim; i++)
            v[i] = v[i] * scale * w[i];
    }
}

/* rmsnorm_add: x[r][i] += y[r][i] / sqrt(mean_i(y[r]^2) + eps) * w[i]
 *   (a post norm and the residual add). Reduction as norm.cl's rmsnorm:
 *   global (n_rows*QE_NW), local (QE_NW).
 */
__kernel __attribute__((reqd_work_group_size(QE_NW, 1, 1)))
void rmsnorm_add(const __global float *y, const __global float *w, int dim, float eps,
                 __global float *x)
{
    __local float red[QE_NW];
    const int r = get_group_id(0), t = get_local_id(0);
    const __global float *yr = y + (size_t)r * dim;
    float s = 0.0f;
    for (int i = t; i < dim; i += QE_NW)
        s += yr[i] * yr[i];
    tree_sum(red, t, QE_NW, s);
    const float scale = 1.0f / sqrt(red[0] / (float)dim + eps);
    __global float *xr = x + (size_t)r * dim;
    for (int i = t; i < dim; i += QE_NW)
        xr[i] += yr[i] * scale * w[i];
}

/* gelu_mul: g[r][i] = gelu_tanh(g[r][i]) * u[r][i],
 *   gelu_tanh(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))).
 *   global (n_ff, n_rows), any local size.
 */
__kernel void gelu_mul(__global float *g, const __global float *u, int n_ff)
{
    const size_t at = get_global_id(1) * (size_t)n_ff + get_global_id(0);
    const float z = g[at];
    g[at] = 0.5f * z * (1.0f + tanh(0.7978845608028654f * (z + 0.044715f * z * z * z))) * u[at];
}

/* scale_f32: x[i] *= s for i < n (the embedding scale). 1D, any shape. */
__kernel void scale_f32(__global float *x, float s, uint n)
{
    const uint i = (uint)get_global_id(0);
    if (i < n)
        x[i] *= s;
}

/* softcap: z = c * tanh(z / c) for the n_rows x n_vocab logits.
 *   global (n_vocab, n_rows), any local size.
 */
__kernel void softcap(__global float *z, int n_vocab, float c)
{
    const size_t at = get_global_id(1) * (size_t)n_vocab + get_global_id(0);
    z[at] = c * tanh(z[at] / c);
}
