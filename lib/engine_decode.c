/* engine_decode.c - ragged-batch decoding over the engine's weights and KV
 * cache (API: decode.h). It lives beside engine.c, and reads the engine's
 * internals through engine_internal.h, because it drives the same weights,
 * caches and kernels.
 *
 * Workload: calls of a few to a few hundred rows (one token per active slot
 * per step, or a prompt), each one host round trip: uploads of the row
 * tables, the forward pass enqueued without waiting, one read of the
 * statistics. Per call (rows = tokens of the call):
 *
 *   embed (engine)             tokens -> x                      [rows][dim]
 *   per layer:
 *     rmsnorm (engine)         x -> h                           [rows][dim]
 *     matmul wq / wk / wv      h -> q [rows][q_dim], kt / vt    [rows][kv_dim]
 *     (one launch for the three matmuls with the tensor-core kernels; with
 *     the norm too in calls of one row of Q8_0 / Q4_0 weights, whose
 *     kernel normalises its row itself, and RoPE and the f16 cache writes
 *     below in its epilogue: qe_engine_run_qkv)
 *     rope_rows                q and kt at pos[r], one launch
 *     kv_store (engine, kv.cl) kt, vt -> cache rows slot[r]*n_ctx + pos[r], encoded
 *                              in the cache format (copy_rows for an f32 cache)
 *     attn_rows                q, cache -> att                  [rows][q_dim]
 *     matmul wo (accumulate)   att -> x
 *     rmsnorm, gate/up matmuls (one launch with the tensor-core kernels,
 *     the norm too as above), silu_mul, down matmul (accumulate) -> x (one
 *     launch likewise: qe_engine_run_ffn_down)
 *   gather_rows                last row of each sequence -> xo  [n_out][dim]
 *                              (not in calls of one row per sequence: x is xo)
 *   rmsnorm (engine)           xo -> hout                       [n_out][dim]
 *   matmul output              hout -> logits                   [n_out][n_vocab]
 *                              (one launch with the norm as above)
 *   logit_stats (engine)       logits -> partial stats of each row's `parts`
 *                              slices of the vocabulary         [n_out][parts][3+2k]
 *   logit_merge (engine)       -> stats                         [n_out][4+2k]
 *
 * Threading: one thread at a time per decoder, engine and qe_cl.
 */
#include "decode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "log.h"

#define DEC_AW_MAX 64 /* attn_rows work-group width (keys per tile) */

struct qe_decode {
    qe_engine *e;
    int max_rows;
    int aw;              /* attn_rows work-group width, a power of two */
    int *len;            /* [n_slots] positions held per slot */

    cl_program prog;     /* decode.cl, attn_rows one query head per work-group */
    cl_kernel k_gather, k_rope, k_copy, k_attn;
    cl_program prog_g;   /* attn_rows alone, a KV head's group of query heads per work-group */
    cl_kernel k_attn_g;  /* its attn_rows (NULL: every call uses k_attn): the same bits */

    cl_mem tokens, rslot, rpos; /* [max_rows] int: each row's token, slot, position */
    cl_mem oidx;         /* [n_slots] int: row of each sequence's last token */
    cl_mem targets;      /* [n_slots] int, all -1 (logit_stats wants a target per row) */
    cl_mem x, h;         /* [max_rows][dim] */
    cl_mem q, att;       /* [max_rows][q_dim] */
    cl_mem kt, vt;       /* [max_rows][kv_dim] new K/V rows before the store */
    cl_mem g, u;         /* [max_rows][n_ff] */
    cl_mem xo, hout;     /* [n_slots][dim] */
    cl_mem logits;       /* [n_slots][n_vocab] */
    cl_mem stats;        /* [n_slots][stride] */
    int parts;           /* work-groups a row's statistics are split among (logits.cl) */
    cl_mem part;         /* their partial results (NULL for parts 1) */

    int32_t *htok, *hslot, *hpos; /* [max_rows] host staging */
    int32_t *hoidx;      /* [n_slots] */
    float *hstats;       /* [n_slots][stride] */
    int last_n_out;      /* sequences in the last successful call, 0 before one */
};

qe_decode_opts qe_decode_opts_default(void)
{
    qe_decode_opts o = {.max_rows = 0};
    return o;
}

