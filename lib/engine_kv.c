/* engine_kv.c - the engine's KV-cache formats: cache row sizes, the store
 * kernel that encodes K/V rows into a quantized cache (kernels/kv.cl), and
 * the device codec entry point the tests compare with lib/kv_format.c.
 *
 * Workload: one store launch per layer and per K/V of a non-f32 cache, over
 * the batch's rows; the codec test runs a handful of rows.
 * Threading: as engine.c (one thread at a time per engine and per qe_cl).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_internal.h"

void qe_engine_kv_defines(const qe_cl *cl, int head_dim, char *buf, size_t cap)
{
    /* sqrtf of a power of two, exact in hex so the device divides by the
     * same float the CPU's qe_turboquant_rotate does. */
    const int fp64 = qe_cl_has_extension(qe_cl_device(cl), "cl_khr_fp64");
    snprintf(buf, cap, "-DQE_HD=%d -DQE_SQRT_HD=%af%s", head_dim, (double)sqrtf((float)head_dim),
             fp64 ? " -DQE_FP64" : "");
}

/* TurboQuant's kv_store gives each head vector tq_items work-items and a
 * work-group several vectors: at most tq_vec_cap of them (TQ_STORE_WI
 * work-items and the kernel's max_wg), and for a launch of n vectors the
 * largest power of two up to that cap dividing n (tq_vecs), so no
 * work-group is partial. */
#define TQ_STORE_WI 256 /* kv.cl's TR_WI */

/* Whether kv.cl's QE_SHFL build gives a head vector one warp: where warp
 * shuffles may be used (shfl: NVIDIA, the engine's QE_GEMM_MMA) and the
 * vector fills a warp (head_dim 32 .. 128, a multiple of 32: kv.cl's
 * KS_WARP, head_dim / 32 elements a work-item). */
static int tq_warp(int shfl, int head_dim)
{
    return shfl && head_dim % 32 == 0 && head_dim <= 128;
}

static int tq_items(int shfl, int head_dim) { return tq_warp(shfl, head_dim) ? 32 : head_dim; }

static int tq_vec_cap(size_t max_wg, int items)
{
    return (int)((max_wg < TQ_STORE_WI ? max_wg : TQ_STORE_WI) / (size_t)items);
}

static size_t tq_vecs(int cap, size_t n)
{
    size_t v = 1;
    while (2 * v <= (size_t)cap && n % (2 * v) == 0)
        v *= 2;
    return v;
}

/* Build kv.cl for format f into *prog / *store (and *load when non-NULL);
 * *vecs: the most head vectors a TurboQuant kv_store work-group may take
 * (TQ_STORE_WI work-items at most; 1 for the other formats), *items: its
 * work-items a vector (tq_items: where tq_warp says, kv.cl's QE_SHFL
 * build, ptx.cl before it, a warp a vector). */
static qe_status build_kv(qe_cl *cl, qe_kv_format f, int head_dim, int shfl, cl_program *prog,
                          cl_kernel *store, cl_kernel *load, int *vecs, int *items)
{
    static const char *const all_srcs[] = {"ptx.cl", "kvfmt.cl", "qkv.cl", "kv.cl"};
    char defs[128], opts[256];
    const int tq = qe_kv_format_per_head(f), warp = tq && tq_warp(shfl, head_dim);
    *items = tq ? tq_items(shfl, head_dim) : 1;
    qe_engine_kv_defines(cl, head_dim, defs, sizeof defs);
    /* The encoders' quotients are the CPU's correctly rounded floats
       (kvfmt.cl KV_DIV). In double, as KV_DIV writes them, they need no
       option, but compilers narrow (float)((double)a / (double)b) to a
       float division (the same value, by the double-rounding argument),
       which OpenCL lets be 2.5 ulp off: NVIDIA's made it div.full.f32,
       and on the H100 38.0M of 134.2M random quotients came out 1 ulp
       from the CPU's (the codec test's rows had not met one). The option
       makes a float division correctly rounded where the device can. */
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s -DQE_KVF=%d -DTR_WI=%d%s%s", defs, (int)f,
             TQ_STORE_WI, warp ? " -DQE_SHFL" : "",
             qe_cl_device(cl)->fp32_div_rn ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
    qe_status st = qe_cl_build(cl, all_srcs + !warp, sizeof all_srcs / sizeof all_srcs[0] - !warp,
                               opts, prog);
    size_t max_wg = 0;
    *vecs = 1;
    if (st == QE_OK)
        st = qe_cl_kernel(*prog, "kv_store", store);
    if (st == QE_OK && qe_kv_format_per_head(f) &&
        (st = qe_cl_kernel_limits(cl, *store, &max_wg, NULL, NULL)) == QE_OK) {
        if (max_wg < (size_t)*items)
            st = qe_fail(QE_EUNSUPPORTED,
                         "engine: the %s cache encodes a head in a work-group of %d, the device "
                         "allows %zu",
                         qe_kv_format_name(f), *items, max_wg);
        else
            *vecs = tq_vec_cap(max_wg, *items);
    }
    if (st == QE_OK && load)
        st = qe_cl_kernel(*prog, "kv_load_rows", load);
    return st;
}

