/* wgmma_probe.cl - one Hopper wgmma (m64n8k16, f16 in, f32 sums, A from
 * registers, B from local memory by descriptor) for bench/wgmma_probe.c,
 * after kernels/ptx.cl and kernels/wgmma.cl (whose macros wg_tile uses). NVIDIA's OpenCL compiler targets sm_90, where ptxas
 * refuses wgmma (sm_90a only), so the instructions are written here as PTX
 * comments ("// @WG..." with their operands) that the probe replaces in the
 * program's PTX before loading it back as a binary for sm_90a (each
 * wgmma accumulates: d = a b + d, d zero to start).
 * a: 64 rows x 16 halves (8 uints a row); b: 8 rows n x 16 halves k (W[n][k],
 * as weights are stored); d: 64 x 8 floats, d = a b^T. One warpgroup. */
__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void wg_probe(const __global uint *a, const __global uint *b, __global float *d)
{
    /* two 8 x 8 core matrices of B (k 0..7, 8..15), each 8 rows n of 16
       bytes, 128 bytes apart */
    __local uint bs[64] __attribute__((aligned(128)));
    const int tid = get_local_id(0), w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    if (tid < 64) {
        const int n = tid >> 3, kk = tid & 7; /* pair kk of row n: k = 2 kk, 2 kk + 1 */
        bs[32 * (kk >> 2) + 4 * n + (kk & 3)] = b[8 * n + kk];
    }
    WG_PROXY(); /* generic-proxy stores -> async proxy */
    barrier(CLK_LOCAL_MEM_FENCE);
    /* mma.m16n8k16's A fragment for warp w's rows 16 w .. 16 w + 15 */
    const int r = 16 * w + g;
    const uint a0 = a[8 * r + t], a1 = a[8 * (r + 8) + t];
    const uint a2 = a[8 * r + t + 4], a3 = a[8 * (r + 8) + t + 4];
    float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
    /* start address >> 4, LBO and SBO 128 bytes (>> 4), no swizzle */
    const ulong desc = ((ulong)(ptx_smem(bs) >> 4) & 0x3FFFul) | (8ul << 16) | (8ul << 32);
    asm volatile("// @WGFENCE" : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3) :: "memory");
    asm volatile("// @WGMMA8RS {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8"
                 : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
    asm volatile("// @WGCOMMIT" ::: "memory");
    asm volatile("// @WGWAIT0" : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3) :: "memory");
    d[8 * r + 2 * t] = d0;
    d[8 * r + 2 * t + 1] = d1;
    d[8 * (r + 8) + 2 * t] = d2;
    d[8 * (r + 8) + 2 * t + 1] = d3;
}

/* ---- wg_tile: a 128 x 128 tile over one 32-wide K slice, as a prefill
 * kernel would lay it out: two warpgroups (256 work-items), each m64n128k16
 * twice (k 0..15, 16..31), A (128 rows of X) and B (128 weight rows) both
 * from local memory by descriptor, K-major with the 64-byte swizzle that
 * kernels/wgmma.cl's wg_desc describes (mma.cl's MT_CHX): row r's 64 bytes
 * at 64 r, its 16-byte chunk c at c ^ (r / 2 % 4), the arrays on 512-byte
 * boundaries; step s starts 32 s bytes into the rows. iters > 1 repeats
 * the two steps, summing into the same accumulators, to time the
 * instruction's rate. d = iters a b^T. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void wg_tile(const __global uint4 *a, const __global uint4 *b, __global float *d, int iters)
{
    __local uint4 as[512] __attribute__((aligned(512)));
    __local uint4 bs[512] __attribute__((aligned(512)));
    const int tid = get_local_id(0), wg = tid >> 7, w = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    for (int j = 0; j < 2; j++) { /* 128 rows x 4 chunks of 8 halves, each operand */
        const int id = tid + 256 * j, r = id >> 2, c = id & 3, at = 4 * r + (c ^ ((r >> 1) & 3));
        as[at] = a[id];
        bs[at] = b[id];
    }
    WG_PROXY();
    barrier(CLK_LOCAL_MEM_FENCE);
    float c[64];
    for (int i = 0; i < 64; i++)
        c[i] = 0.0f;
    /* warpgroup wg's 64 rows start 4096 bytes in; step s 32 s bytes into
       the rows */
    const ulong da0 = wg_desc(as + 256 * wg), da1 = wg_desc(as + 256 * wg + 2);
    const ulong db0 = wg_desc(bs), db1 = wg_desc(bs + 2);
    WG_FENCE(c);
    for (int it = 0; it < iters; it++) {
        WG_MMA(c, da0, db0);
        WG_MMA(c, da1, db1);
        WG_COMMIT();
        WG_WAIT1(c);
    }
    WG_WAIT0(c);
    /* thread (warp w, g, t) of warpgroup wg: rows 64 wg + 16 w + g (+ 8),
       outputs 8 j + 2 t (+ 1), as mma.sync's m16n8 tiles j */
    const int r = 64 * wg + 16 * w + g;
    for (int j = 0; j < 16; j++) {
        d[128 * r + 8 * j + 2 * t] = c[4 * j];
        d[128 * r + 8 * j + 2 * t + 1] = c[4 * j + 1];
        d[128 * (r + 8) + 8 * j + 2 * t] = c[4 * j + 2];
        d[128 * (r + 8) + 8 * j + 2 * t + 1] = c[4 * j + 3];
    }
}
