/* engine_internal.h - what the engine's source files (lib/engine*.c) share.
 * Private to the module: nothing outside lib/engine*.c includes it, and the
 * qe_engine_* helpers declared here are not part of the library's API (they
 * carry the module prefix because the static library exports them).
 *
 * Contract for other engine files (e.g. a decode path): the struct layouts
 * below are stable; new fields are appended at the end of a struct. Buffers
 * listed here are owned by qe_engine_open/qe_engine_close; a file that adds
 * buffers of its own frees them itself. All launch helpers only enqueue work
 * on the engine's in-order queue (no wait) and return QE_ECL on an OpenCL
 * failure.
 *
 * Threading: as engine.h (one thread at a time per engine and per qe_cl).
 */
#ifndef QE_ENGINE_INTERNAL_H
#define QE_ENGINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cl.h"
#include "engine.h"
#include "model.h"
#include "status.h"

/* Device storage formats of weight matrices (the values of QE_WT in
 * kernels/weights.cl). Q8_0 and Q4_0 are reserved for the quantized matmul
 * (branch formats); engine_wfmt_of in engine.c decides which one a tensor
 * gets. */
enum engine_wfmt { WF_F32 = 0, WF_F16 = 1, WF_Q8_0 = 2, WF_Q4_0 = 3, WF_COUNT };
/* kernels/xh.cl's orders of a prefill matmul's f16 input under mma, one per
 * weight format (f32 / f16 XH_NAT, Q8_0 XH_K8, Q4_0 XH_K4: engine.c
 * xh_order): the same numbers as xh.cl's XH_* */
enum xh_order { XH_NAT = 0, XH_K4 = 1, XH_K8 = 2 };
/* How a build of mma_skinny reads X (kernels/mma.cl): branching on the row;
 * without branches (MS_XFREE, only with ms_xal: calls of more than
 * msk_xfree_rows rows, f16 weights at any); one row staged in local memory
 * (MS_X1, only with ms_xal, Q8_0 / Q4_0 weights: calls of one row). */
enum msk_xread { MSK_XBRANCH, MSK_XFREE, MSK_X1, MSK_XREADS };

#define MM_TILE 64      /* matmul.cl: rows and outputs per work-group */
#define MM_WI 16        /* matmul.cl: work-items per dimension */
#define MMA_TILE 128    /* mma.cl mma_tile: outputs per work-group (MT_BN) */
#define MMA_WI 256      /* mma.cl: work-items per work-group (8 warps) */
#define MSK_MULTI 3     /* mma.cl decode kernels: weights one launch may multiply */
#define ATT_BQ 32       /* attention.cl: queries per work-group */
#define ATT_MMA_BQ 64   /* attn_mma.cl: queries per work-group (4 warps) */
#define HEAD_BYTES (64u << 20) /* default logits buffer budget */
#define HEAD_BYTES_MMA ((uint64_t)512 << 20) /* the same under mma (engine_open says why) */
#define STATS_HDR 4     /* logits.cl: floats before the top-k ids in a stats row */
#define STATS_PART_HDR 3 /* logits.cl LS_PART: the same in a split row's part record */
#define KLD_STRIDE 4    /* kld.cl: floats per row of a comparison (kld, dp, same_top, pad) */
#define WH_SLOTS 4      /* engine_wh.c: f16 weight copies in the ring (a call reads 2 at most) */
#define WH_RESIDENT_DIV 8 /* engine_wh.c: copies of all layers kept if <= 1/8 of device memory */

/* A work-group shape of mma.cl's mma_skinny (engine.c skinny_shape_of). */
typedef struct skinny_shape {
    int mt, nb, u; /* MS_MT 16-row tiles, MS_NB 8-output blocks, MS_U chunks in flight */
} skinny_shape;

/* A work-group shape of mma.cl's mma_wide (engine.c wide_shape_of). */
typedef struct wide_shape {
    int nb, u;  /* MW_NB 8-output blocks per warp, MW_U chunks per stage */
    int split;  /* work-groups from which a call uses split 1 (0: half the compute units) */
} wide_shape;

