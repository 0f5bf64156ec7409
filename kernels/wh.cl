/* wh.cl - a Q8_0 / Q4_0 weight as rows of f16 (needs weights.cl, xh.cl and
 * -DQE_WT 2 or 3; built into the format's embed / matmul program).
 *
 * wt_f16: out[o][k] = wt_load(w, row_bytes, o, k) rounded to the nearest
 *   f16 (ties to even), for o0 <= o < N, k < K (a multiple of 32: whole
 *   blocks); out holds N rows of K halves (rows from o0 written: the LM
 *   head's copy is made a slice of rows at a time, lib/engine_wh.c).
 *   global (K / 8 rounded up, N - o0), any local
 *   size (lib/engine.c qe_engine_run_wt_f16 launches it); work-item i of
 *   row o converts elements 8i .. 8i + 7 with one 8-byte load and one
 *   16-byte store, so a warp reads and writes one contiguous run of the
 *   row. (A whole block a work-item, its quants in one or two 16-byte
 *   loads and four 16-byte stores, was slower on the H200: gate's copy
 *   27.7 against 24.4 us, 2.1 TB/s read and written; session 20.)
 *
 * Why: under mma a prefill matmul of Q8_0 weights runs faster as mma_tile's
 * f16 build over a copy made just before it than as its Q8_0 build, which
 * dequantizes every weight again for each 128-row tile (lib/engine_wh.c
 * says what was measured). The values are the operands the Q8_0
 * build hands the tensor cores (mma.cl's mma_q8_pair rounds the same exact
 * product q d once, to nearest even): only the k order of the sums differs.
 * Plain OpenCL, so PoCL builds it too and tests/check_engine_formats.c
 * checks it bit for bit against the host's dequantizer and f16 rounding.
 */
#if QE_WT == 2 || QE_WT == 3

__kernel void wt_f16(const __global uchar *w, ulong row_bytes, int K, int N, __global uint4 *out,
                     int o0)
{
    const int i = get_global_id(0), o = o0 + (int)get_global_id(1);
    if (i >= K / 8 || o >= N)
        return;
    const __global uchar *r = w + (ulong)o * row_bytes;
    const int b = i >> 2, j = 8 * (i & 3); /* block, first element in it */
    const float d = vload_half(b, (const __global half *)r);
    /* the split layout puts every block's quants on a 16-byte boundary
       (weights.cl): 8-byte aligned loads */
#if QE_WT == 2
    const char8 q = *(const __global char8 *)(r + wt_row_scale_bytes(row_bytes) + 32 * b + j);
    const float8 v = convert_float8(q) * d;
#else
    /* elements j .. j + 7: the low nibbles of bytes j .. (j < 16) or the
       high nibbles of bytes j - 16 .. */
    const uchar8 u =
        *(const __global uchar8 *)(r + wt_row_scale_bytes(row_bytes) + 16 * b + (j & 15));
    const float8 v = convert_float8(convert_int8(j < 16 ? u & (uchar)15 : u >> (uchar)4) - 8) * d;
#endif
    out[(size_t)o * (size_t)(K / 8) + (size_t)i] = (uint4)(xh_pair(v.s0, v.s1), xh_pair(v.s2, v.s3),
                                                           xh_pair(v.s4, v.s5), xh_pair(v.s6, v.s7));
}
#endif
