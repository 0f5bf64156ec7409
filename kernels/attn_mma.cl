/* attn_mma.cl - attention.cl's causal grouped-query attention on NVIDIA
 * tensor cores (flash-attention style), for prefill under QE_GEMM_MMA.
 * Needs kvfmt.cl, ptx.cl, tqquad.cl, xh.cl, -DQE_HD (a multiple of 16, at most 128),
 * and -DQE_KVK / -DQE_KVV (any cache format).
 *
 * attention.cl's arguments, layout and result, and three more: with xo >= 0
 * the output goes to xh instead of out, as the f16 pairs mma_tile reads for
 * the wo matmul (mma.cl mma_xh's values and xh.cl's order xo, rows of ldp
 * pairs), which spares the f32 output's write and read and an mma_xh launch
 * (lib/engine.c run_attention says when):
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
 * time as f16, K and V both as [key][d] pairs, their B fragments read by
 * ldmatrix.x4 (K) and ldmatrix.x4.trans (V: O = P V's fragments pair two
 * keys' halves of one d), four registers an instruction where scalar local
 * loads had taken one (K) or two halves (V) each; rows past the block's last query are
 * zeros and never read from the cache. f16 caches are copied as they are
 * by cp.async, 16 bytes at a time; other formats are decoded by kv_load and
 * stored, 8 elements of a key a work-item (am_load8; TurboQuant through
 * kv_tq_load8_lut, the centroids from local memory: kvfmt.cl says why).
 * With QE_HD <= 64 two tile buffers alternate, so the next tile's copies
 * are in flight while one is multiplied.
 * TurboQuant caches are attended in the rotated domain, as attention.cl
 * does: with -DAM_ROTQ (a TurboQuant K) each query is rotated to
 * H D q / sqrt(QE_HD) as it is loaded, and with -DAM_ROTO (a TurboQuant V)
 * each output back by D H y / sqrt(QE_HD) before it is stored
 * (tqquad.cl's tq_fwht_quad: the four lanes of a quad hold a row's QE_HD
 * values, so the butterflies are in registers and two shfl.xor stages; the
 * same floats as attention.cl's tq_fwht and the CPU's). The build the engine runs on
 * decoded f16 rows of a TurboQuant cache (attn_kv_f16) takes them too.
 * Per tile a warp computes its 16 x 64 scores (QE_HD/16 mma steps per 8
 * keys), scales them into the log2 domain (scale * log2 e) and, on a tile
 * that some of its rows may not see whole (the diagonal, a window's edge),
 * masks them to -inf, updates the online softmax in registers (row max and
 * sum over the 4 lanes that share a row, through shfl.sync; weights
 * 2^(s - max) by ex2.approx, a row that has seen no key yet subtracting 0
 * so that its -inf scores give exact zeros, FlashAttention-2's form),
 * turns the weights into A fragments in place (an accumulator
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
#if QE_HD % 16 != 0 || QE_HD > 128
#error "attn_mma: QE_HD must be a multiple of 16 up to 128"
#endif

#define AM_BQ 64                /* queries per work-group */
#define AM_BK 64                /* keys per tile */
#define AM_KS (QE_HD / 16)      /* k16 steps of a score */
#define AM_DT (QE_HD / 8)       /* 8-wide output blocks */
#define AM_LD (QE_HD / 2 + 4)   /* uints per staged K or V row: +4 keeps fragment loads
                                   conflict free; rows stay 16-byte aligned */
#define AM_CP (QE_KVK == KV_F16 && QE_KVV == KV_F16) /* cp.async the rows as stored */
#define AM_NB (QE_HD <= 64 ? 2 : 1) /* tile buffers (48 KB of local memory at most) */
#define AM_TQ (KV_IS_TQ(QE_KVK) || KV_IS_TQ(QE_KVV))

/* Elements 8 c .. 8 c + 7 of head gk of cache row `row` (format fmt) into
 * out: kv_load's values (TurboQuant: kv_tq_load8_lut, the centroids from
 * lut, the group's index bytes read once for the eight). */