int qe_decode_n_slots(const qe_decode *d) { return d->e->opt.n_seq; }
int qe_decode_n_ctx(const qe_decode *d) { return d->e->opt.n_ctx; }
int qe_decode_top_k(const qe_decode *d) { return d->e->opt.top_k; }
int qe_decode_max_rows(const qe_decode *d) { return d->max_rows; }

int qe_decode_len(const qe_decode *d, int slot)
{
    return slot >= 0 && slot < d->e->opt.n_seq ? d->len[slot] : -1;
}

qe_status qe_decode_reset(qe_decode *d, int slot)
{
    if (slot < 0 || slot >= d->e->opt.n_seq)
        return qe_fail(QE_EINVAL, "decode: slot %d is outside 0 .. %d", slot, d->e->opt.n_seq - 1);
    d->len[slot] = 0;
    return QE_OK;
}

/* ---- open / close ---- */

/* Query heads per KV head when the grouped attn_rows build serves them (its
 * per-head arrays are compiled to that size); 0 when there is nothing to
 * group (one query head per KV head) or the group is larger than DEC_G_MAX,
 * and every call uses the one-head build. */
#define DEC_G_MAX 8
static int dec_group(const qe_engine *e)
{
    const int g = e->hp.n_heads / e->hp.n_kv_heads;
    return g > 1 && g <= DEC_G_MAX && g * e->hp.n_kv_heads == e->hp.n_heads ? g : 0;
}

static qe_status build(qe_decode *d)
{
    qe_engine *e = d->e;
    size_t max_wg = 0;
    qe_status st = QE_OK;
    d->aw = DEC_AW_MAX;
    while ((size_t)d->aw > qe_cl_device(e->cl)->max_wg_size && d->aw > 1)
        d->aw /= 2;
    /* Under QE_GEMM_MMA (the probe found shfl.sync working) attn_rows'
       reductions use warp shuffles (decode.cl at_tree: the same bits) */
    const int shfl = e->opt.gemm == QE_GEMM_MMA;
    static const char *const all_srcs[] = {"ptx.cl", "kvfmt.cl", "qkv.cl", "decode.cl"};
    const char *const *srcs = all_srcs + !shfl; /* ptx.cl only with shfl */
    const size_t n_srcs = sizeof all_srcs / sizeof all_srcs[0] - !shfl;
    char defs[128], opts[256], gopts[320];
    qe_engine_kv_defines(e->cl, e->hp.head_dim, defs, sizeof defs);
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s -DQE_AW=%d -DQE_KVK=%d -DQE_KVV=%d%s", defs,
             d->aw, (int)e->opt.kv_k, (int)e->opt.kv_v, shfl ? " -DQE_SHFL" : "");
    snprintf(gopts, sizeof gopts, "%s -DQE_G=1", opts);
    if ((st = qe_cl_build(e->cl, srcs, n_srcs, gopts, &d->prog)) != QE_OK ||
        (st = qe_cl_kernel(d->prog, "gather_rows", &d->k_gather)) != QE_OK ||
        (st = qe_cl_kernel(d->prog, "rope_rows", &d->k_rope)) != QE_OK ||
        (st = qe_cl_kernel(d->prog, "copy_rows", &d->k_copy)) != QE_OK ||
        (st = qe_cl_kernel(d->prog, "attn_rows", &d->k_attn)) != QE_OK ||
        (st = qe_cl_kernel_limits(e->cl, d->k_attn, &max_wg, NULL, NULL)) != QE_OK)
        return st;
    if (max_wg < (size_t)d->aw)
        return qe_fail(QE_EUNSUPPORTED, "decode: attn_rows needs work-groups of %d, the device allows %zu",
                       d->aw, max_wg);
    const int group = dec_group(e);
    if (group) {
        snprintf(gopts, sizeof gopts, "%s -DQE_G=%d -DQE_ATTN_ONLY", opts, group);
        if ((st = qe_cl_build(e->cl, srcs, n_srcs, gopts, &d->prog_g)) != QE_OK ||
            (st = qe_cl_kernel(d->prog_g, "attn_rows", &d->k_attn_g)) != QE_OK ||
            (st = qe_cl_kernel_limits(e->cl, d->k_attn_g, &max_wg, NULL, NULL)) != QE_OK)
            return st;
        if (max_wg < (size_t)d->aw) { /* the one-head build alone, then: the same bits */
            qe_cl_kernel_free(d->k_attn_g);
            d->k_attn_g = NULL;
        }
    }
    return QE_OK;
}

