/* rope.cl - rotary position embedding, in place, both layouts.
 *
 * rope: for logical row r (sequence s = r / n_tok, position p = r % n_tok),
 *   buffer row s * seq_stride + p, head h < n_heads, pair i < n_rot/2:
 *     (a, b) = (x[2i], x[2i+1])        layout 0 (QE_ROPE_PAIRS)
 *     (a, b) = (x[i], x[i + n_rot/2])  layout 1 (QE_ROPE_HALVES)
 *     a' = a cos - b sin;  b' = a sin + b cos
 *   where (cos, sin) = cs[p][i], a table the host computes in double from
 *   rope_base, rope_freq_scale and the optional rope_freqs divisors, so the
 *   angle (up to n_ctx radians) is not rounded to float before cos/sin.
 *   Dimensions n_rot .. head_dim-1 are left alone.
 * global (n_rot/2, n_heads, n_rows), any local size. Positions start at 0
 *   (prefill from an empty cache); p < n_ctx of the table.
 * The rotation is qkv.cl's rope_pair (explicit fused multiply-adds),
 * which mma.cl's MT_ROPE build applies in the Q and K matmuls' epilogue:
 * where it runs, this kernel does not, and the bits are the same either
 * way.
 */
__kernel void rope(__global float *x, int ld,      /* rows of ld floats */
                   int n_tok, int seq_stride,
                   int head_dim, int n_rot, int layout,
                   const __global float2 *cs)      /* [n_ctx][n_rot/2] */
{
    const int i = get_global_id(0), h = get_global_id(1), r = get_global_id(2);
    const int half_rot = n_rot / 2;
    const int p = r % n_tok;
    __global float *v = x + ((size_t)(r / n_tok) * seq_stride + p) * ld + (size_t)h * head_dim;
    const int ia = layout == 0 ? 2 * i : i;
    const int ib = layout == 0 ? 2 * i + 1 : i + half_rot;
    const float2 c = cs[(size_t)p * half_rot + i];
    const float2 y = rope_pair(v[ia], v[ib], c);
    v[ia] = y.x;
    v[ib] = y.y;
}
