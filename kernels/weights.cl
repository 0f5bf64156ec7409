/* weights.cl - how kernels read one weight element: the single device-side
 * dispatch on a weight's storage format.
 *
 * Programs that read weights (embed.cl, matmul.cl) are built together with
 * this file and -DQE_WT=<format>, one program per format in use; the values
 * are enum engine_wfmt in lib/engine.c:
 *   QE_WT 0  f32: rows of float
 *   QE_WT 1  f16: rows of IEEE half, read with vload_half (storage only: no
 *                 cl_khr_fp16 needed, and NVIDIA has none)
 *   QE_WT 2  q8_0: GGML Q8_0 blocks exactly as stored in the file (34 bytes:
 *                 f16 d | int8 qs[32]); x = qs[j] * d
 *   QE_WT 3  q4_0: GGML Q4_0 blocks as stored (18 bytes: f16 d | u8 qs[16],
 *                 element j in the low nibble of qs[j], j + 16 in the high
 *                 nibble); x = (q - 8) * d
 * A weight buffer holds ne[1] rows of row_bytes bytes each (row_bytes comes
 * from the host's qe_dtype_row_bytes, so block formats fit the same shape).
 * Blocks are 34 / 18 bytes, so they are not 4-byte aligned, but rows hold a
 * whole number of blocks and both sizes are even: every block, and so its
 * f16 scale, starts on a 2-byte boundary, which is all vload_half needs; the
 * quants are read as bytes. The value is the same float product
 * (float)q * d that lib/quant.c's dequantizer computes, so a quantized
 * weight reaches the matmul bit-identical to the CPU reference's.
 *
 * wt_load(w, row_bytes, row, i): element i of row `row`, as float.
 */
#ifndef QE_WT
#error "build with -DQE_WT=<weight format>"
#endif

#if QE_WT == 0
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    return ((const __global float *)(w + (ulong)row * row_bytes))[i];
}
#elif QE_WT == 1
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    return vload_half(i, (const __global half *)(w + (ulong)row * row_bytes));
}
#elif QE_WT == 2
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    const __global uchar *b = w + (ulong)row * row_bytes + (ulong)(i >> 5) * 34;
    return (float)as_char(b[2 + (i & 31)]) * vload_half(0, (const __global half *)b);
}
#elif QE_WT == 3
inline float wt_load(const __global uchar *w, ulong row_bytes, int row, int i)
{
    const __global uchar *b = w + (ulong)row * row_bytes + (ulong)(i >> 5) * 18;
    const int j = i & 31;
    const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
    return (float)(q - 8) * vload_half(0, (const __global half *)b);
}
#else
#error "unknown QE_WT weight format"
#endif
