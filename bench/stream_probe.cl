/* stream_probe.cl - bench/stream_probe.c's kernels: three ways of reading
 * the same weight matrix (N rows of rb bytes in weights.cl's Q8_0 split
 * layout: sb bytes of scales, then K quant bytes), 16 rows a work-group of
 * 256, summing what they read so the loads stay. Needs ptx.cl before it. */
#ifndef PU
#define PU 4
#endif

/* mma_skinny's pattern: warp w takes 32-byte chunks w, w + 8, ...; lane
 * (g, t) reads 8 bytes at 8t of rows g and 8 + g, and the chunk's scale;
 * PU chunks a warp in flight. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void p_skinny(const __global uchar *w, ulong rb, int sb, int K, __global uint *out)
{
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const __global uchar *base = w + (ulong)get_group_id(0) * 16 * rb;
    uint acc = 0;
    for (int c0 = warp * 32; c0 < K; c0 += 32 * 8 * PU) {
        uint2 q[PU][2];
        uint d[PU][2];
#pragma unroll
        for (int u = 0; u < PU; u++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int c = c0 + u * 256;
                const __global uchar *row = base + (ulong)(8 * j + g) * rb;
                q[u][j] = c < K ? *(const __global uint2 *)(row + sb + c + 8 * t) : (uint2)(0);
                d[u][j] = c < K ? ((const __global ushort *)row)[c >> 5] : 0;
            }
#pragma unroll
        for (int u = 0; u < PU; u++)
#pragma unroll
            for (int j = 0; j < 2; j++)
                acc += (q[u][j].x ^ q[u][j].y) + d[u][j];
    }
    if (acc == 0x9E3779B9u)
        out[0] = acc;
}

/* Rows read front to back: the group's 16 rows are one contiguous range;
 * work-item i reads 16 bytes at 16 i, 16 (i + 256), ..., 8 in flight. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void p_rows(const __global uchar *w, ulong rb, int sb, int K, __global uint *out)
{
    (void)sb;
    (void)K;
    const int tid = get_local_id(0);
    const __global uint4 *base = (const __global uint4 *)(w + (ulong)get_group_id(0) * 16 * rb);
    const int n = (int)(16 * rb / 16);
    uint acc = 0;
    for (int i0 = tid; i0 < n; i0 += 256 * 8) {
        uint4 v[8];
#pragma unroll
        for (int u = 0; u < 8; u++)
            v[u] = i0 + 256 * u < n ? base[i0 + 256 * u] : (uint4)(0);
#pragma unroll
        for (int u = 0; u < 8; u++)
            acc += v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    if (acc == 0x9E3779B9u)
        out[0] = acc;
}

/* Staged: each stage copies PS_CH bytes of every row's quants (and their
 * scales) into local memory by cp.async, 16 bytes a copy, row by row,
 * PS_RING - 1 stages in flight; then every warp reads its skinny fragments
 * (8 bytes a lane) from local memory. */
#ifndef PS_CH
#define PS_CH 512
#endif
#ifndef PS_RING
#define PS_RING 3
#endif
#define PS_RB (PS_CH + 32) /* a staged row, padded: conflict-free 8-byte reads */
#define PS_NQ (16 * PS_CH / 16)  /* quant copies a stage */
#define PS_NS (16 * PS_CH / 256) /* scale copies a stage (PS_CH / 32 scales a row) */
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void p_stage(const __global uchar *w, ulong rb, int sb, int K, __global uint *out)
{
    __local uint qs[PS_RING][16 * PS_RB / 4] __attribute__((aligned(16)));
    __local uint ds[PS_RING][PS_CH / 4] __attribute__((aligned(16))); /* 16 rows x PS_CH/32 scales */
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const __global uchar *base = w + (ulong)get_group_id(0) * 16 * rb;
    const int n_st = (K + PS_CH - 1) / PS_CH;
    uint acc = 0;
    for (int s = 0; s < n_st + PS_RING - 1; s++) {
        if (s < n_st) { /* issue stage s */
            const int b = s % PS_RING;
#pragma unroll
            for (int i = 0; i < (PS_NQ + 255) / 256; i++) {
                const int id = tid + 256 * i, r = id / (PS_CH / 16), c = id % (PS_CH / 16);
                const int k = s * PS_CH + 16 * c;
                if (id < PS_NQ)
                    ptx_cp16(ptx_smem((__local uchar *)qs[b] + r * PS_RB + 16 * c),
                             base + (ulong)r * rb + sb + (k < K ? k : 0), k < K ? 16u : 0u);
            }
            if (tid < PS_NS) {
                const int per = PS_NS / 16, r = tid / per, c = tid % per;
                ptx_cp16(ptx_smem((__local uchar *)ds[b] + r * (PS_CH / 16) + 16 * c),
                         base + (ulong)r * rb + s * (PS_CH / 16) + 16 * c, 16u);
            }
        }
        ptx_cp_commit();
        if (s < PS_RING - 1)
            continue;
        ptx_cp_wait(PS_RING - 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        const int b = (s - PS_RING + 1) % PS_RING;
#pragma unroll
        for (int u = 0; u < PS_CH / 256; u++) /* chunks warp + 8 u of the stage */
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int c = warp + 8 * u, r = 8 * j + g;
                const uint2 q = *(const __local uint2 *)((const __local uchar *)qs[b] + r * PS_RB +
                                                         32 * c + 8 * t);
                acc += (q.x ^ q.y) + ((const __local ushort *)ds[b])[r * (PS_CH / 32) + c];
            }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (acc == 0x9E3779B9u)
        out[0] = acc;
}
