/* probe.c - learn what a device can do by building and running the tiny
 * kernels of kernels/probe.cl (one -DQE_PROBE_* per build).
 *
 * A probe is attempted only where the device claims the feature (its
 * extension list, or NVIDIA's vendor id for inline PTX), and a claim counts
 * only if the probe builds and computes the right answer. Not compiling
 * unclaimed features keeps compiler noise off stderr (PoCL's clang prints
 * "N errors generated." itself) and keeps PTX text away from compilers that
 * might abort on it; no such device could use the feature anyway.
 *
 * Results are kept per cl_device_id for the life of the process.
 * Threading: the result table is behind a mutex held across a probe, so two
 * threads never probe the same device twice; the qe_cl handle passed in is
 * used by the calling thread only.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "log.h"

#define MAX_PROBED 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    cl_device_id dev;
    qe_cl_caps caps;
} probed[MAX_PROBED];
static size_t n_probed;

typedef struct pbuf {
    size_t bytes;
    const void *init; /* uploaded before the run, or NULL (then poisoned) */
    void *out;        /* read back after the run, or NULL */
} pbuf;

/* Build probe `define` (after ptx.cl's helpers when `ptx`, and with ptx 2
 * wgmma.cl's too, patched by qe_cl_build_wgmma), run `kernel`
 * over `global` items in groups of `local` with the buffers as arguments
 * 0..n-1, read results back. Returns 1 if every step worked; failures are
 * debug-logged and cleared. */
static int run_probe_ex(qe_cl *cl, int ptx, const char *define, const char *kernel, pbuf *bufs,
                        size_t n, size_t global, size_t local)
{
    int ok = 0;
    char opts[64];
    cl_program prog = NULL;
    cl_kernel k = NULL;
    cl_mem mem[4] = {0};
    /* ptx 0, 1, 2: ptx + 1 sources */
    static const char *const srcs[3][3] = {
        {"probe.cl"}, {"ptx.cl", "probe.cl"}, {"ptx.cl", "wgmma.cl", "probe.cl"}};
    const unsigned flags = QE_CL_QUIET | (ptx == 2 ? QE_CL_WGMMA : 0u);
    snprintf(opts, sizeof opts, "-D%s", define);
    if (qe_cl_build_ex(cl, srcs[ptx], (size_t)ptx + 1, opts, flags, &prog) ||
        qe_cl_kernel(prog, kernel, &k))
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (qe_cl_alloc(cl, bufs[i].bytes, QE_CL_RW, bufs[i].init, &mem[i]))
            goto done;
        if (!bufs[i].init) {
            unsigned char poison = 0xA5;
            if (qe_cl_fill(cl, mem[i], &poison, 1, 0, bufs[i].bytes))
                goto done;
        }
        if (qe_cl_arg(k, (cl_uint)i, sizeof(cl_mem), &mem[i]))
            goto done;
    }
    if (qe_cl_run(cl, k, 1, &global, &local, NULL))
        goto done;
    for (size_t i = 0; i < n; i++)
        if (bufs[i].out && qe_cl_read(cl, mem[i], 0, bufs[i].bytes, bufs[i].out))
            goto done;
    ok = 1;
done:
    if (!ok) {
        qe_log_debug("probe %s on %s: not available: %s", define, cl->info.name, qe_errmsg());
        qe_errclear();
    }
    for (size_t i = 0; i < n; i++)
        qe_cl_free(mem[i]);
    qe_cl_kernel_free(k);
    qe_cl_program_free(prog);
    return ok;
}

static int run_probe(qe_cl *cl, const char *define, const char *kernel, pbuf *bufs, size_t n,
                     size_t global, size_t local)
{
    return run_probe_ex(cl, 0, define, kernel, bufs, n, global, local);
}

static int probe_half_storage(qe_cl *cl)
{
    /* Normal values, plus a tie that must round to even. */
    static const float in[8] = {1.0f, -2.5f, 0.1f, 65504.0f, 3.14159265f, 1.00048828125f,
                                -1000.3f, 6.103515625e-05f};
    uint16_t h[8];
    float out[8];
    pbuf b[3] = {{sizeof in, in, NULL}, {sizeof h, NULL, h}, {sizeof out, NULL, out}};
    if (!run_probe(cl, "QE_PROBE_HALF_STORAGE", "probe_half_storage", b, 3, 8, 8))
        return 0;
    for (int i = 0; i < 8; i++)
        if (h[i] != qe_f32_to_f16(in[i]) || out[i] != qe_f16_to_f32(h[i]))
            return 0;
    return 1;
}

