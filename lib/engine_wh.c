/* engine_wh.c - the f16 copies of Q8_0 / Q4_0 layer weights that prefill's
 * mma_tile launches read instead of the weights themselves (engine.c
 * wh_fmts_of says when and why), made by kernels/wh.cl's wt_f16 on lib/cl's
 * side queue into a ring of WH_SLOTS buffers, or, where all of them fit in
 * 1 / WH_RESIDENT_DIV of the device's memory, each into its own buffer once
 * and kept (resident, below); and the LM head's own copy (whh, engine.c
 * head_wh), made once, in slices as the first prefill's layers run (below,
 * qe_engine_wh_head_early).
 *
 * A copy is enqueued when its call is, but on the side queue, waiting only
 * for the last matmul that read its slot (a marker on the main queue after
 * it); the call's matmul waits for the copy (a barrier on the main queue).
 * The host enqueues a forward well ahead of the GPU, so a copy starts as
 * soon as its slot is free, a few calls before the matmul that needs it,
 * and runs beside the matmuls and attention in between instead of between
 * them. The slot reused is the one read longest ago. What a matmul reads is
 * the copy either way (check_mma's dumps compare the bits on the GPU; PoCL
 * never copies).
 *
 * Measured (H200, pp512 B 8 of the synthetic Llama-3.2-1B, -r 3, two
 * rounds, against af594f6's copies on the main queue): q8_0 156.7K /
 * 157.9K -> 161.0K / 160.5K tok/s, q4_0 159.0K / 159.3K -> 161.0K / 161.0K;
 * f16 171.3K / 168.3K. Copying a layer ahead at its attention instead (a
 * learned order, 8 slots) was no faster (158.2K / 160.0K, 161.5K /
 * 160.2K): the copies' 3 bytes of L2 traffic an element, against the
 * matmuls' 64 (32 row tiles read each 2-byte weight), load the L2 that the
 * f16 build is bound by (Nsight: 75 % busy), wherever they run.
 *
 * Why copies at all: a prefill matmul of Q8_0 weights dequantizes them once
 * a call this way instead of once per 128-row tile inside mma_tile's Q8_0
 * build, whose B fragments then cost local loads and integer work beside
 * each mma step. H200, synthetic Llama-3.2-1B q8_0, copies made just before
 * each call on the main queue (PP=1 VAR=QEVAL_MMA_WH VALS="none q8_0 none
 * q8_0" bash bench/gpu_sweep.sh): pp512 B 8 95.3K / 95.4K -> 105.2K /
 * 105.1K tok/s; a layer's gate / up launch 1271 -> 1041 us, for 24 us to
 * copy gate, up or down (2.1 TB/s) and 9.4 / 5.6 us for Q or wo / K or V.
 * Later (session 20) the copies were ~1.6 ms of a 26.3 ms q8_0 forward,
 * about all of its gap to the f16 model's 24.4 ms; beside the matmuls
 * they cost about two thirds of that (the figures above).
 *
 * Resident copies: the weights never change once the engine is open, so
 * where memory allows (Llama-3.2-1B's layers: 1.9 GB of f16, against 1/8 of
 * an H200's 141 GB) each weight's copy is made by the first prefill that
 * reads it and every later prefill reads it with no copy and no wait: the
 * prefill of a Q8_0 / Q4_0 model then does the f16 model's work, the same
 * bits as the ring's copies. QEVAL_MMA_WH_RESIDENT=0 keeps the ring (A/B
 * runs). Decode reads the weights as stored either way. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

_Static_assert(WH_SLOTS >= 3, "a call holds two slots and a copy needs a third");

static size_t copy_bytes(const dev_weight *w) { return 2 * (size_t)w->ne0 * (size_t)w->ne1; }

/* Calls fn(e, w, arg) on each layer weight in order. */
static qe_status each_weight(qe_engine *e, qe_status (*fn)(qe_engine *, dev_weight *, void *),
                             void *arg)
{
    qe_status st = QE_OK;
    for (int l = 0; st == QE_OK && l < e->hp.n_layers; l++) {
        dev_layer *d = &e->layers[l];
        dev_weight *const ws[] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w_gate, &d->w_up, &d->w_down};
        for (size_t i = 0; st == QE_OK && i < sizeof ws / sizeof ws[0]; i++)
            st = fn(e, ws[i], arg);
    }
    return st;
}

struct wh_count {
    int n;
    uint64_t total, most;
};

static qe_status mark(qe_engine *e, dev_weight *w, void *arg)
{
    struct wh_count *c = arg;
    w->wh = (e->wh_fmts >> w->fmt & 1) && e->k_wt_f16[w->fmt];
    w->wh_slot = -1;
    if (w->wh) {
        c->n++;
        c->total += copy_bytes(w);
        c->most = copy_bytes(w) > c->most ? copy_bytes(w) : c->most;
    }
    return QE_OK;
}

