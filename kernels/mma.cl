/* mma.cl - Y = X W^T on NVIDIA tensor cores through inline PTX
 * (mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32), built only when
 * lib/cl's probe says that instruction compiles and computes right
 * (qe_cl_caps.ptx_mma). Needs ptx.cl (mma_pack, MMA), weights.cl and -DQE_WT,
 * like matmul.cl, whose output rule (yrow, accumulate) every kernel here
 * keeps (the decode kernels its arguments too; mma_tile reads X as
 * mma_xh's f16 pairs):
 *
 *   Y[yrow(r)][o] = (accumulate ? Y[yrow(r)][o] : 0) + sum_k X[r][k] W[o][k]
 *
 * Operands are rounded to f16 (X from f32; W dequantized to f32 exactly as
 * weights.cl does, then rounded), products are summed in f32 by the tensor
 * cores: the precision PyTorch's fp16 path has, measured against the double
 * reference by tests/check_mma.c on the GPU (bench/gpu_check.sh).
 *
 * Fragment layout (PTX ISA "Matrix Fragments for mma.m16n8k16", checked by
 * kernels/probe.cl): lane = 4 g + t; A register r (two f16) holds row
 * g + 8 (r & 1), k slots 2t + 8 (r >> 1) + {0, 1}; B register r holds k slots
 * 2t + 8 r + {0, 1} of column g; accumulator e holds row g + 8 (e >> 1),
 * column 2t + (e & 1). A k16 step sums over its 16 slots whatever k each
 * slot stands for, so a kernel may map slots to k as suits its loads as long
 * as A and B agree.
 *
 * Three kernels, each in its own build (the engine compiles mma_tile
 * three times: as itself, as mma_tile_pair (-DMT_PAIR, two matmuls of one
 * input in one launch) and, for SwiGLU models, as mma_tile_glu (-DMT_GLU,
 * gate and up in one launch with the SwiGLU in the epilogue); mma_skinny up to
 * six times: its work-group shape -DMS_MT / -DMS_NB / -DMS_U and a second
 * shape for calls of few output blocks, each reading X with branches,
 * without (-DMS_XFREE) or staged for one row (-DMS_X1, Q8_0 / Q4_0); and
 * mma_wide twice, -DMW_SPLIT=1 and 8):
 *   mma_tile   prefill: a work-group of 8 warps (or 4: -DMT_BM, -DMT_WN)
 *              computes a 128-row x 128-output tile; 32-wide K slices of X (f16 pairs
 *              in the order xh.cl gives the weight format, written by
 *              mma_xh (which the same build holds), norm.cl's rmsnorm_xh
 *              or ffn.cl's silu_mul_xh) and of W as stored (Q8_0 / Q4_0 quants and scales,
 *              f16; f32 converted to f16) are copied into a ring of MT_S
 *              local-memory stages by cp.async, MT_S - 1 slices in flight
 *              while one is multiplied; Q8_0 / Q4_0 are dequantized from
 *              local memory into the B fragments (see the slot order at
 *              mma_tile).
 *   mma_skinny decode calls of up to 16 rows, many weights.
 *              Bandwidth-bound, so each of 8 warps streams its own share of
 *              W's chunks of MS_CH elements (c = warp, warp + 8, ...) straight from
 *              global memory into B fragments, each lane reading its
 *              weights of a chunk with one aligned load (see
 *              MS_K below for which k each slot stands for). The 8 partial
 *              sums are added in warp order through local memory.
 *   mma_wide   decode calls of more rows: mma_skinny's sums in its order,
 *              laid out as 64-row tiles with X staged in local memory.
 * Batch invariance: every output is a fixed chain of mma steps over k (and,
 * in the decode kernels, a fixed sum over the 8 chains) that does not depend
 * on the other rows in the call or on their number: a row's result is the
 * same alone or in a batch. mma_tile orders k differently from the decode
 * kernels, so their results differ in the last bits; the engine uses
 * mma_tile for prefill and the decode kernels for every decode call.
 */
#if QE_WT == 2 || QE_WT == 3
/* Two quants of a block as f16x2 times its scale d2 (the f16 scale in both
 * halves), dequantized without leaving f16: the integer q is made exact in
 * f16 by the bias trick (bits 0x6400 | u are 1024 + u for u < 1024), then
 * one f16 multiply by d rounds the exact product q d once, to nearest even:
 * the same bits as rounding weights.cl's f32 product (float)q * d (exact:
 * 8 x 11 bits) with mma_pack. A few integer ops per pair instead of two
 * int -> float conversions, two multiplies and a pack.
 * Q8_0: the int8 bytes 0, 1 (hi = 0) or 2, 3 (hi = 1) of w;
 * (b ^ 0x80) = b + 128 in 0 .. 255, and 1024 + b + 128 - 1152 = b. */
inline uint mma_q8_pair(uint w, int hi, uint d2)
{
    const uint h = ptx_prmt(w ^ 0x80808080u, 0x64646464u, hi ? 0x4342u : 0x4140u);
    return ptx_hmul2(ptx_hsub2(h, 0x64806480u), d2);
}
/* Q4_0: nibbles n (already masked, one per byte) 0, 1 (hi = 0) or 2, 3 of
 * w; 1024 + n - 1032 = n - 8. */
inline uint mma_q4_pair(uint w, int hi, uint d2)
{
    const uint h = ptx_prmt(w, 0x64646464u, hi ? 0x4342u : 0x4140u);
    return ptx_hmul2(ptx_hsub2(h, 0x64086408u), d2);
}
#endif

/* The row of y that row r's outputs go to (the output rule at the top) */
inline size_t mma_yidx(int y_seq, int y_seq_stride, int r)
{
    return (size_t)(r / y_seq) * y_seq_stride + r % y_seq;
}

/* Row r's outputs in y */
inline __global float *mma_yrow(__global float *y, int ldy, int y_seq, int y_seq_stride, int r)
{
    return y + mma_yidx(y_seq, y_seq_stride, r) * ldy;
}

inline void mma_store(__global float *y, int ldy, int y_seq, int y_seq_stride, int accumulate,
                      int n_rows, int N, int r, int o, float v)
{
    if (r >= n_rows || o >= N)
        return;
    __global float *yr = mma_yrow(y, ldy, y_seq, y_seq_stride, r);
    yr[o] = (accumulate ? yr[o] : 0.0f) + v;
}

/* ---- prefill: MT_BM x 128 tiles, 32-wide K slices in a cp.async pipeline ---- */
#if !defined(MS_MT) && !defined(MW_NB) /* the mma_tile build */

/* -DMT_BM: rows per work-group, 128 or 64; -DMT_WN: outputs per warp, 32
 * or 64. Each warp computes 64 rows x MT_WN outputs, so a work-group has
 * MT_BM / 64 x 128 / MT_WN warps (128, 32: 2 x 4). A wider warp tile reads
 * fewer local-memory bytes per mma step (64 x 64: 4 KB per 32 steps; 64 x
 * 32: 3 KB per 16) for twice the accumulators. Neither changes an output's
 * chain of mma steps. The engine's QEVAL_MMA_TILE sets them and MT_S. */
#ifndef MT_BM
#define MT_BM 128
#endif
#ifndef MT_WN
#define MT_WN 32
#endif
#define MT_BN 128
#define MT_BK 32
/* -DMT_XO: xh.cl's order of X, which is set by how B is loaded (see the slot
 * order at mma_tile): XH_NAT for f32 / f16 weights, XH_K8 for Q8_0, XH_K4
 * for Q4_0. The engine passes its xh_order of the format. */
#ifndef MT_XO
#error "mma_tile: build with -DMT_XO=<xh.cl order of the weight format>"
#endif
#if (QE_WT == 2) != (MT_XO == XH_K8) || (QE_WT == 3) != (MT_XO == XH_K4)
#error "mma_tile: MT_XO is not the weight format's order"
#endif
/* -DMT_GLU=1: the build of mma_tile_glu instead of mma_tile, prefill's gate
 * and up matmuls in one launch with the SwiGLU in the epilogue: of each
 * warp's MT_WN outputs the first half are rows of w (gate), the second the
 * same rows of w2 (up), so a lane holds both sums of an output and writes
 * silu_mul1(gate, up) (act.cl) straight into the down matmul's f16 pairs, in
 * xh.cl's order xo: g and u are never written, silu_mul_xh never runs, and
 * the products are the same bits. N is then each weight's rows (n_ff, a
 * multiple of 32, the engine checks); a work-group makes MT_BN / 2 outputs. */
#ifndef MT_GLU
#define MT_GLU 0
#endif
/* -DMT_PAIR=1: the build of mma_tile_pair, two matmuls of one shape and
 * one input in one launch (prefill's K and V: each alone is 128 work-groups
 * of 128 outputs for Llama-3.2-1B, under one a multiprocessor of the H200),
 * the second's output tiles after the first's. Each tile is mma_tile's. */
#ifndef MT_PAIR
#define MT_PAIR 0
#endif
#if MT_PAIR && MT_GLU
#error "mma_tile: MT_PAIR and MT_GLU are different builds"
#endif
/* -DMT_LSE=1: the build of mma_tile_lse, the LM head of a prefill whose
 * statistics need no logit but the target's and the largest (top-K of at
 * most 1: engine.c lse_of): instead of storing its 128 x 128 tile of
 * logits, each work-group reduces every row of it to a record of four
 * floats, part[r][n0 / 128]: the tile's largest logit m (the lowest id
 * among equals, as logits.cl ranks), its id, the sum of exp(z - m) over
 * the tile, and, in the tile that holds the target (targets[row0 + r]),
 * the target's logit (0 in the others, which logits.cl's logit_tiles
 * never reads; it adds a row's records into its statistics). The logits
 * (4 bytes each: 1.05 GB for ppl512 B 8's 2,056 rows of 128,256) are
 * never written, nor read twice by logit_stats. Each row's sums have a
 * fixed order (a fixed tree over a work-item's 32 values, then over the
 * four work-items of the row), so they do not depend on the batch. f16
 * wgmma build only. */
#ifndef MT_LSE
#define MT_LSE 0
#endif
#if MT_LSE && (MT_PAIR || MT_GLU)
#error "mma_tile: MT_LSE is a build of its own"
#endif
/* -DMT_ROPE=1: mma_tile (Q) or mma_tile_pair (K then V) of prefill with
 * RoPE in the epilogue (engine.c rope_tile_of): the outputs of row r are
 * rotated at position r % r_tok (prefill from position 0) by the table rcs
 * ([n_ctx][MT_RROT / 2] float2, rope.cl's), as rope.cl would rotate them
 * once stored (0 + the sum: qkv.cl's rope_pair, explicit fma, on those),
 * so q and K come out the same bits and rope never runs for them. The pair
 * rotates its first matmul's tiles only. Head shape by -DMT_RHD (head_dim),
 * -DMT_RROT (n_rot) and -DMT_RHALF (rope.cl's layout 1): every pair of
 * outputs lies in one work-item, which in the f16 wgmma build holds outputs
 * n0 + 8 j + 2 t + {0, 1}: (o, o + 1) for the pairs layout; (o, o + n_rot /
 * 2), tiles j and j + n_rot / 16, for halves, which needs n_rot / 2 a
 * multiple of 8 and heads that do not straddle a 128-output tile. Never
 * accumulates (accumulate is not read). f16 wgmma build only. */
#ifndef MT_ROPE
#define MT_ROPE 0
#endif
/* -DMT_KV16=1 (with MT_ROPE and MT_PAIR): y and yb are a layer's f16 K and
 * V caches, rows of ldy halves (a multiple of 8: 16-byte stores), and the
 * sums (K rotated) go into them as kv.cl's kv_store would encode them from
 * the f32 rows (qkv.cl f16_put's bits): the staging rows are never written
 * nor kv_store run (engine.c run_kv, both caches f16). Row r is cache row
 * mma_yidx(r), as for an f32 output. */
