/* ptx.cl - inline-PTX helpers shared by the tensor-core kernels (mma.cl,
 * attn_mma.cl). No kernels; prepended to the programs that use them, which
 * the engine builds only where lib/cl's probe says mma.sync and shfl.sync
 * compile and compute right (qe_cl_caps.ptx_mma, probe.cl).
 *
 * Fragment layout of mma.m16n8k16 (PTX ISA "Matrix Fragments for
 * mma.m16n8k16", checked by kernels/probe.cl): lane = 4 g + t; A register r
 * (two f16) holds row g + 8 (r & 1), k slots 2t + 8 (r >> 1) + {0, 1}; B
 * register r holds k slots 2t + 8 r + {0, 1} of column g; accumulator e
 * holds row g + 8 (e >> 1), column 2t + (e & 1).
 */
#define QE_PTX 1 /* for the files after this one */

/* Two floats -> f16x2 (lo in the low half), round to nearest even. */
inline uint mma_pack(float lo, float hi)
{
    uint r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* acc (16x8 f32) += a (16x16 f16) b (16x8 f16) */
#define MMA(acc, a, b)                                                                            \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "                             \
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                          \
                 : "+f"((acc)[0]), "+f"((acc)[1]), "+f"((acc)[2]), "+f"((acc)[3])                 \
                 : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"((b)[0]), "r"((b)[1]))

/* v of lane (this lane ^ m) of the warp (butterfly shuffle, all lanes). */
inline float ptx_shfl_xor(float v, int m)
{
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
    return r;
}

/* v of lane src of the warp (all lanes) */
inline float ptx_shfl_idx(float v, int src)
{
    float r;
    asm volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(src));
    return r;
}

/* a / b correctly rounded (div.rn.f32: IEEE 754 round to nearest even,
 * subnormals kept), where OpenCL's float division may be 2.5 ulp off.
 * It is the CPU's a / b, and what kvfmt.cl's KV_DIV means elsewhere by
 * (float)((double)a / (double)b): rounding the double quotient again to
 * float is innocuous for division, as 53 >= 2 * 24 + 2 bits (Figueroa,
 * "When is double rounding innocuous?", 1995). That is also why compilers
 * narrow that form to a float division, which NVIDIA's OpenCL made
 * div.full.f32 (2 ulp): lib/engine_kv.c build_kv. */
inline float ptx_div_rn(float a, float b)
{
    float r;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

/* 2^x on the special function unit (ex2.approx.ftz: at most 2 ulp off,
 * 2^-inf = +0, subnormal results flushed): one instruction, where OpenCL's
 * exp is a range-reduced sequence around the same one. */
inline float ptx_ex2(float x)
{
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

/* f16x2 arithmetic, round to nearest even, subnormals kept (no .ftz) */
inline uint ptx_hsub2(uint a, uint b)
{
    uint r;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
inline uint ptx_hmul2(uint a, uint b)
{
    uint r;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* bytes of {b, a} picked by selector nibbles (PTX prmt.b32) */
inline uint ptx_prmt(uint a, uint b, uint sel)
{
    uint r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
    return r;
}

/* cp.async (sm_80+; lib/cl's probe checks it with the rest): copy 16 (or 4)
 * bytes from global memory to local memory without passing through
 * registers; bytes past src_size (0 .. the copy size) are zero-filled and
 * not read. dst is a shared-space address (ptx_smem). A thread's copies
 * since its last ptx_cp_commit form a group; ptx_cp_wait(n) waits until at
 * most n of its groups are pending (then a barrier shows them to the other
 * work-items). "memory" keeps the compiler from moving local accesses
 * across them. */
inline uint ptx_smem(const __local void *p) { return (uint)(size_t)p; }
inline void ptx_cp16(uint dst, const __global void *src, uint src_size)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 :
                 : "r"(dst), "l"((ulong)src), "r"(src_size)
                 : "memory");
}
inline void ptx_cp4(uint dst, const __global void *src, uint src_size)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;"
                 :
                 : "r"(dst), "l"((ulong)src), "r"(src_size)
                 : "memory");
}
#define ptx_cp_commit() asm volatile("cp.async.commit_group;" ::: "memory")
#define ptx_cp_wait(n) asm volatile("cp.async.wait_group %0;" ::"n"(n) : "memory")

/* ldmatrix.x4 (sm_75+; the probe checks it): four 8 x 8 matrices of f16
 * from local memory, one 16-byte row of each per lane address: lane l
 * names row l % 8 of matrix l / 8, and lane 4 g + t receives the pair t of
 * row g of matrix j in component j. A whole warp must call it. "memory"
 * keeps it after the barrier that shows cp.async's copies. */
inline uint4 ptx_ldsm4(uint addr)
{
    uint4 r;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "r"(addr)
                 : "memory");
    return r;
}

/* ldmatrix.x4.trans: the same four matrices transposed: lane 4 g + t
 * receives rows 2 t and 2 t + 1 of column g of matrix j (the lower row in
 * the low half) in component j, the B fragment of an mma over the rows'
 * index (attn_mma's V: rows are keys). */
inline uint4 ptx_ldsm4t(uint addr)
{
    uint4 r;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "r"(addr)
                 : "memory");
    return r;
}