/* Resident: w's own slot, sized for it. */
static qe_status own_slot(qe_engine *e, dev_weight *w, void *arg)
{
    (void)arg;
    if (!w->wh)
        return QE_OK;
    w->wh_slot = e->n_wh++;
    return qe_engine_alloc_act(e, 1, copy_bytes(w), 1, &e->wh[w->wh_slot].buf, "f16 weight copy");
}

qe_status qe_engine_wh_open(qe_engine *e)
{
    struct wh_count c = {0, 0, 0};
    (void)each_weight(e, mark, &c);
    e->wh_resident = c.n && !qe_engine_env_off("QEVAL_MMA_WH_RESIDENT") &&
                     c.total <= qe_cl_device(e->cl)->global_mem / WH_RESIDENT_DIV;
    const int slots = e->wh_resident ? c.n : c.n ? WH_SLOTS : 0;
    qe_status st = QE_OK;
    if (slots && !(e->wh = calloc((size_t)slots, sizeof *e->wh)))
        return qe_fail(QE_ENOMEM, "engine: out of memory");
    if (e->wh_resident)
        st = each_weight(e, own_slot, NULL);
    for (; !e->wh_resident && st == QE_OK && e->n_wh < slots; e->n_wh++)
        st = qe_engine_alloc_act(e, 1, c.most, 1, &e->wh[e->n_wh].buf, "f16 weight copy");
    if (st == QE_OK && e->head_wh) {
        e->whh.s.w = &e->output;
        st = qe_engine_alloc_act(e, (size_t)e->output.ne1, (size_t)e->output.ne0, 2,
                                 &e->whh.s.buf, "LM head f16 copy");
    }
    return st;
}

static void slot_free(struct wh_slot *s)
{
    qe_cl_event_free(s->copied);
    qe_cl_event_free(s->read);
    qe_cl_free(s->buf);
    memset(s, 0, sizeof *s);
}

void qe_engine_wh_close(qe_engine *e)
{
    for (int i = 0; i < e->n_wh; i++)
        slot_free(&e->wh[i]);
    free(e->wh);
    e->wh = NULL;
    e->n_wh = 0;
    slot_free(&e->whh.s);
    memset(&e->whh, 0, sizeof e->whh);
}

/* The LM head (why a copy: its Q8_0 / Q4_0 build runs mma.sync with the
 * dequantization inside, the f16 one wgmma, as for the layers). H200,
 * ppl512 B 8 of the synthetic Llama-3.2-1B (2,056 head rows in passes of
 * 1,024), before this copy: the head's matmuls 4.2 ms a prefill in q8_0 or
 * q4_0 against f16's 2.85 (grouped, engine.c need_tiles). Made in slices
 * so that no copy of the ring waits long behind it on the side queue.
 * Until session 23 every prefill made it again (0.64 ms of side-queue work
 * beside the layers); it is made once, as the weights never change. */
void qe_engine_wh_head_early(qe_engine *e, int early) { e->whh.early = early; }

/* Rows [whh.rows, whh.rows + n) of the head into its copy. Each row is
 * written once, before any matmul reads the copy: no wait. */
static qe_status head_rows_copy(qe_engine *e, int n)
{
    struct wh_slot *s = &e->whh.s;
    cl_event done = NULL;
    qe_status st = qe_engine_run_wt_f16(e, &e->output, s->buf, e->whh.rows, n, QE_CL_SIDE, NULL,
                                        &done);
    if (st != QE_OK)
        return st;
    qe_cl_event_free(s->copied);
    s->copied = done;
    e->whh.rows += n;
    return QE_OK;
}

qe_status qe_engine_wh_head_slice(qe_engine *e)
{
    const int left = e->output.ne1 - e->whh.rows;
    const int slice = (e->output.ne1 + e->hp.n_layers - 1) / e->hp.n_layers;
    if (!e->head_wh || !e->whh.early || left <= 0)
        return QE_OK;
    return head_rows_copy(e, left < slice ? left : slice);
}

/* The slot holding w's copy, or -1. */
static int slot_of(const qe_engine *e, const dev_weight *w)
{
    if (e->wh_resident)
        return e->wh[w->wh_slot].w == w ? w->wh_slot : -1;
    for (int i = 0; i < e->n_wh; i++)
        if (e->wh[i].w == w)
            return i;
    return -1;
}

/* The slot a new copy of w goes into: its own where copies are resident;
 * in the ring, of the slots the current call does not hold, the one read
 * longest ago, so that its copy waits least for its reader. */