/* mma.cl's mma_tile build (engine.c tile_shape_of). */
typedef struct tile_shape {
    int rows;   /* MT_BM rows per work-group (64 or 128) */
    int stages; /* MT_S K slices in local memory */
    int wn;     /* MT_WN outputs per warp (32 or 64) */
} tile_shape;

typedef struct dev_weight {
    cl_mem buf;          /* ne1 rows of row_bytes, format fmt */
    int fmt;             /* enum engine_wfmt */
    int ne0, ne1;        /* row length (input dim), rows (output dim) */
    cl_ulong row_bytes;
    int owned;           /* 0 when buf aliases another weight (tied output) */
    int wh;              /* mma_tile reads it as an f16 copy (engine_wh.c); set on
                            layer weights of the wh_fmts formats */
    int wh_slot;         /* with resident copies, its own slot in e->wh */
} dev_weight;

typedef struct dev_layer {
    cl_mem attn_norm, ffn_norm;  /* [dim] f32 */
    dev_weight wq, wk, wv;       /* {dim, n_heads*hd}, {dim, n_kv*hd} x 2 */
    dev_weight wo;               /* {n_heads*hd, dim} */
    dev_weight w_gate, w_up;     /* {dim, n_ff} */
    dev_weight w_down;           /* {n_ff, dim} */
    cl_mem kc, vc;               /* K/V cache [n_seq*n_ctx] rows of kv_row_bytes[0] / [1]
                                    bytes: n_kv*hd values in format opt.kv_k / kv_v */
    /* Architecture switches (model.h); NULL when the model has no such tensor. */
    cl_mem bq, bk, bv;           /* [q_dim], [kv_dim] x 2 f32 (attn_bias) */
    cl_mem q_norm, k_norm;       /* [hd] f32 (qk_norm) */
    cl_mem attn_post, ffn_post;  /* [dim] f32 (post_norms) */
} dev_layer;

struct qe_engine {
    qe_cl *cl;
    const qe_model *model;
    qe_hparams hp;
    qe_engine_opts opt;
    int q_dim, kv_dim;   /* n_heads*hd, n_kv*hd */
    int nw;              /* work-items per row of norm.cl */
    int rw;              /* work-items per row of logits.cl */
    int bkv;             /* attention.cl keys per tile */
    int stride;          /* floats per stats row: 4 + 2*top_k */

