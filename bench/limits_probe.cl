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

/* The same chain with each GEMV written against its latencies (session 18):
 * every warp requests all of its rows' weights first (GW_R rows of GW_K f16,
 * GW_K / 256 uint4 a lane each), then the work-group stages x once into
 * local memory (ld.cg: another multiprocessor wrote it), then the dots, in
 * gemv_rows' order (lane's k ascending, 8 at a time; the same shuffle
 * tree), so all three kernels give the same bits. gemv_w_one is a launch a
 * phase. gemv_w_persist runs the phases in one launch with the barrier
 * between them, and with ov set requests phase p + 1's weights (which do
 * not depend on x) before phase p's barrier, so that their DRAM latency and
 * transfer pass during the barrier and x's staging: what a persistent
 * decode kernel would buy by overlapping an op's weights with the previous
 * op, measured on the simplest GEMV. */
#ifndef GW_K
#define GW_K 2048
#endif
#ifndef GW_R
#define GW_R 2
#endif
#define GW_L (GW_K / 256) /* uint4 a lane a row */

typedef struct { uint4 q[GW_R][GW_L]; } gw_rows;

inline gw_rows gw_fetch(const __global ushort *w, int N)
{
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31;
    const int wpg = get_local_size(0) >> 5, r0 = get_group_id(0) * wpg + warp;
    const int stride = get_num_groups(0) * wpg;
    gw_rows f;
#pragma unroll
    for (int i = 0; i < GW_R; i++) {
        const int r = min(r0 + i * stride, N - 1); /* past N: a repeat, not stored */
#pragma unroll
        for (int j = 0; j < GW_L; j++)
            f.q[i][j] = *(const __global uint4 *)(w + (size_t)r * GW_K + 8 * lane + 256 * j);
    }
    return f;
}

inline void gw_stage(const __global float *x, __local float *xs)
{
    for (int k = 4 * get_local_id(0); k < GW_K; k += 4 * get_local_size(0))
        *(__local float4 *)(xs + k) = ld_cg4(x + k);
    barrier(CLK_LOCAL_MEM_FENCE);
}

inline void gw_dots(const gw_rows *f, const __local float *xs, __global float *y, int N)
{
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31;
    const int wpg = get_local_size(0) >> 5, r0 = get_group_id(0) * wpg + warp;
    const int stride = get_num_groups(0) * wpg;
#pragma unroll
    for (int i = 0; i < GW_R; i++) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < GW_L; j++) {
            const uint4 q = f->q[i][j];
            const half *h = (const half *)&q;
            const int k = 8 * lane + 256 * j;
            s += vload_half(0, h) * xs[k];
            s += vload_half(1, h) * xs[k + 1];
            s += vload_half(2, h) * xs[k + 2];
            s += vload_half(3, h) * xs[k + 3];
            s += vload_half(4, h) * xs[k + 4];
            s += vload_half(5, h) * xs[k + 5];
            s += vload_half(6, h) * xs[k + 6];
            s += vload_half(7, h) * xs[k + 7];
        }
        for (int m = 16; m; m >>= 1)
            s += ptx_shfl_xor(s, m);
        const int r = r0 + i * stride;
        if (lane == 0 && r < N)
            y[r] = s * (1.0f / 32.0f);
    }
}

__kernel void gemv_w_one(const __global ushort *w, ulong woff, const __global float *x,
                         __global float *y, int K, int N)
{
    __local float xs[GW_K] __attribute__((aligned(16)));
    (void)K; /* GW_K */
    const gw_rows f = gw_fetch(w + woff, N);
    gw_stage(x, xs);
    gw_dots(&f, xs, y, N);
}

__kernel void gemv_w_persist(const __global ushort *w, __global float *b0, __global float *b1,
                             int K, int N, int nm, int phases, volatile __global int *cnt, int ov)
{
    __local float xs[GW_K] __attribute__((aligned(16)));
    (void)K;
    const int groups = (int)get_num_groups(0);
    gw_rows f = gw_fetch(w, N);
    for (int p = 0; p < phases; p++) {
        gw_stage(p & 1 ? b1 : b0, xs);
        gw_dots(&f, xs, p & 1 ? b0 : b1, N);
        /* ov 1: the next phase's weights before the barrier's fence, 2:
           after the fence, before the wait, 0: after the barrier. The
           barrier written out as in gemv_persist (a shared helper had cost
           that kernel 0.4 us a phase), with the fetch between its halves */
        if (ov == 1 && p + 1 < phases)
            f = gw_fetch(w + (size_t)((p + 1) % nm) * N * GW_K, N);
        asm volatile("membar.gl;" ::: "memory");
        barrier(CLK_GLOBAL_MEM_FENCE);
        if (ov == 2 && p + 1 < phases)
            f = gw_fetch(w + (size_t)((p + 1) % nm) * N * GW_K, N);
        if (get_local_id(0) == 0) {
            atomic_inc(cnt);
            long spin = 0;
            while (*cnt < (p + 1) * groups && ++spin < (1L << 26))
                ;
            asm volatile("membar.gl;" ::: "memory");
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
        if (!ov && p + 1 < phases)
            f = gw_fetch(w + (size_t)((p + 1) % nm) * N * GW_K, N);
    }
}