static int victim(const qe_engine *e, const dev_weight *w)
{
    if (e->wh_resident)
        return w->wh_slot;
    int best = -1;
    for (int i = 0; i < e->n_wh; i++)
        if (!e->wh[i].taken && (best < 0 || e->wh[i].used < e->wh[best].used))
            best = i;
    return best;
}

/* Copy w into slot i on the side queue, after the slot's last reader. */
static qe_status copy_into(qe_engine *e, int i, const dev_weight *w)
{
    struct wh_slot *s = &e->wh[i];
    cl_event done = NULL;
    s->w = NULL;
    qe_status st = qe_engine_run_wt_f16(e, w, s->buf, 0, w->ne1, QE_CL_SIDE, s->read, &done);
    if (st != QE_OK)
        return st;
    qe_cl_event_free(s->copied);
    s->copied = done;
    s->w = w;
    return QE_OK;
}

/* Slots whose copy nothing overwrites: every slot where copies are
 * resident, and the head's. The main queue (in order) waits for such a copy
 * once, at its first reader, and every later command runs after that wait:
 * later readers need no wait, and no record of readers is kept (only a new
 * copy into a ring slot waits for one). */
static int slot_kept(const qe_engine *e, const struct wh_slot *s)
{
    return e->wh_resident || s == &e->whh.s;
}

/* The launch being enqueued reads slot s, which holds (or is making) the
 * copy of *w: *w becomes *view, the copy's f16 rows, and the copy's event,
 * if the main queue has not waited for it yet, joins wait[]. */
static void slot_take(struct wh_slot *s, const dev_weight **w, dev_weight *view, cl_event *wait,
                      cl_uint *n_wait)
{
    s->taken = 1;
    if (s->copied)
        wait[(*n_wait)++] = s->copied;
    *view = (dev_weight){.buf = s->buf, .fmt = WF_F16, .ne0 = (*w)->ne0, .ne1 = (*w)->ne1,
                         .row_bytes = 2 * (cl_ulong)(*w)->ne0};
    *w = view;
}

qe_status qe_engine_wh_take(qe_engine *e, int n, const dev_weight **w, dev_weight *view)
{
    cl_event wait[2];
    cl_uint n_wait = 0;
    for (int i = 0; i < e->n_wh; i++)
        e->wh[i].taken = 0;
    e->whh.s.taken = 0;
    for (int j = 0; j < n && j < 2; j++) {
        qe_status st = QE_OK;
        if (w[j] == &e->output && e->head_wh) { /* the head's own copy, finished now */
            const int left = e->output.ne1 - e->whh.rows;
            if (left > 0)
                st = head_rows_copy(e, left);
            if (st == QE_OK)
                slot_take(&e->whh.s, &w[j], &view[j], wait, &n_wait);
        } else if (w[j]->wh) {
            int i = slot_of(e, w[j]);
            if (i < 0) {
                i = victim(e, w[j]);
                st = copy_into(e, i, w[j]);
            }
            if (st == QE_OK)
                slot_take(&e->wh[i], &w[j], &view[j], wait, &n_wait);
        }
        if (st != QE_OK)
            return st;
    }
    qe_status st = n_wait ? qe_cl_barrier(e->cl, QE_CL_MAIN, n_wait, wait, NULL) : QE_OK;
    for (int i = 0; st == QE_OK && i <= e->n_wh; i++) { /* i == n_wh: the head's */
        struct wh_slot *s = i < e->n_wh ? &e->wh[i] : &e->whh.s;
        if (s->taken && slot_kept(e, s)) { /* waited for now, for good */
            qe_cl_event_free(s->copied);
            s->copied = NULL;
            s->taken = 0;
        }
    }
    return st;
}

/* Records the launch just enqueued as the last reader of the ring slots it
 * took (kept slots were let go by wh_take). */
qe_status qe_engine_wh_done(qe_engine *e)
{
    int any = 0;
    for (int i = 0; i < e->n_wh; i++)
        any |= e->wh[i].taken;
    if (!any)
        return QE_OK;
    cl_event read = NULL;
    qe_status st = qe_cl_barrier(e->cl, QE_CL_MAIN, 0, NULL, &read);
    for (int i = 0; st == QE_OK && i < e->n_wh; i++) {
        struct wh_slot *s = &e->wh[i];
        if (!s->taken)
            continue;
        st = qe_cl_event_retain(read);
        if (st != QE_OK)
            break;
        qe_cl_event_free(s->read);
        s->read = read;
        s->taken = 0;
        s->used = ++e->wh_clock;
    }
    qe_cl_event_free(read);
    return st;
}