    cl_program prog_common, prog_wt[WF_COUNT];
    cl_kernel k_norm, k_rope, k_attn, k_silu, k_stats;
    cl_kernel k_stats_merge; /* logits.cl's logit_merge, for rows split into parts */
    cl_kernel k_qk_prep, k_norm_add, k_gelu, k_scale, k_softcap; /* arch.cl */
    cl_kernel k_embed[WF_COUNT], k_matmul[WF_COUNT];
    cl_kernel k_wt_f16[WF_COUNT]; /* wh.cl, in prog_wt[fmt] (Q8_0 / Q4_0 only) */
    /* kernels/mma.cl (opt.gemm == QE_GEMM_MMA): the prefill tile kernel and
       the decode kernels that every decode call uses (mm_skinny set) */
    cl_program prog_mma[WF_COUNT];
    cl_kernel k_mma_tile[WF_COUNT];
    /* mma_tile_glu (-DMT_GLU=1): prefill's gate, up and SwiGLU in one launch;
       built for SwiGLU models only (engine.c run_ffn) */
    cl_program prog_glu[WF_COUNT];
    cl_kernel k_mma_glu[WF_COUNT];
    /* mma_tile_pair (-DMT_PAIR=1): prefill's K and V matmuls in one launch
       (engine.c run_kv) */
    cl_program prog_pair[WF_COUNT];
    cl_kernel k_mma_pair[WF_COUNT];
    /* mma_tile_lse (-DMT_LSE=1, f16 wgmma build) and logits.cl's
       logit_tiles: prefill's LM head reduced to statistics in its epilogue,
       no logits stored (engine.c lse_of says when) */
    cl_program prog_lse;
    cl_kernel k_mma_lse, k_tiles;
    /* mma_tile and mma_tile_pair with RoPE in the epilogue (-DMT_ROPE=1,
       f16 wgmma build): prefill's Q, and K with V (engine.c rope_fuses) */
    cl_program prog_rope, prog_pair_rope;
    cl_kernel k_mma_rope, k_mma_pair_rope;
    int pair_kv; /* k_mma_pair_rope writes K and V into their caches (MT_KV16 / MT_KVTQ:
                    kv16_of, kvtq_of), decided once where it is built */
    /* mma_skinny, decode calls of up to 16 rows, builds [shape][enum
       msk_xread]: shape [0] the default, [1] a second one for calls that
       [0] would give fewer than msk_few work-groups (0: no second build);
       then how X is read (engine.c run_skinny picks per call) */
    skinny_shape msk_shape[2];         /* resolved at open (env overrides) */
    int msk_few, msk_xfree_rows;
    /* the MS_X1 build's second shape per weight format and its threshold
       (0: none), in place of msk_shape[1] / msk_few (engine.c x1_few_of) */
    skinny_shape msk_x1_few[WF_COUNT];
    int msk_x1_few_n[WF_COUNT];
    /* the MS_X1 build makes its row itself (a decode step's norms and
       SwiGLU: qe_engine_run_norm_matmul_n, qe_engine_run_ffn_down) and
       ends Q/K/V with RoPE and the f16 cache writes (qe_engine_run_qkv);
       0: separate launches (QEVAL_MMA_PRO=0, for A/B runs of one build) */
    int msk_pro;
    /* the MS_X1 build's launches: at most this many work-groups along the
       output blocks, each then taking several blocks in turn (0: one per
       block; engine.c x1_groups_of) */
    size_t msk_x1_groups;
    int msk_x1_few_xb[WF_COUNT]; /* MS_XB of the one-row build's second shape */
    cl_program prog_msk[2][MSK_XREADS][WF_COUNT];
    cl_kernel k_msk[2][MSK_XREADS][WF_COUNT];
    /* mma_wide, for decode calls of more than 16 rows (same bits as
       mma_skinny): builds [0] split 1, [1] split 8 with its partial sums */
    wide_shape mw_shape;               /* resolved at open (env overrides) */
    tile_shape mt_shape;               /* mma_tile's, resolved at open (env overrides) */
    cl_program prog_mw[2][WF_COUNT];
    cl_kernel k_mw[2][WF_COUNT], k_mw_sum[WF_COUNT];
    cl_mem mw_part;      /* grown on demand: 8 chains x rows x outputs f32 */
    int mm_skinny;       /* set by the decoder around its calls (engine_decode.c) */

    dev_weight tok_embd, output;
    cl_mem out_norm;     /* [dim] f32 */
    cl_mem rope_cs;      /* [n_ctx][n_rot/2] (cos, sin) f32 */
    cl_mem rope_cs_swa;  /* the same for sliding-window layers (their own base and
                            position scale); NULL when the model has none */
    dev_layer *layers;   /* [n_layers] */

    cl_mem tokens;       /* [n_seq*n_ctx] int */
    cl_mem targets;      /* [n_seq*n_ctx] int */
    cl_mem x, h;         /* [n_seq*n_ctx][dim] */
    cl_mem res;          /* [n_seq*n_ctx][dim] under mma: a deferred residual (engine.c
                            out_add), NULL otherwise */
    int res_pending;     /* res holds a product the next norm adds to x */
    cl_mem q, att;       /* [n_seq*n_ctx][q_dim] */
    cl_mem g, u;         /* [n_seq*n_ctx][n_ff] */
    cl_mem hout;         /* [n_seq*n_ctx][dim] final-normed scored rows */
    cl_mem logits;       /* [head_rows][n_vocab] */
    cl_mem stats;        /* [n_seq*n_ctx][stride] */

