/* engine.c - the OpenCL forward pass for batched prefill (see engine.h).
 *
 * Workload: perplexity-style prefill, n_seq sequences x n_tok positions per
 * call, statistics for the second half of each sequence. Everything between
 * the token upload and the statistics read-back is enqueued on the qe_cl's
 * in-order queue without waiting, so a forward pass costs one host round
 * trip. The schedule (docs/ARCHITECTURE.md repeats it):
 *
 *   embed                      tokens -> x                [rows][dim]
 *   per layer:
 *     rmsnorm                  x -> h                     [rows][dim]
 *     matmul wq / wk / wv      h -> q [rows][n_heads*hd], K/V cache rows
 *                              s*n_ctx + p [n_seq*n_ctx][n_kv*hd]
 *     rope                     q, K cache (in place; under mma's f16 wgmma
 *                              build the Q and K matmuls rotate as they store
 *                              instead: rope_fuses)
 *     attention                q, K, V -> att             [rows][n_heads*hd]
 *     matmul wo (accumulate)   att -> x
 *     rmsnorm                  x -> h
 *     matmul w_gate / w_up     h -> g, u                  [rows][n_ff]
 *     silu_mul                 g = silu(g) * u
 *     matmul w_down (accum.)   g -> x
 *   rmsnorm (gathering p >= out_first)  x -> hout         [n_out_rows][dim]
 *   per head pass of <= head_rows rows:
 *     matmul output            hout -> logits             [head_rows][n_vocab]
 *     logit_stats              logits -> stats            [n_out_rows][4+2k]
 *   (or, where lse_of says, per pass of up to 32 x head_rows rows:
 *     mma_tile_lse             hout -> a record per 128 logits, in logits
 *     logit_tiles              records -> stats)
 *   one read of stats.
 * rows = n_seq * n_tok, row s*n_tok + p for position p of sequence s.
 *
 * Threading: one thread at a time per engine (and per qe_cl).
 */
#include "engine.h"
#include "engine_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"

qe_engine_opts qe_engine_opts_default(void)
{
    qe_engine_opts o = {.n_ctx = 512, .n_seq = 1, .top_k = 10, .head_rows = 0,
                        .kv_k = QE_KV_F32, .kv_v = QE_KV_F32};
    return o;
}

const char *qe_gemm_name(qe_gemm g)
{
    switch (g) {
    case QE_GEMM_AUTO: return "auto";
    case QE_GEMM_F32: return "f32";
    case QE_GEMM_MMA: return "mma";
    }
    return NULL;
}

int qe_gemm_parse(const char *s, qe_gemm *out)
{
    for (int g = QE_GEMM_AUTO; g <= QE_GEMM_MMA; g++)
        if (s && !strcmp(s, qe_gemm_name((qe_gemm)g))) {
            *out = (qe_gemm)g;
            return 1;
        }
    return 0;
}

qe_status qe_engine_gemm_resolve(qe_cl *cl, qe_gemm want, qe_gemm *out)
{
    qe_gemm g = want;
    const char *env = getenv("QEVAL_GEMM");
    if (!qe_gemm_name(want))
        return qe_fail(QE_EINVAL, "engine: gemm %d is not auto, f32 or mma", (int)want);
    if (g == QE_GEMM_AUTO && env && *env && !qe_gemm_parse(env, &g))
        return qe_fail(QE_EINVAL, "engine: QEVAL_GEMM=%s: expected auto, f32 or mma", env);
    if (g == QE_GEMM_F32) {
        *out = g;
        return QE_OK;
    }
    qe_cl_caps caps;
    qe_status st = qe_cl_probe(cl, &caps);
    if (st != QE_OK)
        return st;
    if (g == QE_GEMM_MMA && !caps.ptx_mma)
        return qe_fail(QE_EUNSUPPORTED, "engine: gemm mma: the device (%s) has no inline-PTX "
                                        "mma.sync (see qeval devices)", qe_cl_device(cl)->name);
    *out = caps.ptx_mma ? QE_GEMM_MMA : QE_GEMM_F32;
    return QE_OK;
}

qe_engine_opts qe_engine_options(const qe_engine *e)
{
    return e->opt;
}

cl_mem qe_engine_logits_mem(const qe_engine *e)
{
    return e->logits;
}

/* ---- weights: the one host-side dispatch on weight type ---- */

/* How a stored weight reaches the device: as stored, or converted on the
 * host row by row (qe_tensor_row_f32) to f32 or f16. */
enum { CONV_NONE = 0, CONV_F32, CONV_F16 };

/* Device format of a stored weight type, and the host conversion on the way.
 * The one host-side dispatch on weight type (kernels/weights.cl's wt_load is
 * the device side):
 *   F32, F16, Q8_0, Q4_0   as stored (block formats dequantized inside the
 *                          kernels, never expanded in device memory)
 *   BF16                   -> f32 (exact; twice the file's bytes)
 *   Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
 *                          -> f16: decoded exactly as ggml does, then rounded
 *                          once to half (relative error <= 2^-11 per weight,
 *                          two orders of magnitude below these formats' own
 *                          quantization error; 16 bits/weight on the device) */
static qe_status engine_wfmt_of(const qe_tensor *t, int *fmt, int *conv)
{
    switch (t->type) {
    case QE_DT_F32:
        *fmt = WF_F32;
        *conv = CONV_NONE;
        return QE_OK;
    case QE_DT_F16:
        *fmt = WF_F16;
        *conv = CONV_NONE;
        return QE_OK;
    case QE_DT_Q8_0:
        *fmt = WF_Q8_0;
        *conv = CONV_NONE;
        return QE_OK;
    case QE_DT_Q4_0:
        *fmt = WF_Q4_0;
        *conv = CONV_NONE;
        return QE_OK;
    case QE_DT_BF16:
        *fmt = WF_F32;
        *conv = CONV_F32;
        return QE_OK;
    case QE_DT_Q4_1: case QE_DT_Q5_0: case QE_DT_Q5_1:
    case QE_DT_Q4_K: case QE_DT_Q5_K: case QE_DT_Q6_K:
        *fmt = WF_F16;
        *conv = CONV_F16;
        return QE_OK;
    default:
        return qe_fail(QE_EUNSUPPORTED, "engine: tensor %s: type %s has no device kernel", t->name,
                       qe_dtype_name(t->type));
    }
}

/* Environment variable name as "A,B,C" (three integers) into v; 0 when it is
 * unset or not that. */
static int env_ints3(const char *name, int *v)
{
    const char *env = getenv(name);
    return env && sscanf(env, "%d,%d,%d", &v[0], &v[1], &v[2]) == 3;
}

/* mma_skinny's work-group shape (kernels/mma.cl), for decode calls of up
 * to 16 rows: two 8-output blocks per work-group (each X fragment a warp
 * loads serves both), 4 chunks in flight per warp. Tuned on the H200
 * (synthetic Llama-3.2-1B, tg128 tok/s, MT,NB,U): session 7, two rounds on
 * one instance, q8_0 B 1: 1,1,8 585 / 589, 1,2,4 601 / 607, 1,2,2 589 / 590,
 * 1,4,2 548 / 548; q4_0 B 1 579 -> 594, f16 B 1 567 -> 568, q8_0 B 16 6946
 * -> 7243 (1,1,8 -> 1,2,4). Earlier, NB 1: U 2/4/8/16 = 433/427/446/368.
 * No shape changes an output's sums or their order. QEVAL_MMA_SKINNY =
 * "MT,NB,U" replaces it for such experiments (read when the engine opens:
 * the build and its launches then agree). */
static skinny_shape skinny_shape_of(void)
{
    skinny_shape sh = {1, 2, 4};
    int v[3];
    if (env_ints3("QEVAL_MMA_SKINNY", v) && v[0] >= 1 && v[0] <= 8 && v[1] >= 1 && v[1] <= 8 &&
        v[2] >= 1 && v[2] <= 32)
        sh = (skinny_shape){v[0], v[1], v[2]};
    return sh;
}

/* A second mma_skinny build for calls with few output blocks (a layer's
 * 2048-output wo and down give the default shape 128 work-groups, under
 * one a multiprocessor of an H200): the same MS_MT, its own MS_NB and MS_U,
 * used where the default shape gives fewer than *few work-groups (0:
 * never): one 8-output block and 8 chunks in flight, below two work-groups
 * a compute unit. Measured on the H200 (tg128 tok/s, two rounds on one
 * instance, synthetic Llama-3.2-1B; Q/K/V, wo and down take it): q8_0 B 1
 * without 598.9 / 616.2, NB,U 1,8 621.7 / 623.7, 1,4 618.9 / 623.7, 2,8
 * 607.8 / 604.0; q4_0 B 1 602.6 / 610.3 -> 1,8 621.6 / 619.9; B 4 within
 * 2 %. QEVAL_MMA_SKINNY_FEW = "NB,U,GROUPS" replaces it. */
static skinny_shape skinny_few_of(skinny_shape base, int compute_units, int *few)
{
    skinny_shape sh = base;
    int v[3];
    sh.nb = 1;
    sh.u = 8;
    *few = 2 * compute_units;
    if (env_ints3("QEVAL_MMA_SKINNY_FEW", v) && v[0] >= 1 && v[0] <= 8 && v[1] >= 1 &&
        v[1] <= 32 && v[2] >= 0) {
        sh.nb = v[0];
        sh.u = v[1];
        *few = v[2];
    }
    return sh;
}

/* mma_skinny's X loads without branches (MS_XFREE: every lane loads a
 * float4 of a row in range and keeps it where its row is the call's) for
 * decode calls of more than this many rows, and at any count for f16
 * weights. Measured on the H200 (tg128 tok/s, two rounds, synthetic
 * Llama-3.2-1B), branch-free at every count against the branches: q8_0 B 1
 * 629.9 / 623.2 -> 580.3 / 572.1, B 4 2381 / 2336 -> 2275 / 2243, B 16
 * 7597 / 7704 -> 8461 / 8342; q4_0 B 1 618 / 626 -> 580 / 575, B 16 7026 /
 * 7042 -> 8324 / 8295; f16 B 1 578 / 581 -> 598 / 593, B 4 2140 / 2159 ->
 * 2256 / 2289, B 16 7224 / 7268 -> 8259 / 8324; and, on another instance,
 * branch-free above 4 rows (f16 at any count): q8_0 B 8 4557 / 4635 ->
 * 4392 / 4349, q4_0 B 8 4594 / 4507 -> 4386 / 4329 (f16 B 8 4245 / 4310 ->
 * 4433 / 4393), hence 8. Same bits either way. QEVAL_MMA_XFREE_ROWS
 * replaces it (16: never for Q8_0 / Q4_0). */
static int msk_xfree_of(void)
{
    const char *env = getenv("QEVAL_MMA_XFREE_ROWS");
    int v = 8;
    if (env && (sscanf(env, "%d", &v) != 1 || v < 0))
        v = 8;
    return v;
}

/* How many work-groups the one-row build (MS_X1) launches along the output
 * blocks: at most 4 a compute unit, each then taking several blocks in turn
 * (kernels/mma.cl), so the row is normed and staged once for several: the
 * LM head's 8,016 blocks had each made the row for 16 outputs. Measured on
 * the H200 (tg128 B 1 tok/s, synthetic Llama-3.2-1B, QEVAL_MMA_X1_GROUPS):
 * q8_0 one group a block 896.5, 3 a CU 908.0, 4 926.0 (929.5 on a second
 * run), 5 904.9, 8 903.1, 12 913.0, 16 901.3; q4_0 845.3, 853.3, 878.9,
 * 837.9, 853.0, 845.3, 848.0. At 4 the gate / up launch (1,024 blocks) and
 * the LM head take it: their launches' device time a step 492 -> 440 us
 * (q8_0; at 8 a CU, which leaves gate / up as it was, the LM head alone
 * 127.6 -> 110.8 us). Same bits at every count. QEVAL_MMA_X1_GROUPS = N
 * work-groups a launch replaces it (0: a group per block; the sweep above
 * set N = 132 x the count a CU). */
static size_t x1_groups_of(int compute_units)
{
    long v = 0;
    const char *env = getenv("QEVAL_MMA_X1_GROUPS");
    if (env && sscanf(env, "%ld", &v) == 1 && v >= 0 && v <= (1L << 24))
        return (size_t)v;
    return 4 * (size_t)(compute_units > 0 ? compute_units : 1);
}

/* The second shape of the one-row build (MS_X1; Q8_0 / Q4_0), which since
 * session 11 also makes its row (norm, SwiGLU) and may end Q/K/V with RoPE
 * and the cache writes, so the general one no longer suits it. Measured on
 * the H200 (tg128 B 1 tok/s, synthetic Llama-3.2-1B, two rounds on one
 * instance, QEVAL_MMA_SKINNY_FEW = NB,U,GROUPS on every build): q8_0 1,8,264
 * (the general one) 797.6 / 805.6, 2,8,264 821.9 / 820.3, 1,4,264 701.5 /
 * 696.1, none (1,8,0) 804.6 / 796.5; q4_0 1,8,264 684.3 / 692.7, none 735.0 /
 * 727.7, 2,8,264 683.2 / 679.5, 1,4,264 698.3 / 694.7. So Q8_0 takes NB 2,
 * U 8 below msk_few work-groups. Q4_0 takes the default shape there, built
 * with MS_XB 8 (msk_x1_few_xb): its Q/K/V, wo and down (down stages an 8,192-wide
 * row, 8 float4 of gate and of up a work-item) then request their whole row
 * at once, while gate / up and the LM head keep MS_XB 2, where more had cost
 * them more than down gained (kernels/mma.cl MS_XB). Session 18, H200,
 * alternating on one instance (QEVAL_MMA_X1_FEW_XB, none = 2): q4_0 885.8 /
 * 872.6 / 880.2 / 871.7 -> 8: 908.7 / 917.5 / 912.8 / 916.8, 4: 901.6 /
 * 897.1 (wo and down 14.3 / 15.5 -> 13.7 / 13.2 us a launch); q8_0's NB 2
 * build with 8: 956.1 / 938.4 / 945.5 / 947.6 -> 940.0 / 940.6 / 937.4 /
 * 940.7, so Q8_0 keeps 2. QEVAL_MMA_SKINNY_FEW, when set, still sets every
 * build's shape (and QEVAL_MMA_X1_FEW_XB every format's MS_XB there). Same
 * bits whatever the shape or MS_XB: they change which loads go together,
 * not what is summed. */
static void x1_few_of(qe_engine *e, int fmt)
{
    e->msk_x1_few[fmt] = e->msk_shape[1];
    e->msk_x1_few_n[fmt] = e->msk_few;
    e->msk_x1_few_xb[fmt] = fmt == WF_Q4_0 ? 8 : 2;
    const char *xb = getenv("QEVAL_MMA_X1_FEW_XB");
    int v = 0;
    if (xb && sscanf(xb, "%d", &v) == 1 && v >= 1 && v <= 16)
        e->msk_x1_few_xb[fmt] = v;
    if (getenv("QEVAL_MMA_SKINNY_FEW"))
        return;
    if (fmt == WF_Q8_0)
        e->msk_x1_few[fmt].nb = 2;
    else if (fmt == WF_Q4_0)
        e->msk_x1_few[fmt] = e->msk_shape[0];
}

/* The second mma_skinny shape of build xv for weights of format fmt into
 * *sh, and below how many work-groups of the default shape a call takes it
 * (0: never; engine_open resolves both, skinny_few_of / x1_few_of). */
static int skinny_few(const qe_engine *e, int xv, int fmt, skinny_shape *sh)
{
    if (xv == MSK_X1) {
        *sh = e->msk_x1_few[fmt];
        return e->msk_x1_few_n[fmt];
    }
    *sh = e->msk_shape[1];
    return e->msk_few;
}

/* mma_skinny's MS_X1 build (one row of X staged in local memory) is
 * built and used for these weight formats only: measured faster for Q8_0
 * and Q4_0 (kernels/mma.cl); f16 weights keep MS_XFREE at every row
 * count. A call uses it when K <= MSK_X1_MAX_K, the row its work-groups
 * hold (16 KB of local memory beside the kernel's own 4-8 KB: the shape
 * measured; wider rows take the other builds). */
#define MSK_X1_MAX_K 8192
static int msk_x1_format(int fmt) { return fmt == WF_Q8_0 || fmt == WF_Q4_0; }

/* The order mma_tile wants its input in for weights of format fmt (its
 * -DMT_XO; kernels/xh.cl says why each). */
static int xh_order(int fmt)
{
    return fmt == WF_Q8_0 ? XH_K8 : fmt == WF_Q4_0 ? XH_K4 : XH_NAT;
}

/* The weight formats a knob's value names ("f16", "q8_0", "q4_0" anywhere
 * in it, e.g. "q8_0,q4_0"; "none" names none) as a mask of 1 <<
 * enum engine_wfmt. */
static unsigned wfmt_list(const char *s)
{
    static const char *const names[] = {[WF_F16] = "f16", [WF_Q8_0] = "q8_0", [WF_Q4_0] = "q4_0"};
    unsigned m = 0;
    for (int f = 0; f < WF_COUNT; f++)
        if (names[f] && strstr(s, names[f]))
            m |= 1u << f;
    return m;
}

int qe_engine_env_off(const char *name)
{
    const char *v = getenv(name);
    return v && !strcmp(v, "0");
}

/* The formats whose prefill matmuls under mma read an f16 copy of the
 * weight (kernels/wh.cl wt_f16, engine_wh.c: made once and kept where
 * memory allows, else again for each call)
 * instead of mma_tile's own build for the format, as a mask of
 * 1 << enum engine_wfmt: Q8_0 and Q4_0 where mma_tile's own build for
 * them is mma.sync's (not in wg, tile_wg_of's formats): those are slower
 * than the f16 build by more than the copy costs (engine_wh.c has the
 * figures). (Q4_0's had been as fast as the f16 build, 112.1K / 112.7K ->
 * 101.6K / 101.5K tok/s with copies, until the f16 build's stages were put
 * on 128-byte lines: then 122.5K -> 132.1K.) The copy's values are the
 * operands the format's own build would hand the tensor cores; Q8_0's
 * build sums them over k in another order (xh.cl), so its last bits differ
 * from the copy's, whatever the batch (Q4_0's orders put the same k in
 * each mma step: the same bits). QEVAL_MMA_WH = a list of "q8_0", "q4_0"
 * (or "none") replaces it for A/B runs (read when the engine opens). */
static unsigned wh_fmts_of(unsigned wg)
{
    const char *env = getenv("QEVAL_MMA_WH");
    return env ? wfmt_list(env) & (1u << WF_Q8_0 | 1u << WF_Q4_0)
               : (1u << WF_Q8_0 | 1u << WF_Q4_0) & ~wg;
}