#ifndef MT_KV16
#define MT_KV16 0
#endif
#if MT_KV16 && !(MT_ROPE && MT_PAIR)
#error "mma_tile: MT_KV16 is a build of mma_tile_pair with MT_ROPE"
#endif
/* -DMT_KVTQ=1 (with MT_ROPE and MT_PAIR; kvfmt.cl and tqquad.cl in the
 * build, -DMT_KVK / -DMT_KVV the caches' TurboQuant formats): y and yb are
 * a layer's TurboQuant K and V caches, rows of N / QE_HD head vectors, and
 * each head vector of the sums (K rotated) goes into them as kv.cl's
 * kv_store would encode it from the f32 row (tqquad.cl tq_encode_quad: the
 * quad of lanes holding a row's 128 outputs holds its heads whole): the
 * staging rows are never written nor kv_store run (engine.c run_kv, both
 * caches TurboQuant). Row r is cache row mma_yidx(r). H100, ppl512 B 8 of
 * the synthetic Llama-3.2-1B q8_0 + tq4, profiled, QEVAL_MMA_KVTQ=0 / 1:
 * mma_tile_pair 0.79 + kv_store 0.90 ms -> mma_tile_pair 1.36 ms a forward
 * (25.13 -> 24.67 ms), the same dump hash. Its first form, every lane
 * adding all of a vector's squares from shfl.idx broadcasts, took 148
 * registers (the f16 build 122), one work-group a multiprocessor, and 2.19
 * ms; the sum passed around the quad takes 126. */
#ifndef MT_KVTQ
#define MT_KVTQ 0
#endif
#if MT_KVTQ && (!(MT_ROPE && MT_PAIR) || MT_KV16 || !defined(MT_KVK) || !defined(MT_KVV) || \
                !TQ_QUAD)
#error "mma_tile: MT_KVTQ is a build of mma_tile_pair with MT_ROPE, MT_KVK, MT_KVV and tqquad.cl"
#endif
#if MT_KV16
/* qkv.cl f16_put's bits of (lo, hi) as one pair: mma_pack's round to
   nearest even, f16_nan_bits where either is a NaN */
inline uint kv16_pair(float lo, float hi)
{
    uint p = mma_pack(lo, hi);
    if (isnan(lo))
        p = (p & 0xFFFF0000u) | f16_nan_bits(lo);
    if (isnan(hi))
        p = (p & 0xFFFFu) | f16_nan_bits(hi) << 16;
    return p;
}
#endif
/* a0 .. a3's element i (0 .. 3) without indexing registers */
inline uint mt_sel4(uint a0, uint a1, uint a2, uint a3, int i)
{
    return i == 0 ? a0 : i == 1 ? a1 : i == 2 ? a2 : a3;
}
/* A 4 x 4 transpose across the quad of lane t (= lane & 3): returns lane
 * s's a_t as element s. Round m of three shuffles sends a_(t ^ m) and
 * receives lane t ^ m's a_t; every lane of the warp must take part. The
 * epilogues that write f16 pairs store the result as 16 bytes, the quad's
 * 64 in a row, instead of a 4-byte store per pair. */
inline uint4 mt_quad_t(uint a0, uint a1, uint a2, uint a3, int t)
{
    const uint r0 = mt_sel4(a0, a1, a2, a3, t);
    const uint r1 = as_uint(ptx_shfl_xor(as_float(mt_sel4(a0, a1, a2, a3, t ^ 1)), 1));
    const uint r2 = as_uint(ptx_shfl_xor(as_float(mt_sel4(a0, a1, a2, a3, t ^ 2)), 2));
    const uint r3 = as_uint(ptx_shfl_xor(as_float(mt_sel4(a0, a1, a2, a3, t ^ 3)), 3));
    return (uint4)(mt_sel4(r0, r1, r2, r3, t), mt_sel4(r0, r1, r2, r3, 1 ^ t),
                   mt_sel4(r0, r1, r2, r3, 2 ^ t), mt_sel4(r0, r1, r2, r3, 3 ^ t));
}
#if MT_ROPE
#if MT_LSE || MT_GLU
#error "mma_tile: MT_ROPE is built with mma_tile or mma_tile_pair"
#endif
#if !defined(MT_RHD) || !defined(MT_RROT) || !defined(MT_RHALF) || MT_RHD % 2 || MT_RROT % 2 || \
    MT_RROT > MT_RHD || MT_RROT < 2
#error "mma_tile: MT_ROPE needs an even MT_RHD, an even 2 <= MT_RROT <= MT_RHD and MT_RHALF"
#endif
#if MT_RHALF && (128 % MT_RHD || (MT_RROT / 2) % 8)
#error "mma_tile: MT_ROPE's halves layout needs head_dim dividing 128 and n_rot / 2 a multiple of 8"
#endif
#endif
/* -DMT_WG=1: the build on Hopper's wgmma (kernels/wgmma.cl; the engine
 * builds it with qe_cl_build_wgmma where lib/cl's probe says it works,
 * unless QEVAL_MMA_WGMMA=0: engine.c tile_wg_of). The same tiles, stages,
 * layout and copies. f16 weights: each of the two warpgroups multiplies
 * its 64 rows of X by all 128 staged weight rows, two m64n128k16 steps a
 * slice, A and B read from local memory by the tensor cores; its sums come
 * out bit for bit as the MT_WG 0 build's (H200: equal perplexity dump
 * hashes). Q8_0 / Q4_0 weights: transposed, each warpgroup multiplies 64
 * weight rows, dequantized from the stage into registers as the MT_WG 0
 * build does its B fragments (A from registers), by all 128 staged rows of
 * X (B by descriptor), so the weights cross from L2 as stored, with no f16
 * copy (lib/engine_wh.c); the k order is the format's (xh.cl). Slower
 * than the f16 copies through the f16 build (engine.c tile_wg_of has the
 * figures), so only on request (QEVAL_MMA_WGMMA). */
#ifndef MT_WG
#define MT_WG 0
#endif
/* (-DMT_BM=256 builds the f16 one with four warpgroups, 512 work-items, for
 * bench/gpu_tile.sh: two stages are all 48 KB holds, and it was slower,
 * README "Session 21"; -DMT_BM=64 with one warpgroup, 128 work-items, four
 * work-groups a multiprocessor, was slower too, README "Session 29"; the
 * engine builds 128 rows.) */
#if MT_WG && (QE_WT < 1 || (MT_BM != 128 && !((MT_BM == 256 || MT_BM == 64) && QE_WT == 1)) || \
              MT_WN != 32)
#error "mma_tile: MT_WG is built for f16, Q8_0 and Q4_0 weights, 128 rows, warps of 32 outputs"
#endif
#if MT_LSE && (MT_WG != 1 || QE_WT != 1 || MT_BM != 128)
#error "mma_tile: MT_LSE is the f16 wgmma build's, 128 rows"
#endif
#if MT_ROPE && (MT_WG != 1 || QE_WT != 1 || MT_BM != 128)
#error "mma_tile: MT_ROPE is the f16 wgmma build's, 128 rows"
#endif
/* Which weight row staged row p (0 .. MT_BN - 1) of the work-group whose
 * first staged row is n0 holds (mt_row), and of which weight (mt_w). For
 * mma_tile_glu, blocks of MT_GB staged rows: gate's MT_GB / 2 rows, then
 * up's same rows. MT_GB is where a work-item's sums of one output's gate
 * and up rows meet: MT_WN (a warp's outputs) in mma.sync's tiles, 16 in
 * the MT_WG Q8_0 / Q4_0 build's transposed ones (rows g and g + 8). */
#define MT_GB (MT_WG && QE_WT >= 2 ? 16 : MT_WN)
inline int mt_row(int n0, int p)
{
#if MT_GLU
    return n0 / 2 + MT_GB / 2 * (p / MT_GB) + p % (MT_GB / 2);
#else
    return n0 + p;
#endif
}
inline const __global uchar *mt_w(const __global uchar *w, const __global uchar *w2, int p)
{
#if MT_GLU
    return p % MT_GB < MT_GB / 2 ? w : w2;
#else
    (void)w2;
    (void)p;
    return w;
#endif
}
#define MT_AL (MT_WG ? 512 : 128) /* the stages' alignment: see mma_tile */
#define MT_NJ (MT_WN / 8)                            /* 8-output mma tiles per warp */
#define MT_WI (32 * (MT_BM / 64) * (MT_BN / MT_WN)) /* work-items */
/* Slices in flight: MT_S stages of local memory, each X's MT_BM rows x 64
 * bytes plus W's 128 rows as stored (Q8_0 32 bytes, Q4_0 16, and two
 * scales) or as f16 (64 bytes). 48 KB is the most a work-group may have. */
#ifndef MT_S
#define MT_S 3
#endif
#define MT_XW (MT_BM * 16) /* uints of X per stage: 16 per row */
#if QE_WT == 2
#define MT_WW (MT_BN * 8) /* 32 quant bytes per row */
#elif QE_WT == 3
#define MT_WW (MT_BN * 4) /* 16 quant bytes per row */
#else
#define MT_WW (MT_BN * 16) /* 32 f16 per row */
#endif

/* X rows as f16 pairs for mma_tile, converted once per matmul rather than
 * once per 128-output tile (gate/up read X 64 times): pair i of row r =
 * (x[r][2i], x[r][2i + 1]) rounded by mma_pack, elements at or past K as 0,
 * so a pair never straddles two rows, stored at xh[r][xh_pos(i, MT_XO)]
 * (xh.cl's order for this build's weights). ldp is a multiple of 16 pairs (the
 * engine rounds it up): every 32-wide slice of a row is whole and 16-byte
 * aligned. Global (ldp rounded up, n_rows). */
__kernel void mma_xh(const __global float *x, ulong x_off, int ldx, int n_rows, int K,
                     __global uint *xh, int ldp)
{
    const int i = get_global_id(0), r = get_global_id(1);
    if (i >= ldp || r >= n_rows)
        return;
    const __global float *xr = x + x_off + (size_t)r * ldx;
    const int k = 2 * i;
    xh[(size_t)r * ldp + xh_pos(i, MT_XO)] =
        mma_pack(k < K ? xr[k] : 0.0f, k + 1 < K ? xr[k + 1] : 0.0f);
}

/* Where 16-byte chunk c (0 .. 3) of a 64-byte staged row r (X, and W as
 * f16) goes (in uints), XOR-swizzled so that the fragment loads below hit
 * 32 different banks without padding: ldmatrix reads one chunk of 8
 * consecutive rows at a time, so those 8 chunks must sit in 8 different
 * 16-byte bank groups: two rows share a 128-byte line, hence c ^ (r / 2 % 4). */
/* (The MT_WG build's wgmma reads this same layout as its 64-byte swizzle:
 * kernels/wgmma.cl.) */
#define MT_CHX(r, c) (16 * (r) + 4 * ((c) ^ (((r) >> 1) & 3)))
/* Q8_0: chunk c (0, 1) of a 32-byte row. (Its 8-byte loads read 4 rows'
 * 128 contiguous bytes a half-warp, conflict-free either way; the swizzle
 * spreads cp.async's 16-byte stores.) */
#define MT_CH32(r, c) (8 * (r) + 4 * ((c) ^ (((r) >> 2) & 1)))

/* This thread's share of every slice's copies can be worked out once
 * before the K loop (MT_PLAN: each slice's sources are slice 0's plus a
 * fixed stride), so that issuing a slice costs an add per copy rather than
 * the row products and bounds logic again: per copy its slice-0 source, its
 * byte count (0: zero-filled, nothing read; the source then stays inside
 * the buffer's first row) and, for f16 rows, the elements left. Planned is
 * fewer instructions and faster for every format now (H200, session 9,
 * mma_tile 4096 x 8192 x 2048, us planned / not: f16 453 / 465, Q4_0 519 /
 * 556, but Q8_0 589 / 568, so Q8_0 had kept computing its sources per
 * slice; session 14, the kernel since rewritten, pp512 B 8 q8_0 94.0K /
 * 94.4K -> 95.0K / 95.6K tok/s planned, mma_tile_glu 1305 / 1292 -> 1271 /
 * 1271 us a launch, perplexity dumps byte-identical). -DMT_PLAN=0 keeps
 * Q8_0 / Q4_0 unplanned for such comparisons. */