qe_status qe_decode_open(qe_engine *e, const qe_decode_opts *o, qe_decode **out)
{
    qe_status st = QE_OK;
    qe_decode *d = NULL;
    *out = NULL;
    if (!e)
        return qe_fail(QE_EINVAL, "decode: no engine");
    const qe_hparams *hp = &e->hp;
    const int n_slots = e->opt.n_seq, n_ctx = e->opt.n_ctx;
    int max_rows = o ? o->max_rows : 0;
    if (max_rows == 0) {
        int64_t all = (int64_t)n_slots * n_ctx;
        max_rows = all < 512 ? (int)all : 512;
        max_rows = max_rows < n_slots ? n_slots : max_rows;
    }
    if (max_rows < n_slots || max_rows > (1 << 20))
        return qe_fail(QE_EINVAL, "decode: max_rows %d is outside %d (the slots) .. %d", max_rows,
                       n_slots, 1 << 20);
    d = calloc(1, sizeof *d);
    if (!d)
        return qe_fail(QE_ENOMEM, "decode: out of memory");
    d->e = e;
    d->max_rows = max_rows;
    const size_t rows = (size_t)max_rows, slots = (size_t)n_slots;
    d->len = calloc(slots, sizeof *d->len);
    d->htok = malloc(rows * sizeof(int32_t));
    d->hslot = malloc(rows * sizeof(int32_t));
    d->hpos = malloc(rows * sizeof(int32_t));
    d->hoidx = malloc(slots * sizeof(int32_t));
    d->hstats = malloc(slots * (size_t)e->stride * sizeof(float));
    if (!d->len || !d->htok || !d->hslot || !d->hpos || !d->hoidx || !d->hstats) {
        st = qe_fail(QE_ENOMEM, "decode: out of memory");
        goto done;
    }
    if ((st = build(d)) != QE_OK)
        goto done;
    const struct {
        cl_mem *buf;
        size_t rows, width, elem;
        const char *what;
    } bufs[] = {
        {&d->tokens, rows, 1, sizeof(cl_int), "decode tokens"},
        {&d->rslot, rows, 1, sizeof(cl_int), "decode row slots"},
        {&d->rpos, rows, 1, sizeof(cl_int), "decode row positions"},
        {&d->oidx, slots, 1, sizeof(cl_int), "decode output rows"},
        {&d->targets, slots, 1, sizeof(cl_int), "decode targets"},
        {&d->x, rows, (size_t)hp->dim, sizeof(float), "decode residual"},
        {&d->h, rows, (size_t)hp->dim, sizeof(float), "decode norm"},
        {&d->q, rows, (size_t)e->q_dim, sizeof(float), "decode query"},
        {&d->att, rows, (size_t)e->q_dim, sizeof(float), "decode attention"},
        {&d->kt, rows, (size_t)e->kv_dim, sizeof(float), "decode new keys"},
        {&d->vt, rows, (size_t)e->kv_dim, sizeof(float), "decode new values"},
        {&d->g, rows, (size_t)hp->n_ff, sizeof(float), "decode ffn gate"},
        {&d->u, rows, (size_t)hp->n_ff, sizeof(float), "decode ffn up"},
        {&d->xo, slots, (size_t)hp->dim, sizeof(float), "decode output rows"},
        {&d->hout, slots, (size_t)hp->dim, sizeof(float), "decode head input"},
        {&d->logits, slots, (size_t)hp->n_vocab, sizeof(float), "decode logits"},
        {&d->stats, slots, (size_t)e->stride, sizeof(float), "decode stats"},
    };
    for (size_t i = 0; st == QE_OK && i < sizeof bufs / sizeof bufs[0]; i++)
        st = qe_engine_alloc_act(e, bufs[i].rows, bufs[i].width, bufs[i].elem, bufs[i].buf,
                                 bufs[i].what);
    /* A decode call has a row or a few per slot to reduce over the whole
       vocabulary: split each among work-groups (the same split in every
       call, so a row's statistics do not depend on its call). */
    d->parts = qe_engine_stats_parts(e);
    if (st == QE_OK && d->parts > 1)
        st = qe_cl_alloc(e->cl, qe_engine_stats_part_bytes(e, n_slots, d->parts), QE_CL_RW, NULL,
                         &d->part);
    if (st != QE_OK)
        goto done;
    for (size_t i = 0; i < slots; i++)
        d->hoidx[i] = -1;
    st = qe_cl_write(e->cl, d->targets, 0, slots * sizeof(int32_t), d->hoidx, 1);
    if (st != QE_OK)
        goto done;
    qe_log_debug("decode: %d slots of %d positions, %d rows per call, attention width %d", n_slots,
                 n_ctx, max_rows, d->aw);
done:
    if (st != QE_OK) {
        qe_decode_close(d);
        return st;
    }
    *out = d;
    return QE_OK;
}

