/* ffn.cl - the SwiGLU gate of the feed-forward block.
 *
 * silu_mul: g[r][i] = silu(g[r][i]) * u[r][i], silu(z) = z / (1 + e^-z).
 *   global (n_ff, n_rows), any local size. (The residual adds of the block
 *   are fused into matmul's `accumulate`.)
 */
__kernel void silu_mul(__global float *g, const __global float *u, int n_ff)
{
    const size_t at = get_global_id(1) * (size_t)n_ff + get_global_id(0);
    const float z = g[at];
    g[at] = z / (1.0f + exp(-z)) * u[at];
}