#ifndef MT_PLAN
#define MT_PLAN 1
#endif
#if !MT_PLAN && QE_WT != 2 && QE_WT != 3
#error "mma_tile: f16 / f32 weights are always planned"
#endif
#if !MT_PLAN && MT_WG
#error "mma_tile: the MT_WG build is planned"
#endif
#define MT_XJ (4 * MT_BM / MT_WI) /* X: MT_BM rows x 4 chunks */
#if QE_WT == 2 || QE_WT == 3
#define MT_QC (QE_WT == 2 ? 2 : 1) /* 16-byte quant chunks per row and slice */
#define MT_QN (MT_BN * MT_QC)      /* quant chunks */
#define MT_QJ ((MT_QN + MT_WI - 1) / MT_WI)
#define MT_DJ ((MT_BN + MT_WI - 1) / MT_WI)
#else
#define MT_FJ (4 * MT_BN / MT_WI) /* W as f16: 128 rows x 4 chunks of 8 */
#endif
typedef struct {
#if MT_PLAN
    const __global uint *x[MT_XJ];
    uint xn[MT_XJ];
#if QE_WT == 2 || QE_WT == 3
    const __global uchar *q[MT_QJ], *d[MT_DJ];
    uint qn[MT_QJ], dn[MT_DJ];
#else
    const __global uchar *f[MT_FJ]; /* chunk c's first element at slice 0 */
    int fk[MT_FJ];                  /* elements left in the row from there (0 past N) */
#endif
#else /* what the sources are computed from, slice by slice, beside mt_issue's arguments */
    const __global uint *xh;
    int ldp, n_rows, m0, sb;
#endif
} mt_plan;

__attribute__((always_inline)) inline mt_plan mt_plan_of(const __global uint *xh, int ldp,
                                                         int n_rows, const __global uchar *w,
                                                         const __global uchar *w2,
                                                         ulong w_row_bytes, int sb, int K, int N,
                                                         int m0, int n0, int tid)
{
    mt_plan p;
    (void)K;
#if !MT_PLAN
    (void)tid;
    (void)w;
    (void)w2;
    (void)w_row_bytes;
    (void)N;
    (void)n0;
    p.xh = xh;
    p.ldp = ldp;
    p.n_rows = n_rows;
    p.m0 = m0;
    p.sb = sb;
#else
#pragma unroll
    for (int j = 0; j < MT_XJ; j++) {
        const int id = tid + MT_WI * j, r = id >> 2, c = id & 3, ok = m0 + r < n_rows;
        p.x[j] = xh + (ok ? (size_t)(m0 + r) * ldp + 4 * c : 0);
        p.xn[j] = ok ? 16u : 0u;
    }
#if QE_WT == 2 || QE_WT == 3
#pragma unroll
    for (int j = 0; j < MT_QJ; j++) {
        const int id = tid + MT_WI * j, o = mt_row(n0, id / MT_QC), ok = id < MT_QN && o < N;
        p.q[j] = mt_w(w, w2, id / MT_QC) +
                 (ok ? (ulong)o * w_row_bytes + sb + 16 * (id % MT_QC) : 0);
        p.qn[j] = ok ? 16u : 0u;
    }
#pragma unroll
    for (int j = 0; j < MT_DJ; j++) { /* the scales' work-items: see mt_issue */
        const int r = MT_WI - 1 - tid + MT_WI * j, o = mt_row(n0, r), ok = o < N;
        p.d[j] = mt_w(w, w2, r) + (ok ? (ulong)o * w_row_bytes : 0);
        p.dn[j] = ok ? 4u : 0u;
    }
#else
    (void)sb;
#pragma unroll
    for (int j = 0; j < MT_FJ; j++) {
        const int id = tid + MT_WI * j, o = mt_row(n0, id >> 2), c = id & 3;
        p.f[j] = mt_w(w, w2, id >> 2) + (o < N ? (ulong)o * w_row_bytes + 16 * c : 0);
        p.fk[j] = o < N ? K - 8 * c : 0;
    }
#endif
#endif
    return p;
}

/* Issue this thread's copies of slice sl (k = 32 sl ..) into stage xs / ws /
 * ds: cp.async straight from global to local memory, nothing in registers,
 * so MT_S - 1 slices are in flight while one is multiplied. Rows past
 * n_rows or N, and f16 elements past K, are zero-filled (src-size). f32
 * weights, and f16 rows that are not 16-byte aligned, are converted to f16
 * and stored here with plain loads instead (their stage is free: see
 * mma_tile). */
__attribute__((always_inline)) inline void mt_issue(const mt_plan *p, const __global uchar *w,
                                                    const __global uchar *w2, ulong w_row_bytes,
                                                    int K, int N, int n0, int sl, int tid,
                                                    __local uint *xs, __local uint *ws,
                                                    __local uint *ds)
{
#pragma unroll
    for (int j = 0; j < MT_XJ; j++) {
        const int id = tid + MT_WI * j, r = id >> 2, c = id & 3;
#if MT_PLAN
        const __global uint *src = p->x[j] + 16 * sl;
        const uint n = p->xn[j];
#else
        const int ok = p->m0 + r < p->n_rows;
        const __global uint *src = ok ? p->xh + (size_t)(p->m0 + r) * p->ldp + 16 * sl + 4 * c
                                      : p->xh;
        const uint n = ok ? 16u : 0u;
#endif
        ptx_cp16(ptx_smem(xs + MT_CHX(r, c)), src, n);
    }
#if QE_WT == 2 || QE_WT == 3
    (void)K;
#if MT_PLAN
    (void)w;
    (void)w2;
    (void)w_row_bytes;
    (void)N;
    (void)n0;
#endif
    /* quants: 128 rows x 2 chunks (Q8_0) or 1 (Q4_0), then the scales of
       the block pair holding this slice's block (4-byte aligned; a pair past
       the last block reads the scales' zero padding), counted from the last
       work-item down: other work-items than the quants' where those do not
       fill the work-group */
#pragma unroll
    for (int j = 0; j < MT_QJ; j++) {
        const int id = tid + MT_WI * j, r = id / MT_QC, c = id % MT_QC;
        if (MT_QN % MT_WI && id >= MT_QN)
            break;
#if MT_PLAN
        const __global uchar *src = p->q[j] + 16 * MT_QC * sl;
        const uint n = p->qn[j];
#else
        const int o = mt_row(n0, r), ok = o < N;
        const __global uchar *src =
            ok ? mt_w(w, w2, r) + (ulong)o * w_row_bytes + p->sb + 16 * MT_QC * sl + 16 * c : w;
        const uint n = ok ? 16u : 0u;
#endif
        ptx_cp16(ptx_smem(ws + (QE_WT == 2 ? MT_CH32(r, c) : 4 * r)), src, n);
    }
#pragma unroll
    for (int j = 0; j < MT_DJ; j++) {
        const int r = MT_WI - 1 - tid + MT_WI * j;
        if (MT_BN % MT_WI && r >= MT_BN)
            break;
#if MT_PLAN
        ptx_cp4(ptx_smem(ds + r), p->d[j] + 4 * (sl >> 1), p->dn[j]);
#else
        const int o = mt_row(n0, r), ok = o < N;
        ptx_cp4(ptx_smem(ds + r), ok ? mt_w(w, w2, r) + (ulong)o * w_row_bytes + 4 * (sl >> 1) : w,
                ok ? 4u : 0u);
#endif
    }
#else
    (void)ds;
#pragma unroll
    for (int j = 0; j < MT_FJ; j++) {
        const int id = tid + MT_WI * j, r = id >> 2, c = id & 3;
        __local uint *dst = ws + MT_CHX(r, c);
#if QE_WT == 1
        if ((w_row_bytes & 15) == 0) {
            const int left = p->fk[j] - MT_BK * sl, n = left > 0 ? 2 * min(left, 8) : 0;
            ptx_cp16(ptx_smem(dst), n ? p->f[j] + 2 * MT_BK * sl : w, (uint)n);
            continue;
        }
#endif
        const int o = mt_row(n0, r), k = MT_BK * sl + 8 * c;
        const __global uchar *wr = mt_w(w, w2, r);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int kk = k + 2 * i;
            dst[i] = o < N ? mma_pack(kk < K ? wt_load(wr, w_row_bytes, o, kk) : 0.0f,
                                      kk + 1 < K ? wt_load(wr, w_row_bytes, o, kk + 1) : 0.0f)
                           : 0u;
        }
    }
#endif
}

/* -DMT_GM: the order work-groups take the tiles in. The grid is output
 * tiles (dimension 0) by row tiles (1), and NVIDIA starts work-groups in
 * linear order, dimension 0 fastest: with MT_GM 0 the resident work-groups
 * cover one or two row tiles and every output tile, so they read all of W,
 * and each wave of them reads it again. With MT_GM > 0 they walk MT_GM row
 * tiles first, then the next output tile (the last group of row tiles may
 * be smaller): a wave reads MT_GM row tiles of X and about waves / MT_GM
 * output tiles of W. Which pays depends on whether W stays in L2 (engine.c
 * tile_gm). The order changes no tile's arithmetic. A build option rather
 * than an argument: the Q8_0 build, at 126 registers, ran 4-6 % slower
 * with the order chosen at run time. Returns (output tile, row tile). */
#ifndef MT_GM
#define MT_GM 0
#endif
static inline int2 mt_tile_of(void)
{
#if MT_GM
    const int nn = get_num_groups(0), nm = get_num_groups(1);
    const int lin = get_group_id(1) * nn + get_group_id(0), per = MT_GM * nn;
    const int first = lin / per * MT_GM, gs = min(nm - first, MT_GM), r = lin % per;
    return (int2)(r / gs, first + r % gs);
#else
    return (int2)(get_group_id(0), get_group_id(1));
#endif
}

/* Slot order: a k16 step sums its 16 slots whatever k each stands for (see
 * the top), so each weight format gives a lane the elements that one local
 * load brings it, and X is laid out to match (xh.cl, MT_XO). Step s (0, 1)
 * of a 32-wide slice, lane t's slots 2t, 2t + 1 (A/B register 0) and
 * 2t + 8, 2t + 9 (register 1 of B, 2 and 3 of A) stand for:
 *   f32 / f16  16 s + 2t, + 1 and 16 s + 8 + 2t, + 1 (element order): one
 *              ldmatrix.x4 gives the B registers of two 8-output tiles;
 *   Q8_0       8t + 4s .. + 3: one 8-byte load per slice of a row's quants
 *              8t .. 8t + 7 serves both steps;
 *   Q4_0       16 s + 4t .. + 3: the low (s = 0) or high (s = 1) nibbles of
 *              one 4-byte load.
 * A comes from X by one ldmatrix.x4 per 16-row tile: the step's first 16
 * bytes of a row (chunk 2 s) hold every lane's registers 0, 1, the next 16
 * its registers 2, 3, and ldmatrix writes the four registers mma.sync takes
 * in order. Session 10 moved f16 B from 8-byte loads (slots 16 s + 4t ..) to
 * ldmatrix and Q8_0 from a 4-byte load per step to one 8-byte load per
 * slice: H200, 4096 x 8192 x 2048 452 -> 435 us (f16), 565 -> 549 (Q8_0). */
__kernel __attribute__((reqd_work_group_size(MT_WI, 1, 1)))
#if MT_GLU
void mma_tile_glu(const __global uint *xh, int ldp, int n_rows, /* mma_xh's pairs */
                  const __global uchar *w, const __global uchar *w2, ulong w_row_bytes, int K,
                  int N, __global uint *yh, int ldh, int xo) /* the down matmul's pairs */
#elif MT_PAIR
void mma_tile_pair(const __global uint *xh, int ldp, int n_rows, /* mma_xh's pairs */
                   const __global uchar *w, ulong w_row_bytes, int K, int N,
                   __global float *y, int ldy, int y_seq, int y_seq_stride, int accumulate,
                   const __global uchar *wb, __global float *yb
#if MT_ROPE
                   , const __global float2 *rcs, int r_tok
#endif
                   )
#elif MT_LSE
void mma_tile_lse(const __global uint *xh, int ldp, int n_rows, /* mma_xh's pairs */
                  const __global uchar *w, ulong w_row_bytes, int K, int N,
                  __global float4 *part, /* [n_rows][ceil(N / 128)] */
                  const __global int *targets, int row0)
#else
void mma_tile(const __global uint *xh, int ldp, int n_rows, /* mma_xh's pairs */
              const __global uchar *w, ulong w_row_bytes, int K, int N,
              __global float *y, int ldy, int y_seq, int y_seq_stride, int accumulate
#if MT_ROPE
              , const __global float2 *rcs, int r_tok
#endif
              )