void qe_decode_close(qe_decode *d)
{
    if (!d)
        return;
    cl_mem bufs[] = {d->tokens, d->rslot, d->rpos, d->oidx, d->targets, d->x,  d->h,
                     d->q,      d->att,   d->kt,   d->vt,   d->g,       d->u,  d->xo,
                     d->hout,   d->logits, d->stats, d->part};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        qe_cl_free(bufs[i]);
    qe_cl_kernel_free(d->k_gather);
    qe_cl_kernel_free(d->k_rope);
    qe_cl_kernel_free(d->k_copy);
    qe_cl_kernel_free(d->k_attn);
    qe_cl_kernel_free(d->k_attn_g);
    qe_cl_program_free(d->prog_g);
    qe_cl_program_free(d->prog);
    free(d->len);
    free(d->htok);
    free(d->hslot);
    free(d->hpos);
    free(d->hoidx);
    free(d->hstats);
    free(d);
}

/* ---- the forward pass ---- */

/* RoPE of a call's query rows q (n_heads heads, row stride q_dim) and new
 * key rows kt (n_kv_heads, kv_dim) at their positions, one launch. */
static qe_status run_rope_rows(qe_decode *d, int layer, int n_rows)
{
    qe_engine *e = d->e;
    int layout = e->hp.rope_layout == QE_ROPE_HALVES ? 1 : 0;
    cl_mem cs = qe_model_layer_swa(&e->hp, layer) ? e->rope_cs_swa : e->rope_cs;
    size_t global[3] = {(size_t)e->hp.n_rot / 2, (size_t)(e->hp.n_heads + e->hp.n_kv_heads),
                        (size_t)n_rows};
    if (global[0] == 0)
        return QE_OK; /* n_rot 0: nothing rotates */
    qe_status st = qe_cl_args(d->k_rope, 10, sizeof(cl_mem), &d->q, sizeof(int), &e->q_dim,
                              sizeof(int), &e->hp.n_heads, sizeof(cl_mem), &d->kt, sizeof(int),
                              &e->kv_dim, sizeof(cl_mem), &d->rpos, sizeof(int), &e->hp.head_dim,
                              sizeof(int), &e->hp.n_rot, sizeof(int), &layout, sizeof(cl_mem), &cs);
    size_t local[3];
    return st ? st : qe_cl_run(e->cl, d->k_rope, 3, global, qe_engine_head_local(e, global, local), NULL);
}

/* K (which = 0) or V rows src [rows][kv_dim] into their slots of cache
 * dst (row slot[r] * n_ctx + pos[r]): encoded there by the engine's store
 * kernel when the format is not f32, else copied as raw bytes. */
static qe_status store_rows(qe_decode *d, int which, cl_mem src, cl_mem dst, int rows)
{
    qe_engine *e = d->e;
    if (e->k_store[which])
        return qe_engine_run_kv_store_rows(e, which, src, rows, dst, d->rslot, d->rpos, NULL, NULL);
    cl_ulong rb = (cl_ulong)e->kv_row_bytes[which];
    int n_ctx = e->opt.n_ctx;
    qe_status st = qe_cl_args(d->k_copy, 6, sizeof(cl_mem), &src, sizeof(cl_ulong), &rb,
                              sizeof(cl_mem), &d->rslot, sizeof(cl_mem), &d->rpos, sizeof(int),
                              &n_ctx, sizeof(cl_mem), &dst);
    size_t global[2] = {(size_t)rb, (size_t)rows};
    return st ? st : qe_cl_run(e->cl, d->k_copy, 2, global, NULL, NULL);
}

