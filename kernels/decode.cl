/* decode.cl - the kernels a ragged batch needs beyond the prefill's: rows
 * that each carry their own KV-cache slot and position (needs kvfmt.cl
 * before it, with its -DQE_HD / -DQE_SQRT_HD, and -DQE_AW, a power of two,
 * the attention work-group width; -DQE_KVK / -DQE_KVV, the cache formats;
 * -DQE_G, query heads per attn_rows work-group; -DQE_ATTN_ONLY builds
 * attn_rows alone; -DQE_SHFL, with ptx.cl before it, its reductions by warp
 * shuffles, at_tree).
 *
 * A ragged batch is a list of rows r = 0 .. n_rows-1, row r being the token
 * at position pos[r] of the sequence held in slot slot[r] (lib/decode.h).
 * A prompt is several rows of one slot at consecutive positions; a decode
 * step is one row per slot. Every kernel here computes a row from that row's
 * data alone, with fixed reduction orders, so a row's results do not depend
 * on which other rows share the batch.
 */
#if !defined(QE_HD) || !defined(QE_AW) || !defined(QE_KVK) || !defined(QE_KVV) || !defined(QE_G)
#error "build with -DQE_HD, -DQE_AW, -DQE_KVK, -DQE_KVV and -DQE_G"
#endif

#ifndef QE_ATTN_ONLY /* the decoder's second build holds attn_rows alone */

/* gather_rows: y[r][i] = x[idx[r]][i] (a plain copy: no arithmetic).
 *   global (dim, n_rows), any local size. */
__kernel void gather_rows(const __global float *x, const __global int *idx, int dim,
                          __global float *y)
{
    const int i = get_global_id(0), r = get_global_id(1);
    if (i < dim)
        y[(size_t)r * dim + i] = x[(size_t)idx[r] * dim + i];
}

/* rope_rows: rotary embedding in place, like rope.cl's rope but with the
 * position of row r taken from pos[r], over two buffers in one launch: heads
 * h < n_a of a (row stride ld_a floats: the queries), then heads h - n_a of
 * b (ld_b: the new keys). For pair i < n_rot/2 of a head,
 *     (a, b) = (x[2i], x[2i+1])        layout 0 (pairs)
 *     (a, b) = (x[i], x[i + n_rot/2])  layout 1 (halves)
 *     a' = a cos - b sin;  b' = a sin + b cos,  (cos, sin) = cs[pos[r]][i].
 *   global (n_rot/2, n_a + heads of b, n_rows), any local size. */
__kernel void rope_rows(__global float *a, int ld_a, int n_a, __global float *b, int ld_b,
                        const __global int *pos, int head_dim, int n_rot, int layout,
                        const __global float2 *cs)
{
    const int i = get_global_id(0), h = get_global_id(1), r = get_global_id(2);
    const int half_rot = n_rot / 2;
    __global float *v = h < n_a ? a + (size_t)r * ld_a + (size_t)h * head_dim
                                : b + (size_t)r * ld_b + (size_t)(h - n_a) * head_dim;
    const int ia = layout == 0 ? 2 * i : i;
    const int ib = layout == 0 ? 2 * i + 1 : i + half_rot;
    const float2 c = cs[(size_t)pos[r] * half_rot + i];
    const float2 y = rope_pair(v[ia], v[ib], c);
    v[ia] = y.x;
    v[ib] = y.y;
}

/* copy_rows: cache row slot[r] * n_ctx + pos[r] of dst = row r of src, as
 * row_bytes raw bytes (rows already encoded in the cache format: the f32
 * K/V themselves, or kv.cl's kv_store output for other formats).
 *   global (row_bytes, n_rows), any local size. */
__kernel void copy_rows(const __global uchar *src, ulong row_bytes, const __global int *slot,
                        const __global int *pos, int n_ctx, __global uchar *dst)
{
    const size_t b = get_global_id(0), r = get_global_id(1);
    if (b < row_bytes)
        dst[((ulong)slot[r] * n_ctx + pos[r]) * row_bytes + b] = src[r * row_bytes + b];
}