static int probe_fp16(qe_cl *cl)
{
    /* Every a * 1.5 + 0.25 below is exact in half, with or without fma. */
    static const float in[8] = {1, 2, -3, 0.5f, 100, -0.25f, 7, 0};
    float out[8];
    pbuf b[2] = {{sizeof in, in, NULL}, {sizeof out, NULL, out}};
    if (!run_probe(cl, "QE_PROBE_FP16", "probe_fp16", b, 2, 8, 8))
        return 0;
    for (int i = 0; i < 8; i++)
        if (out[i] != in[i] * 1.5f + 0.25f)
            return 0;
    return 1;
}

static int probe_subgroups(qe_cl *cl, int *sg_size)
{
    size_t local = cl->info.max_wg_size < 64 ? cl->info.max_wg_size : 64;
    int out[2 * 64];
    pbuf b[1] = {{2 * local * sizeof(int), NULL, out}};
    if (!run_probe(cl, "QE_PROBE_SUBGROUPS", "probe_subgroups", b, 1, local, local))
        return 0;
    for (size_t i = 0; i < local; i++)
        if (out[2 * i] < 1 || out[2 * i] != out[2 * i + 1] || (size_t)out[2 * i] > local)
            return 0;
    *sg_size = out[1];
    return 1;
}

static int probe_ptx_shfl(qe_cl *cl)
{
    int out[32];
    pbuf b[1] = {{sizeof out, NULL, out}};
    if (!run_probe(cl, "QE_PROBE_PTX_SHFL", "probe_ptx_shfl", b, 1, 32, 32))
        return 0;
    for (int i = 0; i < 32; i++)
        if (out[i] != (i ^ 1))
            return 0;
    return 1;
}

/* cp.async through ptx.cl's helpers (mma.cl's prefill pipeline: sm_80+):
 * whole and zero-filled 16-byte copies and 4-byte copies into local memory
 * at addresses from ptx_smem, as probe.cl's probe_ptx_async lays them out. */
static int probe_ptx_async(qe_cl *cl)
{
    uint32_t in[32], out[64];
    for (int i = 0; i < 32; i++)
        in[i] = 0x01000193u * (uint32_t)(i + 1);
    pbuf b[2] = {{sizeof in, in, NULL}, {sizeof out, NULL, out}};
    if (!run_probe_ex(cl, 1, "QE_PROBE_PTX_ASYNC", "probe_ptx_async", b, 2, 32, 32))
        return 0;
    for (int i = 0; i < 64; i++) {
        uint32_t want = 0xA5A5A5A5u;
        if (i < 32) { /* chunk l = 7 - i / 4 of in; the last chunk copied 8 bytes of 16 */
            const int l = 7 - i / 4;
            want = l == 7 && i % 4 >= 2 ? 0u : in[4 * l + i % 4];
        } else if (i >= 40 && i < 48) {
            want = in[i - 32];
        }
        if (out[i] != want)
            return 0;
    }
    return 1;
}

/* ldmatrix.x4 through ptx.cl's helper (mma_tile's A fragments): lane
 * 4 g + t gets, in component j, 32-bit word t of the row named by lane
 * 8 j + g, which probe.cl's probe_ptx_ldsm makes row 31 - (8 j + g). */
static int probe_ptx_ldsm(qe_cl *cl)
{
    uint32_t in[128], out[128];
    for (int i = 0; i < 128; i++)
        in[i] = 0x9E3779B9u * (uint32_t)(i + 1);
    pbuf b[2] = {{sizeof in, in, NULL}, {sizeof out, NULL, out}};
    if (!run_probe_ex(cl, 1, "QE_PROBE_PTX_LDSM", "probe_ptx_ldsm", b, 2, 32, 32))
        return 0;
    for (int lane = 0; lane < 32; lane++)
        for (int j = 0; j < 4; j++)
            if (out[4 * lane + j] != in[4 * (31 - (8 * j + lane / 4)) + lane % 4])
                return 0;
    return 1;
}

