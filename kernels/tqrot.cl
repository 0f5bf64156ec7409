/* tqrot.cl - TurboQuant's rotation of whole head vectors in place, for
 * attn_mma.cl, which attends in the rotated domain as attention.cl does but
 * whose fragments hold no whole query or output vector to rotate (needs
 * kvfmt.cl, ptx.cl and -DQE_HD, -DQE_SQRT_HD, -DTR_WI).
 *
 * tq_rotate: head vector h of row r of x (rows ld floats apart):
 *     inverse 0: v = H D v / sqrt(QE_HD)   (a query, before attention)
 *     inverse 1: v = D H v / sqrt(QE_HD)   (an output, after it)
 *   with attention.cl's expressions for its per-query rotations (the signs
 *   of tq_signs, the butterflies of tq_fwht through tq_fwht_local), so the
 *   same floats as there.
 * Work-group: tr head vectors (consecutive in row-major order, vector
 *   r * n_heads + h), a work-item per element: global (QE_HD, n_rows *
 *   n_heads), local (QE_HD, tr), tr at most TR_WI / QE_HD (-DTR_WI, the
 *   engine's bound). One work-item a vector, its arrays in private memory,
 *   had taken 145 us a launch at pp512 B 8 of Llama-3.2-1B's shape on the
 *   H200; a work-group a vector (64 work-items) 83 us.
 */
#ifndef TR_WI
#error "build with -DTR_WI=<most work-items of a TurboQuant work-group>"
#endif
#define TR_V (TR_WI / QE_HD > 1 ? TR_WI / QE_HD : 1)
__kernel void tq_rotate(__global float *x, int ld, int n_heads, int inverse)
{
    __local float t[TR_V][QE_HD];
    const int i = get_local_id(0);
    __local float *tv = t[get_local_id(1)];
    const size_t vec = get_global_id(1);
    __global float *v = x + vec / n_heads * (size_t)ld + vec % n_heads * (size_t)QE_HD;
    const float sg = tq_sign_at(i);
#if QE_HD % 32 == 0
    /* tq_fwht_local's butterflies with the pairs inside a warp exchanged
       by shfl.xor (a vector fills whole warps), the rest through local
       memory: the same a + b and a - b of each pair, so the same floats,
       with 2 barriers instead of log2(QE_HD) + 1. H200, pp512 B 8 of
       Llama-3.2-1B with a tq4 cache: 51 us a launch with a barrier a stage */
    float a = inverse ? v[i] : sg * v[i];
#pragma unroll
    for (int len = 1; len < QE_HD; len *= 2) {
        if (len < 32) {
            const float b = ptx_shfl_xor(a, len);
            a = (i & len) ? b - a : a + b;
        } else {
            tv[i] = a;
            barrier(CLK_LOCAL_MEM_FENCE);
            const float lo = tv[i & ~len], hi = tv[i | len];
            a = (i & len) ? lo - hi : lo + hi;
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    v[i] = inverse ? sg * (a / QE_SQRT_HD) : a / QE_SQRT_HD;
#else
    tv[i] = inverse ? v[i] : sg * v[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    tq_fwht_local(tv, i);
    v[i] = inverse ? sg * (tv[i] / QE_SQRT_HD) : tv[i] / QE_SQRT_HD;
#endif
}
