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

/* x is read past L1 (ld.global.cg): in gemv_persist another
 * multiprocessor wrote it during this launch, and this one's L1 may still
 * hold the buffer from two phases ago */
inline float4 ld_cg4(const __global float *p)
{
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "l"((ulong)p)
                 : "memory");
    return v;
}

/* A chain of dependent GEMVs (y = W_p x, then x = y), decode's shape at B 1:
 * rows of K f16 weights, a warp a row at a time (16-byte loads, the dot in
 * f32, a shuffle tree), row r of phase p from matrix p % nm. gemv_one is
 * one phase a launch; gemv_persist runs all phases in one launch with
 * grid_barrier's barrier between them (all work-groups resident). The same
 * arithmetic per row in both, so the same bits. The code is as measured:
 * the row loop written as a macro both kernels share moved the two times
 * by about 0.6 us in opposite directions (README says so). */
inline void gemv_rows(const __global ushort *w, const __global float *x, __global float *y, int K,
                      int N)
{
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31;
    const int wpg = get_local_size(0) >> 5;
    for (int r = get_group_id(0) * wpg + warp; r < N; r += get_num_groups(0) * wpg) {
        const __global ushort *row = w + (size_t)r * K;
        float s = 0.0f;
        for (int k = 8 * lane; k < K; k += 256) {
            const uint4 q = *(const __global uint4 *)(row + k);
            const half *h = (const half *)&q;
            const float4 x0 = ld_cg4(x + k), x1 = ld_cg4(x + k + 4);
            s += vload_half(0, h) * x0.x;
            s += vload_half(1, h) * x0.y;
            s += vload_half(2, h) * x0.z;
            s += vload_half(3, h) * x0.w;
            s += vload_half(4, h) * x1.x;
            s += vload_half(5, h) * x1.y;
            s += vload_half(6, h) * x1.z;
            s += vload_half(7, h) * x1.w;
        }
        for (int m = 16; m; m >>= 1)
            s += ptx_shfl_xor(s, m);
        if (lane == 0)
            y[r] = s * (1.0f / 32.0f); /* keeps the chain's values in range */
    }
}

__kernel void gemv_one(const __global ushort *w, ulong woff, const __global float *x,
                       __global float *y, int K, int N)
{
    gemv_rows(w + woff, x, y, K, N);
}

__kernel void gemv_persist(const __global ushort *w, __global float *b0, __global float *b1, int K,
                           int N, int nm, int phases, volatile __global int *cnt, int pf)
{
    const int groups = (int)get_num_groups(0);
    const int wpg = get_local_size(0) >> 5, lane = get_local_id(0) & 31;
    for (int p = 0; p < phases; p++) {
        gemv_rows(w + (size_t)(p % nm) * N * K, p & 1 ? b1 : b0, p & 1 ? b0 : b1, K, N);
        /* pf: ask L2 for the rows this warp multiplies next phase before
           waiting for the others (their order as gemv_rows takes them) */
        if (pf && p + 1 < phases) {
            const __global ushort *wn = w + (size_t)((p + 1) % nm) * N * K;
            for (int r = get_group_id(0) * wpg + (get_local_id(0) >> 5); r < N; r += groups * wpg)
                for (int k = 64 * lane; k < K; k += 64 * 32)
                    asm volatile("prefetch.global.L2 [%0];" ::"l"((ulong)(wn + (size_t)r * K + k)));
        }
        /* grid_barrier's, each work-item fencing its own stores first; a
           spin past the cap gives up (the results then differ). Written
           out: as a helper shared with grid_barrier this launch ran 0.4 us
           a phase slower on the H200. */
        asm volatile("membar.gl;" ::: "memory");
        barrier(CLK_GLOBAL_MEM_FENCE);
        if (get_local_id(0) == 0) {
            atomic_inc(cnt);
            long spin = 0;
            while (*cnt < (p + 1) * groups && ++spin < (1L << 26))
                ;
            asm volatile("membar.gl;" ::: "memory");
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
}