qe_status qe_engine_kv_open(qe_engine *e)
{
    const qe_kv_format fmt[2] = {e->opt.kv_k, e->opt.kv_v};
    const int nkv = e->hp.n_kv_heads, hd = e->hp.head_dim;
    qe_status st = QE_OK;
    for (int i = 0; i < 2 && st == QE_OK; i++) {
        st = qe_kv_format_row_bytes(fmt[i], nkv, hd, &e->kv_row_bytes[i]);
        if (st != QE_OK) {
            qe_fail_prefix(st, "engine: %s cache", i ? "V" : "K");
            break;
        }
        if (fmt[i] != QE_KV_F32)
            st = build_kv(e->cl, fmt[i], hd, e->opt.gemm == QE_GEMM_MMA, &e->prog_kv[i],
                          &e->k_store[i], NULL, &e->kv_store_v[i], &e->kv_store_n[i]);
    }
    if (st == QE_OK && (fmt[0] != QE_KV_F32 || fmt[1] != QE_KV_F32))
        st = qe_engine_alloc_act(e, (size_t)e->opt.n_seq * (size_t)e->opt.n_ctx,
                                 (size_t)e->kv_dim, sizeof(float), &e->kvs, "K/V staging");
    /* both caches staged: prefill stages V beside K (engine.c run_kv: under
       mma their matmuls share a launch, and one format their stores) */
    if (st == QE_OK && fmt[0] != QE_KV_F32 && fmt[1] != QE_KV_F32)
        st = qe_engine_alloc_act(e, (size_t)e->opt.n_seq * (size_t)e->opt.n_ctx,
                                 (size_t)e->kv_dim, sizeof(float), &e->kvs_v, "V staging");
    return st;
}

void qe_engine_kv_close(qe_engine *e)
{
    for (int i = 0; i < 2; i++) {
        qe_cl_kernel_free(e->k_store[i]);
        qe_cl_program_free(e->prog_kv[i]);
        e->k_store[i] = NULL;
        e->prog_kv[i] = NULL;
    }
    qe_cl_free(e->kvs);
    qe_cl_free(e->kvs_v);
    e->kvs = e->kvs_v = NULL;
}

/* Work-items per row of kv_store for format f: one per element (f32,
 * f16), per block of 32 (q8_0, q4_0) or items per head vector
 * (TurboQuant's). */
static size_t store_units(qe_kv_format f, int n_heads, int head_dim, int items)
{
    const size_t n = (size_t)n_heads * (size_t)head_dim;
    return qe_kv_format_per_head(f) ? (size_t)n_heads * (size_t)items
           : f == QE_KV_Q8_0 || f == QE_KV_Q4_0 ? n / 32
                                                : n;
}

/* kv_store of src into dst and, src_b non-NULL, of src_b into dst_b in the
 * same launch (kernels/kv.cl); TurboQuant: up to vecs head vectors of a
 * row a work-group (tq_vecs of n_heads). */
