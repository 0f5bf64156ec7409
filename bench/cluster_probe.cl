/* cluster_probe.cl - does an OpenCL launch on NVIDIA run as Hopper
 * clusters? For bench/cluster_probe.c, after kernels/ptx.cl (ptx_smem).
 * A cluster is a group of work-groups that run at once on one GPC and may
 * read and write each other's local memory (PTX "distributed shared
 * memory"). Every instruction below is PTX for sm_90, which NVIDIA's
 * OpenCL compiler takes as it is; what it cannot say is the cluster's
 * shape, a directive of the kernel's entry (.reqnctapercluster). CL_DIMS
 * writes the shape as a PTX comment ("// @CLUSTER x y z") that the probe
 * moves to the entry. The kernel: a grid of work-groups of 128, in
 * clusters of 1 x 2 (work-groups y = 2c and 2c + 1 of one x) if the launch
 * forms them. Each work-group writes its rank and the cluster's size to
 * info; where the size is 2 it also reads the other's local memory (got:
 * ld.shared::cluster) and stores into it (pushed: st.shared::cluster).
 * Session 25 (H100, driver 580.159.04): the size is 1 with either
 * directive, so NVIDIA's OpenCL does not launch clusters (README). */
/* the directive's operands as a string, e.g. CL_DIMS("1 2 1") */
#define CL_DIMS(xyz) asm volatile("// @CLUSTER " xyz)

/* this work-group's rank in its cluster (0 .. size - 1), and the size */
inline uint cl_rank(void)
{
    uint r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
inline uint cl_size(void)
{
    uint r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
    return r;
}

/* local address a (ptx_smem) of this work-group as the address of the
 * same place in work-group rank's memory (a shared::cluster address) */
inline uint cl_map(uint a, uint rank)
{
    uint r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
    return r;
}

/* 16 bytes to a shared::cluster address (cl_map's) */
inline void cl_st16(uint a, uint4 v)
{
    asm volatile("st.shared::cluster.v4.u32 [%0], {%1, %2, %3, %4};"
                 :
                 : "r"(a), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}
inline uint cl_ld(uint a)
{
    uint r;
    asm volatile("ld.shared::cluster.u32 %0, [%1];" : "=r"(r) : "r"(a) : "memory");
    return r;
}

/* every work-item of every work-group of the cluster gets here: writes
 * before it (local and remote) are seen after it. All work-items call it,
 * warps converged (.aligned). */
#define cl_sync()                                                                                  \
    asm volatile("barrier.cluster.arrive.release.aligned;\n\t"                                    \
                 "barrier.cluster.wait.acquire.aligned;" ::                                       \
                     : "memory")

__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void cluster_probe(__global uint *info, __global uint *got, __global uint *pushed)
{
    __local uint v[128], in[128] __attribute__((aligned(16)));
    CL_DIMS("1 2 1");
    const uint tid = get_local_id(0);
    const uint gid = get_group_id(1) * get_num_groups(0) + get_group_id(0);
    const uint rank = cl_rank(), n = cl_size();
    if (tid == 0) {
        info[4 * gid] = rank;
        info[4 * gid + 1] = n;
        info[4 * gid + 2] = get_group_id(1);
        info[4 * gid + 3] = 0xC0FFEEu;
    }
    if (n != 2)
        return; /* not a cluster of two: no partner to touch */
    v[tid] = gid * 1000u + tid;
    cl_sync();
    const uint x = cl_ld(cl_map(ptx_smem(v + tid), rank ^ 1u));
    if ((tid & 3) == 0)
        cl_st16(cl_map(ptx_smem(in + tid), rank ^ 1u),
                (uint4)(gid * 1000u + tid, gid * 1000u + tid + 1, gid * 1000u + tid + 2,
                        gid * 1000u + tid + 3));
    cl_sync();
    got[gid * 128 + tid] = x;
    pushed[gid * 128 + tid] = in[tid];
}