    float *hstats;       /* host copy of stats, [n_seq*n_ctx][stride] */
    int32_t *htmp;       /* host scratch for targets, [n_seq*n_ctx] */

    int ran;             /* a prefill completed: the fields below describe it */
    int last_n_seq, last_n_tok, last_out_first;

    /* ---- KV-cache formats (engine_kv.c) ---- */
    size_t kv_row_bytes[2];  /* bytes of one cache row: [0] K (opt.kv_k), [1] V (opt.kv_v) */
    cl_program prog_kv[2];   /* kv.cl built for the K / V format; NULL when f32 */
    cl_kernel k_store[2];    /* kv_store of prog_kv[i] */
    int kv_store_v[2];       /* head vectors its TurboQuant work-groups may take (build_kv) */
    int kv_store_n[2];       /* work-items a TurboQuant head vector (build_kv) */
    cl_mem kvs;              /* [n_seq*n_ctx][kv_dim] f32 staging of K/V rows before they are
                                encoded; NULL when both formats are f32 (matmul writes the
                                cache directly) */
    cl_mem kvs_v;            /* the same for V beside K's when both are staged (run_kv), else NULL */

    /* ---- paired evaluation (engine_pair.c) ---- */
    cl_kernel k_kld;         /* kld.cl's kld_rows (in prog_common) */
    cl_mem kld;              /* [n_seq*n_ctx][KLD_STRIDE] comparison with a base, per row */
    float *hkld;             /* host copy of kld, [n_seq*n_ctx][KLD_STRIDE] */

    /* ---- tensor-core prefill attention (kernels/attn_mma.cl) ---- */
    cl_program prog_attn_mma; /* built under QE_GEMM_MMA when head_dim is a multiple of 16 up
                                 to 128; else NULL and attention.cl serves prefill */
    cl_kernel k_attn_mma;
    /* Where a cache is not f16 (engine.c build_common, run_attention): attn_mma built for
       f16 caches (prog_attn16, k_attn16), which then reads the prefill's
       keys and values as f16 rows k16 / v16 ([n_seq*n_ctx][kv_dim] halves)
       that prog_attn_mma's attn_kv_f16 (k_kv16) decodes once a layer;
       NULL where caches are f16 or under QEVAL_MMA_KV16=0 */
    cl_program prog_attn16;
    cl_kernel k_attn16, k_kv16;
    cl_mem k16, v16;

