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
 *   r * n_heads + h), TR_N work-items a vector: global (TR_N, n_rows *
 *   n_heads), local (TR_N, tr), tr at most TR_WI / TR_N (-DTR_WI, the
 *   engine's bound; lib/engine_kv.c qe_engine_tq_items is TR_N). Where a vector
 *   fills a warp (QE_HD 32 .. 128, a multiple of 32) the warp holds it,
 *   TR_K = QE_HD / 32 consecutive elements a work-item: the butterflies of
 *   pairs inside a work-item in registers, the rest by shfl.xor, no local
 *   memory and no barrier (H100, ppl512 B 8 of the synthetic Llama-3.2-1B
 *   with a tq4 cache: see lib/engine.c run_tq_rotate). Otherwise a
 *   work-item an element, the butterflies through local memory. One
 *   work-item a vector, its arrays in private memory, had taken 145 us a
 *   launch at pp512 B 8 of Llama-3.2-1B's shape on the H200; a work-group
 *   a vector (64 work-items) 83 us; a work-item an element with pairs
 *   inside a warp exchanged by shfl.xor 51 us.
 * Every form computes each pair's a + b and a - b as tq_fwht_local does,
 * so the same floats.
 */
#ifndef TR_WI
#error "build with -DTR_WI=<most work-items of a TurboQuant work-group>"
#endif
#if QE_HD % 32 == 0 && QE_HD <= 128
#define TR_K (QE_HD / 32) /* elements a work-item */
#define TR_N 32           /* work-items a vector */
#else
#define TR_K 1
#define TR_N QE_HD
#endif
#define TR_V (TR_WI / TR_N > 1 ? TR_WI / TR_N : 1)
__kernel void tq_rotate(__global float *x, int ld, int n_heads, int inverse)
{
    const int i = get_local_id(0);
    const size_t vec = get_global_id(1);
    __global float *v = x + vec / n_heads * (size_t)ld + vec % n_heads * (size_t)QE_HD;
#if TR_N == 32
    /* element TR_K i + k in a[k]: pairs closer than TR_K in registers,
       the others lanes (len / TR_K) apart */
    float a[TR_K];
#pragma unroll
    for (int k = 0; k < TR_K; k++) {
        const int e = TR_K * i + k;
        a[k] = inverse ? v[e] : tq_sign_at(e) * v[e];
    }
#pragma unroll
    for (int len = 1; len < TR_K; len *= 2)
#pragma unroll
        for (int k = 0; k < TR_K; k++)
            if (!(k & len)) {
                const float lo = a[k], hi = a[k | len];
                a[k] = lo + hi;
                a[k | len] = lo - hi;
            }
#pragma unroll
    for (int len = TR_K; len < QE_HD; len *= 2)
#pragma unroll
        for (int k = 0; k < TR_K; k++) {
            const float b = ptx_shfl_xor(a[k], len / TR_K);
            a[k] = (i & (len / TR_K)) ? b - a[k] : a[k] + b;
        }
#pragma unroll
    for (int k = 0; k < TR_K; k++) {
        const int e = TR_K * i + k;
        v[e] = inverse ? tq_sign_at(e) * (a[k] / QE_SQRT_HD) : a[k] / QE_SQRT_HD;
    }
#else
    __local float t[TR_V][QE_HD];
    __local float *tv = t[get_local_id(1)];
    const float sg = tq_sign_at(i);
    tv[i] = inverse ? v[i] : sg * v[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    tq_fwht_local(tv, i);
    v[i] = inverse ? sg * (tv[i] / QE_SQRT_HD) : tv[i] / QE_SQRT_HD;
#endif
}
