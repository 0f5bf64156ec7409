/* logits.cl - per-row statistics of the next-token logits, so only a few
 * numbers per position leave the device (needs -DQE_RW, a power of two, and
 * -DQE_TOPK, 0..64).
 *
 * logit_stats: for row r of z = logits[r][0 .. n_vocab-1], writes
 *   stats[row0 + r][0]  lse     = log sum_v exp(z_v)
 *   stats[row0 + r][1]  target  = z_t - lse for t = targets[row0 + r] >= 0, else NAN
 *   stats[row0 + r][2]  argmax  (int bits) lowest id of the largest z; -1 if none
 *   stats[row0 + r][3]  max z
 *   stats[row0 + r][4 .. 4+K)      top-K ids (int bits), by z descending,
 *                                  ties by lower id
 *   stats[row0 + r][4+K .. 4+2K)   their log-probs z - lse
 *   (row stride 4 + 2*QE_TOPK floats).
 * One work-group of QE_RW work-items per row (n_parts = 1): global (QE_RW,
 *   n_rows), local (QE_RW). Work-item t scans ids t, t+QE_RW, ... in order,
 *   twice: first into a private sorted top-K list (insertion; an id that
 *   does not beat the K-th costs one compare), whose merge over the
 *   work-group by K rounds of a tree arg-max in local memory starts with
 *   the max and arg-max (with K = 0 the first scan finds just those), then
 *   the sum of exp(z - max). Reads the row twice,
 *   O(n_vocab + K * log QE_RW) per row; every reduction has a fixed shape, so
 *   a row's results do not depend on the batch. Host guarantees
 *   QE_TOPK <= n_vocab and targets < n_vocab. Sums use rms.cl's tree_sum
 *   (the engine's common program holds both).
 * Split rows (n_parts = 2 .. LS_PW, decode calls: a row's 128K logits in one
 *   work-group took 128 us on an H200, a twelfth of a B 1 step): global
 *   (n_parts*QE_RW, n_rows); work-group (p, r) does the above over ids
 *   [p*len, min((p+1)*len, n_vocab)), len = ceil(n_vocab / n_parts), and
 *   writes part[r][p] (LS_PART floats): its max, arg-max (int bits), sum of
 *   exp(z - its max), its top-K ids and their logits. logit_merge (LS_PW
 *   work-items per row, global (n_rows*LS_PW)) then writes the row's stats:
 *   max and arg-max over the parts (the same as whole-row ones), lse = max +
 *   log(sum_p s_p exp(m_p - max)) by a fixed tree in part order, the top-K
 *   by K rounds over the parts' lists. The top-K ids, arg-max and max are
 *   those of the whole-row kernel; lse may differ from it in the last bits,
 *   so one caller always uses one n_parts (the decoder: its own, fixed at
 *   open).
 */
#if !defined(QE_RW) || !defined(QE_TOPK)
#error "build with -DQE_RW and -DQE_TOPK"
#endif

/* (va, ia) ranks before (vb, ib): larger value, then lower id. */
#define LS_BEFORE(va, ia, vb, ib) ((va) > (vb) || ((va) == (vb) && (ia) < (ib)))

#define LS_PW 64                  /* logit_merge's work-items: the most parts of a row */
#define LS_PART (3 + 2 * QE_TOPK) /* floats of a part's record */

/* Every work-item t < w of the work-group (w a power of two) offers (v, i);
 * afterwards lv[0], li[0] hold the one that ranks first (LS_BEFORE), found
 * by a fixed tree. */
