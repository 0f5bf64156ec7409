/* probe.cl - one-kernel capability probes for lib/cl.c (qe_cl_probe).
 *
 * Each build defines exactly one QE_PROBE_* macro, so a feature the compiler
 * rejects only breaks its own probe. A probe that fails to build means "not
 * available". Every probe also computes something the host checks, because
 * some compilers accept code they then miscompile or run as a no-op.
 */

#ifdef QE_PROBE_FP16
/* half arithmetic (cl_khr_fp16). out[i] = in[i] * 1.5h + 0.25h computed in
 * half; inputs are chosen so every result is exact in half.
 * Any work-group shape. */
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
__kernel void probe_fp16(__global const float *in, __global float *out)
{
    size_t i = get_global_id(0);
    half a = (half)in[i];
    half b = (half)1.5f;
    half c = a * b + (half)0.25f;
    out[i] = (float)c;
}
#endif

#ifdef QE_PROBE_SUBGROUPS
/* sub_group_reduce_add (cl_khr_subgroups, or cl_intel_subgroups which
 * provides the same built-ins). out[2i] = the subgroup's sum of ones,
 * out[2i+1] = get_sub_group_size(); the host checks they agree. */
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
__kernel void probe_subgroups(__global int *out)
{
    size_t i = get_global_id(0);
    out[2 * i] = (int)sub_group_reduce_add(1u);
    out[2 * i + 1] = (int)get_sub_group_size();
}
#endif

#ifdef QE_PROBE_HALF_STORAGE
/* vstore_half / vload_half, core in OpenCL 1.x even without cl_khr_fp16.
 * h[i] = in[i] rounded to half (round to nearest even); out[i] = h[i] read
 * back as float. Any work-group shape. */
__kernel void probe_half_storage(__global const float *in, __global half *h,
                                 __global float *out)
{
    size_t i = get_global_id(0);
    vstore_half(in[i], i, h);
    out[i] = vload_half(i, h);
}
#endif

#ifdef QE_PROBE_PTX_SHFL
/* NVIDIA inline PTX: butterfly shuffle across a warp. Run with one
 * work-group of 32: out[i] = i ^ 1. */
__kernel void probe_ptx_shfl(__global int *out)
{
    int v = (int)get_local_id(0);
    int r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v));
    out[get_global_id(0)] = r;
}
#endif

#ifdef QE_PROBE_PTX_MMA
/* NVIDIA inline PTX tensor-core MMA: D(16x8 f32) = A(16x16 f16, row-major)
 * x B(16x8 f16) + C(16x8 f32). Run with one work-group of 32 (one warp).
 * a: 16x16 half bits, row-major; bt: B transposed (8x16, i.e. B's columns
 * contiguous, the ".col" operand layout); c, d: 16x8 row-major floats.
 * Fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k16"): with
 * g = lane / 4 and t = lane % 4, A reg r holds row g + 8*(r&1), columns
 * 2t + 8*(r>>1) and +1; B reg r holds rows 2t + 8r and +1 of column g;
 * C/D element e holds row g + 8*(e>>1), column 2t + (e&1). */
__kernel void probe_ptx_mma(__global const ushort *a, __global const ushort *bt,
                            __global const float *c, __global float *d)
{
    uint lane = (uint)get_local_id(0);
    uint g = lane >> 2, t = lane & 3;
    uint ar[4], br[2];
    for (uint r = 0; r < 4; r++) {
        uint row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
        ar[r] = (uint)a[row * 16 + col] | ((uint)a[row * 16 + col + 1] << 16);
    }
    for (uint r = 0; r < 2; r++) {
        uint k = 2 * t + 8 * r;
        br[r] = (uint)bt[g * 16 + k] | ((uint)bt[g * 16 + k + 1] << 16);
    }
    float cr[4], dr[4];
    for (uint e = 0; e < 4; e++)
        cr[e] = c[(g + 8 * (e >> 1)) * 8 + 2 * t + (e & 1)];
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(dr[0]), "=f"(dr[1]), "=f"(dr[2]), "=f"(dr[3])
                 : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]),
                   "f"(cr[0]), "f"(cr[1]), "f"(cr[2]), "f"(cr[3]));
    for (uint e = 0; e < 4; e++)
        d[(g + 8 * (e >> 1)) * 8 + 2 * t + (e & 1)] = dr[e];
}
#endif