__attribute__((always_inline)) inline void am_load8(const __global uchar *row, const int fmt,
                                                    int gk, int c, const __local float *lut,
                                                    float *out)
{
    if (KV_IS_TQ(fmt)) {
        const __global uchar *v = row + gk * KV_TQ_VEC(fmt);
        kv_tq_load8_lut(v, fmt, c, kv_half_at(v) / QE_SQRT_HD, lut, out);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[k] = kv_load(row, fmt, gk * QE_HD + 8 * c + k);
    }
}

#ifndef AM_ROTQ
#define AM_ROTQ 0
#endif
#ifndef AM_ROTO
#define AM_ROTO 0
#endif
#if (AM_ROTQ || AM_ROTO) && !TQ_QUAD
#error "attn_mma: TurboQuant's rotations need a power-of-two QE_HD"
#endif

/* lut[0] / lut[1] = K's / V's TurboQuant centroids, where a cache is
 * TurboQuant, by the work-group's 128 work-items (tid), then a barrier. */
inline void am_luts(__local float (*lut)[16], int tid)
{
#if AM_TQ
    if (KV_IS_TQ(QE_KVK))
        kv_tq_lut(lut[0], QE_KVK, tid, 128);
    if (KV_IS_TQ(QE_KVV))
        kv_tq_lut(lut[1], QE_KVV, tid, 128);
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    (void)lut;
    (void)tid;
#endif
}

/* Keys j0 .. j0 + AM_BK - 1 of K and V (cache rows of sequence s, head gk)
 * into ks / vs as f16 pairs; keys past `last` as zeros. */
__attribute__((always_inline)) inline void am_stage(const __global uchar *kc, const __global uchar *vc,
                                                    ulong k_row_bytes, ulong v_row_bytes, int s,
                                                    int n_ctx, int gk, int j0, int last, int tid,
                                                    __local uint (*ks)[AM_LD],
                                                    __local uint (*vs)[AM_LD],
                                                    const __local float *lutk,
                                                    const __local float *lutv)
{
#if AM_CP
    /* AM_BK keys x QE_HD / 8 chunks of 16 bytes, QE_HD / 16 per work-item */
#pragma unroll
    for (int c = 0; c < QE_HD / 16; c++) {
        const int i = tid + 128 * c, jj = i / (QE_HD / 8), ch = i % (QE_HD / 8), j = j0 + jj;
        const uint n = j <= last ? 16u : 0u;
        const ulong row = (ulong)s * n_ctx + (n ? j : 0), at = (ulong)gk * QE_HD * 2 + 16 * ch;
        ptx_cp16(ptx_smem(&ks[jj][4 * ch]), kc + row * k_row_bytes + at, n);
        ptx_cp16(ptx_smem(&vs[jj][4 * ch]), vc + row * v_row_bytes + at, n);
    }
#else
    /* consecutive work-items take consecutive groups of 8 elements of one
       key, stored as 4 pairs at once (rows of AM_LD uints stay 16-byte
       aligned) */
    for (int i = tid; i < AM_BK * (QE_HD / 8); i += 128) {
        const int jj = i / (QE_HD / 8), c = i % (QE_HD / 8), j = j0 + jj;
        float a[8] = {0.0f}, b[8] = {0.0f};
        if (j <= last) {
            const ulong row = (ulong)s * n_ctx + j;
            am_load8(kc + row * k_row_bytes, QE_KVK, gk, c, lutk, a);
            am_load8(vc + row * v_row_bytes, QE_KVV, gk, c, lutv, b);
        }
        *(__local uint4 *)&ks[jj][4 * c] = (uint4)(mma_pack(a[0], a[1]), mma_pack(a[2], a[3]),
                                                   mma_pack(a[4], a[5]), mma_pack(a[6], a[7]));
        *(__local uint4 *)&vs[jj][4 * c] = (uint4)(mma_pack(b[0], b[1]), mma_pack(b[2], b[3]),
                                                   mma_pack(b[4], b[5]), mma_pack(b[6], b[7]));
    }
#endif
}