#endif
{
#if !MT_GLU
    const __global uchar *w2 = w;
#endif
    /* On 128-byte lines: MT_CHX's swizzle spreads a fragment load's rows
       over the 32 banks only if each pair of staged rows starts a line
       (and wgmma's core matrices want 128 bytes). With aligned(16) the
       compiler had placed them off the line: H200, pp512 B 8 of the f16
       synthetic Llama-3.2-1B 110.4K / 110.5K -> 140.9K / 140.7K tok/s,
       mma_tile_glu 1036 -> 787 us a layer, the same bits (session 19).
       wgmma's swizzle wants its 512-byte atoms on 512-byte boundaries. */
    __local uint xs[MT_S][MT_XW] __attribute__((aligned(MT_AL)));
    __local uint ws[MT_S][MT_WW] __attribute__((aligned(MT_AL)));
#if QE_WT == 2 || QE_WT == 3
    __local uint ds[MT_S][MT_BN]; /* per row: the f16 scales of the slice's block pair */
#else
    __local uint ds[1][1];
#endif
    const int tid = get_local_id(0);
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
#if !MT_WG
    /* MT_BM / 64 x MT_BN / MT_WN warps: 64 rows x MT_WN outputs each */
    const int wm = warp / (MT_BN / MT_WN), wn = warp % (MT_BN / MT_WN);
#endif
    int2 tl = mt_tile_of();
#if MT_ROPE
    int rot = 1; /* this tile's outputs are rotated */
#endif
#if MT_PAIR
    /* the output tiles past N's are the second matmul's: weights wb of the
       same shape into yb */
    if (tl.x >= (N + MT_BN - 1) / MT_BN) {
        tl.x -= (N + MT_BN - 1) / MT_BN;
        w = w2 = wb;
        y = yb;
#if MT_ROPE
        rot = 0;
#endif
    }
#endif
    const int m0 = tl.y * MT_BM, n0 = tl.x * MT_BN;
    const int sb = wt_row_scale_bytes(w_row_bytes);
    const int n_sl = (K + MT_BK - 1) / MT_BK;
#if MT_WG
    const mt_plan plan = mt_plan_of(xh, ldp, n_rows, w, w2, w_row_bytes, sb, K, N, m0, n0, tid);
    float c[64];
#pragma unroll
    for (int i = 0; i < 64; i++)
        c[i] = 0.0f;
#pragma unroll
    for (int s = 0; s < MT_S - 1; s++) {
        if (s < n_sl)
            mt_issue(&plan, w, w2, w_row_bytes, K, N, n0, s, tid, xs[s], ws[s],
                     ds[QE_WT >= 2 ? s : 0]);
        ptx_cp_commit();
    }
    const int wg = warp >> 2; /* warpgroup: rows 64 wg .. 64 wg + 63 of the tile */
#if QE_WT >= 2
    /* this work-item's weight rows, staged rows pr and pr + 8 (A's rows g,
       g + 8 of its warp's 16) */
    const int pr = 64 * wg + 16 * (warp & 3) + g;
#endif
    WG_FENCE(c);
    for (int sl = 0; sl < n_sl; sl++) {
        /* slice sl's copies have landed and are visible to wgmma's reads
           (WG_PROXY), then everyone's */
        ptx_cp_wait(MT_S - 2);
        WG_PROXY();
        barrier(CLK_LOCAL_MEM_FENCE);
        const int st = sl % MT_S;
#if QE_WT >= 2
        /* A = the weight rows as mma.sync's B fragments below (the same
           f16 pairs, k in the format's slot order), a[s] for step s;
           B = all 128 staged rows of X, step s 32 s bytes into them */
        uint a[2][4];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint d = ds[st][pr + 8 * h] >> (16 * (sl & 1)), d2 = (d & 0xFFFFu) | (d << 16);
#if QE_WT == 2
            const uint2 q8 =
                *(const __local uint2 *)(ws[st] + MT_CH32(pr + 8 * h, t >> 1) + 2 * (t & 1));
#pragma unroll
            for (int s = 0; s < 2; s++) {
                a[s][h] = mma_q8_pair(s ? q8.y : q8.x, 0, d2);
                a[s][2 + h] = mma_q8_pair(s ? q8.y : q8.x, 1, d2);
            }
#else
            const uint q4 = ws[st][4 * (pr + 8 * h) + t];
#pragma unroll
            for (int s = 0; s < 2; s++) {
                const uint q = (s ? q4 >> 4 : q4) & 0x0F0F0F0Fu;
                a[s][h] = mma_q4_pair(q, 0, d2);
                a[s][2 + h] = mma_q4_pair(q, 1, d2);
            }
#endif
        }
        /* registers that wgmma reads, written by other instructions */
        WG_FENCE(c);
        WG_MMA_RS(c, a[0], wg_desc(xs[st]));
        WG_MMA_RS(c, a[1], wg_desc(xs[st] + 8));
#else
        /* A: this warpgroup's 64 rows (4096 bytes on), B: all 128; step s
           starts 32 s bytes (8 s uints) into the rows. Chained on the same
           accumulators, the steps of consecutive slices need no fence
           between them. */
        const __local uint *xa = xs[st] + 1024 * wg, *wb = ws[st];
        WG_MMA(c, wg_desc(xa), wg_desc(wb));
        WG_MMA(c, wg_desc(xa + 8), wg_desc(wb + 8));
#endif
        WG_COMMIT();
#if QE_WT >= 2
        /* slice sl's steps are done before the next slice's A is written:
           the steps read their A registers while they run, and ptxas
           reuses those registers for the next slice's (waiting for all but
           the last group, as below, gave other sums each run on the H200) */
        WG_WAIT0(c);
#else
        /* slice sl - 1's steps are done here, and after the barrier in
           every warpgroup: its stage takes slice sl + MT_S - 1 while slice
           sl's steps run */
        WG_WAIT1(c);
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
        const int nx = sl + MT_S - 1, sx = nx % MT_S;
        if (nx < n_sl)
            mt_issue(&plan, w, w2, w_row_bytes, K, N, n0, nx, tid, xs[sx], ws[sx],
                     ds[QE_WT >= 2 ? sx : 0]);
        ptx_cp_commit();
    }
    WG_WAIT0(c);

#if QE_WT >= 2
    /* transposed: work-item (warp w of its warpgroup, g, t) holds staged
       weight rows pr (h = 0) and pr + 8 (h = 1), rows m0 + 8 j + 2 t (+ 1)
       of X, in c[4 j + 2 h ..] */
#if MT_GLU
    /* staged rows in blocks of 16 (MT_GB): rows pr and pr + 8 are one
       output's gate and up. Outputs o and o + 1 (g even and odd: lanes 4
       apart) make one f16 pair of the down matmul's input: the even lane
       writes row 8 j + 2 t's pair, the odd one row 8 j + 2 t + 1's, each
       with the other's sum for it from one shuffle (every lane shuffles) */
    const int o = n0 / 2 + 8 * (pr / 16) + g, odd = g & 1;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const float v0 = silu_mul1(c[4 * j], c[4 * j + 2]);
        const float v1 = silu_mul1(c[4 * j + 1], c[4 * j + 3]);
        const float x = ptx_shfl_xor(odd ? v0 : v1, 4);
        const int r = m0 + 8 * j + 2 * t + odd;
        if (r < n_rows && (o & ~1) < N)
            yh[(size_t)r * ldh + xh_pos(o / 2, xo)] = odd ? mma_pack(x, v1) : mma_pack(v0, x);
    }
#else
#pragma unroll
    for (int j = 0; j < 16; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int r = m0 + 8 * j + 2 * t + e;
            if (r >= n_rows)
                continue;
            __global float *yr = mma_yrow(y, ldy, y_seq, y_seq_stride, r);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int o = n0 + pr + 8 * h;
                if (o < N)
                    yr[o] = (accumulate ? yr[o] : 0.0f) + c[4 * j + 2 * h + e];
            }
        }
#endif
#else
    /* work-item (warp w of its warpgroup, g, t): rows 16 w + g (+ 8) of the
       warpgroup's 64, staged rows 8 j + 2 t (+ 1) in c[4 j ..] */
    const int wq = warp & 3;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int r = m0 + 64 * wg + 16 * wq + g + 8 * hh;
#if MT_LSE
        /* row r's 128 logits lie in the four work-items t of its quad, 32
           each (outputs 8 j + 2 t + e); every lane shuffles, rows past
           n_rows included, and only those write nothing */
        const int tg = r < n_rows ? targets[row0 + r] : -1;
        /* trees, not chains: the largest value (exact in any order), then
           the lowest id holding it, then the sum in a fixed tree (its
           first version, a chain of 32 compares and of 32 adds, made the
           head 17 % slower than storing its logits). Ids past N take
           -inf and add 0. */
        float v[32], zt = 0.0f;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            const int o = n0 + 8 * (i >> 1) + 2 * t + (i & 1);
            v[i] = o < N ? c[4 * (i >> 1) + 2 * hh + (i & 1)] : -INFINITY;
            zt = o == tg ? v[i] : zt;
        }
        float m8[8];
#pragma unroll
        for (int i = 0; i < 8; i++)
            m8[i] = fmax(fmax(v[4 * i], v[4 * i + 1]), fmax(v[4 * i + 2], v[4 * i + 3]));
        float bv = fmax(fmax(fmax(m8[0], m8[1]), fmax(m8[2], m8[3])),
                        fmax(fmax(m8[4], m8[5]), fmax(m8[6], m8[7])));
        bv = fmax(bv, ptx_shfl_xor(bv, 1));
        bv = fmax(bv, ptx_shfl_xor(bv, 2));
        int bi = INT_MAX;
#pragma unroll
        for (int i = 31; i >= 0; i--) /* the lowest id last: it wins */
            bi = v[i] == bv ? n0 + 8 * (i >> 1) + 2 * t + (i & 1) : bi;
        bi = min(bi, as_int(ptx_shfl_xor(as_float(bi), 1)));
        bi = min(bi, as_int(ptx_shfl_xor(as_float(bi), 2)));
        float e8[8];
#pragma unroll
        for (int i = 0; i < 8; i++)
            e8[i] = (exp(v[4 * i] - bv) + exp(v[4 * i + 1] - bv)) +
                    (exp(v[4 * i + 2] - bv) + exp(v[4 * i + 3] - bv));
        float se = ((e8[0] + e8[1]) + (e8[2] + e8[3])) + ((e8[4] + e8[5]) + (e8[6] + e8[7]));
        /* (a + b == b + a: every lane ends with the same sums) */
        se += ptx_shfl_xor(se, 1);
        se += ptx_shfl_xor(se, 2);
        zt += ptx_shfl_xor(zt, 1); /* one lane at most holds the target */
        zt += ptx_shfl_xor(zt, 2);
        if (t == 0 && r < n_rows)
            part[(size_t)r * ((N + MT_BN - 1) / MT_BN) + n0 / MT_BN] =
                (float4)(bv, se, as_float(bi), zt);
#elif !MT_KV16 && !MT_KVTQ && !MT_GLU /* (their lanes all shuffle, and check r at the store) */
        if (r >= n_rows)
            continue;
#endif
#if MT_LSE
#elif MT_GLU
        /* staged rows: blocks of 32, gate's 16 then up's 16 (mt_row), so
           tiles j and j + 2 (j % 4 < 2) hold the gate and up sums of one
           output pair */
        __global uint *hr = yh + (size_t)r * ldh;
        if (xo == XH_NAT) {
            /* pairs n0 / 4 + 8 G + 4 u + t (tiles j = 4 G + u) in lane t,
               a_q for G = 2 h + q / 2, u = q % 2, transposed (mt_quad_t):
               lane t stores pairs n0 / 4 + 16 h + 4 t .. + 3. H100, ppl512
               B 8 of the synthetic Llama-3.2-1B f16, against a 4-byte store
               per pair, alternating two rounds: 9.94 / 9.86 -> 9.74 / 9.75
               ms a forward, the same dump hashes. Other orders (a Q8_0 /
               Q4_0 down matmul's own build) keep those stores. */
#pragma unroll
            for (int h = 0; h < 2; h++) {
                uint a[4];
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int e = 4 * (4 * (2 * h + (q >> 1)) + (q & 1)) + 2 * hh;
                    a[q] = mma_pack(silu_mul1(c[e], c[e + 8]), silu_mul1(c[e + 1], c[e + 9]));
                }
                const uint4 v = mt_quad_t(a[0], a[1], a[2], a[3], t);
                if (r < n_rows && n0 / 2 + 32 * h + 8 * t < N)
                    *(__global uint4 *)(hr + n0 / 4 + 16 * h + 4 * t) = v;
            }
        } else if (r < n_rows) {
#pragma unroll
            for (int j = 0; j < 16; j++) {
                if ((j & 3) >= 2)
                    continue;
                const int o = n0 / 2 + 16 * (j >> 2) + 8 * (j & 3) + 2 * t, e = 4 * j + 2 * hh;
                if (o < N)
                    hr[xh_pos(o / 2, xo)] = mma_pack(silu_mul1(c[e], c[e + 8]),
                                                     silu_mul1(c[e + 1], c[e + 9]));
            }
        }
