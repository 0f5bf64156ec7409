/* norm.cl - RMSNorm (needs -DQE_NW, the reduction width, a power of two).
 *
 * rmsnorm: y[r][i] = x[src(r)][i] / sqrt(mean_i(x[src(r)]^2) + eps) * w[i]
 *   with src(r) = (r / in_seq) * in_seq_stride + in_off + r % in_seq, so the
 *   final norm can gather only the scored positions of each sequence
 *   (in_seq = n_out, in_seq_stride = n_tok, in_off = out_first); plain use:
 *   in_seq = in_seq_stride = n_rows, in_off = 0.
 * One work-group of QE_NW work-items per output row: global (n_rows*QE_NW),
 *   local (QE_NW). Each work-item sums the squares of elements lid, lid+QE_NW,
 *   ... in order, then a fixed tree in local memory: the result depends only
 *   on the row (batch invariant). Any dim >= 1.
 * rmsnorm_xh: the same rows (plain use) written as a prefill matmul's f16
 *   pairs instead of floats, for mma.cl's mma_tile: pair i < ldp = (y[r][2i],
 *   y[r][2i + 1]) rounded to nearest even (0 past dim) at xh[r][xh_pos(i,
 *   xo)] (xh.cl): the same bits as rmsnorm then mma_xh, without y's write
 *   and read and a launch. Same work-groups. Needs xh.cl and rms.cl (the
 *   row's scale, shared with mma.cl's one-row decode build) before this file.
 * rmsnorm_xh_add: x += res, row by row, then rmsnorm_xh (see there).
 */

__kernel __attribute__((reqd_work_group_size(QE_NW, 1, 1)))
void rmsnorm(const __global float *x, int in_seq, int in_seq_stride, int in_off,
             const __global float *w, /* [dim] */
             int dim, float eps,
             __global float *y)       /* [n_rows][dim] */
{
    __local float red[QE_NW];
    const int r = get_group_id(0), t = get_local_id(0);
    const __global float *xr =
        x + ((size_t)(r / in_seq) * in_seq_stride + in_off + r % in_seq) * dim;
    const float scale = rms_scale(red, xr, dim, eps, t);
    __global float *yr = y + (size_t)r * dim;
    for (int i0 = t; i0 < dim; i0 += NM_U * QE_NW) {
        float v[NM_U], g[NM_U];
#pragma unroll
        for (int u = 0; u < NM_U; u++) {
            const int i = i0 + u * QE_NW;
            v[u] = i < dim ? xr[i] : 0.0f;
            g[u] = i < dim ? w[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < NM_U; u++)
            if (i0 + u * QE_NW < dim)
                yr[i0 + u * QE_NW] = v[u] * scale * g[u];
    }
}

/* Row r of x (xr) normed into its f16 pairs: rmsnorm_xh's and
 * rmsnorm_xh_add's work after the sum. A work-item's pairs go NM_U at a
 * time, every load before any store, as rms_scale's do: written one pair
 * at a time the compiler had to keep each store before the next pair's
 * loads (x, w and xh may alias), a memory latency a pair. With
 * rmsnorm_xh_add's adds batched alike: H100, ppl512 B 8 of the synthetic
 * Llama-3.2-1B f16, rmsnorm_xh_add 1.52 -> 1.36 ms a forward, the same
 * bits (dump hashes). */
inline void norm_xh_row(__local float *red, const __global float *xr, const __global float *w,
                        int dim, float eps, __global half *xh, int ldp, int xo, int r, int t)
{
    const float scale = rms_scale(red, xr, dim, eps, t);
    for (int i0 = t; i0 < ldp; i0 += NM_U * QE_NW) {
        float2 v[NM_U], g[NM_U];
#pragma unroll
        for (int u = 0; u < NM_U; u++) {
            const int k = 2 * (i0 + u * QE_NW);
            v[u] = (float2)(k < dim ? xr[k] : 0.0f, k + 1 < dim ? xr[k + 1] : 0.0f);
            g[u] = (float2)(k < dim ? w[k] : 0.0f, k + 1 < dim ? w[k + 1] : 0.0f);
        }
#pragma unroll
        for (int u = 0; u < NM_U; u++) {
            const int i = i0 + u * QE_NW, k = 2 * i;
            if (i < ldp)
                ((__global uint *)xh)[(size_t)r * ldp + xh_pos(i, xo)] =
                    xh_pair(k < dim ? v[u].x * scale * g[u].x : 0.0f,
                            k + 1 < dim ? v[u].y * scale * g[u].y : 0.0f);
        }
    }
}

__kernel __attribute__((reqd_work_group_size(QE_NW, 1, 1)))
void rmsnorm_xh(const __global float *x, const __global float *w, int dim, float eps,
                __global half *xh, int ldp, int xo)
{
    __local float red[QE_NW];
    const int r = get_group_id(0), t = get_local_id(0);
    norm_xh_row(red, x + (size_t)r * dim, w, dim, eps, xh, ldp, xo, r, t);
}

/* rmsnorm_xh_add: x[r][i] += res[r][i] first (the residual add that wo's or
 * down's matmul makes when it accumulates into x, moved here by
 * engine.c's deferred residual: the same float sums), then rmsnorm_xh of
 * the new x. Same work-groups. */
#define NA_U 8 /* elements a work-item adds at once in rmsnorm_xh_add */
__kernel __attribute__((reqd_work_group_size(QE_NW, 1, 1)))
void rmsnorm_xh_add(__global float *x, const __global float *res, const __global float *w, int dim,
                    float eps, __global half *xh, int ldp, int xo)
{
    __local float red[QE_NW];
    const int r = get_group_id(0), t = get_local_id(0);
    __global float *xr = x + (size_t)r * dim;
    const __global float *rr = res + (size_t)r * dim;
    /* NA_U elements at a time, loads before stores (see norm_xh_row): the
       same sums */
    for (int i0 = t; i0 < dim; i0 += NA_U * QE_NW) {
        float a[NA_U], b[NA_U];
#pragma unroll
        for (int u = 0; u < NA_U; u++) {
            const int i = i0 + u * QE_NW;
            a[u] = i < dim ? xr[i] : 0.0f;
            b[u] = i < dim ? rr[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < NA_U; u++)
            if (i0 + u * QE_NW < dim)
                xr[i0 + u * QE_NW] = a[u] + b[u];
    }
    barrier(CLK_GLOBAL_MEM_FENCE); /* the row's sums, each written by one work-item, for all */
    norm_xh_row(red, xr, w, dim, eps, xh, ldp, xo, r, t);
}
