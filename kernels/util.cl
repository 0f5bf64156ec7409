/* util.cl - small general-purpose kernels (buffer fills, vector updates).
 * Also the kernels lib/cl.c's tests use to prove embed -> build -> cache ->
 * run. Element counts are passed explicitly so the global size may be
 * rounded up to a work-group multiple. */

/* fill_f32: x[i] = v for i < n. 1D, any work-group shape. */
__kernel void fill_f32(__global float *x, float v, uint n)
{
    uint i = (uint)get_global_id(0);
    if (i < n)
        x[i] = v;
}

/* axpy_f32: y[i] = a * x[i] + y[i] for i < n. 1D, any work-group shape. */
__kernel void axpy_f32(__global float *y, __global const float *x, float a, uint n)
{
    uint i = (uint)get_global_id(0);
    if (i < n)
        y[i] = fma(a, x[i], y[i]);
}

/* add_rows_f32: y[r][c] += bias[c] over a rows x cols row-major matrix.
 * 2D range (cols, rows), any work-group shape. */
__kernel void add_rows_f32(__global float *y, __global const float *bias, uint cols, uint rows)
{
    uint c = (uint)get_global_id(0), r = (uint)get_global_id(1);
    if (c < cols && r < rows)
        y[r * cols + c] += bias[c];
}