static qe_status run_store(qe_cl *cl, cl_kernel k, qe_kv_format f, int vecs, int items,
                           int n_heads, int head_dim, cl_mem src, int n_rows, cl_mem dst,
                           cl_ulong row_bytes, int y_seq, int y_seq_stride, int y_off,
                           cl_mem rslot, cl_mem rpos, cl_mem src_b, cl_mem dst_b)
{
    const size_t tv = tq_vecs(vecs, (size_t)n_heads);
    qe_status st = qe_cl_args(k, 12, sizeof(cl_mem), &src, sizeof(int), &n_heads, sizeof(cl_mem),
                              &dst, sizeof(cl_ulong), &row_bytes, sizeof(int), &y_seq, sizeof(int),
                              &y_seq_stride, sizeof(int), &y_off, sizeof(int), &n_rows,
                              sizeof(cl_mem), &rslot, sizeof(cl_mem), &rpos, sizeof(cl_mem),
                              src_b ? &src_b : &src, sizeof(cl_mem), src_b ? &dst_b : &dst);
    size_t global[3] = {store_units(f, n_heads, head_dim, items), (size_t)n_rows, src_b ? 2 : 1};
    size_t local[3] = {(size_t)items * tv, 1, 1}; /* TurboQuant: tv head vectors */
    if (st == QE_OK)
        st = qe_cl_run(cl, k, 3, global, qe_kv_format_per_head(f) ? local : NULL, NULL);
    return st;
}

/* run_store for e's K (which 0) or V cache, after checking that a store of
 * K and V together (src_b) has one format for both. */
static qe_status engine_store(qe_engine *e, int which, cl_mem src, int n_rows, cl_mem dst,
                              int y_seq, int y_seq_stride, int y_off, cl_mem rslot, cl_mem rpos,
                              cl_mem src_b, cl_mem dst_b)
{
    if (src_b && (which || e->opt.kv_k != e->opt.kv_v))
        return qe_fail(QE_EINVAL, "engine: K and V rows in one store need one cache format");
    return run_store(e->cl, e->k_store[which], which ? e->opt.kv_v : e->opt.kv_k,
                     e->kv_store_v[which], e->kv_store_n[which], e->hp.n_kv_heads,
                     e->hp.head_dim, src, n_rows, dst, (cl_ulong)e->kv_row_bytes[which], y_seq,
                     y_seq_stride, y_off, rslot, rpos, src_b, dst_b);
}

qe_status qe_engine_run_kv_store(qe_engine *e, int which, cl_mem src, int n_rows, cl_mem dst,
                                 int y_seq, int y_seq_stride, int y_off, cl_mem src_b,
                                 cl_mem dst_b)
{
    return engine_store(e, which, src, n_rows, dst, y_seq, y_seq_stride, y_off, NULL, NULL, src_b,
                        dst_b);
}

qe_status qe_engine_run_kv_store_rows(qe_engine *e, int which, cl_mem src, int n_rows, cl_mem dst,
                                      cl_mem rslot, cl_mem rpos, cl_mem src_b, cl_mem dst_b)
{
    return engine_store(e, which, src, n_rows, dst, 1, e->opt.n_ctx, 0, rslot, rpos, src_b, dst_b);
}

/* build_kv for the tests' entry points: the store the engine builds on
 * this device, QE_SHFL's where it has inline PTX (the engine's
 * QE_GEMM_MMA). */
static qe_status build_kv_test(qe_cl *cl, qe_kv_format f, int head_dim, cl_program *prog,
                               cl_kernel *store, cl_kernel *load, int *vecs, int *items)
{
    qe_cl_caps caps;
    const int shfl = qe_cl_probe(cl, &caps) == QE_OK && caps.ptx_mma;
    return build_kv(cl, f, head_dim, shfl, prog, store, load, vecs, items);
}