/* The weight formats whose mma_tile builds run on wgmma (kernels/mma.cl
 * MT_WG), as a mask of 1 << enum engine_wfmt: under mma, where lib/cl's
 * probe built and checked kernels/wgmma.cl (Hopper, through PTX patched to
 * sm_90a: qe_cl_build_wgmma), in the default tile shape, f16 (and so Q8_0
 * and Q4_0 through their f16 copies, wh_fmts_of); QEVAL_MMA_WGMMA (read
 * when the engine opens) = 0 for none, 1 for f16, Q8_0 and Q4_0, or a list
 * of "f16", "q8_0", "q4_0". f16: the same bits as the mma.sync build (the
 * dump hashes are equal) and faster once its stages use wgmma's 64-byte
 * swizzle (kernels/wgmma.cl says why the unswizzled layout had halved it):
 * H200, pp512 B 8 of the synthetic Llama-3.2-1B, two rounds each, f16
 * 139.9K / 139.6K -> 171.0K / 167.9K tok/s, q8_0 through f16 copies
 * 133.2K / 133.3K -> 157.5K / 155.6K; mma_tile_glu 786 -> 618 us a layer,
 * mma_tile 231 -> 193 (session 20). Q8_0 / Q4_0's own wgmma builds, which
 * dequantize the weights in registers and need no copies, compute the bits
 * of their mma.sync builds and are about as slow: q8_0 155.3K tok/s with
 * copies, 115.2K / 114.6K without, the mma.sync build 114.8K (mma_tile_glu
 * 628 / 945 / 1033 us; each slice's barrier, scale loads and
 * dequantization lie on the path to its first wgmma, and since its steps
 * read A from registers they are waited for before the next slice's: see
 * kernels/mma.cl), so they are opt-in. */
static unsigned tile_wg_of(qe_engine *e)
{
    const char *env = getenv("QEVAL_MMA_WGMMA");
    qe_cl_caps caps;
    if (e->opt.gemm != QE_GEMM_MMA || qe_cl_probe(e->cl, &caps) != QE_OK || !caps.wgmma ||
        e->mt_shape.rows != 128 || e->mt_shape.stages != 3 || e->mt_shape.wn != 32)
        return 0;
    if (!env)
        return 1u << WF_F16;
    return wfmt_list(strcmp(env, "1") == 0 ? "f16,q8_0,q4_0" : env);
}

/* Whether prefill's LM head reduces its logits to statistics as it makes
 * them (kernels/mma.cl MT_LSE, logits.cl logit_tiles) instead of storing
 * them for logit_stats: where the head runs through the f16 wgmma build,
 * the statistics need no logit but the target's and the largest (top-K of
 * at most 1, as qeval bench and perplexity-only runs ask) and no softcap
 * rewrites the logits. QEVAL_MMA_LSE=0 keeps logit_stats (A/B runs, and
 * check_mma's comparison). */
static int lse_of(const qe_engine *e)
{
    return e->opt.gemm == QE_GEMM_MMA && (e->mt_wg >> WF_F16 & 1u) && e->head_fmt == WF_F16 &&
           e->opt.top_k <= 1 && !(e->hp.final_softcap > 0) && !qe_engine_env_off("QEVAL_MMA_LSE");
}

/* Whether prefill's Q and K matmuls may rotate their outputs by RoPE as
 * they store them (kernels/mma.cl MT_ROPE, built beside the f16 wgmma
 * build): the same bits as rope.cl's pass over the stored rows, which it
 * saves (H100, ppl512 B 8 of the synthetic Llama-3.2-1B: 0.58 ms of a
 * 25.7 ms forward, and Q's 32 MB read and written again). Every pair of a
 * head must lie in one work-item: any even head for the pairs layout; for
 * halves, heads dividing the 128-output tile and n_rot / 2 a multiple of 8.
 * A layer whose Q or K takes a bias or a norm first keeps rope.cl
 * (rope_tile_of). QEVAL_MMA_ROPE=0 keeps it everywhere (A/B runs, and
 * check_mma's comparison). */
static int rope_fuses(const qe_engine *e)
{
    const qe_hparams *hp = &e->hp;
    const int hd = hp->head_dim, rot = hp->n_rot;
    return e->opt.gemm == QE_GEMM_MMA && (e->mt_wg >> WF_F16 & 1u) && rot >= 2 && rot % 2 == 0 &&
           hd % 2 == 0 && rot <= hd &&
           (hp->rope_layout == QE_ROPE_PAIRS || (MMA_TILE % hd == 0 && (rot / 2) % 8 == 0)) &&
           !qe_engine_env_off("QEVAL_MMA_ROPE");
}

/* Whether mma_tile_pair's MT_ROPE build writes a layer's K and V into
 * their caches itself (kernels/mma.cl MT_KV16): both caches f16, so
 * kv.cl's kv_store, which would only round the staged rows to f16, and
 * the staged rows themselves are saved (H100, ppl512 B 8 of the synthetic
 * Llama-3.2-1B: kv_store 0.32 ms of a 25.2 ms forward); rows of a multiple
 * of 8 halves, which it stores 16 bytes at a time. */
static int kv16_of(const qe_engine *e)
{
    return e->opt.kv_k == QE_KV_F16 && e->opt.kv_v == QE_KV_F16 && e->kv_dim % 8 == 0;
}

/* Whether mma_tile_pair's MT_ROPE build encodes a layer's K and V into
 * TurboQuant caches itself (kernels/mma.cl MT_KVTQ): both caches
 * TurboQuant (their heads a power of two, which TurboQuant needs, of 16 ..
 * 128: a quad of lanes holds each, tqquad.cl), so the f32 staging rows
 * and kv.cl's kv_store are saved (H100, ppl512 B 8 of the synthetic
 * Llama-3.2-1B q8_0 + tq4: 0.33 ms of a 25.1 ms forward, profiled).
 * QEVAL_MMA_KVTQ=0 keeps them (A/B runs, check_mma's comparison). */
static int kvtq_of(const qe_engine *e)
{
    const int hd = e->hp.head_dim;
    return qe_kv_format_per_head(e->opt.kv_k) && qe_kv_format_per_head(e->opt.kv_v) && hd >= 16 &&
           hd <= MMA_TILE && (hd & (hd - 1)) == 0 && !qe_engine_env_off("QEVAL_MMA_KVTQ");
}

/* The format mma_tile reads weight w in: f16 where engine_wh.c copies it. */
static int tile_fmt(const dev_weight *w) { return w->wh ? WF_F16 : w->fmt; }

/* f16 pairs per row of e->xh for a matmul input of K floats: rounded up to
 * 16 pairs, so every 32-wide slice mma_tile copies is whole and 16-byte
 * aligned (mma_xh and silu_mul_xh write the padding as zeros). */
static int xh_pairs(int K)
{
    return (int)qe_engine_round_up(((size_t)K + 1) / 2, 16);
}

/* mma_tile's shape (kernels/mma.cl): rows per work-group (MT_BM, 128 or
 * 64), pipeline depth (MT_S: 32-wide K slices in local memory, all but one
 * in flight, 2 .. 4) and outputs per warp (MT_WN, 32 or 64; a warp takes
 * 64 rows). Measured on the H200
 * (pp512 B 8, synthetic Llama-3.2-1B, tok/s f16 / q8_0 / q4_0; ptxas
 * registers 122 / 126 / 119 at 128 rows, so two work-groups a
 * multiprocessor): rows,stages 128,3 = 79.0K / 65.5K / 71.9K; 128,2 76.6K /
 * 66.4K / 70.3K; 64,3 64.0K / 60.0K / 68.1K; 64,4 60.7K / 58.2K / 68.0K (the
 * 64-row figures from a build whose Q8_0 copy loops held 149 registers).
 * Session 8, one instance, two rounds: 128,3 (warps of 64 x 32) 87.5K /
 * 72.8K / 81.1K; warps of 64 x 64 (4 a work-group; 198 / 218 / 217
 * registers, so 8 warps a multiprocessor instead of 16) 77.4K / 69.7K /
 * 79.9K with 3 stages, 72.9K / 70.3K / 77.7K with 2: fewer local-memory
 * bytes per mma step did not pay for half the warps. QEVAL_MMA_TILE =
 * "ROWS,STAGES,WN" replaces it for experiments (read when the engine opens;
 * stages whose local memory exceeds 48 KB fail to build). */
static tile_shape tile_shape_of(void)
{
    tile_shape sh = {128, 3, 32};
    int v[3];
    if (env_ints3("QEVAL_MMA_TILE", v) && (v[0] == 64 || v[0] == 128) && v[1] >= 2 && v[1] <= 4 &&
        (v[2] == 32 || v[2] == 64))
        sh = (tile_shape){v[0], v[1], v[2]};
    return sh;
}

/* mma_tile's work-group order (kernels/mma.cl MT_GM) for a build whose
 * largest matrix holds w_bytes: above MT_GROUP_BYTES, MT_GROUP_ROWS row
 * tiles before the next output tile, so W is read from memory about once
 * instead of once per wave; below, output tiles fastest. Measured on the
 * H200 (pp512 B 8, synthetic Llama-3.2-1B, one instance; perplexity dumps
 * byte-identical for every order): f16 weights, whose gate and up (64 MB,
 * mma_tile_glu's) exceed its 50 MB L2, 102.5K tok/s with output tiles
 * fastest, 107.9K with groups of 8 row tiles, 109.1K with 16, 108.3K with
 * 32 (all 32 row tiles; mma_tile_glu 1184 -> 1036 us a launch at 16); Q8_0
 * (35.6 MB) 93.1K -> 89.0K at 2, 4, 8 and 32; Q4_0 (18.9 MB) 110.6K ->
 * 108.1K at 8 and 32; f16's 8-32 MB matrices within 1 %: grouping loses
 * where W stays in L2. The bound is a constant between those sizes because
 * the device does not say how big L2 is (NVIDIA's OpenCL reports a 4.1 MiB
 * global memory cache on the H200). QEVAL_MMA_RASTER = G forces groups of
 * G row tiles in every build (0: output tiles fastest). */
#define MT_GROUP_ROWS 16
#define MT_GROUP_BYTES ((uint64_t)48 << 20)
/* A group size forced by environment variable name: 0 .. 4096, or -1. */
static int env_group(const char *name)
{
    const char *env = getenv(name);
    char *end;
    long g = env ? strtol(env, &end, 10) : -1;
    return env && *env && !*end && g >= 0 && g <= 4096 ? (int)g : -1;
}

static int tile_gm(uint64_t w_bytes)
{
    const int g = env_group("QEVAL_MMA_RASTER");
    return g >= 0 ? g : w_bytes > MT_GROUP_BYTES ? MT_GROUP_ROWS : 0;
}

/* mma_tile_lse's order: every row tile of a pass in one group (up to
 * MT_HEAD_GROUP, 8,192 rows), so each tile of the LM head's weights
 * crosses from memory once a pass. With groups of 16 a ppl512 B 8 pass
 * (2,056 rows, 17 row tiles) read all 525 MB of an f16 head a second time
 * for its last 8 rows; a wave now holds the pass's rows of X (8.4 MB
 * there) and 264 / 17 tiles of W in L2. H100, synthetic Llama-3.2-1B,
 * groups of 16 / 64: mma_tile_lse 2.71 / 2.53 ms a ppl512 B 8 forward;
 * ppl512 B 8 f16 166.6K / 170.1K, 163.6K / 170.0K tok/s, q8_0 165.6K /
 * 170.0K, 160.0K / 160.9K (two rounds, the same nll). QEVAL_MMA_RASTER_HEAD
 * = G forces groups of G (A/B runs); QEVAL_MMA_RASTER, which orders every
 * build, wins. */
#define MT_HEAD_GROUP 64
static int tile_gm_head(uint64_t w_bytes)
{
    const int all = env_group("QEVAL_MMA_RASTER"), head = env_group("QEVAL_MMA_RASTER_HEAD");
    if (all >= 0)
        return all;
    if (head >= 0)
        return head;
    return w_bytes > MT_GROUP_BYTES ? MT_HEAD_GROUP : 0;
}

/* Bytes of n weights in format fmt (Q8_0 / Q4_0: 34 / 18 bytes a block
 * of 32). */
static uint64_t wfmt_bytes(int fmt, uint64_t n)
{
    return fmt == WF_F32    ? 4 * n
           : fmt == WF_F16  ? 2 * n
           : fmt == WF_Q8_0 ? n / 32 * 34
                            : n / 32 * 18;
}

/* Work-items of an mma_tile work-group (kernels/mma.cl MT_WI): a warp per
 * 64 rows x wn outputs of the 128-output tile. */
static size_t tile_items(tile_shape sh)
{
    return (size_t)32 * (size_t)(sh.rows / 64) * (size_t)(MMA_TILE / sh.wn);
}

/* mma_wide's shape (kernels/mma.cl), for decode calls of more than 16
 * rows: MW_NB 8-output blocks per warp, MW_U chunks staged at once, and the
 * number of work-groups from which a call runs all chains in each (split 1;
 * fewer: split 8), 0 = half the compute units. Measured on the H200 (tg128
 * B64, synthetic Llama-3.2-1B q8_0, tok/s; mma_skinny's 64-output build
 * 13208): NB,U,GROUPS 2,2,0 = 14863 (0 was 66 there: the 128 groups of
 * gate/up use split 1); 2,1,0 14819; with 264 groups 2,2 13582 and 2,1
 * 14392; split 1 everywhere 6354; 4,1 12977; 4,2 12241; 1,4 9695.
 * QEVAL_MMA_WIDE = "NB,U,GROUPS" replaces it (1 forces split 1 everywhere,
 * 1000000 split 8; read when the engine opens). */
static wide_shape wide_shape_of(void)
{
    wide_shape sh = {2, 2, 0};
    int v[3];
    if (env_ints3("QEVAL_MMA_WIDE", v) && v[0] >= 1 && v[0] <= 4 && v[1] >= 1 && v[1] <= 8 &&
        v[2] >= 0)
        sh = (wide_shape){v[0], v[1], v[2]};
    return sh;
}

/* What mma_skinny's MS_X1 build makes its input row of (kernels/mma.cl
 * MS_XP_*, the same numbers): the row itself, its RMSNorm with weights w,
 * or the SwiGLU product of it (the gate) and the up row w. */
enum { SKP_COPY = 0, SKP_NORM = 1, SKP_SILU = 2 };
typedef struct skinny_pro {
    int op;
    cl_mem w;
} skinny_pro;

/* What mma_skinny's MS_X1 build does after a layer's Q/K/V (w0, w1, w2)
 * of one row, in its epilogue (kernels/mma.cl MS_EPI_*, the same numbers):
 * RoPE of Q and K at rpos[0] with table cs (the pairs layout), and K and V
 * into their f16 caches kc / vc at row rslot[0] n_ctx + rpos[0]. */
enum { SKE_ROPE = 1, SKE_KV = 2 };
typedef struct skinny_epi {
    int ops;
    cl_mem cs, rpos, rslot, kc, vc;
} skinny_epi;

/* Arguments 23 .. 36 of mma_skinny, which only its MS_X1 build reads: how
 * it makes its row (pro NULL: as it is) and its epilogue (epi NULL: none). */
static qe_status x1_args(const qe_engine *e, cl_kernel k, const skinny_pro *pro,
                         const skinny_epi *epi)
{
    const cl_mem none = NULL, xp = pro ? pro->w : NULL;
    const int xop = pro ? pro->op : SKP_COPY, ops = epi ? epi->ops : 0, n_ctx = e->opt.n_ctx;
    const float eps = e->hp.rms_eps;
    const cl_ulong kb = (cl_ulong)e->kv_row_bytes[0], vb = (cl_ulong)e->kv_row_bytes[1];
    const struct {
        size_t size;
        const void *v;
    } a[] = {{sizeof(cl_mem), &xp},
             {sizeof(int), &xop},
             {sizeof(float), &eps},
             {sizeof(cl_mem), epi ? &epi->cs : &none},
             {sizeof(cl_mem), epi ? &epi->rpos : &none},
             {sizeof(cl_mem), epi ? &epi->rslot : &none},
             {sizeof(int), &e->hp.head_dim},
             {sizeof(int), &e->hp.n_rot},
             {sizeof(int), &n_ctx},
             {sizeof(cl_mem), epi ? &epi->kc : &none},
             {sizeof(cl_ulong), &kb},
             {sizeof(cl_mem), epi ? &epi->vc : &none},
             {sizeof(cl_ulong), &vb},
             {sizeof(int), &ops}};
    qe_status st = QE_OK;
    for (cl_uint i = 0; st == QE_OK && i < sizeof a / sizeof a[0]; i++)
        st = qe_cl_arg(k, 23 + i, a[i].size, a[i].v);
    return st;
}

/* The sources of every kernels/mma.cl build, in order; the MT_KVTQ build
 * (kvtq_of) also takes the cache formats and the quad encoder. */
static const char *const mma_srcs[] = {"weights.cl", "ptx.cl", "wgmma.cl", "xh.cl",
                                       "rms.cl",     "act.cl", "qkv.cl",   "mma.cl"};
#define N_MMA_SRCS (sizeof mma_srcs / sizeof mma_srcs[0])
static const char *const mma_kvtq_srcs[] = {"weights.cl", "ptx.cl",   "wgmma.cl",  "xh.cl",
                                            "rms.cl",     "act.cl",   "qkv.cl",    "kvfmt.cl",
                                            "tqquad.cl",  "mma.cl"};
#define N_MMA_KVTQ_SRCS (sizeof mma_kvtq_srcs / sizeof mma_kvtq_srcs[0])

/* One mma_tile build for weights of format fmt from sources srcs (n_srcs):
 * the format's options (base), the engine's tile shape, the format's X
 * order, variant ("", "-DMT_PAIR=1" or "-DMT_GLU=1") and the work-group
 * order tile_gm gives its largest matrix of w_bytes; its kernel name into
 * *k. tile_build: from mma_srcs. */
static qe_status tile_build_srcs(qe_engine *e, const char *const *srcs, size_t n_srcs,
                                 const char *base, int fmt, const char *variant, int gm,
                                 const char *name, cl_program *p, cl_kernel *k)
{
    char opts[512];
    const int wg = (int)(e->mt_wg >> fmt & 1u);
    snprintf(opts, sizeof opts,
             "%s -DMT_BM=%d -DMT_S=%d -DMT_WN=%d -DMT_XO=%d -DMT_GM=%d -DMT_WG=%d %s", base,
             e->mt_shape.rows, e->mt_shape.stages, e->mt_shape.wn, xh_order(fmt), gm,
             wg, variant);
    qe_status st = wg ? qe_cl_build_wgmma(e->cl, srcs, n_srcs, opts, p)
                      : qe_cl_build(e->cl, srcs, n_srcs, opts, p);
    return st == QE_OK ? qe_cl_kernel(*p, name, k) : st;
}

static qe_status tile_build(qe_engine *e, const char *base, int fmt, const char *variant,
                            int gm, const char *name, cl_program *p, cl_kernel *k)
{
    return tile_build_srcs(e, mma_srcs, N_MMA_SRCS, base, fmt, variant, gm, name, p, k);
}

/* The options every kernels/mma.cl build for weights of format fmt starts
 * with: the format, and rms.cl's reduction width (mma_skinny's one-row
 * build normalises its row as norm.cl does: skinny_pro). */
static void mma_base(const qe_engine *e, int fmt, char *base, size_t n)
{
    snprintf(base, n, "-cl-std=CL1.2 -DQE_WT=%d -DQE_NW=%d", fmt, e->nw);
}

