/* attn_mma.cl - attention.cl's causal grouped-query attention on NVIDIA
 * tensor cores (flash-attention style), for prefill under QE_GEMM_MMA.
 * Needs kvfmt.cl, ptx.cl, -DQE_HD (a multiple of 16, at most 128), and
 * -DQE_KVK / -DQE_KVV (plain or GGML-block cache formats: TurboQuant caches
 * keep attention.cl, whose per-query rotations do not map onto fragments).
 *
 * Same arguments, layout and result as attention.cl:
 *   out[s,p][h] = sum_{j<=p, j>p-window} softmax_j(scale * q[s,p][h] . k[s,j][g]) v[s,j][g]
 * with f16 operands and f32 sums, PyTorch's fp16 SDPA precision: q, the
 * cache values (decoded by kv_load, exactly as attention.cl reads them) and
 * the softmax weights are rounded to f16 for the two products; scores, the
 * running max and sum, and the output accumulate in f32.
 *
 * Work-group: 4 warps, 64 query positions (16 a warp) of one head of one
 * sequence: global (ceil(n_tok/64)*128, n_heads, n_seq), local (128, 1, 1).
 * Group 0 of dimension 0 takes the LAST query block (most keys), so the
 * long causal rows start first. Keys stream through local memory 64 at a
 * time as f16: K as [key][d] pairs (the B operand of S = Q K^T), V
 * transposed as [d][key] pairs (the B operand of O = P V); rows past the
 * block's last query are stored as zeros and never read from the cache.
 * Per tile a warp computes its 16 x 64 scores (QE_HD/16 mma steps per 8
 * keys), masks them (causal, window) to -inf, updates the online softmax in
 * registers (row max and sum over the 4 lanes that share a row, through
 * shfl.sync), turns the weights into A fragments in place (an accumulator
 * pair of two 8-key blocks is the A fragment of their 16 keys), and adds
 * P V to its 16 x QE_HD output. A warp skips tiles none of its queries can
 * see; a skipped tile would change nothing (masked weights are exactly 0).
 *
 * Batch invariance: query p's result is the same fixed chain of tiles from
 * key 0 whatever n_tok, n_seq or the other queries are (masked products add
 * exact zeros), so it matches the same position computed alone or in a
 * shorter prefill. It differs from attention.cl in the last bits (f16
 * operands, another summation order).
 */
#if !defined(QE_HD) || !defined(QE_KVK) || !defined(QE_KVV)
#error "build with -DQE_HD, -DQE_KVK and -DQE_KVV"
#endif
#if QE_HD % 16 != 0 || QE_HD > 128 || KV_IS_TQ(QE_KVK) || KV_IS_TQ(QE_KVV)
#error "attn_mma: QE_HD must be a multiple of 16 up to 128, the caches not TurboQuant"
#endif

#define AM_BQ 64                /* queries per work-group */
#define AM_BK 64                /* keys per tile */
#define AM_KS (QE_HD / 16)      /* k16 steps of a score */
#define AM_DT (QE_HD / 8)       /* 8-wide output blocks */
#define AM_KLD (QE_HD / 2 + 4)  /* uints per staged K row: +4 keeps B loads conflict free */
#define AM_VLD (AM_BK / 2 + 4)  /* uints per staged V^T row */