#endif /* QE_ATTN_ONLY */

/* attn_rows: causal grouped-query attention of row r, query heads h0 ..
 * h0 + QE_G - 1 (QE_G = 1, or all heads of one KV head), against its own
 * slot's cache:
 *     out[r][h] = sum_{j<=p} softmax_j(scale * q[r][h] . k[s,j][g]) v[s,j][g]
 *   over keys j > p - window as well when window > 0 (sliding-window layers:
 *   tiles start at the QE_AW-aligned tile holding the window's first key).
 *   with s = slot[r], p = pos[r], g = h / (n_heads / n_kv); cache rows
 *   s * n_ctx + j of k_row_bytes / v_row_bytes, read with kvfmt.cl's kv_load.
 *   TurboQuant caches are used in the rotated domain as attention.cl does:
 *   q rotated once (H D q / sqrt(QE_HD)) for a tq K cache, the output
 *   rotated back (D H y / sqrt(QE_HD)) for a tq V cache. Their elements
 *   come through kvfmt.cl's local-memory centroid table (kv_tq_load_lut,
 *   kv_tq_load8_lut: a key row's index bytes once per eight elements), the
 *   same values as kv_load (H200, tg128 synthetic Llama-3.2-1B q8_0, tok/s:
 *   tq4 B 1 465.3 / 463.9 -> 508.2 / 509.5, B 64 14331 / 14302 -> 15166 /
 *   15224; tq3 B 1 609.1 / 601.1 -> 694.3 / 695.2, B 64 16062 / 15888 ->
 *   17356 / 17363).
 * Work-group: QE_AW work-items for one row and QE_G heads: global (n_rows *
 *   QE_AW, n_heads / QE_G), local (QE_AW, 1). Keys go QE_AW at a time, one
 *   per work-item (its dot products over d in order, one per head, sharing
 *   each K element it reads); each head's tile max and sum of exp are fixed
 *   trees (at_tree), an online softmax carries (max, sum) across
 *   tiles, and work-item t accumulates output dimensions t, t + QE_AW, ...
 *   over the tile's keys in order, each V element read once for the QE_G
 *   heads. A head's arithmetic does not depend on QE_G: the decoder builds
 *   QE_G = 1 (many work-groups, for calls of few rows) and QE_G = the group
 *   size (each K/V element read once per group, for calls of many rows),
 *   with the same bits. Tiles start at key 0 and nothing depends on other
 *   rows: the result is a function of (q row, slot contents, p). Keys after
 *   p are never read.
 * Limits: QE_HD <= 256; any p < n_ctx; QE_G divides n_heads / n_kv.
 */
#define AT_ND ((QE_HD + QE_AW - 1) / QE_AW) /* output dims per work-item */
/* Loads issued together before their values are used, in the same order as
 * one at a time (the same bits): AT_KB elements of a key row (the largest of
 * 64, 32, ..., 1 dividing QE_HD: at 64 a key row of Llama-3.2-1B is one
 * round of loads, not two, H200 tg128 B 1 q8_0 880.0 / 887.5 -> 897.3 /
 * 899.3 tok/s), AT_VB keys' elements of V. One at a time,
 * a decode step's attention waited out a memory latency per element (H200,
 * tg128 B 1: 20 us a layer at 128 keys). V's loads are unconditional (a key
 * past the tile reads the tile's last key again, and its value is not used):
 * loads behind a branch had still gone one at a time. H200, tg128 B 1 q8_0,
 * attn_rows' mean launch: 15.2 us with AT_VB 16 behind the branch, 12.4
 * without it, 8.8 at 32, 10.2 at 64 (7.0 with no V at all). */
#define AT_KB (QE_HD % 64 == 0 ? 64 : QE_HD % 32 == 0 ? 32 : QE_HD % 16 == 0 ? 16 : \
               QE_HD % 8 == 0 ? 8 : QE_HD % 4 == 0 ? 4 : QE_HD % 2 == 0 ? 2 : 1)