static int probe_ptx_mma(qe_cl *cl)
{
    /* Small integers: products and sums are exact in f16 inputs and f32. */
    uint16_t a[16 * 16], bt[8 * 16];
    float c[16 * 8], d[16 * 8], want[16 * 8];
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 16; k++)
            a[r * 16 + k] = qe_f32_to_f16((float)((r * 3 + k * 5) % 7 - 3));
    for (int n = 0; n < 8; n++)
        for (int k = 0; k < 16; k++)
            bt[n * 16 + k] = qe_f32_to_f16((float)((n * 2 + k * 3) % 5 - 2));
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            c[r * 8 + n] = (float)((r + n) % 3 - 1);
            float s = c[r * 8 + n];
            for (int k = 0; k < 16; k++)
                s += qe_f16_to_f32(a[r * 16 + k]) * qe_f16_to_f32(bt[n * 16 + k]);
            want[r * 8 + n] = s;
        }
    pbuf b[4] = {{sizeof a, a, NULL}, {sizeof bt, bt, NULL}, {sizeof c, c, NULL},
                 {sizeof d, NULL, d}};
    if (!run_probe(cl, "QE_PROBE_PTX_MMA", "probe_ptx_mma", b, 4, 32, 32) ||
        memcmp(d, want, sizeof d) != 0)
        return 0;
    return probe_ptx_async(cl) && probe_ptx_ldsm(cl);
}

/* kernels/wgmma.cl through qe_cl_build_wgmma: one warpgroup's two
 * m64n128k16 steps over a 64 x 128 x 32 product, A and B staged as mma.cl's
 * MT_WG build stages them, against the host (small integers: exact). */
static int probe_wgmma(qe_cl *cl)
{
    enum { M = 64, N = 128, K = 32 };
    static uint16_t a[M * K], b[N * K];
    static float d[M * N];
    for (int i = 0; i < M * K; i++)
        a[i] = qe_f32_to_f16((float)((i * 7 + 3) % 9 - 4));
    for (int i = 0; i < N * K; i++)
        b[i] = qe_f32_to_f16((float)((i * 5 + 1) % 7 - 3));
    pbuf bufs[3] = {{sizeof a, a, NULL}, {sizeof b, b, NULL}, {sizeof d, NULL, d}};
    if (!run_probe_ex(cl, 2, "QE_PROBE_WGMMA", "probe_wgmma", bufs, 3, 128, 128))
        return 0;
    for (int r = 0; r < M; r++)
        for (int n = 0; n < N; n++) {
            float want = 0;
            for (int k = 0; k < K; k++)
                want += qe_f16_to_f32(a[r * K + k]) * qe_f16_to_f32(b[n * K + k]);
            if (d[r * N + n] != want)
                return 0;
        }
    return 1;
}

qe_status qe_cl_probe(qe_cl *cl, qe_cl_caps *out)
{
    qe_status st = QE_OK;
    const qe_cl_device_info *info = &cl->info;
    qe_cl_caps caps;
    memset(&caps, 0, sizeof caps);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n_probed; i++)
        if (probed[i].dev == info->device) {
            *out = probed[i].caps;
            goto done;
        }
    caps.half_storage = probe_half_storage(cl);
    if (qe_cl_has_extension(info, "cl_khr_fp16"))
        caps.fp16 = probe_fp16(cl);
    if (qe_cl_has_extension(info, "cl_khr_subgroups") ||
        qe_cl_has_extension(info, "cl_intel_subgroups"))
        caps.subgroups = probe_subgroups(cl, &caps.subgroup_size);
    if (info->vendor_id == 0x10de || qe_cl_has_extension(info, "cl_nv_device_attribute_query")) {
        caps.ptx_shfl = probe_ptx_shfl(cl);
        /* mma last: a faulting kernel can leave an NVIDIA context unusable. */
        if (caps.ptx_shfl)
            caps.ptx_mma = probe_ptx_mma(cl);
        if (caps.ptx_mma)
            caps.wgmma = probe_wgmma(cl);
    }
    /* A probe may fail quietly; the queue itself must still work. */
    if ((st = qe_cl_finish(cl)) != QE_OK)
        goto done;
    qe_log_debug("probe %s: half_storage %d fp16 %d subgroups %d (size %d) ptx_shfl %d "
                 "ptx_mma %d wgmma %d", info->name, caps.half_storage, caps.fp16, caps.subgroups,
                 caps.subgroup_size, caps.ptx_shfl, caps.ptx_mma, caps.wgmma);
    if (n_probed < MAX_PROBED) {
        probed[n_probed].dev = info->device;
        probed[n_probed].caps = caps;
        n_probed++;
    }
    *out = caps;
done:
    pthread_mutex_unlock(&mu);
    return st;
}