__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void attn_mma(const __global float *q,   /* [n_seq*n_tok][n_heads*QE_HD] */
              const __global uchar *kc,  /* [n_seq*n_ctx] rows of k_row_bytes */
              const __global uchar *vc,  /* [n_seq*n_ctx] rows of v_row_bytes */
              ulong k_row_bytes, ulong v_row_bytes, int n_tok, int n_ctx, int n_heads, int n_kv,
              float scale, int window, __global float *out)
{
    __local uint ks[AM_BK][AM_KLD]; /* K tile: f16 pairs (d, d + 1) of key j */
    __local uint vt[QE_HD][AM_VLD]; /* V tile transposed: f16 pairs (key 2i, 2i + 1) of d */
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31;
    const int g8 = lane >> 2, t4 = lane & 3;
    const int nb = (n_tok + AM_BQ - 1) / AM_BQ;
    const int p0 = (nb - 1 - (int)get_group_id(0)) * AM_BQ;
    const int h = get_group_id(1), s = get_group_id(2);
    const int gk = h / (n_heads / n_kv);
    const int qd = n_heads * QE_HD;
    const int last = min(p0 + AM_BQ - 1, n_tok - 1); /* last key any query here sees */
    const int pw = p0 + 16 * warp;                   /* the warp's first query */
    const int pr[2] = {pw + g8, pw + g8 + 8};        /* this lane's two query rows */

    /* Q as A fragments: register r of step ks holds row g8 + 8 (r & 1),
       d = 16 ks + 2 t4 + 8 (r >> 1) + {0, 1} */
    uint qa[AM_KS][4];
#pragma unroll
    for (int k = 0; k < AM_KS; k++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int p = pr[r & 1], d = 16 * k + 2 * t4 + 8 * (r >> 1);
            float2 v = (float2)(0.0f, 0.0f);
            if (p < n_tok)
                v = vload2(0, q + ((size_t)s * n_tok + p) * qd + h * QE_HD + d);
            qa[k][r] = mma_pack(v.x, v.y);
        }
    float o[AM_DT][4];
#pragma unroll
    for (int i = 0; i < AM_DT; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    for (int j0 = 0; j0 <= last; j0 += AM_BK) {
        /* K: consecutive work-items take consecutive pairs of one key */
        for (int i = tid; i < AM_BK * (QE_HD / 2); i += 128) {
            const int jj = i / (QE_HD / 2), dp = i % (QE_HD / 2), j = j0 + jj;
            float a = 0.0f, b = 0.0f;
            if (j <= last) {
                const __global uchar *row = kc + ((ulong)s * n_ctx + j) * k_row_bytes;
                a = kv_load(row, QE_KVK, gk * QE_HD + 2 * dp);
                b = kv_load(row, QE_KVK, gk * QE_HD + 2 * dp + 1);
            }
            ks[jj][dp] = mma_pack(a, b);
        }
        /* V^T: a warp takes 8 d x 4 key pairs, so its 32 stores hit 32 banks */
        for (int i = tid; i < QE_HD * (AM_BK / 2); i += 128) {
            const int blk = i >> 5, ln = i & 31;
            const int d = 8 * (blk % (QE_HD / 8)) + (ln & 7);
            const int kp = 4 * (blk / (QE_HD / 8)) + (ln >> 3), j = j0 + 2 * kp;
            const ulong row = (ulong)s * n_ctx + j;
            const float a = j <= last ? kv_load(vc + row * v_row_bytes, QE_KVV, gk * QE_HD + d) : 0.0f;
            const float b =
                j + 1 <= last ? kv_load(vc + (row + 1) * v_row_bytes, QE_KVV, gk * QE_HD + d) : 0.0f;
            vt[d][kp] = mma_pack(a, b);
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Does any query of this warp see a key of this tile? (uniform) */
        const int pmax = min(pw + 15, n_tok - 1);
        const int see = j0 <= pmax && (window <= 0 || j0 + AM_BK - 1 > pw - window);
        if (see) {
            float sc[AM_BK / 8][4];
#pragma unroll
            for (int nt = 0; nt < AM_BK / 8; nt++) {
                sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
                for (int k = 0; k < AM_KS; k++) {
                    const uint kb[2] = {ks[8 * nt + g8][8 * k + t4], ks[8 * nt + g8][8 * k + 4 + t4]};
                    MMA(sc[nt], qa[k], kb);
                }
            }
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < AM_BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int j = j0 + 8 * nt + 2 * t4 + (e & 1), p = pr[e >> 1];
                    const int masked = j > p || (window > 0 && j <= p - window);
                    sc[nt][e] = masked ? -INFINITY : sc[nt][e] * scale;
                    mx[e >> 1] = fmax(mx[e >> 1], sc[nt][e]);
                }
            float corr[2], mn[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmax(mx[r], ptx_shfl_xor(mx[r], 1));
                mx[r] = fmax(mx[r], ptx_shfl_xor(mx[r], 2));
                mn[r] = fmax(m[r], mx[r]);
                /* a row that has seen no key yet keeps m = -inf: nothing to rescale */
                corr[r] = mn[r] == -INFINITY ? 1.0f : exp(m[r] - mn[r]);
                l[r] *= corr[r];
                m[r] = mn[r];
            }
#pragma unroll
            for (int i = 0; i < AM_DT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    o[i][e] *= corr[e >> 1];
#pragma unroll
            for (int kk = 0; kk < AM_BK / 16; kk++) {
                float pv[2][4];
#pragma unroll
                for (int hf = 0; hf < 2; hf++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float x = sc[2 * kk + hf][e];
                        pv[hf][e] = x == -INFINITY ? 0.0f : exp(x - mn[e >> 1]);
                        l[e >> 1] += pv[hf][e];
                    }
                const uint pa[4] = {mma_pack(pv[0][0], pv[0][1]), mma_pack(pv[0][2], pv[0][3]),
                                    mma_pack(pv[1][0], pv[1][1]), mma_pack(pv[1][2], pv[1][3])};
#pragma unroll
                for (int i = 0; i < AM_DT; i++) {
                    const uint vb[2] = {vt[8 * i + g8][8 * kk + t4], vt[8 * i + g8][8 * kk + 4 + t4]};
                    MMA(o[i], pa, vb);
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += ptx_shfl_xor(l[r], 1);
        l[r] += ptx_shfl_xor(l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int p = pr[r];
        if (p >= n_tok)
            continue;
        __global float *op = out + ((size_t)s * n_tok + p) * qd + h * QE_HD;
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int i = 0; i < AM_DT; i++)
            vstore2((float2)(o[i][2 * r] * inv, o[i][2 * r + 1] * inv), 0, op + 8 * i + 2 * t4);
    }
}