/* The call's new K and V rows into layer l's caches: one kv_store launch
 * when both caches have one (encoded) format, else one store each. */
static qe_status store_kv(qe_decode *d, const dev_layer *l, int rows)
{
    qe_engine *e = d->e;
    if (e->k_store[0] && e->opt.kv_k == e->opt.kv_v)
        return qe_engine_run_kv_store_rows(e, 0, d->kt, rows, l->kc, d->rslot, d->rpos, d->vt,
                                           l->vc);
    qe_status st = store_rows(d, 0, d->kt, l->kc, rows);
    return st ? st : store_rows(d, 1, d->vt, l->vc, rows);
}

static qe_status run_layer(qe_decode *d, const dev_layer *l, int rows)
{
    qe_engine *e = d->e;
    const qe_hparams *hp = &e->hp;
    const int n_ctx = e->opt.n_ctx, li = (int)(l - e->layers);
    const dev_weight *gu[2] = {&l->w_gate, &l->w_up};
    const cl_mem qkv_y[3] = {d->q, d->kt, d->vt}, gu_y[2] = {d->g, d->u};
    const int qkv_ld[3] = {e->q_dim, e->kv_dim, e->kv_dim}, gu_ld[2] = {hp->n_ff, hp->n_ff};
    int done = 0; /* what the Q/K/V launch did beyond its matmuls */
    qe_status st = qe_engine_run_qkv(e, l, d->x, d->h, rows, qkv_y, qkv_ld, d->rslot, d->rpos, &done);
    if (st == QE_OK && !(done & QE_QKV_ROPE) &&
        ((st = qe_engine_run_qk_prep(e, d->q, e->q_dim, hp->n_heads, 1, rows, rows, l->bq, l->q_norm)) ||
         (st = qe_engine_run_qk_prep(e, d->kt, e->kv_dim, hp->n_kv_heads, 1, rows, rows, l->bk, l->k_norm)) ||
         (st = qe_engine_run_qk_prep(e, d->vt, e->kv_dim, hp->n_kv_heads, 1, rows, rows, l->bv, NULL)) ||
         (st = run_rope_rows(d, li, rows))))
        return st;
    if (st != QE_OK || (!(done & QE_QKV_KV) && (st = store_kv(d, l, rows))))
        return st;
    float scale = hp->attn_scale;
    int window = qe_model_layer_swa(hp, li) ? hp->swa_window : 0;
    cl_ulong kb = (cl_ulong)e->kv_row_bytes[0], vb = (cl_ulong)e->kv_row_bytes[1];
    /* Calls of many rows read each K/V element once for its group of query
       heads (prog_g's attn_rows); calls of few rows keep one work-group per
       head, which spreads a short call over more of the device. Same bits
       either way. */
    const int grouped = rows > 16 && d->k_attn_g;
    cl_kernel ka = grouped ? d->k_attn_g : d->k_attn;
    st = qe_cl_args(ka, 13, sizeof(cl_mem), &d->q, sizeof(cl_mem), &l->kc, sizeof(cl_mem),
                    &l->vc, sizeof(cl_ulong), &kb, sizeof(cl_ulong), &vb, sizeof(cl_mem), &d->rslot,
                    sizeof(cl_mem), &d->rpos, sizeof(int), &n_ctx, sizeof(int), &hp->n_heads,
                    sizeof(int), &hp->n_kv_heads, sizeof(float), &scale, sizeof(int), &window,
                    sizeof(cl_mem), &d->att);
    size_t ag[2] = {(size_t)rows * (size_t)d->aw, (size_t)(grouped ? hp->n_kv_heads : hp->n_heads)};
    size_t al[2] = {(size_t)d->aw, 1};
    if (st || (st = qe_cl_run(e->cl, ka, 2, ag, al, NULL)))
        return st;
    if ((st = qe_engine_run_out_add(e, &l->wo, d->att, e->q_dim, rows, l->attn_post, d->x, d->h)) ||
        (st = qe_engine_run_norm_matmul_n(e, d->x, l->ffn_norm, d->h, 2, gu, rows, gu_y, gu_ld)))
        return st;
    return qe_engine_run_ffn_down(e, &l->w_down, d->g, d->u, rows, l->ffn_post, d->x, d->h);
}