    /* ---- mma_tile's input (kernels/mma.cl mma_xh), under QE_GEMM_MMA ---- */
    cl_kernel k_mma_xh[WF_COUNT]; /* in prog_mma[fmt], beside mma_tile */
    cl_mem xh;                    /* [n_seq*n_ctx][xh_ldp] f16 pairs of a matmul's X */
    int xh_ldp;                   /* pairs per row: xh_pairs(the widest input) */
    /* Which input xh holds: run_tile skips mma_xh for the same input while
       xh_keep is set (engine.c xh_share; prefill's Q/K/V, gate/up, down) */
    struct {
        cl_mem x;
        cl_ulong off;
        int ldx, n_rows, K, xo, only, valid; /* xo: enum xh_order; only: x unwritten */
        cl_mem buf; /* where the pairs are: e->xh, or g's memory (mma_tile_glu) */
    } xh_src;
    int xh_keep;
    cl_kernel k_silu_xh;          /* ffn.cl silu_mul_xh: SwiGLU straight into xh */
    cl_kernel k_norm_xh;          /* norm.cl rmsnorm_xh: a layer's norm straight into xh */
    cl_kernel k_norm_xh_add;      /* norm.cl rmsnorm_xh_add: x += res, then rmsnorm_xh */
    /* Prefill matmuls of weights in these formats (a mask of 1 << enum
       engine_wfmt) read f16 copies made by wh.cl's wt_f16 on the side queue
       into a ring of slots, each the size of the largest such weight
       (engine_wh.c) */
    unsigned wh_fmts;
    struct wh_slot {
        cl_mem buf;          /* NULL where no weight is copied */
        const dev_weight *w; /* whose copy it holds or is making; NULL none */
        cl_event copied;     /* side queue: that copy done */
        cl_event read;       /* main queue: the last matmul that read it done */
        int taken;           /* read by the call being enqueued */
        uint64_t used;       /* wh_clock when last read: the oldest is reused first */
    } *wh;                   /* [n_wh]: WH_SLOTS in a ring, or one a weight (wh_resident) */
    int n_wh;
    int wh_resident;         /* each copy made once, by the first prefill, and kept */
    uint64_t wh_clock;
    /* The LM head's f16 copy (engine_wh.c), where prefill's head reads one
       (head_wh: its format is a wh_fmts one and the copy fits): made by the
       first prefill that runs the head, a slice of rows after each layer on
       the side queue, and kept */
    int head_wh;
    int head_fmt;            /* the format that head matmul reads (F16 under head_wh) */
    struct wh_head {
        struct wh_slot s;    /* the copy, as a ring slot's (copied: its last slice done) */
        int rows;            /* rows enqueued so far (ne1: all) */
        int early;           /* this prefill will run the head: slices after each layer */
    } whh;
    /* the weight formats (mask of 1 << enum engine_wfmt) whose mma_tile
       builds run on wgmma (kernels/mma.cl MT_WG, built by
       qe_cl_build_wgmma) where lib/cl's probe says it works (engine.c
       tile_wg_of) */
    unsigned mt_wg;

    /* every matmul input width is a multiple of 4: mma_skinny / mma_wide are
       built with -DMS_XAL (X read as aligned float4) and refuse other inputs */
    int ms_xal;
};

/* ---- helpers shared by the engine's files (engine.c defines them) ---- */

/* n rounded up to a multiple of m (m > 0). */
size_t qe_engine_round_up(size_t n, size_t m);
/* kernels/wh.cl's wt_f16: rows row0 .. row0 + n_rows - 1 of Q8_0 / Q4_0
   weight w as f16 rows into the same rows of out (K x N halves) on queue
   `queue` (enum qe_cl_queue) after event `after` (NULL: none), *done its
   event (done NULL: none wanted); engine_wh.c's copies */
qe_status qe_engine_run_wt_f16(qe_engine *e, const dev_weight *w, cl_mem out, int row0, int n_rows,
                               int queue, cl_event after, cl_event *done);

/* ---- f16 copies of Q8_0 / Q4_0 weights for mma_tile (engine_wh.c) ---- */

/* Marks the layer weights whose prefill matmuls read an f16 copy (wh) and
   allocates the slots: one a weight where all copies fit in 1 /
   WH_RESIDENT_DIV of the device's memory (and QEVAL_MMA_WH_RESIDENT is not
   0), else a ring of WH_SLOTS. */
qe_status qe_engine_wh_open(qe_engine *e);
void qe_engine_wh_close(qe_engine *e); /* events and buffers; safe twice */
/* Before one mma_tile launch reading the n (1 or 2) weights w: each w[j]
   marked wh is replaced by view[j], its f16 copy (made now on the side
   queue if no slot holds it), and the main queue waits for those copies. */
qe_status qe_engine_wh_take(qe_engine *e, int n, const dev_weight **w, dev_weight *view);
/* After that launch: the last reader of the ring slots it read is it (a
   copy into a resident slot or the head's is never overwritten: wh_take
   waits for it once and keeps no readers). A no-op when the call read no
   ring slot. */
