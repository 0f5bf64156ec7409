/* limits_probe.c - the ceilings qeval's GPU figures are measured against,
 * with none of qeval's work in the way (issue 8 asks what limits a target
 * that is out of reach). A development aid, not part of qeval:
 *   cc -O2 -o /tmp/limits_probe bench/limits_probe.c -lOpenCL
 *   /tmp/limits_probe kernels/ptx.cl bench/limits_probe.cl
 * Prints, for the first GPU:
 * - whether the driver offers cl_khr_command_buffer (launches recorded once
 *   and replayed without the host);
 * - the floor of one launch in an in-order queue: 4000 dependent launches
 *   of an empty kernel (one work-group) and of a small op (2048 floats, the
 *   size of a decode step's norm), wall time and host enqueue time a launch,
 *   and from profiling events each launch's device time and the time from
 *   one launch's start to the next's;
 * - the same launches replayed from a command buffer, where offered;
 * - a device-wide barrier inside one launch (atomic count and spin, fenced),
 *   for 1-4 resident work-groups a compute unit: what a persistent decode
 *   kernel would pay between two ops instead of a launch;
 * - a chain of 64 dependent f16 GEMVs of 2048 x 2048 (8 MB; 8 matrices in
 *   turn, 64 MB, past L2), a launch each against one launch with that
 *   barrier between them: what such a kernel buys at decode's sizes; then
 *   with each warp's next rows prefetched into L2 before the barrier, and
 *   with one matrix that L2 holds;
 * - the same chain with a GEMV written against its latencies (each warp
 *   requests its rows' weights first, x staged once a work-group): a launch
 *   each, one launch with barriers, and that launch with the next phase's
 *   weights requested before each barrier (two places); then as a launch
 *   each at 2048, 4096 and 8192 rows: what a dependent op costs besides its
 *   bytes;
 * - the tensor-core issue rate of mma.sync m16n8k16 (f16 in, f32
 *   accumulate) from OpenCL, operands in registers, for 1-8 independent
 *   chains a warp and 8-64 warps a multiprocessor: the ceiling of any
 *   mma.sync kernel here. */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl_ext.h>
#include <time.h>

#include "probe_util.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static cl_context ctx;
static cl_device_id dev;

static cl_program build(const char *src, const char *opts)
{
    cl_int err;
    cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    need(err, "clCreateProgramWithSource");
    if (clBuildProgram(p, 1, &dev, opts, NULL, NULL) != CL_SUCCESS) {
        static char log[1 << 16];
        clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        fprintf(stderr, "build (%s) failed:\n%s\n", opts, log);
        exit(1);
    }
    return p;
}

/* The dependent-GEMV chain (y = W_p x, then x = y): its queue, matrices w
 * (matrix p of n rows at p n k halves), the two x / y buffers b, the first
 * x (k floats), the persistent kernels' barrier count, phases. */
typedef struct {
    cl_command_queue q;
    cl_mem w, b[2], word;
    const float *x0;
    int k, phases;
} gchain;

/* The arguments that stay: one (gemv_one's signature) and persist
 * (gemv_persist's; NULL: none), for matrices of n rows. */
static void gchain_args(const gchain *c, cl_kernel one, cl_kernel persist, int n)
{
    clSetKernelArg(one, 0, sizeof c->w, &c->w);
    clSetKernelArg(one, 4, sizeof c->k, &c->k);
    clSetKernelArg(one, 5, sizeof n, &n);
    if (!persist)
        return;
    clSetKernelArg(persist, 0, sizeof c->w, &c->w);
    clSetKernelArg(persist, 1, sizeof(cl_mem), &c->b[0]);
    clSetKernelArg(persist, 2, sizeof(cl_mem), &c->b[1]);
    clSetKernelArg(persist, 3, sizeof c->k, &c->k);
    clSetKernelArg(persist, 4, sizeof n, &n);
    clSetKernelArg(persist, 6, sizeof c->phases, &c->phases);
    clSetKernelArg(persist, 7, sizeof c->word, &c->word);
}

/* The chain from x0, the median wall time of 5 runs after an untimed one:
 * a launch of k a phase (gemv_one's signature; matrix p % nm in phase p)
 * or, persistent, one launch of k (its other arguments set). The last y
 * (phases is even: in b[0]) into out (n floats; NULL: not read). */
