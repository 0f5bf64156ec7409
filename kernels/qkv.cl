/* qkv.cl - what a decode step does to a new query / key / value element
 * after its matmul, shared by the kernels that do it in their own launches
 * (decode.cl's rope_rows, kv.cl's kv_store) and mma.cl's one-row decode
 * build, which does it in the matmul's epilogue: one definition, so the
 * same bits either way. No kernels.
 */

/* RoPE of the pair (x0, x1) with (cos, sin) = c: (x0 c.x - x1 c.y,
 * x0 c.y + x1 c.x). Not contracted into fused multiply-adds wherever it is
 * compiled (rope_rows' program has kvfmt.cl's FP_CONTRACT OFF at file
 * scope, mma.cl's does not). */
inline float2 rope_pair(float x0, float x1, float2 c)
{
#pragma OPENCL FP_CONTRACT OFF
    return (float2)(x0 * c.x - x1 * c.y, x0 * c.y + x1 * c.x);
}

/* Element u of an f16 cache row as lib/kv_format.c writes it: rounded to
 * nearest even; a NaN keeps its sign and top payload bits, made quiet, as
 * qe_f32_to_f16 writes it (vstore_half's NaN is unspecified). */
inline void f16_put(__global ushort *row, size_t u, float v)
{
    if (isnan(v)) {
        const uint b = as_uint(v);
        row[u] = (ushort)(((b >> 16) & 0x8000) | 0x7e00 | ((b & 0x7fffff) >> 13));
    } else {
        vstore_half_rte(v, u, (__global half *)row);
    }
}
