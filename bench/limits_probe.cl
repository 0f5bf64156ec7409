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

/* A device-wide barrier, the join a persistent decode kernel (one launch a
 * step, its ops separated by barriers instead of launches) would pay where
 * qeval pays a launch: every work-group's first work-item fences its
 * stores (membar.gl), adds one to *cnt and spins until all have added, then
 * fences again; rounds of that, the work-groups all resident (the host
 * launches at most a few per compute unit, tiny ones). A spin past its cap
 * gives up and says so in fail[0] instead of hanging. */
__kernel void grid_barrier(volatile __global int *cnt, __global int *fail, int rounds)
{
    const int groups = (int)get_num_groups(0);
    __local int bad;
    if (get_local_id(0) == 0)
        bad = 0;
    for (int r = 1; r <= rounds; r++) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (get_local_id(0) == 0 && !bad) {
            asm volatile("membar.gl;" ::: "memory");
            atomic_inc(cnt);
            long spin = 0;
            while (*cnt < r * groups)
                if (++spin > (1L << 26)) {
                    bad = 1;
                    fail[0] = 1;
                    break;
                }
            asm volatile("membar.gl;" ::: "memory");
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}