__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void attn_mma(const __global float *q,   /* [n_seq*n_tok][n_heads*QE_HD] */
              const __global uchar *kc,  /* [n_seq*n_ctx] rows of k_row_bytes */
              const __global uchar *vc,  /* [n_seq*n_ctx] rows of v_row_bytes */
              ulong k_row_bytes, ulong v_row_bytes, int n_tok, int n_ctx, int n_heads, int n_kv,
              float scale, int window, __global float *out,
              __global uint *xh, int ldp, int xo) /* xo >= 0: out as wo's f16 pairs instead */
{
    /* K and V tiles: f16 pairs (d, d + 1) of key j */
    __local uint ks[AM_NB][AM_BK][AM_LD] __attribute__((aligned(16)));
    __local uint vs[AM_NB][AM_BK][AM_LD] __attribute__((aligned(16)));
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
#if AM_ROTQ
    /* each row's QE_HD / 4 values of this lane (tq_fwht_quad's order), rotated
       as attention.cl rotates a query (signs, butterflies, / sqrt) and
       packed a row at a time: both rows' values live at once had made
       attn_mma 1.37 / 1.40 ms a ppl512 B 8 forward with a tq4 cache on the
       H100, against 1.27 / 1.28 (the same bits) */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float qv[QE_HD / 4];
#pragma unroll
        for (int n = 0; n < QE_HD / 4; n += 2) {
            float2 v = (float2)(0.0f, 0.0f);
            if (pr[rr] < n_tok)
                v = vload2(0, q + ((size_t)s * n_tok + pr[rr]) * qd + h * QE_HD + TQ_QD(n, t4));
            qv[n] = tq_sign_quad(n, t4) * v.x;
            qv[n + 1] = tq_sign_quad(n + 1, t4) * v.y;
        }
        tq_fwht_quad(qv, t4);
#pragma unroll
        for (int k = 0; k < AM_KS; k++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int n = 4 * k + 2 * hh;
                qa[k][rr + 2 * hh] = mma_pack(qv[n] / QE_SQRT_HD, qv[n + 1] / QE_SQRT_HD);
            }
    }
#else
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
#endif
    float o[AM_DT][4];