#define AT_VB 32
/* V element e of the tile's keys jb .. jb + AT_VB - 1 (j0 the tile's first
 * key, cache rows from base), their loads issued together; a key past the
 * tile's last (nj - 1) reads that one again, unused. lutv: a tq V cache's
 * centroids in local memory (kvfmt.cl kv_tq_lut; NULL otherwise). */
__attribute__((always_inline)) inline void at_vload(float *vv, const __global uchar *vc, ulong base,
                                                    int j0, int jb, int nj, ulong v_row_bytes,
                                                    int e, const __local float *lutv)
{
#if !KV_IS_TQ(QE_KVV)
    (void)lutv;
#endif
#pragma unroll
    for (int u = 0; u < AT_VB; u++) {
        const __global uchar *vrow = vc + (base + j0 + min(jb + u, nj - 1)) * v_row_bytes;
#if KV_IS_TQ(QE_KVV)
        vv[u] = kv_tq_load_lut(vrow, QE_KVV, e, lutv);
#else
        vv[u] = kv_load(vrow, QE_KVV, e);
#endif
    }
}
/* An f16 key row's elements come as 16-byte loads (8 at a time) where the
 * rows allow it (QE_HD % 8 == 0 and 16-byte row strides, checked per
 * launch): a work-item reads its own key's row, so each of the 2-byte loads
 * of kv_load had been one memory transaction per work-item. The same
 * values in the same order: the same bits. */
#if QE_KVK == KV_F16 && QE_HD % 8 == 0
#define AT_K16 1
#else
#define AT_K16 0
#endif

/* The fixed tree over red[hh][0 .. QE_AW - 1] of each head hh into
 * red[hh][0], a max (is_max) or a sum: the loop "for off = QE_AW / 2 .. 1:
 * red[t] = op(red[t], red[t + off]) for t < off, then a barrier". Under
 * -DQE_SHFL (NVIDIA, ptx.cl) warp 0 does the levels from 32 down in
 * registers: lane t combines its value with lane t ^ off's, which for
 * t < off is the tree's red[t + off], the same operands in the same order,
 * so the same bits with 2 barriers instead of log2(QE_AW) + 1 (H200, tg128
 * B 1 of the synthetic Llama-3.2-1B q8_0: the mean launch 9.7 -> 8.5 us,
 * 938.3 / 951.3 -> 958.8 / 953.4 tok/s). The caller's barrier after its
 * writes precedes; a barrier ends it. */
