/* embed.cl - token embedding gather (needs weights.cl and -DQE_WT).
 *
 * embed: x[r][i] = token_embd[tokens[r]][i] as f32.
 *   global (dim, n_rows), any local size. Token ids are checked on the host
 *   (0 <= id < n_vocab) before they are uploaded.
 */
__kernel void embed(const __global int *tokens,   /* [n_rows] */
                    const __global uchar *w,      /* [n_vocab] rows of row_bytes */
                    ulong row_bytes, int dim,
                    __global float *x)            /* [n_rows][dim] */
{
    int i = get_global_id(0), r = get_global_id(1);
    if (i >= dim)
        return;
    x[(size_t)r * dim + i] = wt_load(w, row_bytes, tokens[r], i);
}
