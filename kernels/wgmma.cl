/* wgmma.cl - Hopper's warpgroup MMA (wgmma) for kernels/mma.cl's MT_WG build
 * of mma_tile, after ptx.cl.
 *
 * NVIDIA's OpenCL compiler emits PTX for .target sm_90, where ptxas refuses
 * wgmma (sm_90a only). So each step here is a PTX comment carrying its
 * operands ("// @WGMMA128SS {%f..}, %rd.., %rd.."): the compiler allocates
 * the registers and keeps the dataflow (every accumulator is an in/out
 * operand of each step, the wait included), ptxas for sm_90 sees a comment,
 * and lib/cl/build.c (qe_cl_build_wgmma) then replaces the comments with the
 * instructions, sets .target sm_90a and builds the patched PTX as the
 * program's binary. bench/wgmma_probe.c showed the route on the H200: exact
 * products, 827-857 TFLOP/s from local memory (mma.sync: 638). Built any
 * other way these macros compute nothing, so only a program built by
 * qe_cl_build_wgmma may use them, and lib/cl's probe (caps.wgmma) checks
 * the result before the engine does.
 *
 * The operand layout (PTX ISA, "Asynchronous Warpgroup Level Matrix Shared
 * Memory Layout"): A (64 rows x 16 k of a warpgroup) and B (N = 128 rows x
 * 16 k, the weight rows as stored) both K-major with the 64-byte swizzle:
 * each row's 64 bytes (32 halves of a slice) in one piece, its 16-byte
 * chunk c at c ^ (r / 2 % 4), 8-row atoms of 512 bytes, which must start
 * on a 512-byte boundary (the swizzle XORs address bits 4-5 with bits
 * 7-8). That is mma.cl's MT_CHX, the layout its ldmatrix reads too, so a
 * slice's cp.async copies are the same as the mma.sync build's. (The
 * unswizzled layout, 8 x 16-byte core matrices, puts a row's four chunks
 * 128 bytes apart, and its copies were what made the first MT_WG build
 * half as fast as mma.sync: H200, mma_tile 4096 x 8192 x 2048 through
 * bench/ptx_run.c, with the wgmma steps taken out 862 us against the
 * mma.sync build's copies' 317; Nsight Compute counted 32 L2 sectors and
 * 32 local-memory wavefronts a cp.async instruction, 16 and 4 ideal,
 * whether a work-item's four chunks were one row's or a quarter-warp's
 * eight rows' one chunk, and the L2 89 % busy. With this layout: 408 us,
 * mma.sync 435; session 20.) A k16 step starts 32
 * bytes into the rows (the hardware swizzles the address it forms from
 * there); the next 8-row atom is 512 bytes on (SBO; LBO is unused with a
 * swizzle). The accumulators
 * (64 floats a work-item, m64n128 f32): work-item (warp w of the
 * warpgroup, g = lane / 4, t = lane % 4) holds rows 16 w + g (+ 8) and
 * outputs 8 j + 2 t (+ 1) in c[4 j .. 4 j + 3], mma.sync's m16n8 order. */
#define WG_D64                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," \
    " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
    " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," \
    " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WG_ACC64(c)                                                                \
    "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]), \
    "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]), \
    "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]), \
    "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]), \
    "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]), \
    "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]), \
    "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]), \
    "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63])

/* A local address as an operand descriptor: start >> 4 (14 bits), LBO 16
 * bytes (unused: 1 as CUTLASS writes it), SBO 512 bytes (>> 4), the
 * 64-byte swizzle (mode 2 in bits 62-63) */
inline ulong wg_desc(const __local void *p)
{
    return ((ulong)(ptx_smem(p) >> 4) & 0x3FFFul) | (1ul << 16) | ((ulong)(512 >> 4) << 32) |
           (2ul << 62);
}

/* this work-item's local-memory writes (cp.async's too) made visible to
 * wgmma's reads (the async proxy); a barrier after it shows everyone's */
#define WG_PROXY() asm volatile("// @WGPROXY" ::: "memory")
/* before the first wgmma that reads accumulators c written otherwise */
#define WG_FENCE(c) asm volatile("// @WGFENCE" : WG_ACC64(c)::"memory")
/* c += A B^T over 16 k: m64n128k16, f16 in, f32 sums, A and B by descriptor */
#define WG_MMA(c, da, db)                                                                          \
    asm volatile("// @WGMMA128SS " WG_D64 ", %64, %65" : WG_ACC64(c) : "l"(da), "l"(db))
/* c += A B^T over 16 k: m64n128k16 with A from registers, a[0 .. 3] this
   work-item's f16 pairs in mma.sync's m16n8k16 A order (rows g, g + 8 of
   its warp's 16 and pairs t, t + 4), B by descriptor (mma.cl's MT_WG builds
   for Q8_0 / Q4_0 weights, which dequantize A, the weights, in registers) */
#define WG_MMA_RS(c, a, db)                                                                        \
    asm volatile("// @WGMMA128RS " WG_D64 ", {%64, %65, %66, %67}, %68"                          \
                 : WG_ACC64(c)                                                                     \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db))
/* the wgmmas issued since the last commit form a group */
#define WG_COMMIT() asm volatile("// @WGCOMMIT" ::: "memory")
/* wait until every group is done (WAIT0: c final, their local memory
   free) or all but the last one (WAIT1) */
#define WG_WAIT0(c) asm volatile("// @WGWAIT0" : WG_ACC64(c)::"memory")
#define WG_WAIT1(c) asm volatile("// @WGWAIT1" : WG_ACC64(c)::"memory")