#else
#if !MT_KV16 && !MT_KVTQ
        __global float *yr = mma_yrow(y, ldy, y_seq, y_seq_stride, r);
#endif
#if MT_ROPE
        /* the values rope.cl reads (0 + the sum), rotated where they are
           rotated, and stored as they are: rope.cl writes rope_pair's
           results without adding 0 (a -0 stays -0) */
#pragma unroll
        for (int i = 0; i < 32; i++)
            c[4 * (i >> 1) + 2 * hh + (i & 1)] += 0.0f;
        if (rot) {
            const __global float2 *cr = rcs + (size_t)(r % r_tok) * (MT_RROT / 2);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int od = (n0 + 8 * j) % MT_RHD + 2 * t; /* output e = 0 in its head */
                float *ca = c + 4 * j + 2 * hh;
#if MT_RHALF
                /* heads divide the tile: od's group is compile-time */
                if ((8 * j) % MT_RHD < MT_RROT / 2) {
                    float *cb = c + 4 * (j + MT_RROT / 16) + 2 * hh;
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float2 v = rope_pair(ca[e], cb[e], cr[od + e]);
                        ca[e] = v.x;
                        cb[e] = v.y;
                    }
                }
#else
                if (od < MT_RROT) {
                    const float2 v = rope_pair(ca[0], ca[1], cr[od / 2]);
                    ca[0] = v.x;
                    ca[1] = v.y;
                }
#endif
            }
        }
#if MT_KV16
        __global ushort *hr = (__global ushort *)y + mma_yidx(y_seq, y_seq_stride, r) * ldy;
        /* pairs p[j] (outputs 8 j + 2 t, + 1), transposed (mt_quad_t):
           lane t stores outputs 8 (4 k + t) .. + 7 (a 2-byte f16_put per
           output had made the launch 0.96 ms against 0.78 on the H100,
           ppl512 B 8 of the synthetic Llama-3.2-1B) */
        uint p[16];
#pragma unroll
        for (int j = 0; j < 16; j++)
            p[j] = kv16_pair(c[4 * j + 2 * hh], c[4 * j + 2 * hh + 1]);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint4 v = mt_quad_t(p[4 * k], p[4 * k + 1], p[4 * k + 2], p[4 * k + 3], t);
            const int o = n0 + 8 * (4 * k + t);
            if (r < n_rows && o < N)
                *(__global uint4 *)(hr + o) = v;
        }
#elif MT_KVTQ
        /* the row's 128 outputs in tqquad.cl's order are the tile's heads
           in turn (v[i] = output 8 (i / 2) + 2 t + i % 2: head i / (QE_HD
           / 4)); K's tiles (rot) into y in K's format, V's into yb in V's.
           H100, ppl512 B 8 of the synthetic Llama-3.2-1B q8_0 + tq4: see
           MT_KVTQ above. */
        float v[32];
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = c[4 * (i / 2) + 2 * hh + i % 2];
        const int n_store = r < n_rows ? min(MT_BN, N - n0) / QE_HD : 0;
        const size_t h0 = mma_yidx(y_seq, y_seq_stride, r) * (N / QE_HD) + n0 / QE_HD;
        if (rot)
            tq_encode_quad(v, MT_BN / QE_HD, t, KV_TQ_BITS(MT_KVK),
                           (__global uchar *)y + h0 * KV_TQ_VEC(MT_KVK), n_store);
        else
            tq_encode_quad(v, MT_BN / QE_HD, t, KV_TQ_BITS(MT_KVV),
                           (__global uchar *)y + h0 * KV_TQ_VEC(MT_KVV), n_store);
#else
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int o = n0 + 8 * j + 2 * t;
            if (o < N)
                *(__global float2 *)(yr + o) = (float2)(c[4 * j + 2 * hh], c[4 * j + 2 * hh + 1]);
        }
#endif
#else
        /* Outputs o, o + 1 as one 8-byte store where they are aligned (0 +
           the sum, as below: -0 written as +0). Accumulating kept the
           scalar loop, which measured faster for it. H100, pp512 B 8 of the
           synthetic Llama-3.2-1B f16, two rounds: Q's matmul 107.5 -> 88.8
           us a layer, pp512 166.5K / 169.0K -> 171.1K / 173.0K tok/s (float2
           for both kinds: wo 142.5 -> 146.5 us, down 352 -> 356). */
        if (!accumulate && !(ldy & 1) && !(N & 1)) {
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int o = n0 + 8 * j + 2 * t;
                if (o < N)
                    *(__global float2 *)(yr + o) =
                        (float2)(0.0f) + (float2)(c[4 * j + 2 * hh], c[4 * j + 2 * hh + 1]);
            }
        } else {
#pragma unroll
            for (int j = 0; j < 16; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int o = n0 + 8 * j + 2 * t + e;
                    if (o < N)
                        yr[o] = (accumulate ? yr[o] : 0.0f) + c[4 * j + 2 * hh + e];
                }
        }
#endif /* MT_ROPE */
#endif
    }
#endif
#else
    float acc[4][MT_NJ][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < MT_NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[i][j][e] = 0.0f;

    const mt_plan plan = mt_plan_of(xh, ldp, n_rows, w, w2, w_row_bytes, sb, K, N, m0, n0, tid);
#pragma unroll
    for (int s = 0; s < MT_S - 1; s++) {
        if (s < n_sl)
            mt_issue(&plan, w, w2, w_row_bytes, K, N, n0, s, tid, xs[s], ws[s],
                     ds[QE_WT >= 2 ? s : 0]);
        ptx_cp_commit(); /* one group per slice, empty or not: wait_group counts them */
    }
    for (int sl = 0; sl < n_sl; sl++) {
        /* slice sl's copies (this thread's) have landed, then everyone's; and
           every warp is past slice sl - 1, whose stage the next issue reuses */
        ptx_cp_wait(MT_S - 2);
        barrier(CLK_LOCAL_MEM_FENCE);
        const int nx = sl + MT_S - 1, sx = nx % MT_S, st = sl % MT_S;
        if (nx < n_sl)
            mt_issue(&plan, w, w2, w_row_bytes, K, N, n0, nx, tid, xs[sx], ws[sx],
                     ds[QE_WT >= 2 ? sx : 0]);
        ptx_cp_commit();
        const __local uint *xa = xs[st], *wb = ws[st];
#if QE_WT == 2 || QE_WT == 3
        uint d2[MT_NJ];
#pragma unroll
        for (int j = 0; j < MT_NJ; j++) {
            const uint d = ds[st][wn * MT_WN + j * 8 + g] >> (16 * ((sl & 1)));
            d2[j] = (d & 0xFFFFu) | (d << 16);
        }
#endif
#if QE_WT == 3
        uint q4[MT_NJ];
#pragma unroll
        for (int j = 0; j < MT_NJ; j++)
            q4[j] = wb[4 * (wn * MT_WN + j * 8 + g) + t];
#elif QE_WT == 2
        uint2 q8[MT_NJ]; /* quants 8t .. 8t + 7 of the row's block */
#pragma unroll
        for (int j = 0; j < MT_NJ; j++)
            q8[j] = *(const __local uint2 *)(wb + MT_CH32(wn * MT_WN + j * 8 + g, t >> 1) +
                                             2 * (t & 1));
#endif

#pragma unroll
        for (int s = 0; s < 2; s++) { /* two k16 steps, in k order */
            uint a[4][4], b[MT_NJ][2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                /* lane l names row l % 16 of the tile, chunk 2 s (even
                   pairs: matrices 0, 1) or 2 s + 1 (odd pairs: 2, 3) */
                const int row = wm * 64 + i * 16 + (lane & 15);
                const uint4 v = ptx_ldsm4(ptx_smem(xa + MT_CHX(row, 2 * s + (lane >> 4))));
                a[i][0] = v.x;
                a[i][1] = v.y;
                a[i][2] = v.z;
                a[i][3] = v.w;
            }
#if QE_WT == 2 || QE_WT == 3
#pragma unroll
            for (int j = 0; j < MT_NJ; j++) {
#if QE_WT == 2
                const uint q = s ? q8[j].y : q8[j].x;
                b[j][0] = mma_q8_pair(q, 0, d2[j]);
                b[j][1] = mma_q8_pair(q, 1, d2[j]);
#else
                const uint q = (s ? q4[j] >> 4 : q4[j]) & 0x0F0F0F0Fu;
                b[j][0] = mma_q4_pair(q, 0, d2[j]);
                b[j][1] = mma_q4_pair(q, 1, d2[j]);
#endif
            }
#else
            /* tiles j, j + 1: lanes 8m .. 8m + 7 name the rows of matrix m =
               (tile j + m / 2, chunk 2 s + m % 2), which lands in b[j + m / 2][m % 2] */
#pragma unroll
            for (int j = 0; j < MT_NJ; j += 2) {
                const int m = lane >> 3, col = wn * MT_WN + (j + (m >> 1)) * 8 + (lane & 7);
                const uint4 v = ptx_ldsm4(ptx_smem(wb + MT_CHX(col, 2 * s + (m & 1))));
                b[j][0] = v.x;
                b[j][1] = v.y;
                b[j + 1][0] = v.z;
                b[j + 1][1] = v.w;
            }
#endif
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < MT_NJ; j++)
                    MMA(acc[i][j], a[i], b[j]);
        }
    }

    /* each of this lane's 8 rows finds its place in y (or yh) once (a
       division), not once per output */
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int r = m0 + wm * 64 + i * 16 + g + 8 * hh;
            if (r >= n_rows)
                continue;
#if MT_GLU
            /* tiles j and j + MT_NJ / 2 hold the gate and the up sums of the
               same outputs o, o + 1 (o even: pair o / 2 of down's input) */
            __global uint *hr = yh + (size_t)r * ldh;
#pragma unroll
            for (int j = 0; j < MT_NJ / 2; j++) {
                const int o = n0 / 2 + wn * (MT_WN / 2) + j * 8 + 2 * t;
                const int u = j + MT_NJ / 2, e = 2 * hh; /* up's tile; row g + 8 hh's sums */
                if (o < N)
                    hr[xh_pos(o / 2, xo)] = mma_pack(silu_mul1(acc[i][j][e], acc[i][u][e]),
                                                     silu_mul1(acc[i][j][e + 1], acc[i][u][e + 1]));
            }
#else
            __global float *yr = mma_yrow(y, ldy, y_seq, y_seq_stride, r);
#pragma unroll
            for (int j = 0; j < MT_NJ; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int o = n0 + wn * MT_WN + j * 8 + 2 * t + e;
                    if (o < N)
                        yr[o] = (accumulate ? yr[o] : 0.0f) + acc[i][j][2 * hh + e];
                }
#endif
        }
#endif
}

#else /* a decode build: mma_skinny (-DMS_MT) or mma_wide (-DMW_NB) */

/* ---- decode: few rows, split K ---- */

#define MS_WARPS 8

/* A warp takes K in chunks of MS_CH; lane t reads MS_LE weights of its row
 * per chunk with one load (Q8_0: 8 quant bytes; Q4_0: 4 quant bytes, that
 * is 4 low and 4 high nibbles; F16: 8 halves; F32: 4 floats). In k16 step s
 * of the chunk, slot pair (2t, 2t+1) holds the lane's raw elements 4s, 4s+1
 * and pair (2t+8, 2t+9) holds 4s+2, 4s+3, which stand for k = c0 + MS_K(t, s)
 * + {0, 1, 2, 3}. MS_K keeps each step's 4 lanes of a row within 32
 * consecutive floats of X, so X's rows are read nearly coalesced too. */