/* mma_tile's builds for weights of format fmt (kernels/mma.cl: alone,
 * mma_tile_pair and, for SwiGLU models, mma_tile_glu) and its mma_xh, once.
 * A format whose layer weights are multiplied as f16 copies (e->wh_fmts,
 * engine_wh.c) needs only the plain build, for an LM head not copied (K and V, gate
 * and up are layer weights): its pair and glu builds would be two compiles
 * no call uses. */
static qe_status need_tiles(qe_engine *e, int fmt)
{
    if (e->prog_mma[fmt])
        return QE_OK;
    char base[96];
    mma_base(e, fmt, base, sizeof base);
    /* mma_tile's largest prefill matrix: an FFN one, or the LM head where
       this build serves it (head_fmt), mma_tile_glu's gate and up together.
       The head counts: a perplexity pass multiplies it by up to 1,024 rows
       (8 row tiles). H200, ppl512 B 8 of the synthetic Llama-3.2-1B in f16
       (QEVAL_MMA_RASTER 16 against the f16 build's 0 then): the head's
       two 1,024-row passes 3.92 -> 2.85 ms, the other mma_tile calls 9.31
       / 9.37 ms. */
    const uint64_t ffn = wfmt_bytes(fmt, (uint64_t)e->hp.n_ff * (uint64_t)e->hp.dim);
    const uint64_t head = wfmt_bytes(fmt, (uint64_t)e->hp.n_vocab * (uint64_t)e->hp.dim);
    const uint64_t kv = wfmt_bytes(fmt, 2 * (uint64_t)e->kv_dim * (uint64_t)e->hp.dim); /* K, V */
    qe_status st =
        tile_build(e, base, fmt, "", tile_gm(fmt == e->head_fmt && head > ffn ? head : ffn),
                   "mma_tile", &e->prog_mma[fmt], &e->k_mma_tile[fmt]);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_mma[fmt], "mma_xh", &e->k_mma_xh[fmt]);
    const int own = !(e->wh_fmts >> fmt & 1u); /* its layer weights through these builds */
    if (st == QE_OK && own) /* prefill's K and V (run_kv) */
        st = tile_build(e, base, fmt, "-DMT_PAIR=1", tile_gm(kv), "mma_tile_pair",
                        &e->prog_pair[fmt], &e->k_mma_pair[fmt]);
    if (st == QE_OK && own && e->hp.ffn_act == QE_ACT_SILU)
        st = tile_build(e, base, fmt, "-DMT_GLU=1", tile_gm(2 * ffn), "mma_tile_glu",
                        &e->prog_glu[fmt], &e->k_mma_glu[fmt]);
    if (st == QE_OK && fmt == WF_F16 && lse_of(e))
        st = tile_build(e, base, fmt, "-DMT_LSE=1", tile_gm_head(head), "mma_tile_lse",
                        &e->prog_lse, &e->k_mma_lse);
    if (st == QE_OK && fmt == WF_F16 && rope_fuses(e)) {
        char rope[96], pair[320], tq[160] = "";
        snprintf(rope, sizeof rope, "-DMT_ROPE=1 -DMT_RHD=%d -DMT_RROT=%d -DMT_RHALF=%d",
                 e->hp.head_dim, e->hp.n_rot, e->hp.rope_layout == QE_ROPE_HALVES);
        /* both caches f16 or both TurboQuant: K and V go straight into them
           (MT_KV16, MT_KVTQ; run_kv), the TurboQuant build from
           mma_kvtq_srcs */
        const int kv16 = kv16_of(e), kvtq = kvtq_of(e);
        if (kvtq) {
            char defs[96];
            qe_engine_kv_defines(e->cl, e->hp.head_dim, defs, sizeof defs);
            snprintf(tq, sizeof tq, " -DMT_KVTQ=1 -DMT_KVK=%d -DMT_KVV=%d %s", (int)e->opt.kv_k,
                     (int)e->opt.kv_v, defs);
        }
        snprintf(pair, sizeof pair, "%s -DMT_PAIR=1 -DMT_KV16=%d%s", rope, kv16, tq);
        const uint64_t q_dim = (uint64_t)e->hp.n_heads * (uint64_t)e->hp.head_dim;
        st = tile_build(e, base, fmt, rope, tile_gm(wfmt_bytes(fmt, q_dim * (uint64_t)e->hp.dim)),
                        "mma_tile", &e->prog_rope, &e->k_mma_rope);
        if (st == QE_OK)
            st = tile_build_srcs(e, kvtq ? mma_kvtq_srcs : mma_srcs,
                                 kvtq ? N_MMA_KVTQ_SRCS : N_MMA_SRCS, base, fmt, pair,
                                 tile_gm(kv), "mma_tile_pair", &e->prog_pair_rope,
                                 &e->k_mma_pair_rope);
        e->pair_kv = st == QE_OK && (kv16 || kvtq);
    }
    return st;
}

/* Build the embed/matmul program for weight format fmt the first time a
 * weight of that format is uploaded. */
static qe_status need_wfmt(qe_engine *e, int fmt)
{
    static const char *const srcs[] = {"weights.cl", "embed.cl", "matmul.cl", "xh.cl", "wh.cl"};
    if (e->prog_wt[fmt])
        return QE_OK;
    char opts[64];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DQE_WT=%d", fmt);
    qe_status st = qe_cl_build(e->cl, srcs, sizeof srcs / sizeof srcs[0], opts, &e->prog_wt[fmt]);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_wt[fmt], "embed", &e->k_embed[fmt]);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_wt[fmt], "matmul", &e->k_matmul[fmt]);
    if (st == QE_OK && (fmt == WF_Q8_0 || fmt == WF_Q4_0))
        st = qe_cl_kernel(e->prog_wt[fmt], "wt_f16", &e->k_wt_f16[fmt]);
    size_t max_wg = 0;
    if (st == QE_OK)
        st = qe_cl_kernel_limits(e->cl, e->k_matmul[fmt], &max_wg, NULL, NULL);
    if (st == QE_OK && max_wg < MM_WI * MM_WI)
        st = qe_fail(QE_EUNSUPPORTED, "engine: matmul needs work-groups of %d, the device allows %zu",
                     MM_WI * MM_WI, max_wg);
    if (st == QE_OK && e->opt.gemm == QE_GEMM_MMA) {
        /* kernels/mma.cl: mma_tile alone, mma_skinny, mma_wide split 1 and 8 */
        char base[96], mopts[256];
        mma_base(e, fmt, base, sizeof base);
        st = need_tiles(e, fmt);
        /* its prefill matmuls, or the LM head's, through f16 copies: engine_wh.c */
        if (st == QE_OK && ((e->wh_fmts >> fmt & 1) || e->head_wh))
            st = need_tiles(e, WF_F16);
        const char *xal = e->ms_xal ? "-DMS_XAL" : "";
        char x1[32];
        snprintf(x1, sizeof x1, "-DMS_X1=%d", MSK_X1_MAX_K);
        const char *const xread[MSK_XREADS] = {[MSK_XBRANCH] = "", [MSK_XFREE] = "-DMS_XFREE",
                                               [MSK_X1] = x1};
        /* the builds run_skinny can pick for this format */
        const int n_x = !e->ms_xal ? MSK_XFREE : msk_x1_format(fmt) ? MSK_XREADS : MSK_X1;
        for (int b = 0; st == QE_OK && b < 2; b++)
            for (int xv = 0; st == QE_OK && xv < n_x; xv++) {
                skinny_shape sk = e->msk_shape[0];
                if (b == 1 && !skinny_few(e, xv, fmt, &sk))
                    continue;
                snprintf(mopts, sizeof mopts, "%s -DMS_MT=%d -DMS_NB=%d -DMS_U=%d %s %s", base,
                         sk.mt, sk.nb, sk.u, xal, xread[xv]);
                if (b == 1 && xv == MSK_X1) /* x1_few_of */
                    snprintf(mopts + strlen(mopts), sizeof mopts - strlen(mopts), " -DMS_XB=%d",
                             e->msk_x1_few_xb[fmt]);
                st = qe_cl_build(e->cl, mma_srcs, N_MMA_SRCS, mopts, &e->prog_msk[b][xv][fmt]);
                if (st == QE_OK)
                    st = qe_cl_kernel(e->prog_msk[b][xv][fmt], "mma_skinny",
                                      &e->k_msk[b][xv][fmt]);
                /* only the one-row build reads its row / epilogue arguments,
                   which then change per call; the others' stay unused */
                if (st == QE_OK && xv != MSK_X1)
                    st = x1_args(e, e->k_msk[b][xv][fmt], NULL, NULL);
            }
        for (int b = 0; st == QE_OK && b < 2; b++) {
            snprintf(mopts, sizeof mopts, "%s -DMW_NB=%d -DMW_U=%d -DMW_SPLIT=%d %s", base,
                     e->mw_shape.nb, e->mw_shape.u, b ? 8 : 1, xal);
            st = qe_cl_build(e->cl, mma_srcs, N_MMA_SRCS, mopts, &e->prog_mw[b][fmt]);
            if (st == QE_OK)
                st = qe_cl_kernel(e->prog_mw[b][fmt], "mma_wide", &e->k_mw[b][fmt]);
        }
        if (st == QE_OK)
            st = qe_cl_kernel(e->prog_mw[1][fmt], "mma_wide_sum", &e->k_mw_sum[fmt]);
    }
    return st;
}

/* Q8_0 / Q4_0 rows go to the device re-laid out (kernels/weights.cl):
 * [nb f16 scales, zero-padded to a multiple of 16 bytes][the blocks' quant
 * bytes in order], so that kernels read 16 quant bytes with one aligned
 * vector load (GGML's 34- and 18-byte blocks are only 2-byte aligned). The
 * values are unchanged. Converted a slab of rows at a time (about 16 MiB). */
static qe_status upload_split_blocks(qe_engine *e, const qe_tensor *t, int fmt, dev_weight *w)
{
    const size_t block = fmt == WF_Q8_0 ? 34 : 18, qbytes = block - 2;
    const size_t nb = (size_t)t->ne[0] / 32, rows = (size_t)t->ne[1];
    const size_t sb = (nb * 2 + 15) & ~(size_t)15;
    const size_t row = sb + nb * qbytes;
    if (t->ne[0] % 32 || t->row_bytes != nb * block || rows > SIZE_MAX / row)
        return qe_fail(QE_ECORRUPT, "engine: tensor %s: %lld-wide rows of %s blocks do not fit",
                       t->name, (long long)t->ne[0], qe_dtype_name(t->type));
    size_t slab = ((size_t)16 << 20) / row;
    slab = slab < 1 ? 1 : slab > rows ? rows : slab;
    uint8_t *tmp = calloc(slab, row);
    if (!tmp)
        return qe_fail(QE_ENOMEM, "engine: tensor %s: out of memory re-laying rows", t->name);
    w->row_bytes = (cl_ulong)row;
    qe_status st = qe_cl_alloc(e->cl, rows * row, QE_CL_RO, NULL, &w->buf);
    for (size_t r0 = 0; st == QE_OK && r0 < rows; r0 += slab) {
        const size_t n = rows - r0 < slab ? rows - r0 : slab;
        for (size_t r = 0; r < n; r++) {
            const uint8_t *src = (const uint8_t *)t->data + (r0 + r) * t->row_bytes;
            uint8_t *dst = tmp + r * row;
            for (size_t b = 0; b < nb; b++) {
                memcpy(dst + 2 * b, src + b * block, 2);
                memcpy(dst + sb + b * qbytes, src + b * block + 2, qbytes);
            }
        }
        st = qe_cl_write(e->cl, w->buf, r0 * row, n * row, tmp, 1);
    }
    free(tmp);
    return st;
}

/* A slab of rows being converted for the device (upload_weight): rows
 * [r0 + i0, r0 + i1) decoded to f32 into tmp and, for CONV_F16, rounded
 * to f16 into tmp16, on one thread (qe_split). */
typedef struct {
    const qe_tensor *t;
    size_t r0;
    float *tmp;
    uint16_t *tmp16;
} conv_job;

static int conv_rows(void *ctx, int64_t i0, int64_t i1)
{
    const conv_job *j = ctx;
    const size_t ne0 = (size_t)j->t->ne[0];
    for (int64_t r = i0; r < i1; r++) {
        float *row = j->tmp + (size_t)r * ne0;
        qe_tensor_row_f32(j->t, (int64_t)j->r0 + r, row);
        if (j->tmp16)
            for (size_t i = 0; i < ne0; i++)
                j->tmp16[(size_t)r * ne0 + i] = qe_f32_to_f16(row[i]);
    }
    return 0;
}

static qe_status upload_weight(qe_engine *e, const qe_tensor *t, dev_weight *w)
{
    int fmt = 0, conv = 0;
    float *tmp = NULL;
    uint16_t *tmp16 = NULL;
    qe_status st = engine_wfmt_of(t, &fmt, &conv);
    if (st != QE_OK)
        goto done;
    if (t->ne[0] > INT32_MAX || t->ne[1] > INT32_MAX) {
        st = qe_fail(QE_ERANGE, "engine: tensor %s: %lld x %lld is too large", t->name,
                     (long long)t->ne[0], (long long)t->ne[1]);
        goto done;
    }
    w->fmt = fmt;
    w->ne0 = (int)t->ne[0];
    w->ne1 = (int)t->ne[1];
    w->owned = 1;
    if (conv != CONV_NONE) {
        /* Converted a slab of rows at a time (about 16 MiB), so a large
         * embedding never needs a second full-size copy on the host. */
        const size_t es = conv == CONV_F16 ? 2 : sizeof(float);
        const size_t row32 = (size_t)t->ne[0] * sizeof(float), rows = (size_t)t->ne[1];
        const size_t row = (size_t)t->ne[0] * es;
        if (rows > SIZE_MAX / row32) {
            st = qe_fail(QE_ERANGE, "engine: tensor %s is too large", t->name);
            goto done;
        }
        size_t slab = ((size_t)16 << 20) / row32;
        slab = slab < 1 ? 1 : slab > rows ? rows : slab;
        tmp = malloc(slab * row32);
        if (conv == CONV_F16)
            tmp16 = malloc(slab * row);
        if (!tmp || (conv == CONV_F16 && !tmp16)) {
            st = qe_fail(QE_ENOMEM, "engine: tensor %s: out of memory converting rows", t->name);
            goto done;
        }
        w->row_bytes = (cl_ulong)row;
        st = qe_cl_alloc(e->cl, rows * row, QE_CL_RO, NULL, &w->buf);
        /* each slab's rows decoded on every CPU (one thread decoded a
           270M-parameter Q4_K_M model's at 5 ns an element): each row by
           itself, so the same bytes for any count */
        for (size_t r0 = 0; st == QE_OK && r0 < rows; r0 += slab) {
            size_t n = rows - r0 < slab ? rows - r0 : slab;
            conv_job job = {t, r0, tmp, conv == CONV_F16 ? tmp16 : NULL};
            qe_split((int64_t)n, qe_split_threads((int64_t)(n * (size_t)t->ne[0])), conv_rows,
                     &job);
            st = qe_cl_write(e->cl, w->buf, r0 * row, n * row,
                             conv == CONV_F16 ? (const void *)tmp16 : (const void *)tmp, 1);
        }
    } else if (fmt == WF_Q8_0 || fmt == WF_Q4_0) {
        st = upload_split_blocks(e, t, fmt, w);
    } else {
        w->row_bytes = t->row_bytes;
        st = qe_cl_alloc(e->cl, t->nbytes, QE_CL_RO, t->data, &w->buf);
    }
    if (st != QE_OK) {
        qe_fail_prefix(st, "engine: uploading %s", t->name);
        goto done;
    }
    st = need_wfmt(e, fmt);
done:
    free(tmp);
    free(tmp16);
    return st;
}

/* A vector weight (norms), always f32 on the device. */
static qe_status upload_vec_f32(qe_engine *e, const qe_tensor *t, cl_mem *out)
{
    float *tmp = malloc((size_t)t->ne[0] * sizeof(float));
    if (!tmp)
        return qe_fail(QE_ENOMEM, "engine: out of memory for %s", t->name);
    qe_tensor_row_f32(t, 0, tmp);
    qe_status st = qe_cl_alloc(e->cl, (size_t)t->ne[0] * sizeof(float), QE_CL_RO, tmp, out);
    free(tmp);
    return st == QE_OK ? st : qe_fail_prefix(st, "engine: uploading %s", t->name);
}

/* (cos, sin) of theta_i(p) for every position and pair, computed in double
 * (model.h's formula, with a layer's base and position scale) and rounded
 * once, into *out. */
static qe_status upload_rope(qe_engine *e, const qe_weights *w, float base, float pos_scale,
                             cl_mem *out)
{
    const int half = e->hp.n_rot / 2;
    float *cs = NULL, *div = NULL;
    qe_status st = QE_OK;
    cs = malloc((size_t)e->opt.n_ctx * (size_t)half * 2 * sizeof(float));
    div = malloc((size_t)half * sizeof(float));
    if (!cs || !div) {
        st = qe_fail(QE_ENOMEM, "engine: out of memory for the RoPE table");
        goto done;
    }
    for (int i = 0; i < half; i++)
        div[i] = 1.0f;
    if (w->rope_freqs.data)
        qe_tensor_row_f32(&w->rope_freqs, 0, div);
    for (int p = 0; p < e->opt.n_ctx; p++)
        for (int i = 0; i < half; i++) {
            double theta = ((double)p * (double)pos_scale) *
                           pow((double)base, -2.0 * i / (double)e->hp.n_rot) /
                           (double)div[i];
            size_t at = ((size_t)p * half + i) * 2;
            cs[at] = (float)cos(theta);
            cs[at + 1] = (float)sin(theta);
        }
    st = qe_cl_alloc(e->cl, (size_t)e->opt.n_ctx * half * 2 * sizeof(float), QE_CL_RO, cs, out);
done:
    free(cs);
    free(div);
    return st;
}

static void free_weight(dev_weight *w)
{
    if (w->owned)
        qe_cl_free(w->buf);
    w->buf = NULL;
}

/* ---- open / close ---- */

static qe_status check_opts(const qe_hparams *hp, const qe_engine_opts *o)
{
    if (o->n_ctx < 1 || o->n_ctx > (1 << 20))
        return qe_fail(QE_EINVAL, "engine: n_ctx %d is outside 1 .. %d", o->n_ctx, 1 << 20);
    if (o->n_seq < 1 || o->n_seq > (1 << 16))
        return qe_fail(QE_EINVAL, "engine: n_seq %d is outside 1 .. %d", o->n_seq, 1 << 16);
    if (o->top_k < 0 || o->top_k > QE_ENGINE_TOP_K_MAX || o->top_k > hp->n_vocab)
        return qe_fail(QE_EINVAL, "engine: top_k %d is outside 0 .. %d", o->top_k,
                       hp->n_vocab < QE_ENGINE_TOP_K_MAX ? hp->n_vocab : QE_ENGINE_TOP_K_MAX);
    if (o->head_rows < 0)
        return qe_fail(QE_EINVAL, "engine: head_rows %d is negative", o->head_rows);
    if ((int64_t)o->n_ctx * o->n_seq > INT32_MAX / 2)
        return qe_fail(QE_EINVAL, "engine: n_seq %d x n_ctx %d positions is too many", o->n_seq,
                       o->n_ctx);
    if (hp->head_dim > 256)
        return qe_fail(QE_EUNSUPPORTED, "engine: head_dim %d is above 256", hp->head_dim);
    return QE_OK; /* gemm: qe_engine_gemm_resolve checks it */
}