inline void ls_best(__local float *lv, __local int *li, int t, int w, float v, int i)
{
    lv[t] = v;
    li[t] = i;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = w / 2; off > 0; off >>= 1) {
        if (t < off && LS_BEFORE(lv[t + off], li[t + off], lv[t], li[t])) {
            lv[t] = lv[t + off];
            li[t] = li[t + off];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* A row's first four statistics (see the top). */
inline void ls_put_head(__global float *out, const __global float *z, int tg, float lse,
                        float zmax, int amax)
{
    out[0] = lse;
    out[1] = tg >= 0 ? z[tg] - lse : NAN;
    out[2] = as_float(amax == INT_MAX ? -1 : amax);
    out[3] = zmax;
}

__kernel __attribute__((reqd_work_group_size(QE_RW, 1, 1)))
void logit_stats(const __global float *logits, int n_vocab, /* [n_rows][n_vocab] */
                 const __global int *targets,               /* [row0 + n_rows] */
                 __global float *stats, int row0,           /* [row0 + n_rows][4+2K] */
                 int n_parts, __global float *part)         /* [n_rows][n_parts][LS_PART] */
{
    __local float lv[QE_RW];
    __local int li[QE_RW];
    const int p = get_group_id(0), r = get_group_id(1), t = get_local_id(0);
    const int len = (n_vocab + n_parts - 1) / n_parts;
    const int lo = p * len, hi = min(n_vocab, lo + len); /* this work-group's ids */
    const __global float *z = logits + (size_t)r * n_vocab;
    __global float *out = stats + (size_t)(row0 + r) * (4 + 2 * QE_TOPK);
    __global float *po = n_parts > 1 ? part + ((size_t)r * n_parts + p) * LS_PART : part;

#if QE_TOPK > 0
    /* each work-item's top-K list; the first round of their merge is the
       max and arg-max (the best by LS_BEFORE, as a pass of its own found
       them), so the row is read twice, not three times: H200, 2,056 rows
       of 128,256 logits (ppl512 B 8) 1.05 ms in three passes */
    float tv[QE_TOPK];
    int ti[QE_TOPK];
    for (int j = 0; j < QE_TOPK; j++) {
        tv[j] = -INFINITY;
        ti[j] = INT_MAX;
    }
    for (int i = lo + t; i < hi; i += QE_RW) {
        float v = z[i];
        if (!LS_BEFORE(v, i, tv[QE_TOPK - 1], ti[QE_TOPK - 1]))
            continue;
        int j = QE_TOPK - 1;
        while (j > 0 && LS_BEFORE(v, i, tv[j - 1], ti[j - 1])) {
            tv[j] = tv[j - 1];
            ti[j] = ti[j - 1];
            j--;
        }
        tv[j] = v;
        ti[j] = i;
    }
    ls_best(lv, li, t, QE_RW, tv[0], ti[0]);
    const float zmax = lv[0];
    const int amax = li[0];
    int head = ti[0] == amax; /* first entry of this work-item's list not yet output */
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    /* max and arg-max */
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = lo + t; i < hi; i += QE_RW) {
        float v = z[i];
        if (LS_BEFORE(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    ls_best(lv, li, t, QE_RW, bv, bi);
    const float zmax = lv[0];
    const int amax = li[0];
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    /* log-sum-exp */
    float se = 0.0f;
    for (int i = lo + t; i < hi; i += QE_RW)
        se += exp(z[i] - zmax);
    tree_sum(lv, t, QE_RW, se);
    const float lse = zmax + log(lv[0]);
    if (n_parts > 1 && t == 0) {
        po[0] = zmax;
        po[1] = as_float(amax);
        po[2] = lv[0];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (n_parts == 1 && t == 0)
        ls_put_head(out, z, targets[row0 + r], lse, zmax, amax);

#if QE_TOPK > 0
    if (t == 0 && n_parts == 1) { /* the merge's first round, found above */
        out[4] = as_float(amax);
        out[4 + QE_TOPK] = zmax - lse;
    } else if (t == 0) {
        po[3] = as_float(amax);
        po[3 + QE_TOPK] = zmax;
    }
    for (int k = 1; k < QE_TOPK; k++) {
        ls_best(lv, li, t, QE_RW, head < QE_TOPK ? tv[head] : -INFINITY,
                head < QE_TOPK ? ti[head] : INT_MAX);
        const int wi = li[0];
        if (t == 0 && n_parts == 1) {
            out[4 + k] = as_float(wi);
            out[4 + QE_TOPK + k] = lv[0] - lse;
        } else if (t == 0) {
            po[3 + k] = as_float(wi);
            po[3 + QE_TOPK + k] = lv[0];
        }
        if (head < QE_TOPK && ti[head] == wi)
            head++;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
}

/* logit_merge: row r's statistics from its n_parts (<= LS_PW) part records
 * (see the top). Work-item t holds part t. */
__kernel __attribute__((reqd_work_group_size(LS_PW, 1, 1)))
void logit_merge(const __global float *part, int n_parts, /* [n_rows][n_parts][LS_PART] */
                 const __global float *logits, int n_vocab, const __global int *targets,
                 __global float *stats, int row0)
{
    __local float lv[LS_PW];
    __local int li[LS_PW];
    const int r = get_group_id(0), t = get_local_id(0), mine = t < n_parts;
    const __global float *pr = part + ((size_t)r * n_parts + (mine ? t : 0)) * LS_PART;
    __global float *out = stats + (size_t)(row0 + r) * (4 + 2 * QE_TOPK);
    const float pm = mine ? pr[0] : -INFINITY;

    ls_best(lv, li, t, LS_PW, pm, mine ? as_int(pr[1]) : INT_MAX);
    const float zmax = lv[0];
    const int amax = li[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    /* an empty part (sum 0, max -inf) adds 0; a NaN sum stays NaN */
    tree_sum(lv, t, LS_PW, !mine || pr[2] == 0.0f ? 0.0f : pr[2] * exp(pm - zmax));
    const float lse = zmax + log(lv[0]);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0)
        ls_put_head(out, logits + (size_t)r * n_vocab, targets[row0 + r], lse, zmax, amax);

#if QE_TOPK > 0
    int head = 0; /* first entry of this part's list not yet output */
    for (int k = 0; k < QE_TOPK; k++) {
        ls_best(lv, li, t, LS_PW, mine && head < QE_TOPK ? pr[3 + QE_TOPK + head] : -INFINITY,
                mine && head < QE_TOPK ? as_int(pr[3 + head]) : INT_MAX);
        const int wi = li[0];
        if (t == 0) {
            out[4 + k] = as_float(wi);
            out[4 + QE_TOPK + k] = lv[0] - lse;
        }
        if (mine && head < QE_TOPK && as_int(pr[3 + head]) == wi)
            head++;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
}

#if QE_TOPK <= 1
/* logit_tiles: row r's statistics from n_tiles records of kernels/mma.cl's
 * mma_tile_lse, each over `tile` ids (part[r][i]: tile i's largest logit
 * m_i, its id, s_i = the sum of exp(z - m_i) over the tile, and the
 * target's logit in the tile that holds the target), for engines whose
 * top-K is at most 1: max and arg-max over
 * the tiles (those of the whole row), lse = max + log(sum_i s_i exp(m_i -
 * max)), work-item t adding tiles t, t + QE_RW, ... in order, then
 * tree_sum. lse may differ from logit_stats' in the last bits (another
 * order of the same terms). One work-group of QE_RW a row: global (QE_RW,
 * n_rows). */
__kernel __attribute__((reqd_work_group_size(QE_RW, 1, 1)))
void logit_tiles(const __global float4 *part, int n_tiles, int tile, const __global int *targets,
                 __global float *stats, int row0)
{
    __local float lv[QE_RW];
    __local int li[QE_RW];
    const int r = get_group_id(1), t = get_local_id(0);
    const __global float4 *pr = part + (size_t)r * n_tiles;
    __global float *out = stats + (size_t)(row0 + r) * (4 + 2 * QE_TOPK);
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = t; i < n_tiles; i += QE_RW) {
        const float4 p = pr[i];
        if (LS_BEFORE(p.x, as_int(p.z), bv, bi)) {
            bv = p.x;
            bi = as_int(p.z);
        }
    }
    ls_best(lv, li, t, QE_RW, bv, bi);
    const float zmax = lv[0];
    const int amax = li[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    float se = 0.0f;
    for (int i = t; i < n_tiles; i += QE_RW) {
        const float4 p = pr[i];
        se += p.y * exp(p.x - zmax);
    }
    tree_sum(lv, t, QE_RW, se);
    const float lse = zmax + log(lv[0]);
    if (t == 0) {
        const int tg = targets[row0 + r];
        out[0] = lse;
        out[1] = tg >= 0 ? pr[tg / tile].w - lse : NAN;
        out[2] = as_float(amax == INT_MAX ? -1 : amax);
        out[3] = zmax;
#if QE_TOPK == 1
        out[4] = as_float(amax);
        out[5] = zmax - lse;
#endif
    }
}
#endif