#if QE_WT == 2
#define MS_LE 8
#define MS_K(t, s) (8 * (t) + 4 * (s))
#elif QE_WT == 3
#define MS_LE 8
#define MS_K(t, s) (16 * (s) + 4 * (t)) /* low nibbles: elements 4t.., high: 16 + 4t.. */
#elif QE_WT == 1
#define MS_LE 8
#define MS_K(t, s) (8 * (t) + 4 * (s))
#else
#define MS_LE 4
#define MS_K(t, s) (4 * (t))
#endif
#define MS_CH (4 * MS_LE)
/* -DMS_XFREE (with MS_XAL): mma_skinny reads X without branching on the
 * row (every lane loads a float4 of a row in range, kept where the row is
 * the call's): the engine's build for calls of more rows, where branches
 * around the loads had kept the step loop from overlapping them.
 * -DMS_XAL: every X row starts 16-byte aligned (the engine builds it so when
 * all matmul input widths are multiples of 4, and checks each call), so X is
 * read with aligned float4 loads; else with vload4, which promises only
 * 4-byte alignment and which NVIDIA splits into four loads (B 64 -7 %).
 * -DMS_X1=KMAX (with MS_XAL): the build for calls of one row and K <= KMAX
 * (decode at batch 1, Q8_0 / Q4_0 weights): each work-group first converts
 * the row into f16 pairs in local memory (KMAX / 2 uints), then
 * every step reads its fragment pair with one local load, without a branch
 * or a conversion; the same values in the same slots, so the same bits.
 * H200, B 1 launch medians (bench/ptx_run.c), Q8_0 / Q4_0, us: gate+up 23.3
 * -> 22.0 / 22.6 -> 22.2, Q/K/V 11.5 -> 11.5 / 11.4 -> 10.3, wo 10.7 -> 10.2
 * / 11.6 -> 9.4, down 21.4 -> 18.4 / 24.8 -> 16.1 (ptxas: 57 -> 40
 * registers in the few-blocks build).
 * The MS_X1 build also makes the row itself from what a decode step had
 * computed in a launch of its own before (xop; the engine's skinny_pro):
 * MS_XP_NORM, the RMSNorm of row x with weights xp (rms.cl's rms_scale,
 * each work-group for itself: a work-group of 256 passes norm.cl's
 * reduction width's barriers with the rest idle), MS_XP_SILU, the SwiGLU
 * product of gate row x and up row xp (act.cl's silu_mul1). The same
 * expressions on the same floats as rmsnorm / silu_mul, then the same
 * rounding to f16, so the same bits, without the launch and the row's
 * write and read (2 n_layers + 1 norms and n_layers SwiGLUs a step). */
#define MS_XP_COPY 0
#define MS_XP_NORM 1
#define MS_XP_SILU 2
/* And, for a layer's Q/K/V in one launch (w0, w1, w2), what rope_rows and
 * kv_store would do next, in its epilogue (epi; the engine's skinny_epi):
 * MS_EPI_ROPE rotates Q's and K's outputs at position rpos[0] (pairs
 * layout, cs the layer's table: qkv.cl's rope_pair, the same expression),
 * MS_EPI_KV writes K's and V's outputs into their f16 cache rows rslot[0]
 * n_ctx + rpos[0] of kc / vc (qkv.cl's f16_put, kv_store's). */
#define MS_EPI_ROPE 1
#define MS_EPI_KV 2

#if QE_WT == 2 || QE_WT == 3
typedef struct { uint q0, q1, d2; } ms_raw; /* a lane's quant bytes; its block's scale twice (f16x2) */

__attribute__((always_inline)) inline ms_raw ms_load(const __global uchar *w, ulong row_bytes,
                                                     int sb, int o, int c0, int t, int K)
{
    ms_raw r = {0u, 0u, 0u};
    if (c0 >= K) /* K is a multiple of 32 = MS_CH: a chunk is all in or all out */
        return r;
    const __global uchar *row = w + (ulong)o * row_bytes;
    /* aligned by weights.cl's split layout: one 8- or 4-byte load */
#if QE_WT == 2
    const uint2 q = *(const __global uint2 *)(row + sb + c0 + 8 * t);
    r.q0 = q.x;
    r.q1 = q.y;
#else
    r.q0 = *(const __global uint *)(row + sb + (c0 >> 5) * 16 + 4 * t);
#endif
    const uint d = ((const __global ushort *)row)[c0 >> 5];
    r.d2 = d | (d << 16);
    return r;
}

/* Raw elements 2p, 2p + 1 (p < MS_LE / 2) of a lane as f16x2 (mma_q8_pair /
 * mma_q4_pair: see there). */
inline uint ms_pair(ms_raw r, int p)
{
#if QE_WT == 2
    return mma_q8_pair(p < 2 ? r.q0 : r.q1, p & 1, r.d2);
#else
    /* element e < 4: low nibble of byte e, e >= 4: high nibble of byte e - 4 */
    return mma_q4_pair((p < 2 ? r.q0 : r.q0 >> 4) & 0x0F0F0F0Fu, p & 1, r.d2);
#endif
}
#elif QE_WT == 1
typedef struct { uint h[4]; } ms_raw; /* 8 halves as they are stored */