/* The largest power of two <= min(256, limit). */
static int pow2_upto(size_t limit)
{
    int w = 1;
    while (w * 2 <= 256 && (size_t)w * 2 <= limit)
        w *= 2;
    return w;
}

static qe_status build_common(qe_engine *e)
{
    static const char *const srcs[] = {"xh.cl",   "rms.cl",    "norm.cl", "qkv.cl", "rope.cl",
                                       "kvfmt.cl", "attention.cl", "act.cl", "ffn.cl",
                                       "logits.cl", "kld.cl",      "arch.cl"};
    char defs[128], opts[320];
    qe_engine_kv_defines(e->cl, e->hp.head_dim, defs, sizeof defs);
    snprintf(opts, sizeof opts,
             "-cl-std=CL1.2 -DQE_NW=%d -DQE_RW=%d %s -DQE_BQ=%d -DQE_BKV=%d -DQE_TOPK=%d "
             "-DQE_KVK=%d -DQE_KVV=%d",
             e->nw, e->rw, defs, ATT_BQ, e->bkv, e->opt.top_k, (int)e->opt.kv_k,
             (int)e->opt.kv_v);
    qe_status st = qe_cl_build(e->cl, srcs, sizeof srcs / sizeof srcs[0], opts, &e->prog_common);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "rmsnorm", &e->k_norm);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "rmsnorm_xh", &e->k_norm_xh);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "rmsnorm_xh_add", &e->k_norm_xh_add);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "rope", &e->k_rope);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "attention", &e->k_attn);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "silu_mul", &e->k_silu);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "silu_mul_xh", &e->k_silu_xh);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "qk_prep", &e->k_qk_prep);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "rmsnorm_add", &e->k_norm_add);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "gelu_mul", &e->k_gelu);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "scale_f32", &e->k_scale);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "softcap", &e->k_softcap);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "logit_stats", &e->k_stats);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "logit_merge", &e->k_stats_merge);
    if (st == QE_OK && e->opt.top_k <= 1) /* built only then (logits.cl) */
        st = qe_cl_kernel(e->prog_common, "logit_tiles", &e->k_tiles);
    if (st == QE_OK)
        st = qe_cl_kernel(e->prog_common, "kld_rows", &e->k_kld);
    /* Tensor-core prefill attention where its fragments fit the head
       (attn_mma.cl's limits), rotating queries into TurboQuant's domain
       (AM_ROTQ, a TurboQuant K) and outputs back (AM_ROTO, a TurboQuant
       V) itself. H200, pp512 B 8 of the synthetic Llama-3.2-1B q8_0 with a
       tq4 cache: attention.cl had taken 23.9 of 68 ms a batch, 35 %
       (attn_mma with f16: 2.0 ms). The rotations had been two tq_rotate
       launches around it (tqrot.cl) and an mma_xh of the output: H100,
       ppl512 B 8 of that model with a tq4 cache, attn_mma 1.14 -> 1.41 ms
       a forward, tq_rotate's 1.05 and mma_xh's 0.33 gone (forward 26.10 ->
       25.24 ms); the same bits (dump hashes). */
    const int hd = e->hp.head_dim;
    if (st == QE_OK && e->opt.gemm == QE_GEMM_MMA && hd % 16 == 0 && hd <= 128) {
        static const char *const asrcs[] = {"kvfmt.cl", "ptx.cl", "tqquad.cl", "xh.cl",
                                            "attn_mma.cl"};
#define N_ASRCS (sizeof asrcs / sizeof asrcs[0])
        char rot[48];
        snprintf(rot, sizeof rot, "-DAM_ROTQ=%d -DAM_ROTO=%d",
                 qe_kv_format_per_head(e->opt.kv_k), qe_kv_format_per_head(e->opt.kv_v));
        snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s -DQE_KVK=%d -DQE_KVV=%d %s", defs,
                 (int)e->opt.kv_k, (int)e->opt.kv_v, rot);
        st = qe_cl_build(e->cl, asrcs, N_ASRCS, opts, &e->prog_attn_mma);
        if (st == QE_OK)
            st = qe_cl_kernel(e->prog_attn_mma, "attn_mma", &e->k_attn_mma);
        /* attn_kv_f16 and attn_mma's f16 build, where a cache is not f16
           (run_attention): each key had been decoded once for each query
           block and head that reads it */
        if (st == QE_OK && (e->opt.kv_k != QE_KV_F16 || e->opt.kv_v != QE_KV_F16) &&
            !qe_engine_env_off("QEVAL_MMA_KV16")) {
            /* the same rotations: its f16 rows are a TurboQuant cache's
               rotated-domain values */
            snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s -DQE_KVK=%d -DQE_KVV=%d %s", defs,
                     (int)QE_KV_F16, (int)QE_KV_F16, rot);
            st = qe_cl_build(e->cl, asrcs, N_ASRCS, opts, &e->prog_attn16);
            if (st == QE_OK)
                st = qe_cl_kernel(e->prog_attn16, "attn_mma", &e->k_attn16);
            if (st == QE_OK)
                st = qe_cl_kernel(e->prog_attn_mma, "attn_kv_f16", &e->k_kv16);
        }
    }
    const struct {
        cl_kernel k;
        size_t need;
        const char *name;
    } req[] = {{e->k_norm, (size_t)e->nw, "rmsnorm"},
               {e->k_stats, (size_t)e->rw, "logit_stats"},
               {e->k_stats_merge, STATS_PARTS_MAX, "logit_merge"},
               {e->k_tiles, (size_t)e->rw, "logit_tiles"},
               {e->k_kld, (size_t)e->rw, "kld_rows"},
               {e->k_attn, ATT_BQ, "attention"}};
    for (size_t i = 0; st == QE_OK && i < sizeof req / sizeof req[0]; i++) {
        size_t max_wg = 0;
        if (!req[i].k) /* not built for this engine */
            continue;
        st = qe_cl_kernel_limits(e->cl, req[i].k, &max_wg, NULL, NULL);
        if (st == QE_OK && max_wg < req[i].need)
            st = qe_fail(QE_EUNSUPPORTED, "engine: %s needs work-groups of %zu, the device allows %zu",
                         req[i].name, req[i].need, max_wg);
    }
    return st;
}

qe_status qe_engine_alloc_act(qe_engine *e, size_t rows, size_t width, size_t elem, cl_mem *out,
                           const char *what)
{
    if (width && rows > SIZE_MAX / width / elem)
        return qe_fail(QE_ERANGE, "engine: %s buffer of %zu x %zu overflows", what, rows, width);
    qe_status st = qe_cl_alloc(e->cl, rows * width * elem, QE_CL_RW, NULL, out);
    return st == QE_OK ? st : qe_fail_prefix(st, "engine: %s buffer", what);
}

qe_status qe_engine_open(qe_cl *cl, const qe_model *m, const qe_engine_opts *opts,
                         qe_engine **out)
{
    qe_engine *e = NULL;
    qe_status st = QE_OK;
    *out = NULL;
    if (!cl || !m)
        return qe_fail(QE_EINVAL, "engine: no OpenCL context or model");
    e = calloc(1, sizeof *e);
    if (!e)
        return qe_fail(QE_ENOMEM, "engine: out of memory");
    e->cl = cl;
    e->model = m;
    e->hp = *qe_model_hparams(m);
    e->opt = opts ? *opts : qe_engine_opts_default();
    st = check_opts(&e->hp, &e->opt);
    if (st == QE_OK)
        st = qe_engine_gemm_resolve(e->cl, e->opt.gemm, &e->opt.gemm);
    e->msk_shape[0] = skinny_shape_of();
    e->msk_shape[1] =
        skinny_few_of(e->msk_shape[0], (int)qe_cl_device(e->cl)->compute_units, &e->msk_few);
    for (int f = 0; f < WF_COUNT; f++)
        x1_few_of(e, f);
    e->msk_x1_groups = x1_groups_of((int)qe_cl_device(e->cl)->compute_units);
    e->msk_xfree_rows = msk_xfree_of();
    e->msk_pro = !qe_engine_env_off("QEVAL_MMA_PRO");
    e->mw_shape = wide_shape_of();
    e->mt_shape = tile_shape_of();
    e->mt_wg = tile_wg_of(e);
    e->wh_fmts = e->opt.gemm == QE_GEMM_MMA ? wh_fmts_of(e->mt_wg) : 0u;
    /* Every matmul input row (width dim, n_heads*hd or n_ff, row offsets
       multiples of it) starts 16-byte aligned: the decode kernels may read X
       as float4 (MS_XAL) */
    e->ms_xal = e->hp.dim % 4 == 0 && (e->hp.n_heads * e->hp.head_dim) % 4 == 0 &&
                e->hp.n_ff % 4 == 0;
    if (st != QE_OK)
        goto done;

    const qe_hparams *hp = &e->hp;
    const size_t rows = (size_t)e->opt.n_seq * (size_t)e->opt.n_ctx;
    e->q_dim = hp->n_heads * hp->head_dim;
    e->kv_dim = hp->n_kv_heads * hp->head_dim;
    e->stride = STATS_HDR + 2 * e->opt.top_k;
    e->bkv = 2048 / hp->head_dim;
    e->bkv = e->bkv < 1 ? 1 : e->bkv > 32 ? 32 : e->bkv;
    /* Reduction widths: up to 256 work-items per row, each given at least 4
     * elements (narrow rows would mostly wait at barriers). */
    const int wg = pow2_upto(qe_cl_device(cl)->max_wg_size);
    e->nw = pow2_upto((size_t)hp->dim / 4);
    e->nw = e->nw > wg ? wg : e->nw;
    e->rw = pow2_upto((size_t)hp->n_vocab / 4);
    e->rw = e->rw > wg ? wg : e->rw;
    if (e->opt.head_rows == 0) {
        /* Under mma a head pass of 128 rows is one row tile of mma_tile, and
           each pass reads all of the LM head's weights (525 MB in f16 for a
           128K vocabulary): H200, wikitext-2 through the synthetic
           Llama-3.2-1B (1,142 chunks of 512, 16 a batch), logits budget
           64 -> 512 MB: q8_0 7.83 -> 7.31 s, f16 7.60 -> 7.06 s, the same
           PPL. Bounded by 1/64 of the device's memory. */
        uint64_t budget = HEAD_BYTES;
        if (e->opt.gemm == QE_GEMM_MMA) {
            const uint64_t cap = qe_cl_device(cl)->global_mem / 64;
            budget = HEAD_BYTES_MMA < cap ? HEAD_BYTES_MMA : cap > HEAD_BYTES ? cap : HEAD_BYTES;
        }
        size_t fit = (size_t)(budget / ((uint64_t)hp->n_vocab * sizeof(float)));
        if (fit >= MM_TILE)
            fit -= fit % MM_TILE;
        e->opt.head_rows = fit < 1 ? 1 : fit > rows ? (int)rows : (int)fit;
    } else if ((size_t)e->opt.head_rows > rows) {
        e->opt.head_rows = (int)rows;
    }

    st = qe_engine_kv_open(e);
    if (st == QE_OK)
        st = build_common(e);
    if (st != QE_OK)
        goto done;

    /* weights */
    const qe_weights *w = qe_model_weights(m);
    e->layers = calloc((size_t)hp->n_layers, sizeof *e->layers);
    if (!e->layers) {
        st = qe_fail(QE_ENOMEM, "engine: out of memory");
        goto done;
    }
    /* The format prefill's LM head matmul reads (need_tiles orders that
       build's tiles for it): an f16 copy (engine_wh.c) where the head is
       Q8_0 or Q4_0 without a wgmma build of its own (as wh_fmts_of picks
       for the layers; the head of a q4_0 model is Q8_0, lib/quant.h) and
       the copy takes at most 1/32 of the device's memory, else the head's
       own format. QEVAL_MMA_WH_HEAD=0 turns the copy off (A/B runs, and
       check_mma's comparisons of the layers' builds). */
    int hconv;
    st = engine_wfmt_of(&w->output, &e->head_fmt, &hconv);
    e->head_wh = st == QE_OK && e->opt.gemm == QE_GEMM_MMA && !qe_engine_env_off("QEVAL_MMA_WH_HEAD") &&
                 (e->head_fmt == WF_Q8_0 || e->head_fmt == WF_Q4_0) &&
                 !(e->mt_wg >> e->head_fmt & 1u) &&
                 (uint64_t)2 * (uint64_t)hp->n_vocab * (uint64_t)hp->dim <=
                     qe_cl_device(cl)->global_mem / 32;
    if (e->head_wh)
        e->head_fmt = WF_F16;
    if (st == QE_OK)
        st = upload_weight(e, &w->token_embd, &e->tok_embd);
    if (st == QE_OK && w->output.data == w->token_embd.data && w->output.type == w->token_embd.type) {
        e->output = e->tok_embd;
        e->output.owned = 0;
    } else if (st == QE_OK) {
        st = upload_weight(e, &w->output, &e->output);
    }
    if (st == QE_OK)
        st = upload_vec_f32(e, &w->output_norm, &e->out_norm);
    if (st == QE_OK)
        st = upload_rope(e, w, hp->rope_base, hp->rope_freq_scale, &e->rope_cs);
    if (st == QE_OK && hp->swa_window > 0)
        st = upload_rope(e, w, hp->rope_base_swa, hp->rope_freq_scale_swa, &e->rope_cs_swa);
    for (int l = 0; st == QE_OK && l < hp->n_layers; l++) {
        const qe_layer *src = &w->layers[l];
        dev_layer *d = &e->layers[l];
        st = upload_vec_f32(e, &src->attn_norm, &d->attn_norm);
        if (st == QE_OK)
            st = upload_vec_f32(e, &src->ffn_norm, &d->ffn_norm);
        /* Optional vectors of the architecture switches (absent: NULL). */
        const qe_tensor *ov[] = {&src->bq, &src->bk, &src->bv, &src->attn_q_norm,
                                 &src->attn_k_norm, &src->attn_post_norm, &src->ffn_post_norm};
        cl_mem *od[] = {&d->bq, &d->bk, &d->bv, &d->q_norm, &d->k_norm, &d->attn_post,
                        &d->ffn_post};
        const int on[] = {hp->attn_bias, hp->attn_bias, hp->attn_bias, hp->qk_norm, hp->qk_norm,
                          hp->post_norms, hp->post_norms};
        for (size_t i = 0; st == QE_OK && i < sizeof ov / sizeof ov[0]; i++)
            if (on[i])
                st = upload_vec_f32(e, ov[i], od[i]);
        if (st == QE_OK)
            st = upload_weight(e, &src->wq, &d->wq);
        if (st == QE_OK)
            st = upload_weight(e, &src->wk, &d->wk);
        if (st == QE_OK)
            st = upload_weight(e, &src->wv, &d->wv);
        if (st == QE_OK)
            st = upload_weight(e, &src->wo, &d->wo);
        if (st == QE_OK)
            st = upload_weight(e, &src->w_gate, &d->w_gate);
        if (st == QE_OK)
            st = upload_weight(e, &src->w_up, &d->w_up);
        if (st == QE_OK)
            st = upload_weight(e, &src->w_down, &d->w_down);
        if (st == QE_OK)
            st = qe_engine_alloc_act(e, rows, e->kv_row_bytes[0], 1, &d->kc, "K cache");
        if (st == QE_OK)
            st = qe_engine_alloc_act(e, rows, e->kv_row_bytes[1], 1, &d->vc, "V cache");
    }
    if (st == QE_OK)
        st = qe_engine_wh_open(e);
    if (st != QE_OK)
        goto done;

    /* activations */
    if ((st = qe_engine_alloc_act(e, rows, 1, sizeof(cl_int), &e->tokens, "tokens")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, 1, sizeof(cl_int), &e->targets, "targets")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)hp->dim, sizeof(float), &e->x, "residual")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)hp->dim, sizeof(float), &e->h, "norm")) != QE_OK ||
        (e->opt.gemm == QE_GEMM_MMA && !qe_engine_env_off("QEVAL_MMA_DEFER") &&
         (st = qe_engine_alloc_act(e, rows, (size_t)hp->dim, sizeof(float), &e->res, "deferred residual")) != QE_OK) ||
        (st = qe_engine_alloc_act(e, rows, (size_t)e->q_dim, sizeof(float), &e->q, "query")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)e->q_dim, sizeof(float), &e->att, "attention")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)hp->n_ff, sizeof(float), &e->g, "ffn gate")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)hp->n_ff, sizeof(float), &e->u, "ffn up")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)hp->dim, sizeof(float), &e->hout, "head input")) != QE_OK ||
        (st = qe_engine_alloc_act(e, (size_t)e->opt.head_rows, (size_t)hp->n_vocab, sizeof(float), &e->logits,
                        "logits")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, (size_t)e->stride, sizeof(float), &e->stats, "stats")) != QE_OK ||
        (st = qe_engine_alloc_act(e, rows, KLD_STRIDE, sizeof(float), &e->kld, "comparison")) != QE_OK)
        goto done;
    if (e->k_kv16) { /* attention's f16 keys and values (run_attention) */
        const size_t kvd = (size_t)e->kv_dim;
        if ((st = qe_engine_alloc_act(e, rows, kvd, sizeof(cl_half), &e->k16, "f16 keys")) != QE_OK ||
            (st = qe_engine_alloc_act(e, rows, kvd, sizeof(cl_half), &e->v16, "f16 values")) != QE_OK)
            goto done;
    }
    if (e->opt.gemm == QE_GEMM_MMA) { /* mma_tile's X: the widest matmul input */
        int kmax = hp->dim > e->q_dim ? hp->dim : e->q_dim;
        kmax = hp->n_ff > kmax ? hp->n_ff : kmax;
        e->xh_ldp = xh_pairs(kmax);
        st = qe_engine_alloc_act(e, rows, (size_t)e->xh_ldp, sizeof(cl_uint), &e->xh, "f16 matmul input");
        if (st != QE_OK)
            goto done;
    }
    e->hstats = malloc(rows * (size_t)e->stride * sizeof(float));
    e->htmp = malloc(rows * sizeof(int32_t));
    e->hkld = malloc(rows * KLD_STRIDE * sizeof(float));
    if (!e->hstats || !e->htmp || !e->hkld) {
        st = qe_fail(QE_ENOMEM, "engine: out of memory");
        goto done;
    }
    qe_log_debug("engine: %s on %s: n_ctx %d, n_seq %d, top_k %d, head_rows %d", qe_model_name(m),
                 qe_cl_device(cl)->name, e->opt.n_ctx, e->opt.n_seq, e->opt.top_k, e->opt.head_rows);
done:
    if (st != QE_OK) {
        qe_engine_close(e);
        return st;
    }
    *out = e;
    return QE_OK;
}