#if defined(QE_SHFL) && QE_AW >= 32
#define AT_SHFL 1
#else
#define AT_SHFL 0
#endif
inline float at_op(float a, float b, const int is_max) { return is_max ? fmax(a, b) : a + b; }
__attribute__((always_inline)) inline void at_tree(__local float (*red)[QE_AW], int t,
                                                   const int is_max)
{
    /* the levels in local memory: all of them, or those above warp 0's */
    for (int off = QE_AW / 2; off >= (AT_SHFL ? 64 : 1); off >>= 1) {
        if (t < off) {
#pragma unroll
            for (int hh = 0; hh < QE_G; hh++)
                red[hh][t] = at_op(red[hh][t], red[hh][t + off], is_max);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#if AT_SHFL
    if (t < 32) { /* warp 0, all its lanes (shfl.sync's full mask) */
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++) {
            float v = red[hh][t];
            if (QE_AW >= 64)
                v = at_op(v, red[hh][t + 32], is_max);
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                v = at_op(v, ptx_shfl_xor(v, off), is_max);
            if (t == 0)
                red[hh][0] = v;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
}

__kernel __attribute__((reqd_work_group_size(QE_AW, 1, 1)))
void attn_rows(const __global float *q, const __global uchar *kc, const __global uchar *vc,
               ulong k_row_bytes, ulong v_row_bytes, const __global int *slot,
               const __global int *pos, int n_ctx, int n_heads, int n_kv, float scale,
               int window, __global float *out)
{
    __local float qs[QE_G][QE_HD];
    __local float red[QE_G][QE_AW];
    __local float ps[QE_G][QE_AW];
    const int t = get_local_id(0), r = get_group_id(0);
    const int h0 = get_group_id(1) * QE_G;   /* first query head of the work-group */
    const int g = h0 / (n_heads / n_kv);     /* their KV head */
    const int qd = n_heads * QE_HD;
    const int p = pos[r];
    const ulong base = (ulong)slot[r] * n_ctx;
#if KV_IS_TQ(QE_KVK) || KV_IS_TQ(QE_KVV)
    float sg[QE_HD]; /* work-item 0 rotates q and the output */
    if (t == 0)
        tq_signs(sg);
#endif
#if KV_IS_TQ(QE_KVK)
    __local float lutk[16]; /* kvfmt.cl kv_tq_lut: filled before the barrier below */
    kv_tq_lut(lutk, QE_KVK, t, QE_AW);
#endif
#if KV_IS_TQ(QE_KVV)
    __local float lutv[16];
    kv_tq_lut(lutv, QE_KVV, t, QE_AW);
#else
    const __local float *lutv = 0;
#endif
#pragma unroll
    for (int hh = 0; hh < QE_G; hh++) {
        const __global float *qr = q + (size_t)r * qd + (h0 + hh) * QE_HD;
#if KV_IS_TQ(QE_KVK)
        if (t == 0) {
            float tv[QE_HD];
            for (int d = 0; d < QE_HD; d++)
                tv[d] = sg[d] * qr[d];
            tq_fwht(tv);
            for (int d = 0; d < QE_HD; d++)
                qs[hh][d] = tv[d] / QE_SQRT_HD;
        }
#else
        for (int d = t; d < QE_HD; d += QE_AW)
            qs[hh][d] = qr[d];
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float m[QE_G], l[QE_G], acc[QE_G][AT_ND];
#pragma unroll
    for (int hh = 0; hh < QE_G; hh++) {
        m[hh] = -INFINITY;
        l[hh] = 0.0f;
        for (int i = 0; i < AT_ND; i++)
            acc[hh][i] = 0.0f;
    }
    const int lo = window > 0 ? max(0, p - window + 1) : 0;
    const int k16 = AT_K16 && (k_row_bytes & 15) == 0;
    for (int j0 = lo - lo % QE_AW; j0 <= p; j0 += QE_AW) {
        const int j = j0 + t;
        const int live = j >= lo && j <= p;
        float s[QE_G];
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++)
            s[hh] = -INFINITY;
        if (live) {
            const __global uchar *krow = kc + (base + j) * k_row_bytes;
            float dot[QE_G];
#pragma unroll
            for (int hh = 0; hh < QE_G; hh++)
                dot[hh] = 0.0f;
            for (int d0 = 0; d0 < QE_HD; d0 += AT_KB) {
                float kv[AT_KB]; /* AT_KB loads in flight, then used in order */
#if AT_K16
                if (k16) {
                    const __global uint4 *kp =
                        (const __global uint4 *)(krow + 2 * (size_t)(g * QE_HD + d0));
#pragma unroll
                    for (int c = 0; c < AT_KB / 8; c++) {
                        const uint4 v = kp[c];
                        const uint w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                        for (int i = 0; i < 8; i++)
                            kv[8 * c + i] = kv_half_bits((ushort)(w[i / 2] >> (16 * (i & 1))));
                    }
                } else
#endif
#if KV_IS_TQ(QE_KVK) /* QE_HD % 8 == 0 (a power of two): so is AT_KB */
                {
                    const __global uchar *hv = krow + g * KV_TQ_VEC(QE_KVK);
                    const float sc = kv_half_at(hv) / QE_SQRT_HD;
#pragma unroll
                    for (int c = 0; c < AT_KB / 8; c++)
                        kv_tq_load8_lut(hv, QE_KVK, d0 / 8 + c, sc, lutk, kv + 8 * c);
                }
#else
#pragma unroll
                for (int dd = 0; dd < AT_KB; dd++)
                    kv[dd] = kv_load(krow, QE_KVK, g * QE_HD + d0 + dd);
#endif
#pragma unroll
                for (int dd = 0; dd < AT_KB; dd++)
#pragma unroll
                    for (int hh = 0; hh < QE_G; hh++)
                        dot[hh] += qs[hh][d0 + dd] * kv[dd];
            }
#pragma unroll
            for (int hh = 0; hh < QE_G; hh++)
                s[hh] = dot[hh] * scale;
        }
        /* The tile's first AT_VB keys' V elements (output dim t) are
           requested now, before the softmax's trees, so that their latency
           passes during them: the same loads as below, used there, so the
           same bits. H200, tg128 of the synthetic Llama-3.2-1B q8_0,
           alternating: tq4 cache B 1 789.2 / 788.6 / 787.2 -> 827.3 / 821.5
           / 816.6 tok/s (attn_rows 17.3-17.8 -> 14.5-15.5 us a launch), q8_0
           cache 850.1 -> 863.4; f16 caches and B 64 within the noise */
        const int nj = min(QE_AW, p - j0 + 1), jb0 = max(0, lo - j0);
        float vv[AT_VB]; /* AT_VB keys' V elements, used in key order */
        at_vload(vv, vc, base, j0, jb0, nj, v_row_bytes, g * QE_HD + min(t, QE_HD - 1), lutv);
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++)
            red[hh][t] = s[hh];
        barrier(CLK_LOCAL_MEM_FENCE);
        at_tree(red, t, 1);
        float mn[QE_G];
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++)
            mn[hh] = fmax(m[hh], red[hh][0]);
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++) {
            const float pj = live ? exp(s[hh] - mn[hh]) : 0.0f;
            ps[hh][t] = pj;
            red[hh][t] = pj;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        at_tree(red, t, 0);
        float corr[QE_G];
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++) {
            corr[hh] = exp(m[hh] - mn[hh]);
            l[hh] = l[hh] * corr[hh] + red[hh][0];
        }
        for (int i = 0; i < AT_ND; i++) {
            const int d = t + i * QE_AW;
            if (d >= QE_HD)
                break;
            float a[QE_G];
#pragma unroll
            for (int hh = 0; hh < QE_G; hh++)
                a[hh] = acc[hh][i] * corr[hh];
            for (int jb = jb0; jb < nj; jb += AT_VB) {
                if (i || jb != jb0) /* the first batch came before the trees */
                    at_vload(vv, vc, base, j0, jb, nj, v_row_bytes, g * QE_HD + d, lutv);
#pragma unroll
                for (int u = 0; u < AT_VB; u++)
                    if (jb + u < nj)
#pragma unroll
                        for (int hh = 0; hh < QE_G; hh++)
                            a[hh] += ps[hh][jb + u] * vv[u];
            }
#pragma unroll
            for (int hh = 0; hh < QE_G; hh++)
                acc[hh][i] = a[hh];
        }
#pragma unroll
        for (int hh = 0; hh < QE_G; hh++)
            m[hh] = mn[hh];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#pragma unroll
    for (int hh = 0; hh < QE_G; hh++) {
        const float inv = 1.0f / l[hh];
        __global float *o = out + (size_t)r * qd + (h0 + hh) * QE_HD;
#if KV_IS_TQ(QE_KVV)
        for (int i = 0; i < AT_ND; i++) {
            const int d = t + i * QE_AW;
            if (d < QE_HD)
                qs[hh][d] = acc[hh][i] * inv;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t == 0) {
            float tv[QE_HD];
            for (int d = 0; d < QE_HD; d++)
                tv[d] = qs[hh][d];
            tq_fwht(tv);
            for (int d = 0; d < QE_HD; d++)
                o[d] = sg[d] * (tv[d] / QE_SQRT_HD);
        }
#else
        for (int i = 0; i < AT_ND; i++) {
            const int d = t + i * QE_AW;
            if (d < QE_HD)
                o[d] = acc[hh][i] * inv;
        }
#endif
    }
}