__attribute__((always_inline)) inline ms_raw ms_load(const __global uchar *w, ulong row_bytes,
                                                     int sb, int o, int c0, int t, int K)
{
    (void)sb;
    ms_raw r;
    const int k = c0 + MS_LE * t;
    const __global uchar *row = w + (ulong)o * row_bytes;
    if (k + MS_LE <= K && (row_bytes & 15) == 0) {
        /* f16 weights are already f16: their bits are the pairs (little-endian).
           One 16-byte load (k is a multiple of 8): vload4 promises only 4-byte
           alignment, and NVIDIA splits it into four loads */
        const uint4 v = *(const __global uint4 *)(row + 2 * (ulong)k);
        r.h[0] = v.x; r.h[1] = v.y; r.h[2] = v.z; r.h[3] = v.w;
        return r;
    }
    if (k + MS_LE <= K && (row_bytes & 3) == 0) {
        const uint4 v = vload4(0, (const __global uint *)row + (k >> 1));
        r.h[0] = v.x; r.h[1] = v.y; r.h[2] = v.z; r.h[3] = v.w;
        return r;
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
        r.h[i] = mma_pack(k + 2 * i < K ? wt_load(w, row_bytes, o, k + 2 * i) : 0.0f,
                          k + 2 * i + 1 < K ? wt_load(w, row_bytes, o, k + 2 * i + 1) : 0.0f);
    return r;
}

inline uint ms_pair(ms_raw r, int p) { return r.h[p]; }
#else
typedef struct { float v[MS_LE]; } ms_raw;

__attribute__((always_inline)) inline ms_raw ms_load(const __global uchar *w, ulong row_bytes,
                                                     int sb, int o, int c0, int t, int K)
{
    (void)sb;
    ms_raw r;
    const int k = c0 + MS_LE * t;
    if (k + MS_LE <= K) {
        const float4 v = vload4(0, (const __global float *)(w + (ulong)o * row_bytes) + k);
        r.v[0] = v.x; r.v[1] = v.y; r.v[2] = v.z; r.v[3] = v.w;
        return r;
    }
#pragma unroll
    for (int i = 0; i < MS_LE; i++)
        r.v[i] = k + i < K ? wt_load(w, row_bytes, o, k + i) : 0.0f;
    return r;
}

inline uint ms_pair(ms_raw r, int p) { return mma_pack(r.v[2 * p], r.v[2 * p + 1]); }
#endif

/* Which of up to three weights sharing X and K (a layer's Q, K and V, or
 * gate and up, in one launch) output block grp (of bw outputs) belongs to:
 * w0's blocks come first, then w1's, then w2's (N1 = N2 = 0 for one
 * weight). Sets the weight and its output, and returns the block's first
 * output within that weight; *cat is the weight's first output counted
 * over all three (N0, N0 + N1). */
inline int ms_pick(int grp, int bw, const __global uchar *w0, ulong rb0, int N0,
                   __global float *y0, int ldy0, const __global uchar *w1, ulong rb1, int N1,
                   __global float *y1, int ldy1, const __global uchar *w2, ulong rb2, int N2,
                   __global float *y2, int ldy2, const __global uchar **w, ulong *rb, int *N,
                   __global float **y, int *ldy, int *cat)
{
    const int b0 = (N0 + bw - 1) / bw, b1 = (N1 + bw - 1) / bw;
    *w = w0; *rb = rb0; *N = N0; *y = y0; *ldy = ldy0; *cat = 0;
    if (grp >= b0 + b1) {
        grp -= b0 + b1;
        *w = w2; *rb = rb2; *N = N2; *y = y2; *ldy = ldy2; *cat = N0 + N1;
    } else if (grp >= b0) {
        grp -= b0;
        *w = w1; *rb = rb1; *N = N1; *y = y1; *ldy = ldy1; *cat = N0;
    }
    return grp * bw;
}

#define MS_PICK_ARGS w0, rb0, N0, y0, ldy0, w1, rb1, N1, y1, ldy1, w2, rb2, N2, y2, ldy2

/* MS_NOSKIP: the decode kernels multiply chunks past K and row tiles past
 * n_rows as zeros (their weights and X load as 0) instead of branching
 * around them: a branch inside the unrolled step loop kept ptxas from
 * overlapping one step's loads with the previous step's mma.sync (H200,
 * tg128 B 64 q8_0: 15,006 -> 17,055 tok/s with mma_wide's two branches
 * gone). A zero product leaves a sum's value as it was (an accumulator that
 * starts at +0 only ever holds -0 where a store's 0 + v makes it +0
 * anyway), so the bits are those of skipping. */

#ifdef MS_MT /* an mma_skinny build */
/* Shape of a work-group, set per build by the engine (lib/engine.c,
 * skinny_shape_of): MS_MT 16-row tiles (rows per work-group = 16 MS_MT),
 * MS_NB blocks of 8 outputs (each warp multiplies the X fragments it loads
 * with all of them), MS_U chunks in flight per warp. None of the three
 * changes what an output sums or in which order, only how the work is laid
 * out, so every shape gives the same bits for the same row. */
#if !defined(MS_NB) || !defined(MS_U)
#error "an mma_skinny build needs -DMS_MT, -DMS_NB and -DMS_U"
#endif

/* The sum of the MS_WARPS warps' partial sums of (row rr, output cc) of a
 * work-group, in warp order. */
inline float ms_sum(__local float (*red)[MS_MT * 16][MS_NB * 8], int rr, int cc)
{
    float v = red[0][rr][cc];
#pragma unroll
    for (int wi = 1; wi < MS_WARPS; wi++)
        v += red[wi][rr][cc];
    return v;
}

/* MS_PRE: whether the one-row build requests its first MS_U chunks'
 * weights before it makes the row (see there). Measured on the H200
 * (tg128 B 1 tok/s, synthetic Llama-3.2-1B, two rounds on one instance):
 * q4_0 784.0 / 785.4 without, 849.3 / 847.2 with all; q8_0 893.8 / 891.1
 * without, 837.7 / 833.8 with all, 847.2 / 857.9 with all in the NB 2 U 4
 * builds only; on another instance q8_0 none 884.2 / 893.2, 1 862.2 /
 * 871.6, 2 805.0 / 818.8, 4 830.4 / 838.3. So all for Q4_0, none for Q8_0. */
#ifndef MS_X1
#define MS_PRE 0
#else
#define MS_PRE (QE_WT == 3)
#endif
#ifndef MS_XB
#define MS_XB 2
#endif
/* The one-row build's MS_XB float4s of x (and of xp) from float4 q0 on, a
 * work-group's width apart (clamped to the row's last, n4 - 1). */
__attribute__((always_inline)) inline void ms_xload(float4 *v, float4 *u, const __global float *x,
                                                    const __global float *xp, int xop, int q0,
                                                    int n4)
{
#pragma unroll
    for (int i = 0; i < MS_XB; i++) {
        const int q = min(q0 + i * 32 * MS_WARPS, n4 - 1);
        v[i] = *(const __global float4 *)(x + 4 * q);
        u[i] = xop != MS_XP_COPY ? *(const __global float4 *)(xp + 4 * q) : (float4)(0.0f);
    }
}

/* A warp's chunks u0 .. u1 - 1 of MS_U (c0 + u MS_CH MS_WARPS) of its
 * MS_NB rows o. */
__attribute__((always_inline)) inline void ms_fetch(ms_raw (*raw)[MS_NB], const __global uchar *w,
                                                    ulong rb, int sb, const int *o, int c0, int t,
                                                    int K, const int u0, const int u1)
{
#pragma unroll
    for (int u = u0; u < u1; u++)
#pragma unroll
        for (int j = 0; j < MS_NB; j++)
            raw[u][j] = ms_load(w, rb, sb, o[j], c0 + u * MS_CH * MS_WARPS, t, K);
}

/* One output block of a work-group (see ms_pick): its weight, output and
 * rows o (clamped to the weight's last; rows past N compute garbage that
 * is never stored). */
typedef struct {
    const __global uchar *w;
    ulong rb;
    int N, ldy, n0, sb;
    __global float *y;
    int o[MS_NB];
} ms_blk;

__attribute__((always_inline)) inline ms_blk ms_block(
    int grp, int g, const __global uchar *w0, ulong rb0, int N0, __global float *y0, int ldy0,
    const __global uchar *w1, ulong rb1, int N1, __global float *y1, int ldy1,
    const __global uchar *w2, ulong rb2, int N2, __global float *y2, int ldy2)
{
    ms_blk b;
    int cat; /* mma_wide's; mma_skinny stores by weight */
    b.n0 = ms_pick(grp, 8 * MS_NB, MS_PICK_ARGS, &b.w, &b.rb, &b.N, &b.y, &b.ldy, &cat);
#pragma unroll
    for (int j = 0; j < MS_NB; j++)
        b.o[j] = min(b.n0 + 8 * j + g, b.N - 1);
    b.sb = wt_row_scale_bytes(b.rb);
    return b;
}

/* One work-group: rows m0 .. m0 + 16 MS_MT - 1 and the 8 MS_NB outputs
 * n0 .. of one of up to three weights sharing X and K (a layer's Q, K and V,
 * or gate and up, in one launch): the groups along dimension 1 are the
 * weights' output blocks in order, w0's, then w1's, then w2's (N1 = N2 = 0
 * for one weight); dimension 0 holds the row groups, 32 MS_WARPS
 * work-items each. A launch may have fewer groups along dimension 1 than
 * blocks (the one-row build's: lib/engine.c x1_groups_of): group i then
 * takes blocks i, i + groups, ... in turn, so the row is made (normed,
 * staged) once for several blocks. A block's sums are the same either way.
 * (Requesting the next block's first weights before this one's sums go
 * through local memory lost on the H200 at every group count: q8_0 tg128
 * B 1 896.5 -> 846.9 tok/s at one block a group, 929.5 -> 893.6 at four
 * groups a compute unit, the few-block build's launches 12.4 -> 13.7 us.) */
__kernel __attribute__((reqd_work_group_size(32 * MS_WARPS, 1, 1)))
void mma_skinny(const __global float *x, ulong x_off, int ldx, int n_rows, int K,
                const __global uchar *w0, ulong rb0, int N0, __global float *y0, int ldy0,
                const __global uchar *w1, ulong rb1, int N1, __global float *y1, int ldy1,
                const __global uchar *w2, ulong rb2, int N2, __global float *y2, int ldy2,
                int y_seq, int y_seq_stride, int accumulate, const __global float *xp, int xop,
                float eps, const __global float2 *cs, const __global int *rpos,
                const __global int *rslot, int hd, int n_rot, int n_ctx, __global uchar *kc,
                ulong kb, __global uchar *vc, ulong vb, int epi)
{
    __local float red[MS_WARPS][MS_MT * 16][MS_NB * 8];
#ifdef MS_X1
    /* the row as f16 pairs; on a 128-byte line as mma_tile's stages (H200,
       one round, q8_0 tg128 B 1 951.7 -> 960.1 tok/s, Q/K/V 11.2 -> 9.9 us
       and wo / down 13.5 -> 12.5 us a launch, the same generations) */
    __local uint xs[MS_X1 / 2] __attribute__((aligned(128)));
#endif
    const int tid = get_local_id(0);
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    /* Row groups run along dimension 0, so the groups that read the same
       weight rows are dispatched together and share them through L2. */
    const int m0 = get_group_id(0) * (MS_MT * 16);
    const int bw = 8 * MS_NB;
    const int n_blk = (N0 + bw - 1) / bw + (N1 + bw - 1) / bw + (N2 + bw - 1) / bw;
    int grp = get_group_id(1);
    /* which weight this group multiplies (uniform across the work-group) */
    ms_blk b = ms_block(grp, g, MS_PICK_ARGS);
    x += x_off;
    /* chunk c goes to warp c % MS_WARPS; MS_U chunks are loaded before use */
    const int c_step = MS_CH * MS_WARPS * MS_U;
    ms_raw raw[MS_U][MS_NB];
    int pref = 0; /* raw holds the block's first MS_U chunks already */
#ifdef MS_X1
#if !defined(MS_XAL) || MS_MT != 1
#error "MS_X1 needs MS_XAL and MS_MT 1"
#endif
    /* MS_PRE: the first chunks' weights are requested before the row is
       made, so their memory latency passes while the work-group stages
       (and normalises) X instead of after: every work-group of a one-row
       call does both at once, at the start of the launch. The same loads,
       so the same bits. */
#if MS_PRE
    ms_fetch(raw, b.w, b.rb, b.sb, b.o, warp * MS_CH, t, K, 0, MS_U);
    pref = 1;
#endif
    if (xop == MS_XP_SILU)
        xp += x_off;
    const int n4 = min(K, MS_X1) / 4; /* K % 4 == 0 under MS_XAL */
    /* The first MS_XB float4s of the row are requested before the norm's
       own reads and reduction, so their L2 latency passes during it
       instead of after (the same values: the same bits). H200, tg128 B 1
       tok/s, alternating: q8_0 947.5 / 946.6 -> 961.0 / 968.2 (Q/K/V 10.1
       -> 9.8 us a launch), q4_0 909.9 / 917.2 -> 921.0 / 920.5. */
    float4 v[MS_XB], u[MS_XB];
    ms_xload(v, u, x, xp, xop, tid, n4);
    /* red is free until the epilogue (every read of red[0] comes before the
       barrier below) and holds more than one float per work-item */
    const float scale = xop == MS_XP_NORM ? rms_scale(&red[0][0][0], x, K, eps, tid) : 0.0f;
    /* MS_XB float4s of x (and of xp) a work-item requests before it uses
       any (clamped to the row's last: a repeat past the row is not
       stored), where one at a time down's 8,192-wide row had waited out
       eight L2 latencies in a row. H200, tg128 B 1 tok/s, synthetic
       Llama-3.2-1B, alternating: q8_0 1 940.3 / 934.9, 2 957.6, 4 943.6 /
       957.0, 8 871.2; q4_0 1 882.0 / 862.9, 2 909.9, 4 868.3 / 868.4, 8
       856.8 (at 4 and 8 Q4_0's gate / up and LM head launch lost more than
       its wo and down gained: MS_PRE holds its first weights meanwhile).
       So the engine builds Q4_0's Q/K/V, wo and down apart with 8 (one
       round for down's row; lib/engine.c x1_few_of: q4_0 about +4 %). */
    for (int q0 = tid; q0 < n4; q0 += MS_XB * 32 * MS_WARPS) {
        if (q0 != tid)
            ms_xload(v, u, x, xp, xop, q0, n4);
#pragma unroll
        for (int i = 0; i < MS_XB; i++) {
            const int q = q0 + i * 32 * MS_WARPS;
            if (q >= n4)
                break;
            if (xop == MS_XP_NORM)
                v[i] = v[i] * scale * u[i];
            else if (xop == MS_XP_SILU)
                v[i] = (float4)(silu_mul1(v[i].x, u[i].x), silu_mul1(v[i].y, u[i].y),
                                silu_mul1(v[i].z, u[i].z), silu_mul1(v[i].w, u[i].w));
            xs[2 * q] = mma_pack(v[i].x, v[i].y);
            xs[2 * q + 1] = mma_pack(v[i].z, v[i].w);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    (void)xp, (void)xop, (void)eps, (void)cs, (void)rpos, (void)rslot, (void)hd, (void)n_rot;
    (void)n_ctx, (void)kc, (void)kb, (void)vc, (void)vb, (void)epi;
#endif
    for (;;) {
        float acc[MS_NB][MS_MT][4];
#pragma unroll
        for (int j = 0; j < MS_NB; j++)
#pragma unroll
            for (int i = 0; i < MS_MT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[j][i][e] = 0.0f;

        for (int c0 = warp * MS_CH; c0 < K; c0 += c_step) {
            if (c0 != warp * MS_CH || !pref) /* the first chunks may have come before */
                ms_fetch(raw, b.w, b.rb, b.sb, b.o, c0, t, K, 0, MS_U);
#pragma unroll
            for (int u = 0; u < MS_U; u++) {
                const int cu = c0 + u * MS_CH * MS_WARPS;
#pragma unroll
                for (int s = 0; s < MS_LE / 4; s++) {
                    const int k = cu + MS_K(t, s); /* past K: zeros (see MS_NOSKIP) */
                    uint bq[MS_NB][2];
#pragma unroll
                    for (int j = 0; j < MS_NB; j++) {
                        bq[j][0] = ms_pair(raw[u][j], 2 * s);
                        bq[j][1] = ms_pair(raw[u][j], 2 * s + 1);
                    }
#pragma unroll
                    for (int i = 0; i < MS_MT; i++) { /* tiles past n_rows: zeros */
                        uint a[4];
#pragma unroll
                        for (int h = 0; h < 2; h++) { /* rows g, g + 8 */
                            const int r = m0 + i * 16 + g + 8 * h;
#ifdef MS_X1
                            /* row 0 is the call's one row; other rows' slots stay 0 */
                            const uint2 p2 = *(const __local uint2 *)(xs + min(k, K - 4) / 2);
                            const int in = r == 0 && k < K;
                            a[h] = in ? p2.x : 0u;
                            a[h + 2] = in ? p2.y : 0u;
#else
                            float4 v = (float4)(0.0f);
#if defined(MS_XFREE) && defined(MS_XAL)
                            /* K is a multiple of 4 here (and k of 4): every lane
                               loads a float4 of a row in range and keeps it only
                               where (r, k) is, with no branch in the step loop */
                            v = *(const __global float4 *)(x + (size_t)min(r, n_rows - 1) * ldx +
                                                           min(k, K - 4));
                            v = r < n_rows && k < K ? v : (float4)(0.0f);
#else
                            const __global float *xr = x + (size_t)r * ldx + k;
                            if (r < n_rows && k + 3 < K)
#ifdef MS_XAL
                                v = *(const __global float4 *)xr;
#else
                                v = vload4(0, xr);
#endif
                            else if (r < n_rows && k < K)
                                v = (float4)(xr[0], k + 1 < K ? xr[1] : 0.0f,
                                             k + 2 < K ? xr[2] : 0.0f, 0.0f);
#endif
                            a[h] = mma_pack(v.x, v.y);
                            a[h + 2] = mma_pack(v.z, v.w);
#endif
                        }
#pragma unroll
                        for (int j = 0; j < MS_NB; j++)
                            MMA(acc[j][i], a, bq[j]);
                    }
                }
            }
        }

        pref = 0;
#pragma unroll
        for (int j = 0; j < MS_NB; j++)
#pragma unroll
            for (int i = 0; i < MS_MT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    red[warp][i * 16 + g + 8 * (e >> 1)][8 * j + 2 * t + (e & 1)] = acc[j][i][e];
        barrier(CLK_LOCAL_MEM_FENCE);
        int stored = 0;
#ifdef MS_X1
        if (epi) { /* Q/K/V of the call's one row, not accumulating (see MS_EPI_ROPE) */
            const int b0 = (N0 + bw - 1) / bw, b1 = (N1 + bw - 1) / bw;
            const int wsel = grp < b0 ? 0 : grp < b0 + b1 ? 1 : 2;
            const int p = rpos[0];
            for (int c = tid; c < bw; c += 32 * MS_WARPS) {
                const int o = b.n0 + c;
                if (o >= b.N)
                    continue;
                /* the value mma_store would write (0 + sum: a -0 sum as +0) */
                float v = 0.0f + ms_sum(red, 0, c);
                if ((epi & MS_EPI_ROPE) && wsel < 2 && o % hd < n_rot) {
                    /* the pair's other element is in this block: n0, hd and n_rot are even */
                    const float u = 0.0f + ms_sum(red, 0, c ^ 1);
                    const float2 cs1 = cs[(size_t)p * (n_rot / 2) + (o % hd) / 2];
                    const float2 r = (o & 1) ? rope_pair(u, v, cs1) : rope_pair(v, u, cs1);
                    v = (o & 1) ? r.y : r.x;
                }
                b.y[o] = v; /* row 0 of y: mma_yrow(y, ..., 0) */
                if ((epi & MS_EPI_KV) && wsel > 0) {
                    const ulong at = (ulong)rslot[0] * n_ctx + p;
                    f16_put((__global ushort *)(wsel == 1 ? kc + at * kb : vc + at * vb), o, v);
                }
            }
            stored = 1;
        }
#endif
        for (int c = stored ? MS_MT * 16 * bw : tid; c < MS_MT * 16 * bw; c += 32 * MS_WARPS) {
            const int rr = c / bw, cc = c % bw;
            if (m0 + rr >= n_rows)
                continue;
            mma_store(b.y, b.ldy, y_seq, y_seq_stride, accumulate, n_rows, b.N, m0 + rr,
                      b.n0 + cc, ms_sum(red, rr, cc));
        }
        grp += get_num_groups(1);
        if (grp >= n_blk)
            break;
        b = ms_block(grp, g, MS_PICK_ARGS);
        barrier(CLK_LOCAL_MEM_FENCE); /* red's readers are done before it is written again */
    }
}
#else /* an mma_wide build */
/* ---- decode, many rows: 64-row tiles, X staged once in f16 ----
 *
 * mma_wide computes exactly mma_skinny's sums in mma_skinny's order, laid
 * out for calls of many rows. In mma_skinny an output is the sum, in warp
 * order, of MS_WARPS chains: chain c runs over K's chunks c, c + 8, c + 16,
 * ... (each chunk's k16 steps in order, slots mapped to k by MS_K), and the
 * chains are added ((c0 + c1) + c2) + ... Here a work-group takes 64 rows
 * (4 tiles of 16) and 64 MW_NB outputs, each warp 8 MW_NB of them for all
 * 64 rows, so every X fragment staged in local memory serves all warps and
 * every weight fragment 4 row tiles. Chains are a dimension of the grid,
 * fixed per build by MW_SPLIT:
 *   1   the work-group runs chains 0 .. 7 one after the other and keeps
 *       their sum in registers in the same order (calls with many outputs:
 *       the LM head);
 *   8   work-group (rg, c) runs chain c alone and writes it to
 *       part[c][row][output], and mma_wide_sum adds the 8 in order (calls
 *       with few outputs, where 64 MW_NB-output groups alone would leave
 *       most of the GPU idle; no running sum: fewer registers).
 * Either way a row's bits are mma_skinny's, whatever the call. The weights
 * and X of the next stage are loaded while one is multiplied. */
#if !defined(MW_U) || !defined(MW_SPLIT)
#error "an mma_wide build needs -DMW_NB, -DMW_U and -DMW_SPLIT"
#endif
#define MW_ROWS 64
#define MW_Q (MS_CH / 4)                       /* float4s of X per row and chunk */
#define MW_LD (MW_U * MS_CH / 2 + 8)           /* uints per staged row (+8: no bank conflicts) */
#define MW_XQ (MW_ROWS * MW_U * MW_Q / (32 * MS_WARPS)) /* float4s a work-item stages */
/* Where X's chunk elements 4q .. 4q + 3 go in a staged row, in halves: the
 * inverse of MS_K, so that in k16 step s lane t finds the four values its
 * slots need at 16 s + 4 t, the four lanes of a row 8 consecutive uints. */
#if QE_WT == 2 || QE_WT == 1
#define MW_POS(q) (16 * ((q) & 1) + 4 * ((q) >> 1))
#else
#define MW_POS(q) (4 * (q))
#endif

/* This work-item's share of X for the MW_U chunks c, c + 8 MS_CH, ... of
 * rows m0 .. m0 + 63, as f32 (zeros past n_rows and K). */
__attribute__((always_inline)) inline void mw_fetch(const __global float *x, int ldx, int n_rows,
                                                    int K, int m0, int c, int tid, float4 *xr)
{
#pragma unroll
    for (int j = 0; j < MW_XQ; j++) {
        const int i = tid + 32 * MS_WARPS * j;
        const int q = i % MW_Q, u = (i / MW_Q) % MW_U, r = m0 + i / (MW_Q * MW_U);
        const int k = c + u * MS_CH * MS_WARPS + 4 * q;
        const __global float *xp = x + (size_t)r * ldx + k;
        float4 v = (float4)(0.0f);
        if (r < n_rows && k + 3 < K)
#ifdef MS_XAL
            v = *(const __global float4 *)xp;
#else
            v = vload4(0, xp);
#endif
        else if (r < n_rows && k < K)
            v = (float4)(xp[0], k + 1 < K ? xp[1] : 0.0f, k + 2 < K ? xp[2] : 0.0f, 0.0f);
        xr[j] = v;
    }
}

/* ... and into local memory as f16, rounded as mma_skinny rounds them */
__attribute__((always_inline)) inline void mw_stage(__local uint *xs, int tid, const float4 *xr)
{
#pragma unroll
    for (int j = 0; j < MW_XQ; j++) {
        const int i = tid + 32 * MS_WARPS * j;
        const int q = i % MW_Q, u = (i / MW_Q) % MW_U, r = i / (MW_Q * MW_U);
        __local uint *p = xs + r * MW_LD + u * (MS_CH / 2) + MW_POS(q) / 2;
        p[0] = mma_pack(xr[j].x, xr[j].y);
        p[1] = mma_pack(xr[j].z, xr[j].w);
    }
}

/* Work-groups: dimension 0 holds (row group, chain) pairs, row group
 * fastest (groups reading the same weight rows run together); dimension 1
 * the weights' blocks of 64 MW_NB outputs, as in mma_skinny. */
__kernel __attribute__((reqd_work_group_size(32 * MS_WARPS, 1, 1)))
void mma_wide(const __global float *x, ulong x_off, int ldx, int n_rows, int K,
              const __global uchar *w0, ulong rb0, int N0, __global float *y0, int ldy0,
              const __global uchar *w1, ulong rb1, int N1, __global float *y1, int ldy1,
              const __global uchar *w2, ulong rb2, int N2, __global float *y2, int ldy2,
              int y_seq, int y_seq_stride, int accumulate, __global float *part)
{
    __local uint xs[MW_ROWS * MW_LD];
    const int tid = get_local_id(0);
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int n_rg = (n_rows + MW_ROWS - 1) / MW_ROWS;
    const int m0 = (get_group_id(0) % n_rg) * MW_ROWS;
    const int ch0 = MW_SPLIT == 1 ? 0 : get_group_id(0) / n_rg;
    const int ch1 = MW_SPLIT == 1 ? MS_WARPS : ch0 + 1;
    const __global uchar *w;
    ulong w_row_bytes;
    int N, ldy, cat;
    __global float *y;
    const int n0 = ms_pick(get_group_id(1), 64 * MW_NB, MS_PICK_ARGS, &w, &w_row_bytes, &N, &y,
                           &ldy, &cat);
    const int NT = N0 + N1 + N2;
    int o[MW_NB];
#pragma unroll
    for (int j = 0; j < MW_NB; j++) /* rows past N compute garbage that is never stored */
        o[j] = min(n0 + 8 * (warp * MW_NB + j) + g, N - 1);
    const int sb = wt_row_scale_bytes(w_row_bytes);
    x += x_off;
    float acc[MW_NB][MW_ROWS / 16][4];
#if MW_SPLIT == 1
    float tot[MW_NB][MW_ROWS / 16][4];
#endif
#pragma unroll
    for (int j = 0; j < MW_NB; j++)
#pragma unroll
        for (int i = 0; i < MW_ROWS / 16; i++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[j][i][e] = 0.0f;

    /* stages of MW_U chunks of one chain */
    int ch = ch0, c = ch0 * MS_CH;
    float4 xr[MW_XQ];
    ms_raw raw[MW_U][MW_NB], nraw[MW_U][MW_NB];
    mw_fetch(x, ldx, n_rows, K, m0, c, tid, xr);
#pragma unroll
    for (int u = 0; u < MW_U; u++)
#pragma unroll
        for (int j = 0; j < MW_NB; j++)
            raw[u][j] = ms_load(w, w_row_bytes, sb, o[j], c + u * MS_CH * MS_WARPS, t, K);
    while (ch < ch1) {
        mw_stage(xs, tid, xr);
        barrier(CLK_LOCAL_MEM_FENCE);
        int nch = ch, nc = c + MS_CH * MS_WARPS * MW_U;
        const int chain_ends = nc >= K;
        if (chain_ends) {
            nch++;
            nc = nch * MS_CH;
        }
        if (nch < ch1) {
            mw_fetch(x, ldx, n_rows, K, m0, nc, tid, xr);
#pragma unroll
            for (int u = 0; u < MW_U; u++)
#pragma unroll
                for (int j = 0; j < MW_NB; j++)
                    nraw[u][j] = ms_load(w, w_row_bytes, sb, o[j], nc + u * MS_CH * MS_WARPS, t, K);
        }
#pragma unroll
        for (int u = 0; u < MW_U; u++) { /* chunks past K and tiles past n_rows: MS_NOSKIP */
#pragma unroll
            for (int s = 0; s < MS_LE / 4; s++) {
                uint b[MW_NB][2];
#pragma unroll
                for (int j = 0; j < MW_NB; j++) {
                    b[j][0] = ms_pair(raw[u][j], 2 * s);
                    b[j][1] = ms_pair(raw[u][j], 2 * s + 1);
                }
#pragma unroll
                for (int i = 0; i < MW_ROWS / 16; i++) {
                    uint a[4];
#pragma unroll
                    for (int h = 0; h < 2; h++) { /* rows g, g + 8 */
                        const uint2 v = vload2(0, xs + (i * 16 + g + 8 * h) * MW_LD +
                                                      u * (MS_CH / 2) + 8 * s + 2 * t);
                        a[h] = v.x;
                        a[h + 2] = v.y;
                    }
#pragma unroll
                    for (int j = 0; j < MW_NB; j++)
                        MMA(acc[j][i], a, b[j]);
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (chain_ends) {
#pragma unroll
            for (int j = 0; j < MW_NB; j++)
#pragma unroll
                for (int i = 0; i < MW_ROWS / 16; i++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
#if MW_SPLIT == 1
                        /* mma_skinny's v = red[0], then v += red[c] */
                        tot[j][i][e] = ch == 0 ? acc[j][i][e] : tot[j][i][e] + acc[j][i][e];
#else
                        const int r = m0 + i * 16 + g + 8 * (e >> 1);
                        const int oo = n0 + 8 * (warp * MW_NB + j) + 2 * t + (e & 1);
                        if (r < n_rows && oo < N)
                            part[((size_t)ch * n_rows + r) * NT + cat + oo] = acc[j][i][e];
#endif
                        acc[j][i][e] = 0.0f;
                    }
        }
#pragma unroll
        for (int u = 0; u < MW_U; u++)
#pragma unroll
            for (int j = 0; j < MW_NB; j++)
                raw[u][j] = nraw[u][j];
        ch = nch;
        c = nc;
    }
#if MW_SPLIT == 1
#pragma unroll
    for (int j = 0; j < MW_NB; j++)
#pragma unroll
        for (int i = 0; i < MW_ROWS / 16; i++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                mma_store(y, ldy, y_seq, y_seq_stride, accumulate, n_rows, N,
                          m0 + i * 16 + g + 8 * (e >> 1),
                          n0 + 8 * (warp * MW_NB + j) + 2 * t + (e & 1), tot[j][i][e]);
#endif
}

/* split 8: output (row, o) over all weights' outputs o < N0 + N1 + N2 is
 * the 8 chains of part added in order, stored by mma_skinny's rule */
__kernel void mma_wide_sum(const __global float *part, int n_rows,
                           const __global uchar *w0, ulong rb0, int N0, __global float *y0, int ldy0,
                           const __global uchar *w1, ulong rb1, int N1, __global float *y1, int ldy1,
                           const __global uchar *w2, ulong rb2, int N2, __global float *y2, int ldy2,
                           int y_seq, int y_seq_stride, int accumulate)
{
    const int oc = get_global_id(0), r = get_global_id(1), NT = N0 + N1 + N2;
    if (oc >= NT || r >= n_rows)
        return;
    float v = part[(size_t)r * NT + oc];
    for (int c = 1; c < MS_WARPS; c++)
        v += part[((size_t)c * n_rows + r) * NT + oc];
    const __global uchar *w;
    ulong rb;
    int N, ldy, cat;
    __global float *y;
    const int o = ms_pick(oc, 1, MS_PICK_ARGS, &w, &rb, &N, &y, &ldy, &cat);
    mma_store(y, ldy, y_seq, y_seq_stride, accumulate, n_rows, N, r, o, v);
}
#endif /* MS_MT */
#endif /* a decode build */