void qe_engine_close(qe_engine *e)
{
    if (!e)
        return;
    if (e->layers) {
        for (int l = 0; l < e->hp.n_layers; l++) {
            dev_layer *d = &e->layers[l];
            qe_cl_free(d->attn_norm);
            qe_cl_free(d->ffn_norm);
            free_weight(&d->wq);
            free_weight(&d->wk);
            free_weight(&d->wv);
            free_weight(&d->wo);
            free_weight(&d->w_gate);
            free_weight(&d->w_up);
            free_weight(&d->w_down);
            qe_cl_free(d->kc);
            qe_cl_free(d->vc);
            cl_mem opt[] = {d->bq, d->bk, d->bv, d->q_norm, d->k_norm, d->attn_post, d->ffn_post};
            for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
                qe_cl_free(opt[i]);
        }
        free(e->layers);
    }
    qe_engine_wh_close(e);
    free_weight(&e->output);
    free_weight(&e->tok_embd);
    qe_cl_free(e->out_norm);
    qe_cl_free(e->rope_cs);
    qe_cl_free(e->rope_cs_swa);
    cl_mem acts[] = {e->tokens, e->targets, e->x, e->h, e->res, e->q, e->att,
                     e->g, e->u, e->hout, e->logits, e->stats, e->mw_part, e->xh};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        qe_cl_free(acts[i]);
    for (int f = 0; f < WF_COUNT; f++) {
        qe_cl_kernel_free(e->k_embed[f]);
        qe_cl_kernel_free(e->k_matmul[f]);
        qe_cl_kernel_free(e->k_wt_f16[f]);
        qe_cl_kernel_free(e->k_mma_tile[f]);
        qe_cl_kernel_free(e->k_mma_xh[f]);
        qe_cl_program_free(e->prog_mma[f]);
        qe_cl_kernel_free(e->k_mma_glu[f]);
        qe_cl_program_free(e->prog_glu[f]);
        qe_cl_kernel_free(e->k_mma_pair[f]);
        qe_cl_program_free(e->prog_pair[f]);
        for (int b = 0; b < 2; b++) {
            for (int xv = 0; xv < MSK_XREADS; xv++) {
                qe_cl_kernel_free(e->k_msk[b][xv][f]);
                qe_cl_program_free(e->prog_msk[b][xv][f]);
            }
            qe_cl_kernel_free(e->k_mw[b][f]);
            qe_cl_program_free(e->prog_mw[b][f]);
        }
        qe_cl_kernel_free(e->k_mw_sum[f]);
        qe_cl_program_free(e->prog_wt[f]);
    }
    qe_cl_kernel_free(e->k_norm);
    qe_cl_kernel_free(e->k_rope);
    qe_cl_kernel_free(e->k_attn);
    qe_cl_kernel_free(e->k_attn_mma);
    qe_cl_kernel_free(e->k_kv16);
    qe_cl_program_free(e->prog_attn_mma);
    qe_cl_kernel_free(e->k_attn16);
    qe_cl_program_free(e->prog_attn16);
    qe_cl_free(e->k16);
    qe_cl_free(e->v16);
    qe_cl_kernel_free(e->k_silu);
    qe_cl_kernel_free(e->k_silu_xh);
    qe_cl_kernel_free(e->k_norm_xh);
    qe_cl_kernel_free(e->k_norm_xh_add);
    cl_kernel arch_k[] = {e->k_qk_prep, e->k_norm_add, e->k_gelu, e->k_scale, e->k_softcap};
    for (size_t i = 0; i < sizeof arch_k / sizeof arch_k[0]; i++)
        qe_cl_kernel_free(arch_k[i]);
    qe_cl_kernel_free(e->k_stats);
    qe_cl_kernel_free(e->k_stats_merge);
    qe_cl_kernel_free(e->k_tiles);
    qe_cl_kernel_free(e->k_mma_lse);
    qe_cl_program_free(e->prog_lse);
    qe_cl_kernel_free(e->k_mma_rope);
    qe_cl_program_free(e->prog_rope);
    qe_cl_kernel_free(e->k_mma_pair_rope);
    qe_cl_program_free(e->prog_pair_rope);
    qe_cl_kernel_free(e->k_kld);
    qe_cl_free(e->kld);
    free(e->hkld);
    qe_cl_program_free(e->prog_common);
    qe_engine_kv_close(e);
    free(e->hstats);
    free(e->htmp);
    free(e);
}

/* ---- kernel launches ---- */

size_t qe_engine_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* Arguments first .. first + 14 of mma.cl's decode kernels: MSK_MULTI
 * (weight, row bytes, outputs, y, ldy), the first n given, the rest NULL / 0. */
static qe_status weight_args(cl_kernel k, cl_uint first, int n, const dev_weight *const *w,
                             const cl_mem *y, const int *ldy)
{
    qe_status st = QE_OK;
    for (int i = 0; st == QE_OK && i < MSK_MULTI; i++) {
        const cl_mem none = NULL;
        const cl_ulong rb0 = 0;
        const int zero = 0;
        const int in = i < n;
        const cl_uint a = first + 5 * (cl_uint)i;
        st = qe_cl_arg(k, a, sizeof(cl_mem), in ? &w[i]->buf : &none);
        if (st == QE_OK)
            st = qe_cl_arg(k, a + 1, sizeof(cl_ulong), in ? &w[i]->row_bytes : &rb0);
        if (st == QE_OK)
            st = qe_cl_arg(k, a + 2, sizeof(int), in ? &w[i]->ne1 : &zero);
        if (st == QE_OK)
            st = qe_cl_arg(k, a + 3, sizeof(cl_mem), in ? &y[i] : &none);
        if (st == QE_OK)
            st = qe_cl_arg(k, a + 4, sizeof(int), in ? &ldy[i] : &zero);
    }
    return st;
}

/* The n weights' blocks of `outs` outputs (grid dimension 1 of mma.cl's
 * decode kernels: at most 65535 on NVIDIA), and *nt, their outputs. */
static qe_status out_blocks(int n, const dev_weight *const *w, size_t outs, size_t *blocks,
                            size_t *nt)
{
    *blocks = *nt = 0;
    for (int i = 0; i < n; i++) {
        *blocks += qe_engine_round_up((size_t)w[i]->ne1, outs) / outs;
        *nt += (size_t)w[i]->ne1;
    }
    if (*blocks > 65535)
        return qe_fail(QE_EUNSUPPORTED, "engine: a decode matmul of %zu output blocks (65535 allowed)",
                       *blocks);
    return QE_OK;
}

/* Arguments first, first + 1, first + 2 of mma.cl's decode kernels: the
 * output rule y_seq, y_seq_stride, accumulate. */
static qe_status rule_args(cl_kernel k, cl_uint first, int y_seq, int y_seq_stride, int accumulate)
{
    const int v[3] = {y_seq, y_seq_stride, accumulate};
    qe_status st = QE_OK;
    for (cl_uint i = 0; st == QE_OK && i < 3; i++)
        st = qe_cl_arg(k, first + i, sizeof(int), &v[i]);
    return st;
}

/* mma_wide (kernels/mma.cl) for a decode call of more than 16 rows: the
 * chains run one after another in each work-group (split 1) when the call
 * has at least mw_shape.split work-groups (0: half the compute units), else
 * one chain per work-group (split 8) and mma_wide_sum adds them. */
static qe_status run_wide(qe_engine *e, int n, const dev_weight *const *w, cl_mem x,
                          cl_ulong x_off, int ldx, int n_rows, const cl_mem *y, const int *ldy,
                          int y_seq, int y_seq_stride, int accumulate)
{
    const int fmt = w[0]->fmt;
    const size_t n_rg = qe_engine_round_up((size_t)n_rows, 64) / 64;
    size_t blocks = 0, nt = 0;
    int K = w[0]->ne0;
    qe_status st = out_blocks(n, w, 64 * (size_t)e->mw_shape.nb, &blocks, &nt);
    if (st != QE_OK)
        return st;
    size_t groups = (size_t)e->mw_shape.split;
    if (groups == 0)
        groups = ((size_t)qe_cl_device(e->cl)->compute_units + 1) / 2;
    const int split = n_rg * blocks >= groups ? 1 : 8;
    cl_kernel k = e->k_mw[split == 8][fmt];
    st = qe_cl_args(k, 5, sizeof(cl_mem), &x, sizeof(cl_ulong), &x_off, sizeof(int), &ldx,
                    sizeof(int), &n_rows, sizeof(int), &K);
    if (st == QE_OK)
        st = weight_args(k, 5, n, w, y, ldy);
    const size_t part = (size_t)8 * (size_t)n_rows * nt * sizeof(float);
    if (st == QE_OK && split == 8 && qe_cl_size(e->mw_part) < part) {
        qe_cl_free(e->mw_part);
        e->mw_part = NULL;
        st = qe_cl_alloc(e->cl, part, QE_CL_RW, NULL, &e->mw_part);
    }
    if (st == QE_OK)
        st = rule_args(k, 20, y_seq, y_seq_stride, accumulate);
    if (st == QE_OK)
        st = qe_cl_arg(k, 23, sizeof(cl_mem), &e->mw_part);
    size_t global[2] = {n_rg * (size_t)split * MMA_WI, blocks}, local[2] = {MMA_WI, 1};
    if (st == QE_OK)
        st = qe_cl_run(e->cl, k, 2, global, local, NULL);
    if (st != QE_OK || split == 1)
        return st;
    cl_kernel ks = e->k_mw_sum[fmt];
    st = qe_cl_args(ks, 2, sizeof(cl_mem), &e->mw_part, sizeof(int), &n_rows);
    if (st == QE_OK)
        st = weight_args(ks, 2, n, w, y, ldy);
    if (st == QE_OK)
        st = rule_args(ks, 17, y_seq, y_seq_stride, accumulate);
    size_t gs[2] = {qe_engine_round_up(nt, 64), (size_t)n_rows}, ls[2] = {64, 1};
    return st ? st : qe_cl_run(e->cl, ks, 2, gs, ls, NULL);
}

/* How mma_skinny reads X for a call of n_rows (<= 16) rows with weights
 * of w's format and width: without branches where that is faster (at 16
 * rows and with f16 weights; slower for Q8_0 / Q4_0 at 1 .. 8 rows, see
 * msk_xfree_of), one row of Q8_0 / Q4_0 staged in local memory (MS_X1). */
static enum msk_xread skinny_xread(const qe_engine *e, const dev_weight *w, int n_rows)
{
    if (e->ms_xal && n_rows == 1 && msk_x1_format(w->fmt) && w->ne0 <= MSK_X1_MAX_K)
        return MSK_X1;
    if (e->ms_xal && (n_rows > e->msk_xfree_rows || w->fmt == WF_F16))
        return MSK_XFREE;
    return MSK_XBRANCH;
}

/* Whether a decode call's matmuls of the n weights w go to mma_skinny or
 * mma_wide as one launch: under mma, 1 .. MSK_MULTI weights of one format
 * and input width. */
static int skinny_one_launch(const qe_engine *e, int n, const dev_weight *const *w)
{
    if (e->opt.gemm != QE_GEMM_MMA || !e->mm_skinny || n < 1 || n > MSK_MULTI)
        return 0;
    for (int i = 1; i < n; i++)
        if (w[i]->fmt != w[0]->fmt || w[i]->ne0 != w[0]->ne0)
            return 0;
    return 1;
}

/* Whether a decode call of n_rows rows with the n weights w runs one
 * launch of mma_skinny's MS_X1 build, so that it can make its row itself
 * (skinny_pro) instead of a launch before it doing so. */
static int pro_serves(const qe_engine *e, int n, const dev_weight *const *w, int n_rows)
{
    return e->msk_pro && skinny_one_launch(e, n, w) && skinny_xread(e, w[0], n_rows) == MSK_X1;
}

/* mma_skinny over n (1 .. MSK_MULTI) weights of one format and input width
 * in one launch (kernels/mma.cl): along dimension 0 the row groups, along
 * dimension 1 the weights' output blocks in order. Calls of more than 16
 * rows go to mma_wide, which gives the same bits. pro (NULL: none) only
 * where pro_serves. */
static qe_status run_skinny(qe_engine *e, int n, const dev_weight *const *w, cl_mem x,
                            cl_ulong x_off, int ldx, int n_rows, const cl_mem *y, const int *ldy,
                            int y_seq, int y_seq_stride, int accumulate, const skinny_pro *pro,
                            const skinny_epi *epi)
{
    if (e->ms_xal && ((ldx & 3) || (x_off & 3))) /* the builds' float4 loads need it */
        return qe_fail(QE_EINVAL, "engine: decode matmul input at float %llu, row stride %d: "
                       "not 16-byte aligned", (unsigned long long)x_off, ldx);
    if (n_rows > 16)
        return run_wide(e, n, w, x, x_off, ldx, n_rows, y, ldy, y_seq, y_seq_stride, accumulate);
    int K = w[0]->ne0;
    const enum msk_xread xv = skinny_xread(e, w[0], n_rows);
    int b = 0; /* which build: the second where the default shape gives few work-groups */
    size_t blocks = 0, nt = 0;
    qe_status st = out_blocks(n, w, 8 * (size_t)e->msk_shape[0].nb, &blocks, &nt);
    const size_t rows_wg = 16 * (size_t)e->msk_shape[0].mt; /* MS_MT: the same in both */
    const size_t groups = qe_engine_round_up((size_t)n_rows, rows_wg) / rows_wg * blocks;
    skinny_shape few;
    const int few_n = skinny_few(e, xv, w[0]->fmt, &few);
    if (st == QE_OK && groups < (size_t)few_n) {
        b = 1;
        st = out_blocks(n, w, 8 * (size_t)few.nb, &blocks, &nt);
    }
    if (((pro && pro->op != SKP_COPY) || (epi && epi->ops)) && xv != MSK_X1)
        return qe_fail(QE_EINVAL, "engine: a decode matmul's own norm, SwiGLU, RoPE or cache "
                                  "write needs the one-row build");
    cl_kernel k = e->k_msk[b][xv][w[0]->fmt];
    if (st == QE_OK)
        st = qe_cl_args(k, 5, sizeof(cl_mem), &x, sizeof(cl_ulong), &x_off, sizeof(int), &ldx,
                        sizeof(int), &n_rows, sizeof(int), &K);
    if (st == QE_OK)
        st = weight_args(k, 5, n, w, y, ldy);
    if (st == QE_OK)
        st = rule_args(k, 20, y_seq, y_seq_stride, accumulate);
    if (st == QE_OK && xv == MSK_X1)
        st = x1_args(e, k, pro, epi);
    /* the one-row build's groups may each take several blocks (x1_groups_of) */
    if (xv == MSK_X1 && e->msk_x1_groups && blocks > e->msk_x1_groups)
        blocks = e->msk_x1_groups;
    size_t global[2] = {qe_engine_round_up((size_t)n_rows, rows_wg) / rows_wg * MMA_WI, blocks};
    size_t local[2] = {MMA_WI, 1};
    return st ? st : qe_cl_run(e->cl, k, 2, global, local, NULL);
}

/* buf (e->xh, or g's memory for mma_tile_glu) now holds matmul input (x,
 * off, ldx, n_rows, K) as f16 pairs in order xo (or, valid 0, nothing
 * usable); only: x itself was not written (rmsnorm_xh, silu_mul_xh,
 * mma_tile_glu), so no other order can be made of it. */
static void xh_hold(qe_engine *e, cl_mem buf, cl_mem x, cl_ulong off, int ldx, int n_rows, int K,
                    int xo, int only, int valid)
{
    e->xh_src.buf = buf;
    e->xh_src.x = x;
    e->xh_src.off = off;
    e->xh_src.ldx = ldx;
    e->xh_src.n_rows = n_rows;
    e->xh_src.K = K;
    e->xh_src.xo = xo;
    e->xh_src.only = only;
    e->xh_src.valid = valid;
}

/* Whether e->xh holds that input in order xo and may be reused (inside
 * xh_share; matmuls of one input whose weights differ in format may want
 * different orders). */
static int xh_holds(const qe_engine *e, cl_mem x, cl_ulong off, int ldx, int n_rows, int K,
                    int xo)
{
    return e->xh_keep && e->xh_src.valid && e->xh_src.x == x && e->xh_src.off == off &&
           e->xh_src.ldx == ldx && e->xh_src.n_rows == n_rows && e->xh_src.K == K &&
           e->xh_src.xo == xo;
}

/* Makes mma_tile's input for weights w: X (n_rows x w->ne0 floats from
 * x_off, ldx apart) as f16 pairs in w's order, converted into e->xh by
 * mma_xh unless held already (xh_share); e->xh_src.buf then has them. */
static qe_status xh_ready(qe_engine *e, const dev_weight *w, cl_mem x, cl_ulong x_off, int ldx,
                          int n_rows)
{
    int K = w->ne0, ldp = xh_pairs(K);
    const int xo = xh_order(w->fmt);
    if (xh_holds(e, x, x_off, ldx, n_rows, K, xo))
        return QE_OK;
    if (ldp > e->xh_ldp || (size_t)n_rows > (size_t)e->opt.n_seq * (size_t)e->opt.n_ctx)
        return qe_fail(QE_EINVAL, "engine: a matmul of %d rows x %d inputs exceeds mma_xh's buffer",
                       n_rows, K);
    cl_kernel kx = e->k_mma_xh[w->fmt];
    qe_status st = qe_cl_args(kx, 7, sizeof(cl_mem), &x, sizeof(cl_ulong), &x_off, sizeof(int),
                              &ldx, sizeof(int), &n_rows, sizeof(int), &K, sizeof(cl_mem), &e->xh,
                              sizeof(int), &ldp);
    size_t gx[2] = {qe_engine_round_up((size_t)ldp, 64), (size_t)n_rows};
    if (st == QE_OK)
        st = qe_cl_run(e->cl, kx, 2, gx, NULL, NULL);
    /* norm_for_matmuls and run_ffn hold an unwritten input only where
       every reader's order is the held one */
    QE_ASSERT(!(e->xh_src.valid && e->xh_src.only && e->xh_src.x == x));
    xh_hold(e, e->xh, x, x_off, ldx, n_rows, K, xo, 0, st == QE_OK);
    return st;
}

/* Launches k (mma_tile or mma_tile_glu, arguments set) over n_rows rows
 * and n_staged staged weight rows: MMA_TILE of them and mt_shape.rows rows
 * a work-group. */
static qe_status run_tile_grid(qe_engine *e, cl_kernel k, size_t n_staged, int n_rows)
{
    const size_t bm = (size_t)e->mt_shape.rows, wi = tile_items(e->mt_shape);
    size_t global[2] = {qe_engine_round_up(n_staged, MMA_TILE) / MMA_TILE * wi,
                        qe_engine_round_up((size_t)n_rows, bm) / bm};
    size_t local[2] = {wi, 1};
    return qe_cl_run(e->cl, k, 2, global, local, NULL);
}

qe_status qe_engine_run_wt_f16(qe_engine *e, const dev_weight *w, cl_mem out, int row0, int n_rows,
                               int queue, cl_event after, cl_event *done)
{
    cl_kernel k = e->k_wt_f16[w->fmt];
    const int K = w->ne0, N = row0 + n_rows;
    QE_ASSERT(row0 >= 0 && n_rows >= 1 && N <= w->ne1);
    qe_status st = qe_cl_args(k, 6, sizeof(cl_mem), &w->buf, sizeof(cl_ulong), &w->row_bytes,
                              sizeof(int), &K, sizeof(int), &N, sizeof(cl_mem), &out, sizeof(int),
                              &row0);
    size_t global[2] = {qe_engine_round_up((size_t)K / 8, 64), (size_t)n_rows}, local[2] = {64, 1};
    return st == QE_OK ? qe_cl_run_on(e->cl, queue, k, 2, global, local, after ? 1 : 0,
                                      after ? &after : NULL, done)
                       : st;
}