static qe_status run_forward_body(qe_decode *d, int rows, int n_out);

/* Every decode call computes its matmuls with the engine's few-rows kernel
 * (mma_skinny under QE_GEMM_MMA; matmul.cl otherwise), whatever its number
 * of rows, so a sequence's results do not depend on who shares its calls. */
static qe_status run_forward(qe_decode *d, int rows, int n_out)
{
    d->e->mm_skinny = 1;
    qe_status st = run_forward_body(d, rows, n_out);
    d->e->mm_skinny = 0;
    return st;
}

static qe_status run_forward_body(qe_decode *d, int rows, int n_out)
{
    qe_engine *e = d->e;
    const qe_hparams *hp = &e->hp;
    const int dim = hp->dim, nv = hp->n_vocab;
    /* A call of one row per sequence (every plain decode step) has each
       sequence's last row at its own index: the rows are already the LM
       head's input, without gather_rows' copy or the output rows' upload. */
    const int gather = rows != n_out;
    qe_status st;
    if ((st = qe_cl_write(e->cl, d->tokens, 0, (size_t)rows * sizeof(int32_t), d->htok, 0)) ||
        (st = qe_cl_write(e->cl, d->rslot, 0, (size_t)rows * sizeof(int32_t), d->hslot, 0)) ||
        (st = qe_cl_write(e->cl, d->rpos, 0, (size_t)rows * sizeof(int32_t), d->hpos, 0)) ||
        (gather &&
         (st = qe_cl_write(e->cl, d->oidx, 0, (size_t)n_out * sizeof(int32_t), d->hoidx, 0))))
        return st;
    cl_kernel ke = e->k_embed[e->tok_embd.fmt];
    st = qe_cl_args(ke, 5, sizeof(cl_mem), &d->tokens, sizeof(cl_mem), &e->tok_embd.buf,
                    sizeof(cl_ulong), &e->tok_embd.row_bytes, sizeof(int), &hp->dim, sizeof(cl_mem),
                    &d->x);
    size_t eg[2] = {(size_t)dim, (size_t)rows};
    if (st || (st = qe_cl_run(e->cl, ke, 2, eg, NULL, NULL)) ||
        (st = qe_engine_run_embed_scale(e, d->x, rows)))
        return st;
    for (int l = 0; l < hp->n_layers; l++)
        if ((st = run_layer(d, &e->layers[l], rows)))
            return st;
    size_t gg[2] = {(size_t)dim, (size_t)n_out};
    if (gather &&
        ((st = qe_cl_args(d->k_gather, 4, sizeof(cl_mem), &d->x, sizeof(cl_mem), &d->oidx,
                          sizeof(int), &dim, sizeof(cl_mem), &d->xo)) ||
         (st = qe_cl_run(e->cl, d->k_gather, 2, gg, NULL, NULL))))
        return st;
    const dev_weight *out = &e->output;
    if ((st = qe_engine_run_norm_matmul_n(e, gather ? d->xo : d->x, e->out_norm, d->hout, 1, &out,
                                          n_out, &d->logits, &nv)) ||
        (st = qe_engine_run_softcap(e, d->logits, n_out)))
        return st;
    if ((st = qe_engine_run_stats(e, d->logits, n_out, d->targets, d->stats, 0, d->parts, d->part)))
        return st;
    return qe_cl_read(e->cl, d->stats, 0, (size_t)n_out * e->stride * sizeof(float), d->hstats);
}

