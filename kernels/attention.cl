/* attention.cl - causal grouped-query attention over one sequence's positions
 * (needs kvfmt.cl, -DQE_HD=head_dim, -DQE_BQ=queries per work-group,
 * -DQE_BKV=keys per local tile, -DQE_KVK / -DQE_KVV = the K and V cache
 * formats, kvfmt.cl's ids).
 *
 * attention: for sequence s, query position p < n_tok, head h, kv head
 *   g = h / (n_heads / n_kv):
 *     out[s,p][h] = sum_{j<=p} softmax_j(scale * q[s,p][h] . k[s,j][g]) v[s,j][g]
 *   over keys j > p - window as well when window > 0 (sliding-window layers;
 *   keys below are skipped like the causal mask, and so are whole tiles).
 *   q/out rows are s * n_tok + p (n_heads * QE_HD floats); the K/V cache
 *   rows are s * n_ctx + j (k_row_bytes / v_row_bytes each, n_kv * QE_HD
 *   values in the cache format), RoPE already applied.
 * Quantized caches are read directly: the tile loader decodes each element
 *   into local memory (kvfmt.cl's kv_load), nothing is expanded in global
 *   memory. TurboQuant K: q is rotated once per work-item,
 *   q' = H D q / sqrt(QE_HD) (qe_turboquant_rotate), and scored against the
 *   rotated-domain keys centroid * norm / sqrt(QE_HD) (q' . k'' = q . k_dec).
 *   TurboQuant V: the weighted sum is accumulated from rotated-domain values
 *   and the output rotated back once, D H y / sqrt(QE_HD)
 *   (qe_turboquant_unrotate).
 * Work-group: QE_BQ work-items, one query position each, for one (query
 *   block, head, sequence): global (ceil(n_tok/QE_BQ)*QE_BQ, n_heads, n_seq).
 *   Keys stream through local memory QE_BKV at a time (2*QE_BKV*QE_HD floats)
 *   with an online softmax (running max and sum, rescaled once per tile), so
 *   no score matrix is stored. Tiles start at key 0 for every query, so a
 *   query's arithmetic depends only on its own sequence (batch invariant).
 *   Masked keys are skipped, never multiplied by 0: stale cache rows beyond
 *   n_tok are never read into a result.
 * Limits: QE_HD <= 256 (q and the accumulator are private arrays of QE_HD),
 *   any n_tok <= n_ctx.
 */
#if !defined(QE_HD) || !defined(QE_BQ) || !defined(QE_BKV) || !defined(QE_KVK) || !defined(QE_KVV)
#error "build with -DQE_HD, -DQE_BQ, -DQE_BKV, -DQE_KVK and -DQE_KVV"
#endif