/* RoPE for mma_tile's epilogue (MT_ROPE): the layer's table and the
 * tokens per sequence (row r is at position r % n_tok). */
typedef struct tile_rope {
    cl_mem cs;
    int n_tok;
} tile_rope;

/* mma_tile (kernels/mma.cl) for a prefill matmul: X as f16 pairs
 * (xh_ready), then the 128 x 128 tiles. With wb (one format and shape as
 * w) it is mma_tile_pair, which also writes x W_b^T into yb (same layout),
 * wb's output tiles after w's. With rope (rope_tile_of said so: never
 * accumulating) the MT_ROPE build, which rotates w's outputs. */
static qe_status run_tile(qe_engine *e, const dev_weight *w, const dev_weight *wb, cl_mem x,
                          cl_ulong x_off, int ldx, int n_rows, cl_mem y, cl_mem yb, int ldy,
                          int y_seq, int y_seq_stride, int accumulate, const tile_rope *rope)
{
    const int K = w->ne0, ldp = xh_pairs(K);
    const dev_weight *ws[2] = {w, wb};
    dev_weight views[2];
    qe_status st = qe_engine_wh_take(e, wb ? 2 : 1, ws, views);
    w = ws[0];
    wb = ws[1];
    cl_kernel kt = wb ? e->k_mma_pair[w->fmt] : e->k_mma_tile[w->fmt];
    if (rope) {
        QE_ASSERT(st != QE_OK || (w->fmt == WF_F16 && !accumulate));
        kt = wb ? e->k_mma_pair_rope : e->k_mma_rope;
    }
    if (st == QE_OK)
        st = xh_ready(e, w, x, x_off, ldx, n_rows);
    if (st == QE_OK)
        st = qe_cl_args(kt, 12, sizeof(cl_mem), &e->xh_src.buf, sizeof(int), &ldp, sizeof(int),
                        &n_rows, sizeof(cl_mem), &w->buf, sizeof(cl_ulong), &w->row_bytes,
                        sizeof(int), &K, sizeof(int), &w->ne1, sizeof(cl_mem), &y, sizeof(int),
                        &ldy, sizeof(int), &y_seq, sizeof(int), &y_seq_stride, sizeof(int),
                        &accumulate);
    if (st == QE_OK && wb)
        st = qe_cl_arg(kt, 12, sizeof(cl_mem), &wb->buf);
    if (st == QE_OK && wb)
        st = qe_cl_arg(kt, 13, sizeof(cl_mem), &yb);
    const cl_uint ra = wb ? 14 : 12; /* MT_ROPE's arguments follow */
    if (st == QE_OK && rope)
        st = qe_cl_arg(kt, ra, sizeof(cl_mem), &rope->cs);
    if (st == QE_OK && rope)
        st = qe_cl_arg(kt, ra + 1, sizeof(int), &rope->n_tok);
    const size_t n_staged =
        wb ? 2 * qe_engine_round_up((size_t)w->ne1, MMA_TILE) : (size_t)w->ne1;
    if (st == QE_OK)
        st = run_tile_grid(e, kt, n_staged, n_rows);
    return st == QE_OK ? qe_engine_wh_done(e) : st;
}

/* The records of a row that mma_tile_lse writes: one a tile of MMA_TILE
 * logits. */
static int lse_tiles(const qe_engine *e) { return (e->hp.n_vocab + MMA_TILE - 1) / MMA_TILE; }

/* Prefill's LM head over rows [row0, row0 + n) of e->hout reduced to
 * statistics rows row0 .. (lse_of): mma_tile_lse writes each row's records
 * (lse_tiles, 16 bytes each) into e->logits, logit_tiles adds them into
 * e->stats. */
static qe_status run_head_lse(qe_engine *e, int row0, int n)
{
    const dev_weight *ws[1] = {&e->output};
    dev_weight views[1];
    const int K = e->hp.dim, ldp = xh_pairs(K), n_tiles = lse_tiles(e), tile = MMA_TILE;
    qe_status st = qe_engine_wh_take(e, 1, ws, views);
    const dev_weight *w = ws[0];
    QE_ASSERT(st != QE_OK || w->fmt == WF_F16);
    if (st == QE_OK)
        st = xh_ready(e, w, e->hout, (cl_ulong)row0 * (cl_ulong)K, K, n);
    if (st == QE_OK)
        st = qe_cl_args(e->k_mma_lse, 10, sizeof(cl_mem), &e->xh_src.buf, sizeof(int), &ldp,
                        sizeof(int), &n, sizeof(cl_mem), &w->buf, sizeof(cl_ulong), &w->row_bytes,
                        sizeof(int), &K, sizeof(int), &w->ne1, sizeof(cl_mem), &e->logits,
                        sizeof(cl_mem), &e->targets, sizeof(int), &row0);
    if (st == QE_OK)
        st = run_tile_grid(e, e->k_mma_lse, (size_t)w->ne1, n);
    if (st == QE_OK)
        st = qe_engine_wh_done(e);
    if (st == QE_OK)
        st = qe_cl_args(e->k_tiles, 6, sizeof(cl_mem), &e->logits, sizeof(int), &n_tiles,
                        sizeof(int), &tile, sizeof(cl_mem), &e->targets, sizeof(cl_mem), &e->stats,
                        sizeof(int), &row0);
    size_t global[2] = {(size_t)e->rw, (size_t)n}, local[2] = {(size_t)e->rw, 1};
    return st == QE_OK ? qe_cl_run(e->cl, e->k_tiles, 2, global, local, NULL) : st;
}

/* Whether qe_engine_run_matmul serves matmuls by mma_tile now: under mma,
 * outside decode (whose calls take mma_skinny / mma_wide). */
static int tile_serves(const qe_engine *e) { return e->opt.gemm == QE_GEMM_MMA && !e->mm_skinny; }

/* y_a = x W_a^T and y_b = x W_b^T, not accumulating, dense rows of ldy:
 * one mma_tile_pair launch where mma_tile serves prefill and the weights
 * share a format and shape (pair_serves: the bits of two mma_tile
 * launches), else qe_engine_run_matmul_n's. With rope, y_a rotated in the
 * pair's epilogue where it can be (pair_rope_serves: *rotated = 1). */
static int pair_serves(const qe_engine *e, const dev_weight *wa, const dev_weight *wb)
{
    return tile_serves(e) && e->k_mma_pair[tile_fmt(wa)] && tile_fmt(wb) == tile_fmt(wa) &&
           wb->fmt == wa->fmt && wb->ne0 == wa->ne0 && wb->ne1 == wa->ne1 &&
           wb->row_bytes == wa->row_bytes;
}

/* Whether mma_tile_pair's MT_ROPE build serves wa and wb with rope
 * (rope_tile_of's) for wa: multiplied as f16. */
static int pair_rope_serves(const qe_engine *e, const dev_weight *wa, const dev_weight *wb,
                            const tile_rope *rope)
{
    return rope && e->k_mma_pair_rope && pair_serves(e, wa, wb) && tile_fmt(wa) == WF_F16;
}

static qe_status run_matmul_pair(qe_engine *e, const dev_weight *wa, const dev_weight *wb,
                                 cl_mem x, int ldx, int n_rows, cl_mem ya, cl_mem yb, int ldy,
                                 const tile_rope *rope, int *rotated)
{
    *rotated = pair_rope_serves(e, wa, wb, rope);
    if (pair_serves(e, wa, wb))
        return run_tile(e, wa, wb, x, 0, ldx, n_rows, ya, yb, ldy, n_rows, n_rows, 0,
                        *rotated ? rope : NULL);
    const dev_weight *const w[2] = {wa, wb};
    const cl_mem y[2] = {ya, yb};
    const int ld[2] = {ldy, ldy};
    return qe_engine_run_matmul_n(e, 2, w, x, ldx, n_rows, y, ld);
}

/* Layer l's RoPE (n_tok tokens a sequence) into *r for its Q or K matmul
 * to apply in its epilogue, where the MT_ROPE builds exist (rope_fuses),
 * mma_tile serves the matmul and no bias or norm comes between it and
 * RoPE; returns r, or NULL: the caller runs qk_prep and rope.cl. */
static const tile_rope *rope_tile_of(const qe_engine *e, int l, cl_mem bias, cl_mem norm,
                                     int n_tok, tile_rope *r)
{
    if (!e->k_mma_rope || !tile_serves(e) || bias || norm)
        return NULL;
    r->cs = qe_model_layer_swa(&e->hp, l) ? e->rope_cs_swa : e->rope_cs;
    r->n_tok = n_tok;
    return r;
}

/* After prefill's Q or K matmul into y (rows s * seq_stride + p of ldy
 * floats, n_heads heads): the bias and norm (qk_prep), then RoPE unless
 * the matmul's epilogue rotated already (rotated). */
static qe_status qk_finish(qe_engine *e, int l, cl_mem y, int ldy, int n_heads, int n_seq,
                           int n_tok, int seq_stride, cl_mem bias, cl_mem norm, int rotated)
{
    qe_status st =
        qe_engine_run_qk_prep(e, y, ldy, n_heads, n_seq, n_tok, seq_stride, bias, norm);
    if (st == QE_OK && !rotated)
        st = qe_engine_run_rope(e, l, y, ldy, n_heads, n_seq, n_tok, seq_stride);
    return st;
}

/* Prefill's Q (into e->q) or K (into its f32 cache or the staging rows) of
 * layer l: y = h W^T over the n_seq * n_tok rows of e->h, row s * n_tok + p
 * into y row s * seq_stride + p, rotated as it is stored where rope_tile_of
 * allows and w is multiplied as f16, then qk_finish. */
static qe_status run_qk(qe_engine *e, int l, const dev_weight *w, cl_mem bias, cl_mem norm,
                        int n_heads, int n_seq, int n_tok, cl_mem y, int ldy, int seq_stride)
{
    tile_rope tr;
    const tile_rope *rope = rope_tile_of(e, l, bias, norm, n_tok, &tr);
    const int rows = n_seq * n_tok, rot = rope && tile_fmt(w) == WF_F16;
    qe_status st = rot ? run_tile(e, w, NULL, e->h, 0, e->hp.dim, rows, y, NULL, ldy, n_tok,
                                  seq_stride, 0, rope)
                       : qe_engine_run_matmul(e, w, e->h, 0, e->hp.dim, rows, y, ldy, n_tok,
                                              seq_stride, 0);
    return st != QE_OK ? st
                       : qk_finish(e, l, y, ldy, n_heads, n_seq, n_tok, seq_stride, bias, norm, rot);
}

/* Under mma, the prefill matmuls between xh_share(e, 1) and xh_share(e, 0)
 * that read the same input convert it to f16 (mma_xh) once: the first
 * converts, the others find it in e->xh. A caller brackets only matmuls
 * whose input nothing rewrites in between. */
static void xh_share(qe_engine *e, int on)
{
    e->xh_keep = on && e->opt.gemm == QE_GEMM_MMA;
    e->xh_src.valid = 0;
}

/* y rows (r / y_seq) * y_seq_stride + r % y_seq  (+)=  x[x_off + r*ldx ..] W^T */
qe_status qe_engine_run_matmul(qe_engine *e, const dev_weight *w, cl_mem x, cl_ulong x_off, int ldx,
                            int n_rows, cl_mem y, int ldy, int y_seq, int y_seq_stride,
                            int accumulate)
{
    if (e->opt.gemm == QE_GEMM_MMA && e->mm_skinny)
        return run_skinny(e, 1, &w, x, x_off, ldx, n_rows, &y, &ldy, y_seq, y_seq_stride,
                          accumulate, NULL, NULL);
    cl_kernel k = e->k_matmul[w->fmt];
    size_t global[2] = {qe_engine_round_up((size_t)w->ne1, MM_TILE) / MM_TILE * MM_WI,
                        qe_engine_round_up((size_t)n_rows, MM_TILE) / MM_TILE * MM_WI};
    size_t local[2] = {MM_WI, MM_WI};
    if (tile_serves(e))
        return run_tile(e, w, NULL, x, x_off, ldx, n_rows, y, NULL, ldy, y_seq, y_seq_stride,
                        accumulate, NULL);
    qe_status st = qe_cl_args(k, 13, sizeof(cl_mem), &x, sizeof(cl_ulong), &x_off, sizeof(int), &ldx,
                              sizeof(int), &n_rows, sizeof(cl_mem), &w->buf, sizeof(cl_ulong),
                              &w->row_bytes, sizeof(int), &w->ne0, sizeof(int), &w->ne1,
                              sizeof(cl_mem), &y, sizeof(int), &ldy, sizeof(int), &y_seq,
                              sizeof(int), &y_seq_stride, sizeof(int), &accumulate);
    if (st != QE_OK)
        return st;
    return qe_cl_run(e->cl, k, 2, global, local, NULL);
}

qe_status qe_engine_run_matmul_n(qe_engine *e, int n, const dev_weight *const *w, cl_mem x, int ldx,
                                 int n_rows, const cl_mem *y, const int *ldy)
{
    if (skinny_one_launch(e, n, w))
        return run_skinny(e, n, w, x, 0, ldx, n_rows, y, ldy, n_rows, n_rows, 0, NULL, NULL);
    qe_status st = QE_OK;
    for (int i = 0; st == QE_OK && i < n; i++)
        st = qe_engine_run_matmul(e, w[i], x, 0, ldx, n_rows, y[i], ldy[i], n_rows, n_rows, 0);
    return st;
}

/* Whether mma_skinny makes the input of the n matmuls w of an n_rows call
 * itself as the RMSNorm of its row (rms.cl's reduction, QE_NW <= 256
 * work-items, fits its work-group). */
static int norm_pro_serves(const qe_engine *e, int n, const dev_weight *const *w, int n_rows)
{
    return pro_serves(e, n, w, n_rows) && w[0]->ne0 == e->hp.dim && e->nw <= MMA_WI;
}

qe_status qe_engine_run_norm_matmul_n(qe_engine *e, cl_mem x, cl_mem nw, cl_mem h, int n,
                                      const dev_weight *const *w, int n_rows, const cl_mem *y,
                                      const int *ldy)
{
    const int dim = e->hp.dim;
    if (norm_pro_serves(e, n, w, n_rows)) {
        const skinny_pro pro = {SKP_NORM, nw};
        return run_skinny(e, n, w, x, 0, dim, n_rows, y, ldy, n_rows, n_rows, 0, &pro, NULL);
    }
    qe_status st = qe_engine_run_norm(e, x, n_rows, n_rows, 0, nw, h, n_rows);
    return st != QE_OK ? st : qe_engine_run_matmul_n(e, n, w, h, dim, n_rows, y, ldy);
}

qe_status qe_engine_run_qkv(qe_engine *e, const dev_layer *l, cl_mem x, cl_mem h, int n_rows,
                            const cl_mem y[3], const int ldy[3], cl_mem rslot, cl_mem rpos,
                            int *done)
{
    const qe_hparams *hp = &e->hp;
    const dev_weight *w[3] = {&l->wq, &l->wk, &l->wv};
    const int layer = (int)(l - e->layers);
    *done = 0;
    /* RoPE in the epilogue: Q/K straight from the matmul (no bias or
       per-head norm between), pairs layout (a pair's two outputs in one
       work-group); the cache write after it for f16 caches */
    if (!norm_pro_serves(e, 3, w, n_rows) || l->bq || l->bk || l->bv || l->q_norm || l->k_norm ||
        hp->rope_layout == QE_ROPE_HALVES || hp->head_dim % 2 || hp->n_rot % 2)
        return qe_engine_run_norm_matmul_n(e, x, l->attn_norm, h, 3, w, n_rows, y, ldy);
    skinny_epi epi = {SKE_ROPE, qe_model_layer_swa(hp, layer) ? e->rope_cs_swa : e->rope_cs, rpos,
                      rslot, l->kc, l->vc};
    if (e->opt.kv_k == QE_KV_F16 && e->opt.kv_v == QE_KV_F16)
        epi.ops |= SKE_KV;
    const skinny_pro pro = {SKP_NORM, l->attn_norm};
    qe_status st = run_skinny(e, 3, w, x, 0, hp->dim, n_rows, y, ldy, n_rows, n_rows, 0, &pro, &epi);
    if (st == QE_OK)
        *done = (epi.ops & SKE_ROPE ? QE_QKV_ROPE : 0) | (epi.ops & SKE_KV ? QE_QKV_KV : 0);
    return st;
}

qe_status qe_engine_run_ffn_down(qe_engine *e, const dev_weight *w_down, cl_mem g, cl_mem u,
                                 int n_rows, cl_mem post, cl_mem x, cl_mem h)
{
    const int n_ff = e->hp.n_ff, dim = e->hp.dim;
    if (!post && e->hp.ffn_act == QE_ACT_SILU && w_down->ne0 == n_ff &&
        pro_serves(e, 1, &w_down, n_rows)) {
        const skinny_pro pro = {SKP_SILU, u};
        return run_skinny(e, 1, &w_down, g, 0, n_ff, n_rows, &x, &dim, n_rows, n_rows, 1, &pro,
                          NULL);
    }
    qe_status st = qe_engine_run_act(e, g, u, n_rows);
    return st != QE_OK ? st : qe_engine_run_out_add(e, w_down, g, n_ff, n_rows, post, x, h);
}

qe_status qe_engine_run_norm(qe_engine *e, cl_mem x, int in_seq, int in_seq_stride, int in_off,
                          cl_mem w, cl_mem y, int n_rows)
{
    float eps = e->hp.rms_eps;
    qe_status st = qe_cl_args(e->k_norm, 8, sizeof(cl_mem), &x, sizeof(int), &in_seq, sizeof(int),
                              &in_seq_stride, sizeof(int), &in_off, sizeof(cl_mem), &w, sizeof(int),
                              &e->hp.dim, sizeof(float), &eps, sizeof(cl_mem), &y);
    if (st != QE_OK)
        return st;
    size_t global = (size_t)n_rows * (size_t)e->nw, local = (size_t)e->nw;
    return qe_cl_run(e->cl, e->k_norm, 1, &global, &local, NULL);
}

/* Left to the runtime, NVIDIA ran rope's (32 pairs, 32 heads, 4096 rows)
 * at a quarter of the copy rate (1.33 ms a pp512 B 8 repetition; 0.36 ms
 * with these work-groups). */
const size_t *qe_engine_head_local(const qe_engine *e, const size_t global[3], size_t local[3])
{
    const size_t max = qe_cl_device(e->cl)->max_wg_size, cap = max < 256 ? max : 256;
    local[0] = global[0];
    local[1] = local[2] = 1;
    while (local[0] * local[1] * 2 <= cap && global[1] % (local[1] * 2) == 0)
        local[1] *= 2;
    return local[0] <= cap ? local : NULL;
}