static double gchain_time(const gchain *c, cl_kernel k, int persistent, size_t g, size_t l, int nm,
                          int n, float *out)
{
    double t[5];
    const int z = 0;
    for (int r = 0; r < 6; r++) {
        need(clEnqueueWriteBuffer(c->q, c->b[0], CL_TRUE, 0, (size_t)c->k * sizeof(float), c->x0, 0,
                                  NULL, NULL), "write");
        need(clEnqueueWriteBuffer(c->q, c->word, CL_TRUE, 0, sizeof z, &z, 0, NULL, NULL), "write");
        const double t0 = now();
        if (persistent)
            need(clEnqueueNDRangeKernel(c->q, k, 1, NULL, &g, &l, 0, NULL, NULL), "GEMV chain launch");
        else
            for (int p = 0; p < c->phases; p++) {
                const cl_ulong off = (cl_ulong)(p % nm) * (cl_ulong)n * (cl_ulong)c->k;
                clSetKernelArg(k, 1, sizeof off, &off);
                clSetKernelArg(k, 2, sizeof(cl_mem), &c->b[p & 1]);
                clSetKernelArg(k, 3, sizeof(cl_mem), &c->b[!(p & 1)]);
                need(clEnqueueNDRangeKernel(c->q, k, 1, NULL, &g, &l, 0, NULL, NULL), "GEMV launch");
            }
        need(clFinish(c->q), "clFinish");
        if (r)
            t[r - 1] = now() - t0;
    }
    if (out)
        need(clEnqueueReadBuffer(c->q, c->b[0], CL_TRUE, 0, (size_t)n * sizeof(float), out, 0, NULL,
                                 NULL), "read");
    return median(t, 5);
}

#define NLAUNCH 4000

/* n launches alternating between kernels k[0] and k[1] (the same kernel
 * twice where there is no alternation), global size g, local size l. */
static void chain(cl_command_queue q, cl_kernel k[2], size_t g, size_t l, const char *what)
{
    /* warm: the first launches of a kernel carry its upload */
    for (int i = 0; i < 50; i++)
        need(clEnqueueNDRangeKernel(q, k[i & 1], 1, NULL, &g, &l, 0, NULL, NULL), "warm");
    need(clFinish(q), "clFinish");
    double host = 0, t0 = now();
    for (int i = 0; i < NLAUNCH; i++) {
        double h = now();
        need(clEnqueueNDRangeKernel(q, k[i & 1], 1, NULL, &g, &l, 0, NULL, NULL), "launch");
        host += now() - h;
    }
    need(clFinish(q), "clFinish");
    double wall = now() - t0;
    printf("%s: %.2f us a launch (wall), host enqueue %.2f us a launch\n", what, 1e6 * wall / NLAUNCH,
           1e6 * host / NLAUNCH);
}

/* The same launches on a profiling queue: each one's device time and the
 * distance from one launch's start to the next's. */
static void chain_events(cl_command_queue q, cl_kernel k[2], size_t g, size_t l, const char *what)
{
    enum { N = 1000 };
    static cl_event ev[N];
    static double dur[N], period[N];
    for (int i = 0; i < N; i++)
        need(clEnqueueNDRangeKernel(q, k[i & 1], 1, NULL, &g, &l, 0, NULL, &ev[i]), "launch");
    need(clFinish(q), "clFinish");
    cl_ulong s0 = 0;
    for (int i = 0; i < N; i++) {
        cl_ulong s, e;
        need(clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_START, sizeof s, &s, NULL), "start");
        need(clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_END, sizeof e, &e, NULL), "end");
        dur[i] = 1e-3 * (double)(e - s);
        if (i)
            period[i - 1] = 1e-3 * (double)(s - s0);
        s0 = s;
        clReleaseEvent(ev[i]);
    }
    double d = median(dur, N), p = median(period, N - 1);
    printf("%s, profiled: %.2f us device time a launch, %.2f us from one start to the next (medians)\n", what,
           d, p);
}

/* The device's own floor, without the host's: the same launches queued
 * behind a long kernel (blocker, about 50 ms), so that all of them are
 * enqueued before the first may start; their time is the whole wall time
 * less the blocker's alone (medians of 3). */