__kernel __attribute__((reqd_work_group_size(QE_BQ, 1, 1)))
void attention(const __global float *q,   /* [n_seq*n_tok][n_heads*QE_HD] */
               const __global uchar *kc,  /* [n_seq*n_ctx] rows of k_row_bytes */
               const __global uchar *vc,  /* [n_seq*n_ctx] rows of v_row_bytes */
               ulong k_row_bytes, ulong v_row_bytes, int n_tok, int n_ctx, int n_heads, int n_kv, float scale,
               int window,                /* 0: none; else keys j > p - window only */
               __global float *out)       /* [n_seq*n_tok][n_heads*QE_HD] */
{
    /* 16-byte aligned: the score and value loops read them as float4 (one
       local load per 4 multiply-adds, the same sums in the same order) */
    __local float ks[QE_BKV][QE_HD] __attribute__((aligned(16)));
    __local float vs[QE_BKV][QE_HD] __attribute__((aligned(16)));
    const int lq = get_local_id(0);
    const int p0 = get_group_id(0) * QE_BQ, p = p0 + lq;
    const int h = get_group_id(1), s = get_group_id(2);
    const int g = h / (n_heads / n_kv);
    const int qd = n_heads * QE_HD;
    const int valid = p < n_tok;
    const int last = min(p0 + QE_BQ - 1, n_tok - 1); /* last key any query here needs */

    float qv[QE_HD], acc[QE_HD];
    const __global float *qr = q + ((size_t)s * n_tok + (valid ? p : 0)) * qd + h * QE_HD;
    for (int d = 0; d < QE_HD; d++) {
        qv[d] = valid ? qr[d] : 0.0f;
        acc[d] = 0.0f;
    }
#if KV_IS_TQ(QE_KVK) || KV_IS_TQ(QE_KVV)
    float sg[QE_HD];
    tq_signs(sg);
#endif
#if KV_IS_TQ(QE_KVK)
    for (int d = 0; d < QE_HD; d++)
        qv[d] = sg[d] * qv[d];
    tq_fwht(qv);
    for (int d = 0; d < QE_HD; d++)
        qv[d] /= QE_SQRT_HD;
#endif
    float m = -INFINITY, l = 0.0f;

    for (int j0 = 0; j0 <= last; j0 += QE_BKV) {
        for (int e = lq; e < QE_BKV * QE_HD; e += QE_BQ) {
            int jj = e / QE_HD, d = e % QE_HD, j = j0 + jj;
            if (j <= last) {
                const ulong row = (ulong)s * n_ctx + j;
                ks[jj][d] = kv_load(kc + row * k_row_bytes, QE_KVK, g * QE_HD + d);
                vs[jj][d] = kv_load(vc + row * v_row_bytes, QE_KVV, g * QE_HD + d);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* First key of this tile the query may see (the window's start). */
        const int jj0 = window > 0 ? max(0, p - window + 1 - j0) : 0;
        if (valid && j0 <= p && jj0 < QE_BKV) {
            const int nj = min(QE_BKV, p - j0 + 1);
            float sc[QE_BKV];
            float mt = -INFINITY;
            for (int jj = jj0; jj < nj; jj++) {
                float dot = 0.0f;
#if QE_HD % 4 == 0
                for (int d = 0; d < QE_HD; d += 4) {
                    const float4 k4 = *(const __local float4 *)&ks[jj][d];
                    dot += qv[d] * k4.x;
                    dot += qv[d + 1] * k4.y;
                    dot += qv[d + 2] * k4.z;
                    dot += qv[d + 3] * k4.w;
                }
#else
                for (int d = 0; d < QE_HD; d++)
                    dot += qv[d] * ks[jj][d];
#endif
                sc[jj] = dot * scale;
                mt = fmax(mt, sc[jj]);
            }
            const float mn = fmax(m, mt);
            const float corr = exp(m - mn); /* 0 on the first tile (m = -inf) */
            l *= corr;
            for (int d = 0; d < QE_HD; d++)
                acc[d] *= corr;
            for (int jj = jj0; jj < nj; jj++) {
                const float pj = exp(sc[jj] - mn);
                l += pj;
#if QE_HD % 4 == 0
                for (int d = 0; d < QE_HD; d += 4) {
                    const float4 v4 = *(const __local float4 *)&vs[jj][d];
                    acc[d] += pj * v4.x;
                    acc[d + 1] += pj * v4.y;
                    acc[d + 2] += pj * v4.z;
                    acc[d + 3] += pj * v4.w;
                }
#else
                for (int d = 0; d < QE_HD; d++)
                    acc[d] += pj * vs[jj][d];
#endif
            }
            m = mn;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    if (valid) {
        __global float *o = out + ((size_t)s * n_tok + p) * qd + h * QE_HD;
        const float inv = 1.0f / l;
#if KV_IS_TQ(QE_KVV)
        for (int d = 0; d < QE_HD; d++)
            acc[d] *= inv;
        tq_fwht(acc);
        for (int d = 0; d < QE_HD; d++)
            o[d] = sg[d] * (acc[d] / QE_SQRT_HD);
#else
        for (int d = 0; d < QE_HD; d++)
            o[d] = acc[d] * inv;
#endif
    }
}