qe_status qe_engine_run_rope(qe_engine *e, int layer, cl_mem buf, int ld, int n_heads, int n_seq,
                             int n_tok, int seq_stride)
{
    int layout = e->hp.rope_layout == QE_ROPE_HALVES ? 1 : 0;
    cl_mem cs = qe_model_layer_swa(&e->hp, layer) ? e->rope_cs_swa : e->rope_cs;
    qe_status st = qe_cl_args(e->k_rope, 8, sizeof(cl_mem), &buf, sizeof(int), &ld, sizeof(int),
                              &n_tok, sizeof(int), &seq_stride, sizeof(int), &e->hp.head_dim,
                              sizeof(int), &e->hp.n_rot, sizeof(int), &layout, sizeof(cl_mem),
                              &cs);
    if (st != QE_OK)
        return st;
    size_t global[3] = {(size_t)e->hp.n_rot / 2, (size_t)n_heads, (size_t)n_seq * (size_t)n_tok};
    if (global[0] == 0)
        return QE_OK; /* n_rot 0: nothing rotates */
    size_t local[3];
    return qe_cl_run(e->cl, e->k_rope, 3, global, qe_engine_head_local(e, global, local), NULL);
}

/* attn_kv_f16: rows 0 .. n_tok - 1 of each sequence's caches of layer d
 * into e->k16 / e->v16 as f16, for attn_mma's f16 build. H100, pp512 B 8
 * of the synthetic Llama-3.2-1B with a tq4 cache: attn_mma had taken 2.59
 * ms a forward decoding its tiles, against 1.62 with f16 caches. */
static qe_status run_kv16(qe_engine *e, const dev_layer *d, int n_seq, int n_tok)
{
    const cl_ulong krb = (cl_ulong)e->kv_row_bytes[0], vrb = (cl_ulong)e->kv_row_bytes[1];
    qe_status st = qe_cl_args(e->k_kv16, 10, sizeof(cl_mem), &d->kc, sizeof(cl_mem), &d->vc,
                              sizeof(cl_ulong), &krb, sizeof(cl_ulong), &vrb, sizeof(int), &n_seq,
                              sizeof(int), &n_tok, sizeof(int), &e->opt.n_ctx, sizeof(int),
                              &e->hp.n_kv_heads, sizeof(cl_mem), &e->k16, sizeof(cl_mem), &e->v16);
    const size_t n = (size_t)n_seq * (size_t)n_tok * (size_t)e->hp.n_kv_heads *
                     (size_t)(e->hp.head_dim / 8);
    size_t global[1] = {qe_engine_round_up(n, 128)}, local[1] = {128};
    return st ? st : qe_cl_run(e->cl, e->k_kv16, 1, global, local, NULL);
}

/* Attention into e->att (xo < 0), or under attn_mma with xo >= 0 straight
 * into e->xh as the wo matmul's f16 pairs in xh.cl's order xo (the
 * caller holds them: qe_engine_run_trunk). Under attn_mma, caches that are
 * not f16 are decoded once (run_kv16) and attended as f16 rows of n_tok
 * positions a sequence: the same operands, so the same bits. */
static qe_status run_attention(qe_engine *e, const dev_layer *d, int n_seq, int n_tok, int xo)
{
    float scale = e->hp.attn_scale;
    int window = qe_model_layer_swa(&e->hp, (int)(d - e->layers)) ? e->hp.swa_window : 0;
    const int f16 = e->k_attn16 != NULL; /* built only beside attn_mma */
    const cl_ulong kvb = (cl_ulong)e->kv_dim * sizeof(cl_half);
    const cl_ulong krb = f16 ? kvb : (cl_ulong)e->kv_row_bytes[0];
    const cl_ulong vrb = f16 ? kvb : (cl_ulong)e->kv_row_bytes[1];
    const cl_mem kc = f16 ? e->k16 : d->kc, vc = f16 ? e->v16 : d->vc;
    const int n_ctx = f16 ? n_tok : e->opt.n_ctx;
    /* the same first 12 arguments */
    cl_kernel k = f16 ? e->k_attn16 : e->k_attn_mma ? e->k_attn_mma : e->k_attn;
    qe_status st = qe_cl_args(k, 12, sizeof(cl_mem), &e->q, sizeof(cl_mem), &kc,
                              sizeof(cl_mem), &vc, sizeof(cl_ulong), &krb, sizeof(cl_ulong),
                              &vrb, sizeof(int), &n_tok, sizeof(int), &n_ctx, sizeof(int),
                              &e->hp.n_heads, sizeof(int), &e->hp.n_kv_heads, sizeof(float),
                              &scale, sizeof(int), &window, sizeof(cl_mem), &e->att);
    if (st == QE_OK && f16)
        st = run_kv16(e, d, n_seq, n_tok);
    const int ldp = xh_pairs(e->q_dim);
    if (st == QE_OK && e->k_attn_mma) /* attn_mma's own three */
        st = qe_cl_arg(k, 12, sizeof(cl_mem), xo >= 0 ? &e->xh : &e->att);
    if (st == QE_OK && e->k_attn_mma)
        st = qe_cl_arg(k, 13, sizeof(int), &ldp);
    if (st == QE_OK && e->k_attn_mma)
        st = qe_cl_arg(k, 14, sizeof(int), &xo);
    if (st != QE_OK)
        return st;
    size_t global[3] = {qe_engine_round_up((size_t)n_tok, ATT_BQ), (size_t)e->hp.n_heads, (size_t)n_seq};
    size_t local[3] = {ATT_BQ, 1, 1};
    if (e->k_attn_mma) { /* 4 warps per 64 queries */
        global[0] = qe_engine_round_up((size_t)n_tok, ATT_MMA_BQ) / ATT_MMA_BQ * 128;
        local[0] = 128;
    }
    return qe_cl_run(e->cl, k, 3, global, local, NULL);
}

qe_status qe_engine_run_attention(qe_engine *e, const dev_layer *d, int n_seq, int n_tok)
{
    return run_attention(e, d, n_seq, n_tok, -1);
}

/* The order in which attention writes the wo matmul's input straight into
 * e->xh, or -1 where it writes e->att: under attn_mma when wo is served by
 * mma_tile (f16 pairs are what it reads) and rows of n_heads * head_dim
 * that need no padding pairs (a multiple of 32). The pairs are mma_xh's
 * from e->att, so the sums are the same bits; H200, pp512 B 8 of the
 * synthetic Llama-3.2-1B: one mma_xh launch (19 us) and the f32 output's
 * 33.5 MB written and read less a layer. A TurboQuant V's output joins
 * since attn_mma rotates it back itself (AM_ROTO; build_common). */
static int attention_xh_order(const qe_engine *e, const dev_layer *d)
{
    return e->k_attn_mma && tile_serves(e) && e->q_dim % 32 == 0
               ? xh_order(tile_fmt(&d->wo))
               : -1;
}

qe_status qe_engine_run_qk_prep(qe_engine *e, cl_mem buf, int ld, int n_heads, int n_seq,
                                int n_tok, int seq_stride, cl_mem bias, cl_mem norm)
{
    int use_bias = bias != NULL, use_norm = norm != NULL;
    if (!use_bias && !use_norm)
        return QE_OK;
    cl_mem b = use_bias ? bias : buf, w = use_norm ? norm : buf; /* unused ones: any buffer */
    float eps = e->hp.rms_eps;
    qe_status st = qe_cl_args(e->k_qk_prep, 10, sizeof(cl_mem), &buf, sizeof(int), &ld, sizeof(int),
                              &n_tok, sizeof(int), &seq_stride, sizeof(int), &e->hp.head_dim,
                              sizeof(cl_mem), &b, sizeof(int), &use_bias, sizeof(cl_mem), &w,
                              sizeof(int), &use_norm, sizeof(float), &eps);
    size_t global[2] = {(size_t)n_heads, (size_t)n_seq * (size_t)n_tok};
    return st != QE_OK ? st : qe_cl_run(e->cl, e->k_qk_prep, 2, global, NULL, NULL);
}

/* K and V of the batch's rows into layer l's caches (K after bias, norm and
 * RoPE; V after bias). An f32 cache is written by the matmul directly;
 * another format goes through a staging buffer and the store kernel. With
 * both caches staged under mma, the K and V matmuls share a launch
 * (run_matmul_pair, V into e->kvs_v) and, one format, so do their stores;
 * else one of K and V at a time. */
static qe_status run_kv(qe_engine *e, int l, int n_seq, int n_tok)
{
    const qe_hparams *hp = &e->hp;
    const dev_layer *d = &e->layers[l];
    const int rows = n_seq * n_tok, ctx = e->opt.n_ctx;
    qe_status st = QE_OK;
    tile_rope tr;
    const tile_rope *rope = rope_tile_of(e, l, d->bk, d->k_norm, n_tok, &tr);
    if (e->kvs_v && e->pair_kv && pair_rope_serves(e, &d->wk, &d->wv, rope)) {
        /* MT_KV16 / MT_KVTQ: K rotated and V straight into their caches
           (rows of kv_dim halves, or of n_kv head vectors the kernel sizes) */
        QE_ASSERT(!kv16_of(e) || (e->kv_row_bytes[0] == (size_t)e->kv_dim * 2 &&
                                  e->kv_row_bytes[1] == (size_t)e->kv_dim * 2));
        return run_tile(e, &d->wk, &d->wv, e->h, 0, hp->dim, rows, d->kc, d->vc, e->kv_dim, n_tok,
                        ctx, 0, rope);
    }
    if (e->kvs_v) {
        const int one = e->opt.kv_k == e->opt.kv_v;
        int rot; /* K came out of its matmul rotated */
        if ((st = run_matmul_pair(e, &d->wk, &d->wv, e->h, hp->dim, rows, e->kvs, e->kvs_v,
                                  e->kv_dim, rope, &rot)) != QE_OK ||
            (st = qk_finish(e, l, e->kvs, e->kv_dim, hp->n_kv_heads, n_seq, n_tok, n_tok, d->bk,
                            d->k_norm, rot)) != QE_OK ||
            (st = qe_engine_run_qk_prep(e, e->kvs_v, e->kv_dim, hp->n_kv_heads, n_seq, n_tok,
                                        n_tok, d->bv, NULL)) != QE_OK ||
            (st = qe_engine_run_kv_store(e, 0, e->kvs, rows, d->kc, n_tok, ctx, 0,
                                         one ? e->kvs_v : NULL, one ? d->vc : NULL)) != QE_OK)
            return st;
        return one ? QE_OK
                   : qe_engine_run_kv_store(e, 1, e->kvs_v, rows, d->vc, n_tok, ctx, 0, NULL, NULL);
    }
    if (e->opt.kv_k == QE_KV_F32) {
        if ((st = run_qk(e, l, &d->wk, d->bk, d->k_norm, hp->n_kv_heads, n_seq, n_tok, d->kc,
                         e->kv_dim, ctx)) != QE_OK)
            return st;
    } else if ((st = run_qk(e, l, &d->wk, d->bk, d->k_norm, hp->n_kv_heads, n_seq, n_tok, e->kvs,
                            e->kv_dim, n_tok)) != QE_OK ||
               (st = qe_engine_run_kv_store(e, 0, e->kvs, rows, d->kc, n_tok, ctx, 0, NULL, NULL)) !=
                   QE_OK) {
        return st;
    }
    if (e->opt.kv_v == QE_KV_F32) {
        st = qe_engine_run_matmul(e, &d->wv, e->h, 0, hp->dim, rows, d->vc, e->kv_dim, n_tok, ctx,
                                  0);
        if (st == QE_OK)
            st = qe_engine_run_qk_prep(e, d->vc, e->kv_dim, hp->n_kv_heads, n_seq, n_tok, ctx, d->bv, NULL);
        return st;
    }
    st = qe_engine_run_matmul(e, &d->wv, e->h, 0, hp->dim, rows, e->kvs, e->kv_dim, rows, rows, 0);
    if (st == QE_OK)
        st = qe_engine_run_qk_prep(e, e->kvs, e->kv_dim, hp->n_kv_heads, n_seq, n_tok, n_tok, d->bv, NULL);
    if (st == QE_OK)
        st = qe_engine_run_kv_store(e, 1, e->kvs, rows, d->vc, n_tok, ctx, 0, NULL, NULL);
    return st;
}

qe_status qe_engine_run_out_add(qe_engine *e, const dev_weight *w_out, cl_mem in, int ld_in,
                                int n_rows, cl_mem post, cl_mem x, cl_mem h)
{
    const int dim = e->hp.dim;
    if (!post)
        return qe_engine_run_matmul(e, w_out, in, 0, ld_in, n_rows, x, dim, n_rows, n_rows, 1);
    qe_status st = qe_engine_run_matmul(e, w_out, in, 0, ld_in, n_rows, h, dim, n_rows, n_rows, 0);
    float eps = e->hp.rms_eps;
    if (st == QE_OK)
        st = qe_cl_args(e->k_norm_add, 5, sizeof(cl_mem), &h, sizeof(cl_mem), &post, sizeof(int),
                        &dim, sizeof(float), &eps, sizeof(cl_mem), &x);
    size_t global = (size_t)n_rows * (size_t)e->nw, local = (size_t)e->nw;
    return st != QE_OK ? st : qe_cl_run(e->cl, e->k_norm_add, 1, &global, &local, NULL);
}

qe_status qe_engine_run_act(qe_engine *e, cl_mem g, cl_mem u, int n_rows)
{
    cl_kernel ka = e->hp.ffn_act == QE_ACT_GELU_TANH ? e->k_gelu : e->k_silu;
    qe_status st = qe_cl_args(ka, 3, sizeof(cl_mem), &g, sizeof(cl_mem), &u, sizeof(int),
                              &e->hp.n_ff);
    size_t global[2] = {(size_t)e->hp.n_ff, (size_t)n_rows};
    return st != QE_OK ? st : qe_cl_run(e->cl, ka, 2, global, NULL, NULL);
}

/* Prefill's wo or down matmul (w on in), its product added to x: now, as
 * qe_engine_run_out_add does (accumulating into x), or with defer written
 * to e->res (e->res_pending), for the next norm_for_matmuls to add as it
 * norms x (rmsnorm_xh_add: the same sums). run_trunk defers where that next
 * norm fuses and there is no post-norm: a matmul that accumulates reads
 * x's values in its epilogue, all work-groups of a wave at once, and with
 * accumulation off (a probe) wo and down took 103.4 / 315.5 us a layer
 * instead of 132.0 / 344.8 (H200, pp512 B 8 of the synthetic
 * Llama-3.2-1B), while the norm's add reads and writes x once more.
 * QEVAL_MMA_DEFER=0 (read at engine open) adds at once everywhere. */
static qe_status out_add(qe_engine *e, const dev_weight *w, cl_mem in, int ld_in, int rows,
                         cl_mem post, int defer)
{
    if (!defer)
        return qe_engine_run_out_add(e, w, in, ld_in, rows, post, e->x, e->h);
    QE_ASSERT(e->res && !post && !e->res_pending);
    e->res_pending = 1;
    return qe_engine_run_matmul(e, w, in, 0, ld_in, rows, e->res, e->hp.dim, rows, rows, 0);
}

/* Prefill's SwiGLU and down projection: under mma, silu_mul_xh writes the
 * products straight into e->xh as f16 pairs, which the down matmul (its
 * input nominally g, which keeps the gate) takes as converted: the same
 * bits as silu_mul then mma_xh, without g's write and read. */
static qe_status run_ffn_out(qe_engine *e, const dev_layer *d, int rows, int defer)
{
    const int n_ff = e->hp.n_ff;
    qe_status st;
    if (e->opt.gemm != QE_GEMM_MMA || e->hp.ffn_act != QE_ACT_SILU) {
        st = qe_engine_run_act(e, e->g, e->u, rows);
        return st != QE_OK ? st : out_add(e, &d->w_down, e->g, n_ff, rows, d->ffn_post, defer);
    }
    int ldp = xh_pairs(n_ff), xo = xh_order(tile_fmt(&d->w_down));
    st = qe_cl_args(e->k_silu_xh, 6, sizeof(cl_mem), &e->g, sizeof(cl_mem), &e->u, sizeof(int),
                    &n_ff, sizeof(cl_mem), &e->xh, sizeof(int), &ldp, sizeof(int), &xo);
    size_t global[2] = {(size_t)ldp, (size_t)rows};
    if (st == QE_OK)
        st = qe_cl_run(e->cl, e->k_silu_xh, 2, global, NULL, NULL);
    if (st != QE_OK)
        return st;
    xh_share(e, 1);
    xh_hold(e, e->xh, e->g, 0, n_ff, rows, n_ff, xo, 1, 1);
    st = out_add(e, &d->w_down, e->g, n_ff, rows, d->ffn_post, defer);
    xh_share(e, 0);
    return st;
}

qe_status qe_engine_run_embed_scale(qe_engine *e, cl_mem x, int n_rows)
{
    if (e->hp.embd_scale == 1.0f)
        return QE_OK;
    cl_uint n = (cl_uint)n_rows * (cl_uint)e->hp.dim;
    size_t g = qe_engine_round_up(n, 64);
    qe_status st = qe_cl_args(e->k_scale, 3, sizeof(cl_mem), &x, sizeof(float), &e->hp.embd_scale,
                              sizeof(cl_uint), &n);
    return st != QE_OK ? st : qe_cl_run(e->cl, e->k_scale, 1, &g, NULL, NULL);
}

qe_status qe_engine_run_softcap(qe_engine *e, cl_mem logits, int n_rows)
{
    if (!(e->hp.final_softcap > 0))
        return QE_OK;
    float c = e->hp.final_softcap;
    int nv = e->hp.n_vocab;
    size_t g[2] = {(size_t)nv, (size_t)n_rows};
    qe_status st = qe_cl_args(e->k_softcap, 3, sizeof(cl_mem), &logits, sizeof(int), &nv,
                              sizeof(float), &c);
    return st != QE_OK ? st : qe_cl_run(e->cl, e->k_softcap, 2, g, NULL, NULL);
}

/* A layer's norm of x into h, which only the matmuls of ws (Q/K/V, or gate
 * and up) read, and xh_share(e, 1) for them; the caller ends the bracket.
 * Under mma in prefill, when all of ws want one xh order, rmsnorm_xh writes
 * the norm straight into e->xh as their f16 pairs (the same bits as rmsnorm
 * then mma_xh) and h is not written: pp512 B 8 on the H200 skipped 32 MB of
 * writes and reads and two launches a layer (norm_fuses says when). With a
 * deferred residual pending (out_add), rmsnorm_xh_add first adds it to x;
 * out_add defers only where this norm fuses. */
static int norm_fuses(const qe_engine *e, int rows, const dev_weight *const *ws, int n)
{
    const int xo = xh_order(tile_fmt(ws[0]));
    int fuse = tile_serves(e) && (size_t)rows <= (size_t)e->opt.n_seq * (size_t)e->opt.n_ctx;
    for (int i = 1; i < n; i++)
        fuse = fuse && xh_order(tile_fmt(ws[i])) == xo;
    return fuse;
}

