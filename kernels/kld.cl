/* kld.cl - KL-divergence of a variant's next-token distribution against a
 * base's, per row, from both models' logits while they are on the device
 * (needs logits.cl's stats layout, -DQE_RW a power of two, -DQE_TOPK, and
 * kvfmt.cl before it for QE_FP64).
 *
 * kld_rows: for row r of zp = base logits [n_rows][n_vocab] and
 *   zq = variant logits (the same positions), with the rows' statistics
 *   sp / sq (logit_stats rows row0 + r: lse, target log-prob, arg-max):
 *     KLD  = sum_v p_v (log p_v - log q_v)
 *          = sum_v p_v ((zp_v - zq_v) - (lse_p - lse_q)),  p_v = exp(zp_v - lse_p)
 *   with lse_p, lse_q recomputed here in the accumulator's precision (a float
 *   lse's rounding, ~1e-6 at |lse| ~ 10, would shift every KLD by as much)
 *     dp   = exp(log q_t) - exp(log p_t)   (t the row's target; NAN if none)
 *     same = 1 if the arg-maxes agree, else 0
 *   out[row0 + r] = {KLD, dp, same, 0}.
 *   The difference zp - zq is taken first: for close models it is small and
 *   exact-ish (no cancellation against lse), and for identical logits every
 *   term is exactly 0, so a model against itself gives KLD = 0 and dp = 0.
 *   Terms are accumulated in double when the device has fp64, else float.
 * One work-group of QE_RW work-items per row: global (n_rows*QE_RW), local
 *   (QE_RW); two passes over both rows (sum of exponentials, then the KLD
 *   sum); each work-item sums ids t, t+QE_RW, ... in order, then a fixed
 *   tree: a row's result does not depend on the batch.
 */
#ifdef QE_FP64
typedef double kld_acc;
#else
typedef float kld_acc;
#endif

__kernel __attribute__((reqd_work_group_size(QE_RW, 1, 1)))
void kld_rows(const __global float *zp, const __global float *sp, /* base logits, stats */
              const __global float *zq, const __global float *sq, /* variant logits, stats */
              int n_vocab, __global float *out, int row0)         /* out [row0+n_rows][4] */
{
    __local kld_acc part[2][QE_RW];
    const int r = get_group_id(0), t = get_local_id(0);
    const int stride = 4 + 2 * QE_TOPK;
    const __global float *a = zp + (size_t)r * n_vocab, *b = zq + (size_t)r * n_vocab;
    const __global float *pa = sp + (size_t)(row0 + r) * stride, *pb = sq + (size_t)(row0 + r) * stride;

    /* log-sum-exp of both rows in kld_acc precision, from the maxima that
     * logit_stats found (stats[3]). */
    const kld_acc mp = pa[3], mq = pb[3];
    kld_acc sa = 0, sb = 0;
    for (int i = t; i < n_vocab; i += QE_RW) {
        sa += exp((kld_acc)a[i] - mp);
        sb += exp((kld_acc)b[i] - mq);
    }
    part[0][t] = sa;
    part[1][t] = sb;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = QE_RW / 2; off > 0; off >>= 1) {
        if (t < off) {
            part[0][t] += part[0][t + off];
            part[1][t] += part[1][t + off];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const kld_acc lse_p = mp + log(part[0][0]), lse_q = mq + log(part[1][0]);
    const kld_acc dl = lse_p - lse_q;
    barrier(CLK_LOCAL_MEM_FENCE);

    kld_acc s = 0;
    for (int i = t; i < n_vocab; i += QE_RW) {
        const kld_acc d = ((kld_acc)a[i] - (kld_acc)b[i]) - dl;
        s += exp((kld_acc)a[i] - lse_p) * d;
    }
    part[0][t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = QE_RW / 2; off > 0; off >>= 1) {
        if (t < off)
            part[0][t] += part[0][t + off];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) {
        __global float *o = out + (size_t)(row0 + r) * 4;
        o[0] = (float)part[0][0];
        o[1] = exp(pb[1]) - exp(pa[1]); /* NAN without a target (log-probs are NAN) */
        o[2] = as_int(pa[2]) == as_int(pb[2]) ? 1.0f : 0.0f;
        o[3] = 0.0f;
    }
}