qe_status qe_engine_wh_done(qe_engine *e);
/* The LM head's copy (head_wh), made once: a prefill says whether it will
   run the head (whh.early); qe_engine_wh_head_slice, after each layer of a
   prefill with whh.early, enqueues the next slice of rows not yet copied;
   wh_take enqueues whatever is left when the head's matmul takes the copy.
   A no-op without head_wh or once the copy is whole. */
void qe_engine_wh_head_early(qe_engine *e, int early);
qe_status qe_engine_wh_head_slice(qe_engine *e);

/* Whether the environment knob `name` is "0" (turned off; engine knobs are
   read when the engine opens). */
int qe_engine_env_off(const char *name);

/* Allocate a device read-write buffer of rows x width elements of elem bytes
 * into *out; QE_ERANGE when the size overflows, the message naming what. */
qe_status qe_engine_alloc_act(qe_engine *e, size_t rows, size_t width, size_t elem, cl_mem *out,
                              const char *what);

/* Matmul: for r in [0, n_rows), output row (r / y_seq) * y_seq_stride +
 * r % y_seq of y (row stride ldy floats) is set to (accumulate = 0) or
 * incremented by (accumulate = 1) x[x_off + r*ldx .. + w->ne0) W^T, W being
 * w's [ne1][ne0] matrix. x_off counts floats. */
qe_status qe_engine_run_matmul(qe_engine *e, const dev_weight *w, cl_mem x, cl_ulong x_off, int ldx,
                               int n_rows, cl_mem y, int ldy, int y_seq, int y_seq_stride,
                               int accumulate);

/* y[i] = x W_i^T for the n weights w[i] (same input width ne0), dense rows
 * of x (row stride ldx) and y[i] (ldy[i]), not accumulating: one launch of
 * mma_skinny or mma_wide in a decode call when the weights share a format and n <=
 * MSK_MULTI (a layer's Q, K, V; gate and up), else one matmul each. The
 * results are those of n qe_engine_run_matmul calls. */
qe_status qe_engine_run_matmul_n(qe_engine *e, int n, const dev_weight *const *w, cl_mem x, int ldx,
                                 int n_rows, const cl_mem *y, const int *ldy);

/* A decode call's RMSNorm of x (n_rows rows of dim; weights nw) and the
 * matmuls of the result (qe_engine_run_matmul_n's): one launch where
 * mma_skinny's one-row build serves them, which normalises its row itself
 * (kernels/mma.cl MS_XP_NORM: the same bits), else the norm into h [n_rows]
 * [dim], then the matmuls. */
qe_status qe_engine_run_norm_matmul_n(qe_engine *e, cl_mem x, cl_mem nw, cl_mem h, int n,
                                      const dev_weight *const *w, int n_rows, const cl_mem *y,
                                      const int *ldy);

/* A decode call's first part of layer l: RMSNorm of x, the Q/K/V matmuls
 * into y (q, kt, vt; qe_engine_run_norm_matmul_n's), and where mma_skinny's
 * one-row build serves them (Q8_0 / Q4_0, one row, no Q/K/V bias or Q/K
 * norm, RoPE in pairs) what comes next, in its epilogue: RoPE of q and kt
 * at rpos[0] (*done gets QE_QKV_ROPE) and, with f16 K and V caches, kt and
 * vt into l's cache rows rslot[0] n_ctx + rpos[0] (QE_QKV_KV). The same
 * bits as rope_rows and kv_store; the caller runs what *done lacks. */
enum { QE_QKV_ROPE = 1, QE_QKV_KV = 2 };
qe_status qe_engine_run_qkv(qe_engine *e, const dev_layer *l, cl_mem x, cl_mem h, int n_rows,
                            const cl_mem y[3], const int ldy[3], cl_mem rslot, cl_mem rpos,
                            int *done);

/* A decode call's feed-forward tail: g = act(g) * u (qe_engine_run_act),
 * then x += w_down(g) (qe_engine_run_out_add, post norm post, scratch h).
 * One launch where mma_skinny's one-row build serves it (SiLU, no post
 * norm; kernels/mma.cl MS_XP_SILU: the same bits; g is then left as it
 * was). */
