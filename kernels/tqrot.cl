/* tqrot.cl - TurboQuant's rotation of whole head vectors in place, for
 * attn_mma.cl, which attends in the rotated domain as attention.cl does but
 * whose fragments hold no whole query or output vector to rotate (needs
 * kvfmt.cl and -DQE_HD, -DQE_SQRT_HD).
 *
 * tq_rotate: head vector h of row r of x (rows ld floats apart):
 *     inverse 0: v = H D v / sqrt(QE_HD)   (a query, before attention)
 *     inverse 1: v = D H v / sqrt(QE_HD)   (an output, after it)
 *   with attention.cl's expressions for its per-query rotations (the signs
 *   of tq_signs, the butterflies of tq_fwht through tq_fwht_local), so the
 *   same floats as there.
 * Work-group: a head vector, a work-item per element: global
 *   (n_heads * QE_HD, n_rows), local (QE_HD, 1). One work-item a vector,
 *   its arrays in private memory, had taken 145 us a launch at pp512 B 8 of
 *   Llama-3.2-1B's shape on the H200.
 */
__kernel void tq_rotate(__global float *x, int ld, int inverse)
{
    __local float t[QE_HD];
    const int i = get_local_id(0);
    __global float *v = x + get_global_id(1) * (size_t)ld + get_group_id(0) * (size_t)QE_HD;
    const float sg = tq_sign_of(tq_word((ulong)(i / 64)), i); /* tq_signs' s[i] */
    t[i] = inverse ? v[i] : sg * v[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    tq_fwht_local(t, i);
    v[i] = inverse ? sg * (t[i] / QE_SQRT_HD) : t[i] / QE_SQRT_HD;
}