static qe_status norm_for_matmuls(qe_engine *e, cl_mem w_norm, int rows,
                                  const dev_weight *const *ws, int n)
{
    const int dim = e->hp.dim, xo = xh_order(tile_fmt(ws[0]));
    const int fuse = norm_fuses(e, rows, ws, n);
    qe_status st;
    QE_ASSERT(fuse || !e->res_pending);
    if (!fuse) {
        st = qe_engine_run_norm(e, e->x, rows, rows, 0, w_norm, e->h, rows);
        xh_share(e, 1);
        return st;
    }
    int ldp = xh_pairs(dim);
    float eps = e->hp.rms_eps;
    const int add = e->res_pending;
    cl_kernel k = add ? e->k_norm_xh_add : e->k_norm_xh;
    e->res_pending = 0;
    if (add)
        st = qe_cl_args(k, 8, sizeof(cl_mem), &e->x, sizeof(cl_mem), &e->res, sizeof(cl_mem),
                        &w_norm, sizeof(int), &dim, sizeof(float), &eps, sizeof(cl_mem), &e->xh,
                        sizeof(int), &ldp, sizeof(int), &xo);
    else
        st = qe_cl_args(k, 7, sizeof(cl_mem), &e->x, sizeof(cl_mem), &w_norm, sizeof(int), &dim,
                        sizeof(float), &eps, sizeof(cl_mem), &e->xh, sizeof(int), &ldp,
                        sizeof(int), &xo);
    size_t global = (size_t)rows * (size_t)e->nw, local = (size_t)e->nw;
    if (st == QE_OK)
        st = qe_cl_run(e->cl, k, 1, &global, &local, NULL);
    xh_share(e, 1);
    xh_hold(e, e->xh, e->h, 0, dim, rows, dim, xo, 1, st == QE_OK);
    return st;
}

/* Prefill's feed-forward block: norm, gate and up, SwiGLU, down (added to
 * x). Under mma with SwiGLU, gate and up in one format and n_ff a multiple
 * of 32 (no padding pairs), mma_tile_glu computes gate, up and their SwiGLU
 * in one launch and writes the products as the down matmul's f16 pairs
 * into g's memory: the same bits as the two matmuls then silu_mul_xh, with
 * g and u never written (H200, pp512 B 8: a layer's gate, up and
 * silu_mul_xh launches become one, and g and u, 268 MB of f32, are neither
 * written nor read). Else gate and up, then run_ffn_out. */
static qe_status run_ffn(qe_engine *e, const dev_layer *d, int rows, int defer)
{
    const dev_weight *wg = &d->w_gate, *wu = &d->w_up, *const gu[] = {wg, wu};
    int dim = e->hp.dim, n_ff = e->hp.n_ff;
    qe_status st = norm_for_matmuls(e, d->ffn_norm, rows, gu, 2); /* gate and up read h */
    const int glu = tile_serves(e) && e->hp.ffn_act == QE_ACT_SILU &&
                    e->k_mma_glu[tile_fmt(wg)] && wu->fmt == wg->fmt && wu->wh == wg->wh &&
                    wu->row_bytes == wg->row_bytes && n_ff % 32 == 0;
    if (!glu) {
        if (st == QE_OK)
            st = qe_engine_run_matmul(e, wg, e->h, 0, dim, rows, e->g, n_ff, rows, rows, 0);
        if (st == QE_OK)
            st = qe_engine_run_matmul(e, wu, e->h, 0, dim, rows, e->u, n_ff, rows, rows, 0);
        xh_share(e, 0);
        return st == QE_OK ? run_ffn_out(e, d, rows, defer) : st;
    }
    int ldp = xh_pairs(dim), ldh = n_ff / 2, xo = xh_order(tile_fmt(&d->w_down));
    const dev_weight *ws[2] = {wg, wu};
    dev_weight views[2];
    if (st == QE_OK)
        st = qe_engine_wh_take(e, 2, ws, views);
    wg = ws[0];
    wu = ws[1];
    if (st == QE_OK)
        st = xh_ready(e, wg, e->h, 0, dim, rows);
    cl_kernel k = e->k_mma_glu[wg->fmt];
    if (st == QE_OK)
        st = qe_cl_args(k, 11, sizeof(cl_mem), &e->xh_src.buf, sizeof(int), &ldp, sizeof(int),
                        &rows, sizeof(cl_mem), &wg->buf, sizeof(cl_mem), &wu->buf,
                        sizeof(cl_ulong), &wg->row_bytes, sizeof(int), &dim, sizeof(int), &n_ff,
                        sizeof(cl_mem), &e->g, sizeof(int), &ldh, sizeof(int), &xo);
    if (st == QE_OK) /* gate's and up's rows both staged */
        st = run_tile_grid(e, k, 2 * (size_t)n_ff, rows);
    if (st == QE_OK)
        st = qe_engine_wh_done(e);
    xh_share(e, 0);
    if (st != QE_OK)
        return st;
    xh_share(e, 1); /* the down matmul's input, nominally g: its pairs, in g's memory */
    xh_hold(e, e->g, e->g, 0, n_ff, rows, n_ff, xo, 1, 1);
    st = out_add(e, &d->w_down, e->g, n_ff, rows, d->ffn_post, defer);
    xh_share(e, 0);
    return st;
}

/* The transformer and the final norm of the scored rows. */
qe_status qe_engine_run_trunk(qe_engine *e, int n_seq, int n_tok, int out_first)
{
    const qe_hparams *hp = &e->hp;
    const int rows = n_seq * n_tok, n_out = n_tok - out_first;
    cl_kernel ke = e->k_embed[e->tok_embd.fmt];
    e->res_pending = 0;
    qe_status st = qe_cl_args(ke, 5, sizeof(cl_mem), &e->tokens, sizeof(cl_mem), &e->tok_embd.buf,
                              sizeof(cl_ulong), &e->tok_embd.row_bytes, sizeof(int), &hp->dim,
                              sizeof(cl_mem), &e->x);
    size_t eg[2] = {(size_t)hp->dim, (size_t)rows};
    if (st == QE_OK)
        st = qe_cl_run(e->cl, ke, 2, eg, NULL, NULL);
    if (st == QE_OK)
        st = qe_engine_run_embed_scale(e, e->x, rows);
    for (int l = 0; st == QE_OK && l < hp->n_layers; l++) {
        const dev_layer *d = &e->layers[l];
        const dev_weight *const qkv[] = {&d->wq, &d->wk, &d->wv};
        const int axo = attention_xh_order(e, d);
        if ((st = norm_for_matmuls(e, d->attn_norm, rows, qkv, 3)) != QE_OK) /* Q, K and V read h */
            break;
        if ((st = run_qk(e, l, &d->wq, d->bq, d->q_norm, hp->n_heads, n_seq, n_tok, e->q,
                         e->q_dim, n_tok)) == QE_OK)
            st = run_kv(e, l, n_seq, n_tok);
        xh_share(e, 0);
        if (st != QE_OK || (st = run_attention(e, d, n_seq, n_tok, axo)) != QE_OK)
            break;
        if (axo >= 0) { /* wo's input: attention's pairs in e->xh, e->att unwritten */
            xh_share(e, 1);
            xh_hold(e, e->xh, e->att, 0, e->q_dim, rows, e->q_dim, axo, 1, 1);
        }
        /* the residual adds deferred to the next norm where it fuses (out_add);
           the last layer's down adds at once, for the final norm */
        const dev_weight *const gu[] = {&d->w_gate, &d->w_up};
        const int defer_o = e->res && !d->attn_post && norm_fuses(e, rows, gu, 2);
        int defer_d = 0;
        if (e->res && !d->ffn_post && l + 1 < hp->n_layers) {
            const dev_layer *n = &e->layers[l + 1];
            const dev_weight *const nqkv[] = {&n->wq, &n->wk, &n->wv};
            defer_d = norm_fuses(e, rows, nqkv, 3);
        }
        st = out_add(e, &d->wo, e->att, e->q_dim, rows, d->attn_post, defer_o);
        xh_share(e, 0);
        if (st != QE_OK || (st = run_ffn(e, d, rows, defer_d)) != QE_OK ||
            (st = qe_engine_wh_head_slice(e)) != QE_OK)
            break;
    }
    if (st == QE_OK)
        st = qe_engine_run_norm(e, e->x, n_out, n_tok, out_first, e->out_norm, e->hout, n_seq * n_out);
    return st;
}

/* LM head for output rows [row0, row0+n) into logits rows [0, n); with
 * stats = 1 also their statistics into stats rows [row0, row0+n). */
qe_status qe_engine_run_head(qe_engine *e, int row0, int n, int stats)
{
    const int dim = e->hp.dim, nv = e->hp.n_vocab;
    qe_status st = qe_engine_run_matmul(e, &e->output, e->hout, (cl_ulong)row0 * (cl_ulong)dim, dim, n,
                              e->logits, nv, n, n, 0);
    if (st == QE_OK)
        st = qe_engine_run_softcap(e, e->logits, n);
    if (st != QE_OK || !stats)
        return st;
    return qe_engine_run_stats(e, e->logits, n, e->targets, e->stats, row0, 1, NULL);
}

size_t qe_engine_stats_part_bytes(const qe_engine *e, int n, int parts)
{
    return (size_t)n * (size_t)parts * (size_t)(STATS_PART_HDR + 2 * e->opt.top_k) * sizeof(float);
}

int qe_engine_stats_parts(const qe_engine *e)
{
    int parts = 1;
    while (parts < STATS_PARTS_MAX && (int64_t)parts * 2 * e->rw * 4 <= e->hp.n_vocab)
        parts *= 2;
    return parts;
}

qe_status qe_engine_run_stats(qe_engine *e, cl_mem logits, int n, cl_mem targets, cl_mem stats,
                              int row0, int parts, cl_mem part)
{
    const int nv = e->hp.n_vocab;
    qe_status st = qe_cl_args(e->k_stats, 7, sizeof(cl_mem), &logits, sizeof(int), &nv,
                              sizeof(cl_mem), &targets, sizeof(cl_mem), &stats, sizeof(int), &row0,
                              sizeof(int), &parts, sizeof(cl_mem), &part);
    size_t global[2] = {(size_t)parts * (size_t)e->rw, (size_t)n}, local[2] = {(size_t)e->rw, 1};
    if (st == QE_OK)
        st = qe_cl_run(e->cl, e->k_stats, 2, global, local, NULL);
    if (st != QE_OK || parts == 1)
        return st;
    st = qe_cl_args(e->k_stats_merge, 7, sizeof(cl_mem), &part, sizeof(int), &parts,
                    sizeof(cl_mem), &logits, sizeof(int), &nv, sizeof(cl_mem), &targets,
                    sizeof(cl_mem), &stats, sizeof(int), &row0);
    size_t mg = (size_t)n * STATS_PARTS_MAX, ml = STATS_PARTS_MAX;
    return st ? st : qe_cl_run(e->cl, e->k_stats_merge, 1, &mg, &ml, NULL);
}

/* ---- public calls ---- */

qe_status qe_engine_check_prefill(const qe_engine *e, int n_seq, int n_tok, const int32_t *tokens,
                                  int out_first, const int32_t *targets)
{
    if (n_seq < 1 || n_seq > e->opt.n_seq)
        return qe_fail(QE_EINVAL, "engine: n_seq %d is outside 1 .. %d", n_seq, e->opt.n_seq);
    if (n_tok < 1 || n_tok > e->opt.n_ctx)
        return qe_fail(QE_EINVAL, "engine: n_tok %d is outside 1 .. n_ctx %d", n_tok, e->opt.n_ctx);
    if (out_first < 0 || out_first >= n_tok)
        return qe_fail(QE_EINVAL, "engine: out_first %d is outside 0 .. %d", out_first, n_tok - 1);
    const int nv = e->hp.n_vocab, n_out = n_tok - out_first, out_rows = n_seq * n_out;
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < n_tok; p++) {
            int32_t t = tokens[(size_t)s * n_tok + p];
            if (t < 0 || t >= nv)
                return qe_fail(QE_EINVAL, "engine: sequence %d position %d: token %d is outside 0 .. %d",
                               s, p, (int)t, nv - 1);
        }
    for (int r = 0; targets && r < out_rows; r++)
        if (targets[r] < -1 || targets[r] >= nv)
            return qe_fail(QE_EINVAL, "engine: sequence %d position %d: target %d is outside -1 .. %d",
                           r / n_out, out_first + r % n_out, (int)targets[r], nv - 1);
    return QE_OK;
}

qe_status qe_engine_begin(qe_engine *e, int n_seq, int n_tok, const int32_t *tokens, int out_first,
                          const int32_t *targets, int with_targets)
{
    const int out_rows = n_seq * (n_tok - out_first);
    e->ran = 0;
    qe_status st = qe_cl_write(e->cl, e->tokens, 0, (size_t)n_seq * n_tok * sizeof(int32_t), tokens, 1);
    if (st == QE_OK && with_targets) {
        if (targets)
            memcpy(e->htmp, targets, (size_t)out_rows * sizeof(int32_t));
        else
            for (int r = 0; r < out_rows; r++)
                e->htmp[r] = -1;
        st = qe_cl_write(e->cl, e->targets, 0, (size_t)out_rows * sizeof(int32_t), e->htmp, 1);
    }
    qe_engine_wh_head_early(e, with_targets);
    if (st == QE_OK)
        st = qe_engine_run_trunk(e, n_seq, n_tok, out_first);
    e->last_n_seq = n_seq;
    e->last_n_tok = n_tok;
    e->last_out_first = out_first;
    return st;
}

void qe_engine_unpack(const qe_engine *e, int n_rows, qe_engine_out *out)
{
    const int k = e->opt.top_k;
    for (int r = 0; out && r < n_rows; r++) {
        const float *row = e->hstats + (size_t)r * e->stride;
        if (out->lse)
            out->lse[r] = row[0];
        if (out->target_logp)
            out->target_logp[r] = row[1];
        if (out->argmax)
            memcpy(&out->argmax[r], &row[2], sizeof(int32_t));
        if (out->topk_id && k)
            memcpy(out->topk_id + (size_t)r * k, row + STATS_HDR, (size_t)k * sizeof(int32_t));
        if (out->topk_logp && k)
            memcpy(out->topk_logp + (size_t)r * k, row + STATS_HDR + k, (size_t)k * sizeof(float));
    }
}

qe_status qe_engine_prefill(qe_engine *e, int n_seq, int n_tok, const int32_t *tokens,
                            int out_first, const int32_t *targets, qe_engine_out *out)
{
    qe_status st = qe_engine_check_prefill(e, n_seq, n_tok, tokens, out_first, targets);
    if (st != QE_OK)
        return st;
    const int out_rows = n_seq * (n_tok - out_first);
    st = qe_engine_begin(e, n_seq, n_tok, tokens, out_first, targets, out != NULL);
    /* As few passes as head_rows allows, of equal size rounded up to whole
       row tiles: 2,056 rows in passes of at most 1,024 as 768, 768, 520
       rather than 1,024, 1,024, 8, whose last pass costs a whole row tile
       and a latency-bound logit_stats of 8 work-groups (0.35 ms of a 30 ms
       ppl512 B 8 on the H200). The statistics do not depend on it. */
    /* With the head reduced as it runs (lse_of), a row takes 16 bytes of
       e->logits for each 128 logits instead of 512: 32 times the rows a
       pass (ppl512 B 8's 2,056 in one) */
    const int fused = e->k_mma_lse != NULL;
    const int hr = fused ? (int)(qe_cl_size(e->logits) / ((size_t)lse_tiles(e) * 16))
                         : e->opt.head_rows,
              passes = (out_rows + hr - 1) / hr;
    const int tile = e->opt.gemm == QE_GEMM_MMA ? e->mt_shape.rows : MM_TILE;
    int per = (out_rows + passes - 1) / passes;
    per = per % tile && (per / tile + 1) * tile <= hr ? (per / tile + 1) * tile : per;
    for (int r0 = 0; st == QE_OK && out && r0 < out_rows; r0 += per) {
        const int n = out_rows - r0 < per ? out_rows - r0 : per;
        st = fused ? run_head_lse(e, r0, n) : qe_engine_run_head(e, r0, n, 1);
    }
    if (st == QE_OK && out)
        st = qe_cl_read(e->cl, e->stats, 0, (size_t)out_rows * e->stride * sizeof(float), e->hstats);
    else if (st == QE_OK)
        st = qe_cl_finish(e->cl);
    if (st != QE_OK)
        return qe_fail_prefix(st, "engine: prefill");
    e->ran = 1;
    qe_engine_unpack(e, out_rows, out);
    return QE_OK;
}

qe_status qe_engine_head(qe_engine *e, int row0, int n_rows)
{
    if (!e->ran)
        return qe_fail(QE_EINVAL, "engine: no prefill has run");
    const int out_rows = e->last_n_seq * (e->last_n_tok - e->last_out_first);
    if (row0 < 0 || n_rows < 1 || n_rows > e->opt.head_rows || row0 > out_rows - n_rows)
        return qe_fail(QE_EINVAL, "engine: head rows %d .. %d are outside 0 .. %d (at most %d at once)",
                       row0, row0 + n_rows - 1, out_rows - 1, e->opt.head_rows);
    return qe_engine_run_head(e, row0, n_rows, 0);
}

qe_status qe_engine_logits(qe_engine *e, int seq, int pos, float *dst)
{
    if (!e->ran)
        return qe_fail(QE_EINVAL, "engine: no prefill has run");
    if (seq < 0 || seq >= e->last_n_seq || pos < e->last_out_first || pos >= e->last_n_tok)
        return qe_fail(QE_EINVAL,
                       "engine: sequence %d position %d is outside the last prefill (%d sequences, "
                       "positions %d .. %d)",
                       seq, pos, e->last_n_seq, e->last_out_first, e->last_n_tok - 1);
    const int n_out = e->last_n_tok - e->last_out_first;
    qe_status st = qe_engine_run_head(e, seq * n_out + pos - e->last_out_first, 1, 0);
    if (st == QE_OK)
        st = qe_cl_read(e->cl, e->logits, 0, (size_t)e->hp.n_vocab * sizeof(float), dst);
    return st;
}

qe_status qe_engine_poison(qe_engine *e)
{
    const float nan = NAN;
    qe_status st = QE_OK;
    cl_mem bufs[] = {e->x, e->h, e->res, e->q, e->att, e->g, e->u, e->hout, e->logits, e->stats, e->kld};
    for (size_t i = 0; st == QE_OK && i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) /* res: under mma only */
            st = qe_cl_fill(e->cl, bufs[i], &nan, sizeof nan, 0, qe_cl_size(bufs[i]));
    if (st == QE_OK && e->kvs)
        st = qe_cl_fill(e->cl, e->kvs, &nan, sizeof nan, 0, qe_cl_size(e->kvs));
    /* All-ones bytes decode to NaN in every cache format (f32/f16 NaN, a NaN
     * block scale or TurboQuant norm), and fit any row size. */
    const unsigned char ff = 0xff;
    for (int l = 0; st == QE_OK && l < e->hp.n_layers; l++) {
        st = qe_cl_fill(e->cl, e->layers[l].kc, &ff, 1, 0, qe_cl_size(e->layers[l].kc));
        if (st == QE_OK)
            st = qe_cl_fill(e->cl, e->layers[l].vc, &ff, 1, 0, qe_cl_size(e->layers[l].vc));
    }
    if (st == QE_OK)
        st = qe_cl_finish(e->cl);
    return st;
}