qe_status qe_engine_run_ffn_down(qe_engine *e, const dev_weight *w_down, cl_mem g, cl_mem u,
                                 int n_rows, cl_mem post, cl_mem x, cl_mem h);

/* RMSNorm of n_rows rows of dim floats: input row i is
 * (i / in_seq) * in_seq_stride + in_off + i % in_seq of x, output row i of y
 * (dense); w: [dim] f32 weights. */
qe_status qe_engine_run_norm(qe_engine *e, cl_mem x, int in_seq, int in_seq_stride, int in_off,
                             cl_mem w, cl_mem y, int n_rows);

/* RoPE in place on buf (row stride ld floats, n_heads heads of head_dim):
 * rows s*seq_stride + p for s < n_seq, p < n_tok, rotated for position p
 * with layer's table (qe_model_layer_rope). */
qe_status qe_engine_run_rope(qe_engine *e, int layer, cl_mem buf, int ld, int n_heads, int n_seq,
                             int n_tok, int seq_stride);

/* The local size of a launch over (pairs, heads, rows), rope's and the
 * decoder's rope_rows: one row's pairs of as many heads as make up to 256
 * work-items (a power-of-2 divisor of global[1]), filled into local; NULL
 * (the runtime's choice) when one head's pairs are more than that. */
const size_t *qe_engine_head_local(const qe_engine *e, const size_t global[3], size_t local[3]);

/* Causal attention for n_seq sequences of n_tok positions from position 0:
 * e->q [n_seq*n_tok][q_dim] against d's K/V cache rows s*n_ctx + p, into
 * e->att [n_seq*n_tok][q_dim]; scale hp.attn_scale, and the sliding window
 * when d (one of e->layers) is a local layer. attn_mma.cl when the engine
 * built it (k_attn_mma), else attention.cl. */
qe_status qe_engine_run_attention(qe_engine *e, const dev_layer *d, int n_seq, int n_tok);

/* ---- architecture switches (model.h), each a no-op for models without it ---- */

/* Bias (attn_bias) and per-head RMSNorm (qk_norm) of the n_heads heads of
 * rows s*seq_stride + p (s < n_seq, p < n_tok) of buf (row stride ld floats),
 * before RoPE; bias / norm NULL skip that part (both NULL: no launch). */
qe_status qe_engine_run_qk_prep(qe_engine *e, cl_mem buf, int ld, int n_heads, int n_seq,
                                int n_tok, int seq_stride, cl_mem bias, cl_mem norm);
/* x += w_out(in) over n_rows rows (in: row stride ld_in): accumulated by the
 * matmul, or with a post norm (post non-NULL) computed into h [n_rows][dim]
 * and added normalised (rmsnorm_add). */
qe_status qe_engine_run_out_add(qe_engine *e, const dev_weight *w_out, cl_mem in, int ld_in,
                                int n_rows, cl_mem post, cl_mem x, cl_mem h);
/* g = act(g) * u over n_rows rows of n_ff: silu or GELU (hp.ffn_act). */
qe_status qe_engine_run_act(qe_engine *e, cl_mem g, cl_mem u, int n_rows);
/* x *= hp.embd_scale over n_rows rows of dim (no launch when it is 1). */
qe_status qe_engine_run_embed_scale(qe_engine *e, cl_mem x, int n_rows);
/* logits = c tanh(logits / c) over n_rows rows of n_vocab, c = hp.final_softcap
 * (no launch when 0). */
qe_status qe_engine_run_softcap(qe_engine *e, cl_mem logits, int n_rows);

/* The whole transformer for tokens already in e->tokens, then the final norm
 * of positions >= out_first into e->hout (row s*(n_tok-out_first) + p-out_first). */
qe_status qe_engine_run_trunk(qe_engine *e, int n_seq, int n_tok, int out_first);