#pragma unroll
    for (int i = 0; i < AM_DT; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    /* running max (log2 domain) and sum of each of this lane's two rows */
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const float sl2 = scale * M_LOG2E_F; /* scores to the log2 domain */
    __local float lut[2][16]; /* K's and V's TurboQuant centroids (unused otherwise) */
    am_luts(lut, tid);

    am_stage(kc, vc, k_row_bytes, v_row_bytes, s, n_ctx, gk, 0, last, tid, ks[0], vs[0], lut[0],
             lut[1]);
#if AM_CP
    ptx_cp_commit();
#endif
    int bf = 0; /* the buffer of this tile */
    for (int j0 = 0; j0 <= last; j0 += AM_BK) {
#if AM_CP
        ptx_cp_wait(0); /* this tile's copies (the only group pending) */
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
#if AM_NB == 2
        /* the next tile into the other buffer, which every warp is done with */
        if (j0 + AM_BK <= last)
            am_stage(kc, vc, k_row_bytes, v_row_bytes, s, n_ctx, gk, j0 + AM_BK, last, tid,
                     ks[bf ^ 1], vs[bf ^ 1], lut[0], lut[1]);
#if AM_CP
        ptx_cp_commit();
#endif
#endif

        /* Does any query of this warp see a key of this tile? (uniform) */
        const int pmax = min(pw + 15, n_tok - 1);
        const int see = j0 <= pmax && (window <= 0 || j0 + AM_BK - 1 > pw - window);
        if (see) {
            float sc[AM_BK / 8][4];
#pragma unroll
            for (int nt = 0; nt < AM_BK / 8; nt++) {
                sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
                /* K's B fragments of two k16 steps by one ldmatrix.x4: lane
                   l names key 8 nt + l % 8, pairs 8 k + 4 (l / 8) .. + 3;
                   an odd last step reads its two registers itself */
#pragma unroll
                for (int k = 0; k + 1 < AM_KS; k += 2) {
                    const uint4 b4 =
                        ptx_ldsm4(ptx_smem(&ks[bf][8 * nt + (lane & 7)][8 * k + 4 * (lane >> 3)]));
                    const uint kb0[2] = {b4.x, b4.y}, kb1[2] = {b4.z, b4.w};
                    MMA(sc[nt], qa[k], kb0);
                    MMA(sc[nt], qa[k + 1], kb1);
                }
#if AM_KS % 2
                {
                    const uint kb[2] = {ks[bf][8 * nt + g8][8 * (AM_KS - 1) + t4],
                                        ks[bf][8 * nt + g8][8 * (AM_KS - 1) + 4 + t4]};
                    MMA(sc[nt], qa[AM_KS - 1], kb);
                }
#endif
            }
            /* every row of the warp sees every key of the tile (uniform):
               no mask to apply */
            const int whole = window <= 0 && j0 + AM_BK - 1 <= pw;
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < AM_BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    sc[nt][e] *= sl2;
                    if (!whole) {
                        const int j = j0 + 8 * nt + 2 * t4 + (e & 1), p = pr[e >> 1];
                        if (j > p || (window > 0 && j <= p - window))
                            sc[nt][e] = -INFINITY;
                    }
                    mx[e >> 1] = fmax(mx[e >> 1], sc[nt][e]);
                }
            float corr[2], mn[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmax(mx[r], ptx_shfl_xor(mx[r], 1));
                mx[r] = fmax(mx[r], ptx_shfl_xor(mx[r], 2));
                const float mr = fmax(m[r], mx[r]);
                /* a row that has seen no key yet (mr = -inf) subtracts 0:
                   its scores, all -inf, weigh exactly 0, and its l and o
                   (0) are scaled by 2^-inf = 0 */
                mn[r] = mr == -INFINITY ? 0.0f : mr;
                corr[r] = ptx_ex2(m[r] - mn[r]);
                l[r] *= corr[r];
                m[r] = mr;
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
                        pv[hf][e] = ptx_ex2(sc[2 * kk + hf][e] - mn[e >> 1]);
                        l[e >> 1] += pv[hf][e];
                    }
                const uint pa[4] = {mma_pack(pv[0][0], pv[0][1]), mma_pack(pv[0][2], pv[0][3]),
                                    mma_pack(pv[1][0], pv[1][1]), mma_pack(pv[1][2], pv[1][3])};
                /* V's B fragments (keys 16 kk + 2 t4 + {0, 1} (+ 8) of d =
                   8 i + g8) of two output blocks by one ldmatrix.x4.trans:
                   lane l names key 16 kk + 8 ((l / 8) % 2) + l % 8, the 8
                   dims of block i + l / 16 (AM_DT is even) */
#pragma unroll
                for (int i = 0; i < AM_DT; i += 2) {
                    const uint4 b4 = ptx_ldsm4t(ptx_smem(
                        &vs[bf][16 * kk + 8 * ((lane >> 3) & 1) + (lane & 7)][4 * (i + (lane >> 4))]));
                    const uint vb0[2] = {b4.x, b4.y}, vb1[2] = {b4.z, b4.w};
                    MMA(o[i], pa, vb0);
                    MMA(o[i + 1], pa, vb1);
                }
            }
        }
#if AM_NB == 1
        barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with the buffer */
        if (j0 + AM_BK <= last)
            am_stage(kc, vc, k_row_bytes, v_row_bytes, s, n_ctx, gk, j0 + AM_BK, last, tid, ks[0],
                     vs[0], lut[0], lut[1]);
#if AM_CP
        ptx_cp_commit();
#endif
#else
        bf ^= 1;
#endif
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += ptx_shfl_xor(l[r], 1);
        l[r] += ptx_shfl_xor(l[r], 2);
    }
#if AM_ROTO
    /* the rows back from the rotated domain as attention.cl turns an
       output back (butterflies, / sqrt, signs), by every lane (rows past
       n_tok included: a quad is one row) */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float inv = 1.0f / l[r];
        float y[QE_HD / 4];
