/* limits_probe.cl - kernels of bench/limits_probe.c: what the device and
 * NVIDIA's OpenCL allow at best, without any of qeval's work in the way.
 * Prepended by kernels/ptx.cl (MMA). */

/* One launch that does almost nothing but still depends on the previous
 * one (it reads and writes the same word): the floor of one launch in an
 * in-order queue. */
__kernel void nop(__global int *p, int v)
{
    if (get_global_id(0) == 0)
        p[0] += v;
}

/* A small dependent op shaped like decode's norms and activations: every
 * work-item reads one float the previous launch wrote and writes one. */
__kernel void step(__global const float *x, __global float *y, int n)
{
    int i = (int)get_global_id(0);
    if (i < n)
        y[i] = x[i] * 0.5f + 1.0f;
}

/* Tensor-core issue rate: each warp runs CH independent accumulator chains
 * of mma.sync m16n8k16 (f16 in, f32 accumulate) for iters steps on
 * operands held in registers (no memory traffic), then writes one float per
 * lane so the work stays observable. FLOPs = warps x iters x CH x 4096. */
#ifndef CH
#define CH 4
#endif
__kernel void mma_peak(__global float *out, int iters)
{
    uint lane = get_local_id(0) & 31;
    /* operands from the lane id and the argument, unknown to the compiler */
    uint a[4] = {lane * 0x00010001u, (lane + (uint)iters) * 0x00010001u, lane ^ 0x3c003c00u,
                 0x3c003c00u};
    uint b[2] = {0x3c00u + lane, 0x00003c00u ^ (uint)iters};
    float acc[CH][4];
    for (int c = 0; c < CH; c++)
        for (int e = 0; e < 4; e++)
            acc[c][e] = 0.0f;
    for (int it = 0; it < iters; it++)
        for (int c = 0; c < CH; c++)
            MMA(acc[c], a, b);
    float s = 0.0f;
    for (int c = 0; c < CH; c++)
        s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
    out[get_global_id(0)] = s;
}
