/* rms.cl - the reductions behind RMSNorm, shared by norm.cl's kernels, the
 * common program's other reductions (arch.cl's rmsnorm_add, logits.cl's
 * statistics) and mma.cl's one-row decode build (mma_skinny -DMS_X1,
 * which normalises its input row itself). No kernels. Needs -DQE_NW, the
 * reduction width (a power of two); every user sums a row the same way,
 * so a row's scale has the same bits wherever it is computed.
 */
#ifndef QE_NW
#error "build with -DQE_NW=<reduction width>"
#endif

/* A work-item's elements go NM_U at a time, loaded before any is used, then
 * summed (or scaled) in the same order as one at a time: the same bits, one
 * memory latency per NM_U elements (a decode step runs 2 n_layers + 1 of
 * these on one row each, where latency is the whole cost). */
#define NM_U 4

/* red[0] = the sum of the w work-items' v (w a power of two), added by a
 * fixed tree in local memory, the same for every row and call. Work-items
 * t >= w (a wider work-group) store v at red[t], which the tree never reads,
 * and pass the same barriers. */
inline void tree_sum(__local float *red, int t, int w, float v)
{
    red[t] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = w / 2; off > 0; off >>= 1) {
        if (t < off)
            red[t] += red[t + off];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* 1 / sqrt(mean(xr^2) + eps) of one row, for every work-item t of its
 * work-group: work-items t < QE_NW sum the squares of elements t, t + QE_NW,
 * ... in order, then tree_sum adds their sums. A work-group wider than
 * QE_NW (mma_skinny's) passes the same barriers with its other work-items,
 * which load nothing; red holds one float per work-item. */
inline float rms_scale(__local float *red, const __global float *xr, int dim, float eps, int t)
{
    float s = 0.0f;
    for (int i0 = t < QE_NW ? t : dim; i0 < dim; i0 += NM_U * QE_NW) {
        float v[NM_U];
#pragma unroll
        for (int u = 0; u < NM_U; u++)
            v[u] = i0 + u * QE_NW < dim ? xr[i0 + u * QE_NW] : 0.0f;
#pragma unroll
        for (int u = 0; u < NM_U; u++)
            if (i0 + u * QE_NW < dim)
                s += v[u] * v[u];
    }
    tree_sum(red, t, QE_NW, s);
    return 1.0f / sqrt(red[0] / (float)dim + eps);
}
