/* qkv.cl - what a decode step does to a new query / key / value element
 * after its matmul, shared by the kernels that do it in their own launches
 * (decode.cl's rope_rows, kv.cl's kv_store) and mma.cl's one-row decode
 * build, which does it in the matmul's epilogue: one definition, so the
 * same bits either way. No kernels.
 */

/* RoPE of the pair (x0, x1) with (cos, sin) = c: (x0 c.x - x1 c.y,
 * x0 c.y + x1 c.x), each as one explicit fused multiply-add (fma rounds
 * once, on every device), so it gives the same bits wherever it is
 * compiled: rope.cl's pass, decode.cl's rope_rows and mma.cl's epilogues.
 * Not the un-fused products: with those PoCL's prefill of stories260K with
 * f16 caches came 4x further from the reference's own f16 round trip (mean
 * |d logp| 3.3e-4 against 8.5e-5, tests/check_engine_formats.c kv): where
 * two products nearly cancel, rounding the first one too costs bits that
 * the cache's rounding then magnifies. */
inline float2 rope_pair(float x0, float x1, float2 c)
{
    return (float2)(fma(x0, c.x, -(x1 * c.y)), fma(x0, c.y, x1 * c.x));
}

/* The f16 bits qe_f32_to_f16 gives NaN v: its sign and top payload bits,
 * made quiet (vstore_half's NaN is unspecified). */
inline uint f16_nan_bits(float v)
{
    const uint b = as_uint(v);
    return ((b >> 16) & 0x8000u) | 0x7e00u | ((b & 0x7fffffu) >> 13);
}

/* Element u of an f16 cache row as lib/kv_format.c writes it: rounded to
 * nearest even; a NaN as f16_nan_bits. */
inline void f16_put(__global ushort *row, size_t u, float v)
{
    if (isnan(v)) {
        row[u] = (ushort)f16_nan_bits(v);
    } else {
        vstore_half_rte(v, u, (__global half *)row);
    }
}