static void chain_queued(cl_command_queue q, cl_kernel blocker, size_t bg, cl_kernel k[2], size_t g,
                         size_t l, const char *what)
{
    size_t bl = 256;
    double alone[3], with[3], host = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        need(clEnqueueNDRangeKernel(q, blocker, 1, NULL, &bg, &bl, 0, NULL, NULL), "blocker");
        need(clFinish(q), "clFinish");
        alone[r] = now() - t0;
        t0 = now();
        need(clEnqueueNDRangeKernel(q, blocker, 1, NULL, &bg, &bl, 0, NULL, NULL), "blocker");
        double h = now();
        for (int i = 0; i < NLAUNCH; i++)
            need(clEnqueueNDRangeKernel(q, k[i & 1], 1, NULL, &g, &l, 0, NULL, NULL), "launch");
        host = now() - h;
        need(clFinish(q), "clFinish");
        with[r] = now() - t0;
    }
    double a = median(alone, 3), w = median(with, 3);
    printf("%s, queued behind a %.1f ms kernel: %.2f us a launch on the device (host enqueue "
           "%.1f ms of it%s)\n",
           what, 1e3 * a, 1e6 * (w - a) / NLAUNCH, 1e3 * host, host < a ? "" : ": NOT all queued in time");
}

/* The launches recorded once into a command buffer and replayed. */
static void chain_recorded(cl_platform_id plat, cl_command_queue q, cl_kernel k[2], size_t g, size_t l,
                           const char *what)
{
    clCreateCommandBufferKHR_fn create =
        (clCreateCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(plat, "clCreateCommandBufferKHR");
    clCommandNDRangeKernelKHR_fn record = (clCommandNDRangeKernelKHR_fn)clGetExtensionFunctionAddressForPlatform(
        plat, "clCommandNDRangeKernelKHR");
    clFinalizeCommandBufferKHR_fn finalize = (clFinalizeCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(
        plat, "clFinalizeCommandBufferKHR");
    clEnqueueCommandBufferKHR_fn replay =
        (clEnqueueCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(plat, "clEnqueueCommandBufferKHR");
    clReleaseCommandBufferKHR_fn release = (clReleaseCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(
        plat, "clReleaseCommandBufferKHR");
    if (!create || !record || !finalize || !replay || !release) {
        printf("%s, command buffer: entry points missing\n", what);
        return;
    }
    cl_int err;
    cl_command_buffer_khr cb = create(1, &q, NULL, &err);
    need(err, "clCreateCommandBufferKHR");
    double t0 = now();
    for (int i = 0; i < NLAUNCH; i++)
        need(record(cb, NULL, NULL, k[i & 1], 1, NULL, &g, &l, 0, NULL, NULL, NULL), "clCommandNDRangeKernelKHR");
    need(finalize(cb), "clFinalizeCommandBufferKHR");
    double rec = now() - t0;
    double t[5];
    for (int r = 0; r < 6; r++) {
        double s = now();
        need(replay(0, NULL, cb, 0, NULL, NULL), "clEnqueueCommandBufferKHR");
        need(clFinish(q), "clFinish");
        if (r)
            t[r - 1] = now() - s;
    }
    printf("%s, command buffer: %.2f us a launch replayed (median of 5), recording %.2f us a launch\n", what,
           1e6 * median(t, 5) / NLAUNCH, 1e6 * rec / NLAUNCH);
    release(cb);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.cl... (kernels/ptx.cl bench/limits_probe.cl)\n", argv[0]);
        return 2;
    }
    char *src = slurp(argc - 1, argv + 1);
    cl_platform_id plats[8], plat = NULL;
    cl_uint np = 0;
    clGetPlatformIDs(8, plats, &np);
    for (cl_uint i = 0; i < np && !plat; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) == CL_SUCCESS)
            plat = plats[i];
    if (!src || !plat) {
        fprintf(stderr, "no sources or no GPU\n");
        return 1;
    }
    char name[256] = "", drv[64] = "";
    cl_uint cus = 0;
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    clGetDeviceInfo(dev, CL_DRIVER_VERSION, sizeof drv, drv, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
    size_t xl = 0;
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &xl);
    char *ext = calloc(1, xl + 1);
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, xl, ext, NULL);
    printf("device: %s, driver %s, %u compute units\nextensions: %s\n", name, drv, cus, ext);
    int has_cb = strstr(ext, "cl_khr_command_buffer") != NULL;

    cl_int err;
    ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    need(err, "clCreateContext");
    cl_command_queue q = clCreateCommandQueueWithProperties(ctx, dev, NULL, &err);
    need(err, "clCreateCommandQueue");
    cl_queue_properties pp[] = {CL_QUEUE_PROPERTIES, CL_QUEUE_PROFILING_ENABLE, 0};
    cl_command_queue qp = clCreateCommandQueueWithProperties(ctx, dev, pp, &err);
    need(err, "clCreateCommandQueue (profiling)");

    cl_program p = build(src, "-DCH=4");
    enum { N = 2048 };
    cl_mem word = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64, NULL, &err);
    need(err, "clCreateBuffer");
    cl_mem x = clCreateBuffer(ctx, CL_MEM_READ_WRITE, N * sizeof(float), NULL, &err);
    need(err, "clCreateBuffer");
    cl_mem y = clCreateBuffer(ctx, CL_MEM_READ_WRITE, N * sizeof(float), NULL, &err);
    need(err, "clCreateBuffer");
    float zero[N] = {0};
    need(clEnqueueWriteBuffer(q, x, CL_TRUE, 0, sizeof zero, zero, 0, NULL, NULL), "write");
    need(clEnqueueWriteBuffer(q, y, CL_TRUE, 0, sizeof zero, zero, 0, NULL, NULL), "write");
    need(clEnqueueWriteBuffer(q, word, CL_TRUE, 0, sizeof(int), zero, 0, NULL, NULL), "write");
    cl_kernel nop = clCreateKernel(p, "nop", &err);
    need(err, "nop");
    int one = 1, n = N;
    clSetKernelArg(nop, 0, sizeof word, &word);
    clSetKernelArg(nop, 1, sizeof one, &one);
    cl_kernel st[2];
    for (int i = 0; i < 2; i++) {
        st[i] = clCreateKernel(p, "step", &err);
        need(err, "step");
        clSetKernelArg(st[i], 0, sizeof x, i ? &y : &x);
        clSetKernelArg(st[i], 1, sizeof x, i ? &x : &y);
        clSetKernelArg(st[i], 2, sizeof n, &n);
    }
    cl_kernel nops[2] = {nop, nop};
    chain(q, nops, 32, 32, "nop (1 work-group of 32)");
    chain_events(qp, nops, 32, 32, "nop (1 work-group of 32)");
    chain(q, st, N, 256, "step (2048 floats, 8 work-groups of 256)");
    chain_events(qp, st, N, 256, "step (2048 floats, 8 work-groups of 256)");
    {
        cl_kernel blk = clCreateKernel(p, "mma_peak", &err);
        need(err, "mma_peak");
        size_t bg = (size_t)cus * 4 * 256;
        cl_mem bo = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, bg * sizeof(float), NULL, &err);
        need(err, "clCreateBuffer");
        /* about 50 ms at 630 TFLOP/s: 132 x 32 warps x iters x 4 chains x 4096 FLOP */
        int iters = 500000;
        clSetKernelArg(blk, 0, sizeof bo, &bo);
        clSetKernelArg(blk, 1, sizeof iters, &iters);
        chain_queued(q, blk, bg, nops, 32, 32, "nop (1 work-group of 32)");
        chain_queued(q, blk, bg, st, N, 256, "step (2048 floats, 8 work-groups of 256)");
    }
    if (has_cb) {
        chain_recorded(plat, q, nops, 32, 32, "nop (1 work-group of 32)");
        chain_recorded(plat, q, st, N, 256, "step (2048 floats, 8 work-groups of 256)");
    }

    /* a barrier across all work-groups of one launch */
    {
        cl_kernel gb = clCreateKernel(p, "grid_barrier", &err);
        need(err, "grid_barrier");
        cl_mem fail = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof(int), NULL, &err);
        need(err, "clCreateBuffer");
        clSetKernelArg(gb, 0, sizeof word, &word);
        clSetKernelArg(gb, 1, sizeof fail, &fail);
        for (int per = 1; per <= 4; per *= 2) {
            size_t l = 256, g = (size_t)cus * (size_t)per * l;
            double t[2];
            int bad = 0;
            for (int i = 0; i < 2; i++) { /* 10 rounds, then 1010: the difference is 1000 */
                int rounds = 10 + 1000 * i, z = 0;
                need(clEnqueueWriteBuffer(q, word, CL_TRUE, 0, sizeof z, &z, 0, NULL, NULL), "write");
                need(clEnqueueWriteBuffer(q, fail, CL_TRUE, 0, sizeof z, &z, 0, NULL, NULL), "write");
                clSetKernelArg(gb, 2, sizeof rounds, &rounds);
                t[i] = timed_launch(qp, gb, g, l, "grid_barrier");
                int f = 0;
                need(clEnqueueReadBuffer(q, fail, CL_TRUE, 0, sizeof f, &f, 0, NULL, NULL), "read");
                bad |= f;
            }
            printf("device-wide barrier, %zu work-groups of 256 (%d a compute unit): %.2f us a "
                   "barrier%s\n", g / l, per, 1e6 * (t[1] - t[0]) / 1000,
                   bad ? " (a spin gave up: not all resident?)" : "");
        }
        clReleaseKernel(gb);
        clReleaseMemObject(fail);
    }

    /* dependent GEMVs: a launch each, or one launch with barriers between */
    {
        enum { GK = 2048, GN = 2048, GNMAX = 8192, NM = 8, PHASES = 64 };
        const size_t wn = (size_t)NM * GNMAX * GK;
        unsigned short *wh = malloc(wn * sizeof *wh);
        float *x0 = malloc(GK * sizeof *x0), *ra = malloc(GN * sizeof *ra), *rb = malloc(GN * sizeof *rb),
              *ref = malloc(GN * sizeof *ref);
        if (!wh || !x0 || !ra || !rb || !ref) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        unsigned rs = 12345;
        for (size_t i = 0; i < wn; i++) { /* halves of magnitude 2^-4 .. 1, either sign */
            rs = rs * 1103515245u + 12345u;
            wh[i] = (unsigned short)(((rs >> 16) & 0x8000u) | ((0x0Bu + ((rs >> 8) & 3u)) << 10) |
                                     ((rs >> 4) & 0x3FFu));
        }
        for (int i = 0; i < GK; i++) {
            rs = rs * 1103515245u + 12345u;
            x0[i] = (float)((int)((rs >> 8) % 2001u) - 1000) / 1000.0f;
        }
        gchain c = {.q = q, .word = word, .x0 = x0, .k = GK, .phases = PHASES};
        c.w = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, wn * sizeof *wh, wh, &err);
        need(err, "clCreateBuffer");
        for (int i = 0; i < 2; i++) {
            c.b[i] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, GNMAX * sizeof(float), NULL, &err);
            need(err, "clCreateBuffer");
        }
        cl_kernel k1 = clCreateKernel(p, "gemv_one", &err);
        need(err, "gemv_one");
        cl_kernel kp = clCreateKernel(p, "gemv_persist", &err);
        need(err, "gemv_persist");
        gchain_args(&c, k1, kp, GN);
        /* work-groups a compute unit; matrices in turn (1: L2 holds it); and
           whether the persistent launch prefetches the next phase's rows
           into L2 before each barrier */
        for (int cfg = 0; cfg < 6; cfg++) {
            const int per = cfg < 3 ? 1 << cfg : 2, nm = cfg < 4 ? NM : 1, pf = cfg == 3 || cfg == 5;
            size_t l = 256, g = (size_t)cus * (size_t)per * l;
            clSetKernelArg(kp, 5, sizeof nm, &nm);
            clSetKernelArg(kp, 8, sizeof pf, &pf);
            const double a = gchain_time(&c, k1, 0, g, l, nm, GN, ra);
            if (cfg == 0)
                memcpy(ref, ra, GN * sizeof(float));
            const double t = gchain_time(&c, kp, 1, g, l, nm, GN, rb);
            const double mb = (double)GN * GK * 2 / 1e6;
            printf("%d dependent f16 GEMVs %dx%d (%.1f MB each, %d matrices in turn), %zu work-groups of "
                   "256: a launch each %.2f us a GEMV (%.2f TB/s), one launch with barriers%s %.2f us "
                   "(%.2f TB/s); results %s\n",
                   PHASES, GN, GK, mb, nm, g / l, 1e6 * a / PHASES, mb * PHASES / a / 1e6,
                   pf ? " and the next rows prefetched" : "", 1e6 * t / PHASES,
                   mb * PHASES / t / 1e6, memcmp(ra, rb, GN * sizeof(float)) ? "DIFFER" : "bit-identical");
        }
        /* the same chain with weights requested first (gemv_w_*), rows a
           warp as the work-groups give (GW_R), and the persistent launch
           with the next phase's weights requested before each barrier */
        for (int per = 1; per <= 2; per++) {
            char opts[48];
            snprintf(opts, sizeof opts, "-DCH=4 -DGW_K=%d -DGW_R=%d", GK, per == 1 ? 2 : 1);
            cl_program pw = build(src, opts);
            cl_kernel w1 = clCreateKernel(pw, "gemv_w_one", &err);
            need(err, "gemv_w_one");
            cl_kernel wp = clCreateKernel(pw, "gemv_w_persist", &err);
            need(err, "gemv_w_persist");
            const int nm = NM;
            gchain_args(&c, w1, wp, GN);
            clSetKernelArg(wp, 5, sizeof nm, &nm);
            size_t l = 256, g = (size_t)cus * (size_t)per * l;
            double t[4];
            int same = 1;
            for (int v = 0; v < 4; v++) { /* a launch each; persistent; overlapped (two ways) */
                const int ov = v > 1 ? v - 1 : 0;
                clSetKernelArg(wp, 8, sizeof ov, &ov);
                t[v] = gchain_time(&c, v ? wp : w1, v > 0, g, l, nm, GN, rb);
                same &= !memcmp(ref, rb, GN * sizeof(float));
            }
            const double mb = (double)GN * GK * 2 / 1e6;
            printf("%d dependent f16 GEMVs %dx%d, weights requested first, %zu work-groups of 256: a "
                   "launch each %.2f us a GEMV (%.2f TB/s), one launch with barriers %.2f us, and the "
                   "next weights requested before each barrier's fence %.2f us, after it %.2f us; "
                   "results %s\n",
                   PHASES, GN, GK, g / l, 1e6 * t[0] / PHASES, mb * PHASES / t[0] / 1e6,
                   1e6 * t[1] / PHASES, 1e6 * t[2] / PHASES, 1e6 * t[3] / PHASES,
                   same ? "bit-identical to gemv_one's" : "DIFFER");
            clReleaseKernel(w1);
            clReleaseKernel(wp);
            clReleaseProgram(pw);
        }
        /* how a dependent GEMV's time grows with its bytes: the weights-first
           kernel as a launch each at 2048 x 2048, 4096 x 2048 and 8192 x 2048
           (the next x is the first 2048 of y), 528 work-groups: the
           intercept is what each dependent op of a decode step costs
           besides streaming its weights */
        for (int gn = GN; gn <= GNMAX; gn *= 2) {
            char opts[48];
            snprintf(opts, sizeof opts, "-DCH=4 -DGW_K=%d -DGW_R=%d", GK, gn > 4096 ? 2 : 1);
            cl_program pw = build(src, opts);
            cl_kernel w1 = clCreateKernel(pw, "gemv_w_one", &err);
            need(err, "gemv_w_one");
            gchain_args(&c, w1, NULL, gn);
            size_t l = 256, g = (size_t)cus * 4 * l;
            const double mb = (double)gn * GK * 2 / 1e6, a = gchain_time(&c, w1, 0, g, l, NM, gn, NULL);
            printf("%d dependent f16 GEMVs %dx%d (%.1f MB each), weights requested first, %zu "
                   "work-groups of 256, a launch each: %.2f us a GEMV (%.2f TB/s)\n",
                   PHASES, gn, GK, mb, g / l, 1e6 * a / PHASES, mb * PHASES / a / 1e6);
            clReleaseKernel(w1);
            clReleaseProgram(pw);
        }
        clReleaseKernel(k1);
        clReleaseKernel(kp);
        clReleaseMemObject(c.w);
        clReleaseMemObject(c.b[0]);
        clReleaseMemObject(c.b[1]);
        free(wh);
        free(x0);
        free(ra);
        free(rb);
        free(ref);
    }

    /* mma.sync issue rate */
    size_t maxg = (size_t)cus * 8 * 256;
    cl_mem out = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, maxg * sizeof(float), NULL, &err);
    need(err, "clCreateBuffer");
    for (int ch = 1; ch <= 8; ch *= 2) {
        char opts[32];
        snprintf(opts, sizeof opts, "-DCH=%d", ch);
        cl_program pm = build(src, opts);
        cl_kernel k = clCreateKernel(pm, "mma_peak", &err);
        need(err, "mma_peak");
        for (int wg = 1; wg <= 8; wg *= 2) {
            int iters = 65536 / (wg * ch);
            size_t g = (size_t)cus * (size_t)wg * 256, l = 256;
            clSetKernelArg(k, 0, sizeof out, &out);
            clSetKernelArg(k, 1, sizeof iters, &iters);
            double t[5];
            for (int r = 0; r < 6; r++) {
                const double s = timed_launch(qp, k, g, l, "mma_peak");
                if (r)
                    t[r - 1] = s;
            }
            double flop = (double)(g / 32) * iters * ch * 4096.0;
            printf("mma.sync m16n8k16 f16->f32: %d chains a warp, %2d warps a compute unit: %.1f TFLOP/s\n", ch,
                   wg * 8, 1e-12 * flop / median(t, 5));
        }
        clReleaseKernel(k);
        clReleaseProgram(pm);
    }
    return 0;
}