#ifdef QE_PROBE_PTX_ASYNC
/* cp.async, built after ptx.cl: one work-group of 32. Lane l < 8 copies
 * in's 16-byte chunk l to chunk 7 - l of a local buffer (lane 7 only its
 * first 8 bytes: the rest zero-filled), lanes 8 .. 15 copy in[l] to word
 * 32 + l with 4-byte copies; the other words keep 0xA5A5A5A5. out = the
 * buffer after the wait and a barrier. */
__kernel void probe_ptx_async(__global const uint *in, __global uint *out)
{
    __local uint buf[64] __attribute__((aligned(16)));
    const int l = (int)get_local_id(0);
    buf[l] = 0xA5A5A5A5u;
    buf[l + 32] = 0xA5A5A5A5u;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (l < 8)
        ptx_cp16(ptx_smem(buf + 4 * (7 - l)), in + 4 * l, l == 7 ? 8u : 16u);
    else if (l < 16)
        ptx_cp4(ptx_smem(buf + 32 + l), in + l, 4u);
    ptx_cp_commit();
    ptx_cp_wait(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    out[l] = buf[l];
    out[l + 32] = buf[l + 32];
}
#endif

#ifdef QE_PROBE_PTX_LDSM
/* ldmatrix.x4, built after ptx.cl: one work-group of 32. The 512 bytes of
 * in go to a local buffer (32 rows of 16 bytes); lane l names row 31 - l;
 * out[4 l + j] = component j of lane l's result. */
__kernel void probe_ptx_ldsm(__global const uint *in, __global uint *out)
{
    __local uint buf[128] __attribute__((aligned(16)));
    const int l = (int)get_local_id(0);
    for (int i = 0; i < 4; i++)
        buf[4 * l + i] = in[4 * l + i];
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint4 v = ptx_ldsm4(ptx_smem(buf + 4 * (31 - l)));
    out[4 * l] = v.x;
    out[4 * l + 1] = v.y;
    out[4 * l + 2] = v.z;
    out[4 * l + 3] = v.w;
}
#endif

#ifdef QE_PROBE_WGMMA
/* wgmma, built after ptx.cl and wgmma.cl by qe_cl_build_wgmma: one
 * warpgroup (128 work-items). a: 64 rows x 32 halves, b: 128 rows x 32
 * halves (B^T, as weights are stored), d = a b^T (64 x 128 floats). Both
 * operands staged in local memory as mma.cl's MT_WG build stages a slice
 * (wgmma.cl's 64-byte swizzle): 16-byte chunk c of row r at uint 16 r +
 * 4 (c ^ (r / 2 % 4)), on 512-byte boundaries. */
__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void probe_wgmma(__global const uint4 *a, __global const uint4 *b, __global float *d)
{
    __local uint as[64 * 16] __attribute__((aligned(512)));
    __local uint bs[128 * 16] __attribute__((aligned(512)));
    const int tid = get_local_id(0), w = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    for (int id = tid; id < 128 * 4; id += 128) {
        const int r = id >> 2, c = id & 3, at = 16 * r + 4 * (c ^ ((r >> 1) & 3));
        if (r < 64)
            *(__local uint4 *)(as + at) = a[id];
        *(__local uint4 *)(bs + at) = b[id];
    }
    WG_PROXY();
    barrier(CLK_LOCAL_MEM_FENCE);
    float c[64];
    for (int i = 0; i < 64; i++)
        c[i] = 0.0f;
    WG_FENCE(c);
    WG_MMA(c, wg_desc(as), wg_desc(bs));
    WG_MMA(c, wg_desc(as + 8), wg_desc(bs + 8)); /* k 16 .. 31: 32 bytes into the rows */
    WG_COMMIT();
    WG_WAIT0(c);
    const int r = 16 * w + g;
    for (int j = 0; j < 16; j++)
        for (int e = 0; e < 4; e++)
            d[128 * (r + 8 * (e >> 1)) + 8 * j + 2 * t + (e & 1)] = c[4 * j + e];
}
#endif