/* Statistics (logits.cl) of n rows of logits [n][n_vocab] into stats rows
 * [row0, row0+n) (targets: targets[row0 + r], -1 for none): each row in one
 * work-group (parts 1), or split among `parts` work-groups (2 ..
 * STATS_PARTS_MAX, part: qe_engine_stats_part_bytes(e, n, parts) bytes of
 * scratch) and merged by a second launch. */
#define STATS_PARTS_MAX 64 /* logits.cl LS_PW */
qe_status qe_engine_run_stats(qe_engine *e, cl_mem logits, int n, cl_mem targets, cl_mem stats,
                              int row0, int parts, cl_mem part);
size_t qe_engine_stats_part_bytes(const qe_engine *e, int n, int parts);
/* The most parts (a power of two) a row of logits splits into with every
 * work-item of logit_stats still scanning at least 4 ids a pass. */
int qe_engine_stats_parts(const qe_engine *e);

/* LM head for e->hout rows [row0, row0+n) into e->logits rows [0, n); with
 * stats = 1 also their statistics (targets from e->targets) into e->stats
 * rows [row0, row0+n). */
qe_status qe_engine_run_head(qe_engine *e, int row0, int n, int stats);

/* QE_OK when a prefill of these arguments is valid for e (qe_engine_prefill's
 * rules), else QE_EINVAL naming the sequence and position. */
qe_status qe_engine_check_prefill(const qe_engine *e, int n_seq, int n_tok, const int32_t *tokens,
                                  int out_first, const int32_t *targets);

/* Enqueue a checked prefill's uploads (tokens; with with_targets also the
 * targets, -1 for all when NULL) and its trunk; records n_seq / n_tok /
 * out_first as the last prefill's, and clears e->ran (the caller sets it
 * once the work is done). */
qe_status qe_engine_begin(qe_engine *e, int n_seq, int n_tok, const int32_t *tokens, int out_first,
                          const int32_t *targets, int with_targets);

/* Copy n_rows statistics rows from e->hstats (already read back) into out
 * (NULL: nothing). */
void qe_engine_unpack(const qe_engine *e, int n_rows, qe_engine_out *out);

/* ---- KV-cache formats (engine_kv.c) ---- */

/* Build options every program that includes kernels/kvfmt.cl needs, for a
 * head dimension: "-DQE_HD=.. -DQE_SQRT_HD=.. [-DQE_FP64]" into buf. */
void qe_engine_kv_defines(const qe_cl *cl, int head_dim, char *buf, size_t cap);

/* At open, before the caches are allocated: the cache row sizes for
 * opt.kv_k / kv_v (QE_EUNSUPPORTED when the model's rows do not fit a
 * format), the store programs and the staging buffer. */
qe_status qe_engine_kv_open(qe_engine *e);
void qe_engine_kv_close(qe_engine *e);

/* Encode n_rows f32 rows of src (dense, kv_dim floats each) into cache dst in
 * the K (which = 0) or V (which = 1) format: source row r goes to cache row
 * (r / y_seq) * y_seq_stride + y_off + r % y_seq. The format must not be
 * f32 (that cache is written by the matmul directly). With src_b non-NULL
 * (which 0, both caches of one format) also src_b into the V cache dst_b,
 * in the same launch. */
qe_status qe_engine_run_kv_store(qe_engine *e, int which, cl_mem src, int n_rows, cl_mem dst,
                                 int y_seq, int y_seq_stride, int y_off, cl_mem src_b,
                                 cl_mem dst_b);
/* The same into cache row rslot[r] * n_ctx + rpos[r] of dst ([n_rows] int
 * buffers: a decode call's ragged rows); with src_b non-NULL (which 0, both
 * caches of one format) also src_b into the V cache dst_b, in the same
 * launch. */
qe_status qe_engine_run_kv_store_rows(qe_engine *e, int which, cl_mem src, int n_rows, cl_mem dst,
                                      cl_mem rslot, cl_mem rpos, cl_mem src_b, cl_mem dst_b);

#endif
