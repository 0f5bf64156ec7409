/* weights.cl - how kernels read one weight element: the single device-side
 * dispatch on a weight's storage format.
 *
 * Programs that read weights (embed.cl, matmul.cl) are built together with
 * this file and -DQE_WT=<format>, one program per format in use; the values
 * are enum engine_wfmt in lib/engine.c:
 *   QE_WT 0  f32: rows of float
 *   QE_WT 1  f16: rows of IEEE half, read with vload_half (storage only: no
 *                 cl_khr_fp16 needed, and NVIDIA has none)
 * A weight buffer holds ne[1] rows of row_bytes bytes each (row_bytes comes
 * from the host's qe_dtype_row_bytes, so block formats fit the same shape).
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
#else
#error "unknown QE_WT weight format"
#endif