/* Reject a call that breaks qe_decode_run's contract, before anything runs. */
static qe_status check_call(const qe_decode *d, int n_seqs, const qe_decode_seq *seqs, int *rows)
{
    const int n_slots = d->e->opt.n_seq, n_ctx = d->e->opt.n_ctx, nv = d->e->hp.n_vocab;
    if (n_seqs < 1 || n_seqs > n_slots)
        return qe_fail(QE_EINVAL, "decode: %d sequences in a call; 1 .. %d allowed", n_seqs, n_slots);
    int64_t total = 0;
    for (int i = 0; i < n_seqs; i++) {
        const qe_decode_seq *s = &seqs[i];
        if (s->slot < 0 || s->slot >= n_slots)
            return qe_fail(QE_EINVAL, "decode: sequence %d: slot %d is outside 0 .. %d", i, s->slot,
                           n_slots - 1);
        for (int j = 0; j < i; j++)
            if (seqs[j].slot == s->slot)
                return qe_fail(QE_EINVAL, "decode: sequences %d and %d both use slot %d", j, i, s->slot);
        if (s->n_tok < 1 || !s->tokens)
            return qe_fail(QE_EINVAL, "decode: sequence %d: no tokens", i);
        if (s->n_tok > n_ctx - d->len[s->slot])
            return qe_fail(QE_EINVAL,
                           "decode: sequence %d: %d tokens do not fit slot %d (%d of %d positions used)",
                           i, s->n_tok, s->slot, d->len[s->slot], n_ctx);
        for (int p = 0; p < s->n_tok; p++)
            if (s->tokens[p] < 0 || s->tokens[p] >= nv)
                return qe_fail(QE_EINVAL, "decode: sequence %d token %d: id %d is outside 0 .. %d", i, p,
                               (int)s->tokens[p], nv - 1);
        total += s->n_tok;
    }
    if (total > d->max_rows)
        return qe_fail(QE_EINVAL, "decode: %lld tokens in a call; at most %d (max_rows)",
                       (long long)total, d->max_rows);
    *rows = (int)total;
    return QE_OK;
}

qe_status qe_decode_run(qe_decode *d, int n_seqs, const qe_decode_seq *seqs, qe_decode_out *out)
{
    int rows = 0;
    qe_status st = check_call(d, n_seqs, seqs, &rows);
    if (st != QE_OK)
        return st;
    int r = 0;
    for (int i = 0; i < n_seqs; i++) {
        const qe_decode_seq *s = &seqs[i];
        for (int p = 0; p < s->n_tok; p++, r++) {
            d->htok[r] = s->tokens[p];
            d->hslot[r] = s->slot;
            d->hpos[r] = d->len[s->slot] + p;
        }
        d->hoidx[i] = r - 1;
    }
    d->last_n_out = 0;
    st = run_forward(d, rows, n_seqs);
    if (st != QE_OK) {
        qe_cl_finish(d->e->cl); /* the staging buffers may still be read by queued writes */
        for (int i = 0; i < n_seqs; i++)
            d->len[seqs[i].slot] = 0;
        return qe_fail_prefix(st, "decode");
    }
    for (int i = 0; i < n_seqs; i++)
        d->len[seqs[i].slot] += seqs[i].n_tok;
    d->last_n_out = n_seqs;
    if (!out)
        return QE_OK;
    const int k = d->e->opt.top_k, stride = d->e->stride;
    for (int i = 0; i < n_seqs; i++) {
        const float *row = d->hstats + (size_t)i * stride;
        if (out->lse)
            out->lse[i] = row[0];
        if (out->argmax)
            memcpy(&out->argmax[i], &row[2], sizeof(int32_t));
        if (out->topk_id && k)
            memcpy(out->topk_id + (size_t)i * k, row + STATS_HDR, (size_t)k * sizeof(int32_t));
        if (out->topk_logp && k)
            memcpy(out->topk_logp + (size_t)i * k, row + STATS_HDR + k, (size_t)k * sizeof(float));
    }
    return QE_OK;
}

qe_status qe_decode_logits(qe_decode *d, int i, float *dst)
{
    if (i < 0 || i >= d->last_n_out)
        return qe_fail(QE_EINVAL, "decode: result %d is outside the last call (%d results)", i,
                       d->last_n_out);
    const size_t nv = (size_t)d->e->hp.n_vocab;
    return qe_cl_read(d->e->cl, d->logits, (size_t)i * nv * sizeof(float), nv * sizeof(float), dst);
}