qe_status qe_engine_kv_codec(qe_cl *cl, qe_kv_format f, int n_heads, int head_dim, int n_rows,
                             const float *x, void *dst, float *y)
{
    cl_program prog = NULL;
    cl_kernel store = NULL, load = NULL;
    cl_mem src = NULL, enc = NULL, dec = NULL;
    size_t row_bytes = 0;
    qe_status st = qe_kv_format_row_bytes(f, n_heads, head_dim, &row_bytes);
    if (st != QE_OK)
        return st;
    if (head_dim > 256 || n_rows < 1 || (int64_t)n_heads * head_dim * n_rows > INT32_MAX)
        return qe_fail(QE_EINVAL, "engine: KV codec test of %d rows x %d heads x %d is out of range",
                       n_rows, n_heads, head_dim);
    const size_t n = (size_t)n_heads * (size_t)head_dim;
    int vecs = 1, items = 1;
    if ((st = build_kv_test(cl, f, head_dim, &prog, &store, &load, &vecs, &items)) != QE_OK ||
        (st = qe_cl_alloc(cl, n * (size_t)n_rows * sizeof(float), QE_CL_RO, x, &src)) != QE_OK ||
        (st = qe_cl_alloc(cl, row_bytes * (size_t)n_rows, QE_CL_RW, NULL, &enc)) != QE_OK ||
        (st = qe_cl_alloc(cl, n * (size_t)n_rows * sizeof(float), QE_CL_WO, NULL, &dec)) != QE_OK)
        goto done;
    /* Poison the cache bytes: every unit must be written. */
    const unsigned char ff = 0xff;
    if ((st = qe_cl_fill(cl, enc, &ff, 1, 0, row_bytes * (size_t)n_rows)) != QE_OK ||
        (st = run_store(cl, store, f, vecs, items, n_heads, head_dim, src, n_rows, enc,
                        (cl_ulong)row_bytes, n_rows, n_rows, 0, NULL, NULL, NULL, NULL)) != QE_OK)
        goto done;
    if (dst && (st = qe_cl_read(cl, enc, 0, row_bytes * (size_t)n_rows, dst)) != QE_OK)
        goto done;
    if (y) {
        cl_ulong rb = (cl_ulong)row_bytes;
        int ni = (int)n;
        size_t global[2] = {n, (size_t)n_rows};
        if ((st = qe_cl_args(load, 4, sizeof(cl_mem), &enc, sizeof(cl_ulong), &rb, sizeof(int),
                             &ni, sizeof(cl_mem), &dec)) != QE_OK ||
            (st = qe_cl_run(cl, load, 2, global, NULL, NULL)) != QE_OK ||
            (st = qe_cl_read(cl, dec, 0, n * (size_t)n_rows * sizeof(float), y)) != QE_OK)
            goto done;
    }
done:
    qe_cl_free(src);
    qe_cl_free(enc);
    qe_cl_free(dec);
    qe_cl_kernel_free(store);
    qe_cl_kernel_free(load);
    qe_cl_program_free(prog);
    return st;
}

qe_status qe_engine_kv_div(qe_cl *cl, qe_kv_format f, int head_dim, int n, const float *a,
                           const float *b, float *y)
{
    cl_program prog = NULL;
    cl_kernel store = NULL, div = NULL;
    cl_mem ma = NULL, mb = NULL, my = NULL;
    if (n < 1 || head_dim < 1 || head_dim > 256)
        return qe_fail(QE_EINVAL, "engine: KV division test of %d pairs, heads of %d", n, head_dim);
    int vecs = 1, items = 1;
    const size_t bytes = (size_t)n * sizeof(float);
    qe_status st;
    if ((st = build_kv_test(cl, f, head_dim, &prog, &store, NULL, &vecs, &items)) != QE_OK ||
        (st = qe_cl_kernel(prog, "kv_div_rows", &div)) != QE_OK ||
        (st = qe_cl_alloc(cl, bytes, QE_CL_RO, a, &ma)) != QE_OK ||
        (st = qe_cl_alloc(cl, bytes, QE_CL_RO, b, &mb)) != QE_OK ||
        (st = qe_cl_alloc(cl, bytes, QE_CL_WO, NULL, &my)) != QE_OK)
        goto done;
    size_t global[1] = {(size_t)n};
    if ((st = qe_cl_args(div, 4, sizeof(cl_mem), &ma, sizeof(cl_mem), &mb, sizeof(int), &n,
                         sizeof(cl_mem), &my)) == QE_OK &&
        (st = qe_cl_run(cl, div, 1, global, NULL, NULL)) == QE_OK)
        st = qe_cl_read(cl, my, 0, bytes, y);
done:
    qe_cl_free(ma);
    qe_cl_free(mb);
    qe_cl_free(my);
    qe_cl_kernel_free(div);
    qe_cl_kernel_free(store);
    qe_cl_program_free(prog);
    return st;
}
