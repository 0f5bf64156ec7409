/* weights.cl - how kernels read one weight element: the single device-side
 * dispatch on a weight's storage format.
 *
 * Programs that read weights (embed.cl, matmul.cl) are built together with
 * this file and -DQE_WT=<format>, one program per format in use; the values
 * are enum engine_wfmt in lib/engine.c:
 *   QE_WT 0  f32: rows of float
 *   QE_WT 1  f16: rows of IEEE half, read with vload_half (storage only: no
 *                 cl_khr_fp16 needed, and NVIDIA has none)
 *   QE_WT 2  q8_0: GGML Q8_0 blocks (f16 d | int8 qs[32]; x = qs[j] * d),
 *                 re-laid out per row by the host (lib/engine.c,
 *                 upload_split_blocks): the row's nb = K/32 scales d as f16,
 *                 zero-padded to a multiple of 16 bytes (sb bytes), then the
 *                 blocks' 32 quant bytes each, in order
 *   QE_WT 3  q4_0: GGML Q4_0 blocks (f16 d | u8 qs[16], element j in the low
 *                 nibble of qs[j], j + 16 in the high nibble; x = (q - 8) * d),
 *                 re-laid out the same way: sb bytes of scales, then the
 *                 blocks' 16 quant bytes each
 * A weight buffer holds ne[1] rows of row_bytes bytes each. The split layout
 * puts every row's quants on a 16-byte boundary, so kernels that stream
 * weights (kernels/mma.cl) read 16 quant bytes with one vector load, where
 * GGML's 34- and 18-byte blocks are only 2-byte aligned. row_bytes =
 * sb + 32 nb (q8_0) or sb + 16 nb (q4_0) with 2 nb <= sb < 2 nb + 16, so
 * nb = row_bytes / 34 (/ 18): wt_row_blocks. The value is the same float
 * product (float)q * d that lib/quant.c's dequantizer computes, so a
 * quantized weight reaches the matmul bit-identical to the CPU reference's.
 *
 * wt_row_scale_bytes(row_bytes): sb (0 for f32 / f16); kernels that read quants
 * directly compute it once.
 * wt_load(w, row_bytes, row, i): element i of row `row`, as float.
 */
#ifndef QE_WT
#error "build with -DQE_WT=<weight format>"
#endif

#if QE_WT == 0
inline int wt_row_scale_bytes(ulong row_bytes) { return 0; }
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    return ((const __global float *)(w + (ulong)row * row_bytes))[i];
}
#elif QE_WT == 1
inline int wt_row_scale_bytes(ulong row_bytes) { return 0; }
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    return vload_half(i, (const __global half *)(w + (ulong)row * row_bytes));
}
#elif QE_WT == 2
inline int wt_row_blocks(ulong row_bytes) { return (int)(row_bytes / 34); }
inline int wt_scale_bytes(int nb) { return (2 * nb + 15) & ~15; }
inline int wt_row_scale_bytes(ulong row_bytes) { return wt_scale_bytes(wt_row_blocks(row_bytes)); }
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    const __global uchar *r = w + (ulong)row * row_bytes;
    const int sb = wt_scale_bytes(wt_row_blocks(row_bytes));
    return (float)as_char(r[sb + i]) * vload_half(i >> 5, (const __global half *)r);
}
#elif QE_WT == 3
inline int wt_row_blocks(ulong row_bytes) { return (int)(row_bytes / 18); }
inline int wt_scale_bytes(int nb) { return (2 * nb + 15) & ~15; }
inline int wt_row_scale_bytes(ulong row_bytes) { return wt_scale_bytes(wt_row_blocks(row_bytes)); }
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    const __global uchar *r = w + (ulong)row * row_bytes;
    const int sb = wt_scale_bytes(wt_row_blocks(row_bytes));
    const int j = i & 31;
    const uchar b = r[sb + (i >> 5) * 16 + (j & 15)];
    const int q = j < 16 ? (b & 15) : (b >> 4);
    return (float)(q - 8) * vload_half(i >> 5, (const __global half *)r);
}
#else
#error "unknown QE_WT weight format"
#endif
