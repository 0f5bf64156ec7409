/* ffn.cl - the SwiGLU gate of the feed-forward block.
 *
 * silu_mul: g[r][i] = silu(g[r][i]) * u[r][i], silu(z) = z / (1 + e^-z).
 *   global (n_ff, n_rows), any local size. (The residual adds of the block
 *   are fused into matmul's `accumulate`.)
 * silu_mul_xh: the same products, rounded to f16 (to nearest even) as
 *   mma.cl's mma_xh would round silu_mul's output, written as the down
 *   matmul's f16 pairs (2i, 2i + 1) for pairs i < ldp (0 past n_ff), in
 *   xh.cl's order xo (the down weights' format's), instead of g: prefill
 *   under mma skips a write and a read of g and a launch. global (ldp,
 *   n_rows). Needs xh.cl and act.cl (silu_mul1).
 */

__kernel void silu_mul(__global float *g, const __global float *u, int n_ff)
{
    const size_t at = get_global_id(1) * (size_t)n_ff + get_global_id(0);
    g[at] = silu_mul1(g[at], u[at]);
}

__kernel void silu_mul_xh(const __global float *g, const __global float *u, int n_ff,
                          __global half *xh, int ldp, int xo)
{
    const int i = get_global_id(0), r = get_global_id(1), k = 2 * i;
    if (i >= ldp)
        return;
    const size_t at = (size_t)r * n_ff + k;
    ((__global uint *)xh)[(size_t)r * ldp + xh_pos(i, xo)] =
        xh_pair(k < n_ff ? silu_mul1(g[at], u[at]) : 0.0f,
                k + 1 < n_ff ? silu_mul1(g[at + 1], u[at + 1]) : 0.0f);
}
