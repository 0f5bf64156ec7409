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
 * One work-group of QE_RW work-items per row: global (n_rows*QE_RW), local
 *   (QE_RW). Work-item t scans ids t, t+QE_RW, ... in order: running max,
 *   then sum of exp(z - max), then a private sorted top-K list (insertion; an
 *   id that does not beat the K-th costs one compare); the lists are merged
 *   by K rounds of a tree arg-max in local memory. Reads the row 3 times,
 *   O(n_vocab + K * log QE_RW) per row; every reduction has a fixed shape, so
 *   a row's results do not depend on the batch. Host guarantees
 *   QE_TOPK <= n_vocab and targets < n_vocab.
 */
#if !defined(QE_RW) || !defined(QE_TOPK)
#error "build with -DQE_RW and -DQE_TOPK"
#endif

/* (va, ia) ranks before (vb, ib): larger value, then lower id. */
#define LS_BEFORE(va, ia, vb, ib) ((va) > (vb) || ((va) == (vb) && (ia) < (ib)))

__kernel __attribute__((reqd_work_group_size(QE_RW, 1, 1)))
void logit_stats(const __global float *logits, int n_vocab, /* [n_rows][n_vocab] */
                 const __global int *targets,               /* [row0 + n_rows] */
                 __global float *stats, int row0)           /* [row0 + n_rows][4+2K] */
{
    __local float lv[QE_RW];
    __local int li[QE_RW];
    const int r = get_group_id(0), t = get_local_id(0);
    const __global float *z = logits + (size_t)r * n_vocab;
    __global float *out = stats + (size_t)(row0 + r) * (4 + 2 * QE_TOPK);

    /* max and arg-max */
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = t; i < n_vocab; i += QE_RW) {
        float v = z[i];
        if (LS_BEFORE(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    lv[t] = bv;
    li[t] = bi;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = QE_RW / 2; off > 0; off >>= 1) {
        if (t < off && LS_BEFORE(lv[t + off], li[t + off], lv[t], li[t])) {
            lv[t] = lv[t + off];
            li[t] = li[t + off];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float zmax = lv[0];
    const int amax = li[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    /* log-sum-exp */
    float se = 0.0f;
    for (int i = t; i < n_vocab; i += QE_RW)
        se += exp(z[i] - zmax);
    lv[t] = se;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = QE_RW / 2; off > 0; off >>= 1) {
        if (t < off)
            lv[t] += lv[t + off];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float lse = zmax + log(lv[0]);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0) {
        int tg = targets[row0 + r];
        out[0] = lse;
        out[1] = tg >= 0 ? z[tg] - lse : NAN;
        out[2] = as_float(amax == INT_MAX ? -1 : amax);
        out[3] = zmax;
    }

#if QE_TOPK > 0
    float tv[QE_TOPK];
    int ti[QE_TOPK];
    for (int j = 0; j < QE_TOPK; j++) {
        tv[j] = -INFINITY;
        ti[j] = INT_MAX;
    }
    for (int i = t; i < n_vocab; i += QE_RW) {
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
    int head = 0; /* first entry of this work-item's list not yet output */
    for (int k = 0; k < QE_TOPK; k++) {
        lv[t] = head < QE_TOPK ? tv[head] : -INFINITY;
        li[t] = head < QE_TOPK ? ti[head] : INT_MAX;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int off = QE_RW / 2; off > 0; off >>= 1) {
            if (t < off && LS_BEFORE(lv[t + off], li[t + off], lv[t], li[t])) {
                lv[t] = lv[t + off];
                li[t] = li[t + off];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        const int wi = li[0];
        if (t == 0) {
            out[4 + k] = as_float(wi);
            out[4 + QE_TOPK + k] = lv[0] - lse;
        }
        if (head < QE_TOPK && ti[head] == wi)
            head++;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
}