#pragma unroll
        for (int i = 0; i < AM_DT; i++) {
            y[2 * i] = o[i][2 * r] * inv;
            y[2 * i + 1] = o[i][2 * r + 1] * inv;
        }
        tq_fwht_quad(y, t4);
#pragma unroll
        for (int i = 0; i < AM_DT; i++) {
            o[i][2 * r] = tq_sign_quad(2 * i, t4) * (y[2 * i] / QE_SQRT_HD);
            o[i][2 * r + 1] = tq_sign_quad(2 * i + 1, t4) * (y[2 * i + 1] / QE_SQRT_HD);
        }
    }
#endif
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int p = pr[r];
        if (p >= n_tok)
            continue;
        /* (AM_ROTO: o holds the finished rows) */
        const float inv = AM_ROTO ? 1.0f : 1.0f / l[r];
        if (xo >= 0) {
            /* the wo matmul's input as mma_xh would make it from out:
               elements (d, d + 1) are pair (h QE_HD + d) / 2, in xh.cl's
               order xo, rows of ldp pairs (the engine calls this only
               where n_heads QE_HD fills them: no padding pairs) */
            __global uint *xr = xh + ((size_t)s * n_tok + p) * ldp;
#pragma unroll
            for (int i = 0; i < AM_DT; i++)
                xr[xh_pos((h * QE_HD + 8 * i + 2 * t4) / 2, xo)] =
                    mma_pack(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
            continue;
        }
        __global float *op = out + ((size_t)s * n_tok + p) * qd + h * QE_HD;
#pragma unroll
        for (int i = 0; i < AM_DT; i++)
            vstore2((float2)(o[i][2 * r] * inv, o[i][2 * r + 1] * inv), 0, op + 8 * i + 2 * t4);
    }
}

/* attn_kv_f16: rows 0 .. n_tok - 1 of each of n_seq sequences' K and V
 * caches (rows s * n_ctx + j) as the f16 pairs am_stage would stage from
 * them (am_load8's values rounded by mma_pack) into k16 / v16, row
 * s * n_tok + j of n_kv * QE_HD halves. attn_mma's f16 build then attends
 * over those rows (n_ctx = n_tok) with cp.async copies: the same operands,
 * so the same results, as this build decoding every tile in every
 * work-group that reads it, which each key is, once for each query block
 * and head of its group (lib/engine.c run_attention). Global
 * (n_seq * n_tok * n_kv * QE_HD / 8 rounded up to 128), local (128): a
 * work-item decodes elements 8 c .. 8 c + 7 of one head of one row of K
 * and of V. */
__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void attn_kv_f16(const __global uchar *kc, const __global uchar *vc, ulong k_row_bytes,
                 ulong v_row_bytes, int n_seq, int n_tok, int n_ctx, int n_kv,
                 __global uint4 *k16, __global uint4 *v16)
{
    __local float lut[2][16]; /* K's and V's TurboQuant centroids (unused otherwise) */
    am_luts(lut, get_local_id(0));
    const int per = n_kv * (QE_HD / 8); /* 8-element chunks a row */
    const size_t i = get_global_id(0);
    if (i >= (size_t)n_seq * n_tok * per)
        return;
    const int r = (int)(i / per), ch = (int)(i % per);
    const ulong row = (ulong)(r / n_tok) * n_ctx + r % n_tok;
    float a[8], b[8];
    am_load8(kc + row * k_row_bytes, QE_KVK, ch / (QE_HD / 8), ch % (QE_HD / 8), lut[0], a);
    am_load8(vc + row * v_row_bytes, QE_KVV, ch / (QE_HD / 8), ch % (QE_HD / 8), lut[1], b);
    k16[i] = (uint4)(mma_pack(a[0], a[1]), mma_pack(a[2], a[3]), mma_pack(a[4], a[5]),
                     mma_pack(a[6], a[7]));
    v16[i] = (uint4)(mma_pack(b[0], b[1]), mma_pack(b[2], b[3]), mma_pack(b[4], b[5]),
                     mma_pack(b[6], b[7]));
}
